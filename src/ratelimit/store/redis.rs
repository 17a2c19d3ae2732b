//! The Redis store of the limiter: `lua/ratelimit.lua` and its wire format, the only
//! place that encodes the script's ARGV and decodes its reply.

use std::borrow::Cow;
use std::time::Duration;

use super::{Reply, Request, SharedCounters};
use crate::backend::{BackendError, RedisStore, StoreFuture};
use crate::keys::RedisKey;
use crate::ratelimit::algo::{Outcome, Rules, Spec};

/// The values 0 to 9 as the script reads them.
const DIGITS: [&[u8]; 10] = [b"0", b"1", b"2", b"3", b"4", b"5", b"6", b"7", b"8", b"9"];

/// `lua/ratelimit.lua`.
fn script() -> &'static crate::backend::LuaScript {
    static S: std::sync::OnceLock<crate::backend::LuaScript> = std::sync::OnceLock::new();
    S.get_or_init(|| {
        crate::backend::LuaScript::new("ratelimit", include_str!("../../../lua/ratelimit.lua"))
    })
}

impl SharedCounters for RedisStore {
    fn decide<'a>(
        &'a self,
        requests: &'a [&'a Request],
    ) -> StoreFuture<'a, Vec<Result<Reply, BackendError>>> {
        Box::pin(eval_batch(self, requests))
    }

    fn batch_timeout(&self) -> Option<Duration> {
        // A cluster call's keys must share a slot; checks of different tenants do not.
        (!self.is_cluster()).then(|| self.command_timeout())
    }
}

/// One script call deciding `requests` in order, each all or nothing (they must share a
/// slot, or the deployment be a single node). A request whose counter holds another type
/// gets its own error (nothing was written for it); the others their replies.
async fn eval_batch(
    redis: &RedisStore,
    requests: &[&Request],
) -> Result<Vec<Result<Reply, BackendError>>, BackendError> {
    // The call's distinct rules, each sent once; requests name them by number.
    let mut distinct: Vec<&Spec> = Vec::new();
    let numbers: Vec<Rules<usize>> = requests
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
        + distinct.len() * 8
        + requests
            .iter()
            .map(|r| 5 + r.specs.len() * 2)
            .sum::<usize>();
    // Most values are single digits or fixed words: those are not allocated.
    let mut args: Vec<Cow<'static, [u8]>> = Vec::with_capacity(nargs);
    let mut key_refs: Vec<&RedisKey> = Vec::new();
    let num = |n: u64| -> Cow<'static, [u8]> {
        match DIGITS.get(n as usize) {
            Some(d) => Cow::Borrowed(*d),
            None => Cow::Owned(itoa::Buffer::new().format(n).as_bytes().to_vec()),
        }
    };
    args.push(num(requests.len() as u64));
    args.push(num(distinct.len() as u64));
    for s in &distinct {
        args.push(Cow::Borrowed(match s.algo {
            crate::ratelimit::Algorithm::Exact => b"log",
            crate::ratelimit::Algorithm::Compact => b"win",
            crate::ratelimit::Algorithm::Gcra => b"gcra",
        }));
        args.push(num(u64::from(s.limit)));
        args.push(num(s.window_ms));
        args.push(num(s.bucket_us));
        args.push(num(s.n));
        args.push(num(u64::from(s.shadow)));
        args.push(num(s.block_ms));
        args.push(num(s.block_max_ms));
    }
    for (q, (r, nums)) in requests.iter().zip(&numbers).enumerate() {
        key_refs.extend(r.keys.iter());
        // A check like the one before it (same rules and cost, no charge-backs, no exact
        // log naming members by the nonce) is sent as "=": the script takes the previous
        // request's values.
        let repeats = q > 0 && {
            let p = requests[q - 1];
            r.mode == "check"
                && p.mode == "check"
                && r.cost == p.cost
                && numbers[q - 1] == *nums
                && !r.charges.iter().any(|&u| u > 0)
                && !r
                    .specs
                    .iter()
                    .any(|s| s.algo == crate::ratelimit::Algorithm::Exact)
        };
        if repeats {
            args.push(Cow::Borrowed(b"="));
            continue;
        }
        args.push(num(r.specs.len() as u64));
        args.push(Cow::Borrowed(r.mode.as_bytes()));
        args.push(num(u64::from(r.cost)));
        args.push(if r.mode == "refund" {
            num(r.nonce)
        } else {
            Cow::Owned(format!("{:016x}", r.nonce).into_bytes())
        });
        let charged = r.charges.iter().any(|&u| u > 0);
        args.push(num(if charged { r.specs.len() as u64 } else { 0 }));
        args.extend(nums.iter().map(|&i| num(i as u64)));
        if charged {
            args.extend(r.charges.iter().map(|&u| num(u64::from(u))));
        }
    }
    let arg_refs: Vec<&[u8]> = args.iter().map(AsRef::as_ref).collect();
    let v: Vec<i64> = redis.eval(script(), &key_refs, &arg_refs).await?;
    decode(requests, &v).ok_or(BackendError::Unsupported(
        "unexpected reply from the rate-limit script",
    ))
}

/// The script's reply, request by request (the header of `lua/ratelimit.lua`): the short
/// answer (`3`: every rule allowed with a unit to spare; remaining and reset per rule) or
/// the full one (five values per rule, then for mode `lease` the units reserved per rule).
/// `None` when the reply does not have that shape.
fn decode(requests: &[&Request], v: &[i64]) -> Option<Vec<Result<Reply, BackendError>>> {
    let mut at = 0;
    let mut replies = Vec::with_capacity(requests.len());
    for r in requests {
        let n = r.specs.len();
        let head = v.get(at..at + 2)?;
        let (code, now) = (head[0], head[1].max(0).unsigned_abs());
        at += 2;
        if code == 3 {
            let part = v.get(at..at + 2 * n)?;
            at += part.len();
            let outs = part
                .chunks(2)
                .map(|x| Outcome {
                    allowed: true,
                    blocked: false,
                    remaining: u32::try_from(x[0].max(0)).unwrap_or(u32::MAX),
                    reset_ms: x[1].max(0).unsigned_abs(),
                    retry_ms: Some(0),
                    free1_ms: 0,
                    overflow: false,
                    reserved: 0,
                })
                .collect();
            replies.push(Ok((true, outs, now)));
            continue;
        }
        let lease = r.mode == "lease";
        let part = v.get(at..at + n * if lease { 6 } else { 5 })?;
        at += part.len();
        if code < 0 {
            replies.push(Err(BackendError::Unsupported(
                "a rate-limit counter holds another type (left by an algorithm change?)",
            )));
            continue;
        }
        let reserved = |i: usize| {
            part.get(n * 5 + i)
                .and_then(|&u| u32::try_from(u).ok())
                .unwrap_or(0)
        };
        let outs = part[..n * 5]
            .chunks(5)
            .enumerate()
            .map(|(i, x)| Outcome {
                allowed: x[0] == 1,
                blocked: x[0] == 2,
                remaining: u32::try_from(x[1].max(0)).unwrap_or(u32::MAX),
                reset_ms: x[2].max(0).unsigned_abs(),
                retry_ms: (x[3] >= 0).then(|| x[3].unsigned_abs()),
                free1_ms: x[4].max(0).unsigned_abs(),
                overflow: false,
                reserved: if lease { reserved(i) } else { 0 },
            })
            .collect();
        replies.push(Ok((code == 1, outs, now)));
    }
    (at == v.len()).then_some(replies)
}
