//! The Supabase-shaped cluster is shaped like Supabase: the roles and their
//! attributes, GoTrue's `auth` schema, supautils, Supabase's default grants, and
//! parker_wallet installed and migrated by the non-superuser `postgres` as a
//! Supabase project's operator would (tests/supabase/README.md).

use harness::{as_traveler, crate_dir, migrations_dir, new_traveler, Template, TestDb};
use kms_sidecar::migrate::Migrator;
use sqlx::PgConnection;

async fn role_attributes(conn: &mut PgConnection, role: &str) -> anyhow::Result<(bool, bool, bool)> {
    Ok(sqlx::query_as("SELECT rolsuper, rolcreaterole, rolbypassrls FROM pg_roles WHERE rolname = $1")
        .bind(role)
        .fetch_one(conn)
        .await?)
}

#[tokio::test]
async fn postgres_is_the_operator_and_supabase_admin_the_superuser() -> anyhow::Result<()> {
    let db = TestDb::migrated_on(Template::Supabase).await?;
    let mut admin = db.admin().await?;
    let (superuser, createrole, bypassrls) = role_attributes(&mut admin, "postgres").await?;
    assert!(
        !superuser && createrole && bypassrls,
        "postgres: super {superuser}, createrole {createrole}, bypassrls {bypassrls}"
    );
    assert!(role_attributes(&mut admin, "supabase_admin").await?.0, "supabase_admin is no superuser");

    let who: (String, String) =
        sqlx::query_as("SELECT current_user::text, current_setting('is_superuser')").fetch_one(&mut admin).await?;
    assert_eq!(who, ("postgres".to_owned(), "off".to_owned()));
    let who: (String, String) = sqlx::query_as("SELECT current_user::text, current_setting('is_superuser')")
        .fetch_one(&mut db.superuser().await?)
        .await?;
    assert_eq!(who, ("supabase_admin".to_owned(), "on".to_owned()));
    let owner: String =
        sqlx::query_scalar("SELECT pg_get_userbyid(datdba)::text FROM pg_database WHERE datname = current_database()")
            .fetch_one(&mut admin)
            .await?;
    assert_eq!(owner, "postgres");
    Ok(())
}

#[tokio::test]
async fn admin_and_superuser_on_both_templates() -> anyhow::Result<()> {
    for template in Template::ALL {
        let db = TestDb::migrated_on(template).await?;
        assert_eq!(db.template(), template);
        let admin: String = sqlx::query_scalar("SELECT current_user::text").fetch_one(&mut db.admin().await?).await?;
        assert_eq!(admin, "postgres", "{template}");
        let superuser: String =
            sqlx::query_scalar("SELECT current_setting('is_superuser')").fetch_one(&mut db.superuser().await?).await?;
        assert_eq!(superuser, "on", "{template}");
    }
    Ok(())
}

#[tokio::test]
async fn auth_is_gotrue_s_not_the_shim() -> anyhow::Result<()> {
    let db = TestDb::migrated_on(Template::Supabase).await?;
    let mut admin = db.admin().await?;
    // Columns of GoTrue's own auth.users, from its first migration to a late one.
    let columns: Vec<String> = sqlx::query_scalar(
        "SELECT column_name::text FROM information_schema.columns
          WHERE table_schema = 'auth' AND table_name = 'users' AND column_name IN ('instance_id', 'aud', 'is_anonymous')
          ORDER BY 1",
    )
    .fetch_all(&mut admin)
    .await?;
    assert_eq!(columns, ["aud", "instance_id", "is_anonymous"]);
    let owner: String =
        sqlx::query_scalar("SELECT pg_get_userbyid(relowner)::text FROM pg_class WHERE oid = 'auth.users'::regclass")
            .fetch_one(&mut admin)
            .await?;
    assert_eq!(owner, "supabase_auth_admin");
    let identities: Option<String> =
        sqlx::query_scalar("SELECT to_regclass('auth.identities')::text").fetch_one(&mut admin).await?;
    assert_eq!(identities.as_deref(), Some("auth.identities"));
    // Migration 0001 saw Supabase's auth schema and left it alone.
    let comment: Option<String> = sqlx::query_scalar("SELECT obj_description('auth'::regnamespace, 'pg_namespace')")
        .fetch_one(&mut admin)
        .await?;
    assert!(!comment.unwrap_or_default().contains("parker_wallet"), "the shim's auth schema is here");
    // Every vendored GoTrue migration ran, and is recorded as GoTrue records it.
    let newest = std::fs::read_dir(crate_dir().join("supabase/vendor/supabase-auth/migrations"))?
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter_map(|name| name.split('_').next().map(str::to_owned))
        .max()
        .expect("vendored GoTrue migrations");
    let recorded: bool = sqlx::query_scalar("SELECT EXISTS (SELECT FROM auth.schema_migrations WHERE version = $1)")
        .bind(&newest)
        .fetch_one(&mut db.superuser().await?)
        .await?;
    assert!(recorded, "GoTrue migration {newest} is not recorded");
    Ok(())
}

#[tokio::test]
async fn supautils_is_loaded_with_parker_wallet_privileged() -> anyhow::Result<()> {
    let db = TestDb::migrated_on(Template::Supabase).await?;
    let mut admin = db.admin().await?;
    let preload: String =
        sqlx::query_scalar("SELECT current_setting('session_preload_libraries')").fetch_one(&mut admin).await?;
    assert!(preload.split(',').any(|l| l.trim() == "supautils"), "session_preload_libraries = {preload:?}");
    let privileged: String =
        sqlx::query_scalar("SELECT current_setting('supautils.privileged_extensions')").fetch_one(&mut admin).await?;
    let privileged: Vec<&str> = privileged.split(',').map(str::trim).collect();
    assert!(privileged.contains(&"parker_wallet") && privileged.contains(&"pgcrypto"), "{privileged:?}");
    let superuser: String = sqlx::query_scalar("SELECT current_setting('supautils.privileged_extensions_superuser')")
        .fetch_one(&mut admin)
        .await?;
    assert_eq!(superuser, "supabase_admin");
    Ok(())
}

#[tokio::test]
async fn public_has_supabase_s_default_grants() -> anyhow::Result<()> {
    let db = TestDb::migrated_on(Template::Supabase).await?;
    // Tables any of these roles creates in public are granted to the API roles.
    for creator in ["postgres", "supabase_admin"] {
        let grantees: Vec<String> = sqlx::query_scalar(
            "SELECT DISTINCT pg_get_userbyid(a.grantee)::text
               FROM pg_default_acl d, aclexplode(d.defaclacl) a
              WHERE d.defaclnamespace = 'public'::regnamespace AND d.defaclobjtype = 'r'
                AND d.defaclrole = $1::regrole AND a.privilege_type = 'INSERT'
              ORDER BY 1",
        )
        .bind(creator)
        .fetch_all(&mut db.admin().await?)
        .await?;
        for role in ["anon", "authenticated", "service_role"] {
            assert!(grantees.iter().any(|g| g == role), "{creator}'s default grants in public: {grantees:?}");
        }
    }
    Ok(())
}

#[tokio::test]
async fn parker_wallet_is_installed_through_supautils_and_fully_migrated() -> anyhow::Result<()> {
    let db = TestDb::migrated_on(Template::Supabase).await?;
    let mut admin = db.admin().await?;
    // supautils created it as supabase_admin on behalf of postgres.
    let owner: String =
        sqlx::query_scalar("SELECT pg_get_userbyid(extowner)::text FROM pg_extension WHERE extname = 'parker_wallet'")
            .fetch_one(&mut admin)
            .await?;
    assert_eq!(owner, "supabase_admin");
    let applied: Vec<i64> =
        sqlx::query_scalar("SELECT version FROM parker_migrations.applied ORDER BY 1").fetch_all(&mut admin).await?;
    let shipped: Vec<i64> = Migrator::from_dir(&migrations_dir())?.migrations().iter().map(|m| m.version).collect();
    assert_eq!(applied, shipped);
    // The operator, who ran the migrations, owns the wallet's tables.
    let owner: String = sqlx::query_scalar(
        "SELECT pg_get_userbyid(relowner)::text FROM pg_class WHERE oid = 'public.traveler_profiles'::regclass",
    )
    .fetch_one(&mut admin)
    .await?;
    assert_eq!(owner, "postgres");
    Ok(())
}

#[tokio::test]
async fn a_traveler_is_created_and_served_as_on_supabase() -> anyhow::Result<()> {
    let db = TestDb::migrated_on(Template::Supabase).await?;
    // The fixtures' way: the operator writes auth.users (GoTrue's, RLS enabled) and the profile.
    let user = new_traveler(&db).await?;
    sqlx::query("INSERT INTO traveler_profiles (user_id, first_name) VALUES ($1::uuid, 'Ada')")
        .bind(&user)
        .execute(&mut db.admin().await?)
        .await?;
    // And the traveler's request, as PostgREST serves it, sees that profile.
    let mut conn = db.traveler().await?;
    let claims = format!(r#"{{"sub":"{user}","role":"authenticated","aud":"authenticated"}}"#);
    let mut tx = as_traveler(&mut conn, &claims).await?;
    let names: Vec<String> = sqlx::query_scalar("SELECT first_name FROM traveler_profiles").fetch_all(&mut *tx).await?;
    assert_eq!(names, ["Ada"]);
    Ok(())
}

#[tokio::test]
async fn an_empty_supabase_database_is_supabase_without_parker_wallet() -> anyhow::Result<()> {
    let db = TestDb::empty_on(Template::Supabase).await?;
    assert_eq!(db.template(), Template::Supabase);
    let mut admin = db.admin().await?;
    let (extension, wallet, migrations, users): (bool, Option<String>, Option<String>, Option<String>) =
        sqlx::query_as(
            "SELECT EXISTS (SELECT FROM pg_extension WHERE extname = 'parker_wallet'),
                (SELECT nspname::text FROM pg_namespace WHERE nspname = 'wallet'),
                to_regclass('parker_migrations.applied')::text, to_regclass('auth.users')::text",
        )
        .fetch_one(&mut admin)
        .await?;
    assert!(!extension && wallet.is_none() && migrations.is_none(), "{extension} {wallet:?} {migrations:?}");
    assert_eq!(users.as_deref(), Some("auth.users"));
    Ok(())
}
