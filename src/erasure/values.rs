//! A customer's personal values as text to look for, and their removal from free text.
//!
//! Two uses:
//! - **at the source**: before the sync worker records Bling's evidence (call paths such as
//!   `/contatos?numeroDocumento=…`, error messages, `VALIDATION_ERROR` field messages, which
//!   quote values back), the values of the profile it sent are replaced by [`WITHHELD`]. The
//!   evidence keeps what support needs (which call, which field, what kind of refusal)
//!   without the values, so the sealed log holds no personal value outside the encrypted
//!   profile;
//! - **on erasure**: every table but the sealed log is searched for the values and they are
//!   replaced by [`ERASED`] (`forget`).
//!
//! The values: the name, the CPF/CNPJ bare and formatted (`52998224725`, `529.982.247-25`),
//! the e-mail (as given and lower case), the phones (digits, and the usual `(11) 98888-7777`
//! spelling), and of the address the street, complement, district and CEP (bare and with its
//! dash). The number, city and state are not looked for: short or shared by many people, they
//! identify nobody alone and would erase unrelated text (a `42` in an amount). Values shorter
//! than [`MIN_LEN`] characters are skipped for the same reason. Each value is also looked for
//! as JSON writes it inside a string (quotes and backslashes escaped), since most columns hold
//! JSON.

use aggregates::customer::CustomerProfile;
use serde_json::Value;

pub use aggregates::customer::ERASED;

/// What evidence recorded by the sync worker shows in place of a personal value.
pub const WITHHELD: &str = "[personal data withheld]";

/// Shorter values are not looked for (see the module documentation).
pub const MIN_LEN: usize = 4;

/// The personal values of one or more profiles, longest first (so that a value containing
/// another is replaced whole).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PersonalValues(Vec<String>);

fn formatted_document(doc: &str) -> Option<String> {
    let c: Vec<char> = doc.chars().collect();
    let s = |r: std::ops::Range<usize>| c[r].iter().collect::<String>();
    match c.len() {
        11 => Some(format!("{}.{}.{}-{}", s(0..3), s(3..6), s(6..9), s(9..11))),
        14 => Some(format!(
            "{}.{}.{}/{}-{}",
            s(0..2),
            s(2..5),
            s(5..8),
            s(8..12),
            s(12..14)
        )),
        _ => None,
    }
}

fn formatted_phone(digits: &str) -> Vec<String> {
    // Stored as digits, possibly with the country code 55.
    let local = digits
        .strip_prefix("55")
        .filter(|d| d.len() >= 10)
        .unwrap_or(digits);
    let mut out = vec![digits.to_string(), local.to_string()];
    if local.len() == 10 || local.len() == 11 {
        let (area, rest) = local.split_at(2);
        let (a, b) = rest.split_at(rest.len() - 4);
        out.push(format!("({area}) {a}-{b}"));
        out.push(format!("{a}-{b}"));
        out.push(format!("{a}{b}"));
    }
    out
}

impl PersonalValues {
    /// The values of every profile given (a customer's current and earlier profiles).
    pub fn of<'a>(profiles: impl IntoIterator<Item = &'a CustomerProfile>) -> PersonalValues {
        let mut values = Vec::new();
        for p in profiles {
            values.push(p.name.clone());
            let doc = p.tax_id.as_str().to_string();
            values.extend(formatted_document(&doc));
            values.push(doc);
            if let Some(email) = &p.email {
                values.push(email.as_str().to_string());
                values.push(email.as_str().to_lowercase());
            }
            for phone in p.phone.iter().chain(p.mobile.iter()) {
                values.extend(formatted_phone(phone));
            }
            if let Some(a) = &p.address {
                values.push(a.street.clone());
                values.extend(a.complement.clone());
                values.push(a.district.clone());
                let cep = a.cep.as_str().to_string();
                if cep.len() == 8 {
                    values.push(format!("{}-{}", &cep[..5], &cep[5..]));
                }
                values.push(cep);
            }
        }
        let mut all = Vec::with_capacity(values.len() * 2);
        for v in values {
            let v = v.trim().to_string();
            if v.chars().count() < MIN_LEN {
                continue;
            }
            // As JSON writes it inside a string.
            let escaped = serde_json::to_string(&v).unwrap_or_default();
            let escaped = escaped.trim_matches('"').to_string();
            if escaped != v {
                all.push(escaped);
            }
            all.push(v);
        }
        all.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        all.dedup();
        PersonalValues(all)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn as_slice(&self) -> &[String] {
        &self.0
    }

    /// `text` with every value replaced by `mark`, or `None` when it holds none.
    pub fn replace_in(&self, text: &str, mark: &str) -> Option<String> {
        let mut out: Option<String> = None;
        for v in &self.0 {
            let current = out.as_deref().unwrap_or(text);
            if current.contains(v.as_str()) {
                out = Some(current.replace(v.as_str(), mark));
            }
        }
        out
    }

    /// Replaces every value in every string (and object key) of `value`; returns how many
    /// strings changed.
    pub fn scrub_json(&self, value: &mut Value, mark: &str) -> usize {
        match value {
            Value::String(s) => match self.replace_in(s, mark) {
                Some(new) => {
                    *s = new;
                    1
                }
                None => 0,
            },
            Value::Array(items) => items.iter_mut().map(|v| self.scrub_json(v, mark)).sum(),
            Value::Object(map) => {
                let mut changed = 0;
                let renamed: Vec<(String, String)> = map
                    .keys()
                    .filter_map(|k| self.replace_in(k, mark).map(|n| (k.clone(), n)))
                    .collect();
                for (old, new) in renamed {
                    if let Some(v) = map.remove(&old) {
                        map.insert(new, v);
                        changed += 1;
                    }
                }
                changed
                    + map
                        .values_mut()
                        .map(|v| self.scrub_json(v, mark))
                        .sum::<usize>()
            }
            _ => 0,
        }
    }

    /// `value` (any serializable evidence: calls, a failure cause) with the values withheld.
    /// Evidence that does not serialize and read back is returned as it was.
    pub fn withhold<T>(&self, value: T) -> T
    where
        T: serde::Serialize + serde::de::DeserializeOwned,
    {
        if self.is_empty() {
            return value;
        }
        let Ok(mut json) = serde_json::to_value(&value) else {
            return value;
        };
        if self.scrub_json(&mut json, WITHHELD) == 0 {
            return value;
        }
        serde_json::from_value(json).unwrap_or(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use aggregates::address::AddressInput;
    use aggregates::customer::CustomerInput;
    use serde_json::json;

    fn profile() -> CustomerProfile {
        CustomerInput {
            name: Some("Zuleica \"Zu\" Quintanilha".into()),
            tax_id: Some("529.982.247-25".into()),
            email: Some("Zuleica.Q@Example.com.br".into()),
            phone: Some("(11) 3333-4444".into()),
            mobile: Some("+55 11 98888-7777".into()),
            address: Some(AddressInput {
                street: Some("Rua Xavantes Remotas".into()),
                number: Some("42".into()),
                complement: Some("bloco Quaresma".into()),
                district: Some("Vila Ipsilone".into()),
                city: Some("São Paulo".into()),
                state: Some("SP".into()),
                cep: Some("01001-000".into()),
            }),
        }
        .validate()
        .unwrap()
    }

    #[test]
    fn every_spelling_of_every_value_is_found() {
        let values = PersonalValues::of([&profile()]);
        for v in [
            "Zuleica \"Zu\" Quintanilha",
            "Zuleica \\\"Zu\\\" Quintanilha",
            "52998224725",
            "529.982.247-25",
            "Zuleica.Q@Example.com.br",
            "zuleica.q@example.com.br",
            "1133334444",
            "(11) 3333-4444",
            "5511988887777",
            "(11) 98888-7777",
            "Rua Xavantes Remotas",
            "bloco Quaresma",
            "Vila Ipsilone",
            "01001000",
            "01001-000",
        ] {
            assert!(values.as_slice().contains(&v.to_string()), "{v}");
        }
        // Too short or not identifying: not looked for.
        assert!(!values.as_slice().iter().any(|v| v == "42" || v == "SP"));
    }

    #[test]
    fn evidence_keeps_its_shape_without_the_values() {
        let values = PersonalValues::of([&profile()]);
        let mut evidence = json!({
            "path": "/contatos?numeroDocumento=52998224725",
            "error_message": "CPF 529.982.247-25 já cadastrado para Zuleica \"Zu\" Quintanilha",
            "fields": [{"element": "email", "msg": "zuleica.q@example.com.br inválido"}],
            "status": 400
        });
        assert_eq!(values.scrub_json(&mut evidence, WITHHELD), 3);
        let text = evidence.to_string();
        for gone in ["52998224725", "529.982.247-25", "Zuleica", "zuleica"] {
            assert!(!text.contains(gone), "{gone} in {text}");
        }
        assert_eq!(
            evidence["path"],
            format!("/contatos?numeroDocumento={WITHHELD}")
        );
        assert_eq!(evidence["fields"][0]["element"], "email");
        assert_eq!(evidence["status"], 400);
        assert_eq!(values.replace_in("nothing personal", ERASED), None);
    }
}
