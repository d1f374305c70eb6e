//! Keys and signatures of a channel.
//!
//! Every channel secret is derived from the node secret and a random per-channel
//! seed stored in the channel's record, so a record alone reveals no key and a
//! restored channel gets exactly the keys it had.

pub mod keys;
pub mod musig;

/// CKB's blake2b-256 (personalised `ckb-default-hash`).
pub fn blake2b_256(data: &[u8]) -> [u8; 32] {
    ckb_hash::blake2b_256(data)
}

/// First 20 bytes of [`blake2b_256`], CKB's usual lock-args hash.
pub fn blake160(data: &[u8]) -> [u8; 20] {
    let mut out = [0u8; 20];
    out.copy_from_slice(&blake2b_256(data)[..20]);
    out
}

/// blake2b-256 over several byte strings, each prefixed by its length so that
/// different splits of the same bytes never collide.
pub fn hash_parts(parts: &[&[u8]]) -> [u8; 32] {
    let mut hasher = ckb_hash::new_blake2b();
    for part in parts {
        hasher.update(&(part.len() as u64).to_le_bytes());
        hasher.update(part);
    }
    let mut out = [0u8; 32];
    hasher.finalize(&mut out);
    out
}
