//! Scripts run in ckb-vm, as a CKB node runs them: the [`ScriptRunner`] the
//! native simulated chain (`fiber-simchain`, the test `World`) plugs in, and
//! CKB's real secp256k1 default lock for its genesis. With both, a tx the
//! simulated chain accepts is one Fiber's contracts and the default lock
//! accept on a real node, within its cycle limit.
//!
//! ```
//! use fiber_funding::native::script_vm;
//!
//! let chain = script_vm::verifying_chain();
//! // Genesis holds the real code, data and their dep group, as CKB's does.
//! assert!(chain.is_live(&chain.default_lock_cell_dep().out_point()));
//! ```

use ckb_testtool::ckb_types::core::TransactionView;
use ckb_testtool::ckb_types::packed as tt;
use ckb_testtool::context::Context;
use ckb_types::bytes::Bytes;
use ckb_types::core::DepType;
use ckb_types::packed;
use ckb_types::prelude::*;

use crate::chain::simulated::{ScriptRunner, SimulatedChain};
use crate::primitives::encode_hex;

/// CKB's default `max_tx_verify_cycles`: a node refuses a tx whose scripts
/// need more.
pub const MAX_TX_VERIFY_CYCLES: u64 = 70_000_000;

/// CKB's secp256k1_blake160_sighash_all binary, as its genesis deploys it.
pub fn secp256k1_blake160_sighash_all() -> Vec<u8> {
    bundled("secp256k1_blake160_sighash_all")
}

/// secp256k1_data: the precomputed tables the default lock loads by data hash.
pub fn secp256k1_data() -> Vec<u8> {
    bundled("secp256k1_data")
}

fn bundled(name: &str) -> Vec<u8> {
    ckb_system_scripts::BUNDLED_CELL
        .get(&format!("specs/cells/{name}"))
        .unwrap_or_else(|_| panic!("ckb-system-scripts bundles {name}"))
        .to_vec()
}

/// A simulated chain whose genesis holds CKB's real default lock (code, data
/// and dep group) and which runs every script of every tx in ckb-vm.
pub fn verifying_chain() -> SimulatedChain {
    let mut chain = SimulatedChain::with_system_cells(secp256k1_blake160_sighash_all(), secp256k1_data());
    chain.set_script_runner(Box::new(CkbVm::default()));
    chain
}

/// Runs a tx's scripts with `ckb-testtool`'s verifier: ckb-script over
/// ckb-vm, CKB2023 rules, so `data2` scripts and spawn work as on a node.
#[derive(Debug, Clone, Copy)]
pub struct CkbVm {
    pub max_cycles: u64,
}

impl Default for CkbVm {
    fn default() -> Self {
        Self {
            max_cycles: MAX_TX_VERIFY_CYCLES,
        }
    }
}

impl ScriptRunner for CkbVm {
    fn run(
        &self,
        tx: &packed::Transaction,
        cell: &dyn Fn(&packed::OutPoint) -> Option<(packed::CellOutput, Bytes)>,
    ) -> Result<u64, String> {
        let mut context = Context::default();
        // Scripts' debug lines go to our log, not to stdout.
        context.set_capture_debug(true);
        let mut load = |out_point: &packed::OutPoint| -> Result<Bytes, String> {
            let (output, data) =
                cell(out_point).ok_or_else(|| format!("cell {} is not on chain", encode_hex(out_point.as_slice())))?;
            context.create_cell_with_out_point(to_tt(out_point), to_tt(&output), data.clone());
            Ok(data)
        };
        let raw = tx.raw();
        for input in raw.inputs() {
            load(&input.previous_output())?;
        }
        for dep in raw.cell_deps() {
            let data = load(&dep.out_point())?;
            if dep.dep_type() == DepType::DepGroup.into() {
                let members = packed::OutPointVec::from_slice(&data).map_err(|_| {
                    format!(
                        "dep group {} is not a list of out points",
                        encode_hex(dep.out_point().as_slice())
                    )
                })?;
                for member in members {
                    load(&member)?;
                }
            }
        }
        let view: TransactionView = to_tt::<_, tt::Transaction>(tx).into_view();
        let result = context.verify_tx(&view, self.max_cycles);
        for message in context.captured_messages() {
            log::debug!("script {}: {}", message.id, message.message);
        }
        // CKB's own words, e.g. `Script(TransactionScriptError { … })`.
        result.map_err(|error| error.to_string())
    }
}

/// `ckb_testtool::ckb_types` may be another version of `ckb_types`; an
/// entity crosses as its molecule bytes, which both read alike.
pub fn to_tt<T: Entity, U: ckb_testtool::ckb_types::prelude::Entity>(value: &T) -> U {
    U::from_slice(value.as_slice()).expect("the same molecule type")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain::simulated::ChainRejection;
    use crate::chain::TxStatus;
    use crate::tx::default_lock;
    use ckb_types::core::ScriptHashType;
    use k256::ecdsa::SigningKey;

    const CKB: u64 = 100_000_000;

    fn key(byte: u8) -> SigningKey {
        SigningKey::from_slice(&[byte; 32]).unwrap()
    }

    fn cell(capacity: u64, lock: packed::Script) -> packed::CellOutput {
        packed::CellOutput::new_builder().capacity(capacity).lock(lock).build()
    }

    /// Spends `input` to `to` (less a fee), with `deps`, one placeholder witness.
    fn spend(deps: Vec<packed::CellDep>, input: packed::OutPoint, to: packed::CellOutput) -> packed::Transaction {
        packed::Transaction::new_builder()
            .raw(
                packed::RawTransaction::new_builder()
                    .cell_deps(deps.pack())
                    .inputs(vec![packed::CellInput::new_builder().previous_output(input).build()].pack())
                    .outputs(vec![to].pack())
                    .outputs_data(vec![packed::Bytes::default()].pack())
                    .build(),
            )
            .witnesses(vec![default_lock::placeholder_witness().as_bytes().pack()].pack())
            .build()
    }

    #[test]
    fn a_signed_transfer_runs_the_real_default_lock_and_costs_cycles() {
        let mut chain = verifying_chain();
        let alice = key(0xa1);
        let lock = default_lock::lock_script_for_key(alice.verifying_key());
        let funded = chain.genesis_cell(cell(1_000 * CKB, lock.clone()), Vec::new());
        let tx = spend(vec![chain.default_lock_cell_dep()], funded, cell(999 * CKB, lock));
        let tx = default_lock::sign_group(&tx, &[0], &alice).unwrap();
        let tx_hash = chain.send_transaction(tx).unwrap();
        let cycles = chain.cycles(&tx_hash).expect("the runner ran");
        println!("a one-input default-lock transfer: {cycles} cycles");
        // The real secp256k1 lock costs about a million cycles; a stand-in would not.
        assert!(cycles > 100_000, "{cycles}");
        chain.mine_block();
        assert_eq!(
            chain.transaction_status(&tx_hash),
            TxStatus::Committed { block_number: 1 }
        );
    }

    #[test]
    fn a_lock_whose_code_is_not_in_the_deps_is_refused_by_the_vm() {
        let mut chain = verifying_chain();
        // A lock by data hash of code no dep provides.
        let orphan = packed::Script::new_builder()
            .code_hash([0x42; 32])
            .hash_type(ScriptHashType::Data1)
            .args(Bytes::from(vec![1; 20]))
            .build();
        let funded = chain.genesis_cell(cell(1_000 * CKB, orphan), Vec::new());
        let bob = default_lock::lock_script_for_key(key(0xb0).verifying_key());
        let tx = spend(vec![chain.default_lock_cell_dep()], funded, cell(999 * CKB, bob));
        let Err(ChainRejection::Script { reason }) = chain.send_transaction(tx.clone()) else {
            panic!("the VM should refuse a lock without code");
        };
        assert!(reason.starts_with("Script(TransactionScriptError"), "{reason}");
        assert!(
            reason.contains("Inputs[0].Lock") && reason.contains("ScriptNotFound"),
            "{reason}"
        );
        assert_eq!(
            chain.transaction_status(&tx.calc_tx_hash().unpack()),
            TxStatus::Rejected
        );
    }

    /// The Rust check only knows the default lock by its type hash; the same
    /// code named by data hash is left to the VM, which must catch a forgery.
    #[test]
    fn a_forged_signature_the_rust_check_does_not_see_is_refused_by_the_vm() {
        let mut chain = verifying_chain();
        let alice = key(0xa1);
        let by_data_hash = default_lock::lock_script_for_key(alice.verifying_key())
            .as_builder()
            .code_hash(packed::CellOutput::calc_data_hash(&secp256k1_blake160_sighash_all()))
            .hash_type(ScriptHashType::Data1)
            .build();
        assert!(!default_lock::is_default_lock(&by_data_hash));
        let funded = chain.genesis_cell(cell(1_000 * CKB, by_data_hash.clone()), Vec::new());
        let tx = spend(
            vec![chain.default_lock_cell_dep()],
            funded,
            cell(999 * CKB, by_data_hash),
        );

        let forged = default_lock::sign_group(&tx, &[0], &key(0xb0)).unwrap();
        let Err(ChainRejection::Script { reason }) = chain.send_transaction(forged) else {
            panic!("the VM should refuse another key's signature");
        };
        // The lock's own exit code for a pubkey hash that does not match.
        assert!(
            reason.contains("Inputs[0].Lock") && reason.contains("error code -31"),
            "{reason}"
        );

        let signed = default_lock::sign_group(&tx, &[0], &alice).unwrap();
        let tx_hash = chain.send_transaction(signed).unwrap();
        assert!(chain.cycles(&tx_hash).is_some_and(|cycles| cycles > 0));
    }

    #[test]
    fn a_cycle_limit_below_what_the_scripts_need_is_refused() {
        let mut chain = SimulatedChain::with_system_cells(secp256k1_blake160_sighash_all(), secp256k1_data());
        chain.set_script_runner(Box::new(CkbVm { max_cycles: 1_000 }));
        let alice = key(0xa1);
        let lock = default_lock::lock_script_for_key(alice.verifying_key());
        let funded = chain.genesis_cell(cell(1_000 * CKB, lock.clone()), Vec::new());
        let tx = spend(vec![chain.default_lock_cell_dep()], funded, cell(999 * CKB, lock));
        let tx = default_lock::sign_group(&tx, &[0], &alice).unwrap();
        let Err(ChainRejection::Script { reason }) = chain.send_transaction(tx) else {
            panic!("1,000 cycles cannot run the default lock");
        };
        assert!(reason.contains("ExceededMaximumCycles"), "{reason}");
    }
}
