//! Fiber's on-chain contracts, as third-party binaries
//! (`third_party/fiber-contracts/`, with their provenance in its README):
//! embedded gzip-compressed, decompressed and checked against their
//! published sha256 before use. The simulated chain runs them in ckb-vm and
//! the launcher deploys them on a CKB dev node.

use std::io::Read;

use sha2::{Digest, Sha256};

/// One of Fiber's contracts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Contract {
    /// Locks a channel's funding output (2-of-2 MuSig2).
    FundingLock,
    /// Locks a commitment tx's output (delayed settlement, revocation, TLCs).
    CommitmentLock,
    /// ckb-auth, which both locks call to check signatures.
    Auth,
}

impl Contract {
    pub const ALL: [Contract; 3] = [Contract::FundingLock, Contract::CommitmentLock, Contract::Auth];

    pub fn name(self) -> &'static str {
        match self {
            Contract::FundingLock => "funding-lock",
            Contract::CommitmentLock => "commitment-lock",
            Contract::Auth => "auth",
        }
    }

    fn compressed(self) -> &'static [u8] {
        match self {
            Contract::FundingLock => include_bytes!("../../third_party/fiber-contracts/funding-lock.gz"),
            Contract::CommitmentLock => include_bytes!("../../third_party/fiber-contracts/commitment-lock.gz"),
            Contract::Auth => include_bytes!("../../third_party/fiber-contracts/auth.gz"),
        }
    }

    /// The sha256 of the binary, as `third_party/fiber-contracts/README.md` gives it.
    pub fn sha256(self) -> &'static str {
        match self {
            Contract::FundingLock => "f87a7287e17a6ef828686129c143a79e8651b275e884edacbaa718590c227c96",
            Contract::CommitmentLock => "e3686a0ae96a208365741fa127ab8a8a4f283372d14f8da3fbebd34d090573db",
            Contract::Auth => "51d06e5c5b088424c51a6205eeede1a33054fd752a101cad0d545f32e01da33d",
        }
    }

    /// The RISC-V binary, decompressed and checked against its sha256.
    pub fn binary(self) -> Vec<u8> {
        let mut binary = Vec::new();
        flate2::read::GzDecoder::new(self.compressed())
            .read_to_end(&mut binary)
            .expect("an embedded contract decompresses");
        let digest = crate::primitives::encode_hex(&Sha256::digest(&binary));
        assert_eq!(
            digest.trim_start_matches("0x"),
            self.sha256(),
            "the embedded {} is not the published binary",
            self.name()
        );
        binary
    }
}
