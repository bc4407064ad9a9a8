//! What the sync worker learns from Bling, as the domain records it: why a sync failed, with
//! the evidence a support engineer or an auditor needs to settle a dispute.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::problems::FieldProblem;

/// One HTTP call to Bling, as the audit trail keeps it: enough to show support and auditors
/// what was asked and what Bling answered, without any secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlingCall {
    pub at: DateTime<Utc>,
    pub method: String,
    /// Path under the API base, with its query (`/contatos?numeroDocumento=…`).
    pub path: String,
    /// `None` when no answer came (timeout, dropped connection).
    pub status: Option<u16>,
    pub latency_ms: u64,
    /// Bling's `error.type`, or a transport error's kind.
    pub error_type: Option<String>,
    pub error_message: Option<String>,
}

/// One field Bling refused, as its `VALIDATION_ERROR` body names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlingFieldError {
    pub code: Option<i64>,
    pub element: String,
    pub msg: String,
}

/// The classified cause of a failed sync attempt. Each kind tells support what to do: fix the
/// customer record, fix the invoice, configure the shop's Bling account, reconnect, or wait for
/// Bling. Whose problem a refusal is depends on what was refused: Bling's `VALIDATION_ERROR` on
/// a contato is the customer record's, on a sales order the invoice's (code 3, code 22, an
/// amount Bling will not take), and a missing payment method, fiscal set-up or situação is the
/// account's. Advice that sends support to the wrong record cannot help, so each has its own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FailureCause {
    /// Our own validation or Bling's VALIDATION_ERROR on the contato: the customer record must
    /// be fixed.
    DivergentCustomerRecord {
        #[serde(default)]
        problems: Vec<FieldProblem>,
        #[serde(default)]
        bling_fields: Vec<BlingFieldError>,
        message: String,
    },
    /// Bling refused the sales order itself (its VALIDATION_ERROR with code and message: the
    /// parcelas do not add up, an amount out of range, …): the invoice must change.
    OrderRefused {
        status: u16,
        error_type: String,
        message: String,
        #[serde(default)]
        bling_fields: Vec<BlingFieldError>,
    },
    /// The shop's Bling account lacks a set-up the sync needs: `setting` names it
    /// (`payment_method`, `situacao`, `nfe_fiscal_setup`), `configure` says what to do.
    AccountSetup {
        setting: String,
        message: String,
        configure: String,
        #[serde(default)]
        bling_fields: Vec<BlingFieldError>,
    },
    /// The access token expired and could not be renewed yet (transient).
    AuthorizationExpired { message: String },
    /// The shop revoked access (password change, app removed): reconnect.
    AuthorizationRevoked { message: String },
    /// Any other 4xx from Bling, with its error body.
    BlingRejected {
        status: u16,
        error_type: String,
        message: String,
        description: String,
        #[serde(default)]
        bling_fields: Vec<BlingFieldError>,
    },
    /// 5xx, timeouts and dropped connections: retried with backoff.
    BlingUnavailable { message: String },
    /// 429 from Bling, or the account's daily quota: retried after the wait Bling's answer
    /// implies (its `period`).
    RateLimited { message: String },
    /// SEFAZ rejected the invoice's NF-e (Bling's situação 4): `reason` is SEFAZ's text when
    /// Bling gave it, `fix` says whose data must change before the NF-e is retried.
    NfeRejected {
        nfe_id: i64,
        reason: String,
        fix: NfeFix,
    },
}

/// Whose data a rejected NF-e needs fixed, read from SEFAZ's reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NfeFix {
    /// The recipient: CPF/CNPJ, IE, address (the customer record in the pet-shop system).
    CustomerRecord,
    /// A product's fiscal data: NCM, CFOP, CST/CSOSN, origin (in Bling's product register).
    ProductFiscalData,
    /// The account's fiscal set-up: certificate, issuer, natureza de operação, série.
    AccountSetup,
    /// SEFAZ's reason did not say (or Bling did not pass it on): read the NF-e in Bling.
    Unknown,
}

impl NfeFix {
    pub fn as_str(self) -> &'static str {
        match self {
            NfeFix::CustomerRecord => "customer_record",
            NfeFix::ProductFiscalData => "product_fiscal_data",
            NfeFix::AccountSetup => "account_setup",
            NfeFix::Unknown => "unknown",
        }
    }

    /// Classifies SEFAZ's rejection text (Portuguese, as Bling relays it). Words about the
    /// recipient win over words about products, which win over the issuer's set-up.
    pub fn classify(reason: &str) -> NfeFix {
        let r = reason.to_lowercase();
        let any = |words: &[&str]| words.iter().any(|w| r.contains(w));
        if any(&[
            "destinat",
            "cpf",
            "cnpj",
            "inscrição estadual do dest",
            "endereço",
            "cep",
            "município do dest",
        ]) {
            NfeFix::CustomerRecord
        } else if any(&[
            "ncm",
            "cfop",
            "cst",
            "csosn",
            "produto",
            "item",
            "origem da mercadoria",
            "gtin",
            "cest",
        ]) {
            NfeFix::ProductFiscalData
        } else if any(&[
            "certificado",
            "emitente",
            "natureza",
            "série",
            "serie",
            "credenciad",
            "ambiente",
            "regime",
        ]) {
            NfeFix::AccountSetup
        } else {
            NfeFix::Unknown
        }
    }

    /// What to fix, for people.
    pub fn advice(self) -> &'static str {
        match self {
            NfeFix::CustomerRecord => "fix the customer's record (document, address) in the pet-shop system; it reaches Bling's contato, then retry the NF-e",
            NfeFix::ProductFiscalData => "fix the product's fiscal data (NCM, CFOP, CST/CSOSN, origin) in Bling's product register, then retry the NF-e",
            NfeFix::AccountSetup => "fix the account's fiscal set-up in Bling (certificate, issuer data, natureza de operação, série), then retry the NF-e",
            NfeFix::Unknown => "read SEFAZ's reason on the NF-e in Bling, fix what it names, then retry the NF-e",
        }
    }
}

/// The kind of a [`FailureCause`], without its evidence: what filters, metrics, exports, the
/// console and the CLI name, and the one place its label and advice are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CauseKind {
    DivergentCustomerRecord,
    OrderRefused,
    AccountSetup,
    AuthorizationExpired,
    AuthorizationRevoked,
    BlingRejected,
    BlingUnavailable,
    RateLimited,
    NfeRejected,
    /// Not a failed call: Bling's order was changed or deleted by someone else (see
    /// `InvoiceEvent::OrderDiverged`); listed with the failures because it waits for support.
    OrderDiverged,
}

impl CauseKind {
    /// Every kind, in the order support reads them.
    pub const ALL: [CauseKind; 10] = [
        CauseKind::DivergentCustomerRecord,
        CauseKind::OrderRefused,
        CauseKind::AccountSetup,
        CauseKind::AuthorizationExpired,
        CauseKind::AuthorizationRevoked,
        CauseKind::BlingRejected,
        CauseKind::BlingUnavailable,
        CauseKind::RateLimited,
        CauseKind::NfeRejected,
        CauseKind::OrderDiverged,
    ];

    /// The stable name used in filters, metrics and exports.
    pub fn code(self) -> &'static str {
        match self {
            CauseKind::DivergentCustomerRecord => "divergent_customer_record",
            CauseKind::OrderRefused => "order_refused",
            CauseKind::AccountSetup => "account_setup",
            CauseKind::AuthorizationExpired => "authorization_expired",
            CauseKind::AuthorizationRevoked => "authorization_revoked",
            CauseKind::BlingRejected => "bling_rejected",
            CauseKind::BlingUnavailable => "bling_unavailable",
            CauseKind::RateLimited => "rate_limited",
            CauseKind::NfeRejected => "nfe_rejected",
            CauseKind::OrderDiverged => "order_diverged",
        }
    }

    /// The kind named `code`, if it is one.
    pub fn parse(code: &str) -> Option<CauseKind> {
        CauseKind::ALL.into_iter().find(|k| k.code() == code)
    }

    /// A short label for people.
    pub fn label(self) -> &'static str {
        match self {
            CauseKind::DivergentCustomerRecord => "Customer record Bling cannot take",
            CauseKind::OrderRefused => "Bling refused the sales order",
            CauseKind::AccountSetup => "Bling account set-up missing",
            CauseKind::AuthorizationExpired => "Bling authorization expired",
            CauseKind::AuthorizationRevoked => "Bling access revoked",
            CauseKind::BlingRejected => "Bling refused the request",
            CauseKind::BlingUnavailable => "Bling unavailable",
            CauseKind::RateLimited => "Bling request limit reached",
            CauseKind::NfeRejected => "SEFAZ rejected the NF-e",
            CauseKind::OrderDiverged => "Order changed in Bling",
        }
    }

    /// What support should do about it, in one sentence.
    pub fn advice(self) -> &'static str {
        match self {
            CauseKind::DivergentCustomerRecord => {
                "Fix the customer record in the pet-shop system; the invoice is retried when it arrives."
            }
            CauseKind::OrderRefused => {
                "Bling refused the sales order itself, not the customer: read Bling's code and message, correct the invoice in the pet-shop system (an update retries it), or reprocess once the cause is gone."
            }
            CauseKind::AccountSetup => {
                "The shop's Bling account needs a set-up the sync depends on: do what the failure says to configure, then reprocess."
            }
            CauseKind::AuthorizationExpired => {
                "Renewal is retried automatically; if it persists, check the connection."
            }
            CauseKind::AuthorizationRevoked => {
                "The shop revoked access to Bling: reconnect; parked work replays by itself."
            }
            CauseKind::BlingRejected => {
                "Bling refused the request: read Bling's message, correct the data, then reprocess."
            }
            CauseKind::BlingUnavailable => {
                "Bling is unavailable; retried automatically with backoff."
            }
            CauseKind::RateLimited => {
                "The Bling account's request limit was reached; retried automatically when the limit allows (the next day in Brasília for the daily quota)."
            }
            CauseKind::NfeRejected => {
                "SEFAZ rejected the NF-e: fix what its reason names (the customer record, a product's fiscal data in Bling, or the account's fiscal set-up in Bling), then retry the NF-e (POST …/invoices/{id}/nfe/retry)."
            }
            CauseKind::OrderDiverged => {
                "The order was changed or deleted in Bling, not by the ledger: push ours again or accept Bling's (POST …/invoices/{id}/divergence)."
            }
        }
    }

    /// Whether this is about the shop's Bling connection: when it is there, it explains the
    /// other failures of the same moment (support reads it first).
    pub fn is_about_the_connection(self) -> bool {
        matches!(
            self,
            CauseKind::AuthorizationExpired | CauseKind::AuthorizationRevoked
        )
    }

    /// Whether the worker retries by itself. Divergent records wait for a customer fix, a
    /// refused order for an invoice update, a revocation for a reconnection, set-up and other
    /// rejections for support.
    pub fn is_transient(self) -> bool {
        matches!(
            self,
            CauseKind::AuthorizationExpired | CauseKind::BlingUnavailable | CauseKind::RateLimited
        )
    }
}

impl FailureCause {
    /// Every code, for validating filters.
    pub const CODES: [&'static str; 10] = [
        "divergent_customer_record",
        "order_refused",
        "account_setup",
        "authorization_expired",
        "authorization_revoked",
        "bling_rejected",
        "bling_unavailable",
        "rate_limited",
        "nfe_rejected",
        "order_diverged",
    ];

    pub fn kind(&self) -> CauseKind {
        match self {
            FailureCause::DivergentCustomerRecord { .. } => CauseKind::DivergentCustomerRecord,
            FailureCause::OrderRefused { .. } => CauseKind::OrderRefused,
            FailureCause::AccountSetup { .. } => CauseKind::AccountSetup,
            FailureCause::AuthorizationExpired { .. } => CauseKind::AuthorizationExpired,
            FailureCause::AuthorizationRevoked { .. } => CauseKind::AuthorizationRevoked,
            FailureCause::BlingRejected { .. } => CauseKind::BlingRejected,
            FailureCause::BlingUnavailable { .. } => CauseKind::BlingUnavailable,
            FailureCause::RateLimited { .. } => CauseKind::RateLimited,
            FailureCause::NfeRejected { .. } => CauseKind::NfeRejected,
        }
    }

    /// The stable name used in filters, metrics and exports.
    pub fn code(&self) -> &'static str {
        self.kind().code()
    }

    /// Whether the worker retries by itself (see [`CauseKind::is_transient`]).
    pub fn is_transient(&self) -> bool {
        self.kind().is_transient()
    }

    /// What support should do about it, in one sentence.
    pub fn advice(&self) -> &'static str {
        self.kind().advice()
    }

    /// The one-line message: Bling's code, type and message for a refusal, what to configure
    /// for a set-up problem.
    pub fn message(&self) -> String {
        match self {
            FailureCause::DivergentCustomerRecord { message, .. }
            | FailureCause::AuthorizationExpired { message }
            | FailureCause::AuthorizationRevoked { message }
            | FailureCause::BlingUnavailable { message }
            | FailureCause::RateLimited { message } => message.clone(),
            FailureCause::OrderRefused {
                status,
                error_type,
                message,
                bling_fields,
            } => {
                let codes: Vec<String> = bling_fields
                    .iter()
                    .filter_map(|f| f.code.map(|c| format!("code {c}: {}", f.msg)))
                    .collect();
                if codes.is_empty() {
                    format!("{status} {error_type}: {message}")
                } else {
                    format!("{status} {error_type}: {message} ({})", codes.join("; "))
                }
            }
            FailureCause::AccountSetup {
                message, configure, ..
            } => format!("{message}. To fix: {configure}"),
            FailureCause::NfeRejected {
                nfe_id,
                reason,
                fix,
            } => format!("NF-e {nfe_id} rejected: {reason}. To fix: {}", fix.advice()),
            FailureCause::BlingRejected {
                status,
                error_type,
                message,
                description,
                ..
            } => {
                if description.is_empty() {
                    format!("{status} {error_type}: {message}")
                } else {
                    format!("{status} {error_type}: {message} ({description})")
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_cause_has_a_listed_code() {
        let causes = [
            FailureCause::DivergentCustomerRecord {
                problems: vec![],
                bling_fields: vec![],
                message: String::new(),
            },
            FailureCause::AuthorizationExpired {
                message: String::new(),
            },
            FailureCause::AuthorizationRevoked {
                message: String::new(),
            },
            FailureCause::OrderRefused {
                status: 400,
                error_type: "VALIDATION_ERROR".into(),
                message: String::new(),
                bling_fields: vec![],
            },
            FailureCause::AccountSetup {
                setting: "payment_method".into(),
                message: String::new(),
                configure: String::new(),
                bling_fields: vec![],
            },
            FailureCause::BlingRejected {
                status: 403,
                error_type: "FORBIDDEN".into(),
                message: String::new(),
                description: String::new(),
                bling_fields: vec![],
            },
            FailureCause::BlingUnavailable {
                message: String::new(),
            },
            FailureCause::RateLimited {
                message: String::new(),
            },
        ];
        for cause in &causes {
            assert!(FailureCause::CODES.contains(&cause.code()));
            assert_eq!(CauseKind::parse(cause.code()), Some(cause.kind()));
        }
        assert_eq!(causes.iter().filter(|c| c.is_transient()).count(), 3);
        let codes: Vec<_> = CauseKind::ALL.iter().map(|k| k.code()).collect();
        assert_eq!(codes, FailureCause::CODES);
        assert_eq!(CauseKind::parse("nope"), None);
    }

    #[test]
    fn a_refused_order_names_bling_codes() {
        let cause = FailureCause::OrderRefused {
            status: 400,
            error_type: "VALIDATION_ERROR".into(),
            message: "Não foi possível salvar a venda".into(),
            bling_fields: vec![BlingFieldError {
                code: Some(22),
                element: String::new(),
                msg: "O somatório do valor das parcelas difere do total da venda".into(),
            }],
        };
        assert_eq!(
            cause.message(),
            "400 VALIDATION_ERROR: Não foi possível salvar a venda (code 22: O somatório do valor das parcelas difere do total da venda)"
        );
        assert!(!cause.is_transient());
    }

    #[test]
    fn cause_serializes_with_its_kind() {
        let json = serde_json::to_value(FailureCause::RateLimited {
            message: "429".into(),
        })
        .unwrap();
        assert_eq!(json["kind"], "rate_limited");
    }
}
