//! Duffel, as bookings need it: create an order paid from the Duffel balance,
//! and find the order made for a booking (by the booking id in its metadata)
//! when a create call's outcome is unknown. A small client over Duffel's
//! documented HTTP API (`Duffel-Version: v2`, `{"data": ...}` bodies, errors as
//! `{"meta": {...}, "errors": [{type, code, title, message}]}`).
//!
//! The port is here; [`client`] is its implementation over HTTP.

mod client;

use crate::domain::Money;

pub use client::HttpDuffel;

#[derive(Debug, thiserror::Error)]
pub enum DuffelError {
    /// Duffel answered that no order was made (4xx, or `order_not_created`).
    #[error("Duffel refused the order ({status} {code}): {message}")]
    Refused { status: u16, code: String, message: String },
    /// 5xx, a broken connection or an unreadable answer: the order may exist.
    #[error("Duffel is unavailable: {0}")]
    Unavailable(String),
    #[error("Duffel did not answer in time")]
    Timeout,
}

impl DuffelError {
    /// Whether Duffel certainly did not create the order.
    pub fn is_definite(&self) -> bool {
        matches!(self, Self::Refused { .. })
    }
}

/// An order to create: one offer, its passengers (as Duffel wants them), paid
/// from the balance, tagged with our booking id.
#[derive(Debug)]
pub struct OrderRequest<'a> {
    pub booking_id: uuid::Uuid,
    pub offer_id: &'a str,
    pub passengers: &'a serde_json::Value,
    pub total: &'a Money,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DuffelOrder {
    pub id: String,
    pub booking_reference: Option<String>,
}

#[async_trait::async_trait]
pub trait DuffelPort: Send + Sync {
    async fn create_order(&self, order: &OrderRequest<'_>) -> Result<DuffelOrder, DuffelError>;

    /// The order whose metadata names `booking_id`, among orders created since
    /// `since`; `None` when there is none.
    async fn find_order(
        &self,
        booking_id: uuid::Uuid,
        since: chrono::DateTime<chrono::Utc>,
    ) -> Result<Option<DuffelOrder>, DuffelError>;
}
