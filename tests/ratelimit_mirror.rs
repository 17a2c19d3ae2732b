//! `lua/ratelimit.lua` mirrors the memory store, decision for decision: the same random
//! sequence of checks and peeks (costs from 1 to past the limit, time steps from 0 to past
//! the window, three users, two routes, three rules; one to four requests per script call,
//! as the limiter batches concurrent checks) runs through a `RateLimiter` on the
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
use tenant_guard::ratelimit::{COMPACT_BUCKETS, Decision, Identity, RateLimiter};
use tenant_guard::tenant::TenantId;

/// 2026-11-26 10:00:00 UTC, ms.
const T0: u64 = 1_795_687_200_000;

const SCRIPT: &str = include_str!("../lua/ratelimit.lua");
const TIME_LINE: &str = "local t = redis.call('TIME')";

/// What the test compares: allowed, then per rule (name, allowed, remaining, reset, retry,
/// blocked).
type View = (
    bool,
    Vec<(String, bool, u32, Duration, Option<Duration>, bool)>,
);

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
                r.blocked,
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
    /// `RATE_LIMIT_BLOCK` of the rule, ms: first and longest (0: none).
    block: (u64, u64),
}

impl Rule {
    /// `algo, limit, window_ms, bucket_us, n, shadow, block_ms, block_max_ms`, as
    /// `Spec::new` computes them.
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
            self.block.0.to_string(),
            self.block.1.to_string(),
        ]
        .into()
    }
}

/// Shadows `redis` in the script under test: `SET .. PX n` without the `PX n`, `PEXPIRE` a
/// no-op, everything else unchanged.
const NO_EXPIRY: &str = r#"
local real_redis = redis
local redis = setmetatable({
  call = function(cmd, ...)
    if cmd == 'PEXPIRE' then return 1 end
    if cmd == 'SET' then
      local a, kept, i = {...}, {}, 1
      while i <= #a do
        if a[i] == 'PX' then i = i + 2 else kept[#kept + 1] = a[i]; i = i + 1 end
      end
      return real_redis.call(cmd, unpack(kept))
    end
    return real_redis.call(cmd, ...)
  end,
}, { __index = real_redis })
"#;

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
        // The script's clock is the test's, but Redis expires keys by its own: a key with a
        // TTL of a few simulated milliseconds could expire between two calls that are a
        // millisecond apart in simulated time and far more apart in real time (a loaded CI
        // machine), while the memory store still holds it. So keys never expire here (TTLs
        // are dropped); the script must read state past its window as empty anyway, which
        // these suites check, since simulated time runs ahead of real time.
        let body = format!("{NO_EXPIRY}\n{body}");
        let server = common::RedisServer::start();
        let sha = server.cli(&["SCRIPT", "LOAD", &body]);
        Self { sha, server }
    }

    /// One script call at `now` ms deciding `batch` in order (as the limiter batches checks
    /// that wait together): each decision as `RateLimiter` would report it.
    fn call(&self, now: u64, batch: &[Step], rules: &[Rule], algo: &str) -> Vec<View> {
        self.call_full(now, batch, rules, algo)
            .into_iter()
            .map(|(v, _)| v)
            .collect()
    }

    /// [`call`](Self::call), with the units each request reserved per rule (mode `lease`;
    /// empty otherwise).
    fn call_full(
        &self,
        now: u64,
        batch: &[Step],
        rules: &[Rule],
        algo: &str,
    ) -> Vec<(View, Vec<u32>)> {
        let s = (now / 1000).to_string();
        let us = (now % 1000 * 1000).to_string();
        self.server
            .cli(&["HSET", "mirror-clock", "s", &s, "us", &us]);
        let mut keys: Vec<String> = Vec::new();
        // The call's rules once (every request uses all of them), then the requests.
        let mut argv: Vec<String> = vec![batch.len().to_string(), rules.len().to_string()];
        for r in rules {
            argv.extend(r.argv(algo));
        }
        for (q, step) in batch.iter().enumerate() {
            let user = step.user;
            let counter = |r: &Rule| match r.scope {
                0 => format!("rl:{{t}}:{}", r.name),
                1 => format!("rl:{{t}}:{}:{user}", r.name),
                _ => format!("rl:{{t}}:{}:{user}:GET {}", r.name, step.route),
            };
            keys.extend(rules.iter().map(counter));
            // Then the block keys of the rules that block (none in charges and refunds).
            if step.mode == "check" || step.mode == "peek" || step.mode == "lease" {
                keys.extend(
                    rules
                        .iter()
                        .filter(|r| r.block.0 > 0)
                        .map(|r| format!("blk:{}", counter(r))),
                );
            }
            // Per request: its rule count, mode, cost, nonce (unique: it names the exact
            // log's members; a refund's admission time), charge-backs or refunds of `charge`
            // per rule if any; then its rules by number, then those units.
            let charged = step.charge > 0;
            // A check like the one before it, when no rule is an exact log: "=" (the
            // script takes the previous request's values), as the limiter sends it.
            let repeats = q > 0
                && step.mode == "check"
                && batch[q - 1].mode == "check"
                && batch[q - 1].cost == step.cost
                && !charged
                && algo != "exact";
            if repeats {
                argv.push("=".into());
                continue;
            }
            argv.extend([
                rules.len().to_string(),
                step.mode.to_string(),
                step.cost.to_string(),
                step.nonce.clone(),
                if charged { rules.len() } else { 0 }.to_string(),
            ]);
            argv.extend((1..=rules.len()).map(|j| j.to_string()));
            if charged {
                argv.extend(rules.iter().map(|_| step.charge.to_string()));
            }
        }
        let mut args: Vec<String> =
            vec!["EVALSHA".into(), self.sha.clone(), keys.len().to_string()];
        args.extend(keys);
        args.extend(argv);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let reply = self.server.cli(&args);
        let v: Vec<i64> = reply
            .lines()
            .map(|l| {
                l.trim()
                    .parse()
                    .unwrap_or_else(|_| panic!("script reply: {reply}"))
            })
            .collect();
        let n = rules.len();
        // Per request: all_allowed and now, then five values per rule (and in mode `lease`
        // the units reserved per rule), or the short answer: all_allowed 3, two per rule
        // (remaining, reset), allowed without retry.
        let mut at = 0;
        let answers: Vec<(i64, Vec<[i64; 5]>, Vec<u32>)> = batch
            .iter()
            .map(|s| {
                let head = &v[at..at + 2];
                assert_eq!(head[1] as u64, now, "the script's clock");
                at += 2;
                if head[0] == 3 {
                    let part = &v[at..at + 2 * n];
                    at += part.len();
                    let rules = part.chunks(2).map(|x| [1, x[0], x[1], 0, 0]).collect();
                    return (1, rules, Vec::new());
                }
                let len = if s.mode == "lease" { 6 * n } else { 5 * n };
                let part = &v[at..at + len];
                at += len;
                let rules = part[..5 * n]
                    .chunks(5)
                    .map(|x| [x[0], x[1], x[2], x[3], x[4]])
                    .collect();
                let reserved = part[5 * n..].iter().map(|&u| u as u32).collect();
                (head[0], rules, reserved)
            })
            .collect();
        assert_eq!(at, v.len(), "script reply: {reply}");
        answers
            .into_iter()
            .map(|(all, per_rule, reserved)| {
                let mut out: Vec<_> = rules
                    .iter()
                    .zip(&per_rule)
                    .map(|(r, x)| {
                        let allowed = x[0] == 1;
                        let retry = (!allowed && x[3] >= 0)
                            .then(|| Duration::from_millis(x[3].max(1) as u64));
                        (
                            r.name.to_string(),
                            allowed,
                            x[1] as u32,
                            Duration::from_millis(x[2] as u64),
                            retry,
                            x[0] == 2,
                        )
                    })
                    .collect();
                out.sort_by(|a, b| a.0.cmp(&b.0));
                ((all == 1, out), reserved)
            })
            .collect()
    }
}

/// One request of a script call.
struct Step {
    index: usize,
    user: &'static str,
    route: &'static str,
    cost: u32,
    peek: bool,
    /// `check`, `peek`, `lease`, `charge` or `refund`.
    mode: &'static str,
    nonce: String,
    /// Units charged back, refunded or (`lease`) to reserve on every rule (0: none).
    charge: u32,
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
    let blocks: Vec<String> = rules
        .iter()
        .filter(|r| r.block.0 > 0)
        .map(|r| format!("{}={}ms..{}ms", r.name, r.block.0, r.block.1))
        .collect();
    if !blocks.is_empty() {
        vars.push(("RATE_LIMIT_BLOCK".into(), blocks.join(", ")));
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
    let users: [&'static str; 3] = ["u1", "u2", "u3"];
    let window_ms = rules.iter().map(|r| r.window_ms).max().unwrap_or(1000);
    let mut rng = Xorshift(seed);
    let mut now = T0;
    let (mut refused, mut checks, mut blocked) = (0, 0, 0);
    for step in 0..steps {
        // Mostly small steps (many checks in one bucket), some across buckets, a few past
        // the window.
        now += match rng.below(10) {
            0..=4 => rng.below(3),
            5..=8 => rng.below(window_ms / 4 + 1),
            _ => rng.below(window_ms * 2),
        };
        clock.set_ms(now);
        // One to four requests in one script call, as concurrent checks are batched.
        let n = if rng.below(3) == 0 {
            1 + rng.below(4) as usize
        } else {
            1
        };
        let batch: Vec<Step> = (0..n)
            .map(|j| {
                let peek = rng.below(8) == 0;
                Step {
                    index: step * 4 + j,
                    user: users[rng.below(3) as usize],
                    route: ["/a", "/b"][rng.below(2) as usize],
                    cost: scale
                        * match rng.below(10) {
                            0 => 1 + rng.below(40) as u32,
                            _ => 1 + rng.below(3) as u32,
                        },
                    peek,
                    mode: if peek { "peek" } else { "check" },
                    nonce: format!("n{}", step * 4 + j),
                    charge: 0,
                }
            })
            .collect();
        let from_script = script.call(now, &batch, rules, algo);
        for (s, r) in batch.iter().zip(from_script) {
            let who = Identity::User(s.user.into());
            let check = common::get_check(&tenant, &who, s.route, Some(s.cost));
            let m = if s.peek {
                memory.peek(&check).await
            } else {
                memory.check(&check).await
            };
            assert_eq!(
                r,
                view(&m),
                "{algo} step {step} (request {} of {n}) at +{} ms, {} {} cost {} peek {}: script (left) vs memory (right)",
                s.index % 4 + 1,
                now - T0,
                s.user,
                s.route,
                s.cost,
                s.peek
            );
            refused += usize::from(!m.allowed);
            blocked += usize::from(m.rules.iter().any(|r| r.blocked));
            checks += 1;
        }
    }
    assert!(
        refused > checks / 10 && refused < checks * 9 / 10,
        "the sequence should mix admissions and refusals: {refused} of {checks} refused"
    );
    let blocking = rules.iter().any(|r| r.block.0 > 0);
    assert_eq!(
        blocked > checks / 20,
        blocking,
        "{blocked} of {checks} decisions blocked"
    );
}

const RULES: &[Rule] = &[
    Rule {
        name: "per-endpoint",
        limit: 7,
        window_ms: 900,
        scope: 2,
        block: (0, 0),
    },
    Rule {
        name: "per-user",
        limit: 12,
        window_ms: 1500,
        scope: 1,
        block: (0, 0),
    },
    Rule {
        name: "per-tenant",
        limit: 20,
        window_ms: 2000,
        scope: 0,
        block: (0, 0),
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
            block: (0, 0),
        },
        Rule {
            name: "per-tenant",
            limit: 70_000,
            window_ms: 2000,
            scope: 0,
            block: (0, 0),
        },
    ];
    mirror("compact", &rules, 800, 0x5eed_0002, 40).await;
}

/// Token budgets: reservations (checks of a cost) settled later at a random usage — a
/// refund from the bucket the reservation was charged to (nothing once it has left the
/// window), or a charge of the excess — decide alike on memory and in the script: the
/// compact counter's total and buckets stay in step through refunds.
#[tokio::test]
async fn compact_refunds_and_charges_mirror_memory() {
    use tenant_guard::tokens::{Reservation, TokenBudget, TokenConfig, parse_token_rule};
    let rules = [
        Rule {
            name: "tokens-user",
            limit: 40,
            window_ms: 1500,
            scope: 1,
            block: (0, 0),
        },
        Rule {
            name: "tokens-tenant",
            limit: 70,
            window_ms: 2000,
            scope: 0,
            block: (0, 0),
        },
    ];
    let config = TokenConfig::default()
        .rule(parse_token_rule("user: GET /a = 40/1500ms").unwrap())
        .rule(parse_token_rule("tenant: GET /a = 70/2000ms").unwrap());
    let clock = ManualClock::new();
    clock.set_ms(T0);
    let budget = TokenBudget::new(
        Backend::Memory(MemoryStore::with_clock(
            MemoryConfig::default(),
            clock.clone(),
        )),
        Default::default(),
        config,
        Default::default(),
        &Metrics::new(),
    )
    .unwrap();
    let script = Script::load();
    let tenant = TenantId::new("t").expect("tenant");
    let users: [&'static str; 3] = ["u1", "u2", "u3"];
    let mut rng = Xorshift(0x5eed_0005);
    let mut now = T0;
    // Reservations not settled yet: (memory's, user, admission time, cost).
    let mut pending: Vec<(Reservation, &'static str, u64, u32)> = Vec::new();
    let (mut refused, mut checks, mut settled) = (0, 0, 0);
    let get = http::Method::GET;
    for step in 0..2000 {
        now += match rng.below(10) {
            0..=5 => rng.below(3),
            6..=8 => rng.below(400),
            _ => rng.below(3000),
        };
        clock.set_ms(now);
        if !pending.is_empty() && rng.below(2) == 0 {
            let (r, user, at, cost) = pending.swap_remove(rng.below(pending.len() as u64) as usize);
            let used = rng.below(u64::from(cost) * 2 + 1) as u32;
            r.settle(u64::from(used)).await.unwrap();
            settled += 1;
            if used != cost {
                let (mode, nonce, units) = if used < cost {
                    ("refund", at.to_string(), cost - used)
                } else {
                    ("charge", format!("s{step}"), used - cost)
                };
                let settle = Step {
                    index: step,
                    user,
                    route: "/a",
                    cost: 1,
                    peek: true,
                    mode,
                    nonce,
                    charge: units,
                };
                script.call(now, &[settle], &rules, "compact");
            }
            continue;
        }
        let user = users[rng.below(3) as usize];
        let cost = 1 + rng.below(12) as u32;
        let check = Step {
            index: step,
            user,
            route: "/a",
            cost,
            peek: false,
            mode: "check",
            nonce: format!("n{step}"),
            charge: 0,
        };
        let from_script = script.call(now, &[check], &rules, "compact").remove(0);
        let who = Identity::User(user.into());
        let m = match budget.reserve(&tenant, &who, &get, "/a", cost).await {
            Ok(r) => {
                let v = view(r.decision());
                pending.push((r, user, now, cost));
                v
            }
            Err(d) => {
                refused += 1;
                view(&d)
            }
        };
        checks += 1;
        assert_eq!(
            from_script,
            m,
            "step {step} at +{} ms, {user} cost {cost}: script (left) vs memory (right)",
            now - T0
        );
    }
    assert!(
        settled > 300 && refused > checks / 10 && refused < checks * 9 / 10,
        "{settled} settled, {refused} of {checks} refused"
    );
    for (r, ..) in pending {
        r.settle(0).await.unwrap();
    }
}

/// Mode `lease` (a check that also reserves units for a lease): reserves min(asked, what
/// is left after the cost), only when the check is admitted, and leaves the counter as a
/// check of the cost followed, at the same millisecond, by a check of the reserved units
/// does on the memory store; unused units given back when the lease ends (a refund from
/// the reservation's bucket) mirror a settlement of that second check. Every decision is
/// the same on both sides. (The memory side is a token budget: its reservations settle.)
#[tokio::test]
async fn lease_reservations_mirror_memory() {
    use tenant_guard::tokens::{Reservation, TokenBudget, TokenConfig, parse_token_rule};
    let rules = [Rule {
        name: "tokens-tenant",
        limit: 60,
        window_ms: 1500,
        scope: 0,
        block: (0, 0),
    }];
    let config =
        TokenConfig::default().rule(parse_token_rule("tenant: GET /a = 60/1500ms").unwrap());
    let clock = ManualClock::new();
    clock.set_ms(T0);
    let budget = TokenBudget::new(
        Backend::Memory(MemoryStore::with_clock(
            MemoryConfig::default(),
            clock.clone(),
        )),
        Default::default(),
        config,
        Default::default(),
        &Metrics::new(),
    )
    .unwrap();
    let script = Script::load();
    let tenant = TenantId::new("t").expect("tenant");
    let who = Identity::User("u1".into());
    let get = http::Method::GET;
    let mut rng = Xorshift(0x5eed_0006);
    let mut now = T0;
    let (mut reserved_total, mut leases, mut partial, mut refused) = (0, 0, 0, 0);
    // Admissions kept whole (settled at their cost at the end: nothing refunded).
    let mut kept: Vec<(Reservation, u32)> = Vec::new();
    // Leases not ended yet: memory's reservation of the leased units, the script's
    // reservation time, the units.
    let mut held: Vec<(Reservation, u64, u32)> = Vec::new();
    for step in 0..1500 {
        now += match rng.below(10) {
            0..=5 => rng.below(3),
            6..=8 => rng.below(300),
            _ => rng.below(3000),
        };
        clock.set_ms(now);
        if !held.is_empty() && rng.below(4) == 0 {
            // A lease ends with some of its units used: the rest go back.
            let (r, at, units) = held.swap_remove(rng.below(held.len() as u64) as usize);
            let used = rng.below(u64::from(units) + 1) as u32;
            r.settle(u64::from(used)).await.unwrap();
            if used < units {
                let refund = Step {
                    index: step,
                    user: "u1",
                    route: "/a",
                    cost: 1,
                    peek: true,
                    mode: "refund",
                    nonce: at.to_string(),
                    charge: units - used,
                };
                script.call(now, &[refund], &rules, "compact");
            }
            continue;
        }
        let cost = 1 + rng.below(3) as u32;
        let lease = rng.below(2) == 0;
        let asked = 1 + rng.below(20) as u32;
        let request = Step {
            index: step,
            user: "u1",
            route: "/a",
            cost,
            peek: false,
            mode: if lease { "lease" } else { "check" },
            nonce: format!("n{step}"),
            charge: if lease { asked } else { 0 },
        };
        let (from_script, reserved) = script
            .call_full(now, &[request], &rules, "compact")
            .remove(0);
        let mut expected = match budget.reserve(&tenant, &who, &get, "/a", cost).await {
            Ok(r) => {
                let v = view(r.decision());
                kept.push((r, cost));
                v
            }
            Err(d) => {
                refused += 1;
                view(&d)
            }
        };
        if lease {
            let x = if expected.0 {
                asked.min(expected.1[0].2)
            } else {
                0
            };
            assert_eq!(reserved, vec![x], "step {step}: units reserved");
            if x > 0 {
                let r = budget
                    .reserve(&tenant, &who, &get, "/a", x)
                    .await
                    .unwrap_or_else(|d| panic!("step {step}: the reserved units fit: {d:?}"));
                expected = view(r.decision());
                held.push((r, now, x));
                reserved_total += x;
                leases += 1;
                partial += usize::from(x < asked);
            }
        }
        assert_eq!(
            from_script,
            expected,
            "step {step} at +{} ms, cost {cost}, lease {lease} asking {asked}: script (left) vs memory (right)",
            now - T0
        );
    }
    assert!(
        leases > 100 && partial > 10 && reserved_total > 500 && refused > 50,
        "{leases} leases ({partial} partial), {reserved_total} units reserved, {refused} refused"
    );
    for (r, cost) in kept {
        r.settle(u64::from(cost)).await.unwrap();
    }
    for (r, _, units) in held {
        r.settle(u64::from(units)).await.unwrap();
    }
}

/// Blocks (`RATE_LIMIT_BLOCK`): a rule that denied keeps refusing for its block, doubled
/// on a repeat within the longest block of the last one's end — the same decisions, retry
/// and reset times on both sides, for each algorithm.
#[tokio::test]
async fn blocks_mirror_memory() {
    let rules = [
        Rule {
            name: "per-endpoint",
            limit: 7,
            window_ms: 900,
            scope: 2,
            block: (200, 200),
        },
        Rule {
            name: "per-user",
            limit: 12,
            window_ms: 1500,
            scope: 1,
            block: (150, 1300),
        },
        Rule {
            name: "per-tenant",
            limit: 20,
            window_ms: 2000,
            scope: 0,
            block: (0, 0),
        },
    ];
    for (algo, seed) in [
        ("compact", 0x5eed_0011),
        ("exact", 0x5eed_0012),
        ("gcra", 0x5eed_0013),
    ] {
        mirror(algo, &rules, 1200, seed, 1).await;
    }
}

#[tokio::test]
async fn exact_script_mirrors_memory() {
    mirror("exact", RULES, 1500, 0x5eed_0003, 1).await;
}

#[tokio::test]
async fn gcra_script_mirrors_memory() {
    mirror("gcra", RULES, 1500, 0x5eed_0004, 1).await;
}

/// Hostile or corrupt counter values (any tag, a valid tag with any length, a newest bucket
/// around now, widths that do not divide the length) never make the script fail: compact
/// and GCRA counters read them as a count or as empty, in checks, peeks, charge-backs and
/// refunds.
#[tokio::test]
async fn malformed_counters_never_make_the_script_fail() {
    let server = common::RedisServer::start();
    let client = redis::Client::open(server.url()).unwrap();
    let mut c = client.get_multiplexed_async_connection().await.unwrap();
    let script = redis::Script::new(SCRIPT);
    let mut rng = Xorshift(0x9e37_79b9_7f4a_7c15);
    let now_us = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64;
    let mut errors = Vec::new();
    for i in 0..3000 {
        let len = rng.below(70) as usize;
        let mut v: Vec<u8> = (0..len).map(|_| rng.below(256) as u8).collect();
        if len > 0 && i % 3 != 0 {
            v[0] = [0x81u8, 0x82, 0x84][rng.below(3) as usize];
        }
        // Often a plausible newest bucket (100 ms buckets), near now.
        if len >= 9 && i % 2 == 0 {
            let cur = (now_us / 100_000) as u32;
            let b = cur.wrapping_add(rng.below(40) as u32).wrapping_sub(20);
            v[1..5].copy_from_slice(&b.to_le_bytes());
        }
        let algo = if i % 4 == 0 { "gcra" } else { "win" };
        let _: () = redis::cmd("SET")
            .arg("k")
            .arg(&v)
            .query_async(&mut c)
            .await
            .unwrap();
        let mut inv = script.prepare_invoke();
        // Three requests of one rule: 10 per 3 s, 30 buckets of 100 ms (GCRA: one unit
        // per 300 ms).
        let (bucket, n) = if algo == "gcra" {
            (300_000, 0)
        } else {
            (100_000, 30)
        };
        inv.key("k").key("k").key("k").arg(4).arg(1);
        inv.arg(algo)
            .arg(10)
            .arg(3000)
            .arg(bucket)
            .arg(n)
            .arg(0)
            .arg(0)
            .arg(0);
        // A refund of what a reservation up to 4 s ago was charged.
        let at_ms = now_us / 1000 - rng.below(4000);
        let calls = [
            ("check", 3u32, 0u32),
            ("peek", 1, 0),
            ("check", 300, 7),
            ("refund", 1, 5),
        ];
        inv.key("k");
        for (mode, cost, charge) in calls {
            let nonce = if mode == "refund" {
                at_ms.to_string()
            } else {
                format!("n{i}{mode}{cost}")
            };
            inv.arg(1).arg(mode).arg(cost).arg(nonce);
            inv.arg(u32::from(charge > 0)).arg(1);
            if charge > 0 {
                inv.arg(charge);
            }
        }
        let r: redis::RedisResult<Vec<i64>> = inv.invoke_async(&mut c).await;
        if let Err(e) = r {
            errors.push((v, e.to_string()));
        }
    }
    assert!(
        errors.is_empty(),
        "{} script errors, first: {:?}",
        errors.len(),
        &errors[..errors.len().min(3)]
    );
}
