//! The commands that check and maintain: `verify`, `forget`, `gc`,
//! `repair`.

use anyhow::bail;
use dedup::policy::KeepPolicy;
use dedup::{ForgetReport, Mode, Repository, SnapshotId};

use crate::context::{show, Code, Context};

/// `dedup verify`: exit 1 when something is wrong.
pub fn verify(cx: &Context, read_data: bool, subset: Option<f64>, json: bool) -> Code {
    let repo = cx.reader()?;
    let share = if read_data {
        1.0
    } else {
        subset.unwrap_or(0.0)
    };
    let report = repo.verify(share, &cx.bar("verify"))?;
    show(&report, json)?;
    Ok(u8::from(!report.is_clean()))
}

/// How `forget` runs, beside what it forgets.
pub struct ForgetHow {
    pub group_by: dedup::format::snapshot::GroupBy,
    pub dry_run: bool,
    pub prune: bool,
    pub json: bool,
}

/// `dedup forget`: named snapshots, or those a policy does not keep.
pub fn forget(cx: &Context, specs: &[String], policy: &KeepPolicy, how: &ForgetHow) -> Code {
    match (specs.is_empty(), policy.is_empty()) {
        (true, true) => {
            bail!("nothing to forget: name snapshots, or give a policy such as --keep-daily 7")
        }
        (false, false) => bail!("give snapshots to forget or a --keep-* policy, not both"),
        _ => {}
    }
    let repo = if how.dry_run {
        cx.reader()
    } else {
        cx.writer()
    }?;
    let mut report = if specs.is_empty() {
        let groups = repo.forget_by_policy(&cx.filter, how.group_by, policy, mode(how.dry_run))?;
        ForgetReport::of_policy(policy, groups, how.dry_run)
    } else {
        let ids: Vec<SnapshotId> = specs
            .iter()
            .map(|s| forgettable(cx, &repo, s))
            .collect::<Result<_, _>>()?;
        if !how.dry_run {
            repo.forget(&ids)?;
        }
        ForgetReport::named(ids, how.dry_run)
    };
    if how.prune && !how.dry_run {
        report.gc = Some(repo.gc(Mode::Apply, &cx.bar("gc"))?);
    }
    show(&report, how.json)?;
    let unreadable = report.gc.is_some_and(|g| !g.unreadable_packs.is_empty());
    Ok(u8::from(unreadable))
}

/// The snapshot `spec` names for `forget`: as every command resolves it,
/// or else a record that cannot be read, named by its id.
fn forgettable(cx: &Context, repo: &Repository, spec: &str) -> dedup::Result<SnapshotId> {
    match cx.resolve(repo, spec) {
        Ok((id, _)) => Ok(id),
        Err(e @ dedup::Error::UnknownSnapshot(_)) => repo.unreadable_record(spec).ok_or(e),
        Err(e) => Err(e),
    }
}

fn mode(dry_run: bool) -> Mode {
    if dry_run {
        Mode::DryRun
    } else {
        Mode::Apply
    }
}

/// `dedup gc`: exit 1 when it had to pass over packs it could not read.
pub fn gc(cx: &Context, dry_run: bool, json: bool) -> Code {
    let report = cx.writer()?.gc(mode(dry_run), &cx.bar("gc"))?;
    show(&report, json)?;
    Ok(u8::from(!report.unreadable_packs.is_empty()))
}

/// `dedup compact`: under the shared lock, beside writers and readers.
pub fn compact(cx: &Context, json: bool) -> Code {
    show(&cx.shared_writer()?.compact_index(0)?, json)?;
    Ok(0)
}

/// `dedup repair index`: exit 1 when something could not be used as it was.
pub fn repair_index(cx: &Context, json: bool) -> Code {
    let (_repo, report) = cx.with_password(|opts| Repository::repair_index_with(&cx.repo, opts))?;
    show(&report, json)?;
    Ok(u8::from(!report.is_clean()))
}

/// `dedup repair packs`: exit 1 when something was dropped.
pub fn repair_packs(cx: &Context, json: bool) -> Code {
    let report = cx.writer()?.repair_packs(&cx.bar("read packs"))?;
    show(&report, json)?;
    Ok(u8::from(!report.is_clean()))
}

/// `dedup repair history`.
pub fn repair_history(cx: &Context, json: bool) -> Code {
    let report = cx.writer()?.repair_history()?;
    show(&report, json)?;
    Ok(0)
}
