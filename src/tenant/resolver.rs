//! Where a request's tenant comes from.

use std::fmt;
use std::future::Future;
use std::sync::Arc;

use futures_util::future::BoxFuture;
use http::request::Parts;
use http::{HeaderName, Uri};

use super::{TenantConfig, TenantSource};
use super::{TenantError, TenantId};

type CustomFn =
    dyn Fn(&Parts) -> BoxFuture<'static, Result<Option<TenantId>, TenantError>> + Send + Sync;

#[derive(Clone)]
enum Kind {
    Header(HeaderName),
    Subdomain(Arc<str>),
    Path { prefix: Arc<str>, strip: bool },
    Custom(Arc<CustomFn>, Arc<str>),
}

/// Finds the tenant of a request.
///
/// `resolve` answers `Ok(Some(tenant))`, `Ok(None)` when the request names no tenant, or
/// `Err` when it names one that is not acceptable (never passed on to a key).
///
/// ```
/// use tenant_guard::tenant::TenantResolver;
///
/// # tokio_test_block_on(async {
/// let r = TenantResolver::subdomain("example.com");
/// let (mut parts, ()) = http::Request::get("/")
///     .header("host", "Acme.Example.com:8443")
///     .body(())
///     .unwrap()
///     .into_parts();
/// assert_eq!(r.resolve(&mut parts).await.unwrap().unwrap().as_str(), "acme");
/// # });
/// # fn tokio_test_block_on<F: std::future::Future>(f: F) -> F::Output {
/// #     tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
/// # }
/// ```
#[derive(Clone)]
pub struct TenantResolver {
    kind: Kind,
}

impl fmt::Debug for TenantResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("TenantResolver")
            .field(&self.expectation())
            .finish()
    }
}

impl Default for TenantResolver {
    /// The `X-Tenant-ID` header.
    fn default() -> Self {
        Self::header(HeaderName::from_static("x-tenant-id"))
    }
}

impl TenantResolver {
    /// Reads the tenant from a header. Sending the header twice is an error, not a choice.
    ///
    /// ```
    /// let r = tenant_guard::tenant::TenantResolver::header("x-org-id");
    /// ```
    ///
    /// # Panics
    ///
    /// If `name` is not a valid header name (a programming error; use
    /// [`TenantResolver::try_header`] for names from configuration).
    pub fn header<N>(name: N) -> Self
    where
        N: TryInto<HeaderName>,
        N::Error: fmt::Debug,
    {
        Self {
            kind: Kind::Header(name.try_into().expect("invalid header name")),
        }
    }

    /// Like [`TenantResolver::header`], for names from configuration.
    ///
    /// ```
    /// assert!(tenant_guard::tenant::TenantResolver::try_header("bad header").is_err());
    /// ```
    pub fn try_header(name: &str) -> Result<Self, http::header::InvalidHeaderName> {
        Ok(Self {
            kind: Kind::Header(HeaderName::try_from(name)?),
        })
    }

    /// Takes the tenant from the first label of the host under `base_domain`:
    /// `acme.example.com` → `acme`. The bare base domain names no tenant; nested
    /// subdomains (`a.b.example.com`) and other hosts are rejected.
    ///
    /// ```
    /// let r = tenant_guard::tenant::TenantResolver::subdomain("example.com");
    /// ```
    pub fn subdomain(base_domain: &str) -> Self {
        let base = base_domain.trim_matches('.').to_ascii_lowercase();
        Self {
            kind: Kind::Subdomain(Arc::from(base)),
        }
    }

    /// Takes the tenant from the path segment after `prefix`: with prefix `/t`,
    /// `/t/acme/reports` → `acme`. An empty prefix means the first segment.
    ///
    /// ```
    /// let r = tenant_guard::tenant::TenantResolver::path_prefix("/t");
    /// ```
    pub fn path_prefix(prefix: &str) -> Self {
        Self {
            kind: Kind::Path {
                prefix: Arc::from(prefix.trim_end_matches('/')),
                strip: false,
            },
        }
    }

    /// Like [`TenantResolver::path_prefix`], and also removes the prefix and tenant
    /// segment from the URI (`/t/acme/reports?x=1` → `/reports?x=1`) before the inner
    /// service sees it. For routing to see the rewritten path, wrap the whole router
    /// (`TenantLayer::new(..).layer(router)`) instead of `Router::layer`.
    ///
    /// ```
    /// let r = tenant_guard::tenant::TenantResolver::path_prefix_stripped("/t");
    /// ```
    pub fn path_prefix_stripped(prefix: &str) -> Self {
        Self {
            kind: Kind::Path {
                prefix: Arc::from(prefix.trim_end_matches('/')),
                strip: true,
            },
        }
    }

    /// A user-supplied async resolver, e.g. a lookup of an API key's tenant.
    /// `expectation` completes the sentence "expected ..." in 400 responses.
    ///
    /// ```
    /// use tenant_guard::tenant::{TenantId, TenantResolver, TenantError};
    ///
    /// let r = TenantResolver::custom("an API key in `Authorization`", |parts| {
    ///     let key = parts.headers.get("authorization").cloned();
    ///     async move {
    ///         match key {
    ///             Some(k) if k == "Bearer acme-key" => Ok(Some(TenantId::new("acme")?)),
    ///             Some(_) => Err(TenantError::Invalid("unknown API key".into())),
    ///             None => Ok(None),
    ///         }
    ///     }
    /// });
    /// ```
    pub fn custom<F, Fut>(expectation: &str, f: F) -> Self
    where
        F: Fn(&Parts) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Option<TenantId>, TenantError>> + Send + 'static,
    {
        let f: Arc<CustomFn> = Arc::new(move |parts: &Parts| Box::pin(f(parts)));
        Self {
            kind: Kind::Custom(f, Arc::from(expectation)),
        }
    }

    /// The resolver described by configuration (`TG_TENANT_SOURCE`).
    ///
    /// ```
    /// let cfg = tenant_guard::config::TenantConfig::default();
    /// let r = tenant_guard::tenant::TenantResolver::from_config(&cfg);
    /// assert!(r.expectation().contains("X-Tenant-ID"));
    /// ```
    pub fn from_config(config: &TenantConfig) -> Self {
        match &config.source {
            // The name was validated when the config was read.
            TenantSource::Header(h) => Self::try_header(h).unwrap_or_default(),
            TenantSource::Subdomain(base) => Self::subdomain(base),
            TenantSource::PathPrefix(p) => Self::path_prefix(p),
        }
    }

    /// What a request must carry, for error messages ("expected ...").
    ///
    /// ```
    /// use tenant_guard::tenant::TenantResolver;
    /// assert_eq!(TenantResolver::header("x-org-id").expectation(), "a tenant id in the `x-org-id` header");
    /// assert_eq!(TenantResolver::path_prefix("/t").expectation(), "a path starting with `/t/<tenant>/`");
    /// ```
    pub fn expectation(&self) -> String {
        match &self.kind {
            Kind::Header(h) => format!("a tenant id in the `{}` header", canonical_header(h)),
            Kind::Subdomain(base) => {
                format!("a tenant subdomain of `{base}`, e.g. `acme.{base}`")
            }
            Kind::Path { prefix, .. } => {
                format!("a path starting with `{prefix}/<tenant>/`")
            }
            Kind::Custom(_, e) => e.to_string(),
        }
    }

    /// Resolves the tenant of a request. May rewrite the URI (stripping path resolver).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// use tenant_guard::tenant::TenantResolver;
    ///
    /// let resolver = TenantResolver::path_prefix_stripped("/t");
    /// let (mut parts, ()) = http::Request::get("/t/acme/items").body(()).unwrap().into_parts();
    /// assert_eq!(resolver.resolve(&mut parts).await.unwrap().unwrap().as_str(), "acme");
    /// assert_eq!(parts.uri.path(), "/items"); // the prefix and tenant were stripped
    /// let (mut parts, ()) = http::Request::get("/items").body(()).unwrap().into_parts();
    /// assert_eq!(resolver.resolve(&mut parts).await.unwrap(), None); // names no tenant
    /// # }
    /// ```
    pub async fn resolve(&self, parts: &mut Parts) -> Result<Option<TenantId>, TenantError> {
        match &self.kind {
            Kind::Header(name) => from_header(parts, name),
            Kind::Subdomain(base) => from_host(parts, base),
            Kind::Path { prefix, strip } => from_path(parts, prefix, *strip),
            Kind::Custom(f, _) => f(parts).await,
        }
    }

    /// Whether [`resolve`](Self::resolve) never awaits (everything but custom resolvers).
    pub(crate) fn resolve_now(
        &self,
        parts: &mut Parts,
    ) -> Option<Result<Option<TenantId>, TenantError>> {
        match &self.kind {
            Kind::Header(name) => Some(from_header(parts, name)),
            Kind::Subdomain(base) => Some(from_host(parts, base)),
            Kind::Path { prefix, strip } => Some(from_path(parts, prefix, *strip)),
            Kind::Custom(..) => None,
        }
    }
}

fn canonical_header(h: &HeaderName) -> String {
    if h == "x-tenant-id" {
        "X-Tenant-ID".into()
    } else {
        h.as_str().to_string()
    }
}

fn from_header(parts: &Parts, name: &HeaderName) -> Result<Option<TenantId>, TenantError> {
    let mut values = parts.headers.get_all(name).iter();
    let Some(v) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(TenantError::Invalid(format!(
            "the `{}` header is given more than once",
            canonical_header(name)
        )));
    }
    let bytes = v.as_bytes();
    let trimmed = bytes.trim_ascii();
    if trimmed.is_empty() {
        return Ok(None);
    }
    Ok(Some(TenantId::from_bytes(trimmed)?))
}

fn host_of(parts: &Parts) -> Result<Option<String>, TenantError> {
    let raw = match parts.headers.get(http::header::HOST) {
        Some(h) => h
            .to_str()
            .map_err(|_| TenantError::Invalid("the Host header is not ASCII".into()))?
            .to_string(),
        None => match parts.uri.host() {
            Some(h) => h.to_string(),
            None => return Ok(None),
        },
    };
    // Strip a port; leave IPv6 literals alone (they never match a base domain).
    let host = match raw.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') && p.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => raw.as_str(),
    };
    Ok(Some(host.trim_end_matches('.').to_ascii_lowercase()))
}

fn from_host(parts: &Parts, base: &str) -> Result<Option<TenantId>, TenantError> {
    let Some(host) = host_of(parts)? else {
        return Ok(None);
    };
    if host == base {
        return Ok(None);
    }
    let Some(label) = host
        .strip_suffix(base)
        .and_then(|rest| rest.strip_suffix('.'))
    else {
        return Err(TenantError::Invalid(format!(
            "the host is not a subdomain of `{base}`"
        )));
    };
    if label.contains('.') {
        return Err(TenantError::Invalid(format!(
            "the host has more than one label before `{base}`"
        )));
    }
    Ok(Some(TenantId::new(label)?))
}

fn from_path(
    parts: &mut Parts,
    prefix: &str,
    strip: bool,
) -> Result<Option<TenantId>, TenantError> {
    let path = parts.uri.path();
    let Some(rest) = path.strip_prefix(prefix) else {
        return Ok(None);
    };
    let Some(rest) = rest.strip_prefix('/') else {
        return Ok(None);
    };
    let (segment, tail) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    if segment.is_empty() {
        return Ok(None);
    }
    let tenant = TenantId::new(segment)?;
    if strip {
        let tail = if tail.is_empty() { "/" } else { tail };
        let pq = match parts.uri.query() {
            Some(q) => format!("{tail}?{q}"),
            None => tail.to_string(),
        };
        let mut uri_parts = parts.uri.clone().into_parts();
        uri_parts.path_and_query = Some(
            pq.parse()
                .map_err(|_| TenantError::Invalid("the path cannot be rewritten".into()))?,
        );
        parts.uri = Uri::from_parts(uri_parts)
            .map_err(|_| TenantError::Invalid("the path cannot be rewritten".into()))?;
    }
    Ok(Some(tenant))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(build: http::request::Builder) -> Parts {
        build.body(()).unwrap().into_parts().0
    }

    fn now(r: &TenantResolver, p: &mut Parts) -> Result<Option<TenantId>, TenantError> {
        r.resolve_now(p).unwrap()
    }

    #[test]
    fn header() {
        let r = TenantResolver::default();
        let mut p = parts(http::Request::get("/").header("x-tenant-id", " acme "));
        assert_eq!(now(&r, &mut p).unwrap().unwrap().as_str(), "acme");
        let mut p = parts(http::Request::get("/"));
        assert_eq!(now(&r, &mut p), Ok(None));
        let mut p = parts(
            http::Request::get("/")
                .header("x-tenant-id", "a")
                .header("x-tenant-id", "b"),
        );
        assert!(matches!(now(&r, &mut p), Err(TenantError::Invalid(_))));
        let mut p = parts(http::Request::get("/").header(
            "x-tenant-id",
            http::HeaderValue::from_bytes(b"ac\xffme").unwrap(),
        ));
        assert!(matches!(now(&r, &mut p), Err(TenantError::Invalid(_))));
    }

    #[test]
    fn subdomain() {
        let r = TenantResolver::subdomain("Example.com.");
        let cases = [
            ("acme.example.com", Ok(Some("acme"))),
            ("ACME.example.com:8080", Ok(Some("acme"))),
            ("example.com", Ok(None)),
            ("a.b.example.com", Err(())),
            ("evil.com", Err(())),
            ("xexample.com", Err(())),
            ("a*b.example.com", Err(())),
            ("[::1]:80", Err(())),
        ];
        for (host, want) in cases {
            let mut p = parts(http::Request::get("/").header("host", host));
            let got = now(&r, &mut p);
            match want {
                Ok(w) => assert_eq!(got.unwrap().as_ref().map(TenantId::as_str), w, "{host}"),
                Err(()) => assert!(got.is_err(), "{host}: {got:?}"),
            }
        }
        // HTTP/2: authority in the URI, no Host header.
        let mut p = parts(http::Request::get("https://beta.example.com/x"));
        assert_eq!(now(&r, &mut p).unwrap().unwrap().as_str(), "beta");
    }

    #[test]
    fn path() {
        let r = TenantResolver::path_prefix("/t/");
        let mut p = parts(http::Request::get("/t/acme/reports?x=1"));
        assert_eq!(now(&r, &mut p).unwrap().unwrap().as_str(), "acme");
        assert_eq!(p.uri.path(), "/t/acme/reports");
        let mut p = parts(http::Request::get("/other/acme"));
        assert_eq!(now(&r, &mut p), Ok(None));
        let mut p = parts(http::Request::get("/t/ac%2Ame/x"));
        assert!(now(&r, &mut p).is_err());

        let r = TenantResolver::path_prefix_stripped("/t");
        let mut p = parts(http::Request::get("/t/acme/reports?x=1"));
        assert_eq!(now(&r, &mut p).unwrap().unwrap().as_str(), "acme");
        assert_eq!(p.uri.to_string(), "/reports?x=1");
        let mut p = parts(http::Request::get("/t/acme"));
        now(&r, &mut p).unwrap();
        assert_eq!(p.uri.path(), "/");

        let r = TenantResolver::path_prefix("");
        let mut p = parts(http::Request::get("/acme/x"));
        assert_eq!(now(&r, &mut p).unwrap().unwrap().as_str(), "acme");
    }
}
