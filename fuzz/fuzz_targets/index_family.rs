//! Index family objects of arbitrary bytes: errors, never panics; what
//! reads holds entries in order, inside the family, pointing at the packs
//! it lists.
#![no_main]
use dedup::format::family::{Family, FamilyName, Plain};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let name = FamilyName::root();
    if let Ok(family) = Family::read(data, &Plain, &name, 0, "fuzz") {
        assert!(family.entries.windows(2).all(|w| w[0].0 < w[1].0));
        for (id, location) in &family.entries {
            assert!(name.contains(id));
            assert!(family.packs.binary_search(&location.pack).is_ok());
        }
    }
});
