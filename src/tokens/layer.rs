//! [`TokenLayer`]: its configuration (the budgets, an optional estimator).

use std::sync::Arc;

use tower_layer::Layer;

use super::service::EstimateFn;
use super::{TokenBudget, TokenService};

/// Meters tokens per tenant and per user ([`TokenBudget`]): each request to a budgeted
/// route reserves its estimated tokens on every budget that applies (all or none; 429
/// problem+json naming the budget when one has no room; 400 for a `max_tokens` given twice
/// or not as a whole number, 415 for a compressed body, 413 for a body over
/// `RATE_LIMIT_TOKENS_MAX_BODY`), and its response settles the reservation when it ends:
/// with the handler's `X-Usage-Tokens` header, else a 2xx JSON or event-stream body's
/// `usage.total_tokens` (see [`UsageScan`](super::UsageScan)), else the estimate — and
/// with nothing for an error status, a client gone with none of the answer sent, or what
/// the cache answered (`RATE_LIMIT_TOKENS_CACHE_HITS=free`). Responses carry the budget's
/// `RateLimit` fields after the rate limit's own.
///
/// Place it inside the [`RateLimitLayer`](crate::ratelimit::RateLimitLayer) (add it to the
/// router before it) and outside the [`CacheLayer`](crate::cache::CacheLayer), so that it
/// sees the user the rate-limit layer resolved and the cache's `X-Cache`.
///
/// ```
/// use axum::{routing::post, Router};
/// use tenant_guard::backend::{Backend, MemoryStore};
/// use tenant_guard::tokens::{parse_token_rule, TokenBudget, TokenConfig, TokenLayer};
///
/// let config = TokenConfig::default()
///     .rule(parse_token_rule("user: POST /api/ai/{*rest} = 20000/1m").unwrap());
/// let budget = TokenBudget::new(Backend::Memory(MemoryStore::new(Default::default())),
///     Default::default(), config, Default::default(), &tenant_guard::metrics::Metrics::new())
///     .unwrap();
/// let app: Router = Router::new()
///     .route("/api/ai/{*rest}", post(|| async { r#"{"usage":{"total_tokens":12}}"# }))
///     .layer(TokenLayer::new(budget).estimate_with(|_head, body| body.len() as u32 + 64));
/// ```
#[derive(Clone)]
pub struct TokenLayer {
    budget: TokenBudget,
    estimate: Option<EstimateFn>,
}

impl std::fmt::Debug for TokenLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenLayer")
            .field("budget", &self.budget)
            .field("estimate", &self.estimate.is_some())
            .finish()
    }
}

impl TokenLayer {
    /// A layer over `budget`, estimating with [`estimate`](super::estimate).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let guard = tenant_guard::TenantGuard::from_vars([("REDIS_ENABLED", "false")])?;
    /// let layer = tenant_guard::tokens::TokenLayer::new(guard.tokens().clone());
    /// # let _ = layer;
    /// # Ok(()) }
    /// ```
    pub fn new(budget: TokenBudget) -> Self {
        Self {
            budget,
            estimate: None,
        }
    }

    /// Estimates with `f(request head, request body)` instead (the body as read, at most
    /// `RATE_LIMIT_TOKENS_MAX_BODY` bytes).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let guard = tenant_guard::TenantGuard::from_vars([("REDIS_ENABLED", "false")])?;
    /// let layer = tenant_guard::tokens::TokenLayer::new(guard.tokens().clone())
    ///     .estimate_with(|_head, body| (body.len() / 4) as u32); // ~4 bytes a token
    /// # let _ = layer;
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn estimate_with(
        mut self,
        f: impl Fn(&http::request::Parts, &[u8]) -> u32 + Send + Sync + 'static,
    ) -> Self {
        self.estimate = Some(Arc::new(f));
        self
    }
}

impl<S> Layer<S> for TokenLayer {
    type Service = TokenService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        TokenService {
            inner,
            budget: self.budget.clone(),
            estimate: self.estimate.clone(),
        }
    }
}
