//! A simulated RDP host: answers the X.224 Connection Request in a chosen way, then does (or
//! refuses) TLS, a CredSSP-shaped exchange, Early User Authorization, MCS and a session.
//!
//! Each behaviour imitates a real peer from `testbed/README.md` or the Windows behaviour the
//! reference (§4, F1–F12) describes; the doc comment of each variant says which.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::SupportedCipherSuite;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

use super::certs::{self, CertChoice, TestPki};
use super::io::{Chan, CloseStyle, Stop};
use super::pdus::{self, CcNeg, HostMcs, TsField};
use super::{CredsspSizes, TlsVersions};
use crate::session::Phase;
use crate::wire::x224::{self, FailureCode, Protocols, X224Pdu};

/// How the host answers the X.224 Connection Request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum X224Answer {
    /// RDP_NEG_RSP selecting this protocol, whatever the client asked (xrdp with
    /// `security_layer=rdp` selects RDP(0) for a TLS-only client: testbed (a)).
    Select { protocol: Protocols, flags: u8 },
    /// RDP_NEG_FAILURE with this code, then FIN (MS-RDPBCGR 3.3.5.3.2: the server closes).
    Failure(FailureCode),
    /// A Connection Confirm without negotiation data (LI 6): Standard RDP Security.
    Legacy,
    /// FIN right after reading the CR (testbed `raw-fin-after-cr`).
    CloseFin,
    /// RST right after reading the CR (testbed `raw-rst-after-cr`, SO_LINGER 0).
    CloseRst,
    /// Never answer; keep the connection until the peer gives up (testbed `silent`).
    Silent,
    /// Answer with bytes that are not TPKT, then FIN (another service on the port).
    Garbage(Vec<u8>),
}

/// A rustls server's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct ServeTls {
    pub versions: TlsVersions,
    /// Cipher suites to allow (None: rustls' aws-lc-rs defaults).
    pub suites: Option<Vec<SupportedCipherSuite>>,
    pub cert: CertChoice,
}

impl Default for ServeTls {
    fn default() -> Self {
        Self {
            versions: TlsVersions::Both,
            suites: None,
            cert: CertChoice::Good,
        }
    }
}

/// What the host does once the client starts TLS (selectedProtocol ≠ RDP).
#[derive(Debug, Clone, PartialEq)]
pub enum HostTls {
    /// A rustls server.
    Serve(ServeTls),
    /// RST right after the ClientHello: Schannel with an unusable credential (reference F5 (b)).
    ResetAfterClientHello,
    /// FIN right after the ClientHello.
    CloseAfterClientHello,
    /// A clear fatal alert (level 2, this description) instead of a ServerHello, then FIN
    /// (FreeRDP server with a mismatched key: 40; OpenSSL asked for TLS 1.0: 80).
    AlertAfterClientHello { description: u8 },
    /// A plain-text MCS Disconnect-Provider-Ultimatum where the ServerHello belongs, then RST
    /// (xrdp with a mismatched or too weak key: testbed (e)).
    UltimatumAfterClientHello,
    /// Read the ClientHello and say nothing more (stall in the TLS handshake).
    StallAfterClientHello,
    /// A hand-built TLS 1.0 server flight (ServerHello selecting TLS 1.0, Certificate,
    /// ServerHelloDone): a legacy host (testbed `xrdp-tls10-legacy`).
    Tls10ServerFlight { cert: CertChoice },
}

/// Where the host's CredSSP part stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredsspStep {
    /// After the client's NEGOTIATE (C1).
    AfterC1,
    /// After the client's AUTHENTICATE + pubKeyAuth (C2): where credentials are judged.
    AfterC2,
    /// After the client's TSCredentials (C3).
    AfterC3,
}

/// A CredSSP failure on the host side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CredsspFailure {
    pub after: CredsspStep,
    /// Send a TSRequest with this errorCode first (Windows, CredSSP v3+; 15 bytes plaintext),
    /// or nothing (FreeRDP server: testbed (g)).
    pub error_code: Option<u32>,
    /// How the host then closes (FreeRDP: close_notify + FIN).
    pub close: CloseStyle,
}

/// Standard RDP Security on the host (selectedProtocol RDP).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RdpSecurityHost {
    /// SC_SECURITY encryptionMethod (one value or 0); sent as is, even if the client did not
    /// offer it (testbed `xrdp-rdp-fips` with a 128-bit-only client).
    pub encryption_method: u32,
    /// SC_SECURITY encryptionLevel.
    pub encryption_level: u32,
    /// Close (FIN) after the Connect-Initial instead of answering (MS-RDPBCGR 5.3.2.1: the
    /// method rule failed).
    pub close_after_connect_initial: bool,
}

impl Default for RdpSecurityHost {
    fn default() -> Self {
        Self {
            encryption_method: pdus::enc::BIT128,
            encryption_level: pdus::enc::LEVEL_CLIENT_COMPATIBLE,
            close_after_connect_initial: false,
        }
    }
}

/// A simulated host's behaviour (applied to every connection unless [`spawn_sequence`] is
/// used).
#[derive(Debug, Clone, PartialEq)]
pub struct HostConfig {
    pub answer: X224Answer,
    pub tls: HostTls,
    /// None: CredSSP completes.
    pub credssp_failure: Option<CredsspFailure>,
    /// Early User Authorization result for HYBRID_EX (0 allowed, 5 denied; the host closes
    /// with FIN after a non-zero result).
    pub early_auth_result: u32,
    pub rdp_security: RdpSecurityHost,
    pub sizes: CredsspSizes,
    /// Active-session rounds after finalization (each: one host update, one client input).
    pub active_rounds: usize,
    /// Longest wait for the client's next bytes.
    pub read_timeout: Duration,
    /// Stop accepting after this many connections and return their logs (None: forever).
    pub max_connections: Option<usize>,
    /// Real CredSSP (NTLMv2, `nla::credssp`) with this account (user, password) instead of
    /// sized stand-ins: for `proxy --nla-user`. A wrong logon gets errorCode
    /// STATUS_LOGON_FAILURE, as Windows sends it.
    pub nla_account: Option<(&'static str, &'static str)>,
}

impl Default for HostConfig {
    /// A healthy NLA host: selects HYBRID, TLS 1.2/1.3 with the good certificate.
    fn default() -> Self {
        Self {
            answer: X224Answer::Select {
                protocol: Protocols::HYBRID,
                flags: 0x03,
            },
            tls: HostTls::Serve(ServeTls::default()),
            credssp_failure: None,
            early_auth_result: pdus::AUTHZ_SUCCESS,
            rdp_security: RdpSecurityHost::default(),
            sizes: CredsspSizes::default(),
            active_rounds: 12,
            read_timeout: Duration::from_secs(30),
            max_connections: None,
            nla_account: None,
        }
    }
}

impl HostConfig {
    /// A host that selects `protocol` and otherwise behaves like the default.
    pub fn selecting(protocol: Protocols) -> Self {
        Self {
            answer: X224Answer::Select {
                protocol,
                flags: 0x03,
            },
            ..Self::default()
        }
    }
}

/// What the host saw on one connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostLog {
    pub peer: SocketAddr,
    /// requestedProtocols of the CR (None: no CR, or a legacy CR without RDP_NEG_REQ).
    pub requested: Option<Protocols>,
    /// The last phase the host entered.
    pub reached: Phase,
    /// Steps in order ("sent CC", "tls: handshake done TLSv1_3", "peer: FIN", ...).
    pub steps: Vec<String>,
}

/// Listens on 127.0.0.1:0 and serves every connection with `cfg`.
///
/// The handle finishes after `cfg.max_connections` connections (returning their logs, in
/// accept order) or runs until aborted.
pub async fn spawn(cfg: HostConfig) -> std::io::Result<(SocketAddr, JoinHandle<Vec<HostLog>>)> {
    spawn_sequence(vec![cfg]).await
}

/// Like [`spawn`], with one behaviour per connection: connection `i` uses `cfgs[i]`, the last
/// one repeats (a host that changes its answer between a client's fallback attempts). The
/// first config's `max_connections` applies.
pub async fn spawn_sequence(
    cfgs: Vec<HostConfig>,
) -> std::io::Result<(SocketAddr, JoinHandle<Vec<HostLog>>)> {
    let pki = certs::pki()?;
    let mut prepared = Vec::with_capacity(cfgs.len());
    for cfg in cfgs {
        let tls = match &cfg.tls {
            HostTls::Serve(s) => Some(server_config(s, pki).map_err(std::io::Error::other)?),
            _ => None,
        };
        prepared.push(Arc::new(Prepared { cfg, tls, pki }));
    }
    let Some(first) = prepared.first().cloned() else {
        return Err(std::io::Error::other("spawn_sequence: no host config"));
    };
    let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
    let addr = listener.local_addr()?;
    let handle = tokio::spawn(async move {
        let mut tasks = JoinSet::new();
        let mut index = 0usize;
        loop {
            if first.cfg.max_connections.is_some_and(|m| index >= m) {
                break;
            }
            let Ok((tcp, peer)) = listener.accept().await else {
                break;
            };
            let Some(p) = prepared.get(index).or(prepared.last()).cloned() else {
                break;
            };
            tasks.spawn(async move { (index, serve(tcp, peer, &p).await) });
            index += 1;
        }
        let mut logs: Vec<(usize, HostLog)> = Vec::new();
        while let Some(done) = tasks.join_next().await {
            if let Ok(entry) = done {
                logs.push(entry);
            }
        }
        logs.sort_by_key(|(i, _)| *i);
        logs.into_iter().map(|(_, l)| l).collect()
    });
    Ok((addr, handle))
}

struct Prepared {
    cfg: HostConfig,
    tls: Option<Arc<rustls::ServerConfig>>,
    pki: &'static TestPki,
}

pub(crate) fn provider(
    suites: Option<&Vec<SupportedCipherSuite>>,
) -> rustls::crypto::CryptoProvider {
    let mut p = rustls::crypto::aws_lc_rs::default_provider();
    if let Some(s) = suites {
        p.cipher_suites = s.clone();
    }
    p
}

fn server_config(s: &ServeTls, pki: &TestPki) -> Result<Arc<rustls::ServerConfig>, rustls::Error> {
    let cert = s.cert.resolve(pki);
    let cfg = rustls::ServerConfig::builder_with_provider(Arc::new(provider(s.suites.as_ref())))
        .with_protocol_versions(s.versions.rustls())?
        .with_no_client_auth()
        .with_single_cert(cert.chain(), cert.key())?;
    Ok(Arc::new(cfg))
}

struct Log {
    log: HostLog,
}

impl Log {
    fn step(&mut self, s: impl Into<String>) {
        self.log.steps.push(s.into());
    }

    fn phase(&mut self, p: Phase) {
        self.log.reached = p;
    }

    /// Records why the exchange stopped ("peer: FIN").
    fn stopped(&mut self, stop: &Stop) {
        self.step(format!("peer: {stop}"));
    }
}

async fn serve(tcp: TcpStream, peer: SocketAddr, p: &Prepared) -> HostLog {
    let mut log = Log {
        log: HostLog {
            peer,
            requested: None,
            reached: Phase::X224,
            steps: Vec::new(),
        },
    };
    let mut ch = Chan::new(tcp, p.cfg.read_timeout);
    if let Err(stop) = serve_inner(&mut ch, p, &mut log).await {
        log.stopped(&stop);
        // The exchange broke off: the peer is gone or silent; close our side too.
        ch.close(CloseStyle::Fin).await;
    }
    log.log
}

/// Runs the host's part; `Ok` when it has closed the connection itself, `Err` when the peer
/// stopped first (the caller closes).
async fn serve_inner(ch: &mut Chan, p: &Prepared, log: &mut Log) -> Result<(), Stop> {
    let cfg = &p.cfg;
    let cr = ch.recv_tpkt().await?;
    let requested = match x224::decode(&cr) {
        Ok(X224Pdu::ConnectionRequest(req)) => {
            log.log.requested = req.neg_req.as_ref().map(|n| n.requested);
            req.requested()
        }
        other => {
            log.step(format!("not a connection request: {other:?}"));
            Protocols::RDP
        }
    };
    log.step(format!("got CR requested={}", requested.names()));

    let selected = match &cfg.answer {
        X224Answer::CloseFin => return finish(ch, log, CloseStyle::Fin, "FIN after CR").await,
        X224Answer::CloseRst => return finish(ch, log, CloseStyle::Rst, "RST after CR").await,
        X224Answer::Silent => return hold_silent(ch, log).await,
        X224Answer::Garbage(bytes) => {
            ch.send_raw(bytes).await?;
            return finish(ch, log, CloseStyle::Fin, "garbage + FIN").await;
        }
        X224Answer::Failure(code) => {
            ch.send_raw(&pdus::connection_confirm(CcNeg::Failure(*code)))
                .await?;
            return finish(ch, log, CloseStyle::Fin, format!("sent {code} + FIN")).await;
        }
        X224Answer::Legacy => {
            ch.send_raw(&pdus::connection_confirm(CcNeg::Legacy))
                .await?;
            log.step("sent legacy CC");
            Protocols::RDP
        }
        X224Answer::Select { protocol, flags } => {
            ch.send_raw(&pdus::connection_confirm(CcNeg::Response {
                flags: *flags,
                selected: *protocol,
            }))
            .await?;
            log.step(format!("sent CC selected={}", protocol.names()));
            *protocol
        }
    };

    if !selected.uses_tls() {
        return standard_security(ch, p, log, requested).await;
    }

    log.phase(Phase::TlsHandshake);
    let tls = match (&cfg.tls, &p.tls) {
        (HostTls::Serve(_), Some(tls)) => tls.clone(),
        (HostTls::Serve(_), None) => {
            return Err(Stop::Unexpected("no TLS server config".to_owned()));
        }
        (HostTls::ResetAfterClientHello, _) => {
            ch.raw_record().await?;
            return finish(ch, log, CloseStyle::Rst, "RST after ClientHello").await;
        }
        (HostTls::CloseAfterClientHello, _) => {
            ch.raw_record().await?;
            return finish(ch, log, CloseStyle::Fin, "FIN after ClientHello").await;
        }
        (HostTls::AlertAfterClientHello { description }, _) => {
            ch.raw_record().await?;
            ch.send_raw(&pdus::tls_fatal_alert(0x0303, *description))
                .await?;
            let what = format!("alert {description} + FIN after ClientHello");
            return finish(ch, log, CloseStyle::Fin, what).await;
        }
        (HostTls::UltimatumAfterClientHello, _) => {
            ch.raw_record().await?;
            ch.send_raw(&pdus::DISCONNECT_PROVIDER_ULTIMATUM).await?;
            // Let the ultimatum leave before the RST discards unsent data.
            tokio::time::sleep(Duration::from_millis(30)).await;
            return finish(ch, log, CloseStyle::Rst, "MCS DPU + RST after ClientHello").await;
        }
        (HostTls::StallAfterClientHello, _) => {
            ch.raw_record().await?;
            log.step("got ClientHello, stalling");
            return hold_silent(ch, log).await;
        }
        (HostTls::Tls10ServerFlight { cert }, _) => {
            ch.raw_record().await?;
            let cert = cert.resolve(p.pki);
            ch.send_raw(&pdus::tls10_server_flight(&cert.der)).await?;
            log.step("sent TLS 1.0 server flight");
            // The client answers with an alert (or accepts and sends its key exchange, which
            // this host cannot continue): read one record, then close.
            let answer = ch.raw_record().await?;
            log.step(format!(
                "client answered {}",
                hex::encode(answer.get(..7).unwrap_or(&answer))
            ));
            return finish(ch, log, CloseStyle::Fin, "FIN").await;
        }
    };

    let conn = rustls::ServerConnection::new(tls).map_err(Stop::Tls)?;
    ch.start_tls(rustls::Connection::Server(conn));
    if let Err(stop) = ch.handshake().await {
        log.step(format!("tls: handshake failed: {stop}"));
        return finish(ch, log, CloseStyle::Fin, "FIN after failed handshake").await;
    }
    let version = ch
        .tls()
        .and_then(|c| c.protocol_version())
        .map(|v| format!("{v:?}"))
        .unwrap_or_default();
    log.step(format!("tls: handshake done {version}"));

    if selected.uses_credssp() {
        log.phase(Phase::Credssp);
        let how = match (cfg.nla_account, &cfg.tls) {
            (Some(account), HostTls::Serve(t)) => {
                let cert = t.cert.resolve(p.pki);
                real_credssp(ch, cfg, &cert.der, account, log).await?
            }
            _ => credssp(ch, cfg, log).await?,
        };
        if let Some(how) = how {
            return finish(ch, log, how, "closed during CredSSP").await;
        }
        if selected.contains(Protocols::HYBRID_EX) {
            log.phase(Phase::EarlyUserAuth);
            ch.send(&pdus::early_user_auth_result(cfg.early_auth_result))
                .await?;
            log.step(format!("sent EUA result {:#010x}", cfg.early_auth_result));
            if cfg.early_auth_result != pdus::AUTHZ_SUCCESS {
                return finish(ch, log, CloseStyle::Fin, "FIN after EUA denial").await;
            }
        }
    }

    log.phase(Phase::Mcs);
    ch.recv_tpkt().await?;
    log.step("got Connect-Initial");
    ch.send(&pdus::connect_response(&HostMcs {
        channel_count: 4,
        ..HostMcs::e17t(requested.0)
    }))
    .await?;
    log.step("sent Connect-Response");
    session(ch, p, log, false).await
}

/// The host's CredSSP part; `Some(close)` when it fails on purpose.
async fn credssp(
    ch: &mut Chan,
    cfg: &HostConfig,
    log: &mut Log,
) -> Result<Option<CloseStyle>, Stop> {
    let fail = |step: CredsspStep| cfg.credssp_failure.filter(|f| f.after == step);
    let s = &cfg.sizes;
    ch.recv_der().await?;
    log.step("got C1 (NEGOTIATE)");
    if let Some(f) = fail(CredsspStep::AfterC1) {
        return fail_credssp(ch, f).await;
    }
    ch.send(&pdus::ts_request(TsField::NegoToken(2), s.s1))
        .await?;
    ch.recv_der().await?;
    log.step("got C2 (AUTHENTICATE)");
    if let Some(f) = fail(CredsspStep::AfterC2) {
        return fail_credssp(ch, f).await;
    }
    ch.send(&pdus::ts_request(TsField::PubKeyAuth, s.s2))
        .await?;
    ch.recv_der().await?;
    log.step("got C3 (TSCredentials)");
    if let Some(f) = fail(CredsspStep::AfterC3) {
        return fail_credssp(ch, f).await;
    }
    Ok(None)
}

/// The host's CredSSP with real NTLMv2 (`nla::credssp`, rdpdiag's own legs): names itself
/// SIMHOST, checks the client's logon against `account`.
async fn real_credssp(
    ch: &mut Chan,
    cfg: &HostConfig,
    cert_der: &[u8],
    (user, password): (&'static str, &'static str),
    log: &mut Log,
) -> Result<Option<CloseStyle>, Stop> {
    use crate::nla::credssp::{ClientLeg, subject_public_key};
    use crate::nla::ntlm::{Credentials, ServerIdentity};
    use crate::wire::credssp as ts;
    let fail = |step: CredsspStep| cfg.credssp_failure.filter(|f| f.after == step);
    let bad = |e: &dyn std::fmt::Display| Stop::Unexpected(format!("CredSSP: {e}"));
    let creds = Credentials::new(user, password.to_owned());
    let mut leg = ClientLeg::new(subject_public_key(cert_der).unwrap_or_default());
    let c1 = ch.recv_ts_request().await?;
    log.step("got C1 (NEGOTIATE)");
    if let Some(f) = fail(CredsspStep::AfterC1) {
        return fail_credssp(ch, f).await;
    }
    let negotiate = leg.on_negotiate(&c1).map_err(|e| bad(&e))?;
    let now = crate::wire::ntlm::unix_to_filetime(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default(),
    );
    let id = ServerIdentity {
        nb_domain: "SIMHOST".to_owned(),
        nb_computer: "SIMHOST".to_owned(),
        dns_domain: "simhost".to_owned(),
        dns_computer: "simhost".to_owned(),
    };
    let challenge = leg
        .challenge(&negotiate, [0x5a; 8], now, &id)
        .map_err(|e| bad(&e))?;
    ch.send(&ts::encode(&challenge)).await?;
    let c2 = ch.recv_ts_request().await?;
    log.step("got C2 (AUTHENTICATE)");
    if let Some(f) = fail(CredsspStep::AfterC2) {
        return fail_credssp(ch, f).await;
    }
    if let Err(e) = leg.on_authenticate(&c2, &creds) {
        log.step(format!("refused the logon: {e}"));
        ch.send(&ts_error(0xC000_006D)).await?;
        return Ok(Some(CloseStyle::CloseNotifyFin));
    }
    ch.send(&ts::encode(&leg.pubkey_reply().map_err(|e| bad(&e))?))
        .await?;
    let c3 = ch.recv_ts_request().await?;
    log.step("got C3 (TSCredentials)");
    if let Some(f) = fail(CredsspStep::AfterC3) {
        return fail_credssp(ch, f).await;
    }
    leg.on_credentials(&c3, &creds).map_err(|e| bad(&e))?;
    Ok(None)
}

async fn fail_credssp(ch: &mut Chan, f: CredsspFailure) -> Result<Option<CloseStyle>, Stop> {
    if let Some(code) = f.error_code {
        ch.send(&ts_error(code)).await?;
    }
    Ok(Some(f.close))
}

/// `TSRequest { version 6, errorCode [4] INTEGER }` (15 bytes, reference §2.8.7).
fn ts_error(code: u32) -> Vec<u8> {
    let c = code.to_be_bytes();
    vec![
        0x30, 0x0d, 0xa0, 0x03, 0x02, 0x01, 0x06, 0xa4, 0x06, 0x02, 0x04, c[0], c[1], c[2], c[3],
    ]
}

/// Standard RDP Security: clear MCS Connect-Initial / Connect-Response, then the session.
async fn standard_security(
    ch: &mut Chan,
    p: &Prepared,
    log: &mut Log,
    requested: Protocols,
) -> Result<(), Stop> {
    log.phase(Phase::Mcs);
    let rdp = &p.cfg.rdp_security;
    ch.recv_tpkt().await?;
    log.step("got clear Connect-Initial");
    if rdp.close_after_connect_initial {
        return finish(ch, log, CloseStyle::Fin, "FIN after Connect-Initial").await;
    }
    ch.send(&pdus::connect_response(&HostMcs {
        client_requested_protocols: requested.0,
        encryption_method: rdp.encryption_method,
        encryption_level: rdp.encryption_level,
        channel_count: 4,
    }))
    .await?;
    log.step(format!(
        "sent Connect-Response method={:#x} level={}",
        rdp.encryption_method, rdp.encryption_level
    ));
    session(ch, p, log, true).await
}

/// Channel joins, licensing, capabilities, finalization and the active session; then waits for
/// the client's orderly close.
async fn session(ch: &mut Chan, p: &Prepared, log: &mut Log, standard: bool) -> Result<(), Stop> {
    log.phase(Phase::Licensing);
    let script = pdus::session_script(standard, p.cfg.active_rounds);
    let active_from = script.len().saturating_sub(2 * p.cfg.active_rounds);
    for (i, (from, pdu)) in script.iter().enumerate() {
        if i == active_from {
            log.phase(Phase::Active);
        }
        match from {
            pdus::Sender::Host => ch.send(pdu).await?,
            pdus::Sender::Client => {
                ch.recv_tpkt().await?;
            }
        }
    }
    log.step("session script done");
    // The client ends the session: a Disconnect-Provider-Ultimatum, then its close.
    loop {
        match ch.recv_tpkt().await {
            Ok(_) => log.step("got PDU"),
            Err(stop @ (Stop::Fin | Stop::CloseNotify)) => {
                log.stopped(&stop);
                let how = if standard {
                    CloseStyle::Fin
                } else {
                    CloseStyle::CloseNotifyFin
                };
                return finish(ch, log, how, "closed after the client").await;
            }
            Err(stop) => return Err(stop),
        }
    }
}

/// Reads and discards until the peer closes (bounded by the read timeout).
async fn hold_silent(ch: &mut Chan, log: &mut Log) -> Result<(), Stop> {
    loop {
        match ch.raw_exact(1).await {
            Ok(_) => {}
            Err(Stop::Fin) => {
                log.step("peer: FIN while we were silent");
                return finish(ch, log, CloseStyle::Fin, "FIN").await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Closes the host's side the chosen way and records it.
async fn finish(
    ch: &mut Chan,
    log: &mut Log,
    how: CloseStyle,
    what: impl Into<String>,
) -> Result<(), Stop> {
    log.step(what);
    ch.close(how).await;
    Ok(())
}
