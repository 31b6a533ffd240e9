//! The sidecar binary on its Unix socket: health, problem+json errors, socket
//! permissions, graceful shutdown.

use std::os::unix::fs::PermissionsExt;

use harness::Sidecar;
use hyper::StatusCode;

#[tokio::test]
async fn healthz_answers_on_the_socket() -> anyhow::Result<()> {
    let sidecar = Sidecar::start().await?;
    let response = sidecar.request("GET", "/healthz", None).await?;
    assert_eq!(response.status, StatusCode::OK);
    assert_eq!(response.json["status"], "ok");
    assert_eq!(response.content_type.as_deref(), Some("application/json"));
    Ok(())
}

/// Oversized headers got hyper's own 431 with an empty body.
#[tokio::test]
async fn oversized_headers_are_a_problem_json_431() -> anyhow::Result<()> {
    let sidecar = Sidecar::start().await?;
    let long = "x".repeat(40 * 1024);
    let many: Vec<(String, String)> = (0..120).map(|i| (format!("x-extra-{i}"), "1".to_owned())).collect();
    let many: Vec<(&str, &str)> = many.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    for headers in [vec![("x-long", long.as_str())], many] {
        let response = sidecar.request_with("GET", "/healthz", &headers, None).await?;
        assert_eq!(response.status, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
        assert_eq!(
            (response.content_type.as_deref(), response.json["code"].as_str()),
            (Some("application/problem+json"), Some("headers_too_large"))
        );
    }
    Ok(())
}

#[tokio::test]
async fn unknown_routes_and_methods_are_problem_json() -> anyhow::Result<()> {
    let sidecar = Sidecar::start().await?;
    let missing = sidecar.request("GET", "/nope", None).await?;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(missing.content_type.as_deref(), Some("application/problem+json"));
    assert_eq!(missing.json["code"], "not_found");
    let wrong_method = sidecar.request("DELETE", "/healthz", None).await?;
    assert_eq!(wrong_method.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(wrong_method.json["code"], "method_not_allowed");
    Ok(())
}

#[tokio::test]
async fn the_socket_is_not_world_accessible() -> anyhow::Result<()> {
    let sidecar = Sidecar::start().await?;
    let mode = std::fs::metadata(&sidecar.socket)?.permissions().mode() & 0o777;
    assert_eq!(mode, 0o660);
    Ok(())
}

#[tokio::test]
async fn sigterm_stops_cleanly_and_removes_the_socket() -> anyhow::Result<()> {
    let sidecar = Sidecar::start().await?;
    let socket = sidecar.socket.clone();
    let status = sidecar.terminate()?;
    assert!(status.success(), "exit status {status}");
    assert!(!socket.exists(), "socket file left behind");
    Ok(())
}
