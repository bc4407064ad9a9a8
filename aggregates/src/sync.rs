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
/// customer record, reconnect, or wait for Bling.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FailureCause {
    /// Our own validation or Bling's VALIDATION_ERROR: the customer record must be fixed.
    DivergentCustomerRecord {
        #[serde(default)]
        problems: Vec<FieldProblem>,
        #[serde(default)]
        bling_fields: Vec<BlingFieldError>,
        message: String,
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
    /// 429 from Bling: retried after the delay Bling asks for.
    RateLimited { message: String },
}

impl FailureCause {
    /// The stable name used in filters, metrics and exports.
    pub fn code(&self) -> &'static str {
        match self {
            FailureCause::DivergentCustomerRecord { .. } => "divergent_customer_record",
            FailureCause::AuthorizationExpired { .. } => "authorization_expired",
            FailureCause::AuthorizationRevoked { .. } => "authorization_revoked",
            FailureCause::BlingRejected { .. } => "bling_rejected",
            FailureCause::BlingUnavailable { .. } => "bling_unavailable",
            FailureCause::RateLimited { .. } => "rate_limited",
        }
    }

    /// Every code, for validating filters.
    pub const CODES: [&'static str; 6] = [
        "divergent_customer_record",
        "authorization_expired",
        "authorization_revoked",
        "bling_rejected",
        "bling_unavailable",
        "rate_limited",
    ];

    /// Whether the worker retries by itself. Divergent records wait for a customer fix, a
    /// revocation waits for a reconnection, a rejection waits for support.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            FailureCause::AuthorizationExpired { .. }
                | FailureCause::BlingUnavailable { .. }
                | FailureCause::RateLimited { .. }
        )
    }

    /// What support should do about it, in one sentence.
    pub fn advice(&self) -> &'static str {
        match self {
            FailureCause::DivergentCustomerRecord { .. } => {
                "Fix the customer record in the pet-shop system; the invoice is retried when it arrives."
            }
            FailureCause::AuthorizationExpired { .. } => {
                "Renewal is retried automatically; if it persists, check the connection."
            }
            FailureCause::AuthorizationRevoked { .. } => {
                "The shop revoked access to Bling: reconnect; parked work replays by itself."
            }
            FailureCause::BlingRejected { .. } => {
                "Bling refused the request: read Bling's message, correct the data, then reprocess."
            }
            FailureCause::BlingUnavailable { .. } => {
                "Bling is unavailable; retried automatically with backoff."
            }
            FailureCause::RateLimited { .. } => {
                "The Bling account's request limit was reached; retried automatically."
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
        }
        assert_eq!(causes.iter().filter(|c| c.is_transient()).count(), 3);
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
