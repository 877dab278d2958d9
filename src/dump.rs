//! The dump format of `scimbridge db export|import|move` (issue #12): a whole store as
//! JSON lines, portable between the embedded store (PostgreSQL 17) and any Postgres
//! server scimbridge supports.
//!
//! ```text
//! {"format":"scimbridge-dump","version":1,"schema":<latest migration>,"tables":[...],"exported_at":"..."}
//! {"table":"app","rows":1}
//! {<row as a JSON object, one per line, `rows` of them>}
//! ...                                          (every table, parents before children)
//! {"sequences":[{"table":"task","column":"task_id","next":42}, ...]}
//! {"end":true,"rows":<total>,"sha256":"<hex of every byte before this line>"}
//! ```
//!
//! The trailer's checksum makes a truncated or altered file fail as a whole before
//! anything is committed. The schema version is the latest migration applied at the
//! source: rows fit only the schema they were read from, so an import needs the same.

use sha2::{Digest, Sha256};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWrite, AsyncWriteExt};

use crate::db::transfer::{same_tables, SequencePosition, Target, TargetError};
use crate::db::Store;

/// What the first line says.
const FORMAT: &str = "scimbridge-dump";
/// The version of this layout.
const VERSION: u32 = 1;
/// Rows sent to the target per statement (bounded by [`BATCH_BYTES`] too).
const BATCH_ROWS: usize = 500;
/// Bytes of rows sent per statement at most (attachments make large rows).
const BATCH_BYTES: usize = 4 << 20;

/// Why a dump could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum DumpError {
    /// Reading or writing the file failed.
    #[error("cannot read or write the dump: {0}")]
    Io(#[from] std::io::Error),
    /// Not a dump of this kind.
    #[error("not a scimbridge dump: {0}")]
    NotADump(String),
    /// A line is not what the layout says it must be.
    #[error("the dump is damaged at line {line}: {why}; nothing was imported (export it again)")]
    Damaged {
        /// 1-based line number.
        line: u64,
        /// What is wrong.
        why: String,
    },
    /// The file ends before its trailer.
    #[error(
        "the dump ends at line {0} before its trailer: it is truncated (an export that did \
         not finish, or a partial copy); nothing was imported"
    )]
    Truncated(u64),
    /// The content does not match its checksum.
    #[error(
        "the dump's checksum does not match its content: it was changed or damaged after \
         export; nothing was imported"
    )]
    Checksum,
    /// Exported from another schema version.
    #[error(
        "the dump has schema version {dump} but this scimbridge has {here}: export and \
         import with the same scimbridge version; nothing was imported"
    )]
    Schema {
        /// The dump's.
        dump: i64,
        /// The target's.
        here: i64,
    },
    /// The target refused.
    #[error("{0}; nothing was imported")]
    Target(#[from] TargetError),
    /// The database failed.
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
}

/// The first line.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Header {
    /// Always [`FORMAT`].
    pub format: String,
    /// The layout version.
    pub version: u32,
    /// The latest migration applied at the source.
    pub schema: i64,
    /// The tables, in the order they follow.
    pub tables: Vec<String>,
    /// When the export started (RFC 3339).
    pub exported_at: String,
}

/// What was carried.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    /// Tables.
    pub tables: usize,
    /// Rows in all.
    pub rows: u64,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Section {
    table: String,
    rows: u64,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Sequences {
    sequences: Vec<SequencePosition>,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Trailer {
    end: bool,
    rows: u64,
    sha256: String,
}

/// The schema version this binary migrates to.
pub fn latest_schema() -> i64 {
    crate::db::MIGRATOR
        .iter()
        .map(|m| m.version)
        .max()
        .unwrap_or(0)
}

/// Writes lines and hashes them.
struct Writer<W> {
    out: W,
    hash: Sha256,
}

impl<W: AsyncWrite + Unpin> Writer<W> {
    async fn line(&mut self, text: &str) -> std::io::Result<()> {
        self.hash.update(text.as_bytes());
        self.hash.update(b"\n");
        self.out.write_all(text.as_bytes()).await?;
        self.out.write_all(b"\n").await
    }
}

fn json<T: serde::Serialize>(value: &T) -> String {
    // Our own plain structs: serializing them cannot fail.
    serde_json::to_string(value).unwrap_or_default()
}

/// Writes the whole `store` to `out` from one consistent read.
pub async fn export<W: AsyncWrite + Unpin>(store: &Store, out: W) -> Result<Summary, DumpError> {
    let schema = store.schema_version().await?;
    let mut snap = store.read_all().await?;
    let tables = snap.tables().await?;
    let mut w = Writer {
        out,
        hash: Sha256::new(),
    };
    w.line(&json(&Header {
        format: FORMAT.into(),
        version: VERSION,
        schema,
        tables: tables.clone(),
        exported_at: crate::db::rfc3339(chrono::Utc::now()),
    }))
    .await?;
    let mut total = 0u64;
    for table in &tables {
        let rows = snap.count(table).await?;
        w.line(&json(&Section {
            table: table.clone(),
            rows: rows as u64,
        }))
        .await?;
        snap.rows(table, async |row: String| -> Result<(), DumpError> {
            w.line(&row).await?;
            Ok(())
        })
        .await?;
        total += rows as u64;
    }
    w.line(&json(&Sequences {
        sequences: snap.sequences().await?,
    }))
    .await?;
    snap.finish().await?;
    let sha256 = hex::encode(w.hash.clone().finalize());
    w.line(&json(&Trailer {
        end: true,
        rows: total,
        sha256,
    }))
    .await?;
    w.out.flush().await?;
    Ok(Summary {
        tables: tables.len(),
        rows: total,
    })
}

/// Reads lines, counting and hashing them.
struct Reader<R> {
    input: R,
    hash: Sha256,
    line: u64,
    buf: String,
}

impl<R: AsyncBufRead + Unpin> Reader<R> {
    /// The next line (without its newline), hashed with it; Truncated at the end of the
    /// input.
    async fn next(&mut self) -> Result<&str, DumpError> {
        self.buf.clear();
        let n = self.input.read_line(&mut self.buf).await.map_err(|e| {
            if e.kind() == std::io::ErrorKind::InvalidData {
                DumpError::Damaged {
                    line: self.line + 1,
                    why: "not UTF-8 text".into(),
                }
            } else {
                DumpError::Io(e)
            }
        })?;
        if n == 0 || !self.buf.ends_with('\n') {
            return Err(DumpError::Truncated(self.line));
        }
        self.line += 1;
        self.hash.update(self.buf.as_bytes());
        self.buf.pop();
        Ok(&self.buf)
    }

    fn damaged(&self, why: impl Into<String>) -> DumpError {
        DumpError::Damaged {
            line: self.line,
            why: why.into(),
        }
    }

    /// The current line parsed as `T`, hashed (control lines, not rows).
    async fn parse<T: serde::de::DeserializeOwned>(&mut self, what: &str) -> Result<T, DumpError> {
        let text = self.next().await?.to_owned();
        serde_json::from_str(&text).map_err(|e| self.damaged(format!("expected {what}: {e}")))
    }
}

/// Reads and checks the header (the first line).
async fn header<R: AsyncBufRead + Unpin>(r: &mut Reader<R>) -> Result<Header, DumpError> {
    let text = match r.next().await {
        Ok(t) => t.to_owned(),
        Err(DumpError::Truncated(0)) => return Err(DumpError::NotADump("it is empty".into())),
        Err(e) => return Err(e),
    };
    let header: Header = serde_json::from_str(&text)
        .map_err(|_| DumpError::NotADump("its first line is not a dump header".into()))?;
    if header.format != FORMAT {
        return Err(DumpError::NotADump(format!(
            "its format is {:?}, not {FORMAT:?}",
            header.format
        )));
    }
    if header.version != VERSION {
        return Err(DumpError::NotADump(format!(
            "layout version {} is not the {VERSION} this scimbridge reads",
            header.version
        )));
    }
    Ok(header)
}

/// Walks a whole dump: checks its layout and checksum, and inserts its rows into
/// `target` when given. Returns the sequence positions and the summary.
async fn walk<R: AsyncBufRead + Unpin>(
    r: &mut Reader<R>,
    header: &Header,
    mut target: Option<&mut Target>,
) -> Result<(Vec<SequencePosition>, Summary), DumpError> {
    let mut total = 0u64;
    let mut batch: Vec<String> = Vec::new();
    for table in &header.tables {
        let section: Section = r.parse("a table section").await?;
        if &section.table != table {
            return Err(r.damaged(format!(
                "expected the rows of {table}, found {}",
                section.table
            )));
        }
        let mut bytes = 0usize;
        for _ in 0..section.rows {
            let row = r.next().await?.to_owned();
            // Rows are checked here (not left to the database) so damage is named by
            // its line; `IgnoredAny` checks the syntax without building the value.
            let valid =
                row.starts_with('{') && serde_json::from_str::<serde::de::IgnoredAny>(&row).is_ok();
            if !valid {
                return Err(r.damaged(format!("a row of {table} is not a JSON object")));
            }
            if let Some(t) = target.as_deref_mut() {
                bytes += row.len();
                batch.push(row);
                if batch.len() >= BATCH_ROWS || bytes >= BATCH_BYTES {
                    t.insert(table, &batch).await?;
                    batch.clear();
                    bytes = 0;
                }
            }
        }
        if let Some(t) = target.as_deref_mut() {
            t.insert(table, &batch).await?;
            batch.clear();
        }
        total += section.rows;
    }
    let sequences: Sequences = r.parse("the sequences line").await?;
    // The checksum covers every line before the trailer.
    let expected = hex::encode(r.hash.clone().finalize());
    let text = r.next().await?.to_owned();
    let trailer: Trailer =
        serde_json::from_str(&text).map_err(|e| r.damaged(format!("expected the trailer: {e}")))?;
    if !trailer.end || trailer.sha256 != expected || trailer.rows != total {
        return Err(DumpError::Checksum);
    }
    let mut rest = String::new();
    if r.input.read_line(&mut rest).await? > 0 {
        return Err(r.damaged("there is more after the trailer"));
    }
    Ok((
        sequences.sequences,
        Summary {
            tables: header.tables.len(),
            rows: total,
        },
    ))
}

/// Checks a whole dump without a database (layout, checksum) and returns its header.
pub async fn check<R: AsyncBufRead + Unpin>(input: R) -> Result<(Header, Summary), DumpError> {
    let mut r = Reader {
        input,
        hash: Sha256::new(),
        line: 0,
        buf: String::new(),
    };
    let header = header(&mut r).await?;
    let (_, summary) = walk(&mut r, &header, None).await?;
    Ok((header, summary))
}

/// Imports a dump into `store` (migrated, and empty but for its apps) in one transaction:
/// any failure, a damaged line or a checksum mismatch at the end included, leaves the
/// target as it was.
pub async fn import<R: AsyncBufRead + Unpin>(
    store: &Store,
    input: R,
) -> Result<Summary, DumpError> {
    let mut r = Reader {
        input,
        hash: Sha256::new(),
        line: 0,
        buf: String::new(),
    };
    let header = header(&mut r).await?;
    let here = store.schema_version().await?;
    if header.schema != here {
        return Err(DumpError::Schema {
            dump: header.schema,
            here,
        });
    }
    let mut target = store.import_target().await?;
    same_tables(&header.tables, target.tables())?;
    let (sequences, summary) = walk(&mut r, &header, Some(&mut target)).await?;
    target.commit(&sequences).await?;
    Ok(summary)
}

/// Copies `from` into `to` through an in-memory pipe (nothing is written to disk), the
/// import in one target transaction as [`import`].
pub async fn transfer(from: &Store, to: &Store) -> Result<Summary, DumpError> {
    let (tx, rx) = tokio::io::duplex(1 << 20);
    let export = async move {
        // The pipe is closed when this ends, so the import sees the end.
        let mut tx = tx;
        let r = export(from, &mut tx).await;
        let _ = tx.shutdown().await;
        r
    };
    let import = import(to, tokio::io::BufReader::new(rx));
    let (exported, imported) = tokio::join!(export, import);
    match (exported, imported) {
        (Ok(_), Ok(s)) => Ok(s),
        // The export failed first: the import only saw its input end early.
        (Err(e), Err(DumpError::Truncated(_))) => Err(e),
        (_, Err(e)) => Err(e),
        (Err(e), Ok(_)) => Err(e),
    }
}
