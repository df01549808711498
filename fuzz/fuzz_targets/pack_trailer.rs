//! Pack trailers and front-to-back record scans of arbitrary bytes: errors,
//! never panics; whatever parses lies inside the pack.
#![no_main]
use dedup::format::pack::{parse_trailer, scan_records, trailer_len, FOOTER_SIZE};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() >= FOOTER_SIZE {
        let _ = trailer_len(&data[data.len() - FOOTER_SIZE..], "fuzz");
    }
    if let Ok(entries) = parse_trailer(data, data.len() as u64 + 4096, "fuzz") {
        for e in entries {
            assert!(e.data_range().end <= 4096 + data.len() as u64);
        }
    }
    for e in scan_records(data, |_, _| true) {
        assert!((e.data_range().end) as usize <= data.len());
    }
});
