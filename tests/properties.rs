//! Property tests: chunking, encodings, and the Bloom filter.

use dedup::bloom::Bloom;
use dedup::index::Location;
use dedup::snapshot::{Entry, EntryKind, Tree};
use dedup::store::pack::{parse_trailer, trailer_len, FOOTER_SIZE};
use dedup::store::{PackBuilder, PackId};
use dedup::{ChunkId, ChunkerConfig};
use proptest::prelude::*;

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
        (any::<u32>(), any::<i64>(), 0u32..1_000_000_000, 0u8..3, prop::collection::vec(1u32..100_000, 0..8)),
        0..30,
    )) {
        let tree = Tree {
            entries: entries
                .into_iter()
                .map(|(name, (mode, s, ns, kind, lens))| Entry {
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
                        _ => EntryKind::Symlink { target: b"../some/where".to_vec() },
                    },
                })
                .collect(),
        };
        prop_assert_eq!(Tree::decode(&tree.encode(), "p").unwrap(), tree);
    }

    #[test]
    fn tree_decoding_never_panics_on_garbage(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        let _ = Tree::decode(&bytes, "garbage");
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
        let reloaded = Bloom::decode(&bloom.encode(), "p").unwrap();
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
}
