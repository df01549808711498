//! Injected I/O faults, for proving crash safety.
//!
//! A [`FaultPlan`] counts every durable step the engine takes (each write,
//! fsync, rename, folder fsync, folder creation and delete of a local
//! store, and each index commit) and fails step number `fail_at` and every
//! step after it, as a machine that crashed at that instant would. It is
//! applied by the [`FaultyFs`](crate::store::FaultyFs) decorator. Tests walk
//! `fail_at` over the steps of an operation and check what survives; a
//! [`recording`](FaultPlan::recording) plan tells them what those steps are.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// Which step fails; see the module docs.
#[derive(Debug)]
pub struct FaultPlan {
    steps: AtomicU64,
    fail_at: u64,
    /// The kind of every step taken, when recording.
    kinds: Option<Mutex<Vec<String>>>,
}

impl FaultPlan {
    /// Fails step `fail_at` (counting from 0) and all later ones.
    pub fn fail_at(fail_at: u64) -> Self {
        FaultPlan {
            steps: AtomicU64::new(0),
            fail_at,
            kinds: None,
        }
    }

    /// Never fails; counts steps.
    pub fn never() -> Self {
        Self::fail_at(u64::MAX)
    }

    /// Never fails; counts steps and keeps the kind of each
    /// (`"write"`, `"fsync dir"`, `"index commit"`, ...), for [`kinds`](Self::kinds).
    pub fn recording() -> Self {
        FaultPlan {
            kinds: Some(Mutex::new(Vec::new())),
            ..Self::never()
        }
    }

    /// The kinds of the steps taken so far, in order, under a
    /// [`recording`](Self::recording) plan (empty under any other).
    pub fn kinds(&self) -> Vec<String> {
        self.kinds
            .as_ref()
            .map(|k| {
                k.lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .clone()
            })
            .unwrap_or_default()
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
        if let Some(kinds) = &self.kinds {
            kinds
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push(what.to_string());
        }
        if n >= self.fail_at {
            return Err(std::io::Error::other(format!(
                "injected fault at step {n} ({what})"
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recording_plan_keeps_every_kind_in_order_and_fails_none() {
        let plan = FaultPlan::recording();
        for what in ["write", "fsync", "write", "index commit"] {
            plan.step(what).unwrap();
        }
        assert_eq!(plan.steps(), 4);
        assert!(!plan.tripped());
        assert_eq!(plan.kinds(), ["write", "fsync", "write", "index commit"]);
        let failing = FaultPlan::fail_at(1);
        failing.step("write").unwrap();
        assert!(failing.step("fsync").is_err() && failing.step("write").is_err());
        assert!(failing.tripped());
        assert!(
            failing.kinds().is_empty(),
            "only a recording plan keeps kinds"
        );
    }
}
