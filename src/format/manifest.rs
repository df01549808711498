//! An epoch's manifest and the pack table's parts: what a compaction of
//! the index writes beside its families (`docs/design.md`, "A petabyte
//! index").
//!
//! ```text
//! manifest   "DDMAN\0\0\x02" epoch:u64
//!            families:u32 (digits:u8 digit* version:u64 size:u64)*
//!            pack parts:u32 (the same)*
//!            record parts:u32 (the same)*
//!            tombstones:u32 pack[16]*  covers:u32 (len:u8 name)*
//!            sha256(everything before)[32]
//! pack part  "DDPKT\0\0\x01" digits:u8 digit* epoch:u64
//!            packs:u64 (pack[16] info[53])*, sorted by pack id
//!            sha256(everything before)[32]
//! record     "DDREC\0\0\x01" digits:u8 digit* epoch:u64
//! part       entries:u64 (snapshot[32] kind:u8 len:u32 bytes)*, sorted
//!            by snapshot id; kind 0 a record as stored, 1 a forget's
//!            tombstone; sha256(everything before)[32]
//! ```
//!
//! A manifest of version 1 (`"DDMAN\0\0\x01"`, written before record
//! catalogs) has no record parts: its repository's records are all
//! files. All are sealed whole in an encrypted repository, bound to their
//! key (the manifest to its epoch, a part to its prefix and epoch).

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::format::codec::{Put, Reader};
use crate::format::family::{FamilyName, Sealer, MAX_DIGITS};
use crate::format::values::PackInfo;
use crate::id::{PackId, SnapshotId};

const MANIFEST_MAGIC: &[u8; 8] = b"DDMAN\0\0\x02";
/// A manifest written before record catalogs: no record parts.
const MANIFEST_MAGIC_1: &[u8; 8] = b"DDMAN\0\0\x01";
const PACKS_MAGIC: &[u8; 8] = b"DDPKT\0\0\x01";
const RECORDS_MAGIC: &[u8; 8] = b"DDREC\0\0\x01";

/// Bytes of one pack in a pack-table part.
pub const PACK_LEN: usize = 16 + 53;

/// The first epoch a manifest may not have: a version holds its epoch
/// in 32 bits.
pub const MAX_EPOCH: u64 = 1 << 32;

/// A new version number for an object written by a compaction of
/// `epoch`: the epoch in the high 32 bits, a random number in the low 32,
/// so that two compactions of one epoch (two machines at once, or a
/// rerun of one cut short, each with its own view of the segments) never
/// write the same key. Whichever writes the epoch's manifest first wins;
/// the other's objects are named by nothing (`docs/design.md`, "Epochs
/// and compaction").
pub fn new_version(epoch: u64) -> u64 {
    debug_assert!(epoch < MAX_EPOCH, "manifests of later epochs are refused");
    let mut random = [0u8; 4];
    getrandom::fill(&mut random).expect("the operating system's random source failed");
    (epoch << 32) | u64::from(u32::from_be_bytes(random).max(1))
}

/// The epoch a version was written at (see [`new_version`]); a version
/// below 2^32 is an empty part's, named by its epoch alone.
pub fn epoch_of(version: u64) -> u64 {
    if version >> 32 == 0 {
        version
    } else {
        version >> 32
    }
}

/// One object a manifest names: a family (or a pack-table part) and the
/// version of it that is current.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Part {
    /// The prefix: of chunk ids for a family, of pack ids for a pack part.
    pub name: FamilyName,
    /// Its current version ([`new_version`]: the epoch it was written
    /// at, and the compaction that wrote it).
    pub version: u64,
    /// Its size in bytes.
    pub size: u64,
}

/// The index as of one epoch's compaction.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Manifest {
    /// The epoch compacted.
    pub epoch: u64,
    /// The families, their prefixes a partition of the chunk ids.
    pub families: Vec<Part>,
    /// The pack table's parts, their prefixes a partition of the pack ids.
    pub packs: Vec<Part>,
    /// The record catalog's parts, their prefixes a partition of the
    /// snapshot ids: every record and forget's tombstone a compaction
    /// folded. `None` in a repository whose records are all files (before
    /// format 5).
    pub records: Option<Vec<Part>>,
    /// Packs the segments this compaction folded retired: a cache that
    /// loads the manifest keeps them retired. Each is kept for one epoch
    /// only, so they do not pile up with every pack ever retired (see
    /// `docs/design.md`, "Where retirement lives").
    pub tombstones: Vec<PackId>,
    /// The segments the families fold in: never applied on top of them.
    pub covers: Vec<String>,
}

/// The object key of the manifest of `epoch`.
pub fn manifest_key(epoch: u64) -> String {
    format!("index/manifest.{epoch:016x}")
}

/// The object key of pack-table part `name` at `epoch`.
pub fn packs_key(name: &FamilyName, epoch: u64) -> String {
    format!("index/packs-{}.{epoch:016x}", name.label())
}

/// The object key of record-catalog part `name` at `epoch`.
pub fn records_key(name: &FamilyName, epoch: u64) -> String {
    format!("index/records-{}.{epoch:016x}", name.label())
}

fn put_name(out: &mut Vec<u8>, name: &FamilyName) {
    out.put_u8(name.digits().len() as u8);
    out.extend_from_slice(name.digits());
}

fn name(r: &mut Reader<'_>) -> Result<FamilyName> {
    let digits = usize::from(r.u8()?);
    if digits > MAX_DIGITS {
        return Err(r.error(format!("a prefix of {digits} digits")));
    }
    FamilyName::of(r.take(digits)?).map_err(|_| r.error("a digit past f"))
}

fn checked<'a>(bytes: &'a [u8], what: &'static str, location: &str) -> Result<&'a [u8]> {
    let Some(body_len) = bytes.len().checked_sub(32) else {
        return Err(Error::corrupt(what, location, "shorter than its checksum"));
    };
    let (body, sum) = bytes.split_at(body_len);
    if Sha256::digest(body).as_slice() != sum {
        return Err(Error::corrupt(what, location, "checksum mismatch"));
    }
    Ok(body)
}

fn with_sum(mut out: Vec<u8>) -> Vec<u8> {
    let sum = Sha256::digest(&out);
    out.extend_from_slice(&sum);
    out
}

/// True when `names`' prefixes cover every id exactly once: none is a
/// prefix of another (in sorted order, a prefix comes just before what
/// it prefixes) and their shares of the id space add up to all of it.
fn partitions(names: &[&FamilyName]) -> bool {
    let mut sorted: Vec<&[u8]> = names.iter().map(|n| n.digits()).collect();
    sorted.sort_unstable();
    if sorted.windows(2).any(|w| w[1].starts_with(w[0])) {
        return false;
    }
    let share = |digits: &[u8]| 1u128 << (4 * (MAX_DIGITS - digits.len()));
    sorted.iter().map(|d| share(d)).sum::<u128>() == 1u128 << (4 * MAX_DIGITS)
}

impl Manifest {
    /// The manifest of an empty index at `epoch`: one family and one
    /// pack part, both empty (so neither is an object).
    pub fn empty(epoch: u64) -> Self {
        let root = || {
            vec![Part {
                name: FamilyName::root(),
                version: epoch,
                size: 0,
            }]
        };
        Manifest {
            epoch,
            families: root(),
            packs: root(),
            records: Some(root()),
            tombstones: Vec::new(),
            covers: Vec::new(),
        }
    }

    /// Every object this manifest names: itself, and its families, pack
    /// parts and record parts that hold anything.
    pub fn named_keys(&self) -> std::collections::HashSet<String> {
        let mut keys: std::collections::HashSet<String> =
            self.parts().map(|(key, _)| key).collect();
        keys.insert(manifest_key(self.epoch));
        keys
    }

    /// The objects this manifest names (those that hold anything), each
    /// key with its part.
    fn parts(&self) -> impl Iterator<Item = (String, &Part)> {
        let full = |p: &&Part| p.size > 0;
        let families = self
            .families
            .iter()
            .filter(full)
            .map(|p| (p.name.key(p.version), p));
        let packs = self
            .packs
            .iter()
            .filter(full)
            .map(|p| (packs_key(&p.name, p.version), p));
        let records = self
            .records
            .iter()
            .flatten()
            .filter(full)
            .map(|p| (records_key(&p.name, p.version), p));
        families.chain(packs).chain(records)
    }

    /// Of `names` (segment names), those this manifest covers.
    pub fn covered_of(&self, names: Vec<String>) -> Vec<String> {
        let covers: std::collections::HashSet<&str> =
            self.covers.iter().map(String::as_str).collect();
        names
            .into_iter()
            .filter(|n| covers.contains(n.as_str()))
            .collect()
    }

    /// The keys of the objects this manifest names at `version`: those
    /// one compaction wrote.
    pub fn keys_of(&self, version: u64) -> Vec<String> {
        self.parts()
            .filter(|(_, p)| p.version == version)
            .map(|(key, _)| key)
            .collect()
    }

    fn aad(epoch: u64) -> Vec<u8> {
        let mut aad = b"dedup manifest".to_vec();
        aad.put_u64(epoch);
        aad
    }

    /// The manifest as stored.
    pub fn encode(&self, sealer: &dyn Sealer) -> Vec<u8> {
        let magic = match self.records {
            Some(_) => MANIFEST_MAGIC,
            None => MANIFEST_MAGIC_1,
        };
        let mut out = magic.to_vec();
        out.put_u64(self.epoch);
        for parts in [&self.families, &self.packs]
            .into_iter()
            .chain(self.records.as_ref())
        {
            out.put_u32(parts.len() as u32);
            for p in parts {
                put_name(&mut out, &p.name);
                out.put_u64(p.version);
                out.put_u64(p.size);
            }
        }
        out.put_u32(self.tombstones.len() as u32);
        for t in &self.tombstones {
            out.extend_from_slice(&t.0);
        }
        out.put_u32(self.covers.len() as u32);
        for c in &self.covers {
            out.put_u8(c.len() as u8);
            out.extend_from_slice(c.as_bytes());
        }
        sealer.seal(&Self::aad(self.epoch), &with_sum(out))
    }

    /// Reads the manifest of `epoch` from `stored`: checked, its families
    /// and its pack parts each a partition, no version after its epoch.
    pub fn decode(stored: &[u8], sealer: &dyn Sealer, epoch: u64, location: &str) -> Result<Self> {
        let plain = sealer.open(&Self::aad(epoch), stored, "index manifest", location)?;
        let body = checked(&plain, "index manifest", location)?;
        let mut r = Reader::new(body, "index manifest", location);
        let with_records = match r.take(8)? {
            m if m == MANIFEST_MAGIC => true,
            m if m == MANIFEST_MAGIC_1 => false,
            _ => return Err(r.error("bad magic")),
        };
        let found = r.u64()?;
        if found != epoch {
            return Err(r.error(format!("it is the manifest of epoch {found}, not {epoch}")));
        }
        // Versions keep the epoch in 32 bits (`new_version`).
        if epoch >= MAX_EPOCH {
            return Err(r.error(format!("epoch {epoch} is past the last, {}", MAX_EPOCH - 1)));
        }
        let mut lists: Vec<Vec<Part>> = vec![Vec::new(); if with_records { 3 } else { 2 }];
        for list in &mut lists {
            let n = r.count(1 + 16)?;
            for _ in 0..n {
                let part = Part {
                    name: name(&mut r)?,
                    version: r.u64()?,
                    size: r.u64()?,
                };
                if epoch_of(part.version) > epoch {
                    return Err(r.error(format!("a part of version {} past it", part.version)));
                }
                list.push(part);
            }
            if !partitions(&list.iter().map(|p| &p.name).collect::<Vec<_>>()) {
                return Err(r.error("its prefixes do not cover every id exactly once"));
            }
        }
        let n = r.count(16)?;
        let mut tombstones = Vec::with_capacity(n);
        for _ in 0..n {
            tombstones.push(PackId(r.take(16)?.try_into().expect("16 bytes")));
        }
        let n = r.count(1)?;
        let mut covers = Vec::with_capacity(n);
        for _ in 0..n {
            let len = usize::from(r.u8()?);
            let name =
                std::str::from_utf8(r.take(len)?).map_err(|_| r.error("a name not UTF-8"))?;
            covers.push(name.to_string());
        }
        r.finish()?;
        let mut lists = lists.into_iter();
        let (families, packs) = (lists.next(), lists.next());
        Ok(Manifest {
            epoch,
            families: families.expect("two lists at least"),
            packs: packs.expect("two lists at least"),
            records: lists.next(),
            tombstones,
            covers,
        })
    }
}

fn packs_aad(name: &FamilyName, epoch: u64) -> Vec<u8> {
    let mut aad = b"dedup packs".to_vec();
    put_name(&mut aad, name);
    aad.put_u64(epoch);
    aad
}

/// Pack-table part `name` at `epoch`, as stored: `packs` sorted by id,
/// each inside the prefix.
pub fn encode_packs(
    name: &FamilyName,
    epoch: u64,
    packs: &[(PackId, PackInfo)],
    sealer: &dyn Sealer,
) -> Vec<u8> {
    let mut out = PACKS_MAGIC.to_vec();
    put_name(&mut out, name);
    out.put_u64(epoch);
    out.put_u64(packs.len() as u64);
    for (pack, info) in packs {
        out.extend_from_slice(&pack.0);
        out.extend_from_slice(&info.encode());
    }
    sealer.seal(&packs_aad(name, epoch), &with_sum(out))
}

/// Reads pack-table part `name` at `epoch`: checked, sorted, inside it.
pub fn decode_packs(
    stored: &[u8],
    sealer: &dyn Sealer,
    name: &FamilyName,
    epoch: u64,
    location: &str,
) -> Result<Vec<(PackId, PackInfo)>> {
    let plain = sealer.open(
        &packs_aad(name, epoch),
        stored,
        "index pack table",
        location,
    )?;
    let body = checked(&plain, "index pack table", location)?;
    let mut r = Reader::new(body, "index pack table", location);
    if r.take(8)? != PACKS_MAGIC {
        return Err(r.error("bad magic"));
    }
    let found = self::name(&mut r)?;
    if found != *name || r.u64()? != epoch {
        return Err(r.error("it is another part's, or another version's"));
    }
    let n = r.u64()?;
    if n > (r.remaining() / PACK_LEN) as u64 {
        return Err(r.error(format!("{n} packs in {} bytes", r.remaining())));
    }
    let mut out: Vec<(PackId, PackInfo)> = Vec::with_capacity(n as usize);
    for _ in 0..n {
        let pack = PackId(r.take(16)?.try_into().expect("16 bytes"));
        let info = PackInfo::decode(r.take(53)?, location)?;
        if out.last().is_some_and(|(last, _)| *last >= pack) || !name.holds(&pack.0) {
            return Err(r.error("packs out of order or outside the part"));
        }
        out.push((pack, info));
    }
    r.finish()?;
    Ok(out)
}

/// What a record-catalog part holds of one snapshot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cataloged {
    /// Its record, the bytes as they were stored in `snapshots/` (so an
    /// encrypted record stays sealed under its own key inside the part).
    Record(Vec<u8>),
    /// It was forgotten: the tombstone `forget` wrote, as read.
    Forgotten(Vec<u8>),
}

/// The most bytes one record or tombstone may take in a part.
const MAX_CATALOGED: usize = 64 << 20;

fn records_aad(name: &FamilyName, epoch: u64) -> Vec<u8> {
    let mut aad = b"dedup records".to_vec();
    put_name(&mut aad, name);
    aad.put_u64(epoch);
    aad
}

/// Bytes `entry` takes in a record-catalog part.
pub fn cataloged_len(entry: &Cataloged) -> u64 {
    let (Cataloged::Record(b) | Cataloged::Forgotten(b)) = entry;
    32 + 1 + 4 + b.len() as u64
}

/// Record-catalog part `name` at `epoch`, as stored: `entries` sorted by
/// snapshot id, each inside the prefix.
pub fn encode_records(
    name: &FamilyName,
    epoch: u64,
    entries: &[(SnapshotId, Cataloged)],
    sealer: &dyn Sealer,
) -> Vec<u8> {
    let mut out = RECORDS_MAGIC.to_vec();
    put_name(&mut out, name);
    out.put_u64(epoch);
    out.put_u64(entries.len() as u64);
    for (id, entry) in entries {
        out.extend_from_slice(id.as_bytes());
        let (kind, bytes) = match entry {
            Cataloged::Record(b) => (0, b),
            Cataloged::Forgotten(b) => (1, b),
        };
        out.put_u8(kind);
        out.put_u32(bytes.len() as u32);
        out.extend_from_slice(bytes);
    }
    sealer.seal(&records_aad(name, epoch), &with_sum(out))
}

/// Reads record-catalog part `name` at `epoch`: checked, sorted, inside
/// it.
pub fn decode_records(
    stored: &[u8],
    sealer: &dyn Sealer,
    name: &FamilyName,
    epoch: u64,
    location: &str,
) -> Result<Vec<(SnapshotId, Cataloged)>> {
    const WHAT: &str = "index record catalog";
    let plain = sealer.open(&records_aad(name, epoch), stored, WHAT, location)?;
    let body = checked(&plain, WHAT, location)?;
    let mut r = Reader::new(body, WHAT, location);
    if r.take(8)? != RECORDS_MAGIC {
        return Err(r.error("bad magic"));
    }
    let found = self::name(&mut r)?;
    if found != *name || r.u64()? != epoch {
        return Err(r.error("it is another part's, or another version's"));
    }
    let n = r.u64()?;
    if n > (r.remaining() / (32 + 1 + 4)) as u64 {
        return Err(r.error(format!("{n} entries in {} bytes", r.remaining())));
    }
    let mut out: Vec<(SnapshotId, Cataloged)> = Vec::with_capacity(n as usize);
    for _ in 0..n {
        let id = SnapshotId::from_slice(r.take(32)?).expect("32 bytes");
        let kind = r.u8()?;
        let len = r.u32()? as usize;
        if len > MAX_CATALOGED {
            return Err(r.error(format!("an entry of {len} bytes")));
        }
        let bytes = r.take(len)?.to_vec();
        let entry = match kind {
            0 => Cataloged::Record(bytes),
            1 => Cataloged::Forgotten(bytes),
            k => return Err(r.error(format!("an entry of kind {k}"))),
        };
        if out.last().is_some_and(|(last, _)| *last >= id) || !name.holds(id.as_bytes()) {
            return Err(r.error("snapshots out of order or outside the part"));
        }
        out.push((id, entry));
    }
    r.finish()?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::family::Plain;
    use crate::id::ShardId;

    #[test]
    fn a_manifest_reads_back_and_refuses_a_broken_partition_or_another_epoch() {
        let root = FamilyName::root();
        let manifest = Manifest {
            epoch: 7,
            families: root
                .children()
                .into_iter()
                .map(|name| Part {
                    name,
                    version: 3,
                    size: 100,
                })
                .collect(),
            packs: vec![Part {
                name: root.clone(),
                version: 7,
                size: 10,
            }],
            records: Some(vec![Part {
                name: root.clone(),
                version: 5,
                size: 20,
            }]),
            tombstones: vec![PackId([1; 16])],
            covers: vec!["0000000000000001-abcd".to_string()],
        };
        let bytes = manifest.encode(&Plain);
        assert_eq!(Manifest::decode(&bytes, &Plain, 7, "t").unwrap(), manifest);
        // A manifest from before record catalogs reads as one without.
        let older = Manifest {
            records: None,
            ..manifest.clone()
        };
        let stored = older.encode(&Plain);
        assert_eq!(&stored[..8], MANIFEST_MAGIC_1);
        assert_eq!(Manifest::decode(&stored, &Plain, 7, "t").unwrap(), older);
        let mut split = manifest.clone();
        split.records = Some(vec![Part {
            name: FamilyName::of(&[3]).unwrap(),
            version: 5,
            size: 1,
        }]);
        assert!(Manifest::decode(&split.encode(&Plain), &Plain, 7, "t").is_err());
        assert!(Manifest::decode(&bytes, &Plain, 8, "t").is_err());
        let mut gap = manifest.clone();
        gap.families.pop();
        assert!(Manifest::decode(&gap.encode(&Plain), &Plain, 7, "t").is_err());
        let mut overlap = manifest.clone();
        overlap.packs.push(Part {
            name: FamilyName::of(&[1]).unwrap(),
            version: 1,
            size: 1,
        });
        assert!(Manifest::decode(&overlap.encode(&Plain), &Plain, 7, "t").is_err());
        for at in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[at] ^= 1;
            assert!(Manifest::decode(&bad, &Plain, 7, "t").is_err(), "byte {at}");
        }
        // An epoch a version cannot hold (a forged `manifest.ffff...`) is
        // refused by name, never folded into a wrapped-around epoch.
        let last = Manifest::empty(u64::MAX);
        let err = Manifest::decode(&last.encode(&Plain), &Plain, u64::MAX, "t").unwrap_err();
        assert!(err.to_string().contains("past the last"), "{err}");
    }

    #[test]
    fn a_pack_table_part_reads_back_and_holds_only_its_prefix() {
        let name = FamilyName::of(&[0xa]).unwrap();
        let info = PackInfo {
            shard: ShardId(2),
            size: 99,
            ..PackInfo::default()
        };
        let packs = vec![(PackId([0xa0; 16]), info), (PackId([0xa7; 16]), info)];
        let bytes = encode_packs(&name, 4, &packs, &Plain);
        assert_eq!(decode_packs(&bytes, &Plain, &name, 4, "t").unwrap(), packs);
        assert!(decode_packs(&bytes, &Plain, &name, 5, "t").is_err());
        let other = FamilyName::of(&[0xb]).unwrap();
        assert!(decode_packs(&bytes, &Plain, &other, 4, "t").is_err());
        let outside = vec![(PackId([0xb0; 16]), info)];
        assert!(decode_packs(
            &encode_packs(&name, 4, &outside, &Plain),
            &Plain,
            &name,
            4,
            "t"
        )
        .is_err());
    }

    #[test]
    fn a_record_catalog_part_reads_back_and_holds_only_its_prefix() {
        let name = FamilyName::of(&[0xa]).unwrap();
        let mut id = [0xa1; 32];
        let first = SnapshotId(id);
        id[1] = 0xff;
        let second = SnapshotId(id);
        let entries = vec![
            (first, Cataloged::Record(b"{\"version\": 1}".to_vec())),
            (second, Cataloged::Forgotten(b"{}".to_vec())),
        ];
        let bytes = encode_records(&name, 4, &entries, &Plain);
        assert_eq!(
            decode_records(&bytes, &Plain, &name, 4, "t").unwrap(),
            entries
        );
        assert!(decode_records(&bytes, &Plain, &name, 5, "t").is_err());
        let other = FamilyName::of(&[0xb]).unwrap();
        assert!(decode_records(&bytes, &Plain, &other, 4, "t").is_err());
        let backwards = vec![entries[1].clone(), entries[0].clone()];
        let stored = encode_records(&name, 4, &backwards, &Plain);
        assert!(decode_records(&stored, &Plain, &name, 4, "t").is_err());
        for at in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[at] ^= 1;
            assert!(
                decode_records(&bad, &Plain, &name, 4, "t").is_err(),
                "byte {at}"
            );
        }
    }
}
