//! Hostile and awkward input trees: each is stored or refused with a clear
//! message, never a panic or a hang.

mod common;

use std::fs;
use std::io::Write;
use std::os::unix::fs::symlink;

use common::*;

#[test]
fn symlink_loops_are_stored_as_links_and_never_followed() {
    let tmp = tempfile::tempdir().unwrap();
    let (src, repo, out) = (
        tmp.path().join("src"),
        tmp.path().join("repo"),
        tmp.path().join("out"),
    );
    fs::create_dir(&src).unwrap();
    symlink("b", src.join("a")).unwrap();
    symlink("a", src.join("b")).unwrap();
    symlink(".", src.join("self")).unwrap();
    symlink("..", src.join("up")).unwrap();
    ok(dedup(&repo).arg("init"));
    ok(dedup(&repo).arg("ingest").arg(&src));
    assert_restores(dedup(&repo), &src, &out);
}

#[test]
fn a_sparse_file_costs_almost_nothing_and_restores_identically() {
    let tmp = tempfile::tempdir().unwrap();
    let (src, repo, out) = (
        tmp.path().join("src"),
        tmp.path().join("repo"),
        tmp.path().join("out"),
    );
    fs::create_dir(&src).unwrap();
    let f = fs::File::create(src.join("sparse")).unwrap();
    f.set_len(256 << 20).unwrap();
    drop(f);
    let mut f = fs::OpenOptions::new()
        .append(true)
        .open(src.join("sparse"))
        .unwrap();
    f.write_all(b"the end").unwrap();
    ok(dedup(&repo).arg("init"));
    let r = json(dedup(&repo).args(["ingest", "--json"]).arg(&src));
    let stored = r["record"]["summary"]["new_stored_bytes"].as_u64().unwrap();
    assert!(
        stored < 64 << 10,
        "256 MiB of zeros stored in {stored} bytes"
    );
    assert_restores(dedup(&repo), &src, &out);
}

#[test]
fn a_large_sparse_file_is_ingested_without_reading_its_holes() {
    use std::os::unix::fs::{FileExt, MetadataExt};
    let tmp = tempfile::tempdir().unwrap();
    let (src, repo, out) = (
        tmp.path().join("src"),
        tmp.path().join("repo"),
        tmp.path().join("out"),
    );
    fs::create_dir(&src).unwrap();
    // 4 GiB, of which 2 MiB are data: one MiB at 1 GiB, one at the end.
    let size = 4u64 << 30;
    let image = src.join("disk.img");
    let f = fs::File::create(&image).unwrap();
    f.set_len(size).unwrap();
    let (first, last) = (random_bytes(31, 1 << 20), random_bytes(32, 1 << 20));
    f.write_all_at(&first, 1 << 30).unwrap();
    f.write_all_at(&last, size - (1 << 20)).unwrap();
    drop(f);
    ok(dedup(&repo).arg("init"));
    // The shell reaps dedup, so its own read count then includes dedup's.
    let counted = run(std::process::Command::new("sh")
        .arg("-c")
        .arg(r#""$0" --repo "$1" ingest "$2" >/dev/null || exit 9; grep '^rchar' /proc/$$/io"#)
        .arg(env!("CARGO_BIN_EXE_dedup"))
        .arg(&repo)
        .arg(&src)
        .env("DEDUP_CACHE", cache_of(&repo)));
    assert_eq!(counted.code, 0, "{}", counted.stderr);
    let read: u64 = counted.stdout.trim()["rchar:".len()..]
        .trim()
        .parse()
        .unwrap();
    assert!(
        read < 256 << 20,
        "{read} bytes read for 2 MiB of data in 4 GiB"
    );
    ok(dedup(&repo).args(["restore", "latest"]).arg(&out));
    let back = fs::File::open(out.join("disk.img")).unwrap();
    let meta = back.metadata().unwrap();
    assert_eq!(meta.len(), size);
    assert!(meta.blocks() * 512 < 64 << 20, "restored sparse");
    let mut buf = vec![0; 1 << 20];
    back.read_exact_at(&mut buf, 1 << 30).unwrap();
    assert!(buf == first);
    back.read_exact_at(&mut buf, size - (1 << 20)).unwrap();
    assert!(buf == last);
    back.read_exact_at(&mut buf, 1 << 29).unwrap();
    assert!(buf.iter().all(|&b| b == 0));
}

#[test]
fn a_tree_deeper_than_the_system_allows_a_path_is_stored_and_restored_whole() {
    let tmp = tempfile::tempdir().unwrap();
    let (src, repo, out) = (
        tmp.path().join("src"),
        tmp.path().join("repo"),
        tmp.path().join("out"),
    );
    fs::create_dir(&src).unwrap();
    fs::write(src.join("normal"), b"kept").unwrap();
    // A chain of 40 folders of 200-byte names: 8 KB of path, twice
    // PATH_MAX (4096), built by walking down with relative paths. A shell
    // does the walking: changing this process's working folder would move
    // it under every other test running beside this one.
    let name = "d".repeat(200);
    let chain = format!("for i in $(seq 40); do cd -P {name} || exit 1; done");
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "for i in $(seq 40); do mkdir {name} && cd -P {name} || exit 1; done; \
             echo deep > deep-file; ln -s deep-file deep-link; mkdir empty"
        ))
        .current_dir(&src)
        .status()
        .unwrap();
    assert!(status.success());
    ok(dedup(&repo).arg("init"));
    let stored = ok(dedup(&repo).arg("ingest").arg(&src));
    assert!(!stored.stderr.contains("skipping"), "{}", stored.stderr);
    ok(dedup(&repo).args(["restore", "latest"]).arg(&out));
    assert_eq!(fs::read(out.join("normal")).unwrap(), b"kept");
    let read = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "{chain}; cat deep-file; readlink deep-link; test -d empty && echo empty"
        ))
        .current_dir(&out)
        .output()
        .unwrap();
    assert!(
        read.status.success(),
        "{}",
        String::from_utf8_lossy(&read.stderr)
    );
    assert_eq!(read.stdout, b"deep\ndeep-file\nempty\n");
    // `verify` reads it back too.
    ok(dedup(&repo)
        .args(["restore", "latest", "--verify"])
        .arg(tmp.path().join("again")));
}

#[test]
fn a_file_that_grows_while_read_is_stored_as_read_and_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let (src, repo) = (tmp.path().join("src"), tmp.path().join("repo"));
    fs::create_dir(&src).unwrap();
    let path = src.join("growing.log");
    fs::write(&path, random_bytes(3, 64 << 20)).unwrap();
    ok(dedup(&repo).arg("init"));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let appender = std::thread::spawn({
        let (path, stop) = (path.clone(), stop.clone());
        move || {
            let mut f = fs::OpenOptions::new().append(true).open(&path).unwrap();
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                f.write_all(&[b'x'; 4096]).unwrap();
                std::thread::sleep(std::time::Duration::from_micros(200));
            }
        }
    });
    let r = run(dedup(&repo).args(["ingest", "--json"]).arg(&src));
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    appender.join().unwrap();
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr.contains("changed while being read"),
        "{}",
        r.stderr
    );
    let record: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let changed = record["record"]["summary"]["changed"].as_array().unwrap();
    assert_eq!(changed.len(), 1, "{changed:?}");
    // What was stored is a consistent prefix-or-more of the file, and it
    // verifies; the next ingest re-reads it (its size no longer matches).
    ok(dedup(&repo).args(["verify", "--read-data"]));
    let again = json(dedup(&repo).args(["ingest", "--json"]).arg(&src));
    assert_eq!(again["record"]["summary"]["unchanged_files"], 0);
}

#[test]
fn restore_refuses_a_destination_another_user_could_redirect() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let (src, repo) = (tmp.path().join("src"), tmp.path().join("repo"));
    make_tree(&src, 61);
    ok(dedup(&repo).arg("init"));
    ok(dedup(&repo).arg("ingest").arg(&src));
    let refused = |dest: &std::path::Path, why: &str| {
        let r = run(dedup(&repo).args(["restore", "latest"]).arg(dest));
        assert_eq!(r.code, 2, "{why}: {}", r.stderr);
        assert!(
            r.stderr.contains("not safe to restore into"),
            "{why}: {}",
            r.stderr
        );
        assert!(!dest.join("src").exists(), "{why}: nothing restored");
    };
    // Anyone may rename what restore makes inside a world-writable folder.
    let open = tmp.path().join("open");
    fs::create_dir(&open).unwrap();
    fs::set_permissions(&open, fs::Permissions::from_mode(0o777)).unwrap();
    refused(&open, "world-writable destination");
    refused(
        &open.join("below/out"),
        "world-writable ancestor of a new destination",
    );
    // The sticky bit (as on /tmp) stops that: allowed.
    fs::set_permissions(&open, fs::Permissions::from_mode(0o1777)).unwrap();
    assert_restores(dedup(&repo), &src, &open.join("out"));
    // A folder of another user's: they can rename anything in it.
    let theirs = tmp.path().join("theirs");
    fs::create_dir(&theirs).unwrap();
    if std::os::unix::fs::chown(&theirs, Some(65534), None).is_ok() {
        refused(&theirs, "a destination another user owns");
    }
}
