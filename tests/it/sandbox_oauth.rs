//! OAuth against the sandbox over real HTTP: consent page, code exchange, code reuse,
//! refresh rotation, expiry, revocation, client auth, the token-endpoint guard, the company
//! and app switches, and JWT-only mode. Expected bodies are Bling's documented ones ([DOC]
//! developer.bling.com.br /aplicativos, /erros-comuns, /migracao-jwt; [VCR]; [LC]).

use crate::sandbox_support::*;
use axum::routing::get;
use bling_ledger::sandbox::{ClientApp, Sandbox, SandboxConfig};
use reqwest::StatusCode;
use serde_json::json;
use std::time::Duration;

/// The value of `<input … name="NAME" value="VALUE">` in the consent page.
fn hidden(html: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html.find(&marker).expect("hidden input") + marker.len();
    html[start..].split('"').next().expect("value").to_string()
}

/// A stand-in for the app's redirect endpoint: echoes the query it was called with.
async fn callback_server() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind callback");
    let addr = listener.local_addr().expect("callback addr");
    let app = axum::Router::new().route(
        "/callback",
        get(|q: axum::extract::RawQuery| async move { q.0.unwrap_or_default() }),
    );
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{addr}/callback")
}

#[tokio::test]
async fn consent_page_flow_issues_working_tokens() {
    let callback = callback_server().await;
    let config = SandboxConfig {
        clients: vec![ClientApp {
            client_id: CLIENT_ID.into(),
            client_secret: CLIENT_SECRET.into(),
            redirect_uri: callback.clone(),
        }],
        ..unthrottled()
    };
    let sb = start(config).await;
    let http = http();

    let page = http
        .get(sb.authorize_url())
        .query(&[
            ("response_type", "code"),
            ("client_id", CLIENT_ID),
            ("state", "xyz 1"),
            ("account", "petshop-a"),
        ])
        .send()
        .await
        .expect("consent page");
    assert_eq!(page.status(), StatusCode::OK);
    assert!(page.headers()["content-type"]
        .to_str()
        .unwrap_or("")
        .starts_with("text/html"));
    let html = page.text().await.expect("html");
    assert!(html.contains("Authorize") && html.contains("<form method=\"post\""));
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "no external assets"
    );
    assert_eq!(hidden(&html, "state"), "xyz 1");
    assert_eq!(hidden(&html, "account"), "petshop-a");

    // Submit the form as a browser would, then follow the redirect to the app.
    let form = [
        ("response_type", "code".to_string()),
        ("client_id", hidden(&html, "client_id")),
        ("state", hidden(&html, "state")),
        ("account", hidden(&html, "account")),
        ("decision", "approve".to_string()),
    ];
    let submitted = http
        .post(sb.authorize_url())
        .form(&form)
        .send()
        .await
        .expect("submit consent");
    assert_eq!(submitted.status(), StatusCode::SEE_OTHER);
    let location = submitted.headers()["location"]
        .to_str()
        .expect("location")
        .to_string();
    assert!(location.starts_with(&callback), "{location}");
    let following = reqwest::Client::new();
    let echoed = following
        .get(&location)
        .send()
        .await
        .expect("callback")
        .text()
        .await
        .expect("query");
    let code = query_value(&format!("?{echoed}"), "code").expect("code");
    assert_eq!(
        query_value(&format!("?{echoed}"), "state").as_deref(),
        Some("xyz%201")
    );

    let (status, tokens) = exchange(&sb, &code).await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    assert_eq!(tokens["token_type"], "bearer", "measured lower case ([LC])");
    assert_eq!(tokens["expires_in"], 21600);
    assert!(tokens["scope"].is_string() && tokens["refresh_token"].is_string());

    let api = Api::new(&sb, tokens["access_token"].as_str().expect("token"));
    let (status, body) = api.get("/contatos").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, json!({"data": []}));
    let log = sb.call_log();
    let last = log.last().expect("logged");
    assert_eq!(last.account.as_deref(), Some("petshop-a"));
    assert_eq!(
        (last.method.as_str(), last.path.as_str(), last.status),
        ("GET", "/Api/v3/contatos", Some(200))
    );

    // Denying redirects with the OAuth error and no code.
    let mut deny = form.to_vec();
    deny[4].1 = "deny".into();
    let denied = http
        .post(sb.authorize_url())
        .form(&deny)
        .send()
        .await
        .expect("deny");
    let location = denied.headers()["location"]
        .to_str()
        .expect("location")
        .to_string();
    assert_eq!(
        query_value(&location, "error").as_deref(),
        Some("access_denied")
    );
    assert!(query_value(&location, "error_description").is_some());
    assert!(query_value(&location, "code").is_none());
}

#[tokio::test]
async fn unknown_client_gets_an_error_page() {
    let sb = start(unthrottled()).await;
    let resp = http()
        .get(sb.authorize_url())
        .query(&[
            ("response_type", "code"),
            ("client_id", "nope"),
            ("state", "s"),
        ])
        .send()
        .await
        .expect("answer");
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert!(resp.text().await.expect("html").contains("client_id"));
}

#[tokio::test]
async fn reusing_a_code_revokes_the_user() {
    let sb = start(unthrottled()).await;
    let code = code_for(&sb, "default").await;
    let (status, tokens) = exchange(&sb, &code).await;
    assert_eq!(status, StatusCode::OK);
    let api = Api::new(&sb, tokens["access_token"].as_str().expect("token"));
    assert_eq!(api.get("/contatos").await.0, StatusCode::OK);
    // Another authorization of the same user and app, and one of another shop.
    let sibling = login(&sb, "default").await;
    let other_shop = login(&sb, "shop-b").await;

    let (status, body) = exchange(&sb, &code).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        body,
        json!({"error": {
            "type": "VALIDATION_ERROR",
            "message": "Invalid authorization code",
            "description": "This authorization code has already been used, for security reasons the user has been revoked."
        }})
    );

    for a in [&api, &sibling] {
        let (status, body) = a.get("/contatos").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(body["error"]["type"], "invalid_token");
    }
    assert_eq!(other_shop.get("/contatos").await.0, StatusCode::OK);
    let refresh = tokens["refresh_token"].as_str().expect("refresh");
    let (status, body) = token_call(
        &sb,
        CLIENT_SECRET,
        &[("grant_type", "refresh_token"), ("refresh_token", refresh)],
    )
    .await;
    assert_eq!(
        (status, body["error"]["type"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant"))
    );
    assert_eq!(
        sb.account("default")
            .expect("account")
            .active_authorizations,
        0
    );
}

#[tokio::test]
async fn refresh_tokens_rotate() {
    let sb = start(unthrottled()).await;
    let (_, first) = exchange(&sb, &code_for(&sb, "default").await).await;
    let r1 = first["refresh_token"]
        .as_str()
        .expect("refresh")
        .to_string();
    let (status, second) = token_call(
        &sb,
        CLIENT_SECRET,
        &[("grant_type", "refresh_token"), ("refresh_token", &r1)],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{second}");
    let r2 = second["refresh_token"]
        .as_str()
        .expect("refresh")
        .to_string();
    assert_ne!(r1, r2);
    assert_ne!(first["access_token"], second["access_token"]);

    // The old refresh token is spent: invalid_grant, and the authorization survives.
    let (status, body) = token_call(
        &sb,
        CLIENT_SECRET,
        &[("grant_type", "refresh_token"), ("refresh_token", &r1)],
    )
    .await;
    assert_eq!(
        (status, body["error"]["type"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant"))
    );
    let new_api = Api::new(&sb, second["access_token"].as_str().expect("token"));
    assert_eq!(new_api.get("/contatos").await.0, StatusCode::OK);
    // The previous access token stays valid until its own expiry.
    let old_api = Api::new(&sb, first["access_token"].as_str().expect("token"));
    assert_eq!(old_api.get("/contatos").await.0, StatusCode::OK);
    let (status, _) = token_call(
        &sb,
        CLIENT_SECRET,
        &[("grant_type", "refresh_token"), ("refresh_token", &r2)],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn expired_access_token_and_code_are_refused() {
    let config = SandboxConfig {
        access_ttl: Duration::from_millis(300),
        code_ttl: Duration::from_millis(300),
        ..unthrottled()
    };
    let sb = start(config).await;
    let (status, tokens) = exchange(&sb, &code_for(&sb, "default").await).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(tokens["expires_in"], 0);
    let stale_code = code_for(&sb, "default").await;
    let api = Api::new(&sb, tokens["access_token"].as_str().expect("token"));
    assert_eq!(api.get("/contatos").await.0, StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(400)).await;

    let resp = api
        .http
        .get(format!("{}/contatos", sb.base_url()))
        .bearer_auth(&api.token)
        .send()
        .await
        .expect("answer");
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        resp.headers()["www-authenticate"],
        "Bearer realm=\"Service\", error=\"Array\""
    );
    let body: serde_json::Value = resp.json().await.expect("json");
    assert_eq!(
        body,
        json!({"error": {"type": "invalid_token", "message": "invalid_token",
            "description": "The access token provided has expired"}})
    );

    let (status, body) = exchange(&sb, &stale_code).await;
    assert_eq!(
        (
            status,
            body["error"]["type"].as_str(),
            body["error"]["description"].as_str()
        ),
        (
            StatusCode::BAD_REQUEST,
            Some("invalid_grant"),
            Some("The authorization code has expired")
        )
    );
    // The refresh token outlives the access token: refreshing still works.
    let refresh = tokens["refresh_token"].as_str().expect("refresh");
    let (status, _) = token_call(
        &sb,
        CLIENT_SECRET,
        &[("grant_type", "refresh_token"), ("refresh_token", refresh)],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn password_change_revokes_every_token_of_the_account() {
    let sb = start(unthrottled()).await;
    let (_, a1) = exchange(&sb, &code_for(&sb, "shop-a").await).await;
    let (_, a2) = exchange(&sb, &code_for(&sb, "shop-a").await).await;
    let (_, b) = exchange(&sb, &code_for(&sb, "shop-b").await).await;
    assert_eq!(sb.revoke_account("shop-a"), 2);
    for t in [&a1, &a2] {
        let api = Api::new(&sb, t["access_token"].as_str().expect("token"));
        let (status, body) = api.get("/contatos").await;
        assert_eq!(
            (status, body["error"]["type"].as_str()),
            (StatusCode::UNAUTHORIZED, Some("invalid_token"))
        );
        let refresh = t["refresh_token"].as_str().expect("refresh");
        let (status, body) = token_call(
            &sb,
            CLIENT_SECRET,
            &[("grant_type", "refresh_token"), ("refresh_token", refresh)],
        )
        .await;
        assert_eq!(
            (status, body["error"]["type"].as_str()),
            (StatusCode::BAD_REQUEST, Some("invalid_grant"))
        );
    }
    let other = Api::new(&sb, b["access_token"].as_str().expect("token"));
    assert_eq!(
        other.get("/contatos").await.0,
        StatusCode::OK,
        "other accounts are untouched"
    );

    // The control plane does the same for one app ("the shop removed the app").
    let resp = http()
        .post(format!("{}/accounts/shop-b/revoke", sb.control_url()))
        .json(&json!({"client_id": CLIENT_ID}))
        .send()
        .await
        .expect("control plane");
    assert_eq!(
        resp.json::<serde_json::Value>().await.expect("json")["revoked"],
        1
    );
    assert_eq!(other.get("/contatos").await.0, StatusCode::UNAUTHORIZED);
    // Logging in again works after a revocation.
    let again = login(&sb, "shop-a").await;
    assert_eq!(again.get("/contatos").await.0, StatusCode::OK);
}

async fn revoke(sb: &Sandbox, form: &[(&str, &str)]) -> (StatusCode, serde_json::Value) {
    let resp = http()
        .post(sb.revoke_url())
        .basic_auth(CLIENT_ID, Some(CLIENT_SECRET))
        .form(form)
        .send()
        .await
        .expect("revoke");
    let status = resp.status();
    (status, resp.json().await.unwrap_or(serde_json::Value::Null))
}

async fn refresh_with(sb: &Sandbox, refresh: &str) -> (StatusCode, serde_json::Value) {
    token_call(
        sb,
        CLIENT_SECRET,
        &[("grant_type", "refresh_token"), ("refresh_token", refresh)],
    )
    .await
}

#[tokio::test]
async fn revoke_endpoint_revokes_only_the_token_sent() {
    let sb = start(unthrottled()).await;
    let (_, tokens) = exchange(&sb, &code_for(&sb, "default").await).await;
    let access = tokens["access_token"].as_str().expect("access");
    let refresh = tokens["refresh_token"].as_str().expect("refresh");
    let api = Api::new(&sb, access);

    // The refresh token alone: the access token keeps working.
    let (status, body) = revoke(
        &sb,
        &[("token", refresh), ("token_type_hint", "refresh_token")],
    )
    .await;
    assert_eq!((status, body), (StatusCode::OK, json!({"revoked": true})));
    assert_eq!(refresh_with(&sb, refresh).await.0, StatusCode::BAD_REQUEST);
    assert_eq!(api.get("/contatos").await.0, StatusCode::OK);

    // The access token alone: the authorization's other tokens keep working.
    let (_, second) = exchange(&sb, &code_for(&sb, "default").await).await;
    let api2 = Api::new(&sb, second["access_token"].as_str().expect("access"));
    let (status, _) = revoke(&sb, &[("token", &api2.token)]).await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = api2.get("/contatos").await;
    assert_eq!(
        (status, body["error"]["description"].as_str()),
        (
            StatusCode::UNAUTHORIZED,
            Some("The access token provided is invalid")
        )
    );
    let r2 = second["refresh_token"].as_str().expect("refresh");
    assert_eq!(refresh_with(&sb, r2).await.0, StatusCode::OK);

    // Unknown tokens answer the same (RFC 7009).
    assert_eq!(revoke(&sb, &[("token", "nope")]).await.0, StatusCode::OK);
    let (status, body) = revoke(&sb, &[("token_type_hint", "access_token")]).await;
    assert_eq!(
        (status, body["error"]["type"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_request"))
    );
    let resp = http()
        .post(sb.revoke_url())
        .form(&[("token", access)])
        .send()
        .await
        .expect("revoke");
    assert_eq!(
        resp.status(),
        StatusCode::BAD_REQUEST,
        "Basic client credentials are required"
    );
    let body: serde_json::Value = resp.json().await.expect("json");
    assert_eq!(body["error"]["type"], "invalid_client");
}

#[tokio::test]
async fn revoke_action_logout_revokes_the_whole_user() {
    let sb = start(unthrottled()).await;
    let a1 = login(&sb, "shop-a").await;
    let a2 = login(&sb, "shop-a").await;
    let b = login(&sb, "shop-b").await;
    let (status, _) = revoke(
        &sb,
        &[
            ("token", &a1.token),
            ("revoke_action", "logout"),
            ("revoke_target", "user"),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(a1.get("/contatos").await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(a2.get("/contatos").await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(b.get("/contatos").await.0, StatusCode::OK);
    let (status, _) = revoke(
        &sb,
        &[
            ("token", &b.token),
            ("revoke_action", "uninstall"),
            ("revoke_target", "company"),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(b.get("/contatos").await.0, StatusCode::UNAUTHORIZED);
    let (status, body) = revoke(&sb, &[("token", "x"), ("revoke_action", "everything")]).await;
    assert_eq!(
        (status, body["error"]["type"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_request"))
    );
}

#[tokio::test]
async fn bad_client_credentials_are_invalid_client() {
    let sb = start(unthrottled()).await;
    let code = code_for(&sb, "default").await;
    let (status, body) = token_call(
        &sb,
        "wrong-secret",
        &[("grant_type", "authorization_code"), ("code", &code)],
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        body,
        json!({"error": {"type": "invalid_client", "message": "invalid_client",
            "description": "The client credentials are invalid"}})
    );
    // Credentials in the body are not allowed ([DOC] /aplicativos): as if none were sent.
    let resp = http()
        .post(sb.token_url())
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("client_id", CLIENT_ID),
            ("client_secret", CLIENT_SECRET),
        ])
        .send()
        .await
        .expect("answer");
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    let body: serde_json::Value = resp.json().await.expect("json");
    assert_eq!(body["error"]["type"], "invalid_client");
    assert_eq!(
        body["error"]["description"],
        "Client credentials were not found in the headers"
    );
    // The code was not consumed by the refused calls.
    assert_eq!(exchange(&sb, &code).await.0, StatusCode::OK);
    let (status, body) = token_call(&sb, CLIENT_SECRET, &[("grant_type", "password")]).await;
    assert_eq!(
        (status, body["error"]["type"].as_str()),
        (StatusCode::BAD_REQUEST, Some("unsupported_grant_type"))
    );
    let (status, body) = token_call(&sb, CLIENT_SECRET, &[("code", "x")]).await;
    assert_eq!(
        (status, body["error"]["type"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_request"))
    );
}

#[tokio::test]
async fn missing_or_malformed_header_is_invalid_request_unknown_token_is_401() {
    let sb = start(unthrottled()).await;
    let malformed = json!({"error": {"type": "invalid_request", "message": "invalid_request",
        "description": "Malformed auth header"}});
    let plain = http()
        .get(format!("{}/contatos", sb.base_url()))
        .send()
        .await
        .expect("answer");
    let basic = http()
        .get(format!("{}/contatos", sb.base_url()))
        .basic_auth(CLIENT_ID, Some(CLIENT_SECRET))
        .send()
        .await
        .expect("answer");
    for resp in [plain, basic] {
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
        let body: serde_json::Value = resp.json().await.expect("json");
        assert_eq!(body, malformed);
    }
    let (status, body) = Api::new(&sb, "not-a-token").get("/contatos").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        body,
        json!({"error": {"type": "invalid_token", "message": "invalid_token",
            "description": "The access token provided is invalid"}})
    );
    let log = sb.call_log();
    assert!(log.iter().all(|r| r.account.is_none()));
    assert_eq!(
        log.iter().map(|r| r.status).collect::<Vec<_>>(),
        [Some(400), Some(400), Some(401)]
    );
}

#[tokio::test]
async fn token_endpoint_guard_blocks_a_noisy_client() {
    let config = SandboxConfig {
        token_calls_per_minute: 3,
        token_block: Duration::from_millis(500),
        ..unthrottled()
    };
    let sb = start(config).await;
    for _ in 0..3 {
        let (status, _) = token_call(
            &sb,
            CLIENT_SECRET,
            &[("grant_type", "refresh_token"), ("refresh_token", "x")],
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "failed calls still count");
    }
    let resp = http()
        .post(sb.token_url())
        .basic_auth(CLIENT_ID, Some(CLIENT_SECRET))
        .form(&[("grant_type", "authorization_code"), ("code", "x")])
        .send()
        .await
        .expect("answer");
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(
        !resp.headers().contains_key("retry-after"),
        "Bling sends none"
    );
    let body: serde_json::Value = resp.json().await.expect("json");
    assert_eq!(body["error"]["type"], "TOO_MANY_REQUESTS");
    // Still blocked, even with a valid code.
    let code = code_for(&sb, "default").await;
    assert_eq!(exchange(&sb, &code).await.0, StatusCode::TOO_MANY_REQUESTS);
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(exchange(&sb, &code).await.0, StatusCode::OK);
}

#[tokio::test]
async fn jwt_tokens_are_long_and_work() {
    let sb = start(unthrottled()).await;
    let code = code_for(&sb, "default").await;
    let resp = http()
        .post(sb.token_url())
        .basic_auth(CLIENT_ID, Some(CLIENT_SECRET))
        .header("enable-jwt", "1")
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
        ])
        .send()
        .await
        .expect("token");
    let tokens: serde_json::Value = resp.json().await.expect("json");
    let access = tokens["access_token"].as_str().expect("token");
    assert!((1500..=3000).contains(&access.len()), "{}", access.len());
    assert_eq!(access.split('.').count(), 3);
    assert_eq!(
        Api::new(&sb, access).get("/contatos").await.0,
        StatusCode::OK
    );
    let log = sb.call_log();
    let grant = log
        .iter()
        .find(|r| r.path == "/Api/v3/oauth/token")
        .expect("token call logged");
    assert!(grant.enable_jwt, "the header is recorded in the call log");
    assert!(!log.last().expect("api call").enable_jwt);
}

#[tokio::test]
async fn grant_tokens_helper_and_account_isolation() {
    let sb = start(unthrottled()).await;
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
    let id = a.contato("Ana", "12345678909").await;
    assert_eq!(a.get(&format!("/contatos/{id}")).await.0, StatusCode::OK);
    let (status, body) = b.get(&format!("/contatos/{id}")).await;
    assert_eq!(
        (status, body["error"]["type"].as_str()),
        (StatusCode::NOT_FOUND, Some("RESOURCE_NOT_FOUND"))
    );
    assert_eq!(sb.contatos("a").len(), 1);
    assert!(sb.contatos("b").is_empty());
    assert!(sb.grant_tokens("nope", "a").is_err());
}

async fn put_control(sb: &Sandbox, path: &str, body: serde_json::Value) -> reqwest::Response {
    http()
        .put(format!("{}{path}", sb.control_url()))
        .json(&body)
        .send()
        .await
        .expect("control plane")
}

/// The authorize redirect for `account`, with `auto_approve=1`.
async fn authorize_location(sb: &Sandbox, account: &str) -> String {
    let resp = http()
        .get(sb.authorize_url())
        .query(&[
            ("response_type", "code"),
            ("client_id", CLIENT_ID),
            ("state", "st"),
            ("account", account),
            ("auto_approve", "1"),
        ])
        .send()
        .await
        .expect("authorize");
    assert_eq!(resp.status(), StatusCode::FOUND);
    resp.headers()["location"]
        .to_str()
        .expect("location")
        .to_string()
}

#[tokio::test]
async fn empresa_inativa_refuses_refresh_api_calls_and_authorize() {
    let sb = start(unthrottled()).await;
    let (_, tokens) = exchange(&sb, &code_for(&sb, "shop-a").await).await;
    let api = Api::new(&sb, tokens["access_token"].as_str().expect("token"));
    let refresh = tokens["refresh_token"].as_str().expect("refresh");
    let pending_code = code_for(&sb, "shop-a").await;
    let other = login(&sb, "shop-b").await;
    let resp = put_control(&sb, "/accounts/shop-a/company", json!({"active": false})).await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert!(!sb.account("shop-a").expect("account").company_active);

    let inativa = json!({"error": {"type": "UNAUTHORIZED_ERROR", "message": "Empresa inativa",
        "description": "A empresa vinculada ao token esta inativa."}});
    let (status, body) = refresh_with(&sb, refresh).await;
    assert_eq!((status, &body), (StatusCode::UNAUTHORIZED, &inativa));
    let (status, body) = exchange(&sb, &pending_code).await;
    assert_eq!((status, &body), (StatusCode::UNAUTHORIZED, &inativa));
    let (status, body) = api.get("/contatos").await;
    assert_eq!((status, &body), (StatusCode::UNAUTHORIZED, &inativa));
    let location = authorize_location(&sb, "shop-a").await;
    assert_eq!(
        query_value(&location, "error").as_deref(),
        Some("UNAUTHORIZED_ERROR")
    );
    assert!(query_value(&location, "code").is_none());
    assert_eq!(other.get("/contatos").await.0, StatusCode::OK);

    // Reactivated: the same tokens work again, the refresh token was not spent.
    sb.set_company_active("shop-a", true);
    assert_eq!(api.get("/contatos").await.0, StatusCode::OK);
    assert_eq!(refresh_with(&sb, refresh).await.0, StatusCode::OK);
}

#[tokio::test]
async fn an_inactivated_app_loses_its_tokens_and_cannot_be_authorized() {
    let sb = start(unthrottled()).await;
    let a = login(&sb, "shop-a").await;
    let b = login(&sb, "shop-b").await;
    let resp = put_control(&sb, &format!("/apps/{CLIENT_ID}"), json!({"active": false})).await;
    assert_eq!(
        resp.json::<serde_json::Value>().await.expect("json"),
        json!({"revoked": 2})
    );
    assert_eq!(a.get("/contatos").await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(b.get("/contatos").await.0, StatusCode::UNAUTHORIZED);
    let location = authorize_location(&sb, "shop-a").await;
    assert_eq!(
        query_value(&location, "error").as_deref(),
        Some("app_inativo")
    );
    assert!(query_value(&location, "error_description")
        .expect("description")
        .starts_with("Este%20aplicativo%20foi%20inativad"));
    assert_eq!(query_value(&location, "state").as_deref(), Some("st"));
    assert_eq!(
        put_control(&sb, "/apps/nope", json!({"active": false}))
            .await
            .status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(sb.set_app_active(CLIENT_ID, true).expect("known app"), 0);
    assert_eq!(
        login(&sb, "shop-a").await.get("/contatos").await.0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn jwt_only_mode_refuses_opaque_tokens_and_calls_without_the_header() {
    let sb = start(unthrottled()).await;
    let opaque = login(&sb, "default").await;
    assert_eq!(opaque.get("/contatos").await.0, StatusCode::OK);
    let resp = put_control(&sb, "/jwt-only", json!({"enabled": true})).await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert!(sb.jwt_only());

    // A token call without `enable-jwt: 1` is refused.
    let code = code_for(&sb, "default").await;
    let (status, body) = exchange(&sb, &code).await;
    assert_eq!(
        (status, body["error"]["type"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_request"))
    );
    let resp = http()
        .post(sb.token_url())
        .basic_auth(CLIENT_ID, Some(CLIENT_SECRET))
        .header("enable-jwt", "1")
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
        ])
        .send()
        .await
        .expect("token");
    assert_eq!(resp.status(), StatusCode::OK);
    let tokens: serde_json::Value = resp.json().await.expect("json");
    let jwt = tokens["access_token"].as_str().expect("token").to_string();
    assert_eq!(jwt.split('.').count(), 3);

    // API calls need the header too; opaque tokens are dead.
    let malformed = json!({"error": {"type": "invalid_request", "message": "invalid_request",
        "description": "Malformed auth header"}});
    let (status, body) = Api::new(&sb, &jwt).get("/contatos").await;
    assert_eq!((status, body), (StatusCode::BAD_REQUEST, malformed));
    let with_header = |token: &str| {
        http()
            .get(format!("{}/contatos", sb.base_url()))
            .bearer_auth(token)
            .header("enable-jwt", "1")
            .send()
    };
    assert_eq!(
        with_header(&jwt).await.expect("answer").status(),
        StatusCode::OK
    );
    let resp = with_header(&opaque.token).await.expect("answer");
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let body: serde_json::Value = resp.json().await.expect("json");
    assert_eq!(
        body["error"]["description"],
        "The access token provided is invalid"
    );
    // grant_tokens follows the mode.
    let helper = sb.grant_tokens(CLIENT_ID, "default").expect("tokens");
    assert!(helper.access_token.len() >= 1500);

    // Back to the default: both kinds work, with or without the header.
    sb.set_jwt_only(false);
    assert_eq!(opaque.get("/contatos").await.0, StatusCode::OK);
    assert_eq!(Api::new(&sb, &jwt).get("/contatos").await.0, StatusCode::OK);
}

#[tokio::test]
async fn jwt_only_can_be_configured_at_start() {
    let sb = start(SandboxConfig {
        jwt_only: true,
        ..unthrottled()
    })
    .await;
    assert!(sb.jwt_only());
    let (status, _) = exchange(&sb, &code_for(&sb, "default").await).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}
