//! Who a request counts against: an authenticated user, or else the client's IP.
//!
//! * A [`UserId`] in the request extensions (the session layer or your auth middleware puts
//!   it there) wins.
//! * Else a configured header (`RATE_LIMIT_USER_HEADER`) — only for deployments where a
//!   trusted gateway sets it, since clients can send any header.
//! * Else the client IP: the TCP peer, or, when the peer is a trusted proxy
//!   (`RATE_LIMIT_TRUSTED_PROXIES`), the first untrusted address of the ONE forwarding
//!   header the operator chose (`RATE_LIMIT_FORWARDED_HEADER`: `x-forwarded-for` by default,
//!   `forwarded` or `x-real-ip`), counted from the right. The other forwarding headers are
//!   ignored, never a fallback: a proxy that appends `X-Forwarded-For` passes a client's own
//!   `Forwarded` header through untouched, so believing it would let every request invent an
//!   identity. A forwarded header from an untrusted peer is ignored, so it cannot be spoofed.
//!   A trusted proxy's header that cannot be read (garbage, `unknown`, no `for=`) maps to one
//!   shared identity, [`Identity::InvalidForwarding`] — never to the proxy's own address,
//!   which would throttle every client behind it. IPv6 clients are grouped by /64 (one
//!   subscriber usually holds a whole /64).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use crate::tenant::{Identity, UserId};

use http::HeaderName;
use http::request::Parts;
use ipnet::IpNet;

/// Longest user id accepted from a header (longer ones are ignored, and the IP is used).
///
/// ```
/// use tenant_guard::ratelimit::{IdentityConfig, MAX_HEADER_USER_LEN};
/// let cfg = IdentityConfig { user_header: Some(http::HeaderName::from_static("x-user-id")), ..Default::default() };
/// let ask = |user: &str| http::Request::get("/").header("x-user-id", user).body(()).unwrap().into_parts().0;
/// let peer = "192.0.2.7:4000".parse().ok();
/// let longest = "u".repeat(MAX_HEADER_USER_LEN);
/// assert_eq!(cfg.identify(&ask(&longest), peer).parts().0, "user");
/// // One byte more: the header is ignored and the address counts.
/// assert_eq!(cfg.identify(&ask(&format!("{longest}u")), peer).parts(), ("ip", "192.0.2.7"));
/// ```
pub const MAX_HEADER_USER_LEN: usize = 256;

/// The one forwarding header believed from trusted proxies (`RATE_LIMIT_FORWARDED_HEADER`).
///
/// Choose the header your proxy *writes*: nginx (`proxy_add_x_forwarded_for`), AWS ALB,
/// Google and Azure load balancers, Traefik, Envoy, Caddy and HAProxy (`option forwardfor`)
/// append `X-Forwarded-For`; nginx setting `X-Real-IP $remote_addr`: `x-real-ip`; a proxy
/// that appends RFC 7239 `Forwarded`: `forwarded`.
///
/// ```
/// use tenant_guard::ratelimit::ForwardedHeader;
/// assert_eq!("forwarded".parse::<ForwardedHeader>().unwrap(), ForwardedHeader::Forwarded);
/// assert_eq!("X-Real-IP".parse::<ForwardedHeader>().unwrap(), ForwardedHeader::XRealIp);
/// assert_eq!(ForwardedHeader::default().to_string(), "x-forwarded-for");
/// assert!("via".parse::<ForwardedHeader>().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, strum::EnumString, strum::Display)]
#[strum(serialize_all = "kebab-case", ascii_case_insensitive)]
pub enum ForwardedHeader {
    /// `X-Forwarded-For: client, proxy1, proxy2` (the default).
    #[default]
    XForwardedFor,
    /// RFC 7239 `Forwarded: for=client, for=proxy1`.
    Forwarded,
    /// `X-Real-IP: client` (one address, set by the proxy).
    XRealIp,
}

impl ForwardedHeader {
    /// The accepted values, for error messages.
    ///
    /// ```
    /// use tenant_guard::config::Config;
    /// use tenant_guard::ratelimit::ForwardedHeader;
    /// let err = Config::from_vars([("RATE_LIMIT_FORWARDED_HEADER", "via")]).unwrap_err();
    /// assert_eq!(err.problems()[0].expected, ForwardedHeader::FORM);
    /// ```
    pub const FORM: &'static str = "`x-forwarded-for`, `forwarded` or `x-real-ip`";
}

/// How the identity of a request is found (see the module docs).
///
/// ```
/// use tenant_guard::ratelimit::{ForwardedHeader, IdentityConfig};
/// use tenant_guard::tenant::UserId;
///
/// let cfg = IdentityConfig {
///     trusted_proxies: vec!["10.0.0.0/8".parse().unwrap()],
///     forwarded_header: ForwardedHeader::XRealIp,
///     ..Default::default()
/// };
/// let (mut parts, ()) = http::Request::get("/").header("x-real-ip", "203.0.113.9").body(()).unwrap().into_parts();
/// let proxy = "10.0.0.1:5555".parse().ok();
/// assert_eq!(cfg.identify(&parts, proxy).to_string(), "ip:203.0.113.9");
/// // An authenticated user wins over any address.
/// parts.extensions.insert(UserId::new("u-42"));
/// assert_eq!(cfg.identify(&parts, proxy).to_string(), "user:u-42");
/// ```
#[derive(Debug, Clone, Default)]
pub struct IdentityConfig {
    /// Header carrying a user id set by a trusted gateway.
    pub user_header: Option<HeaderName>,
    /// Proxies whose forwarding header is believed.
    pub trusted_proxies: Vec<IpNet>,
    /// The forwarding header believed from those proxies; the others are ignored.
    pub forwarded_header: ForwardedHeader,
}

impl IdentityConfig {
    /// Whether `ip` is one of the trusted proxies.
    ///
    /// ```
    /// use tenant_guard::ratelimit::IdentityConfig;
    /// let c = IdentityConfig { trusted_proxies: vec!["10.0.0.0/8".parse().unwrap()], ..Default::default() };
    /// assert!(c.is_trusted("10.1.2.3".parse().unwrap()));
    /// assert!(!c.is_trusted("192.0.2.1".parse().unwrap()));
    /// ```
    pub fn is_trusted(&self, ip: std::net::IpAddr) -> bool {
        self.trusted_proxies.iter().any(|n| n.contains(&ip))
    }
}

/// Where a request comes from, as far as the trusted proxies tell.
///
/// ```
/// use tenant_guard::ratelimit::{ClientAddr, IdentityConfig};
/// let cfg = IdentityConfig { trusted_proxies: vec!["10.0.0.0/8".parse().unwrap()], ..Default::default() };
/// let request = |xff: &str| http::Request::get("/").header("x-forwarded-for", xff).body(()).unwrap().into_parts().0;
/// let proxy = "10.0.0.1:5555".parse().ok();
/// assert_eq!(cfg.client(&request("203.0.113.9"), proxy), ClientAddr::Ip("203.0.113.9".parse().unwrap()));
/// assert_eq!(cfg.client(&request("garbage"), proxy), ClientAddr::InvalidForwarding);
/// assert_eq!(cfg.client(&request("203.0.113.9"), None), ClientAddr::Unknown); // no peer known
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAddr {
    /// A usable address.
    Ip(IpAddr),
    /// A trusted proxy's forwarding header named no usable address.
    InvalidForwarding,
    /// No peer address is known.
    Unknown,
}

impl IdentityConfig {
    /// The identity of a request. `peer` is the TCP peer (axum's `ConnectInfo`).
    ///
    /// ```
    /// use tenant_guard::ratelimit::{Identity, IdentityConfig};
    /// let cfg = IdentityConfig {
    ///     trusted_proxies: vec!["10.0.0.0/8".parse().unwrap()],
    ///     ..Default::default()
    /// };
    /// let (parts, ()) = http::Request::get("/")
    ///     .header("x-forwarded-for", "203.0.113.9, 10.0.0.7")
    ///     .body(()).unwrap().into_parts();
    /// let peer = "10.0.0.1:5555".parse().ok();
    /// assert_eq!(cfg.identify(&parts, peer).parts(), ("ip", "203.0.113.9"));
    /// // The same header from an untrusted peer is ignored.
    /// let peer = "198.51.100.1:5555".parse().ok();
    /// assert_eq!(cfg.identify(&parts, peer).parts(), ("ip", "198.51.100.1"));
    /// ```
    pub fn identify(&self, parts: &Parts, peer: Option<SocketAddr>) -> Identity {
        if let Some(u) = parts.extensions.get::<UserId>() {
            return Identity::User(u.shared());
        }
        if let Some(h) = &self.user_header {
            if let Some(v) = parts.headers.get(h) {
                let bytes = v.as_bytes().trim_ascii();
                if !bytes.is_empty() && bytes.len() <= MAX_HEADER_USER_LEN {
                    if let Ok(s) = std::str::from_utf8(bytes) {
                        return Identity::User(Arc::from(s));
                    }
                }
            }
        }
        match self.client(parts, peer) {
            ClientAddr::Ip(ip) => Identity::from_ip(ip),
            ClientAddr::InvalidForwarding => Identity::InvalidForwarding,
            ClientAddr::Unknown => Identity::Unknown,
        }
    }

    fn trusted(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        self.trusted_proxies.iter().any(|n| n.contains(&ip))
    }

    /// The client address, if there is a usable one (see [`client`](Self::client)).
    ///
    /// ```
    /// use tenant_guard::ratelimit::IdentityConfig;
    /// let cfg = IdentityConfig { trusted_proxies: vec!["10.0.0.0/8".parse().unwrap()], ..Default::default() };
    /// let (parts, ()) = http::Request::get("/").header("x-forwarded-for", "203.0.113.9, 10.0.0.7").body(()).unwrap().into_parts();
    /// assert_eq!(cfg.client_ip(&parts, "10.0.0.1:5555".parse().ok()), "203.0.113.9".parse().ok());
    /// let (parts, ()) = http::Request::get("/").header("x-forwarded-for", "unknown").body(()).unwrap().into_parts();
    /// assert_eq!(cfg.client_ip(&parts, "10.0.0.1:5555".parse().ok()), None);
    /// ```
    pub fn client_ip(&self, parts: &Parts, peer: Option<SocketAddr>) -> Option<IpAddr> {
        match self.client(parts, peer) {
            ClientAddr::Ip(ip) => Some(ip),
            ClientAddr::InvalidForwarding | ClientAddr::Unknown => None,
        }
    }

    /// The client address: the peer, or, when the peer is a trusted proxy, the first
    /// untrusted hop from the right of the chosen forwarding header. A missing header leaves
    /// the peer (the proxy's own request); a hop that cannot be read before an untrusted
    /// address is found gives [`ClientAddr::InvalidForwarding`].
    ///
    /// ```
    /// use tenant_guard::ratelimit::{ClientAddr, IdentityConfig};
    /// let cfg = IdentityConfig {
    ///     trusted_proxies: vec!["10.0.0.0/8".parse().unwrap()],
    ///     ..Default::default()
    /// };
    /// let peer = "10.0.0.1:5555".parse().ok();
    /// let (garbage, ()) = http::Request::get("/")
    ///     .header("x-forwarded-for", "unknown")
    ///     .body(()).unwrap().into_parts();
    /// assert_eq!(cfg.client(&garbage, peer), ClientAddr::InvalidForwarding);
    /// // Only the chosen header counts: a client-sent `Forwarded` is ignored.
    /// let (other, ()) = http::Request::get("/")
    ///     .header("forwarded", "for=198.51.100.4")
    ///     .header("x-forwarded-for", "203.0.113.9")
    ///     .body(()).unwrap().into_parts();
    /// assert_eq!(cfg.client(&other, peer), ClientAddr::Ip("203.0.113.9".parse().unwrap()));
    /// ```
    pub fn client(&self, parts: &Parts, peer: Option<SocketAddr>) -> ClientAddr {
        let Some(peer) = peer.map(|p| p.ip()) else {
            return ClientAddr::Unknown;
        };
        if !self.trusted(peer) {
            return ClientAddr::Ip(peer);
        }
        let Some(hops) = forwarded_hops(parts, self.forwarded_header) else {
            // The proxy sent no forwarding header: the request is its own (a health check).
            return ClientAddr::Ip(peer);
        };
        for hop in hops.iter().rev() {
            match hop {
                Some(ip) if self.trusted(*ip) => {}
                Some(ip) => return ClientAddr::Ip(*ip),
                // What the proxy wrote cannot be read: no hop left of it can be believed.
                None => return ClientAddr::InvalidForwarding,
            }
        }
        // Every hop is trusted: the leftmost is the origin.
        match hops.first() {
            Some(Some(ip)) => ClientAddr::Ip(*ip),
            _ => ClientAddr::InvalidForwarding,
        }
    }
}

/// Most hops read from a forwarding header (a longer chain is cut from the left, the part
/// only the client controls).
const MAX_HOPS: usize = 32;

/// Hops of the chosen header, left to right; `None` when the header is absent.
fn forwarded_hops(parts: &Parts, which: ForwardedHeader) -> Option<Vec<Option<IpAddr>>> {
    let name = match which {
        ForwardedHeader::XForwardedFor => "x-forwarded-for",
        ForwardedHeader::Forwarded => "forwarded",
        ForwardedHeader::XRealIp => "x-real-ip",
    };
    let mut values = parts.headers.get_all(name).iter().peekable();
    values.peek()?;
    let mut out = Vec::new();
    for v in values {
        let Ok(v) = v.to_str() else {
            out.push(None);
            continue;
        };
        match which {
            ForwardedHeader::XForwardedFor => {
                out.extend(v.split(',').map(|s| parse_node(s.trim())));
            }
            ForwardedHeader::XRealIp => out.push(parse_node(v.trim())),
            ForwardedHeader::Forwarded => {
                for elem in v.split(',') {
                    let for_ = elem.split(';').find_map(|pair| {
                        let (k, v) = pair.trim().split_once('=')?;
                        k.trim()
                            .eq_ignore_ascii_case("for")
                            .then(|| v.trim().trim_matches('"'))
                    });
                    // An element without `for=` names no client: unreadable.
                    out.push(for_.and_then(parse_node));
                }
            }
        }
        if out.len() > 4 * MAX_HOPS {
            // Keep the work per request bounded; only the right end matters.
            out.drain(..out.len() - MAX_HOPS);
        }
    }
    if out.len() > MAX_HOPS {
        out.drain(..out.len() - MAX_HOPS);
    }
    Some(out)
}

/// `1.2.3.4`, `1.2.3.4:80`, `[2001:db8::1]`, `[2001:db8::1]:80`, `2001:db8::1`.
fn parse_node(s: &str) -> Option<IpAddr> {
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Ok(sa) = s.parse::<SocketAddr>() {
        return Some(sa.ip());
    }
    s.strip_prefix('[')
        .and_then(|r| r.split(']').next())
        .and_then(|r| r.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(headers: &[(&str, &str)]) -> Parts {
        let mut b = http::Request::get("/");
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap().into_parts().0
    }

    fn cfg(trusted: &[&str]) -> IdentityConfig {
        IdentityConfig {
            trusted_proxies: trusted.iter().map(|s| s.parse().unwrap()).collect(),
            ..Default::default()
        }
    }

    fn with(header: ForwardedHeader, trusted: &[&str]) -> IdentityConfig {
        IdentityConfig {
            forwarded_header: header,
            ..cfg(trusted)
        }
    }

    const PROXY: &str = "10.0.0.1:1";

    #[test]
    fn spoofed_xff_from_untrusted_peer_is_ignored() {
        let p = parts(&[("x-forwarded-for", "1.1.1.1")]);
        let c = cfg(&["10.0.0.0/8"]);
        assert_eq!(
            c.client_ip(&p, "203.0.113.5:1".parse().ok()),
            Some("203.0.113.5".parse().unwrap())
        );
        let none = cfg(&[]);
        assert_eq!(
            none.client_ip(&p, "10.0.0.1:1".parse().ok()),
            Some("10.0.0.1".parse().unwrap())
        );
    }

    #[test]
    fn counted_from_the_right() {
        // The client put a fake address first; the trusted proxies appended the real one.
        let p = parts(&[("x-forwarded-for", "6.6.6.6, 198.51.100.7, 10.0.0.2")]);
        let c = cfg(&["10.0.0.0/8"]);
        assert_eq!(
            c.client_ip(&p, "10.0.0.1:1".parse().ok()),
            Some("198.51.100.7".parse().unwrap())
        );
        // All hops trusted: the leftmost.
        let p = parts(&[("x-forwarded-for", "10.0.0.9, 10.0.0.2")]);
        assert_eq!(
            c.client_ip(&p, "10.0.0.1:1".parse().ok()),
            Some("10.0.0.9".parse().unwrap())
        );
        // Garbage from the client left of a trusted hop: the shared invalid identity, not
        // the trusted hop's (that would throttle every client behind it).
        let p = parts(&[("x-forwarded-for", "<script>, 10.0.0.2")]);
        assert_eq!(
            c.client(&p, PROXY.parse().ok()),
            ClientAddr::InvalidForwarding
        );
    }

    #[test]
    fn only_the_chosen_header_counts() {
        // nginx appends X-Forwarded-For and passes the client's `Forwarded` through.
        let c = cfg(&["10.0.0.0/8"]);
        let peer = PROXY.parse().ok();
        for fake in ["for=1.2.3.4", "for=5.6.7.8", "for=\"[2001:db8::9]\""] {
            let p = parts(&[("forwarded", fake), ("x-forwarded-for", "198.51.100.7")]);
            assert_eq!(c.identify(&p, peer).parts(), ("ip", "198.51.100.7"));
        }
        // No fallback to another header when the chosen one is missing: the proxy itself.
        let p = parts(&[("forwarded", "for=1.2.3.4"), ("x-real-ip", "1.2.3.5")]);
        assert_eq!(c.identify(&p, peer).parts(), ("ip", "10.0.0.1"));
        // The same the other way round.
        let f = with(ForwardedHeader::Forwarded, &["10.0.0.0/8"]);
        let p = parts(&[
            ("forwarded", "for=198.51.100.7"),
            ("x-forwarded-for", "6.6.6.6"),
        ]);
        assert_eq!(f.identify(&p, peer).parts(), ("ip", "198.51.100.7"));
        let r = with(ForwardedHeader::XRealIp, &["10.0.0.0/8"]);
        let p = parts(&[
            ("x-real-ip", "198.51.100.8"),
            ("x-forwarded-for", "6.6.6.6"),
        ]);
        assert_eq!(r.identify(&p, peer).parts(), ("ip", "198.51.100.8"));
    }

    #[test]
    fn garbage_from_a_trusted_proxy_is_one_shared_identity_not_the_proxy() {
        let peer = PROXY.parse().ok();
        let cases: &[(ForwardedHeader, &str, &[u8])] = &[
            (
                ForwardedHeader::XForwardedFor,
                "x-forwarded-for",
                b"unknown",
            ),
            (ForwardedHeader::XForwardedFor, "x-forwarded-for", b""),
            (
                ForwardedHeader::XForwardedFor,
                "x-forwarded-for",
                b"caf\xc3\xa9",
            ),
            (
                ForwardedHeader::XForwardedFor,
                "x-forwarded-for",
                b"1.2.3.4, junk",
            ),
            (ForwardedHeader::Forwarded, "forwarded", b"proto=https"),
            (ForwardedHeader::Forwarded, "forwarded", b"for=unknown"),
            (ForwardedHeader::Forwarded, "forwarded", b"for=_hidden"),
            (ForwardedHeader::XRealIp, "x-real-ip", b"not an ip"),
        ];
        for (which, name, value) in cases {
            let mut p = parts(&[]);
            p.headers.append(
                http::HeaderName::from_static(name),
                http::HeaderValue::from_bytes(value).unwrap(),
            );
            let c = with(*which, &["10.0.0.0/8"]);
            let id = c.identify(&p, peer);
            assert_eq!(id, Identity::InvalidForwarding, "{name}: {value:?}");
            assert_eq!(id.parts(), ("ip", "invalid-forwarding"));
        }
        // A chain longer than the hop bound is cut from the left; the right end decides.
        let long = format!("{}198.51.100.7", "1.1.1.1, ".repeat(1000));
        let p = parts(&[("x-forwarded-for", &long)]);
        assert_eq!(
            cfg(&["10.0.0.0/8"]).identify(&p, peer).parts(),
            ("ip", "198.51.100.7")
        );
    }

    #[test]
    fn forwarded_header() {
        let p = parts(&[(
            "forwarded",
            "for=6.6.6.6, for=\"[2001:db8:cafe::17]:4711\";proto=https, for=10.0.0.3",
        )]);
        let c = with(ForwardedHeader::Forwarded, &["10.0.0.0/8"]);
        let ip = c.client_ip(&p, "10.0.0.1:1".parse().ok()).unwrap();
        assert_eq!(ip, "2001:db8:cafe::17".parse::<IpAddr>().unwrap());
        assert_eq!(Identity::from_ip(ip).parts(), ("ip", "2001:db8:cafe::/64"));
    }

    #[test]
    fn user_wins_then_header_then_ip() {
        let mut p = parts(&[("x-user", "alice")]);
        let c = IdentityConfig {
            user_header: Some(HeaderName::from_static("x-user")),
            ..Default::default()
        };
        let peer = "192.0.2.1:9".parse().ok();
        assert_eq!(c.identify(&p, peer).parts(), ("user", "alice"));
        p.extensions.insert(UserId::new("u-1"));
        assert_eq!(c.identify(&p, peer).parts(), ("user", "u-1"));
        let p = parts(&[("x-user", &"x".repeat(300))]);
        assert_eq!(c.identify(&p, peer).parts(), ("ip", "192.0.2.1"));
        assert_eq!(c.identify(&p, None), Identity::Unknown);
    }
}
