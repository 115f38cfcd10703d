//! `proxy --fresh-cert`: once the host selected a TLS protocol, terminate TLS on both legs —
//! rustls client toward the host (accepting and recording any certificate), rustls server toward
//! the client with rdpdiag's fresh certificate — then relay the plain text, feeding it to the
//! session (`Session::feed_plaintext`) and patching the echo of requestedProtocols in the MCS
//! Connect-Response when the request was rewritten.
//!
//! Key log: both legs log their secrets into one [`KeyLogBuffer`] per connection; its contents
//! come back to `serve` and into `ConnectionReport::tls_keylog` (for `--keylog` and the recorder).

use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::{TlsAcceptor, TlsConnector};

use super::ConnCtx;
use super::inspect::Clock;
use super::rewrite::patch_echo;
use crate::session::{
    CloseKind, Direction, Echo, ExperimentSetup, HostTls, Session, Side, TlsLegError,
};
use crate::tls::cert::Issued;
use crate::tls::keylog::KeyLogBuffer;
use crate::tls::verifier::RecordingVerifier;
use crate::wire::{tpkt, x224};

/// `--fresh-cert` settings.
#[derive(Debug, Clone)]
pub struct FreshCertConfig {
    /// The certificate rdpdiag presents to clients (generated once per run and target name).
    pub issued: Arc<Issued>,
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
    client: TcpStream,
    host: TcpStream,
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
    let (c, s) = plaintext_relay(client_tls, host_tls, session, clock, timeout, setup).await;
    (c, s, keylog.contents())
}

/// Relays plain text both ways until both directions end, feeding the session and patching the
/// echo once. Writes happen inline (one direction waits while the other writes): fine for the
/// negotiation, not a hot path.
async fn plaintext_relay<C, H>(
    client: C,
    host: H,
    session: &mut Session,
    clock: Clock,
    timeout: Duration,
    setup: &mut ExperimentSetup,
) -> (u64, u64)
where
    C: AsyncRead + AsyncWrite + Unpin,
    H: AsyncRead + AsyncWrite + Unpin,
{
    let (mut cr, mut cw) = tokio::io::split(client);
    let (mut hr, mut hw) = tokio::io::split(host);
    let (mut c_eof, mut h_eof) = (false, false);
    let (mut to_host, mut to_client) = (0_u64, 0_u64);
    let mut cb = vec![0_u8; 16 * 1024];
    let mut hb = vec![0_u8; 16 * 1024];
    // Host bytes held while the echo in the Connect-Response is still to be patched.
    let mut held: Vec<u8> = Vec::new();
    while !(c_eof && h_eof) {
        let read = async {
            tokio::select! {
                r = cr.read(&mut cb), if !c_eof => (Direction::ClientToHost, r),
                r = hr.read(&mut hb), if !h_eof => (Direction::HostToClient, r),
            }
        };
        let (dir, r) = match tokio::time::timeout(timeout, read).await {
            Ok(x) => x,
            Err(_) => {
                if session.tick(clock.now()) {
                    return (to_host, to_client);
                }
                continue;
            }
        };
        let n = match r {
            Ok(n) => n,
            Err(e) => {
                tracing::debug!(error = %e, ?dir, "TLS leg ended with an error");
                session.on_close(dir.sender(), CloseKind::Rst, clock.now());
                return (to_host, to_client);
            }
        };
        let at = clock.now();
        if n == 0 {
            session.on_close(dir.sender(), CloseKind::Fin, at);
            let shut = match dir {
                Direction::ClientToHost => {
                    c_eof = true;
                    hw.shutdown().await
                }
                Direction::HostToClient => {
                    h_eof = true;
                    if !held.is_empty() {
                        if let Err(e) = cw.write_all(&held).await {
                            tracing::debug!(error = %e, "Client gone");
                        }
                        to_client += held.len() as u64;
                        held.clear();
                    }
                    cw.shutdown().await
                }
            };
            if let Err(e) = shut {
                tracing::debug!(error = %e, "Half-close not propagated");
            }
            continue;
        }
        let inspecting = !session.inspection_done();
        let written = match dir {
            Direction::ClientToHost => {
                let chunk = cb.get(..n).unwrap_or_default();
                if inspecting {
                    session.feed_plaintext(dir, chunk, at);
                }
                to_host += n as u64;
                hw.write_all(chunk).await
            }
            Direction::HostToClient => {
                let chunk = hb.get(..n).unwrap_or_default();
                if inspecting {
                    session.feed_plaintext(dir, chunk, at);
                }
                if setup.echo == Echo::Pending {
                    held.extend_from_slice(chunk);
                    let out = release(&mut held, setup, session);
                    to_client += out.len() as u64;
                    cw.write_all(&out).await
                } else {
                    to_client += n as u64;
                    cw.write_all(chunk).await
                }
            }
        };
        if let Err(e) = written {
            let side = dir.reverse().sender();
            tracing::debug!(error = %e, side = side.name(), "Write failed");
            session.on_close(side, CloseKind::Rst, clock.now());
            return (to_host, to_client);
        }
    }
    (to_host, to_client)
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
