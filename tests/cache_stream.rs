//! Event streams (`text/event-stream`) through the cache layer, on the memory backend and
//! on a real redis-server: on a miss the first event reaches the client before the
//! upstream has finished; a hit replays the stream byte for byte with its headers; callers
//! of the same request meanwhile get the stream live from the leader (one upstream call);
//! a failed, abandoned or oversized stream is never stored; a leader's client that stops
//! reading holds no follower back, and one that leaves lets its followers finish; a second
//! instance waits on the lease and is served the stored stream.

#[macro_use]
mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::routing::post;
use bytes::Bytes;
use http_body_util::BodyExt;
use tokio::sync::watch;
use tower::ServiceExt;

use tenant_guard::backend::Backend;
use tenant_guard::cache::{Cache, CacheLayer, CacheStatus};
use tenant_guard::config::Config;
use tenant_guard::metrics::Metrics;
use tenant_guard::tenant::TenantLayer;

const FIRST: &[u8] = b"data: {\"token\":\"Hel\"}\n\n";
const REST: [&[u8]; 2] = [b"data: {\"token\":\"lo\"}\n\n", b"data: [DONE]\n\n"];

/// How the upstream ends its stream once the gate opens.
#[derive(Clone, Copy, PartialEq)]
enum Ending {
    Complete,
    Fail,
}

/// The model behind the cache: sends its first event at once, the rest when the test
/// opens the gate.
struct Upstream {
    calls: AtomicUsize,
    gate: watch::Sender<bool>,
    ending: Ending,
}

impl Upstream {
    fn new(ending: Ending) -> Arc<Self> {
        Arc::new(Self {
            calls: AtomicUsize::new(0),
            gate: watch::Sender::new(false),
            ending,
        })
    }

    fn open(&self) {
        self.gate.send_replace(true);
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

async fn complete(State(up): State<Arc<Upstream>>) -> http::Response<Body> {
    up.calls.fetch_add(1, Ordering::SeqCst);
    let gate = up.gate.subscribe();
    let ending = up.ending;
    let events = futures_util::stream::unfold(0usize, move |i| {
        let mut gate = gate.clone();
        async move {
            if i == 0 {
                return Some((Ok::<_, std::io::Error>(Bytes::from_static(FIRST)), 1));
            }
            let _ = gate.wait_for(|open| *open).await;
            if ending == Ending::Fail {
                return (i == 1).then(|| (Err(std::io::Error::other("model crashed")), 99));
            }
            REST.get(i - 1).map(|c| (Ok(Bytes::from_static(c)), i + 1))
        }
    });
    http::Response::builder()
        .header("content-type", "text/event-stream")
        .header("cache-control", "no-transform")
        .body(Body::from_stream(events))
        .unwrap()
}

fn cache(vars: &[(&str, String)]) -> Cache {
    let config = Config::from_vars(vars.iter().cloned()).unwrap();
    let metrics = Metrics::new();
    let backend = Backend::from_config(&config, &metrics).unwrap();
    Cache::from_config(&config, backend, &metrics)
}

fn app(cache: Cache, up: &Arc<Upstream>) -> Router {
    Router::new()
        .route("/api/ai/complete", post(complete))
        .with_state(up.clone())
        .route_layer(CacheLayer::ai(cache))
        .layer(TenantLayer::from_config(&Default::default()))
}

fn ask() -> http::Request<Body> {
    http::Request::post("/api/ai/complete")
        .header("x-tenant-id", "acme")
        .header("content-type", "application/json")
        .body(Body::from(
            r#"{"model":"m","prompt":"say hello","stream":true}"#,
        ))
        .unwrap()
}

/// Sends `ask()`: where the answer came from (the layer's `CacheStatus`, `HitL1`,
/// `Coalesced`, ...), the headers and the body (unread).
async fn send(app: &Router) -> (String, http::HeaderMap, Body) {
    // Within 5 s: a layer that read the stream whole before answering would hold the
    // response until the upstream finished (never, before the gate opens).
    let res = tokio::time::timeout(Duration::from_secs(5), app.clone().oneshot(ask()))
        .await
        .expect("the response head arrives before the upstream finishes")
        .unwrap();
    assert_eq!(res.status(), 200);
    let status = res
        .extensions()
        .get::<CacheStatus>()
        .expect("the layer's status");
    let x = format!("{status:?}");
    // (X-Cache says MISS for a coalesced wait: the answer was not in the cache.)
    let header = res.headers()["x-cache"].to_str().unwrap();
    assert_eq!(header, status.header());
    let (parts, body) = res.into_parts();
    (x, parts.headers, body)
}

/// The next data of `body`, within 5 s (a layer that buffered the stream would hold the
/// first event until the upstream finished: never, here, before the gate opens).
async fn next_data(body: &mut Body) -> Bytes {
    let frame = tokio::time::timeout(Duration::from_secs(5), body.frame())
        .await
        .expect("the first event arrives before the upstream finishes")
        .expect("a frame")
        .expect("not an error");
    frame.into_data().expect("data")
}

async fn rest(body: Body) -> Result<Bytes, String> {
    tokio::time::timeout(Duration::from_secs(10), body.collect())
        .await
        .expect("the stream ends")
        .map(|c| c.to_bytes())
        .map_err(|e| e.to_string())
}

fn whole() -> Vec<u8> {
    let mut all = FIRST.to_vec();
    for c in REST {
        all.extend_from_slice(c);
    }
    all
}

on_each_backend!(
    a_miss_streams_and_a_hit_replays_it,
    callers_meanwhile_get_the_stream_live,
    a_failed_stream_is_not_stored,
    a_dropped_stream_is_not_stored,
    an_oversized_stream_is_not_stored,
    a_leader_that_stops_reading_holds_no_one_back,
    followers_finish_when_the_leader_leaves,
    streamed_and_whole_answers_never_cross,
);

/// `"stream": true` gets an event stream and `"stream": false` a JSON body, whichever was
/// cached first: the two are different keys.
async fn streamed_and_whole_answers_never_cross(vars: Vec<(&str, String)>) {
    let app = Router::new()
        .route(
            "/api/ai/complete",
            post(|body: String| async move {
                if body.contains(r#""stream":true"#) {
                    (
                        [("content-type", "text/event-stream")],
                        "data: hi\n\n".to_string(),
                    )
                } else {
                    (
                        [("content-type", "application/json")],
                        r#"{"text":"hi"}"#.to_string(),
                    )
                }
            }),
        )
        .route_layer(CacheLayer::ai(cache(&vars)))
        .layer(TenantLayer::from_config(&Default::default()));
    let ask = |stream: bool| {
        http::Request::post("/api/ai/complete")
            .header("x-tenant-id", "acme")
            .header("content-type", "application/json")
            .body(Body::from(format!(
                r#"{{"model":"m","prompt":"p","stream":{stream}}}"#
            )))
            .unwrap()
    };
    for round in 0..2 {
        for stream in [true, false] {
            let res = app.clone().oneshot(ask(stream)).await.unwrap();
            let x = res.headers()["x-cache"].to_str().unwrap().to_string();
            assert_eq!(
                x,
                if round == 0 { "MISS" } else { "HIT" },
                "stream {stream}"
            );
            let want = if stream {
                "text/event-stream"
            } else {
                "application/json"
            };
            assert_eq!(res.headers()["content-type"], want, "stream {stream}");
            let body = rest(res.into_body()).await.unwrap();
            let want: &[u8] = if stream {
                b"data: hi\n\n"
            } else {
                br#"{"text":"hi"}"#
            };
            assert_eq!(&body[..], want, "stream {stream}, round {round}");
        }
    }
}

async fn a_miss_streams_and_a_hit_replays_it(vars: Vec<(&str, String)>) {
    let up = Upstream::new(Ending::Complete);
    let app = app(cache(&vars), &up);
    let (x, headers, mut body) = send(&app).await;
    assert_eq!(x, "Miss");
    assert_eq!(headers["content-type"], "text/event-stream");
    assert_eq!(next_data(&mut body).await, FIRST);
    up.open();
    let mut got = FIRST.to_vec();
    got.extend_from_slice(&rest(body).await.unwrap());
    assert_eq!(got, whole());
    // Stored before its end went out: asked again at once, it is a hit, byte for byte.
    let (x, headers, body) = send(&app).await;
    assert!(x.starts_with("Hit"), "{x}");
    assert_eq!(headers["content-type"], "text/event-stream");
    assert_eq!(headers["cache-control"], "no-transform");
    assert_eq!(rest(body).await.unwrap(), whole());
    assert_eq!(up.calls(), 1);
}

async fn callers_meanwhile_get_the_stream_live(vars: Vec<(&str, String)>) {
    let up = Upstream::new(Ending::Complete);
    let app = app(cache(&vars), &up);
    let (x, _, mut leader) = send(&app).await;
    assert_eq!(x, "Miss");
    assert_eq!(next_data(&mut leader).await, FIRST);
    // The upstream is still on its first event: the followers get it now, not at its end.
    let mut followers = Vec::new();
    for _ in 0..3 {
        let (x, headers, mut body) = send(&app).await;
        assert_eq!(x, "Coalesced");
        assert_eq!(headers["content-type"], "text/event-stream");
        assert_eq!(next_data(&mut body).await, FIRST);
        followers.push(body);
    }
    up.open();
    let mut got = FIRST.to_vec();
    got.extend_from_slice(&rest(leader).await.unwrap());
    assert_eq!(got, whole());
    for body in followers {
        let mut got = FIRST.to_vec();
        got.extend_from_slice(&rest(body).await.unwrap());
        assert_eq!(got, whole());
    }
    assert_eq!(up.calls(), 1, "one upstream stream for all of them");
    let (x, _, body) = send(&app).await;
    assert!(x.starts_with("Hit"), "{x}");
    assert_eq!(rest(body).await.unwrap(), whole());
}

async fn a_failed_stream_is_not_stored(vars: Vec<(&str, String)>) {
    let up = Upstream::new(Ending::Fail);
    let app = app(cache(&vars), &up);
    let (_, _, mut leader) = send(&app).await;
    assert_eq!(next_data(&mut leader).await, FIRST);
    let (x, _, mut follower) = send(&app).await;
    assert_eq!(x, "Coalesced");
    assert_eq!(next_data(&mut follower).await, FIRST);
    up.open();
    assert!(rest(leader).await.is_err(), "the leader sees the failure");
    assert!(
        rest(follower).await.is_err(),
        "a follower's copy of a failed stream does not end as if complete"
    );
    // Never stored: asked again, the upstream runs again.
    let (x, _, body) = send(&app).await;
    assert!(
        !x.starts_with("Hit"),
        "a failed stream was served from the cache"
    );
    let _ = rest(body).await;
    assert_eq!(up.calls(), 2);
}

async fn a_dropped_stream_is_not_stored(vars: Vec<(&str, String)>) {
    let up = Upstream::new(Ending::Complete);
    let app = app(cache(&vars), &up);
    let (_, _, mut leader) = send(&app).await;
    assert_eq!(next_data(&mut leader).await, FIRST);
    drop(leader);
    up.open();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let (x, _, body) = send(&app).await;
    assert_eq!(x, "Miss", "a stream its client left was stored");
    assert_eq!(rest(body).await.unwrap(), whole());
    assert_eq!(up.calls(), 2);
    // That one completed: stored.
    let (x, _, _) = send(&app).await;
    assert!(x.starts_with("Hit"), "{x}");
}

/// The leader's client reads the first event, then nothing (a client that stops reading,
/// so its server stops sending): the upstream is read on by a task of its own, a caller who
/// joined gets the whole answer, it is stored, and the leader still gets all of it later.
async fn a_leader_that_stops_reading_holds_no_one_back(vars: Vec<(&str, String)>) {
    let up = Upstream::new(Ending::Complete);
    let app = app(cache(&vars), &up);
    let (x, _, mut leader) = send(&app).await;
    assert_eq!(x, "Miss");
    assert_eq!(next_data(&mut leader).await, FIRST);
    let (x, _, follower) = send(&app).await;
    assert_eq!(x, "Coalesced");
    up.open();
    assert_eq!(
        rest(follower).await.unwrap(),
        whole(),
        "the follower waited on the leader's client"
    );
    let (x, _, body) = send(&app).await;
    assert!(x.starts_with("Hit"), "{x}");
    assert_eq!(rest(body).await.unwrap(), whole());
    let mut got = FIRST.to_vec();
    got.extend_from_slice(&rest(leader).await.unwrap());
    assert_eq!(got, whole());
    assert_eq!(up.calls(), 1);
}

/// The leader's client leaves while a caller follows the stream: it is read on for the
/// follower, who gets all of it, and (complete) stored.
async fn followers_finish_when_the_leader_leaves(vars: Vec<(&str, String)>) {
    let up = Upstream::new(Ending::Complete);
    let app = app(cache(&vars), &up);
    let (_, _, mut leader) = send(&app).await;
    assert_eq!(next_data(&mut leader).await, FIRST);
    let (x, _, mut follower) = send(&app).await;
    assert_eq!(x, "Coalesced");
    assert_eq!(next_data(&mut follower).await, FIRST);
    drop(leader);
    tokio::time::sleep(Duration::from_millis(50)).await;
    up.open();
    let mut got = FIRST.to_vec();
    got.extend_from_slice(&rest(follower).await.unwrap());
    assert_eq!(got, whole(), "the follower's copy ends whole");
    let (x, _, body) = send(&app).await;
    assert!(x.starts_with("Hit"), "{x}");
    assert_eq!(rest(body).await.unwrap(), whole());
    assert_eq!(up.calls(), 1);
}

async fn an_oversized_stream_is_not_stored(mut vars: Vec<(&str, String)>) {
    // Room for the first event (24 bytes, and 32 charged per chunk), not the rest.
    vars.push(("CACHE_MAX_BODY_BYTES", "56".into()));
    let up = Upstream::new(Ending::Complete);
    let app = app(cache(&vars), &up);
    let (x, _, mut leader) = send(&app).await;
    assert_eq!(x, "Miss");
    assert_eq!(next_data(&mut leader).await, FIRST);
    up.open();
    let mut got = FIRST.to_vec();
    got.extend_from_slice(&rest(leader).await.unwrap());
    assert_eq!(got, whole(), "the leader gets all of it past the cap");
    let (x, _, body) = send(&app).await;
    // Not stored: a miss, or (when it arrives while the first recording is still being
    // wound up, as on a loaded machine) a caller told to send its own request: a bypass.
    assert!(
        x == "Miss" || x == "Bypass",
        "a stream over the cap was stored: {x}"
    );
    assert_eq!(rest(body).await.unwrap(), whole());
}

/// Two instances on one Redis: the second waits on the first's lease while it streams,
/// then is served the stored stream; the upstream runs once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_instance_waits_on_the_lease_and_gets_the_stream() {
    let server = common::RedisServer::start();
    let vars = vec![("REDIS_URL", server.url())];
    let up = Upstream::new(Ending::Complete);
    let (a, b) = (app(cache(&vars), &up), app(cache(&vars), &up));
    let (x, _, mut leader) = send(&a).await;
    assert_eq!(x, "Miss");
    assert_eq!(next_data(&mut leader).await, FIRST);
    let other = tokio::spawn(async move {
        let (x, _, body) = send(&b).await;
        (x, rest(body).await.unwrap())
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !other.is_finished(),
        "the other instance waits for the fill"
    );
    up.open();
    let mut got = FIRST.to_vec();
    got.extend_from_slice(&rest(leader).await.unwrap());
    let (x, body) = other.await.unwrap();
    assert_eq!(x, "Coalesced");
    assert_eq!(body, whole());
    assert_eq!(got, whole());
    assert_eq!(up.calls(), 1);
}
