//! Embedding `dedup`: create a repository, ingest a folder twice, restore it,
//! store a blob, and print the dedup report.
//!
//! ```sh
//! cargo run --release --example embed -- /path/to/some/folder
//! ```

use std::path::PathBuf;

use dedup::{InitOptions, Quiet, Repository};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let source: PathBuf = std::env::args_os()
        .nth(1)
        .map_or_else(|| "src".into(), PathBuf::from);
    let work = tempfile::tempdir()?;
    let repo = Repository::init(work.path().join("repo"), &InitOptions::default())?;

    let first = repo.ingest(std::slice::from_ref(&source), &Quiet)?;
    let second = repo.ingest(&[source], &Quiet)?;
    println!(
        "snapshot {}: {} bytes, {} new\nsnapshot {}: {} bytes, {} new",
        first.id,
        first.record.summary.logical_bytes,
        first.record.summary.new_bytes,
        second.id,
        second.record.summary.logical_bytes,
        second.record.summary.new_bytes,
    );

    let restored = work.path().join("restored");
    let outcome = repo.restore(&second.id, &restored, &Quiet)?;
    println!("restored {} files, {} bytes", outcome.files, outcome.bytes);

    let id = repo.put(b"any bytes at all")?;
    assert_eq!(repo.get(&id)?, b"any bytes at all");
    println!("blob {id}");

    print!("{}", repo.report()?);
    Ok(())
}
