//! The database's side of the boundary: wallet.encrypt/decrypt call the stack's
//! sidecar for the session's own traveler (or any, for a role granted system
//! decryption); a dead or hung sidecar gives a clean SQL error, on time, and a
//! cancel is honoured while waiting.

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use harness::{as_traveler, claims, sqlstate, Template, TestDb};

const ALICE: &str = "a11ce000-0000-4000-8000-000000000001";
const BOB: &str = "b0b00000-0000-4000-8000-000000000002";
const CONTEXT: &str = r#"{"user_id":"a11ce000-0000-4000-8000-000000000001","table":"payment_methods","column":"encrypted_card_data","record_id":"0000000a-0000-4000-8000-000000000001"}"#;
const OTHER_CONTEXT: &str = r#"{"user_id":"b0b00000-0000-4000-8000-000000000002","table":"payment_methods","column":"encrypted_card_data","record_id":"0000000a-0000-4000-8000-000000000001"}"#;

fn context_of(user: &str) -> String {
    format!(
        r#"{{"user_id":"{user}","table":"payment_methods","column":"encrypted_card_data","record_id":"0000000a-0000-4000-8000-00000000000{}"}}"#,
        &user[..1]
    )
}

#[tokio::test]
async fn sql_round_trips_through_the_sidecar_and_binds_the_context() -> anyhow::Result<()> {
    let db = TestDb::migrated().await?;
    let mut conn = db.admin().await?;
    let record: Vec<u8> = sqlx::query_scalar("SELECT wallet.encrypt('card metadata'::bytea, $1::jsonb)")
        .bind(CONTEXT)
        .fetch_one(&mut conn)
        .await?;
    assert_eq!(record[0], 3, "format version 3");
    let plain: Vec<u8> = sqlx::query_scalar("SELECT wallet.decrypt($1, $2::jsonb)")
        .bind(&record)
        .bind(CONTEXT)
        .fetch_one(&mut conn)
        .await?;
    assert_eq!(plain, b"card metadata");

    let error = sqlx::query("SELECT wallet.decrypt($1, $2::jsonb)")
        .bind(&record)
        .bind(OTHER_CONTEXT)
        .execute(&mut conn)
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&error).as_deref(), Some("22000"), "{error}");
    assert!(error.to_string().contains("decryption_failed"), "{error}");

    let error = sqlx::query("SELECT wallet.encrypt('x'::bytea, '{\"user_id\":\"nope\"}'::jsonb)")
        .execute(&mut conn)
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&error).as_deref(), Some("22023"), "{error}");

    let health: serde_json::Value = sqlx::query_scalar("SELECT wallet.sidecar_health()").fetch_one(&mut conn).await?;
    assert_eq!((health["reachable"].as_bool(), health["ready"].as_bool()), (Some(true), Some(true)), "{health}");
    Ok(())
}

#[tokio::test]
async fn travelers_cannot_call_the_crypto_functions() -> anyhow::Result<()> {
    let db = TestDb::migrated().await?;
    let mut conn = db.traveler().await?;
    let mut tx = as_traveler(&mut conn, r#"{"sub":"a11ce000-0000-4000-8000-000000000001"}"#).await?;
    let error = sqlx::query("SELECT wallet.decrypt('\\x02'::bytea, $1::jsonb)")
        .bind(CONTEXT)
        .execute(&mut *tx)
        .await
        .unwrap_err();
    assert_eq!(sqlstate(&error).as_deref(), Some("42501"), "{error}");
    Ok(())
}

/// The attack: any role granted EXECUTE on wallet.decrypt opened any
/// traveler's records. Now a session opens its own `wallet.uid()`'s records,
/// unless its role was granted `parker_wallet_system_decrypt`.
async fn wallet_decrypt_is_bound_to_who_asks(template: Template) -> anyhow::Result<()> {
    let db = TestDb::migrated_on(template).await?;
    let mut superuser = db.superuser().await?;
    sqlx::raw_sql(
        "GRANT EXECUTE ON FUNCTION wallet.encrypt(bytea, jsonb), wallet.decrypt(bytea, jsonb) TO authenticated",
    )
    .execute(&mut superuser)
    .await?;
    let mut conn = db.traveler().await?;
    let mut sealed = Vec::new();
    for user in [ALICE, BOB] {
        let mut tx = as_traveler(&mut conn, &claims(user)).await?;
        let record: Vec<u8> = sqlx::query_scalar("SELECT wallet.encrypt(convert_to($1, 'UTF8'), $2::jsonb)")
            .bind(format!("card of {user}"))
            .bind(context_of(user))
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;
        sealed.push(record);
    }
    let decrypt = "SELECT convert_from(wallet.decrypt($1, $2::jsonb), 'UTF8')";

    let mut tx = as_traveler(&mut conn, &claims(ALICE)).await?;
    let own: String = sqlx::query_scalar(decrypt).bind(&sealed[0]).bind(context_of(ALICE)).fetch_one(&mut *tx).await?;
    assert_eq!(own, format!("card of {ALICE}"), "{template}");
    for (sql, what) in [(decrypt, "decrypt Bob's record"), ("SELECT wallet.encrypt($1, $2::jsonb)", "encrypt as Bob")] {
        let mut savepoint = sqlx::Connection::begin(&mut *tx).await?;
        let error = sqlx::query(sql).bind(&sealed[1]).bind(context_of(BOB)).execute(&mut *savepoint).await.unwrap_err();
        assert_eq!(sqlstate(&error).as_deref(), Some("42501"), "{template}, Alice may not {what}: {error}");
        assert!(error.to_string().contains("another traveler"), "{error}");
    }
    drop(tx);

    let mut tx = as_traveler(&mut conn, "").await?;
    let error = sqlx::query(decrypt).bind(&sealed[0]).bind(context_of(ALICE)).execute(&mut *tx).await.unwrap_err();
    assert_eq!(sqlstate(&error).as_deref(), Some("42501"), "{template}, no traveler in the session: {error}");
    drop(tx);

    // System decryption, granted explicitly to a role of its own (roles are the
    // cluster's: a throwaway one, so other tests' databases never see the grant).
    let system = format!("pw_test_system_{}", uuid::Uuid::new_v4().simple());
    sqlx::raw_sql(&format!(
        "CREATE ROLE {system} NOLOGIN; GRANT {system} TO {login};
         GRANT EXECUTE ON FUNCTION wallet.decrypt(bytea, jsonb) TO {system};
         GRANT parker_wallet_system_decrypt TO {system};",
        login = harness::TRAVELER_LOGIN,
    ))
    .execute(&mut superuser)
    .await?;
    let mut tx = harness::as_role(&mut conn, &system, "").await?;
    let bobs =
        sqlx::query_scalar::<_, String>(decrypt).bind(&sealed[1]).bind(context_of(BOB)).fetch_one(&mut *tx).await;
    drop(tx);
    sqlx::raw_sql(&format!("DROP OWNED BY {system}; DROP ROLE {system};")).execute(&mut superuser).await?;
    assert_eq!(bobs?, format!("card of {BOB}"), "{template}: system decryption, granted explicitly");

    // Granted to an API role, it is a finding of the security lint (seen only
    // inside this transaction, rolled back).
    let mut tx = sqlx::Connection::begin(&mut superuser).await?;
    sqlx::raw_sql("GRANT parker_wallet_system_decrypt TO authenticated").execute(&mut *tx).await?;
    let codes: Vec<String> =
        sqlx::query_scalar("SELECT code FROM wallet.security_report() WHERE object_name = 'authenticated'")
            .fetch_all(&mut *tx)
            .await?;
    tx.rollback().await?;
    assert_eq!(codes, ["system_decrypt_for_api_role"], "{template}");
    Ok(())
}

harness::on_both_templates!(wallet_decrypt_is_bound_to_who_asks);

#[tokio::test]
async fn a_missing_sidecar_is_a_clean_error_and_health_says_so() -> anyhow::Result<()> {
    let db = TestDb::migrated().await?;
    let mut conn = db.admin().await?;
    sqlx::query("SET parker_wallet.sidecar_socket = '/nonexistent/parker/sidecar.sock'").execute(&mut conn).await?;
    let error =
        sqlx::query("SELECT wallet.encrypt('x'::bytea, $1::jsonb)").bind(CONTEXT).execute(&mut conn).await.unwrap_err();
    assert_eq!(sqlstate(&error).as_deref(), Some("08006"), "{error}");
    assert!(error.to_string().contains("unreachable"), "{error}");
    let health: serde_json::Value = sqlx::query_scalar("SELECT wallet.sidecar_health()").fetch_one(&mut conn).await?;
    assert_eq!(health["reachable"], false, "{health}");
    Ok(())
}

/// A socket that accepts connections and never answers: a hung sidecar.
fn silent_sidecar() -> anyhow::Result<(tempfile::TempDir, std::path::PathBuf)> {
    let dir = tempfile::Builder::new().prefix("pw-silent-").tempdir()?;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))?;
    let path = dir.path().join("silent.sock");
    let listener = std::os::unix::net::UnixListener::bind(&path)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o777))?;
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming().flatten() {
            held.push(stream);
        }
    });
    Ok((dir, path))
}

/// A superuser session whose wallet.encrypt talks to `socket`, waiting `timeout_ms`.
async fn session_on(db: &TestDb, socket: &std::path::Path, timeout_ms: u32) -> anyhow::Result<sqlx::PgConnection> {
    let mut conn = db.admin().await?;
    sqlx::query(&format!("SET parker_wallet.sidecar_socket = '{}'", socket.display())).execute(&mut conn).await?;
    sqlx::query(&format!("SET parker_wallet.sidecar_timeout_ms = {timeout_ms}")).execute(&mut conn).await?;
    Ok(conn)
}

#[tokio::test]
async fn a_hung_sidecar_times_out_on_time() -> anyhow::Result<()> {
    let (_dir, socket) = silent_sidecar()?;
    let db = TestDb::migrated().await?;
    let mut conn = session_on(&db, &socket, 300).await?;
    let started = Instant::now();
    let error =
        sqlx::query("SELECT wallet.encrypt('x'::bytea, $1::jsonb)").bind(CONTEXT).execute(&mut conn).await.unwrap_err();
    let took = started.elapsed();
    assert_eq!(sqlstate(&error).as_deref(), Some("58030"), "{error}");
    assert!(error.to_string().contains("within 300 ms"), "{error}");
    assert!(took < Duration::from_secs(2), "took {took:?}");
    Ok(())
}

#[tokio::test]
async fn a_cancel_interrupts_the_wait() -> anyhow::Result<()> {
    let (_dir, socket) = silent_sidecar()?;
    let db = TestDb::migrated().await?;
    let mut conn = session_on(&db, &socket, 60_000).await?;
    let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()").fetch_one(&mut conn).await?;
    let mut other = db.admin().await?;
    let canceller = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(400)).await;
        sqlx::query("SELECT pg_cancel_backend($1)").bind(pid).execute(&mut other).await
    });
    let started = Instant::now();
    let error =
        sqlx::query("SELECT wallet.encrypt('x'::bytea, $1::jsonb)").bind(CONTEXT).execute(&mut conn).await.unwrap_err();
    let took = started.elapsed();
    canceller.await??;
    assert_eq!(sqlstate(&error).as_deref(), Some("57014"), "{error}");
    assert!(took < Duration::from_secs(3), "cancel took {took:?}");
    // The session is usable afterwards.
    let one: i32 = sqlx::query_scalar("SELECT 1").fetch_one(&mut conn).await?;
    assert_eq!(one, 1);
    Ok(())
}
