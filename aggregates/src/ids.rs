//! Identifiers. Each is a newtype so a tenant can never be passed where an invoice id is due.
//!
//! Ids come from the pet-shop system, so they are validated: 1–64 characters of
//! `[A-Za-z0-9._-]` (ASCII only: no control character, no space, no `/`, no `%`), and not `.`
//! or `..` alone. That keeps them safe in URLs (a `..` segment would be normalised away by
//! proxies), in file names of exports and in Bling's `numeroLoja` field.
//!
//! [`parse`](TenantId::parse) applies the whole rule to every id that arrives. Deserialization
//! (ids read back from stored events) applies the rule the log was written under, which did
//! not yet refuse `.` and `..`: a rule tightened later must never make a stored event unreadable.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Longest id accepted, in characters (all ASCII, so also in bytes).
pub const MAX_ID_LEN: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("must be 1 to 64 characters of letters, digits, '.', '_' or '-' (not '.' or '..' alone)")]
pub struct InvalidId;

/// The rule stored events were written under (see the module's documentation).
fn validate_stored(raw: &str) -> Result<(), InvalidId> {
    let ok = !raw.is_empty()
        && raw.len() <= MAX_ID_LEN
        && raw
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(InvalidId)
    }
}

/// The rule for every new id.
fn validate(raw: &str) -> Result<(), InvalidId> {
    validate_stored(raw)?;
    if raw == "." || raw == ".." {
        return Err(InvalidId);
    }
    Ok(())
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            pub fn parse(raw: &str) -> Result<Self, InvalidId> {
                validate(raw)?;
                Ok(Self(raw.to_string()))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = InvalidId;
            fn try_from(raw: String) -> Result<Self, InvalidId> {
                validate_stored(&raw)?;
                Ok(Self(raw))
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

id_type!(
    /// A shop: one pet-shop installation, connected to one Bling account.
    TenantId
);
id_type!(
    /// A customer as the pet-shop system names it.
    CustomerId
);
id_type!(
    /// An invoice as the pet-shop system names it; also the key stored on the Bling order.
    InvoiceId
);

/// The id cqrs-es stores an aggregate under: tenant and local id, so that two shops may use the
/// same customer or invoice id without ever sharing a stream.
pub fn stream_id(tenant: &TenantId, local: &str) -> String {
    format!("{}/{}", tenant.as_str(), local)
}

/// Splits a stream id made by [`stream_id`] back into tenant and local id.
pub fn split_stream_id(stream: &str) -> Option<(&str, &str)> {
    stream.split_once('/')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_accept_safe_characters_only() {
        assert!(TenantId::parse("pet-shop_01.sp").is_ok());
        assert!(TenantId::parse("").is_err());
        assert!(TenantId::parse("a/b").is_err());
        assert!(TenantId::parse("ação").is_err());
        assert!(TenantId::parse(&"x".repeat(65)).is_err());
        assert!(InvoiceId::parse(&"x".repeat(64)).is_ok());
        for bad in [
            ".", "..", "a\0b", "\0", "a\tb", "a\u{85}b", "a b", "a%2Fb", "a\\b", "ü",
        ] {
            assert_eq!(CustomerId::parse(bad), Err(InvalidId), "{bad:?}");
        }
        assert!(CustomerId::parse("...").is_ok());
        assert!(CustomerId::parse(".hidden").is_ok());
        assert!(CustomerId::parse("a..b").is_ok());
    }

    #[test]
    fn stored_ids_stay_readable() {
        // An event written before '.' and '..' were refused still deserializes.
        let stored: Result<TenantId, _> = serde_json::from_str("\"..\"");
        assert!(stored.is_ok());
        assert!(TenantId::parse("..").is_err());
    }

    #[test]
    fn ids_deserialize_through_validation() {
        let ok: Result<CustomerId, _> = serde_json::from_str("\"c-1\"");
        assert!(ok.is_ok());
        let bad: Result<CustomerId, _> = serde_json::from_str("\"c 1\"");
        assert!(bad.is_err());
    }

    #[test]
    fn stream_ids_round_trip() {
        let t = TenantId::parse("shop").unwrap();
        let s = stream_id(&t, "inv-9");
        assert_eq!(split_stream_id(&s), Some(("shop", "inv-9")));
    }
}
