//! A lenient server-sent-events reader for upstream engines: bytes in, the `data` of each
//! event out. Lines end in `\n` or `\r\n` and may be split anywhere across reads (inside a
//! UTF-8 character too); `:` comments (`: ping`) and `event:`/`id:`/`retry:` fields are
//! skipped. An event or line larger than the cap is an error, so a broken or hostile engine
//! cannot make Lethe buffer without bound.

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("a server-sent event is larger than {0} bytes")]
pub struct TooLarge(pub usize);

pub struct Parser {
    max_event_bytes: usize,
    /// Bytes of the line not yet ended.
    line: Vec<u8>,
    /// `data` lines of the event not yet dispatched.
    data: Vec<u8>,
    has_data: bool,
}

impl Parser {
    pub fn new(max_event_bytes: usize) -> Self {
        Self { max_event_bytes, line: Vec::new(), data: Vec::new(), has_data: false }
    }

    /// Adds bytes read from the stream; returns the events they completed.
    pub fn push(&mut self, bytes: &[u8]) -> Result<Vec<String>, TooLarge> {
        let mut events = Vec::new();
        let mut rest = bytes;
        while let Some(at) = rest.iter().position(|b| *b == b'\n') {
            self.line.extend_from_slice(&rest[..at]);
            rest = &rest[at + 1..];
            let mut line = std::mem::take(&mut self.line);
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            if let Some(event) = self.on_line(&line)? {
                events.push(event);
            }
        }
        self.line.extend_from_slice(rest);
        if self.line.len() + self.data.len() > self.max_event_bytes {
            return Err(TooLarge(self.max_event_bytes));
        }
        Ok(events)
    }

    /// The stream ended: an event whose lines were complete but whose blank line never came
    /// (engines that close right after `data: [DONE]`) still counts; a half line does not.
    pub fn finish(&mut self) -> Option<String> {
        self.has_data.then(|| self.dispatch())
    }

    fn on_line(&mut self, line: &[u8]) -> Result<Option<String>, TooLarge> {
        if line.is_empty() {
            return Ok(self.has_data.then(|| self.dispatch()));
        }
        if line[0] == b':' {
            return Ok(None);
        }
        let (field, value) = match line.iter().position(|b| *b == b':') {
            Some(at) => {
                let value = &line[at + 1..];
                (&line[..at], value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (line, &[][..]),
        };
        if field == b"data" {
            if self.has_data {
                self.data.push(b'\n');
            }
            self.data.extend_from_slice(value);
            self.has_data = true;
            if self.data.len() > self.max_event_bytes {
                return Err(TooLarge(self.max_event_bytes));
            }
        }
        Ok(None)
    }

    fn dispatch(&mut self) -> String {
        self.has_data = false;
        String::from_utf8_lossy(&std::mem::take(&mut self.data)).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_split(input: &[u8], at: usize) -> Vec<String> {
        let mut p = Parser::new(1 << 10);
        let mut out = p.push(&input[..at]).unwrap();
        out.extend(p.push(&input[at..]).unwrap());
        out.extend(p.finish());
        out
    }

    #[test]
    fn events_come_out_whole_wherever_the_bytes_are_split() {
        let input = ": ping - 2026\r\n\r\ndata: {\"a\":\"é\"}\r\n\r\nevent: x\nid: 3\ndata: one\ndata: two\n\ndata: [DONE]\n";
        let expected = vec!["{\"a\":\"é\"}".to_string(), "one\ntwo".into(), "[DONE]".into()];
        for at in 0..=input.len() {
            assert_eq!(parse_split(input.as_bytes(), at), expected, "split at {at}");
        }
    }

    #[test]
    fn a_half_line_at_the_end_is_dropped_and_oversized_events_are_errors() {
        let mut p = Parser::new(1 << 10);
        assert!(p.push(b"data: {\"trunc").unwrap().is_empty());
        assert_eq!(p.finish(), None);
        let mut p = Parser::new(16);
        assert_eq!(p.push(b"data: 0123456789abcdefgh").unwrap_err(), TooLarge(16));
        let mut p = Parser::new(16);
        assert!(p.push(b"data: 0123456789\n").is_ok());
        assert_eq!(p.push(b"data: 0123456789\n").unwrap_err(), TooLarge(16));
    }
}
