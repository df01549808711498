//! Bad input: every case gets a clear message naming the path or id and a
//! non-zero exit, and nothing already stored is lost.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use common::*;

fn repo_with_snapshot(tmp: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let (src, repo) = (tmp.join("src"), tmp.join("repo"));
    make_tree(&src, 11);
    ok(dedup(&repo).args(["init", "--compression", "none"]));
    ok(dedup(&repo).arg("ingest").arg(&src));
    (src, repo)
}

fn assert_restores(repo: &Path, src: &Path, out: &Path) {
    ok(dedup(repo).args(["restore", "latest"]).arg(out));
    assert_eq!(describe(src), describe(out));
}

#[test]
fn a_missing_input_path_is_named_and_nothing_is_lost() {
    let tmp = tempfile::tempdir().unwrap();
    let (src, repo) = repo_with_snapshot(tmp.path());
    let missing = tmp.path().join("no-such-dir");
    let r = run(dedup(&repo).arg("ingest").arg(&missing));
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains(missing.to_str().unwrap()), "{}", r.stderr);
    assert_eq!(
        json(dedup(&repo).args(["snapshots", "--json"]))
            .as_array()
            .unwrap()
            .len(),
        1
    );
    assert_restores(&repo, &src, &tmp.path().join("out"));
}

#[test]
fn sockets_are_skipped_with_a_warning_and_fifos_are_stored_unopened() {
    let tmp = tempfile::tempdir().unwrap();
    let (src, repo) = (tmp.path().join("src"), tmp.path().join("repo"));
    fs::create_dir(&src).unwrap();
    fs::write(src.join("kept"), b"kept").unwrap();
    let status = std::process::Command::new("mkfifo")
        .arg(src.join("pipe"))
        .status()
        .unwrap();
    assert!(status.success());
    let _socket = std::os::unix::net::UnixListener::bind(src.join("sock")).unwrap();
    ok(dedup(&repo).arg("init"));
    let r = run(dedup(&repo).arg("ingest").arg(&src));
    assert_eq!(r.code, 1, "skipped entries make the exit 1: {}", r.stderr);
    assert!(!r.stderr.contains("pipe"), "{}", r.stderr);
    assert!(
        r.stderr.contains("sock") && r.stderr.contains("socket"),
        "{}",
        r.stderr
    );
    let out = tmp.path().join("out");
    ok(dedup(&repo).args(["restore", "latest"]).arg(&out));
    assert_eq!(fs::read(out.join("kept")).unwrap(), b"kept");
    // The FIFO comes back as a FIFO (made, never opened: nothing hangs).
    let pipe = fs::symlink_metadata(out.join("pipe")).unwrap();
    assert!(std::os::unix::fs::FileTypeExt::is_fifo(&pipe.file_type()));
    assert!(!out.join("sock").exists());
}

fn open_up(path: &Path) {
    fs::set_permissions(path, fs::Permissions::from_mode(0o777)).unwrap();
}

#[test]
fn an_unreadable_file_is_skipped_listed_and_the_snapshot_still_finishes() {
    let tmp = tempfile::tempdir().unwrap();
    open_up(tmp.path());
    let (src, repo) = (tmp.path().join("src"), tmp.path().join("repo"));
    fs::create_dir(&src).unwrap();
    fs::write(src.join("readable"), b"fine").unwrap();
    fs::write(src.join("secret"), b"no").unwrap();
    fs::set_permissions(src.join("secret"), fs::Permissions::from_mode(0o000)).unwrap();
    fs::create_dir(src.join("locked-dir")).unwrap();
    fs::write(src.join("locked-dir/inside"), b"x").unwrap();
    fs::set_permissions(src.join("locked-dir"), fs::Permissions::from_mode(0o000)).unwrap();
    for p in [&src, &src.join("readable")] {
        fs::set_permissions(p, fs::Permissions::from_mode(0o755)).unwrap();
    }
    ok(as_unprivileged(&repo).arg("init"));
    let r = run(as_unprivileged(&repo).arg("ingest").arg(&src));
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stderr.contains("secret"), "{}", r.stderr);
    assert!(r.stderr.contains("locked-dir"), "{}", r.stderr);
    assert!(
        r.stdout.contains("snapshot "),
        "the snapshot is still saved: {}",
        r.stdout
    );
    let list = json(as_unprivileged(&repo).args(["snapshots", "--json"]));
    let skipped = &list[0]["record"]["summary"]["skipped"];
    assert_eq!(skipped.as_array().unwrap().len(), 2, "{skipped}");
}

#[test]
fn unknown_snapshots_missing_repositories_and_newer_formats_are_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let (_src, repo) = repo_with_snapshot(tmp.path());

    let r = run(dedup(&repo)
        .args(["restore", "deadbeef"])
        .arg(tmp.path().join("o")));
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("no snapshot matches \"deadbeef\""),
        "{}",
        r.stderr
    );
    assert!(
        !tmp.path().join("o").exists(),
        "nothing written for an unknown snapshot"
    );

    let r = run(dedup(&repo).args(["report", "not-hex"]));
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("not-hex"), "{}", r.stderr);

    let nowhere = tmp.path().join("nowhere");
    let r = run(dedup(&nowhere).arg("snapshots"));
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("no dedup repository at") && r.stderr.contains("nowhere"),
        "{}",
        r.stderr
    );
    let r = run(dedup(&nowhere).arg("ingest").arg(tmp.path()));
    assert_eq!(r.code, 2, "an explicit --repo is never created implicitly");
    assert!(!nowhere.exists());

    let config = repo.join("config");
    let text = fs::read_to_string(&config).unwrap();
    fs::write(
        &config,
        text.replace("\"format_version\": 5", "\"format_version\": 99"),
    )
    .unwrap();
    let r = run(dedup(&repo).arg("snapshots"));
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("format version 99") && r.stderr.contains("reads versions 1 to 6"),
        "{}",
        r.stderr
    );
    fs::write(&config, text).unwrap();
    ok(dedup(&repo).arg("snapshots"));
}

#[test]
fn restore_refuses_a_non_empty_destination() {
    let tmp = tempfile::tempdir().unwrap();
    let (_src, repo) = repo_with_snapshot(tmp.path());
    let out = tmp.path().join("out");
    fs::create_dir(&out).unwrap();
    fs::write(out.join("precious"), b"keep me").unwrap();
    let r = run(dedup(&repo).args(["restore", "latest"]).arg(&out));
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("not empty"), "{}", r.stderr);
    assert_eq!(fs::read(out.join("precious")).unwrap(), b"keep me");
}

#[test]
fn a_chunk_whose_bytes_do_not_match_its_id_is_named_with_its_file() {
    let tmp = tempfile::tempdir().unwrap();
    let (src, repo) = (tmp.path().join("src"), tmp.path().join("repo"));
    fs::create_dir(&src).unwrap();
    let marker = b"UNIQUE-MARKER-0123456789-".repeat(200);
    fs::write(src.join("victim.txt"), &marker).unwrap();
    fs::write(src.join("bystander.txt"), b"unharmed").unwrap();
    ok(dedup(&repo).args(["init", "--compression", "none"]));
    ok(dedup(&repo).arg("ingest").arg(&src));
    // Flip one byte inside the victim's stored bytes.
    flip_a_byte_of(&marker, &packs(&repo));
    let out = tmp.path().join("out");
    let r = run(dedup(&repo).args(["restore", "latest"]).arg(&out));
    assert_eq!(r.code, 1, "a partial restore exits 1: {}", r.stderr);
    let id = dedup::ChunkId::of(&marker).to_hex();
    assert!(
        r.stderr.contains("victim.txt") && r.stderr.contains(&id),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("does not match"), "{}", r.stderr);
    assert_eq!(fs::read(out.join("bystander.txt")).unwrap(), b"unharmed");
}

#[test]
fn bad_chunker_sizes_and_options_are_refused_before_anything_is_created() {
    let tmp = tempfile::tempdir().unwrap();
    let cases: &[(&[&str], &str)] = &[
        (&["--avg-size", "5000"], "not a power of two"),
        (&["--avg-size", "0"], "outside"),
        (
            &["--avg-size", "64KiB", "--min-size", "128KiB"],
            "min <= avg <= max",
        ),
        (&["--chunker", "fixed", "--size", "0"], "outside"),
        (&["--chunker", "fixed", "--size", "1GiB"], "outside"),
        (&["--chunker", "fixed", "--avg-size", "16KiB"], "--size"),
        (&["--avg-size", "12XB"], "unknown size unit"),
        (&["--shards", "0"], "shard count"),
        (&["--compression-level", "20"], "compression level"),
        (&["--compression-level", "-8"], "compression level"),
    ];
    for (i, (args, message)) in cases.iter().enumerate() {
        let repo = tmp.path().join(format!("r{i}"));
        let r = run(dedup(&repo).arg("init").args(*args));
        assert_eq!(r.code, 2, "{args:?}: {}", r.stderr);
        assert!(r.stderr.contains(message), "{args:?}: {}", r.stderr);
        assert!(
            !repo.join("config").exists(),
            "{args:?} created a repository"
        );
    }
    let repo = tmp.path().join("ok");
    ok(dedup(&repo).arg("init"));
    let r = run(dedup(&repo).arg("init"));
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("already exists"), "{}", r.stderr);
    // A fast negative level is a level like any other, kept in the config.
    let fast = tmp.path().join("fast");
    ok(dedup(&fast).args(["init", "--compression-level", "-3"]));
    let config: serde_json::Value =
        serde_json::from_slice(&fs::read(fast.join("config")).unwrap()).unwrap();
    assert_eq!(config["zstd_level"], -3);
    // One edited out of range is a damaged config, named as such.
    let edited = fs::read_to_string(fast.join("config"))
        .unwrap()
        .replace("\"zstd_level\": -3", "\"zstd_level\": 99");
    fs::write(fast.join("config"), edited).unwrap();
    let r = run(dedup(&fast).arg("snapshots"));
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("compression level"), "{}", r.stderr);
}

#[test]
fn a_crafted_tree_with_an_escaping_name_is_refused_and_nothing_is_written_outside() {
    use dedup::format::snapshot::{Entry, EntryKind, Tree};
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("repo");
    ok(dedup(&repo).arg("init"));
    // Store a hostile tree through the library's blob door, then point a
    // crafted snapshot record at it.
    let tree = Tree {
        entries: vec![Entry {
            name: b"../escaped".to_vec(),
            mode: 0o644,
            mtime_s: 0,
            mtime_ns: 0,
            kind: EntryKind::Symlink {
                target: b"/etc/passwd".to_vec(),
            },
            attrs: dedup::format::snapshot::Attrs::default(),
        }],
    };
    let tree_id = {
        let r = dedup::Repository::open_with(&repo, &private()).unwrap();
        r.put(&tree.encode()).unwrap()
    };
    let record = dedup::SnapshotRecord {
        version: 1,
        time: "2026-01-01T00:00:00Z".into(),
        time_unix_ns: 1,
        hostname: "attacker".into(),
        username: "mallory".into(),
        paths: vec!["/".into()],
        tags: Vec::new(),
        parent: None,
        tree: tree_id,
        root: None,
        summary: dedup::IngestSummary::default(),
        prev: None,
    };
    let (id, bytes) = record.encode();
    fs::write(repo.join("snapshots").join(id.to_hex()), bytes).unwrap();
    // Opening as a writer adopts the record into the index.
    drop(dedup::Repository::open_with(&repo, &private()).unwrap());
    let out = tmp.path().join("dest/inner");
    let r = run(dedup(&repo).args(["restore", &id.to_hex()]).arg(&out));
    // A tree that does not decode is a damaged folder: named, and nothing
    // below it restored.
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr.contains("corrupt tree") && r.stderr.contains("../escaped"),
        "{}",
        r.stderr
    );
    assert!(!tmp.path().join("dest/escaped").exists());
}
