//! Golden chunk boundaries over a committed fixture, in both modes.
//!
//! A change to the chunker (or to the fastcdc crate's cut points) shows up
//! here as a diff, because changed boundaries mean a repository written
//! before would stop deduplicating against data written after. To accept an
//! intended change, run with `DEDUP_BLESS=1` and commit the new golden files.

use std::fmt::Write;
use std::path::PathBuf;

use dedup::{ChunkId, ChunkerConfig};

fn boundaries(config: ChunkerConfig, data: &[u8]) -> String {
    let mut out = String::new();
    let mut offset = 0;
    for chunk in config.chunks(data) {
        let chunk = chunk.unwrap();
        writeln!(out, "{offset} {} {}", chunk.len(), ChunkId::of(&chunk)).unwrap();
        offset += chunk.len();
    }
    assert_eq!(offset, data.len(), "chunks must cover the input");
    out
}

/// The fixtures folder of the checkout being tested: cargo names it as it
/// runs the test, which stays right when a binary built from another
/// checkout of the same sources is reused (a shared target folder); the
/// folder it was built from otherwise.
fn fixtures() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from)
        .join("fixtures")
}

fn check(config: ChunkerConfig, golden: &str) {
    let root = fixtures();
    let data = std::fs::read(root.join("sample.bin")).unwrap();
    let got = boundaries(config, &data);
    let path = root.join(golden);
    if std::env::var_os("DEDUP_BLESS").is_some() {
        std::fs::write(&path, &got).unwrap();
    }
    let want = std::fs::read_to_string(&path).unwrap();
    assert_eq!(
        got,
        want,
        "chunk boundaries changed for {config}; see {}",
        path.display()
    );
}

#[test]
fn fastcdc_4k_boundaries_match_the_golden_file() {
    check(ChunkerConfig::fastcdc(4096), "golden-fastcdc-4k.txt");
}

#[test]
fn fixed_4k_boundaries_match_the_golden_file() {
    check(ChunkerConfig::Fixed { size: 4096 }, "golden-fixed-4k.txt");
}

#[test]
fn fastcdc_finds_the_repeated_block_in_the_fixture() {
    // The fixture repeats 30 000 bytes of its random section: content-defined
    // boundaries resynchronise inside the repeat, so some chunk ids recur.
    let data = std::fs::read(fixtures().join("sample.bin")).unwrap();
    let ids: Vec<ChunkId> = ChunkerConfig::fastcdc(4096)
        .chunks(&data[..])
        .map(|c| ChunkId::of(&c.unwrap()))
        .collect();
    let distinct: std::collections::HashSet<_> = ids.iter().collect();
    assert!(
        distinct.len() + 3 <= ids.len(),
        "{} chunks, {} distinct",
        ids.len(),
        distinct.len()
    );
}
