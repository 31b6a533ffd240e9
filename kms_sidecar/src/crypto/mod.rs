//! Envelope encryption of records: a data key per batch of records (cached),
//! wrapped by the key provider; AES-256-GCM per record with the record's
//! context as additional data.

mod cache;
pub mod format;
pub mod keys;
mod service;

pub use cache::CachePolicy;
pub use service::{CryptoError, EnvelopeCrypto, KeySchedule};
