//! [`Block`]: how long a rule keeps refusing an identity it denied (`RATE_LIMIT_BLOCK`).

use std::fmt;
use std::time::Duration;

use super::Quota;
use crate::parse::InvalidValue;

/// How long a rule keeps refusing an identity it denied (`RATE_LIMIT_BLOCK`): `first` after
/// a denial, doubled on each repeat (a denial within `max` of the previous block's end),
/// never beyond `max`.
///
/// ```
/// use std::time::Duration;
/// use tenant_guard::ratelimit::Block;
/// let b = Block::parse("1m..1h").unwrap();
/// assert_eq!(b.duration(1), Duration::from_secs(60));
/// assert_eq!(b.duration(3), Duration::from_secs(240));
/// assert_eq!(b.duration(40), Duration::from_secs(3600));
/// let fixed = Block::parse("5m").unwrap();
/// assert_eq!((fixed.duration(1), fixed.duration(9)), (Duration::from_secs(300), Duration::from_secs(300)));
/// assert!(Block::parse("1h..1m").is_err());
/// assert_eq!(Block::parse("1m..1h").unwrap().to_string(), "1m..1h");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Block {
    /// The first block's length.
    pub first: Duration,
    /// The longest block (equal to `first`: no doubling).
    pub max: Duration,
}

impl Block {
    /// Accepted form, for error messages.
    ///
    /// ```
    /// use tenant_guard::ratelimit::Block;
    /// // For messages: why the value was refused, then what is accepted.
    /// let err = Block::parse("forever").unwrap_err();
    /// let message = format!("RATE_LIMIT_BLOCK: {}; expected {}", err.reason(), Block::FORM);
    /// assert!(message.ends_with("(`1m..1h`)"));
    /// ```
    pub const FORM: &'static str =
        "a duration (`5m`), or FIRST..MAX to double on each repeat up to MAX (`1m..1h`)";

    /// Parses `5m` or `1m..1h` (each between 1 ms and 10 years).
    ///
    /// ```
    /// use std::time::Duration;
    /// use tenant_guard::ratelimit::Block;
    /// assert_eq!(Block::parse("5m").unwrap(), Block { first: Duration::from_secs(300), max: Duration::from_secs(300) });
    /// assert_eq!(Block::parse("1m..1h").unwrap().max, Duration::from_secs(3600));
    /// assert!(Block::parse("0s").is_err()); // at least 1 ms
    /// assert!(Block::parse("1h..1m").is_err()); // the longest is shorter than the first
    /// ```
    pub fn parse(s: &str) -> Result<Self, InvalidValue> {
        let dur = |v: &str| -> Result<Duration, InvalidValue> {
            let d = crate::parse::duration(v).map_err(|e| format!("`{}`: {e}", v.trim()))?;
            if d < Duration::from_millis(1) || d > Quota::MAX_WINDOW {
                return Err(format!("`{}` is not between 1ms and 10 years", v.trim()).into());
            }
            Ok(d)
        };
        let (first, max) = match s.split_once("..") {
            Some((a, b)) => (dur(a)?, dur(b)?),
            None => {
                let d = dur(s)?;
                (d, d)
            }
        };
        if max < first {
            return Err(format!(
                "`{}`: the longest block is shorter than the first",
                s.trim()
            )
            .into());
        }
        Ok(Self { first, max })
    }

    /// The length of the `strike`-th block in a row (1 for the first).
    ///
    /// ```
    /// use std::time::Duration;
    /// use tenant_guard::ratelimit::Block;
    /// let b = Block::parse("30s..10m").unwrap();
    /// let minutes: Vec<u64> = (1..=6).map(|n| b.duration(n).as_secs()).collect();
    /// assert_eq!(minutes, [30, 60, 120, 240, 480, 600]); // doubled, up to 10 minutes
    /// assert_eq!(b.duration(0), Duration::from_secs(30));
    /// ```
    pub fn duration(&self, strike: u32) -> Duration {
        let doubled = self
            .first
            .checked_mul(1u32 << strike.saturating_sub(1).min(31))
            .unwrap_or(self.max);
        doubled.min(self.max)
    }
}

impl fmt::Display for Block {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_duration(self.first))?;
        if self.max != self.first {
            write!(f, "..{}", humantime::format_duration(self.max))?;
        }
        Ok(())
    }
}

/// Parses `RULE=BLOCK, RULE=BLOCK` (`RATE_LIMIT_BLOCK`).
pub(crate) fn parse_blocks(s: &str) -> Result<Vec<(String, Block)>, String> {
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (name, b) = part
            .split_once('=')
            .ok_or_else(|| format!("`{part}` is not RULE=DURATION"))?;
        let b = Block::parse(b).map_err(|e| format!("`{part}`: {e}"))?;
        out.push((name.trim().to_string(), b));
    }
    Ok(out)
}
