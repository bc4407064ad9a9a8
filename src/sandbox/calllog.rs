//! The record of every API call, for test assertions and the demo.

use crate::sandbox::faults::FaultKind;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// One call to the Bling API or its OAuth endpoints (the control plane is not recorded).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CallRecord {
    /// Position in the log, from 1.
    pub seq: u64,
    pub at: DateTime<Utc>,
    /// The Bling account the call acted for, when known (from the token or the login).
    pub account: Option<String>,
    pub client_id: Option<String>,
    pub method: String,
    /// Path and query as sent, e.g. `/Api/v3/contatos?numeroDocumento=123`.
    pub path: String,
    /// Status answered; `None` when the connection was closed without an answer.
    pub status: Option<u16>,
    /// The fault injected into this call, if any.
    pub fault: Option<FaultKind>,
    /// Latency added by fault injection.
    pub injected_latency_ms: u64,
    /// Time from receipt to answer (or to the drop).
    pub duration_ms: u64,
    /// Whether the call carried `enable-jwt: 1` (Bling's JWT migration header).
    #[serde(default)]
    pub enable_jwt: bool,
}

#[derive(Default)]
pub(crate) struct CallLog {
    records: Vec<CallRecord>,
    last_seq: u64,
}

impl CallLog {
    pub fn push(&mut self, mut record: CallRecord) {
        self.last_seq += 1;
        record.seq = self.last_seq;
        self.records.push(record);
    }

    pub fn all(&self) -> Vec<CallRecord> {
        self.records.clone()
    }

    /// Empties the log; `seq` keeps counting so records are never confused across a clear.
    pub fn clear(&mut self) {
        self.records.clear();
    }
}

impl CallRecord {
    /// A record of a call just received; status and faults are filled in when it ends.
    pub(crate) fn start(
        method: &axum::http::Method,
        uri: &axum::extract::OriginalUri,
        account: Option<String>,
        client_id: Option<String>,
    ) -> CallRecord {
        CallRecord {
            seq: 0,
            at: Utc::now(),
            account,
            client_id,
            method: method.to_string(),
            path: uri
                .path_and_query()
                .map_or_else(|| uri.path().to_string(), |pq| pq.to_string()),
            status: None,
            fault: None,
            injected_latency_ms: 0,
            duration_ms: 0,
            enable_jwt: false,
        }
    }
}
