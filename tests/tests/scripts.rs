//! Auth0 `fetchUserProfile` scripts in the shipped script engine: the
//! documentation's example verbatim, and scripts in the styles people write,
//! against stub providers on 127.0.0.1 (or answered in-process).

use std::sync::{Arc, LazyLock};
use std::time::Duration;

use bytes::Bytes;
use serde_json::json;
use waypass::egress::{CannedTransport, EgressPolicy, OutboundResponse};
use waypass::keys::Alg;
use waypass::mapper::{
    InvocationReport, Limits, MapperError, MapperInput, Runtime, RuntimeConfig, Sandbox, Settings,
    TokenSet,
};
use waypass::script::{ScriptEngine, ScriptError};
use waypass_tests::guests;
use waypass_tests::login::{KEYS, RUNTIME};
use waypass_tests::stub::{Reply, Stub};

/// The script of Auth0's generic-OAuth2 documentation, byte for byte.
const DOC_EXAMPLE: &str = include_str!("../../examples/scripts/auth0-doc-example.js");

static ENGINE: LazyLock<ScriptEngine> =
    LazyLock::new(|| ScriptEngine::load(&RUNTIME).expect("the shipped engine loads"));

/// A runtime whose requests are answered in-process, with
/// `auth.example.com` (the documentation's provider) resolving to a public
/// address: the egress policy applies as over the network.
static CANNED: LazyLock<(Runtime, ScriptEngine)> = LazyLock::new(|| {
    let transport = CannedTransport::new(|req| {
        let authorized = req
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            == Some("Bearer at-doc");
        let (status, body) = match (req.url.as_str(), authorized) {
            ("https://auth.example.com/userinfo", true) => (
                200,
                r#"{"account":{"uuid":"2b3c","email":"ada@example.com"}}"#,
            ),
            ("https://auth.example.com/userinfo", false) => (401, "bad token"),
            _ => (404, "not found"),
        };
        OutboundResponse {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: Bytes::from_static(body.as_bytes()),
        }
    })
    .resolving("auth.example.com", "93.184.215.14".parse().expect("ip"));
    let runtime = Runtime::new(RuntimeConfig {
        cache_dir: Some(std::path::Path::new(guests::TARGET_DIR).join("artifact-cache")),
        transport: Arc::new(transport),
    })
    .expect("runtime");
    let engine = ScriptEngine::load(&runtime).expect("engine");
    (runtime, engine)
});

fn input(tokens: TokenSet, settings: &[(&str, &str)]) -> MapperInput {
    MapperInput {
        connection: "scripted".into(),
        tokens,
        settings: settings.iter().map(|(k, v)| (*k, *v)).collect::<Settings>(),
    }
}

/// Loopback stubs need private addresses allowed; nothing else is reachable.
fn stub_sandbox(stub: &Stub) -> Sandbox {
    Sandbox {
        egress: Arc::new(EgressPolicy {
            allow_private_networks: true,
            ..EgressPolicy::allowing([stub.rule()])
        }),
        limits: Limits::default(),
    }
}

/// Runs `script` with the stub's origin as the setting `base`
/// (`configuration.base` in the script).
async fn run_against(stub: &Stub, script: &str, tokens: TokenSet) -> InvocationReport {
    let base = stub.url("");
    let input = ScriptEngine::input(
        input(tokens, &[("base", base.trim_end_matches('/'))]),
        script,
    );
    RUNTIME
        .invoke(ENGINE.mapper(), &input, &stub_sandbox(stub))
        .await
}

/// Runs `script` with no network at all.
async fn run_offline(script: &str, tokens: TokenSet) -> InvocationReport {
    let sandbox = Sandbox::default();
    let input = ScriptEngine::input(input(tokens, &[]), script);
    RUNTIME.invoke(ENGINE.mapper(), &input, &sandbox).await
}

fn profile(report: &InvocationReport) -> &waypass::mapper::Profile {
    match &report.result {
        Ok(p) => p,
        Err(e) => panic!("script failed: {e}; logs: {:?}", report.logs),
    }
}

/// Asserts that `report` is a profile with `user_id` and exactly `extra`
/// beyond the fields the world names.
fn assert_profile(report: &InvocationReport, user_id: &str, extra: serde_json::Value) {
    let p = profile(report);
    assert_eq!(p.user_id, user_id);
    assert_eq!(serde_json::Value::Object(p.extra.clone()), extra);
}

fn error(report: &InvocationReport) -> &MapperError {
    match &report.result {
        Err(e) => e,
        Ok(p) => panic!("script succeeded with {p:?}"),
    }
}

fn userinfo_stub_reply(r: &waypass_tests::stub::Received) -> Reply {
    match (r.path_and_query.as_str(), r.header("authorization")) {
        ("/userinfo", Some("Bearer at-1")) => Reply::Body(
            200,
            r#"{"account":{"uuid":"u-1","email":"ada@example.com"}}"#.into(),
        ),
        ("/userinfo", _) => Reply::Body(401, r#"{"error":"invalid_token"}"#.into()),
        _ => Reply::Body(404, "no such page".into()),
    }
}

/// A script that counts its logins in every place a script could keep
/// state: a top-level `var` of the program, a property of `globalThis`, and
/// a property added to `Object.prototype` (a polluted built-in).
const COUNTING_SCRIPT: &str = r#"var calls = 0;
function fetchUserProfile(accessToken, context, callback) {
  calls += 1;
  globalThis.waypassCounter = (globalThis.waypassCounter || 0) + 1;
  Object.prototype.waypassPolluted = (Object.prototype.waypassPolluted || 0) + 1;
  callback(null, {
    user_id: String(calls),
    global: globalThis.waypassCounter,
    polluted: ({}).waypassPolluted,
  });
}"#;

#[tokio::test(flavor = "multi_thread")]
async fn a_global_set_by_one_login_is_absent_in_the_next() {
    let check = |report: &InvocationReport| {
        let p = profile(report);
        assert_eq!(p.user_id, "1");
        assert_eq!(
            serde_json::Value::Object(p.extra.clone()),
            json!({"global": 1, "polluted": 1})
        );
    };
    // One after another: the same pool slot, reused.
    for _ in 0..5 {
        check(&run_offline(COUNTING_SCRIPT, TokenSet::bearer("at-1")).await);
    }
    // Several at once, twice: other slots, each reused.
    for _ in 0..2 {
        let mut logins = tokio::task::JoinSet::new();
        for _ in 0..6 {
            logins.spawn(run_offline(COUNTING_SCRIPT, TokenSet::bearer("at-1")));
        }
        for report in logins.join_all().await {
            check(&report);
        }
    }
}

/// Returns `Math.random()` and four bytes of `crypto.getRandomValues`.
const RANDOM_SCRIPT: &str = r#"function (accessToken, ctx, callback) {
  callback(null, {
    user_id: String(Math.random()),
    bytes: Array.from(crypto.getRandomValues(new Uint8Array(8))).join(","),
  });
}"#;

/// The shipped engine is a snapshot of a call (`host/src/build/snapshot.rs`):
/// a random generator seeded before it would be every login's. Each login's
/// `Math.random()` and `crypto.getRandomValues` are its own.
#[tokio::test(flavor = "multi_thread")]
async fn each_login_draws_its_own_random_numbers() {
    let mut seen = std::collections::HashSet::new();
    for _ in 0..4 {
        let report = run_offline(RANDOM_SCRIPT, TokenSet::bearer("at-1")).await;
        let p = profile(&report);
        let bytes = p.extra["bytes"].as_str().expect("bytes").to_owned();
        assert!(
            seen.insert(p.user_id.clone()) && seen.insert(bytes),
            "a login repeated another's random numbers: {p:?}"
        );
    }
}

#[tokio::test]
async fn the_documentation_example_runs_verbatim() {
    let (runtime, engine) = &*CANNED;
    let sandbox = Sandbox {
        egress: Arc::new(EgressPolicy::allowing(["auth.example.com"
            .parse()
            .expect("rule")])),
        limits: Limits::default(),
    };
    let input = ScriptEngine::input(input(TokenSet::bearer("at-doc"), &[]), DOC_EXAMPLE);
    let report = runtime.invoke(engine.mapper(), &input, &sandbox).await;
    let p = profile(&report);
    assert_eq!(p.user_id, "2b3c");
    assert_eq!(p.email.as_deref(), Some("ada@example.com"));
    assert_eq!(report.requests.len(), 1);
    assert_eq!(report.requests[0].url, "https://auth.example.com/userinfo");

    // A rejected token: `callback(new Error(body))`, the body as the message.
    let input = ScriptEngine::input(input_with_token("wrong"), DOC_EXAMPLE);
    let report = runtime.invoke(engine.mapper(), &input, &sandbox).await;
    assert_eq!(
        error(&report),
        &MapperError::Other {
            message: "bad token".into()
        }
    );
}

fn input_with_token(token: &str) -> MapperInput {
    input(TokenSet::bearer(token), &[])
}

#[tokio::test]
async fn the_documentation_example_is_denied_a_host_the_connection_does_not_allow() {
    let (runtime, engine) = &*CANNED;
    // The connection's provider is elsewhere: auth.example.com is off-list.
    let sandbox = Sandbox {
        egress: Arc::new(EgressPolicy::allowing(["provider.example.net"
            .parse()
            .expect("rule")])),
        limits: Limits::default(),
    };
    let input = ScriptEngine::input(input_with_token("at-doc"), DOC_EXAMPLE);
    let report = runtime.invoke(engine.mapper(), &input, &sandbox).await;
    let MapperError::Other { message } = error(&report) else {
        panic!("expected the script's error, got {:?}", report.result);
    };
    assert!(message.starts_with("http denied"), "{message}");
    assert!(message.contains("auth.example.com"), "{message}");
}

#[tokio::test]
async fn an_anonymous_function_with_two_requests_merges_both_answers() {
    let stub = Stub::start(|r| match r.path_and_query.as_str() {
        "/user" => Reply::Body(200, r#"{"id":42,"login":"ada","name":"Ada L"}"#.into()),
        "/user/emails" => Reply::Body(
            200,
            r#"[{"email":"old@example.com","primary":false,"verified":true},
                {"email":"ada@example.com","primary":true,"verified":true}]"#
                .into(),
        ),
        _ => Reply::Body(404, "nope".into()),
    })
    .await;
    let script = r#"function (accessToken, ctx, cb) {
      const headers = { Authorization: 'token ' + accessToken, 'User-Agent': 'Auth0' };
      request.get({ url: configuration.base + '/user', headers, json: true }, (err, resp, user) => {
        if (err) return cb(err);
        if (resp.statusCode !== 200) return cb(new Error('StatusCode:' + resp.statusCode));
        request.get({ url: configuration.base + '/user/emails', headers, json: true }, (err, resp, emails) => {
          if (err) return cb(err);
          const primary = emails.find((e) => e.primary);
          cb(null, { user_id: user.id, nickname: user.login, name: user.name,
                     email: primary.email, email_verified: primary.verified });
        });
      });
    }"#;
    let report = run_against(&stub, script, TokenSet::bearer("gh-token")).await;
    let p = profile(&report);
    assert_eq!(p.user_id, "42");
    assert_eq!(p.nickname.as_deref(), Some("ada"));
    assert_eq!(p.email.as_deref(), Some("ada@example.com"));
    assert_eq!(p.email_verified, Some(true));
    let received = stub.received();
    assert_eq!(received.len(), 2);
    assert!(
        received
            .iter()
            .all(|r| r.header("authorization") == Some("token gh-token"))
    );
}

#[tokio::test]
async fn basic_auth_and_a_query_string_reach_the_provider() {
    let stub = Stub::start(|r| {
        if r.path_and_query == "/me?fields=id%2Cemail&access_token=at-1"
            && r.header("authorization") == Some("Basic Y2xpZW50OnMzY3JldA==")
        {
            Reply::Body(200, r#"{"id":"fb-7","email":"ada@example.com"}"#.into())
        } else {
            Reply::Body(400, format!("unexpected {}", r.path_and_query))
        }
    })
    .await;
    let script = r#"function fetchUserProfile(accessToken, context, callback) {
      request({
        method: 'GET',
        url: configuration.base + '/me',
        qs: { fields: 'id,email', access_token: accessToken },
        auth: { user: 'client', pass: 's3cret' },
      }, function (err, resp, body) {
        if (err) return callback(err);
        if (resp.statusCode !== 200) return callback(new Error(body));
        const me = JSON.parse(body);
        callback(null, { user_id: me.id, email: me.email });
      });
    }"#;
    let report = run_against(&stub, script, TokenSet::bearer("at-1")).await;
    assert_eq!(profile(&report).user_id, "fb-7");
}

#[tokio::test]
async fn a_form_post_with_json_true_gets_a_parsed_body() {
    let stub = Stub::start(|r| {
        let body = String::from_utf8_lossy(&r.body).into_owned();
        if r.method == "POST"
            && r.header("content-type") == Some("application/x-www-form-urlencoded")
            && body == "token=at-1&scope=a%20b"
        {
            Reply::Body(
                200,
                r#"{"active":true,"sub":"s-9","username":"ada"}"#.into(),
            )
        } else {
            Reply::Body(400, format!("unexpected {} {body}", r.method))
        }
    })
    .await;
    let script = r#"function (accessToken, ctx, cb) {
      request.post({ url: configuration.base + '/introspect', form: { token: accessToken, scope: 'a b' }, json: true },
        (err, resp, body) => {
          if (err) return cb(err);
          if (resp.statusCode !== 200) return cb(new Error(JSON.stringify(body)));
          cb(null, { user_id: body.sub, nickname: body.username, active: body.active });
        });
    }"#;
    let report = run_against(&stub, script, TokenSet::bearer("at-1")).await;
    assert_profile(&report, "s-9", json!({"active": true}));
}

#[tokio::test]
async fn a_non_200_answer_reaches_the_script_which_calls_back_with_its_body() {
    let stub = Stub::start(userinfo_stub_reply).await;
    let script = DOC_EXAMPLE.replace(
        "'https://auth.example.com/userinfo'",
        "configuration.base + '/userinfo'",
    );
    let report = run_against(&stub, &script, TokenSet::bearer("expired")).await;
    assert_eq!(
        error(&report),
        &MapperError::Other {
            message: r#"{"error":"invalid_token"}"#.into()
        }
    );
    // And with the right token, the same script logs in.
    let report = run_against(&stub, &script, TokenSet::bearer("at-1")).await;
    assert_eq!(profile(&report).user_id, "u-1");
}

#[tokio::test]
async fn invalid_json_is_the_scripts_error_with_the_body() {
    let stub = Stub::start(|_| Reply::Body(200, "<html>maintenance</html>".into())).await;
    let script = DOC_EXAMPLE.replace(
        "'https://auth.example.com/userinfo'",
        "configuration.base + '/userinfo'",
    );
    let report = run_against(&stub, &script, TokenSet::bearer("at-1")).await;
    assert_eq!(
        error(&report),
        &MapperError::Other {
            message: "<html>maintenance</html>".into()
        }
    );
}

#[tokio::test]
async fn a_profile_without_user_id_is_an_invalid_profile() {
    let report = run_offline(
        "function (at, ctx, cb) { cb(null, { email: 'ada@example.com' }); }",
        TokenSet::bearer("at"),
    )
    .await;
    assert_eq!(
        error(&report),
        &MapperError::InvalidProfile {
            message: "the profile has no user_id".into()
        }
    );
    let report = run_offline(
        "function (at, ctx, cb) { cb(null, 'ada'); }",
        TokenSet::bearer("at"),
    )
    .await;
    assert!(matches!(error(&report), MapperError::InvalidProfile { .. }));
}

#[tokio::test]
async fn the_id_token_is_decoded_from_the_context_without_a_request() {
    let id_token = KEYS
        .sign(
            Alg::Rs256,
            &json!({"sub": "oidc-5", "email": "ada@example.com", "given_name": "Ada", "locale": "en"}),
        )
        .expect("sign");
    let raw =
        json!({"access_token": "at", "token_type": "Bearer", "id_token": id_token}).to_string();
    let script = r#"function (accessToken, ctx, callback) {
      var jwt = require("jsonwebtoken");
      const idToken = jwt.decode(ctx.id_token);
      callback(null, { user_id: idToken.sub, email: idToken.email, given_name: idToken.given_name, locale: idToken.locale });
    }"#;
    let report = run_offline(script, TokenSet::from_json(&raw).expect("tokens")).await;
    let p = profile(&report);
    assert_eq!(p.user_id, "oidc-5");
    assert_eq!(p.given_name.as_deref(), Some("Ada"));
    assert_eq!(
        serde_json::Value::Object(p.extra.clone()),
        json!({"locale": "en"})
    );
    assert!(report.requests.is_empty());
}

#[tokio::test]
async fn the_id_token_is_verified_against_the_providers_jwks() {
    let jwks = KEYS.jwks().to_string();
    let stub = Stub::start(move |r| match r.path_and_query.as_str() {
        "/.well-known/jwks.json" => Reply::Body(200, jwks.clone()),
        _ => Reply::Body(404, "no".into()),
    })
    .await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("time")
        .as_secs();
    let sign = |claims: serde_json::Value| {
        let id_token = KEYS.sign(Alg::Rs256, &claims).expect("sign");
        TokenSet::from_json(&json!({"access_token": "at", "id_token": id_token}).to_string())
            .expect("tokens")
    };
    let script = r#"async function fetchUserProfile(accessToken, context, callback) {
      const jwt = require('jsonwebtoken');
      const client = require('jwks-rsa')({ jwksUri: configuration.base + '/.well-known/jwks.json' });
      const getKey = (header, cb) => client.getSigningKey(header.kid, (err, key) => cb(err, key && key.getPublicKey()));
      jwt.verify(context.id_token, getKey, { audience: 'waypass', issuer: 'https://idp.example.com' }, (err, claims) => {
        if (err) return callback(err);
        callback(null, { user_id: claims.sub, email: claims.email });
      });
    }"#;
    let good = json!({"sub": "v-1", "aud": "waypass", "iss": "https://idp.example.com", "exp": now + 300, "email": "ada@example.com"});
    let report = run_against(&stub, script, sign(good.clone())).await;
    assert_eq!(profile(&report).user_id, "v-1");

    let mut expired = good.clone();
    expired["exp"] = json!(now - 600);
    let report = run_against(&stub, script, sign(expired)).await;
    assert_eq!(
        error(&report),
        &MapperError::Other {
            message: "jwt expired".into()
        }
    );

    let mut other_audience = good;
    other_audience["aud"] = json!("someone-else");
    let report = run_against(&stub, script, sign(other_audience)).await;
    assert_eq!(
        error(&report),
        &MapperError::Other {
            message: "jwt audience invalid. expected: waypass".into()
        }
    );
}

#[tokio::test]
async fn the_id_token_is_verified_synchronously_against_a_configured_key() {
    let jwk = KEYS.jwks()["keys"]
        .as_array()
        .and_then(|keys| keys.iter().find(|k| k["kty"] == "RSA"))
        .expect("an RSA key")
        .to_string();
    let id_token = KEYS.sign(Alg::Rs256, &json!({"sub": "k-2"})).expect("sign");
    let mut tampered = id_token.clone();
    tampered.truncate(tampered.len() - 4);
    tampered.push_str("AAAA");
    let script = r#"function (accessToken, context, callback) {
      const jwt = require('jsonwebtoken');
      let claims;
      try {
        claims = jwt.verify(context.id_token, JSON.parse(configuration.jwk), { algorithms: ['RS256'] });
      } catch (e) {
        return callback(new Error('id_token rejected: ' + e.message));
      }
      callback(null, { user_id: claims.sub });
    }"#;
    let sandbox = Sandbox::default();
    for (token, expected) in [
        (&id_token, Ok("k-2")),
        (&tampered, Err("id_token rejected: invalid signature")),
    ] {
        let tokens =
            TokenSet::from_json(&json!({"access_token": "at", "id_token": token}).to_string())
                .expect("tokens");
        let input = ScriptEngine::input(input(tokens, &[("jwk", &jwk)]), script);
        let report = RUNTIME.invoke(ENGINE.mapper(), &input, &sandbox).await;
        match expected {
            Ok(id) => assert_eq!(profile(&report).user_id, id),
            Err(message) => assert_eq!(
                error(&report),
                &MapperError::Other {
                    message: message.into()
                }
            ),
        }
    }
}

#[tokio::test]
async fn promise_and_async_scripts_return_their_profile() {
    let stub = Stub::start(userinfo_stub_reply).await;
    let script = r#"async (accessToken, context) => {
      const util = require('util');
      const get = (options) => new Promise((resolve, reject) =>
        request.get(options, (err, resp, body) => err ? reject(err) : resolve({ resp, body })));
      const { resp, body } = await get({ url: configuration.base + '/userinfo', headers: { Authorization: `Bearer ${accessToken}` } });
      if (resp.statusCode !== 200) throw new Error(`userinfo said ${resp.statusCode}`);
      const { account } = JSON.parse(body);
      return { user_id: account.uuid, email: account.email, via: typeof util.promisify };
    }"#;
    let report = run_against(&stub, script, TokenSet::bearer("at-1")).await;
    assert_profile(&report, "u-1", json!({"via": "function"}));

    let report = run_against(&stub, script, TokenSet::bearer("nope")).await;
    assert_eq!(
        error(&report),
        &MapperError::Other {
            message: "userinfo said 401".into()
        }
    );

    let then_style = "function (at, ctx, cb) { return Promise.resolve().then(() => cb(null, { user_id: 'p-1' })); }";
    assert_eq!(
        profile(&run_offline(then_style, TokenSet::bearer("at")).await).user_id,
        "p-1"
    );
}

/// `fetch` and the body's reading are work the run waits for (their
/// wrappers are installed once, at the engine's initialisation): a script
/// that calls back only after `response.json()` is not taken for stalled
/// between the two, and gets the body.
#[tokio::test]
async fn a_script_calling_back_after_fetch_and_its_json_body_gets_the_profile() {
    let stub = Stub::start(userinfo_stub_reply).await;
    let script = r#"function (accessToken, ctx, callback) {
      fetch(configuration.base + '/userinfo', { headers: { Authorization: 'Bearer ' + accessToken } })
        .then((response) => response.json().then((body) => ({ status: response.status, body })))
        .then(({ status, body }) => callback(null, { user_id: body.account.uuid, status }))
        .catch((e) => callback(e));
    }"#;
    let report = run_against(&stub, script, TokenSet::bearer("at-1")).await;
    assert_profile(&report, "u-1", json!({"status": 200}));
}

#[tokio::test]
async fn buffer_base64_and_console_work_as_in_node() {
    let script = r#"function (accessToken, ctx, cb) {
      const encoded = Buffer.from('client:s3cret').toString('base64');
      const decoded = Buffer.from(encoded, 'base64').toString();
      console.log('encoded %s', encoded, { decoded });
      console.warn('a warning');
      const legacy = new Buffer('client:s3cret').toString('base64');
      cb(null, { user_id: btoa('ada'), hex: Buffer.from('hi').toString('hex'), back: atob(btoa('x')), decoded, same: legacy === encoded });
    }"#;
    let report = run_offline(script, TokenSet::bearer("at")).await;
    assert_profile(
        &report,
        "YWRh",
        json!({"hex": "6869", "back": "x", "decoded": "client:s3cret", "same": true}),
    );
    let lines: Vec<_> = report
        .logs
        .iter()
        .map(|l| (l.level, l.message.as_str()))
        .collect();
    assert!(
        lines.contains(&(
            waypass::mapper::LogLevel::Info,
            r#"encoded Y2xpZW50OnMzY3JldA== {"decoded":"client:s3cret"}"#
        )),
        "{lines:?}"
    );
    assert!(
        lines.contains(&(waypass::mapper::LogLevel::Warn, "a warning")),
        "{lines:?}"
    );
}

#[tokio::test]
async fn an_exception_in_a_request_callback_is_the_scripts_error() {
    let stub = Stub::start(|_| Reply::Body(200, "{}".into())).await;
    let script = r#"function (at, ctx, cb) {
      request.get(configuration.base + '/userinfo', (err, resp, body) => {
        const profile = JSON.parse(body);
        cb(null, { user_id: profile.account.uuid });
      });
    }"#;
    let report = run_against(&stub, script, TokenSet::bearer("at")).await;
    let MapperError::Other { message } = error(&report) else {
        panic!("expected the script's error: {:?}", report.result);
    };
    assert!(message.contains("account"), "{message}");
}

#[tokio::test]
async fn unauthorized_error_denies_the_login() {
    let report = run_offline(
        "function (at, ctx, cb) { cb(new UnauthorizedError('not in the staff group')); }",
        TokenSet::bearer("at"),
    )
    .await;
    assert_eq!(
        error(&report),
        &MapperError::Unauthorized {
            message: "not in the staff group".into()
        }
    );
}

/// Runs `script` and asserts it failed as stalled: the engine's own error,
/// not the deadline's (it did not wait for a callback that could no longer
/// come).
async fn assert_stalled(script: &str) {
    let report = run_offline(script, TokenSet::bearer("at")).await;
    assert_eq!(
        error(&report),
        &MapperError::Other {
            message: "the script finished without calling callback(err, profile)".into()
        }
    );
}

#[tokio::test]
async fn a_script_that_returns_without_calling_back_fails_at_once() {
    assert_stalled("function (at, ctx, cb) { console.log('forgot to call back'); }").await;
}

#[tokio::test]
async fn a_script_whose_last_timer_ran_without_calling_back_fails_at_once() {
    // The stall check is armed only when nothing is pending: here, once the
    // timer has run.
    assert_stalled(
        "function (at, ctx, cb) { setTimeout(() => console.log('no callback here'), 5); }",
    )
    .await;
}

#[tokio::test]
async fn a_script_calling_back_from_a_timer_is_not_taken_for_stalled() {
    // While the timer is pending the run waits for it: no stall check fires.
    let report = run_offline(
        "function (at, ctx, cb) { setTimeout(() => cb(null, { user_id: 't-1' }), 20); }",
        TokenSet::bearer("at"),
    )
    .await;
    assert_eq!(profile(&report).user_id, "t-1");
}

#[tokio::test]
async fn a_guard_timer_left_behind_does_not_hold_the_login() {
    // The common "fail if the provider is slow" pattern: the profile is
    // ready at once; the pending timer must neither delay nor fail the login.
    // The timer is set past the call's deadline: had the engine waited for
    // it, the call would have ended in a timeout, not with the profile.
    let report = run_offline(
        "function (at, ctx, cb) {\n  const guard = setTimeout(() => cb(new Error('too slow')), 600000);\n  cb(false, { user_id: 'g-1' });\n}",
        TokenSet::bearer("at"),
    )
    .await;
    assert!(
        Duration::from_secs(600) > Limits::default().deadline,
        "the guard timer outlasts the deadline"
    );
    assert_eq!(profile(&report).user_id, "g-1");
}

#[tokio::test]
async fn a_script_that_never_calls_back_is_ended_by_the_deadline() {
    let sandbox = Sandbox {
        limits: Limits {
            deadline: Duration::from_millis(300),
            ..Limits::default()
        },
        ..Sandbox::default()
    };
    for script in [
        // Waits for something that never comes.
        "function (at, ctx, cb) { setInterval(() => console.log('still waiting'), 50); }",
        // Spins.
        "function (at, ctx, cb) { for (;;) {} }",
    ] {
        let input = ScriptEngine::input(input(TokenSet::bearer("at"), &[]), script);
        let report = RUNTIME.invoke(ENGINE.mapper(), &input, &sandbox).await;
        assert_eq!(
            error(&report),
            &MapperError::Timeout { limit_ms: 300 },
            "{script}"
        );
    }
}

#[tokio::test]
async fn a_script_requesting_a_host_off_the_allow_list_gets_the_policys_error() {
    let stub = Stub::start(|_| Reply::Body(200, "{}".into())).await;
    let script = r#"function (at, ctx, cb) {
      request.get({ url: 'https://internal.example.com/' }, (err, resp, body) => {
        if (err) return cb(err);
        cb(null, { user_id: 'leaked' });
      });
    }"#;
    let report = run_against(&stub, script, TokenSet::bearer("at")).await;
    let MapperError::Other { message } = error(&report) else {
        panic!("expected the script's error: {:?}", report.result);
    };
    assert!(
        message.starts_with("http denied") && message.contains("allow-list"),
        "{message}"
    );
    assert!(stub.received().is_empty());
    assert_eq!(report.requests.len(), 1);
    assert!(report.requests[0].error.is_some());
}

#[tokio::test]
async fn a_script_requesting_a_metadata_address_is_refused_by_the_metadata_rule() {
    // The address is allowed by name and private networks are allowed: the
    // metadata rule alone refuses it (the in-process transport would
    // answer anything that got through).
    for host in [
        "169.254.169.254",
        "169.254.1.1",
        "168.63.129.16",
        "[fd00:ec2::1]",
    ] {
        let script = format!(
            r#"function (at, ctx, cb) {{
              request.get({{ url: 'http://{host}/latest/meta-data/' }}, (err, resp, body) => {{
                if (err) return cb(err);
                cb(null, {{ user_id: 'leaked' }});
              }});
            }}"#
        );
        let sandbox = Sandbox {
            egress: Arc::new(EgressPolicy {
                allow_private_networks: true,
                ..EgressPolicy::allowing([format!("http://{host}").parse().expect("rule")])
            }),
            limits: Limits::default(),
        };
        let (runtime, engine) = &*CANNED;
        let input = ScriptEngine::input(input(TokenSet::bearer("at"), &[]), &script);
        let report = runtime.invoke(engine.mapper(), &input, &sandbox).await;
        let MapperError::Other { message } = error(&report) else {
            panic!("{host}: expected the script's error: {:?}", report.result);
        };
        assert!(
            message.starts_with("http denied") && message.contains("metadata"),
            "{host}: {message}"
        );
    }
}

#[tokio::test]
async fn a_function_expression_followed_by_semicolons_and_unicode_white_space_runs() {
    // `;` and every kind of trailing white space the engine strips before
    // compiling the text as an expression (without the strip, neither form
    // parses: `return (function … ;);` nor an anonymous function statement).
    let script = "function (accessToken, ctx, cb) {\n  cb(null, {user_id: accessToken});\n} ;\u{a0}\u{3000};\r\n\u{2028}\u{feff}\t;;\u{200a} \n";
    let report = run_offline(script, TokenSet::bearer("at-7")).await;
    assert_eq!(profile(&report).user_id, "at-7");
}

#[tokio::test]
async fn scripts_are_checked_without_running_and_syntax_errors_say_where() {
    // Both forms Auth0 accepts compile.
    ENGINE
        .check(&RUNTIME, DOC_EXAMPLE)
        .await
        .expect("the documentation's example");
    ENGINE
        .check(
            &RUNTIME,
            "function (accessToken, ctx, cb) {\n  cb(null, {user_id: 1});\n};\n",
        )
        .await
        .expect("an anonymous function");
    // A check runs nothing: this would fail the login if it ran.
    ENGINE
        .check(
            &RUNTIME,
            "throw new Error('ran');\nfunction fetchUserProfile(a, c, cb) {}",
        )
        .await
        .expect("a program is compiled, not run");

    let broken = "function fetchUserProfile(accessToken, context, callback) {\n  request.get({ url: 'x' }, (err, resp, body) => {\n    callback(null, { user_id: body.id );\n  });\n}\n";
    let err = ENGINE.check(&RUNTIME, broken).await.unwrap_err();
    let ScriptError::Syntax {
        line,
        column,
        message,
    } = &err
    else {
        panic!("expected a syntax error, got {err:?}");
    };
    assert_eq!((*line, *column), (3, 39), "{err}");
    assert!(!message.is_empty());

    let anonymous = "function (accessToken, ctx, cb) {\n  let x = ;\n}";
    let err = ENGINE.check(&RUNTIME, anonymous).await.unwrap_err();
    assert_eq!(
        err,
        ScriptError::Syntax {
            message: "expected expression, got ';'".into(),
            line: 2,
            column: 11
        }
    );
}

#[test]
fn the_shipped_engine_is_built_from_the_current_sources() {
    let digest = waypass::build::script_engine_inputs_digest().expect("digest");
    assert_eq!(
        waypass::script::ENGINE_INPUTS.trim(),
        digest,
        "host/assets/script-engine.wasm is stale: run `cargo run -p waypass -- mapper build-script-engine` and commit host/assets"
    );
}

#[test]
fn the_engines_jwt_module_passes_its_node_tests() {
    let dir = waypass::build::script_engine_dir().join("test");
    let out = std::process::Command::new("node")
        .arg("--test")
        .arg(&dir)
        .output()
        .expect("node runs (Node.js 20+ is needed to build JavaScript mappers too)");
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
