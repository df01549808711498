//! A full disk: ingest, gc and repair stop with a clear error naming the
//! cause, nothing already stored is lost, and the same commands succeed
//! once there is space again. Runs on a small tmpfs, so it needs root (to
//! mount one); elsewhere it says so and does nothing.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

/// A tmpfs of `mib` MiB, unmounted on drop.
struct SmallDisk(PathBuf);

impl SmallDisk {
    fn mount(at: &Path, mib: u32) -> Option<Self> {
        fs::create_dir_all(at).unwrap();
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(at)
            .status()
            .is_ok_and(|s| s.success());
        mounted.then(|| SmallDisk(at.to_path_buf()))
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Fills `disk` with a file until the file system refuses more.
fn fill(disk: &Path) -> PathBuf {
    let filler = disk.join("filler");
    let mut f = fs::File::create(&filler).unwrap();
    let block = vec![0x5a_u8; 64 * 1024];
    while std::io::Write::write_all(&mut f, &block).is_ok() {}
    filler
}

fn full(cmd: &mut Command) {
    let r = run(cmd);
    assert_eq!(
        r.code,
        2,
        "{:?}\n{}\n{}",
        cmd.get_args().collect::<Vec<_>>(),
        r.stdout,
        r.stderr
    );
    assert!(r.stderr.contains("No space left on device"), "{}", r.stderr);
    assert_eq!(r.stderr.lines().count(), 1, "one line: {}", r.stderr);
}

#[test]
fn a_full_disk_stops_ingest_gc_and_repair_cleanly_and_loses_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(disk) = SmallDisk::mount(&tmp.path().join("disk"), 48) else {
        eprintln!("enospc: cannot mount a tmpfs here (not root?): nothing tested");
        return;
    };
    let repo = disk.0.join("repo");
    // This machine's cache is on another disk, as ~/.cache would be.
    let cache = tmp.path().join("cache");
    let dedup = |repo: &Path| {
        let mut cmd = common::dedup(repo);
        cmd.env("DEDUP_CACHE", &cache);
        cmd
    };
    let (first, big) = (tmp.path().join("first"), tmp.path().join("big"));
    make_tree(&first, 81);
    fs::create_dir_all(&big).unwrap();
    for i in 0..4 {
        fs::write(big.join(format!("f{i}")), random_bytes(90 + i, 8 << 20)).unwrap();
    }
    ok(dedup(&repo).args(["init", "--compression", "none"]));
    let kept = snapshot_id(&ok(dedup(&repo).arg("ingest").arg(&first)).stdout);

    let filler = fill(&disk.0);
    full(dedup(&repo).arg("ingest").arg(&big));
    fs::write(first.join("changed"), random_bytes(7, 100_000)).unwrap();
    full(dedup(&repo).arg("ingest").arg(&first));
    full(dedup(&repo).args(["repair", "index"]));
    // Readers need no space there: the full repository verifies and
    // restores.
    ok(dedup(&repo).arg("verify"));
    let out = tmp.path().join("out");
    ok(dedup(&repo).args(["restore", &kept]).arg(&out));
    assert_eq!(describe(&out).len(), describe(&first).len() - 1);
    // gc on a full disk: it may free what the failed ingests left, or
    // stop for want of room to save the filter; either way, clearly.
    let r = run(dedup(&repo).arg("gc"));
    assert!(
        r.code == 0 || (r.code == 2 && r.stderr.contains("No space left")),
        "{}",
        r.stderr
    );
    ok(dedup(&repo).arg("verify"));

    // Space again: everything works, with nothing to clean up by hand.
    fs::remove_file(&filler).unwrap();
    ok(dedup(&repo).arg("gc"));
    ok(dedup(&repo).arg("ingest").arg(&big));
    ok(dedup(&repo).args(["verify", "--read-data"]));
    assert_restores(dedup(&repo), &big, &tmp.path().join("out-big"));
}
