//! Growing and shrinking the shard set: add + rebalance moves about
//! 1/(N+1) of the chunks, only to the new shard; remove drains a shard.

mod common;

use std::fs;

use common::*;

#[test]
fn add_a_shard_rebalance_then_remove_one_and_everything_restores() {
    let tmp = tempfile::tempdir().unwrap();
    let (src, repo) = (tmp.path().join("src"), tmp.path().join("repo"));
    two_shards_holding_a_tree(&repo, &src, 71);
    let before = json(dedup(&repo).args(["report", "--json"]));
    let objects =
        before["unique_chunks"].as_u64().unwrap() + before["tree_objects"].as_u64().unwrap();

    let extra = tmp.path().join("disk-c");
    ok(dedup(&repo).arg("shard").arg("add").arg(&extra));
    let added = json(dedup(&repo).args(["report", "--json"]));
    assert_eq!(added["shard_imbalance"], 1.0, "the new shard is empty");
    let packs_before = packs(&repo).len();
    let dry = json(dedup(&repo).args(["rebalance", "--dry-run", "--json"]));
    assert_eq!(packs(&repo).len(), packs_before, "a dry run moves nothing");
    let moved = dry["moved_objects"].as_u64().unwrap();
    assert_eq!(dry["total_objects"].as_u64().unwrap(), objects);
    let share = moved as f64 / objects as f64;
    assert!(
        share > 0.8 / 3.0 && share < 1.2 / 3.0,
        "moved {share} of the chunks, ideal 1/3"
    );
    for s in dry["shards"].as_array().unwrap() {
        if s["id"] == 2 {
            assert_eq!(
                s["chunks_in"].as_u64().unwrap(),
                moved,
                "everything moves to the new shard"
            );
        } else {
            assert_eq!(s["chunks_in"], 0, "nothing moves between old shards: {s}");
        }
    }
    let done = json(dedup(&repo).args(["rebalance", "--json"]));
    assert_eq!(done["moved_objects"], dry["moved_objects"]);
    let after = json(dedup(&repo).args(["report", "--json"]));
    let new_shard = &after["shards"][2];
    let imbalance = after["shard_imbalance"].as_f64().unwrap();
    eprintln!("imbalance after rebalance: {imbalance}");
    assert!(imbalance < 0.3, "still {imbalance} from the weights");
    // The old copies were reclaimed: every chunk is counted once.
    assert_eq!(after["unique_chunks"], before["unique_chunks"]);
    assert_eq!(after["unique_bytes"], before["unique_bytes"]);
    assert!(new_shard["chunks"].as_u64().unwrap() > 0);
    ok(dedup(&repo).args(["verify", "--read-data"]));
    let out = tmp.path().join("out1");
    assert_restores(dedup(&repo), &src, &out);
    // Nothing moves twice.
    let again = json(dedup(&repo).args(["rebalance", "--dry-run", "--json"]));
    assert_eq!(again["moved_objects"], 0);
    let human = ok(dedup(&repo).arg("rebalance")).stdout;
    assert!(
        human.starts_with("would move 0 of") && !human.contains("moved"),
        "the plan, and no moves: {human}"
    );

    // Remove shard 00: drained, dropped from the config, nothing left on it.
    ok(dedup(&repo).args(["shard", "remove", "0"]));
    let report = json(dedup(&repo).args(["report", "--json"]));
    let ids: Vec<u64> = report["shards"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids, vec![1, 2]);
    assert!(
        packs(&repo)
            .iter()
            .all(|p| !p.starts_with(repo.join("shards/00"))),
        "shard 00 still holds packs"
    );
    ok(dedup(&repo).args(["verify", "--read-data"]));
    let out = tmp.path().join("out2");
    assert_restores(dedup(&repo), &src, &out);
    // New data goes only to the remaining shards.
    fs::write(src.join("newer.bin"), random_bytes(73, 1 << 20)).unwrap();
    ok(dedup(&repo).arg("ingest").arg(&src));
    assert!(packs(&repo)
        .iter()
        .all(|p| !p.starts_with(repo.join("shards/00"))));
}

#[test]
fn shard_changes_that_would_leave_no_weight_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("repo");
    ok(dedup(&repo).args(["init", "--shards", "1"]));
    let r = run(dedup(&repo).args(["shard", "set-weight", "0", "0"]));
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("weight above 0"), "{}", r.stderr);
    let r = run(dedup(&repo).args(["shard", "set-weight", "7", "1"]));
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("no shard 07"), "{}", r.stderr);
    // A weight so large that building the ring would hang every command.
    let r = run(dedup(&repo).args(["shard", "set-weight", "0", "100000000"]));
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("more than 1000"), "{}", r.stderr);
    ok(dedup(&repo).args(["shard", "list"]));
    // Nor is such a weight taken from a config edited by hand.
    let config = repo.join("config");
    let text = fs::read_to_string(&config).unwrap();
    fs::write(
        &config,
        text.replace("\"weight\": 1", "\"weight\": 100000000"),
    )
    .unwrap();
    let r = run(dedup(&repo).arg("snapshots"));
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("more than 1000"), "{}", r.stderr);
}

fn fails_with(cmd: &mut std::process::Command, code: i32, words: &[&str]) -> Run {
    let r = run(cmd);
    assert_eq!(
        r.code,
        code,
        "{:?}\n{}\n{}",
        cmd.get_args().collect::<Vec<_>>(),
        r.stdout,
        r.stderr
    );
    let all = format!("{}{}", r.stdout, r.stderr);
    for w in words {
        assert!(all.contains(w), "{w:?} not in:\n{all}");
    }
    r
}

#[test]
fn a_missing_shard_leaves_the_others_working_and_can_be_given_up() {
    let tmp = tempfile::tempdir().unwrap();
    let (src, repo) = (tmp.path().join("src"), tmp.path().join("repo"));
    two_shards_holding_a_tree(&repo, &src, 72);
    let dead = repo.join("shards/01");
    let away = tmp.path().join("away");
    fs::rename(&dead, &away).unwrap();

    // Reading what is elsewhere works; each command names the shard.
    ok(dedup(&repo).arg("snapshots"));
    ok(dedup(&repo).arg("report"));
    let list = ok(dedup(&repo).args(["shard", "list"])).stdout;
    assert!(
        list.contains("unavailable: its folder is missing"),
        "{list}"
    );
    fails_with(
        dedup(&repo).arg("verify"),
        1,
        &["unavailable-shard", "shard 01"],
    );
    let r = run(dedup(&repo)
        .args(["restore", "latest"])
        .arg(tmp.path().join("part")));
    assert!(r.code == 1 || r.code == 2, "{}", r.stderr);
    assert!(r.stderr.contains("shard 01 ("), "{}", r.stderr);
    fails_with(
        dedup(&repo).arg("ingest").arg(&src),
        2,
        &["shard 01", "is unavailable", "set-weight 01 0"],
    );
    fails_with(dedup(&repo).arg("gc"), 2, &["shard 01", "--lost"]);
    fails_with(dedup(&repo).args(["shard", "remove", "01"]), 2, &["--lost"]);
    fails_with(
        dedup(&repo).args(["shard", "remove", "00", "--lost"]),
        2,
        &["available"],
    );

    // Back in place, nothing was harmed.
    fs::rename(&away, &dead).unwrap();
    ok(dedup(&repo).args(["verify", "--read-data"]));

    // Gone for good: give it up, then the same files ingested again make
    // every snapshot whole (the chunks come back under the same ids).
    fs::rename(&dead, &away).unwrap();
    let lost = ok(dedup(&repo).args(["shard", "remove", "01", "--lost"])).stdout;
    assert!(lost.contains("forgot"), "{lost}");
    fails_with(
        dedup(&repo).arg("verify"),
        1,
        &["not in the index", "breaks"],
    );
    ok(dedup(&repo).arg("ingest").arg(&src));
    ok(dedup(&repo).arg("gc"));
    ok(dedup(&repo).args(["verify", "--read-data"]));
    let first = json(dedup(&repo).args(["snapshots", "--json"]))[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let out = tmp.path().join("out");
    ok(dedup(&repo).args(["restore", &first]).arg(&out));
    assert_eq!(describe(&src), describe(&out));
}

#[test]
fn an_unmounted_or_foreign_shard_folder_is_never_written_to() {
    let tmp = tempfile::tempdir().unwrap();
    let (src, repo) = (tmp.path().join("src"), tmp.path().join("repo"));
    two_shards_holding_a_tree(&repo, &src, 73);
    let shard = repo.join("shards/01");
    let away = tmp.path().join("away");
    fs::rename(&shard, &away).unwrap();

    // An empty mount point where the disk should be.
    fs::create_dir(&shard).unwrap();
    fails_with(
        dedup(&repo).arg("ingest").arg(&src),
        2,
        &["is its disk mounted?"],
    );
    assert_eq!(fs::read_dir(&shard).unwrap().count(), 0, "nothing written");
    fs::remove_dir(&shard).unwrap();

    // Another repository's shard in its place.
    let other = tmp.path().join("other");
    ok(dedup(&other).args(["init", "--shards", "2"]));
    fs::rename(other.join("shards/01"), &shard).unwrap();
    fails_with(
        dedup(&repo).arg("ingest").arg(&src),
        2,
        &["marker of shard 01 of repository"],
    );
    fs::remove_dir_all(&shard).unwrap();

    fs::rename(&away, &shard).unwrap();
    ok(dedup(&repo).arg("ingest").arg(&src));
    ok(dedup(&repo).args(["verify", "--read-data"]));
}

#[test]
fn gc_touches_nothing_in_a_shard_folder_but_its_own_files() {
    let tmp = tempfile::tempdir().unwrap();
    let (src, repo) = (tmp.path().join("src"), tmp.path().join("repo"));
    make_tree(&src, 74);
    let disk = tmp.path().join("disk");
    fs::create_dir_all(disk.join("docs")).unwrap();
    fs::write(disk.join("docs/notes.txt"), "mine").unwrap();
    // A folder that is not empty is refused as a shard...
    ok(dedup(&repo).arg("init"));
    fails_with(
        dedup(&repo).args(["shard", "add"]).arg(&disk),
        2,
        &["is not empty"],
    );
    // ...but files can appear in a shard later: gc leaves every one that
    // is not its own pack or unfinished write.
    fs::remove_dir_all(disk.join("docs")).unwrap();
    ok(dedup(&repo).args(["shard", "add"]).arg(&disk));
    ok(dedup(&repo).arg("rebalance"));
    ok(dedup(&repo).arg("ingest").arg(&src));
    let foreign = [
        "docs/draft.tmp",
        "docs/abababababababababababababababab.pack",
        "ab/notes.tmp",
        "ab/cdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcd.pack",
        "abababababababababababababababab.pack.1.tmp",
        "ab/x/abababababababababababababababab.pack",
    ];
    for name in foreign {
        let path = disk.join(name);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, "keep me").unwrap();
    }
    let ours = disk.join("ab/abababababababababababababababab.pack.77.0123456789abcdef.tmp");
    fs::write(&ours, "half a pack").unwrap();
    ok(dedup(&repo).arg("gc"));
    for name in foreign {
        assert_eq!(
            fs::read_to_string(disk.join(name)).unwrap(),
            "keep me",
            "{name}"
        );
    }
    assert!(!ours.exists(), "an unfinished write of ours is swept");
    ok(dedup(&repo).args(["verify", "--read-data"]));
}
