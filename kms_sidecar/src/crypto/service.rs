//! `EnvelopeCrypto`: encrypt, decrypt and rewrap records with cached data keys.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};

use super::cache::{CachePolicy, CachedKey, DecryptionCache, EncryptionSlot, RefusedKeys};
use super::format::{self, FormatError, NONCE_LEN};
use super::keys::{GeneratedKey, KeyError, KeyProvider, KmsContext};
use crate::domain::{EncryptionContext, InvalidContext};
use crate::metrics::Metrics;

#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error(transparent)]
    Format(#[from] FormatError),
    #[error(transparent)]
    Context(#[from] InvalidContext),
    /// Wrong context, or the record was altered. Deliberately says no more.
    #[error("the record does not decrypt under this context")]
    DecryptFailed,
    /// Refused before the key provider was asked.
    #[error("the record's key is not accepted: {0}")]
    KeyNotAccepted(&'static str),
    #[error(transparent)]
    Key(#[from] KeyError),
}

/// Which key-encryption keys records may name: the configured one (and the
/// epochs up to the configured one), and the retired keys listed here, which
/// still open old records until `rotate-keys` has moved them.
#[derive(Debug, Clone, Default)]
pub struct KeySchedule {
    pub epoch: u32,
    pub retired_key_refs: BTreeSet<String>,
}

pub struct EnvelopeCrypto {
    provider: Arc<dyn KeyProvider>,
    policy: CachePolicy,
    schedule: KeySchedule,
    metrics: Arc<Metrics>,
    /// An async lock: concurrent encryptions wait for one KMS call, not one each.
    encryption: tokio::sync::Mutex<Option<EncryptionSlot>>,
    decryption: Mutex<DecryptionCache>,
    refused: Mutex<RefusedKeys>,
}

impl std::fmt::Debug for EnvelopeCrypto {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnvelopeCrypto")
            .field("provider", &self.provider.name())
            .field("policy", &self.policy)
            .field("schedule", &self.schedule)
            .finish_non_exhaustive()
    }
}

impl EnvelopeCrypto {
    pub fn new(
        provider: Arc<dyn KeyProvider>,
        policy: CachePolicy,
        schedule: KeySchedule,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            provider,
            policy,
            schedule,
            metrics,
            encryption: tokio::sync::Mutex::new(None),
            decryption: Mutex::new(DecryptionCache::default()),
            refused: Mutex::new(RefusedKeys::default()),
        }
    }

    pub fn provider(&self) -> &dyn KeyProvider {
        self.provider.as_ref()
    }

    fn cached_key(&self, generated: GeneratedKey, key_epoch: u32) -> Arc<CachedKey> {
        // from_slice on a 32-byte array cannot fail.
        let cipher = Aes256Gcm::new_from_slice(generated.plaintext.as_ref()).expect("AES-256 key is 32 bytes");
        Arc::new(CachedKey {
            cipher,
            key_ref: generated.key_ref,
            key_epoch,
            wrapped: generated.wrapped,
            created: Instant::now(),
        })
    }

    fn remember_for_decryption(&self, key: &Arc<CachedKey>) {
        let evicted = match self.decryption.lock() {
            Ok(mut cache) => cache.insert(Arc::clone(key), &self.policy, Instant::now()),
            Err(_) => 0,
        };
        self.metrics.data_keys_evicted.fetch_add(evicted as u64, std::sync::atomic::Ordering::Relaxed);
    }

    /// The data key for the next record, generating a new one when the current
    /// one is too old or has sealed enough records.
    async fn encryption_key(&self) -> Result<Arc<CachedKey>, CryptoError> {
        let mut slot = self.encryption.lock().await;
        if let Some(key) = slot.as_mut().and_then(|s| s.take(&self.policy, Instant::now())) {
            Metrics::add(&self.metrics.data_key_cache_hits);
            return Ok(key);
        }
        Metrics::add(&self.metrics.data_key_cache_misses);
        Metrics::add(&self.metrics.kms_generate_calls);
        let context = KmsContext { key_epoch: self.schedule.epoch };
        let generated = self.provider.generate_data_key(&context).await?;
        let key = self.cached_key(generated, self.schedule.epoch);
        self.remember_for_decryption(&key);
        if slot.take().is_some() {
            Metrics::add(&self.metrics.data_keys_evicted);
        }
        *slot = Some(EncryptionSlot { key: Arc::clone(&key), messages: 1 });
        Ok(key)
    }

    /// The data key of a record: from the cache, or from the provider once the
    /// record's key reference and epoch are ones this sidecar accepts and the
    /// provider has not refused this wrapped key lately.
    async fn decryption_key(
        &self,
        key_ref: &str,
        key_epoch: u32,
        wrapped: &[u8],
    ) -> Result<Arc<CachedKey>, CryptoError> {
        let cached = self
            .decryption
            .lock()
            .ok()
            .and_then(|mut cache| cache.get(key_ref, key_epoch, wrapped, &self.policy, Instant::now()));
        if let Some(key) = cached {
            Metrics::add(&self.metrics.data_key_cache_hits);
            return Ok(key);
        }
        Metrics::add(&self.metrics.data_key_cache_misses);
        if let Err(error) = self.check_key_ref(key_ref).await {
            Metrics::add(&self.metrics.records_refused_before_kms);
            return Err(error);
        }
        let refused_lately = self
            .refused
            .lock()
            .is_ok_and(|refused| refused.contains(key_ref, key_epoch, wrapped, &self.policy, Instant::now()));
        if refused_lately {
            Metrics::add(&self.metrics.records_refused_before_kms);
            return Err(KeyError::Invalid("refused by the key provider earlier; not asked again yet".into()).into());
        }
        Metrics::add(&self.metrics.kms_decrypt_calls);
        let plaintext = match self.provider.decrypt_data_key(key_ref, wrapped, &KmsContext { key_epoch }).await {
            Ok(plaintext) => plaintext,
            Err(error) => {
                if matches!(error, KeyError::Invalid(_)) {
                    if let Ok(mut refused) = self.refused.lock() {
                        refused.insert(key_ref, key_epoch, wrapped, &self.policy, Instant::now());
                    }
                }
                return Err(error.into());
            }
        };
        let key = self
            .cached_key(GeneratedKey { plaintext, wrapped: wrapped.to_vec(), key_ref: key_ref.to_owned() }, key_epoch);
        self.remember_for_decryption(&key);
        Ok(key)
    }

    /// The configured key, or a retired one still listed; anything else is
    /// refused without asking the provider.
    async fn check_key_ref(&self, key_ref: &str) -> Result<(), CryptoError> {
        if self.schedule.retired_key_refs.contains(key_ref) {
            return Ok(());
        }
        let current = match self.provider.configured_key_ref() {
            Some(configured) => configured,
            // An alias: the key's ARN is learned from the data key used for encryption.
            None => self.encryption_key_identity().await?.0,
        };
        if current == key_ref {
            Ok(())
        } else {
            Err(CryptoError::KeyNotAccepted("neither the configured key nor a retired one"))
        }
    }

    pub async fn encrypt(&self, plaintext: &[u8], context: &EncryptionContext) -> Result<Vec<u8>, CryptoError> {
        let context_aad = context.aad_bytes(true)?;
        let key = self.encryption_key().await?;
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::getrandom(&mut nonce).map_err(|e| KeyError::Unavailable(format!("no randomness: {e}")))?;
        let mut record = format::encode_header(&key.key_ref, key.key_epoch, &key.wrapped, &nonce)?;
        let mut aad = record.clone();
        aad.extend_from_slice(&context_aad);
        let sealed = key
            .cipher
            .encrypt(Nonce::from_slice(&nonce), Payload { msg: plaintext, aad: &aad })
            .map_err(|_| CryptoError::DecryptFailed)?;
        record.extend_from_slice(&sealed);
        Metrics::add(&self.metrics.encryptions);
        Ok(record)
    }

    pub async fn decrypt(&self, record: &[u8], context: &EncryptionContext) -> Result<Vec<u8>, CryptoError> {
        let result = self.decrypt_inner(record, context).await;
        match &result {
            Ok(_) => Metrics::add(&self.metrics.decryptions),
            Err(_) => Metrics::add(&self.metrics.crypto_failures),
        }
        result
    }

    async fn decrypt_inner(&self, record: &[u8], context: &EncryptionContext) -> Result<Vec<u8>, CryptoError> {
        let envelope = format::parse(record)?;
        if envelope.key_epoch > self.schedule.epoch {
            Metrics::add(&self.metrics.records_refused_before_kms);
            return Err(CryptoError::KeyNotAccepted("its key epoch is newer than the configured one"));
        }
        let context_aad = context.aad_bytes(envelope.binds_record())?;
        let key = self.decryption_key(envelope.key_ref, envelope.key_epoch, envelope.wrapped_key).await?;
        let mut aad = envelope.header.to_vec();
        aad.extend_from_slice(&context_aad);
        key.cipher
            .decrypt(Nonce::from_slice(&envelope.nonce), Payload { msg: envelope.sealed, aad: &aad })
            .map_err(|_| CryptoError::DecryptFailed)
    }

    /// Re-encrypts a record under the current data key (and so the current
    /// key-encryption key, epoch and format: the context needs the record id).
    pub async fn rewrap(&self, record: &[u8], context: &EncryptionContext) -> Result<Vec<u8>, CryptoError> {
        let plaintext = zeroize::Zeroizing::new(self.decrypt(record, context).await?);
        self.encrypt(&plaintext, context).await
    }

    /// Whether a record is already in the format, under the key-encryption key
    /// and epoch that new records get (its data key may differ: data keys
    /// retire by design).
    pub async fn is_current(&self, record: &[u8]) -> Result<bool, CryptoError> {
        let envelope = format::parse(record)?;
        let current = self.encryption_key_identity().await?;
        Ok(envelope.binds_record() && current == (envelope.key_ref.to_owned(), envelope.key_epoch))
    }

    /// The key reference and epoch of new records (generating a data key if none yet).
    async fn encryption_key_identity(&self) -> Result<(String, u32), CryptoError> {
        {
            let slot = self.encryption.lock().await;
            if let Some(slot) = slot.as_ref() {
                return Ok((slot.key.key_ref.clone(), slot.key.key_epoch));
            }
        }
        let key = self.encryption_key().await?;
        Ok((key.key_ref.clone(), key.key_epoch))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::crypto::keys::LocalKeyring;
    use crate::domain::context::ContextInput;

    const ROW: &str = "00000000-0000-4000-8000-0000000000f1";

    fn context(user: &str, table: &str) -> EncryptionContext {
        row_context(user, table, ROW)
    }

    fn row_context(user: &str, table: &str, row: &str) -> EncryptionContext {
        EncryptionContext::try_from(ContextInput {
            user_id: user.into(),
            table: table.into(),
            column: "c".into(),
            record_id: Some(row.into()),
        })
        .unwrap()
    }

    const ALICE: &str = "00000000-0000-4000-8000-00000000000a";
    const BOB: &str = "00000000-0000-4000-8000-00000000000b";

    fn schedule(epoch: u32) -> KeySchedule {
        KeySchedule { epoch, retired_key_refs: BTreeSet::new() }
    }

    fn crypto(dir: &std::path::Path, policy: CachePolicy) -> (EnvelopeCrypto, Arc<Metrics>) {
        let ring = LocalKeyring::load_or_create(&dir.join("keys")).unwrap();
        let metrics = Arc::new(Metrics::default());
        (EnvelopeCrypto::new(Arc::new(ring), policy, schedule(1), Arc::clone(&metrics)), metrics)
    }

    /// A record as format v2 sealed it: the same layout, no row in the context.
    async fn legacy_record(crypto: &EnvelopeCrypto, plaintext: &[u8], context: &EncryptionContext) -> Vec<u8> {
        let key = crypto.encryption_key().await.unwrap();
        let nonce = [3u8; NONCE_LEN];
        let mut record = format::encode_header(&key.key_ref, key.key_epoch, &key.wrapped, &nonce).unwrap();
        record[0] = format::UNBOUND_VERSION;
        let mut aad = record.clone();
        aad.extend_from_slice(&context.aad_bytes(false).unwrap());
        let sealed = key.cipher.encrypt(Nonce::from_slice(&nonce), Payload { msg: plaintext, aad: &aad }).unwrap();
        record.extend_from_slice(&sealed);
        record
    }

    #[tokio::test]
    async fn a_record_opens_only_in_its_own_row() {
        let dir = tempfile::tempdir().unwrap();
        let (crypto, _) = crypto(dir.path(), CachePolicy::default());
        let record = crypto.encrypt(b"passengers", &context(ALICE, "t")).await.unwrap();
        let other_row = row_context(ALICE, "t", "00000000-0000-4000-8000-0000000000f2");
        assert!(matches!(crypto.decrypt(&record, &other_row).await, Err(CryptoError::DecryptFailed)));
        let no_row = EncryptionContext { record_id: None, ..context(ALICE, "t") };
        assert!(matches!(
            crypto.decrypt(&record, &no_row).await,
            Err(CryptoError::Context(InvalidContext::RecordIdRequired))
        ));
        assert!(matches!(
            crypto.encrypt(b"x", &no_row).await,
            Err(CryptoError::Context(InvalidContext::RecordIdRequired))
        ));
    }

    #[tokio::test]
    async fn version_two_records_stay_readable_until_rewrapped() {
        let dir = tempfile::tempdir().unwrap();
        let (crypto, _) = crypto(dir.path(), CachePolicy::default());
        let legacy = legacy_record(&crypto, b"card", &context(ALICE, "t")).await;
        let any_row = row_context(ALICE, "t", "00000000-0000-4000-8000-0000000000f9");
        assert_eq!(crypto.decrypt(&legacy, &any_row).await.unwrap(), b"card", "v2 binds no row");
        assert!(!crypto.is_current(&legacy).await.unwrap(), "same key and epoch, older format");
        let upgraded = crypto.rewrap(&legacy, &context(ALICE, "t")).await.unwrap();
        assert_eq!(format::parse(&upgraded).unwrap().version, format::FORMAT_VERSION);
        assert!(crypto.is_current(&upgraded).await.unwrap());
        assert!(matches!(crypto.decrypt(&upgraded, &any_row).await, Err(CryptoError::DecryptFailed)));
    }

    /// A record naming `key_ref`, with a header the tag would catch only after
    /// the data key was unwrapped.
    fn forged(key_ref: &str, epoch: u32, wrapped: &[u8]) -> Vec<u8> {
        let mut record = format::encode_header(key_ref, epoch, wrapped, &[0; NONCE_LEN]).unwrap();
        record.extend_from_slice(&[0; 32]);
        record
    }

    #[tokio::test]
    async fn unknown_keys_and_future_epochs_are_refused_before_the_provider() {
        let dir = tempfile::tempdir().unwrap();
        let (crypto, metrics) = crypto(dir.path(), CachePolicy::default());
        let genuine = crypto.encrypt(b"x", &context(ALICE, "t")).await.unwrap();
        let envelope = format::parse(&genuine).unwrap();
        let calls = metrics.kms_calls();
        for record in [
            forged("arn:aws:kms:eu-west-1:111122223333:key/forged", 1, envelope.wrapped_key),
            forged(envelope.key_ref, 9, envelope.wrapped_key),
        ] {
            for _ in 0..3 {
                assert!(matches!(
                    crypto.decrypt(&record, &context(ALICE, "t")).await,
                    Err(CryptoError::KeyNotAccepted(_))
                ));
            }
        }
        assert_eq!(metrics.kms_calls(), calls, "no provider call for a key or epoch not configured");
        assert_eq!(metrics.records_refused_before_kms.load(std::sync::atomic::Ordering::Relaxed), 6);
    }

    #[tokio::test]
    async fn a_wrapped_key_the_provider_refused_is_not_sent_again_for_a_while() {
        let dir = tempfile::tempdir().unwrap();
        let (crypto, metrics) = crypto(dir.path(), CachePolicy::default());
        let genuine = crypto.encrypt(b"x", &context(ALICE, "t")).await.unwrap();
        let envelope = format::parse(&genuine).unwrap();
        let mut wrapped = envelope.wrapped_key.to_vec();
        wrapped[0] ^= 1;
        let record = forged(envelope.key_ref, 1, &wrapped);
        let calls = metrics.kms_calls();
        for _ in 0..5 {
            assert!(matches!(
                crypto.decrypt(&record, &context(ALICE, "t")).await,
                Err(CryptoError::Key(KeyError::Invalid(_)))
            ));
        }
        assert_eq!(metrics.kms_calls(), calls + 1, "one provider call, then the refusal is remembered");
    }

    #[tokio::test]
    async fn a_retired_key_still_opens_its_records_while_listed() {
        let dir = tempfile::tempdir().unwrap();
        let (old, _) = crypto(dir.path(), CachePolicy::default());
        let record = old.encrypt(b"card", &context(ALICE, "t")).await.unwrap();
        let old_ref = format::parse(&record).unwrap().key_ref.to_owned();
        // "The new key": a fresh key first in the file, the old one kept after it.
        LocalKeyring::load_or_create(&dir.path().join("fresh")).unwrap();
        let both = std::fs::read_to_string(dir.path().join("fresh")).unwrap()
            + &std::fs::read_to_string(dir.path().join("keys")).unwrap();
        std::fs::write(dir.path().join("new-keys"), both).unwrap();
        let ring = Arc::new(LocalKeyring::load_or_create(&dir.path().join("new-keys")).unwrap());
        let unlisted = EnvelopeCrypto::new(
            Arc::clone(&ring) as Arc<dyn KeyProvider>,
            CachePolicy::default(),
            schedule(1),
            Arc::new(Metrics::default()),
        );
        assert!(matches!(unlisted.decrypt(&record, &context(ALICE, "t")).await, Err(CryptoError::KeyNotAccepted(_))));
        let listed = KeySchedule { epoch: 1, retired_key_refs: BTreeSet::from([old_ref]) };
        let new = EnvelopeCrypto::new(ring, CachePolicy::default(), listed, Arc::new(Metrics::default()));
        assert_eq!(new.decrypt(&record, &context(ALICE, "t")).await.unwrap(), b"card");
        assert!(!new.is_current(&record).await.unwrap());
    }

    #[tokio::test]
    async fn round_trips_and_binds_the_context() {
        let dir = tempfile::tempdir().unwrap();
        let (crypto, _) = crypto(dir.path(), CachePolicy::default());
        let record = crypto.encrypt(b"4242 metadata", &context(ALICE, "t")).await.unwrap();
        assert_eq!(crypto.decrypt(&record, &context(ALICE, "t")).await.unwrap(), b"4242 metadata");
        for wrong in [context(BOB, "t"), context(ALICE, "u")] {
            assert!(matches!(crypto.decrypt(&record, &wrong).await, Err(CryptoError::DecryptFailed)));
        }
        let mut tampered = record.clone();
        *tampered.last_mut().unwrap() ^= 1;
        assert!(matches!(crypto.decrypt(&tampered, &context(ALICE, "t")).await, Err(CryptoError::DecryptFailed)));
    }

    #[tokio::test]
    async fn one_provider_call_serves_many_records_until_the_message_limit() {
        let dir = tempfile::tempdir().unwrap();
        // An age limit no run reaches, however loaded the machine: this part counts messages only.
        let policy = CachePolicy { max_age: Duration::from_secs(3600), max_messages: 10_000, max_entries: 10 };
        let (crypto, metrics) = crypto(dir.path(), policy);
        let ctx = context(ALICE, "t");
        let mut first = Vec::new();
        for _ in 0..10_000 {
            first = crypto.encrypt(b"x", &ctx).await.unwrap();
        }
        assert_eq!(metrics.kms_calls(), 1, "10,000 encryptions, one data key");
        crypto.encrypt(b"x", &ctx).await.unwrap();
        assert_eq!(metrics.kms_calls(), 2, "message limit reached: a new key");
        // Records under a retired data key still decrypt (one unwrap).
        assert_eq!(crypto.decrypt(&first, &ctx).await.unwrap(), b"x");
    }

    #[tokio::test]
    async fn a_data_key_retires_at_its_age_limit() {
        let dir = tempfile::tempdir().unwrap();
        let policy = CachePolicy { max_age: Duration::from_millis(100), max_messages: 10_000, max_entries: 10 };
        let (crypto, metrics) = crypto(dir.path(), policy);
        let ctx = context(ALICE, "t");
        let first = crypto.encrypt(b"x", &ctx).await.unwrap();
        let calls = metrics.kms_calls();
        tokio::time::sleep(Duration::from_millis(150)).await;
        let later = crypto.encrypt(b"x", &ctx).await.unwrap();
        assert_eq!(metrics.kms_calls(), calls + 1, "age limit reached: a new key");
        let wrapped = |r: &[u8]| format::parse(r).unwrap().wrapped_key.to_vec();
        assert_ne!(wrapped(&first), wrapped(&later));
        assert_eq!(crypto.decrypt(&first, &ctx).await.unwrap(), b"x");
    }

    #[tokio::test]
    async fn a_new_epoch_makes_old_records_stale_until_rewrapped() {
        let dir = tempfile::tempdir().unwrap();
        let (old, _) = crypto(dir.path(), CachePolicy::default());
        let ctx = context(ALICE, "t");
        let record = old.encrypt(b"card", &ctx).await.unwrap();
        assert!(old.is_current(&record).await.unwrap());
        let ring = LocalKeyring::load_or_create(&dir.path().join("keys")).unwrap();
        let next =
            EnvelopeCrypto::new(Arc::new(ring), CachePolicy::default(), schedule(2), Arc::new(Metrics::default()));
        assert!(!next.is_current(&record).await.unwrap());
        let rewrapped = next.rewrap(&record, &ctx).await.unwrap();
        assert!(next.is_current(&rewrapped).await.unwrap());
        assert_eq!(format::parse(&rewrapped).unwrap().key_epoch, 2);
        assert_eq!(next.decrypt(&rewrapped, &ctx).await.unwrap(), b"card");
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
        #[test]
        fn random_records_round_trip_under_random_contexts(
            data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..4096),
            user in proptest::prelude::any::<u128>(),
            table in "[a-z_][a-z0-9_]{0,62}",
            column in "[a-z_][a-z0-9_]{0,62}",
        ) {
            let dir = tempfile::tempdir().unwrap();
            let (crypto, _) = crypto(dir.path(), CachePolicy::default());
            let ctx = EncryptionContext::try_from(ContextInput {
                user_id: uuid::Uuid::from_u128(user).to_string(), table, column,
                record_id: Some(uuid::Uuid::from_u128(!user).to_string()),
            }).unwrap();
            let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
            let record = runtime.block_on(crypto.encrypt(&data, &ctx)).unwrap();
            proptest::prop_assert_eq!(runtime.block_on(crypto.decrypt(&record, &ctx)).unwrap(), data);
        }
    }
}
