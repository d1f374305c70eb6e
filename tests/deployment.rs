//! Fiber's published deployments: a lock's code cell found on chain by its
//! type id when a node starts, so a channel on the testnet or mainnet
//! defaults carries the cell deps its commitment and claims need.
#![cfg(not(target_arch = "wasm32"))]

use std::cell::RefCell;
use std::rc::Rc;

use ckb_types::core::DepType;
use ckb_types::{packed, prelude::*};
use fiber_funding::api::deployment::{known_deployments, published_cell_deps, with_published_cell_deps};
use fiber_funding::chain::client::ChainClient;
use fiber_funding::chain::simulated::SimulatedChain;
use fiber_funding::chain::simulated_client::SimulatedChainClient;
use fiber_funding::primitives::Hash256;
use fiber_funding::tx::script::ScriptTemplate;
use futures::executor::block_on;

#[path = "common/chain_double.rs"]
mod chain_double;
use chain_double::ChainWith;

const CKB: u64 = 100_000_000;

/// A chain holding `copies` code cells under the testnet funding lock's
/// type id (a stand-in binary: what counts is where the cell is).
fn chain_with_code_cells(copies: usize) -> (Rc<RefCell<SimulatedChain>>, Vec<packed::OutPoint>) {
    let testnet = &known_deployments()[0];
    let mut chain = SimulatedChain::new();
    let holder = packed::Script::new_builder().code_hash([0xee; 32].pack()).build();
    let cells = (0..copies)
        .map(|_| {
            let output = packed::CellOutput::new_builder()
                .capacity(1_000 * CKB)
                .lock(holder.clone())
                .type_(Some(testnet.funding_code.type_script()).pack())
                .build();
            chain.genesis_cell(output, vec![0x7f; 64])
        })
        .collect();
    (Rc::new(RefCell::new(chain)), cells)
}

#[test]
fn the_code_cell_under_the_type_id_and_ckb_auth_are_the_locks_deps() {
    let testnet = &known_deployments()[0];
    let (chain, cells) = chain_with_code_cells(1);
    let client = SimulatedChainClient::new(chain);
    let deps = block_on(published_cell_deps(
        &client,
        &testnet.funding_lock,
        &testnet.funding_code,
    ))
    .unwrap();
    assert_eq!(deps.len(), 2);
    assert_eq!(deps[0].out_point(), cells[0]);
    assert_eq!(deps[0].dep_type(), DepType::Code.into());
    let auth: [u8; 32] = deps[1].out_point().tx_hash().unpack();
    assert_eq!(
        Hash256(auth).to_string(),
        "0x12c569a258dd9c5bd99f632bb8314b1263b90921ba31496467580d6b79dd14a7"
    );
}

/// A type id is on one live cell; none (a chain that is not the network,
/// a lagging indexer) or more (a lying one) places no code, and no deps
/// are guessed.
#[test]
fn no_cell_or_two_under_the_type_id_place_no_code() {
    let testnet = &known_deployments()[0];
    for copies in [0, 2] {
        let (chain, _) = chain_with_code_cells(copies);
        let client = SimulatedChainClient::new(chain);
        let error = block_on(published_cell_deps(
            &client,
            &testnet.funding_lock,
            &testnet.funding_code,
        ))
        .unwrap_err();
        assert!(error.contains(&format!("{copies} live cells")), "{error}");
    }
    // Another lock's code is not taken for this one.
    let (chain, _) = chain_with_code_cells(1);
    let client = SimulatedChainClient::new(chain);
    let error = block_on(published_cell_deps(
        &client,
        &testnet.commitment_lock,
        &testnet.funding_code,
    ))
    .unwrap_err();
    assert!(error.contains("is not the code of lock"), "{error}");
}

/// At start: a default lock naming no deps gets them; a lock given with
/// deps, or another chain's, is left as it is; what cannot be placed is
/// said, by lock.
#[test]
fn a_node_starting_on_testnet_fills_the_default_locks_deps_and_leaves_given_ones() {
    let testnet = &known_deployments()[0];
    let (chain, cells) = chain_with_code_cells(1);
    let client = SimulatedChainClient::new(chain);
    let (funding, commitment, failures) = block_on(with_published_cell_deps(
        &client,
        &testnet.chain_hash,
        testnet.funding_lock.clone(),
        testnet.commitment_lock.clone(),
    ));
    assert_eq!(funding.cell_deps[0].out_point(), cells[0]);
    assert!(commitment.cell_deps.is_empty(), "its code is not on this chain");
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert!(failures[0].starts_with("commitmentLock: cannot find Fiber's published code on testnet"));

    let given = ScriptTemplate {
        cell_deps: vec![packed::CellDep::default()],
        ..testnet.funding_lock.clone()
    };
    let (funding, _, _) = block_on(with_published_cell_deps(
        &client,
        &testnet.chain_hash,
        given.clone(),
        testnet.commitment_lock.clone(),
    ));
    assert_eq!(funding, given);
    let dev_chain = Hash256([0xdd; 32]);
    let (funding, _, failures) = block_on(with_published_cell_deps(
        &client,
        &dev_chain,
        testnet.funding_lock.clone(),
        testnet.commitment_lock.clone(),
    ));
    assert!(funding.cell_deps.is_empty() && failures.is_empty());
}

/// The code cell was upgraded (its type id moved to a new cell) and the
/// node's indexer still names the old one, which its transaction still
/// holds: taken, every commitment, closing and claim tx would name a dead
/// cell dep and be refused. The code cell must be live.
#[test]
fn a_code_cell_no_longer_live_places_no_code() {
    let testnet = &known_deployments()[0];
    let (chain, _) = chain_with_code_cells(1);
    let listed = SimulatedChainClient::new(chain.clone());
    let listed = block_on(listed.cells_with_type(testnet.funding_code.type_script(), 2)).unwrap();
    // The upgrade: a tx spends the old cell.
    let upgrade = packed::Transaction::new_builder()
        .raw(
            packed::RawTransaction::new_builder()
                .inputs(
                    vec![packed::CellInput::new_builder()
                        .previous_output(listed[0].out_point.clone())
                        .build()]
                    .pack(),
                )
                .outputs(vec![listed[0].output.clone().as_builder().capacity(999 * CKB).build()].pack())
                .outputs_data(vec![[0x7e_u8; 64].to_vec().pack()].pack())
                .build(),
        )
        .build();
    chain.borrow_mut().send_transaction(upgrade).unwrap();
    chain.borrow_mut().mine_block();
    // An indexer that answers with the cells it held before (a lagging
    // or lying node); every other read is the chain's as it is now.
    let stale = ChainWith {
        cells_with_type: Some(Box::new(move |_, _| {
            Box::pin(futures::future::ready(Ok(listed.clone())))
        })),
        ..ChainWith::new(SimulatedChainClient::new(chain))
    };
    let error = block_on(published_cell_deps(
        &stale,
        &testnet.funding_lock,
        &testnet.funding_code,
    ))
    .unwrap_err();
    assert!(error.contains("not live"), "{error}");
}
