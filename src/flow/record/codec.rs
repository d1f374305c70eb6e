//! Record schemas 3 to 6: the binary layout of a [`ChannelRecord`], read in
//! one pass. `docs/storage.md` ("Record (schema version 6)", "Layout") is its
//! specification. Schema 4 is schema 3 with one field more at the end
//! (`commitment_signed_held`), schema 5 schema 4 with `key_check` after it,
//! schema 6 schema 5 with `restored_from_backup` after that; schema 3 to 5
//! bytes are still read.
//!
//! A record is [`RECORD_MAGIC`] and the schema version (one byte, 6), then
//! the record's fields in the order the [`layout!`] declarations below list
//! them, each written as its type says ([`Field`]):
//! * integers: little-endian, fixed width; `bool`: one byte, 0 or 1;
//! * hashes, keys and nonces: their bytes (32, 33, 66);
//! * byte strings and text: a `u32` length, then the bytes;
//! * lists: a `u32` count, then the items;
//! * `Option`: a tag byte, 0 (absent) or 1 (present: the value follows);
//! * CKB entities: their molecule bytes, the very bytes hashed and signed
//!   (`OutPoint` and `CellDep` are fixed-size; the others length-prefixed),
//!   checked by the wire module's pre-decoder before `packed` reads them.
//!
//! Stored bytes are read as untrusted: every length and count is held to its
//! bound and to the bytes left before anything is allocated, arithmetic is
//! checked, nothing panics, and bytes after the last field are refused.

use std::fmt;

use ckb_types::packed;
use ckb_types::prelude::Entity;

use super::{
    AbortWatch, ChannelRecord, ChannelTerms, CloseProgress, Closure, CommitmentOnChain, ExternalFundingPersistState,
    PartyParams, Role, ShutdownTerms, SCHEMA_VERSION,
};
use crate::chain::{LiveCell, ResolvedCell};
use crate::flow::limits::MAX_FUNDING_INPUTS;
use crate::flow::state::CloseFlags;
use crate::primitives::{Hash256, PubNonceBytes, Pubkey};
use crate::tx::script::{HashType, ScriptTemplate};
use crate::wire::{decode_checked, CheckedDecode};

/// The first bytes of a schema 3 record. Its first byte is neither `{` nor
/// whitespace, so a record is never mistaken for the JSON of schemas 1 and
/// 2, and no UTF-8 text begins with it, so no text is mistaken for a record.
pub const RECORD_MAGIC: [u8; 4] = [0x89, b'F', b'F', b'R'];

/// The version byte after the magic: the schema whose layout follows.
const VERSION: u8 = 6;
/// The earliest binary layout still read: schema 6 without its last three fields.
const FIRST_BINARY_VERSION: u8 = 3;
const _: () = assert!(VERSION as u32 == SCHEMA_VERSION, "a new schema defines its layout here");

/// Every byte string in a record (a script, a cell, its data, a witness, a
/// transaction, a signature, a reason) is at most this long: CKB's block
/// size limit (`MAX_BLOCK_BYTES`), which no transaction, and so nothing that
/// goes into one, can exceed.
pub const MAX_FIELD_BYTES: usize = 597_000;

/// Cell deps a record lists for one script: more than fit in a block could
/// never be used by a transaction.
pub const MAX_CELL_DEPS: usize = MAX_FIELD_BYTES / packed::CellDep::TOTAL_SIZE;

/// Cells (own cells, the funding tx's resolved inputs) and witness lists are
/// at most one per funding-tx input, and the flow refuses a funding tx with
/// more than [`MAX_FUNDING_INPUTS`] inputs or witnesses that do not match them.
pub const MAX_LIST_ITEMS: usize = MAX_FUNDING_INPUTS;

/// Why stored bytes are not a record this module can read; names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordFormatError {
    #[error("not a record: neither JSON nor bytes that start with the schema 3 magic")]
    NotARecord,
    #[error("schema version {version} is newer than this module's {SCHEMA_VERSION}; update the module")]
    Newer { version: u64 },
    #[error("a binary record of schema version {version}: binary records begin with version 3")]
    NoBinarySchema { version: u8 },
    #[error("a JSON record of schema version {version}: JSON records end with version 2")]
    NoJsonSchema { version: u64 },
    #[error("truncated in {field}: needs {needed} bytes, {left} left")]
    Truncated {
        field: FieldPath,
        needed: usize,
        left: usize,
    },
    #[error("{field} is {len} bytes long, more than the {max} a record field may be")]
    TooLong { field: FieldPath, len: u32, max: usize },
    #[error("{field} has {count} items, more than the {max} a record may hold")]
    TooMany { field: FieldPath, count: u32, max: usize },
    #[error("{field} has tag {tag}, not one of {expected}")]
    BadTag {
        field: FieldPath,
        tag: u8,
        expected: &'static str,
    },
    #[error("invalid {field}: {reason}")]
    Invalid { field: FieldPath, reason: String },
    #[error("{count} bytes after the end of the record")]
    TrailingBytes { count: usize },
    #[error("not JSON: {0}")]
    NotJson(String),
    #[error("no schema_version")]
    NoSchemaVersion,
    /// A legacy JSON record whose fields do not read: the field, and why.
    #[error("{0}")]
    Json(String),
    #[error("{0}")]
    Inconsistent(&'static str),
}

impl RecordFormatError {
    fn field_mut(&mut self) -> Option<&mut FieldPath> {
        match self {
            Self::Truncated { field, .. }
            | Self::TooLong { field, .. }
            | Self::TooMany { field, .. }
            | Self::BadTag { field, .. }
            | Self::Invalid { field, .. } => Some(field),
            _ => None,
        }
    }
}

/// An error on its way out of the reader: boxed, so that every `Result` the
/// reader passes up stays two words, and built on the cold path only (the
/// path of fields is pushed innermost first, and turned round at the top).
struct Fault(Box<RecordFormatError>);

impl Fault {
    #[cold]
    #[inline(never)]
    fn new(error: RecordFormatError) -> Self {
        Fault(Box::new(error))
    }

    /// The same error, seen from the field (or list item) that holds it.
    #[cold]
    #[inline(never)]
    fn within(mut self, step: PathStep) -> Self {
        if let Some(field) = self.0.field_mut() {
            field.0.push(step);
        }
        self
    }

    fn into_error(self) -> RecordFormatError {
        let mut error = *self.0;
        if let Some(field) = error.field_mut() {
            field.0.reverse();
        }
        error
    }
}

type Read<T> = Result<T, Fault>;

/// Where in a record: `external_funding.unsigned_funding_tx`, `own_cells[2].output`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldPath(pub Vec<PathStep>);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathStep {
    Field(&'static str),
    Item(usize),
}

impl FieldPath {
    /// The path of a field, written `a.b`, for comparing in tests.
    pub fn of(names: &[&'static str]) -> Self {
        Self(names.iter().copied().map(PathStep::Field).collect())
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("the record");
        }
        for (index, step) in self.0.iter().enumerate() {
            match step {
                PathStep::Field(name) if index == 0 => f.write_str(name)?,
                PathStep::Field(name) => write!(f, ".{name}")?,
                PathStep::Item(item) => write!(f, "[{item}]")?,
            }
        }
        Ok(())
    }
}

/// The record's schema 6 bytes.
pub(super) fn encode(record: &ChannelRecord) -> Vec<u8> {
    let mut writer = Writer {
        out: Vec::with_capacity(4096),
        funding_tx: None,
    };
    writer.out.extend_from_slice(&RECORD_MAGIC);
    writer.out.push(VERSION);
    record.write(&mut writer);
    writer.out
}

/// Reads a schema 3 to 6 record: the prefix, every field, and nothing after.
pub(super) fn decode(bytes: &[u8]) -> Result<ChannelRecord, RecordFormatError> {
    let rest = bytes.strip_prefix(&RECORD_MAGIC).ok_or(RecordFormatError::NotARecord)?;
    let mut reader = Reader {
        rest,
        funding_tx: None,
        version: VERSION,
    };
    let version =
        u8::read(&mut reader).map_err(|fault| fault.within(PathStep::Field("schema version")).into_error())?;
    match version {
        FIRST_BINARY_VERSION..=VERSION => reader.version = version,
        version if version > VERSION => {
            return Err(RecordFormatError::Newer {
                version: version.into(),
            })
        }
        version => return Err(RecordFormatError::NoBinarySchema { version }),
    }
    let record = <ChannelRecord as Field>::read(&mut reader).map_err(Fault::into_error)?;
    match reader.rest.len() {
        0 => Ok(record),
        count => Err(RecordFormatError::TrailingBytes { count }),
    }
}

/// How one type is written into a record and read back.
trait Field: Sized {
    fn write(&self, writer: &mut Writer);
    fn read(reader: &mut Reader<'_>) -> Read<Self>;
}

struct Writer {
    out: Vec<u8>,
    /// The record's funding tx, once written: `unsigned_funding_tx` may name it.
    funding_tx: Option<packed::Transaction>,
}

impl Writer {
    /// A length or count. Nothing in memory reaches 4 GiB on wasm32, where
    /// `usize` is 32 bits, and no record comes near it natively.
    fn length(&mut self, len: usize) {
        let len = u32::try_from(len).expect("no record field reaches 4 GiB");
        self.out.extend_from_slice(&len.to_le_bytes());
    }

    fn bytes(&mut self, bytes: &[u8]) {
        self.length(bytes.len());
        self.out.extend_from_slice(bytes);
    }
}

struct Reader<'a> {
    rest: &'a [u8],
    /// The record's funding tx, once read: `unsigned_funding_tx` may name it.
    funding_tx: Option<packed::Transaction>,
    /// The layout being read (the version byte): 3 lacks the last three
    /// fields, 4 the last two, 5 the last one.
    version: u8,
}

impl<'a> Reader<'a> {
    fn truncated(&self, needed: usize) -> Fault {
        Fault::new(RecordFormatError::Truncated {
            field: FieldPath::default(),
            needed,
            left: self.rest.len(),
        })
    }

    fn take(&mut self, len: usize) -> Read<&'a [u8]> {
        let (taken, rest) = self.rest.split_at_checked(len).ok_or_else(|| self.truncated(len))?;
        self.rest = rest;
        Ok(taken)
    }

    fn array<const N: usize>(&mut self) -> Read<[u8; N]> {
        let (taken, rest) = self.rest.split_first_chunk::<N>().ok_or_else(|| self.truncated(N))?;
        self.rest = rest;
        Ok(*taken)
    }

    fn tag(&mut self, expected: &'static str, max: u8) -> Read<u8> {
        match u8::read(self)? {
            tag if tag <= max => Ok(tag),
            tag => Err(Fault::new(RecordFormatError::BadTag {
                field: FieldPath::default(),
                tag,
                expected,
            })),
        }
    }

    /// A length-prefixed byte string, checked against its bound and the
    /// bytes left before it is taken.
    fn bytes(&mut self) -> Read<&'a [u8]> {
        let len = u32::read(self)?;
        match usize::try_from(len) {
            Ok(size) if size <= MAX_FIELD_BYTES => self.take(size),
            _ => Err(Fault::new(RecordFormatError::TooLong {
                field: FieldPath::default(),
                len,
                max: MAX_FIELD_BYTES,
            })),
        }
    }

    /// A list's items, the count held to `max` before anything is allocated.
    fn list<T: Field>(&mut self, max: usize) -> Read<Vec<T>> {
        let count = u32::read(self)?;
        let count = match usize::try_from(count) {
            Ok(items) if items <= max => items,
            _ => {
                return Err(Fault::new(RecordFormatError::TooMany {
                    field: FieldPath::default(),
                    count,
                    max,
                }))
            }
        };
        // Every item takes at least a byte: never more room than bytes left.
        let mut items = Vec::with_capacity(count.min(self.rest.len()));
        for index in 0..count {
            items.push(T::read(self).map_err(|e| e.within(PathStep::Item(index)))?);
        }
        Ok(items)
    }
}

// ---- the layout ------------------------------------------------------------------------

/// Declares the layout of a record type: its fields, in the order they are
/// written. Writing destructures the value and reading builds it, so the
/// compiler refuses a layout that leaves a field out. A field marked
/// `with codec` is written and read by the functions of module `codec`
/// instead of its type's [`Field`] impl.
macro_rules! layout {
    ($($type:ident { $($field:ident $(with $codec:ident)?),* $(,)? })*) => {$(
        impl Field for $type {
            fn write(&self, writer: &mut Writer) {
                let $type { $($field),* } = self;
                $(layout!(@write writer, $field $(, $codec)?);)*
            }

            fn read(reader: &mut Reader<'_>) -> Read<Self> {
                Ok($type {
                    $($field: layout!(@read reader $($codec)?)
                        .map_err(|fault| fault.within(PathStep::Field(stringify!($field))))?,)*
                })
            }
        }
    )*};
    (@write $writer:ident, $field:ident) => {
        Field::write($field, $writer)
    };
    (@write $writer:ident, $field:ident, $codec:ident) => {
        $codec::write($field, $writer)
    };
    (@read $reader:ident) => {
        Field::read($reader)
    };
    (@read $reader:ident $codec:ident) => {
        $codec::read($reader)
    };
}

layout! {
    ChannelRecord {
        schema_version with schema_version,
        channel_id,
        temporary_channel_id,
        role,
        peer,
        created_at_ms,
        channel_seed,
        terms,
        local,
        remote,
        own_cells,
        deadline_ms,
        funding_tx with funding_tx,
        peer_inputs_checked,
        funding_inputs,
        peer_tx_complete_nonce,
        peer_commitment_signature,
        peer_witnesses,
        funding_confirmed,
        peer_channel_ready,
        external_funding,
        peer_next_commitment_nonce,
        close,
        closed,
        commitment_signed_held with since_schema_4,
        key_check with since_schema_5,
        restored_from_backup with since_schema_6,
    }

    ChannelTerms {
        chain_hash,
        funding_fee_rate,
        commitment_fee_rate,
        commitment_delay_epoch,
        channel_flags,
        funding_lock,
        commitment_lock,
        timeout_ms,
    }

    ScriptTemplate {
        code_hash,
        hash_type,
        cell_deps,
    }

    PartyParams {
        funding_amount,
        reserved_ckb_amount,
        shutdown_script,
        max_tlc_value_in_flight,
        max_tlc_number_in_flight,
        funding_pubkey,
        tlc_basepoint,
        first_per_commitment_point,
        second_per_commitment_point,
        next_commitment_nonce,
        next_revocation_nonce,
    }

    LiveCell {
        out_point,
        output,
        output_data,
        block_number,
    }

    ResolvedCell {
        output,
        data,
    }

    ExternalFundingPersistState {
        funding_lock_script,
        funding_lock_script_cell_deps,
        unsigned_funding_tx with unsigned_funding_tx,
        started_at_ms,
        signed_funding_witnesses,
    }

    CloseProgress {
        local_shutdown,
        remote_shutdown,
        peer_closing_signature,
        force_closed_at_ms,
        commitment_on_chain,
        closing_on_chain,
        claim_tx,
    }

    ShutdownTerms {
        close_script,
        fee_rate,
    }

    CommitmentOnChain {
        holder_is_local,
        tx_hash,
        block_number,
        epoch,
    }

    Closure {
        flags,
        reason,
        closed_at_ms,
        watch,
    }

    AbortWatch {
        conflict_seen_at_tip,
    }
}

/// The record's own `schema_version` (`u32`): 3, or the earlier schema whose
/// facts a record read from JSON holds until `ChannelRecord::upgrade` runs.
mod schema_version {
    use super::*;

    pub(super) fn write(version: &u32, writer: &mut Writer) {
        version.write(writer);
    }

    pub(super) fn read(reader: &mut Reader<'_>) -> Read<u32> {
        match u32::read(reader)? {
            version if version <= SCHEMA_VERSION => Ok(version),
            version => Err(Fault::new(RecordFormatError::Invalid {
                field: FieldPath::default(),
                reason: format!("{version} is newer than the layout's {VERSION}"),
            })),
        }
    }
}

/// A `bool` that schema 3 did not store: false there.
mod since_schema_4 {
    use super::*;

    pub(super) fn write(value: &bool, writer: &mut Writer) {
        value.write(writer);
    }

    pub(super) fn read(reader: &mut Reader<'_>) -> Read<bool> {
        if reader.version < 4 {
            return Ok(false);
        }
        bool::read(reader)
    }
}

/// The key check, which schemas 3 and 4 did not store: absent there.
mod since_schema_5 {
    use super::*;

    pub(super) fn write(value: &Option<Hash256>, writer: &mut Writer) {
        value.write(writer);
    }

    pub(super) fn read(reader: &mut Reader<'_>) -> Read<Option<Hash256>> {
        if reader.version < 5 {
            return Ok(None);
        }
        Option::read(reader)
    }
}

/// A `bool` that schemas 3 to 5 did not store: false there.
mod since_schema_6 {
    use super::*;

    pub(super) fn write(value: &bool, writer: &mut Writer) {
        value.write(writer);
    }

    pub(super) fn read(reader: &mut Reader<'_>) -> Read<bool> {
        if reader.version < 6 {
            return Ok(false);
        }
        bool::read(reader)
    }
}

/// `funding_tx`, an ordinary `Option`, kept for `unsigned_funding_tx`.
mod funding_tx {
    use super::*;

    pub(super) fn write(tx: &Option<packed::Transaction>, writer: &mut Writer) {
        tx.write(writer);
        writer.funding_tx = tx.clone();
    }

    pub(super) fn read(reader: &mut Reader<'_>) -> Read<Option<packed::Transaction>> {
        let tx = Option::<packed::Transaction>::read(reader)?;
        reader.funding_tx = tx.clone();
        Ok(tx)
    }
}

/// `unsigned_funding_tx`: while a flow waits for the user's signature it is
/// the same tx as `funding_tx`, so besides the tags of an `Option` it has
/// tag 2, "the same bytes as `funding_tx`", with nothing after it.
mod unsigned_funding_tx {
    use super::*;

    const SAME_AS_FUNDING_TX: u8 = 2;

    pub(super) fn write(tx: &Option<packed::Transaction>, writer: &mut Writer) {
        let funding_tx = writer.funding_tx.as_ref().map(Entity::as_slice);
        match tx {
            Some(tx) if funding_tx == Some(tx.as_slice()) => SAME_AS_FUNDING_TX.write(writer),
            tx => tx.write(writer),
        }
    }

    pub(super) fn read(reader: &mut Reader<'_>) -> Read<Option<packed::Transaction>> {
        match reader.tag("0, 1 or 2 (the funding tx)", SAME_AS_FUNDING_TX)? {
            0 => Ok(None),
            1 => packed::Transaction::read(reader).map(Some),
            _ => match &reader.funding_tx {
                Some(tx) => Ok(Some(tx.clone())),
                None => Err(Fault::new(RecordFormatError::Invalid {
                    field: FieldPath::default(),
                    reason: "it is the funding tx, which the record does not hold".into(),
                })),
            },
        }
    }
}

// ---- how each type is written -----------------------------------------------------------

macro_rules! integer_field {
    ($($int:ty),*) => {$(
        impl Field for $int {
            fn write(&self, writer: &mut Writer) {
                writer.out.extend_from_slice(&self.to_le_bytes());
            }

            fn read(reader: &mut Reader<'_>) -> Read<Self> {
                reader.array().map(<$int>::from_le_bytes)
            }
        }
    )*};
}

integer_field!(u8, u32, u64, u128);

impl Field for bool {
    fn write(&self, writer: &mut Writer) {
        u8::from(*self).write(writer);
    }

    fn read(reader: &mut Reader<'_>) -> Read<Self> {
        Ok(reader.tag("0 or 1", 1)? == 1)
    }
}

impl<T: Field> Field for Option<T> {
    fn write(&self, writer: &mut Writer) {
        match self {
            None => 0u8.write(writer),
            Some(value) => {
                1u8.write(writer);
                value.write(writer);
            }
        }
    }

    fn read(reader: &mut Reader<'_>) -> Read<Self> {
        match reader.tag("0 or 1", 1)? {
            0 => Ok(None),
            _ => T::read(reader).map(Some),
        }
    }
}

macro_rules! byte_array_field {
    ($($newtype:ident),*) => {$(
        impl Field for $newtype {
            fn write(&self, writer: &mut Writer) {
                writer.out.extend_from_slice(&self.0);
            }

            fn read(reader: &mut Reader<'_>) -> Read<Self> {
                reader.array().map(Self)
            }
        }
    )*};
}

byte_array_field!(Hash256, Pubkey, PubNonceBytes);

/// Witnesses, cell data, signatures.
impl Field for Vec<u8> {
    fn write(&self, writer: &mut Writer) {
        writer.bytes(self);
    }

    fn read(reader: &mut Reader<'_>) -> Read<Self> {
        reader.bytes().map(<[u8]>::to_vec)
    }
}

impl Field for String {
    fn write(&self, writer: &mut Writer) {
        writer.bytes(self.as_bytes());
    }

    fn read(reader: &mut Reader<'_>) -> Read<Self> {
        let bytes = reader.bytes()?;
        std::str::from_utf8(bytes).map(str::to_owned).map_err(|e| {
            Fault::new(RecordFormatError::Invalid {
                field: FieldPath::default(),
                reason: format!("not UTF-8: {e}"),
            })
        })
    }
}

/// A CKB entity's molecule bytes, checked before `packed` reads them.
fn molecule<T: CheckedDecode>(bytes: &[u8]) -> Read<T> {
    decode_checked(T::NAME, bytes).map_err(|e| {
        Fault::new(RecordFormatError::Invalid {
            field: FieldPath::default(),
            reason: e.to_string(),
        })
    })
}

/// Molecule `table`s: a length, then their bytes.
macro_rules! molecule_field {
    ($($entity:ty),*) => {$(
        impl Field for $entity {
            fn write(&self, writer: &mut Writer) {
                writer.bytes(self.as_slice());
            }

            fn read(reader: &mut Reader<'_>) -> Read<Self> {
                molecule(reader.bytes()?)
            }
        }
    )*};
}

molecule_field!(packed::Script, packed::CellOutput, packed::Transaction);

/// Molecule `struct`s: their bytes, of a size fixed by their type.
macro_rules! fixed_molecule_field {
    ($($entity:ty),*) => {$(
        impl Field for $entity {
            fn write(&self, writer: &mut Writer) {
                writer.out.extend_from_slice(self.as_slice());
            }

            fn read(reader: &mut Reader<'_>) -> Read<Self> {
                molecule(reader.take(<$entity>::TOTAL_SIZE)?)
            }
        }
    )*};
}

fixed_molecule_field!(packed::OutPoint, packed::CellDep);

/// Lists, each type with its bound.
macro_rules! list_field {
    ($($item:ty: $max:expr),*) => {$(
        impl Field for Vec<$item> {
            fn write(&self, writer: &mut Writer) {
                writer.length(self.len());
                for item in self {
                    item.write(writer);
                }
            }

            fn read(reader: &mut Reader<'_>) -> Read<Self> {
                reader.list($max)
            }
        }
    )*};
}

list_field!(
    LiveCell: MAX_LIST_ITEMS,
    ResolvedCell: MAX_LIST_ITEMS,
    Vec<u8>: MAX_LIST_ITEMS,
    packed::CellDep: MAX_CELL_DEPS
);

impl Field for Role {
    fn write(&self, writer: &mut Writer) {
        let tag: u8 = match self {
            Role::Initiator => 0,
            Role::Acceptor => 1,
        };
        tag.write(writer);
    }

    fn read(reader: &mut Reader<'_>) -> Read<Self> {
        match reader.tag("0 (initiator) or 1 (acceptor)", 1)? {
            0 => Ok(Role::Initiator),
            _ => Ok(Role::Acceptor),
        }
    }
}

/// The byte CKB's `Script.hash_type` uses for each.
impl Field for HashType {
    fn write(&self, writer: &mut Writer) {
        let byte: u8 = match self {
            HashType::Data => 0,
            HashType::Type => 1,
            HashType::Data1 => 2,
            HashType::Data2 => 4,
        };
        byte.write(writer);
    }

    fn read(reader: &mut Reader<'_>) -> Read<Self> {
        match u8::read(reader)? {
            0 => Ok(HashType::Data),
            1 => Ok(HashType::Type),
            2 => Ok(HashType::Data1),
            4 => Ok(HashType::Data2),
            tag => Err(Fault::new(RecordFormatError::BadTag {
                field: FieldPath::default(),
                tag,
                expected: "0 (data), 1 (type), 2 (data1) or 4 (data2)",
            })),
        }
    }
}

impl Field for CloseFlags {
    fn write(&self, writer: &mut Writer) {
        self.0.write(writer);
    }

    fn read(reader: &mut Reader<'_>) -> Read<Self> {
        u32::read(reader).map(CloseFlags)
    }
}
