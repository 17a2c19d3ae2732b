use super::*;
use crate::config::Config;

#[tokio::test]
async fn the_burst_map_forgets_tenants_that_went_away() {
    // 1000/1s: one unit back every millisecond, so a tenant seen once is fresh again
    // (and may be dropped) 2 ms after its check.
    let config =
        Config::from_vars([("RATE_LIMIT_BURST", "1000/1s"), ("RATE_LIMIT_MAX", "5")]).unwrap();
    let metrics = Metrics::new();
    let backend = Backend::from_config(&config, &metrics).unwrap();
    let l = RateLimiter::from_config(&config, backend, &metrics);
    let who = Identity::User("u".into());
    let tenants: Vec<TenantId> = (0..20_000)
        .map(|i| TenantId::new(&format!("t{i}")).unwrap())
        .collect();
    let check = |t| Check {
        tenant: t,
        identity: &who,
        method: &Method::GET,
        route: "/x",
        cost: None,
        plan: None,
    };
    for t in &tenants {
        l.check(&check(t)).await;
    }
    let burst = l.inner.burst.as_ref().unwrap();
    // Real time here: 50 ms is 25 times what a tenant seen once needs to be fresh.
    tokio::time::sleep(Duration::from_millis(50)).await;
    // The next prune is due within max(PRUNE_EVERY, keys held) checks.
    for _ in 0..2 * tenants.len() {
        l.check(&check(&tenants[0])).await;
    }
    assert!(burst.len() <= 1, "{} tenants held", burst.len());
}
