//! A quick constructor: sessions in process (the memory backend), no configuration but the
//! cookie secret.

use super::{SessionConfig, SessionLayer, SessionStore};
use crate::InvalidValue;
use crate::backend::{Backend, MemoryStore};
use crate::keys::Keys;
use crate::metrics::Metrics;
use crate::secret::Secret;

/// The shortest secret accepted, as for `SESSION_SECRET`.
const MIN_SECRET: usize = 32;

impl SessionLayer {
    /// Sessions kept in process (the memory backend, bounded like `TG_MEMORY_*` defaults),
    /// cookies signed with `secret` (at least 32 bytes), every other setting its default
    /// (24 h inactivity, 7 days at most, `Secure` `__Host-sid` cookie). Must run inside a
    /// Tokio runtime.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use axum::{routing::get, Router};
    /// use tenant_guard::session::{Session, SessionLayer};
    /// let layer = SessionLayer::memory("a secret of at least thirty-two bytes!").unwrap();
    /// let app: Router = Router::new()
    ///     .route("/", get(|s: Session| async move { s.insert("seen", &true).await.map(|_| "hi") }))
    ///     .layer(layer);
    /// use tower::ServiceExt;
    /// let res = app.oneshot(http::Request::get("/").body(axum::body::Body::empty()).unwrap()).await.unwrap();
    /// assert_eq!(res.status(), 200);
    /// assert!(res.headers()["set-cookie"].to_str().unwrap().starts_with("__Host-sid="));
    /// assert!(SessionLayer::memory("short").is_err());
    /// # }
    /// ```
    pub fn memory(secret: &str) -> Result<Self, InvalidValue> {
        if secret.len() < MIN_SECRET {
            return Err(format!("a session secret has at least {MIN_SECRET} bytes").into());
        }
        let config = SessionConfig {
            secret: Some(Secret::new(secret)),
            ..SessionConfig::default()
        };
        let backend = Backend::Memory(MemoryStore::new(Default::default()));
        let store = SessionStore::new(backend, &config, Keys::default(), &Metrics::new());
        Ok(Self::from_config(&config, store))
    }
}
