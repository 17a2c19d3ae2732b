//! Who a request counts against: an authenticated user, or else the client's IP.
//!
//! * A [`UserId`] in the request extensions (the session layer or your auth middleware puts
//!   it there) wins.
//! * Else a configured header (`RATE_LIMIT_USER_HEADER`) — only for deployments where a
//!   trusted gateway sets it, since clients can send any header.
//! * Else the client IP: the TCP peer, or, when the peer is a trusted proxy
//!   (`RATE_LIMIT_TRUSTED_PROXIES`), the first untrusted address of `Forwarded` /
//!   `X-Forwarded-For` counted from the right. A forwarded header from an untrusted peer is
//!   ignored, so it cannot be spoofed. IPv6 clients are grouped by /64 (one subscriber
//!   usually holds a whole /64).

use std::fmt;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use http::request::Parts;
use http::HeaderName;
use ipnet::IpNet;

/// An authenticated user id, put into request extensions by the session layer or by the
/// application's auth middleware; rate limits then count per user instead of per IP.
///
/// ```
/// let mut req = http::Request::new(());
/// req.extensions_mut().insert(tenant_guard::ratelimit::UserId::new("u-42"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UserId(Arc<str>);

impl UserId {
    /// Wraps a user id (any string: key components are escaped).
    pub fn new(id: impl AsRef<str>) -> Self {
        Self(Arc::from(id.as_ref()))
    }

    /// The id.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The identity a user-scoped rule counts against.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Identity {
    /// An authenticated user.
    User(Arc<str>),
    /// A client address (IPv4, or an IPv6 /64 written `2001:db8::/64`).
    Ip(Arc<str>),
    /// No user and no known address (no peer address available): all such requests share
    /// one counter.
    Unknown,
}

impl Identity {
    /// `(kind, value)` as written in keys.
    pub fn parts(&self) -> (&'static str, &str) {
        match self {
            Self::User(u) => ("user", u),
            Self::Ip(ip) => ("ip", ip),
            Self::Unknown => ("ip", "unknown"),
        }
    }

    /// The identity of an address, IPv6 grouped by /64.
    ///
    /// ```
    /// use tenant_guard::ratelimit::Identity;
    /// let a = Identity::from_ip("2001:db8:1:2:aaaa::1".parse().unwrap());
    /// let b = Identity::from_ip("2001:db8:1:2:bbbb::2".parse().unwrap());
    /// assert_eq!(a, b);
    /// assert_eq!(a.parts(), ("ip", "2001:db8:1:2::/64"));
    /// assert_eq!(Identity::from_ip("::ffff:10.1.2.3".parse().unwrap()).parts(), ("ip", "10.1.2.3"));
    /// ```
    pub fn from_ip(ip: IpAddr) -> Self {
        let ip = match ip {
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => IpAddr::V6(v6),
            },
            v4 => v4,
        };
        match ip {
            IpAddr::V4(v4) => Self::Ip(Arc::from(v4.to_string())),
            IpAddr::V6(v6) => {
                let seg = v6.segments();
                let net = Ipv6Addr::new(seg[0], seg[1], seg[2], seg[3], 0, 0, 0, 0);
                Self::Ip(Arc::from(format!("{net}/64")))
            }
        }
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (k, v) = self.parts();
        write!(f, "{k}:{v}")
    }
}

/// Longest user id accepted from a header (longer ones are ignored, and the IP is used).
pub const MAX_HEADER_USER_LEN: usize = 256;

/// How the identity of a request is found (see the module docs).
#[derive(Debug, Clone, Default)]
pub struct IdentityConfig {
    /// Header carrying a user id set by a trusted gateway.
    pub user_header: Option<HeaderName>,
    /// Proxies whose forwarding headers are believed.
    pub trusted_proxies: Vec<IpNet>,
}

impl IdentityConfig {
    /// The identity of a request. `peer` is the TCP peer (axum's `ConnectInfo`).
    ///
    /// ```
    /// use tenant_guard::ratelimit::{Identity, IdentityConfig};
    /// let cfg = IdentityConfig {
    ///     user_header: None,
    ///     trusted_proxies: vec!["10.0.0.0/8".parse().unwrap()],
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
            return Identity::User(u.0.clone());
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
        match self.client_ip(parts, peer) {
            Some(ip) => Identity::from_ip(ip),
            None => Identity::Unknown,
        }
    }

    fn trusted(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        self.trusted_proxies.iter().any(|n| n.contains(&ip))
    }

    /// The client address: the peer, or the first untrusted hop from the right of the
    /// forwarding headers when the peer is a trusted proxy.
    pub fn client_ip(&self, parts: &Parts, peer: Option<SocketAddr>) -> Option<IpAddr> {
        let peer = peer?.ip();
        if !self.trusted(peer) {
            return Some(peer);
        }
        let hops = forwarded_hops(parts);
        let mut client = peer;
        for hop in hops.iter().rev() {
            match hop {
                Some(ip) => {
                    client = *ip;
                    if !self.trusted(*ip) {
                        return Some(*ip);
                    }
                }
                // An unparsable hop ends what we can believe: use the last good one.
                None => return Some(client),
            }
        }
        Some(client)
    }
}

/// Hops of `Forwarded` (`for=`) if present, else of `X-Forwarded-For`, left to right.
fn forwarded_hops(parts: &Parts) -> Vec<Option<IpAddr>> {
    let fwd: Vec<&str> = parts
        .headers
        .get_all(http::header::FORWARDED)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    if !fwd.is_empty() {
        let mut out = Vec::new();
        for elem in fwd.iter().flat_map(|v| v.split(',')) {
            let for_ = elem.split(';').find_map(|pair| {
                let (k, v) = pair.trim().split_once('=')?;
                k.trim()
                    .eq_ignore_ascii_case("for")
                    .then(|| v.trim().trim_matches('"'))
            });
            if let Some(v) = for_ {
                out.push(parse_node(v));
            }
        }
        return out;
    }
    parts
        .headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|s| parse_node(s.trim()))
        .collect()
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
            user_header: None,
            trusted_proxies: trusted.iter().map(|s| s.parse().unwrap()).collect(),
        }
    }

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
        // Garbage stops the walk at the last good hop.
        let p = parts(&[("x-forwarded-for", "<script>, 10.0.0.2")]);
        assert_eq!(
            c.client_ip(&p, "10.0.0.1:1".parse().ok()),
            Some("10.0.0.2".parse().unwrap())
        );
    }

    #[test]
    fn forwarded_header() {
        let p = parts(&[(
            "forwarded",
            "for=6.6.6.6, for=\"[2001:db8:cafe::17]:4711\";proto=https, for=10.0.0.3",
        )]);
        let c = cfg(&["10.0.0.0/8"]);
        let ip = c.client_ip(&p, "10.0.0.1:1".parse().ok()).unwrap();
        assert_eq!(ip, "2001:db8:cafe::17".parse::<IpAddr>().unwrap());
        assert_eq!(Identity::from_ip(ip).parts(), ("ip", "2001:db8:cafe::/64"));
    }

    #[test]
    fn user_wins_then_header_then_ip() {
        let mut p = parts(&[("x-user", "alice")]);
        let c = IdentityConfig {
            user_header: Some(HeaderName::from_static("x-user")),
            trusted_proxies: vec![],
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
