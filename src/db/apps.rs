//! Apps: the manual-only systems this deployment serves.

use sqlx::Row;

use super::Store;
use crate::error::Result;

/// One app row.
#[derive(Debug, Clone, serde::Serialize)]
pub struct App {
    /// Stable id used in tokens and URLs (`peopleai`).
    pub app_id: String,
    /// Name shown to people.
    pub display_name: String,
    /// Key of the app's profile.
    pub profile: String,
}

impl Store {
    /// Finds an app by id.
    pub async fn app(&self, app_id: &str) -> Result<Option<App>> {
        let row = sqlx::query("select app_id, display_name, profile from app where app_id = $1")
            .bind(app_id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| App {
            app_id: r.get("app_id"),
            display_name: r.get("display_name"),
            profile: r.get("profile"),
        }))
    }
}
