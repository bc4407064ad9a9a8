//! Brazilian tax ids: CPF (people) and CNPJ (companies), including the alphanumeric CNPJ that
//! Receita Federal issues from July 2026 (IN RFB nº 2.229/2024).
//!
//! Check digits are computed by the `cpf_cnpj` crate, which implements both CNPJ forms (value of
//! a character = ASCII − 48, modulo 11). This module owns normalisation (punctuation, case) and
//! the types: a `Cpf` or `Cnpj` value always holds a valid, canonical document.

use serde::{Deserialize, Serialize};
use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TaxIdError {
    #[error("must have 11 digits (CPF) or 14 characters (CNPJ), got {0}")]
    Length(usize),
    #[error("has characters other than digits, letters and the separators . - /")]
    Characters,
    #[error("all digits are equal, which Receita Federal never issues")]
    AllEqual,
    #[error("check digits do not match")]
    CheckDigits,
    #[error("a CPF has digits only")]
    CpfWithLetters,
}

/// Strips the separators people type (`.`, `-`, `/`, spaces) and upper-cases letters.
fn normalise(raw: &str) -> Result<String, TaxIdError> {
    let mut out = String::with_capacity(14);
    for c in raw.chars() {
        match c {
            '.' | '-' | '/' | ' ' => {}
            c if c.is_ascii_alphanumeric() => out.push(c.to_ascii_uppercase()),
            _ => return Err(TaxIdError::Characters),
        }
    }
    Ok(out)
}

fn all_equal(s: &str) -> bool {
    let mut bytes = s.bytes();
    match bytes.next() {
        Some(first) => bytes.all(|b| b == first),
        None => true,
    }
}

/// A valid CPF, 11 digits, no punctuation.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Cpf(String);

impl Cpf {
    pub fn parse(raw: &str) -> Result<Cpf, TaxIdError> {
        let digits = normalise(raw)?;
        if digits.len() != 11 {
            return Err(TaxIdError::Length(digits.len()));
        }
        if !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(TaxIdError::CpfWithLetters);
        }
        if all_equal(&digits) {
            return Err(TaxIdError::AllEqual);
        }
        if !cpf_cnpj::cpf::validate(&digits) {
            return Err(TaxIdError::CheckDigits);
        }
        Ok(Cpf(digits))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A valid CNPJ, 14 characters: numeric, or alphanumeric (12 of `[0-9A-Z]` + 2 check digits).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Cnpj(String);

impl Cnpj {
    pub fn parse(raw: &str) -> Result<Cnpj, TaxIdError> {
        let chars = normalise(raw)?;
        if chars.len() != 14 {
            return Err(TaxIdError::Length(chars.len()));
        }
        if all_equal(&chars) {
            return Err(TaxIdError::AllEqual);
        }
        if !chars[12..].bytes().all(|b| b.is_ascii_digit()) || !cpf_cnpj::cnpj::validate(&chars) {
            return Err(TaxIdError::CheckDigits);
        }
        Ok(Cnpj(chars))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Alphanumeric CNPJs exist from July 2026; systems that predate them may reject them.
    pub fn is_alphanumeric(&self) -> bool {
        self.0.bytes().any(|b| b.is_ascii_alphabetic())
    }
}

macro_rules! string_conversions {
    ($t:ident) => {
        impl TryFrom<String> for $t {
            type Error = TaxIdError;
            fn try_from(raw: String) -> Result<Self, TaxIdError> {
                $t::parse(&raw)
            }
        }
        impl From<$t> for String {
            fn from(v: $t) -> String {
                v.0
            }
        }
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}
string_conversions!(Cpf);
string_conversions!(Cnpj);

/// Individual or company, as Bling's `tipo` ("F" física, "J" jurídica) expects it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PersonType {
    Individual,
    Company,
}

impl PersonType {
    /// Bling's code for the person type.
    pub fn bling_code(self) -> &'static str {
        match self {
            PersonType::Individual => "F",
            PersonType::Company => "J",
        }
    }
}

/// A customer's document. The person type is derived from it, never given separately, so the
/// two can never disagree.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum TaxId {
    Cpf(Cpf),
    Cnpj(Cnpj),
}

impl TaxId {
    /// Parses a CPF or a CNPJ, deciding by length after normalisation.
    pub fn parse(raw: &str) -> Result<TaxId, TaxIdError> {
        let normalised = normalise(raw)?;
        match normalised.len() {
            11 => Cpf::parse(&normalised).map(TaxId::Cpf),
            14 => Cnpj::parse(&normalised).map(TaxId::Cnpj),
            n => Err(TaxIdError::Length(n)),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            TaxId::Cpf(c) => c.as_str(),
            TaxId::Cnpj(c) => c.as_str(),
        }
    }

    pub fn person_type(&self) -> PersonType {
        match self {
            TaxId::Cpf(_) => PersonType::Individual,
            TaxId::Cnpj(_) => PersonType::Company,
        }
    }
}

impl TryFrom<String> for TaxId {
    type Error = TaxIdError;
    fn try_from(raw: String) -> Result<Self, TaxIdError> {
        TaxId::parse(&raw)
    }
}

impl From<TaxId> for String {
    fn from(v: TaxId) -> String {
        v.as_str().to_string()
    }
}

impl fmt::Display for TaxId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Vectors: CPFs from Receita's published examples and public validators; CNPJ
    // 12.ABC.345/01DE-35 is the example in Receita Federal's "Cálculo do DV do CNPJ
    // alfanumérico" manual.
    #[test]
    fn valid_cpfs_parse_to_digits() {
        for raw in [
            "529.982.247-25",
            "52998224725",
            "111.444.777-35",
            " 255.248.930-33 ",
        ] {
            let cpf = Cpf::parse(raw).unwrap_or_else(|e| panic!("{raw}: {e}"));
            assert_eq!(cpf.as_str().len(), 11);
        }
        assert_eq!(
            Cpf::parse("529.982.247-25").unwrap().as_str(),
            "52998224725"
        );
    }

    #[test]
    fn cpf_with_a_wrong_check_digit_is_refused() {
        assert_eq!(Cpf::parse("529.982.247-24"), Err(TaxIdError::CheckDigits));
        assert_eq!(Cpf::parse("529.982.247-15"), Err(TaxIdError::CheckDigits));
    }

    #[test]
    fn cpf_with_all_equal_digits_is_refused_even_though_its_digits_check() {
        // 111.111.111-11 passes the modulo-11 arithmetic; Receita never issues it.
        for d in 0..=9 {
            let raw = d.to_string().repeat(11);
            assert_eq!(Cpf::parse(&raw), Err(TaxIdError::AllEqual), "{raw}");
        }
    }

    #[test]
    fn cpf_shape_errors() {
        assert_eq!(Cpf::parse("5299822472"), Err(TaxIdError::Length(10)));
        assert_eq!(Cpf::parse("5299822472A"), Err(TaxIdError::CpfWithLetters));
        assert_eq!(Cpf::parse("529#982#247#25"), Err(TaxIdError::Characters));
    }

    #[test]
    fn numeric_cnpjs() {
        assert_eq!(
            Cnpj::parse("11.222.333/0001-81").unwrap().as_str(),
            "11222333000181"
        );
        assert!(Cnpj::parse("36.002.518/0001-01").is_ok());
        assert_eq!(
            Cnpj::parse("11.222.333/0001-82"),
            Err(TaxIdError::CheckDigits)
        );
        assert_eq!(Cnpj::parse("00000000000000"), Err(TaxIdError::AllEqual));
        assert!(!Cnpj::parse("11222333000181").unwrap().is_alphanumeric());
    }

    #[test]
    fn alphanumeric_cnpj_official_example() {
        let cnpj = Cnpj::parse("12.ABC.345/01DE-35").unwrap();
        assert_eq!(cnpj.as_str(), "12ABC34501DE35");
        assert!(cnpj.is_alphanumeric());
        // Lower case is the same document.
        assert_eq!(Cnpj::parse("12abc34501de35").unwrap(), cnpj);
        // A wrong check digit, and letters where check digits must be.
        assert_eq!(
            Cnpj::parse("12.ABC.345/01DE-36"),
            Err(TaxIdError::CheckDigits)
        );
        assert_eq!(
            Cnpj::parse("12.ABC.345/01DE-3A"),
            Err(TaxIdError::CheckDigits)
        );
    }

    #[test]
    fn tax_id_decides_by_length_and_derives_person_type() {
        let cpf = TaxId::parse("529.982.247-25").unwrap();
        assert_eq!(cpf.person_type(), PersonType::Individual);
        assert_eq!(cpf.person_type().bling_code(), "F");
        let cnpj = TaxId::parse("12.ABC.345/01DE-35").unwrap();
        assert_eq!(cnpj.person_type(), PersonType::Company);
        assert_eq!(TaxId::parse("123"), Err(TaxIdError::Length(3)));
    }

    #[test]
    fn tax_id_serde_validates() {
        let ok: TaxId = serde_json::from_str("\"52998224725\"").unwrap();
        assert_eq!(serde_json::to_string(&ok).unwrap(), "\"52998224725\"");
        assert!(serde_json::from_str::<TaxId>("\"52998224724\"").is_err());
    }
}
