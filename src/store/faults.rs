//! Injected I/O faults, for proving crash safety.
//!
//! A [`FaultPlan`] counts every durable step the engine takes (each write,
//! fsync, rename, folder fsync, folder creation and delete of a local
//! store, and each index commit) and fails step number `fail_at` and every
//! step after it, as a machine that crashed at that instant would. It is
//! applied by the [`FaultyFs`](crate::store::FaultyFs) decorator. Tests walk
//! `fail_at` over every step of an operation and check what survives.

use std::sync::atomic::{AtomicU64, Ordering};

/// Which step fails; see the module docs.
#[derive(Debug)]
pub struct FaultPlan {
    steps: AtomicU64,
    fail_at: u64,
}

impl FaultPlan {
    /// Fails step `fail_at` (counting from 0) and all later ones.
    pub fn fail_at(fail_at: u64) -> Self {
        FaultPlan {
            steps: AtomicU64::new(0),
            fail_at,
        }
    }

    /// Never fails; counts steps.
    pub fn never() -> Self {
        Self::fail_at(u64::MAX)
    }

    /// Steps taken (or attempted) so far.
    pub fn steps(&self) -> u64 {
        self.steps.load(Ordering::SeqCst)
    }

    /// True once a step has failed.
    pub fn tripped(&self) -> bool {
        self.steps() > self.fail_at
    }

    /// Records one step; fails it when its turn has come.
    pub fn step(&self, what: &str) -> std::io::Result<()> {
        let n = self.steps.fetch_add(1, Ordering::SeqCst);
        if n >= self.fail_at {
            return Err(std::io::Error::other(format!(
                "injected fault at step {n} ({what})"
            )));
        }
        Ok(())
    }
}
