//! Postal address as Bling and the NF-e need it: CEP (8 digits) and UF (one of the 27).

use serde::{Deserialize, Serialize};
use std::fmt;

use crate::problems::{text_problem, Problems, TextKind};

/// The 26 states and the Federal District.
pub const UFS: [&str; 27] = [
    "AC", "AL", "AP", "AM", "BA", "CE", "DF", "ES", "GO", "MA", "MT", "MS", "MG", "PA", "PB", "PR",
    "PE", "PI", "RJ", "RN", "RS", "RO", "RR", "SC", "SP", "SE", "TO",
];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    #[error("a CEP has 8 digits (NNNNN-NNN)")]
    Cep,
    #[error("not one of the 27 UFs (AC, AL, …, SP, SE, TO)")]
    Uf,
}

/// A CEP, 8 digits without the dash.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Cep(String);

impl Cep {
    pub fn parse(raw: &str) -> Result<Cep, AddressError> {
        let digits: String = raw
            .chars()
            .filter(|c| !matches!(c, '-' | '.' | ' '))
            .collect();
        if digits.len() == 8 && digits.bytes().all(|b| b.is_ascii_digit()) {
            Ok(Cep(digits))
        } else {
            Err(AddressError::Cep)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A federative unit (state), upper case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Uf(u8);

impl Uf {
    pub fn parse(raw: &str) -> Result<Uf, AddressError> {
        let upper = raw.trim().to_ascii_uppercase();
        UFS.iter()
            .position(|uf| *uf == upper)
            .map(|index| Uf(index as u8))
            .ok_or(AddressError::Uf)
    }

    pub fn as_str(&self) -> &'static str {
        UFS[usize::from(self.0)]
    }
}

macro_rules! string_conversions {
    ($t:ident) => {
        impl TryFrom<String> for $t {
            type Error = AddressError;
            fn try_from(raw: String) -> Result<Self, AddressError> {
                $t::parse(&raw)
            }
        }
        impl From<$t> for String {
            fn from(v: $t) -> String {
                v.as_str().to_string()
            }
        }
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}
string_conversions!(Cep);
string_conversions!(Uf);

/// A complete address. Every part but the complement is required: the NF-e needs them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Address {
    pub street: String,
    pub number: String,
    pub complement: Option<String>,
    pub district: String,
    pub city: String,
    pub state: Uf,
    pub cep: Cep,
}

/// An address as it arrives, every part optional, so that all problems can be named at once.
/// A part it does not know is refused, as in the rest of the request (it was silently
/// dropped before: a misspelt `"complemento"` would have vanished).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddressInput {
    pub street: Option<String>,
    pub number: Option<String>,
    pub complement: Option<String>,
    pub district: Option<String>,
    pub city: Option<String>,
    pub state: Option<String>,
    pub cep: Option<String>,
}

impl AddressInput {
    /// Validates every part, recording each problem under `prefix.part`.
    pub fn validate(&self, prefix: &str, problems: &mut Problems) -> Option<Address> {
        let mut required = |name: &str, value: &Option<String>, max: usize| -> Option<String> {
            match value.as_deref().map(str::trim) {
                None | Some("") => {
                    problems.add(format!("{prefix}.{name}"), "is required");
                    None
                }
                Some(v) if v.chars().count() > max => {
                    problems.add(
                        format!("{prefix}.{name}"),
                        format!("longer than {max} characters"),
                    );
                    None
                }
                Some(v) => match text_problem(v, TextKind::SingleLine) {
                    Some(problem) => {
                        problems.add(format!("{prefix}.{name}"), problem);
                        None
                    }
                    None => Some(v.to_string()),
                },
            }
        };
        let street = required("street", &self.street, 120);
        let number = required("number", &self.number, 10);
        let district = required("district", &self.district, 60);
        let city = required("city", &self.city, 60);
        let state = match &self.state {
            None => {
                problems.add(format!("{prefix}.state"), "is required");
                None
            }
            Some(s) => problems.check(format!("{prefix}.state"), Uf::parse(s)),
        };
        let cep = match &self.cep {
            None => {
                problems.add(format!("{prefix}.cep"), "is required");
                None
            }
            Some(s) => problems.check(format!("{prefix}.cep"), Cep::parse(s)),
        };
        let complement = self
            .complement
            .as_deref()
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .map(str::to_string);
        let field = format!("{prefix}.complement");
        if let Some(c) = &complement {
            if c.chars().count() > 60 {
                problems.add(field, "longer than 60 characters");
                return None;
            } else if let Some(problem) = text_problem(c, TextKind::SingleLine) {
                problems.add(field, problem);
                return None;
            }
        }
        Some(Address {
            street: street?,
            number: number?,
            complement,
            district: district?,
            city: city?,
            state: state?,
            cep: cep?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cep_has_eight_digits() {
        assert_eq!(Cep::parse("01310-100").unwrap().as_str(), "01310100");
        assert_eq!(Cep::parse("0131010"), Err(AddressError::Cep));
        assert_eq!(Cep::parse("01310-10A"), Err(AddressError::Cep));
    }

    #[test]
    fn uf_is_one_of_27() {
        assert_eq!(UFS.len(), 27);
        assert_eq!(Uf::parse("sp").unwrap().as_str(), "SP");
        assert_eq!(Uf::parse("DF").unwrap().as_str(), "DF");
        assert_eq!(Uf::parse("XX"), Err(AddressError::Uf));
    }

    #[test]
    fn address_parts_refuse_control_characters() {
        let input = AddressInput {
            street: Some("Rua\u{0}Augusta".into()),
            number: Some("12\t".into()),
            complement: Some("ap\u{85}3".into()),
            district: Some("Centro".into()),
            city: Some("São\nPaulo".into()),
            state: Some("SP".into()),
            cep: Some("01304-001".into()),
        };
        let mut problems = Problems::new();
        assert!(input.validate("address", &mut problems).is_none());
        let fields: Vec<_> = problems.0.iter().map(|p| p.field.as_str()).collect();
        // "12\t" is trimmed to "12": trailing white space is not content.
        assert_eq!(
            fields,
            ["address.street", "address.city", "address.complement"]
        );
    }

    #[test]
    fn unknown_address_parts_are_refused() {
        let parsed: Result<AddressInput, _> =
            serde_json::from_str(r#"{"street": "Rua A", "complemento": "ap 3"}"#);
        assert!(parsed
            .unwrap_err()
            .to_string()
            .contains("unknown field `complemento`"));
    }

    #[test]
    fn address_names_every_bad_part() {
        let input = AddressInput {
            street: Some("Av. Paulista".into()),
            state: Some("ZZ".into()),
            cep: Some("123".into()),
            ..Default::default()
        };
        let mut problems = Problems::new();
        assert!(input.validate("address", &mut problems).is_none());
        let fields: Vec<_> = problems.0.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "address.number",
                "address.district",
                "address.city",
                "address.state",
                "address.cep"
            ]
        );
    }
}
