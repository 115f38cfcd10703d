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
    /// `buf[start..]`: bytes not yet framed. Framed units are skipped over, not drained one by
    /// one (a 64 KiB read of 5-byte records would move the buffer 13,000 times).
    buf: Vec<u8>,
    start: usize,
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
        if self.pending().saturating_add(bytes.len()) > cap {
            self.go_opaque();
            return false;
        }
        self.buf.drain(..self.start.min(self.buf.len()));
        self.start = 0;
        self.buf.extend_from_slice(bytes);
        true
    }

    pub(crate) fn go_opaque(&mut self) {
        self.opaque = true;
        self.buf = Vec::new();
        self.start = 0;
        self.base = self.total;
    }

    /// Bytes received but not yet a whole unit.
    pub(crate) fn pending(&self) -> usize {
        self.buf.len().saturating_sub(self.start)
    }

    fn unframed(&self) -> &[u8] {
        self.buf.get(self.start..).unwrap_or_default()
    }

    /// Offset of the next unframed byte.
    pub(crate) fn position(&self) -> u64 {
        self.base
    }

    /// The first pending byte, if any.
    pub(crate) fn peek(&self) -> Option<u8> {
        self.unframed().first().copied()
    }

    /// Frames the next unit: `None` when more bytes are needed (or the stream is opaque).
    pub(crate) fn next_unit(&mut self) -> Option<(u64, Unit)> {
        if self.opaque {
            return None;
        }
        let buf = self.unframed();
        let first = *buf.first()?;
        let framed = if first == tpkt::VERSION {
            tpkt::split_pdu(buf).map(|o| o.map(|p| (p.len(), Unit::Tpkt(p.to_vec()))))
        } else {
            tls::split_record(buf).map(|o| {
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
                self.start = self.start.saturating_add(len).min(self.buf.len());
                self.base = self.base.saturating_add(len as u64);
                Some((offset, unit))
            }
            Err(e) => {
                let sample: Vec<u8> = buf.iter().take(16).copied().collect();
                self.go_opaque();
                Some((offset, Unit::Garbage(e.shifted(0), sample)))
            }
        }
    }
}
