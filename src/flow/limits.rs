//! What a peer may announce, and what this node proposes: every amount, rate,
//! delay, size and text from outside is bounded here before it is stored or
//! used in arithmetic. A message over a limit is refused and nothing is kept.
//! The figures are in `docs/protocol.md` ("Limits"); upstream Fiber's where it
//! has one.

use ckb_types::core::EpochNumberWithFraction;
use ckb_types::packed;
use ckb_types::prelude::*;

use crate::tx::fee::SHANNONS_PER_CKB;

/// No amount may exceed 90 billion CKB: more than every CKB ever issued
/// (about 67 billion by the end of 2026), and two such amounts still add up
/// inside a `u64`, so no honest amount is refused.
pub const MAX_CAPACITY: u64 = 90_000_000_000 * SHANNONS_PER_CKB;
/// CKB nodes do not relay transactions paying less (shannons per 1,000 bytes),
/// and upstream refuses a lower rate.
pub const MIN_FEE_RATE: u64 = 1_000;
/// 1,000 times the minimum. A higher rate would let a peer make the other
/// side burn its funds as fee for the bytes it adds.
pub const MAX_FEE_RATE: u64 = 1_000_000;
/// Upstream's `MIN_COMMITMENT_DELAY_EPOCHS` and `MAX_COMMITMENT_DELAY_EPOCHS`
/// (1 epoch ≈ 4 hours; 84 ≈ 14 days).
pub const MIN_COMMITMENT_DELAY_EPOCHS: u64 = 1;
pub const MAX_COMMITMENT_DELAY_EPOCHS: u64 = 84;
/// Upstream's `SYS_MAX_TLC_NUMBER_IN_FLIGHT`.
pub const MAX_TLC_NUMBER_IN_FLIGHT: u64 = 253;
/// Lock args of a shutdown script. Wallet locks use 20 to about 60 bytes
/// (default lock 20, multisig 28, JoyID 22, Omnilock up to 53).
pub const MAX_SCRIPT_ARGS: usize = 256;
/// A `TxAbort` reason (or any text from a peer that is stored or shown).
pub const MAX_MESSAGE_TEXT: usize = 1_024;
/// Channels one peer may have open with an acceptor before any is funded
/// (LDK's `MAX_UNFUNDED_CHANS_PER_PEER`): each reserves the acceptor's
/// cells until its deadline, so one peer could otherwise hold them all.
pub const MAX_UNFUNDED_CHANNELS_PER_PEER: usize = 4;
/// Inputs of a funding tx, both sides together, and its serialized size:
/// it must fit one transport message (65,535 bytes) with room to spare.
pub const MAX_FUNDING_INPUTS: usize = 500;
pub const MAX_FUNDING_TX_BYTES: usize = 60_000;

/// Cell deps the wallet's lock may name (`funding_lock_script_cell_deps`):
/// a wallet lock needs a few (secp256k1 one, JoyID and Omnilock two or
/// three); far below what a record holds and a tx can carry.
pub const MAX_WALLET_CELL_DEPS: usize = 16;

/// The room left for the user's signature in its first witness
/// (`WitnessArgs.lock`): at least a secp256k1 signature, at most what keeps
/// the witness well inside the default lock's 32 KiB and the tx one message.
pub const MIN_WITNESS_LOCK_LEN: u64 = 65;
pub const MAX_WITNESS_LOCK_LEN: u64 = 8_192;

/// Why a peer's announcement or message is refused; names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field} {reason}")]
pub struct LimitError {
    pub field: &'static str,
    pub reason: String,
}

fn refuse(field: &'static str, reason: impl Into<String>) -> LimitError {
    LimitError {
        field,
        reason: reason.into(),
    }
}

pub fn check_capacity(field: &'static str, amount: u64) -> Result<(), LimitError> {
    if amount > MAX_CAPACITY {
        return Err(refuse(
            field,
            format!("{amount} shannons is more than CKB's total supply"),
        ));
    }
    Ok(())
}

pub fn check_fee_rate(field: &'static str, rate: u64) -> Result<(), LimitError> {
    if !(MIN_FEE_RATE..=MAX_FEE_RATE).contains(&rate) {
        return Err(refuse(
            field,
            format!("{rate} is outside {MIN_FEE_RATE} to {MAX_FEE_RATE} shannons/KB"),
        ));
    }
    Ok(())
}

pub fn check_witness_lock_len(len: u64) -> Result<(), LimitError> {
    if !(MIN_WITNESS_LOCK_LEN..=MAX_WITNESS_LOCK_LEN).contains(&len) {
        return Err(refuse(
            "funding_witness_lock_len",
            format!("{len} is outside {MIN_WITNESS_LOCK_LEN} to {MAX_WITNESS_LOCK_LEN} bytes"),
        ));
    }
    Ok(())
}

/// `commitment_delay_epoch` is an `EpochNumberWithFraction` (number 24 bits,
/// index 16, length 16) with nothing in the top byte — that byte belongs to
/// the `since` flags the commitment lock adds — a well-formed fraction
/// (index < length), and 1 to 84 epochs.
pub fn check_commitment_delay(delay: u64) -> Result<(), LimitError> {
    const FIELD: &str = "commitment_delay_epoch";
    if delay >> 56 != 0 {
        return Err(refuse(FIELD, format!("{delay:#x} sets bits of the since flags")));
    }
    let epoch = EpochNumberWithFraction::from_full_value_unchecked(delay);
    if !epoch.is_well_formed() {
        return Err(refuse(
            FIELD,
            format!(
                "{delay:#x} is not a valid epoch fraction (index {} of length {})",
                epoch.index(),
                epoch.length()
            ),
        ));
    }
    let min = EpochNumberWithFraction::new(MIN_COMMITMENT_DELAY_EPOCHS, 0, 1);
    let max = EpochNumberWithFraction::new(MAX_COMMITMENT_DELAY_EPOCHS, 0, 1);
    if epoch < min || epoch > max {
        return Err(refuse(
            FIELD,
            format!(
                "{} epochs and {}/{} is outside {MIN_COMMITMENT_DELAY_EPOCHS} to {MAX_COMMITMENT_DELAY_EPOCHS} epochs",
                epoch.number(),
                epoch.index(),
                epoch.length()
            ),
        ));
    }
    Ok(())
}

/// Cell deps a Fiber lock may name (`fundingLock.cell_deps`,
/// `commitmentLock.cell_deps`): its code and ckb-auth. The fees of the
/// commitment and closing txs are sized for the funding lock's two, so a
/// third would make them pay less than their rate, maybe less than a node
/// relays; and the record that copies them must read back.
pub const MAX_LOCK_CELL_DEPS: usize = crate::tx::commitment::FUNDING_LOCK_DEPS;

pub fn check_lock_cell_deps(field: &'static str, count: usize) -> Result<(), LimitError> {
    if count > MAX_LOCK_CELL_DEPS {
        return Err(refuse(
            field,
            format!(
                "{count} cell deps exceed {MAX_LOCK_CELL_DEPS} (the lock's code and ckb-auth), \
                 which the commitment and closing fees are sized for"
            ),
        ));
    }
    Ok(())
}

pub fn check_wallet_cell_deps(count: usize) -> Result<(), LimitError> {
    if count > MAX_WALLET_CELL_DEPS {
        return Err(refuse(
            "funding_lock_script_cell_deps",
            format!("{count} cell deps exceed {MAX_WALLET_CELL_DEPS}"),
        ));
    }
    Ok(())
}

/// CKB's hash types today: `data` 0, `type` 1, `data1` 2, `data2` 4. Every
/// node refuses a tx with an output locked under any other byte, so such a
/// script could never be paid to.
pub fn check_hash_type(field: &'static str, script: &packed::Script) -> Result<(), LimitError> {
    let hash_type: u8 = script.hash_type().into();
    if !matches!(hash_type, 0 | 1 | 2 | 4) {
        return Err(refuse(
            field,
            format!("has hash type {hash_type}, which CKB does not know"),
        ));
    }
    Ok(())
}

pub fn check_shutdown_script(script: &packed::Script) -> Result<(), LimitError> {
    check_hash_type("shutdown_script", script)?;
    let args = script.args().raw_data().len();
    if args > MAX_SCRIPT_ARGS {
        return Err(refuse(
            "shutdown_script",
            format!("args of {args} bytes exceed {MAX_SCRIPT_ARGS}"),
        ));
    }
    Ok(())
}

pub fn check_tlc_number(value: u64) -> Result<(), LimitError> {
    if value > MAX_TLC_NUMBER_IN_FLIGHT {
        return Err(refuse(
            "max_tlc_number_in_flight",
            format!("{value} exceeds {MAX_TLC_NUMBER_IN_FLIGHT}"),
        ));
    }
    Ok(())
}

pub fn check_message_text(field: &'static str, text: &[u8]) -> Result<(), LimitError> {
    if text.len() > MAX_MESSAGE_TEXT {
        return Err(refuse(
            field,
            format!("of {} bytes exceeds {MAX_MESSAGE_TEXT}", text.len()),
        ));
    }
    Ok(())
}

/// A funding tx from a peer: few enough inputs, small enough to send.
pub fn check_funding_tx_size(tx: &packed::Transaction) -> Result<(), LimitError> {
    let inputs = tx.raw().inputs().len();
    if inputs > MAX_FUNDING_INPUTS {
        return Err(refuse(
            "funding tx",
            format!("has {inputs} inputs, more than {MAX_FUNDING_INPUTS}"),
        ));
    }
    let size = tx.as_slice().len();
    if size > MAX_FUNDING_TX_BYTES {
        return Err(refuse(
            "funding tx",
            format!("is {size} bytes, more than {MAX_FUNDING_TX_BYTES}"),
        ));
    }
    Ok(())
}

/// Our own text for a peer (a `TxAbort` reason), cut to what a peer accepts.
pub fn bounded_text(text: &str) -> Vec<u8> {
    let mut end = text.len().min(MAX_MESSAGE_TEXT);
    while !text.is_char_boundary(end) {
        end = end.saturating_sub(1);
    }
    text.as_bytes().get(..end).unwrap_or_default().to_vec()
}

/// Peer text as this node stores and shows it: at most `MAX_MESSAGE_TEXT`
/// bytes (already checked), invalid UTF-8 replaced, control characters dropped.
pub fn printable(text: &[u8]) -> String {
    String::from_utf8_lossy(text)
        .chars()
        .filter(|c| !c.is_control())
        .collect()
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects)]
mod tests {
    use super::*;
    use crate::flow::config::DEFAULT_COMMITMENT_DELAY_EPOCH;

    #[test]
    fn commitment_delays_are_checked_like_upstream_and_without_flag_bits() {
        assert_eq!(check_commitment_delay(DEFAULT_COMMITMENT_DELAY_EPOCH), Ok(()));
        let epochs = |n: u64| EpochNumberWithFraction::new(n, 0, 1).full_value();
        assert!(check_commitment_delay(epochs(84)).is_ok());
        assert!(check_commitment_delay(epochs(85)).is_err());
        assert!(check_commitment_delay(epochs(0)).is_err());
        // 84 and a half: over the limit.
        assert!(check_commitment_delay(EpochNumberWithFraction::new(84, 1, 2).full_value()).is_err());
        // Index not below length, length zero, since flags set.
        assert!(check_commitment_delay((2 << 40) | (3 << 24) | 1).is_err());
        assert!(check_commitment_delay(1).is_err());
        assert!(check_commitment_delay(epochs(1) | (0x20 << 56)).is_err());
    }

    #[test]
    fn fee_rates_and_capacities_have_both_ends_bounded() {
        assert!(check_fee_rate("r", MIN_FEE_RATE).is_ok() && check_fee_rate("r", MAX_FEE_RATE).is_ok());
        assert!(check_fee_rate("r", MIN_FEE_RATE - 1).is_err() && check_fee_rate("r", MAX_FEE_RATE + 1).is_err());
        assert!(check_capacity("c", MAX_CAPACITY).is_ok() && check_capacity("c", MAX_CAPACITY + 1).is_err());
        assert!(MAX_CAPACITY.checked_add(MAX_CAPACITY).is_some());
        assert!(
            check_witness_lock_len(MIN_WITNESS_LOCK_LEN).is_ok()
                && check_witness_lock_len(MAX_WITNESS_LOCK_LEN).is_ok()
        );
        let below = check_witness_lock_len(MIN_WITNESS_LOCK_LEN - 1).unwrap_err();
        assert!(below.to_string().contains("funding_witness_lock_len"), "{below}");
        assert!(check_witness_lock_len(MAX_WITNESS_LOCK_LEN + 1).is_err());
    }

    #[test]
    fn peer_text_is_bounded_and_shown_without_control_characters() {
        assert!(check_message_text("m", &[b'a'; MAX_MESSAGE_TEXT]).is_ok());
        assert!(check_message_text("m", &[b'a'; MAX_MESSAGE_TEXT + 1]).is_err());
        assert_eq!(printable(b"ok\x1b[31m\nred\xff"), "ok[31mred\u{fffd}");
    }
}
