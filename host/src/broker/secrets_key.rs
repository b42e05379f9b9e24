//! Where the key that seals secrets at rest comes from (issue #14 §4).
//!
//! In order: `WAYPASS_SECRETS_KEY` (base64 keys, comma-separated, the
//! first sealing), the file `secrets_key_file` names (one key a line; the
//! `WAYPASS_SECRETS_KEY_FILE` variable overrides it), and, when neither is
//! given:
//! - with the embedded store (SQLite in the data directory, one instance,
//!   the quickstart): `secrets.key` in the data directory, generated with
//!   mode 0600 on the first start. It keeps secrets out of the database
//!   file, its backups and dumps, though not out of a copy of the whole
//!   data directory; start-up says so.
//! - with PostgreSQL: start-up is refused. Several instances share that
//!   database, so they must share one key, which only the operator can
//!   hand them all.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;

use super::config::Config;
use crate::model::SecretSource;
use crate::store::crypt::Keyring;

/// The generated key's file in the data directory.
pub const GENERATED_KEY_FILE: &str = "secrets.key";

/// The keys that seal and open secrets at rest for `config`.
pub fn keyring(config: &Config) -> anyhow::Result<Arc<Keyring>> {
    if let Some(keys) = std::env::var("WAYPASS_SECRETS_KEY")
        .ok()
        .filter(|k| !k.trim().is_empty())
    {
        let ring = Keyring::parse(&keys).context("WAYPASS_SECRETS_KEY")?;
        announce(&ring, "WAYPASS_SECRETS_KEY");
        return Ok(Arc::new(ring));
    }
    if let Some(path) = &config.secrets_key_file {
        return from_file(path, "secrets_key_file");
    }
    if config.database_url.is_some() {
        anyhow::bail!(
            "no secrets key: with PostgreSQL, every instance must seal secrets with the same key; \
             give them all WAYPASS_SECRETS_KEY or secrets_key_file (base64 of 32 random bytes, \
             e.g. `openssl rand -base64 32`)"
        );
    }
    let path = config.data_dir.join(GENERATED_KEY_FILE);
    if !path.exists() {
        write_new_key(&path)?;
        tracing::warn!(
            path = %path.display(),
            "no secrets key given (WAYPASS_SECRETS_KEY or secrets_key_file): generated one in the \
             data directory; secrets are sealed in the database, but a copy of the whole data \
             directory holds the key too"
        );
    }
    from_file(&path, "the generated secrets key")
}

fn from_file(path: &Path, what: &str) -> anyhow::Result<Arc<Keyring>> {
    let text = SecretSource::File(path)
        .read()
        .map_err(|e| anyhow::anyhow!("{what}: {e}"))?;
    let ring = Keyring::parse(&text).with_context(|| format!("{what} {}", path.display()))?;
    announce(&ring, what);
    Ok(Arc::new(ring))
}

fn announce(ring: &Keyring, source: &str) {
    tracing::info!(
        source,
        active_key = ring.active_key_id(),
        keys = ring.key_ids().len(),
        "secrets at rest are sealed with AES-256-GCM"
    );
}

/// Writes a fresh key to `path`, readable by its owner only, refusing to
/// replace a file that exists.
fn write_new_key(path: &PathBuf) -> anyhow::Result<()> {
    let key = Keyring::generate_key()?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    writeln!(file, "{key}").with_context(|| format!("cannot write {}", path.display()))?;
    file.sync_all()
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}
