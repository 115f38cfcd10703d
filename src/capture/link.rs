//! Link, network and transport headers of one captured packet, down to a TCP segment or a UDP
//! datagram. etherparse does the header slicing (leniently: a packet cut by the snap length
//! still yields its TCP header and the bytes that were kept); this module picks the link layer
//! by link type and handles the ones etherparse has no entry point for (BSD NULL/LOOP, Linux
//! cooked v2).
//!
//! Checksums are never verified: captures taken on the sending host carry the placeholder
//! checksums of checksum offload, and a packet with a wrong checksum is still what the peer got.

use core::net::IpAddr;

use etherparse::{EtherType, LaxNetSlice, LaxSlicedPacket, LinkSlice, TransportSlice};
use serde::Serialize;

use super::reader::LinkType;

/// TCP flags the reassembly cares about.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct TcpFlags {
    pub syn: bool,
    pub ack: bool,
    pub fin: bool,
    pub rst: bool,
    pub psh: bool,
}

impl std::fmt::Display for TcpFlags {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut parts = Vec::new();
        for (on, name) in [
            (self.syn, "SYN"),
            (self.fin, "FIN"),
            (self.rst, "RST"),
            (self.psh, "PSH"),
            (self.ack, "ACK"),
        ] {
            if on {
                parts.push(name);
            }
        }
        f.write_str(&parts.join("/"))
    }
}

/// A TCP segment as captured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcpSegment<'a> {
    pub src_port: u16,
    pub dst_port: u16,
    pub seq: u32,
    pub ack: u32,
    pub flags: TcpFlags,
    /// The payload bytes the capture kept.
    pub payload: &'a [u8],
    /// The payload length the packet had on the wire (more than `payload.len()` when the
    /// capture cut the packet short).
    pub wire_len: u32,
}

/// A UDP datagram as captured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UdpDatagram<'a> {
    pub src_port: u16,
    pub dst_port: u16,
    pub payload: &'a [u8],
}

/// The transport layer of a packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport<'a> {
    Tcp(TcpSegment<'a>),
    Udp(UdpDatagram<'a>),
    /// Another IP protocol (ICMP, ...), by number.
    Other(u8),
}

/// A decoded IP packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpPacket<'a> {
    pub src: IpAddr,
    pub dst: IpAddr,
    /// 802.1Q / 802.1ad VLAN ids, outermost first.
    pub vlans: Vec<u16>,
    pub transport: Transport<'a>,
}

/// Why a packet was not decoded down to TCP/UDP.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum LinkError {
    #[error("unsupported link type {0}")]
    UnsupportedLinkType(u32),
    /// ARP, LLDP, STP and the like: nothing to analyse.
    #[error("not IP (ethertype {0:#06x})")]
    NotIp(u16),
    #[error("{layer} header is truncated or malformed: {detail}")]
    Malformed { layer: &'static str, detail: String },
    /// An IP fragment; rdpdiag does not reassemble IP fragments.
    #[error("IP fragment (not reassembled)")]
    Fragment,
}

/// Decodes one packet of the given link type.
pub fn decode(link: LinkType, data: &[u8]) -> Result<IpPacket<'_>, LinkError> {
    let sliced = match link {
        LinkType::ETHERNET => {
            LaxSlicedPacket::from_ethernet(data).map_err(|e| LinkError::Malformed {
                layer: "Ethernet",
                detail: e.to_string(),
            })?
        }
        LinkType::RAW
        | LinkType::RAW_BSD
        | LinkType::RAW_OPENBSD
        | LinkType::IPV4
        | LinkType::IPV6 => from_ip(data)?,
        LinkType::NULL | LinkType::LOOP => {
            // A 4-byte address family: host byte order for NULL, network order for LOOP, and
            // writers get it wrong either way, so accept both. AF_INET is 2 everywhere; AF_INET6
            // is 24 (NetBSD/OpenBSD), 28 (FreeBSD) or 30 (macOS) (tcpdump.org LINKTYPE_NULL).
            let fam: [u8; 4] = data
                .get(..4)
                .and_then(|s| s.try_into().ok())
                .ok_or_else(|| LinkError::Malformed {
                    layer: "loopback",
                    detail: format!("{} bytes, need 4", data.len()),
                })?;
            let (le, be) = (u32::from_le_bytes(fam), u32::from_be_bytes(fam));
            let known = |v: u32| matches!(v, 2 | 24 | 28 | 30);
            if !known(le) && !known(be) {
                return Err(LinkError::NotIp(u16::try_from(le & 0xffff).unwrap_or(0)));
            }
            from_ip(data.get(4..).unwrap_or_default())?
        }
        LinkType::LINUX_SLL => {
            // SLL: packet type (2), ARPHRD (2), address length (2), address (8), protocol (2).
            let proto = be16(data, 14).ok_or_else(|| short("Linux cooked (SLL)", data, 16))?;
            LaxSlicedPacket::from_ether_type(EtherType(proto), data.get(16..).unwrap_or_default())
        }
        LinkType::LINUX_SLL2 => {
            // SLL2: protocol (2), reserved (2), interface index (4), ARPHRD (2), packet type
            // (1), address length (1), address (8).
            let proto = be16(data, 0).ok_or_else(|| short("Linux cooked v2 (SLL2)", data, 20))?;
            if data.len() < 20 {
                return Err(short("Linux cooked v2 (SLL2)", data, 20));
            }
            LaxSlicedPacket::from_ether_type(EtherType(proto), data.get(20..).unwrap_or_default())
        }
        other => return Err(LinkError::UnsupportedLinkType(other.0)),
    };
    to_ip_packet(sliced)
}

fn short(layer: &'static str, data: &[u8], need: usize) -> LinkError {
    LinkError::Malformed {
        layer,
        detail: format!("{} bytes, need {need}", data.len()),
    }
}

fn be16(data: &[u8], off: usize) -> Option<u16> {
    let b: [u8; 2] = data.get(off..off.checked_add(2)?)?.try_into().ok()?;
    Some(u16::from_be_bytes(b))
}

fn from_ip(data: &[u8]) -> Result<LaxSlicedPacket<'_>, LinkError> {
    LaxSlicedPacket::from_ip(data).map_err(|e| LinkError::Malformed {
        layer: "IP",
        detail: e.to_string(),
    })
}

fn to_ip_packet(p: LaxSlicedPacket<'_>) -> Result<IpPacket<'_>, LinkError> {
    let vlans = p.vlan_ids().iter().map(|v| v.value()).collect::<Vec<u16>>();
    let Some(net) = &p.net else {
        if let Some((err, layer)) = &p.stop_err {
            return Err(LinkError::Malformed {
                layer: layer_name(*layer),
                detail: err.to_string(),
            });
        }
        let ether_type = match &p.link {
            Some(LinkSlice::Ethernet2(e)) => {
                p.link_exts.last().map(|_| 0).unwrap_or(e.ether_type().0)
            }
            Some(LinkSlice::EtherPayload(e)) => e.ether_type.0,
            _ => 0,
        };
        return Err(LinkError::NotIp(ether_type));
    };
    // The payload length the IP header declares, to learn how much TCP payload the snap length
    // cut off.
    let (src, dst, ip_payload, declared_ip_payload) = match net {
        LaxNetSlice::Ipv4(v4) => {
            let h = v4.header();
            let declared = usize::from(h.total_len()).saturating_sub(usize::from(h.ihl()) * 4);
            (
                IpAddr::V4(h.source_addr()),
                IpAddr::V4(h.destination_addr()),
                v4.payload().clone(),
                declared,
            )
        }
        LaxNetSlice::Ipv6(v6) => {
            let h = v6.header();
            let declared =
                usize::from(h.payload_length()).saturating_sub(v6.extensions().slice().len());
            (
                IpAddr::V6(h.source_addr()),
                IpAddr::V6(h.destination_addr()),
                v6.payload().clone(),
                declared,
            )
        }
        LaxNetSlice::Arp(_) => return Err(LinkError::NotIp(0x0806)),
    };
    if ip_payload.fragmented {
        return Err(LinkError::Fragment);
    }
    let transport = match &p.transport {
        Some(TransportSlice::Tcp(tcp)) => {
            let payload = tcp.payload();
            let header_len = tcp.slice().len().saturating_sub(payload.len());
            let mut wire = payload.len();
            if ip_payload.incomplete {
                wire = wire.max(declared_ip_payload.saturating_sub(header_len));
            }
            Transport::Tcp(TcpSegment {
                src_port: tcp.source_port(),
                dst_port: tcp.destination_port(),
                seq: tcp.sequence_number(),
                ack: tcp.acknowledgment_number(),
                flags: TcpFlags {
                    syn: tcp.syn(),
                    ack: tcp.ack(),
                    fin: tcp.fin(),
                    rst: tcp.rst(),
                    psh: tcp.psh(),
                },
                payload,
                wire_len: u32::try_from(wire).unwrap_or(u32::MAX),
            })
        }
        Some(TransportSlice::Udp(udp)) => Transport::Udp(UdpDatagram {
            src_port: udp.source_port(),
            dst_port: udp.destination_port(),
            payload: udp.payload(),
        }),
        _ => {
            if let Some((err, layer)) = &p.stop_err
                && (ip_payload.ip_number.0 == 6 || ip_payload.ip_number.0 == 17)
            {
                return Err(LinkError::Malformed {
                    layer: layer_name(*layer),
                    detail: err.to_string(),
                });
            }
            Transport::Other(ip_payload.ip_number.0)
        }
    };
    Ok(IpPacket {
        src,
        dst,
        vlans,
        transport,
    })
}

fn layer_name(l: etherparse::err::Layer) -> &'static str {
    use etherparse::err::Layer;
    match l {
        Layer::TcpHeader => "TCP",
        Layer::UdpHeader => "UDP",
        Layer::Ipv4Header | Layer::IpHeader => "IP",
        Layer::Ipv6Header => "IPv6",
        Layer::VlanHeader => "VLAN",
        Layer::Ethernet2Header => "Ethernet",
        _ => "packet",
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

    use super::*;
    use crate::capture::synth::{self, Framing};

    fn seg(framing: &Framing) -> Vec<u8> {
        synth::tcp_packet(
            framing,
            ([192, 168, 1, 1], 50000),
            ([192, 168, 1, 2], 3389),
            0xdead_beef,
            7,
            synth::ACK,
            b"\x03\x00\x00\x0b\x06\xe0\x00\x00\x00\x00\x00",
        )
    }

    fn check(link: u32, data: &[u8], vlans: &[u16]) {
        let p = decode(LinkType(link), data).unwrap();
        assert_eq!(p.src, "192.168.1.1".parse::<IpAddr>().unwrap());
        assert_eq!(p.dst, "192.168.1.2".parse::<IpAddr>().unwrap());
        assert_eq!(p.vlans, vlans);
        let Transport::Tcp(t) = p.transport else {
            panic!("not tcp")
        };
        assert_eq!(
            (t.src_port, t.dst_port, t.seq, t.ack),
            (50000, 3389, 0xdead_beef, 7)
        );
        assert!(t.flags.ack && !t.flags.syn);
        assert_eq!(t.payload.len(), 11);
        assert_eq!(t.wire_len, 11);
    }

    #[test]
    fn every_link_type() {
        for (f, vlans) in [
            (Framing::Ethernet, vec![]),
            (Framing::Vlan(vec![77]), vec![77]),
            (Framing::Vlan(vec![1108, 1308]), vec![1108, 1308]),
            (Framing::RawIp, vec![]),
            (Framing::Null, vec![]),
            (Framing::Sll, vec![]),
            (Framing::Sll2, vec![]),
        ] {
            check(f.link_type(), &seg(&f), &vlans);
        }
        // Raw IPv4 also under its other numbers.
        for link in [12, 14, 228] {
            check(link, &seg(&Framing::RawIp), &[]);
        }
        // LOOP: the family in network byte order.
        let mut lo = seg(&Framing::Null);
        lo[..4].copy_from_slice(&2u32.to_be_bytes());
        check(108, &lo, &[]);
    }

    #[test]
    fn ipv6() {
        let mut out = Vec::new();
        etherparse::PacketBuilder::ipv6([1; 16], [2; 16], 64)
            .tcp(1, 3389, 5, 100)
            .write(&mut out, b"abc")
            .unwrap();
        let p = decode(LinkType::IPV6, &out).unwrap();
        assert!(p.src.is_ipv6());
        assert!(matches!(
            p.transport,
            Transport::Tcp(TcpSegment { seq: 5, .. })
        ));
    }

    #[test]
    fn truncated_packet_keeps_its_wire_length() {
        let full = seg(&Framing::Ethernet);
        // Cut 5 bytes of payload, as a snap length would.
        let p = decode(LinkType::ETHERNET, &full[..full.len() - 5]).unwrap();
        let Transport::Tcp(t) = p.transport else {
            panic!()
        };
        assert_eq!((t.payload.len(), t.wire_len), (6, 11));
    }

    #[test]
    fn non_ip_and_unknown() {
        let mut arp = vec![0u8; 12];
        arp.extend_from_slice(&[0x88, 0xcc, 1, 2, 3]); // LLDP
        assert!(matches!(
            decode(LinkType::ETHERNET, &arp),
            Err(LinkError::NotIp(0x88cc))
        ));
        assert!(matches!(
            decode(LinkType(147), &[1, 2, 3]),
            Err(LinkError::UnsupportedLinkType(147))
        ));
        assert!(decode(LinkType::LINUX_SLL2, &[8, 0, 1]).is_err());
        assert!(decode(LinkType::NULL, &[7, 0, 0, 0, 0x45]).is_err());
    }

    #[test]
    fn udp() {
        let d = synth::udp_packet(
            ([10, 0, 0, 1], 5),
            ([10, 0, 0, 2], 3389),
            b"\xff\xff\xff\xff",
        );
        let p = decode(LinkType::ETHERNET, &d).unwrap();
        assert!(matches!(
            p.transport,
            Transport::Udp(UdpDatagram { dst_port: 3389, .. })
        ));
    }

    proptest::proptest! {
        #[test]
        fn never_panics(link in proptest::sample::select(vec![0u32, 1, 12, 14, 101, 108, 113, 228, 229, 276]),
                        bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
            let _ = decode(LinkType(link), &bytes);
        }
    }
}
