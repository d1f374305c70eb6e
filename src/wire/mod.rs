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
    decode_array, decode_bytes, decode_bytes_vec, decode_option, decode_script, decode_table, decode_transaction,
    decode_union, encode_bytes, encode_bytes_vec, encode_option, encode_table, encode_union, StructFields,
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

/// Declares one message of the `FiberMessage` union from a single field list
/// in fiber.mol's order: the struct, its union item id, and the codec of its
/// body. A `table` is a header of offsets then the fields; a `struct` is its
/// fixed-size fields back to back. Each field's type says how it is encoded
/// and checked (see [`Field`]); errors name the field as `Message.field`.
macro_rules! fiber_message {
    (
        $(#[$attr:meta])*
        pub $layout:tt $name:ident = $id:literal {
            $($(#[$field_attr:meta])* pub $field:ident: $type:ty,)*
        }
    ) => {
        $(#[$attr])*
        pub struct $name {
            $($(#[$field_attr])* pub $field: $type,)*
        }

        impl UnionItem for $name {
            const ID: u32 = $id;
            const NAME: &'static str = stringify!($name);

            fn encode_body(&self) -> Vec<u8> {
                fiber_message!(@encode $layout [$(Field::encode(&self.$field).as_ref()),*])
            }

            fn decode_body(bytes: &[u8]) -> Result<Self, WireError> {
                fiber_message!(@decode $layout $name bytes { $($field: $type,)* })
            }
        }
    };

    (@encode table $fields:expr) => {
        encode_table(&$fields)
    };
    (@encode struct $fields:expr) => {
        $fields.concat()
    };

    (@decode table $name:ident $bytes:ident { $($field:ident: $type:ty,)* }) => {{
        let [$($field),*] = decode_table(Self::NAME, $bytes)?;
        Ok(Self {
            $($field: Field::decode(concat!(stringify!($name), ".", stringify!($field)), $field)?,)*
        })
    }};
    (@decode struct $name:ident $bytes:ident { $($field:ident: $type:ty,)* }) => {{
        // The whole size first, so a short or long struct is reported as such.
        let mut fields = StructFields::new(Self::NAME, $bytes, 0 $(+ <$type as FixedField>::SIZE)*)?;
        let message = Self {
            $($field: FixedField::take(&mut fields)?,)*
        };
        fields.finish()?;
        Ok(message)
    }};
}

/// How a field is written in molecule and read back from a peer: the Rust
/// type of a message field picks its molecule type.
trait Field: Sized {
    fn encode(&self) -> impl AsRef<[u8]>;
    /// Reads the field from exactly its own bytes; `what` names it in errors.
    fn decode(what: &'static str, bytes: &[u8]) -> Result<Self, WireError>;
}

/// A field of fixed size, the only kind a molecule `struct` holds.
trait FixedField: Field {
    const SIZE: usize;
    /// Reads the next field of a struct whose whole size is already checked.
    fn take(fields: &mut StructFields<'_>) -> Result<Self, WireError>;
}

/// `array`s such as `Byte32`: exactly `N` bytes.
impl<const N: usize> Field for [u8; N] {
    fn encode(&self) -> impl AsRef<[u8]> {
        self
    }

    fn decode(what: &'static str, bytes: &[u8]) -> Result<Self, WireError> {
        decode_array(what, bytes)
    }
}

impl<const N: usize> FixedField for [u8; N] {
    const SIZE: usize = N;

    fn take(fields: &mut StructFields<'_>) -> Result<Self, WireError> {
        fields.take()
    }
}

/// The byte-array newtypes (`Byte32`, `Pubkey`, `PubNonce` in fiber.mol).
macro_rules! byte_array_field {
    ($($newtype:ident),*) => {$(
        impl Field for $newtype {
            fn encode(&self) -> impl AsRef<[u8]> {
                &self.0
            }

            fn decode(what: &'static str, bytes: &[u8]) -> Result<Self, WireError> {
                decode_array(what, bytes).map(Self)
            }
        }

        impl FixedField for $newtype {
            const SIZE: usize = Self::LEN;

            fn take(fields: &mut StructFields<'_>) -> Result<Self, WireError> {
                fields.take().map(Self)
            }
        }
    )*};
}

byte_array_field!(Hash256, Pubkey, PubNonceBytes);

/// `byte`, `Uint64`, `Uint128`: little-endian, like every molecule integer.
macro_rules! integer_field {
    ($($int:ty),*) => {$(
        impl Field for $int {
            fn encode(&self) -> impl AsRef<[u8]> {
                self.to_le_bytes()
            }

            fn decode(what: &'static str, bytes: &[u8]) -> Result<Self, WireError> {
                decode_array(what, bytes).map(<$int>::from_le_bytes)
            }
        }
    )*};
}

integer_field!(u8, u64, u128);

/// `Bytes`.
impl Field for Vec<u8> {
    fn encode(&self) -> impl AsRef<[u8]> {
        encode_bytes(self)
    }

    fn decode(what: &'static str, bytes: &[u8]) -> Result<Self, WireError> {
        decode_bytes(what, bytes).map(<[u8]>::to_vec)
    }
}

/// `BytesVec`.
impl Field for Vec<Vec<u8>> {
    fn encode(&self) -> impl AsRef<[u8]> {
        encode_bytes_vec(self)
    }

    fn decode(what: &'static str, bytes: &[u8]) -> Result<Self, WireError> {
        decode_bytes_vec(what, bytes)
    }
}

impl Field for packed::Script {
    fn encode(&self) -> impl AsRef<[u8]> {
        self.as_slice()
    }

    fn decode(what: &'static str, bytes: &[u8]) -> Result<Self, WireError> {
        decode_script(what, bytes)
    }
}

impl Field for packed::Transaction {
    fn encode(&self) -> impl AsRef<[u8]> {
        self.as_slice()
    }

    fn decode(what: &'static str, bytes: &[u8]) -> Result<Self, WireError> {
        decode_transaction(what, bytes)
    }
}

/// `option`s such as `ScriptOpt` and `PubNonceOpt`.
impl<T: Field> Field for Option<T> {
    fn encode(&self) -> impl AsRef<[u8]> {
        OptionBytes(self.as_ref().map(T::encode))
    }

    fn decode(what: &'static str, bytes: &[u8]) -> Result<Self, WireError> {
        decode_option(bytes).map(|inner| T::decode(what, inner)).transpose()
    }
}

/// The encoding of an `option`, borrowed from its inner value's.
struct OptionBytes<B>(Option<B>);

impl<B: AsRef<[u8]>> AsRef<[u8]> for OptionBytes<B> {
    fn as_ref(&self) -> &[u8] {
        encode_option(self.0.as_ref().map(B::as_ref))
    }
}

fiber_message! {
    /// The opener proposes a channel (`table OpenChannel`).
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub table OpenChannel = 1 {
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
}

fiber_message! {
    /// The acceptor agrees to a channel (`table AcceptChannel`).
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub table AcceptChannel = 2 {
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
}

fiber_message! {
    /// The funding tx as one side proposes it (`table TxUpdate`).
    #[derive(Debug, Clone)]
    pub table TxUpdate = 4 {
        pub channel_id: ChannelId,
        pub tx: packed::Transaction,
    }
}

// `packed::Transaction` has no `PartialEq`; its verified bytes are canonical,
// so comparing them is comparing the transactions.
impl PartialEq for TxUpdate {
    fn eq(&self, other: &Self) -> bool {
        self.channel_id == other.channel_id && self.tx.as_slice() == other.tx.as_slice()
    }
}

impl Eq for TxUpdate {}

fiber_message! {
    /// A side has no more changes to the funding tx (`struct TxComplete`).
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct TxComplete = 5 {
        pub channel_id: ChannelId,
        pub next_commitment_nonce: PubNonceBytes,
    }
}

fiber_message! {
    /// Partial signature for the first commitment tx (`struct CommitmentSigned`).
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct CommitmentSigned = 9 {
        pub channel_id: ChannelId,
        /// A MuSig2 partial signature, declared as `Byte32` in fiber.mol.
        pub funding_tx_partial_signature: [u8; 32],
        pub next_commitment_nonce: PubNonceBytes,
    }
}

fiber_message! {
    /// Witnesses of one side's funding inputs (`table TxSignatures`).
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub table TxSignatures = 3 {
        pub channel_id: ChannelId,
        pub witnesses: Vec<Vec<u8>>,
    }
}

fiber_message! {
    /// The funding tx is confirmed and the channel usable (`struct ChannelReady`).
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct ChannelReady = 10 {
        pub channel_id: ChannelId,
    }
}

fiber_message! {
    /// Gives up on the funding negotiation (`table TxAbort`).
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub table TxAbort = 6 {
        pub channel_id: ChannelId,
        /// Free-form reason; Fiber sends UTF-8 text, but nothing enforces it.
        pub message: Vec<u8>,
    }
}

fiber_message! {
    /// Sent on reconnect so both sides agree where they left off (`table ReestablishChannel`).
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub table ReestablishChannel = 17 {
        pub channel_id: ChannelId,
        pub local_commitment_number: u64,
        pub remote_commitment_number: u64,
    }
}

fiber_message! {
    /// A side wants to close the channel cooperatively (`table Shutdown`).
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub table Shutdown = 15 {
        pub channel_id: ChannelId,
        /// Shannons per 1,000 bytes this side pays its closing fee at (0: the
        /// responder leaves the fee to the side that asked to close).
        pub fee_rate: u64,
        /// Where this side's balance goes.
        pub close_script: packed::Script,
    }
}

fiber_message! {
    /// A side's MuSig2 partial signature of the closing tx (`struct ClosingSigned`).
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct ClosingSigned = 16 {
        pub channel_id: ChannelId,
        /// Declared as `Byte32` in fiber.mol.
        pub partial_signature: [u8; 32],
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
