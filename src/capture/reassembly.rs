//! TCP reassembly: segments in capture order in, each direction's byte stream out, in order.
//!
//! One [`Flow`] per TCP connection (4-tuple), two [`HalfStream`]s in it. What they handle:
//!
//! - out-of-order segments: buffered (up to a cap per direction) until the hole before them is
//!   filled;
//! - retransmissions and exact duplicates (pktmon logs a packet at several components, some
//!   traces have every packet twice): bytes already delivered are dropped, never delivered twice;
//! - overlapping data: the bytes that arrived first win (what most receivers keep); differing
//!   overlaps are counted;
//! - gaps: bytes that will never arrive because the capture missed them. A hole is given up as a
//!   [`Gap`] (offset, length) when the peer acknowledges data beyond it (the receiver got it, so
//!   nobody will retransmit it), when the buffered bytes after it exceed the cap, when the
//!   packet was cut by the snap length, or at the end; delivery then continues after it;
//! - connections without their SYN in the capture: the stream starts at the first byte seen.
//!
//! Sequence numbers are compared with 32-bit wrap-around arithmetic relative to the next
//! expected byte, so streams longer than 4 GiB keep working. Checksums are never looked at.

use std::collections::BTreeMap;

use serde::Serialize;

use super::link::TcpSegment;

/// Knobs of the reassembly.
#[derive(Debug, Clone)]
pub struct ReassemblyConfig {
    /// Most out-of-order bytes buffered per direction before the hole before them is given up.
    pub max_buffered: usize,
    /// Most gaps recorded one by one per direction (the rest are only counted).
    pub max_gaps_listed: usize,
}

impl Default for ReassemblyConfig {
    fn default() -> Self {
        Self {
            max_buffered: 1024 * 1024,
            max_gaps_listed: 64,
        }
    }
}

/// Why a hole was given up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GapReason {
    /// The peer acknowledged bytes the capture does not have.
    AckedNotCaptured,
    /// The capture's snap length cut the packet.
    Truncated,
    /// Too many bytes were waiting behind the hole.
    BufferCap,
    /// The capture or the connection ended with the hole still open.
    End,
}

/// Bytes of a stream that are not in the capture.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Gap {
    /// Stream offset of the first missing byte.
    pub offset: u64,
    pub len: u64,
    /// Capture time at which the hole was given up (ns since the epoch).
    pub at_ns: i64,
    pub reason: GapReason,
}

/// What a half stream saw, for the report.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct HalfStats {
    /// Segments with payload or FIN.
    pub segments: u64,
    /// Segments that brought no new byte (retransmissions, duplicates).
    pub retransmitted_segments: u64,
    pub retransmitted_bytes: u64,
    pub out_of_order_segments: u64,
    /// Overlapping bytes that differed from the bytes that arrived first.
    pub overlap_conflicts: u64,
    /// Segments the capture cut short (snap length).
    pub truncated_segments: u64,
    /// Bytes delivered in order.
    pub delivered_bytes: u64,
    /// Bytes never captured (sum of the gaps).
    pub missing_bytes: u64,
    /// Number of gaps (also those not listed).
    pub gaps: u64,
    /// The stream started without a SYN in the capture.
    pub started_mid_stream: bool,
}

/// What the reassembly tells its driver, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FlowEvent {
    /// A SYN without ACK from `from` (`retransmission` when one was seen already).
    Syn {
        from: usize,
        ts_ns: i64,
        retransmission: bool,
    },
    /// A SYN/ACK from `from`.
    SynAck { from: usize, ts_ns: i64 },
    /// In-order bytes of `from`'s stream, starting at stream offset `offset`.
    Data {
        from: usize,
        offset: u64,
        data: Vec<u8>,
        ts_ns: i64,
    },
    /// A hole in `from`'s stream was given up; delivery continues after it.
    Gap { from: usize, gap: Gap },
    /// `from` closed its direction (FIN), after all its bytes.
    Fin { from: usize, ts_ns: i64 },
    /// `from` reset the connection.
    Rst { from: usize, ts_ns: i64 },
}

#[derive(Debug, Clone)]
enum Piece {
    Data(Vec<u8>),
    /// Bytes known to be absent from the capture (cut by the snap length).
    Missing(u64),
    /// Bytes present but not kept (count-only mode): delivered as a count, not as data.
    Counted(u64),
}

impl Piece {
    /// Bytes of memory it holds (a missing range holds none).
    fn mem(&self) -> u64 {
        match self {
            Piece::Data(d) => d.len() as u64,
            Piece::Missing(_) | Piece::Counted(_) => 0,
        }
    }

    fn len(&self) -> u64 {
        match self {
            Piece::Data(d) => d.len() as u64,
            Piece::Missing(n) | Piece::Counted(n) => *n,
        }
    }

    /// The sub-range `[from, to)` of a piece (relative offsets), or None if out of range.
    fn part(&self, from: u64, to: u64) -> Option<Piece> {
        match self {
            Piece::Data(d) => {
                let a = usize::try_from(from).ok()?;
                let b = usize::try_from(to).ok()?;
                d.get(a..b).map(|s| Piece::Data(s.to_vec()))
            }
            Piece::Missing(n) => (to <= *n && from <= to).then(|| Piece::Missing(to - from)),
            Piece::Counted(n) => (to <= *n && from <= to).then(|| Piece::Counted(to - from)),
        }
    }
}

/// `a - b` in 32-bit sequence space, as a signed distance.
fn seq_diff(a: u32, b: u32) -> i64 {
    let d = a.wrapping_sub(b);
    if d < 0x8000_0000 {
        i64::from(d)
    } else {
        i64::from(d) - (1i64 << 32)
    }
}

/// The low 32 bits of a stream offset, for sequence arithmetic.
fn low32(v: u64) -> u32 {
    u32::try_from(v & 0xffff_ffff).unwrap_or(0)
}

/// One direction of a TCP connection.
#[derive(Debug, Clone)]
pub struct HalfStream {
    max_buffered: usize,
    max_gaps_listed: usize,
    /// Sequence number of stream offset 0.
    base: Option<u32>,
    syn_seen: bool,
    /// Next stream offset to deliver.
    next: u64,
    pending: BTreeMap<u64, Piece>,
    pending_bytes: u64,
    /// Stream offset of the FIN, once seen.
    fin: Option<u64>,
    fin_emitted: bool,
    /// Bytes of this stream the peer has acknowledged (never beyond what was delivered).
    acked: u64,
    /// Capture time of the last byte delivered.
    last_data_ns: Option<i64>,
    /// Bytes are counted, not kept or delivered (nobody reads them any more).
    count_only: bool,
    pub stats: HalfStats,
    pub gaps: Vec<Gap>,
}

impl HalfStream {
    pub fn new(cfg: &ReassemblyConfig) -> Self {
        Self {
            max_buffered: cfg.max_buffered,
            max_gaps_listed: cfg.max_gaps_listed,
            base: None,
            syn_seen: false,
            next: 0,
            pending: BTreeMap::new(),
            pending_bytes: 0,
            fin: None,
            fin_emitted: false,
            acked: 0,
            last_data_ns: None,
            count_only: false,
            stats: HalfStats::default(),
            gaps: Vec::new(),
        }
    }

    /// The initial sequence number, when the SYN was seen.
    pub fn isn(&self) -> Option<u32> {
        if self.syn_seen {
            self.base.map(|b| b.wrapping_sub(1))
        } else {
            None
        }
    }

    /// Bytes delivered so far (the next stream offset).
    pub fn delivered(&self) -> u64 {
        self.next
    }

    pub fn fin_emitted(&self) -> bool {
        self.fin_emitted
    }

    /// From now on, count this direction's bytes without keeping them: no more `Data` events
    /// (gaps, FIN and statistics go on). For connections nobody decodes any more.
    pub fn set_count_only(&mut self) {
        self.count_only = true;
    }

    /// Bytes the peer acknowledged.
    pub fn acked(&self) -> u64 {
        self.acked
    }

    /// Capture time of the last byte delivered.
    pub fn last_data_ns(&self) -> Option<i64> {
        self.last_data_ns
    }

    /// Bytes buffered out of order.
    pub fn buffered(&self) -> u64 {
        self.pending_bytes
    }

    /// A SYN from this side with sequence number `seq`.
    pub fn on_syn(&mut self, seq: u32) {
        if self.base.is_none() {
            self.base = Some(seq.wrapping_add(1));
            self.syn_seen = true;
        }
    }

    /// Stream offset of sequence number `seq` (may be negative: before the stream start).
    fn offset_of(&self, base: u32, seq: u32) -> i64 {
        let expected = base.wrapping_add(low32(self.next));
        i64::try_from(self.next)
            .unwrap_or(i64::MAX)
            .saturating_add(seq_diff(seq, expected))
    }

    /// A segment from this side: `seq` is the sequence number of its first payload byte (the
    /// segment's own, plus one on a SYN).
    pub fn on_segment(
        &mut self,
        from: usize,
        seq: u32,
        seg: &TcpSegment<'_>,
        ts_ns: i64,
        out: &mut Vec<FlowEvent>,
    ) {
        let (payload, wire_len, fin) = (seg.payload, seg.wire_len, seg.flags.fin);
        if payload.is_empty() && wire_len == 0 && !fin {
            return;
        }
        self.stats.segments = self.stats.segments.saturating_add(1);
        let base = match self.base {
            Some(b) => b,
            None => {
                // No SYN in the capture: the stream starts with the first byte seen.
                self.stats.started_mid_stream = true;
                self.base = Some(seq);
                seq
            }
        };
        let start = self.offset_of(base, seq);
        let wire = u64::from(wire_len).max(payload.len() as u64);
        let end_wire = start.saturating_add(i64::try_from(wire).unwrap_or(i64::MAX));
        if fin && self.fin.is_none() {
            self.fin = Some(u64::try_from(end_wire.max(0)).unwrap_or(0));
        }
        let next = i64::try_from(self.next).unwrap_or(i64::MAX);
        if end_wire <= next {
            if wire > 0 {
                self.stats.retransmitted_segments =
                    self.stats.retransmitted_segments.saturating_add(1);
                self.stats.retransmitted_bytes =
                    self.stats.retransmitted_bytes.saturating_add(wire);
            }
        } else {
            let captured_end =
                start.saturating_add(i64::try_from(payload.len()).unwrap_or(i64::MAX));
            let mut added = 0;
            if captured_end > start {
                let piece = if self.count_only {
                    Piece::Counted(payload.len() as u64)
                } else {
                    Piece::Data(payload.to_vec())
                };
                added += self.insert(start, piece);
            }
            if u64::from(wire_len) > payload.len() as u64 {
                self.stats.truncated_segments = self.stats.truncated_segments.saturating_add(1);
                let missing = u64::from(wire_len) - payload.len() as u64;
                added += self.insert(captured_end, Piece::Missing(missing));
            }
            if start > next && added > 0 {
                self.stats.out_of_order_segments =
                    self.stats.out_of_order_segments.saturating_add(1);
            }
        }
        self.drain(from, ts_ns, out);
        while self.pending_bytes > self.max_buffered as u64 {
            if !self.skip_to_first_pending(from, ts_ns, GapReason::BufferCap, out) {
                break;
            }
        }
    }

    /// Inserts a piece starting at stream offset `start` (may be before `next`): only the
    /// bytes not delivered and not already buffered are kept (first arrival wins). Returns how
    /// many bytes were new.
    fn insert(&mut self, start: i64, piece: Piece) -> u64 {
        let len = piece.len();
        let next = self.next;
        // Trim what was delivered already.
        let (start, piece) = if start < 0 || u64::try_from(start).unwrap_or(0) < next {
            let s = u64::try_from(start.max(0)).unwrap_or(0);
            let skip_neg = start.min(0).unsigned_abs();
            let cut = (next - s).saturating_add(skip_neg);
            if cut >= len {
                self.stats.retransmitted_segments =
                    self.stats.retransmitted_segments.saturating_add(1);
                self.stats.retransmitted_bytes = self.stats.retransmitted_bytes.saturating_add(len);
                return 0;
            }
            match piece.part(cut, len) {
                Some(p) => (next, p),
                None => return 0,
            }
        } else {
            (u64::try_from(start).unwrap_or(0), piece)
        };
        let end = start.saturating_add(piece.len());
        // Existing pieces overlapping [start, end): pieces never overlap each other, so their
        // ends are sorted like their starts.
        let mut overlapping: Vec<(u64, u64)> = self
            .pending
            .range(..end)
            .rev()
            .map(|(k, p)| (*k, k.saturating_add(p.len())))
            .take_while(|(_, e)| *e > start)
            .collect();
        overlapping.reverse();
        let mut cur = start;
        let mut new_parts: Vec<(u64, Piece)> = Vec::new();
        let mut covered: u64 = 0;
        for (k, e) in overlapping {
            if k > cur
                && let Some(p) = piece.part(cur - start, k - start)
            {
                new_parts.push((cur, p));
            }
            let (ov_a, ov_b) = (k.max(cur), e.min(end));
            if ov_b > ov_a {
                covered = covered.saturating_add(ov_b - ov_a);
                self.count_conflicts(&piece, start, k, ov_a, ov_b);
            }
            cur = cur.max(e);
        }
        if cur < end
            && let Some(p) = piece.part(cur - start, end - start)
        {
            new_parts.push((cur, p));
        }
        if covered > 0 && new_parts.is_empty() {
            self.stats.retransmitted_segments = self.stats.retransmitted_segments.saturating_add(1);
            self.stats.retransmitted_bytes = self.stats.retransmitted_bytes.saturating_add(covered);
        }
        let mut added = 0u64;
        for (k, p) in new_parts {
            added = added.saturating_add(p.len());
            self.pending_bytes = self.pending_bytes.saturating_add(p.mem());
            self.pending.insert(k, p);
        }
        added
    }

    fn count_conflicts(&mut self, new: &Piece, new_start: u64, old_key: u64, a: u64, b: u64) {
        let (Piece::Data(nd), Some(Piece::Data(od))) = (new, self.pending.get(&old_key)) else {
            return;
        };
        let range = |base: u64| -> Option<std::ops::Range<usize>> {
            Some(usize::try_from(a - base).ok()?..usize::try_from(b - base).ok()?)
        };
        let (Some(rn), Some(ro)) = (range(new_start), range(old_key)) else {
            return;
        };
        if let (Some(x), Some(y)) = (nd.get(rn), od.get(ro)) {
            let diff = x.iter().zip(y).filter(|(p, q)| p != q).count();
            self.stats.overlap_conflicts = self.stats.overlap_conflicts.saturating_add(diff as u64);
        }
    }

    /// Delivers buffered pieces that start at (or before) `next`.
    fn drain(&mut self, from: usize, ts_ns: i64, out: &mut Vec<FlowEvent>) {
        while let Some(entry) = self.pending.first_entry() {
            let k = *entry.key();
            if k > self.next {
                break;
            }
            let piece = entry.remove();
            let len = piece.len();
            self.pending_bytes = self.pending_bytes.saturating_sub(piece.mem());
            let end = k.saturating_add(len);
            if end <= self.next {
                continue;
            }
            let cut = self.next - k;
            match piece.part(cut, len) {
                Some(Piece::Data(d)) => {
                    let n = d.len() as u64;
                    out.push(FlowEvent::Data {
                        from,
                        offset: self.next,
                        data: d,
                        ts_ns,
                    });
                    self.stats.delivered_bytes = self.stats.delivered_bytes.saturating_add(n);
                    self.last_data_ns = Some(ts_ns);
                }
                Some(Piece::Counted(n)) => {
                    self.stats.delivered_bytes = self.stats.delivered_bytes.saturating_add(n);
                    self.last_data_ns = Some(ts_ns);
                }
                Some(Piece::Missing(n)) => {
                    self.record_gap(from, self.next, n, ts_ns, GapReason::Truncated, out);
                }
                None => {}
            }
            self.next = end;
        }
        self.check_fin(from, ts_ns, out);
    }

    fn check_fin(&mut self, from: usize, ts_ns: i64, out: &mut Vec<FlowEvent>) {
        if let Some(f) = self.fin
            && !self.fin_emitted
            && self.next >= f
            && self.pending.is_empty()
        {
            self.fin_emitted = true;
            out.push(FlowEvent::Fin { from, ts_ns });
        }
    }

    fn record_gap(
        &mut self,
        from: usize,
        offset: u64,
        len: u64,
        at_ns: i64,
        reason: GapReason,
        out: &mut Vec<FlowEvent>,
    ) {
        if len == 0 {
            return;
        }
        self.stats.gaps = self.stats.gaps.saturating_add(1);
        self.stats.missing_bytes = self.stats.missing_bytes.saturating_add(len);
        let gap = Gap {
            offset,
            len,
            at_ns,
            reason,
        };
        if self.gaps.len() < self.max_gaps_listed {
            self.gaps.push(gap.clone());
        }
        out.push(FlowEvent::Gap { from, gap });
    }

    /// Gives up the hole before the first buffered piece. False when nothing is buffered.
    fn skip_to_first_pending(
        &mut self,
        from: usize,
        ts_ns: i64,
        reason: GapReason,
        out: &mut Vec<FlowEvent>,
    ) -> bool {
        let Some(k) = self.pending.keys().next().copied() else {
            return false;
        };
        if k > self.next {
            self.record_gap(from, self.next, k - self.next, ts_ns, reason, out);
            self.next = k;
        }
        self.drain(from, ts_ns, out);
        true
    }

    /// The peer acknowledged sequence number `ack`: bytes before it that the capture does not
    /// have will never be retransmitted.
    pub fn on_peer_ack(&mut self, from: usize, ack: u32, ts_ns: i64, out: &mut Vec<FlowEvent>) {
        let Some(base) = self.base else { return };
        let off = self.offset_of(base, ack);
        let Ok(mut target) = u64::try_from(off) else {
            return;
        };
        // The FIN takes a sequence number but carries no byte.
        if let Some(f) = self.fin {
            target = target.min(f);
        }
        if target <= self.next {
            self.acked = self.acked.max(target);
            return;
        }
        // An acknowledgement far beyond anything plausible is not about this stream.
        if target - self.next > 1 << 30 {
            return;
        }
        while self.next < target {
            match self.pending.keys().next().copied() {
                Some(k) if k <= target => {
                    self.skip_to_first_pending(from, ts_ns, GapReason::AckedNotCaptured, out);
                }
                _ => {
                    let len = target - self.next;
                    self.record_gap(
                        from,
                        self.next,
                        len,
                        ts_ns,
                        GapReason::AckedNotCaptured,
                        out,
                    );
                    self.next = target;
                    self.drain(from, ts_ns, out);
                }
            }
        }
        self.acked = self.acked.max(target.min(self.next));
    }

    /// End of the connection or the capture: gives up every hole and delivers what is left.
    pub fn flush(&mut self, from: usize, ts_ns: i64, out: &mut Vec<FlowEvent>) {
        while self.skip_to_first_pending(from, ts_ns, GapReason::End, out) {}
        if let Some(f) = self.fin
            && !self.fin_emitted
            && f > self.next
        {
            let len = f - self.next;
            self.record_gap(from, self.next, len, ts_ns, GapReason::End, out);
            self.next = f;
        }
        self.check_fin(from, ts_ns, out);
    }
}

/// Both directions of one TCP connection. Side 0 is the sender of the first packet seen.
#[derive(Debug, Clone)]
pub struct Flow {
    pub halves: [HalfStream; 2],
    /// Side that sent the (first) SYN without ACK.
    pub syn_from: Option<usize>,
    pub syn_count: u32,
    pub syn_ts_ns: Option<i64>,
    /// Time of the first SYN/ACK.
    pub synack_ts_ns: Option<i64>,
    /// First RST per side.
    pub rst_ts_ns: [Option<i64>; 2],
    /// Time of the last packet from each side.
    pub last_ts_side: [Option<i64>; 2],
    pub first_ts_ns: i64,
    pub last_ts_ns: i64,
    pub packets: u64,
}

impl Flow {
    pub fn new(cfg: &ReassemblyConfig, first_ts_ns: i64) -> Self {
        Self {
            halves: [HalfStream::new(cfg), HalfStream::new(cfg)],
            syn_from: None,
            syn_count: 0,
            syn_ts_ns: None,
            synack_ts_ns: None,
            rst_ts_ns: [None, None],
            last_ts_side: [None, None],
            first_ts_ns,
            last_ts_ns: first_ts_ns,
            packets: 0,
        }
    }

    /// Stops keeping the bytes of both directions (see [`HalfStream::set_count_only`]).
    pub fn set_count_only(&mut self) {
        for h in &mut self.halves {
            h.set_count_only();
        }
    }

    /// True once the connection is over: a reset, or both FINs delivered.
    pub fn is_closed(&self) -> bool {
        self.rst_ts_ns.iter().any(Option::is_some)
            || self.halves.iter().all(HalfStream::fin_emitted)
    }

    /// Does a SYN (without ACK) from `from` start a new connection on this 4-tuple?
    pub fn starts_new_connection(&self, from: usize, seg: &TcpSegment<'_>) -> bool {
        if !seg.flags.syn || seg.flags.ack {
            return false;
        }
        match self.halves.get(from).and_then(HalfStream::isn) {
            // A retransmitted SYN carries the same ISN.
            Some(isn) => isn != seg.seq,
            // The first SYN of this side: new only if this flow already carried a connection.
            None => self.is_closed() || self.halves.iter().any(|h| h.delivered() > 0),
        }
    }

    /// One segment from side `from` (0 or 1), in capture order.
    pub fn on_segment(
        &mut self,
        from: usize,
        seg: &TcpSegment<'_>,
        ts_ns: i64,
        out: &mut Vec<FlowEvent>,
    ) {
        let from = from.min(1);
        let other = 1 - from;
        self.packets = self.packets.saturating_add(1);
        self.last_ts_ns = self.last_ts_ns.max(ts_ns);
        if let Some(t) = self.last_ts_side.get_mut(from) {
            *t = Some(t.map_or(ts_ns, |v| v.max(ts_ns)));
        }
        let f = seg.flags;
        if f.ack
            && !f.rst
            && let Some(h) = self.halves.get_mut(other)
        {
            h.on_peer_ack(other, seg.ack, ts_ns, out);
        }
        let mut seq = seg.seq;
        if f.syn {
            if let Some(h) = self.halves.get_mut(from) {
                h.on_syn(seg.seq);
            }
            if f.ack {
                if self.synack_ts_ns.is_none() {
                    self.synack_ts_ns = Some(ts_ns);
                    out.push(FlowEvent::SynAck { from, ts_ns });
                }
            } else {
                let retransmission = self.syn_count > 0;
                self.syn_count = self.syn_count.saturating_add(1);
                if self.syn_from.is_none() {
                    self.syn_from = Some(from);
                    self.syn_ts_ns = Some(ts_ns);
                }
                out.push(FlowEvent::Syn {
                    from,
                    ts_ns,
                    retransmission,
                });
            }
            // Data on a SYN (TCP Fast Open) starts after the SYN's sequence number.
            seq = seq.wrapping_add(1);
        }
        if f.rst {
            if self.rst_ts_ns.get(from).is_some_and(Option::is_none) {
                if let Some(slot) = self.rst_ts_ns.get_mut(from) {
                    *slot = Some(ts_ns);
                }
                // Whatever is still waiting will not be completed.
                for (i, h) in self.halves.iter_mut().enumerate() {
                    h.flush(i, ts_ns, out);
                }
                out.push(FlowEvent::Rst { from, ts_ns });
            }
            return;
        }
        if let Some(h) = self.halves.get_mut(from) {
            h.on_segment(from, seq, seg, ts_ns, out);
        }
    }

    /// End of the capture: gives up the holes left in both directions.
    pub fn finish(&mut self, out: &mut Vec<FlowEvent>) {
        let ts = self.last_ts_ns;
        for (i, h) in self.halves.iter_mut().enumerate() {
            h.flush(i, ts, out);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
    #![allow(clippy::cast_possible_truncation)]

    use super::*;
    use crate::capture::link::TcpFlags;

    fn seg(seq: u32, ack: Option<u32>, payload: &[u8]) -> TcpSegment<'_> {
        TcpSegment {
            src_port: 1,
            dst_port: 2,
            seq,
            ack: ack.unwrap_or(0),
            flags: TcpFlags {
                ack: ack.is_some(),
                ..TcpFlags::default()
            },
            payload,
            wire_len: payload.len() as u32,
        }
    }

    fn flags(syn: bool, ack: bool, fin: bool, rst: bool) -> TcpFlags {
        TcpFlags {
            syn,
            ack,
            fin,
            rst,
            psh: false,
        }
    }

    /// What came out, per side: the bytes in order (checking offsets are contiguous), the gaps,
    /// and FIN/RST order.
    #[derive(Debug, Default, PartialEq)]
    struct Out {
        data: [Vec<u8>; 2],
        gaps: [Vec<(u64, u64, GapReason)>; 2],
        closes: Vec<(usize, &'static str)>,
    }

    fn collect(events: &[FlowEvent]) -> Out {
        let mut o = Out::default();
        let mut pos = [0u64; 2];
        for e in events {
            match e {
                FlowEvent::Data {
                    from, offset, data, ..
                } => {
                    assert_eq!(*offset, pos[*from], "data out of order: {events:?}");
                    pos[*from] += data.len() as u64;
                    o.data[*from].extend_from_slice(data);
                }
                FlowEvent::Gap { from, gap } => {
                    assert_eq!(gap.offset, pos[*from]);
                    pos[*from] += gap.len;
                    o.gaps[*from].push((gap.offset, gap.len, gap.reason));
                }
                FlowEvent::Fin { from, .. } => o.closes.push((*from, "fin")),
                FlowEvent::Rst { from, .. } => o.closes.push((*from, "rst")),
                _ => {}
            }
        }
        o
    }

    fn run(flow: &mut Flow, segs: &[(usize, TcpSegment<'_>)]) -> Vec<FlowEvent> {
        let mut out = Vec::new();
        for (i, (from, s)) in segs.iter().enumerate() {
            flow.on_segment(*from, s, i as i64, &mut out);
        }
        flow.finish(&mut out);
        out
    }

    fn cfg() -> ReassemblyConfig {
        ReassemblyConfig::default()
    }

    #[test]
    fn handshake_then_in_order_data_and_fins() {
        let mut f = Flow::new(&cfg(), 0);
        let mut syn = seg(99, None, b"");
        syn.flags = flags(true, false, false, false);
        let mut synack = seg(4999, Some(100), b"");
        synack.flags = flags(true, true, false, false);
        let mut fin = seg(105, Some(5003), b"");
        fin.flags = flags(false, true, true, false);
        let mut fin2 = seg(5003, Some(106), b"");
        fin2.flags = flags(false, true, true, false);
        let ev = run(
            &mut f,
            &[
                (0, syn),
                (1, synack),
                (0, seg(100, Some(5000), b"hello")),
                (1, seg(5000, Some(105), b"abc")),
                (0, fin),
                (1, fin2),
            ],
        );
        let o = collect(&ev);
        assert_eq!(o.data, [b"hello".to_vec(), b"abc".to_vec()]);
        assert_eq!(o.closes, vec![(0, "fin"), (1, "fin")]);
        assert!(o.gaps.iter().all(Vec::is_empty));
        assert_eq!(f.syn_from, Some(0));
        assert_eq!(f.halves[0].isn(), Some(99));
        assert!(f.is_closed());
        assert!(matches!(ev[0], FlowEvent::Syn { from: 0, .. }));
        assert!(matches!(ev[1], FlowEvent::SynAck { from: 1, .. }));
    }

    #[test]
    fn out_of_order_duplicates_and_overlaps() {
        let mut f = Flow::new(&cfg(), 0);
        let ev = run(
            &mut f,
            &[
                (0, seg(10, None, b"abc")),
                (0, seg(16, None, b"ghi")),    // ahead: buffered
                (0, seg(16, None, b"ghi")),    // exact duplicate of a buffered segment
                (0, seg(13, None, b"def")),    // fills the hole
                (0, seg(10, None, b"abc")),    // retransmission of delivered bytes
                (0, seg(18, None, b"XjklZ")),  // overlaps 'i' with a different byte
                (0, seg(14, None, b"EFGHIJ")), // entirely old
            ],
        );
        let o = collect(&ev);
        assert_eq!(o.data[0], b"abcdefghijklZ");
        let s = &f.halves[0].stats;
        assert_eq!(s.out_of_order_segments, 1);
        assert!(s.retransmitted_segments >= 3, "{s:?}");
        assert_eq!(
            s.overlap_conflicts, 0,
            "the overlap was with delivered bytes"
        );
        assert!(s.started_mid_stream);
        assert_eq!(s.delivered_bytes, 13);
    }

    #[test]
    fn buffered_overlap_conflicts_are_counted_first_wins() {
        let mut f = Flow::new(&cfg(), 0);
        let ev = run(
            &mut f,
            &[
                (0, seg(0, None, b"a")),
                (0, seg(3, None, b"DEF")),
                (0, seg(2, None, b"cDXF")), // 'X' differs from the buffered 'E'
                (0, seg(1, None, b"b")),
            ],
        );
        assert_eq!(collect(&ev).data[0], b"abcDEF");
        assert_eq!(f.halves[0].stats.overlap_conflicts, 1);
    }

    #[test]
    fn hole_acknowledged_by_the_peer_becomes_a_gap() {
        let mut f = Flow::new(&cfg(), 0);
        let ev = run(
            &mut f,
            &[
                (0, seg(100, None, b"aaaa")),
                // 104..108 never captured
                (0, seg(108, None, b"cccc")),
                // the peer acknowledges up to 112: the hole will not be retransmitted
                (1, seg(7, Some(112), b"")),
                (0, seg(112, None, b"dd")),
            ],
        );
        let o = collect(&ev);
        assert_eq!(o.data[0], b"aaaaccccdd");
        assert_eq!(o.gaps[0], vec![(4, 4, GapReason::AckedNotCaptured)]);
        // The gap is reported before the bytes after it, at the time of the ACK.
        let gap_at = ev
            .iter()
            .position(|e| matches!(e, FlowEvent::Gap { .. }))
            .unwrap();
        let later = ev
            .iter()
            .position(|e| matches!(e, FlowEvent::Data { offset: 8, .. }))
            .unwrap();
        assert!(gap_at < later);
        assert_eq!(f.halves[0].stats.missing_bytes, 4);
        assert_eq!(f.halves[0].acked(), 12);
    }

    #[test]
    fn acked_data_missing_at_the_end_and_unfilled_holes() {
        let mut f = Flow::new(&cfg(), 0);
        let ev = run(
            &mut f,
            &[
                (0, seg(0, None, b"ab")),
                (0, seg(5, None, b"fg")),
                // nothing fills 2..5: given up at the end
            ],
        );
        let o = collect(&ev);
        assert_eq!(o.data[0], b"abfg");
        assert_eq!(o.gaps[0], vec![(2, 3, GapReason::End)]);

        // The peer acknowledges bytes never seen at all.
        let mut f = Flow::new(&cfg(), 0);
        let ev = run(
            &mut f,
            &[(0, seg(0, None, b"ab")), (1, seg(0, Some(10), b""))],
        );
        assert_eq!(
            collect(&ev).gaps[0],
            vec![(2, 8, GapReason::AckedNotCaptured)]
        );
    }

    #[test]
    fn snap_length_cut_becomes_a_gap_at_once() {
        let mut f = Flow::new(&cfg(), 0);
        let mut cut = seg(0, None, b"abc");
        cut.wire_len = 10;
        let ev = {
            let mut out = Vec::new();
            f.on_segment(0, &cut, 1, &mut out);
            f.on_segment(0, &seg(10, None, b"k"), 2, &mut out);
            out
        };
        let o = collect(&ev);
        assert_eq!(o.data[0], b"abck");
        assert_eq!(o.gaps[0], vec![(3, 7, GapReason::Truncated)]);
        assert_eq!(f.halves[0].stats.truncated_segments, 1);
    }

    #[test]
    fn buffer_cap_gives_up_the_hole() {
        let c = ReassemblyConfig {
            max_buffered: 8,
            max_gaps_listed: 1,
        };
        let mut f = Flow::new(&c, 0);
        let ev = run(
            &mut f,
            &[
                (0, seg(0, None, b"a")),
                (0, seg(5, None, b"xxxx")),
                (0, seg(20, None, b"yyyyy")),
            ],
        );
        let o = collect(&ev);
        assert_eq!(o.gaps[0][0], (1, 4, GapReason::BufferCap));
        assert_eq!(o.data[0], b"axxxxyyyyy");
        // Only one gap listed, both counted.
        assert_eq!(f.halves[0].gaps.len(), 1);
        assert_eq!(f.halves[0].stats.gaps, 2);
    }

    #[test]
    fn sequence_numbers_wrap() {
        let mut f = Flow::new(&cfg(), 0);
        let ev = run(
            &mut f,
            &[
                (0, seg(u32::MAX - 1, None, b"ab")),
                (0, seg(2, None, b"ef")),
                (0, seg(0, None, b"cd")),
            ],
        );
        assert_eq!(collect(&ev).data[0], b"abcdef");
    }

    #[test]
    fn rst_flushes_and_closes_once() {
        let mut f = Flow::new(&cfg(), 0);
        let mut rst = seg(3, Some(0), b"");
        rst.flags = flags(false, true, false, true);
        let ev = run(
            &mut f,
            &[
                (0, seg(0, None, b"a")),
                (0, seg(2, None, b"c")),
                (0, rst.clone()),
                (0, rst),
            ],
        );
        let o = collect(&ev);
        assert_eq!(o.closes, vec![(0, "rst")]);
        assert_eq!(o.gaps[0], vec![(1, 1, GapReason::End)]);
        assert!(f.is_closed());
    }

    #[test]
    fn new_syn_with_another_isn_is_a_new_connection() {
        let mut f = Flow::new(&cfg(), 0);
        let mut syn = seg(99, None, b"");
        syn.flags = flags(true, false, false, false);
        let mut out = Vec::new();
        f.on_segment(0, &syn, 0, &mut out);
        assert!(!f.starts_new_connection(0, &syn), "a retransmitted SYN");
        let mut other = syn.clone();
        other.seq = 5;
        assert!(f.starts_new_connection(0, &other));
    }

    proptest::proptest! {
        /// Any order of a stream's segments, with duplicates, gives the same bytes once all
        /// segments arrived (no gap is given up while the receiver stays silent).
        #[test]
        fn permutations_reassemble_identically(
            data in proptest::collection::vec(proptest::num::u8::ANY, 1..400),
            cuts in proptest::collection::vec(0usize..400, 0..12),
            order in proptest::collection::vec(proptest::num::usize::ANY, 0..40),
            isn in proptest::num::u32::ANY,
        ) {
            let mut bounds: Vec<usize> = cuts.into_iter().map(|c| c % data.len()).collect();
            bounds.push(0);
            bounds.push(data.len());
            bounds.sort_unstable();
            bounds.dedup();
            let pieces: Vec<(u32, &[u8])> = bounds
                .windows(2)
                .map(|w| (isn.wrapping_add(w[0] as u32), &data[w[0]..w[1]]))
                .collect();
            // A permutation (plus duplicates) in which the first segment comes first, since a
            // stream without SYN starts at the first byte seen.
            let mut idx: Vec<usize> = (1..pieces.len()).collect();
            for (i, o) in order.iter().enumerate() {
                let n = idx.len();
                if n > 1 { idx.swap(i % n, o % n); }
                if o % 5 == 0 && n > 0 { idx.push(o % n + 1); }
            }
            idx.insert(0, 0);
            let mut f = Flow::new(&ReassemblyConfig::default(), 0);
            let mut out = Vec::new();
            for (t, i) in idx.iter().enumerate() {
                let (seq, p) = pieces[*i % pieces.len()];
                f.on_segment(0, &seg(seq, None, p), t as i64, &mut out);
            }
            f.finish(&mut out);
            let o = collect(&out);
            proptest::prop_assert_eq!(&o.data[0], &data);
            proptest::prop_assert!(o.gaps[0].is_empty());
        }

        /// Arbitrary segments in both directions never panic and never deliver a byte twice.
        #[test]
        fn arbitrary_segments_never_panic(
            segs in proptest::collection::vec(
                (0usize..2, proptest::num::u32::ANY, proptest::num::u32::ANY, 0u8..32,
                 proptest::collection::vec(proptest::num::u8::ANY, 0..40), 0u32..80),
                0..60),
        ) {
            let mut f = Flow::new(&ReassemblyConfig { max_buffered: 64, max_gaps_listed: 4 }, 0);
            let mut out = Vec::new();
            for (t, (from, seq, ack, fl, payload, extra)) in segs.iter().enumerate() {
                let s = TcpSegment {
                    src_port: 1, dst_port: 2, seq: *seq % 300, ack: *ack % 300,
                    flags: flags(fl & 1 != 0, fl & 2 != 0, fl & 4 != 0, fl & 8 != 0),
                    payload, wire_len: payload.len() as u32 + extra % 3 * extra,
                };
                f.on_segment(*from, &s, t as i64, &mut out);
            }
            f.finish(&mut out);
            let _ = collect(&out);
        }
    }
}
