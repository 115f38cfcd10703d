//! The tokio shell of the probe: resolves the host once, opens one TCP connection per question,
//! runs the sans-IO [`Dialogue`]s over it with a timeout per step, performs the rustls
//! handshakes of the NTLM and certificate checks, and assembles the [`ProbeReport`].
//!
//! Order: the security-protocol requests first (the first one alone, so an unreachable host
//! costs one timeout, then the rest); then, from what they showed, the TLS versions, the NTLM
//! check and the Standard RDP Security methods, at most `parallel` connections at a time.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::legacy_tls::{HelloRandom, Offer};
use super::nego::{self, NegoAnswer, NegoDialogue, NegoResult, REQUESTS};
use super::ntlm::{CredsspDialogue, NtlmOutcome, NtlmReport};
use super::rdp_sec::{self, EncryptionDialogue, RdpSecSummary};
use super::tls::{self, CertReport, TlsSummary, TlsVersionDialogue};
use super::verdict::{self, Evidence};
use super::{Dialogue, End, ProbeReport, Reachability, Step, Target};
use crate::session::ConnectFailure;
use crate::wire::tls as wtls;
use crate::wire::x224::Protocols;

/// Progress messages for a status line (the CLI prints them; the driver never does).
pub type Progress = Arc<dyn Fn(&str) + Send + Sync>;

/// How to probe.
#[derive(Clone)]
pub struct ProbeOptions {
    /// Bound on each step of each connection: the TCP connect, and each wait for an answer.
    pub timeout: Duration,
    /// Connections open at the same time (at least 1).
    pub parallel: usize,
    /// The name clients use for the host when it differs from the probed address (probing
    /// by IP for users who type `rds01.corp.example`): sent as SNI and judged against the
    /// certificate. `None`: the host as given.
    pub server_name: Option<String>,
    pub progress: Option<Progress>,
}

impl Default for ProbeOptions {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(5),
            parallel: 3,
            server_name: None,
            progress: None,
        }
    }
}

impl std::fmt::Debug for ProbeOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProbeOptions")
            .field("timeout", &self.timeout)
            .field("parallel", &self.parallel)
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

/// What every connection needs.
#[derive(Clone)]
struct Ctx {
    addr: SocketAddr,
    host: String,
    timeout: Duration,
    connections: Arc<AtomicU32>,
    progress: Option<Progress>,
}

impl Ctx {
    fn say(&self, msg: &str) {
        if let Some(p) = &self.progress {
            p(msg);
        }
    }

    async fn connect(&self) -> Result<TcpStream, ConnectFailure> {
        self.connections.fetch_add(1, Ordering::Relaxed);
        match tokio::time::timeout(self.timeout, TcpStream::connect(self.addr)).await {
            Err(_) => Err(ConnectFailure::Timeout),
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                Err(ConnectFailure::Refused)
            }
            Ok(Err(e)) => Err(ConnectFailure::Other(e.to_string())),
            Ok(Ok(s)) => {
                // Small PDUs, one at a time: no Nagle delay.
                s.set_nodelay(true).ok();
                Ok(s)
            }
        }
    }
}

fn classify(e: &std::io::Error) -> End {
    use std::io::ErrorKind as K;
    match e.kind() {
        K::ConnectionReset | K::ConnectionAborted | K::BrokenPipe => End::Reset,
        K::UnexpectedEof => End::Closed,
        K::TimedOut => End::Timeout,
        _ => End::Error(e.to_string()),
    }
}

/// Runs one dialogue over an open stream: send, read until it is done or the step times out.
async fn converse<S, D>(stream: &mut S, d: &mut D, timeout: Duration)
where
    S: AsyncRead + AsyncWrite + Unpin,
    D: Dialogue,
{
    let mut out = d.opening();
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        if !out.is_empty() {
            let write = async {
                stream.write_all(&out).await?;
                stream.flush().await
            };
            match tokio::time::timeout(timeout, write).await {
                Err(_) => return d.on_end(End::Timeout),
                Ok(Err(e)) => return d.on_end(classify(&e)),
                Ok(Ok(())) => {}
            }
        }
        let deadline = Instant::now() + timeout;
        loop {
            match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
                Err(_) => return d.on_end(End::Timeout),
                Ok(Err(e)) => return d.on_end(classify(&e)),
                Ok(Ok(0)) => return d.on_end(End::Closed),
                Ok(Ok(n)) => match d.on_data(buf.get(..n).unwrap_or_default()) {
                    Step::Read => {}
                    Step::Done => return,
                    Step::Send(b) => {
                        out = b;
                        break;
                    }
                },
            }
        }
    }
}

/// Connects and runs a dialogue; a failed connect is reported to the dialogue.
async fn run_on_tcp<D: Dialogue + Send>(ctx: &Ctx, mut d: D) -> D {
    match ctx.connect().await {
        Ok(mut s) => {
            converse(&mut s, &mut d, ctx.timeout).await;
            // Best effort: the host may already have closed.
            s.shutdown().await.ok();
        }
        Err(f) => d.on_connect_failed(f),
    }
    d
}

fn random_hello() -> HelloRandom {
    let mut b = [0u8; 96];
    // A failing system RNG leaves zeros: still a valid hello for a probe that never finishes
    // the key exchange.
    aws_lc_rs::rand::fill(&mut b).ok();
    let mut r = HelloRandom {
        random: [0; 32],
        session_id: [0; 32],
        key_share: [0; 32],
    };
    for (dst, src) in [&mut r.random, &mut r.session_id, &mut r.key_share]
        .into_iter()
        .zip(b.chunks_exact(32))
    {
        dst.copy_from_slice(src);
    }
    r
}

type Job<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// Runs jobs with at most `limit` at a time; results in job order (`None`: the job panicked).
async fn run_jobs<T: Send + 'static>(jobs: Vec<Job<T>>, limit: usize) -> Vec<Option<T>> {
    let n = jobs.len();
    let sem = Arc::new(Semaphore::new(limit.max(1)));
    let mut set = JoinSet::new();
    for (i, job) in jobs.into_iter().enumerate() {
        let sem = sem.clone();
        set.spawn(async move {
            let _permit = sem.acquire_owned().await.ok();
            (i, job.await)
        });
    }
    let mut out: Vec<Option<T>> = (0..n).map(|_| None).collect();
    while let Some(r) = set.join_next().await {
        if let Ok((i, v)) = r
            && let Some(slot) = out.get_mut(i)
        {
            *slot = Some(v);
        }
    }
    out
}

async fn nego_check(ctx: Ctx, i: usize) -> NegoResult {
    let req = REQUESTS.get(i).copied().unwrap_or(REQUESTS[0]);
    let n = run_on_tcp(&ctx, NegoDialogue::new(req.requested)).await;
    let r = NegoResult::new(req, n.answer());
    ctx.say(&format!("request {}: {}", req.label, r.answer.describe()));
    r
}

async fn tls_check(ctx: Ctx, offer: Offer, requested: Protocols) -> TlsVersionDialogue {
    let d = TlsVersionDialogue::new(offer, requested, &random_hello(), &ctx.host);
    let d = run_on_tcp(&ctx, d).await;
    ctx.say(&format!(
        "{}: {}",
        offer.label(),
        d.result().outcome.describe()
    ));
    d
}

async fn rdp_check(
    ctx: Ctx,
    method: crate::wire::gcc::EncryptionMethods,
    request: Option<Protocols>,
) -> EncryptionDialogue {
    let d = run_on_tcp(&ctx, EncryptionDialogue::new(method, request)).await;
    let r = d.result();
    ctx.say(&format!(
        "Standard RDP Security {}: {}",
        r.label,
        r.outcome.describe()
    ));
    d
}

/// CR for CredSSP, then a rustls handshake; `Err` carries the NTLM outcome to report.
async fn tls_after_nego(
    ctx: &Ctx,
    requested: Protocols,
    want: fn(Protocols) -> bool,
) -> Result<
    (
        tokio_rustls::client::TlsStream<TcpStream>,
        Arc<tls::RecordingVerifier>,
    ),
    (NtlmOutcome, Vec<Vec<u8>>),
> {
    let mut n = NegoDialogue::new(Some(requested));
    let mut tcp = match ctx.connect().await {
        Ok(s) => s,
        Err(f) => {
            return Err((
                NtlmOutcome::NotNegotiated {
                    answer: NegoAnswer::ConnectFailed { failure: f },
                },
                Vec::new(),
            ));
        }
    };
    converse(&mut tcp, &mut n, ctx.timeout).await;
    let answer = n.answer();
    if !answer.selected().is_some_and(want) {
        return Err((NtlmOutcome::NotNegotiated { answer }, Vec::new()));
    }
    let (config, verifier) = tls::recording_client_config().map_err(|e| {
        (
            NtlmOutcome::TlsFailed {
                error: e.to_string(),
            },
            Vec::new(),
        )
    })?;
    let connector = tokio_rustls::TlsConnector::from(config);
    match tokio::time::timeout(
        ctx.timeout,
        connector.connect(tls::server_name(&ctx.host), tcp),
    )
    .await
    {
        Ok(Ok(s)) => Ok((s, verifier)),
        Ok(Err(e)) => Err((
            NtlmOutcome::TlsFailed {
                error: e.to_string(),
            },
            verifier.chain(),
        )),
        Err(_) => Err((
            NtlmOutcome::TlsFailed {
                error: "no TLS handshake before the timeout".to_owned(),
            },
            verifier.chain(),
        )),
    }
}

fn session_name(s: &tokio_rustls::client::TlsStream<TcpStream>) -> Option<String> {
    let (_, conn) = s.get_ref();
    let v = conn.protocol_version().map(u16::from)?;
    let c = conn
        .negotiated_cipher_suite()
        .map(|c| wtls::cipher_suite_name(u16::from(c.suite())))
        .unwrap_or_default();
    Some(format!("{} {c}", wtls::version_name(v)))
}

/// The NTLM check; also returns the certificate chain rustls saw.
async fn ntlm_check(ctx: Ctx, requested: Protocols) -> (NtlmReport, Vec<Vec<u8>>) {
    let report = match tls_after_nego(&ctx, requested, Protocols::uses_credssp).await {
        Err((outcome, chain)) => (NtlmReport::new(requested, None, outcome), chain),
        Ok((mut s, verifier)) => {
            let session = session_name(&s);
            // The clock is read when the CHALLENGE is about to be asked for: the skew should
            // not include the probe's own duration.
            let mut d = CredsspDialogue::new(unix_now());
            converse(&mut s, &mut d, ctx.timeout).await;
            s.shutdown().await.ok();
            (
                NtlmReport::new(requested, session, d.outcome()),
                verifier.chain(),
            )
        }
    };
    ctx.say(&format!("NTLM: {}", report.0.outcome.describe()));
    report
}

/// A full rustls handshake, only to read the certificate (TLS 1.3 hides it from the clear
/// checks).
async fn cert_fetch(ctx: &Ctx, requested: Protocols) -> (Vec<Vec<u8>>, Option<String>) {
    match tls_after_nego(ctx, requested, Protocols::uses_tls).await {
        Ok((mut s, verifier)) => {
            let name = session_name(&s);
            s.shutdown().await.ok();
            (verifier.chain(), name)
        }
        Err((_, chain)) => (chain, None),
    }
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Probes `target` and judges it. Never fails: an unreachable host is a report too.
pub async fn run(target: &Target, opts: &ProbeOptions) -> ProbeReport {
    let started = Instant::now();
    let now = unix_now();
    let connections = Arc::new(AtomicU32::new(0));
    let say = |m: &str| {
        if let Some(p) = &opts.progress {
            p(m);
        }
    };
    say(&format!("resolving {}", target.host));
    let resolved = tokio::time::timeout(
        opts.timeout,
        tokio::net::lookup_host((target.host.as_str(), target.port)),
    )
    .await;
    let addr = match resolved {
        Ok(Ok(mut addrs)) => addrs.next(),
        _ => None,
    };
    let Some(addr) = addr else {
        let failure = ConnectFailure::Other(format!("cannot resolve {}", target.host));
        return unreachable(target, now, started, 0, failure);
    };
    let name = opts
        .server_name
        .clone()
        .unwrap_or_else(|| target.host.clone());
    let ctx = Ctx {
        addr,
        host: name.clone(),
        timeout: opts.timeout,
        connections: connections.clone(),
        progress: opts.progress.clone(),
    };

    // 1. Security protocols: the first request alone (is anybody there?), then the rest.
    let first = nego_check(ctx.clone(), 0).await;
    if let NegoAnswer::ConnectFailed { failure } = &first.answer {
        let failure = failure.clone();
        return unreachable(
            target,
            now,
            started,
            connections.load(Ordering::Relaxed),
            failure,
        );
    }
    let jobs: Vec<Job<NegoResult>> = (1..REQUESTS.len())
        .map(|i| Box::pin(nego_check(ctx.clone(), i)) as Job<NegoResult>)
        .collect();
    let mut protocols = vec![first];
    for (i, r) in run_jobs(jobs, opts.parallel).await.into_iter().enumerate() {
        let req = REQUESTS.get(i + 1).copied().unwrap_or(REQUESTS[0]);
        protocols.push(r.unwrap_or_else(|| {
            NegoResult::new(
                req,
                NegoAnswer::Ended {
                    end: End::Error("probe task failed".to_owned()),
                },
            )
        }));
    }
    let summary = nego::summarize(&protocols);

    // 2. TLS versions, NTLM and Standard RDP Security, as the answers allow.
    enum Out {
        Tls(Box<TlsVersionDialogue>),
        Rdp(Box<EncryptionDialogue>),
        Ntlm(Box<(NtlmReport, Vec<Vec<u8>>)>),
    }
    let mut jobs: Vec<Job<Out>> = Vec::new();
    if let Some(req) = summary.tls_request {
        for offer in Offer::VERSIONS {
            let c = ctx.clone();
            jobs.push(Box::pin(async move {
                Out::Tls(Box::new(tls_check(c, offer, req).await))
            }));
        }
    }
    if let Some(req) = summary.nla_request {
        let c = ctx.clone();
        jobs.push(Box::pin(async move {
            Out::Ntlm(Box::new(ntlm_check(c, req).await))
        }));
    }
    if let Some(req) = summary.rdp_request {
        for m in rdp_sec::METHODS {
            let c = ctx.clone();
            jobs.push(Box::pin(async move {
                Out::Rdp(Box::new(rdp_check(c, m, req).await))
            }));
        }
    }
    let mut tls_dialogues = Vec::new();
    let mut rdp_results = Vec::new();
    let mut ntlm: Option<NtlmReport> = None;
    let mut rustls_chain = Vec::new();
    for o in run_jobs(jobs, opts.parallel).await.into_iter().flatten() {
        match o {
            Out::Tls(d) => tls_dialogues.push(*d),
            Out::Rdp(d) => rdp_results.push(d.result()),
            Out::Ntlm(b) => {
                let (r, chain) = *b;
                ntlm = Some(r);
                rustls_chain = chain;
            }
        }
    }
    let mut tls_summary = summary.tls_request.map(|req| {
        TlsSummary::new(
            req,
            tls_dialogues
                .iter()
                .map(TlsVersionDialogue::result)
                .collect(),
        )
    });
    if let (Some(req), Some(t)) = (summary.tls_request, &tls_summary)
        && tls::needs_strict_check(&t.versions)
    {
        let d = tls_check(ctx.clone(), Offer::Tls12Strict, req).await;
        let mut versions = t.versions.clone();
        versions.push(d.result());
        tls_summary = Some(TlsSummary::new(req, versions));
    }

    // 3. The certificate: from a clear handshake, else from rustls (NTLM check or a fetch).
    let answers: Vec<_> = tls_dialogues
        .iter()
        .filter_map(TlsVersionDialogue::hello_answer)
        .collect();
    let mut chain = tls::clear_chain(&answers);
    if chain.is_none() && !rustls_chain.is_empty() {
        chain = Some(("rustls handshake (NTLM check)".to_owned(), rustls_chain));
    }
    if chain.is_none()
        && let (Some(req), Some(t)) = (summary.tls_request, &tls_summary)
        && (t.accepts(Offer::Tls12) || t.accepts(Offer::Tls13))
    {
        say("certificate: full TLS handshake");
        let (c, session) = cert_fetch(&ctx, req).await;
        if !c.is_empty() {
            let src = format!(
                "rustls handshake{}",
                session.map(|s| format!(" ({s})")).unwrap_or_default()
            );
            chain = Some((src, c));
        }
    }
    let certificate = chain.and_then(|(src, c)| CertReport::new(&c, now, &name, &src));
    let rdp_security = summary
        .rdp_request
        .map(|req| RdpSecSummary::new(req, rdp_results));

    let reachability = Reachability::Reachable {
        address: addr.to_string(),
    };
    let verdict = verdict::judge(&Evidence {
        reachability: &reachability,
        protocols: &protocols,
        nego: &summary,
        tls: tls_summary.as_ref(),
        certificate: certificate.as_ref(),
        ntlm: ntlm.as_ref(),
        rdp: rdp_security.as_ref(),
    });
    ProbeReport {
        target: target.clone(),
        started_unix: now,
        elapsed_ms: elapsed_ms(started),
        connections: connections.load(Ordering::Relaxed),
        reachability,
        protocols,
        protocol_summary: summary,
        tls: tls_summary,
        certificate,
        ntlm,
        rdp_security,
        verdict,
    }
}

fn elapsed_ms(started: Instant) -> u64 {
    u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// The report for a host nobody answers for: every request failed the same way.
fn unreachable(
    target: &Target,
    now: i64,
    started: Instant,
    connections: u32,
    failure: ConnectFailure,
) -> ProbeReport {
    let protocols: Vec<NegoResult> = REQUESTS
        .iter()
        .map(|r| {
            NegoResult::new(
                *r,
                NegoAnswer::ConnectFailed {
                    failure: failure.clone(),
                },
            )
        })
        .collect();
    let summary = nego::summarize(&protocols);
    let reachability = Reachability::Unreachable(failure);
    let verdict = verdict::judge(&Evidence {
        reachability: &reachability,
        protocols: &protocols,
        nego: &summary,
        tls: None,
        certificate: None,
        ntlm: None,
        rdp: None,
    });
    ProbeReport {
        target: target.clone(),
        started_unix: now,
        elapsed_ms: elapsed_ms(started),
        connections,
        reachability,
        protocols,
        protocol_summary: summary,
        tls: None,
        certificate: None,
        ntlm: None,
        rdp_security: None,
        verdict,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    /// A scripted host on loopback: for each accepted connection, reads once and answers with
    /// the next canned reply (empty = close).
    async fn host(replies: Vec<Vec<u8>>) -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            let replies = Arc::new(replies);
            loop {
                let Ok((mut s, _)) = l.accept().await else {
                    return;
                };
                let replies = replies.clone();
                tokio::spawn(async move {
                    let mut b = [0u8; 4096];
                    let mut i = 0;
                    while let Ok(n) = s.read(&mut b).await {
                        if n == 0 {
                            return;
                        }
                        match replies.get(i) {
                            Some(r) if !r.is_empty() => {
                                s.write_all(r).await.ok();
                            }
                            _ => return,
                        }
                        i += 1;
                    }
                });
            }
        });
        addr
    }

    fn target(addr: SocketAddr) -> Target {
        Target {
            host: addr.ip().to_string(),
            port: addr.port(),
        }
    }

    fn opts() -> ProbeOptions {
        ProbeOptions {
            timeout: Duration::from_millis(500),
            ..ProbeOptions::default()
        }
    }

    #[tokio::test]
    async fn closed_port_is_unreachable_after_one_connection() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        drop(l);
        let r = run(&target(addr), &opts()).await;
        assert_eq!(r.exit_code(), 2);
        assert_eq!(r.connections, 1);
        assert_eq!(
            r.reachability,
            Reachability::Unreachable(ConnectFailure::Refused)
        );
        assert!(
            r.protocols
                .iter()
                .all(|p| p.cause == Some("tcp.connect_refused"))
        );
    }

    #[tokio::test]
    async fn host_answering_hybrid_required_to_everything() {
        let cc = hex::decode("030000130ed000001234000300080005000000").unwrap();
        let addr = host(vec![cc]).await;
        let r = run(&target(addr), &opts()).await;
        assert_eq!(r.connections, 8);
        assert!(
            r.protocols
                .iter()
                .all(|p| p.cause == Some("nego.hybrid_required_by_server"))
        );
        assert_eq!(r.verdict.exit_code, 1);
        assert!(r.tls.is_none() && r.ntlm.is_none() && r.rdp_security.is_none());
    }

    #[tokio::test]
    async fn silent_host_times_out_per_step() {
        // Reads, never answers (the testbed's `silent`).
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            let mut keep = Vec::new();
            while let Ok((s, _)) = l.accept().await {
                keep.push(s);
            }
        });
        let o = ProbeOptions {
            timeout: Duration::from_millis(200),
            parallel: 8,
            ..ProbeOptions::default()
        };
        let r = run(&target(addr), &o).await;
        assert!(
            r.protocols.iter().all(|p| p.cause == Some("stall")),
            "{:?}",
            r.protocols
        );
        assert_eq!(r.verdict.exit_code, 1);
        assert!(r.elapsed_ms < 3000, "{} ms", r.elapsed_ms);
    }

    #[tokio::test]
    async fn tls_host_that_resets_after_the_client_hello() {
        // Selects SSL for everything, then closes at the ClientHello (a host that cannot use
        // its key).
        let cc = hex::decode("030000130ed000001234000201080001000000").unwrap();
        let addr = host(vec![cc, Vec::new()]).await;
        let r = run(&target(addr), &opts()).await;
        let t = r.tls.as_ref().unwrap();
        assert_eq!(t.versions.len(), 4);
        assert!(
            t.versions
                .iter()
                .all(|v| v.cause == Some("tls.host_aborted_handshake")),
            "{t:?}"
        );
        let mstsc = &r.verdict.clients[0];
        assert_eq!(mstsc.cause, Some("tls.host_aborted_handshake"));
        assert!(r.certificate.is_none());
    }
}
