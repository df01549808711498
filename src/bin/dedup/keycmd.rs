//! `dedup key list | add | remove | passwd`: an encrypted repository's
//! key files. Each wraps the same master key under its own password, so a
//! repository keeps working while any one remains.

use std::io::Write;
use std::path::Path;

use crate::cli::KeyAction;
use crate::commands::{print_json, Code, Context};

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
    let keys = cx.reader()?.keys()?;
    if json {
        print_json(&keys)?;
        return Ok(0);
    }
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "  {:<32}  {:<20}  {:<16}  {:<10}  kdf",
        "id", "created", "host", "user"
    )?;
    for k in &keys {
        if let Some(why) = &k.damaged {
            writeln!(out, "  {:<32}  cannot be used: {why}", k.id)?;
            continue;
        }
        writeln!(
            out,
            "{} {:<32}  {:<20}  {:<16}  {:<10}  argon2id {} MiB x {}{}",
            if k.current { "*" } else { " " },
            k.id,
            k.created,
            k.hostname,
            k.username,
            k.kdf_memory_kib / 1024,
            k.kdf_passes,
            if k.removed {
                "  (removed: opens nothing)"
            } else {
                ""
            }
        )?;
    }
    Ok(0)
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

fn say(json: bool, what: &str, id: &str) -> Code {
    if json {
        print_json(&serde_json::json!({ "key": id }))?;
    } else {
        writeln!(std::io::stdout().lock(), "{what} key {id}")?;
    }
    Ok(0)
}
