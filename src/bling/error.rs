//! Bling's error bodies and the client's classification of every failure, mapped to the
//! domain's [`FailureCause`].

use std::fmt;
use std::time::Duration;

use aggregates::connection::RevocationEvidence;
use aggregates::sync::{BlingFieldError, FailureCause};
use serde::{Deserialize, Deserializer, Serialize};

/// Bling's error body, `{"error":{"type","message","description","fields":[…]}}`, without the
/// `error` envelope. Every field is optional on the wire; missing ones read as empty.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct BlingErrorBody {
    #[serde(rename = "type")]
    pub error_type: String,
    pub message: String,
    pub description: String,
    pub fields: Vec<BlingErrorField>,
}

/// One refused field of a `VALIDATION_ERROR`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct BlingErrorField {
    #[serde(deserialize_with = "lenient_i64")]
    pub code: Option<i64>,
    pub msg: String,
    pub element: String,
    pub namespace: String,
    /// Errors inside arrays (`itens`), one per refused element.
    pub collection: Vec<BlingErrorItem>,
}

/// An error inside an array field (`fields[].collection[]`); also the shape of the `alertas`
/// Bling may add to a created sales order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct BlingErrorItem {
    #[serde(deserialize_with = "lenient_i64")]
    pub index: Option<i64>,
    #[serde(deserialize_with = "lenient_i64")]
    pub code: Option<i64>,
    pub msg: String,
    pub element: String,
    pub namespace: String,
}

/// Accepts a number, a numeric string or null (integrators report both for `code`).
fn lenient_i64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Int(i64),
        Float(f64),
        Text(String),
    }
    Ok(match Option::<Raw>::deserialize(d)? {
        Some(Raw::Int(i)) => Some(i),
        Some(Raw::Float(f)) if f.fract() == 0.0 => Some(f as i64),
        Some(Raw::Text(s)) => s.trim().parse().ok(),
        _ => None,
    })
}

#[derive(Deserialize)]
struct Envelope {
    error: BlingErrorBody,
}

/// The longest piece of a non-JSON error body kept as its message.
const MAX_RAW_MESSAGE: usize = 300;

impl BlingErrorBody {
    /// Reads an error body. Anything that is not Bling's JSON (an HTML page from a proxy, an
    /// empty body) becomes a body of type `HTTP_<status>` with the text as message.
    pub fn parse(status: u16, raw: &[u8]) -> BlingErrorBody {
        if let Ok(Envelope { error }) = serde_json::from_slice::<Envelope>(raw) {
            return error;
        }
        let text = String::from_utf8_lossy(raw);
        let text = text.trim();
        let message = match text.char_indices().nth(MAX_RAW_MESSAGE) {
            Some((cut, _)) => format!("{}…", &text[..cut]),
            None => text.to_string(),
        };
        BlingErrorBody {
            error_type: format!("HTTP_{status}"),
            message,
            ..BlingErrorBody::default()
        }
    }

    /// Every refused field, flattened: items of a collection are named
    /// `namespace[index].element` (e.g. `itens[0].quantidade`).
    pub fn field_errors(&self) -> Vec<BlingFieldError> {
        let mut out = Vec::new();
        for f in &self.fields {
            out.push(BlingFieldError {
                code: f.code,
                element: f.element.clone(),
                msg: f.msg.clone(),
            });
            for item in &f.collection {
                let ns = if item.namespace.is_empty() {
                    f.element.as_str()
                } else {
                    item.namespace.as_str()
                };
                let element = match item.index {
                    Some(i) => format!("{ns}[{i}].{}", item.element),
                    None => format!("{ns}.{}", item.element),
                };
                out.push(BlingFieldError {
                    code: item.code,
                    element,
                    msg: item.msg.clone(),
                });
            }
        }
        out
    }

    /// `message: description` (or whichever is present), for error messages.
    pub fn summary(&self) -> String {
        match (self.message.is_empty(), self.description.is_empty()) {
            (false, false) if self.message != self.description => {
                format!("{}: {}", self.message, self.description)
            }
            (false, _) => self.message.clone(),
            (true, false) => self.description.clone(),
            (true, true) => self.error_type.clone(),
        }
    }
}

/// Every way a call to Bling can fail, classified for the sync engine.
///
/// Messages come from Bling's error body or the transport error; access tokens never appear
/// in them (the client never puts tokens in URLs and scrubs them from any text it keeps).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BlingError {
    /// 401 from Bling. The client handles it (renewal, then revocation), so it is only
    /// returned by [`BlingError::from_response`], never by a client method.
    #[error("Bling refused the access token (HTTP 401 {error_type}): {message}")]
    Unauthorized { error_type: String, message: String },
    /// 400 `VALIDATION_ERROR`: the data must be fixed.
    #[error("Bling refused the data (VALIDATION_ERROR): {}", body.summary())]
    Validation { body: BlingErrorBody },
    /// Any other 4xx (404 `RESOURCE_NOT_FOUND`, 403 `FORBIDDEN`, …). A few client-side
    /// rejections use this too, with an error type of ours (e.g. `SALES_MODULE_NOT_FOUND`).
    #[error("Bling rejected the request (HTTP {status} {}): {}", body.error_type, body.summary())]
    Rejected { status: u16, body: BlingErrorBody },
    /// 429 from Bling, or the client's own daily budget for the account is spent (then no
    /// call was made). `retry_after` is Bling's `Retry-After`, or the time until the budget
    /// resets.
    #[error("Bling request limit reached{}", RetryAfter(*retry_after))]
    RateLimited { retry_after: Option<Duration> },
    /// 5xx, timeouts, connection errors, dropped connections: Bling is struggling. Never a
    /// revocation. `status` is `None` when no answer came.
    #[error("Bling unavailable ({}): {message}", Status(*status))]
    Unavailable {
        status: Option<u16>,
        message: String,
    },
    /// The shop revoked access: a renewed token was refused, renewal answered `invalid_grant`,
    /// or the token source already knew. `evidence` is the refused call, when this call found
    /// out (the token source has been told through `report_revoked`).
    #[error("Bling authorization revoked{}", Evidence(evidence.as_ref()))]
    Revoked {
        evidence: Option<RevocationEvidence>,
    },
    /// The tenant has no Bling connection.
    #[error("not connected to Bling")]
    NotConnected,
    /// The token source could not renew the token for a reason that may pass.
    #[error("Bling authorization could not be renewed: {0}")]
    Auth(String),
    /// Bling answered success with a body we could not read (or we could not encode ours).
    #[error("unexpected answer from Bling: {0}")]
    Decode(String),
}

struct RetryAfter(Option<Duration>);

impl fmt::Display for RetryAfter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(d) => write!(f, "; retry after {:.1} s", d.as_secs_f64()),
            None => Ok(()),
        }
    }
}

struct Status(Option<u16>);

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(s) => write!(f, "HTTP {s}"),
            None => f.write_str("no answer"),
        }
    }
}

struct Evidence<'a>(Option<&'a RevocationEvidence>);

impl fmt::Display for Evidence<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(e) => write!(
                f,
                ": {} answered {} {} ({})",
                e.call, e.status, e.error_type, e.message
            ),
            None => Ok(()),
        }
    }
}

impl BlingError {
    /// Classifies a non-success HTTP answer. `retry_after` is the parsed `Retry-After` header.
    pub fn from_response(status: u16, body: &[u8], retry_after: Option<Duration>) -> BlingError {
        match status {
            401 => {
                let body = BlingErrorBody::parse(status, body);
                BlingError::Unauthorized {
                    message: body.summary(),
                    error_type: body.error_type,
                }
            }
            429 => BlingError::RateLimited { retry_after },
            // 408 is the server giving up waiting for us: transient like a timeout.
            408 | 500..=599 => {
                let body = BlingErrorBody::parse(status, body);
                BlingError::Unavailable {
                    status: Some(status),
                    message: format!("{}: {}", body.error_type, body.summary()),
                }
            }
            _ => {
                let body = BlingErrorBody::parse(status, body);
                if status == 400 && body.error_type == "VALIDATION_ERROR" {
                    BlingError::Validation { body }
                } else {
                    BlingError::Rejected { status, body }
                }
            }
        }
    }

    /// The domain's classification, as the sync engine records it in `SyncFailed`.
    pub fn to_failure_cause(&self) -> FailureCause {
        match self {
            BlingError::Validation { body } => FailureCause::DivergentCustomerRecord {
                problems: Vec::new(),
                bling_fields: body.field_errors(),
                message: body.summary(),
            },
            BlingError::Rejected { status, body } => FailureCause::BlingRejected {
                status: *status,
                error_type: body.error_type.clone(),
                message: body.message.clone(),
                description: body.description.clone(),
                bling_fields: body.field_errors(),
            },
            BlingError::Unavailable { .. } => FailureCause::BlingUnavailable {
                message: self.to_string(),
            },
            BlingError::RateLimited { .. } => FailureCause::RateLimited {
                message: self.to_string(),
            },
            BlingError::Revoked { .. } | BlingError::NotConnected => {
                FailureCause::AuthorizationRevoked {
                    message: self.to_string(),
                }
            }
            BlingError::Unauthorized { .. } | BlingError::Auth(_) => {
                FailureCause::AuthorizationExpired {
                    message: self.to_string(),
                }
            }
            BlingError::Decode(message) => FailureCause::BlingRejected {
                status: 200,
                error_type: "DECODE_ERROR".into(),
                message: message.clone(),
                description: String::new(),
                bling_fields: Vec::new(),
            },
        }
    }

    /// Whether waiting and trying again may succeed (same answer as
    /// `self.to_failure_cause().is_transient()`).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            BlingError::Unavailable { .. }
                | BlingError::RateLimited { .. }
                | BlingError::Unauthorized { .. }
                | BlingError::Auth(_)
        )
    }

    /// Bling's `error.type`, or a name of ours for the other kinds (for [`BlingCall`]s, logs
    /// and metrics).
    ///
    /// [`BlingCall`]: aggregates::sync::BlingCall
    pub fn error_type(&self) -> String {
        match self {
            BlingError::Unauthorized { error_type, .. } => error_type.clone(),
            BlingError::Validation { body } | BlingError::Rejected { body, .. } => {
                body.error_type.clone()
            }
            BlingError::RateLimited { .. } => "TOO_MANY_REQUESTS".into(),
            BlingError::Unavailable {
                status: Some(_), ..
            } => "SERVER_ERROR".into(),
            BlingError::Unavailable { status: None, .. } => "transport".into(),
            BlingError::Revoked { .. } => "revoked".into(),
            BlingError::NotConnected => "not_connected".into(),
            BlingError::Auth(_) => "auth".into(),
            BlingError::Decode(_) => "DECODE_ERROR".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALIDATION: &str = r#"{"error":{"type":"VALIDATION_ERROR","message":"Não foi possível salvar o contato",
        "description":"O CPF informado é inválido","fields":[{"code":49,"msg":"O CPF informado é inválido",
        "element":"numeroDocumento","namespace":"","collection":[]},
        {"code":"45","msg":"Há itens inválidos","element":"itens","namespace":"","collection":[
        {"index":1,"code":41,"msg":"A quantidade do item deve ser maior que zero","element":"quantidade","namespace":"itens"}]}]}}"#;

    #[test]
    fn validation_body_is_parsed_with_fields_and_collections() {
        let e = BlingError::from_response(400, VALIDATION.as_bytes(), None);
        let BlingError::Validation { body } = &e else {
            panic!("not a validation error: {e:?}");
        };
        assert_eq!(body.fields[0].code, Some(49));
        assert_eq!(body.fields[1].code, Some(45));
        assert_eq!(body.fields[1].collection[0].index, Some(1));
        let FailureCause::DivergentCustomerRecord { bling_fields, .. } = e.to_failure_cause()
        else {
            panic!("wrong cause");
        };
        let elements: Vec<_> = bling_fields.iter().map(|f| f.element.as_str()).collect();
        assert_eq!(
            elements,
            ["numeroDocumento", "itens", "itens[1].quantidade"]
        );
        assert!(!e.is_transient());
    }

    #[test]
    fn statuses_are_classified() {
        let not_found =
            br#"{"error":{"type":"RESOURCE_NOT_FOUND","message":"m","description":"d"}}"#;
        assert!(matches!(
            BlingError::from_response(404, not_found, None),
            BlingError::Rejected { status: 404, .. }
        ));
        assert!(matches!(
            BlingError::from_response(400, not_found, None),
            BlingError::Rejected { status: 400, .. }
        ));
        assert!(matches!(
            BlingError::from_response(401, b"{}", None),
            BlingError::Unauthorized { .. }
        ));
        let limited = BlingError::from_response(429, b"", Some(Duration::from_secs(1)));
        assert_eq!(
            limited,
            BlingError::RateLimited {
                retry_after: Some(Duration::from_secs(1))
            }
        );
        let html = BlingError::from_response(502, b"<html>Bad gateway</html>", None);
        assert!(matches!(
            html,
            BlingError::Unavailable {
                status: Some(502),
                ..
            }
        ));
        assert!(html.to_string().contains("HTTP_502"));
    }

    #[test]
    fn transience_agrees_with_the_domain() {
        let all = [
            BlingError::Unauthorized {
                error_type: "invalid_token".into(),
                message: String::new(),
            },
            BlingError::Validation {
                body: BlingErrorBody::default(),
            },
            BlingError::Rejected {
                status: 403,
                body: BlingErrorBody::default(),
            },
            BlingError::RateLimited { retry_after: None },
            BlingError::Unavailable {
                status: None,
                message: String::new(),
            },
            BlingError::Revoked { evidence: None },
            BlingError::NotConnected,
            BlingError::Auth(String::new()),
            BlingError::Decode(String::new()),
        ];
        for e in &all {
            assert_eq!(
                e.is_transient(),
                e.to_failure_cause().is_transient(),
                "{e:?}"
            );
        }
    }
}
