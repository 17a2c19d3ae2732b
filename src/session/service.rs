//! [`SessionService`]: gives each request a lazy [`Session`](super::Session), publishes the
//! caller's `UserId` and `SessionCredential`, and saves what the handler changed.

use std::sync::Arc;
use std::task::{Context, Poll};

use http::{HeaderValue, Request, Response, header};
use tower_service::Service;
use tracing::field::Empty;
use tracing::instrument::Instrumented;
use tracing::{Instrument, Span};

use super::SessionError;
use super::cookie::CookieState;
use super::handle::{CookieAction, Session};
use super::layer::Settings;
use crate::future::{Finish, ResponseFuture, Step};
use crate::tenant::{SessionCredential, TenantId, UserId};

/// The service made by [`SessionLayer`](super::SessionLayer).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use tower::Layer;
/// # let guard = tenant_guard::TenantGuard::from_vars([("REDIS_ENABLED", "false"), ("SESSION_SECRET", "0123456789abcdef0123456789abcdef")])?;
/// let inner = tower::service_fn(|_req: http::Request<axum::body::Body>| async {
///     Ok::<_, std::convert::Infallible>(http::Response::new(axum::body::Body::empty()))
/// });
/// let svc: tenant_guard::session::SessionService<_> = tenant_guard::session::SessionLayer::memory("0123456789abcdef0123456789abcdef")?.layer(inner);
/// let _inner = svc.get_ref(); // get_mut, into_inner: as tower's middleware
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct SessionService<S> {
    pub(super) inner: S,
    pub(super) shared: Arc<Settings>,
}

crate::macros::inner_service_accessors!(
    SessionService,
    "tenant_guard::session::SessionLayer::memory(\"0123456789abcdef0123456789abcdef\")?"
);

/// The session layer's step on a response: saves what the handler changed and sets or
/// clears the cookie. Nothing to wait for when the session was not touched.
pub struct Save {
    session: Session,
    settings: Arc<Settings>,
    span: Span,
}

impl Save {
    fn respond<B: From<String>>(
        &self,
        mut res: Response<B>,
        committed: Result<CookieAction, SessionError>,
    ) -> Response<B> {
        let set_cookie: Option<HeaderValue> = match committed {
            Ok(CookieAction::Keep) => {
                self.span.record("saved", "kept");
                None
            }
            Ok(CookieAction::Set(id)) => {
                self.span.record("saved", "set");
                Some(self.settings.codec.encode(self.session.tenant(), &id))
            }
            Ok(CookieAction::Remove) => {
                self.span.record("saved", "removed");
                Some(self.settings.codec.removal())
            }
            Err(e) => {
                self.span.record("saved", "failed");
                tracing::warn!(error = %e, "session not saved");
                return e.to_problem().into_response();
            }
        };
        if let Some(v) = set_cookie {
            res.headers_mut().append(header::SET_COOKIE, v);
        }
        res
    }
}

impl<B, E> Finish<Response<B>, B, E> for Save
where
    B: From<String> + Send + 'static,
    E: 'static,
{
    fn finish(self, res: Response<B>) -> Step<B, E> {
        if res.status().is_server_error() {
            // Never persist what a failing handler left behind.
            self.span.record("saved", "skipped");
            return Step::Done(res);
        }
        if let Some(action) = self.session.commit_now() {
            return Step::Done(self.respond(res, Ok(action)));
        }
        let span = self.span.clone();
        Step::Wait(Box::pin(
            async move {
                let committed = self.session.commit().await;
                Ok(self.respond(res, committed))
            }
            .instrument(span),
        ))
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for SessionService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    ReqBody: Send + 'static,
    ResBody: From<String> + Send + 'static,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<Instrumented<S::Future>, ResBody, S::Error, Save>;

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
        let settings = &self.shared;
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
        let save = Save {
            session,
            settings: settings.clone(),
            span: span.clone(),
        };
        if !(settings.expose_user && matches!(save.session.cookie(), CookieState::Valid(_))) {
            // No user to look up first: the inner call unboxed.
            let fut = {
                let _in = span.enter();
                self.inner.call(req)
            };
            return ResponseFuture::inner(fut.instrument(span), save);
        }
        let mut inner = crate::future::take_ready(&mut self.inner);
        ResponseFuture::boxed(Box::pin(
            async move {
                match save.session.user_id().await {
                    Ok(Some(user)) => {
                        req.extensions_mut().insert(UserId::new(user));
                    }
                    Ok(None) => {}
                    // The handler will see the same error if it touches the session; the
                    // rate limiter falls back to the client IP.
                    Err(e) => tracing::debug!(error = %e, "session user not available"),
                }
                let res = inner.call(req).await?;
                match save.finish(res) {
                    Step::Done(res) => Ok(res),
                    Step::Wait(fut) => fut.await,
                }
            }
            .instrument(span),
        ))
    }
}
