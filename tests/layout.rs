//! The shape of the crate: what a program that embeds the engine pays for,
//! and the layers (`docs/design.md`, "Layout"): one handle, verbs that
//! reach only the engine and what lies below it, files a person can read.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The crates only the `dedup` binary needs.
const CLI_ONLY: [&str; 6] = [
    "clap",
    "anyhow",
    "indicatif",
    "fuser",
    "plotters",
    "rpassword",
];

#[test]
fn the_library_without_the_cli_feature_pulls_in_no_cli_crate() {
    let out = Command::new(env!("CARGO"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args([
            "tree",
            "--locked",
            "--offline",
            "--no-default-features",
            "--features",
            "engine,s3",
            "-e",
            "normal",
            "--prefix",
            "none",
            "--format",
            "{p}",
        ])
        .output()
        .expect("cargo runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tree = String::from_utf8(out.stdout).unwrap();
    let names: Vec<&str> = tree.lines().filter_map(|l| l.split(' ').next()).collect();
    assert!(names.contains(&"rocksdb"), "the engine is there: {tree}");
    for crate_name in CLI_ONLY {
        assert!(
            !names.contains(&crate_name),
            "{crate_name} is a library dependency"
        );
    }
}

/// Every `.rs` file under `dir`, with its text up to its test module.
fn sources(dir: &Path) -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(sources(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            let text = std::fs::read_to_string(&path).unwrap();
            let code = match text.find("#[cfg(test)]\nmod tests") {
                Some(at) => text[..at].to_string(),
                None => text,
            };
            out.push((path, code));
        }
    }
    out
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

#[test]
fn the_handle_has_one_impl_block_and_every_verb_reaches_only_the_layers_below() {
    let files = sources(&src());
    let impls: Vec<&PathBuf> = files
        .iter()
        .filter(|(_, code)| code.lines().any(|l| l.starts_with("impl Repository")))
        .map(|(path, _)| path)
        .collect();
    assert_eq!(
        impls,
        [&src().join("repository.rs")],
        "impl Repository blocks"
    );
    let ops = src().join("ops");
    let verb = |path: &Path| {
        let rest = path.strip_prefix(&ops).unwrap();
        let first = rest
            .components()
            .next()
            .unwrap()
            .as_os_str()
            .to_str()
            .unwrap();
        first.trim_end_matches(".rs").to_string()
    };
    for (path, code) in files.iter().filter(|(p, _)| p.starts_with(&ops)) {
        if path.parent() == Some(ops.as_path()) && path.ends_with("mod.rs") {
            continue;
        }
        let own = verb(path);
        let lines = code.lines().enumerate();
        // `super::` from a verb's own file, `super::super::` from a file of
        // a verb's folder, is `crate::ops::` too.
        let up = if path.parent() == Some(ops.as_path()) {
            "super::"
        } else {
            "super::super::"
        };
        for (n, line) in lines.filter(|(_, l)| !l.trim_start().starts_with("//")) {
            let line = line.replace(up, "crate::ops::");
            for (at, _) in line.match_indices("crate::ops::") {
                let other = line[at + "crate::ops::".len()..]
                    .split(|c: char| !c.is_alphanumeric() && c != '_')
                    .next()
                    .unwrap();
                assert_eq!(
                    other,
                    own,
                    "{}:{}: the verb {own} reaches into the verb {other}",
                    path.display(),
                    n + 1
                );
            }
            assert!(
                !line.contains("crate::repository") && !line.contains("crate::Repository"),
                "{}:{}: a verb uses the handle instead of the engine",
                path.display(),
                n + 1
            );
        }
    }
}

#[test]
fn no_source_file_is_longer_than_800_lines_before_its_tests() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    for (path, code) in sources(&root) {
        let lines = code.lines().count();
        assert!(
            lines <= 800,
            "{} has {lines} lines before its tests",
            path.display()
        );
    }
}
