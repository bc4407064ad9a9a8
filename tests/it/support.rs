//! Shared by the integration tests: fresh databases on a real PostgreSQL and on SQLite.
#![allow(dead_code)]

use bling_ledger::store::Db;

/// The server tests create their databases on; override with `TEST_POSTGRES_URL`.
pub fn postgres_admin_url() -> String {
    std::env::var("TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_string())
}

/// A database of its own for one test, so tests run in parallel without sharing state.
pub struct TestDb {
    pub db: Db,
    pub url: String,
    _dir: Option<tempfile::TempDir>,
}

impl TestDb {
    pub async fn postgres() -> TestDb {
        let admin = Db::connect(&postgres_admin_url(), 1)
            .await
            .expect("PostgreSQL must be reachable for the integration tests (see README)");
        let name = format!("bl_test_{}", uuid::Uuid::new_v4().simple());
        if let Db::Postgres(pool) = &admin {
            sqlx::query(&format!("CREATE DATABASE {name}"))
                .execute(pool)
                .await
                .expect("create test database");
        }
        admin.close().await;
        let base = postgres_admin_url();
        let url = match base.rfind('/') {
            Some(i) => format!("{}/{name}", &base[..i]),
            None => panic!("TEST_POSTGRES_URL has no database part: {base}"),
        };
        let db = Db::connect(&url, 12).await.expect("connect test database");
        db.migrate().await.expect("migrate");
        TestDb {
            db,
            url,
            _dir: None,
        }
    }

    pub async fn sqlite() -> TestDb {
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}", dir.path().join("ledger.db").display());
        let db = Db::connect(&url, 4).await.expect("open sqlite");
        db.migrate().await.expect("migrate");
        TestDb {
            db,
            url,
            _dir: Some(dir),
        }
    }

    pub async fn of_kind(kind: &str) -> TestDb {
        match kind {
            "postgres" => TestDb::postgres().await,
            _ => TestDb::sqlite().await,
        }
    }
}

/// Runs one async test body against both backends.
#[macro_export]
macro_rules! both_backends {
    ($name:ident, $body:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$body($crate::support::TestDb::sqlite().await).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$body($crate::support::TestDb::postgres().await).await;
            }
        }
    };
}

/// Reads the log until `count` events after `after` are readable. On PostgreSQL an event
/// becomes readable once every older transaction of the cluster has finished, which, with
/// other tests writing to other databases, can take a moment.
pub async fn read_eventually(
    db: &Db,
    after: i64,
    count: usize,
    filter: &bling_ledger::store::log::LogFilter,
) -> Vec<bling_ledger::store::log::RecordedEvent> {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let events = bling_ledger::store::log::read_from(db, after, 10_000, filter)
            .await
            .expect("read log");
        if events.len() >= count || tokio::time::Instant::now() > deadline {
            return events;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

pub const INGEST_TOKEN: &str = "test-ingest-shop-a";
pub const SUPPORT_TOKEN: &str = "test-support-shop-a";
pub const AUDITOR_TOKEN: &str = "test-auditor-all";
pub const ADMIN_TOKEN: &str = "test-admin";
pub const INGEST_B_TOKEN: &str = "test-ingest-shop-b";

/// The tokens every HTTP test uses.
pub fn test_tokens() -> bling_ledger::auth::TokenRegistry {
    use aggregates::ids::TenantId;
    use bling_ledger::auth::{Role, TenantScope, TokenRegistry};
    let a = TenantScope::One(TenantId::parse("shop-a").unwrap());
    let b = TenantScope::One(TenantId::parse("shop-b").unwrap());
    TokenRegistry::default()
        .with_token(INGEST_TOKEN, "petshop-a", Role::Ingest, a.clone())
        .with_token(SUPPORT_TOKEN, "support-a", Role::Support, a)
        .with_token(AUDITOR_TOKEN, "auditor", Role::Auditor, TenantScope::All)
        .with_token(ADMIN_TOKEN, "admin", Role::Admin, TenantScope::All)
        .with_token(INGEST_B_TOKEN, "petshop-b", Role::Ingest, b)
}

/// Starts the whole service on a random port against `url`.
pub async fn start_server(url: &str) -> bling_ledger::server::Server {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let settings = bling_ledger::server::Settings {
        database_url: url.to_string(),
        max_connections: 8,
        tokens: test_tokens(),
        auth: None,
        sync: Default::default(),
    };
    bling_ledger::server::Server::start(settings, listener)
        .await
        .expect("server starts")
}

/// A valid customer body (CPF 529.982.247-25, full address).
pub fn customer_body(name: &str) -> serde_json::Value {
    serde_json::json!({
        "name": name,
        "tax_id": "529.982.247-25",
        "email": "cliente@example.com.br",
        "mobile": "(11) 98888-7777",
        "address": {
            "street": "Rua das Flores", "number": "42", "district": "Centro",
            "city": "São Paulo", "state": "SP", "cep": "01001-000"
        }
    })
}

/// A valid invoice body for `customer`: a bath and a vaccine, R$ 170,00 in two installments.
pub fn invoice_body(customer: &str, number: &str) -> serde_json::Value {
    serde_json::json!({
        "customer_id": customer,
        "number": number,
        "issue_date": "2026-11-25",
        "items": [
            {"sku": "BANHO-P", "description": "Banho porte pequeno", "quantity": 2, "unit_price": 4500, "discount": 1000},
            {"sku": "V10", "description": "Vacina V10", "quantity": 1, "unit_price": 9000}
        ],
        "installments": [
            {"due_date": "2026-11-25", "amount": 8000, "payment_method": "pix"},
            {"due_date": "2026-12-25", "amount": 9000, "payment_method": "cartao_credito"}
        ],
        "total": 17000
    })
}

/// The ledger wired to a sandbox over real HTTP, with a Bling app registered in both (built by
/// the library's one [`bling_ledger::stack::StackBuilder`]).
pub struct Stack {
    pub sandbox: bling_ledger::sandbox::Sandbox,
    pub server: bling_ledger::server::Server,
    pub http: reqwest::Client,
}

/// Auth settings pointing at `sandbox`, renewing quickly enough for tests.
pub fn auth_settings_for(
    sandbox: &bling_ledger::sandbox::Sandbox,
    keys: bling_ledger::oauth::crypto::KeyRing,
) -> bling_ledger::oauth::AuthSettings {
    let mut settings = bling_ledger::stack::auth_settings_for(sandbox, keys);
    fast_auth(&mut settings);
    settings
}

/// Renewal, budget waits and OAuth states short enough for tests.
fn fast_auth(settings: &mut bling_ledger::oauth::AuthSettings) {
    settings.oauth.timeout = std::time::Duration::from_secs(5);
    settings.renewal = bling_ledger::oauth::tokens::RenewalPolicy {
        refresh_ahead: std::time::Duration::from_secs(60),
        jitter: std::time::Duration::ZERO,
        budget_wait: std::time::Duration::from_millis(200),
        retry_after_failure: std::time::Duration::from_secs(1),
    };
    settings.state_ttl = std::time::Duration::from_secs(60);
    settings.renewal_interval = std::time::Duration::from_millis(200);
}

pub fn test_key_ring() -> bling_ledger::oauth::crypto::KeyRing {
    use bling_ledger::oauth::crypto::{EncryptionKey, KeyRing};
    KeyRing::new(EncryptionKey::from_bytes(&[7u8; 32]).expect("key"))
}

impl Stack {
    /// Starts a sandbox and the ledger on `url`; `sandbox_config` and `auth` may be adjusted.
    pub async fn start(
        url: &str,
        sandbox_config: impl FnOnce(&mut bling_ledger::sandbox::SandboxConfig) + Send + 'static,
        auth: impl FnOnce(&mut bling_ledger::oauth::AuthSettings) + Send + 'static,
    ) -> Stack {
        Stack::start_with(url, sandbox_config, auth, |_| {}).await
    }

    /// [`Stack::start`], with the sync worker's configuration adjustable too. By default the
    /// worker polls often and retries within a second, so tests do not wait.
    pub async fn start_with(
        url: &str,
        sandbox_config: impl FnOnce(&mut bling_ledger::sandbox::SandboxConfig) + Send + 'static,
        auth: impl FnOnce(&mut bling_ledger::oauth::AuthSettings) + Send + 'static,
        sync: impl FnOnce(&mut bling_ledger::server::SyncConfig) + Send + 'static,
    ) -> Stack {
        let stack = bling_ledger::stack::StackBuilder::new(url)
            .tokens(test_tokens())
            .keys(test_key_ring())
            .sandbox(sandbox_config)
            .auth(fast_auth)
            .auth(auth)
            .sync(|s| {
                s.client.timeout = std::time::Duration::from_secs(3);
                s.client.retry = bling_ledger::bling::retry::RetryPolicy {
                    max_attempts: 2,
                    base_delay: std::time::Duration::from_millis(20),
                    max_delay: std::time::Duration::from_millis(200),
                };
                s.settings.poll_interval = std::time::Duration::from_millis(50);
                s.settings.retry_schedule = vec![
                    std::time::Duration::from_millis(100),
                    std::time::Duration::from_millis(300),
                ];
                s.settings.lease_ttl = std::time::Duration::from_secs(5);
            })
            .sync(sync)
            .start()
            .await
            .expect("the stack starts");
        Stack {
            sandbox: stack.sandbox,
            server: stack.server,
            http: reqwest::Client::new(),
        }
    }

    /// Asks the ledger for the authorization URL of `tenant`.
    pub async fn authorize_url(&self, tenant: &str) -> String {
        let response = self
            .http
            .post(format!(
                "{}/v1/tenants/{tenant}/connection/authorize",
                self.server.base_url()
            ))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .expect("authorize");
        assert_eq!(response.status(), 200);
        let body: serde_json::Value = response.json().await.expect("json");
        body["authorize_url"].as_str().expect("url").to_string()
    }

    /// Connects `tenant` to the sandbox account of the same name, approving at once, and
    /// returns the callback page's status and text.
    pub async fn connect(&self, tenant: &str) -> (u16, String) {
        let url = self.authorize_url(tenant).await;
        let response = self
            .http
            .get(format!("{url}&account={tenant}&auto_approve=1"))
            .send()
            .await
            .expect("follow the redirect to the callback");
        (
            response.status().as_u16(),
            response.text().await.unwrap_or_default(),
        )
    }

    pub async fn stop(self) {
        self.server.stop().await.expect("stop");
        self.sandbox.shutdown().await;
    }
}

/// The `n`-th valid CPF of a test (check digits computed).
pub fn cpf(n: u32) -> String {
    let base = format!("{:09}", 100_000_000 + n * 7_919);
    let mut digits: Vec<u32> = base.chars().filter_map(|c| c.to_digit(10)).collect();
    for len in [9, 10] {
        let sum: u32 = digits
            .iter()
            .take(len)
            .enumerate()
            .map(|(i, d)| d * (len as u32 + 1 - i as u32))
            .sum();
        let r = sum % 11;
        digits.push(if r < 2 { 0 } else { 11 - r });
    }
    digits
        .iter()
        .map(|d| char::from_digit(*d, 10).unwrap_or('0'))
        .collect()
}

/// Sends one request to the ledger as admin; panics on transport errors only.
pub async fn call(
    stack: &Stack,
    method: &str,
    path: &str,
    body: Option<&serde_json::Value>,
) -> (u16, serde_json::Value) {
    let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
    let mut request = stack
        .http
        .request(method, format!("{}{path}", stack.server.base_url()))
        .bearer_auth(ADMIN_TOKEN);
    if let Some(body) = body {
        request = request.json(body);
    }
    let response = request.send().await.expect("request");
    let status = response.status().as_u16();
    let text = response.text().await.unwrap_or_default();
    (
        status,
        serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)),
    )
}

/// Polls `check` until it holds or `secs` pass; returns whether it held.
pub async fn eventually<F, Fut>(secs: u64, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(secs);
    while tokio::time::Instant::now() < deadline {
        if check().await {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    check().await
}

/// Waits until every committed event has its global position (PostgreSQL numbers events once
/// the older transactions of the whole cluster finish; other tests keep some open).
pub async fn settle(db: &Db) {
    if let Db::Postgres(pool) = db {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
        while tokio::time::Instant::now() < deadline {
            let _ = bling_ledger::store::log::sequence_pending(db).await;
            let pending: i64 =
                sqlx::query_scalar("SELECT count(*) FROM events WHERE global_position IS NULL")
                    .fetch_one(pool)
                    .await
                    .unwrap_or(0);
            if pending == 0 {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }
}

/// Calls the sandbox received with `method` on a path (under `/Api/v3`) starting with
/// `path_prefix`.
pub fn calls(stack: &Stack, method: &str, path_prefix: &str) -> usize {
    stack
        .sandbox
        .call_log()
        .iter()
        .filter(|c| {
            c.method == method
                && c.path
                    .trim_start_matches("/Api/v3")
                    .starts_with(path_prefix)
        })
        .count()
}

/// `/metrics` as `name{labels}` → value (comments dropped).
pub async fn scrape(stack: &Stack) -> std::collections::HashMap<String, f64> {
    let text = stack
        .http
        .get(format!("{}/metrics", stack.server.base_url()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (name, value) = l.rsplit_once(' ')?;
            Some((name.to_string(), value.parse().ok()?))
        })
        .collect()
}
