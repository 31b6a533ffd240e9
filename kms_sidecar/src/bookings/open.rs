//! Opening a booking: the request checked, the campaign's consent and a usable
//! card confirmed, the passengers sealed, the row written (state
//! `authorizing`). The row is unique per traveler and `Idempotency-Key`, so the
//! same request again finds its booking instead of making a second one.

use serde_json::Value;

use super::{store, Actor, BookingError, Ports};
use crate::db::Database;
use crate::domain::sealed::PASSENGERS;
use crate::domain::Money;

/// What fingerprints a booking request (with the traveler and the body).
const ROUTE: &str = "POST /v1/bookings";

#[derive(serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "BookingRequest")]
pub struct NewBooking {
    pub campaign_id: uuid::Uuid,
    pub offer_id: String,
    pub passengers: Value,
    pub amount: i64,
    pub currency: String,
    /// IATA codes, e.g. "LHR-JFK": a Radar signal.
    pub route: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opened {
    /// A new booking: nothing was asked of Stripe or Duffel yet.
    New(uuid::Uuid),
    /// The booking this key already made (the same request again).
    Existing(uuid::Uuid),
}

fn parse(body: &[u8]) -> Result<NewBooking, BookingError> {
    serde_json::from_slice(body).map_err(|e| BookingError::InvalidRequest(format!("body: {e}")))
}

/// The campaign a request names (before acting for its owner).
fn campaign_of(body: &[u8]) -> Result<uuid::Uuid, BookingError> {
    Ok(parse(body)?.campaign_id)
}

/// The owner of the campaign a request names: whom a server-side caller (the
/// project's service key) books for.
pub async fn campaign_owner(database: &Database, body: &[u8]) -> Result<uuid::Uuid, BookingError> {
    let mut tx = database.as_system().await?;
    let campaign = campaign_of(body)?;
    let owner: Option<uuid::Uuid> =
        sqlx::query_scalar("SELECT wallet_internal.campaign_owner($1)").bind(campaign).fetch_one(&mut *tx).await?;
    tx.commit().await?;
    owner.ok_or(BookingError::CampaignNotFound)
}

pub async fn open(ports: Ports<'_>, actor: &Actor, key: &str, body: &[u8]) -> Result<Opened, BookingError> {
    let input = parse(body)?;
    let user_id = actor.traveler.user_id;
    let print = crate::idempotency::fingerprint(ROUTE, user_id, body);
    let mut tx = ports.database.as_traveler(&actor.traveler, &actor.meta).await?;
    if let Some(existing) = store::by_key(&mut tx, user_id, key).await? {
        tx.commit().await?;
        return same_request(&existing, &print);
    }
    let total = validate(&input)?;
    let consent: Option<Option<chrono::DateTime<chrono::Utc>>> =
        sqlx::query_scalar("SELECT consent_at FROM public.campaigns WHERE id = $1 AND user_id = $2")
            .bind(input.campaign_id)
            .bind(user_id)
            .fetch_optional(&mut *tx)
            .await?;
    match consent {
        None => return Err(BookingError::CampaignNotFound),
        Some(None) => return Err(BookingError::ConsentRequired),
        Some(Some(_)) => {}
    }
    if store::usable_cards(&mut tx, user_id).await?.is_empty() {
        // Unexpired cards there are, but none the traveler let us charge while away?
        let unconsented: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT FROM public.payment_methods WHERE user_id = $1
                               AND coalesce((exp_year, exp_month) >= (extract(year FROM current_date)::int,
                                                                      extract(month FROM current_date)::int), true))",
        )
        .bind(user_id)
        .fetch_one(&mut *tx)
        .await?;
        return Err(if unconsented { BookingError::CardConsentRequired } else { BookingError::NoUsableCard });
    }
    // Committed before the passengers are sealed: sealing may wait on KMS (a
    // data key not yet cached), which must not hold a pooled connection.
    tx.commit().await?;

    let passengers = zeroize::Zeroizing::new(
        serde_json::to_vec(&input.passengers).map_err(|e| BookingError::InvalidRequest(e.to_string()))?,
    );
    // The row id is chosen here: the sealed passengers are bound to it.
    let id = uuid::Uuid::new_v4();
    let sealed = ports.crypto.encrypt(&passengers, &PASSENGERS.context(user_id, id)).await?;
    let mut tx = ports.database.as_traveler(&actor.traveler, &actor.meta).await?;
    // Under the erasure's lock, in the transaction that inserts: an erasure
    // request waits for this booking and then sees it (money in flight).
    crate::db::lock_traveler(&mut tx, "erasure", user_id).await?;
    if crate::privacy::erase::requested(&mut tx, user_id).await? {
        return Err(BookingError::AccountBeingErased);
    }
    let inserted: Option<uuid::Uuid> = sqlx::query_scalar(
        "INSERT INTO public.booking_charges
           (id, user_id, campaign_id, idempotency_key, request_fingerprint, offer_id, route, passengers_sealed, amount, currency, state)
         VALUES ($10, $1, $2, $3, $4, $5, $6, $7, $8, $9, 'authorizing')
         ON CONFLICT (user_id, idempotency_key) DO NOTHING RETURNING id",
    )
    .bind(user_id)
    .bind(input.campaign_id)
    .bind(key)
    .bind(&print)
    .bind(&input.offer_id)
    .bind(&input.route)
    .bind(&sealed)
    .bind(total.minor_units())
    .bind(total.currency())
    .bind(id)
    .fetch_optional(&mut *tx)
    .await?;
    let opened = match inserted {
        Some(id) => Opened::New(id),
        // A concurrent twin inserted first: join it.
        None => same_request(&store::by_key(&mut tx, user_id, key).await?.ok_or(BookingError::InProgress)?, &print)?,
    };
    tx.commit().await?;
    Ok(opened)
}

/// The same key again: the same request joins its booking; another is refused.
fn same_request(existing: &store::Booking, print: &[u8]) -> Result<Opened, BookingError> {
    if existing.request_fingerprint != print {
        return Err(BookingError::IdempotencyKeyReused);
    }
    Ok(Opened::Existing(existing.id))
}

/// Checks what the database CHECKs would refuse later, with clearer words.
fn validate(input: &NewBooking) -> Result<Money, BookingError> {
    let offer_ok = input
        .offer_id
        .strip_prefix("off_")
        .is_some_and(|rest| (1..=64).contains(&rest.len()) && rest.bytes().all(|b| b.is_ascii_alphanumeric()));
    if !offer_ok {
        return Err(BookingError::InvalidBooking("offer_id must be a Duffel offer id (off_...)".into()));
    }
    let passengers = input.passengers.as_array().filter(|list| (1..=9).contains(&list.len()));
    let passengers_ok = passengers.is_some_and(|list| {
        list.iter().all(|p| {
            p["id"].as_str().is_some_and(|id| !id.is_empty())
                && p["given_name"].is_string()
                && p["family_name"].is_string()
        })
    });
    if !passengers_ok {
        return Err(BookingError::InvalidBooking(
            "passengers must be 1 to 9 objects with id, given_name and family_name".into(),
        ));
    }
    if let Some(route) = &input.route {
        let legs: Vec<&str> = route.split('-').collect();
        if !(2..=6).contains(&legs.len())
            || !legs.iter().all(|l| l.len() == 3 && l.bytes().all(|b| b.is_ascii_uppercase()))
        {
            return Err(BookingError::InvalidBooking("route must be IATA codes joined by '-', e.g. LHR-JFK".into()));
        }
    }
    Ok(Money::new(input.amount, &input.currency)?)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn input(offer: &str, passengers: Value, route: Option<&str>) -> NewBooking {
        NewBooking {
            campaign_id: uuid::Uuid::nil(),
            offer_id: offer.into(),
            passengers,
            amount: 1000,
            currency: "usd".into(),
            route: route.map(str::to_owned),
        }
    }

    #[test]
    fn validation_names_the_broken_field() {
        let one = json!([{"id": "pas_1", "given_name": "Ada", "family_name": "Lovelace"}]);
        assert!(validate(&input("off_123", one.clone(), Some("LHR-JFK"))).is_ok());
        for (offer, passengers, route) in [
            ("ord_123", one.clone(), None),
            ("off_", one.clone(), None),
            ("off_12;3", one.clone(), None),
            ("off_123", json!([]), None),
            ("off_123", json!([{"given_name": "Ada"}]), None),
            ("off_123", json!({"id": "pas_1"}), None),
            ("off_123", one.clone(), Some("lhr-jfk")),
            ("off_123", one.clone(), Some("LHR")),
        ] {
            assert!(
                matches!(validate(&input(offer, passengers, route)), Err(BookingError::InvalidBooking(_))),
                "{offer} {route:?}"
            );
        }
    }
}
