//! The phase machine: framed units and transport events in, phase and verdict out.
//!
//! It is fed per direction ([`Session::feed`]) and told about closes and connect results; time is
//! passed in. It never reads a clock or touches a socket. The verdict rules at the bottom read as
//! rows of the reference's failure taxonomy (§4.2): last phase reached × who closed × evidence.

use super::causes;
use super::events::{Event, EventKind};
use super::framer::{Stream, Unit};
use super::verdict::{Evidence, Facts, Outcome, Verdict};
use super::{CloseKind, ConnectFailure, Direction, Micros, Phase, Side};
use crate::wire::mcs::{self, McsPdu};
use crate::wire::tls::{self, ClientHello, ContentType, HandshakeReassembler, ServerHello};
use crate::wire::x224::{
    self, ConnectionConfirm, ConnectionRequest, FailureCode, NegData, Protocols, X224Pdu,
};
use crate::wire::x509::{self, CertSummary};
use crate::wire::{DecodeError, tpkt};

mod experiment;
mod nla;
mod plaintext;

pub use experiment::{Echo, ExperimentSetup};
pub use nla::{NlaLeg, NlaReport};
pub use plaintext::{HostTls, TlsLegError};

/// Knobs of the diagnosis.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// A phase with no progress for this long ends with cause `stall`.
    pub stall_timeout: Micros,
    /// A peer that gives up after waiting this long for the other side's answer is reported as
    /// a stall (reference F11: CC after CR 5 s, ServerHello after ClientHello 5 s).
    pub answer_wait: Micros,
    /// Most bytes buffered per direction while inspecting.
    pub max_inspect_bytes: usize,
    /// Current time as unix seconds at the start of the connection (for certificate validity);
    /// passed in because the core has no clock.
    pub now_unix: Option<i64>,
    /// The name the client used for the host (for certificate name checks), if known.
    pub host_name: Option<String>,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            stall_timeout: Micros(30_000_000),
            answer_wait: Micros(5_000_000),
            max_inspect_bytes: 256 * 1024,
            now_unix: None,
            host_name: None,
        }
    }
}

/// A PDU after the Connect-Response at least this large (plaintext bytes) is one of the big
/// ones of the connection sequence: Client Info, Demand Active, Confirm Active (MS-RDPBCGR
/// 1.3.1.1); channel joins, synchronize and control PDUs are a few dozen bytes.
const LARGE_PDU: usize = 200;

/// When the session counts as active: after the Connect-Response, the client's Client Info (large),
/// then the host's Demand Active (large), then the client's Confirm Active (large), then two
/// more host PDUs (synchronize / control / font map). Channel joins alone never get there
/// (measured on xrdp and FreeRDP through TLS and Standard RDP Security: testbed captures).
#[derive(Debug, Default, Clone, Copy)]
struct Finalization {
    /// 0 await Client Info, 1 await Demand Active, 2 await Confirm Active, 3 count host PDUs.
    stage: u8,
    host_after_confirm: u32,
}

impl Finalization {
    /// One PDU (or record) after the Connect-Response; true once the session is active.
    fn step(&mut self, dir: Direction, size: usize) -> bool {
        let large = size >= LARGE_PDU;
        match (self.stage, dir) {
            (0, Direction::ClientToHost) if large => self.stage = 1,
            (1, Direction::HostToClient) if large => self.stage = 2,
            (2, Direction::ClientToHost) if large => self.stage = 3,
            (3, Direction::HostToClient) => {
                self.host_after_confirm = self.host_after_confirm.saturating_add(1);
            }
            _ => {}
        }
        self.stage == 3 && self.host_after_confirm >= 2
    }
}

/// Upper bound of an Early User Authorization record's plaintext estimate (4 bytes + slack for
/// CBC padding).
const EUA_MAX_PLAINTEXT: u16 = 20;

/// Most events recorded per connection. A real negotiation makes a few dozen; a hostile peer
/// sending 5-byte records could otherwise make 200,000 (70 MB) out of 1 MiB.
pub const MAX_EVENTS: usize = 1024;

/// Most alerts and record roles kept per connection (the first ones, and the latest in the
/// last slot): what the verdict reads of them is which came first and which came last. A
/// real negotiation has a handful of each.
const MAX_KEPT: usize = 64;

/// Pushes `item`, or replaces the last element once `v` holds [`MAX_KEPT`].
fn keep<T>(v: &mut Vec<T>, item: T) {
    if v.len() < MAX_KEPT {
        v.push(item);
    } else if let Some(last) = v.last_mut() {
        *last = item;
    }
}

/// TLS state of the connection.
#[derive(Debug, Default)]
struct TlsState {
    client_hello: Option<ClientHello>,
    client_hello_at: Option<(u64, Micros)>,
    server_hello: Option<ServerHello>,
    server_hello_at: Option<(u64, Micros)>,
    chain: Vec<CertSummary>,
    /// Where the Certificate message was (offset, time).
    chain_at: Option<(u64, Micros)>,
    tls13: bool,
    /// Per direction (client, host): records are encrypted from now on.
    encrypted: PerDir<bool>,
    /// The server's whole first flight has been sent (ServerHelloDone, or TLS 1.3 encrypted
    /// handshake records).
    server_flight_done: bool,
    client_finished: bool,
    server_finished: bool,
    done: bool,
    reassembler: PerDir<HandshakeReassembler>,
    /// Application records after the handshake, per direction.
    app_records: PerDir<u32>,
    /// TLS 1.3 server records before the client's first application record (session tickets).
    tickets: u32,
    /// Progress of the connection finalization (records through TLS).
    finalization: Finalization,
    /// Last record each direction: (offset, content type, length, at).
    last_record: PerDir<Option<(u64, u8, u16, Micros)>>,
}

/// A clear or inferred alert.
#[derive(Debug, Clone)]
struct AlertSeen {
    dir: Direction,
    offset: u64,
    at: Micros,
    /// None when encrypted (description unknown).
    description: Option<u8>,
    /// Level fatal (2), or encrypted (assumed fatal before the handshake finished).
    fatal: bool,
    before_done: bool,
}

/// Standard RDP Security facts (clear MCS).
#[derive(Debug, Default)]
struct McsState {
    initial: Option<(u64, Micros, mcs::ConnectInitial)>,
    response: Option<(u64, Micros, mcs::ConnectResponse)>,
    disconnect: Option<(Direction, u64, Micros, u8)>,
    /// TPKT PDUs after the Connect-Response, per direction.
    after_response: PerDir<u32>,
    /// Progress of the connection finalization (clear PDUs).
    finalization: Finalization,
}

/// What the credssp/MCS accounting inferred each application record to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    CredsspClient(u32),
    CredsspServer(u32),
    EarlyAuth,
    ConnectInitial,
    ConnectResponse,
    Session,
}

impl Role {
    fn label(self) -> String {
        match self {
            Role::CredsspClient(n) => format!("CredSSP TSRequest C{n}"),
            Role::CredsspServer(n) => format!("CredSSP TSRequest S{n}"),
            Role::EarlyAuth => "Early User Authorization result (4 bytes)".to_owned(),
            Role::ConnectInitial => "MCS Connect-Initial".to_owned(),
            Role::ConnectResponse => "MCS Connect-Response".to_owned(),
            Role::Session => "session data".to_owned(),
        }
    }
}

/// One connection's diagnosis state.
#[derive(Debug)]
pub struct Session {
    cfg: SessionConfig,
    phase: Phase,
    events: Vec<Event>,
    streams: PerDir<Stream>,
    connect: Option<Result<Micros, (ConnectFailure, Micros)>>,
    cr: Option<(u64, Micros, ConnectionRequest)>,
    cc: Option<(u64, Micros, ConnectionConfirm)>,
    /// What the TLS-or-not decision is, once the CC is in.
    selected: Option<Protocols>,
    tls: TlsState,
    alerts: Vec<AlertSeen>,
    mcs: McsState,
    /// Roles of the application records in order (dir, role, offset, len, at).
    roles: Vec<(Direction, Role, u64, u16, Micros)>,
    malformed: Option<(Direction, u64, Micros, DecodeError)>,
    /// Every decode error, first per direction.
    malformed_all: Vec<(Direction, u64, Micros, DecodeError)>,
    /// Closes in the order they happened.
    closes: Vec<(Side, CloseKind, Micros)>,
    stall: Option<(Phase, Micros, Micros, Option<Side>)>,
    /// Last time bytes arrived in each direction.
    last_bytes: PerDir<Option<Micros>>,
    last_progress: Micros,
    /// The experiment the driver runs (`proxy --security` / `--fresh-cert`).
    experiment: Option<ExperimentSetup>,
    /// TLS terminated by the driver: both legs' results and the decrypted streams.
    term: Option<plaintext::TermState>,
    /// `--nla-user`: rdpdiag brokers CredSSP on both legs.
    nla: Option<nla::NlaState>,
}

/// One value per direction, indexed by [`Direction`] (no slice indexing, no bounds to check).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct PerDir<T> {
    client: T,
    host: T,
}

impl<T> std::ops::Index<Direction> for PerDir<T> {
    type Output = T;
    fn index(&self, dir: Direction) -> &T {
        match dir {
            Direction::ClientToHost => &self.client,
            Direction::HostToClient => &self.host,
        }
    }
}

impl<T> std::ops::IndexMut<Direction> for PerDir<T> {
    fn index_mut(&mut self, dir: Direction) -> &mut T {
        match dir {
            Direction::ClientToHost => &mut self.client,
            Direction::HostToClient => &mut self.host,
        }
    }
}

impl Session {
    pub fn new(cfg: SessionConfig) -> Self {
        Self {
            cfg,
            phase: Phase::TcpConnect,
            events: Vec::new(),
            streams: PerDir::default(),
            connect: None,
            cr: None,
            cc: None,
            selected: None,
            tls: TlsState::default(),
            alerts: Vec::new(),
            mcs: McsState::default(),
            roles: Vec::new(),
            malformed: None,
            malformed_all: Vec::new(),
            closes: Vec::new(),
            stall: None,
            last_bytes: PerDir::default(),
            last_progress: Micros::ZERO,
            experiment: None,
            term: None,
            nla: None,
        }
    }

    fn push(&mut self, at: Micros, dir: Option<Direction>, offset: Option<u64>, kind: EventKind) {
        // A peer sending tiny PDUs or records makes one event per 5 bytes: past the cap the
        // event log says so once and records nothing more (the verdict reads the state, not
        // the log).
        let kind = match self.events.len() {
            n if n + 1 < MAX_EVENTS => kind,
            n if n + 1 == MAX_EVENTS => EventKind::Note {
                text: format!("{MAX_EVENTS} events recorded: later events are not"),
            },
            _ => return,
        };
        self.events.push(Event {
            at,
            dir,
            offset,
            phase: self.phase,
            kind,
        });
    }

    fn enter(&mut self, to: Phase, at: Micros) {
        if to > self.phase {
            let from = self.phase;
            self.phase = to;
            self.push(at, None, None, EventKind::Phase { from, to });
        }
    }

    /// The TCP connection to the host succeeded or failed.
    pub fn on_connect_result(&mut self, result: Result<(), ConnectFailure>, at: Micros) {
        self.last_progress = at;
        match result {
            Ok(()) => {
                self.connect = Some(Ok(at));
                self.push(at, None, None, EventKind::TcpConnected);
                self.enter(Phase::X224, at);
            }
            Err(failure) => {
                self.connect = Some(Err((failure.clone(), at)));
                self.push(at, None, None, EventKind::ConnectFailed { failure });
            }
        }
    }

    /// Bytes seen in one direction.
    pub fn feed(&mut self, dir: Direction, bytes: &[u8], at: Micros) {
        if bytes.is_empty() {
            return;
        }
        if self.connect.is_none() {
            // A capture may start without the handshake: bytes prove the connection is up.
            self.connect = Some(Ok(at));
            self.enter(Phase::X224, at);
        }
        self.last_bytes[dir] = Some(at);
        self.last_progress = at;
        let cap = self.cfg.max_inspect_bytes;
        let stream = &mut self.streams[dir];
        if !stream.push(bytes, cap) {
            let pos = stream.position();
            self.push(
                at,
                Some(dir),
                Some(pos),
                EventKind::Note {
                    text: format!("more than {cap} bytes pending without a whole PDU: inspection of this direction stopped"),
                },
            );
            return;
        }
        while let Some((offset, unit)) = self.streams[dir].next_unit() {
            match unit {
                Unit::Tpkt(pdu) => self.on_tpkt(dir, offset, &pdu, at),
                Unit::Record(h, payload) => self.on_record(dir, offset, h, &payload, at),
                Unit::Garbage(error, sample) => self.on_garbage(dir, offset, error, &sample, at),
            }
        }
    }

    fn on_garbage(
        &mut self,
        dir: Direction,
        offset: u64,
        error: DecodeError,
        sample: &[u8],
        at: Micros,
    ) {
        let error = error.shifted(usize::try_from(offset).unwrap_or(usize::MAX));
        self.push(
            at,
            Some(dir),
            Some(offset),
            EventKind::Note {
                text: format!("undecodable bytes: {}", hex::encode(sample)),
            },
        );
        self.set_malformed(dir, offset, at, error);
    }

    fn set_malformed(&mut self, dir: Direction, offset: u64, at: Micros, error: DecodeError) {
        self.push(
            at,
            Some(dir),
            Some(offset),
            EventKind::Malformed {
                error: Box::new(error.clone()),
            },
        );
        if !self.malformed_all.iter().any(|m| m.0 == dir) {
            self.malformed_all.push((dir, offset, at, error.clone()));
        }
        if self.malformed.is_none() {
            self.malformed = Some((dir, offset, at, error));
        }
        self.streams[dir].go_opaque();
    }

    fn on_tpkt(&mut self, dir: Direction, offset: u64, pdu: &[u8], at: Micros) {
        let base = usize::try_from(offset).unwrap_or(usize::MAX);
        let decoded = match x224::decode(pdu) {
            Ok(p) => p,
            Err(e) => return self.set_malformed(dir, offset, at, e.shifted(base)),
        };
        match (dir, decoded) {
            (Direction::ClientToHost, X224Pdu::ConnectionRequest(cr)) => {
                let len = pdu.len();
                if self.cr.is_none() {
                    self.cr = Some((offset, at, cr.clone()));
                }
                self.push(
                    at,
                    Some(dir),
                    Some(offset),
                    EventKind::ConnectionRequest {
                        pdu: Box::new(cr),
                        len,
                    },
                );
            }
            (Direction::HostToClient, X224Pdu::ConnectionConfirm(cc)) => {
                let len = pdu.len();
                self.selected = Some(match &cc.neg {
                    Some(NegData::Response { selected, .. }) => *selected,
                    Some(NegData::Failure { .. }) => Protocols::RDP,
                    None => Protocols::RDP,
                });
                if self.cc.is_none() {
                    self.cc = Some((offset, at, cc.clone()));
                }
                self.push(
                    at,
                    Some(dir),
                    Some(offset),
                    EventKind::ConnectionConfirm { pdu: cc, len },
                );
            }
            (_, X224Pdu::Data { payload_offset }) => {
                let body = pdu.get(payload_offset..).unwrap_or_default();
                match mcs::decode(body) {
                    Ok(p) => {
                        if let McsPdu::ConnectResponse(r) = &p {
                            self.server_data_certificates(r, body);
                        }
                        self.on_mcs(dir, offset, p, at)
                    }
                    Err(e) => {
                        // MCS inside a clear TPKT that we cannot read: note it, keep framing.
                        let e = e.shifted(base.saturating_add(payload_offset));
                        self.push(
                            at,
                            Some(dir),
                            Some(offset),
                            EventKind::Note {
                                text: format!("undecodable MCS PDU: {e}"),
                            },
                        );
                        self.count_after_response(dir);
                    }
                }
            }
            (_, other) => {
                let text = format!(
                    "unexpected X.224 TPDU from the {}: {other:?}",
                    dir.sender().name()
                );
                self.push(at, Some(dir), Some(offset), EventKind::Note { text });
            }
        }
    }

    /// Standard RDP Security with an X.509 chain in the server security data: summarize it
    /// like a TLS certificate (the leaf is the last certificate of that chain).
    fn server_data_certificates(&mut self, r: &mcs::ConnectResponse, body: &[u8]) {
        let Some(sec) = &r.server_security else {
            return;
        };
        let mut chain: Vec<CertSummary> = sec
            .x509_chain
            .iter()
            .filter_map(|span| body.get(span.offset..span.offset.saturating_add(span.len)))
            .filter_map(|der| x509::summarize(der).ok())
            .collect();
        chain.reverse();
        if !chain.is_empty() && self.tls.chain.is_empty() {
            self.tls.chain = chain;
        }
    }

    fn count_after_response(&mut self, dir: Direction) {
        if self.mcs.response.is_some() {
            let n = &mut self.mcs.after_response[dir];
            *n = n.saturating_add(1);
        }
    }

    fn on_mcs(&mut self, dir: Direction, offset: u64, pdu: McsPdu, at: Micros) {
        match &pdu {
            McsPdu::ConnectInitial(ci) if dir == Direction::ClientToHost => {
                self.enter(Phase::Mcs, at);
                self.mcs.initial = Some((offset, at, ci.clone()));
            }
            McsPdu::ConnectResponse(cr) if dir == Direction::HostToClient => {
                self.mcs.response = Some((offset, at, cr.clone()));
            }
            McsPdu::DisconnectProviderUltimatum { reason } => {
                if self.mcs.disconnect.is_none() {
                    self.mcs.disconnect = Some((dir, offset, at, *reason));
                }
            }
            McsPdu::SendDataRequest { data_len, .. }
            | McsPdu::SendDataIndication { data_len, .. } => {
                let len = *data_len;
                self.count_after_response(dir);
                if self.mcs.response.is_some() && self.mcs.finalization.step(dir, len) {
                    self.push(
                        at,
                        Some(dir),
                        Some(offset),
                        EventKind::Mcs { pdu: Box::new(pdu) },
                    );
                    self.enter(Phase::Licensing, at);
                    self.enter(Phase::Active, at);
                    return;
                }
            }
            _ => self.count_after_response(dir),
        }
        self.push(
            at,
            Some(dir),
            Some(offset),
            EventKind::Mcs { pdu: Box::new(pdu) },
        );
        // Standard RDP Security: after the Connect-Response come the domain PDUs, the security
        // exchange, licensing and capabilities, all framed by TPKT.
        if self.mcs.response.is_some()
            && self.mcs.after_response.client + self.mcs.after_response.host > 0
        {
            // Licensing (and what follows) starts with the first PDU after the Connect-Response.
            self.enter(Phase::Licensing, at);
        }
    }

    fn on_record(
        &mut self,
        dir: Direction,
        offset: u64,
        h: tls::RecordHeader,
        payload: &[u8],
        at: Micros,
    ) {
        self.tls.last_record[dir] = Some((offset, h.content_type.0, h.length, at));
        if self.selected.is_none() && dir == Direction::ClientToHost && self.cr.is_none() {
            self.push(
                at,
                Some(dir),
                Some(offset),
                EventKind::Note { text: "the client starts with TLS, not an X.224 Connection Request (direct approach, or a TLS client on an RDP port)".to_owned() },
            );
        }
        if dir == Direction::ClientToHost || self.tls.client_hello.is_some() {
            self.enter(Phase::TlsHandshake, at);
        }
        match h.content_type {
            ContentType::HANDSHAKE if !self.tls.encrypted[dir] => {
                let msgs = self.tls.reassembler[dir].push(
                    payload,
                    offset.saturating_add(tls::RECORD_HEADER_LEN as u64),
                );
                for m in msgs {
                    match m {
                        Ok(m) => self.on_handshake(dir, m, at),
                        Err(e) => return self.set_malformed(dir, offset, at, e),
                    }
                }
            }
            ContentType::HANDSHAKE => {
                // TLS <= 1.2 Finished after ChangeCipherSpec.
                self.unindexed_record(
                    dir,
                    offset,
                    h.content_type.0,
                    h.length,
                    "Finished (encrypted)",
                    at,
                );
                match dir {
                    Direction::ClientToHost => self.tls.client_finished = true,
                    Direction::HostToClient => self.tls.server_finished = true,
                }
                self.check_done(at);
            }
            ContentType::CHANGE_CIPHER_SPEC => {
                self.push(at, Some(dir), Some(offset), EventKind::TlsChangeCipherSpec);
                if !self.tls.tls13 {
                    self.tls.encrypted[dir] = true;
                }
            }
            ContentType::ALERT => {
                let before_done = !self.tls.done;
                if self.tls.encrypted[dir] {
                    keep(
                        &mut self.alerts,
                        AlertSeen {
                            dir,
                            offset,
                            at,
                            description: None,
                            fatal: before_done,
                            before_done,
                        },
                    );
                    self.push(
                        at,
                        Some(dir),
                        Some(offset),
                        EventKind::TlsEncryptedAlert {
                            len: h.length,
                            inferred: false,
                        },
                    );
                } else if let Some(a) = tls::parse_alert(payload) {
                    keep(
                        &mut self.alerts,
                        AlertSeen {
                            dir,
                            offset,
                            at,
                            description: Some(a.description),
                            fatal: a.level == 2 || a.description != 0,
                            before_done,
                        },
                    );
                    self.push(
                        at,
                        Some(dir),
                        Some(offset),
                        EventKind::TlsAlert {
                            level: a.level,
                            description: a.description,
                            name: tls::alert_name(a.description),
                        },
                    );
                }
            }
            ContentType::APPLICATION_DATA => self.on_app_record(dir, offset, h.length, at),
            other => {
                let text = format!("TLS record of type {} ({} bytes)", other.0, h.length);
                self.push(at, Some(dir), Some(offset), EventKind::Note { text });
            }
        }
    }

    fn on_handshake(&mut self, dir: Direction, m: tls::HandshakeMessage, at: Micros) {
        let offset = m.offset;
        match (dir, m.msg_type) {
            (Direction::ClientToHost, 1) => match tls::parse_client_hello(&m.body) {
                Ok(hello) => {
                    let versions = hello
                        .offered_versions()
                        .into_iter()
                        .map(tls::version_name)
                        .collect();
                    self.tls.client_hello_at = Some((offset, at));
                    self.tls.client_hello = Some(hello.clone());
                    self.push(
                        at,
                        Some(dir),
                        Some(offset),
                        EventKind::TlsClientHello {
                            hello: Box::new(hello),
                            versions,
                        },
                    );
                }
                Err(e) => self.set_malformed(dir, offset, at, e),
            },
            (Direction::HostToClient, 2) => match tls::parse_server_hello(&m.body) {
                Ok(hello) => {
                    let v = hello.version();
                    self.tls.tls13 = v == 0x0304;
                    if self.tls.tls13 {
                        // Everything after the TLS 1.3 ServerHello is encrypted.
                        self.tls.encrypted.host = true;
                    }
                    self.tls.server_hello_at = Some((offset, at));
                    self.tls.server_hello = Some(hello.clone());
                    let (version, cipher) = (
                        tls::version_name(v),
                        tls::cipher_suite_name(hello.cipher_suite),
                    );
                    self.push(
                        at,
                        Some(dir),
                        Some(offset),
                        EventKind::TlsServerHello {
                            hello: Box::new(hello),
                            version,
                            cipher,
                        },
                    );
                }
                Err(e) => self.set_malformed(dir, offset, at, e),
            },
            (Direction::HostToClient, 11) => match tls::parse_certificate(&m.body, false) {
                Ok(ders) => {
                    let chain: Vec<CertSummary> = ders
                        .iter()
                        .filter_map(|d| x509::summarize(d).ok())
                        .collect();
                    self.tls.chain = chain.clone();
                    self.tls.chain_at = Some((offset, at));
                    self.push(
                        at,
                        Some(dir),
                        Some(offset),
                        EventKind::TlsCertificate { chain },
                    );
                }
                Err(e) => self.set_malformed(dir, offset, at, e),
            },
            (Direction::HostToClient, 14) => {
                self.tls.server_flight_done = true;
                self.push(
                    at,
                    Some(dir),
                    Some(offset),
                    EventKind::TlsHandshake {
                        message: tls::handshake_type_name(14),
                    },
                );
            }
            (_, t) => self.push(
                at,
                Some(dir),
                Some(offset),
                EventKind::TlsHandshake {
                    message: tls::handshake_type_name(t),
                },
            ),
        }
    }

    /// An encrypted record that is not one of the counted application records (handshake,
    /// session ticket, after the peer's alert), with what it is taken to be.
    fn unindexed_record(
        &mut self,
        dir: Direction,
        offset: u64,
        content_type: u8,
        len: u16,
        role: &str,
        at: Micros,
    ) {
        let role = Some(role.to_owned());
        self.push(
            at,
            Some(dir),
            Some(offset),
            EventKind::TlsRecord {
                content_type,
                len,
                index: 0,
                role,
            },
        );
    }

    fn check_done(&mut self, at: Micros) {
        if !self.tls.done && self.tls.client_finished && self.tls.server_finished {
            self.tls.done = true;
            self.push(at, None, None, EventKind::TlsHandshakeDone);
        }
    }

    /// Plaintext size estimate of an application record (reference §4.3 rule 2).
    fn plaintext_estimate(&self, len: u16) -> u16 {
        if self.tls.tls13 {
            return len.saturating_sub(17);
        }
        let cipher = self
            .tls
            .server_hello
            .as_ref()
            .map(|h| tls::cipher_suite_name(h.cipher_suite))
            .unwrap_or_default();
        if cipher.contains("GCM") || cipher.contains("CCM") {
            len.saturating_sub(24)
        } else if cipher.contains("CHACHA20") {
            len.saturating_sub(16)
        } else {
            // CBC: IV (16) + MAC (20..48) + padding (1..16); the smallest overhead.
            len.saturating_sub(37)
        }
    }

    fn on_app_record(&mut self, dir: Direction, offset: u64, len: u16, at: Micros) {
        if !self.tls.done {
            if self.tls.tls13 {
                match dir {
                    Direction::HostToClient => {
                        // Encrypted handshake: EncryptedExtensions, Certificate, CertificateVerify, Finished.
                        self.tls.server_flight_done = true;
                        self.tls.server_finished = true;
                        self.unindexed_record(dir, offset, 23, len, "encrypted handshake", at);
                    }
                    Direction::ClientToHost => {
                        // The client's first encrypted record is its Finished (>= 53 bytes) or an
                        // alert (2 bytes + type + 16-byte tag = 19).
                        if len <= 19 {
                            keep(
                                &mut self.alerts,
                                AlertSeen {
                                    dir,
                                    offset,
                                    at,
                                    description: None,
                                    fatal: true,
                                    before_done: true,
                                },
                            );
                            self.push(
                                at,
                                Some(dir),
                                Some(offset),
                                EventKind::TlsEncryptedAlert {
                                    len,
                                    inferred: true,
                                },
                            );
                        } else {
                            self.tls.client_finished = true;
                            self.unindexed_record(dir, offset, 23, len, "Finished (encrypted)", at);
                            self.check_done(at);
                        }
                    }
                }
                return;
            }
            // TLS <= 1.2 application data before both Finished: odd, count it anyway.
            self.push(
                at,
                Some(dir),
                Some(offset),
                EventKind::Note {
                    text: "application data before the TLS handshake finished".to_owned(),
                },
            );
        }
        // TLS 1.3 hides alerts in application-data records: 2 bytes + content type + 16-byte tag.
        // No RDP message is 2 bytes long, so a 19-byte record is an alert (close_notify or fatal).
        if self.tls.tls13 && len == 19 {
            keep(
                &mut self.alerts,
                AlertSeen {
                    dir,
                    offset,
                    at,
                    description: None,
                    fatal: false,
                    before_done: false,
                },
            );
            self.push(
                at,
                Some(dir),
                Some(offset),
                EventKind::TlsEncryptedAlert {
                    len,
                    inferred: true,
                },
            );
            return;
        }
        // TLS 1.3 session tickets come from the server before the client's first application record.
        if self.tls.tls13 && dir == Direction::HostToClient && self.tls.app_records.client == 0 {
            self.tls.tickets = self.tls.tickets.saturating_add(1);
            self.unindexed_record(dir, offset, 23, len, "NewSessionTicket (inferred)", at);
            return;
        }
        // Once a side has closed TLS (an alert), what the other side still sends is not a step
        // of the exchange (corpus ndpi_rdp_over_tls: the client sends two records after the
        // host's alert, then resets).
        if self.alerts.iter().any(|a| !a.before_done && a.dir != dir) {
            self.unindexed_record(dir, offset, 23, len, "after the peer's alert", at);
            return;
        }
        self.tls.app_records[dir] = self.tls.app_records[dir].saturating_add(1);
        let index = self.tls.app_records[dir];
        let role = self.infer_role(dir, index, len);
        keep(&mut self.roles, (dir, role, offset, len, at));
        self.push(
            at,
            Some(dir),
            Some(offset),
            EventKind::TlsRecord {
                content_type: 23,
                len,
                index,
                role: Some(role.label()),
            },
        );
        match role {
            Role::CredsspClient(_) | Role::CredsspServer(_) => self.enter(Phase::Credssp, at),
            Role::EarlyAuth => self.enter(Phase::EarlyUserAuth, at),
            Role::ConnectInitial => self.enter(Phase::Mcs, at),
            Role::ConnectResponse | Role::Session => {}
        }
        if let Some(resp_at) = self.roles.iter().position(|r| r.1 == Role::ConnectResponse) {
            let after = self.roles.get(resp_at + 1..).unwrap_or_default();
            let c = after
                .iter()
                .filter(|r| r.0 == Direction::ClientToHost)
                .count();
            let s = after
                .iter()
                .filter(|r| r.0 == Direction::HostToClient)
                .count();
            if c + s > 0 {
                self.enter(Phase::Licensing, at);
                let size = usize::from(self.plaintext_estimate(len));
                if self.tls.finalization.step(dir, size) {
                    self.enter(Phase::Active, at);
                }
            }
        }
    }

    /// Record accounting (reference §4.3 rule 1): HYBRID: C1 S1 C2 S2 C3 [S3 = EUA] C4 =
    /// Connect-Initial, then the Connect-Response; SSL: C1 is the Connect-Initial.
    fn infer_role(&self, dir: Direction, index: u32, len: u16) -> Role {
        let selected = self.selected.unwrap_or(Protocols::SSL);
        let credssp = selected.uses_credssp();
        let hybrid_ex = selected.contains(Protocols::HYBRID_EX);
        let seen = |r: Role| self.roles.iter().any(|x| x.1 == r);
        match dir {
            Direction::ClientToHost => {
                let first_mcs = if credssp { 4 } else { 1 };
                if index < first_mcs {
                    Role::CredsspClient(index)
                } else if index == first_mcs {
                    Role::ConnectInitial
                } else {
                    Role::Session
                }
            }
            Direction::HostToClient => {
                if seen(Role::ConnectInitial) {
                    if seen(Role::ConnectResponse) {
                        Role::Session
                    } else {
                        Role::ConnectResponse
                    }
                } else if credssp && index <= 2 {
                    Role::CredsspServer(index)
                } else if hybrid_ex
                    && self.tls.app_records.client >= 3
                    && self.plaintext_estimate(len) <= EUA_MAX_PLAINTEXT
                    && !seen(Role::EarlyAuth)
                {
                    Role::EarlyAuth
                } else if credssp {
                    Role::CredsspServer(index)
                } else {
                    Role::Session
                }
            }
        }
    }

    /// A side closed (FIN) or reset its connection.
    pub fn on_close(&mut self, side: Side, kind: CloseKind, at: Micros) {
        // A side may half-close (FIN) and reset later: both are facts; the first decides.
        if self.closes.iter().any(|c| c.0 == side && c.1 == kind) {
            return;
        }
        self.closes.push((side, kind, at));
        self.push(at, None, None, EventKind::Closed { side, kind });
    }

    /// Lets time pass; returns true when the connection should be ended because a phase stalled.
    pub fn tick(&mut self, at: Micros) -> bool {
        if self.stall.is_some()
            || !self.closes.is_empty()
            || self.phase >= Phase::Active
            || self.connect.as_ref().is_some_and(Result::is_err)
        {
            return false;
        }
        let idle = at.saturating_sub(self.last_progress);
        if idle < self.cfg.stall_timeout {
            return false;
        }
        let waiting_for = self.awaited_side();
        self.stall = Some((self.phase, idle, at, waiting_for));
        self.push(at, None, None, EventKind::Stalled { idle });
        self.closes.push((Side::Proxy, CloseKind::Timeout, at));
        true
    }

    /// When `tick` next needs to be called, if ever.
    pub fn next_deadline(&self) -> Option<Micros> {
        if self.stall.is_some() || !self.closes.is_empty() || self.phase >= Phase::Active {
            return None;
        }
        Some(Micros(
            self.last_progress
                .0
                .saturating_add(self.cfg.stall_timeout.0),
        ))
    }

    /// True once nothing more can be learned from the bytes: the driver may stop feeding them
    /// (it must still report closes).
    pub fn inspection_done(&self) -> bool {
        if let Some(t) = &self.term {
            return self.phase >= Phase::Active || t.all_opaque();
        }
        self.phase >= Phase::Active || (self.streams.client.opaque && self.streams.host.opaque)
    }

    /// Events so far.
    pub fn events(&self) -> &[Event] {
        &self.events
    }

    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// Who is expected to send next, from the last bytes seen.
    fn awaited_side(&self) -> Option<Side> {
        match (self.last_bytes.client, self.last_bytes.host) {
            (None, None) => Some(Side::Client),
            (Some(_), None) => Some(Side::Host),
            (None, Some(_)) => Some(Side::Client),
            (Some(c), Some(s)) => Some(if c >= s { Side::Host } else { Side::Client }),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Verdict rules.

/// A verdict under construction.
struct Draft {
    cause: &'static str,
    outcome: Outcome,
    summary: String,
    inferred: bool,
    evidence: Vec<Evidence>,
    notes: Vec<String>,
    /// A likely cause and its remedy more precise than the catalogue's (an errorCode read),
    /// put first.
    specific: Option<(String, String)>,
}

fn ev(
    dir: Option<Direction>,
    offset: Option<u64>,
    at: Micros,
    field: impl Into<String>,
    value: impl Into<String>,
) -> Evidence {
    Evidence {
        dir,
        offset,
        at,
        field: field.into(),
        value: value.into(),
    }
}

impl Session {
    /// The verdict, from what has been seen so far.
    pub fn verdict(&self) -> Verdict {
        let d = self.diagnose();
        let mut d = self.adjust_for_experiment(d);
        let experiment = self.experiment_report(&d);
        d.evidence.extend(self.close_evidence());
        let (closed_by, close_kind) = self.closer();
        let cause = causes::lookup(d.cause);
        let facts = self.facts(d.notes);
        Verdict {
            outcome: d.outcome,
            phase_reached: self.phase,
            closed_by,
            close_kind,
            cause: d.cause,
            summary: d.summary,
            inferred: d.inferred,
            evidence: d.evidence,
            likely_causes: d
                .specific
                .iter()
                .map(|s| s.0.clone())
                .chain(
                    cause
                        .into_iter()
                        .flat_map(|c| c.likely_causes.iter().map(|s| (*s).to_owned())),
                )
                .collect(),
            remedies: d
                .specific
                .iter()
                .map(|s| s.1.clone())
                .chain(
                    cause
                        .into_iter()
                        .flat_map(|c| c.remedies.iter().map(|s| (*s).to_owned())),
                )
                .collect(),
            confirm_with: cause
                .map(|c| c.confirm_with.iter().map(|s| (*s).to_owned()).collect())
                .unwrap_or_default(),
            facts,
            experiment,
        }
    }

    /// The first fatal alert during the handshake or MCS Disconnect-Provider-Ultimatum.
    fn terminating_message(&self) -> Option<(Side, Micros, CloseKind)> {
        let alert = self
            .alerts
            .iter()
            .find(|a| a.fatal || a.description.is_none())
            .map(|a| (a.dir.sender(), a.at, CloseKind::Alert));
        let dpu = self.mcs.disconnect.map(|(dir, _, at, _)| {
            let side = dir.sender();
            let kind = self
                .closes
                .iter()
                .find(|c| c.0 == side)
                .map_or(CloseKind::Fin, |c| c.1);
            (side, at, kind)
        });
        match (alert, dpu) {
            (Some(a), Some(d)) => Some(if a.1 <= d.1 { a } else { d }),
            (a, d) => a.or(d),
        }
    }

    /// Who closed first, and how (an alert just before the close makes it `alert`).
    fn closer(&self) -> (Option<Side>, Option<CloseKind>) {
        if let Some(Err((failure, _))) = &self.connect {
            let side = if *failure == ConnectFailure::Refused {
                Side::Host
            } else {
                Side::Proxy
            };
            return (Some(side), Some(CloseKind::ConnectError));
        }
        // A fatal alert or an MCS Disconnect-Provider-Ultimatum ends the connection as surely as
        // a TCP close: the first of them names who closed, even if the peer's TCP close came
        // first (xrdp answers with an alert and leaves the socket open; the client then FINs).
        let first_tcp = self.closes.first().copied();
        let terminator = self.terminating_message();
        if let Some((side, at, kind)) = terminator
            && first_tcp.is_none_or(|(_, _, tcp_at)| at <= tcp_at)
        {
            return (Some(side), Some(kind));
        }
        let Some((side, kind, _)) = first_tcp else {
            return (None, None);
        };
        let alerted = self.alerts.iter().any(|a| {
            a.dir.sender() == side && a.description.is_none_or(|d| d != 0 || a.before_done)
        });
        let kind = if kind != CloseKind::Timeout && alerted && self.last_unit_was_alert(side) {
            CloseKind::Alert
        } else {
            kind
        };
        (Some(side), Some(kind))
    }

    fn last_unit_was_alert(&self, side: Side) -> bool {
        let dir = match side {
            Side::Client => Direction::ClientToHost,
            Side::Host => Direction::HostToClient,
            Side::Proxy => return false,
        };
        let Some(last) = self.alerts.iter().rev().find(|a| a.dir == dir) else {
            return false;
        };
        // Nothing but (possibly) more alerts after it in that direction.
        self.tls.last_record[dir].is_some_and(|(off, ty, len, _)| {
            off == last.offset || ty == 21 || (self.tls.tls13 && len <= 19)
        })
    }

    fn close_evidence(&self) -> Vec<Evidence> {
        let mut out = Vec::new();
        if let Some((phase, idle, at, waiting)) = &self.stall {
            out.push(ev(
                None,
                None,
                *at,
                "stall",
                format!(
                    "no bytes for {:.1} s in phase {}{}",
                    idle.as_secs_f64(),
                    phase.name(),
                    waiting
                        .map(|s| format!(", waiting for the {}", s.name()))
                        .unwrap_or_default()
                ),
            ));
        }
        for &(side, kind, at) in &self.closes {
            if side == Side::Proxy {
                continue;
            }
            let dir = if side == Side::Client {
                Direction::ClientToHost
            } else {
                Direction::HostToClient
            };
            let pos = self.streams[dir].total;
            out.push(ev(
                Some(dir),
                Some(pos),
                at,
                "close",
                format!(
                    "{} sent {} after {} byte(s){}",
                    side.name(),
                    kind.name().to_uppercase(),
                    pos,
                    self.plaintext_note(dir)
                ),
            ));
        }
        out
    }

    /// The first end of the connection: a TCP close, or an earlier fatal alert / DPU (see
    /// [`Session::closer`]).
    fn first_close(&self) -> Option<(Side, CloseKind, Micros)> {
        let tcp = self.closes.first().copied();
        match (self.terminating_message(), tcp) {
            (Some((side, at, kind)), Some((_, _, tcp_at))) if at <= tcp_at => {
                Some((side, kind, at))
            }
            (Some((side, at, kind)), None) => Some((side, kind, at)),
            (_, tcp) => tcp,
        }
    }

    fn draft(&self, cause: &'static str, outcome: Outcome, summary: String) -> Draft {
        Draft {
            cause,
            outcome,
            summary,
            inferred: false,
            evidence: Vec::new(),
            notes: Vec::new(),
            specific: None,
        }
    }

    /// What the driver saw selected (the CC's protocol), once known.
    pub fn selected(&self) -> Option<Protocols> {
        self.selected
    }

    fn diagnose(&self) -> Draft {
        // F1: TCP connect.
        if let Some(Err((failure, at))) = &self.connect {
            let (cause, what) = match failure {
                ConnectFailure::Refused => ("tcp.connect_refused", "connection refused".to_owned()),
                ConnectFailure::Timeout => (
                    "tcp.connect_timeout",
                    "no answer before the connect timeout".to_owned(),
                ),
                ConnectFailure::Other(s) => ("tcp.connect_failed", s.clone()),
            };
            let mut d = self.draft(
                cause,
                Outcome::Failed,
                format!("TCP connect to the host failed: {what}"),
            );
            d.evidence.push(ev(None, None, *at, "connect", what));
            return d;
        }
        if self.phase >= Phase::Active {
            return self.healthy();
        }
        // The host answered the CR with bytes that never became a Connection Confirm (a TPKT
        // header claiming more than ever came, corpus modbus-p502): not an RDP listener. Do not
        // wait for the missing bytes as if they were coming.
        if self.cr.is_some()
            && self.cc.is_none()
            && self.streams.host.pending() > 0
            && (self.stall.is_some() || !self.closes.is_empty())
        {
            let s = &self.streams.host;
            let mut d = self.draft("x224.not_rdp", Outcome::Failed, format!("the host answered the Connection Request with {} byte(s) that never became an X.224 Connection Confirm: not an RDP listener", s.pending()));
            d.evidence.push(ev(
                Some(Direction::HostToClient),
                Some(s.position()),
                self.last_bytes.host.unwrap_or_default(),
                "X.224 Connection Confirm",
                format!(
                    "incomplete: {} byte(s) starting {:02x?}",
                    s.pending(),
                    s.peek()
                ),
            ));
            return d;
        }
        if let Some((phase, idle, _, waiting)) = &self.stall {
            let who = waiting
                .map(|s| format!(" waiting for the {}", s.name()))
                .unwrap_or_default();
            return self.draft(
                "stall",
                Outcome::Failed,
                format!(
                    "no progress for {:.1} s in phase {}{}",
                    idle.as_secs_f64(),
                    phase.title(),
                    who
                ),
            );
        }
        if let Some(d) = self.diagnose_malformed() {
            return d;
        }
        let Some((cr_off, cr_at, cr)) = &self.cr else {
            return self.before_request();
        };
        let Some((cc_off, cc_at, cc)) = &self.cc else {
            return self.no_confirm(*cr_off, *cr_at, cr);
        };
        let mut base = vec![ev(
            Some(Direction::ClientToHost),
            Some(cr_off + cr.neg_req.as_ref().map_or(0, |n| n.requested_offset as u64)),
            *cr_at,
            "RDP_NEG_REQ.requestedProtocols",
            cr.neg_req.as_ref().map_or(
                "absent (legacy request: Standard RDP Security)".to_owned(),
                |n| n.requested.to_string(),
            ),
        )];
        match &cc.neg {
            Some(NegData::Failure { code, code_offset }) => {
                base.push(ev(
                    Some(Direction::HostToClient),
                    Some(cc_off + *code_offset as u64),
                    *cc_at,
                    "RDP_NEG_FAILURE.failureCode",
                    code.to_string(),
                ));
                let mut d = self.neg_failure(*code, cr);
                d.evidence.splice(0..0, base);
                return d;
            }
            Some(NegData::Response {
                selected,
                selected_offset,
                ..
            }) => {
                base.push(ev(
                    Some(Direction::HostToClient),
                    Some(cc_off + *selected_offset as u64),
                    *cc_at,
                    "RDP_NEG_RSP.selectedProtocol",
                    selected.to_string(),
                ));
            }
            None => base.push(ev(
                Some(Direction::HostToClient),
                Some(*cc_off),
                *cc_at,
                "X.224 Connection Confirm",
                "no negotiation data (legacy: Standard RDP Security)",
            )),
        }
        let selected = self.selected.unwrap_or(Protocols::RDP);
        let mut d = if selected.uses_tls() && self.term.is_some() {
            self.after_confirm_terminated(selected)
        } else if selected.uses_tls() {
            self.after_confirm_tls(cr, selected)
        } else {
            self.after_confirm_rdp(cr)
        };
        d.evidence.splice(0..0, base);
        d
    }

    fn healthy(&self) -> Draft {
        let mut d = self.draft(
            "healthy",
            Outcome::Healthy,
            "the connection reached the active session".to_owned(),
        );
        if let Some(mismatch) = self.encryption_problem() {
            d.notes.push(format!(
                "Standard RDP Security: {mismatch} (this client accepted it; mstsc may not)"
            ));
        }
        if self.selected.is_some_and(Protocols::uses_tls) && self.term.is_none() {
            d.inferred = true;
            d.summary = "the connection went past the MCS exchange into the session (healthy as far as visible through TLS)".to_owned();
        }
        d
    }

    fn diagnose_malformed(&self) -> Option<Draft> {
        let (dir, _, _, err) = self.malformed.as_ref()?;
        // Garbage after the connection is decided is not what broke it.
        if self.phase >= Phase::Mcs || self.tls.done {
            return None;
        }
        let not_rdp = (self.cr.is_none() && *dir == Direction::ClientToHost)
            || (self.cc.is_none()
                && *dir == Direction::HostToClient
                && err.field.starts_with("TPKT"));
        let (cause, summary) = if not_rdp || (err.field.starts_with("TLS") && self.cc.is_none()) {
            (
                "x224.not_rdp",
                format!("the {} does not speak RDP: {err}", dir.sender().name()),
            )
        } else if err.field.starts_with("TLS") || self.cc.is_some() {
            (
                "tls.closed_during_handshake",
                format!(
                    "the {} sent bytes that are not valid TLS: {err}",
                    dir.sender().name()
                ),
            )
        } else {
            (
                "x224.malformed",
                format!("malformed PDU from the {}: {err}", dir.sender().name()),
            )
        };
        let mut d = self.draft(cause, Outcome::Failed, summary);
        for (dir, offset, at, err) in &self.malformed_all {
            d.evidence.push(ev(
                Some(*dir),
                Some(*offset),
                *at,
                err.field,
                format!("expected {}, found {}", err.expected, err.found),
            ));
        }
        Some(d)
    }

    fn before_request(&self) -> Draft {
        let c = &self.streams.client;
        if c.pending() > 0 {
            // Part of a PDU arrived and the connection ended or is still waiting.
            let mut d = self.draft(
                "x224.client_closed_before_request",
                Outcome::Failed,
                format!(
                    "the client sent {} byte(s) but no complete Connection Request",
                    c.pending()
                ),
            );
            if c.peek() != Some(tpkt::VERSION) {
                d.cause = "x224.not_rdp";
                d.summary =
                    "the client's first bytes are not an X.224 Connection Request".to_owned();
            }
            return d;
        }
        match self.first_close() {
            Some((Side::Host, _, _)) => self.draft(
                "x224.host_closed_after_request",
                Outcome::Failed,
                "the host closed before the client sent anything".to_owned(),
            ),
            Some(_) => self.draft(
                "x224.client_closed_before_request",
                Outcome::Failed,
                "the client closed without sending a Connection Request".to_owned(),
            ),
            None => self.draft(
                "closed_early",
                Outcome::Unknown,
                "no Connection Request seen yet".to_owned(),
            ),
        }
    }

    fn no_confirm(&self, _cr_off: u64, cr_at: Micros, cr: &ConnectionRequest) -> Draft {
        let s = &self.streams.host;
        let mut d = match self.first_close() {
            Some((Side::Host, kind, at)) => {
                let mut d = self.draft(
                    "x224.host_closed_after_request",
                    Outcome::Failed,
                    format!("the host closed ({}) {:.0} ms after the Connection Request, without a Connection Confirm", kind.name().to_uppercase(), at.saturating_sub(cr_at).as_secs_f64() * 1000.0),
                );
                if s.pending() > 0 {
                    d.cause = "x224.not_rdp";
                    d.summary = format!(
                        "the host answered with {} byte(s) that are not a whole X.224 Connection Confirm, then closed: not an RDP listener",
                        s.pending()
                    );
                }
                d
            }
            Some((Side::Client, _, at)) => {
                let waited = at.saturating_sub(cr_at);
                if waited >= self.cfg.answer_wait {
                    self.draft("stall", Outcome::Failed, format!("the host did not answer the Connection Request; the client gave up after {:.1} s", waited.as_secs_f64()))
                } else {
                    self.draft(
                        "closed_early",
                        Outcome::Failed,
                        "the client closed before the host answered the Connection Request"
                            .to_owned(),
                    )
                }
            }
            _ => self.draft(
                "closed_early",
                Outcome::Unknown,
                "waiting for the host's Connection Confirm".to_owned(),
            ),
        };
        d.evidence.push(ev(
            Some(Direction::ClientToHost),
            Some(0),
            cr_at,
            "X.224 Connection Request",
            format!(
                "requestedProtocols {}{}",
                cr.requested(),
                cr.cookie
                    .as_ref()
                    .map(|c| format!(", cookie {c}"))
                    .unwrap_or_default()
            ),
        ));
        d
    }

    fn neg_failure(&self, code: FailureCode, cr: &ConnectionRequest) -> Draft {
        let cause = match code {
            FailureCode::SSL_REQUIRED_BY_SERVER => "nego.ssl_required_by_server",
            FailureCode::SSL_NOT_ALLOWED_BY_SERVER => "nego.ssl_not_allowed_by_server",
            FailureCode::SSL_CERT_NOT_ON_SERVER => "nego.ssl_cert_not_on_server",
            FailureCode::INCONSISTENT_FLAGS => "nego.inconsistent_flags",
            FailureCode::HYBRID_REQUIRED_BY_SERVER => "nego.hybrid_required_by_server",
            FailureCode::SSL_WITH_USER_AUTH_REQUIRED_BY_SERVER => {
                "nego.ssl_with_user_auth_required_by_server"
            }
            _ => "nego.unknown_failure",
        };
        self.draft(
            cause,
            Outcome::Failed,
            format!(
                "the host refused the negotiation with {code} (the client requested {})",
                cr.requested()
            ),
        )
    }

    /// Standard RDP Security was selected: everything is clear.
    fn after_confirm_rdp(&self, cr: &ConnectionRequest) -> Draft {
        let requested = cr.requested();
        let Some((ci_off, ci_at, ci)) = &self.mcs.initial else {
            return match self.first_close() {
                Some((Side::Client, _, _)) => {
                    let mut d = self.draft("nego.client_refused_selected_protocol", Outcome::Failed, format!("the host selected Standard RDP Security and the client closed instead of continuing (it requested {requested})"));
                    if requested.uses_tls() {
                        d.notes.push(
                            "the host chose a protocol the client did not ask for".to_owned(),
                        );
                    }
                    d
                }
                Some((Side::Host, _, _)) => self.draft(
                    "closed_early",
                    Outcome::Failed,
                    "the host closed after its Connection Confirm".to_owned(),
                ),
                _ => self.draft(
                    "closed_early",
                    Outcome::Unknown,
                    "waiting for the MCS Connect-Initial".to_owned(),
                ),
            };
        };
        let mut evidence = Vec::new();
        if let Some(sec) = &ci.client_security {
            evidence.push(ev(
                Some(Direction::ClientToHost),
                Some(*ci_off),
                *ci_at,
                "CS_SECURITY.encryptionMethods",
                sec.encryption_methods.names(),
            ));
        }
        let Some((_, rs_at, _)) = &self.mcs.response else {
            let mut d = match self.first_close() {
                Some((Side::Host, _, _)) => self.draft("rdp_security.encryption_mismatch", Outcome::Failed, "the host closed after the MCS Connect-Initial without a Connect-Response: it accepts none of the client's encryption methods".to_owned()),
                Some(_) => self.draft("closed_early", Outcome::Failed, "the connection ended before the MCS Connect-Response".to_owned()),
                None => self.draft("closed_early", Outcome::Unknown, "waiting for the MCS Connect-Response".to_owned()),
            };
            d.inferred = d.cause == "rdp_security.encryption_mismatch";
            d.evidence = evidence;
            return d;
        };
        if let Some(problem) = self.encryption_problem() {
            let mut d = self.draft(
                "rdp_security.encryption_mismatch",
                Outcome::Failed,
                format!("Standard RDP Security: {problem}"),
            );
            d.evidence = evidence;
            if let Some(sec) = self
                .mcs
                .response
                .as_ref()
                .and_then(|r| r.2.server_security.as_ref())
            {
                d.evidence.push(ev(
                    Some(Direction::HostToClient),
                    self.mcs.response.as_ref().map(|r| r.0),
                    *rs_at,
                    "SC_SECURITY.encryptionMethod/encryptionLevel",
                    format!(
                        "{} / {}",
                        sec.encryption_method.names(),
                        sec.encryption_level
                    ),
                ));
            }
            return d;
        }
        if let Some((dir, off, at, reason)) = self.mcs.disconnect {
            let mut d = self.draft(
                "mcs.host_disconnected",
                Outcome::Failed,
                format!(
                    "the {} sent an MCS Disconnect-Provider-Ultimatum ({}) during the {}",
                    dir.sender().name(),
                    mcs::dpu_reason_name(reason),
                    self.phase.title()
                ),
            );
            d.evidence = evidence;
            d.evidence.push(ev(
                Some(dir),
                Some(off),
                at,
                "MCS Disconnect-Provider-Ultimatum.reason",
                mcs::dpu_reason_name(reason),
            ));
            return d;
        }
        let mut d = match self.first_close() {
            Some((Side::Host, _, _)) => self.draft(
                "mcs.host_disconnected",
                Outcome::Failed,
                format!("the host closed during the {}", self.phase.title()),
            ),
            Some(_) => self.draft(
                "closed_early",
                Outcome::Failed,
                format!("the client closed during the {}", self.phase.title()),
            ),
            None => self.draft(
                "closed_early",
                Outcome::Unknown,
                format!("in progress: {}", self.phase.title()),
            ),
        };
        d.evidence = evidence;
        d
    }

    /// Standard RDP Security rules (MS-RDPBCGR 5.3.2.1, reference §3.11 / F10).
    fn encryption_problem(&self) -> Option<String> {
        let server = self.mcs.response.as_ref()?.2.server_security.as_ref()?;
        let (method, level) = (server.encryption_method.0, server.encryption_level.0);
        let offered = self
            .mcs
            .initial
            .as_ref()
            .and_then(|i| i.2.client_security.as_ref())
            .map(|s| s.encryption_methods.0 | s.ext_encryption_methods);
        if (method == 0) != (level == 0) {
            return Some(format!(
                "inconsistent: encryptionMethod {} with encryptionLevel {}",
                server.encryption_method.names(),
                server.encryption_level
            ));
        }
        if method == 0 {
            return Some("the host chose no encryption at all (method and level NONE)".to_owned());
        }
        match offered {
            Some(o) if o & method == 0 => Some(format!(
                "the host chose encryptionMethod {} which the client did not offer ({})",
                server.encryption_method.names(),
                crate::wire::gcc::EncryptionMethods(o).names()
            )),
            _ => None,
        }
    }

    /// TLS (SSL / HYBRID / HYBRID_EX / RDSTLS) was selected.
    fn after_confirm_tls(&self, cr: &ConnectionRequest, selected: Protocols) -> Draft {
        let requested = cr.requested();
        let Some((ch_off, ch_at)) = self.tls.client_hello_at else {
            // No ClientHello: the client did not go on with TLS.
            return match self.first_close() {
                Some((Side::Client, _, _)) => {
                    let mut d = self.draft("nego.client_refused_selected_protocol", Outcome::Failed, format!("the host selected {selected} and the client closed instead of starting TLS (it requested {requested})"));
                    if !requested.contains(selected) {
                        d.notes.push(format!(
                            "the host selected {selected}, which the client did not request"
                        ));
                    }
                    d
                }
                Some((Side::Host, _, _)) => {
                    if let Some((_, off, at, reason)) = self.mcs.disconnect {
                        let mut d = self.draft("closed_early", Outcome::Failed, "the host sent an MCS Disconnect-Provider-Ultimatum after its Connection Confirm".to_owned());
                        d.evidence.push(ev(
                            Some(Direction::HostToClient),
                            Some(off),
                            at,
                            "MCS Disconnect-Provider-Ultimatum.reason",
                            mcs::dpu_reason_name(reason),
                        ));
                        return d;
                    }
                    self.draft("closed_early", Outcome::Failed, "the host closed after its Connection Confirm, before the client started TLS".to_owned())
                }
                _ => self.draft(
                    "closed_early",
                    Outcome::Unknown,
                    "waiting for the client's TLS ClientHello".to_owned(),
                ),
            };
        };
        let hello = self.tls.client_hello.as_ref();
        let mut base = vec![ev(
            Some(Direction::ClientToHost),
            Some(ch_off),
            ch_at,
            "TLS ClientHello",
            hello
                .map(|h| {
                    format!(
                        "offers {}, {} cipher suite(s)",
                        h.offered_versions()
                            .into_iter()
                            .map(tls::version_name)
                            .collect::<Vec<_>>()
                            .join(", "),
                        h.cipher_suites.len()
                    )
                })
                .unwrap_or_default(),
        )];
        if let (Some(sh), Some((off, at))) = (&self.tls.server_hello, self.tls.server_hello_at) {
            base.push(ev(
                Some(Direction::HostToClient),
                Some(off),
                at,
                "TLS ServerHello",
                format!(
                    "selected {} {}",
                    tls::version_name(sh.version()),
                    tls::cipher_suite_name(sh.cipher_suite)
                ),
            ));
        }
        let mut d = if self.tls.done {
            self.after_tls(selected)
        } else {
            self.during_tls()
        };
        d.evidence.splice(0..0, base);
        d
    }

    fn during_tls(&self) -> Draft {
        // A clear (or inferred) alert decides first.
        if let Some(a) = self.alerts.iter().find(|a| a.before_done) {
            return self.alert_verdict(a);
        }
        let server_spoke = self.tls.server_hello.is_some();
        // A plain-text MCS Disconnect-Provider-Ultimatum where the ServerHello belongs (xrdp
        // with an unusable key) is the host aborting, whoever's TCP close came first.
        let host_dpu = self
            .mcs
            .disconnect
            .filter(|d| d.0 == Direction::HostToClient);
        let first = match (host_dpu, self.first_close()) {
            (Some((_, _, at, _)), _) if !server_spoke => {
                Some((Side::Host, self.closer().1.unwrap_or(CloseKind::Fin), at))
            }
            (_, c) => c,
        };
        match first {
            Some((Side::Host, kind, at)) if !server_spoke => {
                let mut d = self.draft("tls.host_aborted_handshake", Outcome::Failed, format!("the host ended the connection ({}) right after the ClientHello, without a ServerHello: it cannot use its certificate or private key (or has no TLS version in common)", kind.name().to_uppercase()));
                if let Some((dir, off, at2, reason)) = self.mcs.disconnect {
                    d.evidence.push(ev(Some(dir), Some(off), at2, "MCS Disconnect-Provider-Ultimatum (plain text where a ServerHello belongs)", mcs::dpu_reason_name(reason)));
                }
                if let Some((_, ch_at)) = self.tls.client_hello_at {
                    d.notes.push(format!(
                        "the host reacted {:.0} ms after the ClientHello",
                        at.saturating_sub(ch_at).as_secs_f64() * 1000.0
                    ));
                }
                d
            }
            Some((Side::Client, kind, at)) if self.tls.server_flight_done => {
                let mut d = self.cert_rejected(format!("the client ended the connection ({}) after the host's certificate, before finishing the TLS handshake", kind.name().to_uppercase()));
                d.inferred = self.tls.chain.is_empty();
                let _ = at;
                d
            }
            Some((Side::Client, _, at))
                if !server_spoke
                    && self
                        .tls
                        .client_hello_at
                        .is_some_and(|(_, ch)| at.saturating_sub(ch) >= self.cfg.answer_wait) =>
            {
                let waited = self
                    .tls
                    .client_hello_at
                    .map_or(Micros::ZERO, |(_, ch)| at.saturating_sub(ch));
                self.draft("stall", Outcome::Failed, format!("the host did not answer the TLS ClientHello; the client gave up after {:.1} s (a PMTU black hole or a stuck middlebox drops the host's flight; a hung TLS stack)", waited.as_secs_f64()))
            }
            Some((side, kind, _)) => self.draft(
                "tls.closed_during_handshake",
                Outcome::Failed,
                format!(
                    "the {} closed ({}) in the middle of the TLS handshake",
                    side.name(),
                    kind.name().to_uppercase()
                ),
            ),
            None => {
                if let (Some((_, ch_at)), false) = (self.tls.client_hello_at, server_spoke) {
                    return self.draft(
                        "closed_early",
                        Outcome::Unknown,
                        format!(
                            "waiting for the host's ServerHello since {:.1} s",
                            ch_at.as_secs_f64()
                        ),
                    );
                }
                self.draft(
                    "closed_early",
                    Outcome::Unknown,
                    "TLS handshake in progress".to_owned(),
                )
            }
        }
    }

    fn alert_verdict(&self, a: &AlertSeen) -> Draft {
        let from = a.dir.sender();
        let Some(desc) = a.description else {
            // An encrypted alert before the handshake finished: TLS 1.3 client after the server flight.
            let mut d = self.cert_rejected(format!("the {} sent an encrypted alert right after the host's (encrypted) certificate flight and closed", from.name()));
            d.inferred = true;
            d.evidence.push(ev(
                Some(a.dir),
                Some(a.offset),
                a.at,
                "TLS record",
                "19-byte encrypted record where the Finished belongs: an alert (inferred)",
            ));
            return d;
        };
        let name = tls::alert_name(desc);
        let legacy_selected = self
            .tls
            .server_hello
            .as_ref()
            .is_some_and(|h| h.version() <= 0x0302);
        let narrow_offer = self
            .tls
            .client_hello
            .as_ref()
            .is_some_and(|h| h.cipher_suites.len() <= 4);
        let cause = match (from, desc) {
            (_, 70) => "tls.no_common_version",
            (Side::Client, 80) if legacy_selected => "tls.no_common_version",
            (_, 40 | 71) if from == Side::Client || narrow_offer => "tls.no_common_cipher",
            (Side::Client, 42..=46 | 48) => "tls.client_rejected_certificate",
            (Side::Client, _) => "tls.alert_from_client",
            _ => "tls.alert_from_host",
        };
        let mut d = if cause == "tls.client_rejected_certificate" {
            self.cert_rejected(format!(
                "the client rejected the host's certificate with alert {name}"
            ))
        } else {
            self.draft(
                cause,
                Outcome::Failed,
                format!(
                    "the {} sent a fatal TLS alert {name} ({desc}){}",
                    from.name(),
                    if legacy_selected && desc == 80 {
                        " after the host selected a legacy TLS version"
                    } else {
                        ""
                    }
                ),
            )
        };
        d.evidence.push(ev(
            Some(a.dir),
            Some(a.offset),
            a.at,
            "TLS Alert.description",
            format!("{name} ({desc})"),
        ));
        d
    }

    fn cert_rejected(&self, summary: String) -> Draft {
        let mut d = self.draft("tls.client_rejected_certificate", Outcome::Failed, summary);
        if let Some(leaf) = self.tls.chain.first() {
            let problems = self.cert_problems();
            d.evidence.push(ev(
                Some(Direction::HostToClient),
                self.tls.chain_at.map(|c| c.0),
                self.tls.chain_at.map_or(Micros::ZERO, |c| c.1),
                "TLS Certificate (leaf)",
                leaf.one_line(),
            ));
            if problems.is_empty() {
                d.notes.push("the certificate shows none of the problems a Windows client checks locally: it is probably not trusted by the client (self-signed or unknown CA)".to_owned());
            }
        } else {
            d.inferred = true;
            d.notes.push("the certificate was not visible (TLS 1.3 encrypts it): inferred from the record sequence; run rdpdiag probe HOST or --fresh-cert to read it".to_owned());
        }
        d
    }

    fn cert_problems(&self) -> Vec<String> {
        let (Some(leaf), Some(now)) = (self.tls.chain.first(), self.cfg.now_unix) else {
            return Vec::new();
        };
        x509::problems(leaf, now, self.cfg.host_name.as_deref())
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    /// After the TLS handshake: record accounting.
    /// After MCS started (or with nothing more specific to say): who closed, in which phase.
    fn closed_in_phase(&self, closer: Option<(Side, CloseKind, Micros)>) -> Draft {
        match closer {
            Some((Side::Host, kind, _)) => self.draft(
                "mcs.host_disconnected",
                Outcome::Failed,
                format!(
                    "the host closed ({}) during the {}",
                    kind.name().to_uppercase(),
                    self.phase.title()
                ),
            ),
            Some((side, kind, _)) => self.draft(
                "closed_early",
                Outcome::Failed,
                format!(
                    "the {} closed ({}) during the {}",
                    side.name(),
                    kind.name().to_uppercase(),
                    self.phase.title()
                ),
            ),
            None => self.draft(
                "closed_early",
                Outcome::Unknown,
                format!("in progress: {}", self.phase.title()),
            ),
        }
    }

    fn after_tls(&self, selected: Protocols) -> Draft {
        let PerDir { client: c, host: s } = self.tls.app_records;
        let closer = self.first_close();
        if c == 0 {
            return match closer {
                Some((Side::Client, kind, _)) => {
                    let mut d = self.cert_rejected(format!("the client completed the TLS handshake and closed ({}) before sending any data: it refused the host's certificate", kind.name().to_uppercase()));
                    d.inferred = true;
                    d
                }
                Some((Side::Host, _, _)) => self.draft(if selected.uses_credssp() { "credssp.failed" } else { "closed_early" }, Outcome::Failed, "the host closed right after the TLS handshake, before the client sent anything".to_owned()),
                _ => self.draft("closed_early", Outcome::Unknown, "TLS established, waiting for the client".to_owned()),
            };
        }
        let eua = self.roles.iter().find(|r| r.1 == Role::EarlyAuth);
        let mcs_started = self.roles.iter().any(|r| r.1 == Role::ConnectInitial);
        if selected.uses_credssp() && !mcs_started {
            let position = self.credssp_position();
            if let (Some(&(dir, _, off, len, at)), Some((Side::Host, _, _))) = (eua, closer) {
                let mut d = self.draft("early_auth.denied", Outcome::Failed, "after CredSSP the host sent the 4-byte Early User Authorization result and closed: the user authenticated but is not authorized to log on remotely".to_owned());
                d.inferred = true;
                d.evidence.push(ev(
                    Some(dir),
                    Some(off),
                    at,
                    "Early User Authorization Result (inferred from size)",
                    format!(
                        "{len}-byte record ≈ {} plaintext bytes",
                        self.plaintext_estimate(len)
                    ),
                ));
                return d;
            }
            return match closer {
                Some((side, kind, _)) => {
                    let mut d = self.draft(
                        "credssp.failed",
                        Outcome::Failed,
                        format!(
                            "the {} closed ({}) during CredSSP {position}",
                            side.name(),
                            kind.name().to_uppercase()
                        ),
                    );
                    d.inferred = true;
                    d.notes.push(self.credssp_reading(side));
                    d
                }
                None => self.draft(
                    "closed_early",
                    Outcome::Unknown,
                    format!("CredSSP in progress {position}"),
                ),
            };
        }
        let _ = s;
        self.closed_in_phase(closer)
    }

    fn credssp_position(&self) -> String {
        let last = self.roles.iter().rev().find(|r| {
            matches!(
                r.1,
                Role::CredsspClient(_) | Role::CredsspServer(_) | Role::EarlyAuth
            )
        });
        match last {
            Some((_, role, _, len, _)) => format!("after {} ({len}-byte record)", role.label()),
            None => "before the first TSRequest".to_owned(),
        }
    }

    /// Reference §2.8.7 interpretation rules.
    fn credssp_reading(&self, closer: Side) -> String {
        let last = self
            .roles
            .iter()
            .rev()
            .find(|r| matches!(r.1, Role::CredsspClient(_) | Role::CredsspServer(_)));
        match (closer, last.map(|r| r.1)) {
            (Side::Host, Some(Role::CredsspClient(2))) => "the host closed right after the client's NTLM AUTHENTICATE (C2): credentials or account refused (wrong password, unknown user, locked/expired account); the errorCode, if any, is inside TLS".to_owned(),
            (Side::Host, Some(Role::CredsspServer(2))) => "the host answered the credentials with a short TSRequest and closed: an errorCode (credential / account problem)".to_owned(),
            (Side::Host, Some(Role::CredsspClient(1))) => "the host closed after the client's first TSRequest: it refuses the mechanism (e.g. NTLM restricted) or the CredSSP version".to_owned(),
            (Side::Client, Some(Role::CredsspServer(1))) => "the client closed after the host's NTLM CHALLENGE: CredSSP version / encryption-oracle policy, or a mechanism the client will not use".to_owned(),
            (Side::Client, Some(Role::CredsspServer(2))) => "the client closed after the host's pubKeyAuth: it could not verify the server binding (TLS interception in the path?) or its delegation policy refused".to_owned(),
            _ => "record sizes and the closing side are all that is visible through TLS".to_owned(),
        }
    }

    fn facts(&self, mut notes: Vec<String>) -> Facts {
        let mut f = Facts::default();
        if let Some((_, _, cr)) = &self.cr {
            f.cookie = cr.cookie.clone();
            f.requested_protocols = Some(cr.requested().to_string());
            notes.extend(cr.anomalies.iter().cloned());
        }
        if let Some((_, _, cc)) = &self.cc {
            match &cc.neg {
                Some(NegData::Response { selected, .. }) => {
                    f.selected_protocol = Some(selected.to_string())
                }
                Some(NegData::Failure { code, .. }) => f.neg_failure = Some(code.to_string()),
                None => f.selected_protocol = Some("RDP (legacy Connection Confirm)".to_owned()),
            }
            notes.extend(cc.anomalies.iter().cloned());
        }
        if let Some(h) = &self.tls.client_hello {
            f.client_tls_versions = Some(
                h.offered_versions()
                    .into_iter()
                    .map(tls::version_name)
                    .collect::<Vec<_>>()
                    .join(", "),
            );
            f.sni = h.sni.clone();
        }
        if let Some(h) = &self.tls.server_hello {
            f.tls_version = Some(tls::version_name(h.version()));
            f.tls_cipher = Some(tls::cipher_suite_name(h.cipher_suite));
        }
        if let Some(t) = &self.term {
            t.facts(&mut f);
        }
        f.certificate = self.tls.chain.iter().map(CertSummary::one_line).collect();
        f.certificate_problems = self.cert_problems();
        if let Some(core) = self
            .mcs
            .initial
            .as_ref()
            .and_then(|i| i.2.client_core.as_ref())
        {
            f.client_name = Some(core.client_name.clone());
            f.client_build = Some(core.client_build.to_string());
        }
        if let Some(sec) = self
            .mcs
            .response
            .as_ref()
            .and_then(|r| r.2.server_security.as_ref())
        {
            f.encryption = Some(format!(
                "{} / level {}",
                sec.encryption_method.names(),
                sec.encryption_level
            ));
        }
        if self.tls.done {
            f.app_records = Some((self.tls.app_records.client, self.tls.app_records.host));
        }
        f.anomalies = notes;
        f
    }
}
