//! Encryption's building blocks: the repository's master key, the key
//! files that wrap it under passwords, keyed object ids, and sealing bytes
//! with an AEAD.
//!
//! - **Master key**: 64 random bytes made at `init`: 32 for
//!   AES-256-GCM, 32 for HMAC-SHA-256 object ids. It never leaves
//!   memory unwrapped and is wiped when dropped.
//! - **Key file** (`keys/<id>` in the home, JSON): the master key sealed
//!   under a key derived from a password with Argon2id; the salt and the
//!   Argon2 parameters sit beside it, so each key file can be tuned on its
//!   own machine. Any number of key files wrap the same master key; `<id>`
//!   is the SHA-256 of the file's bytes (its first 16 bytes, in hex).
//! - **Sealed bytes**: `nonce[24] ‖ ciphertext ‖ tag[16]`, the nonce random
//!   for every seal: AES-256-GCM under a key derived for that seal from
//!   the nonce's first 16 bytes (see `subkey`), with its last 8 as GCM's
//!   nonce, so random nonces never wear a key out.
//!   The associated data names what the bytes are (and, for an object, its
//!   id), so a sealed object moved elsewhere fails to open instead of being
//!   read as something else.
//! - **Keyed ids**: HMAC-SHA-256 of an object's bytes under the id key, so
//!   that whoever holds the store cannot test whether a known file is in
//!   it; unencrypted repositories keep plain SHA-256 ids.

use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::id::ChunkId;

/// Bytes of a nonce.
pub const NONCE_LEN: usize = 24;
/// Bytes of a tag.
pub const TAG_LEN: usize = 16;
/// What sealing adds to a plaintext's length.
pub const OVERHEAD: usize = NONCE_LEN + TAG_LEN;
/// The key file format this build writes and reads.
pub const KEY_FILE_VERSION: u32 = 1;

/// The repository's secret: the encryption key and the id key.
pub struct MasterKey {
    encrypt: Zeroizing<[u8; 32]>,
    ids: Zeroizing<[u8; 32]>,
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(..)")
    }
}

impl MasterKey {
    /// A new random key.
    pub fn generate() -> Result<Self> {
        let mut bytes = Zeroizing::new([0u8; 64]);
        getrandom::fill(bytes.as_mut()).map_err(|e| Error::invalid("random key", e.to_string()))?;
        Ok(Self::from_bytes(&bytes))
    }

    fn from_bytes(bytes: &[u8; 64]) -> Self {
        let mut encrypt = Zeroizing::new([0u8; 32]);
        let mut ids = Zeroizing::new([0u8; 32]);
        encrypt.copy_from_slice(&bytes[..32]);
        ids.copy_from_slice(&bytes[32..]);
        MasterKey { encrypt, ids }
    }

    fn to_bytes(&self) -> Zeroizing<[u8; 64]> {
        let mut out = Zeroizing::new([0u8; 64]);
        out[..32].copy_from_slice(self.encrypt.as_ref());
        out[32..].copy_from_slice(self.ids.as_ref());
        out
    }

    /// The keyed id of an object's bytes: HMAC-SHA-256 under the id key.
    pub fn id_of(&self, data: &[u8]) -> ChunkId {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(self.ids.as_ref())
            .expect("HMAC takes any key length");
        mac.update(data);
        ChunkId(mac.finalize().into_bytes().into())
    }

    /// Seals `plaintext`; `aad` names what it is (bound, not stored).
    pub fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
        seal_with(&self.encrypt, aad, plaintext)
    }

    /// Opens bytes [`seal`](Self::seal) made with the same `aad`. Any
    /// changed byte, or other associated data, is an error naming `what`
    /// and `location`: never wrong bytes. `location` is spelled out only
    /// for an error (records pass `format_args!`: this runs for every
    /// chunk a restore reads).
    pub fn open(
        &self,
        aad: &[u8],
        sealed: &[u8],
        what: &'static str,
        location: impl std::fmt::Display,
    ) -> Result<Vec<u8>> {
        open_with(&self.encrypt, aad, sealed).ok_or_else(|| {
            Error::corrupt(
                what,
                location.to_string(),
                "it does not decrypt: damaged, or not this repository's",
            )
        })
    }
}

/// What the per-object key derivation is bound to.
const SUBKEY_LABEL: &[u8] = b"dd-aes-256-gcm-subkey";

/// The cipher for one sealing: AES-256-GCM (ring's, 6.2 GiB/s sealing and
/// 6.7 opening on one core here, with AES-NI) under a key of its own, HMAC-SHA-256 of the
/// encryption key over a label and the nonce's first 16 bytes, with the
/// nonce's last 8 bytes (and 4 zero bytes) as GCM's nonce. A fresh key per
/// object lifts GCM's limit on random 96-bit nonces: keys collide only
/// after about 2^64 objects.
fn subkey(key: &[u8; 32], nonce: &[u8]) -> (ring::aead::LessSafeKey, ring::aead::Nonce) {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(SUBKEY_LABEL);
    mac.update(&nonce[..16]);
    let sub = Zeroizing::new(<[u8; 32]>::from(mac.finalize().into_bytes()));
    let unbound = ring::aead::UnboundKey::new(&ring::aead::AES_256_GCM, sub.as_ref())
        .expect("a 32-byte AES key");
    let mut short = [0u8; 12];
    short[..8].copy_from_slice(&nonce[16..NONCE_LEN]);
    (
        ring::aead::LessSafeKey::new(unbound),
        ring::aead::Nonce::assume_unique_for_key(short),
    )
}

fn seal_with(key: &[u8; 32], aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
    // nonce ‖ plaintext, encrypted where it lies, then the tag: one copy
    // of the bytes, no second buffer.
    let mut out = Vec::with_capacity(OVERHEAD + plaintext.len());
    out.resize(NONCE_LEN, 0);
    getrandom::fill(&mut out[..NONCE_LEN]).expect("the system's random source works");
    out.extend_from_slice(plaintext);
    let (nonce, body) = out.split_at_mut(NONCE_LEN);
    let (cipher, nonce) = subkey(key, nonce);
    let tag = cipher
        .seal_in_place_separate_tag(nonce, ring::aead::Aad::from(aad), body)
        .expect("a buffer in memory always seals");
    out.extend_from_slice(tag.as_ref());
    out
}

fn open_with(key: &[u8; 32], aad: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
    if sealed.len() < OVERHEAD {
        return None;
    }
    let (nonce, rest) = sealed.split_at(NONCE_LEN);
    let (cipher, nonce) = subkey(key, nonce);
    let mut plain = rest.to_vec();
    let len = cipher
        .open_in_place(nonce, ring::aead::Aad::from(aad), &mut plain)
        .ok()?
        .len();
    plain.truncate(len);
    Some(plain)
}

/// Argon2id's cost parameters, kept in each key file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KdfParams {
    /// Memory, in KiB.
    pub m_cost_kib: u32,
    /// Passes.
    pub t_cost: u32,
    /// Lanes.
    pub p_cost: u32,
}

/// Memory Argon2id uses when tuned: 64 MiB, as restic does.
const TUNED_MEMORY_KIB: u32 = 64 * 1024;
/// The most passes tuning will choose.
const MAX_PASSES: u32 = 64;
/// The most memory a key file may ask its derivation for (KiB).
const MAX_MEMORY_KIB: u32 = 256 * 1024;

impl KdfParams {
    /// Parameters that take about `target` on this machine: 64 MiB of
    /// memory, and as many passes as fit (at least 1, at most 64).
    pub fn tuned(target: Duration) -> Result<Self> {
        let probe = KdfParams {
            m_cost_kib: TUNED_MEMORY_KIB,
            t_cost: 1,
            p_cost: 1,
        };
        let started = Instant::now();
        probe.derive(b"tuning", &[0u8; 16])?;
        let one = started.elapsed().max(Duration::from_millis(1));
        let passes = (target.as_secs_f64() / one.as_secs_f64()).floor() as u32;
        Ok(KdfParams {
            t_cost: passes.clamp(1, MAX_PASSES),
            ..probe
        })
    }

    /// The 32-byte key `password` and `salt` give.
    fn derive(&self, password: &[u8], salt: &[u8]) -> Result<Zeroizing<[u8; 32]>> {
        let params = argon2::Params::new(self.m_cost_kib, self.t_cost, self.p_cost, Some(32))
            .map_err(|e| Error::invalid("key derivation parameters", e.to_string()))?;
        let argon =
            argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
        let mut out = Zeroizing::new([0u8; 32]);
        argon
            .hash_password_into(password, salt, out.as_mut())
            .map_err(|e| Error::invalid("key derivation", e.to_string()))?;
        Ok(out)
    }
}

/// A key file: the master key wrapped under one password.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyFile {
    /// Format version.
    pub version: u32,
    /// When it was made (RFC 3339).
    pub created: String,
    /// Where it was made.
    pub hostname: String,
    /// By whom.
    pub username: String,
    /// Always `argon2id`.
    pub kdf: String,
    /// Its costs.
    pub params: KdfParams,
    /// 32 random bytes, hex.
    pub salt: String,
    /// The master key sealed under the derived key, hex.
    pub sealed: String,
}

/// What a key file's sealed master key is bound to.
const KEY_AAD: &[u8] = b"dedup key file v1";

impl KeyFile {
    /// Wraps `master` under `password` with `params`.
    pub fn wrap(master: &MasterKey, password: &[u8], params: KdfParams) -> Result<Self> {
        if password.is_empty() {
            return Err(Error::invalid("password", "it is empty".to_string()));
        }
        let mut salt = [0u8; 32];
        getrandom::fill(&mut salt).map_err(|e| Error::invalid("random salt", e.to_string()))?;
        let wrapping = params.derive(password, &salt)?;
        let mut file = KeyFile {
            version: KEY_FILE_VERSION,
            created: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
            hostname: gethostname::gethostname().to_string_lossy().into_owned(),
            username: uzers::get_current_username()
                .map(|u| u.to_string_lossy().into_owned())
                .unwrap_or_default(),
            kdf: "argon2id".into(),
            params,
            salt: hex::encode(salt),
            sealed: String::new(),
        };
        let sealed = seal_with(&wrapping, &file.aad(), master.to_bytes().as_ref());
        file.sealed = hex::encode(sealed);
        Ok(file)
    }

    /// What the sealed key is bound to: every other field, so that no
    /// byte of the file can change unnoticed.
    fn aad(&self) -> Vec<u8> {
        let fields = (
            self.version,
            &self.created,
            &self.hostname,
            &self.username,
            &self.kdf,
            self.params,
            &self.salt,
        );
        let mut aad = KEY_AAD.to_vec();
        aad.extend(serde_json::to_vec(&fields).expect("key fields always serialise"));
        aad
    }

    /// The master key, if `password` is this key file's.
    pub fn unwrap(&self, password: &[u8], location: &str) -> Result<Option<MasterKey>> {
        let salt = hex::decode(&self.salt)
            .map_err(|_| Error::corrupt("key file", location, "its salt is not hex"))?;
        let sealed = hex::decode(&self.sealed)
            .map_err(|_| Error::corrupt("key file", location, "its sealed key is not hex"))?;
        let wrapping = self.params.derive(password, &salt)?;
        let Some(bytes) = open_with(&wrapping, &self.aad(), &sealed) else {
            return Ok(None);
        };
        let bytes: Zeroizing<Vec<u8>> = Zeroizing::new(bytes);
        let bytes: &[u8; 64] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| Error::corrupt("key file", location, "its key is not 64 bytes"))?;
        Ok(Some(MasterKey::from_bytes(bytes)))
    }

    /// The file's bytes and its id (the name it is stored under).
    pub fn encode(&self) -> (String, Vec<u8>) {
        let bytes = serde_json::to_vec_pretty(self).expect("a key file always serialises");
        (Self::id_of(&bytes), bytes)
    }

    /// The id of a key file's bytes.
    pub fn id_of(bytes: &[u8]) -> String {
        hex::encode(&Sha256::digest(bytes)[..16])
    }

    /// Decodes a key file, refusing one this build cannot use.
    pub fn decode(bytes: &[u8], location: &str) -> Result<Self> {
        let file: KeyFile = serde_json::from_slice(bytes)
            .map_err(|e| Error::corrupt("key file", location, e.to_string()))?;
        if file.version != KEY_FILE_VERSION {
            return Err(Error::corrupt(
                "key file",
                location,
                format!(
                    "format version {}, this build reads {KEY_FILE_VERSION}",
                    file.version
                ),
            ));
        }
        if file.kdf != "argon2id" {
            return Err(Error::corrupt(
                "key file",
                location,
                format!("key derivation {:?}, this build knows argon2id", file.kdf),
            ));
        }
        // Costs a crafted file could use to exhaust memory or time: at
        // most what tuning makes (64 MiB, 64 passes) in memory times
        // passes, 256 MiB, 64 passes and 16 lanes each.
        let p = &file.params;
        if p.m_cost_kib > MAX_MEMORY_KIB
            || p.t_cost > MAX_PASSES
            || p.p_cost > 16
            || u64::from(p.m_cost_kib) * u64::from(p.t_cost)
                > u64::from(TUNED_MEMORY_KIB) * u64::from(MAX_PASSES)
        {
            return Err(Error::corrupt(
                "key file",
                location,
                format!("key derivation costs out of range: {:?}", file.params),
            ));
        }
        Ok(file)
    }
}

/// Which key file of `files` (name, bytes) `password` opens, and the
/// master key; [`Error::WrongPassword`] when none does. `preferred` (the
/// one that opened it last time) is tried first, then the others from the
/// cheapest derivation up, so a costly file someone added is tried last.
/// Damaged files are passed over while another may open.
pub fn unlock(
    files: &[(String, Vec<u8>)],
    password: &[u8],
    preferred: Option<&str>,
) -> Result<(String, MasterKey)> {
    if files.is_empty() {
        return Err(Error::WrongPassword);
    }
    let mut damaged = None;
    let mut decoded = Vec::new();
    for (name, bytes) in files {
        match KeyFile::decode(bytes, name) {
            Ok(file) => decoded.push((name, file)),
            Err(e) => damaged = Some(e),
        }
    }
    decoded.sort_by_key(|(name, file)| {
        let cost = u64::from(file.params.m_cost_kib) * u64::from(file.params.t_cost);
        (Some(name.as_str()) != preferred, cost, (*name).clone())
    });
    for (name, file) in decoded {
        match file.unwrap(password, name) {
            Ok(Some(master)) => return Ok((name.clone(), master)),
            Ok(None) => {}
            Err(e) => damaged = Some(e),
        }
    }
    Err(match damaged {
        Some(e) if files.len() == 1 => e,
        _ => Error::WrongPassword,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fast() -> KdfParams {
        KdfParams {
            m_cost_kib: 64,
            t_cost: 1,
            p_cost: 1,
        }
    }

    #[test]
    fn sealed_bytes_open_only_unchanged_and_with_their_label() {
        let key = MasterKey::generate().unwrap();
        let sealed = key.seal(b"record", b"hello, dedup");
        assert_eq!(sealed.len(), 12 + OVERHEAD);
        assert!(!sealed.windows(5).any(|w| w == b"hello"));
        assert_eq!(
            key.open(b"record", &sealed, "x", "here").unwrap(),
            b"hello, dedup"
        );
        // Two seals of the same bytes differ (random nonces).
        assert_ne!(key.seal(b"record", b"hello, dedup"), sealed);
        for i in 0..sealed.len() {
            let mut bad = sealed.clone();
            bad[i] ^= 1;
            assert!(key.open(b"record", &bad, "x", "here").is_err(), "byte {i}");
        }
        assert!(key.open(b"tree", &sealed, "x", "here").is_err());
        assert!(key
            .open(b"record", &sealed[..OVERHEAD - 1], "x", "here")
            .is_err());
        let other = MasterKey::generate().unwrap();
        assert!(other.open(b"record", &sealed, "x", "here").is_err());
    }

    #[test]
    fn sealing_is_aes_256_gcm_under_the_derived_key() {
        use aes_gcm::aead::{Aead, KeyInit, Payload};
        let key = [9u8; 32];
        let sealed = seal_with(&key, b"label", b"the bytes");
        assert_eq!(sealed.len(), 9 + OVERHEAD);
        let (nonce, body) = sealed.split_at(NONCE_LEN);
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&key).unwrap();
        mac.update(SUBKEY_LABEL);
        mac.update(&nonce[..16]);
        let sub: [u8; 32] = mac.finalize().into_bytes().into();
        let mut short = [0u8; 12];
        short[..8].copy_from_slice(&nonce[16..]);
        // RustCrypto's AES-256-GCM opens what ring sealed.
        let plain = aes_gcm::Aes256Gcm::new(&sub.into())
            .decrypt(
                &short.into(),
                Payload {
                    msg: body,
                    aad: b"label",
                },
            )
            .unwrap();
        assert_eq!(plain, b"the bytes");
        assert_eq!(open_with(&key, b"label", &sealed).unwrap(), b"the bytes");
        // Another nonce, another key: the same bytes seal differently.
        assert_ne!(
            seal_with(&key, b"label", b"the bytes")[NONCE_LEN..],
            sealed[NONCE_LEN..]
        );
    }

    #[test]
    fn keyed_ids_differ_from_plain_and_between_keys() {
        let (a, b) = (
            MasterKey::generate().unwrap(),
            MasterKey::generate().unwrap(),
        );
        assert_eq!(a.id_of(b"data"), a.id_of(b"data"));
        assert_ne!(a.id_of(b"data"), ChunkId::of(b"data"));
        assert_ne!(a.id_of(b"data"), b.id_of(b"data"));
    }

    #[test]
    fn a_key_file_opens_with_its_password_only() {
        let master = MasterKey::generate().unwrap();
        let file = KeyFile::wrap(&master, b"correct horse", fast()).unwrap();
        let (name, bytes) = file.encode();
        assert_eq!(KeyFile::decode(&bytes, &name).unwrap(), file);
        let got = file.unwrap(b"correct horse", &name).unwrap().unwrap();
        assert_eq!(got.to_bytes().as_ref(), master.to_bytes().as_ref());
        assert!(file.unwrap(b"wrong", &name).unwrap().is_none());
        // The master key is nowhere in the file.
        let hex_key = hex::encode(&master.to_bytes()[..16]);
        assert!(!String::from_utf8_lossy(&bytes).contains(&hex_key));
        assert!(KeyFile::wrap(&master, b"", fast()).is_err());
    }

    #[test]
    fn unlock_tries_every_key_file_and_names_the_failure() {
        let master = MasterKey::generate().unwrap();
        let one = KeyFile::wrap(&master, b"one", fast()).unwrap().encode();
        let two = KeyFile::wrap(&master, b"two", fast()).unwrap().encode();
        let files = vec![one.clone(), two.clone()];
        assert_eq!(unlock(&files, b"two", None).unwrap().0, two.0);
        assert!(matches!(
            unlock(&files, b"three", None),
            Err(Error::WrongPassword)
        ));
        assert!(matches!(unlock(&[], b"x", None), Err(Error::WrongPassword)));
        // A damaged file beside a good one: the good one still opens.
        let damaged = ("bad".to_string(), b"{not json".to_vec());
        assert!(unlock(&[damaged.clone(), two.clone()], b"two", None).is_ok());
        // Alone, the damage is what is reported.
        let err = unlock(&[damaged], b"two", None).unwrap_err();
        assert!(err.to_string().contains("key file"), "{err}");
        // Crafted costs are refused before any work: each past its own
        // ceiling, or memory and passes together past tuning's most.
        let costs = [
            (u32::MAX, 1, 1),
            (MAX_MEMORY_KIB + 1, 1, 1),
            (64, MAX_PASSES + 1, 1),
            (64, 1, 17),
            (MAX_MEMORY_KIB, MAX_PASSES, 1),
        ];
        for (m_cost_kib, t_cost, p_cost) in costs {
            let mut greedy = KeyFile::decode(&one.1, "one").unwrap();
            greedy.params = KdfParams {
                m_cost_kib,
                t_cost,
                p_cost,
            };
            let (_, bytes) = greedy.encode();
            assert!(
                KeyFile::decode(&bytes, "greedy").is_err(),
                "{:?}",
                greedy.params
            );
        }
    }

    #[test]
    fn the_key_that_opened_it_last_is_tried_first_then_the_cheapest() {
        let master = MasterKey::generate().unwrap();
        let costly = KdfParams {
            t_cost: 4,
            ..fast()
        };
        // The same password in both: which one opens says which was tried.
        let cheap = KeyFile::wrap(&master, b"pw", fast()).unwrap().encode();
        let dear = KeyFile::wrap(&master, b"pw", costly).unwrap().encode();
        let files = vec![dear.clone(), cheap.clone()];
        assert_eq!(unlock(&files, b"pw", None).unwrap().0, cheap.0);
        assert_eq!(unlock(&files, b"pw", Some(&dear.0)).unwrap().0, dear.0);
    }

    #[test]
    fn tuning_picks_at_least_one_pass_of_64_mib() {
        let p = KdfParams::tuned(Duration::from_millis(1)).unwrap();
        assert_eq!(p.m_cost_kib, TUNED_MEMORY_KIB);
        assert!(p.t_cost >= 1);
    }
}

/// What a repository seals with: nothing (an unencrypted repository) or
/// its master key. Cheap to clone; every layer that writes or reads
/// stored bytes holds one.
#[derive(Clone, Debug, Default)]
pub struct Crypt(Option<std::sync::Arc<MasterKey>>);

impl Crypt {
    /// Encryption with `key`.
    pub fn with(key: MasterKey) -> Self {
        Crypt(Some(std::sync::Arc::new(key)))
    }

    /// No encryption: plain SHA-256 ids, bytes stored as they are.
    pub fn none() -> Self {
        Crypt(None)
    }

    /// The master key, when encrypted.
    pub fn key(&self) -> Option<&MasterKey> {
        self.0.as_deref()
    }

    /// Whether stored bytes are sealed.
    pub fn is_on(&self) -> bool {
        self.0.is_some()
    }

    /// An object's id: keyed when encrypted, plain SHA-256 otherwise.
    pub fn id_of(&self, data: &[u8]) -> ChunkId {
        match &self.0 {
            Some(key) => key.id_of(data),
            None => ChunkId::of(data),
        }
    }

    /// `data` sealed under `aad`, or as it is when not encrypted.
    pub fn seal<'a>(&self, aad: &[u8], data: &'a [u8]) -> std::borrow::Cow<'a, [u8]> {
        match &self.0 {
            Some(key) => std::borrow::Cow::Owned(key.seal(aad, data)),
            None => std::borrow::Cow::Borrowed(data),
        }
    }

    /// Opens what [`seal`](Self::seal) made (`what` and `location` name it
    /// in errors).
    pub fn open<'a>(
        &self,
        aad: &[u8],
        data: &'a [u8],
        what: &'static str,
        location: impl std::fmt::Display,
    ) -> Result<std::borrow::Cow<'a, [u8]>> {
        match &self.0 {
            Some(key) => Ok(std::borrow::Cow::Owned(
                key.open(aad, data, what, location)?,
            )),
            None => Ok(std::borrow::Cow::Borrowed(data)),
        }
    }
}

/// The associated data of an object's sealed bytes: its kind and id, so
/// that a sealed record copied under another id, or a chunk's bytes under a
/// tree's, does not open.
pub fn record_aad(id: &ChunkId, tree: bool) -> [u8; 40] {
    let mut aad = [0u8; 40];
    aad[..8].copy_from_slice(if tree { b"dd-tree\0" } else { b"dd-data\0" });
    aad[8..].copy_from_slice(id.as_bytes());
    aad
}
