//! A key file on local disk as the key-encryption key: for the demo and for
//! development only. The sidecar refuses it when the environment is production.

use std::path::Path;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::{DataKeyBytes, GeneratedKey, KeyError, KeyProvider, KmsContext};

/// Keys by id; the first is the one new data keys are wrapped with. The file
/// holds one `id:base64-key` per line, so old keys can stay for decryption.
pub struct LocalKeyring {
    keys: Vec<(String, Aes256Gcm)>,
}

impl std::fmt::Debug for LocalKeyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ids: Vec<&str> = self.keys.iter().map(|(id, _)| id.as_str()).collect();
        f.debug_struct("LocalKeyring").field("key_ids", &ids).finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KeyringError {
    #[error("cannot read key file {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("cannot create key file {path}: {source}")]
    Create { path: String, source: std::io::Error },
    #[error("key file {path}, line {line}: expected id:base64 of 32 bytes")]
    Malformed { path: String, line: usize },
    #[error("key file {0} holds no key")]
    Empty(String),
}

fn key_id(key: &[u8]) -> String {
    let digest = Sha256::digest(key);
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

impl LocalKeyring {
    /// Loads the key file, creating it (mode 0600) with one fresh key if missing.
    pub fn load_or_create(path: &Path) -> Result<Self, KeyringError> {
        let shown = path.display().to_string();
        if !path.exists() {
            let mut key = Zeroizing::new([0u8; 32]);
            getrandom::getrandom(key.as_mut()).map_err(|e| KeyringError::Create {
                path: shown.clone(),
                source: std::io::Error::other(e.to_string()),
            })?;
            let line = Zeroizing::new(format!(
                "{}:{}\n",
                key_id(key.as_ref()),
                base64::engine::general_purpose::STANDARD.encode(key.as_ref())
            ));
            use std::io::Write;
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .and_then(|mut file| file.write_all(line.as_bytes()))
                .map_err(|source| KeyringError::Create { path: shown.clone(), source })?;
        }
        let text = Zeroizing::new(
            std::fs::read_to_string(path).map_err(|source| KeyringError::Read { path: shown.clone(), source })?,
        );
        let mut keys = Vec::new();
        for (index, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
            let malformed = || KeyringError::Malformed { path: shown.clone(), line: index + 1 };
            let (id, encoded) = line.trim().split_once(':').ok_or_else(malformed)?;
            let key =
                Zeroizing::new(base64::engine::general_purpose::STANDARD.decode(encoded).map_err(|_| malformed())?);
            if key.len() != 32 || id.is_empty() {
                return Err(malformed());
            }
            let cipher = Aes256Gcm::new_from_slice(&key).map_err(|_| malformed())?;
            keys.push((id.to_owned(), cipher));
        }
        if keys.is_empty() {
            return Err(KeyringError::Empty(shown));
        }
        Ok(Self { keys })
    }

    fn key_ref(id: &str) -> String {
        format!("local:{id}")
    }

    fn aad(context: &KmsContext) -> Vec<u8> {
        serde_json::to_vec(&context.pairs()).unwrap_or_default()
    }
}

#[async_trait::async_trait]
impl KeyProvider for LocalKeyring {
    fn name(&self) -> &'static str {
        "local-keyring"
    }

    async fn generate_data_key(&self, context: &KmsContext) -> Result<GeneratedKey, KeyError> {
        let (id, cipher) = &self.keys[0];
        let mut plaintext = Zeroizing::new([0u8; 32]);
        let mut nonce = [0u8; 12];
        getrandom::getrandom(plaintext.as_mut()).map_err(|e| KeyError::Unavailable(e.to_string()))?;
        getrandom::getrandom(&mut nonce).map_err(|e| KeyError::Unavailable(e.to_string()))?;
        let aad = Self::aad(context);
        let sealed = cipher
            .encrypt(Nonce::from_slice(&nonce), Payload { msg: plaintext.as_ref(), aad: &aad })
            .map_err(|_| KeyError::Unavailable("local wrap failed".into()))?;
        let mut wrapped = nonce.to_vec();
        wrapped.extend_from_slice(&sealed);
        Ok(GeneratedKey { plaintext, wrapped, key_ref: Self::key_ref(id) })
    }

    async fn decrypt_data_key(
        &self,
        key_ref: &str,
        wrapped: &[u8],
        context: &KmsContext,
    ) -> Result<DataKeyBytes, KeyError> {
        let cipher = self
            .keys
            .iter()
            .find(|(id, _)| Self::key_ref(id) == key_ref)
            .map(|(_, cipher)| cipher)
            .ok_or_else(|| KeyError::Rejected(format!("unknown key {key_ref}")))?;
        if wrapped.len() < 12 + 16 {
            return Err(KeyError::Invalid("wrapped key too short".into()));
        }
        let (nonce, sealed) = wrapped.split_at(12);
        let aad = Self::aad(context);
        let plain = Zeroizing::new(
            cipher
                .decrypt(Nonce::from_slice(nonce), Payload { msg: sealed, aad: &aad })
                .map_err(|_| KeyError::Invalid("wrapped key or context does not match".into()))?,
        );
        let mut key = Zeroizing::new([0u8; 32]);
        if plain.len() != 32 {
            return Err(KeyError::Invalid("unwrapped key has the wrong length".into()));
        }
        key.copy_from_slice(&plain);
        Ok(key)
    }

    fn configured_key_ref(&self) -> Option<String> {
        self.keys.first().map(|(id, _)| Self::key_ref(id))
    }

    async fn check(&self) -> Result<(), KeyError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn wraps_and_unwraps_under_the_same_context_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys");
        let ring = LocalKeyring::load_or_create(&path).unwrap();
        let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&path).unwrap().permissions());
        assert_eq!(mode & 0o777, 0o600);
        let context = KmsContext { key_epoch: 1 };
        let key = ring.generate_data_key(&context).await.unwrap();
        let again = LocalKeyring::load_or_create(&path).unwrap();
        let unwrapped = again.decrypt_data_key(&key.key_ref, &key.wrapped, &context).await.unwrap();
        assert_eq!(unwrapped.as_ref(), key.plaintext.as_ref());
        assert!(matches!(
            again.decrypt_data_key(&key.key_ref, &key.wrapped, &KmsContext { key_epoch: 2 }).await,
            Err(KeyError::Invalid(_))
        ));
        let mut tampered = key.wrapped.clone();
        tampered[20] ^= 1;
        assert!(matches!(again.decrypt_data_key(&key.key_ref, &tampered, &context).await, Err(KeyError::Invalid(_))));
        assert!(matches!(
            again.decrypt_data_key("local:unknown", &key.wrapped, &context).await,
            Err(KeyError::Rejected(_))
        ));
    }

    #[test]
    fn debug_shows_ids_not_keys() {
        let dir = tempfile::tempdir().unwrap();
        let ring = LocalKeyring::load_or_create(&dir.path().join("keys")).unwrap();
        let shown = format!("{ring:?}");
        assert!(shown.starts_with("LocalKeyring { key_ids: [\""), "{shown}");
        let file = std::fs::read_to_string(dir.path().join("keys")).unwrap();
        let secret = file.trim().split_once(':').unwrap().1;
        assert!(!shown.contains(secret));
    }
}
