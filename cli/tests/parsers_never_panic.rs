//! The load tool's parsers of outside input answer a value or an error, never a panic:
//! endpoints (`load --endpoint`), costs (`--cost`), rule checks (`--rule`) and scenario files
//! (`--scenario`); and where they read the text of an environment variable's entry, they read
//! it as the library does. The library's parsers are covered by its own
//! `tests/parsers_never_panic.rs`.
//!
//! Inputs are arbitrary bytes and strings, plus strings assembled from each grammar's own
//! tokens so that the deep branches are reached too. Failures are kept in
//! `cli/proptest-regressions/parsers_never_panic.txt`.

use std::time::Duration;

use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;
use tenant_guard::ratelimit::{EndpointPattern, Quota, Rule, Scope};
use tenant_guard_cli::loadgen::{Endpoint, RuleCheck, Scenario, parse_cost, schedule};

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
            "proptest-regressions/parsers_never_panic.txt",
        ))),
        ..ProptestConfig::default()
    }
}

/// Strings made of `tokens` and a few arbitrary characters: reaches the branches that a
/// purely random string never does.
fn grammar(tokens: &'static [&'static str]) -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            4 => prop::sample::select(tokens).prop_map(str::to_string),
            1 => any::<char>().prop_map(|c| c.to_string()),
            1 => "[0-9]{1,25}",
        ],
        0..12,
    )
    .prop_map(|parts| parts.concat())
}

/// Arbitrary text: any Unicode, printable ASCII, or the grammar's tokens.
fn text(tokens: &'static [&'static str]) -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[ -~]{0,64}",
        grammar(tokens),
        any::<Vec<u8>>().prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
    ]
}

/// Tokens of endpoints, costs and rule checks (`[NAME:] METHOD /path = LIMIT/WINDOW`), and
/// of their former forms (`NAME=LIMIT/WINDOW:user@METHOD:/path`).
const RULE_TOKENS: &[&str] = &[
    "GET",
    "get",
    "POST",
    "*",
    "X-CUSTOM",
    " ",
    "/",
    "/api",
    "/{id}",
    "=",
    ":",
    "@",
    "ai",
    "1",
    "0",
    "4294967295",
    "4294967296",
    "/1s",
    "/15m",
    "/0",
    "ms",
    "d",
    ":user",
    "=5/5s",
    " = ",
    "ai: ",
    "POST /api/ai/{*rest}",
    "/{*rest}",
    "{",
    "}",
    "?",
    " per user",
    " per tenant",
    "GET:/api/items",
    "@POST:/api/ai/complete",
];

proptest! {
    #![proptest_config(config(384))]

    /// Rule checks: a value or an error; an accepted one names a rule and a window.
    #[test]
    fn rule_checks(s in text(RULE_TOKENS)) {
        if let Ok(r) = RuleCheck::parse(&s) {
            prop_assert!(r.limit >= 1);
            prop_assert!(r.window >= Duration::from_millis(1));
        }
    }

    /// One parser: a `--rule` with an endpoint and no scope word is a `RATE_LIMIT_ENDPOINTS`
    /// entry, accepted or refused as the library does and read as the same rule; a `--cost`
    /// is a `RATE_LIMIT_COSTS` entry. An accepted `--endpoint` prints back as itself.
    #[test]
    fn flags_read_entries_as_the_library_does(s in text(RULE_TOKENS)) {
        let scoped = ["user", "tenant", "endpoint"]
            .iter()
            .any(|w| s.trim_end().ends_with(w));
        let has_path = s.rsplit_once('=').is_some_and(|(lhs, _)| lhs.contains('/'));
        if has_path && !scoped && !s.contains('@') {
            let check = RuleCheck::parse(&s);
            let rule = Rule::parse_endpoint(&s);
            prop_assert_eq!(check.is_ok(), rule.is_ok(), "{:?} vs {:?}", check, rule);
            if let (Ok(c), Ok(r)) = (check, rule) {
                prop_assert_eq!(&c.name, &r.name);
                prop_assert_eq!((c.limit, c.window), (r.quota.limit.get(), r.quota.window));
                prop_assert_eq!(c.per_user, r.scope == Scope::Caller);
                prop_assert_eq!(c.endpoints, r.endpoint.into_iter().collect::<Vec<_>>());
            }
        }
        let cost = parse_cost(&s);
        let entry = EndpointPattern::parse_numbered(&s, "cost");
        prop_assert_eq!(cost.is_ok(), entry.is_ok());
        if let (Ok(c), Ok(e)) = (cost, entry) {
            prop_assert_eq!((c.0, c.1), (e.0, e.1.get()));
        }
        if let Ok(e) = Endpoint::parse(&s) {
            prop_assert!(e.weight >= 1 && e.path.starts_with('/'));
            prop_assert_eq!(Endpoint::parse(&e.to_string()), Ok(e));
        }
    }

    /// Scenario files: arbitrary bytes, and JSON shaped like a scenario with arbitrary
    /// values. A scenario that validates is scheduled (over a short run).
    #[test]
    fn scenario_files(raw in any::<Vec<u8>>(), shaped in scenario_json()) {
        for bytes in [raw, shaped.into_bytes()] {
            let Ok(s) = serde_json::from_slice::<Scenario>(&bytes) else {
                continue;
            };
            if let Some(limit) = &s.limit {
                let _ = Quota::parse(limit);
            }
            if let Ok(loads) = s.validate() {
                let _ = schedule(&loads, Duration::from_millis(20));
            }
        }
    }
}

/// JSON text shaped like a scenario, with arbitrary (and extreme) values in every field;
/// most fields valid, so that validation passes often enough to reach the schedule.
fn scenario_json() -> impl Strategy<Value = String> {
    let number = prop_oneof![
        12 => prop::sample::select(&["1", "50", "100000", "1e-300", "0.001"][..])
            .prop_map(str::to_string),
        1 => any::<f64>().prop_map(|f| if f.is_finite() { f.to_string() } else { "1e309".into() }),
        1 => any::<i64>().prop_map(|n| n.to_string()),
    ]
    .boxed();
    let count = prop_oneof![
        12 => prop::sample::select(&["1", "3", "4294967295"][..]).prop_map(str::to_string),
        1 => any::<u32>().prop_map(|n| n.to_string()),
        1 => any::<i64>().prop_map(|n| n.to_string()),
    ]
    .boxed();
    let string = |valid: &'static [&'static str]| {
        prop_oneof![
            12 => prop::sample::select(valid).prop_map(str::to_string),
            1 => text(&["GET", "/api", "acme", "30s", "10/1s", "1000y", " ", "/"]),
        ]
        .prop_map(move |s| serde_json::Value::String(s).to_string())
        .boxed()
    };
    // Mostly the endpoint form (`"GET /api/items = 3"`), sometimes arbitrary text, a number
    // or the former object form (refused).
    let endpoint = prop_oneof![
        12 => (
            prop::sample::select(&["GET", "post", "PUT", "*"][..]),
            prop::sample::select(&["/api/items", "/", "/{id}", "/a b"][..]),
            count.clone(),
        )
            .prop_map(|(m, p, w)| serde_json::Value::String(format!("{m} {p} = {w}")).to_string()),
        1 => text(RULE_TOKENS).prop_map(|t| serde_json::Value::String(t).to_string()),
        1 => count.clone(),
        1 => count.clone().prop_map(|w| format!(r#"{{"method":"GET","path":"/x","weight":{w}}}"#)),
    ];
    let endpoints =
        prop::collection::vec(endpoint, 0..3).prop_map(|v| format!("[{}]", v.join(",")));
    let tenant =
        (string(&["acme", "t-1"]), number, count, endpoints.clone()).prop_map(|(t, r, u, e)| {
            format!(r#"{{"tenant":{t},"rate":{r},"users":{u},"endpoints":{e}}}"#)
        });
    let tenants = prop::collection::vec(tenant, 0..4).prop_map(|v| format!("[{}]", v.join(",")));
    (
        string(&["30s", "1000y", "0s", "18446744073709551615s"]),
        string(&["10/1s", "1/0s", "x"]),
        tenants,
        endpoints,
    )
        .prop_map(|(d, l, t, e)| {
            format!(r#"{{"duration":{d},"limit":{l},"tenants":{t},"endpoints":{e}}}"#)
        })
}

/// Regression: a scenario endpoint of weight `u32::MAX` made the schedule write out a cycle
/// of 4 G entries (32 GiB): the load tool aborted on the allocation.
#[test]
fn scenario_weights_up_to_u32_max_are_scheduled() {
    let s: Scenario = serde_json::from_str(
        r#"{"tenants":[{"tenant":"acme","rate":1000,"endpoints":[
            "GET /a = 4294967295", "GET /b = 4294967295"]}]}"#,
    )
    .unwrap();
    let plan = schedule(&s.validate().unwrap(), Duration::from_millis(20));
    assert_eq!(plan.len(), 20);
    assert!(plan.iter().all(|p| p.endpoint == 0));
    // Small weights keep their order: two of /a, then one of /b (weight 1 if left out).
    let s: Scenario = serde_json::from_str(
        r#"{"tenants":[{"tenant":"acme","rate":1000,"endpoints":[
            "GET /a = 2", "GET /b = 1", "GET /c"]}]}"#,
    )
    .unwrap();
    let plan = schedule(&s.validate().unwrap(), Duration::from_millis(8));
    let order: Vec<usize> = plan.iter().map(|p| p.endpoint).collect();
    assert_eq!(order, [0, 0, 1, 2, 0, 0, 1, 2]);
    // A weight of 0 is refused (it used to be read as 1).
    let zero = serde_json::from_str::<Scenario>(
        r#"{"tenants":[{"tenant":"acme","rate":1,"endpoints":["GET /a = 0"]}]}"#,
    )
    .unwrap_err();
    assert!(
        zero.to_string().contains("weight must be at least 1"),
        "{zero}"
    );
}
