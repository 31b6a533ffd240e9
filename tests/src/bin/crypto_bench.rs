//! Throughput and latency of the sidecar's encrypt/decrypt over its socket, with
//! 1, 8 and 64 concurrent clients (one kept-alive connection each), against a
//! baseline that calls KMS (moto) for every record. Run by bench/crypto.sh,
//! which starts the stack; prints a table, asserts nothing.

// Test code: a failed unwrap is a failed test (or benchmark), with its message.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use aws_sdk_kms::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_kms::primitives::Blob;
use base64::Engine;
use harness::bench::{print_row, run, summary, Operation};
use harness::{Emulators, Sidecar, SidecarConfig};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use serde_json::json;

const B64: base64::engine::general_purpose::GeneralPurpose = base64::engine::general_purpose::STANDARD;
const CONTEXT: &str = r#"{"user_id":"a11ce000-0000-4000-8000-000000000001","table":"payment_methods","column":"encrypted_card_data","record_id":"0000000a-0000-4000-8000-000000000001"}"#;

/// A client with one kept-alive HTTP/1.1 connection to the sidecar, calling as
/// an Edge Function does: the traveler's token, verified on every request.
async fn sidecar_client(
    socket: std::path::PathBuf,
    path: &'static str,
    data: String,
    bearer: String,
) -> anyhow::Result<Operation> {
    let stream = tokio::net::UnixStream::connect(&socket).await?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    let sender = Arc::new(tokio::sync::Mutex::new(sender));
    let context: serde_json::Value = serde_json::from_str(CONTEXT)?;
    let body = Bytes::from(json!({ "data": data, "context": context }).to_string());
    Ok(Box::new(move || {
        let sender = Arc::clone(&sender);
        let body = body.clone();
        let bearer = bearer.clone();
        Box::pin(async move {
            let request = hyper::Request::post(path)
                .header("host", "sidecar")
                .header("authorization", bearer)
                .body(Full::new(body))?;
            let response = sender.lock().await.send_request(request).await?;
            let status = response.status();
            response.into_body().collect().await?;
            anyhow::ensure!(status.is_success(), "{path}: {status}");
            Ok(())
        })
    }))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    kms_sidecar::tls::ensure_provider();
    let seconds: u64 = std::env::var("BENCH_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(3);
    let duration = Duration::from_secs(seconds);
    let record = [7u8; 256];
    let sidecar = Sidecar::start_with(SidecarConfig::traveler_crypto()?).await?;
    let context: serde_json::Value = serde_json::from_str(CONTEXT)?;
    let bearer =
        format!("Bearer {}", harness::traveler_token(context["user_id"].as_str().unwrap_or_default(), json!({})));
    let encrypted = sidecar.crypto("encrypt", &B64.encode(record), &context).await?;
    let ciphertext = encrypted.json["data"].as_str().unwrap_or_default().to_owned();

    println!(
        "\n{:<52} {:>10} {:>10} {:>10}",
        format!("256-byte records, {seconds} s per row"),
        "ops/s",
        "p50 µs",
        "p99 µs"
    );
    let mut socket_best = 0f64;
    let mut decrypt_one_client_p99 = Duration::ZERO;
    for (label, path, data) in
        [("encrypt", "/v1/crypto/encrypt", B64.encode(record)), ("decrypt", "/v1/crypto/decrypt", ciphertext.clone())]
    {
        for clients in [1, 8, 64] {
            let socket = sidecar.socket.clone();
            let data = data.clone();
            let result =
                run(clients, duration, || sidecar_client(socket.clone(), path, data.clone(), bearer.clone())).await?;
            socket_best = socket_best.max(result.ops_per_sec);
            if label == "decrypt" && clients == 1 {
                decrypt_one_client_p99 = result.p99;
            }
            print_row(&format!("sidecar socket, {label}, {clients} clients"), &result);
        }
    }

    // The baseline: a KMS call (moto) for every record, with the real AWS client.
    let emulators = Emulators::from_env()?;
    let (alias, _) = emulators.create_kms_key().await?;
    let config = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(&emulators.moto_url)
        .credentials_provider(Credentials::new("testing", "testing", None, None, "bench"))
        .load()
        .await;
    let kms = aws_sdk_kms::Client::new(&config);
    let blob = kms.encrypt().key_id(&alias).plaintext(Blob::new(record.to_vec())).send().await?;
    let kms_ciphertext = blob.ciphertext_blob().map(|b| b.as_ref().to_vec()).unwrap_or_default();
    let mut baseline_best = 0f64;
    for (label, decrypting) in [("Encrypt", false), ("Decrypt", true)] {
        for clients in [1, 8] {
            let kms = kms.clone();
            let alias = alias.clone();
            let kms_ciphertext = kms_ciphertext.clone();
            let result = run(clients, duration, || {
                let kms = kms.clone();
                let alias = alias.clone();
                let kms_ciphertext = kms_ciphertext.clone();
                async move {
                    let operation: Operation = Box::new(move || {
                        let kms = kms.clone();
                        let alias = alias.clone();
                        let kms_ciphertext = kms_ciphertext.clone();
                        Box::pin(async move {
                            if decrypting {
                                kms.decrypt().ciphertext_blob(Blob::new(kms_ciphertext)).send().await?;
                            } else {
                                kms.encrypt().key_id(alias).plaintext(Blob::new(record.to_vec())).send().await?;
                            }
                            Ok(())
                        })
                    });
                    Ok(operation)
                }
            })
            .await?;
            baseline_best = baseline_best.max(result.ops_per_sec);
            print_row(&format!("baseline: KMS {label} per record (moto), {clients} clients"), &result);
        }
    }
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    println!(
        "\nbest socket throughput {:.0} ops/s on {cores} cores shared by client and sidecar ({:.0} per core); {:.0}x the best per-call KMS baseline",
        socket_best,
        socket_best / cores as f64,
        socket_best / baseline_best.max(1.0)
    );
    summary(
        "sidecar socket encrypt/decrypt",
        &format!(
            "{:.0} ops/s per core; decrypt p99 at 1 client {} µs",
            socket_best / cores as f64,
            decrypt_one_client_p99.as_micros()
        ),
        &format!("{:.0}x per-call KMS", socket_best / baseline_best.max(1.0)),
        "keep",
    )?;
    println!("CIPHERTEXT={ciphertext}");
    Ok(())
}
