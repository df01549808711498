//! A [`PackStore`] and [`MetaStore`] over a prefix of an S3-compatible
//! object store (AWS S3, MinIO, Garage, Ceph RGW, s3s-fs, ...), through the
//! `object_store` crate.
//!
//! The store is the distributed engine; this file only maps the two
//! traits' calls onto it:
//!
//! - `create` is a create-only PUT (`If-None-Match: *`). Pack keys are
//!   random, so a key that already exists means something is wrong, never
//!   that a value should be replaced. An S3 PUT is atomic: a reader sees the
//!   whole object or none, so nothing is left to sweep after a crash.
//!   `put` (metadata) is a plain PUT, which replaces.
//! - `get_range` is a ranged GET, so restore fetches only the records it
//!   needs out of a pack.
//! - Transient failures (connection refused or reset, 5xx, throttling) are
//!   retried by `object_store` with exponential backoff, for at most
//!   `max_retries` tries within `retry_timeout`; after that the error names
//!   the store and what was being done. The caller commits nothing to the
//!   index for a pack whose upload failed.
//!
//! Settings come from the standard `AWS_*` environment variables first
//! (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`,
//! `AWS_ENDPOINT`, `AWS_ALLOW_HTTP`, ...), then from the shard's options in
//! the repository config, which win. Secrets are never printed:
//! [`ShardConfig::shown_options`](crate::format::config::ShardConfig::shown_options)
//! hides them wherever options are shown, and this type's `Debug` shows only
//! the URL.

use std::collections::BTreeMap;
use std::future::Future;
use std::str::FromStr;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use futures::TryStreamExt;
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::path::Path as StorePath;
use object_store::{BackoffConfig, ObjectStore, PutMode, PutOptions, PutPayload, RetryConfig};

use crate::error::{Error, Result};
use crate::store::{check_key, MetaStore, PackStore};

/// The URL scheme of object-store shards.
pub const SCHEME: &str = "s3://";

/// Options this crate reads itself; every other option is handed to
/// `object_store`'s S3 builder (`endpoint`, `region`, `allow_http`, ...).
const RETRY_TIMEOUT: &str = "retry_timeout";
const MAX_RETRIES: &str = "max_retries";

/// One runtime for every object-store call in the process. The engine is
/// synchronous (rayon threads), so each call blocks on its future here.
fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("dedup-s3")
            .enable_all()
            .build()
            .expect("cannot start the object-store runtime")
    })
}

/// Runs `fut` to its end on the object-store runtime.
fn block_on<T>(fut: impl Future<Output = T>) -> T {
    runtime().block_on(fut)
}

pub use crate::format::config::split_object_url as parse_url;

/// First wait before [`ObjectStoreBackend::upload`] tries again.
const INITIAL_BACKOFF: Duration = Duration::from_millis(100);
/// Longest wait between two tries.
const MAX_BACKOFF: Duration = Duration::from_secs(15);

/// A backend over `s3://bucket/prefix`.
pub struct ObjectStoreBackend {
    url: String,
    prefix: String,
    store: Arc<dyn ObjectStore>,
    /// How hard uploads are retried (the client retries other requests).
    retry: RetryConfig,
}

impl std::fmt::Debug for ObjectStoreBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The store's own Debug would show credentials.
        f.debug_struct("ObjectStoreBackend")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl ObjectStoreBackend {
    /// Configures a client for `url`; nothing is contacted yet.
    pub fn new(url: &str, options: &BTreeMap<String, String>) -> Result<Self> {
        let (bucket, prefix) = parse_url(url)?;
        let mut builder = AmazonS3Builder::from_env().with_bucket_name(&bucket);
        let mut retry = RetryConfig {
            backoff: BackoffConfig {
                init_backoff: INITIAL_BACKOFF,
                max_backoff: MAX_BACKOFF,
                base: 2.0,
            },
            max_retries: 10,
            retry_timeout: Duration::from_secs(180),
        };
        for (key, value) in options {
            match key.as_str() {
                RETRY_TIMEOUT => {
                    retry.retry_timeout = humantime::parse_duration(value).map_err(|e| {
                        Error::invalid("shard option", format!("{key}={value}: {e}"))
                    })?;
                }
                MAX_RETRIES => {
                    retry.max_retries = value.parse().map_err(|e| {
                        Error::invalid("shard option", format!("{key}={value}: {e}"))
                    })?;
                }
                _ => {
                    let k =
                        AmazonS3ConfigKey::from_str(&key.to_ascii_lowercase()).map_err(|_| {
                            Error::invalid("shard option", format!("unknown option {key:?}"))
                        })?;
                    if k == AmazonS3ConfigKey::Bucket {
                        return Err(Error::invalid(
                            "shard option",
                            format!("{key}: the bucket is the first part of the shard's URL"),
                        ));
                    }
                    builder = builder.with_config(k, value);
                }
            }
        }
        // An endpoint given as http:// is a deliberate choice (a store on
        // this machine or network); allow it without a second setting.
        let endpoint = builder.get_config_value(&AmazonS3ConfigKey::Endpoint);
        if endpoint.is_some_and(|e| e.starts_with("http://")) {
            builder = builder.with_allow_http(true);
        }
        let store = builder
            .with_retry(retry.clone())
            .build()
            .map_err(|e| store_error(url, "cannot configure", &e))?;
        Ok(ObjectStoreBackend {
            url: url.trim_end_matches('/').to_string(),
            prefix,
            store: Arc::new(store),
            retry,
        })
    }

    fn path(&self, key: &str) -> Result<StorePath> {
        check_key(key)?;
        let full = if self.prefix.is_empty() {
            key.to_string()
        } else {
            format!("{}/{key}", self.prefix)
        };
        StorePath::parse(&full).map_err(|e| Error::invalid("storage key", e.to_string()))
    }

    /// Maps a failed call on `key` to the crate's error.
    fn error(&self, doing: &str, key: &str, err: object_store::Error) -> Error {
        match err {
            object_store::Error::NotFound { .. } => Error::io(
                format!("{}/{key}", self.url),
                std::io::Error::new(std::io::ErrorKind::NotFound, "no such object"),
            ),
            e => store_error(&self.url, &format!("{doing} {key}"), &e),
        }
    }
}

fn store_error(url: &str, doing: &str, err: &object_store::Error) -> Error {
    Error::ObjectStore {
        location: url.to_string(),
        message: format!("{doing}: {err}"),
    }
}

impl ObjectStoreBackend {
    /// Uploads `data` to `key`: created only if absent (`PutMode::Create`)
    /// or replacing (`PutMode::Overwrite`).
    fn upload(&self, key: &str, data: &[u8], mode: PutMode) -> Result<()> {
        let path = self.path(key)?;
        let opts = PutOptions {
            mode,
            ..Default::default()
        };
        let payload = PutPayload::from(data.to_vec());
        // `object_store` retries a create-only PUT only for some failures
        // (refused or reset connections, 5xx); one that timed out or was
        // interrupted is retried here, within the same time budget. When an
        // earlier attempt landed but its answer was lost, a retry finds the
        // object there, and its length tells whether it is this pack (keys
        // are random 128-bit ids, so nothing else has this name).
        let started = Instant::now();
        let mut backoff = INITIAL_BACKOFF;
        for attempt in 0.. {
            let result = block_on(self.store.put_opts(&path, payload.clone(), opts.clone()));
            let Err(err) = result else {
                return Ok(());
            };
            match err {
                // Also on the first call: the client's own retries can
                // meet an earlier attempt that landed unanswered.
                object_store::Error::AlreadyExists { .. } => {
                    let landed = self.size(key).ok() == Some(data.len() as u64);
                    return if landed {
                        Ok(())
                    } else {
                        Err(Error::ObjectStore {
                            location: self.url.clone(),
                            message: format!(
                                "cannot upload {key}: an object with that name already exists"
                            ),
                        })
                    };
                }
                object_store::Error::Generic { .. }
                    if attempt < self.retry.max_retries
                        && started.elapsed() + backoff < self.retry.retry_timeout =>
                {
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
                e => return Err(self.error("cannot upload", key, e)),
            }
        }
        unreachable!("the loop returns")
    }

    /// Creates `key` holding `data` only if nothing is there
    /// (`If-None-Match: *`): `Ok(true)` when created, `Ok(false)` when an
    /// object was there. A store that ignores the condition replaces the
    /// object and answers `true`, so callers stay correct without it.
    pub fn create_if_absent(&self, key: &str, data: &[u8]) -> Result<bool> {
        let path = self.path(key)?;
        let opts = PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        let payload = PutPayload::from(data.to_vec());
        match block_on(self.store.put_opts(&path, payload, opts)) {
            Ok(_) => Ok(true),
            Err(object_store::Error::AlreadyExists { .. }) => Ok(false),
            Err(e) => Err(self.error("cannot create", key, e)),
        }
    }

    fn read(&self, key: &str) -> Result<Vec<u8>> {
        let path = self.path(key)?;
        block_on(async {
            let got = self.store.get(&path).await?;
            got.bytes().await
        })
        // Without a copy when the client gathered the body into one buffer.
        .map(Vec::from)
        .map_err(|e| self.error("cannot read", key, e))
    }

    fn keys(&self, prefix: &str) -> Result<Vec<String>> {
        Ok(self.listing(prefix)?.into_iter().map(|(k, _)| k).collect())
    }

    /// Every key under `prefix`, with the store's time of its last write.
    /// Only the folder `prefix` names (up to its last `/`) is listed, so
    /// that listing `segments/` does not walk every pack.
    pub fn listing(&self, prefix: &str) -> Result<Vec<(String, std::time::SystemTime)>> {
        let folder = prefix.rfind('/').map_or("", |i| &prefix[..i]);
        let root = match (self.prefix.is_empty(), folder.is_empty()) {
            (true, true) => None,
            (true, false) => Some(StorePath::from(folder)),
            (false, true) => Some(StorePath::from(self.prefix.as_str())),
            (false, false) => Some(StorePath::from(format!("{}/{folder}", self.prefix))),
        };
        let metas: Vec<_> = block_on(self.store.list(root.as_ref()).try_collect())
            .map_err(|e| self.error("cannot list", prefix, e))?;
        let strip = if self.prefix.is_empty() {
            String::new()
        } else {
            format!("{}/", self.prefix)
        };
        Ok(metas
            .into_iter()
            .filter_map(|m| {
                let key = m.location.as_ref().strip_prefix(strip.as_str())?;
                key.starts_with(prefix)
                    .then(|| (key.to_string(), m.last_modified.into()))
            })
            .collect())
    }

    fn remove(&self, key: &str) -> Result<()> {
        let path = self.path(key)?;
        match block_on(self.store.delete(&path)) {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.error("cannot delete", key, e)),
        }
    }
}

impl PackStore for ObjectStoreBackend {
    fn location(&self) -> String {
        self.url.clone()
    }

    fn create(&self, key: &str, data: &[u8]) -> Result<()> {
        self.upload(key, data, PutMode::Create)
    }

    fn get(&self, key: &str) -> Result<Vec<u8>> {
        self.read(key)
    }

    fn get_range(&self, key: &str, offset: u64, len: usize) -> Result<Vec<u8>> {
        let path = self.path(key)?;
        let range = offset..offset + len as u64;
        let bytes = block_on(self.store.get_range(&path, range))
            .map_err(|e| self.error("cannot read", key, e))?;
        if bytes.len() != len {
            return Err(Error::io(
                format!("{}/{key}", self.url),
                std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!("asked for {len} bytes at {offset}, got {}", bytes.len()),
                ),
            ));
        }
        Ok(Vec::from(bytes))
    }

    fn size(&self, key: &str) -> Result<u64> {
        let path = self.path(key)?;
        block_on(self.store.head(&path))
            .map(|m| m.size)
            .map_err(|e| self.error("cannot stat", key, e))
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>> {
        self.keys(prefix)
    }

    fn delete(&self, key: &str) -> Result<()> {
        self.remove(key)
    }
}

impl MetaStore for ObjectStoreBackend {
    fn location(&self) -> String {
        self.url.clone()
    }

    fn create_if_absent(&self, key: &str, data: &[u8]) -> Result<bool> {
        ObjectStoreBackend::create_if_absent(self, key, data)
    }

    fn put(&self, key: &str, data: &[u8]) -> Result<()> {
        self.upload(key, data, PutMode::Overwrite)
    }

    fn get(&self, key: &str) -> Result<Vec<u8>> {
        self.read(key)
    }

    fn get_range(&self, key: &str, offset: u64, len: usize) -> Result<Vec<u8>> {
        PackStore::get_range(self, key, offset, len)
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>> {
        self.keys(prefix)
    }

    fn written(&self, prefix: &str) -> Result<Vec<(String, std::time::SystemTime)>> {
        self.listing(prefix)
    }

    fn delete(&self, key: &str) -> Result<()> {
        self.remove(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_into_bucket_and_prefix() {
        assert_eq!(
            parse_url("s3://my-bucket/a/b/").unwrap(),
            ("my-bucket".into(), "a/b".into())
        );
        assert_eq!(
            parse_url("s3://bkt").unwrap(),
            ("bkt".into(), String::new())
        );
        for bad in [
            "http://x/y",
            "s3://",
            "s3://Upper/x",
            "s3://b/../x",
            "s3://bkt/a//b",
        ] {
            assert!(parse_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn secrets_stay_out_of_debug_and_unknown_options_are_refused() {
        let mut o = BTreeMap::new();
        o.insert("endpoint".to_string(), "http://127.0.0.1:9".to_string());
        o.insert("access_key_id".to_string(), "AKID".to_string());
        o.insert("secret_access_key".to_string(), "hunter2".to_string());
        let backend = ObjectStoreBackend::new("s3://bkt/p", &o).unwrap();
        assert!(!format!("{backend:?}").contains("hunter2"));
        o.insert("colour".to_string(), "blue".to_string());
        let err = ObjectStoreBackend::new("s3://bkt/p", &o).unwrap_err();
        assert!(err.to_string().contains("colour"), "{err}");
        o.remove("colour");
        o.insert("bucket".to_string(), "other".to_string());
        let err = ObjectStoreBackend::new("s3://bkt/p", &o).unwrap_err();
        assert!(err.to_string().contains("shard's URL"), "{err}");
    }
}
