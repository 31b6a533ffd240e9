//! The AWS KMS key provider against moto: records survive a sidecar restart,
//! every tampering fails closed, and data keys are cached and retired.

use base64::Engine;
use harness::{Emulators, Sidecar};
use hyper::StatusCode;
use kms_sidecar::crypto::format;
use serde_json::json;

const B64: base64::engine::general_purpose::GeneralPurpose = base64::engine::general_purpose::STANDARD;
const ALICE: &str = "a11ce000-0000-4000-8000-000000000001";

fn context() -> serde_json::Value {
    json!({ "user_id": ALICE, "table": "payment_methods", "column": "encrypted_card_data", "record_id": "0000000a-0000-4000-8000-000000000001" })
}

async fn crypto(sidecar: &Sidecar, operation: &str, data: &str) -> anyhow::Result<harness::Response> {
    sidecar.crypto(operation, data, &context()).await
}

fn generate_calls(metrics: &str) -> u64 {
    harness::metric(metrics, "parker_wallet_kms_calls_total{operation=\"generate_data_key\"}")
}

/// A record re-encoded with one header field changed.
fn with_header(record: &[u8], key_ref: Option<&str>, epoch: Option<u32>, flip_wrapped: bool) -> String {
    let envelope = format::parse(record).expect("a record");
    let mut wrapped = envelope.wrapped_key.to_vec();
    if flip_wrapped {
        let middle = wrapped.len() / 2;
        wrapped[middle] ^= 0x01;
    }
    let mut out = format::encode_header(
        key_ref.unwrap_or(envelope.key_ref),
        epoch.unwrap_or(envelope.key_epoch),
        &wrapped,
        &envelope.nonce,
    )
    .expect("valid header");
    out.extend_from_slice(envelope.sealed);
    B64.encode(out)
}

#[tokio::test]
async fn a_record_outlives_its_sidecar_and_tampering_fails_closed() -> anyhow::Result<()> {
    let emulators = Emulators::from_env()?;
    let (alias, arn) = emulators.create_kms_key().await?;

    let first = Sidecar::start_with(emulators.kms_sidecar_config(&alias)?).await?;
    let ready = first.request("GET", "/readyz", None).await?;
    assert_eq!(ready.status, StatusCode::OK, "{}", ready.text);
    let encrypted = crypto(&first, "encrypt", &B64.encode(b"card metadata")).await?;
    assert_eq!(encrypted.status, StatusCode::OK, "{}", encrypted.text);
    let record = B64.decode(encrypted.json["data"].as_str().unwrap_or_default())?;
    assert_eq!(format::parse(&record)?.key_ref, arn, "records name the key's ARN, not the alias");
    drop(first);

    let second = Sidecar::start_with(emulators.kms_sidecar_config(&alias)?).await?;
    let decrypted = crypto(&second, "decrypt", &B64.encode(&record)).await?;
    assert_eq!(decrypted.status, StatusCode::OK, "{}", decrypted.text);
    assert_eq!(B64.decode(decrypted.json["data"].as_str().unwrap_or_default())?, b"card metadata");

    let (_, other_arn) = emulators.create_kms_key().await?;
    let missing_arn =
        arn.rsplit_once('/').map(|(a, _)| format!("{a}/00000000-0000-0000-0000-000000000000")).unwrap_or_default();
    let decrypt_calls =
        |metrics: &str| harness::metric(metrics, "parker_wallet_kms_calls_total{operation=\"decrypt\"}");
    let calls_before = decrypt_calls(&second.metrics().await?);
    // Checked before KMS is asked: the key named, and the epoch.
    for (tampered, what) in [
        (with_header(&record, None, Some(99), false), "an epoch newer than the configured one"),
        (with_header(&record, Some(&other_arn), None, false), "another KMS key"),
        (with_header(&record, Some(&missing_arn), None, false), "a key that does not exist"),
    ] {
        let response = crypto(&second, "decrypt", &tampered).await?;
        assert_eq!(
            (response.status, response.json["code"].as_str()),
            (StatusCode::UNPROCESSABLE_ENTITY, Some("key_not_accepted")),
            "{what}: {}",
            response.text
        );
    }
    assert_eq!(decrypt_calls(&second.metrics().await?), calls_before, "no KMS call for a key or epoch not configured");
    // Only KMS can tell a tampered wrapped key; it is asked once, then remembered.
    let tampered = with_header(&record, None, None, true);
    for _ in 0..5 {
        let response = crypto(&second, "decrypt", &tampered).await?;
        assert_eq!(
            (response.status, response.json["code"].as_str()),
            (StatusCode::UNPROCESSABLE_ENTITY, Some("key_rejected")),
            "{}",
            response.text
        );
        // KMS's own words stay in the log.
        assert!(!response.text.contains("Exception"), "{}", response.text);
    }
    let metrics = second.metrics().await?;
    assert_eq!(decrypt_calls(&metrics), calls_before + 1, "one KMS call for five forged records");
    assert_eq!(harness::metric(&metrics, "parker_wallet_records_refused_before_kms_total"), 7);
    Ok(())
}

#[tokio::test]
async fn ten_thousand_encryptions_take_a_handful_of_kms_calls() -> anyhow::Result<()> {
    let emulators = Emulators::from_env()?;
    let (alias, _) = emulators.create_kms_key().await?;
    let sidecar = std::sync::Arc::new(Sidecar::start_with(emulators.kms_sidecar_config(&alias)?).await?);
    let data = B64.encode([7u8; 256]);
    let mut workers = Vec::new();
    for _ in 0..16 {
        let sidecar = std::sync::Arc::clone(&sidecar);
        let data = data.clone();
        workers.push(tokio::spawn(async move {
            for _ in 0..625 {
                let response = crypto(&sidecar, "encrypt", &data).await?;
                anyhow::ensure!(response.status == StatusCode::OK, "{}", response.text);
            }
            Ok::<_, anyhow::Error>(())
        }));
    }
    for worker in workers {
        worker.await??;
    }
    let calls = generate_calls(&sidecar.metrics().await?);
    assert!(calls <= 3, "10,000 encryptions made {calls} GenerateDataKey calls");
    Ok(())
}

#[tokio::test]
async fn after_the_maximum_age_a_new_data_key_is_used() -> anyhow::Result<()> {
    let emulators = Emulators::from_env()?;
    let (alias, _) = emulators.create_kms_key().await?;
    let mut config = emulators.kms_sidecar_config(&alias)?;
    config.settings.cache.max_age_secs = 1;
    let sidecar = Sidecar::start_with(config).await?;
    let wrapped = |response: &harness::Response| -> anyhow::Result<Vec<u8>> {
        let record = B64.decode(response.json["data"].as_str().unwrap_or_default())?;
        Ok(format::parse(&record)?.wrapped_key.to_vec())
    };
    let a = crypto(&sidecar, "encrypt", "eA==").await?;
    let b = crypto(&sidecar, "encrypt", "eA==").await?;
    assert_eq!(wrapped(&a)?, wrapped(&b)?, "one data key within its age");
    tokio::time::sleep(std::time::Duration::from_millis(1_100)).await;
    let c = crypto(&sidecar, "encrypt", "eA==").await?;
    assert_ne!(wrapped(&a)?, wrapped(&c)?, "a new data key after max_age");
    assert_eq!(generate_calls(&sidecar.metrics().await?), 2);
    Ok(())
}

#[tokio::test]
async fn an_unreachable_kms_is_unavailable_not_a_wrong_answer() -> anyhow::Result<()> {
    let closed_port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let emulators = Emulators { moto_url: format!("http://127.0.0.1:{closed_port}"), localstripe_url: String::new() };
    let sidecar = Sidecar::start_with(emulators.kms_sidecar_config("alias/none")?).await?;
    let ready = sidecar.request("GET", "/readyz", None).await?;
    assert_eq!((ready.status, ready.json["status"].as_str()), (StatusCode::SERVICE_UNAVAILABLE, Some("not_ready")));
    let encrypted = crypto(&sidecar, "encrypt", "eA==").await?;
    assert_eq!(
        (encrypted.status, encrypted.json["code"].as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, Some("key_provider_unavailable"))
    );
    // Neither answer carries the provider's error text (it names the endpoint).
    let endpoint = format!("127.0.0.1:{closed_port}");
    assert!(ready.json["key_provider"].get("detail").is_none(), "{}", ready.text);
    assert!(
        !ready.text.contains(&endpoint) && !encrypted.text.contains(&endpoint),
        "{} {}",
        ready.text,
        encrypted.text
    );
    Ok(())
}

/// SIGTERM lets a request already in flight finish (here: waiting on a KMS that
/// never answers, until the KMS timeout) instead of cutting its connection.
#[tokio::test]
async fn sigterm_drains_in_flight_requests() -> anyhow::Result<()> {
    let port = harness::silent_tcp_port()?;
    let emulators = Emulators { moto_url: format!("http://127.0.0.1:{port}"), localstripe_url: String::new() };
    let mut config = emulators.kms_sidecar_config("alias/silent")?;
    if let Some(kms) = config.settings.keys.aws_kms.as_mut() {
        kms.timeout_ms = 1500;
    }
    let sidecar = Sidecar::start_with(config).await?;
    let stream = tokio::net::UnixStream::connect(&sidecar.socket).await?;
    let bearer = format!("Bearer {}", harness::traveler_token(ALICE, json!({})));
    let body = json!({ "data": "eA==", "context": context() }).to_string().into_bytes();
    let in_flight = tokio::spawn(async move {
        harness::send_raw(stream, "POST", "/v1/crypto/encrypt", &[("authorization", &bearer)], body).await
    });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let status = tokio::task::spawn_blocking(move || sidecar.terminate()).await??;
    let response = in_flight.await??;
    assert_eq!(
        (response.status, response.json["code"].as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, Some("key_provider_unavailable")),
        "the in-flight request got its answer: {}",
        response.text
    );
    assert!(status.success(), "exit status {status}");
    Ok(())
}
