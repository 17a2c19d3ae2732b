//! Quick constructors: a limit in one line, counted in process (the memory backend), no
//! configuration — for an app that needs no tenants and no Redis.

use super::{LimiterOptions, Policy, Quota, RateLimitLayer, RateLimiter, Rule, Scope};
use crate::InvalidValue;
use crate::backend::{Backend, MemoryStore};
use crate::keys::Keys;
use crate::metrics::Metrics;

impl RateLimitLayer {
    /// Each client — the user a session layer (or your auth middleware) names, else the
    /// client's IP address — may make `quota` requests (`"5/10s"`), all endpoints together.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use axum::{routing::get, Router};
    /// use tower::ServiceExt;
    /// let app = Router::new()
    ///     .route("/a", get(|| async { "a" }))
    ///     .route("/b", get(|| async { "b" }))
    ///     .layer(tenant_guard::ratelimit::RateLimitLayer::per_ip("2/10s").unwrap());
    /// let ask = |path: &str| {
    ///     let mut req = http::Request::get(path).body(axum::body::Body::empty()).unwrap();
    ///     let peer: std::net::SocketAddr = "192.0.2.1:5000".parse().unwrap();
    ///     req.extensions_mut().insert(axum::extract::ConnectInfo(peer));
    ///     req
    /// };
    /// assert_eq!(app.clone().oneshot(ask("/a")).await.unwrap().status(), 200);
    /// assert_eq!(app.clone().oneshot(ask("/b")).await.unwrap().status(), 200);
    /// assert_eq!(app.clone().oneshot(ask("/a")).await.unwrap().status(), 429);
    /// assert!(tenant_guard::ratelimit::RateLimitLayer::per_ip("lots").is_err());
    /// # }
    /// ```
    pub fn per_ip(quota: &str) -> Result<Self, InvalidValue> {
        Self::in_process(Rule::new("per-ip", Scope::Caller, Quota::parse(quota)?))
    }

    /// Like [`per_ip`](Self::per_ip), each endpoint (method and route template) counted
    /// on its own.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use axum::{routing::get, Router};
    /// use tower::ServiceExt;
    /// let app = Router::new()
    ///     .route("/a", get(|| async { "a" }))
    ///     .route("/b", get(|| async { "b" }))
    ///     .layer(tenant_guard::ratelimit::RateLimitLayer::per_ip_and_endpoint("1/10s").unwrap());
    /// let ask = |path: &str| {
    ///     let mut req = http::Request::get(path).body(axum::body::Body::empty()).unwrap();
    ///     let peer: std::net::SocketAddr = "192.0.2.1:5000".parse().unwrap();
    ///     req.extensions_mut().insert(axum::extract::ConnectInfo(peer));
    ///     req
    /// };
    /// assert_eq!(app.clone().oneshot(ask("/a")).await.unwrap().status(), 200);
    /// assert_eq!(app.clone().oneshot(ask("/b")).await.unwrap().status(), 200); // its own counter
    /// assert_eq!(app.clone().oneshot(ask("/a")).await.unwrap().status(), 429);
    /// # }
    /// ```
    pub fn per_ip_and_endpoint(quota: &str) -> Result<Self, InvalidValue> {
        Self::in_process(Rule::new("per-ip", Scope::Caller, Quota::parse(quota)?).per_endpoint())
    }

    /// Each tenant may make `quota` requests, all its clients and endpoints together. The
    /// tenant comes from a [`TenantLayer`](crate::tenant::TenantLayer) outside this one
    /// (without one, every request counts against one global tenant).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use axum::{routing::get, Router};
    /// use tower::ServiceExt;
    /// use tenant_guard::tenant::{TenantLayer, TenantResolver};
    ///
    /// let app = Router::new()
    ///     .route("/", get(|| async { "ok" }))
    ///     .layer(tenant_guard::ratelimit::RateLimitLayer::per_tenant("1/10s").unwrap())
    ///     .layer(TenantLayer::new(TenantResolver::header("x-tenant-id")));
    /// let ask = |tenant: &str| http::Request::get("/").header("x-tenant-id", tenant).body(axum::body::Body::empty()).unwrap();
    /// assert_eq!(app.clone().oneshot(ask("acme")).await.unwrap().status(), 200);
    /// assert_eq!(app.clone().oneshot(ask("globex")).await.unwrap().status(), 200); // each tenant its own
    /// assert_eq!(app.clone().oneshot(ask("acme")).await.unwrap().status(), 429);
    /// # }
    /// ```
    pub fn per_tenant(quota: &str) -> Result<Self, InvalidValue> {
        Self::in_process(Rule::new("per-tenant", Scope::Tenant, Quota::parse(quota)?))
    }

    fn in_process(rule: Rule) -> Result<Self, InvalidValue> {
        let policy = Policy::builder()
            .rule(rule)
            .build()
            .map_err(|e| InvalidValue::from(e.to_string()))?;
        let limiter = RateLimiter::new(
            Backend::Memory(MemoryStore::new(Default::default())),
            Keys::default(),
            policy,
            LimiterOptions::default(),
            &Metrics::new(),
        );
        Ok(Self::new(limiter))
    }
}
