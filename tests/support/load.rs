//! The load driver shared by `tests/load.rs` (CI: 1,000 connections for a few seconds) and
//! `benches/load.rs` (1,000 connections for 60 s, or a soak of any length): a proxy, a host and
//! N clients in this process, random-sized traffic both ways on every connection, every byte
//! hashed at both ends, then fd count and RSS compared with where they started.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdpdiag::relay::{Proxy, ProxyConfig};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};

/// What a run is asked to do.
#[derive(Debug, Clone, Copy)]
pub struct Load {
    /// Connections open at once.
    pub connections: usize,
    /// How long each connection sends (both ways).
    pub duration: Duration,
    /// Largest chunk written at once.
    pub max_chunk: usize,
    /// Longest pause between chunks.
    pub max_pause: Duration,
}

/// What a run measured.
#[derive(Debug, Clone)]
pub struct Figures {
    pub connections: usize,
    pub bytes_c2s: u64,
    pub bytes_s2c: u64,
    pub elapsed: Duration,
    pub fds_before: usize,
    pub fds_peak: usize,
    pub fds_after: usize,
    pub rss_before_kib: u64,
    pub rss_peak_kib: u64,
    pub rss_after_kib: u64,
    /// Reports received, and how many said `internal_error`.
    pub reports: usize,
    pub internal_errors: usize,
    /// Verdict causes and how many reports gave each.
    pub causes: std::collections::BTreeMap<String, usize>,
}

/// Open file descriptors of this process.
pub fn fd_count() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count())
}

/// VmRSS of this process, in KiB.
pub fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// xorshift64: reproducible sizes, pauses and bytes.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// Per connection id: (bytes, SHA-256) the host received and sent.
type HostSide = Arc<Mutex<HashMap<u64, ((u64, Vec<u8>), (u64, Vec<u8>))>>>;

/// Sends random-sized chunks of pseudo-random bytes for `load.duration`, then FIN.
async fn send_for(w: &mut (impl AsyncWrite + Unpin), seed: u64, load: Load) -> (u64, Vec<u8>) {
    let mut rng = Rng(seed | 1);
    let mut hash = Sha256::new();
    let mut buf = vec![0u8; load.max_chunk];
    let mut sent = 0u64;
    let end = tokio::time::Instant::now() + load.duration;
    while tokio::time::Instant::now() < end {
        let n = 1 + rng.below(load.max_chunk as u64) as usize;
        for b in buf.iter_mut().take(n) {
            *b = rng.next() as u8;
        }
        let chunk = buf.get(..n).unwrap_or_default();
        w.write_all(chunk).await.unwrap();
        hash.update(chunk);
        sent += n as u64;
        let pause = rng.below(load.max_pause.as_millis() as u64 + 1);
        tokio::time::sleep(Duration::from_millis(pause)).await;
    }
    w.shutdown().await.unwrap();
    (sent, hash.finalize().to_vec())
}

async fn recv_all(r: &mut (impl AsyncRead + Unpin)) -> (u64, Vec<u8>) {
    let mut hash = Sha256::new();
    let mut buf = vec![0u8; 16 * 1024];
    let mut got = 0u64;
    loop {
        let n = r.read(&mut buf).await.unwrap();
        if n == 0 {
            return (got, hash.finalize().to_vec());
        }
        hash.update(buf.get(..n).unwrap_or_default());
        got += n as u64;
    }
}

/// The host: each connection starts with `L` and its id (u64 BE); then it sends its own
/// random stream while reading the client's, and records both hashes.
async fn host(listener: TcpListener, load: Load, seen: HostSide) {
    loop {
        let Ok((s, _)) = listener.accept().await else {
            return;
        };
        let seen = Arc::clone(&seen);
        tokio::spawn(async move {
            let (mut rd, mut wr) = s.into_split();
            let mut header = [0u8; 9];
            rd.read_exact(&mut header).await.unwrap();
            let id = u64::from_be_bytes(header[1..].try_into().unwrap());
            let (got, sent) = tokio::join!(
                recv_all(&mut rd),
                send_for(&mut wr, id.wrapping_mul(0x9e37_79b9_7f4a_7c15), load)
            );
            seen.lock().unwrap().insert(id, (got, sent));
        });
    }
}

/// Runs `load` through a fresh proxy and checks every byte; panics on any mismatch.
pub async fn run(load: Load) -> Figures {
    let need = load.connections * 10 + 256;
    let limit = rlimit_nofile();
    assert!(
        limit >= need as u64,
        "RLIMIT_NOFILE is {limit}, {need} needed for {} connections (raise `ulimit -n`)",
        load.connections
    );
    // A backlog above the connection count: the host is not what is tested.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(4096).unwrap();
    let host_addr = listener.local_addr().unwrap();
    let seen: HostSide = Arc::default();
    let host_task = tokio::spawn(host(listener, load, Arc::clone(&seen)));

    let mut cfg = ProxyConfig::new("127.0.0.1:0".parse().unwrap(), host_addr.to_string());
    cfg.max_concurrent = load.connections + 16;
    if std::env::var("RDPDIAG_LOAD_HOT_PATH").is_ok_and(|v| v == "copy") {
        cfg.hot_path = rdpdiag::relay::HotPath::Copy;
    }
    let proxy = Proxy::bind(cfg).await.unwrap();
    let addr = proxy.local_addr();
    let (tx, mut reports) = mpsc::channel(256);
    let (stop, stopped) = oneshot::channel::<()>();
    let proxy_task = tokio::spawn(proxy.run(tx, async move {
        stopped.await.ok();
    }));
    let counted = tokio::spawn(async move {
        let (mut n, mut internal) = (0usize, 0usize);
        let mut causes = std::collections::BTreeMap::new();
        while let Some(r) = reports.recv().await {
            n += 1;
            if r.verdict.cause == "internal_error" {
                internal += 1;
            }
            *causes.entry(r.verdict.cause.to_owned()).or_insert(0) += 1;
        }
        (n, internal, causes)
    });

    // Baseline after a first round at full concurrency (as long, up to 10 s): the listeners, the runtime's
    // threads and the allocator's arenas are then at their working size (glibc keeps freed
    // 64 KiB buffers for reuse), so a leak shows as growth over this baseline.
    let priming = Load {
        duration: load.duration.min(Duration::from_secs(10)),
        ..load
    };
    // Two rounds: measured, RSS grows by ~90 MB in the first, ~10 MB in the second, ~3 MB in
    // the third (allocator arenas settling), not by a per-connection amount each round.
    for _ in 0..2 {
        let (primed, failed) = round(addr, priming).await;
        assert_eq!(failed, 0, "priming round: {failed} clients failed");
        wait_for(&seen, primed.len()).await;
        seen.lock().unwrap().clear();
    }
    let fds_before = fd_count();
    let rss_before_kib = rss_kib();
    let peaks = Arc::new(Mutex::new((fds_before, rss_before_kib)));
    let sampler = {
        let peaks = Arc::clone(&peaks);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(200)).await;
                let mut p = peaks.lock().unwrap();
                p.0 = p.0.max(fd_count());
                p.1 = p.1.max(rss_kib());
            }
        })
    };

    let started = tokio::time::Instant::now();
    let (mine, failed) = round(addr, load).await;
    if failed > 0 {
        stop.send(()).ok();
        let (n, _, causes) = counted.await.unwrap();
        panic!(
            "{failed} of {} clients failed; {n} reports: {causes:?}",
            load.connections
        );
    }
    let elapsed = started.elapsed();
    // Every connection has ended at both peers; wait for the host's records.
    wait_for(&seen, load.connections).await;
    let (mut bytes_c2s, mut bytes_s2c) = (0, 0);
    {
        let seen = seen.lock().unwrap();
        assert_eq!(
            seen.len(),
            load.connections,
            "host saw every connection end"
        );
        for (id, (sent, got)) in &mine {
            let (host_got, host_sent) = &seen[id];
            assert_eq!(
                host_got, sent,
                "connection {id}: client -> host bytes differ"
            );
            assert_eq!(
                got, host_sent,
                "connection {id}: host -> client bytes differ"
            );
            bytes_c2s += sent.0;
            bytes_s2c += got.0;
        }
    }
    stop.send(()).unwrap();
    proxy_task.await.unwrap().unwrap();
    host_task.abort();
    host_task.await.ok();
    let (reports, internal_errors, causes) = counted.await.unwrap();
    sampler.abort();
    // Sockets closed by the peers' tasks are released when those tasks are dropped; give the
    // runtime a moment to run the drops.
    let mut fds_after = fd_count();
    for _ in 0..50 {
        if fds_after <= fds_before {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        fds_after = fd_count();
    }
    let (fds_peak, rss_peak_kib) = *peaks.lock().unwrap();
    Figures {
        connections: load.connections,
        bytes_c2s,
        bytes_s2c,
        elapsed,
        fds_before,
        fds_peak,
        fds_after,
        rss_before_kib,
        rss_peak_kib,
        rss_after_kib: rss_kib(),
        reports,
        internal_errors,
        causes,
    }
}

/// Client ids of the current round start here (each round uses fresh ids).
static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// `load.connections` clients at once, opened 50 every 50 ms (a burst of 1,000 SYNs overflows
/// the kernel's listen queue and turns on SYN cookies; that is the kernel, not the proxy).
/// Returns what each client sent and got, by id, and how many failed.
async fn round(
    addr: SocketAddr,
    load: Load,
) -> (HashMap<u64, ((u64, Vec<u8>), (u64, Vec<u8>))>, usize) {
    let first = NEXT_ID.fetch_add(load.connections as u64, std::sync::atomic::Ordering::SeqCst);
    let mut clients = Vec::with_capacity(load.connections);
    for (i, id) in (first..first + load.connections as u64).enumerate() {
        if i % 50 == 49 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        clients.push(tokio::spawn(client(addr, id, load)));
    }
    let mut mine = HashMap::new();
    let mut failed = 0;
    for c in clients {
        match c.await {
            Ok((id, sent, got)) => {
                mine.insert(id, (sent, got));
            }
            Err(_) => failed += 1,
        }
    }
    (mine, failed)
}

/// Waits (up to a minute) until the host has recorded `n` connections.
async fn wait_for(seen: &HostSide, n: usize) {
    for _ in 0..600 {
        if seen.lock().unwrap().len() >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A client: `L` + id, then its random stream while reading the host's.
async fn client(addr: SocketAddr, id: u64, load: Load) -> (u64, (u64, Vec<u8>), (u64, Vec<u8>)) {
    let s = TcpStream::connect(addr).await.unwrap();
    let (mut rd, mut wr) = s.into_split();
    let mut header = vec![b'L'];
    header.extend_from_slice(&id.to_be_bytes());
    wr.write_all(&header).await.unwrap();
    // The host reads the header apart: both hashes cover the random streams only.
    let (sent, got) = tokio::join!(send_for(&mut wr, id, load), recv_all(&mut rd));
    (id, sent, got)
}

fn rlimit_nofile() -> u64 {
    std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(3))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(u64::MAX)
}
