//! /Groups (RFC 7644 §3.3–§3.6) and /Groups/.search (§3.4.3): what a Group is to the
//! shared handlers of `resources`. Members are Users of the same app.

use std::sync::Arc;

use serde_json::{json, Value};
use uuid::Uuid;

use super::resources::{patch_request, RecordPage, Resource, Write};
use super::work::{document_work, size};
use super::ScimReply;
use crate::auth::Actor;
use crate::db::filter::ListQuery;
use crate::db::groups::GroupRecord;
use crate::db::rfc3339;
use crate::http::AppState;
use crate::scim::list::ListRequest;
use crate::scim::members::member_delta;
use crate::scim::patch;
use crate::scim::resource::{self, Meta};
use crate::scim::schema::GROUP_RESOURCE;
use crate::scim::ScimError;

/// The Group resource type.
pub(super) struct Groups;

impl Resource for Groups {
    const NAME: &'static str = "Group";
    const ENDPOINT: &'static str = "/scim/v2/Groups";
    const ONE: &'static str = "/scim/v2/Groups/{id}";
    const SEARCH: &'static str = "/scim/v2/Groups/.search";
    // A large group's members are most of its cost; Okta's group push excludes them.
    const COSTLY: Option<&'static str> = Some("members");

    type Record = GroupRecord;

    fn identity(rec: &GroupRecord) -> (Uuid, i64) {
        (rec.id, rec.version)
    }

    /// Each group or member renders as a few values.
    fn size(rec: &GroupRecord) -> usize {
        size(&rec.doc) + 4 * rec.members.as_ref().map_or(0, Vec::len)
    }

    fn render(base: &str, rec: GroupRecord) -> Value {
        render(base, rec)
    }

    fn project(body: Value, attributes: &[String], excluded: &[String]) -> Value {
        resource::project(body, attributes, excluded)
    }

    async fn read(
        s: &AppState,
        actor: &Actor,
        id: Uuid,
        full: bool,
    ) -> Result<GroupRecord, ScimReply> {
        Ok(s.store.group(&actor.app_id, id, full).await?)
    }

    /// One transaction with the derived tasks of the members whose role it decides, and
    /// its audit record. `full` false lets a membership PATCH answer without reading the
    /// members (the caller excluded them).
    async fn write(
        s: &AppState,
        actor: &Actor,
        w: Write,
        if_match: Option<&[i64]>,
        full: bool,
    ) -> Result<Option<GroupRecord>, ScimReply> {
        let max = s.config.max_attribute_values;
        Ok(Some(match w {
            Write::Create(body) => {
                let doc = document_work(size(&body), move || checked(body, max)).await?;
                s.store.create_group(actor, doc).await?
            }
            Write::Replace(id, body) => {
                let doc = document_work(size(&body), move || checked(body, max)).await?;
                s.store
                    .update_group(actor, id, "group.replace", if_match, |_| {
                        std::future::ready(Ok(doc.clone()))
                    })
                    .await?
            }
            Write::Patch(id, body) => {
                let ops_size = size(&body);
                let req = Arc::new(patch_request(body, s.config.patch_max_operations)?);
                // Group push (members added or removed by id) as row changes: the cost
                // stays flat however large the group is (issue #6).
                if let Some(delta) = member_delta(&req.operations) {
                    return Ok(Some(
                        s.store
                            .patch_group_members(actor, id, if_match, &delta, full)
                            .await?,
                    ));
                }
                s.store
                    .update_group(actor, id, "group.patch", if_match, |mut doc| {
                        let req = req.clone();
                        document_work(ops_size + size(&doc), move || {
                            patch::apply(&mut doc, &req.operations, &GROUP_RESOURCE)?;
                            checked(doc, max)
                        })
                    })
                    .await?
            }
            Write::Delete(id) => {
                s.store.delete_group(actor, id, if_match).await?;
                return Ok(None);
            }
        }))
    }

    async fn list_records(
        s: &AppState,
        actor: &Actor,
        req: &ListRequest,
        full: bool,
    ) -> Result<RecordPage<GroupRecord>, ScimReply> {
        let q = ListQuery {
            filter: req.filter.as_ref(),
            sort: req.sort.as_ref(),
            paging: &req.paging,
        };
        Ok(s.store.list_groups(&actor.app_id, q, full).await?)
    }
}

/// A body or patched document as stored: normalised, multi-valued attributes bounded
/// (`members` exempt).
fn checked(body: Value, max_values: usize) -> Result<Value, ScimError> {
    let doc = resource::normalize(body, &GROUP_RESOURCE)?;
    resource::check_value_counts(&doc, &GROUP_RESOURCE, max_values)?;
    Ok(doc)
}

/// The resource a client reads.
fn render(base: &str, rec: GroupRecord) -> Value {
    let members = rec.members.map(|ms| {
        Value::Array(
            ms.into_iter()
                .map(|m| {
                    let id = m["value"].as_str().unwrap_or_default().to_owned();
                    let mut member =
                        json!({"value": id, "$ref": format!("{base}/Users/{id}"), "type": "User"});
                    if let Some(d) = m.get("display") {
                        member["display"] = d.clone();
                    }
                    member
                })
                .collect(),
        )
    });
    let meta = Meta {
        resource_type: "Group",
        created: rfc3339(rec.created_at),
        last_modified: rfc3339(rec.updated_at),
        location: format!("{base}/Groups/{}", rec.id),
        version: rec.version,
    };
    resource::render(
        rec.doc,
        &rec.id.to_string(),
        &meta,
        members.map(|m| ("members", m)),
        &GROUP_RESOURCE,
    )
}
