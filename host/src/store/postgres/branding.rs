//! The login page's branding in PostgreSQL: one row, its settings
//! document and the page template (issue #16 §4).

use super::*;

/// The branding row (`id = 1`, present from the migration on); a change
/// to it is a catalog change, bumped and notified like the others.
pub(super) const MIGRATION: &str = r#"
    CREATE TABLE branding (
        id integer PRIMARY KEY CHECK (id = 1),
        settings text,
        universal_login_template text
    );
    INSERT INTO branding (id) VALUES (1);
    CREATE TRIGGER branding_changed AFTER UPDATE ON branding
        FOR EACH ROW EXECUTE FUNCTION waypass_catalog_changed();
"#;

pub(super) const READ: &str =
    "SELECT settings, universal_login_template FROM branding WHERE id = 1";

/// Whether a template is stored, locking the row until the transaction
/// ends: the template write that follows in the same transaction then
/// answers about the value it replaced, even with another instance
/// writing at once. (One statement cannot: a `FOR UPDATE` CTE read by the
/// `UPDATE`'s `RETURNING` skips the row the `UPDATE` itself changed.)
pub(super) const LOCK_TEMPLATE: &str =
    "SELECT universal_login_template IS NOT NULL FROM branding WHERE id = 1 FOR UPDATE";

pub(super) const PUT_TEMPLATE: &str =
    "UPDATE branding SET universal_login_template = $1 WHERE id = 1";

pub(super) const PUT_SETTINGS: &str = "UPDATE branding SET settings = $1 WHERE id = 1";

/// The branding from [`READ`]'s rows (none: nothing set).
pub(super) fn read_branding(rows: &[Row]) -> Result<StoredBranding, StoreError> {
    let Some(row) = rows.first() else {
        return Ok(StoredBranding::default());
    };
    Ok(StoredBranding {
        settings: column(row, 0, "branding")?,
        universal_login_template: column(row, 1, "branding")?,
    })
}
