//! `proxy --security` (and the negotiation part of `--fresh-cert`): holds the client's bytes
//! until the whole X.224 Connection Request is in, rewrites requestedProtocols (every other byte
//! kept, lengths unchanged), and, where the host's echo of it (SC_CORE.clientRequestedProtocols)
//! travels in clear (Standard RDP Security), holds the host's bytes until the MCS
//! Connect-Response is complete and patches the echo back to the client's value.
//!
//! The session is fed the ORIGINAL bytes of both directions: the verdict judges what the client
//! asked for and what the host really said; the rewrite is recorded as the experiment.
//!
//! Once there is nothing left to rewrite this hands the sockets to the ordinary inspect/hot-path
//! relay (or, with `--fresh-cert` and TLS selected, to `terminate.rs`).

use std::io;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::inspect::{self, Clock, Inspected};
use super::pipe::{Half, Relay};
use super::tapped::{self, Recorder, Tapped};
use super::{ConnCtx, hot_path, terminate};
use crate::record::Leg;
use crate::session::{CloseKind, Direction, Echo, ExperimentSetup, Session, Side};
use crate::wire::x224::{self, Protocols, X224Pdu};
use crate::wire::{gcc, mcs, tpkt};

/// `--security`: which layer(s) to offer the host instead of the client's request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecurityRewrite {
    /// Standard RDP Security only (requestedProtocols 0).
    Rdp,
    /// TLS only (SSL).
    Tls,
    /// NLA: SSL|HYBRID (and HYBRID_EX if the client offered it).
    Nla,
    /// The client's request without HYBRID/HYBRID_EX.
    NoNla,
    /// The client's request without the plain-TLS flag (SSL); NLA flags kept.
    NoTls,
}

/// Flags whose layer runs over TLS.
const TLS_BASED: u32 = 0x1 | 0x2 | 0x4 | 0x8 | 0x10;
const NLA: u32 = 0x2 | 0x8;

impl SecurityRewrite {
    /// The requestedProtocols to forward for a client that asked for `orig`; `Err` with a
    /// readable reason when the client cannot do what would be asked of it.
    pub fn apply(self, orig: Protocols) -> Result<Protocols, String> {
        let o = orig.0;
        match self {
            SecurityRewrite::Rdp => Ok(Protocols::RDP),
            SecurityRewrite::Tls if o & TLS_BASED == 0 => Err(format!(
                "the client offered only {orig} (Standard RDP Security); it cannot be made to speak TLS: enable TLS on the client (mstsc: a security layer other than RDP; xfreerdp /sec:tls) and retry"
            )),
            SecurityRewrite::Tls => Ok(Protocols::SSL),
            SecurityRewrite::Nla if o & NLA == 0 => Err(format!(
                "the client offered {orig}, without NLA; it cannot be made to perform CredSSP: enable NLA on the client and retry"
            )),
            SecurityRewrite::Nla => Ok(Protocols(0x1 | 0x2 | (o & 0x8))),
            SecurityRewrite::NoNla if o & NLA != 0 => Ok(Protocols((o & !NLA) | 0x1)),
            SecurityRewrite::NoNla => Ok(orig),
            SecurityRewrite::NoTls => Ok(Protocols(o & !0x1)),
        }
    }

    /// The command-line spelling.
    pub fn name(self) -> &'static str {
        match self {
            SecurityRewrite::Rdp => "rdp",
            SecurityRewrite::Tls => "tls",
            SecurityRewrite::Nla => "nla",
            SecurityRewrite::NoNla => "no-nla",
            SecurityRewrite::NoTls => "no-tls",
        }
    }
}

/// What to forward for a client request `orig`: `Ok(None)` = unchanged. `strip_nla`: `--fresh-cert`
/// without `--nla-user`.
pub fn plan(
    orig: Protocols,
    security: Option<SecurityRewrite>,
    strip_nla: bool,
) -> Result<Option<Protocols>, String> {
    let to = match security {
        Some(s) => s.apply(orig)?,
        // --fresh-cert alone: NLA cannot pass a swapped certificate; offer TLS instead.
        None if strip_nla && orig.uses_credssp() => SecurityRewrite::NoNla.apply(orig)?,
        None => orig,
    };
    Ok((to != orig).then_some(to))
}

/// Startup warnings for a configuration (printed by the CLI before the first connection).
pub fn warnings(
    security: Option<SecurityRewrite>,
    fresh_cert: bool,
    nla_user: Option<&str>,
) -> Vec<String> {
    let mut w = Vec::new();
    if security.is_some() && !fresh_cert {
        w.push("when the host selects TLS or NLA, its echo of requestedProtocols (SC_CORE.clientRequestedProtocols) travels inside TLS and cannot be patched: a client that checks it (mstsc does) may detect the rewrite and disconnect right after the MCS Connect-Response; add --fresh-cert to patch it".to_owned());
    }
    if let (true, Some(user)) = (fresh_cert, nla_user) {
        w.push(format!("--nla-user: NLA stays on; rdpdiag accepts the client's CredSSP only for {user} with the password it was given, then logs on to the host with the same account (NTLM). The client must trust rdpdiag's certificate (--ca)"));
    } else if fresh_cert {
        match security {
            Some(SecurityRewrite::Nla) | Some(SecurityRewrite::NoTls) => w.push("NLA cannot succeed through --fresh-cert: CredSSP's pubKeyAuth binds the TLS server key, and the client sees rdpdiag's key while the host checks its own; expect a CredSSP failure that is not the host's fault".to_owned()),
            _ => w.push("--fresh-cert removes NLA (HYBRID/HYBRID_EX) from the client's request, since CredSSP cannot pass a swapped certificate: the user logs on at the host's own logon screen".to_owned()),
        }
    }
    w
}

/// How the clear negotiation part ended.
enum Negotiated {
    /// Nothing left to rewrite: relay normally; the flags say which sides already sent FIN.
    HandOff { client_eof: bool, host_eof: bool },
    /// The host selected TLS and `--fresh-cert` terminates it.
    Terminate,
    /// A side reset or a phase stalled: both connections are gone.
    Done,
}

/// One direction while negotiating: bytes read and not yet forwarded.
struct Held {
    buf: Vec<u8>,
    eof: bool,
    bytes: u64,
}

/// Most bytes held in one direction (a TPKT is at most 65535 bytes).
const MAX_HELD: usize = 70_000;

/// Runs a connection with `--security` and/or `--fresh-cert`; returns (bytes to the host,
/// bytes to the client, the TLS key log when TLS was terminated). Both sockets report what
/// crosses them to `rec` (`--record`): the client leg and the host leg.
pub(super) async fn serve(
    client: TcpStream,
    host: TcpStream,
    early: Half,
    session: &mut Session,
    clock: Clock,
    ctx: &ConnCtx,
    rec: &Recorder,
) -> (u64, u64, Option<String>) {
    let cfg = &ctx.cfg;
    let mut client = Tapped::new(client, Leg::Client, Arc::clone(rec), clock);
    let mut host = Tapped::new(host, Leg::Host, Arc::clone(rec), clock);
    let mut setup = ExperimentSetup {
        security: cfg.security.is_some(),
        fresh_cert: cfg.fresh_cert.is_some(),
        ..ExperimentSetup::default()
    };
    session.set_experiment(setup.clone());
    // A FIN that came with the early bytes is reported once those bytes are fed.
    let mut early_fin = early.eof;
    let mut c2s = Held {
        buf: early.pending().to_vec(),
        eof: early.eof,
        bytes: 0,
    };
    let mut s2c = Held {
        buf: Vec::new(),
        eof: false,
        bytes: 0,
    };
    let mut cr_done = false;
    let mut cc_done = false;
    let negotiated = loop {
        // Client → host: hold until the whole Connection Request is in, then never again.
        let step = forward_client(
            &mut c2s,
            &mut host,
            &mut cr_done,
            &mut setup,
            session,
            clock,
            ctx,
        )
        .await;
        if let Err(e) = step {
            break fail(session, Side::Host, &e, clock, &client, &host);
        }
        if std::mem::take(&mut early_fin) {
            session.on_close(Side::Client, CloseKind::Fin, clock.now());
        }
        let step = forward_host(
            &mut s2c,
            &mut client,
            &mut cc_done,
            &mut setup,
            session,
            clock,
        )
        .await;
        match step {
            Err(e) => break fail(session, Side::Client, &e, clock, &client, &host),
            Ok(Some(n)) => {
                if !c2s.buf.is_empty() {
                    // Bytes the client sent after the CR (it should wait for the CC): pass them on.
                    session.feed(Direction::ClientToHost, &c2s.buf, clock.now());
                    if let Err(e) = host.write_all(&c2s.buf).await {
                        break fail(session, Side::Host, &e, clock, &client, &host);
                    }
                    c2s.bytes += c2s.buf.len() as u64;
                    c2s.buf.clear();
                }
                break n;
            }
            Ok(None) => {}
        }
        if c2s.eof && s2c.eof {
            break Negotiated::HandOff {
                client_eof: true,
                host_eof: true,
            };
        }
        // Read whichever side has something, within the stall timeout.
        let read = async {
            let mut cb = [0_u8; 16 * 1024];
            let mut hb = [0_u8; 16 * 1024];
            tokio::select! {
                r = client.read(&mut cb), if !c2s.eof => (Direction::ClientToHost, r.map(|n| cb.get(..n).unwrap_or_default().to_vec())),
                r = host.read(&mut hb), if !s2c.eof => (Direction::HostToClient, r.map(|n| hb.get(..n).unwrap_or_default().to_vec())),
            }
        };
        let timeout = cfg.stall_timeout.min(Duration::from_secs(3600));
        match tokio::time::timeout(timeout, read).await {
            Err(_) => {
                if session.tick(clock.now()) {
                    abort(client.get_ref(), host.get_ref());
                    break Negotiated::Done;
                }
            }
            Ok((dir, Ok(bytes))) => {
                let held = if dir == Direction::ClientToHost {
                    &mut c2s
                } else {
                    &mut s2c
                };
                if bytes.is_empty() {
                    held.eof = true;
                    session.on_close(dir.sender(), CloseKind::Fin, clock.now());
                } else {
                    held.buf.extend_from_slice(&bytes);
                }
            }
            Ok((dir, Err(e))) => break fail(session, dir.sender(), &e, clock, &client, &host),
        }
    };
    let mut bytes = (c2s.bytes, s2c.bytes);
    match negotiated {
        Negotiated::Done => (bytes.0, bytes.1, None),
        Negotiated::Terminate => {
            let (c, s, keylog) =
                terminate::serve(client, host, session, clock, ctx, &mut setup).await;
            (bytes.0 + c, bytes.1 + s, Some(keylog))
        }
        Negotiated::HandOff {
            client_eof,
            host_eof,
        } => {
            let mut relay = Relay::new(client.into_inner(), host.into_inner(), Half::new());
            relay.c2s.eof = client_eof;
            relay.s2c.eof = host_eof;
            // The plain relay records the client leg only, as in pass-through.
            let mut tap = tapped::lock(rec).take();
            let inspected = inspect::inspect(
                &mut relay,
                session,
                tap.as_mut(),
                clock,
                0,
                cfg.inspect_limit,
            )
            .await;
            if inspected == Inspected::HandOff {
                let mut on_close = |side: Side, kind| session.on_close(side, kind, clock.now());
                // Recording: user-space copies with the tap up to the record limit first.
                let ended = match &mut tap {
                    Some(t) => super::tap::record_rest(&mut relay, t, clock, &mut on_close).await,
                    None => false,
                };
                if !ended {
                    hot_path(&mut relay, ctx, on_close).await;
                }
            }
            *tapped::lock(rec) = tap;
            bytes.0 += relay.c2s.bytes;
            bytes.1 += relay.s2c.bytes;
            if inspected == Inspected::Stalled {
                relay.abort();
            }
            (bytes.0, bytes.1, None)
        }
    }
}

fn fail(
    session: &mut Session,
    side: Side,
    e: &io::Error,
    clock: Clock,
    client: &Tapped,
    host: &Tapped,
) -> Negotiated {
    tracing::debug!(side = side.name(), error = %e, "Connection reset while negotiating");
    session.on_close(side, CloseKind::Rst, clock.now());
    abort(client.get_ref(), host.get_ref());
    Negotiated::Done
}

fn abort(client: &TcpStream, host: &TcpStream) {
    for s in [client, host] {
        if let Err(e) = s.set_zero_linger() {
            tracing::debug!(error = %e, "SO_LINGER 0 failed");
        }
    }
}

/// Forwards what the client sent: holds until the whole CR is in, rewrites it once.
async fn forward_client(
    held: &mut Held,
    host: &mut Tapped,
    cr_done: &mut bool,
    setup: &mut ExperimentSetup,
    session: &mut Session,
    clock: Clock,
    ctx: &ConnCtx,
) -> io::Result<()> {
    if held.buf.is_empty() {
        return finish_eof(held, host).await;
    }
    let mut out = None;
    if !*cr_done {
        match tpkt::split_pdu(&held.buf) {
            Ok(None) if !held.eof && held.buf.len() < MAX_HELD => return Ok(()),
            Ok(Some(pdu)) => {
                *cr_done = true;
                let len = pdu.len();
                out = Some((len, rewrite_cr(pdu, setup, ctx)));
                session.set_experiment(setup.clone());
            }
            // Not a TPKT, cut short by EOF, or oversized: pass through untouched.
            _ => *cr_done = true,
        }
    }
    let at = clock.now();
    // The session always sees the client's original bytes.
    session.feed(Direction::ClientToHost, &held.buf, at);
    match out {
        Some((len, Some(rewritten))) => {
            host.write_all(&rewritten).await?;
            host.write_all(held.buf.get(len..).unwrap_or_default())
                .await?;
        }
        _ => host.write_all(&held.buf).await?,
    }
    held.bytes += held.buf.len() as u64;
    held.buf.clear();
    finish_eof(held, host).await
}

async fn finish_eof(held: &Held, dst: &mut Tapped) -> io::Result<()> {
    if held.eof && held.buf.is_empty() {
        // Mirror the FIN; a destination already gone reports itself on the next read.
        if let Err(e) = dst.shutdown().await {
            tracing::debug!(error = %e, "Half-close not propagated");
        }
    }
    Ok(())
}

/// The rewritten CR, or `None` to forward it unchanged (recorded in `setup`).
fn rewrite_cr(pdu: &[u8], setup: &mut ExperimentSetup, ctx: &ConnCtx) -> Option<Vec<u8>> {
    let cfg = &ctx.cfg;
    let Ok(X224Pdu::ConnectionRequest(cr)) = x224::decode(pdu) else {
        setup.impossible = Some(
            "the client's first PDU is not an X.224 Connection Request: nothing to rewrite"
                .to_owned(),
        );
        return None;
    };
    let orig = cr.requested();
    setup.original = Some(orig);
    let brokered = cfg.fresh_cert.as_ref().is_some_and(|f| f.nla.is_some());
    let planned = plan(orig, cfg.security, cfg.fresh_cert.is_some() && !brokered);
    let forwarded = match &planned {
        Ok(Some(to)) => *to,
        _ => orig,
    };
    if brokered && forwarded.uses_credssp() {
        setup.notes.push("NLA kept (--nla-user): rdpdiag is the CredSSP server toward the client and the CredSSP client toward the host, with the account it was given".to_owned());
    } else if cfg.fresh_cert.is_some() && forwarded.uses_credssp() {
        setup.notes.push("NLA cannot succeed through --fresh-cert: CredSSP's pubKeyAuth binds the TLS server key, and the client sees rdpdiag's key while the host checks its own".to_owned());
    } else if cfg.fresh_cert.is_some() && orig.uses_credssp() {
        setup.notes.push(
            "NLA removed for --fresh-cert: the user logs on at the host's own logon screen"
                .to_owned(),
        );
    }
    let to = match planned {
        Ok(Some(to)) => to,
        Ok(None) => return None,
        Err(why) => {
            setup.impossible = Some(why);
            return None;
        }
    };
    let Some(out) = x224::rewrite_requested(pdu, &cr, to) else {
        setup.impossible = Some("the Connection Request has no RDP_NEG_REQ (a legacy client that speaks only Standard RDP Security): there is no requestedProtocols to rewrite".to_owned());
        return None;
    };
    tracing::info!(from = %orig, to = %to, "Rewrote requestedProtocols");
    setup.rewritten = Some(to);
    setup.echo = Echo::Pending;
    Some(out)
}

/// Forwards what the host sent, whole TPKTs at a time while the CC or (clear) Connect-Response
/// is awaited. `Ok(Some(_))` ends the negotiation part.
async fn forward_host(
    held: &mut Held,
    client: &mut Tapped,
    cc_done: &mut bool,
    setup: &mut ExperimentSetup,
    session: &mut Session,
    clock: Clock,
) -> io::Result<Option<Negotiated>> {
    while !held.buf.is_empty() {
        let pdu_len = match tpkt::split_pdu(&held.buf) {
            Ok(Some(pdu)) => pdu.len(),
            Ok(None) if !held.eof && held.buf.len() < MAX_HELD => return Ok(None),
            // Not TPKT (TLS where clear text was expected...), cut by EOF, oversized: as is.
            _ => held.buf.len(),
        };
        let pdu: Vec<u8> = held.buf.drain(..pdu_len).collect();
        session.feed(Direction::HostToClient, &pdu, clock.now());
        let mut out = pdu.clone();
        let mut end = None;
        match x224::decode(&pdu) {
            Ok(X224Pdu::ConnectionConfirm(_)) if !*cc_done => {
                *cc_done = true;
                let selected = selected_of(&pdu);
                end = match (selected, setup.rewritten.is_some()) {
                    (Some(s), _) if s.uses_tls() && setup.fresh_cert => Some(Negotiated::Terminate),
                    (Some(s), true) if s.uses_tls() => {
                        setup.echo = Echo::Unpatchable;
                        session.set_experiment(setup.clone());
                        Some(hand_off(held))
                    }
                    // Standard RDP Security with a rewrite: keep holding for the Connect-Response.
                    (Some(_), true) => None,
                    _ => Some(hand_off(held)),
                };
            }
            Ok(X224Pdu::Data { payload_offset })
                if setup.echo == Echo::Pending && patch_echo(&mut out, payload_offset, setup) =>
            {
                session.set_experiment(setup.clone());
                end = Some(hand_off(held));
            }
            _ => {}
        }
        client.write_all(&out).await?;
        held.bytes += out.len() as u64;
        if let Some(end) = end {
            // Anything after the deciding PDU goes out unchanged.
            if !held.buf.is_empty() {
                session.feed(Direction::HostToClient, &held.buf, clock.now());
                client.write_all(&held.buf).await?;
                held.bytes += held.buf.len() as u64;
                held.buf.clear();
            }
            return Ok(Some(end));
        }
    }
    finish_eof(held, client).await?;
    Ok(None)
}

fn hand_off(held: &Held) -> Negotiated {
    Negotiated::HandOff {
        client_eof: false,
        host_eof: held.eof,
    }
}

fn selected_of(pdu: &[u8]) -> Option<Protocols> {
    match x224::decode(pdu).ok()? {
        X224Pdu::ConnectionConfirm(cc) => Some(match cc.neg {
            Some(x224::NegData::Response { selected, .. }) => selected,
            _ => Protocols::RDP,
        }),
        _ => None,
    }
}

/// Patches SC_CORE.clientRequestedProtocols of an MCS Connect-Response in `tpdu` (a whole TPKT
/// whose MCS starts at `payload_offset`) back to the client's original value. True when it was a
/// Connect-Response (patched, or without an echo to patch).
pub(super) fn patch_echo(
    tpdu: &mut [u8],
    payload_offset: usize,
    setup: &mut ExperimentSetup,
) -> bool {
    let Some(body) = tpdu.get_mut(payload_offset..) else {
        return false;
    };
    let Ok(mcs::McsPdu::ConnectResponse(resp)) = mcs::decode(body) else {
        return false;
    };
    let offset = resp
        .server_core
        .as_ref()
        .and_then(|c| c.client_requested_protocols_offset);
    let (Some(offset), Some(orig)) = (offset, setup.original) else {
        // An old host (RDP 4/5) without the field: nothing for the client to compare.
        setup.echo = Echo::NotNeeded;
        return true;
    };
    if gcc::patch_client_requested_protocols(body, offset, orig) {
        setup.echo = if setup.fresh_cert {
            Echo::PatchedInTls
        } else {
            Echo::PatchedClear
        };
        tracing::info!(to = %orig, "Patched the echo of requestedProtocols");
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans() {
        let p = |o: u32, s: Option<SecurityRewrite>, f: bool| plan(Protocols(o), s, f);
        assert_eq!(
            p(0xb, Some(SecurityRewrite::Tls), false),
            Ok(Some(Protocols(1)))
        );
        assert_eq!(
            p(0xb, Some(SecurityRewrite::NoNla), false),
            Ok(Some(Protocols(1)))
        );
        assert_eq!(p(0x3, None, true), Ok(Some(Protocols(1))));
        assert_eq!(p(0x1, None, true), Ok(None));
        assert_eq!(
            p(0x1, Some(SecurityRewrite::Nla), false).map_err(|e| e.contains("NLA")),
            Err(true)
        );
        assert!(
            p(0, Some(SecurityRewrite::Tls), false)
                .unwrap_err()
                .contains("cannot be made to speak TLS")
        );
        assert_eq!(
            p(0xb, Some(SecurityRewrite::Rdp), false),
            Ok(Some(Protocols(0)))
        );
        assert_eq!(
            p(0x3, Some(SecurityRewrite::NoTls), false),
            Ok(Some(Protocols(2)))
        );
    }
}
