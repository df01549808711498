//! Crash safety: fail the I/O steps of an ingest, a gc and a rebalance in
//! turn (every kind of step in every context, see [`steps_to_fail`]), and
//! kill real `dedup ingest` processes with SIGKILL at 30 points, from their
//! start to their last packs.
//! After each, the repository opens, verifies clean, every snapshot that
//! completed before restores byte-identical, and a new ingest succeeds.
//!
//! On the real disk the OS keeps writes that were never fsynced, so those
//! rounds prove the order of the steps but could not see a missing fsync.
//! The power-cut rounds run the same operations on `MemFs`, which keeps
//! only what was synced (file bytes by fsync, names by fsyncing their
//! folder): there, leaving out any one fsync of the local store loses a
//! pack, a folder of packs or a snapshot record, and the checks fail.

mod common;

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use common::*;
use dedup::store::{FaultPlan, FaultyFs, Fs, MemFs, OsFs};
use dedup::{Mode, OpenOptions, Quiet, Repository};

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
    let fs = FaultyFs::new(OsFs::shared(), plan.clone());
    Repository::open_with(repo, &on(Arc::new(fs)))
}

/// Options that reach the repository's files through `fs`.
fn on(fs: Arc<dyn Fs>) -> OpenOptions {
    OpenOptions {
        fs: Some(fs),
        ..private()
    }
}

/// Opens `repo` normally and checks everything the crash tests promise.
fn check_after_crash(repo: &Path, expected: &[(String, &Path)], scratch: &Path) {
    check_after_crash_on(repo, &private(), expected, scratch);
}

/// [`check_after_crash`], the repository opened with `opts`.
fn check_after_crash_on(
    repo: &Path,
    opts: &OpenOptions,
    expected: &[(String, &Path)],
    scratch: &Path,
) {
    let r = Repository::open_with(repo, opts).expect("the repository opens after a crash");
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

/// The steps of an operation to fail, given the kind of each of its steps
/// in order (from a run under [`FaultPlan::recording`]).
///
/// A long operation repeats a few kinds of step once per pack or segment
/// (a gc of a few hundred packs takes 900 steps, most of them the same six
/// over again), and failing every repeat took minutes and could find
/// nothing the first repeats do not. So step N is failed when the kinds
/// of the steps around it (two before, N, two after) have been failed
/// fewer than twice before: the first and last steps, every phase, every
/// change from one phase to the next and every position in a repeating
/// cycle are all failed. `DEDUP_CRASH_EVERY_STEP=1` fails every step.
fn steps_to_fail(kinds: &[String]) -> Vec<u64> {
    if std::env::var_os("DEDUP_CRASH_EVERY_STEP").is_some() {
        return (0..kinds.len() as u64).collect();
    }
    let mut failed: HashMap<&[String], u32> = HashMap::new();
    let chosen: Vec<u64> = (0..kinds.len())
        .filter(|&n| {
            let around = &kinds[n.saturating_sub(2)..(n + 3).min(kinds.len())];
            let times = failed.entry(around).or_default();
            *times += 1;
            *times <= 2
        })
        .map(|n| n as u64)
        .collect();
    eprintln!("failing {} of {} steps", chosen.len(), kinds.len());
    chosen
}

#[test]
fn steps_to_fail_take_each_phase_its_edges_and_every_place_in_a_cycle() {
    // A mkdir, 50 cycles of four steps, 30 deletes.
    let kinds: Vec<String> = std::iter::once("mkdir")
        .chain(["write", "fsync", "rename", "index commit"].repeat(50))
        .chain(["delete"; 30])
        .map(String::from)
        .collect();
    let chosen = steps_to_fail(&kinds);
    assert!(
        chosen.len() < 40,
        "{} of {} steps",
        chosen.len(),
        kinds.len()
    );
    // The first and last steps, and each side of each change of phase.
    for edge in [0, 1, 2, 199, 200, 201, 202, 230] {
        assert!(
            chosen.contains(&edge),
            "step {edge} is not failed: {chosen:?}"
        );
    }
    // Each place in the cycle at least twice.
    for place in 0..4 {
        let times = chosen
            .iter()
            .filter(|&&n| (1..=200).contains(&n) && (n - 1) % 4 == place)
            .count();
        assert!(times >= 2, "place {place} of the cycle: {chosen:?}");
    }
}

/// Runs `round` (the operation under test on a fresh copy, its steps
/// going through the plan it is given, then the checks after it; true
/// when the operation completed) once under a recording plan, where it
/// must complete, and then with a fault at each of [`steps_to_fail`].
/// `round` names its copy after the string it gets. Returns the number
/// of steps the operation took.
fn walk_faults(round: impl Fn(&Arc<FaultPlan>, &str) -> bool) -> u64 {
    let whole = Arc::new(FaultPlan::recording());
    assert!(
        round(&whole, "whole"),
        "the operation fails with no fault injected"
    );
    let kinds = whole.kinds();
    for n in steps_to_fail(&kinds) {
        round(&Arc::new(FaultPlan::fail_at(n)), &format!("step-{n}"));
    }
    kinds.len() as u64
}

/// Runs `op` on a copy of `base` with no fault, to learn its steps, and
/// then on copies with a fault at each of [`steps_to_fail`]. After each,
/// the copy must pass [`check_after_crash`] for `expected`, `redo` must
/// succeed on it, and it must pass again. Returns the number of steps `op`
/// took.
fn fail_each_step_in_turn(
    base: &Path,
    expected: &[(String, &Path)],
    scratch: &Path,
    op: impl Fn(&Repository) -> dedup::Result<()>,
    redo: impl Fn(&Repository),
) -> u64 {
    walk_faults(|plan, name| {
        let repo = scratch.join(name);
        copy_dir(base, &repo);
        let result = open_faulty(&repo, plan).and_then(|r| op(&r));
        if let Err(e) = &result {
            assert!(e.to_string().contains("injected fault"), "{name}: {e}");
        }
        check_after_crash(&repo, expected, scratch);
        redo(&Repository::open_with(&repo, &private()).unwrap());
        check_after_crash(&repo, expected, scratch);
        fs::remove_dir_all(&repo).unwrap();
        result.is_ok()
    })
}

#[test]
fn a_fault_at_any_io_step_of_an_ingest_loses_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let (src, base) = (tmp.path().join("src"), tmp.path().join("base"));
    make_tree(&src, 41);
    Repository::init_with(&base, &small_chunks(64 * 1024, 4), &private()).unwrap();
    let first = Repository::open_with(&base, &private())
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

    let steps = walk_faults(|plan, name| {
        let repo = tmp.path().join(name);
        copy_dir(&base, &repo);
        let result =
            open_faulty(&repo, plan).and_then(|r| r.ingest(std::slice::from_ref(&src), &Quiet));
        let mut expected = vec![(first_id.clone(), first_src.as_path())];
        match &result {
            // A fault after the record is durable (its index entry, the
            // Bloom filter) is a warning: the snapshot is saved, and an
            // error would have the user ingest it again.
            Ok(outcome) => expected.push((outcome.id.to_hex(), src.as_path())),
            Err(e) => assert!(e.to_string().contains("injected fault"), "{name}: {e}"),
        }
        let completed = result.is_ok() && !plan.tripped();
        drop(result);
        check_after_crash(&repo, &expected, tmp.path());
        // And the interrupted work can be redone.
        let again = Repository::open_with(&repo, &private())
            .unwrap()
            .ingest(std::slice::from_ref(&src), &Quiet)
            .unwrap();
        check_after_crash(&repo, &[(again.id.to_hex(), src.as_path())], tmp.path());
        fs::remove_dir_all(&repo).unwrap();
        completed
    });
    assert!(
        steps > 20,
        "the ingest took only {steps} I/O steps; the test covers too little"
    );
}

#[test]
fn a_fault_at_any_io_step_of_a_gc_loses_nothing_live() {
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
        let repo = Repository::init_with(&base, &small_chunks(64 * 1024, 4), &private()).unwrap();
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
        |r| r.gc(Mode::Apply, &Quiet).map(drop),
        // A gc after the crash finishes the job.
        |r| {
            r.gc(Mode::Apply, &Quiet).unwrap();
        },
    );
    assert!(steps > 10, "the gc took only {steps} I/O steps");
}

/// Blobs put one at a time: one segment each, so that past 64 of them
/// the next gc compacts the index into families.
fn put_blobs(repo: &Repository, n: u64) -> Vec<(dedup::ChunkId, Vec<u8>)> {
    (0..n)
        .map(|i| {
            let bytes = random_bytes(400 + i, 3_000);
            (repo.put(&bytes).unwrap(), bytes)
        })
        .collect()
}

#[test]
fn a_fault_at_any_io_step_of_a_gc_that_compacts_the_index_loses_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let (src, base) = (tmp.path().join("src"), tmp.path().join("base"));
    make_tree(&src, 53);
    let (kept, blobs) = {
        let repo = Repository::init_with(&base, &small_chunks(64 * 1024, 2), &private()).unwrap();
        let kept = repo.ingest(std::slice::from_ref(&src), &Quiet).unwrap();
        (kept.id.to_hex(), put_blobs(&repo, 66))
    };
    let steps = fail_each_step_in_turn(
        &base,
        &[(kept, src.as_path())],
        tmp.path(),
        |r| {
            let report = r.gc(Mode::Apply, &Quiet)?;
            assert!(report.compacted.is_some(), "the gc compacts");
            Ok(())
        },
        // A gc after the crash finishes the job, and every blob reads.
        |r| {
            r.gc(Mode::Apply, &Quiet).unwrap();
            for (id, bytes) in &blobs {
                assert_eq!(&r.get(id).unwrap(), bytes);
            }
        },
    );
    assert!(steps > 20, "the gc took only {steps} I/O steps");
}

#[test]
fn a_fault_at_any_io_step_of_a_compaction_beside_writers_loses_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let (src, base) = (tmp.path().join("src"), tmp.path().join("base"));
    make_tree(&src, 57);
    let (kept, blobs) = {
        let repo = Repository::init_with(&base, &small_chunks(64 * 1024, 2), &private()).unwrap();
        let kept = repo.ingest(std::slice::from_ref(&src), &Quiet).unwrap();
        (kept.id.to_hex(), put_blobs(&repo, 12))
    };
    let shared = |fs: Option<Arc<dyn Fs>>| OpenOptions {
        fs,
        shared: true,
        ..private()
    };
    let readable = |r: &Repository| {
        for (id, bytes) in &blobs {
            assert_eq!(&r.get(id).unwrap(), bytes);
        }
    };
    let steps = walk_faults(|plan, name| {
        let repo = tmp.path().join(name);
        copy_dir(&base, &repo);
        let fs = FaultyFs::new(OsFs::shared(), plan.clone());
        let result = Repository::open_with(&repo, &shared(Some(Arc::new(fs))))
            .and_then(|r| r.compact_index(0))
            .map(|c| assert!(c.compacted.is_some(), "the compaction compacts"));
        if let Err(e) = &result {
            assert!(e.to_string().contains("injected fault"), "{name}: {e}");
        }
        let expected = [(kept.clone(), src.as_path())];
        check_after_crash(&repo, &expected, tmp.path());
        // Another compaction beside writers finishes the job, a gc
        // deletes what it left, and every blob reads throughout.
        let again = Repository::open_with(&repo, &shared(None)).unwrap();
        again.compact_index(0).unwrap();
        readable(&again);
        drop(again);
        let alone = Repository::open_with(&repo, &private()).unwrap();
        alone.gc(Mode::Apply, &Quiet).unwrap();
        readable(&alone);
        drop(alone);
        check_after_crash(&repo, &expected, tmp.path());
        fs::remove_dir_all(&repo).unwrap();
        result.is_ok()
    });
    assert!(steps > 10, "the compaction took only {steps} I/O steps");
}

#[test]
fn a_fault_at_any_io_step_of_a_rebalance_loses_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let (src, base) = (tmp.path().join("src"), tmp.path().join("base"));
    make_tree(&src, 61);
    let snapshot;
    {
        // Three shards inside the repository (so each copy below has its
        // own); the third gets nothing until it is given a weight. Large
        // packs keep the number of steps (and the test's time) down.
        let mut repo = Repository::init_with(&base, &small_chunks(1 << 20, 3), &private()).unwrap();
        repo.set_shard_weight(dedup::ring::ShardId(2), 0).unwrap();
        snapshot = repo
            .ingest(std::slice::from_ref(&src), &Quiet)
            .unwrap()
            .id
            .to_hex();
        repo.set_shard_weight(dedup::ring::ShardId(2), 1).unwrap();
        let plan = repo.rebalance(Mode::DryRun, &Quiet).unwrap();
        assert!(plan.moved_objects > 0);
    }
    let steps = fail_each_step_in_turn(
        &base,
        &[(snapshot, src.as_path())],
        tmp.path(),
        |r| r.rebalance(Mode::Apply, &Quiet).map(drop),
        // A rebalance after the crash finishes the job, and then nothing
        // is left to move.
        |r| {
            r.rebalance(Mode::Apply, &Quiet).unwrap();
            assert_eq!(r.rebalance(Mode::DryRun, &Quiet).unwrap().moved_objects, 0);
        },
    );
    assert!(steps > 10, "the rebalance took only {steps} I/O steps");
}

/// A repository whose files live on a `MemFs` (its index and lock on the
/// real disk, at `root`), as it stands before the operation under test.
struct InMemory {
    root: PathBuf,
    /// A copy of `root`'s real files (the index).
    real: PathBuf,
    /// Its files, every byte of them durable.
    files: MemFs,
}

impl InMemory {
    /// Runs `setup` on a new repository at `root` on a `MemFs` and keeps
    /// what a power cut right after it would leave.
    fn new(
        root: &Path,
        scratch: &Path,
        init: &dedup::InitOptions,
        setup: impl FnOnce(&mut Repository),
    ) -> Self {
        let fs = Arc::new(MemFs::new());
        let mut repo = Repository::init_with(root, init, &on(fs.clone())).unwrap();
        setup(&mut repo);
        drop(repo);
        let real = scratch.join("base-real");
        copy_dir(root, &real);
        InMemory {
            root: root.to_path_buf(),
            real,
            files: fs.crash_image(),
        }
    }

    /// Runs `op` once with no power cut, to learn its durable steps, then
    /// with a cut at each of [`steps_to_fail`]. After each cut, what was
    /// synced must open, verify clean and restore `expected` (plus the
    /// snapshot `op` returns, when it completed). Returns the number of
    /// steps `op` took.
    fn cut_power_at_each_step(
        &self,
        expected: &[(String, &Path)],
        scratch: &Path,
        op: impl Fn(&Repository) -> dedup::Result<Option<String>>,
        made_from: &Path,
    ) -> u64 {
        walk_faults(|plan, _| {
            let _ = fs::remove_dir_all(&self.root);
            copy_dir(&self.real, &self.root);
            let files = Arc::new(self.files.live_image());
            let faulty = Arc::new(FaultyFs::new(files.clone(), plan.clone()));
            let result = Repository::open_with(&self.root, &on(faulty)).and_then(|r| op(&r));
            let mut expected = expected.to_vec();
            match &result {
                Ok(Some(id)) => expected.push((id.clone(), made_from)),
                Ok(None) => {}
                Err(e) => assert!(e.to_string().contains("injected fault"), "{e}"),
            }
            let cut: Arc<dyn Fs> = Arc::new(files.crash_image());
            check_after_crash_on(&self.root, &on(cut), &expected, scratch);
            result.is_ok()
        })
    }
}

#[test]
fn a_power_cut_at_any_step_of_an_ingest_keeps_every_synced_snapshot() {
    let tmp = tempfile::tempdir().unwrap();
    let (src, root) = (tmp.path().join("src"), tmp.path().join("repo"));
    make_tree(&src, 71);
    let first_src = tmp.path().join("first-src");
    copy_dir(&src, &first_src);
    let mut first = String::new();
    let repo = InMemory::new(&root, tmp.path(), &small_chunks(64 * 1024, 4), |r| {
        first = r
            .ingest(std::slice::from_ref(&src), &Quiet)
            .unwrap()
            .id
            .to_hex();
    });
    fs::write(src.join("added"), random_bytes(97, 300_000)).unwrap();
    let steps = repo.cut_power_at_each_step(
        &[(first, first_src.as_path())],
        tmp.path(),
        |r| {
            let outcome = r.ingest(std::slice::from_ref(&src), &Quiet)?;
            Ok(Some(outcome.id.to_hex()))
        },
        &src,
    );
    eprintln!("power cuts at each of {steps} durable steps of an ingest");
    assert!(steps > 20, "the ingest took only {steps} durable steps");
}

#[test]
fn a_power_cut_at_any_step_of_a_gc_keeps_every_live_snapshot() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b, root) = (
        tmp.path().join("a"),
        tmp.path().join("b"),
        tmp.path().join("repo"),
    );
    make_tree(&a, 81);
    make_tree(&b, 82);
    let mut kept = String::new();
    let repo = InMemory::new(&root, tmp.path(), &small_chunks(64 * 1024, 4), |r| {
        let gone = r.ingest(std::slice::from_ref(&a), &Quiet).unwrap();
        kept = r
            .ingest(std::slice::from_ref(&b), &Quiet)
            .unwrap()
            .id
            .to_hex();
        r.forget(&[gone.id]).unwrap();
    });
    let steps = repo.cut_power_at_each_step(
        &[(kept, b.as_path())],
        tmp.path(),
        |r| r.gc(Mode::Apply, &Quiet).map(|_| None),
        &b,
    );
    eprintln!("power cuts at each of {steps} durable steps of a gc");
    assert!(steps > 10, "the gc took only {steps} durable steps");
}

#[test]
fn a_power_cut_at_any_step_of_a_gc_that_compacts_the_index_keeps_everything() {
    let tmp = tempfile::tempdir().unwrap();
    let (src, root) = (tmp.path().join("src"), tmp.path().join("repo"));
    make_tree(&src, 83);
    let mut kept = String::new();
    let repo = InMemory::new(&root, tmp.path(), &small_chunks(64 * 1024, 2), |r| {
        kept = r
            .ingest(std::slice::from_ref(&src), &Quiet)
            .unwrap()
            .id
            .to_hex();
        put_blobs(r, 66);
    });
    let steps = repo.cut_power_at_each_step(
        &[(kept, src.as_path())],
        tmp.path(),
        |r| r.gc(Mode::Apply, &Quiet).map(|_| None),
        &src,
    );
    eprintln!("power cuts at each of {steps} durable steps of a compacting gc");
    assert!(steps > 20, "the gc took only {steps} durable steps");
}

#[test]
fn a_power_cut_at_any_step_of_a_rebalance_keeps_every_snapshot() {
    let tmp = tempfile::tempdir().unwrap();
    let (src, root) = (tmp.path().join("src"), tmp.path().join("repo"));
    make_tree(&src, 83);
    let mut snapshot = String::new();
    // As in the real-disk round: the third shard gets nothing until it is
    // given a weight; large packs keep the number of steps down.
    let repo = InMemory::new(&root, tmp.path(), &small_chunks(1 << 20, 3), |r| {
        r.set_shard_weight(dedup::ring::ShardId(2), 0).unwrap();
        snapshot = r
            .ingest(std::slice::from_ref(&src), &Quiet)
            .unwrap()
            .id
            .to_hex();
        r.set_shard_weight(dedup::ring::ShardId(2), 1).unwrap();
    });
    let steps = repo.cut_power_at_each_step(
        &[(snapshot, src.as_path())],
        tmp.path(),
        |r| r.rebalance(Mode::Apply, &Quiet).map(|_| None),
        &src,
    );
    eprintln!("power cuts at each of {steps} durable steps of a rebalance");
    assert!(steps > 10, "the rebalance took only {steps} durable steps");
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

#[test]
fn a_fault_at_any_io_step_of_forget_and_put_loses_nothing_else() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b, base) = (
        tmp.path().join("a"),
        tmp.path().join("b"),
        tmp.path().join("base"),
    );
    make_tree(&a, 53);
    make_tree(&b, 54);
    let (kept, gone);
    {
        let repo = Repository::init_with(&base, &small_chunks(64 * 1024, 2), &private()).unwrap();
        kept = repo.ingest(std::slice::from_ref(&a), &Quiet).unwrap().id;
        gone = repo.ingest(std::slice::from_ref(&b), &Quiet).unwrap().id;
    }
    let blob = random_bytes(55, 300_000);
    let steps = fail_each_step_in_turn(
        &base,
        &[(kept.to_hex(), a.as_path())],
        tmp.path(),
        |r| {
            r.forget(&[gone])?;
            r.put(&blob).map(drop)
        },
        // Done again after the fault: the forgotten snapshot stays gone,
        // the blob reads back.
        |r| {
            if r.snapshot(&gone).is_ok() {
                r.forget(&[gone]).unwrap();
            }
            let id = r.put(&blob).unwrap();
            assert_eq!(r.get(&id).unwrap(), blob);
            r.gc(Mode::Apply, &Quiet).unwrap();
            assert!(r.snapshot(&gone).is_err());
            assert_eq!(r.get(&id).unwrap(), blob);
        },
    );
    assert!(steps > 5, "forget and put took only {steps} I/O steps");
}

#[test]
fn a_fault_at_any_io_step_of_a_repair_leaves_the_index_as_it_was() {
    let tmp = tempfile::tempdir().unwrap();
    let (src, base) = (tmp.path().join("src"), tmp.path().join("base"));
    make_tree(&src, 56);
    let snapshot = {
        let repo = Repository::init_with(&base, &small_chunks(64 * 1024, 2), &private()).unwrap();
        repo.ingest(std::slice::from_ref(&src), &Quiet)
            .unwrap()
            .id
            .to_hex()
    };
    // One pack with a damaged trailer, so the repair salvages (and writes).
    let victim = packs(&base)
        .into_iter()
        .max_by_key(|p| fs::metadata(p).unwrap().len())
        .unwrap();
    let mut bytes = fs::read(&victim).unwrap();
    let n = bytes.len();
    bytes[n - 3] ^= 0xff;
    fs::write(&victim, bytes).unwrap();
    let expected = [(snapshot, src.as_path())];
    let steps = walk_faults(|plan, name| {
        let repo = tmp.path().join(name);
        copy_dir(&base, &repo);
        let fs = Arc::new(FaultyFs::new(OsFs::shared(), plan.clone()));
        let result = Repository::repair_index_with(&repo, &on(fs));
        if let Err(e) = &result {
            assert!(e.to_string().contains("injected fault"), "{name}: {e}");
        }
        let done = result.is_ok();
        drop(result);
        if !done {
            // The index is the old one, whole (verify finds the damaged
            // trailer and nothing else), or, when the fault came after the
            // swap, the new one (verify is clean): never a part of one.
            let r = Repository::open_with(&repo, &private()).expect("opens after a failed repair");
            let v = r.verify(0.0, &Quiet).unwrap();
            let victim_id = victim.file_stem().unwrap().to_string_lossy().to_string();
            assert!(
                v.problems
                    .iter()
                    .all(|p| p.pack.as_deref() == Some(&victim_id)),
                "{name}: {:?}",
                v.problems
            );
        }
        Repository::repair_index_with(&repo, &private()).unwrap();
        check_after_crash(&repo, &expected, tmp.path());
        fs::remove_dir_all(&repo).unwrap();
        done
    });
    assert!(steps > 5, "the repair took only {steps} I/O steps");
}
