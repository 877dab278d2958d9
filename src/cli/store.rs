//! Which store a command opens: Postgres when a URL is given (`--database-url` or
//! `DATABASE_URL`), else the embedded trial store in `--data-dir` (cargo feature
//! `embedded`, on by default). Never a database nobody named: without a URL and without
//! the embedded store the command stops and says what to pass.

use std::path::Path;

use crate::db::Store;

#[cfg(feature = "embedded")]
type Engine = crate::db::embedded::Embedded;
/// Built without the embedded store: there is never an engine.
#[cfg(not(feature = "embedded"))]
type Engine = std::convert::Infallible;

/// An open, migrated store and what keeps it open.
pub struct Opened {
    /// The store.
    pub store: Store,
    /// The embedded engine and its data directory lock, when it is the embedded store.
    embedded: Option<Engine>,
}

impl Opened {
    /// Closes the connection and stops the embedded engine, if any.
    pub async fn close(self) {
        match self.embedded {
            #[cfg(feature = "embedded")]
            Some(embedded) => embedded.close(&self.store).await,
            #[cfg(not(feature = "embedded"))]
            Some(never) => match never {},
            None => self.store.pool().close().await,
        }
    }

    /// Whether this is the embedded store.
    pub fn is_embedded(&self) -> bool {
        self.embedded.is_some()
    }
}

/// Who opens the store, which decides what a held or missing embedded store means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Opener {
    /// `scimbridge serve`: creates the embedded store if there is none.
    Serve,
    /// `scimbridge migrate`: creates it too (it was asked to).
    Migrate,
    /// `scimbridge db import`: creates it too (it is the target).
    Import,
    /// Any other command (`token`, `apps`, `audit` …): opens an existing store only.
    Command(&'static str),
}

impl Opener {
    #[cfg_attr(not(feature = "embedded"), allow(dead_code))]
    fn name(self) -> &'static str {
        match self {
            Opener::Serve => "serve",
            Opener::Migrate => "migrate",
            Opener::Import => "db import",
            Opener::Command(c) => c,
        }
    }
}

/// Opens and migrates the store for `opener`. `max_connections` is the Postgres pool
/// size (the embedded store always has one connection). Commands other than `serve`
/// say on stderr which store they use.
pub async fn open(
    database_url: Option<&str>,
    data_dir: &Path,
    opener: Opener,
    max_connections: u32,
) -> anyhow::Result<Opened> {
    if let Some(url) = database_url {
        let store = Store::connect(url, max_connections)?;
        let target = describe_url(url);
        if opener == Opener::Serve {
            tracing::info!(database = %target, "using Postgres");
        } else {
            eprintln!("using Postgres at {target}");
        }
        store.migrate().await.map_err(|e| {
            anyhow::anyhow!(
                "cannot migrate the database {target} (is the URL right and Postgres up?): {e}"
            )
        })?;
        return Ok(Opened {
            store,
            embedded: None,
        });
    }
    open_embedded(data_dir, opener).await
}

#[cfg(feature = "embedded")]
async fn open_embedded(data_dir: &Path, opener: Opener) -> anyhow::Result<Opened> {
    use crate::db::embedded::{Embedded, OpenError};
    let create = matches!(opener, Opener::Serve | Opener::Migrate | Opener::Import);
    let (embedded, store) = match Embedded::open(data_dir, opener.name(), create).await {
        Ok(opened) => opened,
        Err(e @ OpenError::Held { .. }) => {
            let what = match opener {
                Opener::Serve => {
                    "Stop that process first, or give this one another --data-dir \
                     (SCIMBRIDGE_DATA_DIR), or use Postgres with --database-url (DATABASE_URL)."
                }
                // A copy must be of a store nothing writes to, so there is no way
                // around stopping the server.
                Opener::Import | Opener::Command("db export" | "db move") => {
                    "Stop `scimbridge serve` first (a dump or move copies the store while \
                     nothing writes to it), then run this again."
                }
                _ => {
                    "The embedded store serves one process at a time. While `scimbridge serve` \
                     runs, do this in its web UI (/ui: tasks, users, tokens) or task API \
                     (/api/v1, e.g. POST /api/v1/tokens with an admin token), or stop it first."
                }
            };
            anyhow::bail!("{e}. {what}");
        }
        Err(e @ OpenError::Missing(_)) => anyhow::bail!(
            "{e}: run `scimbridge serve` once to create it (it prints the first tokens), \
             or use Postgres with --database-url (DATABASE_URL)"
        ),
        Err(e) => return Err(e.into()),
    };
    let dir = embedded.dir().display().to_string();
    if opener == Opener::Serve {
        tracing::info!(
            data_dir = %dir,
            "using the embedded store: a single-process trial store in this directory, one \
             server at a time, no replicas. For production use Postgres: pass --database-url \
             or set DATABASE_URL"
        );
    } else {
        eprintln!("using the embedded store in {dir}");
    }
    let opened = Opened {
        store,
        embedded: Some(embedded),
    };
    if let Err(e) = opened.store.migrate().await {
        opened.close().await;
        anyhow::bail!("cannot migrate the embedded store in {dir}: {e}");
    }
    Ok(opened)
}

#[cfg(not(feature = "embedded"))]
async fn open_embedded(_data_dir: &Path, _opener: Opener) -> anyhow::Result<Opened> {
    anyhow::bail!(
        "no database given: pass --database-url or set DATABASE_URL \
         (this binary was built without the embedded trial store)"
    )
}

/// `host:port/database` of a Postgres URL, never its password.
pub fn describe_url(url: &str) -> String {
    match url.parse::<sqlx::postgres::PgConnectOptions>() {
        Ok(o) => format!(
            "{}:{}/{}",
            o.get_host(),
            o.get_port(),
            o.get_database().unwrap_or(o.get_username())
        ),
        Err(_) => "the given URL".into(),
    }
}
