//! The sidecar's encryption routes over its socket: round trips, context
//! binding, caller classes, limits, secrets that never reach a log.

use std::process::Command;

use base64::Engine;
use harness::{own_uid, send_raw, Sidecar, SidecarConfig};
use hyper::StatusCode;
use serde_json::json;

const B64: base64::engine::general_purpose::GeneralPurpose = base64::engine::general_purpose::STANDARD;

fn context(user: &str) -> serde_json::Value {
    json!({ "user_id": user, "table": "payment_methods", "column": "encrypted_card_data" })
}

const ALICE: &str = "a11ce000-0000-4000-8000-000000000001";
const BOB: &str = "b0b00000-0000-4000-8000-000000000002";

async fn encrypt(sidecar: &Sidecar, data: &[u8], ctx: serde_json::Value) -> anyhow::Result<String> {
    let response = sidecar
        .request("POST", "/v1/crypto/encrypt", Some(json!({ "data": B64.encode(data), "context": ctx })))
        .await?;
    assert_eq!(response.status, StatusCode::OK, "{}", response.text);
    Ok(response.json["data"].as_str().unwrap_or_default().to_owned())
}

#[tokio::test]
async fn records_round_trip_and_refuse_another_context() -> anyhow::Result<()> {
    let sidecar = Sidecar::start().await?;
    let record = encrypt(&sidecar, b"{\"brand\":\"visa\"}", context(ALICE)).await?;
    let decrypted = sidecar
        .request("POST", "/v1/crypto/decrypt", Some(json!({ "data": record, "context": context(ALICE) })))
        .await?;
    assert_eq!(decrypted.status, StatusCode::OK);
    assert_eq!(B64.decode(decrypted.json["data"].as_str().unwrap())?, b"{\"brand\":\"visa\"}");

    for (wrong, what) in [
        (context(BOB), "another traveler"),
        (json!({ "user_id": ALICE, "table": "traveler_profiles", "column": "encrypted_card_data" }), "another table"),
        (json!({ "user_id": ALICE, "table": "payment_methods", "column": "last4" }), "another column"),
    ] {
        let response = sidecar.request("POST", "/v1/crypto/decrypt", Some(json!({ "data": record, "context": wrong }))).await?;
        assert_eq!(response.status, StatusCode::UNPROCESSABLE_ENTITY, "{what}");
        assert_eq!(response.json["code"], "decryption_failed", "{what}");
        assert_eq!(response.content_type.as_deref(), Some("application/problem+json"));
    }

    let rewrapped = sidecar.request("POST", "/v1/crypto/rewrap", Some(json!({ "data": record, "context": context(ALICE) }))).await?;
    assert_eq!(rewrapped.status, StatusCode::OK);
    assert_ne!(rewrapped.json["data"], json!(record));
    Ok(())
}

#[tokio::test]
async fn bad_input_gets_a_stable_problem_code() -> anyhow::Result<()> {
    let sidecar = Sidecar::start().await?;
    let cases = [
        (json!({ "data": "not base64!", "context": context(ALICE) }), "/v1/crypto/encrypt", 400, "invalid_request"),
        (json!({ "data": "", "context": context(ALICE), "extra": 1 }), "/v1/crypto/encrypt", 400, "invalid_request"),
        (json!({ "data": "", "context": { "user_id": ALICE, "table": "x; drop table y", "column": "c" } }), "/v1/crypto/encrypt", 400, "invalid_context"),
        (json!({ "data": "", "context": { "user_id": "nope", "table": "t", "column": "c" } }), "/v1/crypto/encrypt", 400, "invalid_context"),
        (json!({ "data": B64.encode([1, 0, 0, 0]), "context": context(ALICE) }), "/v1/crypto/decrypt", 422, "unsupported_ciphertext_version"),
        (json!({ "data": B64.encode([9]), "context": context(ALICE) }), "/v1/crypto/decrypt", 422, "unsupported_ciphertext_version"),
        (json!({ "data": B64.encode([2, 5, b'a']), "context": context(ALICE) }), "/v1/crypto/decrypt", 422, "malformed_ciphertext"),
    ];
    for (body, path, status, code) in cases {
        let response = sidecar.request("POST", path, Some(body.clone())).await?;
        assert_eq!((response.status.as_u16(), response.json["code"].as_str()), (status, Some(code)), "{body}");
    }
    let garbage = send_raw(tokio::net::UnixStream::connect(&sidecar.socket).await?, "POST", "/v1/crypto/encrypt", &[], b"{not json".to_vec()).await?;
    assert_eq!(garbage.json["code"], "invalid_request");
    let huge = vec![b'a'; 200 * 1024];
    let too_large = send_raw(tokio::net::UnixStream::connect(&sidecar.socket).await?, "POST", "/v1/crypto/encrypt", &[], huge).await?;
    assert_eq!((too_large.status, too_large.json["code"].as_str()), (StatusCode::PAYLOAD_TOO_LARGE, Some("payload_too_large")));
    Ok(())
}

#[tokio::test]
async fn a_caller_outside_the_map_is_refused_everything() -> anyhow::Result<()> {
    let sidecar = Sidecar::start_with(SidecarConfig { callers: "edge = [4242]".into(), ..Default::default() }).await?;
    for (method, path) in [("GET", "/healthz"), ("GET", "/readyz"), ("POST", "/v1/crypto/encrypt"), ("GET", "/metrics")] {
        let response = sidecar.request(method, path, Some(json!({}))).await?;
        assert_eq!((response.status, response.json["code"].as_str()), (StatusCode::FORBIDDEN, Some("caller_not_allowed")), "{path}");
    }
    Ok(())
}

/// The `database` class (the postgres OS user) reaches the crypto routes only.
#[tokio::test]
async fn the_database_caller_gets_the_crypto_routes_only() -> anyhow::Result<()> {
    if own_uid() != 0 {
        eprintln!("skipped: needs root to act as the postgres OS user");
        return Ok(());
    }
    let sidecar = Sidecar::start().await?;
    let as_postgres = |method: &str, path: &str, body: &str| -> anyhow::Result<(String, String)> {
        let output = Command::new("runuser")
            .args(["-u", "postgres", "--", "curl", "-sS", "-o", "-", "-w", "\n%{http_code}", "--unix-socket"])
            .arg(&sidecar.socket)
            .args(["-X", method, "-H", "content-type: application/json", "--data-binary", body])
            .arg(format!("http://sidecar{path}"))
            .output()?;
        let text = String::from_utf8(output.stdout)?;
        let (body, status) = text.rsplit_once('\n').unwrap_or((&text, ""));
        Ok((status.to_owned(), body.to_owned()))
    };
    let encrypt_body = json!({ "data": B64.encode(b"x"), "context": context(ALICE) }).to_string();
    assert_eq!(as_postgres("POST", "/v1/crypto/encrypt", &encrypt_body)?.0, "200");
    let (status, body) = as_postgres("GET", "/metrics", "")?;
    assert_eq!(status, "403", "{body}");
    Ok(())
}

#[tokio::test]
async fn secrets_never_reach_the_log_and_tcp_needs_the_service_token() -> anyhow::Result<()> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let token = "tok-8f3a9c1e-never-log-me";
    let sidecar = Sidecar::start_with(SidecarConfig {
        extra: format!("[tcp]\nlisten = \"127.0.0.1:{port}\"\ncaller_class = \"edge\"\n"),
        env: vec![
            ("PW_SERVICE_TOKEN".into(), token.into()),
            ("AWS_ACCESS_KEY_ID".into(), "AKIA-secret-id-never-log".into()),
            ("AWS_SECRET_ACCESS_KEY".into(), "aws-secret-never-log".into()),
            ("PW_LOG".into(), "debug".into()),
        ],
        ..Default::default()
    })
    .await?;
    let tcp = || tokio::net::TcpStream::connect(("127.0.0.1", port));
    let anonymous = send_raw(tcp().await?, "GET", "/healthz", &[], vec![]).await?;
    assert_eq!((anonymous.status, anonymous.json["code"].as_str()), (StatusCode::UNAUTHORIZED, Some("invalid_service_token")));
    let wrong = send_raw(tcp().await?, "GET", "/healthz", &[("authorization", "Bearer nope")], vec![]).await?;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    let bearer = format!("Bearer {token}");
    let ok = send_raw(tcp().await?, "GET", "/healthz", &[("authorization", &bearer)], vec![]).await?;
    assert_eq!(ok.status, StatusCode::OK);

    let log = sidecar.log();
    assert!(log.contains("starting kms-sidecar"), "the settings are logged: {log}");
    for secret in [token, "AKIA-secret-id-never-log", "aws-secret-never-log"] {
        assert!(!log.contains(secret), "{secret} leaked into the log");
    }
    Ok(())
}

#[tokio::test]
async fn misconfiguration_fails_at_start_naming_the_setting() -> anyhow::Result<()> {
    // Through an environment override, which also shows overrides work.
    let result = Sidecar::start_with(SidecarConfig {
        env: vec![("PW__ENVIRONMENT".into(), "production".into())],
        ..Default::default()
    })
    .await;
    let error = result.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(error.contains("exited during start-up"), "{error}");
    assert!(error.contains("keys.provider"), "{error}");

    let tcp_without_token = Sidecar::start_with(SidecarConfig {
        extra: "[tcp]\nlisten = \"127.0.0.1:9\"\n".into(),
        ..Default::default()
    })
    .await;
    let error = tcp_without_token.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(error.contains("PW_SERVICE_TOKEN"), "{error}");
    Ok(())
}

#[tokio::test]
async fn metrics_count_key_provider_calls() -> anyhow::Result<()> {
    let sidecar = Sidecar::start().await?;
    for _ in 0..200 {
        encrypt(&sidecar, b"x", context(ALICE)).await?;
    }
    let metrics = sidecar.request("GET", "/metrics", None).await?;
    assert!(metrics.text.contains("parker_wallet_kms_calls_total{operation=\"generate_data_key\"} 1\n"), "{}", metrics.text);
    assert!(metrics.text.contains("parker_wallet_crypto_operations_total{operation=\"encrypt\"} 200\n"), "{}", metrics.text);
    Ok(())
}
