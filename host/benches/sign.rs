//! One id_token signature, alone: `cargo bench -p waypass --bench sign
//! [-- --signs N]`.
//!
//! Signs a login's id_token claims `N` times (default 2000) with
//! [`KeySet::sign`] (aws-lc-rs, what the broker uses) for RS256 (RSA-2048)
//! and ES256 (P-256), and the same RS256 signing input with `ring` from the
//! same PKCS#8 key, and prints the mean CPU time of the thread per
//! signature. Compare with `openssl speed rsa2048 ecdsap256` on the same
//! machine (BENCHMARKS.md, issue #10 §6): this is the floor of what a login
//! signed with each algorithm costs the broker.

use std::time::Duration;

use aws_lc_rs::encoding::AsDer as _;
use serde_json::json;
use waypass::keys::{Alg, KeySet};

/// Signatures per measurement: enough that the clock's granularity and
/// the first call's set-up do not show (RSA-2048: about a second).
const DEFAULT_SIGNS: u32 = 2000;

fn main() {
    let argv: Vec<String> = std::env::args().collect();
    let signs = argv
        .windows(2)
        .find(|p| p[0] == "--signs")
        .and_then(|p| p[1].parse().ok())
        .unwrap_or(DEFAULT_SIGNS);
    let keys = KeySet::generate().expect("generate keys");
    // What a login's id_token carries (broker::issue), at its usual size.
    let claims = json!({
        "iss": "http://127.0.0.1:8080/",
        "sub": "bench|248289761001",
        "aud": "app-rs256",
        "iat": 1_764_640_000u64,
        "exp": 1_764_676_000u64,
        "nonce": "n-0S6_WzA2Mj",
        "at_hash": "77QmUPtjPfzWtF2AnpK9RQ",
        "name": "Jane Doe",
        "email": "janedoe@example.com",
        "email_verified": true,
        "picture": "http://example.com/janedoe/me.jpg",
    });
    println!("waypass sign benchmark: {signs} signatures each, one thread");
    for (label, alg) in [
        ("RS256 (RSA-2048), aws-lc-rs", Alg::Rs256),
        ("ES256 (P-256), aws-lc-rs", Alg::Es256),
    ] {
        keys.sign(alg, &claims).expect("sign");
        let per = per_call(signs, || {
            std::hint::black_box(keys.sign(alg, &claims).expect("sign"));
        });
        println!("{label}: {:.3} ms per id_token", per.as_secs_f64() * 1000.0);
    }

    // ring, for the comparison the issue makes: the same signing input.
    let pkcs8 = aws_lc_rs::signature::RsaKeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048)
        .and_then(|pair| pair.as_der())
        .expect("RSA key");
    let ring_pair = ring::rsa::KeyPair::from_pkcs8(pkcs8.as_ref()).expect("ring RSA key");
    let aws_pair =
        aws_lc_rs::signature::RsaKeyPair::from_pkcs8(pkcs8.as_ref()).expect("aws-lc RSA key");
    let input = keys.sign(Alg::Rs256, &claims).expect("sign");
    let input = input.rsplit_once('.').map_or(input.as_str(), |(i, _)| i);
    let mut sig = vec![0u8; ring_pair.public().modulus_len()];
    let ring_rng = ring::rand::SystemRandom::new();
    let per = per_call(signs, || {
        ring_pair
            .sign(
                &ring::signature::RSA_PKCS1_SHA256,
                &ring_rng,
                input.as_bytes(),
                &mut sig,
            )
            .expect("ring sign");
    });
    println!(
        "RS256 (RSA-2048), ring, signature only: {:.3} ms",
        per.as_secs_f64() * 1000.0
    );
    let aws_rng = aws_lc_rs::rand::SystemRandom::new();
    let per = per_call(signs, || {
        aws_pair
            .sign(
                &aws_lc_rs::signature::RSA_PKCS1_SHA256,
                &aws_rng,
                input.as_bytes(),
                &mut sig,
            )
            .expect("aws-lc sign");
    });
    println!(
        "RS256 (RSA-2048), aws-lc-rs, signature only: {:.3} ms",
        per.as_secs_f64() * 1000.0
    );
}

/// The calling thread's CPU time per call of `f` over `n` calls (not the
/// wall clock: other work on a shared machine does not count).
fn per_call(n: u32, mut f: impl FnMut()) -> Duration {
    let start = thread_cpu();
    for _ in 0..n {
        f();
    }
    (thread_cpu() - start) / n
}

/// This thread's CPU time: the first field of `/proc/thread-self/schedstat`,
/// nanoseconds on a CPU (`/proc`'s stat counts 10 ms ticks, too coarse).
fn thread_cpu() -> Duration {
    let schedstat = std::fs::read_to_string("/proc/thread-self/schedstat")
        .expect("/proc/thread-self/schedstat");
    let ns = schedstat
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .expect("schedstat's first field");
    Duration::from_nanos(ns)
}
