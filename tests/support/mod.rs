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
        TestDb { db, url, _dir: None }
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
                super::$body(super::support::TestDb::sqlite().await).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$body(super::support::TestDb::postgres().await).await;
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
        let events = db.read_from(after, 10_000, filter).await.expect("read log");
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
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let settings = bling_ledger::server::Settings {
        database_url: url.to_string(),
        max_connections: 8,
        tokens: test_tokens(),
        auth: None,
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
            {"due_date": "2026-12-25", "amount": 9000, "payment_method": "cartao"}
        ],
        "total": 17000
    })
}
