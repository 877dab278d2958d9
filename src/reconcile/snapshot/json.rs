//! JSON rows from a byte stream fed in chunks: either one array of objects
//! (`[{...}, {...}]`) or one object per line (NDJSON). Only the object being read is
//! buffered; each is parsed by serde_json once its closing brace arrives.

use serde_json::{Map, Value};

use super::{SnapshotError, MAX_RECORD_BYTES};

/// Incremental splitter of top-level objects.
pub(super) struct JsonRows {
    /// None until the first non-space byte says array or lines.
    array: Option<bool>,
    /// Whether the array's closing bracket was seen.
    closed: bool,
    /// Nesting depth inside the current object (0: between objects).
    depth: usize,
    in_string: bool,
    escaped: bool,
    buf: Vec<u8>,
    /// Objects read so far (the row number of the next one is this + 1).
    rows: u64,
    /// In an array: a comma is due before the next object.
    need_comma: bool,
}

impl JsonRows {
    pub fn new() -> JsonRows {
        JsonRows {
            array: None,
            closed: false,
            depth: 0,
            in_string: false,
            escaped: false,
            buf: Vec::new(),
            rows: 0,
            need_comma: false,
        }
    }

    fn err(&self, message: impl std::fmt::Display) -> SnapshotError {
        SnapshotError::new("invalid_json", format!("row {}: {message}", self.rows + 1))
    }

    /// Reads every object completed by `input`; an empty `input` means the end.
    pub fn feed(
        &mut self,
        input: &[u8],
        out: &mut Vec<(u64, Map<String, Value>)>,
    ) -> Result<(), SnapshotError> {
        if input.is_empty() {
            return self.finish();
        }
        for &b in input {
            if self.depth > 0 {
                self.buf.push(b);
                if self.buf.len() > MAX_RECORD_BYTES {
                    return Err(SnapshotError::new(
                        "row_too_long",
                        format!(
                            "row {}: an object longer than {} KiB",
                            self.rows + 1,
                            MAX_RECORD_BYTES / 1024
                        ),
                    ));
                }
                if self.in_string {
                    match (self.escaped, b) {
                        (true, _) => self.escaped = false,
                        (false, b'\\') => self.escaped = true,
                        (false, b'"') => self.in_string = false,
                        _ => {}
                    }
                    continue;
                }
                match b {
                    b'"' => self.in_string = true,
                    b'{' | b'[' => self.depth += 1,
                    b'}' | b']' => {
                        self.depth -= 1;
                        if self.depth == 0 {
                            let row = serde_json::from_slice::<Map<String, Value>>(&self.buf)
                                .map_err(|e| self.err(e))?;
                            self.buf.clear();
                            self.rows += 1;
                            self.need_comma = self.array == Some(true);
                            out.push((self.rows, row));
                        }
                    }
                    _ => {}
                }
                continue;
            }
            if b.is_ascii_whitespace() {
                continue;
            }
            match (self.array, b) {
                (None, b'[') => self.array = Some(true),
                (None, b'{') | (Some(false), b'{') => {
                    self.array = Some(false);
                    self.open(b);
                }
                (Some(true), _) if self.closed => {
                    return Err(self.err("text after the closing bracket"))
                }
                (Some(true), b']') => self.closed = true,
                (Some(true), b',') if self.need_comma => self.need_comma = false,
                (Some(true), b'{') if !self.need_comma => self.open(b),
                (_, b) => {
                    return Err(self.err(format!(
                        "expected {}, found {:?}",
                        match self.array {
                            None => "a JSON array of objects or one object per line",
                            Some(true) if self.need_comma => "',' or ']'",
                            _ => "an object",
                        },
                        char::from(b)
                    )))
                }
            }
        }
        Ok(())
    }

    fn open(&mut self, b: u8) {
        self.depth = 1;
        self.buf.push(b);
    }

    fn finish(&self) -> Result<(), SnapshotError> {
        if self.depth > 0 {
            return Err(self.err("the file ends inside an object"));
        }
        if self.array == Some(true) && !self.closed {
            return Err(self.err("the array is not closed with ']'"));
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    type Parsed = Vec<(u64, Map<String, Value>)>;

    fn rows(text: &str, size: usize) -> Result<Parsed, SnapshotError> {
        let mut r = JsonRows::new();
        let mut out = Vec::new();
        for chunk in text.as_bytes().chunks(size) {
            r.feed(chunk, &mut out)?;
        }
        r.feed(&[], &mut out)?;
        Ok(out)
    }

    #[test]
    fn arrays_and_lines_in_any_chunking() {
        let array = r#" [ {"email": "a@x.com", "note": "{not [a brace\"}"}, {"email":"b@x.com","tags":[{"x":1}]} ] "#;
        let lines = "{\"email\": \"a@x.com\"}\n{\"email\": \"b@x.com\"}\n";
        for size in [1, 2, 5, 1000] {
            let a = rows(array, size).unwrap();
            assert_eq!(a.len(), 2, "chunk {size}");
            assert_eq!(a[0].1["note"], "{not [a brace\"}");
            assert_eq!(a[1].0, 2);
            let l = rows(lines, size).unwrap();
            assert_eq!(l.len(), 2);
            assert_eq!(l[1].1["email"], "b@x.com");
        }
        assert!(rows("[]", 1).unwrap().is_empty());
        assert!(rows("", 1).unwrap().is_empty());
    }

    #[test]
    fn broken_json_names_the_row() {
        for bad in [
            r#"[{"a": 1} {"b": 2}]"#,
            r#"[{"a": 1},"#,
            r#"[{"a": 1}] x"#,
            r#"{"a": 1"#,
            r#"[1, 2]"#,
            r#"{"a": tru}"#,
        ] {
            let e = rows(bad, 3).unwrap_err();
            assert_eq!(e.code, "invalid_json", "{bad}");
            assert!(e.message.starts_with("row "), "{bad}: {}", e.message);
        }
    }
}
