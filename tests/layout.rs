//! The shape of the crate: what a program that embeds the engine pays for.

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
