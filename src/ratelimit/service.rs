//! [`RateLimitService`]: decides each request against the limiter, answering 429 problem+json
//! or calling the inner service and adding the `RateLimit` headers.

use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::FutureExt;
use http::request::Parts;
use http::{Request, Response};
use tower_service::Service;
use tracing::field::Empty;
use tracing::instrument::Instrumented;
use tracing::{Instrument, Span};

use super::decision::listed;
use super::headers::{self, RateHeaders};
use super::identity::ClientAddr;
use super::layer::{Settings, client_bucket};
use super::limiter::Check;
use super::{Decision, RateLimiter, Source, UNMATCHED_ROUTE};
use crate::future::ResponseFuture;
use crate::problem::Problem;
use crate::tenant::{Identity, TenantId};

/// The service made by [`RateLimitLayer`](super::RateLimitLayer).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use tower::Layer;
/// # let guard = tenant_guard::TenantGuard::from_vars([("REDIS_ENABLED", "false"), ("SESSION_SECRET", "0123456789abcdef0123456789abcdef")])?;
/// let inner = tower::service_fn(|_req: http::Request<axum::body::Body>| async {
///     Ok::<_, std::convert::Infallible>(http::Response::new(axum::body::Body::empty()))
/// });
/// let svc: tenant_guard::ratelimit::RateLimitService<_> = tenant_guard::ratelimit::RateLimitLayer::new(guard.limiter().clone()).layer(inner);
/// let _inner = svc.get_ref(); // get_mut, into_inner: as tower's middleware
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct RateLimitService<S> {
    pub(super) inner: S,
    /// Shared, so a request clones one pointer rather than the settings (proxy lists...).
    pub(super) shared: Arc<Settings>,
}

crate::macros::inner_service_accessors!(
    RateLimitService,
    "tenant_guard::ratelimit::RateLimitLayer::new(guard.limiter().clone())"
);

pub(super) fn peer(parts: &Parts) -> Option<SocketAddr> {
    #[cfg(feature = "axum")]
    if let Some(ci) = parts
        .extensions
        .get::<axum::extract::ConnectInfo<SocketAddr>>()
    {
        return Some(ci.0);
    }
    parts.extensions.get::<SocketAddr>().copied()
}

/// The matched route template: a clone of axum's `MatchedPath` (an `Arc<str>` inside: no
/// copy of the string), else [`UNMATCHED_ROUTE`].
#[derive(Clone)]
pub(super) struct Route(#[cfg(feature = "axum")] Option<axum::extract::MatchedPath>);

impl Route {
    #[cfg_attr(not(feature = "axum"), allow(unused_variables))]
    fn of(parts: &Parts) -> Self {
        Self(
            #[cfg(feature = "axum")]
            parts
                .extensions
                .get::<axum::extract::MatchedPath>()
                .cloned(),
        )
    }

    fn as_str(&self) -> &str {
        #[cfg(feature = "axum")]
        if let Some(m) = &self.0 {
            return m.as_str();
        }
        UNMATCHED_ROUTE
    }
}

/// 403 problem+json for a tenant, user or address in `RATE_LIMIT_DENY` (`kind` says which
/// matched; the value itself is not echoed).
fn refused_by_list<B: From<String>>(kind: &str) -> Response<B> {
    Problem::new(http::StatusCode::FORBIDDEN, "Forbidden")
        .detail(format!("this {kind} is refused (RATE_LIMIT_DENY)"))
        .with("rule", "deny-list")
        .with("matched", kind.to_string())
        .into_response()
}

/// Records a decision on the layer's span (`decision`: what the span says happened).
fn record(span: &Span, decision: &'static str, d: &Decision) {
    if span.is_disabled() {
        return;
    }
    span.record("decision", decision);
    span.record("source", d.source.label());
    if let Some(r) = d.denied_by().or_else(|| d.most_restrictive()) {
        span.record("rule", r.name);
        span.record("remaining", r.remaining);
    }
}

/// What the limiter made of a request.
enum Outcome<B> {
    /// Answer with this: refused by a list or a rule.
    Answer(Response<B>),
    /// Call the inner service; these headers go on its response.
    Pass(RateHeaders),
}

/// Decides `parts` (and records on `span`): the lists, the per-client rule, then the
/// tenant's rules. An admitted request leaves its [`Decision`] and [`Identity`] in the
/// extensions. Waits only for a custom identity function or a check on a shared backend.
async fn decide<B: From<String>>(layer: &Settings, parts: &mut Parts, span: &Span) -> Outcome<B> {
    let tenant = parts
        .extensions
        .get::<TenantId>()
        .cloned()
        .unwrap_or_else(|| layer.global.clone());
    let identity = match &layer.identify {
        Some(f) => f(parts).await,
        None => None,
    }
    .unwrap_or_else(|| layer.identity.identify(parts, peer(parts)));
    let route = Route::of(parts);
    // Exempt by tenant or user: the tenant's rules are skipped, the per-client rule
    // is not (a client names its tenant, and the per-client rule limits it whatever
    // it names). Exempt by address: every rule is skipped.
    let mut exempt = None;
    // The lists set at runtime (`tenant-guard limits exempt|deny`), on top.
    let runtime = layer.limiter.runtime_lists();
    if !layer.exempt.is_empty() || !layer.deny.is_empty() || runtime.is_some() {
        // A trusted proxy's own address is no client's: a request it sends without
        // a forwarding header matches no `ip:` entry.
        let addresses =
            layer.exempt.has_addresses() || layer.deny.has_addresses() || runtime == Some(true);
        let client = addresses
            .then(|| layer.identity.client_ip(parts, peer(parts)))
            .flatten()
            .filter(|ip| !layer.identity.is_trusted(*ip));
        let (runtime_deny, runtime_exempt) = match runtime {
            Some(_) => layer.limiter.runtime_match(&tenant, &identity, client),
            None => (None, None),
        };
        if let Some(kind) = layer
            .deny
            .matches(&tenant, &identity, client)
            .or(runtime_deny)
        {
            let decision = listed(Source::DenyList);
            layer.limiter.record_listed(&decision);
            record(span, "deny-list", &decision);
            return Outcome::Answer(refused_by_list(kind));
        }
        exempt = layer
            .exempt
            .matches(&tenant, &identity, client)
            .or(runtime_exempt);
    }
    if let (Some(per_client), false) = (&layer.per_client, exempt == Some("ip")) {
        let who = match layer.identity.client(parts, peer(parts)) {
            ClientAddr::Ip(ip) => Identity::from_ip(ip),
            ClientAddr::InvalidForwarding => Identity::InvalidForwarding,
            ClientAddr::Unknown => Identity::Unknown,
        };
        let bucket = client_bucket(&who);
        let check = Check {
            tenant: &bucket,
            identity: &who,
            method: &parts.method,
            route: route.as_str(),
            cost: None,
            plan: None,
        };
        let d = per_client.check(&check).await;
        if !d.allowed {
            layer
                .limiter
                .metrics()
                .tenant_top
                .record(tenant.as_str(), false);
            record(span, "denied", &d);
            return Outcome::Answer(headers::denied(&d, layer.legacy_headers));
        }
    }
    if exempt.is_some() {
        let decision = listed(Source::Exempt);
        layer.limiter.record_listed(&decision);
        record(span, "exempt", &decision);
        parts.extensions.insert(decision);
        parts.extensions.insert(identity);
        return Outcome::Pass(RateHeaders::none());
    }
    let cost = layer.cost.as_ref().and_then(|f| f(parts));
    let check = Check {
        tenant: &tenant,
        identity: &identity,
        method: &parts.method,
        route: route.as_str(),
        cost,
        plan: None,
    };
    let decision = layer.limiter.check(&check).await;
    layer
        .limiter
        .metrics()
        .tenant_top
        .record(tenant.as_str(), decision.allowed);
    let said = if decision.allowed {
        "allowed"
    } else {
        "denied"
    };
    record(span, said, &decision);
    if !decision.allowed {
        return Outcome::Answer(headers::denied(&decision, layer.legacy_headers));
    }
    // Headers first, so the decision can move into the extensions without a clone.
    let rate_headers = RateHeaders::of(&decision, layer.legacy_headers);
    parts.extensions.insert(decision);
    // Who was counted: the concurrency layer inside counts the same identity.
    parts.extensions.insert(identity);
    Outcome::Pass(rate_headers)
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for RateLimitService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    ReqBody: Send + 'static,
    ResBody: From<String> + Send + 'static,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<Instrumented<S::Future>, ResBody, S::Error, RateHeaders>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let span = tracing::info_span!(
            "tenant_guard.rate_limit",
            request_id = Empty,
            decision = Empty,
            source = Empty,
            rule = Empty,
            remaining = Empty,
        );
        let (mut parts, body) = req.into_parts();
        crate::trace::record_request_id_parts(&mut parts, &span);
        let layer = &*self.shared;
        let in_process = layer.identify.is_none()
            && layer.limiter.in_process()
            && layer
                .per_client
                .as_ref()
                .is_none_or(RateLimiter::in_process);
        if in_process {
            // Nothing to wait for: decided here, the inner call unboxed.
            let outcome = {
                let _in = span.enter();
                decide(layer, &mut parts, &span)
                    .now_or_never()
                    .expect("an in-process check never waits")
            };
            return match outcome {
                Outcome::Answer(res) => ResponseFuture::ready(res),
                Outcome::Pass(headers) => {
                    let fut = {
                        let _in = span.enter();
                        self.inner.call(Request::from_parts(parts, body))
                    };
                    ResponseFuture::inner(fut.instrument(span), headers)
                }
            };
        }
        let mut inner = crate::future::take_ready(&mut self.inner);
        let layer = self.shared.clone();
        let here = span.clone();
        ResponseFuture::boxed(Box::pin(
            async move {
                match decide(&layer, &mut parts, &here).await {
                    Outcome::Answer(res) => Ok(res),
                    Outcome::Pass(headers) => {
                        let mut res = inner.call(Request::from_parts(parts, body)).await?;
                        headers.put_on(res.headers_mut());
                        Ok(res)
                    }
                }
            }
            .instrument(span),
        ))
    }
}
