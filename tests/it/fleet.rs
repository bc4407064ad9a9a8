//! A fleet of shops: the scheduler serves a small shop while another drains a backlog, leases
//! fence a job that outlived them, a heartbeat keeps a slow job's lease, renewals go earliest
//! deadline first under a tight budget, and a lost rotation is not a revocation.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::support::*;
use bling_ledger::bling::client::{BlingClient, ClientConfig};
use bling_ledger::ledger::Ledger;
use bling_ledger::sandbox::{FaultConfig, FaultRule};
use bling_ledger::store::log::{LogFilter, RecordedEvent};
use bling_ledger::store::sync_work::{self, Kind};
use bling_ledger::store::Db;
use bling_ledger::sync::{SyncSettings, SyncWorker};
use serde_json::{json, Value};

fn customer(name: &str, n: u32) -> Value {
    let mut body = customer_body(name);
    body["tax_id"] = json!(cpf(n));
    body
}

fn invoice(customer: &str, number: usize) -> Value {
    invoice_body(customer, &format!("NF-{number}"))
}

async fn events(db: &Db) -> Vec<RecordedEvent> {
    settle(db).await;
    let mut out = Vec::new();
    let mut after = 0;
    loop {
        let page = bling_ledger::store::log::read_from(db, after, 5_000, &LogFilter::default())
            .await
            .unwrap();
        let Some(last) = page.last() else { return out };
        after = last.position;
        out.extend(page);
    }
}

async fn count_of(db: &Db, event_type: &str, aggregate_id: Option<&str>) -> usize {
    events(db)
        .await
        .iter()
        .filter(|e| e.event_type == event_type)
        .filter(|e| aggregate_id.is_none_or(|id| e.aggregate_id == id))
        .count()
}

/// Registers customer `c1` of `shop` and bills `n` invoices `{prefix}{i}` for it.
async fn bill(stack: &Stack, shop: &str, prefix: &str, n: usize) {
    let (s, b) = call(
        stack,
        "PUT",
        &format!("/v1/tenants/{shop}/customers/c1"),
        Some(&customer("Maria", 1)),
    )
    .await;
    assert!(s == 200 || s == 201, "{b}");
    for i in 0..n {
        let (s, b) = call(
            stack,
            "POST",
            &format!("/v1/tenants/{shop}/invoices/{prefix}{i}/bill"),
            Some(&invoice("c1", i)),
        )
        .await;
        assert_eq!(s, 201, "{b}");
    }
}

/// A sandbox without Bling's rate limits and a ledger whose server runs no sync worker: the
/// test drives its own workers.
async fn stack_without_worker(t: &TestDb) -> Stack {
    Stack::start_with(
        &t.url,
        |s| s.rate_limit_per_sec = 0,
        |_| {},
        |sync| {
            sync.run_worker = false;
            sync.client.rate_limit_per_sec = 0;
        },
    )
    .await
}

/// A worker of its own (its own pool, as another process would have) against the stack's
/// sandbox, with the given settings.
async fn worker(stack: &Stack, url: &str, settings: SyncSettings) -> (Arc<SyncWorker>, Db) {
    let db = Db::connect(url, 4).await.unwrap();
    let auth = stack.server.auth.as_ref().unwrap();
    let tokens: Arc<dyn bling_ledger::bling::AccessTokens> = auth.tokens.clone();
    let client = BlingClient::new(
        &stack.sandbox.base_url(),
        tokens,
        ClientConfig {
            rate_limit_per_sec: 0,
            timeout: Duration::from_secs(10),
            ..Default::default()
        },
    )
    .unwrap();
    (
        SyncWorker::new(db.clone(), Ledger::new(db.clone()), client, settings),
        db,
    )
}

/// One shop drains a backlog at Bling's real 3 req/s while another bills one invoice: the
/// small shop's invoice reaches Bling within seconds, long before the backlog is done.
async fn a_small_shop_is_served_while_another_drains_a_backlog(t: TestDb) {
    let stack = Stack::start_with(&t.url, |_| {}, |_| {}, |_| {}).await;
    assert_eq!(stack.connect("big").await.0, 200);
    assert_eq!(stack.connect("small").await.0, 200);
    bill(&stack, "big", "b", 40).await;
    // The backlog is under way before the small shop bills.
    assert!(
        eventually(20, || async {
            calls(&stack, "POST", "/pedidos/vendas") >= 2
        })
        .await,
        "the backlog started"
    );
    let billed = Instant::now();
    bill(&stack, "small", "s", 1).await;
    assert!(
        eventually(20, || async {
            count_of(&t.db, "SituacaoChanged", Some("small/s0")).await == 1
        })
        .await,
        "the small shop's invoice was synced"
    );
    let waited = billed.elapsed();
    let big_done = count_of(&t.db, "SituacaoChanged", None).await - 1;
    assert!(
        waited < Duration::from_secs(8),
        "the small shop waited {waited:?} behind the backlog"
    );
    assert!(
        big_done < 40,
        "the backlog was still draining when the small shop was served ({big_done} of 40 done)"
    );
    stack.stop().await;
}
both_backends!(
    small_shop_beside_a_backlog,
    a_small_shop_is_served_while_another_drains_a_backlog
);

/// A worker's create is slow; meanwhile its lease passes to another holder (as when its
/// heartbeats stop reaching the database). When the answer comes, the job can write nothing:
/// no event, no outcome. The new holder finds the order by our key and adopts it: one order.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_job_that_outlived_its_lease_cannot_write_postgres() {
    let t = TestDb::postgres().await;
    let stack = stack_without_worker(&t).await;
    assert_eq!(stack.connect("shop-a").await.0, 200);
    bill(&stack, "shop-a", "i", 1).await;
    stack.sandbox.set_faults(
        None,
        FaultConfig::none().with_rule(
            FaultRule::route("POST", "/pedidos/vendas")
                .exact()
                .latency(Duration::from_millis(2500), Duration::from_millis(2500)),
        ),
    );
    let settings = SyncSettings {
        lease_ttl: Duration::from_secs(30),
        retry_schedule: vec![Duration::from_millis(10)],
        ..SyncSettings::default()
    };
    let (first, first_db) = worker(&stack, &t.url, settings.clone()).await;
    let running = tokio::spawn(async move { first.run_until_idle(Duration::from_secs(20)).await });
    // The create is on its way (marked before it is sent).
    assert!(
        eventually(20, || async {
            sync_work::get_job(&t.db, "shop-a", Kind::Invoice, "i0")
                .await
                .unwrap()
                .is_some_and(|j| j.create_sent)
        })
        .await
    );
    // The lease passes to another holder while the create is in flight.
    let Db::Postgres(pool) = &t.db else {
        unreachable!()
    };
    sqlx::query("UPDATE sync_leases SET expires_at_ms = 0 WHERE tenant = 'shop-a'")
        .execute(pool)
        .await
        .unwrap();
    let thief = sync_work::take_lease(&t.db, "shop-a", "another-process", 60_000)
        .await
        .unwrap()
        .expect("the expired lease can be taken");
    let outcome = running.await.unwrap();
    assert!(
        matches!(outcome, Err(bling_ledger::store::StoreError::LeaseLost(_))),
        "{outcome:?}"
    );
    first_db.close().await;
    // The job wrote nothing after its create: no order recorded, the work not finished.
    assert_eq!(count_of(&t.db, "SalesOrderCreated", None).await, 0);
    assert_eq!(count_of(&t.db, "SyncFailed", None).await, 0);
    let job = sync_work::get_job(&t.db, "shop-a", Kind::Invoice, "i0")
        .await
        .unwrap()
        .unwrap();
    assert_eq!((job.state.as_str(), job.create_sent), ("pending", true));
    assert_eq!(calls(&stack, "POST", "/pedidos/vendas"), 1);
    assert_eq!(
        calls(&stack, "PATCH", "/pedidos/vendas"),
        0,
        "no call after the loss"
    );

    // The new holder's process ends; the next worker adopts the order the first one created.
    sync_work::release(&t.db, "shop-a", &thief, 0)
        .await
        .unwrap();
    stack.sandbox.set_faults(None, FaultConfig::none());
    let (second, second_db) = worker(&stack, &t.url, settings).await;
    second
        .run_until_idle(Duration::from_secs(20))
        .await
        .unwrap();
    second_db.close().await;
    assert_eq!(
        count_of(&t.db, "SituacaoChanged", Some("shop-a/i0")).await,
        1
    );
    assert_eq!(stack.sandbox.pedidos("shop-a").len(), 1, "one order");
    assert_eq!(
        calls(&stack, "POST", "/pedidos/vendas"),
        1,
        "no second create"
    );
    stack.stop().await;
}

/// Every create takes two seconds, four times the lease's time to live: two workers on one
/// database still never run a job twice, because the holder's heartbeat keeps its lease.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_heartbeat_keeps_a_slow_jobs_lease_postgres() {
    let t = TestDb::postgres().await;
    let stack = stack_without_worker(&t).await;
    assert_eq!(stack.connect("shop-a").await.0, 200);
    bill(&stack, "shop-a", "i", 3).await;
    stack.sandbox.set_faults(
        None,
        FaultConfig::none().with_rule(
            FaultRule::route("POST", "/pedidos/vendas")
                .exact()
                .latency(Duration::from_millis(2000), Duration::from_millis(2000)),
        ),
    );
    let settings = SyncSettings {
        lease_ttl: Duration::from_millis(500),
        ..SyncSettings::default()
    };
    let mut tasks = Vec::new();
    for _ in 0..2 {
        let (w, db) = worker(&stack, &t.url, settings.clone()).await;
        let log = t.db.clone();
        tasks.push(tokio::spawn(async move {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(40);
            while tokio::time::Instant::now() < deadline {
                w.run_until_idle(Duration::from_secs(20)).await.unwrap();
                if count_of(&log, "SituacaoChanged", None).await >= 3 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            db.close().await;
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(count_of(&t.db, "SituacaoChanged", None).await, 3);
    assert_eq!(
        calls(&stack, "POST", "/pedidos/vendas"),
        3,
        "one create each"
    );
    assert_eq!(
        calls(&stack, "GET", "/pedidos/vendas"),
        0,
        "no job ran twice (a second run looks the order up first)"
    );
    assert_eq!(stack.sandbox.pedidos("shop-a").len(), 3);
    stack.stop().await;
}

/// A renewal's answer is lost after Bling rotated the refresh token; the next renewal is
/// refused with `invalid_grant`. That is recorded as a lost rotation, not as the shop revoking
/// access; the tenant needs a reconnect all the same, and reconnecting restores it.
async fn a_lost_rotation_is_not_a_revocation(t: TestDb) {
    let stack = Stack::start(
        &t.url,
        |_| {},
        |a| a.renewal_interval = Duration::from_secs(3600),
    )
    .await;
    assert_eq!(stack.connect("shop-a").await.0, 200);
    let shop = aggregates::ids::TenantId::parse("shop-a").unwrap();
    let auth = stack.server.auth.as_ref().unwrap();
    let token = auth.tokens.access_token(&shop).await.unwrap();
    stack.sandbox.set_faults(
        None,
        FaultConfig::none()
            .with_rule(FaultRule::route("POST", "/oauth/token").apply_then_drop_rate(1.0)),
    );
    let lost = auth
        .tokens
        .renew_after_unauthorized(&shop, token.expose())
        .await;
    assert!(
        matches!(
            lost,
            Err(bling_ledger::oauth::tokens::TokenError::Transient(_))
        ),
        "{lost:?}"
    );
    stack.sandbox.set_faults(None, FaultConfig::none());
    let refused = auth
        .tokens
        .renew_after_unauthorized(&shop, token.expose())
        .await;
    assert_eq!(
        refused,
        Err(bling_ledger::oauth::tokens::TokenError::Revoked)
    );
    let connection = events(&t.db)
        .await
        .into_iter()
        .filter(|e| e.aggregate_type == "BlingConnection")
        .map(|e| e.event_type)
        .collect::<Vec<_>>();
    assert!(
        connection.contains(&"RotationLost".to_string()),
        "{connection:?}"
    );
    assert!(
        !connection.contains(&"AuthorizationRevoked".to_string()),
        "{connection:?}"
    );
    let lost_event = events(&t.db)
        .await
        .into_iter()
        .find(|e| e.event_type == "RotationLost")
        .unwrap();
    assert!(lost_event.payload["RotationLost"]["reason"]
        .as_str()
        .unwrap()
        .contains("the renewal's answer was lost"));
    // Work parks until a reconnection, which restores the tenant.
    assert_eq!(
        auth.tokens.access_token(&shop).await,
        Err(bling_ledger::oauth::tokens::TokenError::Revoked)
    );
    assert_eq!(stack.connect("shop-a").await.0, 200);
    assert!(auth.tokens.access_token(&shop).await.is_ok());
    stack.stop().await;
}
both_backends!(lost_rotation, a_lost_rotation_is_not_a_revocation);

/// Six shops' tokens fall due at once with room for four renewals in the budget: the four
/// with the earliest deadlines are renewed (not the first four by name), the wait is recorded
/// once, and another pass records nothing more.
async fn renewals_go_earliest_deadline_first(t: TestDb) {
    let shops = ["shop-a", "shop-b", "shop-c", "shop-d", "shop-e", "shop-f"];
    let stack = Stack::start(
        &t.url,
        |_| {},
        |a| {
            // 5 a minute: a reserve of 1 for code exchanges, 4 for renewals.
            a.token_calls_per_minute = 5;
            a.renewal_interval = Duration::from_secs(3600);
        },
    )
    .await;
    let auth = stack.server.auth.as_ref().unwrap();
    for (i, shop) in shops.iter().enumerate() {
        assert_eq!(stack.connect(shop).await.0, 200);
        // Each shop's token is used (so it is renewed ahead of its expiry).
        let tenant = aggregates::ids::TenantId::parse(shop).unwrap();
        auth.tokens.access_token(&tenant).await.unwrap();
        if i == 3 {
            // Connecting took the budget's minute; start the renewals with a fresh window.
            forget_token_calls(&t.db).await;
        }
    }
    forget_token_calls(&t.db).await;
    // All due now; deadlines in reverse name order: shop-f's token lapses first.
    let now = bling_ledger::store::now_ms();
    for (i, shop) in shops.iter().enumerate() {
        let deadline = now + 60_000 * (shops.len() - i) as i64;
        exec(
            &t.db,
            &format!(
                "UPDATE bling_credentials SET renew_at_ms = {now}, renew_deadline_ms = {deadline},
                 access_expires_at_ms = {deadline} WHERE tenant = '{shop}'"
            ),
        )
        .await;
    }
    let before = refreshed(&t.db).await;
    let (renewed, waiting) = auth.tokens.renew_due().await;
    assert_eq!(renewed, 4);
    assert!(waiting.is_some(), "the pass stopped for the budget");
    let renewed_now: HashSet<String> = refreshed(&t.db)
        .await
        .difference(&before)
        .cloned()
        .collect();
    let earliest: HashSet<String> = ["shop-c", "shop-d", "shop-e", "shop-f"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(renewed_now, earliest);
    assert_eq!(count_of(&t.db, "RefreshDeferred", None).await, 1);
    // Another pass while the budget is still spent: nothing renewed, nothing more recorded.
    let (renewed, _) = auth.tokens.renew_due().await;
    assert_eq!(renewed, 0);
    assert_eq!(count_of(&t.db, "RefreshDeferred", None).await, 1);
    let demand = auth.tokens.renewal_demand().await.unwrap();
    assert_eq!(demand.due_now, 2);
    assert_eq!(demand.renewals_per_hour, 4 * 60);
    stack.stop().await;
}
both_backends!(edf_renewals, renewals_go_earliest_deadline_first);

/// The tenants with a `TokenRefreshed` event.
async fn refreshed(db: &Db) -> HashSet<String> {
    events(db)
        .await
        .into_iter()
        .filter(|e| e.event_type == "TokenRefreshed")
        .map(|e| e.aggregate_id)
        .collect()
}

async fn forget_token_calls(db: &Db) {
    exec(db, "DELETE FROM token_endpoint_calls").await;
}

/// Runs a statement directly against the database (the test reaching under the ledger).
async fn exec(db: &Db, statement: &str) {
    match db {
        Db::Postgres(pool) => {
            sqlx::query(statement).execute(pool).await.unwrap();
        }
        Db::Sqlite(pool) => {
            sqlx::query(statement).execute(pool).await.unwrap();
        }
    }
}

/// A create reaches Bling but its answer is lost; the invoice is cancelled before the job runs
/// again. The next run looks the order up by our key and cancels it in Bling: no open order is
/// left for a cancelled invoice, and no second order is created.
async fn a_cancel_after_a_lost_create_cancels_the_order(t: TestDb) {
    let stack = stack_without_worker(&t).await;
    assert_eq!(stack.connect("shop-a").await.0, 200);
    bill(&stack, "shop-a", "i", 1).await;
    stack.sandbox.set_faults(
        None,
        FaultConfig::none().with_rule(
            FaultRule::route("POST", "/pedidos/vendas")
                .exact()
                .apply_then_drop_rate(1.0),
        ),
    );
    let settings = SyncSettings {
        retry_schedule: vec![Duration::from_secs(1)],
        retry_jitter: 0.0,
        ..SyncSettings::default()
    };
    let (w, db) = worker(&stack, &t.url, settings).await;
    w.run_until_idle(Duration::from_secs(10)).await.unwrap();
    assert_eq!(
        stack.sandbox.pedidos("shop-a").len(),
        1,
        "the create was applied"
    );
    assert_eq!(
        count_of(&t.db, "SalesOrderCreated", None).await,
        0,
        "its answer was lost"
    );

    stack.sandbox.set_faults(None, FaultConfig::none());
    let (s, b) = call(
        &stack,
        "POST",
        "/v1/tenants/shop-a/invoices/i0/cancel",
        Some(&json!({"reason": "desistiu"})),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert!(
        eventually(20, || async {
            w.run_until_idle(Duration::from_secs(5)).await.unwrap();
            let pedidos = stack.sandbox.pedidos("shop-a");
            pedidos.len() == 1 && pedidos[0]["situacao"]["id"] == 12
        })
        .await,
        "the order is cancelled in Bling: {:?}",
        stack.sandbox.pedidos("shop-a")
    );
    assert_eq!(
        calls(&stack, "POST", "/pedidos/vendas"),
        1,
        "no second create"
    );
    db.close().await;
    stack.stop().await;
}
both_backends!(
    cancel_after_lost_create,
    a_cancel_after_a_lost_create_cancels_the_order
);

/// Bling blocks an IP for 10 minutes once it sends 600 requests in 10 s, every shop behind it
/// at once: twenty shops draining at their 3 req/s each would get there. Scaled down here: the
/// sandbox blocks at 24 requests in 3 s, and five shops, each allowed Bling's 3 req/s, want
/// 15 a second.
fn ip_limited(s: &mut bling_ledger::sandbox::SandboxConfig) {
    s.ip_blocks = bling_ledger::sandbox::IpBlockConfig {
        errors: 0,
        requests: 24,
        window: IP_WINDOW,
        block: Duration::from_secs(60),
    };
}

const IP_WINDOW: Duration = Duration::from_secs(3);
const IP_SHOPS: [&str; 5] = ["shop-a", "shop-b", "shop-c", "shop-d", "shop-e"];

/// A ledger sending at most `egress_per_sec` to the IP-limited sandbox (0: no such budget);
/// connects the five shops (their OAuth round trips spread out, as shops connect over days),
/// lets the IP's window clear, then bills two invoices in each.
async fn ip_fleet(t: &TestDb, egress_per_sec: u32) -> Stack {
    let stack = Stack::start_with(
        &t.url,
        ip_limited,
        |_| {},
        move |sync| {
            sync.client.egress_per_sec = egress_per_sec;
        },
    )
    .await;
    for shop in IP_SHOPS {
        assert_eq!(stack.connect(shop).await.0, 200);
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
    tokio::time::sleep(IP_WINDOW).await;
    for shop in IP_SHOPS {
        bill(&stack, shop, "i", 2).await;
    }
    stack
}

/// Calls the sandbox refused because the IP was blocked (no account: refused before any).
fn ip_blocked(stack: &Stack) -> usize {
    stack
        .sandbox
        .call_log()
        .iter()
        .filter(|c| c.status == Some(429) && c.account.is_none())
        .count()
}

/// With the process's egress budget at 5 req/s (at most 5 + 15 = 20 calls leave in any 3 s),
/// the five shops' ten invoices all reach Bling and the IP is never blocked: the fleet is
/// paced as a whole, each shop still within its own 3 req/s.
async fn the_fleet_stays_under_the_ip_limit(t: TestDb) {
    let stack = ip_fleet(&t, 5).await;
    assert!(
        eventually(40, || async {
            count_of(&t.db, "SituacaoChanged", None).await == 2 * IP_SHOPS.len()
        })
        .await,
        "every invoice reaches Bling; blocked calls: {}",
        ip_blocked(&stack)
    );
    assert_eq!(ip_blocked(&stack), 0, "the IP was never blocked");
    // And the operator sees the fleet running at the IP's speed.
    let metrics = scrape(&stack).await;
    assert_eq!(metrics["bling_ledger_bling_egress_limit"], 5.0);
    assert!(metrics["bling_ledger_bling_egress_delayed_calls_total"] > 0.0);
    assert!(metrics["bling_ledger_bling_egress_wait_seconds_total"] > 0.0);
    // The sandbox's own view: no 3 s window held more than it allows (the budget lets 20
    // leave; arrivals may bunch a little).
    let times: Vec<_> = stack
        .sandbox
        .call_log()
        .iter()
        .filter(|c| c.path.starts_with("/Api/v3/"))
        .map(|c| c.at)
        .collect();
    assert!(
        times.len() > 24,
        "more calls than one window allows: {}",
        times.len()
    );
    let window = chrono::Duration::from_std(IP_WINDOW).unwrap();
    let busiest = times
        .iter()
        .map(|start| {
            times
                .iter()
                .filter(|t| **t >= *start && **t < *start + window)
                .count()
        })
        .max()
        .unwrap_or(0);
    assert!(busiest <= 24, "busiest 3 s window: {busiest} API calls");
    stack.stop().await;
}
both_backends!(ip_limit, the_fleet_stays_under_the_ip_limit);

/// The same fleet without the egress budget (`BLING_LEDGER_EGRESS_PER_SEC=0`): the sandbox
/// blocks the IP within seconds. What the budget prevents is real.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_egress_budget_the_ip_is_blocked() {
    let t = TestDb::sqlite().await;
    let stack = ip_fleet(&t, 0).await;
    assert!(
        eventually(20, || async { ip_blocked(&stack) > 0 }).await,
        "five shops at 3 req/s each exceed 24 requests in 3 s"
    );
    stack.stop().await;
}
