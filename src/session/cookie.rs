//! The session cookie: signing (or encryption) with key rotation, attributes, parsing.

use std::time::Duration;

use cookie::{Cookie, CookieJar, Key};
use http::{HeaderMap, HeaderValue};

use super::SessionId;
use crate::config::{SameSite, SessionConfig};

/// Longest cookie value considered; longer ones are treated as absent-and-bad. A signed id
/// is 76 characters, an encrypted one 88.
const MAX_VALUE_LEN: usize = 256;

/// What the request's cookie said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CookieState {
    /// No session cookie.
    Absent,
    /// A session cookie that does not verify (tampered, truncated, wrong key, malformed,
    /// oversized): treated as no session, and cleared in the response.
    Invalid,
    /// A verified id.
    Valid(SessionId),
}

/// Encodes and verifies the session cookie.
///
/// The value is the session id signed with HMAC-SHA256 (or encrypted with AES-256-GCM when
/// `SESSION_COOKIE_ENCRYPT=true`) by the `cookie` crate, under a key derived from
/// `SESSION_SECRET`. Cookies signed with any `SESSION_SECRET_PREVIOUS` still verify; new
/// cookies are always signed with `SESSION_SECRET`.
///
/// ```
/// use tenant_guard::config::SessionConfig;
/// use tenant_guard::session::CookieCodec;
///
/// let codec = CookieCodec::from_config(&SessionConfig::default());
/// assert_eq!(codec.name(), "sid");
/// let id = tenant_guard::session::SessionId::generate();
/// let set_cookie = codec.encode(&id);
/// let s = set_cookie.to_str().unwrap();
/// assert!(s.starts_with("sid=") && s.contains("HttpOnly") && s.contains("Secure"));
/// assert!(s.contains("SameSite=Lax") && s.contains("Path=/"));
/// ```
#[derive(Clone)]
pub struct CookieCodec {
    name: String,
    signing: Key,
    verifying: Vec<Key>,
    encrypt: bool,
    secure: bool,
    same_site: cookie::SameSite,
    domain: Option<String>,
    max_age: Duration,
}

impl std::fmt::Debug for CookieCodec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CookieCodec")
            .field("name", &self.name)
            .field("keys", &self.verifying.len())
            .field("encrypt", &self.encrypt)
            .field("secure", &self.secure)
            .field("same_site", &self.same_site)
            .field("domain", &self.domain)
            .finish_non_exhaustive()
    }
}

impl CookieCodec {
    /// The codec the session configuration describes. Without `SESSION_SECRET` a random
    /// per-process key is used (sessions then end when the process does).
    pub fn from_config(config: &SessionConfig) -> Self {
        let signing = config
            .secret
            .as_ref()
            .map_or_else(Key::generate, |s| Key::derive_from(s.expose().as_bytes()));
        let mut verifying = vec![signing.clone()];
        verifying.extend(
            config
                .previous_secrets
                .iter()
                .map(|s| Key::derive_from(s.expose().as_bytes())),
        );
        let name = if config.cookie_host_prefix {
            format!("__Host-{}", config.cookie_name)
        } else {
            config.cookie_name.clone()
        };
        Self {
            name,
            signing,
            verifying,
            encrypt: config.cookie_encrypt,
            secure: config.cookie_secure,
            same_site: match config.cookie_same_site {
                SameSite::Strict => cookie::SameSite::Strict,
                SameSite::Lax => cookie::SameSite::Lax,
                SameSite::None => cookie::SameSite::None,
            },
            domain: config.cookie_domain.clone(),
            max_age: config.max_lifetime,
        }
    }

    /// The cookie name (with the `__Host-` prefix when configured).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Reads the session id from the request's `Cookie` headers.
    pub(crate) fn decode(&self, headers: &HeaderMap) -> CookieState {
        let mut state = CookieState::Absent;
        for header in headers.get_all(http::header::COOKIE) {
            let Ok(text) = header.to_str() else {
                // Not visible ASCII: cannot be ours, whatever else it holds.
                if memchr_name(header.as_bytes(), self.name.as_bytes()) {
                    state = CookieState::Invalid;
                }
                continue;
            };
            for pair in text.split(';') {
                let Some((name, value)) = pair.trim().split_once('=') else {
                    continue;
                };
                if name.trim() != self.name {
                    continue;
                }
                match self.verify(value.trim()) {
                    Some(id) => return CookieState::Valid(id),
                    None => state = CookieState::Invalid,
                }
            }
        }
        state
    }

    fn verify(&self, value: &str) -> Option<SessionId> {
        if value.is_empty() || value.len() > MAX_VALUE_LEN {
            return None;
        }
        let value = value.trim_matches('"');
        for key in &self.verifying {
            let mut jar = CookieJar::new();
            jar.add_original(Cookie::new(self.name.clone(), value.to_string()));
            let plain = if self.encrypt {
                jar.private(key).get(&self.name)
            } else {
                jar.signed(key).get(&self.name)
            };
            if let Some(c) = plain {
                return SessionId::parse(c.value());
            }
        }
        None
    }

    fn base(&self, value: String) -> Cookie<'static> {
        let mut c = Cookie::build((self.name.clone(), value))
            .http_only(true)
            .secure(self.secure)
            .same_site(self.same_site)
            .path("/")
            .build();
        if let Some(d) = &self.domain {
            c.set_domain(d.clone());
        }
        c
    }

    /// The `Set-Cookie` value carrying `id`, signed (or encrypted) with the current key.
    pub fn encode(&self, id: &SessionId) -> HeaderValue {
        let mut jar = CookieJar::new();
        let cookie = self.base(id.as_str().to_string());
        if self.encrypt {
            jar.private_mut(&self.signing).add(cookie);
        } else {
            jar.signed_mut(&self.signing).add(cookie);
        }
        let mut out = jar
            .get(&self.name)
            .cloned()
            .expect("the jar holds the cookie just added");
        out.set_max_age(cookie::time::Duration::seconds(
            i64::try_from(self.max_age.as_secs()).unwrap_or(i64::MAX),
        ));
        HeaderValue::try_from(out.to_string()).expect("cookie strings are valid header values")
    }

    /// The `Set-Cookie` value that removes the cookie.
    pub fn removal(&self) -> HeaderValue {
        let mut c = self.base(String::new());
        c.set_max_age(cookie::time::Duration::ZERO);
        HeaderValue::try_from(c.to_string()).expect("cookie strings are valid header values")
    }
}

/// Whether `hay` contains `name=` (for headers that are not valid strings).
fn memchr_name(hay: &[u8], name: &[u8]) -> bool {
    hay.windows(name.len() + 1)
        .any(|w| &w[..name.len()] == name && w[name.len()] == b'=')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;

    fn config(secret: &str) -> SessionConfig {
        SessionConfig {
            secret: Some(Secret::new(secret)),
            ..SessionConfig::default()
        }
    }

    fn request_with(cookie: &[u8]) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.append(
            http::header::COOKIE,
            HeaderValue::from_bytes(cookie).unwrap(),
        );
        h
    }

    fn value_of(set_cookie: &HeaderValue) -> String {
        let s = set_cookie.to_str().unwrap();
        let first = s.split(';').next().unwrap();
        first.split_once('=').unwrap().1.to_string()
    }

    const A: &str = "an-example-secret-of-at-least-32-bytes-AAAA";
    const B: &str = "another-example-secret-of-32-bytes-or-more-B";

    #[test]
    fn round_trip_and_rejections() {
        let codec = CookieCodec::from_config(&config(A));
        let id = SessionId::generate();
        let v = value_of(&codec.encode(&id));
        let ok = request_with(format!("other=1; sid={v}; x=y").as_bytes());
        assert_eq!(codec.decode(&ok), CookieState::Valid(id.clone()));
        assert_eq!(codec.decode(&HeaderMap::new()), CookieState::Absent);
        assert_eq!(codec.decode(&request_with(b"other=1")), CookieState::Absent);
        // Tampered: flip one character of the id part.
        let mut bad = v.clone().into_bytes();
        let last = bad.len() - 1;
        bad[last] = if bad[last] == b'A' { b'B' } else { b'A' };
        let bad = String::from_utf8(bad).unwrap();
        for value in [
            bad.as_str(),
            &v[..v.len() - 5],
            "",
            "garbage",
            id.as_str(),
            &"x".repeat(5000),
        ] {
            assert_eq!(
                codec.decode(&request_with(format!("sid={value}").as_bytes())),
                CookieState::Invalid,
                "{value:.40}"
            );
        }
        // Non-UTF-8 header bytes.
        assert_eq!(
            codec.decode(&request_with(b"sid=\xff\xfe")),
            CookieState::Invalid
        );
        // Signed with another secret.
        let other = CookieCodec::from_config(&config(B));
        let foreign = value_of(&other.encode(&id));
        assert_eq!(
            codec.decode(&request_with(format!("sid={foreign}").as_bytes())),
            CookieState::Invalid
        );
    }

    #[test]
    fn rotation_verifies_old_signs_new() {
        let old = CookieCodec::from_config(&config(A));
        let rotated = CookieCodec::from_config(&SessionConfig {
            secret: Some(Secret::new(B)),
            previous_secrets: vec![Secret::new(A)],
            ..SessionConfig::default()
        });
        let id = SessionId::generate();
        let old_cookie = value_of(&old.encode(&id));
        assert_eq!(
            rotated.decode(&request_with(format!("sid={old_cookie}").as_bytes())),
            CookieState::Valid(id.clone())
        );
        // New cookies are signed with B only: the old codec rejects them.
        let new_cookie = value_of(&rotated.encode(&id));
        assert_eq!(
            old.decode(&request_with(format!("sid={new_cookie}").as_bytes())),
            CookieState::Invalid
        );
    }

    #[test]
    fn encrypted_cookies_hide_the_id() {
        let codec = CookieCodec::from_config(&SessionConfig {
            cookie_encrypt: true,
            ..config(A)
        });
        let id = SessionId::generate();
        let v = value_of(&codec.encode(&id));
        assert!(!v.contains(id.as_str()));
        assert_eq!(
            codec.decode(&request_with(format!("sid={v}").as_bytes())),
            CookieState::Valid(id)
        );
    }

    #[test]
    fn attributes() {
        let codec = CookieCodec::from_config(&SessionConfig {
            cookie_host_prefix: true,
            cookie_same_site: SameSite::Strict,
            ..config(A)
        });
        let s = codec.encode(&SessionId::generate());
        let s = s.to_str().unwrap();
        assert!(s.starts_with("__Host-sid="), "{s}");
        assert!(s.contains("SameSite=Strict") && s.contains("Secure"));
        assert!(s.contains("Max-Age=604800"));
        let insecure = CookieCodec::from_config(&SessionConfig {
            cookie_secure: false,
            cookie_domain: Some("example.com".into()),
            ..config(A)
        });
        let s = insecure.encode(&SessionId::generate());
        let s = s.to_str().unwrap();
        assert!(
            !s.contains("Secure") && s.contains("Domain=example.com"),
            "{s}"
        );
        let rm = insecure.removal();
        assert!(rm.to_str().unwrap().contains("Max-Age=0"));
    }

    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig {
            cases: 256,
            failure_persistence: Some(Box::new(
                proptest::test_runner::FileFailurePersistence::Direct(
                    "proptest-regressions/session/cookie.txt",
                ),
            )),
            ..ProptestConfig::default()
        })]

        /// Arbitrary `Cookie` header bytes (whatever `http` accepts), a `sid=` with any
        /// printable value, and a real cookie value cut or with one byte changed: decoding
        /// answers, never panics, and only the untouched value verifies.
        #[test]
        fn arbitrary_cookie_headers_decode_without_panic(
            raw in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..400), 0..3),
            value in "[ -~]{0,300}",
            cut in any::<prop::sample::Index>(),
            flip in any::<prop::sample::Index>(),
            byte in 0x21u8..0x7f,
            encrypt in any::<bool>(),
        ) {
            let codec = CookieCodec::from_config(&SessionConfig {
                cookie_encrypt: encrypt,
                ..config(A)
            });
            let mut h = HeaderMap::new();
            for v in &raw {
                if let Ok(v) = HeaderValue::from_bytes(v) {
                    h.append(http::header::COOKIE, v);
                }
            }
            if let Ok(v) = HeaderValue::from_str(&format!("sid={value}")) {
                h.append(http::header::COOKIE, v);
            }
            prop_assert!(!matches!(codec.decode(&h), CookieState::Valid(_)));

            let id = SessionId::generate();
            let good = value_of(&codec.encode(&id));
            let mut bad = good.clone().into_bytes();
            let i = flip.index(bad.len());
            let changed = bad[i] != byte;
            bad[i] = byte;
            if changed {
                let bad = format!("sid={}", String::from_utf8(bad).unwrap());
                prop_assert_ne!(
                    codec.decode(&request_with(bad.as_bytes())),
                    CookieState::Valid(id.clone())
                );
            }
            let short = format!("sid={}", &good[..cut.index(good.len())]);
            prop_assert_ne!(
                codec.decode(&request_with(short.as_bytes())),
                CookieState::Valid(id.clone())
            );
        }
    }
}
