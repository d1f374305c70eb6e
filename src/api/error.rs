//! One error type for the whole API, each with a stable `code` a wallet can
//! switch on and a message a person can act on.

use crate::chain::client::{ChainError, ChainErrorKind};
use crate::flow::{FlowError, OpenFailure};
use crate::runtime::{DriverError, PeerTrouble, PersistFailed};
use crate::store::StoreError;
use crate::tx::funding::FundingError;
use crate::tx::json::TxJsonError;
use crate::tx::validate::SignedTxError;

macro_rules! codes {
    ($($variant:ident => $code:literal, $doc:literal;)*) => {
        /// Stable error codes (`error.code` in JavaScript). See `docs/api.md`.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum ErrorCode {
            $(#[doc = $doc] $variant,)*
        }

        impl ErrorCode {
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $code,)*
                }
            }

            /// The code named `code` (as `as_str` gives it), if there is one.
            pub fn from_code(code: &str) -> Option<Self> {
                match code {
                    $($code => Some(Self::$variant),)*
                    _ => None,
                }
            }

            /// Every code with what it means, for the documentation.
            pub fn all() -> &'static [(&'static str, &'static str)] {
                &[$(($code, $doc),)*]
            }
        }
    };
}

codes! {
    InvalidParams => "INVALID_PARAMS", "A parameter is missing or malformed; the message names it.";
    InvalidTxJson => "INVALID_TX_JSON", "A transaction JSON could not be read; the message names the field.";
    UdtUnsupported => "UDT_UNSUPPORTED", "UDT channels are not supported yet.";
    PublicUnsupported => "PUBLIC_UNSUPPORTED", "Public channels are not supported (announcements are out of scope).";
    InsufficientFunds => "INSUFFICIENT_FUNDS", "The wallet's cells cannot pay for the channel, reserve and fee; the message says needed vs free in CKB, and names the pending fundings holding the other cells.";
    UnspendableChange => "UNSPENDABLE_CHANGE", "The funding would leave change too small for a change cell.";
    UnknownChannel => "UNKNOWN_CHANNEL", "No channel with that id on this node.";
    NotInitiator => "NOT_INITIATOR", "Only the side that opened the channel submits its signed funding tx.";
    FundingTxNotReady => "FUNDING_TX_NOT_READY", "The unsigned funding tx is not final yet.";
    FundingExpired => "FUNDING_EXPIRED", "The external-funding deadline passed; the flow is aborted.";
    ChannelClosed => "CHANNEL_CLOSED", "The channel was closed (aborted, timed out, abandoned); the message says why.";
    SignedTxMismatch => "SIGNED_TX_MISMATCH", "The signed tx differs from the unsigned one in more than witnesses; the message names the field.";
    SignedTxInvalid => "SIGNED_TX_INVALID", "The signed tx's witnesses are missing, unsigned, touch the peer's inputs or do not unlock the user's (checked here for CKB's default lock; another lock's, JoyID's, only by the chain, after they left); or the tx they complete could never confirm (too large, or below a node's minimum relay fee: abandon and open again with a higher funding fee rate). Nothing is stored.";
    AlreadySubmitted => "ALREADY_SUBMITTED", "A different signed tx was already submitted for this channel and its signatures have left; only once the node has refused the tx is a correction taken.";
    TooLateToAbandon => "TOO_LATE_TO_ABANDON", "The funding signatures were released; the channel can no longer be abandoned (a cancel tx can still take the user's cells back).";
    NotCancellable => "NOT_CANCELLABLE", "The channel needs no cancel tx: it can still be abandoned, its funding tx is confirmed, or it holds no signed funding tx of the user's; the message says which.";
    CancelTxInvalid => "CANCEL_TX_INVALID", "The signed cancel tx spends other cells than the user's funding inputs, pays anything but the wallet's own lock, pays a fee outside a node's relay minimum and the highest fee rate, or is not signed (the default lock's signature is verified here). Nothing is sent.";
    NotClosable => "NOT_CLOSABLE", "The channel cannot be closed that way now: it is not funded yet, already closing unilaterally, or restored from a backup (which closes only unilaterally: force: true).";
    PeerUnreachable => "PEER_UNREACHABLE", "The counterparty could not be reached at peerUrl, or was connected but did not answer an open for 10 s.";
    PeerMismatch => "PEER_MISMATCH", "The node at peerUrl is not the pubkey the channel is opened with (or failed to prove its key).";
    PeerRefused => "PEER_REFUSED", "The counterparty refused or aborted the channel before its unsigned tx was final; the message says why.";
    ChainUnreachable => "CHAIN_UNREACHABLE", "The CKB node did not answer (network error or timeout); the message names the RPC.";
    ChainRejected => "CHAIN_REJECTED", "The CKB node refused a request; the message names the RPC and its reason.";
    StorageFull => "STORAGE_FULL", "The browser's storage quota is exhausted; the previous state is intact.";
    StorageUnavailable => "STORAGE_UNAVAILABLE", "IndexedDB could not be used; the previous state is intact.";
    RecordUnreadable => "RECORD_UNREADABLE", "A stored channel record could not be read; it is kept, other channels still load.";
    OpenInAnotherTab => "OPEN_IN_ANOTHER_TAB", "Another tab owns this database; open with waitForLock to wait for it.";
    NodeClosed => "NODE_CLOSED", "The node was closed; open it again.";
    BackupOfAnotherNode => "BACKUP_OF_ANOTHER_NODE", "importBackup: the backup's records are another node key's; open the node with nodeSecretKey set to the backup's node_secret_key (or the key the wallet gave when it was made), then import.";
    BackupUnauthenticated => "BACKUP_UNAUTHENTICATED", "importBackup: a version 1 backup, made before backups were authenticated: nothing shows it was not changed since. Import it only if the user kept it themselves, with allowUnauthenticated: true.";
    NoOwnerTab => "NO_OWNER_TAB", "submitToOwner: no tab owning the database answered in time; open the node in this tab and submit there. A submit that timed out may still have been taken: the same signed tx submitted again is harmless.";
    Internal => "INTERNAL", "A bug; please report it with the message.";
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    pub fn invalid(field: &str, reason: impl std::fmt::Display) -> Self {
        Self::new(ErrorCode::InvalidParams, format!("invalid {field}: {reason}"))
    }
}

impl From<FlowError> for ApiError {
    fn from(error: FlowError) -> Self {
        let code = match &error {
            FlowError::UnknownChannel(_) => ErrorCode::UnknownChannel,
            FlowError::RecordUnreadable(_) => ErrorCode::RecordUnreadable,
            FlowError::InvalidParams { .. } => ErrorCode::InvalidParams,
            FlowError::UdtChannelsUnsupported => ErrorCode::UdtUnsupported,
            FlowError::PublicChannelsUnsupported => ErrorCode::PublicUnsupported,
            FlowError::Funding(FundingError::InsufficientFunds { .. }) | FlowError::InsufficientFunds(_) => {
                ErrorCode::InsufficientFunds
            }
            FlowError::Funding(FundingError::UnspendableChange { .. }) => ErrorCode::UnspendableChange,
            FlowError::Funding(FundingError::Overflow(_) | FundingError::TooManyInputs { .. }) => {
                ErrorCode::InvalidParams
            }
            FlowError::NotAnAcceptor | FlowError::NotTheInitiator { .. } => ErrorCode::NotInitiator,
            FlowError::FundingTxNotReady { .. } => ErrorCode::FundingTxNotReady,
            FlowError::ChannelClosed { .. } => ErrorCode::ChannelClosed,
            FlowError::SignedTx(SignedTxError::FieldChanged { .. } | SignedTxError::NotFinal { .. }) => {
                ErrorCode::SignedTxMismatch
            }
            FlowError::SignedTx(_) => ErrorCode::SignedTxInvalid,
            FlowError::DifferentTxAlreadySubmitted { .. } => ErrorCode::AlreadySubmitted,
            FlowError::TooLateToAbandon { .. } => ErrorCode::TooLateToAbandon,
            FlowError::NotCancellable { .. } => ErrorCode::NotCancellable,
            FlowError::CancelTx(_) => ErrorCode::CancelTxInvalid,
            FlowError::NotClosable { .. } | FlowError::RestoredChannelClosesUnilaterally { .. } => {
                ErrorCode::NotClosable
            }
            FlowError::Expired { .. } => ErrorCode::FundingExpired,
            FlowError::WrongPeer { .. } => ErrorCode::PeerMismatch,
            // Only a peer's message can change a channel's id; no call does.
            FlowError::ChannelIdTaken { .. } => ErrorCode::Internal,
            FlowError::Internal(_) => ErrorCode::Internal,
        };
        Self::new(code, error.to_string())
    }
}

impl From<ChainError> for ApiError {
    fn from(error: ChainError) -> Self {
        let code = match error.kind {
            ChainErrorKind::Unreachable | ChainErrorKind::Timeout => ErrorCode::ChainUnreachable,
            ChainErrorKind::Rejected | ChainErrorKind::AlreadyInPool | ChainErrorKind::BadResponse => {
                ErrorCode::ChainRejected
            }
        };
        Self::new(code, error.to_string())
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        let code = match error {
            StoreError::QuotaExceeded(_) => ErrorCode::StorageFull,
            StoreError::Aborted(_) | StoreError::Unavailable(_) | StoreError::Deleted(_) => {
                ErrorCode::StorageUnavailable
            }
        };
        Self::new(code, error.to_string())
    }
}

impl From<PersistFailed> for ApiError {
    fn from(error: PersistFailed) -> Self {
        let code = ApiError::from(error.error.clone()).code;
        Self::new(code, error.to_string())
    }
}

/// The code a page sees for each way the link can fail to give us the peer.
pub fn peer_trouble_code(trouble: PeerTrouble) -> ErrorCode {
    match trouble {
        PeerTrouble::Unreachable => ErrorCode::PeerUnreachable,
        PeerTrouble::Mismatch => ErrorCode::PeerMismatch,
    }
}

impl From<DriverError> for ApiError {
    fn from(error: DriverError) -> Self {
        match error {
            DriverError::Flow(error) => error.into(),
            DriverError::Chain(error) => error.into(),
            DriverError::Persist(error) => error.into(),
            DriverError::Store(error) => error.into(),
            DriverError::Open(failure) => failure.into(),
            DriverError::NodeClosed(reason) => Self::new(ErrorCode::NodeClosed, reason),
        }
    }
}

impl From<OpenFailure> for ApiError {
    fn from(failure: OpenFailure) -> Self {
        let code = match &failure {
            OpenFailure::Flow(error) => return error.clone().into(),
            OpenFailure::Chain(error) => return error.clone().into(),
            OpenFailure::PeerUnreachable { .. } | OpenFailure::PeerSilent { .. } => ErrorCode::PeerUnreachable,
            OpenFailure::PeerMismatch(_) => ErrorCode::PeerMismatch,
            OpenFailure::Refused(_) => ErrorCode::PeerRefused,
            OpenFailure::Storage(error) | OpenFailure::NotSaved { error, .. } => ApiError::from(error.clone()).code,
        };
        Self::new(code, failure.to_string())
    }
}

impl From<TxJsonError> for ApiError {
    fn from(error: TxJsonError) -> Self {
        Self::new(ErrorCode::InvalidTxJson, format!("invalid transaction JSON at {error}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_and_upper_snake_case() {
        let mut seen = std::collections::BTreeSet::new();
        for (code, doc) in ErrorCode::all() {
            assert!(seen.insert(*code), "duplicate {code}");
            assert!(code.chars().all(|c| c.is_ascii_uppercase() || c == '_'), "{code}");
            assert!(!doc.is_empty());
        }
    }
}

#[cfg(test)]
mod docs_tests {
    use super::ErrorCode;

    /// docs/api.md lists every code with the same meaning, and nothing else.
    #[test]
    fn the_documented_codes_are_the_real_ones() {
        let doc = include_str!("../../docs/api.md");
        let documented: Vec<(String, String)> = doc
            .lines()
            .filter_map(|line| {
                let cells: Vec<&str> = line.split('|').map(str::trim).collect();
                let code = cells.get(1)?.strip_prefix('`')?.strip_suffix('`')?;
                code.chars()
                    .all(|c| c.is_ascii_uppercase() || c == '_')
                    .then(|| (code.to_owned(), cells[2].to_owned()))
            })
            .collect();
        let real: Vec<(String, String)> = ErrorCode::all()
            .iter()
            .map(|(code, doc)| (code.to_string(), doc.to_string()))
            .collect();
        assert_eq!(documented, real);
    }
}
