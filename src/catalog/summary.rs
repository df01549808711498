//! The index known by its summary, the rest fetched on demand (issue 32,
//! `docs/design.md`, "Writers and readers without a copy of the index"):
//! for each family of a manifest, its trailer, fences, packs, hooks and
//! Bloom slice, read with at most two ranged reads; a lookup goes to the
//! one block that would hold an id, fetched by one ranged read into a
//! bounded block cache, the blocks of one batch many at a time.
//!
//! The rules it keeps: a block is read from the version whose fences were
//! loaded (a block that does not match its fence is damage, never
//! "absent"), and a version gone from the home (superseded, then swept) is
//! an error its caller answers by loading the newer manifest, never "not
//! present".

use std::collections::{HashMap, HashSet};
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::bloom::Bloom;
use crate::error::{Error, Result};
use crate::format::family::{
    block_for, decode_bloom, decode_fences, decode_hooks, decode_packs, open_block, open_section,
    open_trailer, trailer_len, FamilyName, Fence, Hook, Sealer, Section, Trailer, FOOTER_LEN,
    MAX_DIGITS, SECTIONS,
};
use crate::format::manifest::{Manifest, Part};
use crate::format::values::Location;
use crate::id::{ChunkId, PackId};
use crate::store::MetaStore;

/// Bytes of a family's end read first: the footer, the trailer and, for
/// all but large families, every section.
const TAIL: u64 = 64 << 10;

/// Blocks fetched at once by [`Summary::locate`].
const BLOCK_READERS: usize = 32;

/// Ranged reads made and bytes they fetched, for reports.
#[derive(Debug, Default)]
pub struct Fetched {
    gets: AtomicU64,
    bytes: AtomicU64,
}

impl Fetched {
    fn add(&self, bytes: usize) {
        self.gets.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    /// Reads made so far.
    pub fn gets(&self) -> u64 {
        self.gets.load(Ordering::Relaxed)
    }

    /// Bytes they fetched.
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }
}

/// Reads of the index families an operation made (summaries and
/// blocks), and the bytes they fetched: what `ingest --json` and `restore
/// --json` report as `index`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct IndexReads {
    /// Ranged reads.
    pub gets: u64,
    /// Bytes they fetched.
    pub bytes_fetched: u64,
}

impl IndexReads {
    /// What was read since `before`.
    #[must_use]
    pub fn since(self, before: IndexReads) -> IndexReads {
        IndexReads {
            gets: self.gets.saturating_sub(before.gets),
            bytes_fetched: self.bytes_fetched.saturating_sub(before.bytes_fetched),
        }
    }

    /// Both added.
    #[must_use]
    pub fn plus(self, other: IndexReads) -> IndexReads {
        IndexReads {
            gets: self.gets + other.gets,
            bytes_fetched: self.bytes_fetched + other.bytes_fetched,
        }
    }
}

impl Fetched {
    /// The reads so far.
    pub fn reads(&self) -> IndexReads {
        IndexReads {
            gets: self.gets(),
            bytes_fetched: self.bytes(),
        }
    }
}

/// One family version as a lookup needs it: everything but its blocks.
#[derive(Debug)]
pub struct FamilySummary {
    /// The key of the version it summarizes.
    key: String,
    trailer: Trailer,
    fences: Vec<Fence>,
    /// The packs its entries point into.
    pub packs: Vec<PackId>,
    /// Its sampled ids and their packs.
    pub hooks: Vec<Hook>,
    /// A filter of every id it holds.
    pub bloom: Bloom,
    /// The filter's bytes as stored (about what it takes in memory).
    bloom_bytes: u64,
}

impl FamilySummary {
    /// Reads the summary of family version `part` of `home`: the object's
    /// last 64 KiB, then the sections that did not fit in them. With a
    /// `shelf` (this machine's cache), what was read is kept there under
    /// the version's name (a version never changes) and read from there
    /// the next time; a kept copy that does not check out is read again
    /// from the home.
    pub fn load(
        home: &dyn MetaStore,
        sealer: &dyn Sealer,
        part: &Part,
        fetched: &Fetched,
        shelf: Option<&dyn Shelf>,
    ) -> Result<Self> {
        let key = part.name.key(part.version);
        let name = shelf_name(&key);
        if let Some(end) = shelf.and_then(|s| s.get(&name)) {
            if let Ok(summary) = Self::parse(&end, home, sealer, part) {
                return Ok(summary);
            }
        }
        let end = Self::fetch(home, sealer, part, fetched)?;
        let summary = Self::parse(&end, home, sealer, part)?;
        if let Some(shelf) = shelf {
            shelf.put(&name, &end);
        }
        Ok(summary)
    }

    /// The bytes of family version `part` from its first section to its
    /// end (sections, trailer, footer): one ranged read of the last
    /// 64 KiB, and a second when the sections start before them.
    fn fetch(
        home: &dyn MetaStore,
        sealer: &dyn Sealer,
        part: &Part,
        fetched: &Fetched,
    ) -> Result<Vec<u8>> {
        let key = part.name.key(part.version);
        let location = format!("{}/{key}", home.location());
        let bad = |reason: &str| Error::corrupt("index family", &location, reason.to_string());
        if part.size < FOOTER_LEN as u64 {
            return Err(bad("shorter than its footer"));
        }
        let tail_at = part.size.saturating_sub(TAIL);
        let tail = read(home, &key, tail_at, part.size - tail_at, fetched)?;
        let (trailer, object_len) = open_end(&tail, tail_at, sealer, part, &location)?;
        // The sections lie between the blocks and the trailer.
        let first = SECTIONS
            .iter()
            .map(|&s| trailer.span(s).offset)
            .min()
            .unwrap_or(object_len)
            .min(object_len);
        if first >= tail_at {
            let skip = usize::try_from(first - tail_at).expect("inside the tail");
            return Ok(tail[skip..].to_vec());
        }
        read(home, &key, first, part.size - first, fetched)
    }

    /// Checks and decodes `end`, the last bytes of family version `part`
    /// from its first section on.
    fn parse(end: &[u8], home: &dyn MetaStore, sealer: &dyn Sealer, part: &Part) -> Result<Self> {
        let key = part.name.key(part.version);
        let location = format!("{}/{key}", home.location());
        let bad = |reason: &str| Error::corrupt("index family", &location, reason.to_string());
        let at = part
            .size
            .checked_sub(end.len() as u64)
            .ok_or_else(|| bad("longer than the object"))?;
        let (trailer, _) = open_end(end, at, sealer, part, &location)?;
        let section = |s: Section| -> Result<Vec<u8>> {
            let span = trailer.span(s);
            let from = span
                .offset
                .checked_sub(at)
                .and_then(|o| usize::try_from(o).ok())
                .ok_or_else(|| bad("a section before the bytes read"))?;
            let stored = end
                .get(from..from.saturating_add(span.len as usize))
                .ok_or_else(|| bad("a section outside the object"))?;
            open_section(stored, &trailer, s, sealer, &location)
        };
        let fences = decode_fences(&section(Section::Fences)?, &trailer, &location)?;
        let packs = decode_packs(&section(Section::Packs)?, &location)?;
        let hooks = decode_hooks(&section(Section::Hooks)?, &packs, &location)?;
        let bloom_plain = section(Section::Bloom)?;
        let bloom = decode_bloom(&bloom_plain, &location)?;
        Ok(FamilySummary {
            key,
            trailer,
            fences,
            packs,
            hooks,
            bloom,
            bloom_bytes: bloom_plain.len() as u64,
        })
    }

    /// The key of the version it summarizes.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The family.
    pub fn name(&self) -> &FamilyName {
        &self.trailer.name
    }

    /// The version it summarizes.
    pub fn version(&self) -> u64 {
        self.trailer.epoch
    }

    /// The block that would hold `id`, if any.
    pub fn block_for(&self, id: &ChunkId) -> Option<u64> {
        block_for(&self.fences, id)
    }

    /// Reads block `n` from `home` with one ranged read, checked against
    /// its fence.
    pub fn read_block(
        &self,
        home: &dyn MetaStore,
        sealer: &dyn Sealer,
        n: u64,
        fetched: &Fetched,
    ) -> Result<Vec<(ChunkId, Location)>> {
        let location = format!("{}/{}", home.location(), self.key);
        let (offset, len) = self
            .trailer
            .block_at(n)
            .ok_or_else(|| Error::corrupt("index family", &location, format!("no block {n}")))?;
        let stored = read(home, &self.key, offset, len, fetched)?;
        open_block(&stored, n, &self.trailer, &self.fences, sealer, &location)
    }

    /// Bytes it takes in memory, about.
    pub fn memory(&self) -> u64 {
        let fences = self.fences.len() * std::mem::size_of::<Fence>();
        let packs = self.packs.len() * 16;
        let hooks = self.hooks.len() * std::mem::size_of::<Hook>();
        (fences + packs + hooks) as u64 + self.bloom_bytes
    }
}

/// Opens the trailer at the end of `end`, the bytes of family version
/// `part` from offset `at` to its end; with the length of the object
/// before the trailer.
fn open_end(
    end: &[u8],
    at: u64,
    sealer: &dyn Sealer,
    part: &Part,
    location: &str,
) -> Result<(Trailer, u64)> {
    let bad = |reason: &str| Error::corrupt("index family", location, reason.to_string());
    let footer_at = end
        .len()
        .checked_sub(FOOTER_LEN)
        .ok_or_else(|| bad("shorter than its footer"))?;
    let len = trailer_len(&end[footer_at..], location)?;
    let start = footer_at
        .checked_sub(len)
        .ok_or_else(|| bad("its trailer is longer than the object"))?;
    let object_len = at + start as u64;
    let trailer = open_trailer(
        &end[start..footer_at],
        sealer,
        &part.name,
        part.version,
        object_len,
        location,
    )?;
    Ok((trailer, object_len))
}

/// Where this machine keeps the summaries it read (its cache slot): for
/// each family version, its bytes from its first section on, by name.
/// Only a cache: what it loses or cannot keep is read from the home again.
pub trait Shelf: Send + Sync {
    /// The bytes kept under `name`, if any.
    fn get(&self, name: &str) -> Option<Vec<u8>>;
    /// Keeps `bytes` under `name`.
    fn put(&self, name: &str, bytes: &[u8]);
    /// Drops everything kept but `names`.
    fn keep_only(&self, names: &HashSet<String>);
}

/// The name a family version's summary is kept under on a [`Shelf`].
fn shelf_name(key: &str) -> String {
    key.trim_start_matches("index/").replace('/', "_")
}

/// `len` bytes of `key` from `offset`, counted.
fn read(
    home: &dyn MetaStore,
    key: &str,
    offset: u64,
    len: u64,
    fetched: &Fetched,
) -> Result<Vec<u8>> {
    let len = usize::try_from(len).map_err(|_| {
        Error::corrupt(
            "index family",
            format!("{}/{key}", home.location()),
            "a read past memory",
        )
    })?;
    let bytes = home.get_range(key, offset, len)?;
    fetched.add(bytes.len());
    Ok(bytes)
}

/// A block read, shared by the cache and its readers.
type Block = Arc<Vec<(ChunkId, Location)>>;

/// The summaries of every family of one manifest, and a bounded cache of
/// the blocks read through them.
pub struct Summary {
    /// The manifest's epoch.
    pub epoch: u64,
    families: Vec<FamilySummary>,
    /// A family's place in `families`, by its digits.
    by_digits: HashMap<Vec<u8>, usize>,
    blocks: Mutex<lru::LruCache<(usize, u64), Block>>,
    /// Ranged reads made, and their bytes.
    pub fetched: Fetched,
}

impl Summary {
    /// Loads the summary of every family of `manifest` (many at a time),
    /// with room for `cached_blocks` blocks in the block cache.
    /// With a `shelf`, each family's summary is kept there and read from
    /// there the next time (see [`FamilySummary::load`]); what no family
    /// of `manifest` names any more is dropped from it.
    pub fn load(
        home: &dyn MetaStore,
        sealer: &(dyn Sealer + Sync),
        manifest: &Manifest,
        cached_blocks: usize,
        shelf: Option<&dyn Shelf>,
    ) -> Result<Self> {
        let fetched = Fetched::default();
        let parts: Vec<&Part> = manifest.families.iter().filter(|p| p.size > 0).collect();
        let loaded: Vec<Result<FamilySummary>> = std::thread::scope(|scope| {
            let fetched = &fetched;
            let mut out = Vec::with_capacity(parts.len());
            for batch in parts.chunks(BLOCK_READERS) {
                let running: Vec<_> = batch
                    .iter()
                    .map(|part| {
                        scope.spawn(move || FamilySummary::load(home, sealer, part, fetched, shelf))
                    })
                    .collect();
                out.extend(
                    running
                        .into_iter()
                        .map(|h| h.join().expect("a summary load does not panic")),
                );
            }
            out
        });
        let families = loaded.into_iter().collect::<Result<Vec<_>>>()?;
        if let Some(shelf) = shelf {
            shelf.keep_only(&families.iter().map(|f| shelf_name(&f.key)).collect());
        }
        let by_digits = families
            .iter()
            .enumerate()
            .map(|(i, f)| (f.trailer.name.digits().to_vec(), i))
            .collect();
        let room = NonZeroUsize::new(cached_blocks.max(1)).expect("at least one");
        Ok(Summary {
            epoch: manifest.epoch,
            families,
            by_digits,
            blocks: Mutex::new(lru::LruCache::new(room)),
            fetched,
        })
    }

    /// The family that holds `id`, if it holds anything.
    fn family_of(&self, id: &ChunkId) -> Option<usize> {
        let mut digits = [0u8; MAX_DIGITS];
        for (i, d) in digits.iter_mut().enumerate() {
            *d = crate::format::family::nibble(id.as_bytes(), i);
        }
        (0..=MAX_DIGITS).find_map(|d| self.by_digits.get(&digits[..d]).copied())
    }

    /// The summary of the family that holds `id`.
    fn family(&self, id: &ChunkId) -> Option<&FamilySummary> {
        self.family_of(id).map(|f| &self.families[f])
    }

    /// The pack a hook names for `id`, when `id` is one of the sampled
    /// ids (Sparse Indexing's hooks) and its family keeps it: where a
    /// stream's next chunks are likely to be, found without a block read.
    pub fn hooked(&self, id: &ChunkId) -> Option<PackId> {
        if !crate::format::family::is_hook(id) {
            return None;
        }
        let family = self.family(id)?;
        let prefix = u64::from_be_bytes(id.as_bytes()[..8].try_into().expect("8 bytes"));
        let at = family.hooks.partition_point(|h| h.prefix < prefix);
        family
            .hooks
            .get(at)
            .filter(|h| h.prefix == prefix)
            .map(|h| h.pack)
    }

    /// False when no family holds `id` for sure (its Bloom slice says so).
    pub fn may_hold(&self, id: &ChunkId) -> bool {
        self.family_of(id)
            .is_some_and(|f| self.families[f].bloom.may_contain(id))
    }

    /// The families' summaries.
    pub fn families(&self) -> &[FamilySummary] {
        &self.families
    }

    /// Bytes the summaries take in memory, about (the block cache aside).
    pub fn memory(&self) -> u64 {
        self.families.iter().map(FamilySummary::memory).sum()
    }

    /// Where each of `ids` is, in order: each id its family's Bloom slice
    /// may hold is looked up in the one block that would hold it, from the
    /// cache or by one ranged read, those of one call many at a time.
    pub fn locate(
        &self,
        home: &dyn MetaStore,
        sealer: &(dyn Sealer + Sync),
        ids: &[ChunkId],
    ) -> Result<Vec<Option<Location>>> {
        let wanted: Vec<Option<(usize, u64)>> = ids
            .iter()
            .map(|id| {
                let f = self.family_of(id)?;
                let family = &self.families[f];
                if !family.bloom.may_contain(id) {
                    return None;
                }
                Some((f, family.block_for(id)?))
            })
            .collect();
        // The blocks wanted, from the cache where it has them.
        let mut have: HashMap<(usize, u64), Block> = HashMap::new();
        let mut missing: Vec<(usize, u64)> = Vec::new();
        {
            let mut cache = self
                .blocks
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            for &b in wanted.iter().flatten() {
                if have.contains_key(&b) {
                    continue;
                }
                match cache.get(&b) {
                    Some(block) => drop(have.insert(b, block.clone())),
                    None => missing.push(b),
                }
            }
        }
        missing.sort_unstable();
        missing.dedup();
        for batch in missing.chunks(BLOCK_READERS) {
            // One block (a lookup of one id, most of them) is read here;
            // several at once, each on a thread of its own.
            let read: Vec<Result<Vec<(ChunkId, Location)>>> = if let [(f, n)] = batch {
                vec![self.families[*f].read_block(home, sealer, *n, &self.fetched)]
            } else {
                std::thread::scope(|scope| {
                    let running: Vec<_> = batch
                        .iter()
                        .map(|&(f, n)| {
                            let family = &self.families[f];
                            let fetched = &self.fetched;
                            scope.spawn(move || family.read_block(home, sealer, n, fetched))
                        })
                        .collect();
                    running
                        .into_iter()
                        .map(|h| h.join().expect("a block read does not panic"))
                        .collect()
                })
            };
            let mut cache = self
                .blocks
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            for (&b, entries) in batch.iter().zip(read) {
                let block = Arc::new(entries?);
                cache.put(b, block.clone());
                have.insert(b, block);
            }
        }
        let out = ids
            .iter()
            .zip(wanted)
            .map(|(id, b)| {
                let block = &have[&b?];
                let at = block.binary_search_by(|(e, _)| e.cmp(id)).ok()?;
                Some(block[at].1)
            })
            .collect();
        Ok(out)
    }
}

impl std::fmt::Debug for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Summary")
            .field("epoch", &self.epoch)
            .field("families", &self.families.len())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::compact::{Compaction, DiskUse};
    use crate::catalog::segment::{self, Op, Segment};
    use crate::format::family::Plain;
    use crate::format::record::PackEntry;
    use crate::format::values::PackInfo;
    use crate::id::ShardId;
    use crate::store::{LocalStore, OsFs};

    fn ids(range: std::ops::Range<u32>) -> Vec<ChunkId> {
        range.map(|i| ChunkId::of(&i.to_le_bytes())).collect()
    }

    /// A home whose index holds `n` ids in packs of 100, compacted into
    /// families of at most `limit` bytes sealed by `sealer`; with every
    /// id's location and the manifest.
    fn compacted(
        dir: &std::path::Path,
        n: u32,
        limit: u64,
        sealer: &dyn Sealer,
    ) -> (LocalStore, HashMap<ChunkId, Location>, Manifest) {
        let home = LocalStore::create(OsFs::shared(), dir.join("home")).unwrap();
        let mut all = HashMap::new();
        let mut ops = Vec::new();
        for (p, chunk) in ids(0..n).chunks(100).enumerate() {
            let pack = PackId([p as u8 + 1; 16]);
            let entries: Vec<PackEntry> = chunk
                .iter()
                .enumerate()
                .map(|(i, id)| PackEntry {
                    id: *id,
                    offset: 8 + 100 * i as u64,
                    raw_len: 100,
                    stored_len: 100,
                    flags: 0,
                })
                .collect();
            for e in &entries {
                all.insert(e.id, Location { pack, entry: *e });
            }
            let info = PackInfo::of(ShardId(0), 8 + 100 * entries.len() as u64, &entries);
            ops.push(Op::AddPack {
                pack,
                info,
                entries,
            });
        }
        let name = segment::new_name();
        segment::put(&home, &name, &Segment { full: false, ops }).unwrap();
        let tmp = dir.join("tmp");
        std::fs::create_dir_all(&tmp).unwrap();
        let compaction = Compaction {
            home: &home,
            sealer,
            tmp: &tmp,
            limit,
            disk: DiskUse::default(),
            records: None,
        };
        let manifest = compaction.run(None, &[name], 1).unwrap().unwrap();
        (home, all, manifest)
    }

    #[test]
    fn a_summary_locates_every_id_by_one_block_read_and_a_cached_block_costs_none() {
        let dir = tempfile::tempdir().unwrap();
        let (home, all, manifest) = compacted(dir.path(), 6000, 40_000, &Plain);
        let families = manifest.families.iter().filter(|p| p.size > 0).count();
        assert!(families > 4, "{families} families");
        let summary = Summary::load(&home, &Plain, &manifest, 1024, None).unwrap();
        assert_eq!(summary.families().len(), families);
        // A family's summary is one read when it fits in the tail.
        assert_eq!(summary.fetched.gets(), families as u64);
        assert!(summary.memory() > 0);
        let mut asked: Vec<ChunkId> = all.keys().copied().collect();
        asked.sort_unstable();
        let absent = ids(7000..7100);
        asked.extend(&absent);
        let found = summary.locate(&home, &Plain, &asked).unwrap();
        for (id, got) in asked.iter().zip(&found) {
            assert_eq!(got.as_ref(), all.get(id), "{id}");
        }
        let blocks_read = summary.fetched.gets() - families as u64;
        let blocks: u64 = summary.families().iter().map(|f| f.trailer.blocks()).sum();
        assert!(
            blocks_read <= blocks,
            "{blocks_read} reads for {blocks} blocks"
        );
        // Every sampled id present is a hook naming its pack.
        let sampled: Vec<&ChunkId> = all
            .keys()
            .filter(|id| crate::format::family::is_hook(id))
            .collect();
        assert!(!sampled.is_empty());
        for id in sampled {
            assert_eq!(summary.hooked(id), Some(all[id].pack), "{id}");
        }
        // Again: every block is cached, so no read.
        let before = summary.fetched.gets();
        let again = summary.locate(&home, &Plain, &asked).unwrap();
        assert_eq!(again, found);
        assert_eq!(summary.fetched.gets(), before);
        // Most absent ids never cost a read: the slice says "surely new".
        let fresh = Summary::load(&home, &Plain, &manifest, 1024, None).unwrap();
        let loaded = fresh.fetched.gets();
        assert_eq!(
            fresh.locate(&home, &Plain, &absent).unwrap(),
            vec![None; 100]
        );
        assert!(
            fresh.fetched.gets() - loaded < 10,
            "{}",
            fresh.fetched.gets()
        );
    }

    #[test]
    fn a_block_gone_or_damaged_is_an_error_never_absent() {
        let dir = tempfile::tempdir().unwrap();
        let (home, all, manifest) = compacted(dir.path(), 3000, 1 << 20, &Plain);
        let summary = Summary::load(&home, &Plain, &manifest, 1, None).unwrap();
        let untouched = Summary::load(&home, &Plain, &manifest, 1, None).unwrap();
        let id = *all.keys().next().unwrap();
        let part = manifest.families.iter().find(|p| p.size > 0).unwrap();
        let path = home.root().join(part.name.key(part.version));
        let bytes = std::fs::read(&path).unwrap();
        // A flipped byte in the first block.
        let mut bad = bytes.clone();
        bad[20] ^= 1;
        std::fs::write(&path, &bad).unwrap();
        let every: Vec<ChunkId> = all.keys().copied().collect();
        let err = summary.locate(&home, &Plain, &every).unwrap_err();
        assert!(err.to_string().contains("fence"), "{err}");
        // The version gone (superseded and swept): not found, for the
        // caller to load the newer manifest. (A new handle: this one may
        // keep the file open.)
        std::fs::remove_file(&path).unwrap();
        let home = LocalStore::open(OsFs::shared(), home.root()).unwrap();
        let err = untouched.locate(&home, &Plain, &[id]).unwrap_err();
        assert!(crate::store::is_not_found(&err), "{err}");
    }

    #[test]
    fn a_sealed_summary_loads_only_with_its_key() {
        let dir = tempfile::tempdir().unwrap();
        let crypt = crate::crypto::Crypt::with(crate::crypto::MasterKey::generate().unwrap());
        let (home, all, manifest) = compacted(dir.path(), 2000, 20_000, &crypt);
        assert!(Summary::load(&home, &Plain, &manifest, 16, None).is_err());
        let summary = Summary::load(&home, &crypt, &manifest, 16, None).unwrap();
        let asked: Vec<ChunkId> = all.keys().copied().collect();
        let found = summary.locate(&home, &crypt, &asked).unwrap();
        for (id, got) in asked.iter().zip(found) {
            assert_eq!(got.as_ref(), all.get(id));
        }
    }

    /// A shelf in memory.
    #[derive(Default)]
    struct Memory(Mutex<HashMap<String, Vec<u8>>>);

    impl Shelf for Memory {
        fn get(&self, name: &str) -> Option<Vec<u8>> {
            self.0.lock().unwrap().get(name).cloned()
        }
        fn put(&self, name: &str, bytes: &[u8]) {
            self.0
                .lock()
                .unwrap()
                .insert(name.to_string(), bytes.to_vec());
        }
        fn keep_only(&self, names: &HashSet<String>) {
            self.0.lock().unwrap().retain(|n, _| names.contains(n));
        }
    }

    #[test]
    fn a_summary_kept_on_a_shelf_is_read_from_there_and_a_bad_copy_again_from_the_home() {
        let dir = tempfile::tempdir().unwrap();
        let (home, all, manifest) = compacted(dir.path(), 6000, 40_000, &Plain);
        let shelf = Memory::default();
        shelf.put("-.00000000000000ff", b"a version no more");
        let first = Summary::load(&home, &Plain, &manifest, 64, Some(&shelf)).unwrap();
        let families = first.families().len();
        assert!(first.fetched.gets() >= families as u64);
        assert_eq!(
            shelf.0.lock().unwrap().len(),
            families,
            "one a family, the stale one gone"
        );
        // Again: nothing read from the home.
        let second = Summary::load(&home, &Plain, &manifest, 64, Some(&shelf)).unwrap();
        assert_eq!(second.fetched.gets(), 0);
        let ids: Vec<ChunkId> = all.keys().copied().collect();
        let found = second.locate(&home, &Plain, &ids).unwrap();
        assert!(ids
            .iter()
            .zip(&found)
            .all(|(id, loc)| loc.as_ref() == all.get(id)));
        // A damaged copy is read again from the home, and kept again.
        let victim = shelf.0.lock().unwrap().keys().next().unwrap().clone();
        let mut bytes = shelf.get(&victim).unwrap();
        let n = bytes.len();
        bytes[n / 2] ^= 1;
        shelf.put(&victim, &bytes);
        let third = Summary::load(&home, &Plain, &manifest, 64, Some(&shelf)).unwrap();
        assert!(third.fetched.gets() >= 1);
        assert_ne!(shelf.get(&victim).unwrap(), bytes);
        let found = third.locate(&home, &Plain, &ids).unwrap();
        assert!(ids
            .iter()
            .zip(&found)
            .all(|(id, loc)| loc.as_ref() == all.get(id)));
    }
}
