//! The pack file format: many chunks in one append-only, self-describing file.
//!
//! ```text
//! pack    = header record* trailer footer
//! header  = "DDPACK\0\x01"                                  8 bytes
//! record  = header bytes[stored_len]    (header: 41 bytes, sealed 81)
//! trailer = entry*                                          49 bytes each
//! entry   = id[32] offset:u64 raw_len:u32 stored_len:u32 flags:u8
//! footer  = count:u32 crc32(trailer ‖ count):u32 "DDPKEND\x01"   16 bytes
//! ```
//!
//! Integers are little-endian. `offset` is where the entry's record starts
//! (see [`record`] for what a record is). Each record repeats its id
//! and lengths, so a pack whose trailer is damaged can still be walked from
//! the front (with the key, when its headers are sealed). A pack is built in memory up to its target size, then sealed
//! (trailer appended) and written once, durably; it is never modified after.

use crate::error::{Error, Result};
use crate::format::codec::{Put, Reader};
use crate::format::record;
pub use crate::format::record::{flags, PackEntry};
use crate::id::ChunkId;
pub use crate::id::PackId;

/// First bytes of every pack.
pub const PACK_MAGIC: &[u8; 8] = b"DDPACK\0\x01";
/// Last bytes of every pack.
pub const FOOTER_MAGIC: &[u8; 8] = b"DDPKEND\x01";
/// Bytes of one trailer entry.
pub const ENTRY_SIZE: usize = 32 + 8 + 4 + 4 + 1;
/// Bytes of the footer.
pub const FOOTER_SIZE: usize = 4 + 4 + 8;
/// Last bytes of a pack of an encrypted repository, whose trailer is
/// sealed: its footer's first field is the sealed trailer's length.
pub const SEALED_FOOTER_MAGIC: &[u8; 8] = b"DDPKSEA\x01";
/// What a sealed trailer is bound to.
#[cfg(feature = "engine")]
const TRAILER_AAD: &[u8] = b"dd-pack-trailer";

/// A new sealed pack holding `entries` copied, as stored, out of `bytes`
/// (a pack's bytes from offset `base` on): gc keeps a pack's live records
/// this way, rebalance moves them, repair keeps the intact ones. Every copy
/// is opened and checked against its id before the pack is returned, so a
/// record damaged on the way is never published in place of a good one.
#[cfg(feature = "engine")]
pub fn repack(
    from: &PackId,
    bytes: &[u8],
    base: u64,
    entries: &[PackEntry],
    crypt: &crate::crypto::Crypt,
) -> Result<(Vec<u8>, Vec<PackEntry>)> {
    let mut builder = PackBuilder::new();
    for e in entries {
        // A sealed header names no place, so it moves as it is.
        let (header, stored) = e
            .record_in(bytes, base)?
            .split_at(record::header_len(e.flags) as usize);
        record::open(from, e, stored, crypt)?;
        builder.add_with_header(e.id, e.raw_len, e.flags, header, stored);
    }
    Ok(builder.seal_with(crypt))
}

/// A pack being filled in memory.
#[derive(Debug)]
pub struct PackBuilder {
    buf: Vec<u8>,
    entries: Vec<PackEntry>,
}

impl Default for PackBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl PackBuilder {
    /// An empty pack (header only).
    pub fn new() -> Self {
        PackBuilder {
            buf: PACK_MAGIC.to_vec(),
            entries: Vec::new(),
        }
    }

    /// An empty pack written into `buf` (its bytes are dropped, its
    /// capacity kept): the buffer of a pack already sealed and written.
    pub fn reuse(mut buf: Vec<u8>) -> Self {
        buf.clear();
        buf.extend_from_slice(PACK_MAGIC);
        PackBuilder {
            buf,
            entries: Vec::new(),
        }
    }

    /// Appends a record with a plain header.
    pub fn add(&mut self, id: ChunkId, raw_len: u32, flags: u8, stored: &[u8]) {
        let header = record::encode_header(&id, raw_len, stored.len() as u32, flags);
        self.add_with_header(id, raw_len, flags, &header, stored);
    }

    /// Appends a record as [`seal_for`](record::seal_for) made it.
    #[cfg(feature = "engine")]
    pub fn add_stored(&mut self, id: ChunkId, raw_len: u32, stored: &record::Stored<'_>) {
        match &stored.header {
            Some(header) => self.add_with_header(id, raw_len, stored.flags, header, &stored.bytes),
            None => self.add(id, raw_len, stored.flags, &stored.bytes),
        }
    }

    /// Appends a record whose header is given: a sealed one, or one
    /// copied from another pack.
    fn add_with_header(
        &mut self,
        id: ChunkId,
        raw_len: u32,
        flags: u8,
        header: &[u8],
        stored: &[u8],
    ) {
        debug_assert_eq!(header.len() as u64, record::header_len(flags));
        let offset = self.buf.len() as u64;
        let stored_len = stored.len() as u32;
        self.buf.extend_from_slice(header);
        self.buf.extend_from_slice(stored);
        self.entries.push(PackEntry {
            id,
            offset,
            raw_len,
            stored_len,
            flags,
        });
    }

    /// Bytes so far (without the trailer).
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// True when no record was added.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// [`seal`](Self::seal), with the trailer sealed under the
    /// repository's key when `crypt` is on: then the store learns how many
    /// bytes the trailer takes, not what it lists.
    #[cfg(feature = "engine")]
    pub fn seal_with(self, crypt: &crate::crypto::Crypt) -> (Vec<u8>, Vec<PackEntry>) {
        if !crypt.is_on() {
            return self.seal();
        }
        let PackBuilder { mut buf, entries } = self;
        let mut trailer = Vec::with_capacity(entries.len() * ENTRY_SIZE);
        put_entries(&mut trailer, &entries);
        let sealed = crypt.seal(TRAILER_AAD, &trailer);
        let trailer_start = buf.len();
        buf.extend_from_slice(&sealed);
        buf.put_u32(sealed.len() as u32);
        let crc = crc32fast::hash(&buf[trailer_start..]);
        buf.put_u32(crc);
        buf.extend_from_slice(SEALED_FOOTER_MAGIC);
        (buf, entries)
    }

    /// Appends trailer and footer; returns the finished bytes and entries.
    pub fn seal(self) -> (Vec<u8>, Vec<PackEntry>) {
        let PackBuilder { mut buf, entries } = self;
        let trailer_start = buf.len();
        put_entries(&mut buf, &entries);
        buf.put_u32(entries.len() as u32);
        let crc = crc32fast::hash(&buf[trailer_start..]);
        buf.put_u32(crc);
        buf.extend_from_slice(FOOTER_MAGIC);
        (buf, entries)
    }
}

fn put_entries(buf: &mut Vec<u8>, entries: &[PackEntry]) {
    for e in entries {
        buf.put_id(&e.id);
        buf.put_u64(e.offset);
        buf.put_u32(e.raw_len);
        buf.put_u32(e.stored_len);
        buf.put_u8(e.flags);
    }
}

/// Reads the entry count (or, for a sealed trailer, its length) from a
/// pack's last [`FOOTER_SIZE`] bytes and returns how many bytes the
/// trailer plus footer take.
pub fn trailer_len(footer: &[u8], location: &str) -> Result<usize> {
    let mut r = Reader::new(footer, "pack footer", location);
    let count = r.u32()? as usize;
    let _crc = r.u32()?;
    let magic = r.take(8)?;
    let body = if magic == FOOTER_MAGIC {
        count.saturating_mul(ENTRY_SIZE)
    } else if magic == SEALED_FOOTER_MAGIC {
        count
    } else {
        return Err(r.error("bad footer magic"));
    };
    r.finish()?;
    Ok(body.saturating_add(FOOTER_SIZE))
}

/// A trailer plus footer split into the two.
fn split_footer<'a>(tail: &'a [u8], location: &str) -> Result<(&'a [u8], &'a [u8])> {
    if tail.len() < FOOTER_SIZE {
        return Err(Error::corrupt(
            "pack trailer",
            location,
            "shorter than a footer",
        ));
    }
    Ok(tail.split_at(tail.len() - FOOTER_SIZE))
}

/// Decodes a trailer plus footer (the last [`trailer_len`] bytes of a pack of
/// `pack_len` bytes), checking the checksum and that every entry lies inside
/// the pack's record area. A sealed trailer needs the key: see
/// [`entries_of`] and `read_entries` (in `store`).
pub fn parse_trailer(tail: &[u8], pack_len: u64, location: &str) -> Result<Vec<PackEntry>> {
    let (body, sealed) = checked_body(tail, location)?;
    if sealed {
        return Err(Error::corrupt(
            "pack trailer",
            location,
            "it is encrypted, and this repository is not",
        ));
    }
    parse_entries(body, pack_len.saturating_sub(tail.len() as u64), location)
}

/// A trailer plus footer's body, its length and checksum checked, and
/// whether it is sealed.
fn checked_body<'a>(tail: &'a [u8], location: &str) -> Result<(&'a [u8], bool)> {
    let (body, footer) = split_footer(tail, location)?;
    let expected = trailer_len(footer, location)?;
    if expected != tail.len() {
        return Err(Error::corrupt(
            "pack trailer",
            location,
            format!(
                "footer announces {expected} bytes of trailer, have {}",
                tail.len()
            ),
        ));
    }
    let stored_crc = u32::from_le_bytes(footer[4..8].try_into().expect("4 bytes"));
    if crc32fast::hash(&tail[..body.len() + 4]) != stored_crc {
        return Err(Error::corrupt(
            "pack trailer",
            location,
            "checksum mismatch",
        ));
    }
    Ok((body, &footer[8..] == SEALED_FOOTER_MAGIC))
}

/// A trailer's entries, each checked to lie between the pack's header and
/// `records_end`, with flags this version knows.
fn parse_entries(body: &[u8], records_end: u64, location: &str) -> Result<Vec<PackEntry>> {
    let mut r = Reader::new(body, "pack trailer", location);
    let mut entries = Vec::with_capacity(body.len() / ENTRY_SIZE);
    while r.remaining() > 0 {
        let e = PackEntry {
            id: r.id()?,
            offset: r.u64()?,
            raw_len: r.u32()?,
            stored_len: r.u32()?,
            flags: r.u8()?,
        };
        let end = e
            .offset
            .checked_add(e.record_len())
            .filter(|&end| end <= records_end);
        if e.offset < PACK_MAGIC.len() as u64 || end.is_none() {
            return Err(r.error(format!("entry for {} lies outside the pack", e.id)));
        }
        if !e.flags_known() {
            return Err(r.error(format!(
                "entry for {} has unknown flags {:#x}",
                e.id, e.flags
            )));
        }
        entries.push(e);
    }
    Ok(entries)
}

/// How much of a pack's end [`read_entries`] fetches first: enough for the
/// trailer of a full pack of average-sized chunks, so one read usually
/// does.
pub(crate) const TAIL_GUESS: usize = 64 * 1024;

/// The entries of a whole pack's `bytes`, from its trailer.
#[cfg(feature = "engine")]
pub fn entries_of(
    bytes: &[u8],
    location: &str,
    crypt: &crate::crypto::Crypt,
) -> Result<Vec<PackEntry>> {
    let n = trailer_len(&bytes[bytes.len().saturating_sub(FOOTER_SIZE)..], location)?;
    if n > bytes.len() {
        return Err(Error::corrupt(
            "pack trailer",
            location,
            "longer than the pack",
        ));
    }
    parse_opened(
        &bytes[bytes.len() - n..],
        bytes.len() as u64,
        location,
        crypt,
    )
}

/// A trailer's entries as the repository's `crypt` reads them: a sealed
/// trailer opened with the key, a plain one as it is. An encrypted
/// repository refuses a plain trailer, and a repository without a key a
/// sealed one.
#[cfg(feature = "engine")]
pub(crate) fn parse_opened(
    tail: &[u8],
    pack_len: u64,
    location: &str,
    crypt: &crate::crypto::Crypt,
) -> Result<Vec<PackEntry>> {
    if !crypt.is_on() {
        return parse_trailer(tail, pack_len, location);
    }
    let (body, sealed) = checked_body(tail, location)?;
    if !sealed {
        return Err(Error::corrupt(
            "pack trailer",
            location,
            "it is not encrypted, and this repository is",
        ));
    }
    let plain = crypt.open(TRAILER_AAD, body, "pack trailer", location)?;
    parse_entries(&plain, pack_len.saturating_sub(tail.len() as u64), location)
}

/// Checks what reading records by their trailer entries passes over: the
/// pack's magic, each record's header against its entry (a sealed one
/// opened with the key), and that the records fill the pack from its
/// header to its trailer with nothing in between (every pack is written
/// that way). `trailer_start` is where the stored trailer begins.
#[cfg(feature = "engine")]
pub fn check_layout(
    bytes: &[u8],
    entries: &[PackEntry],
    trailer_start: u64,
    location: &str,
    crypt: &crate::crypto::Crypt,
) -> Result<()> {
    let bad = |reason: String| Err(Error::corrupt("pack", location, reason));
    if !bytes.starts_with(PACK_MAGIC) {
        return bad("it does not start with the pack magic".into());
    }
    let mut sorted: Vec<&PackEntry> = entries.iter().collect();
    sorted.sort_by_key(|e| e.offset);
    let mut at = PACK_MAGIC.len() as u64;
    for e in sorted {
        if e.offset != at {
            return bad(format!(
                "bytes {at}..{} belong to no record",
                e.offset.max(at)
            ));
        }
        let Some(header) = usize::try_from(e.offset).ok().and_then(|s| bytes.get(s..)) else {
            return bad(format!("the record of {} lies past the end", e.id));
        };
        let found = if e.flags & flags::HIDDEN != 0 {
            record::open_header(crypt, header, e.offset)
        } else {
            record::decode_header(header, e.offset)
        };
        if found.as_ref() != Some(e) {
            return bad(format!(
                "the record header of {} differs from its trailer entry",
                e.id
            ));
        }
        at = e.record_end();
    }
    if at != trailer_start {
        return bad(format!("bytes {at}..{trailer_start} belong to no record"));
    }
    Ok(())
}

/// Walks a pack's records from the front, for packs whose trailer is lost.
/// Passes over a record whose bytes fail `check` (they do not hash to its
/// id) and stops at the first header that does not decode; returns the
/// good ones. Sealed headers are not read: see [`scan_sealed_records`].
pub fn scan_records(bytes: &[u8], check: impl Fn(&PackEntry, &[u8]) -> bool) -> Vec<PackEntry> {
    scan_with(bytes, |_, _| None, check)
}

/// [`scan_records`] for a pack of an encrypted repository, whose headers
/// may be sealed under `crypt`'s key.
#[cfg(feature = "engine")]
pub fn scan_sealed_records(
    bytes: &[u8],
    crypt: &crate::crypto::Crypt,
    check: impl Fn(&PackEntry, &[u8]) -> bool,
) -> Vec<PackEntry> {
    scan_with(
        bytes,
        |at, offset| record::open_header(crypt, at, offset),
        check,
    )
}

fn scan_with(
    bytes: &[u8],
    sealed_header: impl Fn(&[u8], u64) -> Option<PackEntry>,
    check: impl Fn(&PackEntry, &[u8]) -> bool,
) -> Vec<PackEntry> {
    let mut out = Vec::new();
    if !bytes.starts_with(PACK_MAGIC) {
        return out;
    }
    let mut offset = PACK_MAGIC.len() as u64;
    while let Some(at) = bytes.get(offset as usize..) {
        let plain = || {
            record::decode_header(at, offset)
                .filter(|e| e.flags_known() && e.flags & flags::HIDDEN == 0)
        };
        // Not a record header: nothing after it can be trusted.
        let Some(e) = sealed_header(at, offset).or_else(plain) else {
            break;
        };
        let Some(data) = bytes.get(e.data_range().start as usize..e.record_end() as usize) else {
            break;
        };
        // A record whose bytes do not hash to its id is passed over: its
        // header still says where the next one starts.
        if check(&e, data) {
            out.push(e);
        }
        offset = e.record_end();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> (Vec<u8>, Vec<PackEntry>) {
        let mut b = PackBuilder::new();
        for (i, data) in [&b"alpha"[..], b"", b"gamma gamma"].iter().enumerate() {
            b.add(
                ChunkId::of(data),
                data.len() as u32,
                (i as u8) & flags::TREE,
                data,
            );
        }
        b.seal()
    }

    #[cfg(feature = "engine")]
    #[test]
    fn an_encrypted_trailer_opens_only_with_its_key_and_any_change_is_refused() {
        use crate::crypto::{Crypt, MasterKey};
        let crypt = Crypt::with(MasterKey::generate().unwrap());
        let mut b = PackBuilder::new();
        for data in [&b"alpha"[..], b"", b"gamma gamma"] {
            b.add(ChunkId::of(data), data.len() as u32, 0, data);
        }
        let (bytes, entries) = b.seal_with(&crypt);
        assert!(bytes.ends_with(SEALED_FOOTER_MAGIC));
        assert_eq!(entries_of(&bytes, "t", &crypt).unwrap(), entries);
        assert!(entries_of(&bytes, "t", &Crypt::none()).is_err());
        assert!(entries_of(&bytes, "t", &Crypt::with(MasterKey::generate().unwrap())).is_err());
        // The ids are not in the trailer in the clear.
        let tail = &bytes[entries.last().unwrap().record_end() as usize..];
        assert!(!tail.windows(32).any(|w| w == entries[0].id.as_bytes()));
        for i in 0..tail.len() {
            let mut bad = bytes.clone();
            bad[bytes.len() - tail.len() + i] ^= 1;
            assert!(
                entries_of(&bad, "t", &crypt).is_err(),
                "byte {i} of the trailer"
            );
        }
        // A plain pack in an encrypted repository is refused.
        let (plain, _) = sample();
        assert!(entries_of(&plain, "t", &crypt).is_err());
    }

    #[cfg(feature = "engine")]
    #[test]
    fn a_pack_of_hidden_records_is_checked_walked_and_repacked_only_with_its_key() {
        use crate::crypto::{Crypt, MasterKey};
        use crate::format::config::Compression;
        use crate::format::record::{seal_for, ObjectKind};
        let crypt = Crypt::with(MasterKey::generate().unwrap());
        let mut b = PackBuilder::new();
        let text = b"words words words ".repeat(50);
        for data in [&b"alpha"[..], b"", &text, b"gamma gamma"] {
            let id = crypt.id_of(data);
            let s = seal_for(
                &crypt,
                true,
                &id,
                data,
                ObjectKind::Data,
                Compression::Zstd,
                3,
            )
            .unwrap();
            b.add_stored(id, data.len() as u32, &s);
        }
        let (bytes, entries) = b.seal_with(&crypt);
        assert_eq!(entries_of(&bytes, "t", &crypt).unwrap(), entries);
        let trailer_start = entries.last().unwrap().record_end();
        check_layout(&bytes, &entries, trailer_start, "t", &crypt).unwrap();
        let other = Crypt::with(MasterKey::generate().unwrap());
        assert!(check_layout(&bytes, &entries, trailer_start, "t", &other).is_err());
        // Without the key a walk finds nothing; with it, every record.
        assert!(scan_records(&bytes, |_, _| true).is_empty());
        let found = scan_sealed_records(&bytes[..trailer_start as usize], &crypt, |_, _| true);
        assert_eq!(found, entries);
        // Repacked, a record keeps its sealed header and still opens.
        let (moved, moved_entries) =
            repack(&PackId([9; 16]), &bytes, 0, &entries[2..], &crypt).unwrap();
        let end = moved_entries.last().unwrap().record_end();
        check_layout(&moved, &moved_entries, end, "t", &crypt).unwrap();
        let stored = moved_entries[0].stored_in(&moved, 0).unwrap();
        let opened =
            crate::format::record::open(&PackId([9; 16]), &moved_entries[0], stored, &crypt);
        assert_eq!(opened.unwrap(), text);
        // A header changed by one bit is not the entry's.
        let mut bad = bytes.clone();
        bad[entries[1].offset as usize + 30] ^= 1;
        assert!(check_layout(&bad, &entries, trailer_start, "t", &crypt).is_err());
    }

    #[test]
    fn sealed_pack_trailer_round_trips_and_points_at_the_data() {
        let (bytes, entries) = sample();
        let footer = &bytes[bytes.len() - FOOTER_SIZE..];
        let tail_len = trailer_len(footer, "t").unwrap();
        let parsed =
            parse_trailer(&bytes[bytes.len() - tail_len..], bytes.len() as u64, "t").unwrap();
        assert_eq!(parsed, entries);
        assert_eq!(parsed[2].stored_in(&bytes, 0).unwrap(), b"gamma gamma");
    }

    #[test]
    fn every_single_bit_flip_in_the_trailer_is_detected() {
        let (bytes, _) = sample();
        let tail_len = trailer_len(&bytes[bytes.len() - FOOTER_SIZE..], "t").unwrap();
        let start = bytes.len() - tail_len;
        for i in start..bytes.len() {
            for bit in 0..8 {
                let mut bad = bytes.clone();
                bad[i] ^= 1 << bit;
                let footer = &bad[bad.len() - FOOTER_SIZE..];
                let ok = trailer_len(footer, "t")
                    .ok()
                    .filter(|&n| n <= bad.len())
                    .and_then(|n| parse_trailer(&bad[bad.len() - n..], bad.len() as u64, "t").ok());
                assert!(ok.is_none(), "flip of bit {bit} in byte {i} went unnoticed");
            }
        }
    }

    #[test]
    fn a_scan_passes_over_a_damaged_record_and_keeps_the_ones_after_it() {
        let (mut bytes, entries) = sample();
        let first = entries[0].data_range();
        bytes[first.start as usize] ^= 0xff;
        let good = |e: &PackEntry, data: &[u8]| ChunkId::of(data) == e.id;
        let kept = scan_records(&bytes, good);
        assert_eq!(kept, entries[1..].to_vec());
    }

    #[test]
    fn pack_keys_round_trip() {
        let id = PackId::random();
        assert_eq!(PackId::from_key(&id.key()), Some(id));
        assert_eq!(PackId::from_key("ab/nothex.pack"), None);
    }
}
