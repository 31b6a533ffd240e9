//! An amount to charge: integer minor units (as Stripe takes them) of a currency,
//! checked once. Duffel takes decimal strings, so the currency's exponent matters.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidMoney {
    #[error("amount must be a positive whole number of minor units, at most {MAX_AMOUNT}")]
    Amount,
    #[error("currency must be a three-letter ISO 4217 code Stripe can charge")]
    Currency,
}

/// A cap well above any fare, so a unit mistake (cents vs. dollars) is refused.
pub const MAX_AMOUNT: i64 = 10_000_000;

/// Stripe's zero-decimal currencies; the others it charges have two decimals
/// (its three-decimal ones are not in the client's currency list, so refused).
const ZERO_DECIMAL: &[&str] =
    &["bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga", "pyg", "rwf", "ugx", "vnd", "vuv", "xaf", "xof", "xpf"];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Money {
    minor: i64,
    currency: String,
}

impl Money {
    pub fn new(amount: i64, currency: &str) -> Result<Self, InvalidMoney> {
        if !(1..=MAX_AMOUNT).contains(&amount) {
            return Err(InvalidMoney::Amount);
        }
        let currency = currency.to_ascii_lowercase();
        if currency.len() != 3
            || !currency.bytes().all(|b| b.is_ascii_lowercase())
            || matches!(currency.parse::<stripe_types::Currency>(), Ok(stripe_types::Currency::Unknown(_)) | Err(_))
        {
            return Err(InvalidMoney::Currency);
        }
        Ok(Self { minor: amount, currency })
    }

    pub fn minor_units(&self) -> i64 {
        self.minor
    }

    /// Lower case, as Stripe writes it.
    pub fn currency(&self) -> &str {
        &self.currency
    }

    fn exponent(&self) -> u32 {
        if ZERO_DECIMAL.contains(&self.currency.as_str()) {
            0
        } else {
            2
        }
    }

    /// The amount as a decimal string in major units ("123.45"), as Duffel writes it.
    pub fn decimal(&self) -> String {
        let exponent = self.exponent();
        if exponent == 0 {
            return self.minor.to_string();
        }
        let scale = 10_i64.pow(exponent);
        format!("{}.{:0width$}", self.minor / scale, self.minor % scale, width = exponent as usize)
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.decimal(), self.currency.to_ascii_uppercase())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_follow_the_currency_exponent() {
        assert_eq!(Money::new(12345, "usd").unwrap().decimal(), "123.45");
        assert_eq!(Money::new(5, "EUR").unwrap().decimal(), "0.05");
        assert_eq!(Money::new(12345, "jpy").unwrap().decimal(), "12345");
        assert_eq!(Money::new(12345, "kwd"), Err(InvalidMoney::Currency), "three decimals: not chargeable here");
        assert_eq!(Money::new(100, "GBP").unwrap().to_string(), "1.00 GBP");
    }

    #[test]
    fn bad_amounts_and_currencies_are_refused() {
        for amount in [0, -1, MAX_AMOUNT + 1] {
            assert_eq!(Money::new(amount, "usd"), Err(InvalidMoney::Amount), "{amount}");
        }
        for currency in ["", "us", "usdd", "u$d", "zzz", "ÜSD"] {
            assert_eq!(Money::new(100, currency), Err(InvalidMoney::Currency), "{currency}");
        }
        assert_eq!(Money::new(100, "USD").unwrap().currency(), "usd");
    }
}
