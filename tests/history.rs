//! Deletion and rollback made evident: a store that loses or deletes a
//! snapshot record or an index segment, puts back a forgotten record, or
//! is put back from an older copy is named by the next client that saw
//! otherwise, gc deletes nothing meanwhile, and `repair history` puts back
//! what this machine still holds.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

/// `dedup` on `repo`, with a password when `encrypted`, as the machine
/// whose cache is `cache`.
fn on(repo: &Path, encrypted: bool, cache: &Path) -> Command {
    let mut cmd = dedup(repo);
    cmd.env("DEDUP_CACHE", cache);
    if encrypted {
        cmd.arg("--password-file").arg(repo.with_extension("pw"));
    }
    cmd
}

/// A repository at `tmp/<name>` holding three snapshots, of `tmp/<name>-1`
/// to `-3`, written by the machine whose cache is `tmp/<name>.cache`;
/// returns it and the snapshot ids, oldest first.
fn three_snapshots(tmp: &Path, name: &str, encrypted: bool) -> (PathBuf, Vec<String>) {
    let repo = tmp.join(name);
    fs::write(repo.with_extension("pw"), "history\n").unwrap();
    let mut init = on(&repo, encrypted, &cache_of(&repo));
    init.args(["init", "--shards", "1", "--kdf-time", "1"]);
    if encrypted {
        init.args(["--encryption", "repokey"]);
    }
    ok(&mut init);
    let ids = (1..=3)
        .map(|i| {
            let src = tmp.join(format!("{name}-{i}"));
            make_tree(&src, 40 + i);
            let out = ok(on(&repo, encrypted, &cache_of(&repo))
                .arg("ingest")
                .arg(&src));
            snapshot_id(&out.stdout)
        })
        .collect();
    (repo, ids)
}

fn record(repo: &Path, id: &str) -> PathBuf {
    repo.join("snapshots").join(id)
}

/// Every pack file's bytes, sorted by path: what gc must leave alone.
fn pack_bytes(repo: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut all: Vec<_> = packs(repo)
        .into_iter()
        .map(|p| {
            let bytes = fs::read(&p).unwrap();
            (p, bytes)
        })
        .collect();
    all.sort();
    all
}

fn restores(repo: &Path, encrypted: bool, id: &str, src: &Path, out: &Path) {
    ok(on(repo, encrypted, &cache_of(repo))
        .args(["restore", id])
        .arg(out));
    assert_eq!(describe(src), describe(out));
}

#[test]
fn a_record_the_store_lost_is_named_kept_and_put_back_and_gc_waits() {
    let tmp = tempfile::tempdir().unwrap();
    for (name, encrypted) in [("plain", false), ("sealed", true)] {
        let (repo, ids) = three_snapshots(tmp.path(), name, encrypted);
        let here = cache_of(&repo);
        fs::remove_file(record(&repo, &ids[1])).unwrap();
        let listed = run(on(&repo, encrypted, &here).args(["--quiet", "snapshots"]));
        assert_eq!(listed.code, 0, "{}", listed.stderr);
        assert!(
            listed
                .stderr
                .contains(&format!("snapshot {} is gone from the store", ids[1]))
                && listed.stderr.contains("dedup repair history"),
            "{name}: {}",
            listed.stderr
        );
        // This machine still lists it, and restores it.
        assert!(listed.stdout.contains(&ids[1][..16]), "{}", listed.stdout);
        let src = tmp.path().join(format!("{name}-2"));
        restores(
            &repo,
            encrypted,
            &ids[1],
            &src,
            &tmp.path().join(format!("{name}-out")),
        );
        let before = pack_bytes(&repo);
        let gc = run(on(&repo, encrypted, &here).arg("gc"));
        assert_eq!(gc.code, 2, "{name}: {}\n{}", gc.stdout, gc.stderr);
        assert!(gc.stderr.contains("gc deletes nothing"), "{}", gc.stderr);
        assert_eq!(pack_bytes(&repo), before, "{name}: gc deleted packs");
        let repaired = ok(on(&repo, encrypted, &here).args(["repair", "history"]));
        assert!(
            repaired.stdout.contains("put back the record"),
            "{}",
            repaired.stdout
        );
        assert!(record(&repo, &ids[1]).exists());
        let quiet = ok(on(&repo, encrypted, &here).arg("gc"));
        assert!(!quiet.stderr.contains("warning"), "{}", quiet.stderr);
        // Another machine reads the record put back as any other.
        let other = tmp.path().join(format!("{name}-other.cache"));
        let fresh = ok(on(&repo, encrypted, &other).arg("verify"));
        assert!(!fresh.stderr.contains("warning"), "{}", fresh.stderr);
    }
}

#[test]
fn a_record_deleted_before_a_machine_ever_saw_it_is_named_by_the_one_written_after_it() {
    let tmp = tempfile::tempdir().unwrap();
    let (repo, ids) = three_snapshots(tmp.path(), "repo", true);
    fs::remove_file(record(&repo, &ids[0])).unwrap();
    // A machine that never opened the repository.
    let other = tmp.path().join("other.cache");
    let listed = run(on(&repo, true, &other).arg("snapshots"));
    assert_eq!(listed.code, 0, "{}", listed.stderr);
    assert!(
        listed.stderr.contains(&format!(
            "snapshot {} is gone from the store, and no forget removed it (snapshot {} was \
             written after it)",
            ids[0], ids[1]
        )),
        "{}",
        listed.stderr
    );
    assert_eq!(run(on(&repo, true, &other).arg("gc")).code, 2);
    // The writer's machine still holds it and puts it back; then the
    // other machine has nothing left to say.
    ok(on(&repo, true, &cache_of(&repo)).args(["repair", "history"]));
    let again = ok(on(&repo, true, &other).arg("snapshots"));
    assert!(!again.stderr.contains("warning"), "{}", again.stderr);
    assert_eq!(again.stdout.lines().count(), 4, "{}", again.stdout);
}

#[test]
fn a_forgotten_snapshot_put_back_is_named_and_left_out_by_every_machine() {
    let tmp = tempfile::tempdir().unwrap();
    let (repo, ids) = three_snapshots(tmp.path(), "repo", true);
    let here = cache_of(&repo);
    let other = tmp.path().join("other.cache");
    ok(on(&repo, true, &other).arg("snapshots"));
    let kept = fs::read(record(&repo, &ids[2])).unwrap();
    ok(on(&repo, true, &here).args(["forget", &ids[2]]));
    // A forget on another machine is no finding.
    let seen = ok(on(&repo, true, &other).arg("snapshots"));
    assert!(!seen.stderr.contains("warning"), "{}", seen.stderr);
    assert!(!seen.stdout.contains(&ids[2][..16]), "{}", seen.stdout);
    fs::write(record(&repo, &ids[2]), &kept).unwrap();
    let never = tmp.path().join("never.cache");
    for cache in [&here, &other, &never] {
        let listed = run(on(&repo, true, cache).arg("snapshots"));
        assert_eq!(listed.code, 0, "{}", listed.stderr);
        assert!(
            listed
                .stderr
                .contains(&format!("snapshot {} was forgotten", ids[2]))
                && listed.stderr.contains("its record is there again"),
            "{}: {}",
            cache.display(),
            listed.stderr
        );
        assert!(!listed.stdout.contains(&ids[2][..16]), "{}", listed.stdout);
    }
    let repaired = ok(on(&repo, true, &other).args(["repair", "history"]));
    assert!(
        repaired.stdout.contains("deleted again"),
        "{}",
        repaired.stdout
    );
    assert!(!record(&repo, &ids[2]).exists());
    // Put back again: gc finishes the forget.
    fs::write(record(&repo, &ids[2]), &kept).unwrap();
    let gc = ok(on(&repo, true, &never).arg("gc"));
    assert!(
        gc.stdout
            .contains("deleted the record of forgotten snapshot"),
        "{}",
        gc.stdout
    );
    assert!(!record(&repo, &ids[2]).exists());
    for cache in [&here, &other, &never] {
        let quiet = ok(on(&repo, true, cache).arg("gc"));
        assert!(!quiet.stderr.contains("warning"), "{}", quiet.stderr);
    }
}

#[test]
fn a_home_put_back_from_an_older_copy_is_named_and_this_machine_puts_back_what_it_lost() {
    let tmp = tempfile::tempdir().unwrap();
    let (repo, ids) = three_snapshots(tmp.path(), "repo", false);
    let here = cache_of(&repo);
    let saved = tmp.path().join("saved");
    fs::create_dir(&saved).unwrap();
    for folder in ["segments", "snapshots"] {
        ok(Command::new("cp")
            .arg("-a")
            .arg(repo.join(folder))
            .arg(&saved));
    }
    let later = tmp.path().join("later");
    make_tree(&later, 77);
    let newest = snapshot_id(&ok(on(&repo, false, &here).arg("ingest").arg(&later)).stdout);
    ok(on(&repo, false, &here).arg("gc"));
    for folder in ["segments", "snapshots"] {
        fs::remove_dir_all(repo.join(folder)).unwrap();
        ok(Command::new("cp")
            .arg("-a")
            .arg(saved.join(folder))
            .arg(&repo));
    }
    let listed = run(on(&repo, false, &here).arg("snapshots"));
    assert!(
        listed
            .stderr
            .contains(&format!("snapshot {newest} is gone from the store"))
            && listed.stderr.contains("index segment")
            && listed.stderr.contains("no compaction covers"),
        "{}",
        listed.stderr
    );
    let before = pack_bytes(&repo);
    assert_eq!(run(on(&repo, false, &here).arg("gc")).code, 2);
    assert_eq!(
        pack_bytes(&repo),
        before,
        "gc deleted packs of the newer history"
    );
    ok(on(&repo, false, &here).args(["repair", "history"]));
    let _ = run(on(&repo, false, &here).args(["repair", "index"]));
    ok(on(&repo, false, &here).args(["verify", "--read-data"]));
    restores(&repo, false, &newest, &later, &tmp.path().join("out-later"));
    restores(
        &repo,
        false,
        &ids[0],
        &tmp.path().join("repo-1"),
        &tmp.path().join("out-1"),
    );
    let quiet = ok(on(&repo, false, &here).arg("gc"));
    assert!(!quiet.stderr.contains("warning"), "{}", quiet.stderr);
}

#[test]
fn segments_compacted_away_on_another_machine_are_accounted_for_however_many_compactions_ago() {
    let tmp = tempfile::tempdir().unwrap();
    let (repo, _) = three_snapshots(tmp.path(), "repo", true);
    let here = cache_of(&repo);
    let other = tmp.path().join("other.cache");
    let segments = || files_under(&repo.join("segments"), "").len();
    // Two compactions on the other machine, each after enough segments,
    // while this one is away: the second covers the first, which covered
    // what this machine applied.
    let manifests = || -> Vec<PathBuf> {
        files_under(&repo.join("index"), "")
            .into_iter()
            .filter(|p| {
                p.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with("manifest.")
            })
            .collect()
    };
    let src = tmp.path().join("more");
    for round in 0..2 {
        let before = manifests();
        // gc compacts past 64 segments; a blob is one commit, one segment.
        while segments() <= 64 {
            fs::write(&src, format!("round {round}, segment {}", segments())).unwrap();
            ok(on(&repo, true, &other).arg("put").arg(&src));
        }
        ok(on(&repo, true, &other).arg("gc"));
        let after = manifests();
        assert_eq!(after.len(), 1, "round {round}: {after:?}");
        assert_ne!(after, before, "round {round}: no compaction");
        assert!(segments() < 8, "round {round}: {}", segments());
    }
    let back = ok(on(&repo, true, &here).arg("snapshots"));
    assert!(!back.stderr.contains("warning"), "{}", back.stderr);
    // A segment that no compaction covers, deleted, is named.
    let src = tmp.path().join("last");
    make_tree(&src, 99);
    ok(on(&repo, true, &other).arg("ingest").arg(&src));
    ok(on(&repo, true, &here).arg("snapshots"));
    let mut loose: Vec<PathBuf> = files_under(&repo.join("segments"), "")
        .into_iter()
        .filter(|p| !p.to_string_lossy().ends_with("-full"))
        .collect();
    loose.sort();
    let victim = loose.last().unwrap();
    fs::remove_file(victim).unwrap();
    let named = run(on(&repo, true, &here).arg("snapshots"));
    let name = victim.file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        named
            .stderr
            .contains(&format!("index segment segments/{name} is gone")),
        "{}",
        named.stderr
    );
}

/// The names in `repo`'s folder `dir`.
fn names_in(repo: &Path, dir: &str) -> Vec<String> {
    match fs::read_dir(repo.join(dir)) {
        Ok(entries) => entries
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| !n.starts_with('.'))
            .collect(),
        Err(_) => Vec::new(),
    }
}

#[test]
fn records_and_tombstones_folded_into_the_catalog_leave_their_folders_and_every_machine_agrees() {
    let tmp = tempfile::tempdir().unwrap();
    for (name, encrypted) in [("plain", false), ("sealed", true)] {
        let (repo, ids) = three_snapshots(tmp.path(), name, encrypted);
        let here = cache_of(&repo);
        let other = tmp.path().join(format!("{name}-other.cache"));
        ok(on(&repo, encrypted, &other).arg("snapshots"));
        let kept = fs::read(record(&repo, &ids[0])).unwrap();
        ok(on(&repo, encrypted, &here).args(["forget", &ids[0]]));
        // `compact` folds the records and the tombstone into the catalog;
        // their files stay for the grace period, or until a gc.
        let compact = ok(on(&repo, encrypted, &here).arg("compact"));
        assert!(
            compact
                .stdout
                .contains("3 record or tombstone files into the record catalog")
                && compact.stdout.contains("stay for the grace period"),
            "{}",
            compact.stdout
        );
        assert_eq!(names_in(&repo, "snapshots").len(), 2, "{name}");
        ok(on(&repo, encrypted, &here).arg("gc"));
        assert_eq!(names_in(&repo, "snapshots"), Vec::<String>::new(), "{name}");
        assert_eq!(names_in(&repo, "forgotten"), Vec::<String>::new(), "{name}");
        assert!(
            names_in(&repo, "index")
                .iter()
                .any(|n| n.starts_with("records-")),
            "{name}: {:?}",
            names_in(&repo, "index")
        );
        let never = tmp.path().join(format!("{name}-never.cache"));
        let listed = |cache: &Path| listed_by(&repo, encrypted, cache, &ids);
        // The machine that saw all three, one that never opened it, and
        // the one that forgot: the two left, no finding.
        for cache in [&other, &never, &here] {
            assert_eq!(
                listed(cache),
                [false, true, true],
                "{name}: {}",
                cache.display()
            );
        }
        let src = tmp.path().join(format!("{name}-3"));
        restores(
            &repo,
            encrypted,
            &ids[2],
            &src,
            &tmp.path().join(format!("{name}-out")),
        );

        // A folded record forgotten: its tombstone is a file until the
        // next fold, and every machine leaves it out meanwhile.
        ok(on(&repo, encrypted, &never).args(["forget", &ids[1]]));
        assert_eq!(names_in(&repo, "forgotten").len(), 1, "{name}");
        for cache in [&other, &here] {
            assert_eq!(
                listed(cache),
                [false, false, true],
                "{name}: {}",
                cache.display()
            );
        }
        // `compact` beside writers folds it, and with no grace period
        // sweeps its file.
        let compact = ok(on(&repo, encrypted, &other)
            .env("DEDUP_GC_GRACE_SECONDS", "0")
            .arg("compact"));
        assert!(compact.stdout.contains("record"), "{}", compact.stdout);
        assert_eq!(names_in(&repo, "forgotten"), Vec::<String>::new(), "{name}");
        let fresh = tmp.path().join(format!("{name}-fresh.cache"));
        for cache in [&here, &never, &fresh] {
            assert_eq!(
                listed(cache),
                [false, false, true],
                "{name}: {}",
                cache.display()
            );
        }
        put_back_and_repaired(&repo, encrypted, &ids, &kept, [&here, &other, &fresh]);
    }
}

/// Which of `ids` `repo` lists as the machine whose cache is `cache`,
/// which names nothing the store lost or got back.
fn listed_by(repo: &Path, encrypted: bool, cache: &Path, ids: &[String]) -> Vec<bool> {
    let r = ok(on(repo, encrypted, cache).arg("snapshots"));
    assert!(!r.stderr.contains("warning"), "{}", r.stderr);
    ids.iter().map(|id| r.stdout.contains(&id[..16])).collect()
}

/// The record of forgotten snapshot `ids[0]` (`kept`) put back into a
/// repository whose catalog holds it forgotten: every machine (`caches`)
/// names it and leaves it out, gc deletes it again, and `repair index`
/// keeps the catalog's records and tombstones.
fn put_back_and_repaired(
    repo: &Path,
    encrypted: bool,
    ids: &[String],
    kept: &[u8],
    caches: [&Path; 3],
) {
    // The first forgotten record put back: the catalog holds it
    // forgotten, so every machine names it and leaves it out, and gc
    // deletes it again.
    fs::write(record(repo, &ids[0]), kept).unwrap();
    for cache in caches {
        let r = run(on(repo, encrypted, cache).arg("snapshots"));
        assert_eq!(r.code, 0, "{}", r.stderr);
        assert!(
            r.stderr
                .contains(&format!("snapshot {} was forgotten", ids[0])),
            "{}: {}",
            cache.display(),
            r.stderr
        );
        assert!(!r.stdout.contains(&ids[0][..16]), "{}", r.stdout);
    }
    ok(on(repo, encrypted, caches[0]).arg("gc"));
    assert_eq!(names_in(repo, "snapshots"), Vec::<String>::new());
    ok(on(repo, encrypted, caches[0]).args(["verify", "--read-data"]));

    // `repair index` keeps the catalog's records and tombstones.
    ok(on(repo, encrypted, caches[0]).args(["repair", "index"]));
    for cache in caches {
        let seen = listed_by(repo, encrypted, cache, ids);
        assert_eq!(seen, [false, false, true], "{}", cache.display());
    }
}
