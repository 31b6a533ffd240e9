//! The shape of `traveler_profiles.notification_preferences` (docs/notification-preferences.md):
//!
//! ```json
//! {"channels": {"email": true, "sms": false, "push": true},
//!  "topics": {"price_drops": true, "booking_confirmations": true,
//!             "authentication_needed": true, "marketing": false},
//!  "quiet_hours": {"start": "22:00", "end": "07:00", "time_zone": "Europe/Lisbon"},
//!  "marketing_consent_version": "marketing-2026-12"}
//! ```
//!
//! Every part is optional; nothing else is allowed. SMS on needs a verified
//! phone; marketing on needs the version of the consent text shown (migration
//! 0014 records the consent from it). What is wrong is named by its path, so the traveler's app can point
//! at the field. Time zones are whatever the database knows (the caller passes
//! the lookup), so the notifier can use them in `AT TIME ZONE`.

use serde_json::{Map, Value};

pub const SECTIONS: [&str; 4] = ["channels", "topics", "quiet_hours", "marketing_consent_version"];
pub const CHANNELS: [&str; 3] = ["email", "sms", "push"];
pub const TOPICS: [&str; 4] = ["price_drops", "booking_confirmations", "authentication_needed", "marketing"];
const QUIET_HOURS: [&str; 3] = ["start", "end", "time_zone"];

/// What is wrong, and where (`channels.sms`; empty for the whole object).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidPreferences {
    pub field: String,
    pub problem: String,
}

impl std::fmt::Display for InvalidPreferences {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.field.is_empty() {
            write!(f, "notification_preferences: {}", self.problem)
        } else {
            write!(f, "notification_preferences.{}: {}", self.field, self.problem)
        }
    }
}

fn invalid(field: impl Into<String>, problem: impl Into<String>) -> InvalidPreferences {
    InvalidPreferences { field: field.into(), problem: problem.into() }
}

fn object<'v>(value: &'v Value, field: &str) -> Result<&'v Map<String, Value>, InvalidPreferences> {
    value.as_object().ok_or_else(|| invalid(field, "must be a JSON object"))
}

/// An object of booleans whose keys are among `known`.
fn switches(value: &Value, section: &str, known: &[&str]) -> Result<(), InvalidPreferences> {
    for (key, switch) in object(value, section)? {
        let field = format!("{section}.{}", shown(key));
        if !known.contains(&key.as_str()) {
            return Err(invalid(field, format!("is not a known field ({})", known.join(", "))));
        }
        if !switch.is_boolean() {
            return Err(invalid(field, "must be true or false"));
        }
    }
    Ok(())
}

/// `HH:MM`, 00:00 to 23:59.
fn clock_time(text: &str) -> bool {
    let bytes = text.as_bytes();
    let digits = |range: std::ops::Range<usize>| bytes[range].iter().all(u8::is_ascii_digit);
    if bytes.len() != 5 || bytes[2] != b':' || !digits(0..2) || !digits(3..5) {
        return false;
    }
    let number = |at: usize| (bytes[at] - b'0') * 10 + (bytes[at + 1] - b'0');
    number(0) < 24 && number(3) < 60
}

/// A consent text's version as the app names it (`marketing-2026-12`).
fn text_version(text: &str) -> bool {
    (1..=64).contains(&text.len())
        && text.as_bytes()[0].is_ascii_alphanumeric()
        && text.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// A plausible time zone name before the database is asked about it: an IANA
/// area/location name (`Europe/Lisbon`, `Etc/GMT+5`), or `UTC`. Never a POSIX
/// rule such as `ABC+5`, which PostgreSQL would accept (and cache, per name,
/// for the life of the backend) but which names no place.
fn time_zone_name(text: &str) -> bool {
    if text == "UTC" {
        return true;
    }
    (1..=64).contains(&text.len())
        && text.contains('/')
        && text.split('/').all(|part| part.as_bytes().first().is_some_and(u8::is_ascii_alphabetic))
        && text.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'_' | b'-' | b'+'))
}

/// A field name for a message: the traveler's own key, bounded and escaped.
fn shown(key: &str) -> String {
    let escaped: String = key.chars().take(40).flat_map(char::escape_debug).collect();
    if key.chars().count() > 40 {
        format!("{escaped}...")
    } else {
        escaped
    }
}

fn quiet_hours(value: &Value, time_zone_known: &dyn Fn(&str) -> bool) -> Result<(), InvalidPreferences> {
    let hours = object(value, "quiet_hours")?;
    if let Some(key) = hours.keys().find(|key| !QUIET_HOURS.contains(&key.as_str())) {
        return Err(invalid(format!("quiet_hours.{}", shown(key)), "is not a known field (start, end, time_zone)"));
    }
    for key in ["start", "end"] {
        let field = format!("quiet_hours.{key}");
        match hours.get(key).and_then(Value::as_str) {
            Some(time) if clock_time(time) => {}
            Some(_) => return Err(invalid(field, "must be a time of day as HH:MM (00:00 to 23:59)")),
            None => return Err(invalid(field, "is required (HH:MM)")),
        }
    }
    if hours.get("start") == hours.get("end") {
        return Err(invalid("quiet_hours.end", "must differ from start"));
    }
    match hours.get("time_zone").and_then(Value::as_str) {
        Some(zone) if time_zone_name(zone) && time_zone_known(zone) => Ok(()),
        Some(_) => Err(invalid("quiet_hours.time_zone", "must be a time zone name such as Europe/Lisbon")),
        None => Err(invalid("quiet_hours.time_zone", "is required (a time zone name such as Europe/Lisbon)")),
    }
}

/// Whether `preferences` has the documented shape, for a traveler whose phone
/// is verified or not.
pub fn check(
    preferences: &Value,
    phone_verified: bool,
    time_zone_known: &dyn Fn(&str) -> bool,
) -> Result<(), InvalidPreferences> {
    let sections = object(preferences, "")?;
    for (key, value) in sections {
        match key.as_str() {
            "channels" => switches(value, key, &CHANNELS)?,
            "topics" => switches(value, key, &TOPICS)?,
            "quiet_hours" => quiet_hours(value, time_zone_known)?,
            "marketing_consent_version" => {
                if !value.as_str().is_some_and(text_version) {
                    return Err(invalid(key.as_str(), "must name a consent text version (letters, digits, . _ -)"));
                }
            }
            _ => return Err(invalid(shown(key), format!("is not a known field ({})", SECTIONS.join(", ")))),
        }
    }
    if preferences.pointer("/channels/sms") == Some(&Value::Bool(true)) && !phone_verified {
        return Err(invalid("channels.sms", "SMS needs a verified phone number: verify it first"));
    }
    if preferences.pointer("/topics/marketing") == Some(&Value::Bool(true))
        && preferences.get("marketing_consent_version").is_none()
    {
        return Err(invalid("marketing_consent_version", "is required with topics.marketing: the consent text shown"));
    }
    Ok(())
}

/// Whether the preferences count towards the completion score: chosen (not
/// the empty default) and valid.
pub fn counts(preferences_json: &str, phone_verified: bool, time_zone_known: &dyn Fn(&str) -> bool) -> bool {
    match serde_json::from_str::<Value>(preferences_json) {
        Ok(preferences) => {
            preferences.as_object().is_some_and(|sections| !sections.is_empty())
                && check(&preferences, phone_verified, time_zone_known).is_ok()
        }
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn known(zone: &str) -> bool {
        ["Europe/Lisbon", "UTC", "America/New_York", "ABC+5"].contains(&zone)
    }

    fn checked(preferences: Value, phone_verified: bool) -> Result<(), String> {
        check(&preferences, phone_verified, &known).map_err(|e| e.to_string())
    }

    #[test]
    fn the_documented_example_and_its_parts_are_valid() {
        let full = json!({
            "channels": { "email": true, "sms": true, "push": false },
            "topics": { "price_drops": true, "booking_confirmations": true, "authentication_needed": true, "marketing": false },
            "quiet_hours": { "start": "22:00", "end": "07:00", "time_zone": "Europe/Lisbon" },
            "marketing_consent_version": "marketing-2026-12",
        });
        assert_eq!(checked(full, true), Ok(()));
        for part in [json!({}), json!({ "channels": {} }), json!({ "topics": { "marketing": false } })] {
            assert_eq!(checked(part, false), Ok(()));
        }
    }

    #[test]
    fn each_mistake_is_named_by_its_field() {
        let cases = [
            (json!([]), "notification_preferences: must be a JSON object"),
            (json!({ "email": true }), "notification_preferences.email: is not a known field"),
            (json!({ "channels": true }), "notification_preferences.channels: must be a JSON object"),
            (json!({ "channels": { "fax": true } }), "notification_preferences.channels.fax: is not a known field"),
            (
                json!({ "channels": { "email": "yes" } }),
                "notification_preferences.channels.email: must be true or false",
            ),
            (json!({ "topics": { "spam": true } }), "notification_preferences.topics.spam: is not a known field"),
            (
                json!({ "topics": { "marketing": 1 } }),
                "notification_preferences.topics.marketing: must be true or false",
            ),
            (json!({ "quiet_hours": { "start": "22:00" } }), "notification_preferences.quiet_hours.end: is required"),
            (
                json!({ "quiet_hours": { "start": "24:00", "end": "07:00", "time_zone": "UTC" } }),
                "notification_preferences.quiet_hours.start: must be a time of day",
            ),
            (
                json!({ "quiet_hours": { "start": "7:00", "end": "07:00", "time_zone": "UTC" } }),
                "notification_preferences.quiet_hours.start: must be a time of day",
            ),
            (
                json!({ "quiet_hours": { "start": "07:00", "end": "07:00", "time_zone": "UTC" } }),
                "notification_preferences.quiet_hours.end: must differ from start",
            ),
            (
                json!({ "quiet_hours": { "start": "22:00", "end": "07:00", "time_zone": "Mars/Olympus" } }),
                "notification_preferences.quiet_hours.time_zone: must be a time zone name",
            ),
            (
                json!({ "quiet_hours": { "start": "22:00", "end": "07:00", "time_zone": "../../etc/passwd" } }),
                "notification_preferences.quiet_hours.time_zone: must be a time zone name",
            ),
            (
                json!({ "quiet_hours": { "start": "22:00", "end": "07:00" } }),
                "notification_preferences.quiet_hours.time_zone: is required",
            ),
            (
                json!({ "quiet_hours": { "start": "22:00", "end": "07:00", "time_zone": "ABC+5" } }),
                "notification_preferences.quiet_hours.time_zone: must be a time zone name",
            ),
            (json!({ "x\ny": true }), "notification_preferences.x\\ny: is not a known field"),
            (
                json!({ "k".repeat(100): true }),
                "notification_preferences.kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk...: is not",
            ),
            (
                json!({ "quiet_hours": { "start": "22:00", "end": "07:00", "time_zone": "UTC", "days": [] } }),
                "notification_preferences.quiet_hours.days: is not a known field",
            ),
        ];
        for (preferences, expected) in cases {
            let problem = checked(preferences.clone(), true).expect_err(&preferences.to_string());
            assert!(problem.starts_with(expected), "{preferences}: {problem}");
        }
    }

    #[test]
    fn marketing_needs_the_version_of_the_text_shown() {
        assert_eq!(
            checked(json!({ "topics": { "marketing": true } }), false),
            Err("notification_preferences.marketing_consent_version: is required with topics.marketing: the consent text shown".into())
        );
        let with_version = json!({ "topics": { "marketing": true }, "marketing_consent_version": "m-1" });
        assert_eq!(checked(with_version, false), Ok(()));
        for bad in [json!(""), json!(7), json!("a b"), json!("-x")] {
            let preferences = json!({ "marketing_consent_version": bad });
            assert!(checked(preferences.clone(), false).is_err(), "{preferences}");
        }
    }

    #[test]
    fn sms_needs_a_verified_phone() {
        let sms = json!({ "channels": { "sms": true } });
        assert_eq!(checked(sms.clone(), true), Ok(()));
        assert_eq!(
            checked(sms, false),
            Err("notification_preferences.channels.sms: SMS needs a verified phone number: verify it first".into())
        );
        assert_eq!(checked(json!({ "channels": { "sms": false } }), false), Ok(()));
    }

    #[test]
    fn only_chosen_valid_preferences_count() {
        assert!(counts(r#"{"channels": {"email": true}}"#, false, &known));
        assert!(!counts("{}", true, &known));
        assert!(!counts(r#"{"email": true}"#, true, &known));
        assert!(!counts(r#"{"channels": {"sms": true}}"#, false, &known));
        assert!(!counts("not json", true, &known));
    }
}
