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

/// The command timeout of `backend` if it takes batched calls: a single Redis node (a
/// cluster call's keys must share a slot).
pub(crate) fn batch_timeout(backend: &crate::backend::Backend) -> Option<std::time::Duration> {
    match backend {
        #[cfg(feature = "redis")]
        crate::backend::Backend::Redis(r) if !r.is_cluster() => Some(r.command_timeout()),
        _ => None,
    }
}

/// One request of a script call: its rules, their counters, and what to do.
#[derive(Debug)]
#[cfg_attr(not(feature = "redis"), allow(dead_code))]
pub(crate) struct Request {
    pub(crate) specs: Rules<Spec>,
    pub(crate) keys: Vec<RedisKey>,
    pub(crate) cost: u32,
    /// `check`, `peek` or `charge`.
    pub(crate) mode: &'static str,
    /// Unique per request: names the exact log's members.
    pub(crate) nonce: u64,
    /// Units admitted in process per rule, charged first (empty: none).
    pub(crate) charges: Rules<u32>,
}

impl Request {
    /// A request with no rules (the base of struct updates).
    pub(crate) fn empty() -> Self {
        Self {
            specs: Rules::new(),
            keys: Vec::new(),
            cost: 1,
            mode: "peek",
            nonce: 0,
            charges: Rules::new(),
        }
    }
}

/// What the script answered for one request: all enforced rules allowed, each rule's
/// outcome, the Redis clock (ms).
pub(crate) type Reply = (bool, Rules<Outcome>, u64);

/// One script call deciding `requests` in order, each all or nothing (they must share a
/// slot, or the deployment be a single node). A request whose counter holds another type
/// gets its own error (nothing was written for it); the others their replies.
#[cfg(feature = "redis")]
pub(crate) async fn eval_batch(
    backend: &Backend,
    requests: &[&Request],
) -> Result<Vec<Result<Reply, BackendError>>, BackendError> {
    let Backend::Redis(redis) = backend else {
        return Err(BackendError::Unsupported("no Redis backend"));
    };
    // The call's distinct rules, each sent once; requests name them by number.
    let mut distinct: Vec<&Spec> = Vec::new();
    let index: Vec<Rules<usize>> = requests
        .iter()
        .map(|r| {
            r.specs
                .iter()
                .map(|s| match distinct.iter().position(|d| *d == s) {
                    Some(i) => i + 1,
                    None => {
                        distinct.push(s);
                        distinct.len()
                    }
                })
                .collect()
        })
        .collect();
    let nargs: usize = 2
        + distinct.len() * 6
        + requests
            .iter()
            .map(|r| 5 + r.specs.len() * 2)
            .sum::<usize>();
    let mut args: Vec<Vec<u8>> = Vec::with_capacity(nargs);
    let mut key_refs: Vec<&RedisKey> = Vec::new();
    let num = |n: u64| -> Vec<u8> { itoa::Buffer::new().format(n).as_bytes().to_vec() };
    args.push(num(requests.len() as u64));
    args.push(num(distinct.len() as u64));
    for s in &distinct {
        args.push(match s.algo {
            crate::ratelimit::Algorithm::Exact => b"log".to_vec(),
            crate::ratelimit::Algorithm::Compact => b"win".to_vec(),
            crate::ratelimit::Algorithm::Gcra => b"gcra".to_vec(),
        });
        args.push(num(u64::from(s.limit)));
        args.push(num(s.window_ms));
        args.push(num(s.bucket_us));
        args.push(num(s.n));
        args.push(if s.shadow {
            b"1".to_vec()
        } else {
            b"0".to_vec()
        });
    }
    for (r, index) in requests.iter().zip(&index) {
        args.push(num(r.specs.len() as u64));
        args.push(r.mode.as_bytes().to_vec());
        args.push(num(u64::from(r.cost)));
        args.push(format!("{:016x}", r.nonce).into_bytes());
        let charged = r.charges.iter().any(|&u| u > 0);
        args.push(num(if charged { r.specs.len() as u64 } else { 0 }));
        args.extend(index.iter().map(|&i| num(i as u64)));
        if charged {
            args.extend(r.charges.iter().map(|&u| num(u64::from(u))));
        }
        key_refs.extend(r.keys.iter());
    }
    let arg_refs: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
    let v: Vec<i64> = redis.eval(script(), &key_refs, &arg_refs).await?;
    let expected: usize = requests.iter().map(|r| 2 + r.specs.len() * 5).sum();
    if v.len() != expected {
        return Err(BackendError::Unsupported(
            "unexpected reply from the rate-limit script",
        ));
    }
    let mut at = 0;
    Ok(requests
        .iter()
        .map(|r| {
            let part = &v[at..at + 2 + r.specs.len() * 5];
            at += part.len();
            let outs = part[2..]
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
            if part[0] < 0 {
                return Err(BackendError::Unsupported(
                    "a rate-limit counter holds another type (left by an algorithm change?)",
                ));
            }
            Ok((part[0] == 1, outs, part[1].max(0).unsigned_abs()))
        })
        .collect())
}

/// Without the `redis` feature there is no Redis store.
#[cfg(not(feature = "redis"))]
pub(crate) async fn eval_batch(
    _: &crate::backend::Backend,
    _: &[&Request],
) -> Result<Vec<Result<Reply, BackendError>>, BackendError> {
    Err(BackendError::Unsupported("no Redis backend"))
}

/// One script call for one request.
pub(crate) async fn eval(
    backend: &crate::backend::Backend,
    request: &Request,
) -> Result<Reply, BackendError> {
    let mut replies = eval_batch(backend, &[request]).await?;
    replies.pop().unwrap_or(Err(BackendError::Unsupported(
        "unexpected reply from the rate-limit script",
    )))
}
