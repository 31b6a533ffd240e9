//! [`VerifyPort`] over Twilio Verify's HTTP API: form-encoded POSTs with HTTP
//! Basic authentication (account SID and auth token, or an API key and its
//! secret), JSON answers, Twilio's error envelope (`code`, `message`).

use std::time::Duration;

use base64::Engine;
use http_body_util::Full;
use hyper::body::Bytes;
use secrecy::{ExposeSecret, SecretString};

use super::{TwilioError, Verification, VerificationStatus, VerifyPort};
use crate::domain::{PhoneNumber, VerificationCode};
use crate::outbound::{exchange, https_client, HttpsClient, OutboundError};

pub struct HttpTwilioVerify {
    client: HttpsClient,
    api_base: String,
    service_sid: String,
    username: String,
    password: SecretString,
    timeout: Duration,
}

impl std::fmt::Debug for HttpTwilioVerify {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpTwilioVerify")
            .field("api_base", &self.api_base)
            .field("service_sid", &self.service_sid)
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

impl HttpTwilioVerify {
    /// `api_base`: `https://verify.twilio.com` in production; `service_sid` the
    /// Verify service (`VA…`); `username`/`password` the account SID and auth
    /// token, or an API key SID and its secret.
    pub fn new(api_base: &str, service_sid: &str, username: &str, password: SecretString, timeout: Duration) -> Self {
        Self {
            client: https_client(),
            api_base: api_base.trim_end_matches('/').to_owned(),
            service_sid: service_sid.to_owned(),
            username: username.to_owned(),
            password,
            timeout,
        }
    }

    async fn post(&self, resource: &str, form: &[(&str, &str)]) -> Result<Verification, TwilioError> {
        let body = serde_urlencoded::to_string(form).map_err(|e| TwilioError::Unavailable(format!("form: {e}")))?;
        let credentials = base64::engine::general_purpose::STANDARD.encode(format!(
            "{}:{}",
            self.username,
            self.password.expose_secret()
        ));
        let request = hyper::Request::builder()
            .method(hyper::Method::POST)
            .uri(format!("{}/v2/Services/{}/{resource}", self.api_base, self.service_sid))
            .header("authorization", format!("Basic {credentials}"))
            .header("accept", "application/json")
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| TwilioError::Unavailable(format!("request: {e}")))?;
        let (status, bytes) = exchange("twilio", &self.client, request, self.timeout).await.map_err(|e| match e {
            OutboundError::Timeout => TwilioError::Unavailable("no answer within the deadline".into()),
            OutboundError::Failed(detail) => TwilioError::Unavailable(detail),
        })?;
        let answer: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
        if !(200..300).contains(&status) {
            return Err(error_of(status, &answer));
        }
        match (answer["sid"].as_str(), answer["status"].as_str()) {
            (Some(sid), Some(state)) => {
                Ok(Verification { sid: sid.to_owned(), status: VerificationStatus::parse(state) })
            }
            _ => Err(TwilioError::Unavailable(format!("{status}: an answer without sid and status"))),
        }
    }
}

/// Twilio's error envelope to ours, by its documented codes.
fn error_of(status: u16, body: &serde_json::Value) -> TwilioError {
    let code = body["code"].as_i64().unwrap_or_default();
    let message = body["message"].as_str().unwrap_or_default().to_owned();
    match code {
        60200 => TwilioError::InvalidParameter(message),
        60202 => TwilioError::MaxCheckAttempts,
        60203 => TwilioError::MaxSendAttempts,
        20404 => TwilioError::NotFound,
        20429 => TwilioError::RateLimited,
        _ if status == 429 => TwilioError::RateLimited,
        _ if status >= 500 || code == 0 => TwilioError::Unavailable(format!("{status} {code}: {message}")),
        _ => TwilioError::Refused { status, code, message },
    }
}

#[async_trait::async_trait]
impl VerifyPort for HttpTwilioVerify {
    async fn start(&self, to: &PhoneNumber) -> Result<Verification, TwilioError> {
        self.post("Verifications", &[("To", to.as_e164()), ("Channel", "sms")]).await
    }

    async fn check(&self, to: &PhoneNumber, code: &VerificationCode) -> Result<Verification, TwilioError> {
        self.post("VerificationCheck", &[("To", to.as_e164()), ("Code", code.expose())]).await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use http_body_util::BodyExt;
    use hyper::service::service_fn;
    use hyper_util::rt::TokioIo;

    use super::*;

    /// What the fake received: path, Authorization header, form body.
    type Seen = Arc<Mutex<Vec<(String, String, String)>>>;

    /// A Twilio stand-in on a loopback port: answers each request with the next
    /// (status, JSON body) and records what it was sent.
    async fn fake(answers: Vec<(u16, String)>) -> (String, Seen) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let seen: Seen = Arc::default();
        let answers = Arc::new(Mutex::new(answers.into_iter()));
        let recorder = seen.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (answers, recorder) = (answers.clone(), recorder.clone());
                let service = service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                    let (answers, recorder) = (answers.clone(), recorder.clone());
                    async move {
                        let path = request.uri().path().to_owned();
                        let auth = request
                            .headers()
                            .get("authorization")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or_default()
                            .to_owned();
                        let body = request.into_body().collect().await.unwrap().to_bytes();
                        recorder.lock().unwrap().push((path, auth, String::from_utf8_lossy(&body).into_owned()));
                        let (status, json) = answers.lock().unwrap().next().unwrap_or((500, "{}".to_owned()));
                        Ok::<_, std::convert::Infallible>(
                            hyper::Response::builder()
                                .status(status)
                                .header("content-type", "application/json")
                                .body(Full::new(Bytes::from(json)))
                                .unwrap(),
                        )
                    }
                });
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service),
                );
            }
        });
        (base, seen)
    }

    fn verify(base: &str) -> HttpTwilioVerify {
        HttpTwilioVerify::new(base, "VA123", "AC456", SecretString::from("token"), Duration::from_secs(2))
    }

    fn phone() -> PhoneNumber {
        PhoneNumber::parse("+351 912 345 678").unwrap()
    }

    #[tokio::test]
    async fn a_verification_is_started_by_sms_and_checked_with_basic_auth() {
        let (base, seen) = fake(vec![
            (201, r#"{"sid": "VE1", "status": "pending", "channel": "sms", "to": "+351912345678"}"#.to_owned()),
            (200, r#"{"sid": "VE1", "status": "pending", "valid": false}"#.to_owned()),
            (200, r#"{"sid": "VE1", "status": "approved", "valid": true}"#.to_owned()),
        ])
        .await;
        let twilio = verify(&base);
        let started = twilio.start(&phone()).await.unwrap();
        assert_eq!(started, Verification { sid: "VE1".into(), status: VerificationStatus::Pending });
        let wrong = twilio.check(&phone(), &VerificationCode::parse("000000").unwrap()).await.unwrap();
        assert_eq!(wrong.status, VerificationStatus::Pending);
        let right = twilio.check(&phone(), &VerificationCode::parse("123456").unwrap()).await.unwrap();
        assert_eq!(right.status, VerificationStatus::Approved);

        let seen = seen.lock().unwrap().clone();
        let basic = format!("Basic {}", base64::engine::general_purpose::STANDARD.encode("AC456:token"));
        assert_eq!(
            seen[0],
            ("/v2/Services/VA123/Verifications".into(), basic.clone(), "To=%2B351912345678&Channel=sms".into())
        );
        assert_eq!(
            seen[2],
            ("/v2/Services/VA123/VerificationCheck".into(), basic, "To=%2B351912345678&Code=123456".into())
        );
    }

    #[tokio::test]
    async fn twilios_error_codes_become_errors_of_their_own() {
        let envelope = |code: i64, status: u16| {
            let more_info = format!("https://www.twilio.com/docs/errors/{code}");
            (
                status,
                serde_json::json!({ "code": code, "message": "m", "more_info": more_info, "status": status })
                    .to_string(),
            )
        };
        let (base, _) = fake(vec![
            envelope(60200, 400),
            envelope(60202, 429),
            envelope(60203, 429),
            envelope(20404, 404),
            envelope(20429, 429),
            envelope(60410, 403),
            (503, "upstream trouble".to_owned()),
        ])
        .await;
        let twilio = verify(&base);
        let code = VerificationCode::parse("123456").unwrap();
        assert_eq!(twilio.start(&phone()).await, Err(TwilioError::InvalidParameter("m".into())));
        assert_eq!(twilio.check(&phone(), &code).await, Err(TwilioError::MaxCheckAttempts));
        assert_eq!(twilio.start(&phone()).await, Err(TwilioError::MaxSendAttempts));
        assert_eq!(twilio.check(&phone(), &code).await, Err(TwilioError::NotFound));
        assert_eq!(twilio.start(&phone()).await, Err(TwilioError::RateLimited));
        assert_eq!(
            twilio.start(&phone()).await,
            Err(TwilioError::Refused { status: 403, code: 60410, message: "m".into() })
        );
        assert!(matches!(twilio.start(&phone()).await, Err(TwilioError::Unavailable(_))));
    }

    #[tokio::test]
    async fn no_answer_is_unavailable_and_the_secret_never_prints() {
        let twilio = HttpTwilioVerify::new(
            "http://127.0.0.1:9",
            "VA123",
            "AC456",
            SecretString::from("super-secret-token"),
            Duration::from_millis(500),
        );
        assert!(matches!(twilio.start(&phone()).await, Err(TwilioError::Unavailable(_))));
        assert!(!format!("{twilio:?}").contains("super-secret-token"));
    }
}
