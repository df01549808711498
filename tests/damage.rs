//! A damaged repository: a flipped byte in a snapshot record or a tree, a
//! lost segment, a forgotten record put back, an edited config. Whatever
//! the damage, nothing stored is deleted because of it, and every command
//! says what it could not read and the way out.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use common::*;

/// A repository at `tmp/repo` holding two snapshots, of `tmp/a` and then
/// `tmp/b` (different trees); returns the repository and both ids.
fn two_snapshots(tmp: &Path) -> (PathBuf, String, String) {
    let (a, b, repo) = (tmp.join("a"), tmp.join("b"), tmp.join("repo"));
    make_tree(&a, 1);
    make_tree(&b, 2);
    fs::write(a.join("only-in-a"), b"a").unwrap();
    fs::write(b.join("only-in-b"), b"b").unwrap();
    ok(dedup(&repo).args(["init", "--shards", "1", "--compression", "none"]));
    let first = snapshot_id(&ok(dedup(&repo).arg("ingest").arg(&a)).stdout);
    let second = snapshot_id(&ok(dedup(&repo).arg("ingest").arg(&b)).stdout);
    (repo, first, second)
}

/// The pack files of `repo`, each with its bytes.
fn pack_bytes(repo: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut packs: Vec<_> = packs(repo)
        .into_iter()
        .map(|p| {
            let bytes = fs::read(&p).unwrap();
            (p, bytes)
        })
        .collect();
    packs.sort();
    packs
}

#[test]
fn a_damaged_record_is_named_by_every_command_and_gc_deletes_nothing_until_it_is_dealt_with() {
    let tmp = tempfile::tempdir().unwrap();
    let (repo, first, second) = two_snapshots(tmp.path());
    let record = repo.join("snapshots").join(&first);
    let good = fs::read(&record).unwrap();
    let mut bad = good.clone();
    bad[10] ^= 0xff;
    fs::write(&record, &bad).unwrap();
    // Another machine, or a deleted cache: the record was never adopted.
    fs::remove_dir_all(cache_of(&repo)).unwrap();

    let listed = run(dedup(&repo).args(["--quiet", "snapshots"]));
    assert_eq!(listed.code, 0, "{}", listed.stderr);
    assert!(!listed.stdout.contains(&first[..12]), "{}", listed.stdout);
    assert!(listed.stdout.contains(&second[..12]), "{}", listed.stdout);
    assert!(
        listed.stderr.contains(&format!("snapshots/{first}"))
            && listed.stderr.contains("cannot be read")
            && listed.stderr.contains(&format!("dedup forget {first}")),
        "--quiet does not silence a data warning: {}",
        listed.stderr
    );

    let before = pack_bytes(&repo);
    let gc = run(dedup(&repo).arg("gc"));
    assert_eq!(gc.code, 2, "{}\n{}", gc.stdout, gc.stderr);
    assert!(
        gc.stderr.contains("gc deletes nothing") && gc.stderr.contains(&first),
        "{}",
        gc.stderr
    );
    let pruned = run(dedup(&repo).args(["forget", "--keep-last", "5", "--prune"]));
    assert_eq!(pruned.code, 2, "{}\n{}", pruned.stdout, pruned.stderr);
    assert_eq!(before, pack_bytes(&repo), "no pack was touched");

    // The record put back: its snapshot is whole.
    fs::write(&record, &good).unwrap();
    ok(dedup(&repo).args(["verify", "--read-data"]));
    let out = tmp.path().join("out-a");
    ok(dedup(&repo).args(["restore", &first]).arg(&out));
    assert_eq!(describe(&tmp.path().join("a")), describe(&out));

    // Damaged again, and given up: `forget` takes its id, and gc runs.
    fs::write(&record, &bad).unwrap();
    fs::remove_dir_all(cache_of(&repo)).unwrap();
    ok(dedup(&repo).args(["forget", &first[..12]]));
    assert!(!record.exists());
    ok(dedup(&repo).arg("gc"));
    ok(dedup(&repo).args(["verify", "--read-data"]));
    let out = tmp.path().join("out-b");
    ok(dedup(&repo).args(["restore", &second]).arg(&out));
    assert_eq!(describe(&tmp.path().join("b")), describe(&out));
}

#[test]
fn a_record_that_appears_after_gc_opened_is_read_and_marked() {
    let tmp = tempfile::tempdir().unwrap();
    let (repo, first, _) = two_snapshots(tmp.path());
    // The record is away while the handle opens (as if written by another
    // writer just after), and back before gc marks.
    let record = repo.join("snapshots").join(&first);
    let aside = tmp.path().join("record");
    fs::rename(&record, &aside).unwrap();
    let handle = dedup::Repository::open_with(&repo, &private()).unwrap();
    fs::rename(&aside, &record).unwrap();
    let report = handle.gc(dedup::Mode::Apply, &dedup::Quiet).unwrap();
    assert_eq!(report.packs_deleted + report.packs_rewritten, 0, "{report}");
    drop(handle);
    ok(dedup(&repo).args(["verify", "--read-data"]));
    let out = tmp.path().join("out");
    ok(dedup(&repo).args(["restore", &first]).arg(&out));
    assert_eq!(describe(&tmp.path().join("a")), describe(&out));
}

#[test]
fn a_damaged_tree_stops_gc_before_it_deletes_anything_naming_the_way_out() {
    let tmp = tempfile::tempdir().unwrap();
    let (repo, first, _) = two_snapshots(tmp.path());
    ok(dedup(&repo).args(["forget", &first]));
    // The top folder of the snapshot kept: the tree that lists the name.
    flip_a_byte_of(b"only-in-b", &packs(&repo));
    let before = pack_bytes(&repo);
    let gc = run(dedup(&repo).arg("gc"));
    assert_eq!(gc.code, 2, "{}\n{}", gc.stdout, gc.stderr);
    assert!(
        gc.stderr.contains("gc deletes nothing") && gc.stderr.contains("dedup verify"),
        "{}",
        gc.stderr
    );
    assert_eq!(before, pack_bytes(&repo), "no pack was touched");
}

#[test]
fn one_damaged_tree_costs_a_restore_only_the_files_below_it() {
    let tmp = tempfile::tempdir().unwrap();
    let (src, repo) = (tmp.path().join("src"), tmp.path().join("repo"));
    fs::create_dir_all(src.join("sub/deeper")).unwrap();
    for i in 0..15 {
        fs::write(src.join(format!("top-{i}")), format!("top {i}")).unwrap();
        fs::write(src.join(format!("sub/deeper/f-{i}")), format!("deep {i}")).unwrap();
    }
    ok(dedup(&repo).args(["init", "--shards", "1", "--compression", "none"]));
    ok(dedup(&repo).arg("ingest").arg(&src));
    // The tree of sub/deeper/ alone is damaged: find it by the name of an
    // entry it lists, which is stored as is.
    let packs = packs(&repo);
    flip_a_byte_of(b"f-14", &packs);
    let out = tmp.path().join("out");
    let r = run(dedup(&repo).args(["restore", "latest"]).arg(&out));
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stderr.contains("deeper") && r.stderr.contains("cannot be read"),
        "{}",
        r.stderr
    );
    for i in 0..15 {
        assert_eq!(
            fs::read_to_string(out.join(format!("top-{i}"))).unwrap(),
            format!("top {i}")
        );
    }
    assert!(out.join("sub/deeper").is_dir());
}

#[test]
fn gc_after_a_lost_segment_indexes_the_packs_it_lacked_trees_included() {
    let tmp = tempfile::tempdir().unwrap();
    let (repo, first, second) = two_snapshots(tmp.path());
    // The newest segment (the second ingest's) is lost, and the cache with it.
    let mut segments: Vec<PathBuf> = files_under(&repo.join("segments"), "");
    segments.sort_by_key(|p| fs::metadata(p).unwrap().modified().unwrap());
    fs::remove_file(segments.last().unwrap()).unwrap();
    fs::remove_dir_all(cache_of(&repo)).unwrap();
    let gc = json(dedup(&repo).args(["gc", "--json"]));
    assert!(gc["orphans_adopted"].as_u64().unwrap() > 0, "{gc}");
    ok(dedup(&repo).args(["verify", "--read-data"]));
    for (id, from) in [(&first, "a"), (&second, "b")] {
        let out = tmp.path().join(format!("out-{from}"));
        ok(dedup(&repo).args(["restore", id]).arg(&out));
        assert_eq!(describe(&tmp.path().join(from)), describe(&out));
    }
}

#[test]
fn a_forgotten_record_put_back_after_gc_is_named_with_the_way_out() {
    let tmp = tempfile::tempdir().unwrap();
    let (repo, first, _) = two_snapshots(tmp.path());
    let record = repo.join("snapshots").join(&first);
    let kept = fs::read(&record).unwrap();
    ok(dedup(&repo).args(["forget", &first, "--prune"]));
    fs::write(&record, &kept).unwrap();
    let listed = run(dedup(&repo).arg("snapshots"));
    assert!(
        listed
            .stderr
            .contains(&format!("snapshot {}", &first[..12]))
            && listed
                .stderr
                .contains(&format!("dedup forget {}", &first[..12])),
        "{}",
        listed.stderr
    );
    assert!(!listed.stdout.contains(&first[..12]), "{}", listed.stdout);
    // `forget` takes its id; so does gc, which finishes the forget.
    ok(dedup(&repo).args(["forget", &first]));
    fs::write(&record, &kept).unwrap();
    let gc = ok(dedup(&repo).arg("gc"));
    assert!(
        gc.stdout
            .contains("deleted the record of forgotten snapshot"),
        "{}",
        gc.stdout
    );
    assert!(!record.exists());
    let quiet = ok(dedup(&repo).arg("gc"));
    assert!(!quiet.stderr.contains("warning"), "{}", quiet.stderr);
}

#[test]
fn config_values_are_checked_whenever_a_config_is_read() {
    let tmp = tempfile::tempdir().unwrap();
    let (repo, src) = (tmp.path().join("repo"), tmp.path().join("src"));
    make_tree(&src, 3);
    ok(dedup(&repo).arg("init"));
    let path = repo.join("config");
    let good: serde_json::Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
    let edits: [(&str, serde_json::Value, &str); 3] = [
        ("pack_size", 0.into(), "pack size"),
        ("pack_size", u32::MAX.into(), "pack size"),
        ("zstd_level", 99.into(), "compression level"),
    ];
    for (field, value, said) in edits {
        let mut config = good.clone();
        config[field] = value;
        fs::write(&path, config.to_string()).unwrap();
        let r = run(dedup(&repo).arg("ingest").arg(&src));
        assert_eq!(r.code, 2, "{field}: {}", r.stderr);
        assert!(
            r.stderr.contains("config") && r.stderr.contains(said),
            "{field}: {}",
            r.stderr
        );
    }
    let mut twice = good.clone();
    let shard = twice["shards"][0].clone();
    twice["shards"].as_array_mut().unwrap().push(shard);
    fs::write(&path, twice.to_string()).unwrap();
    let r = run(dedup(&repo).arg("snapshots"));
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("listed twice"), "{}", r.stderr);
    fs::write(&path, good.to_string()).unwrap();
    ok(dedup(&repo).arg("ingest").arg(&src));
}
