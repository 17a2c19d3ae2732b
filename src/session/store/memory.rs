//! Sessions on the memory backend: the same steps as the scripts, under the store's lock.

use super::*;

/// A session in the memory backend (one entry, JSON-encoded; updated field by field under
/// the store's lock, so concurrent updates of different fields are kept, as on Redis).
#[derive(Debug, Default, Serialize, Deserialize)]
pub(super) struct MemRecord {
    c: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    u: Option<String>,
    #[serde(default)]
    f: BTreeMap<String, String>,
}

pub(super) fn mem_load(m: &MemoryStore, key: &RedisKey, max_ms: u64) -> Option<Loaded> {
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
        Some(Loaded {
            now_ms: now,
            pttl_ms,
            created_ms: rec.c,
            user: rec.u,
            fields: rec.f.into_iter().collect(),
        })
    })
}

pub(super) fn read_index(raw: Option<Bytes>) -> BTreeMap<String, u64> {
    raw.and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

pub(super) fn write_index(
    tx: &mut crate::backend::Txn<'_>,
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

pub(super) fn mem_save(
    m: &MemoryStore,
    keys: &SaveKeys,
    op: &Save<'_>,
    idle_ms: u64,
    max_ms: u64,
) -> Result<Saved, SessionError> {
    m.transact_all(|tx| {
        let now = tx.now_ms();
        let key = &keys.session;
        let remove_from_index = |tx: &mut crate::backend::Txn<'_>, member: &str| {
            if let Some(ik) = &keys.index_before {
                let mut idx = read_index(tx.get(ik));
                if idx.remove(member).is_some() {
                    write_index(tx, ik, &idx)?;
                }
            }
            Ok::<_, BackendError>(())
        };
        if op.mode == Mode::Destroy {
            tx.delete(key);
            remove_from_index(tx, op.id.as_str()).map_err(store_error)?;
            return Ok(Saved::Ok);
        }
        let mut old_member = op.id.as_str();
        let mut rec = if let (Some(from), Some(from_id)) = (&keys.rename_from, op.rename_from) {
            let Some(raw) = tx.get(from) else {
                return Ok(Saved::Gone);
            };
            if tx.get(key).is_some() {
                return Ok(Saved::Collision);
            }
            tx.delete(from);
            old_member = from_id.as_str();
            serde_json::from_slice::<MemRecord>(&raw).unwrap_or_default()
        } else if op.mode == Mode::Create {
            if tx.get(key).is_some() {
                return Ok(Saved::Collision);
            }
            MemRecord {
                c: now,
                ..MemRecord::default()
            }
        } else {
            match tx.get(key) {
                Some(raw) => serde_json::from_slice::<MemRecord>(&raw).unwrap_or_default(),
                None => return Ok(Saved::Gone),
            }
        };
        let ttl = idle_ms.min(rec.c.saturating_add(max_ms).saturating_sub(now));
        if ttl == 0 {
            tx.delete(key);
            remove_from_index(tx, old_member).map_err(store_error)?;
            return Ok(Saved::Gone);
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
        match op.user_op {
            UserOp::Keep => {}
            UserOp::Set(u) => rec.u = Some(u.to_string()),
            UserOp::Unset => rec.u = None,
        }
        let body = Bytes::from(serde_json::to_vec(&rec).unwrap_or_default());
        tx.set(key, body, Some(Duration::from_millis(ttl)))
            .map_err(store_error)?;
        remove_from_index(tx, old_member).map_err(store_error)?;
        if let Some(ik) = &keys.index_after {
            let mut idx = read_index(tx.get(ik));
            idx.insert(op.id.as_str().to_string(), now + ttl);
            idx.retain(|_, at| *at > now);
            write_index(tx, ik, &idx).map_err(store_error)?;
        }
        Ok(Saved::Ok)
    })
}

/// A memory-store write error as a session error: a full store (every session live) is
/// a 503 like an unavailable one — the user can retry; no live session was evicted.
pub(super) fn store_error(e: BackendError) -> SessionError {
    match e {
        BackendError::Full { .. } => SessionError::Unavailable(e),
        e => SessionError::Store(e),
    }
}

/// Lists (`revoke == false`) or revokes the sessions of one index; returns the live
/// sessions listed and how many were revoked.
pub(super) fn mem_index(
    m: &MemoryStore,
    idx_key: &RedisKey,
    session_key: impl Fn(&SessionId) -> RedisKey,
    revoke: bool,
) -> (Vec<SessionInfo>, u64) {
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
            let key = session_key(&sid);
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
