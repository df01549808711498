//! A stored record: one object's bytes as they sit in a pack.
//!
//! ```text
//! record = header bytes[stored_len]
//! header = id[32] raw_len:u32 stored_len:u32 flags:u8             41 bytes
//!        | sealed(id[32] raw_len:u32 stored_len:u32 flags:u8)     81 bytes
//! flags  = bit 0: zstd-compressed; bit 1: tree object; bit 2: sealed;
//!          bit 3: lengths hidden; others must be 0
//! ```
//!
//! A record whose lengths are hidden ([`flags::HIDDEN`], encrypted
//! repositories of format 2) has its header sealed, so the store cannot
//! read where it ends or how long its object is, and its sealed bytes
//! padded to a size bucket ([`padded_len`]), so a ranged read of it says
//! little more.
//!
//! This module is the one place that knows what a record is: where its
//! bytes start ([`PackEntry::data_range`]), how an object becomes one
//! ([`seal`]: compressed when that pays) and how one becomes an object again
//! ([`open`]: decompressed and checked against its id, invariant 6). Nothing
//! outside `store/` needs the header size.

use std::ops::Range;

use crate::error::{Error, Result};
use crate::id::ChunkId;

/// Bytes of a plain record header: id, raw and stored lengths, flags.
pub(crate) const HEADER: u64 = 32 + 4 + 4 + 1;

/// Bytes sealing adds: a nonce before, a tag after (`crypto::OVERHEAD`,
/// which builds without the engine do not have).
const SEAL_OVERHEAD: usize = 24 + 16;

/// Bytes of a sealed record header: a plain header, sealed.
pub(crate) const SEALED_HEADER: u64 = HEADER + SEAL_OVERHEAD as u64;

/// The header length of a record with these flags.
pub fn header_len(bits: u8) -> u64 {
    if bits & flags::HIDDEN != 0 {
        SEALED_HEADER
    } else {
        HEADER
    }
}

/// What a sealed record header is bound to.
pub(crate) const HEADER_AAD: &[u8] = b"dd-record-header";

/// The length sealed bytes of `len` are padded to before sealing: Padmé
/// (Nikitin et al., "Reducing Metadata Leakage from Encrypted Files and
/// Communication with PURBs", PETS 2019), which rounds to a multiple of a
/// power of two that grows with the length, wasting at most 12% (about 3%
/// on 64 KiB chunks) and leaving O(log log n) bits of the length to see.
pub fn padded_len(len: u64) -> u64 {
    if len < 2 {
        return len;
    }
    let e = u64::from(len.ilog2());
    let s = u64::from(64 - e.leading_zeros());
    let mask = (1u64 << (e - s)) - 1;
    (len + mask) & !mask
}

/// `data` padded for sealing: a 0x80 byte, then zeros up to
/// [`padded_len`] (ISO/IEC 7816-4 padding, so [`unpad`] finds the end
/// without a length).
pub fn pad(data: &[u8]) -> Vec<u8> {
    let len = padded_len(data.len() as u64 + 1) as usize;
    let mut out = Vec::with_capacity(len + SEAL_OVERHEAD);
    out.extend_from_slice(data);
    out.push(0x80);
    out.resize(len, 0);
    out
}

/// What [`pad`] padded, without its padding; `None` when it is not padded
/// so.
pub fn unpad(padded: &[u8]) -> Option<&[u8]> {
    let end = padded.iter().rposition(|&b| b != 0)?;
    (padded[end] == 0x80).then(|| &padded[..end])
}

/// A plain record header's bytes.
pub fn encode_header(
    id: &ChunkId,
    raw_len: u32,
    stored_len: u32,
    bits: u8,
) -> [u8; HEADER as usize] {
    let mut h = [0u8; HEADER as usize];
    h[..32].copy_from_slice(id.as_bytes());
    h[32..36].copy_from_slice(&raw_len.to_le_bytes());
    h[36..40].copy_from_slice(&stored_len.to_le_bytes());
    h[40] = bits;
    h
}

/// A plain record header read back, as the entry it describes (at
/// `offset`).
pub fn decode_header(h: &[u8], offset: u64) -> Option<PackEntry> {
    let h: &[u8; HEADER as usize] = h.get(..HEADER as usize)?.try_into().ok()?;
    Some(PackEntry {
        id: ChunkId(h[..32].try_into().ok()?),
        offset,
        raw_len: u32::from_le_bytes(h[32..36].try_into().ok()?),
        stored_len: u32::from_le_bytes(h[36..40].try_into().ok()?),
        flags: h[40],
    })
}

/// Record flags.
pub mod flags {
    /// The stored bytes are zstd-compressed.
    pub const ZSTD: u8 = 1;
    /// The object is a tree (directory listing), not file data.
    pub const TREE: u8 = 2;
    /// The stored bytes are sealed (encrypted and authenticated) under the
    /// repository's key, after compression.
    pub const SEALED: u8 = 4;
    /// The record's lengths are hidden: its header is sealed and its
    /// sealed bytes are padded (only with [`SEALED`]).
    pub const HIDDEN: u8 = 8;
    /// All flags this version knows.
    pub const KNOWN: u8 = ZSTD | TREE | SEALED | HIDDEN;
}

/// What an object is, as far as its record says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ObjectKind {
    /// File data (or a blob).
    Data,
    /// A tree: a folder's listing.
    Tree,
}

/// One record's place in a pack and how it is stored: a pack trailer's
/// entry, and (with the pack's id) an index value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PackEntry {
    /// The object.
    pub id: ChunkId,
    /// Where its record starts in the pack.
    pub offset: u64,
    /// Uncompressed length.
    pub raw_len: u32,
    /// Length as stored.
    pub stored_len: u32,
    /// [`flags`] bits.
    pub flags: u8,
}

/// `len` as a record's length field, or an error when an object of
/// `kind` that large does not fit one (4 GiB): never a silently cut length.
pub fn length(len: usize, kind: ObjectKind) -> Result<u32> {
    u32::try_from(len).map_err(|_| {
        let what = match kind {
            ObjectKind::Data => "object",
            // 36 bytes per chunk of every file in one folder.
            ObjectKind::Tree => "folder listing",
        };
        Error::invalid(
            "object size",
            format!("a {what} of {len} bytes is more than a record holds (4 GiB)"),
        )
    })
}

impl PackEntry {
    /// Where the stored bytes lie in the pack.
    pub fn data_range(&self) -> Range<u64> {
        // Saturating: an index value read from a damaged disk must fail a
        // bounds check later, not overflow here.
        let start = self.offset.saturating_add(header_len(self.flags));
        start..start.saturating_add(u64::from(self.stored_len))
    }

    /// The pack offset just past this record.
    pub fn record_end(&self) -> u64 {
        self.data_range().end
    }

    /// The whole record's length, header included.
    pub fn record_len(&self) -> u64 {
        header_len(self.flags) + u64::from(self.stored_len)
    }

    /// Whether the flags are ones this version knows, in a combination a
    /// writer makes.
    pub fn flags_known(&self) -> bool {
        self.flags & !flags::KNOWN == 0
            && (self.flags & flags::HIDDEN == 0 || self.flags & flags::SEALED != 0)
    }

    /// The object's kind.
    pub fn kind(&self) -> ObjectKind {
        if self.flags & flags::TREE != 0 {
            ObjectKind::Tree
        } else {
            ObjectKind::Data
        }
    }

    /// This whole record (header and stored bytes) within `bytes`, which
    /// hold the pack from offset `base` on; an error when they do not
    /// reach that far.
    pub fn record_in<'b>(&self, bytes: &'b [u8], base: u64) -> Result<&'b [u8]> {
        let end = self.record_end();
        self.offset
            .checked_sub(base)
            .zip(end.checked_sub(base))
            .and_then(|(start, end)| {
                bytes.get(usize::try_from(start).ok()?..usize::try_from(end).ok()?)
            })
            .ok_or_else(|| {
                Error::corrupt(
                    "pack record",
                    self.id.to_hex(),
                    format!(
                        "bytes {}..{end} lie outside the {} bytes read from offset {base}",
                        self.offset,
                        bytes.len()
                    ),
                )
            })
    }

    /// This record's stored bytes within `bytes`, which hold the pack from
    /// offset `base` on; an error when they do not reach that far.
    pub fn stored_in<'b>(&self, bytes: &'b [u8], base: u64) -> Result<&'b [u8]> {
        let range = self.data_range();
        range
            .start
            .checked_sub(base)
            .and_then(|start| {
                let start = usize::try_from(start).ok()?;
                bytes.get(start..start.checked_add(self.stored_len as usize)?)
            })
            .ok_or_else(|| {
                Error::corrupt(
                    "pack record",
                    self.id.to_hex(),
                    format!(
                        "bytes {}..{} lie outside the {} bytes read from offset {base}",
                        range.start,
                        range.end,
                        bytes.len()
                    ),
                )
            })
    }
}

#[cfg(feature = "engine")]
pub use codec::{open, open_borrowed, open_header, open_rehashed, seal, seal_for, Stored};

#[cfg(feature = "engine")]
mod codec {
    use std::borrow::Cow;
    use std::cell::RefCell;

    use super::{flags, ObjectKind, PackEntry};
    use crate::crypto::Crypt;
    use crate::error::{Error, Result};
    use crate::format::config::Compression;
    use crate::id::ChunkId;
    use crate::id::PackId;

    /// Bytes sampled to decide whether an object is worth compressing.
    const SAMPLE: usize = 8 * 1024;

    thread_local! {
        /// One zstd context per thread and level: creating a context costs
        /// more than compressing a 64 KiB chunk with it.
        static COMPRESSORS: RefCell<Vec<(i32, zstd::bulk::Compressor<'static>)>> =
            const { RefCell::new(Vec::new()) };
        /// One decompression context per thread, reused across records.
        static DECOMPRESSOR: RefCell<Option<zstd::bulk::Decompressor<'static>>> =
            const { RefCell::new(None) };
    }

    /// zstd-compresses `data` at `level` with this thread's context.
    fn compress(data: &[u8], level: i32) -> std::io::Result<Vec<u8>> {
        COMPRESSORS.with(|cell| {
            let mut list = cell.borrow_mut();
            let slot = if let Some(i) = list.iter().position(|(l, _)| *l == level) {
                i
            } else {
                list.push((level, zstd::bulk::Compressor::new(level)?));
                list.len() - 1
            };
            list[slot].1.compress(data)
        })
    }

    /// Decompresses at most `capacity` bytes with this thread's context.
    fn decompress(stored: &[u8], capacity: usize) -> std::io::Result<Vec<u8>> {
        // The frame says how long it is: a damaged length in the index or
        // the trailer must not size an allocation of up to 4 GiB (times
        // every reader running at once).
        match zstd::zstd_safe::get_frame_content_size(stored) {
            Ok(Some(n)) if n == capacity as u64 => {}
            Ok(Some(n)) => {
                return Err(std::io::Error::other(format!(
                    "the zstd frame holds {n} bytes, the entry says {capacity}"
                )))
            }
            Ok(None) => {}
            Err(_) => return Err(std::io::Error::other("not a zstd frame")),
        }
        DECOMPRESSOR.with(|cell| {
            let mut slot = cell.borrow_mut();
            let context = match slot.as_mut() {
                Some(context) => context,
                None => slot.insert(zstd::bulk::Decompressor::new()?),
            };
            context.decompress(stored, capacity)
        })
    }

    /// False for data that is almost surely incompressible (already
    /// compressed media and archives, encrypted data): a fast zstd pass over
    /// a sample from its middle saves less than 3%. Skipping those saves
    /// most of the cost of compressing them only to throw the result away.
    fn looks_compressible(data: &[u8]) -> bool {
        if data.len() <= 2 * SAMPLE {
            return true;
        }
        let start = data.len() / 2 - SAMPLE / 2;
        let sample = &data[start..start + SAMPLE];
        match compress(sample, 1) {
            Ok(c) => (c.len() as f64) < 0.97 * SAMPLE as f64,
            Err(_) => true,
        }
    }

    /// An object's record flags and stored bytes: compressed with zstd at
    /// `level` when `compression` asks for it and that makes it smaller,
    /// the raw bytes otherwise.
    pub fn seal(
        data: &[u8],
        kind: ObjectKind,
        compression: Compression,
        level: i32,
    ) -> (u8, Cow<'_, [u8]>) {
        let kind_flag = match kind {
            ObjectKind::Data => 0,
            ObjectKind::Tree => flags::TREE,
        };
        if compression == Compression::Zstd && looks_compressible(data) {
            if let Ok(c) = compress(data, level) {
                if c.len() < data.len() {
                    return (kind_flag | flags::ZSTD, Cow::Owned(c));
                }
            }
        }
        (kind_flag, Cow::Borrowed(data))
    }

    /// An object as a record holds it: flags, the header when it is
    /// sealed (a plain one is made from the entry), and the stored bytes.
    #[derive(Debug)]
    pub struct Stored<'a> {
        /// [`flags`] bits.
        pub flags: u8,
        /// The sealed header of a record whose lengths are hidden.
        pub header: Option<Vec<u8>>,
        /// The stored bytes.
        pub bytes: Cow<'a, [u8]>,
    }

    /// [`seal`], then sealed under the repository's key when `crypt` is
    /// on (flag [`flags::SEALED`]), bound to the object's `id` and kind;
    /// with `hide` too, padded before sealing and given a sealed header
    /// (flag [`flags::HIDDEN`]).
    pub fn seal_for<'a>(
        crypt: &Crypt,
        hide: bool,
        id: &ChunkId,
        data: &'a [u8],
        kind: ObjectKind,
        compression: Compression,
        level: i32,
    ) -> Result<Stored<'a>> {
        let (flag, stored) = seal(data, kind, compression, level);
        let Some(key) = crypt.key() else {
            return Ok(Stored {
                flags: flag,
                header: None,
                bytes: stored,
            });
        };
        let aad = crate::crypto::record_aad(id, kind == ObjectKind::Tree);
        if !hide {
            return Ok(Stored {
                flags: flag | flags::SEALED,
                header: None,
                bytes: Cow::Owned(key.seal(&aad, &stored)),
            });
        }
        let bits = flag | flags::SEALED | flags::HIDDEN;
        let sealed = key.seal(&aad, &super::pad(&stored));
        let raw_len = super::length(data.len(), kind)?;
        let stored_len = super::length(sealed.len(), kind)?;
        let header = key.seal(
            super::HEADER_AAD,
            &super::encode_header(id, raw_len, stored_len, bits),
        );
        Ok(Stored {
            flags: bits,
            header: Some(header),
            bytes: Cow::Owned(sealed),
        })
    }

    /// The entry a sealed record header at `offset` of `bytes` (which
    /// start there) describes; `None` when it does not open under the
    /// key or is not one a writer makes.
    pub fn open_header(crypt: &Crypt, bytes: &[u8], offset: u64) -> Option<PackEntry> {
        let sealed = bytes.get(..super::SEALED_HEADER as usize)?;
        let plain = crypt
            .key()?
            .open(super::HEADER_AAD, sealed, "record header", offset)
            .ok()?;
        let entry = super::decode_header(&plain, offset)?;
        let hidden = flags::SEALED | flags::HIDDEN;
        (entry.flags & hidden == hidden && entry.flags_known()).then_some(entry)
    }

    /// The object in a record of `pack`: `stored` opened and decompressed
    /// as its flags say, and checked against its id and length. A plain
    /// record is re-hashed; a sealed one is checked by its tag, which
    /// binds its bytes to its id and kind (only the key's holder could have
    /// made it), so re-hashing would check nothing more against damage.
    /// In an encrypted repository a record that is not sealed is refused,
    /// as is a sealed one elsewhere.
    pub fn open(pack: &PackId, entry: &PackEntry, stored: &[u8], crypt: &Crypt) -> Result<Vec<u8>> {
        open_checked(pack, entry, stored, crypt, !crypt.is_on()).map(Cow::into_owned)
    }

    /// [`open`], without a copy when the record is stored as it is (plain
    /// and not compressed): then its bytes are `stored` itself.
    pub fn open_borrowed<'a>(
        pack: &PackId,
        entry: &PackEntry,
        stored: &'a [u8],
        crypt: &Crypt,
    ) -> Result<Cow<'a, [u8]>> {
        open_checked(pack, entry, stored, crypt, !crypt.is_on())
    }

    /// [`open`], and the bytes re-hashed against the id even when sealed:
    /// `verify --read-data` checks what the writer did too.
    pub fn open_rehashed(
        pack: &PackId,
        entry: &PackEntry,
        stored: &[u8],
        crypt: &Crypt,
    ) -> Result<Vec<u8>> {
        open_checked(pack, entry, stored, crypt, true).map(Cow::into_owned)
    }

    fn open_checked<'a>(
        pack: &PackId,
        entry: &PackEntry,
        stored: &'a [u8],
        crypt: &Crypt,
        rehash: bool,
    ) -> Result<Cow<'a, [u8]>> {
        let id = &entry.id;
        let sealed = entry.flags & flags::SEALED != 0;
        if sealed != crypt.is_on() {
            return Err(Error::corrupt(
                "pack record",
                format!("{id} in pack {pack}"),
                if sealed {
                    "it is encrypted, and this repository is not"
                } else {
                    "it is not encrypted, and this repository is"
                },
            ));
        }
        let aad = crate::crypto::record_aad(id, entry.kind() == ObjectKind::Tree);
        let mut stored = crypt.open(
            &aad,
            stored,
            "pack record",
            format_args!("{id} in pack {pack}"),
        )?;
        if entry.flags & flags::HIDDEN != 0 {
            let len = super::unpad(&stored)
                .ok_or_else(|| {
                    Error::corrupt(
                        "pack record",
                        format!("{id} in pack {pack}"),
                        "its padding is not what a writer makes",
                    )
                })?
                .len();
            stored.to_mut().truncate(len);
        }
        let raw = if entry.flags & flags::ZSTD != 0 {
            Cow::Owned(decompress(&stored, entry.raw_len as usize).map_err(|e| {
                Error::corrupt("chunk", format!("{id} in pack {pack}"), e.to_string())
            })?)
        } else {
            stored
        };
        if !rehash && raw.len() == entry.raw_len as usize {
            return Ok(raw);
        }
        let found = crypt.id_of(&raw);
        if found != *id || raw.len() != entry.raw_len as usize {
            return Err(Error::ChunkMismatch {
                id: *id,
                found,
                location: format!("pack {pack}"),
            });
        }
        Ok(raw)
    }

    #[cfg(test)]
    mod tests {
        use super::*;
        use crate::format::record::{padded_len, SEALED_HEADER, SEAL_OVERHEAD};

        fn entry(data: &[u8], flags: u8, stored: &[u8]) -> PackEntry {
            PackEntry {
                id: ChunkId::of(data),
                offset: 8,
                raw_len: data.len() as u32,
                stored_len: stored.len() as u32,
                flags,
            }
        }

        #[test]
        fn sealed_objects_open_to_their_bytes() {
            let pack = PackId([1; 16]);
            let text = b"the same words again and again ".repeat(100);
            for (data, compression) in [
                (&text[..], Compression::Zstd),
                (&text[..], Compression::None),
                (&b"x"[..], Compression::Zstd),
            ] {
                let (flags, stored) = seal(data, ObjectKind::Tree, compression, 3);
                assert_ne!(flags & flags::TREE, 0);
                let compressed = flags & flags::ZSTD != 0;
                assert_eq!(
                    compressed,
                    compression == Compression::Zstd && data.len() > 1
                );
                let e = entry(data, flags, &stored);
                assert_eq!(open(&pack, &e, &stored, &Crypt::none()).unwrap(), data);
            }
        }

        #[test]
        fn hidden_records_are_padded_to_a_bucket_and_open_to_their_bytes() {
            use crate::crypto::MasterKey;
            let crypt = Crypt::with(MasterKey::generate().unwrap());
            let pack = PackId([5; 16]);
            let text = b"the same words again and again ".repeat(100);
            let mut noise = vec![0u8; 64 * 1024 - 3];
            getrandom::fill(&mut noise).unwrap();
            for data in [&b""[..], b"x", &text, &noise] {
                for kind in [ObjectKind::Data, ObjectKind::Tree] {
                    let id = crypt.id_of(data);
                    let s = seal_for(&crypt, true, &id, data, kind, Compression::Zstd, 3).unwrap();
                    let hidden = flags::SEALED | flags::HIDDEN;
                    assert_eq!(s.flags & hidden, hidden);
                    // What the store sees of the length is a bucket.
                    let padded = (s.bytes.len() - SEAL_OVERHEAD) as u64;
                    assert_eq!(padded_len(padded), padded);
                    let header = s.header.as_deref().unwrap();
                    assert_eq!(header.len() as u64, SEALED_HEADER);
                    let e = open_header(&crypt, header, 8).unwrap();
                    assert_eq!(e.flags, s.flags);
                    assert_eq!((e.id, e.raw_len), (id, data.len() as u32));
                    assert_eq!(e.stored_len as usize, s.bytes.len());
                    assert_eq!(open(&pack, &e, &s.bytes, &crypt).unwrap(), data);
                    assert_eq!(open_rehashed(&pack, &e, &s.bytes, &crypt).unwrap(), data);
                    // Another key opens neither header nor bytes.
                    let other = Crypt::with(MasterKey::generate().unwrap());
                    assert!(open_header(&other, header, 8).is_none());
                    assert!(open(&pack, &e, &s.bytes, &other).is_err());
                }
            }
            // Without `hide`, lengths are what they were.
            let id = crypt.id_of(&text);
            let s = seal_for(
                &crypt,
                false,
                &id,
                &text,
                ObjectKind::Data,
                Compression::Zstd,
                3,
            )
            .unwrap();
            assert!(s.header.is_none());
            assert_eq!(s.flags & flags::HIDDEN, 0);
        }

        #[test]
        fn a_damaged_length_is_refused_before_it_sizes_a_buffer() {
            let pack = PackId([3; 16]);
            let text = b"the same words again and again ".repeat(100);
            let (flags, stored) = seal(&text, ObjectKind::Data, Compression::Zstd, 3);
            let mut e = entry(&text, flags, &stored);
            e.raw_len = u32::MAX;
            let err = open(&pack, &e, &stored, &Crypt::none())
                .unwrap_err()
                .to_string();
            assert!(err.contains("the zstd frame holds 3100 bytes"), "{err}");
        }

        #[test]
        fn incompressible_data_is_stored_as_it_is() {
            let mut noise = vec![0u8; 64 * 1024];
            getrandom::fill(&mut noise).unwrap();
            let (flags, stored) = seal(&noise, ObjectKind::Data, Compression::Zstd, 3);
            assert_eq!(flags, 0);
            assert_eq!(&stored[..], &noise[..]);
        }

        #[test]
        fn a_record_stored_as_it_is_opens_without_a_copy_and_is_still_checked() {
            let pack = PackId([4; 16]);
            let text = b"the same words again and again ".repeat(100);
            let (flags, stored) = seal(&text, ObjectKind::Data, Compression::None, 3);
            let e = entry(&text, flags, &stored);
            let raw = open_borrowed(&pack, &e, &stored, &Crypt::none()).unwrap();
            assert!(matches!(raw, Cow::Borrowed(_)));
            assert_eq!(&raw[..], &text[..]);
            let (flags, packed) = seal(&text, ObjectKind::Data, Compression::Zstd, 3);
            let e = entry(&text, flags, &packed);
            let raw = open_borrowed(&pack, &e, &packed, &Crypt::none()).unwrap();
            assert!(matches!(raw, Cow::Owned(_)));
            assert_eq!(&raw[..], &text[..]);
            let mut damaged = stored.to_vec();
            damaged[10] ^= 1;
            let e = entry(&text, 0, &damaged);
            let err = open_borrowed(&pack, &e, &damaged, &Crypt::none()).unwrap_err();
            assert!(matches!(err, Error::ChunkMismatch { .. }), "{err}");
        }

        #[test]
        fn a_record_that_does_not_hash_to_its_id_is_refused() {
            let pack = PackId([2; 16]);
            let e = entry(b"right", 0, b"wrong");
            let err = open(&pack, &e, b"wrong", &Crypt::none()).unwrap_err();
            assert!(matches!(err, Error::ChunkMismatch { .. }), "{err}");
            let e = entry(b"right", flags::ZSTD, b"not zstd");
            assert!(open(&pack, &e, b"not zstd", &Crypt::none()).is_err());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn padding_rounds_up_to_few_sizes_and_wastes_at_most_an_eighth() {
        let mut buckets = std::collections::BTreeSet::new();
        for len in 0..(1u64 << 17) {
            let p = padded_len(len);
            assert!(p >= len);
            assert_eq!(padded_len(p), p, "{len} pads to {p}, which pads further");
            assert!(p - len <= len / 8, "{len} pads to {p}");
            buckets.insert(p);
        }
        // 32 to 64 KiB, where most compressed 64 KiB chunks fall: 16
        // sizes, 2 KiB apart.
        assert_eq!(buckets.range(1 << 15..1 << 16).count(), 16);
        for data in [&b""[..], b"\x80", b"ab\0\0", &[0x80; 100]] {
            let padded = pad(data);
            assert_eq!(padded.len() as u64, padded_len(data.len() as u64 + 1));
            assert_eq!(unpad(&padded), Some(data));
        }
        assert_eq!(unpad(b"ab\0"), None);
        assert_eq!(unpad(b""), None);
    }

    #[test]
    fn headers_round_trip_and_a_sealed_one_is_its_plain_one_sealed() {
        let id = ChunkId::of(b"abc");
        let h = encode_header(&id, 3, 44, flags::ZSTD);
        let e = decode_header(&h, 8).unwrap();
        assert_eq!(
            (e.id, e.offset, e.raw_len, e.stored_len, e.flags),
            (id, 8, 3, 44, flags::ZSTD)
        );
        assert!(decode_header(&h[..40], 8).is_none());
        #[cfg(feature = "engine")]
        assert_eq!(SEAL_OVERHEAD, crate::crypto::OVERHEAD);
        let mut hidden = e;
        hidden.flags = flags::HIDDEN;
        assert!(!hidden.flags_known(), "hidden but not sealed");
        hidden.flags |= flags::SEALED;
        assert!(hidden.flags_known());
        assert_eq!(hidden.data_range().start, 8 + SEALED_HEADER);
    }

    #[test]
    fn objects_over_four_gib_are_refused_not_truncated() {
        assert_eq!(length(0, ObjectKind::Data).unwrap(), 0);
        assert_eq!(
            length(u32::MAX as usize, ObjectKind::Data).unwrap(),
            u32::MAX
        );
        let err = length(u32::MAX as usize + 1, ObjectKind::Tree).unwrap_err();
        assert!(
            err.to_string()
                .contains("folder listing of 4294967296 bytes"),
            "{err}"
        );
    }

    #[test]
    fn stored_bytes_are_found_only_inside_what_was_read() {
        let e = PackEntry {
            id: ChunkId::of(b"abc"),
            offset: 100,
            raw_len: 3,
            stored_len: 3,
            flags: 0,
        };
        assert_eq!(e.data_range(), 141..144);
        assert_eq!(e.record_end(), 144);
        assert_eq!(e.record_len(), 44);
        let mut bytes = vec![0u8; 44];
        bytes[41..].copy_from_slice(b"abc");
        assert_eq!(e.stored_in(&bytes, 100).unwrap(), b"abc");
        assert!(e.stored_in(&bytes[..43], 100).is_err());
        assert!(e.stored_in(&bytes, 142).is_err());
    }
}
