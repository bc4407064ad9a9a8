//! What the service logs: every line inside its span (`http_request`, `sync_job`), ids only,
//! never a name, a CPF, an address or a token. Its own test binary, the one beside
//! `tests/it/`: the subscriber that captures the lines is the process's global one, and in the
//! shared binary it would capture every other test's lines too.

#[path = "it/support.rs"]
mod support;

use std::collections::HashSet;
use std::sync::{Arc, Mutex, OnceLock};

use crate::support::*;
use serde_json::json;

/// A writer into a shared buffer, for capturing the service's log lines.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Every line the process logs at DEBUG (the sandbox's own lines left out), from the first
/// call on.
fn captured() -> &'static Captured {
    static CAPTURED: OnceLock<Captured> = OnceLock::new();
    CAPTURED.get_or_init(|| {
        let captured = Captured::default();
        let writer = captured.clone();
        tracing_subscriber::fmt()
            .with_env_filter("bling_ledger=debug,bling_ledger::sandbox=off")
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .init();
        captured
    })
}

async fn synced(db: &bling_ledger::store::Db, invoice: &str) -> bool {
    settle(db).await;
    let filter = bling_ledger::store::log::LogFilter {
        aggregate_type: Some("Invoice".into()),
        ..Default::default()
    };
    let events = bling_ledger::store::log::read_from(db, 0, 10_000, &filter)
        .await
        .unwrap();
    let done: HashSet<_> = events
        .iter()
        .filter(|e| e.event_type == "SituacaoChanged")
        .map(|e| e.aggregate_id.clone())
        .collect();
    done.iter().any(|id| id.ends_with(invoice))
}

/// A sync at DEBUG: requests in `http_request` spans (request id, route, tenant, status,
/// latency), Bling calls inside their `sync_job` span (kind, ids, attempt, outcome), and
/// nothing personal or secret in any line.
async fn logs_carry_spans_and_ids_only(t: TestDb) {
    let log = captured();
    // Each backend syncs its own tenant, so the lines of one run are told apart.
    let tenant = match t.db {
        bling_ledger::store::Db::Postgres(_) => "shop-logs-pg",
        bling_ledger::store::Db::Sqlite(_) => "shop-logs-lite",
    };
    let stack = Stack::start_with(
        &t.url,
        |s| s.rate_limit_per_sec = 0,
        |_| {},
        |sync| sync.client.rate_limit_per_sec = 0,
    )
    .await;
    assert_eq!(stack.connect(tenant).await.0, 200);
    let document = cpf(77);
    let mut body = customer_body("Joana Pereira");
    body["tax_id"] = json!(document);
    let path = format!("/v1/tenants/{tenant}/customers/c1");
    let (s, b) = call(&stack, "PUT", &path, Some(&body)).await;
    assert_eq!(s, 201, "{b}");
    let bill = format!("/v1/tenants/{tenant}/invoices/inv-logs/bill");
    let (s, b) = call(&stack, "POST", &bill, Some(&invoice_body("c1", "77"))).await;
    assert_eq!(s, 201, "{b}");
    assert!(eventually(30, || synced(&t.db, "inv-logs")).await);
    // A refusal is logged at INFO inside its request's span.
    let refused = stack
        .http
        .put(format!(
            "{}/v1/tenants/{tenant}/customers/c2",
            stack.server.base_url()
        ))
        .bearer_auth(ADMIN_TOKEN)
        .header("x-request-id", format!("refusal-{tenant}"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 422);
    stack.stop().await;

    let text = String::from_utf8(log.0.lock().unwrap().clone()).unwrap();
    let refusal = text
        .lines()
        .find(|l| l.contains("request refused") && l.contains(&format!("refusal-{tenant}")))
        .unwrap_or_else(|| panic!("a refusal line in:\n{text}"));
    for field in [
        "http_request{".to_string(),
        format!("request_id=\"refusal-{tenant}\""),
        "route=\"/v1/tenants/{tenant}/customers/{customer_id}\"".to_string(),
        format!("tenant=\"{tenant}\""),
        "status=422".to_string(),
        "latency_ms=".to_string(),
    ] {
        assert!(refusal.contains(&field), "{field} in {refusal}");
    }
    let ours = format!("tenant=\"{tenant}\"");
    let bling_calls: Vec<_> = text
        .lines()
        .filter(|l| l.contains("bling call") && l.contains(&ours))
        .collect();
    assert!(!bling_calls.is_empty(), "{text}");
    for line in &bling_calls {
        assert!(
            line.contains("sync_job{"),
            "a Bling call inside its job's span: {line}"
        );
        assert!(line.contains("attempt=1"), "{line}");
    }
    assert!(
        bling_calls
            .iter()
            .any(|l| l.contains("invoice_id=\"inv-logs\"")
                && l.contains("kind=\"invoice\"")
                && l.contains("route=/pedidos/vendas ")),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.contains(&ours) && l.contains("outcome=\"done\"")),
        "{text}"
    );
    let digits: String = document.chars().filter(char::is_ascii_digit).collect();
    for personal in [
        "Joana",
        "Pereira",
        digits.as_str(),
        "Rua das Flores",
        "01001",
    ] {
        assert!(!text.contains(personal), "{personal} logged:\n{text}");
    }
    assert!(!text.to_lowercase().contains("bearer "), "no token logged");
}
both_backends!(logs, logs_carry_spans_and_ids_only);
