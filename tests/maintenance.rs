//! verify, forget, gc and repair on real repositories, healthy and damaged.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use common::*;
use dedup::format::pack::{flags, parse_trailer, trailer_len, FOOTER_SIZE};
use dedup::store::PackEntry;

struct Fixture {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    repo: PathBuf,
    src: PathBuf,
}

/// A repository (small packs, small chunks) holding one snapshot of a
/// generated tree.
fn fixture(compression: &str) -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().to_path_buf();
    let (src, repo) = (root.join("src"), root.join("repo"));
    make_tree(&src, 21);
    ok(dedup(&repo).args([
        "init",
        "--compression",
        compression,
        "--avg-size",
        "4KiB",
        "--pack-size",
        "64KiB",
    ]));
    ok(dedup(&repo).arg("ingest").arg(&src));
    Fixture {
        _tmp: tmp,
        root,
        repo,
        src,
    }
}

fn restores_identically(f: &Fixture, snapshot: &str, src: &Path) {
    let out = f.root.join(format!("out-{}", rand_suffix()));
    ok(dedup(&f.repo).args(["restore", snapshot]).arg(&out));
    assert_eq!(describe(src), describe(&out));
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::SeqCst)
}

#[test]
fn verify_is_clean_on_a_healthy_repository() {
    let f = fixture("none");
    let r = ok(dedup(&f.repo).args(["verify", "--read-data"]));
    assert!(r.stdout.contains("no problems found"), "{}", r.stdout);
    let j = json(dedup(&f.repo).args(["verify", "--read-data", "--json"]));
    assert!(j["chunks_read"].as_u64().unwrap() > 100);
    assert_eq!(j["problems"].as_array().unwrap().len(), 0);
    let j = json(dedup(&f.repo).args(["verify", "--read-data-subset", "50%", "--json"]));
    let (read, all) = (
        j["packs_read"].as_u64().unwrap(),
        j["packs"].as_u64().unwrap(),
    );
    assert!(
        read > 0 && read < all,
        "a 50% subset reads some packs, not all: {read} of {all}"
    );
}

#[test]
fn read_data_names_a_damaged_chunk_its_pack_and_the_files_it_breaks() {
    let f = fixture("none");
    // Flip a byte of src/small.txt's only chunk, stored uncompressed.
    let needle = b"hello, dedup\n";
    let mut hit = None;
    for pack in packs(&f.repo) {
        let mut bytes = fs::read(&pack).unwrap();
        if let Some(pos) = bytes.windows(needle.len()).position(|w| w == needle) {
            bytes[pos] ^= 1;
            fs::write(&pack, bytes).unwrap();
            hit = Some(pack);
        }
    }
    let pack = hit.expect("the file's bytes are in a pack");
    // Structure alone cannot see a flipped data byte ...
    ok(dedup(&f.repo).arg("verify"));
    // ... re-hashing can.
    let r = run(dedup(&f.repo).args(["verify", "--read-data"]));
    assert_eq!(r.code, 1, "{}", r.stdout);
    let id = dedup::ChunkId::of(needle).to_hex();
    let pack_name = pack.file_stem().unwrap().to_str().unwrap();
    assert!(
        r.stdout.contains("damaged-chunk") && r.stdout.contains(&id),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains(pack_name), "{}", r.stdout);
    assert!(r.stdout.contains(":src/small.txt"), "{}", r.stdout);
}

#[test]
fn a_missing_pack_is_found_by_structure_alone() {
    let f = fixture("none");
    let victim = packs(&f.repo).into_iter().next().unwrap();
    fs::remove_file(&victim).unwrap();
    let j = json_any(dedup(&f.repo).args(["verify", "--json"]), 1);
    let kinds = problem_kinds(&j);
    assert!(kinds.iter().any(|k| k == "missing-pack"), "{kinds:?}");
    let broken: usize = j["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["files"].as_array().unwrap().len())
        .sum();
    assert!(broken > 0, "the files that lose data are named: {j}");
}

/// The `kind` of every problem in `verify --json` output.
fn problem_kinds(report: &serde_json::Value) -> Vec<String> {
    report["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["kind"].as_str().unwrap().to_string())
        .collect()
}

fn json_any(cmd: &mut std::process::Command, code: i32) -> serde_json::Value {
    let r = run(cmd);
    assert_eq!(r.code, code, "{}\n{}", r.stdout, r.stderr);
    serde_json::from_str(&r.stdout).unwrap()
}

#[test]
fn a_truncated_pack_a_damaged_bloom_file_and_a_damaged_record_are_findings() {
    let f = fixture("none");
    let victim = packs(&f.repo).into_iter().next().unwrap();
    let len = fs::metadata(&victim).unwrap().len();
    fs::OpenOptions::new()
        .write(true)
        .open(&victim)
        .unwrap()
        .set_len(len - 7)
        .unwrap();
    let bloom = slot(&f.repo).join("bloom");
    let mut b = fs::read(&bloom).unwrap();
    let mid = b.len() / 2;
    b[mid] ^= 0x10;
    fs::write(&bloom, b).unwrap();
    let snap = fs::read_dir(f.repo.join("snapshots"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let mut rec = fs::read(&snap).unwrap();
    rec[5] ^= 0x01;
    fs::write(&snap, rec).unwrap();
    let j = json_any(dedup(&f.repo).args(["verify", "--json"]), 1);
    let kinds = problem_kinds(&j);
    for k in ["damaged-pack", "damaged-bloom", "damaged-snapshot"] {
        assert!(kinds.iter().any(|x| x == k), "{k} not in {kinds:?}");
    }
}

#[test]
fn a_damaged_bloom_file_is_rebuilt_by_the_next_writer() {
    let f = fixture("none");
    fs::write(slot(&f.repo).join("bloom"), b"garbage").unwrap();
    fs::write(f.src.join("new-file"), b"new content").unwrap();
    ok(dedup(&f.repo).arg("ingest").arg(&f.src));
    ok(dedup(&f.repo).args(["verify", "--read-data"]));
    restores_identically(&f, "latest", &f.src);
}

#[test]
fn a_crafted_bloom_file_with_a_valid_checksum_is_rebuilt_not_a_panic() {
    let f = fixture("none");
    // One filter of no bits and one hash slice: its lookups would panic.
    let mut payload = vec![1, 0, 1];
    payload.extend_from_slice(&0.01f64.to_le_bytes());
    payload.extend_from_slice(&[0, 0, 0, 2]);
    payload.extend_from_slice(&0.9f64.to_le_bytes());
    // Stamped like the saved filter, so a writer takes it as current.
    let path = slot(&f.repo).join("bloom");
    let saved = dedup::bloom::Bloom::decode(&fs::read(&path).unwrap(), "saved").unwrap();
    fs::write(&path, dedup::bloom::Bloom::frame(saved.stamp(), &payload)).unwrap();
    fs::write(f.src.join("new-file"), b"new content").unwrap();
    let r = ok(dedup(&f.repo).arg("ingest").arg(&f.src));
    assert!(!r.stderr.contains("panicked"), "{}", r.stderr);
    ok(dedup(&f.repo).args(["verify", "--read-data"]));
    restores_identically(&f, "latest", &f.src);
}

#[test]
fn an_undecodable_record_file_does_not_stop_writers_and_verify_names_it() {
    let f = fixture("none");
    let name = "a".repeat(64);
    fs::write(f.repo.join("snapshots").join(&name), b"not a record").unwrap();
    fs::write(f.src.join("new-file"), b"new content").unwrap();
    ok(dedup(&f.repo).arg("ingest").arg(&f.src));
    let v = json_any(dedup(&f.repo).args(["verify", "--json"]), 1);
    assert_eq!(problem_kinds(&v), ["damaged-snapshot"], "{v}");
    assert!(v.to_string().contains(&name), "{v}");
    restores_identically(&f, "latest", &f.src);
}

#[test]
fn gc_passing_over_an_unreadable_pack_says_so_and_exits_1() {
    let f = fixture("none");
    // A pack of file data only: a lost tree stops gc outright (it could
    // not tell what is live), which is another test's business.
    let victim = packs(&f.repo)
        .into_iter()
        .find(|p| records(p).1.iter().all(|e| e.flags & flags::TREE == 0))
        .expect("a pack without trees");
    let len = fs::metadata(&victim).unwrap().len();
    fs::OpenOptions::new()
        .write(true)
        .open(&victim)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    let gc = json_any(dedup(&f.repo).args(["gc", "--json"]), 1);
    assert_eq!(gc["unreadable_packs"].as_array().unwrap().len(), 1, "{gc}");
    assert!(victim.exists(), "gc must not delete what it cannot read");
}

#[test]
fn a_damaged_config_is_a_clear_error() {
    let f = fixture("none");
    let config = f.repo.join("config");
    let good = fs::read(&config).unwrap();
    fs::write(&config, &good[..good.len() / 2]).unwrap();
    let r = run(dedup(&f.repo).arg("snapshots"));
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("corrupt config"), "{}", r.stderr);
    fs::write(&config, &good).unwrap();
    ok(dedup(&f.repo).args(["verify", "--read-data"]));
}

#[test]
fn forget_then_gc_reclaims_space_and_keeps_every_other_snapshot() {
    let f = fixture("none");
    let first = json(dedup(&f.repo).args(["snapshots", "--json"]))[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    // A second, different tree.
    let src2 = f.root.join("src2");
    make_tree(&src2, 22);
    ok(dedup(&f.repo).arg("ingest").arg(&src2));
    let before = json(dedup(&f.repo).args(["report", "--json"]))["stored_bytes"]
        .as_u64()
        .unwrap();
    ok(dedup(&f.repo).args(["forget", &first[..10]]));
    assert_eq!(
        json(dedup(&f.repo).args(["snapshots", "--json"]))
            .as_array()
            .unwrap()
            .len(),
        1
    );

    let listing = |repo: &Path| {
        let mut p = packs(repo);
        p.sort();
        p
    };
    let packs_before = listing(&f.repo);
    let dry = json(dedup(&f.repo).args(["gc", "--dry-run", "--json"]));
    assert!(dry["bytes_freed"].as_u64().unwrap() > 1_000_000, "{dry}");
    assert_eq!(listing(&f.repo), packs_before, "a dry run touches nothing");

    let done = json(dedup(&f.repo).args(["gc", "--json"]));
    assert_eq!(done["bytes_freed"], dry["bytes_freed"]);
    assert_eq!(done["packs_deleted"], dry["packs_deleted"]);
    let after = json(dedup(&f.repo).args(["report", "--json"]))["stored_bytes"]
        .as_u64()
        .unwrap();
    assert!(after < before, "{after} < {before}");
    ok(dedup(&f.repo).args(["verify", "--read-data"]));
    restores_identically(&f, "latest", &src2);
    // A second gc finds nothing more to do.
    let again = json(dedup(&f.repo).args(["gc", "--json"]));
    assert_eq!(again["bytes_freed"], 0, "{again}");
}

#[test]
fn gc_deletes_packs_left_by_a_crashed_ingest_and_keeps_blobs() {
    let f = fixture("none");
    let blob = f.root.join("blob");
    fs::write(&blob, random_bytes(5, 50_000)).unwrap();
    let id = ok(dedup(&f.repo).arg("put").arg(&blob))
        .stdout
        .trim()
        .to_string();
    // An orphan: a pack file no index entry knows.
    let orphan = f
        .repo
        .join("shards/00/ab/abababababababababababababababab.pack");
    fs::create_dir_all(orphan.parent().unwrap()).unwrap();
    fs::write(&orphan, b"DDPACK\0\x01 left by a crash").unwrap();
    let unfinished = f
        .repo
        .join("shards/01/cd/cdcdcdcdcdcdcdcdcdcdcdcdcdcdcdcd.pack.4242.tmp");
    fs::create_dir_all(unfinished.parent().unwrap()).unwrap();
    fs::write(&unfinished, b"half a pack").unwrap();
    let r = json(dedup(&f.repo).args(["gc", "--json"]));
    assert_eq!(r["orphan_packs"], 1, "{r}");
    assert!(!orphan.exists());
    assert!(
        !unfinished.exists(),
        "temporary files of interrupted writes are swept"
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_dedup"))
        .arg("--repo")
        .arg(&f.repo)
        .args(["get", &id])
        .output()
        .unwrap();
    assert_eq!(out.stdout, fs::read(&blob).unwrap(), "a blob is a gc root");
    restores_identically(&f, "latest", &f.src);
}

#[test]
fn repair_rebuilds_the_index_and_bloom_from_packs_and_records() {
    let f = fixture("zstd");
    let src2 = f.root.join("src2");
    make_tree(&src2, 23);
    ok(dedup(&f.repo).arg("ingest").arg(&src2));
    let snaps = json(dedup(&f.repo).args(["snapshots", "--json"]));
    let report_before = json(dedup(&f.repo).args(["report", "--json"]));
    // The cache and the segments all gone: only the packs and the
    // snapshot records are left to rebuild from.
    fs::remove_dir_all(cache_of(&f.repo)).unwrap();
    fs::remove_dir_all(f.repo.join("segments")).unwrap();
    let r = run(dedup(&f.repo).arg("snapshots"));
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("repair index"),
        "the error says what to do: {}",
        r.stderr
    );
    let r = ok(dedup(&f.repo).args(["repair", "index"]));
    assert!(r.stdout.contains("2 snapshots"), "{}", r.stdout);
    assert!(slot(&f.repo).join("bloom").exists());
    let report_after = json(dedup(&f.repo).args(["report", "--json"]));
    for k in [
        "unique_chunks",
        "unique_bytes",
        "stored_bytes",
        "logical_bytes",
    ] {
        assert_eq!(report_before[k], report_after[k], "{k}");
    }
    ok(dedup(&f.repo).args(["verify", "--read-data"]));
    restores_identically(&f, snaps[0]["id"].as_str().unwrap(), &f.src);
    restores_identically(&f, snaps[1]["id"].as_str().unwrap(), &src2);
}

#[test]
fn repair_salvages_a_pack_whose_trailer_is_damaged() {
    let f = fixture("none");
    let victim = packs(&f.repo).into_iter().next().unwrap();
    let mut bytes = fs::read(&victim).unwrap();
    let n = bytes.len();
    bytes[n - 20] ^= 0xff; // inside the trailer
    fs::write(&victim, bytes).unwrap();
    fs::remove_dir_all(cache_of(&f.repo)).unwrap();
    let r = run(dedup(&f.repo).args(["repair", "index"]));
    assert_eq!(r.code, 1, "salvage is reported: {}", r.stdout);
    assert!(r.stdout.contains("salvaged damaged pack"), "{}", r.stdout);
    // Every record was intact, so nothing is lost.
    ok(dedup(&f.repo).args(["verify"]));
    restores_identically(&f, "latest", &f.src);
}

#[test]
fn repair_keeps_the_intact_records_after_a_damaged_one_and_the_damaged_file() {
    let f = fixture("none");
    // A pack of several records whose first one is file data.
    let (victim, (mut bytes, entries)) = packs(&f.repo)
        .into_iter()
        .map(|p| {
            let read = records(&p);
            (p, read)
        })
        .find(|(_, (_, es))| es.len() > 2 && es[0].flags & flags::TREE == 0)
        .expect("a pack whose first record is data");
    let n = bytes.len();
    // The first record's data and the trailer are damaged; the rest is not.
    let first = entries[0].data_range();
    bytes[first.start as usize] ^= 0xff;
    bytes[n - 20] ^= 0xff;
    fs::write(&victim, bytes).unwrap();
    let r = run(dedup(&f.repo).args(["repair", "index"]));
    assert_eq!(r.code, 1, "salvage is reported: {}", r.stdout);
    let kept = format!("{} records kept", entries.len() - 1);
    assert!(r.stdout.contains(&kept), "{}", r.stdout);
    let mut damaged = victim.into_os_string();
    damaged.push(".damaged");
    assert!(Path::new(&damaged).exists(), "the damaged file is kept");
    // Only the damaged record's chunk is missing.
    let v = json_any(dedup(&f.repo).args(["verify", "--json"]), 1);
    let problems = v["problems"].as_array().unwrap();
    assert_eq!(problems.len(), 1, "{v}");
    assert_eq!(problems[0]["kind"], "missing-chunk", "{v}");
    // gc leaves the kept file alone.
    ok(dedup(&f.repo).arg("gc"));
    assert!(Path::new(&damaged).exists(), "gc removed the damaged file");
}

/// A pack file's bytes and the entries its trailer lists.
fn records(pack: &Path) -> (Vec<u8>, Vec<PackEntry>) {
    let bytes = fs::read(pack).unwrap();
    let n = bytes.len();
    let tail = trailer_len(&bytes[n - FOOTER_SIZE..], "t").unwrap();
    let entries = parse_trailer(&bytes[n - tail..], n as u64, "t").unwrap();
    (bytes, entries)
}

/// A flat folder of files whose chunks spread over every shard: its one
/// tree is new in each snapshot that changes a file.
fn flat_tree(dir: &Path, seed: u64) {
    fs::create_dir_all(dir).unwrap();
    for i in 0..12 {
        fs::write(dir.join(format!("f{i}")), random_bytes(seed + i, 200_000)).unwrap();
    }
}

#[test]
fn gc_after_a_repair_that_missed_a_shard_indexes_its_packs_again_instead_of_deleting_them() {
    // An index rebuilt while a shard was not there (an unmounted disk is
    // an empty folder) lacks that shard's packs. They hold live data, so
    // gc must index them again, not delete them as orphans.
    let tmp = tempfile::tempdir().unwrap();
    let (src, repo) = (tmp.path().join("src"), tmp.path().join("repo"));
    flat_tree(&src, 500);
    ok(dedup(&repo).args(["init", "--shards", "2"]));
    let first = snapshot_id(&ok(dedup(&repo).arg("ingest").arg(&src)).stdout);
    // New trees and chunks go to shard 00 only from here on.
    ok(dedup(&repo).args(["shard", "set-weight", "1", "0"]));
    fs::write(src.join("f0"), random_bytes(999, 200_000)).unwrap();
    ok(dedup(&repo).arg("ingest").arg(&src));
    ok(dedup(&repo).args(["forget", &first]));
    let shard = repo.join("shards/01");
    assert!(!packs_under(&shard).is_empty());
    let away = tmp.path().join("away");
    fs::rename(&shard, &away).unwrap();
    fs::create_dir(&shard).unwrap();
    let r = run(dedup(&repo).args(["repair", "index"]));
    assert!(r.code <= 1, "{}", r.stderr);
    fs::remove_dir(&shard).unwrap();
    fs::rename(&away, &shard).unwrap();

    let gc = json(dedup(&repo).args(["gc", "--json"]));
    assert!(gc["orphans_adopted"].as_u64().unwrap() > 0, "{gc}");
    assert!(
        !packs_under(&shard).is_empty(),
        "gc deleted the shard's packs"
    );
    ok(dedup(&repo).args(["verify", "--read-data"]));
    assert_restores(dedup(&repo), &src, &tmp.path().join("out"));
}

#[test]
fn a_repair_cut_short_leaves_the_index_as_it_was() {
    let f = fixture("zstd");
    let before = json(dedup(&f.repo).args(["report", "--json"]));
    // Shard 01 unreadable: the repair stops there, after indexing shard 00.
    let shard = f.repo.join("shards/01");
    let away = f.root.join("away");
    fs::rename(&shard, &away).unwrap();
    let r = run(dedup(&f.repo).args(["repair", "index"]));
    assert_eq!(r.code, 2, "{}", r.stdout);
    fs::rename(&away, &shard).unwrap();
    let after = json(dedup(&f.repo).args(["report", "--json"]));
    for k in ["unique_chunks", "stored_bytes", "packs", "snapshots"] {
        assert_eq!(before[k], after[k], "{k}");
    }
    let gc = json(dedup(&f.repo).args(["gc", "--json"]));
    assert_eq!(gc["orphan_packs"], 0, "{gc}");
    ok(dedup(&f.repo).args(["verify", "--read-data"]));
    restores_identically(&f, "latest", &f.src);
}

#[test]
fn repository_files_and_folders_are_their_owners_only() {
    use std::os::unix::fs::PermissionsExt;
    let f = fixture("zstd");
    let blob = f.root.join("blob");
    fs::write(&blob, b"blob").unwrap();
    ok(dedup(&f.repo).arg("put").arg(&blob));
    let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&f.repo), 0o700);
    let mut seen = 0;
    let mut stack = vec![f.repo.clone()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                assert_eq!(mode(&path), 0o700, "{}", path.display());
                stack.push(path);
            } else {
                assert_eq!(mode(&path), 0o600, "{}", path.display());
                seen += 1;
            }
        }
    }
    assert!(seen > 5, "only {seen} files checked");
    // The cache (paths in the file cache, the index) is its owner's too;
    // RocksDB's own files are inside the slot.
    for dir in [cache_of(&f.repo), slot(&f.repo)] {
        assert_eq!(mode(&dir), 0o700, "{}", dir.display());
    }
}

#[test]
fn repair_packs_drops_damaged_and_missing_objects_so_the_next_ingest_stores_them_again() {
    let tmp = tempfile::tempdir().unwrap();
    let (src, repo) = (tmp.path().join("src"), tmp.path().join("repo"));
    fs::create_dir(&src).unwrap();
    let marker = b"UNIQUE-MARKER-0123456789-".repeat(200);
    fs::write(src.join("victim.txt"), &marker).unwrap();
    flat_tree(&src.join("more"), 600);
    ok(dedup(&repo).args([
        "init",
        "--compression",
        "none",
        "--avg-size",
        "4KiB",
        "--pack-size",
        "64KiB",
    ]));
    let first = snapshot_id(&ok(dedup(&repo).arg("ingest").arg(&src)).stdout);
    flip_a_byte_of(&marker, &packs(&repo));
    // A whole pack lost too: one that holds file data only.
    let gone = packs(&repo)
        .into_iter()
        .find(|p| {
            let bytes = fs::read(p).unwrap();
            !bytes
                .windows(marker.len())
                .any(|w| w[..100] == marker[..100])
                && records(p).1.iter().all(|e| e.flags & flags::TREE == 0)
        })
        .expect("a data-only pack without the marker");
    fs::remove_file(&gone).unwrap();

    // Without the repair, an ingest deduplicates against what is broken
    // and the new snapshot is broken too.
    ok(dedup(&repo).arg("ingest").arg(&src));
    let r = run(dedup(&repo).arg("verify"));
    assert_eq!(r.code, 1, "{}", r.stdout);

    let r = run(dedup(&repo).args(["repair", "packs"]));
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("forgot missing pack"), "{}", r.stdout);
    assert!(r.stdout.contains("1 dropped"), "{}", r.stdout);
    let damaged = files_under(&repo.join("shards"), ".damaged").len();
    assert_eq!(damaged, 1, "the damaged pack is kept aside");

    // The file cache would reuse the dropped chunks: it is checked against
    // the index, so this ingest reads the files and stores them again.
    ok(dedup(&repo).arg("ingest").arg(&src));
    ok(dedup(&repo).args(["verify", "--read-data"]));
    let out = tmp.path().join("out");
    ok(dedup(&repo).args(["restore", &first]).arg(&out));
    assert_eq!(describe(&src), describe(&out));
    let again = run(dedup(&repo).args(["repair", "packs"]));
    assert_eq!(again.code, 0, "{}", again.stdout);
}

#[test]
fn maintenance_sweeps_what_crashed_writes_left_in_the_repository_folder_and_nothing_else() {
    let f = fixture("zstd");
    let ours = [
        f.repo.join("config.4242.0123456789abcdef.tmp"),
        f.repo.join("config.77.00ff.tmp"),
        f.repo
            .join("snapshots")
            .join(format!("{}.9.1a.tmp", "ab".repeat(32))),
    ];
    let foreign = [f.repo.join("notes.tmp"), f.repo.join("snapshots/x.tmp")];
    for p in ours.iter().chain(&foreign) {
        fs::write(p, "left over").unwrap();
    }
    // Not an ingest: beside other writers, their writes are in flight.
    ok(dedup(&f.repo).arg("ingest").arg(&f.src));
    for p in &ours {
        assert!(p.exists(), "{} is left to maintenance", p.display());
    }
    ok(dedup(&f.repo).arg("gc"));
    for p in &ours {
        assert!(!p.exists(), "{} is swept", p.display());
    }
    for p in &foreign {
        assert!(p.exists(), "{} is not ours to remove", p.display());
    }
}

#[test]
fn the_index_is_a_cache_of_the_segments_and_comes_back_when_deleted() {
    let f = fixture("zstd");
    let first = json(dedup(&f.repo).args(["snapshots", "--json"]))[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let first_src = f.root.join("first-src");
    assert!(std::process::Command::new("cp")
        .arg("-a")
        .arg(&f.src)
        .arg(&first_src)
        .status()
        .unwrap()
        .success());
    fs::write(f.src.join("added"), random_bytes(77, 300_000)).unwrap();
    ok(dedup(&f.repo).arg("ingest").arg(&f.src));
    ok(dedup(&f.repo).args(["forget", &first]));
    ok(dedup(&f.repo).arg("gc"));
    ok(dedup(&f.repo).arg("ingest").arg(&first_src));
    // The index is in the home: segments, and families once gc has
    // compacted (past 64 segments, which this fixture may or may not
    // reach).
    let segments = files_under(&f.repo.join("segments"), "").len();
    let families = count_named(&f.repo.join("index"), |n| !n.starts_with("manifest."));
    assert!(segments + families > 0);
    let before = json(dedup(&f.repo).args(["report", "--json"]));

    // The cache (index and filter) gone: the next command, a reader's,
    // makes it anew from the segments and families; nothing is read from
    // the packs.
    fs::remove_dir_all(cache_of(&f.repo)).unwrap();
    let after = json(dedup(&f.repo).args(["report", "--json"]));
    for key in [
        "snapshots",
        "unique_chunks",
        "tree_objects",
        "stored_bytes",
        "logical_bytes",
    ] {
        assert_eq!(after[key], before[key], "{key}");
    }
    ok(dedup(&f.repo).args(["verify", "--read-data"]));
    assert_restores(dedup(&f.repo), &first_src, &f.root.join("out"));
    let r = json(dedup(&f.repo).args(["gc", "--json"]));
    assert_eq!(
        r["bytes_freed"], 0,
        "the rebuilt index knows every pack: {r}"
    );
}

#[test]
fn a_repository_from_before_segments_gets_one_and_many_segments_compact_into_one() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("repo");
    let repo =
        dedup::Repository::init_with(&path, &dedup::InitOptions::default(), &private()).unwrap();
    let blobs: Vec<Vec<u8>> = (0..70).map(|i| random_bytes(300 + i, 5_000)).collect();
    let ids: Vec<_> = blobs.iter().map(|b| repo.put(b).unwrap()).collect();
    drop(repo);
    let segments = || files_under(&path.join("segments"), "").len();
    assert_eq!(
        segments(),
        70,
        "one a commit (init writes an empty manifest)"
    );

    // As written before segments, with the index in the home: the next
    // writer writes a full segment of that index, then removes it.
    let cache = tempfile::tempdir().unwrap();
    let opts = dedup::OpenOptions {
        cache_dir: Some(cache.path().to_path_buf()),
        ..Default::default()
    };
    drop(dedup::Repository::open_with(&path, &opts).unwrap());
    let id = fs::read_dir(cache.path()).unwrap().next().unwrap().unwrap();
    // Nor had it any families.
    fs::remove_dir_all(path.join("index")).unwrap();
    fs::rename(id.path().join("index"), path.join("index")).unwrap();
    fs::remove_dir_all(path.join("segments")).unwrap();
    fs::remove_dir_all(cache.path()).unwrap();
    let reader = dedup::OpenOptions {
        read_only: true,
        ..private()
    };
    let repo = dedup::Repository::open_with(&path, &reader).unwrap();
    assert_eq!(segments(), 1);
    assert!(!path.join("index").exists(), "the old index is gone");
    for (id, blob) in ids.iter().zip(&blobs) {
        assert_eq!(&repo.get(id).unwrap(), blob);
    }
    drop(repo);
    let repo = dedup::Repository::open_with(&path, &private()).unwrap();
    for (id, blob) in ids.iter().zip(&blobs) {
        assert_eq!(&repo.get(id).unwrap(), blob);
    }
    // gc compacts them into families, the full segment with them.
    for i in 0..70 {
        repo.put(&random_bytes(900 + i, 3_000)).unwrap();
    }
    assert_eq!(segments(), 71);
    let report = repo.gc(dedup::Mode::Apply, &dedup::Quiet).unwrap();
    assert_eq!(report.compacted.map(|c| c.segments), Some(71));
    assert_eq!(segments(), 0, "compacted");
    let manifests = || count_named(&path.join("index"), |n| n.starts_with("manifest."));
    assert_eq!(manifests(), 1);
    // Past 64 segments no manifest covers, gc compacts again.
    for i in 0..65 {
        repo.put(&random_bytes(2_000 + i, 3_000)).unwrap();
    }
    let report = repo.gc(dedup::Mode::Apply, &dedup::Quiet).unwrap();
    assert_eq!(
        report.compacted.map(|c| (c.epoch, c.segments)),
        Some((2, 65))
    );
    assert_eq!(segments(), 0);
    assert_eq!(manifests(), 1, "the older one is superseded");
    drop(repo);
    let repo = dedup::Repository::open_with(&path, &private()).unwrap();
    for (id, blob) in ids.iter().zip(&blobs) {
        assert_eq!(&repo.get(id).unwrap(), blob);
    }
    assert!(repo.verify(1.0, &dedup::Quiet).unwrap().is_clean());
}

#[test]
fn a_home_put_back_from_an_older_copy_wins_over_the_index_once_accepted() {
    let f = fixture("zstd");
    let first = json(dedup(&f.repo).args(["snapshots", "--json"]))[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let saved = f.root.join("saved");
    fs::create_dir(&saved).unwrap();
    for folder in ["segments", "snapshots"] {
        assert!(std::process::Command::new("cp")
            .arg("-a")
            .arg(f.repo.join(folder))
            .arg(&saved)
            .status()
            .unwrap()
            .success());
    }
    let later = f.root.join("later");
    make_tree(&later, 29);
    let newer = snapshot_id(&ok(dedup(&f.repo).arg("ingest").arg(&later)).stdout);
    // The home's durable part goes back to the older copy; the index (a
    // cache) is left as it was, ahead of it.
    for folder in ["segments", "snapshots"] {
        fs::remove_dir_all(f.repo.join(folder)).unwrap();
        assert!(std::process::Command::new("cp")
            .arg("-a")
            .arg(saved.join(folder))
            .arg(&f.repo)
            .status()
            .unwrap()
            .success());
    }
    // Named, and nothing deleted until a person says which history wins
    // (tests/history.rs puts the newer one back instead).
    let gc = run(dedup(&f.repo).arg("gc"));
    assert_eq!(gc.code, 2, "{}", gc.stderr);
    ok(dedup(&f.repo).args(["forget", &newer]));
    ok(dedup(&f.repo).args(["repair", "history"]));
    let r = json(dedup(&f.repo).args(["gc", "--json"]));
    assert!(
        r["orphan_packs"].as_u64().unwrap() > 0,
        "the later packs: {r}"
    );
    let snaps = json(dedup(&f.repo).args(["snapshots", "--json"]));
    assert_eq!(snaps.as_array().unwrap().len(), 1, "{snaps}");
    assert_eq!(snaps[0]["id"], first.as_str());
    ok(dedup(&f.repo).args(["verify", "--read-data"]));
    restores_identically(&f, &first, &f.src);
}

#[test]
fn a_damaged_root_folder_entry_is_named_as_the_snapshot_root() {
    let f = fixture("none");
    let snaps = json(dedup(&f.repo).args(["snapshots", "--json"]));
    let record = &snaps[0]["record"];
    let root = record["root"]
        .as_str()
        .expect("one folder ingested has a root entry");
    assert_ne!(root, record["tree"].as_str().unwrap());
    let needle = dedup(&f.repo).args(["get", root]).output().unwrap().stdout;
    assert!(!needle.is_empty());
    let mut hit = false;
    for pack in packs(&f.repo) {
        let mut bytes = fs::read(&pack).unwrap();
        if let Some(pos) = bytes
            .windows(needle.len())
            .position(|w| w == needle.as_slice())
        {
            bytes[pos + needle.len() - 1] ^= 1;
            fs::write(&pack, bytes).unwrap();
            hit = true;
        }
    }
    assert!(hit, "the root entry's bytes are in a pack");
    let r = run(dedup(&f.repo).args(["verify", "--read-data"]));
    assert_eq!(r.code, 1, "{}", r.stdout);
    let short = &snaps[0]["id"].as_str().unwrap()[..12];
    assert!(r.stdout.contains(root), "{}", r.stdout);
    assert!(
        r.stdout.contains(&format!("breaks {short}:./")),
        "{}",
        r.stdout
    );
}

/// The chunk entries the cache at `cache` holds of the repository at
/// `repo` (its first slot's RocksDB index).
fn cached_entries(repo: &Path, cache: &Path) -> u64 {
    let config: serde_json::Value =
        serde_json::from_slice(&fs::read(repo.join("config")).unwrap()).unwrap();
    let id = config["repository_id"].as_str().unwrap();
    let path = cache.join(id).join("index");
    let index = dedup::catalog::Index::open(&path, dedup::catalog::Access::ReadWrite).unwrap();
    let mut n = 0;
    index.for_each_chunk_id(|_| n += 1).unwrap();
    n
}

#[test]
fn a_new_machine_holds_no_copy_of_the_families_yet_stores_nothing_again_and_restores_all() {
    let f = fixture("zstd");
    ok(dedup(&f.repo).arg("compact"));
    let machine = |name: &str| f.root.join(name);
    // A new machine opens: its cache holds none of the families' entries,
    // only their summary, read from the home when needed.
    ok(dedup(&f.repo)
        .env("DEDUP_CACHE", machine("a"))
        .arg("snapshots"));
    assert_eq!(cached_entries(&f.repo, &machine("a")), 0);
    assert!(
        cached_entries(&f.repo, &cache_of(&f.repo)) > 0,
        "the writer's own"
    );
    // The same data ingested again by it stores nothing new.
    let again = ok(dedup(&f.repo)
        .env("DEDUP_CACHE", machine("a"))
        .args(["ingest", "--json"])
        .arg(&f.src));
    let again: serde_json::Value = serde_json::from_str(&again.stdout).unwrap();
    let summary = &again["record"]["summary"];
    assert!(summary["total_chunks"].as_u64().unwrap() > 10, "{summary}");
    assert_eq!(summary["new_chunks"], 0, "{summary}");
    // It read the families' summaries and blocks, and says so.
    let reads = &again["index"];
    assert!(reads["gets"].as_u64().unwrap() > 0, "{again}");
    assert!(reads["bytes_fetched"].as_u64().unwrap() > 0, "{again}");
    // Another restores and verifies everything through the families.
    let out = f.root.join("out-new-machine");
    let restored = ok(dedup(&f.repo)
        .env("DEDUP_CACHE", machine("b"))
        .args(["restore", "--json", "latest"])
        .arg(&out));
    assert_eq!(describe(&f.src), describe(&out));
    let restored: serde_json::Value = serde_json::from_str(&restored.stdout).unwrap();
    assert!(
        restored["index"]["gets"].as_u64().unwrap() > 0,
        "{restored}"
    );
    ok(dedup(&f.repo)
        .env("DEDUP_CACHE", machine("c"))
        .args(["verify", "--read-data"]));
    assert_eq!(cached_entries(&f.repo, &machine("c")), 0);
}
