//! Sessions on Redis: one hash per session and a sorted set per user. A read is one
//! `HGETALL`; a plain update (fields written or deleted, nothing else) is one `MULTI`/`EXEC`
//! of plain commands (with no TTL change when the session was renewed less than a renew
//! interval ago); everything that must decide atomically (create, rename, user change,
//! clear, destroy, renewal) runs a Lua script (`lua/session_*.lua`) with Redis `TIME`.

use std::time::Duration;

use super::backend::ms;
use super::{Lifetimes, SaveOutcome, SessionBackend, SessionInfo, SessionKeys, SessionRecord};
use super::{SessionWrite, StoreFuture, UserChange, UserIndex, WriteMode};
use crate::backend::{BackendError, LuaScript, RedisStore};
use crate::keys::RedisKey;
use crate::session::SessionId;

impl SessionBackend for RedisStore {
    fn name(&self) -> &'static str {
        "redis"
    }

    fn load<'a>(
        &'a self,
        key: &'a RedisKey,
        lifetimes: Lifetimes,
    ) -> StoreFuture<'a, Option<SessionRecord>> {
        Box::pin(load(self, key, lifetimes))
    }

    fn save<'a>(
        &'a self,
        keys: &'a SessionKeys,
        write: &'a SessionWrite<'a>,
        lifetimes: Lifetimes,
    ) -> StoreFuture<'a, SaveOutcome> {
        Box::pin(save(self, keys, write, lifetimes))
    }

    fn user_sessions<'a>(
        &'a self,
        index: &'a UserIndex<'a>,
        revoke: bool,
    ) -> StoreFuture<'a, (Vec<SessionInfo>, u64)> {
        Box::pin(user_sessions(self, index, revoke))
    }

    fn delete<'a>(&'a self, key: &'a RedisKey) -> StoreFuture<'a, bool> {
        Box::pin(RedisStore::delete(self, key))
    }
}

fn save_script() -> &'static LuaScript {
    static S: std::sync::OnceLock<LuaScript> = std::sync::OnceLock::new();
    S.get_or_init(|| {
        LuaScript::new(
            "session_save",
            include_str!("../../../lua/session_save.lua"),
        )
    })
}

fn index_script() -> &'static LuaScript {
    static S: std::sync::OnceLock<LuaScript> = std::sync::OnceLock::new();
    S.get_or_init(|| {
        LuaScript::new(
            "session_index",
            include_str!("../../../lua/session_index.lua"),
        )
    })
}

/// Loads a session with one `HGETALL`, no script: what a tower-sessions read costs Redis
/// (one command). Nothing here needs deciding atomically: the inactivity TTL is Redis's
/// own and every save caps it at the absolute deadline (on the Redis clock), so an expired
/// session is simply gone. The time left before it expires is derived from the last
/// renewal (`_r`) and this process's clock, and decides renewals only: a skew shifts when a
/// request renews, never the TTL a save sets, and a clock behind the stamp renews at once. The absolute lifetime is checked again (it catches a
/// `SESSION_MAX_LIFETIME` lowered since the session was saved; such a session is deleted).
async fn load(
    r: &RedisStore,
    key: &RedisKey,
    lifetimes: Lifetimes,
) -> Result<Option<SessionRecord>, BackendError> {
    let fields: Vec<(String, String)> = r
        .run("session_load", |mut c| async move {
            ::redis::cmd("HGETALL").arg(key).query_async(&mut c).await
        })
        .await?;
    let now_ms = super::backend::now_ms();
    let mut loaded = SessionRecord::new(now_ms, now_ms);
    let (mut created, mut saved) = (None, None);
    for (name, value) in fields {
        match name.as_str() {
            "_c" => created = value.parse::<u64>().ok(),
            "_r" => saved = value.parse::<u64>().ok(),
            "_u" => loaded.user = Some(value),
            f => {
                if let Some(field) = f.strip_prefix("f:") {
                    loaded.fields.insert(field.to_string(), value);
                }
            }
        }
    }
    // No creation time: no session (missing, or a key written by something else).
    let Some(created) = created else {
        return Ok(None);
    };
    let deadline = created.saturating_add(ms(lifetimes.max));
    if now_ms >= deadline {
        r.delete(key).await?;
        return Ok(None);
    }
    // The TTL the last renewal set, run down since (a session saved before `_r` existed:
    // as if saved at creation, so it is renewed soon). A renewal stamped later than this
    // process's clock says it is now (its clock lags the one that stamped it: Redis's or
    // another instance's): up to a quarter of the idle TTL, taken as just renewed (renewals
    // come that much later, still well before the TTL runs out); beyond, it tells nothing
    // of the time left: taken as run out, so the request renews rather than let a session
    // in use expire (on a clock that far off, a logged-in session renews on every request).
    let saved = saved.unwrap_or(created);
    let idle = ms(lifetimes.idle);
    let set = idle.min(deadline.saturating_sub(saved));
    loaded.pttl_ms = Some(match now_ms.checked_sub(saved) {
        Some(elapsed) => set.saturating_sub(elapsed),
        None if saved - now_ms <= idle / 4 => set,
        None => 0,
    });
    loaded.created_ms = created;
    Ok(Some(loaded))
}

async fn save(
    r: &RedisStore,
    keys: &SessionKeys,
    op: &SessionWrite<'_>,
    lifetimes: Lifetimes,
) -> Result<SaveOutcome, BackendError> {
    if let Some(created) = op.created_ms.filter(|_| is_plain_update(keys, op)) {
        match plain_update(r, keys, op, lifetimes, created).await {
            // Redis refused it (a server before 7.0 has no `PEXPIRE .. GT/LT`; an ACL may
            // deny a command): the transaction did not run, or ran only commands the script
            // repeats (field writes and TTLs are idempotent). The script does it all.
            Err(e @ BackendError::Redis(_)) if !e.is_outage() => warn_refused(&e),
            other => return other,
        }
    }
    save_script_call(r, keys, op, lifetimes).await
}

/// A write that only sets or deletes fields of a loaded session (no create, rename, user
/// change, clear or destroy): it needs no decision, only to land on a live session.
fn is_plain_update(keys: &SessionKeys, op: &SessionWrite<'_>) -> bool {
    op.mode == WriteMode::Update
        && op.rename_from.is_none()
        && matches!(op.user, UserChange::Keep)
        && !op.clear
        && keys.index_after == keys.index_before
}

/// How much longer than its sessions' idle time a user's index is kept after a plain
/// update (a relative TTL: no clock is compared).
const INDEX_SLACK_MS: u64 = 60_000;

/// A plain update in one round trip of plain commands, `MULTI`/`EXEC` so that all or none
/// apply: what a tower-sessions write costs (no script). The fields land with one `HSET`
/// (and one `HDEL`), so concurrent requests that change different fields keep each other's
/// changes. Redis itself keeps both lifetimes on its own clock: `PEXPIRE idle` then
/// `PEXPIREAT created+max LT` (the absolute deadline, an absolute time, lowers the TTL
/// only). `HSET`'s count of new fields tells whether the session was still there (every
/// save writes `_r`, so on a live session it is never new): if it was destroyed or renamed
/// meanwhile, the fields just written form a record without a creation time, which no read
/// accepts, and it is removed at once (and would expire anyway). The user's
/// index entry only ever moves later, to the session's absolute deadline (`ZADD XX GT`:
/// never re-added once revoked; no clock of this process involved), and the index outlives
/// its sessions (`PEXPIRE .. GT`).
async fn plain_update(
    r: &RedisStore,
    keys: &SessionKeys,
    op: &SessionWrite<'_>,
    lifetimes: Lifetimes,
    created: u64,
) -> Result<SaveOutcome, BackendError> {
    if op.keep_ttl {
        return field_update(r, keys, op, lifetimes).await;
    }
    let (idle_ms, max_ms) = (ms(lifetimes.idle), ms(lifetimes.max));
    let now = super::backend::now_ms();
    let deadline = created.saturating_add(max_ms);
    let key = &keys.session;
    let mut p = ::redis::pipe();
    p.atomic();
    let mut hset = ::redis::cmd("HSET");
    hset.arg(key).arg("_r").arg(now);
    push_fields(&mut p, hset, key, op, false);
    p.cmd("PEXPIRE").arg(key).arg(idle_ms).ignore();
    p.cmd("PEXPIREAT").arg(key).arg(deadline).arg("LT").ignore();
    if let Some(idx) = &keys.index_after {
        // Scored with the absolute deadline (creation on the Redis clock + the lifetime):
        // never before the session's end, whatever this process's clock says; a listing
        // drops the entries of sessions that ended sooner.
        p.cmd("ZADD")
            .arg(idx)
            .arg("XX")
            .arg("GT")
            .arg(deadline)
            .arg(op.id.as_str())
            .ignore();
        p.cmd("PEXPIRE")
            .arg(idx)
            .arg(idle_ms.saturating_add(INDEX_SLACK_MS))
            .arg("GT")
            .ignore();
    }
    let (added,): (usize,) = r
        .run("session_save", |mut c| async move {
            p.query_async(&mut c).await
        })
        .await?;
    if added < 1 + op.set.len() {
        return Ok(SaveOutcome::Written);
    }
    // Every field new: gone meanwhile, unless the record predates `_r` (it still has its
    // creation time). Rare: one more command to tell.
    let live: bool = r
        .run("session_save", |mut c| async move {
            ::redis::cmd("HEXISTS")
                .arg(key)
                .arg("_c")
                .query_async(&mut c)
                .await
        })
        .await?;
    if live {
        return Ok(SaveOutcome::Written);
    }
    // Drop the fragment just written (best effort; it expires anyway).
    let _ = r.delete(key).await;
    Ok(SaveOutcome::Gone)
}

/// A plain update whose session had its TTL set less than a renew interval ago
/// ([`SessionWrite::keep_ttl`]): only the fields, in one `MULTI`/`EXEC` — `HSET` (and
/// `HDEL`), then `PEXPIRE idle NX`. The TTL, the absolute deadline cap, `_r` and the user's
/// index stay as the last renewal left them. Every live session has a TTL, so `NX` setting
/// one means `HSET` just made the key: the session was destroyed or renamed meanwhile, and
/// the fragment (no creation time: no read accepts it; now expiring) is removed. With
/// nothing to set, `EXISTS` tells the same.
async fn field_update(
    r: &RedisStore,
    keys: &SessionKeys,
    op: &SessionWrite<'_>,
    lifetimes: Lifetimes,
) -> Result<SaveOutcome, BackendError> {
    let key = &keys.session;
    let mut p = ::redis::pipe();
    p.atomic();
    let mut hset = ::redis::cmd("HSET");
    hset.arg(key);
    push_fields(&mut p, hset, key, op, true);
    let made = !op.set.is_empty();
    if made {
        p.cmd("PEXPIRE").arg(key).arg(ms(lifetimes.idle)).arg("NX");
    } else {
        p.cmd("EXISTS").arg(key);
    }
    let (signal,): (u8,) = r
        .run("session_save", |mut c| async move {
            p.query_async(&mut c).await
        })
        .await?;
    // `PEXPIRE NX` set a TTL: the key was new; `EXISTS` 0: no key.
    let gone = if made { signal == 1 } else { signal == 0 };
    if !gone {
        return Ok(SaveOutcome::Written);
    }
    if made {
        // Drop the fragment just written (best effort; it expires anyway).
        let _ = r.delete(key).await;
    }
    Ok(SaveOutcome::Gone)
}

/// Adds `hset` (the key and any fields of its own already given) with the request's fields
/// to `p`, then `HDEL` of the deleted ones; `HSET`'s reply is kept unless `ignore`. An
/// `HSET` with nothing to write is left out (only possible with `ignore`).
fn push_fields(
    p: &mut ::redis::Pipeline,
    mut hset: ::redis::Cmd,
    key: &RedisKey,
    op: &SessionWrite<'_>,
    ignore: bool,
) {
    for (k, v) in &op.set {
        hset.arg(format!("f:{k}")).arg(*v);
    }
    if !ignore {
        p.add_command(hset);
    } else if !op.set.is_empty() {
        p.add_command(hset).ignore();
    }
    if !op.del.is_empty() {
        let mut hdel = ::redis::cmd("HDEL");
        hdel.arg(key);
        for k in &op.del {
            hdel.arg(format!("f:{k}"));
        }
        p.add_command(hdel).ignore();
    }
}

/// Logs once that Redis refused a plain update (a server before 7.0, or an ACL): those
/// updates then run the save script, as every other write.
fn warn_refused(e: &BackendError) {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        tracing::warn!(
            error = %e,
            "Redis refused a plain session update (a server before 7.0, or an ACL without \
             PEXPIREAT?); such updates use the save script"
        );
    });
}

/// Runs `lua/session_save.lua`: every write that decides something.
async fn save_script_call(
    r: &RedisStore,
    keys: &SessionKeys,
    op: &SessionWrite<'_>,
    lifetimes: Lifetimes,
) -> Result<SaveOutcome, BackendError> {
    let (idle_ms, max_ms) = (ms(lifetimes.idle), ms(lifetimes.max));
    let s = &keys.session;
    let redis_keys = [
        s,
        keys.index_after.as_ref().unwrap_or(s),
        keys.index_before.as_ref().unwrap_or(s),
        keys.rename_from.as_ref().unwrap_or(s),
    ];
    let mode: &[u8] = match op.mode {
        WriteMode::Create => b"create",
        WriteMode::Update => b"update",
        WriteMode::Destroy => b"destroy",
    };
    let (idle, max) = (idle_ms.to_string(), max_ms.to_string());
    let (user_op, user): (&[u8], &str) = match op.user {
        UserChange::Keep => (b"", ""),
        UserChange::Set(u) => (b"s", u),
        UserChange::Unset => (b"u", ""),
    };
    let n = op.set.len().to_string();
    let set: Vec<(String, &str)> = op.set.iter().map(|(k, v)| (format!("f:{k}"), *v)).collect();
    let del: Vec<String> = op.del.iter().map(|k| format!("f:{k}")).collect();
    let mut args: Vec<&[u8]> = vec![
        mode,
        idle.as_bytes(),
        max.as_bytes(),
        op.id.as_str().as_bytes(),
        op.rename_from.map_or(&b""[..], |id| id.as_str().as_bytes()),
        if op.user_after.is_some() { b"1" } else { b"0" },
        if op.user_before.is_some() { b"1" } else { b"0" },
        user_op,
        user.as_bytes(),
        if op.clear { b"1" } else { b"0" },
        n.as_bytes(),
    ];
    for (k, v) in &set {
        args.push(k.as_bytes());
        args.push(v.as_bytes());
    }
    for k in &del {
        args.push(k.as_bytes());
    }
    let res: Vec<i64> = r.eval(save_script(), &redis_keys, &args).await?;
    Ok(match res.first() {
        Some(1) => SaveOutcome::Written,
        Some(-1) => SaveOutcome::Collision,
        _ => SaveOutcome::Gone,
    })
}

/// Runs `lua/session_index.lua`: reads the index, then lists or revokes with every session
/// key declared to the script (cluster-safe). Entries added in between are picked up by
/// another round. Returns the sessions listed and the number deleted.
async fn user_sessions(
    r: &RedisStore,
    index: &UserIndex<'_>,
    revoke: bool,
) -> Result<(Vec<SessionInfo>, u64), BackendError> {
    /// Rounds before giving up on an index that keeps growing while it is revoked.
    const ROUNDS: usize = 8;
    let idx = &index.key;
    let mode: &[u8] = if revoke { b"revoke" } else { b"list" };
    let mut deleted = 0;
    let mut listed = Vec::new();
    for _ in 0..ROUNDS {
        let ids: Vec<String> = r
            .run("zrange", |mut c| async move {
                ::redis::cmd("ZRANGE")
                    .arg(idx.as_str())
                    .arg(0)
                    .arg(-1)
                    .query_async(&mut c)
                    .await
            })
            .await?;
        let ids: Vec<SessionId> = ids.iter().filter_map(|i| SessionId::parse(i)).collect();
        let session_keys: Vec<RedisKey> = ids.iter().map(|id| index.session_key(id)).collect();
        let mut keys = vec![idx];
        keys.extend(session_keys.iter());
        let mut args = vec![mode];
        args.extend(ids.iter().map(|id| id.as_str().as_bytes()));
        let mut reply: Vec<String> = r.eval(index_script(), &keys, &args).await?;
        let undeclared: u64 = reply.first().and_then(|u| u.parse().ok()).unwrap_or(0);
        if revoke {
            deleted += reply
                .get(1)
                .and_then(|n| n.parse::<u64>().ok())
                .unwrap_or(0);
        } else {
            reply.remove(0);
            listed = reply;
        }
        if undeclared == 0 {
            break;
        }
    }
    let listed = listed
        .chunks_exact(2)
        .filter_map(|p| {
            Some(SessionInfo::new(
                SessionId::parse(&p[0])?,
                Duration::from_millis(p[1].parse().unwrap_or(0)),
            ))
        })
        .collect();
    Ok((listed, deleted))
}
