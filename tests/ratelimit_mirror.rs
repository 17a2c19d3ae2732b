//! `lua/ratelimit.lua` mirrors the memory store, decision for decision: the same random
//! sequence of checks and peeks (costs from 1 to past the limit, time steps from 0 to past
//! the window, three users, two routes, three rules) runs through a `RateLimiter` on the
//! memory backend on a manual clock and through the script on a real redis-server, and
//! every decision must be the same: allowed, and per rule allowed, remaining, reset and
//! retry. Covers the compact counter's fast paths (same bucket, next buckets, drops) and
//! its full reads (refusals, the last unit, resets), the exact log and GCRA.
//!
//! The script is the crate's own text with one line changed: its clock (`redis.call('TIME')`)
//! reads a hash the test sets before each call, so both sides decide at the same
//! millisecond. (libfaketime cannot wrap a jemalloc redis-server; this changes nothing
//! else.) The ARGV follow the wire format of `src/ratelimit/store/redis.rs`.

mod common;

use std::time::Duration;

use tenant_guard::backend::{Backend, MemoryStore};
use tenant_guard::clock::ManualClock;
use tenant_guard::config::{Config, MemoryConfig};
use tenant_guard::metrics::Metrics;
use tenant_guard::ratelimit::{Decision, Identity, RateLimiter, COMPACT_BUCKETS};
use tenant_guard::tenant::TenantId;

/// 2026-11-26 10:00:00 UTC, ms.
const T0: u64 = 1_795_687_200_000;

const SCRIPT: &str = include_str!("../lua/ratelimit.lua");
const TIME_LINE: &str = "local t = redis.call('TIME')";

/// What the test compares: allowed, then per rule (name, allowed, remaining, reset, retry).
type View = (bool, Vec<(String, bool, u32, Duration, Option<Duration>)>);

struct Xorshift(u64);

impl Xorshift {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

fn view(d: &Decision) -> View {
    let mut rules: Vec<_> = d
        .rules
        .iter()
        .map(|r| {
            (
                r.name.to_string(),
                r.allowed,
                r.remaining,
                r.reset,
                r.retry_after,
            )
        })
        .collect();
    rules.sort_by(|a, b| a.0.cmp(&b.0));
    (d.allowed, rules)
}

/// One rule as the script takes it.
struct Rule {
    name: &'static str,
    limit: u32,
    window_ms: u64,
    /// Which counter: per tenant, per user, per user and route.
    scope: u8,
}

impl Rule {
    /// `algo, limit, window_ms, bucket_us, n, shadow`, as `Spec::new` computes them.
    fn argv(&self, algo: &str) -> Vec<String> {
        let window_us = self.window_ms * 1000;
        let (name, bucket_us, n) = match algo {
            "gcra" => ("gcra", window_us.div_ceil(u64::from(self.limit)), 0),
            _ => {
                let b = window_us.div_ceil(COMPACT_BUCKETS);
                (
                    if algo == "exact" { "log" } else { "win" },
                    b,
                    window_us.div_ceil(b),
                )
            }
        };
        [
            name.to_string(),
            self.limit.to_string(),
            self.window_ms.to_string(),
            bucket_us.to_string(),
            n.to_string(),
            "0".into(),
        ]
        .into()
    }
}

struct Script {
    sha: String,
    server: common::RedisServer,
}

impl Script {
    fn load() -> Self {
        assert!(
            SCRIPT.contains(TIME_LINE),
            "the script reads its clock elsewhere now"
        );
        let body = SCRIPT.replace(
            TIME_LINE,
            "local t = redis.call('HMGET', 'mirror-clock', 's', 'us')",
        );
        let server = common::RedisServer::start();
        let sha = server.cli(&["SCRIPT", "LOAD", &body]);
        Self { sha, server }
    }

    /// One call at `now` ms, `nonce` unique per call (it names the exact log's members):
    /// the decision as `RateLimiter` would report it.
    #[allow(clippy::too_many_arguments)]
    fn call(
        &self,
        now: u64,
        nonce: usize,
        mode: &str,
        cost: u32,
        rules: &[Rule],
        algo: &str,
        user: &str,
        route: &str,
    ) -> View {
        let s = (now / 1000).to_string();
        let us = (now % 1000 * 1000).to_string();
        self.server
            .cli(&["HSET", "mirror-clock", "s", &s, "us", &us]);
        let keys: Vec<String> = rules
            .iter()
            .map(|r| match r.scope {
                0 => format!("rl:{{t}}:{}", r.name),
                1 => format!("rl:{{t}}:{}:{user}", r.name),
                _ => format!("rl:{{t}}:{}:{user}:GET {route}", r.name),
            })
            .collect();
        let mut args: Vec<String> =
            vec!["EVALSHA".into(), self.sha.clone(), keys.len().to_string()];
        args.extend(keys);
        args.extend([mode.to_string(), cost.to_string(), format!("n{nonce}")]);
        for r in rules {
            args.extend(r.argv(algo));
        }
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let reply = self.server.cli(&argv);
        let v: Vec<i64> = reply
            .lines()
            .map(|l| {
                l.trim()
                    .parse()
                    .unwrap_or_else(|_| panic!("script reply: {reply}"))
            })
            .collect();
        assert_eq!(v.len(), 2 + 5 * rules.len(), "script reply: {reply}");
        assert_eq!(v[1] as u64, now, "the script's clock");
        let mut out: Vec<_> = rules
            .iter()
            .zip(v[2..].chunks(5))
            .map(|(r, x)| {
                let allowed = x[0] == 1;
                let retry =
                    (!allowed && x[3] >= 0).then(|| Duration::from_millis(x[3].max(1) as u64));
                (
                    r.name.to_string(),
                    allowed,
                    x[1] as u32,
                    Duration::from_millis(x[2] as u64),
                    retry,
                )
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        (v[0] == 1, out)
    }
}

async fn mirror(algo: &str, rules: &[Rule], steps: usize, seed: u64, scale: u32) {
    let mut vars: Vec<(String, String)> = vec![("RATE_LIMIT_ALGORITHM".into(), algo.into())];
    for r in rules {
        let q = format!("{}/{}ms", r.limit, r.window_ms);
        match r.scope {
            0 => vars.push(("RATE_LIMIT_TENANT".into(), q)),
            1 => vars.push(("RATE_LIMIT_USER".into(), q)),
            _ => {
                vars.push(("RATE_LIMIT_MAX".into(), r.limit.to_string()));
                vars.push(("RATE_LIMIT_WINDOW".into(), format!("{}ms", r.window_ms)));
            }
        }
    }
    let config = Config::from_vars(vars).expect("config");
    let clock = ManualClock::new();
    clock.set_ms(T0);
    let memory = RateLimiter::from_config(
        &config,
        Backend::Memory(MemoryStore::with_clock(
            MemoryConfig::default(),
            clock.clone(),
        )),
        &Metrics::new(),
    );
    let script = Script::load();
    let tenant = TenantId::new("t").expect("tenant");
    let users = ["u1", "u2", "u3"];
    let window_ms = rules.iter().map(|r| r.window_ms).max().unwrap_or(1000);
    let mut rng = Xorshift(seed);
    let mut now = T0;
    let mut refused = 0;
    for step in 0..steps {
        // Mostly small steps (many checks in one bucket), some across buckets, a few past
        // the window.
        now += match rng.below(10) {
            0..=4 => rng.below(3),
            5..=8 => rng.below(window_ms / 4 + 1),
            _ => rng.below(window_ms * 2),
        };
        clock.set_ms(now);
        let user = users[rng.below(3) as usize];
        let route = ["/a", "/b"][rng.below(2) as usize];
        let cost = scale
            * match rng.below(10) {
                0 => 1 + rng.below(40) as u32,
                _ => 1 + rng.below(3) as u32,
            };
        let who = Identity::User(user.into());
        let check = common::get_check(&tenant, &who, route, Some(cost));
        let peek = rng.below(8) == 0;
        let m = if peek {
            memory.peek(&check).await
        } else {
            memory.check(&check).await
        };
        let r = script.call(
            now,
            step,
            if peek { "peek" } else { "check" },
            cost,
            rules,
            algo,
            user,
            route,
        );
        assert_eq!(
            r,
            view(&m),
            "{algo} step {step} at +{} ms, {user} {route} cost {cost} peek {peek}: script (left) vs memory (right)",
            now - T0
        );
        if std::env::var("MIRROR_TRACE").is_ok() {
            eprintln!(
                "{step} +{} {user} {route} cost {cost} peek {peek}: {:?}",
                now - T0,
                view(&m)
            );
        }
        refused += usize::from(!m.allowed);
    }
    assert!(
        refused > steps / 10 && refused < steps * 9 / 10,
        "the sequence should mix admissions and refusals: {refused} of {steps} refused"
    );
}

const RULES: &[Rule] = &[
    Rule {
        name: "per-endpoint",
        limit: 7,
        window_ms: 900,
        scope: 2,
    },
    Rule {
        name: "per-user",
        limit: 12,
        window_ms: 1500,
        scope: 1,
    },
    Rule {
        name: "per-tenant",
        limit: 20,
        window_ms: 2000,
        scope: 0,
    },
];

#[tokio::test]
async fn compact_script_mirrors_memory() {
    mirror("compact", RULES, 1500, 0x5eed_0001, 1).await;
}

#[tokio::test]
async fn compact_script_mirrors_memory_with_wide_counts() {
    // Limits past 255 and 65 535: two- and four-byte counts.
    let rules = [
        Rule {
            name: "per-endpoint",
            limit: 300,
            window_ms: 900,
            scope: 2,
        },
        Rule {
            name: "per-tenant",
            limit: 70_000,
            window_ms: 2000,
            scope: 0,
        },
    ];
    mirror("compact", &rules, 800, 0x5eed_0002, 40).await;
}

#[tokio::test]
async fn exact_script_mirrors_memory() {
    mirror("exact", RULES, 1500, 0x5eed_0003, 1).await;
}

#[tokio::test]
async fn gcra_script_mirrors_memory() {
    mirror("gcra", RULES, 1500, 0x5eed_0004, 1).await;
}
