//! Bling's webhooks as a library ([DOC] developer.bling.com.br/webhooks): the signature check
//! and the v1 envelope. No I/O.
//!
//! The signature is `X-Bling-Signature-256: sha256=<hex>`, the HMAC-SHA256 of the **raw body**
//! keyed with the app's client secret. It is checked on the bytes as received (a body parsed
//! and written again has other bytes: PHP escapes `/` and non-ASCII characters), and compared
//! in constant time (`hmac`'s `verify_slice`, built on `subtle`), so a forger learns nothing
//! from how long a refusal takes.

use hmac::{Hmac, Mac};
use serde::Deserialize;
use serde_json::Value;
use sha2::Sha256;

/// The header Bling signs with.
pub const SIGNATURE_HEADER: &str = "x-bling-signature-256";

/// Why a delivery's signature was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("no X-Bling-Signature-256 header")]
    Missing,
    #[error("X-Bling-Signature-256 is not sha256=<64 hex digits>")]
    Malformed,
    #[error("X-Bling-Signature-256 does not match the body")]
    Mismatch,
}

impl SignatureError {
    pub fn code(self) -> &'static str {
        match self {
            SignatureError::Missing => "signature_missing",
            SignatureError::Malformed => "signature_malformed",
            SignatureError::Mismatch => "signature_mismatch",
        }
    }
}

/// Checks `header` (the header's value, if any) against `body` under `secret`.
pub fn verify(secret: &[u8], body: &[u8], header: Option<&[u8]>) -> Result<(), SignatureError> {
    let header = header.ok_or(SignatureError::Missing)?;
    let hex_part = header
        .strip_prefix(b"sha256=")
        .ok_or(SignatureError::Malformed)?;
    let expected = hex::decode(hex_part.trim_ascii()).map_err(|_| SignatureError::Malformed)?;
    if expected.len() != 32 {
        return Err(SignatureError::Malformed);
    }
    let mut mac =
        <Hmac<Sha256> as Mac>::new_from_slice(secret).map_err(|_| SignatureError::Mismatch)?;
    mac.update(body);
    mac.verify_slice(&expected)
        .map_err(|_| SignatureError::Mismatch)
}

/// `sha256=<hex>` for `body` under `secret`: what Bling sends (tests and benchmarks sign with
/// it).
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// The v1 envelope: `{eventId, date, version, event, companyId, data}`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Envelope {
    pub event_id: String,
    /// ISO 8601 (`2025-01-10T12:18:46Z`); older examples write `2025-01-10 12:18:46`. Kept as
    /// text: nothing depends on it.
    #[serde(default)]
    pub date: String,
    #[serde(default)]
    pub version: String,
    /// `resource.action`: `order.updated`, `invoice.created`, …
    pub event: String,
    pub company_id: String,
    #[serde(default)]
    pub data: Value,
}

impl Envelope {
    /// Longest `eventId` and `companyId` kept (Bling's are 36 and 32 characters).
    pub const MAX_ID: usize = 100;

    /// Parses and checks an envelope: ids present, short and printable, `event` of the form
    /// `resource.action`.
    pub fn parse(body: &[u8]) -> Result<Envelope, String> {
        let e: Envelope = serde_json::from_slice(body).map_err(|e| e.to_string())?;
        for (field, value) in [
            ("eventId", &e.event_id),
            ("companyId", &e.company_id),
            ("event", &e.event),
        ] {
            if value.is_empty()
                || value.len() > Envelope::MAX_ID
                || !value.bytes().all(|b| (0x21..=0x7e).contains(&b))
            {
                return Err(format!(
                    "{field} must be 1 to {} visible ASCII characters",
                    Envelope::MAX_ID
                ));
            }
        }
        if e.event.split_once('.').is_none() {
            return Err("event must be resource.action".into());
        }
        Ok(e)
    }

    /// `order`, `invoice`, …
    pub fn resource(&self) -> &str {
        self.event.split_once('.').map_or("", |(r, _)| r)
    }

    /// `created`, `updated` or `deleted`.
    pub fn action(&self) -> &str {
        self.event.split_once('.').map_or("", |(_, a)| a)
    }

    /// `data.id`, the resource's Bling id.
    pub fn resource_id(&self) -> Option<i64> {
        self.data.get("id").and_then(Value::as_i64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verifies_on_raw_bytes() {
        let body = br#"{"eventId":"e1","event":"order.updated","companyId":"c","data":{"nome":"Jo\u00e3o \/ x"}}"#;
        let sig = sign(b"secret", body);
        assert_eq!(verify(b"secret", body, Some(sig.as_bytes())), Ok(()));
        assert_eq!(
            verify(b"other", body, Some(sig.as_bytes())),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(verify(b"secret", body, None), Err(SignatureError::Missing));
        assert_eq!(
            verify(b"secret", body, Some(b"sha1=abc")),
            Err(SignatureError::Malformed)
        );
        // The same JSON written again (serde does not escape `/` or `ã`) no longer matches.
        let again = serde_json::to_vec(&serde_json::from_slice::<Value>(body).unwrap()).unwrap();
        assert_ne!(again, body.to_vec());
        assert_eq!(
            verify(b"secret", &again, Some(sig.as_bytes())),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn parses_the_documented_envelope() {
        let e = Envelope::parse(br#"{"eventId":"01945027-150e-72b4-e7cf-4943a042cd9c","date":"2025-01-10T12:18:46Z","version":"v1","event":"order.updated","companyId":"d4475854366a36c86a37e792f9634a51","data":{"id":12345678,"situacao":{"id":12345678,"valor":1}}}"#).unwrap();
        assert_eq!(e.resource(), "order");
        assert_eq!(e.action(), "updated");
        assert_eq!(e.resource_id(), Some(12345678));
        assert!(Envelope::parse(br#"{"eventId":"","event":"x.y","companyId":"c"}"#).is_err());
        assert!(Envelope::parse(br#"{"eventId":"e","event":"xy","companyId":"c"}"#).is_err());
    }
}
