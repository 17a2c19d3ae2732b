//! The session cookie: signing (or encryption) with key rotation, attributes, parsing.

use std::time::Duration;

use cookie::{Cookie, CookieJar, Key};
use http::{HeaderMap, HeaderValue};

use super::SessionId;
use super::{SameSite, SessionConfig};
use crate::tenant::TenantId;

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
    /// A verified cookie of another tenant (one host serving several tenants): treated as
    /// no session here, and left alone — clearing it would log the user out of the other
    /// tenant.
    OtherTenant,
}

/// Encodes and verifies the session cookie.
///
/// The value is `<tenant>.<session id>` signed with HMAC-SHA256 (or encrypted with
/// AES-256-GCM when `SESSION_COOKIE_ENCRYPT=true`) by the `cookie` crate, under a key
/// derived from `SESSION_SECRET`. Cookies signed with any `SESSION_SECRET_PREVIOUS` still
/// verify; new cookies are always signed with `SESSION_SECRET`. The tenant in the value
/// lets a tenant recognise (and leave alone) another tenant's cookie on a shared host.
///
/// With `Secure` and no `Domain` (the defaults) the name carries the `__Host-` prefix, so
/// a sibling subdomain cannot plant or overwrite it.
///
/// ```
/// use tenant_guard::config::SessionConfig;
/// use tenant_guard::session::CookieCodec;
/// use tenant_guard::tenant::TenantId;
///
/// let codec = CookieCodec::from_config(&SessionConfig::default());
/// assert_eq!(codec.name(), "__Host-sid");
/// let id = tenant_guard::session::SessionId::generate();
/// let set_cookie = codec.encode(&TenantId::new("acme").unwrap(), &id);
/// let s = set_cookie.to_str().unwrap();
/// assert!(s.starts_with("__Host-sid=") && s.contains("HttpOnly") && s.contains("Secure"));
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
    ///
    /// ```
    /// use tenant_guard::config::Config;
    /// use tenant_guard::session::{CookieCodec, SessionId};
    /// use tenant_guard::tenant::TenantId;
    ///
    /// let config = Config::from_vars([
    ///     ("SESSION_SECRET", "0123456789abcdef0123456789abcdef"),
    ///     ("SESSION_COOKIE_NAME", "app_session"),
    ///     ("SESSION_COOKIE_SAMESITE", "strict"),
    /// ]).unwrap();
    /// let codec = CookieCodec::from_config(&config.session);
    /// let cookie = codec.encode(&TenantId::new("acme").unwrap(), &SessionId::generate());
    /// assert!(cookie.to_str().unwrap().starts_with("__Host-app_session="));
    /// assert!(cookie.to_str().unwrap().contains("SameSite=Strict"));
    /// ```
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
        // `__Host-` is only valid with Secure, Path=/ and no Domain: never emit a name the
        // browser would then reject.
        let name = if config.cookie_host_prefix
            && config.cookie_secure
            && config.cookie_domain.is_none()
        {
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
    ///
    /// ```
    /// use tenant_guard::config::SessionConfig;
    /// use tenant_guard::session::CookieCodec;
    ///
    /// let mut config = SessionConfig::default();
    /// assert_eq!(CookieCodec::from_config(&config).name(), "__Host-sid");
    /// // A Domain rules out the `__Host-` prefix.
    /// config.cookie_domain = Some("example.com".into());
    /// assert_eq!(CookieCodec::from_config(&config).name(), "sid");
    /// ```
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Reads the session id of `tenant` from the request's `Cookie` headers.
    pub(crate) fn decode(&self, headers: &HeaderMap, tenant: &TenantId) -> CookieState {
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
                    // Cookies from before the tenant was written into them: the store's
                    // tenant-prefixed key still binds them to one tenant.
                    Some((None, id)) => return CookieState::Valid(id),
                    Some((Some(t), id)) if t == tenant.as_str() => return CookieState::Valid(id),
                    Some(_) => state = CookieState::OtherTenant,
                    None => {
                        if state != CookieState::OtherTenant {
                            state = CookieState::Invalid;
                        }
                    }
                }
            }
        }
        state
    }

    /// The tenant (absent in older cookies) and id of a cookie value that verifies.
    fn verify(&self, value: &str) -> Option<(Option<String>, SessionId)> {
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
                return match c.value().split_once('.') {
                    Some((t, id)) => Some((Some(t.to_string()), SessionId::parse(id)?)),
                    None => Some((None, SessionId::parse(c.value())?)),
                };
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

    /// The `Set-Cookie` value carrying `tenant`'s session `id`, signed (or encrypted) with
    /// the current key.
    ///
    /// ```
    /// use tenant_guard::config::SessionConfig;
    /// use tenant_guard::session::{CookieCodec, SessionId};
    /// use tenant_guard::tenant::TenantId;
    ///
    /// let codec = CookieCodec::from_config(&SessionConfig::default());
    /// let id = SessionId::generate();
    /// let set_cookie = codec.encode(&TenantId::new("acme").unwrap(), &id);
    /// let text = set_cookie.to_str().unwrap();
    /// // Signed: the value carries the tenant and id plus an HMAC, and lasts the session's lifetime.
    /// assert!(text.contains(&format!("acme.{}", id.as_str())));
    /// assert!(text.contains("Max-Age=604800")); // SESSION_MAX_LIFETIME: 7 days
    /// ```
    pub fn encode(&self, tenant: &TenantId, id: &SessionId) -> HeaderValue {
        let mut jar = CookieJar::new();
        let cookie = self.base(format!("{tenant}.{}", id.as_str()));
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
    ///
    /// ```
    /// use tenant_guard::config::SessionConfig;
    /// use tenant_guard::session::CookieCodec;
    ///
    /// let codec = CookieCodec::from_config(&SessionConfig::default());
    /// let removal = codec.removal();
    /// let text = removal.to_str().unwrap();
    /// assert!(text.starts_with("__Host-sid=;"));
    /// assert!(text.contains("Max-Age=0"));
    /// ```
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
    use crate::secret::Secret;

    fn config(secret: &str) -> SessionConfig {
        SessionConfig {
            secret: Some(Secret::new(secret)),
            cookie_host_prefix: false,
            ..SessionConfig::default()
        }
    }

    fn acme() -> TenantId {
        TenantId::new("acme").unwrap()
    }

    fn decode(codec: &CookieCodec, headers: &HeaderMap) -> CookieState {
        codec.decode(headers, &acme())
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
        let v = value_of(&codec.encode(&acme(), &id));
        let ok = request_with(format!("other=1; sid={v}; x=y").as_bytes());
        assert_eq!(decode(&codec, &ok), CookieState::Valid(id.clone()));
        assert_eq!(decode(&codec, &HeaderMap::new()), CookieState::Absent);
        assert_eq!(
            decode(&codec, &request_with(b"other=1")),
            CookieState::Absent
        );
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
                decode(&codec, &request_with(format!("sid={value}").as_bytes())),
                CookieState::Invalid,
                "{value:.40}"
            );
        }
        // Non-UTF-8 header bytes.
        assert_eq!(
            decode(&codec, &request_with(b"sid=\xff\xfe")),
            CookieState::Invalid
        );
        // Signed with another secret.
        let other = CookieCodec::from_config(&config(B));
        let foreign = value_of(&other.encode(&acme(), &id));
        assert_eq!(
            decode(&codec, &request_with(format!("sid={foreign}").as_bytes())),
            CookieState::Invalid
        );
    }

    #[test]
    fn rotation_verifies_old_signs_new() {
        let old = CookieCodec::from_config(&config(A));
        let rotated = CookieCodec::from_config(&SessionConfig {
            secret: Some(Secret::new(B)),
            previous_secrets: vec![Secret::new(A)],
            ..config(B)
        });
        let id = SessionId::generate();
        let old_cookie = value_of(&old.encode(&acme(), &id));
        assert_eq!(
            decode(
                &rotated,
                &request_with(format!("sid={old_cookie}").as_bytes())
            ),
            CookieState::Valid(id.clone())
        );
        // New cookies are signed with B only: the old codec rejects them.
        let new_cookie = value_of(&rotated.encode(&acme(), &id));
        assert_eq!(
            decode(&old, &request_with(format!("sid={new_cookie}").as_bytes())),
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
        let v = value_of(&codec.encode(&acme(), &id));
        assert!(!v.contains(id.as_str()));
        assert_eq!(
            decode(&codec, &request_with(format!("sid={v}").as_bytes())),
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
        let s = codec.encode(&acme(), &SessionId::generate());
        let s = s.to_str().unwrap();
        assert!(s.starts_with("__Host-sid="), "{s}");
        assert!(s.contains("SameSite=Strict") && s.contains("Secure"));
        assert!(s.contains("Max-Age=604800"));
        let insecure = CookieCodec::from_config(&SessionConfig {
            cookie_secure: false,
            cookie_domain: Some("example.com".into()),
            ..config(A)
        });
        let s = insecure.encode(&acme(), &SessionId::generate());
        let s = s.to_str().unwrap();
        assert!(
            !s.contains("Secure") && s.contains("Domain=example.com"),
            "{s}"
        );
        let rm = insecure.removal();
        assert!(rm.to_str().unwrap().contains("Max-Age=0"));
    }

    #[test]
    fn another_tenants_cookie_is_recognised_not_invalid() {
        let codec = CookieCodec::from_config(&config(A));
        let id = SessionId::generate();
        let beta = TenantId::new("beta").unwrap();
        let v = value_of(&codec.encode(&beta, &id));
        let h = request_with(format!("sid={v}").as_bytes());
        assert_eq!(decode(&codec, &h), CookieState::OtherTenant);
        assert_eq!(codec.decode(&h, &beta), CookieState::Valid(id.clone()));
        // A cookie signed before tenants were written into the value still verifies.
        let mut jar = CookieJar::new();
        jar.signed_mut(&codec.signing)
            .add(Cookie::new("sid", id.as_str().to_string()));
        let legacy = jar.get("sid").unwrap().value().to_string();
        let h = request_with(format!("sid={legacy}").as_bytes());
        assert_eq!(decode(&codec, &h), CookieState::Valid(id));
    }

    #[test]
    fn host_prefix_by_default_when_secure_and_host_only() {
        let d = CookieCodec::from_config(&SessionConfig::default());
        assert_eq!(d.name(), "__Host-sid");
        let insecure = CookieCodec::from_config(&SessionConfig {
            cookie_secure: false,
            ..SessionConfig::default()
        });
        assert_eq!(insecure.name(), "sid");
        let domain = CookieCodec::from_config(&SessionConfig {
            cookie_domain: Some("example.com".into()),
            ..SessionConfig::default()
        });
        assert_eq!(domain.name(), "sid");
    }

    #[test]
    fn a_non_utf8_header_is_ours_only_if_it_names_our_cookie() {
        // Found by mutation testing: only `sid=` itself makes an unreadable header count.
        let codec = CookieCodec::from_config(&config(A));
        for raw in [&b"other=\xff"[..], b"sid\xff=1", b"x=sid\xff", b"si=d\xff"] {
            assert_eq!(
                decode(&codec, &request_with(raw)),
                CookieState::Absent,
                "{raw:?}"
            );
        }
        assert_eq!(
            decode(&codec, &request_with(b"a=1; sid=\xff")),
            CookieState::Invalid
        );
        assert!(memchr_name(b"sid=", b"sid"));
        assert!(!memchr_name(b"sid", b"sid"));
        assert!(!memchr_name(b"sidx=", b"sid"));
    }

    #[test]
    fn values_up_to_the_length_cap_verify_longer_ones_do_not() {
        // Found by mutation testing: the cap is inclusive and is checked on its own
        // (a well-signed value over it is refused unread).
        let codec = CookieCodec::from_config(&config(A));
        let id = SessionId::generate();
        let signed = |plain: String| {
            let mut jar = CookieJar::new();
            jar.signed_mut(&codec.signing)
                .add(Cookie::new("sid", plain));
            jar.get("sid").unwrap().value().to_string()
        };
        let overhead = signed(String::new()).len();
        let of_len = |len: usize| {
            let tenant = "t".repeat(len - overhead - 1 - id.as_str().len());
            let v = signed(format!("{tenant}.{}", id.as_str()));
            assert_eq!(v.len(), len);
            (tenant, v)
        };
        let (tenant, at_cap) = of_len(MAX_VALUE_LEN);
        assert_eq!(codec.verify(&at_cap), Some((Some(tenant), id.clone())));
        let (_, over) = of_len(MAX_VALUE_LEN + 1);
        assert_eq!(codec.verify(&over), None);
        assert_eq!(codec.verify(""), None);
    }

    #[test]
    fn debug_names_the_cookie_and_hides_the_keys() {
        let codec = CookieCodec::from_config(&config(A));
        let s = format!("{codec:?}");
        assert!(s.starts_with("CookieCodec") && s.contains("\"sid\""), "{s}");
        assert!(s.contains("keys: 1") && !s.contains(A), "{s}");
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
            prop_assert!(!matches!(decode(&codec, &h), CookieState::Valid(_)));

            let id = SessionId::generate();
            let good = value_of(&codec.encode(&acme(), &id));
            let mut bad = good.clone().into_bytes();
            let i = flip.index(bad.len());
            let changed = bad[i] != byte;
            bad[i] = byte;
            if changed {
                let bad = format!("sid={}", String::from_utf8(bad).unwrap());
                prop_assert_ne!(
                    decode(&codec, &request_with(bad.as_bytes())),
                    CookieState::Valid(id.clone())
                );
            }
            let short = format!("sid={}", &good[..cut.index(good.len())]);
            prop_assert_ne!(
                decode(&codec, &request_with(short.as_bytes())),
                CookieState::Valid(id.clone())
            );
        }
    }
}
