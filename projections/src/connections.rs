//! Connection status: one row per tenant, the Bling connection as support sees it.
//!
//! `state` follows the connection aggregate: `never_connected` → `awaiting_authorization`
//! (an authorization was requested) → `connected` (`Connected`/`Reconnected`) → `revoked`
//! (`AuthorizationRevoked`), `rotation_lost` (`RotationLost`: a renewal's answer was lost and
//! the refresh-token chain broke; also needs a reconnect) or `disconnected`. `revoked_since` and its evidence are set while
//! revoked and cleared by a reconnection; `last_error` (a deferred refresh) is kept with its time.

use aggregates::connection::ConnectionEvent;
use serde::{Deserialize, Serialize};

use crate::LogEvent;

pub const NAME: &str = "connections";

pub const NEVER_CONNECTED: &str = "never_connected";

/// The state after `event`, from the state before it.
pub fn next_state(current: &str, event: &ConnectionEvent) -> &'static str {
    match event {
        ConnectionEvent::AuthorizationRequested { .. } => match current {
            NEVER_CONNECTED | "awaiting_authorization" => "awaiting_authorization",
            other => static_state(other),
        },
        ConnectionEvent::Connected { .. } | ConnectionEvent::Reconnected { .. } => "connected",
        ConnectionEvent::TokenRefreshed { .. }
        | ConnectionEvent::RefreshDeferred { .. }
        | ConnectionEvent::AuthorizationFailed { .. }
        | ConnectionEvent::DailyQuotaExhausted { .. }
        | ConnectionEvent::CompanyIdentified { .. }
        | ConnectionEvent::NfeModeChosen { .. } => static_state(current),
        ConnectionEvent::AuthorizationRevoked { .. } => "revoked",
        ConnectionEvent::RotationLost { .. } => "rotation_lost",
        ConnectionEvent::Disconnected { .. } => "disconnected",
    }
}

fn static_state(raw: &str) -> &'static str {
    match raw {
        "awaiting_authorization" => "awaiting_authorization",
        "connected" => "connected",
        "revoked" => "revoked",
        "rotation_lost" => "rotation_lost",
        "disconnected" => "disconnected",
        _ => NEVER_CONNECTED,
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectionStatus {
    pub tenant: String,
    pub state: String,
    pub scopes: Option<String>,
    pub connected_at_ms: Option<i64>,
    pub access_expires_at_ms: Option<i64>,
    pub token_fingerprint: Option<String>,
    pub last_refresh_at_ms: Option<i64>,
    pub last_error: Option<String>,
    pub last_error_at_ms: Option<i64>,
    pub revoked_since_ms: Option<i64>,
    /// JSON of Bling's answer: `{call, status, error_type, message}`.
    pub revoked_evidence: Option<String>,
    pub disconnected_at_ms: Option<i64>,
    pub disconnected_by: Option<String>,
    pub updated_at_ms: i64,
    pub last_position: i64,
}

pub fn apply(
    row: Option<ConnectionStatus>,
    log: &LogEvent,
    event: &ConnectionEvent,
) -> ConnectionStatus {
    let at = log.recorded_at_ms();
    let mut row = row.unwrap_or_else(|| ConnectionStatus {
        tenant: log.tenant.clone(),
        state: NEVER_CONNECTED.to_string(),
        scopes: None,
        connected_at_ms: None,
        access_expires_at_ms: None,
        token_fingerprint: None,
        last_refresh_at_ms: None,
        last_error: None,
        last_error_at_ms: None,
        revoked_since_ms: None,
        revoked_evidence: None,
        disconnected_at_ms: None,
        disconnected_by: None,
        updated_at_ms: at,
        last_position: log.position,
    });
    row.state = next_state(&row.state, event).to_string();
    match event {
        ConnectionEvent::AuthorizationRequested { .. } => {}
        ConnectionEvent::Connected {
            scopes,
            access_expires_at,
            token_fingerprint,
            ..
        }
        | ConnectionEvent::Reconnected {
            scopes,
            access_expires_at,
            token_fingerprint,
        } => {
            row.scopes = Some(scopes.clone());
            row.connected_at_ms = Some(at);
            row.access_expires_at_ms = Some(access_expires_at.timestamp_millis());
            row.token_fingerprint = Some(token_fingerprint.clone());
            row.revoked_since_ms = None;
            row.revoked_evidence = None;
            row.disconnected_at_ms = None;
            row.disconnected_by = None;
        }
        ConnectionEvent::TokenRefreshed {
            access_expires_at,
            token_fingerprint,
        } => {
            row.access_expires_at_ms = Some(access_expires_at.timestamp_millis());
            row.token_fingerprint = Some(token_fingerprint.clone());
            row.last_refresh_at_ms = Some(at);
        }
        ConnectionEvent::RefreshDeferred { reason, .. } => {
            row.last_error = Some(reason.clone());
            row.last_error_at_ms = Some(at);
        }
        ConnectionEvent::AuthorizationRevoked { evidence } => {
            row.revoked_since_ms = Some(at);
            row.revoked_evidence = serde_json::to_string(evidence).ok();
        }
        ConnectionEvent::RotationLost { evidence, reason } => {
            row.revoked_since_ms = Some(at);
            row.revoked_evidence = serde_json::to_string(evidence).ok();
            row.last_error = Some(reason.clone());
            row.last_error_at_ms = Some(at);
        }
        ConnectionEvent::CompanyIdentified { .. } | ConnectionEvent::NfeModeChosen { .. } => {}
        ConnectionEvent::AuthorizationFailed { evidence } => {
            row.last_error = Some(format!(
                "authorization failed: {} answered {} {} ({})",
                evidence.call, evidence.status, evidence.error_type, evidence.message
            ));
            row.last_error_at_ms = Some(at);
        }
        ConnectionEvent::Disconnected { by, .. } => {
            row.disconnected_at_ms = Some(at);
            row.disconnected_by = Some(by.clone());
        }
        ConnectionEvent::DailyQuotaExhausted { until, evidence } => {
            row.last_error = Some(format!(
                "daily quota of Bling requests spent; no calls until {} ({evidence})",
                until.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            ));
            row.last_error_at_ms = Some(at);
        }
    }
    row.updated_at_ms = at;
    row.last_position = log.position;
    row
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::*;
    use crate::{decode, Domain};
    use serde_json::json;

    #[test]
    fn connected_revoked_reconnected() {
        let mut s = Script::new("shop-a");
        let events = [
            s.connection(json!({"AuthorizationRequested": {"tenant": "shop-a", "state_fingerprint": "x", "requested_by": "support"}})),
            s.connection(connected()),
            s.connection(json!({"TokenRefreshed": {"access_expires_at": "2026-11-25T20:00:00Z", "token_fingerprint": "ef"}})),
            s.connection(json!({"RefreshDeferred": {"reason": "token budget spent", "next_attempt_at": "2026-11-25T13:00:00Z"}})),
            s.connection(revoked()),
            s.connection(reconnected()),
        ];
        let mut row = None;
        let mut states = Vec::new();
        let mut rows = Vec::new();
        for e in &events {
            let Ok(Domain::Connection { event }) = decode(e) else {
                panic!()
            };
            let r = apply(row, e, &event);
            states.push(r.state.clone());
            rows.push(r.clone());
            row = Some(r);
        }
        assert_eq!(
            states,
            [
                "awaiting_authorization",
                "connected",
                "connected",
                "connected",
                "revoked",
                "connected"
            ]
        );
        let revoked = &rows[4];
        assert_eq!(revoked.revoked_since_ms, Some(events[4].recorded_at_ms()));
        assert!(revoked
            .revoked_evidence
            .as_deref()
            .unwrap()
            .contains("invalid_grant"));
        assert_eq!(revoked.last_error.as_deref(), Some("token budget spent"));
        assert_eq!(revoked.last_refresh_at_ms, Some(events[2].recorded_at_ms()));
        let back = &rows[5];
        assert_eq!(back.revoked_since_ms, None);
        assert_eq!(back.token_fingerprint.as_deref(), Some("cd34"));
        assert_eq!(
            back.access_expires_at_ms,
            Some(
                chrono::DateTime::parse_from_rfc3339("2026-11-26T18:00:00Z")
                    .unwrap()
                    .timestamp_millis()
            )
        );
    }
}
