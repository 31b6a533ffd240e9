//! The HTTP surface. `dispatch` is the router: it checks the caller's class,
//! reads the body within the size limit and hands over to one route module.

pub mod api;
mod bookings;
mod caller;
mod crypto;
mod error;
pub(crate) mod health;
mod idempotency;
mod phone;
mod privacy;
mod stripe_webhooks;
pub mod views;
mod wallet;

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use serde::Serialize;

pub use error::ApiError;

use crate::domain::CallerClass;
use crate::kill_switches::Feature;
use crate::state::AppState;

/// A response body: whole (every route but one), or streamed as it is
/// written (the GDPR export). An error while streaming cuts the response short.
pub type Body = http_body_util::combinators::BoxBody<Bytes, std::io::Error>;
pub type HttpResponse = Response<Body>;

/// A whole body.
fn full(bytes: impl Into<Bytes>) -> Body {
    boxed(Full::new(bytes.into()))
}

/// A whole body as the response body type (a problem's, say).
pub fn boxed(body: Full<Bytes>) -> Body {
    body.map_err(|never| match never {}).boxed()
}

/// A route's answer before it becomes HTTP: status and JSON body (a view
/// serialised, or a stored answer replayed).
pub(crate) type Answer = (StatusCode, serde_json::Value);

/// A view as an [`Answer`].
fn answer<T: Serialize>(status: StatusCode, view: &T) -> Result<Answer, ApiError> {
    let body = serde_json::to_value(view).map_err(|e| ApiError::Internal(format!("serialising the answer: {e}")))?;
    Ok((status, body))
}

/// A JSON request body; refused as `invalid_request`, naming what is wrong.
fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| ApiError::BadRequest(format!("body: {e}")))
}

/// Every route the sidecar serves: parsed from the path once, and the one place
/// that says which caller classes may use it.
#[derive(Debug, Clone, Copy)]
enum Route<'p> {
    Healthz,
    Readyz,
    Metrics,
    Crypto(crypto::Operation),
    WalletCards,
    WalletSetupIntents,
    WalletCard(&'p str),
    WalletCardDefault(&'p str),
    WalletCardConsent(&'p str),
    StripeWebhook,
    Bookings,
    Booking(&'p str),
    BookingResume(&'p str),
    Profile,
    PhoneVerification,
    PhoneVerificationCheck,
    PrivacyExport,
    PrivacyAccount,
}

impl<'p> Route<'p> {
    fn parse(path: &'p str) -> Option<Self> {
        let id = |rest: &'p str| (!rest.is_empty() && !rest.contains('/')).then_some(rest);
        Some(match path {
            "/healthz" => Self::Healthz,
            "/readyz" => Self::Readyz,
            "/metrics" => Self::Metrics,
            "/v1/crypto/encrypt" => Self::Crypto(crypto::Operation::Encrypt),
            "/v1/crypto/decrypt" => Self::Crypto(crypto::Operation::Decrypt),
            "/v1/crypto/rewrap" => Self::Crypto(crypto::Operation::Rewrap),
            "/v1/wallet/payment-methods" => Self::WalletCards,
            "/v1/wallet/setup-intents" => Self::WalletSetupIntents,
            "/v1/webhooks/stripe" => Self::StripeWebhook,
            "/v1/bookings" => Self::Bookings,
            "/v1/profile" => Self::Profile,
            "/v1/profile/phone/verification" => Self::PhoneVerification,
            "/v1/profile/phone/verification/check" => Self::PhoneVerificationCheck,
            "/v1/privacy/export" => Self::PrivacyExport,
            "/v1/privacy/account" => Self::PrivacyAccount,
            other => {
                if let Some(rest) = other.strip_prefix("/v1/wallet/payment-methods/") {
                    if let Some(card) = rest.strip_suffix("/default") {
                        Self::WalletCardDefault(id(card)?)
                    } else if let Some(card) = rest.strip_suffix("/consent") {
                        Self::WalletCardConsent(id(card)?)
                    } else {
                        Self::WalletCard(id(rest)?)
                    }
                } else {
                    let rest = other.strip_prefix("/v1/bookings/")?;
                    match rest.strip_suffix("/resume") {
                        Some(booking) => Self::BookingResume(id(booking)?),
                        None => Self::Booking(id(rest)?),
                    }
                }
            }
        })
    }

    /// The route's name in metrics: its path with `{id}` for the id.
    fn name(self) -> &'static str {
        match self {
            Self::Healthz => "/healthz",
            Self::Readyz => "/readyz",
            Self::Metrics => "/metrics",
            Self::Crypto(crypto::Operation::Encrypt) => "/v1/crypto/encrypt",
            Self::Crypto(crypto::Operation::Decrypt) => "/v1/crypto/decrypt",
            Self::Crypto(crypto::Operation::Rewrap) => "/v1/crypto/rewrap",
            Self::WalletCards => "/v1/wallet/payment-methods",
            Self::WalletSetupIntents => "/v1/wallet/setup-intents",
            Self::WalletCard(_) => "/v1/wallet/payment-methods/{id}",
            Self::WalletCardDefault(_) => "/v1/wallet/payment-methods/{id}/default",
            Self::WalletCardConsent(_) => "/v1/wallet/payment-methods/{id}/consent",
            Self::StripeWebhook => "/v1/webhooks/stripe",
            Self::Bookings => "/v1/bookings",
            Self::Booking(_) => "/v1/bookings/{id}",
            Self::BookingResume(_) => "/v1/bookings/{id}/resume",
            Self::Profile => "/v1/profile",
            Self::PhoneVerification => "/v1/profile/phone/verification",
            Self::PhoneVerificationCheck => "/v1/profile/phone/verification/check",
            Self::PrivacyExport => "/v1/privacy/export",
            Self::PrivacyAccount => "/v1/privacy/account",
        }
    }

    fn allowed(self, class: CallerClass) -> bool {
        match self {
            Self::Healthz | Self::Readyz => true,
            // Operators' system work (rotation) runs in-process, never over HTTP.
            Self::Crypto(_) => matches!(class, CallerClass::Database | CallerClass::Edge),
            Self::Metrics => class == CallerClass::Admin,
            Self::WalletCards
            | Self::WalletSetupIntents
            | Self::WalletCard(_)
            | Self::WalletCardDefault(_)
            | Self::WalletCardConsent(_)
            | Self::StripeWebhook
            | Self::Bookings
            | Self::Booking(_)
            | Self::BookingResume(_)
            | Self::Profile
            | Self::PhoneVerification
            | Self::PhoneVerificationCheck
            | Self::PrivacyExport
            | Self::PrivacyAccount => class == CallerClass::Edge,
        }
    }
}

/// Every (route, method) the sidecar serves, as metrics name them: shown at 0
/// from the start.
pub fn served() -> Vec<(&'static str, &'static str)> {
    use crypto::Operation::{Decrypt, Encrypt, Rewrap};
    let id = "{id}";
    [
        (Route::Healthz, "GET"),
        (Route::Readyz, "GET"),
        (Route::Metrics, "GET"),
        (Route::Crypto(Encrypt), "POST"),
        (Route::Crypto(Decrypt), "POST"),
        (Route::Crypto(Rewrap), "POST"),
        (Route::WalletCards, "GET"),
        (Route::WalletCards, "POST"),
        (Route::WalletSetupIntents, "POST"),
        (Route::WalletCard(id), "DELETE"),
        (Route::WalletCardDefault(id), "POST"),
        (Route::WalletCardConsent(id), "POST"),
        (Route::WalletCardConsent(id), "DELETE"),
        (Route::StripeWebhook, "POST"),
        (Route::Bookings, "POST"),
        (Route::Booking(id), "GET"),
        (Route::BookingResume(id), "POST"),
        (Route::Profile, "GET"),
        (Route::PhoneVerification, "POST"),
        (Route::PhoneVerificationCheck, "POST"),
        (Route::PrivacyExport, "GET"),
        (Route::PrivacyAccount, "DELETE"),
    ]
    .into_iter()
    .map(|(route, method)| (route.name(), method))
    .collect()
}

/// A method as metrics name it (a bounded set).
fn method_name(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::DELETE => "DELETE",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}

/// Routes one request. `caller` is the peer's class, `None` when its uid is not
/// in the caller map: such a peer is refused everything.
pub async fn dispatch(
    state: Arc<AppState>,
    caller: Option<CallerClass>,
    request: Request<Incoming>,
) -> Result<HttpResponse, Infallible> {
    let path = request.uri().path().to_owned();
    let method = request.method().clone();
    let parsed = Route::parse(&path);
    let route_name = parsed.map_or("unmatched", Route::name);
    let http = &state.metrics.http;
    let in_flight = http.start(route_name, method_name(&method));
    let waited = Arc::new(AtomicU64::new(0));
    let answer = crate::metrics::counting_waits(Arc::clone(&waited), route(&state, caller, &path, parsed, request));
    let mut response = match answer.await {
        Ok(response) => response,
        Err(error) => {
            match &error {
                ApiError::Unauthorized(refused) => http.tokens_refused.add(refused.reason()),
                ApiError::InvalidSignature(refused) => http.signatures_refused.add(refused.reason()),
                _ => {}
            }
            let problem = error.into_problem();
            if problem.status >= 500 {
                tracing::warn!(%method, %path, code = problem.code, "request failed");
            }
            problem.into_response().map(boxed)
        }
    };
    match response.status() {
        StatusCode::FORBIDDEN => http.forbidden.add(caller.map_or("unknown", CallerClass::as_str)),
        StatusCode::TOO_MANY_REQUESTS => http.rate_limited.add(route_name),
        _ => {}
    }
    if state.settings.server_timing {
        let waited_ms = waited.load(Ordering::Relaxed) as f64 / 1000.0;
        if let Ok(value) = hyper::header::HeaderValue::from_str(&format!("outbound;dur={waited_ms:.3}")) {
            response.headers_mut().insert("server-timing", value);
        }
    }
    in_flight.answered(response.status().as_u16());
    Ok(response)
}

/// 503 `feature_disabled` while an operator has `feature` switched off.
fn switched_on(state: &AppState, feature: Feature) -> Result<(), ApiError> {
    if state.kill_switches.is_off(feature) {
        return Err(ApiError::FeatureDisabled(feature));
    }
    Ok(())
}

/// A turn for one of `traveler`'s requests (see `fairness`), or 429.
async fn admit(state: &AppState, traveler: uuid::Uuid) -> Result<crate::fairness::Admission, ApiError> {
    state.traveler_gate.admit(traveler).await.ok_or(ApiError::TooManyRequests)
}

fn parse_id(text: &str) -> Result<uuid::Uuid, ApiError> {
    uuid::Uuid::parse_str(text).map_err(|_| ApiError::InvalidId(text.to_owned()))
}

/// Limits on a request's headers, checked here so that the refusal is
/// problem+json like every other. hyper's own limits (see `server`) are set
/// well above these and answer a bare 431 only past them.
pub const MAX_HEADERS: usize = 100;
pub const MAX_HEADER_BYTES: usize = 32 * 1024;

fn check_headers(headers: &hyper::HeaderMap) -> Result<(), ApiError> {
    if headers.len() > MAX_HEADERS {
        return Err(ApiError::HeadersTooLarge("100 headers"));
    }
    let bytes: usize = headers.iter().map(|(name, value)| name.as_str().len() + value.len()).sum();
    if bytes > MAX_HEADER_BYTES {
        return Err(ApiError::HeadersTooLarge("32 KiB"));
    }
    Ok(())
}

async fn route(
    state: &Arc<AppState>,
    caller: Option<CallerClass>,
    path: &str,
    parsed: Option<Route<'_>>,
    request: Request<Incoming>,
) -> Result<HttpResponse, ApiError> {
    check_headers(request.headers())?;
    let route = parsed.ok_or_else(|| ApiError::NotFound(path.to_owned()))?;
    let class = caller.ok_or(ApiError::Forbidden)?;
    if !route.allowed(class) {
        return Err(ApiError::Forbidden);
    }
    let method = request.method().clone();
    let limit = state.settings.limits.max_body_bytes;
    match (method.clone(), route) {
        (Method::GET, Route::Healthz) => Ok(health::healthz()),
        (Method::GET, Route::Readyz) => Ok(health::readyz(state).await),
        (Method::GET, Route::Metrics) => Ok(health::metrics(state).await),
        (Method::POST, Route::Crypto(operation)) => crypto::handle(state, class, operation, request).await,
        (Method::POST, Route::StripeWebhook) => {
            let signature = request.headers().get("stripe-signature").and_then(|v| v.to_str().ok()).map(str::to_owned);
            let body = read_body(request, limit).await?;
            let (status, answer) = stripe_webhooks::receive(state, signature.as_deref(), &body).await?;
            Ok(json_response(status, &answer))
        }
        (Method::POST, Route::Bookings) => {
            // New bookings only: one in flight finishes, and `resume` still runs.
            switched_on(state, Feature::AutoBooking)?;
            Ok(answer_response(bookings::create(state, request).await?, false))
        }
        (Method::GET, Route::Booking(id)) => {
            Ok(answer_response(bookings::show(state, request, parse_id(id)?).await?, false))
        }
        (Method::POST, Route::BookingResume(id)) => {
            Ok(answer_response(bookings::resume(state, request, parse_id(id)?).await?, false))
        }
        (Method::GET, Route::PrivacyExport) => privacy::export(state, request).await,
        (Method::GET, Route::Profile) => {
            let call = wallet::authenticate(state, &request)?;
            let _admission = admit(state, call.actor.traveler.user_id).await?;
            Ok(answer_response(wallet::show_profile(&call).await?, false))
        }
        (Method::DELETE, Route::PrivacyAccount) => {
            let call = wallet::authenticate(state, &request)?;
            if call.idempotency_key.is_none() {
                return Err(ApiError::BadRequest("an Idempotency-Key is required to erase an account".into()));
            }
            let _admission = admit(state, call.actor.traveler.user_id).await?;
            let body = read_body(request, limit).await?;
            let name = format!("{method} {path}");
            let (answer, replayed) =
                idempotency::run(&call, &name, &body, async |_| privacy::erase_account(&call, &body).await).await?;
            Ok(answer_response(answer, replayed))
        }
        (Method::POST, route @ (Route::PhoneVerification | Route::PhoneVerificationCheck)) => {
            switched_on(state, Feature::PhoneVerification)?;
            let call = wallet::authenticate(state, &request)?;
            let phone = state.phone_verification().ok_or(ApiError::PhoneNotConfigured)?;
            let _admission = admit(state, call.actor.traveler.user_id).await?;
            let body = read_body(request, limit).await?;
            let name = format!("{method} {path}");
            let (answer, replayed) = match route {
                Route::PhoneVerification => {
                    idempotency::run(&call, &name, &body, async |_| phone::start(&call, phone, &body).await).await?
                }
                _ => idempotency::run(&call, &name, &body, async |_| phone::check(&call, phone, &body).await).await?,
            };
            Ok(answer_response(answer, replayed))
        }
        (
            Method::GET | Method::POST | Method::DELETE,
            route @ (Route::WalletCards
            | Route::WalletSetupIntents
            | Route::WalletCard(_)
            | Route::WalletCardDefault(_)
            | Route::WalletCardConsent(_)),
        ) => {
            if method != Method::GET {
                switched_on(state, Feature::WalletWrites)?;
            }
            if matches!((&method, route), (&Method::POST, Route::WalletCards | Route::WalletSetupIntents)) {
                switched_on(state, Feature::CardSaves)?;
            }
            let call = wallet::authenticate(state, &request)?;
            let _admission = admit(state, call.actor.traveler.user_id).await?;
            let body = read_body(request, limit).await?;
            let name = format!("{method} {path}");
            let (answer, replayed) = match (&method, route) {
                (&Method::GET, Route::WalletCards) => (wallet::list_payment_methods(&call).await?, false),
                (&Method::POST, Route::WalletSetupIntents) => {
                    match idempotency::run(&call, &name, &body, async |_| wallet::create_setup_intent(&call).await)
                        .await?
                    {
                        (answer, true) => (wallet::with_client_secret(&call, answer).await?, true),
                        fresh => fresh,
                    }
                }
                (&Method::POST, Route::WalletCards) => {
                    idempotency::run(&call, &name, &body, async |key| {
                        wallet::add_payment_method(&call, &body, key).await
                    })
                    .await?
                }
                (&Method::POST, Route::WalletCardDefault(id)) => {
                    let id = parse_id(id)?;
                    idempotency::run(&call, &name, &body, async |key| wallet::make_default(&call, id, key).await)
                        .await?
                }
                (&Method::POST, Route::WalletCardConsent(id)) => {
                    let id = parse_id(id)?;
                    idempotency::run(&call, &name, &body, async |key| {
                        wallet::consent_to_card(&call, id, &body, key).await
                    })
                    .await?
                }
                (&Method::DELETE, Route::WalletCardConsent(id)) => {
                    let id = parse_id(id)?;
                    idempotency::run(&call, &name, &body, async |key| {
                        wallet::withdraw_card_consent(&call, id, key).await
                    })
                    .await?
                }
                (&Method::DELETE, Route::WalletCard(id)) => {
                    let id = parse_id(id)?;
                    idempotency::run(&call, &name, &body, async |key| {
                        wallet::delete_payment_method(&call, id, key).await
                    })
                    .await?
                }
                _ => return Err(ApiError::MethodNotAllowed),
            };
            Ok(answer_response(answer, replayed))
        }
        _ => Err(ApiError::MethodNotAllowed),
    }
}

/// A route's answer as HTTP: problem+json when it is a stored refusal, and the
/// `idempotent-replayed` header on a replay.
fn answer_response((status, body): Answer, replayed: bool) -> HttpResponse {
    let mut response = json_response(status, &body);
    if status.as_u16() >= 400 {
        response
            .headers_mut()
            .insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static("application/problem+json"));
    }
    if replayed {
        response.headers_mut().insert("idempotent-replayed", hyper::header::HeaderValue::from_static("true"));
    }
    response
}

async fn read_body(request: Request<Incoming>, limit: usize) -> Result<Bytes, ApiError> {
    let declared = request
        .headers()
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|length| length > limit) {
        return Err(ApiError::TooLarge(limit));
    }
    match Limited::new(request.into_body(), limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) if error.downcast_ref::<http_body_util::LengthLimitError>().is_some() => {
            Err(ApiError::TooLarge(limit))
        }
        Err(error) => Err(ApiError::BadRequest(format!("reading the body: {error}"))),
    }
}

/// A JSON response with the given status.
fn json_response<T: Serialize + ?Sized>(status: StatusCode, body: &T) -> HttpResponse {
    let bytes = match serde_json::to_vec(body) {
        Ok(bytes) => bytes,
        Err(error) => {
            return ApiError::Internal(format!("serialising the answer: {error}"))
                .into_problem()
                .into_response()
                .map(boxed)
        }
    };
    let mut response = Response::new(full(bytes));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static("application/json"));
    response
}

fn text_response(body: String) -> HttpResponse {
    let mut response = Response::new(full(body));
    response
        .headers_mut()
        .insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static("text/plain; version=0.0.4"));
    response
}
