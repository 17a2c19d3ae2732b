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
    /// The tags it carries, each with the tag's generation when stored (0 until then):
    /// an entry whose tag has moved on is a miss.
    pub tags: Vec<(String, u64)>,
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
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    t: Vec<(String, u64)>,
    /// The body is zstd-compressed; its length once decompressed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    z: Option<u64>,
}

/// When an entry's body is stored compressed: bodies of `min..=max` bytes (`min` 0: never).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Compression {
    pub min: usize,
    pub max: usize,
}

impl Compression {
    /// Never compressed (and nothing compressed is read).
    #[cfg(test)]
    pub(crate) const OFF: Self = Self { min: 0, max: 0 };

    /// zstd's default level: fast, and most of the gain on JSON and text.
    const LEVEL: i32 = 3;

    fn applies(&self, len: usize) -> bool {
        self.min > 0 && len >= self.min && len <= self.max
    }
}

impl Entry {
    /// `TGC1` + meta length (u32 BE) + meta JSON + body; the body zstd-compressed when
    /// `compression` applies to its size and that makes it smaller.
    pub(crate) fn encode(&self, compression: Compression) -> Vec<u8> {
        let packed = compression
            .applies(self.body.len())
            .then(|| zstd::bulk::compress(&self.body, Compression::LEVEL).ok())
            .flatten()
            .filter(|z| z.len() < self.body.len());
        let meta = serde_json::to_vec(&Meta {
            s: self.stored_ms,
            f: self.fresh_until_ms,
            st: self.status,
            h: self.headers.clone(),
            g: self.gens,
            t: self.tags.clone(),
            z: packed.as_ref().map(|_| self.body.len() as u64),
        })
        .unwrap_or_default();
        let body: &[u8] = packed.as_deref().unwrap_or(&self.body);
        let mut out = Vec::with_capacity(8 + meta.len() + body.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&u32::try_from(meta.len()).unwrap_or(0).to_be_bytes());
        out.extend_from_slice(&meta);
        out.extend_from_slice(body);
        out
    }

    /// `None` for anything that is not a well-formed envelope of this version, and for a
    /// compressed body that claims more than `compression.max` bytes or does not
    /// decompress to exactly what it claims (never more is allocated than that bound).
    pub(crate) fn decode(raw: &Bytes, compression: Compression) -> Option<Self> {
        if raw.len() < 8 || &raw[..4] != MAGIC {
            return None;
        }
        let len = u32::from_be_bytes(raw[4..8].try_into().ok()?) as usize;
        let meta_end = 8usize.checked_add(len)?;
        if meta_end > raw.len() {
            return None;
        }
        let meta: Meta = serde_json::from_slice(&raw[8..meta_end]).ok()?;
        let body = match meta.z {
            None => raw.slice(meta_end..),
            Some(n) => {
                let n = usize::try_from(n).ok().filter(|&n| n <= compression.max)?;
                let out = zstd::bulk::decompress(&raw[meta_end..], n).ok()?;
                if out.len() != n {
                    return None;
                }
                Bytes::from(out)
            }
        };
        Some(Self {
            stored_ms: meta.s,
            fresh_until_ms: meta.f,
            status: meta.st,
            headers: meta.h,
            body,
            gens: meta.g,
            tags: meta.t,
        })
    }

    /// Bytes the entry takes in L1 (for its weight).
    pub(crate) fn weight(&self) -> u32 {
        let h: usize = self.headers.iter().map(|(k, v)| k.len() + v.len()).sum();
        let t: usize = self.tags.iter().map(|(t, _)| t.len() + 8).sum();
        u32::try_from(64 + h + t + self.body.len()).unwrap_or(u32::MAX)
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
            tags: vec![("rooms".into(), 9)],
        };
        let raw = Bytes::from(e.encode(Compression::OFF));
        assert_eq!(Entry::decode(&raw, Compression::OFF), Some(e));
        for bad in [
            &b""[..],
            b"TGC1",
            b"TGC2\0\0\0\x02{}",
            b"TGC1\0\0\0\xff{}",
            b"TGC1\0\0\0\x02xx",
            b"plain old value",
        ] {
            assert_eq!(
                Entry::decode(&Bytes::copy_from_slice(bad), Compression::OFF),
                None
            );
        }
    }

    #[test]
    fn compressed_bodies_round_trip_and_bombs_are_misses() {
        let on = Compression {
            min: 64,
            max: 1 << 20,
        };
        let json: String = (0..200)
            .map(|i| format!(r#"{{"room":{i},"floor":3,"status":"clean","beds":2}},"#))
            .collect();
        let e = Entry {
            stored_ms: 1,
            fresh_until_ms: 2,
            status: 200,
            headers: vec![("content-type".into(), "application/json".into())],
            body: Bytes::from(json),
            gens: [3, 7],
            tags: vec![("rooms".into(), 9)],
        };
        let packed = Bytes::from(e.encode(on));
        let plain = e.encode(Compression::OFF);
        assert!(
            packed.len() * 4 < plain.len(),
            "{} vs {}",
            packed.len(),
            plain.len()
        );
        assert_eq!(Entry::decode(&packed, on), Some(e.clone()));
        // Below the threshold, or incompressible: stored as it is.
        let small = Entry {
            body: Bytes::from_static(b"{\"a\":1}"),
            ..e.clone()
        };
        assert_eq!(small.encode(on), small.encode(Compression::OFF));
        // A body claiming more than the bound is a miss, however it decompresses.
        let tight = Compression { min: 64, max: 100 };
        assert_eq!(Entry::decode(&packed, tight), None);
        // A bomb: a few bytes that decompress far past what they claim.
        let bomb = zstd::bulk::compress(&vec![0u8; 1 << 24], 3).unwrap();
        let meta = br#"{"s":1,"f":2,"st":200,"z":10}"#;
        let mut raw = MAGIC.to_vec();
        raw.extend_from_slice(&(meta.len() as u32).to_be_bytes());
        raw.extend_from_slice(meta);
        raw.extend_from_slice(&bomb);
        assert_eq!(Entry::decode(&Bytes::from(raw), on), None);
        // Garbage where the compressed body should be: a miss.
        let mut raw = MAGIC.to_vec();
        raw.extend_from_slice(&(meta.len() as u32).to_be_bytes());
        raw.extend_from_slice(meta);
        raw.extend_from_slice(b"not zstd at all");
        assert_eq!(Entry::decode(&Bytes::from(raw), on), None);
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
            let on = Compression { min: 1, max: 1 << 16 };
            if let Some(e) = Entry::decode(&Bytes::from(raw.clone()), on) {
                let _ = e.weight();
            }
            // The magic, then arbitrary bytes: the length field is whatever they say.
            let mut magic = MAGIC.to_vec();
            magic.extend_from_slice(&raw);
            let _ = Entry::decode(&Bytes::from(magic), on);
            // A well-framed envelope of arbitrary meta, with the length off by a little.
            let len = (meta.len() as i64 + len_delta).max(0) as u32;
            let mut framed = MAGIC.to_vec();
            framed.extend_from_slice(&len.to_be_bytes());
            framed.extend_from_slice(meta.as_bytes());
            framed.extend_from_slice(&body);
            if let Some(e) = Entry::decode(&Bytes::from(framed), Compression::OFF) {
                let _ = e.weight();
                if len_delta == 0 {
                    prop_assert_eq!(&e.body[..], &body[..]);
                }
            }
        }
    }
}
