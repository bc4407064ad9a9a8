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
use std::ops::Range;

use chrono::{DateTime, SecondsFormat, Utc};
use sha2::{Digest, Sha256};

use super::canonical::{write_canonical, write_string};
use super::canonical_text::{member_str, Canonicalizer, NotJson};
pub use super::record::GENESIS;
use crate::store::events::seals::StoredEvent;
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
    write_time(&event.recorded_at, out);
    let _ = write!(out, "\",\"sequence\":{}", event.sequence);
    out.push_str(",\"tenant\":");
    match event.tenant() {
        Some(tenant) => write_canonical_str(tenant, out),
        None => out.push_str("null"),
    }
    out.push('}');
}

/// The canonical bytes of an event read as stored (its JSON columns as their stored text,
/// [`StoredEvent`]), without parsing them into values: the same bytes as
/// [`write_canonical_event`] over the event those columns decode to.
#[derive(Debug, Clone)]
pub struct Canonical {
    /// The canonical bytes.
    pub text: String,
    /// The metadata's `tenant` (a string), as [`RecordedEvent::tenant`] reads it.
    tenant: Option<String>,
    /// Where the position's digits are in `text`.
    position: Range<usize>,
}

impl Canonical {
    /// The tenant chain the event links into ([`tenant_chain`]).
    pub fn chain(&self) -> &str {
        self.tenant.as_deref().unwrap_or("")
    }

    /// The canonical bytes the same event would have at `position`.
    pub fn at_position(&self, position: i64) -> String {
        let mut out = String::with_capacity(self.text.len() + 4);
        out.push_str(&self.text[..self.position.start]);
        let _ = write!(out, "{position}");
        out.push_str(&self.text[self.position.end..]);
        out
    }
}

/// The canonical bytes of the stored `event`, written into `buffer` (cleared first; pass a
/// recycled one to spare an allocation). Fails when a JSON column is not JSON.
pub fn canonical_stored(
    event: &StoredEvent,
    json: &mut Canonicalizer,
    mut buffer: String,
) -> Result<Canonical, NotJson> {
    let out = &mut buffer;
    out.clear();
    // Keys in UTF-8 byte order, as in `write_canonical_event`.
    out.push_str("{\"aggregate_id\":");
    write_canonical_str(event.aggregate_id, out);
    out.push_str(",\"aggregate_type\":");
    write_canonical_str(event.aggregate_type, out);
    out.push_str(",\"event_type\":");
    write_canonical_str(event.event_type, out);
    out.push_str(",\"event_version\":");
    write_canonical_str(event.event_version, out);
    out.push_str(",\"metadata\":");
    let metadata = out.len();
    json.write(event.metadata, out)?;
    let tenant = member_str(&out[metadata..], "tenant");
    out.push_str(",\"payload\":");
    json.write(event.payload, out)?;
    out.push_str(",\"position\":");
    let digits = out.len();
    let _ = write!(out, "{}", event.position);
    let position = digits..out.len();
    out.push_str(",\"recorded_at\":\"");
    write_time(&event.recorded_at, out);
    let _ = write!(out, "\",\"sequence\":{}", event.sequence);
    out.push_str(",\"tenant\":");
    match &tenant {
        Some(tenant) => write_canonical_str(tenant, out),
        None => out.push_str("null"),
    }
    out.push('}');
    Ok(Canonical {
        text: buffer,
        tenant,
        position,
    })
}

/// RFC 3339, UTC, microseconds, `Z`.
fn write_time(at: &DateTime<Utc>, out: &mut String) {
    out.push_str(&at.to_rfc3339_opts(SecondsFormat::Micros, true));
}

fn write_canonical_str(s: &str, out: &mut String) {
    // Plain ids need no escaping; anything else goes through the one string writer.
    if s.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        out.push('"');
        out.push_str(s);
        out.push('"');
    } else {
        write_string(s, out);
    }
}

/// `hex(SHA-256(prev ‖ canonical))`.
pub fn link(prev: &str, canonical: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(prev.as_bytes());
    hasher.update(canonical.as_bytes());
    hex::encode(hasher.finalize())
}

/// [`link`] as its 64 ASCII hex bytes, on the stack (the verifier compares, never keeps).
pub fn link_hex(prev: &str, canonical: &str) -> [u8; 64] {
    let mut hasher = Sha256::new();
    hasher.update(prev.as_bytes());
    hasher.update(canonical.as_bytes());
    let mut hex = [0u8; 64];
    // 32 bytes always fit 64 hex characters.
    let _ = hex::encode_to_slice(hasher.finalize(), &mut hex);
    hex
}

/// Whether `stored` (a link read from the log) is `link(prev, canonical)`.
pub fn links_to(stored: &str, prev: &str, canonical: &str) -> bool {
    stored.as_bytes() == link_hex(prev, canonical)
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

    fn stored<'a>(e: &'a RecordedEvent, payload: &'a str, metadata: &'a str) -> StoredEvent<'a> {
        StoredEvent {
            position: e.position,
            aggregate_type: &e.aggregate_type,
            aggregate_id: &e.aggregate_id,
            sequence: e.sequence,
            event_type: &e.event_type,
            event_version: &e.event_version,
            payload,
            metadata,
            recorded_at: e.recorded_at,
            hash: None,
            tenant_hash: None,
        }
    }

    #[test]
    fn canonical_bytes_from_stored_text_are_those_of_the_decoded_event() {
        let mut json = Canonicalizer::new();
        let metadata = [
            json!({"tenant": "shop-a", "actor": "ingest:x"}),
            json!({}),
            json!({"tenant": 7}),
            json!({"tenant": "sh\"op\n", "z": [1, {"tenant": "inner"}]}),
            json!({"actor": "x", "tenant": "São"}),
            json!([1, 2]),
        ];
        let payloads = [
            json!({"b": [1, 2.5, null, -0.0, 1e300], "a": "São \n Paulo", "A": {"z": 1, "é": 2}}),
            json!({"CustomerRegistered": {"profile": {"name": "José", "tax_id": "52998224725"}}}),
            json!("text"),
            json!(18446744073709551615u64),
        ];
        for m in &metadata {
            for p in &payloads {
                let mut e = event();
                e.metadata = m.clone();
                e.payload = p.clone();
                let expected = canonical_event(&e);
                // Compact, pretty, and keys out of order with escapes: as any writer stores it.
                let reordered_payload = r#" { "z" : "\u00e9\/" , "a" : [ 1.0 , 1e3 ] } "#;
                for (payload, metadata) in [
                    (p.to_string(), m.to_string()),
                    (
                        serde_json::to_string_pretty(p).expect("JSON"),
                        serde_json::to_string_pretty(m).expect("JSON"),
                    ),
                ] {
                    let c = canonical_stored(
                        &stored(&e, &payload, &metadata),
                        &mut json,
                        String::new(),
                    )
                    .expect("JSON");
                    assert_eq!(c.text, expected);
                    assert_eq!(c.chain(), tenant_chain(&e));
                    let mut moved = e.clone();
                    moved.position = 7;
                    assert_eq!(c.at_position(7), canonical_event(&moved));
                }
                e.payload = serde_json::from_str(reordered_payload).expect("JSON");
                let metadata = m.to_string();
                let c = canonical_stored(
                    &stored(&e, reordered_payload, &metadata),
                    &mut json,
                    String::new(),
                )
                .expect("JSON");
                assert_eq!(c.text, canonical_event(&e));
            }
        }
        let e = event();
        let bad = stored(&e, "{", "{}");
        assert!(canonical_stored(&bad, &mut json, String::new()).is_err());
    }

    #[test]
    fn links_to_compares_with_the_hex_link() {
        let text = canonical_event(&event());
        let h = link(GENESIS, &text);
        assert!(links_to(&h, GENESIS, &text));
        assert!(!links_to(&h, &h, &text));
        assert!(!links_to(&h[..63], GENESIS, &text));
    }
}
