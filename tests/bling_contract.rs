//! Contract tests from Bling's recorded and documented answers (`tests/fixtures/bling/`).
//!
//! Each fixture is one answer as Bling gave it (recorded traffic) or as Bling's guide or
//! OpenAPI document shows it, with its source, its raw body (bytes as they came: the recorded
//! 404 is pretty-printed) and what the client must make of it. Two things are checked:
//!
//! - the client parses and classifies every fixture as `expect` says (error kind, duplicate
//!   sale, failure cause and set-up setting, field names, parsed amounts);
//! - the sandbox, provoked into the same situation over HTTP, answers with the same *shape*:
//!   every key of the fixture's body is there, with a value of the same JSON type, recursively
//!   (`shape_of`). Values and extra keys are the sandbox's own; bytes are never compared.

mod sandbox_support;

use std::path::{Path, PathBuf};

use aggregates::sync::FailureCause;
use bling_ledger::bling::models::Data;
use bling_ledger::bling::{
    BlingError, ModuloSistema, Operation, PedidoVenda, PedidoVendaListItem, Situacao,
};
use serde_json::Value;

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/bling")
}

struct Fixture {
    name: String,
    json: Value,
}

impl Fixture {
    fn status(&self) -> u16 {
        self.json["status"].as_u64().expect("status") as u16
    }

    fn body(&self) -> &str {
        self.json["body"].as_str().expect("body is the raw text")
    }

    fn expect(&self, key: &str) -> &Value {
        &self.json["expect"][key]
    }

    fn body_json(&self) -> Value {
        serde_json::from_str(self.body()).unwrap_or_else(|e| panic!("{}: body: {e}", self.name))
    }
}

fn fixtures() -> Vec<Fixture> {
    let mut all: Vec<Fixture> = std::fs::read_dir(fixtures_dir())
        .expect("tests/fixtures/bling")
        .map(|entry| entry.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .map(|path| {
            let text = std::fs::read_to_string(&path).expect("fixture readable");
            Fixture {
                name: path.file_stem().unwrap().to_string_lossy().into_owned(),
                json: serde_json::from_str(&text)
                    .unwrap_or_else(|e| panic!("{}: {e}", path.display())),
            }
        })
        .collect();
    all.sort_by(|a, b| a.name.cmp(&b.name));
    assert!(all.len() >= 20, "the fixtures are there");
    all
}

fn fixture(name: &str) -> Fixture {
    fixtures()
        .into_iter()
        .find(|f| f.name == name)
        .unwrap_or_else(|| panic!("no fixture {name}"))
}

fn op(f: &Fixture) -> Operation {
    match f.expect("op").as_str() {
        Some("contato") => Operation::Contato,
        Some("situacao") => Operation::Situacao,
        Some("nfe") => Operation::Nfe,
        _ if f.json["request"]
            .as_str()
            .unwrap_or("")
            .contains("/contatos") =>
        {
            Operation::Contato
        }
        _ => Operation::Pedido,
    }
}

#[test]
fn every_fixture_names_its_source_and_what_to_expect() {
    for f in fixtures() {
        let source = f.json["source"].as_str().unwrap_or("");
        assert!(
            source.contains('[') && source.len() > 20,
            "{}: a source like [VCR] repo : path",
            f.name
        );
        assert!(
            matches!(f.json["kind"].as_str(), Some("recorded" | "documented")),
            "{}: kind",
            f.name
        );
        assert!(f.json["request"].is_string(), "{}: request", f.name);
        assert!(
            f.json["expect"].as_object().is_some_and(|o| !o.is_empty()),
            "{}: expect",
            f.name
        );
        if !f.body().is_empty() {
            f.body_json();
        }
    }
}

/// The client's reading of every error fixture.
#[test]
fn the_client_classifies_every_recorded_error() {
    let mut checked = 0;
    for f in fixtures().iter().filter(|f| f.expect("error").is_string()) {
        let e = BlingError::from_response(f.status(), f.body().as_bytes(), None);
        let name = &f.name;
        match f.expect("error").as_str().unwrap() {
            "rate_limited" => {
                let BlingError::RateLimited { retry_after, daily } = &e else {
                    panic!("{name}: {e:?}");
                };
                let wait = retry_after.expect("a wait, though Bling sends no Retry-After");
                assert_eq!(*daily, f.expect("daily").as_bool().unwrap(), "{name}");
                if *daily {
                    assert!(
                        wait > std::time::Duration::from_secs(1),
                        "{name}: until midnight"
                    );
                } else {
                    assert!(
                        wait >= std::time::Duration::from_secs(1),
                        "{name}: the window"
                    );
                    assert!(
                        wait < std::time::Duration::from_secs(2),
                        "{name}: not longer"
                    );
                }
                assert!(e.is_transient());
            }
            "unauthorized" => {
                let BlingError::Unauthorized { error_type, .. } = &e else {
                    panic!("{name}: {e:?}");
                };
                assert_eq!(
                    error_type,
                    f.expect("error_type").as_str().unwrap(),
                    "{name}"
                );
            }
            "rejected" => {
                let BlingError::Rejected { status, body } = &e else {
                    panic!("{name}: {e:?}");
                };
                assert_eq!(*status, f.status());
                assert_eq!(
                    body.error_type,
                    f.expect("error_type").as_str().unwrap(),
                    "{name}"
                );
                assert!(!e.is_transient());
            }
            "unavailable" => {
                assert!(matches!(e, BlingError::Unavailable { .. }), "{name}: {e:?}");
                assert!(e.is_transient());
            }
            "validation" => {
                assert!(matches!(e, BlingError::Validation { .. }), "{name}: {e:?}");
                assert_eq!(
                    e.is_duplicate_sale(),
                    f.expect("duplicate_sale").as_bool().unwrap(),
                    "{name}"
                );
            }
            other => panic!("{name}: unknown expectation {other}"),
        }
        if let Some(cause) = f.expect("cause").as_str() {
            let got = e.to_failure_cause(op(f));
            assert_eq!(got.code(), cause, "{name}: {got:?}");
            if let Some(setting) = f.expect("setting").as_str() {
                let FailureCause::AccountSetup {
                    setting: s,
                    configure,
                    ..
                } = &got
                else {
                    panic!("{name}: {got:?}");
                };
                assert_eq!(s, setting, "{name}");
                assert!(!configure.is_empty(), "{name}: says what to configure");
            }
            if let Some(codes) = f.expect("codes").as_array() {
                let FailureCause::OrderRefused { bling_fields, .. } = &got else {
                    panic!("{name}: {got:?}");
                };
                let got: Vec<i64> = bling_fields.iter().filter_map(|f| f.code).collect();
                let want: Vec<i64> = codes.iter().filter_map(Value::as_i64).collect();
                assert_eq!(got, want, "{name}");
                assert!(got.iter().all(|c| got_message_names(&e, *c)), "{name}");
            }
            if let Some(elements) = f.expect("elements").as_array() {
                let BlingError::Validation { body } = &e else {
                    panic!("{name}")
                };
                let got: Vec<String> = body.field_errors().into_iter().map(|f| f.element).collect();
                let want: Vec<&str> = elements.iter().filter_map(Value::as_str).collect();
                assert_eq!(got, want, "{name}");
            }
        }
        checked += 1;
    }
    assert!(checked >= 12, "only {checked} error fixtures checked");
}

/// The cause's message carries Bling's code, so support reads it without the raw body.
fn got_message_names(e: &BlingError, code: i64) -> bool {
    e.to_failure_cause(Operation::Pedido)
        .message()
        .contains(&format!("code {code}"))
}

#[test]
fn the_client_reads_every_recorded_answer() {
    let mut checked = 0;
    for f in fixtures().iter().filter(|f| f.expect("parse").is_string()) {
        let name = &f.name;
        match f.expect("parse").as_str().unwrap() {
            "pedido" => {
                let p: Data<PedidoVenda> = serde_json::from_str(f.body()).expect(name);
                let p = p.data;
                assert_eq!(
                    p.total.map(|t| t.0),
                    f.expect("total_centavos").as_u64(),
                    "{name}"
                );
                let parcelas: u64 = p.parcelas.iter().map(|x| x.valor.0).sum();
                assert_eq!(
                    Some(parcelas),
                    f.expect("parcelas_centavos").as_u64(),
                    "{name}"
                );
                assert_eq!(
                    p.contato.numero_documento.as_deref(),
                    f.expect("contato_documento").as_str(),
                    "{name}: read back punctuated"
                );
                assert_eq!(p.data_prevista, None, "{name}: 0000-00-00 is no date");
                assert_eq!(
                    p.nota_fiscal.map(|n| n.id),
                    f.expect("nota_fiscal").as_i64(),
                    "{name}"
                );
                let s = p.situacao.expect("situacao");
                assert_eq!(
                    (s.id, s.valor),
                    (
                        f.expect("situacao")["id"].as_i64().unwrap(),
                        f.expect("situacao")["valor"].as_i64().unwrap()
                    ),
                    "{name}"
                );
                assert_eq!(
                    p.categoria.map(|c| c.id),
                    Some(0),
                    "{name}: empty reference"
                );
            }
            "pedido_list" => {
                let p: Data<Vec<PedidoVendaListItem>> = serde_json::from_str(f.body()).expect(name);
                let first = &p.data[0];
                assert_eq!(Some(first.total.0), f.expect("total_centavos").as_u64());
                assert_eq!(first.numero_loja, f.expect("numero_loja").as_str().unwrap());
                assert_eq!(
                    (first.situacao.id, first.situacao.valor),
                    (
                        f.expect("situacao")["id"].as_i64().unwrap(),
                        f.expect("situacao")["valor"].as_i64().unwrap()
                    )
                );
            }
            "modulos" => {
                let m: Data<Vec<ModuloSistema>> = serde_json::from_str(f.body()).expect(name);
                let ids: Vec<i64> = m.data.iter().map(|m| m.id).collect();
                assert_eq!(Value::from(ids), *f.expect("ids"), "{name}");
            }
            "situacoes" => {
                let s: Data<Vec<Situacao>> = serde_json::from_str(f.body()).expect(name);
                let ids: Vec<i64> = s.data.iter().map(|s| s.id).collect();
                assert_eq!(Value::from(ids), *f.expect("ids"), "{name}");
            }
            "no_content" => assert!(f.body().is_empty() && f.status() == 204, "{name}"),
            "token" => {
                let t = f.body_json();
                assert!(t["access_token"].is_string() && t["refresh_token"].is_string());
                assert_eq!(t["expires_in"], 21600);
                assert!(t["token_type"]
                    .as_str()
                    .is_some_and(|t| t.eq_ignore_ascii_case("bearer")));
            }
            "token_error" => {
                let e: bling_ledger::oauth::endpoint::BlingTokenError =
                    serde_json::from_str(f.body()).expect(name);
                assert_eq!(e.error_type(), f.expect("error_type").as_str().unwrap());
                assert!(!e.message().is_empty(), "{name}");
            }
            other => panic!("{name}: unknown expectation {other}"),
        }
        checked += 1;
    }
    assert!(checked >= 10, "only {checked} answers checked");
}
