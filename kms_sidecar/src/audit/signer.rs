//! Signatures through KMS: `Sign` and `Verify` with one asymmetric key
//! (ECC_NIST_P256, ECDSA_SHA_256, message type RAW), nothing else (see
//! docs/kms-iam-policy.md). The private key never leaves KMS, so nobody with
//! the database alone can forge a checkpoint or a redaction.

use aws_sdk_kms::error::ProvideErrorMetadata;
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::{MessageType, SigningAlgorithmSpec};

use super::AuditError;
use crate::crypto::keys::{kms_client, kms_outcome, AwsKmsSettings};
use crate::metrics::timed;

/// A signature and what checks it: the key (its ARN) and the algorithm.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signature {
    pub key_id: String,
    pub algorithm: String,
    pub bytes: Vec<u8>,
}

/// Signs audit digests and checks signatures.
#[async_trait::async_trait]
pub trait AuditSigner: Send + Sync {
    async fn sign(&self, message: &[u8]) -> Result<Signature, AuditError>;
    /// Whether `signature` is the signing key's over `message`; an error only
    /// when KMS could not say.
    async fn verify(&self, signature: &Signature, message: &[u8]) -> Result<bool, AuditError>;
}

pub struct KmsSigner {
    client: aws_sdk_kms::Client,
    key_id: String,
    /// KMS requests made, for the commands' summaries (and the benchmark).
    calls: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for KmsSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KmsSigner").field("key_id", &self.key_id).finish()
    }
}

const ALGORITHM: SigningAlgorithmSpec = SigningAlgorithmSpec::EcdsaSha256;

impl KmsSigner {
    pub async fn connect(settings: &AwsKmsSettings) -> Self {
        Self { client: kms_client(settings).await, key_id: settings.key_id.clone(), calls: Default::default() }
    }

    pub fn calls(&self) -> u64 {
        self.calls.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn count_call(&self) {
        self.calls.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
}

fn kms_failed<E: ProvideErrorMetadata + std::fmt::Debug, R: std::fmt::Debug>(
    error: aws_sdk_kms::error::SdkError<E, R>,
) -> AuditError {
    let detail = match error.as_service_error() {
        Some(service) => format!("{}: {}", service.code().unwrap_or("unknown"), service.message().unwrap_or("")),
        None => format!("{error}"),
    };
    AuditError::Signing(detail)
}

#[async_trait::async_trait]
impl AuditSigner for KmsSigner {
    async fn sign(&self, message: &[u8]) -> Result<Signature, AuditError> {
        self.count_call();
        let call = self
            .client
            .sign()
            .key_id(&self.key_id)
            .message(Blob::new(message.to_vec()))
            .message_type(MessageType::Raw)
            .signing_algorithm(ALGORITHM)
            .send();
        let output = timed("kms", call, kms_outcome).await.map_err(kms_failed)?;
        let bytes = output.signature().ok_or_else(|| AuditError::Signing("no signature returned".into()))?;
        Ok(Signature {
            key_id: self.key_id.clone(),
            algorithm: ALGORITHM.as_str().to_owned(),
            bytes: bytes.as_ref().to_vec(),
        })
    }

    async fn verify(&self, signature: &Signature, message: &[u8]) -> Result<bool, AuditError> {
        // Only the configured key vouches: a record naming another key (one its
        // forger controls) is refused before KMS is asked.
        if signature.algorithm != ALGORITHM.as_str() || signature.key_id != self.key_id {
            return Ok(false);
        }
        // A DER ECDSA P-256 signature is at most 72 bytes: anything else is
        // refused here, not sent to KMS (which would answer a validation error).
        if !(8..=72).contains(&signature.bytes.len()) {
            return Ok(false);
        }
        self.count_call();
        let call = self
            .client
            .verify()
            .key_id(&signature.key_id)
            .message(Blob::new(message.to_vec()))
            .message_type(MessageType::Raw)
            .signature(Blob::new(signature.bytes.clone()))
            .signing_algorithm(ALGORITHM)
            .send();
        let result = timed("kms", call, kms_outcome).await;
        match result {
            Ok(output) => Ok(output.signature_valid()),
            // AWS answers a bad signature with an error rather than `false`; a
            // malformed one, with a validation error.
            Err(error)
                if matches!(
                    error.as_service_error().and_then(|e| e.code()),
                    Some("KMSInvalidSignatureException" | "ValidationException")
                ) =>
            {
                Ok(false)
            }
            Err(error) => Err(kms_failed(error)),
        }
    }
}

/// A stand-in key for unit tests: HMAC-like, never in the main code path.
#[cfg(test)]
pub(crate) mod fake {
    use super::*;

    #[derive(Debug, Default)]
    pub struct FakeSigner {
        pub calls: std::sync::atomic::AtomicUsize,
    }

    fn mac(message: &[u8]) -> Vec<u8> {
        super::super::tagged_digest(b"fake-signing-key", &[message]).to_vec()
    }

    #[async_trait::async_trait]
    impl AuditSigner for FakeSigner {
        async fn sign(&self, message: &[u8]) -> Result<Signature, AuditError> {
            self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Ok(Signature { key_id: "fake".into(), algorithm: ALGORITHM.as_str().into(), bytes: mac(message) })
        }

        async fn verify(&self, signature: &Signature, message: &[u8]) -> Result<bool, AuditError> {
            self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Ok(signature.key_id == "fake" && signature.bytes == mac(message))
        }
    }
}
