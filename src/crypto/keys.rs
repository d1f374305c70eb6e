//! Node and channel keys.

use hmac::Mac;
use secp::{MaybeScalar, Point, Scalar};

use super::hash_parts;
use crate::primitives::{Hash256, Pubkey};

/// Domain tag mixed into every derivation, so these keys never collide with
/// keys some other protocol derives from the same secret.
const DOMAIN: &[u8] = b"fiber-funding/keys/v1";

/// Derives a valid non-zero scalar from `inputs`; retries with a counter in the
/// (astronomically rare) case the hash is not a valid scalar.
pub(crate) fn derive_scalar(label: &str, inputs: &[&[u8]]) -> Scalar {
    for counter in 0u32.. {
        let counter = counter.to_le_bytes();
        let mut parts: Vec<&[u8]> = vec![DOMAIN, label.as_bytes(), &counter];
        parts.extend_from_slice(inputs);
        if let Ok(scalar) = Scalar::try_from(hash_parts(&parts)) {
            return scalar;
        }
    }
    unreachable!("a u32 counter always finds a valid scalar")
}

/// The compressed public key of a secret scalar.
pub fn pubkey_of(secret: &Scalar) -> Pubkey {
    Pubkey(secret.base_point_mul().serialize())
}

/// Parses a compressed public key received from a peer or the user.
pub fn parse_pubkey(key: &Pubkey) -> Option<Point> {
    Point::from_slice(&key.0).ok()
}

/// A channel's funding secret: from the node secret and the channel seed.
fn funding_secret(node_secret: &[u8; 32], channel_seed: &[u8; 32]) -> Scalar {
    derive_scalar("funding", &[node_secret, channel_seed])
}

/// Whether every `(keys, funding_pubkey)` pair has `keys`' funding key: the
/// sum of the funding secrets times G against the sum of the pubkeys, one
/// base-point multiplication for a whole boot instead of one per channel (a
/// thousand flows took 160 ms of a page load in Chromium). The keys are
/// derived from this node's secret, the records checked are the node's own
/// writes, and this catches a changed node key; a caller told `false` checks
/// each to say which. A restore uses it only for records from before schema
/// 5: later ones carry [`ChannelKeys::key_check`], which needs no point.
pub fn funding_keys_all_match(channels: &[(&ChannelKeys, &Pubkey)]) -> bool {
    let secrets: MaybeScalar = channels.iter().map(|(keys, _)| keys.funding_secret).sum();
    let Some(points) = channels
        .iter()
        .map(|(_, key)| parse_pubkey(key))
        .collect::<Option<Vec<Point>>>()
    else {
        return false;
    };
    secrets.base_point_mul() == Point::sum(points)
}

/// The node's long-lived identity.
#[derive(Clone)]
pub struct NodeSecret(Scalar);

impl NodeSecret {
    /// Reads 32 secret bytes; `None` when they are not a valid secp256k1 key.
    pub fn from_bytes(bytes: [u8; 32]) -> Option<Self> {
        Scalar::try_from(bytes).ok().map(Self)
    }

    pub fn to_bytes(&self) -> [u8; 32] {
        self.0.serialize()
    }

    pub fn node_id(&self) -> Pubkey {
        pubkey_of(&self.0)
    }
}

impl NodeSecret {
    /// The key that authenticates this node's backups (`exportBackup`):
    /// only the node secret makes it, and it signs nothing else.
    pub fn backup_key(&self) -> BackupKey {
        BackupKey {
            node_id: self.node_id(),
            key: hash_parts(&[DOMAIN, b"backup-authentication", &self.to_bytes()]),
        }
    }
}

/// Authenticates the entries of a backup of one node: a backup is kept
/// outside the browser (a file, a cloud copy), and one made with the
/// wallet's own node key holds no secret, so whoever can write it could
/// otherwise rewrite where a record pays the user's share.
#[derive(Clone)]
pub struct BackupKey {
    node_id: Pubkey,
    key: [u8; 32],
}

impl BackupKey {
    pub fn node_id(&self) -> Pubkey {
        self.node_id
    }

    /// HMAC-SHA256 of one entry: the node, the channel, and the record's
    /// bytes exactly as the backup holds them (an older schema's included).
    pub fn tag(&self, channel_id: &Hash256, record: &[u8]) -> [u8; 32] {
        self.mac(channel_id, record).finalize().into_bytes().into()
    }

    /// Whether `tag` is [`BackupKey::tag`] of the entry; compared in
    /// constant time.
    pub fn verify(&self, channel_id: &Hash256, record: &[u8], tag: &[u8]) -> bool {
        self.mac(channel_id, record).verify_slice(tag).is_ok()
    }

    fn mac(&self, channel_id: &Hash256, record: &[u8]) -> hmac::Hmac<sha2::Sha256> {
        let mut mac = <hmac::Hmac<sha2::Sha256>>::new_from_slice(&self.key).expect("HMAC takes any key length");
        // Fixed-width fields first, the record last: no two entries share bytes.
        mac.update(b"fiber-funding/backup-entry/v1");
        mac.update(&self.node_id.0);
        mac.update(&channel_id.0);
        mac.update(record);
        mac
    }
}

impl std::fmt::Debug for BackupKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "BackupKey(node_id={})", self.node_id)
    }
}

impl std::fmt::Debug for NodeSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the secret, not even in debug logs.
        write!(f, "NodeSecret(node_id={})", self.node_id())
    }
}

/// The keys of one channel, derived from the node secret and the channel
/// seed. Only the funding secret is derived up front (a boot checks every
/// restored channel's funding key); the others when used.
#[derive(Clone)]
pub struct ChannelKeys {
    pub(crate) funding_secret: Scalar,
    node_secret: [u8; 32],
    channel_seed: [u8; 32],
}

impl ChannelKeys {
    pub fn derive(node: &NodeSecret, channel_seed: &[u8; 32]) -> Self {
        let node_secret = node.to_bytes();
        Self {
            funding_secret: funding_secret(&node_secret, channel_seed),
            node_secret,
            channel_seed: *channel_seed,
        }
    }

    fn tlc_base_secret(&self) -> Scalar {
        derive_scalar("tlc-base", &[&self.node_secret, &self.channel_seed])
    }

    pub fn funding_pubkey(&self) -> Pubkey {
        pubkey_of(&self.funding_secret)
    }

    /// What a record stores to say its funding key is this channel's under
    /// this node secret: a hash of the funding secret (itself a hash of the
    /// node secret and the seed) and the key. A restore compares it instead
    /// of reading every key as a curve point, the most expensive step of a
    /// boot with many flows; only a holder of the node secret can make it.
    pub fn key_check(&self, funding_pubkey: &Pubkey) -> Hash256 {
        Hash256(hash_parts(&[
            b"record-key-check",
            &self.funding_secret.serialize(),
            &funding_pubkey.0,
        ]))
    }

    pub fn tlc_basepoint(&self) -> Pubkey {
        pubkey_of(&self.tlc_base_secret())
    }

    /// The secret of our settlement slot in commitment locks (the tlc
    /// basepoint's): it alone signs our claim after a unilateral close.
    pub fn settlement_key(&self) -> k256::ecdsa::SigningKey {
        k256::ecdsa::SigningKey::from_bytes(&self.tlc_base_secret().serialize().into())
            .expect("a non-zero scalar is a valid signing key")
    }

    /// The per-commitment point of commitment `number` (announced for commitments 0 and 1).
    pub fn per_commitment_point(&self, number: u64) -> Pubkey {
        pubkey_of(&derive_scalar(
            "per-commitment",
            &[&self.node_secret, &self.channel_seed, &number.to_le_bytes()],
        ))
    }

    /// Secret material for MuSig2 nonces of this channel; see [`super::musig`].
    pub(crate) fn nonce_key(&self, slot: &[u8], binding: &[u8]) -> [u8; 32] {
        hash_parts(&[
            DOMAIN,
            b"musig2-nonce",
            &self.node_secret,
            &self.channel_seed,
            slot,
            binding,
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_backup_tag_binds_the_node_the_channel_and_every_byte_of_the_record() {
        let node = NodeSecret::from_bytes([1; 32]).unwrap().backup_key();
        let other = NodeSecret::from_bytes([2; 32]).unwrap().backup_key();
        let channel = Hash256([7; 32]);
        let record = b"\x89FFR\x06 a record".to_vec();
        let tag = node.tag(&channel, &record);
        assert!(node.verify(&channel, &record, &tag));
        assert!(!other.verify(&channel, &record, &tag), "another node key");
        assert!(!node.verify(&Hash256([8; 32]), &record, &tag), "another channel");
        for at in 0..record.len() {
            let mut changed = record.clone();
            changed[at] ^= 1;
            assert!(!node.verify(&channel, &changed, &tag), "byte {at}");
        }
        assert!(!node.verify(&channel, &record[..record.len() - 1], &tag), "cut short");
        assert!(!node.verify(&channel, &record, &tag[..31]), "a short tag");
        let mut wrong = tag;
        wrong[31] ^= 1;
        assert!(!node.verify(&channel, &record, &wrong));
    }

    #[test]
    fn one_sum_tells_whether_every_funding_key_is_this_nodes() {
        let node = NodeSecret::from_bytes([1; 32]).unwrap();
        let other = NodeSecret::from_bytes([2; 32]).unwrap();
        let seeds: Vec<[u8; 32]> = (0..5u8).map(|n| [n; 32]).collect();
        let mut keys: Vec<Pubkey> = seeds
            .iter()
            .map(|seed| ChannelKeys::derive(&node, seed).funding_pubkey())
            .collect();
        fn pairs(node: &NodeSecret, seeds: &[[u8; 32]], keys: &[Pubkey]) -> bool {
            let derived: Vec<ChannelKeys> = seeds.iter().map(|seed| ChannelKeys::derive(node, seed)).collect();
            funding_keys_all_match(&derived.iter().zip(keys).collect::<Vec<_>>())
        }
        assert!(pairs(&node, &seeds, &keys));
        assert!(funding_keys_all_match(&[]));
        assert!(!pairs(&other, &seeds, &keys));
        keys[3] = ChannelKeys::derive(&other, &seeds[3]).funding_pubkey();
        assert!(!pairs(&node, &seeds, &keys));
        keys[3] = Pubkey([9; 33]);
        assert!(!pairs(&node, &seeds, &keys), "not a curve point");
    }

    #[test]
    fn channel_keys_depend_on_node_and_seed() {
        let node_a = NodeSecret::from_bytes([1; 32]).unwrap();
        let node_b = NodeSecret::from_bytes([2; 32]).unwrap();
        let keys = ChannelKeys::derive(&node_a, &[7; 32]);
        assert_eq!(
            keys.funding_pubkey(),
            ChannelKeys::derive(&node_a, &[7; 32]).funding_pubkey()
        );
        assert_ne!(
            keys.funding_pubkey(),
            ChannelKeys::derive(&node_a, &[8; 32]).funding_pubkey()
        );
        assert_ne!(
            keys.funding_pubkey(),
            ChannelKeys::derive(&node_b, &[7; 32]).funding_pubkey()
        );
        assert_ne!(keys.funding_pubkey(), keys.tlc_basepoint());
        assert_ne!(keys.per_commitment_point(0), keys.per_commitment_point(1));
    }

    #[test]
    fn node_secret_rejects_invalid_keys_and_hides_itself() {
        assert!(NodeSecret::from_bytes([0; 32]).is_none());
        assert!(NodeSecret::from_bytes([0xff; 32]).is_none());
        let node = NodeSecret::from_bytes([3; 32]).unwrap();
        assert!(!format!("{node:?}").contains("0303"));
    }
}
