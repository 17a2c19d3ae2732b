//! Pub/sub through the backend: `PUBLISH` on the shared connection (its timeouts and
//! circuit breaker), and a subscription on a dedicated connection that reconnects with
//! backoff, waits while the breaker is open, and reports each state change. On the memory
//! backend there is one process, so there is nobody to tell: publishing does nothing and
//! there is no subscription.

#[cfg(feature = "redis")]
use std::time::Duration;

use super::{Backend, BackendError};

/// What a subscription reports to its handler.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use tenant_guard::backend::{Backend, PubSubEvent};
/// use tenant_guard::{config::Config, metrics::Metrics};
///
/// // Nothing listens on port 9 here: the subscription says it cannot connect.
/// let config = Config::from_vars([("REDIS_URL", "redis://127.0.0.1:9")]).unwrap();
/// let backend = Backend::from_config(&config, &Metrics::new()).unwrap();
/// let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
/// let task = backend.subscribe("news".into(), move |event| {
///     let text = match event {
///         PubSubEvent::Live => "live".to_string(),
///         PubSubEvent::Message(m) => format!("message {m}"),
///         PubSubEvent::Lost => "lost".to_string(),
///         PubSubEvent::Unreachable => "unreachable".to_string(),
///     };
///     let _ = tx.send(text);
///     false // stop after the first event
/// }).unwrap();
/// assert_eq!(rx.recv().await.as_deref(), Some("unreachable"));
/// task.abort();
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PubSubEvent<'a> {
    /// Subscribed (first time, or again after a drop): messages published while it was
    /// down are lost.
    Live,
    /// A message.
    Message(&'a str),
    /// The subscription dropped; it reconnects.
    Lost,
    /// A connection attempt failed; it tries again after a pause.
    Unreachable,
}

impl Backend {
    /// `PUBLISH channel message` on Redis; nothing on memory. Returns how many
    /// subscribers received it (0 on memory).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use tenant_guard::backend::{Backend, MemoryStore};
    /// let memory = Backend::Memory(MemoryStore::new(Default::default()));
    /// assert_eq!(memory.publish("news", "hello").await.unwrap(), 0);
    /// # }
    /// ```
    pub async fn publish(&self, channel: &str, message: &str) -> Result<u64, BackendError> {
        match self {
            Self::Memory(_) => {
                let _ = (channel, message);
                Ok(0)
            }
            #[cfg(feature = "redis")]
            Self::Redis(r) => r.publish(channel, message).await,
        }
    }

    /// Subscribes to `channel` in a background task (Redis, inside a Tokio runtime; `None`
    /// otherwise) that calls `handler` with every [`PubSubEvent`] until it returns false
    /// or the task is aborted through the returned handle.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use tenant_guard::backend::{Backend, MemoryStore};
    /// let memory = Backend::Memory(MemoryStore::new(Default::default()));
    /// assert!(memory.subscribe("news".into(), |_| true).is_none());
    /// # }
    /// ```
    pub fn subscribe<F>(&self, channel: String, handler: F) -> Option<tokio::task::AbortHandle>
    where
        F: FnMut(PubSubEvent<'_>) -> bool + Send + 'static,
    {
        match self {
            Self::Memory(_) => {
                let _ = (channel, handler);
                None
            }
            #[cfg(feature = "redis")]
            Self::Redis(r) => r.subscribe(channel, handler),
        }
    }
}

#[cfg(feature = "redis")]
impl super::RedisStore {
    /// Subscribes to `channel` in a background task (inside a Tokio runtime; `None`
    /// otherwise) that calls `handler` with every [`PubSubEvent`] until it returns false
    /// or the task is aborted through the returned handle.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use tenant_guard::backend::{Health, PubSubEvent, RedisStore};
    /// use tenant_guard::config::Config;
    ///
    /// // Nothing listens on port 9 here: the handler hears of each failed attempt.
    /// let config = Config::from_vars([("REDIS_URL", "redis://127.0.0.1:9")]).unwrap();
    /// let store = RedisStore::new(&config.redis, Health::new(config.breaker, Default::default())).unwrap();
    /// let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    /// let task = store.subscribe("news".into(), move |event| {
    ///     let _ = tx.send(event == PubSubEvent::Unreachable);
    ///     false // one event is enough here
    /// }).unwrap();
    /// assert_eq!(rx.recv().await, Some(true));
    /// task.abort();
    /// # }
    /// ```
    pub fn subscribe<F>(&self, channel: String, handler: F) -> Option<tokio::task::AbortHandle>
    where
        F: FnMut(PubSubEvent<'_>) -> bool + Send + 'static,
    {
        let rt = tokio::runtime::Handle::try_current().ok()?;
        Some(
            rt.spawn(subscription(self.clone(), channel, handler))
                .abort_handle(),
        )
    }
}

/// The subscription loop: connect (any node will do: classic pub/sub messages reach every
/// node of a cluster), subscribe, forward messages; on any failure report it and start
/// again after a backoff of 100 ms doubling to 2 s.
#[cfg(feature = "redis")]
async fn subscription<F>(store: super::RedisStore, channel: String, mut handler: F)
where
    F: FnMut(PubSubEvent<'_>) -> bool + Send + 'static,
{
    use futures_util::StreamExt;
    let mut backoff = Duration::from_millis(100);
    let pause = |backoff: &mut Duration| {
        let now = *backoff;
        *backoff = (*backoff * 2).min(Duration::from_secs(2));
        tokio::time::sleep(now)
    };
    loop {
        // While the breaker is open Redis is known down: its probe finds out when it is
        // back, and connecting meanwhile would only wait out the connect timeout.
        if !store.health().allows() {
            if !handler(PubSubEvent::Unreachable) {
                return;
            }
            pause(&mut backoff).await;
            continue;
        }
        let mut pubsub = None;
        for client in store.pubsub_clients() {
            if let Ok(Ok(ps)) =
                tokio::time::timeout(store.connect_timeout(), client.get_async_pubsub()).await
            {
                pubsub = Some(ps);
                break;
            }
        }
        let Some(mut ps) = pubsub else {
            if !handler(PubSubEvent::Unreachable) {
                return;
            }
            pause(&mut backoff).await;
            continue;
        };
        if ps.subscribe(&channel).await.is_err() {
            if !handler(PubSubEvent::Unreachable) {
                return;
            }
            pause(&mut backoff).await;
            continue;
        }
        backoff = Duration::from_millis(100);
        if !handler(PubSubEvent::Live) {
            return;
        }
        let mut messages = ps.on_message();
        while let Some(msg) = messages.next().await {
            if let Ok(text) = msg.get_payload::<String>() {
                if !handler(PubSubEvent::Message(&text)) {
                    return;
                }
            }
        }
        drop(messages);
        if !handler(PubSubEvent::Lost) {
            return;
        }
        pause(&mut backoff).await;
    }
}
