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

#[tokio::test]
async fn a_deadlocked_create_is_retried_inside_the_server_and_answered_201() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
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

#[tokio::test]
async fn a_write_that_keeps_deadlocking_is_a_503_with_retry_after_and_changes_nothing() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
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

#[tokio::test]
async fn concurrent_creates_on_a_fresh_database_all_succeed() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
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
    let list: Value = app.scim_get("/Users?count=1").await;
    assert_eq!(list["totalResults"], json!(clients * per_client));
}

async fn total_users(app: &TestApp) -> Value {
    let list: Value = app.scim_get("/Users?count=1").await;
    list["totalResults"].clone()
}

#[tokio::test]
async fn writes_do_not_wait_for_the_live_user_counter_and_the_total_stays_exact() {
    let db = crate::db::test_db().await;
    crate::needs_server!(
        db,
        "holds a transaction in a second connection while the app writes"
    );
    let pool = db.pool();
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

#[tokio::test]
async fn the_sla_sweep_skips_a_task_a_writer_holds_instead_of_waiting() {
    let db = crate::db::test_db().await;
    crate::needs_server!(
        db,
        "holds a task row locked in a second connection while the sweep runs"
    );
    let pool = db.pool();
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

const PROVISIONING: &str = "urn:scimbridge:params:scim:schemas:extension:provisioning:1.0:User";

#[tokio::test]
async fn reads_by_id_and_by_name_show_the_same_document_through_a_task_lifecycle() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let app = &TestApp::spawn(pool).await;
    let created = app.create_user(okta_user("Ann@Corp.com")).await;
    let id = &created["id"].as_str().unwrap().to_owned();
    let get = move |path: String| async move {
        let res = app.scim(Method::GET, &path).send().await.unwrap();
        assert_eq!(res.status(), 200, "{path}");
        res.json::<Value>().await.unwrap()
    };
    // The provisioning extension is `returned: request`.
    let by_id = move || get(format!("/Users/{id}"));
    let state = move || async move {
        get(format!("/Users/{id}?attributes={PROVISIONING}")).await[PROVISIONING].clone()
    };
    let by_name = move |start: u32| {
        get(format!(
            "/Users?filter=userName%20eq%20%22ann@corp.COM%22&startIndex={start}"
        ))
    };
    let read = by_id().await;
    assert_eq!(read, created, "the read shows what the create answered");
    let found = by_name(1).await;
    assert_eq!(found["totalResults"], 1);
    assert_eq!(found["Resources"][0], read);
    let past = by_name(2).await;
    assert_eq!(past["totalResults"], 1);
    assert!(
        past.get("Resources").is_none() || past["Resources"] == json!([]),
        "startIndex past the one match: {past}"
    );
    let pending = state().await;
    assert_eq!(pending["state"], "pending", "{pending}");
    let task_id = pending["openTaskId"].as_str().unwrap().to_owned();

    let t = app.claim(&app.agent_token).await.unwrap();
    assert_eq!(t["id"].to_string(), task_id);
    let held = state().await;
    assert_eq!(held["state"], "pending", "in progress is still pending");
    assert_eq!(held["openTaskId"], task_id.as_str());
    app.complete(&t, json!({"outcome": "done"})).await;
    let done = state().await;
    assert_eq!(done["state"], "synced", "{done}");
    assert!(done.get("openTaskId").is_none(), "{done}");
    let synced = get(format!(
        "/Users?filter={PROVISIONING}:state%20eq%20%22synced%22"
    ))
    .await;
    assert_eq!(synced["totalResults"], 1);
    assert_eq!(synced["Resources"][0], by_name(1).await["Resources"][0]);

    // Deactivation plans a new task: the row shows it at once.
    let res = app
        .patch(
            &format!("/Users/{id}"),
            json!([{"op": "replace", "path": "active", "value": false}]),
        )
        .await;
    assert_eq!(res.status(), 200);
    let patched: Value = res.json().await.unwrap();
    assert_eq!(by_id().await, patched);
    let next = state().await;
    assert_eq!(next["state"], "pending", "{next}");
    assert_ne!(next["openTaskId"].as_str().unwrap(), task_id);
}

async fn unsealed(pool: &PgPool) -> i64 {
    count(pool, "select count(*) from audit where chain_seq is null").await
}

async fn verify(app: &TestApp) -> Value {
    let res = app
        .api(Method::GET, "/audit/verify", &app.admin_token)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    res.json().await.unwrap()
}

#[tokio::test]
async fn audited_writes_do_not_wait_for_the_chain_and_are_sealed_within_a_second() {
    let db = crate::db::test_db().await;
    crate::needs_server!(
        db,
        "holds the audit chain head in a second connection while the app writes"
    );
    let pool = db.pool();
    let app = TestApp::spawn(pool).await;
    // Someone holds the app's chain head (before issue #13 every audited write linked its
    // records under it at commit, so every write of the app would wait here).
    let mut holder = app.pool.begin().await.unwrap();
    sqlx::query("select 1 from audit_head where app_id = 'peopleai' for update")
        .execute(&mut *holder)
        .await
        .unwrap();
    for name in ["ann@corp.com", "bob@corp.com"] {
        let res = app
            .scim(Method::POST, "/Users")
            .json(&okta_user(name))
            .timeout(std::time::Duration::from_secs(5))
            .send()
            .await
            .expect("a write does not wait for the chain head");
        assert_eq!(res.status(), 201);
    }
    assert_eq!(unsealed(&app.pool).await, 4, "written unsealed");
    holder.rollback().await.unwrap();

    let start = std::time::Instant::now();
    while unsealed(&app.pool).await > 0 {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(1),
            "the sealer links committed records within a second"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let chain: Vec<(i64, i64)> =
        sqlx::query_as("select audit_id, chain_seq from audit order by chain_seq")
            .fetch_all(&app.pool)
            .await
            .unwrap();
    assert_eq!(chain.iter().map(|c| c.1).collect::<Vec<_>>(), [1, 2, 3, 4]);
    let v = verify(&app).await;
    assert_eq!(
        (v["ok"].clone(), v["records"].clone(), v["unsealed"].clone()),
        (json!(true), json!(4), json!(0)),
        "{v}"
    );
}

#[tokio::test]
async fn a_sealed_record_edited_or_removed_is_named_by_verify() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let app = std::sync::Arc::new(TestApp::spawn(pool).await);
    let mut writers = Vec::new();
    for i in 0..20 {
        let app = app.clone();
        writers.push(tokio::spawn(async move {
            app.create_user(okta_user(&format!("u{i}@corp.com"))).await;
        }));
    }
    for w in writers {
        w.await.unwrap();
    }
    let v = verify(&app).await;
    assert_eq!(
        (v["ok"].clone(), v["records"].clone()),
        (json!(true), json!(40)),
        "a user.create and a task.create per user: {v}"
    );
    let (victim, seq): (i64, i64) =
        sqlx::query_as("select audit_id, chain_seq from audit where chain_seq = 7")
            .fetch_one(&app.pool)
            .await
            .unwrap();
    sqlx::query("update audit set detail = '{\"userName\": \"forged\"}' where audit_id = $1")
        .bind(victim)
        .execute(&app.pool)
        .await
        .unwrap();
    let v = verify(&app).await;
    assert_eq!(v["ok"], false);
    assert_eq!(v["first_broken"]["audit_id"], victim);
    assert_eq!(v["first_broken"]["chain_seq"], seq);
    sqlx::query("delete from audit where chain_seq = 3")
        .execute(&app.pool)
        .await
        .unwrap();
    let v = verify(&app).await;
    assert_eq!(
        v["first_broken"]["chain_seq"], 4,
        "the record after the gap is named"
    );
}

#[tokio::test]
async fn sealing_compaction_and_verify_need_one_database_connection_only() {
    let db = crate::db::test_db().await;
    let pool = db.pool();
    let app = TestApp::spawn(pool).await;
    for i in 0..10 {
        app.create_user(okta_user(&format!("u{i}@corp.com"))).await;
    }
    // A store with a pool of one connection (the embedded store's size): none of these
    // may hold its connection while waiting for a second one. On the embedded store,
    // the app's own store is that.
    let store = if db.is_embedded() {
        app.store.clone()
    } else {
        let one = sqlx::postgres::PgPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(std::time::Duration::from_secs(5))
            .connect_with((*app.pool.connect_options()).clone())
            .await
            .unwrap();
        scimbridge::db::Store::new(one)
    };
    let work = async {
        store.seal_audit().await.unwrap();
        store.compact_user_counts().await.unwrap();
        store.verify_audit("peopleai").await.unwrap()
    };
    let v = tokio::time::timeout(std::time::Duration::from_secs(30), work)
        .await
        .expect("nothing waits for a second connection");
    assert!(v.ok, "{v:?}");
    assert_eq!((v.records, v.unsealed), (20, 0));
    assert_eq!(total_users(&app).await, json!(10));
}

/// Issue #13: tables an IdP's first push filled get planner statistics from the server
/// itself (an `offset` deep into a list is planned from them), once they grew past the
/// threshold; and not again until they grow by half once more.
#[tokio::test]
async fn tables_just_filled_through_the_api_are_analyzed_by_the_server() {
    let db = crate::db::test_db().await;
    let app = TestApp::spawn(db.pool()).await;
    // Autovacuum would analyze these few rows too (50 changes and 10 %): here only the
    // server may, as where autovacuum is off or has not come round yet.
    sqlx::query("alter table scim_user set (autovacuum_enabled = false)")
        .execute(&app.pool)
        .await
        .unwrap();
    for i in 0..30 {
        app.create_user(okta_user(&format!("filled{i}@corp.com")))
            .await;
    }
    let analyses = || async {
        count(
            &app.pool,
            "select analyze_count + autoanalyze_count from pg_stat_user_tables \
             where relname = 'scim_user' and schemaname = current_schema()",
        )
        .await
    };
    let before = analyses().await;
    // Postgres publishes a backend's row counts a moment after its transaction (at most
    // every second, or when it goes idle): ask until the creates show.
    let mut grown = Vec::new();
    for _ in 0..60 {
        grown = app.store.analyze_grown_tables(20).await.unwrap();
        if grown.iter().any(|t| t == "scim_user") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    assert!(
        grown.iter().any(|t| t == "scim_user"),
        "analyzed: {grown:?}"
    );
    let mut after = analyses().await;
    for _ in 0..20 {
        if after > before {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        after = analyses().await;
    }
    assert_eq!(after, before + 1, "one ANALYZE of scim_user");
    let again = app.store.analyze_grown_tables(20).await.unwrap();
    assert!(
        !again.iter().any(|t| t == "scim_user"),
        "nothing changed since: {again:?}"
    );
}
