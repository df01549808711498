//! Links and files planted in a repository's home or in this machine's
//! cache are refused, never followed or written through; a repository or
//! shard reached through a link at its own root works.

mod common;

use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;

use common::*;

/// A repository at `tmp/repo` with one snapshot of `tmp/src`.
fn repo_with_a_snapshot(tmp: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let (src, repo) = (tmp.join("src"), tmp.join("repo"));
    make_tree(&src, 11);
    ok(dedup(&repo).arg("init"));
    ok(dedup(&repo).arg("ingest").arg(&src));
    (repo, src)
}

#[test]
fn a_link_planted_at_the_lock_or_readers_file_is_refused_and_its_target_untouched() {
    for name in ["lock", "readers"] {
        let tmp = tempfile::tempdir().unwrap();
        let (repo, src) = repo_with_a_snapshot(tmp.path());
        let victim = tmp.path().join("victim");
        fs::write(&victim, b"precious").unwrap();
        let planted = repo.join(name);
        let _ = fs::remove_file(&planted);
        symlink(&victim, &planted).unwrap();
        for args in [vec!["ingest", src.to_str().unwrap()], vec!["snapshots"]] {
            let r = run(dedup(&repo).args(&args));
            if name == "lock" && args[0] == "snapshots" {
                // Readers never touch the writers' lock.
                assert_eq!(r.code, 0, "{name} {args:?}: {}", r.stderr);
                continue;
            }
            assert_eq!(r.code, 2, "{name} {args:?}: {}", r.stderr);
            assert!(
                r.stderr.contains(name) && r.stderr.contains("symlink"),
                "{name} {args:?}: {}",
                r.stderr
            );
        }
        assert_eq!(fs::read(&victim).unwrap(), b"precious", "{name}");
        // A dangling link: nothing is created at its target.
        fs::remove_file(&victim).unwrap();
        let r = run(dedup(&repo).arg("ingest").arg(&src));
        assert_eq!(r.code, 2, "{name}: {}", r.stderr);
        assert!(!victim.exists(), "{name}: its target was created");
        // Removed, the repository works again.
        fs::remove_file(&planted).unwrap();
        ok(dedup(&repo).arg("ingest").arg(&src));
    }
}

#[test]
fn links_planted_in_the_cache_slot_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (repo, src) = repo_with_a_snapshot(tmp.path());
    let slot = slot(&repo);
    let victim = tmp.path().join("victim");
    fs::write(&victim, b"precious").unwrap();
    // The saved Bloom filter, read by every writer.
    let bloom = slot.join("bloom");
    fs::remove_file(&bloom).unwrap();
    symlink(&victim, &bloom).unwrap();
    let r = run(dedup(&repo).arg("ingest").arg(&src));
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("bloom") && r.stderr.contains("symlink"),
        "{}",
        r.stderr
    );
    assert_eq!(fs::read(&victim).unwrap(), b"precious");
    fs::remove_file(&bloom).unwrap();
    // The slot folder itself, swapped for a link to another folder.
    let elsewhere = tmp.path().join("elsewhere");
    fs::rename(&slot, &elsewhere).unwrap();
    symlink(&elsewhere, &slot).unwrap();
    let r = run(dedup(&repo).arg("snapshots"));
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("symlink"), "{}", r.stderr);
}

#[test]
fn a_repository_and_a_shard_reached_through_a_link_at_their_root_work() {
    let tmp = tempfile::tempdir().unwrap();
    let (repo, src) = repo_with_a_snapshot(tmp.path());
    // The repository through a link.
    let link = tmp.path().join("link");
    symlink(&repo, &link).unwrap();
    let mut cmd = dedup(&link);
    cmd.env("DEDUP_CACHE", cache_of(&repo));
    assert_restores(cmd, &src, &tmp.path().join("out-link"));
    // A shard moved to another disk and linked back.
    let shard = repo.join("shards/01");
    let moved = tmp.path().join("disk2-shard01");
    let status = std::process::Command::new("mv")
        .arg(&shard)
        .arg(&moved)
        .status()
        .unwrap();
    assert!(status.success());
    symlink(&moved, &shard).unwrap();
    ok(dedup(&repo).args(["verify", "--read-data"]));
    ok(dedup(&repo).arg("gc"));
    fs::write(src.join("new-file"), random_bytes(12, 1 << 20)).unwrap();
    ok(dedup(&repo).arg("ingest").arg(&src));
    assert_restores(dedup(&repo), &src, &tmp.path().join("out"));
    // A shard added through a link.
    let disk3 = tmp.path().join("disk3");
    fs::create_dir(&disk3).unwrap();
    let disk3_link = tmp.path().join("disk3-link");
    symlink(&disk3, &disk3_link).unwrap();
    ok(dedup(&repo).args(["shard", "add"]).arg(&disk3_link));
    ok(dedup(&repo).arg("rebalance"));
    assert!(!packs_under(&disk3).is_empty(), "the new shard took packs");
    ok(dedup(&repo).args(["verify", "--read-data"]));
    // Inside the repository, a link is still refused, and said to be one.
    fs::remove_dir_all(repo.join("snapshots")).unwrap();
    symlink(tmp.path(), repo.join("snapshots")).unwrap();
    let r = run(dedup(&repo).arg("ingest").arg(&src));
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("symlink"), "{}", r.stderr);
}
