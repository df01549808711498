//! Shards on an S3-compatible object store, against a real S3 server
//! (`s3s-fs`) on 127.0.0.1 that each test starts, kills and restarts.

mod common;

use std::fs;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::s3::{Fault, FlakyProxy, S3Server, SECRET_KEY};
use common::*;

/// The binary, with the server's credentials in its environment.
fn dedup_s3(repo: &Path, server: &S3Server) -> Command {
    let mut cmd = dedup(repo);
    server.env(&mut cmd);
    cmd
}

/// Shard options that point at `server` and give up quickly when it is
/// gone (the default retry budget is three minutes).
fn options(server: &S3Server, flag: &str) -> Vec<String> {
    [
        format!("endpoint={}", server.endpoint()),
        "retry_timeout=3s".to_string(),
        "max_retries=4".to_string(),
    ]
    .into_iter()
    .flat_map(|o| [flag.to_string(), o])
    .collect()
}

#[test]
fn two_local_shards_and_one_on_s3_restore_identically() {
    let tmp = tempfile::tempdir().unwrap();
    let server = S3Server::start(&tmp.path().join("s3"));
    let (src, repo) = (tmp.path().join("src"), tmp.path().join("repo"));
    make_tree(&src, 81);
    // A second copy of the tree: restored from one read of each content.
    make_tree(&src.join("copy"), 81);
    fs::write(src.join("more.bin"), random_bytes(82, 4 << 20)).unwrap();
    let url = format!("s3://{}/repo-one", common::s3::BUCKET);
    ok(dedup_s3(&repo, &server)
        .args(["init", "--avg-size", "16KiB", "--pack-size", "256KiB"])
        .arg("--shard")
        .arg(tmp.path().join("disk-a"))
        .arg("--shard")
        .arg(tmp.path().join("disk-b"))
        .args(["--shard", &url])
        .args(options(&server, "--shard-option")));
    ok(dedup_s3(&repo, &server).arg("ingest").arg(&src));

    // About a third of the packs went to the store, as objects.
    let remote = packs_under(&server.dir("repo-one"));
    let local = packs_under(&tmp.path().join("disk-a")).len()
        + packs_under(&tmp.path().join("disk-b")).len();
    assert!(
        !remote.is_empty() && local > 0,
        "{} remote, {local} local",
        remote.len()
    );
    let report = json(dedup_s3(&repo, &server).args(["report", "--json"]));
    let s3_shard = &report["shards"][2];
    assert_eq!(s3_shard["path"], url.as_str());
    let share = s3_shard["share"].as_f64().unwrap();
    assert!((0.2..0.47).contains(&share), "the S3 shard holds {share}");

    ok(dedup_s3(&repo, &server).args(["verify", "--read-data"]));
    assert_restores(dedup_s3(&repo, &server), &src, &tmp.path().join("out"));

    // The endpoint is shown; a secret kept in the config is not.
    ok(dedup_s3(&repo, &server).args([
        "shard",
        "add",
        &format!("s3://{}/repo-two", common::s3::BUCKET),
        "--weight",
        "0",
        "--option",
        &format!("endpoint={}", server.endpoint()),
        "--option",
        &format!("secret_access_key={SECRET_KEY}"),
    ]));
    let list = ok(dedup_s3(&repo, &server).args(["shard", "list"]));
    assert!(list.stdout.contains(&server.endpoint()), "{}", list.stdout);
    assert!(list.stdout.contains("(hidden)"), "{}", list.stdout);
    let report = ok(dedup_s3(&repo, &server).args(["report", "--json"]));
    for text in [&list.stdout, &list.stderr, &report.stdout] {
        assert!(!text.contains(SECRET_KEY), "secret printed:\n{text}");
    }
}

#[test]
fn a_store_killed_mid_ingest_fails_clearly_and_loses_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let mut server = S3Server::start(&tmp.path().join("s3"));
    let (src, repo) = (tmp.path().join("src"), tmp.path().join("repo"));
    make_tree(&src, 91);
    let url = format!("s3://{}/crash", common::s3::BUCKET);
    ok(dedup_s3(&repo, &server)
        .args(["init", "--avg-size", "16KiB", "--pack-size", "256KiB"])
        .arg("--shard")
        .arg(tmp.path().join("disk-a"))
        .args(["--shard", &url])
        .args(options(&server, "--shard-option")));
    ok(dedup_s3(&repo, &server).arg("ingest").arg(&src));
    let first = describe(&src);

    // A second, larger ingest; the server dies once it has taken a few of
    // the new packs.
    let before = packs_under(&server.dir("crash")).len();
    let big = tmp.path().join("big");
    fs::create_dir_all(&big).unwrap();
    for i in 0..8 {
        fs::write(
            big.join(format!("part-{i}.bin")),
            random_bytes(100 + i, 4 << 20),
        )
        .unwrap();
    }
    let child = dedup_s3(&repo, &server)
        .arg("--quiet")
        .arg("ingest")
        .arg(&big)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while packs_under(&server.dir("crash")).len() < before + 5 {
        assert!(Instant::now() < deadline, "no upload reached the server");
        std::thread::sleep(Duration::from_millis(5));
    }
    server.kill();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr: {stderr}");
    assert!(
        stderr.contains(&format!("object store {url}: cannot upload")),
        "unclear error: {stderr}"
    );
    assert!(!stderr.contains(SECRET_KEY), "{stderr}");

    // Reading what is on the local shard still works while the store is
    // down; a read that needs the store fails with the same kind of message.
    let r = run(dedup_s3(&repo, &server).args(["verify", "--read-data"]));
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains(&format!("object store {url}")),
        "{}",
        r.stderr
    );

    // Back up: the repository is consistent, the first snapshot intact, and
    // the interrupted ingest succeeds when run again.
    server.restart();
    ok(dedup_s3(&repo, &server).args(["verify", "--read-data"]));
    let out1 = tmp.path().join("out1");
    ok(dedup_s3(&repo, &server)
        .args(["restore", "latest"])
        .arg(&out1));
    assert_eq!(first, describe(&out1));
    ok(dedup_s3(&repo, &server).arg("ingest").arg(&big));
    assert_restores(dedup_s3(&repo, &server), &big, &tmp.path().join("out2"));
    // Packs the failed run finished uploading were indexed one by one, so
    // the retry reused them; gc reads every pack and finds none unreadable.
    let gc = json(dedup_s3(&repo, &server).args(["gc", "--json"]));
    assert_eq!(gc["unreadable_packs"], serde_json::json!([]), "{gc}");
    ok(dedup_s3(&repo, &server).args(["verify", "--read-data"]));
}

#[test]
fn grow_onto_s3_then_shrink_back_and_everything_restores() {
    let tmp = tempfile::tempdir().unwrap();
    let server = S3Server::start(&tmp.path().join("s3"));
    let (src, repo) = (tmp.path().join("src"), tmp.path().join("repo"));
    two_shards_holding_a_tree(&repo, &src, 101);
    let url = format!("s3://{}/grow", common::s3::BUCKET);

    // Grow: about a third of the chunks move, all of them onto the store.
    ok(dedup_s3(&repo, &server)
        .args(["shard", "add", &url])
        .args(options(&server, "--option")));
    let done = json(dedup_s3(&repo, &server).args(["rebalance", "--json"]));
    let share = done["moved_objects"].as_f64().unwrap() / done["total_objects"].as_f64().unwrap();
    assert!(
        share > 0.8 / 3.0 && share < 1.2 / 3.0,
        "moved {share}, ideal 1/3"
    );
    for s in done["shards"].as_array().unwrap() {
        let expected_in = if s["id"] == 2 {
            done["moved_objects"].clone()
        } else {
            0.into()
        };
        assert_eq!(s["chunks_in"], expected_in, "{s}");
    }
    assert!(!packs_under(&server.dir("grow")).is_empty());
    ok(dedup_s3(&repo, &server).args(["verify", "--read-data"]));
    assert_restores(dedup_s3(&repo, &server), &src, &tmp.path().join("out1"));

    // Shrink: remove a local shard, then the object-store one.
    ok(dedup_s3(&repo, &server).args(["shard", "remove", "0"]));
    assert_restores(dedup_s3(&repo, &server), &src, &tmp.path().join("out2"));
    ok(dedup_s3(&repo, &server).args(["shard", "remove", "2"]));
    assert_eq!(
        packs_under(&server.dir("grow")),
        Vec::<std::path::PathBuf>::new(),
        "the store still holds packs"
    );
    ok(dedup(&repo).args(["verify", "--read-data"]));
    assert_restores(dedup(&repo), &src, &tmp.path().join("out3"));

    // A prefix that already holds packs is refused: gc here would delete
    // another repository's data.
    let other = tmp.path().join("other");
    ok(dedup_s3(&other, &server)
        .args([
            "init",
            "--shard",
            &format!("s3://{}/taken", common::s3::BUCKET),
        ])
        .args(options(&server, "--shard-option")));
    ok(dedup_s3(&other, &server).arg("ingest").arg(&src));
    let r = run(dedup_s3(&repo, &server)
        .args([
            "shard",
            "add",
            &format!("s3://{}/taken", common::s3::BUCKET),
        ])
        .args(options(&server, "--option")));
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("is shard 00 of repository"),
        "{}",
        r.stderr
    );
}

#[test]
fn an_unreachable_or_misconfigured_store_is_refused_when_added() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("repo");
    ok(dedup(&repo).args(["init", "--shards", "1"]));
    // Nothing listens on port 1.
    let r = run(dedup(&repo).args([
        "shard",
        "add",
        "s3://nowhere/x",
        "--option",
        "endpoint=http://127.0.0.1:1",
        "--option",
        "retry_timeout=1s",
    ]));
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("object store s3://nowhere/x"),
        "{}",
        r.stderr
    );
    let r = run(dedup(&repo).args(["shard", "add", "s3://nowhere/x", "--option", "colour=blue"]));
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("unknown option \"colour\""),
        "{}",
        r.stderr
    );
    let r = run(dedup(&repo).args(["shard", "add", "ftp://host/x"]));
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("only folders and s3://"), "{}", r.stderr);
    let r = run(dedup(&repo).args(["shard", "add", "s3://x"]));
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("not a valid bucket name"), "{}", r.stderr);
    let other = tmp.path().join("other");
    let r = run(dedup(&other).args(["init", "--shard-option", "region=eu-west-1"]));
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("for s3:// shards"), "{}", r.stderr);
    assert!(!other.join("config").exists());
    // None of these changed the config.
    let report = json(dedup(&repo).args(["report", "--json"]));
    assert_eq!(report["shards"].as_array().unwrap().len(), 1);
}

#[test]
fn a_damaged_record_fails_only_its_file_when_neighbours_are_read_together() {
    let tmp = tempfile::tempdir().unwrap();
    let server = S3Server::start(&tmp.path().join("s3"));
    let (src, repo) = (tmp.path().join("src"), tmp.path().join("repo"));
    fs::create_dir(&src).unwrap();
    let marker = b"UNIQUE-MARKER-0123456789-".repeat(200);
    fs::write(src.join("victim.txt"), &marker).unwrap();
    for i in 0..20 {
        fs::write(
            src.join(format!("bystander-{i:02}.txt")),
            format!("unharmed {i}"),
        )
        .unwrap();
    }
    let url = format!("s3://{}/damaged", common::s3::BUCKET);
    ok(dedup_s3(&repo, &server)
        .args(["init", "--compression", "none", "--shard", &url])
        .args(options(&server, "--shard-option")));
    ok(dedup_s3(&repo, &server).arg("ingest").arg(&src));
    // Flip one byte of the victim's record where the server keeps it.
    flip_a_byte_of(&marker, &packs_under(&server.dir("damaged")));
    let out = tmp.path().join("out");
    let r = run(dedup_s3(&repo, &server)
        .args(["restore", "latest"])
        .arg(&out));
    assert_eq!(r.code, 1, "a partial restore exits 1: {}", r.stderr);
    assert!(r.stderr.contains("victim.txt"), "{}", r.stderr);
    assert!(r.stderr.contains("does not match"), "{}", r.stderr);
    for i in 0..20 {
        let name = format!("bystander-{i:02}.txt");
        assert!(!r.stderr.contains(&name), "{name} failed too: {}", r.stderr);
        assert_eq!(
            fs::read_to_string(out.join(&name)).unwrap(),
            format!("unharmed {i}")
        );
    }
}

#[test]
fn uploads_cut_off_stalled_or_unanswered_are_retried() {
    for (fault, name) in [
        (Fault::Cut, "cut"),
        (Fault::Stall, "stall"),
        (Fault::DropResponse, "unanswered"),
    ] {
        upload_through_a_flaky_network(fault, name);
    }
}

fn upload_through_a_flaky_network(fault: Fault, name: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let server = S3Server::start(&tmp.path().join("s3"));
    let proxy = FlakyProxy::start(server.port, 2, fault);
    let (src, repo) = (tmp.path().join("src"), tmp.path().join("repo"));
    fs::create_dir(&src).unwrap();
    for i in 0..4 {
        fs::write(
            src.join(format!("f{i}.bin")),
            random_bytes(200 + i, 2 << 20),
        )
        .unwrap();
    }
    let url = format!("s3://{}/{name}", common::s3::BUCKET);
    ok(dedup_s3(&repo, &server).args([
        "init",
        "--pack-size",
        "512KiB",
        "--shard",
        &url,
        "--shard-option",
        &format!("endpoint={}", proxy.endpoint()),
        "--shard-option",
        "retry_timeout=30s",
        // A stalled upload times out after 2 s instead of 30.
        "--shard-option",
        "timeout=2s",
    ]));
    ok(dedup_s3(&repo, &server).arg("ingest").arg(&src));
    assert_eq!(proxy.cuts_left(), 0, "{name}: the proxy spoiled no upload");
    ok(dedup_s3(&repo, &server).args(["verify", "--read-data"]));
    assert_restores(dedup_s3(&repo, &server), &src, &tmp.path().join("out"));
}

/// The binary on the repository whose home is `url` on `server`, with
/// `cache` as this machine's cache folder.
fn dedup_home(url: &str, server: &S3Server, cache: &Path) -> Command {
    let mut cmd = dedup(Path::new(url));
    server.env(&mut cmd);
    cmd.env("AWS_ENDPOINT", server.endpoint())
        .env("DEDUP_CACHE", cache);
    cmd
}

#[test]
fn a_repository_whose_home_is_an_object_store_needs_nothing_but_the_url() {
    let tmp = tempfile::tempdir().unwrap();
    let server = S3Server::start(&tmp.path().join("s3"));
    let (src, src2) = (tmp.path().join("src"), tmp.path().join("src2"));
    make_tree(&src, 91);
    make_tree(&src2, 92);
    fs::write(src2.join("more.bin"), random_bytes(93, 3 << 20)).unwrap();
    let url = format!("s3://{}/home-one", common::s3::BUCKET);
    // A new machine every time: the cache is deleted between every step.
    let cache = tmp.path().join("cache");
    let fresh = |cmd: &mut Command| -> Run {
        let _ = fs::remove_dir_all(&cache);
        ok(cmd)
    };
    fresh(dedup_home(&url, &server, &cache).args(["init", "--avg-size", "16KiB"]));
    let first =
        snapshot_id(&fresh(dedup_home(&url, &server, &cache).arg("ingest").arg(&src)).stdout);
    let second =
        snapshot_id(&fresh(dedup_home(&url, &server, &cache).arg("ingest").arg(&src2)).stdout);
    let listed = fresh(dedup_home(&url, &server, &cache).arg("snapshots"));
    assert!(listed.stdout.contains(&first[..12]) && listed.stdout.contains(&second[..12]));
    for (id, from) in [(&first, &src), (&second, &src2)] {
        let out = tmp.path().join(format!("out-{id}"));
        fresh(
            dedup_home(&url, &server, &cache)
                .args(["restore", id])
                .arg(&out),
        );
        assert_eq!(describe(from), describe(&out));
    }
    fresh(dedup_home(&url, &server, &cache).args(["verify", "--read-data"]));
    let report = fresh(dedup_home(&url, &server, &cache).args(["report", "--json"]));
    let report: serde_json::Value = serde_json::from_str(&report.stdout).unwrap();
    assert_eq!(report["snapshots"], 2, "{report}");

    // Everything durable is in the store: config, records, segments, and
    // the packs of its shard, under the home's prefix.
    let home = server.dir("home-one");
    for folder in ["snapshots", "segments", "shards/00"] {
        assert!(!files_under(&home.join(folder), "").is_empty(), "{folder}");
    }
    assert!(home.join("config").exists());
    // No lock outlives its command (the fencing generation stays).
    assert_eq!(locks_in(&home.join("locks")), Vec::<String>::new());

    fresh(dedup_home(&url, &server, &cache).args(["forget", &first]));
    let gc = fresh(dedup_home(&url, &server, &cache).args(["gc", "--json"]));
    let gc: serde_json::Value = serde_json::from_str(&gc.stdout).unwrap();
    assert!(gc["bytes_freed"].as_u64().unwrap() > 0, "{gc}");
    fresh(dedup_home(&url, &server, &cache).args(["verify", "--read-data"]));
    let out = tmp.path().join("after-gc");
    fresh(
        dedup_home(&url, &server, &cache)
            .args(["restore", "latest"])
            .arg(&out),
    );
    assert_eq!(describe(&src2), describe(&out));

    // Segments lost too: the store's packs and records are enough.
    fs::remove_dir_all(home.join("segments")).unwrap();
    let r = run(dedup_home(&url, &server, &cache).arg("snapshots"));
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("repair index"), "{}", r.stderr);
    fresh(dedup_home(&url, &server, &cache).args(["repair", "index"]));
    let out = tmp.path().join("after-repair");
    fresh(
        dedup_home(&url, &server, &cache)
            .args(["restore", "latest"])
            .arg(&out),
    );
    assert_eq!(describe(&src2), describe(&out));

    // A second init there is refused, and so is a prefix that holds objects.
    let r = run(dedup_home(&url, &server, &cache).arg("init"));
    assert_eq!(r.code, 2, "{}", r.stderr);
    let used = format!("s3://{}/home-one/shards", common::s3::BUCKET);
    let r = run(dedup_home(&used, &server, &cache).arg("init"));
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("already holds objects"), "{}", r.stderr);
    let r = run(dedup_home(
        &format!("s3://{}/nothing", common::s3::BUCKET),
        &server,
        &cache,
    )
    .arg("snapshots"));
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("no dedup repository"), "{}", r.stderr);
}

#[test]
fn a_lock_in_the_store_names_its_holder_and_goes_stale() {
    let tmp = tempfile::tempdir().unwrap();
    let server = S3Server::start(&tmp.path().join("s3"));
    let src = tmp.path().join("src");
    make_tree(&src, 94);
    let url = format!("s3://{}/home-two", common::s3::BUCKET);
    let cache = tmp.path().join("cache");
    ok(dedup_home(&url, &server, &cache).arg("init"));
    let locks = server.dir("home-two/locks");
    fs::create_dir_all(&locks).unwrap();
    let host = gethostname();
    let me = Identity::here();
    let lock = |name: &str, pid: u32, host: &str| me.lock(&locks, name, pid, host);

    // Maintenance by a live process (this test's own) holds it alone:
    // an ingest is refused, naming it.
    let held = lock("exclusive-live", std::process::id(), &host);
    let r = run(dedup_home(&url, &server, &cache).arg("ingest").arg(&src));
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr
            .contains(&format!("pid {} on {host}", std::process::id())),
        "{}",
        r.stderr
    );
    fs::remove_file(&held).unwrap();
    // A live writer does not stop another writer, but stops maintenance.
    let writer = lock("shared-live", std::process::id(), &host);
    ok(dedup_home(&url, &server, &cache).arg("ingest").arg(&src));
    let r = run(dedup_home(&url, &server, &cache).arg("gc"));
    assert_eq!(r.code, 2, "{}", r.stderr);
    fs::remove_file(&writer).unwrap();

    // One whose process is gone from this very kernel and pid namespace
    // is stale at once.
    let dead = a_pid_that_is_gone();
    let gone = lock("exclusive-gone", dead, &host);
    ok(dedup_home(&url, &server, &cache).arg("ingest").arg(&src));
    assert!(!gone.exists(), "the stale lock was removed");

    // Another host's lock is stale once it has not been written for the
    // stated time, by the store's clock.
    let other = lock("exclusive-elsewhere", 1, "another-host");
    let r = run(dedup_home(&url, &server, &cache).arg("ingest").arg(&src));
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("another-host"), "{}", r.stderr);
    let old =
        filetime::FileTime::from_unix_time(filetime::FileTime::now().unix_seconds() - 3600, 0);
    filetime::set_file_mtime(&other, old).unwrap();
    ok(dedup_home(&url, &server, &cache).arg("ingest").arg(&src));
    assert!(!other.exists());

    // An exclusive taker first claims `locks/exclusive` with a create-only
    // PUT: a claim naming a live lock refuses it, one naming a lock that
    // is gone is cleared, and the taker's own claim goes when it does.
    let live = lock("exclusive-live", std::process::id(), &host);
    fs::write(locks.join("exclusive"), "locks/exclusive-live").unwrap();
    let r = run(dedup_home(&url, &server, &cache).arg("gc"));
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains(&format!("pid {}", std::process::id())),
        "{}",
        r.stderr
    );
    fs::remove_file(&live).unwrap();
    fs::write(locks.join("exclusive"), "locks/exclusive-gone-long-ago").unwrap();
    ok(dedup_home(&url, &server, &cache).arg("gc"));
    assert!(
        !locks.join("exclusive").exists(),
        "the claim outlived its gc"
    );

    // Readers never wait for maintenance.
    let _held = lock("exclusive-live", std::process::id(), &host);
    ok(dedup_home(&url, &server, &cache).arg("snapshots"));
}

/// What a lock object says of the process that wrote it, as this
/// machine would write it.
#[derive(Clone)]
struct Identity {
    boot: String,
    machine: String,
    pidns: String,
}

impl Identity {
    fn here() -> Self {
        let read = |p: &str| fs::read_to_string(p).unwrap_or_default().trim().to_string();
        Identity {
            boot: read("/proc/sys/kernel/random/boot_id"),
            machine: read("/etc/machine-id"),
            pidns: fs::read_link("/proc/self/ns/pid")
                .unwrap()
                .to_string_lossy()
                .into_owned(),
        }
    }

    /// Writes lock `name` into the folder `locks` of a home, as held by
    /// `pid` on `host`, fresh by the store's clock.
    fn lock(&self, locks: &Path, name: &str, pid: u32, host: &str) -> std::path::PathBuf {
        let body = serde_json::json!({
            "pid": pid, "host": host, "boot": self.boot, "since": "2026-01-01T00:00:00Z",
            "machine": self.machine, "pidns": self.pidns,
        });
        let path = locks.join(name);
        fs::write(&path, body.to_string()).unwrap();
        path
    }
}

/// The lock objects in the folder `locks` of a home: all but the fencing
/// generation, which outlives every command.
fn locks_in(locks: &Path) -> Vec<String> {
    files_under(locks, "")
        .iter()
        .filter_map(|p| p.file_name()?.to_str().map(str::to_string))
        .filter(|name| name != "fence")
        .collect()
}

/// The pid of a process that has ended.
fn a_pid_that_is_gone() -> u32 {
    let mut child = Command::new("true").spawn().unwrap();
    let dead = child.id();
    child.wait().unwrap();
    dead
}

#[test]
fn a_lock_from_a_clone_or_a_container_with_this_hostname_is_live_until_it_ages() {
    let tmp = tempfile::tempdir().unwrap();
    let server = S3Server::start(&tmp.path().join("s3"));
    let src = tmp.path().join("src");
    make_tree(&src, 95);
    let url = format!("s3://{}/home-clone", common::s3::BUCKET);
    let cache = tmp.path().join("cache");
    ok(dedup_home(&url, &server, &cache).arg("init"));
    ok(dedup_home(&url, &server, &cache).arg("ingest").arg(&src));
    let locks = server.dir("home-clone/locks");
    fs::create_dir_all(&locks).unwrap();
    let (host, me, dead) = (gethostname(), Identity::here(), a_pid_that_is_gone());
    // A cloned VM: the same hostname and machine id (and a copy of this
    // cache folder), booted apart. A container: the same kernel and boot,
    // another pid namespace. Each has a writer whose pid is not running
    // here; neither writer may be taken for dead.
    let clone = Identity {
        boot: "00000000-1111-2222-3333-444444444444".into(),
        ..me.clone()
    };
    let container = Identity {
        pidns: "pid:[1]".into(),
        ..me.clone()
    };
    for (what, who) in [("clone", &clone), ("container", &container)] {
        let copy = tmp.path().join(format!("cache-{what}"));
        let status = Command::new("cp").arg("-a").arg(&cache).arg(&copy).status();
        assert!(status.unwrap().success());
        let writer = who.lock(&locks, "shared-elsewhere", dead, &host);
        let r = run(dedup_home(&url, &server, &copy).arg("gc"));
        assert_eq!(
            r.code, 2,
            "{what}: {}
{}",
            r.stdout, r.stderr
        );
        assert!(r.stderr.contains("locked by"), "{what}: {}", r.stderr);
        assert!(writer.exists(), "{what}: its lock was left alone");
        // Unwritten for longer than the staleness, by the store's clock,
        // it is stale.
        let old =
            filetime::FileTime::from_unix_time(filetime::FileTime::now().unix_seconds() - 3600, 0);
        filetime::set_file_mtime(&writer, old).unwrap();
        ok(dedup_home(&url, &server, &copy).arg("gc"));
        assert!(!writer.exists(), "{what}");
    }
}

#[test]
fn a_writer_suspended_past_the_stale_age_records_nothing_once_maintenance_came() {
    let tmp = tempfile::tempdir().unwrap();
    let server = S3Server::start(&tmp.path().join("s3"));
    let url = format!("s3://{}/home-suspended", common::s3::BUCKET);
    let (laptop, other) = (tmp.path().join("laptop"), tmp.path().join("other"));
    // Locks go stale after a few seconds here: 4 for the laptop (written
    // again every 0.67 s), 6 for the other machine, which must not lose
    // its own lock to a busy test machine while it collects.
    let with_stale_age = |mut cmd: Command, seconds: &str| {
        cmd.env("DEDUP_LOCK_STALE_SECONDS", seconds);
        cmd
    };
    let data = random_bytes(96, 2 << 20);
    let src = tmp.path().join("src");
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("data"), &data).unwrap();
    ok(dedup_home(&url, &server, &other).arg("init"));
    let first = snapshot_id(&ok(dedup_home(&url, &server, &other).arg("ingest").arg(&src)).stdout);

    // The laptop stores the same bytes: every chunk deduplicates against
    // the first snapshot's. Then the lid closes before it records.
    let mut ingest = with_stale_age(dedup_home(&url, &server, &laptop), "4");
    let mut child = ingest
        .args(["ingest", "--stdin", "--stdin-name", "data"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(&data).unwrap();
    let locks = server.dir("home-suspended/locks");
    let deadline = Instant::now() + Duration::from_secs(30);
    while locks_in(&locks).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(500));
    let pid = child.id().to_string();
    let signal = |sig: &str| {
        let status = Command::new("kill").args([sig, &pid]).status().unwrap();
        assert!(status.success());
    };
    signal("-STOP");
    // Meanwhile another machine finds the lock stale, forgets the first
    // snapshot and collects: the chunks the laptop counted on are gone.
    std::thread::sleep(Duration::from_secs(8));
    ok(with_stale_age(dedup_home(&url, &server, &other), "6").args(["forget", &first, "--prune"]));
    signal("-CONT");
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("may no longer be held"), "{stderr}");
    let listed = ok(dedup_home(&url, &server, &other).args(["snapshots", "--json"]));
    let listed: serde_json::Value = serde_json::from_str(&listed.stdout).unwrap();
    assert_eq!(
        listed.as_array().unwrap().len(),
        0,
        "nothing recorded: {listed}"
    );
    ok(dedup_home(&url, &server, &other).args(["verify", "--read-data"]));
}

#[test]
fn two_machines_ingest_into_one_store_at_once_and_a_third_restores_both() {
    let tmp = tempfile::tempdir().unwrap();
    let server = S3Server::start(&tmp.path().join("s3"));
    let url = format!("s3://{}/home-three", common::s3::BUCKET);
    // Overlapping trees: b is a with more files.
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    make_tree(&a, 95);
    fs::write(a.join("shared.bin"), random_bytes(96, 6 << 20)).unwrap();
    assert!(Command::new("cp")
        .arg("-a")
        .arg(&a)
        .arg(&b)
        .status()
        .unwrap()
        .success());
    fs::write(b.join("own.bin"), random_bytes(97, 4 << 20)).unwrap();
    let cache = |n: &str| tmp.path().join(format!("cache-{n}"));
    ok(dedup_home(&url, &server, &cache("init")).args([
        "init",
        "--avg-size",
        "16KiB",
        "--pack-size",
        "512KiB",
    ]));
    let spawn = |src: &Path, who: &str| {
        dedup_home(&url, &server, &cache(who))
            .args(["ingest", "--json"])
            .arg(src)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (one, two) = (spawn(&a, "one"), spawn(&b, "two"));
    let mut ids = Vec::new();
    for child in [one, two] {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        ids.push(v["id"].as_str().unwrap().to_string());
    }
    // A third machine, with nothing cached, sees and restores both.
    let third = cache("third");
    let list = ok(dedup_home(&url, &server, &third).args(["snapshots", "--json"]));
    let list: serde_json::Value = serde_json::from_str(&list.stdout).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 2, "{list}");
    for (id, src) in ids.iter().zip([&a, &b]) {
        let _ = fs::remove_dir_all(&third);
        let out = tmp.path().join(format!("out-{id}"));
        ok(dedup_home(&url, &server, &third)
            .args(["restore", id])
            .arg(&out));
        assert_eq!(describe(src), describe(&out));
    }
    let _ = fs::remove_dir_all(&third);
    ok(dedup_home(&url, &server, &third).args(["verify", "--read-data"]));
    // What both stored at the same time is stored twice at most, and gc
    // gives the extra copies back; everything still restores.
    let _ = fs::remove_dir_all(&third);
    ok(dedup_home(&url, &server, &third).arg("gc"));
    let _ = fs::remove_dir_all(&third);
    ok(dedup_home(&url, &server, &third).args(["verify", "--read-data"]));
    // The first writers' caches are behind now: they catch up.
    for (who, (id, src)) in ["one", "two"].iter().zip(ids.iter().zip([&a, &b])) {
        let out = tmp.path().join(format!("again-{id}"));
        ok(dedup_home(&url, &server, &cache(who))
            .args(["restore", id])
            .arg(&out));
        assert_eq!(describe(src), describe(&out));
    }
}

#[test]
fn a_writer_killed_mid_ingest_leaves_a_stale_lock_and_leftovers_gc_removes() {
    let tmp = tempfile::tempdir().unwrap();
    let server = S3Server::start(&tmp.path().join("s3"));
    let url = format!("s3://{}/home-four", common::s3::BUCKET);
    let cache = tmp.path().join("cache");
    let src = tmp.path().join("src");
    fs::create_dir_all(&src).unwrap();
    for i in 0..16 {
        fs::write(src.join(format!("f{i}")), random_bytes(200 + i, 4 << 20)).unwrap();
    }
    ok(dedup_home(&url, &server, &cache).args(["init", "--pack-size", "1MiB"]));
    let mut child = dedup_home(&url, &server, &cache)
        .arg("ingest")
        .arg(&src)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let shard = server.dir("home-four/shards/00");
    let deadline = Instant::now() + Duration::from_secs(60);
    while packs_under(&shard).len() < 3 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        !locks_in(&server.dir("home-four/locks")).is_empty(),
        "its lock is left"
    );
    // Its process is gone from this host, so its lock is stale at once;
    // the packs it uploaded but never recorded in a snapshot (indexed or
    // not, depending on when it died) are gc's to remove: all of them.
    let _ = fs::remove_dir_all(&cache);
    let gc = ok(dedup_home(&url, &server, &cache).args(["gc", "--json"]));
    let gc: serde_json::Value = serde_json::from_str(&gc.stdout).unwrap();
    let removed = gc["orphan_packs"].as_u64().unwrap() + gc["packs_deleted"].as_u64().unwrap();
    assert!(removed >= 3, "{gc}");
    assert_eq!(
        packs_under(&shard),
        Vec::<std::path::PathBuf>::new(),
        "{gc}"
    );
    assert_eq!(
        locks_in(&server.dir("home-four/locks")),
        Vec::<String>::new()
    );
    ok(dedup_home(&url, &server, &cache).args(["verify", "--read-data"]));
    ok(dedup_home(&url, &server, &cache).arg("ingest").arg(&src));
    assert_restores(
        dedup_home(&url, &server, &cache),
        &src,
        &tmp.path().join("out"),
    );
}

#[test]
fn gc_in_a_loop_beside_two_writers_in_a_loop_loses_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let server = S3Server::start(&tmp.path().join("s3"));
    let url = format!("s3://{}/home-five", common::s3::BUCKET);
    // Every step from a machine with nothing cached.
    let fresh = || {
        let cache = tmp.path().join(format!("cache-{}", unique()));
        dedup_home(&url, &server, &cache)
    };
    ok(fresh().args(["init", "--avg-size", "4KiB", "--pack-size", "256KiB"]));
    let snapshots: Vec<(String, Vec<String>)> = std::thread::scope(|scope| {
        let writers: Vec<_> = (0..2u64)
            .map(|w| {
                let src = tmp.path().join(format!("src{w}"));
                make_tree(&src, 70);
                scope.spawn(move || {
                    let mut kept = Vec::new();
                    for round in 0..4u64 {
                        let bytes = random_bytes(w * 100 + round, 200_000);
                        fs::write(src.join("round"), bytes).unwrap();
                        let r = ok(fresh().args(["--wait-lock", "120", "ingest"]).arg(&src));
                        kept.push((snapshot_id(&r.stdout), describe(&src)));
                    }
                    kept
                })
            })
            .collect();
        let mut gcs = 0;
        while !writers
            .iter()
            .all(std::thread::ScopedJoinHandle::is_finished)
        {
            ok(fresh().args(["--wait-lock", "120", "gc"]));
            gcs += 1;
        }
        assert!(gcs > 0);
        writers
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .collect()
    });
    ok(fresh().arg("gc"));
    ok(fresh().args(["verify", "--read-data"]));
    for (i, (id, tree)) in snapshots.iter().enumerate() {
        let out = tmp.path().join(format!("out{i}"));
        ok(fresh().args(["restore", id]).arg(&out));
        assert_eq!(&describe(&out), tree, "snapshot {id}");
    }
}

#[test]
fn the_store_honours_create_only_puts() {
    // What the exclusive lock's claim and pack uploads rely on where the
    // store supports it (s3s-fs does; a store that does not is still safe).
    let tmp = tempfile::tempdir().unwrap();
    let server = S3Server::start(&tmp.path().join("s3"));
    let mut options = std::collections::BTreeMap::new();
    options.insert("endpoint".to_string(), server.endpoint());
    options.insert(
        "access_key_id".to_string(),
        common::s3::ACCESS_KEY.to_string(),
    );
    options.insert("secret_access_key".to_string(), SECRET_KEY.to_string());
    options.insert("region".to_string(), "us-east-1".to_string());
    let url = format!("s3://{}/claims", common::s3::BUCKET);
    let store = dedup::store::object::ObjectStoreBackend::new(&url, &options).unwrap();
    assert!(store.create_if_absent("locks/exclusive", b"first").unwrap());
    assert!(!store
        .create_if_absent("locks/exclusive", b"second")
        .unwrap());
    let kept = fs::read(server.dir("claims/locks/exclusive")).unwrap();
    assert_eq!(kept, b"first");
}

#[test]
fn an_encrypted_repository_whose_home_is_an_object_store_works_end_to_end() {
    let tmp = tempfile::tempdir().unwrap();
    let server = S3Server::start(&tmp.path().join("s3"));
    let src = tmp.path().join("src");
    make_tree(&src, 95);
    let known = b"KNOWN PLAINTEXT IN THE BUCKET? ".repeat(100);
    fs::write(src.join("known-name-in-bucket.txt"), &known).unwrap();
    let url = format!("s3://{}/sealed-home", common::s3::BUCKET);
    let cache = tmp.path().join("cache");
    let cmd = |password: &str| {
        let _ = fs::remove_dir_all(&cache);
        let mut c = dedup_home(&url, &server, &cache);
        c.env("DEDUP_PASSWORD", password);
        c
    };
    ok(cmd("pw").args([
        "init",
        "--encryption",
        "repokey",
        "--compression",
        "none",
        "--kdf-time",
        "1",
    ]));
    ok(cmd("pw").arg("ingest").arg(&src));
    let out = tmp.path().join("out");
    ok(cmd("pw").args(["restore", "latest"]).arg(&out));
    assert_eq!(describe(&src), describe(&out));
    ok(cmd("pw").args(["verify", "--read-data"]));
    // What the store holds: no byte of the file, not its name.
    let home = server.dir("sealed-home");
    let objects = files_under(&home, "");
    assert!(objects.iter().any(|p| p.starts_with(home.join("keys"))));
    for path in &objects {
        let bytes = fs::read(path).unwrap();
        for needle in [&known[..40], b"known-name-in-bucket"] {
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle),
                "{} holds plaintext",
                path.display()
            );
        }
    }
    // A wrong password: one line, exit 2.
    let r = run(cmd("not it").arg("snapshots"));
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("wrong password"), "{}", r.stderr);
}

#[test]
fn a_restore_from_an_object_store_reads_each_needed_pack_region_once() {
    let tmp = tempfile::tempdir().unwrap();
    let server = S3Server::start(&tmp.path().join("s3"));
    // Nothing spoiled: the proxy only records the requests.
    let proxy = FlakyProxy::start(server.port, 0, Fault::Cut);
    let (src, repo) = (tmp.path().join("src"), tmp.path().join("repo"));
    // Small files in a few folders, each content twice (a chunk two files
    // hold is read once), and two larger files.
    for dir in 0..4 {
        let d = src.join(format!("d{dir}"));
        fs::create_dir_all(&d).unwrap();
        for f in 0..60u64 {
            let data = random_bytes(dir * 1000 + f, 500 + (f as usize * 37) % 6000);
            fs::write(d.join(format!("f{f}")), &data).unwrap();
            fs::write(d.join(format!("copy{f}")), &data).unwrap();
        }
    }
    fs::write(src.join("big-a"), random_bytes(1, 3 << 20)).unwrap();
    fs::write(src.join("big-b"), random_bytes(2, 5 << 20)).unwrap();
    let url = format!("s3://{}/once", common::s3::BUCKET);
    ok(dedup_s3(&repo, &server).args([
        "init",
        "--pack-size",
        "4MiB",
        "--shard",
        &url,
        "--shard-option",
        &format!("endpoint={}", proxy.endpoint()),
    ]));
    ok(dedup_s3(&repo, &server).arg("ingest").arg(&src));
    let packs = packs_under(&server.dir("once")).len();
    let before = proxy.gets().len();
    let out = tmp.path().join("out");
    assert_restores(dedup_s3(&repo, &server), &src, &out);
    let gets = proxy.gets().split_off(before);
    let listing = gets.join("\n");
    // No byte of a pack is asked for twice: every record, however many
    // files hold it, and every tree, whatever its level, is read once.
    let mut read: Vec<(String, u64, u64)> = gets
        .iter()
        .filter_map(|get| {
            let key = get.split_whitespace().nth(1)?.to_string();
            let (from, to) = get.split("bytes=").nth(1)?.split_once('-')?;
            Some((key, from.parse().ok()?, to.parse().ok()?))
        })
        .collect();
    assert_eq!(read.len(), gets.len(), "every read is ranged:\n{listing}");
    read.sort();
    for w in read.windows(2) {
        assert!(
            w[0].0 != w[1].0 || w[0].2 < w[1].1,
            "{} read twice:\n{listing}",
            w[1].0
        );
    }
    // And few requests: each data pack once (its needed records lie close
    // together), and the one tree pack once, whole, at the first level.
    assert!(
        gets.len() <= packs,
        "{} reads for {packs} packs (one of trees):\n{listing}",
        gets.len()
    );

    // Browsing reads one folder at a time; the first read fetches the
    // tree pack whole, and every later folder is found in it.
    let before = proxy.gets().len();
    let listed = ok(dedup_s3(&repo, &server).args(["ls", "-R", "latest"]));
    assert!(listed.stdout.contains("copy59"), "{}", listed.stdout);
    let gets = proxy.gets().split_off(before);
    assert_eq!(
        gets.len(),
        1,
        "one read of the tree pack:\n{}",
        gets.join("\n")
    );
    let key = gets[0].split_whitespace().nth(1).unwrap_or_default();
    let range = gets[0].split("bytes=").nth(1).unwrap_or_default();
    let size = packs_under(&server.dir("once"))
        .into_iter()
        .find(|p| key.ends_with(&*p.file_name().unwrap().to_string_lossy()))
        .map(|p| fs::metadata(p).unwrap().len());
    assert_eq!(
        size.map(|size| format!("0-{}", size - 1)).as_deref(),
        Some(range),
        "not the whole pack: {}",
        gets[0]
    );
}

#[test]
fn an_index_on_an_object_store_compacts_into_families_that_a_new_machine_opens() {
    let tmp = tempfile::tempdir().unwrap();
    let server = S3Server::start(&tmp.path().join("s3"));
    let url = format!("s3://{}/home-six", common::s3::BUCKET);
    // Every step from a machine with nothing cached, with families of at
    // most 8 KiB (about 120 entries), so a small repository has many.
    let fresh = || {
        let cache = tmp.path().join(format!("cache-{}", unique()));
        let mut cmd = dedup_home(&url, &server, &cache);
        cmd.env("DEDUP_INDEX_FAMILY_BYTES", "8192");
        cmd
    };
    ok(fresh().args(["init", "--avg-size", "4KiB", "--pack-size", "256KiB"]));
    let src = tmp.path().join("src");
    make_tree(&src, 71);
    let first = snapshot_id(&ok(fresh().arg("ingest").arg(&src)).stdout);
    // One commit, one segment: past 64 of them, gc compacts.
    let blob = tmp.path().join("blob");
    let mut blobs = Vec::new();
    for i in 0..66u64 {
        let bytes = random_bytes(7_000 + i, 20_000);
        fs::write(&blob, &bytes).unwrap();
        let id = ok(fresh().arg("put").arg(&blob)).stdout.trim().to_string();
        blobs.push((id, bytes));
    }
    let home = server.dir("home-six");
    let segments = || files_under(&home.join("segments"), "").len();
    assert!(segments() > 64, "{}", segments());
    let gc = ok(fresh().args(["gc", "--json"]));
    let gc: serde_json::Value = serde_json::from_str(&gc.stdout).unwrap();
    let compacted = &gc["compacted"];
    assert_eq!(compacted["epoch"], 1, "{gc}");
    assert!(compacted["families"].as_u64().unwrap() >= 16, "{gc}");
    assert_eq!(segments(), 0, "every segment folded in and deleted");
    let index = files_under(&home.join("index"), "");
    assert!(
        index
            .iter()
            .all(|p| fs::metadata(p).unwrap().len() <= 8192 + 4096),
        "no index object much past the limit"
    );
    // A new machine opens from the families alone.
    let out = tmp.path().join("out");
    ok(fresh().args(["restore", &first]).arg(&out));
    assert_eq!(describe(&src), describe(&out));
    for (id, bytes) in blobs.iter().step_by(11) {
        let got = fresh().args(["get", id]).output().unwrap();
        assert!(got.status.success());
        assert_eq!(&got.stdout, bytes);
    }
    let verified = ok(fresh().args(["verify", "--read-data", "--json"]));
    let verified: serde_json::Value = serde_json::from_str(&verified.stdout).unwrap();
    assert!(
        verified["index_entries"].as_u64().unwrap() > 66,
        "{verified}"
    );
    // A later commit is a segment on top of the families; a second
    // ingest of the same tree stores nothing new.
    let again = ok(fresh().args(["ingest", "--json"]).arg(&src));
    let again: serde_json::Value = serde_json::from_str(&again.stdout).unwrap();
    assert_eq!(again["record"]["summary"]["new_chunks"], 0, "{again}");
    // A damaged family: a machine that loaded it before names it in
    // verify; a new machine opens (it reads only the families' summaries)
    // and its verify, which reads every family, names it too; repair makes
    // new ones from the packs.
    let kept = tmp.path().join("cache-kept");
    let kept_cmd = || {
        let mut cmd = dedup_home(&url, &server, &kept);
        cmd.env("DEDUP_INDEX_FAMILY_BYTES", "8192");
        cmd
    };
    ok(kept_cmd().arg("snapshots"));
    let family = index
        .iter()
        .find(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            !["manifest.", "packs-", "records-"]
                .iter()
                .any(|other| name.starts_with(other))
        })
        .unwrap();
    let name = family.file_name().unwrap().to_string_lossy().into_owned();
    let mut bytes = fs::read(family).unwrap();
    bytes[100] ^= 1;
    fs::write(family, &bytes).unwrap();
    let damaged = run(kept_cmd().args(["verify"]));
    assert_eq!(damaged.code, 1, "{}", damaged.stderr);
    assert!(
        damaged.stdout.contains("damaged-index") && damaged.stdout.contains(&name),
        "{}",
        damaged.stdout
    );
    ok(fresh().arg("snapshots"));
    let named = run(fresh().args(["verify"]));
    assert_eq!(named.code, 1, "{}", named.stderr);
    assert!(named.stdout.contains(&name), "{}", named.stdout);
    ok(fresh().args(["repair", "index"]));
    let out = tmp.path().join("after-repair");
    ok(fresh().args(["restore", "latest"]).arg(&out));
    assert_eq!(describe(&src), describe(&out));
    ok(fresh().args(["verify", "--read-data"]));
}

/// What a writer stored: snapshots with their trees, blobs with their
/// bytes.
type Stored = (Vec<(String, Vec<String>)>, Vec<(String, Vec<u8>)>);

/// Two writers (each a machine with its own cache), two compactors and a
/// reader restoring `first` at once, until the writers are done: what the
/// writers stored, and how many compactions wrote their epoch.
fn writers_compactors_and_a_reader(
    tmp: &Path,
    on: &(dyn Fn(&Path) -> Command + Sync),
    first: &str,
    first_tree: &[String],
) -> (Vec<Stored>, u64) {
    use std::sync::atomic::{AtomicBool, Ordering};
    let writing = AtomicBool::new(true);
    std::thread::scope(|scope| {
        // Two machines ingesting and putting blobs (one segment each),
        // each with its own cache, which a compaction elsewhere makes
        // stale between their runs.
        let writers: Vec<_> = (0..2u64)
            .map(|w| {
                let src = tmp.join(format!("src{w}"));
                make_tree(&src, 80 + w);
                let cache = tmp.join(format!("writer-{w}"));
                let blob = tmp.join(format!("blob-{w}"));
                scope.spawn(move || {
                    let (mut snapshots, mut blobs) = (Vec::new(), Vec::new());
                    for round in 0..3u64 {
                        fs::write(src.join("round"), random_bytes(w * 100 + round, 150_000))
                            .unwrap();
                        let r = ok(on(&cache).arg("ingest").arg(&src));
                        snapshots.push((snapshot_id(&r.stdout), describe(&src)));
                        for i in 0..3 {
                            let bytes = random_bytes(9_000 + w * 100 + round * 10 + i, 20_000);
                            fs::write(&blob, &bytes).unwrap();
                            let id = ok(on(&cache).arg("put").arg(&blob)).stdout;
                            blobs.push((id.trim().to_string(), bytes));
                        }
                    }
                    (snapshots, blobs)
                })
            })
            .collect();
        // Two compactors at once, each from a machine with nothing cached.
        let compactors: Vec<_> = (0..2)
            .map(|_| {
                scope.spawn(|| {
                    let mut done = 0;
                    while writing.load(Ordering::SeqCst) {
                        let out = ok(on(&tmp.join(format!("cache-{}", unique())))
                            .args(["compact", "--json"]));
                        let out: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
                        done += u64::from(!out["compacted"].is_null());
                    }
                    done
                })
            })
            .collect();
        // A reader restoring the first snapshot meanwhile.
        let reader = scope.spawn(|| {
            let mut done = 0;
            loop {
                let out = tmp.join(format!("read-{}", unique()));
                ok(on(&tmp.join(format!("cache-{}", unique())))
                    .args(["restore", first])
                    .arg(&out));
                assert_eq!(describe(&out), first_tree);
                done += 1;
                if !writing.load(Ordering::SeqCst) {
                    return done;
                }
            }
        });
        let kept: Vec<Stored> = writers.into_iter().map(|w| w.join().unwrap()).collect();
        writing.store(false, Ordering::SeqCst);
        let compactions = compactors.into_iter().map(|c| c.join().unwrap()).sum();
        assert!(reader.join().unwrap() > 0);
        (kept, compactions)
    })
}

#[test]
fn compactors_beside_writers_a_reader_and_each_other_lose_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let server = S3Server::start(&tmp.path().join("s3"));
    let url = format!("s3://{}/home-seven", common::s3::BUCKET);
    // Families of at most 8 KiB, so that every compaction writes many.
    let on = |cache: &Path| {
        let mut cmd = dedup_home(&url, &server, cache);
        cmd.env("DEDUP_INDEX_FAMILY_BYTES", "8192");
        cmd
    };
    let fresh = || on(&tmp.path().join(format!("cache-{}", unique())));
    ok(fresh().args(["init", "--avg-size", "4KiB", "--pack-size", "256KiB"]));
    let src = tmp.path().join("src");
    make_tree(&src, 72);
    let first = snapshot_id(&ok(fresh().arg("ingest").arg(&src)).stdout);
    let first_tree = describe(&src);
    let (kept, compactions) = writers_compactors_and_a_reader(tmp.path(), &on, &first, &first_tree);
    assert!(compactions > 0, "no compaction ran beside the writers");
    let home = server.dir("home-seven");
    let manifests = || {
        files_under(&home.join("index"), "")
            .iter()
            .filter(|p| {
                p.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with("manifest.")
            })
            .count() as u64
    };
    // Beside writers nothing is deleted: every manifest is still there.
    assert_eq!(manifests(), compactions + 1, "init's and one a compaction");
    // Each check from one machine: `cache` new, or a writer's.
    let check = |cache: &Path| {
        for (snapshots, blobs) in &kept {
            for (id, tree) in snapshots {
                let out = tmp.path().join(format!("out-{}", unique()));
                ok(on(cache).args(["restore", id]).arg(&out));
                assert_eq!(&describe(&out), tree, "snapshot {id}");
            }
            for (id, bytes) in blobs {
                let got = on(cache).args(["get", id]).output().unwrap();
                assert!(got.status.success(), "blob {id}");
                assert_eq!(&got.stdout, bytes, "blob {id}");
            }
        }
        ok(on(cache).args(["verify", "--read-data"]));
    };
    let new_machine = || tmp.path().join(format!("cache-{}", unique()));
    // A new machine, and a writer's machine with its cache, see it all.
    check(&new_machine());
    check(&tmp.path().join("writer-0"));
    // A compaction beside writers deletes what was superseded longer
    // than the grace period ago (here: none), and it all still reads.
    // (New bytes, so that there is a segment to compact whatever the
    // compactors covered before the writers stopped.)
    let new_blob = tmp.path().join("blob-last");
    fs::write(&new_blob, random_bytes(77, 100_000)).unwrap();
    let last = ok(fresh().args(["put"]).arg(&new_blob));
    assert!(!last.stdout.is_empty());
    let swept = ok(fresh()
        .env("DEDUP_GC_GRACE_SECONDS", "0")
        .args(["compact", "--json"]));
    let swept: serde_json::Value = serde_json::from_str(&swept.stdout).unwrap();
    assert!(!swept["compacted"].is_null(), "{swept}");
    assert!(swept["objects_deleted"].as_u64().unwrap() > 0, "{swept}");
    assert!(swept["segments_deleted"].as_u64().unwrap() > 0, "{swept}");
    assert!(swept["records_deleted"].as_u64().unwrap() > 0, "{swept}");
    assert_eq!(manifests(), 1);
    assert_eq!(files_under(&home.join("segments"), "").len(), 0);
    // Every record is in the catalog now, and no file of one is left.
    assert_eq!(files_under(&home.join("snapshots"), "").len(), 0);
    check(&tmp.path().join("writer-1"));
    // gc holds the lock alone: it finds nothing more to delete.
    ok(fresh().arg("gc"));
    assert_eq!(manifests(), 1);
    check(&new_machine());
}
