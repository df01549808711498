//! Locks of a home in an object store, where there is no `flock`.
//!
//! A lock is an object `locks/<kind>-<random>` holding JSON (pid, host,
//! boot id, start time): `exclusive` for maintenance (gc, forget,
//! rebalance, shard changes, repair), `shared` for each writer (ingest,
//! put), `reader` for each reader. An exclusive lock excludes every other
//! exclusive or shared one; readers exclude nothing. The holder writes it
//! again every [`refresh`] interval; a lock whose object the store has not
//! seen written for [`stale_after`] (by the store's clock: the age is the
//! difference between its time and that of an object just written, so no
//! two machines' clocks are compared) is stale. Only a lock of this very
//! kernel and pid namespace (machine id, boot id and pid namespace all
//! ours) whose process is gone is stale at once: a cloned VM or a
//! container shares a hostname, a cache folder, even a boot id, with
//! processes this one cannot see.
//!
//! **Fencing.** Each exclusive taker, once it holds the lock, writes a
//! higher generation into `locks/fence`; every holder remembers the
//! generation it started under. Before a writer records a snapshot (or a
//! blob marker), and before maintenance deletes anything, the holder
//! checks ([`ObjectLock::check_alive`]) that its lock was written again
//! without a gap long enough for another to judge it stale (measured on
//! the boot-time clock, which runs on while a laptop is suspended), that
//! its lock object still exists, and that the generation is unchanged. A
//! holder suspended or cut off long enough for an exclusive taker to come
//! and go fails there instead of recording a snapshot whose chunks that
//! taker's gc may have deleted. The refresher stops writing a lock it
//! finds deleted or late, so a lost lock is never brought back to life.
//!
//! Taking a lock works on stores without conditional writes: write your
//! lock, then list `locks/`; if a live lock that excludes yours is there,
//! remove yours and report its holder. Of two takers racing, each lists
//! after its own write has landed, so at least one sees the other and
//! steps back (both may, and then both report the other: never both hold
//! what they may not hold together).
//!
//! Where the store honours `If-None-Match`, an exclusive taker first
//! *claims* the fixed key `locks/exclusive` with a create-only PUT naming
//! its lock: of two exclusive takers racing, exactly one then goes on, so
//! they cannot both step back again and again. A claim whose lock is gone
//! or stale is cleared by the next exclusive taker. The list check above
//! stays, so a store that ignores the condition is as safe, only less
//! lively.
//!
//! Readers' locks serve what `readers` does in a folder home: the writer
//! deletes pack files only when no live reader lock is listed, after the
//! commit that retired them. A reader writes its lock before it lists the
//! segments, so a reader the writer did not see has listed the retiring
//! segment and never uses those packs.

use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

pub(crate) use super::lock::stale_after;
use crate::error::{Error, Result};
use crate::store::object::ObjectStoreBackend;
use crate::store::MetaStore;

/// Where locks live in the home.
pub(crate) const FOLDER: &str = "locks/";

/// The key an exclusive taker claims with a create-only PUT.
const CLAIM: &str = "locks/exclusive";

/// The fencing generation: raised by each exclusive taker.
const FENCE: &str = "locks/fence";

/// What a lock is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Maintenance: alone among writers.
    Exclusive,
    /// One writer of many.
    Shared,
    /// A reader: excludes nothing.
    Reader,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Exclusive => "exclusive",
            Kind::Shared => "shared",
            Kind::Reader => "reader",
        }
    }

    fn of(name: &str) -> Option<Kind> {
        [Kind::Exclusive, Kind::Shared, Kind::Reader]
            .into_iter()
            .find(|k| name.starts_with(&format!("{}-", k.name())))
    }

    /// True when a lock of this kind may not be held beside `other`.
    fn excludes(self, other: Kind) -> bool {
        matches!(
            (self, other),
            (Kind::Exclusive, Kind::Exclusive | Kind::Shared) | (Kind::Shared, Kind::Exclusive)
        )
    }
}

/// A lock object's contents. Locks written by older builds lack the
/// machine id and pid namespace: they are judged by age alone.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Holder {
    pid: u32,
    host: String,
    /// The kernel's id of this boot.
    boot: String,
    since: String,
    /// `/etc/machine-id` (empty where there is none).
    #[serde(default)]
    machine: String,
    /// The pid namespace the pid belongs to (`pid:[inode]`).
    #[serde(default)]
    pidns: String,
}

/// Who this process is: the parts of [`Holder`] that never change.
#[derive(Clone)]
struct Identity {
    host: String,
    boot: String,
    machine: String,
    pidns: String,
}

fn identity() -> &'static Identity {
    static ME: std::sync::OnceLock<Identity> = std::sync::OnceLock::new();
    ME.get_or_init(|| {
        let read = |path: &str| {
            std::fs::read_to_string(path)
                .map(|s| s.trim().to_string())
                .unwrap_or_default()
        };
        Identity {
            host: gethostname::gethostname().to_string_lossy().into_owned(),
            boot: read("/proc/sys/kernel/random/boot_id"),
            machine: read("/etc/machine-id"),
            pidns: std::fs::read_link("/proc/self/ns/pid")
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_default(),
        }
    })
}

impl Holder {
    fn me() -> Self {
        let me = identity().clone();
        Holder {
            pid: std::process::id(),
            host: me.host,
            boot: me.boot,
            since: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
            machine: me.machine,
            pidns: me.pidns,
        }
    }

    /// True when the holder is a process this one could see, of this
    /// kernel's current boot and pid namespace, that no longer runs. A
    /// hostname proves nothing (containers, cloned machines), nor does a
    /// different boot id (a clone booted apart), so every part must match.
    fn is_gone_from_here(&self) -> bool {
        let me = identity();
        let ours = |theirs: &str, mine: &str| !mine.is_empty() && theirs == mine;
        // Where there is no machine id, the boot id and pid namespace
        // alone say "this kernel, these pids".
        ours(&self.host, &me.host)
            && self.machine == me.machine
            && ours(&self.boot, &me.boot)
            && ours(&self.pidns, &me.pidns)
            && !std::path::Path::new(&format!("/proc/{}", self.pid)).exists()
    }
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "pid {} on {} since {}", self.pid, self.host, self.since)
    }
}

/// Time since boot, suspended time included (`CLOCK_BOOTTIME`; a
/// `std::time::Instant` stops while a laptop sleeps).
fn boot_clock() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Boottime);
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

/// How often a holder writes its lock again: a sixth of the staleness.
fn refresh() -> Duration {
    (stale_after() / 6).max(Duration::from_millis(200))
}

/// The longest a holder may go without writing its lock and still be
/// sure nobody took it for stale: the staleness less one refresh, so that
/// what it does next has a refresh's time to land.
fn safe_gap() -> Duration {
    stale_after().saturating_sub(refresh())
}

/// What the refresher knows of its lock.
struct Liveness {
    /// When the lock was last written ([`boot_clock`]).
    written: Duration,
    /// Why the lock can no longer be trusted, once it cannot: it went
    /// unwritten too long, or another process deleted it as stale.
    lost: Option<String>,
}

impl Liveness {
    /// False, the lock being lost, if at `now` it has gone unwritten for
    /// longer than [`safe_gap`].
    fn check(&mut self, now: Duration) -> bool {
        let gap = now.saturating_sub(self.written);
        if gap > safe_gap() {
            self.lose(format!(
                "it went {}s unwritten (suspended, or cut off from the store), long enough \
                 for another process to take it for stale",
                gap.as_secs()
            ));
        }
        self.lost.is_none()
    }

    fn lose(&mut self, why: String) {
        self.lost.get_or_insert(why);
    }
}

/// A held lock; removed on drop.
pub(crate) struct ObjectLock {
    home: Arc<ObjectStoreBackend>,
    key: String,
    /// Tells the refresher to stop.
    stop: Arc<(Mutex<bool>, Condvar)>,
    /// When the lock was last written, and whether it was lost.
    liveness: Arc<Mutex<Liveness>>,
    /// This lock holds the claim on [`CLAIM`].
    claimed: bool,
    /// The fencing generation this lock was taken under (an exclusive
    /// lock: the one it wrote).
    generation: u64,
    refresher: Option<std::thread::JoinHandle<()>>,
}

impl ObjectLock {
    /// Takes a lock of `kind` in `home`; fails with `Locked`, naming the
    /// holder, while a live lock it excludes is there.
    pub(crate) fn take(home: Arc<ObjectStoreBackend>, kind: Kind) -> Result<Self> {
        let mut random = [0u8; 8];
        getrandom::fill(&mut random).expect("the operating system's random source failed");
        let key = format!("{FOLDER}{}-{}", kind.name(), hex::encode(random));
        let body = serde_json::to_vec(&Holder::me()).expect("serialises");
        // Before the write: the store may stamp it any time after.
        let writing = boot_clock();
        MetaStore::put(home.as_ref(), &key, &body)?;
        let mut lock = ObjectLock::start(home, key, body, writing);
        if kind == Kind::Exclusive {
            lock.claim()?;
        }
        // Listed after ours is written, so the store's "now" is known.
        let locks = scan(&lock.home, &lock.key)?;
        for stale in locks.iter().filter(|l| l.stale) {
            let _ = MetaStore::delete(lock.home.as_ref(), &stale.key);
        }
        let other = locks
            .into_iter()
            .find(|l| kind.excludes(l.kind) && !l.stale && l.key != lock.key);
        if let Some(other) = other {
            let err = lock.locked(&other.holder);
            drop(lock);
            return Err(err);
        }
        // Held. Readers are not fenced: they delete nothing and record
        // nothing (and a gc that judged one stale only makes its reads fail).
        lock.generation = match kind {
            Kind::Exclusive => lock.raise_fence()?,
            Kind::Shared => read_fence(&lock.home)?.0,
            Kind::Reader => 0,
        };
        Ok(lock)
    }

    /// Writes a generation one above the current into [`FENCE`], naming
    /// this lock; returns it. Only an exclusive holder does, one at a time.
    fn raise_fence(&self) -> Result<u64> {
        let generation = read_fence(&self.home)?.0 + 1;
        let body = serde_json::to_vec(&Fence {
            generation,
            lock: self.key.clone(),
        })
        .expect("serialises");
        MetaStore::put(self.home.as_ref(), FENCE, &body)?;
        Ok(generation)
    }

    /// Keeps the lock, first written at `written` ([`boot_clock`]), live
    /// from a thread of its own.
    fn start(home: Arc<ObjectStoreBackend>, key: String, body: Vec<u8>, written: Duration) -> Self {
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let liveness = Arc::new(Mutex::new(Liveness {
            written,
            lost: None,
        }));
        let refresher = std::thread::Builder::new()
            .name("dedup-lock".into())
            .spawn({
                let (home, key, stop) = (home.clone(), key.clone(), stop.clone());
                let liveness = liveness.clone();
                move || {
                    let (stopped, wake) = &*stop;
                    let mut done = stopped
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    loop {
                        let (guard, _) = wake
                            .wait_timeout(done, refresh())
                            .unwrap_or_else(std::sync::PoisonError::into_inner);
                        done = guard;
                        if *done || !refresh_once(&home, &key, &body, &liveness) {
                            return;
                        }
                    }
                }
            })
            .ok();
        ObjectLock {
            home,
            key,
            stop,
            liveness,
            claimed: false,
            generation: 0,
            refresher,
        }
    }

    /// Claims [`CLAIM`] for this lock; fails with `Locked` while it names
    /// another live lock.
    fn claim(&mut self) -> Result<()> {
        for _ in 0..3 {
            if self.home.create_if_absent(CLAIM, self.key.as_bytes())? {
                self.claimed = true;
                return Ok(());
            }
            let named = match MetaStore::get(self.home.as_ref(), CLAIM) {
                Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
                Err(e) if crate::store::is_not_found(&e) => continue,
                Err(e) => return Err(e),
            };
            if named == self.key {
                // Our own earlier attempt landed, its answer lost.
                self.claimed = true;
                return Ok(());
            }
            let locks = scan(&self.home, &self.key)?;
            if let Some(holder) = locks.into_iter().find(|l| l.key == named && !l.stale) {
                return Err(self.locked(&holder.holder));
            }
            // Its lock is gone or stale: the claim is free.
            MetaStore::delete(self.home.as_ref(), CLAIM)?;
        }
        Err(Error::Locked {
            path: self.folder(),
            holder: "other processes claiming it at the same time".into(),
        })
    }

    fn folder(&self) -> std::path::PathBuf {
        std::path::PathBuf::from(format!(
            "{}/{FOLDER}",
            MetaStore::location(self.home.as_ref())
        ))
    }

    fn locked(&self, holder: &Holder) -> Error {
        Error::Locked {
            path: self.folder(),
            holder: holder.to_string(),
        }
    }

    /// Fails when this lock may no longer be held (see the module docs):
    /// it went unwritten, by the boot-time clock, long enough for another
    /// process to take it for stale (this one was suspended, or cut off
    /// from the store), or its object is gone, or an exclusive taker came
    /// since it was taken. What the caller was about to record or delete
    /// could then name packs a `gc` has deleted, or that a writer uses.
    pub(crate) fn check_alive(&self) -> Result<()> {
        let lost = |why: String| Error::ObjectStore {
            location: MetaStore::location(self.home.as_ref()),
            message: format!(
                "this process's lock {} may no longer be held: {why}; nothing more is \
                 recorded or deleted (run the command again)",
                self.key
            ),
        };
        {
            let mut liveness = self
                .liveness
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if !liveness.check(boot_clock()) {
                return Err(lost(liveness.lost.clone().unwrap_or_default()));
            }
        }
        if !exists(&self.home, &self.key)? {
            return Err(lost(DELETED.into()));
        }
        let (generation, by) = read_fence(&self.home)?;
        if generation != self.generation {
            return Err(lost(format!(
                "maintenance took the repository since (fencing generation {} became \
                 {generation}, by {by})",
                self.generation
            )));
        }
        Ok(())
    }

    /// True when a reader's lock is live.
    pub(crate) fn readers_open(&self) -> Result<bool> {
        Ok(scan(&self.home, &self.key)?
            .iter()
            .any(|l| l.kind == Kind::Reader && !l.stale))
    }
}

impl Drop for ObjectLock {
    fn drop(&mut self) {
        let (stopped, wake) = &*self.stop;
        *stopped
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = true;
        wake.notify_all();
        if let Some(t) = self.refresher.take() {
            let _ = t.join();
        }
        let ours = MetaStore::get(self.home.as_ref(), CLAIM)
            .is_ok_and(|named| named == self.key.as_bytes());
        if self.claimed && ours {
            let _ = MetaStore::delete(self.home.as_ref(), CLAIM);
        }
        let _ = MetaStore::delete(self.home.as_ref(), &self.key);
    }
}

/// Writes the lock `key` again, unless it was lost (too late, or
/// deleted by another as stale: a lost lock is never brought back, since
/// whoever judged it stale may be acting on that); returns whether to go
/// on refreshing. A failed write is tried again at the next tick;
/// staleness allows several to fail.
fn refresh_once(
    home: &ObjectStoreBackend,
    key: &str,
    body: &[u8],
    liveness: &Mutex<Liveness>,
) -> bool {
    let lock = || {
        liveness
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    };
    let started = boot_clock();
    if !lock().check(started) {
        return false;
    }
    match exists(home, key) {
        Ok(false) => {
            lock().lose(DELETED.into());
            return false;
        }
        Err(_) => return true,
        Ok(true) => {}
    }
    if MetaStore::put(home, key, body).is_ok() {
        // Counted from before the write: the store may have stamped it
        // any time after that.
        let mut l = lock();
        if l.lost.is_none() {
            l.written = started;
        }
    }
    true
}

/// Why a lock whose object is gone is lost.
const DELETED: &str = "another process deleted it as stale";

/// Whether the lock object `key` is still there (one HEAD).
fn exists(home: &ObjectStoreBackend, key: &str) -> Result<bool> {
    match crate::store::PackStore::size(home, key) {
        Ok(_) => Ok(true),
        Err(e) if crate::store::is_not_found(&e) => Ok(false),
        Err(e) => Err(e),
    }
}

/// The contents of [`FENCE`].
#[derive(Serialize, Deserialize)]
struct Fence {
    generation: u64,
    /// The exclusive lock that wrote it.
    lock: String,
}

/// The fencing generation, and the lock that raised it (0 and "nobody"
/// before any exclusive taker raised one).
fn read_fence(home: &ObjectStoreBackend) -> Result<(u64, String)> {
    match MetaStore::get(home, FENCE) {
        Ok(bytes) => {
            let fence: Fence = serde_json::from_slice(&bytes).map_err(|e| {
                Error::corrupt(
                    "lock fence",
                    format!("{}/{FENCE}", MetaStore::location(home)),
                    e.to_string(),
                )
            })?;
            Ok((fence.generation, fence.lock))
        }
        Err(e) if crate::store::is_not_found(&e) => Ok((0, "nobody".into())),
        Err(e) => Err(e),
    }
}

/// One lock found in the home.
struct LockObject {
    key: String,
    kind: Kind,
    holder: Holder,
    stale: bool,
}

/// Lock files read at once when listing the locks.
const LOCK_READERS: usize = 16;

/// Every lock in `home`. A lock is stale when the store last saw it
/// written [`stale_after`] before the newest lock it lists (the caller's
/// own, refreshed within [`refresh`], whenever it holds one), or when it is
/// this host's and its process is gone. A lock whose contents do not read
/// is judged by age alone. The others' contents are read several at once;
/// the lock `own` (the caller's) is not read: it is this process.
fn scan(home: &ObjectStoreBackend, own: &str) -> Result<Vec<LockObject>> {
    let listing: Vec<(String, std::time::SystemTime, Kind)> = home
        .listing(FOLDER)?
        .into_iter()
        .filter_map(|(key, written)| {
            let kind = Kind::of(key.trim_start_matches(FOLDER))?;
            Some((key, written, kind))
        })
        .collect();
    let now = listing.iter().map(|(_, t, _)| *t).max();
    let others: Vec<&str> = listing
        .iter()
        .map(|(key, _, _)| key.as_str())
        .filter(|key| *key != own)
        .collect();
    // In the listing's order, the caller's own left out.
    let mut bodies = crate::store::get_many(home, &others, LOCK_READERS).into_iter();
    let mut out = Vec::new();
    for (key, written, kind) in listing {
        let holder = if key == own {
            Some(Holder::me())
        } else {
            bodies
                .next()
                .and_then(Result::ok)
                .and_then(|b| serde_json::from_slice::<Holder>(&b).ok())
        };
        let age = now
            .and_then(|n| n.duration_since(written).ok())
            .unwrap_or_default();
        let gone = holder.as_ref().is_some_and(Holder::is_gone_from_here);
        out.push(LockObject {
            key,
            kind,
            holder: holder.unwrap_or_else(|| Holder {
                pid: 0,
                host: "an unknown host".into(),
                boot: String::new(),
                since: "an unknown time".into(),
                machine: String::new(),
                pidns: String::new(),
            }),
            stale: gone || age > stale_after(),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gap_past_the_safe_one_loses_the_lock_for_good() {
        let gap = safe_gap();
        let mut l = Liveness {
            written: Duration::from_secs(1000),
            lost: None,
        };
        assert!(l.check(Duration::from_secs(1000) + gap));
        // Written again in time: counted from the new write.
        l.written = Duration::from_secs(1000) + gap;
        assert!(l.check(Duration::from_secs(1000) + gap + gap / 2));
        // One gap too long (a suspend) is enough, whatever follows.
        assert!(!l.check(Duration::from_secs(1001) + gap + gap));
        l.written = Duration::from_secs(5000);
        assert!(!l.check(Duration::from_secs(5000)), "lost stays lost");
        assert!(l.lost.unwrap().contains("unwritten"));
    }

    #[test]
    fn only_a_process_of_this_kernel_and_pid_namespace_is_judged_gone() {
        let dead = {
            let mut child = std::process::Command::new("true").spawn().unwrap();
            let pid = child.id();
            child.wait().unwrap();
            pid
        };
        let gone = Holder {
            pid: dead,
            ..Holder::me()
        };
        assert!(gone.is_gone_from_here());
        assert!(!Holder::me().is_gone_from_here(), "this process runs");
        let elsewhere = [
            Holder {
                boot: "another boot".into(),
                ..gone.clone()
            },
            Holder {
                pidns: "pid:[1]".into(),
                ..gone.clone()
            },
            Holder {
                machine: "another machine".into(),
                ..gone.clone()
            },
            Holder {
                host: "another-host".into(),
                ..gone.clone()
            },
            // From a build before these fields: age alone judges it.
            Holder {
                machine: String::new(),
                pidns: String::new(),
                ..gone.clone()
            },
        ];
        for holder in elsewhere {
            assert!(!holder.is_gone_from_here(), "{holder:?}");
        }
    }
}
