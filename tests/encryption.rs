//! Encrypted repositories, end to end through the command line: nothing
//! of a known file is in the store (not its bytes, not its name, not its
//! plain SHA-256), every stored byte is checked on read, wrong passwords
//! fail cleanly, and keys come and go while the data stays readable.
//! (The S3 home is tested in `tests/s3.rs`.)

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

/// `dedup` on `repo` with the password in `pw`.
fn with(repo: &Path, pw: &Path) -> Command {
    let mut cmd = dedup(repo);
    cmd.arg("--password-file").arg(pw);
    cmd
}

/// `dedup` on `repo`, with the password in `pw` when it is `encrypted`
/// (a plain repository refuses one).
fn as_made(repo: &Path, pw: &Path, encrypted: bool) -> Command {
    if encrypted {
        with(repo, pw)
    } else {
        dedup(repo)
    }
}

/// Makes `repo`, encrypted or not, with `args` and the cheapest key
/// derivation.
fn init_made(repo: &Path, pw: &Path, encrypted: bool, args: &[&str]) {
    let mut init = as_made(repo, pw, encrypted);
    init.args(["init", "--kdf-time", "1"]).args(args);
    if encrypted {
        init.args(["--encryption", "repokey"]);
    }
    ok(&mut init);
}

fn password(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    fs::write(&path, format!("{text}\n")).unwrap();
    path
}

/// Every file of the repository folder, with its bytes.
fn stored(repo: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    files_under(repo, "")
        .into_iter()
        .map(|p| {
            let bytes = fs::read(&p).unwrap();
            (p, bytes)
        })
        .collect()
}

fn holds(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// A tree with a file whose bytes, name and id a test looks for.
fn known_tree(src: &Path) -> Vec<u8> {
    make_tree(src, 7);
    let mut known = b"KNOWN-FILE-PLAINTEXT: the quarterly figures, do not share. ".repeat(40);
    known.extend_from_slice(&random_bytes(8, 6000));
    fs::write(src.join("known-secret-name.txt"), &known).unwrap();
    known
}

#[test]
fn a_known_file_is_nowhere_in_an_encrypted_repository() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let known = known_tree(&src);
    // The file is one chunk (smaller than the minimum): its plain id is
    // the SHA-256 of its bytes.
    let plain_id = sha256(&known);
    let pw = password(tmp.path(), "pw", "correct horse battery staple");
    for (encrypted, name) in [(false, "plain"), (true, "sealed")] {
        let repo = tmp.path().join(name);
        let cmd = || as_made(&repo, &pw, encrypted);
        // No compression: a plaintext byte could not hide in a zstd frame.
        init_made(&repo, &pw, encrypted, &["--compression", "none"]);
        ok(cmd().arg("ingest").arg(&src));
        let files = stored(&repo);
        let found = |needle: &[u8]| files.iter().any(|(_, bytes)| holds(bytes, needle));
        let id_hex = hex(&plain_id);
        let pieces = [
            &known[..48],
            &known[known.len() / 2..known.len() / 2 + 48],
            &known[known.len() - 48..],
            b"known-secret-name.txt",
            &plain_id,
        ];
        for piece in pieces {
            // The plain repository shows that the search finds them.
            assert_eq!(
                found(piece),
                !encrypted,
                "{name}: {:?}",
                String::from_utf8_lossy(piece)
            );
        }
        // Nor its id as hex (records and listings name trees by hex ids).
        if encrypted {
            assert!(!found(id_hex.as_bytes()));
        }
        let out = tmp.path().join(format!("out-{name}"));
        ok(cmd().args(["restore", "latest"]).arg(&out));
        assert_eq!(describe(&src), describe(&out));
        ok(cmd().args(["verify", "--read-data"]));
    }
}

fn sha256(bytes: &[u8]) -> Vec<u8> {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).to_vec()
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

#[test]
fn flipping_any_stored_byte_is_detected() {
    let tmp = tempfile::tempdir().unwrap();
    let (src, repo) = (tmp.path().join("src"), tmp.path().join("repo"));
    fs::create_dir_all(&src).unwrap();
    fs::write(src.join("a.txt"), b"alpha ".repeat(3000)).unwrap();
    fs::write(src.join("b.bin"), random_bytes(3, 40_000)).unwrap();
    let pw = password(tmp.path(), "pw", "s3cret");
    ok(with(&repo, &pw).args([
        "init",
        "--encryption",
        "repokey",
        "--shards",
        "1",
        "--kdf-time",
        "1",
    ]));
    ok(with(&repo, &pw).arg("ingest").arg(&src));
    let pristine = stored(&repo);
    let mut tried = 0;
    for (path, bytes) in &pristine {
        let name = path.strip_prefix(&repo).unwrap().display().to_string();
        // The lock files say who holds them; they store nothing.
        if bytes.is_empty() || name == "lock" || name == "readers" {
            continue;
        }
        // Each sealed part's ends and middle, and the file's ends.
        let mut at: Vec<usize> = vec![0, bytes.len() / 3, bytes.len() / 2, bytes.len() - 1];
        at.extend((0..bytes.len()).step_by((bytes.len() / 12).max(1)));
        at.sort_unstable();
        at.dedup();
        for i in at {
            let mut bad = bytes.clone();
            bad[i] ^= 0x40;
            fs::write(path, &bad).unwrap();
            // A new machine: nothing cached, everything read from the store.
            let cache = tmp.path().join(format!("cache-{tried}"));
            let r = run(with(&repo, &pw)
                .env("DEDUP_CACHE", &cache)
                .args(["verify", "--read-data"]));
            assert_ne!(
                r.code, 0,
                "flipping byte {i} of {name} went unnoticed:\n{}",
                r.stdout
            );
            let _ = fs::remove_dir_all(&cache);
            tried += 1;
            fs::write(path, bytes).unwrap();
        }
    }
    assert!(tried > 40, "only {tried} flips");
    // Put back, all is well again.
    ok(with(&repo, &pw).args(["verify", "--read-data"]));
}

#[test]
fn a_wrong_or_missing_password_fails_cleanly_and_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let (src, repo) = (tmp.path().join("src"), tmp.path().join("repo"));
    make_tree(&src, 11);
    let pw = password(tmp.path(), "pw", "right");
    ok(with(&repo, &pw).args(["init", "--encryption", "repokey", "--kdf-time", "1"]));
    ok(with(&repo, &pw).arg("ingest").arg(&src));
    let before = stored(&repo);
    let wrong = password(tmp.path(), "wrong", "wrong");
    for args in [
        &["snapshots"][..],
        &["ingest", src.to_str().unwrap()],
        &["gc"],
        &["restore", "latest", "/nonexistent/out"],
        &["key", "list"],
    ] {
        let r = run(with(&repo, &wrong).args(args));
        assert_eq!(r.code, 2, "{args:?}: {}", r.stdout);
        assert!(
            r.stderr
                .starts_with("dedup: error: wrong password: no key of this repository opens"),
            "{}",
            r.stderr
        );
        assert_eq!(r.stderr.trim().lines().count(), 1);
        // No password at all (and no terminal to ask on).
        let r = run(dedup(&repo).args(args).stdin(std::process::Stdio::null()));
        assert_eq!(r.code, 2);
        assert!(r.stderr.contains("--password-file"), "{}", r.stderr);
        assert_eq!(r.stderr.trim().lines().count(), 1);
    }
    // An empty password file, a password command that fails.
    let empty = password(tmp.path(), "empty", "");
    let r = run(with(&repo, &empty).arg("snapshots"));
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("empty"), "{}", r.stderr);
    let r = run(dedup(&repo)
        .env("DEDUP_PASSWORD_COMMAND", "exit 3")
        .arg("snapshots"));
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("DEDUP_PASSWORD_COMMAND"), "{}", r.stderr);
    // The password from the environment and from a command work.
    ok(dedup(&repo).env("DEDUP_PASSWORD", "right").arg("snapshots"));
    ok(dedup(&repo)
        .env("DEDUP_PASSWORD_COMMAND", "echo right")
        .arg("snapshots"));
    // A damaged key file: said so, not "wrong password".
    let key = files_under(&repo.join("keys"), "").pop().unwrap();
    fs::write(&key, b"{ not a key").unwrap();
    let r = run(with(&repo, &pw).arg("snapshots"));
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("key file"), "{}", r.stderr);
    // A config made to look unencrypted is refused, not read as plain:
    // its head edited to say so, or the whole file swapped for a plain
    // repository's while the key files stay.
    let config = repo.join("config");
    let sealed_config = fs::read(&config).unwrap();
    let edited = String::from_utf8(sealed_config.clone())
        .unwrap()
        .replace("\"repokey\"", "\"none\"");
    fs::write(&config, edited).unwrap();
    let r = run(with(&repo, &pw).arg("snapshots"));
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("not encrypted"), "{}", r.stderr);
    let plain = tmp.path().join("plain");
    ok(dedup(&plain).arg("init"));
    fs::copy(plain.join("config"), &config).unwrap();
    // (Another repository's config: the key files beside it give it away.)
    let r = run(dedup(&repo).arg("snapshots"));
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("keys/ holds key files"), "{}", r.stderr);
    // With the password at hand, refused before the keys are looked at.
    let r = run(with(&repo, &pw).arg("snapshots"));
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("a password was given"), "{}", r.stderr);
    fs::write(&config, &sealed_config).unwrap();
    // Nothing was changed by any of it but the key file itself.
    let after = stored(&repo);
    let changed: Vec<_> = before
        .iter()
        .zip(&after)
        .filter(|(a, b)| a != b)
        .map(|(a, _)| a.0.display().to_string())
        .collect();
    assert_eq!(changed, [key.display().to_string()]);
    assert_eq!(before.len(), after.len());
}

#[test]
fn keys_come_and_go_and_the_data_stays_readable() {
    let tmp = tempfile::tempdir().unwrap();
    let (src, repo) = (tmp.path().join("src"), tmp.path().join("repo"));
    make_tree(&src, 12);
    let (first, second, third) = (
        password(tmp.path(), "first", "first password"),
        password(tmp.path(), "second", "second password"),
        password(tmp.path(), "third", "third password"),
    );
    ok(with(&repo, &first).args(["init", "--encryption", "repokey", "--kdf-time", "1"]));
    ok(with(&repo, &first).arg("ingest").arg(&src));
    let keys = |pw: &Path| json(with(&repo, pw).args(["key", "list", "--json"]));
    let listed = keys(&first);
    assert_eq!(listed.as_array().unwrap().len(), 1);
    let first_id = listed[0]["id"].as_str().unwrap().to_string();
    assert_eq!(listed[0]["current"], true);
    // A second key; the first cannot remove itself, the second can.
    ok(with(&repo, &first)
        .args(["key", "add", "--kdf-time", "1", "--new-password-file"])
        .arg(&second));
    assert_eq!(keys(&second).as_array().unwrap().len(), 2);
    let r = run(with(&repo, &first).args(["key", "remove", &first_id]));
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("opened with"), "{}", r.stderr);
    ok(with(&repo, &second).args(["key", "remove", &first_id[..8]]));
    let r = run(with(&repo, &first).arg("snapshots"));
    assert_eq!(r.code, 2, "the first password opens nothing now");
    let out = tmp.path().join("out");
    ok(with(&repo, &second).args(["restore", "latest"]).arg(&out));
    assert_eq!(describe(&src), describe(&out));
    ok(with(&repo, &second).args(["verify", "--read-data"]));
    // The last key cannot go.
    let last = keys(&second)[0]["id"].as_str().unwrap().to_string();
    let r = run(with(&repo, &second).args(["key", "remove", &last]));
    assert_eq!(r.code, 2);
    // A new password for it.
    ok(with(&repo, &second)
        .args(["key", "passwd", "--kdf-time", "1", "--new-password-file"])
        .arg(&third));
    assert_eq!(run(with(&repo, &second).arg("snapshots")).code, 2);
    ok(with(&repo, &third).arg("ingest").arg(&src));
    assert_eq!(
        json(with(&repo, &third).args(["snapshots", "--json"]))
            .as_array()
            .unwrap()
            .len(),
        2
    );
    // repair index works with the key, and a cache made anew reads all.
    ok(with(&repo, &third).args(["repair", "index"]));
    let _ = fs::remove_dir_all(cache_of(&repo));
    ok(with(&repo, &third).args(["verify", "--read-data"]));
    // Key commands on an unencrypted repository say why they cannot.
    let plain = tmp.path().join("plain");
    ok(dedup(&plain).arg("init"));
    let r = run(dedup(&plain).args(["key", "list"]));
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("not encrypted"), "{}", r.stderr);
}

#[test]
fn a_plain_config_put_in_place_of_an_encrypted_one_never_makes_a_client_store_plaintext() {
    let tmp = tempfile::tempdir().unwrap();
    let (repo, src, secret) = (
        tmp.path().join("repo"),
        tmp.path().join("src"),
        tmp.path().join("secret"),
    );
    make_tree(&src, 12);
    fs::create_dir_all(&secret).unwrap();
    fs::write(secret.join("s.txt"), b"TOPSECRET-PLAINTEXT ".repeat(100)).unwrap();
    let pw = password(tmp.path(), "pw", "sesame");
    ok(with(&repo, &pw).args(["init", "--encryption", "repokey", "--kdf-time", "50"]));
    ok(with(&repo, &pw).arg("ingest").arg(&src));
    // A store writer replaces the config by a plain one of the same
    // repository id, and deletes the keys.
    let config = |repo: &Path| -> serde_json::Value {
        serde_json::from_slice(&fs::read(repo.join("config")).unwrap()).unwrap()
    };
    let other = tmp.path().join("plain");
    ok(dedup(&other).args(["init", "--shards", "4"]));
    let mut plain = config(&other);
    plain["repository_id"] = config(&repo)["repository_id"].clone();
    fs::write(repo.join("config"), plain.to_string()).unwrap();
    fs::remove_dir_all(repo.join("keys")).unwrap();
    let leaked = |repo: &Path| {
        files_under(repo, "")
            .iter()
            .any(|p| holds(&fs::read(p).unwrap(), b"TOPSECRET-PLAINTEXT"))
    };
    // A client given the password: refused.
    let r = run(with(&repo, &pw).arg("ingest").arg(&secret));
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("not encrypted, but a password was given"),
        "{}",
        r.stderr
    );
    // A client whose cache has seen it encrypted, with no password at hand
    // (the environment's is read only for an encrypted repository): refused.
    let r = run(dedup(&repo).arg("ingest").arg(&secret));
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("opened it encrypted before"),
        "{}",
        r.stderr
    );
    let r = run(dedup(&repo)
        .env("DEDUP_PASSWORD", "sesame")
        .arg("ingest")
        .arg(&secret));
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(!leaked(&repo), "plaintext reached the store");
}

#[test]
fn a_password_is_an_error_for_a_plain_repository_by_flag_a_warning_by_environment() {
    let tmp = tempfile::tempdir().unwrap();
    let (repo, src) = (tmp.path().join("repo"), tmp.path().join("src"));
    make_tree(&src, 13);
    let pw = password(tmp.path(), "pw", "not needed");
    // At init (a plain repository is the default) and after.
    let r = run(with(&repo, &pw).arg("init"));
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("not encrypted, but a password was given"),
        "{}",
        r.stderr
    );
    ok(dedup(&repo).arg("init"));
    let r = run(with(&repo, &pw).arg("ingest").arg(&src));
    assert_eq!(r.code, 2, "{}", r.stderr);
    // One exported for other repositories: a warning, and it is used for
    // nothing.
    let r = ok(dedup(&repo)
        .env("DEDUP_PASSWORD", "for another repository")
        .args(["--quiet", "ingest"])
        .arg(&src));
    assert!(
        r.stderr.contains("$DEDUP_PASSWORD is set") && r.stderr.contains("not encrypted"),
        "{}",
        r.stderr
    );
    let r = ok(dedup(&repo)
        .env("DEDUP_PASSWORD_FILE", &pw)
        .arg("snapshots"));
    assert!(
        r.stderr.contains("$DEDUP_PASSWORD_FILE is set"),
        "{}",
        r.stderr
    );
    // A password command is not run for a plain repository.
    let ran = tmp.path().join("ran");
    let command = format!("touch {}; echo pw", ran.display());
    ok(dedup(&repo)
        .env("DEDUP_PASSWORD_COMMAND", &command)
        .arg("snapshots"));
    assert!(!ran.exists(), "the password command ran");
    ok(dedup(&repo)
        .env("DEDUP_PASSWORD_COMMAND", "false")
        .arg("snapshots"));
}

#[test]
fn a_removed_key_put_back_opens_nothing_and_a_crafted_costly_key_is_passed_over() {
    let tmp = tempfile::tempdir().unwrap();
    let (src, repo) = (tmp.path().join("src"), tmp.path().join("repo"));
    make_tree(&src, 14);
    let (kept, leaked, changed) = (
        password(tmp.path(), "kept", "kept password"),
        password(tmp.path(), "leaked", "leaked password"),
        password(tmp.path(), "changed", "changed password"),
    );
    ok(with(&repo, &kept).args(["init", "--encryption", "repokey", "--kdf-time", "1"]));
    ok(with(&repo, &kept).arg("ingest").arg(&src));
    ok(with(&repo, &kept)
        .args(["key", "add", "--kdf-time", "1", "--new-password-file"])
        .arg(&leaked));
    let key_of = |pw: &Path| -> String {
        let keys = json(with(&repo, pw).args(["key", "list", "--json"]));
        let current = keys
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["current"] == true);
        current.unwrap()["id"].as_str().unwrap().to_string()
    };
    // The leaked password's key is removed, by someone who kept a copy
    // of its file (the store's operator, a backup of the home), and put
    // back.
    let leaked_id = key_of(&leaked);
    let leaked_file = repo.join("keys").join(&leaked_id);
    let copy = fs::read(&leaked_file).unwrap();
    ok(with(&repo, &kept).args(["key", "remove", &leaked_id]));
    fs::write(&leaked_file, &copy).unwrap();
    for cache in [cache_of(&repo), tmp.path().join("fresh-cache")] {
        let r = run(with(&repo, &leaked)
            .env("DEDUP_CACHE", &cache)
            .arg("snapshots"));
        assert_eq!(r.code, 2, "{}", r.stdout);
        assert!(
            r.stderr
                .contains(&format!("key file {leaked_id} was removed")),
            "{}",
            r.stderr
        );
    }
    let listed = json(with(&repo, &kept).args(["key", "list", "--json"]));
    let back = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["id"] == leaked_id.as_str());
    assert_eq!(back.unwrap()["removed"], true, "{listed}");
    // The same after `key passwd`: the old key file put back opens nothing.
    let kept_id = key_of(&kept);
    let kept_file = fs::read(repo.join("keys").join(&kept_id)).unwrap();
    ok(with(&repo, &kept)
        .args(["key", "passwd", "--kdf-time", "1", "--new-password-file"])
        .arg(&changed));
    fs::write(repo.join("keys").join(&kept_id), &kept_file).unwrap();
    assert_eq!(run(with(&repo, &kept).arg("snapshots")).code, 2);
    ok(with(&repo, &changed).args(["verify", "--read-data"]));

    // A key file crafted to cost far more than any tuning makes, named to
    // come first, is passed over unread, and `key list` says so. (Which
    // key is tried first, the remembered one then the cheapest, is a unit
    // test of `crypto`: order shows only in time here.)
    let mut crafted: serde_json::Value = serde_json::from_slice(&copy).unwrap();
    crafted["params"] = serde_json::json!({"m_cost_kib": 4_194_304, "t_cost": 1024, "p_cost": 64});
    fs::write(repo.join("keys").join("0".repeat(32)), crafted.to_string()).unwrap();
    ok(with(&repo, &changed).arg("snapshots"));
    let listed = json(with(&repo, &changed).args(["key", "list", "--json"]));
    let greedy = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["id"] == "0".repeat(32));
    let damaged = greedy.unwrap()["damaged"].as_str().unwrap();
    assert!(damaged.contains("costs out of range"), "{listed}");
}

#[test]
fn snapshot_record_names_are_keyed_so_the_store_cannot_confirm_a_guessed_record() {
    let tmp = tempfile::tempdir().unwrap();
    let (src, repo) = (tmp.path().join("src"), tmp.path().join("repo"));
    make_tree(&src, 15);
    let pw = password(tmp.path(), "pw", "names");
    ok(with(&repo, &pw).args(["init", "--encryption", "repokey", "--kdf-time", "1"]));
    let id = snapshot_id(&ok(with(&repo, &pw).arg("ingest").arg(&src)).stdout);
    // Whoever guessed the record whole (host, paths, times, summary) could
    // hash it: its name must not be that hash.
    let opened = dedup::Repository::open_with(
        &repo,
        &dedup::OpenOptions {
            password: Some(dedup::engine::keys::Password::new(b"names".to_vec())),
            read_only: true,
            ..private()
        },
    )
    .unwrap();
    let snapshots = opened.snapshots().unwrap();
    let (listed, record) = &snapshots[0];
    assert_eq!(listed.to_hex(), id);
    let (plain, _) = record.encode();
    assert_ne!(plain, *listed, "the record's name is its plain SHA-256");
    assert!(repo.join("snapshots").join(&id).exists());
    drop(opened);
    // Every command reads it back under that name, a cache made anew too.
    let _ = fs::remove_dir_all(cache_of(&repo));
    ok(with(&repo, &pw).args(["verify", "--read-data"]));
    ok(with(&repo, &pw).args(["repair", "index"]));
    ok(with(&repo, &pw)
        .args(["restore", &id])
        .arg(tmp.path().join("out")));
    assert_eq!(describe(&src), describe(&tmp.path().join("out")));
}

#[test]
fn each_encrypted_repository_cuts_the_same_data_its_own_way_plain_ones_alike() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    fs::create_dir_all(&src).unwrap();
    for i in 0..12 {
        fs::write(src.join(format!("f{i:02}")), random_bytes(300 + i, 1 << 20)).unwrap();
    }
    let pw = password(tmp.path(), "pw", "cut");
    // The chunk count of every file, in name order, as a repository cut it.
    let counts = |name: &str, encrypted: bool| -> Vec<u64> {
        let repo = tmp.path().join(name);
        let cmd = || as_made(&repo, &pw, encrypted);
        init_made(&repo, &pw, encrypted, &["--avg-size", "16KiB"]);
        ok(cmd().arg("ingest").arg(&src));
        let listed = json(cmd().args(["ls", "--json", "latest"]));
        listed
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["chunks"].as_u64().unwrap())
            .collect()
    };
    assert_eq!(counts("plain-a", false), counts("plain-b", false));
    let (a, b) = (counts("sealed-a", true), counts("sealed-b", true));
    assert_ne!(a, b, "two keys cut 12 files into the same chunk counts");
    assert_ne!(a, counts("plain-c", false));
}

#[test]
fn the_store_cannot_find_where_a_record_ends_and_the_key_holder_still_can() {
    use dedup::format::pack::scan_records;
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    make_tree(&src, 23);
    let pw = password(tmp.path(), "pw", "lengths");
    // How many records a walk from the front finds in each pack, reading
    // headers as the store can: without the key.
    let walked = |repo: &Path| -> Vec<usize> {
        packs(repo)
            .iter()
            .map(|p| scan_records(&fs::read(p).unwrap(), |_, _| true).len())
            .collect()
    };
    let args = ["--avg-size", "4KiB", "--pack-size", "64KiB"];
    let plain = tmp.path().join("plain");
    init_made(&plain, &pw, false, &args);
    ok(dedup(&plain).arg("ingest").arg(&src));
    assert!(
        walked(&plain).iter().all(|&n| n > 0),
        "{:?}",
        walked(&plain)
    );
    let sealed = tmp.path().join("sealed");
    init_made(&sealed, &pw, true, &args);
    ok(with(&sealed, &pw).arg("ingest").arg(&src));
    let found = walked(&sealed);
    assert!(found.len() > 2, "{found:?}");
    assert!(
        found.iter().all(|&n| n == 0),
        "headers read without the key: {found:?}"
    );
    // With the key, a pack whose trailer is damaged is still walked from
    // the front, and every record is kept.
    let victim = packs(&sealed).into_iter().next().unwrap();
    let mut bytes = fs::read(&victim).unwrap();
    let n = bytes.len();
    bytes[n - 20] ^= 0xff;
    fs::write(&victim, bytes).unwrap();
    let _ = fs::remove_dir_all(cache_of(&sealed));
    let r = run(with(&sealed, &pw).args(["repair", "index"]));
    assert_eq!(r.code, 1, "salvage is reported: {}", r.stdout);
    assert!(r.stdout.contains("salvaged damaged pack"), "{}", r.stdout);
    ok(with(&sealed, &pw).args(["verify", "--read-data"]));
    let out = tmp.path().join("out");
    ok(with(&sealed, &pw).args(["restore", "latest"]).arg(&out));
    assert_eq!(describe(&src), describe(&out));
}

/// The files of `fixtures/repo-v1-*.tar.gz`'s one snapshot, by SHA-256.
const FIXTURE_FILES: [(&str, &str); 3] = [
    (
        "readme.txt",
        "3bbef82a0ef8d833bf723e9208fc698d87ccac3cdf32a2d42a02ffeada2b0d64",
    ),
    (
        "sub/data.bin",
        "06f8fade2a282c74fb2d90ff577c152a849fbcfc8c64cf8a67185cea9acfa046",
    ),
    (
        "sub/text.txt",
        "f35bcbf10dd87bf40b5b1bf10e17fbcb5238728cf55e4796e9be42d825656b4a",
    ),
];

#[test]
fn repositories_written_before_format_2_open_read_and_take_new_snapshots() {
    use dedup::format::pack::scan_records;
    let tmp = tempfile::tempdir().unwrap();
    let pw = password(tmp.path(), "pw", "fixture");
    for (kind, encrypted) in [("plain", false), ("encrypted", true)] {
        // Made by 8952c5e, the last build that wrote format 1 only.
        let name = format!("repo-v1-{kind}");
        let archive = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fixtures")
            .join(format!("{name}.tar.gz"));
        ok(Command::new("tar")
            .arg("-xzf")
            .arg(&archive)
            .arg("-C")
            .arg(tmp.path()));
        let repo = tmp.path().join(&name);
        let cmd = || as_made(&repo, &pw, encrypted);
        let out = tmp.path().join(format!("out-{kind}"));
        ok(cmd().args(["restore", "latest"]).arg(&out));
        for (path, sum) in FIXTURE_FILES {
            let bytes = fs::read(out.join(path)).unwrap();
            assert_eq!(hex(&sha256(&bytes)), sum, "{kind}: {path}");
        }
        // New snapshots are written in the repository's own format, which
        // the older build reads: headers in the clear.
        let src = tmp.path().join(format!("src-{kind}"));
        make_tree(&src, 29);
        ok(cmd().arg("ingest").arg(&src));
        ok(cmd().args(["verify", "--read-data"]));
        let config = fs::read_to_string(repo.join("config")).unwrap();
        assert!(config.contains("\"format_version\": 1"), "{config}");
        for p in packs(&repo) {
            let bytes = fs::read(&p).unwrap();
            assert!(
                !scan_records(&bytes, |_, _| true).is_empty(),
                "{kind}: {}",
                p.display()
            );
        }
        let again = tmp.path().join(format!("again-{kind}"));
        ok(cmd().args(["restore", "latest"]).arg(&again));
        assert_eq!(describe(&src), describe(&again));
        // The first gc compacts the index into families and the records
        // into a catalog: the version goes up by 4 first (an older build
        // now refuses it by name), the full segment and the record files
        // go, and a fresh cache finds everything.
        let full = |repo: &Path| count_named(&repo.join("segments"), |n| n.ends_with("-full"));
        assert_eq!(full(&repo), 1, "{kind}: made with a full segment");
        // `compact` beside writers leaves that first one to gc, and says so.
        let refused = run(cmd().arg("compact"));
        assert_eq!(refused.code, 2, "{kind}: {}", refused.stdout);
        assert!(refused.stderr.contains("`dedup gc`"), "{}", refused.stderr);
        assert_eq!(refused.stderr.lines().count(), 1, "{}", refused.stderr);
        ok(cmd().arg("gc"));
        let config = fs::read_to_string(repo.join("config")).unwrap();
        assert!(config.contains("\"format_version\": 5"), "{config}");
        assert_eq!(full(&repo), 0, "{kind}");
        assert_eq!(count_named(&repo.join("snapshots"), |_| true), 0, "{kind}");
        assert!(
            repo.join("index").read_dir().unwrap().count() >= 2,
            "{kind}: families"
        );
        let fresh = tmp.path().join(format!("cache-{kind}"));
        let last = tmp.path().join(format!("last-{kind}"));
        ok(cmd()
            .env("DEDUP_CACHE", &fresh)
            .args(["restore", "latest"])
            .arg(&last));
        assert_eq!(describe(&src), describe(&last));
        let verified = run(cmd().env("DEDUP_CACHE", &fresh).args(["verify", "--json"]));
        assert_eq!(verified.code, 0, "{kind}: {}", verified.stdout);
        // From now on `compact` runs beside writers.
        fs::write(src.join("new"), random_bytes(31, 50_000)).unwrap();
        ok(cmd().arg("ingest").arg(&src));
        let compacted = ok(cmd().arg("compact"));
        assert!(
            compacted.stdout.starts_with("index compacted: "),
            "{kind}: {}",
            compacted.stdout
        );
        assert!(
            verified.stdout.contains("\"index_entries\""),
            "{}",
            verified.stdout
        );
    }
}

#[test]
fn init_can_copy_another_encrypted_repositorys_chunker_seed_and_never_into_a_plain_one() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    fs::create_dir_all(&src).unwrap();
    for i in 0..12 {
        fs::write(src.join(format!("f{i:02}")), random_bytes(500 + i, 1 << 20)).unwrap();
    }
    let (pa, pb) = (
        password(tmp.path(), "pa", "first"),
        password(tmp.path(), "pb", "second"),
    );
    let (a, b, c) = (
        tmp.path().join("a"),
        tmp.path().join("b"),
        tmp.path().join("c"),
    );
    init_made(&a, &pa, true, &["--avg-size", "16KiB"]);
    let from = |cmd: &mut Command| {
        cmd.arg("--copy-chunker-params-from").arg(&a);
    };
    // Without the source's password: a clear error, nothing made.
    let mut init = with(&b, &pb);
    init.args(["init", "--kdf-time", "1", "--encryption", "repokey"]);
    from(&mut init);
    let refused = run(&mut init);
    assert_eq!(refused.code, 2, "{}", refused.stderr);
    assert!(
        refused.stderr.contains("is encrypted: give its password"),
        "{}",
        refused.stderr
    );
    assert!(!b.exists());
    // A plain repository would publish the seed.
    let mut plain = dedup(&c);
    plain.arg("init").arg("--from-password-file").arg(&pa);
    from(&mut plain);
    let refused = run(&mut plain);
    assert_eq!(refused.code, 2, "{}", refused.stderr);
    assert!(
        refused.stderr.contains("would publish it"),
        "{}",
        refused.stderr
    );
    assert!(!c.exists());
    init.arg("--from-password-file").arg(&pa);
    ok(&mut init);
    init_made(&c, &pb, true, &["--avg-size", "16KiB"]);
    let counts = |repo: &Path, pw: &Path| -> Vec<u64> {
        ok(with(repo, pw).arg("ingest").arg(&src));
        let listed = json(with(repo, pw).args(["ls", "--json", "latest"]));
        listed
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["chunks"].as_u64().unwrap())
            .collect()
    };
    let (in_a, in_b) = (counts(&a, &pa), counts(&b, &pb));
    assert_eq!(in_a, in_b, "a repository that copied the seed cuts alike");
    assert_ne!(in_a, counts(&c, &pb), "another seed cuts otherwise");
}
