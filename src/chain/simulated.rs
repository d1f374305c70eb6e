//! A simulated CKB node with an indexer: a deterministic, in-memory chain that
//! accepts or rejects transactions the way a CKB node would, for native tests
//! and, served over CKB JSON-RPC, for the browser. No I/O, threads or clocks:
//! blocks are mined only when the caller says so.
//!
//! ```
//! use ckb_types::{packed, prelude::*};
//! use fiber_funding::chain::{simulated::SimulatedChain, TxStatus};
//! use fiber_funding::tx::default_lock;
//! use k256::ecdsa::SigningKey;
//!
//! let mut chain = SimulatedChain::new();
//! let key = SigningKey::from_slice(&[7u8; 32]).unwrap();
//! let lock = default_lock::lock_script_for_key(key.verifying_key());
//! let funded = packed::CellOutput::new_builder()
//!     .capacity(1_000_0000_0000u64)
//!     .lock(lock.clone())
//!     .build();
//! let out_point = chain.genesis_cell(funded, Vec::new());
//!
//! // Send it all back to the same lock, less a fee.
//! let tx = packed::Transaction::new_builder()
//!     .raw(
//!         packed::RawTransaction::new_builder()
//!             .cell_deps(vec![chain.default_lock_cell_dep()].pack())
//!             .inputs(vec![packed::CellInput::new_builder().previous_output(out_point).build()].pack())
//!             .outputs(
//!                 vec![packed::CellOutput::new_builder()
//!                     .capacity(999_9990_0000u64)
//!                     .lock(lock)
//!                     .build()]
//!                 .pack(),
//!             )
//!             .outputs_data(vec![packed::Bytes::default()].pack())
//!             .build(),
//!     )
//!     .witnesses(vec![default_lock::placeholder_witness().as_bytes().pack()].pack())
//!     .build();
//! let tx = default_lock::sign_group(&tx, &[0], &key).unwrap();
//!
//! let tx_hash = chain.send_transaction(tx).unwrap();
//! assert_eq!(chain.transaction_status(&tx_hash), TxStatus::Pending);
//! let tip = chain.mine_block();
//! assert_eq!(chain.transaction_status(&tx_hash), TxStatus::Committed { block_number: tip });
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;

use ckb_types::{
    bytes::Bytes,
    core::{Capacity, DepType, EpochNumberWithFraction, ScriptHashType},
    packed,
    prelude::*,
};

use super::{ChainTip, LiveCell, TxReport, TxStatus};
use crate::primitives::encode_hex;
use crate::tx::default_lock::{self, DefaultLockError};

/// CKB's default `min_fee_rate`: shannons per 1,000 bytes of the transaction
/// as it sits in a block.
pub const DEFAULT_MIN_FEE_RATE: u64 = 1_000;

/// Blocks per epoch, as a CKB dev chain's genesis epoch.
pub const EPOCH_LENGTH: u64 = 1_000;

/// Stand-in for the genesis cell holding the secp256k1-blake160-sighash-all
/// code, for chains built by [`SimulatedChain::new`]: they check that lock in
/// Rust instead of running it. [`SimulatedChain::with_system_cells`] holds the
/// real binary.
const DEFAULT_LOCK_CODE: &[u8] = b"simulated secp256k1_blake160_sighash_all";

/// Runs a transaction's scripts as a CKB node's script verifier does (the
/// native build has one in ckb-vm, `native::script_vm`). The chain stays free
/// of ckb-vm, so it still builds for wasm32; the runner is plugged in.
pub trait ScriptRunner {
    /// Runs every lock and type script group of `tx`. `cell` gives the output
    /// and data of each cell the tx names: its inputs, its cell deps and the
    /// members of its dep groups (the chain has checked they are live).
    /// Returns the cycles used, or CKB's text for the failure, e.g.
    /// `Script(TransactionScriptError { source: Inputs[0].Lock, cause: … })`.
    fn run(
        &self,
        tx: &packed::Transaction,
        cell: &dyn Fn(&packed::OutPoint) -> Option<(packed::CellOutput, Bytes)>,
    ) -> Result<u64, String>;
}

/// The genesis TYPE_ID type script of CKB's secp256k1-blake160-sighash-all
/// code cell: its hash is the default lock's well-known code hash
/// ([`default_lock::SIGHASH_ALL_TYPE_HASH`]). Its args are blake2b of the
/// genesis cellbase's input (a null out point, index `u32::MAX`, since 0) and
/// the code cell's output index in CKB's genesis (1), as CKB computes them.
pub fn genesis_default_lock_type_script() -> packed::Script {
    let mut type_id_code_hash = [0u8; 32];
    type_id_code_hash[25..].copy_from_slice(b"TYPE_ID");
    let cellbase_input = packed::CellInput::new_builder()
        .previous_output(
            packed::OutPoint::new_builder()
                .tx_hash([0u8; 32])
                .index(u32::MAX)
                .build(),
        )
        .since(0u64)
        .build();
    let mut args = cellbase_input.as_slice().to_vec();
    args.extend_from_slice(&1u64.to_le_bytes());
    packed::Script::new_builder()
        .code_hash(type_id_code_hash)
        .hash_type(ScriptHashType::Type)
        .args(Bytes::from(crate::crypto::blake2b_256(&args).to_vec()))
        .build()
}

/// An out point as a map key: tx hash and output index.
type CellKey = ([u8; 32], u32);

/// Where `get_cells` resumes: a live cell's place in chain order. Its 16-byte
/// form sorts the same way and is what a JSON-RPC adapter hands out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
pub struct Cursor {
    block_number: u64,
    tx_index: u32,
    output_index: u32,
}

impl Cursor {
    /// Big-endian block number, tx index and output index.
    pub fn to_bytes(self) -> [u8; 16] {
        let mut out = [0u8; 16];
        out[..8].copy_from_slice(&self.block_number.to_be_bytes());
        out[8..12].copy_from_slice(&self.tx_index.to_be_bytes());
        out[12..].copy_from_slice(&self.output_index.to_be_bytes());
        out
    }

    /// Reads what [`Cursor::to_bytes`] wrote; `None` for any other length.
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        let bytes: &[u8; 16] = bytes.try_into().ok()?;
        Some(Self {
            block_number: u64::from_be_bytes(bytes[..8].try_into().ok()?),
            tx_index: u32::from_be_bytes(bytes[8..12].try_into().ok()?),
            output_index: u32::from_be_bytes(bytes[12..].try_into().ok()?),
        })
    }
}

/// Why the simulated node refused a transaction.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainRejection {
    #[error("transaction {} is already in the pool or committed (PoolRejectedDuplicatedTransaction)", encode_hex(.tx_hash))]
    Duplicated { tx_hash: [u8; 32] },
    #[error("the transaction has no inputs")]
    NoInputs,
    #[error("{outputs} outputs but {outputs_data} outputs_data entries")]
    OutputsDataMismatch { outputs: usize, outputs_data: usize },
    #[error("input {index} spends the same cell as an earlier input")]
    DuplicateInput { index: usize },
    #[error("input {index} spends a cell that never existed on chain")]
    UnknownInput { index: usize },
    #[error("input {index} spends a cell already spent by a committed transaction")]
    DeadInput { index: usize },
    #[error("input {index} is already spent by pool transaction {}", encode_hex(.pool_tx_hash))]
    Conflict { index: usize, pool_tx_hash: [u8; 32] },
    #[error("cell dep {index} is not a live cell")]
    UnknownCellDep { index: usize },
    #[error("cell dep {index} is a dep group whose data is not a list of out points")]
    InvalidDepGroup { index: usize },
    #[error("output {index} holds {capacity} shannons but occupies {occupied}")]
    OutputBelowOccupiedCapacity { index: usize, capacity: u64, occupied: u64 },
    #[error("outputs hold {outputs} shannons, more than the inputs' {inputs}")]
    OutputsExceedInputs { inputs: u128, outputs: u128 },
    #[error("fee {fee} shannons is below the minimum {min_fee} for this size")]
    LowFeeRate { fee: u64, min_fee: u64 },
    #[error("input {index}'s since is not yet reached (Immature)")]
    Immature { index: usize },
    #[error("input {index}'s since {since:#x} is malformed or uses a metric this chain does not check")]
    InvalidSince { index: usize, since: u64 },
    #[error("inputs use the default lock but no cell dep provides its code")]
    MissingDefaultLockCellDep,
    #[error("input {input_index}: the default lock rejects the transaction: {error}")]
    LockScript {
        input_index: usize,
        #[source]
        error: DefaultLockError,
    },
    /// The [`ScriptRunner`] refused the transaction; `reason` is its (CKB's) text.
    #[error("the scripts refuse the transaction: {reason}")]
    Script { reason: String },
}

struct CommittedTx {
    tx: packed::Transaction,
    block_number: u64,
}

/// What `get_cells` narrows a lock's cells to, as the indexer's `filter`
/// does: half-open ranges of the type script's length (code hash, hash type
/// and args; 0 for none) and of the data's length.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CellFilter {
    pub type_script_len: Option<std::ops::Range<u64>>,
    pub output_data_len: Option<std::ops::Range<u64>>,
}

impl CellFilter {
    /// Cells with no type script and no data: all a wallet can fund with.
    pub fn plain() -> Self {
        Self {
            type_script_len: Some(0..1),
            output_data_len: Some(0..1),
        }
    }

    pub fn admits(&self, output: &packed::CellOutput, data: &[u8]) -> bool {
        let type_len = output.type_().to_opt().map_or(0, |script| {
            script.code_hash().as_slice().len() + script.hash_type().as_slice().len() + script.args().raw_data().len()
        });
        let within = |range: &Option<std::ops::Range<u64>>, len: usize| {
            range.as_ref().is_none_or(|range| range.contains(&(len as u64)))
        };
        within(&self.type_script_len, type_len) && within(&self.output_data_len, data.len())
    }
}

/// An in-memory CKB chain, its transaction pool and an indexer over its live
/// cells.
///
/// What `send_transaction` checks: duplicates, input and cell-dep liveness
/// (dep groups expanded), conflicts with the pool, outputs against their data
/// and occupied capacity, capacity balance, CKB's minimum fee rate, and a valid
/// sighash-all signature for every input group locked by the default lock
/// (in Rust, so a refusal is a typed [`ChainRejection::LockScript`]). `since`
/// is checked for block numbers and epochs, absolute and relative (timestamps
/// are refused); header deps are not. Inputs must be committed cells: spending
/// an output of a pool transaction is rejected as an unknown input.
///
/// Other scripts (the channel's funding lock, a JoyID lock, any type script)
/// run only when a [`ScriptRunner`] is set ([`Self::set_script_runner`]): it
/// then runs every script of every tx, as a CKB node does. Without one they
/// are accepted unrun. A runner wants the real default lock in genesis
/// ([`Self::with_system_cells`]), not [`Self::new`]'s stand-in.
pub struct SimulatedChain {
    tip: u64,
    /// Transactions committed so far in the tip block, for the next tx index.
    tip_block_txs: u32,
    committed: BTreeMap<[u8; 32], CommittedTx>,
    /// Live cells in chain order, and the reverse lookup.
    live: BTreeMap<Cursor, CellKey>,
    live_at: BTreeMap<CellKey, Cursor>,
    /// Pool transactions in arrival order, and which of them spends each cell.
    pool: Vec<([u8; 32], packed::Transaction)>,
    pool_spent: BTreeMap<CellKey, [u8; 32]>,
    rejected: BTreeSet<[u8; 32]>,
    submissions: BTreeMap<[u8; 32], usize>,
    /// Counts transactions made out of thin air, so each gets its own hash.
    fabricated: u64,
    default_lock_code: CellKey,
    default_lock_dep_group: packed::OutPoint,
    min_fee_rate: u64,
    /// `Send` so a chain can still move to another thread, as it could before.
    script_runner: Option<Box<dyn ScriptRunner + Send>>,
    /// Cycles the runner reported for each transaction it accepted.
    cycles: BTreeMap<[u8; 32], u64>,
}

impl Default for SimulatedChain {
    fn default() -> Self {
        Self::new()
    }
}

impl SimulatedChain {
    /// A chain at block 0 whose genesis holds a stand-in for the default lock's
    /// code and a dep group pointing at it, like CKB's genesis. Its default
    /// lock is checked in Rust only: nothing here can run the stand-in.
    pub fn new() -> Self {
        let mut chain = Self::empty();
        let code = chain.genesis_tx(vec![(
            unspendable_output(DEFAULT_LOCK_CODE.len(), None),
            DEFAULT_LOCK_CODE.to_vec(),
        )]);
        chain.set_default_lock_dep_group(vec![out_point(&code, 0)]);
        chain
    }

    /// A chain at block 0 whose genesis holds CKB's real system cells as CKB's
    /// genesis does: `code` (secp256k1_blake160_sighash_all) carrying the
    /// genesis type id that makes its type hash the default lock's code hash,
    /// `data` (secp256k1_data, the tables it loads) beside it in the same
    /// transaction, and a dep group [code, data] as the second transaction.
    /// Set a [`ScriptRunner`] to run them.
    pub fn with_system_cells(code: Vec<u8>, data: Vec<u8>) -> Self {
        let mut chain = Self::empty();
        let system = chain.genesis_tx(vec![
            (
                unspendable_output(code.len(), Some(genesis_default_lock_type_script())),
                code,
            ),
            (unspendable_output(data.len(), None), data),
        ]);
        chain.set_default_lock_dep_group(vec![out_point(&system, 0), out_point(&system, 1)]);
        chain
    }

    fn empty() -> Self {
        Self {
            tip: 0,
            tip_block_txs: 0,
            committed: BTreeMap::new(),
            live: BTreeMap::new(),
            live_at: BTreeMap::new(),
            pool: Vec::new(),
            pool_spent: BTreeMap::new(),
            rejected: BTreeSet::new(),
            submissions: BTreeMap::new(),
            fabricated: 0,
            default_lock_code: ([0; 32], 0),
            default_lock_dep_group: packed::OutPoint::default(),
            min_fee_rate: DEFAULT_MIN_FEE_RATE,
            script_runner: None,
            cycles: BTreeMap::new(),
        }
    }

    /// The dep group transaction; `members[0]` is the default lock's code.
    fn set_default_lock_dep_group(&mut self, members: Vec<packed::OutPoint>) {
        self.default_lock_code = cell_key(&members[0]);
        let group_data = members.pack().as_bytes().to_vec();
        let group = self.genesis_tx(vec![(unspendable_output(group_data.len(), None), group_data)]);
        self.default_lock_dep_group = out_point(&group, 0);
    }

    /// Runs every script of every transaction from now on, after the chain's
    /// own checks (see the type's docs).
    pub fn set_script_runner(&mut self, runner: Box<dyn ScriptRunner + Send>) {
        self.script_runner = Some(runner);
    }

    /// The cycles the [`ScriptRunner`] spent on an accepted transaction; `None`
    /// without a runner or for a transaction it never ran.
    pub fn cycles(&self, tx_hash: &[u8; 32]) -> Option<u64> {
        self.cycles.get(tx_hash).copied()
    }

    /// Sets the minimum fee rate in shannons per 1,000 bytes; 0 turns the fee
    /// check off. Starts at [`DEFAULT_MIN_FEE_RATE`].
    pub fn set_min_fee_rate(&mut self, shannons_per_kilobyte: u64) {
        self.min_fee_rate = shannons_per_kilobyte;
    }

    /// The cell dep a transaction spending default-lock cells must carry.
    pub fn default_lock_cell_dep(&self) -> packed::CellDep {
        packed::CellDep::new_builder()
            .out_point(self.default_lock_dep_group.clone())
            .dep_type(DepType::DepGroup)
            .build()
    }

    /// Creates a live cell out of thin air in the tip block, e.g. to fund an
    /// account. No checks: the caller picks a sensible capacity.
    pub fn genesis_cell(&mut self, output: packed::CellOutput, data: Vec<u8>) -> packed::OutPoint {
        let tx_hash = self.genesis_tx(vec![(output, data)]);
        out_point(&tx_hash, 0)
    }

    /// Commits one transaction made out of thin air with these outputs.
    fn genesis_tx(&mut self, outputs: Vec<(packed::CellOutput, Vec<u8>)>) -> [u8; 32] {
        // Shaped like a cellbase: one null input whose `since` makes the hash unique.
        let null_input = packed::CellInput::new_builder()
            .previous_output(
                packed::OutPoint::new_builder()
                    .tx_hash([0u8; 32])
                    .index(u32::MAX)
                    .build(),
            )
            .since(self.fabricated)
            .build();
        self.fabricated += 1;
        let (outputs, outputs_data): (Vec<_>, Vec<_>) = outputs
            .into_iter()
            .map(|(output, data)| (output, Bytes::from(data)))
            .unzip();
        let tx = packed::Transaction::new_builder()
            .raw(
                packed::RawTransaction::new_builder()
                    .inputs(vec![null_input].pack())
                    .outputs(outputs.pack())
                    .outputs_data(outputs_data.pack())
                    .build(),
            )
            .build();
        let tx_hash: [u8; 32] = tx.calc_tx_hash().unpack();
        self.commit(tx_hash, tx, false);
        tx_hash
    }

    /// Live cells whose type script is exactly `type_script`, in chain
    /// order, at most `limit`, without their data (as the indexer is asked).
    pub fn cells_with_type(&self, type_script: &packed::Script, limit: usize) -> Vec<LiveCell> {
        self.live
            .iter()
            .filter_map(|(cursor, key)| {
                let (output, _) = self.committed_output(key)?;
                let typed = output
                    .type_()
                    .to_opt()
                    .is_some_and(|t| t.as_slice() == type_script.as_slice());
                typed.then(|| LiveCell {
                    out_point: out_point(&key.0, key.1),
                    output,
                    output_data: Vec::new(),
                    block_number: cursor.block_number,
                })
            })
            .take(limit)
            .collect()
    }

    /// Live cells locked by exactly `lock` that `filter` admits, in (block
    /// number, tx index, output index) order, at most `limit` of them,
    /// starting after `after`. The cursor is `None` once no further cell
    /// matches; a `limit` of 0 returns nothing and hands `after` back. Like
    /// CKB's indexer, this sees committed cells only: a cell a pool
    /// transaction spends is still listed.
    pub fn get_cells(
        &self,
        lock: &packed::Script,
        filter: &CellFilter,
        limit: usize,
        after: Option<Cursor>,
    ) -> (Vec<LiveCell>, Option<Cursor>) {
        if limit == 0 {
            return (Vec::new(), after);
        }
        let start = after.map_or(Bound::Unbounded, Bound::Excluded);
        let mut matching = self.live.range((start, Bound::Unbounded)).filter_map(|(cursor, key)| {
            let (output, data) = self.committed_output(key)?;
            (output.lock().as_slice() == lock.as_slice() && filter.admits(&output, &data)).then(|| {
                let cell = LiveCell {
                    out_point: out_point(&key.0, key.1),
                    output,
                    output_data: data.to_vec(),
                    block_number: cursor.block_number,
                };
                (*cursor, cell)
            })
        });
        let mut cells = Vec::new();
        let mut last = None;
        for (cursor, cell) in matching.by_ref().take(limit) {
            cells.push(cell);
            last = Some(cursor);
        }
        let more = matching.next().is_some();
        (cells, if more { last } else { None })
    }

    pub fn tip_block_number(&self) -> u64 {
        self.tip
    }

    /// The epoch of block `number`: epochs of [`EPOCH_LENGTH`] blocks, as on
    /// a CKB dev chain.
    pub fn epoch_of(number: u64) -> EpochNumberWithFraction {
        EpochNumberWithFraction::new(number / EPOCH_LENGTH, number % EPOCH_LENGTH, EPOCH_LENGTH)
    }

    pub fn tip(&self) -> ChainTip {
        ChainTip {
            block_number: self.tip,
            epoch: Self::epoch_of(self.tip).full_value(),
        }
    }

    /// A transaction's status, its block's epoch and the tip, as a node reports them.
    pub fn report(&self, tx_hash: &[u8; 32]) -> TxReport {
        let status = self.transaction_status(tx_hash);
        let block_epoch = match status {
            TxStatus::Committed { block_number } => Some(Self::epoch_of(block_number).full_value()),
            _ => None,
        };
        TxReport {
            status,
            block_epoch,
            tip: self.tip(),
        }
    }

    /// How many blocks move the tip's epoch by at least `epochs` (a number
    /// and a fraction of one), as CKB's `generate_epochs` mines: every epoch
    /// here is [`EPOCH_LENGTH`] blocks. A zero length counts as no fraction,
    /// as CKB normalises it. `None` if it does not fit a `u64`.
    pub fn blocks_for_epochs(epochs: EpochNumberWithFraction) -> Option<u64> {
        let whole = u128::from(epochs.number()) * u128::from(EPOCH_LENGTH);
        let fraction = match epochs.length() {
            0 => 0,
            length => (u128::from(epochs.index()) * u128::from(EPOCH_LENGTH)).div_ceil(u128::from(length)),
        };
        u64::try_from(whole + fraction).ok()
    }

    /// Mines blocks until the tip is `epochs` epochs further (`generate_epochs`).
    pub fn mine_epochs(&mut self, epochs: u64) -> u64 {
        let target = self.tip.saturating_add(epochs.saturating_mul(EPOCH_LENGTH));
        while self.tip < target {
            self.mine_block();
        }
        self.tip
    }

    /// The committed transaction that spent `out_point`, if any.
    pub fn spender_of(&self, out_point: &packed::OutPoint) -> Option<[u8; 32]> {
        if self.is_live(out_point) {
            return None;
        }
        self.committed.iter().find_map(|(hash, committed)| {
            committed
                .tx
                .raw()
                .inputs()
                .into_iter()
                .any(|input| input.previous_output().as_slice() == out_point.as_slice())
                .then_some(*hash)
        })
    }

    /// Whether the out point is a committed, unspent cell (as CKB's
    /// `get_live_cell` says "live").
    pub fn is_live(&self, out_point: &packed::OutPoint) -> bool {
        self.live_at.contains_key(&cell_key(out_point))
    }

    /// Checks `tx` and puts it in the pool, returning its hash. A refused
    /// transaction's status becomes [`TxStatus::Rejected`] until it is sent
    /// again and accepted. Every call is counted in [`Self::submissions`].
    pub fn send_transaction(&mut self, tx: packed::Transaction) -> Result<[u8; 32], ChainRejection> {
        let tx_hash: [u8; 32] = tx.calc_tx_hash().unpack();
        *self.submissions.entry(tx_hash).or_default() += 1;
        if self.committed.contains_key(&tx_hash) || self.pool_position(&tx_hash).is_some() {
            return Err(ChainRejection::Duplicated { tx_hash });
        }
        let cycles = match self.check(&tx, false) {
            Ok(cycles) => cycles,
            Err(rejection) => {
                self.rejected.insert(tx_hash);
                return Err(rejection);
            }
        };
        self.rejected.remove(&tx_hash);
        if let Some(cycles) = cycles {
            self.cycles.insert(tx_hash, cycles);
        }
        for input in tx.raw().inputs() {
            self.pool_spent.insert(cell_key(&input.previous_output()), tx_hash);
        }
        self.pool.push((tx_hash, tx));
        Ok(tx_hash)
    }

    pub fn transaction_status(&self, tx_hash: &[u8; 32]) -> TxStatus {
        if let Some(committed) = self.committed.get(tx_hash) {
            TxStatus::Committed {
                block_number: committed.block_number,
            }
        } else if self.pool_position(tx_hash).is_some() {
            TxStatus::Pending
        } else if self.rejected.contains(tx_hash) {
            TxStatus::Rejected
        } else {
            TxStatus::Unknown
        }
    }

    /// A pool or committed transaction.
    pub fn transaction(&self, tx_hash: &[u8; 32]) -> Option<packed::Transaction> {
        match self.committed.get(tx_hash) {
            Some(committed) => Some(committed.tx.clone()),
            None => self
                .pool_position(tx_hash)
                .map(|position| self.pool[position].1.clone()),
        }
    }

    /// Mines a block holding every pool transaction, in arrival order, and
    /// returns the new tip.
    pub fn mine_block(&mut self) -> u64 {
        self.start_block();
        self.pool_spent.clear();
        for (tx_hash, tx) in std::mem::take(&mut self.pool) {
            self.commit(tx_hash, tx, true);
        }
        self.tip
    }

    /// Mines a block holding only `tx`, as if another node's miner had
    /// included it: the way a wallet spending the same cells elsewhere looks
    /// from here. It is checked like [`Self::send_transaction`] except for pool
    /// conflicts; pool transactions spending its inputs leave the pool as
    /// [`TxStatus::Rejected`]. Returns the new tip.
    pub fn mine_foreign_transaction(&mut self, tx: packed::Transaction) -> Result<u64, ChainRejection> {
        let tx_hash: [u8; 32] = tx.calc_tx_hash().unpack();
        if self.committed.contains_key(&tx_hash) {
            return Err(ChainRejection::Duplicated { tx_hash });
        }
        if let Some(cycles) = self.check(&tx, true)? {
            self.cycles.insert(tx_hash, cycles);
        }
        if let Some(position) = self.pool_position(&tx_hash) {
            self.pool.remove(position);
        }
        self.start_block();
        self.commit(tx_hash, tx, true);
        self.evict_double_spent();
        Ok(self.tip)
    }

    /// How many `send_transaction` calls named this transaction, accepted or not.
    pub fn submissions(&self, tx_hash: &[u8; 32]) -> usize {
        self.submissions.get(tx_hash).copied().unwrap_or(0)
    }

    fn start_block(&mut self) {
        self.tip += 1;
        self.tip_block_txs = 0;
    }

    fn commit(&mut self, tx_hash: [u8; 32], tx: packed::Transaction, spends_inputs: bool) {
        let raw = tx.raw();
        if spends_inputs {
            for input in raw.inputs() {
                if let Some(cursor) = self.live_at.remove(&cell_key(&input.previous_output())) {
                    self.live.remove(&cursor);
                }
            }
        }
        let tx_index = self.tip_block_txs;
        self.tip_block_txs += 1;
        for output_index in 0..raw.outputs().len() as u32 {
            let cursor = Cursor {
                block_number: self.tip,
                tx_index,
                output_index,
            };
            self.live.insert(cursor, (tx_hash, output_index));
            self.live_at.insert((tx_hash, output_index), cursor);
        }
        self.rejected.remove(&tx_hash);
        self.committed.insert(
            tx_hash,
            CommittedTx {
                tx,
                block_number: self.tip,
            },
        );
    }

    /// Drops pool transactions whose inputs a committed transaction has spent.
    fn evict_double_spent(&mut self) {
        let (kept, evicted): (Vec<_>, Vec<_>) = std::mem::take(&mut self.pool).into_iter().partition(|(_, tx)| {
            tx.raw()
                .inputs()
                .into_iter()
                .all(|input| self.live_at.contains_key(&cell_key(&input.previous_output())))
        });
        for (tx_hash, _) in evicted {
            self.pool_spent.retain(|_, spender| *spender != tx_hash);
            self.rejected.insert(tx_hash);
        }
        self.pool = kept;
    }

    fn pool_position(&self, tx_hash: &[u8; 32]) -> Option<usize> {
        self.pool.iter().position(|(hash, _)| hash == tx_hash)
    }

    fn committed_output(&self, key: &CellKey) -> Option<(packed::CellOutput, Bytes)> {
        let raw = self.committed.get(&key.0)?.tx.raw();
        let index = key.1 as usize;
        Some((raw.outputs().get(index)?, raw.outputs_data().get(index)?.raw_data()))
    }

    fn live_output(&self, out_point: &packed::OutPoint) -> Option<(packed::CellOutput, Bytes)> {
        let key = cell_key(out_point);
        self.live_at.contains_key(&key).then_some(())?;
        self.committed_output(&key)
    }

    /// The node's checks: structure, inputs and deps, capacity, fee, and
    /// scripts last, so the first failure reported is the cheapest one, as in CKB.
    /// Returns the runner's cycles, if a runner is set.
    fn check(&self, tx: &packed::Transaction, ignore_pool_conflicts: bool) -> Result<Option<u64>, ChainRejection> {
        let raw = tx.raw();
        if raw.inputs().is_empty() {
            return Err(ChainRejection::NoInputs);
        }
        if raw.outputs().len() != raw.outputs_data().len() {
            return Err(ChainRejection::OutputsDataMismatch {
                outputs: raw.outputs().len(),
                outputs_data: raw.outputs_data().len(),
            });
        }

        let mut spent = BTreeSet::new();
        let mut inputs_capacity: u128 = 0;
        for (index, input) in raw.inputs().into_iter().enumerate() {
            let out_point = input.previous_output();
            let key = cell_key(&out_point);
            if !spent.insert(key) {
                return Err(ChainRejection::DuplicateInput { index });
            }
            let Some((output, _)) = self.live_output(&out_point) else {
                return Err(if self.committed_output(&key).is_some() {
                    ChainRejection::DeadInput { index }
                } else {
                    ChainRejection::UnknownInput { index }
                });
            };
            if let (Some(pool_tx_hash), false) = (self.pool_spent.get(&key), ignore_pool_conflicts) {
                return Err(ChainRejection::Conflict {
                    index,
                    pool_tx_hash: *pool_tx_hash,
                });
            }
            inputs_capacity += u128::from(Unpack::<u64>::unpack(&output.capacity()));
            self.check_since(index, input.since().unpack(), &key)?;
        }

        let code_cells = self.resolve_cell_deps(&raw)?;

        let mut outputs_capacity: u128 = 0;
        for (index, (output, data)) in raw.outputs().into_iter().zip(raw.outputs_data()).enumerate() {
            let capacity: u64 = output.capacity().unpack();
            let occupied = Capacity::bytes(data.raw_data().len())
                .and_then(|data_capacity| output.occupied_capacity(data_capacity))
                .map_or(u64::MAX, Capacity::as_u64);
            if capacity < occupied {
                return Err(ChainRejection::OutputBelowOccupiedCapacity {
                    index,
                    capacity,
                    occupied,
                });
            }
            outputs_capacity += u128::from(capacity);
        }
        if outputs_capacity > inputs_capacity {
            return Err(ChainRejection::OutputsExceedInputs {
                inputs: inputs_capacity,
                outputs: outputs_capacity,
            });
        }

        let fee = u64::try_from(inputs_capacity - outputs_capacity).unwrap_or(u64::MAX);
        // CKB charges for the tx plus its 4-byte offset in the block.
        let size_in_block = tx.as_slice().len() as u64 + 4;
        let min_fee = self.min_fee_rate.saturating_mul(size_in_block) / 1_000;
        if fee < min_fee {
            return Err(ChainRejection::LowFeeRate { fee, min_fee });
        }

        let groups = default_lock::input_groups(tx, |out_point| self.live_output(out_point).map(|(output, _)| output))
            .expect("every input was found live above");
        for group in groups.iter().filter(|group| default_lock::is_default_lock(&group.lock)) {
            if !code_cells.contains(&self.default_lock_code) {
                return Err(ChainRejection::MissingDefaultLockCellDep);
            }
            default_lock::verify_group(tx, &group.input_indices, &group.lock.args().raw_data()).map_err(|error| {
                ChainRejection::LockScript {
                    input_index: group.input_indices[0],
                    error,
                }
            })?;
        }
        let Some(runner) = &self.script_runner else {
            return Ok(None);
        };
        runner
            .run(tx, &|out_point| self.live_output(out_point))
            .map(Some)
            .map_err(|reason| ChainRejection::Script { reason })
    }

    /// Whether input `index` may be spent in the next block, as CKB's since
    /// rules say (the commitment lock's delay is a relative epoch).
    fn check_since(&self, index: usize, since: u64, key: &CellKey) -> Result<(), ChainRejection> {
        const VALUE_MASK: u64 = 0x00ff_ffff_ffff_ffff;
        const RESERVED_BITS: u64 = 0x1f00_0000_0000_0000;
        if since == 0 {
            return Ok(());
        }
        let invalid = ChainRejection::InvalidSince { index, since };
        if since & RESERVED_BITS != 0 {
            return Err(invalid);
        }
        let relative = since >> 63 == 1;
        let value = since & VALUE_MASK;
        let next_block = self.tip.saturating_add(1);
        let cell_block = self.live_at.get(key).map_or(0, |cursor| cursor.block_number);
        let mature = match (since >> 61) & 0b11 {
            0 if relative => next_block >= cell_block.saturating_add(value),
            0 => next_block >= value,
            1 => {
                let delay = EpochNumberWithFraction::from_full_value(value);
                if delay.length() == 0 && delay.index() != 0 || delay.length() != 0 && delay.index() >= delay.length() {
                    return Err(invalid);
                }
                let start = if relative {
                    Self::epoch_of(cell_block)
                } else {
                    EpochNumberWithFraction::new(0, 0, 1)
                };
                epoch_sum_at_most(start, delay, Self::epoch_of(next_block))
            }
            _ => return Err(invalid),
        };
        if mature {
            Ok(())
        } else {
            Err(ChainRejection::Immature { index })
        }
    }

    /// The cells a transaction's deps make available, dep groups expanded.
    fn resolve_cell_deps(&self, raw: &packed::RawTransaction) -> Result<BTreeSet<CellKey>, ChainRejection> {
        let mut code_cells = BTreeSet::new();
        for (index, dep) in raw.cell_deps().into_iter().enumerate() {
            let Some((_, data)) = self.live_output(&dep.out_point()) else {
                return Err(ChainRejection::UnknownCellDep { index });
            };
            if dep.dep_type() != DepType::DepGroup.into() {
                code_cells.insert(cell_key(&dep.out_point()));
                continue;
            }
            let members =
                packed::OutPointVec::from_slice(&data).map_err(|_| ChainRejection::InvalidDepGroup { index })?;
            for member in members {
                if self.live_output(&member).is_none() {
                    return Err(ChainRejection::UnknownCellDep { index });
                }
                code_cells.insert(cell_key(&member));
            }
        }
        Ok(code_cells)
    }
}

/// `a + b <= limit`, each an epoch with a fraction, compared exactly.
fn epoch_sum_at_most(a: EpochNumberWithFraction, b: EpochNumberWithFraction, limit: EpochNumberWithFraction) -> bool {
    // number + index / length, over the common denominator (each length < 2^16).
    let scaled = |e: EpochNumberWithFraction, denominator: u128| {
        let length = u128::from(e.length().max(1));
        u128::from(e.number()) * denominator + u128::from(e.index()) * denominator / length
    };
    let denominator = [a, b, limit]
        .iter()
        .map(|e| u128::from(e.length().max(1)))
        .product::<u128>();
    scaled(a, denominator) + scaled(b, denominator) <= scaled(limit, denominator)
}

fn cell_key(out_point: &packed::OutPoint) -> CellKey {
    (out_point.tx_hash().unpack(), out_point.index().unpack())
}

fn out_point(tx_hash: &[u8; 32], index: u32) -> packed::OutPoint {
    packed::OutPoint::new_builder().tx_hash(tx_hash).index(index).build()
}

/// A genesis system cell: exact capacity, locked by a script no one can satisfy.
fn unspendable_output(data_len: usize, type_script: Option<packed::Script>) -> packed::CellOutput {
    let lock = packed::Script::new_builder().hash_type(ScriptHashType::Data).build();
    packed::CellOutput::new_builder()
        .lock(lock)
        .type_(type_script.pack())
        .build_exact_capacity(Capacity::bytes(data_len).expect("small genesis data"))
        .expect("small genesis cell")
}

#[cfg(test)]
mod tests {
    use super::*;
    use k256::ecdsa::SigningKey;

    const CKB: u64 = 100_000_000;
    const FEE: u64 = 100_000;

    fn alice() -> SigningKey {
        SigningKey::from_slice(&[0xa1; 32]).unwrap()
    }

    fn bob() -> SigningKey {
        SigningKey::from_slice(&[0xb0; 32]).unwrap()
    }

    fn lock_of(key: &SigningKey) -> packed::Script {
        default_lock::lock_script_for_key(key.verifying_key())
    }

    fn cell(capacity: u64, lock: packed::Script) -> packed::CellOutput {
        packed::CellOutput::new_builder().capacity(capacity).lock(lock).build()
    }

    fn fund(chain: &mut SimulatedChain, key: &SigningKey, capacity: u64) -> packed::OutPoint {
        chain.genesis_cell(cell(capacity, lock_of(key)), Vec::new())
    }

    fn unsigned_tx(
        cell_deps: Vec<packed::CellDep>,
        inputs: Vec<packed::OutPoint>,
        outputs: Vec<packed::CellOutput>,
    ) -> packed::Transaction {
        let inputs: Vec<packed::CellInput> = inputs
            .into_iter()
            .map(|out_point| packed::CellInput::new_builder().previous_output(out_point).build())
            .collect();
        let witnesses: Vec<packed::Bytes> = inputs
            .iter()
            .map(|_| default_lock::placeholder_witness().as_bytes().pack())
            .collect();
        let outputs_data: Vec<packed::Bytes> = outputs.iter().map(|_| Bytes::new().pack()).collect();
        packed::Transaction::new_builder()
            .raw(
                packed::RawTransaction::new_builder()
                    .cell_deps(cell_deps.pack())
                    .inputs(inputs.pack())
                    .outputs(outputs.pack())
                    .outputs_data(outputs_data.pack())
                    .build(),
            )
            .witnesses(witnesses.pack())
            .build()
    }

    /// Spends `inputs`, all locked by `key`, into `outputs`, signed.
    fn transfer(
        chain: &SimulatedChain,
        key: &SigningKey,
        inputs: Vec<packed::OutPoint>,
        outputs: Vec<packed::CellOutput>,
    ) -> packed::Transaction {
        let group: Vec<usize> = (0..inputs.len()).collect();
        let tx = unsigned_tx(vec![chain.default_lock_cell_dep()], inputs, outputs);
        default_lock::sign_group(&tx, &group, key).unwrap()
    }

    fn with_raw(tx: &packed::Transaction, raw: packed::RawTransaction) -> packed::Transaction {
        tx.clone().as_builder().raw(raw).build()
    }

    fn hash_of(tx: &packed::Transaction) -> [u8; 32] {
        tx.calc_tx_hash().unpack()
    }

    fn cells_of(chain: &SimulatedChain, key: &SigningKey) -> Vec<LiveCell> {
        chain.get_cells(&lock_of(key), &CellFilter::default(), 100, None).0
    }

    #[test]
    fn signed_transfer_goes_pending_then_committed() {
        let mut chain = SimulatedChain::new();
        let funded = fund(&mut chain, &alice(), 1_000 * CKB);
        let tx = transfer(
            &chain,
            &alice(),
            vec![funded.clone()],
            vec![
                cell(300 * CKB, lock_of(&bob())),
                cell(700 * CKB - FEE, lock_of(&alice())),
            ],
        );

        let tx_hash = chain.send_transaction(tx.clone()).unwrap();
        assert_eq!(tx_hash, hash_of(&tx));
        assert_eq!(chain.transaction_status(&tx_hash), TxStatus::Pending);
        assert_eq!(chain.transaction(&tx_hash).unwrap().as_slice(), tx.as_slice());
        // The indexer sees committed cells only.
        assert_eq!(cells_of(&chain, &alice()).len(), 1);
        assert!(cells_of(&chain, &bob()).is_empty());

        assert_eq!(chain.mine_block(), 1);
        assert_eq!(chain.tip_block_number(), 1);
        assert_eq!(
            chain.transaction_status(&tx_hash),
            TxStatus::Committed { block_number: 1 }
        );
        let bob_cells = cells_of(&chain, &bob());
        assert_eq!(bob_cells.len(), 1);
        assert_eq!(bob_cells[0].out_point.as_slice(), out_point(&tx_hash, 0).as_slice());
        assert_eq!(bob_cells[0].block_number, 1);
        let alice_cells = cells_of(&chain, &alice());
        assert_eq!(alice_cells.len(), 1);
        assert_eq!(alice_cells[0].out_point.as_slice(), out_point(&tx_hash, 1).as_slice());

        let again = transfer(&chain, &alice(), vec![funded], vec![cell(999 * CKB, lock_of(&bob()))]);
        assert_eq!(
            chain.send_transaction(again),
            Err(ChainRejection::DeadInput { index: 0 })
        );
    }

    /// A signed spend of `funded` to bob whose input carries `since`.
    fn spend_with_since(chain: &SimulatedChain, funded: &packed::OutPoint, since: u64) -> packed::Transaction {
        let tx = unsigned_tx(
            vec![chain.default_lock_cell_dep()],
            vec![funded.clone()],
            vec![cell(999 * CKB, lock_of(&bob()))],
        );
        let input = tx.raw().inputs().get(0).unwrap().as_builder().since(since).build();
        let raw = tx.raw().as_builder().inputs(vec![input].pack()).build();
        default_lock::sign_group(&with_raw(&tx, raw), &[0], &alice()).unwrap()
    }

    #[test]
    fn a_relative_epoch_since_matures_one_delay_after_the_cell_was_committed() {
        let mut chain = SimulatedChain::new();
        chain.mine_block();
        chain.mine_block();
        // Committed in block 2 (epoch 0, 2/1000); a delay of 1 + 500/1000 epochs.
        let funded = fund(&mut chain, &alice(), 1_000 * CKB);
        let delay = EpochNumberWithFraction::new(1, 500, 1_000).full_value();
        let tx = spend_with_since(&chain, &funded, 0xa000_0000_0000_0000 | delay);

        assert_eq!(
            chain.send_transaction(tx.clone()),
            Err(ChainRejection::Immature { index: 0 })
        );
        // Block 1502 is epoch 1, 502/1000: the committing epoch plus the delay.
        while chain.tip_block_number() < 1_500 {
            chain.mine_block();
        }
        assert_eq!(
            chain.send_transaction(tx.clone()),
            Err(ChainRejection::Immature { index: 0 })
        );
        chain.mine_block();
        assert!(chain.send_transaction(tx).is_ok());
    }

    #[test]
    fn a_timestamp_since_or_reserved_bits_are_refused_not_ignored() {
        let mut chain = SimulatedChain::new();
        let funded = fund(&mut chain, &alice(), 1_000 * CKB);
        for since in [0x4000_0000_0000_0001, 0x0100_0000_0000_0000, 0x6000_0000_0000_0000] {
            assert_eq!(
                chain.send_transaction(spend_with_since(&chain, &funded, since)),
                Err(ChainRejection::InvalidSince { index: 0, since })
            );
        }
        // An absolute block number in the future is immature, then fine.
        let tx = spend_with_since(&chain, &funded, 3);
        assert_eq!(
            chain.send_transaction(tx.clone()),
            Err(ChainRejection::Immature { index: 0 })
        );
        chain.mine_block();
        chain.mine_block();
        assert!(chain.send_transaction(tx).is_ok());
    }

    #[test]
    fn output_capacity_changed_after_signing_fails_the_signature() {
        let mut chain = SimulatedChain::new();
        let funded = fund(&mut chain, &alice(), 1_000 * CKB);
        let tx = transfer(&chain, &alice(), vec![funded], vec![cell(900 * CKB, lock_of(&bob()))]);
        let tampered_output = cell(800 * CKB, lock_of(&bob()));
        let raw = tx.raw().as_builder().outputs(vec![tampered_output].pack()).build();
        let tampered = with_raw(&tx, raw);
        assert_eq!(
            chain.send_transaction(tampered.clone()),
            Err(ChainRejection::LockScript {
                input_index: 0,
                error: DefaultLockError::PubkeyHashMismatch { input_index: 0 }
            })
        );
        assert_eq!(chain.transaction_status(&hash_of(&tampered)), TxStatus::Rejected);
    }

    #[test]
    fn unsigned_placeholder_does_not_pass() {
        let mut chain = SimulatedChain::new();
        let funded = fund(&mut chain, &alice(), 1_000 * CKB);
        let tx = unsigned_tx(
            vec![chain.default_lock_cell_dep()],
            vec![funded],
            vec![cell(900 * CKB, lock_of(&bob()))],
        );
        assert_eq!(
            chain.send_transaction(tx),
            Err(ChainRejection::LockScript {
                input_index: 0,
                error: DefaultLockError::SignatureDoesNotRecover { index: 0 }
            })
        );
    }

    #[test]
    fn signature_by_another_key_is_rejected() {
        let mut chain = SimulatedChain::new();
        let funded = fund(&mut chain, &alice(), 1_000 * CKB);
        let tx = transfer(&chain, &bob(), vec![funded], vec![cell(900 * CKB, lock_of(&bob()))]);
        assert!(matches!(
            chain.send_transaction(tx),
            Err(ChainRejection::LockScript { input_index: 0, .. })
        ));
    }

    #[test]
    fn every_default_lock_group_must_be_signed() {
        let mut chain = SimulatedChain::new();
        let from_alice = fund(&mut chain, &alice(), 500 * CKB);
        let from_bob = fund(&mut chain, &bob(), 500 * CKB);
        let tx = unsigned_tx(
            vec![chain.default_lock_cell_dep()],
            vec![from_alice, from_bob],
            vec![cell(900 * CKB, lock_of(&bob()))],
        );
        let alice_only = default_lock::sign_group(&tx, &[0], &alice()).unwrap();
        assert_eq!(
            chain.send_transaction(alice_only.clone()),
            Err(ChainRejection::LockScript {
                input_index: 1,
                error: DefaultLockError::SignatureDoesNotRecover { index: 1 }
            })
        );
        let both = default_lock::sign_group(&alice_only, &[1], &bob()).unwrap();
        chain.send_transaction(both).unwrap();
    }

    #[test]
    fn spending_a_cell_that_never_existed_is_unknown_input() {
        let mut chain = SimulatedChain::new();
        let funded = fund(&mut chain, &alice(), 1_000 * CKB);
        let missing = out_point(&[0x77; 32], 0);
        let past_last_output = out_point(&funded.tx_hash().unpack(), 1);
        for (position, bogus) in [missing, past_last_output].into_iter().enumerate() {
            let tx = transfer(
                &chain,
                &alice(),
                vec![funded.clone(), bogus],
                vec![cell(900 * CKB, lock_of(&bob()))],
            );
            assert_eq!(
                chain.send_transaction(tx),
                Err(ChainRejection::UnknownInput { index: 1 }),
                "case {position}"
            );
        }
    }

    #[test]
    fn double_spend_in_pool_is_a_conflict() {
        let mut chain = SimulatedChain::new();
        let funded = fund(&mut chain, &alice(), 1_000 * CKB);
        let first = transfer(
            &chain,
            &alice(),
            vec![funded.clone()],
            vec![cell(900 * CKB, lock_of(&bob()))],
        );
        let second = transfer(&chain, &alice(), vec![funded], vec![cell(800 * CKB, lock_of(&bob()))]);
        let first_hash = chain.send_transaction(first).unwrap();
        assert_eq!(
            chain.send_transaction(second.clone()),
            Err(ChainRejection::Conflict {
                index: 0,
                pool_tx_hash: first_hash
            })
        );
        assert_eq!(chain.transaction_status(&hash_of(&second)), TxStatus::Rejected);
        chain.mine_block();
        assert_eq!(
            chain.transaction_status(&first_hash),
            TxStatus::Committed { block_number: 1 }
        );
    }

    #[test]
    fn same_cell_twice_in_one_tx_is_a_duplicate_input() {
        let mut chain = SimulatedChain::new();
        let funded = fund(&mut chain, &alice(), 1_000 * CKB);
        let tx = transfer(
            &chain,
            &alice(),
            vec![funded.clone(), funded],
            vec![cell(900 * CKB, lock_of(&bob()))],
        );
        assert_eq!(
            chain.send_transaction(tx),
            Err(ChainRejection::DuplicateInput { index: 1 })
        );
    }

    #[test]
    fn duplicate_send_is_rejected_and_every_send_is_counted() {
        let mut chain = SimulatedChain::new();
        let funded = fund(&mut chain, &alice(), 1_000 * CKB);
        let tx = transfer(&chain, &alice(), vec![funded], vec![cell(900 * CKB, lock_of(&bob()))]);
        let tx_hash = hash_of(&tx);
        assert_eq!(chain.submissions(&tx_hash), 0);

        chain.send_transaction(tx.clone()).unwrap();
        assert_eq!(
            chain.send_transaction(tx.clone()),
            Err(ChainRejection::Duplicated { tx_hash })
        );
        // A duplicate leaves the pooled transaction alone.
        assert_eq!(chain.transaction_status(&tx_hash), TxStatus::Pending);
        chain.mine_block();
        assert_eq!(chain.send_transaction(tx), Err(ChainRejection::Duplicated { tx_hash }));
        assert_eq!(chain.submissions(&tx_hash), 3);
        assert_eq!(
            chain.transaction_status(&tx_hash),
            TxStatus::Committed { block_number: 1 }
        );
    }

    /// The client answers a second send of a pooled tx as CKB's RPC does
    /// (-1107, which `chain::rpc` takes as sent): the tx's hash, not a refusal.
    #[test]
    fn the_client_takes_a_second_send_of_a_pooled_tx_as_sent() {
        use crate::chain::client::ChainClient;
        use crate::chain::simulated_client::SimulatedChainClient;
        use futures::FutureExt;
        let chain = std::rc::Rc::new(std::cell::RefCell::new(SimulatedChain::new()));
        let funded = fund(&mut chain.borrow_mut(), &alice(), 1_000 * CKB);
        let tx = transfer(
            &chain.borrow(),
            &alice(),
            vec![funded],
            vec![cell(900 * CKB, lock_of(&bob()))],
        );
        let client = SimulatedChainClient::new(chain.clone());
        let sent = |tx: &packed::Transaction| client.send_transaction(tx.clone()).now_or_never().unwrap();
        let first = sent(&tx).unwrap();
        assert_eq!(sent(&tx).unwrap(), first);
        assert_eq!(chain.borrow().submissions(&first.0), 2);
    }

    #[test]
    fn rejected_transaction_can_be_resent_once_fixed() {
        let mut chain = SimulatedChain::new();
        let funded = fund(&mut chain, &alice(), 1_000 * CKB);
        let tx = transfer(&chain, &alice(), vec![funded], vec![cell(900 * CKB, lock_of(&bob()))]);
        chain.set_min_fee_rate(u64::MAX);
        assert!(matches!(
            chain.send_transaction(tx.clone()),
            Err(ChainRejection::LowFeeRate { .. })
        ));
        assert_eq!(chain.transaction_status(&hash_of(&tx)), TxStatus::Rejected);
        chain.set_min_fee_rate(DEFAULT_MIN_FEE_RATE);
        chain.send_transaction(tx.clone()).unwrap();
        assert_eq!(chain.transaction_status(&hash_of(&tx)), TxStatus::Pending);
        assert_eq!(chain.submissions(&hash_of(&tx)), 2);
    }

    #[test]
    fn fee_below_min_fee_rate_is_rejected() {
        let mut chain = SimulatedChain::new();
        let funded = fund(&mut chain, &alice(), 1_000 * CKB);
        // Leaves a 100-shannon fee; a signed one-in one-out tx is several hundred bytes.
        let tx = transfer(
            &chain,
            &alice(),
            vec![funded],
            vec![cell(1_000 * CKB - 100, lock_of(&bob()))],
        );
        let min_fee = (tx.as_slice().len() as u64 + 4) * DEFAULT_MIN_FEE_RATE / 1_000;
        assert_eq!(
            chain.send_transaction(tx),
            Err(ChainRejection::LowFeeRate { fee: 100, min_fee })
        );
    }

    #[test]
    fn outputs_exceeding_inputs_are_rejected() {
        let mut chain = SimulatedChain::new();
        let funded = fund(&mut chain, &alice(), 1_000 * CKB);
        let tx = transfer(
            &chain,
            &alice(),
            vec![funded],
            vec![cell(1_000 * CKB + 1, lock_of(&bob()))],
        );
        assert_eq!(
            chain.send_transaction(tx),
            Err(ChainRejection::OutputsExceedInputs {
                inputs: u128::from(1_000 * CKB),
                outputs: u128::from(1_000 * CKB + 1)
            })
        );
    }

    #[test]
    fn output_below_occupied_capacity_is_rejected() {
        let mut chain = SimulatedChain::new();
        let funded = fund(&mut chain, &alice(), 1_000 * CKB);
        // 8 capacity + 32 code hash + 1 hash type + 20 args = 61 bytes.
        let tx = transfer(
            &chain,
            &alice(),
            vec![funded],
            vec![cell(900 * CKB, lock_of(&alice())), cell(61 * CKB - 1, lock_of(&bob()))],
        );
        assert_eq!(
            chain.send_transaction(tx),
            Err(ChainRejection::OutputBelowOccupiedCapacity {
                index: 1,
                capacity: 61 * CKB - 1,
                occupied: 61 * CKB
            })
        );
    }

    #[test]
    fn outputs_and_outputs_data_must_pair_up() {
        let mut chain = SimulatedChain::new();
        let funded = fund(&mut chain, &alice(), 1_000 * CKB);
        let tx = transfer(&chain, &alice(), vec![funded], vec![cell(900 * CKB, lock_of(&bob()))]);
        let raw = tx
            .raw()
            .as_builder()
            .outputs_data(Vec::<packed::Bytes>::new().pack())
            .build();
        assert_eq!(
            chain.send_transaction(with_raw(&tx, raw)),
            Err(ChainRejection::OutputsDataMismatch {
                outputs: 1,
                outputs_data: 0
            })
        );
    }

    #[test]
    fn transaction_without_inputs_is_rejected() {
        let mut chain = SimulatedChain::new();
        let tx = unsigned_tx(vec![], vec![], vec![cell(100 * CKB, lock_of(&bob()))]);
        assert_eq!(chain.send_transaction(tx), Err(ChainRejection::NoInputs));
    }

    #[test]
    fn cell_deps_must_be_live_and_provide_the_default_lock() {
        let mut chain = SimulatedChain::new();
        let funded = fund(&mut chain, &alice(), 1_000 * CKB);
        let outputs = vec![cell(900 * CKB, lock_of(&bob()))];

        let unknown_dep = packed::CellDep::new_builder()
            .out_point(out_point(&[0x55; 32], 0))
            .build();
        let tx = unsigned_tx(
            vec![chain.default_lock_cell_dep(), unknown_dep],
            vec![funded.clone()],
            outputs.clone(),
        );
        let tx = default_lock::sign_group(&tx, &[0], &alice()).unwrap();
        assert_eq!(
            chain.send_transaction(tx),
            Err(ChainRejection::UnknownCellDep { index: 1 })
        );

        let tx = unsigned_tx(vec![], vec![funded.clone()], outputs.clone());
        let tx = default_lock::sign_group(&tx, &[0], &alice()).unwrap();
        assert_eq!(
            chain.send_transaction(tx),
            Err(ChainRejection::MissingDefaultLockCellDep)
        );

        // A live cell that is not a list of out points cannot be a dep group.
        let not_a_group = packed::CellDep::new_builder()
            .out_point(funded.clone())
            .dep_type(DepType::DepGroup)
            .build();
        let tx = unsigned_tx(vec![not_a_group], vec![funded], outputs);
        let tx = default_lock::sign_group(&tx, &[0], &alice()).unwrap();
        assert_eq!(
            chain.send_transaction(tx),
            Err(ChainRejection::InvalidDepGroup { index: 0 })
        );
    }

    #[test]
    fn default_lock_cell_dep_is_a_live_genesis_dep_group() {
        let chain = SimulatedChain::new();
        let dep = chain.default_lock_cell_dep();
        assert_eq!(dep.dep_type(), DepType::DepGroup.into());
        let (_, data) = chain.live_output(&dep.out_point()).unwrap();
        let members = packed::OutPointVec::from_slice(&data).unwrap();
        assert_eq!(members.len(), 1);
        assert_eq!(
            chain.transaction_status(&dep.out_point().tx_hash().unpack()),
            TxStatus::Committed { block_number: 0 }
        );
    }

    #[test]
    fn blocks_for_epochs_rounds_a_fraction_up_to_whole_blocks() {
        let blocks = |number, index, length| {
            SimulatedChain::blocks_for_epochs(EpochNumberWithFraction::new_unchecked(number, index, length))
        };
        assert_eq!(blocks(2, 0, 1), Some(2 * EPOCH_LENGTH));
        assert_eq!(blocks(0, 1, 2), Some(EPOCH_LENGTH / 2));
        assert_eq!(blocks(1, 1, 3), Some(EPOCH_LENGTH + 334), "1000/3 rounds up");
        assert_eq!(blocks(3, 0, 0), Some(3 * EPOCH_LENGTH), "a bare number is whole epochs");
        assert_eq!(blocks(0, 0, 1), Some(0));
    }

    #[test]
    fn the_genesis_type_id_gives_the_default_lock_code_hash() {
        let script = genesis_default_lock_type_script();
        assert_eq!(
            script.calc_script_hash().as_slice(),
            default_lock::SIGHASH_ALL_TYPE_HASH
        );
    }

    #[test]
    fn with_system_cells_lays_out_code_and_data_then_a_dep_group_of_both() {
        let chain = SimulatedChain::with_system_cells(b"code".to_vec(), b"data".to_vec());
        let group = chain.default_lock_cell_dep().out_point();
        let (_, group_data) = chain.live_output(&group).unwrap();
        let members: Vec<_> = packed::OutPointVec::from_slice(&group_data)
            .unwrap()
            .into_iter()
            .collect();
        assert_eq!(members.len(), 2);
        assert_eq!(members[0].tx_hash(), members[1].tx_hash(), "one genesis tx holds both");
        assert_ne!(members[0].tx_hash(), group.tx_hash());
        let (code_cell, code) = chain.live_output(&members[0]).unwrap();
        let (data_cell, data) = chain.live_output(&members[1]).unwrap();
        assert_eq!((&code[..], &data[..]), (&b"code"[..], &b"data"[..]));
        let code_type = code_cell.type_().to_opt().expect("the code cell has a type script");
        assert_eq!(
            code_type.calc_script_hash().as_slice(),
            default_lock::SIGHASH_ALL_TYPE_HASH
        );
        assert!(data_cell.type_().to_opt().is_none());
    }

    /// The input cells a runner was shown, as molecule bytes (`None`: not found).
    type Seen = std::sync::Arc<std::sync::Mutex<Vec<Option<Vec<u8>>>>>;

    /// A runner that answers `answer` and records the cells it was shown.
    struct FakeRunner {
        answer: Result<u64, String>,
        seen: Seen,
    }

    impl ScriptRunner for FakeRunner {
        fn run(
            &self,
            tx: &packed::Transaction,
            cell: &dyn Fn(&packed::OutPoint) -> Option<(packed::CellOutput, Bytes)>,
        ) -> Result<u64, String> {
            let mut seen = self.seen.lock().unwrap();
            for input in tx.raw().inputs() {
                seen.push(cell(&input.previous_output()).map(|(output, _)| output.as_slice().to_vec()));
            }
            self.answer.clone()
        }
    }

    fn fake_runner(answer: Result<u64, String>) -> (Box<FakeRunner>, Seen) {
        let seen = std::sync::Arc::default();
        let runner = Box::new(FakeRunner {
            answer,
            seen: std::sync::Arc::clone(&seen),
        });
        (runner, seen)
    }

    #[test]
    fn a_runner_refusal_rejects_the_tx_with_its_reason() {
        let mut chain = SimulatedChain::new();
        let funded = fund(&mut chain, &alice(), 1_000 * CKB);
        let reason = "Script(TransactionScriptError { source: Inputs[0].Lock, cause: ValidationFailure })";
        let (runner, seen) = fake_runner(Err(reason.into()));
        chain.set_script_runner(runner);
        let tx = transfer(&chain, &alice(), vec![funded], vec![cell(900 * CKB, lock_of(&bob()))]);
        let rejection = chain.send_transaction(tx.clone()).unwrap_err();
        assert_eq!(rejection, ChainRejection::Script { reason: reason.into() });
        assert!(rejection.to_string().contains(reason), "{rejection}");
        assert_eq!(chain.transaction_status(&hash_of(&tx)), TxStatus::Rejected);
        assert_eq!(chain.cycles(&hash_of(&tx)), None);
        // The runner saw the input's live cell.
        assert_eq!(
            *seen.lock().unwrap(),
            vec![Some(cell(1_000 * CKB, lock_of(&alice())).as_slice().to_vec())]
        );
    }

    #[test]
    fn a_runner_runs_after_the_rust_checks_and_its_cycles_are_kept() {
        let mut chain = SimulatedChain::new();
        let funded = fund(&mut chain, &alice(), 1_000 * CKB);
        let (runner, seen) = fake_runner(Ok(4_242));
        chain.set_script_runner(runner);
        // Signed by the wrong key: the typed Rust check refuses it first.
        let forged = transfer(
            &chain,
            &bob(),
            vec![funded.clone()],
            vec![cell(900 * CKB, lock_of(&bob()))],
        );
        assert!(matches!(
            chain.send_transaction(forged),
            Err(ChainRejection::LockScript { input_index: 0, .. })
        ));
        assert!(seen.lock().unwrap().is_empty(), "the runner ran on a refused tx");

        let tx = transfer(&chain, &alice(), vec![funded], vec![cell(900 * CKB, lock_of(&bob()))]);
        let tx_hash = chain.send_transaction(tx).unwrap();
        assert_eq!(chain.cycles(&tx_hash), Some(4_242));
        // A block mined elsewhere is checked by the runner too.
        let other = fund(&mut chain, &bob(), 1_000 * CKB);
        let foreign = transfer(&chain, &bob(), vec![other], vec![cell(900 * CKB, lock_of(&alice()))]);
        chain.mine_foreign_transaction(foreign.clone()).unwrap();
        assert_eq!(chain.cycles(&hash_of(&foreign)), Some(4_242));
        assert_eq!(seen.lock().unwrap().len(), 2);
    }

    #[test]
    fn without_a_runner_unknown_locks_are_accepted_unrun() {
        let mut chain = SimulatedChain::new();
        let funding_lock = packed::Script::new_builder()
            .code_hash([0x42; 32])
            .hash_type(ScriptHashType::Type)
            .args(Bytes::from(vec![0x01; 20]))
            .build();
        let funded = chain.genesis_cell(cell(1_000 * CKB, funding_lock), Vec::new());
        // No deps and a witness that is not even a WitnessArgs.
        let tx = unsigned_tx(vec![], vec![funded], vec![cell(900 * CKB, lock_of(&bob()))])
            .as_builder()
            .witnesses(vec![Bytes::from_static(b"anything").pack()].pack())
            .build();
        chain.send_transaction(tx).unwrap();
    }

    #[test]
    fn foreign_spend_of_the_same_cells_evicts_the_pool_tx() {
        let mut chain = SimulatedChain::new();
        let funded = fund(&mut chain, &alice(), 1_000 * CKB);
        let other = fund(&mut chain, &bob(), 1_000 * CKB);
        let ours = transfer(
            &chain,
            &alice(),
            vec![funded.clone()],
            vec![cell(900 * CKB, lock_of(&bob()))],
        );
        let unrelated = transfer(&chain, &bob(), vec![other], vec![cell(900 * CKB, lock_of(&bob()))]);
        let wallet_elsewhere = transfer(&chain, &alice(), vec![funded], vec![cell(990 * CKB, lock_of(&alice()))]);
        let ours_hash = chain.send_transaction(ours).unwrap();
        let unrelated_hash = chain.send_transaction(unrelated).unwrap();

        assert_eq!(chain.mine_foreign_transaction(wallet_elsewhere.clone()), Ok(1));
        assert_eq!(
            chain.transaction_status(&hash_of(&wallet_elsewhere)),
            TxStatus::Committed { block_number: 1 }
        );
        assert_eq!(chain.transaction_status(&ours_hash), TxStatus::Rejected);
        assert!(chain.transaction(&ours_hash).is_none());
        assert_eq!(chain.transaction_status(&unrelated_hash), TxStatus::Pending);

        chain.mine_block();
        assert_eq!(
            chain.transaction_status(&unrelated_hash),
            TxStatus::Committed { block_number: 2 }
        );
        assert_eq!(chain.transaction_status(&ours_hash), TxStatus::Rejected);
    }

    #[test]
    fn never_sent_transaction_is_unknown() {
        let chain = SimulatedChain::new();
        assert_eq!(chain.transaction_status(&[0x11; 32]), TxStatus::Unknown);
        assert!(chain.transaction(&[0x11; 32]).is_none());
        assert_eq!(chain.submissions(&[0x11; 32]), 0);
    }

    #[test]
    fn mining_an_empty_pool_still_advances_the_tip() {
        let mut chain = SimulatedChain::new();
        assert_eq!(chain.tip_block_number(), 0);
        assert_eq!(chain.mine_block(), 1);
        assert_eq!(chain.mine_block(), 2);
        let funded = fund(&mut chain, &alice(), 1_000 * CKB);
        assert_eq!(
            chain.transaction_status(&funded.tx_hash().unpack()),
            TxStatus::Committed { block_number: 2 }
        );
    }

    #[test]
    fn get_cells_pages_in_chain_order() {
        let mut chain = SimulatedChain::new();
        let mut expected = Vec::new();
        for round in 0..5u64 {
            expected.push(fund(&mut chain, &alice(), (100 + round) * CKB));
            fund(&mut chain, &bob(), 100 * CKB);
            if round % 2 == 1 {
                chain.mine_block();
            }
        }

        let mut pages = Vec::new();
        let mut cursor = None;
        loop {
            let (cells, next) = chain.get_cells(&lock_of(&alice()), &CellFilter::default(), 2, cursor);
            pages.push(cells.len());
            for cell in &cells {
                assert_eq!(cell.output.lock().as_slice(), lock_of(&alice()).as_slice());
            }
            let seen: Vec<_> = cells.into_iter().map(|cell| cell.out_point).collect();
            let start = pages.iter().sum::<usize>() - seen.len();
            for (offset, out_point) in seen.iter().enumerate() {
                assert_eq!(out_point.as_slice(), expected[start + offset].as_slice());
            }
            match next {
                // A cursor survives the 16-byte form a JSON-RPC adapter hands out.
                Some(next) => cursor = Cursor::from_bytes(&next.to_bytes()),
                None => break,
            }
        }
        assert_eq!(pages, vec![2, 2, 1]);

        let all = chain.get_cells(&lock_of(&alice()), &CellFilter::default(), 100, None).0;
        let blocks: Vec<u64> = all.iter().map(|cell| cell.block_number).collect();
        assert_eq!(blocks, vec![0, 0, 1, 1, 2]);
        assert_eq!(
            chain.get_cells(&lock_of(&alice()), &CellFilter::default(), 0, None),
            (Vec::new(), None)
        );
    }

    /// The indexer's length ranges: a type script counts its code hash,
    /// hash type and args (none counts 0), data its bytes; the end is excluded.
    #[test]
    fn a_cell_filter_admits_by_type_script_and_data_length() {
        let typed = packed::CellOutput::new_builder()
            .type_(Some(lock_of(&alice())).pack())
            .build();
        let untyped = packed::CellOutput::default();
        let plain = CellFilter::plain();
        assert!(plain.admits(&untyped, &[]));
        assert!(!plain.admits(&untyped, &[0]));
        assert!(!plain.admits(&typed, &[]));
        // 32 + 1 + 20 bytes of args.
        let exactly = |range| CellFilter {
            type_script_len: Some(range),
            output_data_len: None,
        };
        assert!(exactly(53..54).admits(&typed, &[1; 9]));
        assert!(!exactly(0..53).admits(&typed, &[]));
        assert!(CellFilter::default().admits(&typed, &[1; 9]));
    }

    #[test]
    fn get_cells_page_that_ends_exactly_at_the_last_cell_has_no_cursor() {
        let mut chain = SimulatedChain::new();
        fund(&mut chain, &alice(), 100 * CKB);
        fund(&mut chain, &alice(), 100 * CKB);
        let (cells, next) = chain.get_cells(&lock_of(&alice()), &CellFilter::default(), 2, None);
        assert_eq!(cells.len(), 2);
        assert_eq!(next, None);
    }
}
