//! Building javascript mappers (not implemented yet).

use std::path::{Path, PathBuf};

pub(super) fn build(dir: &Path) -> anyhow::Result<PathBuf> {
    anyhow::bail!(
        "building javascript mappers ({}) is not supported yet",
        dir.display()
    )
}
