//! A Bling v3 client we did not write — the public `bling-erp-api` npm package — works against
//! the sandbox unchanged (script: tests/third_party_client/drive.js).

use crate::sandbox_support::*;
use bling_ledger::sandbox::SandboxConfig;
use std::path::PathBuf;
use std::process::Command;

fn tool_present(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bling_erp_api_npm_client_works_unchanged() {
    if !tool_present("node") || !tool_present("npm") {
        println!("SKIPPED: node or npm is not installed; the bling-erp-api client cannot run");
        return;
    }
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/third_party_client");
    if !dir.join("node_modules/bling-erp-api").exists() {
        let install_dir = dir.clone();
        let out = tokio::task::spawn_blocking(move || {
            Command::new("npm")
                .args(["ci", "--no-audit", "--no-fund"])
                .current_dir(install_dir)
                .output()
        })
        .await
        .expect("npm task")
        .expect("npm runs");
        assert!(
            out.status.success(),
            "npm ci failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    // Bling's real limits stay on: the script paces itself as a real client must.
    let sb = start(SandboxConfig::default()).await;
    let base = sb.base_url();
    let out = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .arg("drive.js")
            .current_dir(dir)
            .env("BLING_BASE_URL", base)
            .env("BLING_CLIENT_ID", CLIENT_ID)
            .env("BLING_CLIENT_SECRET", CLIENT_SECRET)
            .output()
    })
    .await
    .expect("node task")
    .expect("node runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "drive.js failed\nstdout: {stdout}\nstderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seen: serde_json::Value = serde_json::from_str(stdout.trim()).expect("one JSON line");
    // The sandbox's own code for an invalid CPF (no public source gives Bling's).
    assert_eq!(seen["validationCode"], 951);
    assert_eq!(seen["duplicateCode"], 3);
    assert_eq!(
        sb.empresa("npm-shop").map(|e| e["id"].clone()),
        Some(seen["empresaId"].clone())
    );
    assert_eq!(seen["nfeSituacao"], 5);

    // What the client did is visible on the sandbox side.
    let pedidos = sb.pedidos("npm-shop");
    assert_eq!(pedidos.len(), 1);
    assert_eq!(pedidos[0]["numeroLoja"], "PETSHOP-INV-1");
    assert_eq!(pedidos[0]["situacao"]["id"], 9);
    assert_eq!(pedidos[0]["total"], 161.95);
    let pix = sb
        .formas_pagamento("npm-shop")
        .into_iter()
        .find(|f| f["tipoPagamento"] == 17)
        .expect("Pix");
    assert_eq!(pedidos[0]["parcelas"][0]["formaPagamento"]["id"], pix["id"]);
    assert_eq!(pedidos[0]["notaFiscal"]["id"], seen["idNotaFiscal"]);
    let log = sb.call_log();
    assert!(
        log.iter().all(|r| r.status != Some(429)),
        "the paced client was never throttled"
    );
    assert!(log.iter().any(|r| r
        .path
        .starts_with("/Api/v3/pedidos/vendas?numerosLojas%5B%5D=")));
}
