//! The version of a consent text, as the app names the text it showed
//! (`card-mit-2026-12`): what a consent record says the traveler agreed to.

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("text_version must be 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit")]
pub struct InvalidConsentVersion;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsentVersion(String);

impl ConsentVersion {
    pub fn parse(text: &str) -> Result<Self, InvalidConsentVersion> {
        let valid = (1..=64).contains(&text.len())
            && text.as_bytes()[0].is_ascii_alphanumeric()
            && text.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        valid.then(|| Self(text.to_owned())).ok_or(InvalidConsentVersion)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_short_plain_names() {
        assert_eq!(
            ConsentVersion::parse("card-mit-2026.12_v1").map(|v| v.as_str().to_owned()),
            Ok("card-mit-2026.12_v1".into())
        );
        for bad in ["", "-x", "a b", "ä", &"x".repeat(65)] {
            assert_eq!(ConsentVersion::parse(bad), Err(InvalidConsentVersion), "{bad:?}");
        }
    }
}
