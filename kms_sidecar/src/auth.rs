//! The traveler behind a request: a Supabase JWT, verified here. HS256 with the
//! project's JWT secret, or RS256/ES256 against a JWKS (Supabase's asymmetric
//! keys); expiry (with a little leeway), audience and role are checked. The
//! sidecar then acts for `sub` only.

use std::collections::HashMap;

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{decode, decode_header, Algorithm, DecodingKey, Validation};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::domain::Traveler;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    #[error("no bearer token in the Authorization header")]
    Missing,
    #[error("the token is not a well-formed JWT")]
    Malformed,
    #[error("the token's signature does not verify")]
    BadSignature,
    #[error("the token has expired")]
    Expired,
    #[error("the token is for another audience")]
    WrongAudience,
    #[error("the token's role is not authenticated")]
    WrongRole,
    #[error("the token's sub is not a user id")]
    NoSubject,
    #[error("the token is signed with an algorithm or key this sidecar does not accept")]
    UnknownKey,
    #[error("the token is not valid yet (nbf)")]
    NotYetValid,
    #[error("the token was issued by another issuer")]
    WrongIssuer,
}

impl AuthError {
    /// The refusal's reason as metrics name it.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Missing => "missing",
            Self::Malformed => "malformed",
            Self::BadSignature => "bad_signature",
            Self::Expired => "expired",
            Self::WrongAudience => "wrong_audience",
            Self::WrongRole => "wrong_role",
            Self::NoSubject => "no_subject",
            Self::UnknownKey => "unknown_key",
            Self::NotYetValid => "not_yet_valid",
            Self::WrongIssuer => "wrong_issuer",
        }
    }
}

#[derive(Deserialize)]
struct Claims {
    sub: Option<String>,
    role: Option<String>,
}

pub struct JwtVerifier {
    secret: Option<DecodingKey>,
    jwks: HashMap<String, (DecodingKey, Algorithm)>,
    audience: String,
    /// Supabase Auth's `iss`, when the project's is configured: travelers'
    /// tokens must name it.
    issuer: Option<String>,
    verified: VerifiedTokens,
}

/// Travelers' tokens verified lately, by their exact text. The same bytes
/// verify the same way until `exp` (plus leeway) passes, so a hit skips the
/// signature and claims work, not the expiry: an entry lives until the token's
/// expiry or `VERIFIED_FOR`, whichever comes first. Bounded by `MAX_VERIFIED`.
#[derive(Default)]
struct VerifiedTokens {
    entries: std::sync::Mutex<HashMap<String, (std::sync::Arc<Traveler>, u64)>>,
}

const VERIFIED_FOR_SECS: u64 = 60;
const MAX_VERIFIED: usize = 10_000;

fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl VerifiedTokens {
    fn get(&self, token: &str, now: u64) -> Option<std::sync::Arc<Traveler>> {
        let entries = self.entries.lock().ok()?;
        entries.get(token).filter(|(_, until)| now < *until).map(|(traveler, _)| std::sync::Arc::clone(traveler))
    }

    fn insert(&self, token: &str, traveler: &std::sync::Arc<Traveler>, now: u64) {
        let Some(expires) = traveler.claims["exp"].as_u64() else { return };
        let until = (expires + LEEWAY_SECS).min(now + VERIFIED_FOR_SECS);
        if let Ok(mut entries) = self.entries.lock() {
            if entries.len() >= MAX_VERIFIED {
                entries.retain(|_, (_, until)| now < *until);
                if entries.len() >= MAX_VERIFIED {
                    entries.clear();
                }
            }
            entries.insert(token.to_owned(), (std::sync::Arc::clone(traveler), until));
        }
    }
}

impl std::fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtVerifier")
            .field("hs256", &self.secret.is_some())
            .field("jwks_kids", &self.jwks.keys().collect::<Vec<_>>())
            .field("audience", &self.audience)
            .field("issuer", &self.issuer)
            .finish()
    }
}

/// Allowed clock skew between Supabase Auth and us.
const LEEWAY_SECS: u64 = 30;

impl JwtVerifier {
    /// `secret`: the project's JWT secret (HS256). `jwks`: a JWKS document
    /// (RS256/ES256 keys by `kid`). At least one is needed. `issuer`: the `iss`
    /// travelers' tokens must carry, when known.
    pub fn new(
        secret: Option<&SecretString>,
        jwks: Option<&str>,
        audience: &str,
        issuer: Option<&str>,
    ) -> Result<Self, String> {
        let mut keys = HashMap::new();
        if let Some(document) = jwks {
            let set: JwkSet = serde_json::from_str(document).map_err(|e| format!("JWKS is not valid: {e}"))?;
            for jwk in set.keys {
                let Some(kid) = jwk.common.key_id.clone() else { continue };
                let algorithm = match &jwk.algorithm {
                    jsonwebtoken::jwk::AlgorithmParameters::RSA(_) => Algorithm::RS256,
                    jsonwebtoken::jwk::AlgorithmParameters::EllipticCurve(_) => Algorithm::ES256,
                    _ => continue,
                };
                let key = DecodingKey::from_jwk(&jwk).map_err(|e| format!("JWKS key {kid}: {e}"))?;
                keys.insert(kid, (key, algorithm));
            }
        }
        let secret = secret.map(|s| DecodingKey::from_secret(s.expose_secret().as_bytes()));
        if secret.is_none() && keys.is_empty() {
            return Err("neither a JWT secret nor a JWKS key is configured".into());
        }
        Ok(Self {
            secret,
            jwks: keys,
            audience: audience.to_owned(),
            issuer: issuer.map(str::to_owned),
            verified: VerifiedTokens::default(),
        })
    }

    /// The token from an `Authorization` header value.
    pub fn bearer(header: Option<&str>) -> Result<&str, AuthError> {
        header
            .and_then(|h| h.strip_prefix("Bearer ").or_else(|| h.strip_prefix("bearer ")))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or(AuthError::Missing)
    }

    pub fn verify(&self, token: &str) -> Result<Traveler, AuthError> {
        self.verified_traveler(token).map(|traveler| (*traveler).clone())
    }

    /// The traveler's id only: what the crypto routes need, without copying claims.
    pub fn verify_subject(&self, token: &str) -> Result<uuid::Uuid, AuthError> {
        self.verified_traveler(token).map(|traveler| traveler.user_id)
    }

    fn verified_traveler(&self, token: &str) -> Result<std::sync::Arc<Traveler>, AuthError> {
        let now = unix_now();
        if let Some(traveler) = self.verified.get(token, now) {
            return Ok(traveler);
        }
        let traveler = std::sync::Arc::new(self.verify_afresh(token)?);
        self.verified.insert(token, &traveler, now);
        Ok(traveler)
    }

    fn verify_afresh(&self, token: &str) -> Result<Traveler, AuthError> {
        let claims = self.decode(token, true)?;
        let parsed: Claims = serde_json::from_value(claims.clone()).map_err(|_| AuthError::Malformed)?;
        if parsed.role.as_deref() != Some("authenticated") {
            return Err(AuthError::WrongRole);
        }
        let user_id = parsed.sub.as_deref().and_then(|s| uuid::Uuid::parse_str(s).ok()).ok_or(AuthError::NoSubject)?;
        Ok(Traveler { user_id, claims })
    }

    /// Whether `token` is the project's service key (Supabase's `service_role`
    /// JWT, which has neither audience nor subject): a server-side caller that
    /// may act for a campaign's owner.
    pub fn verify_service(&self, token: &str) -> Result<(), AuthError> {
        let claims = self.decode(token, false)?;
        match claims["role"].as_str() {
            Some("service_role") => Ok(()),
            _ => Err(AuthError::WrongRole),
        }
    }

    /// The verified claims; `for_traveler` requires audience and subject.
    fn decode(&self, token: &str, for_traveler: bool) -> Result<serde_json::Value, AuthError> {
        let header = decode_header(token).map_err(|_| AuthError::Malformed)?;
        let (key, algorithm) = match header.alg {
            Algorithm::HS256 => (self.secret.as_ref().ok_or(AuthError::UnknownKey)?, Algorithm::HS256),
            Algorithm::RS256 | Algorithm::ES256 => {
                let (key, algorithm) =
                    header.kid.as_ref().and_then(|kid| self.jwks.get(kid)).ok_or(AuthError::UnknownKey)?;
                if *algorithm != header.alg {
                    return Err(AuthError::UnknownKey);
                }
                (key, *algorithm)
            }
            _ => return Err(AuthError::UnknownKey),
        };
        let mut validation = Validation::new(algorithm);
        validation.leeway = LEEWAY_SECS;
        validation.validate_nbf = true;
        if for_traveler {
            validation.set_audience(&[&self.audience]);
            match &self.issuer {
                Some(issuer) => {
                    validation.set_issuer(&[issuer]);
                    validation.set_required_spec_claims(&["exp", "aud", "sub", "iss"]);
                }
                None => validation.set_required_spec_claims(&["exp", "aud", "sub"]),
            }
        } else {
            validation.validate_aud = false;
            validation.set_required_spec_claims(&["exp"]);
        }
        let data = decode::<serde_json::Value>(token, key, &validation).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind;
            match e.kind() {
                ErrorKind::ExpiredSignature => AuthError::Expired,
                ErrorKind::ImmatureSignature => AuthError::NotYetValid,
                ErrorKind::InvalidIssuer => AuthError::WrongIssuer,
                ErrorKind::MissingRequiredClaim(claim) if claim == "iss" => AuthError::WrongIssuer,
                ErrorKind::InvalidAudience => AuthError::WrongAudience,
                ErrorKind::InvalidSignature => AuthError::BadSignature,
                ErrorKind::MissingRequiredClaim(claim) if claim == "aud" => AuthError::WrongAudience,
                ErrorKind::MissingRequiredClaim(claim) if claim == "sub" => AuthError::NoSubject,
                _ => AuthError::Malformed,
            }
        })?;
        Ok(data.claims)
    }
}

#[cfg(test)]
mod tests {
    use jsonwebtoken::{encode, EncodingKey, Header};
    use serde_json::json;

    use super::*;

    const SECRET: &str = "super-secret-jwt-token-with-at-least-32-characters-long";
    const ALICE: &str = "a11ce000-0000-4000-8000-000000000001";

    fn now() -> u64 {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
    }

    fn token(claims: serde_json::Value, secret: &str) -> String {
        encode(&Header::new(Algorithm::HS256), &claims, &EncodingKey::from_secret(secret.as_bytes())).unwrap()
    }

    fn valid() -> serde_json::Value {
        json!({ "sub": ALICE, "role": "authenticated", "aud": "authenticated", "exp": now() + 3600 })
    }

    fn verifier() -> JwtVerifier {
        JwtVerifier::new(Some(&SecretString::from(SECRET.to_owned())), None, "authenticated", None).unwrap()
    }

    #[test]
    fn a_supabase_token_names_its_traveler() {
        let traveler = verifier().verify(&token(valid(), SECRET)).unwrap();
        assert_eq!(traveler.user_id.to_string(), ALICE);
        assert_eq!(traveler.claims["role"], "authenticated");
    }

    #[test]
    fn every_bad_token_is_refused_with_its_reason() {
        let v = verifier();
        let with = |patch: serde_json::Value| {
            let mut claims = valid();
            for (k, val) in patch.as_object().unwrap() {
                if val.is_null() {
                    claims.as_object_mut().unwrap().remove(k);
                } else {
                    claims[k] = val.clone();
                }
            }
            token(claims, SECRET)
        };
        assert_eq!(
            v.verify(&token(valid(), "another-secret-of-sufficient-length-000000")).unwrap_err(),
            AuthError::BadSignature
        );
        assert_eq!(v.verify(&with(json!({ "exp": now() - 3600 }))).unwrap_err(), AuthError::Expired);
        assert_eq!(v.verify(&with(json!({ "aud": "other" }))).unwrap_err(), AuthError::WrongAudience);
        assert_eq!(v.verify(&with(json!({ "role": "anon" }))).unwrap_err(), AuthError::WrongRole);
        assert_eq!(v.verify(&with(json!({ "role": "service_role" }))).unwrap_err(), AuthError::WrongRole);
        assert_eq!(v.verify(&with(json!({ "sub": "not-a-uuid" }))).unwrap_err(), AuthError::NoSubject);
        assert_eq!(v.verify(&with(json!({ "sub": null }))).unwrap_err(), AuthError::NoSubject);
        assert_eq!(v.verify("not.a.jwt").unwrap_err(), AuthError::Malformed);
        assert_eq!(v.verify("").unwrap_err(), AuthError::Malformed);
    }

    #[test]
    fn not_before_is_enforced_and_the_issuer_when_known() {
        let mut early = valid();
        early["nbf"] = json!(now() + 600);
        assert_eq!(verifier().verify(&token(early, SECRET)).unwrap_err(), AuthError::NotYetValid);
        let issuer = "https://project.supabase.co/auth/v1";
        let strict =
            JwtVerifier::new(Some(&SecretString::from(SECRET.to_owned())), None, "authenticated", Some(issuer))
                .unwrap();
        let mut named = valid();
        named["iss"] = json!(issuer);
        assert!(strict.verify(&token(named.clone(), SECRET)).is_ok());
        named["iss"] = json!("https://another.supabase.co/auth/v1");
        assert_eq!(strict.verify(&token(named, SECRET)).unwrap_err(), AuthError::WrongIssuer);
        assert_eq!(strict.verify(&token(valid(), SECRET)).unwrap_err(), AuthError::WrongIssuer, "no iss at all");
        // The service key is not Supabase Auth's token (its iss is "supabase").
        let service = token(json!({"role": "service_role", "iss": "supabase", "exp": now() + 600}), SECRET);
        assert_eq!(strict.verify_service(&service), Ok(()));
    }

    #[test]
    fn an_unsigned_or_foreign_algorithm_token_is_refused() {
        // alg "none": header {"alg":"none"}, payload, empty signature.
        use base64::Engine;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let none = format!("{}.{}.", b64.encode(r#"{"alg":"none","typ":"JWT"}"#), b64.encode(valid().to_string()));
        assert!(verifier().verify(&none).is_err());
        let hs512 =
            encode(&Header::new(Algorithm::HS512), &valid(), &EncodingKey::from_secret(SECRET.as_bytes())).unwrap();
        assert_eq!(verifier().verify(&hs512).unwrap_err(), AuthError::UnknownKey);
    }

    #[test]
    fn the_service_key_is_recognised_and_is_no_traveler() {
        let service = token(json!({"role": "service_role", "iss": "supabase", "exp": now() + 600}), SECRET);
        assert_eq!(verifier().verify_service(&service), Ok(()));
        assert!(verifier().verify(&service).is_err(), "a service key is not a traveler");
        let traveler = token(valid(), SECRET);
        assert_eq!(verifier().verify_service(&traveler), Err(AuthError::WrongRole));
        let forged =
            token(json!({"role": "service_role", "exp": now() + 600}), "another-secret-of-at-least-32-characters!!");
        assert_eq!(verifier().verify_service(&forged), Err(AuthError::BadSignature));
    }

    #[test]
    fn a_verified_token_is_remembered_until_its_expiry_at_most_a_minute() {
        let verified = VerifiedTokens::default();
        let now = 1_000_000;
        let traveler =
            |exp: u64| std::sync::Arc::new(Traveler { user_id: uuid::Uuid::nil(), claims: json!({ "exp": exp }) });
        verified.insert("short", &traveler(now + 10), now);
        verified.insert("long", &traveler(now + 3_600), now);
        assert!(verified.get("short", now + 10 + LEEWAY_SECS - 1).is_some(), "within exp and leeway");
        assert!(verified.get("short", now + 10 + LEEWAY_SECS).is_none(), "expired");
        assert!(verified.get("long", now + VERIFIED_FOR_SECS - 1).is_some());
        assert!(verified.get("long", now + VERIFIED_FOR_SECS).is_none(), "verified afresh after a minute");
        assert!(verified.get("shorT", now).is_none(), "other bytes are another token");
    }

    #[test]
    fn a_cached_token_still_refuses_forgeries_of_it() {
        let verifier = verifier();
        let good = token(valid(), SECRET);
        assert!(verifier.verify(&good).is_ok());
        assert!(verifier.verify(&good).is_ok(), "served from the cache");
        let forged = format!("{}x", good);
        assert!(verifier.verify(&forged).is_err(), "other bytes are verified afresh");
    }

    #[test]
    fn bearer_header_parsing() {
        assert_eq!(JwtVerifier::bearer(Some("Bearer abc")), Ok("abc"));
        assert_eq!(JwtVerifier::bearer(Some("Basic abc")), Err(AuthError::Missing));
        assert_eq!(JwtVerifier::bearer(Some("Bearer ")), Err(AuthError::Missing));
        assert_eq!(JwtVerifier::bearer(None), Err(AuthError::Missing));
    }

    #[test]
    fn debug_shows_no_key_material() {
        let shown = format!("{:?}", verifier());
        assert!(!shown.contains(SECRET), "{shown}");
    }

    /// A throwaway P-256 key pair made for this test (Supabase's asymmetric JWTs
    /// are ES256 with the public key published as a JWKS).
    const TEST_EC_PRIVATE_KEY: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgliZXvficEptYolDm
EOJ6EwMRRyWP3rlsmDtDvLa+SfShRANCAATL4JsJs69t7jahEETl0tVGHjNkRDg2
rGAWoUTDJ18b47T6hql5blgyKklha+PxpahrcARblw7xduyl9Ld2PISP
-----END PRIVATE KEY-----";
    const TEST_JWKS: &str = r#"{"keys":[{"kty":"EC","crv":"P-256","kid":"supabase-2026","alg":"ES256","use":"sig",
        "x":"y-CbCbOvbe42oRBE5dLVRh4zZEQ4NqxgFqFEwydfG-M","y":"tPqGqXluWDIqSWFr4_GlqGtwBFuXDvF27KX0t3Y8hI8"}]}"#;

    fn es256(kid: &str, claims: serde_json::Value) -> String {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(kid.to_owned());
        encode(&header, &claims, &EncodingKey::from_ec_pem(TEST_EC_PRIVATE_KEY.as_bytes()).unwrap()).unwrap()
    }

    #[test]
    fn asymmetric_tokens_verify_against_the_jwks() {
        let verifier = JwtVerifier::new(None, Some(TEST_JWKS), "authenticated", None).unwrap();
        let traveler = verifier.verify(&es256("supabase-2026", valid())).unwrap();
        assert_eq!(traveler.user_id.to_string(), ALICE);
        assert_eq!(verifier.verify(&es256("another-kid", valid())).unwrap_err(), AuthError::UnknownKey);
        // Without a project secret, an HS256 token cannot be checked: refused.
        assert_eq!(verifier.verify(&token(valid(), SECRET)).unwrap_err(), AuthError::UnknownKey);
        let mut tampered = es256("supabase-2026", valid());
        let flipped = if tampered.ends_with('A') { 'B' } else { 'A' };
        tampered.pop();
        tampered.push(flipped);
        assert!(verifier.verify(&tampered).is_err());
    }

    #[test]
    fn a_verifier_needs_a_secret_or_keys() {
        assert!(JwtVerifier::new(None, None, "authenticated", None).is_err());
        assert!(JwtVerifier::new(None, Some("not json"), "authenticated", None).is_err());
    }
}
