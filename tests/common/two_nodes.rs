//! The wallets and node settings every two-node setup starts from: the
//! native tests (through `common`), the browser tests and the examples.
//!
//! Those compile as separate crates, some for wasm32, so each includes this
//! one file by `#[path]`; it uses nothing native-only or browser-only, and
//! being fixture it stays out of the library's API.

// Each includer uses only some of it.
#![allow(dead_code)]

use ckb_types::packed;
use ckb_types::prelude::*;
use fiber_funding::chain::simulated::SimulatedChain;
use fiber_funding::crypto::keys::NodeSecret;
use fiber_funding::flow::config::{DEFAULT_ACCEPTOR_GRACE_MS, DEFAULT_EXTERNAL_FUNDING_TIMEOUT_MS};
use fiber_funding::flow::{AcceptorConfig, NodeConfig};
use fiber_funding::primitives::Hash256;
use fiber_funding::tx::default_lock;
use fiber_funding::tx::fee::SHANNONS_PER_CKB;
use fiber_funding::tx::script::ScriptTemplate;
use k256::ecdsa::SigningKey;

pub const CKB: u64 = SHANNONS_PER_CKB;
pub const CHAIN_HASH: [u8; 32] = [0xcc; 32];
/// Made-up code hashes: the simulated chain runs no scripts.
pub const FUNDING_LOCK_CODE_HASH: [u8; 32] = [0xf1; 32];
pub const COMMITMENT_LOCK_CODE_HASH: [u8; 32] = [0xc1; 32];
/// Enough for the acceptor's reserve; it puts nothing into the channel.
const ACCEPTOR_WALLET_CKB: u64 = 500;

/// The user at the wallet, and the acceptor's side with a wallet of its own.
pub struct Wallets {
    /// Signs the funding tx the initiator hands out.
    pub user_key: SigningKey,
    pub user_lock: packed::Script,
    pub acceptor: AcceptorConfig,
}

/// Gives the user `user_ckb` and the acceptor its wallet, each as one cell
/// of `chain`'s genesis.
pub fn fund_wallets(chain: &mut SimulatedChain, user_ckb: u64) -> Wallets {
    let user_key = SigningKey::from_slice(&[0x51; 32]).unwrap();
    let acceptor_key = SigningKey::from_slice(&[0x52; 32]).unwrap();
    let user_lock = default_lock::lock_script_for_key(user_key.verifying_key());
    let acceptor_lock = default_lock::lock_script_for_key(acceptor_key.verifying_key());
    for (lock, ckb) in [(&user_lock, user_ckb), (&acceptor_lock, ACCEPTOR_WALLET_CKB)] {
        let output = packed::CellOutput::new_builder()
            .capacity(ckb * CKB)
            .lock(lock.clone())
            .build();
        chain.genesis_cell(output, Vec::new());
    }
    let acceptor = AcceptorConfig {
        wallet_lock: acceptor_lock,
        wallet_cell_deps: vec![chain.default_lock_cell_dep()],
        wallet_key: acceptor_key.to_bytes().into(),
        funding_amount: 0,
        grace_ms: DEFAULT_ACCEPTOR_GRACE_MS,
        force_close_after_ms: None,
    };
    Wallets {
        user_key,
        user_lock,
        acceptor,
    }
}

/// A node with secret `[secret; 32]`; it acts as the acceptor when given
/// `acceptor`. One confirmation: the simulated chain never reorganizes.
pub fn node_config(secret: u8, acceptor: Option<AcceptorConfig>) -> NodeConfig {
    NodeConfig {
        node_secret: NodeSecret::from_bytes([secret; 32]).unwrap(),
        chain_hash: Hash256(CHAIN_HASH),
        funding_lock: ScriptTemplate::type_hash(FUNDING_LOCK_CODE_HASH),
        commitment_lock: ScriptTemplate::type_hash(COMMITMENT_LOCK_CODE_HASH),
        external_funding_timeout_ms: DEFAULT_EXTERNAL_FUNDING_TIMEOUT_MS,
        funding_confirmations: 1,
        settle_confirmations: 1,
        acceptor,
    }
}
