//! One fresh, migrated database per test, on whichever store the machine has:
//!
//! - `DATABASE_URL` set: a uniquely named database on that Postgres server, dropped when
//!   the test ends (what `#[sqlx::test]` did; pool of up to 5 connections like it).
//! - otherwise: a temporary embedded store (cargo feature `embedded`) in its own
//!   directory, stopped and deleted when the test ends. Its pool has one connection,
//!   like `scimbridge serve` on the embedded store.
//!
//! A fresh embedded cluster costs an `initdb` and every migration; instead each test
//! process builds one migrated template directory once and copies it per test.
//! Directories are kept under `scimbridge-tests-<pid>` in the temp dir; a test process
//! removes those of processes that no longer run (the last tests' engines may still be
//! stopping when the process exits, so it cannot always delete its own).
//!
//! Tests that need a real server (a second connection: a transaction held while the app
//! answers, LISTEN, CLI children on the same database) start with
//! [`needs_server!`](crate::needs_server), which skips them on the embedded store.

#[cfg(feature = "embedded")]
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, Executor, PgPool};

/// Skips the rest of the test on the embedded store, saying so on stderr (written
/// directly, so it shows without `--nocapture`) with the reason.
#[macro_export]
macro_rules! needs_server {
    ($db:expr, $why:expr) => {
        if $db.is_embedded() {
            $crate::db::skip_line($why);
            return;
        }
    };
}

/// Prints the skip line of [`needs_server!`].
pub fn skip_line(why: &str) {
    use std::io::Write;
    let test = std::thread::current()
        .name()
        .map(str::to_owned)
        .unwrap_or_default();
    let _ = writeln!(
        std::io::stderr(),
        "{test}: skipped: needs DATABASE_URL (a Postgres server): {why}"
    );
}

/// The test's database; dropping it deletes the database.
pub struct TestDb {
    pool: PgPool,
    kind: Kind,
}

enum Kind {
    Server {
        /// `DATABASE_URL`, where the test database is dropped from.
        admin: PgConnectOptions,
        name: String,
    },
    #[cfg(feature = "embedded")]
    Embedded {
        engine: Option<scimbridge::db::embedded::Embedded>,
        dir: PathBuf,
    },
}

/// A fresh database for one test (see the module docs).
pub async fn test_db() -> TestDb {
    match server_url() {
        Some(url) => server_db(&url).await,
        None => embedded_db().await,
    }
}

/// Whether tests run on the Postgres server at `DATABASE_URL` (else on embedded stores).
pub fn on_server() -> bool {
    server_url().is_some()
}

fn server_url() -> Option<String> {
    std::env::var("DATABASE_URL").ok().filter(|u| !u.is_empty())
}

impl TestDb {
    /// A pool on the test's database (clones share its connections).
    pub fn pool(&self) -> PgPool {
        self.pool.clone()
    }

    /// Whether this is a temporary embedded store (one connection, no server).
    pub fn is_embedded(&self) -> bool {
        !matches!(self.kind, Kind::Server { .. })
    }
}

async fn server_db(url: &str) -> TestDb {
    let admin = PgConnectOptions::from_str(url).expect("DATABASE_URL is a Postgres URL");
    let name = format!("scimbridge_test_{}", uuid::Uuid::new_v4().simple());
    let mut conn = admin
        .connect()
        .await
        .unwrap_or_else(|e| panic!("cannot reach DATABASE_URL ({url}): {e}"));
    conn.execute(format!("create database {name}").as_str())
        .await
        .expect("create the test database");
    conn.close().await.ok();
    let pool = PgPoolOptions::new()
        .max_connections(5)
        .idle_timeout(Some(Duration::from_secs(1)))
        .connect_with(admin.clone().database(&name))
        .await
        .expect("connect to the test database");
    scimbridge::db::MIGRATOR
        .run(&pool)
        .await
        .expect("migrate the test database");
    TestDb {
        pool,
        kind: Kind::Server { admin, name },
    }
}

#[cfg(not(feature = "embedded"))]
async fn embedded_db() -> TestDb {
    panic!("DATABASE_URL is not set and this build has no embedded store (feature `embedded`)")
}

#[cfg(feature = "embedded")]
async fn embedded_db() -> TestDb {
    use scimbridge::db::embedded::Embedded;
    let template = template();
    let dir = process_root().join(uuid::Uuid::new_v4().simple().to_string());
    let from = template.clone();
    let to = dir.clone();
    tokio::task::spawn_blocking(move || copy_dir(&from, &to))
        .await
        .expect("copy task")
        .expect("copy the template store");
    let (engine, store) = Embedded::open(&dir, "test", false)
        .await
        .expect("open the test's embedded store");
    TestDb {
        pool: store.pool().clone(),
        kind: Kind::Embedded {
            engine: Some(engine),
            dir,
        },
    }
}

/// `scimbridge-tests-<pid>` in the temp dir, after removing those of dead processes.
#[cfg(feature = "embedded")]
fn process_root() -> &'static Path {
    static ROOT: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    ROOT.get_or_init(|| {
        let tmp = std::env::temp_dir();
        if let Ok(entries) = std::fs::read_dir(&tmp) {
            for entry in entries.flatten() {
                let name = entry.file_name();
                let pid = name
                    .to_str()
                    .and_then(|n| n.strip_prefix("scimbridge-tests-"))
                    .and_then(|p| p.parse::<i32>().ok());
                if pid.is_some_and(|pid| !alive(pid)) {
                    let _ = std::fs::remove_dir_all(entry.path());
                }
            }
        }
        let root = tmp.join(format!("scimbridge-tests-{}", std::process::id()));
        std::fs::create_dir_all(&root).expect("create the tests' temp dir");
        root
    })
}

#[cfg(feature = "embedded")]
fn alive(pid: i32) -> bool {
    use nix::errno::Errno;
    !matches!(
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None),
        Err(Errno::ESRCH)
    )
}

/// The migrated template store of this process, built on first use (on its own thread
/// and runtime: the first test's runtime is busy waiting for it).
#[cfg(feature = "embedded")]
fn template() -> PathBuf {
    static TEMPLATE: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    TEMPLATE
        .get_or_init(|| {
            let dir = process_root().join("template");
            let at = dir.clone();
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime");
                rt.block_on(async {
                    let (engine, store) =
                        scimbridge::db::embedded::Embedded::open(&at, "test template", true)
                            .await
                            .expect("create the template embedded store");
                    store.migrate().await.expect("migrate the template store");
                    engine.close(&store).await;
                });
            })
            .join()
            .expect("build the template store");
            dir
        })
        .clone()
}

/// Copies the template's files (not its lock file or the engine's socket).
#[cfg(feature = "embedded")]
fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        let target = to.join(entry.file_name());
        if kind.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else if kind.is_file() && entry.file_name() != "scimbridge.lock" {
            std::fs::copy(entry.path(), &target)?;
        } else if kind.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(entry.path())?, &target)?;
        }
    }
    Ok(())
}

impl Drop for TestDb {
    fn drop(&mut self) {
        match &mut self.kind {
            // Dropped from its own thread and runtime: the test's runtime is the one
            // dropping this. `with (force)` ends connections the app still holds.
            Kind::Server { admin, name } => {
                let admin = admin.clone();
                let drop_db = format!("drop database if exists {name} with (force)");
                let done = std::thread::spawn(move || {
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .expect("runtime");
                    rt.block_on(async {
                        let mut conn = admin.connect().await?;
                        conn.execute(drop_db.as_str()).await?;
                        conn.close().await
                    })
                })
                .join();
                if let Ok(Err(e)) = done {
                    eprintln!("could not drop the test database {name}: {e}");
                }
            }
            // The engine stops once the test's runtime, and with it the pool's one
            // connection, is gone: stop it and delete the directory on a thread of its
            // own rather than hold up the next test.
            #[cfg(feature = "embedded")]
            Kind::Embedded { engine, dir } => {
                if let Some(engine) = engine.take() {
                    let dir = dir.clone();
                    std::thread::spawn(move || {
                        engine.stop_blocking();
                        let _ = std::fs::remove_dir_all(dir);
                    });
                }
            }
        }
    }
}
