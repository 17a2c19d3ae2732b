//! The Redis store of the limiter: `lua/ratelimit.lua` and its wire format, the only
//! place that encodes the script's ARGV and decodes its reply.

#[cfg(feature = "redis")]
use crate::backend::Backend;
use crate::backend::BackendError;
use crate::keys::RedisKey;
use crate::ratelimit::algo::{Outcome, Rules, Spec};

/// `lua/ratelimit.lua`.
#[cfg(feature = "redis")]
fn script() -> &'static crate::backend::LuaScript {
    static S: std::sync::OnceLock<crate::backend::LuaScript> = std::sync::OnceLock::new();
    S.get_or_init(|| {
        crate::backend::LuaScript::new("ratelimit", include_str!("../../../lua/ratelimit.lua"))
    })
}

/// One script call on `backend`. `mode`: `check`, `peek` or `charge`; `nonce`: unique per
/// call (the exact log's member names); `charges`: units admitted in process per rule,
/// charged first (empty: none). Returns (all allowed, per-rule outcomes, Redis time in ms).
#[cfg(feature = "redis")]
pub(crate) async fn eval(
    backend: &Backend,
    specs: &[&Spec],
    keys: &[RedisKey],
    cost: u32,
    mode: &str,
    nonce: u64,
    charges: &[u32],
) -> Result<(bool, Rules<Outcome>, u64), BackendError> {
    let Backend::Redis(redis) = backend else {
        return Err(BackendError::Unsupported("no Redis backend"));
    };
    let nonce = format!("{nonce:016x}");
    let mut args: Vec<String> = Vec::with_capacity(3 + specs.len() * 7);
    args.push(mode.into());
    args.push(cost.to_string());
    args.push(nonce);
    for s in specs {
        args.push(match s.algo {
            crate::ratelimit::Algorithm::Exact => "log".into(),
            crate::ratelimit::Algorithm::Compact => "win".into(),
            crate::ratelimit::Algorithm::Gcra => "gcra".into(),
        });
        args.push(s.limit.to_string());
        args.push(s.window_ms.to_string());
        args.push(s.bucket_us.to_string());
        args.push(s.n.to_string());
        args.push(if s.shadow { "1" } else { "0" }.into());
    }
    if charges.iter().any(|&u| u > 0) {
        args.extend(charges.iter().map(u32::to_string));
    }
    let arg_refs: Vec<&[u8]> = args.iter().map(|s| s.as_bytes()).collect();
    let key_refs: Vec<&RedisKey> = keys.iter().collect();
    let v: Vec<i64> = redis.eval(script(), &key_refs, &arg_refs).await?;
    if v.len() != 2 + specs.len() * 5 {
        return Err(BackendError::Unsupported(
            "unexpected reply from the rate-limit script",
        ));
    }
    let outs = v[2..]
        .chunks(5)
        .map(|x| Outcome {
            allowed: x[0] == 1,
            remaining: u32::try_from(x[1].max(0)).unwrap_or(u32::MAX),
            reset_ms: x[2].max(0).unsigned_abs(),
            retry_ms: (x[3] >= 0).then(|| x[3].unsigned_abs()),
            free1_ms: x[4].max(0).unsigned_abs(),
            overflow: false,
        })
        .collect();
    Ok((v[0] == 1, outs, v[1].max(0).unsigned_abs()))
}

/// Without the `redis` feature there is no Redis store.
#[cfg(not(feature = "redis"))]
pub(crate) async fn eval(
    _: &crate::backend::Backend,
    _: &[&Spec],
    _: &[RedisKey],
    _: u32,
    _: &str,
    _: u64,
    _: &[u32],
) -> Result<(bool, Rules<Outcome>, u64), BackendError> {
    Err(BackendError::Unsupported("no Redis backend"))
}
