//! `/v1/wallet/...`: the traveler's wallet, for Edge Functions forwarding the
//! traveler's JWT. Each handler parses, calls the `wallet` domain and answers
//! with a view; the rules and the queries are in `wallet`.

use hyper::body::Incoming;
use hyper::{Request, StatusCode};
use schemars::JsonSchema;
use secrecy::ExposeSecret;
use serde::Deserialize;

use super::caller::{caller_headers, CallerHeaders};
use super::error::ApiError;
use super::idempotency::ClaimedKey;
use super::views::{CardView, ConsentView, Data, DeletedView, ProfileView, SetupIntentView};
use super::{answer, parse_json, Answer};
use crate::auth::JwtVerifier;
use crate::domain::{Actor, ConsentVersion};
use crate::state::AppState;
use crate::wallet::{Card, Consent, SavedCard, Wallet};

/// A wallet request: the verified traveler and how they asked, the wallet, and
/// the request's `Idempotency-Key`, if any.
pub struct WalletCall<'s> {
    pub actor: Actor,
    pub wallet: Wallet<'s>,
    pub idempotency_key: Option<String>,
}

pub fn authenticate<'s>(state: &'s AppState, request: &Request<Incoming>) -> Result<WalletCall<'s>, ApiError> {
    let (Some(verifier), Some(wallet)) = (&state.verifier, state.wallet()) else {
        return Err(ApiError::NotConfigured);
    };
    let CallerHeaders { authorization, meta, idempotency_key } = caller_headers(request)?;
    let traveler = verifier.verify(JwtVerifier::bearer(authorization.as_deref())?)?;
    Ok(WalletCall { actor: Actor { traveler, meta }, wallet, idempotency_key })
}

/// `GET /v1/profile`.
pub async fn show_profile(call: &WalletCall<'_>) -> Result<Answer, ApiError> {
    let profile = call.wallet.profile(&call.actor).await?;
    answer(StatusCode::OK, &Data { data: ProfileView::from(profile) })
}

/// `GET /v1/wallet/payment-methods`: the traveler's cards, default first.
pub async fn list_payment_methods(call: &WalletCall<'_>) -> Result<Answer, ApiError> {
    let cards = call.wallet.cards(&call.actor).await?;
    answer(StatusCode::OK, &Data { data: cards.into_iter().map(CardView::from).collect::<Vec<_>>() })
}

/// `POST /v1/wallet/payment-methods`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "AddPaymentMethodRequest")]
pub(super) struct AddCard {
    /// A SetupIntent of this traveler's that Stripe.js confirmed.
    setup_intent_id: String,
    /// The traveler ticked the consent to off-session charges, shown this text.
    off_session_consent: Option<ConsentInput>,
}

/// The consent text the traveler agreed to, by its version.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "CardConsentRequest")]
pub(super) struct ConsentInput {
    text_version: String,
}

impl ConsentInput {
    fn version(&self) -> Result<ConsentVersion, ApiError> {
        ConsentVersion::parse(&self.text_version).map_err(|e| ApiError::BadRequest(e.to_string()))
    }
}

/// 201 for what a request created, 200 for what it found already there.
fn created_or_ok(created: bool) -> StatusCode {
    if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    }
}

/// `POST /v1/wallet/payment-methods {setup_intent_id}`: 201 with a new card,
/// 200 when the same card was saved again.
pub async fn add_payment_method(
    call: &WalletCall<'_>,
    body: &[u8],
    key: Option<&ClaimedKey>,
) -> Result<Answer, ApiError> {
    // Unconfigured first, as it always was: a 503 frees an Idempotency-Key, a 400 is kept.
    if call.wallet.stripe.is_none() {
        return Err(ApiError::NotConfigured);
    }
    let input: AddCard = parse_json(body)?;
    let consent = input.off_session_consent.as_ref().map(ConsentInput::version).transpose()?;
    let view =
        |saved: &SavedCard| answer(created_or_ok(saved.created), &Data { data: CardView::from(saved.card.clone()) });
    let keep = ClaimedKey::keeping(key, view);
    view(&call.wallet.add_card(&call.actor, &input.setup_intent_id, consent.as_ref(), &keep).await?)
}

/// `POST /v1/wallet/payment-methods/{id}/default`.
pub async fn make_default(
    call: &WalletCall<'_>,
    card_id: uuid::Uuid,
    key: Option<&ClaimedKey>,
) -> Result<Answer, ApiError> {
    let view = |card: &Card| answer(StatusCode::OK, &Data { data: CardView::from(card.clone()) });
    view(&call.wallet.make_default(&call.actor, card_id, &ClaimedKey::keeping(key, view)).await?)
}

/// `POST /v1/wallet/payment-methods/{id}/consent {text_version}`: 201 with the
/// new consent, 200 with the one already in force.
pub async fn consent_to_card(
    call: &WalletCall<'_>,
    card_id: uuid::Uuid,
    body: &[u8],
    key: Option<&ClaimedKey>,
) -> Result<Answer, ApiError> {
    let input: ConsentInput = parse_json(body)?;
    let view = |(consent, created): &(Consent, bool)| {
        answer(created_or_ok(*created), &Data { data: ConsentView::from(consent.clone()) })
    };
    let keep = ClaimedKey::keeping(key, view);
    view(&call.wallet.consent_to_card(&call.actor, card_id, &input.version()?, &keep).await?)
}

/// `DELETE /v1/wallet/payment-methods/{id}/consent`: the consent withdrawn.
pub async fn withdraw_card_consent(
    call: &WalletCall<'_>,
    card_id: uuid::Uuid,
    key: Option<&ClaimedKey>,
) -> Result<Answer, ApiError> {
    let view = |consent: &Consent| answer(StatusCode::OK, &Data { data: ConsentView::from(consent.clone()) });
    view(&call.wallet.withdraw_card_consent(&call.actor, card_id, &ClaimedKey::keeping(key, view)).await?)
}

/// `DELETE /v1/wallet/payment-methods/{id}`.
pub async fn delete_payment_method(
    call: &WalletCall<'_>,
    card_id: uuid::Uuid,
    key: Option<&ClaimedKey>,
) -> Result<Answer, ApiError> {
    let view = |_: &()| answer(StatusCode::OK, &DeletedView { deleted: card_id });
    call.wallet.delete_card(&call.actor, card_id, &ClaimedKey::keeping(key, view)).await?;
    view(&())
}

/// `POST /v1/wallet/setup-intents`: a SetupIntent (off-session use) for the
/// traveler's customer; answers the client secret Stripe.js needs.
pub async fn create_setup_intent(call: &WalletCall<'_>) -> Result<Answer, ApiError> {
    let new = call.wallet.create_setup_intent(&call.actor, call.idempotency_key.as_deref()).await?;
    answer(StatusCode::OK, &SetupIntentView::from(&new))
}

/// A replayed SetupIntent answer with its client secret fetched again from
/// Stripe (the stored answer has it redacted).
pub async fn with_client_secret(call: &WalletCall<'_>, (status, mut body): Answer) -> Result<Answer, ApiError> {
    let Some(id) = body["setup_intent_id"].as_str().filter(|_| status.is_success()).map(str::to_owned) else {
        return Ok((status, body));
    };
    let secret = call.wallet.setup_intent_client_secret(&id).await?;
    body["client_secret"] = serde_json::Value::from(secret.expose_secret());
    Ok((status, body))
}
