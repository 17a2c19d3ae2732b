//! Recipes: whole, runnable set-ups for the common cases, each a doc test on the memory
//! backend (set `REDIS_URL` in the environment and use [`TenantGuard::from_env`] to run the
//! same code on Redis). The `middleware-examples/` crates of the repository serve each over
//! HTTP.
//!
//! * [SaaS app](#a-saas-app): tenant, login sessions, limits, a cached report.
//! * [AI gateway](#an-ai-gateway): token budgets, a cap on requests in flight, the AI cache.
//! * [Plain tower service](#a-plain-tower-service): no axum, `tower::ServiceBuilder`.
//! * [Custom tenant resolver](#a-custom-tenant-resolver): the tenant from an API key.
//! * [Custom store](#a-custom-store): the cache on storage of your own.
//!
//! # A SaaS app
//!
//! One guard from the environment: the tenant from `X-Tenant-ID` (`TG_TENANT_SOURCE`), a
//! session cookie bound to that tenant, a per-tenant limit with `RateLimit` headers, and a
//! report cached per tenant (and per user once logged in: `CACHE_SCOPE` `auto`).
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use axum::{extract::Path, routing::{get, post}, Router};
//! use tenant_guard::cache::{CacheLayer, Category};
//! use tenant_guard::session::{Session, SessionError};
//! use tenant_guard::tenant::TenantId;
//! use tenant_guard::TenantGuard;
//!
//! async fn login(session: Session, Path(user): Path<String>) -> Result<&'static str, SessionError> {
//!     session.cycle_id().await?; // a session id known before login is worthless after it
//!     session.set_user_id(Some(&user)).await?;
//!     Ok("in")
//! }
//! async fn me(session: Session) -> Result<String, SessionError> {
//!     Ok(session.user_id().await?.unwrap_or_else(|| "anonymous".into()))
//! }
//! async fn report(tenant: TenantId, Path(id): Path<u32>) -> String {
//!     format!("report {id} of {tenant}") // imagine a slow query here
//! }
//!
//! // In a service: TenantGuard::from_env()?
//! let guard = TenantGuard::from_vars([
//!     ("REDIS_ENABLED", "false"),
//!     ("SESSION_SECRET", "change-me-to-48-random-bytes-0123456789abcdef"),
//!     ("SESSION_COOKIE_SECURE", "false"), // plain http in this test
//!     ("RATE_LIMIT_TENANT", "4/1m"),
//!     ("CACHE_TTL_REPORTS", "2h"),
//! ])?;
//! let app: Router = Router::new()
//!     .route("/login/{user}", post(login))
//!     .route("/me", get(me))
//!     .route(
//!         "/reports/{id}",
//!         get(report).layer(CacheLayer::new(guard.cache().clone(), Category::named("reports"))),
//!     )
//!     .layer(guard.layer())
//!     .merge(guard.ops_router());
//!
//! // The client side of it.
//! use tower::ServiceExt;
//! let send = |method: &str, path: &str, tenant: &str, cookie: Option<&str>| {
//!     let mut req = http::Request::builder().method(method).uri(path).header("x-tenant-id", tenant);
//!     if let Some(c) = cookie {
//!         req = req.header("cookie", c);
//!     }
//!     app.clone().oneshot(req.body(axum::body::Body::empty()).unwrap())
//! };
//! let res = send("POST", "/login/alice", "acme", None).await?;
//! let cookie = res.headers()["set-cookie"].to_str()?.split(';').next().unwrap().to_string();
//! let body = |res: http::Response<axum::body::Body>| async move {
//!     let bytes = http_body_util::BodyExt::collect(res.into_body()).await.unwrap().to_bytes();
//!     String::from_utf8(bytes.to_vec()).unwrap()
//! };
//! assert_eq!(body(send("GET", "/me", "acme", Some(&cookie)).await?).await, "alice");
//! // The cookie means nothing to another tenant.
//! assert_eq!(body(send("GET", "/me", "globex", Some(&cookie)).await?).await, "anonymous");
//! // The report: computed once, then served from the cache.
//! let first = send("GET", "/reports/7", "acme", Some(&cookie)).await?;
//! assert_eq!(first.headers()["x-cache"], "MISS");
//! let again = send("GET", "/reports/7", "acme", Some(&cookie)).await?;
//! assert_eq!(again.headers()["x-cache"], "HIT");
//! assert!(again.headers().contains_key("ratelimit-policy"));
//! // acme has used its 4 requests of the minute (a cache hit counts too); globex one.
//! let limited = send("GET", "/me", "acme", Some(&cookie)).await?;
//! assert_eq!(limited.status(), 429);
//! assert_eq!(limited.headers()["content-type"], "application/problem+json");
//! assert_eq!(send("GET", "/me", "globex", None).await?.status(), 200);
//! guard.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! # An AI gateway
//!
//! Tokens metered per tenant (the estimate reserved before the model runs, settled with the
//! `usage` it reports), at most two completions of a tenant in flight, and identical
//! requests answered from the AI cache (the model and every parameter in the key, the
//! `request_id` field not): a hit costs no tokens.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::atomic::{AtomicU64, Ordering};
//! use std::sync::Arc;
//! use axum::{routing::post, Json, Router};
//! use serde_json::{json, Value};
//! use tenant_guard::cache::CacheLayer;
//! use tenant_guard::TenantGuard;
//!
//! let guard = TenantGuard::from_vars([
//!     ("REDIS_ENABLED", "false"),
//!     ("RATE_LIMIT_TOKENS", "tenant: POST /v1/chat = 1000/1m"),
//!     ("RATE_LIMIT_CONCURRENCY_ENDPOINTS", "tenant: POST /v1/chat = 2"),
//!     ("AI_CACHE_TTL", "30m"),
//! ])?;
//! let calls = Arc::new(AtomicU64::new(0));
//! let model = {
//!     let calls = calls.clone();
//!     move |Json(req): Json<Value>| async move {
//!         calls.fetch_add(1, Ordering::SeqCst);
//!         Json(json!({
//!             "model": req["model"],
//!             "choices": [{ "message": { "content": "hello" } }],
//!             "usage": { "prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4 },
//!         }))
//!     }
//! };
//! let app: Router = Router::new()
//!     .route("/v1/chat", post(model).layer(CacheLayer::ai(guard.cache().clone())))
//!     .layer(guard.layer());
//!
//! use tower::ServiceExt;
//! let ask = |body: Value| {
//!     let req = http::Request::post("/v1/chat")
//!         .header("x-tenant-id", "acme")
//!         .header("content-type", "application/json")
//!         .body(axum::body::Body::from(body.to_string()))
//!         .unwrap();
//!     app.clone().oneshot(req)
//! };
//! let q = |id: u32| json!({ "model": "small", "messages": [{ "role": "user", "content": "hi" }], "request_id": id });
//! assert_eq!(ask(q(1)).await?.headers()["x-cache"], "MISS");
//! assert_eq!(ask(q(2)).await?.headers()["x-cache"], "HIT"); // another request_id, same answer
//! assert_eq!(calls.load(Ordering::SeqCst), 1);
//! // More tokens than the budget holds: refused before the model runs.
//! let greedy = json!({ "model": "small", "messages": [], "max_tokens": 5000 });
//! let refused = ask(greedy).await?;
//! assert_eq!(refused.status(), 429);
//! assert_eq!(calls.load(Ordering::SeqCst), 1);
//! guard.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! # A plain tower service
//!
//! The guard's layer is an ordinary tower [`Layer`](tower_layer::Layer): it wraps any
//! `Service<http::Request<B>>` whose response body is axum's (hyper serves it through
//! `hyper_util::service::TowerToHyperService`). Without axum's router there is no matched
//! route template: route rules see `<unmatched>`, tenant and user rules work as ever.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::convert::Infallible;
//! use axum::body::Body;
//! use tenant_guard::{tenant::TenantId, TenantGuard};
//! use tower::{service_fn, ServiceBuilder, ServiceExt};
//!
//! let guard = TenantGuard::from_vars([("REDIS_ENABLED", "false"), ("RATE_LIMIT_TENANT", "1/1m")])?;
//! let svc = ServiceBuilder::new()
//!     .layer(guard.layer())
//!     .service(service_fn(|req: http::Request<Body>| async move {
//!         let tenant = req.extensions().get::<TenantId>().map(ToString::to_string);
//!         Ok::<_, Infallible>(http::Response::new(Body::from(format!("hello {}", tenant.unwrap()))))
//!     }));
//! let req = || http::Request::get("/x").header("x-tenant-id", "acme").body(Body::empty()).unwrap();
//! assert_eq!(svc.clone().oneshot(req()).await?.status(), 200);
//! assert_eq!(svc.clone().oneshot(req()).await?.status(), 429);
//! guard.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! # A custom tenant resolver
//!
//! When the tenant is not in a header, subdomain or path prefix (`TG_TENANT_SOURCE`), a
//! resolver of your own decides: here from an API key. `Ok(None)` means "no tenant" (a
//! problem+json 400), an error a 400 naming the problem; the layer checks the id it returns
//! like any other (and [`TenantLayer::validate_with`](crate::tenant::TenantLayer::validate_with)
//! can ask a database whether the tenant exists). [`GuardLayer::tenant`](crate::guard::GuardLayer::tenant)
//! puts it in the guard's layer.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use axum::{routing::get, Router};
//! use tenant_guard::tenant::{TenantError, TenantId, TenantLayer, TenantResolver};
//! use tenant_guard::TenantGuard;
//!
//! let by_key = TenantResolver::custom("an API key in `Authorization`", |parts| {
//!     let key = parts.headers.get("authorization").cloned();
//!     async move {
//!         match key.as_ref().map(|k| k.as_bytes()) {
//!             Some(b"Bearer key-of-acme") => Ok(Some(TenantId::new("acme")?)),
//!             Some(_) => Err(TenantError::Invalid("unknown API key".into())),
//!             None => Ok(None),
//!         }
//!     }
//! });
//! let guard = TenantGuard::from_vars([("REDIS_ENABLED", "false")])?;
//! let app: Router = Router::new()
//!     .route("/whoami", get(|t: TenantId| async move { t.to_string() }))
//!     .layer(guard.layer().tenant(TenantLayer::new(by_key)));
//!
//! use tower::ServiceExt;
//! let call = |key: Option<&str>| {
//!     let mut req = http::Request::get("/whoami");
//!     if let Some(k) = key {
//!         req = req.header("authorization", k);
//!     }
//!     app.clone().oneshot(req.body(axum::body::Body::empty()).unwrap())
//! };
//! assert_eq!(call(Some("Bearer key-of-acme")).await?.status(), 200);
//! assert_eq!(call(Some("Bearer stolen")).await?.status(), 400);
//! assert_eq!(call(None).await?.status(), 400);
//! guard.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! # A custom store
//!
//! The cache runs on any [`CacheStore`](crate::cache::CacheStore) (sessions likewise on any
//! [`SessionBackend`](crate::session::SessionBackend): `middleware-examples/custom-session-store`
//! keeps them in a table). A store that is not shared between instances (`is_shared` false)
//! needs no invalidation bus. Here a map with expiry, behind one lock:
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::collections::HashMap;
//! use std::sync::Mutex;
//! use std::time::{Duration, Instant};
//! use bytes::Bytes;
//! use tenant_guard::backend::StoreFuture;
//! use tenant_guard::cache::{Cache, CacheStatus, CacheStore, Category};
//! use tenant_guard::{config::CacheConfig, keys::{Keys, RedisKey}, metrics::Metrics, tenant::TenantId};
//!
//! #[derive(Default)]
//! struct MapStore(Mutex<HashMap<String, (Bytes, Instant)>>);
//!
//! impl MapStore {
//!     /// Runs `f` on the live entries (expired ones dropped first).
//!     fn with<T>(&self, f: impl FnOnce(&mut HashMap<String, (Bytes, Instant)>) -> T) -> T {
//!         let mut map = self.0.lock().unwrap();
//!         let now = Instant::now();
//!         map.retain(|_, (_, until)| *until > now);
//!         f(&mut map)
//!     }
//! }
//!
//! fn done<'a, T: Send + 'a>(value: T) -> StoreFuture<'a, T> {
//!     Box::pin(std::future::ready(Ok(value)))
//! }
//!
//! impl CacheStore for MapStore {
//!     fn name(&self) -> &'static str { "map" }
//!     fn is_shared(&self) -> bool { false }
//!     fn get_many<'a>(&'a self, keys: &'a [&'a RedisKey]) -> StoreFuture<'a, Vec<Option<Bytes>>> {
//!         done(self.with(|m| keys.iter().map(|k| m.get(k.as_str()).map(|(v, _)| v.clone())).collect()))
//!     }
//!     fn set<'a>(&'a self, key: &'a RedisKey, value: &'a [u8], ttl: Duration) -> StoreFuture<'a, ()> {
//!         let entry = (Bytes::copy_from_slice(value), Instant::now() + ttl);
//!         done(self.with(|m| { m.insert(key.as_str().into(), entry); }))
//!     }
//!     fn set_nx<'a>(&'a self, key: &'a RedisKey, value: &'a [u8], ttl: Duration) -> StoreFuture<'a, bool> {
//!         let entry = (Bytes::copy_from_slice(value), Instant::now() + ttl);
//!         done(self.with(|m| match m.entry(key.as_str().into()) {
//!             std::collections::hash_map::Entry::Occupied(_) => false,
//!             std::collections::hash_map::Entry::Vacant(v) => { v.insert(entry); true }
//!         }))
//!     }
//!     fn delete_if_eq<'a>(&'a self, key: &'a RedisKey, expected: &'a [u8]) -> StoreFuture<'a, bool> {
//!         done(self.with(|m| {
//!             let same = m.get(key.as_str()).is_some_and(|(v, _)| v.as_ref() == expected);
//!             same && m.remove(key.as_str()).is_some()
//!         }))
//!     }
//!     fn delete<'a>(&'a self, key: &'a RedisKey) -> StoreFuture<'a, bool> {
//!         done(self.with(|m| m.remove(key.as_str()).is_some()))
//!     }
//!     fn expire<'a>(&'a self, key: &'a RedisKey, ttl: Duration) -> StoreFuture<'a, bool> {
//!         done(self.with(|m| m.get_mut(key.as_str()).map(|e| e.1 = Instant::now() + ttl).is_some()))
//!     }
//!     fn incr<'a>(&'a self, key: &'a RedisKey) -> StoreFuture<'a, u64> {
//!         done(self.with(|m| {
//!             let far = Instant::now() + Duration::from_secs(365 * 24 * 3600);
//!             let e = m.entry(key.as_str().into()).or_insert((Bytes::from_static(b"0"), far));
//!             let n = std::str::from_utf8(&e.0).ok().and_then(|s| s.parse::<u64>().ok()).unwrap_or(0) + 1;
//!             e.0 = Bytes::from(n.to_string());
//!             n
//!         }))
//!     }
//! }
//!
//! let cache = Cache::with_store(MapStore::default(), None, CacheConfig::default(), Keys::default(), &Metrics::new());
//! let acme = TenantId::new("acme")?;
//! let first = cache.get_or_compute(&acme, &Category::query(), &"q", || async { Ok::<_, String>(42) }).await?;
//! assert_eq!(first.status, CacheStatus::Miss);
//! let again = cache.get_or_compute(&acme, &Category::query(), &"q", || async { Ok::<_, String>(0) }).await?;
//! assert_eq!((again.value, again.status), (42, CacheStatus::HitL2));
//! // Tenants never share entries.
//! let globex = TenantId::new("globex")?;
//! let other = cache.get_or_compute(&globex, &Category::query(), &"q", || async { Ok::<_, String>(7) }).await?;
//! assert_eq!((other.value, other.status), (7, CacheStatus::Miss));
//! # Ok(()) }
//! ```
//!
//! [`TenantGuard::from_env`]: crate::TenantGuard::from_env
