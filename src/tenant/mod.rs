//! Tenants: the validated [`TenantId`], resolvers that find it in a request, the
//! [`TenantLayer`] that puts it in request extensions, and the axum extractor.
//!
//! ## Allowed tenant ids
//!
//! 1 to 64 bytes of ASCII letters, digits, `-` and `_`, starting with a letter or digit.
//! Case is preserved and significant (`Acme` and `acme` are different tenants), except for
//! the subdomain resolver, which lowercases because host names are case-insensitive.
//! UUIDs, slugs and numeric ids fit; nothing that could change a Redis key's meaning
//! (`:`, `{`, `}`, `*`, `?`, `[`, `]`, whitespace, control or non-ASCII bytes) does.

mod config;
mod identity;
#[cfg(feature = "axum")]
pub(crate) use identity::of_request as request_identity;
mod layer;
mod resolver;
mod service;

pub use config::{TenantConfig, TenantSource};
pub use identity::{GLOBAL_TENANT, Identity, SessionCredential, UserId};
pub use layer::{TenantLayer, VALIDATION_CACHE_ENTRIES, VALIDATION_CACHE_TTL};
pub use resolver::TenantResolver;
pub use service::TenantService;

use std::fmt;
use std::sync::Arc;

/// Longest tenant id accepted, in bytes.
///
/// ```
/// use tenant_guard::tenant::{InvalidTenant, TenantId, MAX_TENANT_LEN};
/// assert!(TenantId::new(&"a".repeat(MAX_TENANT_LEN)).is_ok());
/// let err = TenantId::new(&"a".repeat(MAX_TENANT_LEN + 1)).unwrap_err();
/// assert_eq!(err, InvalidTenant::TooLong { len: 65 });
/// ```
pub const MAX_TENANT_LEN: usize = 64;

/// A validated tenant id. Cheap to clone.
///
/// ```
/// use tenant_guard::tenant::TenantId;
///
/// let t = TenantId::new("acme-corp_1").unwrap();
/// assert_eq!(t.as_str(), "acme-corp_1");
/// assert!(TenantId::new("").is_err());
/// assert!(TenantId::new("a:b").is_err());
/// assert!(TenantId::new("{acme}").is_err());
/// assert!(TenantId::new("*").is_err());
/// assert!(TenantId::new(&"x".repeat(65)).is_err());
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TenantId(Arc<str>);

impl TenantId {
    /// Accepted form, as shown in errors.
    ///
    /// ```
    /// use tenant_guard::tenant::TenantId;
    /// // The sentence error messages and `tenant-guard config` show.
    /// assert!(TenantId::FORM.starts_with("1-64 ASCII letters"));
    /// ```
    pub const FORM: &'static str =
        "1-64 ASCII letters, digits, `-` or `_`, starting with a letter or digit";

    /// Validates and wraps a tenant id.
    ///
    /// ```
    /// use tenant_guard::tenant::{InvalidTenant, TenantId};
    /// assert_eq!(TenantId::new("Acme")?.as_str(), "Acme"); // case is kept
    /// assert_ne!(TenantId::new("Acme")?, TenantId::new("acme")?);
    /// assert_eq!(TenantId::new(""), Err(InvalidTenant::Empty));
    /// # Ok::<(), InvalidTenant>(())
    /// ```
    pub fn new(id: &str) -> Result<Self, InvalidTenant> {
        validate(id.as_bytes())?;
        Ok(Self(Arc::from(id)))
    }

    /// Validates raw bytes (a header value, say) as a tenant id.
    ///
    /// ```
    /// use tenant_guard::tenant::TenantId;
    /// assert!(TenantId::from_bytes(b"acme").is_ok());
    /// assert!(TenantId::from_bytes(&[0xff, 0xfe]).is_err());
    /// ```
    pub fn from_bytes(id: &[u8]) -> Result<Self, InvalidTenant> {
        validate(id)?;
        // validate() admits ASCII only, so this cannot fail.
        let s = std::str::from_utf8(id).map_err(|_| InvalidTenant::BadByte {
            position: 0,
            byte: Printable(None),
        })?;
        Ok(Self(Arc::from(s)))
    }

    /// The id as a string slice.
    ///
    /// ```
    /// use tenant_guard::tenant::TenantId;
    /// let t: TenantId = "acme".parse().unwrap();
    /// assert_eq!(t.as_str(), "acme");
    /// assert_eq!(format!("tenant {t}"), "tenant acme");
    /// ```
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn validate(id: &[u8]) -> Result<(), InvalidTenant> {
    if id.is_empty() {
        return Err(InvalidTenant::Empty);
    }
    if id.len() > MAX_TENANT_LEN {
        return Err(InvalidTenant::TooLong { len: id.len() });
    }
    if !id[0].is_ascii_alphanumeric() {
        return Err(InvalidTenant::BadStart {
            byte: Printable::of(id[0]),
        });
    }
    for (position, &b) in id.iter().enumerate() {
        if !(b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
            return Err(InvalidTenant::BadByte {
                position,
                byte: Printable::of(b),
            });
        }
    }
    Ok(())
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TenantId({})", &self.0)
    }
}

impl AsRef<str> for TenantId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl std::str::FromStr for TenantId {
    type Err = InvalidTenant;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl serde::Serialize for TenantId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for TenantId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Self::new(&s).map_err(serde::de::Error::custom)
    }
}

/// A byte shown in an error message: printable ASCII as itself, anything else by kind, so a
/// hostile value never reaches a log or response verbatim.
///
/// ```
/// use tenant_guard::tenant::{InvalidTenant, TenantId};
/// // How a rejected byte is shown: never verbatim when it is not printable.
/// let Err(InvalidTenant::BadByte { byte, .. }) = TenantId::new("acme\u{7}") else { panic!() };
/// assert_eq!(byte.to_string(), "a control or non-ASCII byte");
/// let Err(InvalidTenant::BadByte { byte, .. }) = TenantId::new("ac me") else { panic!() };
/// assert_eq!(byte.to_string(), "a space");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Printable(Option<char>);

impl Printable {
    fn of(b: u8) -> Self {
        Self((b.is_ascii_graphic() || b == b' ').then_some(b as char))
    }
}

impl fmt::Display for Printable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(' ') => f.write_str("a space"),
            Some(c) => write!(f, "`{c}`"),
            None => f.write_str("a control or non-ASCII byte"),
        }
    }
}

/// Why a value is not a tenant id.
///
/// ```
/// use tenant_guard::tenant::{InvalidTenant, TenantId};
/// let err = TenantId::new("acme:prod").unwrap_err();
/// assert!(matches!(err, InvalidTenant::BadByte { position: 4, .. }));
/// assert_eq!(err.to_string(), "the tenant id contains `:` at position 4");
/// assert_eq!(TenantId::new("-acme").unwrap_err().to_string(),
///     "the tenant id starts with `-` (must start with a letter or digit)");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidTenant {
    /// Empty string.
    #[error("the tenant id is empty")]
    Empty,
    /// Longer than [`MAX_TENANT_LEN`].
    #[error("the tenant id is {len} bytes long (at most 64 allowed)")]
    TooLong {
        /// Length of the rejected value.
        len: usize,
    },
    /// Does not start with a letter or digit.
    #[error("the tenant id starts with {byte} (must start with a letter or digit)")]
    BadStart {
        /// The first byte.
        byte: Printable,
    },
    /// Contains a byte outside the alphabet.
    #[error("the tenant id contains {byte} at position {position}")]
    BadByte {
        /// Offset of the first bad byte.
        position: usize,
        /// The bad byte.
        byte: Printable,
    },
}

/// Why no tenant could be taken from a request.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use tenant_guard::tenant::{TenantError, TenantResolver};
///
/// let resolver = TenantResolver::header("x-tenant-id");
/// let (mut parts, ()) = http::Request::get("/").header("x-tenant-id", "a:b").body(()).unwrap().into_parts();
/// let err = resolver.resolve(&mut parts).await.unwrap_err();
/// assert_eq!(err, TenantError::Invalid("the tenant id contains `:` at position 1".into()));
/// // What a request without a tenant gets where one is required.
/// assert_eq!(TenantError::Missing.to_string(), "the request names no tenant");
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TenantError {
    /// The request names no tenant.
    #[error("the request names no tenant")]
    Missing,
    /// The request names a tenant, but the value is not acceptable.
    #[error("{0}")]
    Invalid(String),
}

impl From<InvalidTenant> for TenantError {
    fn from(e: InvalidTenant) -> Self {
        Self::Invalid(e.to_string())
    }
}

#[cfg(feature = "axum")]
mod extract {
    use super::TenantId;
    use crate::problem::Problem;
    use axum::extract::{FromRequestParts, OptionalFromRequestParts};
    use http::StatusCode;
    use http::request::Parts;

    /// Extracts the tenant that [`TenantLayer`](super::TenantLayer) resolved.
    ///
    /// ```
    /// use axum::{routing::get, Router};
    /// use tenant_guard::tenant::{TenantId, TenantLayer, TenantResolver};
    ///
    /// async fn whoami(tenant: TenantId) -> String {
    ///     tenant.to_string()
    /// }
    /// let app: Router = Router::new()
    ///     .route("/whoami", get(whoami))
    ///     .layer(TenantLayer::new(TenantResolver::header("x-tenant-id")));
    /// ```
    impl<S: Send + Sync> FromRequestParts<S> for TenantId {
        type Rejection = Problem;

        async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
            parts.extensions.get::<TenantId>().cloned().ok_or_else(|| {
                // Not the client's fault: the route lacks the layer.
                Problem::new(StatusCode::INTERNAL_SERVER_ERROR, "Tenant layer missing")
                    .detail("this route extracts TenantId but no TenantLayer runs in front of it")
            })
        }
    }

    impl<S: Send + Sync> OptionalFromRequestParts<S> for TenantId {
        type Rejection = std::convert::Infallible;

        async fn from_request_parts(
            parts: &mut Parts,
            _: &S,
        ) -> Result<Option<Self>, Self::Rejection> {
            Ok(parts.extensions.get::<TenantId>().cloned())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_values_rejected() {
        for bad in [
            "*",
            ":",
            "{",
            "}",
            "a:b",
            "a{b}",
            "a*",
            "a?",
            "a[b]",
            "a b",
            "a\nb",
            "a\r\nX-Evil: 1",
            "-a",
            "_a",
            "é",
            "a/b",
            "a.b",
            "a\\b",
            "a\0",
        ] {
            assert!(TenantId::new(bad).is_err(), "{bad:?} accepted");
        }
        let big = "a".repeat(10 * 1024);
        let err = TenantId::new(&big).unwrap_err();
        assert_eq!(err, InvalidTenant::TooLong { len: 10 * 1024 });
        assert!(TenantId::from_bytes(b"ac\xffme").is_err());
    }

    #[test]
    fn messages_do_not_echo_control_bytes() {
        let e = TenantId::new("a\nb").unwrap_err().to_string();
        assert!(!e.contains('\n'));
        assert_eq!(
            e,
            "the tenant id contains a control or non-ASCII byte at position 1"
        );
        assert_eq!(
            TenantId::new("a*").unwrap_err().to_string(),
            "the tenant id contains `*` at position 1"
        );
    }

    #[test]
    fn accepted_forms() {
        for ok in [
            "a",
            "A",
            "0",
            "acme",
            "Acme-Corp_2",
            "550e8400-e29b-41d4-a716-446655440000",
        ] {
            assert!(TenantId::new(ok).is_ok(), "{ok:?} rejected");
        }
        assert!(TenantId::new(&"x".repeat(64)).is_ok());
    }

    proptest::proptest! {
        #[test]
        fn only_the_alphabet_passes(s in "\\PC{0,80}") {
            let ok = TenantId::new(&s).is_ok();
            let expected = !s.is_empty()
                && s.len() <= MAX_TENANT_LEN
                && s.as_bytes()[0].is_ascii_alphanumeric()
                && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            proptest::prop_assert_eq!(ok, expected);
        }
    }
}
