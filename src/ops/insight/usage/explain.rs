//! Why a file deduplicates as it does: for each of its chunks, who else
//! holds it; the files most like it; a verdict in one line.

use super::*;

/// Where a file is held: a snapshot and a path in it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Holder {
    /// The snapshot.
    pub snapshot: SnapshotId,
    /// When it was taken.
    pub time: String,
    /// The file's path in it.
    pub path: String,
}

/// How one chunk of an explained file came to be stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ChunkStatus {
    /// No older snapshot, and no earlier chunk of the file, holds it: this
    /// snapshot's ingest stored it (or an identical file of the same
    /// snapshot did).
    New,
    /// An older snapshot holds it too: it was stored before.
    Reused,
    /// An earlier chunk of the same file is the same bytes.
    Repeat,
}

/// One chunk of an explained file.
#[derive(Clone, Debug, Serialize)]
pub struct ExplainedChunk {
    /// Where it starts in the file.
    pub offset: u64,
    /// Its length.
    pub length: u32,
    /// Its id.
    pub id: ChunkId,
    /// Its bytes on disk.
    pub stored_bytes: u64,
    /// New, reused or a repeat.
    pub status: ChunkStatus,
    /// The oldest snapshot holding it.
    pub first_snapshot: SnapshotId,
    /// Other files that hold it (up to the limit asked for).
    pub holders: Vec<Holder>,
    /// Whether more files than those listed hold it.
    pub more_holders: bool,
}

/// A file sharing bytes with the one explained.
#[derive(Clone, Debug, Serialize)]
pub struct Similar {
    /// Where it is.
    #[serde(flatten)]
    pub holder: Holder,
    /// Bytes of the explained file found in it.
    pub shared_bytes: u64,
    /// `shared_bytes` over the explained file's size.
    pub share: f64,
    /// Its chunk list is the explained file's.
    pub identical: bool,
}

/// `dedup explain SNAPSHOT:PATH`: a file's chunks and why it dedups as it does.
#[derive(Clone, Debug, Serialize)]
pub struct Explanation {
    /// The snapshot.
    pub snapshot: SnapshotId,
    /// The file's path in it.
    pub path: String,
    /// Its size.
    pub size: u64,
    /// Bytes in chunks this snapshot's ingest stored.
    pub new_bytes: u64,
    /// Bytes in chunks stored before (by older snapshots).
    pub reused_bytes: u64,
    /// Bytes in chunks repeated within the file.
    pub repeated_bytes: u64,
    /// The same path in the snapshot before this one of the same host and
    /// paths, if it was there.
    pub previous: Option<Similar>,
    /// Other files sharing the most bytes with it, most first.
    pub similar: Vec<Similar>,
    /// One line: why the file dedups as it does.
    pub verdict: String,
    /// Its chunks in file order.
    pub chunks: Vec<ExplainedChunk>,
}

/// Files looked at, at most, when collecting holders and similar files:
/// a chunk every file holds (a block of zeros) must not make `explain`
/// list the whole repository.
const MAX_CANDIDATES: usize = 10_000;

impl Usage {
    /// Which of `targets` (chunk numbers) each tree holds at any depth,
    /// for the trees that hold any; `None` when none.
    fn holding(&self, targets: &HashSet<u32>) -> Vec<Option<Vec<u32>>> {
        let mut under: Vec<Option<Option<Vec<u32>>>> = vec![None; self.trees.len()];
        for &(top, _) in &self.tops {
            // Post-order over trees not yet worked out.
            let mut stack = vec![(top, false)];
            while let Some((t, done)) = stack.pop() {
                if under[t as usize].is_some() {
                    continue;
                }
                let node = &self.trees[t as usize];
                if done {
                    let mut held: Vec<u32> = node
                        .chunks
                        .iter()
                        .copied()
                        .filter(|c| targets.contains(c))
                        .collect();
                    for (_, child) in &node.children {
                        if let Some(Some(below)) = &under[*child as usize] {
                            held.extend(below);
                        }
                    }
                    held.sort_unstable();
                    held.dedup();
                    under[t as usize] = Some((!held.is_empty()).then_some(held));
                } else {
                    stack.push((t, true));
                    for (_, child) in &node.children {
                        if under[*child as usize].is_none() {
                            stack.push((*child, false));
                        }
                    }
                }
            }
        }
        under.into_iter().map(Option::flatten).collect()
    }

    /// Files of every snapshot holding any of `targets`, newest snapshot
    /// first, up to [`MAX_CANDIDATES`]; with whether the list was cut.
    fn files_holding(
        &self,
        targets: &HashSet<u32>,
        under: &[Option<Vec<u32>>],
    ) -> (Vec<(usize, String, u32, usize)>, bool) {
        let mut out = Vec::new();
        for (s, &(_, root)) in self.tops.iter().enumerate().rev() {
            let mut stack = vec![(root, String::new())];
            while let Some((t, path)) = stack.pop() {
                let node = &self.trees[t as usize];
                for (i, f) in node.files.iter().enumerate() {
                    let chunks = &node.chunks[f.chunks.start as usize..f.chunks.end as usize];
                    if chunks.iter().any(|c| targets.contains(c)) {
                        if out.len() == MAX_CANDIDATES {
                            return (out, true);
                        }
                        out.push((s, format!("{path}/{}", f.name), t, i));
                    }
                }
                for (name, child) in &node.children {
                    if under[*child as usize].is_some() {
                        stack.push((*child, format!("{path}/{name}")));
                    }
                }
            }
        }
        (out, false)
    }

    fn holder(&self, s: usize, path: &str) -> Holder {
        Holder {
            snapshot: self.snapshots[s].0,
            time: self.snapshots[s].1.time.clone(),
            path: path.to_string(),
        }
    }

    /// For each chunk of the file explained, up to `limit` + 1 of `files`
    /// holding it; and what each of `files` shares with it.
    fn compare(
        &self,
        files: &[(usize, String, u32, usize)],
        me: &Subject<'_>,
        limit: usize,
    ) -> (HashMap<u32, Vec<Holder>>, Vec<Similar>) {
        let mut holders: HashMap<u32, Vec<Holder>> = HashMap::new();
        let mut similar = Vec::new();
        for (fs, fpath, t, i) in files {
            if (*fs, fpath.as_str()) == me.at {
                continue;
            }
            let node = &self.trees[*t as usize];
            let f = &node.files[*i];
            let theirs = &node.chunks[f.chunks.start as usize..f.chunks.end as usize];
            let mut counted = HashSet::new();
            for c in theirs {
                if me.targets.contains(c) && counted.insert(*c) {
                    let list = holders.entry(*c).or_default();
                    if list.len() <= limit {
                        list.push(self.holder(*fs, fpath));
                    }
                }
            }
            // The explained file's bytes found in the other one, repeats
            // within it counted as often as they occur.
            let shared_bytes: u64 = me
                .chunks
                .iter()
                .zip(me.mine)
                .filter(|(_, c)| counted.contains(c))
                .map(|((_, len), _)| u64::from(*len))
                .sum();
            similar.push(Similar {
                holder: self.holder(*fs, fpath),
                shared_bytes,
                share: crate::units::ratio(shared_bytes, me.size).min(1.0),
                identical: theirs == me.mine,
            });
        }
        (holders, similar)
    }

    /// The work of [`Repository::explain`](crate::Repository::explain).
    pub(crate) fn explain(
        &self,
        repo: &Engine,
        id: &SnapshotId,
        path: &str,
        limit: usize,
    ) -> Result<Explanation> {
        let s = self.snapshot_index(id)?;
        let record = &self.snapshots[s].1;
        let entry = match repo.lookup(id, &record.tree, path)? {
            crate::engine::paths::Found::Entry(e) => e,
            crate::engine::paths::Found::Root(_) => {
                return Err(Error::invalid(
                    "explain",
                    "the snapshot's root is a folder; name a file in it".to_string(),
                ))
            }
        };
        let EntryKind::File { size, chunks } = entry.kind else {
            return Err(Error::invalid(
                "explain",
                format!("{path} is not a file (try `report SNAPSHOT --by-dir`)"),
            ));
        };
        let path = format!("/{}", crate::engine::paths::components(path)?.join("/"));
        let number: HashMap<ChunkId, u32> = self
            .chunk_ids
            .iter()
            .enumerate()
            .map(|(n, c)| (*c, n as u32))
            .collect();
        let mine: Vec<u32> = chunks.iter().map(|(c, _)| number[c]).collect();
        let targets: HashSet<u32> = mine.iter().copied().collect();
        let under = self.holding(&targets);
        // The oldest snapshot holding each chunk.
        let mut first: HashMap<u32, usize> = HashMap::new();
        for (t, &(top, _)) in self.tops.iter().enumerate() {
            if let Some(held) = &under[top as usize] {
                for c in held {
                    first.entry(*c).or_insert(t);
                }
            }
        }
        let (files, cut) = self.files_holding(&targets, &under);
        let me = Subject {
            at: (s, &path),
            chunks: &chunks,
            mine: &mine,
            targets: &targets,
            size,
        };
        let (holders, mut similar) = self.compare(&files, &me, limit);
        let holder = |(s, path): (usize, &str)| self.holder(s, path);
        let previous = self.previous_of(s).and_then(|p| {
            similar
                .iter()
                .find(|x| x.holder.snapshot == self.snapshots[p].0 && x.holder.path == path)
                .cloned()
                .or_else(|| {
                    // The path is there but shares nothing.
                    let root = self.tops[p].1;
                    self.file_at(root, &path).map(|_| Similar {
                        holder: holder((p, &path)),
                        shared_bytes: 0,
                        share: 0.0,
                        identical: false,
                    })
                })
        });
        similar.sort_by(|a, b| {
            b.shared_bytes
                .cmp(&a.shared_bytes)
                .then(b.identical.cmp(&a.identical))
                .then(b.holder.time.cmp(&a.holder.time))
        });
        similar.truncate(limit);
        let (out_chunks, [new, reused, repeated]) =
            self.chunk_statuses(&me, &first, &holders, cut, limit);
        let verdict = verdict(size, new, reused, repeated, previous.as_ref(), &similar);
        Ok(Explanation {
            snapshot: *id,
            path,
            size,
            new_bytes: new,
            reused_bytes: reused,
            repeated_bytes: repeated,
            previous,
            similar,
            verdict,
            chunks: out_chunks,
        })
    }

    /// Each chunk of the file explained, with its status and holders; and
    /// its new, reused and repeated bytes.
    fn chunk_statuses(
        &self,
        me: &Subject<'_>,
        first: &HashMap<u32, usize>,
        holders: &HashMap<u32, Vec<Holder>>,
        cut: bool,
        limit: usize,
    ) -> (Vec<ExplainedChunk>, [u64; 3]) {
        let mut out_chunks = Vec::with_capacity(me.chunks.len());
        let (mut new, mut reused, mut repeated, mut offset) = (0, 0, 0, 0);
        let mut earlier = HashSet::new();
        for (&(id, length), &c) in me.chunks.iter().zip(me.mine) {
            let oldest = first[&c];
            let status = if !earlier.insert(c) {
                repeated += u64::from(length);
                ChunkStatus::Repeat
            } else if oldest < me.at.0
                && self.snapshots[oldest].1.time_unix_ns < self.snapshots[me.at.0].1.time_unix_ns
            {
                reused += u64::from(length);
                ChunkStatus::Reused
            } else {
                new += u64::from(length);
                ChunkStatus::New
            };
            let mut list = holders.get(&c).cloned().unwrap_or_default();
            let more = list.len() > limit || (cut && list.len() == limit);
            list.truncate(limit);
            out_chunks.push(ExplainedChunk {
                offset,
                length,
                id,
                stored_bytes: self.chunk_sizes[c as usize].stored,
                status,
                first_snapshot: self.snapshots[oldest].0,
                holders: list,
                more_holders: more,
            });
            offset += u64::from(length);
        }
        (out_chunks, [new, reused, repeated])
    }

    /// The snapshot before `s` of the same host and paths: its recorded
    /// parent if still there, else the newest older one that matches.
    fn previous_of(&self, s: usize) -> Option<usize> {
        let r = &self.snapshots[s].1;
        if let Some(parent) = &r.parent {
            if let Some(p) = self.snapshots.iter().position(|(id, _)| id == parent) {
                return Some(p);
            }
        }
        (0..s).rev().find(|&p| {
            let o = &self.snapshots[p].1;
            o.hostname == r.hostname && o.paths == r.paths
        })
    }

    /// The file at `path` under the tree `root`, if there is one.
    fn file_at(&self, root: u32, path: &str) -> Option<&FileNode> {
        let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
        let (name, dirs) = parts.split_last()?;
        let mut t = root;
        for dir in dirs {
            t = self.trees[t as usize]
                .children
                .iter()
                .find(|(n, _)| &**n == *dir)?
                .1;
        }
        self.trees[t as usize]
            .files
            .iter()
            .find(|f| &*f.name == *name)
    }
}

/// The file `explain` is asked about.
struct Subject<'a> {
    /// Its snapshot (by number) and path.
    at: (usize, &'a str),
    chunks: &'a [(ChunkId, u32)],
    /// Its chunks' numbers, in file order.
    mine: &'a [u32],
    targets: &'a HashSet<u32>,
    size: u64,
}

/// One line for people on why a file dedups as it does.
fn verdict(
    size: u64,
    new: u64,
    reused: u64,
    repeated: u64,
    previous: Option<&Similar>,
    similar: &[Similar],
) -> String {
    let pct = |n: u64| crate::units::ratio(n, size) * 100.0;
    let place = |h: &Holder| format!("{}:{}", &h.snapshot.to_hex()[..8], h.path);
    if size == 0 {
        return "empty: no chunks, nothing stored".into();
    }
    if let Some(same) = similar.iter().find(|x| x.identical) {
        let whom = match previous {
            Some(p) if p.identical => "the previous version".to_string(),
            _ => place(&same.holder),
        };
        return format!("identical to {whom}: stored once, costs nothing more");
    }
    let mut line = match (previous, similar.first()) {
        (Some(p), _) if p.shared_bytes > 0 => format!(
            "shares {:.0}% with the previous version ({})",
            p.share * 100.0,
            place(&p.holder)
        ),
        (Some(p), best) => {
            let mut l = format!(
                "changed throughout since the previous version ({}): no chunk in common",
                place(&p.holder)
            );
            if let Some(b) = best.filter(|b| b.shared_bytes > 0) {
                let _ = write!(
                    l,
                    "; shares {:.0}% with {}",
                    b.share * 100.0,
                    place(&b.holder)
                );
            }
            l
        }
        (None, Some(b)) if b.shared_bytes > 0 => {
            format!("shares {:.0}% with {}", b.share * 100.0, place(&b.holder))
        }
        _ => "no chunk in common with any other file".into(),
    };
    let _ = write!(
        line,
        "; {:.0}% of its bytes were new when stored, {:.0}% stored before",
        pct(new),
        pct(reused)
    );
    if repeated > 0 {
        let _ = write!(line, ", {:.0}% repeats within the file", pct(repeated));
    }
    line
}

fn short(id: &SnapshotId) -> String {
    id.to_hex()[..8].to_string()
}

impl std::fmt::Display for Explanation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let human = crate::units::human_bytes;
        let pct = |n: u64| crate::units::ratio(n, self.size) * 100.0;
        let place = |x: &Holder| format!("{}:{}", short(&x.snapshot), x.path);
        writeln!(
            f,
            "{}:{}  {} in {} chunk{}",
            short(&self.snapshot),
            self.path,
            human(self.size),
            self.chunks.len(),
            if self.chunks.len() == 1 { "" } else { "s" }
        )?;
        writeln!(f, "why:      {}", self.verdict)?;
        writeln!(
            f,
            "new:      {} ({:.0}%)   reused: {} ({:.0}%)   repeats: {} ({:.0}%)",
            human(self.new_bytes),
            pct(self.new_bytes),
            human(self.reused_bytes),
            pct(self.reused_bytes),
            human(self.repeated_bytes),
            pct(self.repeated_bytes)
        )?;
        if !self.similar.is_empty() {
            writeln!(f, "files sharing its bytes:")?;
            for s in &self.similar {
                writeln!(
                    f,
                    "  {:>5.1}%  {:>10}  {}  {}{}",
                    s.share * 100.0,
                    human(s.shared_bytes),
                    s.holder.time,
                    place(&s.holder),
                    if s.identical { "  (identical)" } else { "" }
                )?;
            }
        }
        writeln!(f, "chunks (runs of the same status and holder):")?;
        let mut start = 0;
        while start < self.chunks.len() {
            let c = &self.chunks[start];
            let first = c.holders.first();
            let mut end = start + 1;
            while end < self.chunks.len()
                && self.chunks[end].status == c.status
                && self.chunks[end].holders.first() == first
            {
                end += 1;
            }
            let last = &self.chunks[end - 1];
            let status = match c.status {
                ChunkStatus::New => "new",
                ChunkStatus::Reused => "reused",
                ChunkStatus::Repeat => "repeat",
            };
            let held = match first {
                Some(x) => {
                    let others = c.holders.len() - 1;
                    format!(
                        "also in {}{}",
                        place(x),
                        match (others, c.more_holders) {
                            (0, false) => String::new(),
                            (n, false) => format!(" and {n} more"),
                            (n, true) => format!(" and {n}+ more"),
                        }
                    )
                }
                None => "in no other file".into(),
            };
            let range = if end - start == 1 {
                format!("#{start}")
            } else {
                format!("#{start}-{}", end - 1)
            };
            writeln!(
                f,
                "  {:<12} {:>10} .. {:<10} {:<7} {}",
                range,
                human(c.offset),
                human(last.offset + u64::from(last.length)),
                status,
                held
            )?;
            start = end;
        }
        Ok(())
    }
}
