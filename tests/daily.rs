//! Daily use, end to end through the command line: tags, hosts and paths
//! on records, the filters of `snapshots` and `latest`, `forget`'s policy
//! (its rules on calendar time are tested against a fixed clock in
//! `src/policy.rs`), what ingest leaves out, its dry run, and streams from
//! standard input.

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

#[test]
fn exclusions_leave_out_globs_pattern_files_tagged_caches_markers_and_large_files() {
    let tmp = tempfile::tempdir().unwrap();
    let (src, repo) = (tmp.path().join("src"), tmp.path().join("repo"));
    for dir in [
        "a/deep",
        "build",
        "cache",
        "node_modules/pkg",
        "private",
        "keep",
    ] {
        fs::create_dir_all(src.join(dir)).unwrap();
    }
    let files: &[(&str, &[u8])] = &[
        ("a/main.c", b"int main;"),
        ("a/main.o", b"obj"),
        ("a/deep/util.o", b"obj"),
        ("build/out.bin", b"bin"),
        (
            "cache/CACHEDIR.TAG",
            b"Signature: 8a477f597d28d172789f06886806bc55\n",
        ),
        ("cache/blob", b"cached"),
        ("node_modules/pkg/index.js", b"js"),
        ("private/.nobackup", b""),
        ("private/secret", b"s"),
        // A tag without the signature is no tag.
        ("keep/CACHEDIR.TAG", b"not a tag"),
        ("keep/notes", b"n"),
    ];
    for (path, bytes) in files {
        fs::write(src.join(path), bytes).unwrap();
    }
    fs::write(src.join("keep/big.iso"), random_bytes(1, 2 << 20)).unwrap();
    let list = tmp.path().join("excludes.txt");
    fs::write(&list, "# build products\n*.o\n\n/nowhere/*\n").unwrap();
    ok(dedup(&repo).arg("init"));
    let rec = ingest(
        &repo,
        &src,
        &[
            "--exclude-file",
            list.to_str().unwrap(),
            "--exclude",
            "node_modules/",
            "-e",
            &format!("{}/build", src.display()),
            "--exclude-caches",
            "--exclude-if-present",
            ".nobackup",
            "--exclude-larger-than",
            "1MiB",
        ],
    );
    let listing = ok(dedup(&repo).args(["ls", "-R", "latest"])).stdout;
    assert_eq!(
        listing,
        "/a\n/a/deep\n/a/main.c\n/keep\n/keep/CACHEDIR.TAG\n/keep/notes\n",
    );
    // Two .o files, build, cache, node_modules, private, big.iso.
    assert_eq!(rec["record"]["summary"]["excluded"], 7);
    let text = ok(dedup(&repo).arg("ingest").arg(&src).args(["-e", "*"])).stdout;
    assert!(text.contains("excluded: 6 entries"), "{text}");
    // Bad rules are errors before anything is read.
    for args in [
        &["-e", "["][..],
        &["--exclude-file", "/no/such/list"],
        &["--exclude-larger-than", "5Q"],
    ] {
        let r = run(dedup(&repo).arg("ingest").arg(&src).args(args));
        assert_eq!(r.code, 2, "{args:?}: {}", r.stderr);
        assert!(
            r.stderr.starts_with("dedup: error: ") || r.stderr.starts_with("error: invalid value"),
            "{}",
            r.stderr
        );
    }
    let r = run(dedup(&repo).arg("ingest").arg(&src).args(["-e", "a/["]));
    assert_eq!(
        r.stderr.trim(),
        "dedup: error: invalid exclude pattern: \"a/[\": invalid range pattern"
    );
    assert_eq!(listed(&repo, &[]).len(), 2);
}

/// Unmounts its folder when dropped, so a failing test leaves no mount.
struct Unmount(std::path::PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

/// `--one-file-system` on a tmpfs mounted inside the tree (as root, where
/// mounting is allowed; elsewhere the test says so and passes).
#[test]
fn one_file_system_keeps_a_mount_point_empty() {
    let tmp = tempfile::tempdir().unwrap();
    let (src, repo) = (tmp.path().join("src"), tmp.path().join("repo"));
    fs::create_dir_all(src.join("mnt")).unwrap();
    fs::write(src.join("here"), b"here").unwrap();
    let mounted = std::process::Command::new("mount")
        .args([
            "-t",
            "tmpfs",
            "dedup-test",
            src.join("mnt").to_str().unwrap(),
        ])
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        eprintln!("not root (or no mount): one_file_system_keeps_a_mount_point_empty not run");
        return;
    }
    let _unmount = Unmount(src.join("mnt"));
    fs::write(src.join("mnt/elsewhere"), b"on another file system").unwrap();
    ok(dedup(&repo).arg("init"));
    ingest(&repo, &src, &[]);
    let all = ok(dedup(&repo).args(["ls", "-R", "latest"])).stdout;
    assert_eq!(all, "/here\n/mnt\n/mnt/elsewhere\n");
    let rec = ingest(&repo, &src, &["-x"]);
    let one = ok(dedup(&repo).args(["ls", "-R", "latest"])).stdout;
    assert_eq!(one, "/here\n/mnt\n");
    assert_eq!(rec["record"]["summary"]["excluded"], 1);
}

#[test]
fn a_dry_run_counts_exactly_what_the_ingest_then_adds_and_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let (src, repo) = (tmp.path().join("src"), tmp.path().join("repo"));
    make_tree(&src, 7);
    ok(dedup(&repo).arg("init"));
    ingest(&repo, &src, &[]);
    fs::write(src.join("grown"), random_bytes(70, 3 << 20)).unwrap();
    fs::write(src.join("copy-of-grown"), random_bytes(70, 3 << 20)).unwrap();
    let files_before = files_under(&repo, "");
    let dry = ingest(&repo, &src, &["--dry-run"]);
    assert_eq!(dry["dry_run"], true);
    assert_eq!(files_under(&repo, ""), files_before, "a dry run wrote");
    assert_eq!(listed(&repo, &[]).len(), 1);
    // A read-only handle (no Bloom filter, no file cache) counts the same.
    let reader = dedup::Repository::open_with(
        &repo,
        &dedup::OpenOptions {
            read_only: true,
            ..private()
        },
    )
    .unwrap();
    let opts = dedup::IngestOptions {
        dry_run: true,
        ..Default::default()
    };
    let counted = reader
        .ingest_with(std::slice::from_ref(&src), &opts, &dedup::Quiet)
        .unwrap();
    drop(reader);
    let real = ingest(&repo, &src, &[]);
    let sum = |v: &Value, key: &str| v["record"]["summary"][key].as_u64().unwrap();
    // The copy is counted once; the new trees come with it.
    assert!(sum(&dry, "new_bytes") > 3 << 20 && sum(&dry, "new_bytes") < 4 << 20);
    for key in [
        "new_bytes",
        "new_chunks",
        "new_stored_bytes",
        "logical_bytes",
    ] {
        assert_eq!(sum(&dry, key), sum(&real, key), "{key}");
    }
    assert_eq!(counted.record.summary.new_bytes, sum(&real, "new_bytes"));
    assert!(counted.dry_run);
    assert_eq!(dry["record"]["tree"], real["record"]["tree"]);
}

#[test]
fn stdin_is_stored_as_one_file_under_its_name() {
    use std::io::Write;
    let tmp = tempfile::tempdir().unwrap();
    let repo = tmp.path().join("repo");
    ok(dedup(&repo).arg("init"));
    // Longer than a window (8 MiB), with a repeat inside.
    let mut dump = random_bytes(11, 9 << 20);
    dump.extend_from_within(..(2 << 20));
    let piped = |args: &[&str]| {
        let mut child = dedup(&repo)
            .args(["ingest", "--json", "--stdin"])
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(&dump).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success());
        serde_json::from_slice::<Value>(&out.stdout).unwrap()
    };
    let first = piped(&["--stdin-name", "db.sql"]);
    let rec = &first["record"];
    assert_eq!(rec["paths"], serde_json::json!(["/db.sql"]));
    assert_eq!(rec["summary"]["logical_bytes"], dump.len());
    // The repeat inside the stream is stored once.
    assert!(rec["summary"]["new_bytes"].as_u64().unwrap() < (10 << 20));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_dedup"))
        .arg("--repo")
        .arg(&repo)
        .env("DEDUP_CACHE", cache_of(&repo))
        .args(["cat", "latest:db.sql"])
        .output()
        .unwrap();
    assert!(out.stdout == dump, "cat gives back other bytes");
    let listing = ok(dedup(&repo).args(["ls", "-l", "latest"])).stdout;
    assert!(listing.starts_with("-rw-r--r--"), "{listing}");
    // The same stream again: only the folder listing is new.
    let again = piped(&["--stdin-name", "db.sql"]);
    assert_eq!(again["record"]["summary"]["new_chunks"], 1);
    assert_eq!(again["record"]["parent"], first["id"]);
    let default = piped(&[]);
    assert_eq!(default["record"]["paths"], serde_json::json!(["/stdin"]));
    for args in [
        &["ingest", "--stdin-name", "x", "/tmp"][..],
        &["ingest", "--stdin", "/tmp"],
        &["ingest", "--stdin", "--stdin-name", "a/b"],
        &["ingest", "--stdin", "--stdin-name", ".."],
    ] {
        let r = run(dedup(&repo).args(args).stdin(std::process::Stdio::null()));
        assert_eq!(r.code, 2, "{args:?}: {}", r.stderr);
    }
    assert_eq!(listed(&repo, &[]).len(), 3);
}

/// A repository holding one snapshot of a small project: (tmp, src, repo).
fn project() -> (tempfile::TempDir, std::path::PathBuf, std::path::PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let (src, repo) = (tmp.path().join("src"), tmp.path().join("repo"));
    for dir in ["app/src/deep", "app/target", "docs"] {
        fs::create_dir_all(src.join(dir)).unwrap();
    }
    for (path, bytes) in [
        ("app/src/main.rs", &b"fn main() {}"[..]),
        ("app/src/deep/lib.rs", b"pub fn f() {}"),
        ("app/src/deep/notes.txt", b"notes"),
        ("app/target/app.rs", b"generated"),
        ("docs/guide.md", b"# guide"),
        ("README", b"read me"),
    ] {
        fs::write(src.join(path), bytes).unwrap();
    }
    std::os::unix::fs::symlink("app/src/main.rs", src.join("main-link")).unwrap();
    ok(dedup(&repo).arg("init"));
    ingest(&repo, &src, &[]);
    (tmp, src, repo)
}

/// The files under `dir`, relative to it, sorted.
fn files_in(dir: &std::path::Path) -> Vec<String> {
    let mut all: Vec<String> = files_under(dir, "")
        .iter()
        .map(|f| f.strip_prefix(dir).unwrap().display().to_string())
        .collect();
    all.sort();
    all
}

#[test]
fn restore_takes_what_includes_name_and_leaves_out_what_excludes_name() {
    let (tmp, _src, repo) = project();
    let out = tmp.path().join("out");
    // Include by name, exclude a folder: the folders on the way come too.
    let r = json(
        dedup(&repo)
            .args([
                "restore", "latest", "--json", "-i", "*.rs", "-e", "target/", "--verify",
            ])
            .arg(&out),
    );
    assert_eq!(files_in(&out), ["app/src/deep/lib.rs", "app/src/main.rs"]);
    assert!(!out.join("docs").exists());
    assert_eq!(r["verified"], 2);
    assert_eq!(r["files"], 2);
    // target (1), notes.txt, README, main-link, docs and what it holds.
    assert_eq!(r["left_out"], 6);
    // A whole folder by an anchored include.
    let docs = tmp.path().join("docs-only");
    ok(dedup(&repo)
        .args(["restore", "latest", "-i", "/docs"])
        .arg(&docs));
    assert_eq!(files_in(&docs), ["docs/guide.md"]);
    // Bad globs are errors.
    let r = run(dedup(&repo)
        .args(["restore", "latest", "-i", "["])
        .arg(tmp.path().join("x")));
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("invalid include pattern"), "{}", r.stderr);
}

#[test]
fn restore_over_a_folder_keeps_or_replaces_as_overwrite_says() {
    use std::os::unix::fs::MetadataExt;
    let (tmp, src, repo) = project();
    let out = tmp.path().join("out");
    ok(dedup(&repo)
        .args(["restore", "latest:app"])
        .arg(out.join("app")));
    // Into a folder with entries: refused without --overwrite.
    let r = run(dedup(&repo).args(["restore", "latest"]).arg(&out));
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("not empty"), "{}", r.stderr);
    // never: what is there stays; the rest comes.
    fs::write(out.join("app/src/main.rs"), b"local edit").unwrap();
    let r = json(
        dedup(&repo)
            .args(["restore", "latest", "--json", "--overwrite", "never"])
            .arg(&out),
    );
    assert_eq!(
        fs::read(out.join("app/src/main.rs")).unwrap(),
        b"local edit"
    );
    assert_eq!(r["kept"], 4);
    assert_eq!(fs::read(out.join("README")).unwrap(), b"read me");
    // if-changed: the edited file comes back, the untouched ones stay.
    let untouched = fs::metadata(out.join("README")).unwrap();
    let r = json(
        dedup(&repo)
            .args([
                "restore",
                "latest",
                "--json",
                "--overwrite",
                "if-changed",
                "--verify",
            ])
            .arg(&out),
    );
    assert_eq!(
        fs::read(out.join("app/src/main.rs")).unwrap(),
        b"fn main() {}"
    );
    assert_eq!(r["files"], 1, "{r}");
    assert_eq!(r["verified"], 1);
    // Five files and the link were there and unchanged.
    assert_eq!(r["kept"], 6, "{r}");
    assert_eq!(
        fs::metadata(out.join("README")).unwrap().ino(),
        untouched.ino()
    );
    // always: every file is written again, a link in a file's place too.
    fs::remove_file(out.join("README")).unwrap();
    std::os::unix::fs::symlink("/etc/hostname", out.join("README")).unwrap();
    let r = json(
        dedup(&repo)
            .args(["restore", "latest", "--json", "--overwrite", "always"])
            .arg(&out),
    );
    assert_eq!(r["files"], 6);
    assert_eq!(r["symlinks"], 1);
    assert_eq!(describe(&src), describe(&out));
}

#[test]
fn an_include_that_names_only_fifos_and_further_links_makes_their_folders() {
    let tmp = tempfile::tempdir().unwrap();
    let (src, repo, out) = (
        tmp.path().join("src"),
        tmp.path().join("repo"),
        tmp.path().join("out"),
    );
    fs::create_dir_all(src.join("a/deep")).unwrap();
    fs::create_dir_all(src.join("b")).unwrap();
    fs::write(src.join("b/first"), b"one inode").unwrap();
    fs::hard_link(src.join("b/first"), src.join("a/deep/twin")).unwrap();
    assert!(std::process::Command::new("mkfifo")
        .arg(src.join("a/pipe"))
        .status()
        .unwrap()
        .success());
    ok(dedup(&repo).arg("init"));
    ingest(&repo, &src, &[]);
    // `first` comes for `twin` to link to; the folders on the way to the
    // FIFO and the link are made.
    let r = json(
        dedup(&repo)
            .args([
                "restore", "latest", "--json", "-i", "pipe", "-i", "twin", "-i", "first",
            ])
            .arg(&out),
    );
    assert_eq!(r["failed"], serde_json::json!([]), "{r}");
    assert_eq!(
        (
            r["files"].as_u64(),
            r["hardlinks"].as_u64(),
            r["specials"].as_u64()
        ),
        (Some(1), Some(1), Some(1))
    );
    let pipe = fs::symlink_metadata(out.join("a/pipe")).unwrap();
    assert!(std::os::unix::fs::FileTypeExt::is_fifo(&pipe.file_type()));
    assert_eq!(fs::read(out.join("a/deep/twin")).unwrap(), b"one inode");
}
