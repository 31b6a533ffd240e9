//! AWS KMS as the key-encryption key: GenerateDataKey and Decrypt, nothing else
//! (the least-privilege policy in docs/kms-iam-policy.md allows exactly these).

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_kms::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_kms::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::DataKeySpec;
use secrecy::{ExposeSecret, SecretString};
use zeroize::Zeroizing;

use super::{DataKeyBytes, GeneratedKey, KeyError, KeyProvider, KmsContext};
use crate::metrics::{timed, CallOutcome};

/// Where the KMS key is and how to reach it.
#[derive(Debug, Clone)]
pub struct AwsKmsSettings {
    /// Key ARN, key id or alias (`alias/parker-kms-key`).
    pub key_id: String,
    pub region: String,
    /// Another endpoint than AWS's (a VPC endpoint, or an emulator in tests).
    pub endpoint_url: Option<String>,
    /// Static credentials; without them the AWS default chain applies.
    pub credentials: Option<(SecretString, SecretString)>,
    pub timeout: Duration,
}

pub struct AwsKms {
    client: aws_sdk_kms::Client,
    key_id: String,
}

impl std::fmt::Debug for AwsKms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwsKms").field("key_id", &self.key_id).finish()
    }
}

/// Throttling and KMS's own failures may pass; everything else KMS says is final.
fn classify<E: ProvideErrorMetadata + std::fmt::Debug, R: std::fmt::Debug>(error: SdkError<E, R>) -> KeyError {
    match &error {
        SdkError::ServiceError(service) => {
            let code = service.err().code().unwrap_or("unknown");
            let message = service.err().message().unwrap_or("");
            let detail = format!("{code}: {message}");
            match code {
                code if is_transient(code) => KeyError::Unavailable(detail),
                // About these bytes, not the key: the only refusals worth remembering.
                "InvalidCiphertextException" | "IncorrectKeyException" => KeyError::Invalid(detail),
                _ => KeyError::Rejected(detail),
            }
        }
        SdkError::TimeoutError(_) => KeyError::Unavailable("request timed out".into()),
        other => KeyError::Unavailable(format!("{other}")),
    }
}

/// KMS error codes that say "not now" rather than "no".
fn is_transient(code: &str) -> bool {
    matches!(
        code,
        "DependencyTimeoutException" | "KMSInternalException" | "ThrottlingException" | "LimitExceededException"
    )
}

/// A KMS call's outcome for the outbound metrics (the audit signer's calls too).
pub fn kms_outcome<T, E: ProvideErrorMetadata, R>(result: &Result<T, SdkError<E, R>>) -> CallOutcome {
    match result {
        Ok(_) => CallOutcome::Ok,
        Err(SdkError::TimeoutError(_)) => CallOutcome::Timeout,
        Err(SdkError::ServiceError(service)) if !is_transient(service.err().code().unwrap_or_default()) => {
            CallOutcome::Refused
        }
        Err(_) => CallOutcome::Failed,
    }
}

fn context_map(context: &KmsContext) -> HashMap<String, String> {
    context.pairs().into_iter().collect()
}

/// A KMS client for the key's region and endpoint, with its credentials; the
/// audit signer builds its own from the same settings.
pub async fn kms_client(settings: &AwsKmsSettings) -> aws_sdk_kms::Client {
    let timeouts = aws_sdk_kms::config::timeout::TimeoutConfig::builder().operation_timeout(settings.timeout).build();
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(settings.region.clone()))
        .timeout_config(timeouts);
    if let Some(endpoint) = &settings.endpoint_url {
        loader = loader.endpoint_url(endpoint);
    }
    if let Some((access_key, secret_key)) = &settings.credentials {
        loader = loader.credentials_provider(Credentials::new(
            access_key.expose_secret(),
            secret_key.expose_secret(),
            None,
            None,
            "parker-wallet-config",
        ));
    }
    let config = loader.load().await;
    aws_sdk_kms::Client::new(&config)
}

impl AwsKms {
    pub async fn connect(settings: &AwsKmsSettings) -> Self {
        Self { client: kms_client(settings).await, key_id: settings.key_id.clone() }
    }
}

#[async_trait::async_trait]
impl KeyProvider for AwsKms {
    fn name(&self) -> &'static str {
        "aws-kms"
    }

    async fn generate_data_key(&self, context: &KmsContext) -> Result<GeneratedKey, KeyError> {
        let call = self
            .client
            .generate_data_key()
            .key_id(&self.key_id)
            .key_spec(DataKeySpec::Aes256)
            .set_encryption_context(Some(context_map(context)))
            .send();
        let output = timed("kms", call, kms_outcome).await.map_err(classify)?;
        let plain = output.plaintext().ok_or_else(|| KeyError::Unavailable("no plaintext key returned".into()))?;
        let mut plaintext = Zeroizing::new([0u8; 32]);
        if plain.as_ref().len() != 32 {
            return Err(KeyError::Unavailable("KMS returned a key of the wrong length".into()));
        }
        plaintext.copy_from_slice(plain.as_ref());
        let wrapped = output
            .ciphertext_blob()
            .ok_or_else(|| KeyError::Unavailable("no wrapped key returned".into()))?
            .as_ref()
            .to_vec();
        // The ARN KMS used, even when configured by alias: records name the real key.
        let key_ref = output.key_id().unwrap_or(&self.key_id).to_owned();
        Ok(GeneratedKey { plaintext, wrapped, key_ref })
    }

    async fn decrypt_data_key(
        &self,
        key_ref: &str,
        wrapped: &[u8],
        context: &KmsContext,
    ) -> Result<DataKeyBytes, KeyError> {
        let call = self
            .client
            .decrypt()
            .key_id(key_ref)
            .ciphertext_blob(Blob::new(wrapped.to_vec()))
            .set_encryption_context(Some(context_map(context)))
            .send();
        let output = timed("kms", call, kms_outcome).await.map_err(classify)?;
        let plain = output.plaintext().ok_or_else(|| KeyError::Unavailable("no plaintext key returned".into()))?;
        if plain.as_ref().len() != 32 {
            return Err(KeyError::Invalid("unwrapped key has the wrong length".into()));
        }
        let mut key = Zeroizing::new([0u8; 32]);
        key.copy_from_slice(plain.as_ref());
        Ok(key)
    }

    fn configured_key_ref(&self) -> Option<String> {
        (self.key_id.starts_with("arn:") && self.key_id.contains(":key/")).then(|| self.key_id.clone())
    }

    /// A data key round trip: exactly the permissions the sidecar has, no more
    /// (DescribeKey would need another grant).
    async fn check(&self) -> Result<(), KeyError> {
        let context = KmsContext { key_epoch: 0 };
        let key = self.generate_data_key(&context).await?;
        self.decrypt_data_key(&key.key_ref, &key.wrapped, &context).await.map(drop)
    }
}
