//! Standard RDP Security: which encryption methods the host accepts, and its encryption level
//! (MS-RDPBCGR 2.2.1.3-2.2.1.4, 5.3.2.1; reference §2.13, §2.15, §3.11, §4 F10).
//!
//! One connection per method: a Connection Request for Standard RDP Security, then the
//! reference's worked Connect-Initial (E16) with CS_SECURITY.encryptionMethods set to that one
//! method, then the host's Connect-Response (SC_SECURITY: method and level) or its close. Like
//! nmap's `rdp-enum-encryption`.

use serde::Serialize;

use super::nego::{NegoAnswer, NegoDialogue};
use super::{Dialogue, End, Step};
use crate::session::ConnectFailure;
use crate::wire::gcc::{EncryptionLevel, EncryptionMethods};
use crate::wire::x224::{self, Protocols, X224Pdu};
use crate::wire::{mcs, tpkt};

/// Reference E16: Connect-Initial for PROTOCOL_RDP with CS_CORE, CS_SECURITY (0x1B) and an
/// empty CS_NET, 368 bytes (TPKT and X.224 DT included).
const E16: [u8; 368] = [
    0x03, 0x00, 0x01, 0x70, 0x02, 0xf0, 0x80, 0x7f, 0x65, 0x82, 0x01, 0x64, 0x04, 0x01, 0x01, 0x04,
    0x01, 0x01, 0x01, 0x01, 0xff, 0x30, 0x19, 0x02, 0x01, 0x22, 0x02, 0x01, 0x02, 0x02, 0x01, 0x00,
    0x02, 0x01, 0x01, 0x02, 0x01, 0x00, 0x02, 0x01, 0x01, 0x02, 0x02, 0xff, 0xff, 0x02, 0x01, 0x02,
    0x30, 0x19, 0x02, 0x01, 0x01, 0x02, 0x01, 0x01, 0x02, 0x01, 0x01, 0x02, 0x01, 0x01, 0x02, 0x01,
    0x00, 0x02, 0x01, 0x01, 0x02, 0x02, 0x04, 0x20, 0x02, 0x01, 0x02, 0x30, 0x1c, 0x02, 0x02, 0xff,
    0xff, 0x02, 0x02, 0xfc, 0x17, 0x02, 0x02, 0xff, 0xff, 0x02, 0x01, 0x01, 0x02, 0x01, 0x00, 0x02,
    0x01, 0x01, 0x02, 0x02, 0xff, 0xff, 0x02, 0x01, 0x02, 0x04, 0x82, 0x01, 0x03, 0x00, 0x05, 0x00,
    0x14, 0x7c, 0x00, 0x01, 0x80, 0xfa, 0x00, 0x08, 0x00, 0x10, 0x00, 0x01, 0xc0, 0x00, 0x44, 0x75,
    0x63, 0x61, 0x80, 0xec, 0x01, 0xc0, 0xd8, 0x00, 0x04, 0x00, 0x08, 0x00, 0x80, 0x07, 0x38, 0x04,
    0x01, 0xca, 0x03, 0xaa, 0x09, 0x04, 0x00, 0x00, 0x61, 0x4a, 0x00, 0x00, 0x57, 0x00, 0x4b, 0x00,
    0x53, 0x00, 0x30, 0x00, 0x31, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x04, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x0c, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0xca, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x18, 0x00, 0x0f, 0x00, 0xaf, 0x07, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x06, 0x00, 0x00, 0x00, 0x00, 0x00, 0x02, 0xc0, 0x0c, 0x00,
    0x1b, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x03, 0xc0, 0x08, 0x00, 0x00, 0x00, 0x00, 0x00,
];
/// E16 offset of CS_CORE.clientName (block at 0x84, field at +24; 32 bytes UTF-16LE).
const CLIENT_NAME_AT: usize = 0x84 + 24;
/// E16 offset of CS_CORE.serverSelectedProtocol (0 = PROTOCOL_RDP, as the CC selected).
const SERVER_SELECTED_PROTOCOL_AT: usize = 0x158;
/// E16 offset of CS_SECURITY.encryptionMethods.
const ENCRYPTION_METHODS_AT: usize = 0x160;
/// The client name the probe announces (≤ 15 characters).
const CLIENT_NAME: &str = "rdpdiag";

/// The methods checked one by one, weakest first.
pub const METHODS: [EncryptionMethods; 4] = [
    EncryptionMethods::BIT_40,
    EncryptionMethods::BIT_56,
    EncryptionMethods::BIT_128,
    EncryptionMethods::FIPS,
];

/// `40-bit RC4`, `FIPS (3DES)`.
pub fn method_label(m: EncryptionMethods) -> String {
    match m {
        EncryptionMethods::BIT_40 => "40-bit RC4".to_owned(),
        EncryptionMethods::BIT_56 => "56-bit RC4".to_owned(),
        EncryptionMethods::BIT_128 => "128-bit RC4".to_owned(),
        EncryptionMethods::FIPS => "FIPS (3DES)".to_owned(),
        EncryptionMethods::NONE => "none".to_owned(),
        m => m.names(),
    }
}

/// The Connect-Initial of reference E16 offering exactly `methods` (CS_SECURITY
/// encryptionMethods; extEncryptionMethods stays 0), client name `rdpdiag`.
pub fn connect_initial(methods: EncryptionMethods) -> Vec<u8> {
    let mut b = E16.to_vec();
    let mut put = |at: usize, bytes: &[u8]| {
        if let Some(dst) = b.get_mut(at..at + bytes.len()) {
            dst.copy_from_slice(bytes);
        }
    };
    put(ENCRYPTION_METHODS_AT, &methods.0.to_le_bytes());
    put(SERVER_SELECTED_PROTOCOL_AT, &Protocols::RDP.0.to_le_bytes());
    let mut name = [0u8; 32];
    for (dst, unit) in name
        .chunks_exact_mut(2)
        .zip(CLIENT_NAME.encode_utf16().take(15))
    {
        dst.copy_from_slice(&unit.to_le_bytes());
    }
    put(CLIENT_NAME_AT, &name);
    b
}

/// What the host answered to a Connect-Initial offering one method.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum EncryptionOutcome {
    /// Connect-Response with SC_SECURITY choosing the offered method.
    Accepted {
        method: EncryptionMethods,
        level: EncryptionLevel,
    },
    /// SC_SECURITY with method and level NONE: the session would run unencrypted.
    NoEncryption { level: EncryptionLevel },
    /// SC_SECURITY with a method the client did not offer (xrdp FIPS level; mstsc fails).
    OtherMethod {
        method: EncryptionMethods,
        level: EncryptionLevel,
    },
    /// A Connect-Response with a non-zero result.
    Refused { result: u8, name: &'static str },
    /// A Connect-Response without SC_SECURITY.
    NoSecurityData,
    /// MCS Disconnect-Provider-Ultimatum or X.224 Disconnect Request instead.
    Disconnected { detail: String },
    /// The host closed, reset or stayed silent after the Connect-Initial.
    Ended { end: End },
    /// Something else, or bytes that do not decode.
    Garbled { detail: String },
    /// The X.224 step did not select Standard RDP Security.
    NotNegotiated { answer: NegoAnswer },
}

impl EncryptionOutcome {
    pub fn describe(&self) -> String {
        match self {
            EncryptionOutcome::Accepted { level, .. } => format!("accepted (level {level})"),
            EncryptionOutcome::NoEncryption { level } => {
                format!("the host chose no encryption at all (method NONE, level {level})")
            }
            EncryptionOutcome::OtherMethod { method, level } => format!(
                "refused: the host chose {} instead (level {level})",
                method_label(*method)
            ),
            EncryptionOutcome::Refused { result, name } => {
                format!("refused: Connect-Response result {result} {name}")
            }
            EncryptionOutcome::NoSecurityData => {
                "Connect-Response without server security data".to_owned()
            }
            EncryptionOutcome::Disconnected { detail } => format!("refused: {detail}"),
            EncryptionOutcome::Ended { end } => format!("refused: {}", end.describe()),
            EncryptionOutcome::Garbled { detail } => format!("unreadable answer: {detail}"),
            EncryptionOutcome::NotNegotiated { answer } => {
                format!("not tried: X.224 answer {}", answer.describe())
            }
        }
    }
}

/// Reads the answer to the Connect-Initial: `None` while a TPKT is incomplete and the
/// connection open.
pub fn interpret(
    offered: EncryptionMethods,
    buf: &[u8],
    end: Option<&End>,
) -> Option<EncryptionOutcome> {
    if buf.is_empty() {
        return end.map(|e| EncryptionOutcome::Ended { end: e.clone() });
    }
    let pdu = match tpkt::split_pdu(buf) {
        Ok(Some(p)) => p,
        Ok(None) => {
            return end.map(|e| EncryptionOutcome::Garbled {
                detail: format!("{} byte(s) of a TPKT, then {}", buf.len(), e.describe()),
            });
        }
        Err(e) => {
            return Some(EncryptionOutcome::Garbled {
                detail: e.to_string(),
            });
        }
    };
    Some(match x224::decode(pdu) {
        Ok(X224Pdu::Data { payload_offset }) => {
            match mcs::decode(pdu.get(payload_offset..).unwrap_or_default()) {
                Ok(mcs::McsPdu::ConnectResponse(r)) => {
                    if r.result != 0 {
                        EncryptionOutcome::Refused {
                            result: r.result,
                            name: mcs::result_name(r.result),
                        }
                    } else {
                        match r.server_security {
                            None => EncryptionOutcome::NoSecurityData,
                            Some(s) if s.encryption_method == offered => {
                                EncryptionOutcome::Accepted {
                                    method: s.encryption_method,
                                    level: s.encryption_level,
                                }
                            }
                            Some(s)
                                if s.encryption_method == EncryptionMethods::NONE
                                    && s.encryption_level == EncryptionLevel::NONE =>
                            {
                                EncryptionOutcome::NoEncryption {
                                    level: s.encryption_level,
                                }
                            }
                            Some(s) => EncryptionOutcome::OtherMethod {
                                method: s.encryption_method,
                                level: s.encryption_level,
                            },
                        }
                    }
                }
                Ok(mcs::McsPdu::DisconnectProviderUltimatum { reason }) => {
                    EncryptionOutcome::Disconnected {
                        detail: format!(
                            "MCS Disconnect-Provider-Ultimatum ({})",
                            mcs::dpu_reason_name(reason)
                        ),
                    }
                }
                Ok(p) => EncryptionOutcome::Garbled {
                    detail: format!("MCS {} instead of a Connect-Response", p.name()),
                },
                Err(e) => EncryptionOutcome::Garbled {
                    detail: format!("MCS: {e}"),
                },
            }
        }
        Ok(X224Pdu::DisconnectRequest { reason }) => EncryptionOutcome::Disconnected {
            detail: format!("X.224 Disconnect Request (reason {reason})"),
        },
        Ok(other) => EncryptionOutcome::Garbled {
            detail: format!("X.224 {other:?} instead of data"),
        },
        Err(e) => EncryptionOutcome::Garbled {
            detail: e.to_string(),
        },
    })
}

/// CR for Standard RDP Security, Connect-Initial offering one method, Connect-Response.
#[derive(Debug, Clone)]
pub struct EncryptionDialogue {
    method: EncryptionMethods,
    nego: NegoDialogue,
    nego_answer: Option<NegoAnswer>,
    /// Bytes after the Connection Confirm, once the Connect-Initial is sent.
    buf: Option<Vec<u8>>,
    outcome: Option<EncryptionOutcome>,
}

impl EncryptionDialogue {
    /// `request`: `Some(RDP)` for an RDP_NEG_REQ asking for Standard RDP Security, `None` for a
    /// legacy CR (a host that ignores negotiation).
    pub fn new(method: EncryptionMethods, request: Option<Protocols>) -> Self {
        Self {
            method,
            nego: NegoDialogue::new(request),
            nego_answer: None,
            buf: None,
            outcome: None,
        }
    }

    pub fn result(&self) -> EncryptionResult {
        let outcome = match (&self.outcome, &self.nego_answer) {
            (Some(o), _) => o.clone(),
            (None, Some(a)) => EncryptionOutcome::NotNegotiated { answer: a.clone() },
            (None, None) => EncryptionOutcome::NotNegotiated {
                answer: self.nego.answer(),
            },
        };
        EncryptionResult::new(self.method, outcome)
    }

    fn check(&mut self, end: Option<&End>) -> Step {
        let buf = self.buf.as_deref().unwrap_or_default();
        match interpret(self.method, buf, end) {
            Some(o) => {
                self.outcome = Some(o);
                Step::Done
            }
            None => Step::Read,
        }
    }
}

impl Dialogue for EncryptionDialogue {
    fn opening(&mut self) -> Vec<u8> {
        self.nego.opening()
    }

    fn on_data(&mut self, data: &[u8]) -> Step {
        if let Some(buf) = &mut self.buf {
            buf.extend_from_slice(data);
            return self.check(None);
        }
        match self.nego.on_data(data) {
            Step::Done => {
                let answer = self.nego.answer();
                let rdp = answer.selected() == Some(Protocols::RDP);
                self.nego_answer = Some(answer);
                if !rdp {
                    return Step::Done;
                }
                self.buf = Some(self.nego.leftover().to_vec());
                Step::Send(connect_initial(self.method))
            }
            s => s,
        }
    }

    fn on_end(&mut self, end: End) {
        if self.outcome.is_some() {
            return;
        }
        if self.buf.is_some() {
            self.check(Some(&end));
        } else {
            self.nego.on_end(end);
            self.nego_answer = Some(self.nego.answer());
        }
    }

    fn on_connect_failed(&mut self, failure: ConnectFailure) {
        self.nego_answer = Some(NegoAnswer::ConnectFailed { failure });
    }
}

/// One method check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EncryptionResult {
    pub method: EncryptionMethods,
    pub label: String,
    /// The host runs a session with this method (or with none at all).
    pub accepted: bool,
    pub outcome: EncryptionOutcome,
}

impl EncryptionResult {
    pub fn new(method: EncryptionMethods, outcome: EncryptionOutcome) -> Self {
        Self {
            method,
            label: method_label(method),
            accepted: matches!(
                outcome,
                EncryptionOutcome::Accepted { .. } | EncryptionOutcome::NoEncryption { .. }
            ),
            outcome,
        }
    }

    /// The level the host announced, if it answered with SC_SECURITY.
    pub fn level(&self) -> Option<EncryptionLevel> {
        match &self.outcome {
            EncryptionOutcome::Accepted { level, .. }
            | EncryptionOutcome::NoEncryption { level }
            | EncryptionOutcome::OtherMethod { level, .. } => Some(*level),
            _ => None,
        }
    }
}

/// All method checks and what they add up to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RdpSecSummary {
    /// The X.224 request used (`None`: a legacy CR).
    pub requested: Option<Protocols>,
    pub methods: Vec<EncryptionResult>,
    /// Labels of the accepted methods.
    pub accepted: Vec<String>,
    /// The host's encryption level, from any Connect-Response.
    pub level: Option<EncryptionLevel>,
    /// The session would run unencrypted (method and level NONE).
    pub unencrypted: bool,
    pub findings: Vec<String>,
}

impl RdpSecSummary {
    pub fn new(requested: Option<Protocols>, methods: Vec<EncryptionResult>) -> Self {
        let accepted: Vec<String> = methods
            .iter()
            .filter(|r| matches!(r.outcome, EncryptionOutcome::Accepted { .. }))
            .map(|r| r.label.clone())
            .collect();
        let level = methods.iter().find_map(EncryptionResult::level);
        let unencrypted = methods
            .iter()
            .any(|r| matches!(r.outcome, EncryptionOutcome::NoEncryption { .. }));
        let mut findings = Vec::new();
        if unencrypted {
            findings.push(
                "Standard RDP Security without any encryption (method/level NONE): everything, passwords included, travels in clear"
                    .to_owned(),
            );
        }
        let weak: Vec<&str> = methods
            .iter()
            .filter(|r| {
                matches!(r.outcome, EncryptionOutcome::Accepted { .. })
                    && matches!(
                        r.method,
                        EncryptionMethods::BIT_40 | EncryptionMethods::BIT_56
                    )
            })
            .map(|r| r.label.as_str())
            .collect();
        if !weak.is_empty() {
            findings.push(format!(
                "weak Standard RDP Security methods accepted: {}",
                weak.join(", ")
            ));
        }
        if level == Some(EncryptionLevel::LOW) {
            findings.push("encryption level LOW: only client-to-host data is encrypted".to_owned());
        }
        Self {
            requested,
            methods,
            accepted,
            level,
            unencrypted,
            findings,
        }
    }

    pub fn accepts(&self, m: EncryptionMethods) -> bool {
        self.methods.iter().any(|r| r.method == m && r.accepted)
    }

    /// Does the host run a session with any of the methods checked?
    pub fn any_accepted(&self) -> bool {
        self.methods.iter().any(|r| r.accepted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::mcs::McsPdu;

    fn hex(s: &str) -> Vec<u8> {
        hex::decode(s.split_whitespace().collect::<String>()).unwrap()
    }

    /// Reference E17t's Connect-Response (TLS case) with SC_SECURITY method/level as given.
    fn connect_response(method: u32, level: u32) -> Vec<u8> {
        let mut b = hex("03 00 00 6c 02 f0 80 7f 66 82 00 60 0a 01 00 02
             01 00 30 1a 02 01 22 02 01 03 02 01 00 02 01 01
             02 01 00 02 01 01 02 03 00 ff f8 02 01 02 04 82
             00 3a 00 05 00 14 7c 00 01 2a 14 76 0a 01 01 00
             01 c0 00 4d 63 44 6e 24 01 0c 10 00 0d 00 08 00
             0b 00 00 00 0f 00 00 00 03 0c 08 00 eb 03 00 00
             02 0c 0c 00 00 00 00 00 00 00 00 00");
        // SC_SECURITY encryptionMethod at 0x64, encryptionLevel at 0x68 (no random/cert follow:
        // the decoder reads method and level first).
        b[0x64..0x68].copy_from_slice(&method.to_le_bytes());
        b[0x68..0x6c].copy_from_slice(&level.to_le_bytes());
        b
    }

    #[test]
    fn connect_initial_decodes_with_one_method() {
        for m in METHODS {
            let b = connect_initial(m);
            assert_eq!(b.len(), 368);
            let X224Pdu::Data { payload_offset } = x224::decode(&b).unwrap() else {
                panic!()
            };
            let McsPdu::ConnectInitial(ci) = mcs::decode(&b[payload_offset..]).unwrap() else {
                panic!()
            };
            let sec = ci.client_security.unwrap();
            assert_eq!(sec.encryption_methods, m);
            let core = ci.client_core.unwrap();
            assert_eq!(core.client_name, "rdpdiag");
            assert_eq!(core.server_selected_protocol, Some(Protocols::RDP));
            assert!(ci.anomalies.is_empty(), "{:?}", ci.anomalies);
        }
        // Only the patched bytes differ from E16.
        let b = connect_initial(EncryptionMethods(0x1b));
        let diff: Vec<usize> = (0..368).filter(|&i| b[i] != E16[i]).collect();
        assert!(
            diff.iter()
                .all(|&i| (CLIENT_NAME_AT..CLIENT_NAME_AT + 32).contains(&i)),
            "{diff:?}"
        );
    }

    #[test]
    fn connect_responses() {
        let m128 = EncryptionMethods::BIT_128;
        assert_eq!(
            interpret(m128, &connect_response(2, 3), None),
            Some(EncryptionOutcome::Accepted {
                method: m128,
                level: EncryptionLevel::HIGH
            })
        );
        assert_eq!(
            interpret(EncryptionMethods::BIT_40, &connect_response(0x10, 4), None),
            Some(EncryptionOutcome::OtherMethod {
                method: EncryptionMethods::FIPS,
                level: EncryptionLevel::FIPS
            })
        );
        assert_eq!(
            interpret(m128, &connect_response(0, 0), None),
            Some(EncryptionOutcome::NoEncryption {
                level: EncryptionLevel::NONE
            })
        );
        // result rt-unspecified-failure.
        let mut b = connect_response(2, 3);
        b[14] = 14;
        assert!(matches!(
            interpret(m128, &b, None),
            Some(EncryptionOutcome::Refused {
                result: 14,
                name: "rt-unspecified-failure"
            })
        ));
        // Disconnect-Provider-Ultimatum, close, cut TPKT.
        assert!(matches!(
            interpret(m128, &hex("03 00 00 09 02 f0 80 21 80"), None),
            Some(EncryptionOutcome::Disconnected { .. })
        ));
        assert_eq!(interpret(m128, &[], None), None);
        assert_eq!(
            interpret(m128, &[], Some(&End::Closed)),
            Some(EncryptionOutcome::Ended { end: End::Closed })
        );
        let b = connect_response(2, 3);
        for n in 1..b.len() {
            assert_eq!(interpret(m128, &b[..n], None), None, "cut at {n}");
            assert!(matches!(
                interpret(m128, &b[..n], Some(&End::Reset)),
                Some(EncryptionOutcome::Garbled { .. })
            ));
        }
    }

    #[test]
    fn e17_proprietary_certificate_response() {
        // Reference E17 (Standard RDP Security, 128-bit, CLIENT_COMPATIBLE, proprietary cert).
        let mut b = hex("03 00 01 4d 02 f0 80 7f 66 82 01 41 0a 01 00 02
            01 00 30 1a 02 01 22 02 01 03 02 01 00 02 01 01
            02 01 00 02 01 01 02 03 00 ff f8 02 01 02 04 82
            01 1b 00 05 00 14 7c 00 01 2a 14 76 0a 01 01 00
            01 c0 00 4d 63 44 6e 81 04 01 0c 10 00 0d 00 08
            00 00 00 00 00 0f 00 00 00 03 0c 08 00 eb 03 00
            00 02 0c ec 00 02 00 00 00 02 00 00 00 20 00 00
            00 b8 00 00 00");
        b.extend(0x20u8..0x40); // serverRandom
        b.extend(hex("01 00 00 00 01 00 00 00 01 00 00 00 06 00 5c 00
            52 53 41 31 48 00 00 00 00 02 00 00 3f 00 00 00 01 00 01 00"));
        b.extend(1u8..=0x40); // modulus
        b.extend([0; 8]);
        b.extend(hex("08 00 48 00"));
        b.extend([0xa5; 64]);
        b.extend([0; 8]);
        assert_eq!(b.len(), 333);
        assert_eq!(
            interpret(EncryptionMethods::BIT_128, &b, None),
            Some(EncryptionOutcome::Accepted {
                method: EncryptionMethods::BIT_128,
                level: EncryptionLevel::CLIENT_COMPATIBLE
            })
        );
    }

    #[test]
    fn dialogue() {
        let cc_rdp = hex("03 00 00 13 0e d0 00 00 12 34 00 02 01 08 00 00 00 00 00");
        let mut d = EncryptionDialogue::new(EncryptionMethods::FIPS, Some(Protocols::RDP));
        d.opening();
        let Step::Send(ci) = d.on_data(&cc_rdp) else {
            panic!()
        };
        assert_eq!(ci, connect_initial(EncryptionMethods::FIPS));
        assert_eq!(d.on_data(&connect_response(0x10, 4)[..20]), Step::Read);
        assert_eq!(d.on_data(&connect_response(0x10, 4)[20..]), Step::Done);
        let r = d.result();
        assert!(r.accepted);
        assert_eq!(r.level(), Some(EncryptionLevel::FIPS));
        // A host that wants TLS.
        let mut d = EncryptionDialogue::new(EncryptionMethods::BIT_40, Some(Protocols::RDP));
        d.opening();
        assert_eq!(
            d.on_data(&hex(
                "03 00 00 13 0e d0 00 00 12 34 00 03 00 08 00 01 00 00 00"
            )),
            Step::Done
        );
        assert!(matches!(
            d.result().outcome,
            EncryptionOutcome::NotNegotiated { .. }
        ));
        // Closed after the Connect-Initial (the 5.3.2.1 rule failed).
        let mut d = EncryptionDialogue::new(EncryptionMethods::BIT_40, Some(Protocols::RDP));
        d.opening();
        d.on_data(&cc_rdp);
        d.on_end(End::Closed);
        let r = d.result();
        assert!(!r.accepted);
        assert_eq!(r.outcome, EncryptionOutcome::Ended { end: End::Closed });
    }

    #[test]
    fn summary() {
        let acc = |m, l| {
            EncryptionResult::new(
                m,
                EncryptionOutcome::Accepted {
                    method: m,
                    level: EncryptionLevel(l),
                },
            )
        };
        let closed = |m| EncryptionResult::new(m, EncryptionOutcome::Ended { end: End::Closed });
        let s = RdpSecSummary::new(
            Some(Protocols::RDP),
            vec![
                closed(METHODS[0]),
                closed(METHODS[1]),
                acc(METHODS[2], 3),
                closed(METHODS[3]),
            ],
        );
        assert_eq!(s.accepted, ["128-bit RC4"]);
        assert_eq!(s.level, Some(EncryptionLevel::HIGH));
        assert!(s.accepts(EncryptionMethods::BIT_128) && !s.accepts(EncryptionMethods::FIPS));
        assert!(s.findings.is_empty());
        let s = RdpSecSummary::new(None, vec![acc(METHODS[0], 1)]);
        assert_eq!(s.findings.len(), 2);
    }

    proptest::proptest! {
        #[test]
        fn hostile_connect_responses_never_panic(at in 0usize..0x6c, v in proptest::prelude::any::<u8>(), cut in 0usize..0x6c) {
            let mut b = connect_response(2, 3);
            b[at] = v;
            let _ = interpret(EncryptionMethods::BIT_128, &b, None);
            let _ = interpret(EncryptionMethods::BIT_128, &b[..cut], Some(&End::Closed));
        }

        #[test]
        fn random_bytes_after_the_cc_never_panic(b in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200)) {
            let mut d = EncryptionDialogue::new(EncryptionMethods::BIT_40, None);
            d.opening();
            d.on_data(&hex("03 00 00 0b 06 d0 00 00 12 34 00"));
            for c in b.chunks(13) {
                if d.on_data(c) == Step::Done { break; }
            }
            d.on_end(End::Closed);
            let _ = d.result().outcome.describe();
        }
    }
}
