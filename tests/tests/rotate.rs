//! `kms-sidecar rotate-keys`: moves a column's records to the current key epoch
//! in batches, and a second run finds nothing left to do.

use std::process::Command;

use base64::Engine;
use harness::{Sidecar, TestDb};
use kms_sidecar::crypto::format;
use serde_json::json;

const B64: base64::engine::general_purpose::GeneralPurpose = base64::engine::general_purpose::STANDARD;
const ALICE: &str = "a11ce000-0000-4000-8000-000000000001";

fn rotate(sidecar: &Sidecar, db: &TestDb, epoch: u32) -> anyhow::Result<String> {
    let output = Command::new(std::env::var("PW_SIDECAR_BIN")?)
        .args(["rotate-keys", "--table", "payment_methods", "--column", "encrypted_card_data", "--batch-size", "2", "--config"])
        .arg(sidecar.dir().join("sidecar.toml"))
        .env("PW__KEYS__EPOCH", epoch.to_string())
        .env("DATABASE_URL", db.url("postgres")?)
        .output()?;
    anyhow::ensure!(output.status.success(), "rotate-keys failed: {}", String::from_utf8_lossy(&output.stderr));
    Ok(String::from_utf8(output.stdout)?)
}

#[tokio::test]
async fn rotate_keys_rewraps_in_batches_and_is_resumable() -> anyhow::Result<()> {
    let sidecar = Sidecar::start().await?;
    let db = TestDb::migrated().await?;
    let mut conn = db.admin().await?;
    sqlx::raw_sql(&format!(
        "INSERT INTO auth.users (id) VALUES ('{ALICE}');
         INSERT INTO wallet_customers (user_id, stripe_customer_id) VALUES ('{ALICE}', 'cus_rot');"
    ))
    .execute(&mut conn)
    .await?;
    let context = json!({ "user_id": ALICE, "table": "payment_methods", "column": "encrypted_card_data" });
    for n in 0..5 {
        let encrypted = sidecar
            .request("POST", "/v1/crypto/encrypt", Some(json!({ "data": B64.encode(format!("card {n}")), "context": context })))
            .await?;
        let record = B64.decode(encrypted.json["data"].as_str().unwrap_or_default())?;
        sqlx::query(
            "INSERT INTO payment_methods (user_id, stripe_customer_id, stripe_payment_method_id, encrypted_card_data, encryption_version)
             VALUES ($1::uuid, 'cus_rot', $2, $3, 1)",
        )
        .bind(ALICE)
        .bind(format!("pm_rot{n}"))
        .bind(record)
        .execute(&mut conn)
        .await?;
    }

    let first = rotate(&sidecar, &db, 2)?;
    assert!(first.contains("5 examined, 5 rewrapped"), "{first}");
    let rows: Vec<(Vec<u8>, i16)> =
        sqlx::query_as("SELECT encrypted_card_data, encryption_version FROM payment_methods ORDER BY stripe_payment_method_id")
            .fetch_all(&mut conn)
            .await?;
    for (n, (record, version)) in rows.iter().enumerate() {
        assert_eq!((format::parse(record)?.key_epoch, *version), (2, 2));
        let decrypted = sidecar
            .request("POST", "/v1/crypto/decrypt", Some(json!({ "data": B64.encode(record), "context": context })))
            .await?;
        assert_eq!(B64.decode(decrypted.json["data"].as_str().unwrap_or_default())?, format!("card {n}").as_bytes());
    }

    let again = rotate(&sidecar, &db, 2)?;
    assert!(again.contains("5 examined, 0 rewrapped"), "{again}");
    Ok(())
}
