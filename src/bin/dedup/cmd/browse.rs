//! `dedup ls` and `dedup cat`: looking inside a snapshot without
//! restoring it (`SNAPSHOT:PATH`, see `dedup::ops::browse`).

use std::collections::BTreeMap;
use std::io::Write;

use dedup::format::snapshot::{Entry, EntryKind};
use dedup::ops::browse::{components, escape_name, Change, Difference, FindMemo, Found};
use dedup::units::human_bytes;
use dedup::{Repository, SnapshotRecord};
use serde::Serialize;

use crate::context::{show, Code, Context};

/// `SNAPSHOT:PATH` split at its first colon (snapshot ids and `latest`
/// have none); the path is empty (the root) without one.
pub fn split_target(target: &str) -> (&str, &str) {
    target.split_once(':').unwrap_or((target, ""))
}

/// One entry of `ls --json`.
#[derive(Serialize)]
struct Listed {
    path: String,
    #[serde(rename = "type")]
    kind: &'static str,
    mode: u32,
    size: u64,
    /// RFC 3339, UTC (times before 1970 show as 1970; `mtime_s` is exact).
    mtime: String,
    mtime_s: i64,
    mtime_ns: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    target: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    chunks: Option<usize>,
    /// Device number, for devices.
    #[serde(skip_serializing_if = "Option::is_none")]
    rdev: Option<u64>,
    /// Owner (absent in trees from before owners were kept).
    #[serde(skip_serializing_if = "Option::is_none")]
    uid: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    gid: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    user: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    group: Option<String>,
    /// Names of the extended attributes.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    xattrs: Vec<String>,
    /// A file with other links (the same inode under other names).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    hardlink: bool,
}

impl Listed {
    fn of(path: String, e: &Entry) -> Self {
        let (kind, size, target, chunks) = match &e.kind {
            EntryKind::File { size, chunks } => ("file", *size, None, Some(chunks.len())),
            EntryKind::Dir { .. } => ("dir", 0, None, None),
            EntryKind::Symlink { target } => (
                "symlink",
                target.len() as u64,
                Some(escape_name(target)),
                None,
            ),
            EntryKind::Fifo => ("fifo", 0, None, None),
            EntryKind::CharDevice { .. } => ("chardev", 0, None, None),
            EntryKind::BlockDevice { .. } => ("blockdev", 0, None, None),
        };
        let rdev = match e.kind {
            EntryKind::CharDevice { rdev } | EntryKind::BlockDevice { rdev } => Some(rdev),
            _ => None,
        };
        let owner = e.attrs.owner.as_ref();
        let mtime = std::time::UNIX_EPOCH
            .checked_add(std::time::Duration::new(
                e.mtime_s.max(0).unsigned_abs(),
                e.mtime_ns,
            ))
            .map(|t| humantime::format_rfc3339_nanos(t).to_string())
            .unwrap_or_default();
        Listed {
            path,
            kind,
            mode: e.mode,
            size,
            mtime,
            mtime_s: e.mtime_s,
            mtime_ns: e.mtime_ns,
            target,
            chunks,
            rdev,
            uid: owner.map(|o| o.uid),
            gid: owner.map(|o| o.gid),
            user: owner.map(|o| o.user.clone()).filter(|u| !u.is_empty()),
            group: owner.map(|o| o.group.clone()).filter(|g| !g.is_empty()),
            xattrs: e.attrs.xattrs.iter().map(|(n, _)| escape_name(n)).collect(),
            hardlink: e.attrs.link != 0,
        }
    }

    /// `ls -l`'s line: type and permissions, size, time, path.
    fn line(&self) -> String {
        let kind = match self.kind {
            "dir" => 'd',
            "symlink" => 'l',
            "fifo" => 'p',
            "chardev" => 'c',
            "blockdev" => 'b',
            _ => '-',
        };
        let bit = |mask: u32, c: char| if self.mode & mask != 0 { c } else { '-' };
        let special = |exec: u32, special: u32, on: char, off_exec: char| match (
            self.mode & exec != 0,
            self.mode & special != 0,
        ) {
            (true, true) => on,
            (false, true) => off_exec,
            (true, false) => 'x',
            (false, false) => '-',
        };
        let perms: String = [
            bit(0o400, 'r'),
            bit(0o200, 'w'),
            special(0o100, 0o4000, 's', 'S'),
            bit(0o040, 'r'),
            bit(0o020, 'w'),
            special(0o010, 0o2000, 's', 'S'),
            bit(0o004, 'r'),
            bit(0o002, 'w'),
            special(0o001, 0o1000, 't', 'T'),
        ]
        .iter()
        .collect();
        let time = self
            .mtime
            .get(..19)
            .unwrap_or(&self.mtime)
            .replace('T', " ");
        let name = |name: &Option<String>, id: Option<u32>| {
            name.clone()
                .or_else(|| id.map(|i| i.to_string()))
                .unwrap_or_else(|| "?".into())
        };
        let (user, group) = (name(&self.user, self.uid), name(&self.group, self.gid));
        let mut line = format!(
            "{kind}{perms} {user:<8} {group:<8} {:>12} {time} {}",
            self.size, self.path
        );
        if let Some(target) = &self.target {
            line.push_str(" -> ");
            line.push_str(target);
        }
        line
    }
}

/// `dedup ls SNAPSHOT[:PATH]`.
pub fn ls(cx: &Context, target: &str, long: bool, recursive: bool, json: bool) -> Code {
    let repo = cx.reader()?;
    let (snapshot, path) = split_target(target);
    let (id, record) = cx.resolve(&repo, snapshot)?;
    let found = repo.lookup(&id, &record.tree, path)?;
    let base = format!("/{}", components(path)?.join("/"));
    let mut listed = Vec::new();
    match (&found, found.tree()) {
        (_, Some(tree)) => list(&repo, tree, &base, recursive, &mut |l| {
            listed.push(l);
        })?,
        (Found::Entry(entry), None) => listed.push(Listed::of(base, entry)),
        (Found::Root(_), None) => unreachable!("the root is a folder"),
    }
    show(&Entries { listed, long }, json)?;
    Ok(0)
}

/// What `ls` prints: paths, or with `long` a line per entry.
#[derive(Serialize)]
#[serde(transparent)]
struct Entries {
    listed: Vec<Listed>,
    #[serde(skip)]
    long: bool,
}

impl std::fmt::Display for Entries {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for l in &self.listed {
            if self.long {
                writeln!(f, "{}", l.line())?;
            } else {
                writeln!(f, "{}", l.path)?;
            }
        }
        Ok(())
    }
}

/// The entries of folder `tree` (at `base`), and with `recursive` all
/// below them, each folder followed by what it holds.
fn list(
    repo: &Repository,
    tree: dedup::ChunkId,
    base: &str,
    recursive: bool,
    emit: &mut dyn FnMut(Listed),
) -> anyhow::Result<()> {
    let base = base.trim_end_matches('/');
    for entry in repo.read_tree(&tree)?.entries {
        let path = format!("{base}/{}", escape_name(&entry.name));
        let sub = match &entry.kind {
            EntryKind::Dir { tree } if recursive => Some(*tree),
            _ => None,
        };
        emit(Listed::of(path.clone(), &entry));
        if let Some(sub) = sub {
            list(repo, sub, &path, true, emit)?;
        }
    }
    Ok(())
}

/// `dedup cat SNAPSHOT:PATH`.
pub fn cat(cx: &Context, target: &str) -> Code {
    let repo = cx.reader()?;
    let (snapshot, path) = split_target(target);
    let (id, record) = cx.resolve(&repo, snapshot)?;
    match repo.lookup(&id, &record.tree, path)? {
        Found::Entry(entry) if matches!(entry.kind, EntryKind::File { .. }) => {
            let mut out = std::io::stdout().lock();
            repo.write_file(&entry, &mut out)?;
            out.flush()?;
            Ok(0)
        }
        _ => anyhow::bail!("{target} is not a file (`dedup ls {target}` lists a folder)"),
    }
}

/// One path `find` found.
#[derive(Serialize)]
struct FoundPath {
    #[serde(flatten)]
    entry: Listed,
    /// The snapshots that hold the path, oldest first.
    snapshots: Vec<String>,
}

/// What `find` prints: each path once, with the snapshots holding it.
#[derive(Serialize)]
#[serde(transparent)]
struct FoundPaths(Vec<FoundPath>);

impl std::fmt::Display for FoundPaths {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for found in &self.0 {
            let short: Vec<&str> = found.snapshots.iter().map(|s| &s[..16]).collect();
            let count = match short.len() {
                1 => "1 snapshot".to_string(),
                n => format!("{n} snapshots"),
            };
            writeln!(f, "{}  ({count}: {})", found.entry.path, short.join(" "))?;
        }
        Ok(())
    }
}

/// `dedup find PATTERN [--snapshot S]...`.
pub fn find(cx: &Context, pattern: &str, snapshots: &[String], json: bool) -> Code {
    let glob =
        glob::Pattern::new(pattern).map_err(|e| anyhow::anyhow!("bad pattern {pattern:?}: {e}"))?;
    let repo = cx.reader()?;
    let chosen = if snapshots.is_empty() {
        repo.snapshots_matching(&cx.filter)?
    } else {
        let resolve = |s: &String| cx.resolve(&repo, s);
        snapshots
            .iter()
            .map(resolve)
            .collect::<dedup::Result<Vec<_>>>()?
    };
    let mut memo = FindMemo::default();
    // Each path with the entry last seen there and the snapshots holding it.
    let mut found: BTreeMap<String, (Entry, Vec<String>)> = BTreeMap::new();
    for (id, record) in &chosen {
        for m in repo.find(&record.tree, &glob, &mut memo)? {
            let held = found
                .entry(m.path)
                .or_insert_with(|| (m.entry.clone(), Vec::new()));
            held.0 = m.entry;
            held.1.push(id.to_hex());
        }
    }
    let all = found
        .into_iter()
        .map(|(path, (entry, snapshots))| FoundPath {
            entry: Listed::of(path, &entry),
            snapshots,
        });
    show(&FoundPaths(all.collect()), json)?;
    Ok(0)
}

/// One path of `diff --json`.
#[derive(Serialize)]
struct Changed {
    path: String,
    change: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    before: Option<Listed>,
    #[serde(skip_serializing_if = "Option::is_none")]
    after: Option<Listed>,
}

/// What `diff` found.
#[derive(Serialize)]
struct DiffReport {
    changes: Vec<Changed>,
    added: usize,
    removed: usize,
    changed: usize,
    /// What the later snapshot's ingest added to the repository.
    new_bytes: u64,
    new_stored_bytes: u64,
    /// The later snapshot as it was named.
    #[serde(skip)]
    later: String,
}

impl DiffReport {
    fn of(differences: Vec<Difference>, later: &SnapshotRecord, named: &str) -> Self {
        let count = |c: &[Change]| differences.iter().filter(|d| c.contains(&d.change)).count();
        DiffReport {
            added: count(&[Change::Added]),
            removed: count(&[Change::Removed]),
            changed: count(&[Change::Content, Change::Metadata, Change::Kind]),
            new_bytes: later.summary.new_bytes,
            new_stored_bytes: later.summary.new_stored_bytes,
            later: named.to_string(),
            changes: differences.into_iter().map(Changed::of).collect(),
        }
    }
}

impl Changed {
    fn of(d: Difference) -> Self {
        Changed {
            change: match d.change {
                Change::Added => "added",
                Change::Removed => "removed",
                Change::Content => "content",
                Change::Metadata => "metadata",
                Change::Kind => "type",
            },
            before: d.before.as_ref().map(|e| Listed::of(d.path.clone(), e)),
            after: d.after.as_ref().map(|e| Listed::of(d.path.clone(), e)),
            path: d.path,
        }
    }
}

impl std::fmt::Display for DiffReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for c in &self.changes {
            let mark = match c.change {
                "added" => '+',
                "removed" => '-',
                "content" => 'M',
                "metadata" => 'U',
                _ => 'T',
            };
            writeln!(f, "{mark}    {}", c.path)?;
        }
        writeln!(
            f,
            "\n{} added, {} removed, {} changed; {} added {} to the repository ({} stored)",
            self.added,
            self.removed,
            self.changed,
            self.later,
            human_bytes(self.new_bytes),
            human_bytes(self.new_stored_bytes)
        )
    }
}

/// `dedup diff A B`.
pub fn diff(cx: &Context, a: &str, b: &str, json: bool) -> Code {
    let repo = cx.reader()?;
    let (_, first) = cx.resolve(&repo, a)?;
    let (_, second) = cx.resolve(&repo, b)?;
    let differences = repo.diff(&first.tree, &second.tree)?;
    show(&DiffReport::of(differences, &second, b), json)?;
    Ok(0)
}
