//! Finding and keeping snapshots: tags, hosts and paths on records, the
//! filters of `snapshots` and `latest`, and `forget`'s policy. The policy's
//! rules on calendar time are tested against a fixed clock in
//! `src/policy.rs`; here the command line is driven end to end.

mod common;

use std::fs;

use common::*;
use serde_json::Value;

/// The ids `snapshots --json` lists with these extra arguments.
fn listed(repo: &std::path::Path, args: &[&str]) -> Vec<String> {
    json(dedup(repo).args(["snapshots", "--json"]).args(args))
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect()
}

fn ingest(repo: &std::path::Path, dir: &std::path::Path, args: &[&str]) -> Value {
    json(dedup(repo).args(["ingest", "--json"]).args(args).arg(dir))
}

#[test]
fn records_carry_host_user_absolute_paths_tags_and_parent_and_filters_narrow_latest() {
    let tmp = tempfile::tempdir().unwrap();
    let (home, etc, repo) = (
        tmp.path().join("home"),
        tmp.path().join("etc"),
        tmp.path().join("repo"),
    );
    make_tree(&home, 3);
    fs::create_dir(&etc).unwrap();
    fs::write(etc.join("hosts"), b"127.0.0.1 localhost\n").unwrap();
    ok(dedup(&repo).arg("init"));
    // A relative path is recorded absolute.
    let first = json(
        dedup(&repo)
            .current_dir(tmp.path())
            .args(["ingest", "--json", "--tag", "daily", "home"]),
    );
    let second = ingest(&repo, &home, &["--tag", "weekly,db", "--tag", "daily"]);
    let far = ingest(&repo, &etc, &["--host", "far-away"]);
    let (a, b, c) = (&first["id"], &second["id"], &far["id"]);
    let rec = &second["record"];
    assert_eq!(first["record"]["paths"][0], home.display().to_string());
    assert_eq!(rec["tags"], serde_json::json!(["daily", "db", "weekly"]));
    assert_eq!(rec["hostname"], gethostname());
    assert!(!rec["username"].as_str().unwrap().is_empty());
    // The parent: the newest snapshot of the same host and paths.
    assert_eq!(&rec["parent"], a);
    assert!(first["record"].get("parent").is_none());
    assert!(far["record"].get("parent").is_none());
    assert_eq!(far["record"]["hostname"], "far-away");

    let ids = |v: &[&Value]| -> Vec<String> {
        v.iter().map(|x| x.as_str().unwrap().to_string()).collect()
    };
    assert_eq!(listed(&repo, &[]), ids(&[a, b, c]));
    assert_eq!(listed(&repo, &["--host", "far-away"]), ids(&[c]));
    assert_eq!(listed(&repo, &["--tag", "daily"]), ids(&[a, b]));
    // One list means all its tags; several lists, any of them.
    assert_eq!(listed(&repo, &["--tag", "daily,db"]), ids(&[b]));
    assert_eq!(listed(&repo, &["--tag", "db", "--tag", "nope"]), ids(&[b]));
    assert_eq!(listed(&repo, &["--path", etc.to_str().unwrap()]), ids(&[c]));
    assert!(listed(&repo, &["--tag", "nope"]).is_empty());
    // `latest` is the newest snapshot that passes the filters.
    let names = |args: &[&str]| ok(dedup(&repo).args(["ls", "latest"]).args(args)).stdout;
    assert_eq!(names(&[]), "/hosts\n");
    assert!(names(&["--host", &gethostname()]).contains("/src\n"));
    let r = run(dedup(&repo).args(["cat", "latest:/hosts", "--tag", "daily"]));
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("/hosts"), "{}", r.stderr);
    let r = run(dedup(&repo).args(["ls", "latest", "--host", "nowhere"]));
    assert_eq!(r.code, 2);
    assert_eq!(
        r.stderr.trim(),
        "dedup: error: no snapshot matches --host nowhere"
    );
    // The table shows hosts and tags.
    let table = ok(dedup(&repo).arg("snapshots")).stdout;
    assert!(table.lines().any(|l| l.contains("far-away")), "{table}");
    assert!(
        table.lines().any(|l| l.contains("daily,db,weekly")),
        "{table}"
    );
}

#[test]
fn forget_by_policy_lists_its_reasons_keeps_what_it_says_and_prunes() {
    let tmp = tempfile::tempdir().unwrap();
    let (src, other, repo) = (
        tmp.path().join("src"),
        tmp.path().join("other"),
        tmp.path().join("repo"),
    );
    make_tree(&src, 4);
    fs::create_dir(&other).unwrap();
    fs::write(other.join("only-here"), random_bytes(9, 300_000)).unwrap();
    ok(dedup(&repo).arg("init"));
    let mut made = Vec::new();
    for round in 0..4 {
        fs::write(src.join("round"), random_bytes(round, 200_000)).unwrap();
        let tags: &[&str] = if round == 1 {
            &["--tag", "release"]
        } else {
            &[]
        };
        made.push(
            ingest(&repo, &src, tags)["id"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    let elsewhere = ingest(&repo, &other, &[])["id"]
        .as_str()
        .unwrap()
        .to_string();
    let policy = ["forget", "--keep-last", "1", "--keep-tag", "release"];

    // A dry run: the decisions and their reasons, nothing changed.
    let plan = json(dedup(&repo).args(policy).args(["--dry-run", "--json"]));
    assert_eq!(plan["dry_run"], true);
    assert_eq!(
        plan["policy"],
        "keep 1 last and all snapshots tagged release"
    );
    let groups = plan["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 2, "grouped by host and paths: {plan}");
    let ours = groups
        .iter()
        .find(|g| g["group"]["paths"][0] == src.display().to_string())
        .unwrap();
    let decided: Vec<(&str, bool, &Value)> = ours["snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["id"].as_str().unwrap(),
                d["keep"].as_bool().unwrap(),
                &d["reasons"],
            )
        })
        .collect();
    // Newest first.
    assert_eq!(
        decided[0],
        (
            made[3].as_str(),
            true,
            &serde_json::json!(["last snapshot"])
        )
    );
    assert_eq!(decided[1].0, made[2]);
    assert!(!decided[1].1);
    assert_eq!(
        decided[2],
        (
            made[1].as_str(),
            true,
            &serde_json::json!(["has tags release"])
        )
    );
    assert!(!decided[3].1);
    assert_eq!(plan["forgotten"].as_array().unwrap().len(), 2);
    assert_eq!(listed(&repo, &[]).len(), 5);
    let text = ok(dedup(&repo).args(policy).arg("--dry-run")).stdout;
    assert!(text.contains("would forget 2 snapshots"), "{text}");
    assert!(text.contains("keep 2, remove 2"), "{text}");

    // Applied, with --prune: the two go, and gc reclaims what only they held.
    let before = fs_size(&repo);
    let done = json(dedup(&repo).args(policy).args(["--prune", "--json"]));
    assert_eq!(done["dry_run"], false);
    assert!(done["gc"]["bytes_freed"].as_u64().unwrap() > 0, "{done}");
    assert!(fs_size(&repo) < before);
    let mut left = listed(&repo, &[]);
    left.sort();
    let mut want = vec![made[1].clone(), made[3].clone(), elsewhere.clone()];
    want.sort();
    assert_eq!(left, want);
    // What is left restores whole.
    let out = tmp.path().join("out");
    ok(dedup(&repo).args(["restore", &made[3]]).arg(&out));
    assert_eq!(describe(&src), describe(&out));
    ok(dedup(&repo).arg("verify"));

    // One group for all, narrowed by a filter: only this host's snapshots
    // of `other` are looked at.
    let r = ok(dedup(&repo).args(["forget", "--keep-last", "1", "--group-by", ""]));
    assert!(
        r.stdout.contains("all snapshots: keep 1, remove 2"),
        "{}",
        r.stdout
    );
    assert_eq!(listed(&repo, &[]), vec![elsewhere]);
}

#[test]
fn forget_refuses_no_policy_ids_with_a_policy_and_bad_rules() {
    let tmp = tempfile::tempdir().unwrap();
    let (src, repo) = (tmp.path().join("src"), tmp.path().join("repo"));
    fs::create_dir(&src).unwrap();
    fs::write(src.join("f"), b"f").unwrap();
    ok(dedup(&repo).arg("init"));
    ingest(&repo, &src, &[]);
    for args in [
        &["forget"][..],
        &["forget", "latest", "--keep-last", "2"],
        &["forget", "--keep-daily", "seven"],
        &["forget", "--keep-within", "2w"],
        &["forget", "--keep-last", "1", "--group-by", "colour"],
    ] {
        let r = run(dedup(&repo).args(args));
        assert_eq!(r.code, 2, "{args:?}: {}", r.stderr);
        assert!(!r.stderr.contains("panicked"), "{}", r.stderr);
    }
    assert_eq!(listed(&repo, &[]).len(), 1);
}

/// Bytes of the files under `dir`.
fn fs_size(dir: &std::path::Path) -> u64 {
    files_under(dir, "")
        .iter()
        .map(|f| fs::metadata(f).map_or(0, |m| m.len()))
        .sum()
}
