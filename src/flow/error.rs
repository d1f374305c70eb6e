//! Errors a caller can cause. Each names the problem; none changes stored state.

use crate::flow::state::ChannelState;
use crate::primitives::{ChannelId, Hash256, NodeId};
use crate::tx::funding::FundingError;
use crate::tx::validate::SignedTxError;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FlowError {
    #[error("no channel {0} on this node")]
    UnknownChannel(ChannelId),
    #[error("invalid {field}: {reason}")]
    InvalidParams { field: &'static str, reason: String },
    #[error("UDT channels are not supported yet: open a CKB channel (no funding_udt_type_script)")]
    UdtChannelsUnsupported,
    #[error("public channels need announcement signatures, which this module does not do: open with public = false")]
    PublicChannelsUnsupported,
    #[error("{0}")]
    Funding(#[from] FundingError),
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
    #[error("channel {channel_id} can no longer be abandoned: its funding signatures were released ({state}); wait for the funding tx")]
    TooLateToAbandon { channel_id: ChannelId, state: ChannelState },
    #[error("the external-funding deadline of channel {channel_id} passed (at {deadline_ms} ms); the flow is being aborted, open a new channel")]
    Expired { channel_id: ChannelId, deadline_ms: u64 },
    #[error("channel {channel_id} cannot be closed now ({state}): only a funded channel that is not already closing that way can")]
    NotClosable { channel_id: ChannelId, state: ChannelState },
    #[error("the channel's peer {expected} is not {actual}")]
    WrongPeer { expected: NodeId, actual: NodeId },
    #[error("internal error (a bug, please report it): {0}")]
    Internal(String),
}
