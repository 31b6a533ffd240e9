//! `wallet.profile_completeness(user_id)`: the completion score of one traveler.

use pgrx::prelude::*;

use super::{raise, spi_failed};
use crate::completion::{score, Completion, ProfileFacts};

/// One row whatever exists: a traveler without a profile still has cards, or nothing.
const PROFILE_FACTS_SQL: &str = "
SELECT p.first_name, p.last_name,
       extract(year FROM p.date_of_birth)::int, extract(month FROM p.date_of_birth)::int,
       extract(day FROM p.date_of_birth)::int,
       p.phone_number, coalesce(p.phone_verified, false),
       coalesce(jsonb_typeof(p.notification_preferences) = 'object'
                AND p.notification_preferences <> '{}'::jsonb, false),
       ARRAY(SELECT pm.exp_year::int * 100 + pm.exp_month::int FROM public.payment_methods pm
              WHERE pm.user_id = u.id AND pm.exp_year IS NOT NULL AND pm.exp_month IS NOT NULL),
       extract(year FROM current_date)::int, extract(month FROM current_date)::int,
       extract(day FROM current_date)::int
  FROM (SELECT $1::uuid AS id) u
  LEFT JOIN public.traveler_profiles p ON p.user_id = u.id";

fn month_day(value: Option<i32>) -> u32 {
    value.and_then(|v| u32::try_from(v).ok()).unwrap_or(0)
}

/// Reads the facts and scores them, as of the database's `current_date`.
pub(crate) fn completion_of(user_id: pgrx::Uuid) -> Completion {
    Spi::connect(|client| {
        let row = client.select(PROFILE_FACTS_SQL, Some(1), &[user_id.into()])?.first();
        let date_of_birth = match (row.get::<i32>(3)?, row.get::<i32>(4)?, row.get::<i32>(5)?) {
            (Some(year), month, day) => Some((year, month_day(month), month_day(day))),
            _ => None,
        };
        let card_expiries = row
            .get::<Vec<i32>>(9)?
            .unwrap_or_default()
            .into_iter()
            .map(|yyyymm| (yyyymm / 100, month_day(Some(yyyymm % 100))))
            .collect();
        let facts = ProfileFacts {
            first_name: row.get(1)?,
            last_name: row.get(2)?,
            date_of_birth,
            phone_number: row.get(6)?,
            phone_verified: row.get(7)?.unwrap_or(false),
            card_expiries,
            notification_preferences_set: row.get(8)?.unwrap_or(false),
        };
        let today = match row.get::<i32>(10)? {
            Some(year) => (year, month_day(row.get(11)?), month_day(row.get(12)?)),
            None => raise(PgSqlErrorCode::ERRCODE_INTERNAL_ERROR, "current_date is NULL"),
        };
        Ok::<_, pgrx::spi::Error>(score(&facts, today))
    })
    .unwrap_or_else(|e| spi_failed(e))
}

/// Score (0..100), missing fields and one recommendation per missing field.
/// Runs with the caller's rights: under RLS a traveler can only score themselves.
#[pg_extern(stable)]
#[search_path(pg_catalog)]
fn profile_completeness(
    user_id: pgrx::Uuid,
) -> TableIterator<
    'static,
    (name!(score, i32), name!(missing_fields, Vec<String>), name!(recommendations, Vec<String>)),
> {
    let completion = completion_of(user_id);
    TableIterator::once((completion.score, completion.missing_fields, completion.recommendations))
}
