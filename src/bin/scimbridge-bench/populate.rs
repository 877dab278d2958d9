//! Filling the benchmark database: set-based SQL and `VACUUM ANALYZE` (a database in
//! service), or the HTTP API on a fresh database (a new deployment's first IdP push).

use std::sync::Arc;

use serde_json::json;
use sqlx::PgPool;
use uuid::Uuid;

use crate::load::{drive, Outcome};
use crate::scenarios::{check, full_user, received, user_name, APP, ENTERPRISE, MINIMAL_TABLES};

/// Seeds users and groups with set-based SQL (one statement per table, no per-row round
/// trips), then `VACUUM ANALYZE`s, as autovacuum would have on a database in service.
pub async fn seed(pool: &PgPool, users: usize, groups: usize) -> anyhow::Result<()> {
    // Realistic documents: names, work email, title, enterprise department, every 10th
    // user inactive. Everyone is synced (confirmed = the account the profile would
    // derive), except the last fifth, who wait for their create_account task (the queue
    // the drain works).
    let waiting = (users / 5).min(20_000);
    // The live-user counter's trigger runs once per row at commit; for one statement
    // inserting N rows it would update the counter row N times in one transaction. The
    // server never writes more than a Bulk request (1000 operations) at once, so the
    // seed sets the counter itself.
    sqlx::query("alter table scim_user disable trigger scim_user_live_count")
        .execute(pool)
        .await?;
    sqlx::query(&format!(
        r#"
        insert into scim_user (user_id, app_id, user_name, external_id, active, emails, doc, confirmed, confirmed_at)
        select gen_random_uuid(), '{APP}', n.name, 'ext-' || i, i % 10 <> 0, array[n.name],
               jsonb_build_object(
                 'userName', n.name, 'externalId', 'ext-' || i,
                 'name', jsonb_build_object('givenName', 'Given' || i, 'familyName', 'Family' || i,
                                            'formatted', 'Given' || i || ' Family' || i),
                 'displayName', 'Given' || i || ' Family' || i,
                 'title', 'Title ' || (i % 50),
                 'emails', jsonb_build_array(jsonb_build_object('value', n.name, 'type', 'work', 'primary', true)),
                 'active', i % 10 <> 0,
                 '{ENTERPRISE}', jsonb_build_object('department', 'Dept ' || (i % 20), 'employeeNumber', i::text)),
               case when i < $2 then jsonb_build_object(
                 'user_name', n.name, 'email', n.name, 'given_name', 'Given' || i, 'family_name', 'Family' || i,
                 'display_name', 'Given' || i || ' Family' || i, 'department', 'Dept ' || (i % 20),
                 'role', 'Standard', 'active', i % 10 <> 0) end,
               case when i < $2 then now() end
          from generate_series(0, $1 - 1) i,
               lateral (select 'user' || lpad(i::text, 7, '0') || '@bench.example' as name) n
         order by i
        "#
    ))
    .bind(users as i64)
    .bind((users - waiting) as i64)
    .execute(pool)
    .await?;
    sqlx::query(&format!(
        "insert into app_user_count (app_id, live) \
         select '{APP}', count(*) from scim_user where app_id = '{APP}' and deleted_at is null \
         on conflict (app_id) do update set live = excluded.live"
    ))
    .execute(pool)
    .await?;
    sqlx::query("alter table scim_user enable trigger scim_user_live_count")
        .execute(pool)
        .await?;
    sqlx::query(&format!(
        "insert into scim_group (group_id, app_id, display_name, doc) \
         select gen_random_uuid(), '{APP}', 'Team ' || i, jsonb_build_object('displayName', 'Team ' || i) \
           from generate_series(0, $1 - 1) i order by i"
    ))
    .bind(groups as i64)
    .execute(pool)
    .await?;
    sqlx::query(
        "insert into group_member (group_id, user_id) \
         select g.group_id, u.user_id from scim_user u \
           join (select group_id, row_number() over (order by seq) - 1 as k from scim_group) g \
             on g.k = (u.seq % $1)",
    )
    .bind(groups as i64)
    .execute(pool)
    .await?;
    sqlx::query(&format!(
        "insert into task (app_id, user_id, kind, title, instructions, changes, target) \
         select '{APP}', u.user_id, 'create_account', 'Create People.ai account for ' || u.user_name, \
                '[]', '[]', jsonb_build_object('user_name', u.user_name, 'email', u.user_name, \
                'given_name', u.doc->'name'->>'givenName', 'family_name', u.doc->'name'->>'familyName', \
                'display_name', u.doc->>'displayName', 'department', u.doc->'{ENTERPRISE}'->>'department', \
                'role', 'Standard', 'active', u.active) \
           from scim_user u where u.confirmed is null order by u.seq"
    ))
    .execute(pool)
    .await?;
    sqlx::query("vacuum analyze").execute(pool).await?;
    Ok(())
}

/// What populating through the API measured.
pub struct Populated {
    /// The first creates on the empty database (`--burst`).
    pub burst: Outcome,
    /// The remaining creates.
    pub import: Outcome,
    /// Group creation and the membership PATCHes that fill them.
    pub groups: Outcome,
}

/// Creates `users` users and `groups` groups through the HTTP API from `concurrency`
/// clients, as an IdP's first push does: every user by `POST /Users` (the first `burst`
/// of them measured on their own), then each group by `POST /Groups` and its members by
/// `PATCH add members`, 100 per request. User i is `user_name(i)`, in group i mod M.
pub async fn through_api(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    pool: &PgPool,
    (users, groups, burst, concurrency): (usize, usize, usize, usize),
) -> anyhow::Result<Populated> {
    let burst = burst.min(users);
    let create = |offset: usize| {
        let (http, url, token) = (
            http.clone(),
            format!("{base}/scim/v2/Users"),
            token.to_owned(),
        );
        move |n: u64| {
            let (http, url, token) = (http.clone(), url.clone(), token.clone());
            async move {
                let i = offset + n as usize;
                let body = full_user(&user_name(i), i as u64);
                Some(received(http.post(url).bearer_auth(token).json(&body).send().await).await)
            }
        }
    };
    let hour = 3600.0;
    let first = drive(concurrency, burst as u64, hour, create(0)).await;
    let rest = drive(concurrency, (users - burst) as u64, hour, create(burst)).await;

    let ids = Arc::new(user_ids(pool).await?);
    let started = std::time::Instant::now();
    let mut group_ids = Vec::new();
    for k in 0..groups {
        let v = check(
            http.post(format!("{base}/scim/v2/Groups"))
                .bearer_auth(token)
                .json(
                    &json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
                              "displayName": format!("Team {k}")}),
                )
                .send()
                .await,
        )
        .await
        .map_err(|e| anyhow::anyhow!("creating group {k}: {e}"))?;
        let id = v["id"].as_str().and_then(|s| Uuid::parse_str(s).ok());
        group_ids.push(id.ok_or_else(|| anyhow::anyhow!("group {k} answered without an id"))?);
    }
    // One PATCH per 100 members of a group, spread over the clients.
    let chunks: Arc<Vec<(Uuid, Vec<Uuid>)>> = Arc::new(
        group_ids
            .iter()
            .enumerate()
            .flat_map(|(k, g)| {
                let members: Vec<Uuid> = ids
                    .iter()
                    .skip(k)
                    .step_by(groups)
                    .map(|(_, id)| *id)
                    .collect();
                members
                    .chunks(100)
                    .map(|c| (*g, c.to_vec()))
                    .collect::<Vec<_>>()
            })
            .collect(),
    );
    let (h, b, t) = (http.clone(), base.to_owned(), token.to_owned());
    let cs = chunks.clone();
    let mut filled = drive(concurrency, chunks.len() as u64, hour, move |n| {
        let (h, b, t, cs) = (h.clone(), b.clone(), t.clone(), cs.clone());
        async move {
            let (g, members) = &cs[n as usize];
            let value: Vec<_> = members.iter().map(|m| json!({"value": m})).collect();
            let body = json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                "Operations": [{"op": "add", "path": "members", "value": value}]});
            Some(
                received(
                    h.patch(format!("{b}/scim/v2/Groups/{g}?excludedAttributes=members"))
                        .bearer_auth(t)
                        .json(&body)
                        .send()
                        .await,
                )
                .await,
            )
        }
    })
    .await;
    filled.secs = started.elapsed().as_secs_f64();
    Ok(Populated {
        burst: first,
        import: rest,
        groups: filled,
    })
}

/// The benchmark users that exist, (name, id) in index order (names are zero-padded, so
/// name order is index order).
pub async fn user_ids(pool: &PgPool) -> anyhow::Result<Vec<(String, Uuid)>> {
    Ok(sqlx::query_as(
        "select user_name, user_id from scim_user where user_name like 'user%@bench.example' \
         and deleted_at is null order by user_name",
    )
    .fetch_all(pool)
    .await?)
}

/// Creates the minimal create's tables (see [`MINIMAL_TABLES`]).
pub async fn minimal_tables(pool: &PgPool) -> anyhow::Result<()> {
    for (raw, like) in MINIMAL_TABLES {
        sqlx::query(&format!("create table {raw} (like {like} including all)"))
            .execute(pool)
            .await?;
    }
    Ok(())
}

/// Turns autovacuum (and with it auto-analyze) off or on for every table of the
/// benchmark database: a `--fresh` run keeps the planner without statistics for its
/// whole fresh phase, as a deployment is during and just after its first import.
pub async fn autovacuum(pool: &PgPool, on: bool) -> anyhow::Result<()> {
    let tables: Vec<String> = sqlx::query_scalar(
        "select quote_ident(relname) from pg_class c join pg_namespace n on n.oid = c.relnamespace \
         where n.nspname = 'public' and c.relkind = 'r'",
    )
    .fetch_all(pool)
    .await?;
    for t in tables {
        sqlx::query(&format!("alter table {t} set (autovacuum_enabled = {on})"))
            .execute(pool)
            .await?;
    }
    Ok(())
}

/// What the planner knows of `scim_user`: the row count it assumes (`pg_class.reltuples`,
/// -1 or 0 until an ANALYZE or VACUUM of the filled table) and whether it has column
/// statistics (`pg_stats`).
pub async fn planner_knowledge(pool: &PgPool) -> anyhow::Result<(i64, bool)> {
    Ok(sqlx::query_as(
        "select c.reltuples::bigint, exists (select 1 from pg_stats s where s.tablename = 'scim_user') \
         from pg_class c where c.relname = 'scim_user'",
    )
    .fetch_one(pool)
    .await?)
}
