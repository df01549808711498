//! Every attribute of a file, through ingest and restore: owners (by name
//! and by number), extended attributes and POSIX ACLs, hard links, holes
//! in sparse files, FIFOs and device nodes, setuid bits, and the root
//! folder's own metadata; and, as a normal user, one warning for what it
//! may not set. Most of this needs root (to own files as others, to make
//! devices); run elsewhere, those tests say so and pass.

mod common;

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;

use common::*;

/// A POSIX ACL as the kernel keeps it in `system.posix_acl_access`:
/// owner rw-, user 65534 r--, group r--, mask r--, others none.
fn acl() -> Vec<u8> {
    let mut v = 2u32.to_le_bytes().to_vec();
    for (tag, perm, id) in [
        (1u16, 6u16, u32::MAX),
        (2, 4, 65534),
        (4, 4, u32::MAX),
        (0x10, 4, u32::MAX),
        (0x20, 0, u32::MAX),
    ] {
        v.extend_from_slice(&tag.to_le_bytes());
        v.extend_from_slice(&perm.to_le_bytes());
        v.extend_from_slice(&id.to_le_bytes());
    }
    v
}

fn chown(path: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::lchown(path, Some(uid), Some(gid)).unwrap();
}

fn xattrs(path: &Path) -> Vec<(String, Vec<u8>)> {
    let mut all: Vec<(String, Vec<u8>)> = xattr::list(path)
        .unwrap()
        .map(|n| {
            let value = xattr::get(path, &n).unwrap().unwrap();
            (n.to_string_lossy().into_owned(), value)
        })
        .collect();
    all.sort();
    all
}

/// A tree with everything: returns its root.
fn rich_tree(root: &Path) {
    fs::create_dir_all(root.join("sub")).unwrap();
    fs::write(root.join("theirs"), b"owned by nobody").unwrap();
    chown(&root.join("theirs"), 65534, 65534);
    fs::write(root.join("unnamed"), b"owned by a user with no name").unwrap();
    chown(&root.join("unnamed"), 4242, 4343);
    fs::write(root.join("suid"), b"#!/bin/sh\n").unwrap();
    fs::set_permissions(root.join("suid"), fs::Permissions::from_mode(0o4755)).unwrap();
    let tagged = root.join("tagged");
    fs::write(&tagged, b"with attributes").unwrap();
    xattr::set(&tagged, "user.mime", b"text/plain").unwrap();
    xattr::set(&tagged, "trusted.origin", b"test").unwrap();
    xattr::set(&tagged, "security.label", b"secret\0").unwrap();
    xattr::set(&tagged, "system.posix_acl_access", &acl()).unwrap();
    xattr::set(root.join("sub"), "user.folder", b"yes").unwrap();
    // Three names for one inode, one of them in another folder.
    fs::write(root.join("linked"), b"one inode").unwrap();
    fs::hard_link(root.join("linked"), root.join("linked-too")).unwrap();
    fs::hard_link(root.join("linked"), root.join("sub/linked-three")).unwrap();
    // A sparse file: a hole, a mebibyte of data, a hole.
    let sparse = fs::File::create(root.join("sparse")).unwrap();
    sparse.set_len(1 << 30).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&sparse, &random_bytes(5, 1 << 20), 300 << 20)
        .unwrap();
    drop(sparse);
    let mknod = |args: &[&str]| {
        assert!(std::process::Command::new("mknod")
            .args(args)
            .status()
            .unwrap()
            .success());
    };
    mknod(&[root.join("pipe").to_str().unwrap(), "p"]);
    mknod(&[root.join("null-like").to_str().unwrap(), "c", "1", "3"]);
    mknod(&[root.join("disk-like").to_str().unwrap(), "b", "7", "200"]);
    std::os::unix::fs::symlink("theirs", root.join("link")).unwrap();
    std::os::unix::fs::lchown(root.join("link"), Some(65534), Some(65534)).unwrap();
    // The root folder's own metadata.
    fs::set_permissions(root, fs::Permissions::from_mode(0o750)).unwrap();
    chown(root, 65534, 65534);
}

#[test]
fn as_root_every_attribute_comes_back() {
    if !euid_is_root() {
        eprintln!("not root: as_root_every_attribute_comes_back not run");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (src, repo, out) = (
        tmp.path().join("src"),
        tmp.path().join("repo"),
        tmp.path().join("out"),
    );
    rich_tree(&src);
    ok(dedup(&repo).arg("init"));
    let rec = json(dedup(&repo).args(["ingest", "--json"]).arg(&src));
    assert_eq!(rec["record"]["summary"]["specials"], 3);
    assert_eq!(rec["record"]["summary"]["files"], 8);
    let r = json(
        dedup(&repo)
            .args(["restore", "latest", "--json", "--verify"])
            .arg(&out),
    );
    assert_eq!(r["hardlinks"], 2, "{r}");
    assert_eq!(r["specials"], 3, "{r}");
    assert_eq!(r["warnings"], serde_json::json!([]));
    let meta = |name: &str| fs::symlink_metadata(out.join(name)).unwrap();
    // Owners, by name and by number; the link's own.
    assert_eq!((meta("theirs").uid(), meta("theirs").gid()), (65534, 65534));
    assert_eq!((meta("unnamed").uid(), meta("unnamed").gid()), (4242, 4343));
    assert_eq!(meta("link").uid(), 65534);
    // setuid stays, since the owner (root) came back too.
    assert_eq!(meta("suid").mode() & 0o7777, 0o4755);
    // Every extended attribute, the ACL among them.
    assert_eq!(xattrs(&out.join("tagged")), xattrs(&src.join("tagged")));
    assert_eq!(xattrs(&out.join("tagged")).len(), 4);
    assert_eq!(
        xattrs(&out.join("sub")),
        [("user.folder".to_string(), b"yes".to_vec())]
    );
    // One inode for the three names.
    let ino = meta("linked").ino();
    assert_eq!(meta("linked-too").ino(), ino);
    assert_eq!(meta("sub/linked-three").ino(), ino);
    assert_eq!(meta("linked").nlink(), 3);
    // The sparse file is sparse again: a gibibyte long, about a mebibyte
    // on disk (du's figure), and the same bytes.
    assert_eq!(meta("sparse").len(), 1 << 30);
    assert!(
        meta("sparse").blocks() * 512 < 8 << 20,
        "{} blocks",
        meta("sparse").blocks()
    );
    // (`--verify` read every file back against its chunk ids.)
    assert_eq!(r["verified"], 6, "{r}");
    // Special files, as they were.
    assert!(meta("pipe").file_type().is_fifo());
    assert!(meta("null-like").file_type().is_char_device());
    assert_eq!(
        meta("null-like").rdev(),
        src.join("null-like").metadata().unwrap().rdev()
    );
    assert!(meta("disk-like").file_type().is_block_device());
    // The root folder's own mode and owner.
    let root = fs::metadata(&out).unwrap();
    assert_eq!(root.mode() & 0o7777, 0o750);
    assert_eq!(root.uid(), 65534);
    assert_eq!(describe(&src), describe(&out));
    // ls -l shows owners by name, or by number where there is none.
    let listing = ok(dedup(&repo).args(["ls", "-l", "latest"])).stdout;
    assert!(
        listing
            .lines()
            .any(|l| l.contains(" nobody ") && l.ends_with("/theirs")),
        "{listing}"
    );
    assert!(
        listing
            .lines()
            .any(|l| l.contains(" 4242 ") && l.contains(" 4343 ")),
        "{listing}"
    );
    assert!(listing.lines().any(|l| l.starts_with('p')), "{listing}");
    let entries = json(dedup(&repo).args(["ls", "--json", "latest:tagged"]));
    assert_eq!(entries[0]["user"], "root");
    assert_eq!(entries[0]["xattrs"].as_array().unwrap().len(), 4);

    // A change of owner or attribute shows in diff as metadata.
    chown(&src.join("theirs"), 4242, 4242);
    xattr::set(src.join("tagged"), "user.mime", b"text/markdown").unwrap();
    ok(dedup(&repo).arg("ingest").arg(&src));
    let d = json(dedup(&repo).args([
        "diff",
        "--json",
        &rec["id"].as_str().unwrap()[..12],
        "latest",
    ]));
    let changed: Vec<(&str, &str)> = d["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["path"].as_str().unwrap(), c["change"].as_str().unwrap()))
        .collect();
    assert!(changed.contains(&("/theirs", "metadata")), "{changed:?}");
    assert!(changed.contains(&("/tagged", "metadata")), "{changed:?}");
    // --numeric-owner: numbers, not names.
    let numeric = tmp.path().join("numeric");
    ok(dedup(&repo)
        .args(["restore", "latest", "--numeric-owner"])
        .arg(&numeric));
    assert_eq!(fs::metadata(numeric.join("theirs")).unwrap().uid(), 4242);
}

#[test]
fn as_a_normal_user_owners_and_root_only_attributes_are_left_with_one_warning() {
    if !euid_is_root() {
        eprintln!("not root: cannot own files as others here; test not run");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let home = tmp.path().join("home");
    fs::create_dir(&home).unwrap();
    chown(&home, 65534, 65534);
    let (src, repo, out) = (home.join("src"), home.join("repo"), home.join("out"));
    fs::create_dir(&src).unwrap();
    for (name, mode) in [("suid", 0o4755), ("sgid", 0o2750), ("plain", 0o640)] {
        fs::write(src.join(name), name).unwrap();
        fs::set_permissions(src.join(name), fs::Permissions::from_mode(mode)).unwrap();
    }
    xattr::set(src.join("plain"), "user.note", b"mine").unwrap();
    xattr::set(src.join("plain"), "trusted.root-only", b"x").unwrap();
    for f in ["suid", "sgid", "plain"] {
        chown(&src.join(f), 65534, 65534);
    }
    chown(&src, 65534, 65534);
    // Ingest as root (which reads trusted.*), restore as the user.
    ok(dedup(&repo).arg("init"));
    ok(dedup(&repo).arg("ingest").arg(&src));
    for entry in files_under(&home, "")
        .iter()
        .chain([&repo, &cache_of(&repo)])
    {
        let _ = std::os::unix::fs::lchown(entry, Some(65534), Some(65534));
    }
    let mut dirs = vec![repo.clone(), cache_of(&repo)];
    while let Some(d) = dirs.pop() {
        chown(&d, 65534, 65534);
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            chown(&p, 65534, 65534);
            if p.is_dir() {
                dirs.push(p);
            }
        }
    }
    let r = run(as_unprivileged(&repo).args(["restore", "latest"]).arg(&out));
    assert_eq!(r.code, 0, "{}", r.stderr);
    let mode = |name: &str| fs::metadata(out.join(name)).unwrap().mode() & 0o7777;
    assert_eq!(mode("suid"), 0o755);
    assert_eq!(mode("sgid"), 0o750);
    assert_eq!(mode("plain"), 0o640);
    assert_eq!(
        xattrs(&out.join("plain")),
        [("user.note".to_string(), b"mine".to_vec())]
    );
    // One line for the owners, one for the attribute, not one per entry.
    let owners = r
        .stderr
        .lines()
        .filter(|l| l.contains("owners not restored"))
        .count();
    assert_eq!(owners, 1, "{}", r.stderr);
    assert!(
        r.stderr.contains("1 extended attributes not restored"),
        "{}",
        r.stderr
    );
}
