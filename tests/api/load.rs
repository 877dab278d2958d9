//! First-day load (issue #13): an IdP's initial push on a fresh database, many writers
//! at once, and transaction conflicts retried inside the server instead of answered 500.

use reqwest::Method;
use serde_json::{json, Value};
use sqlx::PgPool;

use crate::helpers::{assert_scim_error, okta_user, TestApp};

/// Makes the next `fail` inserts into scim_user abort with `40P01 deadlock_detected`,
/// exactly as Postgres aborts the victim of a real deadlock (the whole transaction rolls
/// back). The count is a sequence, which a rollback does not undo.
async fn inject_deadlocks(pool: &PgPool, fail: i64) {
    for sql in [
        "create sequence injected_deadlock".to_string(),
        format!(
            "create function inject_deadlock() returns trigger language plpgsql as $$ \
             begin \
               if nextval('injected_deadlock') <= {fail} then \
                 raise exception 'deadlock detected (injected by the test)' using errcode = 'deadlock_detected'; \
               end if; \
               return new; \
             end $$"
        ),
        "create trigger inject_deadlock before insert on scim_user \
         for each row execute function inject_deadlock()"
            .to_string(),
    ] {
        sqlx::query(&sql).execute(pool).await.unwrap();
    }
}

async fn attempts(pool: &PgPool) -> i64 {
    sqlx::query_scalar("select last_value from injected_deadlock")
        .fetch_one(pool)
        .await
        .unwrap()
}

async fn count(pool: &PgPool, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(pool).await.unwrap()
}

#[sqlx::test]
async fn a_deadlocked_create_is_retried_inside_the_server_and_answered_201(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    inject_deadlocks(&app.pool, 2).await;
    let res = app
        .scim(Method::POST, "/Users")
        .json(&okta_user("ann@corp.com"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201, "{}", res.text().await.unwrap());
    assert_eq!(
        attempts(&app.pool).await,
        3,
        "two aborted attempts, then one that commits"
    );
    assert_eq!(count(&app.pool, "select count(*) from scim_user").await, 1);
    assert_eq!(
        count(&app.pool, "select count(*) from task").await,
        1,
        "one task, not one per attempt"
    );
    assert_eq!(
        count(
            &app.pool,
            "select count(*) from audit where action = 'user.create'"
        )
        .await,
        1
    );
}

#[sqlx::test]
async fn a_write_that_keeps_deadlocking_is_a_503_with_retry_after_and_changes_nothing(
    pool: PgPool,
) {
    let app = TestApp::spawn(pool).await;
    inject_deadlocks(&app.pool, 1_000).await;
    let res = app
        .scim(Method::POST, "/Users")
        .json(&okta_user("ann@corp.com"))
        .send()
        .await
        .unwrap();
    assert!(res.headers().contains_key("retry-after"));
    assert_scim_error(res, 503, None).await;
    assert_eq!(
        attempts(&app.pool).await,
        i64::from(scimbridge::db::retry::ATTEMPTS),
        "a bounded number of attempts"
    );
    assert_eq!(count(&app.pool, "select count(*) from scim_user").await, 0);
    assert_eq!(count(&app.pool, "select count(*) from audit").await, 0);
}

#[sqlx::test]
async fn concurrent_creates_on_a_fresh_database_all_succeed(pool: PgPool) {
    let app = std::sync::Arc::new(TestApp::spawn(pool).await);
    let clients = 16;
    let per_client = 25;
    let mut handles = Vec::new();
    for c in 0..clients {
        let app = app.clone();
        handles.push(tokio::spawn(async move {
            let mut failures = Vec::new();
            for i in 0..per_client {
                let res = app
                    .scim(Method::POST, "/Users")
                    .json(&okta_user(&format!("u{c}-{i}@corp.com")))
                    .send()
                    .await
                    .unwrap();
                if !res.status().is_success() {
                    failures.push(format!("{}: {}", res.status(), res.text().await.unwrap()));
                }
            }
            failures
        }));
    }
    let mut failures = Vec::new();
    for h in handles {
        failures.extend(h.await.unwrap());
    }
    assert_eq!(
        failures,
        Vec::<String>::new(),
        "every create of the burst is a 2xx"
    );
    let list: Value = app
        .scim(Method::GET, "/Users?count=1")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["totalResults"], json!(clients * per_client));
}

async fn total_users(app: &TestApp) -> Value {
    let list: Value = app
        .scim(Method::GET, "/Users?count=1")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    list["totalResults"].clone()
}

#[sqlx::test]
async fn writes_do_not_wait_for_the_live_user_counter_and_the_total_stays_exact(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    let ann = app.create_user(okta_user("ann@corp.com")).await;
    // Someone holds the app's counter row (before issue #13 every create and delete
    // updated it at commit, so all of them would wait here).
    let mut holder = app.pool.begin().await.unwrap();
    sqlx::query(
        "insert into app_user_count (app_id, live) values ('peopleai', 0) on conflict do nothing",
    )
    .execute(&mut *holder)
    .await
    .unwrap();
    sqlx::query("select 1 from app_user_count where app_id = 'peopleai' for update")
        .execute(&mut *holder)
        .await
        .unwrap();
    let quick = std::time::Duration::from_secs(5);
    for name in ["bob@corp.com", "cy@corp.com"] {
        let res = app
            .scim(Method::POST, "/Users")
            .json(&okta_user(name))
            .timeout(quick)
            .send()
            .await
            .expect("a create does not wait for the counter row");
        assert_eq!(res.status(), 201);
    }
    let res = app
        .scim(
            Method::DELETE,
            &format!("/Users/{}", ann["id"].as_str().unwrap()),
        )
        .timeout(quick)
        .send()
        .await
        .expect("a delete does not wait for the counter row");
    assert_eq!(res.status(), 204);
    assert_eq!(total_users(&app).await, json!(2));
    holder.rollback().await.unwrap();

    // The housekeeper folds the deltas into the app's row; the total does not move.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while count(&app.pool, "select count(*) from app_user_count_delta").await > 0 {
        assert!(std::time::Instant::now() < deadline, "deltas are compacted");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(
        count(
            &app.pool,
            "select live from app_user_count where app_id = 'peopleai'"
        )
        .await,
        2
    );
    assert_eq!(total_users(&app).await, json!(2));
}

#[sqlx::test]
async fn the_sla_sweep_skips_a_task_a_writer_holds_instead_of_waiting(pool: PgPool) {
    let app = TestApp::spawn(pool).await;
    app.create_user(okta_user("ann@corp.com")).await;
    app.create_user(okta_user("bob@corp.com")).await;
    sqlx::query(
        "update task set created_at = now() - interval '100 hours', due_at = now() - interval '1 hour'",
    )
    .execute(&app.pool)
    .await
    .unwrap();
    let held: i64 = sqlx::query_scalar("select min(task_id) from task")
        .fetch_one(&app.pool)
        .await
        .unwrap();
    // A write is in the middle of changing one task (a completion, a claim, a SCIM write).
    let mut writer = app.pool.begin().await.unwrap();
    sqlx::query("select 1 from task where task_id = $1 for update")
        .bind(held)
        .execute(&mut *writer)
        .await
        .unwrap();
    let report = tokio::time::timeout(std::time::Duration::from_secs(5), app.store.sweep())
        .await
        .expect("the sweep does not wait for the writer")
        .unwrap();
    assert_eq!(
        report.overdue, 1,
        "the free task is marked, the held one left"
    );
    let state: String = sqlx::query_scalar("select sla_state from task where task_id = $1")
        .bind(held)
        .fetch_one(&app.pool)
        .await
        .unwrap();
    assert_eq!(state, "ok");
    writer.commit().await.unwrap();
    // The next sweep catches up.
    assert_eq!(app.store.sweep().await.unwrap().overdue, 1);
    assert_eq!(
        count(
            &app.pool,
            "select count(*) from task where sla_state = 'overdue'"
        )
        .await,
        2
    );
}
