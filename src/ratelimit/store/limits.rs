//! [`LimitStore`]: where tenants' runtime limits live, so that every instance applies
//! them — a Redis hash (`tg:limits:{global}:tenants`, tenant -> limits) and a version
//! counter bumped with each change in the same transaction; on the memory backend the same
//! two entries in the process's store.

use crate::backend::{Backend, BackendError};
use crate::keys::{KeyKind, Keys, RedisKey};
use crate::ratelimit::{AccessList, GLOBAL_TENANT, TenantLimits};

/// The table's fields of the runtime exempt and deny lists (no tenant id starts with `!`).
const EXEMPT: &str = "!exempt";
const DENY: &str = "!deny";
use crate::tenant::TenantId;

/// Tenants' runtime limits, shared by every instance on the same backend.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use tenant_guard::backend::{Backend, MemoryStore};
/// use tenant_guard::ratelimit::{LimitStore, TenantLimits};
/// use tenant_guard::{keys::Keys, tenant::TenantId};
/// let store = LimitStore::new(Backend::Memory(MemoryStore::new(Default::default())), &Keys::default());
/// let acme = TenantId::new("acme").unwrap();
/// store.set(&acme, &TenantLimits::parse("per-tenant=5000/1m").unwrap()).await.unwrap();
/// assert_eq!(store.get(&acme).await.unwrap().unwrap().to_string(), "per-tenant=5000/60s");
/// assert_eq!(store.version().await.unwrap(), 1);
/// assert!(store.clear(&acme).await.unwrap());
/// assert!(store.all().await.unwrap().is_empty());
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct LimitStore {
    backend: Backend,
    table: RedisKey,
    version: RedisKey,
}

/// Serialises read-modify-writes of the memory backend's table (one process).
static MEMORY_TABLE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

impl LimitStore {
    /// The store on `backend`, under `keys`' prefix.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use tenant_guard::backend::{Backend, MemoryStore};
    /// use tenant_guard::ratelimit::{AccessList, LimitStore, TenantLimits};
    /// use tenant_guard::{keys::Keys, tenant::TenantId};
    /// let store = LimitStore::new(Backend::Memory(MemoryStore::new(Default::default())), &Keys::default());
    /// # let _ = AccessList::default();
    /// // The same backend and prefix: every instance sees the same table.
    /// let memory = MemoryStore::new(Default::default());
    /// let a = LimitStore::new(Backend::Memory(memory.clone()), &Keys::default());
    /// let b = LimitStore::new(Backend::Memory(memory), &Keys::default());
    /// a.set(&TenantId::new("acme")?, &TenantLimits::parse("plan=pro")?).await?;
    /// assert_eq!(b.all().await?.len(), 1);
    /// # let _ = store;
    /// # Ok(()) }
    /// ```
    pub fn new(backend: Backend, keys: &Keys) -> Self {
        let global = TenantId::new(GLOBAL_TENANT).expect("the global tenant is valid");
        Self {
            backend,
            table: keys.key(KeyKind::Limits, &global, &["tenants"]),
            version: keys.key(KeyKind::Limits, &global, &["version"]),
        }
    }

    /// Sets `tenant`'s limits (replacing what it had), and bumps the version.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use tenant_guard::backend::{Backend, MemoryStore};
    /// use tenant_guard::ratelimit::{AccessList, LimitStore, TenantLimits};
    /// use tenant_guard::{keys::Keys, tenant::TenantId};
    /// let store = LimitStore::new(Backend::Memory(MemoryStore::new(Default::default())), &Keys::default());
    /// # let _ = AccessList::default();
    /// let acme = TenantId::new("acme")?;
    /// store.set(&acme, &TenantLimits::parse("per-tenant=100/1m")?).await?;
    /// store.set(&acme, &TenantLimits::parse("plan=pro")?).await?; // replaces what it had
    /// assert_eq!(store.get(&acme).await?.unwrap().to_string(), "plan=pro");
    /// assert_eq!(store.version().await?, 2);
    /// # Ok(()) }
    /// ```
    pub async fn set(&self, tenant: &TenantId, limits: &TenantLimits) -> Result<(), BackendError> {
        self.write(tenant, Some(limits.to_string()))
            .await
            .map(|_| ())
    }

    /// Removes `tenant`'s limits; whether it had some.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use tenant_guard::backend::{Backend, MemoryStore};
    /// use tenant_guard::ratelimit::{AccessList, LimitStore, TenantLimits};
    /// use tenant_guard::{keys::Keys, tenant::TenantId};
    /// let store = LimitStore::new(Backend::Memory(MemoryStore::new(Default::default())), &Keys::default());
    /// # let _ = AccessList::default();
    /// let acme = TenantId::new("acme")?;
    /// store.set(&acme, &TenantLimits::parse("plan=pro")?).await?;
    /// assert!(store.clear(&acme).await?);
    /// assert!(!store.clear(&acme).await?); // had none any more
    /// assert_eq!(store.get(&acme).await?, None);
    /// # Ok(()) }
    /// ```
    pub async fn clear(&self, tenant: &TenantId) -> Result<bool, BackendError> {
        self.write(tenant, None).await
    }

    /// Sets the exempt and deny lists every watching instance applies on top of its
    /// layer's (empty lists: none), and bumps the version.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use tenant_guard::backend::{Backend, MemoryStore};
    /// use tenant_guard::ratelimit::{AccessList, LimitStore, TenantLimits};
    /// use tenant_guard::{keys::Keys, tenant::TenantId};
    /// let store = LimitStore::new(Backend::Memory(MemoryStore::new(Default::default())), &Keys::default());
    /// # let _ = AccessList::default();
    /// store.set_lists(&AccessList::parse("tenant:internal")?, &AccessList::parse("ip:198.51.100.0/24")?).await?;
    /// let (exempt, deny) = store.lists().await?;
    /// assert_eq!((exempt.to_env(), deny.to_env()), ("tenant:internal".into(), "ip:198.51.100.0/24".into()));
    /// assert!(store.all().await?.is_empty()); // the lists are not a tenant's limits
    /// # Ok(()) }
    /// ```
    pub async fn set_lists(
        &self,
        exempt: &AccessList,
        deny: &AccessList,
    ) -> Result<(), BackendError> {
        self.write_field(EXEMPT, Some(exempt.to_env())).await?;
        self.write_field(DENY, Some(deny.to_env()))
            .await
            .map(|_| ())
    }

    /// The exempt and deny lists in the store (empty when unset). Unreadable is an error.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use tenant_guard::backend::{Backend, MemoryStore};
    /// use tenant_guard::ratelimit::{AccessList, LimitStore, TenantLimits};
    /// use tenant_guard::{keys::Keys, tenant::TenantId};
    /// let store = LimitStore::new(Backend::Memory(MemoryStore::new(Default::default())), &Keys::default());
    /// # let _ = AccessList::default();
    /// let (exempt, deny) = store.lists().await?;
    /// assert!(exempt.is_empty() && deny.is_empty()); // unset: none
    /// store.set_lists(&AccessList::default(), &AccessList::parse("user:scraper-9")?).await?;
    /// assert_eq!(store.lists().await?.1.to_env(), "user:scraper-9");
    /// # Ok(()) }
    /// ```
    pub async fn lists(&self) -> Result<(AccessList, AccessList), BackendError> {
        let raw = self.raw().await?;
        let list = |name: &str| -> Result<AccessList, BackendError> {
            match raw.iter().find(|(k, _)| k == name) {
                None => Ok(AccessList::default()),
                Some((_, v)) => AccessList::parse(v)
                    .map_err(|_| BackendError::Unsupported("a runtime access list is unreadable")),
            }
        };
        Ok((list(EXEMPT)?, list(DENY)?))
    }

    /// `tenant`'s limits, if it has some.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use tenant_guard::backend::{Backend, MemoryStore};
    /// use tenant_guard::ratelimit::{AccessList, LimitStore, TenantLimits};
    /// use tenant_guard::{keys::Keys, tenant::TenantId};
    /// let store = LimitStore::new(Backend::Memory(MemoryStore::new(Default::default())), &Keys::default());
    /// # let _ = AccessList::default();
    /// let (acme, globex) = (TenantId::new("acme")?, TenantId::new("globex")?);
    /// store.set(&acme, &TenantLimits::parse("per-tenant=5000/1m")?).await?;
    /// assert_eq!(store.get(&acme).await?.unwrap().quotas[0].1.limit.get(), 5000);
    /// assert_eq!(store.get(&globex).await?, None);
    /// # Ok(()) }
    /// ```
    pub async fn get(&self, tenant: &TenantId) -> Result<Option<TenantLimits>, BackendError> {
        Ok(self
            .all()
            .await?
            .into_iter()
            .find(|(t, _)| t == tenant)
            .map(|(_, l)| l))
    }

    /// Every tenant's limits (entries that no longer parse are left out).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use tenant_guard::backend::{Backend, MemoryStore};
    /// use tenant_guard::ratelimit::{AccessList, LimitStore, TenantLimits};
    /// use tenant_guard::{keys::Keys, tenant::TenantId};
    /// let store = LimitStore::new(Backend::Memory(MemoryStore::new(Default::default())), &Keys::default());
    /// # let _ = AccessList::default();
    /// store.set(&TenantId::new("globex")?, &TenantLimits::parse("plan=free")?).await?;
    /// store.set(&TenantId::new("acme")?, &TenantLimits::parse("plan=pro")?).await?;
    /// let all = store.all().await?;
    /// let tenants: Vec<&str> = all.iter().map(|(t, _)| t.as_str()).collect();
    /// assert_eq!(tenants, ["acme", "globex"]); // sorted by tenant
    /// # Ok(()) }
    /// ```
    pub async fn all(&self) -> Result<Vec<(TenantId, TenantLimits)>, BackendError> {
        self.table().await.map(|(ok, _)| ok)
    }

    /// Every tenant's limits, and the tenants whose entry does not parse (written by
    /// another version: an instance keeps what it applies for them).
    pub(crate) async fn table(
        &self,
    ) -> Result<(Vec<(TenantId, TenantLimits)>, Vec<String>), BackendError> {
        let raw = self.raw().await?;
        let mut out: Vec<(TenantId, TenantLimits)> = Vec::new();
        let mut unparsed = Vec::new();
        for (t, l) in raw.into_iter().filter(|(t, _)| !t.starts_with('!')) {
            match (TenantId::new(&t), TenantLimits::parse(&l)) {
                (Ok(t), Ok(l)) => out.push((t, l)),
                _ => unparsed.push(t),
            }
        }
        out.sort_by(|a, b| a.0.as_str().cmp(b.0.as_str()));
        Ok((out, unparsed))
    }

    /// Every field of the table.
    async fn raw(&self) -> Result<Vec<(String, String)>, BackendError> {
        match &self.backend {
            Backend::Memory(_) => Ok(self.memory_table().await?.into_iter().collect()),
            #[cfg(feature = "redis")]
            Backend::Redis(r) => {
                let table = &self.table;
                r.run("hgetall", |mut c| async move {
                    redis::cmd("HGETALL").arg(table).query_async(&mut c).await
                })
                .await
            }
        }
    }

    /// How many changes the store has seen (0: none).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use tenant_guard::backend::{Backend, MemoryStore};
    /// use tenant_guard::ratelimit::{AccessList, LimitStore, TenantLimits};
    /// use tenant_guard::{keys::Keys, tenant::TenantId};
    /// let store = LimitStore::new(Backend::Memory(MemoryStore::new(Default::default())), &Keys::default());
    /// # let _ = AccessList::default();
    /// assert_eq!(store.version().await?, 0); // no change yet
    /// store.set(&TenantId::new("acme")?, &TenantLimits::parse("plan=pro")?).await?;
    /// store.clear(&TenantId::new("acme")?).await?;
    /// assert_eq!(store.version().await?, 2); // watchers re-read the table when it moves
    /// # Ok(()) }
    /// ```
    pub async fn version(&self) -> Result<u64, BackendError> {
        let v = self.backend.get(&self.version).await?;
        Ok(v.and_then(|b| std::str::from_utf8(&b).ok()?.parse().ok())
            .unwrap_or(0))
    }

    async fn write(&self, tenant: &TenantId, limits: Option<String>) -> Result<bool, BackendError> {
        self.write_field(tenant.as_str(), limits).await
    }

    async fn write_field(&self, field: &str, value: Option<String>) -> Result<bool, BackendError> {
        let (tenant, limits) = (field, value);
        match &self.backend {
            Backend::Memory(_) => {
                let _one = MEMORY_TABLE.lock().await;
                let mut table = self.memory_table().await?;
                let had = match limits {
                    Some(l) => table.insert(tenant.to_string(), l).is_some(),
                    None => table.remove(tenant).is_some(),
                };
                let json = serde_json::to_vec(&table).unwrap_or_default();
                self.backend.set(&self.table, &json, None).await?;
                self.backend.incr(&self.version).await?;
                Ok(had)
            }
            #[cfg(feature = "redis")]
            Backend::Redis(r) => {
                let (table, version) = (&self.table, &self.version);
                let t = tenant;
                let setting = limits.is_some();
                // One transaction: every instance that sees the new version sees the change.
                let (changed, _): (u64, u64) = r
                    .run("limits", |mut c| async move {
                        let mut p = redis::pipe();
                        p.atomic();
                        match &limits {
                            Some(l) => p.cmd("HSET").arg(table).arg(t).arg(l),
                            None => p.cmd("HDEL").arg(table).arg(t),
                        };
                        p.cmd("INCR").arg(version);
                        p.query_async(&mut c).await
                    })
                    .await?;
                // HSET counts new fields, HDEL removed ones.
                Ok(if setting { changed == 0 } else { changed > 0 })
            }
        }
    }

    async fn memory_table(
        &self,
    ) -> Result<std::collections::BTreeMap<String, String>, BackendError> {
        match self.backend.get(&self.table).await? {
            None => Ok(Default::default()),
            // Unreadable is an error, never an empty table (which would clear every
            // tenant's limits on every instance).
            Some(b) => serde_json::from_slice(&b)
                .map_err(|_| BackendError::Unsupported("the runtime limits table is corrupt")),
        }
    }
}
