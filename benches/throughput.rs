//! Throughput benchmarks: chunking, hashing, index lookups, end-to-end.
//!
//! Run: `cargo bench --bench throughput` (figures land in
//! `target/criterion/`). Inputs are seeded, so runs compare. The index
//! benches build a RocksDB of 100 thousand and of 10 million chunks once
//! (set `DEDUP_BENCH_BIG` to another count; the 10 million build takes a
//! few minutes) and time a Bloom check plus index lookup, and a lookup plus
//! insert, per chunk, for ids present and absent.
//!
//! Comparing: run once on the base commit and once on yours; criterion
//! prints the change. For peers (restic, borg) use `benches/compare.sh`.

use std::hint::black_box;

use criterion::{criterion_main, BenchmarkId, Criterion, Throughput};
use dedup::bloom::Bloom;
use dedup::catalog::{Access, Index, PackInfo};
use dedup::ring::ShardId;
use dedup::store::{PackEntry, PackId};
use dedup::{ChunkId, ChunkerConfig, InitOptions, Quiet, Repository};
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

fn seeded(len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    ChaCha8Rng::seed_from_u64(7).fill_bytes(&mut v);
    v
}

fn chunking(c: &mut Criterion) {
    let data = seeded(64 << 20);
    let mut g = c.benchmark_group("chunking");
    g.sample_size(10)
        .throughput(Throughput::Bytes(data.len() as u64));
    for (name, config) in [
        ("fastcdc-64k", ChunkerConfig::fastcdc(64 * 1024)),
        ("fixed-64k", ChunkerConfig::Fixed { size: 64 * 1024 }),
    ] {
        g.bench_function(name, |b| {
            b.iter(|| {
                config
                    .chunks(&data[..])
                    .map(|c| c.unwrap().len())
                    .sum::<usize>()
            });
        });
    }
    g.finish();
}

fn hashing(c: &mut Criterion) {
    let data = seeded(64 << 20);
    let mut g = c.benchmark_group("sha256");
    g.sample_size(10)
        .throughput(Throughput::Bytes(data.len() as u64));
    g.bench_function("one-core", |b| {
        b.iter(|| {
            data.chunks(64 * 1024)
                .map(|c| ChunkId::of(c).0[0])
                .fold(0u8, |a, x| a ^ x)
        });
    });
    g.bench_function("all-cores", |b| {
        b.iter(|| {
            data.par_chunks(64 * 1024)
                .map(|c| ChunkId::of(c).0[0])
                .reduce(|| 0, |a, x| a ^ x)
        });
    });
    g.finish();
}

/// What encryption costs per byte: sealing (AES-256-GCM, a key per chunk) and the
/// keyed id (HMAC-SHA-256) of 64 KiB chunks, beside the plain SHA-256 id.
fn sealing(c: &mut Criterion) {
    let data = seeded(64 << 20);
    let key = dedup::crypto::MasterKey::generate().unwrap();
    let mut g = c.benchmark_group("encryption");
    g.sample_size(10)
        .throughput(Throughput::Bytes(data.len() as u64));
    g.bench_function("seal one-core", |b| {
        b.iter(|| {
            data.chunks(64 * 1024)
                .map(|c| key.seal(b"bench", c).len())
                .sum::<usize>()
        });
    });
    g.bench_function("seal all-cores", |b| {
        b.iter(|| {
            data.par_chunks(64 * 1024)
                .map(|c| key.seal(b"bench", c).len())
                .sum::<usize>()
        });
    });
    let sealed: Vec<Vec<u8>> = data
        .chunks(64 * 1024)
        .map(|c| key.seal(b"bench", c))
        .collect();
    g.bench_function("open one-core", |b| {
        b.iter(|| {
            sealed
                .iter()
                .map(|s| key.open(b"bench", s, "bench", "memory").unwrap().len())
                .sum::<usize>()
        });
    });
    g.bench_function("keyed id one-core", |b| {
        b.iter(|| {
            data.chunks(64 * 1024)
                .map(|c| key.id_of(c).0[0])
                .fold(0u8, |a, x| a ^ x)
        });
    });
    g.finish();
}

fn random_ids(seed: u64, n: usize) -> Vec<ChunkId> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n)
        .map(|_| {
            let mut id = [0u8; 32];
            rng.fill_bytes(&mut id);
            ChunkId(id)
        })
        .collect()
}

/// An index holding `n` chunks, with its Bloom filter.
fn filled_index(dir: &std::path::Path, n: usize) -> (Index, Bloom) {
    let index = Index::open(dir, Access::Create).unwrap();
    let mut bloom = Bloom::new(n as u64);
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let per_pack = 100_000;
    let mut done = 0;
    while done < n {
        let count = per_pack.min(n - done);
        let entries: Vec<PackEntry> = (0..count)
            .map(|i| {
                let mut id = [0u8; 32];
                rng.fill_bytes(&mut id);
                PackEntry {
                    id: ChunkId(id),
                    offset: 8 + i as u64 * 100,
                    raw_len: 65536,
                    stored_len: 30000,
                    flags: 1,
                }
            })
            .collect();
        for e in &entries {
            bloom.insert(&e.id);
        }
        let pack = PackId::random();
        index
            .commit_pack(pack, &PackInfo::of(ShardId(0), 1 << 24, &entries), &entries)
            .unwrap();
        done += count;
    }
    (index, bloom)
}

fn lookups(c: &mut Criterion) {
    let big: usize = std::env::var("DEDUP_BENCH_BIG")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000_000);
    let mut g = c.benchmark_group("index");
    g.sample_size(10);
    for n in [100_000usize, big] {
        let dir = tempfile::tempdir().unwrap();
        let (index, mut bloom) = filled_index(dir.path(), n);
        // Present ids: regenerate the same sequence the fill used.
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let present: Vec<ChunkId> = (0..10_000.min(n))
            .map(|_| {
                let mut id = [0u8; 32];
                rng.fill_bytes(&mut id);
                ChunkId(id)
            })
            .collect();
        let absent = random_ids(99, 10_000);
        g.throughput(Throughput::Elements(10_000));
        g.bench_with_input(BenchmarkId::new("bloom+get present", n), &n, |b, _| {
            b.iter(|| {
                present
                    .iter()
                    .filter(|id| bloom.may_contain(id) && index.chunk(id).unwrap().is_some())
                    .count()
            });
        });
        g.bench_with_input(BenchmarkId::new("bloom+get absent", n), &n, |b, _| {
            b.iter(|| {
                absent
                    .iter()
                    .filter(|id| bloom.may_contain(id) && index.chunk(id).unwrap().is_some())
                    .count()
            });
        });
        g.bench_with_input(BenchmarkId::new("multi_get present", n), &n, |b, _| {
            b.iter(|| index.chunks(&present).unwrap().iter().flatten().count());
        });
        // Lookup, then insert the new ones in one committed batch: what an
        // ingest of new data does per chunk.
        let mut round = 0u64;
        g.bench_with_input(BenchmarkId::new("lookup+insert new", n), &n, |b, _| {
            b.iter(|| {
                round += 1;
                let fresh = random_ids(1000 + round, 10_000);
                let new: Vec<PackEntry> = fresh
                    .iter()
                    .filter(|id| !bloom.may_contain(id) || index.chunk(id).unwrap().is_none())
                    .enumerate()
                    .map(|(i, id)| PackEntry {
                        id: *id,
                        offset: 8 + i as u64 * 100,
                        raw_len: 65536,
                        stored_len: 30000,
                        flags: 1,
                    })
                    .collect();
                for e in &new {
                    bloom.insert(&e.id);
                }
                index
                    .commit_pack(
                        PackId::random(),
                        &PackInfo::of(ShardId(0), 1 << 24, &new),
                        &new,
                    )
                    .unwrap();
                black_box(new.len())
            });
        });
    }
    g.finish();
}

fn end_to_end(c: &mut Criterion) {
    let tmp = tempfile::tempdir().unwrap();
    // Keep the benchmark repositories' file caches out of ~/.cache.
    std::env::set_var("XDG_CACHE_HOME", tmp.path().join("cache"));
    let src = tmp.path().join("src");
    std::fs::create_dir(&src).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let mut total = 0u64;
    for i in 0..200 {
        let mut data = vec![0u8; 4096 + (rng.next_u32() as usize % 300_000)];
        rng.fill_bytes(&mut data);
        total += data.len() as u64;
        std::fs::write(src.join(format!("f{i}")), data).unwrap();
    }
    let mut g = c.benchmark_group("end-to-end");
    g.sample_size(10).throughput(Throughput::Bytes(total));
    // Each run's repository (or restored copy) replaces the last, outside
    // the timing: a tmpfs must not fill up with them.
    let fresh = |name: &str| {
        let path = tmp.path().join(name);
        let _ = std::fs::remove_dir_all(&path);
        let _ = std::fs::remove_dir_all(path.with_extension("cache"));
        path
    };
    let plain = InitOptions::default();
    let sealed = InitOptions {
        encryption: dedup::format::config::Encryption::Repokey,
        ..InitOptions::default()
    };
    // Encrypted: a cheap key derivation (paid per open, not per byte).
    let open = |path: &std::path::Path, encrypted: bool| dedup::OpenOptions {
        cache_dir: Some(path.with_extension("cache")),
        password: encrypted.then(|| dedup::engine::keys::Password::new(b"bench".to_vec())),
        key_params: encrypted.then_some(dedup::crypto::KdfParams {
            m_cost_kib: 64,
            t_cost: 1,
            p_cost: 1,
        }),
        ..Default::default()
    };
    for (label, init, encrypted) in [("", &plain, false), (", encrypted", &sealed, true)] {
        g.bench_function(format!("ingest new{label}"), |b| {
            b.iter_batched(
                || fresh("new"),
                |path| {
                    let repo = Repository::init_with(&path, init, &open(&path, encrypted)).unwrap();
                    repo.ingest(std::slice::from_ref(&src), &Quiet)
                        .unwrap()
                        .record
                        .summary
                        .new_bytes
                },
                criterion::BatchSize::PerIteration,
            );
        });
        let kept = tmp.path().join(format!("keep{}", u8::from(encrypted)));
        let repo = Repository::init_with(&kept, init, &open(&kept, encrypted)).unwrap();
        let snap = repo.ingest(std::slice::from_ref(&src), &Quiet).unwrap().id;
        if !encrypted {
            g.bench_function("re-ingest unchanged", |b| {
                b.iter(|| {
                    repo.ingest(std::slice::from_ref(&src), &Quiet)
                        .unwrap()
                        .record
                        .summary
                        .files
                });
            });
            g.bench_function("re-ingest --rehash", |b| {
                let opts = dedup::IngestOptions {
                    file_cache: false,
                    ..Default::default()
                };
                b.iter(|| {
                    repo.ingest_with(std::slice::from_ref(&src), &opts, &Quiet)
                        .unwrap()
                        .record
                        .summary
                        .files
                });
            });
        }
        g.bench_function(format!("restore{label}"), |b| {
            b.iter_batched(
                || fresh("out"),
                |out| repo.restore(&snap, &out, &Quiet).unwrap().bytes,
                criterion::BatchSize::PerIteration,
            );
        });
    }
    g.finish();
}

// criterion's macros make public functions that cannot carry docs.
#[allow(missing_docs)]
mod group {
    use super::{chunking, end_to_end, hashing, lookups, sealing};
    criterion::criterion_group!(benches, chunking, hashing, sealing, lookups, end_to_end);
}
use group::benches;
criterion_main!(benches);
