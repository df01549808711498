//! The repository's `config` file: format version, chunker, compression,
//! pack size, and the shard list with weights.
//!
//! Human-readable JSON, written once at `init` (and rewritten whole, durably,
//! when shards change). Every reader agrees on where new chunks go because
//! the ring is derived from this file alone.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::chunker::ChunkerConfig;
use crate::error::{Error, Result};
use crate::ring::{Ring, ShardId, DEFAULT_VNODES};

/// The newest format version this build reads and writes.
///
/// | version | records | index |
/// |---|---|---|
/// | 1 | headers in the clear | segments, compacted into full segments |
/// | 2 | headers sealed, lengths hidden (encrypted only) | the same |
/// | 3 | as 1 | segments, compacted into families |
/// | 4 | as 2 | the same as 3 |
/// | 5 | as 1 | as 3, and records folded into a record catalog |
/// | 6 | as 2 | the same as 5 |
///
/// Families add 2: a repository gains them at its first compaction
/// ([`Config::with_families`]), so a build that would compact it into
/// a full segment refuses it by name instead. The record catalog adds 2
/// more ([`Config::with_catalog`]): a build that knows no catalog would
/// take every folded record for gone, and its `gc` would free their data.
pub const FORMAT_VERSION: u32 = 6;

/// The format of a plain repository, and of an encrypted one made before
/// records hid their lengths, both before families: every build reads it.
pub const PLAIN_FORMAT_VERSION: u32 = 1;

/// The first version whose index is compacted into families.
pub const FAMILIES_FORMAT_VERSION: u32 = 3;

/// The first version whose snapshot records are folded into a catalog.
pub const CATALOG_FORMAT_VERSION: u32 = 5;
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
    /// A directory (relative paths are inside the repository), or an
    /// object-store location `s3://bucket/prefix`.
    pub path: String,
    /// Relative share of new chunks (0 = receives none).
    pub weight: u32,
    /// Object-store settings (`endpoint`, `region`, `retry_timeout`, ...);
    /// they override the `AWS_*` environment variables.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub options: BTreeMap<String, String>,
}

/// The URL scheme of object-store shards.
pub const OBJECT_STORE_SCHEME: &str = "s3://";

/// Splits `s3://bucket/some/prefix` into the bucket and the prefix.
pub fn split_object_url(url: &str) -> Result<(String, String)> {
    let rest = url.strip_prefix(OBJECT_STORE_SCHEME).ok_or_else(|| {
        Error::invalid(
            "object-store URL",
            format!("{url:?} does not start with s3://"),
        )
    })?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    let prefix = prefix.trim_matches('/');
    let bucket_ok = (3..=63).contains(&bucket.len())
        && bucket
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
    if !bucket_ok {
        return Err(Error::invalid(
            "object-store URL",
            format!("{bucket:?} in {url} is not a valid bucket name"),
        ));
    }
    if prefix.split('/').any(|c| c == "." || c == "..") || prefix.contains("//") {
        return Err(Error::invalid(
            "object-store URL",
            format!("the prefix of {url} has empty, '.' or '..' parts"),
        ));
    }
    Ok((bucket.to_string(), prefix.to_string()))
}

impl ShardConfig {
    /// True for an `s3://` shard.
    pub fn is_object_store(&self) -> bool {
        self.path.starts_with(OBJECT_STORE_SCHEME)
    }

    /// Where the shard lives, for people: its URL, or its folder resolved
    /// against the repository root.
    pub fn location(&self, root: &Path) -> String {
        if self.is_object_store() {
            self.path.clone()
        } else {
            root.join(&self.path).display().to_string()
        }
    }

    /// The options as they may be shown: only settings known to be
    /// harmless keep their values; every other one (secrets, tokens,
    /// passwords, the SSE-C key, anything new) shows as `(hidden)`, and an
    /// endpoint loses any `user:password@` it carries.
    pub fn shown_options(&self) -> BTreeMap<String, String> {
        const SHOWN: [&str; 9] = [
            "endpoint",
            "region",
            "allow_http",
            "retry_timeout",
            "max_retries",
            "virtual_hosted_style_request",
            "s3_express",
            "checksum_algorithm",
            "conditional_put",
        ];
        self.options
            .iter()
            .map(|(k, v)| {
                let key = k.to_ascii_lowercase();
                let key = key.strip_prefix("aws_").unwrap_or(&key);
                let shown = if !SHOWN.contains(&key) {
                    "(hidden)".to_string()
                } else if key == "endpoint" {
                    without_userinfo(v)
                } else {
                    v.clone()
                };
                (k.clone(), shown)
            })
            .collect()
    }

    /// The largest weight a shard may have: the ring holds `vnodes ×
    /// weight` points per shard, built at every open.
    pub const MAX_WEIGHT: u32 = 1000;

    /// A shard location as the config stores it: an `s3://` URL with its
    /// trailing slashes removed, or a folder made absolute.
    pub fn normalise(spec: &str) -> Result<String> {
        if spec.starts_with(OBJECT_STORE_SCHEME) {
            split_object_url(spec)?;
            return Ok(spec.trim_end_matches('/').to_string());
        }
        if spec.contains("://") {
            return Err(Error::invalid(
                "shard",
                format!("{spec}: only folders and s3:// locations are supported"),
            ));
        }
        let abs = std::path::absolute(spec).map_err(|e| Error::io(spec, e))?;
        abs.to_str()
            .map(str::to_string)
            .ok_or_else(|| Error::invalid("shard path", format!("{} is not UTF-8", abs.display())))
    }
}

/// The whole config file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Config {
    /// One of the versions [`FORMAT_VERSION`] lists.
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
    /// Whether stored bytes are encrypted (`repokey`: under a master key
    /// kept in `keys/`, wrapped by passwords).
    #[serde(default, skip_serializing_if = "Encryption::is_none")]
    pub encryption: Encryption,
    /// The key files that may open an encrypted repository (their ids),
    /// kept in the sealed config so that a removed key file put back
    /// opens nothing. Empty in repositories from before the list: then
    /// every key file may, until the first `key add`, `key remove` or
    /// `key passwd` writes the list.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keys: Vec<String>,
}

/// How a repository protects what it stores.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Encryption {
    /// Stored as they are, ids are plain SHA-256.
    #[default]
    None,
    /// A random master key in `keys/`, wrapped by passwords: every stored
    /// object sealed with AES-256-GCM under per-object keys, ids keyed
    /// with HMAC-SHA-256.
    Repokey,
}

impl Encryption {
    /// Whether this is [`Encryption::None`].
    pub fn is_none(&self) -> bool {
        *self == Encryption::None
    }
}

/// What a config file says before any key is at hand.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigHead {
    /// At most [`FORMAT_VERSION`].
    pub format_version: u32,
    /// Random id of this repository.
    pub repository_id: String,
    /// Whether the rest is sealed.
    #[serde(default)]
    pub encryption: Encryption,
    /// The whole config, sealed, in hex (encrypted repositories only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sealed: Option<String>,
}

/// What a sealed config is bound to.
#[cfg(feature = "engine")]
const CONFIG_AAD: &[u8] = b"dd-config";

/// Options for a new repository.
#[derive(Clone, Debug)]
pub struct InitOptions {
    /// Chunking mode and sizes.
    pub chunker: ChunkerConfig,
    /// Compression.
    pub compression: Compression,
    /// Shard folders or `s3://bucket/prefix` locations; empty means
    /// `shards` shards inside the repository.
    pub shard_locations: Vec<String>,
    /// Settings for every object-store shard among `shard_locations`.
    pub shard_options: BTreeMap<String, String>,
    /// Number of shards inside the repository when no paths are given.
    pub shards: u32,
    /// Pack target size in bytes.
    pub pack_size: u32,
    /// zstd level, [`ZSTD_LEVELS`] (see docs/performance.md's figures).
    pub zstd_level: i32,
    /// Encryption; `repokey` needs a password (see `OpenOptions`).
    pub encryption: Encryption,
}

/// The zstd levels a repository may use: the fast negative ones (larger,
/// quicker) through 19; 20 to 22 want far more memory per compressor.
pub const ZSTD_LEVELS: std::ops::RangeInclusive<i32> = -7..=19;

/// The zstd level of a new repository: on the corpora of
/// `benches/compare.sh`, within 10% of level 1's time and 2.5 to 5% fewer
/// bytes stored (docs/performance.md has the figures).
pub const DEFAULT_ZSTD_LEVEL: i32 = 3;

/// Refuses a config of another format version, before anything else is
/// read of it (a newer format gets a version message, not a parse error).
fn check_version(value: &serde_json::Value, path: &Path) -> Result<()> {
    match value
        .get("format_version")
        .and_then(serde_json::Value::as_u64)
    {
        Some(v) if (1..=u64::from(FORMAT_VERSION)).contains(&v) => Ok(()),
        Some(v) => Err(Error::FormatVersion {
            path: path.to_path_buf(),
            expected: FORMAT_VERSION,
            found: v.min(u64::from(u32::MAX)) as u32,
        }),
        None => Err(Error::corrupt(
            "config",
            path.display().to_string(),
            "no format_version",
        )),
    }
}

impl Default for InitOptions {
    fn default() -> Self {
        InitOptions {
            chunker: ChunkerConfig::default(),
            compression: Compression::Zstd,
            shard_locations: Vec::new(),
            shard_options: BTreeMap::new(),
            shards: 4,
            pack_size: DEFAULT_PACK_SIZE,
            zstd_level: DEFAULT_ZSTD_LEVEL,
            encryption: Encryption::None,
        }
    }
}

/// Refuses a pack size outside 64 KiB..=1 GiB (a pack is built in memory).
fn check_pack_size(size: u32) -> Result<()> {
    if (64 * 1024..=1 << 30).contains(&size) {
        Ok(())
    } else {
        Err(Error::invalid(
            "pack size",
            format!("{size} bytes is not between 64 KiB and 1 GiB"),
        ))
    }
}

/// Refuses a zstd level outside [`ZSTD_LEVELS`].
fn check_level(level: i32) -> Result<()> {
    if ZSTD_LEVELS.contains(&level) {
        Ok(())
    } else {
        Err(Error::invalid(
            "compression level",
            format!(
                "{level} is outside {}..={}",
                ZSTD_LEVELS.start(),
                ZSTD_LEVELS.end()
            ),
        ))
    }
}

impl Config {
    /// A config for a new repository, after checking the options.
    pub fn new(opts: &InitOptions) -> Result<Self> {
        opts.chunker.validate()?;
        check_level(opts.zstd_level)?;
        check_pack_size(opts.pack_size)?;
        let shards: Vec<ShardConfig> = if opts.shard_locations.is_empty() {
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
                    options: BTreeMap::new(),
                })
                .collect()
        } else {
            let mut seen = std::collections::HashSet::new();
            let mut out = Vec::new();
            for (i, spec) in opts.shard_locations.iter().enumerate() {
                let path = ShardConfig::normalise(spec)?;
                let remote = path.starts_with(OBJECT_STORE_SCHEME);
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
                    options: if remote {
                        opts.shard_options.clone()
                    } else {
                        BTreeMap::new()
                    },
                });
            }
            out
        };
        if !opts.shard_options.is_empty() && !shards.iter().any(ShardConfig::is_object_store) {
            return Err(Error::invalid(
                "shard options",
                "they are for s3:// shards, and none is given",
            ));
        }
        let mut id = [0u8; 16];
        getrandom::fill(&mut id).expect("the operating system's random source failed");
        // An encrypted repository's chunker is keyed (the seed is sealed
        // with the config), so that chunk sizes say nothing of contents:
        // by a fresh seed, or the one given (another encrypted
        // repository's, shared so that copies need no re-chunking). A
        // plain config would publish a given seed.
        let chunker = match (opts.encryption.is_none(), opts.chunker.seed()) {
            (true, 0) => opts.chunker,
            (true, _) => {
                return Err(Error::invalid(
                    "chunker",
                    "a keyed chunker's seed is for encrypted repositories: a plain config \
                     would publish it (give --encryption repokey)",
                ))
            }
            (false, 0) => opts.chunker.with_random_seed()?,
            (false, _) => opts.chunker,
        };
        // Records hide their lengths only in an encrypted repository; a
        // new one's index is compacted into families, and its records
        // into a catalog, from the start.
        let format_version = if opts.encryption.is_none() {
            CATALOG_FORMAT_VERSION
        } else {
            FORMAT_VERSION
        };
        Ok(Config {
            format_version,
            repository_id: hex::encode(id),
            chunker,
            compression: opts.compression,
            zstd_level: opts.zstd_level,
            pack_size: opts.pack_size,
            vnodes: DEFAULT_VNODES,
            shards,
            encryption: opts.encryption,
            keys: Vec::new(),
        })
    }

    /// Whether records hide their lengths (sealed headers, padded bytes):
    /// encrypted repositories of format 2 on.
    pub fn hides_lengths(&self) -> bool {
        !self.encryption.is_none() && matches!(self.format_version, 2 | 4 | 6)
    }

    /// Whether the index is compacted into families (format 3 on).
    pub fn has_families(&self) -> bool {
        self.format_version >= FAMILIES_FORMAT_VERSION
    }

    /// This config at the version that adds families to its own.
    #[must_use]
    pub fn with_families(&self) -> Config {
        let mut config = self.clone();
        if !config.has_families() {
            config.format_version += 2;
        }
        config
    }

    /// Whether snapshot records are folded into a catalog (format 5 on).
    pub fn has_catalog(&self) -> bool {
        self.format_version >= CATALOG_FORMAT_VERSION
    }

    /// This config at the version that adds families and the record
    /// catalog to its own.
    #[must_use]
    pub fn with_catalog(&self) -> Config {
        let mut config = self.with_families();
        if !config.has_catalog() {
            config.format_version += 2;
        }
        config
    }

    /// The config as written to disk.
    pub fn encode(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec_pretty(self).expect("config always serialises");
        v.push(b'\n');
        v
    }

    /// The config file's bytes: the config itself, or for an encrypted
    /// repository its [`ConfigHead`] with the whole config sealed inside.
    #[cfg(feature = "engine")]
    pub fn encode_for(&self, crypt: &crate::crypto::Crypt) -> Vec<u8> {
        if !crypt.is_on() {
            return self.encode();
        }
        let head = ConfigHead {
            format_version: self.format_version,
            repository_id: self.repository_id.clone(),
            encryption: self.encryption,
            sealed: Some(hex::encode(crypt.seal(CONFIG_AAD, &self.encode()))),
        };
        let mut v = serde_json::to_vec_pretty(&head).expect("a head always serialises");
        v.push(b'\n');
        v
    }

    /// What a config file says before any key: its version (checked),
    /// the repository's id, and whether it is encrypted.
    pub fn head(bytes: &[u8], path: &Path) -> Result<ConfigHead> {
        let location = path.display().to_string();
        let value: serde_json::Value = serde_json::from_slice(bytes)
            .map_err(|e| Error::corrupt("config", &location, e.to_string()))?;
        check_version(&value, path)?;
        serde_json::from_value(value)
            .map_err(|e| Error::corrupt("config", &location, e.to_string()))
    }

    /// Parses and checks a config file's bytes, opening a sealed one with
    /// `crypt` (whose id it must name).
    #[cfg(feature = "engine")]
    pub fn open(bytes: &[u8], path: &Path, crypt: &crate::crypto::Crypt) -> Result<Self> {
        let head = Self::head(bytes, path)?;
        let location = path.display().to_string();
        let Some(sealed) = head.sealed else {
            if crypt.is_on() || head.encryption != Encryption::None {
                return Err(Error::corrupt(
                    "config",
                    &location,
                    "it says the repository is encrypted, but it is not sealed",
                ));
            }
            return Self::decode(bytes, path);
        };
        if !crypt.is_on() {
            // A head edited to say "none" must not make a sealed config
            // (or whatever is planted in its place) read as a plain one.
            return Err(Error::corrupt(
                "config",
                &location,
                "it is sealed, but its head says the repository is not encrypted",
            ));
        }
        let sealed = hex::decode(sealed)
            .map_err(|_| Error::corrupt("config", &location, "its sealed part is not hex"))?;
        let plain = crypt.open(CONFIG_AAD, &sealed, "config", &location)?;
        let config = Self::decode(&plain, path)?;
        if config.repository_id != head.repository_id || config.encryption != head.encryption {
            return Err(Error::corrupt(
                "config",
                &location,
                "its sealed part names another repository",
            ));
        }
        Ok(config)
    }

    /// Parses and checks a config file's bytes. The version is checked
    /// before anything else so a newer format gets a version message, not a
    /// parse error.
    pub fn decode(bytes: &[u8], path: &Path) -> Result<Self> {
        let location = path.display().to_string();
        let value: serde_json::Value = serde_json::from_slice(bytes)
            .map_err(|e| Error::corrupt("config", &location, e.to_string()))?;
        check_version(&value, path)?;
        if value.get("sealed").is_some() {
            return Err(Error::corrupt(
                "config",
                &location,
                "it is sealed: the repository is encrypted",
            ));
        }
        let config: Config = serde_json::from_value(value)
            .map_err(|e| Error::corrupt("config", &location, e.to_string()))?;
        // What init refuses is refused here too: a config is read from a
        // store that anyone with write access may have edited.
        config
            .chunker
            .validate()
            .and_then(|()| check_level(config.zstd_level))
            .and_then(|()| check_pack_size(config.pack_size))
            .map_err(|e| Error::corrupt("config", &location, e.to_string()))?;
        let mut ids = std::collections::HashSet::new();
        if let Some(s) = config.shards.iter().find(|s| !ids.insert(s.id)) {
            return Err(Error::corrupt(
                "config",
                &location,
                format!("shard {} is listed twice", s.id),
            ));
        }
        if let Some(s) = config
            .shards
            .iter()
            .find(|s| s.weight > ShardConfig::MAX_WEIGHT)
        {
            return Err(Error::corrupt(
                "config",
                &location,
                format!(
                    "shard {} has weight {}, more than {}",
                    s.id,
                    s.weight,
                    ShardConfig::MAX_WEIGHT
                ),
            ));
        }
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
}

/// `url` without a `user:password@` part.
fn without_userinfo(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let host_end = rest.find('/').unwrap_or(rest.len());
            match rest[..host_end].rfind('@') {
                Some(at) => format!("{scheme}://{}", &rest[at + 1..]),
                None => url.to_string(),
            }
        }
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(feature = "engine")]
    #[test]
    fn a_sealed_config_opens_only_with_its_key_and_never_as_plain() {
        use crate::crypto::{Crypt, MasterKey};
        let path = Path::new("config");
        let config = Config::new(&InitOptions {
            encryption: Encryption::Repokey,
            ..InitOptions::default()
        })
        .unwrap();
        let crypt = Crypt::with(MasterKey::generate().unwrap());
        let bytes = config.encode_for(&crypt);
        assert_eq!(Config::open(&bytes, path, &crypt).unwrap(), config);
        assert!(Config::decode(&bytes, path).is_err());
        let other = Crypt::with(MasterKey::generate().unwrap());
        assert!(Config::open(&bytes, path, &other).is_err());
        // Its head edited to say "none": still not read as plain.
        let edited = String::from_utf8(bytes)
            .unwrap()
            .replace("\"repokey\"", "\"none\"");
        let err = Config::open(edited.as_bytes(), path, &Crypt::none()).unwrap_err();
        assert!(err.to_string().contains("sealed"), "{err}");
    }

    #[test]
    fn config_round_trips_and_a_newer_version_is_named() {
        let c = Config::new(&InitOptions::default()).unwrap();
        let p = Path::new("/r/config");
        assert_eq!(Config::decode(&c.encode(), p).unwrap(), c);
        let newer = String::from_utf8(c.encode())
            .unwrap()
            .replace("\"format_version\": 5", "\"format_version\": 7");
        match Config::decode(newer.as_bytes(), p) {
            Err(Error::FormatVersion {
                expected: 6,
                found: 7,
                ..
            }) => {}
            other => panic!("{other:?}"),
        }
        assert!(Config::decode(b"{not json", p).is_err());
    }

    #[test]
    fn only_harmless_settings_are_shown_and_endpoints_lose_their_passwords() {
        let mut s = ShardConfig {
            id: ShardId(1),
            path: "s3://bkt/p".into(),
            weight: 1,
            options: BTreeMap::new(),
        };
        for (k, v) in [
            ("aws_sse_customer_key_base64", "c2VjcmV0"),
            ("AWS_REGION", "eu-west-1"),
            ("endpoint", "https://user:pw@minio.example:9000/x"),
            ("some_future_setting", "x"),
        ] {
            s.options.insert(k.into(), v.into());
        }
        let shown = s.shown_options();
        assert_eq!(shown["aws_sse_customer_key_base64"], "(hidden)");
        assert_eq!(shown["some_future_setting"], "(hidden)");
        assert_eq!(shown["AWS_REGION"], "eu-west-1");
        assert_eq!(shown["endpoint"], "https://minio.example:9000/x");
    }

    #[test]
    fn shard_secrets_are_hidden_when_shown() {
        let mut s = ShardConfig {
            id: ShardId(3),
            path: "s3://bkt/p".into(),
            weight: 1,
            options: BTreeMap::new(),
        };
        for (k, v) in [
            ("endpoint", "http://127.0.0.1:9"),
            ("secret_access_key", "hunter2"),
            ("AWS_SESSION_TOKEN", "tok"),
        ] {
            s.options.insert(k.into(), v.into());
        }
        let shown = s.shown_options();
        assert_eq!(shown["endpoint"], "http://127.0.0.1:9");
        assert_eq!(shown["secret_access_key"], "(hidden)");
        assert_eq!(shown["AWS_SESSION_TOKEN"], "(hidden)");
        assert!(s.is_object_store());
        assert_eq!(s.location(Path::new("/r")), "s3://bkt/p");
    }
}
