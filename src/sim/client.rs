//! A simulated RDP client: sends a Connection Request, judges the Connection Confirm, does TLS
//! with chosen versions, suites and certificate checks, plays its part of CredSSP, Early User
//! Authorization, MCS and a session, holds it, and closes in order.
//!
//! Its reactions follow xfreerdp 2.11 as `testbed/README.md` records it: it closes (FIN) after an
//! RDP_NEG_FAILURE or a selection it did not request, and verifies the certificate *after* the
//! handshake, then closes with close_notify + FIN. A stricter client (mstsc-like) is available
//! for Standard RDP Security encryption checks.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme, SupportedCipherSuite};
use tokio::net::TcpStream;

use super::certs;
use super::host::provider;
use super::io::{Chan, CloseStyle, Stop};
use super::pdus::{self, ClientMcs, TsField};
use super::{CredsspSizes, TlsVersions};
use crate::session::Phase;
use crate::wire::x224::{self, FailureCode, NegData, Protocols, X224Pdu};

/// How the client judges the host certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CertCheck {
    /// Accept any certificate (`xfreerdp /cert:ignore`).
    #[default]
    AcceptAny,
    /// Verify during the handshake (rustls): a problem ends it with a TLS alert — clear under
    /// TLS 1.2, encrypted under TLS 1.3.
    Reject,
    /// Complete the handshake, verify, and on a problem close with close_notify + FIN before
    /// any application data (xfreerdp `/cert:deny`: testbed (d)).
    CompleteThenClose,
}

/// The client's TLS settings.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientTls {
    pub versions: TlsVersions,
    /// Cipher suites to offer (None: rustls' aws-lc-rs defaults).
    pub suites: Option<Vec<SupportedCipherSuite>>,
    /// The name the client connects to (SNI and certificate name check).
    pub server_name: String,
    pub cert_check: CertCheck,
    /// Trust anchor for the checks (None: the test CA of [`certs::pki`]).
    pub trust: Option<CertificateDer<'static>>,
    /// Instead of continuing, send a clear fatal alert with this description right after the
    /// host's first flight (ServerHelloDone under TLS 1.2), then FIN.
    pub alert_after_server_flight: Option<u8>,
}

impl Default for ClientTls {
    fn default() -> Self {
        Self {
            versions: TlsVersions::Both,
            suites: None,
            server_name: certs::HOST_NAME.to_owned(),
            cert_check: CertCheck::AcceptAny,
            trust: None,
            alert_after_server_flight: None,
        }
    }
}

/// A simulated client's behaviour.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientConfig {
    /// `Cookie: mstshash=` value (None: no cookie).
    pub cookie: Option<String>,
    /// RDP_NEG_REQ (flags, requestedProtocols); None: a legacy CR (Standard RDP Security).
    pub request: Option<(u8, Protocols)>,
    /// Accept a selection of Standard RDP Security (RDP, or a legacy CC) although the request
    /// named TLS protocols (xfreerdp without `/sec:` does; with `/sec:tls` it does not).
    pub accept_rdp: bool,
    pub tls: ClientTls,
    pub sizes: CredsspSizes,
    /// CS_SECURITY encryptionMethods.
    pub encryption_methods: u32,
    /// Close when the host picks a Standard RDP Security method the client did not offer
    /// (mstsc-like); xfreerdp only warns (false).
    pub strict_encryption: bool,
    /// Active-session rounds (must match the host's).
    pub active_rounds: usize,
    /// How long to hold the active session before closing.
    pub hold: Duration,
    /// Longest wait for the host's next bytes.
    pub read_timeout: Duration,
    pub connect_timeout: Duration,
    /// Real CredSSP (NTLMv2, `nla::credssp`) logging on as (user, password) instead of sized
    /// stand-ins: for `proxy --nla-user`.
    pub nla_logon: Option<(&'static str, &'static str)>,
}

impl Default for ClientConfig {
    /// An NLA client: cookie "alice", requests SSL|HYBRID, accepts any certificate.
    fn default() -> Self {
        Self {
            cookie: Some("alice".to_owned()),
            request: Some((0, Protocols(Protocols::SSL.0 | Protocols::HYBRID.0))),
            accept_rdp: false,
            tls: ClientTls::default(),
            sizes: CredsspSizes::default(),
            encryption_methods: pdus::enc::ALL,
            strict_encryption: true,
            active_rounds: 12,
            hold: Duration::from_millis(50),
            read_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(5),
            nla_logon: None,
        }
    }
}

impl ClientConfig {
    /// A client requesting these protocols, otherwise default.
    pub fn requesting(protocols: Protocols) -> Self {
        Self {
            request: Some((0, protocols)),
            ..Self::default()
        }
    }
}

/// How the host's side ended when the client did not end it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerClose {
    Fin,
    CloseNotify,
    Rst,
}

/// Why the client stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientEnd {
    /// It reached the active session, held it and closed in order.
    Completed,
    /// The TCP connect failed.
    ConnectFailed(String),
    /// The host answered RDP_NEG_FAILURE; the client closed.
    NegFailure(FailureCode),
    /// The host selected a protocol the client did not request; the client closed (FIN).
    RefusedSelected(Protocols),
    /// The host's answer is not TPKT / X.224.
    NotRdp(String),
    /// The host closed or reset while the client waited.
    PeerClosed(PeerClose),
    /// No answer within the read timeout.
    Timeout,
    /// The host sent a TLS alert (description).
    AlertReceived(u8),
    /// rustls failed and sent its alert (the error, e.g. "peer is incompatible: ...").
    TlsFailed(String),
    /// The client sent the configured alert after the host's flight.
    SentAlert(u8),
    /// The client rejected the certificate: with an alert (`Reject`), or with close_notify
    /// after a complete handshake (`CompleteThenClose`).
    CertRejected { problem: String, alert: bool },
    /// Standard RDP Security: the host chose a method the client did not offer.
    EncryptionRejected {
        offered: u32,
        method: u32,
        level: u32,
    },
    /// The host's CredSSP answer carried an errorCode.
    CredsspError(u32),
    /// Early User Authorization result ≠ 0.
    EarlyAuthDenied(u32),
    /// A local error.
    Error(String),
}

/// How far the client got and why it stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientOutcome {
    /// The last phase the client entered.
    pub reached: Phase,
    pub end: ClientEnd,
    /// The CC's selected protocol (RDP for a legacy CC).
    pub selected: Option<Protocols>,
    /// Negotiated TLS version and suite ("TLSv1_3 TLS13_AES_256_GCM_SHA384").
    pub tls: Option<String>,
    /// SC_SECURITY (encryptionMethod, encryptionLevel) under Standard RDP Security.
    pub server_encryption: Option<(u32, u32)>,
}

impl ClientOutcome {
    fn new() -> Self {
        Self {
            reached: Phase::TcpConnect,
            end: ClientEnd::Completed,
            selected: None,
            tls: None,
            server_encryption: None,
        }
    }
}

fn end_of(stop: Stop) -> ClientEnd {
    match stop {
        Stop::Fin => ClientEnd::PeerClosed(PeerClose::Fin),
        Stop::CloseNotify => ClientEnd::PeerClosed(PeerClose::CloseNotify),
        Stop::Rst => ClientEnd::PeerClosed(PeerClose::Rst),
        Stop::Timeout(_) => ClientEnd::Timeout,
        Stop::Unexpected(s) => ClientEnd::NotRdp(s),
        Stop::Tls(rustls::Error::AlertReceived(a)) => ClientEnd::AlertReceived(u8::from(a)),
        Stop::Tls(rustls::Error::InvalidCertificate(e)) => ClientEnd::CertRejected {
            problem: format!("{e:?}"),
            alert: true,
        },
        Stop::Tls(e) => ClientEnd::TlsFailed(e.to_string()),
        Stop::Io(e) => ClientEnd::Error(e.to_string()),
    }
}

/// Runs one client connection to `addr`.
pub async fn run(cfg: ClientConfig, addr: SocketAddr) -> ClientOutcome {
    let mut out = ClientOutcome::new();
    let tcp = match tokio::time::timeout(cfg.connect_timeout, TcpStream::connect(addr)).await {
        Ok(Ok(tcp)) => tcp,
        Ok(Err(e)) => {
            out.end = ClientEnd::ConnectFailed(e.to_string());
            return out;
        }
        Err(_) => {
            out.end = ClientEnd::ConnectFailed("connect timed out".to_owned());
            return out;
        }
    };
    let _nodelay = tcp.set_nodelay(true);
    let mut ch = Chan::new(tcp, cfg.read_timeout);
    out.end = match play(&mut ch, &cfg, &mut out).await {
        Ok(end) => end,
        Err(stop) => {
            if matches!(stop, Stop::Unexpected(_)) {
                // Something that is not RDP: read on until the peer ends (as mstsc does), so
                // who closes first does not depend on scheduling.
                ch.await_peer_close().await;
            }
            let end = end_of(stop);
            // Whatever happened, end our side politely (a reset peer makes this a no-op).
            ch.close(CloseStyle::Fin).await;
            end
        }
    };
    out
}

/// The client's part; `Ok(end)` when the client closed the connection itself.
async fn play(
    ch: &mut Chan,
    cfg: &ClientConfig,
    out: &mut ClientOutcome,
) -> Result<ClientEnd, Stop> {
    out.reached = Phase::X224;
    ch.send_raw(&pdus::connection_request(
        cfg.cookie.as_deref(),
        cfg.request,
    ))
    .await?;
    let cc = ch.recv_tpkt().await?;
    let selected = match x224::decode(&cc) {
        Ok(X224Pdu::ConnectionConfirm(cc)) => match cc.neg {
            Some(NegData::Failure { code, .. }) => {
                // The host closes after a failure (MS-RDPBCGR 3.3.5.3.2): let it.
                ch.await_peer_close().await;
                ch.close(CloseStyle::Fin).await;
                return Ok(ClientEnd::NegFailure(code));
            }
            Some(NegData::Response { selected, .. }) => selected,
            None => Protocols::RDP,
        },
        other => {
            return Err(Stop::Unexpected(format!(
                "not a Connection Confirm: {other:?}"
            )));
        }
    };
    out.selected = Some(selected);
    let requested = cfg.request.map_or(Protocols::RDP, |(_, p)| p);
    let acceptable = if selected == Protocols::RDP {
        requested == Protocols::RDP || cfg.accept_rdp
    } else {
        // Exactly one bit, and one the client asked for (FreeRDP nego_recv).
        selected.0.count_ones() == 1 && requested.contains(selected)
    };
    if !acceptable {
        ch.close(CloseStyle::Fin).await;
        return Ok(ClientEnd::RefusedSelected(selected));
    }

    if selected == Protocols::RDP {
        return standard_security(ch, cfg, out).await;
    }

    out.reached = Phase::TlsHandshake;
    let verifier = Arc::new(Verifier::new(&cfg.tls)?);
    let tls_cfg = client_config(&cfg.tls, verifier.clone())?;
    let name = ServerName::try_from(cfg.tls.server_name.clone())
        .map_err(|e| Stop::Io(std::io::Error::other(e)))?;
    let conn = rustls::ClientConnection::new(tls_cfg, name).map_err(Stop::Tls)?;
    ch.start_tls(rustls::Connection::Client(conn));

    if let Some(description) = cfg.tls.alert_after_server_flight {
        return alert_after_flight(ch, description).await;
    }

    ch.handshake().await?;
    out.tls = ch.tls().map(|c| {
        format!(
            "{:?} {:?}",
            c.protocol_version()
                .unwrap_or(rustls::ProtocolVersion::Unknown(0)),
            c.negotiated_cipher_suite()
                .map(|s| s.suite())
                .unwrap_or(rustls::CipherSuite::Unknown(0))
        )
    });
    if cfg.tls.cert_check == CertCheck::CompleteThenClose
        && let Some(problem) = verifier.problem()
    {
        ch.close(CloseStyle::CloseNotifyFin).await;
        return Ok(ClientEnd::CertRejected {
            problem,
            alert: false,
        });
    }

    if selected.uses_credssp() {
        out.reached = Phase::Credssp;
        if let Some(logon) = cfg.nla_logon {
            if let Some(code) = real_credssp(ch, logon).await? {
                ch.await_peer_close().await;
                ch.close(CloseStyle::CloseNotifyFin).await;
                return Ok(ClientEnd::CredsspError(code));
            }
        } else {
            let s = &cfg.sizes;
            ch.send(&pdus::ts_request(TsField::NegoToken(1), s.c1))
                .await?;
            ch.recv_der().await?;
            ch.send(&pdus::ts_request(TsField::NegoToken(3), s.c2))
                .await?;
            let s2 = ch.recv_der().await?;
            if let Some(code) = ts_error_code(&s2) {
                ch.await_peer_close().await;
                ch.close(CloseStyle::CloseNotifyFin).await;
                return Ok(ClientEnd::CredsspError(code));
            }
            ch.send(&pdus::ts_request(TsField::AuthInfo, s.c3)).await?;
        }
        if selected.contains(Protocols::HYBRID_EX) {
            out.reached = Phase::EarlyUserAuth;
            let r = ch.recv_exact(4).await?;
            let result = u32::from_le_bytes([r[0], r[1], r[2], r[3]]);
            if result != pdus::AUTHZ_SUCCESS {
                ch.await_peer_close().await;
                ch.close(CloseStyle::Fin).await;
                return Ok(ClientEnd::EarlyAuthDenied(result));
            }
        }
    }

    out.reached = Phase::Mcs;
    ch.send(&pdus::connect_initial(&ClientMcs::typical(
        selected.0,
        cfg.encryption_methods,
    )))
    .await?;
    ch.recv_tpkt().await?;
    session(ch, cfg, out, false).await
}

/// Standard RDP Security: clear Connect-Initial, check the host's method and level, session.
async fn standard_security(
    ch: &mut Chan,
    cfg: &ClientConfig,
    out: &mut ClientOutcome,
) -> Result<ClientEnd, Stop> {
    out.reached = Phase::Mcs;
    let offered = cfg.encryption_methods;
    ch.send(&pdus::connect_initial(&ClientMcs::typical(0, offered)))
        .await?;
    let rsp = ch.recv_tpkt().await?;
    let (method, level) = pdus::parse_server_security(&rsp)
        .ok_or_else(|| Stop::Unexpected("Connect-Response without SC_SECURITY".to_owned()))?;
    out.server_encryption = Some((method, level));
    // MS-RDPBCGR 5.3.2.1: one of the client's methods, and method 0 exactly with level 0.
    let fits = (method == 0) == (level == 0) && (method == 0 || offered & method == method);
    if cfg.strict_encryption && !fits {
        ch.close(CloseStyle::Fin).await;
        return Ok(ClientEnd::EncryptionRejected {
            offered,
            method,
            level,
        });
    }
    session(ch, cfg, out, true).await
}

/// Channel joins, licensing, capabilities, finalization, the active session, then the close.
async fn session(
    ch: &mut Chan,
    cfg: &ClientConfig,
    out: &mut ClientOutcome,
    standard: bool,
) -> Result<ClientEnd, Stop> {
    out.reached = Phase::Licensing;
    let script = pdus::session_script(standard, cfg.active_rounds);
    let active_from = script.len().saturating_sub(2 * cfg.active_rounds);
    for (i, (from, pdu)) in script.iter().enumerate() {
        if i == active_from {
            out.reached = Phase::Active;
        }
        match from {
            pdus::Sender::Client => ch.send(pdu).await?,
            pdus::Sender::Host => {
                ch.recv_tpkt().await?;
            }
        }
    }
    tokio::time::sleep(cfg.hold).await;
    ch.send(&pdus::DISCONNECT_PROVIDER_ULTIMATUM).await?;
    let how = if standard {
        CloseStyle::Fin
    } else {
        CloseStyle::CloseNotifyFin
    };
    ch.close(how).await;
    Ok(ClientEnd::Completed)
}

/// Reads the host's clear flight record by record (not feeding rustls), then sends the alert.
async fn alert_after_flight(ch: &mut Chan, description: u8) -> Result<ClientEnd, Stop> {
    ch.flush_tls().await?; // the ClientHello
    let mut hs: Vec<u8> = Vec::new();
    let mut tls13 = false;
    loop {
        let rec = if tls13 {
            // The rest of a TLS 1.3 flight is encrypted: take what comes within 200 ms.
            let short = ch.timeout.min(Duration::from_millis(200));
            let saved = std::mem::replace(&mut ch.timeout, short);
            let r = ch.raw_record().await;
            ch.timeout = saved;
            match r {
                Err(Stop::Timeout(_)) => break,
                r => r?,
            }
        } else {
            ch.raw_record().await?
        };
        let (ty, body) = (rec.first().copied(), rec.get(5..).unwrap_or_default());
        match ty {
            Some(0x15) => {
                let desc = body.get(1).copied().unwrap_or(0);
                ch.close(CloseStyle::Fin).await;
                return Ok(ClientEnd::AlertReceived(desc));
            }
            Some(0x16) if !tls13 => {
                hs.extend_from_slice(body);
                let (done, is13) = scan_flight(&hs);
                tls13 = is13;
                if done {
                    break;
                }
            }
            _ => {}
        }
    }
    ch.send_raw(&pdus::tls_fatal_alert(0x0303, description))
        .await?;
    ch.close(CloseStyle::Fin).await;
    Ok(ClientEnd::SentAlert(description))
}

/// Walks handshake messages: (ServerHelloDone seen, ServerHello selected TLS 1.3).
fn scan_flight(hs: &[u8]) -> (bool, bool) {
    let mut at = 0usize;
    let mut tls13 = false;
    while let Some(h) = hs.get(at..at + 4) {
        let len = usize::from(h[1]) << 16 | usize::from(h[2]) << 8 | usize::from(h[3]);
        let Some(body) = hs.get(at + 4..at + 4 + len) else {
            break;
        };
        match h[0] {
            // ServerHello with supported_versions = TLS 1.3 (extension 0x002b, length 2, 0x0304).
            2 => {
                tls13 = body
                    .windows(6)
                    .any(|w| w == [0x00, 0x2b, 0x00, 0x02, 0x03, 0x04])
            }
            14 => return (true, tls13),
            _ => {}
        }
        at += 4 + len;
    }
    (false, tls13)
}

/// errorCode `[4]` of a TSRequest, if present (a tiny S2 from a Windows host).
/// The client's CredSSP with real NTLMv2 (`nla::credssp`), bound to the certificate the TLS
/// peer presented. `Some(code)`: the server answered with an errorCode.
async fn real_credssp(
    ch: &mut Chan,
    (user, password): (&'static str, &'static str),
) -> Result<Option<u32>, Stop> {
    use crate::nla::credssp::{HostLeg, subject_public_key};
    use crate::nla::ntlm::Credentials;
    use crate::wire::credssp as ts;
    let bad = |e: &dyn std::fmt::Display| Stop::Unexpected(format!("CredSSP: {e}"));
    let key = ch
        .tls()
        .and_then(|c| c.peer_certificates())
        .and_then(|c| c.first())
        .and_then(|c| subject_public_key(c))
        .unwrap_or_default();
    let creds = Credentials::new(user, password.to_owned());
    let mut leg = HostLeg::new(6, key, [0x11; 32]);
    ch.send(&ts::encode(&leg.negotiate())).await?;
    let s1 = ch.recv_ts_request().await?;
    if let Some(code) = s1.error_code {
        return Ok(Some(code));
    }
    let c2 = leg
        .on_challenge(&s1, &creds, 0, [0x22; 8], [0x33; 16], "SIMCLIENT")
        .map_err(|e| bad(&e))?;
    ch.send(&ts::encode(&c2)).await?;
    let s2 = ch.recv_ts_request().await?;
    if let Some(code) = s2.error_code {
        return Ok(Some(code));
    }
    let c3 = leg.on_pubkey_reply(&s2, &creds).map_err(|e| bad(&e))?;
    ch.send(&ts::encode(&c3)).await?;
    Ok(None)
}

fn ts_error_code(ts: &[u8]) -> Option<u32> {
    let at = ts.windows(3).position(|w| w == [0xa4, 0x06, 0x02])?;
    let b = ts.get(at + 4..at + 8)?;
    Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

fn client_config(
    tls: &ClientTls,
    verifier: Arc<Verifier>,
) -> Result<Arc<rustls::ClientConfig>, Stop> {
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(provider(tls.suites.as_ref())))
        .with_protocol_versions(tls.versions.rustls())
        .map_err(Stop::Tls)?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok(Arc::new(cfg))
}

/// The certificate verifier: webpki against the trust anchor; depending on the mode it fails
/// the handshake, or records the problem and lets the handshake complete.
#[derive(Debug)]
struct Verifier {
    inner: Arc<WebPkiServerVerifier>,
    check: CertCheck,
    problem: Mutex<Option<String>>,
}

impl Verifier {
    fn new(tls: &ClientTls) -> Result<Self, Stop> {
        let ca = match &tls.trust {
            Some(ca) => ca.clone(),
            None => certs::pki()
                .map_err(|e| Stop::Io(std::io::Error::other(e)))?
                .ca
                .clone(),
        };
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca).map_err(Stop::Tls)?;
        let inner = WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots),
            Arc::new(provider(tls.suites.as_ref())),
        )
        .build()
        .map_err(|e| Stop::Io(std::io::Error::other(e)))?;
        Ok(Self {
            inner,
            check: tls.cert_check,
            problem: Mutex::new(None),
        })
    }

    fn problem(&self) -> Option<String> {
        self.problem.lock().ok().and_then(|p| p.clone())
    }
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let verdict = self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        );
        match (self.check, verdict) {
            (CertCheck::Reject, verdict) => verdict,
            (_, Ok(v)) => Ok(v),
            (_, Err(e)) => {
                if let Ok(mut p) = self.problem.lock() {
                    *p = Some(format!("{e:?}"));
                }
                Ok(ServerCertVerified::assertion())
            }
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}
