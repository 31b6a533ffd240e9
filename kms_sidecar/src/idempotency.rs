//! What makes two requests "the same request" for an `Idempotency-Key`: a
//! digest of the route, the traveler and the body. Used by the wallet routes'
//! answer store and by bookings, whose row is its own idempotency record.

use sha2::{Digest, Sha256};

/// The request's fingerprint: each part length-prefixed, so no two different
/// (route, user, body) triples can run together into the same bytes.
pub fn fingerprint(route: &str, user_id: uuid::Uuid, body: &[u8]) -> Vec<u8> {
    let mut hasher = Sha256::new();
    for part in [route.as_bytes(), user_id.as_bytes(), body] {
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part);
    }
    hasher.finalize().to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_separate_route_user_and_body() {
        let user = uuid::Uuid::from_u128(1);
        let base = fingerprint("POST /a", user, b"{}");
        assert_eq!(base, fingerprint("POST /a", user, b"{}"));
        assert_ne!(base, fingerprint("POST /b", user, b"{}"));
        assert_ne!(base, fingerprint("POST /a", uuid::Uuid::from_u128(2), b"{}"));
        assert_ne!(base, fingerprint("POST /a", user, b"{ }"));
        assert_ne!(fingerprint("ab", user, b"c"), fingerprint("a", user, b"bc"));
    }
}
