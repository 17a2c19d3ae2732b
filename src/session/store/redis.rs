//! Sessions on Redis: one hash per session and a sorted set per user, changed only by the
//! Lua scripts (`lua/session_*.lua`), which run with Redis `TIME`.

use super::*;

pub(super) fn load_script() -> &'static LuaScript {
    static S: std::sync::OnceLock<LuaScript> = std::sync::OnceLock::new();
    S.get_or_init(|| {
        LuaScript::new(
            "session_load",
            include_str!("../../../lua/session_load.lua"),
        )
    })
}

pub(super) fn save_script() -> &'static LuaScript {
    static S: std::sync::OnceLock<LuaScript> = std::sync::OnceLock::new();
    S.get_or_init(|| {
        LuaScript::new(
            "session_save",
            include_str!("../../../lua/session_save.lua"),
        )
    })
}

pub(super) fn index_script() -> &'static LuaScript {
    static S: std::sync::OnceLock<LuaScript> = std::sync::OnceLock::new();
    S.get_or_init(|| {
        LuaScript::new(
            "session_index",
            include_str!("../../../lua/session_index.lua"),
        )
    })
}

pub(super) async fn redis_load(
    r: &RedisStore,
    key: &RedisKey,
    max_ms: u64,
) -> Result<Option<Loaded>, BackendError> {
    let max = max_ms.to_string();
    let flat: Option<Vec<String>> = r.eval(load_script(), &[key], &[max.as_bytes()]).await?;
    let Some(flat) = flat else {
        return Ok(None);
    };
    if flat.len() < 2 {
        return Ok(None);
    }
    let now_ms = flat[0].parse().unwrap_or(0);
    let pttl: i64 = flat[1].parse().unwrap_or(-1);
    let mut loaded = Loaded {
        now_ms,
        pttl_ms: u64::try_from(pttl).ok(),
        created_ms: now_ms,
        user: None,
        fields: HashMap::new(),
    };
    for pair in flat[2..].chunks_exact(2) {
        match pair[0].as_str() {
            "_c" => loaded.created_ms = pair[1].parse().unwrap_or(now_ms),
            "_u" => loaded.user = Some(pair[1].clone()),
            f => {
                if let Some(name) = f.strip_prefix("f:") {
                    loaded.fields.insert(name.to_string(), pair[1].clone());
                }
            }
        }
    }
    Ok(Some(loaded))
}

pub(super) async fn redis_save(
    r: &RedisStore,
    keys: &SaveKeys,
    op: &Save<'_>,
    idle_ms: u64,
    max_ms: u64,
) -> Result<Saved, BackendError> {
    let s = &keys.session;
    let redis_keys = [
        s,
        keys.index_after.as_ref().unwrap_or(s),
        keys.index_before.as_ref().unwrap_or(s),
        keys.rename_from.as_ref().unwrap_or(s),
    ];
    let mode: &[u8] = match op.mode {
        Mode::Create => b"create",
        Mode::Update => b"update",
        Mode::Destroy => b"destroy",
    };
    let (idle, max) = (idle_ms.to_string(), max_ms.to_string());
    let (user_op, user): (&[u8], &str) = match op.user_op {
        UserOp::Keep => (b"", ""),
        UserOp::Set(u) => (b"s", u),
        UserOp::Unset => (b"u", ""),
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
        Some(1) => Saved::Ok,
        Some(-1) => Saved::Collision,
        _ => Saved::Gone,
    })
}

impl SessionStore {
    /// Runs `lua/session_index.lua`: reads the index, then lists or revokes with every
    /// session key declared to the script (cluster-safe). Entries added in between are
    /// picked up by another round. Returns the flat `id, ttl` list and the number deleted.
    pub(super) async fn redis_index(
        &self,
        r: &crate::backend::RedisStore,
        tenant: &TenantId,
        idx: &RedisKey,
        revoke: bool,
    ) -> Result<(Vec<String>, u64), BackendError> {
        /// Rounds before giving up on an index that keeps growing while it is revoked.
        const ROUNDS: usize = 8;
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
            let session_keys: Vec<RedisKey> =
                ids.iter().map(|id| self.session_key(tenant, id)).collect();
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
        Ok((listed, deleted))
    }
}
