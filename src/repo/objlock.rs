//! Locks of a home in an object store, where there is no `flock`.
//!
//! A lock is an object `locks/<kind>-<random>` holding JSON (pid, host,
//! boot id, start time): `exclusive` for maintenance (gc, forget,
//! rebalance, shard changes, repair), `shared` for each writer (ingest,
//! put), `reader` for each reader. An exclusive lock excludes every other
//! exclusive or shared one; readers exclude nothing. The holder writes it again every [`refresh`] interval; a lock
//! whose object the store has not seen written for [`stale_after`] (by the
//! store's clock: the age is the difference between its time and that of
//! an object just written, so no two machines' clocks are compared) is
//! stale, and so at once is one from this host whose process is gone.
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

use crate::error::{Error, Result};
use crate::store::object::ObjectStoreBackend;
use crate::store::MetaStore;

/// Where locks live in the home.
pub(crate) const FOLDER: &str = "locks/";

/// The key an exclusive taker claims with a create-only PUT.
const CLAIM: &str = "locks/exclusive";

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

/// A lock object's contents.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Holder {
    pid: u32,
    host: String,
    /// The kernel's id of this boot: a pid from another boot is no one.
    boot: String,
    since: String,
}

impl Holder {
    fn me() -> Self {
        Holder {
            pid: std::process::id(),
            host: gethostname::gethostname().to_string_lossy().into_owned(),
            boot: boot_id(),
            since: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
        }
    }

    /// True when the holder is a process of this host's current boot
    /// that no longer runs.
    fn is_gone_from_here(&self) -> bool {
        let me = Holder::me();
        self.host == me.host
            && (self.boot != me.boot
                || !std::path::Path::new(&format!("/proc/{}", self.pid)).exists())
    }
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "pid {} on {} since {}", self.pid, self.host, self.since)
    }
}

fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// How long a lock may go unwritten before it is stale:
/// `$DEDUP_LOCK_STALE_SECONDS`, else 30 minutes.
pub(crate) fn stale_after() -> Duration {
    std::env::var("DEDUP_LOCK_STALE_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .map_or(Duration::from_secs(30 * 60), Duration::from_secs)
}

/// How often a holder writes its lock again: a sixth of the staleness.
fn refresh() -> Duration {
    (stale_after() / 6).max(Duration::from_millis(200))
}

/// A held lock; removed on drop.
pub(crate) struct ObjectLock {
    home: Arc<ObjectStoreBackend>,
    key: String,
    /// Tells the refresher to stop.
    stop: Arc<(Mutex<bool>, Condvar)>,
    /// When the lock was last written.
    written: Arc<Mutex<std::time::Instant>>,
    /// This lock holds the claim on [`CLAIM`].
    claimed: bool,
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
        MetaStore::put(home.as_ref(), &key, &body)?;
        let mut lock = ObjectLock::start(home, key, body);
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
        Ok(lock)
    }

    /// Keeps the lock live from a thread of its own.
    fn start(home: Arc<ObjectStoreBackend>, key: String, body: Vec<u8>) -> Self {
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let written = Arc::new(Mutex::new(std::time::Instant::now()));
        let refresher = std::thread::Builder::new()
            .name("dedup-lock".into())
            .spawn({
                let (home, key, stop) = (home.clone(), key.clone(), stop.clone());
                let written = written.clone();
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
                        if *done {
                            return;
                        }
                        // A failed refresh is tried again at the next
                        // tick; staleness allows several to fail.
                        if MetaStore::put(home.as_ref(), &key, &body).is_ok() {
                            *written
                                .lock()
                                .unwrap_or_else(std::sync::PoisonError::into_inner) =
                                std::time::Instant::now();
                        }
                    }
                }
            })
            .ok();
        ObjectLock {
            home,
            key,
            stop,
            written,
            claimed: false,
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

    /// Fails when the lock has gone unwritten for so long that another
    /// process may have taken it for stale (this one was suspended, or cut
    /// off from the store): what it was about to record could name packs a
    /// `gc` has since deleted.
    pub(crate) fn check_alive(&self) -> Result<()> {
        let age = self
            .written
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .elapsed();
        if age + refresh() < stale_after() {
            return Ok(());
        }
        Err(Error::ObjectStore {
            location: MetaStore::location(self.home.as_ref()),
            message: format!(
                "this process's lock {} was last written {}s ago, long enough for \
                 another machine to take it for stale; nothing more is recorded",
                self.key,
                age.as_secs()
            ),
        })
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

/// One lock found in the home.
struct Found {
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
fn scan(home: &ObjectStoreBackend, own: &str) -> Result<Vec<Found>> {
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
        out.push(Found {
            key,
            kind,
            holder: holder.unwrap_or_else(|| Holder {
                pid: 0,
                host: "an unknown host".into(),
                boot: String::new(),
                since: "an unknown time".into(),
            }),
            stale: gone || age > stale_after(),
        });
    }
    Ok(out)
}
