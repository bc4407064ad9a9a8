//! The ingest API over real HTTP, on both backends: auth, validation, idempotency,
//! concurrency and restarts.

use crate::raw;

use crate::support::*;
use bling_ledger::store::log::LogFilter;
use reqwest::StatusCode;
use serde_json::{json, Value};

struct Api {
    base: String,
    http: reqwest::Client,
}

impl Api {
    fn new(server: &bling_ledger::server::Server) -> Api {
        Api {
            base: server.base_url(),
            http: reqwest::Client::new(),
        }
    }

    async fn send(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> (StatusCode, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.expect("request");
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }
}

fn fields(body: &Value) -> Vec<String> {
    body["error"]["fields"]
        .as_array()
        .map(|f| {
            f.iter()
                .map(|p| p["field"].as_str().unwrap_or("").to_string())
                .collect()
        })
        .unwrap_or_default()
}

async fn ingest_lifecycle(t: TestDb) {
    let server = start_server(&t.url).await;
    let api = Api::new(&server);
    let tok = Some(INGEST_TOKEN);

    let (s, b) = api
        .send(
            "PUT",
            "/v1/tenants/shop-a/customers/c1",
            tok,
            Some(&customer_body("Maria")),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    assert_eq!(b["result"], "registered");
    assert_eq!(b["tax_id"], "52998224725");
    assert_eq!(b["person_type"], "individual");

    let (s, b) = api
        .send(
            "PUT",
            "/v1/tenants/shop-a/customers/c1",
            tok,
            Some(&customer_body("Maria")),
        )
        .await;
    assert_eq!(
        (s, b["result"].clone()),
        (StatusCode::OK, json!("unchanged"))
    );
    let (s, b) = api
        .send(
            "PUT",
            "/v1/tenants/shop-a/customers/c1",
            tok,
            Some(&customer_body("Maria Souza")),
        )
        .await;
    assert_eq!(
        (s, b["changed_fields"].clone()),
        (StatusCode::OK, json!(["name"]))
    );

    let (s, b) = api
        .send(
            "POST",
            "/v1/tenants/shop-a/invoices/inv-1/bill",
            tok,
            Some(&invoice_body("c1", "1001")),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    assert_eq!(b["total"], 17000);
    let (s, b) = api
        .send(
            "POST",
            "/v1/tenants/shop-a/invoices/inv-1/bill",
            tok,
            Some(&invoice_body("c1", "1001")),
        )
        .await;
    assert_eq!(
        (s, b["error"]["code"].clone()),
        (StatusCode::CONFLICT, json!("already_billed"))
    );

    let mut changed = invoice_body("c1", "1001");
    changed["notes"] = json!("Cliente pediu laço rosa");
    let (s, b) = api
        .send(
            "PUT",
            "/v1/tenants/shop-a/invoices/inv-1",
            tok,
            Some(&changed),
        )
        .await;
    assert_eq!(
        (s, b["changed_fields"].clone()),
        (StatusCode::OK, json!(["notes"]))
    );

    let (s, b) = api
        .send(
            "POST",
            "/v1/tenants/shop-a/invoices/inv-1/cancel",
            tok,
            Some(&json!({"reason": "desistiu"})),
        )
        .await;
    assert_eq!(
        (s, b["result"].clone()),
        (StatusCode::OK, json!("cancelled"))
    );
    let (s, b) = api
        .send(
            "PUT",
            "/v1/tenants/shop-a/invoices/inv-1",
            tok,
            Some(&changed),
        )
        .await;
    assert_eq!(
        (s, b["error"]["code"].clone()),
        (StatusCode::CONFLICT, json!("invoice_cancelled"))
    );

    let (s, b) = api
        .send(
            "PUT",
            "/v1/tenants/shop-a/invoices/never-billed",
            tok,
            Some(&changed),
        )
        .await;
    assert_eq!(
        (s, b["error"]["code"].clone()),
        (StatusCode::NOT_FOUND, json!("not_billed"))
    );

    // Billing for a customer of another tenant (or nobody) is refused, naming the field.
    let (s, b) = api
        .send(
            "POST",
            "/v1/tenants/shop-a/invoices/inv-2/bill",
            tok,
            Some(&invoice_body("ghost", "1002")),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(fields(&b), ["customer_id"]);

    let events = read_eventually(&t.db, 0, 6, &LogFilter::default()).await;
    let types: Vec<_> = events.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(
        types,
        [
            "CustomerRegistered",
            "CustomerUpdated",
            "InvoiceBilled",
            "InvoiceUpdated",
            "InvoiceCancelled"
        ]
    );
    assert_eq!(events[0].metadata["actor"], "ingest:petshop-a");
    server.stop().await.unwrap();
}
both_backends!(lifecycle, ingest_lifecycle);

async fn bad_input_is_named_and_stores_nothing(t: TestDb) {
    let server = start_server(&t.url).await;
    let api = Api::new(&server);
    let tok = Some(INGEST_TOKEN);

    let mut bad = customer_body("Maria");
    bad["tax_id"] = json!("529.982.247-24");
    bad["email"] = json!("maria@");
    bad["address"]["state"] = json!("XX");
    bad["address"]["cep"] = json!("123");
    let (s, b) = api
        .send("PUT", "/v1/tenants/shop-a/customers/c1", tok, Some(&bad))
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(b["error"]["code"], "validation_failed");
    assert_eq!(
        fields(&b),
        ["tax_id", "email", "address.state", "address.cep"]
    );

    let (s, b) = api
        .send(
            "PUT",
            "/v1/tenants/shop-a/customers/c1",
            tok,
            Some(&json!({"name": "x", "tax_id": "52998224725", "nickname": "y"})),
        )
        .await;
    assert_eq!(
        (s, fields(&b)),
        (StatusCode::BAD_REQUEST, vec!["nickname".to_string()])
    );

    let mut wrong_type = invoice_body("c1", "1");
    wrong_type["items"][0]["quantity"] = json!("two");
    let (s, b) = api
        .send(
            "POST",
            "/v1/tenants/shop-a/invoices/i1/bill",
            tok,
            Some(&wrong_type),
        )
        .await;
    assert_eq!(
        (s, fields(&b)),
        (
            StatusCode::BAD_REQUEST,
            vec!["items[0].quantity".to_string()]
        )
    );

    let response = api
        .http
        .put(format!("{}/v1/tenants/shop-a/customers/c1", api.base))
        .bearer_auth(INGEST_TOKEN)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let b: Value = response.json().await.unwrap();
    assert_eq!(b["error"]["code"], "malformed_json");

    let huge = json!({"name": "x".repeat(1024 * 1024 + 10)});
    let (s, b) = api
        .send("PUT", "/v1/tenants/shop-a/customers/c1", tok, Some(&huge))
        .await;
    assert_eq!(
        (s, b["error"]["code"].clone()),
        (StatusCode::PAYLOAD_TOO_LARGE, json!("payload_too_large"))
    );

    let (s, b) = api
        .send(
            "PUT",
            "/v1/tenants/shop-a/customers/bad%20id",
            tok,
            Some(&customer_body("M")),
        )
        .await;
    assert_eq!(
        (s, fields(&b)),
        (StatusCode::BAD_REQUEST, vec!["customer_id".to_string()])
    );

    let mut sums_wrong = invoice_body("c1", "1");
    sums_wrong["total"] = json!(16999);
    let (s, b) = api
        .send(
            "POST",
            "/v1/tenants/shop-a/invoices/i1/bill",
            tok,
            Some(&sums_wrong),
        )
        .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(fields(&b), ["total", "installments"]);

    assert_eq!(
        bling_ledger::store::log::head_position(&t.db)
            .await
            .unwrap(),
        0,
        "nothing stored"
    );
    server.stop().await.unwrap();
}
both_backends!(bad_input, bad_input_is_named_and_stores_nothing);

async fn auth_roles_and_tenants(t: TestDb) {
    let server = start_server(&t.url).await;
    let api = Api::new(&server);
    let body = customer_body("Maria");
    let path = "/v1/tenants/shop-a/customers/c1";

    let (s, b) = api.send("PUT", path, None, Some(&body)).await;
    assert_eq!(
        (s, b["error"]["code"].clone()),
        (StatusCode::UNAUTHORIZED, json!("unauthenticated"))
    );
    let (s, _) = api
        .send("PUT", path, Some("not-a-token"), Some(&body))
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    // Right role, wrong tenant.
    let (s, b) = api
        .send("PUT", path, Some(INGEST_B_TOKEN), Some(&body))
        .await;
    assert_eq!(
        (s, b["error"]["code"].clone()),
        (StatusCode::FORBIDDEN, json!("forbidden"))
    );
    // Right tenant, wrong role.
    let (s, _) = api
        .send("PUT", path, Some(SUPPORT_TOKEN), Some(&body))
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    let (s, _) = api
        .send("PUT", path, Some(AUDITOR_TOKEN), Some(&body))
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
    // Admin may do anything, anywhere.
    let (s, _) = api
        .send(
            "PUT",
            "/v1/tenants/shop-z/customers/c1",
            Some(ADMIN_TOKEN),
            Some(&body),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    // Tenants are isolated: the same customer id in two shops is two customers.
    let (s, _) = api
        .send(
            "PUT",
            "/v1/tenants/shop-b/customers/c1",
            Some(INGEST_B_TOKEN),
            Some(&body),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let (s, b) = api
        .send(
            "POST",
            "/v1/tenants/shop-b/invoices/i1/bill",
            Some(INGEST_B_TOKEN),
            Some(&invoice_body("c1", "1")),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{b}");
    let (s, _) = api
        .send(
            "POST",
            "/v1/tenants/shop-a/invoices/i1/bill",
            Some(INGEST_TOKEN),
            Some(&invoice_body("c1", "1")),
        )
        .await;
    assert_eq!(
        s,
        StatusCode::UNPROCESSABLE_ENTITY,
        "c1 exists in shop-b only"
    );

    let (s, b) = api.send("GET", "/health", None, None).await;
    assert_eq!((s, b["status"].clone()), (StatusCode::OK, json!("ok")));
    let metrics = api
        .http
        .get(format!("{}/metrics", api.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("bling_ledger_http_requests_total{method=\"PUT\",route=\"/v1/tenants/{tenant}/customers/{customer_id}\",status=\"403\"} 3"), "{metrics}");
    assert!(metrics.contains("bling_ledger_log_head_position"));
    server.stop().await.unwrap();
}
both_backends!(auth, auth_roles_and_tenants);

async fn idempotency_keys(t: TestDb) {
    let server = start_server(&t.url).await;
    let api = Api::new(&server);
    let put = |key: &str, body: &Value| {
        api.http
            .put(format!("{}/v1/tenants/shop-a/customers/c1", api.base))
            .bearer_auth(INGEST_TOKEN)
            .header("idempotency-key", key)
            .json(body)
            .send()
    };
    let first = put("k-1", &customer_body("Maria")).await.unwrap();
    assert_eq!(first.status(), StatusCode::CREATED);
    let first_body: Value = first.json().await.unwrap();
    // The same request again: the first answer, nothing appended (a plain retry would say
    // "unchanged" with 200; the replay says "registered" with 201).
    let again = put("k-1", &customer_body("Maria")).await.unwrap();
    assert_eq!(again.status(), StatusCode::CREATED);
    assert_eq!(again.headers().get("idempotent-replayed").unwrap(), "true");
    assert_eq!(again.json::<Value>().await.unwrap(), first_body);
    // Another body with the same key.
    let other = put("k-1", &customer_body("Joana")).await.unwrap();
    assert_eq!(other.status(), StatusCode::CONFLICT);
    assert_eq!(
        other.json::<Value>().await.unwrap()["error"]["code"],
        "idempotency_key_reused"
    );
    // A failed validation is an answer too, replayed as such.
    let bad = json!({"name": "x"});
    assert_eq!(
        put("k-2", &bad).await.unwrap().status(),
        StatusCode::UNPROCESSABLE_ENTITY
    );
    assert_eq!(
        put("k-2", &bad).await.unwrap().status(),
        StatusCode::UNPROCESSABLE_ENTITY
    );

    let events = read_eventually(&t.db, 0, 1, &LogFilter::default()).await;
    assert_eq!(events.len(), 1);
    assert_eq!(
        bling_ledger::store::log::head_position(&t.db)
            .await
            .unwrap(),
        1
    );
    server.stop().await.unwrap();
}
both_backends!(idempotency, idempotency_keys);

async fn concurrent_commands_lose_nothing(t: TestDb) {
    let server = start_server(&t.url).await;
    let api = std::sync::Arc::new(Api::new(&server));
    let (s, _) = api
        .send(
            "PUT",
            "/v1/tenants/shop-a/customers/c1",
            Some(INGEST_TOKEN),
            Some(&customer_body("Maria")),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);

    // Ten clients bill the same invoice at once: exactly one wins.
    let mut bills = Vec::new();
    for _ in 0..10 {
        let api = std::sync::Arc::clone(&api);
        bills.push(tokio::spawn(async move {
            api.send(
                "POST",
                "/v1/tenants/shop-a/invoices/inv-1/bill",
                Some(INGEST_TOKEN),
                Some(&invoice_body("c1", "1")),
            )
            .await
            .0
        }));
    }
    let mut statuses = Vec::new();
    for b in bills {
        statuses.push(b.await.unwrap());
    }
    assert_eq!(
        statuses
            .iter()
            .filter(|s| **s == StatusCode::CREATED)
            .count(),
        1,
        "{statuses:?}"
    );
    assert!(
        statuses
            .iter()
            .all(|s| *s == StatusCode::CREATED || *s == StatusCode::CONFLICT),
        "{statuses:?}"
    );

    // Twelve clients rename the customer at once: every change is an event, none lost.
    let mut renames = Vec::new();
    for i in 0..12 {
        let api = std::sync::Arc::clone(&api);
        renames.push(tokio::spawn(async move {
            api.send(
                "PUT",
                "/v1/tenants/shop-a/customers/c1",
                Some(INGEST_TOKEN),
                Some(&customer_body(&format!("Maria {i}"))),
            )
            .await
            .0
        }));
    }
    let mut ok = 0;
    for r in renames {
        let status = r.await.unwrap();
        assert!(
            status == StatusCode::OK || status == StatusCode::CONFLICT,
            "{status}"
        );
        ok += usize::from(status == StatusCode::OK);
    }
    let events = read_eventually(&t.db, 0, 2 + ok, &LogFilter::default()).await;
    let updates = events
        .iter()
        .filter(|e| e.event_type == "CustomerUpdated")
        .count();
    let bills = events
        .iter()
        .filter(|e| e.event_type == "InvoiceBilled")
        .count();
    assert_eq!(bills, 1);
    assert_eq!(
        updates, ok,
        "each accepted rename appended exactly one event"
    );
    server.stop().await.unwrap();
}
both_backends!(concurrency, concurrent_commands_lose_nothing);

async fn a_restart_keeps_everything(t: TestDb) {
    let server = start_server(&t.url).await;
    let api = Api::new(&server);
    api.send(
        "PUT",
        "/v1/tenants/shop-a/customers/c1",
        Some(INGEST_TOKEN),
        Some(&customer_body("Maria")),
    )
    .await;
    let (s, _) = api
        .send(
            "POST",
            "/v1/tenants/shop-a/invoices/inv-1/bill",
            Some(INGEST_TOKEN),
            Some(&invoice_body("c1", "1")),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    server.stop().await.unwrap();

    let server = start_server(&t.url).await;
    let api = Api::new(&server);
    let (s, _) = api
        .send(
            "POST",
            "/v1/tenants/shop-a/invoices/inv-1/bill",
            Some(INGEST_TOKEN),
            Some(&invoice_body("c1", "1")),
        )
        .await;
    assert_eq!(s, StatusCode::CONFLICT, "the billing survived the restart");
    let (s, b) = api
        .send(
            "PUT",
            "/v1/tenants/shop-a/customers/c1",
            Some(INGEST_TOKEN),
            Some(&customer_body("Maria")),
        )
        .await;
    assert_eq!(
        (s, b["result"].clone()),
        (StatusCode::OK, json!("unchanged"))
    );
    let events = read_eventually(&server.db, 0, 2, &LogFilter::default()).await;
    assert_eq!(events.len(), 2);
    server.stop().await.unwrap();
}
both_backends!(restart, a_restart_keeps_everything);

/// A request sent byte for byte (see `raw`), answered by `server`.
async fn raw_send(
    server: &bling_ledger::server::Server,
    method: &str,
    target: &[u8],
    token: Option<&str>,
    extra: &[(&str, &[u8])],
    body: &[u8],
) -> raw::RawResponse {
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut headers: Vec<(&str, &[u8])> = vec![("content-type", b"application/json")];
    if let Some(a) = &auth {
        headers.push(("authorization", a.as_bytes()));
    }
    headers.extend_from_slice(extra);
    raw::send(server.addr, method, target, &headers, body)
        .await
        .expect("raw request")
}

async fn every_refusal_has_the_error_shape(t: TestDb) {
    let server = start_server(&t.url).await;
    let ing = Some(INGEST_TOKEN);
    let sup = Some(SUPPORT_TOKEN);
    let customer = serde_json::to_vec(&customer_body("Maria")).unwrap();
    let check = |r: &raw::RawResponse, status: u16, code: &str, fields: &[&str]| {
        let body = String::from_utf8_lossy(&r.body).to_string();
        assert_eq!(r.status, status, "{body}");
        assert!(r.is_error_shape(), "not the error shape: {body}");
        assert_eq!(r.code(), code, "{body}");
        assert_eq!(r.fields(), fields, "{body}");
    };

    // Unknown route, wrong method (with Allow), unauthenticated, forbidden.
    let r = raw_send(&server, "GET", b"/v2/nothing", None, &[], b"").await;
    check(&r, 404, "not_found", &[]);
    let r = raw_send(
        &server,
        "DELETE",
        b"/v1/tenants/shop-a/customers/c1",
        ing,
        &[],
        b"",
    )
    .await;
    check(&r, 405, "method_not_allowed", &[]);
    let allow = r.header("allow").unwrap_or("").to_string();
    assert!(allow.contains("PUT") && allow.contains("GET"), "{allow}");
    let r = raw_send(
        &server,
        "PUT",
        b"/v1/tenants/shop-a/customers/c1",
        None,
        &[],
        &customer,
    )
    .await;
    check(&r, 401, "unauthenticated", &[]);
    let r = raw_send(
        &server,
        "PUT",
        b"/v1/tenants/shop-a/customers/c1",
        Some("nope"),
        &[],
        &customer,
    )
    .await;
    check(&r, 401, "unauthenticated", &[]);
    let r = raw_send(
        &server,
        "PUT",
        b"/v1/tenants/shop-a/customers/c1",
        sup,
        &[],
        &customer,
    )
    .await;
    check(&r, 403, "forbidden", &[]);

    // URI too long, body too large.
    let long = format!("/v1/tenants/shop-a/invoices?q={}", "x".repeat(9 * 1024));
    let r = raw_send(&server, "GET", long.as_bytes(), sup, &[], b"").await;
    check(&r, 414, "uri_too_long", &[]);
    let huge = format!("{{\"name\": \"{}\"}}", "x".repeat(1024 * 1024));
    let r = raw_send(
        &server,
        "PUT",
        b"/v1/tenants/shop-a/customers/c1",
        ing,
        &[],
        huge.as_bytes(),
    )
    .await;
    check(&r, 413, "payload_too_large", &[]);

    // Path segments: undecodable, NUL, '.' and '..', too long, unicode; each names its id.
    for (target, field) in [
        (&b"/v1/tenants/shop-a/customers/%FF"[..], "customer_id"),
        (b"/v1/tenants/%FF%FE/customers/c1", "tenant"),
        (b"/v1/tenants/shop-a/customers/c%001", "customer_id"),
        (b"/v1/tenants/shop-a/customers/..", "customer_id"),
        (b"/v1/tenants/shop-a/customers/.", "customer_id"),
        (b"/v1/tenants/../customers/c1", "tenant"),
        (b"/v1/tenants/shop-a/customers/%2E%2E", "customer_id"),
        (b"/v1/tenants/shop-a/customers/a%2Fb", "customer_id"),
        (b"/v1/tenants/shop-a/customers/%C3%A7", "customer_id"),
    ] {
        let r = raw_send(&server, "PUT", target, Some(ADMIN_TOKEN), &[], &customer).await;
        check(&r, 400, "invalid_path", &[field]);
    }
    let long_id = format!("/v1/tenants/shop-a/invoices/{}/bill", "x".repeat(65));
    let r = raw_send(&server, "POST", long_id.as_bytes(), ing, &[], b"{}").await;
    check(&r, 400, "invalid_path", &["invoice_id"]);
    let r = raw_send(
        &server,
        "GET",
        b"/v1/tenants/shop-a/invoices/%00/history",
        sup,
        &[],
        b"",
    )
    .await;
    check(&r, 400, "invalid_path", &["invoice_id"]);

    // Query strings on the support routes.
    for (target, field) in [
        (&b"/v1/tenants/shop-a/invoices?q=529%00982"[..], "q"),
        (b"/v1/tenants/shop-a/invoices?limit=%FF", "limit"),
        (b"/v1/tenants/shop-a/invoices?state=%00", "state"),
        (b"/v1/tenants/shop-a/invoices?nope=1", "nope"),
        (b"/v1/tenants/shop-a/failures?since=%01", "since"),
        (b"/v1/tenants/shop-a/failures?cause=x&cause=%00", "cause"),
    ] {
        let r = raw_send(&server, "GET", target, sup, &[], b"").await;
        check(&r, 400, "invalid_query", &[field]);
    }
    let r = raw_send(
        &server,
        "GET",
        b"/v1/audit/export?from=2026-01-01&to=2026-02-01&tenant=%00",
        Some(AUDITOR_TOKEN),
        &[],
        b"",
    )
    .await;
    check(&r, 400, "invalid_query", &["tenant"]);

    // NUL in the body, escaped in a string or raw; trailing bytes; duplicate keys.
    let mut nul_name = customer_body("Ma\u{0}ria");
    let r = raw_send(
        &server,
        "PUT",
        b"/v1/tenants/shop-a/customers/c1",
        ing,
        &[],
        &serde_json::to_vec(&nul_name).unwrap(),
    )
    .await;
    check(&r, 400, "malformed_json", &["name"]);
    nul_name = invoice_body("c1", "1");
    nul_name["items"][1]["description"] = json!("Vacina\u{0}");
    let r = raw_send(
        &server,
        "POST",
        b"/v1/tenants/shop-a/invoices/i1/bill",
        ing,
        &[],
        &serde_json::to_vec(&nul_name).unwrap(),
    )
    .await;
    check(&r, 400, "malformed_json", &["items[1].description"]);
    let mut raw_nul = customer.clone();
    raw_nul.insert(3, 0);
    let r = raw_send(
        &server,
        "PUT",
        b"/v1/tenants/shop-a/customers/c1",
        ing,
        &[],
        &raw_nul,
    )
    .await;
    check(&r, 400, "malformed_json", &["body"]);
    let mut trailing = customer.clone();
    trailing.extend_from_slice(b" {}");
    let r = raw_send(
        &server,
        "PUT",
        b"/v1/tenants/shop-a/customers/c1",
        ing,
        &[],
        &trailing,
    )
    .await;
    check(&r, 400, "malformed_json", &["body"]);
    let r = raw_send(
        &server,
        "POST",
        b"/v1/tenants/shop-a/invoices/i1/cancel",
        ing,
        &[],
        b"{\"reason\": \"a\\u0000b\"}",
    )
    .await;
    check(&r, 400, "malformed_json", &["reason"]);
    let r = raw_send(
        &server,
        "PUT",
        b"/v1/tenants/shop-a/customers/c1",
        ing,
        &[],
        b"{\"name\": \"a\", \"name\": \"b\", \"tax_id\": \"52998224725\"}",
    )
    .await;
    check(&r, 400, "malformed_json", &["name"]);
    let r = raw_send(
        &server,
        "PUT",
        b"/v1/tenants/shop-a/customers/c1",
        ing,
        &[],
        b"{\"name\": \"\xff\"}",
    )
    .await;
    check(&r, 400, "malformed_json", &["name"]);

    // Headers the API uses.
    let r = raw_send(
        &server,
        "PUT",
        b"/v1/tenants/shop-a/customers/c1",
        ing,
        &[("x-request-id", b"r\xffq")],
        &customer,
    )
    .await;
    check(&r, 400, "invalid_header", &["X-Request-Id"]);
    let long_id = "r".repeat(129);
    let r = raw_send(
        &server,
        "PUT",
        b"/v1/tenants/shop-a/customers/c1",
        ing,
        &[("x-request-id", long_id.as_bytes())],
        &customer,
    )
    .await;
    check(&r, 400, "invalid_header", &["X-Request-Id"]);
    for key in [&b"a key"[..], b"k\xe9y", &[b'k'; 256]] {
        let r = raw_send(
            &server,
            "PUT",
            b"/v1/tenants/shop-a/customers/c1",
            ing,
            &[("idempotency-key", key)],
            &customer,
        )
        .await;
        check(&r, 400, "invalid_header", &["Idempotency-Key"]);
    }

    // Rules: control characters, amounts and dates (422, each field named).
    let mut ctl = customer_body("Maria\tSouza");
    ctl["address"]["street"] = json!("Rua\u{1b}[2J");
    let r = raw_send(
        &server,
        "PUT",
        b"/v1/tenants/shop-a/customers/c1",
        ing,
        &[],
        &serde_json::to_vec(&ctl).unwrap(),
    )
    .await;
    check(&r, 422, "validation_failed", &["name", "address.street"]);
    let mut big = invoice_body("c1", "1");
    big["items"][0]["unit_price"] = json!(i64::MAX);
    big["installments"][0]["amount"] = json!(i64::MAX);
    big["total"] = json!(i64::MAX);
    big["issue_date"] = json!("1900-01-01");
    let r = raw_send(
        &server,
        "POST",
        b"/v1/tenants/shop-a/invoices/i1/bill",
        ing,
        &[],
        &serde_json::to_vec(&big).unwrap(),
    )
    .await;
    check(
        &r,
        422,
        "validation_failed",
        &[
            "issue_date",
            "items[0].unit_price",
            "installments[0].amount",
            "total",
        ],
    );
    let r = raw_send(
        &server,
        "POST",
        b"/v1/tenants/shop-a/invoices/i1/cancel",
        ing,
        &[],
        b"{\"reason\": \"a\\u0007b\"}",
    )
    .await;
    check(&r, 422, "validation_failed", &["reason"]);

    assert_eq!(
        bling_ledger::store::log::head_position(&t.db)
            .await
            .unwrap(),
        0,
        "nothing stored"
    );
    // The same requests, well formed, still work.
    let r = raw_send(
        &server,
        "PUT",
        b"/v1/tenants/shop-a/customers/c1",
        ing,
        &[("x-request-id", b"req-1"), ("idempotency-key", b"k:1/ok")],
        &customer,
    )
    .await;
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    server.stop().await.unwrap();
}
both_backends!(error_shape, every_refusal_has_the_error_shape);

/// Rewinds the claim of `key` to "in progress", created `age_secs` ago, as a request that died
/// after claiming it would leave it.
async fn leave_unfinished(db: &bling_ledger::store::Db, key: &str, age_secs: i64) {
    use bling_ledger::store::Db;
    let done = match db {
        Db::Postgres(pool) => sqlx::query(
            "UPDATE idempotency_keys SET status_code = NULL, response_body = NULL,
             created_at = now() - make_interval(secs => $2) WHERE key = $1",
        )
        .bind(key)
        .bind(age_secs as f64)
        .execute(pool)
        .await
        .unwrap()
        .rows_affected(),
        Db::Sqlite(pool) => sqlx::query(
            "UPDATE idempotency_keys SET status_code = NULL, response_body = NULL,
             created_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now', ?2) WHERE key = ?1",
        )
        .bind(key)
        .bind(format!("-{age_secs} seconds"))
        .execute(pool)
        .await
        .unwrap()
        .rows_affected(),
    };
    assert_eq!(done, 1);
}

async fn unfinished_idempotency_claims_expire(t: TestDb) {
    use bling_ledger::store::idempotency::Claim;
    use std::time::Duration;

    // The store, with a short time to live.
    let ttl = Duration::from_millis(300);
    let db = &t.db;
    assert_eq!(
        bling_ledger::store::idempotency::claim(db, "shop-a", "k", "h1", ttl)
            .await
            .unwrap(),
        Claim::Fresh
    );
    assert_eq!(
        bling_ledger::store::idempotency::claim(db, "shop-a", "k", "h1", ttl)
            .await
            .unwrap(),
        Claim::InProgress
    );
    assert_eq!(
        bling_ledger::store::idempotency::claim(db, "shop-a", "k", "h2", ttl)
            .await
            .unwrap(),
        Claim::Mismatch
    );
    tokio::time::sleep(Duration::from_millis(450)).await;
    // Expired: another body is still a mismatch; the same body takes the claim over, once.
    assert_eq!(
        bling_ledger::store::idempotency::claim(db, "shop-a", "k", "h2", ttl)
            .await
            .unwrap(),
        Claim::Mismatch
    );
    assert_eq!(
        bling_ledger::store::idempotency::claim(db, "shop-a", "k", "h1", ttl)
            .await
            .unwrap(),
        Claim::Fresh
    );
    assert_eq!(
        bling_ledger::store::idempotency::claim(db, "shop-a", "k", "h1", ttl)
            .await
            .unwrap(),
        Claim::InProgress
    );
    bling_ledger::store::idempotency::complete(db, "shop-a", "k", 201, "{}")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(450)).await;
    // A finished claim never expires.
    assert_eq!(
        bling_ledger::store::idempotency::claim(db, "shop-a", "k", "h1", ttl)
            .await
            .unwrap(),
        Claim::Replay {
            status: 201,
            body: "{}".into()
        }
    );

    // Over HTTP, with the service's own 60 s: a claim left by a request that died.
    let server = start_server(&t.url).await;
    let api = Api::new(&server);
    let put = |key: &'static str, name: &'static str| {
        api.http
            .put(format!("{}/v1/tenants/shop-a/customers/c1", api.base))
            .bearer_auth(INGEST_TOKEN)
            .header("idempotency-key", key)
            .json(&customer_body(name))
            .send()
    };
    assert_eq!(
        put("k-crash", "Maria").await.unwrap().status(),
        StatusCode::CREATED
    );
    leave_unfinished(&t.db, "k-crash", 5).await;
    let r = put("k-crash", "Maria").await.unwrap();
    assert_eq!(r.status(), StatusCode::CONFLICT);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["code"],
        "idempotency_key_in_progress"
    );
    leave_unfinished(&t.db, "k-crash", 61).await;
    let r = put("k-crash", "Joana").await.unwrap();
    assert_eq!(
        r.status(),
        StatusCode::CONFLICT,
        "another body never takes a claim over"
    );
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["code"],
        "idempotency_key_reused"
    );
    let r = put("k-crash", "Maria").await.unwrap();
    assert_eq!(
        r.status(),
        StatusCode::OK,
        "the expired claim's request ran again"
    );
    assert!(r.headers().get("idempotent-replayed").is_none());
    assert_eq!(r.json::<Value>().await.unwrap()["result"], "unchanged");
    // ...and its answer is now the key's answer.
    let r = put("k-crash", "Maria").await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers().get("idempotent-replayed").unwrap(), "true");
    let events = read_eventually(&t.db, 0, 1, &LogFilter::default()).await;
    assert_eq!(events.len(), 1, "the retry appended nothing new");
    server.stop().await.unwrap();
}
both_backends!(idempotency_expiry, unfinished_idempotency_claims_expire);

/// The causes, their labels and advice come from the one definition in `aggregates`: what the
/// console shows is what the CLI and the failure audit say.
#[tokio::test]
async fn the_causes_are_served_from_their_one_definition() {
    let t = TestDb::sqlite().await;
    let server = start_server(&t.url).await;
    let api = Api::new(&server);
    let (s, b) = api.send("GET", "/v1/causes", None, None).await;
    assert_eq!(
        (s, b["error"]["code"].clone()),
        (StatusCode::UNAUTHORIZED, json!("unauthenticated"))
    );
    let (s, b) = api
        .send("GET", "/v1/causes", Some(SUPPORT_TOKEN), None)
        .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let causes = b["causes"].as_array().expect("a list");
    let codes: Vec<&str> = causes.iter().filter_map(|c| c["code"].as_str()).collect();
    assert_eq!(codes, aggregates::sync::FailureCause::CODES);
    for c in causes {
        let kind = aggregates::sync::CauseKind::parse(c["code"].as_str().unwrap()).unwrap();
        assert_eq!(c["label"], kind.label());
        assert_eq!(c["advice"], kind.advice());
        assert_eq!(c["transient"], kind.is_transient());
    }
    let connection: Vec<&str> = causes
        .iter()
        .filter(|c| c["connection"] == true)
        .filter_map(|c| c["code"].as_str())
        .collect();
    assert_eq!(
        connection,
        ["authorization_expired", "authorization_revoked"]
    );
}

/// Every answer carries its request id: the caller's `X-Request-Id`, or a fresh one, which is
/// also the correlation id of the events the request appended.
async fn request_ids_are_echoed(t: TestDb) {
    let server = start_server(&t.url).await;
    let api = Api::new(&server);
    let put = |id: Option<&'static str>| {
        let mut request = api
            .http
            .put(format!("{}/v1/tenants/shop-a/customers/c1", api.base))
            .bearer_auth(INGEST_TOKEN)
            .json(&customer_body("Maria Souza"));
        if let Some(id) = id {
            request = request.header("x-request-id", id);
        }
        request.send()
    };
    let given = put(Some("caller-req-7")).await.unwrap();
    assert_eq!(given.status(), StatusCode::CREATED);
    assert_eq!(given.headers()["x-request-id"], "caller-req-7");
    let changed = customer_body("Maria Souza Lima");
    let fresh = api
        .http
        .put(format!("{}/v1/tenants/shop-a/customers/c1", api.base))
        .bearer_auth(INGEST_TOKEN)
        .json(&changed)
        .send()
        .await
        .unwrap();
    assert_eq!(fresh.status(), StatusCode::OK);
    let generated = fresh.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(uuid::Uuid::parse_str(&generated).is_ok(), "{generated}");
    let events = read_eventually(&t.db, 0, 2, &Default::default()).await;
    let ids: Vec<_> = events
        .iter()
        .map(|e| e.metadata["correlation_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids, ["caller-req-7".to_string(), generated]);
    // Routes without a tenant carry one too; an invalid one is neither used nor echoed.
    let health = api
        .http
        .get(format!("{}/health", api.base))
        .send()
        .await
        .unwrap();
    assert!(health.headers().contains_key("x-request-id"));
    let unchanged = put(None).await.unwrap();
    assert!(unchanged.headers().contains_key("x-request-id"));
    let bad = api
        .http
        .get(format!("{}/health", api.base))
        .header("x-request-id", "has space")
        .send()
        .await
        .unwrap();
    assert!(!bad.headers().contains_key("x-request-id"));
    server.stop().await.unwrap();
}
both_backends!(request_ids, request_ids_are_echoed);
