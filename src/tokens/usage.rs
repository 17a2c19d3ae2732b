//! What a request is expected to cost and what its response reports: the default
//! estimate from the request body, and the `"total_tokens"` a response body carries (a JSON
//! body's `usage`, or a server-sent event's), found as the body streams by.

/// Tokens a request is expected to use: its body's bytes / 4 (rounded up: the prompt, and
/// whatever else the body holds, at the usual 4 bytes per token) plus the completion it
/// asks for — the JSON body's `max_tokens` (or `max_completion_tokens`), else
/// `default_max`. A body that is not such JSON (or names a value that is not a whole
/// number) gets `default_max`.
///
/// ```
/// use tenant_guard::tokens::estimate;
/// assert_eq!(estimate(br#"{"prompt":"hi","max_tokens":100}"#, 256), 8 + 100); // 32 bytes
/// assert_eq!(estimate(b"not json", 256), 2 + 256);
/// assert_eq!(estimate(br#"{"max_tokens":1e99}"#, 256), 5 + 256);
/// ```
pub fn estimate(body: &[u8], default_max: u32) -> u32 {
    #[derive(serde::Deserialize)]
    struct Ask {
        max_tokens: Option<u64>,
        max_completion_tokens: Option<u64>,
    }
    let prompt = u32::try_from(body.len().div_ceil(4)).unwrap_or(u32::MAX);
    let asked = serde_json::from_slice::<Ask>(body)
        .ok()
        .and_then(|a| a.max_tokens.or(a.max_completion_tokens))
        .map_or(default_max, |n| u32::try_from(n).unwrap_or(u32::MAX));
    prompt.saturating_add(asked)
}

const NEEDLE: &[u8] = b"\"total_tokens\"";

#[derive(Debug, Clone, Copy)]
enum State {
    /// Looking for a `"`.
    Idle,
    /// Matched this many bytes of the key.
    Key(usize),
    /// After the key, before its `:`.
    Colon,
    /// After the `:`, the digits read so far.
    Value(Option<u64>),
}

/// Finds the largest value of a `"total_tokens"` key in a body fed to it chunk by chunk
/// (a key or number split across chunks included): a JSON body's `usage`, or the events of
/// a stream that report usage (the last, cumulative one is the largest). In JSON a string
/// holding that text has its quotes escaped, so only a real key matches: a completion that
/// *says* `"total_tokens": 1` reports nothing; and were such text ever read (an event
/// stream of raw text), the largest value still wins, so it cannot lower the real usage.
///
/// ```
/// use tenant_guard::tokens::UsageScan;
/// let mut s = UsageScan::default();
/// s.feed(br#"data: {"text":"a \"total_tokens\": 1"}"#);
/// s.feed(b"\n\ndata: {\"usage\":{\"total_to");
/// s.feed(b"kens\": 4");
/// s.feed(b"2}}\n\n");
/// assert_eq!(s.finish(), Some(42));
/// ```
#[derive(Debug, Clone)]
pub struct UsageScan {
    state: State,
    last: Option<u64>,
}

impl Default for UsageScan {
    fn default() -> Self {
        Self {
            state: State::Idle,
            last: None,
        }
    }
}

impl UsageScan {
    /// Reads one more chunk of the body.
    pub fn feed(&mut self, chunk: &[u8]) {
        let mut i = 0;
        while i < chunk.len() {
            let b = chunk[i];
            self.state = match self.state {
                State::Idle => match memchr::memchr(b'"', &chunk[i..]) {
                    Some(at) => {
                        i += at + 1;
                        self.state = State::Key(1);
                        continue;
                    }
                    None => return,
                },
                State::Key(n) if b == NEEDLE[n] => {
                    if n + 1 == NEEDLE.len() {
                        State::Colon
                    } else {
                        State::Key(n + 1)
                    }
                }
                State::Key(_) => {
                    // A quote may start the key again; anything else starts over.
                    self.state = State::Idle;
                    continue;
                }
                State::Colon if b.is_ascii_whitespace() => State::Colon,
                State::Colon if b == b':' => State::Value(None),
                State::Colon => {
                    self.state = State::Idle;
                    continue;
                }
                State::Value(None) if b.is_ascii_whitespace() => State::Value(None),
                State::Value(acc) if b.is_ascii_digit() => State::Value(Some(
                    acc.unwrap_or(0)
                        .saturating_mul(10)
                        .saturating_add(u64::from(b - b'0')),
                )),
                State::Value(acc) => {
                    if acc.is_some() {
                        self.last = self.last.max(acc);
                    }
                    self.state = State::Idle;
                    continue;
                }
            };
            i += 1;
        }
    }

    /// The largest value found so far (a number still being read at the end counts).
    pub fn finish(&self) -> Option<u64> {
        match self.state {
            State::Value(Some(v)) => self.last.max(Some(v)),
            _ => self.last,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(chunks: &[&[u8]]) -> Option<u64> {
        let mut s = UsageScan::default();
        for c in chunks {
            s.feed(c);
        }
        s.finish()
    }

    #[test]
    fn finds_the_last_key_wherever_chunks_split_it() {
        let body =
            br#"{"id":"x","usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7}}"#;
        for cut in 0..body.len() {
            assert_eq!(scan(&[&body[..cut], &body[cut..]]), Some(7), "cut at {cut}");
        }
        let sse = b"data: {\"usage\":{\"total_tokens\":5}}\n\ndata: {\"usage\":{\"total_tokens\" :  12}}\n\ndata: [DONE]\n\n";
        assert_eq!(scan(&[sse]), Some(12));
        // Cumulative usage events: the largest is the total; a smaller one after it (text
        // that found its way into a raw event) cannot lower it.
        let late = b"data: {\"usage\":{\"total_tokens\":40}}\n\ndata: \"total_tokens\": 1\n\n";
        assert_eq!(scan(&[late]), Some(40));
    }

    #[test]
    fn text_that_only_looks_like_the_key_reports_nothing() {
        assert_eq!(scan(&[br#"{"text":"\"total_tokens\": 1"}"#]), None);
        assert_eq!(scan(&[br#"{"total_tokens":"7"}"#]), None);
        assert_eq!(scan(&[br#"{"total_tokens_x":7}"#]), None);
        assert_eq!(scan(&[br#"{""total_tokens":7}"#]), Some(7));
        assert_eq!(
            scan(&[b"\"total_tokens\": 99999999999999999999999"]),
            Some(u64::MAX)
        );
    }

    #[test]
    fn estimates_never_overflow() {
        assert_eq!(estimate(br#"{"max_tokens":99999999999}"#, 1), u32::MAX);
        assert_eq!(estimate(br#"{"max_tokens":-5}"#, 7), 5 + 7);
        assert_eq!(estimate(b"", 0), 0);
        let deep = "[".repeat(100_000);
        assert_eq!(estimate(deep.as_bytes(), 3), 25_000 + 3);
    }
}
