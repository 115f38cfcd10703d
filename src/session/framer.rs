//! Per-direction framing: splits one direction's byte stream into TPKT PDUs or TLS records,
//! whichever the bytes at the current position are. The machine tells it nothing but a cap:
//! RDP streams switch between TPKT and TLS, and the first byte says which (reference §1.3).

use crate::wire::tls::{self, RecordHeader};
use crate::wire::{DecodeError, tpkt};

/// One framed unit, with its offset in the direction's stream.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Unit {
    /// A whole TPKT PDU (header included).
    Tpkt(Vec<u8>),
    /// A whole TLS record.
    Record(RecordHeader, Vec<u8>),
    /// Bytes that are neither; the direction is not framed any further.
    Garbage(DecodeError, Vec<u8>),
}

/// The framing state of one direction.
#[derive(Debug, Default)]
pub(crate) struct Stream {
    /// Bytes not yet framed.
    buf: Vec<u8>,
    /// Stream offset of `buf[0]`.
    base: u64,
    /// Bytes seen in total.
    pub(crate) total: u64,
    /// Stop framing (garbage seen, or cap exceeded): only count bytes.
    pub(crate) opaque: bool,
}

impl Stream {
    /// Appends bytes; returns false (and goes opaque) when the pending bytes exceed `cap`.
    pub(crate) fn push(&mut self, bytes: &[u8], cap: usize) -> bool {
        self.total = self.total.saturating_add(bytes.len() as u64);
        if self.opaque {
            self.base = self.total;
            return true;
        }
        if self.buf.len().saturating_add(bytes.len()) > cap {
            self.go_opaque();
            return false;
        }
        self.buf.extend_from_slice(bytes);
        true
    }

    pub(crate) fn go_opaque(&mut self) {
        self.opaque = true;
        self.buf = Vec::new();
        self.base = self.total;
    }

    /// Bytes received but not yet a whole unit.
    pub(crate) fn pending(&self) -> usize {
        self.buf.len()
    }

    /// Offset of the next unframed byte.
    pub(crate) fn position(&self) -> u64 {
        self.base
    }

    /// The first pending byte, if any.
    pub(crate) fn peek(&self) -> Option<u8> {
        self.buf.first().copied()
    }

    /// Frames the next unit: `None` when more bytes are needed (or the stream is opaque).
    pub(crate) fn next_unit(&mut self) -> Option<(u64, Unit)> {
        if self.opaque {
            return None;
        }
        let first = *self.buf.first()?;
        let framed = if first == tpkt::VERSION {
            tpkt::split_pdu(&self.buf).map(|o| o.map(|p| (p.len(), Unit::Tpkt(p.to_vec()))))
        } else {
            tls::split_record(&self.buf).map(|o| {
                o.map(|(h, payload)| {
                    let len = tls::RECORD_HEADER_LEN + payload.len();
                    (len, Unit::Record(h, payload.to_vec()))
                })
            })
        };
        let offset = self.base;
        match framed {
            Ok(None) => None,
            Ok(Some((len, unit))) => {
                self.buf.drain(..len.min(self.buf.len()));
                self.base = self.base.saturating_add(len as u64);
                Some((offset, unit))
            }
            Err(e) => {
                let sample: Vec<u8> = self.buf.iter().take(16).copied().collect();
                self.go_opaque();
                Some((offset, Unit::Garbage(e.shifted(0), sample)))
            }
        }
    }
}
