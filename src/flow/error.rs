//! Errors a caller can cause. Each names the problem; none changes stored state.

use crate::flow::state::ChannelState;
use crate::primitives::{ChannelId, Hash256, NodeId};
use crate::tx::fee::Ckb;
use crate::tx::funding::FundingError;
use crate::tx::validate::SignedTxError;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FlowError {
    #[error("no channel {0} on this node")]
    UnknownChannel(ChannelId),
    #[error("the stored record of channel {0} could not be read at boot (see the unreadable_records event); it is kept as it was")]
    RecordUnreadable(ChannelId),
    #[error("invalid {field}: {reason}")]
    InvalidParams { field: &'static str, reason: String },
    #[error("UDT channels are not supported yet: open a CKB channel (no funding_udt_type_script)")]
    UdtChannelsUnsupported,
    #[error("public channels need announcement signatures, which this module does not do: open with public = false")]
    PublicChannelsUnsupported,
    #[error("{0}")]
    Funding(#[from] FundingError),
    /// The wallet cannot fund a new channel: how much it needs, how much is
    /// free, and which pending fundings hold the rest.
    #[error("{0}")]
    InsufficientFunds(Shortfall),
    #[error("this node does not accept channels (no acceptor configuration)")]
    NotAnAcceptor,
    #[error("channel {channel_id} was opened by the peer: only the opener submits a signed funding tx")]
    NotTheInitiator { channel_id: ChannelId },
    #[error("channel {channel_id} has no unsigned funding tx yet (it is {state}); wait for openChannelWithExternalFunding to return it")]
    FundingTxNotReady { channel_id: ChannelId, state: ChannelState },
    #[error("channel {channel_id} is closed ({state}): {reason}")]
    ChannelClosed {
        channel_id: ChannelId,
        state: ChannelState,
        reason: String,
    },
    #[error("signed funding tx rejected: {0}")]
    SignedTx(#[from] SignedTxError),
    #[error("channel {channel_id} already has a different signed funding tx (funding tx {funding_tx_hash}); a second one cannot replace it")]
    DifferentTxAlreadySubmitted {
        channel_id: ChannelId,
        funding_tx_hash: Hash256,
    },
    #[error("channel {channel_id} can no longer be abandoned: its funding signatures were released ({state}); wait for the funding tx, or spend the user's inputs back to the wallet with a cancel tx")]
    TooLateToAbandon { channel_id: ChannelId, state: ChannelState },
    #[error("channel {channel_id} needs no cancel tx ({state}): {reason}")]
    NotCancellable {
        channel_id: ChannelId,
        state: ChannelState,
        reason: &'static str,
    },
    #[error("cancel tx refused: {0}")]
    CancelTx(#[from] crate::tx::cancel::CancelTxError),
    #[error("the external-funding deadline of channel {channel_id} passed (at {deadline_ms} ms); the flow is being aborted, open a new channel")]
    Expired { channel_id: ChannelId, deadline_ms: u64 },
    #[error("channel {channel_id} cannot be closed now ({state}): only a funded channel that is not already closing that way can")]
    NotClosable { channel_id: ChannelId, state: ChannelState },
    /// A channel imported from a backup before its closing tx was fixed:
    /// a cooperative close would sign with a nonce the backup's device may
    /// have used already.
    #[error("channel {channel_id} was restored from a backup: the device the backup came from may have signed a cooperative close with the same nonce, and a second would reveal the channel's funding key; close it unilaterally (force: true)")]
    RestoredChannelClosesUnilaterally { channel_id: ChannelId },
    #[error("the channel's peer {expected} is not {actual}")]
    WrongPeer { expected: NodeId, actual: NodeId },
    /// A step would give a channel the id another channel already has (a
    /// peer steers a final id through its basepoint).
    #[error("another channel already has channel id {channel_id}")]
    ChannelIdTaken { channel_id: ChannelId },
    #[error("internal error (a bug, please report it): {0}")]
    Internal(String),
}

/// Why the wallet's cells cannot fund a new channel, in the user's terms:
/// CKB first (shannons after), what the amount is made of, and the cells
/// other fundings hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shortfall {
    /// What the channel takes from the wallet: amount, reserve and fee.
    pub needed: u64,
    /// The channel amount asked for.
    pub amount: u64,
    /// The reserve the channel keeps (upstream's `reserved_ckb_amount`): it
    /// comes back at close.
    pub reserve: u64,
    /// The capacity of the wallet's spendable cells no other flow holds.
    pub available: u64,
    /// The capacity of the wallet's cells held by pending fundings.
    pub held: u64,
    /// Those pending fundings.
    pub held_by: Vec<ChannelId>,
}

impl std::fmt::Display for Shortfall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let fee = self.needed.saturating_sub(self.amount).saturating_sub(self.reserve);
        write!(
            f,
            "not enough CKB: this channel needs {} CKB ({} CKB for the channel, {} CKB reserve returned at close, {} CKB fee; {} shannons) but only {} CKB ({} shannons) in this wallet is free",
            Ckb(self.needed),
            Ckb(self.amount),
            Ckb(self.reserve),
            Ckb(fee),
            self.needed,
            Ckb(self.available),
            self.available,
        )?;
        if self.held > 0 {
            let ids: Vec<String> = self.held_by.iter().map(ToString::to_string).collect();
            let (whose, it) = if ids.len() == 1 {
                (
                    "the pending funding of channel",
                    "that funding completes (its change comes back) or is abandoned",
                )
            } else {
                (
                    "the pending fundings of channels",
                    "those fundings complete (their change comes back) or are abandoned",
                )
            };
            write!(
                f,
                "; {} CKB ({} shannons) more is in cells reserved by {whose} {} until {it}",
                Ckb(self.held),
                self.held,
                ids.join(", "),
            )?;
        }
        Ok(())
    }
}
