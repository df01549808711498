//! Lookups of chunks already stored, at scale: an index-only benchmark.
//!
//! ```sh
//! cargo run --release --example lookups -- CHUNKS [DIR]
//! ```
//!
//! Fills an index in DIR (default: a temporary folder; put it on a tmpfs
//! to leave the disk out) with CHUNKS synthetic chunk ids, 256 to a pack
//! (16 MiB packs of 64 KiB chunks), then asks whether 200 000 stored ids
//! are stored, the way an ingest does (Bloom filter, then the index), in
//! stream order (pack after pack, as a stream ingested again asks) and in
//! random order, each without and with the locality cache
//! (`dedup::locality`), which loads a pack's ids after two hits in it.
//! Prints lookups per second, the index's bytes per chunk and the peak
//! RSS.

use std::time::Instant;

use dedup::bloom::Bloom;
use dedup::catalog::{Access, Index, PackInfo};
use dedup::locality::Locality;
use dedup::ring::ShardId;
use dedup::store::{PackEntry, PackId};
use dedup::ChunkId;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const PER_PACK: u64 = 256;
const QUERIES: usize = 200_000;

/// Chunk `i` of pack `k`.
fn id(k: u64, i: u64) -> ChunkId {
    let mut seed = [0u8; 16];
    seed[..8].copy_from_slice(&k.to_le_bytes());
    seed[8..].copy_from_slice(&i.to_le_bytes());
    ChunkId::of(&seed)
}

fn pack_id(k: u64) -> PackId {
    let mut raw = [0u8; 16];
    raw[..8].copy_from_slice(&k.to_le_bytes());
    raw[8] = 0xd1;
    PackId(raw)
}

fn pack_number(pack: PackId) -> u64 {
    u64::from_le_bytes(pack.0[..8].try_into().expect("8 bytes"))
}

/// Asks for `queries` (pack, chunk) pairs; returns lookups per second.
fn run(index: &Index, bloom: &Bloom, queries: &[(u64, u64)], locality: bool) -> f64 {
    let mut cache = Locality::default();
    let started = Instant::now();
    let mut found = 0usize;
    for &(k, i) in queries {
        let wanted = id(k, i);
        if locality && cache.contains(&wanted) {
            found += 1;
            continue;
        }
        if !bloom.may_contain(&wanted) {
            continue;
        }
        if let Some(at) = index.chunk(&wanted).expect("index read") {
            found += 1;
            if locality && cache.hit(at.pack) {
                // What a writer reads from the pack's trailer.
                let n = pack_number(at.pack);
                cache.load(at.pack, (0..PER_PACK).map(|j| id(n, j)).collect());
            }
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    assert_eq!(found, queries.len(), "every id asked for is stored");
    // The ids are made with SHA-256 in the loop too; that cost is part of
    // an ingest's per-chunk work as well, and is the same in every mode.
    queries.len() as f64 / seconds
}

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn dir_bytes(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir).map_or(0, |entries| {
        entries
            .flatten()
            .filter_map(|e| e.metadata().ok())
            .filter(std::fs::Metadata::is_file)
            .map(|m| m.len())
            .sum()
    })
}

fn main() {
    let mut args = std::env::args().skip(1);
    let chunks: u64 = args
        .next()
        .and_then(|a| a.parse().ok())
        .expect("usage: lookups CHUNKS [DIR]");
    let tmp = tempfile::tempdir().expect("a temporary folder");
    let dir = args
        .next()
        .map_or_else(|| tmp.path().join("index"), Into::into);
    let index = Index::open(&dir, Access::Create).expect("index");
    let mut bloom = Bloom::new(chunks);
    let packs = chunks.div_ceil(PER_PACK);
    let started = Instant::now();
    for k in 0..packs {
        let entries: Vec<PackEntry> = (0..PER_PACK.min(chunks - k * PER_PACK))
            .map(|i| PackEntry {
                id: id(k, i),
                offset: 8 + i * 30_000,
                raw_len: 65_536,
                stored_len: 30_000,
                flags: 1,
            })
            .collect();
        for e in &entries {
            bloom.insert(&e.id);
        }
        let info = PackInfo::of(ShardId(0), 16 << 20, &entries);
        index
            .commit_pack(pack_id(k), &info, &entries)
            .expect("commit");
        if k % 4096 == 4095 {
            eprint!("\r{} of {chunks} chunks", (k + 1) * PER_PACK);
        }
    }
    eprintln!(
        "\rfilled {chunks} chunks in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    // Stream order: whole packs, in order, from a random start.
    let first = rng.gen_range(0..packs.saturating_sub(QUERIES as u64 / PER_PACK).max(1));
    let stream: Vec<(u64, u64)> = (0..QUERIES as u64)
        .map(|q| ((first + q / PER_PACK) % packs, q % PER_PACK))
        .filter(|&(k, i)| k * PER_PACK + i < chunks)
        .collect();
    let random: Vec<(u64, u64)> = (0..QUERIES)
        .map(|_| {
            let n = rng.gen_range(0..chunks);
            (n / PER_PACK, n % PER_PACK)
        })
        .collect();
    println!(
        "chunks {chunks}: index {:.1} bytes per chunk",
        dir_bytes(&dir) as f64 / chunks as f64
    );
    for (name, queries) in [("stream", &stream), ("random", &random)] {
        let plain = run(&index, &bloom, queries, false);
        let near = run(&index, &bloom, queries, true);
        println!(
            "  {name:6} order: {:>9.0} lookups/s without the locality cache, {:>9.0} with ({:.1}x)",
            plain,
            near,
            near / plain
        );
    }
    println!("  peak RSS {:.0} MiB", peak_rss_mib());
}
