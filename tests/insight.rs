//! Reports people read, end to end through the command line: what each
//! snapshot costs and would free (checked against what `gc` then drops),
//! where a snapshot's bytes went folder by folder, why a file dedups as
//! it does, the chunker advisor (checked against real ingests), and the
//! HTML page (rendered in headless Chromium where it is installed).

mod common;

use std::fs;
use std::path::Path;

use common::*;
use serde_json::Value;

/// Seeded random content: no chunk of one seed's file is in another's.
fn write(path: &Path, seed: u64, len: usize) -> Vec<u8> {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    let bytes = random_bytes(seed, len);
    fs::write(path, &bytes).unwrap();
    bytes
}

fn ingest(repo: &Path, dir: &Path) -> String {
    json(dedup(repo).args(["ingest", "--json"]).arg(dir))["id"]
        .as_str()
        .unwrap()
        .to_string()
}

/// `snapshots --sizes --json`'s cost of each snapshot, by id.
fn costs(repo: &Path) -> Vec<(String, Value)> {
    json(dedup(repo).args(["snapshots", "--sizes", "--json"]))
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["id"].as_str().unwrap().to_string(), s["cost"].clone()))
        .collect()
}

fn num(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("{v} is not a count"))
}

#[test]
fn exclusive_bytes_are_what_forget_and_gc_then_drop() {
    let tmp = tempfile::tempdir().unwrap();
    let (src, repo) = (tmp.path().join("src"), tmp.path().join("repo"));
    write(&src.join("base/a.bin"), 1, 300_000);
    write(&src.join("base/b.bin"), 2, 200_000);
    ok(dedup(&repo).arg("init"));
    let first = ingest(&repo, &src);
    // Unchanged: a second snapshot holds exactly what the first does.
    let twin = ingest(&repo, &src);
    write(&src.join("new/c.bin"), 3, 500_000);
    let third = ingest(&repo, &src);
    let all = costs(&repo);
    assert_eq!(
        all.iter().map(|c| c.0.clone()).collect::<Vec<_>>(),
        [first.clone(), twin.clone(), third.clone()]
    );
    // The twins share everything: forgetting either frees nothing.
    for (_, c) in &all[..2] {
        assert_eq!(num(&c["exclusive_objects"]), 0, "{c}");
        assert_eq!(num(&c["exclusive_stored_bytes"]), 0, "{c}");
    }
    let c = &all[2].1;
    // The third alone holds c.bin's 500 kB (random: no chunk shared) and
    // the trees on the way to it.
    assert!(holds_alone(c, 500_000), "{c}");
    assert!(num(&c["exclusive_stored_bytes"]) >= 500_000, "{c}");
    assert!(num(&c["added_bytes"]) >= 500_000, "{c}");
    assert_eq!(num(&c["logical_bytes"]), 1_000_000);
    // What forget + gc drops is what the report said the snapshot held alone.
    ok(dedup(&repo).args(["forget", &third]));
    let gc = json(dedup(&repo).args(["gc", "--json"]));
    assert_eq!(gc["objects_removed"], c["exclusive_objects"], "{gc}");
    // With its twin gone, the first holds everything alone.
    ok(dedup(&repo).args(["forget", &twin]));
    let left = costs(&repo);
    assert_eq!(left.len(), 1);
    let alone = &left[0].1;
    assert!(holds_alone(alone, 500_000), "{alone}");
    let gc = json(dedup(&repo).args(["gc", "--json"]));
    assert_eq!(
        gc["objects_removed"], 0,
        "the twin held nothing alone: {gc}"
    );
    // The repository report's JSON carries the same figures.
    let report = json(dedup(&repo).args(["report", "--json"]));
    assert_eq!(report["snapshot_costs"][0], *alone);
    // And the table shows the column.
    let table = ok(dedup(&repo).args(["snapshots", "--sizes"])).stdout;
    assert!(table.contains("exclusive"), "{table}");
}

/// Whether `cost` holds `data` bytes of file data alone, and trees
/// (listings of a few hundred bytes each) besides.
fn holds_alone(cost: &Value, data: u64) -> bool {
    let bytes = num(&cost["exclusive_bytes"]);
    bytes >= data && bytes < data + 10_000
}

#[test]
fn by_dir_splits_a_snapshot_into_unique_and_shared_bytes_per_folder() {
    let tmp = tempfile::tempdir().unwrap();
    let (src, repo) = (tmp.path().join("src"), tmp.path().join("repo"));
    ok(dedup(&repo).arg("init"));
    // `old/` is in the first snapshot too; `a/` and `b/` share one file.
    write(&src.join("old/kept.bin"), 10, 400_000);
    ingest(&repo, &src);
    write(&src.join("a/mine.bin"), 11, 300_000);
    let shared = write(&src.join("a/shared.bin"), 12, 200_000);
    fs::create_dir_all(src.join("b/deeper")).unwrap();
    fs::write(src.join("b/deeper/shared-copy.bin"), &shared).unwrap();
    write(&src.join("b/own.bin"), 13, 100_000);
    let id = ingest(&repo, &src);
    let report = json(dedup(&repo).args(["report", &id, "--by-dir", "--depth", "1", "--json"]));
    assert_eq!(report["depth"], 1);
    let rows = report["folders"].as_array().unwrap();
    let row = |path: &str| {
        rows.iter()
            .find(|r| r["path"] == path)
            .unwrap_or_else(|| panic!("no {path} in {rows:?}"))
            .clone()
    };
    // Depth 1: the root and its three folders, not b/deeper.
    assert_eq!(rows.len(), 4, "{rows:?}");
    let a = row("/a");
    assert_eq!(num(&a["logical_bytes"]), 500_000);
    assert_eq!(num(&a["distinct_bytes"]), 500_000);
    assert_eq!(num(&a["unique_bytes"]), 300_000);
    assert_eq!(num(&a["shared_in_snapshot"]), 200_000);
    assert_eq!(num(&a["shared_with_snapshots"]), 0);
    let b = row("/b");
    assert_eq!(num(&b["files"]), 2);
    assert_eq!(num(&b["unique_bytes"]), 100_000);
    assert_eq!(num(&b["shared_in_snapshot"]), 200_000);
    let old = row("/old");
    assert_eq!(num(&old["unique_bytes"]), 0);
    assert_eq!(num(&old["shared_with_snapshots"]), 400_000);
    assert_eq!(num(&old["unique_stored_bytes"]), 0);
    let root = row("/");
    assert_eq!(num(&root["logical_bytes"]), 1_200_000);
    assert_eq!(num(&root["distinct_bytes"]), 1_000_000);
    // Within the whole snapshot the shared file is held twice but by no
    // one else: unique to the root.
    assert_eq!(num(&root["unique_bytes"]), 600_000);
    // Costliest first: the root, then a/ (300 kB alone), then b/, then old/.
    let order: Vec<&str> = rows.iter().map(|r| r["path"].as_str().unwrap()).collect();
    assert_eq!(order, ["/", "/a", "/b", "/old"]);
    for r in rows {
        assert!(num(&r["stored_bytes"]) >= num(&r["unique_stored_bytes"]));
    }
    // The table for people.
    let table = ok(dedup(&repo).args(["report", "latest", "--by-dir"])).stdout;
    assert!(table.contains("/b/deeper"), "{table}");
    // --by-dir needs a snapshot.
    let r = run(dedup(&repo).args(["report", "--by-dir"]));
    assert_eq!(r.code, 2, "{}", r.stderr);
}

#[test]
fn explain_tells_new_reused_and_identical_chunks_apart() {
    let tmp = tempfile::tempdir().unwrap();
    let (src, repo) = (tmp.path().join("src"), tmp.path().join("repo"));
    ok(dedup(&repo).args(["init", "--avg-size", "16K"]));
    let mut doc = write(&src.join("doc.bin"), 20, 400_000);
    write(&src.join("lone.bin"), 21, 100_000);
    let first = ingest(&repo, &src);
    // A change in the middle: most chunks stay.
    for b in &mut doc[200_000..200_100] {
        *b ^= 0xff;
    }
    fs::write(src.join("doc.bin"), &doc).unwrap();
    fs::write(
        src.join("copy-of-lone.bin"),
        fs::read(src.join("lone.bin")).unwrap(),
    )
    .unwrap();
    write(&src.join("fresh.bin"), 22, 150_000);
    let second = ingest(&repo, &src);

    let e = json(dedup(&repo).args(["explain", &format!("{second}:doc.bin"), "--json"]));
    assert_eq!(e["path"], "/doc.bin");
    assert_eq!(num(&e["size"]), 400_000);
    let (new, reused) = (num(&e["new_bytes"]), num(&e["reused_bytes"]));
    assert_eq!(new + reused + num(&e["repeated_bytes"]), 400_000);
    assert!(reused > 300_000 && new > 0 && new < 100_000, "{e}");
    assert_eq!(e["previous"]["snapshot"], first.as_str());
    assert_eq!(e["previous"]["path"], "/doc.bin");
    let share = e["previous"]["share"].as_f64().unwrap();
    assert!((share - reused as f64 / 400_000.0).abs() < 1e-9, "{e}");
    let verdict = e["verdict"].as_str().unwrap();
    assert!(
        verdict.starts_with("shares ") && verdict.contains("with the previous version"),
        "{verdict}"
    );
    let chunks = e["chunks"].as_array().unwrap();
    let mut offset = 0;
    for c in chunks {
        assert_eq!(num(&c["offset"]), offset);
        offset += num(&c["length"]);
        match c["status"].as_str().unwrap() {
            "reused" => {
                assert_eq!(c["first_snapshot"], first.as_str());
                assert!(c["holders"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|h| h["snapshot"] == first.as_str() && h["path"] == "/doc.bin"));
            }
            "new" => assert_eq!(c["first_snapshot"], second.as_str()),
            other => panic!("status {other}"),
        }
    }
    assert_eq!(offset, 400_000);

    // A copy of a file the first snapshot had.
    let e = json(dedup(&repo).args(["explain", &format!("{second}:copy-of-lone.bin"), "--json"]));
    assert!(
        e["verdict"].as_str().unwrap().starts_with("identical to"),
        "{e}"
    );
    assert_eq!(num(&e["reused_bytes"]), 100_000);
    assert!(e["similar"][0]["identical"].as_bool().unwrap());
    // Nothing like it anywhere.
    let e = json(dedup(&repo).args(["explain", &format!("{second}:fresh.bin"), "--json"]));
    assert_eq!(
        e["verdict"].as_str().unwrap().split(';').next().unwrap(),
        "no chunk in common with any other file"
    );
    assert_eq!(num(&e["new_bytes"]), 150_000);
    // The text for people names the verdict and the runs of chunks.
    let text = ok(dedup(&repo).args(["explain", "latest:doc.bin"])).stdout;
    assert!(
        text.contains("why:") && text.contains("reused") && text.contains("new"),
        "{text}"
    );
    // A folder, a missing path, no path: one-line errors.
    for target in ["latest:/", "latest:nope.bin", "latest"] {
        let r = run(dedup(&repo).args(["explain", target]));
        assert_eq!(r.code, 2, "{target}: {}", r.stdout);
        assert_eq!(r.stderr.trim().lines().count(), 1, "{target}: {}", r.stderr);
    }
}

#[test]
fn estimate_agrees_with_what_ingest_stores() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    make_tree(&src, 30);
    // Versions of one file: an insertion near the front (FastCDC finds the
    // old chunks again, fixed-size chunking does not), copies, and a file
    // larger than estimate's read block.
    let base = write(&src.join("v/1.bin"), 31, 3_000_000);
    let mut v2 = base[..1000].to_vec();
    v2.extend_from_slice(b"an insertion");
    v2.extend_from_slice(&base[1000..]);
    fs::write(src.join("v/2.bin"), &v2).unwrap();
    fs::write(src.join("v/3.bin"), &base).unwrap();
    let mut big = random_bytes(32, 9 << 20);
    big.extend_from_slice(&base);
    fs::write(src.join("big.bin"), &big).unwrap();
    fs::write(src.join("text.txt"), "compressible text. ".repeat(20_000)).unwrap();

    let scratch = tmp.path().join("unused");
    let est = json(
        dedup(&scratch)
            .args(["estimate", "--json"])
            .arg(&src)
            .args(["--chunkers", "fastcdc:16K,64K", "fixed:4K"]),
    );
    assert!(!scratch.exists(), "estimate writes nothing");
    let configs = est["configurations"].as_array().unwrap();
    let labels: Vec<&str> = configs
        .iter()
        .map(|c| c["label"].as_str().unwrap())
        .collect();
    assert_eq!(labels, ["fastcdc:16K", "fastcdc:64K", "fixed:4K"]);
    assert!(labels.contains(&est["recommended"].as_str().unwrap()));
    assert!(!est["reason"].as_str().unwrap().is_empty());
    let logical = num(&est["logical_bytes"]);
    let init_args: [&[&str]; 3] = [
        &["--avg-size", "16K"],
        &["--avg-size", "64K"],
        &["--chunker", "fixed", "--size", "4K"],
    ];
    for (c, args) in configs.iter().zip(init_args) {
        let repo = tmp.path().join(format!(
            "repo-{}",
            c["label"].as_str().unwrap().replace(':', "-")
        ));
        ok(dedup(&repo).arg("init").args(args));
        ok(dedup(&repo).arg("ingest").arg(&src));
        let report = json(dedup(&repo).args(["report", "--json"]));
        assert_eq!(num(&report["logical_bytes"]), logical);
        let (est_ratio, real) = (
            c["dedup_ratio"].as_f64().unwrap(),
            report["dedup_ratio"].as_f64().unwrap(),
        );
        assert!(
            (est_ratio / real - 1.0).abs() < 0.01,
            "{}: estimated {est_ratio}, stored {real}",
            c["label"]
        );
        assert_eq!(
            c["unique_chunks"], report["unique_chunks"],
            "{}",
            c["label"]
        );
        // Stored bytes: data compressed as a sample is, trees as ingest
        // writes them: close, not exact.
        let (est_stored, stored) = (
            num(&c["stored_bytes"]) as f64,
            num(&report["stored_bytes"]) as f64,
        );
        assert!(
            (est_stored / stored - 1.0).abs() < 0.05,
            "{}: {est_stored} vs {stored}",
            c["label"]
        );
        assert!(num(&c["index_bytes"]) > 0 && num(&c["bloom_bytes"]) > 0);
    }
    // The insertion: FastCDC dedups the versions, fixed 4K chunks cannot.
    assert!(
        configs[0]["dedup_ratio"].as_f64().unwrap() > configs[2]["dedup_ratio"].as_f64().unwrap()
    );
    // The table for people, and bad input.
    let text = ok(dedup(&scratch).arg("estimate").arg(&src)).stdout;
    assert!(text.contains("recommended: "), "{text}");
    assert!(
        text.contains("fastcdc:128K") && text.contains("fixed:64K"),
        "{text}"
    );
    let r = run(dedup(&scratch)
        .arg("estimate")
        .arg(&src)
        .args(["--chunkers", "rabin:8K"]));
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("rabin"), "{}", r.stderr);
    let r = run(dedup(&scratch)
        .arg("estimate")
        .arg(tmp.path().join("missing")));
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("missing"), "{}", r.stderr);
}

/// The ids of the page's charts.
const CHARTS: [&str; 6] = [
    "ratio-chart",
    "costs-chart",
    "treemap",
    "chunk-histogram",
    "shard-chart",
    "bloom-chart",
];

/// A repository with a few snapshots of a changing tree, for the page.
fn repository_with_history(tmp: &Path) -> std::path::PathBuf {
    let (src, repo) = (tmp.join("src"), tmp.join("repo"));
    make_tree(&src, 40);
    write(&src.join("media/film.bin"), 41, 2_000_000);
    write(&src.join("docs/notes.bin"), 42, 300_000);
    ok(dedup(&repo).args(["init", "--shards", "3"]));
    ingest(&repo, &src);
    write(&src.join("docs/more.bin"), 43, 500_000);
    ingest(&repo, &src);
    fs::write(
        src.join("docs/copy.bin"),
        fs::read(src.join("media/film.bin")).unwrap(),
    )
    .unwrap();
    ingest(&repo, &src);
    repo
}

#[test]
fn the_html_report_is_one_self_contained_page_with_every_chart() {
    let tmp = tempfile::tempdir().unwrap();
    let repo = repository_with_history(tmp.path());
    let page = tmp.path().join("report.html");
    ok(dedup(&repo).args(["report", "--html"]).arg(&page));
    let html = fs::read_to_string(&page).unwrap();
    for id in CHARTS {
        let at = html
            .find(&format!("<section id=\"{id}\""))
            .unwrap_or_else(|| panic!("no {id}"));
        let section = &html[at..];
        let end = section.find("</section>").unwrap();
        assert!(section[..end].contains("<svg"), "{id} has no chart");
    }
    // Self-contained: nothing fetched.
    for outside in [
        "http://",
        "https://",
        "<script src",
        "<link",
        "@import",
        "url(",
    ] {
        let hits: Vec<_> = html.match_indices(outside).collect();
        // The SVG namespace is a name, not a fetch.
        let real = hits
            .iter()
            .filter(|(i, _)| !html[*i..].starts_with("http://www.w3.org/"))
            .count();
        assert_eq!(real, 0, "the page refers to {outside}");
    }
    let report = json(dedup(&repo).args(["report", "--json"]));
    assert!(html.contains(&format!(
        "id=\"dedup-ratio\">{:.2}x<",
        report["dedup_ratio"].as_f64().unwrap()
    )));
    assert!(html.contains("id=\"snapshots\">3<"));
    // Without the repository's snapshots, the page still says so.
    let empty = tmp.path().join("empty");
    ok(dedup(&empty).arg("init"));
    ok(dedup(&empty)
        .args(["report", "--html"])
        .arg(tmp.path().join("empty.html")));
    assert!(fs::read_to_string(tmp.path().join("empty.html"))
        .unwrap()
        .contains("no snapshots"));
    // A folder that is not there is a one-line error.
    let r = run(dedup(&repo)
        .args(["report", "--html"])
        .arg(tmp.path().join("no/such/dir/r.html")));
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("no/such/dir/r.html"), "{}", r.stderr);
}

/// Debian's Chromium, if installed.
fn chromium() -> Option<std::path::PathBuf> {
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .map(|name| std::process::Command::new("which").arg(name).output())
        .filter_map(Result::ok)
        .find(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().into())
}

fn headless(browser: &Path) -> std::process::Command {
    let mut cmd = std::process::Command::new(browser);
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--hide-scrollbars",
        "--no-first-run",
        "--disable-dev-shm-usage",
    ]);
    cmd
}

#[test]
fn the_html_report_renders_in_a_real_browser() {
    let Some(browser) = chromium() else {
        eprintln!(
            "SKIPPED: chromium is not installed (scripts/test.sh installs Debian's chromium)"
        );
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let repo = repository_with_history(tmp.path());
    let page = tmp.path().join("report.html");
    ok(dedup(&repo).args(["report", "--html"]).arg(&page));
    let url = format!("file://{}", page.display());
    let profile = tmp.path().join("profile");
    // The DOM as the browser built it: every chart is there, drawn.
    let dom = ok(headless(&browser)
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg("--dump-dom")
        .arg(&url))
    .stdout;
    for id in CHARTS {
        let at = dom
            .find(&format!("id=\"{id}\""))
            .unwrap_or_else(|| panic!("no {id} in the DOM"));
        let section = &dom[at..at + dom[at..].find("</section>").unwrap()];
        assert!(
            section.contains("<svg")
                && (section.contains("<rect") || section.contains("<polyline")),
            "{id} is empty"
        );
    }
    let report = json(dedup(&repo).args(["report", "--json"]));
    assert!(
        dom.contains(&format!("{:.2}x", report["dedup_ratio"].as_f64().unwrap())),
        "no dedup ratio"
    );
    // The treemap names the folders.
    assert!(
        dom.contains("/media") && dom.contains("/docs"),
        "treemap without folder names"
    );
    // A screenshot: not blank, many colours.
    let shot = tmp.path().join("shot.png");
    ok(headless(&browser)
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("--screenshot={}", shot.display()))
        .arg("--window-size=1000,2600")
        .arg(&url));
    let decoder = png::Decoder::new(fs::File::open(&shot).unwrap());
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    let px = info.color_type.samples();
    let colours: std::collections::HashSet<&[u8]> = buf[..info.buffer_size()]
        .chunks(px)
        .map(|p| &p[..3.min(px)])
        .collect();
    assert!(
        colours.len() > 50,
        "the screenshot has {} colours",
        colours.len()
    );
    if let Ok(dir) = std::env::var("DEDUP_SCREENSHOT_DIR") {
        fs::copy(&shot, Path::new(&dir).join("report.png")).unwrap();
    }
}
