//! What a run sends: the plan (target, tenants, their endpoint mixes) and its schedule.

use std::net::SocketAddr;
use std::time::Duration;

use http::Method;

/// One endpoint of the traffic mix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// HTTP method.
    pub method: Method,
    /// Path (and query) to request.
    pub path: String,
    /// Relative weight in the mix.
    pub weight: u32,
}

/// The traffic of one tenant.
#[derive(Debug, Clone, PartialEq)]
pub struct TenantLoad {
    /// Tenant id sent in the tenant header.
    pub tenant: String,
    /// Requests per second.
    pub rate: f64,
    /// Distinct users (sent in the user header, round robin).
    pub users: u32,
    /// The mix of endpoints.
    pub endpoints: Vec<Endpoint>,
}

/// Where the requests go.
#[derive(Debug, Clone)]
pub enum Target {
    /// A server over HTTP (loopback, or an address the user named explicitly).
    Http(SocketAddr),
    /// An axum router called as a tower service in this process, without sockets: the
    /// middleware alone, without the network.
    InProcess(axum::Router),
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Http(a) => write!(f, "{a}"),
            Self::InProcess(_) => f.write_str("the in-process router"),
        }
    }
}

/// A load run.
#[derive(Debug, Clone)]
pub struct LoadPlan {
    /// Where the requests go.
    pub target: Target,
    /// How long to send.
    pub duration: Duration,
    /// Most requests in flight at once.
    pub max_in_flight: usize,
    /// Header carrying the tenant.
    pub tenant_header: String,
    /// Header carrying the user.
    pub user_header: String,
    /// Per-tenant traffic.
    pub tenants: Vec<TenantLoad>,
    /// Share (0 to 1) of the POST requests sent with `"stream": true`: their answers, when
    /// event streams, report time to first and to last byte.
    pub stream_share: f64,
}

impl LoadPlan {
    /// Whether the `n`-th POST request (0, 1, ...) of a run asks for a stream: spread
    /// evenly, `stream_share` of them.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use tenant_guard_cli::loadgen::{LoadPlan, Target};
    /// # let router = axum::Router::new();
    /// let plan = LoadPlan { target: Target::InProcess(router), duration: Duration::from_secs(1),
    ///     max_in_flight: 1, tenant_header: "X-Tenant-ID".into(), user_header: "X-User-ID".into(),
    ///     tenants: vec![], stream_share: 0.25 };
    /// assert_eq!((0..8).filter(|&n| plan.streams(n)).count(), 2);
    /// ```
    pub fn streams(&self, n: u64) -> bool {
        let share = self.stream_share.clamp(0.0, 1.0);
        ((n + 1) as f64 * share).floor() > (n as f64 * share).floor()
    }
}

/// One scheduled request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Planned {
    /// Send time, from the start of the run.
    pub at: Duration,
    /// Index into [`LoadPlan::tenants`].
    pub tenant: usize,
    /// User number within the tenant.
    pub user: u32,
    /// Index into the tenant's endpoints.
    pub endpoint: usize,
}

/// The whole schedule, in send order: tenant `t` sends request `k` at `k / rate_t`.
///
/// ```
/// use std::time::Duration;
/// use tenant_guard_cli::loadgen::{schedule, Endpoint, TenantLoad};
///
/// let t = TenantLoad { tenant: "a".into(), rate: 10.0, users: 2,
///     endpoints: vec![Endpoint { method: http::Method::GET, path: "/x".into(), weight: 1 }] };
/// let s = schedule(&[t], Duration::from_secs(2));
/// assert_eq!(s.len(), 20);
/// assert_eq!(s[1].at, Duration::from_millis(100));
/// assert_eq!((s[0].user, s[1].user, s[2].user), (0, 1, 0));
/// ```
pub fn schedule(tenants: &[TenantLoad], duration: Duration) -> Vec<Planned> {
    let mut out = Vec::new();
    for (ti, t) in tenants.iter().enumerate() {
        if t.rate <= 0.0 || t.endpoints.is_empty() {
            continue;
        }
        // The weighted mix as a repeating cycle of endpoint indexes: endpoint i takes
        // `weight` consecutive places. Only the cumulative weights are kept (a cycle
        // written out would be as long as the weights sum to: 4 G entries for one
        // endpoint of weight u32::MAX in a scenario file).
        let ends: Vec<u64> = t
            .endpoints
            .iter()
            .scan(0u64, |sum, e| {
                *sum += u64::from(e.weight.max(1));
                Some(*sum)
            })
            .collect();
        let cycle_len = ends.last().copied().unwrap_or(1);
        let n = (t.rate * duration.as_secs_f64()).floor() as u64;
        for k in 0..n {
            out.push(Planned {
                at: Duration::from_secs_f64(k as f64 / t.rate),
                tenant: ti,
                user: (k % u64::from(t.users.max(1))) as u32,
                endpoint: ends.partition_point(|&end| end <= k % cycle_len),
            });
        }
    }
    out.sort_by_key(|p| (p.at, p.tenant));
    out
}
