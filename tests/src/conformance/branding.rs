//! The login page's branding (issue #16 §4), for every backend.

use waypass::store::{Store, StoredBranding};

/// Settings and the template start empty, are replaced independently,
/// the template can be removed (saying whether one was there), every
/// change bumps the catalog version, and the catalog carries them.
pub async fn branding_settings_and_template_are_kept_apart_and_each_write_bumps_the_catalog(
    store: &dyn Store,
) {
    assert_eq!(
        store.branding().await.expect("read"),
        StoredBranding::default()
    );
    let v0 = store.catalog_version().await.expect("version");
    store
        .put_branding_settings(r##"{"colors":{"primary":"#0059d6"}}"##)
        .await
        .expect("settings");
    let v1 = store.catalog_version().await.expect("version");
    assert!(v1 > v0, "a settings write bumps the catalog ({v0} → {v1})");

    let was = store
        .put_universal_login_template(Some("<html>{%- auth0:head -%}{%- auth0:widget -%}"))
        .await
        .expect("template");
    assert!(!was, "no template was stored before");
    let v2 = store.catalog_version().await.expect("version");
    assert!(v2 > v1, "a template write bumps the catalog ({v1} → {v2})");
    let was = store
        .put_universal_login_template(Some("<p>{%- auth0:head -%}{%- auth0:widget -%}"))
        .await
        .expect("replace");
    assert!(was, "replacing says one was stored");

    let both = StoredBranding {
        settings: Some(r##"{"colors":{"primary":"#0059d6"}}"##.into()),
        universal_login_template: Some("<p>{%- auth0:head -%}{%- auth0:widget -%}".into()),
    };
    assert_eq!(store.branding().await.expect("read"), both);
    assert_eq!(store.catalog().await.expect("catalog").branding, both);

    store
        .put_branding_settings(r#"{}"#)
        .await
        .expect("settings again");
    assert_eq!(
        store
            .branding()
            .await
            .expect("read")
            .universal_login_template,
        both.universal_login_template,
        "the settings write leaves the template alone"
    );
    assert!(
        store
            .put_universal_login_template(None)
            .await
            .expect("delete"),
        "deleting says one was stored"
    );
    assert!(
        !store
            .put_universal_login_template(None)
            .await
            .expect("delete again"),
        "and then that none was"
    );
    let read = store.branding().await.expect("read");
    assert_eq!(read.universal_login_template, None);
    assert_eq!(read.settings.as_deref(), Some("{}"));
    assert!(store.catalog_version().await.expect("version") > v2);
}
