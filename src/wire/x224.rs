//! X.224 class 0 TPDUs as RDP uses them, with the RDP negotiation structures
//! (MS-RDPBCGR 2.2.1.1 Connection Request, 2.2.1.2 Connection Confirm).
//!
//! ```text
//! TPKT(4) | LI | code | DST-REF(2) | SRC-REF(2) | class | RDP variable part ...
//!                                                        cookie/routing token "...\r\n"
//!                                                        RDP_NEG_REQ / RSP / FAILURE (8)
//!                                                        RDP_NEG_CORRELATION_INFO (36)
//! ```
//! All offsets reported here are relative to the start of the TPKT PDU.

use serde::{Serialize, Serializer};

use super::cursor::ReadCursor;
use super::tpkt;
use super::{DecodeError, Decoded};

/// Security protocols: `requestedProtocols` / `selectedProtocol` (MS-RDPBCGR 2.2.1.1.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Protocols(pub u32);

impl Protocols {
    /// Standard RDP Security (the value 0: no bit).
    pub const RDP: Protocols = Protocols(0);
    pub const SSL: Protocols = Protocols(0x1);
    pub const HYBRID: Protocols = Protocols(0x2);
    pub const RDSTLS: Protocols = Protocols(0x4);
    pub const HYBRID_EX: Protocols = Protocols(0x8);
    pub const RDSAAD: Protocols = Protocols(0x10);

    const NAMES: [(u32, &'static str); 5] = [
        (0x1, "SSL"),
        (0x2, "HYBRID"),
        (0x4, "RDSTLS"),
        (0x8, "HYBRID_EX"),
        (0x10, "RDSAAD"),
    ];

    pub fn contains(self, other: Protocols) -> bool {
        self.0 & other.0 == other.0
    }

    /// Does this offer/selection involve TLS at all (any bit set)?
    pub fn uses_tls(self) -> bool {
        self.0 != 0
    }

    /// Does it include CredSSP (HYBRID or HYBRID_EX)?
    pub fn uses_credssp(self) -> bool {
        self.0 & (Self::HYBRID.0 | Self::HYBRID_EX.0) != 0
    }

    /// `SSL|HYBRID`, `RDP` for 0, unknown bits as hex.
    pub fn names(self) -> String {
        if self.0 == 0 {
            return "RDP".to_owned();
        }
        let mut parts: Vec<String> = Vec::new();
        let mut rest = self.0;
        for (bit, name) in Self::NAMES {
            if self.0 & bit != 0 {
                parts.push(name.to_owned());
                rest &= !bit;
            }
        }
        if rest != 0 {
            parts.push(format!("{rest:#x}"));
        }
        parts.join("|")
    }
}

impl std::fmt::Display for Protocols {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}({:#x})", self.names(), self.0)
    }
}

impl Serialize for Protocols {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

/// RDP_NEG_FAILURE.failureCode (MS-RDPBCGR 2.2.1.2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FailureCode(pub u32);

impl FailureCode {
    pub const SSL_REQUIRED_BY_SERVER: FailureCode = FailureCode(1);
    pub const SSL_NOT_ALLOWED_BY_SERVER: FailureCode = FailureCode(2);
    pub const SSL_CERT_NOT_ON_SERVER: FailureCode = FailureCode(3);
    pub const INCONSISTENT_FLAGS: FailureCode = FailureCode(4);
    pub const HYBRID_REQUIRED_BY_SERVER: FailureCode = FailureCode(5);
    pub const SSL_WITH_USER_AUTH_REQUIRED_BY_SERVER: FailureCode = FailureCode(6);

    pub fn name(self) -> Option<&'static str> {
        Some(match self.0 {
            1 => "SSL_REQUIRED_BY_SERVER",
            2 => "SSL_NOT_ALLOWED_BY_SERVER",
            3 => "SSL_CERT_NOT_ON_SERVER",
            4 => "INCONSISTENT_FLAGS",
            5 => "HYBRID_REQUIRED_BY_SERVER",
            6 => "SSL_WITH_USER_AUTH_REQUIRED_BY_SERVER",
            _ => return None,
        })
    }
}

impl std::fmt::Display for FailureCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.name() {
            Some(n) => write!(f, "{n}({})", self.0),
            None => write!(f, "unknown failure code {:#x}", self.0),
        }
    }
}

impl Serialize for FailureCode {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

/// RDP_NEG_REQ (MS-RDPBCGR 2.2.1.1.1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NegReq {
    /// flags (0x01 RESTRICTED_ADMIN_MODE_REQUIRED, 0x02 REDIRECTED_AUTHENTICATION_MODE_REQUIRED,
    /// 0x08 CORRELATION_INFO_PRESENT).
    pub flags: u8,
    /// requestedProtocols.
    pub requested: Protocols,
    /// Offset of the requestedProtocols field in the PDU (for rewriting and evidence).
    pub requested_offset: usize,
}

/// Client X.224 Connection Request (MS-RDPBCGR 2.2.1.1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConnectionRequest {
    /// `Cookie: mstshash=IDENTIFIER`: the IDENTIFIER (usually the user name, truncated).
    pub cookie: Option<String>,
    /// Any other CRLF-terminated token (`Cookie: msts=...`, `tsv://...`), without the CRLF.
    pub routing_token: Option<String>,
    /// RDP_NEG_REQ; absent for a legacy request (Standard RDP Security implied).
    pub neg_req: Option<NegReq>,
    /// RDP_NEG_CORRELATION_INFO.correlationId, as hex.
    pub correlation_id: Option<String>,
    /// Things that are odd but not fatal (stray bytes, non-zero class, ...).
    pub anomalies: Vec<String>,
}

impl ConnectionRequest {
    /// What the client asked for: RDP when there is no RDP_NEG_REQ.
    pub fn requested(&self) -> Protocols {
        self.neg_req
            .as_ref()
            .map_or(Protocols::RDP, |n| n.requested)
    }
}

/// rdpNegData of a Connection Confirm.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum NegData {
    /// RDP_NEG_RSP (2.2.1.2.1).
    Response {
        flags: u8,
        selected: Protocols,
        /// Offset of selectedProtocol in the PDU.
        selected_offset: usize,
    },
    /// RDP_NEG_FAILURE (2.2.1.2.2).
    Failure {
        code: FailureCode,
        /// Offset of failureCode in the PDU.
        code_offset: usize,
    },
}

/// Server X.224 Connection Confirm (MS-RDPBCGR 2.2.1.2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConnectionConfirm {
    /// None: legacy CC (LI = 6), Standard RDP Security implied.
    pub neg: Option<NegData>,
    pub anomalies: Vec<String>,
}

/// One decoded X.224 TPDU.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "tpdu", rename_all = "snake_case")]
pub enum X224Pdu {
    ConnectionRequest(ConnectionRequest),
    ConnectionConfirm(ConnectionConfirm),
    /// DT: user data (MCS) starts at `payload_offset` of the PDU.
    Data {
        payload_offset: usize,
    },
    /// DR with its reason byte.
    DisconnectRequest {
        reason: u8,
    },
    /// ER with its reject cause.
    Error {
        cause: u8,
    },
    /// Any other TPDU code.
    Other {
        code: u8,
    },
}

pub const CODE_CR: u8 = 0xE0;
pub const CODE_CC: u8 = 0xD0;
pub const CODE_DR: u8 = 0x80;
pub const CODE_DT: u8 = 0xF0;
pub const CODE_ER: u8 = 0x70;

const NEG_REQ_TYPE: u8 = 0x01;
const NEG_RSP_TYPE: u8 = 0x02;
const NEG_FAILURE_TYPE: u8 = 0x03;
const CORRELATION_TYPE: u8 = 0x06;
const CORRELATION_INFO_PRESENT: u8 = 0x08;

/// Decodes the TPKT PDU at the start of `buf`: `Ok(None)` if it is not all there.
pub fn decode_next(buf: &[u8]) -> Decoded<(X224Pdu, usize)> {
    match tpkt::split_pdu(buf)? {
        None => Ok(None),
        Some(pdu) => decode(pdu).map(|p| Some((p, pdu.len()))),
    }
}

/// Decodes one whole TPKT PDU (header included).
pub fn decode(pdu: &[u8]) -> Result<X224Pdu, DecodeError> {
    let mut c = ReadCursor::new(pdu);
    c.skip(tpkt::HEADER_LEN, "TPKT header")?;
    let li_off = c.pos();
    let li = c.read_u8("X.224 LI")?;
    let code = c.read_u8("X.224 code")?;
    // LI counts the header after itself; it must fit in the PDU.
    let header_end = li_off + 1 + usize::from(li);
    if li == 0xff || header_end > pdu.len() {
        return Err(DecodeError::new(
            li_off,
            "X.224 LI",
            format!("<= {}", pdu.len().saturating_sub(li_off + 1)),
            li.to_string(),
        ));
    }
    match code & 0xf0 {
        CODE_CR if code == CODE_CR || code & 0xf0 == CODE_CR => {
            decode_cr(pdu, header_end).map(X224Pdu::ConnectionRequest)
        }
        CODE_CC => decode_cc(pdu, header_end).map(X224Pdu::ConnectionConfirm),
        CODE_DT => Ok(X224Pdu::Data {
            payload_offset: header_end,
        }),
        CODE_DR => {
            let reason = pdu.get(li_off + 6).copied().unwrap_or(0);
            Ok(X224Pdu::DisconnectRequest { reason })
        }
        CODE_ER => {
            let cause = pdu.get(li_off + 4).copied().unwrap_or(0);
            Ok(X224Pdu::Error { cause })
        }
        _ => Ok(X224Pdu::Other { code }),
    }
}

/// Reads DST-REF, SRC-REF and class; returns the class byte.
fn fixed_part(c: &mut ReadCursor<'_>, header_end: usize) -> Result<u8, DecodeError> {
    if header_end < c.pos() + 5 {
        return Err(DecodeError::new(
            tpkt::HEADER_LEN,
            "X.224 LI",
            ">= 6",
            (header_end.saturating_sub(tpkt::HEADER_LEN + 1)).to_string(),
        ));
    }
    c.skip(4, "X.224 DST-REF/SRC-REF")?;
    c.read_u8("X.224 class")
}

fn decode_cr(pdu: &[u8], header_end: usize) -> Result<ConnectionRequest, DecodeError> {
    let mut c = ReadCursor::new(pdu.get(..header_end).unwrap_or(pdu));
    c.skip(tpkt::HEADER_LEN + 2, "X.224 CR header")?;
    let class = fixed_part(&mut c, header_end)?;
    let mut cr = ConnectionRequest {
        cookie: None,
        routing_token: None,
        neg_req: None,
        correlation_id: None,
        anomalies: Vec::new(),
    };
    if class != 0 {
        cr.anomalies.push(format!(
            "class/options {class:#04x} (Windows drops a CR that is not class 0)"
        ));
    }
    // Text tokens: each ends with CRLF. A negotiation block starts with type 0x01 and length 8.
    while c.remaining() > 0 && !starts_neg_block(c.rest(), NEG_REQ_TYPE) {
        let start = c.pos();
        let rest = c.rest();
        let Some(end) = rest.windows(2).position(|w| w == b"\r\n") else {
            return Err(DecodeError::new(
                start,
                "routingToken/cookie",
                "text ending with CR LF",
                format!("{} byte(s) without CR LF", rest.len()),
            ));
        };
        let text = String::from_utf8_lossy(rest.get(..end).unwrap_or_default()).into_owned();
        c.skip(end + 2, "routingToken/cookie")?;
        if let Some(id) = text.strip_prefix("Cookie: mstshash=") {
            cr.cookie = Some(id.to_owned());
        } else if cr.routing_token.is_none() {
            cr.routing_token = Some(text);
        } else {
            cr.anomalies
                .push(format!("extra token at offset {start}: {text:?}"));
        }
    }
    if c.remaining() > 0 {
        let flags_at = c.pos() + 1;
        let [_, flags, l0, l1, p0, p1, p2, p3] = c.read_array::<8>("RDP_NEG_REQ")?;
        let length = u16::from_le_bytes([l0, l1]);
        if length != 8 {
            return Err(DecodeError::new(
                flags_at + 1,
                "RDP_NEG_REQ.length",
                "8",
                length.to_string(),
            ));
        }
        cr.neg_req = Some(NegReq {
            flags,
            requested: Protocols(u32::from_le_bytes([p0, p1, p2, p3])),
            requested_offset: flags_at + 3,
        });
        if flags & CORRELATION_INFO_PRESENT != 0 {
            if c.remaining() >= 36 && c.peek_u8() == Some(CORRELATION_TYPE) {
                let ci = c.read_slice(36, "RDP_NEG_CORRELATION_INFO")?;
                cr.correlation_id = ci.get(4..20).map(hex::encode);
            } else {
                cr.anomalies.push(
                    "CORRELATION_INFO_PRESENT set but no RDP_NEG_CORRELATION_INFO follows"
                        .to_owned(),
                );
            }
        }
    }
    if c.remaining() > 0 {
        cr.anomalies.push(format!(
            "{} stray byte(s) after the negotiation data at offset {}",
            c.remaining(),
            c.pos()
        ));
    }
    if header_end < pdu.len() {
        cr.anomalies.push(format!(
            "{} byte(s) after the X.224 header (RDP puts everything inside LI)",
            pdu.len() - header_end
        ));
    }
    Ok(cr)
}

fn starts_neg_block(b: &[u8], ty: u8) -> bool {
    matches!(b, [t, _, 8, 0, ..] if *t == ty)
}

fn decode_cc(pdu: &[u8], header_end: usize) -> Result<ConnectionConfirm, DecodeError> {
    let mut c = ReadCursor::new(pdu.get(..header_end).unwrap_or(pdu));
    c.skip(tpkt::HEADER_LEN + 2, "X.224 CC header")?;
    let class = fixed_part(&mut c, header_end)?;
    let mut cc = ConnectionConfirm {
        neg: None,
        anomalies: Vec::new(),
    };
    if class != 0 {
        cc.anomalies.push(format!("class/options {class:#04x}"));
    }
    if c.remaining() > 0 {
        let at = c.pos();
        let b = c.read_slice(c.remaining().min(8), "rdpNegData")?;
        if b.len() < 8 {
            return Err(DecodeError::new(
                at,
                "rdpNegData",
                "8 bytes",
                format!("{} byte(s)", b.len()),
            ));
        }
        let Some(&[ty, flags, l0, l1, v0, v1, v2, v3]) = b.first_chunk::<8>() else {
            return Err(DecodeError::new(
                at,
                "rdpNegData",
                "8 bytes",
                format!("{} byte(s)", b.len()),
            ));
        };
        let length = u16::from_le_bytes([l0, l1]);
        let value = u32::from_le_bytes([v0, v1, v2, v3]);
        let field = match ty {
            NEG_RSP_TYPE => "RDP_NEG_RSP.length",
            NEG_FAILURE_TYPE => "RDP_NEG_FAILURE.length",
            _ => {
                return Err(DecodeError::new(
                    at,
                    "rdpNegData.type",
                    "0x02 (RDP_NEG_RSP) or 0x03 (RDP_NEG_FAILURE)",
                    format!("{ty:#04x}"),
                ));
            }
        };
        if length != 8 {
            return Err(DecodeError::new(
                at + 2,
                field,
                "8",
                format!("{length} ({length:#06x})"),
            ));
        }
        cc.neg = Some(if ty == NEG_RSP_TYPE {
            NegData::Response {
                flags,
                selected: Protocols(value),
                selected_offset: at + 4,
            }
        } else {
            NegData::Failure {
                code: FailureCode(value),
                code_offset: at + 4,
            }
        });
        if c.remaining() > 0 {
            cc.anomalies
                .push(format!("{} stray byte(s) in the CC header", c.remaining()));
        }
    }
    Ok(cc)
}

/// Returns a copy of a Connection Request PDU with requestedProtocols replaced.
/// `None` when the request has no RDP_NEG_REQ (nothing to rewrite in place).
pub fn rewrite_requested(pdu: &[u8], cr: &ConnectionRequest, to: Protocols) -> Option<Vec<u8>> {
    let at = cr.neg_req.as_ref()?.requested_offset;
    let mut out = pdu.to_vec();
    out.get_mut(at..at + 4)?
        .copy_from_slice(&to.0.to_le_bytes());
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        hex::decode(s.split_whitespace().collect::<String>()).unwrap()
    }

    // Reference E1: mstsc-like CR, cookie "alice", requestedProtocols SSL|HYBRID|HYBRID_EX.
    const E1: &str = "03 00 00 2b 26 e0 00 00 00 00 00 43 6f 6f 6b 69
                      65 3a 20 6d 73 74 73 68 61 73 68 3d 61 6c 69 63
                      65 0d 0a 01 00 08 00 0b 00 00 00";
    // Reference E2: no cookie, correlation info, SSL only.
    const E2: &str = "03 00 00 37 32 e0 00 00 00 00 00 01 08 08 00 01
                      00 00 00 06 00 24 00 5a 3e 8c 1d 7b 2f 4e 6a 9c
                      0b 1d 2e 3f 40 51 62 00 00 00 00 00 00 00 00 00
                      00 00 00 00 00 00 00";
    // Reference E3: CC selecting HYBRID_EX, flags 0x1f.
    const E3: &str = "03 00 00 13 0e d0 00 00 12 34 00 02 1f 08 00 08 00 00 00";
    // Reference E4: CC with RDP_NEG_FAILURE HYBRID_REQUIRED_BY_SERVER.
    const E4: &str = "03 00 00 13 0e d0 00 00 12 34 00 03 00 08 00 05 00 00 00";
    // Reference E5: legacy CC.
    const E5: &str = "03 00 00 0b 06 d0 00 00 12 34 00";

    #[test]
    fn e1_cookie_and_neg_req() {
        let X224Pdu::ConnectionRequest(cr) = decode(&hex(E1)).unwrap() else {
            panic!()
        };
        assert_eq!(cr.cookie.as_deref(), Some("alice"));
        let n = cr.neg_req.unwrap();
        assert_eq!(
            (n.flags, n.requested, n.requested_offset),
            (0, Protocols(0xb), 0x27)
        );
        assert!(cr.anomalies.is_empty());
    }

    #[test]
    fn e2_correlation_info() {
        let X224Pdu::ConnectionRequest(cr) = decode(&hex(E2)).unwrap() else {
            panic!()
        };
        assert_eq!(cr.cookie, None);
        assert_eq!(cr.requested(), Protocols::SSL);
        assert_eq!(
            cr.correlation_id.as_deref(),
            Some("5a3e8c1d7b2f4e6a9c0b1d2e3f405162")
        );
    }

    #[test]
    fn e3_e4_e5_confirms() {
        let X224Pdu::ConnectionConfirm(cc) = decode(&hex(E3)).unwrap() else {
            panic!()
        };
        assert!(matches!(
            cc.neg,
            Some(NegData::Response {
                flags: 0x1f,
                selected: Protocols::HYBRID_EX,
                ..
            })
        ));
        let X224Pdu::ConnectionConfirm(cc) = decode(&hex(E4)).unwrap() else {
            panic!()
        };
        assert!(matches!(
            cc.neg,
            Some(NegData::Failure {
                code: FailureCode::HYBRID_REQUIRED_BY_SERVER,
                code_offset: 15
            })
        ));
        let X224Pdu::ConnectionConfirm(cc) = decode(&hex(E5)).unwrap() else {
            panic!()
        };
        assert_eq!(cc.neg, None);
    }

    #[test]
    fn every_cut_needs_more_bytes() {
        for v in [E1, E2, E3, E4, E5] {
            let b = hex(v);
            for n in 0..b.len() {
                assert_eq!(decode_next(&b[..n]), Ok(None), "cut at {n}");
            }
        }
    }

    #[test]
    fn lying_neg_length_names_the_field() {
        // The corpus' zeek_rdp-invalid-length.pcap CC: RDP_NEG_RSP length 0x0100.
        let b = hex("03 00 00 13 0e d0 00 00 12 34 00 02 03 00 01 00 00 02 00");
        let e = decode(&b).unwrap_err();
        assert_eq!((e.field, e.offset), ("RDP_NEG_RSP.length", 13));
        // LI larger than the PDU.
        let e = decode(&hex("03 00 00 0b 40 d0 00 00 12 34 00")).unwrap_err();
        assert_eq!((e.field, e.offset), ("X.224 LI", 4));
    }

    #[test]
    fn rewrite_keeps_every_other_byte() {
        let b = hex(E1);
        let X224Pdu::ConnectionRequest(cr) = decode(&b).unwrap() else {
            panic!()
        };
        let r = rewrite_requested(&b, &cr, Protocols::SSL).unwrap();
        let X224Pdu::ConnectionRequest(cr2) = decode(&r).unwrap() else {
            panic!()
        };
        assert_eq!(cr2.requested(), Protocols::SSL);
        assert_eq!(&r[..0x27], &b[..0x27]);
    }

    #[test]
    fn protocol_names() {
        assert_eq!(Protocols(0xb).to_string(), "SSL|HYBRID|HYBRID_EX(0xb)");
        assert_eq!(Protocols(0).names(), "RDP");
        assert_eq!(Protocols(0x41).names(), "SSL|0x40");
    }
}
