//! `GET /v1/privacy/export`: one JSON document with everything held on the
//! traveler, written as it is read so that a long history never sits in memory:
//!
//! ```json
//! {"format": "parker-wallet/export-1", "user_id": "...", "generated_at": "...",
//!  "stripe": {"customer": {...}, "payment_methods": [...]} | null,
//!  "profile": {...} | null, "completion": {...} | null,
//!  "cards": [... with "metadata" opened for the owner ...],
//!  "consents": [...], "campaigns": [...], "phone_verifications": [...],
//!  "bookings": [... with "passengers" opened and "history" ...],
//!  "notifications": [...], "audit": [...]}
//! ```
//!
//! Rows are the database's own JSON (`to_jsonb`), minus ciphertext and what
//! only protects the data (request fingerprints, audit salts), read in one
//! REPEATABLE READ snapshot as the traveler (RLS applies). Stripe is asked
//! first, so that its failure is an error answer, not a cut document.

use futures_util::TryStreamExt;
use hyper::body::Bytes;
use serde_json::Value;
use tokio::sync::mpsc::Sender;

use super::PrivacyError;
use crate::crypto::EnvelopeCrypto;
use crate::db::Database;
use crate::domain::sealed::{SealedColumn, CARD_METADATA, PASSENGERS};
use crate::domain::Actor;
use crate::stripe::{CustomerRecord, StripePort};

pub const FORMAT: &str = "parker-wallet/export-1";

/// Bytes sent to the reader at a time (a row can be larger: it goes whole).
const CHUNK: usize = 32 * 1024;

/// How long the reader may take a chunk, and the whole document: an export
/// holds a pooled connection and an open snapshot until it is written.
pub const MAX_STALL: std::time::Duration = std::time::Duration::from_secs(30);
pub const MAX_TIME: std::time::Duration = std::time::Duration::from_secs(600);

/// What the export writes to: chunks of the document, or an error that cuts it short.
pub type ExportSink = Sender<Result<Bytes, std::io::Error>>;

/// An export ready to be written: Stripe's part already fetched.
#[derive(Debug)]
pub struct Export {
    actor: Actor,
    stripe: Option<CustomerRecord>,
}

/// Each streamed section: its key, its query ($1 the traveler) giving the
/// row's JSON (and, for sealed rows, the row id and the ciphertext), and the
/// sealed column opened into the given key.
struct Section {
    key: &'static str,
    sql: &'static str,
    sealed: Option<(SealedColumn, &'static str)>,
}

const SECTIONS: &[Section] = &[
    Section {
        key: "cards",
        sql: "SELECT (to_jsonb(c) - 'encrypted_card_data' - 'encryption_version')::text, c.id, c.encrypted_card_data
                FROM public.payment_methods c WHERE c.user_id = $1 ORDER BY c.created_at, c.id",
        sealed: Some((CARD_METADATA, "metadata")),
    },
    Section {
        key: "consents",
        sql: "SELECT to_jsonb(c)::text FROM public.consents c WHERE c.user_id = $1 ORDER BY c.granted_at, c.id",
        sealed: None,
    },
    Section {
        key: "campaigns",
        sql: "SELECT to_jsonb(c)::text FROM public.campaigns c WHERE c.user_id = $1 ORDER BY c.created_at, c.id",
        sealed: None,
    },
    Section {
        key: "phone_verifications",
        sql: "SELECT to_jsonb(v)::text FROM public.phone_verifications v WHERE v.user_id = $1 ORDER BY v.started_at, v.id",
        sealed: None,
    },
    Section {
        key: "bookings",
        sql: "SELECT (to_jsonb(b) - 'passengers_sealed' - 'request_fingerprint'
                      || jsonb_build_object('history',
                           (SELECT coalesce(jsonb_agg(to_jsonb(e) ORDER BY e.id), '[]'::jsonb)
                              FROM public.booking_charge_events e WHERE e.booking_id = b.id)))::text,
                     b.id, b.passengers_sealed
                FROM public.booking_charges b WHERE b.user_id = $1 ORDER BY b.created_at, b.id",
        sealed: Some((PASSENGERS, "passengers")),
    },
    Section {
        key: "notifications",
        sql: "SELECT to_jsonb(o)::text FROM public.notification_outbox o WHERE o.user_id = $1 ORDER BY o.created_at, o.id",
        sealed: None,
    },
    Section {
        key: "audit",
        sql: "SELECT (to_jsonb(a) - 'personal_salt')::text FROM public.traveler_data_audit a
               WHERE a.user_id = $1 ORDER BY a.chain_seq",
        sealed: None,
    },
];

/// The document's text, buffered up to [`CHUNK`] and sent to the reader.
struct Writer<'s> {
    sink: &'s ExportSink,
    buffer: Vec<u8>,
    deadline: tokio::time::Instant,
}

impl Writer<'_> {
    async fn raw(&mut self, text: &str) -> Result<(), PrivacyError> {
        self.buffer.extend_from_slice(text.as_bytes());
        if self.buffer.len() >= CHUNK {
            self.flush().await?;
        }
        Ok(())
    }

    async fn json(&mut self, value: &Value) -> Result<(), PrivacyError> {
        let text = serde_json::to_string(value).map_err(|e| PrivacyError::Internal(format!("export: {e}")))?;
        self.raw(&text).await
    }

    async fn flush(&mut self) -> Result<(), PrivacyError> {
        let chunk = Bytes::from(std::mem::take(&mut self.buffer));
        let give_up = self.deadline.min(tokio::time::Instant::now() + MAX_STALL);
        match tokio::time::timeout_at(give_up, self.sink.send(Ok(chunk))).await {
            Ok(sent) => sent.map_err(|_| PrivacyError::Closed),
            Err(_) => Err(PrivacyError::TooSlow),
        }
    }
}

impl Export {
    /// Asks Stripe what it holds on the traveler's customer, if they have one.
    pub async fn prepare(
        database: &Database,
        stripe: Option<&dyn StripePort>,
        actor: &Actor,
    ) -> Result<Self, PrivacyError> {
        let mut tx = database.as_traveler(&actor.traveler, &actor.meta).await?;
        let customer: Option<String> =
            sqlx::query_scalar("SELECT stripe_customer_id FROM public.wallet_customers WHERE user_id = $1")
                .bind(actor.traveler.user_id)
                .fetch_optional(&mut *tx)
                .await?;
        tx.commit().await?;
        let stripe = match (customer, stripe) {
            (None, _) => None,
            (Some(_), None) => return Err(PrivacyError::StripeNotConfigured),
            (Some(customer), Some(stripe)) => stripe.customer_record(&customer).await?,
        };
        Ok(Self { actor: actor.clone(), stripe })
    }

    /// Writes the document to `sink`.
    pub async fn write(
        self,
        database: &Database,
        crypto: &EnvelopeCrypto,
        sink: &ExportSink,
    ) -> Result<(), PrivacyError> {
        let user_id = self.actor.traveler.user_id;
        let mut tx = database.snapshot_as_traveler(&self.actor.traveler, &self.actor.meta).await?;
        let deadline = tokio::time::Instant::now() + MAX_TIME;
        let mut out = Writer { sink, buffer: Vec::with_capacity(CHUNK), deadline };
        let now: String = sqlx::query_scalar("SELECT to_jsonb(now())::text").fetch_one(&mut *tx).await?;
        out.raw(&format!("{{\"format\":\"{FORMAT}\",\"user_id\":\"{user_id}\",\"generated_at\":{now},\"stripe\":"))
            .await?;
        let stripe = self.stripe.as_ref().map(
            |record| serde_json::json!({ "customer": record.customer, "payment_methods": record.payment_methods }),
        );
        out.json(&stripe.unwrap_or(Value::Null)).await?;
        for (key, sql) in [
            ("profile", "SELECT to_jsonb(p)::text FROM public.traveler_profiles p WHERE p.user_id = $1"),
            (
                "completion",
                "SELECT (to_jsonb(t) - 'id')::text FROM public.profile_completion_tracking t WHERE t.user_id = $1",
            ),
        ] {
            let row: Option<String> = sqlx::query_scalar(sql).bind(user_id).fetch_optional(&mut *tx).await?;
            out.raw(&format!(",\"{key}\":{}", row.as_deref().unwrap_or("null"))).await?;
        }
        for section in SECTIONS {
            out.raw(&format!(",\"{}\":[", section.key)).await?;
            let mut rows = sqlx::query(section.sql).bind(user_id).fetch(&mut *tx);
            let mut first = true;
            while let Some(row) = rows.try_next().await? {
                use sqlx::Row;
                let json: String = row.try_get(0)?;
                if !first {
                    out.raw(",").await?;
                }
                first = false;
                match section.sealed {
                    None => out.raw(&json).await?,
                    Some((column, key)) => {
                        let mut value: Value =
                            serde_json::from_str(&json).map_err(|e| PrivacyError::Internal(format!("export: {e}")))?;
                        let (id, sealed): (uuid::Uuid, Vec<u8>) = (row.try_get(1)?, row.try_get(2)?);
                        value[key] = open(crypto, column, user_id, id, &sealed).await;
                        out.json(&value).await?;
                    }
                }
            }
            out.raw("]").await?;
        }
        out.raw("}").await?;
        out.flush().await?;
        drop(tx);
        Ok(())
    }
}

/// A sealed column opened for its owner, as the JSON it holds; a record that
/// does not open is reported as such rather than dropped.
async fn open(
    crypto: &EnvelopeCrypto,
    column: SealedColumn,
    user_id: uuid::Uuid,
    id: uuid::Uuid,
    sealed: &[u8],
) -> Value {
    match crypto.decrypt(sealed, &column.context(user_id, id)).await {
        Ok(plaintext) => {
            let plaintext = zeroize::Zeroizing::new(plaintext);
            serde_json::from_slice(&plaintext)
                .unwrap_or_else(|_| serde_json::json!({ "unreadable": "the record does not hold JSON" }))
        }
        Err(error) => {
            tracing::warn!(%error, %id, "export: a sealed record did not open");
            serde_json::json!({ "unreadable": "the record could not be opened; support can look into it" })
        }
    }
}
