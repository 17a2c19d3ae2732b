use super::*;
use crate::config::Config;
use proptest::prelude::*;

/// Milliseconds around now, far past and far future, and the extremes.
fn instant_ms() -> impl Strategy<Value = u64> {
    let now = entry::now_ms();
    prop_oneof![
        Just(0),
        Just(u64::MAX),
        any::<u64>(),
        (0..120_000u64).prop_map(move |d| now - 60_000 + d),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 128,
        failure_persistence: Some(Box::new(
            proptest::test_runner::FileFailurePersistence::Direct(
                "proptest-regressions/cache/mod.txt",
            ),
        )),
        ..ProptestConfig::default()
    })]

    /// Whatever the store holds under a key (an envelope with any times, status,
    /// headers and body, or raw bytes), with any TTL, jitter and stale window from the
    /// environment: a lookup answers a value, never a panic (L1 on, so a decoded entry
    /// is also put there; a miss stores what it computed).
    #[test]
    fn any_stored_value_is_served_or_recomputed(
        stored_ms in instant_ms(),
        fresh_until_ms in instant_ms(),
        status in any::<u16>(),
        json_body in any::<bool>(),
        body in proptest::collection::vec(any::<u8>(), 0..40),
        raw in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..60)),
        stale in prop_oneof![
            Just("0".to_string()),
            Just("10s".to_string()),
            Just("18446744073709551".to_string()),
            (0..u64::MAX / 1000).prop_map(|s| s.to_string()),
        ],
        ttl in prop_oneof![
            Just("5m".to_string()),
            Just("18446744073709551615".to_string()),
            any::<u64>().prop_map(|s| s.to_string()),
            // Milliseconds that fit a u64 but not when added to now.
            (u64::MAX / 1000 - 1_000_000_000..=u64::MAX / 1000).prop_map(|s| s.to_string()),
        ],
        jitter in prop_oneof![Just("0"), Just("10"), Just("100")],
    ) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let served: Result<serde_json::Value, String> = rt.block_on(async {
            let config = Config::from_vars([
                ("REDIS_ENABLED", "false"),
                ("CACHE_STALE_TTL", stale.as_str()),
                ("QUERY_CACHE_TTL", ttl.as_str()),
                ("CACHE_TTL_JITTER", jitter),
            ])
            .map_err(|e| e.to_string())?;
            let metrics = Metrics::new();
            let backend = Backend::from_config(&config, &metrics).map_err(|e| e.to_string())?;
            let cache = Cache::from_config(&config, backend.clone(), &metrics);
            let t = TenantId::new("acme").unwrap();
            let key = cache
                .material_key(&t, &Category::query(), &"k")
                .map_err(|e| e.to_string())?;
            let stored = match &raw {
                Some(raw) => raw.clone(),
                None => Entry {
                    stored_ms,
                    fresh_until_ms,
                    status,
                    headers: vec![("content-type".into(), "application/json".into())],
                    body: if json_body {
                        Bytes::from_static(b"{\"from\":\"store\"}")
                    } else {
                        Bytes::from(body.clone())
                    },
                    gens: [0, 0],
tags: Vec::new(),
                }
                // Compressed whenever that is smaller: the cache decodes both forms.
                .encode(super::entry::Compression {
                    min: 1,
                    max: 1 << 20,
                }),
            };
            backend
                .set(&key.key, &stored, None)
                .await
                .map_err(|e| e.to_string())?;
            // Twice: the second lookup may be served from L1.
            let mut last = serde_json::Value::Null;
            for _ in 0..2 {
                last = cache
                    .get_or_compute(&t, &Category::query(), &"k", || async {
                        Ok::<_, String>(serde_json::json!({ "from": "compute" }))
                    })
                    .await
                    .map_err(|e| e.to_string())?
                    .value;
            }
            Ok(last)
        });
        let v = served.map_err(TestCaseError::fail)?;
        prop_assert!(v["from"] == "store" || v["from"] == "compute", "{v}");
    }
}
