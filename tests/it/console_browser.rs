//! The support console: served without a token under a strict Content-Security-Policy, and
//! used in a real headless Chromium (Debian's `chromium`, driven by `playwright-core` from
//! tests/console_browser/drive.js) to find a failed invoice, read its cause and what to do,
//! reprocess it once Bling is fixed, and see it synced; then to see a revocation read as a
//! connection problem (failures grouped by cause, the connection's evidence) and reconnect.
//!
//! Screenshots go to a temporary directory removed after the test, or to the directory
//! `CONSOLE_SCREENSHOTS` names. Without /usr/bin/chromium the test fails, saying to install it.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::*;
use aggregates::sync::CauseKind;
use serde_json::{json, Value};

const CHROMIUM: &str = "/usr/bin/chromium";
const SITUACAO: &str = "Aguardando NF-e";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_and_its_assets_are_served_without_a_token_under_a_strict_policy() {
    let t = TestDb::sqlite().await;
    let server = start_server(&t.url).await;
    let base = server.base_url();
    let http = reqwest::Client::new();
    let get = |path: &str| http.get(format!("{base}{path}")).send();

    for (path, content_type, marker) in [
        ("/", "text/html", r#"<form id="login-form""#),
        ("/console.js", "text/javascript", "function signIn("),
        ("/console.css", "text/css", ".badge-failed"),
    ] {
        let response = get(path).await.expect("request");
        assert_eq!(response.status(), 200, "{path}");
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string()
        };
        assert!(
            header("content-type").starts_with(content_type),
            "{path}: {}",
            header("content-type")
        );
        let csp = header("content-security-policy");
        for directive in [
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            "connect-src 'self'",
            "frame-ancestors 'none'",
        ] {
            assert!(
                csp.contains(directive),
                "{path}: {directive} missing from {csp:?}"
            );
        }
        assert!(
            !csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"),
            "{csp}"
        );
        assert_eq!(header("x-content-type-options"), "nosniff", "{path}");
        let body = response.text().await.expect("body");
        assert!(body.contains(marker), "{path} is the console's asset");
    }

    // The page is public; its data is not.
    let page = get("/").await.expect("page").text().await.expect("text");
    assert!(page.contains(r#"<label for="token">Support token</label>"#));
    assert!(page.contains(r#"<script src="/console.js" defer></script>"#));
    let anonymous = get("/v1/tenants").await.expect("tenants");
    assert_eq!(anonymous.status(), 401);
    let body: Value = anonymous.json().await.expect("json");
    assert_eq!(body["error"]["code"], "unauthenticated");
    let auditor = http
        .get(format!("{base}/v1/tenants"))
        .bearer_auth(AUDITOR_TOKEN)
        .send()
        .await
        .expect("tenants");
    assert_eq!(auditor.status(), 403, "support role only");
    let support = http
        .get(format!("{base}/v1/tenants"))
        .bearer_auth(SUPPORT_TOKEN)
        .send()
        .await
        .expect("tenants");
    assert_eq!(support.status(), 200);
    server.stop().await.expect("stop");
}

/// `52998224725` → `529.982.247-25`.
fn punctuated_cpf(digits: &str) -> String {
    format!(
        "{}.{}.{}-{}",
        &digits[..3],
        &digits[3..6],
        &digits[6..9],
        &digits[9..]
    )
}

fn customer(name: &str, n: u32) -> Value {
    let mut body = customer_body(name);
    body["tax_id"] = json!(cpf(n));
    body
}

/// Installs tests/console_browser/node_modules when missing.
async fn npm_ci(dir: &Path) {
    if dir
        .join("node_modules/playwright-core/package.json")
        .exists()
    {
        return;
    }
    let dir = dir.to_path_buf();
    let out = tokio::task::spawn_blocking(move || {
        Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(dir)
            .output()
    })
    .await
    .expect("npm task")
    .expect("npm runs (node 20 and npm are needed for the browser test)");
    assert!(
        out.status.success(),
        "npm ci in tests/console_browser failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// What drive.js printed, and how it ended.
struct DriverRun {
    stdout: Vec<String>,
    stderr: String,
    success: bool,
}

/// Runs drive.js; at each of its `ACTION <name>` lines, hands the name to the test
/// (`actions`) and waits for the test's go-ahead (`go`) before answering `go` on stdin.
fn run_driver(
    mut command: Command,
    actions: tokio::sync::mpsc::UnboundedSender<String>,
    go: std::sync::mpsc::Receiver<()>,
) -> DriverRun {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("node runs drive.js");
    let mut stdin = child.stdin.take().expect("stdin");
    let stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let errors = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let mut lines = Vec::new();
    for line in BufReader::new(stdout).lines().map_while(Result::ok) {
        if let Some(name) = line.trim().strip_prefix("ACTION ") {
            let _ = actions.send(name.to_string());
            if go.recv_timeout(Duration::from_secs(30)).is_ok() {
                let _ = writeln!(stdin, "go");
                let _ = stdin.flush();
            }
        }
        lines.push(line);
    }
    drop(stdin);
    let status = child.wait().expect("drive.js ends");
    DriverRun {
        stdout: lines,
        stderr: errors.join().unwrap_or_default(),
        success: status.success(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn support_reprocesses_a_rejected_invoice_in_headless_chromium() {
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: the support console's browser test needs Debian's Chromium; \
         run `apt-get install -y chromium` (.ci/run installs it in CI)"
    );
    let started = Instant::now();
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/console_browser");
    npm_ci(&dir).await;

    // The shop's Bling account lacks the situação the ledger is configured to set: every
    // invoice fails as an account set-up problem (account_setup, waiting for a person) after its
    // order is created.
    let t = TestDb::sqlite().await;
    let stack = Stack::start_with(
        &t.url,
        |s| s.rate_limit_per_sec = 0,
        |_| {},
        |sync| {
            sync.client.rate_limit_per_sec = 0;
            sync.settings.situacao_billed = SITUACAO.into();
        },
    )
    .await;
    assert_eq!(stack.connect("shop-a").await.0, 200);
    let (s, b) = call(
        &stack,
        "PUT",
        "/v1/tenants/shop-a/customers/c1",
        Some(&customer("Maria Souza", 1)),
    )
    .await;
    assert!(s == 200 || s == 201, "{s} {b}");
    // A second shop, never connected to Bling: for the list of every shop.
    let shop_b = stack
        .http
        .put(format!(
            "{}/v1/tenants/shop-b/customers/b1",
            stack.server.base_url()
        ))
        .bearer_auth(INGEST_B_TOKEN)
        .json(&customer("Joana Lima", 2))
        .send()
        .await
        .expect("shop-b customer");
    assert!(shop_b.status().is_success(), "{}", shop_b.status());
    for (id, number) in [("i1", "NF-1001"), ("i2", "NF-1002")] {
        let (s, b) = call(
            &stack,
            "POST",
            &format!("/v1/tenants/shop-a/invoices/{id}/bill"),
            Some(&invoice_body("c1", number)),
        )
        .await;
        assert_eq!(s, 201, "{b}");
    }
    // Both failed, as support's views show them (the page reads those views).
    let failed_in_views = eventually(20, || async {
        let mut failed = 0;
        for id in ["i1", "i2"] {
            let (_, inv) = call(
                &stack,
                "GET",
                &format!("/v1/tenants/shop-a/invoices/{id}"),
                None,
            )
            .await;
            if inv["state"] == "failed" && inv["last_cause"]["kind"] == "account_setup" {
                failed += 1;
            }
        }
        failed == 2
    })
    .await;
    assert!(failed_in_views, "both invoices failed with account_setup");

    let advice = CauseKind::AccountSetup.advice();
    // Kept where CONSOLE_SCREENSHOTS says; otherwise in a temporary directory removed after.
    let temp_shots = tempfile::tempdir().expect("screenshot dir");
    let shots = std::env::var_os("CONSOLE_SCREENSHOTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| temp_shots.path().to_path_buf());
    std::fs::create_dir_all(&shots).expect("screenshot dir");
    let profile = tempfile::tempdir().expect("user data dir");

    let mut command = Command::new("node");
    command
        .arg("drive.js")
        .current_dir(&dir)
        .env("CONSOLE_URL", stack.server.base_url())
        .env("SUPPORT_TOKEN", SUPPORT_TOKEN)
        .env("TENANT", "shop-a")
        .env("INVOICE_ID", "i1")
        .env("INVOICE_NUMBER", "NF-1001")
        .env("OTHER_INVOICE_ID", "i2")
        .env("EXPECTED_CAUSE", "account_setup")
        .env("EXPECTED_ADVICE", advice)
        .env("EXPECTED_TOTAL", "R$ 170,00")
        .env("EXPECTED_ISSUE_DATE", "25/11/2026")
        .env("EXPECTED_TAX_ID", punctuated_cpf(&cpf(1)))
        .env("ADMIN_TOKEN", ADMIN_TOKEN)
        .env("AUDITOR_TOKEN", AUDITOR_TOKEN)
        .env("AUTHORIZE_URL", stack.sandbox.authorize_url())
        .env("SCREENSHOT_DIR", &shots)
        .env("USER_DATA_DIR", profile.path())
        .env("CHROMIUM", CHROMIUM);
    let (action_tx, mut action_rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let (go_tx, go_rx) = std::sync::mpsc::channel();
    let driver = tokio::task::spawn_blocking(move || run_driver(command, action_tx, go_rx));

    let mut done = Vec::new();
    while let Ok(Some(action)) =
        tokio::time::timeout(Duration::from_secs(60), action_rx.recv()).await
    {
        match action.as_str() {
            // Support has read the cause and the advice in the page and fixes Bling; the
            // page's Reprocess button does the rest.
            "fix_bling" => {
                stack.sandbox.add_situacao("shop-a", SITUACAO);
            }
            // The owner changes the Bling password at lunch; the afternoon's invoices park.
            "revoke" => {
                stack.sandbox.revoke_account("shop-a");
                for (id, number) in [("i3", "NF-2001"), ("i4", "NF-2002"), ("i5", "NF-2003")] {
                    let path = format!("/v1/tenants/shop-a/invoices/{id}/bill");
                    let (s, b) =
                        call(&stack, "POST", &path, Some(&invoice_body("c1", number))).await;
                    assert_eq!(s, 201, "{b}");
                }
                let parked = eventually(20, || async {
                    let (_, list) = call(
                        &stack,
                        "GET",
                        "/v1/tenants/shop-a/invoices?state=parked",
                        None,
                    )
                    .await;
                    let (_, tenants) = call(&stack, "GET", "/v1/tenants", None).await;
                    list["invoices"].as_array().map(Vec::len) == Some(3)
                        && tenants["tenants"][0]["connection"]["state"] == "revoked"
                })
                .await;
                assert!(
                    parked,
                    "the afternoon's invoices parked on the revoked connection"
                );
            }
            other => panic!("drive.js asked for an unknown action {other:?}"),
        }
        done.push(action);
        let _ = go_tx.send(());
    }
    let run = driver.await.expect("driver task");
    assert!(
        run.success,
        "drive.js failed\nstdout:\n{}\nstderr:\n{}",
        run.stdout.join("\n"),
        run.stderr
    );
    let summary: Value = run
        .stdout
        .last()
        .and_then(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| panic!("drive.js ends with a JSON summary: {:?}", run.stdout));
    assert_eq!(summary["ok"], true);
    assert_eq!(
        summary["steps"].as_array().map(Vec::len),
        Some(10),
        "{summary}"
    );
    assert_eq!(done, ["fix_bling", "revoke"]);

    // What the page showed is what the ledger and Bling hold.
    let (_, i1) = call(&stack, "GET", "/v1/tenants/shop-a/invoices/i1", None).await;
    assert_eq!(i1["state"], "synced", "{i1}");
    assert_eq!(i1["bling"]["situacao"]["name"], SITUACAO);
    let (_, i2) = call(&stack, "GET", "/v1/tenants/shop-a/invoices/i2", None).await;
    assert_eq!(
        i2["state"], "failed",
        "only the reprocessed invoice was replayed: {i2}"
    );
    assert_eq!(
        stack.sandbox.pedidos("shop-a").len(),
        2,
        "one order per invoice, none twice"
    );
    for shot in [
        "1-tenant.png",
        "2-invoice-failed.png",
        "3-invoice-synced.png",
        "4-tenant-revoked.png",
        "5-tenants.png",
    ] {
        let bytes = std::fs::metadata(shots.join(shot))
            .map(|m| m.len())
            .unwrap_or(0);
        assert!(
            bytes > 10_000,
            "screenshot {shot} was taken ({bytes} bytes)"
        );
    }
    println!(
        "support console driven in Chromium in {:.1} s; screenshots in {}{}",
        started.elapsed().as_secs_f64(),
        shots.display(),
        if std::env::var_os("CONSOLE_SCREENSHOTS").is_some() {
            ""
        } else {
            " (removed; set CONSOLE_SCREENSHOTS=DIR to keep them)"
        }
    );
    stack.stop().await;
}
