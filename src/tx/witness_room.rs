//! The room a wallet's signature takes in the first witness of its inputs
//! (`WitnessArgs.lock`). The funding tx is handed out with a placeholder
//! that large, so the fee it pays at its rate covers the signed tx: a
//! larger signature than the fee was sized for makes a tx below a node's
//! minimum relay fee, which `submit` refuses.

use super::default_lock::SIGNATURE_LEN;
use ckb_types::core::ScriptHashType;
use ckb_types::packed;

/// JoyID's lock on mainnet and testnet (hash type `type`), as CCC's
/// `KnownScript.JoyId` and JoyID's deployment notes give them.
pub const JOYID_CODE_HASHES: [[u8; 32]; 2] = [
    [
        0xd0, 0x0c, 0x84, 0xf0, 0xec, 0x8f, 0xd4, 0x41, 0xc3, 0x8b, 0xc3, 0xf8, 0x7a, 0x37, 0x1f, 0x54, 0x71, 0x90,
        0xf2, 0xfc, 0xff, 0x88, 0xe6, 0x42, 0xbc, 0x5b, 0xf5, 0x4b, 0x9e, 0x31, 0x83, 0x23,
    ],
    [
        0xd2, 0x37, 0x61, 0xb3, 0x64, 0x21, 0x07, 0x35, 0xc1, 0x9c, 0x60, 0x56, 0x1d, 0x21, 0x3f, 0xb3, 0xbe, 0xae,
        0x2f, 0xd6, 0x17, 0x27, 0x43, 0x71, 0x9e, 0xff, 0x69, 0x20, 0xe0, 0x20, 0xba, 0xac,
    ],
];

/// What CCC's JoyID signer reserves for a passkey signature (WebAuthn's
/// signature, public key, authenticator data and client data JSON).
pub const JOYID_LOCK_LEN: usize = 1_000;

/// Whether `lock` is JoyID's lock (any account).
pub fn is_joyid_lock(lock: &packed::Script) -> bool {
    let code_hash = lock.code_hash().raw_data();
    lock.hash_type() == ScriptHashType::Type.into() && JOYID_CODE_HASHES.iter().any(|hash| code_hash.as_ref() == hash)
}

/// The room to leave for the signature of a wallet whose cells carry
/// `lock`, when the caller did not say: JoyID's for JoyID, otherwise a
/// 65-byte secp256k1 signature (the default lock's, Omnilock's in its
/// simplest mode).
pub fn default_lock_len(lock: &packed::Script) -> usize {
    if is_joyid_lock(lock) {
        JOYID_LOCK_LEN
    } else {
        SIGNATURE_LEN
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::primitives::decode_hex;
    use crate::tx::default_lock::lock_script;
    use ckb_types::prelude::*;

    fn script(code_hash: &str, hash_type: ScriptHashType) -> packed::Script {
        let code_hash: [u8; 32] = decode_hex(code_hash).unwrap().try_into().unwrap();
        packed::Script::new_builder()
            .code_hash(code_hash.pack())
            .hash_type(hash_type)
            .args([0u8, 1, 2].as_slice().pack())
            .build()
    }

    /// The hashes as CCC and JoyID's docs print them.
    #[test]
    fn joyid_is_known_on_both_networks_by_code_hash_and_hash_type() {
        let mainnet = "0xd00c84f0ec8fd441c38bc3f87a371f547190f2fcff88e642bc5bf54b9e318323";
        let testnet = "0xd23761b364210735c19c60561d213fb3beae2fd6172743719eff6920e020baac";
        for hash in [mainnet, testnet] {
            assert_eq!(default_lock_len(&script(hash, ScriptHashType::Type)), JOYID_LOCK_LEN);
            assert_eq!(default_lock_len(&script(hash, ScriptHashType::Data1)), SIGNATURE_LEN);
        }
        assert_eq!(default_lock_len(&lock_script([7; 20])), SIGNATURE_LEN);
    }
}
