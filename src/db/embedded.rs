//! The embedded trial store (cargo feature `embedded`): PostgreSQL 17 compiled to WASM
//! (`pglite-oxide`), run inside this process on a data directory, reached by sqlx over a
//! loopback socket like any Postgres server.
//!
//! It has one backend, so the store it opens has a pool of exactly one connection
//! (a second connection would wait forever), and task wake-ups are in-process instead
//! of LISTEN/NOTIFY (see `queue::Notifier`). One process at a time may open a data
//! directory: [`Embedded::open`] takes an exclusive lock on `scimbridge.lock` in it and
//! writes its pid and command there, so a second process fails at once naming the first.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use super::Store;

/// The lock file in the data directory; it holds "pid N: command" of its holder.
const LOCK_FILE: &str = "scimbridge.lock";
/// The engine's one user and database (its defaults, named here for the socket URL).
const USER: &str = "postgres";
const DATABASE: &str = "template1";
/// Where the database cluster lives, under the data directory.
const CLUSTER_DIR: &str = "pglite";
/// How long [`Embedded::close`] waits for the engine to stop (it takes well under a
/// second when it does).
const STOP_WAIT: Duration = Duration::from_secs(15);

/// Why the embedded store could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// Another process holds the data directory.
    #[error("the embedded store in {dir} is in use by {holder}")]
    Held {
        /// The data directory.
        dir: PathBuf,
        /// "pid N: command" as the holder wrote it, or "another process".
        holder: String,
    },
    /// There is no store there yet, and this command does not create one.
    #[error("there is no embedded store in {0} yet")]
    Missing(PathBuf),
    /// Anything else (file system, the engine failing to start).
    #[error("cannot open the embedded store in {dir}: {source:#}")]
    Other {
        /// The data directory.
        dir: PathBuf,
        /// The cause.
        source: anyhow::Error,
    },
}

/// A running embedded database and the lock on its data directory. Dropping it stops the
/// engine; [`Embedded::close`] does so after closing the store's connection.
#[derive(Debug)]
pub struct Embedded {
    dir: PathBuf,
    server: Option<pglite_oxide::PgliteServer>,
    /// Held for as long as the engine runs (the lock is released when the file closes,
    /// also when the process dies).
    lock: Option<File>,
}

impl Embedded {
    /// Locks `dir` for `command` (recorded for whoever finds it held), starts the engine
    /// and returns a store over one connection to it. `create`: make the directory and
    /// a fresh cluster if there is none (only `serve` and `migrate` do).
    pub async fn open(
        dir: &Path,
        command: &str,
        create: bool,
    ) -> Result<(Embedded, Store), OpenError> {
        let other = |source: anyhow::Error| OpenError::Other {
            dir: dir.to_owned(),
            source,
        };
        if !dir.join(CLUSTER_DIR).is_dir() && !create {
            return Err(OpenError::Missing(dir.to_owned()));
        }
        std::fs::create_dir_all(dir).map_err(|e| other(e.into()))?;
        restrict(dir).map_err(|e| other(e.into()))?;
        let dir = std::fs::canonicalize(dir).map_err(|e| other(e.into()))?;
        let lock = lock(&dir, command)?;
        let builder = pglite_oxide::PgliteServer::builder()
            .path(dir.join(CLUSTER_DIR))
            .username(USER)
            .database(DATABASE);
        #[cfg(unix)]
        let builder = match socket_path(&dir) {
            Some(socket) => builder.unix(socket),
            None => builder,
        };
        let server = tokio::task::spawn_blocking(move || builder.start())
            .await
            .map_err(|e| other(e.into()))?
            .map_err(|e| OpenError::Other {
                dir: dir.clone(),
                source: e,
            })?;
        let options = connect_options(&server).map_err(|e| other(e.into()))?;
        // Exactly one connection, opened now and kept: the engine serves one backend,
        // and reconnecting would restart its session for nothing. Waiting for it is
        // waiting for the request ahead, so allow as long as a request may take.
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(options)
            .await
            .map_err(|e| other(e.into()))?;
        Ok((
            Embedded {
                dir,
                server: Some(server),
                lock: Some(lock),
            },
            Store::new(pool),
        ))
    }

    /// The (absolute) data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Closes the store's connection, then stops the engine (which writes a checkpoint),
    /// waiting at most [`STOP_WAIT`] for it.
    ///
    /// The engine's listener now and then stays in a client stream after the pool has
    /// closed it, and would never stop: a CLI command hung at its exit (seen once in a
    /// full test run, `token list`). Leaving without the checkpoint is safe (every
    /// acknowledged transaction is in the WAL, replayed at the next open, as after a
    /// kill -9), so past the wait this says so and returns; the lock is released when
    /// the process exits. The engine is stopped on a thread of its own, not the
    /// runtime's blocking pool, whose shutdown would wait for it.
    pub async fn close(mut self, store: &Store) {
        store.pool().close().await;
        if let Some(server) = self.server.take() {
            let lock = self.lock.take();
            let (done, stopped) = tokio::sync::oneshot::channel();
            std::thread::spawn(move || {
                let result = server.shutdown();
                drop(lock);
                let _ = done.send(result);
            });
            match tokio::time::timeout(STOP_WAIT, stopped).await {
                Ok(Ok(Ok(()))) => {}
                Ok(Ok(Err(e))) => tracing::warn!(error = %e, "embedded store shutdown failed"),
                Ok(Err(_)) => tracing::warn!("embedded store shutdown thread ended early"),
                Err(_) => tracing::warn!(
                    dir = %self.dir.display(),
                    "the embedded engine did not stop within {} s; leaving without its \
                     checkpoint (the next start replays the write-ahead log)",
                    STOP_WAIT.as_secs()
                ),
            }
        }
        self.lock.take();
    }
}

/// A Unix socket in the data directory (mode 0700), so only its owner can connect, when
/// its path fits a socket address (about 100 bytes); else the engine's default, a
/// loopback TCP port.
#[cfg(unix)]
fn socket_path(dir: &Path) -> Option<PathBuf> {
    let path = dir.join(".s.PGSQL.5432");
    (path.as_os_str().len() < 100).then_some(path)
}

/// How sqlx reaches the engine: its Unix socket (sqlx wants the socket's directory and
/// port, not the `host=` URL the engine writes), or its TCP URL.
fn connect_options(server: &pglite_oxide::PgliteServer) -> Result<PgConnectOptions, sqlx::Error> {
    #[cfg(unix)]
    if let Some(dir) = server.socket_path().and_then(Path::parent) {
        return Ok(PgConnectOptions::new_without_pgpass()
            .socket(dir)
            .port(5432)
            .username(USER)
            .database(DATABASE));
    }
    server.connection_uri().parse()
}

/// The data directory holds every token hash and the secrets key: its owner only.
fn restrict(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// Takes the directory's lock without waiting and records who holds it.
fn lock(dir: &Path, command: &str) -> Result<File, OpenError> {
    let path = dir.join(LOCK_FILE);
    let other = |e: std::io::Error| OpenError::Other {
        dir: dir.to_owned(),
        source: e.into(),
    };
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(other)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = holder.trim();
            return Err(OpenError::Held {
                dir: dir.to_owned(),
                holder: if holder.is_empty() {
                    "another process".into()
                } else {
                    holder.to_owned()
                },
            });
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(other(e)),
    }
    file.set_len(0).map_err(other)?;
    file.rewind().map_err(other)?;
    writeln!(file, "pid {}: scimbridge {command}", std::process::id()).map_err(other)?;
    file.flush().map_err(other)?;
    Ok(file)
}

impl Embedded {
    /// Stops the engine and then frees the directory, blocking until both are done: for
    /// a caller off the async runtime (a test harness deleting the directory next). The
    /// engine stops only once the store's connection has closed, so drop every clone of
    /// the store's pool first (or from another thread).
    pub fn stop_blocking(mut self) {
        if let Some(server) = self.server.take() {
            if let Err(e) = server.shutdown() {
                tracing::warn!(error = %e, "embedded store shutdown failed");
            }
        }
        self.lock.take();
    }
}

impl Drop for Embedded {
    fn drop(&mut self) {
        // Not closed with `close` (an error path, a test's end): stopping the engine
        // waits for its client to disconnect, so do it off the async runtime's thread,
        // and keep the directory locked until it has stopped.
        if let Some(server) = self.server.take() {
            let lock = self.lock.take();
            std::thread::spawn(move || {
                let _ = server.shutdown();
                drop(lock);
            });
        }
    }
}
