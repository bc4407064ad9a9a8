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
