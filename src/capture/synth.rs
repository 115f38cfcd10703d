//! Synthetic captures for tests: packets built with etherparse, files written by hand (so the
//! reader is tested against the format specifications, not against pcap-parser's own writer).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
#![allow(clippy::cast_possible_truncation)]

use etherparse::{PacketBuilder, VlanId};

/// How a packet is framed at the link layer.
#[derive(Debug, Clone)]
pub(crate) enum Framing {
    Ethernet,
    /// 802.1Q tags, outermost first (one or two).
    Vlan(Vec<u16>),
    /// No link header (LINKTYPE_RAW / IPV4).
    RawIp,
    /// BSD loopback, address family in host (little-endian) order.
    Null,
    /// Linux cooked v1.
    Sll,
    /// Linux cooked v2.
    Sll2,
}

impl Framing {
    pub(crate) fn link_type(&self) -> u32 {
        match self {
            Framing::Ethernet | Framing::Vlan(_) => 1,
            Framing::RawIp => 101,
            Framing::Null => 0,
            Framing::Sll => 113,
            Framing::Sll2 => 276,
        }
    }
}

#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Flags {
    pub syn: bool,
    pub ack: bool,
    pub fin: bool,
    pub rst: bool,
}

pub(crate) const SYN: Flags = Flags {
    syn: true,
    ack: false,
    fin: false,
    rst: false,
};
pub(crate) const SYNACK: Flags = Flags {
    syn: true,
    ack: true,
    fin: false,
    rst: false,
};
pub(crate) const ACK: Flags = Flags {
    syn: false,
    ack: true,
    fin: false,
    rst: false,
};
pub(crate) const FINACK: Flags = Flags {
    syn: false,
    ack: true,
    fin: true,
    rst: false,
};
pub(crate) const RSTACK: Flags = Flags {
    syn: false,
    ack: true,
    fin: false,
    rst: true,
};

/// One TCP/IPv4 packet.
pub(crate) fn tcp_packet(
    framing: &Framing,
    src: ([u8; 4], u16),
    dst: ([u8; 4], u16),
    seq: u32,
    ack: u32,
    f: Flags,
    payload: &[u8],
) -> Vec<u8> {
    let mut out = Vec::new();
    let build = |out: &mut Vec<u8>, step: etherparse::PacketBuilderStep<etherparse::IpHeaders>| {
        let mut t = step.tcp(src.1, dst.1, seq, 65535);
        if f.syn {
            t = t.syn();
        }
        if f.ack {
            t = t.ack(ack);
        }
        if f.fin {
            t = t.fin();
        }
        if f.rst {
            t = t.rst();
        }
        if !payload.is_empty() {
            t = t.psh();
        }
        t.write(out, payload).unwrap();
    };
    let ipv4 = etherparse::IpHeaders::Ipv4(
        etherparse::Ipv4Header::new(0, 64, etherparse::IpNumber::TCP, src.0, dst.0).unwrap(),
        Default::default(),
    );
    match framing {
        Framing::Ethernet => {
            build(&mut out, PacketBuilder::ethernet2([1; 6], [2; 6]).ip(ipv4));
        }
        Framing::Vlan(tags) => {
            let b = PacketBuilder::ethernet2([1; 6], [2; 6]);
            let step = match tags.as_slice() {
                [one] => b.single_vlan(VlanId::try_new(*one).unwrap()).ip(ipv4),
                [outer, inner, ..] => b
                    .double_vlan(
                        VlanId::try_new(*outer).unwrap(),
                        VlanId::try_new(*inner).unwrap(),
                    )
                    .ip(ipv4),
                [] => b.ip(ipv4),
            };
            build(&mut out, step);
        }
        Framing::RawIp => build(&mut out, PacketBuilder::ip(ipv4)),
        Framing::Null => {
            out.extend_from_slice(&2u32.to_le_bytes());
            build(&mut out, PacketBuilder::ip(ipv4));
        }
        Framing::Sll => {
            // packet type 0 (to us), ARPHRD_ETHER 1, address length 6, address (8), protocol.
            out.extend_from_slice(&[0, 0, 0, 1, 0, 6, 1, 1, 1, 1, 1, 1, 0, 0, 0x08, 0x00]);
            build(&mut out, PacketBuilder::ip(ipv4));
        }
        Framing::Sll2 => {
            // protocol 0x0800, reserved, ifindex 2, ARPHRD_ETHER 1, packet type 0, addr len 6,
            // address (8).
            out.extend_from_slice(&[
                0x08, 0x00, 0, 0, 0, 0, 0, 2, 0, 1, 0, 6, 1, 1, 1, 1, 1, 1, 0, 0,
            ]);
            build(&mut out, PacketBuilder::ip(ipv4));
        }
    }
    out
}

/// One UDP/IPv4 packet over Ethernet.
pub(crate) fn udp_packet(src: ([u8; 4], u16), dst: ([u8; 4], u16), payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    PacketBuilder::ethernet2([1; 6], [2; 6])
        .ipv4(src.0, dst.0, 64)
        .udp(src.1, dst.1)
        .write(&mut out, payload)
        .unwrap();
    out
}

/// A captured packet: time (ns since the epoch), bytes, and the original length when the
/// capture cut it.
#[derive(Debug, Clone)]
pub(crate) struct Frame {
    pub ts_ns: i64,
    pub data: Vec<u8>,
    pub orig_len: Option<u32>,
}

/// Classic pcap.
pub(crate) fn pcap(big_endian: bool, nanos: bool, link: u32, frames: &[Frame]) -> Vec<u8> {
    let u32b = |v: u32| {
        if big_endian {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        }
    };
    let u16b = |v: u16| {
        if big_endian {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        }
    };
    let mut out = Vec::new();
    out.extend_from_slice(&u32b(if nanos { 0xa1b2_3c4d } else { 0xa1b2_c3d4 }));
    out.extend_from_slice(&u16b(2));
    out.extend_from_slice(&u16b(4));
    out.extend_from_slice(&u32b(0));
    out.extend_from_slice(&u32b(0));
    out.extend_from_slice(&u32b(262_144));
    out.extend_from_slice(&u32b(link));
    for f in frames {
        let secs = f.ts_ns.div_euclid(1_000_000_000) as u32;
        let frac = f.ts_ns.rem_euclid(1_000_000_000) as u32;
        out.extend_from_slice(&u32b(secs));
        out.extend_from_slice(&u32b(if nanos { frac } else { frac / 1000 }));
        out.extend_from_slice(&u32b(f.data.len() as u32));
        out.extend_from_slice(&u32b(f.orig_len.unwrap_or(f.data.len() as u32)));
        out.extend_from_slice(&f.data);
    }
    out
}

/// A pcapng writer.
pub(crate) struct Ng {
    pub be: bool,
    pub out: Vec<u8>,
}

fn pad4(v: &mut Vec<u8>) {
    while !v.len().is_multiple_of(4) {
        v.push(0);
    }
}

impl Ng {
    pub(crate) fn new() -> Self {
        Self {
            be: false,
            out: Vec::new(),
        }
    }

    fn u32(&self, v: u32) -> [u8; 4] {
        if self.be {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        }
    }

    fn u16(&self, v: u16) -> [u8; 2] {
        if self.be {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        }
    }

    fn block(&mut self, ty: u32, body: &[u8]) {
        let mut b = body.to_vec();
        pad4(&mut b);
        let len = (b.len() + 12) as u32;
        let ty_bytes = self.u32(ty);
        let len_bytes = self.u32(len);
        self.out.extend_from_slice(&ty_bytes);
        self.out.extend_from_slice(&len_bytes);
        self.out.extend_from_slice(&b);
        self.out.extend_from_slice(&len_bytes);
    }

    /// Starts a section in the given byte order.
    pub(crate) fn shb(&mut self, be: bool) {
        self.be = be;
        let mut body = Vec::new();
        body.extend_from_slice(&self.u32(0x1A2B_3C4D));
        body.extend_from_slice(&self.u16(1));
        body.extend_from_slice(&self.u16(0));
        body.extend_from_slice(&[0xff; 8]);
        self.block(0x0A0D_0D0A, &body);
    }

    /// An interface; `tsresol` is the raw if_tsresol option value.
    pub(crate) fn idb(&mut self, link: u16, tsresol: Option<u8>) {
        let mut body = Vec::new();
        body.extend_from_slice(&self.u16(link));
        body.extend_from_slice(&self.u16(0));
        body.extend_from_slice(&self.u32(0));
        if let Some(r) = tsresol {
            body.extend_from_slice(&self.u16(9));
            body.extend_from_slice(&self.u16(1));
            body.extend_from_slice(&[r, 0, 0, 0]);
            body.extend_from_slice(&self.u16(0));
            body.extend_from_slice(&self.u16(0));
        }
        self.block(1, &body);
    }

    pub(crate) fn epb(&mut self, if_id: u32, ts_raw: u64, data: &[u8], orig_len: Option<u32>) {
        let mut body = Vec::new();
        body.extend_from_slice(&self.u32(if_id));
        body.extend_from_slice(&self.u32((ts_raw >> 32) as u32));
        body.extend_from_slice(&self.u32(ts_raw as u32));
        body.extend_from_slice(&self.u32(data.len() as u32));
        body.extend_from_slice(&self.u32(orig_len.unwrap_or(data.len() as u32)));
        body.extend_from_slice(data);
        self.block(6, &body);
    }

    pub(crate) fn spb(&mut self, data: &[u8]) {
        let mut body = Vec::new();
        body.extend_from_slice(&self.u32(data.len() as u32));
        body.extend_from_slice(data);
        self.block(3, &body);
    }

    pub(crate) fn opb(&mut self, if_id: u16, ts_raw: u64, data: &[u8]) {
        let mut body = Vec::new();
        body.extend_from_slice(&self.u16(if_id));
        body.extend_from_slice(&self.u16(0));
        body.extend_from_slice(&self.u32((ts_raw >> 32) as u32));
        body.extend_from_slice(&self.u32(ts_raw as u32));
        body.extend_from_slice(&self.u32(data.len() as u32));
        body.extend_from_slice(&self.u32(data.len() as u32));
        body.extend_from_slice(data);
        self.block(2, &body);
    }

    pub(crate) fn dsb_tls(&mut self, text: &[u8]) {
        let mut body = Vec::new();
        body.extend_from_slice(&self.u32(0x544c_534b));
        body.extend_from_slice(&self.u32(text.len() as u32));
        body.extend_from_slice(text);
        self.block(10, &body);
    }
}

/// A scripted TCP conversation: keeps sequence numbers and time.
pub(crate) struct Conv {
    pub framing: Framing,
    pub client: ([u8; 4], u16),
    pub server: ([u8; 4], u16),
    pub cseq: u32,
    pub sseq: u32,
    pub ts_ns: i64,
    pub frames: Vec<Frame>,
}

/// 2024-01-01T00:00:00Z.
pub(crate) const T0: i64 = 1_704_067_200_000_000_000;

impl Conv {
    pub(crate) fn new(framing: Framing, server_port: u16) -> Self {
        Self {
            framing,
            client: ([10, 0, 0, 1], 50000),
            server: ([10, 0, 0, 2], server_port),
            cseq: 1000,
            sseq: 0xffff_ff00,
            ts_ns: T0,
            frames: Vec::new(),
        }
    }

    pub(crate) fn wait_ms(&mut self, ms: i64) {
        self.ts_ns += ms * 1_000_000;
    }

    pub(crate) fn raw(&mut self, from_client: bool, seq: u32, f: Flags, payload: &[u8]) {
        let (src, dst, ack) = if from_client {
            (self.client, self.server, self.sseq)
        } else {
            (self.server, self.client, self.cseq)
        };
        let data = tcp_packet(&self.framing, src, dst, seq, ack, f, payload);
        self.frames.push(Frame {
            ts_ns: self.ts_ns,
            data,
            orig_len: None,
        });
        self.ts_ns += 1_000_000;
    }

    pub(crate) fn handshake(&mut self) {
        self.raw(true, self.cseq, SYN, &[]);
        self.cseq = self.cseq.wrapping_add(1);
        self.raw(false, self.sseq, SYNACK, &[]);
        self.sseq = self.sseq.wrapping_add(1);
        self.raw(true, self.cseq, ACK, &[]);
    }

    pub(crate) fn send(&mut self, from_client: bool, payload: &[u8]) {
        let seq = if from_client { self.cseq } else { self.sseq };
        self.raw(from_client, seq, ACK, payload);
        if from_client {
            self.cseq = self.cseq.wrapping_add(payload.len() as u32);
        } else {
            self.sseq = self.sseq.wrapping_add(payload.len() as u32);
        }
    }

    pub(crate) fn fin(&mut self, from_client: bool) {
        let seq = if from_client { self.cseq } else { self.sseq };
        self.raw(from_client, seq, FINACK, &[]);
        if from_client {
            self.cseq = self.cseq.wrapping_add(1);
        } else {
            self.sseq = self.sseq.wrapping_add(1);
        }
    }

    pub(crate) fn rst(&mut self, from_client: bool) {
        let seq = if from_client { self.cseq } else { self.sseq };
        self.raw(from_client, seq, RSTACK, &[]);
    }
}

/// X.224 Connection Request with a cookie and RDP_NEG_REQ (MS-RDPBCGR 2.2.1.1).
pub(crate) fn cr(requested: u32) -> Vec<u8> {
    let cookie = b"Cookie: mstshash=tester\r\n";
    let li = 6 + cookie.len() + 8;
    let mut v = vec![3, 0, 0, (li + 5) as u8, li as u8, 0xe0, 0, 0, 0, 0, 0];
    v.extend_from_slice(cookie);
    v.extend_from_slice(&[1, 0, 8, 0]);
    v.extend_from_slice(&requested.to_le_bytes());
    v
}

/// X.224 Connection Confirm with RDP_NEG_FAILURE (MS-RDPBCGR 2.2.1.2.2).
pub(crate) fn cc_failure(code: u32) -> Vec<u8> {
    let mut v = vec![3, 0, 0, 19, 14, 0xd0, 0, 0, 0x12, 0x34, 0, 3, 0, 8, 0];
    v.extend_from_slice(&code.to_le_bytes());
    v
}

/// X.224 Connection Confirm with RDP_NEG_RSP (MS-RDPBCGR 2.2.1.2.1).
pub(crate) fn cc_selected(proto: u32) -> Vec<u8> {
    let mut v = vec![3, 0, 0, 19, 14, 0xd0, 0, 0, 0x12, 0x34, 0, 2, 0, 8, 0];
    v.extend_from_slice(&proto.to_le_bytes());
    v
}

/// A whole conversation ending in RDP_NEG_FAILURE SSL_NOT_ALLOWED_BY_SERVER and closes.
pub(crate) fn neg_failure_conv(framing: Framing, port: u16) -> Conv {
    let mut c = Conv::new(framing, port);
    c.handshake();
    c.send(true, &cr(1));
    c.send(false, &cc_failure(2));
    c.fin(true);
    c.fin(false);
    c
}
