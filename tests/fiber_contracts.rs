#![cfg(not(target_arch = "wasm32"))]
//! Fiber's contracts are the published binaries: each decompresses to the
//! sha256 that `third_party/fiber-contracts/README.md` lists.

use fiber_funding::native::contracts::Contract;

#[test]
fn each_contract_decompresses_to_its_published_sha256() {
    let readme = include_str!("../third_party/fiber-contracts/README.md");
    for contract in Contract::ALL {
        // `binary()` itself refuses a binary whose digest differs.
        let binary = contract.binary();
        assert!(binary.starts_with(b"\x7fELF"), "{} is a RISC-V ELF", contract.name());
        let row = readme
            .lines()
            .find(|line| line.starts_with(&format!("| {}.gz", contract.name())))
            .unwrap_or_else(|| panic!("{} is in the README", contract.name()));
        assert!(row.ends_with(&format!("| {} |", contract.sha256())), "{row}");
        println!(
            "{}: {} bytes, sha256 {}",
            contract.name(),
            binary.len(),
            contract.sha256()
        );
    }
}
