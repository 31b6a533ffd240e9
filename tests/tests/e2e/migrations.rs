//! The migrations are reversible and leave no drift: up, down, up again on a clean
//! database gives the same schema, and down really returns to where we started.

use harness::{migrations_dir, schema_snapshot, Template, TestDb};
use kms_sidecar::migrate::{MigrateError, Migrator};

async fn up_down_up_leaves_no_drift(template: Template) -> anyhow::Result<()> {
    let db = TestDb::empty_on(template).await?;
    let mut conn = db.admin().await?;
    sqlx::raw_sql("CREATE EXTENSION parker_wallet").execute(&mut conn).await?;
    let migrator = Migrator::from_dir(&migrations_dir())?;
    let all: Vec<i64> = migrator.migrations().iter().map(|m| m.version).collect();
    assert!(all.len() >= 2, "expected the shipped migrations, found {all:?}");

    let clean = schema_snapshot(&mut conn).await?;
    assert_eq!(migrator.up(&mut conn, None).await?, all);
    let first_up = schema_snapshot(&mut conn).await?;
    assert_ne!(clean, first_up, "migrations changed nothing?");

    let mut reverted = migrator.down(&mut conn, 0).await?;
    reverted.reverse();
    assert_eq!(reverted, all);
    assert_eq!(schema_snapshot(&mut conn).await?, clean, "down did not return to the clean schema");

    assert_eq!(migrator.up(&mut conn, None).await?, all);
    assert_eq!(schema_snapshot(&mut conn).await?, first_up, "second up differs from the first");

    assert!(migrator.up(&mut conn, None).await?.is_empty(), "a second up must be a no-op");
    Ok(())
}

async fn each_step_down_and_up_again_restores_the_schema(template: Template) -> anyhow::Result<()> {
    let db = TestDb::migrated_on(template).await?;
    let mut conn = db.admin().await?;
    let migrator = Migrator::from_dir(&migrations_dir())?;
    let full = schema_snapshot(&mut conn).await?;
    for migration in migrator.migrations().iter().rev() {
        migrator.down(&mut conn, migration.version - 1).await?;
    }
    for migration in migrator.migrations() {
        migrator.up(&mut conn, Some(migration.version)).await?;
    }
    assert_eq!(schema_snapshot(&mut conn).await?, full);
    Ok(())
}

async fn migrations_refuse_to_run_without_the_extension(template: Template) -> anyhow::Result<()> {
    let db = TestDb::empty_on(template).await?;
    let mut conn = db.admin().await?;
    let migrator = Migrator::from_dir(&migrations_dir())?;
    let error = migrator.up(&mut conn, None).await.unwrap_err();
    assert!(matches!(error, MigrateError::Apply { version: 2, .. }), "{error}");
    assert!(error.to_string().contains("extension parker_wallet is not installed"), "{error}");
    // The failed migration left nothing behind: only the shim (0001) is applied.
    let applied: Vec<i64> =
        sqlx::query_scalar("SELECT version FROM parker_migrations.applied ORDER BY 1").fetch_all(&mut conn).await?;
    assert_eq!(applied, [1]);
    assert!(sqlx::query_scalar::<_, Option<String>>("SELECT to_regclass('public.traveler_profiles')::text")
        .fetch_one(&mut conn)
        .await?
        .is_none());
    Ok(())
}

async fn an_edited_applied_migration_is_refused(template: Template) -> anyhow::Result<()> {
    let db = TestDb::migrated_on(template).await?;
    let mut conn = db.admin().await?;
    sqlx::query("UPDATE parker_migrations.applied SET checksum = '\\x00' WHERE version = 2").execute(&mut conn).await?;
    let migrator = Migrator::from_dir(&migrations_dir())?;
    let error = migrator.up(&mut conn, None).await.unwrap_err();
    assert!(matches!(error, MigrateError::ChecksumMismatch { version: 2, .. }), "{error}");
    Ok(())
}

#[tokio::test]
async fn the_shim_leaves_an_existing_auth_schema_alone() -> anyhow::Result<()> {
    // As on Supabase: an auth schema that is not ours is neither replaced nor dropped.
    let db = TestDb::empty().await?;
    let mut conn = db.admin().await?;
    sqlx::raw_sql(
        "CREATE EXTENSION parker_wallet;
         CREATE SCHEMA auth;
         CREATE TABLE auth.users (id uuid PRIMARY KEY, created_at timestamptz, marker text DEFAULT 'supabase');
         CREATE FUNCTION auth.uid() RETURNS uuid LANGUAGE sql STABLE AS 'SELECT NULL::uuid';",
    )
    .execute(&mut conn)
    .await?;
    let migrator = Migrator::from_dir(&migrations_dir())?;
    migrator.up(&mut conn, None).await?;
    migrator.down(&mut conn, 0).await?;
    let marker: Option<String> =
        sqlx::query_scalar("SELECT column_default FROM information_schema.columns WHERE table_schema = 'auth' AND table_name = 'users' AND column_name = 'marker'")
            .fetch_optional(&mut conn)
            .await?;
    assert_eq!(marker.as_deref(), Some("'supabase'::text"));
    Ok(())
}

/// Client secrets stored before the sidecar redacted them are redacted by 0009;
/// the rest of each record stays.
async fn client_secrets_stored_earlier_are_redacted(template: Template) -> anyhow::Result<()> {
    let db = TestDb::empty_on(template).await?;
    let mut conn = db.admin().await?;
    sqlx::raw_sql("CREATE EXTENSION parker_wallet").execute(&mut conn).await?;
    let migrator = Migrator::from_dir(&migrations_dir())?;
    migrator.up(&mut conn, Some(8)).await?;
    let user = uuid::Uuid::new_v4();
    sqlx::query("INSERT INTO auth.users (id) VALUES ($1)").bind(user).execute(&mut conn).await?;
    let mut superuser = db.superuser().await?;
    sqlx::raw_sql(&format!(
        r#"INSERT INTO public.stripe_events (id, type, payload) VALUES ('evt_old', 'setup_intent.created',
             '{{"data": {{"object": {{"id": "seti_1", "client_secret": "seti_1_secret_abc", "note": "say \"hi\""}}}}}}');
           INSERT INTO public.idempotency_keys (user_id, key, route, request_fingerprint, state, response_status, response_body)
             VALUES ('{user}', 'k', 'POST /v1/wallet/setup-intents', '\x00', 'completed', 200,
                     '{{"setup_intent_id": "seti_1", "client_secret": "seti_1_secret_abc"}}');"#
    ))
    .execute(&mut superuser)
    .await?;
    assert_eq!(migrator.up(&mut conn, Some(9)).await?, [9]);
    let (event, answer): (serde_json::Value, serde_json::Value) = sqlx::query_as(
        "SELECT (SELECT payload FROM public.stripe_events), (SELECT response_body FROM public.idempotency_keys)",
    )
    .fetch_one(&mut superuser)
    .await?;
    assert_eq!(
        event["data"]["object"],
        serde_json::json!({ "id": "seti_1", "client_secret": "[redacted]", "note": "say \"hi\"" }),
        "{template}"
    );
    assert_eq!(answer, serde_json::json!({ "setup_intent_id": "seti_1", "client_secret": "[redacted]" }), "{template}");
    Ok(())
}

harness::on_both_templates!(
    client_secrets_stored_earlier_are_redacted,
    up_down_up_leaves_no_drift,
    each_step_down_and_up_again_restores_the_schema,
    migrations_refuse_to_run_without_the_extension,
    an_edited_applied_migration_is_refused,
);
