//! # Example: tenant-guard on a plain tower / hyper service (no axum)
//!
//! What it shows: the layers are ordinary tower layers. A `service_fn` answers every
//! request; `TenantLayer` takes the tenant from `X-Tenant-ID`; `RateLimitLayer` allows each
//! tenant 3 requests per 10 s (a tenant-wide rule, so no client address is needed). Without
//! axum there is no matched route template, so route-specific rules see `<unmatched>`.
//!
//! Run it:
//!
//! ```text
//! cargo run -p example-tower-service
//! curl -si -H 'X-Tenant-ID: acme' localhost:3002/anything
//! ```

use std::convert::Infallible;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use tenant_guard::backend::{Backend, MemoryStore};
use tenant_guard::keys::Keys;
use tenant_guard::metrics::Metrics;
use tenant_guard::ratelimit::{
    LimiterOptions, Policy, Quota, RateLimitLayer, RateLimiter, Rule, Scope,
};
use tenant_guard::tenant::{TenantId, TenantLayer, TenantResolver};
use tower::{ServiceBuilder, service_fn};

/// The handler: greets the tenant the layer resolved.
async fn handle<B>(req: Request<B>) -> Result<Response<Full<Bytes>>, Infallible> {
    let tenant = req
        .extensions()
        .get::<TenantId>()
        .map_or_else(|| "nobody".to_string(), ToString::to_string);
    Ok(Response::new(Full::new(Bytes::from(format!(
        "hello {tenant}\n"
    )))))
}

/// The layered service, ready for hyper (via `TowerToHyperService`) or any tower stack.
pub fn service<B: Send + 'static>() -> impl tower::Service<
    Request<B>,
    Response = Response<Full<Bytes>>,
    Error = Infallible,
    Future = impl std::future::Future<Output = Result<Response<Full<Bytes>>, Infallible>> + Send,
> + Clone
+ Send {
    let policy = Policy::builder()
        .rule(Rule::new(
            "per-tenant",
            Scope::Tenant,
            Quota::parse("3/10s").expect("valid quota"),
        ))
        .build()
        .expect("valid policy");
    let backend = Backend::Memory(MemoryStore::new(Default::default()));
    let limiter = RateLimiter::new(
        backend,
        Keys::default(),
        policy,
        LimiterOptions::default(),
        &Metrics::new(),
    );
    ServiceBuilder::new()
        .layer(TenantLayer::new(TenantResolver::header("x-tenant-id")))
        .layer(RateLimitLayer::new(limiter))
        .service(service_fn(handle::<B>))
}
