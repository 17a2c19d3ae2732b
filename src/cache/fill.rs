//! [`Fill`]: what a cache miss of the HTTP layer runs — the inner service, then whether and
//! how its response is kept (stored whole, streamed while recorded, shared as an error,
//! or passed on uncached) — and the background refresh of a stale-while-revalidate entry.

use std::sync::Arc;
use std::time::Duration;

use axum::BoxError;
use axum::body::{Body, HttpBody};
use bytes::Bytes;
use futures_util::StreamExt;
use http::header::{self, HeaderName};
use http::request::Parts;
use http::{Request, Response};
use tower_service::Service;

use super::engine::{Mode, Served};
use super::entry::{Entry, now_ms};
use super::flight::SharedFailure;
use super::layer::Settings;
use super::recording::Recording;
use super::service::{
    buffer, content_length, directives, from_entry, kept_headers, learn_vary, vary_covered,
    with_status,
};
use super::stream::{is_event_stream, lead};
use super::{Cache, CacheKey, CacheStatus, CacheTags, Computed, InvalidTags, TAGS_HEADER};

/// A response's tags — the [`CacheTags`] extension and the `X-Cache-Tags` header, merged —
/// both taken off it.
fn take_tags(parts: &mut http::response::Parts) -> Result<CacheTags, InvalidTags> {
    let mut names: Vec<String> = parts
        .extensions
        .remove::<CacheTags>()
        .map(|t| t.iter().map(str::to_string).collect())
        .unwrap_or_default();
    let mut bad = None;
    for v in parts.headers.get_all(TAGS_HEADER) {
        match v
            .to_str()
            .map_err(|_| InvalidTags::Tag("(not visible ASCII)".into()))
        {
            Ok(v) if names.len() <= CacheTags::MAX_TAGS => match CacheTags::parse(v) {
                Ok(t) => names.extend(t.iter().map(str::to_string)),
                Err(e) => bad = Some(e),
            },
            Ok(_) => bad = Some(InvalidTags::TooMany(names.len())),
            Err(e) => bad = Some(e),
        }
    }
    parts.headers.remove(TAGS_HEADER);
    match bad {
        Some(e) => Err(e),
        None => CacheTags::new(names),
    }
}

/// The tags [`AnyBody::call`] took off a response, for [`Fill::run`] to store it with.
#[derive(Clone)]
struct TakenTags(Result<CacheTags, InvalidTags>);

/// The inner service with its response body made an axum [`Body`]: the layer stores and
/// replays bytes, whatever body type the inner service answers with. Every response of
/// the inner service comes through here, so its tags (header and extension) are taken off
/// here, whatever path it goes out by (stored, streamed, bypassed).
pub(super) struct AnyBody<S>(pub(super) S);

impl<S, ResBody> AnyBody<S>
where
    S: Service<Request<Body>, Response = Response<ResBody>>,
    ResBody: HttpBody<Data = Bytes> + Send + 'static,
    ResBody::Error: Into<BoxError>,
{
    pub(super) async fn call(&mut self, req: Request<Body>) -> Result<Response<Body>, S::Error> {
        self.0.call(req).await.map(|res| {
            let (mut parts, body) = res.into_parts();
            let tags = take_tags(&mut parts);
            parts.extensions.insert(TakenTags(tags));
            Response::from_parts(parts, Body::new(body))
        })
    }
}

/// One miss of the HTTP layer: its route's settings and what the key was built from.
pub(super) struct Fill {
    pub(super) settings: Arc<Settings>,
    /// The headers the key holds (`Vary`), sorted.
    pub(super) vary_names: Vec<HeaderName>,
    /// The matched route template (where learned `Vary` headers are kept).
    pub(super) template: String,
    pub(super) ttl_default: Duration,
}

impl Fill {
    /// Sends `req` to the inner service and says what to do with its response.
    pub(super) async fn run<S, ResBody>(
        &self,
        inner: &mut AnyBody<S>,
        req: Request<Body>,
    ) -> Computed<Result<Response<Body>, S::Error>>
    where
        S: Service<Request<Body>, Response = Response<ResBody>>,
        ResBody: HttpBody<Data = Bytes> + Send + 'static,
        ResBody::Error: Into<BoxError>,
    {
        let settings = &self.settings;
        // The TTL hook reads the request after the response is known: keep a copy
        // of its head, only on a miss and only when there is a hook.
        let (req, ttl_hint) = match &settings.ttl {
            Some(f) => {
                let (head, body) = req.into_parts();
                let hint = (f.clone(), head.clone());
                (Request::from_parts(head, body), Some(hint))
            }
            None => (req, None),
        };
        let res = match inner.call(req).await {
            Ok(r) => r,
            Err(e) => return Computed::Private(Err(e)),
        };
        let (mut rparts, rbody) = res.into_parts();
        // Taken off by `AnyBody::call`: tags are for this layer, never for the client.
        let tags = rparts
            .extensions
            .remove::<TakenTags>()
            .map_or_else(|| Ok(CacheTags::default()), |t| t.0);
        if let Err(e) = &tags {
            tracing::debug!(error = %e, route = %self.template, "response not cached");
        }
        let status = rparts.status;
        let res_cc = directives(&rparts.headers);
        let vary_ok = vary_covered(&rparts.headers, &self.vary_names, |missing| {
            learn_vary(&settings.learned_vary, &self.template, missing);
        });
        let storable = settings.statuses.contains(&status)
            && tags.is_ok()
            && vary_ok
            && !rparts.headers.contains_key(header::SET_COOKIE)
            && !res_cc.iter().any(|d| d == "no-store" || d == "private");
        let shareable_error =
            status.is_server_error() && vary_ok && !rparts.headers.contains_key(header::SET_COOKIE);
        if !(storable || shareable_error)
            || content_length(&rparts.headers).is_some_and(|n| n > settings.max_body)
        {
            let res = Response::from_parts(rparts, rbody);
            return Computed::Private(Ok(with_status(res, CacheStatus::Bypass, None)));
        }
        let ttl_for = |status| {
            ttl_hint
                .as_ref()
                .and_then(|(f, p): &(_, Parts)| f(p, status))
                .unwrap_or(self.ttl_default)
        };
        if storable && is_event_stream(&rparts.headers) {
            // An event stream goes out as it arrives, recorded on the way.
            let rec = Recording::new(
                status.as_u16(),
                kept_headers(&rparts.headers),
                tags.unwrap_or_default().unstamped(),
                settings.max_body,
            );
            let body = lead(rbody, rec.clone());
            let res = Response::from_parts(rparts, body);
            let res = with_status(res, CacheStatus::Miss, None);
            return Computed::Stream(rec, ttl_for(status), Ok(res));
        }
        let bytes = match buffer(rbody, settings.max_body).await {
            Ok(b) => b,
            Err(replay) => {
                let res = Response::from_parts(rparts, replay);
                return Computed::Private(Ok(with_status(res, CacheStatus::Bypass, None)));
            }
        };
        let entry = Entry {
            stored_ms: now_ms(),
            fresh_until_ms: now_ms(),
            status: status.as_u16(),
            headers: kept_headers(&rparts.headers),
            body: bytes,
            gens: [0, 0],
            tags: tags.unwrap_or_default().unstamped(),
        };
        let own = from_entry(&entry, CacheStatus::Miss);
        if shareable_error {
            return Computed::Share(SharedFailure::Response(Arc::new(entry)), Ok(own));
        }
        Computed::Store(entry, ttl_for(status), Ok(own))
    }

    /// The background refresh of a stale-while-revalidate entry: sends `req` again and
    /// stores the answer, unless a fill of the key already runs (here, or on another
    /// instance: the lease). A streamed answer is read to its end, so that it is stored.
    pub(super) async fn refresh<S, ResBody>(
        &self,
        cache: &Cache,
        key: &CacheKey,
        inner: &mut AnyBody<S>,
        req: Request<Body>,
    ) where
        S: Service<Request<Body>, Response = Response<ResBody>>,
        ResBody: HttpBody<Data = Bytes> + Send + 'static,
        ResBody::Error: Into<BoxError>,
    {
        let mut req = Some(req);
        let served = cache
            .serve_in(Mode::Refresh, key, true, true, || async {
                self.run(inner, req.take().expect("sent once")).await
            })
            .await;
        if let Served::Own(Ok(res)) = served {
            let mut data = res.into_body().into_data_stream();
            while let Some(Ok(_)) = data.next().await {}
        }
    }
}
