//! Customer sync state: one row per tenant and customer, its Bling contato.
//!
//! `profile_version` counts registrations and updates; `synced_version` is the version last
//! written to Bling (`ContactLinked`/`ContactUpdated`). State: `synced` when a contato is
//! linked and holds the current version; `failed` when the last outcome for the current
//! version is `ContactSyncFailed`; `pending` otherwise (a new profile resets a failure: the
//! worker will try the new one); `erased` once the customer was erased (LGPD).
//!
//! Erasure: `CustomerErased` puts [`ERASED`] in the name and document and `erased` in the
//! person type and state. A profile that reads back erased (its data key destroyed) gives the
//! same marks, so a rebuild after an erasure gives the rows the live run left.

use aggregates::customer::{CustomerEvent, RecordedProfile, ERASED};
use serde::{Deserialize, Serialize};

use crate::{cause_message, LogEvent};

pub const NAME: &str = "customers";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomerSync {
    pub tenant: String,
    pub customer_id: String,
    pub name: String,
    /// Digits only, as validated.
    pub tax_id: String,
    pub person_type: String,
    pub profile_version: i64,
    pub synced_version: Option<i64>,
    pub bling_contact_id: Option<i64>,
    pub state: String,
    pub failed_version: Option<i64>,
    pub last_cause_kind: Option<String>,
    pub last_cause_message: Option<String>,
    pub last_failure_at_ms: Option<i64>,
    pub registered_at_ms: i64,
    pub updated_at_ms: i64,
    pub last_position: i64,
}

/// What the view shows of an erased customer's person type.
pub const ERASED_STATE: &str = "erased";

fn person_type(profile: &RecordedProfile) -> String {
    let Some(profile) = profile.known() else {
        return ERASED_STATE.to_string();
    };
    serde_json::to_value(profile.person_type())
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

fn tax_id(profile: &RecordedProfile) -> String {
    profile
        .known()
        .map_or(ERASED, |p| p.tax_id.as_str())
        .to_string()
}

pub fn apply(
    row: Option<CustomerSync>,
    log: &LogEvent,
    customer_id: &str,
    event: &CustomerEvent,
) -> Option<CustomerSync> {
    let at = log.recorded_at_ms();
    let mut row = match (row, event) {
        (None, CustomerEvent::CustomerRegistered { profile, .. }) => CustomerSync {
            tenant: log.tenant.clone(),
            customer_id: customer_id.to_string(),
            name: profile.name().to_string(),
            tax_id: tax_id(profile),
            person_type: person_type(profile),
            profile_version: 0,
            synced_version: None,
            bling_contact_id: None,
            state: String::new(),
            failed_version: None,
            last_cause_kind: None,
            last_cause_message: None,
            last_failure_at_ms: None,
            registered_at_ms: at,
            updated_at_ms: at,
            last_position: log.position,
        },
        (None, _) => return None,
        (Some(row), _) => row,
    };
    match event {
        CustomerEvent::CustomerRegistered { profile, .. }
        | CustomerEvent::CustomerUpdated { profile, .. } => {
            row.name = profile.name().to_string();
            row.tax_id = tax_id(profile);
            row.person_type = person_type(profile);
            row.profile_version += 1;
        }
        CustomerEvent::CustomerErased { .. } => {
            row.name = ERASED.to_string();
            row.tax_id = ERASED.to_string();
            row.person_type = ERASED_STATE.to_string();
        }
        CustomerEvent::ContactLinked {
            bling_contact_id,
            profile_version,
            ..
        }
        | CustomerEvent::ContactUpdated {
            bling_contact_id,
            profile_version,
            ..
        } => {
            row.bling_contact_id = Some(*bling_contact_id);
            row.synced_version = Some(*profile_version as i64);
            row.failed_version = None;
        }
        CustomerEvent::ContactSyncFailed {
            cause,
            profile_version,
            ..
        } => {
            row.failed_version = Some(*profile_version as i64);
            row.last_cause_kind = Some(cause.code().to_string());
            row.last_cause_message = Some(cause_message(cause));
            row.last_failure_at_ms = Some(at);
        }
    }
    let erased = row.person_type == ERASED_STATE;
    row.state = if erased {
        ERASED_STATE
    } else if row.bling_contact_id.is_some() && row.synced_version == Some(row.profile_version) {
        "synced"
    } else if row.failed_version == Some(row.profile_version) {
        "failed"
    } else {
        "pending"
    }
    .to_string();
    row.updated_at_ms = at;
    row.last_position = log.position;
    Some(row)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::*;
    use crate::{decode, Domain};
    use serde_json::json;

    #[test]
    fn failed_then_fixed_then_synced() {
        let mut s = Script::new("shop-a");
        let mut fixed = customer_registered("shop-a", "c1", "Joana Silva");
        let profile = fixed["CustomerRegistered"]["profile"].take();
        fixed = json!({"CustomerUpdated": {"changed_fields": ["name"], "profile": profile}});
        let events = [
            s.customer("c1", customer_registered("shop-a", "c1", "Joana")),
            s.customer("c1", json!({"ContactSyncFailed": {"cause": {"kind": "divergent_customer_record",
                "message": "CEP", "problems": [], "bling_fields": []}, "profile_version": 1, "calls": []}})),
            s.customer("c1", fixed),
            s.customer("c1", json!({"ContactLinked": {"bling_contact_id": 77, "created": true, "profile_version": 2, "calls": []}})),
        ];
        let mut row = None;
        let mut states = Vec::new();
        for e in &events {
            let Ok(Domain::Customer { customer_id, event }) = decode(e) else {
                panic!()
            };
            row = apply(row, e, &customer_id, &event);
            states.push(row.as_ref().unwrap().state.clone());
        }
        assert_eq!(states, ["pending", "failed", "pending", "synced"]);
        let row = row.unwrap();
        assert_eq!(row.name, "Joana Silva");
        assert_eq!(row.tax_id, "52998224725");
        assert_eq!(row.person_type, "individual");
        assert_eq!(
            (
                row.profile_version,
                row.synced_version,
                row.bling_contact_id
            ),
            (2, Some(2), Some(77))
        );
        assert_eq!(
            row.last_cause_kind.as_deref(),
            Some("divergent_customer_record")
        );
    }
}
