//! Running the handler program for one task and reading what it said.
//!
//! The contract (also in README.md, "Automate it: the agent"):
//! - stdin: the task JSON exactly as the claim returned it, then end of file;
//! - env: `SCIMBRIDGE_TASK_ID`, `SCIMBRIDGE_TASK_KIND`, `SCIMBRIDGE_LEASE_ID` (the agent's
//!   token is removed: a handler works the app, not the queue);
//! - exit 0: done; stdout is empty or `{"fields": {…}, "note": "…", "attachments": […]}`;
//! - exit [`EXIT_NOT_APPLICABLE`] (3): not applicable; the note is stdout's `note`, else
//!   stdout, else the stderr tail;
//! - anything else (another code, a signal, a timeout, stdout that is not that JSON):
//!   failed, with the last [`STDERR_TAIL`] bytes of stderr in the note.
//!
//! The handler runs in a process group of its own, so that a timeout or a shutdown can
//! stop everything it started (a shell script's `sleep`, `curl`, …) and a Ctrl-C in the
//! agent's terminal reaches the agent only, which then decides whether to wait for it.

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Map, Value};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};
use tokio::sync::watch;

use super::Phase;
use crate::client::{Attachment, Completion, Outcome, Task};

/// Exit code by which a handler says "nothing to do" (not_applicable). 3 because 1 and 2
/// are what shells and interpreters use for their own errors.
pub const EXIT_NOT_APPLICABLE: i32 = 3;
/// How much of the handler's stderr ends up in the note of a failed task.
pub const STDERR_TAIL: usize = 2048;
/// Largest stdout read; more is discarded (and makes the JSON invalid, so: failed).
const MAX_STDOUT: usize = 1024 * 1024;
/// How long a handler asked to stop (SIGTERM) has before it is killed (SIGKILL).
const TERM_GRACE: Duration = Duration::from_secs(5);
/// How long to wait, after the handler exited, for its pipes to close: a background
/// process it left behind may hold them open forever.
const PIPE_GRACE: Duration = Duration::from_secs(2);

/// The program to run for each task.
#[derive(Debug, Clone)]
pub struct Handler {
    /// Path or name (looked up in PATH) of the program.
    pub program: PathBuf,
    /// Longest a handler may run; `None` for no limit.
    pub timeout: Option<Duration>,
}

/// How a handler run ended.
#[derive(Debug)]
pub enum Ending {
    /// It exited on its own (or was killed by a signal someone else sent).
    Exited(ExitStatus),
    /// It ran longer than the timeout and was stopped.
    TimedOut(Duration),
    /// The agent is shutting down and the grace period ran out: it was stopped.
    Stopped,
    /// It could not be started at all.
    NotStarted(std::io::Error),
}

impl std::fmt::Display for Ending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use std::os::unix::process::ExitStatusExt as _;
        match self {
            Ending::Exited(s) => match (s.code(), s.signal()) {
                (Some(c), _) => write!(f, "exit {c}"),
                (None, Some(sig)) => write!(f, "signal {sig}"),
                _ => write!(f, "{s}"),
            },
            Ending::TimedOut(t) => write!(f, "timed out after {}s", t.as_secs()),
            Ending::Stopped => f.write_str("stopped on shutdown"),
            Ending::NotStarted(e) => write!(f, "not started: {e}"),
        }
    }
}

/// What a handler run produced.
#[derive(Debug)]
pub struct Run {
    /// How it ended.
    pub ending: Ending,
    /// Its stdout (at most 1 MiB).
    pub stdout: Vec<u8>,
    /// The end of its stderr.
    pub stderr: Vec<u8>,
}

/// What a handler may print on stdout.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Report {
    #[serde(default)]
    fields: Map<String, Value>,
    #[serde(default)]
    note: Option<String>,
    #[serde(default)]
    attachments: Vec<Attachment>,
}

impl Handler {
    /// Runs the handler for `task` and waits for it, stopping it when it times out or
    /// when `phase` turns to [`Phase::Kill`].
    pub async fn run(&self, task: &Task, phase: &mut watch::Receiver<Phase>) -> Run {
        let mut cmd = Command::new(&self.program);
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .env("SCIMBRIDGE_TASK_ID", task.id.to_string())
            .env("SCIMBRIDGE_TASK_KIND", &task.kind)
            .env(
                "SCIMBRIDGE_LEASE_ID",
                task.lease_id.as_deref().unwrap_or(""),
            )
            .env_remove("SCIMBRIDGE_TOKEN")
            .process_group(0)
            .kill_on_drop(true);
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => {
                return Run {
                    ending: Ending::NotStarted(e),
                    stdout: Vec::new(),
                    stderr: Vec::new(),
                }
            }
        };
        // The process group is the child's pid (process_group(0)); remembered now
        // because the pid is gone from `child` once it has been reaped.
        let group = child.id().and_then(|p| i32::try_from(p).ok());
        feed_stdin(&mut child, &task.raw);
        let stdout = child
            .stdout
            .take()
            .map(|s| tokio::spawn(read_head(s, MAX_STDOUT)));
        let stderr = child
            .stderr
            .take()
            .map(|s| tokio::spawn(read_tail(s, STDERR_TAIL)));

        let timeout = async {
            match self.timeout {
                Some(t) => tokio::time::sleep(t).await,
                None => std::future::pending().await,
            }
        };
        let ending = tokio::select! {
            status = child.wait() => match status {
                Ok(s) => Ending::Exited(s),
                // Waiting failed (should not happen): treat as a crash of the handler.
                Err(e) => Ending::NotStarted(e),
            },
            _ = timeout => {
                stop(&mut child, group).await;
                Ending::TimedOut(self.timeout.unwrap_or_default())
            }
            _ = super::killing(phase) => {
                stop(&mut child, group).await;
                Ending::Stopped
            }
        };
        let stdout = collect(stdout, group).await;
        let stderr = collect(stderr, group).await;
        Run {
            ending,
            stdout,
            stderr,
        }
    }
}

/// Writes the task JSON to the handler's stdin and closes it, in the background: a
/// handler that does not read stdin must not block the agent (its pipe would fill).
fn feed_stdin(child: &mut Child, task: &Value) {
    if let Some(mut stdin) = child.stdin.take() {
        let mut body = serde_json::to_vec(task).unwrap_or_default();
        body.push(b'\n');
        tokio::spawn(async move {
            // A handler that exits without reading gives EPIPE; that is its choice.
            let _ = stdin.write_all(&body).await;
            let _ = stdin.shutdown().await;
        });
    }
}

/// Asks the handler's whole process group to stop, then kills it if it does not.
async fn stop(child: &mut Child, group: Option<i32>) {
    signal_group(group, nix::sys::signal::Signal::SIGTERM);
    if tokio::time::timeout(TERM_GRACE, child.wait())
        .await
        .is_err()
    {
        signal_group(group, nix::sys::signal::Signal::SIGKILL);
        let _ = child.start_kill();
        let _ = child.wait().await;
    }
}

fn signal_group(group: Option<i32>, signal: nix::sys::signal::Signal) {
    if let Some(g) = group {
        // ESRCH (the group is already gone) is the expected case after an exit.
        let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(g), signal);
    }
}

/// Waits for a pipe reader; if the pipe stays open after the handler exited (a
/// background process inherited it), kills what is left of the group and keeps what
/// was read so far.
async fn collect(reader: Option<tokio::task::JoinHandle<Vec<u8>>>, group: Option<i32>) -> Vec<u8> {
    let Some(mut reader) = reader else {
        return Vec::new();
    };
    match tokio::time::timeout(PIPE_GRACE, &mut reader).await {
        Ok(r) => r.unwrap_or_default(),
        Err(_) => {
            signal_group(group, nix::sys::signal::Signal::SIGKILL);
            tokio::time::timeout(PIPE_GRACE, reader)
                .await
                .ok()
                .and_then(Result::ok)
                .unwrap_or_default()
        }
    }
}

/// Reads everything, keeping the first `max` bytes.
async fn read_head(mut r: impl AsyncRead + Unpin, max: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => return out,
            Ok(n) => {
                let room = max.saturating_sub(out.len());
                out.extend_from_slice(&buf[..n.min(room)]);
                if n > room {
                    // Marks the overflow so the JSON is invalid rather than silently cut.
                    out.truncate(max);
                    out.push(0);
                }
            }
        }
    }
}

/// Reads everything, keeping the last `max` bytes.
async fn read_tail(mut r: impl AsyncRead + Unpin, max: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => return out,
            Ok(n) => {
                out.extend_from_slice(&buf[..n]);
                // Trim in chunks, not on every read, to keep this linear.
                if out.len() > 4 * max {
                    out.drain(..out.len() - max);
                }
            }
        }
    }
}

/// The last `STDERR_TAIL` bytes of stderr as text, starting at a line boundary when
/// one is near, so the note does not begin mid-word.
pub fn tail_text(stderr: &[u8]) -> String {
    let start = stderr.len().saturating_sub(STDERR_TAIL);
    let text = String::from_utf8_lossy(&stderr[start..]);
    let text = text.trim_end();
    if start > 0 {
        if let Some(nl) = text.find('\n').filter(|&nl| nl < 200) {
            return format!("…{}", &text[nl..]);
        }
        return format!("…{text}");
    }
    text.to_owned()
}

/// Turns a handler run into the completion to send. `None` means the task must be
/// released rather than completed: the agent stopped the handler on shutdown.
pub fn completion(program: &Path, run: Run) -> Option<Completion> {
    let stderr = tail_text(&run.stderr);
    let failed = |why: String| {
        let mut c = Completion::new(Outcome::Failed);
        c.note = Some(if stderr.is_empty() {
            format!("{why} (no stderr)")
        } else {
            format!("{why}; stderr:\n{stderr}")
        });
        c
    };
    let status = match run.ending {
        Ending::Stopped => return None,
        Ending::NotStarted(e) => {
            return Some(failed(format!(
                "handler {} could not be run: {e}",
                program.display()
            )))
        }
        Ending::TimedOut(t) => {
            return Some(failed(format!(
                "handler {} ran longer than {}s and was stopped",
                program.display(),
                t.as_secs()
            )))
        }
        Ending::Exited(status) => status,
    };
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stdout = stdout.trim();
    match status.code() {
        Some(0) => match parse_report(stdout) {
            Ok(r) => Some(Completion {
                note: r.note,
                fields: r.fields,
                attachments: r.attachments,
                ..Completion::new(Outcome::Done)
            }),
            Err(e) => Some(failed(format!(
                "handler exited 0 but its stdout is not {{\"fields\": {{…}}, \"note\": \"…\"}}: {e}"
            ))),
        },
        Some(EXIT_NOT_APPLICABLE) => {
            let note = match parse_report(stdout) {
                Ok(r) if r.note.is_some() => r.note,
                _ if !stdout.is_empty() => Some(stdout.to_owned()),
                _ if !stderr.is_empty() => Some(stderr.clone()),
                _ => Some(format!(
                    "handler exited {EXIT_NOT_APPLICABLE}: nothing to do"
                )),
            };
            let mut c = Completion::new(Outcome::NotApplicable);
            c.note = note;
            Some(c)
        }
        Some(code) => Some(failed(format!("handler exited with status {code}"))),
        None => {
            use std::os::unix::process::ExitStatusExt as _;
            let sig = status.signal().unwrap_or_default();
            Some(failed(format!("handler was killed by signal {sig}")))
        }
    }
}

fn parse_report(stdout: &str) -> Result<Report, String> {
    if stdout.is_empty() {
        return Ok(Report::default());
    }
    serde_json::from_str::<Report>(stdout).map_err(|e| e.to_string())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt as _;

    fn run(code: i32, stdout: &str, stderr: &str) -> Run {
        Run {
            ending: Ending::Exited(ExitStatus::from_raw(code << 8)),
            stdout: stdout.as_bytes().to_vec(),
            stderr: stderr.as_bytes().to_vec(),
        }
    }

    fn p() -> &'static Path {
        Path::new("./h")
    }

    #[test]
    fn exit_0_is_done_with_the_reported_fields() {
        let c = completion(
            p(),
            run(
                0,
                r#"{"fields": {"app_account_id": "pa-1"}, "note": "ok"}"#,
                "",
            ),
        )
        .unwrap();
        assert_eq!(c.outcome, Outcome::Done);
        assert_eq!(c.fields["app_account_id"], "pa-1");
        assert_eq!(c.note.as_deref(), Some("ok"));
        let c = completion(p(), run(0, "  \n", "")).unwrap();
        assert_eq!(
            (c.outcome, c.fields.len(), c.note),
            (Outcome::Done, 0, None)
        );
    }

    #[test]
    fn exit_0_with_other_stdout_fails() {
        for out in ["done!", r#"{"field": {}}"#, "[1]"] {
            let c = completion(p(), run(0, out, "oops")).unwrap();
            assert_eq!(c.outcome, Outcome::Failed, "{out}");
            assert!(c.note.unwrap().contains("oops"));
        }
    }

    #[test]
    fn exit_3_is_not_applicable_with_a_note() {
        let c = completion(p(), run(3, r#"{"note": "never had an account"}"#, "")).unwrap();
        assert_eq!(
            (c.outcome, c.note.as_deref()),
            (Outcome::NotApplicable, Some("never had an account"))
        );
        let c = completion(p(), run(3, "", "no such user\n")).unwrap();
        assert_eq!(c.note.as_deref(), Some("no such user"));
        let c = completion(p(), run(3, "plain words", "")).unwrap();
        assert_eq!(c.note.as_deref(), Some("plain words"));
    }

    #[test]
    fn other_endings_fail_with_the_stderr_tail() {
        let long: String = (0..500).map(|i| format!("line {i}\n")).collect();
        let c = completion(p(), run(1, "", &long)).unwrap();
        assert_eq!(c.outcome, Outcome::Failed);
        let note = c.note.unwrap();
        assert!(
            note.starts_with("handler exited with status 1; stderr:\n…"),
            "{note}"
        );
        assert!(note.ends_with("line 499"));
        assert!(note.len() < STDERR_TAIL + 100);
        assert!(completion(
            p(),
            Run {
                ending: Ending::Stopped,
                stdout: vec![],
                stderr: vec![]
            }
        )
        .is_none());
        let killed = Run {
            ending: Ending::Exited(ExitStatus::from_raw(9)),
            stdout: vec![],
            stderr: vec![],
        };
        assert!(completion(p(), killed)
            .unwrap()
            .note
            .unwrap()
            .contains("signal 9"));
    }
}
