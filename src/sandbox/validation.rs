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

/// `s` has exactly the shape of `pattern`, where `9` stands for an ASCII digit.
fn shaped(s: &str, pattern: &str) -> bool {
    s.len() == pattern.len()
        && s.bytes().zip(pattern.bytes()).all(|(c, p)| match p {
            b'9' => c.is_ascii_digit(),
            p => c == p,
        })
}

/// A date filter bound: exactly `Y-m-d` or `Y-m-d H:i:s` (no `T`, no offset: [U1], [OAS]
/// examples); a bare date used as an upper bound covers the whole day.
pub(crate) fn parse_bound(s: &str, upper: bool) -> Option<NaiveDateTime> {
    if shaped(s, "9999-99-99 99:99:99") {
        return NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S").ok();
    }
    if !shaped(s, "9999-99-99") {
        return None;
    }
    let d = parse_date(s)?;
    if upper {
        d.and_hms_opt(23, 59, 59)
    } else {
        d.and_hms_opt(0, 0, 0)
    }
}

/// Bling refuses a period filter longer than one year with a 400 ([DOC] /limites).
/// Compared by calendar day: 2024-01-01 to 2025-01-01 is one year, to 2025-01-02 is more.
pub(crate) fn range_over_a_year(from: NaiveDateTime, to: NaiveDateTime) -> bool {
    from.date()
        .checked_add_months(chrono::Months::new(12))
        .is_some_and(|limit| to.date() > limit)
}

/// A stored document as Bling reads it back: "529.982.247-25", "29.860.598/0001-70" (also for
/// the alphanumeric CNPJ) ([VCR], [OAS], [U1]); anything else as stored.
pub(crate) fn format_document(doc: &str) -> String {
    let c: Vec<char> = doc.chars().collect();
    let s = |a: usize, b: usize| c[a..b].iter().collect::<String>();
    match document_kind(doc) {
        Some(Document::Cpf) => format!("{}.{}.{}-{}", s(0, 3), s(3, 6), s(6, 9), s(9, 11)),
        Some(Document::Cnpj) => format!(
            "{}.{}.{}/{}-{}",
            s(0, 2),
            s(2, 5),
            s(5, 8),
            s(8, 12),
            s(12, 14)
        ),
        None => doc.to_string(),
    }
}

/// A phone as Bling reads it back: "(51) 99269-6163", "(11) 3333-4444" ([U1]); numbers of other
/// lengths are returned as sent.
pub(crate) fn format_phone(raw: &str) -> String {
    let d: String = raw.chars().filter(char::is_ascii_digit).collect();
    match d.len() {
        10 => format!("({}) {}-{}", &d[..2], &d[2..6], &d[6..]),
        11 => format!("({}) {}-{}", &d[..2], &d[2..7], &d[7..]),
        _ => raw.trim().to_string(),
    }
}

/// A stored 8-digit CEP as a contato reads it back: "01310-100" (assumption from the [OAS]
/// contato example "95702-000").
pub(crate) fn format_cep(cep: &str) -> String {
    if cep_valid(cep) {
        format!("{}-{}", &cep[..5], &cep[5..])
    } else {
        cep.to_string()
    }
}

/// An empty date as Bling reads it back: "0000-00-00" ([VCR]).
pub(crate) fn date_or_zero(d: &str) -> String {
    if d.is_empty() {
        "0000-00-00".into()
    } else {
        d.to_string()
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
        assert_eq!(format_document("52998224725"), "529.982.247-25");
        assert_eq!(format_document("29860598000170"), "29.860.598/0001-70");
        assert_eq!(format_document("12ABC34501DE35"), "12.ABC.345/01DE-35");
        assert_eq!(format_phone("51992696163"), "(51) 99269-6163");
        assert_eq!(format_phone("(11) 3333-4444"), "(11) 3333-4444");
        assert_eq!(format_cep("01310100"), "01310-100");
    }

    #[test]
    fn strict_date_bounds() {
        assert!(parse_bound("2025-03-01", false).is_some());
        assert!(parse_bound("2025-03-01 10:00:00", false).is_some());
        assert!(parse_bound("2025-03-01T10:00:00", false).is_none());
        assert!(parse_bound("2025-03-01 10:00:00-03:00", false).is_none());
        assert!(parse_bound("2025-3-1", false).is_none());
        let d = |s| parse_bound(s, false).expect("date");
        assert!(!range_over_a_year(d("2024-01-01"), d("2025-01-01")));
        assert!(range_over_a_year(d("2024-01-01"), d("2025-01-02")));
    }
}
