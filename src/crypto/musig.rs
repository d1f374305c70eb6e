//! MuSig2 for the 2-of-2 funding output and the commitment signatures.
//!
//! ## Nonces are never reused
//! A secret nonce is never stored: it is re-derived from the node secret, the
//! channel seed, its *slot* and a *binding*. Each slot signs exactly one message:
//!
//! * [`NonceSlot::OwnCommitment`]`(n)` signs our own commitment `n` when we close
//!   with it. It has to be announced before the funding tx exists, so its binding
//!   is empty; the message it will sign is fixed once the funding tx is final,
//!   and a channel's funding tx never changes after that (a different funding
//!   tx means a new channel with a new random seed).
//! * [`NonceSlot::PeerCommitment`]`(n)` signs the peer's commitment `n`. It is
//!   announced (in `TxComplete`) only after the message and the peer's nonce for
//!   that commitment are both fixed and stored, and its binding is the hash of
//!   both: if either ever differed, so would the nonce. This is the "last signer
//!   derives deterministically" rule of BIP327's `DeterministicSign`.
//!
//! Signing the same slot again after a restart therefore yields the same
//! partial signature, which reveals nothing new.

use std::cell::RefCell;

use musig2::{AggNonce, KeyAggContext, PartialSignature, PubNonce, SecNonce};
use secp::{MaybeScalar, Point};

use super::blake160;
use super::keys::{parse_pubkey, ChannelKeys};
use crate::collections::VecMap;
use crate::primitives::{PubNonceBytes, Pubkey};

/// Why a MuSig2 operation failed; names the bad input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MusigError {
    #[error("{0} is not a valid secp256k1 public key")]
    InvalidPubkey(&'static str),
    #[error("{0} is not a valid MuSig2 public nonce")]
    InvalidNonce(&'static str),
    #[error("the partial signature is not a valid scalar")]
    InvalidSignatureEncoding,
    #[error("the partial signature does not verify for this commitment transaction")]
    BadPartialSignature,
    #[error("signing failed: {0}")]
    Signing(String),
}

/// What a nonce will sign; see the module docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonceSlot {
    OwnCommitment(u64),
    PeerCommitment(u64),
    Revocation(u64),
}

impl NonceSlot {
    fn encode(self) -> [u8; 9] {
        let (tag, number) = match self {
            NonceSlot::OwnCommitment(n) => (1u8, n),
            NonceSlot::PeerCommitment(n) => (2u8, n),
            NonceSlot::Revocation(n) => (3u8, n),
        };
        let mut out = [0u8; 9];
        out[0] = tag;
        out[1..].copy_from_slice(&number.to_le_bytes());
        out
    }
}

/// The key-aggregation context of the funding output: both funding keys,
/// sorted by their compressed encoding so both sides get the same key.
pub fn funding_key_agg(a: &Pubkey, b: &Pubkey) -> Result<KeyAggContext, MusigError> {
    let mut keys = [*a, *b];
    keys.sort();
    key_agg(&keys)
}

/// Aggregates keys in the given order (commitment locks order them per holder).
///
/// The same few key lists are aggregated over and over (every commitment
/// tx, its fee and its lock, every signature check), and an aggregation is
/// a multi-scalar multiplication: at a hub it was a quarter of all CPU. So
/// the answers are remembered, per thread, for up to [`KEY_AGG_MEMO`] lists;
/// an aggregation depends on nothing but the keys.
pub fn key_agg(keys: &[Pubkey]) -> Result<KeyAggContext, MusigError> {
    if let Some(ctx) = KEY_AGG.with(|memo| memo.borrow().get(keys).cloned()) {
        return Ok(ctx);
    }
    let points = keys
        .iter()
        .map(|key| parse_pubkey(key).ok_or(MusigError::InvalidPubkey("funding pubkey")))
        .collect::<Result<Vec<Point>, _>>()?;
    let ctx = KeyAggContext::new(points).map_err(|e| MusigError::Signing(e.to_string()))?;
    KEY_AGG.with(|memo| {
        let mut memo = memo.borrow_mut();
        // Bounded: a full memo starts over (a hub holds about two lists per
        // channel in flight).
        if memo.len() >= KEY_AGG_MEMO {
            *memo = VecMap::new();
        }
        memo.insert(keys.to_vec(), ctx.clone());
    });
    Ok(ctx)
}

/// How many key lists [`key_agg`] remembers.
pub const KEY_AGG_MEMO: usize = 2_048;

thread_local! {
    static KEY_AGG: RefCell<VecMap<Vec<Pubkey>, KeyAggContext>> = RefCell::new(VecMap::new());
}

/// The x-only aggregated key (what a BIP340 signature verifies against).
pub fn xonly_key(ctx: &KeyAggContext) -> [u8; 32] {
    let point: Point = ctx.aggregated_pubkey();
    point.serialize_xonly()
}

/// Lock args of the funding output: blake160 of the x-only aggregated key.
pub fn funding_lock_args(ctx: &KeyAggContext) -> [u8; 20] {
    blake160(&xonly_key(ctx))
}

/// The binding of a [`NonceSlot::PeerCommitment`] nonce: the message it signs
/// and the peer's nonce it will be aggregated with.
pub fn peer_commitment_binding(message: &[u8; 32], peer_nonce: &PubNonceBytes) -> Vec<u8> {
    let mut binding = Vec::with_capacity(32 + 66);
    binding.extend_from_slice(message);
    binding.extend_from_slice(&peer_nonce.0);
    binding
}

fn secret_nonce(keys: &ChannelKeys, slot: NonceSlot, binding: &[u8]) -> SecNonce {
    let seed = keys.nonce_key(&slot.encode(), binding);
    SecNonce::build_with_seckey(seed, keys.funding_secret)
        .with_extra_input(&binding)
        .build()
}

/// Our public nonce for `slot`.
pub fn public_nonce(keys: &ChannelKeys, slot: NonceSlot, binding: &[u8]) -> PubNonceBytes {
    let nonce = secret_nonce(keys, slot, binding).public_nonce();
    PubNonceBytes(nonce.serialize())
}

fn parse_nonce(nonce: &PubNonceBytes, what: &'static str) -> Result<PubNonce, MusigError> {
    PubNonce::from_bytes(&nonce.0).map_err(|_| MusigError::InvalidNonce(what))
}

/// Checks that a peer's nonce parses, so a bad one is refused on receipt.
pub fn check_nonce(nonce: &PubNonceBytes, what: &'static str) -> Result<(), MusigError> {
    parse_nonce(nonce, what).map(|_| ())
}

/// The counterparty's partial signature over the holder's commitment `message`
/// with the nonce of `slot` bound to `binding`, derived once: our public nonce
/// (the one `TxComplete` announced) comes from the very secret nonce that
/// signs, as [`SigningSession::sign_as_counterparty`] with
/// `signer_nonce: public_nonce(keys, slot, binding)` would sign, with one
/// nonce derivation (three base-point multiplications) fewer.
pub fn sign_as_counterparty(
    ctx: &KeyAggContext,
    keys: &ChannelKeys,
    message: [u8; 32],
    holder_nonce: &PubNonceBytes,
    slot: NonceSlot,
    binding: &[u8],
) -> Result<[u8; 32], MusigError> {
    let secnonce = secret_nonce(keys, slot, binding);
    let aggregated = AggNonce::sum([parse_nonce(holder_nonce, "holder nonce")?, secnonce.public_nonce()]);
    let signature: PartialSignature = musig2::sign_partial(ctx, keys.funding_secret, secnonce, &aggregated, message)
        .map_err(|e| MusigError::Signing(e.to_string()))?;
    Ok(signature.serialize())
}

/// Everything both signers agree on for one commitment signature.
pub struct SigningSession<'a> {
    pub ctx: &'a KeyAggContext,
    pub message: [u8; 32],
    /// The holder's [`NonceSlot::OwnCommitment`] nonce.
    pub holder_nonce: PubNonceBytes,
    /// The signer's [`NonceSlot::PeerCommitment`] nonce.
    pub signer_nonce: PubNonceBytes,
}

impl SigningSession<'_> {
    fn aggregated_nonce(&self) -> Result<AggNonce, MusigError> {
        let holder = parse_nonce(&self.holder_nonce, "holder nonce")?;
        let signer = parse_nonce(&self.signer_nonce, "signer nonce")?;
        Ok(AggNonce::sum([holder, signer]))
    }

    /// The counterparty's partial signature over the holder's commitment,
    /// signed with the slot's nonce (which must be the one `signer_nonce` announced).
    pub fn sign_as_counterparty(
        &self,
        keys: &ChannelKeys,
        slot: NonceSlot,
        binding: &[u8],
    ) -> Result<[u8; 32], MusigError> {
        self.sign(keys, slot, binding)
    }

    /// The holder's own partial signature (used when closing with this commitment).
    pub fn sign_as_holder(&self, keys: &ChannelKeys, number: u64) -> Result<[u8; 32], MusigError> {
        self.sign(keys, NonceSlot::OwnCommitment(number), &[])
    }

    fn sign(&self, keys: &ChannelKeys, slot: NonceSlot, binding: &[u8]) -> Result<[u8; 32], MusigError> {
        let secnonce = secret_nonce(keys, slot, binding);
        let signature: PartialSignature = musig2::sign_partial(
            self.ctx,
            keys.funding_secret,
            secnonce,
            &self.aggregated_nonce()?,
            self.message,
        )
        .map_err(|e| MusigError::Signing(e.to_string()))?;
        Ok(signature.serialize())
    }

    /// Verifies a partial signature made by `signer` with `signer_nonce` (or, for
    /// the holder's own signature, with `holder_nonce`).
    pub fn verify(&self, signature: &[u8; 32], signer: &Pubkey, signer_is_holder: bool) -> Result<(), MusigError> {
        let signature = MaybeScalar::from_slice(signature).map_err(|_| MusigError::InvalidSignatureEncoding)?;
        let pubkey = parse_pubkey(signer).ok_or(MusigError::InvalidPubkey("signer"))?;
        let nonce = if signer_is_holder {
            &self.holder_nonce
        } else {
            &self.signer_nonce
        };
        let nonce = parse_nonce(nonce, "signer nonce")?;
        musig2::verify_partial(
            self.ctx,
            signature,
            &self.aggregated_nonce()?,
            pubkey,
            &nonce,
            self.message,
        )
        .map_err(|_| MusigError::BadPartialSignature)
    }

    /// Aggregates both partial signatures into the BIP340 signature the funding
    /// lock checks, and verifies it against the aggregated key.
    pub fn aggregate(
        &self,
        holder_signature: &[u8; 32],
        counterparty_signature: &[u8; 32],
    ) -> Result<[u8; 64], MusigError> {
        let parse = |bytes: &[u8; 32]| MaybeScalar::from_slice(bytes).map_err(|_| MusigError::InvalidSignatureEncoding);
        let signature: musig2::CompactSignature = musig2::aggregate_partial_signatures(
            self.ctx,
            &self.aggregated_nonce()?,
            [parse(holder_signature)?, parse(counterparty_signature)?],
            self.message,
        )
        .map_err(|_| MusigError::BadPartialSignature)?;
        let aggregated: Point = self.ctx.aggregated_pubkey();
        musig2::verify_single(aggregated, signature, self.message).map_err(|_| MusigError::BadPartialSignature)?;
        Ok(signature.serialize())
    }
}

/// What a submit spends on MuSig2 alone, for `scripts/bench`: aggregating two
/// funding keys, deriving both nonces and making one partial signature over a
/// commitment's sighash. `seed` varies the keys so no work is cached.
pub fn partial_signature_for_benchmark(seed: u8) -> Result<[u8; 32], MusigError> {
    use super::keys::NodeSecret;
    let node = |n: u8| NodeSecret::from_bytes([n; 32]).expect("1 and 2 are valid secret keys");
    let ours = ChannelKeys::derive(&node(1), &[seed; 32]);
    let theirs = ChannelKeys::derive(&node(2), &[seed; 32]);
    let ctx = funding_key_agg(&ours.funding_pubkey(), &theirs.funding_pubkey())?;
    let holder_nonce = public_nonce(&theirs, NonceSlot::OwnCommitment(0), &[]);
    sign_as_counterparty(
        &ctx,
        &ours,
        [seed; 32],
        &holder_nonce,
        NonceSlot::PeerCommitment(0),
        &[],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_benchmark_makes_a_partial_signature_that_verifies() {
        let signature = partial_signature_for_benchmark(3).unwrap();
        let node = |n: u8| crate::crypto::keys::NodeSecret::from_bytes([n; 32]).unwrap();
        let ours = ChannelKeys::derive(&node(1), &[3; 32]);
        let theirs = ChannelKeys::derive(&node(2), &[3; 32]);
        let ctx = funding_key_agg(&ours.funding_pubkey(), &theirs.funding_pubkey()).unwrap();
        let session = SigningSession {
            ctx: &ctx,
            message: [3; 32],
            holder_nonce: public_nonce(&theirs, NonceSlot::OwnCommitment(0), &[]),
            signer_nonce: public_nonce(&ours, NonceSlot::PeerCommitment(0), &[]),
        };
        session.verify(&signature, &ours.funding_pubkey(), false).unwrap();
        assert!(session.verify(&signature, &theirs.funding_pubkey(), false).is_err());
    }
    use crate::crypto::keys::NodeSecret;

    fn two_parties() -> (ChannelKeys, ChannelKeys) {
        let a = ChannelKeys::derive(&NodeSecret::from_bytes([1; 32]).unwrap(), &[10; 32]);
        let b = ChannelKeys::derive(&NodeSecret::from_bytes([2; 32]).unwrap(), &[20; 32]);
        (a, b)
    }

    /// The memo answers what a fresh aggregation would, for each order of
    /// the keys (order matters to MuSig2), and stays bounded.
    #[test]
    fn remembered_aggregations_are_the_fresh_ones_and_bounded() {
        let (a, b) = two_parties();
        let keys = [a.funding_pubkey(), b.funding_pubkey()];
        let fresh = |keys: &[Pubkey]| {
            let points: Vec<Point> = keys.iter().map(|key| parse_pubkey(key).unwrap()).collect();
            xonly_key(&KeyAggContext::new(points).unwrap())
        };
        let reversed = [keys[1], keys[0]];
        for _ in 0..2 {
            assert_eq!(xonly_key(&key_agg(&keys).unwrap()), fresh(&keys));
            assert_eq!(xonly_key(&key_agg(&reversed).unwrap()), fresh(&reversed));
        }
        assert_ne!(fresh(&keys), fresh(&reversed));

        let node = NodeSecret::from_bytes([3; 32]).unwrap();
        for seed in 0..=KEY_AGG_MEMO as u16 {
            let mut bytes = [0; 32];
            bytes[..2].copy_from_slice(&seed.to_le_bytes());
            key_agg(&[ChannelKeys::derive(&node, &bytes).funding_pubkey()]).unwrap();
        }
        assert!(KEY_AGG.with(|memo| memo.borrow().len()) <= KEY_AGG_MEMO);
        assert_eq!(xonly_key(&key_agg(&keys).unwrap()), fresh(&keys));
    }

    #[test]
    fn signing_with_one_nonce_derivation_signs_as_the_session_does() {
        let (holder, signer) = two_parties();
        let ctx = funding_key_agg(&holder.funding_pubkey(), &signer.funding_pubkey()).unwrap();
        let message = [7u8; 32];
        let holder_nonce = public_nonce(&holder, NonceSlot::OwnCommitment(0), &[]);
        let binding = peer_commitment_binding(&message, &holder_nonce);
        let slot = NonceSlot::PeerCommitment(0);
        let session = SigningSession {
            ctx: &ctx,
            message,
            holder_nonce,
            signer_nonce: public_nonce(&signer, slot, &binding),
        };
        let once = sign_as_counterparty(&ctx, &signer, message, &holder_nonce, slot, &binding).unwrap();
        assert_eq!(once, session.sign_as_counterparty(&signer, slot, &binding).unwrap());
        session.verify(&once, &signer.funding_pubkey(), false).unwrap();
    }

    #[test]
    fn funding_key_is_order_independent() {
        let (a, b) = two_parties();
        let ab = funding_key_agg(&a.funding_pubkey(), &b.funding_pubkey()).unwrap();
        let ba = funding_key_agg(&b.funding_pubkey(), &a.funding_pubkey()).unwrap();
        assert_eq!(funding_lock_args(&ab), funding_lock_args(&ba));
    }

    #[test]
    fn counterparty_signature_verifies_and_aggregates_into_a_bip340_signature() {
        let (holder, signer) = two_parties();
        let ctx = funding_key_agg(&holder.funding_pubkey(), &signer.funding_pubkey()).unwrap();
        let message = [42u8; 32];
        let holder_nonce = public_nonce(&holder, NonceSlot::OwnCommitment(0), &[]);
        let binding = peer_commitment_binding(&message, &holder_nonce);
        let signer_nonce = public_nonce(&signer, NonceSlot::PeerCommitment(0), &binding);
        let session = SigningSession {
            ctx: &ctx,
            message,
            holder_nonce,
            signer_nonce,
        };

        let counterparty = session
            .sign_as_counterparty(&signer, NonceSlot::PeerCommitment(0), &binding)
            .unwrap();
        session.verify(&counterparty, &signer.funding_pubkey(), false).unwrap();
        // Signing again (as after a restart) gives the very same signature.
        assert_eq!(
            counterparty,
            session
                .sign_as_counterparty(&signer, NonceSlot::PeerCommitment(0), &binding)
                .unwrap()
        );

        let own = session.sign_as_holder(&holder, 0).unwrap();
        session.verify(&own, &holder.funding_pubkey(), true).unwrap();
        session.aggregate(&own, &counterparty).unwrap();
    }

    #[test]
    fn a_signature_over_another_message_is_rejected() {
        let (holder, signer) = two_parties();
        let ctx = funding_key_agg(&holder.funding_pubkey(), &signer.funding_pubkey()).unwrap();
        let holder_nonce = public_nonce(&holder, NonceSlot::OwnCommitment(0), &[]);
        let binding = peer_commitment_binding(&[1; 32], &holder_nonce);
        let signer_nonce = public_nonce(&signer, NonceSlot::PeerCommitment(0), &binding);
        let session = SigningSession {
            ctx: &ctx,
            message: [1; 32],
            holder_nonce,
            signer_nonce,
        };
        let signature = session
            .sign_as_counterparty(&signer, NonceSlot::PeerCommitment(0), &binding)
            .unwrap();
        let other = SigningSession {
            message: [2; 32],
            ..session
        };
        assert_eq!(
            other.verify(&signature, &signer.funding_pubkey(), false),
            Err(MusigError::BadPartialSignature)
        );
    }

    #[test]
    fn peer_commitment_nonce_changes_with_its_binding() {
        let (_, signer) = two_parties();
        let one = public_nonce(&signer, NonceSlot::PeerCommitment(0), &[1]);
        let two = public_nonce(&signer, NonceSlot::PeerCommitment(0), &[2]);
        let own = public_nonce(&signer, NonceSlot::OwnCommitment(0), &[1]);
        assert_ne!(one, two);
        assert_ne!(one, own);
    }
}
