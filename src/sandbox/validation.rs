//! Brazilian field checks shared by contatos and pedidos: CPF/CNPJ, CEP, UF, dates.

use chrono::{FixedOffset, NaiveDate, NaiveDateTime, Utc};

pub(crate) const UFS: [&str; 27] = [
    "AC", "AL", "AP", "AM", "BA", "CE", "DF", "ES", "GO", "MA", "MT", "MS", "MG", "PA", "PB", "PR",
    "PE", "PI", "RJ", "RN", "RS", "RO", "RR", "SC", "SP", "SE", "TO",
];

/// Strips the punctuation people type into documents ("123.456.789-09", "12.ABC.345/01DE-35").
pub(crate) fn normalize_document(raw: &str) -> String {
    raw.chars()
        .filter(|c| !matches!(c, '.' | '/' | '-' | ' '))
        .map(|c| c.to_ascii_uppercase())
        .collect()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Document {
    Cpf,
    Cnpj,
}

/// Which document a normalized string claims to be, judged by its length and charset.
pub(crate) fn document_kind(doc: &str) -> Option<Document> {
    match doc.len() {
        11 if doc.bytes().all(|b| b.is_ascii_digit()) => Some(Document::Cpf),
        14 if doc.bytes().all(|b| b.is_ascii_alphanumeric()) => Some(Document::Cnpj),
        _ => None,
    }
}

pub(crate) fn document_valid(doc: &str) -> bool {
    match document_kind(doc) {
        Some(Document::Cpf) => cpf_cnpj::cpf::validate(doc),
        Some(Document::Cnpj) => cpf_cnpj::cnpj::validate(doc),
        None => false,
    }
}

pub(crate) fn normalize_cep(raw: &str) -> String {
    raw.chars()
        .filter(|c| !matches!(c, '.' | '-' | ' '))
        .collect()
}

pub(crate) fn cep_valid(cep: &str) -> bool {
    cep.len() == 8 && cep.bytes().all(|b| b.is_ascii_digit())
}

/// The UF whose CEP range holds `cep` (Correios' ranges by first five digits). Bling checks an
/// address's CEP against its UF (assumption: Bling validates against the Correios base; the
/// ranges are the public coarse version of that check).
pub(crate) fn cep_uf(cep: &str) -> Option<&'static str> {
    let prefix: u32 = cep.get(..5)?.parse().ok()?;
    const RANGES: [(u32, u32, &str); 30] = [
        (1000, 19999, "SP"),
        (20000, 28999, "RJ"),
        (29000, 29999, "ES"),
        (30000, 39999, "MG"),
        (40000, 48999, "BA"),
        (49000, 49999, "SE"),
        (50000, 56999, "PE"),
        (57000, 57999, "AL"),
        (58000, 58999, "PB"),
        (59000, 59999, "RN"),
        (60000, 63999, "CE"),
        (64000, 64999, "PI"),
        (65000, 65999, "MA"),
        (66000, 68899, "PA"),
        (68900, 68999, "AP"),
        (69000, 69299, "AM"),
        (69300, 69399, "RR"),
        (69400, 69899, "AM"),
        (69900, 69999, "AC"),
        (70000, 72799, "DF"),
        (72800, 72999, "GO"),
        (73000, 73699, "DF"),
        (73700, 76799, "GO"),
        (76800, 76999, "RO"),
        (77000, 77999, "TO"),
        (78000, 78899, "MT"),
        (79000, 79999, "MS"),
        (80000, 87999, "PR"),
        (88000, 89999, "SC"),
        (90000, 99999, "RS"),
    ];
    RANGES
        .iter()
        .find(|(low, high, _)| (*low..=*high).contains(&prefix))
        .map(|(_, _, uf)| *uf)
}

pub(crate) fn uf_valid(uf: &str) -> bool {
    UFS.contains(&uf)
}

/// Bling works in Brasília time (UTC−3, no daylight saving since 2019).
pub(crate) fn now_brt() -> NaiveDateTime {
    let offset = FixedOffset::west_opt(3 * 3600).unwrap_or_else(|| Utc.fix());
    Utc::now().with_timezone(&offset).naive_local()
}

use chrono::Offset;

pub(crate) fn parse_date(s: &str) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()
}

/// A date filter bound: "YYYY-MM-DD" or "YYYY-MM-DD HH:MM:SS"; a bare date used as an upper
/// bound covers the whole day.
pub(crate) fn parse_bound(s: &str, upper: bool) -> Option<NaiveDateTime> {
    if let Ok(dt) = NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S") {
        return Some(dt);
    }
    if let Ok(dt) = NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S") {
        return Some(dt);
    }
    let d = parse_date(s)?;
    if upper {
        d.and_hms_opt(23, 59, 59)
    } else {
        d.and_hms_opt(0, 0, 0)
    }
}

pub(crate) fn format_datetime(dt: NaiveDateTime) -> String {
    dt.format("%Y-%m-%d %H:%M:%S").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents() {
        assert!(document_valid(&normalize_document("407.438.540-63")));
        assert!(!document_valid("40743854013"));
        assert!(document_valid(&normalize_document("12.ABC.345/01DE-35")));
        assert_eq!(document_kind("12ABC34501DE35"), Some(Document::Cnpj));
        assert!(cep_valid(&normalize_cep("01310-100")));
        assert!(!uf_valid("XX"));
    }
}
