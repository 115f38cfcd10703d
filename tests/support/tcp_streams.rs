//! Reads a loopback capture (legacy pcap, as `dumpcap -P` writes it) and reassembles each TCP
//! connection into its two byte streams, so that the suite can compare what entered the proxy
//! on one leg with what left it on the other, byte for byte.
//!
//! Small on purpose: Ethernet (what Linux `lo` captures as) or raw IP, IPv4/IPv6, TCP; segments
//! ordered by sequence number, duplicates (loopback shows spurious retransmissions) and overlaps
//! dropped, holes reported.

use std::collections::BTreeMap;

use etherparse::{SlicedPacket, TransportSlice};

/// One TCP connection seen in the capture.
#[derive(Debug, Default)]
pub(crate) struct TcpConn {
    /// Port of the side that sent the SYN (the connecting side).
    pub(crate) client_port: u16,
    /// Port of the side that answered the SYN (the listening side).
    pub(crate) server_port: u16,
    /// The connecting side's SYN is in the capture (else the capture began mid-connection:
    /// the tail of an earlier connection that was still closing).
    pub(crate) saw_syn: bool,
    /// Capture time of the first packet, microseconds.
    pub(crate) first_seen_us: u64,
    /// Bytes from the connecting side to the listening side.
    pub(crate) c2s: Vec<u8>,
    /// Bytes from the listening side to the connecting side.
    pub(crate) s2c: Vec<u8>,
    /// Sequence-space holes (bytes the capture missed), per direction.
    pub(crate) holes: Vec<String>,
    /// The first FIN or RST: sent by the connecting side (`true`) or the listening side, which
    /// flag, when (capture time, microseconds).
    pub(crate) first_close: Option<(bool, char, u64)>,
    /// The connecting / listening side sent a RST at some point.
    pub(crate) rst_from_client: bool,
    pub(crate) rst_from_server: bool,
}

impl TcpConn {
    /// "client FIN", "host RST"... for the first close, naming the connecting side `client`.
    pub(crate) fn first_close_name(&self) -> String {
        match self.first_close {
            None => "no close".into(),
            Some((by_client, flag, _)) => format!(
                "{} {}",
                if by_client { "client" } else { "host" },
                if flag == 'R' { "RST" } else { "FIN" }
            ),
        }
    }
}

#[derive(Default)]
struct Half {
    isn: Option<u32>,
    segs: BTreeMap<u32, Vec<u8>>,
    /// First FIN/RST sent in this direction: flag and capture time.
    close: Option<(char, u64)>,
    rst: bool,
}

#[derive(Default)]
struct Building {
    syn_from: Option<u16>,
    first_seen_us: u64,
    // keyed by the sending port
    halves: BTreeMap<u16, Half>,
}

/// Parses the pcap bytes into the TCP connections it holds, in order of first appearance.
pub(crate) fn tcp_connections(pcap: &[u8]) -> Result<Vec<TcpConn>, String> {
    let header = pcap.get(..24).ok_or("pcap shorter than its file header")?;
    let magic = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
    let (le, nanos) = match magic {
        0xa1b2_c3d4 => (true, false),
        0xa1b2_3c4d => (true, true),
        0xd4c3_b2a1 => (false, false),
        0x4d3c_b2a1 => (false, true),
        _ => {
            return Err(format!(
                "not a legacy pcap file (magic {magic:#010x}); use dumpcap -P"
            ));
        }
    };
    let rd = |b: &[u8]| -> u32 {
        let a = [b[0], b[1], b[2], b[3]];
        if le {
            u32::from_le_bytes(a)
        } else {
            u32::from_be_bytes(a)
        }
    };
    let linktype = rd(&header[20..24]);

    // key: (lower port, higher port) of the connection; loopback only, so ports identify it
    // within one capture (each leg has its own ephemeral port).
    let mut conns: BTreeMap<(u16, u16), Building> = BTreeMap::new();
    let mut order: Vec<(u16, u16)> = Vec::new();
    let mut pos = 24usize;
    while pos < pcap.len() {
        let rec = pcap
            .get(pos..pos + 16)
            .ok_or_else(|| format!("truncated record header at offset {pos}"))?;
        let ts_sec = u64::from(rd(&rec[0..4]));
        let ts_frac = u64::from(rd(&rec[4..8]));
        let incl = usize::try_from(rd(&rec[8..12])).map_err(|e| e.to_string())?;
        let data = match pcap.get(pos + 16..pos + 16 + incl) {
            Some(d) => d,
            // dumpcap stopped mid-write: ignore the partial last record
            None => break,
        };
        pos += 16 + incl;
        let at_us = ts_sec * 1_000_000 + if nanos { ts_frac / 1000 } else { ts_frac };

        let sliced = match linktype {
            1 => SlicedPacket::from_ethernet(data),
            101 | 12 | 228 | 229 => SlicedPacket::from_ip(data),
            113 => SlicedPacket::from_linux_sll(data),
            other => return Err(format!("unsupported pcap link type {other}")),
        };
        let Ok(sliced) = sliced else { continue };
        let Some(TransportSlice::Tcp(tcp)) = sliced.transport else {
            continue;
        };
        let (sp, dp) = (tcp.source_port(), tcp.destination_port());
        let key = (sp.min(dp), sp.max(dp));
        let b = conns.entry(key).or_insert_with(|| {
            order.push(key);
            Building {
                first_seen_us: at_us,
                ..Building::default()
            }
        });
        let half = b.halves.entry(sp).or_default();
        let seq = tcp.sequence_number();
        if tcp.syn() {
            half.isn = Some(seq);
            if !tcp.ack() {
                b.syn_from = Some(sp);
            }
        }
        half.rst |= tcp.rst();
        if half.close.is_none() && (tcp.fin() || tcp.rst()) {
            half.close = Some((if tcp.rst() { 'R' } else { 'F' }, at_us));
        }
        let payload = tcp.payload();
        if !payload.is_empty() {
            // a SYN carries no data here (no TCP Fast Open on these peers)
            half.segs
                .entry(seq)
                .and_modify(|p| {
                    if payload.len() > p.len() {
                        *p = payload.to_vec();
                    }
                })
                .or_insert_with(|| payload.to_vec());
        }
    }

    let mut out = Vec::new();
    for key in order {
        let Some(b) = conns.remove(&key) else {
            continue;
        };
        // the connecting side: the SYN sender; without a SYN in the capture, the higher
        // (ephemeral) port
        let client_port = b.syn_from.unwrap_or(key.1);
        let server_port = if client_port == key.0 { key.1 } else { key.0 };
        let mut conn = TcpConn {
            client_port,
            server_port,
            saw_syn: b.syn_from.is_some(),
            first_seen_us: b.first_seen_us,
            ..TcpConn::default()
        };
        for (port, half) in b.halves {
            let (bytes, holes) = reassemble(&half);
            let dir = if port == client_port { "c2s" } else { "s2c" };
            conn.holes
                .extend(holes.into_iter().map(|h| format!("{dir}: {h}")));
            if let Some((flag, at)) = half.close
                && conn.first_close.is_none_or(|(_, _, t)| at < t)
            {
                conn.first_close = Some((port == client_port, flag, at));
            }
            if port == client_port {
                conn.c2s = bytes;
                conn.rst_from_client = half.rst;
            } else {
                conn.s2c = bytes;
                conn.rst_from_server = half.rst;
            }
        }
        out.push(conn);
    }
    Ok(out)
}

/// Orders one direction's segments by sequence number relative to the ISN and concatenates
/// them, skipping bytes already placed (retransmissions, overlaps).
fn reassemble(half: &Half) -> (Vec<u8>, Vec<String>) {
    let base = match half.isn {
        Some(isn) => isn.wrapping_add(1),
        None => half.segs.keys().copied().min().unwrap_or(0),
    };
    let mut segs: Vec<(u32, &Vec<u8>)> = half
        .segs
        .iter()
        .map(|(seq, p)| (seq.wrapping_sub(base), p))
        .collect();
    segs.sort_by_key(|(rel, _)| *rel);
    let mut out: Vec<u8> = Vec::new();
    let mut holes = Vec::new();
    for (rel, p) in segs {
        let rel = rel as usize;
        let end = rel + p.len();
        if rel > out.len() {
            holes.push(format!(
                "{} bytes missing at offset {}",
                rel - out.len(),
                out.len()
            ));
            out.resize(rel, 0);
        }
        if end > out.len() {
            let skip = out.len() - rel;
            out.extend_from_slice(&p[skip..]);
        }
    }
    (out, holes)
}

/// Where two byte strings first differ, for a readable failure.
pub(crate) fn first_difference(a: &[u8], b: &[u8]) -> Option<usize> {
    if a == b {
        return None;
    }
    Some(
        a.iter()
            .zip(b)
            .position(|(x, y)| x != y)
            .unwrap_or(a.len().min(b.len())),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reassembly_drops_retransmissions_and_overlaps() {
        let mut half = Half {
            isn: Some(u32::MAX - 1), // wraps: data starts at u32::MAX
            ..Half::default()
        };
        half.segs.insert(u32::MAX, b"abc".to_vec());
        half.segs.insert(2, b"de".to_vec()); // rel 3
        half.segs.insert(3, b"efg".to_vec()); // rel 4, overlaps one byte
        let (bytes, holes) = reassemble(&half);
        assert_eq!(bytes, b"abcdefg");
        assert!(holes.is_empty());
    }

    #[test]
    fn reassembly_reports_holes() {
        let mut half = Half {
            isn: Some(99),
            ..Half::default()
        };
        half.segs.insert(100, b"ab".to_vec());
        half.segs.insert(104, b"ef".to_vec());
        let (bytes, holes) = reassemble(&half);
        assert_eq!(bytes.len(), 6);
        assert_eq!(holes, vec!["2 bytes missing at offset 2".to_string()]);
    }
}
