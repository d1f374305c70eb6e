//! Scripts named by configuration: a code hash and a hash type, args supplied per use.

use ckb_types::core::ScriptHashType;
use ckb_types::packed;
use ckb_types::prelude::*;
use serde::{Deserialize, Serialize};

use crate::primitives::Hash256;

/// A contract reference whose args vary: the funding lock, the commitment lock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScriptTemplate {
    pub code_hash: Hash256,
    /// `"type"`, `"data"`, `"data1"` or `"data2"`, as in CKB's JSON.
    pub hash_type: HashType,
    /// The cells a tx spending a cell of this lock needs as deps (its code,
    /// and ckb-auth for Fiber's locks). Not signed over: only needed to
    /// broadcast, so empty is allowed until a close.
    #[serde(default, with = "cell_deps_hex")]
    pub cell_deps: Vec<packed::CellDep>,
}

/// Cell deps as `0x`-hex of their molecule bytes, as records store entities.
mod cell_deps_hex {
    use super::*;
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(deps: &[packed::CellDep], serializer: S) -> Result<S::Ok, S::Error> {
        let list: Vec<Vec<u8>> = deps.iter().map(|d| d.as_slice().to_vec()).collect();
        crate::primitives::hex_bytes_list::serialize(&list, serializer)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<packed::CellDep>, D::Error> {
        crate::primitives::hex_bytes_list::deserialize(deserializer)?
            .iter()
            .map(|bytes| crate::wire::decode_checked("cell dep", bytes).map_err(serde::de::Error::custom))
            .collect()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HashType {
    Data,
    Type,
    Data1,
    Data2,
}

impl From<HashType> for ScriptHashType {
    fn from(value: HashType) -> Self {
        match value {
            HashType::Data => ScriptHashType::Data,
            HashType::Type => ScriptHashType::Type,
            HashType::Data1 => ScriptHashType::Data1,
            HashType::Data2 => ScriptHashType::Data2,
        }
    }
}

impl ScriptTemplate {
    /// A placeholder (zero code hash) for records of schema version 1, which
    /// did not store the contracts; `ChannelRecord::upgrade` replaces it.
    pub fn unset() -> Self {
        Self::type_hash([0; 32])
    }

    pub fn type_hash(code_hash: [u8; 32]) -> Self {
        Self {
            code_hash: Hash256(code_hash),
            hash_type: HashType::Type,
            cell_deps: Vec::new(),
        }
    }

    /// Whether `other` names the same contract (code hash and hash type),
    /// whatever cell deps each carries.
    pub fn same_code(&self, other: &ScriptTemplate) -> bool {
        self.code_hash == other.code_hash && self.hash_type == other.hash_type
    }

    /// The same contract, with the cell deps a spend needs.
    pub fn with_cell_deps(self, cell_deps: Vec<packed::CellDep>) -> Self {
        Self { cell_deps, ..self }
    }

    pub fn script(&self, args: &[u8]) -> packed::Script {
        packed::Script::new_builder()
            .code_hash(self.code_hash.0.pack())
            .hash_type(ScriptHashType::from(self.hash_type))
            .args(args.to_vec().pack())
            .build()
    }

    /// Whether `script` runs this contract (any args).
    pub fn matches(&self, script: &packed::Script) -> bool {
        script.code_hash().as_slice() == self.code_hash.0
            && script.hash_type() == ScriptHashType::from(self.hash_type).into()
    }
}
