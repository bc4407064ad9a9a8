//! The Bling connection of one tenant: authorization, renewal, revocation.
//!
//! Secrets never enter these events: a token appears only as its expiry and a short
//! fingerprint (a prefix of its SHA-256), enough to tell two tokens apart in a dispute and
//! useless to an attacker. The tokens themselves live encrypted in the credentials table.

use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};

use crate::ids::TenantId;

/// What Bling answered when it told us access is gone: the evidence of a revocation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevocationEvidence {
    /// The call that found out, e.g. `POST /oauth/token (refresh)` or `GET /contatos`.
    pub call: String,
    pub status: u16,
    pub error_type: String,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConnectionState {
    NeverConnected,
    AwaitingAuthorization,
    Connected,
    Revoked,
    Disconnected,
}

impl ConnectionState {
    pub fn as_str(self) -> &'static str {
        match self {
            ConnectionState::NeverConnected => "never_connected",
            ConnectionState::AwaitingAuthorization => "awaiting_authorization",
            ConnectionState::Connected => "connected",
            ConnectionState::Revoked => "revoked",
            ConnectionState::Disconnected => "disconnected",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ConnectionCommand {
    RequestAuthorization {
        tenant: TenantId,
        /// SHA-256 prefix of the OAuth `state`, so the callback can be traced to this request.
        state_fingerprint: String,
        requested_by: String,
    },
    CompleteAuthorization {
        tenant: TenantId,
        scopes: String,
        access_expires_at: DateTime<Utc>,
        token_fingerprint: String,
    },
    RecordRefresh {
        access_expires_at: DateTime<Utc>,
        token_fingerprint: String,
    },
    DeferRefresh {
        reason: String,
        next_attempt_at: DateTime<Utc>,
    },
    RecordRevocation {
        evidence: RevocationEvidence,
    },
    /// A refresh of ours got no answer (Bling may have rotated the refresh token and the new
    /// one never arrived), and the next refresh was refused with `invalid_grant`: the chain of
    /// refresh tokens is broken by the lost answer, not by the shop. Needs a reconnect all the
    /// same.
    RecordLostRotation {
        evidence: RevocationEvidence,
    },
    /// Bling refused an authorization attempt (the consent redirect came back with `error=…`,
    /// or the code exchange was refused). Nothing else changes: an existing connection stays
    /// as it is, and support sees why the attempt failed.
    RecordAuthorizationFailure {
        evidence: RevocationEvidence,
    },
    Disconnect {
        by: String,
        reason: Option<String>,
    },
    /// Bling answered that the account's requests for the day are spent (429 with
    /// `"period":"day"`): no call leaves for the tenant until `until` (midnight in Brasília).
    /// Recorded once per day, however many jobs find out.
    RecordDailyQuotaExhausted {
        until: DateTime<Utc>,
        evidence: String,
    },
    /// `GET /empresas/me/dados-basicos` answered: the Bling account behind the connection.
    /// Its `id` is the webhooks' `companyId`. Recorded when it is new or changed.
    RecordCompany {
        company_id: String,
        name: String,
    },
    /// Per tenant: generate the NF-e only (the shop sends it from Bling), or generate and
    /// send it to SEFAZ (`POST /nfe/{id}/enviar`).
    ChooseNfeMode {
        mode: NfeMode,
        by: String,
    },
}

/// What the sync does with an invoice's NF-e.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NfeMode {
    /// `gerar-nfe` only; the NF-e is followed until the shop sends it and SEFAZ answers.
    #[default]
    GenerateOnly,
    /// `gerar-nfe`, then `enviar`.
    GenerateAndSend,
}

impl NfeMode {
    pub fn as_str(self) -> &'static str {
        match self {
            NfeMode::GenerateOnly => "generate_only",
            NfeMode::GenerateAndSend => "generate_and_send",
        }
    }

    pub fn parse(raw: &str) -> Option<NfeMode> {
        [NfeMode::GenerateOnly, NfeMode::GenerateAndSend]
            .into_iter()
            .find(|m| m.as_str() == raw)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ConnectionEvent {
    AuthorizationRequested {
        tenant: TenantId,
        state_fingerprint: String,
        requested_by: String,
    },
    Connected {
        tenant: TenantId,
        scopes: String,
        access_expires_at: DateTime<Utc>,
        token_fingerprint: String,
    },
    /// A new authorization after a revocation, a disconnection or over a live one.
    Reconnected {
        scopes: String,
        access_expires_at: DateTime<Utc>,
        token_fingerprint: String,
    },
    TokenRefreshed {
        access_expires_at: DateTime<Utc>,
        token_fingerprint: String,
    },
    RefreshDeferred {
        reason: String,
        next_attempt_at: DateTime<Utc>,
    },
    AuthorizationRevoked {
        evidence: RevocationEvidence,
    },
    /// The refresh-token chain broke because a renewal's answer was lost (see
    /// [`ConnectionCommand::RecordLostRotation`]); `reason` says so in support's words.
    RotationLost {
        evidence: RevocationEvidence,
        reason: String,
    },
    /// An authorization attempt failed with Bling's answer as evidence (`access_denied`,
    /// `app_inativo`, `UNAUTHORIZED_ERROR`, a reused or expired code…).
    AuthorizationFailed {
        evidence: RevocationEvidence,
    },
    Disconnected {
        by: String,
        reason: Option<String>,
    },
    /// The account's daily quota is spent until `until`; `evidence` is Bling's answer.
    DailyQuotaExhausted {
        until: DateTime<Utc>,
        evidence: String,
    },
    /// The Bling account (company) behind the connection; `company_id` is the webhooks'
    /// `companyId`.
    CompanyIdentified {
        company_id: String,
        name: String,
    },
    NfeModeChosen {
        mode: NfeMode,
        by: String,
    },
}

impl DomainEvent for ConnectionEvent {
    fn event_type(&self) -> String {
        match self {
            ConnectionEvent::AuthorizationRequested { .. } => "AuthorizationRequested",
            ConnectionEvent::Connected { .. } => "Connected",
            ConnectionEvent::Reconnected { .. } => "Reconnected",
            ConnectionEvent::TokenRefreshed { .. } => "TokenRefreshed",
            ConnectionEvent::RefreshDeferred { .. } => "RefreshDeferred",
            ConnectionEvent::AuthorizationRevoked { .. } => "AuthorizationRevoked",
            ConnectionEvent::RotationLost { .. } => "RotationLost",
            ConnectionEvent::AuthorizationFailed { .. } => "AuthorizationFailed",
            ConnectionEvent::Disconnected { .. } => "Disconnected",
            ConnectionEvent::DailyQuotaExhausted { .. } => "DailyQuotaExhausted",
            ConnectionEvent::CompanyIdentified { .. } => "CompanyIdentified",
            ConnectionEvent::NfeModeChosen { .. } => "NfeModeChosen",
        }
        .to_string()
    }

    fn event_version(&self) -> String {
        "1".to_string()
    }
}

/// What support reads when the refresh-token chain broke on a lost answer.
pub const LOST_ROTATION_REASON: &str = "the renewal's answer was lost (Bling rotated the refresh \
     token and its answer never arrived); reconnect";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectionError {
    #[error("the tenant is not connected to Bling (state: {0})")]
    NotConnected(&'static str),
    #[error("the connection belongs to tenant {0}")]
    WrongTenant(String),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BlingConnection {
    pub tenant: Option<TenantId>,
    pub state: ConnectionState,
    pub access_expires_at: Option<DateTime<Utc>>,
    pub token_fingerprint: Option<String>,
    pub revoked: Option<RevocationEvidence>,
    /// Why the last authorization attempt failed, until one succeeds.
    #[serde(default)]
    pub last_authorization_failure: Option<RevocationEvidence>,
    /// Until when Bling said the account's daily quota is spent (the last time it said so).
    #[serde(default)]
    pub daily_quota_exhausted_until: Option<DateTime<Utc>>,
    /// The Bling company id (`companyId` of webhooks), once read.
    #[serde(default)]
    pub company_id: Option<String>,
    #[serde(default)]
    pub nfe_mode: NfeMode,
}

impl Default for BlingConnection {
    fn default() -> Self {
        Self {
            tenant: None,
            state: ConnectionState::NeverConnected,
            access_expires_at: None,
            token_fingerprint: None,
            revoked: None,
            last_authorization_failure: None,
            daily_quota_exhausted_until: None,
            company_id: None,
            nfe_mode: NfeMode::default(),
        }
    }
}

impl BlingConnection {
    fn require_connected(&self) -> Result<(), ConnectionError> {
        if self.state == ConnectionState::Connected {
            Ok(())
        } else {
            Err(ConnectionError::NotConnected(self.state.as_str()))
        }
    }

    fn check_tenant(&self, tenant: &TenantId) -> Result<(), ConnectionError> {
        match &self.tenant {
            Some(owner) if owner != tenant => Err(ConnectionError::WrongTenant(owner.to_string())),
            _ => Ok(()),
        }
    }

    /// Whether a connection existed before, so a new authorization is a reconnection.
    fn was_ever_connected(&self) -> bool {
        self.token_fingerprint.is_some()
    }
}

impl Aggregate for BlingConnection {
    const TYPE: &'static str = "BlingConnection";
    type Command = ConnectionCommand;
    type Event = ConnectionEvent;
    type Error = ConnectionError;
    type Services = ();

    async fn handle(
        &mut self,
        command: ConnectionCommand,
        _services: &(),
        sink: &EventSink<Self>,
    ) -> Result<(), ConnectionError> {
        let event = match command {
            ConnectionCommand::RequestAuthorization {
                tenant,
                state_fingerprint,
                requested_by,
            } => {
                self.check_tenant(&tenant)?;
                ConnectionEvent::AuthorizationRequested {
                    tenant,
                    state_fingerprint,
                    requested_by,
                }
            }
            ConnectionCommand::CompleteAuthorization {
                tenant,
                scopes,
                access_expires_at,
                token_fingerprint,
            } => {
                self.check_tenant(&tenant)?;
                if self.was_ever_connected() {
                    ConnectionEvent::Reconnected {
                        scopes,
                        access_expires_at,
                        token_fingerprint,
                    }
                } else {
                    ConnectionEvent::Connected {
                        tenant,
                        scopes,
                        access_expires_at,
                        token_fingerprint,
                    }
                }
            }
            ConnectionCommand::RecordRefresh {
                access_expires_at,
                token_fingerprint,
            } => {
                self.require_connected()?;
                ConnectionEvent::TokenRefreshed {
                    access_expires_at,
                    token_fingerprint,
                }
            }
            ConnectionCommand::DeferRefresh {
                reason,
                next_attempt_at,
            } => {
                self.require_connected()?;
                ConnectionEvent::RefreshDeferred {
                    reason,
                    next_attempt_at,
                }
            }
            ConnectionCommand::RecordRevocation { evidence } => {
                // Revoked once is enough: several workers may find out at the same time.
                if self.state != ConnectionState::Connected {
                    return Ok(());
                }
                ConnectionEvent::AuthorizationRevoked { evidence }
            }
            ConnectionCommand::RecordLostRotation { evidence } => {
                if self.state != ConnectionState::Connected {
                    return Ok(());
                }
                ConnectionEvent::RotationLost {
                    evidence,
                    reason: LOST_ROTATION_REASON.to_string(),
                }
            }
            ConnectionCommand::RecordAuthorizationFailure { evidence } => {
                ConnectionEvent::AuthorizationFailed { evidence }
            }
            ConnectionCommand::Disconnect { by, reason } => {
                self.require_connected()?;
                ConnectionEvent::Disconnected { by, reason }
            }
            ConnectionCommand::RecordDailyQuotaExhausted { until, evidence } => {
                if self
                    .daily_quota_exhausted_until
                    .is_some_and(|known| known >= until)
                {
                    return Ok(());
                }
                ConnectionEvent::DailyQuotaExhausted { until, evidence }
            }
            ConnectionCommand::RecordCompany { company_id, name } => {
                if self.company_id.as_deref() == Some(company_id.as_str()) {
                    return Ok(());
                }
                ConnectionEvent::CompanyIdentified { company_id, name }
            }
            ConnectionCommand::ChooseNfeMode { mode, by } => {
                if self.nfe_mode == mode {
                    return Ok(());
                }
                ConnectionEvent::NfeModeChosen { mode, by }
            }
        };
        sink.write(event, self).await;
        Ok(())
    }

    fn apply(&mut self, event: ConnectionEvent) {
        match event {
            ConnectionEvent::AuthorizationRequested { tenant, .. } => {
                self.tenant = Some(tenant);
                if self.state == ConnectionState::NeverConnected {
                    self.state = ConnectionState::AwaitingAuthorization;
                }
            }
            ConnectionEvent::Connected {
                tenant,
                access_expires_at,
                token_fingerprint,
                ..
            } => {
                self.tenant = Some(tenant);
                self.state = ConnectionState::Connected;
                self.access_expires_at = Some(access_expires_at);
                self.token_fingerprint = Some(token_fingerprint);
                self.revoked = None;
                self.last_authorization_failure = None;
            }
            ConnectionEvent::Reconnected {
                access_expires_at,
                token_fingerprint,
                ..
            } => {
                self.state = ConnectionState::Connected;
                self.access_expires_at = Some(access_expires_at);
                self.token_fingerprint = Some(token_fingerprint);
                self.revoked = None;
                self.last_authorization_failure = None;
            }
            ConnectionEvent::TokenRefreshed {
                access_expires_at,
                token_fingerprint,
            } => {
                self.access_expires_at = Some(access_expires_at);
                self.token_fingerprint = Some(token_fingerprint);
            }
            ConnectionEvent::RefreshDeferred { .. } => {}
            ConnectionEvent::AuthorizationRevoked { evidence }
            | ConnectionEvent::RotationLost { evidence, .. } => {
                self.state = ConnectionState::Revoked;
                self.revoked = Some(evidence);
            }
            ConnectionEvent::AuthorizationFailed { evidence } => {
                self.last_authorization_failure = Some(evidence);
            }
            ConnectionEvent::Disconnected { .. } => self.state = ConnectionState::Disconnected,
            ConnectionEvent::DailyQuotaExhausted { until, .. } => {
                self.daily_quota_exhausted_until = Some(until)
            }
            ConnectionEvent::CompanyIdentified { company_id, .. } => {
                self.company_id = Some(company_id)
            }
            ConnectionEvent::NfeModeChosen { mode, .. } => self.nfe_mode = mode,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cqrs_es::test::TestFramework;

    fn tenant() -> TenantId {
        TenantId::parse("shop").unwrap()
    }

    fn at(h: u32) -> DateTime<Utc> {
        chrono::NaiveDate::from_ymd_opt(2026, 11, 25)
            .unwrap()
            .and_hms_opt(h, 0, 0)
            .unwrap()
            .and_utc()
    }

    fn connected() -> ConnectionEvent {
        ConnectionEvent::Connected {
            tenant: tenant(),
            scopes: "all".into(),
            access_expires_at: at(6),
            token_fingerprint: "ab12".into(),
        }
    }

    fn evidence() -> RevocationEvidence {
        RevocationEvidence {
            call: "POST /oauth/token (refresh)".into(),
            status: 400,
            error_type: "invalid_grant".into(),
            message: "refresh token revoked".into(),
        }
    }

    fn complete() -> ConnectionCommand {
        ConnectionCommand::CompleteAuthorization {
            tenant: tenant(),
            scopes: "all".into(),
            access_expires_at: at(7),
            token_fingerprint: "cd34".into(),
        }
    }

    #[test]
    fn first_authorization_connects_later_ones_reconnect() {
        TestFramework::<BlingConnection>::with(())
            .given_no_previous_events()
            .when(complete())
            .then_expect_events(vec![ConnectionEvent::Connected {
                tenant: tenant(),
                scopes: "all".into(),
                access_expires_at: at(7),
                token_fingerprint: "cd34".into(),
            }]);
        TestFramework::<BlingConnection>::with(())
            .given(vec![
                connected(),
                ConnectionEvent::AuthorizationRevoked {
                    evidence: evidence(),
                },
            ])
            .when(complete())
            .then_expect_events(vec![ConnectionEvent::Reconnected {
                scopes: "all".into(),
                access_expires_at: at(7),
                token_fingerprint: "cd34".into(),
            }]);
    }

    #[test]
    fn revocation_is_recorded_once() {
        TestFramework::<BlingConnection>::with(())
            .given(vec![connected()])
            .when(ConnectionCommand::RecordRevocation {
                evidence: evidence(),
            })
            .then_expect_events(vec![ConnectionEvent::AuthorizationRevoked {
                evidence: evidence(),
            }]);
        TestFramework::<BlingConnection>::with(())
            .given(vec![
                connected(),
                ConnectionEvent::AuthorizationRevoked {
                    evidence: evidence(),
                },
            ])
            .when(ConnectionCommand::RecordRevocation {
                evidence: evidence(),
            })
            .then_expect_events(vec![]);
    }

    #[test]
    fn a_revoked_connection_cannot_record_a_refresh() {
        TestFramework::<BlingConnection>::with(())
            .given(vec![
                connected(),
                ConnectionEvent::AuthorizationRevoked {
                    evidence: evidence(),
                },
            ])
            .when(ConnectionCommand::RecordRefresh {
                access_expires_at: at(12),
                token_fingerprint: "ef56".into(),
            })
            .then_expect_error(ConnectionError::NotConnected("revoked"));
    }

    #[test]
    fn disconnect_needs_a_connection() {
        TestFramework::<BlingConnection>::with(())
            .given_no_previous_events()
            .when(ConnectionCommand::Disconnect {
                by: "support".into(),
                reason: None,
            })
            .then_expect_error(ConnectionError::NotConnected("never_connected"));
    }
}
