//! Where the bytes went: `report` (the repository, one snapshot, its
//! shards), `usage` (who holds what: what each snapshot alone costs,
//! folder by folder, and `explain` for one file), and `estimate` (what a
//! folder would cost under each chunker, before anything is stored).

pub mod estimate;
pub mod report;
pub mod usage;
