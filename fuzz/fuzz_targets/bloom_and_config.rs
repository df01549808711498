//! The saved Bloom filter (with a valid checksum over fuzzed contents, so
//! the payload decoder is reached) and the config file.
#![no_main]
use dedup::bloom::Bloom;
use dedup::config::Config;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = Bloom::decode(data, "fuzz");
    let _ = Bloom::decode(&Bloom::frame(0, data), "fuzz");
    let _ = Config::decode(data, std::path::Path::new("fuzz/config"));
});
