//! [`ResponseFuture`]: the future of every request layer — the inner service's future with
//! a step of the layer's own run on its response, an answer ready at once (a refusal), or
//! a boxed future when the layer has to wait for something first (a Redis check, a body
//! read, a session save). The common request — decided in process, nothing to save —
//! takes no allocation and no dynamic call.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use futures_util::future::BoxFuture;
use http::Response;
use pin_project_lite::pin_project;

/// The inner service `poll_ready` made ready, taken out to be called, with a clone left in
/// its place for the next request (tower's rule: the clone may not be ready, the original
/// is). Every layer that calls its inner service from a future of its own takes it so.
pub(crate) fn take_ready<S: Clone>(inner: &mut S) -> S {
    let clone = inner.clone();
    std::mem::replace(inner, clone)
}

/// What a layer does with the inner service's response: done at once, or a future to wait
/// for (boxed: the rare path, e.g. a session that must be saved).
pub enum Step<B, E> {
    /// The response to return.
    Done(Response<B>),
    /// Wait for this first.
    Wait(BoxFuture<'static, Result<Response<B>, E>>),
}

/// The step a layer runs on the inner service's response `R`, giving a `Response<B>`.
pub trait Finish<R, B, E> {
    /// Runs the step.
    fn finish(self, res: R) -> Step<B, E>;
}

/// The response as the inner service gave it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Unchanged;

impl<B, E> Finish<Response<B>, B, E> for Unchanged {
    fn finish(self, res: Response<B>) -> Step<B, E> {
        Step::Done(res)
    }
}

/// The response with its body wrapped (a layer whose body type carries nothing this time).
#[cfg(feature = "axum")]
pub struct MapBody<B, W>(pub fn(B) -> W);

#[cfg(feature = "axum")]
impl<B, W, E> Finish<Response<B>, W, E> for MapBody<B, W> {
    fn finish(self, res: Response<B>) -> Step<W, E> {
        Step::Done(res.map(self.0))
    }
}

pin_project! {
    /// The future of the request layers' services (tenant, session, rate limit, token
    /// budget, concurrency cap): the inner call with the layer's step on its response, a
    /// ready answer, or a boxed future.
    ///
    /// Named only in `Service::Future` types; nothing to build by hand:
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use tower::{Layer, Service, ServiceExt};
    /// let guard = tenant_guard::TenantGuard::from_vars([("REDIS_ENABLED", "false")])?;
    /// let inner = tower::service_fn(|_req: http::Request<axum::body::Body>| async {
    ///     Ok::<_, std::convert::Infallible>(http::Response::new(axum::body::Body::empty()))
    /// });
    /// let mut svc = guard.layer().layer(inner);
    /// let req = http::Request::get("/").header("x-tenant-id", "acme").body(axum::body::Body::empty())?;
    /// let ready = ServiceExt::<http::Request<axum::body::Body>>::ready(&mut svc).await?;
    /// let fut = ready.call(req); // a `tenant_guard::ResponseFuture`
    /// assert_eq!(fut.await?.status(), 200);
    /// # Ok(()) }
    /// ```
    pub struct ResponseFuture<F, B, E, A = Unchanged> {
        #[pin]
        kind: Kind<F, B, E, A>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F, B, E, A> {
        Inner { #[pin] fut: F, then: Option<A> },
        Ready { res: Option<Response<B>> },
        Boxed { fut: BoxFuture<'static, Result<Response<B>, E>> },
    }
}

impl<F, B, E, A> ResponseFuture<F, B, E, A> {
    /// The inner service's future; `then` runs on its response.
    pub(crate) fn inner(fut: F, then: A) -> Self {
        Self {
            kind: Kind::Inner {
                fut,
                then: Some(then),
            },
        }
    }

    /// An answer of the layer's own.
    pub(crate) fn ready(res: Response<B>) -> Self {
        Self {
            kind: Kind::Ready { res: Some(res) },
        }
    }

    /// A future the layer has to wait for.
    pub(crate) fn boxed(fut: BoxFuture<'static, Result<Response<B>, E>>) -> Self {
        Self {
            kind: Kind::Boxed { fut },
        }
    }
}

impl<F, B, E, A> std::fmt::Debug for ResponseFuture<F, B, E, A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = match &self.kind {
            Kind::Inner { .. } => "inner",
            Kind::Ready { .. } => "ready",
            Kind::Boxed { .. } => "boxed",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish()
    }
}

impl<F, R, B, E, A> Future for ResponseFuture<F, B, E, A>
where
    F: Future<Output = Result<R, E>>,
    A: Finish<R, B, E>,
{
    type Output = Result<Response<B>, E>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let wait = match self.as_mut().project().kind.project() {
            KindProj::Inner { fut, then } => {
                let res = ready!(fut.poll(cx))?;
                let then = then.take().expect("ResponseFuture polled after completion");
                match then.finish(res) {
                    Step::Done(res) => return Poll::Ready(Ok(res)),
                    Step::Wait(fut) => fut,
                }
            }
            KindProj::Ready { res } => {
                return Poll::Ready(Ok(res
                    .take()
                    .expect("ResponseFuture polled after completion")));
            }
            KindProj::Boxed { fut } => return fut.as_mut().poll(cx),
        };
        self.as_mut().project().kind.set(Kind::Boxed { fut: wait });
        match self.project().kind.project() {
            KindProj::Boxed { fut } => fut.as_mut().poll(cx),
            _ => unreachable!("just set"),
        }
    }
}
