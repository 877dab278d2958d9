//! CSV records from a byte stream fed in chunks of any size (RFC 4180: quoted fields,
//! doubled quotes, CRLF or LF, newlines inside quotes; a UTF-8 byte order mark is
//! skipped). csv-core does the state machine; this keeps one record's bytes at a time.
//!
//! Records are numbered as a spreadsheet numbers its rows (the header is row 1, a blank
//! line is a row, a quoted cell with line breaks is one row), which is where a person
//! looks for the row an error names.

use csv_core::{ReadRecordResult, Reader};

use super::{SnapshotError, MAX_COLUMNS, MAX_RECORD_BYTES};

/// One CSV record: its fields and its row number (1-based).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Record {
    pub row: u64,
    pub fields: Vec<String>,
}

/// Incremental CSV reader.
pub(super) struct CsvRecords {
    reader: Reader,
    /// Bytes of the record being read (fields back to back).
    out: Vec<u8>,
    /// Used length of `out`.
    nout: usize,
    /// End offsets of the fields read so far.
    ends: Vec<usize>,
    nends: usize,
    /// Records read so far, blank ones included.
    rows: u64,
    /// The first bytes of the file until there are enough to see a byte order mark
    /// (csv-core only strips one that arrives in a single chunk); None once checked.
    head: Option<Vec<u8>>,
}

impl CsvRecords {
    pub fn new() -> CsvRecords {
        CsvRecords {
            reader: Reader::new(),
            out: vec![0; 4096],
            nout: 0,
            ends: vec![0; 32],
            nends: 0,
            rows: 0,
            head: Some(Vec::new()),
        }
    }

    /// Reads every record completed by `input` (and, when `input` is empty, the last
    /// one: an empty chunk means the end of the file).
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<Record>) -> Result<(), SnapshotError> {
        let Some(mut head) = self.head.take() else {
            return self.read(input, out);
        };
        head.extend_from_slice(input);
        if head.len() < 3 && !input.is_empty() {
            self.head = Some(head);
            return Ok(());
        }
        let body = head.strip_prefix(b"\xef\xbb\xbf").unwrap_or(&head);
        if !body.is_empty() {
            self.read(body, out)?;
        }
        if input.is_empty() {
            self.read(&[], out)?;
        }
        Ok(())
    }

    fn read(&mut self, mut input: &[u8], out: &mut Vec<Record>) -> Result<(), SnapshotError> {
        let at_end = input.is_empty();
        loop {
            let (res, nin, nout, nend) = self.reader.read_record(
                input,
                &mut self.out[self.nout..],
                &mut self.ends[self.nends..],
            );
            input = &input[nin..];
            self.nout += nout;
            self.nends += nend;
            match res {
                ReadRecordResult::InputEmpty => {
                    if at_end {
                        // csv-core wants one more empty call to flush the last record.
                        continue;
                    }
                    return Ok(());
                }
                ReadRecordResult::OutputFull => {
                    if self.out.len() >= MAX_RECORD_BYTES {
                        return Err(self.too_long());
                    }
                    let len = (self.out.len() * 2).min(MAX_RECORD_BYTES);
                    self.out.resize(len, 0);
                }
                ReadRecordResult::OutputEndsFull => {
                    if self.ends.len() >= MAX_COLUMNS {
                        return Err(SnapshotError::new(
                            "row_too_long",
                            format!("row {}: more than {MAX_COLUMNS} columns", self.rows + 1),
                        ));
                    }
                    let len = (self.ends.len() * 2).min(MAX_COLUMNS);
                    self.ends.resize(len, 0);
                }
                ReadRecordResult::Record => {
                    let record = self.take()?;
                    // A blank line (one empty field) is no record.
                    if !(record.fields.len() == 1 && record.fields[0].is_empty()) {
                        out.push(record);
                    }
                }
                ReadRecordResult::End => return Ok(()),
            }
        }
    }

    fn too_long(&self) -> SnapshotError {
        SnapshotError::new(
            "row_too_long",
            format!(
                "row {}: longer than {} KiB (an unclosed quote?)",
                self.rows + 1,
                MAX_RECORD_BYTES / 1024
            ),
        )
    }

    fn take(&mut self) -> Result<Record, SnapshotError> {
        self.rows += 1;
        let row = self.rows;
        let mut fields = Vec::with_capacity(self.nends);
        let mut start = 0;
        for &end in &self.ends[..self.nends] {
            let bytes = self.out.get(start..end).unwrap_or_default();
            let text = std::str::from_utf8(bytes).map_err(|_| {
                SnapshotError::new(
                    "invalid_encoding",
                    format!("row {row}: not UTF-8 (save the export as UTF-8 CSV)"),
                )
            })?;
            fields.push(text.to_owned());
            start = end;
        }
        self.nout = 0;
        self.nends = 0;
        Ok(Record { row, fields })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn read_in_chunks(text: &[u8], size: usize) -> Vec<Record> {
        let mut r = CsvRecords::new();
        let mut out = Vec::new();
        for chunk in text.chunks(size) {
            r.feed(chunk, &mut out).unwrap();
        }
        r.feed(&[], &mut out).unwrap();
        out
    }

    #[test]
    fn quoted_fields_crlf_bom_and_any_chunking_give_the_same_records() {
        let text = "\u{feff}Email,Name\r\nann@x.com,\"Lee, Ann\"\r\n\"bob@x.com\",\"say \"\"hi\"\"\nthere\"\r\ncy@x.com,Cy";
        let whole = read_in_chunks(text.as_bytes(), 1 << 20);
        assert_eq!(whole.len(), 4);
        assert_eq!(whole[0].fields, ["Email", "Name"]);
        assert_eq!(whole[1].fields, ["ann@x.com", "Lee, Ann"]);
        assert_eq!(whole[2].fields, ["bob@x.com", "say \"hi\"\nthere"]);
        assert_eq!(whole[3].fields, ["cy@x.com", "Cy"]);
        assert_eq!(
            whole.iter().map(|r| r.row).collect::<Vec<_>>(),
            [1, 2, 3, 4]
        );
        for size in [1, 2, 3, 7, 64] {
            assert_eq!(read_in_chunks(text.as_bytes(), size), whole, "chunk {size}");
        }
    }

    #[test]
    fn blank_lines_are_skipped_and_long_rows_refused() {
        let recs = read_in_chunks(b"a,b\n\n1,2\n\n", 3);
        assert_eq!(recs.len(), 2);
        let mut r = CsvRecords::new();
        let long = format!("\"{}", "x".repeat(MAX_RECORD_BYTES + 10));
        let err = r.feed(long.as_bytes(), &mut Vec::new()).unwrap_err();
        assert_eq!(err.code, "row_too_long");
    }

    #[test]
    fn invalid_utf8_names_the_line() {
        let mut r = CsvRecords::new();
        let err = r.feed(b"a\n\xff\xfe\n", &mut Vec::new()).unwrap_err();
        assert_eq!(err.code, "invalid_encoding");
        assert!(err.message.contains("row 2"), "{}", err.message);
    }
}
