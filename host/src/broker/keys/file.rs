//! The key file on disk: its format, and writing it so that a crash never
//! leaves a half-written file behind.
//!
//! ```json
//! {
//!   "version": 1,
//!   "keys": [
//!     {"kid": "…", "alg": "RS256", "created_at": 1767225600, "pkcs8": "MIIEv…"},
//!     {"kid": "…", "alg": "ES256", "created_at": 1767225600, "pkcs8": "MIGH…"}
//!   ]
//! }
//! ```
//!
//! `pkcs8` is the private key as PKCS#8 DER in standard base64 (padded, as
//! `openssl` prints it); `kid` is the key's RFC 7638 thumbprint, checked
//! against the key on load.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write as _};
use std::path::Path;

use ring::rand::{SecureRandom as _, SystemRandom};
use serde::{Deserialize, Serialize};

use super::Alg;

/// The only format version so far; a file with another is refused rather
/// than guessed at.
pub(super) const VERSION: u32 = 1;

#[derive(Serialize, Deserialize)]
pub(super) struct KeyFile {
    pub version: u32,
    pub keys: Vec<StoredKey>,
}

#[derive(Serialize, Deserialize)]
pub(super) struct StoredKey {
    pub kid: String,
    pub alg: Alg,
    /// Unix seconds. The newest key per algorithm signs.
    pub created_at: u64,
    pub pkcs8: String,
}

/// Writes `contents` to `path` through a temporary file in the same directory
/// and a rename, so readers see either no file or the whole file. The file is
/// created owner-only (0600) before any byte is written, so the keys are never
/// readable by others, not even briefly.
pub(super) fn write_atomically(path: &Path, contents: &[u8], rng: &SystemRandom) -> io::Result<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let Some(name) = path.file_name() else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a file path",
        ));
    };
    // A random suffix, so a temporary file left by a crash never blocks us.
    let mut suffix = [0u8; 8];
    rng.fill(&mut suffix)
        .map_err(|_| io::Error::other("the system random number generator failed"))?;
    let temp = dir.join(format!(
        ".{}.{}.tmp",
        name.to_string_lossy(),
        hex::encode(suffix)
    ));

    let written = (|| {
        let mut file = create_owner_only(&temp)?;
        file.write_all(contents)?;
        file.sync_all()?;
        fs::rename(&temp, path)?;
        sync_dir(dir)
    })();
    if written.is_err() {
        // Best effort: after a successful rename there is nothing to remove.
        let _ = fs::remove_file(&temp);
    }
    written
}

fn create_owner_only(path: &Path) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    options.open(path)
}

/// Makes the rename itself durable (POSIX leaves it in the directory's cache
/// until the directory is synced).
fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    File::open(dir)?.sync_all()?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// Warns when the key file can be read by anyone but its owner: such a file
/// still works, but whoever can read it can mint tokens for every app.
pub(super) fn warn_if_shared(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        if let Ok(meta) = fs::metadata(path) {
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                tracing::warn!(
                    path = %path.display(),
                    mode = format_args!("{mode:o}"),
                    "signing key file is readable by other users; run `chmod 600` on it"
                );
            }
        }
    }
    #[cfg(not(unix))]
    let _ = path;
}
