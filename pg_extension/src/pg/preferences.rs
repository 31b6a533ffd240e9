//! `wallet.check_notification_preferences(preferences, phone_verified)`: the
//! CHECK constraint on `traveler_profiles.notification_preferences` (migration
//! 0013), over [`crate::preferences`]. It raises rather than answering false, so
//! the error names the field instead of the constraint.

use pgrx::prelude::*;

use super::raise;
use crate::preferences::check;

/// Whether PostgreSQL knows the time zone (as `AT TIME ZONE` would use it).
pub(crate) fn time_zone_known(name: &str) -> bool {
    let Ok(name) = std::ffi::CString::new(name) else { return false };
    // SAFETY: pg_tzset reads a NUL-terminated name and returns NULL when it
    // cannot load the zone; it keeps what it loads in its own cache.
    unsafe { !pgrx::pg_sys::pg_tzset(name.as_ptr()).is_null() }
}

/// True when valid; otherwise raises 23514 (check_violation) naming the field.
#[pg_extern(stable, parallel_safe, strict)]
#[search_path(pg_catalog, pg_temp)]
fn check_notification_preferences(preferences: pgrx::JsonB, phone_verified: bool) -> bool {
    match check(&preferences.0, phone_verified, &time_zone_known) {
        Ok(()) => true,
        Err(invalid) => raise(PgSqlErrorCode::ERRCODE_CHECK_VIOLATION, invalid.to_string()),
    }
}

#[cfg(any(test, feature = "pg_test"))]
#[pg_schema]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use pgrx::prelude::*;

    #[pg_test]
    fn valid_preferences_pass_and_time_zones_are_the_databases() {
        let valid = Spi::get_one::<bool>(
            r#"SELECT wallet.check_notification_preferences('{"channels": {"email": true},
                 "quiet_hours": {"start": "22:00", "end": "07:00", "time_zone": "Europe/Lisbon"}}', false)"#,
        );
        assert_eq!(valid, Ok(Some(true)));
        assert!(super::time_zone_known("America/New_York"));
        assert!(!super::time_zone_known("Mars/Olympus"));
    }

    #[pg_test(error = "notification_preferences.channels.sms: SMS needs a verified phone number: verify it first")]
    fn sms_without_a_verified_phone_names_the_field() {
        Spi::run(r#"SELECT wallet.check_notification_preferences('{"channels": {"sms": true}}', false)"#).unwrap();
    }
}
