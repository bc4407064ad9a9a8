//! Bling's limits on the sandbox ([DOC] developer.bling.com.br/limites): 3 requests per second
//! and the daily quota per account, answered 429 TOO_MANY_REQUESTS without `Retry-After` and
//! with `limit`/`period` in the body; and the IP blocks (errors or requests in 10 s).

use crate::sandbox_support::*;
use bling_ledger::sandbox::{IpBlockConfig, SandboxConfig};
use reqwest::StatusCode;
use serde_json::json;
use std::time::Duration;

/// No rate headers at all on a 429 ([VCR], [LC]).
fn assert_no_rate_headers(resp: &reqwest::Response) {
    for h in resp.headers().keys() {
        let name = h.as_str();
        assert!(
            name != "retry-after" && !name.starts_with("x-ratelimit"),
            "unexpected header {name}"
        );
    }
}

#[tokio::test]
async fn more_than_three_per_second_is_429_with_limit_and_period() {
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
    assert_no_rate_headers(&resp);
    let body: serde_json::Value = resp.json().await.expect("json");
    assert_eq!(
        body,
        json!({"error": {
            "type": "TOO_MANY_REQUESTS",
            "message": "Limite de requisições atingido.",
            "description": "O limite de requisições por segundo foi atingido, tente novamente mais tarde.",
            "limit": 3,
            "period": "second"
        }})
    );

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
    assert_no_rate_headers(&resp);
    let body: serde_json::Value = resp.json().await.expect("json");
    assert_eq!(
        body,
        json!({"error": {
            "type": "TOO_MANY_REQUESTS",
            "message": "Limite de requisições atingido.",
            "description": "O limite de requisições por dia foi atingido, tente novamente amanhã.",
            "limit": 5,
            "period": "day"
        }})
    );
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

fn ip_blocks(errors: u32, requests: u32, block: Duration) -> IpBlockConfig {
    IpBlockConfig {
        errors,
        requests,
        window: Duration::from_secs(10),
        block,
    }
}

#[tokio::test]
async fn too_many_errors_block_the_ip_and_429s_count_as_errors() {
    let config = SandboxConfig {
        rate_limit_per_sec: 1,
        ip_blocks: ip_blocks(4, 0, Duration::from_millis(700)),
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
    assert_eq!(a.get("/contatos").await.0, StatusCode::OK);
    // Three 429s and a 404 on account a: four errors, the allowance.
    for _ in 0..3 {
        assert_eq!(a.get("/contatos").await.0, StatusCode::TOO_MANY_REQUESTS);
    }
    assert_eq!(b.get("/contatos/1").await.0, StatusCode::NOT_FOUND);
    // The fifth error (an unknown token) starts the block, for every account on the IP.
    assert_eq!(
        Api::new(&sb, "nope").get("/contatos").await.0,
        StatusCode::UNAUTHORIZED
    );
    let resp = http()
        .get(format!("{}/contatos", sb.base_url()))
        .bearer_auth(&b.token)
        .send()
        .await
        .expect("answer");
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_no_rate_headers(&resp);
    let body: serde_json::Value = resp.json().await.expect("json");
    assert_eq!(body["error"]["type"], "TOO_MANY_REQUESTS");
    assert!(body["error"].get("period").is_none(), "{body}");
    // OAuth endpoints are blocked too.
    assert_eq!(exchange(&sb, "x").await.0, StatusCode::TOO_MANY_REQUESTS);
    let log = sb.call_log();
    let last = log.last().expect("logged");
    assert_eq!((last.status, last.account.as_deref()), (Some(429), None));
    // After the block (and past b's one-second window) b is served again.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(b.get("/contatos").await.0, StatusCode::OK);
}

#[tokio::test]
async fn too_many_requests_block_the_ip_until_reset() {
    let config = SandboxConfig {
        rate_limit_per_sec: 0,
        ip_blocks: ip_blocks(0, 5, Duration::from_secs(600)),
        ..SandboxConfig::default()
    };
    let sb = start(config).await;
    let a = Api::new(
        &sb,
        &sb.grant_tokens(CLIENT_ID, "a")
            .expect("tokens")
            .access_token,
    );
    for _ in 0..5 {
        assert_eq!(a.get("/contatos").await.0, StatusCode::OK);
    }
    let (status, body) = a.get("/contatos").await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(body["error"]["message"], "Limite de requisições atingido.");
    // Blocked calls reach neither the account's quota nor the handler.
    assert_eq!(sb.account("a").expect("account").requests_today, 5);
    // The control plane lifts the block (reset-counters forgets IP windows too).
    sb.reset_counters();
    assert_eq!(a.get("/contatos").await.0, StatusCode::OK);
}

#[tokio::test]
async fn ip_blocks_switched_off_never_block() {
    let config = SandboxConfig {
        rate_limit_per_sec: 0,
        ip_blocks: IpBlockConfig::off(),
        ..SandboxConfig::default()
    };
    let sb = start(config).await;
    let a = Api::new(
        &sb,
        &sb.grant_tokens(CLIENT_ID, "a")
            .expect("tokens")
            .access_token,
    );
    for _ in 0..700 {
        assert_eq!(a.get("/contatos/1").await.0, StatusCode::NOT_FOUND);
    }
    assert_eq!(a.get("/contatos").await.0, StatusCode::OK);
}

#[tokio::test]
async fn default_ip_blocks_are_blings() {
    let c = SandboxConfig::default();
    assert_eq!(c.ip_blocks, ip_blocks(300, 600, Duration::from_secs(600)));
}
