//! The Bling connection against the sandbox over real HTTP: connect, renewal, single flight
//! across workers, revocation versus outage, encrypted storage.

use std::sync::Arc;
use std::time::Duration;

use crate::support::*;
use aggregates::ids::TenantId;
use bling_ledger::ledger::Ledger;
use bling_ledger::oauth::credentials::CredentialStore;
use bling_ledger::oauth::endpoint::TokenEndpoint;
use bling_ledger::oauth::tokens::{RenewalPolicy, TokenError, TokenManager};
use bling_ledger::sandbox::{FaultConfig, FaultRule};
use bling_ledger::store::log::LogFilter;
use bling_ledger::store::Db;

fn tenant(name: &str) -> TenantId {
    TenantId::parse(name).unwrap()
}

async fn connection_events(db: &Db, tenant: &str) -> Vec<String> {
    settle(db).await;
    let filter = LogFilter {
        aggregate_type: Some("BlingConnection".into()),
        aggregate_id: Some(tenant.into()),
        ..Default::default()
    };
    bling_ledger::store::log::read_from(db, 0, 1000, &filter)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.event_type)
        .collect()
}

async fn token_calls(stack: &Stack) -> usize {
    stack
        .sandbox
        .call_log()
        .iter()
        .filter(|c| c.path.contains("/oauth/token"))
        .count()
}

async fn connect_through_the_consent_page(t: TestDb) {
    let stack = Stack::start(&t.url, |_| {}, |_| {}).await;
    let url = stack.authorize_url("shop-a").await;
    // The shop's user sees Bling's consent page and presses "Authorize".
    let page = stack
        .http
        .get(format!("{url}&account=shop-a"))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    let field = |name: &str| -> String {
        let marker = format!("name=\"{name}\" value=\"");
        let start = html
            .find(&marker)
            .unwrap_or_else(|| panic!("{name} in {html}"))
            + marker.len();
        html[start..start + html[start..].find('"').unwrap()].to_string()
    };
    let action = {
        let start = html.find("action=\"").unwrap() + 8;
        html[start..start + html[start..].find('"').unwrap()].replace("&amp;", "&")
    };
    let action = if action.starts_with("http") {
        action
    } else {
        format!("http://{}{action}", stack.sandbox.local_addr())
    };
    let form = [
        ("response_type", field("response_type")),
        ("client_id", field("client_id")),
        ("state", field("state")),
        ("account", field("account")),
        ("decision", "approve".to_string()),
    ];
    let done = stack.http.post(action).form(&form).send().await.unwrap();
    assert_eq!(done.status(), 200);
    assert!(done.text().await.unwrap().contains("Connected to Bling"));

    let shop = tenant("shop-a");
    let auth = stack.server.auth.as_ref().unwrap();
    let token = auth.tokens.access_token(&shop).await.unwrap();
    // Stored encrypted: the raw row holds neither the token nor anything decodable to it.
    let raw: Vec<(String, String)> = bling_ledger::sql!(
        &t.db,
        as (String, String),
        "SELECT access_token, refresh_token FROM bling_credentials",
        [],
        fetch_all
    )
    .unwrap();
    assert_eq!(raw.len(), 1);
    assert!(raw[0].0.starts_with("v1.") && raw[0].1.starts_with("v1."));
    assert!(!raw[0].0.contains(token.expose()));
    // The log carries a fingerprint, never the token.
    let events = read_eventually(&t.db, 0, 2, &LogFilter::default()).await;
    let log = serde_json::to_string(&events).unwrap();
    assert!(!log.contains(token.expose()));
    assert!(log.contains(&token.fingerprint()));
    assert_eq!(
        connection_events(&t.db, "shop-a").await,
        ["AuthorizationRequested", "Connected", "CompanyIdentified"]
    );
    assert!(!format!("{token:?}").contains(token.expose()));

    // The state was single use: replaying the callback stores nothing.
    let status = stack
        .http
        .get(format!(
            "{}/v1/tenants/shop-a/connection",
            stack.server.base_url()
        ))
        .bearer_auth(SUPPORT_TOKEN)
        .send()
        .await
        .unwrap()
        .json::<serde_json::Value>()
        .await
        .unwrap();
    assert_eq!(status["state"], "connected");
    assert!(status["expires_in_seconds"].as_i64().unwrap() > 3600);
    assert!(status.to_string().find(token.expose()).is_none());
    stack.stop().await;
}
both_backends!(consent_page, connect_through_the_consent_page);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_reused_or_missing_state_is_refused_and_stores_nothing() {
    let t = TestDb::sqlite().await;
    let stack = Stack::start(&t.url, |_| {}, |_| {}).await;
    let base = stack.server.base_url();
    let bogus = stack
        .http
        .get(format!("{base}/oauth/callback?code=abc&state=forged"))
        .send()
        .await
        .unwrap();
    assert_eq!(bogus.status(), 400);
    assert!(bogus.text().await.unwrap().contains("not one we issued"));
    let missing = stack
        .http
        .get(format!("{base}/oauth/callback?code=abc"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 400);

    // A real flow, then the same redirect again.
    let url = stack.authorize_url("shop-a").await;
    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let redirect = no_redirects
        .get(format!("{url}&account=shop-a&auto_approve=1"))
        .send()
        .await
        .unwrap();
    let callback = redirect.headers()["location"].to_str().unwrap().to_string();
    assert_eq!(
        stack.http.get(&callback).send().await.unwrap().status(),
        200
    );
    let replay = stack.http.get(&callback).send().await.unwrap();
    assert_eq!(replay.status(), 400);
    assert!(replay.text().await.unwrap().contains("already used"));
    assert_eq!(
        connection_events(&t.db, "shop-a").await,
        ["AuthorizationRequested", "Connected", "CompanyIdentified"]
    );

    // Support of shop-a cannot start a flow for shop-b.
    let forbidden = stack
        .http
        .post(format!("{base}/v1/tenants/shop-b/connection/authorize"))
        .bearer_auth(SUPPORT_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(forbidden.status(), 403);
    stack.stop().await;
}

async fn tokens_renew_by_themselves(t: TestDb) {
    let stack = Stack::start(
        &t.url,
        |s| s.access_ttl = Duration::from_secs(3),
        |a| a.renewal.refresh_ahead = Duration::from_secs(2),
    )
    .await;
    assert_eq!(stack.connect("shop-a").await.0, 200);
    let shop = tenant("shop-a");
    let auth = stack.server.auth.as_ref().unwrap();
    let first = auth.tokens.access_token(&shop).await.unwrap();
    // Over three lifetimes of the access token, calls keep working without anyone asking.
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(900)).await;
        let token = auth.tokens.access_token(&shop).await.unwrap();
        let response = stack
            .http
            .get(format!("{}/contatos", stack.sandbox.base_url()))
            .bearer_auth(token.expose())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "a call failed for expiry");
    }
    let latest = auth.tokens.access_token(&shop).await.unwrap();
    assert_ne!(first, latest);
    let events = connection_events(&t.db, "shop-a").await;
    let refreshed = events.iter().filter(|e| *e == "TokenRefreshed").count();
    assert!(refreshed >= 2, "{events:?}");
    assert!(!events.contains(&"AuthorizationRevoked".to_string()));
    stack.stop().await;
}
both_backends!(renewal, tokens_renew_by_themselves);

/// Eight workers, each with its own pool, find the token due at the same moment: one call to
/// the token endpoint, one new token for all, no revocation.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eight_workers_single_flight_postgres() {
    let t = TestDb::postgres().await;
    let stack = Stack::start(&t.url, |_| {}, |_| {}).await;
    assert_eq!(stack.connect("shop-a").await.0, 200);
    let shop = tenant("shop-a");
    // The token is about to expire.
    bling_ledger::sql!(
        &t.db,
        "UPDATE bling_credentials SET access_expires_at_ms = $1",
        [bling_ledger::store::now_ms() + 1_000]
    )
    .unwrap();
    let before = token_calls(&stack).await;
    let mut workers = Vec::new();
    for _ in 0..8 {
        let db = Db::connect(&t.url, 2).await.unwrap();
        let ledger = Ledger::new(db.clone());
        let settings = auth_settings_for(&stack.sandbox, test_key_ring());
        let manager = Arc::new(TokenManager::new(
            db.clone(),
            CredentialStore::new(db, test_key_ring()),
            TokenEndpoint::new(&settings.oauth).unwrap(),
            ledger,
            15,
            RenewalPolicy {
                refresh_ahead: Duration::from_secs(60),
                jitter: Duration::ZERO,
                ..RenewalPolicy::default()
            },
        ));
        workers.push(tokio::spawn(async move {
            manager.access_token(&tenant("shop-a")).await
        }));
    }
    let mut tokens = Vec::new();
    for w in workers {
        tokens.push(w.await.unwrap().unwrap());
    }
    assert_eq!(
        token_calls(&stack).await - before,
        1,
        "exactly one refresh call"
    );
    assert!(
        tokens.windows(2).all(|w| w[0] == w[1]),
        "all end with the same token"
    );
    let events = connection_events(&t.db, "shop-a").await;
    assert_eq!(events.iter().filter(|e| *e == "TokenRefreshed").count(), 1);
    assert!(!events.contains(&"AuthorizationRevoked".to_string()));
    // And that token is valid.
    let response = stack
        .http
        .get(format!("{}/contatos", stack.sandbox.base_url()))
        .bearer_auth(tokens[0].expose())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let _ = shop;
    stack.stop().await;
}

async fn revocation_is_recorded_and_reconnecting_restores(t: TestDb) {
    let stack = Stack::start(&t.url, |_| {}, |_| {}).await;
    assert_eq!(stack.connect("shop-a").await.0, 200);
    let shop = tenant("shop-a");
    let auth = stack.server.auth.as_ref().unwrap();
    let token = auth.tokens.access_token(&shop).await.unwrap();

    // The shop changes its Bling password.
    stack.sandbox.revoke_account("shop-a");
    let renewed = auth
        .tokens
        .renew_after_unauthorized(&shop, token.expose())
        .await;
    assert_eq!(renewed, Err(TokenError::Revoked));
    let calls = token_calls(&stack).await;
    // From now on no call leaves for that tenant.
    assert_eq!(
        auth.tokens.access_token(&shop).await,
        Err(TokenError::Revoked)
    );
    assert_eq!(
        auth.tokens
            .renew_after_unauthorized(&shop, token.expose())
            .await,
        Err(TokenError::Revoked)
    );
    assert_eq!(token_calls(&stack).await, calls);
    let events = connection_events(&t.db, "shop-a").await;
    assert_eq!(events.last().unwrap(), "AuthorizationRevoked");

    let status: serde_json::Value = stack
        .http
        .get(format!(
            "{}/v1/tenants/shop-a/connection",
            stack.server.base_url()
        ))
        .bearer_auth(SUPPORT_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(status["state"], "revoked");
    assert_eq!(status["revoked"]["error_type"], "invalid_grant");

    assert_eq!(stack.connect("shop-a").await.0, 200);
    assert!(auth.tokens.access_token(&shop).await.is_ok());
    let events = connection_events(&t.db, "shop-a").await;
    assert_eq!(events.last().unwrap(), "Reconnected");
    stack.stop().await;
}
both_backends!(revocation, revocation_is_recorded_and_reconnecting_restores);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unavailable_token_endpoint_is_not_a_revocation() {
    let t = TestDb::sqlite().await;
    let stack = Stack::start(&t.url, |_| {}, |_| {}).await;
    assert_eq!(stack.connect("shop-a").await.0, 200);
    let shop = tenant("shop-a");
    let auth = stack.server.auth.as_ref().unwrap();
    let token = auth.tokens.access_token(&shop).await.unwrap();

    stack.sandbox.set_faults(
        None,
        FaultConfig::none().with_rule(FaultRule::route("POST", "/oauth/token").error_rate(1.0)),
    );
    let outcome = auth
        .tokens
        .renew_after_unauthorized(&shop, token.expose())
        .await;
    assert!(
        matches!(outcome, Err(TokenError::Transient(_))),
        "{outcome:?}"
    );
    stack.sandbox.set_faults(
        None,
        FaultConfig::none().with_rule(FaultRule::route("POST", "/oauth/token").drop_rate(1.0)),
    );
    let outcome = auth
        .tokens
        .renew_after_unauthorized(&shop, token.expose())
        .await;
    assert!(
        matches!(outcome, Err(TokenError::Transient(_))),
        "{outcome:?}"
    );

    let events = connection_events(&t.db, "shop-a").await;
    assert_eq!(
        events.iter().filter(|e| *e == "RefreshDeferred").count(),
        2,
        "{events:?}"
    );
    assert!(!events.contains(&"AuthorizationRevoked".to_string()));

    // Bling recovers: the next renewal succeeds with the same refresh token.
    stack.sandbox.set_faults(None, FaultConfig::none());
    let renewed = auth
        .tokens
        .renew_after_unauthorized(&shop, token.expose())
        .await
        .unwrap();
    assert_ne!(renewed, token);
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_budget_holds_renewals_back() {
    let t = TestDb::sqlite().await;
    let stack = Stack::start(&t.url, |_| {}, |a| a.token_calls_per_minute = 3).await;
    assert_eq!(stack.connect("shop-a").await.0, 200);
    let shop = tenant("shop-a");
    let auth = stack.server.auth.as_ref().unwrap();
    // The code exchange counts in the fleet's budget too (a budget under 5 keeps no reserve
    // for exchanges): two renewals fit after it.
    let mut token = auth.tokens.access_token(&shop).await.unwrap();
    for _ in 0..2 {
        token = auth
            .tokens
            .renew_after_unauthorized(&shop, token.expose())
            .await
            .unwrap();
    }
    let before = token_calls(&stack).await;
    let outcome = auth
        .tokens
        .renew_after_unauthorized(&shop, token.expose())
        .await;
    assert!(
        matches!(outcome, Err(TokenError::BudgetExhausted { .. })),
        "{outcome:?}"
    );
    assert_eq!(
        token_calls(&stack).await,
        before,
        "no call beyond the budget"
    );
    stack.stop().await;
}

/// The connection status as support sees it over HTTP.
async fn status_of(stack: &Stack, tenant: &str) -> serde_json::Value {
    stack
        .http
        .get(format!(
            "{}/v1/tenants/{tenant}/connection",
            stack.server.base_url()
        ))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

fn token_grants(stack: &Stack) -> Vec<bling_ledger::sandbox::CallRecord> {
    stack
        .sandbox
        .call_log()
        .into_iter()
        .filter(|c| c.path == "/Api/v3/oauth/token")
        .collect()
}

/// Both grants carry `enable-jwt: 1`; the sandbox answers `token_type: "bearer"` (lower case,
/// as measured on Bling) and a JWT of 1,500–3,000 characters, stored and read back intact.
async fn grants_ask_for_jwt_and_accept_lower_case_bearer(t: TestDb) {
    let stack = Stack::start(&t.url, |_| {}, |_| {}).await;
    assert_eq!(stack.connect("shop-a").await.0, 200);
    let shop = tenant("shop-a");
    let auth = stack.server.auth.as_ref().unwrap();
    let token = auth.tokens.access_token(&shop).await.unwrap();
    assert!(
        (1500..=3000).contains(&token.expose().len()),
        "{}",
        token.expose().len()
    );
    assert_eq!(token.expose().split('.').count(), 3);
    let renewed = auth
        .tokens
        .renew_after_unauthorized(&shop, token.expose())
        .await
        .unwrap();
    assert_ne!(renewed.expose(), token.expose());
    assert!(renewed.expose().len() >= 1500);
    let grants = token_grants(&stack);
    assert_eq!(grants.len(), 2, "code exchange and refresh");
    assert!(grants.iter().all(|g| g.enable_jwt && g.status == Some(200)));
    // The sandbox's answer really was lower case.
    let direct = stack
        .sandbox
        .grant_tokens(bling_ledger::sandbox::SandboxConfig::DEMO_CLIENT_ID, "x")
        .unwrap();
    assert_eq!(direct.token_type, "bearer");
    stack.stop().await;
}
both_backends!(jwt_grants, grants_ask_for_jwt_and_accept_lower_case_bearer);

/// After Bling's cut-off (JWT-only), token calls without the header are refused: the ledger's
/// connect and renewal keep working because they send it.
async fn jwt_only_token_calls_work(t: TestDb) {
    let stack = Stack::start(&t.url, |s| s.jwt_only = true, |_| {}).await;
    assert_eq!(stack.connect("shop-a").await.0, 200);
    let shop = tenant("shop-a");
    let auth = stack.server.auth.as_ref().unwrap();
    let token = auth.tokens.access_token(&shop).await.unwrap();
    auth.tokens
        .renew_after_unauthorized(&shop, token.expose())
        .await
        .unwrap();
    let grants = token_grants(&stack);
    assert_eq!(grants.len(), 2);
    assert!(grants.iter().all(|g| g.status == Some(200)));
    assert_eq!(status_of(&stack, "shop-a").await["state"], "connected");
    stack.stop().await;
}
both_backends!(jwt_only, jwt_only_token_calls_work);

/// Someone else already used the code Bling sent back: Bling answers VALIDATION_ERROR and
/// revokes the user. The connection needs a reconnect, with Bling's words as the reason.
async fn a_reused_code_needs_reconnect_with_the_reason(t: TestDb) {
    let stack = Stack::start(&t.url, |_| {}, |_| {}).await;
    assert_eq!(stack.connect("shop-a").await.0, 200);
    let url = stack.authorize_url("shop-a").await;
    let no_redirect = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let redirect = no_redirect
        .get(format!("{url}&account=shop-a&auto_approve=1"))
        .send()
        .await
        .unwrap();
    let location = redirect.headers()["location"].to_str().unwrap().to_string();
    let code = location
        .split(['?', '&'])
        .find_map(|p| p.strip_prefix("code="))
        .unwrap()
        .to_string();
    let stolen = no_redirect
        .post(stack.sandbox.token_url())
        .basic_auth(
            bling_ledger::sandbox::SandboxConfig::DEMO_CLIENT_ID,
            Some(bling_ledger::sandbox::SandboxConfig::DEMO_CLIENT_SECRET),
        )
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(stolen.status(), 200);

    let page = stack.http.get(&location).send().await.unwrap();
    assert_eq!(page.status(), 502);
    let html = page.text().await.unwrap();
    assert!(html.contains("VALIDATION_ERROR"), "{html}");
    let shop = tenant("shop-a");
    let auth = stack.server.auth.as_ref().unwrap();
    assert_eq!(
        auth.tokens.access_token(&shop).await,
        Err(TokenError::Revoked)
    );
    let status = status_of(&stack, "shop-a").await;
    assert_eq!(status["state"], "revoked");
    assert_eq!(status["revoked"]["error_type"], "VALIDATION_ERROR");
    assert_eq!(status["revoked"]["status"], 400);
    assert!(status["revoked"]["message"]
        .as_str()
        .unwrap()
        .contains("already been used"));
    assert_eq!(
        status["last_authorization_failure"]["error_type"],
        "VALIDATION_ERROR"
    );
    assert!(status["last_error"]
        .as_str()
        .unwrap()
        .contains("VALIDATION_ERROR"));
    // Reconnecting clears it.
    assert_eq!(stack.connect("shop-a").await.0, 200);
    let status = status_of(&stack, "shop-a").await;
    assert_eq!(status["state"], "connected");
    assert!(status["last_authorization_failure"].is_null());
    stack.stop().await;
}
both_backends!(code_reuse, a_reused_code_needs_reconnect_with_the_reason);

/// The company goes inactive (in arrears): the refresh answers UNAUTHORIZED_ERROR "Empresa
/// inativa", which needs a reconnect and is shown with Bling's words.
async fn empresa_inativa_on_refresh_needs_reconnect(t: TestDb) {
    let stack = Stack::start(&t.url, |_| {}, |_| {}).await;
    assert_eq!(stack.connect("shop-a").await.0, 200);
    let shop = tenant("shop-a");
    let auth = stack.server.auth.as_ref().unwrap();
    let token = auth.tokens.access_token(&shop).await.unwrap();
    stack.sandbox.set_company_active("shop-a", false);
    assert_eq!(
        auth.tokens
            .renew_after_unauthorized(&shop, token.expose())
            .await,
        Err(TokenError::Revoked)
    );
    let status = status_of(&stack, "shop-a").await;
    assert_eq!(status["state"], "revoked");
    assert_eq!(status["revoked"]["error_type"], "UNAUTHORIZED_ERROR");
    assert_eq!(status["revoked"]["status"], 401);
    assert!(status["revoked"]["message"]
        .as_str()
        .unwrap()
        .contains("Empresa inativa"));
    assert!(status["last_error"]
        .as_str()
        .unwrap()
        .contains("Empresa inativa"));
    stack.stop().await;
}
both_backends!(empresa_inativa, empresa_inativa_on_refresh_needs_reconnect);

/// Bling's authorize redirect with `error=access_denied`, `app_inativo` or
/// `UNAUTHORIZED_ERROR`: the shop sees why, nothing is stored, support sees it on the
/// connection.
async fn refused_authorizations_say_why(t: TestDb) {
    let stack = Stack::start(&t.url, |_| {}, |_| {}).await;
    let base = stack.server.base_url();

    // access_denied: the user presses "deny" on the consent page.
    let url = stack.authorize_url("shop-d").await;
    let html = stack
        .http
        .get(format!("{url}&account=shop-d"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let state = {
        let marker = "name=\"state\" value=\"";
        let start = html.find(marker).unwrap() + marker.len();
        html[start..start + html[start..].find('"').unwrap()].to_string()
    };
    let denied = stack
        .http
        .post(format!(
            "http://{}/Api/v3/oauth/authorize",
            stack.sandbox.local_addr()
        ))
        .form(&[
            ("response_type", "code"),
            (
                "client_id",
                bling_ledger::sandbox::SandboxConfig::DEMO_CLIENT_ID,
            ),
            ("state", state.as_str()),
            ("account", "shop-d"),
            ("decision", "deny"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(denied.status(), 400);
    let page = denied.text().await.unwrap();
    assert!(
        page.contains("declined") && page.contains("access_denied"),
        "{page}"
    );

    // UNAUTHORIZED_ERROR: the company is in arrears.
    stack.sandbox.set_company_active("shop-u", false);
    let (code, page) = stack.connect("shop-u").await;
    assert_eq!(code, 400);
    assert!(
        page.contains("UNAUTHORIZED_ERROR") && page.contains("arrears"),
        "{page}"
    );

    // app_inativo: our app was inactivated in Bling.
    stack
        .sandbox
        .set_app_active(bling_ledger::sandbox::SandboxConfig::DEMO_CLIENT_ID, false)
        .unwrap();
    let (code, page) = stack.connect("shop-i").await;
    assert_eq!(code, 400);
    assert!(
        page.contains("app_inativo") && page.contains("inactive"),
        "{page}"
    );

    for (shop, error) in [
        ("shop-d", "access_denied"),
        ("shop-u", "UNAUTHORIZED_ERROR"),
        ("shop-i", "app_inativo"),
    ] {
        let status = status_of(&stack, shop).await;
        assert_eq!(status["state"], "awaiting_authorization", "{shop}");
        assert_eq!(status["last_authorization_failure"]["error_type"], error);
        assert!(status["token_fingerprint"].is_null());
    }
    let rows: Vec<(String,)> = bling_ledger::sql!(
        &t.db,
        as (String,),
        "SELECT tenant FROM bling_credentials",
        [],
        fetch_all
    )
    .unwrap();
    assert!(rows.is_empty(), "no credentials stored");
    // A refusal with a state we never issued records nothing.
    let bogus = stack
        .http
        .get(format!(
            "{base}/oauth/callback?error=access_denied&state=forged"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(bogus.status(), 400);
    assert!(bogus.text().await.unwrap().contains("nothing was recorded"));
    assert_eq!(
        connection_events(&t.db, "shop-d").await,
        ["AuthorizationRequested", "AuthorizationFailed"]
    );
    stack.stop().await;
}
both_backends!(refused, refused_authorizations_say_why);
