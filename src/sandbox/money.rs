//! Money and quantities as fixed-point integers: Bling speaks decimal reais (80.5) on the wire,
//! but summing floats drifts, so values are held as integers and converted only at the edge.

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

/// Reais in centavos (1/100). Also used for percentages with two decimals.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Centavos(pub i64);

/// A quantity in 1/10,000 units (Bling accepts fractional quantities, e.g. 1.5 kg).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Quantity(pub i64);

const QTY_SCALE: i64 = 10_000;

impl Centavos {
    /// `self × pct / 100`, where `pct` is a percentage in hundredths (10.5% = 1050).
    pub fn percent(self, pct: Centavos) -> Centavos {
        let product = i128::from(self.0) * i128::from(pct.0);
        let rounded = (product + 5_000) / 10_000;
        Centavos(i64::try_from(rounded).unwrap_or(i64::MAX))
    }
}

fn to_scaled(v: f64, scale: i64) -> Option<i64> {
    if !v.is_finite() {
        return None;
    }
    let scaled = (v * scale as f64).round();
    if scaled.abs() > 9.0e15 {
        return None;
    }
    Some(scaled as i64)
}

struct ScaledVisitor(i64);

impl Visitor<'_> for ScaledVisitor {
    type Value = i64;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a decimal number")
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<i64, E> {
        to_scaled(v, self.0).ok_or_else(|| E::custom("number out of range"))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<i64, E> {
        v.checked_mul(self.0)
            .ok_or_else(|| E::custom("number out of range"))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<i64, E> {
        i64::try_from(v)
            .ok()
            .and_then(|v| v.checked_mul(self.0))
            .ok_or_else(|| E::custom("number out of range"))
    }

    // Some integrators send "80.50" as a string; accepting it is kinder than a type error.
    fn visit_str<E: de::Error>(self, v: &str) -> Result<i64, E> {
        let parsed: f64 = v
            .trim()
            .replace(',', ".")
            .parse()
            .map_err(|_| E::custom("not a number"))?;
        self.visit_f64(parsed)
    }
}

impl<'de> Deserialize<'de> for Centavos {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ScaledVisitor(100)).map(Centavos)
    }
}

impl Serialize for Centavos {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(self.0 as f64 / 100.0)
    }
}

impl<'de> Deserialize<'de> for Quantity {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ScaledVisitor(QTY_SCALE)).map(Quantity)
    }
}

impl Serialize for Quantity {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(self.0 as f64 / QTY_SCALE as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_float_drift() {
        let c: Centavos = serde_json::from_str("0.1").expect("number");
        let q: Quantity = serde_json::from_str("1.5").expect("number");
        assert_eq!((c, q), (Centavos(10), Quantity(15_000)));
        assert_eq!(serde_json::to_string(&Centavos(8050)).expect("ser"), "80.5");
        assert_eq!(Centavos(10000).percent(Centavos(1050)), Centavos(1050));
    }
}
