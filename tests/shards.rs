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
