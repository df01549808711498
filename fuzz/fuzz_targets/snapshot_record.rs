//! Snapshot records: the id check, then the JSON decoding, on arbitrary bytes.
#![no_main]
use dedup::snapshot::SnapshotRecord;
use dedup::ChunkId;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // With the right id the decoder gets past the hash check to the JSON.
    let _ = SnapshotRecord::decode(data, &ChunkId::of(data));
    // With a wrong one it must refuse.
    assert!(SnapshotRecord::decode(data, &ChunkId([0; 32])).is_err() || ChunkId::of(data) == ChunkId([0; 32]));
});
