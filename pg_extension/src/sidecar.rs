//! A minimal HTTP/1.1 client for the sidecar's Unix socket, for use from a
//! backend: blocking, bounded by a deadline, and polling a caller-supplied
//! interrupt check between short reads, so a hung sidecar never hangs a query
//! past its timeout or past a cancel.
//!
//! Each backend keeps one connection open between calls (keep-alive): a
//! connect and close cost about as much as the call itself. The connection is
//! the backend's alone (a backend is one process, one thread) and is taken
//! out while a call is on it, so a call cut short (timeout, cancel, error)
//! drops it rather than leaving an answer in flight for the next call to read.
//! A kept connection the sidecar closed while it was idle (a restart) is
//! replaced once, and only when the request provably never reached it: the
//! write failed (a closed Unix socket refuses it at once) or the connection
//! was reset before any of the answer. A sidecar that read the request and
//! then closed is an error, never a second try.

use std::cell::RefCell;
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
    /// The sidecar will close the connection after this answer.
    pub closing: bool,
}

thread_local! {
    /// The backend's idle connection to the sidecar, and the socket it is to.
    static IDLE: RefCell<Option<(PathBuf, UnixStream)>> = const { RefCell::new(None) };
}

/// How one exchange on a connection ended, when it did not answer.
enum Failure {
    /// The request never reached the sidecar: the connection was already closed.
    NotDelivered(std::io::Error),
    Other(SidecarError),
}

/// Sends one request and reads the whole answer, on the backend's kept
/// connection when it has one (see the module's notes).
pub fn request(
    socket: &Path,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
    timeout: Duration,
    mut check_interrupts: impl FnMut(),
) -> Result<Response, SidecarError> {
    let message = message(method, path, headers, body.unwrap_or_default())?;
    let deadline = Instant::now() + timeout;
    let unreachable =
        |e: std::io::Error| SidecarError::Unreachable { socket: socket.to_owned(), reason: e.to_string() };
    let kept = IDLE.with(|idle| idle.borrow_mut().take()).filter(|(path, _)| path == socket);
    if let Some((_, stream)) = kept {
        match exchange(socket, &stream, &message, deadline, timeout, &mut check_interrupts) {
            Ok(response) => return Ok(keep(socket, stream, response)),
            // Closed while idle, and the request never reached it: ask again, on time only.
            Err(Failure::NotDelivered(_)) if Instant::now() < deadline => {}
            Err(Failure::NotDelivered(_)) => return Err(SidecarError::Timeout { after: timeout }),
            Err(Failure::Other(error)) => return Err(error),
        }
    }
    let stream = UnixStream::connect(socket).map_err(unreachable)?;
    match exchange(socket, &stream, &message, deadline, timeout, &mut check_interrupts) {
        Ok(response) => Ok(keep(socket, stream, response)),
        Err(Failure::NotDelivered(error)) => Err(unreachable(error)),
        Err(Failure::Other(error)) => Err(error),
    }
}

/// Keeps `stream` for the next call, unless the sidecar said it closes it.
fn keep(socket: &Path, stream: UnixStream, response: Response) -> Response {
    if !response.closing {
        IDLE.with(|idle| idle.borrow_mut().replace((socket.to_owned(), stream)));
    }
    response
}

fn message(method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Result<Vec<u8>, SidecarError> {
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: sidecar\r\nContent-Type: application/json\r\n");
    for (name, value) in headers {
        // A header must not be able to end itself and start another.
        if !value.bytes().all(|b| b == b' ' || b.is_ascii_graphic()) {
            return Err(SidecarError::Protocol(format!("header {name} holds a character HTTP cannot carry")));
        }
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    let mut message = head.into_bytes();
    message.extend_from_slice(body);
    Ok(message)
}

/// One request and its answer on `stream`, by `deadline`.
fn exchange(
    socket: &Path,
    mut stream: &UnixStream,
    message: &[u8],
    deadline: Instant,
    timeout: Duration,
    check_interrupts: &mut impl FnMut(),
) -> Result<Response, Failure> {
    let other = |e: std::io::Error| {
        Failure::Other(SidecarError::Unreachable { socket: socket.to_owned(), reason: e.to_string() })
    };
    let remaining = deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(1));
    stream.set_write_timeout(Some(remaining)).map_err(other)?;
    if let Err(e) = stream.write_all(message) {
        return Err(match e.kind() {
            ErrorKind::WouldBlock | ErrorKind::TimedOut => Failure::Other(SidecarError::Timeout { after: timeout }),
            ErrorKind::BrokenPipe | ErrorKind::ConnectionReset | ErrorKind::NotConnected => Failure::NotDelivered(e),
            _ => other(e),
        });
    }
    let mut received = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Err(Failure::Other(SidecarError::Timeout { after: timeout }));
        }
        stream.set_read_timeout(Some(remaining.min(POLL_INTERVAL))).map_err(other)?;
        match stream.read(&mut chunk) {
            // The sidecar read the request, then closed: it may have acted on it.
            Ok(0) => {
                return Err(Failure::Other(SidecarError::Protocol("connection closed mid-answer".into())));
            }
            Ok(n) => {
                received.extend_from_slice(&chunk[..n]);
                if received.len() > MAX_RESPONSE_BYTES {
                    return Err(Failure::Other(SidecarError::Protocol("answer too large".into())));
                }
                if let Some(response) = parse_response(&received).map_err(Failure::Other)? {
                    return Ok(response);
                }
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted) => {}
            // Linux resets a connection closed with our request unread in it.
            Err(e) if e.kind() == ErrorKind::ConnectionReset && received.is_empty() => {
                return Err(Failure::NotDelivered(e));
            }
            Err(e) => return Err(other(e)),
        }
        check_interrupts();
    }
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
    let fields: Vec<(&str, &str)> =
        lines.filter_map(|line| line.split_once(':')).map(|(name, value)| (name.trim(), value.trim())).collect();
    let content_length = fields
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case("content-length"))
        .map(|(_, value)| *value)
        .map(|value| value.parse::<usize>().map_err(|_| SidecarError::Protocol("content-length".into())))
        .transpose()?
        .ok_or_else(|| SidecarError::Protocol("no content-length".into()))?;
    let body_start = header_end + 4;
    let end = body_start + content_length;
    if bytes.len() < end {
        return Ok(None);
    }
    // Closing when the sidecar says so in any `Connection` value, or when
    // bytes follow the answer (nothing may be read as the next call's).
    let closing = fields
        .iter()
        .filter(|(name, _)| name.eq_ignore_ascii_case("connection"))
        .flat_map(|(_, value)| value.split(','))
        .any(|token| token.trim().eq_ignore_ascii_case("close"))
        || bytes.len() > end;
    Ok(Some(Response { status, body: bytes[body_start..end].to_vec(), closing }))
}

#[cfg(test)]
mod tests {
    use std::os::unix::net::UnixListener;

    use super::*;

    #[test]
    fn parses_complete_and_partial_answers() {
        let full = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}";
        assert_eq!(parse_response(full).unwrap(), Some(Response { status: 200, body: b"{}".to_vec(), closing: false }));
        let closing = b"HTTP/1.1 200 OK\r\nConnection: close\r\ncontent-length: 0\r\n\r\n";
        assert!(parse_response(closing).unwrap().is_some_and(|r| r.closing));
        let listed =
            b"HTTP/1.1 200 OK\r\nConnection: upgrade\r\nconnection: keep-alive, Close\r\ncontent-length: 0\r\n\r\n";
        assert!(parse_response(listed).unwrap().is_some_and(|r| r.closing), "any close token");
        let extra = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}HTTP/1.1";
        assert!(parse_response(extra).unwrap().is_some_and(|r| r.closing), "bytes after the answer");
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

    /// A listening socket of this test's own (`name`), in a fresh place.
    fn test_socket(name: &str) -> (PathBuf, UnixListener) {
        let dir = std::env::temp_dir().join(format!("pw-sidecar-test-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("sidecar.sock");
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path).unwrap();
        (path, listener)
    }

    /// A sidecar that accepts one connection and never answers, holding it for `hold`.
    fn silent_sidecar(name: &str, hold: Duration) -> PathBuf {
        let (path, listener) = test_socket(name);
        std::thread::spawn(move || {
            let held: Vec<_> = listener.incoming().take(1).collect();
            std::thread::sleep(hold);
            drop(held);
        });
        path
    }

    /// A sidecar that answers `answers` requests per connection (each answer
    /// numbered, so a desync shows), then closes it, for `connections`
    /// connections; counts the connections it accepted.
    fn keep_alive_sidecar(name: &str, connections: usize, answers: usize) -> (PathBuf, std::thread::JoinHandle<usize>) {
        let (path, listener) = test_socket(name);
        let server = std::thread::spawn(move || {
            let (mut accepted, mut answered) = (0, 0);
            for stream in listener.incoming().take(connections) {
                let mut stream = stream.unwrap();
                accepted += 1;
                for _ in 0..answers.max(1) {
                    let mut request = Vec::new();
                    let mut byte = [0u8; 1];
                    while !request.ends_with(b"\r\n\r\n") {
                        if stream.read(&mut byte).unwrap() == 0 {
                            return accepted;
                        }
                        request.push(byte[0]);
                    }
                    if answers == 0 {
                        break; // read the request, then hang up without answering
                    }
                    answered += 1;
                    let body = format!("{answered}");
                    let head = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n", body.len());
                    stream.write_all(format!("{head}{body}").as_bytes()).unwrap();
                }
            }
            accepted
        });
        (path, server)
    }

    #[test]
    fn one_connection_serves_many_calls() {
        let (path, server) = keep_alive_sidecar("many", 1, 3);
        for n in 1..=3 {
            let answer = request(&path, "GET", "/healthz", &[], None, Duration::from_secs(2), || {}).unwrap();
            assert_eq!(answer.body, n.to_string().as_bytes(), "each call reads its own answer");
            assert!(IDLE.with(|idle| idle.borrow().is_some()), "kept for the next call");
        }
        IDLE.with(|idle| idle.borrow_mut().take());
        assert_eq!(server.join().unwrap(), 1, "three calls, one connection");
    }

    #[test]
    fn a_connection_closed_while_idle_is_replaced_once() {
        // The sidecar answers once per connection and then closes it.
        let (path, server) = keep_alive_sidecar("closed", 2, 1);
        request(&path, "GET", "/healthz", &[], None, Duration::from_secs(2), || {}).unwrap();
        assert!(IDLE.with(|idle| idle.borrow().is_some()), "kept after the first answer");
        std::thread::sleep(Duration::from_millis(50));
        let again = request(&path, "GET", "/healthz", &[], None, Duration::from_secs(2), || {}).unwrap();
        assert_eq!(again.status, 200, "asked again on a new connection");
        IDLE.with(|idle| idle.borrow_mut().take());
        assert_eq!(server.join().unwrap(), 2);
    }

    #[test]
    fn a_request_read_and_dropped_is_not_sent_again() {
        // The sidecar reads each request and hangs up: it may have acted on it.
        let (path, server) = keep_alive_sidecar("dropped", 2, 0);
        let error = request(&path, "GET", "/healthz", &[], None, Duration::from_secs(2), || {}).unwrap_err();
        assert!(matches!(error, SidecarError::Protocol(_)), "{error:?}");
        drop(UnixStream::connect(&path)); // lets the fake's second accept end
        assert_eq!(server.join().unwrap(), 2, "one request connection, then ours: no second try");
    }

    #[test]
    fn a_call_cut_short_leaves_no_connection_behind() {
        let path = silent_sidecar("cut", Duration::from_secs(1));
        let error = request(&path, "GET", "/healthz", &[], None, Duration::from_millis(100), || {}).unwrap_err();
        assert_eq!(error, SidecarError::Timeout { after: Duration::from_millis(100) });
        assert!(IDLE.with(|idle| idle.borrow().is_none()), "a late answer must never be read as the next call's");
    }

    #[test]
    fn a_silent_sidecar_times_out_and_interrupts_are_polled() {
        let path = silent_sidecar("silent", Duration::from_secs(2));
        let mut polls = 0;
        let started = Instant::now();
        let error =
            request(&path, "GET", "/healthz", &[], None, Duration::from_millis(300), || polls += 1).unwrap_err();
        assert_eq!(error, SidecarError::Timeout { after: Duration::from_millis(300) });
        assert!(started.elapsed() < Duration::from_millis(900));
        assert!(polls >= 3, "interrupts polled {polls} times");
    }
}
