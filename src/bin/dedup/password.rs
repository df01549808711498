//! Where an encrypted repository's password comes from: `--password-file`,
//! else, once the repository turns out to be encrypted,
//! `$DEDUP_PASSWORD_FILE`, `$DEDUP_PASSWORD`, `$DEDUP_PASSWORD_COMMAND`
//! (its first line of output), or a prompt when standard input is a
//! terminal.

use std::io::IsTerminal;
use std::path::Path;

use anyhow::{bail, Context as _};
use dedup::engine::keys::Password;

/// The password `--password-file` (or `--new-password-file`) gives, if
/// one was given.
pub fn given(file: Option<&Path>) -> anyhow::Result<Option<Password>> {
    let Some(file) = file else {
        return Ok(None);
    };
    let text = zeroize::Zeroizing::new(
        std::fs::read(file)
            .with_context(|| format!("cannot read the password file {}", file.display()))?,
    );
    Ok(Some(first_line(&text, &file.display().to_string())?))
}

/// The environment's password sources, in the order they are tried.
const IN_ENVIRONMENT: [&str; 3] = [
    "DEDUP_PASSWORD_FILE",
    "DEDUP_PASSWORD",
    "DEDUP_PASSWORD_COMMAND",
];

/// Which of the environment's password sources is set, if any (for the
/// warning that a plain repository did not use it).
pub fn in_environment() -> Option<&'static str> {
    IN_ENVIRONMENT
        .into_iter()
        .find(|name| std::env::var_os(name).is_some())
}

/// The password the environment gives, if any: asked for only once a
/// repository turns out to be encrypted (people export one for several
/// repositories), so that a password command is never run for a plain
/// one.
pub fn from_environment() -> anyhow::Result<Option<Password>> {
    if let Some(file) = std::env::var_os("DEDUP_PASSWORD_FILE") {
        return given(Some(Path::new(&file)));
    }
    if let Some(p) = std::env::var_os("DEDUP_PASSWORD") {
        return Ok(Some(Password::new(p.into_encoded_bytes())));
    }
    if let Some(cmd) = std::env::var_os("DEDUP_PASSWORD_COMMAND") {
        let shown = cmd.to_string_lossy().into_owned();
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(&cmd)
            .stderr(std::process::Stdio::inherit())
            .output()
            .with_context(|| format!("cannot run $DEDUP_PASSWORD_COMMAND {shown:?}"))?;
        if !out.status.success() {
            bail!("$DEDUP_PASSWORD_COMMAND {shown:?} failed ({})", out.status);
        }
        let text = zeroize::Zeroizing::new(out.stdout);
        return Ok(Some(first_line(&text, "$DEDUP_PASSWORD_COMMAND")?));
    }
    Ok(None)
}

/// The first line of `text`, without its line ending; empty is refused.
fn first_line(text: &[u8], from: &str) -> anyhow::Result<Password> {
    let line = text.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if line.is_empty() {
        bail!("the password from {from} is empty");
    }
    Ok(Password::new(line.to_vec()))
}

/// Asks on the terminal (twice with `confirm`), or fails when there is
/// none to ask on.
pub fn prompt(question: &str, confirm: bool) -> dedup::Result<Password> {
    if !std::io::stdin().is_terminal() {
        return Err(dedup::Error::NoPassword);
    }
    let ask =
        |q: &str| rpassword::prompt_password(q).map_err(|e| dedup::Error::io("the terminal", e));
    let first = ask(question)?;
    if first.is_empty() {
        return Err(dedup::Error::invalid("password", "it is empty".to_string()));
    }
    if confirm && ask("the same again: ")? != first {
        return Err(dedup::Error::invalid(
            "password",
            "the two did not match".to_string(),
        ));
    }
    Ok(Password::new(first.into_bytes()))
}
