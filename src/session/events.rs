//! The event stream: what the framers decoded, in order, with time, direction and offset.

use serde::Serialize;

use super::{CloseKind, ConnectFailure, Direction, Micros, Phase, Side};
use crate::wire::DecodeError;
use crate::wire::mcs::McsPdu;
use crate::wire::tls::{ClientHello, ServerHello};
use crate::wire::x224::{ConnectionConfirm, ConnectionRequest};
use crate::wire::x509::CertSummary;

/// One decoded event.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Event {
    pub at: Micros,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dir: Option<Direction>,
    /// Offset of the PDU / record in its direction's stream.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
    /// The phase the connection was in when the event happened.
    pub phase: Phase,
    #[serde(flatten)]
    pub kind: EventKind,
}

/// What happened. The large payloads are boxed: a connection keeps its events until its report
/// is written, and an event sized by its largest variant (a ClientHello) made each one 336
/// bytes; boxed, 88 (what an idle relayed connection costs, `benches/relay.rs`).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum EventKind {
    /// The proxy's TCP connection to the host is up.
    TcpConnected,
    /// The TCP connection to the host failed.
    ConnectFailed {
        failure: ConnectFailure,
    },
    ConnectionRequest {
        pdu: Box<ConnectionRequest>,
        len: usize,
    },
    ConnectionConfirm {
        pdu: ConnectionConfirm,
        len: usize,
    },
    /// The phase changed.
    Phase {
        from: Phase,
        to: Phase,
    },
    TlsClientHello {
        hello: Box<ClientHello>,
        versions: Vec<String>,
    },
    TlsServerHello {
        hello: Box<ServerHello>,
        version: String,
        cipher: String,
    },
    TlsCertificate {
        chain: Vec<CertSummary>,
    },
    /// Another clear handshake message.
    TlsHandshake {
        message: &'static str,
    },
    TlsChangeCipherSpec,
    /// A clear TLS alert.
    TlsAlert {
        level: u8,
        description: u8,
        name: &'static str,
    },
    /// A record that is (or is inferred to be) an encrypted alert.
    TlsEncryptedAlert {
        len: u16,
        inferred: bool,
    },
    /// Both sides finished the TLS handshake.
    TlsHandshakeDone,
    /// An encrypted record: `index` counts application records of that direction after the
    /// handshake (0 for encrypted handshake records); `role` is what it is inferred to carry.
    TlsRecord {
        content_type: u8,
        len: u16,
        index: u32,
        role: Option<String>,
    },
    /// A clear MCS PDU (Standard RDP Security, or a plain-text PDU where TLS was expected).
    Mcs {
        pdu: Box<McsPdu>,
    },
    /// Bytes that do not decode; the stream is not inspected any further in that direction.
    Malformed {
        error: Box<DecodeError>,
    },
    /// A side closed its sending direction (or the connection was reset).
    Closed {
        side: Side,
        kind: CloseKind,
    },
    /// No progress for too long.
    Stalled {
        idle: Micros,
    },
    /// A free-form note (inference, anomaly).
    Note {
        text: String,
    },
}

#[cfg(test)]
mod tests {
    /// Every connection keeps its events until its report is written: an event must stay
    /// small whatever its payload (the big ones are boxed).
    #[test]
    fn events_stay_small() {
        let size = std::mem::size_of::<super::Event>();
        assert!(size <= 112, "an Event is {size} bytes");
    }
}
