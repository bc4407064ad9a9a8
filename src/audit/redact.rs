//! Redaction of personal data (`--redact-pii`), and removal of secrets (always).
//!
//! A personal value is replaced by `pii:` followed by the first 16 hex digits of
//! HMAC-SHA256(salt, value) (HMAC written here over `sha2`, RFC 2104). Equal values give equal
//! digests within one export, so an auditor can still see that two events concern the same
//! CPF, without reading it; the salt is random per export (or given by the operator) and is
//! never written anywhere, so a digest cannot be reversed by hashing every possible CPF.
//! Before hashing, CPF/CNPJ are reduced to their bare characters (`52998224725`), e-mails to
//! lower case and phones to their digits, so a formatted and a bare spelling link up.
//!
//! What is replaced:
//! - by key, anywhere in a payload: `name`, `tax_id`, `email`, `phone`, `mobile` (and Bling's
//!   `nome`, `numeroDocumento`, `telefone`, `celular`, `cpf`, `cnpj`, …); inside an `address`
//!   (or `endereco`) object every part but the state (`state`/`uf`, which decides the tax and
//!   identifies nobody): street, number, complement, district, city, CEP;
//! - in Bling call paths: the values of personal query parameters (`numeroDocumento=…`);
//! - in every other string of the payload, and in the aggregate id and metadata (a shop may use
//!   a CPF as its customer id): CPF/CNPJ with valid check digits (formatted or not), e-mail
//!   addresses, Brazilian phone numbers written as such (`(11) 98888-7777`), and any name,
//!   e-mail, phone, document, street, district, complement or CEP already met in a profile
//!   earlier in the same export (Bling messages quote values back).
//!
//! Secrets never belong in the log; should one get there, values under keys like
//! `access_token`, `refresh_token`, `client_secret`, `password` are replaced by
//! [`SECRET_REMOVED`] in every export, redacted or not.

use std::collections::HashMap;

use aggregates::tax_id::TaxId;
use rand::RngCore;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::record;

/// How the manifest names the method.
pub const METHOD: &str = "hmac-sha256";
/// How the manifest describes a digest.
pub const DIGEST_FORMAT: &str = "pii:<first 16 hex digits of HMAC-SHA256(salt, value)>";
/// What a secret is replaced with.
pub const SECRET_REMOVED: &str = "[secret removed]";

/// Keys whose whole value is personal.
const PII_KEYS: [&str; 16] = [
    "name",
    "nome",
    "fantasia",
    "tax_id",
    "numerodocumento",
    "numero_documento",
    "cpf",
    "cnpj",
    "cpf_cnpj",
    "document",
    "email",
    "emailnotafiscal",
    "phone",
    "mobile",
    "telefone",
    "celular",
];

/// Keys holding an address object.
const ADDRESS_KEYS: [&str; 2] = ["address", "endereco"];
/// Address parts kept in clear.
const ADDRESS_KEPT: [&str; 2] = ["state", "uf"];
/// Query parameters of Bling paths whose value is personal.
const PII_PARAMS: [&str; 12] = [
    "numerodocumento",
    "numero_documento",
    "documento",
    "cpf",
    "cnpj",
    "cpf_cnpj",
    "nome",
    "name",
    "email",
    "telefone",
    "celular",
    "fone",
];
/// Keys whose value is a Bling call path.
const PATH_KEYS: [&str; 2] = ["path", "call"];

/// Known values shorter than this are not searched in free text (a house number would match
/// everywhere).
const MIN_KNOWN_LEN: usize = 4;
/// At most this many known values are remembered per export (memory stays bounded; beyond it,
/// values quoted in free text are still caught by the CPF/CNPJ, e-mail and phone patterns).
const MAX_KNOWN: usize = 100_000;

/// HMAC-SHA256 (RFC 2104).
pub fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    const BLOCK: usize = 64;
    let mut block = [0u8; BLOCK];
    if key.len() > BLOCK {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let mut inner = Sha256::new();
    inner.update(block.map(|b| b ^ 0x36));
    inner.update(message);
    let inner = inner.finalize();
    let mut outer = Sha256::new();
    outer.update(block.map(|b| b ^ 0x5c));
    outer.update(inner);
    outer.finalize().into()
}

/// Where the salt came from (recorded in the manifest; the salt itself never is).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaltSource {
    Random,
    Supplied,
}

/// The secret that keys the digests of one export.
#[derive(Clone)]
pub struct Salt {
    bytes: Vec<u8>,
    pub source: SaltSource,
}

impl std::fmt::Debug for Salt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Salt({:?}, ***)", self.source)
    }
}

impl Salt {
    /// 32 random bytes.
    pub fn random() -> Salt {
        let mut bytes = vec![0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        Salt {
            bytes,
            source: SaltSource::Random,
        }
    }

    /// An operator's salt (`--salt`), used as its UTF-8 bytes.
    pub fn supplied(salt: &str) -> Salt {
        Salt {
            bytes: salt.as_bytes().to_vec(),
            source: SaltSource::Supplied,
        }
    }

    /// A salt derived from a key and a label (the HTTP export derives one per export id).
    pub fn derived(key: &[u8], label: &str) -> Salt {
        Salt {
            bytes: hmac_sha256(key, label.as_bytes()).to_vec(),
            source: SaltSource::Random,
        }
    }
}

/// Removes secrets from `value` in place; returns how many it removed.
pub fn remove_secrets(value: &mut Value) -> u64 {
    match value {
        Value::Object(map) => {
            let mut removed = 0;
            for (key, item) in map.iter_mut() {
                if is_secret_key(key) {
                    if !item.is_null() && item.as_str() != Some(SECRET_REMOVED) {
                        *item = Value::from(SECRET_REMOVED);
                        removed += 1;
                    }
                } else {
                    removed += remove_secrets(item);
                }
            }
            removed
        }
        Value::Array(items) => items.iter_mut().map(remove_secrets).sum(),
        _ => 0,
    }
}

fn is_secret_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase().replace('-', "_");
    const SECRET: [&str; 9] = [
        "access_token",
        "refresh_token",
        "id_token",
        "client_secret",
        "password",
        "secret",
        "api_key",
        "authorization",
        "code_verifier",
    ];
    SECRET
        .iter()
        .any(|s| key == *s || key.ends_with(&format!("_{s}")))
        || key == "accesstoken"
        || key == "refreshtoken"
        || key == "clientsecret"
}

/// Replaces personal data in records, remembering values across the records of one export.
pub struct Redactor {
    salt: Salt,
    /// Known values by their first [`MIN_KNOWN_LEN`] folded characters (see [`fold`]):
    /// (folded value, digest input).
    known: HashMap<[char; MIN_KNOWN_LEN], Vec<(Vec<char>, String)>>,
    known_count: usize,
    /// How many values were replaced so far.
    pub values_redacted: u64,
}

impl Redactor {
    pub fn new(salt: Salt) -> Redactor {
        Redactor {
            salt,
            known: HashMap::new(),
            known_count: 0,
            values_redacted: 0,
        }
    }

    pub fn salt_source(&self) -> SaltSource {
        self.salt.source
    }

    /// The digest of an already normalised value.
    pub fn digest(&self, value: &str) -> String {
        let mac = hmac_sha256(&self.salt.bytes, value.as_bytes());
        format!("pii:{}", &hex::encode(mac)[..16])
    }

    /// Redacts one record (see [`super::record::record_of`]) in place.
    pub fn redact_record(&mut self, record: &mut Map<String, Value>) {
        // The payload, and the profile the exporter read in clear beside a ciphertext
        // (`personal`, see `record`): values learnt from both are scrubbed everywhere.
        for key in ["payload", record::PERSONAL] {
            if let Some(value) = record.get(key) {
                self.learn(value);
            }
        }
        for key in ["payload", record::PERSONAL] {
            if let Some(value) = record.get_mut(key) {
                let mut value = value.take();
                self.redact_value(&mut value);
                record.insert(key.into(), value);
            }
        }
        if let Some(Value::String(id)) = record.get("aggregate_id") {
            if let Some(scrubbed) = self.scrub_text(id) {
                record.insert("aggregate_id".into(), Value::from(scrubbed));
            }
        }
        if let Some(Value::Object(metadata)) = record.get_mut("metadata") {
            let mut metadata = std::mem::take(metadata);
            for (key, value) in metadata.iter_mut() {
                if key != "tenant" && key != "recorded_at" {
                    self.scrub_strings(value);
                }
            }
            record.insert("metadata".into(), Value::Object(metadata));
        }
    }

    /// Pass 1: remembers the personal values of a payload, so that free text anywhere later
    /// (this record included) can be scrubbed of them.
    fn learn(&mut self, value: &Value) {
        match value {
            Value::Object(map) => {
                for (k, v) in map {
                    let lower = k.to_ascii_lowercase();
                    if PII_KEYS.contains(&lower.as_str()) {
                        self.learn_leaves(v, &lower);
                    } else if ADDRESS_KEYS.contains(&lower.as_str()) && v.is_object() {
                        if let Value::Object(address) = v {
                            for (part, pv) in address {
                                let part = part.to_ascii_lowercase();
                                // Not the city (a common word in messages) nor the house
                                // number (it would match amounts and ids).
                                if !ADDRESS_KEPT.contains(&part.as_str())
                                    && !["city", "municipio", "number", "numero"]
                                        .contains(&part.as_str())
                                {
                                    self.learn_leaves(pv, &part);
                                }
                            }
                        }
                    } else {
                        self.learn(v);
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|i| self.learn(i)),
            _ => {}
        }
    }

    fn learn_leaves(&mut self, value: &Value, key: &str) {
        match value {
            Value::String(s) => {
                let input = normalise(key, s);
                self.remember(s, &input);
                if input != *s {
                    self.remember(&input, &input);
                }
            }
            Value::Array(items) => items.iter().for_each(|i| self.learn_leaves(i, key)),
            Value::Object(map) => map.values().for_each(|v| self.learn_leaves(v, key)),
            _ => {}
        }
    }

    fn remember(&mut self, text: &str, input: &str) {
        let folded: Vec<char> = text.trim().chars().map(fold).collect();
        if folded.len() < MIN_KNOWN_LEN || self.known_count >= MAX_KNOWN {
            return;
        }
        let mut prefix = [' '; MIN_KNOWN_LEN];
        prefix.copy_from_slice(&folded[..MIN_KNOWN_LEN]);
        let bucket = self.known.entry(prefix).or_default();
        if bucket.iter().any(|(v, _)| *v == folded) {
            return;
        }
        bucket.push((folded, input.to_string()));
        // Longest first, so "Rua das Flores 42" wins over "Rua das Flores".
        bucket.sort_by_key(|b| std::cmp::Reverse(b.0.len()));
        self.known_count += 1;
    }

    /// Pass 2: replaces personal values.
    fn redact_value(&mut self, value: &mut Value) {
        match value {
            Value::Object(map) => {
                for (k, v) in map.iter_mut() {
                    let lower = k.to_ascii_lowercase();
                    if PII_KEYS.contains(&lower.as_str()) {
                        self.digest_leaves(v, &lower);
                    } else if ADDRESS_KEYS.contains(&lower.as_str()) && v.is_object() {
                        if let Value::Object(address) = v {
                            for (part, pv) in address.iter_mut() {
                                let part = part.to_ascii_lowercase();
                                if ADDRESS_KEPT.contains(&part.as_str()) {
                                    continue;
                                }
                                self.digest_leaves(pv, &part);
                            }
                        }
                    } else if PATH_KEYS.contains(&lower.as_str()) && v.is_string() {
                        if let Value::String(path) = v {
                            *path = self.redact_path(path);
                        }
                    } else {
                        self.redact_value(v);
                    }
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|i| self.redact_value(i)),
            Value::String(s) => {
                if let Some(scrubbed) = self.scrub_text(s) {
                    *s = scrubbed;
                }
            }
            _ => {}
        }
    }

    fn digest_leaves(&mut self, value: &mut Value, key: &str) {
        match value {
            Value::String(s) if !s.is_empty() => {
                *s = self.digest(&normalise(key, s));
                self.values_redacted += 1;
            }
            Value::Number(n) => {
                *value = Value::from(self.digest(&normalise(key, &n.to_string())));
                self.values_redacted += 1;
            }
            Value::Array(items) => items.iter_mut().for_each(|i| self.digest_leaves(i, key)),
            Value::Object(map) => map.values_mut().for_each(|v| self.digest_leaves(v, key)),
            _ => {}
        }
    }

    fn scrub_strings(&mut self, value: &mut Value) {
        match value {
            Value::String(s) => {
                if let Some(scrubbed) = self.scrub_text(s) {
                    *s = scrubbed;
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|i| self.scrub_strings(i)),
            Value::Object(map) => map.values_mut().for_each(|v| self.scrub_strings(v)),
            _ => {}
        }
    }

    /// A Bling path: personal query values digested whole, the rest scrubbed as free text.
    pub fn redact_path(&mut self, path: &str) -> String {
        let (route, query) = match path.split_once('?') {
            Some((route, query)) => (route, Some(query)),
            None => (path, None),
        };
        let mut out = self.scrub_text(route).unwrap_or_else(|| route.to_string());
        if let Some(query) = query {
            out.push('?');
            for (i, pair) in query.split('&').enumerate() {
                if i > 0 {
                    out.push('&');
                }
                match pair.split_once('=') {
                    Some((name, value)) if !value.is_empty() => {
                        let param = percent_decode(name).to_ascii_lowercase();
                        out.push_str(name);
                        out.push('=');
                        if PII_PARAMS.contains(&param.as_str()) {
                            let decoded = percent_decode(value);
                            out.push_str(&self.digest(&normalise(&param, &decoded)));
                            self.values_redacted += 1;
                        } else {
                            let decoded = percent_decode(value);
                            match self.scrub_text(&decoded) {
                                Some(scrubbed) => out.push_str(&scrubbed),
                                None => out.push_str(value),
                            }
                        }
                    }
                    _ => out.push_str(pair),
                }
            }
        }
        out
    }

    /// Free text with personal values replaced, or `None` when it holds none.
    pub fn scrub_text(&mut self, text: &str) -> Option<String> {
        let mut spans = Vec::new();
        self.known_spans(text, &mut spans);
        tax_id_spans(text, &mut spans);
        email_spans(text, &mut spans);
        phone_spans(text, &mut spans);
        if spans.is_empty() {
            return None;
        }
        // Earliest first, longest at equal starts; overlapping later spans are dropped.
        spans.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
        let mut out = String::with_capacity(text.len());
        let mut at = 0;
        for (start, end, input) in spans {
            if start < at {
                continue;
            }
            out.push_str(&text[at..start]);
            out.push_str(&self.digest(&input));
            self.values_redacted += 1;
            at = end;
        }
        out.push_str(&text[at..]);
        Some(out)
    }

    fn known_spans(&self, text: &str, spans: &mut Vec<(usize, usize, String)>) {
        if self.known.is_empty() {
            return;
        }
        let chars: Vec<(usize, char)> = text.char_indices().map(|(i, c)| (i, fold(c))).collect();
        let mut i = 0;
        while i + MIN_KNOWN_LEN <= chars.len() {
            let mut prefix = [' '; MIN_KNOWN_LEN];
            for (k, slot) in prefix.iter_mut().enumerate() {
                *slot = chars[i + k].1;
            }
            let found = self.known.get(&prefix).and_then(|bucket| {
                bucket.iter().find(|(value, _)| {
                    i + value.len() <= chars.len()
                        && chars[i..i + value.len()]
                            .iter()
                            .map(|(_, c)| c)
                            .eq(value.iter())
                })
            });
            match found {
                Some((value, input)) => {
                    let end = chars.get(i + value.len()).map_or(text.len(), |(b, _)| *b);
                    spans.push((chars[i].0, end, input.clone()));
                    i += value.len();
                }
                None => i += 1,
            }
        }
    }
}

/// A character as free text is compared with known values: lower case, without the accents of
/// Portuguese (Bling and people write "JOAO" for "João").
fn fold(c: char) -> char {
    let mut lower = c.to_lowercase();
    let c = match (lower.next(), lower.next()) {
        (Some(l), None) => l,
        _ => c,
    };
    match c {
        'á' | 'à' | 'â' | 'ã' | 'ä' => 'a',
        'é' | 'è' | 'ê' | 'ë' => 'e',
        'í' | 'ì' | 'î' | 'ï' => 'i',
        'ó' | 'ò' | 'ô' | 'õ' | 'ö' => 'o',
        'ú' | 'ù' | 'û' | 'ü' => 'u',
        'ç' => 'c',
        c => c,
    }
}

/// The form of a value that is hashed: documents bare and upper-case, e-mails lower-case,
/// phones and CEPs as digits; anything else trimmed.
fn normalise(key: &str, value: &str) -> String {
    let value = value.trim();
    match key {
        "tax_id" | "numerodocumento" | "numero_documento" | "documento" | "document" | "cpf"
        | "cnpj" | "cpf_cnpj" => match TaxId::parse(value) {
            Ok(tax_id) => tax_id.as_str().to_string(),
            Err(_) => value.to_string(),
        },
        "email" | "emailnotafiscal" => value.to_lowercase(),
        "phone" | "mobile" | "telefone" | "celular" | "fone" | "cep" => {
            let digits: String = value.chars().filter(char::is_ascii_digit).collect();
            if digits.is_empty() {
                value.to_string()
            } else {
                digits
            }
        }
        _ => value.to_string(),
    }
}

fn percent_decode(raw: &str) -> String {
    let bytes = raw.as_bytes();
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h * 16 + l);
                    i += 3;
                }
                _ => {
                    out.push(b'%');
                    i += 1;
                }
            },
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// CPF and CNPJ (check digits valid), bare or formatted, alphanumeric CNPJ included.
fn tax_id_spans(text: &str, spans: &mut Vec<(usize, usize, String)>) {
    let is_doc_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '/');
    for (start, end) in runs(text, is_doc_char) {
        let run = &text[start..end];
        if let Some(span) = tax_id_at(text, start, end) {
            spans.push(span);
            continue;
        }
        // Inside a longer run (a path, `CPF:529.982.247-25`), the digit-and-separator parts.
        let is_num_char = |c: char| c.is_ascii_digit() || matches!(c, '.' | '-' | '/');
        for (s, e) in runs(run, is_num_char) {
            if let Some(span) = tax_id_at(text, start + s, start + e) {
                spans.push(span);
            }
        }
    }
}

fn tax_id_at(text: &str, start: usize, end: usize) -> Option<(usize, usize, String)> {
    let trimmed_start = start
        + (text[start..end].len() - text[start..end].trim_start_matches(['.', '-', '/']).len());
    let trimmed_end = start + text[start..end].trim_end_matches(['.', '-', '/']).len();
    if trimmed_start >= trimmed_end {
        return None;
    }
    let candidate = &text[trimmed_start..trimmed_end];
    let bare = candidate
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .count();
    if bare != 11 && bare != 14 {
        return None;
    }
    TaxId::parse(candidate)
        .ok()
        .map(|t| (trimmed_start, trimmed_end, t.as_str().to_string()))
}

/// `local@domain.tld`.
fn email_spans(text: &str, spans: &mut Vec<(usize, usize, String)>) {
    let is_local = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+/=?^_`{|}~.-".contains(c);
    let is_domain = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-');
    for (at, _) in text.match_indices('@') {
        let start = text[..at]
            .char_indices()
            .rev()
            .take_while(|(_, c)| is_local(*c))
            .last()
            .map(|(i, _)| i)
            .unwrap_or(at);
        let domain_len = text[at + 1..].chars().take_while(|c| is_domain(*c)).count();
        let end = at + 1 + domain_len;
        let domain = text[at + 1..end].trim_end_matches(['.', '-']);
        let end = at + 1 + domain.len();
        if start < at && domain.contains('.') && !domain.starts_with('.') {
            spans.push((start, end, text[start..end].to_lowercase()));
        }
    }
}

/// Brazilian phone numbers as people write them: `(11) 98888-7777`, `+55 11 98888-7777`,
/// `11 3333-4444`. Bare digit runs are left to the known values: they are too easily ids.
fn phone_spans(text: &str, spans: &mut Vec<(usize, usize, String)>) {
    let is_phone_char = |c: char| c.is_ascii_digit() || matches!(c, '(' | ')' | '+' | '-' | ' ');
    for (start, end) in runs(text, is_phone_char) {
        let run = text[start..end].trim();
        let offset = start + (text[start..end].len() - text[start..end].trim_start().len());
        // Try every start inside the run where a phone could begin.
        let mut i = 0;
        while i < run.len() {
            if let Some(len) = phone_at(&run[i..]) {
                let digits: String = run[i..i + len]
                    .chars()
                    .filter(char::is_ascii_digit)
                    .collect();
                spans.push((offset + i, offset + i + len, digits));
                i += len;
            } else {
                i += 1;
            }
        }
    }
}

/// The length of a phone number at the start of `s`, if one starts there.
fn phone_at(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    let mut i = 0;
    let skip_spaces = |i: &mut usize| {
        while *i < b.len() && b[*i] == b' ' {
            *i += 1;
        }
    };
    let digits = |i: &mut usize, n: usize| -> bool {
        if *i + n <= b.len() && b[*i..*i + n].iter().all(u8::is_ascii_digit) {
            *i += n;
            true
        } else {
            false
        }
    };
    // Optional country code.
    if b.get(i) == Some(&b'+') {
        i += 1;
        if !digits(&mut i, 2) {
            return None;
        }
        skip_spaces(&mut i);
    }
    // Area code: "(11)" or "11 " (the bare form needs a space to tell it from an id).
    let formatted_area = if b.get(i) == Some(&b'(') {
        i += 1;
        if !digits(&mut i, 2) || b.get(i) != Some(&b')') {
            return None;
        }
        i += 1;
        true
    } else {
        if !digits(&mut i, 2) || b.get(i) != Some(&b' ') {
            return None;
        }
        false
    };
    skip_spaces(&mut i);
    // Subscriber: 4 or 5 digits, '-' or ' ', 4 digits.
    let before = i;
    while i < b.len() && b[i].is_ascii_digit() {
        i += 1;
    }
    let head = i - before;
    if !(4..=5).contains(&head) {
        return None;
    }
    if matches!(b.get(i), Some(b'-') | Some(b' ')) {
        i += 1;
    } else if !formatted_area {
        return None;
    }
    if !digits(&mut i, 4) || b.get(i).is_some_and(u8::is_ascii_digit) {
        return None;
    }
    Some(i)
}

/// Maximal runs of characters matching `keep`, as byte ranges.
fn runs(text: &str, keep: impl Fn(char) -> bool) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, c) in text.char_indices() {
        match (keep(c), start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                out.push((s, i));
                start = None;
            }
            _ => {}
        }
    }
    if let Some(s) = start {
        out.push((s, text.len()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn redactor() -> Redactor {
        Redactor::new(Salt::supplied("test-salt"))
    }

    #[test]
    fn hmac_matches_rfc_4231() {
        // Test case 2.
        assert_eq!(
            hex::encode(hmac_sha256(b"Jefe", b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        // Test case 6: a key longer than the block.
        assert_eq!(
            hex::encode(hmac_sha256(
                &[0xaa; 131],
                b"Test Using Larger Than Block-Size Key - Hash Key First"
            )),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }

    #[test]
    fn digests_are_keyed_and_short() {
        let a = Redactor::new(Salt::supplied("one"));
        let b = Redactor::new(Salt::supplied("two"));
        assert_eq!(a.digest("52998224725"), a.digest("52998224725"));
        assert_ne!(a.digest("52998224725"), b.digest("52998224725"));
        assert!(a.digest("x").starts_with("pii:"));
        assert_eq!(a.digest("x").len(), 4 + 16);
        assert_ne!(Salt::random().bytes, Salt::random().bytes);
    }

    fn record(payload: Value) -> Map<String, Value> {
        let Value::Object(map) = json!({
            "aggregate_id": "shop-a/c1", "payload": payload,
            "metadata": {"tenant": "shop-a", "actor": "ingest:petshop-a", "correlation_id": "r1"}
        }) else {
            unreachable!()
        };
        map
    }

    #[test]
    fn a_profile_keeps_its_shape_and_loses_its_values() {
        let mut r = redactor();
        let mut rec = record(
            json!({"CustomerRegistered": {"tenant": "shop-a", "customer_id": "c1",
            "profile": {"name": "Maria Souza", "tax_id": "52998224725", "email": "Maria@Example.com.br",
            "phone": "1133334444", "mobile": "11988887777",
            "address": {"street": "Rua das Flores", "number": "42", "complement": null,
            "district": "Centro", "city": "São Paulo", "state": "SP", "cep": "01001000"}}}}),
        );
        r.redact_record(&mut rec);
        let p = &rec["payload"]["CustomerRegistered"]["profile"];
        assert_eq!(p["tax_id"], r.digest("52998224725").as_str());
        assert_eq!(p["email"], r.digest("maria@example.com.br").as_str());
        assert_eq!(p["mobile"], r.digest("11988887777").as_str());
        assert_eq!(p["address"]["state"], "SP");
        assert_eq!(p["address"]["complement"], Value::Null);
        assert_eq!(p["address"]["cep"], r.digest("01001000").as_str());
        assert_eq!(rec["payload"]["CustomerRegistered"]["customer_id"], "c1");
        let text = serde_json::to_string(&rec).unwrap();
        for pii in [
            "Maria",
            "52998224725",
            "xample",
            "1133334444",
            "98888",
            "Flores",
            "Centro",
            "01001000",
            "Paulo",
        ] {
            assert!(!text.contains(pii), "{pii} left in {text}");
        }
    }

    #[test]
    fn bling_paths_and_messages_are_scrubbed_and_link_to_the_profile() {
        let mut r = redactor();
        let mut first = record(
            json!({"CustomerRegistered": {"profile": {"name": "João Pereira",
            "tax_id": "52998224725", "email": "joao@example.com", "mobile": "11988887777",
            "address": {"street": "Avenida Paulista", "number": "1000", "district": "Bela Vista",
            "city": "São Paulo", "state": "SP", "cep": "01310100"}}}}),
        );
        r.redact_record(&mut first);
        let mut failed = record(json!({"ContactSyncFailed": {
            "cause": {"kind": "bling_rejected", "status": 400, "error_type": "VALIDATION_ERROR",
                "message": "Contato JOÃO PEREIRA já cadastrado com o CPF 529.982.247-25",
                "reason": "joao pereira",
                "description": "e-mail joao@example.com, fone (11) 98888-7777, Avenida Paulista",
                "bling_fields": [{"code": 1, "element": "numeroDocumento", "msg": "CPF 52998224725 inválido"}]},
            "profile_version": 1,
            "calls": [{"at": "2026-11-25T12:00:00Z", "method": "GET",
                "path": "/contatos?numeroDocumento=529.982.247-25&pagina=1", "status": 200,
                "latency_ms": 12, "error_type": null, "error_message": null},
                {"at": "2026-11-25T12:00:01Z", "method": "GET", "path": "/contatos/12345678901?x=1",
                "status": 404, "latency_ms": 3, "error_type": null,
                "error_message": "Contato com e-mail joao@example.com não encontrado"}]}}));
        r.redact_record(&mut failed);
        let text = serde_json::to_string(&failed).unwrap();
        for pii in [
            "52998224725",
            "529.982.247-25",
            "joao@",
            "98888",
            "Paulista",
            "PEREIRA",
            "pereira",
        ] {
            assert!(!text.contains(pii), "{pii} left in {text}");
        }
        let cpf = r.digest("52998224725");
        let calls = &failed["payload"]["ContactSyncFailed"]["calls"];
        assert_eq!(
            calls[0]["path"],
            format!("/contatos?numeroDocumento={cpf}&pagina=1")
        );
        // A Bling id that is not a valid CPF stays readable.
        assert_eq!(calls[1]["path"], "/contatos/12345678901?x=1");
        let message = failed["payload"]["ContactSyncFailed"]["cause"]["message"]
            .as_str()
            .unwrap();
        assert!(message.ends_with(&format!("com o CPF {cpf}")), "{message}");
        assert!(message.starts_with("Contato pii:"), "{message}");
        // Known values keep the case-insensitive link to the profile's digest of the name.
        assert!(message.contains(&r.digest("João Pereira")), "{message}");
        assert_eq!(
            failed["payload"]["ContactSyncFailed"]["cause"]["bling_fields"][0]["element"],
            "numeroDocumento"
        );
    }

    #[test]
    fn free_text_patterns_without_a_profile() {
        let mut r = redactor();
        let text = "CNPJ 11.222.333/0001-81, cpf:52998224725; tel +55 11 3333-4444 ou (21)99999-8888; a@b.co. \
                    pedido 12345678901 de 2026-11-25 12:00 R$ 170,00";
        let out = r.scrub_text(text).unwrap();
        for pii in [
            "11.222.333/0001-81",
            "52998224725",
            "3333-4444",
            "99999-8888",
            "a@b.co",
        ] {
            assert!(!out.contains(pii), "{pii} left in {out}");
        }
        assert!(
            out.contains("pedido 12345678901 de 2026-11-25 12:00 R$ 170,00"),
            "{out}"
        );
        assert!(out.contains(&r.digest("11222333000181")));
        assert!(
            out.contains(&format!("cpf:{}", r.digest("52998224725"))),
            "{out}"
        );
        assert!(out.ends_with("R$ 170,00"));
        assert_eq!(r.scrub_text("nothing personal: order 42 at 12:00"), None);
    }

    #[test]
    fn an_id_that_is_a_cpf_is_scrubbed_everywhere() {
        let mut r = redactor();
        let mut rec = record(json!({"InvoiceBilled": {"customer_id": "52998224725"}}));
        rec.insert("aggregate_id".into(), json!("shop-a/52998224725"));
        rec.insert(
            "metadata".into(),
            json!({"tenant": "shop-a", "causation_id": "Customer/shop-a/52998224725#1"}),
        );
        r.redact_record(&mut rec);
        assert!(!serde_json::to_string(&rec).unwrap().contains("52998224725"));
        assert_eq!(rec["metadata"]["tenant"], "shop-a");
    }

    #[test]
    fn secrets_are_removed_wherever_they_hide() {
        let mut v = json!({"a": {"access_token": "x", "refresh_token": "y", "client_secret": "z",
            "token_fingerprint": "ab12", "list": [{"Authorization": "Bearer q"}], "password": null}});
        assert_eq!(remove_secrets(&mut v), 4);
        assert_eq!(v["a"]["access_token"], SECRET_REMOVED);
        assert_eq!(v["a"]["list"][0]["Authorization"], SECRET_REMOVED);
        assert_eq!(v["a"]["token_fingerprint"], "ab12");
        assert_eq!(remove_secrets(&mut v), 0);
    }

    #[test]
    fn phone_shapes() {
        assert_eq!(phone_at("(11) 98888-7777"), Some(15));
        assert_eq!(phone_at("(11)98888-7777"), Some(14));
        assert_eq!(phone_at("11 3333-4444"), Some(12));
        assert_eq!(phone_at("+55 11 98888 7777"), Some(17));
        assert_eq!(phone_at("2026-11-25"), None);
        assert_eq!(phone_at("11 2026"), None);
        assert_eq!(phone_at("12345678901"), None);
    }
}
