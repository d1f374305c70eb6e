//! Fiber's published deployments (upstream v0.8.0, `config/*/config.yml`):
//! on testnet and mainnet, the funding and commitment locks by code hash,
//! and where their code lives. Fiber publishes each lock's code cell under
//! a type id, so its out point changes when the contract is upgraded; the
//! module finds the cell on chain when a node starts
//! ([`published_cell_deps`]), as upstream resolves its `type_id` deps.

use ckb_types::core::{DepType, ScriptHashType};
use ckb_types::{packed, prelude::*};

use super::error::ApiError;
use crate::chain::client::ChainClient;
use crate::crypto::blake2b_256;
use crate::primitives::Hash256;
use crate::tx::networks;
use crate::tx::script::ScriptTemplate;

/// The type id script's code hash ("TYPE_ID" in ASCII), with hash type `type`.
const TYPE_ID_CODE_HASH: &str = "0x00000000000000000000000000000000000000000000000000545950455f4944";

/// Where a published lock's code is: the type id its code cell carries, and
/// ckb-auth's cell (fixed), which the lock loads.
pub struct PublishedCode {
    pub type_id_args: &'static str,
    pub ckb_auth_tx_hash: &'static str,
}

impl PublishedCode {
    /// The code cell's type script; its hash is the lock's code hash.
    pub fn type_script(&self) -> packed::Script {
        packed::Script::new_builder()
            .code_hash(networks::known_hash(TYPE_ID_CODE_HASH).0.pack())
            .hash_type(ScriptHashType::Type)
            .args(networks::known_hash(self.type_id_args).0.to_vec().pack())
            .build()
    }

    fn ckb_auth_dep(&self) -> packed::CellDep {
        code_dep(
            packed::OutPoint::new_builder()
                .tx_hash(networks::known_hash(self.ckb_auth_tx_hash).0.pack())
                .index(0u32)
                .build(),
        )
    }
}

fn code_dep(out_point: packed::OutPoint) -> packed::CellDep {
    packed::CellDep::new_builder()
        .out_point(out_point)
        .dep_type(DepType::Code)
        .build()
}

/// A Fiber deployment this module knows: on `chain_hash`, the funding and
/// commitment locks are these, their code where `*_code` says.
pub struct KnownDeployment {
    pub network: &'static str,
    pub chain_hash: Hash256,
    pub funding_lock: ScriptTemplate,
    pub commitment_lock: ScriptTemplate,
    pub funding_code: PublishedCode,
    pub commitment_code: PublishedCode,
}

/// Fiber's public deployments: the defaults apply only on their own chain.
pub fn known_deployments() -> [KnownDeployment; 2] {
    let template = |hex: &str| ScriptTemplate::type_hash(networks::known_hash(hex).0);
    const TESTNET_CKB_AUTH: &str = "0x12c569a258dd9c5bd99f632bb8314b1263b90921ba31496467580d6b79dd14a7";
    const MAINNET_CKB_AUTH: &str = "0x95006eee7b4c0c8ad66e0514c88ed0ae43fc8db27793427de86a348ec720b9d6";
    [
        KnownDeployment {
            network: "testnet",
            chain_hash: networks::known_hash(networks::TESTNET_CHAIN_HASH),
            funding_lock: template("0x6c67887fe201ee0c7853f1682c0b77c0e6214044c156c7558269390a8afa6d7c"),
            commitment_lock: template("0x740dee83f87c6f309824d8fd3fbdd3c8380ee6fc9acc90b1a748438afcdf81d8"),
            funding_code: PublishedCode {
                type_id_args: "0x3cb7c0304fe53f75bb5727e2484d0beae4bd99d979813c6fc97c3cca569f10f6",
                ckb_auth_tx_hash: TESTNET_CKB_AUTH,
            },
            commitment_code: PublishedCode {
                type_id_args: "0xf7e458887495cf70dd30d1543cad47dc1dfe9d874177bf19291e4db478d5751b",
                ckb_auth_tx_hash: TESTNET_CKB_AUTH,
            },
        },
        KnownDeployment {
            network: "mainnet",
            chain_hash: networks::known_hash(networks::MAINNET_CHAIN_HASH),
            funding_lock: template("0xe45b1f8f21bff23137035a3ab751d75b36a981deec3e7820194b9c042967f4f1"),
            commitment_lock: template("0x2d45c4d3ed3e942f1945386ee82a5d1b7e4bb16d7fe1ab015421174ab747406c"),
            funding_code: PublishedCode {
                type_id_args: "0x64818d82a372312fb007c480391e1b9759d21b2c7f7959b9c177d72cdc243394",
                ckb_auth_tx_hash: MAINNET_CKB_AUTH,
            },
            commitment_code: PublishedCode {
                type_id_args: "0xdb16e6dcb17f670e5fb7c556d81e522ec5edb069ad2fa3e898e7ccea6c26a39f",
                ckb_auth_tx_hash: MAINNET_CKB_AUTH,
            },
        },
    ]
}

/// The contracts to use on `chain_hash`: the ones given, or the known
/// deployment of that chain. On a chain without one, both must be given —
/// another chain's code hashes would lock the funds into scripts that do not
/// exist there.
pub fn contracts_for_chain(
    chain_hash: &Hash256,
    funding_lock: Option<ScriptTemplate>,
    commitment_lock: Option<ScriptTemplate>,
) -> Result<(ScriptTemplate, ScriptTemplate), ApiError> {
    let known = known_deployments().into_iter().find(|d| d.chain_hash == *chain_hash);
    let pick = |given: Option<ScriptTemplate>, name: &str, default: Option<ScriptTemplate>| {
        given.or(default).ok_or_else(|| {
            ApiError::invalid(
                name,
                format!("required on chain {chain_hash}: Fiber's published contracts are only for testnet and mainnet"),
            )
        })
    };
    Ok((
        pick(
            funding_lock,
            "fundingLock",
            known.as_ref().map(|d| d.funding_lock.clone()),
        )?,
        pick(commitment_lock, "commitmentLock", known.map(|d| d.commitment_lock))?,
    ))
}

/// The cell deps of a lock published as `code`: its code cell as the chain
/// holds it now (the one live cell under its type id, read back through the
/// hash-checked path, and live), then ckb-auth's.
pub async fn published_cell_deps(
    chain: &dyn ChainClient,
    lock: &ScriptTemplate,
    code: &PublishedCode,
) -> Result<Vec<packed::CellDep>, String> {
    let type_script = code.type_script();
    if blake2b_256(type_script.as_slice()) != lock.code_hash.0 {
        return Err(format!(
            "the type id {} is not the code of lock {}",
            code.type_id_args, lock.code_hash
        ));
    }
    let cells = chain
        .cells_with_type(type_script.clone(), 2)
        .await
        .map_err(|e| e.to_string())?;
    let [cell] = cells.as_slice() else {
        return Err(format!(
            "{} live cells carry the type id {} (a type id is on one)",
            cells.len(),
            code.type_id_args
        ));
    };
    // The indexer only hints: the cell is read back from its transaction.
    let resolved = chain
        .resolve_out_points(vec![cell.out_point.clone()])
        .await
        .map_err(|e| e.to_string())?;
    let under_the_type_id = resolved
        .first()
        .and_then(Option::as_ref)
        .and_then(|c| c.output.type_().to_opt())
        .is_some_and(|t| t.as_slice() == type_script.as_slice());
    if !under_the_type_id {
        return Err(format!(
            "the cell the indexer named for the type id {} ({}) is not under it",
            code.type_id_args, cell.out_point
        ));
    }
    // Its transaction holds it for good: a code cell since upgraded (an
    // indexer behind names it still) is a dead dep every tx would be
    // refused for.
    let live = chain
        .cells_live(vec![cell.out_point.clone()])
        .await
        .map_err(|e| e.to_string())?;
    if live != [true] {
        return Err(format!(
            "the cell the indexer named for the type id {} ({}) is not live",
            code.type_id_args, cell.out_point
        ));
    }
    Ok(vec![code_dep(cell.out_point.clone()), code.ckb_auth_dep()])
}

/// `funding_lock` and `commitment_lock` with the cell deps of their
/// published code filled in, where they name none and are a known
/// deployment's on `chain_hash`. A lock the chain could not place keeps no
/// deps (an open on that network is then refused by name) and its reason
/// is returned.
pub async fn with_published_cell_deps(
    chain: &dyn ChainClient,
    chain_hash: &Hash256,
    mut funding_lock: ScriptTemplate,
    mut commitment_lock: ScriptTemplate,
) -> (ScriptTemplate, ScriptTemplate, Vec<String>) {
    let mut failures = Vec::new();
    let Some(known) = known_deployments().into_iter().find(|d| d.chain_hash == *chain_hash) else {
        return (funding_lock, commitment_lock, failures);
    };
    for (lock, default, code, name) in [
        (
            &mut funding_lock,
            &known.funding_lock,
            &known.funding_code,
            "fundingLock",
        ),
        (
            &mut commitment_lock,
            &known.commitment_lock,
            &known.commitment_code,
            "commitmentLock",
        ),
    ] {
        if !lock.same_code(default) || !lock.cell_deps.is_empty() {
            continue;
        }
        match published_cell_deps(chain, lock, code).await {
            Ok(deps) => lock.cell_deps = deps,
            Err(reason) => failures.push(format!(
                "{name}: cannot find Fiber's published code on {}: {reason}",
                known.network
            )),
        }
    }
    (funding_lock, commitment_lock, failures)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each published type id is the code of the lock it is listed for:
    /// the type script's hash is the lock's code hash (hash type `type`).
    #[test]
    fn each_published_type_id_hashes_to_its_locks_code_hash() {
        for known in known_deployments() {
            for (lock, code) in [
                (&known.funding_lock, &known.funding_code),
                (&known.commitment_lock, &known.commitment_code),
            ] {
                assert_eq!(
                    Hash256(blake2b_256(code.type_script().as_slice())),
                    lock.code_hash,
                    "{} {}",
                    known.network,
                    code.type_id_args
                );
            }
        }
    }
}
