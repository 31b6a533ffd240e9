//! Stripe webhook signatures (`Stripe-Signature: t=<unix>,v1=<hex>[,v1=...]`):
//! HMAC-SHA256 of `"<t>.<raw body>"` under any configured endpoint secret (several
//! are valid while one is rotated), within a tolerance of the current time; and
//! what a signed event must look like before anything is done with it.

use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SignatureError {
    #[error("no Stripe-Signature header")]
    Missing,
    #[error("the Stripe-Signature header is malformed")]
    Malformed,
    #[error("the signature is older or newer than the tolerance allows")]
    OutsideTolerance,
    #[error("no configured secret produces this signature")]
    Mismatch,
}

impl SignatureError {
    /// The refusal's reason as metrics name it.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Missing => "missing",
            Self::Malformed => "malformed",
            Self::OutsideTolerance => "outside_tolerance",
            Self::Mismatch => "mismatch",
        }
    }
}

/// An event id as `stripe_events` stores it (the table's CHECK says the same):
/// `evt_` and letters, digits or underscores.
pub fn is_event_id(id: &str) -> bool {
    id.strip_prefix("evt_")
        .is_some_and(|rest| !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'))
}

/// Whether any string (or key) of the event holds a NUL character, which
/// PostgreSQL's jsonb cannot store.
pub fn holds_nul(value: &serde_json::Value) -> bool {
    use serde_json::Value;
    match value {
        Value::String(text) => text.contains('\0'),
        Value::Array(items) => items.iter().any(holds_nul),
        Value::Object(fields) => fields.iter().any(|(key, value)| key.contains('\0') || holds_nul(value)),
        _ => false,
    }
}

/// Checks `header` for `body` at time `now` (unix seconds).
pub fn verify(
    header: Option<&str>,
    body: &[u8],
    secrets: &[SecretString],
    tolerance_secs: i64,
    now: i64,
) -> Result<(), SignatureError> {
    let header = header.ok_or(SignatureError::Missing)?;
    let mut timestamp: Option<i64> = None;
    let mut signatures: Vec<Vec<u8>> = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", value)) => timestamp = Some(value.parse().map_err(|_| SignatureError::Malformed)?),
            Some(("v1", value)) => signatures.push(hex_decode(value).ok_or(SignatureError::Malformed)?),
            Some(_) => {} // other schemes (v0) are ignored, as Stripe's libraries do
            None => return Err(SignatureError::Malformed),
        }
    }
    let timestamp = timestamp.ok_or(SignatureError::Malformed)?;
    if signatures.is_empty() {
        return Err(SignatureError::Malformed);
    }
    if (now - timestamp).abs() > tolerance_secs {
        return Err(SignatureError::OutsideTolerance);
    }
    for secret in secrets {
        for signature in &signatures {
            let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.expose_secret().as_bytes()) else { continue };
            mac.update(timestamp.to_string().as_bytes());
            mac.update(b".");
            mac.update(body);
            // verify_slice compares in constant time.
            if mac.verify_slice(signature).is_ok() {
                return Ok(());
            }
        }
    }
    Err(SignatureError::Mismatch)
}

/// `t=<now>,v1=<signature>` for `body` under `secret`: what Stripe sends (tests, tools).
pub fn sign(body: &[u8], secret: &str, timestamp: i64) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    let signature: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
    format!("t={timestamp},v1={signature}")
}

fn hex_decode(text: &str) -> Option<Vec<u8>> {
    if text.len() % 2 != 0 {
        return None;
    }
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000;

    fn secrets(list: &[&str]) -> Vec<SecretString> {
        list.iter().map(|s| SecretString::from(s.to_string())).collect()
    }

    #[test]
    fn accepts_a_stripe_signature_under_any_configured_secret() {
        let body = br#"{"id":"evt_1"}"#;
        let header = sign(body, "whsec_new", NOW);
        assert_eq!(verify(Some(&header), body, &secrets(&["whsec_old", "whsec_new"]), 300, NOW + 10), Ok(()));
    }

    #[test]
    fn refuses_tampering_staleness_and_garbage() {
        let body = br#"{"id":"evt_1"}"#;
        let header = sign(body, "whsec_a", NOW);
        let keys = secrets(&["whsec_a"]);
        assert_eq!(verify(Some(&header), br#"{"id":"evt_2"}"#, &keys, 300, NOW), Err(SignatureError::Mismatch));
        assert_eq!(verify(Some(&header), body, &secrets(&["whsec_b"]), 300, NOW), Err(SignatureError::Mismatch));
        assert_eq!(verify(Some(&header), body, &keys, 300, NOW + 301), Err(SignatureError::OutsideTolerance));
        assert_eq!(verify(Some(&header), body, &keys, 300, NOW - 301), Err(SignatureError::OutsideTolerance));
        assert_eq!(verify(None, body, &keys, 300, NOW), Err(SignatureError::Missing));
        for bad in ["", "t=abc,v1=00", "v1=00", "t=1", "t=1,v1=zz", "garbage"] {
            assert!(verify(Some(bad), body, &keys, 300, NOW).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_second_signature_in_the_header_counts() {
        let body = b"{}";
        let good = sign(body, "whsec_a", NOW);
        let header = format!("t={NOW},v1={},{}", "00".repeat(32), good.split_once(',').unwrap().1);
        assert_eq!(verify(Some(&header), body, &secrets(&["whsec_a"]), 300, NOW), Ok(()));
    }

    #[test]
    fn event_ids_follow_the_tables_rule_and_nul_is_found_anywhere() {
        assert!(is_event_id("evt_1NGx2aLkdIwHu7ix"));
        for bad in ["evt_", "evt_abc-def", "evt_abc def", "ev_1", "", "evt_é"] {
            assert!(!is_event_id(bad), "{bad}");
        }
        assert!(holds_nul(&serde_json::json!({"data": {"object": {"metadata": {"note": "a\u{0}b"}}}})));
        assert!(holds_nul(&serde_json::json!({"list": ["ok", {"k\u{0}": 1}]})));
        assert!(!holds_nul(&serde_json::json!({"id": "evt_1", "n": 1, "none": null})));
    }
}
