//! Notification preferences in their documented shape, checked by the
//! extension in a CHECK constraint for every writer (a traveler through
//! PostgREST here), on both database templates.

use harness::{as_traveler, claims, migrations_dir, new_traveler, sqlstate, Template, TestDb};
use kms_sidecar::migrate::Migrator;
use serde_json::{json, Value};

/// Writes `preferences` as the traveler (PostgREST's way); the refusal's
/// SQLSTATE and message, if refused.
async fn write(db: &TestDb, traveler: &str, preferences: &Value) -> anyhow::Result<Result<(), (String, String)>> {
    let mut conn = db.traveler().await?;
    let mut tx = as_traveler(&mut conn, &claims(traveler)).await?;
    let written = sqlx::query("UPDATE traveler_profiles SET notification_preferences = $1 WHERE user_id = $2::uuid")
        .bind(preferences)
        .bind(traveler)
        .execute(&mut *tx)
        .await;
    Ok(match written {
        Ok(_) => {
            tx.commit().await?;
            Ok(())
        }
        Err(error) => {
            let message = error.as_database_error().map(|e| e.message().to_owned()).unwrap_or_default();
            Err((sqlstate(&error).unwrap_or_default(), message))
        }
    })
}

async fn score(db: &TestDb, traveler: &str) -> anyhow::Result<i32> {
    Ok(sqlx::query_scalar("SELECT completeness_score FROM profile_completion_tracking WHERE user_id = $1::uuid")
        .bind(traveler)
        .fetch_one(&mut db.admin().await?)
        .await?)
}

#[tokio::test]
async fn preferences_are_checked_for_every_writer_naming_the_bad_field() -> anyhow::Result<()> {
    for template in [Template::Plain, Template::Supabase] {
        let db = TestDb::migrated_on(template).await?;
        let ada = new_traveler(&db).await?;
        sqlx::query("INSERT INTO traveler_profiles (user_id, first_name, phone_number) VALUES ($1::uuid, 'Ada', '+351912345678')")
            .bind(&ada)
            .execute(&mut db.admin().await?)
            .await?;
        let before = score(&db, &ada).await?;

        let documented = json!({
            "channels": { "email": true, "sms": false, "push": true },
            "topics": { "price_drops": true, "booking_confirmations": true, "authentication_needed": true, "marketing": false },
            "quiet_hours": { "start": "22:00", "end": "07:00", "time_zone": "Europe/Lisbon" },
        });
        assert_eq!(write(&db, &ada, &documented).await?, Ok(()), "{template}");
        assert_eq!(score(&db, &ada).await?, before + 10, "{template}: valid preferences count");

        for (preferences, message) in [
            (json!({ "email": true }), "notification_preferences.email: is not a known field"),
            (
                json!({ "channels": { "email": "yes" } }),
                "notification_preferences.channels.email: must be true or false",
            ),
            (
                json!({ "quiet_hours": { "start": "22:00", "end": "07:00", "time_zone": "Mars/Olympus" } }),
                "notification_preferences.quiet_hours.time_zone: must be a time zone name",
            ),
            (
                json!({ "channels": { "sms": true } }),
                "notification_preferences.channels.sms: SMS needs a verified phone number",
            ),
        ] {
            let (code, refused) = write(&db, &ada, &preferences).await?.expect_err(&preferences.to_string());
            assert_eq!(code, "23514", "{template}: {preferences}");
            assert!(refused.starts_with(message), "{template}: {preferences}: {refused}");
        }
        assert_eq!(score(&db, &ada).await?, before + 10, "{template}: a refused write changes nothing");

        // Once the phone is verified (the sidecar's doing), SMS may be on...
        let mut admin = db.admin().await?;
        sqlx::query("UPDATE traveler_profiles SET phone_verified = true WHERE user_id = $1::uuid")
            .bind(&ada)
            .execute(&mut admin)
            .await?;
        let with_sms = json!({ "channels": { "email": true, "sms": true } });
        assert_eq!(write(&db, &ada, &with_sms).await?, Ok(()), "{template}");
        // ...until the number changes: unverified, SMS off, nothing refused.
        let mut conn = db.traveler().await?;
        let mut tx = as_traveler(&mut conn, &claims(&ada)).await?;
        sqlx::query("UPDATE traveler_profiles SET phone_number = '+442079460958' WHERE user_id = $1::uuid")
            .bind(&ada)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        let (verified, preferences): (bool, Value) = sqlx::query_as(
            "SELECT phone_verified, notification_preferences FROM traveler_profiles WHERE user_id = $1::uuid",
        )
        .bind(&ada)
        .fetch_one(&mut admin)
        .await?;
        assert_eq!(
            (verified, preferences),
            (false, json!({ "channels": { "email": true, "sms": false } })),
            "{template}"
        );
    }
    Ok(())
}

/// Values written before migration 0013 (a flat object of channels) are
/// carried into the documented shape; SMS to an unverified phone goes off.
#[tokio::test]
async fn the_migration_carries_the_earlier_shape_over() -> anyhow::Result<()> {
    let db = TestDb::empty().await?;
    let mut conn = db.admin().await?;
    sqlx::raw_sql("CREATE EXTENSION parker_wallet").execute(&mut conn).await?;
    let migrator = Migrator::from_dir(&migrations_dir())?;
    migrator.up(&mut conn, Some(12)).await?;
    let (ada, bob) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
    sqlx::raw_sql(&format!(
        r#"INSERT INTO auth.users (id) VALUES ('{ada}'), ('{bob}');
           INSERT INTO traveler_profiles (user_id, notification_preferences) VALUES
             ('{ada}', '{{"email": true, "sms": true}}'), ('{bob}', '{{}}');"#
    ))
    .execute(&mut conn)
    .await?;
    assert_eq!(migrator.up(&mut conn, Some(13)).await?, [13]);
    let carried: Vec<Value> =
        sqlx::query_scalar("SELECT notification_preferences FROM traveler_profiles ORDER BY user_id = $1 DESC")
            .bind(ada)
            .fetch_all(&mut conn)
            .await?;
    assert_eq!(carried, [json!({ "channels": { "email": true, "sms": false } }), json!({})]);
    Ok(())
}
