//! One writer at a time; readers beside it; stale locks taken over.

mod common;

use std::fs;

use common::*;

fn lock_file(repo: &std::path::Path, pid: u32) {
    let host = gethostname();
    fs::write(
        repo.join("lock"),
        format!(r#"{{"pid":{pid},"host":"{host}","since":"2026-01-01T00:00:00Z"}}"#),
    )
    .unwrap();
}

#[test]
fn a_second_writer_is_told_who_holds_the_lock_and_exits_2() {
    let tmp = tempfile::tempdir().unwrap();
    let (repo, src) = (tmp.path().join("repo"), tmp.path().join("src"));
    make_tree(&src, 31);
    ok(dedup(&repo).arg("init"));
    let holder = dedup::Repository::open_with(&repo, &private()).unwrap();
    for args in [
        &["ingest", src.to_str().unwrap()][..],
        &["gc"],
        &["forget", "latest"],
    ] {
        let r = run(dedup(&repo).args(args));
        assert_eq!(r.code, 2, "{args:?}: {}", r.stderr);
        let me = format!("locked by pid {} on {}", std::process::id(), gethostname());
        assert!(r.stderr.contains(&me), "{args:?}: {}", r.stderr);
    }
    // Readers work while the writer holds the lock.
    ok(dedup(&repo).arg("snapshots"));
    ok(dedup(&repo).arg("report"));
    ok(dedup(&repo).arg("verify"));
    drop(holder);
    ok(dedup(&repo).arg("ingest").arg(&src));
}

#[test]
fn a_lock_left_by_a_dead_process_is_taken_over() {
    let tmp = tempfile::tempdir().unwrap();
    let (repo, src) = (tmp.path().join("repo"), tmp.path().join("src"));
    make_tree(&src, 32);
    ok(dedup(&repo).arg("init"));
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let dead = child.id();
    child.wait().unwrap();
    lock_file(&repo, dead);
    ok(dedup(&repo).arg("ingest").arg(&src));
    assert!(is_free(&repo.join("lock")), "released after use");
}

#[test]
fn a_lock_file_nobody_holds_is_taken_even_when_its_pid_is_alive() {
    // After a reboot the pid in a lock file often belongs to some other
    // live process; only a held lock counts.
    let tmp = tempfile::tempdir().unwrap();
    let (repo, src) = (tmp.path().join("repo"), tmp.path().join("src"));
    make_tree(&src, 35);
    ok(dedup(&repo).arg("init"));
    lock_file(&repo, std::process::id());
    ok(dedup(&repo).arg("ingest").arg(&src));
    assert!(is_free(&repo.join("lock")), "released after use");
}

/// True when nobody holds the `flock` on `lock` (or it is gone).
fn is_free(lock: &std::path::Path) -> bool {
    !lock.exists()
        || std::process::Command::new("flock")
            .arg("-n")
            .arg(lock)
            .arg("true")
            .status()
            .unwrap()
            .success()
}

#[test]
fn wait_lock_waits_for_the_holder_to_finish() {
    let tmp = tempfile::tempdir().unwrap();
    let (repo, src) = (tmp.path().join("repo"), tmp.path().join("src"));
    make_tree(&src, 33);
    ok(dedup(&repo).arg("init"));
    // Another process holds the lock until told to let go: `flock(1)`
    // takes it as dedup does, and `cat` ends when its input is closed.
    let lock = repo.join("lock");
    let mut holder = std::process::Command::new("flock")
        .arg(&lock)
        .arg("cat")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let held = || {
        let free = std::process::Command::new("flock")
            .arg("-n")
            .arg(&lock)
            .arg("true")
            .status()
            .unwrap();
        !free.success()
    };
    while !held() {
        assert!(holder.try_wait().unwrap().is_none(), "flock exited");
        std::thread::yield_now();
    }
    let r = run(dedup(&repo).arg("ingest").arg(&src));
    assert_eq!(r.code, 2, "without --wait-lock it fails at once");
    assert!(r.stderr.contains("locked by"), "{}", r.stderr);
    // The waiter says it waits; only then is the lock let go, so it
    // certainly waited.
    let mut waiter = dedup(&repo)
        .args(["--wait-lock", "60", "ingest"])
        .arg(&src)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = std::io::BufReader::new(waiter.stderr.take().unwrap());
    let mut first = String::new();
    std::io::BufRead::read_line(&mut stderr, &mut first).unwrap();
    assert!(first.contains("waiting up to 60 s"), "{first}");
    drop(holder.stdin.take());
    holder.wait().unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut rest).unwrap();
    assert!(waiter.wait().unwrap().success(), "{first}{rest}");
}

#[test]
fn readers_work_while_an_ingest_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("repo");
    ok(dedup(&repo).arg("init"));
    let first = tmp.path().join("first");
    make_tree(&first, 34);
    ok(dedup(&repo).arg("ingest").arg(&first));
    // The ingest reads standard input, so it is still running (waiting for
    // more) for as long as the test keeps its input open: every read below
    // overlaps it, certainly. Once 8 MiB have gone through a 64 KiB pipe,
    // it has opened the repository and is storing chunks.
    let mut ingest = dedup(&repo)
        .args(["ingest", "--stdin"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = ingest.stdin.take().unwrap();
    let data = random_bytes(100, 16 << 20);
    std::io::Write::write_all(&mut input, &data[..8 << 20]).unwrap();
    for i in 0..3 {
        ok(dedup(&repo).arg("snapshots"));
        let out = tmp.path().join(format!("o{i}"));
        ok(dedup(&repo).args(["restore", "latest"]).arg(&out));
        assert_eq!(describe(&first), describe(&out));
        ok(dedup(&repo).arg("verify"));
    }
    assert!(
        ingest.try_wait().unwrap().is_none(),
        "the ingest ended early"
    );
    std::io::Write::write_all(&mut input, &data[8 << 20..]).unwrap();
    drop(input);
    let out = ingest.wait_with_output().unwrap();
    assert!(out.status.success());
    let id = snapshot_id(&String::from_utf8_lossy(&out.stdout));
    let got = tmp.path().join("stdin-out");
    ok(dedup(&repo).args(["restore", &id]).arg(&got));
    assert_eq!(fs::read(got.join("stdin")).unwrap(), data);
}

/// Progress that, halfway through an ingest, lets a gc start and then
/// holds the ingest still for a while, so the two would overlap.
struct PauseHalfway {
    total: std::sync::atomic::AtomicU64,
    done: std::sync::atomic::AtomicU64,
    halfway: std::sync::Mutex<Option<std::sync::mpsc::Sender<()>>>,
}

impl dedup::Progress for PauseHalfway {
    fn add_total(&self, bytes: u64) {
        self.total
            .fetch_add(bytes, std::sync::atomic::Ordering::SeqCst);
    }
    fn advance(&self, bytes: u64) {
        use std::sync::atomic::Ordering::SeqCst;
        let done = self.done.fetch_add(bytes, SeqCst) + bytes;
        if done * 2 >= self.total.load(SeqCst) {
            if let Some(tx) = self.halfway.lock().unwrap().take() {
                tx.send(()).unwrap();
                std::thread::sleep(std::time::Duration::from_millis(500));
            }
        }
    }
}

#[test]
fn one_handle_never_runs_gc_in_the_middle_of_its_own_ingest() {
    let tmp = tempfile::tempdir().unwrap();
    let (src, path) = (tmp.path().join("src"), tmp.path().join("repo"));
    make_tree(&src, 31);
    let opts = dedup::InitOptions {
        pack_size: 64 * 1024,
        chunker: dedup::ChunkerConfig::fastcdc(4096),
        ..Default::default()
    };
    let repo = dedup::Repository::init_with(&path, &opts, &private()).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let progress = PauseHalfway {
        total: 0.into(),
        done: 0.into(),
        halfway: std::sync::Mutex::new(Some(tx)),
    };
    let shared = &repo;
    let gc = std::thread::scope(|s| {
        s.spawn(|| {
            shared
                .ingest(std::slice::from_ref(&src), &progress)
                .unwrap()
        });
        let gc = s.spawn(move || {
            rx.recv().unwrap();
            shared.gc(dedup::Mode::Apply, &dedup::Quiet).unwrap()
        });
        gc.join().unwrap()
    });
    assert_eq!(
        gc.objects_removed, 0,
        "gc took the ingest's chunks for dead"
    );
    assert!(repo.verify(1.0, &dedup::Quiet).unwrap().is_clean());
    drop(repo);
    assert_restores(dedup(&path), &src, &tmp.path().join("out"));
}

#[test]
fn a_reader_open_across_gc_and_rebalance_still_reads_everything() {
    let tmp = tempfile::tempdir().unwrap();
    let (repo, src) = (tmp.path().join("repo"), tmp.path().join("src"));
    // One snapshot of a tree and a large file, then one of the tree alone:
    // forgetting the first leaves packs that mix live and dead records.
    make_tree(&src, 36);
    fs::write(src.join("big.bin"), random_bytes(37, 4 << 20)).unwrap();
    ok(dedup(&repo).args(["init", "--avg-size", "4KiB", "--pack-size", "256KiB"]));
    let first = snapshot_id(&ok(dedup(&repo).arg("ingest").arg(&src)).stdout);
    fs::remove_file(src.join("big.bin")).unwrap();
    ok(dedup(&repo).arg("ingest").arg(&src));

    // Through the cache the commands below use: they take other slots.
    let opts = dedup::OpenOptions {
        read_only: true,
        cache_dir: Some(cache_of(&repo)),
        ..Default::default()
    };
    let reader = dedup::Repository::open_with(&repo, &opts).unwrap();
    let (kept, _) = reader.resolve_snapshot("latest").unwrap();
    ok(dedup(&repo).args(["forget", &first]));
    let gc = json(dedup(&repo).args(["gc", "--json"]));
    assert!(gc["packs_kept_for_readers"].as_u64().unwrap() > 0, "{gc}");
    ok(dedup(&repo)
        .args(["shard", "add"])
        .arg(tmp.path().join("s1")));
    let moved = json(dedup(&repo).args(["rebalance", "--json"]));
    assert!(
        moved["packs_kept_for_readers"].as_u64().unwrap() > 0,
        "{moved}"
    );

    // The reader's view of the index still lists the old packs, and their
    // files are still there.
    let out = tmp.path().join("out");
    let restored = reader.restore(&kept, &out, &dedup::Quiet).unwrap();
    assert!(restored.failed.is_empty(), "{:?}", restored.failed);
    assert_eq!(describe(&src), describe(&out));
    let report = reader.verify(1.0, &dedup::Quiet).unwrap();
    assert!(report.is_clean(), "{report}");
    drop(reader);

    // With the reader gone, the next gc deletes what was kept for it.
    let gc = json(dedup(&repo).args(["gc", "--json"]));
    assert_eq!(gc["packs_kept_for_readers"], 0, "{gc}");
    assert!(gc["orphan_packs"].as_u64().unwrap() > 0, "{gc}");
    let gc = json(dedup(&repo).args(["gc", "--json"]));
    assert_eq!(gc["orphan_packs"], 0, "{gc}");
    ok(dedup(&repo).args(["verify", "--read-data"]));
    assert_restores(dedup(&repo), &src, &tmp.path().join("out2"));
}

/// Readers in a loop while another process keeps moving every pack
/// (rebalancing back and forth between two shards), ingesting, forgetting
/// and collecting: every restore is identical and every verify clean.
#[test]
fn restore_and_verify_in_a_loop_beside_gc_rebalance_and_ingest() {
    const ROUNDS: usize = 200;
    let tmp = tempfile::tempdir().unwrap();
    let (repo, src) = (tmp.path().join("repo"), tmp.path().join("src"));
    two_shards_holding_a_tree(&repo, &src, 38);
    let kept = snapshot_id(&ok(dedup(&repo).arg("ingest").arg(&src)).stdout);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    // Cycles the writer has finished: the reads go on until there are two,
    // however the machine shares its cores between the two sides.
    let done = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let churn = std::thread::spawn({
        let (repo, stop, done, scratch) = (
            repo.clone(),
            stop.clone(),
            done.clone(),
            tmp.path().join("churn"),
        );
        move || {
            let mut cycles = 0u64;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                let (to, from) = if cycles.is_multiple_of(2) {
                    ("01", "00")
                } else {
                    ("00", "01")
                };
                ok(dedup(&repo).args(["shard", "set-weight", to, "1"]));
                ok(dedup(&repo).args(["shard", "set-weight", from, "0"]));
                ok(dedup(&repo).arg("rebalance"));
                fs::create_dir_all(&scratch).unwrap();
                fs::write(scratch.join("f"), random_bytes(1000 + cycles, 1 << 20)).unwrap();
                let id = snapshot_id(&ok(dedup(&repo).arg("ingest").arg(&scratch)).stdout);
                ok(dedup(&repo).args(["forget", &id]));
                ok(dedup(&repo).arg("gc"));
                cycles += 1;
                done.store(cycles, std::sync::atomic::Ordering::SeqCst);
            }
            cycles
        }
    });
    let mut round = 0;
    while round < ROUNDS
        || (done.load(std::sync::atomic::Ordering::SeqCst) < 2 && !churn.is_finished())
    {
        round += 1;
        let out = tmp.path().join(format!("out{round}"));
        ok(dedup(&repo).args(["restore", &kept]).arg(&out));
        assert_eq!(describe(&src), describe(&out), "round {round}");
        fs::remove_dir_all(&out).unwrap();
        ok(dedup(&repo).arg("verify"));
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let cycles = churn.join().unwrap();
    assert!(cycles >= 2, "the writer moved every pack {cycles} times");
    ok(dedup(&repo).arg("gc"));
    ok(dedup(&repo).args(["verify", "--read-data"]));
}

#[test]
fn two_writers_taking_over_a_stale_lock_at_once_never_both_get_it() {
    let tmp = tempfile::tempdir().unwrap();
    let (repo, src) = (tmp.path().join("repo"), tmp.path().join("src"));
    make_tree(&src, 39);
    ok(dedup(&repo).arg("init"));
    ok(dedup(&repo).arg("ingest").arg(&src));
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let dead = child.id();
    child.wait().unwrap();
    let mut won = 0;
    for round in 0..15u64 {
        lock_file(&repo, dead);
        fs::write(src.join("round"), random_bytes(round, 50_000)).unwrap();
        // `repair index` renames the index away: had it run beside the
        // ingest, the ingest's commits would land in a folder being replaced.
        let start = |cmd: &mut std::process::Command| {
            cmd.stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        };
        let ingest = start(dedup(&repo).arg("ingest").arg(&src));
        let repair = start(dedup(&repo).args(["repair", "index"]));
        for child in [ingest, repair] {
            let out = child.wait_with_output().unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            match out.status.code() {
                Some(0) => won += 1,
                Some(2) if stderr.contains("locked by") => {}
                other => panic!("round {round}: exit {other:?}: {stderr}"),
            }
        }
    }
    assert!(won >= 15, "every round someone writes");
    ok(dedup(&repo).args(["verify", "--read-data"]));
    // The last round's ingest may have lost the race: store the tree as it is.
    ok(dedup(&repo).arg("ingest").arg(&src));
    assert_restores(dedup(&repo), &src, &tmp.path().join("out"));
}

#[test]
fn ingests_run_at_once_and_gc_in_a_loop_beside_them_loses_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("repo");
    ok(dedup(&repo).args(["init", "--avg-size", "4KiB", "--pack-size", "256KiB"]));
    // Three writers at once, through one cache folder (three slots), on
    // trees that share most of their bytes; gc, forget and verify loop
    // beside them, each waiting its turn for the lock alone.
    let trees: Vec<std::path::PathBuf> = (0..3u64)
        .map(|i| {
            let src = tmp.path().join(format!("src{i}"));
            make_tree(&src, 60);
            fs::write(src.join("own.bin"), random_bytes(61 + i, 2 << 20)).unwrap();
            src
        })
        .collect();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let maintenance = std::thread::spawn({
        let (repo, stop) = (repo.clone(), stop.clone());
        move || {
            let mut runs = 0;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                ok(dedup(&repo).args(["--wait-lock", "120", "gc"]));
                runs += 1;
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            runs
        }
    });
    let writers: Vec<_> = trees
        .iter()
        .cloned()
        .map(|src| {
            let repo = repo.clone();
            std::thread::spawn(move || {
                let mut ids = Vec::new();
                for round in 0..3 {
                    fs::write(src.join("round"), random_bytes(900 + round, 300_000)).unwrap();
                    let r = ok(dedup(&repo)
                        .args(["--wait-lock", "120", "ingest"])
                        .arg(&src));
                    ids.push((snapshot_id(&r.stdout), describe(&src)));
                }
                ids
            })
        })
        .collect();
    let snapshots: Vec<(String, Vec<String>)> = writers
        .into_iter()
        .flat_map(|w| w.join().unwrap())
        .collect();
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    assert!(maintenance.join().unwrap() > 0);
    // Every snapshot restores as its tree was, from a cache that never
    // saw any of it.
    let fresh = tmp.path().join("fresh-cache");
    ok(dedup(&repo)
        .env("DEDUP_CACHE", &fresh)
        .args(["verify", "--read-data"]));
    for (i, (id, tree)) in snapshots.iter().enumerate() {
        let out = tmp.path().join(format!("out{i}"));
        ok(dedup(&repo)
            .env("DEDUP_CACHE", &fresh)
            .args(["restore", id])
            .arg(&out));
        assert_eq!(&describe(&out), tree, "snapshot {id}");
    }
    ok(dedup(&repo).arg("gc"));
    ok(dedup(&repo)
        .env("DEDUP_CACHE", &fresh)
        .args(["verify", "--read-data"]));
}

#[test]
fn compactions_and_sweeps_in_a_folder_beside_ingests_a_reader_and_each_other_lose_nothing() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("repo");
    // Small families, and a grace period of a second, so that compactions
    // split the index and delete what they superseded while the others
    // run.
    let on = || {
        let mut cmd = dedup(&repo);
        cmd.env("DEDUP_INDEX_FAMILY_BYTES", "8192")
            .env("DEDUP_GC_GRACE_SECONDS", "1");
        cmd
    };
    ok(on().args(["init", "--avg-size", "4KiB", "--pack-size", "256KiB"]));
    let src = tmp.path().join("src");
    make_tree(&src, 33);
    let first = snapshot_id(&ok(on().arg("ingest").arg(&src)).stdout);
    let first_tree = describe(&src);
    let writing = AtomicBool::new(true);
    let (snapshots, runs) = std::thread::scope(|scope| {
        let writers: Vec<_> = (0..2u64)
            .map(|w| {
                let (src, on) = (tmp.path().join(format!("src{w}")), &on);
                make_tree(&src, 34 + w);
                scope.spawn(move || {
                    let mut kept = Vec::new();
                    for round in 0..4u64 {
                        fs::write(src.join("round"), random_bytes(w * 10 + round, 100_000))
                            .unwrap();
                        let r = ok(on().arg("ingest").arg(&src));
                        kept.push((snapshot_id(&r.stdout), describe(&src)));
                        for i in 0..3 {
                            fs::write(src.join("blob"), random_bytes(500 + w * 100 + i, 9_000))
                                .unwrap();
                            ok(on().arg("put").arg(src.join("blob")));
                        }
                    }
                    kept
                })
            })
            .collect();
        let compactors: Vec<_> = (0..2)
            .map(|_| {
                scope.spawn(|| {
                    let (mut done, mut swept) = (0, 0);
                    while writing.load(Ordering::SeqCst) {
                        let out = ok(on().args(["compact", "--json"]));
                        let out: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
                        done += u64::from(!out["compacted"].is_null());
                        swept += out["objects_deleted"].as_u64().unwrap();
                        // Past the grace period of what it superseded.
                        std::thread::sleep(std::time::Duration::from_millis(300));
                    }
                    (done, swept)
                })
            })
            .collect();
        let reader = scope.spawn(|| {
            while writing.load(Ordering::SeqCst) {
                let out = tmp.path().join(format!("read-{}", unique()));
                ok(on().args(["restore", &first]).arg(&out));
                assert_eq!(describe(&out), first_tree);
            }
        });
        let snapshots: Vec<(String, Vec<String>)> = writers
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .collect();
        writing.store(false, Ordering::SeqCst);
        reader.join().unwrap();
        let runs: Vec<(u64, u64)> = compactors.into_iter().map(|c| c.join().unwrap()).collect();
        (snapshots, runs)
    });
    let compactions: u64 = runs.iter().map(|r| r.0).sum();
    let swept: u64 = runs.iter().map(|r| r.1).sum();
    assert!(compactions > 0, "no compaction ran beside the writers");
    assert!(swept > 0, "no compaction deleted what it superseded");
    let fresh = tmp.path().join("fresh-cache");
    let check = || {
        ok(on()
            .env("DEDUP_CACHE", &fresh)
            .args(["verify", "--read-data"]));
        for (id, tree) in &snapshots {
            let out = tmp.path().join(format!("out-{}", unique()));
            ok(on()
                .env("DEDUP_CACHE", &fresh)
                .args(["restore", id])
                .arg(&out));
            assert_eq!(&describe(&out), tree, "snapshot {id}");
        }
    };
    check();
    // No machine took a sweep for loss.
    let quiet = ok(on().arg("snapshots"));
    assert!(!quiet.stderr.contains("gone"), "{}", quiet.stderr);
    ok(on().arg("gc"));
    check();
}
