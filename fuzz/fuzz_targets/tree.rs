//! Tree decoding: errors, never panics; anything that decodes re-encodes to
//! the same bytes and holds only safe names.
#![no_main]
use dedup::snapshot::tree::{unsafe_name, Tree};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(tree) = Tree::decode(data, "fuzz") {
        assert_eq!(tree.encode(), data);
        for e in &tree.entries {
            assert!(unsafe_name(&e.name).is_none());
        }
    }
});
