//! The versioned envelope every cache entry is stored in.

#![cfg_attr(not(feature = "redis"), allow(dead_code))]

use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// Magic and version of the envelope; anything else decodes as a miss.
const MAGIC: &[u8; 4] = b"TGC1";

/// One cached value: a response (status, headers, body) or a serialized value (status 0).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    /// Wall-clock ms when stored (for `Age`).
    pub stored_ms: u64,
    /// Wall-clock ms until which the entry is fresh.
    pub fresh_until_ms: u64,
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
    /// The tenant's and the category's cache generations when the entry was computed: an
    /// entry of older generations is a miss (invalidated).
    pub gens: [u64; 2],
}

#[derive(Serialize, Deserialize)]
struct Meta {
    s: u64,
    f: u64,
    #[serde(default)]
    st: u16,
    #[serde(default)]
    h: Vec<(String, String)>,
    #[serde(default)]
    g: [u64; 2],
}

impl Entry {
    /// `TGC1` + meta length (u32 BE) + meta JSON + body.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let meta = serde_json::to_vec(&Meta {
            s: self.stored_ms,
            f: self.fresh_until_ms,
            st: self.status,
            h: self.headers.clone(),
            g: self.gens,
        })
        .unwrap_or_default();
        let mut out = Vec::with_capacity(8 + meta.len() + self.body.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&u32::try_from(meta.len()).unwrap_or(0).to_be_bytes());
        out.extend_from_slice(&meta);
        out.extend_from_slice(&self.body);
        out
    }

    /// `None` for anything that is not a well-formed envelope of this version.
    pub(crate) fn decode(raw: &Bytes) -> Option<Self> {
        if raw.len() < 8 || &raw[..4] != MAGIC {
            return None;
        }
        let len = u32::from_be_bytes(raw[4..8].try_into().ok()?) as usize;
        let meta_end = 8usize.checked_add(len)?;
        if meta_end > raw.len() {
            return None;
        }
        let meta: Meta = serde_json::from_slice(&raw[8..meta_end]).ok()?;
        Some(Self {
            stored_ms: meta.s,
            fresh_until_ms: meta.f,
            status: meta.st,
            headers: meta.h,
            body: raw.slice(meta_end..),
            gens: meta.g,
        })
    }

    /// Bytes the entry takes in L1 (for its weight).
    pub(crate) fn weight(&self) -> u32 {
        let h: usize = self.headers.iter().map(|(k, v)| k.len() + v.len()).sum();
        u32::try_from(64 + h + self.body.len()).unwrap_or(u32::MAX)
    }
}

/// Wall-clock ms since the Unix epoch.
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_garbage() {
        let e = Entry {
            stored_ms: 1,
            fresh_until_ms: 2,
            status: 200,
            headers: vec![("content-type".into(), "application/json".into())],
            body: Bytes::from_static(b"{\"a\":1}"),
            gens: [3, 7],
        };
        let raw = Bytes::from(e.encode());
        assert_eq!(Entry::decode(&raw), Some(e));
        for bad in [
            &b""[..],
            b"TGC1",
            b"TGC2\0\0\0\x02{}",
            b"TGC1\0\0\0\xff{}",
            b"TGC1\0\0\0\x02xx",
            b"plain old value",
        ] {
            assert_eq!(Entry::decode(&Bytes::copy_from_slice(bad)), None);
        }
    }

    use proptest::prelude::*;

    /// Meta JSON with arbitrary values in every field (and fields of the wrong type).
    fn meta() -> impl Strategy<Value = String> {
        let num = prop_oneof![
            any::<u64>().prop_map(|n| n.to_string()),
            any::<i64>().prop_map(|n| n.to_string()),
            Just("1e400".to_string()),
            Just("\"x\"".to_string()),
        ];
        let header =
            ("\\PC{0,20}", "\\PC{0,20}").prop_map(|(k, v)| serde_json::json!([k, v]).to_string());
        (
            num.clone(),
            num.clone(),
            num,
            proptest::collection::vec(header, 0..4),
        )
            .prop_map(|(s, f, st, h)| {
                format!(r#"{{"s":{s},"f":{f},"st":{st},"h":[{}]}}"#, h.join(","))
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig {
            cases: 256,
            failure_persistence: Some(Box::new(
                proptest::test_runner::FileFailurePersistence::Direct(
                    "proptest-regressions/cache/entry.txt",
                ),
            )),
            ..ProptestConfig::default()
        })]

        /// Whatever Redis holds under a cache key decodes to an entry or to a miss.
        #[test]
        fn arbitrary_bytes_decode_without_panic(
            raw in proptest::collection::vec(any::<u8>(), 0..300),
            meta in meta(),
            len_delta in -3i64..3,
            body in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            if let Some(e) = Entry::decode(&Bytes::from(raw.clone())) {
                let _ = e.weight();
            }
            // The magic, then arbitrary bytes: the length field is whatever they say.
            let mut magic = MAGIC.to_vec();
            magic.extend_from_slice(&raw);
            let _ = Entry::decode(&Bytes::from(magic));
            // A well-framed envelope of arbitrary meta, with the length off by a little.
            let len = (meta.len() as i64 + len_delta).max(0) as u32;
            let mut framed = MAGIC.to_vec();
            framed.extend_from_slice(&len.to_be_bytes());
            framed.extend_from_slice(meta.as_bytes());
            framed.extend_from_slice(&body);
            if let Some(e) = Entry::decode(&Bytes::from(framed)) {
                let _ = e.weight();
                if len_delta == 0 {
                    prop_assert_eq!(&e.body[..], &body[..]);
                }
            }
        }
    }
}
