//! Helpers for tests that run the real `dedup` binary in temp folders.
#![allow(dead_code)]

use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub mod s3;

use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The binary under test.
pub fn dedup(repo: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_dedup"));
    cmd.arg("--repo").arg(repo).env_remove("DEDUP_REPO");
    // The machine's cache goes beside the repository, not in ~/.cache.
    cmd.env("DEDUP_CACHE", cache_of(repo));
    cmd
}

/// The cache folder [`dedup`] gives the repository at `repo`.
pub fn cache_of(repo: &Path) -> PathBuf {
    repo.with_extension("cache")
}

/// The first cache slot of the repository at `repo` (see [`cache_of`]):
/// where its index, Bloom filter and file cache are.
pub fn slot(repo: &Path) -> PathBuf {
    let config: serde_json::Value =
        serde_json::from_slice(&fs::read(repo.join("config")).unwrap()).unwrap();
    let id = config["repository_id"].as_str().unwrap();
    cache_of(repo).join(id)
}

/// Runs and returns the output, with both streams printed on failure.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

pub fn run(cmd: &mut Command) -> Run {
    let Output {
        status,
        stdout,
        stderr,
    } = cmd.output().expect("the dedup binary runs");
    Run {
        code: status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    }
}

/// Runs and insists on exit 0.
pub fn ok(cmd: &mut Command) -> Run {
    let r = run(cmd);
    assert_eq!(
        r.code,
        0,
        "{:?} failed\nstdout:\n{}\nstderr:\n{}",
        cmd.get_args().collect::<Vec<_>>(),
        r.stdout,
        r.stderr
    );
    r
}

/// Options that keep a library-opened repository's file cache in this
/// test process's own temporary folder, not the user's cache folder. (An
/// environment variable would do it too, but setting one races every
/// thread that reads the environment.)
pub fn private() -> dedup::OpenOptions {
    static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    let dir = DIR.get_or_init(caches_of_this_process);
    dedup::OpenOptions {
        cache_dir: Some(dir.join(format!("cache-{}", unique()))),
        ..Default::default()
    }
}

/// The folder [`private`] puts this test process's caches in. A static is
/// never dropped, so a temporary folder held by one would outlive every
/// run (the crash tests alone leave gigabytes of caches); instead each
/// process names its folder by its pid, and the first call sweeps the
/// folders of processes that have ended.
fn caches_of_this_process() -> PathBuf {
    let tmp = std::env::temp_dir();
    for entry in fs::read_dir(&tmp).into_iter().flatten().flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix("dedup-test-caches-"))
        else {
            continue;
        };
        if !Path::new("/proc").join(pid).exists() {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
    let dir = tmp.join(format!("dedup-test-caches-{}", std::process::id()));
    fs::create_dir_all(&dir).unwrap();
    dir
}

/// A number no other call in this process returns.
pub fn unique() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
}

/// Seeded random bytes.
pub fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    ChaCha8Rng::seed_from_u64(seed).fill_bytes(&mut v);
    v
}

/// Builds a tree with every kind of entry restore must reproduce.
pub fn make_tree(root: &Path, seed: u64) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    fs::create_dir_all(root.join("src/deep/er/still")).unwrap();
    fs::create_dir_all(root.join("empty-dir")).unwrap();
    fs::write(root.join("empty-file"), b"").unwrap();
    fs::write(root.join("src/small.txt"), b"hello, dedup\n").unwrap();
    for i in 0..40 {
        let len = rng.gen_range(0..20_000);
        let mut data = random_bytes(seed * 1000 + i, len);
        if i % 3 == 0 {
            data = format!("line {i}\n").repeat(len / 8 + 1).into_bytes();
        }
        fs::write(root.join(format!("src/deep/file-{i:02}.dat")), &data).unwrap();
    }
    fs::write(
        root.join("src/deep/er/still/big.bin"),
        random_bytes(seed + 7, 3_000_000),
    )
    .unwrap();
    // Names that are not UTF-8, with spaces, newlines, and leading dashes.
    fs::write(root.join(OsStr::from_bytes(b"latin1-\xe9t\xe9")), b"bytes").unwrap();
    fs::write(root.join("with space\nand newline"), b"odd").unwrap();
    fs::write(root.join("-dash"), b"dash").unwrap();
    // Symlinks: relative, absolute, dangling, to a folder: stored, not followed.
    std::os::unix::fs::symlink("src/small.txt", root.join("link-rel")).unwrap();
    std::os::unix::fs::symlink("/etc/hostname", root.join("link-abs")).unwrap();
    std::os::unix::fs::symlink("does/not/exist", root.join("link-dangling")).unwrap();
    std::os::unix::fs::symlink("src", root.join("link-dir")).unwrap();
    // Modes and times.
    let exe = root.join("src/run.sh");
    fs::write(&exe, b"#!/bin/sh\necho hi\n").unwrap();
    fs::set_permissions(&exe, fs::Permissions::from_mode(0o750)).unwrap();
    fs::set_permissions(
        root.join("src/small.txt"),
        fs::Permissions::from_mode(0o400),
    )
    .unwrap();
    fs::set_permissions(root.join("empty-dir"), fs::Permissions::from_mode(0o700)).unwrap();
    let t = filetime::FileTime::from_unix_time(1_234_567_890, 123_456_789);
    filetime::set_file_mtime(root.join("src/deep/file-01.dat"), t).unwrap();
    filetime::set_symlink_file_times(root.join("link-rel"), t, t).unwrap();
    filetime::set_file_mtime(root.join("empty-dir"), t).unwrap();
}

/// One line per entry: kind, path, mode, mtime, and content hash or target.
pub fn describe(root: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        let mut names: Vec<_> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort();
        for name in names {
            let path = dir.join(&name);
            let rel = path
                .strip_prefix(root)
                .unwrap()
                .as_os_str()
                .as_bytes()
                .escape_ascii()
                .to_string();
            let m = fs::symlink_metadata(&path).unwrap();
            let what = if m.file_type().is_symlink() {
                format!("link -> {}", fs::read_link(&path).unwrap().display())
            } else if m.is_dir() {
                "dir".to_string()
            } else if m.is_file() {
                format!("file {}", dedup::ChunkId::of(&fs::read(&path).unwrap()))
            } else {
                // A FIFO or device: never opened (a FIFO would block).
                use std::os::unix::fs::FileTypeExt;
                let t = m.file_type();
                let kind = if t.is_fifo() {
                    "fifo"
                } else if t.is_char_device() {
                    "chardev"
                } else {
                    "blockdev"
                };
                format!("{kind} {}", m.rdev())
            };
            let mode = if m.file_type().is_symlink() {
                0
            } else {
                m.mode() & 0o7777
            };
            out.push(format!(
                "{rel} {what} mode={mode:o} mtime={}.{:09}",
                m.mtime(),
                m.mtime_nsec()
            ));
            if m.is_dir() {
                walk(root, &path, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out
}

/// Parses the snapshot id from `ingest` output.
pub fn snapshot_id(stdout: &str) -> String {
    stdout
        .lines()
        .find_map(|l| {
            l.strip_prefix("snapshot ")
                .and_then(|r| r.split_whitespace().next())
        })
        .unwrap_or_else(|| panic!("no snapshot id in {stdout:?}"))
        .to_string()
}

/// A repository with two shards, small chunks and small packs (so a
/// rebalance has many packs to split), holding one snapshot of a tree made
/// from `seed` at `src`.
pub fn two_shards_holding_a_tree(repo: &Path, src: &Path, seed: u64) {
    make_tree(src, seed);
    fs::write(src.join("more.bin"), random_bytes(seed + 1, 6 << 20)).unwrap();
    ok(dedup(repo).args([
        "init",
        "--shards",
        "2",
        "--avg-size",
        "4KiB",
        "--pack-size",
        "256KiB",
    ]));
    ok(dedup(repo).arg("ingest").arg(src));
}

/// Flips one byte inside the stored copy of `marker` (a chunk stored
/// uncompressed) in whichever of `packs` holds it.
pub fn flip_a_byte_of(marker: &[u8], packs: &[PathBuf]) {
    let mut flipped = false;
    for pack in packs {
        let mut bytes = fs::read(pack).unwrap();
        if let Some(pos) = bytes.windows(marker.len()).position(|w| w == marker) {
            bytes[pos + marker.len() / 2] ^= 0xff;
            fs::write(pack, bytes).unwrap();
            flipped = true;
        }
    }
    assert!(flipped, "the marker is stored uncompressed in some pack");
}

/// Restores the latest snapshot with `cmd` (a `dedup` command for the
/// repository) into `out`, and checks that it matches `src`.
pub fn assert_restores(mut cmd: Command, src: &Path, out: &Path) {
    ok(cmd.args(["restore", "latest"]).arg(out));
    assert_eq!(describe(src), describe(out), "{} differs", out.display());
}

/// `report --json` (or any JSON command) parsed.
pub fn json(cmd: &mut Command) -> serde_json::Value {
    serde_json::from_str(&ok(cmd).stdout).expect("valid JSON")
}

/// Every pack file under a repository's shards.
pub fn packs(repo: &Path) -> Vec<PathBuf> {
    packs_under(&repo.join("shards"))
}

/// This machine's host name, as lock files name it.
pub fn gethostname() -> String {
    fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .to_string()
}

/// Every pack file under `dir`, at any depth.
pub fn packs_under(dir: &Path) -> Vec<PathBuf> {
    files_under(dir, ".pack")
}

/// How many files directly in `dir` have a name `matches` accepts.
pub fn count_named(dir: &Path, matches: impl Fn(&str) -> bool) -> usize {
    fs::read_dir(dir)
        .unwrap()
        .filter(|e| matches(&e.as_ref().unwrap().file_name().to_string_lossy()))
        .count()
}

/// Every file under `dir`, at any depth, whose name ends with `suffix`.
pub fn files_under(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).into_iter().flatten() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.as_os_str().as_bytes().ends_with(suffix.as_bytes()) {
                out.push(p);
            }
        }
    }
    out
}

/// Dates every file under `dir` an hour back, and waits until their change
/// times (which that moves to now, and which nothing can set back) are a
/// few timestamp ticks old: ingest does not cache a file changed within a
/// tick of its start (a later write in the same tick would go unseen), so
/// tests of the cache age their trees.
pub fn age_files(dir: &Path) {
    let hour_ago = filetime::FileTime::from_system_time(
        std::time::SystemTime::now() - std::time::Duration::from_secs(3600),
    );
    for file in files_under(dir, "") {
        if !fs::symlink_metadata(&file).unwrap().is_symlink() {
            filetime::set_file_mtime(&file, hour_ago).unwrap();
        }
    }
    std::thread::sleep(std::time::Duration::from_millis(150));
}

/// Runs `dedup` as an unprivileged user when the tests run as root, since
/// root reads files whatever their mode.
/// The binary is copied beside the test's files first: the build folder
/// may sit where that user cannot reach. The copy is made by `install`, a
/// child process: had this process written it, a child another test
/// thread forks at that moment would hold the write handle until its own
/// exec, and executing the copy would fail with "Text file busy".
pub fn as_unprivileged(repo: &Path) -> std::process::Command {
    if euid_is_root() {
        let bin = repo.parent().unwrap().join("dedup-bin");
        if !bin.exists() {
            let status = std::process::Command::new("install")
                .args(["-m", "0755", env!("CARGO_BIN_EXE_dedup")])
                .arg(&bin)
                .status()
                .unwrap();
            assert!(status.success(), "install {}", bin.display());
        }
        let mut c = std::process::Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(&bin)
            .arg("--repo")
            .arg(repo)
            .env_remove("DEDUP_REPO")
            .env("DEDUP_CACHE", cache_of(repo));
        c
    } else {
        dedup(repo)
    }
}

pub fn euid_is_root() -> bool {
    fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1).map(|e| e == "0"))
        .unwrap_or(false)
}
