//! The command line on generated trees: ingest, restore, dedup, reports.

mod common;

use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use common::*;

fn init(repo: &std::path::Path, args: &[&str]) {
    ok(dedup(repo).arg("init").args(args));
}

#[test]
fn ingest_then_restore_is_identical_in_contents_modes_times_links_and_odd_names() {
    let tmp = tempfile::tempdir().unwrap();
    let (src, repo, out) = (
        tmp.path().join("src"),
        tmp.path().join("repo"),
        tmp.path().join("out"),
    );
    make_tree(&src, 1);
    init(&repo, &[]);
    let r = ok(dedup(&repo).arg("ingest").arg(&src));
    let id = snapshot_id(&r.stdout);
    ok(dedup(&repo).args(["restore", &id]).arg(&out));
    assert_eq!(describe(&src), describe(&out));
    // And by `latest`, into a folder that exists but is empty.
    let out2 = tmp.path().join("out2");
    fs::create_dir(&out2).unwrap();
    assert_restores(dedup(&repo), &src, &out2);
}

#[test]
fn fixed_mode_without_compression_restores_identically_too() {
    let tmp = tempfile::tempdir().unwrap();
    let (src, repo, out) = (
        tmp.path().join("src"),
        tmp.path().join("repo"),
        tmp.path().join("out"),
    );
    make_tree(&src, 2);
    init(
        &repo,
        &[
            "--chunker",
            "fixed",
            "--size",
            "4KiB",
            "--compression",
            "none",
            "--shards",
            "3",
        ],
    );
    ok(dedup(&repo).arg("ingest").arg(&src));
    assert_restores(dedup(&repo), &src, &out);
}

#[test]
fn a_second_ingest_of_the_same_tree_stores_no_new_data() {
    let tmp = tempfile::tempdir().unwrap();
    let (src, repo) = (tmp.path().join("src"), tmp.path().join("repo"));
    make_tree(&src, 3);
    init(&repo, &[]);
    let first = json(dedup(&repo).args(["ingest", "--json"]).arg(&src));
    let second = json(dedup(&repo).args(["ingest", "--json"]).arg(&src));
    let s1 = &first["record"]["summary"];
    let s2 = &second["record"]["summary"];
    assert!(s1["new_bytes"].as_u64().unwrap() > 3_000_000);
    // Nothing changed, so even the trees are the same objects.
    assert_eq!(s2["new_bytes"].as_u64().unwrap(), 0, "{s2}");
    assert_eq!(s2["reused_bytes"], s2["logical_bytes"]);
    assert_eq!(first["record"]["tree"], second["record"]["tree"]);
    let report = json(dedup(&repo).args(["report", "--json"]));
    assert_eq!(report["snapshots"], 2);
    let ratio = report["dedup_ratio"].as_f64().unwrap();
    assert!(
        ratio > 1.9,
        "two identical snapshots dedup about 2x, got {ratio}"
    );
}

/// New chunks after inserting one byte at the front of a 16 MiB file.
fn new_chunks_after_front_insert(init_args: &[&str]) -> (u64, u64) {
    let tmp = tempfile::tempdir().unwrap();
    let (src, repo) = (tmp.path().join("src"), tmp.path().join("repo"));
    fs::create_dir(&src).unwrap();
    let data = random_bytes(42, 16 << 20);
    fs::write(src.join("big"), &data).unwrap();
    init(&repo, init_args);
    let first = json(dedup(&repo).args(["ingest", "--json"]).arg(&src));
    let mut shifted = vec![b'!'];
    shifted.extend_from_slice(&data);
    fs::write(src.join("big"), &shifted).unwrap();
    let second = json(dedup(&repo).args(["ingest", "--json"]).arg(&src));
    let total = first["record"]["summary"]["total_chunks"].as_u64().unwrap();
    // New objects minus the two trees (root listing changed).
    let new = second["record"]["summary"]["new_chunks"].as_u64().unwrap() - 1;
    (new, total)
}

#[test]
fn one_byte_inserted_at_the_front_costs_a_few_chunks_with_fastcdc_and_nearly_all_with_fixed() {
    let (new, total) = new_chunks_after_front_insert(&["--avg-size", "16KiB"]);
    assert!(total > 500, "{total}");
    assert!(new <= 3, "fastcdc: {new} of {total} chunks were new");
    let (new, total) = new_chunks_after_front_insert(&["--chunker", "fixed", "--size", "16KiB"]);
    assert!(
        new as f64 >= 0.99 * total as f64,
        "fixed: only {new} of {total} chunks were new"
    );
}

#[test]
fn report_json_has_the_documented_keys_and_consistent_shards() {
    let tmp = tempfile::tempdir().unwrap();
    let (src, repo) = (tmp.path().join("src"), tmp.path().join("repo"));
    make_tree(&src, 4);
    init(&repo, &["--avg-size", "4KiB"]);
    ok(dedup(&repo).arg("ingest").arg(&src));
    let r = json(dedup(&repo).args(["report", "--json"]));
    for key in [
        "logical_bytes",
        "stored_bytes",
        "unique_chunks",
        "total_chunks",
        "dedup_ratio",
        "average_chunk_size",
        "compression_saving",
        "bloom",
        "shards",
    ] {
        assert!(r.get(key).is_some(), "missing {key} in {r}");
    }
    let shards = r["shards"].as_array().unwrap();
    assert_eq!(shards.len(), 4);
    let chunks: u64 = shards.iter().map(|s| s["chunks"].as_u64().unwrap()).sum();
    let bytes: u64 = shards.iter().map(|s| s["bytes"].as_u64().unwrap()).sum();
    assert_eq!(chunks, r["unique_chunks"].as_u64().unwrap());
    assert_eq!(bytes, r["stored_bytes"].as_u64().unwrap());
    assert!(
        shards.iter().all(|s| s["chunks"].as_u64().unwrap() > 0),
        "every shard gets chunks: {r}"
    );
    // Every chunk reference was looked up; a fresh repository's new chunks
    // were nearly all called "surely new" by the filter.
    let bloom = &r["bloom"];
    let lookups = bloom["lookups"].as_u64().unwrap();
    let skipped = bloom["skipped"].as_u64().unwrap();
    assert!(lookups >= r["total_chunks"].as_u64().unwrap(), "{bloom}");
    assert!(skipped + bloom["false_positives"].as_u64().unwrap() <= lookups);
    assert!(
        skipped as f64 >= 0.9 * r["unique_chunks"].as_u64().unwrap() as f64,
        "{bloom}"
    );
    // The snapshot report agrees on what the one snapshot holds.
    let s = json(dedup(&repo).args(["report", "latest", "--json"]));
    assert_eq!(s["logical_bytes"], r["logical_bytes"]);
    assert_eq!(s["unique_chunks"], r["unique_chunks"]);
    // Human output names the ratio.
    assert!(ok(dedup(&repo).arg("report"))
        .stdout
        .contains("dedup ratio"));
    let list = json(dedup(&repo).args(["snapshots", "--json"]));
    assert_eq!(list.as_array().unwrap().len(), 1);
}

#[test]
fn shards_outside_the_repository_receive_the_packs() {
    let tmp = tempfile::tempdir().unwrap();
    let (src, repo, out) = (
        tmp.path().join("src"),
        tmp.path().join("repo"),
        tmp.path().join("out"),
    );
    let (a, b) = (tmp.path().join("disk-a"), tmp.path().join("disk-b"));
    make_tree(&src, 5);
    init(
        &repo,
        &[
            "--shard",
            a.to_str().unwrap(),
            "--shard",
            b.to_str().unwrap(),
            "--avg-size",
            "4KiB",
        ],
    );
    ok(dedup(&repo).arg("ingest").arg(&src));
    for d in [&a, &b] {
        let n = walkdir_count(d);
        assert!(n > 0, "{} holds no pack", d.display());
    }
    assert!(!repo.join("shards").exists());
    assert_restores(dedup(&repo), &src, &out);
}

fn walkdir_count(dir: &std::path::Path) -> usize {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let p = e.unwrap().path();
            if p.is_dir() {
                walkdir_count(&p)
            } else {
                usize::from(p.extension().is_some_and(|x| x == "pack"))
            }
        })
        .sum()
}

#[test]
fn several_paths_are_stored_under_their_names() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("repo");
    let (a, b) = (tmp.path().join("alpha"), tmp.path().join("beta.txt"));
    fs::create_dir(&a).unwrap();
    fs::write(a.join("x"), b"x").unwrap();
    fs::write(&b, b"beta").unwrap();
    init(&repo, &[]);
    ok(dedup(&repo).arg("ingest").arg(&a).arg(&b));
    let out = tmp.path().join("out");
    ok(dedup(&repo).args(["restore", "latest"]).arg(&out));
    assert_eq!(fs::read(out.join("alpha/x")).unwrap(), b"x");
    assert_eq!(fs::read(out.join("beta.txt")).unwrap(), b"beta");
    // Two paths with the same base name cannot share the root.
    let other = tmp.path().join("elsewhere/alpha");
    fs::create_dir_all(&other).unwrap();
    let r = run(dedup(&repo).arg("ingest").arg(&a).arg(&other));
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("two paths share the name \"alpha\""),
        "{}",
        r.stderr
    );
}

#[test]
fn put_and_get_a_blob_by_content_id() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("repo");
    init(&repo, &[]);
    let file = tmp.path().join("blob");
    let data = random_bytes(9, 100_000);
    fs::write(&file, &data).unwrap();
    let id = ok(dedup(&repo).arg("put").arg(&file))
        .stdout
        .trim()
        .to_string();
    assert_eq!(id, dedup::ChunkId::of(&data).to_hex());
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_dedup"))
        .arg("--repo")
        .arg(&repo)
        .args(["get", &id])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(out.stdout, data);
}

#[test]
fn the_default_repository_is_created_on_first_ingest_in_the_data_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    fs::create_dir(&src).unwrap();
    fs::write(src.join("f"), b"content").unwrap();
    let home = tmp.path().join("home");
    let run_here = |args: &[&str]| {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_dedup"));
        c.env_remove("DEDUP_REPO")
            .env_remove("DEDUP_CACHE")
            .env("HOME", &home)
            .env("XDG_DATA_HOME", home.join("data"))
            .env("XDG_CACHE_HOME", home.join("cache"))
            .args(args);
        c
    };
    ok(run_here(&["ingest"]).arg(&src));
    assert!(home.join("data/dedup/repo/config").exists());
    let r = ok(&mut run_here(&["report"]));
    assert!(r.stdout.contains("snapshots:          1"), "{}", r.stdout);
    // $DEDUP_REPO wins over the default, and must exist.
    let r = run(run_here(&["snapshots"]).env("DEDUP_REPO", tmp.path().join("nope")));
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("no dedup repository at"), "{}", r.stderr);
}

#[test]
fn unchanged_files_are_not_reread_and_any_change_is_noticed() {
    let tmp = tempfile::tempdir().unwrap();
    let (src, repo) = (tmp.path().join("src"), tmp.path().join("repo"));
    make_tree(&src, 7);
    age_files(&src);
    init(&repo, &[]);
    let first = json(dedup(&repo).args(["ingest", "--json"]).arg(&src));
    let files = first["record"]["summary"]["files"].as_u64().unwrap();
    assert_eq!(first["record"]["summary"]["unchanged_files"], 0);
    let second = json(dedup(&repo).args(["ingest", "--json"]).arg(&src));
    assert_eq!(
        second["record"]["summary"]["unchanged_files"]
            .as_u64()
            .unwrap(),
        files
    );
    assert_eq!(first["record"]["tree"], second["record"]["tree"]);

    // Same size and mtime, new content: the change time gives it away.
    let victim = src.join("src/deep/file-05.dat");
    let meta = fs::metadata(&victim).unwrap();
    let mut data = fs::read(&victim).unwrap();
    data[0] ^= 1;
    fs::write(&victim, &data).unwrap();
    filetime::set_file_mtime(
        &victim,
        filetime::FileTime::from_last_modification_time(&meta),
    )
    .unwrap();
    let third = json(dedup(&repo).args(["ingest", "--json"]).arg(&src));
    assert_eq!(
        third["record"]["summary"]["unchanged_files"]
            .as_u64()
            .unwrap(),
        files - 1
    );
    let out = tmp.path().join("out");
    assert_restores(dedup(&repo), &src, &out);

    // --rehash reads everything again, and finds the same tree.
    let fourth = json(
        dedup(&repo)
            .args(["ingest", "--json", "--rehash"])
            .arg(&src),
    );
    assert_eq!(fourth["record"]["summary"]["unchanged_files"], 0);
    assert_eq!(fourth["record"]["tree"], third["record"]["tree"]);
}

#[test]
fn a_file_cache_entry_whose_chunks_were_collected_is_not_trusted() {
    let tmp = tempfile::tempdir().unwrap();
    let (src, repo) = (tmp.path().join("src"), tmp.path().join("repo"));
    make_tree(&src, 8);
    age_files(&src);
    init(&repo, &[]);
    ok(dedup(&repo).arg("ingest").arg(&src));
    let id = json(dedup(&repo).args(["snapshots", "--json"]))[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    ok(dedup(&repo).args(["forget", &id]));
    ok(dedup(&repo).arg("gc"));
    let again = json(dedup(&repo).args(["ingest", "--json"]).arg(&src));
    // Every chunk was collected: only the empty file, which has none, is
    // taken from the cache.
    assert_eq!(again["record"]["summary"]["unchanged_files"], 1);
    let out = tmp.path().join("out");
    assert_restores(dedup(&repo), &src, &out);
    ok(dedup(&repo).args(["verify", "--read-data"]));
}

#[test]
fn put_refuses_a_blob_larger_than_it_takes_before_reading_it() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("repo");
    init(&repo, &[]);
    let big = tmp.path().join("big");
    // Sparse: 2 GiB that costs no disk.
    fs::File::create(&big).unwrap().set_len(2 << 30).unwrap();
    let r = run(dedup(&repo).arg("put").arg(&big));
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("more than put takes"), "{}", r.stderr);
    let report = json(dedup(&repo).args(["report", "--json"]));
    assert_eq!(report["unique_chunks"], 0);
}

#[test]
fn a_snapshot_report_counts_a_repeated_folder_twice_and_its_tree_once() {
    let tmp = tempfile::tempdir().unwrap();
    let (src, repo) = (tmp.path().join("src"), tmp.path().join("repo"));
    for copy in ["a", "b"] {
        fs::create_dir_all(src.join(copy).join("inner")).unwrap();
        fs::write(src.join(copy).join("one.bin"), random_bytes(7, 100_000)).unwrap();
        fs::write(src.join(copy).join("inner/two.txt"), b"twice").unwrap();
    }
    // The copies are the same folder only if their times agree to the
    // nanosecond; two writes a clock tick apart would not.
    let t = filetime::FileTime::from_unix_time(1_700_000_000, 0);
    for copy in ["a", "b"] {
        for entry in ["one.bin", "inner/two.txt", "inner"] {
            filetime::set_file_times(src.join(copy).join(entry), t, t).unwrap();
        }
    }
    ok(dedup(&repo).arg("init"));
    ok(dedup(&repo).arg("ingest").arg(&src));
    let s = json(dedup(&repo).args(["report", "latest", "--json"]));
    assert_eq!(s["files"], 4, "{s}");
    assert_eq!(s["logical_bytes"], 2 * (100_000 + 5), "{s}");
    // The root, and `a` = `b` and their `inner`, stored once each.
    assert_eq!(s["tree_objects"], 3, "{s}");
    assert_eq!(s["unique_bytes"], 100_000 + 5, "{s}");
}

#[test]
fn every_command_that_prints_exits_quietly_into_a_closed_pipe() {
    // `dedup snapshots | head -1`: the reader is gone before dedup writes.
    // The pipe's read end is closed before the command starts, so its
    // first write meets EPIPE every time.
    let tmp = tempfile::tempdir().unwrap();
    let (src, repo) = (tmp.path().join("src"), tmp.path().join("repo"));
    make_tree(&src, 21);
    ok(dedup(&repo).arg("init"));
    ok(dedup(&repo).arg("ingest").arg(&src));
    let blob = tmp.path().join("blob");
    std::fs::write(&blob, b"blob bytes").unwrap();
    let id = ok(dedup(&repo).arg("put").arg(&blob))
        .stdout
        .trim()
        .to_string();
    let commands: &[&[&str]] = &[
        &["snapshots"],
        &["snapshots", "--json"],
        &["report"],
        &["report", "latest", "--json"],
        &["verify"],
        &["gc", "--dry-run"],
        &["shard", "list"],
        &["rebalance", "--dry-run"],
        &["get", &id],
        &["shard", "list", "--json"],
        &["ls", "-lR", "latest"],
        &["ls", "--json", "-R", "latest"],
        &["find", "*"],
        &["find", "--json", "*"],
        &["diff", "latest", "latest", "--json"],
        &["cat", "latest:src/small.txt"],
        &["forget", "--keep-last", "1", "--dry-run"],
        &["forget", "--keep-last", "1", "--dry-run", "--json"],
        &["ingest", "--dry-run", src.to_str().unwrap()],
        &["ingest", "--dry-run", "--json", src.to_str().unwrap()],
        &["repair", "index", "--json"],
    ];
    for args in commands {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let out = dedup(&repo).args(*args).stdout(writer).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}

#[test]
fn setuid_and_setgid_bits_come_back_only_with_their_owner() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let (src, repo, out) = (
        tmp.path().join("src"),
        tmp.path().join("repo"),
        tmp.path().join("out"),
    );
    fs::create_dir(&src).unwrap();
    for (name, mode) in [("suid", 0o4755), ("sgid", 0o2750), ("plain", 0o640)] {
        fs::write(src.join(name), name).unwrap();
        fs::set_permissions(src.join(name), fs::Permissions::from_mode(mode)).unwrap();
    }
    ok(dedup(&repo).arg("init"));
    ok(dedup(&repo).arg("ingest").arg(&src));
    let r = ok(dedup(&repo).args(["restore", "latest"]).arg(&out));
    let mode = |name: &str| fs::metadata(out.join(name)).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode("plain"), 0o640);
    // Root restores owners, so the bits stay; anyone else owns what they
    // restore, so the bits go, with a warning (see tests/attributes.rs
    // for a normal user's restore when the tests run as root).
    let root = euid_is_root();
    assert_eq!(mode("suid"), if root { 0o4755 } else { 0o755 });
    assert_eq!(mode("sgid"), if root { 0o2750 } else { 0o750 });
    assert_eq!(
        r.stderr.contains("setuid/setgid bits not restored"),
        !root,
        "{}",
        r.stderr
    );
}

#[test]
fn an_ingest_of_a_folder_holding_the_repository_does_not_store_the_repository() {
    // `dedup ingest ~` with the default repository under ~/.local/share.
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path().join("home");
    make_tree(&home.join("work"), 41);
    let repo = home.join(".local/share/dedup/repo");
    let mut cmd = dedup(&repo);
    // The cache under the same home, as ~/.cache would be.
    cmd.env("DEDUP_CACHE", home.join(".cache/dedup"));
    ok(cmd.arg("init"));
    let ingest = |home: &std::path::Path| {
        let mut cmd = dedup(&repo);
        cmd.env("DEDUP_CACHE", home.join(".cache/dedup"));
        ok(cmd.args(["ingest", "--json"]).arg(home))
    };
    let first = ingest(&home);
    assert!(
        first.stderr.contains("own folder; not stored"),
        "{}",
        first.stderr
    );
    let second = ingest(&home);
    let record: serde_json::Value = serde_json::from_str(&second.stdout).unwrap();
    let new = record["record"]["summary"]["new_bytes"].as_u64().unwrap();
    assert!(new < 64 * 1024, "the second ingest stored {new} new bytes");
    let out = tmp.path().join("out");
    ok(dedup(&repo).args(["restore", "latest"]).arg(&out));
    assert!(out.join("work").exists());
    assert!(!out.join(".local/share/dedup/repo").exists());
    // The cache's own folder is passed over (its parent may stay).
    let cached = fs::read_dir(out.join(".cache/dedup")).map_or(0, Iterator::count);
    assert_eq!(cached, 0, "the cache was stored");
}

/// Rewrites a file in place, same size, the first time progress moves:
/// the ingest has read it by then.
struct RewriteDuringRead {
    victim: std::path::PathBuf,
    done: std::sync::atomic::AtomicBool,
    warnings: std::sync::Mutex<Vec<String>>,
}

impl dedup::Progress for RewriteDuringRead {
    fn advance(&self, _bytes: u64) {
        if !self.done.swap(true, std::sync::atomic::Ordering::SeqCst) {
            let mut data = fs::read(&self.victim).unwrap();
            data[0] ^= 1;
            fs::write(&self.victim, &data).unwrap();
            // A modification time the walk cannot have seen, whatever the
            // clock's granularity.
            let later = filetime::FileTime::from_unix_time(2_000_000_000, 0);
            filetime::set_file_mtime(&self.victim, later).unwrap();
        }
    }
    fn warn(&self, message: &str) {
        self.warnings.lock().unwrap().push(message.to_string());
    }
}

#[test]
fn a_same_size_change_during_the_read_is_noticed_and_not_cached() {
    let tmp = tempfile::tempdir().unwrap();
    let (src, path) = (tmp.path().join("src"), tmp.path().join("repo"));
    fs::create_dir(&src).unwrap();
    let victim = src.join("only");
    fs::write(&victim, random_bytes(3, 10_000)).unwrap();
    age_files(&src);
    let repo =
        dedup::Repository::init_with(&path, &dedup::InitOptions::default(), &private()).unwrap();
    let progress = RewriteDuringRead {
        victim: victim.clone(),
        done: false.into(),
        warnings: std::sync::Mutex::default(),
    };
    repo.ingest(std::slice::from_ref(&src), &progress).unwrap();
    let warnings = progress.warnings.lock().unwrap().join("\n");
    assert!(warnings.contains("modified while being read"), "{warnings}");
    // Not vouched for by the cache: the next ingest reads it again.
    let again = repo
        .ingest(std::slice::from_ref(&src), &dedup::Quiet)
        .unwrap();
    assert_eq!(again.record.summary.unchanged_files, 0);
}

#[test]
fn many_copies_of_one_tree_restore_each_with_its_own_modes_and_times() {
    // Releases of a source tree: the same files again and again, which a
    // restore fetches once and writes to every copy.
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let (src, repo, out) = (
        tmp.path().join("src"),
        tmp.path().join("repo"),
        tmp.path().join("out"),
    );
    for release in 0..4u32 {
        let root = src.join(format!("release-{release}"));
        common::make_tree(&root, 11);
        // Each copy differs a little: one file, and modes and times.
        fs::write(root.join("src/version"), format!("{release}\n")).unwrap();
        let t = filetime::FileTime::from_unix_time(1_600_000_000 + i64::from(release), release);
        filetime::set_file_mtime(root.join("src/deep/file-02.dat"), t).unwrap();
        fs::set_permissions(
            root.join("src/deep/file-03.dat"),
            fs::Permissions::from_mode(0o600 + release),
        )
        .unwrap();
    }
    // A folder that takes away its own write and search bits, inside one
    // that takes away write: made, filled and then closed, deepest first.
    let locked = src.join("release-0/locked");
    fs::create_dir_all(locked.join("inner")).unwrap();
    fs::write(locked.join("inner/kept"), b"kept").unwrap();
    fs::set_permissions(locked.join("inner"), fs::Permissions::from_mode(0o400)).unwrap();
    fs::set_permissions(&locked, fs::Permissions::from_mode(0o500)).unwrap();
    ok(dedup(&repo).arg("init"));
    ok(dedup(&repo).arg("ingest").arg(&src));
    ok(dedup(&repo).args(["restore", "latest"]).arg(&out));
    // Open the locked folders again so both trees can be read and removed.
    for root in [&src, &out] {
        let locked = root.join("release-0/locked");
        let mode = fs::metadata(&locked).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, 0o500, "{}", locked.display());
        fs::set_permissions(&locked, fs::Permissions::from_mode(0o700)).unwrap();
        let inner = locked.join("inner");
        let mode = fs::metadata(&inner).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, 0o400, "{}", inner.display());
        let t = filetime::FileTime::from_last_modification_time(&fs::metadata(&inner).unwrap());
        fs::set_permissions(&inner, fs::Permissions::from_mode(0o700)).unwrap();
        filetime::set_file_mtime(&inner, t).unwrap();
        let t = filetime::FileTime::from_last_modification_time(&fs::metadata(&locked).unwrap());
        filetime::set_file_mtime(&locked, t).unwrap();
    }
    assert_eq!(common::describe(&out), common::describe(&src));
}

#[test]
fn thousands_of_files_in_many_small_packs_are_all_cached() {
    // Packs small enough that many commit during the walk, in every shard.
    let tmp = tempfile::tempdir().unwrap();
    let (src, repo) = (tmp.path().join("src"), tmp.path().join("repo"));
    for folder in 0..10 {
        let dir = src.join(format!("folder-{folder}"));
        fs::create_dir_all(&dir).unwrap();
        for i in 0..600 {
            fs::write(
                dir.join(format!("{i}")),
                format!("file {folder}/{i}\n").repeat(40),
            )
            .unwrap();
        }
    }
    age_files(&src);
    init(&repo, &["--pack-size", "64KiB"]);
    let first = json(dedup(&repo).args(["ingest", "--json"]).arg(&src));
    assert_eq!(first["record"]["summary"]["files"], 6000);
    let again = json(dedup(&repo).args(["ingest", "--json"]).arg(&src));
    assert_eq!(again["record"]["summary"]["unchanged_files"], 6000);
    assert_eq!(again["record"]["summary"]["new_chunks"], 0);
}

/// A repository holding one snapshot of `make_tree`: (tmp, src, repo, id).
fn one_snapshot() -> (tempfile::TempDir, PathBuf, PathBuf, String) {
    let tmp = tempfile::tempdir().unwrap();
    let (src, repo) = (tmp.path().join("src"), tmp.path().join("repo"));
    make_tree(&src, 21);
    init(&repo, &[]);
    let id = snapshot_id(&ok(dedup(&repo).arg("ingest").arg(&src)).stdout);
    (tmp, src, repo, id)
}

#[test]
fn ls_and_cat_look_inside_a_snapshot() {
    let (_tmp, src, repo, id) = one_snapshot();
    let short = &id[..10];

    // ls: the root's entries, by name, with a leading slash.
    let root = ok(dedup(&repo).args(["ls", "latest"])).stdout;
    let names: Vec<&str> = root.lines().collect();
    assert!(
        names.contains(&"/src") && names.contains(&"/empty-file"),
        "{root}"
    );
    assert!(
        !names.iter().any(|n| n.starts_with("/src/")),
        "not recursive: {root}"
    );
    // A folder by path, long: type and permissions, size, time, path.
    let long = ok(dedup(&repo).args(["ls", "--long", &format!("{short}:/src")])).stdout;
    let run_sh = long.lines().find(|l| l.ends_with(" /src/run.sh")).unwrap();
    assert!(run_sh.starts_with("-rwxr-x---"), "{run_sh}");
    assert!(run_sh.contains(" 18 "), "{run_sh}");
    let small = long
        .lines()
        .find(|l| l.ends_with(" /src/small.txt"))
        .unwrap();
    assert!(small.starts_with("-r--------"), "{small}");
    assert!(
        long.lines()
            .any(|l| l.starts_with("drwx") && l.ends_with(" /src/deep")),
        "{long}"
    );
    // Recursive, as JSON: every file of the tree, with its size.
    let all = json(dedup(&repo).args(["ls", "--recursive", "--json", "latest"]));
    let files: Vec<&serde_json::Value> = all
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "file")
        .collect();
    let on_disk = describe(&src)
        .iter()
        .filter(|l| l.contains(" file "))
        .count();
    assert_eq!(files.len(), on_disk);
    let big = files
        .iter()
        .find(|e| e["path"] == "/src/deep/er/still/big.bin")
        .unwrap();
    assert_eq!(big["size"], 3_000_000);
    let link = all
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["path"] == "/link-rel")
        .unwrap();
    assert_eq!(link["type"], "symlink");
    assert_eq!(link["target"], "src/small.txt");
    // One file by path: itself.
    let one = ok(dedup(&repo).args(["ls", "latest:src/small.txt"])).stdout;
    assert_eq!(one.trim(), "/src/small.txt");

    // cat: the bytes, checked.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_dedup"))
        .env("DEDUP_CACHE", common::cache_of(&repo))
        .arg("--repo")
        .arg(&repo)
        .args(["cat", "latest:/src/deep/er/still/big.bin"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(
        out.stdout,
        fs::read(src.join("src/deep/er/still/big.bin")).unwrap()
    );
    // A closed pipe is no error and no panic.
    let r = run(std::process::Command::new("bash").arg("-c").arg(format!(
        "DEDUP_CACHE={} {} --repo {} cat latest:src/deep/er/still/big.bin | head -c 10 >/dev/null; echo \"status ${{PIPESTATUS[0]}}\"",
        common::cache_of(&repo).display(),
        env!("CARGO_BIN_EXE_dedup"),
        repo.display()
    )));
    assert!(r.stdout.contains("status 0"), "{} {}", r.stdout, r.stderr);
    assert!(!r.stderr.contains("panicked"), "{}", r.stderr);

    // Paths that lead nowhere, and what is not a file, are clear errors.
    for (target, message) in [
        ("latest:src/nope", "has no \"src/nope\": no /src/nope"),
        ("latest:src/small.txt/x", "/src/small.txt is not a folder"),
        ("latest:../etc", "`..`"),
    ] {
        let r = run(dedup(&repo).args(["ls", target]));
        assert_eq!(r.code, 2, "{target}: {}", r.stderr);
        assert!(r.stderr.contains(message), "{target}: {}", r.stderr);
    }
    let r = run(dedup(&repo).args(["cat", "latest:src"]));
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("is not a file"), "{}", r.stderr);
}

#[test]
fn names_that_are_not_utf8_or_hold_newlines_are_printed_escaped_and_taken_back() {
    let (tmp, src, repo, _) = one_snapshot();
    // `make_tree` made `latin1-\xe9t\xe9` (Latin-1 bytes) and a name
    // with a space and a newline.
    let root = ok(dedup(&repo).args(["ls", "latest"])).stdout;
    assert!(root.lines().any(|l| l == "/latin1-\\xe9t\\xe9"), "{root}");
    assert!(
        root.lines().any(|l| l == "/with space\\nand newline"),
        "{root}"
    );
    let listed = json(dedup(&repo).args(["ls", "--json", "latest"]));
    assert!(
        listed
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["path"] == "/latin1-\\xe9t\\xe9"),
        "{listed}"
    );
    // What ls printed names the entry for cat, ls and restore.
    let cat = ok(dedup(&repo).args(["cat", "latest:latin1-\\xe9t\\xe9"]));
    assert_eq!(cat.stdout, "bytes");
    let one = ok(dedup(&repo).args(["ls", "latest:with space\\nand newline"])).stdout;
    assert_eq!(one, "/with space\\nand newline\n");
    let out = tmp.path().join("one");
    ok(dedup(&repo)
        .args(["restore", "latest:latin1-\\xe9t\\xe9"])
        .arg(&out));
    let name = std::ffi::OsStr::from_bytes(b"latin1-\xe9t\xe9");
    assert_eq!(
        fs::read(out.join(name)).unwrap(),
        fs::read(src.join(name)).unwrap()
    );
    let r = run(dedup(&repo).args(["cat", "latest:bad\\q"]));
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("\\xHH"), "{}", r.stderr);
}

#[test]
fn restore_of_a_path_brings_back_a_folder_or_a_file_under_its_name() {
    let (tmp, src, repo, id) = one_snapshot();
    let short = &id[..10];
    let part = tmp.path().join("part");
    ok(dedup(&repo).args(["restore", "latest:src/deep"]).arg(&part));
    assert_eq!(describe(&part), describe(&src.join("src/deep")));
    let one = tmp.path().join("one");
    ok(dedup(&repo)
        .args(["restore", &format!("{short}:/src/run.sh")])
        .arg(&one));
    assert_eq!(
        describe(&one),
        vec![describe(&src.join("src"))
            .into_iter()
            .find(|l| l.starts_with("run.sh "))
            .unwrap()]
    );
    let link = tmp.path().join("link");
    ok(dedup(&repo).args(["restore", "latest:link-dir"]).arg(&link));
    assert_eq!(
        fs::read_link(link.join("link-dir")).unwrap(),
        std::path::Path::new("src")
    );
}

#[test]
fn find_names_the_snapshots_that_hold_each_match() {
    let (_tmp, src, repo, first) = one_snapshot();
    // A second snapshot: one file gone, one added.
    fs::remove_file(src.join("src/deep/file-05.dat")).unwrap();
    fs::write(src.join("src/deep/file-99.dat"), b"new").unwrap();
    let second = snapshot_id(&ok(dedup(&repo).arg("ingest").arg(&src)).stdout);
    let text = ok(dedup(&repo).args(["find", "file-0[5-6].dat"])).stdout;
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(
        lines[0].starts_with("/src/deep/file-05.dat  (1 snapshot: "),
        "{text}"
    );
    assert!(lines[0].ends_with(&format!("{})", &first[..16])), "{text}");
    assert!(
        lines[1].starts_with("/src/deep/file-06.dat  (2 snapshots: "),
        "{text}"
    );
    // By path: `*` stays within one folder, `**` crosses them.
    let one_level = ok(dedup(&repo).args(["find", "/src/*.dat"])).stdout;
    assert!(one_level.is_empty(), "{one_level}");
    let any_depth = json(dedup(&repo).args(["find", "--json", "/src/**/big.bin"]));
    assert_eq!(any_depth[0]["path"], "/src/deep/er/still/big.bin");
    assert_eq!(any_depth[0]["size"], 3_000_000);
    assert_eq!(
        any_depth[0]["snapshots"],
        serde_json::json!([first, second])
    );
    // Only the snapshots asked for.
    let only = json(dedup(&repo).args(["find", "--json", "--snapshot", "latest", "file-9*"]));
    assert_eq!(only[0]["snapshots"], serde_json::json!([second]));
    let none = json(dedup(&repo).args(["find", "--json", "--snapshot", &first[..8], "file-9*"]));
    assert_eq!(none, serde_json::json!([]));
    let r = run(dedup(&repo).args(["find", "["]));
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("bad pattern"), "{}", r.stderr);
}

#[test]
fn diff_lists_what_was_added_removed_and_changed_between_two_snapshots() {
    use std::os::unix::fs::PermissionsExt;
    let (_tmp, src, repo, first) = one_snapshot();
    fs::remove_file(src.join("src/deep/file-05.dat")).unwrap();
    fs::create_dir(src.join("src/new-dir")).unwrap();
    fs::write(src.join("src/new-dir/inside"), b"new").unwrap();
    fs::write(src.join("src/small.txt.bak"), b"added").unwrap();
    fs::set_permissions(src.join("src/small.txt"), fs::Permissions::from_mode(0o600)).unwrap();
    fs::write(src.join("src/run.sh"), b"#!/bin/sh\necho changed\n").unwrap();
    fs::remove_file(src.join("empty-file")).unwrap();
    fs::create_dir(src.join("empty-file")).unwrap();
    let second = snapshot_id(&ok(dedup(&repo).arg("ingest").arg(&src)).stdout);
    let text = ok(dedup(&repo).args(["diff", &first[..12], &second[..12]])).stdout;
    let lines: Vec<&str> = text.lines().take_while(|l| !l.is_empty()).collect();
    for expected in [
        "T    /empty-file",
        "-    /src/deep/file-05.dat",
        "+    /src/new-dir",
        "+    /src/new-dir/inside",
        "M    /src/run.sh",
        "U    /src/small.txt",
        "+    /src/small.txt.bak",
    ] {
        assert!(lines.contains(&expected), "{expected} missing from\n{text}");
    }
    // The folders around the changes changed times; nothing else is listed.
    let files_listed = lines
        .iter()
        .filter(|l| !l.ends_with("/src") && !l.ends_with("/src/deep"))
        .count();
    assert_eq!(files_listed, 7, "{text}");
    assert!(text.contains("3 added, 1 removed, 5 changed"), "{text}");
    // JSON: both sides of a change.
    let report = json(dedup(&repo).args(["diff", "--json", &first, &second]));
    let run_sh = report["changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["path"] == "/src/run.sh")
        .unwrap();
    assert_eq!(run_sh["change"], "content");
    assert_eq!(run_sh["before"]["size"], 18);
    assert_eq!(run_sh["after"]["size"], 23);
    // A snapshot against itself: nothing.
    let same = json(dedup(&repo).args(["diff", "--json", &second, "latest"]));
    assert_eq!(same["changes"], serde_json::json!([]));
}

#[test]
fn init_put_shard_and_repair_print_json_when_asked() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("repo");
    let created = json(dedup(&repo).args(["init", "--json", "--shards", "2"]));
    assert_eq!(created["config"]["shards"].as_array().unwrap().len(), 2);
    let blob = tmp.path().join("blob");
    fs::write(&blob, b"twelve bytes").unwrap();
    let put = json(dedup(&repo).args(["put", "--json"]).arg(&blob));
    assert_eq!(put["bytes"], 12);
    assert_eq!(put["id"], dedup::ChunkId::of(b"twelve bytes").to_hex());
    let shards = json(dedup(&repo).args(["shard", "list", "--json"]));
    assert_eq!(shards.as_array().unwrap().len(), 2);
    let weighted = json(dedup(&repo).args(["shard", "--json", "set-weight", "1", "3"]));
    assert_eq!(weighted, serde_json::json!({ "shard": 1, "weight": 3 }));
    let repaired = json(dedup(&repo).args(["repair", "index", "--json"]));
    assert_eq!(repaired["objects"], 1);
}
