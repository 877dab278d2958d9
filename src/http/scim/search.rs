//! POST /.search at the root (RFC 7644 §3.4.3): one query over every resource type.
//! Users come first, then Groups; a filter that names an attribute only one type has
//! simply matches nothing of the other type.

use axum::extract::State;
use axum::http::Method;
use axum::response::Response;
use axum::routing::post;

use super::groups::Groups;
use super::resources::list_page;
use super::users::Users;
use super::{list_reply, BaseUrl, ScimActor, ScimJson, ScimReply};
use crate::http::{AppState, Route};
use crate::scim::list::{ListRequest, Page, Paging};
use crate::scim::{ScimError, ScimType};

pub(super) fn routes() -> Vec<Route> {
    vec![("/scim/v2/.search", Method::POST, post(search_all))]
}

async fn search_all(
    State(s): State<AppState>,
    ScimActor(actor): ScimActor,
    BaseUrl(base): BaseUrl,
    ScimJson(body): ScimJson,
) -> Result<Response, ScimReply> {
    let req = ListRequest::from_search_body(&body)?;
    let Paging::Index(page) = req.paging else {
        return Err(ScimError::bad_request(
            ScimType::InvalidValue,
            "cursor paging is offered per resource type (/Users/.search, /Groups/.search), not at the root",
        )
        .into());
    };
    // Totals first (count=0), then the page across both types.
    let counting = ListRequest {
        paging: Paging::Index(Page {
            start_index: 1,
            count: 0,
        }),
        ..req.clone()
    };
    let user_total = tolerant(list_page::<Users>(&s, &actor, &base, &counting).await)?;
    let group_total = tolerant(list_page::<Groups>(&s, &actor, &base, &counting).await)?;
    let (Some(users_page), Some(groups_page)) = (&user_total, &group_total) else {
        return match (&user_total, &group_total) {
            (None, None) => Err(ScimError::bad_request(
                ScimType::InvalidFilter,
                "the filter names attributes no resource type has",
            )
            .into()),
            _ => search_one(&s, &actor, &base, &req, page, user_total.is_some()).await,
        };
    };
    let (users_n, groups_n) = (users_page.total, groups_page.total);
    let mut resources = Vec::new();
    if page.count > 0 && page.start_index <= users_n {
        let u = list_page::<Users>(&s, &actor, &base, &req).await?;
        resources.extend(u.resources);
    }
    let left = page.count - resources.len() as i64;
    if left > 0 {
        let start = (page.start_index - users_n).max(1);
        let group_req = ListRequest {
            paging: Paging::Index(Page {
                start_index: start,
                count: left,
            }),
            ..req.clone()
        };
        let g = list_page::<Groups>(&s, &actor, &base, &group_req).await?;
        resources.extend(g.resources);
    }
    Ok(list_reply(&req.paging, users_n + groups_n, None, resources))
}

/// When the filter fits only one resource type, the search is that type's search.
async fn search_one(
    s: &AppState,
    actor: &crate::auth::Actor,
    base: &str,
    req: &ListRequest,
    page: Page,
    users_only: bool,
) -> Result<Response, ScimReply> {
    let found = if users_only {
        list_page::<Users>(s, actor, base, req).await?
    } else {
        list_page::<Groups>(s, actor, base, req).await?
    };
    Ok(list_reply(
        &Paging::Index(page),
        found.total,
        None,
        found.resources,
    ))
}

/// An invalidFilter for one resource type means "no match of this type" at the root.
fn tolerant<T>(r: Result<T, ScimReply>) -> Result<Option<T>, ScimReply> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.scim_type() == Some(ScimType::InvalidFilter) => Ok(None),
        Err(e) => Err(e),
    }
}
