//! Money in integer centavos. Floating point never touches an amount: Bling wants reais as a
//! decimal number, and the conversion happens once, at the edge, from an exact integer.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::iter::Sum;

/// A non-negative amount of Brazilian centavos (R$ 0,01).
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Centavos(pub u64);

impl Centavos {
    pub const ZERO: Centavos = Centavos(0);

    /// The largest amount accepted anywhere in an invoice (a unit price, a discount, a line, an
    /// installment, the total): R$ 99.999.999,99. It fits the NF-e's value fields (13 integer
    /// digits and 2 decimals) with room to spare, is exact as a double in Bling's JSON (below
    /// 2^53), and no pet shop's invoice comes near it; a larger figure is a bug in the sender.
    pub const MAX: Centavos = Centavos(9_999_999_999);

    pub fn checked_add(self, other: Centavos) -> Option<Centavos> {
        self.0.checked_add(other.0).map(Centavos)
    }

    pub fn checked_sub(self, other: Centavos) -> Option<Centavos> {
        self.0.checked_sub(other.0).map(Centavos)
    }

    pub fn checked_mul(self, quantity: u32) -> Option<Centavos> {
        self.0.checked_mul(u64::from(quantity)).map(Centavos)
    }

    /// The amount in reais, as Bling's JSON wants it (`80.5`). Exact for every amount below
    /// 2^53 centavos, i.e. any invoice a pet shop can issue.
    pub fn as_reais(self) -> f64 {
        self.0 as f64 / 100.0
    }

    /// Parses reais as Bling sends them back, rounding to the nearest centavo.
    pub fn from_reais(reais: f64) -> Option<Centavos> {
        if !reais.is_finite() || reais < 0.0 {
            return None;
        }
        Some(Centavos((reais * 100.0).round() as u64))
    }
}

impl fmt::Display for Centavos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "R$ {},{:02}", self.0 / 100, self.0 % 100)
    }
}

impl Sum for Centavos {
    fn sum<I: Iterator<Item = Centavos>>(iter: I) -> Centavos {
        Centavos(iter.map(|c| c.0).sum())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reais_conversion_is_exact_for_cents() {
        assert_eq!(Centavos(8050).as_reais(), 80.5);
        assert_eq!(Centavos::from_reais(80.5), Some(Centavos(8050)));
        assert_eq!(Centavos::from_reais(0.29), Some(Centavos(29)));
        assert_eq!(Centavos::from_reais(-1.0), None);
        assert_eq!(Centavos(123456).to_string(), "R$ 1234,56");
    }

    #[test]
    fn the_cap_is_exact_in_reais() {
        assert_eq!(Centavos::MAX.to_string(), "R$ 99999999,99");
        assert_eq!(Centavos::MAX.as_reais(), 99_999_999.99);
        assert_eq!(Centavos::from_reais(99_999_999.99), Some(Centavos::MAX));
    }

    #[test]
    fn arithmetic_refuses_overflow() {
        assert_eq!(Centavos(u64::MAX).checked_add(Centavos(1)), None);
        assert_eq!(Centavos(1).checked_sub(Centavos(2)), None);
        assert_eq!(Centavos(250).checked_mul(3), Some(Centavos(750)));
    }
}
