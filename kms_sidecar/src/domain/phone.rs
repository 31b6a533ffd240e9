//! A traveler's phone number, parsed and normalised to E.164 by libphonenumber's
//! rules (the `phonenumber` crate: numbering plans, not a regex), and the code
//! Twilio Verify sent to it.

use secrecy::{ExposeSecret, SecretString};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidPhone {
    #[error("phone_number must be in international format, starting with + and the country code")]
    NotInternational,
    #[error("phone_number is not a valid number for any country's numbering plan")]
    NotANumber,
    #[error("code must be 4 to 10 digits")]
    BadCode,
}

/// A valid phone number in E.164 form (`+351912345678`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhoneNumber(String);

impl PhoneNumber {
    /// Any common international spelling (`+351 912 345 678`, `+1 (415) 555-0100`);
    /// no country is assumed, so a national form without `+` is refused.
    pub fn parse(input: &str) -> Result<Self, InvalidPhone> {
        let input = input.trim();
        if !input.starts_with('+') || input.len() > 32 {
            return Err(InvalidPhone::NotInternational);
        }
        let number = phonenumber::parse(None, input).map_err(|_| InvalidPhone::NotANumber)?;
        if !phonenumber::is_valid(&number) {
            return Err(InvalidPhone::NotANumber);
        }
        Ok(Self(number.format().mode(phonenumber::Mode::E164).to_string()))
    }

    pub fn as_e164(&self) -> &str {
        &self.0
    }
}

/// A verification code as the traveler typed it: digits only. It is a secret
/// while it is valid, so it never prints.
#[derive(Clone)]
pub struct VerificationCode(SecretString);

impl VerificationCode {
    pub fn parse(input: &str) -> Result<Self, InvalidPhone> {
        let code = input.trim();
        if !(4..=10).contains(&code.len()) || !code.bytes().all(|b| b.is_ascii_digit()) {
            return Err(InvalidPhone::BadCode);
        }
        Ok(Self(SecretString::from(code.to_owned())))
    }

    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

impl std::fmt::Debug for VerificationCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("VerificationCode([redacted])")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn international_spellings_normalise_to_e164() {
        for (input, e164) in [
            ("+351 912 345 678", "+351912345678"),
            ("+1 (415) 555-2671", "+14155552671"),
            ("  +44 20 7946 0958 ", "+442079460958"),
        ] {
            assert_eq!(PhoneNumber::parse(input).map(|p| p.as_e164().to_owned()), Ok(e164.to_owned()), "{input}");
        }
    }

    #[test]
    fn national_forms_and_impossible_numbers_are_refused() {
        assert_eq!(PhoneNumber::parse("912 345 678"), Err(InvalidPhone::NotInternational));
        assert_eq!(PhoneNumber::parse("+1 555"), Err(InvalidPhone::NotANumber));
        assert_eq!(PhoneNumber::parse("+999 123456789"), Err(InvalidPhone::NotANumber));
        assert_eq!(PhoneNumber::parse("+44 abc"), Err(InvalidPhone::NotANumber));
        assert_eq!(PhoneNumber::parse(&format!("+{}", "1".repeat(40))), Err(InvalidPhone::NotInternational));
    }

    #[test]
    fn codes_are_digits_and_never_print() {
        assert!(VerificationCode::parse("123456").is_ok());
        for bad in ["123", "12345678901", "12a456", ""] {
            assert!(VerificationCode::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(format!("{:?}", VerificationCode::parse("987654").unwrap()), "VerificationCode([redacted])");
    }
}
