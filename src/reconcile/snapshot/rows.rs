//! From records (CSV) or objects (JSON) to [`Observed`] accounts, using the profile's
//! column names, status values and role mapping. Unknown columns are collected, not
//! refused: the safeguard holds such a snapshot for an admin (a renamed column may mean
//! the export changed shape, and an admin should look before it is compared).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};

use super::csv::{CsvRecords, Record};
use super::json::JsonRows;
use super::{normalise, Field, Observed, SnapshotConfig, SnapshotError, STATUS};

/// How the file is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// UTF-8 CSV with a header row.
    Csv,
    /// A JSON array of objects, or one object per line.
    Json,
}

impl Format {
    /// The format a `Content-Type` names: `text/csv` (and `application/csv`), or JSON
    /// (`application/json`, `application/x-ndjson`, `application/jsonl`).
    pub fn from_content_type(ct: &str) -> Option<Format> {
        let essence = ct
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        match essence.as_str() {
            "text/csv" | "application/csv" => Some(Format::Csv),
            "application/json"
            | "application/x-ndjson"
            | "application/jsonl"
            | "application/ndjson" => Some(Format::Json),
            _ => None,
        }
    }

    /// `csv` or `json`.
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Csv => "csv",
            Format::Json => "json",
        }
    }
}

/// What a column carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Column {
    Field(Field),
    Status,
}

/// Counts and shape of a file read to its end.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rows {
    /// Data rows read.
    pub rows: u64,
    /// Columns (CSV headers or JSON keys) the profile does not name, as written.
    pub unknown_columns: Vec<String>,
    /// The account fields the file has columns for.
    pub observed_fields: Vec<Field>,
}

/// Turns a stream of bytes into observed accounts.
pub struct RowParser<'a> {
    config: &'a SnapshotConfig,
    roles: &'a [String],
    key: Field,
    /// Normalised header -> column, from the profile (and the fields' own names).
    known: BTreeMap<String, Column>,
    reader: Reader,
    /// CSV only: what each column of the header carries (None: unknown).
    header: Option<Vec<Option<Column>>>,
    unknown: BTreeSet<String>,
    seen_fields: BTreeSet<Field>,
    rows: u64,
}

enum Reader {
    Csv(Box<CsvRecords>),
    Json(JsonRows),
}

/// Keep at most this many unknown column names for the preview.
const MAX_UNKNOWN: usize = 50;

impl<'a> RowParser<'a> {
    /// A parser for one file; `roles` are the profile's roles (for the role mapping).
    pub fn new(
        format: Format,
        config: &'a SnapshotConfig,
        roles: &'a [String],
    ) -> Result<RowParser<'a>, SnapshotError> {
        let key = config
            .key_field()
            .map_err(|e| SnapshotError::new("invalid_profile", e))?;
        let mut known = BTreeMap::new();
        for f in Field::ALL {
            known.insert(normalise(f.as_str()), Column::Field(f));
        }
        known.insert(normalise(STATUS), Column::Status);
        // The profile's names win over a field's own name if both could apply.
        for (field, header) in &config.columns {
            let col = match Field::parse(field) {
                Some(f) => Column::Field(f),
                None => Column::Status,
            };
            known.insert(normalise(header), col);
        }
        Ok(RowParser {
            config,
            roles,
            key,
            known,
            reader: match format {
                Format::Csv => Reader::Csv(Box::new(CsvRecords::new())),
                Format::Json => Reader::Json(JsonRows::new()),
            },
            header: None,
            unknown: BTreeSet::new(),
            seen_fields: BTreeSet::new(),
            rows: 0,
        })
    }

    /// Reads the accounts completed by `chunk` into `out`.
    pub fn feed(&mut self, chunk: &[u8], out: &mut Vec<Observed>) -> Result<(), SnapshotError> {
        if chunk.is_empty() {
            // Empty chunks carry no data; the end is `finish`.
            return Ok(());
        }
        self.read(chunk, out)
    }

    /// Reads the last account (if the file does not end with a newline) and says what the
    /// file held.
    pub fn finish(&mut self, out: &mut Vec<Observed>) -> Result<Rows, SnapshotError> {
        self.read(&[], out)?;
        Ok(Rows {
            rows: self.rows,
            unknown_columns: self.unknown.iter().cloned().collect(),
            observed_fields: self.seen_fields.iter().copied().collect(),
        })
    }

    fn read(&mut self, chunk: &[u8], out: &mut Vec<Observed>) -> Result<(), SnapshotError> {
        match &mut self.reader {
            Reader::Csv(r) => {
                let mut records = Vec::new();
                r.feed(chunk, &mut records)?;
                for rec in records {
                    self.csv_record(rec, out)?;
                }
            }
            Reader::Json(r) => {
                let mut objects = Vec::new();
                r.feed(chunk, &mut objects)?;
                for (n, obj) in objects {
                    self.json_object(n, obj, out)?;
                }
            }
        }
        Ok(())
    }

    fn note_unknown(&mut self, name: &str) {
        if self.unknown.len() < MAX_UNKNOWN {
            self.unknown.insert(name.trim().to_owned());
        }
    }

    fn csv_record(&mut self, rec: Record, out: &mut Vec<Observed>) -> Result<(), SnapshotError> {
        let Some(header) = &self.header else {
            let mut cols: Vec<Option<Column>> = Vec::with_capacity(rec.fields.len());
            for name in &rec.fields {
                let col = self.known.get(&normalise(name)).copied();
                if let Some(c) = col {
                    if let Some(j) = cols.iter().position(|x| *x == Some(c)) {
                        return Err(SnapshotError::new(
                            "duplicate_column",
                            format!(
                                "row 1: columns {:?} and {:?} both mean {}",
                                rec.fields[j],
                                name,
                                column_name(c)
                            ),
                        ));
                    }
                } else {
                    self.note_unknown(name);
                }
                cols.push(col);
            }
            for needed in [Column::Field(self.key), Column::Status] {
                if !cols.contains(&Some(needed)) {
                    return Err(SnapshotError::new(
                        "missing_column",
                        format!(
                            "row 1: the header has no {} column ({}); it has: {}",
                            self.header_name(needed),
                            if needed == Column::Status {
                                "whether each account is active"
                            } else {
                                "the match key"
                            },
                            rec.fields.join(", ")
                        ),
                    ));
                }
            }
            self.header = Some(cols);
            return Ok(());
        };
        if rec.fields.len() > header.len() {
            return Err(SnapshotError::new(
                "ragged_row",
                format!(
                    "row {}: {} cells, but the header has {} columns",
                    rec.row,
                    rec.fields.len(),
                    header.len()
                ),
            ));
        }
        let mut cells: Vec<(Column, Option<String>)> = Vec::with_capacity(header.len());
        for (i, col) in header.iter().enumerate() {
            if let Some(c) = col {
                let value = rec.fields.get(i).map(String::as_str).unwrap_or("");
                cells.push((*c, clean(value, rec.row)?));
            }
        }
        let o = self.observe(rec.row, cells)?;
        out.push(o);
        Ok(())
    }

    fn json_object(
        &mut self,
        n: u64,
        obj: Map<String, Value>,
        out: &mut Vec<Observed>,
    ) -> Result<(), SnapshotError> {
        let mut cells: Vec<(Column, Option<String>)> = Vec::with_capacity(obj.len());
        for (k, v) in &obj {
            let Some(c) = self.known.get(&normalise(k)).copied() else {
                self.note_unknown(k);
                continue;
            };
            if cells.iter().any(|(x, _)| *x == c) {
                return Err(SnapshotError::new(
                    "duplicate_column",
                    format!("row {n}: two keys mean {}", column_name(c)),
                ));
            }
            let value = match v {
                Value::Null => None,
                Value::String(s) => clean(s, n)?,
                Value::Bool(b) if c == Column::Status => Some(
                    if *b {
                        self.config.status.active.first()
                    } else {
                        self.config.status.inactive.first()
                    }
                    .cloned()
                    .unwrap_or_default(),
                ),
                Value::Bool(b) => Some(b.to_string()),
                Value::Number(x) => Some(x.to_string()),
                Value::Array(_) | Value::Object(_) => {
                    return Err(SnapshotError::new(
                        "invalid_value",
                        format!("row {n}: {k:?} must be a string, number, boolean or null"),
                    ))
                }
            };
            cells.push((c, value));
        }
        let o = self.observe(n, cells)?;
        out.push(o);
        Ok(())
    }

    fn header_name(&self, c: Column) -> String {
        let field = column_name(c);
        match self.config.columns.get(field) {
            Some(h) => format!("{h:?}"),
            None => format!("{field:?}"),
        }
    }

    fn observe(
        &mut self,
        line: u64,
        cells: Vec<(Column, Option<String>)>,
    ) -> Result<Observed, SnapshotError> {
        let mut key = None;
        let mut active = None;
        let mut fields = BTreeMap::new();
        for (col, value) in cells {
            match col {
                Column::Status => {
                    let Some(v) = value else {
                        return Err(SnapshotError::new(
                            "invalid_status",
                            format!("row {line}: the status is empty"),
                        ));
                    };
                    active = Some(self.config.status_of(&v).ok_or_else(|| {
                        SnapshotError::new(
                            "invalid_status",
                            format!(
                                "row {line}: status {v:?} is neither active ({}) nor inactive \
                                 ({}); add it to the profile's [snapshot.status]",
                                self.config.status.active.join(", "),
                                self.config.status.inactive.join(", ")
                            ),
                        )
                    })?);
                }
                Column::Field(f) => {
                    if f == self.key {
                        key = value.as_deref().map(str::to_lowercase);
                    }
                    let value = match (f, value) {
                        (Field::Role, Some(v)) => Some(self.config.role_of(&v, self.roles)),
                        (_, v) => v,
                    };
                    self.seen_fields.insert(f);
                    fields.insert(f, value);
                }
            }
        }
        let Some(key) = key else {
            return Err(SnapshotError::new(
                "missing_key",
                format!(
                    "row {line}: no {} (the match key) for this account",
                    self.header_name(Column::Field(self.key))
                ),
            ));
        };
        let Some(active) = active else {
            return Err(SnapshotError::new(
                "invalid_status",
                format!(
                    "row {line}: no {} for this account",
                    self.header_name(Column::Status)
                ),
            ));
        };
        self.rows += 1;
        Ok(Observed {
            line,
            key,
            active,
            fields,
        })
    }
}

fn column_name(c: Column) -> &'static str {
    match c {
        Column::Field(f) => f.as_str(),
        Column::Status => STATUS,
    }
}

/// A cell as compared: trimmed, empty as none; U+0000 is refused (Postgres cannot
/// store it, and no export has it on purpose).
fn clean(value: &str, line: u64) -> Result<Option<String>, SnapshotError> {
    if value.contains('\0') {
        return Err(SnapshotError::new(
            "invalid_value",
            format!("row {line}: a cell contains the NUL character (U+0000)"),
        ));
    }
    let v = value.trim();
    Ok((!v.is_empty()).then(|| v.to_owned()))
}
