//! `proxy --fresh-cert`: once the host selected a TLS protocol, terminate TLS on both legs —
//! rustls client toward the host (accepting and recording any certificate), rustls server toward
//! the client with rdpdiag's fresh certificate — then relay the plain text, feeding it to the
//! session (`Session::feed_plaintext`) and patching the echo of requestedProtocols in the MCS
//! Connect-Response when the request was rewritten.
//!
//! Key log: both legs log their secrets into one [`KeyLogBuffer`] per connection; its contents
//! come back to `serve` and into `ConnectionReport::tls_keylog` (for `--keylog` and the recorder).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_rustls::{TlsAcceptor, TlsConnector};

use super::ConnCtx;
use super::inspect::Clock;
use super::rewrite::patch_echo;
use super::tapped::Tapped;
use crate::nla::credssp::subject_public_key;
use crate::nla::ntlm::Credentials;
use crate::session::{
    CloseKind, Direction, Echo, ExperimentSetup, HostTls, Session, Side, TlsLegError,
};
use crate::tls::cert::Issued;
use crate::tls::keylog::KeyLogBuffer;
use crate::tls::verifier::RecordingVerifier;
use crate::wire::x224::Protocols;
use crate::wire::{tpkt, x224};

/// `--fresh-cert` settings.
#[derive(Debug, Clone)]
pub struct FreshCertConfig {
    /// The certificate rdpdiag presents to clients (generated once per run and target name).
    pub issued: Arc<Issued>,
    /// `--nla-user`: keep NLA and broker CredSSP on both legs with these credentials.
    pub nla: Option<Arc<Credentials>>,
}

impl FreshCertConfig {
    /// `--fresh-cert` without `--nla-user`.
    pub fn new(issued: Arc<Issued>) -> Self {
        Self { issued, nla: None }
    }
}

/// A rustls client configuration for the host leg: TLS 1.2 and 1.3, any certificate accepted and
/// recorded by `verifier`, secrets into `keylog` when given.
pub fn host_leg_config(
    verifier: Arc<RecordingVerifier>,
    keylog: Option<Arc<dyn rustls::KeyLog>>,
) -> Result<rustls::ClientConfig, rustls::Error> {
    let mut cfg = rustls::ClientConfig::builder_with_provider(crate::tls::provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    if let Some(k) = keylog {
        cfg.key_log = k;
    }
    Ok(cfg)
}

/// Classifies a failed TLS handshake.
pub fn classify(e: &std::io::Error) -> TlsLegError {
    use rustls::AlertDescription as A;
    let text = e.to_string();
    match e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
        Some(rustls::Error::AlertReceived(A::ProtocolVersion)) => {
            TlsLegError::NoCommonVersion(format!(
                "the peer answered a TLS 1.2/1.3 ClientHello with alert protocol_version ({text})"
            ))
        }
        Some(rustls::Error::PeerIncompatible(p))
            if format!("{p:?}").contains("Tls12") || format!("{p:?}").contains("Version") =>
        {
            TlsLegError::NoCommonVersion(format!(
                "the peer selected a TLS version older than 1.2 ({text})"
            ))
        }
        Some(rustls::Error::PeerIncompatible(_)) => TlsLegError::NoCommonCipher(text),
        Some(rustls::Error::AlertReceived(A::HandshakeFailure | A::InsufficientSecurity)) => {
            TlsLegError::NoCommonCipher(text)
        }
        Some(rustls::Error::AlertReceived(_)) => TlsLegError::Alert(text),
        _ => TlsLegError::Other(text),
    }
}

fn version_name(v: Option<rustls::ProtocolVersion>) -> String {
    match v {
        Some(rustls::ProtocolVersion::TLSv1_3) => "TLS 1.3".to_owned(),
        Some(rustls::ProtocolVersion::TLSv1_2) => "TLS 1.2".to_owned(),
        Some(other) => format!("{other:?}"),
        None => "?".to_owned(),
    }
}

/// Both handshakes, then the plain-text relay. Returns (bytes to the host, bytes to the client,
/// the key log).
pub(super) async fn serve(
    client: Tapped,
    host: Tapped,
    session: &mut Session,
    clock: Clock,
    ctx: &ConnCtx,
    setup: &mut ExperimentSetup,
) -> (u64, u64, String) {
    let cfg = &ctx.cfg;
    let keylog = KeyLogBuffer::new();
    let Some(fresh) = &cfg.fresh_cert else {
        return (0, 0, String::new());
    };
    let timeout = cfg.stall_timeout.min(Duration::from_secs(3600));
    // Host leg first: its certificate and TLS versions are what the experiment is about, and a
    // host rdpdiag cannot reach makes the client leg pointless.
    let verifier = Arc::new(RecordingVerifier::new(crate::tls::provider()));
    let host_cfg = match host_leg_config(Arc::clone(&verifier), Some(Arc::new(keylog.clone()))) {
        Ok(c) => c,
        Err(e) => {
            session.on_host_tls(Err(TlsLegError::Other(e.to_string())), clock.now());
            return (0, 0, keylog.contents());
        }
    };
    let name = ServerName::try_from(ctx.host.clone()).unwrap_or_else(|_| {
        ServerName::try_from("rdp-host")
            .unwrap_or(ServerName::IpAddress(std::net::Ipv4Addr::LOCALHOST.into()))
    });
    let connecting = TlsConnector::from(Arc::new(host_cfg)).connect(name, host);
    let host_tls = match tokio::time::timeout(timeout, connecting).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            tracing::info!(error = %e, "Host leg TLS failed");
            session.on_host_tls(Err(classify(&e)), clock.now());
            session.on_close(Side::Proxy, CloseKind::Fin, clock.now());
            return (0, 0, keylog.contents());
        }
        Err(_) => {
            session.on_host_tls(
                Err(TlsLegError::Other(
                    "no TLS answer from the host before the stall timeout".to_owned(),
                )),
                clock.now(),
            );
            return (0, 0, keylog.contents());
        }
    };
    {
        let (_, conn) = host_tls.get_ref();
        let info = HostTls {
            version: version_name(conn.protocol_version()),
            cipher: conn
                .negotiated_cipher_suite()
                .map(|s| format!("{:?}", s.suite()))
                .unwrap_or_default(),
            chain: verifier.chain(),
        };
        session.on_host_tls(Ok(info), clock.now());
    }
    let server_cfg = match fresh.issued.server_config(Some(Arc::new(keylog.clone()))) {
        Ok(c) => c,
        Err(e) => {
            session.on_client_tls(Err(TlsLegError::Other(e.to_string())), clock.now());
            return (0, 0, keylog.contents());
        }
    };
    let accepting = TlsAcceptor::from(Arc::new(server_cfg)).accept(client);
    let client_tls = match tokio::time::timeout(timeout, accepting).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            tracing::info!(error = %e, "Client leg TLS failed");
            session.on_client_tls(Err(classify(&e)), clock.now());
            session.on_close(Side::Proxy, CloseKind::Fin, clock.now());
            return (0, 0, keylog.contents());
        }
        Err(_) => {
            session.on_client_tls(
                Err(TlsLegError::Other(
                    "no TLS handshake from the client before the stall timeout".to_owned(),
                )),
                clock.now(),
            );
            return (0, 0, keylog.contents());
        }
    };
    {
        let (_, conn) = client_tls.get_ref();
        let v = version_name(conn.protocol_version());
        let c = conn
            .negotiated_cipher_suite()
            .map(|s| format!("{:?}", s.suite()))
            .unwrap_or_default();
        session.on_client_tls(Ok((v, c)), clock.now());
    }
    let (mut client_tls, mut host_tls) = (client_tls, host_tls);
    let mut early = (Vec::new(), Vec::new());
    if let Some(creds) = &fresh.nla
        && session.selected().is_some_and(Protocols::uses_credssp)
    {
        let our_key = subject_public_key(&fresh.issued.cert_der).unwrap_or_default();
        let host_key = verifier
            .chain()
            .first()
            .and_then(|c| subject_public_key(c))
            .unwrap_or_default();
        let brokered = super::nla::broker(
            &mut client_tls,
            &mut host_tls,
            creds,
            super::nla::Ends {
                our_key,
                host_key,
                host: &ctx.host,
            },
            session,
            clock,
            timeout,
        )
        .await;
        match brokered {
            Some(b) => early = (b.client_rest, b.host_rest),
            None => return (0, 0, keylog.contents()),
        }
    }
    let (c, s) = plaintext_relay(client_tls, host_tls, session, clock, timeout, setup, early).await;
    (c, s, keylog.contents())
}

/// Relays plain text both ways until both directions end (or one resets, or a phase stalls),
/// feeding the session and patching the echo once. Each direction runs on its own (a blocked
/// write in one never stops the other); the session is shared through a lock held only while
/// feeding (no await inside).
async fn plaintext_relay<C, H>(
    client: C,
    host: H,
    session: &mut Session,
    clock: Clock,
    timeout: Duration,
    setup: &mut ExperimentSetup,
    early: (Vec<u8>, Vec<u8>),
) -> (u64, u64)
where
    C: AsyncRead + AsyncWrite + Unpin,
    H: AsyncRead + AsyncWrite + Unpin,
{
    let (mut cr, mut cw) = tokio::io::split(client);
    let (mut hr, mut hw) = tokio::io::split(host);
    let session = std::sync::Mutex::new(session);
    let to_host = AtomicU64::new(0);
    let to_client = AtomicU64::new(0);
    let with = |f: &mut dyn FnMut(&mut Session)| match session.lock() {
        Ok(mut s) => f(&mut s),
        Err(poisoned) => f(&mut poisoned.into_inner()),
    };
    let (mut early_c2s, mut early_s2c) = early;
    let c2s = async {
        let mut buf = vec![0_u8; 16 * 1024];
        loop {
            if !early_c2s.is_empty() {
                // Bytes the client sent right after CredSSP (read by the broker).
                let chunk = std::mem::take(&mut early_c2s);
                with(&mut |s| s.feed_plaintext(Direction::ClientToHost, &chunk, clock.now()));
                if hw.write_all(&chunk).await.is_err() {
                    with(&mut |s| s.on_close(Side::Host, CloseKind::Rst, clock.now()));
                    return false;
                }
                to_host.fetch_add(chunk.len() as u64, Ordering::Relaxed);
                continue;
            }
            let n = match cr.read(&mut buf).await {
                Ok(n) => n,
                Err(e) => {
                    tracing::debug!(error = %e, "Client TLS leg ended with an error");
                    with(&mut |s| s.on_close(Side::Client, CloseKind::Rst, clock.now()));
                    return false;
                }
            };
            if n == 0 {
                with(&mut |s| s.on_close(Side::Client, CloseKind::Fin, clock.now()));
                if let Err(e) = hw.shutdown().await {
                    tracing::debug!(error = %e, "Half-close not propagated");
                }
                return true;
            }
            let chunk = buf.get(..n).unwrap_or_default();
            with(&mut |s| {
                if !s.inspection_done() {
                    s.feed_plaintext(Direction::ClientToHost, chunk, clock.now());
                }
            });
            if let Err(e) = hw.write_all(chunk).await {
                tracing::debug!(error = %e, "Host TLS leg write failed");
                with(&mut |s| s.on_close(Side::Host, CloseKind::Rst, clock.now()));
                return false;
            }
            to_host.fetch_add(n as u64, Ordering::Relaxed);
        }
    };
    let s2c = async {
        let mut buf = vec![0_u8; 16 * 1024];
        // Host bytes held while the echo in the Connect-Response is still to be patched.
        let mut held: Vec<u8> = Vec::new();
        loop {
            let n = if early_s2c.is_empty() {
                hr.read(&mut buf).await
            } else {
                // Bytes the host sent right after CredSSP (read by the broker).
                let n = early_s2c.len().min(buf.len());
                if let (Some(dst), Some(src)) = (buf.get_mut(..n), early_s2c.get(..n)) {
                    dst.copy_from_slice(src);
                }
                early_s2c.drain(..n);
                Ok(n)
            };
            let n = match n {
                Ok(n) => n,
                Err(e) => {
                    tracing::debug!(error = %e, "Host TLS leg ended with an error");
                    with(&mut |s| s.on_close(Side::Host, CloseKind::Rst, clock.now()));
                    return false;
                }
            };
            let chunk = buf.get(..n).unwrap_or_default();
            let out = if n == 0 {
                std::mem::take(&mut held)
            } else {
                with(&mut |s| {
                    if !s.inspection_done() {
                        s.feed_plaintext(Direction::HostToClient, chunk, clock.now());
                    }
                });
                if setup.echo == Echo::Pending {
                    held.extend_from_slice(chunk);
                    let mut out = Vec::new();
                    with(&mut |s| out = release(&mut held, setup, s));
                    out
                } else {
                    chunk.to_vec()
                }
            };
            if let Err(e) = cw.write_all(&out).await {
                tracing::debug!(error = %e, "Client TLS leg write failed");
                with(&mut |s| s.on_close(Side::Client, CloseKind::Rst, clock.now()));
                return false;
            }
            to_client.fetch_add(out.len() as u64, Ordering::Relaxed);
            if n == 0 {
                with(&mut |s| s.on_close(Side::Host, CloseKind::Fin, clock.now()));
                if let Err(e) = cw.shutdown().await {
                    tracing::debug!(error = %e, "Half-close not propagated");
                }
                return true;
            }
        }
    };
    // The session decides when a phase has stalled; look at it every so often.
    let stalled = async {
        let every = timeout.min(Duration::from_secs(1));
        loop {
            tokio::time::sleep(every).await;
            let mut stop = false;
            with(&mut |s| stop = s.tick(clock.now()));
            if stop {
                return;
            }
        }
    };
    tokio::pin!(c2s, s2c, stalled);
    let (mut c_done, mut s_done) = (false, false);
    while !(c_done && s_done) {
        tokio::select! {
            ok = &mut c2s, if !c_done => {
                c_done = true;
                if !ok { break; }
            }
            ok = &mut s2c, if !s_done => {
                s_done = true;
                if !ok { break; }
            }
            () = &mut stalled => break,
        }
    }
    (
        to_host.load(Ordering::Relaxed),
        to_client.load(Ordering::Relaxed),
    )
}

/// Takes from `held` what may go to the client now: whole TPKTs (the Connect-Response patched),
/// or non-TPKT bytes (CredSSP, Early User Authorization) as they are.
fn release(held: &mut Vec<u8>, setup: &mut ExperimentSetup, session: &mut Session) -> Vec<u8> {
    let mut out = Vec::new();
    while !held.is_empty() {
        if setup.echo != Echo::Pending || held.first() != Some(&tpkt::VERSION) {
            out.append(held);
            break;
        }
        let len = match tpkt::split_pdu(held) {
            Ok(Some(p)) => p.len(),
            Ok(None) => break,
            Err(_) => held.len(),
        };
        let mut pdu: Vec<u8> = held.drain(..len).collect();
        if let Ok(x224::X224Pdu::Data { payload_offset }) = x224::decode(&pdu)
            && patch_echo(&mut pdu, payload_offset, setup)
        {
            session.set_experiment(setup.clone());
        }
        out.extend_from_slice(&pdu);
    }
    out
}
