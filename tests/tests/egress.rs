//! The broker's network side as an attacker would try it (issue #9 §1):
//! the management API as a proxy into the private network, the token
//! exchange as a port scanner, the address rules the token exchange shares
//! with mappers, and size caps that only the streaming read can enforce.

use std::io::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, LazyLock, Mutex};

use openidconnect::reqwest;
use serde_json::{Value, json};
use waypass::egress::{
    EgressPolicy, HostRule, HttpError, OutboundResponse, PreparedRequest, Transport,
};
use waypass::mapper::{MapperError, MapperInput, Runtime, RuntimeConfig, Sandbox, TokenSet};
use waypass_tests::guests;
use waypass_tests::login::{
    APP, APP_CALLBACK, Browser, CONNECTION, Landing, TestBed, admin_api, api_call, management_token,
};
use waypass_tests::stub::{RawStub, Reply, Stub};

// ---- what the log says ----

/// Everything logged at info and above in this test binary.
static LOG: Mutex<Vec<u8>> = Mutex::new(Vec::new());

struct LogWriter;

impl std::io::Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        LOG.lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Installs the capturing logger once for the binary (tests run on many
/// threads, and the broker's tasks on the runtime's, so it is global).
fn capture_logs() {
    static INSTALLED: LazyLock<()> = LazyLock::new(|| {
        let _ = tracing_subscriber::fmt()
            .with_writer(|| LogWriter)
            .with_ansi(false)
            .with_max_level(tracing_subscriber::filter::LevelFilter::INFO)
            .try_init();
    });
    LazyLock::force(&INSTALLED);
}

/// The logged lines containing `needle`.
fn log_lines_with(needle: &str) -> Vec<String> {
    let log = LOG.lock().unwrap_or_else(|p| p.into_inner());
    String::from_utf8_lossy(&log)
        .lines()
        .filter(|l| l.contains(needle))
        .map(str::to_owned)
        .collect()
}

// ---- helpers ----

/// A login as the app through `connection`, up to the redirect into the app.
async fn login(tb: &TestBed, connection: &str) -> Landing {
    let url = tb.authorize_url(
        APP,
        APP_CALLBACK,
        &[("scope", "openid"), ("connection", connection)],
    );
    Browser::default().login(tb, &url, false).await
}

/// A script that reads `url` and hands its body back as the user's name:
/// what an attacker runs to read an internal service through `try`.
fn reading_script(url: &str) -> String {
    format!(
        r#"function (accessToken, ctx, callback) {{
  request.get({{ url: '{url}' }}, (err, resp, body) => {{
    if (err) return callback(err);
    callback(null, {{ user_id: 'probe', name: body }});
  }});
}}"#
    )
}

/// A connection to a public-looking provider running `script`, with
/// `egress` as its `mapper_egress`.
fn connection_body(name: &str, script: &str, egress: Value) -> Value {
    json!({
        "name": name,
        "strategy": "oauth2",
        "options": {
            "client_id": "cid",
            "authorizationURL": "https://idp.example.com/authorize",
            "tokenURL": "https://idp.example.com/token",
            "scripts": {"fetchUserProfile": script},
            "mapper_egress": egress
        }
    })
}

/// A port on loopback where nothing listens.
async fn closed_port() -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    drop(listener);
    port
}

// ---- the management API is not a proxy into the private network ----

#[tokio::test(flavor = "multi_thread")]
async fn a_write_connections_caller_cannot_open_private_networks_to_read_an_internal_service_through_try()
 {
    let tb = TestBed::start(|_, _| {}).await;
    let internal = Stub::start(|_| Reply::Body(200, "internal-secret-42".into())).await;
    let script = reading_script(&internal.url("/admin"));
    let private = json!({"allow_private_networks": true, "allowed_hosts": [internal.url("")]});
    let ops = management_token(&tb.issuer, &["read:connections", "write:connections"]).await;

    // The attack: create a connection allowed private networks, then `try`.
    let (status, body) = api_call(
        &tb.issuer,
        reqwest::Method::POST,
        "connections",
        Some(&ops),
        Some(connection_body("probe", &script, private.clone())),
    )
    .await;
    assert_eq!(status, 403, "the write is refused: {body}");
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains("write:egress")),
        "{body}"
    );

    // The same through PATCH of a connection created without private reach:
    // turning private networks on, or adding a loopback host, is refused.
    let (status, created) = api_call(
        &tb.issuer,
        reqwest::Method::POST,
        "connections",
        Some(&ops),
        Some(connection_body("probe", &script, json!({}))),
    )
    .await;
    assert_eq!(
        status, 201,
        "a public connection is the caller's to make: {created}"
    );
    let id = created["id"].as_str().expect("id").to_owned();
    for egress in [
        json!({"allow_private_networks": true}),
        json!({"allowed_hosts": [internal.url("")]}),
        json!({"allowed_hosts": ["vault.internal"]}),
    ] {
        let (status, body) = api_call(
            &tb.issuer,
            reqwest::Method::PATCH,
            &format!("connections/{id}"),
            Some(&ops),
            Some(json!({"options": {"mapper_egress": egress}})),
        )
        .await;
        assert_eq!(status, 403, "{egress}: {body}");
        assert!(
            body["message"]
                .as_str()
                .is_some_and(|m| m.contains("write:egress"))
        );
    }
    let try_it = |token: String| {
        let (issuer, id) = (tb.issuer.clone(), id.clone());
        async move {
            api_call(
                &issuer,
                reqwest::Method::POST,
                &format!("connections/{id}/try"),
                Some(&token),
                Some(json!({"access_token": "x"})),
            )
            .await
        }
    };
    let (status, tried) = try_it(ops.clone()).await;
    assert_eq!(status, 200, "{tried}");
    assert!(
        !tried.to_string().contains("internal-secret-42"),
        "nothing internal was read: {tried}"
    );
    assert!(internal.received().is_empty());

    // The admin (who holds write:egress) grants it; then `try` reads it.
    let (status, body) = admin_api(
        &tb.issuer,
        reqwest::Method::PATCH,
        &format!("connections/{id}"),
        Some(json!({"options": {"mapper_egress": private}})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, tried) = try_it(ops.clone()).await;
    assert_eq!(status, 200, "{tried}");
    assert_eq!(tried["profile"]["name"], "internal-secret-42", "{tried}");

    // On the granted connection the caller may change what leaves the
    // reach as it is (the scope), not widen it (a new provider host).
    let (status, body) = api_call(
        &tb.issuer,
        reqwest::Method::PATCH,
        &format!("connections/{id}"),
        Some(&ops),
        Some(json!({"options": {"scope": "openid"}})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = api_call(
        &tb.issuer,
        reqwest::Method::PATCH,
        &format!("connections/{id}"),
        Some(&ops),
        Some(json!({"options": {"tokenURL": "https://db.corp.example.com/token"}})),
    )
    .await;
    assert_eq!(status, 403, "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_caller_holding_write_egress_may_grant_private_networks() {
    let tb = TestBed::start(|_, _| {}).await;
    let internal = Stub::start(|_| Reply::Body(200, "internal-ok".into())).await;
    let script = reading_script(&internal.url("/health"));
    let token = management_token(&tb.issuer, &["write:connections", "write:egress"]).await;
    let (status, created) = api_call(
        &tb.issuer,
        reqwest::Method::POST,
        "connections",
        Some(&token),
        Some(connection_body(
            "internal-idp",
            &script,
            json!({"allow_private_networks": true, "allowed_hosts": [internal.url("")]}),
        )),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().expect("id");
    let (status, tried) = api_call(
        &tb.issuer,
        reqwest::Method::POST,
        &format!("connections/{id}/try"),
        Some(&token),
        Some(json!({"access_token": "x"})),
    )
    .await;
    assert_eq!(status, 200, "{tried}");
    assert_eq!(tried["profile"]["name"], "internal-ok", "{tried}");
}

// ---- the token exchange meets the connection's address policy ----

#[tokio::test(flavor = "multi_thread")]
async fn a_token_exchange_to_loopback_needs_private_networks_and_fails_generically_without() {
    let closed = TestBed::start(|connections, _| {
        connections[0]["options"]["mapper_egress"] = json!({"allow_private_networks": false});
    })
    .await;
    let landing = login(&closed, CONNECTION).await;
    assert_eq!(
        landing.param("error").as_deref(),
        Some("server_error"),
        "{landing:?}"
    );
    assert_eq!(
        landing.param("error_description").as_deref(),
        Some("the provider could not be reached"),
        "{landing:?}"
    );
    assert!(
        closed.provider.requests_to("/token").is_empty(),
        "the broker never connected to the loopback token endpoint"
    );

    let open = TestBed::start(|_, _| {}).await;
    let landing = login(&open, CONNECTION).await;
    assert!(landing.param("code").is_some(), "{landing:?}");
    assert_eq!(open.provider.requests_to("/token").len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_closed_port_at_the_token_endpoint_tells_the_app_nothing_of_addresses_ports_or_errors() {
    capture_logs();
    let port = closed_port().await;
    let tb = TestBed::start(|connections, _| {
        connections[0]["options"]["tokenURL"] = json!(format!("http://127.0.0.1:{port}/token"));
    })
    .await;
    let landing = login(&tb, CONNECTION).await;
    assert_eq!(
        landing.param("error").as_deref(),
        Some("server_error"),
        "{landing:?}"
    );
    let description = landing.param("error_description").expect("a description");
    assert_eq!(description, "the provider could not be reached");
    for leak in [
        "127.0.0.1",
        &port.to_string(),
        "refused",
        "os error",
        "connect",
    ] {
        assert!(!description.contains(leak), "{leak} in {description}");
    }
    // The operator's log has the detail, on the login's correlation id.
    let lines = log_lines_with(&format!("127.0.0.1:{port}"));
    assert!(
        lines
            .iter()
            .any(|l| l.contains("correlation_id=") && l.contains("could not be reached")),
        "{lines:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_token_exchange_to_a_metadata_address_is_refused_even_with_private_networks() {
    capture_logs();
    let tb = TestBed::start(|connections, _| {
        connections[0]["options"]["tokenURL"] =
            json!("http://169.254.169.254/latest/meta-data/iam/");
    })
    .await;
    let landing = login(&tb, CONNECTION).await;
    assert_eq!(
        landing.param("error_description").as_deref(),
        Some("the provider could not be reached"),
        "{landing:?}"
    );
    let lines = log_lines_with("`169.254.169.254` is a cloud metadata address");
    assert!(!lines.is_empty(), "the log says why");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_chunked_token_response_over_the_cap_is_refused_as_unusable() {
    let provider = RawStub::start(RawStub::chunked(1 << 20)).await;
    let tb = TestBed::start(|connections, _| {
        connections[0]["options"]["tokenURL"] = json!(provider.url("/token"));
    })
    .await;
    let landing = login(&tb, CONNECTION).await;
    assert_eq!(
        landing.param("error").as_deref(),
        Some("server_error"),
        "{landing:?}"
    );
    let description = landing.param("error_description").expect("a description");
    assert!(
        description.contains("not usable")
            && description.contains(&waypass::upstream::MAX_TOKEN_RESPONSE_BYTES.to_string()),
        "{description}"
    );
    assert_eq!(provider.requests(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_token_response_whose_content_length_understates_it_is_read_to_the_declared_length() {
    // A valid token response, then a megabyte the length does not count:
    // read as declared, the rest never buffered (it would be over the cap).
    let token = br#"{"access_token":"at-declared","token_type":"Bearer"}"#;
    let provider = RawStub::start(RawStub::understated(token, 1 << 20)).await;
    let tb = TestBed::start(|connections, _| {
        let options = &mut connections[0]["options"];
        options["tokenURL"] = json!(provider.url("/token"));
        // The echo mapper needs no provider: the login ends on the token.
        options["mapper"] = json!("hostile");
        options["mapper_settings"] = json!({"mode": "echo"});
    })
    .await;
    let landing = login(&tb, CONNECTION).await;
    assert!(landing.param("code").is_some(), "{landing:?}");
    let user = tb
        .broker_user(&format!("oauth2|{CONNECTION}|echo"))
        .await
        .expect("the user was recorded");
    let seen = serde_json::to_string(&user).expect("user json");
    assert!(seen.contains("at-declared"), "{seen}");
}

// ---- resolution: one seam, one rule, for mappers and the token exchange ----

/// Answers name lookups from a table and records where each request was
/// allowed to connect; answers every request with `{}`.
#[derive(Clone, Default)]
struct Recording {
    names: Arc<Vec<(&'static str, Vec<IpAddr>)>>,
    sent: Arc<Mutex<Vec<Vec<SocketAddr>>>>,
}

impl Recording {
    fn resolving(names: Vec<(&'static str, Vec<&str>)>) -> Self {
        Self {
            names: Arc::new(
                names
                    .into_iter()
                    .map(|(n, ips)| (n, ips.iter().map(|ip| ip.parse().expect("ip")).collect()))
                    .collect(),
            ),
            sent: Arc::default(),
        }
    }

    fn sent(&self) -> Vec<Vec<SocketAddr>> {
        self.sent.lock().expect("sent").clone()
    }
}

impl Transport for Recording {
    fn send(
        &self,
        _req: PreparedRequest,
        addrs: Vec<SocketAddr>,
        _max: usize,
    ) -> std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<OutboundResponse, HttpError>> + Send>,
    > {
        self.sent.lock().expect("sent").push(addrs);
        Box::pin(async {
            Ok(OutboundResponse {
                status: 200,
                headers: vec![("content-type".into(), "application/json".into())],
                body: bytes::Bytes::from_static(br#"{"access_token":"at","token_type":"Bearer"}"#),
            })
        })
    }

    fn known_addresses(&self, name: &str) -> Option<Vec<IpAddr>> {
        self.names
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, ips)| ips.clone())
    }
}

/// One public and one private address for `mixed.example.com`, only
/// private ones for `inside.example.com`, metadata for `meta.example.com`.
fn resolver() -> Recording {
    Recording::resolving(vec![
        ("mixed.example.com", vec!["93.184.215.14", "10.0.0.5"]),
        ("mixed6.example.com", vec!["::1", "2606:4700::1111"]),
        ("inside.example.com", vec!["10.0.0.5", "127.0.0.1"]),
        ("meta.example.com", vec!["169.254.169.254"]),
    ])
}

#[tokio::test]
async fn a_name_resolving_to_public_and_private_addresses_connects_to_the_public_one_only() {
    let transport = resolver();
    let runtime = Runtime::new(RuntimeConfig {
        transport: Arc::new(transport.clone()),
        ..RuntimeConfig::default()
    })
    .expect("runtime");
    let hostile = runtime
        .load(&guests::bytes(guests::HOSTILE))
        .expect("guest loads");
    let fetch = |host: &'static str| {
        let policy = EgressPolicy::allowing([host.parse::<HostRule>().expect("rule")]);
        let input = MapperInput {
            connection: "mixed".into(),
            tokens: TokenSet::bearer("at"),
            settings: [("mode", "fetch"), ("url", &*format!("https://{host}/me"))]
                .into_iter()
                .collect(),
        };
        let sandbox = Sandbox {
            egress: Arc::new(policy),
            ..Sandbox::default()
        };
        let (runtime, hostile) = (&runtime, &hostile);
        async move { runtime.invoke(hostile, &input, &sandbox).await }
    };

    let report = fetch("mixed.example.com").await;
    assert_eq!(report.result.expect("fetched").user_id, "fetched");
    let report = fetch("mixed6.example.com").await;
    assert_eq!(report.result.expect("fetched").user_id, "fetched");
    assert_eq!(
        transport.sent(),
        [
            vec!["93.184.215.14:443".parse::<SocketAddr>().expect("addr")],
            vec!["[2606:4700::1111]:443".parse().expect("addr")],
        ],
        "only the public addresses were offered to the transport"
    );

    // Only private addresses: refused, naming neither of them.
    let report = fetch("inside.example.com").await;
    let Err(MapperError::Other { message }) = &report.result else {
        panic!("expected a refusal: {:?}", report.result);
    };
    assert!(
        message.contains("`inside.example.com` resolves to a private address"),
        "{message}"
    );
    assert!(
        !message.contains("10.0.0.5") && !message.contains("127.0.0.1"),
        "{message}"
    );
    let report = fetch("meta.example.com").await;
    let Err(MapperError::Other { message }) = &report.result else {
        panic!("expected a refusal: {:?}", report.result);
    };
    assert!(message.contains("metadata"), "{message}");
    assert_eq!(transport.sent().len(), 2, "nothing more was sent");
}

#[tokio::test]
async fn the_token_exchange_resolves_and_classifies_like_a_mapper() {
    use waypass::model::{Connection, ConnectionSpec};
    use waypass::upstream::{ExchangeError, Upstream};

    let connection = |token_url: &str, allow_private: bool| {
        let spec: ConnectionSpec = serde_json::from_value(json!({
            "name": "acme",
            "options": {"authorizationURL": "https://mixed.example.com/authorize",
                        "tokenURL": token_url, "client_id": "c", "mapper": "m",
                        "mapper_egress": {"allow_private_networks": allow_private}}
        }))
        .expect("spec");
        Connection::new("con_acme".into(), spec).expect("connection")
    };
    let transport = resolver();
    let upstream = Upstream::new(Arc::new(transport.clone()));
    let exchange = |conn: Arc<Connection>| {
        let upstream = upstream.clone();
        async move {
            upstream
                .exchange_code(&conn, "code", "https://b.test/cb", None, None, 0)
                .await
        }
    };

    let tokens = exchange(connection("https://mixed.example.com/token", false))
        .await
        .expect("exchanged with the public address");
    assert_eq!(tokens.access_token, "at");
    assert_eq!(
        transport.sent(),
        [vec![
            "93.184.215.14:443".parse::<SocketAddr>().expect("addr")
        ]]
    );

    for (url, allow_private) in [
        ("https://inside.example.com/token", false),
        ("http://127.0.0.1:9/token", false),
        ("https://meta.example.com/token", true),
        ("http://[::ffff:169.254.169.254]/token", true),
        ("http://168.63.129.16/token", true),
    ] {
        let err = exchange(connection(url, allow_private))
            .await
            .expect_err("refused");
        assert!(
            matches!(err, ExchangeError::Unreachable { .. }),
            "{url}: {err:?}"
        );
        assert_eq!(err.to_string(), "the provider could not be reached");
    }
    assert_eq!(transport.sent().len(), 1, "nothing refused was sent");

    exchange(connection("https://inside.example.com/token", true))
        .await
        .expect("allowed private networks");
    assert_eq!(
        transport.sent()[1],
        [
            "10.0.0.5:443".parse::<SocketAddr>().expect("addr"),
            "127.0.0.1:443".parse().expect("addr")
        ]
    );
}

#[test]
fn log_capture_writes_through() {
    // The capture the log assertions above rely on sees what is written.
    LogWriter.write_all(b"log-capture-probe\n").expect("write");
    assert_eq!(log_lines_with("log-capture-probe").len(), 1);
}
