//! The sidecar's encryption routes over its socket: round trips, context
//! binding, who may decrypt what (caller class and subject), limits, secrets
//! that never reach a log.

use std::process::Command;

use base64::Engine;
use harness::{own_uid, send_raw, traveler_token, Sidecar, SidecarConfig};
use hyper::StatusCode;
use kms_sidecar::config::TcpSettings;
use kms_sidecar::domain::CallerClass;
use serde_json::json;

const B64: base64::engine::general_purpose::GeneralPurpose = base64::engine::general_purpose::STANDARD;

const ROW: &str = "0000000a-0000-4000-8000-000000000001";

fn context(user: &str) -> serde_json::Value {
    row_context(user, ROW)
}

fn row_context(user: &str, row: &str) -> serde_json::Value {
    json!({ "user_id": user, "table": "payment_methods", "column": "encrypted_card_data", "record_id": row })
}

const ALICE: &str = "a11ce000-0000-4000-8000-000000000001";
const BOB: &str = "b0b00000-0000-4000-8000-000000000002";

async fn encrypt(sidecar: &Sidecar, data: &[u8], ctx: serde_json::Value) -> anyhow::Result<String> {
    let response = sidecar.crypto("encrypt", &B64.encode(data), &ctx).await?;
    assert_eq!(response.status, StatusCode::OK, "{}", response.text);
    Ok(response.json["data"].as_str().unwrap_or_default().to_owned())
}

fn bearer(user: &str) -> String {
    format!("Bearer {}", traveler_token(user, json!({})))
}

#[tokio::test]
async fn records_round_trip_and_refuse_another_context() -> anyhow::Result<()> {
    let sidecar = Sidecar::start_with(SidecarConfig::traveler_crypto()?).await?;
    let record = encrypt(&sidecar, b"{\"brand\":\"visa\"}", context(ALICE)).await?;
    let decrypted = sidecar.crypto("decrypt", &record, &context(ALICE)).await?;
    assert_eq!(decrypted.status, StatusCode::OK);
    assert_eq!(B64.decode(decrypted.json["data"].as_str().unwrap())?, b"{\"brand\":\"visa\"}");

    for (wrong, what) in [
        (context(BOB), "another traveler (with that traveler's own token)"),
        (
            json!({ "user_id": ALICE, "table": "traveler_profiles", "column": "encrypted_card_data", "record_id": ROW }),
            "another table",
        ),
        (
            json!({ "user_id": ALICE, "table": "payment_methods", "column": "last4", "record_id": ROW }),
            "another column",
        ),
        (
            row_context(ALICE, "0000000b-0000-4000-8000-000000000002"),
            "another row of the same traveler, table and column",
        ),
    ] {
        let response = sidecar.crypto("decrypt", &record, &wrong).await?;
        assert_eq!(response.status, StatusCode::UNPROCESSABLE_ENTITY, "{what}");
        assert_eq!(response.json["code"], "decryption_failed", "{what}");
        assert_eq!(response.content_type.as_deref(), Some("application/problem+json"));
    }

    let rewrapped = sidecar.crypto("rewrap", &record, &context(ALICE)).await?;
    assert_eq!(rewrapped.status, StatusCode::OK);
    assert_ne!(rewrapped.json["data"], json!(record));
    Ok(())
}

/// The attack: with no token on the edge socket (or the loopback port), or
/// with one traveler's token, decrypt answered another traveler's record.
#[tokio::test]
async fn the_crypto_routes_are_no_decryption_oracle() -> anyhow::Result<()> {
    let port = harness::free_port()?;
    let mut config = SidecarConfig::traveler_crypto()?;
    config.admin_port = None;
    config.settings.tcp = Some(TcpSettings { listen: ([127, 0, 0, 1], port).into(), caller_class: CallerClass::Edge });
    config.env.push(("PW_SERVICE_TOKEN".into(), "svc-token".into()));
    let sidecar = Sidecar::start_with(config).await?;
    let alices = encrypt(&sidecar, b"{\"born_on\":\"1990-01-01\"}", context(ALICE)).await?;
    for operation in ["decrypt", "rewrap", "encrypt"] {
        let path = format!("/v1/crypto/{operation}");
        let body = json!({ "data": alices, "context": context(ALICE) });
        let anonymous = sidecar.request("POST", &path, Some(body.clone())).await?;
        assert_eq!(
            (anonymous.status, anonymous.json["code"].as_str()),
            (StatusCode::UNAUTHORIZED, Some("invalid_token")),
            "{operation}"
        );
        let bobs_token = bearer(BOB);
        let as_bob = sidecar.request_with("POST", &path, &[("authorization", &bobs_token)], Some(body.clone())).await?;
        assert_eq!(
            (as_bob.status, as_bob.json["code"].as_str()),
            (StatusCode::FORBIDDEN, Some("subject_mismatch")),
            "{operation}"
        );
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
        let service =
            send_raw(tcp, "POST", &path, &[("authorization", "Bearer svc-token")], body.to_string().into_bytes())
                .await?;
        assert_eq!(
            (service.status, service.json["code"].as_str()),
            (StatusCode::UNAUTHORIZED, Some("invalid_token")),
            "{operation} on TCP"
        );
    }
    // Operators have no crypto route: their system work (rotate-keys) runs in-process.
    let operator = Sidecar::start().await?;
    let response = operator
        .request("POST", "/v1/crypto/decrypt", Some(json!({ "data": alices, "context": context(ALICE) })))
        .await?;
    assert_eq!((response.status, response.json["code"].as_str()), (StatusCode::FORBIDDEN, Some("caller_not_allowed")));
    Ok(())
}

#[tokio::test]
async fn bad_input_gets_a_stable_problem_code() -> anyhow::Result<()> {
    let sidecar = Sidecar::start_with(SidecarConfig::traveler_crypto()?).await?;
    let alice = bearer(ALICE);
    let unbound = json!({ "user_id": ALICE, "table": "payment_methods", "column": "encrypted_card_data" });
    let cases = [
        (json!({ "data": "not base64!", "context": context(ALICE) }), "/v1/crypto/encrypt", 400, "invalid_request"),
        (json!({ "data": "", "context": context(ALICE), "extra": 1 }), "/v1/crypto/encrypt", 400, "invalid_request"),
        (
            json!({ "data": "", "context": { "user_id": ALICE, "table": "x; drop table y", "column": "c" } }),
            "/v1/crypto/encrypt",
            400,
            "invalid_context",
        ),
        (
            json!({ "data": "", "context": { "user_id": "nope", "table": "t", "column": "c" } }),
            "/v1/crypto/encrypt",
            400,
            "invalid_context",
        ),
        (json!({ "data": "", "context": unbound }), "/v1/crypto/encrypt", 400, "invalid_context"),
        (
            json!({ "data": "", "context": { "user_id": ALICE, "table": "t", "column": "c", "record_id": "7" } }),
            "/v1/crypto/encrypt",
            400,
            "invalid_context",
        ),
        (
            json!({ "data": B64.encode([1, 0, 0, 0]), "context": context(ALICE) }),
            "/v1/crypto/decrypt",
            422,
            "unsupported_ciphertext_version",
        ),
        (
            json!({ "data": B64.encode([9]), "context": context(ALICE) }),
            "/v1/crypto/decrypt",
            422,
            "unsupported_ciphertext_version",
        ),
        (
            json!({ "data": B64.encode([3, 5, b'a']), "context": context(ALICE) }),
            "/v1/crypto/decrypt",
            422,
            "malformed_ciphertext",
        ),
    ];
    for (body, path, status, code) in cases {
        let response = sidecar.request_with("POST", path, &[("authorization", &alice)], Some(body.clone())).await?;
        assert_eq!((response.status.as_u16(), response.json["code"].as_str()), (status, Some(code)), "{body}");
    }
    let record = encrypt(&sidecar, b"x", context(ALICE)).await?;
    let unbound_open = sidecar.crypto("decrypt", &record, &unbound).await?;
    assert_eq!(unbound_open.json["code"], "invalid_context", "a v3 record needs its record_id");
    let headers = [("authorization", alice.as_str())];
    let garbage = send_raw(
        tokio::net::UnixStream::connect(&sidecar.socket).await?,
        "POST",
        "/v1/crypto/encrypt",
        &headers,
        b"{not json".to_vec(),
    )
    .await?;
    assert_eq!(garbage.json["code"], "invalid_request");
    let huge = vec![b'a'; 200 * 1024];
    let too_large =
        send_raw(tokio::net::UnixStream::connect(&sidecar.socket).await?, "POST", "/v1/crypto/encrypt", &headers, huge)
            .await?;
    assert_eq!(
        (too_large.status, too_large.json["code"].as_str()),
        (StatusCode::PAYLOAD_TOO_LARGE, Some("payload_too_large"))
    );
    Ok(())
}

#[tokio::test]
async fn a_caller_outside_the_map_is_refused_everything() -> anyhow::Result<()> {
    let sidecar = Sidecar::start_with(SidecarConfig::default().callers(CallerClass::Edge, vec![4242])).await?;
    for (method, path) in [("GET", "/healthz"), ("GET", "/readyz"), ("POST", "/v1/crypto/encrypt"), ("GET", "/metrics")]
    {
        let response = sidecar.request(method, path, Some(json!({}))).await?;
        assert_eq!(
            (response.status, response.json["code"].as_str()),
            (StatusCode::FORBIDDEN, Some("caller_not_allowed")),
            "{path}"
        );
    }
    Ok(())
}

/// The `database` class (the postgres OS user) reaches the crypto routes only,
/// for the subject the extension attests.
#[tokio::test]
async fn the_database_caller_gets_the_crypto_routes_only() -> anyhow::Result<()> {
    if own_uid() != 0 {
        eprintln!("skipped: needs root to act as the postgres OS user");
        return Ok(());
    }
    let sidecar = Sidecar::start().await?;
    let as_postgres = |method: &str, path: &str, subject: &str, body: &str| -> anyhow::Result<(String, String)> {
        let output = Command::new("runuser")
            .args(["-u", "postgres", "--", "curl", "-sS", "-o", "-", "-w", "\n%{http_code}", "--unix-socket"])
            .arg(&sidecar.socket)
            .args(["-X", method, "-H", "content-type: application/json", "-H", subject, "--data-binary", body])
            .arg(format!("http://sidecar{path}"))
            .output()?;
        let text = String::from_utf8(output.stdout)?;
        let (body, status) = text.rsplit_once('\n').unwrap_or((&text, ""));
        Ok((status.to_owned(), body.to_owned()))
    };
    let encrypt_body = json!({ "data": B64.encode(b"x"), "context": context(ALICE) }).to_string();
    let alice = format!("parker-wallet-subject: traveler {ALICE}");
    assert_eq!(as_postgres("POST", "/v1/crypto/encrypt", &alice, &encrypt_body)?.0, "200");
    assert_eq!(
        as_postgres("POST", "/v1/crypto/encrypt", "parker-wallet-subject: system billing", &encrypt_body)?.0,
        "200"
    );
    for (subject, code) in [
        ("x-none: 1", "subject_required"),
        ("parker-wallet-subject: traveler nobody", "subject_required"),
        (&*format!("parker-wallet-subject: traveler {BOB}"), "subject_mismatch"),
    ] {
        let (status, body) = as_postgres("POST", "/v1/crypto/encrypt", subject, &encrypt_body)?;
        assert_eq!(status, "403", "{subject}: {body}");
        assert!(body.contains(code), "{subject}: {body}");
    }
    let (status, body) = as_postgres("GET", "/metrics", &alice, "")?;
    assert_eq!(status, "403", "{body}");
    Ok(())
}

#[tokio::test]
async fn secrets_never_reach_the_log_and_tcp_needs_the_service_token() -> anyhow::Result<()> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let token = "tok-8f3a9c1e-never-log-me";
    let mut config = SidecarConfig::default();
    config.settings.tcp = Some(TcpSettings { listen: ([127, 0, 0, 1], port).into(), caller_class: CallerClass::Edge });
    let sidecar = Sidecar::start_with(SidecarConfig {
        env: vec![
            ("PW_SERVICE_TOKEN".into(), token.into()),
            ("AWS_ACCESS_KEY_ID".into(), "AKIA-secret-id-never-log".into()),
            ("AWS_SECRET_ACCESS_KEY".into(), "aws-secret-never-log".into()),
            ("PW_LOG".into(), "debug".into()),
        ],
        ..config
    })
    .await?;
    let tcp = || tokio::net::TcpStream::connect(("127.0.0.1", port));
    let anonymous = send_raw(tcp().await?, "GET", "/healthz", &[], vec![]).await?;
    assert_eq!(
        (anonymous.status, anonymous.json["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("invalid_service_token"))
    );
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

    let mut config = SidecarConfig::default();
    config.settings.tcp = Some(TcpSettings { listen: ([127, 0, 0, 1], 9).into(), caller_class: CallerClass::Edge });
    let tcp_without_token = Sidecar::start_with(config).await;
    let error = tcp_without_token.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(error.contains("PW_SERVICE_TOKEN"), "{error}");
    Ok(())
}

#[tokio::test]
async fn metrics_count_key_provider_calls() -> anyhow::Result<()> {
    let sidecar = Sidecar::start_with(SidecarConfig::traveler_crypto()?).await?;
    for _ in 0..200 {
        encrypt(&sidecar, b"x", context(ALICE)).await?;
    }
    let metrics = sidecar.metrics().await?;
    assert!(metrics.contains("parker_wallet_kms_calls_total{operation=\"generate_data_key\"} 1\n"), "{metrics}");
    assert!(metrics.contains("parker_wallet_crypto_operations_total{operation=\"encrypt\"} 200\n"), "{metrics}");
    Ok(())
}
