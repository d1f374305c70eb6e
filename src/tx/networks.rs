//! CKB's public networks, as this module knows them: their genesis hashes
//! (a chain's `chain_hash`) and the default lock's dep group each genesis
//! holds. Other chains (dev chains) have neither fixed.

use ckb_types::core::DepType;
use ckb_types::{packed, prelude::*};

use crate::primitives::Hash256;

pub const TESTNET_CHAIN_HASH: &str = "0x10639e0895502b5688a6be8cf69460d76541bfa4821629d86d62ba0aae3f9606";
pub const MAINNET_CHAIN_HASH: &str = "0x92b197aa1fba0f63633922c61c92375c9c074a93e85963554f5499fe1450d0e5";

/// The genesis cell of the secp256k1 dep group (what a tx spending a
/// default-lock cell names as its cell dep): fixed by each network's genesis.
const DEFAULT_LOCK_DEP_GROUPS: [(&str, &str); 2] = [
    (
        TESTNET_CHAIN_HASH,
        "0xf8de3bb47d055cdf460d93a2a6e1b05f7432f9777c8c474abf4eec1d4aee5d37",
    ),
    (
        MAINNET_CHAIN_HASH,
        "0x71a7ba8fc96349fea0ed3a5c47992e3b4084b031a42264a018e0072e8172e46c",
    ),
];

/// "testnet" or "mainnet", for a chain this module knows.
pub fn network_name(chain: &Hash256) -> Option<&'static str> {
    [("testnet", TESTNET_CHAIN_HASH), ("mainnet", MAINNET_CHAIN_HASH)]
        .into_iter()
        .find(|(_, hash)| known_hash(hash) == *chain)
        .map(|(name, _)| name)
}

/// A 32-byte hash written as a constant in this module's source.
pub fn known_hash(hex: &str) -> Hash256 {
    Hash256::from_hex(hex).expect("a valid constant")
}

/// The default lock's dep group on `chain_hash`, if it is a network this
/// module knows.
pub fn default_lock_dep_group(chain: &Hash256) -> Option<packed::CellDep> {
    let (_, tx_hash) = DEFAULT_LOCK_DEP_GROUPS
        .iter()
        .find(|(hash, _)| known_hash(hash) == *chain)?;
    Some(
        packed::CellDep::new_builder()
            .out_point(
                packed::OutPoint::new_builder()
                    .tx_hash(known_hash(tx_hash).0.pack())
                    .index(0u32)
                    .build(),
            )
            .dep_type(DepType::DepGroup)
            .build(),
    )
}
