//! The relay against the physical limit and the best TCP relays, on loopback:
//! `cargo bench --bench relay` (Linux; installs haproxy and socat with apt-get if missing).
//!
//! In each round (at least 3, `RDPDIAG_BENCH_ROUNDS`), in an order that rotates from round to
//! round, every relay is started afresh as its own process and measured:
//! - **direct**: no relay, the client talks to the host (the limit of this machine);
//! - **rdpdiag**: the built `rdpdiag proxy` binary with its defaults (tokio's default of one
//!   worker thread per core, splice with pooled 256 KiB pipes); `rdpdiag 64k` / `rdpdiag 1m`
//!   (bulk figures only) change the pipe size with `RDPDIAG_PIPE_SIZE`;
//! - **haproxy**: `mode tcp`, `option splice-request` + `option splice-response` (always
//!   splice), `nbthread` = rdpdiag's worker threads (the core count), its default pipe size;
//! - **socat**: `TCP-LISTEN:...,fork TCP:...`, as usually run (a process per connection, Nagle
//!   left on).
//!
//! The host is in this program: it answers the client's X.224 Connection Request with a
//! Connection Confirm selecting TLS, then does what the request's `mstshash` cookie asks (send
//! bulk data, answer 64-byte requests, a TLS handshake, ...). Every benchmark connection so
//! starts with a real X.224 exchange, and rdpdiag inspects it, decides and hands the sockets over
//! to its hot path, as it would with a real client: what is measured is the real path.
//!
//! Figures: bulk throughput host → client with 1 and 8 streams and the relay's CPU seconds per GB
//! (utime + stime of the relay's processes, children included, from `/proc`); round trips of
//! 64-byte request/response, whole and split in two writes (16 + 48 bytes, >= 200 µs apart);
//! connections per second through the relay with X.224 only and X.224 + a TLS handshake; and
//! the memory 1,000 idle connections cost: the relay's PSS (= RSS for one process; socat's
//! processes summed without double-counting shared pages) and the kernel's (`/proc/meminfo`
//! Slab + KernelStack + PageTables, minus what the same 1,000 connections cost without a relay).
//! Medians over the rounds, with the spread (min–max).
//!
//! Tests never time; this does. It is a plain program (harness = false), built (not run) by CI.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::cast_possible_truncation,
    clippy::indexing_slicing
)]

#[cfg(target_os = "linux")]
fn main() {
    // `cargo test --benches` would run this as a test: nothing to do then.
    if std::env::args().any(|a| a == "--test" || a == "--list") {
        return;
    }
    bench::main();
}

#[cfg(not(target_os = "linux"))]
fn main() {
    eprintln!("benches/relay.rs needs Linux (splice, /proc, haproxy from apt-get)");
}

#[cfg(target_os = "linux")]
mod bench {
    use std::collections::BTreeMap;
    use std::io::{Read, Write};
    use std::net::{SocketAddr, TcpListener, TcpStream};
    use std::process::{Child, Command, Stdio};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, Ordering};
    use std::time::{Duration, Instant};

    use rdpdiag::sim::pdus::{CcNeg, connection_confirm, connection_request};
    use rdpdiag::wire::x224::Protocols;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const RDPDIAG: &str = env!("CARGO_BIN_EXE_rdpdiag");
    /// Idle connections held open for the memory figures.
    const IDLE: usize = 1000;
    const MSG: usize = 64;

    fn env(name: &str, default: u64) -> u64 {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    }

    pub(super) fn main() {
        let rounds = env("RDPDIAG_BENCH_ROUNDS", 3).max(1) as usize;
        let secs = Duration::from_millis(env("RDPDIAG_BENCH_MILLIS", 3000));
        raise_nofile();
        ensure_tool("haproxy", "haproxy");
        ensure_tool("socat", "socat");
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let host = rt.block_on(start_host());
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        print_machine(threads);
        println!(
            "{rounds} rounds, {} s per throughput/rate figure; host at {host}\n",
            secs.as_secs_f64()
        );

        let kinds = [
            Kind::Direct,
            Kind::Rdpdiag(None),
            Kind::Haproxy,
            Kind::Socat,
            Kind::Rdpdiag(Some(64 * 1024)),
            Kind::Rdpdiag(Some(1024 * 1024)),
        ];
        // RDPDIAG_BENCH_ONLY=rdpdiag,haproxy: a subset (direct is always measured).
        let only = std::env::var("RDPDIAG_BENCH_ONLY").ok();
        let kinds: Vec<Kind> = kinds
            .into_iter()
            .filter(|k| {
                *k == Kind::Direct
                    || only
                        .as_deref()
                        .is_none_or(|o| o.split(',').any(|n| n == k.name()))
            })
            .collect();
        let mut results = Results::default();
        for round in 0..rounds {
            // Alternate: each round starts with another relay.
            let mut order: Vec<Kind> = kinds.clone();
            order.rotate_left(round % kinds.len());
            for kind in order {
                let relay = Relay::start(kind, host, threads);
                eprintln!("round {}: {}", round + 1, kind.name());
                measure(&rt, &relay, secs, &mut results);
                relay.stop();
            }
        }
        results.subtract_direct_kernel();
        results.print(&kinds);
    }

    // ---- relays -------------------------------------------------------------------------------

    #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
    enum Kind {
        Direct,
        /// With a pipe size other than the default.
        Rdpdiag(Option<usize>),
        Haproxy,
        Socat,
    }

    impl Kind {
        fn name(self) -> String {
            match self {
                Kind::Direct => "direct".into(),
                Kind::Rdpdiag(None) => "rdpdiag".into(),
                Kind::Rdpdiag(Some(n)) if n >= 1 << 20 => format!("rdpdiag {}m", n >> 20),
                Kind::Rdpdiag(Some(n)) => format!("rdpdiag {}k", n >> 10),
                Kind::Haproxy => "haproxy".into(),
                Kind::Socat => "socat".into(),
            }
        }

        /// The pipe-size variants only run the bulk figures.
        fn full(self) -> bool {
            !matches!(self, Kind::Rdpdiag(Some(_)))
        }
    }

    struct Relay {
        kind: Kind,
        addr: SocketAddr,
        child: Option<Child>,
        _dir: Option<tempfile::TempDir>,
    }

    impl Relay {
        fn start(kind: Kind, host: SocketAddr, threads: usize) -> Relay {
            if kind == Kind::Direct {
                return Relay {
                    kind,
                    addr: host,
                    child: None,
                    _dir: None,
                };
            }
            let port = free_port();
            let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
            let mut dir = None;
            let mut cmd = match kind {
                Kind::Rdpdiag(pipe) => {
                    // The file limit raised by [`raise_nofile`] is inherited: 1,000 idle
                    // connections are 2,000 sockets.
                    let mut c = Command::new(RDPDIAG);
                    c.args(["proxy", "--listen", &addr.to_string()])
                        .args(["--target", &host.to_string()])
                        .args(["--max-concurrent", "8192"]);
                    c.env_remove("RDPDIAG_PIPE_SIZE");
                    // To see what rdpdiag decided: RDPDIAG_BENCH_LOG=FILE (its debug log).
                    if let Ok(path) = std::env::var("RDPDIAG_BENCH_LOG") {
                        let f = std::fs::File::options()
                            .create(true)
                            .append(true)
                            .open(path)
                            .unwrap();
                        c.env("RUST_LOG", "rdpdiag=debug").stderr(f);
                    }
                    if let Some(n) = pipe {
                        c.env("RDPDIAG_PIPE_SIZE", n.to_string());
                    }
                    c
                }
                Kind::Haproxy => {
                    let d = tempfile::tempdir().unwrap();
                    let cfg = d.path().join("haproxy.cfg");
                    std::fs::write(
                        &cfg,
                        format!(
                            "global\n  nbthread {threads}\n  maxconn 5000\n\
                             defaults\n  mode tcp\n  maxconn 5000\n  timeout connect 5s\n  \
                             timeout client 1h\n  timeout server 1h\n  \
                             option splice-request\n  option splice-response\n\
                             listen rdp\n  bind {addr}\n  server host {host}\n"
                        ),
                    )
                    .unwrap();
                    let mut c = Command::new("haproxy");
                    c.arg("-db").arg("-f").arg(&cfg);
                    dir = Some(d);
                    c
                }
                Kind::Socat => {
                    let mut c = Command::new("socat");
                    c.arg(format!(
                        "TCP-LISTEN:{port},bind=127.0.0.1,reuseaddr,fork,backlog=4096"
                    ))
                    .arg(format!("TCP:{host}"));
                    c
                }
                Kind::Direct => unreachable!(),
            };
            if std::env::var_os("RDPDIAG_BENCH_LOG").is_none() || kind == Kind::Haproxy {
                cmd.stderr(Stdio::null());
            }
            let child = cmd
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {}: {e}", kind.name()));
            let relay = Relay {
                kind,
                addr,
                child: Some(child),
                _dir: dir,
            };
            // Ready when it answers the X.224 exchange.
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                match try_rdp_connect(relay.addr, "x224") {
                    Ok(mut s) => {
                        let mut b = [0u8; 1];
                        let _eof = s.read(&mut b);
                        break;
                    }
                    Err(e) if Instant::now() > deadline => {
                        panic!("{} does not answer: {e}", kind.name())
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(50)),
                }
            }
            relay
        }

        fn pid(&self) -> Option<u32> {
            self.child.as_ref().map(Child::id)
        }

        /// User + system CPU seconds of the relay's processes (reaped children included).
        fn cpu(&self) -> f64 {
            let Some(pid) = self.pid() else { return 0.0 };
            let ticks = rustix::param::clock_ticks_per_second() as f64;
            let mut total = 0u64;
            for p in family(pid) {
                if let Some(f) = stat_fields(p) {
                    // Fields 14-17 (1-based): utime stime cutime cstime; `f` starts at field 3.
                    total += f[11..15]
                        .iter()
                        .map(|v| v.parse::<u64>().unwrap_or(0))
                        .sum::<u64>();
                }
            }
            total as f64 / ticks
        }

        /// PSS (KiB) of the relay's processes.
        fn pss_kib(&self) -> u64 {
            let Some(pid) = self.pid() else { return 0 };
            family(pid)
                .into_iter()
                .filter_map(|p| {
                    let s = std::fs::read_to_string(format!("/proc/{p}/smaps_rollup")).ok()?;
                    kib_field(&s, "Pss:")
                })
                .sum()
        }

        fn stop(mut self) {
            if let Some(mut c) = self.child.take() {
                let kids = family(c.id());
                c.kill().unwrap();
                c.wait().unwrap();
                // socat's per-connection children end with their connections; any left over
                // were started by this program too.
                for k in kids.into_iter().skip(1) {
                    let _gone = Command::new("kill").arg("-9").arg(k.to_string()).status();
                }
            }
        }
    }

    /// The fields of `/proc/PID/stat` after the command name (field 3 onwards).
    fn stat_fields(pid: u32) -> Option<Vec<String>> {
        let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let rest = s.rsplit_once(')')?.1;
        Some(rest.split_whitespace().map(str::to_owned).collect())
    }

    /// `pid` and its descendants.
    fn family(pid: u32) -> Vec<u32> {
        let mut parent: Vec<(u32, u32)> = Vec::new();
        for e in std::fs::read_dir("/proc").unwrap().flatten() {
            let Some(p) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
                continue;
            };
            if let Some(f) = stat_fields(p) {
                parent.push((p, f[1].parse().unwrap_or(0)));
            }
        }
        let mut out = vec![pid];
        let mut i = 0;
        while i < out.len() {
            let p = out[i];
            out.extend(parent.iter().filter(|(_, pp)| *pp == p).map(|(c, _)| *c));
            i += 1;
        }
        out
    }

    fn kib_field(text: &str, name: &str) -> Option<u64> {
        text.lines()
            .find(|l| l.starts_with(name))?
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()
    }

    /// Kernel memory in use (KiB): slab caches (sockets, pipes, inodes...), kernel stacks, page
    /// tables. System-wide: whatever else runs adds noise.
    fn kernel_kib() -> u64 {
        let m = std::fs::read_to_string("/proc/meminfo").unwrap();
        ["Slab:", "KernelStack:", "PageTables:"]
            .iter()
            .filter_map(|f| kib_field(&m, f))
            .sum()
    }

    static NEXT_PORT: AtomicU16 = AtomicU16::new(0);

    /// A free loopback port below 32768 (the ephemeral range starts above).
    fn free_port() -> u16 {
        let base = 20000 + (std::process::id() % 50) as u16 * 200;
        loop {
            let p = base + NEXT_PORT.fetch_add(1, Ordering::Relaxed) % 200;
            if TcpListener::bind(("127.0.0.1", p)).is_ok() {
                return p;
            }
        }
    }

    fn raise_nofile() {
        use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
        let lim = getrlimit(Resource::Nofile);
        let want = lim.maximum.unwrap_or(65536).min(65536);
        if lim.current.is_some_and(|c| c < want) {
            setrlimit(
                Resource::Nofile,
                Rlimit {
                    current: Some(want),
                    maximum: lim.maximum,
                },
            )
            .unwrap();
        }
    }

    /// Installs `package` with apt-get when `tool` is missing: a missing tool is a failure,
    /// never a silent skip.
    fn ensure_tool(tool: &str, package: &str) {
        let found = Command::new("sh")
            .arg("-c")
            .arg(format!("command -v {tool}"))
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if found {
            return;
        }
        eprintln!("{tool} missing: apt-get install -y {package}");
        let install = || {
            Command::new("apt-get")
                .args(["install", "-y", "--no-install-recommends", package])
                .env("DEBIAN_FRONTEND", "noninteractive")
                .status()
                .is_ok_and(|s| s.success())
        };
        // A fresh machine may have no package lists yet: update once, then retry.
        let ok = install()
            || (Command::new("apt-get")
                .arg("update")
                .status()
                .is_ok_and(|s| s.success())
                && install());
        assert!(
            ok,
            "could not install {package}: the benchmark needs {tool}"
        );
    }

    fn print_machine(threads: usize) {
        let cpu = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|c| {
                c.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split_once(':'))
                    .map(|(_, m)| m.trim().to_owned())
            })
            .unwrap_or_default();
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
        let haproxy = Command::new("haproxy")
            .arg("-v")
            .output()
            .map(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .next()
                    .unwrap_or("")
                    .to_owned()
            })
            .unwrap_or_default();
        println!(
            "machine: {threads} cores, {cpu}, Linux {}; {haproxy}",
            kernel.trim()
        );
    }

    // ---- the host ---------------------------------------------------------------------------

    /// The RDP-ish host: X.224 CR → CC (TLS selected), then what the cookie asks for.
    async fn start_host() -> SocketAddr {
        let l = tokio::net::TcpListener::bind(("127.0.0.1", free_port()))
            .await
            .unwrap();
        let addr = l.local_addr().unwrap();
        let pki = rdpdiag::sim::certs::generate(rdpdiag::sim::certs::KeyAlg::EcdsaP256).unwrap();
        let tls = rustls::ServerConfig::builder_with_provider(rdpdiag::tls::provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(pki.good.chain(), pki.good.key())
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
        tokio::spawn(async move {
            loop {
                let Ok((s, _)) = l.accept().await else {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    // Peers that leave early (bulk clients) end with an error: not a failure.
                    let _ended = host_conn(s, acceptor).await;
                });
            }
        });
        addr
    }

    async fn read_tpkt(s: &mut tokio::net::TcpStream) -> std::io::Result<Vec<u8>> {
        let mut head = [0u8; 4];
        s.read_exact(&mut head).await?;
        let len = usize::from(u16::from_be_bytes([head[2], head[3]])).saturating_sub(4);
        let mut body = vec![0u8; len];
        s.read_exact(&mut body).await?;
        Ok(body)
    }

    fn cookie(cr: &[u8]) -> &[u8] {
        let key = b"mstshash=";
        let Some(i) = cr.windows(key.len()).position(|w| w == key) else {
            return b"";
        };
        let rest = &cr[i + key.len()..];
        let end = rest.iter().position(|b| *b == b'\r').unwrap_or(rest.len());
        &rest[..end]
    }

    async fn host_conn(
        mut s: tokio::net::TcpStream,
        tls: tokio_rustls::TlsAcceptor,
    ) -> std::io::Result<()> {
        s.set_nodelay(true)?;
        let cr = read_tpkt(&mut s).await?;
        let cc = connection_confirm(CcNeg::Response {
            flags: 0,
            selected: Protocols::SSL,
        });
        s.write_all(&cc).await?;
        match cookie(&cr) {
            b"bulk" => {
                let buf = vec![0x5a_u8; 256 * 1024];
                loop {
                    s.write_all(&buf).await?;
                }
            }
            b"rr" => {
                // Answers only whole 64-byte requests: a relay that holds back the second part
                // of a split request (Nagle) stalls here.
                let mut m = [0u8; MSG];
                loop {
                    s.read_exact(&mut m).await?;
                    s.write_all(&m).await?;
                }
            }
            b"idle" => {
                let mut m = [0u8; 8];
                s.read_exact(&mut m).await?;
                s.write_all(&m).await?;
                while s.read(&mut m).await? > 0 {}
                Ok(())
            }
            b"tls" => {
                let mut t = tls.accept(s).await?;
                t.shutdown().await?;
                let mut b = [0u8; 64];
                while t.read(&mut b).await? > 0 {}
                Ok(())
            }
            // "x224" and anything else: the host closes first (its side keeps the TIME_WAIT).
            _ => {
                s.shutdown().await?;
                let mut b = [0u8; 64];
                while s.read(&mut b).await? > 0 {}
                Ok(())
            }
        }
    }

    // ---- the clients ------------------------------------------------------------------------

    fn x224_request(mode: &str) -> Vec<u8> {
        connection_request(
            Some(mode),
            Some((0, Protocols(Protocols::SSL.0 | Protocols::HYBRID.0))),
        )
    }

    /// Connects and does the X.224 exchange (blocking).
    fn try_rdp_connect(addr: SocketAddr, mode: &str) -> std::io::Result<TcpStream> {
        let mut s = TcpStream::connect(addr)?;
        s.set_nodelay(true)?;
        s.write_all(&x224_request(mode))?;
        let mut head = [0u8; 4];
        s.read_exact(&mut head)?;
        let len = usize::from(u16::from_be_bytes([head[2], head[3]])).saturating_sub(4);
        let mut body = vec![0u8; len];
        s.read_exact(&mut body)?;
        Ok(s)
    }

    fn rdp_connect(addr: SocketAddr, mode: &str) -> TcpStream {
        try_rdp_connect(addr, mode).unwrap_or_else(|e| panic!("X.224 exchange via {addr}: {e}"))
    }

    struct Bulk {
        gbit: f64,
        cpu_per_gb: f64,
    }

    /// `streams` connections read what the host sends for `secs` (after a warm-up that covers
    /// rdpdiag's inspection and hand-over).
    fn bulk(relay: &Relay, streams: usize, secs: Duration) -> Bulk {
        let total = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let readers: Vec<_> = (0..streams)
            .map(|_| {
                let mut s = rdp_connect(relay.addr, "bulk");
                let (total, stop) = (Arc::clone(&total), Arc::clone(&stop));
                std::thread::spawn(move || {
                    let mut buf = vec![0u8; 256 * 1024];
                    while !stop.load(Ordering::Relaxed) {
                        match s.read(&mut buf) {
                            Ok(0) => panic!("bulk stream ended early"),
                            Ok(n) => total.fetch_add(n as u64, Ordering::Relaxed),
                            Err(e) => panic!("bulk stream: {e}"),
                        };
                    }
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(500));
        let (b0, c0, t0) = (total.load(Ordering::Relaxed), relay.cpu(), Instant::now());
        std::thread::sleep(secs);
        let (b1, c1, t1) = (total.load(Ordering::Relaxed), relay.cpu(), Instant::now());
        stop.store(true, Ordering::Relaxed);
        for r in readers {
            r.join().unwrap();
        }
        let bytes = (b1 - b0) as f64;
        Bulk {
            gbit: bytes * 8.0 / (t1 - t0).as_secs_f64() / 1e9,
            cpu_per_gb: (c1 - c0) / (bytes / 1e9),
        }
    }

    /// Round trips of 64-byte requests (µs): p50 and p99, whole and split 16 + 48 bytes with
    /// a >= 200 µs pause between the writes.
    fn round_trips(relay: &Relay) -> ([f64; 2], [f64; 2]) {
        let mut s = rdp_connect(relay.addr, "rr");
        let msg = [0x5a_u8; MSG];
        let mut back = [0u8; MSG];
        let mut rt = |s: &mut TcpStream, split: bool| -> Duration {
            let t = Instant::now();
            if split {
                s.write_all(&msg[..16]).unwrap();
                std::thread::sleep(Duration::from_micros(200));
                s.write_all(&msg[16..]).unwrap();
            } else {
                s.write_all(&msg).unwrap();
            }
            s.read_exact(&mut back).unwrap();
            t.elapsed()
        };
        // Warm-up: the first requests are inspected, then the relay hands over.
        for _ in 0..1000 {
            rt(&mut s, false);
        }
        let whole: Vec<Duration> = (0..20_000).map(|_| rt(&mut s, false)).collect();
        // A relay with Nagle on stalls ~40 ms per request here: stop after 10 s.
        let start = Instant::now();
        let mut split = Vec::new();
        while split.len() < 2000 && start.elapsed() < Duration::from_secs(10) {
            split.push(rt(&mut s, true));
        }
        (percentiles(whole), percentiles(split))
    }

    fn percentiles(mut v: Vec<Duration>) -> [f64; 2] {
        v.sort_unstable();
        let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize].as_secs_f64() * 1e6;
        [at(0.50), at(0.99)]
    }

    /// Connections per second through the relay, each an X.224 exchange (and a TLS handshake
    /// when `tls`) closed by the host, 32 at a time.
    async fn setup_rate(relay: &Relay, tls: bool, secs: Duration) -> (f64, f64) {
        let addr = relay.addr;
        let provider = rdpdiag::tls::provider();
        let cfg = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(
                rdpdiag::tls::verifier::RecordingVerifier::new(provider),
            ))
            .with_no_client_auth();
        let connector = tokio_rustls::TlsConnector::from(Arc::new(cfg));
        let done = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let mode = if tls { "tls" } else { "x224" };
        let workers: Vec<_> = (0..32)
            .map(|_| {
                let (done, stop, connector) =
                    (Arc::clone(&done), Arc::clone(&stop), connector.clone());
                tokio::spawn(async move {
                    while !stop.load(Ordering::Relaxed) {
                        one_setup(addr, mode, tls.then_some(&connector))
                            .await
                            .unwrap_or_else(|e| panic!("setup via {addr}: {e}"));
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(300)).await;
        let (n0, c0, t0) = (done.load(Ordering::Relaxed), relay.cpu(), Instant::now());
        tokio::time::sleep(secs).await;
        let (n1, c1, t1) = (done.load(Ordering::Relaxed), relay.cpu(), Instant::now());
        stop.store(true, Ordering::Relaxed);
        for w in workers {
            w.await.unwrap();
        }
        let n = (n1 - n0) as f64;
        (n / (t1 - t0).as_secs_f64(), (c1 - c0) / n * 1e6)
    }

    async fn one_setup(
        addr: SocketAddr,
        mode: &str,
        tls: Option<&tokio_rustls::TlsConnector>,
    ) -> std::io::Result<()> {
        let mut s = tokio::net::TcpStream::connect(addr).await?;
        s.set_nodelay(true)?;
        s.write_all(&x224_request(mode)).await?;
        read_tpkt(&mut s).await?;
        let mut b = [0u8; 256];
        match tls {
            Some(c) => {
                let name = rustls::pki_types::ServerName::try_from("rds01").unwrap();
                let mut t = c.connect(name, s).await?;
                while t.read(&mut b).await? > 0 {}
            }
            None => while s.read(&mut b).await? > 0 {},
        }
        Ok(())
    }

    struct Idle {
        user_kib: f64,
        kernel_kib: f64,
    }

    /// Memory of `IDLE` connections held open (each past the X.224 exchange and one small
    /// exchange of bytes both ways, so rdpdiag has handed it over to the hot path).
    fn idle(relay: &Relay) -> Idle {
        // Warm-up: lazily initialised state is not a per-connection cost.
        for _ in 0..20 {
            let mut s = rdp_connect(relay.addr, "idle");
            s.write_all(b"warm-up!").unwrap();
            s.read_exact(&mut [0u8; 8]).unwrap();
        }
        std::thread::sleep(Duration::from_millis(500));
        let (u0, k0) = (relay.pss_kib(), kernel_kib());
        let conns: Vec<TcpStream> = (0..IDLE)
            .map(|_| {
                let mut s = rdp_connect(relay.addr, "idle");
                s.write_all(b"keepidle").unwrap();
                s.read_exact(&mut [0u8; 8]).unwrap();
                s
            })
            .collect();
        std::thread::sleep(Duration::from_secs(1));
        let (u1, k1) = (relay.pss_kib(), kernel_kib());
        drop(conns);
        std::thread::sleep(Duration::from_millis(500));
        Idle {
            user_kib: u1.saturating_sub(u0) as f64 / IDLE as f64,
            kernel_kib: (k1 as f64 - k0 as f64) / IDLE as f64,
        }
    }

    // ---- rounds and the table -----------------------------------------------------------------

    #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
    enum Metric {
        Bulk1,
        Bulk8,
        Cpu1,
        Cpu8,
        RttP50,
        RttP99,
        SplitP50,
        SplitP99,
        SetupX224,
        SetupCpu,
        SetupTls,
        IdleUser,
        IdleKernel,
    }

    impl Metric {
        fn label(self) -> &'static str {
            match self {
                Metric::Bulk1 => "bulk 1 stream (Gbit/s)",
                Metric::Bulk8 => "bulk 8 streams (Gbit/s)",
                Metric::Cpu1 => "relay CPU, 1 stream (CPU-s/GB)",
                Metric::Cpu8 => "relay CPU, 8 streams (CPU-s/GB)",
                Metric::RttP50 => "64 B round trip p50 (µs)",
                Metric::RttP99 => "64 B round trip p99 (µs)",
                Metric::SplitP50 => "16+48 B split p50 (µs)",
                Metric::SplitP99 => "16+48 B split p99 (µs)",
                Metric::SetupX224 => "setup, X.224 (conn/s)",
                Metric::SetupCpu => "relay CPU per X.224 setup (µs)",
                Metric::SetupTls => "setup, X.224 + TLS (conn/s)",
                Metric::IdleUser => "idle conn, relay user memory (KiB)",
                Metric::IdleKernel => "idle conn, added kernel memory (KiB)",
            }
        }

        /// Latencies: what the relay adds to direct is the figure; lower is better.
        fn latency(self) -> bool {
            matches!(
                self,
                Metric::RttP50 | Metric::RttP99 | Metric::SplitP50 | Metric::SplitP99
            )
        }

        fn decimals(self) -> usize {
            match self {
                Metric::Cpu1 | Metric::Cpu8 => 3,
                Metric::Bulk1 | Metric::Bulk8 | Metric::IdleUser | Metric::IdleKernel => 1,
                _ => 0,
            }
        }
    }

    #[derive(Default)]
    struct Results {
        by: BTreeMap<(Metric, Kind), Vec<f64>>,
    }

    impl Results {
        fn add(&mut self, m: Metric, k: Kind, v: f64) {
            self.by.entry((m, k)).or_default().push(v);
        }

        /// Kernel memory is measured system-wide: what the relay adds is its figure minus
        /// direct's in the same round (each relay runs once per round, so the i-th figures
        /// belong together).
        fn subtract_direct_kernel(&mut self) {
            let Some(direct) = self.by.remove(&(Metric::IdleKernel, Kind::Direct)) else {
                return;
            };
            for ((m, _), v) in &mut self.by {
                if *m == Metric::IdleKernel {
                    for (x, d) in v.iter_mut().zip(&direct) {
                        *x -= d;
                    }
                }
            }
        }

        fn median(&self, m: Metric, k: Kind) -> Option<f64> {
            let mut v = self.by.get(&(m, k))?.clone();
            v.sort_by(f64::total_cmp);
            Some(v[v.len() / 2])
        }

        fn spread(&self, m: Metric, k: Kind) -> Option<(f64, f64)> {
            let v = self.by.get(&(m, k))?;
            let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            Some((lo, hi))
        }

        fn print(&self, kinds: &[Kind]) {
            let metrics = [
                Metric::Bulk1,
                Metric::Bulk8,
                Metric::Cpu1,
                Metric::Cpu8,
                Metric::RttP50,
                Metric::RttP99,
                Metric::SplitP50,
                Metric::SplitP99,
                Metric::SetupX224,
                Metric::SetupCpu,
                Metric::SetupTls,
                Metric::IdleUser,
                Metric::IdleKernel,
            ];
            println!("\nmedian (min–max) over the rounds:\n");
            print!("| figure |");
            for k in kinds {
                print!(" {} |", k.name());
            }
            println!();
            println!("|---|{}", "---|".repeat(kinds.len()));
            for m in metrics {
                print!("| {} |", m.label());
                for &k in kinds {
                    match (self.median(m, k), self.spread(m, k)) {
                        (Some(med), Some((lo, hi))) => {
                            let d = m.decimals();
                            print!(" {med:.d$} ({lo:.d$}–{hi:.d$}) |");
                        }
                        _ => print!(" – |"),
                    }
                }
                println!();
            }
            let (r, h, s, d) = (
                Kind::Rdpdiag(None),
                Kind::Haproxy,
                Kind::Socat,
                Kind::Direct,
            );
            println!(
                "\nratios of the medians (latency: µs added to direct; memory: rdpdiag − haproxy):\n"
            );
            println!(
                "| figure | rdpdiag / direct | rdpdiag / haproxy | haproxy / direct | socat / direct |"
            );
            println!("|---|---|---|---|---|");
            for m in metrics {
                let med = |k| self.median(m, k);
                let cell = |a: Option<f64>, b: Option<f64>| match (a, b) {
                    (Some(a), Some(b)) if m.latency() => {
                        // Against direct: the added latency; against haproxy: the difference
                        // of the added latencies (same direct).
                        format!("{:+.1} µs", a - b)
                    }
                    (Some(a), Some(b)) if matches!(m, Metric::IdleUser | Metric::IdleKernel) => {
                        format!("{:+.1} KiB", a - b)
                    }
                    (Some(a), Some(b)) if b > 0.0 => format!("{:.2}×", a / b),
                    _ => "–".into(),
                };
                let direct_cell = |k| {
                    if matches!(
                        m,
                        Metric::IdleUser | Metric::IdleKernel | Metric::Cpu1 | Metric::Cpu8
                    ) {
                        "–".to_owned()
                    } else {
                        cell(med(k), med(d))
                    }
                };
                println!(
                    "| {} | {} | {} | {} | {} |",
                    m.label(),
                    direct_cell(r),
                    cell(med(r), med(h)),
                    direct_cell(h),
                    direct_cell(s)
                );
            }
        }
    }

    fn measure(rt: &tokio::runtime::Runtime, relay: &Relay, secs: Duration, results: &mut Results) {
        let k = relay.kind;
        if k.full() {
            let idle = idle(relay);
            if k != Kind::Direct {
                results.add(Metric::IdleUser, k, idle.user_kib);
            }
            // Direct's too: subtracted round by round ([`Results::subtract_direct_kernel`]).
            results.add(Metric::IdleKernel, k, idle.kernel_kib);
        }
        for (streams, gbit, cpu) in [
            (1, Metric::Bulk1, Metric::Cpu1),
            (8, Metric::Bulk8, Metric::Cpu8),
        ] {
            let b = bulk(relay, streams, secs);
            results.add(gbit, k, b.gbit);
            if k != Kind::Direct {
                results.add(cpu, k, b.cpu_per_gb);
            }
        }
        if !k.full() {
            return;
        }
        let (whole, split) = round_trips(relay);
        results.add(Metric::RttP50, k, whole[0]);
        results.add(Metric::RttP99, k, whole[1]);
        results.add(Metric::SplitP50, k, split[0]);
        results.add(Metric::SplitP99, k, split[1]);
        let (rate, cpu) = rt.block_on(setup_rate(relay, false, secs));
        results.add(Metric::SetupX224, k, rate);
        if k != Kind::Direct {
            results.add(Metric::SetupCpu, k, cpu);
        }
        let (rate, _) = rt.block_on(setup_rate(relay, true, secs));
        results.add(Metric::SetupTls, k, rate);
    }
}
