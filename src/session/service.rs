//! [`SessionService`]: gives each request a lazy [`Session`](super::Session), publishes the
//! caller's `UserId` and `SessionCredential`, and saves what the handler changed.

use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::future::BoxFuture;
use http::{header, HeaderValue, Request, Response};
use tower_service::Service;
use tracing::field::Empty;
use tracing::Instrument;

use super::cookie::CookieState;
use super::handle::{CookieAction, Session};
use super::layer::Settings;
use crate::tenant::{SessionCredential, TenantId, UserId};

/// The service made by [`SessionLayer`](super::SessionLayer).
#[derive(Debug, Clone)]
pub struct SessionService<S> {
    pub(super) inner: S,
    pub(super) shared: Arc<Settings>,
}

crate::macros::inner_service_accessors!(SessionService);

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for SessionService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    ReqBody: Send + 'static,
    ResBody: From<String> + Send + 'static,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Response<ResBody>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let span = tracing::info_span!(
            "tenant_guard.session",
            request_id = Empty,
            cookie = Empty,
            saved = Empty,
        );
        let mut req = req;
        crate::trace::record_request_id(&mut req, &span);
        let settings = self.shared.clone();
        let tenant = req
            .extensions()
            .get::<TenantId>()
            .cloned()
            .unwrap_or_else(|| settings.global.clone());
        let cookie = settings.codec.decode(req.headers(), &tenant);
        let session = Session::new(tenant, settings.store.clone(), cookie);
        span.record(
            "cookie",
            match session.cookie() {
                CookieState::Absent => "none",
                CookieState::Valid(_) => "valid",
                CookieState::Invalid => "invalid",
                CookieState::OtherTenant => "other-tenant",
            },
        );
        req.extensions_mut().insert(session.clone());
        // Only a request with cookies needs telling apart by them: without any, "no
        // credential" is what every reader concludes anyway (and the insert is saved).
        if req.headers().contains_key(header::COOKIE) {
            let credential = session
                .cookie_id()
                .map_or_else(SessionCredential::none, |id| {
                    SessionCredential::new(id.as_str())
                });
            req.extensions_mut().insert(credential);
        }
        // The inner service was made ready by poll_ready: call that one, leave a clone.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let here = span.clone();
        let fut = async move {
            if settings.expose_user && matches!(session.cookie(), CookieState::Valid(_)) {
                match session.user_id().await {
                    Ok(Some(user)) => {
                        req.extensions_mut().insert(UserId::new(user));
                    }
                    Ok(None) => {}
                    // The handler will see the same error if it touches the session; the
                    // rate limiter falls back to the client IP.
                    Err(e) => tracing::debug!(error = %e, "session user not available"),
                }
            }
            let mut res = inner.call(req).await?;
            if res.status().is_server_error() {
                // Never persist what a failing handler left behind.
                here.record("saved", "skipped");
                return Ok(res);
            }
            let set_cookie: Option<HeaderValue> = match session.commit().await {
                Ok(CookieAction::Keep) => {
                    here.record("saved", "kept");
                    None
                }
                Ok(CookieAction::Set(id)) => {
                    here.record("saved", "set");
                    Some(settings.codec.encode(session.tenant(), &id))
                }
                Ok(CookieAction::Remove) => {
                    here.record("saved", "removed");
                    Some(settings.codec.removal())
                }
                Err(e) => {
                    here.record("saved", "failed");
                    tracing::warn!(error = %e, "session not saved");
                    return Ok(e.to_problem().into_response());
                }
            };
            if let Some(v) = set_cookie {
                res.headers_mut().append(header::SET_COOKIE, v);
            }
            Ok(res)
        };
        Box::pin(fut.instrument(span))
    }
}
