//! An S3-compatible server for tests: `s3s-fs`, a real S3 implementation
//! over a folder, on 127.0.0.1. Each [`S3Server`] runs its own process on a
//! port the kernel gives it; tests stop and restart it to play a store that
//! goes away.

use std::io::BufRead;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const ACCESS_KEY: &str = "dedup-test-access";
pub const SECRET_KEY: &str = "dedup-test-secret-d0-not-print";
pub const BUCKET: &str = "dedup-test";

/// The `s3s-fs` binary: `$DEDUP_S3S_FS`, else where `scripts/test.sh`
/// installs it, else the `PATH`.
fn binary() -> PathBuf {
    if let Some(p) = std::env::var_os("DEDUP_S3S_FS") {
        return PathBuf::from(p);
    }
    if let Some(home) = std::env::var_os("HOME") {
        let p = Path::new(&home).join(".cache/dedup-tools/bin/s3s-fs");
        if p.exists() {
            return p;
        }
    }
    let found = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|d| d.join("s3s-fs"))
            .find(|p| p.exists())
    });
    found.unwrap_or_else(|| {
        panic!(
            "s3s-fs not found: run scripts/test.sh, which installs it, or \
             `cargo install s3s-fs@0.14.1 --features binary --locked --root ~/.cache/dedup-tools`"
        )
    })
}

/// Runs `s3s-fs` over `root` on `port` (0: one the kernel picks) and waits
/// until it says it is listening; returns it with its port, or `None` when
/// it could not listen (it has exited).
fn spawn(root: &Path, port: u16) -> Option<(Child, u16)> {
    let mut child = Command::new(binary())
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
        .arg(root)
        .env("RUST_LOG", "s3s_fs=info")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("s3s-fs starts");
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    // "... server is running at http://127.0.0.1:PORT", printed once bound.
    let listening = lines.by_ref().map_while(Result::ok).find_map(|line| {
        let at = line.split("server is running at http://").nth(1)?;
        let digits: String = at
            .rsplit(':')
            .next()?
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        digits.parse::<u16>().ok()
    });
    // What it logs later is read and dropped, so it never blocks on a
    // full pipe.
    std::thread::spawn(move || lines.for_each(drop));
    if listening.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    listening.map(|port| (child, port))
}

pub struct S3Server {
    pub root: PathBuf,
    pub port: u16,
    child: Option<Child>,
}

impl S3Server {
    /// Starts a server storing into `root` (created, with the test bucket).
    pub fn start(root: &Path) -> S3Server {
        std::fs::create_dir_all(root.join(BUCKET)).unwrap();
        // Port 0: the server binds a free port itself and says which, so no
        // other test (or client socket) can take it between a probe and
        // the bind.
        let (child, port) = spawn(root, 0).expect("s3s-fs listens on a free port");
        S3Server {
            root: root.to_path_buf(),
            port,
            child: Some(child),
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The folder where the server keeps `s3://BUCKET/prefix`.
    pub fn dir(&self, prefix: &str) -> PathBuf {
        self.root.join(BUCKET).join(prefix)
    }

    /// Kills the server at once (SIGKILL), as a crash or a cut cable would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port and folder; returns once it accepts
    /// connections. While it was down, a client socket of another test may
    /// have been given its port for a moment: it tries again until the
    /// port is free.
    pub fn restart(&mut self) {
        self.kill();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some((child, _)) = spawn(&self.root, self.port) {
                self.child = Some(child);
                return;
            }
            assert!(
                Instant::now() < deadline,
                "s3s-fs could not listen on port {} again",
                self.port
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sets the credentials and region a client needs in `cmd`'s
    /// environment (the endpoint goes in the shard's options).
    #[expect(clippy::unused_self, reason = "a server's clients get its settings")]
    pub fn env(&self, cmd: &mut Command) {
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("AWS_") {
                cmd.env_remove(k);
            }
        }
        cmd.env("AWS_ACCESS_KEY_ID", ACCESS_KEY)
            .env("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
            .env("AWS_REGION", "us-east-1");
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// What [`FlakyProxy`] does to a request it picks.
#[derive(Clone, Copy)]
pub enum Fault {
    /// Closes the connection at once.
    Cut,
    /// Stops passing bytes and holds the connection open for a while, so
    /// that the client times out.
    Stall,
    /// Passes the whole request on, then closes the connection instead of
    /// passing the answer back: the upload landed, the client cannot know.
    DropResponse,
}

/// A TCP proxy in front of a server that spoils the next `cuts` large
/// requests (once 64 KiB of a request body have passed), as a flaky
/// network would: for testing that uploads cut off mid-flight are retried.
pub struct FlakyProxy {
    pub port: u16,
    cuts_left: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    gets: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl FlakyProxy {
    pub fn start(upstream: u16, cuts: usize, fault: Fault) -> FlakyProxy {
        use std::io::{Read, Write};
        use std::sync::atomic::Ordering::SeqCst;
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let cuts_left = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(cuts));
        let left = cuts_left.clone();
        let gets = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let counted = gets.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
                    continue;
                };
                let (mut c_in, mut s_out) =
                    (client.try_clone().unwrap(), server.try_clone().unwrap());
                let (mut s_in, mut c_out) = (server, client);
                let (left, counted) = (left.clone(), counted.clone());
                let drop_answer = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
                let dropping = drop_answer.clone();
                std::thread::spawn(move || {
                    let mut buf = [0u8; 16 * 1024];
                    let (mut passed, mut chosen) = (0usize, false);
                    // What came since the last full line, so that a request
                    // line split between two reads is still seen whole.
                    let mut tail: Vec<u8> = Vec::new();
                    loop {
                        let n = match c_in.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        passed += n;
                        tail.extend_from_slice(&buf[..n]);
                        if let Some(end) = tail.iter().rposition(|&b| b == b'\n') {
                            let lines = String::from_utf8_lossy(&tail[..end]).into_owned();
                            let mut counted = counted.lock().unwrap();
                            for line in lines.split("\r\n") {
                                if line.starts_with("GET /") {
                                    counted.push(line.to_string());
                                } else if line.to_ascii_lowercase().starts_with("range:") {
                                    if let Some(last) = counted.last_mut() {
                                        last.push(' ');
                                        last.push_str(line);
                                    }
                                }
                            }
                            tail.drain(..=end);
                        }
                        if !chosen
                            && passed > 64 * 1024
                            && left
                                .fetch_update(SeqCst, SeqCst, |l| l.checked_sub(1))
                                .is_ok()
                        {
                            chosen = true;
                            match fault {
                                Fault::Cut => break,
                                Fault::Stall => {
                                    std::thread::sleep(Duration::from_secs(8));
                                    break;
                                }
                                Fault::DropResponse => dropping.store(true, SeqCst),
                            }
                        }
                        if s_out.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                    let _ = c_in.shutdown(std::net::Shutdown::Both);
                    let _ = s_out.shutdown(std::net::Shutdown::Both);
                });
                std::thread::spawn(move || {
                    let mut buf = [0u8; 16 * 1024];
                    while let Ok(n @ 1..) = s_in.read(&mut buf) {
                        if drop_answer.load(SeqCst) || c_out.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                    let _ = c_out.shutdown(std::net::Shutdown::Both);
                });
            }
        });
        FlakyProxy {
            port,
            cuts_left,
            gets,
        }
    }

    /// The request lines of the GETs passed on so far (meaningful while
    /// nothing is uploaded, whose bodies could hold anything).
    pub fn gets(&self) -> Vec<String> {
        self.gets.lock().unwrap().clone()
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Cuts not yet made.
    pub fn cuts_left(&self) -> usize {
        self.cuts_left.load(std::sync::atomic::Ordering::SeqCst)
    }
}
