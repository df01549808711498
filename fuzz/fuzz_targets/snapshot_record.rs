//! Snapshot records: the id check, then the JSON decoding, on arbitrary bytes.
#![no_main]
use dedup::format::snapshot::{SnapshotId, SnapshotRecord};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // With the right id the decoder gets past the hash check to the JSON.
    let _ = SnapshotRecord::decode(data, &SnapshotId::of(data));
    // With a wrong one it must refuse.
    let zero = SnapshotId([0; 32]);
    assert!(SnapshotRecord::decode(data, &zero).is_err() || SnapshotId::of(data) == zero);
});
