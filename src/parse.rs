//! Parsers for single environment values. Each returns the reason a value is wrong; the
//! caller adds the variable name and the accepted form.

use std::fmt;
use std::time::Duration;

/// A value that does not parse: why (the caller knows which variable or argument it was,
/// and the accepted form).
///
/// ```
/// use tenant_guard::ratelimit::Quota;
/// let err = Quota::parse("lots").unwrap_err();
/// assert_eq!(err.reason(), "`lots` has no `/`");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidValue {
    reason: String,
}

impl InvalidValue {
    /// Why the value was refused.
    ///
    /// ```
    /// use tenant_guard::keys::KeyPrefix;
    /// let err = KeyPrefix::new("bad{prefix}").unwrap_err();
    /// assert_eq!(err.reason(), err.to_string()); // the text a caller puts after the variable's name
    /// assert!(!err.reason().is_empty());
    /// ```
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

impl fmt::Display for InvalidValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.reason)
    }
}

impl std::error::Error for InvalidValue {}

impl From<String> for InvalidValue {
    fn from(reason: String) -> Self {
        Self { reason }
    }
}

impl From<&str> for InvalidValue {
    fn from(reason: &str) -> Self {
        Self {
            reason: reason.to_string(),
        }
    }
}

impl From<InvalidValue> for String {
    fn from(e: InvalidValue) -> Self {
        e.reason
    }
}

/// Accepted form of a duration, as shown in error messages and `.env.example`.
pub(crate) const DURATION_FORM: &str =
    "whole seconds (`900`) or a number with a unit (`500ms`, `30s`, `5m`, `24h`, `7d`)";

/// Accepted form of a boolean.
pub(crate) const BOOL_FORM: &str = "one of true/false, 1/0, yes/no, on/off";

/// Accepted form of a byte size.
pub(crate) const BYTES_FORM: &str =
    "a whole number of bytes (`67108864`) or a number with a unit (`512KiB`, `64MiB`, `1GiB`)";

/// Parses `900` (seconds) or `500ms` / `5m` / `24h` / `1h 30m`.
pub(crate) fn duration(raw: &str) -> Result<Duration, String> {
    let s = raw.trim();
    if s.is_empty() {
        return Err("empty value".into());
    }
    if s.bytes().all(|b| b.is_ascii_digit()) {
        let secs: u64 = s.parse().map_err(|_| "number too large".to_string())?;
        return Ok(Duration::from_secs(secs));
    }
    if s.starts_with('-') {
        return Err("negative durations are not allowed".into());
    }
    humantime::parse_duration(s).map_err(|_| "not a duration".to_string())
}

/// Like [`duration`], but zero is rejected.
pub(crate) fn nonzero_duration(raw: &str) -> Result<Duration, String> {
    let d = duration(raw)?;
    if d.is_zero() {
        return Err("must be greater than zero".into());
    }
    Ok(d)
}

pub(crate) fn boolean(raw: &str) -> Result<bool, String> {
    match raw.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err("not a boolean".into()),
    }
}

/// One of a fixed set of names (a string enum's `FromStr`): case-insensitive, surrounding
/// whitespace ignored.
pub(crate) fn choice<T: std::str::FromStr>(raw: &str) -> Result<T, String> {
    raw.trim()
        .parse()
        .map_err(|_| format!("unknown value `{}`", raw.trim()))
}

pub(crate) fn integer<T: std::str::FromStr>(raw: &str) -> Result<T, String> {
    raw.trim()
        .parse::<T>()
        .map_err(|_| "not a whole number in range".to_string())
}

pub(crate) fn port(raw: &str) -> Result<u16, String> {
    match raw.trim().parse::<u32>() {
        Ok(p) if (1..=65535).contains(&p) => Ok(p as u16),
        Ok(_) => Err("out of range".into()),
        Err(_) => Err("not a number".into()),
    }
}

pub(crate) fn bytes(raw: &str) -> Result<u64, String> {
    let s = raw.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    if num.is_empty() {
        return Err("does not start with a number".into());
    }
    let n: u64 = num.parse().map_err(|_| "number too large".to_string())?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        other => return Err(format!("unknown unit `{other}`")),
    };
    n.checked_mul(mult)
        .ok_or_else(|| "number too large".to_string())
}

/// Formats a duration the way the accepted form writes it (`900s`, `5m`, `24h`, `250ms`).
pub(crate) fn fmt_duration(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(duration("900"), Ok(Duration::from_secs(900)));
        assert_eq!(duration(" 5m "), Ok(Duration::from_secs(300)));
        assert_eq!(duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(duration("24h"), Ok(Duration::from_secs(86_400)));
        assert_eq!(duration("1h 30m"), Ok(Duration::from_secs(5_400)));
        assert!(duration("abc").is_err());
        assert!(duration("-5").is_err());
        assert!(duration("").is_err());
        assert!(nonzero_duration("0").is_err());
        assert!(nonzero_duration("0s").is_err());
    }

    #[test]
    fn bools_ports_bytes() {
        assert_eq!(boolean("Yes"), Ok(true));
        assert_eq!(boolean("off"), Ok(false));
        assert!(boolean("maybe").is_err());
        assert_eq!(port("6379"), Ok(6379));
        assert!(port("99999").is_err());
        assert!(port("0").is_err());
        assert!(port("x").is_err());
        assert_eq!(bytes("64MiB"), Ok(64 << 20));
        assert_eq!(bytes("1024"), Ok(1024));
        assert_eq!(bytes("2k"), Ok(2048));
        assert!(bytes("MiB").is_err());
        assert!(bytes("5 parsecs").is_err());
    }
}
