//! Cutting a byte stream into chunks.
//!
//! Two modes, chosen at `init` and stored in the repository config:
//!
//! * [`ChunkerConfig::Fixed`]: every chunk is `size` bytes, the last one
//!   shorter. Cheapest to compute, but one inserted byte shifts every later
//!   boundary, so nothing after an insertion deduplicates.
//! * [`ChunkerConfig::FastCdc`]: content-defined boundaries from the
//!   `fastcdc` crate's v2020 streaming chunker (gear hash with normalized
//!   chunking, level 1). A boundary depends only on the bytes just before it,
//!   so an insertion disturbs only the chunk or two around it. Chunks are at
//!   least `min` and at most `max` bytes, `avg` on average.
//!
//! Owns cutting only: no hashing, no I/O policy. Memory is bounded by `max`
//! (or `size`) whatever the stream length; a stream is never read whole.

use std::io::{self, Read};

use fastcdc::v2020::{Normalization, StreamCDC};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Smallest chunk size any mode accepts (the fastcdc crate's floor).
pub const MIN_CHUNK: u32 = 64;
/// Largest chunk size any mode accepts (the fastcdc crate's ceiling).
pub const MAX_CHUNK: u32 = 16 * 1024 * 1024;

/// How a repository cuts data; stored in its config.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "lowercase")]
pub enum ChunkerConfig {
    /// Fixed-size chunks.
    Fixed {
        /// Bytes per chunk.
        size: u32,
    },
    /// FastCDC content-defined chunks.
    #[serde(rename = "fastcdc")]
    FastCdc {
        /// Smallest chunk (except a stream's last).
        min: u32,
        /// Target average; a power of two.
        avg: u32,
        /// Largest chunk.
        max: u32,
        /// XOR-ed into the gear table (fastcdc's seed): 0, the plain
        /// chunker, unless the repository is encrypted. There it is random,
        /// kept in the sealed config, so the sizes of the chunks a known
        /// file is cut into say nothing to the store.
        #[serde(default, skip_serializing_if = "is_zero")]
        seed: u64,
    },
}

impl Default for ChunkerConfig {
    fn default() -> Self {
        ChunkerConfig::fastcdc(DEFAULT_CHUNK)
    }
}

/// The chunk size (fixed) or average chunk size (FastCDC) when none is given.
pub const DEFAULT_CHUNK: u32 = 64 * 1024;

impl ChunkerConfig {
    /// FastCDC with whichever sizes are given; the rest default as in
    /// [`fastcdc`](Self::fastcdc), around an average of [`DEFAULT_CHUNK`].
    pub fn fastcdc_with(avg: Option<u32>, min: Option<u32>, max: Option<u32>) -> Self {
        let avg = avg.unwrap_or(DEFAULT_CHUNK);
        ChunkerConfig::FastCdc {
            min: min.unwrap_or(avg / 4),
            avg,
            max: max.unwrap_or(avg.saturating_mul(4)),
            seed: 0,
        }
    }

    /// Fixed-size chunks of `size`, or of [`DEFAULT_CHUNK`] bytes.
    pub fn fixed(size: Option<u32>) -> Self {
        ChunkerConfig::Fixed {
            size: size.unwrap_or(DEFAULT_CHUNK),
        }
    }

    /// FastCDC with `min = avg / 4` and `max = avg * 4`, the spread the
    /// FastCDC paper recommends. Call [`validate`](Self::validate) before use.
    pub fn fastcdc(avg: u32) -> Self {
        Self::fastcdc_with(Some(avg), None, None)
    }

    /// Refuses sizes the chunker cannot honour, with a message saying why.
    pub fn validate(&self) -> Result<()> {
        let in_range = |what: &'static str, v: u32| {
            if (MIN_CHUNK..=MAX_CHUNK).contains(&v) {
                Ok(())
            } else {
                Err(Error::invalid(
                    what,
                    format!("{v} bytes is outside {MIN_CHUNK} B ..= 16 MiB"),
                ))
            }
        };
        match *self {
            ChunkerConfig::Fixed { size } => in_range("chunk size", size),
            ChunkerConfig::FastCdc { min, avg, max, .. } => {
                in_range("minimum chunk size", min)?;
                in_range("average chunk size", avg)?;
                in_range("maximum chunk size", max)?;
                if !avg.is_power_of_two() {
                    return Err(Error::invalid(
                        "average chunk size",
                        format!("{avg} is not a power of two"),
                    ));
                }
                if !(256..=4 * 1024 * 1024).contains(&avg) {
                    return Err(Error::invalid(
                        "average chunk size",
                        format!("{avg} is outside 256 B ..= 4 MiB"),
                    ));
                }
                if max < 1024 {
                    return Err(Error::invalid(
                        "maximum chunk size",
                        format!("{max} is below 1 KiB"),
                    ));
                }
                if min > avg || avg > max {
                    return Err(Error::invalid(
                        "chunk sizes",
                        format!("need min <= avg <= max, got {min} / {avg} / {max}"),
                    ));
                }
                if min % 2 != 0 || max % 2 != 0 {
                    return Err(Error::invalid(
                        "chunk sizes",
                        format!("min and max must be even, got {min} / {max}"),
                    ));
                }
                Ok(())
            }
        }
    }

    /// The largest chunk this configuration can produce.
    pub fn max_chunk(&self) -> u32 {
        match *self {
            ChunkerConfig::Fixed { size } => size,
            ChunkerConfig::FastCdc { max, .. } => max,
        }
    }

    /// Chunk lengths for bytes already in memory: the same boundaries
    /// [`chunks`](Self::chunks) finds in a stream of them (a property test
    /// holds the two together), without the stream's copying.
    pub fn cut_slice(&self, data: &[u8]) -> Vec<usize> {
        match *self {
            ChunkerConfig::Fixed { size } => data.chunks(size as usize).map(<[u8]>::len).collect(),
            ChunkerConfig::FastCdc {
                min,
                avg,
                max,
                seed,
            } => fastcdc::v2020::FastCDC::with_level_and_seed(
                data,
                min as usize,
                avg as usize,
                max as usize,
                Normalization::Level1,
                seed,
            )
            .map(|c| c.length)
            .collect(),
        }
    }

    /// [`cut_slice`](Self::cut_slice) of `data` on up to `pieces` cores, with
    /// the same result. With `eof` false, `data` is the front of a longer
    /// stream: its last chunk, which more data could still change, is left
    /// out (cut it again with the bytes that follow).
    ///
    /// FastCDC's next cut depends only on where the previous one was, so
    /// each piece of `data` is cut from its own start as if a chunk began
    /// there, all at once. Those guesses are then joined in order: from the
    /// last true cut, the serial chunker runs on until it reaches a cut the
    /// next piece also made; from there on that piece's cuts are the true
    /// ones. Content-defined cuts meet again within a chunk or two, so the
    /// serial part is a few chunks per piece.
    #[cfg(feature = "engine")]
    pub fn cut_parallel(&self, data: &[u8], eof: bool, pieces: usize) -> Vec<usize> {
        use rayon::prelude::*;
        let mut lengths = match *self {
            ChunkerConfig::Fixed { .. } => self.cut_slice(data),
            ChunkerConfig::FastCdc {
                min,
                avg,
                max,
                seed,
            } => {
                let cut = Cutter {
                    data,
                    min: min as usize,
                    avg: avg as usize,
                    max: max as usize,
                    seed,
                };
                let n = data.len();
                let pieces = pieces.clamp(1, (n / (4 * max as usize)).max(1));
                let bounds: Vec<usize> = (0..=pieces).map(|j| j * n / pieces).collect();
                let guesses: Vec<Vec<usize>> = (0..pieces)
                    .into_par_iter()
                    .map(|j| cut.ends(bounds[j], |end| end >= bounds[j + 1]))
                    .collect();
                let mut ends = Vec::with_capacity(n / avg as usize + 1);
                for (j, guess) in guesses.iter().enumerate() {
                    let from = ends.last().copied().unwrap_or(0);
                    if from >= n {
                        break;
                    }
                    if j == 0 {
                        ends.extend_from_slice(guess);
                    } else if let Ok(i) = guess.binary_search(&from) {
                        ends.extend_from_slice(&guess[i + 1..]);
                    } else {
                        let next = bounds[j + 1];
                        let serial =
                            cut.ends(from, |end| end >= next || guess.binary_search(&end).is_ok());
                        let met = *serial.last().expect("a cut before the end");
                        ends.extend_from_slice(&serial);
                        if let Ok(i) = guess.binary_search(&met) {
                            ends.extend_from_slice(&guess[i + 1..]);
                        }
                    }
                }
                let mut at = 0;
                ends.into_iter()
                    .map(|end| {
                        let len = end - at;
                        at = end;
                        len
                    })
                    .collect()
            }
        };
        if !eof {
            lengths.pop();
        }
        lengths
    }

    /// Cuts `source` into chunks. The configuration must be valid.
    pub fn chunks<R: Read>(&self, source: R) -> Chunks<R> {
        match *self {
            ChunkerConfig::Fixed { size } => Chunks::Fixed {
                source,
                size: size as usize,
                done: false,
            },
            ChunkerConfig::FastCdc {
                min,
                avg,
                max,
                seed,
            } => Chunks::FastCdc(StreamCDC::with_level_and_seed(
                source,
                min as usize,
                avg as usize,
                max as usize,
                Normalization::Level1,
                seed,
            )),
        }
    }
}

#[allow(clippy::trivially_copy_pass_by_ref)] // serde's `skip_serializing_if` passes one
fn is_zero(seed: &u64) -> bool {
    *seed == 0
}

impl ChunkerConfig {
    /// The seed FastCDC is keyed with: 0 for an unkeyed chunker (and for
    /// fixed-size cutting).
    pub fn seed(&self) -> u64 {
        match self {
            ChunkerConfig::FastCdc { seed, .. } => *seed,
            ChunkerConfig::Fixed { .. } => 0,
        }
    }

    /// This configuration keyed with a random seed (FastCDC; fixed-size
    /// cutting has nothing to key).
    pub fn with_random_seed(self) -> Result<Self> {
        match self {
            ChunkerConfig::FastCdc { min, avg, max, .. } => {
                let mut seed = [0u8; 8];
                getrandom::fill(&mut seed)
                    .map_err(|e| Error::invalid("chunker seed", e.to_string()))?;
                Ok(ChunkerConfig::FastCdc {
                    min,
                    avg,
                    max,
                    seed: u64::from_le_bytes(seed) | 1,
                })
            }
            fixed @ ChunkerConfig::Fixed { .. } => Ok(fixed),
        }
    }
}

impl std::fmt::Display for ChunkerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ChunkerConfig::Fixed { size } => write!(f, "fixed {size} B"),
            ChunkerConfig::FastCdc { min, avg, max, .. } => {
                write!(f, "fastcdc min {min} B, avg {avg} B, max {max} B")
            }
        }
    }
}

/// FastCDC over one buffer, from any offset.
#[cfg(feature = "engine")]
struct Cutter<'a> {
    data: &'a [u8],
    min: usize,
    avg: usize,
    max: usize,
    seed: u64,
}

#[cfg(feature = "engine")]
impl Cutter<'_> {
    /// The ends (offsets into the buffer) of the chunks cut from `from`,
    /// up to the first end that satisfies `stop` or the buffer's end.
    fn ends(&self, from: usize, stop: impl Fn(usize) -> bool) -> Vec<usize> {
        let mut ends = Vec::new();
        let cdc = fastcdc::v2020::FastCDC::with_level_and_seed(
            &self.data[from..],
            self.min,
            self.avg,
            self.max,
            Normalization::Level1,
            self.seed,
        );
        for chunk in cdc {
            let end = from + chunk.offset + chunk.length;
            ends.push(end);
            if stop(end) {
                break;
            }
        }
        ends
    }
}

/// An iterator of chunks (raw bytes, in order) over a reader.
pub enum Chunks<R: Read> {
    /// Fixed-size cutting.
    Fixed {
        /// The stream.
        source: R,
        /// Bytes per chunk.
        size: usize,
        /// The stream has ended.
        done: bool,
    },
    /// FastCDC cutting.
    FastCdc(StreamCDC<R>),
}

impl<R: Read> Iterator for Chunks<R> {
    type Item = io::Result<Vec<u8>>;

    fn next(&mut self) -> Option<Self::Item> {
        match self {
            Chunks::Fixed { source, size, done } => {
                if *done {
                    return None;
                }
                let mut buf = vec![0u8; *size];
                let mut filled = 0;
                while filled < buf.len() {
                    match source.read(&mut buf[filled..]) {
                        Ok(0) => {
                            *done = true;
                            break;
                        }
                        Ok(n) => filled += n,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => {
                            *done = true;
                            return Some(Err(e));
                        }
                    }
                }
                if filled == 0 {
                    return None;
                }
                buf.truncate(filled);
                Some(Ok(buf))
            }
            Chunks::FastCdc(cdc) => cdc
                .next()
                .map(|r| r.map(|c| c.data).map_err(io::Error::from)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_sizes_are_refused_with_a_reason() {
        let bad = [
            ChunkerConfig::Fixed { size: 0 },
            ChunkerConfig::Fixed {
                size: MAX_CHUNK + 1,
            },
            ChunkerConfig::FastCdc {
                min: 8192,
                avg: 4096,
                max: 16384,
                seed: 0,
            },
            ChunkerConfig::FastCdc {
                min: 1024,
                avg: 5000,
                max: 16384,
                seed: 0,
            },
            ChunkerConfig::FastCdc {
                min: 1024,
                avg: 4096,
                max: 2048,
                seed: 0,
            },
            ChunkerConfig::FastCdc {
                min: 0,
                avg: 4096,
                max: 16384,
                seed: 0,
            },
            ChunkerConfig::fastcdc(1 << 30),
        ];
        for config in bad {
            let err = config.validate().unwrap_err().to_string();
            assert!(err.starts_with("invalid "), "{config:?}: {err}");
        }
        ChunkerConfig::default().validate().unwrap();
        ChunkerConfig::Fixed { size: 65536 }.validate().unwrap();
    }

    /// Seeded bytes: random where `noisy`, else long runs of a few values
    /// (where content-defined cuts are rare and max-size cuts common).
    fn bytes(len: usize, seed: u64, noisy: bool) -> Vec<u8> {
        let mut x = seed | 1;
        (0..len)
            .map(|i| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                if noisy || (i / 4096) % 3 == 0 {
                    x as u8
                } else {
                    (x % 3) as u8
                }
            })
            .collect()
    }

    #[test]
    fn a_stream_cut_window_by_window_on_many_cores_has_the_serial_boundaries() {
        for (seed, noisy) in [(1, true), (2, false)] {
            let data = bytes(9 << 20, seed, noisy);
            let keyed = ChunkerConfig::fastcdc(4096).with_random_seed().unwrap();
            for config in [
                ChunkerConfig::default(),
                ChunkerConfig::fastcdc(4096),
                keyed,
            ] {
                let serial: Vec<usize> =
                    config.chunks(&data[..]).map(|c| c.unwrap().len()).collect();
                for pieces in [2, 3, 8] {
                    // As ingest reads a large file: a window at a time,
                    // its uncertain last chunk carried into the next.
                    let window = 1 << 20;
                    let (mut at, mut cut) = (0, Vec::new());
                    while at < data.len() {
                        let end = (at + window).min(data.len());
                        let lengths =
                            config.cut_parallel(&data[at..end], end == data.len(), pieces);
                        at += lengths.iter().sum::<usize>();
                        cut.extend(lengths);
                    }
                    assert_eq!(cut, serial, "{config}, {pieces} pieces, seed {seed}");
                }
            }
        }
    }

    #[test]
    fn a_seed_moves_the_cuts_and_only_an_encrypted_config_gets_one() {
        let data = bytes(4 << 20, 3, true);
        let plain = ChunkerConfig::fastcdc(4096);
        let (a, b) = (
            plain.with_random_seed().unwrap(),
            plain.with_random_seed().unwrap(),
        );
        let cuts = |c: ChunkerConfig| c.cut_slice(&data);
        assert_ne!(cuts(a), cuts(plain));
        assert_ne!(cuts(a), cuts(b));
        assert_eq!(cuts(a), cuts(a), "a seed cuts the same way every time");
        // Kept in the config, out of what it prints.
        assert!(!a.to_string().contains("seed"));
        let fixed = ChunkerConfig::Fixed { size: 4096 };
        assert_eq!(fixed.with_random_seed().unwrap(), fixed);
    }

    #[test]
    fn empty_input_has_no_chunks_in_either_mode() {
        for config in [
            ChunkerConfig::Fixed { size: 4096 },
            ChunkerConfig::fastcdc(4096),
        ] {
            assert_eq!(config.chunks(&b""[..]).count(), 0);
        }
    }
}
