//! The data-key cache, like the AWS Encryption SDK's caching materials manager:
//! one data key encrypts records until it is `max_age` old or has encrypted
//! `max_messages` records; unwrapped keys are kept for decryption for `max_age`,
//! at most `max_entries` of them; wrapped keys the provider refused are
//! remembered as long, so a forged record cannot become one provider call per
//! request. Keys leave memory zeroized: `DataKeyBytes`
//! wipes on drop, and so do the cipher's AES round keys and GHASH key (the
//! `aes` and `polyval` crates are built with their `zeroize` features).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aes_gcm::Aes256Gcm;

#[derive(Debug, Clone, Copy)]
pub struct CachePolicy {
    pub max_age: Duration,
    pub max_messages: u64,
    pub max_entries: usize,
}

impl Default for CachePolicy {
    fn default() -> Self {
        Self { max_age: Duration::from_secs(300), max_messages: 100_000, max_entries: 1_000 }
    }
}

/// A usable data key: the cipher built from it, and how to name it in records.
pub struct CachedKey {
    pub cipher: Aes256Gcm,
    pub key_ref: String,
    pub key_epoch: u32,
    pub wrapped: Vec<u8>,
    pub created: Instant,
}

impl std::fmt::Debug for CachedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CachedKey")
            .field("key_ref", &self.key_ref)
            .field("created", &self.created)
            .finish_non_exhaustive()
    }
}

/// The key currently used for encryption, and how many records it sealed.
pub struct EncryptionSlot {
    pub key: Arc<CachedKey>,
    pub messages: u64,
}

impl EncryptionSlot {
    /// Takes one use of the key, or says it is used up.
    pub fn take(&mut self, policy: &CachePolicy, now: Instant) -> Option<Arc<CachedKey>> {
        if now.duration_since(self.key.created) >= policy.max_age || self.messages >= policy.max_messages {
            return None;
        }
        self.messages += 1;
        Some(Arc::clone(&self.key))
    }
}

/// Unwrapped keys by (key reference, epoch, wrapped bytes).
#[derive(Default)]
pub struct DecryptionCache {
    entries: HashMap<KeyId, Arc<CachedKey>>,
}

impl DecryptionCache {
    pub fn get(
        &mut self,
        key_ref: &str,
        epoch: u32,
        wrapped: &[u8],
        policy: &CachePolicy,
        now: Instant,
    ) -> Option<Arc<CachedKey>> {
        let id = (key_ref.to_owned(), epoch, wrapped.to_vec());
        match self.entries.get(&id) {
            Some(key) if now.duration_since(key.created) < policy.max_age => Some(Arc::clone(key)),
            Some(_) => {
                self.entries.remove(&id);
                None
            }
            None => None,
        }
    }

    /// Adds a key, evicting expired ones and then the oldest beyond `max_entries`;
    /// returns how many were evicted.
    pub fn insert(&mut self, key: Arc<CachedKey>, policy: &CachePolicy, now: Instant) -> usize {
        let evicted = make_room(&mut self.entries, |k| k.created, policy, now);
        self.entries.insert((key.key_ref.clone(), key.key_epoch, key.wrapped.clone()), key);
        evicted
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.entries.len()
    }
}

/// Wrapped keys the provider refused, remembered for `max_age` (at most
/// `max_entries`): a forged record sent again costs no second provider call.
#[derive(Default)]
pub struct RefusedKeys {
    entries: HashMap<KeyId, Instant>,
}

impl RefusedKeys {
    pub fn contains(&self, key_ref: &str, epoch: u32, wrapped: &[u8], policy: &CachePolicy, now: Instant) -> bool {
        self.entries
            .get(&(key_ref.to_owned(), epoch, wrapped.to_vec()))
            .is_some_and(|refused| now.duration_since(*refused) < policy.max_age)
    }

    pub fn insert(&mut self, key_ref: &str, epoch: u32, wrapped: &[u8], policy: &CachePolicy, now: Instant) {
        make_room(&mut self.entries, |refused| *refused, policy, now);
        self.entries.insert((key_ref.to_owned(), epoch, wrapped.to_vec()), now);
    }
}

type KeyId = (String, u32, Vec<u8>);

/// Room for one more entry: drops those older than `max_age`, then the oldest
/// until fewer than `max_entries` remain; returns how many were dropped.
fn make_room<V>(
    entries: &mut HashMap<KeyId, V>,
    since: impl Fn(&V) -> Instant,
    policy: &CachePolicy,
    now: Instant,
) -> usize {
    let before = entries.len();
    entries.retain(|_, entry| now.duration_since(since(entry)) < policy.max_age);
    while entries.len() >= policy.max_entries.max(1) {
        let oldest = entries.iter().min_by_key(|(_, entry)| since(entry)).map(|(id, _)| id.clone());
        match oldest {
            Some(id) => entries.remove(&id),
            None => break,
        };
    }
    before - entries.len()
}

#[cfg(test)]
mod tests {
    use aes_gcm::KeyInit;

    use super::*;

    /// Compiles only while the `aes` crate wipes its key schedule on drop (its
    /// `zeroize` feature); polyval has no marker trait to check the same way.
    #[test]
    fn the_aes_key_schedule_is_wiped_on_drop() {
        fn wiped_on_drop<T: zeroize::ZeroizeOnDrop>() {}
        wiped_on_drop::<aes::Aes256>();
    }

    fn key(created: Instant, n: u8) -> Arc<CachedKey> {
        Arc::new(CachedKey {
            cipher: Aes256Gcm::new_from_slice(&[n; 32]).unwrap(),
            key_ref: "local:k".into(),
            key_epoch: 1,
            wrapped: vec![n],
            created,
        })
    }

    #[test]
    fn encryption_slot_retires_by_messages_and_age() {
        let policy = CachePolicy { max_age: Duration::from_secs(10), max_messages: 3, max_entries: 10 };
        let start = Instant::now();
        let mut slot = EncryptionSlot { key: key(start, 1), messages: 0 };
        assert!((0..3).all(|_| slot.take(&policy, start).is_some()));
        assert!(slot.take(&policy, start).is_none(), "fourth message");
        let mut fresh = EncryptionSlot { key: key(start, 2), messages: 0 };
        assert!(fresh.take(&policy, start + Duration::from_secs(10)).is_none(), "too old");
    }

    #[test]
    fn decryption_cache_expires_and_bounds_entries() {
        let policy = CachePolicy { max_age: Duration::from_secs(10), max_messages: 3, max_entries: 2 };
        let start = Instant::now();
        let mut cache = DecryptionCache::default();
        assert_eq!(cache.insert(key(start, 1), &policy, start), 0);
        assert!(cache.get("local:k", 1, &[1], &policy, start).is_some());
        assert!(cache.get("local:k", 2, &[1], &policy, start).is_none(), "other epoch");
        cache.insert(key(start + Duration::from_secs(1), 2), &policy, start + Duration::from_secs(1));
        let evicted = cache.insert(key(start + Duration::from_secs(2), 3), &policy, start + Duration::from_secs(2));
        assert_eq!((evicted, cache.len()), (1, 2));
        assert!(cache.get("local:k", 1, &[1], &policy, start + Duration::from_secs(2)).is_none(), "oldest evicted");
        assert!(cache.get("local:k", 1, &[3], &policy, start + Duration::from_secs(13)).is_none(), "expired");
    }

    #[test]
    fn refused_keys_are_remembered_for_a_while_and_bounded() {
        let policy = CachePolicy { max_age: Duration::from_secs(10), max_messages: 3, max_entries: 2 };
        let start = Instant::now();
        let mut refused = RefusedKeys::default();
        refused.insert("local:k", 1, &[1], &policy, start);
        assert!(refused.contains("local:k", 1, &[1], &policy, start + Duration::from_secs(9)));
        assert!(!refused.contains("local:k", 1, &[2], &policy, start), "another wrapped key");
        assert!(!refused.contains("local:k", 1, &[1], &policy, start + Duration::from_secs(10)), "forgotten");
        refused.insert("local:k", 1, &[2], &policy, start + Duration::from_secs(1));
        refused.insert("local:k", 1, &[3], &policy, start + Duration::from_secs(2));
        assert!(!refused.contains("local:k", 1, &[1], &policy, start + Duration::from_secs(2)), "oldest evicted");
        assert!(refused.contains("local:k", 1, &[3], &policy, start + Duration::from_secs(2)));
    }
}
