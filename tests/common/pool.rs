//! What a test needs to run whole drivers on a `futures` `LocalPool`
//! without timers: a platform whose clock stands still and whose sleeps
//! never end, and counter-based randomness.

use fiber_funding::flow::EntropySource;
use fiber_funding::runtime::Platform;
use futures::executor::LocalSpawner;
use futures::future::LocalBoxFuture;
use futures::task::LocalSpawnExt;

pub struct PoolPlatform {
    pub spawner: LocalSpawner,
    pub now_ms: u64,
}

impl Platform for PoolPlatform {
    fn now_ms(&self) -> u64 {
        self.now_ms
    }
    fn spawn(&self, task: LocalBoxFuture<'static, ()>) {
        self.spawner.spawn_local(task).expect("spawn");
    }
    fn sleep(&self, _ms: u64) -> LocalBoxFuture<'static, ()> {
        Box::pin(futures::future::pending())
    }
}

/// Randomness that counts up from its start: distinct starts, distinct draws.
pub struct Counter(pub u64);

impl EntropySource for Counter {
    fn random_32(&mut self) -> [u8; 32] {
        self.0 = self.0.wrapping_add(1);
        fiber_funding::crypto::blake2b_256(&self.0.to_le_bytes())
    }
}
