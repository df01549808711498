//! Crash safety: fail every I/O step of an ingest, a gc and a rebalance in
//! turn, and kill real `dedup ingest` processes with SIGKILL at 30 points,
//! from their start to their last packs.
//! After each, the repository opens, verifies clean, every snapshot that
//! completed before restores byte-identical, and a new ingest succeeds.

mod common;

use std::fs;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use common::*;
use dedup::store::FaultPlan;
use dedup::{OpenOptions, Quiet, Repository};

fn copy_dir(from: &Path, to: &Path) {
    let status = std::process::Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .unwrap();
    assert!(status.success());
}

/// Settings for a repository with 4 KiB chunks, so that a small tree makes
/// many chunks (and I/O steps).
fn small_chunks(pack_size: u32, shards: u32) -> dedup::InitOptions {
    dedup::InitOptions {
        pack_size,
        chunker: dedup::ChunkerConfig::fastcdc(4096),
        shards,
        ..Default::default()
    }
}

/// Opens `repo` as its writer with every durable step going through `plan`.
fn open_faulty(repo: &Path, plan: &Arc<FaultPlan>) -> dedup::Result<Repository> {
    Repository::open_with(
        repo,
        &OpenOptions {
            faults: Some(plan.clone()),
            ..Default::default()
        },
    )
}

/// Opens `repo` normally and checks everything the crash tests promise.
fn check_after_crash(repo: &Path, expected: &[(String, &Path)], scratch: &Path) {
    let r = Repository::open(repo).expect("the repository opens after a crash");
    let v = r.verify(1.0, &Quiet).unwrap();
    assert!(v.is_clean(), "verify after crash: {:?}", v.problems);
    for (i, (id, src)) in expected.iter().enumerate() {
        let (sid, _) = r
            .resolve_snapshot(id)
            .expect("a completed snapshot survives");
        let out = scratch.join(format!("restore-{i}"));
        let _ = fs::remove_dir_all(&out);
        let outcome = r.restore(&sid, &out, &Quiet).unwrap();
        assert!(outcome.failed.is_empty(), "{:?}", outcome.failed);
        assert_eq!(describe(src), describe(&out));
        fs::remove_dir_all(&out).unwrap();
    }
}

/// Runs `op` on copies of `base` with a fault at I/O step 0, 1, 2, ...
/// until one copy completes. After each, the copy must pass
/// [`check_after_crash`] for `expected`, `redo` must succeed on it, and it
/// must pass again. Returns the number of steps `op` took.
fn fail_each_step_in_turn(
    base: &Path,
    expected: &[(String, &Path)],
    scratch: &Path,
    op: impl Fn(&Repository) -> dedup::Result<()>,
    redo: impl Fn(&Repository),
) -> u64 {
    for n in 0.. {
        let repo = scratch.join(format!("step-{n}"));
        copy_dir(base, &repo);
        let plan = Arc::new(FaultPlan::fail_at(n));
        let result = open_faulty(&repo, &plan).and_then(|r| op(&r));
        if let Err(e) = &result {
            assert!(e.to_string().contains("injected fault"), "step {n}: {e}");
        }
        check_after_crash(&repo, expected, scratch);
        redo(&Repository::open(&repo).unwrap());
        check_after_crash(&repo, expected, scratch);
        fs::remove_dir_all(&repo).unwrap();
        if result.is_ok() {
            return n;
        }
    }
    unreachable!()
}

#[test]
fn a_fault_at_any_io_step_of_an_ingest_loses_nothing() {
    private_cache_dir();
    let tmp = tempfile::tempdir().unwrap();
    let (src, base) = (tmp.path().join("src"), tmp.path().join("base"));
    make_tree(&src, 41);
    Repository::init(&base, &small_chunks(64 * 1024, 4)).unwrap();
    let first = Repository::open(&base)
        .unwrap()
        .ingest(std::slice::from_ref(&src), &Quiet)
        .unwrap();
    let first_id = first.id.to_hex();
    let first_src = tmp.path().join("first-src");
    copy_dir(&src, &first_src);
    // The second ingest stores new data: a changed big file and a new one.
    fs::write(
        src.join("src/deep/er/still/big.bin"),
        random_bytes(99, 700_000),
    )
    .unwrap();
    fs::write(src.join("added"), random_bytes(98, 300_000)).unwrap();

    let mut n = 0;
    loop {
        let repo = tmp.path().join(format!("r{n}"));
        copy_dir(&base, &repo);
        let plan = Arc::new(FaultPlan::fail_at(n));
        let result =
            open_faulty(&repo, &plan).and_then(|r| r.ingest(std::slice::from_ref(&src), &Quiet));
        let mut expected = vec![(first_id.clone(), first_src.as_path())];
        let completed = match &result {
            Ok(outcome) => {
                assert!(
                    !plan.tripped(),
                    "an ingest that hit a fault must not report success"
                );
                expected.push((outcome.id.to_hex(), src.as_path()));
                true
            }
            Err(e) => {
                assert!(e.to_string().contains("injected fault"), "step {n}: {e}");
                false
            }
        };
        drop(result);
        check_after_crash(&repo, &expected, tmp.path());
        // And the interrupted work can be redone.
        let again = Repository::open(&repo)
            .unwrap()
            .ingest(std::slice::from_ref(&src), &Quiet)
            .unwrap();
        check_after_crash(&repo, &[(again.id.to_hex(), src.as_path())], tmp.path());
        fs::remove_dir_all(&repo).unwrap();
        if completed {
            break;
        }
        n += 1;
    }
    assert!(
        n > 20,
        "the ingest took only {n} I/O steps; the test covers too little"
    );
}

#[test]
fn a_fault_at_any_io_step_of_a_gc_loses_nothing_live() {
    private_cache_dir();
    let tmp = tempfile::tempdir().unwrap();
    let (a, b, base) = (
        tmp.path().join("a"),
        tmp.path().join("b"),
        tmp.path().join("base"),
    );
    make_tree(&a, 51);
    make_tree(&b, 52);
    let kept;
    {
        let repo = Repository::init(&base, &small_chunks(64 * 1024, 4)).unwrap();
        let gone = repo.ingest(std::slice::from_ref(&a), &Quiet).unwrap();
        kept = repo
            .ingest(std::slice::from_ref(&b), &Quiet)
            .unwrap()
            .id
            .to_hex();
        repo.forget(&[gone.id]).unwrap();
    }
    let steps = fail_each_step_in_turn(
        &base,
        &[(kept, b.as_path())],
        tmp.path(),
        |r| r.gc(false, &Quiet).map(drop),
        // A gc after the crash finishes the job.
        |r| {
            r.gc(false, &Quiet).unwrap();
        },
    );
    assert!(steps > 10, "the gc took only {steps} I/O steps");
}

#[test]
fn a_fault_at_any_io_step_of_a_rebalance_loses_nothing() {
    private_cache_dir();
    let tmp = tempfile::tempdir().unwrap();
    let (src, base) = (tmp.path().join("src"), tmp.path().join("base"));
    make_tree(&src, 61);
    let snapshot;
    {
        // Three shards inside the repository (so each copy below has its
        // own); the third gets nothing until it is given a weight. Large
        // packs keep the number of steps (and the test's time) down.
        let mut repo = Repository::init(&base, &small_chunks(1 << 20, 3)).unwrap();
        repo.set_shard_weight(dedup::ring::ShardId(2), 0).unwrap();
        snapshot = repo
            .ingest(std::slice::from_ref(&src), &Quiet)
            .unwrap()
            .id
            .to_hex();
        repo.set_shard_weight(dedup::ring::ShardId(2), 1).unwrap();
        let plan = repo.rebalance(true, &Quiet).unwrap();
        assert!(plan.moved_objects > 0);
    }
    let steps = fail_each_step_in_turn(
        &base,
        &[(snapshot, src.as_path())],
        tmp.path(),
        |r| r.rebalance(false, &Quiet).map(drop),
        // A rebalance after the crash finishes the job, and then nothing
        // is left to move.
        |r| {
            r.rebalance(false, &Quiet).unwrap();
            assert_eq!(r.rebalance(true, &Quiet).unwrap().moved_objects, 0);
        },
    );
    assert!(steps > 10, "the rebalance took only {steps} I/O steps");
}

#[test]
fn sigkill_at_thirty_points_during_an_ingest_loses_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let (src, repo) = (tmp.path().join("src"), tmp.path().join("repo"));
    make_tree(&src, 61);
    ok(dedup(&repo).args(["init", "--avg-size", "4KiB", "--pack-size", "256KiB"]));
    let first = snapshot_id(&ok(dedup(&repo).arg("ingest").arg(&src)).stdout);
    let first_src = tmp.path().join("first");
    copy_dir(&src, &first_src);

    // Each round ingests 16 MiB of fresh data: about 64 new packs.
    let fresh = |i: u64| {
        for f in 0..4 {
            fs::write(
                src.join(format!("fresh-{f}")),
                random_bytes(1000 * i + f, 4 << 20),
            )
            .unwrap();
        }
    };
    let mut killed = 0;
    for i in 1..=30u64 {
        fresh(i);
        // Kill points are spread by progress, not time, so that a busy or
        // an idle machine puts them at the same places: round i waits for
        // 2(i-1) new packs (0: as soon as it starts, 58: near the end).
        let target = packs(&repo).len() + 2 * (i as usize - 1);
        let mut child = dedup(&repo)
            .arg("ingest")
            .arg(&src)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + std::time::Duration::from_secs(60);
        while packs(&repo).len() < target
            && child.try_wait().unwrap().is_none()
            && Instant::now() < deadline
        {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        if child.try_wait().unwrap().is_none() {
            killed += 1;
        }
        child.kill().ok();
        child.wait().unwrap();
        let r = run(dedup(&repo).args(["verify", "--read-data"]));
        assert_eq!(r.code, 0, "after kill {i}: {}\n{}", r.stdout, r.stderr);
        let out = tmp.path().join(format!("out{i}"));
        ok(dedup(&repo).args(["restore", &first]).arg(&out));
        assert_eq!(describe(&first_src), describe(&out), "after kill {i}");
        fs::remove_dir_all(&out).unwrap();
    }
    eprintln!("{killed} of 30 kills landed during an ingest");
    assert!(
        killed >= 15,
        "only {killed} of 30 kills landed during an ingest"
    );
    // A dead writer's lock is taken over and the ingest completes.
    ok(dedup(&repo).arg("ingest").arg(&src));
    let out = tmp.path().join("final");
    assert_restores(dedup(&repo), &src, &out);
}
