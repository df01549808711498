//! `dedup mount`: snapshots as a read-only file system, read as a person
//! would read them, then unmounted. Needs /dev/fuse and permission to
//! mount (root, or fusermount); without them the test says so and passes.

mod common;

use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;

/// Unmounts and reaps the mount process whatever happens to the test.
struct Mounted {
    dir: std::path::PathBuf,
    child: std::process::Child,
}

impl Mounted {
    fn unmount(mut self) -> std::process::ExitStatus {
        let status = unmount(&self.dir);
        assert!(status, "could not unmount {}", self.dir.display());
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "dedup mount did not exit after unmount"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            unmount(&self.dir);
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn unmount(dir: &Path) -> bool {
    ["umount", "fusermount3", "fusermount"].iter().any(|tool| {
        let mut c = std::process::Command::new(tool);
        if *tool != "umount" {
            c.arg("-u");
        }
        c.arg(dir)
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
}

#[test]
fn a_mounted_repository_reads_like_the_trees_it_holds() {
    if !Path::new("/dev/fuse").exists() {
        eprintln!("no /dev/fuse: mount test not run");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (src, repo, mnt) = (
        tmp.path().join("src"),
        tmp.path().join("repo"),
        tmp.path().join("mnt"),
    );
    make_tree(&src, 31);
    let big = random_bytes(8, 5 << 20);
    fs::write(src.join("big.bin"), &big).unwrap();
    xattr::set(src.join("big.bin"), "user.kind", b"random").unwrap();
    ok(dedup(&repo).arg("init"));
    let first = json(dedup(&repo).args(["ingest", "--json"]).arg(&src));
    fs::write(src.join("later"), b"only in the second").unwrap();
    ok(dedup(&repo).arg("ingest").arg(&src));
    fs::create_dir(&mnt).unwrap();
    let child = dedup(&repo)
        .arg("mount")
        .arg(&mnt)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut mounted = Mounted {
        dir: mnt.clone(),
        child,
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while !mnt.join("ids").exists() {
        if let Some(status) = mounted.child.try_wait().unwrap() {
            let mut err = String::new();
            mounted
                .child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            // Root with /dev/fuse mounts directly: failing there is a bug.
            assert!(
                !euid_is_root(),
                "dedup mount failed as root ({status}): {err}"
            );
            eprintln!("cannot mount here ({status}): {err}; mount test not run");
            return;
        }
        assert!(Instant::now() < deadline, "the mount never appeared");
        std::thread::sleep(Duration::from_millis(50));
    }
    // The newest snapshot, through `latest`, is the tree as it is now.
    let latest = mnt.join("snapshots/latest");
    assert!(fs::symlink_metadata(&latest)
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(describe(&src), describe(&latest));
    // The first, by its id, lacks what came later.
    let id = &first["id"].as_str().unwrap()[..16];
    let by_id = mnt.join("ids").join(id);
    assert!(by_id.join("big.bin").exists());
    assert!(!by_id.join("later").exists());
    assert_eq!(fs::read_dir(mnt.join("snapshots")).unwrap().count(), 3);
    // Reads at any offset, across chunk boundaries.
    let mut f = fs::File::open(latest.join("big.bin")).unwrap();
    let mut part = vec![0; 300_000];
    f.seek(SeekFrom::Start(1_234_567)).unwrap();
    f.read_exact(&mut part).unwrap();
    assert!(
        part == big[1_234_567..1_534_567],
        "a read in the middle differs"
    );
    // Past the end: nothing, not an error.
    f.seek(SeekFrom::Start(big.len() as u64 + 10)).unwrap();
    let mut tail = Vec::new();
    assert_eq!(f.read_to_end(&mut tail).unwrap(), 0);
    drop(f);
    // And whole, read front to back.
    assert!(
        fs::read(latest.join("big.bin")).unwrap() == big,
        "big.bin differs"
    );
    assert_eq!(
        xattr::get(latest.join("big.bin"), "user.kind").unwrap(),
        Some(b"random".to_vec())
    );
    // Read-only.
    assert!(fs::write(latest.join("new"), b"x").is_err());
    let status = mounted.unmount();
    assert!(status.success(), "dedup mount exited with {status}");
    // A mount point that is not a folder is refused before anything.
    let r = run(dedup(&repo).arg("mount").arg(src.join("later")));
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("not a folder"), "{}", r.stderr);
}
