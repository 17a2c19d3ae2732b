//! What a response reports: the `usage.total_tokens` of a JSON body, or of a server-sent
//! event, found as the body streams by (nothing buffered).

/// A key the scanner cares about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Key {
    Usage,
    TotalTokens,
    Other,
}

/// The longest string kept while reading one (`"total_tokens"` is 12 bytes).
const KEEP: usize = 16;

/// Finds the `total_tokens` of a `usage` object in a body fed to it chunk by chunk (keys
/// and numbers split across chunks included), reading it as JSON: strings (with their
/// escapes), nesting, keys and values.
///
/// Only a `total_tokens` key *of an object that is the value of a `usage` key* counts, and
/// of those the shallowest (ties: the last), because text a client controls sits deeper or
/// inside strings: a completion that *says* `"total_tokens": 1` has its quotes escaped, and
/// a request object an upstream echoes back (`{"request": {"usage": ...}}`) nests its
/// `usage` one level below the response's own. In event streams each event is read on its
/// own (nesting starts again after every blank line), so raw text in one event cannot
/// shift how another is read. A number cut off by the end of the body does not count.
///
/// ```
/// use tenant_guard::tokens::UsageScan;
/// let mut s = UsageScan::for_events();
/// s.feed(br#"data: {"text":"a \"total_tokens\": 1","echo":{"usage":{"total_tokens":0}}}"#);
/// s.feed(b"\n\ndata: {\"usage\":{\"total_to");
/// s.feed(b"kens\": 4");
/// s.feed(b"2}}\n\n");
/// assert_eq!(s.finish(), Some(42));
/// ```
#[derive(Debug, Clone)]
pub struct UsageScan {
    /// Server-sent events: a blank line ends an event and the nesting with it.
    events: bool,
    /// Open objects and arrays.
    depth: u32,
    /// Bit `d`: the container at depth `d + 1` is an object that is a `usage` value.
    usage_objects: u64,
    in_string: bool,
    escaped: bool,
    /// The string being read (its first `KEEP` bytes) and whether it was longer.
    text: [u8; KEEP],
    text_len: usize,
    /// A string just ended: it is a key if a `:` comes next.
    pending: Option<Key>,
    /// The key whose value comes next.
    key: Option<Key>,
    /// Digits of a `total_tokens` value being read (`None`: not a whole number).
    number: Option<Option<u64>>,
    /// Previous byte outside strings was a line feed (a blank line ends an event).
    newline: bool,
    /// Best so far: (depth, value).
    best: Option<(u32, u64)>,
}

impl Default for UsageScan {
    fn default() -> Self {
        Self {
            events: false,
            depth: 0,
            usage_objects: 0,
            in_string: false,
            escaped: false,
            text: [0; KEEP],
            text_len: 0,
            pending: None,
            key: None,
            number: None,
            newline: false,
            best: None,
        }
    }
}

impl UsageScan {
    /// A scanner of one JSON body (`application/json`).
    ///
    /// ```
    /// use tenant_guard::tokens::UsageScan;
    /// let mut s = UsageScan::for_json();
    /// s.feed(br#"{"id":"c-1","choices":[{"text":"hi"}],"usage":{"prompt_tokens":5,"total_tokens":17}}"#);
    /// assert_eq!(s.finish(), Some(17));
    /// ```
    pub fn for_json() -> Self {
        Self::default()
    }

    /// A scanner of server-sent events (`text/event-stream`), each event read on its own.
    ///
    /// ```
    /// use tenant_guard::tokens::UsageScan;
    /// let mut s = UsageScan::for_events();
    /// s.feed(b"data: {\"delta\":\"Hel\"}\n\ndata: {\"delta\":\"lo\"}\n\n");
    /// s.feed(b"data: {\"usage\":{\"total_tokens\":9}}\n\ndata: [DONE]\n\n");
    /// assert_eq!(s.finish(), Some(9));
    /// ```
    pub fn for_events() -> Self {
        Self {
            events: true,
            ..Self::default()
        }
    }

    fn in_usage_object(&self) -> bool {
        self.depth >= 1 && self.depth <= 64 && self.usage_objects & (1 << (self.depth - 1)) != 0
    }

    /// Ends a number being read: a whole one inside a `usage` object is a candidate.
    fn end_number(&mut self) {
        if let Some(Some(v)) = self.number.take() {
            let shallower = self.best.is_none_or(|(d, _)| self.depth <= d);
            if shallower {
                self.best = Some((self.depth, v));
            }
        }
    }

    fn reset_event(&mut self) {
        self.depth = 0;
        self.usage_objects = 0;
        self.in_string = false;
        self.escaped = false;
        self.pending = None;
        self.key = None;
        self.number = None;
    }

    /// Reads one more chunk of the body.
    ///
    /// ```
    /// use tenant_guard::tokens::UsageScan;
    /// // Chunks may split anywhere: inside a key, a number or an escape.
    /// let body = br#"{"note":"say \"usage\"","usage":{"total_tokens":1234}}"#;
    /// let mut s = UsageScan::for_json();
    /// for chunk in body.chunks(3) {
    ///     s.feed(chunk);
    /// }
    /// assert_eq!(s.finish(), Some(1234));
    /// ```
    pub fn feed(&mut self, chunk: &[u8]) {
        for &b in chunk {
            if self.in_string {
                if self.escaped {
                    self.escaped = false;
                } else if b == b'\\' {
                    self.escaped = true;
                } else if b == b'"' {
                    self.in_string = false;
                    let s = &self.text[..self.text_len.min(KEEP)];
                    self.pending = Some(match (self.text_len, s) {
                        (5, b"usage") => Key::Usage,
                        (12, b"total_tokens") => Key::TotalTokens,
                        _ => Key::Other,
                    });
                    continue;
                }
                // An escape inside a key makes it no key of ours (`"usag\u0065"` aside:
                // upstreams write plain keys).
                if self.text_len < KEEP {
                    self.text[self.text_len] = b;
                }
                self.text_len = self.text_len.saturating_add(1);
                continue;
            }
            if self.number.is_some() {
                if b.is_ascii_digit() {
                    if let Some(Some(v)) = self.number.as_mut() {
                        *v = v.saturating_mul(10).saturating_add(u64::from(b - b'0'));
                    }
                    continue;
                }
                if matches!(b, b'.' | b'e' | b'E' | b'-' | b'+') {
                    // A fraction or exponent: not a whole number of tokens.
                    self.number = Some(None);
                    continue;
                }
                self.end_number();
            }
            if self.events && (b == b'\n' || b == b'\r') {
                if b == b'\n' && self.newline {
                    self.reset_event();
                }
                self.newline = b == b'\n' || self.newline;
                continue;
            }
            if !b.is_ascii_whitespace() {
                self.newline = false;
            }
            match b {
                b'"' => {
                    self.in_string = true;
                    self.text_len = 0;
                    self.pending = None;
                }
                b':' => {
                    self.key = self.pending.take();
                }
                b'{' | b'[' => {
                    self.depth = self.depth.saturating_add(1);
                    if (1..=64).contains(&self.depth) {
                        let bit = 1u64 << (self.depth - 1);
                        if b == b'{' && self.key == Some(Key::Usage) {
                            self.usage_objects |= bit;
                        } else {
                            self.usage_objects &= !bit;
                        }
                    }
                    self.key = None;
                    self.pending = None;
                }
                b'}' | b']' => {
                    self.depth = self.depth.saturating_sub(1);
                    self.key = None;
                    self.pending = None;
                }
                b'0'..=b'9' if self.key == Some(Key::TotalTokens) && self.in_usage_object() => {
                    self.number = Some(Some(u64::from(b - b'0')));
                    self.key = None;
                }
                _ if b.is_ascii_whitespace() => {}
                _ => {
                    self.key = None;
                    self.pending = None;
                }
            }
        }
    }

    /// The usage found: the shallowest `usage.total_tokens` (ties: the last). A number
    /// still being read when the body ended does not count (it may have been cut).
    ///
    /// ```
    /// use tenant_guard::tokens::UsageScan;
    /// let mut s = UsageScan::for_json();
    /// s.feed(br#"{"choices":[]}"#);
    /// assert_eq!(s.finish(), None); // no usage reported: the layer settles with its estimate
    /// let mut cut = UsageScan::for_json();
    /// cut.feed(br#"{"usage":{"total_tokens":12"#); // the body ended mid-number
    /// assert_eq!(cut.finish(), None);
    /// ```
    pub fn finish(&self) -> Option<u64> {
        self.best.map(|(_, v)| v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(chunks: &[&[u8]]) -> Option<u64> {
        let mut s = UsageScan::for_json();
        for c in chunks {
            s.feed(c);
        }
        s.finish()
    }

    fn events(chunks: &[&[u8]]) -> Option<u64> {
        let mut s = UsageScan::for_events();
        for c in chunks {
            s.feed(c);
        }
        s.finish()
    }

    #[test]
    fn finds_usage_wherever_chunks_split_it() {
        let body =
            br#"{"id":"x","usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7}}"#;
        for cut in 0..body.len() {
            assert_eq!(json(&[&body[..cut], &body[cut..]]), Some(7), "cut at {cut}");
        }
        let sse = b"data: {\"usage\":{\"total_tokens\":5}}\n\ndata: {\"usage\" : { \"total_tokens\" :  12}}\n\ndata: [DONE]\n\n";
        assert_eq!(events(&[sse]), Some(12), "the last of the same depth");
        // The Responses API reports it one level down.
        let r = br#"{"type":"response.completed","response":{"usage":{"total_tokens":9}}}"#;
        assert_eq!(json(&[r]), Some(9));
    }

    #[test]
    fn text_and_echoes_a_client_controls_report_nothing() {
        // In a string, escaped.
        assert_eq!(
            json(&[br#"{"text":"\"usage\":{\"total_tokens\": 1}"}"#]),
            None
        );
        // Not in a usage object.
        assert_eq!(json(&[br#"{"total_tokens":7}"#]), None);
        assert_eq!(json(&[br#"{"tools":[{"total_tokens":0}]}"#]), None);
        // Not a whole number.
        assert_eq!(json(&[br#"{"usage":{"total_tokens":"7"}}"#]), None);
        assert_eq!(json(&[br#"{"usage":{"total_tokens":7.5}}"#]), None);
        // An echoed request nests its usage deeper than the response's own, before or after.
        let echo_first = br#"{"request":{"usage":{"total_tokens":0}},"usage":{"total_tokens":50}}"#;
        let echo_last = br#"{"usage":{"total_tokens":50},"request":{"usage":{"total_tokens":0}}}"#;
        assert_eq!(json(&[echo_first]), Some(50));
        assert_eq!(json(&[echo_last]), Some(50));
        // Raw text in an event cannot shift the nesting of the next one.
        let raw = b"data: {{{{ \"usage\" {\n\ndata: {\"usage\":{\"total_tokens\":40}}\n\n";
        assert_eq!(events(&[raw]), Some(40));
        // A number cut by the end of the body does not count.
        assert_eq!(json(&[br#"{"usage":{"total_tokens":12"#]), None);
        assert_eq!(
            json(&[br#"{"usage":{"total_tokens":99999999999999999999999}}"#]),
            Some(u64::MAX)
        );
    }
}
