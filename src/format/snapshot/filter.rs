//! Which snapshots a command looks at: restic's `--host`, `--tag` and
//! `--path`, and the groups `forget` applies its policy to.

use serde::Serialize;

use super::SnapshotRecord;

/// Narrows a list of snapshots. An empty filter matches every snapshot.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SnapshotFilter {
    /// The snapshot was made on any of these hosts (none given: any host).
    pub hosts: Vec<String>,
    /// The snapshot has every tag of any one of these lists (`--tag a,b
    /// --tag c`: both a and b, or c).
    pub tags: Vec<Vec<String>>,
    /// The snapshot was made of every one of these paths.
    pub paths: Vec<String>,
}

impl SnapshotFilter {
    /// Whether this filter lets every snapshot through.
    pub fn is_empty(&self) -> bool {
        self.hosts.is_empty() && self.tags.is_empty() && self.paths.is_empty()
    }

    /// Whether `record` passes.
    pub fn matches(&self, record: &SnapshotRecord) -> bool {
        (self.hosts.is_empty() || self.hosts.contains(&record.hostname))
            && (self.tags.is_empty()
                || self
                    .tags
                    .iter()
                    .any(|all| all.iter().all(|t| record.tags.contains(t))))
            && self.paths.iter().all(|p| record.paths.contains(p))
    }
}

impl std::fmt::Display for SnapshotFilter {
    /// The filter as options: `--host a --tag x,y --path /p`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut parts = Vec::new();
        parts.extend(self.hosts.iter().map(|h| format!("--host {h}")));
        parts.extend(self.tags.iter().map(|t| format!("--tag {}", t.join(","))));
        parts.extend(self.paths.iter().map(|p| format!("--path {p}")));
        f.write_str(&parts.join(" "))
    }
}

/// What snapshots are grouped by before a policy applies to each group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(clippy::struct_excessive_bools)] // three independent switches
pub struct GroupBy {
    /// Snapshots of different hosts are in different groups.
    pub host: bool,
    /// Snapshots of different path sets are in different groups.
    pub paths: bool,
    /// Snapshots of different tag sets are in different groups.
    pub tags: bool,
}

impl Default for GroupBy {
    /// restic's default: by host and paths.
    fn default() -> Self {
        GroupBy {
            host: true,
            paths: true,
            tags: false,
        }
    }
}

impl std::str::FromStr for GroupBy {
    type Err = String;

    /// `host,paths`, `tags`, `host,paths,tags`, or `""` (one group).
    fn from_str(s: &str) -> Result<Self, String> {
        let mut by = GroupBy {
            host: false,
            paths: false,
            tags: false,
        };
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match part {
                "host" => by.host = true,
                "paths" | "path" => by.paths = true,
                "tags" | "tag" => by.tags = true,
                other => {
                    return Err(format!(
                        "cannot group by {other:?} (use host, paths and tags, comma separated)"
                    ))
                }
            }
        }
        Ok(by)
    }
}

/// The values a group's snapshots share (fields not grouped by are
/// absent).
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct GroupKey {
    /// The host, when grouped by host.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// The sorted paths, when grouped by paths.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub paths: Option<Vec<String>>,
    /// The sorted tags, when grouped by tags.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<String>>,
}

impl GroupBy {
    /// The group `record` belongs to.
    pub fn key(self, record: &SnapshotRecord) -> GroupKey {
        let sorted = |v: &[String]| {
            let mut v = v.to_vec();
            v.sort();
            v.dedup();
            v
        };
        GroupKey {
            host: self.host.then(|| record.hostname.clone()),
            paths: self.paths.then(|| sorted(&record.paths)),
            tags: self.tags.then(|| sorted(&record.tags)),
        }
    }
}

impl std::fmt::Display for GroupKey {
    /// `host h, paths [/a /b], tags [x]`; `all snapshots` for one group.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut parts = Vec::new();
        if let Some(h) = &self.host {
            parts.push(format!("host {h}"));
        }
        if let Some(p) = &self.paths {
            parts.push(format!("paths [{}]", p.join(" ")));
        }
        if let Some(t) = &self.tags {
            parts.push(format!("tags [{}]", t.join(" ")));
        }
        if parts.is_empty() {
            f.write_str("all snapshots")
        } else {
            f.write_str(&parts.join(", "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::snapshot::record::RECORD_VERSION;
    use crate::format::snapshot::IngestSummary;
    use crate::id::ChunkId;

    fn record(host: &str, paths: &[&str], tags: &[&str]) -> SnapshotRecord {
        SnapshotRecord {
            version: RECORD_VERSION,
            time: String::new(),
            time_unix_ns: 0,
            hostname: host.into(),
            username: String::new(),
            paths: paths.iter().map(|p| (*p).to_string()).collect(),
            tags: tags.iter().map(|t| (*t).to_string()).collect(),
            parent: None,
            tree: ChunkId::of(b""),
            root: None,
            summary: IngestSummary::default(),
            prev: None,
        }
    }

    #[test]
    fn filters_follow_restic() {
        let r = record("a", &["/x", "/y"], &["daily", "db"]);
        let f = |hosts: &[&str], tags: &[&[&str]], paths: &[&str]| SnapshotFilter {
            hosts: hosts.iter().map(|s| (*s).to_string()).collect(),
            tags: tags
                .iter()
                .map(|l| l.iter().map(|s| (*s).to_string()).collect())
                .collect(),
            paths: paths.iter().map(|s| (*s).to_string()).collect(),
        };
        assert!(SnapshotFilter::default().matches(&r));
        assert!(f(&["b", "a"], &[], &[]).matches(&r));
        assert!(!f(&["b"], &[], &[]).matches(&r));
        // One list: all its tags; several lists: any of them.
        assert!(f(&[], &[&["daily", "db"]], &[]).matches(&r));
        assert!(!f(&[], &[&["daily", "web"]], &[]).matches(&r));
        assert!(f(&[], &[&["web"], &["db"]], &[]).matches(&r));
        // Every path given must be one of the snapshot's.
        assert!(f(&[], &[], &["/y"]).matches(&r));
        assert!(!f(&[], &[], &["/y", "/z"]).matches(&r));
        assert!(!f(&["a"], &[&["db"]], &["/z"]).matches(&r));
    }

    #[test]
    fn groups_ignore_order_and_the_fields_not_asked_for() {
        let a = record("h", &["/b", "/a"], &["t2", "t1"]);
        let b = record("h", &["/a", "/b"], &["t1"]);
        let by: GroupBy = "host,paths".parse().unwrap();
        assert_eq!(by.key(&a), by.key(&b));
        assert_eq!(by.key(&a).to_string(), "host h, paths [/a /b]");
        let by_tags: GroupBy = "tags".parse().unwrap();
        assert_ne!(by_tags.key(&a), by_tags.key(&b));
        let one: GroupBy = "".parse().unwrap();
        assert_eq!(one.key(&a).to_string(), "all snapshots");
        assert!("colour".parse::<GroupBy>().is_err());
    }
}
