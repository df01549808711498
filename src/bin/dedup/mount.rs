//! `dedup mount DIR`: the repository's snapshots as a read-only file
//! system (FUSE, through the `fuser` crate), laid out as restic lays them
//! out:
//!
//! ```text
//! DIR/ids/<id>/...              each snapshot by its id (16 hex digits)
//! DIR/snapshots/<time>/...      each snapshot by its time (a second
//!                               shared by two gets -1, -2 after it)
//! DIR/snapshots/latest          a link to the newest
//! ```
//!
//! Everything is read on demand: a folder's tree when it is listed or
//! looked in, a file's chunks when they are read (each checked against its
//! id), the last chunk read kept for the next read. The
//! snapshots are those the repository held when it was mounted.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use dedup::format::snapshot::{Entry, EntryKind};
use dedup::{ChunkId, Repository};
use fuser::{
    FileAttr, FileType, Filesystem, MountOption, ReplyAttr, ReplyData, ReplyDirectory, ReplyEntry,
    ReplyXattr, Request, FUSE_ROOT_ID,
};

use crate::context::{Code, Context};

/// How long the kernel may keep what it was told: a snapshot never changes.
const TTL: Duration = Duration::from_secs(3600);

const IDS: u64 = 2;
const SNAPSHOTS: u64 = 3;
const LATEST: u64 = 4;
/// The first inode number handed out for snapshot contents.
const FIRST_DYNAMIC: u64 = 16;

/// What an inode is.
#[derive(Clone)]
enum Node {
    /// `ids/` or `snapshots/`: a snapshot folder per child.
    Listing(Vec<(Vec<u8>, u64)>),
    /// `snapshots/latest`.
    Latest(Vec<u8>),
    /// A snapshot's root folder.
    Root { tree: ChunkId, time: SystemTime },
    /// Anything inside a snapshot.
    Entry(Entry),
}

/// The mounted repository.
struct Snapshots {
    repo: Repository,
    nodes: HashMap<u64, Node>,
    /// Inodes handed out for names in folders: (folder, name) -> inode.
    names: HashMap<(u64, Vec<u8>), u64>,
    next: u64,
    /// The mounting user, who owns what a snapshot does not say.
    uid: u32,
    gid: u32,
    mounted_at: SystemTime,
    /// The last chunk read, of any file: (inode, chunk index, bytes).
    last_chunk: Option<(u64, usize, Vec<u8>)>,
    /// Where each chunk of a file read so far starts, by inode.
    starts: HashMap<u64, Vec<u64>>,
    /// Said on stderr once the kernel has the mount (none with --quiet).
    hello: Option<String>,
}

impl Snapshots {
    fn new(repo: Repository) -> dedup::Result<Self> {
        let snaps = repo.snapshots()?;
        let mut fs = Snapshots {
            repo,
            nodes: HashMap::new(),
            names: HashMap::new(),
            next: FIRST_DYNAMIC,
            uid: uzers::get_current_uid(),
            gid: uzers::get_current_gid(),
            mounted_at: SystemTime::now(),
            last_chunk: None,
            starts: HashMap::new(),
            hello: None,
        };
        let (mut ids, mut times) = (Vec::new(), Vec::new());
        let mut seen_times: HashMap<String, usize> = HashMap::new();
        for (id, record) in &snaps {
            let time = UNIX_EPOCH
                + Duration::from_nanos(u64::try_from(record.time_unix_ns).unwrap_or(u64::MAX));
            let root = Node::Root {
                tree: record.tree,
                time,
            };
            let short = id.to_hex().as_bytes()[..16].to_vec();
            let by_id = fs.add(IDS, &short, root.clone());
            ids.push((short, by_id));
            let n = seen_times.entry(record.time.clone()).or_insert(0);
            let name = if *n == 0 {
                record.time.clone()
            } else {
                format!("{}-{n}", record.time)
            };
            *n += 1;
            let by_time = fs.add(SNAPSHOTS, name.as_bytes(), root);
            times.push((name.into_bytes(), by_time));
        }
        let latest = times.last().map(|(name, _)| name.clone());
        if let Some(latest) = latest {
            fs.nodes.insert(LATEST, Node::Latest(latest));
            times.push((b"latest".to_vec(), LATEST));
        }
        fs.nodes.insert(IDS, Node::Listing(ids));
        fs.nodes.insert(SNAPSHOTS, Node::Listing(times));
        fs.nodes.insert(
            FUSE_ROOT_ID,
            Node::Listing(vec![
                (b"ids".to_vec(), IDS),
                (b"snapshots".to_vec(), SNAPSHOTS),
            ]),
        );
        Ok(fs)
    }

    /// The inode of `name` in `parent`, handed out on first sight.
    fn add(&mut self, parent: u64, name: &[u8], node: Node) -> u64 {
        if let Some(ino) = self.names.get(&(parent, name.to_vec())) {
            return *ino;
        }
        let ino = self.next;
        self.next += 1;
        self.names.insert((parent, name.to_vec()), ino);
        self.nodes.insert(ino, node);
        ino
    }

    /// A folder's children: (name, inode, node), in name order.
    fn children(&mut self, ino: u64) -> Result<Vec<(Vec<u8>, u64, FileType)>, i32> {
        let tree = match self.nodes.get(&ino) {
            Some(Node::Listing(list)) => {
                let list = list.clone();
                return Ok(list
                    .into_iter()
                    .map(|(name, child)| {
                        let kind = if child == LATEST {
                            FileType::Symlink
                        } else {
                            FileType::Directory
                        };
                        (name, child, kind)
                    })
                    .collect());
            }
            Some(
                Node::Root { tree, .. }
                | Node::Entry(Entry {
                    kind: EntryKind::Dir { tree },
                    ..
                }),
            ) => *tree,
            Some(_) => return Err(libc::ENOTDIR),
            None => return Err(libc::ENOENT),
        };
        let entries = self.repo.read_tree(&tree).map_err(|_| libc::EIO)?.entries;
        Ok(entries
            .into_iter()
            .map(|e| {
                let kind = file_type(&e.kind);
                let name = e.name.clone();
                let child = self.add(ino, &name, Node::Entry(e));
                (name, child, kind)
            })
            .collect())
    }

    fn attr(&self, ino: u64) -> Option<FileAttr> {
        let node = self.nodes.get(&ino)?;
        let (kind, perm, size, mtime, uid, gid, rdev) = match node {
            Node::Listing(_) => (
                FileType::Directory,
                0o555,
                0,
                self.mounted_at,
                self.uid,
                self.gid,
                0,
            ),
            Node::Latest(target) => (
                FileType::Symlink,
                0o777,
                target.len() as u64,
                self.mounted_at,
                self.uid,
                self.gid,
                0,
            ),
            Node::Root { time, .. } => {
                (FileType::Directory, 0o555, 0, *time, self.uid, self.gid, 0)
            }
            Node::Entry(e) => {
                let size = match &e.kind {
                    EntryKind::File { size, .. } => *size,
                    EntryKind::Symlink { target } => target.len() as u64,
                    _ => 0,
                };
                let rdev = match e.kind {
                    EntryKind::CharDevice { rdev } | EntryKind::BlockDevice { rdev } => {
                        u32::try_from(rdev).unwrap_or(0)
                    }
                    _ => 0,
                };
                let mtime = if e.mtime_s >= 0 {
                    UNIX_EPOCH + Duration::new(e.mtime_s.unsigned_abs(), e.mtime_ns)
                } else {
                    UNIX_EPOCH - Duration::new(e.mtime_s.unsigned_abs(), 0)
                };
                let (uid, gid) = e
                    .attrs
                    .owner
                    .as_ref()
                    .map_or((self.uid, self.gid), |o| (o.uid, o.gid));
                (
                    file_type(&e.kind),
                    (e.mode & 0o7777) as u16,
                    size,
                    mtime,
                    uid,
                    gid,
                    rdev,
                )
            }
        };
        Some(FileAttr {
            ino,
            size,
            blocks: size.div_ceil(512),
            atime: mtime,
            mtime,
            ctime: mtime,
            crtime: mtime,
            kind,
            perm,
            nlink: if kind == FileType::Directory { 2 } else { 1 },
            uid,
            gid,
            rdev,
            blksize: 4096,
            flags: 0,
        })
    }

    /// Bytes `offset..offset + size` of file `ino`, every chunk checked.
    fn read_file(&mut self, ino: u64, offset: u64, size: usize) -> Result<Vec<u8>, i32> {
        let Some(Node::Entry(Entry {
            kind: EntryKind::File { chunks, size: len },
            ..
        })) = self.nodes.get(&ino)
        else {
            return Err(libc::EISDIR);
        };
        let end = (offset + size as u64).min(*len);
        if offset >= end {
            return Ok(Vec::new());
        }
        // Where each chunk starts, worked out on the file's first read:
        // a read finds its first chunk by binary search.
        let starts = self.starts.entry(ino).or_insert_with(|| {
            let mut at = 0;
            chunks
                .iter()
                .map(|(_, n)| {
                    let start = at;
                    at += u64::from(*n);
                    start
                })
                .collect()
        });
        let first = starts
            .partition_point(|&start| start <= offset)
            .saturating_sub(1);
        let wanted: Vec<(usize, ChunkId, u64, u32)> = (first..chunks.len())
            .take_while(|&k| starts[k] < end)
            .map(|k| (k, chunks[k].0, starts[k], chunks[k].1))
            .collect();
        let mut out = Vec::with_capacity(end.saturating_sub(offset) as usize);
        for (k, id, at, chunk_len) in wanted {
            let cached = matches!(&self.last_chunk, Some((i, c, _)) if *i == ino && *c == k);
            if !cached {
                let bytes = self.repo.get(&id).map_err(|_| libc::EIO)?;
                self.last_chunk = Some((ino, k, bytes));
            }
            let bytes = &self.last_chunk.as_ref().expect("just read").2;
            let from = offset.saturating_sub(at) as usize;
            let to = (end - at).min(u64::from(chunk_len)) as usize;
            out.extend_from_slice(&bytes[from..to]);
        }
        Ok(out)
    }
}

fn file_type(kind: &EntryKind) -> FileType {
    match kind {
        EntryKind::File { .. } => FileType::RegularFile,
        EntryKind::Dir { .. } => FileType::Directory,
        EntryKind::Symlink { .. } => FileType::Symlink,
        EntryKind::Fifo => FileType::NamedPipe,
        EntryKind::CharDevice { .. } => FileType::CharDevice,
        EntryKind::BlockDevice { .. } => FileType::BlockDevice,
    }
}

impl Filesystem for Snapshots {
    fn init(
        &mut self,
        _req: &Request<'_>,
        _config: &mut fuser::KernelConfig,
    ) -> Result<(), libc::c_int> {
        if let Some(hello) = self.hello.take() {
            eprintln!("{hello}");
        }
        Ok(())
    }

    fn lookup(&mut self, _req: &Request<'_>, parent: u64, name: &OsStr, reply: ReplyEntry) {
        let found = self.names.get(&(parent, name.as_bytes().to_vec())).copied();
        let ino = match found {
            Some(ino) => Some(ino),
            None => match self.children(parent) {
                Ok(children) => children
                    .into_iter()
                    .find(|(n, _, _)| n == name.as_bytes())
                    .map(|(_, ino, _)| ino),
                Err(e) => return reply.error(e),
            },
        };
        match ino.and_then(|ino| self.attr(ino)) {
            Some(attr) => reply.entry(&TTL, &attr, 0),
            None => reply.error(libc::ENOENT),
        }
    }

    fn getattr(&mut self, _req: &Request<'_>, ino: u64, reply: ReplyAttr) {
        match self.attr(ino) {
            Some(attr) => reply.attr(&TTL, &attr),
            None => reply.error(libc::ENOENT),
        }
    }

    fn readlink(&mut self, _req: &Request<'_>, ino: u64, reply: ReplyData) {
        match self.nodes.get(&ino) {
            Some(
                Node::Latest(target)
                | Node::Entry(Entry {
                    kind: EntryKind::Symlink { target },
                    ..
                }),
            ) => reply.data(target),
            _ => reply.error(libc::EINVAL),
        }
    }

    #[allow(clippy::too_many_arguments)] // the trait's signature
    fn read(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        _fh: u64,
        offset: i64,
        size: u32,
        _flags: i32,
        _lock_owner: Option<u64>,
        reply: ReplyData,
    ) {
        match self.read_file(ino, offset.max(0).unsigned_abs(), size as usize) {
            Ok(bytes) => reply.data(&bytes),
            Err(e) => reply.error(e),
        }
    }

    fn readdir(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        _fh: u64,
        offset: i64,
        mut reply: ReplyDirectory,
    ) {
        let children = match self.children(ino) {
            Ok(children) => children,
            Err(e) => return reply.error(e),
        };
        let dots = [
            (b".".to_vec(), ino, FileType::Directory),
            (b"..".to_vec(), ino, FileType::Directory),
        ];
        let all = dots.into_iter().chain(children);
        for (i, (name, child, kind)) in all.enumerate().skip(offset.max(0).unsigned_abs() as usize)
        {
            let next = i64::try_from(i + 1).unwrap_or(i64::MAX);
            if reply.add(child, next, kind, OsStr::from_bytes(&name)) {
                break;
            }
        }
        reply.ok();
    }

    fn getxattr(
        &mut self,
        _req: &Request<'_>,
        ino: u64,
        name: &OsStr,
        size: u32,
        reply: ReplyXattr,
    ) {
        let value = match self.nodes.get(&ino) {
            Some(Node::Entry(e)) => e
                .attrs
                .xattrs
                .iter()
                .find(|(n, _)| n.as_slice() == name.as_bytes())
                .map(|(_, v)| v.clone()),
            _ => None,
        };
        match value {
            None => reply.error(libc::ENODATA),
            Some(v) if size == 0 => reply.size(v.len() as u32),
            Some(v) if v.len() <= size as usize => reply.data(&v),
            Some(_) => reply.error(libc::ERANGE),
        }
    }

    fn listxattr(&mut self, _req: &Request<'_>, ino: u64, size: u32, reply: ReplyXattr) {
        let mut list = Vec::new();
        if let Some(Node::Entry(e)) = self.nodes.get(&ino) {
            for (name, _) in &e.attrs.xattrs {
                list.extend_from_slice(name);
                list.push(0);
            }
        }
        if size == 0 {
            reply.size(list.len() as u32);
        } else if list.len() <= size as usize {
            reply.data(&list);
        } else {
            reply.error(libc::ERANGE);
        }
    }
}

/// `dedup mount DIR`: serves until the folder is unmounted (`umount DIR`
/// or `fusermount -u DIR`).
pub fn mount(cx: &Context, dir: &Path) -> Code {
    match std::fs::metadata(dir) {
        Ok(meta) if meta.is_dir() => {}
        Ok(_) => anyhow::bail!("cannot mount at {}: not a folder", dir.display()),
        Err(e) => anyhow::bail!("cannot mount at {}: {e}", dir.display()),
    }
    let repo = cx.reader()?;
    let mut fs = Snapshots::new(repo)?;
    let count = match fs.nodes.get(&IDS) {
        Some(Node::Listing(list)) => list.len(),
        _ => 0,
    };
    if !cx.quiet() {
        fs.hello = Some(format!(
            "dedup: {count} snapshots mounted read-only at {}; unmount with `umount {}` (or `fusermount -u`)",
            dir.display(),
            dir.display()
        ));
    }
    let options = [
        MountOption::RO,
        MountOption::FSName("dedup".into()),
        MountOption::Subtype("dedup".into()),
        MountOption::DefaultPermissions,
    ];
    fuser::mount2(fs, dir, &options)
        .map_err(|e| anyhow::anyhow!("cannot mount at {}: {e}", dir.display()))?;
    Ok(0)
}
