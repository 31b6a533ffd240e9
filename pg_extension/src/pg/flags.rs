//! `wallet.flag_enabled(name, user_id)`.

use pgrx::prelude::*;

use super::spi_failed;
use crate::flags::{bucket, flag_enabled as decide, Flag};

/// Whether `user_id` sees feature flag `name`; an unknown flag is off. Reads the
/// flag with the extension owner's rights (see the SECURITY DEFINER below), so a
/// traveler learns only their own answer, never the allow list.
#[pg_extern(stable, parallel_safe)]
fn flag_enabled(name: &str, user_id: Option<pgrx::Uuid>) -> bool {
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
    let user = user_id.map(|u| uuid::Uuid::from_bytes(*u.as_bytes()));
    row.is_some_and(|flag| decide(&flag, user.as_ref()))
}

/// The user's rollout bucket (0..99): `flag_enabled` lets them in when
/// bucket < rollout_percent. For support questions ("why does this user see it?").
#[pg_extern(immutable, parallel_safe)]
fn flag_bucket(user_id: pgrx::Uuid) -> i32 {
    bucket(&uuid::Uuid::from_bytes(*user_id.as_bytes())) as i32
}
