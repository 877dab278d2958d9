//! `scimbridge db export|import|move` (issue #12): moving a trial on the embedded store
//! to Postgres, or any store to another, with everything in it (users, groups, tasks,
//! attachments, tokens, keys, the audit chain). The format is in [`crate::dump`].

use std::path::{Path, PathBuf};

use clap::Subcommand;
use tokio::io::{AsyncWriteExt, BufReader};

use super::store::{self, describe_url, Opener};
use crate::db::Store;
use crate::dump::{self, DumpError, Summary};

/// `db` subcommands.
#[derive(Debug, Subcommand)]
pub enum DbCommand {
    /// Write the whole store (the embedded one in --data-dir, or --database-url) to a
    /// dump file. The dump holds token hashes and the server's keys: keep it as safe as
    /// the database.
    Export {
        /// Where to write it; `-` is standard output. A file is written under a
        /// temporary name and renamed when complete, readable by its owner only.
        #[arg(long, default_value = "-")]
        out: String,
    },
    /// Load a dump into the store named by --database-url (DATABASE_URL), or the
    /// embedded one in --data-dir: migrates it, then refuses unless it is empty (a
    /// database holding only its apps, as `migrate` leaves it, counts as empty). All in
    /// one transaction: on any error the store is left as it was.
    Import {
        /// The dump; `-` is standard input (checked as it is read, not beforehand).
        file: String,
    },
    /// Copy the current store (stop `scimbridge serve` first) straight into an empty
    /// Postgres database, in one transaction there, then verify its audit chain.
    Move {
        /// The target, e.g. postgres://scimbridge@db.example.com/scimbridge.
        #[arg(long, env = "SCIMBRIDGE_MOVE_TO", hide_env_values = true)]
        to: String,
    },
}

/// Runs a `db` subcommand; `url`/`dir` name the current store as for every command.
pub async fn run(url: Option<&str>, dir: &Path, cmd: DbCommand) -> anyhow::Result<()> {
    match cmd {
        DbCommand::Export { out } => {
            let opened = store::open(url, dir, Opener::Command("db export"), 2).await?;
            let r = export(&opened.store, &out).await;
            opened.close().await;
            let s = r?;
            eprintln!(
                "exported {} rows of {} tables{}",
                s.rows,
                s.tables,
                if out == "-" {
                    String::new()
                } else {
                    format!(" to {out}")
                }
            );
            Ok(())
        }
        DbCommand::Import { file } => import(url, dir, &file).await,
        DbCommand::Move { to } => {
            let target = describe_url(&to);
            let to_store = Store::connect(&to, 2)
                .map_err(|e| anyhow::anyhow!("--to is not a usable Postgres URL: {e}"))?;
            let opened = store::open(url, dir, Opener::Command("db move"), 2).await?;
            let r = async {
                to_store.migrate().await.map_err(|e| {
                    anyhow::anyhow!(
                        "cannot migrate the target {target} (is the URL right and Postgres \
                         up?): {e}"
                    )
                })?;
                let s = dump::transfer(&opened.store, &to_store)
                    .await
                    .map_err(|e| anyhow::anyhow!("moving to {target} failed: {e}"))?;
                Ok::<_, anyhow::Error>(s)
            }
            .await;
            opened.close().await;
            let s = r?;
            eprintln!("moved {} rows of {} tables to {target}", s.rows, s.tables);
            let verified = super::governance::verify(&to_store, None).await;
            to_store.pool().close().await;
            verified?;
            eprintln!(
                "Next: run `scimbridge serve --database-url <that URL>` with the same \
                 --public-url (the IdP keeps its SCIM URL and token) and the same \
                 --secrets-key if you set one; the data directory is no longer used."
            );
            Ok(())
        }
    }
}

/// Writes the dump to `out` (`-`: stdout).
async fn export(store: &Store, out: &str) -> anyhow::Result<Summary> {
    if out == "-" {
        let mut stdout = tokio::io::BufWriter::new(std_stream(&std::io::stdout())?);
        let s = dump::export(store, &mut stdout).await?;
        stdout.flush().await?;
        return Ok(s);
    }
    let path = PathBuf::from(out);
    let mut partial = path.clone().into_os_string();
    partial.push(".partial");
    let partial = PathBuf::from(partial);
    let written = async {
        let file = create_private(&partial).await?;
        let mut w = tokio::io::BufWriter::new(file);
        let s = dump::export(store, &mut w).await?;
        w.flush().await?;
        w.into_inner().sync_all().await?;
        tokio::fs::rename(&partial, &path).await?;
        Ok::<_, DumpError>(s)
    }
    .await;
    if written.is_err() {
        let _ = tokio::fs::remove_file(&partial).await;
    }
    written.map_err(|e| anyhow::anyhow!("export to {out} failed: {e}"))
}

/// A new file readable by its owner only (the dump holds token hashes and keys).
async fn create_private(path: &Path) -> std::io::Result<tokio::fs::File> {
    let mut o = tokio::fs::OpenOptions::new();
    o.write(true).create(true).truncate(true);
    #[cfg(unix)]
    o.mode(0o600);
    o.open(path).await
}

/// `db import FILE`: a file is checked whole (layout, checksum, schema version) before
/// the target is touched at all, so a bad file does not even migrate it.
async fn import(url: Option<&str>, dir: &Path, file: &str) -> anyhow::Result<()> {
    let stdin = file == "-";
    if !stdin {
        let f = tokio::fs::File::open(file)
            .await
            .map_err(|e| anyhow::anyhow!("cannot open {file}: {e}"))?;
        let (header, _) = dump::check(BufReader::new(f))
            .await
            .map_err(|e| anyhow::anyhow!("{file}: {e}"))?;
        let here = dump::latest_schema();
        if header.schema != here {
            anyhow::bail!(
                "{file}: {}",
                DumpError::Schema {
                    dump: header.schema,
                    here
                }
            );
        }
    }
    let opened = store::open(url, dir, Opener::Import, 2).await?;
    let r = async {
        let s = if stdin {
            dump::import(
                &opened.store,
                BufReader::new(std_stream(&std::io::stdin())?),
            )
            .await?
        } else {
            let f = tokio::fs::File::open(file).await?;
            dump::import(&opened.store, BufReader::new(f)).await?
        };
        Ok::<_, DumpError>(s)
    }
    .await;
    let r = match r {
        Ok(s) => {
            eprintln!("imported {} rows of {} tables", s.rows, s.tables);
            super::governance::verify(&opened.store, None).await
        }
        Err(e) => Err(anyhow::anyhow!("{file}: {e}")),
    };
    opened.close().await;
    r
}

/// Standard input or output as an async file (tokio's own need a feature that would
/// rebuild the embedded engine's dependencies for two streams).
#[cfg(unix)]
fn std_stream(s: &impl std::os::fd::AsFd) -> std::io::Result<tokio::fs::File> {
    let fd = s.as_fd().try_clone_to_owned()?;
    Ok(tokio::fs::File::from_std(std::fs::File::from(fd)))
}

#[cfg(not(unix))]
fn std_stream<T>(_: &T) -> std::io::Result<tokio::fs::File> {
    Err(std::io::Error::other(
        "`-` (standard input or output) needs Unix here; name a file instead",
    ))
}
