//! `wallet.flag_enabled(name, user_id)`.

use pgrx::prelude::*;

use super::identity::current_subject;
use super::{raise, spi_failed};
use crate::flags::{asks_only_about_oneself, bucket, flag_enabled as decide, Flag};

/// Whether the role that is really asking can read `feature_flags` itself. Inside
/// this SECURITY DEFINER function `current_user` is the flag reader; the outer
/// user is the role the session runs as (PostgREST's `SET ROLE authenticated`).
fn caller_can_read_flags() -> bool {
    // SAFETY: reads a backend global; no preconditions.
    let caller = unsafe { pg_sys::GetOuterUserId() };
    // Read-only SPI (Spi::connect): the mutable kind takes a transaction id,
    // which a parallel worker or a hot standby cannot.
    Spi::connect(|client| {
        let answer = client.select(
            "SELECT has_table_privilege($1, to_regclass('public.feature_flags'), 'SELECT')",
            Some(1),
            &[caller.into()],
        )?;
        answer.first().get::<bool>(1)
    })
    .unwrap_or_else(|e| spi_failed(e))
    .unwrap_or(false)
}

/// Whether `user_id` sees feature flag `name`; an unknown flag is off. Reads the
/// flag as `parker_wallet_flag_reader` (SECURITY DEFINER), and answers a caller
/// only about themselves (`wallet.uid()`) unless the caller may read the flags
/// table anyway: nobody learns who is on another traveler's allow list.
#[pg_extern(stable, parallel_safe)]
fn flag_enabled(name: &str, user_id: Option<pgrx::Uuid>) -> bool {
    let user = user_id.map(|u| uuid::Uuid::from_bytes(*u.as_bytes()));
    if !asks_only_about_oneself(user.as_ref(), current_subject().as_ref()) && !caller_can_read_flags() {
        raise(
            PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            "wallet.flag_enabled answers only about the requesting traveler (wallet.uid())",
        );
    }
    let row = Spi::connect(|client| {
        let rows = client.select(
            "SELECT enabled, rollout_percent, allow_list FROM public.feature_flags WHERE name = $1",
            Some(1),
            &[name.into()],
        )?;
        if rows.is_empty() {
            return Ok(None);
        }
        let row = rows.first();
        Ok::<_, pgrx::spi::Error>(Some(Flag {
            enabled: row.get(1)?.unwrap_or(false),
            rollout_percent: row.get(2)?.unwrap_or(0),
            allow_list: row
                .get::<Vec<pgrx::Uuid>>(3)?
                .unwrap_or_default()
                .into_iter()
                .map(|u| uuid::Uuid::from_bytes(*u.as_bytes()))
                .collect(),
        }))
    })
    .unwrap_or_else(|e| spi_failed(e));
    row.is_some_and(|flag| decide(&flag, user.as_ref()))
}

/// The user's rollout bucket (0..99): `flag_enabled` lets them in when
/// bucket < rollout_percent. For support questions ("why does this user see it?").
#[pg_extern(immutable, parallel_safe)]
fn flag_bucket(user_id: pgrx::Uuid) -> i32 {
    bucket(&uuid::Uuid::from_bytes(*user_id.as_bytes())) as i32
}

/// SQL behaviour of these wrappers, inside a real backend (`cargo pgrx test`);
/// each test runs in its own transaction, rolled back afterwards.
#[cfg(any(test, feature = "pg_test"))]
#[pgrx::pg_schema]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use pgrx::prelude::*;

    use crate::pg::test_support::*;

    fn flag(name: &str, user: &str) -> bool {
        Spi::get_one_with_args::<bool>("SELECT wallet.flag_enabled($1, $2::uuid)", &[name.into(), user.into()])
            .unwrap()
            .unwrap()
    }

    #[pg_test]
    fn flags_follow_kill_switch_allow_list_and_rollout() {
        install_schema();
        Spi::run(&format!(
            "INSERT INTO feature_flags (name, enabled, rollout_percent, allow_list) VALUES
               ('everyone', true, 100, '{{}}'), ('nobody', true, 0, '{{}}'),
               ('listed', true, 0, '{{{ALICE}}}'), ('killed', false, 100, '{{{ALICE}}}')"
        ))
        .unwrap();
        assert!(flag("everyone", BOB));
        assert!(!flag("nobody", BOB));
        assert!(flag("listed", ALICE) && !flag("listed", BOB));
        assert!(!flag("killed", ALICE));
        assert!(!flag("unknown-flag", ALICE));
        assert_eq!(Spi::get_one::<bool>("SELECT wallet.flag_enabled('everyone', NULL)").unwrap(), Some(false));
    }

    #[pg_test(error = "wallet.flag_enabled answers only about the requesting traveler (wallet.uid())")]
    fn a_traveler_cannot_ask_about_another_travelers_flags() {
        install_schema();
        Spi::run(&format!(
            "INSERT INTO feature_flags (name, enabled, allow_list) VALUES ('listed', true, '{{{ALICE}}}')"
        ))
        .unwrap();
        Spi::run("SET LOCAL ROLE authenticated").unwrap();
        set_claims(&format!(r#"{{"sub":"{BOB}"}}"#));
        assert!(!flag("listed", BOB), "about oneself: answered");
        flag("listed", ALICE);
    }
}
