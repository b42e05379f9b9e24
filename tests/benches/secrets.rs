//! Secrets at rest on a login's path:
//! `cargo bench -p waypass-tests --bench secrets`.
//!
//! - `open/key_document`: opening a connection's `private_key_jwt` key
//!   document, which a login through such a connection reads once.
//! - `seal/idp_tokens`: sealing a provider's access and refresh tokens,
//!   which every login stores.
//! - `open/client_secret`: what a catalog load pays per connection.

use criterion::Criterion;
use waypass::store::crypt::{Keyring, Place};
use waypass_tests::secrets::SECRETS_KEY;

fn place(field: &str) -> Place<'_> {
    Place {
        table: "bench",
        id: "con_bench",
        field,
    }
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    let keys = Keyring::parse(SECRETS_KEY).expect("key");
    let document = waypass::keys::KeySet::generate_document().expect("a key document");
    let sealed_document = keys.seal(place("document"), &document).expect("seal");
    c.bench_function("open/key_document", |b| {
        b.iter(|| {
            keys.open(place("document"), &sealed_document)
                .expect("open")
        })
    });
    let access = "ya29.a0AfB_byC-access-token-of-a-typical-provider-0123456789";
    let refresh = "1//0g-refresh-token-of-a-typical-provider-0123456789abcdef";
    c.bench_function("seal/idp_tokens", |b| {
        b.iter(|| {
            (
                keys.seal(place("access_token"), access).expect("seal"),
                keys.seal(place("refresh_token"), refresh).expect("seal"),
            )
        })
    });
    let secret = keys
        .seal(place("options.client_secret"), "a-provider-client-secret")
        .expect("seal");
    c.bench_function("open/client_secret", |b| {
        b.iter(|| {
            keys.open(place("options.client_secret"), &secret)
                .expect("open")
        })
    });
    println!("key document: {} bytes", document.len());
    c.final_summary();
}
