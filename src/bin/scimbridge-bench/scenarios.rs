//! The scenarios, each run three ways: over HTTP against the server, through the server's
//! own store in-process (the same SQL and code the handlers call, no HTTP), and as the
//! minimal SQL the operation needs at the least (where one is defined).

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use rand::Rng;
use scimbridge::auth::Actor;
use scimbridge::db::filter::ListQuery;
use scimbridge::db::lifecycle::{Completion, Lease, Outcome as TaskOutcome};
use scimbridge::db::Store;
use scimbridge::scim::list::{Page, Paging};
use scimbridge::scim::members::MemberDelta;
use scimbridge::scim::patch::PatchRequest;
use scimbridge::scim::schema::USER_RESOURCE;
use scimbridge::scim::{patch, resource};
use serde_json::{json, Value};
use sqlx::PgPool;
use uuid::Uuid;

use crate::load::OpResult;

/// The app every scenario works in.
pub const APP: &str = "peopleai";
const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
/// The enterprise extension's URN (RFC 7643 §4.3).
pub const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

/// What the scenarios share: ids to pick from, tokens, the server, the store.
pub struct Ctx {
    pub http: reqwest::Client,
    pub base: String,
    /// Bearer token of the IdP (`scim` role).
    pub scim: String,
    /// Bearer token of the task drain's agents.
    pub agent: String,
    /// The same actors, for the store side.
    pub scim_actor: Actor,
    pub agent_actor: Actor,
    /// The server's store, in this process, on its own pool of the server's size.
    pub store: Store,
    /// A pool of the same size for the minimal SQL.
    pub pool: PgPool,
    /// The benchmark users (`user_name(i)`, id) that exist, in index order.
    pub ids: Vec<(String, Uuid)>,
    pub groups: Vec<Uuid>,
    pub users: usize,
    pub run: String,
    pub created: AtomicU64,
    pub drained: Mutex<HashSet<i64>>,
    pub duplicates: AtomicU64,
}

/// The userName of the i-th benchmark user (zero-padded, so names sort as indexes do).
pub fn user_name(i: usize) -> String {
    format!("user{i:07}@bench.example")
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scenario {
    RoundTrip,
    GetById,
    FilterHit,
    FilterMiss,
    IndexWalk,
    CursorWalk,
    PatchUser,
    PutUser,
    PatchGroup,
    PatchGroupLean,
    Create,
    MixedSync,
    Drain,
}

pub const ALL: [Scenario; 13] = [
    Scenario::RoundTrip,
    Scenario::GetById,
    Scenario::FilterHit,
    Scenario::FilterMiss,
    Scenario::IndexWalk,
    Scenario::CursorWalk,
    Scenario::PatchUser,
    Scenario::PutUser,
    Scenario::PatchGroup,
    Scenario::PatchGroupLean,
    Scenario::Create,
    Scenario::MixedSync,
    Scenario::Drain,
];

/// The reads measured again after `ANALYZE` in `--fresh` runs.
pub const READS: [Scenario; 5] = [
    Scenario::GetById,
    Scenario::FilterHit,
    Scenario::FilterMiss,
    Scenario::IndexWalk,
    Scenario::CursorWalk,
];

impl Scenario {
    pub fn name(self) -> &'static str {
        match self {
            Scenario::RoundTrip => "round_trip",
            Scenario::GetById => "get_by_id",
            Scenario::FilterHit => "filter_hit",
            Scenario::FilterMiss => "filter_miss",
            Scenario::IndexWalk => "index_walk_page",
            Scenario::CursorWalk => "cursor_walk_page",
            Scenario::PatchUser => "patch_user",
            Scenario::PutUser => "put_user",
            Scenario::PatchGroup => "patch_group_add",
            Scenario::PatchGroupLean => "patch_group_add_lean",
            Scenario::Create => "create_user",
            Scenario::MixedSync => "mixed_okta_sync",
            Scenario::Drain => "task_drain",
        }
    }

    /// Clients of the scenario: the task drain always runs 4 agents.
    pub fn workers(self, concurrency: usize) -> usize {
        if self == Scenario::Drain {
            4
        } else {
            concurrency
        }
    }

    /// Whether a minimal-SQL floor is defined (see [`minimal_op`]).
    pub fn has_minimal(self) -> bool {
        matches!(
            self,
            Scenario::RoundTrip
                | Scenario::GetById
                | Scenario::FilterHit
                | Scenario::FilterMiss
                | Scenario::Create
        )
    }

    /// The scenario the mixed Okta sync runs for a roll of 0..100.
    fn mixed(roll: u32) -> Scenario {
        match roll {
            0..=69 => Scenario::FilterHit,
            70..=79 => Scenario::GetById,
            80..=89 => Scenario::PatchUser,
            90..=94 => Scenario::PutUser,
            _ => Scenario::Create,
        }
    }
}

fn pick(ctx: &Ctx) -> (&str, Uuid) {
    let (name, id) = &ctx.ids[rand::thread_rng().gen_range(0..ctx.ids.len())];
    (name, *id)
}

fn pick_group(ctx: &Ctx) -> Uuid {
    ctx.groups[rand::thread_rng().gen_range(0..ctx.groups.len())]
}

fn patch_body() -> Value {
    let mut rng = rand::thread_rng();
    let n: u32 = rng.gen_range(0..1_000_000);
    let mut ops = vec![
        json!({"op": "Replace", "path": "displayName", "value": format!("Person {n}")}),
        json!({"op": "Replace", "path": "title", "value": format!("Title {}", n % 50)}),
    ];
    if rng.gen_ratio(1, 4) {
        let v = if rng.gen_bool(0.5) { "False" } else { "True" };
        ops.push(json!({"op": "Replace", "path": "active", "value": v}));
    }
    json!({"schemas": [PATCH_OP], "Operations": ops})
}

/// An Okta-style full user (POST and PUT bodies).
pub fn full_user(name: &str, n: u64) -> Value {
    json!({
        "schemas": [USER_SCHEMA, ENTERPRISE],
        "userName": name,
        "externalId": format!("ext-{name}"),
        "name": {"givenName": format!("Given{n}"), "familyName": format!("Family{n}"),
                 "formatted": format!("Given{n} Family{n}")},
        "displayName": format!("Given{n} Family{n}"),
        "title": format!("Title {}", n % 50),
        "emails": [{"value": name, "type": "work", "primary": true}],
        "active": true,
        ENTERPRISE: {"department": format!("Dept {}", n % 20), "employeeNumber": n.to_string()},
    })
}

/// The `userName eq` filter Okta and Entra send before every create.
fn name_filter(name: &str) -> String {
    format!("userName eq \"{name}\"")
}

fn filter_url(ctx: &Ctx, name: &str) -> String {
    let mut u = reqwest::Url::parse(&format!("{}/scim/v2/Users", ctx.base)).expect("url");
    u.query_pairs_mut()
        .append_pair("filter", &name_filter(name))
        .append_pair("startIndex", "1")
        .append_pair("count", "100");
    u.to_string()
}

/// A random cursor position (`None`: the first page).
fn cursor_position(ctx: &Ctx) -> Option<i64> {
    let after = rand::thread_rng().gen_range(0..ctx.users.max(1) as i64);
    (after > 0).then_some(after)
}

fn random_page(ctx: &Ctx) -> i64 {
    let pages = ctx.users.div_ceil(100).max(1);
    rand::thread_rng().gen_range(0..pages) as i64
}

/// Checks a status and parses the body as JSON.
pub async fn check(r: reqwest::Result<reqwest::Response>) -> Result<Value, String> {
    let r = r.map_err(|e| e.to_string())?;
    let status = r.status();
    if status == reqwest::StatusCode::NO_CONTENT {
        return Ok(Value::Null);
    }
    let body = r.text().await.map_err(|e| e.to_string())?;
    if !status.is_success() {
        return Err(format!(
            "{status}: {}",
            body.chars().take(300).collect::<String>()
        ));
    }
    serde_json::from_str(&body).map_err(|e| e.to_string())
}

/// Like [`check`] for scenarios that look at nothing in the answer: the body is read in
/// full but not parsed.
pub async fn received(r: reqwest::Result<reqwest::Response>) -> OpResult {
    let r = r.map_err(|e| e.to_string())?;
    let status = r.status();
    let body = r.bytes().await.map_err(|e| e.to_string())?;
    if status.is_success() {
        Ok(())
    } else {
        Err(format!(
            "{status}: {}",
            String::from_utf8_lossy(&body)
                .chars()
                .take(300)
                .collect::<String>()
        ))
    }
}

fn expect_total(total: Option<i64>, want: i64, what: &str) -> OpResult {
    match total {
        Some(t) if t == want => Ok(()),
        other => Err(format!("{what} found {other:?}")),
    }
}

fn record_done(ctx: &Ctx, id: i64) {
    let fresh = ctx.drained.lock().map(|mut s| s.insert(id)).unwrap_or(true);
    if !fresh {
        ctx.duplicates.fetch_add(1, Ordering::Relaxed);
    }
}

/// What a person records on completion: every required field, the first choice when
/// the field offers some.
fn completion_fields<'a>(
    fields: impl Iterator<Item = (&'a str, bool, Option<&'a str>)>,
) -> serde_json::Map<String, Value> {
    fields
        .filter(|(_, required, _)| *required)
        .map(|(name, _, choice)| {
            (
                name.to_owned(),
                json!(choice.unwrap_or("recorded by the benchmark")),
            )
        })
        .collect()
}

// ---- HTTP ----

/// One HTTP operation of a scenario.
pub async fn http_op(ctx: Arc<Ctx>, s: Scenario, n: u64) -> Option<OpResult> {
    let h = &ctx.http;
    let scim = |rb: reqwest::RequestBuilder| rb.bearer_auth(&ctx.scim).send();
    Some(match s {
        Scenario::RoundTrip => received(h.get(format!("{}/healthz", ctx.base)).send().await).await,
        Scenario::GetById => {
            let (_, id) = pick(&ctx);
            received(scim(h.get(format!("{}/scim/v2/Users/{id}", ctx.base))).await).await
        }
        Scenario::FilterHit => {
            let (name, _) = pick(&ctx);
            let r = check(scim(h.get(filter_url(&ctx, name))).await).await;
            r.and_then(|v| expect_total(v["totalResults"].as_i64(), 1, "filter hit"))
        }
        Scenario::FilterMiss => {
            let name = format!("nobody{n}@bench.example");
            let r = check(scim(h.get(filter_url(&ctx, &name))).await).await;
            r.and_then(|v| expect_total(v["totalResults"].as_i64(), 0, "filter miss"))
        }
        Scenario::IndexWalk => {
            let start = random_page(&ctx) * 100 + 1;
            let url = format!("{}/scim/v2/Users?startIndex={start}&count=100", ctx.base);
            received(scim(h.get(url)).await).await
        }
        Scenario::CursorWalk => {
            let cursor = cursor_position(&ctx).map_or(String::new(), |p| format!("c{p}"));
            let url = format!("{}/scim/v2/Users?cursor={cursor}&count=100", ctx.base);
            received(scim(h.get(url)).await).await
        }
        Scenario::PatchUser => {
            let (_, id) = pick(&ctx);
            let url = format!("{}/scim/v2/Users/{id}", ctx.base);
            received(scim(h.patch(url).json(&patch_body())).await).await
        }
        Scenario::PutUser => {
            let (name, id) = pick(&ctx);
            let url = format!("{}/scim/v2/Users/{id}", ctx.base);
            received(scim(h.put(url).json(&full_user(name, n))).await).await
        }
        Scenario::PatchGroup => {
            let g = pick_group(&ctx);
            let (_, id) = pick(&ctx);
            let body = json!({"schemas": [PATCH_OP], "Operations": [
                {"op": "add", "path": "members", "value": [{"value": id}]}]});
            let url = format!("{}/scim/v2/Groups/{g}", ctx.base);
            received(scim(h.patch(url).json(&body)).await).await
        }
        // The same group push from a client that does not want the members back (issue
        // #13: its cost must not grow with the group).
        Scenario::PatchGroupLean => {
            let g = pick_group(&ctx);
            let (_, id) = pick(&ctx);
            let body = json!({"schemas": [PATCH_OP], "Operations": [
                {"op": "add", "path": "members", "value": [{"value": id}]}]});
            let url = format!("{}/scim/v2/Groups/{g}?excludedAttributes=members", ctx.base);
            received(scim(h.patch(url).json(&body)).await).await
        }
        Scenario::Create => {
            let k = ctx.created.fetch_add(1, Ordering::Relaxed);
            let name = format!("new-{}-{k}@bench.example", ctx.run);
            let url = format!("{}/scim/v2/Users", ctx.base);
            received(scim(h.post(url).json(&full_user(&name, k))).await).await
        }
        Scenario::MixedSync => {
            let s = Scenario::mixed(rand::thread_rng().gen_range(0..100));
            return Box::pin(http_op(ctx.clone(), s, n)).await;
        }
        Scenario::Drain => {
            let url = format!("{}/api/v1/tasks/claim", ctx.base);
            let claimed = match check(
                h.post(url)
                    .bearer_auth(&ctx.agent)
                    .json(&json!({}))
                    .send()
                    .await,
            )
            .await
            {
                Ok(Value::Null) => return None,
                Ok(v) => v,
                Err(e) => return Some(Err(e)),
            };
            let id = claimed["id"].as_i64().unwrap_or_default();
            let fields = completion_fields(
                claimed["completion_fields"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|f| {
                        (
                            f["name"].as_str().unwrap_or_default(),
                            f["required"].as_bool() == Some(true),
                            f["choices"][0].as_str(),
                        )
                    }),
            );
            let body =
                json!({"outcome": "done", "lease_id": claimed["lease_id"], "fields": fields});
            let url = format!("{}/api/v1/tasks/{id}/complete", ctx.base);
            let r = check(h.post(url).bearer_auth(&ctx.agent).json(&body).send().await).await;
            record_done(&ctx, id);
            r.map(drop)
        }
    })
}

// ---- The store: the server's own SQL and code, without HTTP ----

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

async fn store_list(ctx: &Ctx, filter: Option<&str>, paging: Paging) -> Result<i64, String> {
    let filter = filter
        .map(scimbridge::scim::filter::parse_filter)
        .transpose()
        .map_err(err)?;
    let q = ListQuery {
        filter: filter.as_ref(),
        sort: None,
        paging: &paging,
    };
    let (total, _, _) = ctx.store.list_users(APP, q).await.map_err(err)?;
    Ok(total)
}

fn first_page() -> Paging {
    Paging::Index(Page {
        start_index: 1,
        count: 100,
    })
}

/// One operation of a scenario through the store (what the handler calls).
pub async fn store_op(ctx: Arc<Ctx>, s: Scenario, n: u64) -> Option<OpResult> {
    let st = &ctx.store;
    let actor = &ctx.scim_actor;
    Some(match s {
        Scenario::RoundTrip => {
            if st.ping().await {
                Ok(())
            } else {
                Err("ping failed".into())
            }
        }
        Scenario::GetById => st.user(APP, pick(&ctx).1).await.map(drop).map_err(err),
        Scenario::FilterHit => {
            let name = pick(&ctx).0;
            store_list(&ctx, Some(&name_filter(name)), first_page())
                .await
                .and_then(|t| expect_total(Some(t), 1, "filter hit"))
        }
        Scenario::FilterMiss => {
            let name = format!("nobody{n}@bench.example");
            store_list(&ctx, Some(&name_filter(&name)), first_page())
                .await
                .and_then(|t| expect_total(Some(t), 0, "filter miss"))
        }
        Scenario::IndexWalk => {
            let page = Page {
                start_index: random_page(&ctx) * 100 + 1,
                count: 100,
            };
            store_list(&ctx, None, Paging::Index(page)).await.map(drop)
        }
        Scenario::CursorWalk => {
            let paging = Paging::Cursor {
                after: cursor_position(&ctx),
                count: 100,
            };
            store_list(&ctx, None, paging).await.map(drop)
        }
        Scenario::PatchUser => {
            let req: PatchRequest = match serde_json::from_value(patch_body()) {
                Ok(r) => r,
                Err(e) => return Some(Err(err(e))),
            };
            st.update_user(actor, pick(&ctx).1, "user.patch", None, |mut doc| {
                std::future::ready(
                    patch::apply(&mut doc, &req.operations, &USER_RESOURCE)
                        .map_err(Into::into)
                        .and_then(|()| resource::normalize(doc, &USER_RESOURCE)),
                )
            })
            .await
            .map(drop)
            .map_err(err)
        }
        Scenario::PutUser => {
            let (name, id) = pick(&ctx);
            let doc = match resource::normalize(full_user(name, n), &USER_RESOURCE) {
                Ok(d) => d,
                Err(e) => return Some(Err(err(e))),
            };
            st.update_user(actor, id, "user.replace", None, |_| {
                std::future::ready(Ok(doc.clone()))
            })
            .await
            .map(drop)
            .map_err(err)
        }
        Scenario::PatchGroup | Scenario::PatchGroupLean => {
            let delta = MemberDelta {
                add: vec![(pick(&ctx).1.to_string(), None)],
                remove: Vec::new(),
            };
            let with_members = s == Scenario::PatchGroup;
            st.patch_group_members(actor, pick_group(&ctx), None, &delta, with_members)
                .await
                .map(drop)
                .map_err(err)
        }
        Scenario::Create => {
            let k = ctx.created.fetch_add(1, Ordering::Relaxed);
            let name = format!("store-{}-{k}@bench.example", ctx.run);
            match resource::normalize(full_user(&name, k), &USER_RESOURCE) {
                Ok(doc) => st.create_user(actor, doc).await.map(drop).map_err(err),
                Err(e) => Err(err(e)),
            }
        }
        Scenario::MixedSync => {
            let s = Scenario::mixed(rand::thread_rng().gen_range(0..100));
            return Box::pin(store_op(ctx.clone(), s, n)).await;
        }
        Scenario::Drain => {
            let lease = Lease {
                seconds: 900,
                max_attempts: 3,
            };
            let t = match st.claim_next(&ctx.agent_actor, lease, &[]).await {
                Ok(Some(t)) => t,
                Ok(None) => return None,
                Err(e) => return Some(Err(err(e))),
            };
            let fields = completion_fields(t.completion_fields.iter().map(|f| {
                (
                    f.name.as_str(),
                    f.required,
                    f.choices.first().map(String::as_str),
                )
            }));
            let c = Completion {
                outcome: TaskOutcome::Done,
                lease_id: t.lease_id,
                idempotency_key: None,
                note: None,
                fields,
                attachments: Vec::new(),
            };
            let r = st.complete(&ctx.agent_actor, t.id, c).await;
            record_done(&ctx, t.id);
            r.map(drop).map_err(err)
        }
    })
}

// ---- The minimal SQL: what the operation costs Postgres at the least ----

/// Tables the minimal create writes to: the columns and indexes of `scim_user`, `task`
/// and `audit`, without the schema's triggers and foreign keys (`like … including all`
/// copies neither), so the floor stays put whatever the schema's triggers do.
pub const MINIMAL_TABLES: [(&str, &str); 3] = [
    ("raw_user", "scim_user"),
    ("raw_task", "task"),
    ("raw_audit", "audit"),
];

/// The minimal lookup by name: one probe of the unique index on `lower(user_name)`.
async fn minimal_by_name(ctx: &Ctx, name: &str) -> sqlx::Result<usize> {
    let rows: Vec<(Value,)> = sqlx::query_as(
        "select doc from scim_user where app_id = $1 and lower(user_name) = lower($2) \
         and deleted_at is null",
    )
    .bind(APP)
    .bind(name)
    .fetch_all(&ctx.pool)
    .await?;
    Ok(rows.len())
}

/// One minimal-SQL operation: `select 1`; the primary-key select of the stored document;
/// the unique-index lookup by name; the insert of a user, its task and an audit record in
/// one transaction. None for scenarios without a defined floor.
pub async fn minimal_op(ctx: Arc<Ctx>, s: Scenario, n: u64) -> Option<OpResult> {
    let r: sqlx::Result<OpResult> = async {
        Ok(match s {
            Scenario::RoundTrip => {
                sqlx::query("select 1").execute(&ctx.pool).await?;
                Ok(())
            }
            Scenario::GetById => {
                let doc: Option<(Value,)> =
                    sqlx::query_as("select doc from scim_user where user_id = $1")
                        .bind(pick(&ctx).1)
                        .fetch_optional(&ctx.pool)
                        .await?;
                doc.map(drop).ok_or_else(|| "user not found".to_owned())
            }
            Scenario::FilterHit => {
                let found = minimal_by_name(&ctx, pick(&ctx).0).await?;
                expect_total(Some(found as i64), 1, "filter hit")
            }
            Scenario::FilterMiss => {
                let found = minimal_by_name(&ctx, &format!("nobody{n}@bench.example")).await?;
                expect_total(Some(found as i64), 0, "filter miss")
            }
            Scenario::Create => {
                let k = ctx.created.fetch_add(1, Ordering::Relaxed);
                let name = format!("raw-{}-{k}@bench.example", ctx.run);
                let doc = full_user(&name, k);
                let id = Uuid::new_v4();
                let mut tx = ctx.pool.begin().await?;
                sqlx::query(
                    "insert into raw_user (user_id, app_id, user_name, external_id, active, emails, doc) \
                     values ($1, $2, $3, $4, true, $5, $6)",
                )
                .bind(id)
                .bind(APP)
                .bind(&name)
                .bind(format!("ext-{name}"))
                .bind(vec![name.clone()])
                .bind(&doc)
                .execute(&mut *tx)
                .await?;
                let target = json!({"user_name": name, "email": name, "given_name": format!("Given{k}"),
                    "family_name": format!("Family{k}"), "role": "Standard", "active": true});
                sqlx::query(
                    "insert into raw_task (app_id, user_id, kind, title, instructions, changes, target) \
                     values ($1, $2, 'create_account', $3, '[]', '[]', $4)",
                )
                .bind(APP)
                .bind(id)
                .bind(format!("Create account for {name}"))
                .bind(&target)
                .execute(&mut *tx)
                .await?;
                sqlx::query(
                    "insert into raw_audit (app_id, actor, actor_role, action, subject_type, subject_id, outcome, detail) \
                     values ($1, 'bench', 'scim', 'user.create', 'user', $2, 'created', $3)",
                )
                .bind(APP)
                .bind(id.to_string())
                .bind(json!({"userName": name}))
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(())
            }
            _ => return Ok(Err("no minimal SQL for this scenario".into())),
        })
    }
    .await;
    Some(r.unwrap_or_else(|e| Err(e.to_string())))
}
