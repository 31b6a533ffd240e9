//! Reading the request context PostgREST puts in transaction-local settings:
//! `request.jwt.claims` (the verified JWT payload, JSON) and `request.headers`
//! (JSON object, lower-case header names). Pure functions, no Postgres.
//!
//! Every input is untrusted text: an empty, malformed or oddly typed value is
//! absent (`None`), never an error, so a bad claim cannot abort a query or echo
//! its content back in an error message.

use serde_json::{Map, Value};

/// `set_config(..., true)` leaves `''` behind after the transaction: empty is absent.
fn non_empty(raw: Option<&str>) -> Option<&str> {
    raw.map(str::trim).filter(|text| !text.is_empty())
}

/// A JSON object from a setting's text, or `None`.
pub fn parse_object(raw: Option<&str>) -> Option<Map<String, Value>> {
    match serde_json::from_str(non_empty(raw)?) {
        Ok(Value::Object(object)) => Some(object),
        _ => None,
    }
}

/// The user id of a request: the `sub` claim when it is a UUID, else the legacy
/// `request.jwt.claim.sub` setting (older PostgREST), as Supabase's `auth.uid()` reads them.
pub fn subject(claims: Option<&Map<String, Value>>, legacy_sub: Option<&str>) -> Option<uuid::Uuid> {
    let from_legacy = || non_empty(legacy_sub).and_then(|sub| uuid::Uuid::parse_str(sub).ok());
    let from_claims = || match claims?.get("sub")? {
        Value::String(sub) => uuid::Uuid::parse_str(sub.trim()).ok(),
        _ => None,
    };
    from_legacy().or_else(from_claims)
}

/// The `iss` claim: who issued the token (Supabase Auth, or the sidecar's own
/// `parker-wallet/...` authorities when it acts for a traveler).
pub fn issuer(claims: Option<&Map<String, Value>>) -> Option<String> {
    match claims?.get("iss")? {
        Value::String(iss) if !iss.trim().is_empty() => Some(iss.trim().to_owned()),
        _ => None,
    }
}

/// One request header by name (case-insensitive, as HTTP header names are).
/// Only string values count.
pub fn header(headers: Option<&Map<String, Value>>, name: &str) -> Option<String> {
    let wanted = name.trim();
    headers?.iter().find_map(|(key, value)| match value {
        Value::String(text) if key.eq_ignore_ascii_case(wanted) => Some(text.clone()),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALICE: &str = "6f9619ff-8b86-d011-b42d-00c04fc964ff";

    #[test]
    fn subject_from_postgrest_claims() {
        let claims = format!(r#"{{"sub":"{ALICE}","role":"authenticated"}}"#);
        assert_eq!(subject(parse_object(Some(&claims)).as_ref(), None).unwrap().to_string(), ALICE);
    }

    #[test]
    fn subject_accepts_upper_case_and_padding() {
        let claims = format!(r#"{{"sub":" {} "}}"#, ALICE.to_uppercase());
        assert_eq!(subject(parse_object(Some(&claims)).as_ref(), None).unwrap().to_string(), ALICE);
    }

    #[test]
    fn legacy_claim_setting_wins_like_supabase() {
        let other = "00000000-0000-4000-8000-000000000001";
        let claims = format!(r#"{{"sub":"{ALICE}"}}"#);
        assert_eq!(subject(parse_object(Some(&claims)).as_ref(), Some(other)).unwrap().to_string(), other);
        // ...but an empty legacy value (left by set_config) is absent.
        assert_eq!(subject(parse_object(Some(&claims)).as_ref(), Some("")).unwrap().to_string(), ALICE);
    }

    #[test]
    fn absent_or_malformed_claims_have_no_subject() {
        for raw in [
            None,
            Some(""),
            Some("   "),
            Some("garbage"),
            Some("{"),
            Some("[]"),
            Some("null"),
            Some(r#""a string""#),
            Some(r#"{"role":"anon"}"#),
            Some(r#"{"sub":""}"#),
            Some(r#"{"sub":"not-a-uuid"}"#),
            Some(r#"{"sub":42}"#),
            Some(r#"{"sub":null}"#),
            Some(r#"{"sub":["6f9619ff-8b86-d011-b42d-00c04fc964ff"]}"#),
            Some("{\"sub\":\"6f9619ff-8b86-d011-b42d-00c04fc964ff'; drop table x;--\"}"),
        ] {
            assert_eq!(subject(parse_object(raw).as_ref(), None), None, "{raw:?}");
        }
    }

    #[test]
    fn headers_are_case_insensitive_and_strings_only() {
        let headers = r#"{"user-agent":"Mozilla/5.0","x-forwarded-for":"203.0.113.7, 10.0.0.1","x-n":3}"#;
        assert_eq!(header(parse_object(Some(headers)).as_ref(), "User-Agent").as_deref(), Some("Mozilla/5.0"));
        assert_eq!(
            header(parse_object(Some(headers)).as_ref(), "x-forwarded-for").as_deref(),
            Some("203.0.113.7, 10.0.0.1")
        );
        assert_eq!(header(parse_object(Some(headers)).as_ref(), "x-n"), None);
        assert_eq!(header(parse_object(Some(headers)).as_ref(), "missing"), None);
        assert_eq!(header(parse_object(Some("not json")).as_ref(), "user-agent"), None);
        assert_eq!(header(None, "user-agent"), None);
    }
}
