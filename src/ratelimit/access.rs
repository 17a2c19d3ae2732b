//! [`AccessList`]: the identities that skip every limit (`RATE_LIMIT_EXEMPT`) or are refused
//! outright (`RATE_LIMIT_DENY`): tenants, users and client address ranges.

use std::collections::HashSet;
use std::net::IpAddr;

use ipnet::IpNet;

use crate::parse::InvalidValue;
use crate::tenant::{Identity, TenantId};

/// A list of tenants, users and client address ranges.
///
/// Entries are `tenant:NAME`, `user:ID` and `ip:CIDR` (or a single address), separated by
/// commas. A user entry matches the identity the rate-limit layer resolved (a session user
/// or a trusted gateway's header), an `ip:` entry the client address as resolved behind
/// trusted proxies only: a client cannot name itself into a list with a forwarding header.
///
/// ```
/// use tenant_guard::ratelimit::AccessList;
/// use tenant_guard::tenant::{Identity, TenantId};
/// let list = AccessList::parse("tenant:acme, user:ops-bot, ip:10.0.0.0/8").unwrap();
/// let globex = TenantId::new("globex").unwrap();
/// let anon = Identity::Ip("192.0.2.1".into());
/// assert_eq!(list.matches(&TenantId::new("acme").unwrap(), &anon, None), Some("tenant"));
/// assert_eq!(list.matches(&globex, &Identity::User("ops-bot".into()), None), Some("user"));
/// assert_eq!(list.matches(&globex, &anon, Some("10.1.2.3".parse().unwrap())), Some("ip"));
/// assert_eq!(list.matches(&globex, &anon, Some("192.0.2.1".parse().unwrap())), None);
/// assert!(AccessList::parse("ip:300.0.0.0/8").is_err());
/// // Written IPv4-mapped, a range still matches its IPv4 clients.
/// let mapped = AccessList::parse("ip:::ffff:203.0.113.0/120").unwrap();
/// assert_eq!(mapped.matches(&globex, &anon, Some("203.0.113.9".parse().unwrap())), Some("ip"));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccessList {
    tenants: HashSet<TenantId>,
    users: HashSet<String>,
    nets: Vec<IpNet>,
}

/// An IPv4-mapped range (`::ffff:203.0.113.0/120`, as dual-stack sockets log clients) as
/// the IPv4 range it is (`203.0.113.0/24`): clients are compared as IPv4.
fn unmapped(net: IpNet) -> IpNet {
    match net {
        IpNet::V6(v6) if v6.prefix_len() >= 96 => match v6.network().to_ipv4_mapped() {
            Some(v4) => ipnet::Ipv4Net::new(v4, v6.prefix_len() - 96).map_or(net, IpNet::V4),
            None => net,
        },
        other => other,
    }
}

/// The accepted form, for configuration errors.
pub(crate) const ACCESS_LIST_FORM: &str = "a comma list of `tenant:NAME`, `user:ID` and `ip:CIDR` entries, e.g. `tenant:acme, ip:10.0.0.0/8`";

impl AccessList {
    /// Parses a comma list of `tenant:NAME`, `user:ID` and `ip:CIDR` entries (blank
    /// entries are skipped).
    ///
    /// ```
    /// use tenant_guard::ratelimit::AccessList;
    /// let list = AccessList::parse("tenant:acme, , ip:192.0.2.7").unwrap(); // blank entries skipped
    /// assert_eq!(list.to_env(), "ip:192.0.2.7/32, tenant:acme");
    /// assert!(AccessList::parse("acme").is_err()); // no kind
    /// assert!(AccessList::parse("tenant:a:b").is_err()); // not a tenant id
    /// ```
    pub fn parse(s: &str) -> Result<Self, InvalidValue> {
        let mut list = Self::default();
        for entry in s.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let Some((kind, value)) = entry.split_once(':') else {
                return Err(format!("`{entry}` has no `tenant:`, `user:` or `ip:` kind").into());
            };
            let value = value.trim();
            match kind.trim() {
                "tenant" => {
                    let t = TenantId::new(value).map_err(|e| format!("`{entry}`: {e}"))?;
                    list.tenants.insert(t);
                }
                "user" if !value.is_empty() => {
                    list.users.insert(value.to_string());
                }
                "ip" => {
                    let net = value
                        .parse::<IpNet>()
                        .or_else(|_| value.parse::<IpAddr>().map(IpNet::from))
                        .map_err(|_| format!("`{entry}`: not an address or CIDR range"))?;
                    list.nets.push(unmapped(net).trunc());
                }
                _ => return Err(format!("`{entry}`: unknown kind or empty value").into()),
            }
        }
        Ok(list)
    }

    /// Whether the list has no entry.
    ///
    /// ```
    /// use tenant_guard::ratelimit::AccessList;
    /// assert!(AccessList::parse("").unwrap().is_empty());
    /// assert!(!AccessList::parse("user:ops-bot").unwrap().is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.tenants.is_empty() && self.users.is_empty() && self.nets.is_empty()
    }

    /// Whether any `ip:` entry is listed (only then is the client address needed).
    ///
    /// ```
    /// use tenant_guard::ratelimit::AccessList;
    /// assert!(AccessList::parse("tenant:acme, ip:10.0.0.0/8").unwrap().has_addresses());
    /// assert!(!AccessList::parse("tenant:acme, user:ops-bot").unwrap().has_addresses());
    /// ```
    pub fn has_addresses(&self) -> bool {
        !self.nets.is_empty()
    }

    /// The kind of the first entry that matches (`tenant`, `user` or `ip`), if any.
    ///
    /// ```
    /// use tenant_guard::ratelimit::AccessList;
    /// use tenant_guard::tenant::{Identity, TenantId};
    ///
    /// let deny = AccessList::parse("user:scraper-9, ip:198.51.100.0/24").unwrap();
    /// let acme = TenantId::new("acme").unwrap();
    /// assert_eq!(deny.matches(&acme, &Identity::User("scraper-9".into()), None), Some("user"));
    /// let anon = Identity::Ip("198.51.100.20".into());
    /// assert_eq!(deny.matches(&acme, &anon, Some("198.51.100.20".parse().unwrap())), Some("ip"));
    /// assert_eq!(deny.matches(&acme, &Identity::User("alice".into()), None), None);
    /// ```
    pub fn matches(
        &self,
        tenant: &TenantId,
        identity: &Identity,
        client: Option<IpAddr>,
    ) -> Option<&'static str> {
        if self.tenants.contains(tenant) {
            return Some("tenant");
        }
        if let Identity::User(u) = identity {
            if self.users.contains(&**u) {
                return Some("user");
            }
        }
        let ip = client.map(|ip| match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        })?;
        self.nets.iter().any(|n| n.contains(&ip)).then_some("ip")
    }

    /// The list written back (sorted), as `tenant-guard config` prints it.
    ///
    /// ```
    /// use tenant_guard::ratelimit::AccessList;
    /// let list = AccessList::parse("user:ops-bot, tenant:globex, ip:10.1.2.3/8, tenant:acme").unwrap();
    /// // Sorted, ranges written from their network address: it parses back to the same list.
    /// assert_eq!(list.to_env(), "ip:10.0.0.0/8, tenant:acme, tenant:globex, user:ops-bot");
    /// assert_eq!(AccessList::parse(&list.to_env()).unwrap(), list);
    /// ```
    pub fn to_env(&self) -> String {
        let mut out: Vec<String> = self
            .tenants
            .iter()
            .map(|t| format!("tenant:{t}"))
            .chain(self.users.iter().map(|u| format!("user:{u}")))
            .chain(self.nets.iter().map(|n| format!("ip:{n}")))
            .collect();
        out.sort();
        out.join(", ")
    }
}
