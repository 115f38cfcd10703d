//! `capture.pcapng`: what crossed each leg as synthetic Ethernet/IP/TCP frames.
//!
//! The relay sees byte streams, not packets, so the frames are made up around the real bytes:
//! a 3-way handshake, segments of at most [`MSS`] bytes with consistent sequence and
//! acknowledgement numbers, FIN or RST as observed, the real endpoints and timestamps.
//!
//! - One interface (IDB) per leg when the legs carry different bytes (rdpdiag terminated TLS):
//!   `client ⇄ rdpdiag` and `rdpdiag ⇄ host`. When they carry the same bytes, one interface
//!   shows the client talking to the host, as a capture on the wire would.
//! - `epb_flags` gives the direction as rdpdiag saw it: inbound = from the client (client
//!   leg) or from the host (host leg); on the single relayed interface, inbound = client → host.
//! - The packet carrying each piece of the verdict's evidence has an `opt_comment`; so do the
//!   first packet after bytes that were not recorded and the SYN of a failed connect.
//! - With a TLS key log (and secrets allowed), a Decryption Secrets Block (type `TLSK`)
//!   follows the interfaces, before every packet: Wireshark decrypts from this file alone.
//!
//! Wireshark dissects port 3389 as TPKT and does not switch to TLS by itself: see
//! [`super::DECODE_AS_HINT`].

use std::borrow::Cow;

use bytes::Bytes;
use core::net::{IpAddr, SocketAddr};
use etherparse::PacketBuilder;
use pcap_parser::pcapng::{
    DecryptionSecretsBlock, EnhancedPacketBlock, InterfaceDescriptionBlock, OptionCode,
    PcapNGOption, SecretsType, SectionHeaderBlock,
};
use pcap_parser::{Linktype, ToVec};

use super::redact::Redactor;
use super::{Close, Connect, Leg, Loss, LossReason, Trace};
use crate::session::{CloseKind, ConnectFailure, Direction, Micros, Side};

/// Largest TCP payload per segment (Ethernet MTU 1500 − IPv4 20 − TCP 20).
pub const MSS: usize = 1460;

/// `secrets_type` of a TLS key log (pcapng §4.7: "TLSK").
pub const SECRETS_TYPE_TLS_KEY_LOG: u32 = 0x544c_534b;

const WINDOW: u16 = 65_535;
const TTL: u8 = 64;
const SNAPLEN: u32 = 65_535;
/// Locally administered MACs: initiator and responder of each leg.
const MAC_INITIATOR: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
const MAC_RESPONDER: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];

/// Initial sequence numbers: fixed, so the same trace always gives the same file.
const ISN_INITIATOR: u32 = 0x1000_0000;
const ISN_RESPONDER: u32 = 0x2000_0000;

/// Why the capture could not be written.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error("pcapng block: {0}")]
    Block(String),
    #[error("frame: {0}")]
    Frame(String),
}

/// Which end of a TCP connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peer {
    /// Sent the SYN.
    Initiator,
    Responder,
}

impl Peer {
    fn other(self) -> Peer {
        match self {
            Peer::Initiator => Peer::Responder,
            Peer::Responder => Peer::Initiator,
        }
    }
}

/// TCP flags of a synthetic segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Flags {
    pub syn: bool,
    pub ack: bool,
    pub psh: bool,
    pub fin: bool,
    pub rst: bool,
}

/// One synthetic TCP segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    pub from: Peer,
    pub seq: u32,
    /// The acknowledgement number (meaningful when `flags.ack`).
    pub ack: u32,
    pub flags: Flags,
    pub payload: Bytes,
}

/// Sequence-number bookkeeping for one synthetic TCP connection.
///
/// Every segment acknowledges everything the other end has sent so far; SYN and FIN each take
/// one sequence number; arithmetic wraps modulo 2³² (RFC 9293 §3.4).
#[derive(Debug, Clone)]
pub struct TcpFlow {
    /// Next sequence number of the initiator and of the responder.
    next: [u32; 2],
    /// Each end has sent its SYN.
    syn: [bool; 2],
    /// Each end has sent its FIN.
    fin: [bool; 2],
    reset: bool,
}

fn ix(p: Peer) -> usize {
    match p {
        Peer::Initiator => 0,
        Peer::Responder => 1,
    }
}

impl TcpFlow {
    pub fn new(isn_initiator: u32, isn_responder: u32) -> Self {
        Self {
            next: [isn_initiator, isn_responder],
            syn: [false, false],
            fin: [false, false],
            reset: false,
        }
    }

    fn next(&self, p: Peer) -> u32 {
        match p {
            Peer::Initiator => self.next[0],
            Peer::Responder => self.next[1],
        }
    }

    fn advance(&mut self, p: Peer, by: u32) {
        if let Some(n) = self.next.get_mut(ix(p)) {
            *n = n.wrapping_add(by);
        }
    }

    fn set(flags: &mut [bool; 2], p: Peer) {
        if let Some(f) = flags.get_mut(ix(p)) {
            *f = true;
        }
    }

    fn has(flags: &[bool; 2], p: Peer) -> bool {
        flags.get(ix(p)).copied().unwrap_or(false)
    }

    /// A segment from `from` acknowledging what the other end sent (no ACK before the other
    /// end's SYN).
    fn segment(&self, from: Peer, flags: Flags, payload: Bytes) -> Segment {
        let ack = Self::has(&self.syn, from.other());
        Segment {
            from,
            seq: self.next(from),
            ack: if ack { self.next(from.other()) } else { 0 },
            flags: Flags { ack, ..flags },
            payload,
        }
    }

    /// The initiator's SYN.
    pub fn syn(&mut self) -> Segment {
        let s = self.segment(
            Peer::Initiator,
            Flags {
                syn: true,
                ..Flags::default()
            },
            Bytes::new(),
        );
        Self::set(&mut self.syn, Peer::Initiator);
        self.advance(Peer::Initiator, 1);
        s
    }

    /// The responder's SYN-ACK and the initiator's ACK.
    pub fn accept(&mut self) -> Vec<Segment> {
        let syn_ack = self.segment(
            Peer::Responder,
            Flags {
                syn: true,
                ..Flags::default()
            },
            Bytes::new(),
        );
        Self::set(&mut self.syn, Peer::Responder);
        self.advance(Peer::Responder, 1);
        let ack = self.segment(Peer::Initiator, Flags::default(), Bytes::new());
        vec![syn_ack, ack]
    }

    /// SYN, SYN-ACK, ACK.
    pub fn handshake(&mut self) -> Vec<Segment> {
        let mut out = vec![self.syn()];
        out.extend(self.accept());
        out
    }

    /// The responder refuses the SYN: RST-ACK (RFC 9293 §3.5.2).
    pub fn refuse(&mut self) -> Segment {
        let mut s = self.segment(
            Peer::Responder,
            Flags {
                rst: true,
                ..Flags::default()
            },
            Bytes::new(),
        );
        // A RST answering a SYN acknowledges it, even without a SYN of its own.
        s.flags.ack = true;
        s.ack = self.next(Peer::Initiator);
        s.seq = 0;
        self.reset = true;
        s
    }

    /// `payload` from `from`, cut into segments of at most [`MSS`] bytes; the last one has PSH.
    pub fn data(&mut self, from: Peer, payload: &Bytes) -> Vec<Segment> {
        let mut out = Vec::with_capacity(payload.len().div_ceil(MSS));
        let mut start = 0usize;
        while start < payload.len() {
            let end = start.saturating_add(MSS).min(payload.len());
            let last = end == payload.len();
            out.push(self.segment(
                from,
                Flags {
                    psh: last,
                    ..Flags::default()
                },
                payload.slice(start..end),
            ));
            self.advance(from, u32::try_from(end - start).unwrap_or(0));
            start = end;
        }
        out
    }

    /// `len` bytes from `from` that were not recorded: the sequence numbers move on, so
    /// Wireshark shows "previous segment not captured" where they belong.
    pub fn gap(&mut self, from: Peer, len: u64) {
        // INVARIANT: sequence arithmetic is modulo 2^32; the mask keeps the value in range.
        self.advance(from, u32::try_from(len & 0xffff_ffff).unwrap_or(0));
    }

    /// A FIN from `from`; when the other end had already sent its FIN, the closing ACK too.
    /// Nothing after a reset or a second FIN.
    pub fn fin(&mut self, from: Peer) -> Vec<Segment> {
        if self.reset || Self::has(&self.fin, from) {
            return Vec::new();
        }
        let fin = self.segment(
            from,
            Flags {
                fin: true,
                ..Flags::default()
            },
            Bytes::new(),
        );
        Self::set(&mut self.fin, from);
        self.advance(from, 1);
        let mut out = vec![fin];
        if Self::has(&self.fin, from.other()) {
            out.push(self.segment(from.other(), Flags::default(), Bytes::new()));
        }
        out
    }

    /// A RST from `from` (nothing after another reset).
    pub fn rst(&mut self, from: Peer) -> Option<Segment> {
        if self.reset {
            return None;
        }
        self.reset = true;
        Some(self.segment(
            from,
            Flags {
                rst: true,
                ..Flags::default()
            },
            Bytes::new(),
        ))
    }
}

/// One leg (or the relayed view) as written: its endpoints and what it carries.
struct Wire {
    leg: Leg,
    /// Which leg's bytes the session's offsets refer to, per direction.
    initiator: SocketAddr,
    responder: SocketAddr,
    name: String,
    description: String,
}

/// A packet before it is written.
struct Packet {
    iface: u32,
    at: Micros,
    frame: Vec<u8>,
    inbound: bool,
    comments: Vec<String>,
    /// (direction, stream range) of the payload, for placing evidence comments.
    data: Option<(Leg, Direction, u64, u64)>,
    /// The close of that side, for placing close evidence.
    close_of: Option<Side>,
}

/// The written capture.
#[derive(Debug, Clone)]
pub struct Capture {
    pub data: Vec<u8>,
    pub packets: usize,
    /// Each interface's description.
    pub interfaces: Vec<String>,
}

/// Builds `capture.pcapng` (addresses, payload and comments through `redactor`; the key log
/// embedded when `secrets`).
pub fn capture(trace: &Trace, redactor: &Redactor, secrets: bool) -> Result<Capture, CaptureError> {
    let wires = wires(trace);
    let mut packets = Vec::new();
    for (iface, wire) in wires.iter().enumerate() {
        let iface = u32::try_from(iface).unwrap_or(0);
        packets.extend(leg_packets(trace, wire, iface, redactor)?);
    }
    place_evidence(trace, &wires, &mut packets, redactor);
    // Stable: each leg's packets are already in time order.
    packets.sort_by_key(|p| p.at);

    let mut out = Vec::new();
    let mut shb = SectionHeaderBlock {
        block_type: 0,
        block_len1: 0,
        bom: 0,
        major_version: 1,
        minor_version: 0,
        section_len: -1,
        options: vec![
            text_option(
                OptionCode::Comment,
                &redactor.text(&format!(
                    "rdpdiag {} trace of connection #{}: {} ({}). {}",
                    env!("CARGO_PKG_VERSION"),
                    trace.id,
                    trace.verdict.cause,
                    trace.verdict.summary,
                    super::DECODE_AS_HINT.replace(
                        "PORT",
                        &wires
                            .iter()
                            .map(|w| w.responder.port().to_string())
                            .collect::<Vec<_>>()
                            .join("/")
                    ),
                )),
            ),
            text_option(
                OptionCode::ShbUserAppl,
                &format!("rdpdiag {}", env!("CARGO_PKG_VERSION")),
            ),
        ],
        block_len2: 0,
    };
    out.extend(shb.to_vec().map_err(block_error)?);
    for w in &wires {
        let mut idb = InterfaceDescriptionBlock {
            block_type: 0,
            block_len1: 0,
            linktype: Linktype::ETHERNET,
            reserved: 0,
            snaplen: SNAPLEN,
            options: vec![
                text_option(OptionCode::IfName, &w.name),
                text_option(OptionCode::IfDescription, &redactor.text(&w.description)),
            ],
            block_len2: 0,
            // Microseconds (the default resolution, written out).
            if_tsresol: 6,
            if_tsoffset: 0,
        };
        out.extend(idb.to_vec().map_err(block_error)?);
    }
    if secrets && let Some(keys) = &trace.key_log {
        let data = keys.as_bytes();
        let mut dsb = DecryptionSecretsBlock {
            block_type: 0,
            block_len1: 0,
            secrets_type: SecretsType(SECRETS_TYPE_TLS_KEY_LOG),
            secrets_len: u32::try_from(data.len()).unwrap_or(0),
            data,
            options: Vec::new(),
            block_len2: 0,
        };
        out.extend(dsb.to_vec().map_err(block_error)?);
    }
    let base = u64::try_from(trace.started_unix_micros).unwrap_or(0);
    for p in &packets {
        let ts = base.saturating_add(p.at.0);
        let mut options = vec![PcapNGOption {
            code: EPB_FLAGS,
            len: 4,
            // Bits 0-1: 01 inbound, 10 outbound.
            value: Cow::Owned(
                u32::from(if p.inbound { 1u8 } else { 2 })
                    .to_le_bytes()
                    .to_vec(),
            ),
        }];
        for c in &p.comments {
            options.push(text_option(OptionCode::Comment, c));
        }
        let len = u32::try_from(p.frame.len()).unwrap_or(0);
        let mut epb = EnhancedPacketBlock {
            block_type: 0,
            block_len1: 0,
            if_id: p.iface,
            // INVARIANT: the shifts and mask keep each half within 32 bits.
            ts_high: u32::try_from(ts >> 32).unwrap_or(0),
            ts_low: u32::try_from(ts & 0xffff_ffff).unwrap_or(0),
            caplen: len,
            origlen: len,
            data: &p.frame,
            options,
            block_len2: 0,
        };
        out.extend(epb.to_vec().map_err(block_error)?);
    }
    Ok(Capture {
        data: out,
        packets: packets.len(),
        interfaces: wires
            .iter()
            .map(|w| redactor.text(&w.description))
            .collect(),
    })
}

fn block_error(e: impl std::fmt::Debug) -> CaptureError {
    CaptureError::Block(format!("{e:?}"))
}

/// `epb_flags` (pcapng §4.3.1).
const EPB_FLAGS: OptionCode = OptionCode(2);

fn text_option(code: OptionCode, text: &str) -> PcapNGOption<'static> {
    let mut bytes = text.as_bytes().to_vec();
    // An option value is at most 65535 bytes; cut on a character boundary.
    if bytes.len() > usize::from(u16::MAX) {
        let mut end = usize::from(u16::MAX);
        while end > 0 && !text.is_char_boundary(end) {
            end -= 1;
        }
        bytes.truncate(end);
    }
    PcapNGOption {
        code,
        len: u16::try_from(bytes.len()).unwrap_or(u16::MAX),
        value: Cow::Owned(bytes),
    }
}

/// Same address family (an IPv4-mapped address counts as IPv4).
fn same_family(a: IpAddr, b: IpAddr) -> bool {
    let v4 = |ip: IpAddr| match ip {
        IpAddr::V4(_) => true,
        IpAddr::V6(v6) => v6.to_ipv4_mapped().is_some(),
    };
    v4(a) == v4(b)
}

/// rdpdiag's address on the host leg: as recorded, or the listen address (same family), or
/// a documentation address, with an ephemeral port.
fn proxy_side(trace: &Trace, host: SocketAddr) -> SocketAddr {
    if let Some(a) = trace.proxy_local {
        return a;
    }
    let port = 49_152u16.saturating_add(u16::try_from(trace.id % 16_000).unwrap_or(0));
    let ip = if same_family(trace.listen.ip(), host.ip()) && !trace.listen.ip().is_unspecified() {
        trace.listen.ip()
    } else if host.is_ipv4() {
        IpAddr::V4(core::net::Ipv4Addr::new(192, 0, 2, 1))
    } else {
        IpAddr::V6(core::net::Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1))
    };
    SocketAddr::new(ip, port)
}

/// The interfaces of the file.
fn wires(trace: &Trace) -> Vec<Wire> {
    let connected = matches!(trace.connect, Connect::Connected { .. } | Connect::Unknown);
    let host = trace.host;
    if let Some(host) = host
        && connected
        && !trace.legs_differ()
        && same_family(trace.client.ip(), host.ip())
    {
        return vec![Wire {
            leg: Leg::Client,
            initiator: trace.client,
            responder: host,
            name: "relayed".to_owned(),
            description: format!(
                "client {} to host {}, relayed by rdpdiag at {} (the same bytes on both legs)",
                trace.client, host, trace.listen
            ),
        }];
    }
    let mut out = vec![Wire {
        leg: Leg::Client,
        initiator: trace.client,
        responder: trace.listen,
        name: "client-leg".to_owned(),
        description: format!(
            "client leg: client {} to rdpdiag {}",
            trace.client, trace.listen
        ),
    }];
    if let Some(host) = host {
        let local = proxy_side(trace, host);
        out.push(Wire {
            leg: Leg::Host,
            initiator: local,
            responder: host,
            name: "host-leg".to_owned(),
            description: format!("host leg: rdpdiag {local} to host {host}"),
        });
    }
    out
}

/// One value per direction.
#[derive(Debug, Default)]
struct Dirs<T> {
    c2s: T,
    s2c: T,
}

impl<T> Dirs<T> {
    fn get_mut(&mut self, dir: Direction) -> &mut T {
        match dir {
            Direction::ClientToHost => &mut self.c2s,
            Direction::HostToClient => &mut self.s2c,
        }
    }
}

/// What happens on a leg, in time order.
enum Action<'a> {
    /// A chunk and its offset in the recorded stream.
    Data(&'a super::Chunk, u64),
    Close(&'a Close),
}

fn leg_packets(
    trace: &Trace,
    wire: &Wire,
    iface: u32,
    redactor: &Redactor,
) -> Result<Vec<Packet>, CaptureError> {
    let relayed = wire.name == "relayed";
    let leg = wire.leg;
    let chunks = trace.leg(leg);
    // Redact each direction as one stream (a name may straddle two reads), then cut it at the
    // same places: replacements keep lengths.
    let streams = [Direction::ClientToHost, Direction::HostToClient].map(|dir| {
        let s = trace.stream(leg, dir);
        Bytes::from(if redactor.enabled() {
            redactor.bytes(&s)
        } else {
            s
        })
    });
    let stream_of = |dir: Direction| match dir {
        Direction::ClientToHost => &streams[0],
        Direction::HostToClient => &streams[1],
    };

    // (at, order, action): data before closes at the same instant. Losses go by offset: they
    // come before the first chunk past them.
    let mut actions: Vec<(Micros, u8, Action<'_>)> = Vec::new();
    let mut pos = Dirs::<u64>::default();
    for c in chunks {
        let p = pos.get_mut(c.dir);
        actions.push((c.at, 0, Action::Data(c, *p)));
        *p = p.saturating_add(u64::try_from(c.data.len()).unwrap_or(0));
    }
    let mut losses = Dirs::<Vec<&Loss>>::default();
    for l in trace.losses.iter().filter(|l| l.leg == leg || relayed) {
        losses.get_mut(l.dir).push(l);
    }
    for dir in [Direction::ClientToHost, Direction::HostToClient] {
        // Popped from the end: highest offset first in the vector.
        losses
            .get_mut(dir)
            .sort_by_key(|l| std::cmp::Reverse(l.offset));
    }
    for c in &trace.closes {
        actions.push((c.at, 1, Action::Close(c)));
    }
    actions.sort_by_key(|(at, order, _)| (*at, *order));

    let src = |p: Peer| match p {
        Peer::Initiator => (wire.initiator, MAC_INITIATOR),
        Peer::Responder => (wire.responder, MAC_RESPONDER),
    };
    let mut out = Vec::new();
    let mut emit = |seg: &Segment,
                    at: Micros,
                    data: Option<(Leg, Direction, u64, u64)>,
                    close_of: Option<Side>,
                    comment: Option<String>|
     -> Result<(), CaptureError> {
        let (from, from_mac) = src(seg.from);
        let (to, to_mac) = src(seg.from.other());
        let frame = frame(
            redactor.ip(from.ip()),
            from.port(),
            from_mac,
            redactor.ip(to.ip()),
            to.port(),
            to_mac,
            seg,
        )?;
        out.push(Packet {
            iface,
            at,
            frame,
            // From rdpdiag's point of view: what the client (client leg, relayed view) or the
            // host (host leg) sends arrives.
            inbound: match leg {
                Leg::Client => seg.from == Peer::Initiator,
                Leg::Host => seg.from == Peer::Responder,
            },
            comments: comment.into_iter().collect(),
            data,
            close_of,
        });
        Ok(())
    };
    let peer_of = |dir: Direction| match dir {
        Direction::ClientToHost => Peer::Initiator,
        Direction::HostToClient => Peer::Responder,
    };

    let mut flow = TcpFlow::new(ISN_INITIATOR, ISN_RESPONDER);
    // The TCP connection: the client leg was accepted before time 0; the host leg connects
    // from time 0 until the connect result.
    match (leg, &trace.connect, relayed) {
        (Leg::Host, Connect::Failed { at, failure }, _) => {
            let syn = flow.syn();
            let why = match failure {
                ConnectFailure::Refused => "connection refused".to_owned(),
                ConnectFailure::Timeout => "no answer (connect timeout)".to_owned(),
                ConnectFailure::Other(e) => format!("connect failed: {e}"),
            };
            emit(
                &syn,
                Micros::ZERO,
                None,
                None,
                Some(format!("rdpdiag: {why}")),
            )?;
            if *failure == ConnectFailure::Refused {
                let rst = flow.refuse();
                emit(&rst, *at, None, Some(Side::Host), None)?;
            }
            return Ok(out);
        }
        (Leg::Host, Connect::Connected { at }, false) => {
            let syn = flow.syn();
            emit(&syn, Micros::ZERO, None, None, None)?;
            for s in flow.accept() {
                emit(&s, *at, None, None, None)?;
            }
        }
        _ => {
            for s in flow.handshake() {
                emit(&s, Micros::ZERO, None, None, None)?;
            }
        }
    }
    let mut pending_comment = Dirs::<Option<String>>::default();
    // Offset in the stream that crossed the relay (recorded bytes plus lost ones).
    let mut real = Dirs::<u64>::default();
    // Applies the losses of `dir` that start before `upto`.
    let mut apply_losses = |flow: &mut TcpFlow,
                            dir: Direction,
                            upto: Option<u64>,
                            real: &mut Dirs<u64>,
                            comments: &mut Dirs<Option<String>>| {
        let queue = losses.get_mut(dir);
        while let Some(l) = queue.last().copied() {
            if upto.is_some_and(|u| l.offset > u) {
                break;
            }
            queue.pop();
            flow.gap(peer_of(dir), l.len);
            let r = real.get_mut(dir);
            *r = r.saturating_add(l.len);
            let why = match l.reason {
                LossReason::QueueFull => "the recording queue was full",
                LossReason::RecordLimit => "past the recording limit",
            };
            *comments.get_mut(dir) = Some(format!(
                "rdpdiag: {} bytes {} not recorded before this packet ({why}; stream offset {})",
                l.len,
                dir.arrow(),
                l.offset
            ));
        }
    };
    for (at, _, action) in actions {
        match action {
            Action::Data(c, offset) => {
                let start_real = *real.get_mut(c.dir);
                apply_losses(
                    &mut flow,
                    c.dir,
                    Some(start_real),
                    &mut real,
                    &mut pending_comment,
                );
                let stream = stream_of(c.dir);
                let start = usize::try_from(offset).unwrap_or(usize::MAX);
                let end = start.saturating_add(c.data.len()).min(stream.len());
                let payload = stream.slice(start.min(end)..end);
                let mut seg_off = *real.get_mut(c.dir);
                let slot = pending_comment.get_mut(c.dir);
                for seg in flow.data(peer_of(c.dir), &payload) {
                    let len = u64::try_from(seg.payload.len()).unwrap_or(0);
                    let range = Some((leg, c.dir, seg_off, seg_off.saturating_add(len)));
                    emit(&seg, at, range, None, slot.take())?;
                    seg_off = seg_off.saturating_add(len);
                }
                *real.get_mut(c.dir) = seg_off;
            }
            Action::Close(c) => {
                // Whatever was lost in the closing direction came before its FIN.
                let dirs: &[Direction] = match c.side {
                    Side::Client => &[Direction::ClientToHost],
                    Side::Host => &[Direction::HostToClient],
                    Side::Proxy => &[Direction::ClientToHost, Direction::HostToClient],
                };
                for &d in dirs {
                    apply_losses(&mut flow, d, None, &mut real, &mut pending_comment);
                }
                let comment = dirs.iter().find_map(|&d| pending_comment.get_mut(d).take());
                let mut comment = comment;
                for (seg, side) in close_segments(&mut flow, leg, relayed, c) {
                    emit(&seg, at, None, Some(side), comment.take())?;
                }
            }
        }
    }
    Ok(out)
}

/// The segments a close shows as on a leg. The relay mirrors closes: a FIN from the client
/// becomes rdpdiag's FIN toward the host, and so on; when rdpdiag ends the connection (stall,
/// shutdown) it resets both legs.
fn close_segments(flow: &mut TcpFlow, leg: Leg, relayed: bool, c: &Close) -> Vec<(Segment, Side)> {
    let from = match (c.side, leg) {
        (Side::Client, _) => Peer::Initiator,
        (Side::Host, _) => Peer::Responder,
        // rdpdiag is the responder of the client leg and the initiator of the host leg.
        (Side::Proxy, Leg::Client) if !relayed => Peer::Responder,
        (Side::Proxy, _) => Peer::Initiator,
    };
    let reset = matches!(
        c.kind,
        CloseKind::Rst | CloseKind::Timeout | CloseKind::ConnectError
    );
    let mut out: Vec<(Segment, Side)> = Vec::new();
    if reset {
        if relayed && c.side == Side::Proxy {
            // Both ends were reset by rdpdiag: show the client's view (a RST from the host).
            out.extend(flow.rst(Peer::Responder).map(|s| (s, c.side)));
        } else {
            out.extend(flow.rst(from).map(|s| (s, c.side)));
        }
    } else {
        out.extend(flow.fin(from).into_iter().map(|s| (s, c.side)));
    }
    out
}

/// One Ethernet frame.
fn frame(
    src: IpAddr,
    sport: u16,
    src_mac: [u8; 6],
    dst: IpAddr,
    dport: u16,
    dst_mac: [u8; 6],
    seg: &Segment,
) -> Result<Vec<u8>, CaptureError> {
    let eth = PacketBuilder::ethernet2(src_mac, dst_mac);
    let ip = match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => eth.ipv4(s.octets(), d.octets(), TTL),
        (s, d) => eth.ipv6(v6(s).octets(), v6(d).octets(), TTL),
    };
    let mut tcp = ip.tcp(sport, dport, seg.seq, WINDOW);
    if seg.flags.syn {
        tcp = tcp.syn();
    }
    if seg.flags.ack {
        tcp = tcp.ack(seg.ack);
    }
    if seg.flags.psh {
        tcp = tcp.psh();
    }
    if seg.flags.fin {
        tcp = tcp.fin();
    }
    if seg.flags.rst {
        tcp = tcp.rst();
    }
    let mut out = Vec::with_capacity(tcp.size(seg.payload.len()));
    tcp.write(&mut out, &seg.payload)
        .map_err(|e| CaptureError::Frame(e.to_string()))?;
    Ok(out)
}

fn v6(ip: IpAddr) -> core::net::Ipv6Addr {
    match ip {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    }
}

/// Puts each piece of evidence on the packet that carries it: the segment holding its offset
/// (client leg for client bytes, host leg for host bytes), else the close of the side that
/// closed, else the first packet at or after its time.
fn place_evidence(trace: &Trace, wires: &[Wire], packets: &mut [Packet], redactor: &Redactor) {
    let v = &trace.verdict;
    let two_legs = wires.len() > 1 && trace.host.is_some();
    for e in &v.evidence {
        let text = redactor.text(&format!(
            "rdpdiag evidence ({}): {} = {}",
            v.cause, e.field, e.value
        ));
        let preferred = match e.dir {
            Some(Direction::HostToClient) if two_legs => Leg::Host,
            _ => Leg::Client,
        };
        let by_offset = |p: &Packet, want: Option<Leg>| match (e.dir, e.offset, p.data) {
            (Some(d), Some(o), Some((leg, pd, start, end))) => {
                d == pd && o >= start && o < end && want.is_none_or(|w| w == leg)
            }
            _ => false,
        };
        let idx = packets
            .iter()
            .position(|p| by_offset(p, Some(preferred)))
            .or_else(|| packets.iter().position(|p| by_offset(p, None)))
            .or_else(|| {
                let side = v.closed_by?;
                let looks_like_close = e.dir.is_none() || e.offset.is_none();
                looks_like_close
                    .then(|| packets.iter().position(|p| p.close_of == Some(side)))
                    .flatten()
            })
            .or_else(|| packets.iter().position(|p| p.at >= e.at))
            .or_else(|| packets.len().checked_sub(1));
        if let Some(p) = idx.and_then(|i| packets.get_mut(i)) {
            p.comments.push(text);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags(s: &Segment) -> &'static str {
        match (s.flags.syn, s.flags.ack, s.flags.fin, s.flags.rst) {
            (true, false, _, _) => "S",
            (true, true, _, _) => "SA",
            (_, true, true, _) => "FA",
            (_, true, _, true) => "RA",
            (_, false, _, true) => "R",
            (_, true, _, _) => "A",
            _ => "?",
        }
    }

    #[test]
    fn handshake_data_and_fin_arithmetic() {
        let mut f = TcpFlow::new(100, 5000);
        let hs = f.handshake();
        let summary: Vec<_> = hs.iter().map(|s| (flags(s), s.seq, s.ack)).collect();
        assert_eq!(
            summary,
            [("S", 100, 0), ("SA", 5000, 101), ("A", 101, 5001)]
        );

        let d = f.data(Peer::Initiator, &Bytes::from(vec![1u8; 3000]));
        let lens: Vec<_> = d
            .iter()
            .map(|s| (s.seq, s.payload.len(), s.flags.psh))
            .collect();
        assert_eq!(
            lens,
            [(101, 1460, false), (1561, 1460, false), (3021, 80, true)]
        );
        assert!(d.iter().all(|s| s.ack == 5001 && s.flags.ack));

        let r = f.data(Peer::Responder, &Bytes::from_static(b"hello"));
        assert_eq!((r[0].seq, r[0].ack), (5001, 3101));

        let fin = f.fin(Peer::Responder);
        assert_eq!(fin.len(), 1);
        assert_eq!((flags(&fin[0]), fin[0].seq, fin[0].ack), ("FA", 5006, 3101));
        // The other FIN acknowledges the first one, and gets the last ACK.
        let fin2 = f.fin(Peer::Initiator);
        let s: Vec<_> = fin2.iter().map(|s| (flags(s), s.seq, s.ack)).collect();
        assert_eq!(s, [("FA", 3101, 5007), ("A", 5007, 3102)]);
        // A second FIN from the same side is ignored.
        assert!(f.fin(Peer::Initiator).is_empty());
    }

    #[test]
    fn sequence_numbers_wrap() {
        let mut f = TcpFlow::new(u32::MAX - 1, 7);
        f.handshake();
        // The SYN took u32::MAX - 1; data starts at u32::MAX and wraps after one byte.
        let d = f.data(Peer::Initiator, &Bytes::from_static(b"abc"));
        assert_eq!(d[0].seq, u32::MAX);
        let r = f.data(Peer::Responder, &Bytes::from_static(b"x"));
        assert_eq!(r[0].ack, 2);
    }

    #[test]
    fn gaps_move_sequence_numbers() {
        let mut f = TcpFlow::new(0, 0);
        f.handshake();
        f.data(Peer::Initiator, &Bytes::from_static(b"abc"));
        f.gap(Peer::Initiator, 1000);
        let d = f.data(Peer::Initiator, &Bytes::from_static(b"d"));
        assert_eq!(d[0].seq, 1 + 3 + 1000);
        f.gap(Peer::Initiator, (1u64 << 32) + 5);
        let d = f.data(Peer::Initiator, &Bytes::from_static(b"e"));
        assert_eq!(d[0].seq, 1 + 3 + 1000 + 1 + 5);
    }

    #[test]
    fn resets() {
        let mut f = TcpFlow::new(10, 20);
        let syn = f.syn();
        let rst = f.refuse();
        assert_eq!((flags(&syn), syn.seq), ("S", 10));
        assert_eq!((flags(&rst), rst.ack), ("RA", 11));
        assert!(f.rst(Peer::Initiator).is_none());
        assert!(f.fin(Peer::Initiator).is_empty());

        let mut f = TcpFlow::new(10, 20);
        f.handshake();
        let r = f.rst(Peer::Responder).unwrap();
        assert_eq!((flags(&r), r.seq, r.ack), ("RA", 21, 11));
        assert!(f.rst(Peer::Initiator).is_none());
    }

    #[test]
    fn frames_parse_back() {
        let mut f = TcpFlow::new(1, 2);
        f.handshake();
        let seg = &f.data(Peer::Initiator, &Bytes::from_static(b"\x03\x00\x00\x13"))[0];
        for (src, dst) in [
            ("192.0.2.1", "198.51.100.2"),
            ("2001:db8::1", "2001:db8::2"),
        ] {
            let frame = frame(
                src.parse().unwrap(),
                50_000,
                MAC_INITIATOR,
                dst.parse().unwrap(),
                3389,
                MAC_RESPONDER,
                seg,
            )
            .unwrap();
            let p = etherparse::SlicedPacket::from_ethernet(&frame).unwrap();
            let Some(etherparse::TransportSlice::Tcp(tcp)) = p.transport else {
                panic!("no tcp");
            };
            assert_eq!(tcp.sequence_number(), 2);
            assert_eq!(tcp.acknowledgment_number(), 3);
            assert!(tcp.ack() && tcp.psh());
            assert_eq!(tcp.payload(), b"\x03\x00\x00\x13");
        }
    }
}
