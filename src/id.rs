//! Ids: of content (the 32-byte SHA-256 of an object's raw bytes), packs and shards.
//!
//! Owns the id types: [`ChunkId`] and [`SnapshotId`], their hex form and the one function that
//! computes them, [`PackId`], a pack's random name, and [`ShardId`]. Does not know where chunks live. Invariant: an id is always the
//! SHA-256 of the uncompressed bytes, so any reader can check what it got.

use std::fmt;
use std::str::FromStr;

use sha2::{Digest, Sha256};

/// A string that is not an id: what parsing one says (the crate's
/// [`Error`](crate::Error) takes it, with `?`, as an invalid value).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseIdError {
    /// What was being read (`"chunk id"`, `"snapshot id"`).
    pub what: &'static str,
    /// Why it is not one.
    pub reason: String,
}

impl fmt::Display for ParseIdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid {}: {}", self.what, self.reason)
    }
}

impl std::error::Error for ParseIdError {}

/// A 32-byte SHA-256 content id type: hex form, parsing, serde as hex.
macro_rules! content_id {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub [u8; 32]);

        impl $name {
            /// Hashes `data` (uses SHA-NI where the CPU has it).
            pub fn of(data: &[u8]) -> Self {
                $name(Sha256::digest(data).into())
            }

            /// The raw 32 bytes.
            pub fn as_bytes(&self) -> &[u8; 32] {
                &self.0
            }

            /// Lower-case hex, 64 characters.
            pub fn to_hex(&self) -> String {
                hex::encode(self.0)
            }

            /// Reads an id from exactly 32 bytes.
            pub fn from_slice(bytes: &[u8]) -> Option<Self> {
                Some($name(bytes.try_into().ok()?))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.to_hex())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), &self.to_hex()[..16])
            }
        }

        impl FromStr for $name {
            type Err = ParseIdError;

            fn from_str(s: &str) -> std::result::Result<Self, ParseIdError> {
                let mut out = [0u8; 32];
                hex::decode_to_slice(s, &mut out).map_err(|e| ParseIdError {
                    what: $what,
                    reason: format!("{s:?} is not 64 hex digits: {e}"),
                })?;
                Ok($name(out))
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
                s.serialize_str(&self.to_hex())
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

content_id!(
    /// The SHA-256 of a chunk's (or tree's, or blob's) raw bytes.
    ChunkId,
    "chunk id"
);

content_id!(
    /// A snapshot's id: the SHA-256 of its record's bytes. A type of its
    /// own, so a snapshot id is never looked up as a chunk or the reverse.
    SnapshotId,
    "snapshot id"
);

impl ChunkId {
    /// The first 8 bytes as a big-endian integer: the id's position on the ring.
    pub fn ring_position(&self) -> u64 {
        let mut first = [0u8; 8];
        first.copy_from_slice(&self.0[..8]);
        u64::from_be_bytes(first)
    }
}

/// A pack's name: 16 random bytes, shown as 32 hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PackId(pub [u8; 16]);

impl PackId {
    /// A fresh random id (never derived from content, so a retried write of
    /// different bytes can never collide with an existing pack).
    pub fn random() -> Self {
        let mut bytes = [0u8; 16];
        getrandom::fill(&mut bytes).expect("the operating system's random source failed");
        PackId(bytes)
    }

    /// Hex form.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parses [`to_hex`](Self::to_hex)'s form.
    pub fn from_hex(hex: &str) -> Option<Self> {
        let mut id = [0u8; 16];
        hex::decode_to_slice(hex, &mut id).ok()?;
        Some(PackId(id))
    }

    /// The pack's key inside its shard: spread over 256 folders.
    pub fn key(&self) -> String {
        let hex = self.to_hex();
        format!("{}/{hex}.pack", &hex[..2])
    }

    /// Parses a key made by [`PackId::key`], and nothing else: a file of
    /// the right name in the wrong place is not a pack of ours.
    pub fn from_key(key: &str) -> Option<Self> {
        let name = key.strip_suffix(".pack")?;
        let (folder, hex) = name.split_once('/')?;
        let mut bytes = [0u8; 16];
        hex::decode_to_slice(hex, &mut bytes).ok()?;
        let id = PackId(bytes);
        (folder == &id.to_hex()[..2] && hex == id.to_hex()).then_some(id)
    }
}

impl std::fmt::Display for PackId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl std::fmt::Debug for PackId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PackId({})", self.to_hex())
    }
}

/// A shard's stable identity: never reused, survives renames of its path.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(transparent)]
pub struct ShardId(pub u32);

impl std::fmt::Display for ShardId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:02}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_of_abc_matches_the_standard_vector() {
        assert_eq!(
            ChunkId::of(b"abc").to_hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn hex_round_trips_and_bad_hex_is_refused() {
        let id = ChunkId::of(b"x");
        assert_eq!(id.to_hex().parse::<ChunkId>().unwrap(), id);
        assert!("zz".parse::<ChunkId>().is_err());
        assert!("ab".repeat(31).parse::<ChunkId>().is_err());
        let snapshot = SnapshotId::of(b"x");
        assert_eq!(snapshot.to_hex().parse::<SnapshotId>().unwrap(), snapshot);
        assert_eq!(
            format!("{snapshot:?}"),
            format!("SnapshotId({})", &id.to_hex()[..16])
        );
    }
}
