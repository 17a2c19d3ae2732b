//! `tenant_guard_cli::sizing` on a real Redis the test starts: every tenant's keys are written,
//! memory is measured per kind, and the slot spread adds up.

#[path = "../../tests/common/mod.rs"]
mod common;

#[tokio::test(flavor = "multi_thread")]
async fn sizing_run_writes_every_kind_and_measures_it() {
    let server = common::RedisServer::start();
    let plan = tenant_guard_cli::sizing::SizingPlan {
        url: server.url(),
        tenants: 2_000,
        concurrency: 16,
    };
    let report = tenant_guard_cli::sizing::run(&plan, |_| {}).await.unwrap();
    // 3 counters + session + index + cached query + 3 cache generations per tenant (the
    // tenant's, the category's, the tag epoch).
    assert_eq!(report.keys, 9 * 2_000, "{report:?}");
    assert_eq!(report.kinds.len(), 5);
    for k in &report.kinds {
        assert!(k.bytes_per_key > 50.0, "{k:?}");
        assert!(k.example_key.starts_with("tg:"), "{k:?}");
    }
    assert!(report.used_memory_after > report.used_memory_before);
    assert!(report.bytes_per_tenant > report.sampled_bytes_per_tenant * 0.5);
    let shares: f64 = report.master_share.iter().sum();
    assert!((shares - 1.0).abs() < 1e-9);
    assert!(report.slot_max >= report.slot_min);
    assert!(report.table().contains("bytes per tenant"));
    // The command refuses a non-empty database unless told otherwise.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tenant-guard"))
        .args(["size", "--target", &server.url(), "--tenants", "10"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("empty server"));
}
