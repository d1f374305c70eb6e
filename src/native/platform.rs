//! Time, tasks and randomness on tokio.
//!
//! The driver and its adapters are single-threaded (`Rc`, `!Send` futures), so
//! they run on a current-thread runtime inside a [`tokio::task::LocalSet`]:
//!
//! ```
//! use fiber_funding::native::platform::TokioPlatform;
//! use fiber_funding::runtime::Platform;
//!
//! let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
//! tokio::task::LocalSet::new().block_on(&runtime, async {
//!     let platform = TokioPlatform;
//!     platform.sleep(10).await;
//!     assert!(platform.now_ms() > 0);
//! });
//! ```

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::future::LocalBoxFuture;

use crate::crypto::keys::NodeSecret;
use crate::flow::EntropySource;
use crate::runtime::Platform;

/// [`Platform`] on tokio. `spawn` must be called from inside a `LocalSet`.
#[derive(Debug, Clone, Copy, Default)]
pub struct TokioPlatform;

impl Platform for TokioPlatform {
    /// Wall-clock time: deadlines are stored in records and must mean the
    /// same thing after a restart.
    fn now_ms(&self) -> u64 {
        now_ms()
    }

    fn spawn(&self, task: LocalBoxFuture<'static, ()>) {
        tokio::task::spawn_local(task);
    }

    fn sleep(&self, ms: u64) -> LocalBoxFuture<'static, ()> {
        Box::pin(tokio::time::sleep(Duration::from_millis(ms)))
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// 32 bytes from the operating system's random source.
///
/// Panics if the OS has none: every key and nonce depends on it, and there is
/// no safe fallback.
pub fn random_32() -> [u8; 32] {
    let mut bytes = [0u8; 32];
    getrandom::getrandom(&mut bytes).expect("the operating system's random source failed");
    bytes
}

/// A fresh node key from OS randomness.
pub fn generate_node_secret() -> NodeSecret {
    loop {
        // Out of range only with probability ~2^-128; draw again if so.
        if let Some(secret) = NodeSecret::from_bytes(random_32()) {
            return secret;
        }
    }
}

/// [`EntropySource`] from the operating system.
#[derive(Debug, Clone, Copy, Default)]
pub struct OsEntropy;

impl EntropySource for OsEntropy {
    fn random_32(&mut self) -> [u8; 32] {
        random_32()
    }
}
