//! Hand-built TLS ClientHellos for exactly one version (TLS 1.0, 1.1, 1.2 or 1.3), and the
//! interpretation of the host's clear answer: ServerHello, Certificate (TLS ≤ 1.2), an alert,
//! an RDP PDU where TLS belongs, or a close (RFC 2246/4346/5246/8446; reference §2.7, §4 F5-F6).
//!
//! rustls speaks neither TLS 1.0 nor 1.1, and a rustls handshake hides the host's choice behind
//! an error; a ClientHello built here offers what a Windows client offers for that version and
//! lets the probe read the host's pick byte by byte. Nothing after the ServerHello flight is
//! needed: the probe closes there.

use serde::Serialize;

use crate::wire::tls::{
    self, Alert, ContentType, HandshakeReassembler, ServerHello, extension_type, handshake_type,
};
use crate::wire::{mcs, tpkt, x224};

/// The cipher suites offered, by probe.
pub mod suites {
    /// TLS 1.3 (RFC 8446 §B.4): AES-256-GCM, AES-128-GCM, ChaCha20-Poly1305.
    pub const TLS13: &[u16] = &[0x1302, 0x1301, 0x1303];
    /// TLS 1.2 as Windows 10/11 Schannel offers them by default (reference §6.3), ECDHE first,
    /// then RSA key exchange and CBC, then 3DES, and the renegotiation SCSV.
    pub const TLS12: &[u16] = &[
        0xc02c, 0xc02b, 0xc030, 0xc02f, 0x009f, 0x009e, 0xc024, 0xc023, 0xc028, 0xc027, 0xc00a,
        0xc009, 0xc014, 0xc013, 0x009d, 0x009c, 0x003d, 0x003c, 0x0035, 0x002f, 0x000a, 0x00ff,
    ];
    /// TLS 1.2 as a hardened client offers them: ECDHE with AEAD only.
    pub const TLS12_STRICT: &[u16] = &[0xc02c, 0xc02b, 0xc030, 0xc02f, 0xcca9, 0xcca8, 0x00ff];
    /// TLS 1.0/1.1: every CBC/RC4 suite an old host may still pick (no GCM or SHA-256 suites,
    /// which need TLS 1.2).
    pub const LEGACY: &[u16] = &[
        0xc00a, 0xc009, 0xc014, 0xc013, 0x0039, 0x0033, 0x0035, 0x002f, 0x000a, 0x0005, 0x0004,
        0x00ff,
    ];
}

/// Signature schemes offered (RFC 8446 §4.2.3): RSA-PSS, ECDSA, PKCS#1, then SHA-1 ones so a
/// legacy host can still sign.
const SIGNATURE_SCHEMES: &[u16] = &[
    0x0804, 0x0805, 0x0806, 0x0403, 0x0503, 0x0603, 0x0401, 0x0501, 0x0601, 0x0201, 0x0203,
];
/// x25519, secp256r1, secp384r1 (RFC 8446 §4.2.7).
const GROUPS: &[u16] = &[0x001d, 0x0017, 0x0018];
const X25519: u16 = 0x001d;

/// Which ClientHello to build.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Offer {
    Tls10,
    Tls11,
    Tls12,
    /// TLS 1.2 with ECDHE+AEAD suites only (a hardened client).
    Tls12Strict,
    Tls13,
}

impl Offer {
    /// The four version probes, oldest first.
    pub const VERSIONS: [Offer; 4] = [Offer::Tls10, Offer::Tls11, Offer::Tls12, Offer::Tls13];

    /// The protocol version offered.
    pub fn version(self) -> u16 {
        match self {
            Offer::Tls10 => tls::TLS1_0,
            Offer::Tls11 => tls::TLS1_1,
            Offer::Tls12 | Offer::Tls12Strict => tls::TLS1_2,
            Offer::Tls13 => tls::TLS1_3,
        }
    }

    pub fn suites(self) -> &'static [u16] {
        match self {
            Offer::Tls10 | Offer::Tls11 => suites::LEGACY,
            Offer::Tls12 => suites::TLS12,
            Offer::Tls12Strict => suites::TLS12_STRICT,
            Offer::Tls13 => suites::TLS13,
        }
    }

    /// `TLS 1.2`, `TLS 1.2 (ECDHE+AEAD only)`.
    pub fn label(self) -> String {
        match self {
            Offer::Tls12Strict => "TLS 1.2 (ECDHE+AEAD only)".to_owned(),
            o => tls::version_name(o.version()),
        }
    }
}

/// The random parts of a ClientHello, from the driver (no randomness in here).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HelloRandom {
    pub random: [u8; 32],
    /// legacy_session_id (RFC 8446 §D.4 middlebox compatibility: 32 bytes).
    pub session_id: [u8; 32],
    /// An X25519 public key for TLS 1.3 (any 32 bytes are a valid point; the probe never
    /// completes the key exchange).
    pub key_share: [u8; 32],
}

fn u16_list(out: &mut Vec<u8>, items: &[u16], len_bytes: usize) {
    let n = items.len() * 2;
    if len_bytes == 1 {
        out.push(u8::try_from(n).unwrap_or(u8::MAX));
    } else {
        out.extend_from_slice(&u16::try_from(n).unwrap_or(u16::MAX).to_be_bytes());
    }
    for i in items {
        out.extend_from_slice(&i.to_be_bytes());
    }
}

fn extension(out: &mut Vec<u8>, ty: u16, data: &[u8]) {
    out.extend_from_slice(&ty.to_be_bytes());
    out.extend_from_slice(&u16::try_from(data.len()).unwrap_or(u16::MAX).to_be_bytes());
    out.extend_from_slice(data);
}

/// Builds the ClientHello record for `offer` (reference §2.7.3). `sni`: a DNS name (IP literals
/// are never sent, RFC 6066 §3).
///
/// ```text
/// 16 03 01 LL LL | 01 LLLLLL | version | random | 20 session_id | suites | 01 00 | extensions
/// ```
pub fn client_hello(offer: Offer, r: &HelloRandom, sni: Option<&str>) -> Vec<u8> {
    let mut body = Vec::with_capacity(512);
    // legacy_version: the offered version, capped at TLS 1.2 (TLS 1.3 goes in
    // supported_versions, RFC 8446 §4.1.2).
    body.extend_from_slice(&offer.version().min(tls::TLS1_2).to_be_bytes());
    body.extend_from_slice(&r.random);
    body.push(32);
    body.extend_from_slice(&r.session_id);
    u16_list(&mut body, offer.suites(), 2);
    body.extend_from_slice(&[1, 0]); // compression_methods: null only
    let mut ext = Vec::with_capacity(256);
    if let Some(name) = sni.filter(|n| n.parse::<std::net::IpAddr>().is_err() && !n.is_empty()) {
        let name = name.as_bytes();
        let mut d = Vec::with_capacity(name.len() + 5);
        d.extend_from_slice(
            &u16::try_from(name.len() + 3)
                .unwrap_or(u16::MAX)
                .to_be_bytes(),
        );
        d.push(0); // host_name
        d.extend_from_slice(&u16::try_from(name.len()).unwrap_or(u16::MAX).to_be_bytes());
        d.extend_from_slice(name);
        extension(&mut ext, extension_type::SERVER_NAME, &d);
    }
    let mut d = Vec::new();
    u16_list(&mut d, GROUPS, 2);
    extension(&mut ext, extension_type::SUPPORTED_GROUPS, &d);
    extension(&mut ext, extension_type::EC_POINT_FORMATS, &[1, 0]);
    let mut d = Vec::new();
    u16_list(&mut d, SIGNATURE_SCHEMES, 2);
    extension(&mut ext, extension_type::SIGNATURE_ALGORITHMS, &d);
    extension(&mut ext, extension_type::EXTENDED_MASTER_SECRET, &[]);
    extension(&mut ext, extension_type::RENEGOTIATION_INFO, &[0]);
    if offer == Offer::Tls13 {
        let mut d = Vec::new();
        u16_list(&mut d, &[tls::TLS1_3], 1);
        extension(&mut ext, extension_type::SUPPORTED_VERSIONS, &d);
        let mut d = Vec::with_capacity(38);
        d.extend_from_slice(&36u16.to_be_bytes()); // client_shares length
        d.extend_from_slice(&X25519.to_be_bytes());
        d.extend_from_slice(&32u16.to_be_bytes());
        d.extend_from_slice(&r.key_share);
        extension(&mut ext, extension_type::KEY_SHARE, &d);
        extension(&mut ext, extension_type::PSK_KEY_EXCHANGE_MODES, &[1, 1]);
    }
    body.extend_from_slice(&u16::try_from(ext.len()).unwrap_or(u16::MAX).to_be_bytes());
    body.extend_from_slice(&ext);

    let mut hs = Vec::with_capacity(body.len() + 4);
    hs.push(handshake_type::CLIENT_HELLO);
    hs.extend_from_slice(&u32::try_from(body.len()).unwrap_or(0).to_be_bytes()[1..]);
    hs.extend_from_slice(&body);
    let mut rec = Vec::with_capacity(hs.len() + 5);
    rec.push(ContentType::HANDSHAKE.0);
    // The record version of a first ClientHello: TLS 1.0 is what every server accepts
    // (RFC 8446 §5.1 "legacy_record_version").
    rec.extend_from_slice(&tls::TLS1_0.to_be_bytes());
    rec.extend_from_slice(&u16::try_from(hs.len()).unwrap_or(u16::MAX).to_be_bytes());
    rec.extend_from_slice(&hs);
    rec
}

/// How the host answered a ClientHello.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "answer", rename_all = "snake_case")]
pub enum HelloAnswer {
    /// A ServerHello (or a TLS 1.3 HelloRetryRequest).
    ServerHello {
        version: u16,
        cipher_suite: u16,
        hello_retry: bool,
        /// The Certificate message (TLS ≤ 1.2), DER leaf first.
        #[serde(skip)]
        certificates: Vec<Vec<u8>>,
        anomalies: Vec<String>,
    },
    /// A clear alert instead of a ServerHello.
    Alert { level: u8, description: u8 },
    /// The host sent an RDP PDU where TLS belongs (xrdp with an unusable key: a clear MCS
    /// Disconnect-Provider-Ultimatum, reference §4 F5 (d)).
    RdpInsteadOfTls { detail: String },
    /// Not TLS at all.
    NotTls { first_bytes: String },
    /// TLS that does not parse.
    Malformed { detail: String },
    /// The connection ended before a ServerHello.
    Ended { end: super::End },
}

/// Reads the host's first flight after a ClientHello.
#[derive(Debug, Clone, Default)]
pub struct ServerFlight {
    buf: Vec<u8>,
    /// Bytes of `buf` already framed into records.
    consumed: usize,
    hs: HandshakeReassembler,
    hello: Option<ServerHello>,
    certificates: Vec<Vec<u8>>,
    anomalies: Vec<String>,
    answer: Option<HelloAnswer>,
}

impl ServerFlight {
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds bytes; true once the answer is known.
    pub fn push(&mut self, data: &[u8]) -> bool {
        if self.answer.is_some() {
            return true;
        }
        self.buf.extend_from_slice(data);
        self.answer = self.step();
        self.answer.is_some()
    }

    /// The connection ended; returns the answer.
    pub fn finish(&mut self, end: Option<super::End>) -> HelloAnswer {
        if let Some(a) = &self.answer {
            return a.clone();
        }
        let a = match (self.hello.take(), end) {
            // A ServerHello without the rest of the flight is still the host's choice.
            (Some(h), _) => self.accepted(&h),
            (None, end) => HelloAnswer::Ended {
                end: end.unwrap_or(super::End::Timeout),
            },
        };
        self.answer = Some(a.clone());
        a
    }

    fn accepted(&self, h: &ServerHello) -> HelloAnswer {
        let mut anomalies = h.anomalies.clone();
        anomalies.extend(self.anomalies.iter().cloned());
        HelloAnswer::ServerHello {
            version: h.version(),
            cipher_suite: h.cipher_suite,
            hello_retry: h.is_hello_retry_request,
            certificates: self.certificates.clone(),
            anomalies,
        }
    }

    fn step(&mut self) -> Option<HelloAnswer> {
        let rest = self.buf.get(self.consumed..).unwrap_or_default();
        if self.consumed == 0 {
            match tls::looks_like_record(rest) {
                None => return None,
                Some(true) => {}
                Some(false) if tpkt::looks_like_tpkt(rest) == Some(true) => {
                    return rdp_pdu(rest);
                }
                Some(false) => {
                    return Some(HelloAnswer::NotTls {
                        first_bytes: hex::encode(rest.get(..16).unwrap_or(rest)),
                    });
                }
            }
        }
        loop {
            let rest = self.buf.get(self.consumed..).unwrap_or_default();
            let (header, fragment) = match tls::split_record(rest) {
                Ok(Some(r)) => r,
                Ok(None) => return None,
                Err(e) => {
                    return Some(match &self.hello {
                        Some(h) => self.accepted(&h.clone()),
                        None => HelloAnswer::Malformed {
                            detail: e.shifted(self.consumed).to_string(),
                        },
                    });
                }
            };
            let fragment_at = self.consumed.saturating_add(tls::RECORD_HEADER_LEN);
            self.consumed = self.consumed.saturating_add(header.total_len());
            match header.content_type {
                ContentType::ALERT => {
                    if let Some(a) = tls::parse_alert(fragment) {
                        return Some(match &self.hello {
                            // An alert after the ServerHello: the version and suite were
                            // chosen; say what came next.
                            Some(h) => {
                                let mut ans = self.accepted(&h.clone());
                                if let HelloAnswer::ServerHello { anomalies, .. } = &mut ans {
                                    anomalies.push(format!("then alert {a}"));
                                }
                                ans
                            }
                            None => HelloAnswer::Alert {
                                level: a.level,
                                description: a.description,
                            },
                        });
                    }
                    self.anomalies
                        .push(format!("an alert record of {} bytes", fragment.len()));
                }
                ContentType::HANDSHAKE => {
                    let fragment = fragment.to_vec();
                    for m in self
                        .hs
                        .push(&fragment, u64::try_from(fragment_at).unwrap_or(0))
                    {
                        let done = match m {
                            Ok(m) => self.on_message(m.msg_type, &m.body),
                            Err(e) => Some(match &self.hello {
                                Some(h) => self.accepted(&h.clone()),
                                None => HelloAnswer::Malformed {
                                    detail: e.to_string(),
                                },
                            }),
                        };
                        if done.is_some() {
                            return done;
                        }
                    }
                }
                // ChangeCipherSpec or encrypted data: the clear part of the flight is over.
                _ => {
                    return Some(match &self.hello {
                        Some(h) => self.accepted(&h.clone()),
                        None => HelloAnswer::Malformed {
                            detail: format!(
                                "{} record before any ServerHello",
                                header.content_type
                            ),
                        },
                    });
                }
            }
        }
    }

    /// One handshake message; `Some` when the flight says enough.
    fn on_message(&mut self, ty: u8, body: &[u8]) -> Option<HelloAnswer> {
        match (ty, &self.hello) {
            (handshake_type::SERVER_HELLO, None) => match tls::parse_server_hello(body) {
                Ok(h) => {
                    // TLS 1.3: everything after the ServerHello is encrypted.
                    if h.is_tls13() || h.is_hello_retry_request {
                        return Some(self.accepted(&h));
                    }
                    self.hello = Some(h);
                    None
                }
                Err(e) => Some(HelloAnswer::Malformed {
                    detail: e.to_string(),
                }),
            },
            (handshake_type::CERTIFICATE, Some(h)) => {
                let h = h.clone();
                match tls::parse_certificate(body, false) {
                    Ok(c) => self.certificates = c,
                    Err(e) => self.anomalies.push(format!("unreadable Certificate: {e}")),
                }
                Some(self.accepted(&h))
            }
            (handshake_type::SERVER_HELLO_DONE, Some(h)) => {
                let h = h.clone();
                Some(self.accepted(&h))
            }
            (_, None) => Some(HelloAnswer::Malformed {
                detail: format!("{} before any ServerHello", tls::handshake_type_name(ty)),
            }),
            _ => None,
        }
    }
}

/// An RDP PDU where the ServerHello belongs.
fn rdp_pdu(buf: &[u8]) -> Option<HelloAnswer> {
    let pdu = match tpkt::split_pdu(buf) {
        Ok(None) => return None,
        Ok(Some(p)) => p,
        Err(e) => {
            return Some(HelloAnswer::RdpInsteadOfTls {
                detail: format!("a broken TPKT ({e})"),
            });
        }
    };
    let detail = match x224::decode(pdu) {
        Ok(x224::X224Pdu::Data { payload_offset }) => {
            match mcs::decode(pdu.get(payload_offset..).unwrap_or_default()) {
                Ok(mcs::McsPdu::DisconnectProviderUltimatum { reason }) => format!(
                    "MCS Disconnect-Provider-Ultimatum ({})",
                    mcs::dpu_reason_name(reason)
                ),
                Ok(p) => format!("MCS {}", p.name()),
                Err(e) => format!("X.224 data ({e})"),
            }
        }
        Ok(other) => format!("an X.224 TPDU ({other:?})"),
        Err(e) => format!("a malformed X.224 TPDU ({e})"),
    };
    Some(HelloAnswer::RdpInsteadOfTls { detail })
}

impl HelloAnswer {
    /// The alert, for `Alert` answers.
    pub fn alert(&self) -> Option<Alert> {
        match self {
            HelloAnswer::Alert { level, description } => Some(Alert {
                level: *level,
                description: *description,
            }),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::probe::End;

    fn rnd() -> HelloRandom {
        HelloRandom {
            random: [7; 32],
            session_id: [9; 32],
            key_share: [0x42; 32],
        }
    }

    fn hex(s: &str) -> Vec<u8> {
        hex::decode(s.split_whitespace().collect::<String>()).unwrap()
    }

    #[test]
    fn client_hellos_parse_back_with_exactly_one_version() {
        for offer in [
            Offer::Tls10,
            Offer::Tls11,
            Offer::Tls12,
            Offer::Tls12Strict,
            Offer::Tls13,
        ] {
            let rec = client_hello(offer, &rnd(), Some("rds01.corp.example.com"));
            let (h, frag) = tls::split_record(&rec).unwrap().unwrap();
            assert_eq!(h.total_len(), rec.len());
            let msgs = HandshakeReassembler::new().push(frag, 5);
            assert_eq!(msgs.len(), 1);
            let ch = tls::parse_client_hello(&msgs[0].as_ref().unwrap().body).unwrap();
            assert!(ch.anomalies.is_empty(), "{offer:?}: {:?}", ch.anomalies);
            assert_eq!(ch.max_version(), offer.version(), "{offer:?}");
            if offer == Offer::Tls13 {
                assert_eq!(ch.offered_versions(), vec![tls::TLS1_3]);
            }
            assert_eq!(ch.cipher_suites, offer.suites());
            assert_eq!(ch.sni.as_deref(), Some("rds01.corp.example.com"));
            assert_eq!(ch.session_id_len, 32);
            if offer == Offer::Tls13 {
                assert_eq!(ch.key_share_groups, [X25519]);
            }
        }
        // No SNI for IP literals.
        let rec = client_hello(Offer::Tls12, &rnd(), Some("127.0.0.1"));
        let msgs = HandshakeReassembler::new().push(&rec[5..], 5);
        let body = &msgs[0].as_ref().unwrap().body;
        assert_eq!(tls::parse_client_hello(body).unwrap().sni, None);
    }

    /// A ServerHello handshake message (header included).
    fn server_hello(version: u16, suite: u16, tls13: bool) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend(if tls13 { 0x0303u16 } else { version }.to_be_bytes());
        b.extend([0x11; 32]); // random
        b.push(0); // session id
        b.extend(suite.to_be_bytes());
        b.push(0); // compression
        if tls13 {
            // supported_versions 0304 + key_share x25519
            let ext = hex("002b 0002 0304 0033 0024 001d 0020")
                .into_iter()
                .chain([0x55; 32])
                .collect::<Vec<u8>>();
            b.extend(u16::try_from(ext.len()).unwrap().to_be_bytes());
            b.extend(ext);
        }
        let mut m = vec![2];
        m.extend(&u32::try_from(b.len()).unwrap().to_be_bytes()[1..]);
        m.extend(b);
        m
    }

    fn record(ty: u8, version: u16, frag: &[u8]) -> Vec<u8> {
        let mut r = vec![ty];
        r.extend(version.to_be_bytes());
        r.extend(u16::try_from(frag.len()).unwrap().to_be_bytes());
        r.extend(frag);
        r
    }

    fn certificate_msg(der: &[u8]) -> Vec<u8> {
        let mut list: Vec<u8> = Vec::new();
        list.extend(&u32::try_from(der.len()).unwrap().to_be_bytes()[1..]);
        list.extend(der);
        let mut body = Vec::new();
        body.extend(&u32::try_from(list.len()).unwrap().to_be_bytes()[1..]);
        body.extend(list);
        let mut m = vec![11];
        m.extend(&u32::try_from(body.len()).unwrap().to_be_bytes()[1..]);
        m.extend(body);
        m
    }

    #[test]
    fn server_hello_versions() {
        for v in [tls::TLS1_0, tls::TLS1_1, tls::TLS1_2] {
            let mut hs = server_hello(v, 0xc014, false);
            hs.extend(certificate_msg(b"not really DER"));
            hs.extend([14, 0, 0, 0]); // ServerHelloDone
            let bytes = record(22, v, &hs);
            // Fed one byte at a time: complete only at the Certificate.
            let mut f = ServerFlight::new();
            let mut done_at = None;
            for (i, b) in bytes.iter().enumerate() {
                if f.push(&[*b]) {
                    done_at = Some(i);
                    break;
                }
            }
            assert_eq!(done_at, Some(bytes.len() - 1));
            match f.finish(None) {
                HelloAnswer::ServerHello {
                    version,
                    cipher_suite,
                    certificates,
                    ..
                } => {
                    assert_eq!((version, cipher_suite), (v, 0xc014));
                    assert_eq!(certificates, vec![b"not really DER".to_vec()]);
                }
                a => panic!("{a:?}"),
            }
        }
        // TLS 1.3: done at the ServerHello, the encrypted rest is never parsed.
        let mut bytes = record(22, 0x0303, &server_hello(0x0304, 0x1302, true));
        bytes.extend(record(20, 0x0303, &[1]));
        bytes.extend(record(23, 0x0303, &[0xde; 40]));
        let mut f = ServerFlight::new();
        assert!(f.push(&bytes));
        assert!(matches!(
            f.finish(None),
            HelloAnswer::ServerHello {
                version: 0x0304,
                cipher_suite: 0x1302,
                hello_retry: false,
                ..
            }
        ));
    }

    #[test]
    fn hello_retry_request_counts_as_tls13() {
        let mut hs = server_hello(0x0304, 0x1301, true);
        hs[6..38].copy_from_slice(&tls::HELLO_RETRY_REQUEST_RANDOM);
        let mut f = ServerFlight::new();
        assert!(f.push(&record(22, 0x0303, &hs)));
        assert!(matches!(
            f.finish(None),
            HelloAnswer::ServerHello {
                hello_retry: true,
                version: 0x0304,
                ..
            }
        ));
    }

    #[test]
    fn alerts() {
        for (desc, name) in [
            (70, "protocol_version"),
            (40, "handshake_failure"),
            (80, "internal_error"),
        ] {
            let mut f = ServerFlight::new();
            assert!(f.push(&record(21, 0x0303, &[2, desc])));
            let a = f.finish(None);
            assert_eq!(a.alert().unwrap().name(), name);
        }
        // An alert after the ServerHello: the choice stands, the alert is noted.
        let mut b = record(22, 0x0301, &server_hello(0x0301, 0x002f, false));
        b.extend(record(21, 0x0301, &[2, 80]));
        let mut f = ServerFlight::new();
        assert!(f.push(&b));
        let HelloAnswer::ServerHello { anomalies, .. } = f.finish(None) else {
            panic!()
        };
        assert!(anomalies[0].contains("internal_error"), "{anomalies:?}");
    }

    #[test]
    fn closes_and_rdp_pdus() {
        let mut f = ServerFlight::new();
        assert!(!f.push(&[]));
        assert_eq!(
            f.finish(Some(End::Reset)),
            HelloAnswer::Ended { end: End::Reset }
        );
        // A ServerHello, then a close before the Certificate.
        let mut f = ServerFlight::new();
        assert!(!f.push(&record(22, 0x0303, &server_hello(0x0303, 0xc030, false))));
        assert!(matches!(
            f.finish(Some(End::Closed)),
            HelloAnswer::ServerHello {
                version: 0x0303,
                ..
            }
        ));
        // xrdp with an unusable key: a clear MCS Disconnect-Provider-Ultimatum.
        let dpu = hex("03 00 00 09 02 f0 80 21 80");
        let mut f = ServerFlight::new();
        assert!(f.push(&dpu));
        let HelloAnswer::RdpInsteadOfTls { detail } = f.finish(None) else {
            panic!()
        };
        assert!(detail.contains("Disconnect-Provider-Ultimatum"), "{detail}");
        // Garbage.
        let mut f = ServerFlight::new();
        assert!(f.push(b"SSH-2.0-OpenSSH"));
        assert!(matches!(f.finish(None), HelloAnswer::NotTls { .. }));
        // Encrypted data before any ServerHello.
        let mut f = ServerFlight::new();
        assert!(f.push(&record(23, 0x0303, &[1, 2, 3])));
        assert!(matches!(f.finish(None), HelloAnswer::Malformed { .. }));
    }

    proptest::proptest! {
        #[test]
        fn never_panics(chunks in proptest::collection::vec(proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64), 0..8)) {
            let mut f = ServerFlight::new();
            for c in &chunks {
                if f.push(c) { break; }
            }
            let _ = f.finish(Some(End::Closed));
        }

        #[test]
        fn mutated_flights_never_panic(at in 0usize..120, v in proptest::prelude::any::<u8>()) {
            let mut hs = server_hello(0x0303, 0xc02f, false);
            hs.extend(certificate_msg(&[0x30; 20]));
            let mut b = record(22, 0x0303, &hs);
            let i = at % b.len();
            b[i] = v;
            let mut f = ServerFlight::new();
            f.push(&b);
            let _ = f.finish(Some(End::Closed));
        }
    }
}
