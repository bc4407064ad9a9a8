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
    /// On a 429: the limit reached (3, 120000) …
    #[serde(
        deserialize_with = "lenient_i64",
        skip_serializing_if = "Option::is_none"
    )]
    pub limit: Option<i64>,
    /// … and its period (`"second"`, `"day"`). Bling sends no `Retry-After` and no rate
    /// headers, so this is how a client knows how long to wait ([DOC] /limites, [VCR]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub period: Option<String>,
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

/// What a call was for; see [`BlingError::to_failure_cause`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// Looking up, creating or updating a contato.
    Contato,
    /// Looking up, creating or updating a sales order.
    Pedido,
    /// Discovering situações or moving an order to one.
    Situacao,
    /// Discovering the account's payment methods.
    FormasPagamento,
    /// Generating or following an NF-e.
    Nfe,
}

impl Operation {
    fn what(self) -> &'static str {
        match self {
            Operation::Contato => "the contato",
            Operation::Pedido => "the sales order",
            Operation::Situacao => "the situação",
            Operation::FormasPagamento => "the payment methods",
            Operation::Nfe => "the NF-e",
        }
    }
}

/// Whose problem a `VALIDATION_ERROR` is.
fn validation_cause(body: &BlingErrorBody, op: Operation) -> FailureCause {
    let fields = body.field_errors();
    let names = |wanted: &[&str]| {
        fields.iter().any(|f| {
            let leaf = f.element.rsplit(['.', ']']).next().unwrap_or(&f.element);
            wanted.iter().any(|w| leaf.eq_ignore_ascii_case(w))
        })
    };
    let customer_fields = [
        "contato",
        "numeroDocumento",
        "endereco",
        "cep",
        "uf",
        "municipio",
        "bairro",
        "nome",
        "ie",
        "indicadorIe",
        "email",
    ];
    match op {
        Operation::Contato => FailureCause::DivergentCustomerRecord {
            problems: Vec::new(),
            message: with_fields(&body.summary(), &fields),
            bling_fields: fields,
        },
        Operation::Pedido
            if names(&["formaPagamento"]) || fields.iter().any(|f| f.code == Some(12)) =>
        {
            FailureCause::AccountSetup {
                setting: "payment_method".into(),
                message: format!(
                    "Bling refused the payment method of the order: {}",
                    body.summary()
                ),
                configure: "map the invoice's payment method to one of the account's formas de \
                            pagamento (BLING_PAYMENT_METHODS; ids differ per account) or create \
                            it in Bling under Cadastros > Formas de pagamento, then reprocess"
                    .into(),
                bling_fields: fields,
            }
        }
        Operation::Pedido | Operation::FormasPagamento => FailureCause::OrderRefused {
            status: 400,
            error_type: body.error_type.clone(),
            message: body.summary(),
            bling_fields: fields,
        },
        Operation::Situacao => FailureCause::AccountSetup {
            setting: "situacao".into(),
            message: format!("Bling refused the situação: {}", body.summary()),
            configure: "check that the account's sales module has the configured situações \
                        (BLING_SITUACAO_BILLED, BLING_SITUACAO_CANCELLED) and that the \
                        transition is allowed, then reprocess"
                .into(),
            bling_fields: fields,
        },
        Operation::Nfe if names(&customer_fields) => FailureCause::DivergentCustomerRecord {
            problems: Vec::new(),
            message: with_fields(
                &format!(
                    "Bling could not issue the NF-e for this customer: {}",
                    body.summary()
                ),
                &fields,
            ),
            bling_fields: fields,
        },
        Operation::Nfe => FailureCause::AccountSetup {
            setting: "nfe_fiscal_setup".into(),
            message: format!("Bling could not generate the NF-e: {}", body.summary()),
            configure: "complete the account's fiscal set-up in Bling (natureza de operação, \
                        the products' NCM and origin, the payment method's tipo fiscal), then \
                        reprocess"
                .into(),
            bling_fields: fields,
        },
    }
}

/// `summary (element: msg; …)`: Bling's general message says little ("Ocorreu um erro ao
/// validar os dados recebidos"); the fields say what to fix.
fn with_fields(summary: &str, fields: &[BlingFieldError]) -> String {
    let named: Vec<String> = fields
        .iter()
        .filter(|f| !f.msg.is_empty())
        .map(|f| match f.element.as_str() {
            "" => f.msg.clone(),
            element => format!("{element}: {}", f.msg),
        })
        .collect();
    if named.is_empty() {
        summary.to_string()
    } else {
        format!("{summary} ({})", named.join("; "))
    }
}

#[derive(Deserialize)]
struct Envelope {
    error: BlingErrorBody,
}

/// How long to wait after a per-second 429: the window is one second; a little more lets it
/// pass whole.
pub const PER_SECOND_WAIT: Duration = Duration::from_millis(1100);

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

    /// Every refused field, flattened: items of a collection are named after the array that
    /// holds them, `element[index].element` (e.g. `parcelas[1].formaPagamento`). Bling's
    /// `namespace` is the module (`VENDAS`), not a path ([OAS] `ErrorFieldCollection`, [FM]), so
    /// it names the array only when the parent field has no element.
    pub fn field_errors(&self) -> Vec<BlingFieldError> {
        let mut out = Vec::new();
        for f in &self.fields {
            out.push(BlingFieldError {
                code: f.code,
                element: f.element.clone(),
                msg: f.msg.clone(),
            });
            for item in &f.collection {
                let ns = if f.element.is_empty() {
                    item.namespace.as_str()
                } else {
                    f.element.as_str()
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
    Validation { body: Box<BlingErrorBody> },
    /// Any other 4xx (404 `RESOURCE_NOT_FOUND`, 403 `FORBIDDEN`, …). A few client-side
    /// rejections use this too, with an error type of ours (e.g. `SALES_MODULE_NOT_FOUND`).
    #[error("Bling rejected the request (HTTP {status} {}): {}", body.error_type, body.summary())]
    Rejected {
        status: u16,
        body: Box<BlingErrorBody>,
    },
    /// 429 from Bling, or the client's own daily budget for the account is spent (then no
    /// call was made). `retry_after` is how long to wait: a `Retry-After` header if one ever
    /// comes, else what the body's `period` implies (about a second for `"second"`, the next
    /// midnight in Brasília for `"day"`). `daily` says the account's quota for the day is spent.
    #[error("Bling request limit reached{}{}", if *daily { " for the day (the account's daily quota)" } else { "" }, RetryAfter(*retry_after))]
    RateLimited {
        retry_after: Option<Duration>,
        daily: bool,
    },
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
    /// Not sent: the caller's [`gate`](super::gate) closed (a sync job whose lease on the tenant
    /// was lost: whoever holds the work now will do it), or the request's own
    /// [`StillWanted`](super::gate::StillWanted) check refused it (the NF-e's invoice was
    /// cancelled while the send waited). Nothing reached Bling.
    #[error("call not sent: {0}")]
    Halted(String),
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
            429 => {
                let body = BlingErrorBody::parse(status, body);
                let daily = body
                    .period
                    .as_deref()
                    .is_some_and(|p| p.eq_ignore_ascii_case("day"))
                    || body.description.contains("por dia");
                // "second", or a 429 that names no period: the window is one second.
                let by_period = if daily {
                    crate::bling::limiter::bling_day(chrono::Utc::now()).1
                } else {
                    PER_SECOND_WAIT
                };
                BlingError::RateLimited {
                    retry_after: Some(retry_after.unwrap_or(by_period)),
                    daily,
                }
            }
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
                    BlingError::Validation {
                        body: Box::new(body),
                    }
                } else {
                    BlingError::Rejected {
                        status,
                        body: Box::new(body),
                    }
                }
            }
        }
    }

    /// The domain's classification, as the sync engine records it in `SyncFailed`. `op` is
    /// what the call was for: Bling's `VALIDATION_ERROR` means "fix the customer" only on a
    /// contato; on a sales order it is the order's own refusal (code 3, 22, an amount), or the
    /// account's set-up when it names the payment method; on `gerar-nfe` the account's fiscal
    /// set-up unless it names the recipient.
    pub fn to_failure_cause(&self, op: Operation) -> FailureCause {
        match self {
            BlingError::Validation { body } => validation_cause(body, op),
            BlingError::Rejected { status: 403, body }
                if body.error_type.eq_ignore_ascii_case("insufficient_scope") =>
            {
                FailureCause::AccountSetup {
                    setting: "app_scopes".into(),
                    message: format!("Bling refused {}: {}", op.what(), body.summary()),
                    configure: "give the app the scope for this resource in Bling's app settings \
                                (changing the scopes revokes every shop: each must reconnect)"
                        .into(),
                    bling_fields: Vec::new(),
                }
            }
            BlingError::Rejected { status, body } => FailureCause::BlingRejected {
                status: *status,
                error_type: body.error_type.clone(),
                message: body.message.clone(),
                description: body.description.clone(),
                bling_fields: body.field_errors(),
            },
            BlingError::Unavailable { .. } | BlingError::Halted(_) => {
                FailureCause::BlingUnavailable {
                    message: self.to_string(),
                }
            }
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

    /// Bling's duplicate-sale guard: `VALIDATION_ERROR` code 3 in namespace `VENDAS`,
    /// "Informações idênticas a última venda salva…" ([FM], [LC]). Bling answers it to a `POST`
    /// identical to the last sale saved and to a `PUT` that changes nothing: after a create that
    /// may have reached Bling it means "already there", on a `PUT` "already applied".
    pub fn is_duplicate_sale(&self) -> bool {
        let BlingError::Validation { body } = self else {
            return false;
        };
        body.fields.iter().any(|f| {
            f.code == Some(3)
                && (f.namespace.eq_ignore_ascii_case("VENDAS")
                    || f.msg.contains("idênticas a última venda"))
        })
    }

    /// Whether waiting and trying again may succeed (same answer as
    /// `self.to_failure_cause(op).is_transient()` for every `op`).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            BlingError::Unavailable { .. }
                | BlingError::RateLimited { .. }
                | BlingError::Unauthorized { .. }
                | BlingError::Auth(_)
                | BlingError::Halted(_)
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
            BlingError::Halted(_) => "HALTED".into(),
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
        let FailureCause::DivergentCustomerRecord { bling_fields, .. } =
            e.to_failure_cause(Operation::Contato)
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
                retry_after: Some(Duration::from_secs(1)),
                daily: false,
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
                body: Box::default(),
            },
            BlingError::Rejected {
                status: 403,
                body: Box::default(),
            },
            BlingError::RateLimited {
                retry_after: None,
                daily: false,
            },
            BlingError::Unavailable {
                status: None,
                message: String::new(),
            },
            BlingError::Revoked { evidence: None },
            BlingError::NotConnected,
            BlingError::Auth(String::new()),
            BlingError::Decode(String::new()),
            BlingError::Halted(String::new()),
        ];
        for e in &all {
            for op in [
                Operation::Contato,
                Operation::Pedido,
                Operation::Situacao,
                Operation::FormasPagamento,
                Operation::Nfe,
            ] {
                assert_eq!(
                    e.is_transient(),
                    e.to_failure_cause(op).is_transient(),
                    "{e:?} {op:?}"
                );
            }
        }
    }
}
