//! What the JS API returns and emits, as Rust types: their serde derive,
//! written by `json::to_string`, gives the JSON and `tsify-next` the
//! TypeScript declarations in `fiber_funding.d.ts`, so
//! the two cannot disagree. Field names are Fiber's (snake_case); amounts and
//! block numbers are 0x-hex strings as in Fiber's RPC, times are numbers.
//!
//! CKB's transaction JSON is built by `tx::json` (its shape is CKB's); here
//! it is typed as `Transaction`, declared with the input types in
//! `wasm/node.rs`.

use serde::Serialize;
use tsify_next::Tsify;

use crate::flow::{ChannelState, ChannelView, CloseView, CommitmentView, Role};
use crate::tx::json::{write_transaction_json, OutPointJson, TransactionJson};

fn hex(amount: u64) -> String {
    format!("{amount:#x}")
}

/// `openChannelWithExternalFunding`'s answer.
#[derive(Debug, Serialize, Tsify)]
pub struct OpenChannelResult {
    pub channel_id: String,
    #[tsify(type = "Transaction")]
    pub unsigned_funding_tx: TransactionJson,
}

/// `submitSignedFundingTx`'s answer.
#[derive(Debug, Serialize, Tsify)]
pub struct SubmitSignedFundingTxResult {
    pub channel_id: String,
    pub funding_tx_hash: String,
    /// `"sent"`: our commitment signature went to the counterparty.
    /// `"queued"`: the counterparty is away; the tx is stored and the flow
    /// goes on when it is back, before the deadline.
    #[tsify(type = "\"sent\" | \"queued\"")]
    pub status: &'static str,
}

/// `cancelFundingTx`'s answer: the tx for the wallet to sign.
#[derive(Debug, Serialize, Tsify)]
pub struct CancelFundingTxResult {
    pub channel_id: String,
    /// Spends the user's inputs of the funding tx back to the wallet's lock.
    #[tsify(type = "Transaction")]
    pub unsigned_cancel_tx: TransactionJson,
}

/// `submitSignedCancelTx`'s answer: the tx was checked and sent.
#[derive(Debug, Serialize, Tsify)]
pub struct SubmitSignedCancelTxResult {
    pub channel_id: String,
    pub cancel_tx_hash: String,
}

/// A flow that has not reached a terminal state, as `pendingFundings()` lists it.
#[derive(Debug, Serialize, Tsify)]
pub struct PendingFunding {
    pub channel_id: String,
    pub state: String,
    pub flags: Vec<String>,
    /// The tx to sign, once final (`null` before).
    #[tsify(type = "Transaction | null")]
    pub unsigned_funding_tx: Option<TransactionJson>,
    pub started_at_ms: u64,
    pub deadline_ms: Option<u64>,
    pub signed_submitted: bool,
    /// Whether the counterparty is connected now; while it is not, the flow
    /// waits (listed all the same) and goes on when it is back.
    pub peer_connected: bool,
    /// The wallet's cells this funding holds until it completes or is
    /// aborted: no other open spends them (what is left is what a new
    /// channel can use).
    #[tsify(type = "{ tx_hash: string; index: string }[]")]
    pub reserved_cells: Vec<OutPointJson>,
}

/// A channel as `getChannel` and `listChannels` show it.
#[derive(Debug, Serialize, Tsify)]
pub struct Channel {
    pub channel_id: String,
    pub temporary_channel_id: String,
    #[tsify(type = "\"initiator\" | \"acceptor\"")]
    pub role: &'static str,
    pub peer_pubkey: String,
    pub state: String,
    pub flags: Vec<String>,
    pub created_at_ms: u64,
    pub deadline_ms: Option<u64>,
    pub funding_tx_hash: Option<String>,
    pub local_funding_amount: String,
    pub remote_funding_amount: Option<String>,
    pub signed_submitted: bool,
    /// Whether the counterparty is connected now.
    pub peer_connected: bool,
    pub close_reason: Option<String>,
    /// What this side gets back at close, before fees (funding amount + reserve); once funded.
    pub local_balance: Option<String>,
    /// While a funded channel closes.
    pub close: Option<ChannelClose>,
    /// Imported from a backup before its cooperative close was agreed: it
    /// closes only with `force` (a cooperative close is `NOT_CLOSABLE`).
    pub restored_from_backup: bool,
}

/// How a funded channel's close stands.
#[derive(Debug, Serialize, Tsify)]
pub struct ChannelClose {
    /// The cooperative closing tx, once both sides' Shutdown fixed it.
    pub closing_tx_hash: Option<String>,
    /// When we broadcast our commitment (a unilateral close).
    pub force_closed_at_ms: Option<u64>,
    /// A commitment committed on chain: ours or the peer's, and from which epoch our share is claimed.
    pub commitment: Option<Commitment>,
    /// Our claim of our share, once sent.
    pub claim_tx_hash: Option<String>,
}

#[derive(Debug, Serialize, Tsify)]
pub struct Commitment {
    pub tx_hash: String,
    #[tsify(type = "\"us\" | \"peer\"")]
    pub by: &'static str,
    pub block_number: String,
    pub claimable_at_epoch: Epoch,
}

/// A CKB epoch with its fraction.
#[derive(Debug, Serialize, Tsify, PartialEq, Eq)]
pub struct Epoch {
    pub number: u64,
    pub index: u64,
    pub length: u64,
}

impl Epoch {
    pub fn from_full_value(full_value: u64) -> Self {
        let epoch = ckb_types::core::EpochNumberWithFraction::from_full_value(full_value);
        Self {
            number: epoch.number(),
            index: epoch.index(),
            length: epoch.length(),
        }
    }
}

/// Who holds a commitment, in the user's words.
pub fn commitment_holder(holder_is_local: bool) -> &'static str {
    if holder_is_local {
        "us"
    } else {
        "peer"
    }
}

/// What `onEvent` listeners receive.
#[derive(Debug, Serialize, Tsify)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum FundingEvent {
    StateChanged {
        channel_id: String,
        temporary_channel_id: String,
        state: String,
        flags: Vec<String>,
        close_reason: Option<String>,
    },
    PeerMessageRejected {
        channel_id: String,
        peer_pubkey: String,
        message: String,
        reason: String,
    },
    FundingTxRejected {
        channel_id: String,
        reason: String,
    },
    /// The node refused the cancel tx sent by `submitSignedCancelTx`.
    CancelTxRejected {
        channel_id: String,
        reason: String,
    },
    /// The funding tx has `confirmations` of the `required` ones; sent when the count changes.
    FundingConfirmations {
        channel_id: String,
        confirmations: u64,
        required: u64,
    },
    FundingConfirmedAfterAbort {
        channel_id: String,
        funding_tx_hash: String,
    },
    AbortSettled {
        channel_id: String,
    },
    CommitmentOnChain {
        channel_id: String,
        tx_hash: String,
        #[tsify(type = "\"us\" | \"peer\"")]
        by: &'static str,
        claimable_at_epoch: Epoch,
    },
    CloseTxRejected {
        channel_id: String,
        reason: String,
    },
    PeerConnected {
        peer_pubkey: String,
    },
    PeerDisconnected {
        reason: String,
    },
    PeerUnavailable {
        code: String,
        reason: String,
    },
    ChainError {
        reason: String,
    },
    StorageError {
        reason: String,
    },
    /// Stored records found unreadable after `open` resolved (closed flows'
    /// records are read then); also added to `unreadableRecords`.
    UnreadableRecords {
        records: Vec<UnreadableRecord>,
    },
}

/// A stored record that could not be read; it is kept in the database.
#[derive(Debug, Clone, Serialize, Tsify)]
pub struct UnreadableRecord {
    pub channel_id: String,
    pub reason: String,
}

impl From<&crate::flow::record::RecordDecodeError> for UnreadableRecord {
    fn from(error: &crate::flow::record::RecordDecodeError) -> Self {
        Self {
            channel_id: error.channel_id.clone(),
            reason: error.reason.clone(),
        }
    }
}

fn state_name(state: &ChannelState) -> (String, Vec<String>) {
    (
        state.name().to_owned(),
        state.flag_names().into_iter().map(str::to_owned).collect(),
    )
}

impl PendingFunding {
    /// The JSON text of `list`, exactly as `serde_json::to_string(list)`
    /// writes it, but each tx written in one pass
    /// ([`write_transaction_json`]): `pendingFundings()` lists every pending
    /// flow at boot, and through serde the txs' hex strings were most of it.
    pub fn list_json(list: &[PendingFunding]) -> String {
        let mut out = Vec::with_capacity(list.len().saturating_mul(4096));
        out.push(b'[');
        for (index, item) in list.iter().enumerate() {
            if index > 0 {
                out.push(b',');
            }
            let mut field = |name: &str, value: &dyn JsonField| {
                out.extend_from_slice(if name == "channel_id" { b"{\"" } else { b",\"" });
                out.extend_from_slice(name.as_bytes());
                out.extend_from_slice(b"\":");
                value.write_json(&mut out);
            };
            field("channel_id", &item.channel_id);
            field("state", &item.state);
            field("flags", &item.flags);
            field("unsigned_funding_tx", &item.unsigned_funding_tx);
            field("started_at_ms", &item.started_at_ms);
            field("deadline_ms", &item.deadline_ms);
            field("signed_submitted", &item.signed_submitted);
            field("peer_connected", &item.peer_connected);
            field("reserved_cells", &item.reserved_cells);
            out.push(b'}');
        }
        out.push(b']');
        String::from_utf8(out).expect("the JSON and tx writers write UTF-8")
    }
}

/// A field of [`PendingFunding::list_json`], written as JSON into a buffer.
trait JsonField {
    fn write_json(&self, out: &mut Vec<u8>);
}

impl JsonField for Option<TransactionJson> {
    fn write_json(&self, out: &mut Vec<u8>) {
        match self {
            Some(tx) => write_transaction_json(&tx.0, out),
            None => out.extend_from_slice(b"null"),
        }
    }
}

macro_rules! json_field_by_serde {
    ($($type:ty),*) => {$(
        impl JsonField for $type {
            fn write_json(&self, out: &mut Vec<u8>) {
                let text = crate::json::to_string(self).expect("plain values always serialize");
                out.extend_from_slice(text.as_bytes());
            }
        }
    )*};
}

json_field_by_serde!(String, Vec<String>, u64, Option<u64>, bool, Vec<OutPointJson>);

impl From<&crate::runtime::PendingFunding> for PendingFunding {
    fn from(pending: &crate::runtime::PendingFunding) -> Self {
        let (state, flags) = state_name(&pending.view.state);
        Self {
            channel_id: pending.view.channel_id.to_string(),
            state,
            flags,
            unsigned_funding_tx: pending.unsigned_funding_tx.clone().map(TransactionJson),
            started_at_ms: pending.started_at_ms,
            deadline_ms: pending.view.deadline_ms,
            signed_submitted: pending.view.signed_submitted,
            peer_connected: pending.view.peer_connected,
            reserved_cells: pending.reserved_cells.iter().cloned().map(OutPointJson).collect(),
        }
    }
}

impl From<&ChannelView> for Channel {
    fn from(view: &ChannelView) -> Self {
        let (state, flags) = state_name(&view.state);
        Self {
            channel_id: view.channel_id.to_string(),
            temporary_channel_id: view.temporary_channel_id.to_string(),
            role: match view.role {
                Role::Initiator => "initiator",
                Role::Acceptor => "acceptor",
            },
            peer_pubkey: view.peer.to_string(),
            state,
            flags,
            created_at_ms: view.created_at_ms,
            deadline_ms: view.deadline_ms,
            funding_tx_hash: view.funding_tx_hash.map(|h| h.to_string()),
            local_funding_amount: hex(view.local_funding_amount),
            remote_funding_amount: view.remote_funding_amount.map(hex),
            signed_submitted: view.signed_submitted,
            peer_connected: view.peer_connected,
            close_reason: view.close_reason.clone(),
            local_balance: view.local_balance.map(hex),
            close: view.close.as_ref().map(ChannelClose::from),
            restored_from_backup: view.restored_from_backup,
        }
    }
}

impl From<&CloseView> for ChannelClose {
    fn from(close: &CloseView) -> Self {
        Self {
            closing_tx_hash: close.closing_tx_hash.map(|h| h.to_string()),
            force_closed_at_ms: close.force_closed_at_ms,
            commitment: close.commitment.as_ref().map(Commitment::from),
            claim_tx_hash: close.claim_tx_hash.map(|h| h.to_string()),
        }
    }
}

impl From<&CommitmentView> for Commitment {
    fn from(commitment: &CommitmentView) -> Self {
        Self {
            tx_hash: commitment.tx_hash.to_string(),
            by: commitment_holder(commitment.holder_is_local),
            block_number: hex(commitment.block_number),
            claimable_at_epoch: Epoch::from_full_value(commitment.claimable_at_epoch),
        }
    }
}

/// What a stored record says, read from its bytes (any schema): for support
/// tools and the end-to-end tests, which check what storage holds.
#[derive(Debug, Serialize, Tsify)]
pub struct StoredRecordFacts {
    pub schema_version: u32,
    pub channel_id: String,
    pub temporary_channel_id: String,
    #[tsify(type = "\"initiator\" | \"acceptor\"")]
    pub role: &'static str,
    /// The initiator's recovery state is still kept.
    pub external_funding: bool,
    /// A close is in progress (its txs and signatures are kept).
    pub close_in_progress: bool,
    /// The flow ended; the record is a tombstone (or, after an abort that
    /// handed a tx out, watched until that tx can no longer confirm).
    pub closed: bool,
    /// The channel seed (and so every key) is wiped: a flow that ended
    /// before any of its signatures left (a settled close keeps it).
    pub seed_wiped: bool,
}

impl From<&crate::flow::ChannelRecord> for StoredRecordFacts {
    fn from(record: &crate::flow::ChannelRecord) -> Self {
        Self {
            schema_version: record.schema_version,
            channel_id: record.channel_id.to_string(),
            temporary_channel_id: record.temporary_channel_id.to_string(),
            role: match record.role {
                Role::Initiator => "initiator",
                Role::Acceptor => "acceptor",
            },
            external_funding: record.external_funding.is_some(),
            close_in_progress: record.close.is_some(),
            closed: record.closed.is_some(),
            seed_wiped: record.seed_wiped(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ckb_types::packed;
    use ckb_types::prelude::*;

    #[test]
    fn the_pending_list_is_written_as_serde_writes_it() {
        let out_point = |n: u8| {
            OutPointJson(
                packed::OutPoint::new_builder()
                    .tx_hash([n; 32].pack())
                    .index(u32::from(n))
                    .build(),
            )
        };
        let output = packed::CellOutput::new_builder()
            .capacity(61_00000000u64)
            .lock(packed::Script::new_builder().args([7u8; 20].to_vec().pack()).build())
            .build();
        let raw = packed::RawTransaction::new_builder()
            .inputs(vec![packed::CellInput::new_builder().previous_output(out_point(3).0).build()].pack())
            .outputs(vec![output].pack())
            .outputs_data(vec![Vec::<u8>::new().pack()].pack())
            .build();
        let tx = packed::Transaction::new_builder()
            .raw(raw)
            .witnesses(vec![[0x55u8; 65].to_vec().pack()].pack())
            .build();
        let item = |tx: Option<packed::Transaction>, deadline_ms, flags: &[&str], cells| PendingFunding {
            channel_id: format!("0x{}", "ab".repeat(32)),
            state: "AWAITING_TX_SIGNATURES".into(),
            flags: flags.iter().map(|f| f.to_string()).collect(),
            unsigned_funding_tx: tx.map(TransactionJson),
            started_at_ms: 1_700_000_000_000,
            deadline_ms,
            signed_submitted: deadline_ms.is_some(),
            peer_connected: deadline_ms.is_none(),
            reserved_cells: cells,
        };
        let list = vec![
            item(
                Some(tx),
                Some(u64::MAX),
                &["OUR_TX_SIGNATURES_SENT", "odd \"flag\"\n"],
                vec![out_point(1), out_point(2)],
            ),
            item(None, None, &[], vec![]),
        ];
        assert_eq!(PendingFunding::list_json(&list), serde_json::to_string(&list).unwrap());
        assert_eq!(
            PendingFunding::list_json(&list[..1]),
            serde_json::to_string(&list[..1]).unwrap()
        );
        assert_eq!(PendingFunding::list_json(&[]), "[]");
        assert_eq!(
            crate::json::to_string(&list).unwrap(),
            serde_json::to_string(&list).unwrap()
        );
    }

    /// `json::to_string` writes each shape as serde_json does (the text
    /// serializer's own tests cover every serde form; these are the API's).
    #[test]
    fn every_shape_is_written_as_serde_json_writes_it() {
        fn same<T: Serialize>(value: &T) {
            assert_eq!(
                crate::json::to_string(value).unwrap(),
                serde_json::to_string(value).unwrap()
            );
        }
        let epoch = Epoch::from_full_value(0x0708_0005_0000_0c8a);
        same(&Channel {
            channel_id: "0x01".into(),
            temporary_channel_id: "0x02".into(),
            role: "initiator",
            peer_pubkey: "0x03".into(),
            state: "ShuttingDown".into(),
            flags: vec!["OUR_SHUTDOWN_SENT".into()],
            created_at_ms: 5,
            deadline_ms: None,
            funding_tx_hash: Some("0x04".into()),
            local_funding_amount: "0x174876e800".into(),
            remote_funding_amount: None,
            signed_submitted: true,
            peer_connected: false,
            close_reason: Some("the user asked".into()),
            local_balance: Some("0x1".into()),
            close: Some(ChannelClose {
                closing_tx_hash: None,
                force_closed_at_ms: Some(9),
                commitment: Some(Commitment {
                    tx_hash: "0x05".into(),
                    by: "us",
                    block_number: "0x10".into(),
                    claimable_at_epoch: Epoch::from_full_value(0x0708_0005_0000_0c8a),
                }),
                claim_tx_hash: None,
            }),
            restored_from_backup: true,
        });
        same(&SubmitSignedFundingTxResult {
            channel_id: "0x01".into(),
            funding_tx_hash: "0x02".into(),
            status: "queued",
        });
        same(&FundingEvent::FundingConfirmations {
            channel_id: "0x01".into(),
            confirmations: 1,
            required: 3,
        });
        same(&FundingEvent::CommitmentOnChain {
            channel_id: "0x01".into(),
            tx_hash: "0x02".into(),
            by: "peer",
            claimable_at_epoch: epoch,
        });
        same(&FundingEvent::PeerDisconnected { reason: "gone".into() });
    }
}
