//! Completion scoring in SQL: `wallet.profile_completeness(user_id)`, the trigger
//! that keeps `profile_completion_tracking` current, and the batch backfill.

use std::cell::RefCell;

use pgrx::prelude::*;
use pgrx::spi::{OwnedPreparedStatement, SpiClient};

use super::preferences::time_zone_known;
use super::{raise, spi_failed};
use crate::completion::{score, Completion, ProfileFacts, Ymd, CRITERIA};
use crate::preferences;

/// The facts behind a score, one row per user of `$1` (a uuid[]), as of
/// `current_date`. A user without a profile still gets a row.
const FACTS_SQL: &str = "
SELECT u.user_id, p.first_name, p.last_name,
       extract(year FROM p.date_of_birth)::int, extract(month FROM p.date_of_birth)::int,
       extract(day FROM p.date_of_birth)::int,
       p.phone_number, coalesce(p.phone_verified, false),
       CASE WHEN p.notification_preferences <> '{}'::jsonb THEN p.notification_preferences::text END,
       ARRAY(SELECT pm.exp_year::int * 100 + pm.exp_month::int FROM public.payment_methods pm
              WHERE pm.user_id = u.user_id AND pm.exp_year IS NOT NULL AND pm.exp_month IS NOT NULL),
       extract(year FROM current_date)::int, extract(month FROM current_date)::int,
       extract(day FROM current_date)::int
  FROM unnest($1::uuid[]) AS u(user_id)
  LEFT JOIN public.traveler_profiles p ON p.user_id = u.user_id";

/// Stores scores for many users at once: $1 users, $2 scores, $3 missing masks,
/// $4 criterion fields, $5 recommendations (in criterion order). Users deleted
/// meanwhile (a cascade in progress) are skipped.
const UPSERT_SQL: &str = "
INSERT INTO public.profile_completion_tracking
       (user_id, completeness_score, missing_fields, recommendations, last_calculated)
SELECT t.user_id, t.score,
       ARRAY(SELECT f.field FROM unnest($4::text[]) WITH ORDINALITY AS f(field, i)
              WHERE t.mask & (1 << (f.i::int - 1)) <> 0 ORDER BY f.i),
       ARRAY(SELECT r.text FROM unnest($5::text[]) WITH ORDINALITY AS r(text, i)
              WHERE t.mask & (1 << (r.i::int - 1)) <> 0 ORDER BY r.i),
       now()
  FROM unnest($1::uuid[], $2::int[], $3::int[]) AS t(user_id, score, mask)
 WHERE EXISTS (SELECT FROM auth.users WHERE id = t.user_id)
    ON CONFLICT (user_id) DO UPDATE
   SET completeness_score = EXCLUDED.completeness_score,
       missing_fields = EXCLUDED.missing_fields,
       recommendations = EXCLUDED.recommendations,
       last_calculated = EXCLUDED.last_calculated";

/// The next users to backfill, in id order after $1.
const NEXT_USERS_SQL: &str = "SELECT coalesce(array_agg(id ORDER BY id), '{}') FROM
  (SELECT id FROM auth.users WHERE id > $1 ORDER BY id LIMIT $2) AS next";

thread_local! {
    static FACTS_PLAN: RefCell<Option<OwnedPreparedStatement>> = const { RefCell::new(None) };
    static UPSERT_PLAN: RefCell<Option<OwnedPreparedStatement>> = const { RefCell::new(None) };
}

fn month_day(value: Option<i32>) -> u32 {
    value.and_then(|v| u32::try_from(v).ok()).unwrap_or(0)
}

/// Scores `users` (as of the database's `current_date`).
fn score_users(
    client: &mut SpiClient<'_>,
    facts_plan: &OwnedPreparedStatement,
    users: &[pgrx::Uuid],
) -> Result<Vec<(pgrx::Uuid, Completion)>, pgrx::spi::Error> {
    let mut scored = Vec::with_capacity(users.len());
    for row in client.update(facts_plan, None, &[users.to_vec().into()])? {
        let Some(user_id) = row.get::<pgrx::Uuid>(1)? else { continue };
        let date_of_birth = match (row.get::<i32>(4)?, row.get::<i32>(5)?, row.get::<i32>(6)?) {
            (Some(year), month, day) => Some((year, month_day(month), month_day(day))),
            _ => None,
        };
        let card_expiries = row
            .get::<Vec<i32>>(10)?
            .unwrap_or_default()
            .into_iter()
            .map(|yyyymm| (yyyymm / 100, month_day(Some(yyyymm % 100))))
            .collect();
        let phone_verified = row.get(8)?.unwrap_or(false);
        // Parsed only when chosen (not the empty default): most rows cost nothing.
        let preferences_count =
            row.get::<String>(9)?.is_some_and(|json| preferences::counts(&json, phone_verified, &time_zone_known));
        let facts = ProfileFacts {
            first_name: row.get(2)?,
            last_name: row.get(3)?,
            date_of_birth,
            phone_number: row.get(7)?,
            phone_verified,
            card_expiries,
            notification_preferences_set: preferences_count,
        };
        let today: Ymd = match row.get::<i32>(11)? {
            Some(year) => (year, month_day(row.get(12)?), month_day(row.get(13)?)),
            None => raise(PgSqlErrorCode::ERRCODE_INTERNAL_ERROR, "current_date is NULL"),
        };
        scored.push((user_id, score(&facts, today)));
    }
    Ok(scored)
}

type PlanCache = std::thread::LocalKey<RefCell<Option<OwnedPreparedStatement>>>;

/// `cache`'s statement, prepared on first use in this backend. Each statement
/// is cached on its own: reading a score (any caller, under RLS) prepares only
/// the facts query, never the upsert, whose check of `auth.users` needs rights
/// only the scorer has (preparing it failed for the sidecar's role).
fn prepared(
    client: &mut SpiClient<'_>,
    cache: &'static PlanCache,
    sql: &str,
    types: &[PgOid],
) -> Result<OwnedPreparedStatement, pgrx::spi::Error> {
    match cache.with(|plan| plan.borrow_mut().take()) {
        Some(plan) => Ok(plan),
        None => Ok(client.prepare_mut(sql, types)?.keep()),
    }
}

fn keep(cache: &'static PlanCache, plan: OwnedPreparedStatement) {
    cache.with(|cached| cached.borrow_mut().replace(plan));
}

fn facts_types() -> [PgOid; 1] {
    [PgBuiltInOids::UUIDARRAYOID.oid()]
}

/// Runs `work` with the facts query.
fn with_facts_plan<T>(
    work: impl FnOnce(&mut SpiClient<'_>, &OwnedPreparedStatement) -> Result<T, pgrx::spi::Error>,
) -> T {
    let result = Spi::connect_mut(|client| {
        let facts = prepared(client, &FACTS_PLAN, FACTS_SQL, &facts_types())?;
        let value = work(client, &facts);
        keep(&FACTS_PLAN, facts);
        value
    });
    result.unwrap_or_else(|error| spi_failed(error))
}

/// Runs `work` with the facts query and the upsert.
fn with_plans<T>(
    work: impl FnOnce(&mut SpiClient<'_>, &OwnedPreparedStatement, &OwnedPreparedStatement) -> Result<T, pgrx::spi::Error>,
) -> T {
    with_facts_plan(|client, facts| {
        let (uuid_array, int_array, text_array) =
            (PgBuiltInOids::UUIDARRAYOID.oid(), PgBuiltInOids::INT4ARRAYOID.oid(), PgBuiltInOids::TEXTARRAYOID.oid());
        let types = [uuid_array, int_array, int_array, text_array, text_array];
        let upsert = prepared(client, &UPSERT_PLAN, UPSERT_SQL, &types)?;
        let value = work(client, facts, &upsert);
        keep(&UPSERT_PLAN, upsert);
        value
    })
}

/// Scores `users` and stores the results in `profile_completion_tracking`.
fn refresh_users(users: &[pgrx::Uuid]) -> usize {
    with_plans(|client, facts, upsert| {
        let scored = score_users(client, facts, users)?;
        let fields: Vec<&str> = CRITERIA.iter().map(|c| c.field).collect();
        let recommendations: Vec<&str> = CRITERIA.iter().map(|c| c.recommendation).collect();
        let args = [
            scored.iter().map(|(u, _)| *u).collect::<Vec<_>>().into(),
            scored.iter().map(|(_, c)| c.score).collect::<Vec<_>>().into(),
            scored.iter().map(|(_, c)| c.missing_mask).collect::<Vec<_>>().into(),
            fields.into(),
            recommendations.into(),
        ];
        client.update(upsert, None, &args)?;
        Ok(scored.len())
    })
}

/// Score (0..100), missing fields and one recommendation per missing field.
/// Runs with the caller's rights: under RLS a traveler can only score themselves.
#[pg_extern(stable)]
fn profile_completeness(
    user_id: pgrx::Uuid,
) -> TableIterator<'static, (name!(score, i32), name!(missing_fields, Vec<String>), name!(recommendations, Vec<String>))>
{
    let completion = with_facts_plan(|client, facts| {
        let scored = score_users(client, facts, &[user_id])?;
        Ok(scored.first().map(|(_, c)| *c).unwrap_or(Completion { score: 0, missing_mask: 0 }))
    });
    TableIterator::once((completion.score, completion.missing_fields(), completion.recommendations()))
}

/// Keeps `profile_completion_tracking` current for the traveler(s) whose profile
/// or card changed (both owners when a row changes hands).
#[pg_trigger]
fn completion_trigger<'a>(
    trigger: &'a PgTrigger<'a>,
) -> Result<Option<PgHeapTuple<'a, AllocatedByPostgres>>, pgrx::PgTriggerError> {
    let owner = |tuple: Option<PgHeapTuple<'a, AllocatedByPostgres>>| {
        tuple.and_then(|t| t.get_by_name::<pgrx::Uuid>("user_id").ok().flatten())
    };
    let mut users: Vec<pgrx::Uuid> = owner(trigger.old()).into_iter().chain(owner(trigger.new())).collect();
    users.dedup();
    if !users.is_empty() {
        refresh_users(&users);
    }
    Ok(None)
}

/// One backfill batch: scores up to `batch_size` users with ids after `after`
/// (in id order) and returns the last id done and how many were done.
#[pg_extern]
fn refresh_completion_batch(
    after: pgrx::Uuid,
    batch_size: i32,
) -> TableIterator<'static, (name!(last_user_id, Option<pgrx::Uuid>), name!(refreshed, i32))> {
    let users =
        Spi::get_one_with_args::<Vec<pgrx::Uuid>>(NEXT_USERS_SQL, &[after.into(), i64::from(batch_size.max(1)).into()])
            .unwrap_or_else(|e| spi_failed(e))
            .unwrap_or_default();
    let refreshed = if users.is_empty() { 0 } else { refresh_users(&users) };
    TableIterator::once((users.last().copied(), i32::try_from(refreshed).unwrap_or(i32::MAX)))
}

// The backfill commits after each batch, so a million travelers never sit in one
// transaction. CALL it outside a transaction block. (No SET search_path: a
// procedure with SET clauses may not COMMIT; every name in it is qualified.)
extension_sql!(
    r#"
CREATE PROCEDURE wallet.refresh_all_completion(batch_size int DEFAULT 10000)
LANGUAGE plpgsql AS $$
DECLARE
  after uuid := '00000000-0000-0000-0000-000000000000';
  batch record;
BEGIN
  LOOP
    SELECT * INTO batch FROM wallet.refresh_completion_batch(after, batch_size);
    EXIT WHEN batch.refreshed = 0 AND batch.last_user_id IS NULL;
    after := batch.last_user_id;
    COMMIT;
  END LOOP;
END
$$;
"#,
    name = "refresh_all_completion",
    requires = [refresh_completion_batch],
);

/// SQL behaviour of these wrappers, inside a real backend (`cargo pgrx test`);
/// each test runs in its own transaction, rolled back afterwards.
#[cfg(any(test, feature = "pg_test"))]
#[pgrx::pg_schema]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use pgrx::prelude::*;

    use crate::pg::test_support::*;

    fn tracked_score(user: &str) -> Option<i32> {
        Spi::get_one_with_args::<i32>(
            "SELECT (SELECT completeness_score FROM profile_completion_tracking WHERE user_id = $1::uuid)",
            &[user.into()],
        )
        .unwrap()
    }

    #[pg_test]
    fn tracking_follows_profile_and_card_changes() {
        install_schema();
        Spi::run(&format!(
            "INSERT INTO traveler_profiles (user_id, first_name, last_name) VALUES ('{ALICE}', 'Ada', 'Lovelace')"
        ))
        .unwrap();
        assert_eq!(tracked_score(ALICE), Some(20));
        Spi::run(
            "UPDATE traveler_profiles SET date_of_birth = '1990-12-10', notification_preferences = '{\"channels\": {\"email\": true}}'",
        )
        .unwrap();
        assert_eq!(tracked_score(ALICE), Some(45));
        add_card(ALICE, "expired", 2001);
        assert_eq!(tracked_score(ALICE), Some(45), "an expired card does not count");
        add_card(ALICE, "valid", 2099);
        assert_eq!(tracked_score(ALICE), Some(70));
        Spi::run("DELETE FROM payment_methods WHERE stripe_payment_method_id = 'pm_valid'").unwrap();
        assert_eq!(tracked_score(ALICE), Some(45), "removing the last valid card");
        Spi::run("DELETE FROM payment_methods").unwrap();
        Spi::run("DELETE FROM traveler_profiles").unwrap();
        assert_eq!(tracked_score(ALICE), Some(0));
        let missing = Spi::get_one::<Vec<String>>("SELECT missing_fields FROM profile_completion_tracking").unwrap();
        assert_eq!(missing.map(|m| m.len()), Some(7));
        assert_eq!(tracked_score(BOB), None, "only the changed traveler is touched");
    }

    #[pg_test]
    fn deleting_a_user_cascades_without_resurrecting_tracking() {
        install_schema();
        Spi::run(&format!("INSERT INTO traveler_profiles (user_id, first_name) VALUES ('{BOB}', 'Bob')")).unwrap();
        assert_eq!(tracked_score(BOB), Some(10));
        Spi::run(&format!("DELETE FROM auth.users WHERE id = '{BOB}'")).unwrap();
        assert_eq!(tracked_score(BOB), None);
    }

    #[pg_test]
    fn refresh_batch_backfills_users_in_id_order() {
        install_schema();
        Spi::run("ALTER TABLE traveler_profiles DISABLE TRIGGER traveler_profiles_completion").unwrap();
        Spi::run(&format!(
            "INSERT INTO traveler_profiles (user_id, first_name) VALUES ('{ALICE}', 'Ada'), ('{BOB}', 'Bob')"
        ))
        .unwrap();
        assert_eq!(tracked_score(ALICE), None);
        let (last, done) = Spi::get_two::<pgrx::Uuid, i32>(
            "SELECT * FROM wallet.refresh_completion_batch('00000000-0000-0000-0000-000000000000', 1)",
        )
        .unwrap();
        assert_eq!((last.map(|u| u.to_string()), done), (Some(ALICE.to_owned()), Some(1)));
        assert_eq!((tracked_score(ALICE), tracked_score(BOB)), (Some(10), None));
        let done =
            Spi::get_one::<i32>(&format!("SELECT refreshed FROM wallet.refresh_completion_batch('{ALICE}', 10)"))
                .unwrap();
        assert_eq!((done, tracked_score(BOB)), (Some(1), Some(10)));
        let done = Spi::get_one::<i32>(&format!("SELECT refreshed FROM wallet.refresh_completion_batch('{BOB}', 10)"))
            .unwrap();
        assert_eq!(done, Some(0));
    }
}
