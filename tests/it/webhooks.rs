//! Bling talks back (issue #14): the webhook intake (signature, storage before the answer,
//! dedupe, unknown companies, a flood), the NF-e followed to SEFAZ's answer by webhook and by
//! polling, a rejection fixed and retried, and an order changed in Bling as a divergence. All
//! against the sandbox over real HTTP, on both backends.

use std::time::{Duration, Instant};

use crate::support::*;
use bling_ledger::bling::webhooks::sign;
use bling_ledger::sandbox::{
    FaultConfig, FaultRule, SandboxConfig, SefazRules, WebhookFaults, WebhookSubscription,
};
use bling_ledger::store::log::{LogFilter, RecordedEvent};
use bling_ledger::store::sync_work::Kind;
use bling_ledger::store::Db;
use serde_json::{json, Value};

const SECRET: &str = SandboxConfig::DEMO_CLIENT_SECRET;
const APP: &str = SandboxConfig::DEMO_CLIENT_ID;

async fn stack(
    t: &TestDb,
    sync: impl FnOnce(&mut bling_ledger::server::SyncConfig) + Send + 'static,
) -> Stack {
    Stack::start_with(
        &t.url,
        |s| s.rate_limit_per_sec = 0,
        |_| {},
        move |c| {
            c.client.rate_limit_per_sec = 0;
            c.settings.generate_nfe = bling_ledger::sync::NfeTenants::All;
            sync(c);
        },
    )
    .await
}

/// Bling's app settings: deliveries of `order` and `invoice` to the ledger.
fn subscribe(stack: &Stack) {
    let mut sub = WebhookSubscription::new(
        format!("{}/webhooks/bling", stack.server.base_url()),
        &["order", "invoice"],
    );
    sub.first_retry_ms = 100;
    stack.sandbox.set_webhook(APP, Some(sub));
}

async fn invoice_events(db: &Db, invoice: &str) -> Vec<RecordedEvent> {
    settle(db).await;
    let filter = LogFilter {
        aggregate_type: Some("Invoice".into()),
        aggregate_id: Some(format!("shop-a/{invoice}")),
        ..Default::default()
    };
    bling_ledger::store::log::read_from(db, 0, 10_000, &filter)
        .await
        .unwrap()
}

async fn count(db: &Db, invoice: &str, event_type: &str) -> usize {
    invoice_events(db, invoice)
        .await
        .iter()
        .filter(|e| e.event_type == event_type)
        .count()
}

async fn wait_for(db: &Db, invoice: &str, event_type: &str, n: usize) -> bool {
    eventually(30, || async { count(db, invoice, event_type).await >= n }).await
}

/// Connects shop-a, registers c1 and bills i1; waits for its NF-e to be generated.
async fn billed_with_nfe(stack: &Stack, t: &TestDb, tax_id: Option<&str>) -> i64 {
    assert_eq!(stack.connect("shop-a").await.0, 200);
    let mut customer = customer_body("Maria");
    if let Some(d) = tax_id {
        customer["tax_id"] = json!(d);
    }
    let (s, b) = call(
        stack,
        "PUT",
        "/v1/tenants/shop-a/customers/c1",
        Some(&customer),
    )
    .await;
    assert_eq!(s, 201, "{b}");
    let (s, b) = call(
        stack,
        "POST",
        "/v1/tenants/shop-a/invoices/i1/bill",
        Some(&invoice_body("c1", "NF-1")),
    )
    .await;
    assert_eq!(s, 201, "{b}");
    assert!(
        wait_for(&t.db, "i1", "NfeGenerated", 1).await,
        "NF-e generated"
    );
    stack.sandbox.nfes("shop-a")[0]["id"].as_i64().unwrap()
}

async fn post_raw(stack: &Stack, body: &[u8], signature: Option<&str>) -> (u16, Value) {
    let mut req = stack
        .http
        .post(format!("{}/webhooks/bling", stack.server.base_url()))
        .header("content-type", "application/json")
        .body(body.to_vec());
    if let Some(s) = signature {
        req = req.header("X-Bling-Signature-256", s);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// The clerk corrects customer c1's CPF; waits until Bling's contato has it.
async fn fix_cpf(stack: &Stack, customer: &mut Value, fixed: &str) {
    customer["tax_id"] = json!(fixed);
    let (s, b) = call(
        stack,
        "PUT",
        "/v1/tenants/shop-a/customers/c1",
        Some(customer),
    )
    .await;
    assert!(s == 200 || s == 201, "{s} {b}");
    assert!(
        eventually(20, || async {
            stack.sandbox.contatos("shop-a")[0]["numeroDocumento"]
                .as_str()
                .is_some_and(|d| {
                    d.chars().filter(char::is_ascii_digit).collect::<String>() == fixed
                })
        })
        .await,
        "the fixed CPF reached Bling's contato"
    );
}

/// A delivery as Bling writes it (PHP escapes `/` and non-ASCII).
fn envelope(event_id: &str, company: &str, event: &str, data: Value) -> Vec<u8> {
    json!({"eventId": event_id, "date": "2026-12-03T09:00:00Z", "version": "v1",
           "event": event, "companyId": company, "data": data})
    .to_string()
    .replace('/', "\\/")
    .into_bytes()
}

fn company(stack: &Stack) -> String {
    stack.sandbox.empresa("shop-a").unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string()
}

async fn deliveries(stack: &Stack) -> Value {
    let (s, b) = call(stack, "GET", "/v1/tenants/shop-a/webhooks", None).await;
    assert_eq!(s, 200, "{b}");
    b
}

/// Valid, invalid, missing and re-serialized signatures: only the valid one is stored; the
/// refusals are visible to support with what they claimed.
async fn signatures_are_checked_on_raw_bytes(t: TestDb) {
    let stack = stack(&t, |_| {}).await;
    assert_eq!(stack.connect("shop-a").await.0, 200);
    let company = company(&stack);
    let body = envelope(
        "ev-1",
        &company,
        "order.updated",
        json!({"id": 1, "numeroLoja": "a/b", "contato": {"id": 0}}),
    );
    let good = sign(SECRET.as_bytes(), &body);
    let (s, b) = post_raw(&stack, &body, Some(&good)).await;
    assert_eq!(s, 202, "{b}");
    assert_eq!(b["tenant"], "shop-a");

    let (s, b) = post_raw(&stack, &body, Some(&sign(b"not-the-secret", &body))).await;
    assert_eq!(s, 401);
    assert_eq!(b["error"]["code"], "signature_mismatch");
    let (s, b) = post_raw(&stack, &body, None).await;
    assert_eq!(s, 401);
    assert_eq!(b["error"]["code"], "signature_missing");
    let (s, _) = post_raw(&stack, &body, Some("sha256=zz")).await;
    assert_eq!(s, 401);
    // The same JSON written again (no `\/`): other bytes, so the signature no longer holds.
    let again = serde_json::to_vec(&serde_json::from_slice::<Value>(&body).unwrap()).unwrap();
    assert_ne!(again, body);
    let (s, b) = post_raw(&stack, &again, Some(&good)).await;
    assert_eq!(s, 401, "{b}");

    let listed = deliveries(&stack).await;
    let rows = listed["deliveries"].as_array().unwrap();
    assert_eq!(
        rows.len(),
        1,
        "only the signed delivery is stored: {listed}"
    );
    assert_eq!(rows[0]["event_id"], "ev-1");
    assert_eq!(listed["company_id"], company.as_str());
    let refused = listed["refused"].as_array().unwrap();
    assert_eq!(refused.len(), 4, "{listed}");
    assert!(refused.iter().all(|r| r["claimed_event_id"] == "ev-1"));
    stack.stop().await;
}
both_backends!(signatures, signatures_are_checked_on_raw_bytes);

/// A delivery for a company no tenant has is acknowledged (never 5xx), kept, shown to
/// support, and taken up once a tenant connects with that company.
async fn unknown_company_is_kept_then_taken_up(t: TestDb) {
    let stack = stack(&t, |_| {}).await;
    assert!(stack.sandbox.empresa("shop-a").is_none(), "no account yet");
    // The account exists in Bling before the shop connects (its company id is known).
    stack.sandbox.add_forma_pagamento("shop-a", "Dinheiro", 1);
    let company = company_of(&stack);
    let body = envelope("ev-u", &company, "order.deleted", json!({"id": 5}));
    let (s, b) = post_raw(&stack, &body, Some(&sign(SECRET.as_bytes(), &body))).await;
    assert_eq!(s, 202, "{b}");
    assert!(b["tenant"].is_null());
    let (s, b) = call(&stack, "GET", "/v1/webhooks/unmatched", None).await;
    assert_eq!(s, 200);
    assert_eq!(b["deliveries"][0]["state"], "unknown_company", "{b}");
    assert_eq!(stack.connect("shop-a").await.0, 200);
    assert!(
        eventually(20, || async {
            let b = deliveries(&stack).await;
            b["deliveries"][0]["event_id"] == "ev-u"
                && b["deliveries"][0]["state"] != "unknown_company"
        })
        .await,
        "taken up for shop-a: {}",
        deliveries(&stack).await
    );
    stack.stop().await;
}
both_backends!(unknown_company, unknown_company_is_kept_then_taken_up);

fn company_of(stack: &Stack) -> String {
    stack.sandbox.empresa("shop-a").unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string()
}

/// The shop sends the NF-e from Bling's screen; Bling's `invoice` webhooks (each delivered
/// twice, some held back so they arrive out of order) tell the ledger: one `NfeAuthorized`,
/// the invoice `nfe_issued` with number, key and links.
async fn nfe_authorized_via_webhook_once_despite_duplicates(t: TestDb) {
    let stack = stack(&t, |_| {}).await;
    subscribe(&stack);
    stack.sandbox.set_webhook_faults(
        APP,
        WebhookFaults {
            duplicate: 1.0,
            reorder: 0.5,
            reorder_hold_ms: 300,
            ..WebhookFaults::default()
        },
    );
    let nfe_id = billed_with_nfe(&stack, &t, None).await;
    // Past the follow-up's second read (2 s), so its next one (5 s later) comes after the
    // webhook: the webhook alone must tell.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        stack.sandbox.screen_send_nfe("shop-a", nfe_id),
        Some(Ok(()))
    );
    assert!(wait_for(&t.db, "i1", "NfeAuthorized", 1).await);
    // Let every duplicate and late delivery land and be processed.
    assert!(
        eventually(20, || async {
            let b = deliveries(&stack).await;
            b["deliveries"]
                .as_array()
                .unwrap()
                .iter()
                .all(|d| d["state"] != "received")
                && stack.sandbox.webhooks_queued() == 0
        })
        .await
    );
    assert_eq!(count(&t.db, "i1", "NfeAuthorized").await, 1, "one outcome");
    let listed = deliveries(&stack).await;
    assert!(
        listed["deliveries"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["times_received"].as_i64() >= Some(2)),
        "duplicates counted on one row: {listed}"
    );
    let events = invoice_events(&t.db, "i1").await;
    let authorized = events
        .iter()
        .find(|e| e.event_type == "NfeAuthorized")
        .unwrap();
    assert_eq!(authorized.payload["NfeAuthorized"]["source"], "webhook");
    let nfe = &stack.sandbox.nfes("shop-a")[0];
    assert!(
        eventually(10, || async {
            let (_, inv) = call(&stack, "GET", "/v1/tenants/shop-a/invoices/i1", None).await;
            inv["state"] == "nfe_issued"
        })
        .await
    );
    let (_, inv) = call(&stack, "GET", "/v1/tenants/shop-a/invoices/i1", None).await;
    let got = &inv["bling"]["nfe"];
    assert_eq!(got["status"], "authorized", "{inv}");
    assert_eq!(got["chave_acesso"], nfe["chaveAcesso"]);
    assert_eq!(got["numero"], nfe["numero"]);
    assert_eq!(got["link_danfe"], nfe["linkDanfe"]);
    assert_eq!(got["chave_acesso"].as_str().unwrap().len(), 44);
    stack.stop().await;
}
both_backends!(
    nfe_by_webhook,
    nfe_authorized_via_webhook_once_despite_duplicates
);

/// Reordered by hand: a stale "pendente" delivery after the "autorizada" one, and both twice,
/// change nothing more: the ledger records what `GET /nfe/{id}` shows.
async fn reordered_deliveries_leave_one_outcome(t: TestDb) {
    let stack = stack(&t, |_| {}).await;
    let nfe_id = billed_with_nfe(&stack, &t, None).await;
    stack.sandbox.screen_send_nfe("shop-a", nfe_id);
    let company = company_of(&stack);
    let updated = envelope(
        "ev-upd",
        &company,
        "invoice.updated",
        json!({"id": nfe_id, "situacao": 5}),
    );
    let created = envelope(
        "ev-new",
        &company,
        "invoice.created",
        json!({"id": nfe_id, "situacao": 1}),
    );
    for body in [&updated, &created, &updated, &created] {
        let (s, b) = post_raw(&stack, body, Some(&sign(SECRET.as_bytes(), body))).await;
        assert_eq!(s, 202, "{b}");
    }
    assert!(wait_for(&t.db, "i1", "NfeAuthorized", 1).await);
    assert!(
        eventually(20, || async {
            deliveries(&stack).await["deliveries"]
                .as_array()
                .unwrap()
                .iter()
                .all(|d| d["state"] == "processed")
        })
        .await
    );
    assert_eq!(count(&t.db, "i1", "NfeAuthorized").await, 1);
    let listed = deliveries(&stack).await;
    assert_eq!(
        listed["deliveries"].as_array().unwrap().len(),
        2,
        "{listed}"
    );
    stack.stop().await;
}
both_backends!(reordered, reordered_deliveries_leave_one_outcome);

/// No webhooks configured: the shop sends the NF-e from Bling's screen and the ledger learns
/// of it by polling `GET /nfe/{id}` alone.
async fn nfe_authorized_via_polling_alone(t: TestDb) {
    let stack = stack(&t, |_| {}).await;
    let nfe_id = billed_with_nfe(&stack, &t, None).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(count(&t.db, "i1", "NfeAuthorized").await, 0);
    stack.sandbox.screen_send_nfe("shop-a", nfe_id);
    assert!(wait_for(&t.db, "i1", "NfeAuthorized", 1).await);
    let events = invoice_events(&t.db, "i1").await;
    let authorized = events
        .iter()
        .find(|e| e.event_type == "NfeAuthorized")
        .unwrap();
    assert_eq!(authorized.payload["NfeAuthorized"]["source"], "poll");
    assert!(
        stack
            .sandbox
            .call_log()
            .iter()
            .filter(|c| c.path.ends_with(&format!("/nfe/{nfe_id}")))
            .count()
            >= 2,
        "polled more than once"
    );
    stack.stop().await;
}
both_backends!(nfe_by_polling, nfe_authorized_via_polling_alone);

/// generate_and_send: SEFAZ rejects the recipient's CPF; the rejection is a classified
/// failure (customer record); the shop fixes the CPF, support retries, the NF-e is authorized.
async fn nfe_rejected_then_fixed_and_retried(t: TestDb) {
    let stack = stack(&t, |_| {}).await;
    subscribe(&stack);
    let bad = cpf(77);
    stack.sandbox.set_sefaz_rules(
        "shop-a",
        SefazRules {
            reject_documents: vec![bad.clone()],
            deny_documents: vec![],
        },
    );
    assert_eq!(stack.connect("shop-a").await.0, 200);
    let (s, b) = call(
        &stack,
        "PUT",
        "/v1/tenants/shop-a/nfe-mode",
        Some(&json!({"mode": "generate_and_send"})),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    let (s, b) = call(
        &stack,
        "PUT",
        "/v1/tenants/shop-a/nfe-mode",
        Some(&json!({"mode": "sometimes"})),
    )
    .await;
    assert_eq!(s, 422, "{b}");
    assert_eq!(b["error"]["fields"][0]["field"], "mode");
    let mut customer = customer_body("Maria");
    customer["tax_id"] = json!(bad);
    let (s, _) = call(
        &stack,
        "PUT",
        "/v1/tenants/shop-a/customers/c1",
        Some(&customer),
    )
    .await;
    assert_eq!(s, 201);
    let (s, _) = call(
        &stack,
        "POST",
        "/v1/tenants/shop-a/invoices/i1/bill",
        Some(&invoice_body("c1", "NF-1")),
    )
    .await;
    assert_eq!(s, 201);
    assert!(
        eventually(30, || async {
            invoice_events(&t.db, "i1").await.iter().any(|e| {
                e.event_type == "SyncFailed"
                    && e.payload["SyncFailed"]["cause"]["kind"] == "nfe_rejected"
            })
        })
        .await
    );
    let events = invoice_events(&t.db, "i1").await;
    let failed = events
        .iter()
        .filter(|e| {
            e.event_type == "SyncFailed"
                && e.payload["SyncFailed"]["cause"]["kind"] == "nfe_rejected"
        })
        .collect::<Vec<_>>();
    assert_eq!(failed.len(), 1, "one rejection recorded");
    let cause = &failed[0].payload["SyncFailed"]["cause"];
    assert_eq!(cause["fix"], "customer_record", "{cause}");
    assert!(cause["reason"]
        .as_str()
        .unwrap()
        .contains("CPF do destinat"));
    assert!(
        eventually(10, || async {
            let (_, f) = call(
                &stack,
                "GET",
                "/v1/tenants/shop-a/failures?cause=nfe_rejected",
                None,
            )
            .await;
            f["failures"].as_array().is_some_and(|i| !i.is_empty())
        })
        .await,
        "in the failure audit"
    );
    // Retrying before anything changed is allowed; retrying an authorized NF-e is not.
    fix_cpf(&stack, &mut customer, &cpf(78)).await;
    let (s, b) = call(
        &stack,
        "POST",
        "/v1/tenants/shop-a/invoices/i1/nfe/retry",
        None,
    )
    .await;
    assert_eq!(s, 202, "{b}");
    assert!(
        wait_for(&t.db, "i1", "NfeAuthorized", 1).await,
        "authorized after the fix"
    );
    assert_eq!(count(&t.db, "i1", "NfeSent").await, 2, "sent twice");
    let (s, b) = call(
        &stack,
        "POST",
        "/v1/tenants/shop-a/invoices/i1/nfe/retry",
        None,
    )
    .await;
    assert_eq!(s, 409, "{b}");
    assert_eq!(stack.sandbox.nfes("shop-a")[0]["situacao"], 5);
    stack.stop().await;
}
both_backends!(nfe_rejected, nfe_rejected_then_fixed_and_retried);

/// A late delivery of the first rejection, processed after support asked for a retry and
/// before the ledger's own send of it: Bling still shows the old refusal, which is not recorded
/// again (recorded, it ended the retry's follow-up before its send, and the NF-e stayed
/// rejected). The send's own read records the new answer.
async fn a_late_refusal_after_a_retry_is_not_recorded_again(t: TestDb) {
    let stack = stack(&t, |_| {}).await;
    let bad = cpf(77);
    stack.sandbox.set_sefaz_rules(
        "shop-a",
        SefazRules {
            reject_documents: vec![bad.clone()],
            deny_documents: vec![],
        },
    );
    assert_eq!(stack.connect("shop-a").await.0, 200);
    let mode = json!({"mode": "generate_and_send"});
    let (s, b) = call(&stack, "PUT", "/v1/tenants/shop-a/nfe-mode", Some(&mode)).await;
    assert_eq!(s, 200, "{b}");
    let mut customer = customer_body("Maria");
    customer["tax_id"] = json!(bad);
    let (s, _) = call(
        &stack,
        "PUT",
        "/v1/tenants/shop-a/customers/c1",
        Some(&customer),
    )
    .await;
    assert_eq!(s, 201);
    let bill = invoice_body("c1", "NF-1");
    let (s, _) = call(
        &stack,
        "POST",
        "/v1/tenants/shop-a/invoices/i1/bill",
        Some(&bill),
    )
    .await;
    assert_eq!(s, 201);
    let rejected = || async {
        invoice_events(&t.db, "i1")
            .await
            .iter()
            .filter(|e| {
                e.event_type == "SyncFailed"
                    && e.payload["SyncFailed"]["cause"]["kind"] == "nfe_rejected"
            })
            .count()
    };
    assert!(eventually(30, || async { rejected().await == 1 }).await);
    fix_cpf(&stack, &mut customer, &cpf(78)).await;
    // The ledger's send of the retry is slow to reach Bling; meanwhile the first rejection's
    // delivery arrives late.
    stack.sandbox.set_faults(
        Some("shop-a"),
        FaultConfig::none().with_rule(
            FaultRule::route("POST", "/nfe")
                .latency(Duration::from_secs(8), Duration::from_secs(8)),
        ),
    );
    let (s, b) = call(
        &stack,
        "POST",
        "/v1/tenants/shop-a/invoices/i1/nfe/retry",
        None,
    )
    .await;
    assert_eq!(s, 202, "{b}");
    let nfe_id = stack.sandbox.nfes("shop-a")[0]["id"].as_i64().unwrap();
    let late = envelope(
        "ev-late-refusal",
        &company(&stack),
        "invoice.updated",
        json!({"id": nfe_id, "situacao": 4}),
    );
    let (s, b) = post_raw(&stack, &late, Some(&sign(SECRET.as_bytes(), &late))).await;
    assert_eq!(s, 202, "{b}");
    assert!(
        eventually(20, || async {
            deliveries(&stack).await["deliveries"]
                .as_array()
                .unwrap()
                .iter()
                .any(|d| d["event_id"] == "ev-late-refusal" && d["state"] == "processed")
        })
        .await,
        "the late delivery is processed: {}",
        deliveries(&stack).await
    );
    assert_eq!(rejected().await, 1, "the old refusal is not recorded again");
    stack
        .sandbox
        .set_faults(Some("shop-a"), FaultConfig::none());
    assert!(
        wait_for(&t.db, "i1", "NfeAuthorized", 1).await,
        "authorized after the retry"
    );
    stack.stop().await;
}
both_backends!(
    late_refusal,
    a_late_refusal_after_a_retry_is_not_recorded_again
);

/// The NF-e sent for an invoice the pet shop cancelled a moment before (issue #14; the demo's
/// NF-1003: cancelled at position 74, its NF-e sent at 77 and authorized). generate_and_send,
/// one request a second: the NF-e job loads the invoice (not cancelled), and its
/// `POST /nfe/{id}/enviar` waits about a second in the shop's rate limiter behind gerar-nfe;
/// the pet shop cancels the invoice during that wait. The send is checked again after the
/// wait, right before it leaves: Bling never receives it, no `NfeSent`, and the job ends.
async fn an_nfe_is_not_sent_for_an_invoice_cancelled_while_its_send_waits(t: TestDb) {
    let stack = stack(&t, |c| c.client.rate_limit_per_sec = 1).await;
    assert_eq!(stack.connect("shop-a").await.0, 200);
    // The worker's client: a call counts in its limiter's daily total when it enters the
    // limiter, before its wait, and in the sandbox's log once Bling answered it. More of the
    // former than the latter is a call waiting (or on the wire). Nothing is under way now.
    let client = stack.server.sync.as_ref().unwrap().client().clone();
    let tenant = aggregates::ids::TenantId::parse("shop-a").unwrap();
    let answered = |stack: &Stack| {
        stack
            .sandbox
            .call_log()
            .iter()
            .filter(|c| c.account.as_deref() == Some("shop-a") && !c.path.contains("/oauth/"))
            .count() as i64
    };
    let waiting = |stack: &Stack| client.used_today(&tenant) as i64 - answered(stack);
    let at_rest = waiting(&stack);
    let mode = json!({"mode": "generate_and_send"});
    let (s, b) = call(&stack, "PUT", "/v1/tenants/shop-a/nfe-mode", Some(&mode)).await;
    assert_eq!(s, 200, "{b}");
    let (s, b) = call(
        &stack,
        "PUT",
        "/v1/tenants/shop-a/customers/c1",
        Some(&customer_body("Maria")),
    )
    .await;
    assert_eq!(s, 201, "{b}");
    // gerar-nfe is the invoice job's last call; once Bling answered it, the next call to enter
    // the limiter is the NF-e job's send, after its job loaded the invoice. The send waits for
    // the slot a second after gerar-nfe's, unless the NF-e job came later than that (a loaded
    // machine): such a round proves nothing, its NF-e is sent, and the next invoice tries
    // again.
    let gerar_answered = |stack: &Stack| {
        stack
            .sandbox
            .call_log()
            .into_iter()
            .filter(|c| c.path.ends_with("/gerar-nfe") && c.status.is_some())
            .collect::<Vec<_>>()
    };
    let sends = |stack: &Stack| {
        stack
            .sandbox
            .call_log()
            .into_iter()
            .filter(|c| c.method == "POST" && c.path.ends_with("/enviar"))
            .count()
    };
    let mut proven = None;
    for round in 1..=3usize {
        let invoice = format!("i{round}");
        let (s, b) = call(
            &stack,
            "POST",
            &format!("/v1/tenants/shop-a/invoices/{invoice}/bill"),
            Some(&invoice_body("c1", &format!("NF-{round}"))),
        )
        .await;
        assert_eq!(s, 201, "{b}");
        let deadline = Instant::now() + Duration::from_secs(30);
        // Some(true): the send is waiting with time to spare; Some(false): too late for this
        // round.
        let mut queued = None;
        while queued.is_none() {
            assert!(Instant::now() < deadline, "the NF-e's send never queued");
            if sends(&stack) >= round {
                queued = Some(false);
            } else if let Some(gerar) = gerar_answered(&stack).get(round - 1) {
                if waiting(&stack) > at_rest {
                    let answered_at =
                        gerar.at + chrono::Duration::milliseconds(gerar.duration_ms as i64);
                    let since = chrono::Utc::now() - answered_at;
                    queued = Some(since < chrono::Duration::milliseconds(500));
                }
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        if queued == Some(true) {
            proven = Some((round, invoice));
            break;
        }
        // Too late to cancel during the wait: let this NF-e go its way before the next round.
        assert!(
            eventually(30, || async {
                job_state(&t.db, Kind::Nfe, &invoice).await.as_deref() == Some("done")
                    && waiting(&stack) == at_rest
            })
            .await,
            "round {round}'s NF-e settles"
        );
    }
    let Some((round, invoice)) = proven else {
        panic!("in three rounds the NF-e job never reached the limiter before its slot");
    };
    let (s, b) = call(
        &stack,
        "POST",
        &format!("/v1/tenants/shop-a/invoices/{invoice}/cancel"),
        Some(&json!({"reason": "desistiu"})),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    assert!(
        eventually(20, || async {
            job_state(&t.db, Kind::Nfe, &invoice).await.as_deref() == Some("done")
        })
        .await,
        "the NF-e job ends"
    );
    // The cancellation reaches Bling's order; by then any send would have left long ago.
    assert!(
        eventually(20, || async {
            let (_, inv) = call(
                &stack,
                "GET",
                &format!("/v1/tenants/shop-a/invoices/{invoice}"),
                None,
            )
            .await;
            inv["state"] == "cancelled"
        })
        .await,
        "the invoice is cancelled, its order too"
    );
    let nfe = stack.sandbox.nfes("shop-a")[round - 1].clone();
    let nfe_id = nfe["id"].as_i64().unwrap();
    let sent: Vec<_> = stack
        .sandbox
        .call_log()
        .into_iter()
        .filter(|c| c.method == "POST" && c.path.contains(&format!("/nfe/{nfe_id}/enviar")))
        .collect();
    assert!(sent.is_empty(), "Bling received the send: {sent:?}");
    assert_eq!(count(&t.db, &invoice, "NfeSent").await, 0, "no NfeSent");
    assert_eq!(nfe["situacao"], 1, "the NF-e stays Pendente in Bling");
    let (_, inv) = call(
        &stack,
        "GET",
        &format!("/v1/tenants/shop-a/invoices/{invoice}"),
        None,
    )
    .await;
    assert_eq!(inv["bling"]["nfe"]["status"], "generated", "{inv}");
    assert!(inv["bling"]["nfe"]["attention"].is_null(), "{inv}");
    stack.stop().await;
}
both_backends!(
    cancelled_while_send_waits,
    an_nfe_is_not_sent_for_an_invoice_cancelled_while_its_send_waits
);

/// What no check can stop: the pet shop cancels an invoice whose NF-e SEFAZ has authorized (or
/// authorizes, the cancellation having landed while the send was on the wire). The invoice is
/// cancelled and its answer says the NF-e stands and must be cancelled in Bling within 24 h;
/// once the shop does, the ledger records it and the note goes.
async fn a_cancelled_invoice_with_an_authorized_nfe_tells_support(t: TestDb) {
    let stack = stack(&t, |_| {}).await;
    let nfe_id = billed_with_nfe(&stack, &t, None).await;
    assert_eq!(
        stack.sandbox.screen_send_nfe("shop-a", nfe_id),
        Some(Ok(()))
    );
    assert!(wait_for(&t.db, "i1", "NfeAuthorized", 1).await);
    let (s, b) = call(
        &stack,
        "POST",
        "/v1/tenants/shop-a/invoices/i1/cancel",
        Some(&json!({"reason": "desistiu"})),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    assert!(
        eventually(20, || async {
            let (_, inv) = call(&stack, "GET", "/v1/tenants/shop-a/invoices/i1", None).await;
            inv["state"] == "cancelled"
        })
        .await
    );
    let (_, inv) = call(&stack, "GET", "/v1/tenants/shop-a/invoices/i1", None).await;
    assert_eq!(inv["bling"]["nfe"]["status"], "authorized", "{inv}");
    let attention = inv["bling"]["nfe"]["attention"]
        .as_str()
        .unwrap_or_default();
    assert!(
        attention.contains("cancel the NF-e in Bling") && attention.contains("24 h"),
        "{inv}"
    );
    assert_eq!(
        stack.sandbox.screen_cancel_nfe("shop-a", nfe_id),
        Some(Ok(()))
    );
    let (s, b) = call(
        &stack,
        "POST",
        "/v1/tenants/shop-a/invoices/i1/refresh",
        None,
    )
    .await;
    assert_eq!(s, 202, "{b}");
    assert!(wait_for(&t.db, "i1", "NfeCancelled", 1).await);
    assert!(
        eventually(10, || async {
            let (_, inv) = call(&stack, "GET", "/v1/tenants/shop-a/invoices/i1", None).await;
            inv["bling"]["nfe"]["status"] == "cancelled"
                && inv["bling"]["nfe"]["attention"].is_null()
        })
        .await,
        "nothing left to do once Bling shows it cancelled"
    );
    stack.stop().await;
}
both_backends!(
    cancelled_with_authorized_nfe,
    a_cancelled_invoice_with_an_authorized_nfe_tells_support
);

/// Support's "read it now" is not lost to what happens meanwhile (the store's part, step by
/// step, no worker running): a watch run already under way when support asks, a read that
/// must wait for the invoice's own sync, and the watch's window opened again by a new change.
async fn a_read_support_asks_for_is_not_lost(t: TestDb) {
    use bling_ledger::store::now_ms;
    use bling_ledger::store::sync_work::{self, Outcome};
    let far = now_ms() + 3_600_000;
    let mut tx = t.db.begin().await.unwrap();
    sync_work::upsert(&mut tx, "shop-a", Kind::Invoice, "i1", "c1", 1, now_ms())
        .await
        .unwrap();
    sync_work::watch(&mut tx, "shop-a", "i1", "c1", 1, now_ms(), far)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let own = sync_work::get_job(&t.db, "shop-a", Kind::Invoice, "i1")
        .await
        .unwrap()
        .unwrap();
    sync_work::finish(&t.db, &own, &Outcome::Done)
        .await
        .unwrap();
    let due = || async {
        sync_work::next_job(&t.db, "shop-a")
            .await
            .unwrap()
            .filter(|j| j.kind == Kind::Watch)
    };
    assert!(
        due().await.is_none(),
        "the watch's first read is an hour away"
    );

    // Support asks; a run starts, and support asks again while it runs.
    assert!(sync_work::read_now(&t.db, "shop-a", "i1", "support asked")
        .await
        .unwrap());
    let running = due().await.expect("due at once");
    assert!(running.resume_reason.is_some());
    assert!(
        sync_work::read_now(&t.db, "shop-a", "i1", "support asked again")
            .await
            .unwrap()
    );
    let later = Outcome::Retry {
        at_ms: far,
        error: "watching".into(),
    };
    sync_work::finish(&t.db, &running, &later).await.unwrap();
    let again = due().await.expect("the second request runs at once");
    assert_eq!(again.resume_reason.as_deref(), Some("support asked again"));

    // It waits for the invoice's own sync: the request stands.
    let wait = Outcome::Wait {
        at_ms: now_ms(),
        error: "own sync pending".into(),
    };
    sync_work::finish(&t.db, &again, &wait).await.unwrap();
    let waited = due().await.expect("still due");
    assert_eq!(waited.resume_reason.as_deref(), Some("support asked again"));

    // A new change opens the window again: the read asked for stays due.
    let mut tx = t.db.begin().await.unwrap();
    sync_work::watch(&mut tx, "shop-a", "i1", "c1", 2, now_ms(), far)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let read = due().await.expect("the read asked for is not pushed back");
    assert_eq!(read.resume_reason.as_deref(), Some("support asked again"));

    // Once made, the schedule goes on.
    sync_work::finish(&t.db, &read, &later).await.unwrap();
    assert!(due().await.is_none());
    let after = sync_work::get_job(&t.db, "shop-a", Kind::Watch, "i1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (after.state.as_str(), after.resume_reason),
        ("pending", None)
    );
}
both_backends!(read_now_not_lost, a_read_support_asks_for_is_not_lost);

/// The shop cancels the order in Bling's screen: the `order` webhook shows a situação the
/// ledger did not set, recorded as a divergence (timeline, failure audit, invoice); support
/// pushes ours again and Bling's order is back at our situação.
async fn order_cancelled_in_bling_is_a_divergence(t: TestDb) {
    let stack = stack(&t, |c| {
        c.settings.generate_nfe = bling_ledger::sync::NfeTenants::None
    })
    .await;
    subscribe(&stack);
    assert_eq!(stack.connect("shop-a").await.0, 200);
    let (s, _) = call(
        &stack,
        "PUT",
        "/v1/tenants/shop-a/customers/c1",
        Some(&customer_body("Maria")),
    )
    .await;
    assert_eq!(s, 201);
    let (s, _) = call(
        &stack,
        "POST",
        "/v1/tenants/shop-a/invoices/i1/bill",
        Some(&invoice_body("c1", "NF-1")),
    )
    .await;
    assert_eq!(s, 201);
    assert!(wait_for(&t.db, "i1", "SituacaoChanged", 1).await);
    // Our own changes came back as webhooks too: none of them is a divergence.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(count(&t.db, "i1", "OrderDiverged").await, 0);
    let order = &stack.sandbox.pedidos("shop-a")[0];
    let order_id = order["id"].as_i64().unwrap();
    let ours = order["situacao"]["id"].as_i64().unwrap();
    let reads = |stack: &Stack| {
        stack
            .sandbox
            .call_log()
            .iter()
            .filter(|c| {
                c.method == "GET" && c.path.ends_with(&format!("/pedidos/vendas/{order_id}"))
            })
            .count()
    };
    assert_eq!(
        reads(&stack),
        0,
        "the echoes of our own changes cost no request"
    );
    let cancelado = stack
        .sandbox
        .account("shop-a")
        .unwrap()
        .situacao_ids
        .cancelado;
    stack
        .sandbox
        .screen_set_situacao("shop-a", order_id, cancelado)
        .unwrap();
    assert!(wait_for(&t.db, "i1", "OrderDiverged", 1).await);
    assert_eq!(reads(&stack), 1, "a difference is confirmed with one GET");
    let events = invoice_events(&t.db, "i1").await;
    let d = &events
        .iter()
        .find(|e| e.event_type == "OrderDiverged")
        .unwrap()
        .payload["OrderDiverged"]["divergence"];
    assert_eq!(d["expected"]["situacao_id"], ours);
    assert_eq!(d["found"]["situacao_id"], cancelado);
    assert!(
        eventually(10, || async {
            let (_, f) = call(
                &stack,
                "GET",
                "/v1/tenants/shop-a/failures?cause=order_diverged",
                None,
            )
            .await;
            f["failures"].as_array().is_some_and(|i| !i.is_empty())
        })
        .await
    );
    let (_, inv) = call(&stack, "GET", "/v1/tenants/shop-a/invoices/i1", None).await;
    assert_eq!(
        inv["bling"]["divergence"]["found"]["situacao_id"], cancelado,
        "{inv}"
    );
    let (_, h) = call(
        &stack,
        "GET",
        "/v1/tenants/shop-a/invoices/i1/history",
        None,
    )
    .await;
    assert!(h.to_string().contains("differs from ours"), "{h}");
    let (s, b) = call(
        &stack,
        "POST",
        "/v1/tenants/shop-a/invoices/i1/divergence",
        Some(&json!({"choice": "maybe"})),
    )
    .await;
    assert_eq!(s, 422, "{b}");
    let (s, b) = call(
        &stack,
        "POST",
        "/v1/tenants/shop-a/invoices/i1/divergence",
        Some(&json!({"choice": "push_ours"})),
    )
    .await;
    assert_eq!(s, 202, "{b}");
    assert!(
        eventually(20, || async {
            stack.sandbox.pedidos("shop-a")[0]["situacao"]["id"] == ours
        })
        .await,
        "ours pushed again"
    );
    assert!(wait_for(&t.db, "i1", "SituacaoChanged", 2).await);
    stack.stop().await;
}
both_backends!(divergence, order_cancelled_in_bling_is_a_divergence);

/// The delivery is stored before the 2xx: a process that answers and then dies (here: one
/// that runs no processor) loses nothing; the next process applies it.
async fn a_crash_after_the_answer_loses_nothing(t: TestDb) {
    let stack = stack(&t, |_| {}).await;
    let nfe_id = billed_with_nfe(&stack, &t, None).await;
    let company = company_of(&stack);
    let sandbox = stack.sandbox.clone();
    stack.server.stop().await.unwrap();

    let settings = |run_worker: bool| bling_ledger::server::Settings {
        database_url: t.url.clone(),
        max_connections: 8,
        tokens: test_tokens(),
        auth: Some(auth_settings_for(&sandbox, test_key_ring())),
        sync: bling_ledger::server::SyncConfig {
            run_worker,
            bling_api_url: sandbox.base_url(),
            ..Default::default()
        },
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dying = bling_ledger::server::Server::start(settings(false), listener)
        .await
        .unwrap();
    sandbox.screen_send_nfe("shop-a", nfe_id);
    let body = envelope(
        "ev-crash",
        &company,
        "invoice.updated",
        json!({"id": nfe_id, "situacao": 5}),
    );
    let r = reqwest::Client::new()
        .post(format!("{}/webhooks/bling", dying.base_url()))
        .header("X-Bling-Signature-256", sign(SECRET.as_bytes(), &body))
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    dying.stop().await.unwrap();
    assert_eq!(
        count(&t.db, "i1", "NfeAuthorized").await,
        0,
        "not applied yet"
    );

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let next = bling_ledger::server::Server::start(settings(true), listener)
        .await
        .unwrap();
    assert!(
        wait_for(&t.db, "i1", "NfeAuthorized", 1).await,
        "applied after the restart"
    );
    let r: Value = reqwest::Client::new()
        .get(format!("{}/v1/tenants/shop-a/webhooks", next.base_url()))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        eventually(20, || async {
            let r: Value = reqwest::Client::new()
                .get(format!("{}/v1/tenants/shop-a/webhooks", next.base_url()))
                .bearer_auth(ADMIN_TOKEN)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            r["deliveries"][0]["state"] == "processed"
        })
        .await,
        "the stored delivery was processed: {r}"
    );
    next.stop().await.unwrap();
    sandbox.shutdown().await;
}
both_backends!(crash_after_answer, a_crash_after_the_answer_loses_nothing);

/// 10,000 signed deliveries, 32 at a time, while the pet shop keeps billing: every delivery
/// is answered 202 well inside Bling's 5 s, and every ingest request succeeds.
async fn a_flood_never_blocks_ingest(t: TestDb) {
    let stack = stack(&t, |c| {
        c.settings.generate_nfe = bling_ledger::sync::NfeTenants::None
    })
    .await;
    assert_eq!(stack.connect("shop-a").await.0, 200);
    let company = company_of(&stack);
    let (s, _) = call(
        &stack,
        "PUT",
        "/v1/tenants/shop-a/customers/c1",
        Some(&customer_body("Maria")),
    )
    .await;
    assert_eq!(s, 201);
    let url = format!("{}/webhooks/bling", stack.server.base_url());
    let http = reqwest::Client::new();
    let flood = {
        let (url, http, company) = (url.clone(), http.clone(), company.clone());
        tokio::spawn(async move {
            use futures::StreamExt;
            let answers: Vec<(u16, Duration)> = futures::stream::iter(0..10_000)
                .map(|i| {
                    let (url, http) = (url.clone(), http.clone());
                    let body = envelope(
                        &format!("flood-{i}"),
                        &company,
                        "order.updated",
                        json!({"id": 900_000_000 + i}),
                    );
                    async move {
                        let started = Instant::now();
                        let r = http
                            .post(&url)
                            .header("X-Bling-Signature-256", sign(SECRET.as_bytes(), &body))
                            .body(body)
                            .send()
                            .await
                            .unwrap();
                        (r.status().as_u16(), started.elapsed())
                    }
                })
                .buffer_unordered(32)
                .collect()
                .await;
            answers
        })
    };
    let mut ingest = Vec::new();
    for i in 0..20 {
        let started = Instant::now();
        let (s, b) = call(
            &stack,
            "POST",
            &format!("/v1/tenants/shop-a/invoices/f{i}/bill"),
            Some(&invoice_body("c1", &format!("F-{i}"))),
        )
        .await;
        assert_eq!(s, 201, "{b}");
        ingest.push(started.elapsed());
    }
    let answers = flood.await.unwrap();
    assert_eq!(answers.len(), 10_000);
    assert!(answers.iter().all(|(s, _)| *s == 202));
    let slowest = answers.iter().map(|(_, d)| *d).max().unwrap();
    assert!(
        slowest < Duration::from_secs(5),
        "slowest answer {slowest:?}"
    );
    let slowest_ingest = ingest.iter().max().unwrap();
    assert!(
        *slowest_ingest < Duration::from_secs(5),
        "ingest {slowest_ingest:?}"
    );
    stack.stop().await;
}
both_backends!(flood, a_flood_never_blocks_ingest);

/// The sandbox on its own: a receiver that fails twice gets the delivery a third time, later
/// each time; one that always fails gets its resource disabled until re-enabled; a delivery
/// with a bad signature is followed by a correctly signed retry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sandbox_retries_then_disables_a_resource() {
    use axum::routing::post;
    use std::sync::{Arc, Mutex};
    #[derive(Default)]
    struct Seen {
        got: Vec<(Instant, bool, Value)>,
        fail_first: usize,
    }
    let seen = Arc::new(Mutex::new(Seen {
        fail_first: 2,
        ..Seen::default()
    }));
    let app = axum::Router::new().route(
        "/hook",
        post({
            let seen = seen.clone();
            move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                let seen = seen.clone();
                async move {
                    let ok = bling_ledger::bling::webhooks::verify(
                        SECRET.as_bytes(),
                        &body,
                        headers.get("x-bling-signature-256").map(|v| v.as_bytes()),
                    )
                    .is_ok();
                    let mut s = seen.lock().unwrap();
                    s.got
                        .push((Instant::now(), ok, serde_json::from_slice(&body).unwrap()));
                    if s.got.len() <= s.fail_first {
                        axum::http::StatusCode::INTERNAL_SERVER_ERROR
                    } else {
                        axum::http::StatusCode::OK
                    }
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let sb = crate::sandbox_support::start(crate::sandbox_support::unthrottled()).await;
    let api = crate::sandbox_support::login(&sb, "shop-a").await;
    let mut sub = WebhookSubscription::new(hook, &["order"]);
    sub.first_retry_ms = 100;
    sub.retry_window_ms = 60_000;
    sb.set_webhook(APP, Some(sub.clone()));
    let contato = api.contato("Ana", "529.982.247-25").await;
    let forma = sb.formas_pagamento("shop-a")[0]["id"].as_i64().unwrap();
    let (s, b) = api
        .post(
            "/pedidos/vendas",
            &json!({"contato": {"id": contato}, "data": "2026-11-25", "numeroLoja": "W-1",
                    "itens": [{"codigo": "B", "descricao": "Banho", "quantidade": 1, "valor": 10}],
                    "parcelas": [{"dataVencimento": "2026-11-25", "valor": 10, "formaPagamento": {"id": forma}}]}),
        )
        .await;
    assert_eq!(s, reqwest::StatusCode::CREATED, "{b}");
    let order_id = b["data"]["id"].as_i64().unwrap();
    assert!(eventually(10, || async { seen.lock().unwrap().got.len() >= 3 }).await);
    {
        let s = seen.lock().unwrap();
        let ids: Vec<_> = s.got.iter().map(|g| g.2["eventId"].clone()).collect();
        assert!(ids.iter().all(|i| *i == ids[0]), "the same event retried");
        assert!(s.got.iter().all(|g| g.1), "signed with the client secret");
        let e = &s.got[0].2;
        assert_eq!(e["event"], "order.created");
        assert_eq!(e["version"], "v1");
        assert_eq!(e["companyId"], sb.empresa("shop-a").unwrap()["id"]);
        assert_eq!(e["data"]["id"], order_id);
        assert_eq!(e["data"]["numeroLoja"], "W-1");
        let gaps: Vec<_> = s.got.windows(2).map(|w| w[1].0 - w[0].0).collect();
        assert!(gaps[1] > gaps[0], "growing intervals: {gaps:?}");
    }
    let attempts = sb.webhook_attempts(Some(APP));
    assert_eq!(
        attempts
            .iter()
            .map(|a| a.outcome.as_str())
            .collect::<Vec<_>>(),
        ["retrying", "retrying", "delivered"]
    );

    // A bad signature on the first attempt: refused by the receiver's check, retried signed.
    seen.lock().unwrap().fail_first = 0;
    seen.lock().unwrap().got.clear();
    sb.set_webhook_faults(
        APP,
        WebhookFaults {
            bad_signature: 1.0,
            ..WebhookFaults::default()
        },
    );
    sb.screen_set_situacao("shop-a", order_id, 9).unwrap();
    assert!(eventually(10, || async { !seen.lock().unwrap().got.is_empty() }).await);
    assert!(
        !seen.lock().unwrap().got[0].1,
        "the first attempt is badly signed"
    );

    // Always failing, with a short window: the resource is disabled, then re-enabled.
    sb.set_webhook_faults(APP, WebhookFaults::default());
    seen.lock().unwrap().fail_first = usize::MAX;
    sub.retry_window_ms = 500;
    sb.set_webhook(APP, Some(sub));
    sb.screen_set_situacao("shop-a", order_id, 12).unwrap();
    assert!(
        eventually(10, || async {
            sb.disabled_webhook_resources(APP) == ["order".to_string()]
        })
        .await
    );
    sb.screen_set_situacao("shop-a", order_id, 6).unwrap();
    assert!(sb
        .webhook_attempts(Some(APP))
        .iter()
        .any(|a| a.outcome == "dropped"));
    assert!(sb.enable_webhook_resource(APP, "order"));
    assert!(sb.disabled_webhook_resources(APP).is_empty());
    sb.shutdown().await;
}

/// Connects shop-a, registers c1 and bills `invoice`; waits until its order has our situação.
async fn billed_and_synced(stack: &Stack, t: &TestDb, invoice: &str) -> i64 {
    let (s, b) = call(
        stack,
        "POST",
        &format!("/v1/tenants/shop-a/invoices/{invoice}/bill"),
        Some(&invoice_body("c1", &format!("N-{invoice}"))),
    )
    .await;
    assert_eq!(s, 201, "{b}");
    assert!(wait_for(&t.db, invoice, "SituacaoChanged", 1).await);
    stack
        .sandbox
        .pedidos("shop-a")
        .iter()
        .find(|p| p["numeroLoja"] == invoice)
        .and_then(|p| p["id"].as_i64())
        .expect("the order in Bling")
}

async fn connected_with_customer(stack: &Stack) {
    assert_eq!(stack.connect("shop-a").await.0, 200);
    let (s, b) = call(
        stack,
        "PUT",
        "/v1/tenants/shop-a/customers/c1",
        Some(&customer_body("Maria")),
    )
    .await;
    assert_eq!(s, 201, "{b}");
}

async fn job_state(db: &Db, kind: Kind, invoice: &str) -> Option<String> {
    bling_ledger::sync::queue::get_job(db, "shop-a", kind, invoice)
        .await
        .unwrap()
        .map(|j| j.state)
}

fn order_reads(stack: &Stack, order_id: i64) -> usize {
    stack
        .sandbox
        .call_log()
        .iter()
        .filter(|c| c.method == "GET" && c.path.ends_with(&format!("/pedidos/vendas/{order_id}")))
        .count()
}

/// A shop without webhooks cancels the order in Bling's screen: the watch's poll of
/// `GET /pedidos/vendas/{id}` alone finds it, recorded as the same `OrderDiverged` a webhook
/// gives (source `poll`). The watch makes at most one read per offset, then ends.
async fn order_cancelled_in_bling_found_by_the_poll_alone(t: TestDb) {
    let offsets = vec![
        Duration::from_millis(400),
        Duration::from_millis(1200),
        Duration::from_millis(2500),
    ];
    let stack = stack(&t, move |c| {
        c.settings.generate_nfe = bling_ledger::sync::NfeTenants::None;
        c.settings.watch_offsets = offsets;
    })
    .await;
    connected_with_customer(&stack).await;
    let order_id = billed_and_synced(&stack, &t, "i1").await;
    let cancelado = stack
        .sandbox
        .account("shop-a")
        .unwrap()
        .situacao_ids
        .cancelado;
    stack
        .sandbox
        .screen_set_situacao("shop-a", order_id, cancelado)
        .unwrap();
    assert!(
        wait_for(&t.db, "i1", "OrderDiverged", 1).await,
        "found by the poll"
    );
    let events = invoice_events(&t.db, "i1").await;
    let d = &events
        .iter()
        .find(|e| e.event_type == "OrderDiverged")
        .unwrap()
        .payload["OrderDiverged"]["divergence"];
    assert_eq!(d["source"], "poll", "{d}");
    assert_eq!(d["found"]["situacao_id"], cancelado);
    assert!(
        stack.sandbox.webhook_attempts(None).is_empty(),
        "no webhook was configured"
    );
    assert!(
        eventually(20, || async {
            job_state(&t.db, Kind::Watch, "i1").await.as_deref() == Some("done")
        })
        .await,
        "the watch ends after its last offset"
    );
    let reads = order_reads(&stack, order_id);
    assert!(
        (1..=3).contains(&reads),
        "one read per offset at most: {reads}"
    );
    assert_eq!(
        count(&t.db, "i1", "OrderDiverged").await,
        1,
        "one divergence"
    );
    stack.stop().await;
}
both_backends!(
    divergence_by_poll,
    order_cancelled_in_bling_found_by_the_poll_alone
);

/// The shop deletes the order in Bling; no webhook and no scheduled read yet (the watch's
/// first read is 10 minutes away): support asks for a fresh read, which finds the order gone.
async fn order_deleted_in_bling_found_by_a_fresh_read(t: TestDb) {
    let stack = stack(&t, |c| {
        c.settings.generate_nfe = bling_ledger::sync::NfeTenants::None
    })
    .await;
    connected_with_customer(&stack).await;
    let order_id = billed_and_synced(&stack, &t, "i1").await;
    assert!(stack.sandbox.screen_delete_pedido("shop-a", order_id));
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(
        count(&t.db, "i1", "OrderDiverged").await,
        0,
        "nothing told yet"
    );
    let (s, b) = call(
        &stack,
        "POST",
        "/v1/tenants/shop-a/invoices/nope/refresh",
        None,
    )
    .await;
    assert_eq!(s, 404, "{b}");
    let (s, b) = call(
        &stack,
        "POST",
        "/v1/tenants/shop-a/invoices/bad%20id/refresh",
        None,
    )
    .await;
    assert_eq!(s, 400, "{b}");
    assert_eq!(b["error"]["fields"][0]["field"], "invoice_id", "{b}");
    let (s, b) = call(
        &stack,
        "POST",
        "/v1/tenants/shop-a/invoices/i1/refresh",
        None,
    )
    .await;
    assert_eq!(s, 202, "{b}");
    assert!(
        wait_for(&t.db, "i1", "OrderDiverged", 1).await,
        "found by the read"
    );
    let events = invoice_events(&t.db, "i1").await;
    let d = &events
        .iter()
        .find(|e| e.event_type == "OrderDiverged")
        .unwrap()
        .payload["OrderDiverged"]["divergence"];
    assert!(
        d["found"]["situacao_id"].is_null(),
        "the order is gone: {d}"
    );
    assert_eq!(d["source"], "poll");
    assert_eq!(order_reads(&stack, order_id), 1, "one read");
    assert!(
        eventually(10, || async {
            let (_, inv) = call(&stack, "GET", "/v1/tenants/shop-a/invoices/i1", None).await;
            inv["bling"]["divergence"]["found"]["situacao_id"].is_null()
                && inv["bling"]["divergence"].is_object()
        })
        .await,
        "on the invoice"
    );
    stack.stop().await;
}
both_backends!(order_deleted, order_deleted_in_bling_found_by_a_fresh_read);

/// No webhooks: the NF-e is authorized (found by its poll), then the shop cancels it in Bling
/// inside SEFAZ's 24 h window; the watch's read of `GET /nfe/{id}` records `NfeCancelled`.
/// Past the window SEFAZ refuses the cancellation (rejeição 501) and nothing changes.
async fn nfe_cancelled_after_authorization_found_by_polling(t: TestDb) {
    let stack = stack(&t, |c| {
        c.settings.watch_offsets = vec![
            Duration::from_millis(500),
            Duration::from_millis(1500),
            Duration::from_secs(60),
        ];
    })
    .await;
    let nfe_id = billed_with_nfe(&stack, &t, None).await;
    assert_eq!(
        stack.sandbox.screen_send_nfe("shop-a", nfe_id),
        Some(Ok(()))
    );
    assert!(wait_for(&t.db, "i1", "NfeAuthorized", 1).await);
    assert!(stack.sandbox.age_nfe_authorization("shop-a", nfe_id, 25));
    let late = stack.sandbox.screen_cancel_nfe("shop-a", nfe_id);
    assert!(
        matches!(&late, Some(Err(m)) if m.contains("501")),
        "past SEFAZ's window: {late:?}"
    );
    assert!(stack.sandbox.age_nfe_authorization("shop-a", nfe_id, 2));
    assert_eq!(
        stack.sandbox.screen_cancel_nfe("shop-a", nfe_id),
        Some(Ok(()))
    );
    assert!(
        wait_for(&t.db, "i1", "NfeCancelled", 1).await,
        "found by the watch's poll"
    );
    let events = invoice_events(&t.db, "i1").await;
    let cancelled = events
        .iter()
        .find(|e| e.event_type == "NfeCancelled")
        .unwrap();
    assert_eq!(cancelled.payload["NfeCancelled"]["source"], "poll");
    assert!(
        eventually(10, || async {
            let (_, inv) = call(&stack, "GET", "/v1/tenants/shop-a/invoices/i1", None).await;
            inv["bling"]["nfe"]["status"] == "cancelled"
        })
        .await,
        "on the invoice"
    );
    assert!(stack.sandbox.webhook_attempts(None).is_empty());
    stack.stop().await;
}
both_backends!(
    nfe_cancelled_by_poll,
    nfe_cancelled_after_authorization_found_by_polling
);

/// A webhook settles the NF-e: its follow-up job ends then (from the settling event), not
/// at its next scheduled read of `GET /nfe/{id}`.
async fn nfe_follow_up_ends_when_a_webhook_settles_it(t: TestDb) {
    let stack = stack(&t, |_| {}).await;
    subscribe(&stack);
    let nfe_id = billed_with_nfe(&stack, &t, None).await;
    // After the follow-up's first read (2 s): its next is 5 s later.
    tokio::time::sleep(Duration::from_millis(2300)).await;
    assert_eq!(
        job_state(&t.db, Kind::Nfe, "i1").await.as_deref(),
        Some("pending")
    );
    let polls = |stack: &Stack| {
        stack
            .sandbox
            .call_log()
            .iter()
            .filter(|c| c.method == "GET" && c.path.ends_with(&format!("/nfe/{nfe_id}")))
            .count()
    };
    let before = polls(&stack);
    assert_eq!(
        stack.sandbox.screen_send_nfe("shop-a", nfe_id),
        Some(Ok(()))
    );
    let started = Instant::now();
    assert!(wait_for(&t.db, "i1", "NfeAuthorized", 1).await);
    assert!(
        eventually(20, || async {
            job_state(&t.db, Kind::Nfe, "i1").await.as_deref() == Some("done")
        })
        .await
    );
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "ended by the webhook's event, not the next read ({:?})",
        started.elapsed()
    );
    let events = invoice_events(&t.db, "i1").await;
    let authorized = events
        .iter()
        .find(|e| e.event_type == "NfeAuthorized")
        .unwrap();
    assert_eq!(authorized.payload["NfeAuthorized"]["source"], "webhook");
    assert!(polls(&stack) > before, "the webhook's confirming read");
    // Every delivery processed: from now on only a scheduled poll could read the NF-e, and
    // its next read (about 7 s after generation) would fall in the next 5 s.
    assert!(
        eventually(20, || async {
            deliveries(&stack).await["deliveries"]
                .as_array()
                .unwrap()
                .iter()
                .all(|d| d["state"] != "received")
        })
        .await
    );
    let settled = polls(&stack);
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        polls(&stack),
        settled,
        "no scheduled poll after the webhook settled it"
    );
    stack.stop().await;
}
both_backends!(nfe_job_ends, nfe_follow_up_ends_when_a_webhook_settles_it);

/// Refused deliveries are in the database (any process sees them), the newest 1,000 rows
/// and a count per source and reason; the counts take at most 1,000 pairs.
async fn refused_deliveries_are_kept_bounded_for_support(t: TestDb) {
    use bling_ledger::store::webhooks as rows;
    let stack = stack(&t, |_| {}).await;
    let url = format!("{}/webhooks/bling", stack.server.base_url());
    let http = reqwest::Client::new();
    {
        use futures::StreamExt;
        let statuses: Vec<u16> = futures::stream::iter(0..1100)
            .map(|i| {
                let (url, http) = (url.clone(), http.clone());
                let body = envelope(
                    &format!("x-{i}"),
                    "c0ffee",
                    "order.updated",
                    json!({"id": i}),
                );
                async move {
                    let mut req = http.post(&url).body(body.clone());
                    if i % 2 == 0 {
                        req = req.header("X-Bling-Signature-256", sign(b"a guess", &body));
                    }
                    req.send().await.unwrap().status().as_u16()
                }
            })
            .buffer_unordered(16)
            .collect()
            .await;
        assert!(statuses.iter().all(|s| *s == 401));
    }
    let (s, b) = call(&stack, "GET", "/v1/webhooks/unmatched", None).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(
        b["refused"].as_array().unwrap().len(),
        500,
        "a page of the newest"
    );
    assert_eq!(b["refused"][0]["source"], "127.0.0.1");
    let counts = b["refused_counts"].as_array().unwrap();
    let of = |reason: &str| {
        counts
            .iter()
            .find(|c| c["source"] == "127.0.0.1" && c["reason"] == reason)
            .map(|c| c["refused"].as_i64().unwrap())
    };
    assert_eq!(of("signature_mismatch"), Some(550), "{b}");
    assert_eq!(of("signature_missing"), Some(550), "{b}");
    // In the database, bounded: the newest 1,000 rows.
    let kept = rows::refusals(&t.db, None, 5000).await.unwrap();
    assert_eq!(kept.len(), 1000);
    // A thousand sources more: the counts keep at most 1,000 pairs, the rest under `other`.
    let many: Vec<rows::RefusalCount> = (0..1000)
        .map(|i| rows::RefusalCount {
            source: format!("10.0.{}.{}", i / 256, i % 256),
            reason: "signature_missing".into(),
            refused: 1,
            first_at_ms: 1,
            last_at_ms: 1,
        })
        .collect();
    rows::record_refusals(&t.db, &[], &many).await.unwrap();
    let counts = rows::refusal_counts(&t.db).await.unwrap();
    assert!(counts.len() <= 1001, "{}", counts.len());
    let other = counts.iter().find(|c| c.source == "other").unwrap();
    assert_eq!(other.refused, 2, "the two pairs over the cap");
    stack.stop().await;
}
both_backends!(
    refusals_bounded,
    refused_deliveries_are_kept_bounded_for_support
);
