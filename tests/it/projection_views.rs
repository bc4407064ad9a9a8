//! The support views: every view against a scripted run with the sandbox, a runner stopped
//! mid-way and a rebuild giving identical rows, the API's auth and tenant isolation, failure
//! filters and pagination, and the `history` CLI.

use std::time::Duration;

use crate::support::*;
use aggregates::connection::{ConnectionCommand, RevocationEvidence};
use aggregates::customer::{CustomerCommand, CustomerInput};
use aggregates::ids::{CustomerId, InvoiceId, TenantId};
use aggregates::invoice::{InvoiceCommand, InvoiceInput};
use aggregates::sync::{BlingCall, FailureCause};
use bling_ledger::ledger::{Actor, CommandContext, Ledger};
use bling_ledger::projections::queries::{self, dump_all};
use bling_ledger::projections::{Projections, RunnerSettings};
use bling_ledger::store::Db;
use serde_json::{json, Value};

// ---- helpers ------------------------------------------------------------------------------

async fn get(base: &str, token: Option<&str>, path: &str) -> (u16, Value) {
    let mut request = reqwest::Client::new().get(format!("{base}{path}"));
    if let Some(t) = token {
        request = request.bearer_auth(t);
    }
    let response = request.send().await.expect("request");
    let status = response.status().as_u16();
    let text = response.text().await.unwrap_or_default();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

fn customer_with(name: &str, n: u32) -> Value {
    let mut body = customer_body(name);
    body["tax_id"] = json!(cpf(n));
    body
}

fn ctx(tenant: &str, actor: Actor) -> CommandContext {
    CommandContext::new(TenantId::parse(tenant).unwrap(), "test", actor)
}

fn bling_call(status: u16, error: Option<&str>) -> BlingCall {
    BlingCall {
        at: chrono::Utc::now(),
        method: "POST".into(),
        path: "/pedidos/vendas".into(),
        status: Some(status),
        latency_ms: 42,
        error_type: error.map(str::to_string),
        error_message: error.map(|_| "refused".to_string()),
    }
}

fn cause(kind: &str) -> FailureCause {
    let message = format!("{kind} happened");
    match kind {
        "divergent_customer_record" => FailureCause::DivergentCustomerRecord {
            problems: vec![],
            bling_fields: vec![],
            message,
        },
        "bling_unavailable" => FailureCause::BlingUnavailable { message },
        "rate_limited" => FailureCause::RateLimited { message },
        "authorization_expired" => FailureCause::AuthorizationExpired { message },
        _ => FailureCause::BlingRejected {
            status: 403,
            error_type: "FORBIDDEN".into(),
            message,
            description: "no".into(),
            bling_fields: vec![],
        },
    }
}

/// Writes a history straight through the ledger (no sandbox): customers, invoices, sync
/// outcomes of every kind, a revocation and a reconnection. Returns the invoice ids.
async fn scripted_ledger(db: &Db, tenant: &str, invoices: usize) -> Vec<String> {
    let ledger = Ledger::new(db.clone());
    let t = TenantId::parse(tenant).unwrap();
    let ingest = || ctx(tenant, Actor::Ingest("petshop".into()));
    let worker = || ctx(tenant, Actor::Worker);
    let connect = ConnectionCommand::CompleteAuthorization {
        tenant: t.clone(),
        scopes: "all".into(),
        access_expires_at: chrono::Utc::now() + chrono::Duration::hours(6),
        token_fingerprint: "ab12".into(),
    };
    ledger
        .execute_connection(&worker(), connect.clone())
        .await
        .unwrap();
    for c in 0..3u32 {
        let input: CustomerInput =
            serde_json::from_value(customer_with(&format!("Cliente {c}"), c + 1)).unwrap();
        let command = CustomerCommand::Save {
            tenant: t.clone(),
            customer_id: CustomerId::parse(&format!("c{c}")).unwrap(),
            profile: input.validate().unwrap(),
        };
        ledger
            .execute_customer(&ingest(), &format!("c{c}"), command)
            .await
            .unwrap();
    }
    ledger
        .execute_customer(
            &worker(),
            "c1",
            CustomerCommand::RecordSyncFailed {
                cause: cause("divergent_customer_record"),
                profile_version: 1,
                calls: vec![bling_call(400, Some("VALIDATION_ERROR"))],
            },
        )
        .await
        .unwrap();
    let kinds = [
        "divergent_customer_record",
        "bling_unavailable",
        "rate_limited",
        "bling_rejected",
    ];
    let mut ids = Vec::new();
    for i in 0..invoices {
        let id = format!("inv-{i:03}");
        let input: InvoiceInput =
            serde_json::from_value(invoice_body(&format!("c{}", i % 3), &format!("NF-{i}")))
                .unwrap();
        let bill = input.validate().unwrap();
        let command = InvoiceCommand::Bill {
            tenant: t.clone(),
            invoice_id: InvoiceId::parse(&id).unwrap(),
            customer_id: bill.customer_id,
            content: bill.content,
        };
        ledger
            .execute_invoice(&ingest(), &id, command)
            .await
            .unwrap();
        if i % 3 == 1 {
            let failed = InvoiceCommand::RecordSyncFailed {
                cause: cause(kinds[i % kinds.len()]),
                attempt: 1,
                retry_at: None,
                calls: vec![bling_call(503, Some("SERVICE_UNAVAILABLE"))],
            };
            ledger
                .execute_invoice(&worker(), &id, failed)
                .await
                .unwrap();
        }
        if i == invoices / 2 {
            let evidence = RevocationEvidence {
                call: "POST /oauth/token (refresh)".into(),
                status: 400,
                error_type: "invalid_grant".into(),
                message: "revoked".into(),
            };
            ledger
                .execute_connection(&worker(), ConnectionCommand::RecordRevocation { evidence })
                .await
                .unwrap();
            ledger
                .execute_invoice(
                    &worker(),
                    &id,
                    InvoiceCommand::RecordSyncParked {
                        reason: "revoked".into(),
                    },
                )
                .await
                .unwrap();
            ledger
                .execute_connection(&worker(), connect.clone())
                .await
                .unwrap();
            ledger
                .execute_invoice(
                    &worker(),
                    &id,
                    InvoiceCommand::RecordSyncResumed {
                        reason: "reconnected to Bling".into(),
                    },
                )
                .await
                .unwrap();
        }
        if i % 3 != 1 {
            let created = InvoiceCommand::RecordOrderCreated {
                bling_order_id: 1000 + i as i64,
                bling_number: Some(i as i64),
                created: true,
                content_version: 1,
                calls: vec![bling_call(201, None)],
            };
            ledger
                .execute_invoice(&worker(), &id, created)
                .await
                .unwrap();
            let situacao = InvoiceCommand::RecordSituacaoChanged {
                situacao_id: 9,
                situacao_name: "Atendido".into(),
                calls: vec![bling_call(204, None)],
            };
            ledger
                .execute_invoice(&worker(), &id, situacao)
                .await
                .unwrap();
        }
        if i % 7 == 0 {
            let cancel = InvoiceCommand::Cancel {
                tenant: t.clone(),
                reason: Some("desistiu".into()),
            };
            ledger
                .execute_invoice(&ingest(), &id, cancel)
                .await
                .unwrap();
        }
        ids.push(id);
    }
    ids
}

/// Waits until every event written so far is readable: on PostgreSQL events are numbered
/// once every older transaction of the cluster (other tests' too) has finished.
async fn settle(db: &Db) -> i64 {
    let written: i64 =
        bling_ledger::sql!(db, as (i64,), "SELECT COUNT(*) FROM events", [], fetch_one)
            .unwrap()
            .0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let head = bling_ledger::store::log::head_position(db).await.unwrap();
        if head == written || tokio::time::Instant::now() > deadline {
            return head;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// ---- restart and rebuild --------------------------------------------------------------------

async fn restart_mid_way_and_rebuild_give_identical_views(t: TestDb) {
    scripted_ledger(&t.db, "shop-a", 40).await;
    scripted_ledger(&t.db, "shop-b", 10).await;
    let head = settle(&t.db).await;
    assert!(head > 150, "scripted {head} events");

    // A runner that stops after three small batches (as if the process were killed between
    // two transactions)…
    let first = Projections::new(
        t.db.clone(),
        RunnerSettings {
            batch: 17,
            ..Default::default()
        },
    );
    for _ in 0..3 {
        assert!(
            first
                .run_batch(&bling_ledger::projections::NAMES, 17)
                .await
                .unwrap()
                > 0
        );
    }
    let status = first.status().await.unwrap();
    assert!(
        status
            .iter()
            .all(|s| s.checkpoint == 51 && s.lag == head - 51),
        "{status:?}"
    );
    // …then a new one in the background, stopped and started again.
    let second = Projections::new(
        t.db.clone(),
        RunnerSettings {
            batch: 13,
            poll_interval: Duration::from_millis(20),
        },
    );
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let task = second.clone().spawn(stopped);
    tokio::time::sleep(Duration::from_millis(30)).await;
    stop.send(true).unwrap();
    task.await.unwrap();
    let third = Projections::new(
        t.db.clone(),
        RunnerSettings {
            batch: 29,
            poll_interval: Duration::from_millis(20),
        },
    );
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let task = third.clone().spawn(stopped);
    assert!(
        eventually(30, || async {
            third.status().await.unwrap().iter().all(|s| s.lag == 0)
        })
        .await,
        "caught up"
    );
    stop.send(true).unwrap();
    task.await.unwrap();
    let live = dump_all(&t.db).await.unwrap();
    let invoices = &live
        .iter()
        .find(|d| d.table == "proj_invoices")
        .unwrap()
        .rows;
    assert_eq!(invoices.len(), 50);
    let timeline = &live
        .iter()
        .find(|d| d.table == "proj_timeline")
        .unwrap()
        .rows;
    assert_eq!(
        timeline.len() as i64,
        head,
        "one entry per event, none repeated, none lost"
    );

    // A rebuild of everything, and of one projection, give the same rows.
    let mut progress = Vec::new();
    let report = third.rebuild(&[], 23, |p| progress.push(p)).await.unwrap();
    assert_eq!(report.events, head);
    assert_eq!(progress.last().unwrap().done, head);
    assert!(progress.windows(2).all(|w| w[0].done <= w[1].done));
    assert_eq!(
        dump_all(&t.db)
            .await
            .unwrap()
            .iter()
            .map(|d| (&d.table, &d.rows))
            .collect::<Vec<_>>(),
        live.iter().map(|d| (&d.table, &d.rows)).collect::<Vec<_>>()
    );
    third.rebuild(&["timeline"], 1000, |_| {}).await.unwrap();
    let again = dump_all(&t.db).await.unwrap();
    for (a, b) in again.iter().zip(&live) {
        assert_eq!(
            a.rows, b.rows,
            "table {} differs after rebuilding the timeline",
            a.table
        );
    }
}
both_backends!(
    restart_and_rebuild,
    restart_mid_way_and_rebuild_give_identical_views
);

// ---- failures, filters, pagination ------------------------------------------------------------

async fn failures_filter_by_cause_and_time_and_paginate(t: TestDb) {
    let server = start_server(&t.url).await;
    let ids = scripted_ledger(&t.db, "shop-a", 30).await;
    settle(&t.db).await;
    server.projections.catch_up().await.unwrap();
    let base = server.base_url();

    // All failures, two at a time: every one exactly once, newest first.
    let mut all = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/tenants/shop-a/failures?limit=2&cursor={c}"),
            None => "/v1/tenants/shop-a/failures?limit=2".to_string(),
        };
        let (s, body) = get(&base, Some(SUPPORT_TOKEN), &path).await;
        assert_eq!(s, 200, "{body}");
        let page = body["failures"].as_array().unwrap().clone();
        assert!(page.len() <= 2);
        all.extend(page);
        match body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    // 10 invoice failures (i % 3 == 1), 1 parked invoice, 1 contact failure.
    assert_eq!(all.len(), 12, "{all:#?}");
    let positions: Vec<i64> = all
        .iter()
        .map(|f| f["position"].as_i64().unwrap())
        .collect();
    let mut sorted = positions.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    sorted.dedup();
    assert_eq!(positions, sorted, "newest first, no duplicate");
    let parked: Vec<&Value> = all.iter().filter(|f| f["outcome"] == "parked").collect();
    assert_eq!(parked.len(), 1);
    assert_eq!(parked[0]["cause"], "authorization_revoked");
    let contact: Vec<&Value> = all.iter().filter(|f| f["subject"] == "customer").collect();
    assert_eq!(contact[0]["customer_id"], "c1");

    // By cause.
    let (s, body) = get(
        &base,
        Some(SUPPORT_TOKEN),
        "/v1/tenants/shop-a/failures?cause=bling_unavailable",
    )
    .await;
    assert_eq!(s, 200);
    let unavailable = body["failures"].as_array().unwrap();
    assert!(!unavailable.is_empty());
    assert!(unavailable
        .iter()
        .all(|f| f["cause"] == "bling_unavailable"));
    let f = &unavailable[0];
    assert_eq!(f["evidence"]["calls"][0]["status"], 503);
    assert_eq!(
        f["evidence"]["calls"][0]["error_type"],
        "SERVICE_UNAVAILABLE"
    );
    assert_eq!(f["evidence"]["cause"]["kind"], "bling_unavailable");
    assert!(f["invoice_number"].as_str().unwrap().starts_with("NF-"));
    assert!(f["advice"]
        .as_str()
        .unwrap()
        .contains("retried automatically"));
    let expected = (0..30).filter(|i| i % 3 == 1 && i % 4 == 1).count();
    assert_eq!(unavailable.len(), expected);

    // By time: since the newest failure's time only the failures of that millisecond on.
    let newest = all[0]["at"].as_str().unwrap().to_string();
    let (s, body) = get(
        &base,
        Some(SUPPORT_TOKEN),
        &format!("/v1/tenants/shop-a/failures?since={newest}"),
    )
    .await;
    assert_eq!(s, 200, "{body}");
    let recent = body["failures"].as_array().unwrap();
    assert!(!recent.is_empty() && recent.len() < all.len());
    assert!(recent
        .iter()
        .all(|f| f["at"].as_str().unwrap() >= newest.as_str()));
    let (_, body) = get(
        &base,
        Some(SUPPORT_TOKEN),
        "/v1/tenants/shop-a/failures?until=2020-01-01",
    )
    .await;
    assert_eq!(body["failures"].as_array().unwrap().len(), 0);
    let (_, body) = get(&base, Some(SUPPORT_TOKEN), "/v1/tenants/shop-a/failures?since=2020-01-01&until=2999-01-01&cause=divergent_customer_record").await;
    assert!(body["failures"]
        .as_array()
        .unwrap()
        .iter()
        .all(|f| f["cause"] == "divergent_customer_record"));
    assert_eq!(
        body["failures"].as_array().unwrap().len(),
        1 + (0..30).filter(|i| i % 3 == 1 && i % 4 == 0).count()
    );

    // Validation names the parameter.
    for (query, field) in [
        ("cause=nope", "cause"),
        ("limit=0", "limit"),
        ("limit=abc", "limit"),
        ("since=yesterday", "since"),
        ("cursor=-3", "cursor"),
        ("since=2026-02-01&until=2026-01-01", "until"),
        ("colour=red", "colour"),
    ] {
        let (s, body) = get(
            &base,
            Some(SUPPORT_TOKEN),
            &format!("/v1/tenants/shop-a/failures?{query}"),
        )
        .await;
        assert_eq!(s, 400, "{query}: {body}");
        assert_eq!(
            body["error"]["fields"][0]["field"], field,
            "{query}: {body}"
        );
    }

    // The invoice list: pages, filters, search.
    let mut listed = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/tenants/shop-a/invoices?limit=7&cursor={c}"),
            None => "/v1/tenants/shop-a/invoices?limit=7".to_string(),
        };
        let (s, body) = get(&base, Some(SUPPORT_TOKEN), &path).await;
        assert_eq!(s, 200, "{body}");
        listed.extend(
            body["invoices"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i["invoice_id"].as_str().unwrap().to_string()),
        );
        match body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    let mut newest_first = ids.clone();
    newest_first.reverse();
    assert_eq!(listed, newest_first);
    let (_, body) = get(
        &base,
        Some(SUPPORT_TOKEN),
        "/v1/tenants/shop-a/invoices?state=failed&cause=rate_limited",
    )
    .await;
    let failed = body["invoices"].as_array().unwrap();
    assert!(!failed.is_empty());
    assert!(failed
        .iter()
        .all(|i| i["state"] == "failed" && i["last_cause"]["kind"] == "rate_limited"));
    let (_, body) = get(
        &base,
        Some(SUPPORT_TOKEN),
        "/v1/tenants/shop-a/invoices?state=cancelled",
    )
    .await;
    // Cancelled before any Bling order: cancelled. After one: pending until Bling's situação
    // changes (no worker runs here).
    assert_eq!(
        body["invoices"].as_array().unwrap().len(),
        (0..30).filter(|i| i % 7 == 0 && i % 3 == 1).count()
    );
    let (_, body) = get(
        &base,
        Some(SUPPORT_TOKEN),
        "/v1/tenants/shop-a/invoices/inv-014",
    )
    .await;
    assert_eq!(
        (body["state"].as_str(), body["cancelled"].as_bool()),
        (Some("pending"), Some(true))
    );
    let (_, body) = get(
        &base,
        Some(SUPPORT_TOKEN),
        "/v1/tenants/shop-a/invoices?q=NF-12",
    )
    .await;
    assert_eq!(body["invoices"][0]["invoice_id"], "inv-012");
    assert_eq!(body["invoices"].as_array().unwrap().len(), 1);
    // By the customer's CPF, punctuated or not: c2's invoices.
    let c2 = cpf(3);
    let punctuated = format!("{}.{}.{}-{}", &c2[0..3], &c2[3..6], &c2[6..9], &c2[9..]);
    let (_, body) = get(
        &base,
        Some(SUPPORT_TOKEN),
        &format!("/v1/tenants/shop-a/invoices?q={punctuated}&limit=500"),
    )
    .await;
    let by_cpf = body["invoices"].as_array().unwrap();
    assert_eq!(by_cpf.len(), 10);
    assert!(by_cpf.iter().all(|i| i["customer_id"] == "c2"));
    let (s, body) = get(
        &base,
        Some(SUPPORT_TOKEN),
        "/v1/tenants/shop-a/invoices?state=lost",
    )
    .await;
    assert_eq!(
        (s, body["error"]["fields"][0]["field"].as_str()),
        (400, Some("state"))
    );
    server.stop().await.unwrap();
}
both_backends!(
    failures_and_pagination,
    failures_filter_by_cause_and_time_and_paginate
);

// ---- auth and isolation -----------------------------------------------------------------------

async fn support_reads_only_its_tenant(t: TestDb) {
    let server = start_server(&t.url).await;
    scripted_ledger(&t.db, "shop-a", 3).await;
    scripted_ledger(&t.db, "shop-b", 3).await;
    settle(&t.db).await;
    server.projections.catch_up().await.unwrap();
    let base = server.base_url();
    let paths = [
        "/v1/tenants/{t}/invoices/inv-000",
        "/v1/tenants/{t}/invoices/inv-000/history",
        "/v1/tenants/{t}/invoices",
        "/v1/tenants/{t}/failures",
        "/v1/tenants/{t}/customers/c0",
    ];
    for p in paths {
        let a = p.replace("{t}", "shop-a");
        let b = p.replace("{t}", "shop-b");
        assert_eq!(get(&base, Some(SUPPORT_TOKEN), &a).await.0, 200, "{a}");
        let (s, body) = get(&base, Some(SUPPORT_TOKEN), &b).await;
        assert_eq!(s, 403, "{b}: {body}");
        assert_eq!(body["error"]["code"], "forbidden");
        assert_eq!(get(&base, None, &a).await.0, 401, "{a}");
        assert_eq!(get(&base, Some("not-a-token"), &a).await.0, 401, "{a}");
        assert_eq!(
            get(&base, Some(INGEST_TOKEN), &a).await.0,
            403,
            "ingest is not support: {a}"
        );
        assert_eq!(get(&base, Some(ADMIN_TOKEN), &b).await.0, 200, "{b}");
    }
    let (s, body) = get(
        &base,
        Some(SUPPORT_TOKEN),
        "/v1/tenants/shop-a/invoices/nope",
    )
    .await;
    assert_eq!(
        (s, body["error"]["code"].as_str()),
        (404, Some("not_found"))
    );
    let (s, _) = get(
        &base,
        Some(SUPPORT_TOKEN),
        "/v1/tenants/shop-a/invoices/nope/history",
    )
    .await;
    assert_eq!(s, 404);
    let (s, _) = get(
        &base,
        Some(SUPPORT_TOKEN),
        "/v1/tenants/shop-a/customers/nope",
    )
    .await;
    assert_eq!(s, 404);
    let (s, body) = get(
        &base,
        Some(SUPPORT_TOKEN),
        "/v1/tenants/shop-a/invoices/bad%20id",
    )
    .await;
    assert_eq!(
        (s, body["error"]["fields"][0]["field"].as_str()),
        (400, Some("invoice_id"))
    );

    let (s, body) = get(&base, Some(SUPPORT_TOKEN), "/v1/tenants").await;
    assert_eq!(s, 200);
    let tenants: Vec<&str> = body["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["tenant"].as_str().unwrap())
        .collect();
    assert_eq!(tenants, ["shop-a"]);
    assert_eq!(body["tenants"][0]["connection"]["state"], "connected");
    let (_, body) = get(&base, Some(ADMIN_TOKEN), "/v1/tenants").await;
    let tenants: Vec<&str> = body["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["tenant"].as_str().unwrap())
        .collect();
    assert_eq!(tenants, ["shop-a", "shop-b"]);
    assert_eq!(get(&base, None, "/v1/tenants").await.0, 401);
    assert_eq!(get(&base, Some(INGEST_B_TOKEN), "/v1/tenants").await.0, 403);
    // Ingest's PUT on the same path still works next to support's GET.
    let (s, _) = {
        let r = reqwest::Client::new()
            .put(format!("{base}/v1/tenants/shop-a/invoices/inv-001"))
            .bearer_auth(INGEST_TOKEN)
            .json(&invoice_body("c1", "NF-1"))
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), ())
    };
    assert_eq!(s, 200);
    server.stop().await.unwrap();
}
both_backends!(auth_and_isolation, support_reads_only_its_tenant);

// ---- a scripted run with the sandbox ------------------------------------------------------------

async fn state_of(base: &str, invoice: &str) -> String {
    let (_, body) = get(
        base,
        Some(SUPPORT_TOKEN),
        &format!("/v1/tenants/shop-a/invoices/{invoice}"),
    )
    .await;
    body["state"].as_str().unwrap_or("-").to_string()
}

async fn wait_state(base: &str, invoice: &str, want: &str) {
    let ok = eventually(40, || async { state_of(base, invoice).await == want }).await;
    assert!(
        ok,
        "{invoice} never became {want} (is {})",
        state_of(base, invoice).await
    );
}

fn events_of(history: &Value) -> Vec<String> {
    history["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| match e["subject"].as_str().unwrap() {
            "invoice" => e["event"].as_str().unwrap().to_string(),
            subject => format!("{subject}:{}", e["event"].as_str().unwrap()),
        })
        .collect()
}

async fn every_view_follows_a_real_sync(t: TestDb) {
    let stack = Stack::start_with(
        &t.url,
        |s| s.rate_limit_per_sec = 0,
        |_| {},
        |sync| sync.client.rate_limit_per_sec = 0,
    )
    .await;
    let base = stack.server.base_url();
    assert_eq!(stack.connect("shop-a").await.0, 200);

    // 1. A plain invoice: synced.
    call(
        &stack,
        "PUT",
        "/v1/tenants/shop-a/customers/c1",
        Some(&customer_with("Maria", 1)),
    )
    .await;
    call(
        &stack,
        "POST",
        "/v1/tenants/shop-a/invoices/i1/bill",
        Some(&invoice_body("c1", "NF-1")),
    )
    .await;
    wait_state(&base, "i1", "synced").await;
    let (_, i1) = get(&base, Some(SUPPORT_TOKEN), "/v1/tenants/shop-a/invoices/i1").await;
    assert_eq!(i1["number"], "NF-1");
    assert_eq!(i1["total_centavos"], 17000);
    assert_eq!(i1["bling"]["situacao"]["name"], "Atendido");
    assert!(i1["bling"]["order_id"].as_i64().is_some());
    assert_eq!(i1["attempts"], 0);

    // 2. A divergent customer record: failed, then fixed, then synced.
    let mut wrong = customer_with("Joana", 3);
    wrong["address"]["cep"] = json!("20040-002");
    call(
        &stack,
        "PUT",
        "/v1/tenants/shop-a/customers/c3",
        Some(&wrong),
    )
    .await;
    call(
        &stack,
        "POST",
        "/v1/tenants/shop-a/invoices/i3/bill",
        Some(&invoice_body("c3", "NF-3")),
    )
    .await;
    wait_state(&base, "i3", "failed").await;
    let (_, i3) = get(&base, Some(SUPPORT_TOKEN), "/v1/tenants/shop-a/invoices/i3").await;
    assert_eq!(i3["last_cause"]["kind"], "divergent_customer_record");
    assert!(i3["last_cause"]["advice"]
        .as_str()
        .unwrap()
        .contains("Fix the customer record"));
    let (_, c3) = get(
        &base,
        Some(SUPPORT_TOKEN),
        "/v1/tenants/shop-a/customers/c3",
    )
    .await;
    assert_eq!(c3["state"], "failed");
    assert_eq!(c3["last_failure"]["kind"], "divergent_customer_record");
    let mut fixed = customer_with("Joana", 3);
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
    wait_state(&base, "i3", "synced").await;
    let (_, c3) = get(
        &base,
        Some(SUPPORT_TOKEN),
        "/v1/tenants/shop-a/customers/c3",
    )
    .await;
    assert_eq!(c3["state"], "synced");
    assert_eq!(c3["profile_version"], 2);
    assert_eq!(c3["synced_version"], 2);
    assert!(c3["bling_contact_id"].as_i64().is_some());
    let (_, h3) = get(
        &base,
        Some(SUPPORT_TOKEN),
        "/v1/tenants/shop-a/invoices/i3/history",
    )
    .await;
    let kinds = events_of(&h3);
    assert_eq!(kinds[0], "InvoiceBilled");
    assert!(kinds.contains(&"SyncFailed".to_string()), "{kinds:?}");
    assert!(
        kinds.contains(&"customer:CustomerUpdated".to_string()),
        "{kinds:?}"
    );
    assert!(
        kinds.contains(&"customer:ContactLinked".to_string()),
        "{kinds:?}"
    );
    assert!(kinds.contains(&"SyncResumed".to_string()), "{kinds:?}");
    assert_eq!(kinds.last().unwrap(), "SituacaoChanged");
    let failed = h3["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["event"] == "SyncFailed")
        .unwrap();
    assert_eq!(failed["cause"]["kind"], "divergent_customer_record");
    assert_eq!(
        failed["calls"].as_array().unwrap().last().unwrap()["status"],
        400
    );
    assert_eq!(
        failed["calls"].as_array().unwrap().last().unwrap()["error_type"],
        "VALIDATION_ERROR"
    );
    assert_eq!(failed["connection_state"], "connected");
    assert_eq!(
        failed["detail"]["cause"]["bling_fields"][0]["element"], "cep",
        "Bling names the leaf element ([OAS], [FM])"
    );

    // 3. A cancellation after the sync: cancelled once Bling's situação changes.
    call(
        &stack,
        "POST",
        "/v1/tenants/shop-a/invoices/i2/bill",
        Some(&invoice_body("c1", "NF-2")),
    )
    .await;
    wait_state(&base, "i2", "synced").await;
    call(
        &stack,
        "POST",
        "/v1/tenants/shop-a/invoices/i2/cancel",
        Some(&json!({"reason": "desistiu"})),
    )
    .await;
    wait_state(&base, "i2", "cancelled").await;
    let (_, i2) = get(&base, Some(SUPPORT_TOKEN), "/v1/tenants/shop-a/invoices/i2").await;
    assert_eq!(i2["bling"]["situacao"]["name"], "Cancelado");
    assert_eq!(i2["cancel_reason"], "desistiu");

    // 4. Revoked: parked; reconnected: replayed and synced.
    stack.sandbox.revoke_account("shop-a");
    call(
        &stack,
        "POST",
        "/v1/tenants/shop-a/invoices/i4/bill",
        Some(&invoice_body("c1", "NF-4")),
    )
    .await;
    wait_state(&base, "i4", "parked").await;
    let (_, tenants) = get(&base, Some(SUPPORT_TOKEN), "/v1/tenants").await;
    assert!(
        eventually(10, || async {
            get(&base, Some(SUPPORT_TOKEN), "/v1/tenants").await.1["tenants"][0]["connection"]
                ["state"]
                == "revoked"
        })
        .await,
        "{tenants}"
    );
    let (_, tenants) = get(&base, Some(SUPPORT_TOKEN), "/v1/tenants").await;
    assert!(tenants["tenants"][0]["connection"]["revoked_since"].is_string());
    assert!(tenants["tenants"][0]["connection"]["revoked_evidence"]["status"].is_number());
    assert_eq!(stack.connect("shop-a").await.0, 200);
    wait_state(&base, "i4", "synced").await;
    let (_, h4) = get(
        &base,
        Some(SUPPORT_TOKEN),
        "/v1/tenants/shop-a/invoices/i4/history",
    )
    .await;
    let kinds = events_of(&h4);
    for want in [
        "InvoiceBilled",
        "connection:AuthorizationRevoked",
        "SyncParked",
        "connection:Reconnected",
        "SyncResumed",
        "SalesOrderCreated",
        "SituacaoChanged",
    ] {
        assert!(
            kinds.contains(&want.to_string()),
            "{want} missing from {kinds:?}"
        );
    }
    let entries = h4["entries"].as_array().unwrap();
    let parked = entries.iter().find(|e| e["event"] == "SyncParked").unwrap();
    assert_eq!(parked["connection_state"], "revoked");
    assert_eq!(parked["cause"]["kind"], "authorization_revoked");
    let created = entries
        .iter()
        .find(|e| e["event"] == "SalesOrderCreated")
        .unwrap();
    assert_eq!(created["connection_state"], "connected");
    let (_, status) = get(&base, Some(SUPPORT_TOKEN), "/v1/tenants").await;
    assert_eq!(status["tenants"][0]["connection"]["state"], "connected");
    assert!(status["tenants"][0]["connection"]["revoked_since"].is_null());

    // The failure audit holds both stories.
    let (_, f) = get(
        &base,
        Some(SUPPORT_TOKEN),
        "/v1/tenants/shop-a/failures?cause=divergent_customer_record",
    )
    .await;
    assert!(f["failures"]
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f["invoice_id"] == "i3"));
    let (_, f) = get(
        &base,
        Some(SUPPORT_TOKEN),
        "/v1/tenants/shop-a/failures?cause=authorization_revoked",
    )
    .await;
    assert!(f["failures"]
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f["invoice_id"] == "i4" && f["outcome"] == "parked"));

    // Every view rebuilt from the log equals the live one.
    stack.server.projections.catch_up().await.unwrap();
    let db = stack.server.db.clone();
    stack.stop().await;
    let db = match db {
        Db::Sqlite(_) => Db::connect(&t.url, 2).await.unwrap(),
        Db::Postgres(_) => t.db.clone(),
    };
    let runner = Projections::new(db.clone(), RunnerSettings::default());
    runner.catch_up().await.unwrap();
    let live = dump_all(&db).await.unwrap();
    runner.rebuild(&[], 7, |_| {}).await.unwrap();
    let rebuilt = dump_all(&db).await.unwrap();
    for (a, b) in live.iter().zip(&rebuilt) {
        assert_eq!(a.rows, b.rows, "table {} differs after a rebuild", a.table);
    }

    // The CLI, against the same database (the real binary).
    if matches!(db, Db::Sqlite(_)) {
        db.close().await;
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_bling-ledger"))
            .args([
                "--database-url",
                &t.url,
                "history",
                "--tenant",
                "shop-a",
                "--invoice",
                "i3",
            ])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{text}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(text.contains("SYNCED"), "{text}");
        assert!(text.contains("divergent_customer_record"), "{text}");
        assert!(
            text.contains("Fix the customer record in the pet-shop system"),
            "{text}"
        );
        assert!(text.contains("VALIDATION_ERROR"), "{text}");
        assert!(text.contains("POST /contatos"), "{text}");
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_bling-ledger"))
            .args([
                "--database-url",
                &t.url,
                "failures",
                "--tenant",
                "shop-a",
                "--cause",
                "authorization_revoked",
            ])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success());
        assert!(text.contains("i4") && text.contains("parked"), "{text}");
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_bling-ledger"))
            .args([
                "--database-url",
                &t.url,
                "failures",
                "--tenant",
                "shop-a",
                "--cause",
                "nope",
            ])
            .output()
            .unwrap();
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains("--cause"));
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_bling-ledger"))
            .args([
                "--database-url",
                &t.url,
                "history",
                "--tenant",
                "shop-a",
                "--invoice",
                "missing",
            ])
            .output()
            .unwrap();
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains("no invoice missing"));
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_bling-ledger"))
            .args(["--database-url", &t.url, "projections", "status"])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && text.contains("invoice_sync") && text.contains("timeline"),
            "{text}"
        );
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_bling-ledger"))
            .args(["--database-url", &t.url, "projections", "rebuild", "nope"])
            .output()
            .unwrap();
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains("unknown projection"));
    }
}
both_backends!(scripted_sync, every_view_follows_a_real_sync);

#[test]
fn history_json_names_the_cause_and_advice() {
    // The JSON shape the console reads, on a row built in memory.
    let row = projections::invoices::InvoiceSync {
        tenant: "shop-a".into(),
        invoice_id: "i1".into(),
        customer_id: "c1".into(),
        number: "NF-1".into(),
        total_centavos: 17000,
        issue_date: "2026-11-25".into(),
        billed_at_ms: 0,
        billed_position: 1,
        content_version: 1,
        synced_version: None,
        bling_order_id: None,
        bling_number: None,
        situacao_id: None,
        situacao_name: None,
        situacao_position: None,
        nfe_id: None,
        cancelled: false,
        cancelled_position: None,
        cancel_reason: None,
        last_outcome: projections::invoices::Outcome::Failed,
        state: projections::invoices::SyncState::Failed,
        last_cause_kind: Some("rate_limited".into()),
        last_cause_message: Some("429".into()),
        last_failure_at_ms: Some(0),
        retry_at_ms: Some(1000),
        attempts: 1,
        failures_total: 1,
        updated_at_ms: 0,
        last_position: 2,
        nfe_status: None,
        nfe_numero: None,
        nfe_serie: None,
        nfe_chave: None,
        nfe_link_danfe: None,
        nfe_link_pdf: None,
        nfe_reason: None,
        divergence: None,
    };
    let v = queries::invoice_json(&row);
    assert_eq!(v["state"], "failed");
    assert_eq!(v["last_cause"]["kind"], "rate_limited");
    assert!(v["last_cause"]["advice"]
        .as_str()
        .unwrap()
        .contains("retried automatically"));
    assert_eq!(v["retry_at"], "1970-01-01T00:00:01.000Z");
    assert_eq!(v["total"], "R$ 170,00");
}
