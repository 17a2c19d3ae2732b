//! What a request is expected to cost: its body's bytes / 4 plus the completion it asks for,
//! read strictly (a limit the upstream might read differently is refused).

use std::fmt;

use serde::de::{Deserializer, IgnoredAny, MapAccess, Visitor};

/// Why a request's completion limit could not be read (the layer answers 400).
///
/// ```
/// use tenant_guard::tokens::{estimate, EstimateError};
/// assert_eq!(estimate(br#"{"max_tokens":10,"max_tokens":20}"#, 256), Err(EstimateError::Duplicate("max_tokens")));
/// let err = estimate(br#"{"max_tokens":"5000"}"#, 256).unwrap_err();
/// assert_eq!(err, EstimateError::NotAWholeNumber("max_tokens"));
/// assert_eq!(err.to_string(), "`max_tokens` is not a whole number of tokens");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EstimateError {
    /// The field appears more than once (upstreams disagree on which one counts).
    #[error("`{0}` appears more than once in the request body")]
    Duplicate(&'static str),
    /// The field is not a whole number of tokens (a string, a fraction, a negative number).
    #[error("`{0}` is not a whole number of tokens")]
    NotAWholeNumber(&'static str),
}

/// Tokens a request is expected to use: its body's bytes / 4 (rounded up: the prompt, and
/// whatever else the body holds, at the usual 4 bytes per token) plus the completion it
/// asks for — the larger of a JSON object body's `max_tokens` and `max_completion_tokens`,
/// else `default_max`. A body that is not a JSON object gets `default_max`. Read strictly,
/// because the upstream reads the same body: a limit given twice, or as anything but a
/// whole number (`"5000"`, `5e3`), is an error rather than a guess.
///
/// ```
/// use tenant_guard::tokens::{estimate, EstimateError};
/// assert_eq!(estimate(br#"{"prompt":"hi","max_tokens":100}"#, 256), Ok(8 + 100)); // 32 bytes
/// assert_eq!(estimate(b"not json", 256), Ok(2 + 256));
/// assert_eq!(estimate(br#"{"max_tokens":1,"max_completion_tokens":500}"#, 256), Ok(11 + 500));
/// assert_eq!(estimate(br#"{"max_tokens":"5000"}"#, 256), Err(EstimateError::NotAWholeNumber("max_tokens")));
/// assert_eq!(estimate(br#"{"max_tokens":1,"max_tokens":9}"#, 256), Err(EstimateError::Duplicate("max_tokens")));
/// ```
pub fn estimate(body: &[u8], default_max: u32) -> Result<u32, EstimateError> {
    let prompt = u32::try_from(body.len().div_ceil(4)).unwrap_or(u32::MAX);
    let asked = match serde_json::from_slice::<Ask>(body) {
        Ok(Ask {
            problem: Some(p), ..
        }) => return Err(p),
        Ok(Ask { max: Some(n), .. }) => u32::try_from(n).unwrap_or(u32::MAX),
        // No limit named, or not a JSON object.
        Ok(_) | Err(_) => default_max,
    };
    Ok(prompt.saturating_add(asked))
}

/// The completion limits of a JSON object, read without keeping anything else.
#[derive(Default)]
struct Ask {
    max: Option<u64>,
    seen: [bool; 2],
    problem: Option<EstimateError>,
}

const FIELDS: [&str; 2] = ["max_tokens", "max_completion_tokens"];

impl<'de> serde::Deserialize<'de> for Ask {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(AskVisitor)
    }
}

struct AskVisitor;

impl<'de> Visitor<'de> for AskVisitor {
    type Value = Ask;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Ask, A::Error> {
        let mut ask = Ask::default();
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            let Some(f) = FIELDS.iter().position(|f| *f == key) else {
                map.next_value::<IgnoredAny>()?;
                continue;
            };
            let value: serde_json::Value = map.next_value()?;
            if std::mem::replace(&mut ask.seen[f], true) {
                ask.problem
                    .get_or_insert(EstimateError::Duplicate(FIELDS[f]));
            }
            match value {
                serde_json::Value::Null => {}
                serde_json::Value::Number(n) if n.as_u64().is_some() => {
                    ask.max = ask.max.max(n.as_u64());
                }
                _ => {
                    ask.problem
                        .get_or_insert(EstimateError::NotAWholeNumber(FIELDS[f]));
                }
            }
        }
        Ok(ask)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_read_strictly_and_never_overflow() {
        assert_eq!(estimate(br#"{"max_tokens":99999999999}"#, 1), Ok(u32::MAX));
        assert_eq!(
            estimate(br#"{"max_tokens":-5}"#, 7),
            Err(EstimateError::NotAWholeNumber("max_tokens"))
        );
        assert_eq!(
            estimate(br#"{"max_completion_tokens":1.5}"#, 7),
            Err(EstimateError::NotAWholeNumber("max_completion_tokens"))
        );
        assert_eq!(estimate(br#"{"max_tokens":null}"#, 7), Ok(5 + 7));
        assert_eq!(estimate(b"", 0), Ok(0));
        assert_eq!(estimate(b"[1,2]", 3), Ok(2 + 3));
        // Nested fields are the body's own business.
        assert_eq!(estimate(br#"{"x":{"max_tokens":"a"}}"#, 3), Ok(6 + 3));
        let deep = "[".repeat(100_000);
        assert_eq!(estimate(deep.as_bytes(), 3), Ok(25_000 + 3));
    }
}
