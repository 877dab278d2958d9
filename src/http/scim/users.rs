//! /Users (RFC 7644 §3.3–§3.6) and /Users/.search (§3.4.3): what a User is to the
//! shared handlers of `resources`.

use std::sync::Arc;

use serde_json::{json, Value};
use uuid::Uuid;

use super::resources::{patch_request, RecordPage, Resource, Write};
use super::work::{document_work, size};
use super::ScimReply;
use crate::auth::Actor;
use crate::db::filter::ListQuery;
use crate::db::rfc3339;
use crate::db::users::UserRecord;
use crate::http::AppState;
use crate::scim::list::ListRequest;
use crate::scim::patch;
use crate::scim::resource::{self, Meta};
use crate::scim::schema::{PROVISIONING_SCHEMA, USER_RESOURCE};
use crate::scim::ScimError;

/// The User resource type.
pub(super) struct Users;

impl Resource for Users {
    const NAME: &'static str = "User";
    const ENDPOINT: &'static str = "/scim/v2/Users";
    const ONE: &'static str = "/scim/v2/Users/{id}";
    const SEARCH: &'static str = "/scim/v2/Users/.search";
    const COSTLY: Option<&'static str> = None;

    type Record = UserRecord;

    fn identity(rec: &UserRecord) -> (Uuid, i64) {
        (rec.id, rec.version)
    }

    /// Each group or member renders as a few values.
    fn size(rec: &UserRecord) -> usize {
        size(&rec.doc) + 4 * rec.groups.len()
    }

    fn render(base: &str, rec: UserRecord) -> Value {
        render(base, rec)
    }

    fn project(body: Value, attributes: &[String], excluded: &[String]) -> Value {
        project(body, attributes, excluded)
    }

    async fn read(
        s: &AppState,
        actor: &Actor,
        id: Uuid,
        _full: bool,
    ) -> Result<UserRecord, ScimReply> {
        Ok(s.store.user(&actor.app_id, id).await?)
    }

    /// One transaction with the user's derived task and audit record.
    async fn write(
        s: &AppState,
        actor: &Actor,
        w: Write,
        if_match: Option<&[i64]>,
        _full: bool,
    ) -> Result<Option<UserRecord>, ScimReply> {
        let max = s.config.max_attribute_values;
        Ok(Some(match w {
            Write::Create(body) => {
                let doc = document_work(size(&body), move || checked(body, max)).await?;
                s.store.create_user(actor, doc).await?
            }
            Write::Replace(id, body) => {
                let doc = document_work(size(&body), move || checked(body, max)).await?;
                s.store
                    .update_user(actor, id, "user.replace", if_match, |_| {
                        std::future::ready(Ok(doc.clone()))
                    })
                    .await?
            }
            Write::Patch(id, body) => {
                let ops_size = size(&body);
                let req = Arc::new(patch_request(body, s.config.patch_max_operations)?);
                s.store
                    .update_user(actor, id, "user.patch", if_match, |mut doc| {
                        let req = req.clone();
                        document_work(ops_size + size(&doc), move || {
                            patch::apply(&mut doc, &req.operations, &USER_RESOURCE)?;
                            checked(doc, max)
                        })
                    })
                    .await?
            }
            Write::Delete(id) => {
                s.store.delete_user(actor, id, if_match).await?;
                return Ok(None);
            }
        }))
    }

    async fn list_records(
        s: &AppState,
        actor: &Actor,
        req: &ListRequest,
        _full: bool,
    ) -> Result<RecordPage<UserRecord>, ScimReply> {
        let q = ListQuery {
            filter: req.filter.as_ref(),
            sort: req.sort.as_ref(),
            paging: &req.paging,
        };
        Ok(s.store.list_users(&actor.app_id, q).await?)
    }
}

/// A body or patched document as stored: normalised, multi-valued attributes bounded.
fn checked(body: Value, max_values: usize) -> Result<Value, ScimError> {
    let doc = resource::normalize(body, &USER_RESOURCE)?;
    resource::check_value_counts(&doc, &USER_RESOURCE, max_values)?;
    Ok(doc)
}

/// The resource a client reads.
fn render(base: &str, rec: UserRecord) -> Value {
    let location = format!("{base}/Users/{}", rec.id);
    let groups: Vec<Value> = rec
        .groups
        .into_iter()
        .map(|g| {
            let id = g["value"].as_str().unwrap_or_default().to_owned();
            json!({"value": id, "display": g["display"], "$ref": format!("{base}/Groups/{id}"), "type": "direct"})
        })
        .collect();
    let mut computed = vec![(PROVISIONING_SCHEMA, rec.provisioning)];
    if !groups.is_empty() {
        computed.push(("groups", Value::Array(groups)));
    }
    let meta = Meta {
        resource_type: "User",
        created: rfc3339(rec.created_at),
        last_modified: rfc3339(rec.updated_at),
        location,
        version: rec.version,
    };
    resource::render(
        rec.doc,
        &rec.id.to_string(),
        &meta,
        computed,
        &USER_RESOURCE,
    )
}

/// Applies `attributes`/`excludedAttributes`; the provisioning extension is
/// `returned: request`, so it stays only when the caller names it.
fn project(body: Value, attributes: &[String], excluded: &[String]) -> Value {
    let mut body = resource::project(body, attributes, excluded);
    let asked = attributes.iter().any(|a| {
        // `get`, not slicing: client text may have a multi-byte character at the cut.
        a.get(..PROVISIONING_SCHEMA.len())
            .is_some_and(|p| p.eq_ignore_ascii_case(PROVISIONING_SCHEMA))
    });
    if !asked {
        if let Value::Object(m) = &mut body {
            m.remove(PROVISIONING_SCHEMA);
            if let Some(Value::Array(schemas)) = m.get_mut("schemas") {
                schemas.retain(|s| s != PROVISIONING_SCHEMA);
            }
        }
    }
    body
}
