//! Apps: the manual-only systems this deployment serves.

use super::Store;
use crate::error::Result;

/// One app row.
#[derive(Debug, Clone, serde::Serialize, sqlx::FromRow)]
pub struct App {
    /// Stable id used in tokens and URLs (`peopleai`).
    pub app_id: String,
    /// Name shown to people.
    pub display_name: String,
    /// Key of the app's profile.
    pub profile: String,
}

/// An app with what `scimbridge apps list` shows about it.
#[derive(Debug, Clone, serde::Serialize, sqlx::FromRow)]
pub struct AppSummary {
    /// The app row.
    #[serde(flatten)]
    #[sqlx(flatten)]
    pub app: App,
    /// Users the IdP has provisioned and not deleted.
    pub live_users: i64,
    /// Tasks open or in progress.
    pub open_tasks: i64,
}

impl Store {
    /// Every app, by id (checked against the profiles at start).
    pub async fn apps(&self) -> Result<Vec<App>> {
        Ok(
            sqlx::query_as("select app_id, display_name, profile from app order by app_id")
                .fetch_all(&self.pool)
                .await?,
        )
    }

    /// Every app with its counts; each count runs on a partial index of its table
    /// (live users, unfinished tasks), so this stays cheap as apps grow.
    pub async fn app_summaries(&self) -> Result<Vec<AppSummary>> {
        Ok(sqlx::query_as(concat!(
            r#"
            select a.app_id, a.display_name, a.profile,
                   (select count(*) from scim_user u
                     where u.app_id = a.app_id and u.deleted_at is null) as live_users,
                   (select count(*) from task t
                     where t.app_id = a.app_id and t.state in "#,
            queued_states!(),
            r#") as open_tasks
              from app a
             order by a.app_id
            "#
        ))
        .fetch_all(&self.pool)
        .await?)
    }

    /// Adds an app; false when the id is taken (the app is left as it was).
    pub async fn create_app(
        &self,
        app_id: &str,
        display_name: &str,
        profile: &str,
    ) -> Result<bool> {
        let inserted: Option<String> = sqlx::query_scalar(
            "insert into app (app_id, display_name, profile) values ($1, $2, $3) \
             on conflict (app_id) do nothing returning app_id",
        )
        .bind(app_id)
        .bind(display_name)
        .bind(profile)
        .fetch_optional(&self.pool)
        .await?;
        Ok(inserted.is_some())
    }

    /// Finds an app by id.
    pub async fn app(&self, app_id: &str) -> Result<Option<App>> {
        Ok(
            sqlx::query_as("select app_id, display_name, profile from app where app_id = $1")
                .bind(app_id)
                .fetch_optional(&self.pool)
                .await?,
        )
    }
}

impl Store {
    /// Every app id, sorted.
    pub async fn app_ids(&self) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar("select app_id from app order by app_id")
            .fetch_all(&self.pool)
            .await?)
    }
}
