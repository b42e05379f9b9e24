//! The login page's branding in SQLite: one row, its settings document
//! and the page template (issue #16 §4).

use super::*;

/// The branding row (`id = 1`, present from the migration on), and the
/// triggers that make a change to it a catalog change.
pub(super) const MIGRATION: &str = "
    CREATE TABLE branding (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        settings TEXT,
        universal_login_template TEXT
    );
    INSERT INTO branding (id) VALUES (1);
    CREATE TRIGGER branding_updated AFTER UPDATE ON branding
        BEGIN UPDATE catalog_version SET version = version + 1; END;
";

pub(super) fn read_branding(conn: &Connection) -> Result<StoredBranding, StoreError> {
    conn.prepare_cached("SELECT settings, universal_login_template FROM branding WHERE id = 1")
        .and_then(|mut s| {
            s.query_row([], |r| {
                Ok(StoredBranding {
                    settings: r.get(0)?,
                    universal_login_template: r.get(1)?,
                })
            })
            .optional()
        })
        .map(Option::unwrap_or_default)
        .map_err(backend("reading the branding"))
}

pub(super) fn put_settings(conn: &Connection, settings: &str) -> Result<(), StoreError> {
    execute(
        conn,
        "UPDATE branding SET settings = ?1 WHERE id = 1",
        (settings,),
        "writing the branding settings",
    )
    .map(drop)
}

/// Replaces the template in one write transaction, so the answer (was
/// one stored?) is about the row it replaced.
pub(super) fn put_template(
    conn: &mut Connection,
    template: Option<&str>,
) -> Result<bool, StoreError> {
    let what = "writing the page template";
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(backend(what))?;
    let had = read_branding(&tx)?.universal_login_template.is_some();
    if had || template.is_some() {
        execute(
            &tx,
            "UPDATE branding SET universal_login_template = ?1 WHERE id = 1",
            (template,),
            what,
        )?;
    }
    tx.commit().map_err(backend(what))?;
    Ok(had)
}
