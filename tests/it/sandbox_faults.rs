//! Fault injection on the sandbox: seeded 500s, latency, dropped connections and
//! "apply the write, drop the answer", globally, per account and per route.

use crate::sandbox_support::*;
use bling_ledger::sandbox::{FaultConfig, FaultKind, FaultRule, Sandbox, SandboxConfig};
use reqwest::StatusCode;
use serde_json::json;
use std::time::{Duration, Instant};

fn half_errors_on_list() -> FaultConfig {
    FaultConfig::none().with_rule(FaultRule::route("GET", "/contatos").exact().error_rate(0.5))
}

async fn statuses(sb: &Sandbox, api: &Api, n: usize) -> Vec<u16> {
    let _ = sb;
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(api.get("/contatos").await.0.as_u16());
    }
    out
}

#[tokio::test]
async fn same_seed_same_faults() {
    let config = |seed| SandboxConfig {
        seed,
        faults: half_errors_on_list(),
        ..unthrottled()
    };
    let one = start(config(7)).await;
    let two = start(config(7)).await;
    let other = start(config(8)).await;
    let api1 = login(&one, "shop").await;
    let api2 = login(&two, "shop").await;
    let api3 = login(&other, "shop").await;

    let s1 = statuses(&one, &api1, 24).await;
    let s2 = statuses(&two, &api2, 24).await;
    let s3 = statuses(&other, &api3, 24).await;
    assert_eq!(s1, s2);
    assert_ne!(s1, s3, "another seed gives another sequence");
    assert!(s1.contains(&200) && s1.contains(&500), "{s1:?}");

    // Setting faults restarts the generator: the same sequence again.
    one.set_faults(None, half_errors_on_list());
    assert_eq!(statuses(&one, &api1, 24).await, s1);

    let injected: Vec<u16> = one
        .call_log()
        .iter()
        .filter(|r| r.fault == Some(FaultKind::ServerError))
        .filter_map(|r| r.status)
        .collect();
    assert_eq!(injected.len(), 2 * s1.iter().filter(|s| **s == 500).count());
    assert!(injected.iter().all(|s| *s == 500));
}

#[tokio::test]
async fn server_error_has_bling_body_and_stores_nothing() {
    let sb = start(unthrottled()).await;
    let api = login(&sb, "shop").await;
    sb.set_faults(
        Some("shop"),
        FaultConfig::none().with_rule(FaultRule::route("POST", "/contatos").error_rate(1.0)),
    );
    let (status, body) = api.post("/contatos", &json!({"nome": "Ana"})).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(body["error"]["type"], "SERVER_ERROR");
    assert!(sb.contatos("shop").is_empty());
    assert_eq!(
        api.get("/contatos").await.0,
        StatusCode::OK,
        "other routes unaffected"
    );
}

#[tokio::test]
async fn dropped_connection_is_a_client_error_not_a_response() {
    let sb = start(unthrottled()).await;
    let api = login(&sb, "shop").await;
    sb.set_faults(
        None,
        FaultConfig::none().with_rule(FaultRule::route("GET", "/contatos").drop_rate(1.0)),
    );
    let result = api
        .http
        .get(format!("{}/contatos", api.base))
        .bearer_auth(&api.token)
        .send()
        .await;
    let err = result.expect_err("no response must arrive");
    assert!(
        err.is_request() || err.is_connect() || err.is_body(),
        "{err:?}"
    );
    let last = sb.call_log().pop().expect("logged");
    assert_eq!((last.status, last.fault), (None, Some(FaultKind::Drop)));
    // The connection pool recovers: the next call on another route succeeds.
    assert_eq!(api.get("/pedidos/vendas").await.0, StatusCode::OK);
}

#[tokio::test]
async fn apply_then_drop_stores_the_order_but_the_client_gets_no_answer() {
    let sb = start(unthrottled()).await;
    let api = login(&sb, "shop").await;
    let contato = api.contato("Ana", "12345678909").await;
    sb.set_faults(
        Some("shop"),
        FaultConfig::none()
            .with_rule(
                FaultRule::route("POST", "/pedidos/vendas")
                    .exact()
                    .apply_then_drop_rate(1.0),
            )
            .with_rule(
                FaultRule::route("POST", "/contatos")
                    .exact()
                    .apply_then_drop_rate(1.0),
            ),
    );
    let order = json!({"numeroLoja": "INV-42", "contato": {"id": contato},
        "itens": [{"descricao": "Ração", "quantidade": 1, "valor": 80.5}]});
    let result = api
        .http
        .post(format!("{}/pedidos/vendas", api.base))
        .bearer_auth(&api.token)
        .json(&order)
        .send()
        .await;
    assert!(result.is_err(), "the client must not see an answer");
    let stored = sb.pedidos("shop");
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0]["numeroLoja"], "INV-42");
    assert_eq!(stored[0]["total"], 80.5);
    // A careful client finds it by its own key instead of creating a duplicate.
    let (status, body) = api.get("/pedidos/vendas?numerosLojas[]=INV-42").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["data"].as_array().map(Vec::len), Some(1));

    let result = api
        .http
        .post(format!("{}/contatos", api.base))
        .bearer_auth(&api.token)
        .json(&json!({"nome": "Bruno", "numeroDocumento": "98765432100"}))
        .send()
        .await;
    assert!(result.is_err());
    let (_, body) = api.get("/contatos?numeroDocumento=98765432100").await;
    assert_eq!(body["data"][0]["nome"], "Bruno");
    let log = sb.call_log();
    let dropped: Vec<_> = log
        .iter()
        .filter(|r| r.fault == Some(FaultKind::ApplyThenDrop))
        .collect();
    assert_eq!(dropped.len(), 2);
    assert!(dropped
        .iter()
        .all(|r| r.status.is_none() && r.method == "POST"));
}

#[tokio::test]
async fn latency_and_per_account_scope_via_control_plane() {
    let sb = start(unthrottled()).await;
    let slow = login(&sb, "slow").await;
    let fast = login(&sb, "fast").await;
    let rule = FaultRule::any().latency(Duration::from_millis(150), Duration::from_millis(150));
    let resp = http()
        .put(format!("{}/accounts/slow/faults", sb.control_url()))
        .json(&FaultConfig::none().with_rule(rule))
        .send()
        .await
        .expect("control plane");
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);

    let t = Instant::now();
    assert_eq!(slow.get("/contatos").await.0, StatusCode::OK);
    assert!(t.elapsed() >= Duration::from_millis(150));
    let t = Instant::now();
    assert_eq!(fast.get("/contatos").await.0, StatusCode::OK);
    assert!(t.elapsed() < Duration::from_millis(150));

    let calls: Vec<serde_json::Value> = http()
        .get(format!("{}/calls?account=slow", sb.control_url()))
        .send()
        .await
        .expect("calls")
        .json()
        .await
        .expect("json");
    let last = calls.last().expect("slow calls");
    assert_eq!(last["injected_latency_ms"], 150);
    assert_eq!(last["path"], "/Api/v3/contatos");

    let bad = http()
        .put(format!("{}/faults", sb.control_url()))
        .json(&json!({"rules": [{"error_rate": 2.0}]}))
        .send()
        .await
        .expect("control plane");
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    let resp = http()
        .delete(format!("{}/accounts/slow/faults", sb.control_url()))
        .send()
        .await
        .expect("delete");
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    let t = Instant::now();
    slow.get("/contatos").await;
    assert!(t.elapsed() < Duration::from_millis(150));
}

#[tokio::test]
async fn start_refuses_an_invalid_config() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let config = SandboxConfig {
        faults: FaultConfig::none().with_rule(FaultRule::any().drop_rate(-0.1)),
        ..SandboxConfig::default()
    };
    let err = Sandbox::start(config, listener).await.expect_err("refused");
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
}

#[tokio::test]
async fn token_endpoint_faults_only_from_oauth_rules() {
    let sb = start(unthrottled()).await;
    let (_, tokens) = exchange(&sb, &code_for(&sb, "shop").await).await;
    let refresh = tokens["refresh_token"]
        .as_str()
        .expect("refresh")
        .to_string();
    let refresh_form = |t: &str| {
        vec![
            ("grant_type", "refresh_token".to_string()),
            ("refresh_token", t.to_string()),
        ]
    };

    // A catch-all rule is for the API: logins and refreshes are untouched.
    sb.set_faults(
        None,
        FaultConfig::none().with_rule(FaultRule::any().error_rate(1.0)),
    );
    let code = code_for(&sb, "shop").await;
    assert_eq!(exchange(&sb, &code).await.0, StatusCode::OK);

    // A 500 from the token endpoint consumes nothing: the refresh token still works later.
    sb.set_faults(
        None,
        FaultConfig::none().with_rule(FaultRule::route("POST", "/oauth/token").error_rate(1.0)),
    );
    let form = refresh_form(&refresh);
    let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (status, body) = token_call(&sb, CLIENT_SECRET, &form).await;
    assert_eq!(
        (status, body["error"]["type"].as_str()),
        (StatusCode::INTERNAL_SERVER_ERROR, Some("SERVER_ERROR"))
    );

    sb.set_faults(None, FaultConfig::none());
    let (status, rotated) = token_call(&sb, CLIENT_SECRET, &form).await;
    assert_eq!(status, StatusCode::OK, "{rotated}");
    let form = refresh_form(rotated["refresh_token"].as_str().expect("refresh"));
    let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();

    // Apply-then-drop on a refresh: the token rotates but the client never sees the new one.
    sb.set_faults(
        None,
        FaultConfig::none()
            .with_rule(FaultRule::route("POST", "/oauth/token").apply_then_drop_rate(1.0)),
    );
    let sent = http()
        .post(sb.token_url())
        .basic_auth(CLIENT_ID, Some(CLIENT_SECRET))
        .form(&form)
        .send()
        .await;
    assert!(sent.is_err(), "no answer must arrive");
    sb.set_faults(None, FaultConfig::none());
    let (status, body) = token_call(&sb, CLIENT_SECRET, &form).await;
    assert_eq!(
        (status, body["error"]["type"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant"))
    );
    let token_calls: Vec<_> = sb
        .call_log()
        .into_iter()
        .filter(|r| r.path == "/Api/v3/oauth/token" && r.fault.is_some())
        .map(|r| (r.status, r.fault))
        .collect();
    assert_eq!(
        token_calls,
        vec![
            (Some(500), Some(FaultKind::ServerError)),
            (None, Some(FaultKind::ApplyThenDrop))
        ]
    );
}
