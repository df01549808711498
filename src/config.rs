//! The repository's `config` file: format version, chunker, compression,
//! pack size, and the shard list with weights.
//!
//! Human-readable JSON, written once at `init` (and rewritten whole, durably,
//! when shards change). Every reader agrees on where new chunks go because
//! the ring is derived from this file alone.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::chunker::ChunkerConfig;
use crate::error::{Error, Result};
use crate::ring::{Ring, ShardId, DEFAULT_VNODES};

/// The format version this build reads and writes.
pub const FORMAT_VERSION: u32 = 1;
/// Default pack target size.
pub const DEFAULT_PACK_SIZE: u32 = 16 * 1024 * 1024;

/// How chunks are stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// Stored as they are.
    None,
    /// zstd per chunk, kept only when it makes the chunk smaller.
    #[default]
    Zstd,
}

/// One shard: where its packs go and how much of the ring it gets.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardConfig {
    /// Stable id, never reused.
    pub id: ShardId,
    /// A directory; relative paths are inside the repository.
    pub path: String,
    /// Relative share of new chunks (0 = receives none).
    pub weight: u32,
}

/// The whole config file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Config {
    /// Must equal [`FORMAT_VERSION`].
    pub format_version: u32,
    /// Random id of this repository.
    pub repository_id: String,
    /// How data is cut.
    pub chunker: ChunkerConfig,
    /// How chunks are stored.
    pub compression: Compression,
    /// zstd level when compressing.
    pub zstd_level: i32,
    /// A pack is sealed once it reaches this many bytes.
    pub pack_size: u32,
    /// Ring points per unit of shard weight.
    pub vnodes: u32,
    /// The shards.
    pub shards: Vec<ShardConfig>,
}

/// Options for a new repository.
#[derive(Clone, Debug)]
pub struct InitOptions {
    /// Chunking mode and sizes.
    pub chunker: ChunkerConfig,
    /// Compression.
    pub compression: Compression,
    /// Shard directories; empty means `shards` shards inside the repository.
    pub shard_paths: Vec<PathBuf>,
    /// Number of shards inside the repository when no paths are given.
    pub shards: u32,
    /// Pack target size in bytes.
    pub pack_size: u32,
}

impl Default for InitOptions {
    fn default() -> Self {
        InitOptions {
            chunker: ChunkerConfig::default(),
            compression: Compression::Zstd,
            shard_paths: Vec::new(),
            shards: 4,
            pack_size: DEFAULT_PACK_SIZE,
        }
    }
}

impl Config {
    /// A config for a new repository, after checking the options.
    pub fn new(opts: &InitOptions) -> Result<Self> {
        opts.chunker.validate()?;
        if !(64 * 1024..=1 << 30).contains(&opts.pack_size) {
            return Err(Error::invalid(
                "pack size",
                "must be between 64 KiB and 1 GiB",
            ));
        }
        let shards: Vec<ShardConfig> = if opts.shard_paths.is_empty() {
            if !(1..=256).contains(&opts.shards) {
                return Err(Error::invalid(
                    "shard count",
                    format!("{} is outside 1..=256", opts.shards),
                ));
            }
            (0..opts.shards)
                .map(|i| ShardConfig {
                    id: ShardId(i),
                    path: format!("shards/{i:02}"),
                    weight: 1,
                })
                .collect()
        } else {
            let mut seen = std::collections::HashSet::new();
            let mut out = Vec::new();
            for (i, p) in opts.shard_paths.iter().enumerate() {
                let abs = std::path::absolute(p).map_err(|e| Error::io(p, e))?;
                let path = abs
                    .to_str()
                    .ok_or_else(|| {
                        Error::invalid("shard path", format!("{} is not UTF-8", abs.display()))
                    })?
                    .to_string();
                if !seen.insert(path.clone()) {
                    return Err(Error::invalid(
                        "shard path",
                        format!("{path} is given twice"),
                    ));
                }
                out.push(ShardConfig {
                    id: ShardId(i as u32),
                    path,
                    weight: 1,
                });
            }
            out
        };
        let mut id = [0u8; 16];
        getrandom::fill(&mut id).expect("the operating system's random source failed");
        Ok(Config {
            format_version: FORMAT_VERSION,
            repository_id: hex::encode(id),
            chunker: opts.chunker,
            compression: opts.compression,
            zstd_level: 3,
            pack_size: opts.pack_size,
            vnodes: DEFAULT_VNODES,
            shards,
        })
    }

    /// The config as written to disk.
    pub fn encode(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec_pretty(self).expect("config always serialises");
        v.push(b'\n');
        v
    }

    /// Parses and checks a config file's bytes. The version is checked
    /// before anything else so a newer format gets a version message, not a
    /// parse error.
    pub fn decode(bytes: &[u8], path: &Path) -> Result<Self> {
        let location = path.display().to_string();
        let value: serde_json::Value = serde_json::from_slice(bytes)
            .map_err(|e| Error::corrupt("config", &location, e.to_string()))?;
        let found = value.get("format_version").and_then(|v| v.as_u64());
        match found {
            Some(v) if v == u64::from(FORMAT_VERSION) => {}
            Some(v) => {
                return Err(Error::FormatVersion {
                    path: path.to_path_buf(),
                    expected: FORMAT_VERSION,
                    found: v.min(u64::from(u32::MAX)) as u32,
                })
            }
            None => return Err(Error::corrupt("config", &location, "no format_version")),
        }
        let config: Config = serde_json::from_value(value)
            .map_err(|e| Error::corrupt("config", &location, e.to_string()))?;
        config
            .chunker
            .validate()
            .map_err(|e| Error::corrupt("config", &location, e.to_string()))?;
        if config.ring().is_none() {
            return Err(Error::corrupt(
                "config",
                &location,
                "no shard has a weight above 0",
            ));
        }
        Ok(config)
    }

    /// The ring for the current shards and weights.
    pub fn ring(&self) -> Option<Ring> {
        let shards: Vec<_> = self.shards.iter().map(|s| (s.id, s.weight)).collect();
        Ring::new(&shards, self.vnodes.clamp(1, 4096))
    }

    /// A shard's directory, resolved against the repository root.
    pub fn shard_dir(&self, root: &Path, shard: &ShardConfig) -> PathBuf {
        root.join(&shard.path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_round_trips_and_a_newer_version_is_named() {
        let c = Config::new(&InitOptions::default()).unwrap();
        let p = Path::new("/r/config");
        assert_eq!(Config::decode(&c.encode(), p).unwrap(), c);
        let newer = String::from_utf8(c.encode())
            .unwrap()
            .replace("\"format_version\": 1", "\"format_version\": 7");
        match Config::decode(newer.as_bytes(), p) {
            Err(Error::FormatVersion {
                expected: 1,
                found: 7,
                ..
            }) => {}
            other => panic!("{other:?}"),
        }
        assert!(Config::decode(b"{not json", p).is_err());
    }
}
