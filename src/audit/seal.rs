//! The seal: the one definition of an event's canonical bytes and of a chain link, shared by
//! the sealer (which writes them when an event gets its global position), `verify --database`
//! (which recomputes them) and the export (whose records carry them).
//!
//! # Canonical bytes
//! The canonical JSON ([`super::canonical`]) of the object with exactly the ten keys of an
//! export record before chaining ([`super::record::record_of`]): `aggregate_id`,
//! `aggregate_type`, `event_type`, `event_version`, `metadata`, `payload`, `position`,
//! `recorded_at` (RFC 3339, UTC, microseconds, `Z`), `sequence`, `tenant` (the metadata's
//! `tenant`, or `null`). So an auditor holding an unredacted export record recomputes its seal
//! from the record alone.
//!
//! # Links
//! `link(prev, event) = hex(SHA-256(prev ‖ canonical bytes))`, `prev` as its 64 ASCII hex
//! characters, [`GENESIS`] (64 zeros) before the first event of a chain. Two chains cover every
//! event: the global one in position order (`hash`), and its tenant's, in position order over
//! that tenant's events only (`tenant_hash`). Both bytes include the position, so an event
//! moved to another position no longer matches its seal.

use std::fmt::Write as _;

use chrono::SecondsFormat;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::canonical::write_canonical;
pub use super::record::GENESIS;
use crate::store::log::RecordedEvent;

/// The chain a tenant's events are linked in (`""` for events that name no tenant).
pub fn tenant_chain(event: &RecordedEvent) -> &str {
    event.tenant().unwrap_or("")
}

/// The canonical bytes of `event`, appended to `out` (the same text as the canonical JSON of
/// [`super::record::record_of`], written without building the object).
pub fn write_canonical_event(event: &RecordedEvent, out: &mut String) {
    // Keys in UTF-8 byte order.
    out.push_str("{\"aggregate_id\":");
    write_canonical_str(&event.aggregate_id, out);
    out.push_str(",\"aggregate_type\":");
    write_canonical_str(&event.aggregate_type, out);
    out.push_str(",\"event_type\":");
    write_canonical_str(&event.event_type, out);
    out.push_str(",\"event_version\":");
    write_canonical_str(&event.event_version, out);
    out.push_str(",\"metadata\":");
    write_canonical(&event.metadata, out);
    out.push_str(",\"payload\":");
    write_canonical(&event.payload, out);
    let _ = write!(out, ",\"position\":{}", event.position);
    out.push_str(",\"recorded_at\":\"");
    out.push_str(
        &event
            .recorded_at
            .to_rfc3339_opts(SecondsFormat::Micros, true),
    );
    let _ = write!(out, "\",\"sequence\":{}", event.sequence);
    out.push_str(",\"tenant\":");
    match event.tenant() {
        Some(tenant) => write_canonical_str(tenant, out),
        None => out.push_str("null"),
    }
    out.push('}');
}

fn write_canonical_str(s: &str, out: &mut String) {
    // Plain ids need no escaping; anything else goes through the one string writer.
    if s.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        out.push('"');
        out.push_str(s);
        out.push('"');
    } else {
        write_canonical(&Value::String(s.to_string()), out);
    }
}

/// `hex(SHA-256(prev ‖ canonical))`.
pub fn link(prev: &str, canonical: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(prev.as_bytes());
    hasher.update(canonical.as_bytes());
    hex::encode(hasher.finalize())
}

/// Both links of an event whose canonical bytes are `canonical`.
pub fn links(prev: &str, tenant_prev: &str, canonical: &str) -> (String, String) {
    (link(prev, canonical), link(tenant_prev, canonical))
}

/// The canonical bytes of `event` as a new string.
pub fn canonical_event(event: &RecordedEvent) -> String {
    let mut out = String::with_capacity(512);
    write_canonical_event(event, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::canonical::to_canonical_string;
    use crate::audit::record::record_of;
    use chrono::{TimeZone, Utc};
    use serde_json::json;

    fn event() -> RecordedEvent {
        RecordedEvent {
            position: 42,
            aggregate_type: "Customer".into(),
            aggregate_id: "shop-a/c\"1".into(),
            sequence: 3,
            event_type: "CustomerRegistered".into(),
            event_version: "1".into(),
            payload: json!({"b": [1, 2.5, null], "a": "São \n Paulo"}),
            metadata: json!({"tenant": "shop-a", "actor": "ingest:x"}),
            recorded_at: Utc.timestamp_opt(1_764_000_000, 123_000_000).unwrap(),
        }
    }

    #[test]
    fn canonical_bytes_are_the_export_records_canonical_json() {
        let e = event();
        let record = serde_json::Value::Object(record_of(&e));
        assert_eq!(canonical_event(&e), to_canonical_string(&record));
        let mut no_tenant = event();
        no_tenant.metadata = json!({});
        let record = serde_json::Value::Object(record_of(&no_tenant));
        assert_eq!(canonical_event(&no_tenant), to_canonical_string(&record));
        assert_eq!(tenant_chain(&no_tenant), "");
    }

    #[test]
    fn a_link_covers_the_previous_link_and_the_position() {
        let e = event();
        let h = link(GENESIS, &canonical_event(&e));
        assert_eq!(h.len(), 64);
        assert_ne!(link(&h, &canonical_event(&e)), h);
        let mut moved = event();
        moved.position = 43;
        assert_ne!(link(GENESIS, &canonical_event(&moved)), h);
    }
}
