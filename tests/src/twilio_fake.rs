//! A fake of Twilio Verify v2, following its documented shapes: HTTP Basic
//! authentication, form-encoded `POST /v2/Services/{ServiceSid}/Verifications`
//! (`To`, `Channel`) and `.../VerificationCheck` (`To`, `Code`), JSON answers,
//! and Twilio's error envelope `{"code", "message", "more_info", "status"}` with
//! its codes: 20003 authentication, 60200 invalid parameter, 60202 max check
//! attempts, 60203 max send attempts, 20404 not found, 20429 rate limited.
//! It records the codes it "sent", so a test reads them as a traveler reads an SMS.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::fake_http::{json_reply, serve_on, Fault, Faults, Reply, Seen};

pub const TWILIO_ACCOUNT_SID: &str = "AC0000000000000000000000000000e2e0";
pub const TWILIO_AUTH_TOKEN: &str = "twilio_test_parker_wallet_e2e";
pub const TWILIO_SERVICE_SID: &str = "VA0000000000000000000000000000e2e0";

/// Twilio Verify's documented defaults.
const CODE_TTL: Duration = Duration::from_secs(10 * 60);
const MAX_CHECKS: u32 = 5;
/// Codes sent to one number within `CODE_TTL`.
const MAX_SENDS: usize = 5;

#[derive(Debug, Clone)]
struct Pending {
    sid: String,
    code: String,
    checks: u32,
    started: Instant,
}

#[derive(Default)]
struct State {
    pending: HashMap<String, Pending>,
    /// Every code sent, by number, oldest first, with when.
    sent: HashMap<String, Vec<(String, Instant)>>,
}

#[derive(Clone)]
pub struct FakeTwilio {
    pub url: String,
    pub faults: Arc<Faults>,
    state: Arc<Mutex<State>>,
}

fn error(status: u16, code: u32, message: &str) -> Reply {
    json_reply(
        status,
        &json!({
            "code": code,
            "message": message,
            "more_info": format!("https://www.twilio.com/docs/errors/{code}"),
            "status": status,
        }),
    )
}

fn verification(status: u16, pending: &Pending, to: &str, state: &str) -> Reply {
    json_reply(
        status,
        &json!({
            "sid": pending.sid,
            "service_sid": TWILIO_SERVICE_SID,
            "account_sid": TWILIO_ACCOUNT_SID,
            "to": to,
            "channel": "sms",
            "status": state,
            "valid": state == "approved",
        }),
    )
}

impl FakeTwilio {
    pub async fn start() -> anyhow::Result<Self> {
        Self::start_on(0).await
    }

    /// On a given port (0: any free one).
    pub async fn start_on(port: u16) -> anyhow::Result<Self> {
        let faults = Arc::new(Faults::default());
        let state = Arc::new(Mutex::new(State::default()));
        let (f, s) = (Arc::clone(&faults), Arc::clone(&state));
        let url = serve_on(port, move |seen| {
            let (faults, state) = (Arc::clone(&f), Arc::clone(&s));
            async move { handle(&faults, &state, seen).await }
        })
        .await?;
        Ok(Self { url, faults, state })
    }

    /// The codes sent to `to` (E.164), oldest first.
    pub fn codes_sent_to(&self, to: &str) -> Vec<String> {
        codes_sent(&self.state, to)
    }

    /// Every code sent, to any number.
    pub fn codes_sent(&self) -> usize {
        self.state.lock().unwrap_or_else(PoisonError::into_inner).sent.values().map(Vec::len).sum()
    }
}

fn codes_sent(state: &Mutex<State>, to: &str) -> Vec<String> {
    let state = state.lock().unwrap_or_else(PoisonError::into_inner);
    state.sent.get(to).map(|sent| sent.iter().map(|(code, _)| code.clone()).collect()).unwrap_or_default()
}

fn is_e164(to: &str) -> bool {
    let digits = to.strip_prefix('+').unwrap_or_default();
    (2..=15).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()) && !digits.starts_with('0')
}

async fn handle(faults: &Faults, state: &Mutex<State>, seen: Seen) -> Reply {
    use base64::Engine;
    // Not Twilio's: how the demo, a separate process, reads the "SMS".
    if let ("GET", Some(to)) = (seen.method.as_str(), seen.target.strip_prefix("/_fake/codes/")) {
        let to = to.replace("%2B", "+");
        return json_reply(200, &json!({ "to": to, "codes": codes_sent(state, &to) }));
    }
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{TWILIO_ACCOUNT_SID}:{TWILIO_AUTH_TOKEN}"));
    if seen.header("authorization") != Some(&format!("Basic {basic}")) {
        return error(401, 20003, "Authentication Error - invalid username");
    }
    match faults.take(&seen) {
        Some(Fault::Fail(429)) => return error(429, 20429, "Too Many Requests"),
        Some(Fault::Fail(status)) => return error(status, 20500, "Internal Server Error"),
        Some(Fault::Hang) => return faults.hang().await,
        Some(Fault::Slow(delay)) => tokio::time::sleep(delay).await,
        _ => {}
    }
    let form: HashMap<String, String> = serde_urlencoded::from_bytes(&seen.body).unwrap_or_default();
    let to = form.get("To").cloned().unwrap_or_default();
    if !is_e164(&to) {
        return error(400, 60200, "Invalid parameter `To`");
    }
    let service = format!("/v2/Services/{TWILIO_SERVICE_SID}");
    let mut state = state.lock().unwrap_or_else(PoisonError::into_inner);
    state.pending.retain(|_, p| p.started.elapsed() < CODE_TTL);
    match (seen.method.as_str(), seen.target.strip_prefix(&service)) {
        ("POST", Some("/Verifications")) => {
            if form.get("Channel").map(String::as_str) != Some("sms") {
                return error(400, 60200, "Invalid parameter `Channel`");
            }
            let recent =
                state.sent.get(&to).map_or(0, |sent| sent.iter().filter(|(_, at)| at.elapsed() < CODE_TTL).count());
            if recent >= MAX_SENDS {
                return error(429, 60203, "Max send attempts reached");
            }
            // A verification whose checks ran out is over: a new one starts.
            state.pending.retain(|number, p| *number != to || p.checks < MAX_CHECKS);
            // A resend within the verification's life sends the same code.
            let pending = state.pending.entry(to.clone()).or_insert_with(|| Pending {
                sid: format!("VE{}", uuid::Uuid::new_v4().simple()),
                code: format!("{:06}", uuid::Uuid::new_v4().as_u128() % 1_000_000),
                checks: 0,
                started: Instant::now(),
            });
            let code = pending.code.clone();
            let answer = verification(201, pending, &to, "pending");
            state.sent.entry(to).or_default().push((code, Instant::now()));
            answer
        }
        ("POST", Some("/VerificationCheck")) => {
            let Some(pending) = state.pending.get_mut(&to) else {
                return error(404, 20404, "The requested resource was not found");
            };
            pending.checks += 1;
            if pending.checks > MAX_CHECKS {
                return error(429, 60202, "Max check attempts reached");
            }
            if form.get("Code") == Some(&pending.code) {
                let approved = pending.clone();
                state.pending.remove(&to);
                verification(200, &approved, &to, "approved")
            } else {
                verification(200, pending, &to, "pending")
            }
        }
        _ => error(404, 20404, "The requested resource was not found"),
    }
}
