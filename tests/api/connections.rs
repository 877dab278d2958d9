//! Issue #14 item 2, slowloris: the listener closes connections that send a request head
//! too slowly or stay idle, and serves at most `--max-connections` at once.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::helpers::TestApp;
use scimbridge::config::Config;

fn connect(app: &TestApp) -> TcpStream {
    let s = TcpStream::connect(app.root.trim_start_matches("http://")).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s
}

/// Reads until the server closes the connection (or the read timeout); returns what
/// came and when the close was seen.
fn until_closed(s: &mut TcpStream) -> (String, Instant) {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => panic!("no close within the read timeout: {e}"),
        }
    }
    (String::from_utf8_lossy(&got).into_owned(), Instant::now())
}

fn short(config: Config) -> Config {
    Config {
        header_read_timeout_secs: 1,
        idle_timeout_secs: 2,
        ..config
    }
}

#[tokio::test]
async fn a_slow_request_head_is_cut_off_after_the_header_timeout() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let app = TestApp::spawn_with(pool, short(Config::for_tests())).await;
    let (elapsed, answer) = tokio::task::spawn_blocking({
        let mut s = connect(&app);
        move || {
            let started = Instant::now();
            // Headers trickle in, never finished (slowloris).
            s.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n")
                .unwrap();
            let trickle = s.try_clone().unwrap();
            std::thread::spawn(move || {
                let mut t = trickle;
                for i in 0..20 {
                    std::thread::sleep(Duration::from_millis(200));
                    if t.write_all(format!("X-Slow-{i}: 1\r\n").as_bytes())
                        .is_err()
                    {
                        return;
                    }
                }
            });
            let (answer, closed) = until_closed(&mut s);
            (closed - started, answer)
        }
    })
    .await
    .unwrap();
    assert!(
        answer.is_empty() || answer.contains("408") || answer.starts_with("HTTP/1.1 4"),
        "{answer}"
    );
    assert!(
        elapsed >= Duration::from_millis(900) && elapsed < Duration::from_secs(3),
        "closed after {elapsed:?}, not at the 1 s header timeout"
    );
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_idle_timeout() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let app = TestApp::spawn_with(pool, short(Config::for_tests())).await;
    let (answer, elapsed) = tokio::task::spawn_blocking({
        let mut s = connect(&app);
        move || {
            s.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
                .unwrap();
            let answered = Instant::now();
            let (answer, closed) = until_closed(&mut s);
            (answer, closed - answered)
        }
    })
    .await
    .unwrap();
    // The request was answered on a kept-alive connection, then left idle.
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        elapsed >= Duration::from_millis(1900) && elapsed < Duration::from_secs(5),
        "closed after {elapsed:?}, not at the 2 s idle timeout"
    );
    // A connection that never sends anything is idle too.
    let elapsed = tokio::task::spawn_blocking({
        let mut s = connect(&app);
        move || {
            let started = Instant::now();
            let (answer, closed) = until_closed(&mut s);
            assert!(answer.is_empty(), "{answer}");
            closed - started
        }
    })
    .await
    .unwrap();
    assert!(
        elapsed >= Duration::from_millis(1900) && elapsed < Duration::from_secs(5),
        "closed after {elapsed:?}"
    );
}

#[tokio::test]
async fn connections_beyond_the_cap_wait_until_one_closes() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let config = Config {
        max_connections: 2,
        // Long enough not to interfere: the cap alone is under test.
        header_read_timeout_secs: 30,
        idle_timeout_secs: 30,
        ..Config::for_tests()
    };
    let app = TestApp::spawn_with(pool, config).await;
    let healthz = |s: &mut TcpStream| -> String {
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut answer = String::new();
        let _ = s.read_to_string(&mut answer);
        answer
    };
    let (first, second, third) = (connect(&app), connect(&app), connect(&app));
    let third = tokio::task::spawn_blocking(move || {
        let mut third = third;
        third
            .set_read_timeout(Some(Duration::from_millis(1500)))
            .unwrap();
        // Two connections are served (idle); the third is not, so it gets no answer.
        let waiting = healthz(&mut third);
        assert!(
            waiting.is_empty(),
            "the third connection was served: {waiting}"
        );
        third
    })
    .await
    .unwrap();
    drop(first);
    let answer = tokio::task::spawn_blocking(move || {
        let mut third = third;
        third
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut answer = String::new();
        let _ = third.read_to_string(&mut answer);
        answer
    })
    .await
    .unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    drop(second);
}
