//! Index values (chunk locations, pack summaries) and file cache entries.
#![no_main]
use dedup::format::filecache;
use dedup::catalog::{Location, PackInfo};
use dedup::ChunkId;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(loc) = Location::decode(ChunkId([7; 32]), data) {
        assert_eq!(loc.encode(), data);
    }
    let _ = PackInfo::decode(data, "fuzz");
    if let Ok((stamp, chunks)) = filecache::decode(data, "fuzz") {
        assert_eq!(filecache::encode(&stamp, &chunks), data);
    }
});
