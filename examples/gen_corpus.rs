//! Seeded corpora for `benches/compare.sh`.
//!
//! ```text
//! gen_corpus small  DIR FILES      a tree of FILES small files of mixed sizes and kinds
//! gen_corpus large  DIR FILES MIB  FILES large files of MIB MiB each
//! gen_corpus huge   DIR MIB        one file of MIB MiB
//! gen_corpus mutate DIR SEED       a new version of a small-file tree: ~2% of files
//!                                  edited, ~1% added, ~0.5% deleted
//! gen_corpus shift  DIR SEED       a new version of large files: blocks inserted and
//!                                  deleted at random places, shifting what follows
//! ```
//!
//! Content is a mix a backup sees: text-like (compressible, repetitive
//! vocabulary) and random (incompressible). Changed files are written to a
//! temporary name and renamed over the old one, so a hard-linked copy of the
//! tree keeps the previous version.

use std::fs;
use std::path::{Path, PathBuf};

use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn content(rng: &mut ChaCha8Rng, len: usize) -> Vec<u8> {
    const WORDS: &[&str] = &[
        "the",
        "data",
        "block",
        "store",
        "index",
        "chunk",
        "fn",
        "let",
        "mut",
        "return",
        "struct",
        "impl",
        "match",
        "error",
        "value",
        "config",
        "snapshot",
        "restore",
        "pub",
        "use",
        "self",
        "println!",
        "0x1f",
        "{",
        "}",
        "(",
        ")",
        ";",
        "=>",
        "Result<()>",
        "if",
        "else",
        "for",
        "in",
        "while",
        "loop",
    ];
    let mut out = Vec::with_capacity(len);
    if rng.gen_bool(0.35) {
        out.resize(len, 0);
        rng.fill_bytes(&mut out);
        return out;
    }
    while out.len() < len {
        out.extend_from_slice(WORDS[rng.gen_range(0..WORDS.len())].as_bytes());
        out.push(if rng.gen_ratio(1, 9) { b'\n' } else { b' ' });
    }
    out.truncate(len);
    out
}

fn small_size(rng: &mut ChaCha8Rng) -> usize {
    match rng.gen_range(0..100) {
        0..=69 => rng.gen_range(0..8 << 10),
        70..=94 => rng.gen_range(8 << 10..64 << 10),
        _ => rng.gen_range(64 << 10..256 << 10),
    }
}

fn write_atomic(path: &Path, data: &[u8]) {
    let tmp = path.with_extension("gen-tmp");
    fs::write(&tmp, data).unwrap();
    fs::rename(&tmp, path).unwrap();
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out.sort();
    out
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize| {
        args.get(i)
            .unwrap_or_else(|| panic!("missing argument {i}; see the file's docs"))
    };
    let dir = PathBuf::from(arg(1));
    match arg(0).as_str() {
        "small" => {
            let files: usize = arg(2).parse().unwrap();
            let mut rng = ChaCha8Rng::seed_from_u64(1);
            for i in 0..files {
                let sub = dir.join(format!("d{:03}/e{:02}", i / 1000, (i / 100) % 10));
                fs::create_dir_all(&sub).unwrap();
                let len = small_size(&mut rng);
                fs::write(sub.join(format!("f{i:06}.dat")), content(&mut rng, len)).unwrap();
            }
        }
        "large" | "huge" => {
            let (files, mib): (usize, usize) = if arg(0) == "large" {
                (arg(2).parse().unwrap(), arg(3).parse().unwrap())
            } else {
                (1, arg(2).parse().unwrap())
            };
            fs::create_dir_all(&dir).unwrap();
            let mut rng = ChaCha8Rng::seed_from_u64(2);
            for i in 0..files {
                let mut data = Vec::with_capacity(mib << 20);
                while data.len() < mib << 20 {
                    let piece = content(&mut rng, 1 << 20);
                    data.extend_from_slice(&piece);
                }
                fs::write(dir.join(format!("large-{i}.bin")), data).unwrap();
            }
        }
        "mutate" => {
            let mut rng = ChaCha8Rng::seed_from_u64(arg(2).parse().unwrap());
            let files = files_under(&dir);
            for f in &files {
                let roll = rng.gen_range(0..1000);
                if roll < 20 {
                    let mut data = fs::read(f).unwrap();
                    let at = if data.is_empty() {
                        0
                    } else {
                        rng.gen_range(0..data.len())
                    };
                    let len = rng.gen_range(1..4096);
                    let edit = content(&mut rng, len);
                    data.splice(at..at, edit);
                    write_atomic(f, &data);
                } else if roll < 25 {
                    fs::remove_file(f).unwrap();
                } else if roll < 35 {
                    let len = small_size(&mut rng);
                    fs::write(
                        f.with_extension(format!("new{}", rng.gen::<u32>())),
                        content(&mut rng, len),
                    )
                    .unwrap();
                }
            }
        }
        "shift" => {
            let mut rng = ChaCha8Rng::seed_from_u64(arg(2).parse().unwrap());
            for f in files_under(&dir) {
                let mut data = fs::read(&f).unwrap();
                for _ in 0..10 {
                    let at = rng.gen_range(0..data.len());
                    let len = rng.gen_range(1..100_000);
                    let edit = content(&mut rng, len);
                    data.splice(at..at, edit);
                    let at = rng.gen_range(0..data.len() - 100_000);
                    let len = rng.gen_range(1..100_000);
                    data.drain(at..at + len);
                }
                write_atomic(&f, &data);
            }
        }
        other => panic!("unknown corpus {other:?}; see the file's docs"),
    }
}
