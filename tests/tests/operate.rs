//! Operating Waypass (#14): metrics that move with logins, a log of what
//! happened, signing-key rotation.

use waypass_tests::login::{
    ADMIN_TOKEN, APP, APP_CALLBACK, APP_SECRET, Browser, CONNECTION, TestBed, http_client, redeem,
};

/// `GET /metrics` on the broker with `token` as the bearer.
async fn scrape(tb: &TestBed, token: Option<&str>) -> (u16, String) {
    let mut req = http_client().get(format!("{}/metrics", tb.issuer));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.expect("scrape");
    (resp.status().as_u16(), resp.text().await.expect("body"))
}

/// The value of the sample whose line starts with `series` (name and
/// labels as printed), or 0 when absent.
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| {
            l.strip_prefix(series)
                .and_then(|rest| rest.trim().parse().ok())
        })
        .unwrap_or(0.0)
}

/// A full login as [`APP`] through [`CONNECTION`]: authorize, provider,
/// callback, token.
async fn log_in(tb: &TestBed, deny: bool) -> waypass_tests::login::Landing {
    let url = tb.authorize_url(
        APP,
        APP_CALLBACK,
        &[("connection", CONNECTION), ("state", "s1")],
    );
    let landing = Browser::default().login(tb, &url, deny).await;
    if !deny {
        let location = landing.location.as_ref().expect("a redirect to the app");
        let tokens = redeem(&tb.issuer, APP, APP_SECRET, APP_CALLBACK, location.as_str()).await;
        assert!(tokens["id_token"].is_string(), "{tokens}");
    }
    landing
}

#[tokio::test]
async fn metrics_need_a_token_with_read_metrics() {
    let tb = TestBed::start(|_, _| {}).await;
    assert_eq!(scrape(&tb, None).await.0, 401);
    assert_eq!(scrape(&tb, Some("not-a-token")).await.0, 401);
    let (status, text) = scrape(&tb, Some(ADMIN_TOKEN)).await;
    assert_eq!(status, 200);
    // The refused scrapes are counted, by route and status.
    assert_eq!(
        sample(
            &text,
            "waypass_http_requests_total{method=\"GET\",route=\"/metrics\",status=\"401\"}"
        ),
        2.0,
        "{text}"
    );
}

#[tokio::test]
async fn a_login_moves_the_login_counter_and_puts_a_sample_in_every_stage_histogram() {
    let tb = TestBed::start(|_, _| {}).await;
    let (_, before) = scrape(&tb, Some(ADMIN_TOKEN)).await;
    let ok = format!(
        "waypass_logins_total{{client_id=\"{APP}\",connection=\"{CONNECTION}\",outcome=\"success\"}}"
    );
    let denied = format!(
        "waypass_logins_total{{client_id=\"{APP}\",connection=\"{CONNECTION}\",outcome=\"access_denied\"}}"
    );
    assert_eq!(sample(&before, &ok), 0.0);

    log_in(&tb, false).await;
    log_in(&tb, true).await;

    let (_, after) = scrape(&tb, Some(ADMIN_TOKEN)).await;
    assert_eq!(sample(&after, &ok), 1.0, "{after}");
    assert_eq!(sample(&after, &denied), 1.0, "{after}");
    for stage in ["authorize", "provider_token", "mapper", "token"] {
        let count = format!("waypass_login_stage_duration_seconds_count{{stage=\"{stage}\"}}");
        assert!(
            sample(&after, &count) >= 1.0,
            "stage {stage} has no sample: {after}"
        );
    }
    assert_eq!(
        sample(
            &after,
            "waypass_profile_calls_total{kind=\"mapper\",name=\"auth0-example\",result=\"ok\",version=\"1\"}"
        ),
        1.0,
        "{after}"
    );
    assert!(
        sample(
            &after,
            "waypass_profile_call_peak_memory_bytes_count{kind=\"mapper\",name=\"auth0-example\"}"
        ) >= 1.0
    );
    assert!(
        sample(
            &after,
            "waypass_egress_requests_total{host=\"127.0.0.1\",result=\"2xx\"}"
        ) >= 1.0,
        "{after}"
    );
    assert!(
        sample(
            &after,
            "waypass_store_operation_duration_seconds_count{operation=\"record_login\",result=\"ok\"}"
        ) >= 1.0
    );
    assert!(
        sample(
            &after,
            "waypass_http_requests_total{method=\"POST\",route=\"/oauth/token\",status=\"200\"}"
        ) >= 1.0,
        "{after}"
    );
    assert!(
        after.contains("waypass_mapper_pool_slots_in_use 0"),
        "{after}"
    );
}

#[tokio::test]
async fn raw_paths_never_become_route_labels() {
    let tb = TestBed::start(|_, _| {}).await;
    for i in 0..3 {
        let _ = http_client()
            .get(format!("{}/no-such-page-{i}", tb.issuer))
            .send()
            .await;
    }
    let (_, text) = scrape(&tb, Some(ADMIN_TOKEN)).await;
    assert!(!text.contains("no-such-page"), "{text}");
    assert!(
        sample(
            &text,
            "waypass_http_requests_total{method=\"GET\",route=\"unmatched\",status=\"404\"}"
        ) >= 3.0,
        "{text}"
    );
}

#[tokio::test]
async fn every_metric_the_grafana_dashboard_queries_is_served_after_a_login() {
    let tb = TestBed::start(|_, _| {}).await;
    log_in(&tb, false).await;
    let (_, text) = scrape(&tb, Some(ADMIN_TOKEN)).await;
    let dashboard = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/grafana-dashboard.json"
    ))
    .expect("the dashboard");
    let names: std::collections::BTreeSet<&str> = dashboard
        .match_indices("waypass_")
        .map(|(at, _)| {
            let rest = &dashboard[at..];
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            &rest[..end]
        })
        .collect();
    assert!(names.len() >= 10, "{names:?}");
    // Egress denials need a denied request; the rest are all there.
    for name in names
        .iter()
        .filter(|n| **n != "waypass_egress_denials_total")
    {
        assert!(
            text.lines().any(|l| l.starts_with(name)),
            "the dashboard queries {name}, which is not served: {text}"
        );
    }
}
