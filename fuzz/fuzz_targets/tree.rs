//! Tree decoding: errors, never panics; anything that decodes holds only
//! safe names and survives a round trip. A tree of the current format
//! re-encodes to the same bytes; one of version 1 (no attributes) is
//! written as the current format, with the same entries and no owner
//! beyond the empty one.
#![no_main]
use dedup::format::snapshot::tree::{unsafe_name, Attrs, Owner, Tree};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(tree) = Tree::decode(data, "fuzz") {
        for e in &tree.entries {
            assert!(unsafe_name(&e.name).is_none());
        }
        let bytes = tree.encode();
        let again = Tree::decode(&bytes, "fuzz again").expect("an encoded tree decodes");
        if data[0] == 1 {
            assert_eq!(again.entries.len(), tree.entries.len());
            for (a, b) in again.entries.iter().zip(&tree.entries) {
                assert_eq!(
                    (&a.name, a.mode, a.mtime_s, a.mtime_ns, &a.kind),
                    (&b.name, b.mode, b.mtime_s, b.mtime_ns, &b.kind)
                );
                assert_eq!(b.attrs, Attrs::default());
                assert_eq!(
                    a.attrs,
                    Attrs {
                        owner: Some(Owner::default()),
                        ..Attrs::default()
                    }
                );
            }
        } else {
            assert_eq!(bytes, data);
            assert_eq!(again, tree);
        }
    }
});
