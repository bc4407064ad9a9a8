//! Bling's per-account limits on the sandbox: 3 requests per second and the daily quota,
//! both answered 429 TOO_MANY_REQUESTS with Retry-After.

mod sandbox_support;

use bling_ledger::sandbox::SandboxConfig;
use reqwest::StatusCode;
use sandbox_support::*;
use std::time::Duration;

#[tokio::test]
async fn more_than_three_per_second_is_429_with_retry_after() {
    let sb = start(SandboxConfig::default()).await;
    let a = Api::new(
        &sb,
        &sb.grant_tokens(CLIENT_ID, "a")
            .expect("tokens")
            .access_token,
    );
    let b = Api::new(
        &sb,
        &sb.grant_tokens(CLIENT_ID, "b")
            .expect("tokens")
            .access_token,
    );
    for _ in 0..3 {
        assert_eq!(a.get("/contatos").await.0, StatusCode::OK);
    }
    let resp = a
        .http
        .get(format!("{}/contatos", a.base))
        .bearer_auth(&a.token)
        .send()
        .await
        .expect("answer");
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = resp.headers()["retry-after"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("seconds");
    assert!((1..=1).contains(&retry));
    let body: serde_json::Value = resp.json().await.expect("json");
    assert_eq!(body["error"]["type"], "TOO_MANY_REQUESTS");
    assert!(body["error"]["message"].is_string() && body["error"]["description"].is_string());

    // The limit is per account: another shop is not throttled.
    assert_eq!(b.get("/contatos").await.0, StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(1050)).await;
    assert_eq!(a.get("/contatos").await.0, StatusCode::OK);

    let summary = sb.account("a").expect("account");
    assert_eq!(
        (summary.calls, summary.rate_limited, summary.requests_today),
        (5, 1, 4)
    );
}

#[tokio::test]
async fn concurrent_burst_admits_exactly_the_limit() {
    let sb = start(SandboxConfig::default()).await;
    let a = Api::new(
        &sb,
        &sb.grant_tokens(CLIENT_ID, "a")
            .expect("tokens")
            .access_token,
    );
    let calls = (0..10).map(|_| {
        let a = a.clone();
        async move { a.get("/contatos").await.0 }
    });
    let statuses = futures::future::join_all(calls).await;
    let ok = statuses.iter().filter(|s| **s == StatusCode::OK).count();
    let limited = statuses
        .iter()
        .filter(|s| **s == StatusCode::TOO_MANY_REQUESTS)
        .count();
    assert_eq!((ok, limited), (3, 7), "{statuses:?}");
}

#[tokio::test]
async fn daily_quota_is_enforced_and_reset_by_the_control_plane() {
    let config = SandboxConfig {
        rate_limit_per_sec: 0,
        daily_quota: 5,
        ..SandboxConfig::default()
    };
    let sb = start(config).await;
    let a = Api::new(
        &sb,
        &sb.grant_tokens(CLIENT_ID, "a")
            .expect("tokens")
            .access_token,
    );
    let b = Api::new(
        &sb,
        &sb.grant_tokens(CLIENT_ID, "b")
            .expect("tokens")
            .access_token,
    );
    for _ in 0..5 {
        assert_eq!(a.get("/contatos").await.0, StatusCode::OK);
    }
    let resp = a
        .http
        .get(format!("{}/contatos", a.base))
        .bearer_auth(&a.token)
        .send()
        .await
        .expect("answer");
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = resp.headers()["retry-after"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("seconds");
    assert!(
        (1..=86_400).contains(&retry),
        "until midnight in Brasília: {retry}"
    );
    let body: serde_json::Value = resp.json().await.expect("json");
    assert_eq!(body["error"]["type"], "TOO_MANY_REQUESTS");
    assert_eq!(b.get("/contatos").await.0, StatusCode::OK);

    let resp = http()
        .post(format!("{}/reset-counters", sb.control_url()))
        .send()
        .await
        .expect("control");
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert_eq!(a.get("/contatos").await.0, StatusCode::OK);
    assert_eq!(sb.account("a").expect("account").requests_today, 1);
}
