//! The extension's machinery on the migrated schema, driven the way production
//! drives it: PostgREST-style traveler sessions, an operator's CALL, and Parker
//! Flight's own TypeScript bucketing as the reference for feature flags.

use std::io::Write;
use std::process::{Command, Stdio};

use harness::{as_traveler, claims, sqlstate, Template, TestDb};

const ALICE: &str = "a11ce000-0000-4000-8000-000000000001";
const BOB: &str = "b0b00000-0000-4000-8000-000000000002";

async fn flag_buckets_match_parker_flights_typescript(template: Template) -> anyhow::Result<()> {
    let db = TestDb::migrated_on(template).await?;
    let mut admin = db.admin().await?;
    let ids: Vec<String> = (0..500).map(|_| uuid::Uuid::new_v4().to_string()).collect();

    let mut node = Command::new("node")
        .arg(harness::crate_dir().join("support/user_in_bucket.js"))
        .env("NODE_PATH", std::env::var("PW_NODE_MODULES")?)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    node.stdin.take().expect("piped stdin").write_all(ids.join("\n").as_bytes())?;
    let output = node.wait_with_output()?;
    assert!(output.status.success(), "node failed: {output:?}");
    let expected: Vec<(String, i32)> = String::from_utf8(output.stdout)?
        .lines()
        .map(|line| {
            let (id, bucket) = line.split_once(' ').expect("id and bucket");
            (id.to_owned(), bucket.parse().expect("a number"))
        })
        .collect();
    assert_eq!(expected.len(), ids.len());

    let ours: Vec<(String, i32)> = sqlx::query_as(
        "SELECT id::text, wallet.flag_bucket(id) FROM unnest($1::uuid[]) WITH ORDINALITY AS t(id, n) ORDER BY n",
    )
    .bind(&ids)
    .fetch_all(&mut admin)
    .await?;
    assert_eq!(ours, expected);

    // And the flag answer follows the bucket at the edge of the rollout.
    let (id, bucket) = &expected[0];
    for (rollout, inside) in [(*bucket, false), (bucket + 1, true)] {
        sqlx::query(
            "INSERT INTO feature_flags (name, enabled, rollout_percent) VALUES ('edge', true, $1)
                     ON CONFLICT (name) DO UPDATE SET rollout_percent = EXCLUDED.rollout_percent",
        )
        .bind(rollout)
        .execute(&mut admin)
        .await?;
        let answer: bool =
            sqlx::query_scalar("SELECT wallet.flag_enabled('edge', $1::uuid)").bind(id).fetch_one(&mut admin).await?;
        assert_eq!(answer, inside, "bucket {bucket}, rollout {rollout}");
    }
    Ok(())
}

async fn refresh_all_completion_backfills_every_traveler_in_committed_batches(
    template: Template,
) -> anyhow::Result<()> {
    let db = TestDb::migrated_on(template).await?;
    let mut admin = db.admin().await?;
    sqlx::raw_sql(
        "ALTER TABLE traveler_profiles DISABLE TRIGGER traveler_profiles_completion;
         INSERT INTO auth.users (id) SELECT gen_random_uuid() FROM generate_series(1, 2500);
         INSERT INTO traveler_profiles (user_id, first_name, last_name)
              SELECT id, 'First', CASE WHEN random() < 0.5 THEN 'Last' END FROM auth.users;
         ALTER TABLE traveler_profiles ENABLE TRIGGER traveler_profiles_completion;",
    )
    .execute(&mut admin)
    .await?;
    sqlx::raw_sql("CALL wallet.refresh_all_completion(300)").execute(&mut admin).await?;
    let (tracked, wrong): (i64, i64) = sqlx::query_as(
        "SELECT count(*), count(*) FILTER (WHERE t.completeness_score <> CASE WHEN p.last_name IS NULL THEN 10 ELSE 20 END)
           FROM profile_completion_tracking t JOIN traveler_profiles p USING (user_id)",
    )
    .fetch_one(&mut admin)
    .await?;
    assert_eq!((tracked, wrong), (2500, 0));
    Ok(())
}

async fn a_travelers_change_is_audited_with_their_request_and_stays_private(template: Template) -> anyhow::Result<()> {
    let db = TestDb::migrated_on(template).await?;
    let mut admin = db.admin().await?;
    sqlx::raw_sql(&format!("INSERT INTO auth.users (id) VALUES ('{ALICE}'), ('{BOB}')")).execute(&mut admin).await?;

    let mut conn = db.traveler().await?;
    for (user, agent) in [(ALICE, "alice-phone/1.0"), (BOB, "bob-laptop/2.0")] {
        let mut tx = as_traveler(&mut conn, &claims(user)).await?;
        sqlx::query("SELECT set_config('request.headers', $1, true)")
            .bind(format!(r#"{{"x-forwarded-for":"203.0.113.9","user-agent":"{agent}"}}"#))
            .execute(&mut *tx)
            .await?;
        sqlx::query("INSERT INTO traveler_profiles (user_id, first_name) VALUES ($1::uuid, 'Me')")
            .bind(user)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
    }

    let mut tx = as_traveler(&mut conn, &claims(ALICE)).await?;
    let trail: Vec<(String, String, Option<String>, Option<String>)> =
        sqlx::query_as("SELECT user_id::text, action, host(ip_address), user_agent FROM traveler_data_audit")
            .fetch_all(&mut *tx)
            .await?;
    assert_eq!(
        trail,
        [(ALICE.to_owned(), "INSERT".to_owned(), Some("203.0.113.9".to_owned()), Some("alice-phone/1.0".to_owned()))]
    );
    let score: i32 =
        sqlx::query_scalar("SELECT completeness_score FROM profile_completion_tracking").fetch_one(&mut *tx).await?;
    assert_eq!(score, 10, "the tracking trigger ran for the traveler's own write");
    let error = sqlx::query("DELETE FROM traveler_data_audit").execute(&mut *tx).await.unwrap_err();
    assert_eq!(sqlstate(&error).as_deref(), Some("42501"));
    tx.rollback().await?;

    let broken: Option<String> =
        sqlx::query_scalar("SELECT reason FROM wallet.verify_audit_chain()").fetch_optional(&mut admin).await?;
    assert_eq!(broken, None);
    Ok(())
}

/// The score follows a card's expiry; a default switch does not recompute it
/// (the trigger fires on the columns the score reads).
async fn a_cards_expiry_moves_the_score_and_a_default_switch_leaves_it(template: Template) -> anyhow::Result<()> {
    let db = TestDb::migrated_on(template).await?;
    let mut admin = db.admin().await?;
    sqlx::raw_sql(&format!(
        "INSERT INTO auth.users (id) VALUES ('{ALICE}');
         INSERT INTO wallet_customers (user_id, stripe_customer_id) VALUES ('{ALICE}', 'cus_a');
         INSERT INTO payment_methods (user_id, stripe_customer_id, stripe_payment_method_id, encrypted_card_data,
                                      exp_month, exp_year, is_default)
              VALUES ('{ALICE}', 'cus_a', 'pm_a', '\\x02', 1, 2020, true);"
    ))
    .execute(&mut admin)
    .await?;
    let tracked =
        "SELECT completeness_score, last_calculated FROM profile_completion_tracking WHERE user_id = $1::uuid";
    let (expired, _): (i32, chrono::DateTime<chrono::Utc>) =
        sqlx::query_as(tracked).bind(ALICE).fetch_one(&mut admin).await?;
    sqlx::query("UPDATE payment_methods SET exp_year = 2099 WHERE user_id = $1::uuid")
        .bind(ALICE)
        .execute(&mut admin)
        .await?;
    let (valid, calculated): (i32, chrono::DateTime<chrono::Utc>) =
        sqlx::query_as(tracked).bind(ALICE).fetch_one(&mut admin).await?;
    assert!(valid > expired, "a valid card counts: {expired} -> {valid}");
    sqlx::query("UPDATE payment_methods SET is_default = false WHERE user_id = $1::uuid")
        .bind(ALICE)
        .execute(&mut admin)
        .await?;
    let after_switch: (i32, chrono::DateTime<chrono::Utc>) =
        sqlx::query_as(tracked).bind(ALICE).fetch_one(&mut admin).await?;
    assert_eq!(after_switch, (valid, calculated), "not recomputed for a default switch");
    Ok(())
}

harness::on_both_templates!(
    flag_buckets_match_parker_flights_typescript,
    refresh_all_completion_backfills_every_traveler_in_committed_batches,
    a_cards_expiry_moves_the_score_and_a_default_switch_leaves_it,
    a_travelers_change_is_audited_with_their_request_and_stays_private,
);
