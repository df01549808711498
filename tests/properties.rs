//! Property tests: chunking, encodings, and the Bloom filter.

use dedup::bloom::Bloom;
use dedup::catalog::Location;
use dedup::format::family::{Family, FamilyName, FamilyWriter, Plain};
use dedup::format::pack::{parse_trailer, scan_records, trailer_len, FOOTER_SIZE};
use dedup::format::snapshot::{Attrs, Entry, EntryKind, Owner, Tree};
use dedup::format::snapshot::{SnapshotId, SnapshotRecord};
use dedup::store::{PackBuilder, PackId};
use dedup::{ChunkId, ChunkerConfig};
use proptest::prelude::*;

mod common;

fn chunker() -> impl Strategy<Value = ChunkerConfig> {
    prop_oneof![
        (64u32..20_000).prop_map(|size| ChunkerConfig::Fixed { size }),
        (8u32..14).prop_map(|bits| ChunkerConfig::fastcdc(1 << bits)),
    ]
}

fn data() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..200_000),
        // Low-entropy data, where content-defined cut points are rare.
        (prop::collection::vec(0u8..3, 0..5_000), 1usize..40).prop_map(|(v, n)| v.repeat(n)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn chunks_rejoin_to_the_input_and_stay_in_bounds(config in chunker(), data in data()) {
        let chunks: Vec<Vec<u8>> = config.chunks(&data[..]).map(|c| c.unwrap()).collect();
        prop_assert_eq!(chunks.concat(), data.clone());
        let last = chunks.len().saturating_sub(1);
        for (i, c) in chunks.iter().enumerate() {
            prop_assert!(!c.is_empty());
            match config {
                ChunkerConfig::Fixed { size } => {
                    prop_assert!(c.len() <= size as usize);
                    if i != last { prop_assert_eq!(c.len(), size as usize); }
                }
                ChunkerConfig::FastCdc { min, max, .. } => {
                    prop_assert!(c.len() <= max as usize);
                    if i != last { prop_assert!(c.len() >= min as usize); }
                }
            }
        }
    }

    #[test]
    fn chunking_a_stream_in_small_reads_gives_the_same_chunks(config in chunker(), data in data(), step in 1usize..5000) {
        struct Trickle<'a>(&'a [u8], usize);
        impl std::io::Read for Trickle<'_> {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                let n = self.0.len().min(buf.len()).min(self.1);
                buf[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        let whole: Vec<_> = config.chunks(&data[..]).map(|c| c.unwrap()).collect();
        let trickled: Vec<_> = config.chunks(Trickle(&data, step)).map(|c| c.unwrap()).collect();
        prop_assert_eq!(whole, trickled);
    }

    #[test]
    fn trees_round_trip(entries in prop::collection::btree_map(
        prop::collection::vec(any::<u8>().prop_filter("no / or NUL", |b| *b != b'/' && *b != 0), 1..40)
            .prop_filter("not . or ..", |n| n != b"." && n != b".."),
        (
            (any::<u32>(), any::<i64>(), 0u32..1_000_000_000, 0u8..6, prop::collection::vec(1u32..100_000, 0..8)),
            (any::<u32>(), any::<u32>(), "[a-z]{0,12}", any::<u64>(),
             prop::collection::btree_map(prop::collection::vec(1u8..=255, 1..20), prop::collection::vec(any::<u8>(), 0..40), 0..4)),
        ),
        0..30,
    )) {
        let tree = Tree {
            entries: entries
                .into_iter()
                .map(|(name, ((mode, s, ns, kind, lens), (uid, gid, user, link, xattrs)))| Entry {
                    name,
                    mode,
                    mtime_s: s,
                    mtime_ns: ns,
                    kind: match kind {
                        0 => EntryKind::File {
                            size: lens.iter().map(|&l| u64::from(l)).sum(),
                            chunks: lens.iter().map(|&l| (ChunkId::of(&l.to_le_bytes()), l)).collect(),
                        },
                        1 => EntryKind::Dir { tree: ChunkId::of(&mode.to_le_bytes()) },
                        2 => EntryKind::Symlink { target: b"../some/where".to_vec() },
                        3 => EntryKind::Fifo,
                        4 => EntryKind::CharDevice { rdev: link },
                        _ => EntryKind::BlockDevice { rdev: link },
                    },
                    attrs: Attrs {
                        owner: Some(Owner { uid, gid, group: user.chars().rev().collect(), user }),
                        xattrs: xattrs.into_iter().collect(),
                        link,
                    },
                })
                .collect(),
        };
        prop_assert_eq!(Tree::decode(&tree.encode(), "p").unwrap(), tree);
    }


    #[test]
    fn pack_trailers_and_locations_round_trip(records in prop::collection::vec((prop::collection::vec(any::<u8>(), 0..300), 0u8..4), 0..40)) {
        let mut b = PackBuilder::new();
        for (data, flags) in &records {
            b.add(ChunkId::of(data), data.len() as u32, *flags, data);
        }
        let (bytes, entries) = b.seal();
        let n = trailer_len(&bytes[bytes.len() - FOOTER_SIZE..], "p").unwrap();
        let parsed = parse_trailer(&bytes[bytes.len() - n..], bytes.len() as u64, "p").unwrap();
        prop_assert_eq!(&parsed, &entries);
        let pack = PackId::random();
        for e in &entries {
            let loc = Location { pack, entry: *e };
            prop_assert_eq!(Location::decode(e.id, &loc.encode()).unwrap(), loc);
        }
    }

    #[test]
    fn bloom_filter_has_no_false_negatives(seeds in prop::collection::vec(any::<u64>(), 1..3000)) {
        let mut bloom = Bloom::new(10);
        let ids: Vec<ChunkId> = seeds.iter().map(|s| ChunkId::of(&s.to_le_bytes())).collect();
        for id in &ids { bloom.insert(id); }
        let reloaded = Bloom::decode(&bloom.encode(0), "p").unwrap();
        for id in &ids {
            prop_assert!(bloom.may_contain(id));
            prop_assert!(reloaded.may_contain(id));
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn cutting_in_memory_finds_the_same_boundaries_as_the_stream(config in chunker(), data in data()) {
        let streamed: Vec<usize> = config.chunks(&data[..]).map(|c| c.unwrap().len()).collect();
        prop_assert_eq!(config.cut_slice(&data), streamed);
    }

    #[test]
    fn cutting_on_many_cores_finds_the_serial_boundaries(
        config in chunker(),
        data in data(),
        pieces in 1usize..9,
    ) {
        let serial = config.cut_slice(&data);
        prop_assert_eq!(config.cut_parallel(&data, true, pieces), serial.clone());
        // Mid-stream, the last chunk is left for the bytes that follow.
        let mut front = serial;
        front.pop();
        prop_assert_eq!(config.cut_parallel(&data, false, pieces), front);
    }
}

/// Valid encodings of every format dedup reads from disk, taken from a real
/// repository: the decoders' properties (and the fuzz targets' seeds, see
/// `scripts/fuzz.sh`) start from these and damage them, so that a
/// mutation gets past the magic, version and checksum checks into the
/// decoder proper, which random bytes almost never do.
struct Seeds {
    tree: Vec<u8>,
    record: Vec<u8>,
    pack: Vec<u8>,
    config: Vec<u8>,
    bloom_payload: Vec<u8>,
    location: Vec<u8>,
    cache_entry: Vec<u8>,
    family: Vec<u8>,
}

fn seeds() -> &'static Seeds {
    static SEEDS: std::sync::OnceLock<Seeds> = std::sync::OnceLock::new();
    SEEDS.get_or_init(|| {
        let tmp = tempfile::tempdir().unwrap();
        let (src, path) = (tmp.path().join("src"), tmp.path().join("repo"));
        common::make_tree(&src, 5);
        let opts = dedup::InitOptions {
            pack_size: 64 * 1024,
            chunker: ChunkerConfig::fastcdc(4096),
            shards: 1,
            ..Default::default()
        };
        let repo = dedup::Repository::init_with(&path, &opts, &common::private()).unwrap();
        let outcome = repo
            .ingest_with(
                std::slice::from_ref(&src),
                &dedup::IngestOptions {
                    file_cache: false,
                    ..Default::default()
                },
                &dedup::Quiet,
            )
            .unwrap();
        let pack = common::packs(&path)
            .into_iter()
            .map(|p| std::fs::read(p).unwrap())
            .min_by_key(Vec::len)
            .unwrap();
        let entries = {
            let n = trailer_len(&pack[pack.len() - FOOTER_SIZE..], "seed").unwrap();
            parse_trailer(&pack[pack.len() - n..], pack.len() as u64, "seed").unwrap()
        };
        let chunks: Vec<(ChunkId, u32)> = entries.iter().map(|e| (e.id, e.raw_len)).collect();
        let stamp = dedup::format::filecache::FileStamp {
            size: chunks.iter().map(|c| u64::from(c.1)).sum(),
            ..dedup::format::filecache::FileStamp::of(&std::fs::metadata(&src).unwrap())
        };
        Seeds {
            tree: repo.get(&outcome.record.tree).unwrap(),
            record: std::fs::read(path.join("snapshots").join(outcome.id.to_hex())).unwrap(),
            location: Location {
                pack: PackId::random(),
                entry: entries[0],
            }
            .encode(),
            cache_entry: dedup::format::filecache::encode(&stamp, &chunks),
            family: {
                // The pack's entries as the root family of version 0.
                let mut sorted: Vec<_> = entries.iter().map(|e| (e.id, *e)).collect();
                sorted.sort_by_key(|(id, _)| *id);
                let pack = PackId::random();
                let mut w =
                    FamilyWriter::new(Vec::new(), &Plain, FamilyName::root(), 0, 8).unwrap();
                for (id, entry) in sorted {
                    w.push(&id, &Location { pack, entry }).unwrap();
                }
                w.finish(&[PackId::random()]).unwrap().0
            },
            config: std::fs::read(path.join("config")).unwrap(),
            bloom_payload: {
                // A filter for a few ids: small, so a fuzzer spends its
                // time in the decoder, not in copying bytes.
                let mut bloom = Bloom::new(16);
                chunks.iter().take(8).for_each(|(id, _)| bloom.insert(id));
                bloom.encode(0)[48..].to_vec()
            },
            pack,
        }
    })
}

/// `bytes` with `edits` applied: each flips, inserts or removes a byte, or
/// cuts the rest off, at a position taken modulo the length.
fn damaged(bytes: &[u8], edits: &[(u8, usize, u8)]) -> Vec<u8> {
    let mut out = bytes.to_vec();
    for &(kind, at, value) in edits {
        let at = at % (out.len() + 1);
        match kind % 4 {
            0 if at < out.len() => out[at] ^= value.max(1),
            1 => out.insert(at, value),
            2 if at < out.len() => {
                out.remove(at);
            }
            3 => out.truncate(at),
            _ => {}
        }
    }
    out
}

fn edits() -> impl Strategy<Value = Vec<(u8, usize, u8)>> {
    prop::collection::vec((any::<u8>(), any::<usize>(), any::<u8>()), 1..6)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn a_damaged_tree_is_refused_or_decodes_to_exactly_its_bytes(edits in edits()) {
        let bytes = damaged(&seeds().tree, &edits);
        if let Ok(tree) = Tree::decode(&bytes, "damaged") {
            prop_assert_eq!(tree.encode(), bytes.clone());
            for e in &tree.entries {
                prop_assert!(dedup::format::snapshot::tree::unsafe_name(&e.name).is_none());
            }
        }
    }

    #[test]
    fn a_damaged_snapshot_record_is_refused_under_its_old_id(edits in edits()) {
        let seed = &seeds().record;
        let bytes = damaged(seed, &edits);
        let _ = SnapshotRecord::decode(&bytes, &SnapshotId::of(&bytes));
        if bytes != *seed {
            prop_assert!(SnapshotRecord::decode(&bytes, &SnapshotId::of(seed)).is_err());
        }
    }

    #[test]
    fn a_damaged_pack_never_yields_an_entry_outside_it(edits in edits()) {
        let bytes = damaged(&seeds().pack, &edits);
        if bytes.len() >= FOOTER_SIZE {
            if let Ok(n) = trailer_len(&bytes[bytes.len() - FOOTER_SIZE..], "damaged") {
                if n <= bytes.len() {
                    if let Ok(entries) = parse_trailer(&bytes[bytes.len() - n..], bytes.len() as u64, "damaged") {
                        for e in entries {
                            prop_assert!(e.data_range().end <= bytes.len() as u64);
                        }
                    }
                }
            }
        }
        for e in scan_records(&bytes, |_, _| true) {
            prop_assert!(e.data_range().end <= bytes.len() as u64);
        }
    }

    #[test]
    fn damaged_index_values_and_cache_entries_decode_only_to_their_bytes(edits in edits()) {
        let bytes = damaged(&seeds().location, &edits);
        if let Ok(loc) = Location::decode(ChunkId([7; 32]), &bytes) {
            prop_assert_eq!(loc.encode(), bytes.clone());
        }
        let _ = dedup::catalog::PackInfo::decode(&bytes, "damaged");
        let bytes = damaged(&seeds().cache_entry, &edits);
        if let Ok((stamp, chunks)) = dedup::format::filecache::decode(&bytes, "damaged") {
            prop_assert_eq!(dedup::format::filecache::encode(&stamp, &chunks), bytes);
        }
    }

    #[test]
    fn a_damaged_index_family_is_an_error_or_what_was_written(edits in edits()) {
        let seed = &seeds().family;
        let bytes = damaged(seed, &edits);
        let read = Family::read(&bytes, &Plain, &FamilyName::root(), 0, "damaged");
        if bytes != *seed {
            prop_assert!(read.is_err());
        }
    }

    #[test]
    fn a_damaged_bloom_filter_or_config_never_panics(edits in edits()) {
        // Framed with a valid checksum, so the payload decoder is reached;
        // what decodes must answer lookups and take inserts.
        let payload = damaged(&seeds().bloom_payload, &edits);
        if let Ok(mut bloom) = Bloom::decode(&Bloom::frame(0, &payload), "damaged") {
            let _ = bloom.may_contain(&ChunkId::of(&payload));
            let id = ChunkId::of(b"inserted");
            bloom.insert(&id);
            prop_assert!(bloom.may_contain(&id));
        }
        let config = damaged(&seeds().config, &edits);
        let _ = dedup::format::config::Config::decode(&config, std::path::Path::new("damaged/config"));
    }
}

/// Writes the seeds into `fuzz/seeds/<target>/` for `scripts/fuzz.sh`:
/// `DEDUP_WRITE_FUZZ_SEEDS=1 cargo test --test properties fuzz_seeds`.
#[test]
fn fuzz_seeds() {
    let s = seeds();
    prop_assert_sanity(s);
    if std::env::var_os("DEDUP_WRITE_FUZZ_SEEDS").is_none() {
        return;
    }
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds");
    for (target, seed) in [
        ("tree", &s.tree),
        ("snapshot_record", &s.record),
        ("pack_trailer", &s.pack),
        ("index_values", &s.location),
        ("index_values", &s.cache_entry),
        ("bloom_and_config", &s.bloom_payload),
        ("bloom_and_config", &s.config),
        ("index_family", &s.family),
    ] {
        let dir = root.join(target);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(ChunkId::of(seed).to_hex()), seed).unwrap();
    }
}

/// The seeds are what they claim to be: each decodes undamaged.
fn prop_assert_sanity(s: &Seeds) {
    assert!(Tree::decode(&s.tree, "seed").is_ok());
    assert!(SnapshotRecord::decode(&s.record, &SnapshotId::of(&s.record)).is_ok());
    assert!(!scan_records(&s.pack, |_, _| true).is_empty());
    assert!(Location::decode(ChunkId([7; 32]), &s.location).is_ok());
    assert!(dedup::format::filecache::decode(&s.cache_entry, "seed").is_ok());
    assert!(Bloom::decode(&Bloom::frame(0, &s.bloom_payload), "seed").is_ok());
    assert!(dedup::format::config::Config::decode(&s.config, std::path::Path::new("seed")).is_ok());
    assert!(Family::read(&s.family, &Plain, &FamilyName::root(), 0, "seed").is_ok());
}
