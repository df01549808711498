//! Compaction: an epoch's segments folded into the index families and
//! the pack table (`docs/design.md`, "Epochs and compaction").
//!
//! Each input segment is read once and its ops routed, by chunk-id or
//! pack-id prefix, into spill runs in a temporary folder; then family by
//! family the run is sorted, merged with the family's previous version
//! and written out, split into its 16 children when it would pass the
//! size limit. Memory is one family (its entries and its run) plus a
//! buffer per run open; temporary disk is the input's ops.

use std::collections::{BTreeMap, HashSet};
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use super::records::RecordFold;
use super::replay::read_segments;
use super::segment::Op;
use crate::error::{Error, Result};
use crate::format::family::{
    nibble, Family, FamilyName, FamilyWriter, Sealer, ENTRY_LEN, MAX_DIGITS,
};
use crate::format::manifest::{self, Manifest, Part};
use crate::format::values::{Location, PackInfo};
use crate::id::{ChunkId, PackId};
use crate::store::MetaStore;

/// Bytes a family takes an entry, sections included (measured: 66.5).
const BYTES_AN_ENTRY: u64 = 67;
/// Bytes a pack takes in a pack-table part.
const BYTES_A_PACK: u64 = manifest::PACK_LEN as u64;

/// Where a compaction reads and writes, and how big a family may grow.
pub struct Compaction<'a> {
    /// The home: segments in, families, pack parts and the manifest out.
    pub home: &'a dyn MetaStore,
    /// Seals what is written (the repository's key, or nothing).
    pub sealer: &'a dyn Sealer,
    /// An empty folder for the spill runs, removed by the caller.
    pub tmp: &'a Path,
    /// The size past which a family or a pack part is split.
    pub limit: u64,
    /// The temporary disk the spill runs take, now and at most.
    pub disk: DiskUse,
    /// Record and tombstone files to fold into the record catalog, which
    /// the manifest then names; `None` carries the previous manifest's
    /// catalog (or its lack of one) forward as it is.
    pub records: Option<RecordFold>,
}

/// Bytes of temporary disk in use, and the most at any time.
#[derive(Debug, Default)]
pub struct DiskUse {
    now: std::cell::Cell<u64>,
    peak: std::cell::Cell<u64>,
    /// Runs made so far: each one's file is named by its number.
    runs: std::cell::Cell<u64>,
}

impl DiskUse {
    fn add(&self, n: u64) {
        self.now.set(self.now.get() + n);
        self.peak.set(self.peak.get().max(self.now.get()));
    }

    fn remove(&self, n: u64) {
        self.now.set(self.now.get().saturating_sub(n));
    }

    /// The most bytes the spill runs took at once.
    pub fn peak(&self) -> u64 {
        self.peak.get()
    }
}

/// One change to one id, in the order the segments made it.
enum Change {
    /// A copy: added with its pack, or located.
    Copy(Location),
    /// The copy in this pack leaves.
    Drop(PackId),
    /// Every copy leaves (segments from before many writers).
    Delete,
}

/// A spill run: one prefix's records, appended as segments are read.
struct Run<'d> {
    disk: &'d DiskUse,
    path: PathBuf,
    out: BufWriter<File>,
    /// Bytes written.
    len: u64,
}

impl<'d> Run<'d> {
    /// A new run in `tmp`, named after `label` and numbered, so that no
    /// two runs share a file.
    fn create(tmp: &Path, label: &str, disk: &'d DiskUse) -> Result<Self> {
        let n = disk.runs.get();
        disk.runs.set(n + 1);
        let path = tmp.join(format!("{label}.{n}"));
        let file = File::create(&path).map_err(|e| Error::io(&path, e))?;
        Ok(Run {
            disk,
            out: BufWriter::with_capacity(16 << 10, file),
            path,
            len: 0,
        })
    }

    fn put(&mut self, bytes: &[u8]) -> Result<()> {
        self.len += bytes.len() as u64;
        self.disk.add(bytes.len() as u64);
        self.out
            .write_all(bytes)
            .map_err(|e| Error::io(&self.path, e))
    }

    /// Calls `f` on each record of `len` bytes, streaming, then removes
    /// the run.
    fn each(mut self, len: usize, mut f: impl FnMut(&[u8]) -> Result<()>) -> Result<()> {
        self.out.flush().map_err(|e| Error::io(&self.path, e))?;
        let file = File::open(&self.path).map_err(|e| Error::io(&self.path, e))?;
        let mut input = BufReader::with_capacity(1 << 20, file);
        let mut record = vec![0u8; len];
        for _ in 0..self.len / len as u64 {
            input
                .read_exact(&mut record)
                .map_err(|e| Error::io(&self.path, e))?;
            f(&record)?;
        }
        self.disk.remove(self.len);
        std::fs::remove_file(&self.path).map_err(|e| Error::io(&self.path, e))
    }

    /// Everything written, read back.
    fn read(mut self) -> Result<Vec<u8>> {
        self.out.flush().map_err(|e| Error::io(&self.path, e))?;
        let mut bytes = Vec::new();
        let file = File::open(&self.path).map_err(|e| Error::io(&self.path, e))?;
        BufReader::new(file)
            .read_to_end(&mut bytes)
            .map_err(|e| Error::io(&self.path, e))?;
        std::fs::remove_file(&self.path).map_err(|e| Error::io(&self.path, e))?;
        self.disk.remove(self.len);
        Ok(bytes)
    }
}

/// Bytes of a family run record: kind, sequence, id, then a location or a
/// pack (padded to a location's length).
const RECORD_LEN: usize = 1 + 8 + ENTRY_LEN;

/// The one of `names` (a partition of the ids) whose prefix `digits` of
/// an id start with.
fn owner(
    names: &BTreeMap<Vec<u8>, FamilyName>,
    nibbles: impl Fn(usize) -> u8,
) -> Option<&FamilyName> {
    let mut digits = Vec::with_capacity(MAX_DIGITS);
    for i in 0..=MAX_DIGITS {
        if let Some(name) = names.get(&digits) {
            return Some(name);
        }
        if i == MAX_DIGITS {
            break;
        }
        digits.push(nibbles(i));
    }
    None
}

/// What gives a compaction its input: called once with the function
/// that routes an op, it calls that with every op, in order.
pub type Feed<'f> = dyn FnMut(&mut dyn FnMut(Op) -> Result<()>) -> Result<()> + 'f;

/// The runs an epoch's segments are routed into, and the packs they
/// retire.
struct Spill<'t> {
    families: BTreeMap<Vec<u8>, FamilyName>,
    pack_parts: BTreeMap<Vec<u8>, FamilyName>,
    retired: HashSet<PackId>,
    id_runs: BTreeMap<FamilyName, Run<'t>>,
    pack_runs: BTreeMap<FamilyName, Run<'t>>,
    /// The order of the changes, across segments.
    seq: u64,
    tmp: &'t Path,
    disk: &'t DiskUse,
    /// Ops a run holds before later ones go to its family's children.
    split_after: u64,
    /// What the full segments among the input covered, carried forward.
    covers: Vec<String>,
}

/// `items` (all under one prefix of `d` digits) sorted into 16 lists by
/// their next digit, the one `key` gives the bytes of.
fn by_digit<T>(items: Vec<T>, d: usize, key: impl Fn(&T) -> &[u8]) -> Vec<Vec<T>> {
    let mut lists: Vec<Vec<T>> = (0..16).map(|_| Vec::new()).collect();
    for item in items {
        let digit = usize::from(nibble(key(&item), d));
        lists[digit].push(item);
    }
    lists
}

/// `items` (sorted by `key`, all under one prefix of `d` digits) cut into
/// the 16 runs that share their next digit.
fn slices_by_digit<T>(items: &[T], d: usize, key: impl Fn(&T) -> &[u8]) -> Vec<&[T]> {
    let mut start = 0;
    (0..16u8)
        .map(|digit| {
            let end = start + items[start..].partition_point(|i| nibble(key(i), d) <= digit);
            let slice = &items[start..end];
            start = end;
            slice
        })
        .collect()
}

/// The parts by their digits.
fn by_digits(parts: &[Part]) -> BTreeMap<Vec<u8>, FamilyName> {
    parts
        .iter()
        .map(|p| (p.name.digits().to_vec(), p.name.clone()))
        .collect()
}

impl Spill<'_> {
    /// Routes `op` to the runs of the prefixes it touches.
    fn route(&mut self, op: Op) -> Result<()> {
        match op {
            Op::AddPack {
                pack,
                info,
                entries,
            } => {
                let part = owner(&self.pack_parts, |i| nibble(&pack.0, i))
                    .expect("the pack parts partition the pack ids")
                    .clone();
                let run = run_for(&mut self.pack_runs, &part, self.tmp, self.disk, "p")?;
                run.put(&pack.0)?;
                run.put(&info.encode())?;
                for entry in entries {
                    let location = Location { pack, entry };
                    self.record(1, &entry.id, &location.encode())?;
                }
            }
            Op::Locate(location) => self.record(1, &location.entry.id, &location.encode())?,
            Op::DropEntry { id, pack } => {
                let mut padded = pack.0.to_vec();
                padded.resize(Location::ENCODED_LEN, 0);
                self.record(2, &id, &padded)?;
            }
            Op::DeleteChunk(id) => self.record(3, &id, &[0u8; Location::ENCODED_LEN])?,
            Op::RetirePack { pack, .. } => {
                self.retired.insert(pack);
            }
            Op::Covers(names) => self.covers.extend(names),
        }
        Ok(())
    }

    fn record(&mut self, kind: u8, id: &ChunkId, rest: &[u8]) -> Result<()> {
        self.seq += 1;
        let family = owner(&self.families, |i| nibble(id.as_bytes(), i))
            .expect("the families partition the ids")
            .clone();
        let run = run_for(&mut self.id_runs, &family, self.tmp, self.disk, "f")?;
        let mut record = Vec::with_capacity(RECORD_LEN);
        record.push(kind);
        record.extend_from_slice(&self.seq.to_be_bytes());
        record.extend_from_slice(id.as_bytes());
        record.extend_from_slice(rest);
        run.put(&record)?;
        // A run past what one family holds: later ops of its ids go to
        // its children's runs, so that the fold splits only this much.
        let full = run.len / RECORD_LEN as u64 >= self.split_after;
        if full && family.digits().len() < MAX_DIGITS {
            self.families.remove(family.digits());
            for child in family.children() {
                self.families.insert(child.digits().to_vec(), child);
            }
        }
        Ok(())
    }
}

/// The run of `name`, made on first use.
fn run_for<'r, 'd>(
    runs: &'r mut BTreeMap<FamilyName, Run<'d>>,
    name: &FamilyName,
    tmp: &Path,
    disk: &'d DiskUse,
    kind: &str,
) -> Result<&'r mut Run<'d>> {
    if !runs.contains_key(name) {
        let run = Run::create(tmp, &format!("{kind}-{}", name.label()), disk)?;
        runs.insert(name.clone(), run);
    }
    Ok(runs.get_mut(name).expect("inserted above"))
}

impl Compaction<'_> {
    /// Folds `segments` (names in the home's order) into the index of
    /// `previous` (`None`: an empty one) as epoch `epoch`, and writes the
    /// families and pack parts that changed and the epoch's manifest,
    /// which covers them. Segments are fetched many at a time and each
    /// is read once. `None` when another compaction wrote the epoch's
    /// manifest first: what this one wrote is deleted again.
    pub fn run(
        &self,
        previous: Option<&Manifest>,
        segments: &[String],
        epoch: u64,
    ) -> Result<Option<Manifest>> {
        self.run_covering(previous, segments, &[], epoch)
    }

    /// [`run`](Self::run), the manifest covering `covered` too: segments
    /// still in the home whose ops an input full segment (or the
    /// previous manifest) already holds.
    pub fn run_covering(
        &self,
        previous: Option<&Manifest>,
        segments: &[String],
        covered: &[String],
        epoch: u64,
    ) -> Result<Option<Manifest>> {
        let folded: Vec<String> = segments.iter().chain(covered).cloned().collect();
        let mut feed = |route: &mut dyn FnMut(Op) -> Result<()>| {
            for batch in segments.chunks(super::replay::CATCH_UP_READERS) {
                let names: Vec<&str> = batch.iter().map(String::as_str).collect();
                for segment in read_segments(self.home, &names)? {
                    for op in segment.ops {
                        route(op)?;
                    }
                }
            }
            Ok(())
        };
        self.fold(previous, &mut feed, &folded, epoch)
    }

    /// The whole of `index` (a cache made from the packs, by `repair
    /// index`) written as families from nothing, as epoch `epoch`, the
    /// manifest covering `covers`: streamed through the spill runs like
    /// any compaction, so its memory is one family's whatever the size.
    pub fn from_index(
        &self,
        index: &super::Index,
        covers: &[String],
        epoch: u64,
    ) -> Result<Option<Manifest>> {
        let mut feed = |route: &mut dyn FnMut(Op) -> Result<()>| {
            for (pack, info) in index.packs()? {
                route(Op::AddPack {
                    pack,
                    info,
                    entries: Vec::new(),
                })?;
            }
            index.for_each_chunk(|id, value| route(Op::Locate(Location::decode(id, value)?)))?;
            for (hex, _) in index.meta_under(super::RETIRED)? {
                let pack = PackId::from_hex(&hex)
                    .ok_or_else(|| Error::corrupt("index tombstone", &hex, "not a pack id"))?;
                route(Op::RetirePack {
                    pack,
                    ids: Vec::new(),
                })?;
            }
            Ok(())
        };
        self.fold(None, &mut feed, covers, epoch)
    }

    /// [`run`](Self::run) with the ops `feed` gives (in order, to the
    /// function it is handed) for input, the manifest covering `folded`
    /// (and what `previous` covered): `repair` feeds an index it made
    /// from the packs.
    pub fn fold(
        &self,
        previous: Option<&Manifest>,
        feed: &mut Feed<'_>,
        folded: &[String],
        epoch: u64,
    ) -> Result<Option<Manifest>> {
        let root = || {
            vec![Part {
                name: FamilyName::root(),
                version: epoch,
                size: 0,
            }]
        };
        let version = manifest::new_version(epoch);
        let old_families = previous.map_or_else(root, |m| m.families.clone());
        let old_packs = previous.map_or_else(root, |m| m.packs.clone());
        let mut spill = Spill {
            families: by_digits(&old_families),
            pack_parts: by_digits(&old_packs),
            retired: previous
                .map(|m| m.tombstones.iter().copied().collect())
                .unwrap_or_default(),
            id_runs: BTreeMap::new(),
            pack_runs: BTreeMap::new(),
            seq: 0,
            tmp: self.tmp,
            disk: &self.disk,
            split_after: self.limit / BYTES_AN_ENTRY,
            covers: Vec::new(),
        };
        feed(&mut |op| spill.route(op))?;
        let retired = &spill.retired;
        // The tombstones kept: this input's. One folded before expires
        // (`docs/design.md`, "Where retirement lives").
        let was: HashSet<PackId> = previous
            .map(|m| m.tombstones.iter().copied().collect())
            .unwrap_or_default();
        let fresh: HashSet<PackId> = retired.difference(&was).copied().collect();
        let mut families = Vec::new();
        for part in old_families {
            // A family's runs, its own and its descendants', sort together
            // right after its name.
            let mine: Vec<FamilyName> = spill
                .id_runs
                .range(part.name.clone()..)
                .map(|(n, _)| n)
                .take_while(|n| n.digits().starts_with(part.name.digits()))
                .cloned()
                .collect();
            if mine.is_empty() {
                families.push(part);
                continue;
            }
            let runs = mine
                .into_iter()
                .map(|n| {
                    let run = spill.id_runs.remove(&n).expect("listed above");
                    (n, run)
                })
                .collect();
            let old = self.old_entries(&part)?;
            families.extend(self.fold_family(&part.name, old, runs, retired, version)?);
        }
        let mut packs = Vec::new();
        for part in old_packs {
            let touched = part.size > 0 && fresh.iter().any(|p| part.name.holds(&p.0));
            match spill.pack_runs.remove(&part.name) {
                Some(run) => {
                    let old = self.old_packs(&part)?;
                    packs.extend(self.fold_packs(&part.name, old, Some(run), retired, version)?);
                }
                None if touched => {
                    let old = self.old_packs(&part)?;
                    packs.extend(self.fold_packs(&part.name, old, None, retired, version)?);
                }
                None => packs.push(part),
            }
        }
        let mut tombstones: Vec<PackId> = fresh.into_iter().collect();
        tombstones.sort_unstable();
        // Every name a manifest ever covered is carried forward: a machine
        // that applied a segment since deleted finds it accounted for,
        // however many compactions ago (`engine::history`).
        let mut covers: Vec<String> = previous.map(|m| m.covers.clone()).unwrap_or_default();
        covers.extend(spill.covers);
        covers.extend(folded.iter().cloned());
        covers.sort_unstable();
        covers.dedup();
        let previous_records = previous.and_then(|m| m.records.as_deref());
        let records = match &self.records {
            Some(fold) => Some(self.fold_records(previous_records, fold, version)?),
            None => previous_records.map(<[Part]>::to_vec),
        };
        let manifest = Manifest {
            epoch,
            families,
            packs,
            records,
            tombstones,
            covers,
        };
        let key = manifest::manifest_key(epoch);
        // Create-only: the first manifest of an epoch is the epoch's. A
        // compaction that finds one there lost a race with another (or
        // was a rerun): what it wrote is named by nothing, so it goes.
        if self
            .home
            .create_if_absent(&key, &manifest.encode(self.sealer))?
        {
            return Ok(Some(manifest));
        }
        for key in manifest.keys_of(version) {
            self.home.delete(&key)?;
        }
        Ok(None)
    }

    /// Writes a new index object, create-only: its key is this
    /// compaction's own ([`manifest::new_version`]), so taken is an error.
    pub(super) fn create(&self, key: &str, bytes: &[u8]) -> Result<()> {
        if self.home.create_if_absent(key, bytes)? {
            Ok(())
        } else {
            Err(Error::corrupt(
                "index object",
                format!("{}/{key}", self.home.location()),
                "already there, written by another compaction with the same version",
            ))
        }
    }

    /// `run` (of records `len` bytes long, each keyed by the bytes from
    /// `key_at`) copied into one run for each child of `name`, streaming.
    fn split_run(
        &self,
        run: Run<'_>,
        name: &FamilyName,
        kind: &str,
        len: usize,
        key_at: usize,
    ) -> Result<Vec<Run<'_>>> {
        let d = name.digits().len();
        let mut split: Vec<Run> = Vec::with_capacity(16);
        for child in name.children() {
            split.push(Run::create(
                self.tmp,
                &format!("{kind}-{}", child.label()),
                &self.disk,
            )?);
        }
        run.each(len, |record| {
            split[usize::from(nibble(&record[key_at..], d))].put(record)
        })?;
        Ok(split)
    }

    /// The entries of the current version of `part` (none for a family
    /// never written).
    fn old_entries(&self, part: &Part) -> Result<Vec<(ChunkId, Location)>> {
        if part.size == 0 {
            return Ok(Vec::new());
        }
        let key = part.name.key(part.version);
        let bytes = self.home.get(&key)?;
        Ok(Family::read(&bytes, self.sealer, &part.name, part.version, &key)?.entries)
    }

    /// Family `name`, whose current entries are `old`, with `runs`
    /// applied (its own run, and those of descendants the spill routed to
    /// once its run passed the limit), written as version `version` (as its
    /// children when it would pass the limit). Runs too big to sort in
    /// memory within the limit are split by the next digit first,
    /// streaming, and each child folded alone.
    fn fold_family(
        &self,
        name: &FamilyName,
        old: Vec<(ChunkId, Location)>,
        runs: Vec<(FamilyName, Run<'_>)>,
        retired: &HashSet<PackId>,
        version: u64,
    ) -> Result<Vec<Part>> {
        let records: u64 = runs.iter().map(|(_, r)| r.len / RECORD_LEN as u64).sum();
        let d = name.digits().len();
        if (records + old.len() as u64) * BYTES_AN_ENTRY > self.limit && d < MAX_DIGITS {
            let mut below: Vec<Vec<(FamilyName, Run)>> = (0..16).map(|_| Vec::new()).collect();
            for (run_name, run) in runs {
                if run_name == *name {
                    let split = self.split_run(run, name, "f", RECORD_LEN, 9)?;
                    for ((child, run), list) in
                        name.children().into_iter().zip(split).zip(&mut below)
                    {
                        list.push((child, run));
                    }
                } else {
                    below[usize::from(run_name.digits()[d])].push((run_name, run));
                }
            }
            let olds = by_digit(old, d, |(id, _)| id.as_bytes());
            let mut parts = Vec::new();
            for ((child, old), runs) in name.children().iter().zip(olds).zip(below) {
                parts.extend(self.fold_family(child, old, runs, retired, version)?);
            }
            return Ok(parts);
        }
        let mut run = Vec::new();
        for (_, r) in runs {
            run.extend(r.read()?);
        }
        let mut changes: Vec<(ChunkId, u64, Change)> = run
            .chunks_exact(RECORD_LEN)
            .map(|r| {
                let seq = u64::from_be_bytes(r[1..9].try_into().expect("8 bytes"));
                let id = ChunkId(r[9..41].try_into().expect("32 bytes"));
                let rest = &r[41..];
                let change = match r[0] {
                    1 => Location::decode(id, rest).map(Change::Copy),
                    2 => Ok(Change::Drop(PackId(
                        rest[..16].try_into().expect("16 bytes"),
                    ))),
                    _ => Ok(Change::Delete),
                };
                change.map(|c| (id, seq, c))
            })
            .collect::<Result<_>>()?;
        changes.sort_unstable_by_key(|(id, seq, _)| (*id, *seq));
        let mut entries: Vec<(ChunkId, Location)> = Vec::with_capacity(old.len() + changes.len());
        let mut old = old.into_iter().peekable();
        let mut changes = changes.into_iter().peekable();
        loop {
            let next = match (old.peek(), changes.peek()) {
                (None, None) => break,
                (Some((a, _)), Some((b, _, _))) => *a.min(b),
                (Some((a, _)), None) => *a,
                (None, Some((b, _, _))) => *b,
            };
            let mut copies: Vec<Location> = Vec::new();
            let kept = old.next_if(|(id, _)| *id == next).map(|(_, l)| l);
            copies.extend(kept);
            while let Some((_, _, change)) = changes.next_if(|(id, _, _)| *id == next) {
                match change {
                    Change::Copy(l) => {
                        if !copies.iter().any(|c| c.is(&l.pack, &l.entry)) {
                            copies.push(l);
                        }
                    }
                    Change::Drop(pack) => copies.retain(|c| c.pack != pack),
                    Change::Delete => copies.clear(),
                }
            }
            copies.retain(|c| !retired.contains(&c.pack));
            // The copy the index had stays; else, of the new ones, the
            // first by pack and place: any compactor picks the same.
            let chosen = match kept {
                Some(k) if copies.first().is_some_and(|c| c.is(&k.pack, &k.entry)) => Some(k),
                _ => copies.into_iter().min_by_key(|c| (c.pack, c.entry.offset)),
            };
            if let Some(location) = chosen {
                entries.push((next, location));
            }
        }
        self.write_families(name, &entries, version)
    }

    /// `entries` (sorted, all of family `name`) written as version
    /// `version` of `name`, or of its children if too big for one object.
    fn write_families(
        &self,
        name: &FamilyName,
        entries: &[(ChunkId, Location)],
        version: u64,
    ) -> Result<Vec<Part>> {
        let size = entries.len() as u64 * BYTES_AN_ENTRY;
        if size > self.limit && name.digits().len() < MAX_DIGITS {
            // Sorted entries of one family are sorted by their next digit.
            let d = name.digits().len();
            let mut parts = Vec::new();
            let slices = slices_by_digit(entries, d, |(id, _)| id.as_bytes());
            for (child, mine) in name.children().iter().zip(slices) {
                parts.extend(self.write_families(child, mine, version)?);
            }
            return Ok(parts);
        }
        let mut w = FamilyWriter::new(
            Vec::new(),
            self.sealer,
            name.clone(),
            version,
            entries.len() as u64,
        )?;
        for (id, location) in entries {
            w.push(id, location)?;
        }
        let (bytes, _) = w.finish(&[])?;
        self.create(&name.key(version), &bytes)?;
        Ok(vec![Part {
            name: name.clone(),
            version,
            size: bytes.len() as u64,
        }])
    }

    /// The packs of the current version of pack part `part`.
    fn old_packs(&self, part: &Part) -> Result<Vec<(PackId, PackInfo)>> {
        if part.size == 0 {
            return Ok(Vec::new());
        }
        let key = manifest::packs_key(&part.name, part.version);
        let bytes = self.home.get(&key)?;
        manifest::decode_packs(&bytes, self.sealer, &part.name, part.version, &key)
    }

    /// Pack part `name`, whose current packs are `old`, with the packs of
    /// `run` added and the retired ones left out, written as version
    /// `version`. As with families, a run too big to hold in memory within
    /// the limit is split by the next digit first, streaming.
    fn fold_packs(
        &self,
        name: &FamilyName,
        old: Vec<(PackId, PackInfo)>,
        run: Option<Run<'_>>,
        retired: &HashSet<PackId>,
        version: u64,
    ) -> Result<Vec<Part>> {
        let added = run
            .as_ref()
            .map_or(0, |r| r.len / manifest::PACK_LEN as u64);
        let d = name.digits().len();
        if (added + old.len() as u64) * BYTES_A_PACK > self.limit && d < MAX_DIGITS {
            let split: Vec<Option<Run>> = match run {
                Some(run) => self
                    .split_run(run, name, "p", manifest::PACK_LEN, 0)?
                    .into_iter()
                    .map(Some)
                    .collect(),
                None => (0..16).map(|_| None).collect(),
            };
            let olds = by_digit(old, d, |(pack, _)| &pack.0);
            let mut parts = Vec::new();
            for ((child, old), run) in name.children().iter().zip(olds).zip(split) {
                parts.extend(self.fold_packs(child, old, run, retired, version)?);
            }
            return Ok(parts);
        }
        let mut packs: BTreeMap<PackId, PackInfo> = old.into_iter().collect();
        let run = match run {
            Some(run) => run.read()?,
            None => Vec::new(),
        };
        for r in run.chunks_exact(manifest::PACK_LEN) {
            let pack = PackId(r[..16].try_into().expect("16 bytes"));
            let info = PackInfo::decode(&r[16..], "compaction run")?;
            packs.entry(pack).or_insert(info);
        }
        packs.retain(|pack, _| !retired.contains(pack));
        let packs: Vec<(PackId, PackInfo)> = packs.into_iter().collect();
        self.write_packs(name, &packs, version)
    }

    /// `packs` (sorted, all of part `name`) written as version `version` of
    /// pack part `name`, or of its children if too big for one object.
    fn write_packs(
        &self,
        name: &FamilyName,
        packs: &[(PackId, PackInfo)],
        version: u64,
    ) -> Result<Vec<Part>> {
        if packs.len() as u64 * BYTES_A_PACK > self.limit && name.digits().len() < MAX_DIGITS {
            let d = name.digits().len();
            let mut parts = Vec::new();
            let slices = slices_by_digit(packs, d, |(pack, _)| &pack.0);
            for (child, mine) in name.children().iter().zip(slices) {
                parts.extend(self.write_packs(child, mine, version)?);
            }
            return Ok(parts);
        }
        let bytes = manifest::encode_packs(name, version, packs, self.sealer);
        self.create(&manifest::packs_key(name, version), &bytes)?;
        Ok(vec![Part {
            name: name.clone(),
            version,
            size: bytes.len() as u64,
        }])
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::catalog::base::read_all;
    use crate::catalog::segment::{self, Segment};
    use crate::catalog::{Access, Index};
    use crate::format::family::Plain;
    use crate::format::record::PackEntry;
    use crate::id::ShardId;
    use crate::store::{FaultPlan, FaultyFs, LocalStore, OsFs};

    fn ids(range: std::ops::Range<u32>) -> Vec<ChunkId> {
        range.map(|i| ChunkId::of(&i.to_le_bytes())).collect()
    }

    /// A pack holding `ids`, as a segment adds it.
    fn add_pack(ids: &[ChunkId]) -> (PackId, Op) {
        let pack = PackId::random();
        let entries: Vec<PackEntry> = ids
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
        let info = PackInfo::of(ShardId(0), 8 + 100 * ids.len() as u64, &entries);
        (
            pack,
            Op::AddPack {
                pack,
                info,
                entries,
            },
        )
    }

    struct Scene {
        _dir: tempfile::TempDir,
        home: Arc<LocalStore>,
        tmp: PathBuf,
        /// The segments, in the home's order.
        names: Vec<String>,
        /// Every id any segment names.
        all: Vec<ChunkId>,
        /// What the cache holds after applying every segment.
        index: Index,
    }

    /// Five commits: two packs that share 500 ids, a third, the first
    /// retired with its shared ids located in the second (as a gc's
    /// commit does), and one entry of the third dropped.
    fn scene() -> Scene {
        let dir = tempfile::tempdir().unwrap();
        let home = Arc::new(LocalStore::create(OsFs::shared(), dir.path().join("home")).unwrap());
        let tmp = dir.path().join("tmp");
        std::fs::create_dir(&tmp).unwrap();
        let (p1, add1) = add_pack(&ids(0..1500));
        let (p2, add2) = add_pack(&ids(1000..2500));
        let (p3, add3) = add_pack(&ids(2500..3000));
        let Op::AddPack { entries: in_p2, .. } = add2.clone() else {
            unreachable!()
        };
        let locates: Vec<Op> = in_p2[..500]
            .iter()
            .map(|e| {
                Op::Locate(Location {
                    pack: p2,
                    entry: *e,
                })
            })
            .collect();
        let retire = Op::RetirePack {
            pack: p1,
            ids: ids(0..1500),
        };
        let drop = Op::DropEntry {
            id: ids(2600..2601)[0],
            pack: p3,
        };
        let commits = vec![
            vec![add1],
            vec![add2],
            vec![add3],
            std::iter::once(retire).chain(locates).collect(),
            vec![drop],
        ];
        let mut names = Vec::new();
        for ops in commits {
            let name = segment::new_name();
            segment::put(home.as_ref(), &name, &Segment { full: false, ops }).unwrap();
            names.push(name);
        }
        let index = Index::open(&dir.path().join("cache"), Access::Create).unwrap();
        index.catch_up(home.as_ref(), &names).unwrap();
        Scene {
            _dir: dir,
            home,
            tmp,
            names,
            all: ids(0..3000),
            index,
        }
    }

    /// A compaction into `home` at a limit small enough to split the
    /// scene's index, its spill runs in the scene's.
    fn compaction<'a>(home: &'a dyn MetaStore, s: &'a Scene) -> Compaction<'a> {
        Compaction {
            home,
            sealer: &Plain,
            tmp: &s.tmp,
            limit: 20_000,
            disk: DiskUse::default(),
            records: None,
        }
    }

    /// The scene's home, failing as `plan` says.
    fn faulty(s: &Scene, plan: &Arc<FaultPlan>) -> LocalStore {
        let fs = FaultyFs::new(OsFs::shared(), plan.clone());
        LocalStore::open(Arc::new(fs), s.home.root()).unwrap()
    }

    /// The compacted index is the cache's: the same entries, the same
    /// packs.
    fn check_same(s: &Scene, manifest: &Manifest) {
        let (entries, packs) = read_all(s.home.as_ref(), &Plain, manifest).unwrap();
        let cached: Vec<(ChunkId, Location)> = s
            .all
            .iter()
            .zip(s.index.chunks(&s.all).unwrap())
            .filter_map(|(id, l)| l.map(|l| (*id, l)))
            .collect();
        let mut cached = cached;
        cached.sort_unstable_by_key(|(id, _)| *id);
        assert_eq!(entries.len(), 1999, "1 000..3 000 but the dropped one");
        assert_eq!(entries, cached);
        let mut cached_packs = s.index.packs().unwrap();
        cached_packs.sort_unstable_by_key(|(p, _)| *p);
        assert_eq!(packs, cached_packs);
    }

    #[test]
    fn compacting_segments_gives_the_index_their_cache_holds_in_families_under_the_limit() {
        let s = scene();
        let limit = 20_000;
        let compaction = Compaction {
            home: s.home.as_ref(),
            sealer: &Plain,
            tmp: &s.tmp,
            limit,
            disk: DiskUse::default(),
            records: None,
        };
        let manifest = compaction.run(None, &s.names, 1).unwrap().unwrap();
        check_same(&s, &manifest);
        assert!(
            manifest.families.len() >= 16,
            "{} families",
            manifest.families.len()
        );
        for part in &manifest.families {
            assert!(
                part.size <= limit,
                "family {} of {} bytes",
                part.name.label(),
                part.size
            );
        }
        assert_eq!(manifest.covers, s.names);
        assert_eq!(manifest.tombstones.len(), 1);
        let stored = s.home.get(&manifest::manifest_key(1)).unwrap();
        assert_eq!(Manifest::decode(&stored, &Plain, 1, "t").unwrap(), manifest);
        assert_eq!(
            std::fs::read_dir(&s.tmp).unwrap().count(),
            0,
            "the spill runs are gone"
        );
        assert_eq!(compaction.disk.now.get(), 0);
        let ops = (1500 + 1500 + 500 + 500 + 1) * RECORD_LEN as u64;
        let peak = compaction.disk.peak();
        assert!(peak >= ops, "every op spilled: {peak} of {ops}");
        assert!(
            peak < ops * 6 / 5,
            "a run past the limit sends later ops to its children, so little is copied: {peak} of {ops}"
        );
    }

    #[test]
    fn a_compaction_failing_at_any_step_leaves_the_last_manifest_whole_and_a_rerun_finishes() {
        let healthy = |s: &Scene| -> Manifest {
            let c = compaction(s.home.as_ref(), s);
            c.run(None, &s.names[..2], 1).unwrap().unwrap()
        };
        let recording = Arc::new(FaultPlan::recording());
        {
            let s = scene();
            let first = healthy(&s);
            let home = faulty(&s, &recording);
            let c = compaction(&home, &s);
            c.run(Some(&first), &s.names[2..], 2).unwrap().unwrap();
        }
        let steps = recording.steps();
        assert!(steps >= 8, "{steps} durable steps");
        // Step n counts from 0: fail each one in turn.
        for n in 0..steps {
            let s = scene();
            let first = healthy(&s);
            let before = read_all(s.home.as_ref(), &Plain, &first).unwrap();
            let plan = Arc::new(FaultPlan::fail_at(n));
            let home = faulty(&s, &plan);
            assert!(
                compaction(&home, &s)
                    .run(Some(&first), &s.names[2..], 2)
                    .is_err(),
                "step {n}"
            );
            let stored = s.home.get(&manifest::manifest_key(1)).unwrap();
            assert_eq!(Manifest::decode(&stored, &Plain, 1, "t").unwrap(), first);
            assert_eq!(read_all(s.home.as_ref(), &Plain, &first).unwrap(), before);
            // Cut short after its manifest was written, the epoch is
            // done: a rerun finds it and leaves it be. Before, the rerun
            // writes it.
            let done = s.home.get(&manifest::manifest_key(2)).ok();
            let rerun = compaction(s.home.as_ref(), &s).run(Some(&first), &s.names[2..], 2);
            let second = match done {
                Some(stored) => {
                    assert!(rerun.unwrap().is_none(), "step {n}");
                    Manifest::decode(&stored, &Plain, 2, "t").unwrap()
                }
                None => rerun.unwrap().unwrap(),
            };
            check_same(&s, &second);
        }
    }

    #[test]
    fn a_pack_table_past_the_limit_splits_into_parts() {
        let dir = tempfile::tempdir().unwrap();
        let home = LocalStore::create(OsFs::shared(), dir.path().join("home")).unwrap();
        let tmp = dir.path().join("tmp");
        std::fs::create_dir(&tmp).unwrap();
        let mut names = Vec::new();
        for i in 0..400 {
            let (_, add) = add_pack(&ids(i..i + 1));
            let name = segment::new_name();
            let ops = vec![add];
            segment::put(&home, &name, &Segment { full: false, ops }).unwrap();
            names.push(name);
        }
        let index = Index::open(&dir.path().join("cache"), Access::Create).unwrap();
        index.catch_up(&home, &names).unwrap();
        let compaction = Compaction {
            home: &home,
            sealer: &Plain,
            tmp: &tmp,
            limit: 20_000,
            disk: DiskUse::default(),
            records: None,
        };
        let manifest = compaction.run(None, &names, 1).unwrap().unwrap();
        assert_eq!(
            manifest.packs.len(),
            16,
            "400 packs of 69 bytes past 20 000"
        );
        let (_, packs) = read_all(&home, &Plain, &manifest).unwrap();
        let mut cached = index.packs().unwrap();
        cached.sort_unstable_by_key(|(p, _)| *p);
        assert_eq!(packs, cached);
    }

    #[test]
    fn a_sealed_compaction_reads_back_only_with_its_key() {
        let s = scene();
        let crypt = crate::crypto::Crypt::with(crate::crypto::MasterKey::generate().unwrap());
        let compaction = Compaction {
            home: s.home.as_ref(),
            sealer: &crypt,
            tmp: &s.tmp,
            limit: 20_000,
            disk: DiskUse::default(),
            records: None,
        };
        let manifest = compaction.run(None, &s.names, 1).unwrap().unwrap();
        let stored = s.home.get(&manifest::manifest_key(1)).unwrap();
        assert_eq!(Manifest::decode(&stored, &crypt, 1, "t").unwrap(), manifest);
        assert!(Manifest::decode(&stored, &Plain, 1, "t").is_err());
        let (entries, packs) = read_all(s.home.as_ref(), &crypt, &manifest).unwrap();
        let (plain_entries, plain_packs) = {
            let plain = Compaction {
                sealer: &Plain,
                disk: DiskUse::default(),
                records: None,
                ..compaction
            };
            let m = plain.run(None, &s.names, 2).unwrap().unwrap();
            read_all(s.home.as_ref(), &Plain, &m).unwrap()
        };
        assert_eq!(entries, plain_entries);
        assert_eq!(packs, plain_packs);
        assert!(read_all(s.home.as_ref(), &Plain, &manifest).is_err());
    }

    #[test]
    fn compacting_epoch_by_epoch_gives_what_compacting_at_once_gives() {
        let s = scene();
        let big = Compaction {
            home: s.home.as_ref(),
            sealer: &Plain,
            tmp: &s.tmp,
            limit: 48 << 20,
            disk: DiskUse::default(),
            records: None,
        };
        let first = big.run(None, &s.names[..2], 1).unwrap().unwrap();
        assert_eq!(first.families.len(), 1, "one family while small");
        let second = big.run(Some(&first), &s.names[2..], 2).unwrap().unwrap();
        check_same(&s, &second);
        assert_eq!(second.covers, s.names);
        // The same again, split small, each epoch folding its predecessor.
        let small = compaction(s.home.as_ref(), &s);
        let first = small.run(None, &s.names[..3], 3).unwrap().unwrap();
        let second = small.run(Some(&first), &s.names[3..], 4).unwrap().unwrap();
        check_same(&s, &second);
    }

    #[test]
    fn a_tombstone_expires_at_the_compaction_after_the_one_that_folded_it() {
        let s = scene();
        let c = compaction(s.home.as_ref(), &s);
        // The fourth segment retires the first pack.
        let first = c.run(None, &s.names[..4], 1).unwrap().unwrap();
        let Op::RetirePack { pack, .. } =
            &read_segments(s.home.as_ref(), &[&s.names[3]]).unwrap()[0].ops[0]
        else {
            unreachable!()
        };
        assert_eq!(first.tombstones, [*pack]);
        let second = c.run(Some(&first), &s.names[4..], 2).unwrap().unwrap();
        assert!(second.tombstones.is_empty());
        // Its entries and its place in the pack table stay gone.
        check_same(&s, &second);
    }

    #[test]
    fn a_fresh_cache_loads_the_newest_manifest_and_applies_only_what_it_does_not_cover() {
        let s = scene();
        let compaction = compaction(s.home.as_ref(), &s);
        let manifest = compaction.run(None, &s.names[..3], 1).unwrap().unwrap();
        let fresh_at = s.tmp.join("fresh");
        let fresh = Index::open(&fresh_at, Access::Create).unwrap();
        let mut told = HashSet::new();
        fresh
            .catch_up_with(s.home.as_ref(), &s.names, &mut |id| {
                told.insert(*id);
            })
            .unwrap();
        assert_eq!(fresh.base().unwrap(), Some(1));
        assert_eq!(
            fresh.chunks(&s.all).unwrap(),
            s.index.chunks(&s.all).unwrap()
        );
        assert_eq!(fresh.packs().unwrap(), s.index.packs().unwrap());
        assert!(
            s.all[1000..].iter().all(|id| told.contains(id)),
            "the filter hears of every id"
        );
        // The covered segments go: nothing is missed, nothing reloaded.
        segment::delete(s.home.as_ref(), &s.names[..3]).unwrap();
        let left = segment::names(s.home.as_ref()).unwrap();
        assert_eq!(fresh.catch_up(s.home.as_ref(), &left).unwrap(), 0);
        assert!(fresh.take_gone().is_empty());
        // The families hold everything the cache does, with the newer
        // segments; a family gone is found.
        let added = crate::catalog::base::ids_added_by(s.home.as_ref(), &left).unwrap();
        let mut problems = Vec::new();
        let check = |index: &Index, problems: &mut Vec<String>| {
            index.check_families(s.home.as_ref(), &manifest, &added, &mut |p| {
                problems.push(p);
            })
        };
        let checked = check(&fresh, &mut problems).unwrap();
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(checked, 3000, "the entries the first three commits made");
        // A chunk this cache holds that no segment says (its commit wrote
        // none) is one another machine would not find.
        let (lone, add) = add_pack(&ids(5000..5001));
        let Op::AddPack { info, entries, .. } = add else {
            unreachable!()
        };
        fresh.commit_pack(lone, &info, &entries).unwrap();
        check(&fresh, &mut problems).unwrap();
        assert!(
            problems.len() == 1 && problems[0].contains("would not find"),
            "{problems:?}"
        );
        problems.clear();
        // A damaged family is named; one gone is an error (a compaction
        // superseded it: the caller reads the newer manifest).
        let family = manifest.families.iter().find(|p| p.size > 0).unwrap();
        let key = family.name.key(family.version);
        let bytes = s.home.get(&key).unwrap();
        let mut bad = bytes.clone();
        bad[100] ^= 1;
        s.home.put(&key, &bad).unwrap();
        check(&fresh, &mut problems).unwrap();
        assert!(problems.iter().any(|p| p.contains(&key)), "{problems:?}");
        s.home.delete(&key).unwrap();
        assert!(crate::store::is_not_found(
            &check(&fresh, &mut problems).unwrap_err()
        ));
        let other = Index::open(&s.tmp.join("other"), Access::Create).unwrap();
        assert!(
            other.catch_up(s.home.as_ref(), &left).is_err(),
            "never a partial base"
        );
        assert_eq!(other.base().unwrap(), None);
        s.home.put(&key, &bytes).unwrap();
        // A cache loaded from a manifest that is gone, with none in its
        // place, stops instead of going on without the families.
        s.home.delete(&manifest::manifest_key(1)).unwrap();
        let err = fresh.catch_up(s.home.as_ref(), &left).unwrap_err();
        assert!(err.to_string().contains("repair index"), "{err}");
    }

    #[test]
    fn of_two_compactions_of_one_epoch_the_first_manifest_wins_and_the_other_leaves_nothing() {
        let s = scene();
        let compaction = compaction(s.home.as_ref(), &s);
        let index_keys = || {
            let mut keys = s.home.list("index/").unwrap();
            keys.sort();
            keys
        };
        // One compactor saw two segments, another all five: the second
        // finds the epoch's manifest written and removes what it wrote.
        let first = compaction.run(None, &s.names[..2], 1).unwrap().unwrap();
        let stored = index_keys();
        assert!(compaction.run(None, &s.names, 1).unwrap().is_none());
        assert_eq!(index_keys(), stored);
        let kept = s.home.get(&manifest::manifest_key(1)).unwrap();
        assert_eq!(Manifest::decode(&kept, &Plain, 1, "t").unwrap(), first);
        // The segments the winner did not cover go into the next epoch.
        let second = compaction
            .run(Some(&first), &s.names[2..], 2)
            .unwrap()
            .unwrap();
        check_same(&s, &second);
    }

    #[test]
    fn a_rerun_with_more_segments_than_a_compaction_cut_short_uses_none_of_its_objects() {
        let recording = Arc::new(FaultPlan::recording());
        {
            let s = scene();
            let home = faulty(&s, &recording);
            compaction(&home, &s)
                .run(None, &s.names[..2], 1)
                .unwrap()
                .unwrap();
        }
        let mut cut_before_the_manifest = 0;
        for n in 0..recording.steps() {
            let s = scene();
            let plan = Arc::new(FaultPlan::fail_at(n));
            let home = faulty(&s, &plan);
            assert!(compaction(&home, &s).run(None, &s.names[..2], 1).is_err());
            if s.home.get(&manifest::manifest_key(1)).is_ok() {
                continue; // cut short after the manifest: epoch 1 is done
            }
            let leftovers = s.home.list("index/").unwrap();
            cut_before_the_manifest += usize::from(leftovers.len() >= 16);
            // A rerun that sees all five segments (writers added three
            // meanwhile) writes its own objects, not the leftovers.
            let rerun = compaction(s.home.as_ref(), &s)
                .run(None, &s.names, 1)
                .unwrap()
                .unwrap();
            check_same(&s, &rerun);
            let named = rerun.keys_of(rerun.families[0].version);
            assert!(!named.is_empty());
            assert!(named.iter().all(|k| !leftovers.contains(k)), "step {n}");
        }
        assert!(cut_before_the_manifest > 0, "some runs left every family");
    }
}
