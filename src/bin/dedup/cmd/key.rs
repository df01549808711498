//! `dedup key list | add | remove | passwd`: an encrypted repository's
//! key files. Each wraps the same master key under its own password, so a
//! repository keeps working while any one remains.

use std::path::Path;

use crate::cli::KeyAction;
use crate::context::{show, Code, Context};

/// `key ACTION`.
pub fn run(cx: &Context, action: &KeyAction, json: bool) -> Code {
    match action {
        KeyAction::List => list(cx, json),
        KeyAction::Add {
            new_password_file,
            kdf_time,
        } => add(cx, new_password_file.as_deref(), *kdf_time, json),
        KeyAction::Remove { id } => remove(cx, id, json),
        KeyAction::Passwd {
            new_password_file,
            kdf_time,
        } => passwd(cx, new_password_file.as_deref(), *kdf_time, json),
    }
}

/// `key list`.
pub fn list(cx: &Context, json: bool) -> Code {
    show(&Keys(cx.reader()?.keys()?), json)?;
    Ok(0)
}

/// What `key list` prints: a table, the key in use marked `*`.
#[derive(serde::Serialize)]
#[serde(transparent)]
struct Keys(Vec<dedup::engine::keys::KeyInfo>);

impl std::fmt::Display for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let head = ("id", "created", "host", "user");
        writeln!(
            f,
            "  {:<32}  {:<20}  {:<16}  {:<10}  kdf",
            head.0, head.1, head.2, head.3
        )?;
        for k in &self.0 {
            if let Some(why) = &k.damaged {
                writeln!(f, "  {:<32}  cannot be used: {why}", k.id)?;
                continue;
            }
            let current = if k.current { "*" } else { " " };
            let removed = if k.removed {
                "  (removed: opens nothing)"
            } else {
                ""
            };
            writeln!(
                f,
                "{current} {:<32}  {:<20}  {:<16}  {:<10}  argon2id {} MiB x {}{removed}",
                k.id,
                k.created,
                k.hostname,
                k.username,
                k.kdf_memory_kib / 1024,
                k.kdf_passes,
            )?;
        }
        Ok(())
    }
}

/// `key add`.
pub fn add(cx: &Context, new_password_file: Option<&Path>, kdf_time: u64, json: bool) -> Code {
    let repo = cx.writer()?;
    let password = cx.new_password(new_password_file, false)?;
    let id = repo.add_key(&password, Some(tuned(kdf_time)?))?;
    say(json, "added", &id)
}

/// `key remove ID`.
pub fn remove(cx: &Context, id: &str, json: bool) -> Code {
    let removed = cx.writer()?.remove_key(id)?;
    say(json, "removed", &removed)
}

/// `key passwd`.
pub fn passwd(cx: &Context, new_password_file: Option<&Path>, kdf_time: u64, json: bool) -> Code {
    let repo = cx.writer()?;
    let password = cx.new_password(new_password_file, false)?;
    let id = repo.change_password(&password, Some(tuned(kdf_time)?))?;
    say(json, "changed the password: the key is now", &id)
}

/// Argon2id's costs for a key derivation of about `ms` here.
pub fn tuned(ms: u64) -> dedup::Result<dedup::crypto::KdfParams> {
    dedup::crypto::KdfParams::tuned(std::time::Duration::from_millis(ms))
}

/// What a key command did to one key: `{"key": ID}` as JSON.
#[derive(serde::Serialize)]
struct Done<'a> {
    key: &'a str,
    #[serde(skip)]
    what: &'a str,
}

impl std::fmt::Display for Done<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "{} key {}", self.what, self.key)
    }
}

fn say(json: bool, what: &str, key: &str) -> Code {
    show(&Done { key, what }, json)?;
    Ok(0)
}
