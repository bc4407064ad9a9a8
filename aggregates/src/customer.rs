//! The customer: registered and updated by the pet-shop system, mirrored as a Bling *contato*.
//!
//! Commands: [`CustomerCommand::Save`] (register or update, as an HTTP `PUT`) and the sync
//! worker's records of what Bling did. Rules:
//! - the profile is validated before it becomes a command ([`CustomerInput::validate`]);
//! - saving an unchanged profile appends nothing; an update says which fields changed;
//! - a customer without an address is accepted, but cannot be sent to Bling for an NF-e
//!   ([`CustomerProfile::readiness_for_bling`]): its invoices fail as a divergent record until a
//!   corrected profile arrives.
//! - a customer can be erased (LGPD, [`CustomerCommand::Erase`]): its personal data is destroyed
//!   by the store (the profile's data key), the stream stays, and from then on the customer
//!   refuses every change and every sync record ([`CustomerError::Erased`]). An event written
//!   before the erasure reads back with [`RecordedProfile::Erased`] in place of the profile.

use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};

use crate::address::{Address, AddressInput};
use crate::ids::{CustomerId, TenantId};
use crate::problems::{text_problem, Problems, TextKind};
use crate::sync::{BlingCall, FailureCause};
use crate::tax_id::{PersonType, TaxId};

/// An e-mail address, checked for plausible syntax (one `@`, a dotted domain, no spaces).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Email(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a valid e-mail address")]
pub struct InvalidEmail;

impl Email {
    pub fn parse(raw: &str) -> Result<Email, InvalidEmail> {
        let raw = raw.trim();
        let (local, domain) = raw.split_once('@').ok_or(InvalidEmail)?;
        let labels_ok = domain.split('.').count() >= 2
            && domain
                .split('.')
                .all(|l| !l.is_empty() && !l.starts_with('-') && !l.ends_with('-'))
            && domain
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
        let local_ok = !local.is_empty()
            && local.len() <= 64
            && !local.starts_with('.')
            && !local.ends_with('.')
            && !local.contains("..")
            && local
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+/=?^_`{|}~.-".contains(&b));
        if raw.len() <= 254 && local_ok && labels_ok {
            Ok(Email(raw.to_string()))
        } else {
            Err(InvalidEmail)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Email {
    type Error = InvalidEmail;
    fn try_from(raw: String) -> Result<Self, InvalidEmail> {
        Email::parse(&raw)
    }
}

impl From<Email> for String {
    fn from(e: Email) -> String {
        e.0
    }
}

/// A validated customer record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomerProfile {
    pub name: String,
    pub tax_id: TaxId,
    pub email: Option<Email>,
    pub phone: Option<String>,
    pub mobile: Option<String>,
    pub address: Option<Address>,
}

impl CustomerProfile {
    pub fn person_type(&self) -> PersonType {
        self.tax_id.person_type()
    }

    /// The names of the fields that differ between two profiles, in a stable order.
    pub fn changed_fields(&self, newer: &CustomerProfile) -> Vec<String> {
        let mut changed = Vec::new();
        let mut diff = |name: &str, differs: bool| {
            if differs {
                changed.push(name.to_string());
            }
        };
        diff("name", self.name != newer.name);
        diff("tax_id", self.tax_id != newer.tax_id);
        diff("email", self.email != newer.email);
        diff("phone", self.phone != newer.phone);
        diff("mobile", self.mobile != newer.mobile);
        diff("address", self.address != newer.address);
        changed
    }

    /// What Bling needs for a sales order that becomes an NF-e and this record lacks.
    pub fn readiness_for_bling(&self) -> Problems {
        let mut problems = Problems::new();
        if self.address.is_none() {
            problems.add("address", "is required to issue an NF-e");
        }
        problems
    }
}

/// The mark a reader finds in place of a profile whose data key was destroyed (LGPD erasure):
/// `{"erased": true}`. It is never written to the log; the store puts it in place of the
/// ciphertext it can no longer open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "ErasedMarkText")]
pub struct ErasedMark {
    pub erased: bool,
}

/// The mark as it reads: exactly `{"erased": true}`, nothing else.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ErasedMarkText {
    erased: bool,
}

impl TryFrom<ErasedMarkText> for ErasedMark {
    type Error = &'static str;
    fn try_from(text: ErasedMarkText) -> Result<Self, &'static str> {
        if text.erased {
            Ok(ErasedMark { erased: true })
        } else {
            Err("an erased mark says `\"erased\": true`")
        }
    }
}

/// What readers put where an erased personal value was: a clear marker, never a fake value.
pub const ERASED: &str = "[erased]";

/// A profile as an event carries it: the profile, or the mark of its erasure. A known profile
/// serializes exactly as a [`CustomerProfile`], so events written before erasure existed read
/// back unchanged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum RecordedProfile {
    Erased(ErasedMark),
    Known(Box<CustomerProfile>),
}

impl RecordedProfile {
    pub fn known(&self) -> Option<&CustomerProfile> {
        match self {
            RecordedProfile::Known(profile) => Some(profile.as_ref()),
            RecordedProfile::Erased(_) => None,
        }
    }

    /// The name, or [`ERASED`].
    pub fn name(&self) -> &str {
        self.known().map_or(ERASED, |p| p.name.as_str())
    }

    pub fn erased() -> RecordedProfile {
        RecordedProfile::Erased(ErasedMark { erased: true })
    }
}

impl From<CustomerProfile> for RecordedProfile {
    fn from(profile: CustomerProfile) -> Self {
        RecordedProfile::Known(Box::new(profile))
    }
}

/// A customer record as the pet-shop system sends it, before validation.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomerInput {
    pub name: Option<String>,
    pub tax_id: Option<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub mobile: Option<String>,
    pub address: Option<AddressInput>,
}

fn phone(raw: &Option<String>, field: &str, problems: &mut Problems) -> Option<String> {
    let raw = raw.as_deref().map(str::trim).filter(|s| !s.is_empty())?;
    let digits: String = raw.chars().filter(|c| c.is_ascii_digit()).collect();
    let only_phone_chars = raw
        .chars()
        .all(|c| c.is_ascii_digit() || matches!(c, ' ' | '(' | ')' | '-' | '+' | '.'));
    if only_phone_chars && (10..=13).contains(&digits.len()) {
        Some(digits)
    } else {
        problems.add(
            field,
            "must be a phone number with area code (10 to 13 digits)",
        );
        None
    }
}

impl CustomerInput {
    /// Validates every field and names every problem.
    pub fn validate(&self) -> Result<CustomerProfile, Problems> {
        let mut problems = Problems::new();
        let name = match self.name.as_deref().map(str::trim) {
            None | Some("") => {
                problems.add("name", "is required");
                None
            }
            Some(n) if n.chars().count() > 120 => {
                problems.add("name", "longer than 120 characters");
                None
            }
            Some(n) => match text_problem(n, TextKind::SingleLine) {
                Some(problem) => {
                    problems.add("name", problem);
                    None
                }
                None => Some(n.to_string()),
            },
        };
        let tax_id = match &self.tax_id {
            None => {
                problems.add("tax_id", "is required (CPF or CNPJ)");
                None
            }
            Some(raw) => problems.check("tax_id", TaxId::parse(raw)),
        };
        let email = match self.email.as_deref().map(str::trim) {
            None | Some("") => Some(None),
            Some(raw) => problems.check("email", Email::parse(raw)).map(Some),
        };
        let phone_number = phone(&self.phone, "phone", &mut problems);
        let mobile = phone(&self.mobile, "mobile", &mut problems);
        let address = match &self.address {
            None => Some(None),
            Some(a) => a.validate("address", &mut problems).map(Some),
        };
        problems.clone().into_result()?;
        match (name, tax_id, email, address) {
            (Some(name), Some(tax_id), Some(email), Some(address)) => Ok(CustomerProfile {
                name,
                tax_id,
                email,
                phone: phone_number,
                mobile,
                address,
            }),
            // Unreachable in practice: every `None` above recorded a problem.
            _ => Err(problems),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum CustomerCommand {
    /// Register the customer, or update it when it exists (HTTP `PUT` semantics).
    Save {
        tenant: TenantId,
        customer_id: CustomerId,
        profile: CustomerProfile,
    },
    /// The worker found or created the Bling contato for the current profile.
    RecordContactLinked {
        bling_contact_id: i64,
        created: bool,
        profile_version: u64,
        calls: Vec<BlingCall>,
    },
    /// The worker sent the current profile to an existing Bling contato.
    RecordContactUpdated {
        bling_contact_id: i64,
        profile_version: u64,
        calls: Vec<BlingCall>,
    },
    /// The worker could not sync the contato.
    RecordSyncFailed {
        cause: FailureCause,
        profile_version: u64,
        calls: Vec<BlingCall>,
    },
    /// LGPD erasure: the customer's personal data is to be destroyed (the store destroys the
    /// data key once this is recorded). `reason` is the operator's reference (a ticket), not
    /// personal data.
    Erase { reason: String },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum CustomerEvent {
    CustomerRegistered {
        tenant: TenantId,
        customer_id: CustomerId,
        profile: RecordedProfile,
    },
    CustomerUpdated {
        changed_fields: Vec<String>,
        profile: RecordedProfile,
    },
    ContactLinked {
        bling_contact_id: i64,
        /// `false` when an existing contato with the same document was found and reused.
        created: bool,
        profile_version: u64,
        #[serde(default)]
        calls: Vec<BlingCall>,
    },
    ContactUpdated {
        bling_contact_id: i64,
        profile_version: u64,
        #[serde(default)]
        calls: Vec<BlingCall>,
    },
    ContactSyncFailed {
        cause: FailureCause,
        profile_version: u64,
        #[serde(default)]
        calls: Vec<BlingCall>,
    },
    /// The customer's personal data was erased (LGPD): every earlier profile now reads as
    /// [`RecordedProfile::Erased`]. Who asked is the event's actor; `reason` says why.
    CustomerErased { reason: String },
}

impl DomainEvent for CustomerEvent {
    fn event_type(&self) -> String {
        match self {
            CustomerEvent::CustomerRegistered { .. } => "CustomerRegistered",
            CustomerEvent::CustomerUpdated { .. } => "CustomerUpdated",
            CustomerEvent::ContactLinked { .. } => "ContactLinked",
            CustomerEvent::ContactUpdated { .. } => "ContactUpdated",
            CustomerEvent::ContactSyncFailed { .. } => "ContactSyncFailed",
            CustomerEvent::CustomerErased { .. } => "CustomerErased",
        }
        .to_string()
    }

    fn event_version(&self) -> String {
        "1".to_string()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CustomerError {
    #[error("customer belongs to tenant {0}")]
    WrongTenant(String),
    #[error("the customer is not registered")]
    NotRegistered,
    #[error("the customer's personal data was erased (LGPD); it accepts no further changes")]
    Erased,
}

/// The customer's state, rebuilt from its events.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Customer {
    pub tenant: Option<TenantId>,
    pub customer_id: Option<CustomerId>,
    pub profile: Option<CustomerProfile>,
    /// Counts registrations and updates: the sync worker says which version it sent.
    pub profile_version: u64,
    pub bling_contact_id: Option<i64>,
    /// The profile version last written to Bling.
    pub synced_version: Option<u64>,
    /// Erased (LGPD): no profile any more, and no further changes.
    #[serde(default)]
    pub erased: bool,
}

impl Customer {
    /// Registered and not erased: a profile to show and to send to Bling.
    pub fn is_registered(&self) -> bool {
        self.profile.is_some()
    }

    /// Whether the stream exists at all (registered once, erased or not).
    pub fn exists(&self) -> bool {
        self.customer_id.is_some()
    }

    /// Whether Bling holds the current profile.
    pub fn is_synced(&self) -> bool {
        self.synced_version == Some(self.profile_version) && self.bling_contact_id.is_some()
    }
}

impl Aggregate for Customer {
    const TYPE: &'static str = "Customer";
    type Command = CustomerCommand;
    type Event = CustomerEvent;
    type Error = CustomerError;
    type Services = ();

    async fn handle(
        &mut self,
        command: CustomerCommand,
        _services: &(),
        sink: &EventSink<Self>,
    ) -> Result<(), CustomerError> {
        match command {
            CustomerCommand::Save {
                tenant,
                customer_id,
                profile,
            } => match (&self.tenant, &self.profile) {
                (Some(owner), _) if *owner != tenant => {
                    return Err(CustomerError::WrongTenant(owner.to_string()))
                }
                _ if self.erased => return Err(CustomerError::Erased),
                (_, None) => {
                    let event = CustomerEvent::CustomerRegistered {
                        tenant,
                        customer_id,
                        profile: profile.into(),
                    };
                    sink.write(event, self).await;
                }
                (_, Some(current)) => {
                    let changed_fields = current.changed_fields(&profile);
                    if !changed_fields.is_empty() {
                        let event = CustomerEvent::CustomerUpdated {
                            changed_fields,
                            profile: profile.into(),
                        };
                        sink.write(event, self).await;
                    }
                }
            },
            CustomerCommand::RecordContactLinked {
                bling_contact_id,
                created,
                profile_version,
                calls,
            } => {
                self.require_registered()?;
                let event = CustomerEvent::ContactLinked {
                    bling_contact_id,
                    created,
                    profile_version,
                    calls,
                };
                sink.write(event, self).await;
            }
            CustomerCommand::RecordContactUpdated {
                bling_contact_id,
                profile_version,
                calls,
            } => {
                self.require_registered()?;
                let event = CustomerEvent::ContactUpdated {
                    bling_contact_id,
                    profile_version,
                    calls,
                };
                sink.write(event, self).await;
            }
            CustomerCommand::RecordSyncFailed {
                cause,
                profile_version,
                calls,
            } => {
                self.require_registered()?;
                let event = CustomerEvent::ContactSyncFailed {
                    cause,
                    profile_version,
                    calls,
                };
                sink.write(event, self).await;
            }
            CustomerCommand::Erase { reason } => {
                if !self.exists() {
                    return Err(CustomerError::NotRegistered);
                }
                // Erasing twice appends nothing: the first erasure is the record.
                if !self.erased {
                    sink.write(CustomerEvent::CustomerErased { reason }, self)
                        .await;
                }
            }
        }
        Ok(())
    }

    fn apply(&mut self, event: CustomerEvent) {
        match event {
            CustomerEvent::CustomerRegistered {
                tenant,
                customer_id,
                profile,
            } => {
                self.tenant = Some(tenant);
                self.customer_id = Some(customer_id);
                self.take_profile(profile);
                self.profile_version = 1;
            }
            CustomerEvent::CustomerUpdated { profile, .. } => {
                self.take_profile(profile);
                self.profile_version += 1;
            }
            CustomerEvent::CustomerErased { .. } => {
                self.profile = None;
                self.erased = true;
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
                self.bling_contact_id = Some(bling_contact_id);
                self.synced_version = Some(profile_version);
            }
            CustomerEvent::ContactSyncFailed { .. } => {}
        }
    }
}

impl Customer {
    fn require_registered(&self) -> Result<(), CustomerError> {
        if self.erased {
            Err(CustomerError::Erased)
        } else if self.is_registered() {
            Ok(())
        } else {
            Err(CustomerError::NotRegistered)
        }
    }

    /// An erased profile can only come from a customer whose data key is gone: erased.
    fn take_profile(&mut self, profile: RecordedProfile) {
        match profile {
            RecordedProfile::Known(profile) if !self.erased => self.profile = Some(*profile),
            _ => {
                self.profile = None;
                self.erased = true;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cqrs_es::test::TestFramework;

    type Fixture = TestFramework<Customer>;

    pub(crate) fn input() -> CustomerInput {
        CustomerInput {
            name: Some("Maria Souza".into()),
            tax_id: Some("529.982.247-25".into()),
            email: Some("maria@example.com.br".into()),
            phone: Some("(11) 3333-4444".into()),
            mobile: Some("+55 11 98888-7777".into()),
            address: Some(AddressInput {
                street: Some("Rua das Flores".into()),
                number: Some("42".into()),
                complement: Some("ap 3".into()),
                district: Some("Centro".into()),
                city: Some("São Paulo".into()),
                state: Some("SP".into()),
                cep: Some("01001-000".into()),
            }),
        }
    }

    fn save(profile: CustomerProfile) -> CustomerCommand {
        CustomerCommand::Save {
            tenant: TenantId::parse("shop").unwrap(),
            customer_id: CustomerId::parse("c1").unwrap(),
            profile,
        }
    }

    fn registered(profile: CustomerProfile) -> CustomerEvent {
        CustomerEvent::CustomerRegistered {
            tenant: TenantId::parse("shop").unwrap(),
            customer_id: CustomerId::parse("c1").unwrap(),
            profile: profile.into(),
        }
    }

    #[test]
    fn valid_input_normalises_documents_and_phones() {
        let profile = input().validate().unwrap();
        assert_eq!(profile.tax_id.as_str(), "52998224725");
        assert_eq!(profile.person_type(), PersonType::Individual);
        assert_eq!(profile.phone.as_deref(), Some("1133334444"));
        assert_eq!(profile.mobile.as_deref(), Some("5511988887777"));
        assert_eq!(profile.address.as_ref().unwrap().cep.as_str(), "01001000");
        assert!(profile.readiness_for_bling().is_empty());
    }

    #[test]
    fn validation_names_every_bad_field() {
        let mut bad = input();
        bad.name = Some("  ".into());
        bad.tax_id = Some("529.982.247-24".into());
        bad.email = Some("maria@".into());
        bad.phone = Some("12".into());
        bad.address.as_mut().unwrap().cep = Some("1".into());
        let problems = bad.validate().unwrap_err();
        let fields: Vec<_> = problems.0.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(fields, ["name", "tax_id", "email", "phone", "address.cep"]);
        assert_eq!(problems.0[1].problem, "check digits do not match");
    }

    #[test]
    fn control_characters_in_the_name_are_refused() {
        for bad in ["Maria\u{0}", "Ma\tria", "Maria\nSouza", "Maria\u{9b}"] {
            let mut input = input();
            input.name = Some(bad.into());
            let problems = input.validate().unwrap_err();
            assert_eq!(problems.0.len(), 1, "{bad:?}");
            assert_eq!(problems.0[0].field, "name");
            assert!(problems.0[0].problem.contains("control characters"));
        }
    }

    #[test]
    fn missing_tax_id_is_named() {
        let problems = CustomerInput::default().validate().unwrap_err();
        let fields: Vec<_> = problems.0.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(fields, ["name", "tax_id"]);
    }

    #[test]
    fn customer_without_address_is_valid_but_not_ready_for_bling() {
        let mut no_address = input();
        no_address.address = None;
        let profile = no_address.validate().unwrap();
        let readiness = profile.readiness_for_bling();
        assert_eq!(readiness.0.len(), 1);
        assert_eq!(readiness.0[0].field, "address");
    }

    #[test]
    fn emails() {
        assert!(Email::parse("a.b+tag@pet-shop.com.br").is_ok());
        for bad in [
            "a@b",
            "a b@c.com",
            "@c.com",
            "a@@c.com",
            "a@c..com",
            "a.@c.com",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn first_save_registers() {
        let profile = input().validate().unwrap();
        Fixture::with(())
            .given_no_previous_events()
            .when(save(profile.clone()))
            .then_expect_events(vec![registered(profile)]);
    }

    #[test]
    fn saving_the_same_profile_appends_nothing() {
        let profile = input().validate().unwrap();
        Fixture::with(())
            .given(vec![registered(profile.clone())])
            .when(save(profile))
            .then_expect_events(vec![]);
    }

    #[test]
    fn an_update_says_which_fields_changed() {
        let profile = input().validate().unwrap();
        let mut changed_input = input();
        changed_input.email = Some("maria.souza@example.com".into());
        changed_input.address.as_mut().unwrap().number = Some("43".into());
        let changed = changed_input.validate().unwrap();
        Fixture::with(())
            .given(vec![registered(profile)])
            .when(save(changed.clone()))
            .then_expect_events(vec![CustomerEvent::CustomerUpdated {
                changed_fields: vec!["email".into(), "address".into()],
                profile: changed.into(),
            }]);
    }

    #[test]
    fn another_tenant_cannot_write_the_stream() {
        let profile = input().validate().unwrap();
        Fixture::with(())
            .given(vec![registered(profile.clone())])
            .when(CustomerCommand::Save {
                tenant: TenantId::parse("other").unwrap(),
                customer_id: CustomerId::parse("c1").unwrap(),
                profile,
            })
            .then_expect_error(CustomerError::WrongTenant("shop".into()));
    }

    #[test]
    fn sync_records_need_a_registered_customer_and_track_versions() {
        Fixture::with(())
            .given_no_previous_events()
            .when(CustomerCommand::RecordContactLinked {
                bling_contact_id: 7,
                created: true,
                profile_version: 1,
                calls: vec![],
            })
            .then_expect_error(CustomerError::NotRegistered);

        let profile = input().validate().unwrap();
        let mut customer = Customer::default();
        customer.apply(registered(profile.clone()));
        assert!(!customer.is_synced());
        customer.apply(CustomerEvent::ContactLinked {
            bling_contact_id: 7,
            created: true,
            profile_version: 1,
            calls: vec![],
        });
        assert!(customer.is_synced());
        customer.apply(CustomerEvent::CustomerUpdated {
            changed_fields: vec!["name".into()],
            profile: profile.into(),
        });
        assert_eq!(customer.profile_version, 2);
        assert!(!customer.is_synced());
    }

    #[test]
    fn an_erased_customer_refuses_changes_and_sync_records() {
        let profile = input().validate().unwrap();
        let erased = CustomerEvent::CustomerErased {
            reason: "ticket 42".into(),
        };
        Fixture::with(())
            .given(vec![registered(profile.clone())])
            .when(CustomerCommand::Erase {
                reason: "ticket 42".into(),
            })
            .then_expect_events(vec![erased.clone()]);
        // Idempotent: a second erasure appends nothing.
        Fixture::with(())
            .given(vec![registered(profile.clone()), erased.clone()])
            .when(CustomerCommand::Erase {
                reason: "again".into(),
            })
            .then_expect_events(vec![]);
        Fixture::with(())
            .given(vec![registered(profile.clone()), erased.clone()])
            .when(save(profile.clone()))
            .then_expect_error(CustomerError::Erased);
        Fixture::with(())
            .given(vec![registered(profile), erased])
            .when(CustomerCommand::RecordContactLinked {
                bling_contact_id: 7,
                created: true,
                profile_version: 1,
                calls: vec![],
            })
            .then_expect_error(CustomerError::Erased);
        Fixture::with(())
            .given_no_previous_events()
            .when(CustomerCommand::Erase { reason: "x".into() })
            .then_expect_error(CustomerError::NotRegistered);
    }

    #[test]
    fn an_erased_profile_reads_back_as_erased_and_a_known_one_unchanged() {
        let profile = input().validate().unwrap();
        let known = serde_json::to_value(RecordedProfile::from(profile.clone())).unwrap();
        // A known profile is stored exactly as before erasure existed.
        assert_eq!(known, serde_json::to_value(&profile).unwrap());
        let back: RecordedProfile = serde_json::from_value(known).unwrap();
        assert_eq!(back.known(), Some(&profile));
        let erased: RecordedProfile =
            serde_json::from_value(serde_json::json!({"erased": true})).unwrap();
        assert_eq!(erased, RecordedProfile::erased());
        assert_eq!(erased.name(), ERASED);
        assert!(
            serde_json::from_value::<RecordedProfile>(serde_json::json!({"erased": false}))
                .is_err()
        );
        // Replaying an erased registration leaves an erased customer, without a profile.
        let mut customer = Customer::default();
        customer.apply(CustomerEvent::CustomerRegistered {
            tenant: TenantId::parse("shop").unwrap(),
            customer_id: CustomerId::parse("c1").unwrap(),
            profile: erased,
        });
        assert!(customer.erased && customer.exists() && !customer.is_registered());
    }
}
