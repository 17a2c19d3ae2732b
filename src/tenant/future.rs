//! [`ResponseFuture`] of [`TenantService`](super::TenantService): the inner service's
//! future, a ready answer (400/404), or a boxed one (an async tenant check first).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_util::future::BoxFuture;
use http::Response;
use pin_project_lite::pin_project;
use tracing::instrument::Instrumented;

pin_project! {
    /// Response future of [`TenantService`].
    pub struct ResponseFuture<F, B, E> {
        #[pin]
        kind: Kind<F, B, E>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F, B, E> {
        Inner { #[pin] fut: Instrumented<F> },
        Ready { res: Option<Response<B>> },
        Boxed { fut: BoxFuture<'static, Result<Response<B>, E>> },
    }
}

impl<F, B, E> ResponseFuture<F, B, E> {
    pub(super) fn inner(fut: Instrumented<F>) -> Self {
        Self {
            kind: Kind::Inner { fut },
        }
    }
    pub(super) fn ready(res: Response<B>) -> Self {
        Self {
            kind: Kind::Ready { res: Some(res) },
        }
    }
    pub(super) fn boxed(fut: BoxFuture<'static, Result<Response<B>, E>>) -> Self {
        Self {
            kind: Kind::Boxed { fut },
        }
    }
}

impl<F, B, E> Future for ResponseFuture<F, B, E>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Inner { fut } => fut.poll(cx),
            KindProj::Ready { res } => Poll::Ready(Ok(res
                .take()
                .expect("ResponseFuture polled after completion"))),
            KindProj::Boxed { fut } => fut.as_mut().poll(cx),
        }
    }
}
