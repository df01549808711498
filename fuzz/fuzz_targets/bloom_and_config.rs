//! The saved Bloom filter (with a valid checksum over fuzzed contents, so
//! the payload decoder is reached), queried and grown as a writer would,
//! and the config file.
#![no_main]
use dedup::bloom::Bloom;
use dedup::format::config::Config;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = Bloom::decode(data, "fuzz");
    if let Ok(mut bloom) = Bloom::decode(&Bloom::frame(0, data), "fuzz") {
        let id = dedup::ChunkId::of(data);
        let _ = bloom.may_contain(&id);
        for i in 0..64u32 {
            bloom.insert(&dedup::ChunkId::of(&i.to_le_bytes()));
        }
        assert!(bloom.may_contain(&dedup::ChunkId::of(&0u32.to_le_bytes())));
    }
    let _ = Config::decode(data, std::path::Path::new("fuzz/config"));
});
