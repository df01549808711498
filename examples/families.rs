//! A synthetic index at scale, and its compaction into families
//! (`docs/design.md`, "A petabyte index"): what the real compaction code
//! costs at 10^7 or 10^8 chunks without 100 GB of data.
//!
//! ```sh
//! cargo run --release --example families -- generate 10000000 /dev/shm/fam
//! cargo run --release --example families -- compact /dev/shm/fam
//! ```
//!
//! `generate N DIR` writes a home in `DIR/home` holding N chunk entries in
//! segments of 4 096 (one pack each, 64 KiB chunks, random ids); `compact
//! DIR [TMP]` folds every segment into families of at most 48 MiB
//! (`$DEDUP_INDEX_FAMILY_BYTES`) with its spill runs in `TMP` (default
//! `DIR/tmp`), and
//! prints the time, this process's peak memory, the temporary disk and
//! the families written. `load DIR` then makes a new machine's cache
//! (`DIR/cache`, a RocksDB index) from the newest manifest, as a first
//! open does, and `rewrite DIR [TMP]` writes that cache back as families
//! of the next epoch, as `repair index` does with the index it rebuilt.
//! `open DIR` does what a first open does now: the cache an overlay on
//! the families, holding their summary and no entry.
//! `summary DIR` loads only the newest manifest's summaries (trailer,
//! fences, packs, hooks, Bloom slice of every family, by ranged reads),
//! as a machine without a copy of the index opens (issue 32), then looks
//! up ids that are there (a block's worth from each of 64 families) and
//! ids that are not.
//! Run each as its own process so the peak is that step's alone.

use std::path::Path;
use std::time::Instant;

use dedup::catalog::base::newest_manifest;
use dedup::catalog::compact::{Compaction, DiskUse};
use dedup::catalog::scratch::family_limit;
use dedup::catalog::segment::{self, Op, Segment};
use dedup::catalog::summary::Summary;
use dedup::catalog::{Access, Index};
use dedup::format::family::Plain;
use dedup::format::record::PackEntry;
use dedup::format::values::PackInfo;
use dedup::ring::ShardId;
use dedup::store::{LocalStore, OsFs, PackId};
use dedup::ChunkId;

const PER_SEGMENT: u64 = 4096;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["generate", n, dir] => generate(n.parse()?, Path::new(dir)),
        ["compact", dir] => compact(Path::new(dir), &Path::new(dir).join("tmp")),
        ["compact", dir, tmp] => compact(Path::new(dir), Path::new(tmp)),
        ["load", dir] => load(Path::new(dir), false),
        ["open", dir] => load(Path::new(dir), true),
        ["summary", dir] => summary(Path::new(dir)),
        ["rewrite", dir] => rewrite(Path::new(dir), &Path::new(dir).join("tmp")),
        ["rewrite", dir, tmp] => rewrite(Path::new(dir), Path::new(tmp)),
        _ => Err(
            "usage: families generate N DIR | compact DIR [TMP] | load DIR | open DIR \
             | summary DIR | rewrite DIR [TMP]"
                .into(),
        ),
    }
}

fn generate(n: u64, dir: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let started = Instant::now();
    let home = LocalStore::create(OsFs::shared(), dir.join("home"))?;
    let mut written = 0u64;
    let mut bytes = 0u64;
    while written < n {
        let count = PER_SEGMENT.min(n - written);
        let entries: Vec<PackEntry> = (0..count)
            .map(|i| PackEntry {
                id: ChunkId::of(&(written + i).to_le_bytes()),
                offset: 8 + i * 65_536,
                raw_len: 65_536,
                stored_len: 30_000,
                flags: 0,
            })
            .collect();
        let info = PackInfo::of(ShardId(0), 8 + count * 65_536, &entries);
        let pack = PackId::random();
        let segment = Segment {
            full: false,
            ops: vec![Op::AddPack {
                pack,
                info,
                entries,
            }],
        };
        bytes += segment.encode().len() as u64;
        segment::put(&home, &segment::new_name(), &segment)?;
        written += count;
    }
    println!(
        "generated {n} entries in {} segments ({:.1} MB) in {:.1} s",
        n.div_ceil(PER_SEGMENT),
        bytes as f64 / 1e6,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn compact(dir: &Path, tmp: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let home = LocalStore::open(OsFs::shared(), dir.join("home"))?;
    std::fs::create_dir_all(tmp)?;
    let names = segment::names(&home)?;
    let started = Instant::now();
    let compaction = compaction(&home, tmp);
    let manifest = compaction
        .run(None, &names, 1)?
        .ok_or("another compaction wrote epoch 1 first")?;
    let seconds = started.elapsed().as_secs_f64();
    let sizes: Vec<u64> = manifest.families.iter().map(|p| p.size).collect();
    let total: u64 = sizes.iter().sum();
    let packs: u64 = manifest.packs.iter().map(|p| p.size).sum();
    println!(
        "compacted {} segments in {seconds:.1} s: {} families, {:.1} MB in all, the largest {:.1} MB; \
         pack table {:.1} MB in {} parts",
        names.len(),
        sizes.len(),
        total as f64 / 1e6,
        sizes.iter().max().copied().unwrap_or(0) as f64 / 1e6,
        packs as f64 / 1e6,
        manifest.packs.len()
    );
    println!(
        "peak memory {} MiB; temporary disk at most {:.1} MB (the spill runs); segments {:.1} MB",
        peak_rss_mib(),
        compaction.disk.peak() as f64 / 1e6,
        dir_bytes(&home.root().join("segments"))? as f64 / 1e6
    );
    Ok(())
}

fn load(dir: &Path, overlay: bool) -> Result<(), Box<dyn std::error::Error>> {
    let home = std::sync::Arc::new(LocalStore::open(OsFs::shared(), dir.join("home"))?);
    let cache = dir.join("cache");
    if cache.exists() {
        std::fs::remove_dir_all(&cache)?;
    }
    let names = segment::names(home.as_ref())?;
    let started = Instant::now();
    let mut index = Index::open(&cache, Access::Create)?;
    if overlay {
        index = index.with_home(home.clone());
    }
    let mut ids = 0u64;
    index.catch_up_with(home.as_ref(), &names, &mut |_| ids += 1)?;
    index.flush()?;
    let mut held = 0u64;
    index.for_each_chunk_id(|_| held += 1)?;
    println!(
        "{} manifest {:?} in {:.1} s: {held} entries held; peak memory {} MiB; cache {:.1} MB",
        if overlay { "opened over" } else { "loaded" },
        index.base()?,
        started.elapsed().as_secs_f64(),
        peak_rss_mib(),
        dir_bytes(&cache)? as f64 / 1e6
    );
    Ok(())
}

fn summary(dir: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let home = LocalStore::open(OsFs::shared(), dir.join("home"))?;
    let manifest = newest_manifest(&home, &Plain)?.ok_or("no manifest: run compact first")?;
    let started = Instant::now();
    let summary = Summary::load(&home, &Plain, &manifest, 4096, None)?;
    println!(
        "loaded the summary of {} families in {:.2} s: {} reads, {:.1} MB fetched, {:.1} MB \
         in memory; peak memory {} MiB",
        summary.families().len(),
        started.elapsed().as_secs_f64(),
        summary.fetched.gets(),
        summary.fetched.bytes() as f64 / 1e6,
        summary.memory() as f64 / 1e6,
        peak_rss_mib()
    );
    // Ids that are there: block 0 of up to 64 families, read aside.
    let aside = dedup::catalog::summary::Fetched::default();
    let mut present = Vec::new();
    for family in summary
        .families()
        .iter()
        .step_by(summary.families().len().div_ceil(64))
    {
        let block = family.read_block(&home, &Plain, 0, &aside)?;
        present.extend(block.iter().map(|(id, _)| *id));
    }
    let absent: Vec<ChunkId> = (0..present.len() as u64)
        .map(|i| ChunkId::of(&(i + (1 << 60)).to_le_bytes()))
        .collect();
    for (what, ids) in [("present", &present), ("absent", &absent)] {
        let (gets, started) = (summary.fetched.gets(), Instant::now());
        let found = summary.locate(&home, &Plain, ids)?;
        println!(
            "{} {what} ids looked up in {:.3} s with {} block reads; {} found",
            ids.len(),
            started.elapsed().as_secs_f64(),
            summary.fetched.gets() - gets,
            found.iter().flatten().count()
        );
    }
    Ok(())
}

fn rewrite(dir: &Path, tmp: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let home = LocalStore::open(OsFs::shared(), dir.join("home"))?;
    std::fs::create_dir_all(tmp)?;
    let index = Index::open(&dir.join("cache"), Access::ReadWrite)?;
    let epoch = index.base()?.unwrap_or(0) + 1;
    let started = Instant::now();
    let compaction = compaction(&home, tmp);
    let manifest = compaction
        .from_index(&index, &[], epoch)?
        .ok_or("another compaction wrote the epoch first")?;
    println!(
        "wrote the cache as {} families of epoch {epoch} in {:.1} s; peak memory {} MiB; \
         temporary disk at most {:.1} MB",
        manifest.families.len(),
        started.elapsed().as_secs_f64(),
        peak_rss_mib(),
        compaction.disk.peak() as f64 / 1e6
    );
    Ok(())
}

/// A compaction into `home`, its spill runs in `tmp`, plain, at the
/// limit the environment gives.
fn compaction<'a>(home: &'a LocalStore, tmp: &'a Path) -> Compaction<'a> {
    Compaction {
        home,
        sealer: &Plain,
        tmp,
        limit: family_limit(),
        disk: DiskUse::default(),
        records: None,
    }
}

/// This process's peak resident memory, from `/proc/self/status`.
fn peak_rss_mib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map_or(0, |kib| kib / 1024)
}

fn dir_bytes(dir: &Path) -> std::io::Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir)? {
        total += entry?.metadata()?.len();
    }
    Ok(total)
}
