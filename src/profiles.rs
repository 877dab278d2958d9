//! Loading app profiles at start: the IO half of [`crate::reconcile::profile`], which
//! does the parsing and validation. A bad file, a key defined twice, or an app whose
//! profile is not known stops the process before it serves anything, naming the file
//! and line (or the app): provisioning with the wrong roles or wording would be worse
//! than not starting.

use std::path::{Path, PathBuf};

use anyhow::Context as _;

use crate::db::Store;
use crate::reconcile::Profiles;

/// Where profile files come from: a flag of `serve` and of `apps`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ProfilesArgs {
    /// A directory of app profiles (`*.toml`, not searched recursively), added to the
    /// built-in People.ai profile. See README.md, "Profiles".
    #[arg(long, env = "SCIMBRIDGE_PROFILES_DIR", global = true)]
    pub profiles_dir: Option<PathBuf>,
}

impl ProfilesArgs {
    /// The built-in profiles plus those of `--profiles-dir`.
    pub fn load(&self) -> anyhow::Result<Profiles> {
        load(self.profiles_dir.as_deref())
    }
}

/// The built-in profiles plus every `*.toml` file in `dir`, read in name order so that
/// the first error is always the same one.
pub fn load(dir: Option<&Path>) -> anyhow::Result<Profiles> {
    let Some(dir) = dir else {
        return Ok(Profiles::builtin());
    };
    let entries = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read the profiles directory {}", dir.display()))?;
    let mut paths = Vec::new();
    for entry in entries {
        let path = entry
            .with_context(|| format!("cannot read the profiles directory {}", dir.display()))?
            .path();
        if path.extension().is_some_and(|e| e == "toml") && path.is_file() {
            paths.push(path);
        }
    }
    paths.sort();
    let mut files = Vec::with_capacity(paths.len());
    for path in paths {
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read profile {}", path.display()))?;
        files.push((path.display().to_string(), text));
    }
    let profiles = Profiles::with_files(files.iter().map(|(f, t)| (f.as_str(), t.as_str())))
        .map_err(|e| anyhow::anyhow!("invalid app profile: {e}"))?;
    tracing::info!(
        dir = %dir.display(),
        profiles = ?profiles.keys(),
        "app profiles loaded"
    );
    Ok(profiles)
}

/// Refuses to go on while an app names a profile the store does not have: tasks of that
/// app could not be worded, and falling back to another app's profile would give its
/// users the wrong roles.
pub async fn check_apps(store: &Store) -> anyhow::Result<()> {
    let profiles = store.profiles();
    let missing: Vec<String> = store
        .apps()
        .await?
        .into_iter()
        .filter(|a| profiles.get(&a.profile).is_none())
        .map(|a| format!("app {:?} uses profile {:?}", a.app_id, a.profile))
        .collect();
    anyhow::ensure!(
        missing.is_empty(),
        "{}, which is not defined (known profiles: {}); start with --profiles-dir pointing at \
         the directory that holds it",
        missing.join("; "),
        profiles.keys().join(", ")
    );
    Ok(())
}
