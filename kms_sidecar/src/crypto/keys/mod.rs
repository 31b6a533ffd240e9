//! Key providers: where data keys come from and how they are unwrapped.
//! `AwsKms` for real deployments, `LocalKeyring` for the zero-config demo.

mod aws_kms;
pub mod local;

use std::collections::BTreeMap;

pub use aws_kms::{kms_client, kms_outcome, AwsKms, AwsKmsSettings};
pub use local::LocalKeyring;
use zeroize::Zeroizing;

/// A 256-bit data key in the clear; wiped from memory when dropped.
pub type DataKeyBytes = Zeroizing<[u8; 32]>;

/// The KMS encryption context of a data key. Not secret, but bound to the wrapped
/// key: KMS refuses to unwrap it under any other context, and the IAM policy can
/// require it (`kms:EncryptionContext:service`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KmsContext {
    pub key_epoch: u32,
}

impl KmsContext {
    pub const SERVICE: &'static str = "parker-wallet";
    pub const PURPOSE: &'static str = "record-data-key";

    pub fn pairs(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            ("service".to_owned(), Self::SERVICE.to_owned()),
            ("purpose".to_owned(), Self::PURPOSE.to_owned()),
            ("key_epoch".to_owned(), self.key_epoch.to_string()),
        ])
    }
}

/// A fresh data key: in the clear for use, wrapped for storage.
pub struct GeneratedKey {
    pub plaintext: DataKeyBytes,
    pub wrapped: Vec<u8>,
    /// Which key-encryption key wrapped it (stored in every record).
    pub key_ref: String,
}

impl std::fmt::Debug for GeneratedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GeneratedKey")
            .field("plaintext", &"[redacted]")
            .field("wrapped_len", &self.wrapped.len())
            .field("key_ref", &self.key_ref)
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The provider refused to use the key at all: unknown, disabled or
    /// inaccessible key. Never retried; may change when the key does.
    #[error("the key provider refused the data key: {0}")]
    Rejected(String),
    /// The wrapped key is not one the key wrapped under this context: tampered,
    /// forged or moved. Final for these bytes (the refusal is remembered).
    #[error("the key provider says the wrapped key is not valid: {0}")]
    Invalid(String),
    /// The provider could not be reached or failed; the request may be retried.
    #[error("the key provider is unavailable: {0}")]
    Unavailable(String),
}

#[async_trait::async_trait]
pub trait KeyProvider: Send + Sync {
    /// A short name for logs and /readyz.
    fn name(&self) -> &'static str;

    async fn generate_data_key(&self, context: &KmsContext) -> Result<GeneratedKey, KeyError>;

    async fn decrypt_data_key(
        &self,
        key_ref: &str,
        wrapped: &[u8],
        context: &KmsContext,
    ) -> Result<DataKeyBytes, KeyError>;

    /// The key reference records get, when the configuration names it
    /// outright (a key ARN, a local key); `None` for an alias, whose key only
    /// a data key's generation reveals.
    fn configured_key_ref(&self) -> Option<String>;

    /// Whether the provider is usable now (for /readyz).
    async fn check(&self) -> Result<(), KeyError>;
}
