//! The recovery record: everything needed to rebuild a channel after the page
//! (or the process) is gone. One record per channel, written atomically.
//!
//! The record holds *facts* (what was received, what was decided); the state
//! and every message to send are derived from them, so a record can never say
//! one thing in its state and another in its fields. See `docs/storage.md`.

use ckb_types::packed;
use ckb_types::prelude::*;
use serde::{Deserialize, Serialize};

mod codec;
mod legacy;

pub use codec::{FieldPath, PathStep, RecordFormatError, MAX_CELL_DEPS, MAX_FIELD_BYTES, MAX_LIST_ITEMS, RECORD_MAGIC};

use crate::chain::{LiveCell, ResolvedCell};
use crate::flow::config::{NodeConfig, DEFAULT_ACCEPTOR_GRACE_MS};
use crate::flow::state::CloseFlags;
use crate::primitives::{
    hex_bytes, hex_bytes_list, hex_u128, hex_u64, ChannelId, Hash256, NodeId, PubNonceBytes, Pubkey,
};
use crate::tx::script::ScriptTemplate;
use crate::wire::{decode_checked, CheckedDecode};

/// Bumped whenever the record's stored shape changes; see `docs/storage.md`.
/// Version 2 stores the deadline, the contracts and the timeout of the flow,
/// the hash-checked input cells, and what an abort keeps watching. Version 3
/// stores the same facts in a compact binary layout (`record/codec.rs`)
/// instead of JSON. Version 4 adds `commitment_signed_held` at the end,
/// version 5 `key_check` after it, version 6 `restored_from_backup`.
pub const SCHEMA_VERSION: u32 = 6;

/// The last schema stored as JSON; versions 1 and 2 are still read.
const LAST_JSON_SCHEMA_VERSION: u64 = 2;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Opened the channel and funds it externally (the browser).
    Initiator,
    /// Accepted the channel and adds its reserve (the counterparty).
    Acceptor,
}

/// What one side announced in `OpenChannel` / `AcceptChannel`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct PartyParams {
    #[serde(with = "hex_u64")]
    pub funding_amount: u64,
    #[serde(with = "hex_u64")]
    pub reserved_ckb_amount: u64,
    #[serde(with = "molecule_hex")]
    pub shutdown_script: packed::Script,
    #[serde(with = "hex_u128")]
    pub max_tlc_value_in_flight: u128,
    #[serde(with = "hex_u64")]
    pub max_tlc_number_in_flight: u64,
    pub funding_pubkey: Pubkey,
    pub tlc_basepoint: Pubkey,
    pub first_per_commitment_point: Pubkey,
    pub second_per_commitment_point: Pubkey,
    /// The nonce for the holder's own commitment 0.
    pub next_commitment_nonce: PubNonceBytes,
    pub next_revocation_nonce: PubNonceBytes,
}

impl PartyParams {
    /// What this side puts into the funding output. Both amounts are bounded
    /// on receipt (`flow::limits`), so this cannot overflow; it is checked anyway.
    pub fn contribution(&self) -> Result<u64, crate::tx::fee::Overflow> {
        crate::tx::fee::add(self.funding_amount, self.reserved_ckb_amount, "a contribution")
    }
}

/// `OpenChannel` and `AcceptChannel` announce a side's [`PartyParams`] in
/// fields of the same names; these two macros map them each way, once, so
/// the two messages cannot drift apart. `announced_party!(message, amount)`
/// reads them (the amount already narrowed to a CKB capacity);
/// `party_message!(Message, &party, { other fields })` writes them.
macro_rules! announced_party {
    ($message:expr, $funding_amount:expr) => {{
        let message = $message;
        $crate::flow::record::PartyParams {
            funding_amount: $funding_amount,
            reserved_ckb_amount: message.reserved_ckb_amount,
            shutdown_script: message.shutdown_script.clone(),
            max_tlc_value_in_flight: message.max_tlc_value_in_flight,
            max_tlc_number_in_flight: message.max_tlc_number_in_flight,
            funding_pubkey: message.funding_pubkey,
            tlc_basepoint: message.tlc_basepoint,
            first_per_commitment_point: message.first_per_commitment_point,
            second_per_commitment_point: message.second_per_commitment_point,
            next_commitment_nonce: message.next_commitment_nonce,
            next_revocation_nonce: message.next_revocation_nonce,
        }
    }};
}
pub(crate) use announced_party;

macro_rules! party_message {
    ($message:ident, $party:expr, { $($other:tt)* }) => {{
        let party: &$crate::flow::record::PartyParams = $party;
        $message {
            funding_amount: party.funding_amount.into(),
            reserved_ckb_amount: party.reserved_ckb_amount,
            shutdown_script: party.shutdown_script.clone(),
            max_tlc_value_in_flight: party.max_tlc_value_in_flight,
            max_tlc_number_in_flight: party.max_tlc_number_in_flight,
            funding_pubkey: party.funding_pubkey,
            tlc_basepoint: party.tlc_basepoint,
            first_per_commitment_point: party.first_per_commitment_point,
            second_per_commitment_point: party.second_per_commitment_point,
            next_commitment_nonce: party.next_commitment_nonce,
            next_revocation_nonce: party.next_revocation_nonce,
            // Fiber's announcement nonce is for public channels, which are refused.
            channel_announcement_nonce: None,
            $($other)*
        }
    }};
}
pub(crate) use party_message;

/// The terms the initiator set in `OpenChannel`, shared by both sides.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ChannelTerms {
    pub chain_hash: Hash256,
    #[serde(with = "hex_u64")]
    pub funding_fee_rate: u64,
    #[serde(with = "hex_u64")]
    pub commitment_fee_rate: u64,
    #[serde(with = "hex_u64")]
    pub commitment_delay_epoch: u64,
    pub channel_flags: u8,
    /// The funding-lock contract this channel's funding output is locked by.
    #[serde(default = "ScriptTemplate::unset")]
    pub funding_lock: ScriptTemplate,
    /// The commitment-lock contract of its commitment txs.
    #[serde(default = "ScriptTemplate::unset")]
    pub commitment_lock: ScriptTemplate,
    /// This flow's external-funding timeout, fixed when it began (the
    /// acceptor's includes its grace period).
    #[serde(default)]
    pub timeout_ms: u64,
}

/// Upstream's `ExternalFundingPersistState`: the initiator's view of the
/// external-funding flow, from open until a terminal path clears it. Facts
/// only: what upstream stores twice is derived (`signed_submitted`).
#[derive(Debug, Clone, Deserialize)]
pub struct ExternalFundingPersistState {
    #[serde(with = "molecule_hex")]
    pub funding_lock_script: packed::Script,
    #[serde(with = "molecule_hex_list")]
    pub funding_lock_script_cell_deps: Vec<packed::CellDep>,
    /// The tx handed to the user to sign; `None` while it is being negotiated.
    #[serde(with = "molecule_hex_option")]
    pub unsigned_funding_tx: Option<packed::Transaction>,
    /// When the unsigned tx was produced (when the flow began, until then);
    /// the deadline is this plus the external-funding timeout.
    pub started_at_ms: u64,
    /// The user's signed witnesses (the whole list, as the wallet returned
    /// it): their presence is upstream's `signed_submitted`. (Upstream's
    /// `peer_commitment_signed_received` is the record's
    /// `peer_commitment_signature`; schemas 1 and 2 stored both copies.)
    #[serde(with = "hex_bytes_list_option")]
    pub signed_funding_witnesses: Option<Vec<Vec<u8>>>,
}

impl ExternalFundingPersistState {
    /// Upstream's `signed_submitted`: the user's signed tx was taken.
    pub fn signed_submitted(&self) -> bool {
        self.signed_funding_witnesses.is_some()
    }
}

/// What one side named in its `Shutdown`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ShutdownTerms {
    #[serde(with = "molecule_hex")]
    pub close_script: packed::Script,
    #[serde(with = "hex_u64")]
    pub fee_rate: u64,
}

/// A funded channel on its way out, cooperatively or not. Every fact is
/// stored before the message or broadcast that depends on it.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct CloseProgress {
    /// Our `Shutdown`, once sent. With the peer's, it fixes the closing tx
    /// (and so what our closing nonce signs): neither changes after that.
    pub local_shutdown: Option<ShutdownTerms>,
    pub remote_shutdown: Option<ShutdownTerms>,
    /// The peer's verified partial signature over the closing tx.
    #[serde(with = "hex_bytes_option")]
    pub peer_closing_signature: Option<Vec<u8>>,
    /// When we broadcast our own commitment (a unilateral close).
    pub force_closed_at_ms: Option<u64>,
    /// A commitment tx of this channel seen committed on chain.
    pub commitment_on_chain: Option<CommitmentOnChain>,
    /// The closing tx seen spending the funding cell, with the cell deps its
    /// broadcaster chose (they are in its hash).
    #[serde(default)]
    pub closing_on_chain: Option<Hash256>,
    /// Our claim of our share of a commitment-lock cell, once built: sent
    /// until it confirms. The cell it spends is in its input.
    #[serde(with = "molecule_hex_option")]
    pub claim_tx: Option<packed::Transaction>,
}

/// Which commitment went on chain, and when: the delay counts from there.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct CommitmentOnChain {
    /// Ours (we closed unilaterally) or the peer's.
    pub holder_is_local: bool,
    pub tx_hash: Hash256,
    pub block_number: u64,
    /// The block's epoch, as an `EpochNumberWithFraction` value.
    #[serde(with = "hex_u64")]
    pub epoch: u64,
}

/// Why and when a channel closed.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Closure {
    pub flags: CloseFlags,
    pub reason: String,
    pub closed_at_ms: u64,
    /// Set when the flow aborted after the unsigned tx was handed out: the
    /// user may still hold a signed tx, so the seed, keys and the peer's
    /// commitment signature are kept until the funding tx can no longer
    /// confirm (or it confirms, and the channel goes on).
    #[serde(default)]
    pub watch: Option<AbortWatch>,
}

/// What an aborted flow that may still get funded has seen on chain.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct AbortWatch {
    /// The tip at which one of our inputs was first seen spent while the
    /// funding tx was unknown; the keys go once that is buried.
    pub conflict_seen_at_tip: Option<u64>,
}

/// One channel's recovery record.
#[derive(Debug, Clone, Deserialize)]
pub struct ChannelRecord {
    pub schema_version: u32,
    pub channel_id: ChannelId,
    pub temporary_channel_id: ChannelId,
    pub role: Role,
    pub peer: NodeId,
    pub created_at_ms: u64,
    /// With the node secret, derives every key and nonce of the channel.
    /// Zeroed when the channel closes before its funding was signed.
    pub channel_seed: Hash256,
    /// [`ChannelKeys::key_check`](crate::crypto::keys::ChannelKeys::key_check)
    /// of `local.funding_pubkey`: a restore tells a record made under another
    /// node key by it. Schema 5; absent before (a restore checks those
    /// records' keys as curve points, then fills it in) and once the seed
    /// is wiped.
    #[serde(skip)]
    pub key_check: Option<Hash256>,
    pub terms: ChannelTerms,
    pub local: PartyParams,
    pub remote: Option<PartyParams>,
    /// The cells this side funds the channel with (candidates, for the
    /// acceptor, until its part is built).
    #[serde(with = "live_cells")]
    pub own_cells: Vec<LiveCell>,
    /// When the flow is aborted unless its funding signatures went out: set
    /// when it begins, reset when the funding tx becomes final.
    #[serde(default)]
    pub deadline_ms: u64,
    /// The funding tx as far as it is built; complete with every witness once
    /// both sides' signatures are in.
    #[serde(with = "molecule_hex_option")]
    pub funding_tx: Option<packed::Transaction>,
    /// The peer's inputs were resolved on chain and its part checked.
    pub peer_inputs_checked: bool,
    /// The cell each input of the funding tx spends, read through the
    /// hash-checked path, in input order; set with `peer_inputs_checked`.
    #[serde(default, with = "resolved_cells")]
    pub funding_inputs: Vec<ResolvedCell>,
    /// The peer's `TxComplete` nonce (its nonce for signing our commitment 0).
    pub peer_tx_complete_nonce: Option<PubNonceBytes>,
    /// The peer's verified partial signature over our commitment 0.
    #[serde(with = "hex_bytes_option")]
    pub peer_commitment_signature: Option<Vec<u8>>,
    /// The peer's witnesses from its `TxSignatures`.
    #[serde(with = "hex_bytes_list_option")]
    pub peer_witnesses: Option<Vec<Vec<u8>>>,
    pub funding_confirmed: bool,
    pub peer_channel_ready: bool,
    pub external_funding: Option<ExternalFundingPersistState>,
    /// The peer's `next_commitment_nonce` from its `CommitmentSigned`: with
    /// ours, the nonces of the cooperative closing signature (Fiber's
    /// `Shutdown` carries none; this module never signs a commitment 1).
    #[serde(default)]
    pub peer_next_commitment_nonce: Option<PubNonceBytes>,
    /// Closing a funded channel.
    #[serde(default)]
    pub close: Option<CloseProgress>,
    pub closed: Option<Closure>,
    /// Our `CommitmentSigned` came due while the peer was away and has not
    /// been sent since: it provably never left, so a second signer may still
    /// give up (rule 5 binds it only once the signature may have left).
    /// Cleared in the step that first sends it. Schema 4; false before.
    #[serde(default)]
    pub commitment_signed_held: bool,
    /// Imported from a backup before its closing tx was fixed: the
    /// closing nonce, bound to no closing tx, may have signed one since on
    /// the device the backup came from, so this copy never signs one (a
    /// second would give the peer our funding key); the channel closes
    /// unilaterally. Schema 6; false before.
    #[serde(default)]
    pub restored_from_backup: bool,
}

/// A stored record that could not be read. Names the channel so the others
/// still load; the bad record is kept for inspection, never deleted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the record of channel {channel_id} cannot be read: {reason}")]
pub struct RecordDecodeError {
    pub channel_id: String,
    pub reason: String,
}

// `packed::Transaction` has no `PartialEq`; txs compare by their bytes. The
// impls below destructure every field, so a field added later cannot be
// left out of "the record changed" (which decides whether a step persists).
fn same_tx(a: &Option<packed::Transaction>, b: &Option<packed::Transaction>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => a.as_slice() == b.as_slice(),
        (a, b) => a.is_none() && b.is_none(),
    }
}

impl PartialEq for ChannelRecord {
    fn eq(&self, other: &Self) -> bool {
        let ChannelRecord {
            schema_version,
            channel_id,
            temporary_channel_id,
            role,
            peer,
            created_at_ms,
            channel_seed,
            key_check,
            terms,
            local,
            remote,
            own_cells,
            deadline_ms,
            funding_tx,
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
            commitment_signed_held,
            restored_from_backup,
        } = self;
        *schema_version == other.schema_version
            && *channel_id == other.channel_id
            && *temporary_channel_id == other.temporary_channel_id
            && *role == other.role
            && *peer == other.peer
            && *created_at_ms == other.created_at_ms
            && *channel_seed == other.channel_seed
            && *key_check == other.key_check
            && *terms == other.terms
            && *local == other.local
            && *remote == other.remote
            && *own_cells == other.own_cells
            && *deadline_ms == other.deadline_ms
            && same_tx(funding_tx, &other.funding_tx)
            && *peer_inputs_checked == other.peer_inputs_checked
            && *funding_inputs == other.funding_inputs
            && *peer_tx_complete_nonce == other.peer_tx_complete_nonce
            && *peer_commitment_signature == other.peer_commitment_signature
            && *peer_witnesses == other.peer_witnesses
            && *funding_confirmed == other.funding_confirmed
            && *peer_channel_ready == other.peer_channel_ready
            && *external_funding == other.external_funding
            && *peer_next_commitment_nonce == other.peer_next_commitment_nonce
            && *close == other.close
            && *closed == other.closed
            && *commitment_signed_held == other.commitment_signed_held
            && *restored_from_backup == other.restored_from_backup
    }
}

impl Eq for ChannelRecord {}

impl PartialEq for ExternalFundingPersistState {
    fn eq(&self, other: &Self) -> bool {
        let ExternalFundingPersistState {
            funding_lock_script,
            funding_lock_script_cell_deps,
            unsigned_funding_tx,
            started_at_ms,
            signed_funding_witnesses,
        } = self;
        *funding_lock_script == other.funding_lock_script
            && *funding_lock_script_cell_deps == other.funding_lock_script_cell_deps
            && same_tx(unsigned_funding_tx, &other.unsigned_funding_tx)
            && *started_at_ms == other.started_at_ms
            && *signed_funding_witnesses == other.signed_funding_witnesses
    }
}

impl PartialEq for CloseProgress {
    fn eq(&self, other: &Self) -> bool {
        let CloseProgress {
            local_shutdown,
            remote_shutdown,
            peer_closing_signature,
            force_closed_at_ms,
            commitment_on_chain,
            closing_on_chain,
            claim_tx,
        } = self;
        *local_shutdown == other.local_shutdown
            && *remote_shutdown == other.remote_shutdown
            && *peer_closing_signature == other.peer_closing_signature
            && *force_closed_at_ms == other.force_closed_at_ms
            && *commitment_on_chain == other.commitment_on_chain
            && *closing_on_chain == other.closing_on_chain
            && same_tx(claim_tx, &other.claim_tx)
    }
}

impl ChannelRecord {
    /// The record's stored bytes: schema 6's binary layout.
    pub fn encode(&self) -> Vec<u8> {
        let bytes = codec::encode(self);
        // Every record written must read back as itself; tests run every
        // flow through this.
        debug_assert!(
            codec::decode(&bytes).is_ok_and(|read| read == *self),
            "record {} does not read back as written",
            self.key()
        );
        bytes
    }

    /// Reads a record written by this or an earlier schema version; an
    /// error names the channel (`key`, the key it is filed under).
    pub fn decode(key: &str, bytes: &[u8]) -> Result<Self, RecordDecodeError> {
        Self::read(bytes).map_err(|error| RecordDecodeError {
            channel_id: key.to_owned(),
            reason: error.to_string(),
        })
    }

    /// Reads stored bytes: the binary layout of schemas 3 to 6, or the JSON of schemas 1
    /// and 2 (an object, so `{` after optional whitespace, which no binary
    /// record starts with). A record read from JSON keeps its version until
    /// [`ChannelRecord::upgrade`] brings it up to date.
    pub fn read(bytes: &[u8]) -> Result<Self, RecordFormatError> {
        let first = bytes.iter().find(|byte| !matches!(byte, b' ' | b'\t' | b'\n' | b'\r'));
        let record = if first == Some(&b'{') {
            Self::read_json(bytes)?
        } else {
            codec::decode(bytes)?
        };
        record.check_consistency().map_err(RecordFormatError::Inconsistent)?;
        Ok(record)
    }

    /// A record of schema 1 or 2, read exactly as those versions' module did.
    fn read_json(bytes: &[u8]) -> Result<Self, RecordFormatError> {
        let value = crate::json::parse_bytes(bytes).map_err(|e| RecordFormatError::NotJson(e.to_string()))?;
        let version = value
            .get("schema_version")
            .and_then(|v| v.as_u64())
            .ok_or(RecordFormatError::NoSchemaVersion)?;
        if version > SCHEMA_VERSION as u64 {
            return Err(RecordFormatError::Newer { version });
        }
        if version > LAST_JSON_SCHEMA_VERSION {
            return Err(RecordFormatError::NoJsonSchema { version });
        }
        legacy::copies_agree(&value).map_err(RecordFormatError::Inconsistent)?;
        legacy::read(&value).map_err(RecordFormatError::Json)
    }

    /// Brings a record of an earlier schema up to this one. Version 1 left
    /// the contracts and the timeout to the node's configuration, which fills
    /// them in (and so the deadline, computed the way version 1 did). Version
    /// 1 kept no hash-checked input cells, so a flow it left mid-signature is
    /// refused at the point it would release witnesses (and aborted if it
    /// may). Version 2 holds every fact of version 3, only stored as JSON.
    /// Returns whether anything changed, so the caller stores it: every
    /// record read from JSON is written back in the current layout, and so is a schema 3 to 5 record.
    pub fn upgrade(&mut self, config: &NodeConfig) -> bool {
        if self.schema_version >= SCHEMA_VERSION {
            return false;
        }
        if self.schema_version < 2 {
            let grace_ms = match self.role {
                Role::Acceptor => config
                    .acceptor
                    .as_ref()
                    .map_or(DEFAULT_ACCEPTOR_GRACE_MS, |a| a.grace_ms),
                Role::Initiator => 0,
            };
            self.terms.funding_lock = config.funding_lock.clone();
            self.terms.commitment_lock = config.commitment_lock.clone();
            self.terms.timeout_ms = config.external_funding_timeout_ms.saturating_add(grace_ms);
            let started_at_ms = self
                .external_funding
                .as_ref()
                .map_or(self.created_at_ms, |ext| ext.started_at_ms);
            self.deadline_ms = started_at_ms.saturating_add(self.terms.timeout_ms);
        }
        self.schema_version = SCHEMA_VERSION;
        true
    }

    /// The node's cell deps for a lock of the same code replace the
    /// record's: deps are not signed, a record opened before the node knew
    /// them names none (no commitment, closing or claim tx could then be
    /// broadcast), and those it names go stale when the contract's code cell
    /// moves (Fiber publishes it under a type id, found anew at each start).
    /// A node that names none leaves the record's.
    pub fn take_node_cell_deps(&mut self, config: &NodeConfig) -> bool {
        if self.is_tombstone() {
            return false;
        }
        let mut taken = false;
        for (ours, node) in [
            (&mut self.terms.funding_lock, &config.funding_lock),
            (&mut self.terms.commitment_lock, &config.commitment_lock),
        ] {
            if ours.same_code(node) && !node.cell_deps.is_empty() && ours.cell_deps != node.cell_deps {
                ours.cell_deps = node.cell_deps.clone();
                taken = true;
            }
        }
        taken
    }

    /// Closed, with nothing left to watch on chain: a record nothing at boot
    /// needs. Only the answers about closed channels read it, so a store
    /// files it apart and a boot restores it after the live flows
    /// ([`crate::store::Store::load_tombstones`]).
    pub fn is_tombstone(&self) -> bool {
        self.closed.as_ref().is_some_and(|closure| closure.watch.is_none())
    }

    /// Closes the record with nothing left to watch and wipes it: the
    /// tombstone of an abort whose signatures never went out, which no
    /// money on chain can depend on.
    pub fn close_as_tombstone(&mut self, flags: CloseFlags, reason: String, closed_at_ms: u64) {
        self.closed = Some(Closure {
            flags,
            reason,
            closed_at_ms,
            watch: None,
        });
        self.wipe();
    }

    /// Whether the seed was wiped ([`ChannelRecord::wipe`]): no key of the
    /// channel can be derived any more.
    pub fn seed_wiped(&self) -> bool {
        self.channel_seed.0 == [0; 32]
    }

    /// Closes the record once the tx that ended it settled: the tombstone
    /// of [`ChannelRecord::settle`].
    pub fn settle_as_tombstone(&mut self, flags: CloseFlags, reason: String, closed_at_ms: u64) {
        self.closed = Some(Closure {
            flags,
            reason,
            closed_at_ms,
            watch: None,
        });
        self.settle();
    }

    /// The tombstone of a channel our signatures could move money of (a
    /// funded one, or an abort whose funding tx was handed out): as
    /// [`ChannelRecord::wipe`], but the seed and its key check stay. That
    /// the channel ended is the chain node's word, which can be false (a
    /// node that lies, a reorganisation deeper than the settle depth);
    /// with the seed, the node secret still derives every key of the
    /// channel. The seed alone moves nothing: each key needs both.
    pub fn settle(&mut self) {
        let (seed, key_check) = (self.channel_seed, self.key_check);
        self.wipe();
        self.channel_seed = seed;
        self.key_check = key_check;
    }

    /// Leaves only the tombstone: ids, peer, terms, what each side announced
    /// and why it closed. The seed goes, and with it every key (a settled
    /// channel keeps it: [`ChannelRecord::settle`]).
    pub fn wipe(&mut self) {
        if let Some(closure) = &mut self.closed {
            closure.watch = None;
        }
        self.external_funding = None;
        self.channel_seed = Hash256([0; 32]);
        self.key_check = None;
        self.own_cells.clear();
        self.funding_tx = None;
        self.funding_inputs.clear();
        self.peer_witnesses = None;
        self.peer_commitment_signature = None;
        self.peer_next_commitment_nonce = None;
        self.close = None;
    }

    /// Cross-field rules the types cannot express.
    fn check_consistency(&self) -> Result<(), &'static str> {
        if self.external_funding.is_some() && self.role != Role::Initiator {
            return Err("only the initiator has external funding state");
        }
        Ok(())
    }

    /// The key a store files the record under.
    pub fn key(&self) -> String {
        self.channel_id.to_string()
    }
}

// How schemas 1 and 2 stored what is not plain JSON, for serde's derive: the
// reader of those versions, kept as the oracle `record/legacy.rs` is tested
// against (the walk there is what reads them).

/// Molecule entities (scripts, cell deps, transactions) as hex of their bytes.
mod molecule_hex {
    use super::*;
    use serde::Deserializer;

    pub fn deserialize<'de, T: CheckedDecode, D: Deserializer<'de>>(deserializer: D) -> Result<T, D::Error> {
        let bytes = hex_bytes::deserialize(deserializer)?;
        decode_checked("stored entity", &bytes).map_err(serde::de::Error::custom)
    }
}

mod molecule_hex_option {
    use super::*;
    use serde::Deserializer;

    pub fn deserialize<'de, T: CheckedDecode, D: Deserializer<'de>>(deserializer: D) -> Result<Option<T>, D::Error> {
        Option::<String>::deserialize(deserializer)?
            .map(|text| {
                let bytes = crate::primitives::decode_hex(&text).map_err(serde::de::Error::custom)?;
                decode_checked("stored entity", &bytes).map_err(serde::de::Error::custom)
            })
            .transpose()
    }
}

mod molecule_hex_list {
    use super::*;
    use serde::Deserializer;

    pub fn deserialize<'de, T: CheckedDecode, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<T>, D::Error> {
        hex_bytes_list::deserialize(deserializer)?
            .iter()
            .map(|bytes| decode_checked("stored entity", bytes).map_err(serde::de::Error::custom))
            .collect()
    }
}

mod hex_bytes_option {
    use super::*;
    use serde::Deserializer;

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Vec<u8>>, D::Error> {
        Option::<String>::deserialize(deserializer)?
            .map(|text| crate::primitives::decode_hex(&text).map_err(serde::de::Error::custom))
            .transpose()
    }
}

mod hex_bytes_list_option {
    use super::*;
    use serde::Deserializer;

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Vec<Vec<u8>>>, D::Error> {
        Option::<Vec<String>>::deserialize(deserializer)?
            .map(|texts| {
                texts
                    .iter()
                    .map(|text| crate::primitives::decode_hex(text).map_err(serde::de::Error::custom))
                    .collect()
            })
            .transpose()
    }
}

mod resolved_cells {
    use super::*;
    use serde::Deserializer;

    #[derive(Deserialize)]
    struct StoredCell {
        #[serde(with = "molecule_hex")]
        output: packed::CellOutput,
        #[serde(with = "hex_bytes")]
        data: Vec<u8>,
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<ResolvedCell>, D::Error> {
        Ok(Vec::<StoredCell>::deserialize(deserializer)?
            .into_iter()
            .map(|cell| ResolvedCell {
                output: cell.output,
                data: cell.data,
            })
            .collect())
    }
}

mod live_cells {
    use super::*;
    use serde::Deserializer;

    #[derive(Deserialize)]
    struct StoredCell {
        #[serde(with = "molecule_hex")]
        out_point: packed::OutPoint,
        #[serde(with = "molecule_hex")]
        output: packed::CellOutput,
        #[serde(with = "hex_bytes")]
        output_data: Vec<u8>,
        block_number: u64,
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<LiveCell>, D::Error> {
        Ok(Vec::<StoredCell>::deserialize(deserializer)?
            .into_iter()
            .map(|cell| LiveCell {
                out_point: cell.out_point,
                output: cell.output,
                output_data: cell.output_data,
                block_number: cell.block_number,
            })
            .collect())
    }
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects)]
mod tests {
    use super::*;
    use crate::flow::state::CloseFlags;

    fn sample() -> ChannelRecord {
        let script = crate::tx::default_lock::lock_script([3; 20]);
        ChannelRecord {
            schema_version: SCHEMA_VERSION,
            channel_id: Hash256([1; 32]),
            temporary_channel_id: Hash256([2; 32]),
            role: Role::Initiator,
            peer: Pubkey([2; 33]),
            created_at_ms: 7,
            channel_seed: Hash256([9; 32]),
            key_check: Some(Hash256([6; 32])),
            terms: ChannelTerms {
                chain_hash: Hash256([4; 32]),
                funding_fee_rate: 1000,
                commitment_fee_rate: 1000,
                commitment_delay_epoch: 1,
                channel_flags: 4,
                funding_lock: ScriptTemplate::type_hash([0xf1; 32]),
                commitment_lock: ScriptTemplate::type_hash([0xc1; 32]),
                timeout_ms: 300_000,
            },
            local: PartyParams {
                funding_amount: 10,
                reserved_ckb_amount: 62,
                shutdown_script: script.clone(),
                max_tlc_value_in_flight: 10,
                max_tlc_number_in_flight: 125,
                funding_pubkey: Pubkey([2; 33]),
                tlc_basepoint: Pubkey([3; 33]),
                first_per_commitment_point: Pubkey([2; 33]),
                second_per_commitment_point: Pubkey([3; 33]),
                next_commitment_nonce: PubNonceBytes([2; 66]),
                next_revocation_nonce: PubNonceBytes([3; 66]),
            },
            remote: None,
            own_cells: Vec::new(),
            deadline_ms: 300_007,
            funding_tx: None,
            peer_inputs_checked: false,
            funding_inputs: Vec::new(),
            peer_tx_complete_nonce: None,
            peer_commitment_signature: None,
            peer_witnesses: None,
            funding_confirmed: false,
            peer_channel_ready: false,
            peer_next_commitment_nonce: None,
            close: None,
            external_funding: Some(ExternalFundingPersistState {
                funding_lock_script: script,
                funding_lock_script_cell_deps: Vec::new(),
                unsigned_funding_tx: None,
                started_at_ms: 7,
                signed_funding_witnesses: None,
            }),
            closed: None,
            commitment_signed_held: false,
            restored_from_backup: false,
        }
    }

    #[test]
    fn a_record_round_trips() {
        let record = sample();
        let key = record.key();
        assert_eq!(ChannelRecord::decode(&key, &record.encode()).unwrap(), record);
        let closed = ChannelRecord {
            closed: Some(Closure {
                flags: CloseFlags::FUNDING_ABORTED,
                reason: "timed out".into(),
                closed_at_ms: 9,
                watch: Some(AbortWatch {
                    conflict_seen_at_tip: Some(12),
                }),
            }),
            external_funding: None,
            ..record
        };
        assert_eq!(ChannelRecord::decode(&key, &closed.encode()).unwrap(), closed);
    }

    /// The schema 2 JSON of the benchmark's real flow (a frozen fixture).
    fn v2_json() -> serde_json::Value {
        let fixture: serde_json::Value =
            serde_json::from_str(include_str!("../../tests/fixtures/records-legacy.json")).unwrap();
        serde_json::from_str(fixture["v2"][0]["value"].as_str().unwrap()).unwrap()
    }

    fn config() -> NodeConfig {
        NodeConfig {
            node_secret: crate::crypto::keys::NodeSecret::from_bytes([5; 32]).unwrap(),
            chain_hash: Hash256([4; 32]),
            funding_lock: ScriptTemplate::type_hash([0xf2; 32]),
            commitment_lock: ScriptTemplate::type_hash([0xc2; 32]),
            external_funding_timeout_ms: 60_000,
            funding_confirmations: 3,
            settle_confirmations: crate::flow::config::DEFAULT_SETTLE_CONFIRMATIONS,
            acceptor: None,
        }
    }

    #[test]
    fn a_record_is_stored_in_the_binary_layout() {
        let bytes = sample().encode();
        assert_eq!(bytes[..4], RECORD_MAGIC);
        assert_eq!(bytes[4], 6);
        assert_eq!(ChannelRecord::read(&bytes).unwrap(), sample());
    }

    /// Schema 5 is schema 6 without its last byte: it still reads, as a
    /// record not restored from a backup, and the upgrade writes it back as
    /// schema 6.
    #[test]
    fn a_schema_5_record_reads_as_not_restored_from_a_backup() {
        let schema_5 = ChannelRecord {
            schema_version: 5,
            ..sample()
        };
        let mut bytes = ChannelRecord {
            restored_from_backup: true,
            ..schema_5.clone()
        }
        .encode();
        assert_eq!(bytes.pop(), Some(1), "the restored flag is the last byte");
        bytes[4] = 5;
        let mut read = ChannelRecord::read(&bytes).unwrap();
        assert_eq!(read, schema_5);
        assert!(!read.restored_from_backup);
        assert!(read.upgrade(&config()));
        assert_eq!(read.schema_version, SCHEMA_VERSION);
    }

    /// Schema 4 is schema 5 without its last field: it still reads, with no
    /// key check (a restore checks its key as a curve point, then fills it in).
    #[test]
    fn a_schema_4_record_reads_with_no_key_check() {
        let schema_4 = ChannelRecord {
            schema_version: 4,
            key_check: None,
            ..sample()
        };
        let mut bytes = schema_4.encode();
        assert_eq!(bytes.pop(), Some(0), "schema 6's restored flag");
        assert_eq!(bytes.pop(), Some(0), "the absent key check is the last byte");
        bytes[4] = 4;
        let mut read = ChannelRecord::read(&bytes).unwrap();
        assert_eq!(read, schema_4);
        assert!(read.upgrade(&config()));
        assert_eq!(read.schema_version, SCHEMA_VERSION);
        assert_eq!(read.key_check, None, "only a restore, after the key check, fills it in");
    }

    /// Schema 3 is schema 4 without its last byte: it still reads, with no
    /// signature held, and the upgrade writes it back as schema 5.
    #[test]
    fn a_schema_3_record_reads_with_no_signature_held() {
        let schema_3 = ChannelRecord {
            schema_version: 3,
            key_check: None,
            ..sample()
        };
        let mut bytes = ChannelRecord {
            commitment_signed_held: true,
            ..schema_3.clone()
        }
        .encode();
        assert_eq!(bytes.pop(), Some(0), "schema 6's restored flag");
        assert_eq!(bytes.pop(), Some(0), "the absent key check is the last byte");
        assert_eq!(bytes.pop(), Some(1), "the held flag is the one before");
        bytes[4] = 3;
        let mut read = ChannelRecord::read(&bytes).unwrap();
        assert_eq!(read, schema_3);
        assert!(!read.commitment_signed_held);
        assert!(read.upgrade(&config()));
        assert_eq!(read.schema_version, SCHEMA_VERSION);
    }

    /// A version 1 record (no contracts, timeout, deadline or checked inputs)
    /// still reads, and takes them from the node's configuration.
    #[test]
    fn a_version_1_record_is_read_and_upgraded_with_the_nodes_terms() {
        let mut v1 = v2_json();
        v1["schema_version"] = 1.into();
        for field in ["funding_lock", "commitment_lock", "timeout_ms"] {
            v1["terms"].as_object_mut().unwrap().remove(field);
        }
        for field in ["deadline_ms", "funding_inputs"] {
            v1.as_object_mut().unwrap().remove(field);
        }
        let key = v1["channel_id"].as_str().unwrap().to_owned();
        let mut read = ChannelRecord::decode(&key, v1.to_string().as_bytes()).unwrap();
        assert_eq!(read.schema_version, 1);
        assert_eq!(read.terms.funding_lock, ScriptTemplate::unset());
        let config = config();
        assert!(read.upgrade(&config));
        assert_eq!(read.schema_version, SCHEMA_VERSION);
        assert_eq!(read.terms.funding_lock, config.funding_lock);
        assert_eq!(read.terms.commitment_lock, config.commitment_lock);
        assert_eq!(read.terms.timeout_ms, 60_000);
        // Version 1's rule: the initiator's clock from started_at_ms.
        let started_at_ms = read.external_funding.as_ref().unwrap().started_at_ms;
        assert_eq!(read.deadline_ms, started_at_ms + 60_000);
        assert!(!read.upgrade(&config), "a current record is left alone");
        assert_eq!(ChannelRecord::decode(&key, &read.encode()).unwrap(), read);
    }

    /// A version 2 record has every fact already: the upgrade changes only its
    /// version, and says so, so that it is stored again in the binary layout.
    #[test]
    fn a_version_2_record_is_upgraded_to_be_stored_again() {
        let v2 = v2_json();
        let key = v2["channel_id"].as_str().unwrap().to_owned();
        let read = ChannelRecord::decode(&key, v2.to_string().as_bytes()).unwrap();
        assert_eq!(read.schema_version, 2);
        let mut upgraded = read.clone();
        assert!(upgraded.upgrade(&config()));
        assert_eq!(upgraded.schema_version, SCHEMA_VERSION);
        assert_eq!(
            ChannelRecord {
                schema_version: 2,
                ..upgraded.clone()
            },
            read
        );
        assert!(!upgraded.upgrade(&config()));

        // Stored before the upgrade ran (as a store may have it), a record
        // keeps its version in the binary layout, and the upgrade still runs.
        let mut reread = ChannelRecord::decode(&key, &read.encode()).unwrap();
        assert_eq!(reread, read);
        assert!(reread.upgrade(&config()));
        assert_eq!(reread, upgraded);
    }

    #[test]
    fn json_is_told_apart_by_its_first_byte() {
        let v2 = v2_json().to_string();
        let key = v2_json()["channel_id"].as_str().unwrap().to_owned();
        let padded = format!(" \t\r\n{v2}");
        assert_eq!(
            ChannelRecord::decode(&key, padded.as_bytes()).unwrap(),
            ChannelRecord::decode(&key, v2.as_bytes()).unwrap()
        );
        assert_eq!(ChannelRecord::read(b""), Err(RecordFormatError::NotARecord));
        assert_eq!(ChannelRecord::read(b"  "), Err(RecordFormatError::NotARecord));
        assert_eq!(ChannelRecord::read(b"[1]"), Err(RecordFormatError::NotARecord));
    }

    #[test]
    fn unreadable_records_are_refused_by_name() {
        let record = sample();
        let key = record.key();
        let error = ChannelRecord::decode(&key, b"{not json").unwrap_err();
        assert_eq!(error.channel_id, key);
        assert!(error.reason.contains("not JSON"), "{error}");

        let mut json = v2_json();
        json["schema_version"] = 3.into();
        assert_eq!(
            ChannelRecord::read(json.to_string().as_bytes()),
            Err(RecordFormatError::NoJsonSchema { version: 3 })
        );
        json["schema_version"] = (SCHEMA_VERSION + 1).into();
        let error = ChannelRecord::decode(&key, json.to_string().as_bytes()).unwrap_err();
        assert!(error.to_string().contains("newer"), "{error}");

        let mut damaged = v2_json();
        damaged["local"]["shutdown_script"] = "0xffffffff".into();
        assert!(ChannelRecord::decode(&key, damaged.to_string().as_bytes()).is_err());

        // A legacy record whose two copies of a fact disagree is refused.
        let mut inconsistent = v2_json();
        inconsistent["external_funding"]["signed_submitted"] = true.into();
        let error = ChannelRecord::decode(&key, inconsistent.to_string().as_bytes()).unwrap_err();
        assert!(error.reason.contains("signed_submitted"), "{error}");
    }
}
