//! What a tree entry keeps of a file on disk besides its bytes: its owner
//! by id and by name, its modification time. Ingest's walk and estimate
//! read files through these.

use std::fs::Metadata;
use std::os::unix::fs::MetadataExt;

use crate::format::snapshot::Owner;

/// User and group names by id, each looked up (through NSS) once.
#[derive(Default)]
pub(crate) struct Names {
    users: std::sync::Mutex<std::collections::HashMap<u32, String>>,
    groups: std::sync::Mutex<std::collections::HashMap<u32, String>>,
}

impl Names {
    /// The owner with its names (empty where this machine has none).
    pub(crate) fn owner(&self, uid: u32, gid: u32) -> Owner {
        let user = self
            .users
            .lock()
            .expect("names lock")
            .entry(uid)
            .or_insert_with(|| {
                uzers::get_user_by_uid(uid)
                    .map(|u| u.name().to_string_lossy().into_owned())
                    .unwrap_or_default()
            })
            .clone();
        let group = self
            .groups
            .lock()
            .expect("names lock")
            .entry(gid)
            .or_insert_with(|| {
                uzers::get_group_by_gid(gid)
                    .map(|g| g.name().to_string_lossy().into_owned())
                    .unwrap_or_default()
            })
            .clone();
        Owner {
            uid,
            gid,
            user,
            group,
        }
    }
}

/// A file's modification time: seconds and nanoseconds.
pub(crate) fn mtime(meta: &Metadata) -> (i64, u32) {
    (meta.mtime(), meta.mtime_nsec().clamp(0, 999_999_999) as u32)
}
