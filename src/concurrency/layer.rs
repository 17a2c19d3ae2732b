//! [`ConcurrencyLayer`]: its configuration (the limiter, whether to send legacy headers).

use tower_layer::Layer;

use super::{ConcurrencyLimiter, ConcurrencyService};

/// Caps requests in flight per tenant and per user ([`ConcurrencyLimiter`]): a request over
/// a cap gets 429 problem+json naming the rule `concurrency` (503 while the store is down
/// with `RATE_LIMIT_OUTAGE=closed`); an admitted one holds its lease until its response body
/// has been sent or dropped.
///
/// Place it inside the [`RateLimitLayer`](crate::ratelimit::RateLimitLayer) (add it to the
/// router before it): a request refused by a rate limit then takes no lease, and the user is
/// the identity the rate-limit layer resolved (else the session's `UserId`, else the client
/// address).
///
/// ```
/// use std::num::NonZeroU32;
/// use axum::{routing::post, Router};
/// use tenant_guard::backend::{Backend, MemoryStore};
/// use tenant_guard::concurrency::{ConcurrencyConfig, ConcurrencyLayer, ConcurrencyLimiter};
/// use tenant_guard::{keys::Keys, ratelimit::OutageMode};
///
/// let config = ConcurrencyConfig::default().per_user(NonZeroU32::new(4).unwrap());
/// let limiter = ConcurrencyLimiter::new(Backend::Memory(MemoryStore::new(Default::default())),
///                                       config, Keys::default(), OutageMode::Open,
///                                       &tenant_guard::metrics::Metrics::new());
/// let app: Router = Router::new()
///     .route("/api/ai/complete", post(|| async { "answer" }))
///     .layer(ConcurrencyLayer::new(limiter));
/// ```
#[derive(Clone, Debug)]
pub struct ConcurrencyLayer {
    limiter: ConcurrencyLimiter,
}

impl ConcurrencyLayer {
    /// A layer over `limiter`.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let guard = tenant_guard::TenantGuard::from_vars([("REDIS_ENABLED", "false")])?;
    /// let layer = tenant_guard::concurrency::ConcurrencyLayer::new(guard.concurrency().clone());
    /// # let _ = layer;
    /// # Ok(()) }
    /// ```
    pub fn new(limiter: ConcurrencyLimiter) -> Self {
        Self { limiter }
    }
}

impl<S> Layer<S> for ConcurrencyLayer {
    type Service = ConcurrencyService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ConcurrencyService {
            inner,
            limiter: self.limiter.clone(),
        }
    }
}
