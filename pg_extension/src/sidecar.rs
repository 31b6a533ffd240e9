//! A minimal HTTP/1.1 client for the sidecar's Unix socket, for use from a
//! backend: blocking, bounded by a deadline, and polling a caller-supplied
//! interrupt check between short reads, so a hung sidecar never hangs a query
//! past its timeout or past a cancel.

use std::io::{ErrorKind, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How often a waiting backend looks for a cancel request.
const POLL_INTERVAL: Duration = Duration::from_millis(50);
/// Larger answers are not the sidecar's.
const MAX_RESPONSE_BYTES: usize = 1 << 20;

#[derive(Debug, PartialEq, Eq)]
pub enum SidecarError {
    Unreachable { socket: PathBuf, reason: String },
    Timeout { after: Duration },
    Protocol(String),
}

impl std::fmt::Display for SidecarError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Unreachable { socket, reason } => {
                write!(f, "the kms-sidecar is unreachable at {}: {reason}", socket.display())
            }
            Self::Timeout { after } => write!(f, "the kms-sidecar did not answer within {} ms", after.as_millis()),
            Self::Protocol(detail) => write!(f, "unexpected answer from the kms-sidecar: {detail}"),
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
}

/// Sends one request and reads the whole answer (the connection is closed after it).
pub fn request(
    socket: &Path,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
    timeout: Duration,
    mut check_interrupts: impl FnMut(),
) -> Result<Response, SidecarError> {
    let deadline = Instant::now() + timeout;
    let unreachable =
        |e: std::io::Error| SidecarError::Unreachable { socket: socket.to_owned(), reason: e.to_string() };
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: sidecar\r\nContent-Type: application/json\r\n");
    for (name, value) in headers {
        // A header must not be able to end itself and start another.
        if !value.bytes().all(|b| b == b' ' || b.is_ascii_graphic()) {
            return Err(SidecarError::Protocol(format!("header {name} holds a character HTTP cannot carry")));
        }
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    let body = body.unwrap_or_default();
    head.push_str(&format!("Content-Length: {}\r\nConnection: close\r\n\r\n", body.len()));
    let mut stream = UnixStream::connect(socket).map_err(unreachable)?;
    let mut message = head.into_bytes();
    message.extend_from_slice(body);
    stream.set_write_timeout(Some(timeout.max(Duration::from_millis(1)))).map_err(unreachable)?;
    stream.write_all(&message).map_err(|e| match e.kind() {
        ErrorKind::WouldBlock | ErrorKind::TimedOut => SidecarError::Timeout { after: timeout },
        _ => unreachable(e),
    })?;

    let mut received = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Err(SidecarError::Timeout { after: timeout });
        }
        stream.set_read_timeout(Some(remaining.min(POLL_INTERVAL))).map_err(unreachable)?;
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => {
                received.extend_from_slice(&chunk[..n]);
                if received.len() > MAX_RESPONSE_BYTES {
                    return Err(SidecarError::Protocol("answer too large".into()));
                }
                if let Some(response) = parse_response(&received)? {
                    return Ok(response);
                }
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted) => {}
            Err(e) => return Err(unreachable(e)),
        }
        check_interrupts();
    }
    parse_response(&received)?.ok_or_else(|| SidecarError::Protocol("connection closed mid-answer".into()))
}

/// A complete response, `None` while more bytes are needed.
pub fn parse_response(bytes: &[u8]) -> Result<Option<Response>, SidecarError> {
    let Some(header_end) = bytes.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Ok(None);
    };
    let head =
        std::str::from_utf8(&bytes[..header_end]).map_err(|_| SidecarError::Protocol("header is not text".into()))?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse::<u16>().ok())
        .ok_or_else(|| SidecarError::Protocol(format!("status line {status_line:?}")))?;
    let content_length = lines
        .filter_map(|line| line.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("content-length"))
        .map(|(_, value)| value.trim().parse::<usize>().map_err(|_| SidecarError::Protocol("content-length".into())))
        .transpose()?
        .ok_or_else(|| SidecarError::Protocol("no content-length".into()))?;
    let body_start = header_end + 4;
    if bytes.len() < body_start + content_length {
        return Ok(None);
    }
    Ok(Some(Response { status, body: bytes[body_start..body_start + content_length].to_vec() }))
}

#[cfg(test)]
mod tests {
    use std::os::unix::net::UnixListener;

    use super::*;

    #[test]
    fn parses_complete_and_partial_answers() {
        let full = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}";
        assert_eq!(parse_response(full).unwrap(), Some(Response { status: 200, body: b"{}".to_vec() }));
        assert_eq!(parse_response(&full[..full.len() - 1]).unwrap(), None);
        assert_eq!(parse_response(b"HTTP/1.1 200").unwrap(), None);
        assert!(parse_response(b"garbage\r\n\r\n").is_err());
        assert!(parse_response(b"HTTP/1.1 200 OK\r\n\r\n").is_err(), "no length");
    }

    #[test]
    fn a_header_cannot_smuggle_another() {
        let error = request(
            Path::new("/nonexistent/s.sock"),
            "GET",
            "/",
            &[("x", "a\r\nb: c")],
            None,
            Duration::from_secs(1),
            || {},
        );
        assert!(matches!(error, Err(SidecarError::Protocol(_))), "{error:?}");
    }

    #[test]
    fn a_missing_socket_is_unreachable() {
        let error =
            request(Path::new("/nonexistent/s.sock"), "GET", "/healthz", &[], None, Duration::from_secs(1), || {})
                .unwrap_err();
        assert!(matches!(error, SidecarError::Unreachable { .. }));
    }

    #[test]
    fn a_silent_sidecar_times_out_and_interrupts_are_polled() {
        let dir = std::env::temp_dir().join(format!("pw-sidecar-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("silent.sock");
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path).unwrap();
        let _keep = std::thread::spawn(move || {
            let held: Vec<_> = listener.incoming().take(1).collect();
            std::thread::sleep(Duration::from_secs(2));
            drop(held);
        });
        let mut polls = 0;
        let started = Instant::now();
        let error =
            request(&path, "GET", "/healthz", &[], None, Duration::from_millis(300), || polls += 1).unwrap_err();
        assert_eq!(error, SidecarError::Timeout { after: Duration::from_millis(300) });
        assert!(started.elapsed() < Duration::from_millis(900));
        assert!(polls >= 3, "interrupts polled {polls} times");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
