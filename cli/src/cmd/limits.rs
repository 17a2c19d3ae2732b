//! `tenant-guard limits`: change a tenant's rate limits at runtime, in the store every
//! instance watches (Redis, from the environment's `REDIS_URL` and friends).

use std::process::ExitCode;

use clap::{Args, Subcommand};
use tenant_guard::backend::Backend;
use tenant_guard::config::Config;
use tenant_guard::keys::Keys;
use tenant_guard::metrics::Metrics;
use tenant_guard::ratelimit::{AccessList, LimitStore, RateLimiter, TenantLimits};
use tenant_guard::tenant::TenantId;

#[derive(Debug, Args)]
pub(crate) struct LimitsArgs {
    #[command(subcommand)]
    action: Action,
}

#[derive(Debug, Subcommand)]
enum Action {
    /// Set a tenant's limits (replacing what it had): `RULE=LIMIT/WINDOW` for the rules of
    /// the configuration (`per-tenant`, `per-user`, `per-endpoint`, RATE_LIMIT_ENDPOINTS
    /// names) and `plan=NAME` for a RATE_LIMIT_PLANS tier. Every instance applies them
    /// within a second.
    Set {
        /// The tenant.
        tenant: String,
        /// `RULE=LIMIT/WINDOW` and `plan=NAME` entries.
        #[arg(required = true)]
        limits: Vec<String>,
    },
    /// Print a tenant's limits (nothing: it has none).
    Get {
        /// The tenant.
        tenant: String,
    },
    /// Remove a tenant's limits: it goes back to the configuration's.
    Clear {
        /// The tenant.
        tenant: String,
    },
    /// Print every tenant's limits.
    List,
    /// Replace the runtime exempt list (RATE_LIMIT_EXEMPT's form: `tenant:NAME`, `user:ID`,
    /// `ip:CIDR`, comma-separated; `""` empties it), applied on top of the configuration's.
    Exempt {
        /// The list.
        list: String,
    },
    /// Replace the runtime deny list (same form; `""` empties it).
    Deny {
        /// The list.
        list: String,
    },
    /// Print the runtime exempt and deny lists.
    Lists,
}

pub(crate) fn run(args: LimitsArgs) -> ExitCode {
    super::runtime(limits(args.action))
}

async fn limits(action: Action) -> ExitCode {
    let config = match Config::from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let metrics = Metrics::new();
    let backend = match Backend::from_config(&config, &metrics) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    if !backend.is_shared() {
        eprintln!(
            "error: no Redis is configured (REDIS_URL): runtime limits live in Redis, where \
             every instance watches them; on the memory backend use RateLimiter::set_tenant_limits"
        );
        return ExitCode::from(2);
    }
    let store = LimitStore::new(backend.clone(), &Keys::new(config.key_prefix.clone()));
    let tenant = |t: &str| match TenantId::new(t) {
        Ok(t) => Ok(t),
        Err(e) => {
            eprintln!("error: tenant `{t}`: {e}");
            Err(ExitCode::from(2))
        }
    };
    let done = match action {
        Action::Set { tenant: t, limits } => {
            let t = match tenant(&t) {
                Ok(t) => t,
                Err(code) => return code,
            };
            let limits = match TenantLimits::parse(&limits.join(" ")) {
                Ok(l) => l,
                Err(e) => {
                    eprintln!("error: {e} (expected {})", TenantLimits::FORM);
                    return ExitCode::from(2);
                }
            };
            // Refused here, with the configuration's own rules and plans, rather than
            // ignored by every instance.
            let limiter = RateLimiter::from_config(&config, backend, &metrics);
            if let Err(e) = limiter.check_limits(&limits) {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
            store.set(&t, &limits).await.map(|()| {
                println!("{t}: {limits}");
            })
        }
        Action::Get { tenant: t } => {
            let t = match tenant(&t) {
                Ok(t) => t,
                Err(code) => return code,
            };
            store.get(&t).await.map(|l| {
                if let Some(l) = l {
                    println!("{t}: {l}");
                }
            })
        }
        Action::Clear { tenant: t } => {
            let t = match tenant(&t) {
                Ok(t) => t,
                Err(code) => return code,
            };
            store.clear(&t).await.map(|had| {
                println!("{t}: {}", if had { "cleared" } else { "had no limits" });
            })
        }
        Action::List => store.all().await.map(|all| {
            for (t, l) in all {
                println!("{t}: {l}");
            }
        }),
        Action::Exempt { list } | Action::Deny { list } if AccessList::parse(&list).is_err() => {
            let e = AccessList::parse(&list)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
        Action::Exempt { list } => match store.lists().await {
            Ok((_, deny)) => {
                let exempt = AccessList::parse(&list).unwrap_or_default();
                store.set_lists(&exempt, &deny).await.map(|()| {
                    println!("exempt: {}", exempt.to_env());
                })
            }
            Err(e) => Err(e),
        },
        Action::Deny { list } => match store.lists().await {
            Ok((exempt, _)) => {
                let deny = AccessList::parse(&list).unwrap_or_default();
                store.set_lists(&exempt, &deny).await.map(|()| {
                    println!("deny: {}", deny.to_env());
                })
            }
            Err(e) => Err(e),
        },
        Action::Lists => store.lists().await.map(|(exempt, deny)| {
            println!("exempt: {}", exempt.to_env());
            println!("deny: {}", deny.to_env());
        }),
    };
    match done {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
