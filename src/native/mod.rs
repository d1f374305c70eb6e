//! The native side: what the counterparty (`fiber-counterparty`) and the
//! simulated chain (`fiber-simchain`) run on, over tokio. Each adapter plugs
//! into the same driver and core the browser uses.
//!
//! | module | what |
//! |---|---|
//! | [`redb_store`] | [`crate::store::Store`] in a redb file: ACID, fsync on commit |
//! | [`platform`] | [`crate::runtime::Platform`] on a tokio `LocalSet`; OS randomness |
//! | [`ws_server`] | [`crate::runtime::PeerLink`] serving many browsers over WebSocket |
//! | [`ws_client`] | [`crate::runtime::PeerLink`] connecting to one counterparty |
//! | [`http_rpc`] | [`crate::chain::rpc::RpcTransport`] over HTTP, and genesis look-ups |
//! | [`counterparty`] | the counterparty's configuration and its run loop |
//! | [`deploy`] | puts Fiber's contracts on a dev chain (`fiber-deploy-contracts`) |
//! | [`simchain`] | a [`crate::chain::simulated::SimulatedChain`] behind CKB's JSON-RPC |
//! | [`script_vm`] | the simulated chain's scripts run in ckb-vm; CKB's real default lock |

pub mod contracts;
pub mod counterparty;
pub mod deploy;
pub mod http_rpc;
pub mod platform;
pub mod redb_store;
pub mod script_vm;
pub mod simchain;
pub mod wallet_cells;
pub mod ws_client;
pub mod ws_connection;
pub mod ws_server;
