//! `scimbridge apps list|show|create`: which apps this deployment serves and with which
//! profile. Bootstrap commands like `token`: they use the database directly.

use std::sync::Arc;

use clap::Subcommand;

use crate::db::Store;
use crate::profiles::ProfilesArgs;
use crate::reconcile::Profile;

/// `apps` and its flags.
#[derive(Debug, clap::Args)]
pub struct AppsArgs {
    /// Where profiles beyond the built-in ones come from.
    #[command(flatten)]
    pub profiles: ProfilesArgs,
    /// What to do.
    #[command(subcommand)]
    pub command: AppsCommand,
}

/// `apps` subcommands.
#[derive(Debug, Subcommand)]
pub enum AppsCommand {
    /// List apps with their profile, live users and open tasks.
    List,
    /// Show an app's profile: roles, mappings, task kinds and their completion fields.
    Show {
        /// The app id.
        app: String,
    },
    /// Add an app served with a profile (then create its tokens with `token create`).
    Create {
        /// The new app's id: lowercase letters, digits, '-' and '_' (used in tokens).
        #[arg(long)]
        app: String,
        /// The profile key (built in, or defined in --profiles-dir).
        #[arg(long)]
        profile: String,
        /// The name shown to people; default: the profile's display name.
        #[arg(long)]
        name: Option<String>,
    },
}

/// Runs an `apps` subcommand.
pub async fn run(store: &Store, args: AppsArgs) -> anyhow::Result<()> {
    let profiles = Arc::new(args.profiles.load()?);
    let store = Store::with_profiles(store.pool().clone(), profiles);
    match args.command {
        AppsCommand::List => list(&store).await,
        AppsCommand::Show { app } => show(&store, &app).await,
        AppsCommand::Create { app, profile, name } => {
            create(&store, &app, &profile, name.as_deref(), &args.profiles).await
        }
    }
}

async fn list(store: &Store) -> anyhow::Result<()> {
    println!(
        "{:<20}  {:<24}  {:<16}  {:>10}  {:>10}",
        "APP", "NAME", "PROFILE", "USERS", "OPEN TASKS"
    );
    for s in store.app_summaries().await? {
        let profile = if store.profiles().get(&s.app.profile).is_some() {
            s.app.profile.clone()
        } else {
            format!("{} (unknown)", s.app.profile)
        };
        println!(
            "{:<20}  {:<24}  {:<16}  {:>10}  {:>10}",
            s.app.app_id, s.app.display_name, profile, s.live_users, s.open_tasks
        );
    }
    Ok(())
}

async fn show(store: &Store, app_id: &str) -> anyhow::Result<()> {
    let Some(app) = store.app(app_id).await? else {
        anyhow::bail!("no app {app_id:?}; `scimbridge apps list` shows them");
    };
    println!("app:          {}", app.app_id);
    println!("name:         {}", app.display_name);
    let Some(p) = store.profiles().get(&app.profile) else {
        anyhow::bail!(
            "app {app_id:?} uses profile {:?}, which is not defined here (known: {}); pass \
             --profiles-dir with the directory that holds it",
            app.profile,
            store.profiles().keys().join(", ")
        );
    };
    print!("{}", describe(p));
    Ok(())
}

/// A profile in words, for `apps show`.
fn describe(p: &Profile) -> String {
    let mut out = String::new();
    let mut line = |s: String| {
        out.push_str(&s);
        out.push('\n');
    };
    line(format!("profile:      {} ({})", p.key, p.source));
    line(format!(
        "roles:        {} (most privileged first)",
        p.roles.join(", ")
    ));
    line(format!("default role: {}", p.default_role));
    if p.group_roles.is_empty() {
        line("group roles:  (none)".into());
    }
    for (i, (group, role)) in p.group_roles.iter().enumerate() {
        let head = if i == 0 { "group roles:" } else { "" };
        line(format!("{head:<13} {group:?} -> {role}"));
    }
    line(format!(
        "scim roles:   a roles value naming a role (any case){}",
        if p.scim_roles.is_empty() {
            ""
        } else {
            ", and:"
        }
    ));
    for (alias, role) in &p.scim_roles {
        line(format!("{:<13} {alias:?} -> {role}", ""));
    }
    line("tasks:".into());
    for t in p.tasks() {
        let fields: Vec<String> = t
            .fields
            .iter()
            .map(|f| {
                let need = if f.required { "required" } else { "optional" };
                if f.choices.is_empty() {
                    format!("{} ({need})", f.name)
                } else {
                    format!("{} ({need}: {})", f.name, f.choices.join("|"))
                }
            })
            .collect();
        line(format!("  {}", t.kind.as_str()));
        line(format!("    title:  {}", t.title));
        line(format!("    steps:  {}", t.steps.len()));
        line(format!(
            "    fields: {}",
            if fields.is_empty() {
                "(none)".to_string()
            } else {
                fields.join(", ")
            }
        ));
    }
    out
}

/// The database's rule for app ids (migrations: `app.app_id` check), said before the
/// insert so the message can say what is allowed.
fn valid_app_id(id: &str) -> bool {
    let mut chars = id.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && id.len() <= 63
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
}

async fn create(
    store: &Store,
    app_id: &str,
    profile: &str,
    name: Option<&str>,
    args: &ProfilesArgs,
) -> anyhow::Result<()> {
    anyhow::ensure!(
        valid_app_id(app_id),
        "app id {app_id:?} must be 1-63 lowercase letters, digits, '-' or '_', starting with a \
         letter or digit"
    );
    let Some(p) = store.profiles().get(profile) else {
        anyhow::bail!(
            "no profile {profile:?} (known: {}); write profiles/<key>.toml and pass its \
             directory with --profiles-dir",
            store.profiles().keys().join(", ")
        );
    };
    let name = name.map(str::trim).unwrap_or(&p.display_name);
    anyhow::ensure!(!name.is_empty(), "--name must not be empty");
    if !store.create_app(app_id, name, profile).await? {
        let existing = store.app(app_id).await?;
        anyhow::bail!(
            "app {app_id:?} already exists{}; choose another id",
            existing
                .map(|a| format!(" (profile {})", a.profile))
                .unwrap_or_default()
        );
    }
    println!("created app {app_id} ({name}) with profile {profile}");
    let dir = args
        .profiles_dir
        .as_ref()
        .map(|d| format!(" --profiles-dir {}", d.display()))
        .unwrap_or_default();
    eprintln!(
        "next: start the server with the same profiles (scimbridge serve{dir}), then give the \
         IdP a token: scimbridge token create --app {app_id} --role scim --name okta"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reconcile::Profiles;

    #[test]
    fn app_ids_follow_the_database_rule() {
        for ok in ["peopleai", "6sense", "amazing_hiring", "a-b"] {
            assert!(valid_app_id(ok), "{ok}");
        }
        for bad in ["", "-x", "People", "a b", &"x".repeat(64)] {
            assert!(!valid_app_id(bad), "{bad}");
        }
    }

    #[test]
    fn a_profile_is_described_with_roles_mappings_and_fields() {
        let profiles = Profiles::builtin();
        let Some(p) = profiles.get("peopleai") else {
            panic!("built-in profile");
        };
        let text = describe(p);
        assert!(text.contains("roles:        Admin, Standard"), "{text}");
        assert!(text.contains("\"People.ai Admins\" -> Admin"), "{text}");
        assert!(
            text.contains("seat_freed (required: yes|no|unknown)"),
            "{text}"
        );
    }
}
