//! Feature-flag bucketing, identical to Parker Flight's TypeScript
//! `userInBucket(userId, rollout)`: MurmurHash3 x86 32-bit (seed 0, the npm
//! package `murmurhash-js`'s `murmur3`) of the user id's canonical text
//! (lower-case, dashed), modulo 100; the user is in when bucket < rollout.

/// MurmurHash3 x86 32-bit (Austin Appleby's reference `MurmurHash3_x86_32`).
pub fn murmur3_x86_32(data: &[u8], seed: u32) -> u32 {
    const C1: u32 = 0xcc9e_2d51;
    const C2: u32 = 0x1b87_3593;
    let mix = |mut k: u32| {
        k = k.wrapping_mul(C1);
        k = k.rotate_left(15);
        k.wrapping_mul(C2)
    };
    let mut hash = seed;
    let mut blocks = data.chunks_exact(4);
    for block in &mut blocks {
        let k = u32::from_le_bytes([block[0], block[1], block[2], block[3]]);
        hash ^= mix(k);
        hash = hash.rotate_left(13).wrapping_mul(5).wrapping_add(0xe654_6b64);
    }
    let tail = blocks.remainder();
    if !tail.is_empty() {
        let k = tail.iter().rev().fold(0u32, |acc, &b| (acc << 8) | u32::from(b));
        hash ^= mix(k);
    }
    hash ^= data.len() as u32;
    hash ^= hash >> 16;
    hash = hash.wrapping_mul(0x85eb_ca6b);
    hash ^= hash >> 13;
    hash = hash.wrapping_mul(0xc2b2_ae35);
    hash ^ (hash >> 16)
}

/// The user's bucket, 0..100.
pub fn bucket(user_id: &uuid::Uuid) -> u32 {
    let canonical = user_id.hyphenated().to_string();
    murmur3_x86_32(canonical.as_bytes(), 0) % 100
}

/// `userInBucket`: rollout <= 0 is always out, >= 100 always in.
pub fn in_rollout(user_id: &uuid::Uuid, rollout_percent: i32) -> bool {
    match rollout_percent {
        r if r <= 0 => false,
        r if r >= 100 => true,
        r => bucket(user_id) < r as u32,
    }
}

/// A flag row as read from `feature_flags`.
#[derive(Debug, Clone, Default)]
pub struct Flag {
    pub enabled: bool,
    pub rollout_percent: i32,
    pub allow_list: Vec<uuid::Uuid>,
}

/// Whether `user_id` sees the flag. A disabled flag is off for everyone (a kill
/// switch beats the allow list); a listed user is in; others go by rollout.
/// No user (NULL or empty id) is out.
pub fn flag_enabled(flag: &Flag, user_id: Option<&uuid::Uuid>) -> bool {
    let Some(user_id) = user_id.filter(|u| !u.is_nil()) else {
        return false;
    };
    flag.enabled && (flag.allow_list.contains(user_id) || in_rollout(user_id, flag.rollout_percent))
}

/// Whether asking about `asked` reveals nothing about anyone but the requester
/// (the request's subject): true about oneself, and about no one (the answer is
/// then always "out"). Anything else is for roles that may read the flags table,
/// allow lists and all, anyway.
pub fn asks_only_about_oneself(asked: Option<&uuid::Uuid>, requester: Option<&uuid::Uuid>) -> bool {
    match asked.filter(|u| !u.is_nil()) {
        None => true,
        Some(asked) => requester == Some(asked),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Published MurmurHash3_x86_32 vectors (SMHasher / reference implementation).
    #[test]
    fn matches_published_test_vectors() {
        let vectors: [(&[u8], u32, u32); 12] = [
            (b"", 0, 0),
            (b"", 1, 0x514e_28b7),
            (b"", 0xffff_ffff, 0x81f1_6f39),
            (b"\xff\xff\xff\xff", 0, 0x7629_3b50),
            (b"\x21\x43\x65\x87", 0, 0xf55b_516b),
            (b"\x21\x43\x65\x87", 0x5082_edee, 0x2362_f9de),
            (b"\x21\x43\x65", 0, 0x7e4a_8634),
            (b"\x21\x43", 0, 0xa0f7_b07a),
            (b"\x21", 0, 0x7266_1cf4),
            (b"\x00\x00\x00\x00", 0, 0x2362_f9de),
            (b"Hello, world!", 0x9747_b28c, 0x2488_4cba),
            (b"The quick brown fox jumps over the lazy dog", 0x9747_b28c, 0x2fa8_26cd),
        ];
        for (input, seed, expected) in vectors {
            assert_eq!(murmur3_x86_32(input, seed), expected, "{input:?} seed {seed:#x}");
        }
    }

    #[test]
    fn buckets_hash_the_lower_case_dashed_text() {
        let id = uuid::Uuid::parse_str("6F9619FF-8B86-D011-B42D-00C04FC964FF").unwrap();
        let expected = murmur3_x86_32(b"6f9619ff-8b86-d011-b42d-00c04fc964ff", 0) % 100;
        assert_eq!(bucket(&id), expected);
    }

    #[test]
    fn rollout_edges() {
        let id = uuid::Uuid::from_u128(42);
        assert!(!in_rollout(&id, 0));
        assert!(!in_rollout(&id, -5));
        assert!(in_rollout(&id, 100));
        assert!(in_rollout(&id, 250));
        let b = bucket(&id) as i32;
        assert!(!in_rollout(&id, b));
        assert!(in_rollout(&id, b + 1));
    }

    #[test]
    fn rollout_splits_users_roughly_evenly() {
        let inside = (0..10_000u128).filter(|n| in_rollout(&uuid::Uuid::from_u128(n * 7919), 30)).count();
        assert!((2_700..3_300).contains(&inside), "{inside} of 10000 at 30%");
    }

    #[test]
    fn flag_rules() {
        let user = uuid::Uuid::from_u128(7);
        let listed = Flag { enabled: true, rollout_percent: 0, allow_list: vec![user] };
        assert!(flag_enabled(&listed, Some(&user)));
        assert!(!flag_enabled(&Flag { enabled: false, ..listed.clone() }, Some(&user)), "kill switch");
        assert!(!flag_enabled(&listed, None));
        assert!(!flag_enabled(
            &Flag { enabled: true, rollout_percent: 100, allow_list: vec![] },
            Some(&uuid::Uuid::nil())
        ));
        assert!(flag_enabled(&Flag { enabled: true, rollout_percent: 100, allow_list: vec![] }, Some(&user)));
    }

    #[test]
    fn asking_about_anyone_else_is_not_about_oneself() {
        let (me, other) = (uuid::Uuid::from_u128(1), uuid::Uuid::from_u128(2));
        assert!(asks_only_about_oneself(Some(&me), Some(&me)));
        assert!(!asks_only_about_oneself(Some(&other), Some(&me)));
        assert!(!asks_only_about_oneself(Some(&other), None), "anon names no one");
        assert!(asks_only_about_oneself(None, None));
        assert!(asks_only_about_oneself(Some(&uuid::Uuid::nil()), None));
    }
}
