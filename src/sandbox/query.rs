//! Reading request input the way Bling does: query strings and form bodies with bracketed arrays
//! (`idsSituacoes[]=6&idsSituacoes[]=9`, which serde_urlencoded cannot collect), JSON bodies and
//! path ids, each failure answered as a Bling error rather than axum's plain-text rejection.

use crate::sandbox::codes;
use crate::sandbox::error::{ApiError, FieldError};
use crate::sandbox::validation::{parse_bound, range_over_a_year};
use chrono::NaiveDateTime;

/// Decoded `key=value` pairs, keys with `[]` / `[N]` suffixes folded to the bare name.
#[derive(Debug, Default)]
pub(crate) struct Params(Vec<(String, String)>);

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).and_then(|d| u8::try_from(d).ok())
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h * 16 + l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Percent-encodes a value for a redirect URL (RFC 3986 unreserved characters kept).
pub(crate) fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl Params {
    pub fn parse(raw: Option<&str>) -> Params {
        let Some(raw) = raw else {
            return Params::default();
        };
        let pairs = raw
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|pair| {
                let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                let key = percent_decode(k);
                let key = match key.find('[') {
                    Some(i) if key.ends_with(']') => key[..i].to_string(),
                    _ => key,
                };
                (key, percent_decode(v))
            })
            .collect();
        Params(pairs)
    }

    /// The last non-empty value of `key` (empty values mean "not filtered", as clients send them).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(k, v)| k == key && !v.is_empty())
            .map(|(_, v)| v.as_str())
    }

    pub fn all(&self, key: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, v)| k == key && !v.is_empty())
            .flat_map(|(_, v)| v.split(','))
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .collect()
    }

    /// A numeric parameter; a non-number is Bling's VALIDATION_ERROR, not a silent default.
    pub fn int(&self, key: &str, errors: &mut Vec<FieldError>) -> Option<i64> {
        let v = self.get(key)?;
        match v.trim().parse() {
            Ok(n) => Some(n),
            Err(_) => {
                errors.push(FieldError::new(
                    codes::PARAMETRO_NUMERICO,
                    key,
                    &format!("O parâmetro {key} deve ser numérico"),
                ));
                None
            }
        }
    }

    pub fn ints(&self, key: &str, errors: &mut Vec<FieldError>) -> Vec<i64> {
        let mut out = Vec::new();
        for v in self.all(key) {
            match v.parse() {
                Ok(n) => out.push(n),
                Err(_) => errors.push(FieldError::new(
                    codes::PARAMETRO_NUMERICO,
                    key,
                    &format!("O parâmetro {key} deve conter apenas números"),
                )),
            }
        }
        out
    }

    /// `pagina` (from 1) and `limite` (default 100, capped at 100) as an offset and a length.
    pub fn page(&self, errors: &mut Vec<FieldError>) -> (usize, usize) {
        let pagina = self.int("pagina", errors).unwrap_or(1).max(1);
        let limite = self.int("limite", errors).unwrap_or(100).clamp(1, 100);
        let offset = usize::try_from((pagina - 1).saturating_mul(limite)).unwrap_or(usize::MAX);
        (offset, usize::try_from(limite).unwrap_or(100))
    }

    /// A date filter bound (`Y-m-d` or `Y-m-d H:i:s` exactly), else an error on `key`.
    pub fn date(
        &self,
        key: &str,
        upper: bool,
        errors: &mut Vec<FieldError>,
    ) -> Option<NaiveDateTime> {
        let v = self.get(key)?;
        let parsed = parse_bound(v, upper);
        if parsed.is_none() {
            errors.push(FieldError::new(
                codes::DATA_FILTRO,
                key,
                "Data inválida: use o formato AAAA-MM-DD ou AAAA-MM-DD HH:MM:SS",
            ));
        }
        parsed
    }

    /// The `{prefix}Inicial`/`{prefix}Final` pair; a period over one year is refused.
    pub fn period(
        &self,
        prefix: &str,
        errors: &mut Vec<FieldError>,
    ) -> (Option<NaiveDateTime>, Option<NaiveDateTime>) {
        let from_key = format!("{prefix}Inicial");
        let to_key = format!("{prefix}Final");
        let from = self.date(&from_key, false, errors);
        let to = self.date(&to_key, true, errors);
        if let (Some(f), Some(t)) = (from, to) {
            if range_over_a_year(f, t) {
                errors.push(FieldError::new(
                    codes::PERIODO_SUPERIOR_A_UM_ANO,
                    &from_key,
                    "O período informado não pode ser superior a um ano",
                ));
            }
        }
        (from, to)
    }
}

/// Drops `null` members so `{"email": null}` reads like an omitted field, as Bling treats it.
fn strip_nulls(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Object(map) => {
            map.retain(|_, v| !v.is_null());
            map.values_mut().for_each(strip_nulls);
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(strip_nulls),
        _ => {}
    }
}

/// A JSON body as `T`; `message` is Bling's summary for the resource ("Não foi possível salvar…").
pub(crate) fn parse_body<T: serde::de::DeserializeOwned>(
    body: &[u8],
    message: &str,
) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::empty_body());
    }
    let mut value: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| ApiError::bad_body(message, &e.to_string()))?;
    if !value.is_object() {
        return Err(ApiError::bad_body(
            message,
            "o corpo deve ser um objeto JSON",
        ));
    }
    strip_nulls(&mut value);
    serde_json::from_value(value).map_err(|e| ApiError::bad_body(message, &e.to_string()))
}

/// A path id; anything but a positive integer names no resource.
pub(crate) fn parse_id(raw: &str, what: &str) -> Result<i64, ApiError> {
    raw.parse::<i64>()
        .ok()
        .filter(|id| *id > 0)
        .ok_or_else(|| ApiError::not_found(what))
}

/// Query-parameter errors as one `400 VALIDATION_ERROR`, each field in the module `namespace`.
pub(crate) fn check(mut errors: Vec<FieldError>, namespace: &str) -> Result<(), ApiError> {
    if errors.is_empty() {
        Ok(())
    } else {
        for e in &mut errors {
            e.namespace = namespace.to_string();
        }
        Err(ApiError::validation_described(
            "Parâmetros inválidos",
            "Ocorreu um erro ao validar os dados recebidos.",
            errors,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn brackets_and_encoding() {
        let p = Params::parse(Some(
            "idsSituacoes%5B%5D=6&idsSituacoes[]=9&pesquisa=Jo%C3%A3o+S&x[0]=1",
        ));
        assert_eq!(p.all("idsSituacoes"), vec!["6", "9"]);
        assert_eq!(p.get("pesquisa"), Some("João S"));
        assert_eq!(p.all("x"), vec!["1"]);
        assert_eq!(percent_encode("a b/c"), "a%20b%2Fc");
    }
}
