//! Index values (chunk locations, pack summaries) and file cache entries.
#![no_main]
use dedup::filecache;
use dedup::index::{Location, PackInfo};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(loc) = Location::decode(data, "fuzz") {
        assert_eq!(loc.encode(), data);
    }
    let _ = PackInfo::decode(data, "fuzz");
    if let Ok((stamp, chunks)) = filecache::decode(data, "fuzz") {
        assert_eq!(filecache::encode(&stamp, &chunks), data);
    }
});
