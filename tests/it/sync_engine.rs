//! The sync engine against the sandbox over real HTTP: contatos and pedidos made to match,
//! failures classified, revocation parks and reconnection replays, never a duplicate.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use crate::support::*;
use bling_ledger::bling::client::{BlingClient, ClientConfig};
use bling_ledger::ledger::Ledger;
use bling_ledger::oauth::BlingAuth;
use bling_ledger::sandbox::{FaultConfig, FaultRule};
use bling_ledger::store::log::{LogFilter, RecordedEvent};
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

async fn invoice_events(db: &Db, tenant: &str, invoice: &str) -> Vec<RecordedEvent> {
    settle(db).await;
    let filter = LogFilter {
        aggregate_type: Some("Invoice".into()),
        aggregate_id: Some(format!("{tenant}/{invoice}")),
        ..Default::default()
    };
    bling_ledger::store::log::read_from(db, 0, 10_000, &filter)
        .await
        .unwrap()
}

async fn events_of_type(db: &Db, event_type: &str) -> Vec<RecordedEvent> {
    settle(db).await;
    let mut out = Vec::new();
    let mut after = 0;
    loop {
        let page = bling_ledger::store::log::read_from(db, after, 5_000, &LogFilter::default())
            .await
            .unwrap();
        let Some(last) = page.last() else { return out };
        after = last.position;
        out.extend(page.into_iter().filter(|e| e.event_type == event_type));
    }
}

/// A fast sandbox and client: the engine's logic, not Bling's 3 req/s, is under test here.
async fn fast_stack(t: &TestDb) -> Stack {
    fast_stack_with(t, |_| {}, |_| {}).await
}

/// [`fast_stack`], with the sandbox's and the worker's settings adjusted on top.
async fn fast_stack_with(
    t: &TestDb,
    sandbox: impl FnOnce(&mut bling_ledger::sandbox::SandboxConfig) + Send + 'static,
    sync: impl FnOnce(&mut bling_ledger::server::SyncConfig) + Send + 'static,
) -> Stack {
    Stack::start_with(
        &t.url,
        move |s| {
            s.rate_limit_per_sec = 0;
            sandbox(s);
        },
        |_| {},
        move |c| {
            c.client.rate_limit_per_sec = 0;
            sync(c);
        },
    )
    .await
}

async fn all_synced(stack: &Stack, db: &Db, expected: usize) -> bool {
    let _ = stack;
    synced(db, expected).await
}

/// Whether `expected` invoices have had their situação changed.
async fn synced(db: &Db, expected: usize) -> bool {
    let changed = events_of_type(db, "SituacaoChanged").await;
    let distinct: HashSet<_> = changed.iter().map(|e| e.aggregate_id.clone()).collect();
    distinct.len() >= expected
}

/// Connects shop-a, registers customer c1 (Maria) and bills invoice i1 (or `body`) for it.
async fn connect_and_bill(stack: &Stack, body: Option<Value>) {
    assert_eq!(stack.connect("shop-a").await.0, 200);
    register_and_bill(stack, body).await;
}

/// Registers customer c1 (Maria) of shop-a and bills invoice i1 (or `body`) for it.
async fn register_and_bill(stack: &Stack, body: Option<Value>) {
    let (s, b) = call(
        stack,
        "PUT",
        "/v1/tenants/shop-a/customers/c1",
        Some(&customer("Maria", 1)),
    )
    .await;
    assert_eq!(s, 201, "{b}");
    let body = body.unwrap_or_else(|| invoice("c1", 1));
    let (s, b) = call(
        stack,
        "POST",
        "/v1/tenants/shop-a/invoices/i1/bill",
        Some(&body),
    )
    .await;
    assert_eq!(s, 201, "{b}");
}

/// The cause of invoice `invoice`'s first `SyncFailed`.
async fn first_failure_cause(db: &Db, invoice: &str) -> Value {
    invoice_events(db, "shop-a", invoice)
        .await
        .into_iter()
        .find(|e| e.event_type == "SyncFailed")
        .map(|e| e.payload["SyncFailed"]["cause"].clone())
        .expect("a SyncFailed")
}

/// Waits until invoice `invoice` of shop-a has at least `count` events of `event_type`.
async fn wait_for(db: &Db, invoice: &str, event_type: &str, count: usize) -> bool {
    eventually(30, || async {
        invoice_events(db, "shop-a", invoice)
            .await
            .iter()
            .filter(|e| e.event_type == event_type)
            .count()
            >= count
    })
    .await
}

async fn two_hundred_invoices_end_to_end(t: TestDb) {
    let stack = fast_stack(&t).await;
    assert_eq!(stack.connect("shop-a").await.0, 200);
    for c in 0..10 {
        let (s, b) = call(
            &stack,
            "PUT",
            &format!("/v1/tenants/shop-a/customers/c{c}"),
            Some(&customer(&format!("Cliente {c}"), c)),
        )
        .await;
        assert_eq!(s, 201, "{b}");
    }
    for i in 0..200 {
        let (s, b) = call(
            &stack,
            "POST",
            &format!("/v1/tenants/shop-a/invoices/inv-{i}/bill"),
            Some(&invoice(&format!("c{}", i % 10), i)),
        )
        .await;
        assert_eq!(s, 201, "{b}");
    }
    assert!(
        eventually(120, || all_synced(&stack, &t.db, 200)).await,
        "all 200 invoices synced"
    );

    let pedidos = stack.sandbox.pedidos("shop-a");
    assert_eq!(pedidos.len(), 200, "exactly one order per invoice");
    let keys: HashSet<_> = pedidos
        .iter()
        .map(|p| p["numeroLoja"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(keys.len(), 200);
    let atendido = 9; // the sandbox account's default id for "Atendido"
    for p in &pedidos {
        assert_eq!(p["situacao"]["id"], atendido, "{p}");
        assert_eq!(p["total"], 170.0, "{p}");
        assert_eq!(p["itens"].as_array().unwrap().len(), 2);
        assert_eq!(p["itens"][0]["codigo"], "BANHO-P");
        assert_eq!(p["itens"][0]["valor"], 45.0);
        assert_eq!(p["parcelas"].as_array().unwrap().len(), 2);
    }
    assert_eq!(stack.sandbox.contatos("shop-a").len(), 10);
    // Calls: one lookup and one create per customer, a create and a situação change per
    // invoice, and the situações discovered once.
    assert_eq!(calls(&stack, "GET", "/contatos?"), 10);
    assert_eq!(calls(&stack, "POST", "/contatos"), 10);
    assert_eq!(calls(&stack, "POST", "/pedidos/vendas"), 200);
    assert_eq!(calls(&stack, "PATCH", "/pedidos/vendas/"), 200);
    assert_eq!(
        calls(&stack, "GET", "/pedidos/vendas"),
        0,
        "no lookups were needed"
    );
    assert_eq!(calls(&stack, "PUT", "/"), 0);
    let events = invoice_events(&t.db, "shop-a", "inv-7").await;
    let types: Vec<_> = events.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(
        types,
        ["InvoiceBilled", "SalesOrderCreated", "SituacaoChanged"]
    );
    assert_eq!(events[1].metadata["actor"], "worker");
    assert_eq!(
        events[1].payload["SalesOrderCreated"]["calls"][0]["status"],
        201
    );
    stack.stop().await;
}
both_backends!(end_to_end, two_hundred_invoices_end_to_end);

async fn updates_and_cancellations_reach_bling(t: TestDb) {
    let stack = fast_stack(&t).await;
    connect_and_bill(&stack, None).await;
    call(
        &stack,
        "POST",
        "/v1/tenants/shop-a/invoices/i2/bill",
        Some(&invoice("c1", 2)),
    )
    .await;
    assert!(eventually(20, || all_synced(&stack, &t.db, 2)).await);

    let mut changed = invoice("c1", 1);
    changed["items"][1]["quantity"] = json!(2);
    changed["total"] = json!(26000);
    changed["installments"][1]["amount"] = json!(18000);
    let (s, b) = call(
        &stack,
        "PUT",
        "/v1/tenants/shop-a/invoices/i1",
        Some(&changed),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    let (s, _) = call(
        &stack,
        "POST",
        "/v1/tenants/shop-a/invoices/i2/cancel",
        Some(&json!({"reason": "desistiu"})),
    )
    .await;
    assert_eq!(s, 200);
    let mut renamed = customer("Maria da Silva", 1);
    renamed["address"]["number"] = json!("43");
    call(
        &stack,
        "PUT",
        "/v1/tenants/shop-a/customers/c1",
        Some(&renamed),
    )
    .await;

    let db = t.db.clone();
    assert!(
        eventually(20, || async {
            let i1 = invoice_events(&db, "shop-a", "i1").await;
            let i2 = invoice_events(&db, "shop-a", "i2").await;
            i1.iter().any(|e| e.event_type == "SalesOrderUpdated")
                && i2
                    .iter()
                    .filter(|e| e.event_type == "SituacaoChanged")
                    .count()
                    == 2
        })
        .await
    );
    assert!(
        eventually(20, || async {
            events_of_type(&db, "ContactUpdated").await.len() == 1
        })
        .await
    );
    let pedidos = stack.sandbox.pedidos("shop-a");
    let by_key: HashMap<_, _> = pedidos
        .iter()
        .map(|p| (p["numeroLoja"].as_str().unwrap().to_string(), p.clone()))
        .collect();
    assert_eq!(by_key["i1"]["total"], 260.0);
    assert_eq!(by_key["i2"]["situacao"]["id"], 12, "cancelled in Bling");
    let contato = &stack.sandbox.contatos("shop-a")[0];
    assert_eq!(contato["nome"], "Maria da Silva");
    assert_eq!(contato["endereco"]["geral"]["numero"], "43");
    stack.stop().await;
}
both_backends!(
    updates_and_cancellations,
    updates_and_cancellations_reach_bling
);

async fn a_divergent_record_fails_then_heals(t: TestDb) {
    let stack = fast_stack(&t).await;
    assert_eq!(stack.connect("shop-a").await.0, 200);
    // Our validation passes (a well-formed CEP), Bling's does not (a Rio CEP in São Paulo).
    let mut wrong = customer("Joana", 3);
    wrong["address"]["cep"] = json!("20040-002");
    assert_eq!(
        call(
            &stack,
            "PUT",
            "/v1/tenants/shop-a/customers/c3",
            Some(&wrong)
        )
        .await
        .0,
        201
    );
    // And one with no address at all: refused by our own readiness check, no Bling call.
    let mut bare = customer("Pedro", 4);
    bare.as_object_mut().unwrap().remove("address");
    assert_eq!(
        call(
            &stack,
            "PUT",
            "/v1/tenants/shop-a/customers/c4",
            Some(&bare)
        )
        .await
        .0,
        201
    );
    call(
        &stack,
        "POST",
        "/v1/tenants/shop-a/invoices/i3/bill",
        Some(&invoice("c3", 3)),
    )
    .await;
    call(
        &stack,
        "POST",
        "/v1/tenants/shop-a/invoices/i4/bill",
        Some(&invoice("c4", 4)),
    )
    .await;

    let db = t.db.clone();
    let failed = |inv: &'static str| {
        let db = db.clone();
        async move {
            invoice_events(&db, "shop-a", inv)
                .await
                .iter()
                .any(|e| e.event_type == "SyncFailed")
        }
    };
    assert!(eventually(20, || failed("i3")).await);
    assert!(eventually(20, || failed("i4")).await);
    let i3 = invoice_events(&t.db, "shop-a", "i3").await;
    let cause = &i3
        .iter()
        .find(|e| e.event_type == "SyncFailed")
        .unwrap()
        .payload["SyncFailed"]["cause"];
    assert_eq!(cause["kind"], "divergent_customer_record");
    // Bling names the leaf element, not a dotted path ([OAS], [FM]).
    assert_eq!(cause["bling_fields"][0]["element"], "cep");
    let i4 = invoice_events(&t.db, "shop-a", "i4").await;
    let cause = &i4
        .iter()
        .find(|e| e.event_type == "SyncFailed")
        .unwrap()
        .payload["SyncFailed"]["cause"];
    assert_eq!(cause["kind"], "divergent_customer_record");
    assert_eq!(cause["problems"][0]["field"], "address");
    assert_eq!(stack.sandbox.contatos("shop-a").len(), 0);
    assert_eq!(calls(&stack, "POST", "/pedidos/vendas"), 0);

    // The shop fixes both records: the invoices go through by themselves.
    let mut fixed = customer("Joana", 3);
    fixed["address"]["cep"] = json!("01001-000");
    assert_eq!(
        call(
            &stack,
            "PUT",
            "/v1/tenants/shop-a/customers/c3",
            Some(&fixed)
        )
        .await
        .0,
        200
    );
    assert_eq!(
        call(
            &stack,
            "PUT",
            "/v1/tenants/shop-a/customers/c4",
            Some(&customer("Pedro", 4))
        )
        .await
        .0,
        200
    );
    assert!(
        eventually(20, || all_synced(&stack, &t.db, 2)).await,
        "healed after the fix"
    );
    assert_eq!(stack.sandbox.pedidos("shop-a").len(), 2);
    stack.stop().await;
}
both_backends!(divergent_record, a_divergent_record_fails_then_heals);

async fn revocation_parks_and_reconnection_replays(t: TestDb) {
    // Slow enough that the revocation lands mid-run.
    let stack = Stack::start_with(
        &t.url,
        |s| s.rate_limit_per_sec = 0,
        |_| {},
        |sync| sync.client.rate_limit_per_sec = 20,
    )
    .await;
    assert_eq!(stack.connect("shop-a").await.0, 200);
    call(
        &stack,
        "PUT",
        "/v1/tenants/shop-a/customers/c1",
        Some(&customer("Maria", 1)),
    )
    .await;
    for i in 0..40 {
        call(
            &stack,
            "POST",
            &format!("/v1/tenants/shop-a/invoices/inv-{i:02}/bill"),
            Some(&invoice("c1", i)),
        )
        .await;
    }
    let db = t.db.clone();
    assert!(
        eventually(20, || async {
            events_of_type(&db, "SalesOrderCreated").await.len() >= 5
        })
        .await
    );
    // The shop changes its Bling password.
    stack.sandbox.revoke_account("shop-a");
    assert!(
        eventually(20, || async {
            !events_of_type(&db, "AuthorizationRevoked").await.is_empty()
        })
        .await
    );
    // Everything left parks, and no call reaches Bling while revoked.
    assert!(
        eventually(20, || async {
            let parked = events_of_type(&db, "SyncParked").await.len();
            let created = events_of_type(&db, "SalesOrderCreated").await.len();
            parked > 0 && parked + created >= 40
        })
        .await
    );
    let log_before = stack.sandbox.call_log().len();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        stack.sandbox.call_log().len(),
        log_before,
        "zero calls while revoked"
    );
    let status: Value = call(&stack, "GET", "/v1/tenants/shop-a/connection", None)
        .await
        .1;
    assert_eq!(status["state"], "revoked");

    // Support reconnects; the parked invoices replay by themselves, exactly once, in order.
    assert_eq!(stack.connect("shop-a").await.0, 200);
    assert!(eventually(60, || all_synced(&stack, &t.db, 40)).await);
    let pedidos = stack.sandbox.pedidos("shop-a");
    assert_eq!(pedidos.len(), 40, "no duplicate after the replay");
    let mut by_id: Vec<_> = pedidos
        .iter()
        .map(|p| {
            (
                p["id"].as_i64().unwrap(),
                p["numeroLoja"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    by_id.sort();
    let keys: Vec<_> = by_id.into_iter().map(|(_, k)| k).collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted, "orders were created in billing order");
    let resumed = events_of_type(&t.db, "SyncResumed").await;
    assert!(!resumed.is_empty());
    assert_eq!(
        resumed[0].payload["SyncResumed"]["reason"],
        "reconnected to Bling"
    );
    stack.stop().await;
}
both_backends!(revocation, revocation_parks_and_reconnection_replays);

/// Bling applies creates and the answer is lost; a worker is killed mid-job again and again.
/// Still one contato per document and one pedido per invoice.
async fn lost_answers_and_killed_workers_never_duplicate(t: TestDb) {
    let stack = Stack::start_with(
        &t.url,
        |s| {
            s.rate_limit_per_sec = 0;
            s.seed = 42;
        },
        |_| {},
        |sync| {
            sync.run_worker = false;
            sync.client.rate_limit_per_sec = 0;
            sync.settings.lease_ttl = Duration::from_millis(300);
        },
    )
    .await;
    // Only the workers started below (and killed) run: the server runs none of its own.
    assert!(
        stack.server.sync.is_none(),
        "run_worker = false: no server worker"
    );
    assert_eq!(stack.connect("shop-a").await.0, 200);
    stack.sandbox.set_faults(
        None,
        FaultConfig::none()
            .with_rule(
                FaultRule::route("POST", "/pedidos/vendas")
                    .exact()
                    .apply_then_drop_rate(0.3),
            )
            .with_rule(
                FaultRule::route("POST", "/contatos")
                    .exact()
                    .apply_then_drop_rate(0.5),
            )
            .with_rule(FaultRule::any().latency(Duration::ZERO, Duration::from_millis(5))),
    );
    for c in 0..5 {
        call(
            &stack,
            "PUT",
            &format!("/v1/tenants/shop-a/customers/c{c}"),
            Some(&customer("Cliente", c)),
        )
        .await;
    }
    for i in 0..40 {
        call(
            &stack,
            "POST",
            &format!("/v1/tenants/shop-a/invoices/inv-{i}/bill"),
            Some(&invoice(&format!("c{}", i % 5), i)),
        )
        .await;
    }
    let auth: &Arc<BlingAuth> = stack.server.auth.as_ref().unwrap();
    let worker = |db: Db| {
        let tokens: Arc<dyn bling_ledger::bling::AccessTokens> = auth.tokens.clone();
        let client = BlingClient::new(
            &stack.sandbox.base_url(),
            tokens,
            ClientConfig {
                rate_limit_per_sec: 0,
                ..Default::default()
            },
        )
        .unwrap();
        SyncWorker::new(
            db.clone(),
            Ledger::new(db),
            client,
            SyncSettings {
                retry_schedule: vec![Duration::from_millis(10)],
                lease_ttl: Duration::from_millis(300),
                ..SyncSettings::default()
            },
        )
    };
    // Kill workers at random points, over and over: at least 25 times, and until some of them
    // were killed after Bling applied a write whose answer was dropped (on a busy machine a
    // short-lived worker may not reach Bling at all; a dead worker's lease also blocks the
    // next ones for its 300 ms).
    let faulted = |stack: &Stack| {
        stack
            .sandbox
            .call_log()
            .iter()
            .filter(|c| c.fault.is_some())
            .count()
    };
    let mut round = 0u64;
    while round < 25 || (faulted(&stack) == 0 && round < 200) {
        round += 1;
        // Each worker has its own connections, as a separate process would: killing it
        // closes them, and the database rolls back whatever it had open.
        let own = Db::connect(&t.url, 2).await.unwrap();
        let w = worker(own.clone());
        let task = tokio::spawn(async move { w.run_until_idle(Duration::from_secs(5)).await });
        tokio::time::sleep(Duration::from_millis(15 + (round * 37) % 60)).await;
        task.abort();
        let _ = task.await;
        own.close().await;
    }
    // Then let one finish (after dead workers' leases expire).
    stack.sandbox.set_faults(None, FaultConfig::none());
    tokio::time::sleep(Duration::from_millis(400)).await;
    let last = worker(t.db.clone());
    let db = t.db.clone();
    assert!(
        eventually(60, || async {
            let _ = last.run_until_idle(Duration::from_secs(5)).await;
            all_synced(&stack, &db, 40).await
        })
        .await
    );
    let pedidos = stack.sandbox.pedidos("shop-a");
    let keys: HashSet<_> = pedidos
        .iter()
        .map(|p| p["numeroLoja"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        (pedidos.len(), keys.len()),
        (40, 40),
        "one pedido per invoice"
    );
    let contatos = stack.sandbox.contatos("shop-a");
    let docs: HashSet<_> = contatos
        .iter()
        .map(|c| c["numeroDocumento"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        (contatos.len(), docs.len()),
        (5, 5),
        "one contato per document"
    );
    let dropped = stack
        .sandbox
        .call_log()
        .iter()
        .filter(|c| c.fault.is_some())
        .count();
    assert!(dropped > 0, "faults were injected");
    stack.stop().await;
}
both_backends!(
    no_duplicates,
    lost_answers_and_killed_workers_never_duplicate
);

/// Two workers with their own pools on one database: no invoice handled twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_workers_share_the_work_postgres() {
    let t = TestDb::postgres().await;
    let stack = Stack::start_with(
        &t.url,
        |s| s.rate_limit_per_sec = 0,
        |_| {},
        |sync| {
            sync.run_worker = false;
            sync.client.rate_limit_per_sec = 0;
        },
    )
    .await;
    // Exactly the two workers below share the work: the server runs none of its own.
    assert!(
        stack.server.sync.is_none(),
        "run_worker = false: no server worker"
    );
    for shop in ["shop-a", "shop-b", "shop-c"] {
        assert_eq!(stack.connect(shop).await.0, 200);
        call(
            &stack,
            "PUT",
            &format!("/v1/tenants/{shop}/customers/c1"),
            Some(&customer("Maria", 1)),
        )
        .await;
        for i in 0..20 {
            call(
                &stack,
                "POST",
                &format!("/v1/tenants/{shop}/invoices/inv-{i}/bill"),
                Some(&invoice("c1", i)),
            )
            .await;
        }
    }
    let auth = stack.server.auth.as_ref().unwrap();
    let mut tasks = Vec::new();
    for _ in 0..2 {
        let db = Db::connect(&t.url, 4).await.unwrap();
        let tokens: Arc<dyn bling_ledger::bling::AccessTokens> = auth.tokens.clone();
        let client = BlingClient::new(
            &stack.sandbox.base_url(),
            tokens,
            ClientConfig {
                rate_limit_per_sec: 0,
                ..Default::default()
            },
        )
        .unwrap();
        let worker = SyncWorker::new(db.clone(), Ledger::new(db), client, SyncSettings::default());
        let log = t.db.clone();
        // No server worker finishes what these two leave: each runs until every invoice is
        // synced. A round can end early, "idle", while work remains: events not yet readable
        // (PostgreSQL numbers them once the cluster's older transactions finish) or a retry
        // due later.
        tasks.push(tokio::spawn(async move {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
            loop {
                worker.run_until_idle(Duration::from_secs(60)).await?;
                if synced(&log, 60).await || tokio::time::Instant::now() > deadline {
                    return Ok::<(), bling_ledger::store::StoreError>(());
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }));
    }
    for task in tasks {
        task.await.unwrap().unwrap();
    }
    assert!(eventually(30, || all_synced(&stack, &t.db, 60)).await);
    let created = events_of_type(&t.db, "SalesOrderCreated").await;
    let per_invoice: HashSet<_> = created.iter().map(|e| e.aggregate_id.clone()).collect();
    assert_eq!(
        (created.len(), per_invoice.len()),
        (60, 60),
        "each invoice handled once"
    );
    assert_eq!(calls(&stack, "POST", "/pedidos/vendas"), 60);
    stack.stop().await;
}

/// The shop's situação for "ready for NF-e" is a custom one the account does not have yet:
/// the invoice fails as an account set-up problem naming it; support creates it in Bling and
/// replays; the order moves to its (discovered, non-default) id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn support_replays_a_rejected_invoice() {
    let t = TestDb::sqlite().await;
    let stack = fast_stack_with(
        &t,
        |_| {},
        |sync| {
            sync.settings.situacao_billed = "Aguardando NF-e".into();
        },
    )
    .await;
    connect_and_bill(&stack, None).await;
    assert!(wait_for(&t.db, "i1", "SyncFailed", 1).await);
    let events = invoice_events(&t.db, "shop-a", "i1").await;
    let failed = events
        .iter()
        .find(|e| e.event_type == "SyncFailed")
        .unwrap();
    let cause = &failed.payload["SyncFailed"]["cause"];
    assert_eq!(cause["kind"], "account_setup");
    assert_eq!(cause["setting"], "situacao");
    assert!(
        cause["configure"]
            .as_str()
            .is_some_and(|c| c.contains("Aguardando NF-e") && c.contains("Atendido")),
        "says what to create and what the account has: {cause}"
    );
    assert!(
        failed.payload["SyncFailed"]["retry_at"].is_null(),
        "waits for support"
    );

    let custom = stack.sandbox.add_situacao("shop-a", "Aguardando NF-e");
    // Only support of the tenant may replay.
    let forbidden = stack
        .http
        .post(format!(
            "{}/v1/tenants/shop-a/replay",
            stack.server.base_url()
        ))
        .bearer_auth(INGEST_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(forbidden.status(), 403);
    let (s, b) = call(
        &stack,
        "POST",
        "/v1/tenants/shop-a/replay",
        Some(&json!({"invoice_id": "i1"})),
    )
    .await;
    assert_eq!(s, 202, "{b}");
    assert!(b["requeued"].as_u64().unwrap() >= 1);
    let (s, b) = call(
        &stack,
        "POST",
        "/v1/tenants/shop-a/replay",
        Some(&json!({"invoice_id": "nope"})),
    )
    .await;
    assert_eq!(
        (s, b["error"]["fields"][0]["field"].clone()),
        (404, json!("invoice_id"))
    );

    assert!(eventually(20, || all_synced(&stack, &t.db, 1)).await);
    let pedido = &stack.sandbox.pedidos("shop-a")[0];
    assert_eq!(pedido["situacao"]["id"], custom);
    let types: Vec<_> = invoice_events(&t.db, "shop-a", "i1")
        .await
        .into_iter()
        .map(|e| e.event_type)
        .collect();
    assert!(types.contains(&"SyncResumed".to_string()), "{types:?}");
    assert_eq!(
        stack.sandbox.pedidos("shop-a").len(),
        1,
        "the order created before the failure was kept"
    );
    stack.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Against Bling as the evidence shows it (docs/bling-api.md): discounts as percentages,
// contatos found among all of them, the duplicate-sale guard, per-account payment methods.

/// A deterministic generator, so a failing case can be replayed.
fn rng(seed: u64) -> impl FnMut(u64) -> u64 {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    move |below: u64| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state % below.max(1)
    }
}

/// Random invoices with random line discounts reach Bling with Bling's own total equal to ours
/// to the centavo (so no code 22), and parcelas that add up to it.
async fn discounts_reach_bling_to_the_centavo(t: TestDb) {
    let stack = fast_stack(&t).await;
    assert_eq!(stack.connect("shop-a").await.0, 200);
    call(
        &stack,
        "PUT",
        "/v1/tenants/shop-a/customers/c1",
        Some(&customer("Maria", 1)),
    )
    .await;
    let mut next = rng(20261201);
    let mut totals = HashMap::new();
    for i in 0..40 {
        let lines = 1 + next(4);
        let mut items = Vec::new();
        let mut total = 0u64;
        for n in 0..lines {
            let quantity = 1 + next(6);
            let unit_price = 1 + next(40_000);
            let gross = quantity * unit_price;
            let discount = match next(3) {
                0 => 0,
                1 => gross * (1 + next(30)) / 100,
                _ => next(gross),
            };
            total += gross - discount;
            items.push(
                json!({"sku": format!("S{n}"), "description": "Serviço", "quantity": quantity,
                "unit_price": unit_price, "discount": discount}),
            );
        }
        let first = total / 2;
        let body = json!({"customer_id": "c1", "number": format!("{i}"), "issue_date": "2026-11-25",
            "items": items, "total": total,
            "installments": [
                {"due_date": "2026-11-25", "amount": first, "payment_method": "pix"},
                {"due_date": "2026-12-25", "amount": total - first, "payment_method": "dinheiro"}]});
        let (s, b) = call(
            &stack,
            "POST",
            &format!("/v1/tenants/shop-a/invoices/d{i}/bill"),
            Some(&body),
        )
        .await;
        assert_eq!(s, 201, "{b}");
        totals.insert(format!("d{i}"), total);
    }
    assert!(
        eventually(60, || all_synced(&stack, &t.db, 40)).await,
        "all synced"
    );
    assert!(events_of_type(&t.db, "SyncFailed").await.is_empty());
    for p in stack.sandbox.pedidos("shop-a") {
        let ours = totals[p["numeroLoja"].as_str().unwrap()];
        let cents = |v: &Value| (v.as_f64().unwrap() * 100.0).round() as u64;
        assert_eq!(cents(&p["total"]), ours, "Bling's total is ours: {p}");
        let parcelas: u64 = p["parcelas"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| cents(&x["valor"]))
            .sum();
        assert_eq!(parcelas, ours, "{p}");
    }
    stack.stop().await;
}
both_backends!(discounts, discounts_reach_bling_to_the_centavo);

/// A contato created in Bling long ago (outside "Últimos incluídos", Bling's default
/// `criterio`) is found and linked, not created again; a second customer with the same CPF
/// links to it too.
async fn an_old_contato_is_found_and_shared(t: TestDb) {
    let stack = fast_stack(&t).await;
    assert_eq!(stack.connect("shop-a").await.0, 200);
    let tokens = stack
        .sandbox
        .grant_tokens(
            bling_ledger::sandbox::SandboxConfig::DEMO_CLIENT_ID,
            "shop-a",
        )
        .expect("tokens");
    let created: Value = stack
        .http
        .post(format!("{}/contatos", stack.sandbox.base_url()))
        .bearer_auth(&tokens.access_token)
        .header("enable-jwt", "1")
        .json(&json!({"nome": "Maria (cadastro antigo)", "tipo": "F", "numeroDocumento": cpf(1)}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let old_id = created["data"]["id"].as_i64().expect("created");
    assert!(stack.sandbox.age_contato("shop-a", old_id, 400));
    for c in ["c1", "c2"] {
        let (s, b) = call(
            &stack,
            "PUT",
            &format!("/v1/tenants/shop-a/customers/{c}"),
            Some(&customer("Maria", 1)),
        )
        .await;
        assert_eq!(s, 201, "{b}");
    }
    for (i, c) in [(1, "c1"), (2, "c2")] {
        call(
            &stack,
            "POST",
            &format!("/v1/tenants/shop-a/invoices/i{i}/bill"),
            Some(&invoice(c, i)),
        )
        .await;
    }
    assert!(eventually(30, || all_synced(&stack, &t.db, 2)).await);
    let contatos = stack.sandbox.contatos("shop-a");
    assert_eq!(contatos.len(), 1, "one contato per document: {contatos:?}");
    assert_eq!(contatos[0]["id"], old_id);
    for p in stack.sandbox.pedidos("shop-a") {
        assert_eq!(p["contato"]["id"], old_id);
    }
    assert_eq!(calls(&stack, "POST", "/contatos"), 1, "only the test's own");
    stack.stop().await;
}
both_backends!(old_contato, an_old_contato_is_found_and_shared);

/// A create whose answer is lost: the order is found by `numeroLoja` and adopted, read back,
/// and since it already holds the invoice no `PUT` is sent (Bling would refuse it, code 3);
/// the order reaches its situação and its NF-e.
async fn a_lost_create_is_adopted_and_reaches_its_nfe(t: TestDb) {
    let stack = fast_stack_with(
        &t,
        |_| {},
        |sync| {
            sync.settings.generate_nfe = bling_ledger::sync::NfeTenants::All;
        },
    )
    .await;
    assert_eq!(stack.connect("shop-a").await.0, 200);
    stack.sandbox.set_faults(
        Some("shop-a"),
        FaultConfig::none().with_rule(
            FaultRule::route("POST", "/pedidos/vendas")
                .exact()
                .apply_then_drop_rate(1.0),
        ),
    );
    register_and_bill(&stack, None).await;
    assert!(
        wait_for(&t.db, "i1", "NfeGenerated", 1).await,
        "the NF-e was generated"
    );
    let pedidos = stack.sandbox.pedidos("shop-a");
    assert_eq!(pedidos.len(), 1, "one order");
    assert_eq!(pedidos[0]["situacao"]["id"], 9, "Atendido");
    assert_ne!(pedidos[0]["notaFiscal"]["id"], 0);
    assert_eq!(stack.sandbox.nfes("shop-a").len(), 1);
    assert_eq!(calls(&stack, "PUT", "/pedidos/vendas"), 0, "no no-op PUT");
    let types: Vec<_> = invoice_events(&t.db, "shop-a", "i1")
        .await
        .into_iter()
        .map(|e| e.event_type)
        .collect();
    assert_eq!(
        types,
        [
            "InvoiceBilled",
            "SyncFailed",
            "SalesOrderCreated",
            "SalesOrderUpdated",
            "SituacaoChanged",
            "NfeGenerated"
        ],
        "adopted, read back as current, moved, NF-e"
    );
    let events = invoice_events(&t.db, "shop-a", "i1").await;
    let adopted = &events[2].payload["SalesOrderCreated"];
    assert_eq!(adopted["created"], false);
    let verified = &events[3].payload["SalesOrderUpdated"]["calls"];
    assert_eq!(verified.as_array().unwrap().len(), 1);
    assert_eq!(verified[0]["method"], "GET", "read back, not sent again");
    stack.stop().await;
}
both_backends!(lost_create, a_lost_create_is_adopted_and_reaches_its_nfe);

/// An order adopted after a lost create, whose invoice changed meanwhile, is brought to the
/// current content: Bling ends with the newer total, one order.
async fn an_adopted_order_gets_the_current_content(t: TestDb) {
    let stack = fast_stack(&t).await;
    assert_eq!(stack.connect("shop-a").await.0, 200);
    // The create is applied and its answer lost; the look-ups fail until the invoice changed.
    stack.sandbox.set_faults(
        Some("shop-a"),
        FaultConfig::none()
            .with_rule(
                FaultRule::route("POST", "/pedidos/vendas")
                    .exact()
                    .apply_then_drop_rate(1.0),
            )
            .with_rule(
                FaultRule::route("GET", "/pedidos/vendas")
                    .exact()
                    .drop_rate(1.0),
            ),
    );
    register_and_bill(&stack, None).await;
    assert!(wait_for(&t.db, "i1", "SyncFailed", 2).await);
    assert_eq!(
        stack.sandbox.pedidos("shop-a").len(),
        1,
        "the create landed"
    );
    let mut newer = invoice("c1", 1);
    newer["items"][1]["unit_price"] = json!(12000);
    newer["installments"][1]["amount"] = json!(12000);
    newer["total"] = json!(20000);
    let (s, b) = call(
        &stack,
        "PUT",
        "/v1/tenants/shop-a/invoices/i1",
        Some(&newer),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    stack
        .sandbox
        .set_faults(Some("shop-a"), FaultConfig::none());
    assert!(eventually(30, || all_synced(&stack, &t.db, 1)).await);
    assert!(wait_for(&t.db, "i1", "SalesOrderUpdated", 1).await);
    let pedidos = stack.sandbox.pedidos("shop-a");
    assert_eq!(pedidos.len(), 1, "one order");
    assert_eq!(
        pedidos[0]["total"], 200.0,
        "the current content: {}",
        pedidos[0]
    );
    assert_eq!(
        calls(&stack, "PUT", "/pedidos/vendas"),
        1,
        "sent once, when it differed"
    );
    assert!(
        eventually(20, || async {
            let (_, state) = call(&stack, "GET", "/v1/tenants/shop-a/invoices/i1", None).await;
            state["state"] == "synced" && state["synced_version"] == 2
        })
        .await,
        "support sees it synced at the current version"
    );
    stack.stop().await;
}
both_backends!(adopted_current, an_adopted_order_gets_the_current_content);

/// An installment whose payment method the account has no forma de pagamento for fails as an
/// account set-up problem saying what to configure; once the shop creates it in Bling, a
/// replay sends the order with that method's (per-account) id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unmapped_payment_method_is_account_setup_until_configured() {
    let t = TestDb::sqlite().await;
    let stack = fast_stack_with(
        &t,
        |_| {},
        |sync| {
            sync.settings.payment_methods =
                bling_ledger::sync::payment_methods::PaymentMethodMap::parse("voucher=tipo:12")
                    .unwrap();
        },
    )
    .await;
    let mut body = invoice("c1", 1);
    body["installments"][1]["payment_method"] = json!("voucher");
    connect_and_bill(&stack, Some(body)).await;
    assert!(wait_for(&t.db, "i1", "SyncFailed", 1).await);
    let cause = first_failure_cause(&t.db, "i1").await;
    assert_eq!(cause["kind"], "account_setup", "{cause}");
    assert_eq!(cause["setting"], "payment_method");
    assert!(
        cause["message"].as_str().unwrap().contains("voucher"),
        "{cause}"
    );
    assert!(
        cause["configure"]
            .as_str()
            .unwrap()
            .contains("BLING_PAYMENT_METHODS"),
        "{cause}"
    );
    assert!(
        stack.sandbox.pedidos("shop-a").is_empty(),
        "nothing sent with a guess"
    );
    assert!(
        eventually(20, || async {
            let (_, audit) = call(&stack, "GET", "/v1/tenants/shop-a/invoices/i1", None).await;
            audit["last_cause"]["kind"] == "account_setup"
                && audit["last_cause"]["advice"]
                    .as_str()
                    .is_some_and(|a| a.contains("configure"))
        })
        .await,
        "support sees the cause and its advice"
    );

    let vale = stack
        .sandbox
        .add_forma_pagamento("shop-a", "Vale presente", 12);
    let (s, _) = call(
        &stack,
        "POST",
        "/v1/tenants/shop-a/replay",
        Some(&json!({"invoice_id": "i1"})),
    )
    .await;
    assert_eq!(s, 202);
    assert!(eventually(20, || all_synced(&stack, &t.db, 1)).await);
    let pedido = &stack.sandbox.pedidos("shop-a")[0];
    assert_eq!(
        pedido["parcelas"][1]["formaPagamento"]["id"], vale,
        "{pedido}"
    );
    stack.stop().await;
}

/// With Bling refusing opaque tokens and calls without `enable-jwt: 1` (the announced end of
/// the migration), the ledger connects and syncs unchanged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jwt_only_bling_works() {
    let t = TestDb::sqlite().await;
    let stack = fast_stack_with(&t, |s| s.jwt_only = true, |_| {}).await;
    connect_and_bill(&stack, None).await;
    assert!(eventually(20, || all_synced(&stack, &t.db, 1)).await);
    let api_calls: Vec<_> = stack
        .sandbox
        .call_log()
        .into_iter()
        .filter(|c| !c.path.contains("/oauth/"))
        .collect();
    assert!(!api_calls.is_empty());
    assert!(
        api_calls.iter().all(|c| c.enable_jwt),
        "enable-jwt on every call"
    );
    assert!(api_calls.iter().all(|c| c.status.is_some_and(|s| s < 400)));
    stack.stop().await;
}

/// Bling's daily 429 (the account's 120,000 requests are shared by every integration of the
/// shop) stops every call for the account until midnight in Brasília, the invoices retry then,
/// and the connection's status says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daily_429_stops_the_account_and_its_status_says_so() {
    let t = TestDb::sqlite().await;
    let stack = fast_stack_with(
        &t,
        // The first invoice takes 7 calls (contato look-up and create, payment methods, the
        // order, two to discover the situações, the situação): the 8th is refused.
        |s| s.daily_quota = 7,
        |sync| sync.client.daily_quota = 0,
    )
    .await;
    assert_eq!(stack.connect("shop-a").await.0, 200);
    call(
        &stack,
        "PUT",
        "/v1/tenants/shop-a/customers/c1",
        Some(&customer("Maria", 1)),
    )
    .await;
    for i in 1..=3 {
        call(
            &stack,
            "POST",
            &format!("/v1/tenants/shop-a/invoices/i{i}/bill"),
            Some(&invoice("c1", i)),
        )
        .await;
    }
    let db = t.db.clone();
    assert!(
        eventually(20, || async {
            events_of_type(&db, "DailyQuotaExhausted").await.len() == 1
        })
        .await,
        "recorded on the connection, once"
    );
    let api_calls = || {
        stack
            .sandbox
            .call_log()
            .iter()
            .filter(|c| !c.path.contains("/oauth/"))
            .count()
    };
    let after_the_429 = api_calls();
    assert_eq!(after_the_429, 8, "seven answered, one refused");
    // Other invoices find the day spent without calling Bling.
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(
        api_calls(),
        after_the_429,
        "no call after Bling said the day is spent"
    );
    assert_eq!(events_of_type(&t.db, "DailyQuotaExhausted").await.len(), 1);
    let failed = events_of_type(&t.db, "SyncFailed").await;
    assert!(!failed.is_empty());
    let f = &failed[0].payload["SyncFailed"];
    assert_eq!(f["cause"]["kind"], "rate_limited");
    let retry_at: chrono::DateTime<chrono::Utc> =
        serde_json::from_value(f["retry_at"].clone()).expect("retried by itself");
    let (s, status) = call(&stack, "GET", "/v1/tenants/shop-a/connection", None).await;
    assert_eq!(s, 200);
    let until: chrono::DateTime<chrono::Utc> =
        serde_json::from_value(status["daily_quota_exhausted_until"].clone())
            .unwrap_or_else(|e| panic!("the status says until when: {e}: {status}"));
    assert!(until > chrono::Utc::now());
    assert!(
        (retry_at - until).num_seconds().abs() <= 60,
        "retried at midnight in Brasília ({until}), not in a second: {retry_at}"
    );
    stack.stop().await;
}

/// The sum of every sample of `family` whose labels include all of `labels`.
fn sum(metrics: &HashMap<String, f64>, family: &str, labels: &[&str]) -> f64 {
    metrics
        .iter()
        .filter(|(k, _)| {
            k.split('{').next() == Some(family) && labels.iter().all(|l| k.contains(l))
        })
        .map(|(_, v)| v)
        .sum()
}

/// After a sync, `/metrics` has every worker family, with plausible values: jobs done for
/// every synced invoice and customer, the Bling calls by route template (no ids), a latency
/// histogram agreeing with the call counts, the queue depth (the invoice of a customer
/// without an address waits, blocked), the lease gauge, the token budget and the renewals due.
async fn metrics_after_a_sync(t: TestDb) {
    let stack = fast_stack(&t).await;
    assert_eq!(stack.connect("shop-a").await.0, 200);
    for c in 0..2 {
        call(
            &stack,
            "PUT",
            &format!("/v1/tenants/shop-a/customers/c{c}"),
            Some(&customer("Cliente", c)),
        )
        .await;
    }
    let mut homeless = customer("Sem Endereço", 2);
    homeless.as_object_mut().unwrap().remove("address");
    let (s, b) = call(
        &stack,
        "PUT",
        "/v1/tenants/shop-a/customers/c2",
        Some(&homeless),
    )
    .await;
    assert_eq!(s, 201, "{b}");
    for i in 0..5 {
        call(
            &stack,
            "POST",
            &format!("/v1/tenants/shop-a/invoices/inv-{i}/bill"),
            Some(&invoice(&format!("c{}", i % 2), i)),
        )
        .await;
    }
    call(
        &stack,
        "POST",
        "/v1/tenants/shop-a/invoices/inv-blocked/bill",
        Some(&invoice("c2", 99)),
    )
    .await;
    assert!(eventually(60, || all_synced(&stack, &t.db, 5)).await);
    let blocked = "state=\"blocked\"";
    assert!(
        eventually(30, || async {
            sum(
                &scrape(&stack).await,
                "bling_ledger_sync_queue_depth",
                &[blocked],
            ) >= 2.0
        })
        .await,
        "the homeless customer's contato and invoice wait, blocked"
    );
    let m = scrape(&stack).await;
    let jobs = "bling_ledger_sync_jobs_total";
    assert!(
        sum(&m, jobs, &["kind=\"invoice\"", "outcome=\"done\""]) >= 5.0,
        "{m:?}"
    );
    assert!(
        sum(&m, jobs, &["kind=\"contact\"", "outcome=\"done\""]) >= 2.0,
        "{m:?}"
    );
    assert!(sum(&m, jobs, &["outcome=\"blocked\""]) >= 2.0, "{m:?}");
    assert_eq!(sum(&m, jobs, &["outcome=\"error\""]), 0.0, "{m:?}");

    let calls_total = "bling_ledger_bling_calls_total";
    let creates = sum(
        &m,
        calls_total,
        &["method=\"POST\"", "route=\"/pedidos/vendas\""],
    );
    assert!(creates >= 5.0, "{m:?}");
    let situacoes = "route=\"/pedidos/vendas/{id}/situacoes/{id}\"";
    assert!(
        sum(&m, calls_total, &["method=\"PATCH\"", situacoes]) >= 5.0,
        "{m:?}"
    );
    assert!(
        sum(&m, calls_total, &["route=\"/contatos\"", "status=\"200\""]) >= 2.0,
        "{m:?}"
    );
    for key in m.keys().filter(|k| k.starts_with(calls_total)) {
        assert!(
            !key.split('/')
                .any(|s| s.starts_with(|c: char| c.is_ascii_digit())),
            "no id in a route label: {key}"
        );
    }
    let seconds = "bling_ledger_bling_call_seconds";
    let route = ["method=\"POST\"", "route=\"/pedidos/vendas\""];
    let count = sum(&m, &format!("{seconds}_count"), &route);
    assert_eq!(count, creates, "one latency sample per call");
    let inf = sum(
        &m,
        &format!("{seconds}_bucket"),
        &[route[0], route[1], "le=\"+Inf\""],
    );
    assert_eq!(inf, count);
    let fast = sum(
        &m,
        &format!("{seconds}_bucket"),
        &[route[0], route[1], "le=\"5\""],
    );
    assert!(
        fast <= inf && fast >= 1.0,
        "the local sandbox answers within 5 s"
    );
    assert!(sum(&m, &format!("{seconds}_sum"), &route) > 0.0);

    for state in ["pending", "blocked", "failed", "parked"] {
        let key = format!("bling_ledger_sync_queue_depth{{state=\"{state}\"}}");
        assert!(m.contains_key(&key), "{key} in {m:?}");
    }
    let leases = m["bling_ledger_sync_leases_held"];
    assert!((0.0..=1.0).contains(&leases), "one tenant: {leases}");
    let used = m["bling_ledger_token_budget_used"];
    let limit = m["bling_ledger_token_budget_limit"];
    assert_eq!(limit, 15.0);
    assert!((0.0..=limit).contains(&used), "{used}");
    assert_eq!(m["bling_ledger_connected_tenants"], 1.0);
    // Sandbox tokens live 6 h; the tests renew 60 s ahead: nothing is due.
    assert_eq!(m["bling_ledger_token_renewals_due"], 0.0);
    assert!(m.contains_key("bling_ledger_token_endpoint_calls_total"));
    assert!(sum(&m, "bling_ledger_http_requests_total", &["status=\"201\""]) >= 8.0);
    // The share of Bling's per-IP limit, at its default.
    assert_eq!(m["bling_ledger_bling_egress_limit"], 50.0);
    assert!(m.contains_key("bling_ledger_bling_egress_delayed_calls_total"));
    assert!(m["bling_ledger_bling_egress_wait_seconds_total"] >= 0.0);
    stack.stop().await;
}
both_backends!(metrics, metrics_after_a_sync);

/// Two customers of one tenant with one CPF, synced in parallel (jobs are by customer, and
/// PostgreSQL runs several of a tenant's at once), get one contato: the look-up and the create
/// run one at a time per document.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn customers_sharing_a_document_get_one_contato_in_parallel_postgres() {
    let t = TestDb::postgres().await;
    let stack = fast_stack_with(
        &t,
        // A little latency, so that parallel look-ups overlap as they do against Bling.
        |s| {
            s.faults = FaultConfig::none().with_rule(
                FaultRule::any().latency(Duration::from_millis(20), Duration::from_millis(60)),
            )
        },
        |sync| sync.settings.jobs_per_tenant = 4,
    )
    .await;
    assert_eq!(stack.connect("shop-a").await.0, 200);
    for pair in 0..10u32 {
        for side in ["a", "b"] {
            let (s, b) = call(
                &stack,
                "PUT",
                &format!("/v1/tenants/shop-a/customers/c{pair}{side}"),
                Some(&customer("Maria", 100 + pair)),
            )
            .await;
            assert_eq!(s, 201, "{b}");
        }
    }
    for pair in 0..10u32 {
        for side in ["a", "b"] {
            let (s, b) = call(
                &stack,
                "POST",
                &format!("/v1/tenants/shop-a/invoices/i{pair}{side}/bill"),
                Some(&invoice(&format!("c{pair}{side}"), pair as usize)),
            )
            .await;
            assert_eq!(s, 201, "{b}");
        }
    }
    assert!(eventually(60, || all_synced(&stack, &t.db, 20)).await);
    let contatos = stack.sandbox.contatos("shop-a");
    assert_eq!(
        contatos.len(),
        10,
        "one contato per document: {}",
        contatos.len()
    );
    stack.stop().await;
}
