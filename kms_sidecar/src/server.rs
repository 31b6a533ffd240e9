//! Transport: the Unix socket (and optional loopback TCP) listeners and the
//! HTTP/1.1 connection loop. Each connection learns its caller class once: from
//! the peer's uid on the socket, from the service token on TCP.

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::StatusCode;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use secrecy::ExposeSecret;
use tokio::net::{TcpListener, UnixListener};

use crate::config::{ConfigError, ProviderKind, Secrets, Settings};
use crate::crypto::keys::{AwsKms, KeyProvider, LocalKeyring};
use crate::crypto::EnvelopeCrypto;
use crate::metrics::Metrics;
use crate::peer::{group_id, peer_uid};
use crate::problem::Problem;
use crate::routes;
use crate::state::AppState;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("another sidecar is already listening on {0} (connect succeeded); stop it or choose another socket path")]
    SocketInUse(PathBuf),
    #[error("socket directory {0} does not exist")]
    MissingSocketDir(PathBuf),
    #[error("socket.group: no group named {0}")]
    UnknownGroup(String),
    #[error("cannot set up socket {path}: {source}")]
    Socket { path: PathBuf, source: io::Error },
    #[error("tcp.listen: cannot listen on {address}: {source}")]
    Tcp { address: String, source: io::Error },
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("keys.local_key_file: {0}")]
    Keyring(#[from] crate::crypto::keys::local::KeyringError),
}

/// Binds the socket: a stale file left by a crashed sidecar is replaced, a live
/// listener is never stolen.
pub fn bind_socket(path: &Path, mode: u32, group: Option<u32>) -> Result<UnixListener, ServeError> {
    let socket_error = |source| ServeError::Socket { path: path.to_owned(), source };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if !dir.is_dir() {
            return Err(ServeError::MissingSocketDir(dir.to_owned()));
        }
    }
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(ServeError::SocketInUse(path.to_owned()));
        }
        std::fs::remove_file(path).map_err(socket_error)?;
    }
    let listener = UnixListener::bind(path).map_err(socket_error)?;
    if let Some(gid) = group {
        std::os::unix::fs::chown(path, None, Some(gid)).map_err(socket_error)?;
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(socket_error)?;
    Ok(listener)
}

/// Builds the key provider and crypto service the settings ask for.
pub async fn build_state(settings: Settings, secrets: Secrets) -> Result<Arc<AppState>, ServeError> {
    let provider: Arc<dyn KeyProvider> = match settings.keys.provider {
        ProviderKind::Local => {
            let file = settings.keys.local_key_file.clone().unwrap_or_default();
            Arc::new(LocalKeyring::load_or_create(&file)?)
        }
        ProviderKind::AwsKms => {
            let aws = settings
                .keys
                .aws_kms
                .clone()
                .ok_or_else(|| ConfigError::Setting { setting: "keys.aws_kms", problem: "missing".into() })?;
            Arc::new(AwsKms::connect(&aws.connection(&aws.key_id, &secrets)).await)
        }
    };
    let booking_states = crate::bookings::saga::State::ALL.map(crate::bookings::saga::State::as_str);
    let metrics = Arc::new(Metrics {
        bookings_entered: crate::metrics::LabelledCounter::with_values(&booking_states),
        phone_verifications: crate::metrics::LabelledCounter::with_values(&crate::phone::OUTCOMES),
        ..Metrics::default()
    });
    metrics.http.register(&routes::served());
    let crypto = EnvelopeCrypto::new(provider, settings.cache_policy(), settings.key_schedule(), Arc::clone(&metrics));
    let database = match (&settings.database, &secrets.database_url) {
        (Some(db), Some(url)) => Some(
            crate::db::Database::connect_lazy(url, db.max_connections)
                .map_err(|e| ConfigError::Setting { setting: "PW_DATABASE_URL", problem: e.to_string() })?,
        ),
        _ => None,
    };
    let verifier = match &settings.auth {
        Some(auth) => {
            let jwks = match &auth.jwks_file {
                Some(path) => Some(std::fs::read_to_string(path).map_err(|e| ConfigError::Setting {
                    setting: "auth.jwks_file",
                    problem: format!("{}: {e}", path.display()),
                })?),
                None => None,
            };
            Some(
                crate::auth::JwtVerifier::new(
                    secrets.jwt_secret.as_ref(),
                    jwks.as_deref(),
                    &auth.audience,
                    auth.issuer.as_deref(),
                )
                .map_err(|problem| ConfigError::Setting { setting: "auth", problem })?,
            )
        }
        None => None,
    };
    let stripe: Option<Arc<dyn crate::stripe::StripePort>> = match (&settings.stripe, &secrets.stripe_secret_key) {
        (Some(config), Some(key)) => Some(Arc::new(
            crate::stripe::AsyncStripe::new(key, config.api_base.as_deref(), Duration::from_millis(config.timeout_ms))
                .map_err(|e| ConfigError::Setting { setting: "stripe", problem: e.to_string() })?,
        )),
        _ => None,
    };
    let duffel: Option<Arc<dyn crate::duffel::DuffelPort>> = match (&settings.duffel, &secrets.duffel_access_token) {
        (Some(config), Some(token)) => Some(Arc::new(
            crate::duffel::HttpDuffel::new(&config.api_base, token.clone(), Duration::from_millis(config.timeout_ms))
                .map_err(|e| ConfigError::Setting { setting: "duffel", problem: e.to_string() })?,
        )),
        _ => None,
    };
    let twilio: Option<Arc<dyn crate::twilio::VerifyPort>> = match (&settings.twilio, &secrets.twilio) {
        (Some(config), Some(credentials)) => Some(Arc::new(crate::twilio::HttpTwilioVerify::new(
            &config.api_base,
            &credentials.service_sid,
            &credentials.username,
            credentials.password.clone(),
            Duration::from_millis(config.timeout_ms),
        ))),
        _ => None,
    };
    let traveler_gate = crate::fairness::TravelerGate::new(settings.fair_use());
    // A quarter of the pool: slow readers of exports never starve the wallet.
    let pool_size = settings.database.as_ref().map_or(1, |db| db.max_connections as usize);
    let export_slots = Arc::new(tokio::sync::Semaphore::new((pool_size / 4).max(1)));
    Ok(Arc::new(AppState {
        settings,
        database,
        verifier,
        stripe,
        duffel,
        twilio,
        webhook_secrets: secrets.stripe_webhook_secrets,
        crypto,
        metrics,
        service_token: secrets.service_token,
        readiness: crate::readiness::ReadinessCache::default(),
        booking_locks: Default::default(),
        traveler_gate,
        export_slots,
        kill_switches: Default::default(),
    }))
}

/// Compares without leaking, through timing, how much of a guess was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Serves until `shutdown` resolves, then lets in-flight requests finish for up
/// to the configured grace period.
pub async fn serve(state: Arc<AppState>, shutdown: impl std::future::Future<Output = ()>) -> Result<(), ServeError> {
    let settings = &state.settings;
    let group = match &settings.socket.group {
        Some(name) => Some(group_id(name).ok_or_else(|| ServeError::UnknownGroup(name.clone()))?),
        None => None,
    };
    let socket_path = settings.socket.path.clone();
    let listener = bind_socket(&socket_path, settings.socket_mode()?, group)?;
    let tcp = match &settings.tcp {
        Some(tcp) => Some(
            TcpListener::bind(tcp.listen)
                .await
                .map_err(|source| ServeError::Tcp { address: tcp.listen.to_string(), source })?,
        ),
        None => None,
    };
    tracing::info!(socket = %socket_path.display(), tcp = ?settings.tcp.as_ref().map(|t| t.listen), "kms-sidecar listening");
    if let Some(database) = state.database.clone() {
        let switches = Arc::clone(&state.kill_switches);
        tokio::spawn(async move { switches.watch(database).await });
    }
    tokio::spawn(routes::health::watch_readiness(Arc::clone(&state)));
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let class = match peer_uid(&stream) {
                    Ok(uid) => {
                        let class = state.settings.callers.class_of(uid);
                        tracing::debug!(uid, class = ?class, "connection");
                        class
                    }
                    Err(error) => {
                        tracing::warn!(%error, "cannot read peer credentials; refusing");
                        None
                    }
                };
                let state = Arc::clone(&state);
                spawn_connection(&graceful, stream, service_fn(move |request| routes::dispatch(Arc::clone(&state), class, request)));
            }
            accepted = async { tcp.as_ref().expect("guarded").accept().await }, if tcp.is_some() => {
                let Ok((stream, _)) = accepted else { continue };
                let state = Arc::clone(&state);
                let service = service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                    let state = Arc::clone(&state);
                    async move {
                        let presented = presented_service_token(request.headers());
                        let expected = state.service_token.as_ref().map(|t| t.expose_secret().as_bytes().to_vec()).unwrap_or_default();
                        if expected.is_empty() || !constant_time_eq(presented.as_bytes(), &expected) {
                            state.metrics.http.tokens_refused.add("service_token");
                            return Ok(Problem::new(StatusCode::UNAUTHORIZED, "invalid_service_token", "Service token missing or wrong")
                                .into_response()
                                .map(routes::boxed));
                        }
                        let class = state.settings.tcp.as_ref().map(|t| t.caller_class);
                        routes::dispatch(state, class, request).await
                    }
                });
                spawn_connection(&graceful, stream, service);
            }
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    let _ = std::fs::remove_file(&socket_path);
    tracing::info!("shutting down: draining in-flight requests");
    let grace = Duration::from_secs(settings.shutdown_grace_secs);
    if tokio::time::timeout(grace, graceful.shutdown()).await.is_err() {
        tracing::warn!(?grace, "requests still running after the grace period; closing them");
    }
    Ok(())
}

/// The header that carries the service token on the TCP port, so that
/// `Authorization` stays free for the traveler's token.
pub const SERVICE_TOKEN_HEADER: &str = "x-service-token";

/// The service token a TCP request presents: in its own header, or, for a
/// scraper that can set only `Authorization` (Prometheus), as its bearer
/// token; such a request then carries no traveler.
fn presented_service_token(headers: &hyper::HeaderMap) -> &str {
    let header = |name| headers.get(name).and_then(|v: &hyper::header::HeaderValue| v.to_str().ok());
    match header(SERVICE_TOKEN_HEADER) {
        Some(token) => token,
        None => header(hyper::header::AUTHORIZATION.as_str()).and_then(|v| v.strip_prefix("Bearer ")).unwrap_or(""),
    }
}

/// Serves one connection on its own task, watched for graceful shutdown.
fn spawn_connection<S, Svc>(graceful: &GracefulShutdown, stream: S, service: Svc)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    Svc: hyper::service::Service<
            hyper::Request<hyper::body::Incoming>,
            Response = routes::HttpResponse,
            Error = std::convert::Infallible,
        > + Send
        + 'static,
    Svc::Future: Send + 'static,
{
    // Room above the routes' own header limits (routes::MAX_HEADERS and
    // MAX_HEADER_BYTES), so that those answer with problem+json.
    let connection = graceful.watch(
        http1::Builder::new()
            .max_headers(4 * routes::MAX_HEADERS)
            .max_buf_size(1024 * 1024)
            .serve_connection(TokioIo::new(stream), service),
    );
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            tracing::debug!(%error, "connection ended with an error");
        }
    });
}

/// Resolves on SIGTERM or SIGINT.
pub async fn termination_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        tracing::error!("cannot install signal handlers; stop the sidecar with SIGKILL");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = int.recv() => tracing::info!("SIGINT received"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn replaces_a_stale_socket_but_not_a_live_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        assert!(path.exists());
        let live = bind_socket(&path, 0o660, None).expect("stale socket is replaced");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o660);
        match bind_socket(&path, 0o660, None) {
            Err(ServeError::SocketInUse(_)) => {}
            other => panic!("expected SocketInUse, got {other:?}"),
        }
        drop(live);
    }

    #[test]
    fn names_a_missing_directory() {
        let error = bind_socket(Path::new("/nonexistent-dir-for-test/s.sock"), 0o660, None).unwrap_err();
        assert!(error.to_string().contains("/nonexistent-dir-for-test"));
    }

    #[test]
    fn token_comparison() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
    }
}
