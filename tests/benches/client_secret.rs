//! Client secret verification at the token endpoint:
//! `cargo bench -p waypass-tests --bench client_secret`.
//!
//! - `argon2id/verify`: one argon2id verification of a secret from the
//!   configuration file (what an app's first token request after a start
//!   costs, and what every wrong secret for such an app costs).
//! - `argon2id/remembered`: the same app's later requests, answered from the
//!   verifier's memory of the secret it verified (an HMAC and a lookup).
//! - `sha256/verify`: a generated secret (API-created or rotated).

use criterion::Criterion;
use waypass::model::client_secret::{ClientSecretHash, Verifier};

const SECRET: &str = "a-secret-a-person-chose";

fn main() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio");
    let mut c = Criterion::default().configure_from_args();
    let slow = ClientSecretHash::slow(SECRET).expect("hash");
    let fast = ClientSecretHash::fast(SECRET);
    {
        let mut group = c.benchmark_group("argon2id");
        // Tens of milliseconds each: criterion's minimum of 10 samples.
        group.sample_size(10);
        group.bench_function("verify", |b| b.iter(|| assert!(slow.matches(SECRET))));
        group.finish();
    }
    let verifier = Verifier::new();
    assert!(rt.block_on(verifier.verify("app", &slow, SECRET)));
    c.bench_function("argon2id/remembered", |b| {
        b.iter(|| assert!(rt.block_on(verifier.verify("app", &slow, SECRET))))
    });
    assert_eq!(verifier.slow_verifications(), 1, "remembered, never re-run");
    c.bench_function("sha256/verify", |b| {
        b.iter(|| assert!(fast.matches(SECRET)))
    });
    c.final_summary();
}
