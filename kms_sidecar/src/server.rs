//! Transport: the Unix socket listener and the HTTP/1.1 connection loop.

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::UnixListener;

use crate::config::ServeConfig;
use crate::routes;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("another sidecar is already listening on {0} (connect succeeded); stop it or choose another socket path")]
    SocketInUse(PathBuf),
    #[error("socket directory {0} does not exist")]
    MissingSocketDir(PathBuf),
    #[error("cannot set up socket {path}: {source}")]
    Socket { path: PathBuf, source: io::Error },
}

/// Binds the socket: a stale file left by a crashed sidecar is replaced, a live
/// listener is never stolen.
pub fn bind_socket(path: &Path, mode: u32) -> Result<UnixListener, ServeError> {
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
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(socket_error)?;
    Ok(listener)
}

/// Serves until `shutdown` resolves, then lets in-flight requests finish for
/// up to the configured grace period.
pub async fn serve(
    config: &ServeConfig,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), ServeError> {
    let listener = bind_socket(&config.socket_path, config.socket_mode)?;
    tracing::info!(socket = %config.socket_path.display(), "kms-sidecar listening");
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((stream, _)) => stream,
                    Err(error) => {
                        tracing::warn!(%error, "accept failed");
                        continue;
                    }
                };
                let connection = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service_fn(routes::dispatch));
                let connection = graceful.watch(connection);
                tokio::spawn(async move {
                    if let Err(error) = connection.await {
                        tracing::debug!(%error, "connection ended with an error");
                    }
                });
            }
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    let _ = std::fs::remove_file(&config.socket_path);
    tracing::info!("shutting down: draining in-flight requests");
    let grace = Duration::from_secs(config.shutdown_grace_secs);
    if tokio::time::timeout(grace, graceful.shutdown()).await.is_err() {
        tracing::warn!(?grace, "requests still running after the grace period; closing them");
    }
    Ok(())
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
        // A stale file: bound once, listener dropped, file left behind.
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        assert!(path.exists());
        let live = bind_socket(&path, 0o660).expect("stale socket is replaced");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o660);
        match bind_socket(&path, 0o660) {
            Err(ServeError::SocketInUse(_)) => {}
            other => panic!("expected SocketInUse, got {other:?}"),
        }
        drop(live);
    }

    #[test]
    fn names_a_missing_directory() {
        let error = bind_socket(Path::new("/nonexistent-dir-for-test/s.sock"), 0o660).unwrap_err();
        assert!(error.to_string().contains("/nonexistent-dir-for-test"));
    }
}
