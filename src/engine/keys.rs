//! An encrypted repository's keys: the key files in the home's `keys/`,
//! unlocking the master key with a password, managing the key files
//! (`key list | add | remove | passwd`), and the view of the home's files
//! that seals snapshot records and index segments.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use zeroize::Zeroizing;

use crate::catalog::segment;
use crate::crypto::{Crypt, KdfParams, KeyFile, MasterKey};
use crate::engine::{Engine, CONFIG};
use crate::error::{Error, Result};
use crate::format::config::{Config, ConfigHead, Encryption};
use crate::format::snapshot::SnapshotRecord;
use crate::store::MetaStore;

/// Where key files live in the home.
pub(crate) const KEYS: &str = "keys/";
/// How long tuning aims for one key derivation to take.
pub const KDF_TARGET: Duration = Duration::from_millis(500);

/// A password, wiped from memory when dropped and never printed.
#[derive(Clone)]
pub struct Password(Zeroizing<Vec<u8>>);

impl Password {
    /// Wraps the password's bytes.
    pub fn new(bytes: impl Into<Vec<u8>>) -> Self {
        Password(Zeroizing::new(bytes.into()))
    }

    /// Its bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(hidden)")
    }
}

/// One key file, as `key list` shows it.
#[derive(Clone, Debug, Serialize)]
pub struct KeyInfo {
    /// Its id (the name under `keys/`).
    pub id: String,
    /// Whether this handle was opened with it.
    pub current: bool,
    /// When it was made.
    pub created: String,
    /// Where.
    pub hostname: String,
    /// By whom.
    pub username: String,
    /// Argon2id's memory, in KiB.
    pub kdf_memory_kib: u32,
    /// Argon2id's passes.
    pub kdf_passes: u32,
    /// Not among the keys the config lists: removed, and put back (or
    /// planted); it opens nothing.
    pub removed: bool,
    /// Why the file cannot be used, when it cannot (damaged, or costs
    /// past the ceilings); the fields above are then empty.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub damaged: Option<String>,
}

/// The key files in `files`, by name.
fn key_files(files: &dyn MetaStore) -> Result<Vec<(String, Vec<u8>)>> {
    let mut out = Vec::new();
    for key in files.list(KEYS)? {
        let Some(name) = key.strip_prefix(KEYS) else {
            continue;
        };
        // Key files are named by 32 hex digits; anything else (an
        // interrupted write's leftover) is not one.
        if name.len() != 32 || !name.bytes().all(|b| b.is_ascii_hexdigit()) {
            continue;
        }
        out.push((name.to_string(), files.get(&key)?));
    }
    out.sort();
    Ok(out)
}

/// What a repository's stored bytes are sealed with, given its config's
/// head: nothing for an unencrypted one; for an encrypted one, the master
/// key a key file yields to `password`, and that key file's id.
///
/// `preferred` (the key that opened it last time here) is tried first,
/// the others cheapest first; those in `passed_over` are not tried.
pub(crate) fn unlock(
    files: &dyn MetaStore,
    head: &ConfigHead,
    password: Option<&Password>,
    preferred: Option<&str>,
    passed_over: &[String],
) -> Result<(Crypt, Option<String>)> {
    match head.encryption {
        // Key files beside a plain config: the config was replaced, and
        // a writer must not store plaintext into an encrypted repository.
        Encryption::None if !key_files(files)?.is_empty() => Err(Error::corrupt(
            "config",
            format!("{}/config", files.location()),
            "it says the repository is not encrypted, but keys/ holds key files",
        )),
        Encryption::None => Ok((Crypt::none(), None)),
        Encryption::Repokey => {
            let password = password.ok_or(Error::NoPassword)?;
            let mut candidates = key_files(files)?;
            if candidates.is_empty() {
                return Err(Error::NoKey);
            }
            candidates.retain(|(name, _)| !passed_over.contains(name));
            let (id, master) = crate::crypto::unlock(&candidates, password.as_bytes(), preferred)?;
            Ok((Crypt::with(master), Some(id)))
        }
    }
}

/// Writes a new key file wrapping `master` under `password`; returns its id.
pub(crate) fn add_key_file(
    files: &dyn MetaStore,
    master: &MasterKey,
    password: &Password,
    params: Option<KdfParams>,
) -> Result<String> {
    let params = match params {
        Some(p) => p,
        None => KdfParams::tuned(KDF_TARGET)?,
    };
    let (id, bytes) = KeyFile::wrap(master, password.as_bytes(), params)?.encode();
    files.put(&format!("{KEYS}{id}"), &bytes)?;
    Ok(id)
}

/// The home's files as an encrypted repository sees them: snapshot
/// records, index segments and forget's tombstones sealed, bound to their names (a sealed file
/// copied under another name does not open); the config (which seals
/// itself), key files, locks and blob markers as they are.
pub(crate) struct SealedFiles {
    inner: Arc<dyn MetaStore>,
    crypt: Crypt,
}

/// `inner` as `crypt` needs it: sealed where it is on.
pub(crate) fn files_for(inner: Arc<dyn MetaStore>, crypt: &Crypt) -> Arc<dyn MetaStore> {
    if crypt.is_on() {
        Arc::new(SealedFiles {
            inner,
            crypt: crypt.clone(),
        })
    } else {
        inner
    }
}

fn is_sealed(key: &str) -> bool {
    key.starts_with(SnapshotRecord::FOLDER)
        || key.starts_with(segment::FOLDER)
        || key.starts_with(super::history::FORGOTTEN)
}

fn file_aad(key: &str) -> Vec<u8> {
    let mut aad = b"dd-file:".to_vec();
    aad.extend_from_slice(key.as_bytes());
    aad
}

impl MetaStore for SealedFiles {
    fn location(&self) -> String {
        self.inner.location()
    }

    fn create_if_absent(&self, key: &str, data: &[u8]) -> Result<bool> {
        if is_sealed(key) {
            let sealed = self.crypt.seal(&file_aad(key), data);
            self.inner.create_if_absent(key, &sealed)
        } else {
            self.inner.create_if_absent(key, data)
        }
    }

    fn put(&self, key: &str, data: &[u8]) -> Result<()> {
        if is_sealed(key) {
            self.inner.put(key, &self.crypt.seal(&file_aad(key), data))
        } else {
            self.inner.put(key, data)
        }
    }

    fn get(&self, key: &str) -> Result<Vec<u8>> {
        let bytes = self.inner.get(key)?;
        if !is_sealed(key) {
            return Ok(bytes);
        }
        let what = if key.starts_with(segment::FOLDER) {
            "index segment"
        } else {
            "snapshot record"
        };
        let location = format!("{}/{key}", self.inner.location());
        Ok(self
            .crypt
            .open(&file_aad(key), &bytes, what, &location)?
            .into_owned())
    }

    fn get_range(&self, key: &str, offset: u64, len: usize) -> Result<Vec<u8>> {
        if is_sealed(key) {
            let location = format!("{}/{key}", self.inner.location());
            return crate::store::range_of(&self.get(key)?, offset, len, &location);
        }
        self.inner.get_range(key, offset, len)
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>> {
        self.inner.list(prefix)
    }

    fn written(&self, prefix: &str) -> Result<Vec<(String, std::time::SystemTime)>> {
        self.inner.written(prefix)
    }

    fn delete(&self, key: &str) -> Result<()> {
        self.inner.delete(key)
    }

    fn sweep_unfinished(&self, dirs: &[&str]) -> Result<u64> {
        self.inner.sweep_unfinished(dirs)
    }
}

impl Engine {
    /// The work of [`Repository::keys`](crate::Repository::keys).
    pub fn keys(&self) -> Result<Vec<KeyInfo>> {
        self.check_encrypted()?;
        let mut out = Vec::new();
        let listed = &self.config.keys;
        for (id, bytes) in key_files(self.raw_files.as_ref())? {
            let removed = !listed.is_empty() && !listed.contains(&id);
            let current = self.key_id.as_deref() == Some(id.as_str());
            out.push(match KeyFile::decode(&bytes, &format!("{KEYS}{id}")) {
                Ok(file) => KeyInfo {
                    removed,
                    current,
                    id,
                    created: file.created,
                    hostname: file.hostname,
                    username: file.username,
                    kdf_memory_kib: file.params.m_cost_kib,
                    kdf_passes: file.params.t_cost,
                    damaged: None,
                },
                Err(e) => KeyInfo {
                    removed,
                    current,
                    id,
                    created: String::new(),
                    hostname: String::new(),
                    username: String::new(),
                    kdf_memory_kib: 0,
                    kdf_passes: 0,
                    damaged: Some(e.to_string()),
                },
            });
        }
        out.sort_by(|a, b| a.created.cmp(&b.created).then(a.id.cmp(&b.id)));
        Ok(out)
    }

    /// The work of [`Repository::add_key`](crate::Repository::add_key).
    pub fn add_key(&self, password: &Password, params: Option<KdfParams>) -> Result<String> {
        self.check_encrypted()?;
        self.check_alone("adding a key")?;
        let master = self.master()?;
        let id = add_key_file(self.raw_files.as_ref(), master, password, params)?;
        // Listed once written: a crash between the two leaves a key file
        // that opens nothing.
        let mut keys = self.valid_keys()?;
        keys.push(id.clone());
        self.write_key_list(keys)?;
        Ok(id)
    }

    /// The key files that may open the repository: the config's list, or
    /// (a repository from before the list) every key file there is.
    fn valid_keys(&self) -> Result<Vec<String>> {
        if !self.config.keys.is_empty() {
            return Ok(self.config.keys.clone());
        }
        Ok(key_files(self.raw_files.as_ref())?
            .into_iter()
            .map(|(name, _)| name)
            .collect())
    }

    /// Writes the config with `keys` as the key files that may open it.
    /// The handle's own config is not changed: key management is the last
    /// thing a handle does.
    fn write_key_list(&self, mut keys: Vec<String>) -> Result<()> {
        keys.sort();
        keys.dedup();
        let mut config = self.config.clone();
        config.keys = keys;
        self.write_config(&config)
    }

    /// The work of [`Repository::remove_key`](crate::Repository::remove_key).
    pub fn remove_key(&self, id: &str) -> Result<String> {
        self.check_encrypted()?;
        self.check_alone("removing a key")?;
        let files = key_files(self.raw_files.as_ref())?;
        let matching: Vec<&String> = files
            .iter()
            .map(|f| &f.0)
            .filter(|n| n.starts_with(id))
            .collect();
        let name = match matching.as_slice() {
            [one] => (*one).clone(),
            [] => {
                return Err(Error::invalid(
                    "key",
                    format!("no key {id:?} (see `key list`)"),
                ))
            }
            _ => {
                return Err(Error::invalid(
                    "key",
                    format!("{id:?} names more than one key"),
                ))
            }
        };
        if self.key_id.as_deref() == Some(name.as_str()) {
            return Err(Error::invalid(
                "key",
                format!("{name} is the key this command was opened with; open with another key's password to remove it"),
            ));
        }
        let mut keys = self.valid_keys()?;
        keys.retain(|k| *k != name);
        if keys.is_empty() {
            return Err(Error::invalid(
                "key",
                "it is the repository's last key".to_string(),
            ));
        }
        // Unlisted first: from then on the file opens nothing, even if it
        // stays or is put back.
        self.write_key_list(keys)?;
        self.raw_files.delete(&format!("{KEYS}{name}"))?;
        Ok(name)
    }

    /// The work of [`Repository::change_password`](crate::Repository::change_password).
    pub fn change_password(
        &self,
        password: &Password,
        params: Option<KdfParams>,
    ) -> Result<String> {
        self.check_encrypted()?;
        self.check_alone("changing a password")?;
        let master = self.master()?;
        let new = add_key_file(self.raw_files.as_ref(), master, password, params)?;
        let old = self.key_id.clone().expect("an encrypted handle has a key");
        // One config write: the new key listed, the old one not.
        let mut keys = self.valid_keys()?;
        keys.retain(|k| *k != old);
        keys.push(new.clone());
        self.write_key_list(keys)?;
        self.raw_files.delete(&format!("{KEYS}{old}"))?;
        Ok(new)
    }

    fn check_encrypted(&self) -> Result<()> {
        if self.crypt.is_on() {
            Ok(())
        } else {
            Err(Error::invalid(
                "repository",
                "it is not encrypted: it has no keys".to_string(),
            ))
        }
    }

    /// The master key this handle holds.
    fn master(&self) -> Result<&MasterKey> {
        self.crypt.key().ok_or_else(|| {
            Error::invalid(
                "repository",
                "it is not encrypted: it has no keys".to_string(),
            )
        })
    }

    /// Writes the config, sealed when the repository is encrypted. A
    /// repository whose index has families (or a record catalog) keeps
    /// the version that says so, whatever version this handle opened it
    /// at.
    pub(crate) fn write_config(&self, config: &Config) -> Result<()> {
        let config = if self.index.has_catalog()? {
            config.with_catalog()
        } else if self.index.base()?.is_some() {
            config.with_families()
        } else {
            config.clone()
        };
        self.raw_files.put(CONFIG, &config.encode_for(&self.crypt))
    }
}
