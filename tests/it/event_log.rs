//! The global event log: metadata on every event, and a reader that never skips an event
//! committed out of order.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use crate::support::TestDb;
use aggregates::customer::{CustomerCommand, CustomerInput};
use aggregates::ids::{CustomerId, TenantId};
use bling_ledger::ledger::{Actor, CommandContext, Ledger};
use bling_ledger::store::log::LogFilter;
use bling_ledger::store::Db;

fn profile(name: &str) -> aggregates::customer::CustomerProfile {
    CustomerInput {
        name: Some(name.to_string()),
        tax_id: Some("52998224725".into()),
        ..Default::default()
    }
    .validate()
    .expect("valid profile")
}

fn save(tenant: &TenantId, id: &str, name: &str) -> CustomerCommand {
    CustomerCommand::Save {
        tenant: tenant.clone(),
        customer_id: CustomerId::parse(id).unwrap(),
        profile: profile(name),
    }
}

async fn events_carry_metadata_and_positions(t: TestDb) {
    let ledger = Ledger::new(t.db.clone());
    let tenant = TenantId::parse("shop-a").unwrap();
    let ctx = CommandContext::new(tenant.clone(), "req-1", Actor::Ingest("petshop".into()));
    ledger
        .execute_customer(&ctx, "c1", save(&tenant, "c1", "Ana"))
        .await
        .unwrap();
    let ctx2 = ctx.clone().caused_by("Customer/shop-a/c1#1");
    ledger
        .execute_customer(&ctx2, "c1", save(&tenant, "c1", "Ana Maria"))
        .await
        .unwrap();
    let other = TenantId::parse("shop-b").unwrap();
    let ctx_b = CommandContext::new(other.clone(), "req-2", Actor::Worker);
    ledger
        .execute_customer(&ctx_b, "c1", save(&other, "c1", "Bia"))
        .await
        .unwrap();

    let all = crate::support::read_eventually(&t.db, 0, 3, &LogFilter::default()).await;
    assert_eq!(
        all.iter().map(|e| e.position).collect::<Vec<_>>(),
        [1, 2, 3]
    );
    assert_eq!(all[0].event_type, "CustomerRegistered");
    assert_eq!(all[0].aggregate_id, "shop-a/c1");
    assert_eq!(all[0].metadata["tenant"], "shop-a");
    assert_eq!(all[0].metadata["correlation_id"], "req-1");
    assert_eq!(all[0].metadata["actor"], "ingest:petshop");
    assert!(all[0].metadata["recorded_at"].as_str().is_some());
    assert_eq!(all[1].event_type, "CustomerUpdated");
    assert_eq!(all[1].metadata["causation_id"], "Customer/shop-a/c1#1");
    assert_eq!(
        all[1].payload["CustomerUpdated"]["changed_fields"][0],
        "name"
    );
    assert_eq!(all[2].metadata["actor"], "worker");

    let only_b = LogFilter {
        tenant: Some("shop-b".into()),
        ..Default::default()
    };
    let b = bling_ledger::store::log::read_from(&t.db, 0, 100, &only_b)
        .await
        .unwrap();
    assert_eq!(b.len(), 1);
    assert_eq!(b[0].position, 3);
    assert_eq!(
        bling_ledger::store::log::read_from(&t.db, 2, 100, &LogFilter::default())
            .await
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        bling_ledger::store::log::head_position(&t.db)
            .await
            .unwrap(),
        3
    );

    // Unchanged profile: nothing appended.
    ledger
        .execute_customer(&ctx, "c1", save(&tenant, "c1", "Ana Maria"))
        .await
        .unwrap();
    // Every earlier event was positioned, so a new one could only have come after 3.
    assert_eq!(
        bling_ledger::store::log::head_position(&t.db)
            .await
            .unwrap(),
        3
    );
    let events: i64 = match &t.db {
        Db::Postgres(pool) => sqlx::query_scalar("SELECT count(*) FROM events")
            .fetch_one(pool)
            .await
            .unwrap(),
        Db::Sqlite(pool) => sqlx::query_scalar("SELECT count(*) FROM events")
            .fetch_one(pool)
            .await
            .unwrap(),
    };
    assert_eq!(events, 3);
}
both_backends!(metadata_and_positions, events_carry_metadata_and_positions);

/// Inserts one event the way postgres-es does, inside a transaction the caller controls.
async fn raw_insert(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    aggregate_id: &str,
    sequence: i64,
) {
    sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version,
                             payload, metadata)
         VALUES ('Probe', $1, $2, 'Probed', '1', '{}', '{\"tenant\":\"probe\"}')",
    )
    .bind(aggregate_id)
    .bind(sequence)
    .execute(&mut **tx)
    .await
    .expect("insert");
}

/// Transaction A inserts first but commits last. A reader that ordered by insertion would
/// see B, move past it, and never deliver A. Ours delivers nothing until A commits, then both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_commit_is_never_skipped_postgres() {
    let t = TestDb::postgres().await;
    let Db::Postgres(pool) = &t.db else {
        unreachable!()
    };
    let mut a = pool.begin().await.unwrap();
    raw_insert(&mut a, "a", 1).await;
    let mut b = pool.begin().await.unwrap();
    raw_insert(&mut b, "b", 1).await;
    b.commit().await.unwrap();

    let naive: Vec<String> =
        sqlx::query_scalar("SELECT aggregate_id FROM events ORDER BY insert_id")
            .fetch_all(pool)
            .await
            .unwrap();
    assert_eq!(
        naive,
        ["b"],
        "B is visible while A is in flight: the trap is set"
    );

    let seen = bling_ledger::store::log::read_from(&t.db, 0, 10, &LogFilter::default())
        .await
        .unwrap();
    assert!(
        seen.is_empty(),
        "nothing may be read while an older transaction is open"
    );

    a.commit().await.unwrap();
    let seen = crate::support::read_eventually(&t.db, 0, 2, &LogFilter::default()).await;
    let order: Vec<_> = seen
        .iter()
        .map(|e| (e.position, e.aggregate_id.as_str()))
        .collect();
    assert_eq!(order, [(1, "a"), (2, "b")]);
}

/// An aborted transaction leaves no event and no hole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolled_back_append_leaves_no_gap_postgres() {
    let t = TestDb::postgres().await;
    let Db::Postgres(pool) = &t.db else {
        unreachable!()
    };
    let mut a = pool.begin().await.unwrap();
    raw_insert(&mut a, "a", 1).await;
    let mut b = pool.begin().await.unwrap();
    raw_insert(&mut b, "b", 1).await;
    a.rollback().await.unwrap();
    b.commit().await.unwrap();
    let seen = crate::support::read_eventually(&t.db, 0, 1, &LogFilter::default()).await;
    let order: Vec<_> = seen
        .iter()
        .map(|e| (e.position, e.aggregate_id.as_str()))
        .collect();
    assert_eq!(order, [(1, "b")]);
}

const WRITERS: usize = 8;

/// Many writers, one reader following the log: every event exactly once, positions strictly
/// increasing, and every aggregate's events in sequence order.
async fn concurrent_writers_one_reader(t: TestDb, per_writer: usize) {
    let ledger = Ledger::new(t.db.clone());
    let total = WRITERS * per_writer;
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let ledger = Arc::clone(&ledger);
        let db = t.db.clone();
        writers.push(tokio::spawn(async move {
            let tenant = TenantId::parse(&format!("t{w}")).unwrap();
            let ctx = CommandContext::new(tenant.clone(), format!("writer-{w}"), Actor::System);
            let mut raw_sequence = 0;
            for i in 0..per_writer {
                // Half the events go through the real command path; the other half through
                // transactions held open a little, so commits land out of insertion order.
                if i % 2 == 0 || !matches!(db, Db::Postgres(_)) {
                    let customer = format!("c{}", i % 50);
                    let name = format!("Cliente {w}-{i}");
                    ledger
                        .execute_customer(&ctx, &customer, save(&tenant, &customer, &name))
                        .await
                        .expect("append");
                } else if let Db::Postgres(pool) = &db {
                    raw_sequence += 1;
                    let mut tx = pool.begin().await.unwrap();
                    raw_insert(&mut tx, &format!("w{w}"), raw_sequence).await;
                    if i % 7 == 1 {
                        tokio::time::sleep(Duration::from_millis(2)).await;
                    }
                    tx.commit().await.unwrap();
                }
            }
        }));
    }

    let mut seen = HashSet::new();
    let mut last_sequence: std::collections::HashMap<String, i64> = Default::default();
    let mut checkpoint = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while seen.len() < total {
        assert!(
            tokio::time::Instant::now() < deadline,
            "reader stalled at {}",
            seen.len()
        );
        let batch =
            bling_ledger::store::log::read_from(&t.db, checkpoint, 1000, &LogFilter::default())
                .await
                .unwrap();
        if batch.is_empty() {
            tokio::time::sleep(Duration::from_millis(5)).await;
            continue;
        }
        for e in batch {
            assert!(
                e.position > checkpoint,
                "went backwards: {} after {checkpoint}",
                e.position
            );
            assert_eq!(e.position, checkpoint + 1, "positions are dense");
            checkpoint = e.position;
            let key = format!("{}/{}#{}", e.aggregate_type, e.aggregate_id, e.sequence);
            let previous = last_sequence.insert(
                format!("{}/{}", e.aggregate_type, e.aggregate_id),
                e.sequence,
            );
            assert_eq!(
                previous.unwrap_or(0) + 1,
                e.sequence,
                "stream order broken at {key}"
            );
            assert!(seen.insert(key.clone()), "delivered twice: {key}");
        }
    }
    for w in writers {
        w.await.unwrap();
    }
    // Nothing more arrives, and the table holds exactly what was delivered.
    assert!(
        bling_ledger::store::log::read_from(&t.db, checkpoint, 10, &LogFilter::default())
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(seen.len(), total);
    assert_eq!(
        bling_ledger::store::log::head_position(&t.db)
            .await
            .unwrap(),
        total as i64
    );
    // Sealed under the same concurrency: both chains recompute over every event.
    let sealed = bling_ledger::audit::verify_db::verify_database(&t.db, None)
        .await
        .unwrap();
    assert!(sealed.ok(), "{sealed}");
    assert_eq!(sealed.events, total as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eight_writers_twenty_thousand_events_postgres() {
    concurrent_writers_one_reader(TestDb::postgres().await, 2_500).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn eight_writers_sqlite() {
    concurrent_writers_one_reader(TestDb::sqlite().await, 250).await;
}
