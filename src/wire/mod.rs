//! Fiber's peer messages for opening a channel, byte-exact with fiber-types 0.10.0-rc1.
//!
//! Only the funding subset of Fiber's `FiberMessage` union is modelled: what a
//! browser needs to open, fund and re-establish a channel. The other messages
//! are recognised by id and refused with [`WireError::UnsupportedMessage`], so a
//! peer speaking about TLCs or gossip gets a clear answer instead of garbage.
//!
//! Field names and order follow `fiber.mol`; decoding is as strict as molecule's
//! `verify(bytes, false)`, and every decoded message re-encodes to the same bytes.
//!
//! ```
//! use fiber_funding::primitives::Hash256;
//! use fiber_funding::wire::{ChannelReady, FiberMessage};
//!
//! let ready = FiberMessage::ChannelReady(ChannelReady { channel_id: Hash256([7; 32]) });
//! let bytes = ready.encode();
//! assert_eq!(&bytes[..4], &10u32.to_le_bytes()); // ChannelReady is item 10 of the union
//! assert_eq!(FiberMessage::decode(&bytes), Ok(ready));
//! ```

mod molecule;

pub use molecule::{decode_checked, CheckedDecode};

use ckb_types::packed;
use ckb_types::prelude::Entity;

use crate::primitives::{ChannelId, Hash256, PubNonceBytes, Pubkey};

use self::molecule::{
    decode_array, decode_byte, decode_bytes, decode_bytes_vec, decode_option, decode_script, decode_script_opt,
    decode_table, decode_transaction, decode_uint128, decode_uint64, decode_union, encode_bytes, encode_bytes_vec,
    encode_option, encode_script_opt, encode_table, encode_union, StructFields,
};

/// `OpenChannel.channel_flags` bit: announce the channel to the network.
pub const CHANNEL_FLAG_PUBLIC: u8 = 1;
/// `OpenChannel.channel_flags` bit: the opener's funding comes from an external
/// wallet, which signs the funding tx itself.
pub const CHANNEL_FLAG_EXTERNAL_FUNDING: u8 = 1 << 2;

/// Why bytes from a peer are not a message we can use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("{what}: needs {needed} bytes, only {got} present")]
    Truncated {
        what: &'static str,
        needed: usize,
        got: usize,
    },
    #[error("{what}: {got} bytes where exactly {expected} belong")]
    WrongLength {
        what: &'static str,
        expected: usize,
        got: usize,
    },
    #[error("{what}: malformed header: {reason}")]
    BadHeader { what: &'static str, reason: String },
    #[error("{what}: expected {expected} fields, got {got}")]
    WrongFieldCount {
        what: &'static str,
        expected: usize,
        got: usize,
    },
    #[error("unknown FiberMessage item id {0}")]
    UnknownMessageId(u32),
    #[error("FiberMessage {name} (item id {id}) is not part of the funding protocol")]
    UnsupportedMessage { id: u32, name: &'static str },
    #[error("{what}: {reason}")]
    InvalidField { what: &'static str, reason: String },
}

/// Every item of fiber.mol's `union FiberMessage`; the position is the wire id.
const FIBER_MESSAGE_ITEMS: [&str; 19] = [
    "Init",
    "OpenChannel",
    "AcceptChannel",
    "TxSignatures",
    "TxUpdate",
    "TxComplete",
    "TxAbort",
    "TxInitRBF",
    "TxAckRBF",
    "CommitmentSigned",
    "ChannelReady",
    "UpdateTlcInfo",
    "AddTlc",
    "RemoveTlc",
    "RevokeAndAck",
    "Shutdown",
    "ClosingSigned",
    "ReestablishChannel",
    "AnnouncementSignatures",
];

/// The funding subset of Fiber's `FiberMessage` union.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FiberMessage {
    OpenChannel(OpenChannel),
    AcceptChannel(AcceptChannel),
    TxUpdate(TxUpdate),
    TxComplete(TxComplete),
    CommitmentSigned(CommitmentSigned),
    TxSignatures(TxSignatures),
    ChannelReady(ChannelReady),
    TxAbort(TxAbort),
    ReestablishChannel(ReestablishChannel),
    Shutdown(Shutdown),
    ClosingSigned(ClosingSigned),
}

impl FiberMessage {
    /// The `FiberMessage` union bytes, as Fiber sends them to a peer.
    pub fn encode(&self) -> Vec<u8> {
        let (id, body) = match self {
            Self::OpenChannel(m) => (OpenChannel::ID, m.encode_body()),
            Self::AcceptChannel(m) => (AcceptChannel::ID, m.encode_body()),
            Self::TxUpdate(m) => (TxUpdate::ID, m.encode_body()),
            Self::TxComplete(m) => (TxComplete::ID, m.encode_body()),
            Self::CommitmentSigned(m) => (CommitmentSigned::ID, m.encode_body()),
            Self::TxSignatures(m) => (TxSignatures::ID, m.encode_body()),
            Self::ChannelReady(m) => (ChannelReady::ID, m.encode_body()),
            Self::TxAbort(m) => (TxAbort::ID, m.encode_body()),
            Self::ReestablishChannel(m) => (ReestablishChannel::ID, m.encode_body()),
            Self::Shutdown(m) => (Shutdown::ID, m.encode_body()),
            Self::ClosingSigned(m) => (ClosingSigned::ID, m.encode_body()),
        };
        encode_union(id, &body)
    }

    /// Reads one whole `FiberMessage`; trailing bytes are an error.
    pub fn decode(bytes: &[u8]) -> Result<Self, WireError> {
        let (id, body) = decode_union("FiberMessage", bytes)?;
        match id {
            OpenChannel::ID => OpenChannel::decode_body(body).map(Self::OpenChannel),
            AcceptChannel::ID => AcceptChannel::decode_body(body).map(Self::AcceptChannel),
            TxUpdate::ID => TxUpdate::decode_body(body).map(Self::TxUpdate),
            TxComplete::ID => TxComplete::decode_body(body).map(Self::TxComplete),
            CommitmentSigned::ID => CommitmentSigned::decode_body(body).map(Self::CommitmentSigned),
            TxSignatures::ID => TxSignatures::decode_body(body).map(Self::TxSignatures),
            ChannelReady::ID => ChannelReady::decode_body(body).map(Self::ChannelReady),
            TxAbort::ID => TxAbort::decode_body(body).map(Self::TxAbort),
            ReestablishChannel::ID => ReestablishChannel::decode_body(body).map(Self::ReestablishChannel),
            Shutdown::ID => Shutdown::decode_body(body).map(Self::Shutdown),
            ClosingSigned::ID => ClosingSigned::decode_body(body).map(Self::ClosingSigned),
            _ => match FIBER_MESSAGE_ITEMS.get(id as usize) {
                Some(name) => Err(WireError::UnsupportedMessage { id, name }),
                None => Err(WireError::UnknownMessageId(id)),
            },
        }
    }

    /// The channel the message is about (the temporary id in `OpenChannel`).
    pub fn channel_id(&self) -> ChannelId {
        match self {
            Self::OpenChannel(m) => m.channel_id,
            Self::AcceptChannel(m) => m.channel_id,
            Self::TxUpdate(m) => m.channel_id,
            Self::TxComplete(m) => m.channel_id,
            Self::CommitmentSigned(m) => m.channel_id,
            Self::TxSignatures(m) => m.channel_id,
            Self::ChannelReady(m) => m.channel_id,
            Self::TxAbort(m) => m.channel_id,
            Self::ReestablishChannel(m) => m.channel_id,
            Self::Shutdown(m) => m.channel_id,
            Self::ClosingSigned(m) => m.channel_id,
        }
    }

    /// The item name in fiber.mol, e.g. `"OpenChannel"`, for logs and events.
    pub fn name(&self) -> &'static str {
        match self {
            Self::OpenChannel(_) => OpenChannel::NAME,
            Self::AcceptChannel(_) => AcceptChannel::NAME,
            Self::TxUpdate(_) => TxUpdate::NAME,
            Self::TxComplete(_) => TxComplete::NAME,
            Self::CommitmentSigned(_) => CommitmentSigned::NAME,
            Self::TxSignatures(_) => TxSignatures::NAME,
            Self::ChannelReady(_) => ChannelReady::NAME,
            Self::TxAbort(_) => TxAbort::NAME,
            Self::ReestablishChannel(_) => ReestablishChannel::NAME,
            Self::Shutdown(_) => Shutdown::NAME,
            Self::ClosingSigned(_) => ClosingSigned::NAME,
        }
    }
}

/// One item of the `FiberMessage` union: its wire id and its body layout.
trait UnionItem: Sized {
    const ID: u32;
    const NAME: &'static str;
    fn encode_body(&self) -> Vec<u8>;
    fn decode_body(bytes: &[u8]) -> Result<Self, WireError>;
}

/// The opener proposes a channel (`table OpenChannel`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenChannel {
    pub chain_hash: Hash256,
    /// Temporary id, derived from the opener's tlc basepoint.
    pub channel_id: ChannelId,
    pub funding_udt_type_script: Option<packed::Script>,
    pub funding_amount: u128,
    pub shutdown_script: packed::Script,
    pub reserved_ckb_amount: u64,
    pub funding_fee_rate: u64,
    pub commitment_fee_rate: u64,
    pub max_tlc_value_in_flight: u128,
    pub max_tlc_number_in_flight: u64,
    pub commitment_delay_epoch: u64,
    pub funding_pubkey: Pubkey,
    pub tlc_basepoint: Pubkey,
    pub first_per_commitment_point: Pubkey,
    pub second_per_commitment_point: Pubkey,
    pub channel_announcement_nonce: Option<PubNonceBytes>,
    pub next_commitment_nonce: PubNonceBytes,
    pub next_revocation_nonce: PubNonceBytes,
    /// [`CHANNEL_FLAG_PUBLIC`], [`CHANNEL_FLAG_EXTERNAL_FUNDING`].
    pub channel_flags: u8,
}

impl UnionItem for OpenChannel {
    const ID: u32 = 1;
    const NAME: &'static str = "OpenChannel";

    fn encode_body(&self) -> Vec<u8> {
        encode_table(&[
            &self.chain_hash.0,
            &self.channel_id.0,
            encode_script_opt(&self.funding_udt_type_script),
            &self.funding_amount.to_le_bytes(),
            self.shutdown_script.as_slice(),
            &self.reserved_ckb_amount.to_le_bytes(),
            &self.funding_fee_rate.to_le_bytes(),
            &self.commitment_fee_rate.to_le_bytes(),
            &self.max_tlc_value_in_flight.to_le_bytes(),
            &self.max_tlc_number_in_flight.to_le_bytes(),
            &self.commitment_delay_epoch.to_le_bytes(),
            &self.funding_pubkey.0,
            &self.tlc_basepoint.0,
            &self.first_per_commitment_point.0,
            &self.second_per_commitment_point.0,
            encode_option(self.channel_announcement_nonce.as_ref().map(|n| &n.0[..])),
            &self.next_commitment_nonce.0,
            &self.next_revocation_nonce.0,
            &[self.channel_flags],
        ])
    }

    fn decode_body(bytes: &[u8]) -> Result<Self, WireError> {
        // One binding per field, in schema order; rustfmt would put all 19 on one line.
        #[rustfmt::skip]
        let [
            chain_hash,
            channel_id,
            funding_udt_type_script,
            funding_amount,
            shutdown_script,
            reserved_ckb_amount,
            funding_fee_rate,
            commitment_fee_rate,
            max_tlc_value_in_flight,
            max_tlc_number_in_flight,
            commitment_delay_epoch,
            funding_pubkey,
            tlc_basepoint,
            first_per_commitment_point,
            second_per_commitment_point,
            channel_announcement_nonce,
            next_commitment_nonce,
            next_revocation_nonce,
            channel_flags,
        ] = decode_table::<19>(Self::NAME, bytes)?;
        Ok(Self {
            chain_hash: Hash256(decode_array("OpenChannel.chain_hash", chain_hash)?),
            channel_id: Hash256(decode_array("OpenChannel.channel_id", channel_id)?),
            funding_udt_type_script: decode_script_opt("OpenChannel.funding_udt_type_script", funding_udt_type_script)?,
            funding_amount: decode_uint128("OpenChannel.funding_amount", funding_amount)?,
            shutdown_script: decode_script("OpenChannel.shutdown_script", shutdown_script)?,
            reserved_ckb_amount: decode_uint64("OpenChannel.reserved_ckb_amount", reserved_ckb_amount)?,
            funding_fee_rate: decode_uint64("OpenChannel.funding_fee_rate", funding_fee_rate)?,
            commitment_fee_rate: decode_uint64("OpenChannel.commitment_fee_rate", commitment_fee_rate)?,
            max_tlc_value_in_flight: decode_uint128("OpenChannel.max_tlc_value_in_flight", max_tlc_value_in_flight)?,
            max_tlc_number_in_flight: decode_uint64("OpenChannel.max_tlc_number_in_flight", max_tlc_number_in_flight)?,
            commitment_delay_epoch: decode_uint64("OpenChannel.commitment_delay_epoch", commitment_delay_epoch)?,
            funding_pubkey: Pubkey(decode_array("OpenChannel.funding_pubkey", funding_pubkey)?),
            tlc_basepoint: Pubkey(decode_array("OpenChannel.tlc_basepoint", tlc_basepoint)?),
            first_per_commitment_point: Pubkey(decode_array(
                "OpenChannel.first_per_commitment_point",
                first_per_commitment_point,
            )?),
            second_per_commitment_point: Pubkey(decode_array(
                "OpenChannel.second_per_commitment_point",
                second_per_commitment_point,
            )?),
            channel_announcement_nonce: decode_option(channel_announcement_nonce)
                .map(|nonce| decode_array("OpenChannel.channel_announcement_nonce", nonce))
                .transpose()?
                .map(PubNonceBytes),
            next_commitment_nonce: PubNonceBytes(decode_array(
                "OpenChannel.next_commitment_nonce",
                next_commitment_nonce,
            )?),
            next_revocation_nonce: PubNonceBytes(decode_array(
                "OpenChannel.next_revocation_nonce",
                next_revocation_nonce,
            )?),
            channel_flags: decode_byte("OpenChannel.channel_flags", channel_flags)?,
        })
    }
}

/// The acceptor agrees to a channel (`table AcceptChannel`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcceptChannel {
    /// The real channel id, from both parties' tlc basepoints.
    pub channel_id: ChannelId,
    pub funding_amount: u128,
    pub shutdown_script: packed::Script,
    pub reserved_ckb_amount: u64,
    pub max_tlc_value_in_flight: u128,
    pub max_tlc_number_in_flight: u64,
    pub funding_pubkey: Pubkey,
    pub tlc_basepoint: Pubkey,
    pub first_per_commitment_point: Pubkey,
    pub second_per_commitment_point: Pubkey,
    pub channel_announcement_nonce: Option<PubNonceBytes>,
    pub next_commitment_nonce: PubNonceBytes,
    pub next_revocation_nonce: PubNonceBytes,
}

impl UnionItem for AcceptChannel {
    const ID: u32 = 2;
    const NAME: &'static str = "AcceptChannel";

    fn encode_body(&self) -> Vec<u8> {
        encode_table(&[
            &self.channel_id.0,
            &self.funding_amount.to_le_bytes(),
            self.shutdown_script.as_slice(),
            &self.reserved_ckb_amount.to_le_bytes(),
            &self.max_tlc_value_in_flight.to_le_bytes(),
            &self.max_tlc_number_in_flight.to_le_bytes(),
            &self.funding_pubkey.0,
            &self.tlc_basepoint.0,
            &self.first_per_commitment_point.0,
            &self.second_per_commitment_point.0,
            encode_option(self.channel_announcement_nonce.as_ref().map(|n| &n.0[..])),
            &self.next_commitment_nonce.0,
            &self.next_revocation_nonce.0,
        ])
    }

    fn decode_body(bytes: &[u8]) -> Result<Self, WireError> {
        #[rustfmt::skip]
        let [
            channel_id,
            funding_amount,
            shutdown_script,
            reserved_ckb_amount,
            max_tlc_value_in_flight,
            max_tlc_number_in_flight,
            funding_pubkey,
            tlc_basepoint,
            first_per_commitment_point,
            second_per_commitment_point,
            channel_announcement_nonce,
            next_commitment_nonce,
            next_revocation_nonce,
        ] = decode_table::<13>(Self::NAME, bytes)?;
        Ok(Self {
            channel_id: Hash256(decode_array("AcceptChannel.channel_id", channel_id)?),
            funding_amount: decode_uint128("AcceptChannel.funding_amount", funding_amount)?,
            shutdown_script: decode_script("AcceptChannel.shutdown_script", shutdown_script)?,
            reserved_ckb_amount: decode_uint64("AcceptChannel.reserved_ckb_amount", reserved_ckb_amount)?,
            max_tlc_value_in_flight: decode_uint128("AcceptChannel.max_tlc_value_in_flight", max_tlc_value_in_flight)?,
            max_tlc_number_in_flight: decode_uint64(
                "AcceptChannel.max_tlc_number_in_flight",
                max_tlc_number_in_flight,
            )?,
            funding_pubkey: Pubkey(decode_array("AcceptChannel.funding_pubkey", funding_pubkey)?),
            tlc_basepoint: Pubkey(decode_array("AcceptChannel.tlc_basepoint", tlc_basepoint)?),
            first_per_commitment_point: Pubkey(decode_array(
                "AcceptChannel.first_per_commitment_point",
                first_per_commitment_point,
            )?),
            second_per_commitment_point: Pubkey(decode_array(
                "AcceptChannel.second_per_commitment_point",
                second_per_commitment_point,
            )?),
            channel_announcement_nonce: decode_option(channel_announcement_nonce)
                .map(|nonce| decode_array("AcceptChannel.channel_announcement_nonce", nonce))
                .transpose()?
                .map(PubNonceBytes),
            next_commitment_nonce: PubNonceBytes(decode_array(
                "AcceptChannel.next_commitment_nonce",
                next_commitment_nonce,
            )?),
            next_revocation_nonce: PubNonceBytes(decode_array(
                "AcceptChannel.next_revocation_nonce",
                next_revocation_nonce,
            )?),
        })
    }
}

/// The funding tx as one side proposes it (`table TxUpdate`).
#[derive(Debug, Clone)]
pub struct TxUpdate {
    pub channel_id: ChannelId,
    pub tx: packed::Transaction,
}

// `packed::Transaction` has no `PartialEq`; its verified bytes are canonical,
// so comparing them is comparing the transactions.
impl PartialEq for TxUpdate {
    fn eq(&self, other: &Self) -> bool {
        self.channel_id == other.channel_id && self.tx.as_slice() == other.tx.as_slice()
    }
}

impl Eq for TxUpdate {}

impl UnionItem for TxUpdate {
    const ID: u32 = 4;
    const NAME: &'static str = "TxUpdate";

    fn encode_body(&self) -> Vec<u8> {
        encode_table(&[&self.channel_id.0, self.tx.as_slice()])
    }

    fn decode_body(bytes: &[u8]) -> Result<Self, WireError> {
        let [channel_id, tx] = decode_table::<2>(Self::NAME, bytes)?;
        Ok(Self {
            channel_id: Hash256(decode_array("TxUpdate.channel_id", channel_id)?),
            tx: decode_transaction("TxUpdate.tx", tx)?,
        })
    }
}

/// A side has no more changes to the funding tx (`struct TxComplete`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxComplete {
    pub channel_id: ChannelId,
    pub next_commitment_nonce: PubNonceBytes,
}

impl UnionItem for TxComplete {
    const ID: u32 = 5;
    const NAME: &'static str = "TxComplete";

    fn encode_body(&self) -> Vec<u8> {
        [&self.channel_id.0[..], &self.next_commitment_nonce.0].concat()
    }

    fn decode_body(bytes: &[u8]) -> Result<Self, WireError> {
        let mut fields = StructFields::new(Self::NAME, bytes, 32 + 66)?;
        let message = Self {
            channel_id: Hash256(fields.take()?),
            next_commitment_nonce: PubNonceBytes(fields.take()?),
        };
        fields.finish()?;
        Ok(message)
    }
}

/// Partial signature for the first commitment tx (`struct CommitmentSigned`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitmentSigned {
    pub channel_id: ChannelId,
    /// A MuSig2 partial signature, declared as `Byte32` in fiber.mol.
    pub funding_tx_partial_signature: [u8; 32],
    pub next_commitment_nonce: PubNonceBytes,
}

impl UnionItem for CommitmentSigned {
    const ID: u32 = 9;
    const NAME: &'static str = "CommitmentSigned";

    fn encode_body(&self) -> Vec<u8> {
        [
            &self.channel_id.0[..],
            &self.funding_tx_partial_signature,
            &self.next_commitment_nonce.0,
        ]
        .concat()
    }

    fn decode_body(bytes: &[u8]) -> Result<Self, WireError> {
        let mut fields = StructFields::new(Self::NAME, bytes, 32 + 32 + 66)?;
        let message = Self {
            channel_id: Hash256(fields.take()?),
            funding_tx_partial_signature: fields.take()?,
            next_commitment_nonce: PubNonceBytes(fields.take()?),
        };
        fields.finish()?;
        Ok(message)
    }
}

/// Witnesses of one side's funding inputs (`table TxSignatures`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxSignatures {
    pub channel_id: ChannelId,
    pub witnesses: Vec<Vec<u8>>,
}

impl UnionItem for TxSignatures {
    const ID: u32 = 3;
    const NAME: &'static str = "TxSignatures";

    fn encode_body(&self) -> Vec<u8> {
        encode_table(&[&self.channel_id.0, &encode_bytes_vec(&self.witnesses)])
    }

    fn decode_body(bytes: &[u8]) -> Result<Self, WireError> {
        let [channel_id, witnesses] = decode_table::<2>(Self::NAME, bytes)?;
        Ok(Self {
            channel_id: Hash256(decode_array("TxSignatures.channel_id", channel_id)?),
            witnesses: decode_bytes_vec("TxSignatures.witnesses", witnesses)?,
        })
    }
}

/// The funding tx is confirmed and the channel usable (`struct ChannelReady`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelReady {
    pub channel_id: ChannelId,
}

impl UnionItem for ChannelReady {
    const ID: u32 = 10;
    const NAME: &'static str = "ChannelReady";

    fn encode_body(&self) -> Vec<u8> {
        self.channel_id.0.to_vec()
    }

    fn decode_body(bytes: &[u8]) -> Result<Self, WireError> {
        let mut fields = StructFields::new(Self::NAME, bytes, 32)?;
        let message = Self {
            channel_id: Hash256(fields.take()?),
        };
        fields.finish()?;
        Ok(message)
    }
}

/// Gives up on the funding negotiation (`table TxAbort`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxAbort {
    pub channel_id: ChannelId,
    /// Free-form reason; Fiber sends UTF-8 text, but nothing enforces it.
    pub message: Vec<u8>,
}

impl UnionItem for TxAbort {
    const ID: u32 = 6;
    const NAME: &'static str = "TxAbort";

    fn encode_body(&self) -> Vec<u8> {
        encode_table(&[&self.channel_id.0, &encode_bytes(&self.message)])
    }

    fn decode_body(bytes: &[u8]) -> Result<Self, WireError> {
        let [channel_id, message] = decode_table::<2>(Self::NAME, bytes)?;
        Ok(Self {
            channel_id: Hash256(decode_array("TxAbort.channel_id", channel_id)?),
            message: decode_bytes("TxAbort.message", message)?.to_vec(),
        })
    }
}

/// Sent on reconnect so both sides agree where they left off (`table ReestablishChannel`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReestablishChannel {
    pub channel_id: ChannelId,
    pub local_commitment_number: u64,
    pub remote_commitment_number: u64,
}

impl UnionItem for ReestablishChannel {
    const ID: u32 = 17;
    const NAME: &'static str = "ReestablishChannel";

    fn encode_body(&self) -> Vec<u8> {
        encode_table(&[
            &self.channel_id.0,
            &self.local_commitment_number.to_le_bytes(),
            &self.remote_commitment_number.to_le_bytes(),
        ])
    }

    fn decode_body(bytes: &[u8]) -> Result<Self, WireError> {
        let [channel_id, local_commitment_number, remote_commitment_number] = decode_table::<3>(Self::NAME, bytes)?;
        Ok(Self {
            channel_id: Hash256(decode_array("ReestablishChannel.channel_id", channel_id)?),
            local_commitment_number: decode_uint64(
                "ReestablishChannel.local_commitment_number",
                local_commitment_number,
            )?,
            remote_commitment_number: decode_uint64(
                "ReestablishChannel.remote_commitment_number",
                remote_commitment_number,
            )?,
        })
    }
}

/// A side wants to close the channel cooperatively (`table Shutdown`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shutdown {
    pub channel_id: ChannelId,
    /// Shannons per 1,000 bytes this side pays its closing fee at (0: the
    /// responder leaves the fee to the side that asked to close).
    pub fee_rate: u64,
    /// Where this side's balance goes.
    pub close_script: packed::Script,
}

impl UnionItem for Shutdown {
    const ID: u32 = 15;
    const NAME: &'static str = "Shutdown";

    fn encode_body(&self) -> Vec<u8> {
        encode_table(&[
            &self.channel_id.0,
            &self.fee_rate.to_le_bytes(),
            self.close_script.as_slice(),
        ])
    }

    fn decode_body(bytes: &[u8]) -> Result<Self, WireError> {
        let [channel_id, fee_rate, close_script] = decode_table::<3>(Self::NAME, bytes)?;
        Ok(Self {
            channel_id: Hash256(decode_array("Shutdown.channel_id", channel_id)?),
            fee_rate: decode_uint64("Shutdown.fee_rate", fee_rate)?,
            close_script: decode_script("Shutdown.close_script", close_script)?,
        })
    }
}

/// A side's MuSig2 partial signature of the closing tx (`struct ClosingSigned`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClosingSigned {
    pub channel_id: ChannelId,
    /// Declared as `Byte32` in fiber.mol.
    pub partial_signature: [u8; 32],
}

impl UnionItem for ClosingSigned {
    const ID: u32 = 16;
    const NAME: &'static str = "ClosingSigned";

    fn encode_body(&self) -> Vec<u8> {
        [&self.channel_id.0[..], &self.partial_signature].concat()
    }

    fn decode_body(bytes: &[u8]) -> Result<Self, WireError> {
        let mut fields = StructFields::new(Self::NAME, bytes, 32 + 32)?;
        let message = Self {
            channel_id: Hash256(fields.take()?),
            partial_signature: fields.take()?,
        };
        fields.finish()?;
        Ok(message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_item<T: UnionItem>() {
        assert_eq!(FIBER_MESSAGE_ITEMS[T::ID as usize], T::NAME);
    }

    #[test]
    fn item_ids_are_positions_in_the_fiber_message_union() {
        assert_item::<OpenChannel>();
        assert_item::<AcceptChannel>();
        assert_item::<TxSignatures>();
        assert_item::<TxUpdate>();
        assert_item::<TxComplete>();
        assert_item::<TxAbort>();
        assert_item::<CommitmentSigned>();
        assert_item::<ChannelReady>();
        assert_item::<ReestablishChannel>();
    }

    #[test]
    fn messages_outside_the_subset_are_named_not_decoded() {
        let add_tlc = encode_union(12, b"not even a table");
        assert_eq!(
            FiberMessage::decode(&add_tlc),
            Err(WireError::UnsupportedMessage { id: 12, name: "AddTlc" })
        );
        assert_eq!(
            FiberMessage::decode(&encode_union(19, &[])),
            Err(WireError::UnknownMessageId(19))
        );
    }

    #[test]
    fn struct_messages_reject_trailing_bytes() {
        let mut bytes = FiberMessage::ChannelReady(ChannelReady {
            channel_id: Hash256([1; 32]),
        })
        .encode();
        bytes.push(0);
        assert_eq!(
            FiberMessage::decode(&bytes),
            Err(WireError::WrongLength {
                what: "ChannelReady",
                expected: 32,
                got: 33
            })
        );
    }

    #[test]
    fn reestablish_channel_is_a_three_field_table() {
        let message = FiberMessage::ReestablishChannel(ReestablishChannel {
            channel_id: Hash256([2; 32]),
            local_commitment_number: 1,
            remote_commitment_number: 0x0102,
        });
        let bytes = message.encode();
        let mut expected = vec![17, 0, 0, 0, 64, 0, 0, 0, 16, 0, 0, 0, 48, 0, 0, 0, 56, 0, 0, 0];
        expected.extend_from_slice(&[2; 32]);
        expected.extend_from_slice(&1u64.to_le_bytes());
        expected.extend_from_slice(&0x0102u64.to_le_bytes());
        assert_eq!(bytes, expected);
        assert_eq!(FiberMessage::decode(&bytes), Ok(message));
    }
}
