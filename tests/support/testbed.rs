//! Drives the real peers of `testbed/` (host.sh, client.sh), the proxy under test and a
//! loopback capture, each bounded in time and stopped by its PID / process group / state
//! directory — also when a check fails (Drop guards). Nothing is stopped by name.

// Real peers run in real time: this harness needs a wall clock (the sans-IO core never does).
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

/// `testbed/` of this repository.
pub(crate) fn testbed_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("testbed")
}

/// Every external program the suite (and the testbed scripts it calls) runs, with the Debian
/// package that provides it. `testbed/install.sh` installs all of them.
pub(crate) const TOOLS: &[(&str, &str)] = &[
    ("xrdp", "xrdp"),
    ("xfreerdp", "freerdp2-x11"),
    ("freerdp-shadow-cli", "freerdp2-shadow-x11"),
    ("winpr-hash", "winpr-utils"),
    ("rdesktop", "rdesktop"),
    ("Xvfb", "xvfb"),
    ("dumpcap", "tshark (wireshark-common)"),
    ("openssl", "openssl"),
    ("perl", "perl-base"),
    ("ss", "iproute2"),
    ("ps", "procps"),
    ("kill", "procps"),
    ("setsid", "util-linux"),
    ("setpriv", "util-linux"),
    ("stdbuf", "coreutils"),
    ("timeout", "coreutils"),
];

fn on_path(cmd: &str) -> bool {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).any(|dir| {
        let p = dir.join(cmd);
        fs::metadata(&p)
            .map(|m| {
                use std::os::unix::fs::PermissionsExt;
                m.is_file() && m.permissions().mode() & 0o111 != 0
            })
            .unwrap_or(false)
    }) || ["/usr/sbin", "/sbin"]
        .iter()
        .any(|d| Path::new(d).join(cmd).is_file())
}

/// The tools of [`TOOLS`] that cannot be found, as "tool (package)".
pub(crate) fn missing_tools() -> Vec<String> {
    TOOLS
        .iter()
        .filter(|(t, _)| !on_path(t))
        .map(|(t, p)| format!("{t} (package {p})"))
        .collect()
}

/// The effective uid, from /proc (no libc needed).
pub(crate) fn effective_uid() -> Option<u32> {
    let status = fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

/// Sockets on loopback/any address, from /proc/net/tcp{,6}: (local port, state).
fn tcp_sockets() -> Vec<(u16, u8)> {
    let mut out = Vec::new();
    for f in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = fs::read_to_string(f) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let mut it = line.split_whitespace();
            let (Some(_), Some(local), Some(_), Some(st)) =
                (it.next(), it.next(), it.next(), it.next())
            else {
                continue;
            };
            let Some(port) = local.rsplit(':').next() else {
                continue;
            };
            if let (Ok(port), Ok(st)) = (u16::from_str_radix(port, 16), u8::from_str_radix(st, 16))
            {
                out.push((port, st));
            }
        }
    }
    out
}

/// True when something listens on the port.
pub(crate) fn listening(port: u16) -> bool {
    tcp_sockets().iter().any(|&(p, st)| p == port && st == 0x0A)
}

/// Hands out ports from 24000-24999 (below the ephemeral range, see testbed/README.md "Ports")
/// that have no socket at all on them, TIME-WAIT included, never the same one twice per run
/// (until it wraps). The start depends on the PID so that two suites running at once rarely
/// pick the same ports. Shared by the suite's worker threads.
pub(crate) struct Ports {
    next: std::sync::Mutex<u16>,
}

impl Ports {
    const LO: u16 = 24000;
    const HI: u16 = 24999;

    pub(crate) fn new() -> Self {
        let span = u32::from(Self::HI - Self::LO + 1);
        let off = u16::try_from(std::process::id().wrapping_mul(97) % span).unwrap_or(0);
        Self {
            next: std::sync::Mutex::new(Self::LO + off),
        }
    }

    pub(crate) fn alloc(&self) -> Result<u16, String> {
        let used: Vec<u16> = tcp_sockets().into_iter().map(|(p, _)| p).collect();
        let mut next = self.next.lock().map_err(|_| "port allocator poisoned")?;
        for _ in Self::LO..=Self::HI {
            let p = *next;
            *next = if p >= Self::HI { Self::LO } else { p + 1 };
            if !used.contains(&p) {
                return Ok(p);
            }
        }
        Err("no free port in 24000-24999".into())
    }
}

/// KEY=VALUE lines (host.sh, client.sh output).
pub(crate) fn key_values(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.trim().split_once('='))
        .filter(|(k, _)| !k.is_empty() && k.chars().all(|c| c.is_ascii_uppercase() || c == '_'))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Sends a signal to a whole process group, by its id (the `kill` program: no libc here).
fn signal_group(pgid: u32, sig: &str) {
    if pgid > 1 {
        let _ = Command::new("kill")
            .args([format!("-{sig}"), "--".into(), format!("-{pgid}")])
            .stderr(Stdio::null())
            .status();
    }
}

fn signal_pid(pid: u32, sig: &str) {
    if pid > 1 {
        let _ = Command::new("kill")
            .args([format!("-{sig}"), pid.to_string()])
            .stderr(Stdio::null())
            .status();
    }
}

/// A child in its own process group, stopped (TERM, then KILL) with its group when dropped.
struct GroupGuard {
    child: Child,
    done: bool,
}

impl GroupGuard {
    fn stop(&mut self, grace: Duration) {
        if self.done {
            return;
        }
        let pgid = self.child.id();
        signal_group(pgid, "TERM");
        let until = Instant::now() + grace;
        while Instant::now() < until {
            if let Ok(Some(_)) = self.child.try_wait() {
                self.done = true;
                break;
            }
            thread::sleep(Duration::from_millis(50));
        }
        // whatever else is left in the group
        signal_group(pgid, "KILL");
        let _ = self.child.wait();
        self.done = true;
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(3));
    }
}

/// The result of a bounded run.
#[derive(Debug)]
pub(crate) struct Run {
    pub(crate) stdout: String,
    pub(crate) stderr: String,
    pub(crate) code: Option<i32>,
    pub(crate) timed_out: bool,
    pub(crate) elapsed: Duration,
}

/// Runs `cmd` in its own process group with stdout/stderr in `<log>.out` / `<log>.err`,
/// waits at most `limit`, then stops the group (TERM, KILL after 5 s).
pub(crate) fn run_bounded(cmd: &mut Command, limit: Duration, log: &Path) -> Result<Run, String> {
    let out_p = PathBuf::from(format!("{}.out", log.display()));
    let err_p = PathBuf::from(format!("{}.err", log.display()));
    let out = File::create(&out_p).map_err(|e| format!("{}: {e}", out_p.display()))?;
    let err = File::create(&err_p).map_err(|e| format!("{}: {e}", err_p.display()))?;
    let start = Instant::now();
    let child = cmd
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .process_group(0)
        .spawn()
        .map_err(|e| format!("cannot run {cmd:?}: {e}"))?;
    let mut g = GroupGuard { child, done: false };
    let mut code = None;
    let mut timed_out = false;
    loop {
        match g.child.try_wait() {
            Ok(Some(st)) => {
                code = st.code();
                g.done = true;
                break;
            }
            Ok(None) => {}
            Err(e) => return Err(format!("waiting for {cmd:?}: {e}")),
        }
        if start.elapsed() > limit {
            timed_out = true;
            g.stop(Duration::from_secs(5));
            break;
        }
        thread::sleep(Duration::from_millis(50));
    }
    Ok(Run {
        stdout: fs::read_to_string(&out_p).unwrap_or_default(),
        stderr: fs::read_to_string(&err_p).unwrap_or_default(),
        code,
        timed_out,
        elapsed: start.elapsed(),
    })
}

/// A host started with `host.sh start`; stopped with `host.sh stop STATE` when dropped.
pub(crate) struct Host {
    pub(crate) info: BTreeMap<String, String>,
    pub(crate) port: u16,
    state: String,
    pid: u32,
}

impl Host {
    /// Starts `scenario` on a free port. A failed start is tried again (up to 3 times, on
    /// another port): the chosen port may have been taken in between, and rarely an Xvfb that
    /// has just reported its display cannot be opened (testbed/README.md "Known rough edges").
    /// `retries` tells how many attempts failed, for the report.
    pub(crate) fn start(
        scenario: &str,
        ports: &Ports,
        certs: &Path,
        log: &Path,
        retries: &mut Vec<String>,
    ) -> Result<Host, String> {
        let mut last = String::new();
        for attempt in 1..=3 {
            if attempt > 1 {
                retries.push(last.lines().take(3).collect::<Vec<_>>().join(" / "));
                thread::sleep(Duration::from_secs(2));
            }
            let log = log.with_file_name(format!(
                "{}{}",
                log.file_name().and_then(|n| n.to_str()).unwrap_or("host"),
                if attempt > 1 {
                    format!(".attempt{attempt}")
                } else {
                    String::new()
                }
            ));
            let log = log.as_path();
            let port = ports.alloc()?;
            let run = run_bounded(
                Command::new(testbed_dir().join("host.sh"))
                    .arg("start")
                    .arg(scenario)
                    .arg(port.to_string())
                    .arg("--certs")
                    .arg(certs),
                Duration::from_secs(60),
                log,
            )?;
            let info = key_values(&run.stdout);
            if run.code == Some(0) {
                let state = info.get("STATE").cloned().unwrap_or_default();
                let pid = info.get("PID").and_then(|p| p.parse().ok()).unwrap_or(0);
                if state.is_empty() || pid == 0 {
                    return Err(format!(
                        "host.sh start printed no STATE/PID:\n{}",
                        run.stdout
                    ));
                }
                return Ok(Host {
                    info,
                    port,
                    state,
                    pid,
                });
            }
            // host.sh cleans up after a failed start itself
            last = format!(
                "host.sh start {scenario} {port} failed (exit {:?}{}):\n{}{}",
                run.code,
                if run.timed_out { ", timed out" } else { "" },
                run.stdout,
                run.stderr
            );
        }
        Err(last)
    }

    pub(crate) fn ca(&self) -> Option<&str> {
        self.info.get("CA").map(String::as_str)
    }

    /// The host's own log (xrdp log / shadow console / raw host), for a failure message.
    pub(crate) fn log_tail(&self, lines: usize) -> String {
        let p = Path::new(&self.state).join("host.log");
        let text = fs::read_to_string(p).unwrap_or_default();
        let v: Vec<&str> = text.lines().collect();
        v[v.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        let ok = Command::new(testbed_dir().join("host.sh"))
            .arg("stop")
            .arg(&self.state)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if !ok {
            signal_group(self.pid, "KILL");
        }
    }
}

/// dumpcap on `lo`, filtered on the given ports, writing legacy pcap (`-P`).
pub(crate) struct Capture {
    child: Option<Child>,
    pub(crate) path: PathBuf,
}

impl Capture {
    pub(crate) fn start(ports: &[u16], path: &Path) -> Result<Capture, String> {
        let filter = ports
            .iter()
            .map(|p| format!("tcp port {p}"))
            .collect::<Vec<_>>()
            .join(" or ");
        let _ = fs::remove_file(path);
        let err_p = path.with_extension("dumpcap.log");
        let err = File::create(&err_p).map_err(|e| e.to_string())?;
        let child = Command::new("dumpcap")
            // -a: a bound of its own, should this process die without dropping the guard
            .args([
                "-q",
                "-P",
                "-i",
                "lo",
                "-a",
                "duration:600",
                "-f",
                &filter,
                "-w",
            ])
            .arg(path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(err)
            .process_group(0)
            .spawn()
            .map_err(|e| format!("cannot run dumpcap: {e}"))?;
        let mut cap = Capture {
            child: Some(child),
            path: path.to_path_buf(),
        };
        let start = Instant::now();
        loop {
            let log = fs::read_to_string(&err_p).unwrap_or_default();
            if log.contains("Capturing on") {
                break;
            }
            if let Some(Ok(Some(_))) = cap.child.as_mut().map(Child::try_wait) {
                return Err(format!("dumpcap exited: {log}"));
            }
            if start.elapsed() > Duration::from_secs(15) {
                return Err(format!("dumpcap did not start capturing: {log}"));
            }
            thread::sleep(Duration::from_millis(50));
        }
        // the filter is compiled and the socket bound before "Capturing on"; a moment more so
        // that the first SYN is not missed (as testbed/capture.sh does)
        thread::sleep(Duration::from_millis(300));
        Ok(cap)
    }

    /// Stops the capture (SIGINT: dumpcap flushes the file) and returns the file's bytes.
    pub(crate) fn stop(mut self) -> Result<Vec<u8>, String> {
        thread::sleep(Duration::from_millis(300)); // let the last packets reach dumpcap
        if let Some(mut child) = self.child.take() {
            signal_pid(child.id(), "INT");
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(5) {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        fs::read(&self.path).map_err(|e| format!("{}: {e}", self.path.display()))
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `rdpdiag proxy ... --json`: its stdout lines (one JSON verdict per connection) are read
/// on a thread; killed by PID when dropped.
pub(crate) struct Proxy {
    child: Child,
    rx: Receiver<String>,
    pub(crate) lines: Vec<String>,
    pub(crate) stderr_path: PathBuf,
    pub(crate) exited: Option<Option<i32>>,
}

impl Proxy {
    pub(crate) fn start(bin: &Path, args: &[String], stderr_path: &Path) -> Result<Proxy, String> {
        let err = File::create(stderr_path).map_err(|e| e.to_string())?;
        let mut child = Command::new(bin)
            .args(args)
            .env("RUST_LOG", "debug")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(err)
            .process_group(0)
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", bin.display()))?;
        let stdout = child.stdout.take().ok_or("no stdout pipe")?;
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Ok(Proxy {
            child,
            rx,
            lines: Vec::new(),
            stderr_path: stderr_path.to_path_buf(),
            exited: None,
        })
    }

    pub(crate) fn stderr_tail(&self, lines: usize) -> String {
        let text = fs::read_to_string(&self.stderr_path).unwrap_or_default();
        let v: Vec<&str> = text.lines().collect();
        v[v.len().saturating_sub(lines)..].join("\n")
    }

    /// Waits until the proxy listens on `port`.
    pub(crate) fn wait_listening(&mut self, port: u16, limit: Duration) -> Result<(), String> {
        let start = Instant::now();
        loop {
            if listening(port) {
                return Ok(());
            }
            if let Ok(Some(st)) = self.child.try_wait() {
                self.exited = Some(st.code());
                return Err(format!(
                    "the proxy exited ({st}) without listening on 127.0.0.1:{port}; stderr:\n{}",
                    self.stderr_tail(15)
                ));
            }
            if start.elapsed() > limit {
                return Err(format!(
                    "the proxy did not listen on 127.0.0.1:{port} within {limit:?}; stderr:\n{}",
                    self.stderr_tail(15)
                ));
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Collects stdout lines until the proxy exits (it does after --max-connections) or
    /// `limit` passes; then it is killed.
    pub(crate) fn finish(&mut self, limit: Duration) {
        let until = Instant::now() + limit;
        loop {
            let left = until.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left.min(Duration::from_millis(100))) {
                Ok(l) => self.lines.push(l),
                // stdout closed: the proxy is exiting
                Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => {
                    if Instant::now() >= until {
                        break;
                    }
                }
            }
        }
        // stdout closed or the deadline passed: give an exiting proxy a moment to be reaped
        let grace = Instant::now() + Duration::from_secs(2);
        while Instant::now() < grace {
            if let Ok(Some(st)) = self.child.try_wait() {
                self.exited = Some(st.code());
                break;
            }
            thread::sleep(Duration::from_millis(20));
        }
        if self.exited.is_none() {
            // still running (fewer connections than expected, or a connection the proxy
            // never finished): kill it by PID, keep what it printed
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        while let Ok(l) = self.rx.try_recv() {
            self.lines.push(l);
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}
