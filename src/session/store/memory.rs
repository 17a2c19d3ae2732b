//! Sessions on the memory backend: the same steps as the scripts, under the store's lock.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::backend::ms;
use super::{Lifetimes, SaveOutcome, SessionBackend, SessionInfo, SessionKeys, SessionRecord};
use super::{SessionWrite, StoreFuture, UserChange, UserIndex, WriteMode};
use crate::backend::{BackendError, KeyTtl, MemoryStore, Txn};
use crate::keys::RedisKey;
use crate::session::SessionId;

impl SessionBackend for MemoryStore {
    fn name(&self) -> &'static str {
        "memory"
    }

    fn load<'a>(
        &'a self,
        key: &'a RedisKey,
        lifetimes: Lifetimes,
    ) -> StoreFuture<'a, Option<SessionRecord>> {
        Box::pin(std::future::ready(Ok(load(self, key, ms(lifetimes.max)))))
    }

    fn save<'a>(
        &'a self,
        keys: &'a SessionKeys,
        write: &'a SessionWrite<'a>,
        lifetimes: Lifetimes,
    ) -> StoreFuture<'a, SaveOutcome> {
        Box::pin(std::future::ready(save(self, keys, write, lifetimes)))
    }

    fn user_sessions<'a>(
        &'a self,
        index: &'a UserIndex<'a>,
        revoke: bool,
    ) -> StoreFuture<'a, (Vec<SessionInfo>, u64)> {
        Box::pin(std::future::ready(Ok(user_sessions(self, index, revoke))))
    }

    fn delete<'a>(&'a self, key: &'a RedisKey) -> StoreFuture<'a, bool> {
        Box::pin(std::future::ready(Ok(MemoryStore::delete(self, key))))
    }
}

/// A session in the memory backend (one entry, JSON-encoded; updated field by field under
/// the store's lock, so concurrent updates of different fields are kept, as on Redis).
#[derive(Debug, Default, Serialize, Deserialize)]
struct MemRecord {
    c: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    u: Option<String>,
    #[serde(default)]
    f: BTreeMap<String, String>,
}

fn load(m: &MemoryStore, key: &RedisKey, max_ms: u64) -> Option<SessionRecord> {
    m.transact(|tx| {
        let raw = tx.get(key)?;
        let Ok(rec) = serde_json::from_slice::<MemRecord>(&raw) else {
            tx.delete(key);
            return None;
        };
        let now = tx.now_ms();
        if now >= rec.c.saturating_add(max_ms) {
            tx.delete(key);
            return None;
        }
        let pttl_ms = match tx.ttl(key) {
            KeyTtl::Expires(d) => Some(ms(d)),
            _ => None,
        };
        let mut record = SessionRecord::new(now, rec.c);
        record.pttl_ms = pttl_ms;
        record.user = rec.u;
        record.fields = rec.f.into_iter().collect();
        Some(record)
    })
}

fn read_index(raw: Option<Bytes>) -> BTreeMap<String, u64> {
    raw.and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

fn write_index(
    tx: &mut Txn<'_>,
    key: &RedisKey,
    idx: &BTreeMap<String, u64>,
) -> Result<(), BackendError> {
    let now = tx.now_ms();
    match idx.values().max() {
        Some(&last) if last > now => tx.set(
            key,
            Bytes::from(serde_json::to_vec(idx).unwrap_or_default()),
            Some(Duration::from_millis(last - now)),
        ),
        _ => {
            tx.delete(key);
            Ok(())
        }
    }
}

fn save(
    m: &MemoryStore,
    keys: &SessionKeys,
    op: &SessionWrite<'_>,
    lifetimes: Lifetimes,
) -> Result<SaveOutcome, BackendError> {
    let (idle_ms, max_ms) = (ms(lifetimes.idle), ms(lifetimes.max));
    m.transact_all(|tx| {
        let now = tx.now_ms();
        let key = &keys.session;
        let remove_from_index = |tx: &mut Txn<'_>, member: &str| {
            if let Some(ik) = &keys.index_before {
                let mut idx = read_index(tx.get(ik));
                if idx.remove(member).is_some() {
                    write_index(tx, ik, &idx)?;
                }
            }
            Ok::<_, BackendError>(())
        };
        if op.mode == WriteMode::Destroy {
            tx.delete(key);
            remove_from_index(tx, op.id.as_str())?;
            return Ok(SaveOutcome::Written);
        }
        let mut old_member = op.id.as_str();
        let mut rec = if let (Some(from), Some(from_id)) = (&keys.rename_from, op.rename_from) {
            let Some(raw) = tx.get(from) else {
                return Ok(SaveOutcome::Gone);
            };
            if tx.get(key).is_some() {
                return Ok(SaveOutcome::Collision);
            }
            tx.delete(from);
            old_member = from_id.as_str();
            serde_json::from_slice::<MemRecord>(&raw).unwrap_or_default()
        } else if op.mode == WriteMode::Create {
            if tx.get(key).is_some() {
                return Ok(SaveOutcome::Collision);
            }
            MemRecord {
                c: now,
                ..MemRecord::default()
            }
        } else {
            match tx.get(key) {
                Some(raw) => serde_json::from_slice::<MemRecord>(&raw).unwrap_or_default(),
                None => return Ok(SaveOutcome::Gone),
            }
        };
        // A plain field update of a session renewed less than a renew interval ago keeps
        // its expiry (as on Redis); anything else sets it again.
        let plain = op.mode == WriteMode::Update
            && op.rename_from.is_none()
            && matches!(op.user, UserChange::Keep)
            && !op.clear;
        let kept = match tx.ttl(key) {
            KeyTtl::Expires(left) if op.keep_ttl && plain => Some(ms(left)),
            _ => None,
        };
        let ttl =
            kept.unwrap_or_else(|| idle_ms.min(rec.c.saturating_add(max_ms).saturating_sub(now)));
        if ttl == 0 {
            tx.delete(key);
            remove_from_index(tx, old_member)?;
            return Ok(SaveOutcome::Gone);
        }
        if op.clear {
            rec.f.clear();
        }
        for (k, v) in &op.set {
            rec.f.insert((*k).to_string(), (*v).to_string());
        }
        for k in &op.del {
            rec.f.remove(*k);
        }
        match op.user {
            UserChange::Keep => {}
            UserChange::Set(u) => rec.u = Some(u.to_string()),
            UserChange::Unset => rec.u = None,
        }
        let body = Bytes::from(serde_json::to_vec(&rec).unwrap_or_default());
        tx.set(key, body, Some(Duration::from_millis(ttl)))?;
        remove_from_index(tx, old_member)?;
        if let Some(ik) = &keys.index_after {
            let mut idx = read_index(tx.get(ik));
            idx.insert(op.id.as_str().to_string(), now + ttl);
            idx.retain(|_, at| *at > now);
            write_index(tx, ik, &idx)?;
        }
        Ok(SaveOutcome::Written)
    })
}

/// Lists (`revoke == false`) or revokes the sessions of one index; returns the live
/// sessions listed and how many were revoked.
fn user_sessions(m: &MemoryStore, index: &UserIndex<'_>, revoke: bool) -> (Vec<SessionInfo>, u64) {
    let idx_key = &index.key;
    m.transact(|tx| {
        let now = tx.now_ms();
        let mut idx = read_index(tx.get(idx_key));
        idx.retain(|_, at| *at > now);
        let mut out = Vec::new();
        let mut n = 0;
        let mut live = BTreeMap::new();
        for (id, at) in idx {
            let Some(sid) = SessionId::parse(&id) else {
                continue;
            };
            let key = index.session_key(&sid);
            match tx.ttl(&key) {
                KeyTtl::Missing => {}
                _ if revoke => {
                    tx.delete(&key);
                    n += 1;
                }
                ttl => {
                    let expires_in = match ttl {
                        KeyTtl::Expires(d) => d,
                        _ => Duration::ZERO,
                    };
                    out.push(SessionInfo {
                        id: sid,
                        expires_in,
                    });
                    live.insert(id, at);
                }
            }
        }
        if revoke {
            tx.delete(idx_key);
        } else if let Err(e) = write_index(tx, idx_key, &live) {
            tracing::debug!(error = %e, "session index not rewritten");
        }
        (out, n)
    })
}
