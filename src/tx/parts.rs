//! A transaction as plain vectors, so builders can push to it and then pack it.

use ckb_types::packed;
use ckb_types::prelude::*;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TxParts {
    pub version: u32,
    pub cell_deps: Vec<packed::CellDep>,
    pub header_deps: Vec<packed::Byte32>,
    pub inputs: Vec<packed::CellInput>,
    pub outputs: Vec<packed::CellOutput>,
    pub outputs_data: Vec<Vec<u8>>,
    pub witnesses: Vec<Vec<u8>>,
}

impl TxParts {
    pub fn from_tx(tx: &packed::Transaction) -> Self {
        let raw = tx.raw();
        Self {
            version: raw.version().unpack(),
            cell_deps: raw.cell_deps().into_iter().collect(),
            header_deps: raw.header_deps().into_iter().collect(),
            inputs: raw.inputs().into_iter().collect(),
            outputs: raw.outputs().into_iter().collect(),
            outputs_data: raw
                .outputs_data()
                .into_iter()
                .map(|data| data.raw_data().to_vec())
                .collect(),
            witnesses: tx
                .witnesses()
                .into_iter()
                .map(|witness| witness.raw_data().to_vec())
                .collect(),
        }
    }

    pub fn build(&self) -> packed::Transaction {
        let raw = packed::RawTransaction::new_builder()
            .version(self.version)
            .cell_deps(
                packed::CellDepVec::new_builder()
                    .extend(self.cell_deps.iter().cloned())
                    .build(),
            )
            .header_deps(
                packed::Byte32Vec::new_builder()
                    .extend(self.header_deps.iter().cloned())
                    .build(),
            )
            .inputs(
                packed::CellInputVec::new_builder()
                    .extend(self.inputs.iter().cloned())
                    .build(),
            )
            .outputs(
                packed::CellOutputVec::new_builder()
                    .extend(self.outputs.iter().cloned())
                    .build(),
            )
            .outputs_data(
                packed::BytesVec::new_builder()
                    .extend(self.outputs_data.iter().map(|data| data.pack()))
                    .build(),
            )
            .build();
        packed::Transaction::new_builder()
            .raw(raw)
            .witnesses(
                packed::BytesVec::new_builder()
                    .extend(self.witnesses.iter().map(|witness| witness.pack()))
                    .build(),
            )
            .build()
    }
}

/// The hash of a transaction: blake2b-256 of its raw part, so witnesses never change it.
pub fn tx_hash(tx: &packed::Transaction) -> [u8; 32] {
    let hash: [u8; 32] = tx.calc_tx_hash().unpack();
    hash
}

/// A tx's raw part without its cell deps, which is what the commitment
/// lock's signatures (and MuSig2's message) cover: whoever relays such a tx
/// may add, drop or reorder deps, and its hash changes while what it spends
/// and pays stays the same.
pub fn signed_part(tx: &packed::Transaction) -> Vec<u8> {
    tx.raw()
        .as_builder()
        .cell_deps(packed::CellDepVec::default())
        .build()
        .as_slice()
        .to_vec()
}
