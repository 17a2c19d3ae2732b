//! Lua scripts: [`LuaScript`] and how the store runs them (EVALSHA, loaded again on
//! NOSCRIPT, on every primary of a cluster).

use redis::FromRedisValue;

use crate::backend::{BackendError, RedisStore};
use crate::keys::RedisKey;

/// A Lua script shipped in `lua/`, run by EVALSHA with reload on NOSCRIPT.
///
/// ```
/// use tenant_guard::backend::LuaScript;
/// let script = LuaScript::new("echo", "return ARGV[1]");
/// assert_eq!(script.name(), "echo");
/// assert_eq!(script.sha1().len(), 40);
/// ```
#[derive(Debug, Clone)]
pub struct LuaScript {
    name: &'static str,
    script: redis::Script,
}

impl LuaScript {
    /// A script with a name (for metrics and errors) and its source.
    ///
    /// ```
    /// use tenant_guard::backend::LuaScript;
    ///
    /// // The same source always has the same SHA1: EVALSHA needs no upload once loaded.
    /// let a = LuaScript::new("echo", "return ARGV[1]");
    /// let b = LuaScript::new("echo-again", "return ARGV[1]");
    /// assert_eq!(a.sha1(), b.sha1());
    /// ```
    pub fn new(name: &'static str, source: &str) -> Self {
        Self {
            name,
            script: redis::Script::new(source),
        }
    }

    /// The script's name.
    ///
    /// ```
    /// use tenant_guard::backend::LuaScript;
    /// let script = LuaScript::new("compare_and_delete", "return 0");
    /// assert_eq!(script.name(), "compare_and_delete");
    /// ```
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The SHA1 Redis knows the script by.
    ///
    /// ```
    /// use tenant_guard::backend::LuaScript;
    /// let script = LuaScript::new("one", "return 1");
    /// // The digest `SCRIPT LOAD "return 1"` answers.
    /// assert_eq!(script.sha1(), "e0e1f9fabfc9d4800c877a703b823ac0578ff8db");
    /// ```
    pub fn sha1(&self) -> &str {
        self.script.get_hash()
    }

    pub(crate) fn script(&self) -> &redis::Script {
        &self.script
    }
}

/// `lua/compare_and_delete.lua`: deletes a key only if it holds the expected value.
pub(crate) fn compare_and_delete_script() -> &'static LuaScript {
    static SCRIPT: std::sync::OnceLock<LuaScript> = std::sync::OnceLock::new();
    SCRIPT.get_or_init(|| {
        LuaScript::new(
            "compare_and_delete",
            include_str!("../../../lua/compare_and_delete.lua"),
        )
    })
}

impl RedisStore {
    /// Runs a Lua script by EVALSHA (loading it on NOSCRIPT). All keys must share the
    /// tenant's hash tag, which every key from [`Keys`](crate::keys::Keys) does.
    ///
    /// ```no_run
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # use tenant_guard::{backend::{Health, RedisStore}, config::Config};
    /// # let config = Config::from_vars([("REDIS_URL", std::env::var("REDIS_URL")?)])?;
    /// # let store = RedisStore::new(&config.redis, Health::new(config.breaker, Default::default()))?;
    /// use tenant_guard::{backend::LuaScript, keys::Keys, tenant::TenantId};
    /// // `store`: a `RedisStore` on a live server (needs one: not run here).
    /// let script = LuaScript::new("set_and_len", "redis.call('SET', KEYS[1], ARGV[1]) return redis.call('STRLEN', KEYS[1])");
    /// let key = Keys::default().query(&TenantId::new("acme")?, "h");
    /// let len: i64 = store.eval(&script, &[&key], &[b"rows"]).await?;
    /// assert_eq!(len, 4);
    /// # Ok(()) }
    /// ```
    pub async fn eval<T: FromRedisValue>(
        &self,
        script: &LuaScript,
        keys: &[&RedisKey],
        args: &[&[u8]],
    ) -> Result<T, BackendError> {
        // The command is written once, each key and value copied straight into it.
        let mut cmd = redis::cmd("EVALSHA");
        cmd.arg(script.sha1()).arg(keys.len());
        for k in keys {
            cmd.arg(*k);
        }
        for a in args {
            cmd.arg(*a);
        }
        self.run("eval", |mut c| async move {
            match cmd.query_async(&mut c).await {
                Err(e)
                    if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) =>
                {
                    // SCRIPT LOAD goes to every primary of a cluster.
                    script.script().load_async(&mut c).await?;
                    cmd.query_async(&mut c).await
                }
                other => other,
            }
        })
        .await
    }
}
