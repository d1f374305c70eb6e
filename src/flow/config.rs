//! What a node is configured with, and what a user asks for when opening.

use ckb_types::packed;

use crate::crypto::keys::NodeSecret;
use crate::primitives::{Hash256, NodeId};
use crate::tx::script::ScriptTemplate;

/// Upstream's default `external_funding_timeout_seconds`.
pub const DEFAULT_EXTERNAL_FUNDING_TIMEOUT_MS: u64 = 300_000;
/// Fiber's default fee rates, shannons per 1,000 bytes.
pub const DEFAULT_FEE_RATE: u64 = 1_000;
/// One epoch, as an `EpochNumberWithFraction` (number 1, index 0, length 1).
pub const DEFAULT_COMMITMENT_DELAY_EPOCH: u64 = (1 << 40) | 1;
pub const DEFAULT_MAX_TLC_NUMBER_IN_FLIGHT: u64 = 125;
/// Confirmations before a funding tx counts as final and `ChannelReady` is sent.
pub const DEFAULT_FUNDING_CONFIRMATIONS: u64 = 3;
/// Confirmations before a tx that ends a channel (the closing tx, our
/// claim, the spend of an aborted flow's input) counts as settled and the
/// channel's keys go. Deeper than the funding's: a flow is usable after a
/// few blocks, but wiping keys cannot be undone, and a reorganisation
/// deeper than the depth that wiped them would leave money only they can
/// move. Chosen here, not upstream's.
pub const DEFAULT_SETTLE_CONFIRMATIONS: u64 = 24;
/// How much longer the acceptor waits than the initiator before giving up, so
/// the initiator's own abort normally reaches it first.
pub const DEFAULT_ACCEPTOR_GRACE_MS: u64 = 60_000;

/// A node's configuration, for either role.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub node_secret: NodeSecret,
    /// Genesis hash of the chain; both sides must agree.
    pub chain_hash: Hash256,
    /// The funding-lock contract (its code hash is per network).
    pub funding_lock: ScriptTemplate,
    /// The commitment-lock contract.
    pub commitment_lock: ScriptTemplate,
    pub external_funding_timeout_ms: u64,
    pub funding_confirmations: u64,
    /// Confirmations before a tx that ends a channel settles it (the keys
    /// are wiped); never fewer than `funding_confirmations` ([`NodeConfig::settle_depth`]).
    pub settle_confirmations: u64,
    /// Set on a node that accepts channels (the counterparty).
    pub acceptor: Option<AcceptorConfig>,
}

impl NodeConfig {
    /// Confirmations before a tx that ends a channel counts as settled.
    pub fn settle_depth(&self) -> u64 {
        self.settle_confirmations.max(self.funding_confirmations)
    }
}

/// How a counterparty funds its side of channels it accepts.
#[derive(Debug, Clone)]
pub struct AcceptorConfig {
    /// The lock of the acceptor's wallet cells (CKB's default lock).
    pub wallet_lock: packed::Script,
    /// Cell deps that lock needs (the default lock's dep group).
    pub wallet_cell_deps: Vec<packed::CellDep>,
    /// Secret key of `wallet_lock`.
    pub wallet_key: [u8; 32],
    /// CKB the acceptor adds to each channel beyond its reserve (auto-accept amount).
    pub funding_amount: u64,
    pub grace_ms: u64,
    /// Force-close a funded channel whose peer has been away this long, so
    /// the acceptor's liquidity is never stuck; `None`: never.
    pub force_close_after_ms: Option<u64>,
}

/// `open_channel_with_external_funding` parameters, as Fiber's RPC takes them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenChannelParams {
    /// The peer's node id.
    pub pubkey: NodeId,
    pub funding_amount: u128,
    pub public: bool,
    pub funding_udt_type_script: Option<packed::Script>,
    pub shutdown_script: packed::Script,
    /// The user's wallet lock: the cells funding the channel carry it.
    pub funding_lock_script: packed::Script,
    pub funding_lock_script_cell_deps: Vec<packed::CellDep>,
    pub commitment_delay_epoch: Option<u64>,
    pub commitment_fee_rate: Option<u64>,
    pub funding_fee_rate: Option<u64>,
    /// Bytes the user's wallet puts in the first witness's
    /// `WitnessArgs.lock` when it signs; the fee pays for that many. This
    /// module's own parameter (Fiber's node knows its wallet). Default:
    /// 1,000 for JoyID's lock, 65 otherwise ([`crate::tx::witness_room`]).
    pub funding_witness_lock_len: Option<u64>,
    pub max_tlc_value_in_flight: Option<u128>,
    pub max_tlc_number_in_flight: Option<u64>,
}

impl OpenChannelParams {
    /// A CKB channel of `funding_amount` shannons to `pubkey`, funded by the
    /// cells of `funding_lock_script`, everything else at Fiber's defaults.
    pub fn new(
        pubkey: NodeId,
        funding_amount: u64,
        funding_lock_script: packed::Script,
        funding_lock_script_cell_deps: Vec<packed::CellDep>,
    ) -> Self {
        Self {
            pubkey,
            funding_amount: funding_amount.into(),
            public: false,
            funding_udt_type_script: None,
            shutdown_script: funding_lock_script.clone(),
            funding_lock_script,
            funding_lock_script_cell_deps,
            commitment_delay_epoch: None,
            commitment_fee_rate: None,
            funding_fee_rate: None,
            funding_witness_lock_len: None,
            max_tlc_value_in_flight: None,
            max_tlc_number_in_flight: None,
        }
    }
}
