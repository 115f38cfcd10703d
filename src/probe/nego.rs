//! Security protocols: one X.224 Connection Request per protocol and per usual client offer,
//! and what the host's answer means (MS-RDPBCGR 2.2.1.1-2.2.1.2; reference §2.3-2.6, §3.1,
//! §3.4, §4 F2-F4).

use serde::Serialize;

use super::{Dialogue, End, Step};
use crate::session::ConnectFailure;
use crate::wire::x224::{self, FailureCode, NegData, Protocols, X224Pdu};
use crate::wire::{DecodeError, mcs, tpkt};

/// One connection request the probe sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct NegoRequest {
    /// Short label: `RDP`, `SSL|HYBRID`, `legacy`.
    pub label: &'static str,
    /// requestedProtocols; `None`: a legacy CR without RDP_NEG_REQ.
    pub requested: Option<Protocols>,
    /// Which client sends it.
    pub sent_by: &'static str,
}

/// The requests, in the order they are reported.
pub const REQUESTS: [NegoRequest; 8] = [
    NegoRequest {
        label: "RDP",
        requested: Some(Protocols::RDP),
        sent_by: "Standard RDP Security only (rdesktop fallback, old clients)",
    },
    NegoRequest {
        label: "SSL",
        requested: Some(Protocols::SSL),
        sent_by: "TLS without NLA (mstsc with enablecredsspsupport:i:0)",
    },
    NegoRequest {
        label: "HYBRID",
        requested: Some(Protocols::HYBRID),
        sent_by: "CredSSP only",
    },
    NegoRequest {
        label: "SSL|HYBRID",
        requested: Some(Protocols(Protocols::SSL.0 | Protocols::HYBRID.0)),
        sent_by: "xfreerdp, rdesktop",
    },
    NegoRequest {
        label: "SSL|HYBRID|HYBRID_EX",
        requested: Some(Protocols(
            Protocols::SSL.0 | Protocols::HYBRID.0 | Protocols::HYBRID_EX.0,
        )),
        sent_by: "mstsc (current Windows)",
    },
    NegoRequest {
        label: "RDSTLS",
        requested: Some(Protocols::RDSTLS),
        sent_by: "clients after a broker redirection",
    },
    NegoRequest {
        label: "RDSAAD",
        requested: Some(Protocols::RDSAAD),
        sent_by: "Microsoft Entra ID sign-in",
    },
    NegoRequest {
        label: "legacy",
        requested: None,
        sent_by: "CR without RDP_NEG_REQ (xfreerdp /sec:rdp, pre-RDP 5.2 clients)",
    },
];

/// Index of each request in [`REQUESTS`] (and in the report).
pub mod idx {
    pub const RDP: usize = 0;
    pub const SSL: usize = 1;
    pub const HYBRID: usize = 2;
    pub const SSL_HYBRID: usize = 3;
    pub const MSTSC: usize = 4;
    pub const RDSTLS: usize = 5;
    pub const RDSAAD: usize = 6;
    pub const LEGACY: usize = 7;
}

/// Builds an X.224 Connection Request (reference §2.3): TPKT, CR header, the mstshash cookie,
/// and an RDP_NEG_REQ (flags 0) unless `requested` is `None`.
///
/// ```text
/// 03 00 LL LL | LI E0 00 00 00 00 00 | "Cookie: mstshash=ID\r\n" | 01 00 08 00 pp pp pp pp
/// ```
pub fn connection_request(requested: Option<Protocols>, cookie: &str) -> Vec<u8> {
    let cookie = format!("Cookie: mstshash={cookie}\r\n");
    let neg_len = if requested.is_some() { 8 } else { 0 };
    // LI counts the bytes after itself: code(1) + DST-REF(2) + SRC-REF(2) + class(1) + variable.
    let li = 6 + cookie.len() + neg_len;
    let total = tpkt::HEADER_LEN + 1 + li;
    let mut out = Vec::with_capacity(total);
    out.extend_from_slice(&[tpkt::VERSION, 0]);
    out.extend_from_slice(&u16::try_from(total).unwrap_or(u16::MAX).to_be_bytes());
    out.push(u8::try_from(li).unwrap_or(u8::MAX));
    out.extend_from_slice(&[x224::CODE_CR, 0, 0, 0, 0, 0]);
    out.extend_from_slice(cookie.as_bytes());
    if let Some(p) = requested {
        out.extend_from_slice(&[0x01, 0x00, 0x08, 0x00]);
        out.extend_from_slice(&p.0.to_le_bytes());
    }
    out
}

/// What the host answered to one connection request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "answer", rename_all = "snake_case")]
pub enum NegoAnswer {
    /// RDP_NEG_RSP.
    Selected { protocol: Protocols, flags: u8 },
    /// RDP_NEG_FAILURE.
    Failure { code: FailureCode },
    /// A Connection Confirm without rdpNegData: a legacy host (Standard RDP Security implied),
    /// or the normal answer to a legacy request.
    NoNegotiation,
    /// The connection ended without a Connection Confirm.
    Ended { end: End },
    /// The host sent something that is not a TPKT.
    NotRdp { first_bytes: String },
    /// A TPKT whose X.224 content is malformed.
    Malformed { error: DecodeError },
    /// The host ended the connection with an RDP PDU instead of a Connection Confirm (an MCS
    /// Disconnect-Provider-Ultimatum, an X.224 Disconnect Request): a refusal without a code.
    Disconnected { detail: String },
    /// A well-formed TPDU other than a Connection Confirm (ER, CR, data).
    Unexpected { tpdu: String },
    /// The TCP connection failed.
    ConnectFailed { failure: ConnectFailure },
}

impl NegoAnswer {
    /// The protocol the host will speak after this answer, if it answered with a CC.
    pub fn selected(&self) -> Option<Protocols> {
        match self {
            NegoAnswer::Selected { protocol, .. } => Some(*protocol),
            NegoAnswer::NoNegotiation => Some(Protocols::RDP),
            _ => None,
        }
    }

    /// Did the host answer with a Connection Confirm at all?
    pub fn is_confirm(&self) -> bool {
        matches!(
            self,
            NegoAnswer::Selected { .. } | NegoAnswer::Failure { .. } | NegoAnswer::NoNegotiation
        )
    }

    /// The cause id when this answer stops a client that sent the request.
    pub fn cause(&self) -> Option<&'static str> {
        Some(match self {
            NegoAnswer::Selected { .. } | NegoAnswer::NoNegotiation => return None,
            NegoAnswer::Failure { code } => failure_cause(*code),
            NegoAnswer::Ended { end: End::Timeout } => "stall",
            NegoAnswer::Ended { .. } | NegoAnswer::Disconnected { .. } => {
                "x224.host_closed_after_request"
            }
            NegoAnswer::NotRdp { .. } => "x224.not_rdp",
            NegoAnswer::Malformed { .. } | NegoAnswer::Unexpected { .. } => "x224.malformed",
            NegoAnswer::ConnectFailed { failure } => super::connect_cause(failure),
        })
    }

    /// One line for humans.
    pub fn describe(&self) -> String {
        match self {
            NegoAnswer::Selected { protocol, flags } => {
                format!("selected {} (flags {flags:#04x})", protocol.names())
            }
            NegoAnswer::Failure { code } => format!("RDP_NEG_FAILURE {code}"),
            NegoAnswer::NoNegotiation => "Connection Confirm without negotiation data".to_owned(),
            NegoAnswer::Ended { end } => format!("no Connection Confirm: {}", end.describe()),
            NegoAnswer::NotRdp { first_bytes } => format!("not RDP: {first_bytes}"),
            NegoAnswer::Malformed { error } => format!("malformed answer: {error}"),
            NegoAnswer::Disconnected { detail } => {
                format!("no Connection Confirm: the host sent {detail}")
            }
            NegoAnswer::Unexpected { tpdu } => format!("unexpected {tpdu}"),
            NegoAnswer::ConnectFailed { failure } => super::describe_connect_failure(failure),
        }
    }
}

/// The catalog id for an RDP_NEG_FAILURE code.
pub fn failure_cause(code: FailureCode) -> &'static str {
    match code {
        FailureCode::SSL_REQUIRED_BY_SERVER => "nego.ssl_required_by_server",
        FailureCode::SSL_NOT_ALLOWED_BY_SERVER => "nego.ssl_not_allowed_by_server",
        FailureCode::SSL_CERT_NOT_ON_SERVER => "nego.ssl_cert_not_on_server",
        FailureCode::INCONSISTENT_FLAGS => "nego.inconsistent_flags",
        FailureCode::HYBRID_REQUIRED_BY_SERVER => "nego.hybrid_required_by_server",
        FailureCode::SSL_WITH_USER_AUTH_REQUIRED_BY_SERVER => {
            "nego.ssl_with_user_auth_required_by_server"
        }
        _ => "nego.unknown_failure",
    }
}

/// Reads the host's answer to a Connection Request from the bytes received so far: `None`
/// while a TPKT is incomplete and the connection is open (`end` is `None`).
pub fn interpret(buf: &[u8], end: Option<&End>) -> Option<NegoAnswer> {
    if let Some(false) = tpkt::looks_like_tpkt(buf) {
        return Some(NegoAnswer::NotRdp {
            first_bytes: hex::encode(buf.get(..16).unwrap_or(buf)),
        });
    }
    match x224::decode_next(buf) {
        Ok(Some((pdu, pdu_len))) => Some(match pdu {
            X224Pdu::ConnectionConfirm(cc) => match cc.neg {
                Some(NegData::Response {
                    selected, flags, ..
                }) => NegoAnswer::Selected {
                    protocol: selected,
                    flags,
                },
                Some(NegData::Failure { code, .. }) => NegoAnswer::Failure { code },
                None => NegoAnswer::NoNegotiation,
            },
            X224Pdu::DisconnectRequest { reason } => NegoAnswer::Disconnected {
                detail: format!("an X.224 Disconnect Request (reason {reason})"),
            },
            X224Pdu::Error { cause } => NegoAnswer::Unexpected {
                tpdu: format!("X.224 Error TPDU (cause {cause})"),
            },
            X224Pdu::Data { payload_offset } => {
                let mcs_bytes = buf.get(payload_offset..pdu_len).unwrap_or_default();
                match mcs::decode(mcs_bytes) {
                    Ok(mcs::McsPdu::DisconnectProviderUltimatum { reason }) => {
                        NegoAnswer::Disconnected {
                            detail: format!(
                                "an MCS Disconnect-Provider-Ultimatum ({})",
                                mcs::dpu_reason_name(reason)
                            ),
                        }
                    }
                    Ok(p) => NegoAnswer::Unexpected {
                        tpdu: format!("MCS {} before any Connection Confirm", p.name()),
                    },
                    Err(_) => NegoAnswer::Unexpected {
                        tpdu: "X.224 Data before any Connection Confirm".to_owned(),
                    },
                }
            }
            X224Pdu::ConnectionRequest(_) => NegoAnswer::Unexpected {
                tpdu: "X.224 Connection Request (an echo?)".to_owned(),
            },
            X224Pdu::Other { code } => NegoAnswer::Unexpected {
                tpdu: format!("X.224 TPDU code {code:#04x}"),
            },
        }),
        Err(error) => Some(NegoAnswer::Malformed { error }),
        Ok(None) => end.map(|e| NegoAnswer::Ended { end: e.clone() }),
    }
}

/// Sends one Connection Request, reads the Connection Confirm.
#[derive(Debug, Clone)]
pub struct NegoDialogue {
    requested: Option<Protocols>,
    buf: Vec<u8>,
    answer: Option<NegoAnswer>,
}

impl NegoDialogue {
    pub fn new(requested: Option<Protocols>) -> Self {
        Self {
            requested,
            buf: Vec::new(),
            answer: None,
        }
    }

    /// The answer; `Ended(Timeout)` if the dialogue never got one (it always does once the
    /// driver has run it).
    pub fn answer(&self) -> NegoAnswer {
        self.answer
            .clone()
            .unwrap_or(NegoAnswer::Ended { end: End::Timeout })
    }

    /// Bytes received after the Connection Confirm (a host that already sent more).
    pub fn leftover(&self) -> &[u8] {
        match tpkt::split_pdu(&self.buf) {
            Ok(Some(pdu)) => self.buf.get(pdu.len()..).unwrap_or_default(),
            _ => &[],
        }
    }
}

impl Dialogue for NegoDialogue {
    fn opening(&mut self) -> Vec<u8> {
        connection_request(self.requested, super::COOKIE)
    }

    fn on_data(&mut self, data: &[u8]) -> Step {
        self.buf.extend_from_slice(data);
        match interpret(&self.buf, None) {
            Some(a) => {
                self.answer = Some(a);
                Step::Done
            }
            None => Step::Read,
        }
    }

    fn on_end(&mut self, end: End) {
        if self.answer.is_none() {
            self.answer = interpret(&self.buf, Some(&end));
        }
    }

    fn on_connect_failed(&mut self, failure: ConnectFailure) {
        self.answer = Some(NegoAnswer::ConnectFailed { failure });
    }
}

/// One request and its answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NegoResult {
    pub request: NegoRequest,
    pub answer: NegoAnswer,
    /// Cause id when this answer stops a client that sends this request.
    pub cause: Option<&'static str>,
    /// Odd answers: a selected protocol that was not requested, several bits set.
    pub anomalies: Vec<String>,
}

impl NegoResult {
    pub fn new(request: NegoRequest, answer: NegoAnswer) -> Self {
        let mut anomalies = Vec::new();
        if let NegoAnswer::Selected { protocol, .. } = &answer {
            let asked = request.requested.unwrap_or(Protocols::RDP);
            if protocol.0.count_ones() > 1 {
                anomalies.push(format!(
                    "selectedProtocol {protocol} has more than one bit set"
                ));
            } else if !asked.contains(*protocol) {
                anomalies.push(format!(
                    "the host selected {} although the request asked for {}",
                    protocol.names(),
                    asked.names()
                ));
            }
            if request.requested.is_none() {
                anomalies.push("an RDP_NEG_RSP answering a request without RDP_NEG_REQ".to_owned());
            }
        }
        if request.requested.is_some() && answer == NegoAnswer::NoNegotiation {
            anomalies.push(
                "no RDP_NEG_RSP although the request carried RDP_NEG_REQ (legacy host)".to_owned(),
            );
        }
        Self {
            request,
            cause: answer.cause(),
            answer,
            anomalies,
        }
    }
}

/// Whether the host insists on Network Level Authentication.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NlaSupport {
    /// CredSSP is selected when offered, and requests without it are refused.
    Required,
    /// CredSSP is selected when offered, TLS or RDP security also work.
    Supported,
    /// The host never selects CredSSP.
    NotOffered,
    /// No answer to judge from.
    Unknown,
}

/// What the answers say about the host's security-layer settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NegoSummary {
    pub nla: NlaSupport,
    /// A request for TLS without CredSSP (SSL) is accepted.
    pub tls_without_nla: bool,
    /// Standard RDP Security is accepted (RDP request selected RDP, or a legacy host).
    pub rdp_security_allowed: bool,
    /// TLS (with or without CredSSP) is required: RDP requests are refused.
    pub tls_required: bool,
    /// The host ignores RDP_NEG_REQ (answers without negotiation data).
    pub legacy_host: bool,
    /// The host answers requests for TLS with Standard RDP Security (security layer "RDP").
    pub rdp_instead_of_tls: bool,
    /// HYBRID_EX (Early User Authorization) selected for mstsc's request.
    pub hybrid_ex: bool,
    pub rdstls: bool,
    pub rdsaad: bool,
    /// Requests the host dropped without an answer (labels).
    pub dropped: Vec<&'static str>,
    /// What to request for the TLS version checks (a request that got TLS selected).
    pub tls_request: Option<Protocols>,
    /// What to request for the NTLM check (a request that got CredSSP selected).
    pub nla_request: Option<Protocols>,
    /// What to request for the Standard RDP Security checks: `Some(None)` = a legacy CR.
    pub rdp_request: Option<Option<Protocols>>,
    /// Conclusions in words.
    pub conclusions: Vec<String>,
}

/// Judges the answers, indexed as [`REQUESTS`].
pub fn summarize(results: &[NegoResult]) -> NegoSummary {
    let answer = |i: usize| results.get(i).map(|r| &r.answer);
    let selected = |i: usize| answer(i).and_then(NegoAnswer::selected);
    let any_confirm = results.iter().any(|r| r.answer.is_confirm());

    let tls_without_nla = selected(idx::SSL) == Some(Protocols::SSL);
    let nla_selected = |i: usize| selected(i).is_some_and(Protocols::uses_credssp);
    let nla_supported = [idx::HYBRID, idx::SSL_HYBRID, idx::MSTSC]
        .into_iter()
        .any(nla_selected);
    let rdp_security_allowed = matches!(
        answer(idx::RDP),
        Some(
            NegoAnswer::Selected {
                protocol: Protocols::RDP,
                ..
            } | NegoAnswer::NoNegotiation
        )
    );
    let neg_req_confirms: Vec<&NegoAnswer> = results
        .iter()
        .filter(|r| r.request.requested.is_some() && r.answer.is_confirm())
        .map(|r| &r.answer)
        .collect();
    let legacy_host = !neg_req_confirms.is_empty()
        && neg_req_confirms
            .iter()
            .all(|a| **a == NegoAnswer::NoNegotiation);
    let rdp_instead_of_tls = !legacy_host
        && [idx::SSL, idx::SSL_HYBRID, idx::MSTSC]
            .into_iter()
            .any(|i| {
                matches!(
                    answer(i),
                    Some(NegoAnswer::Selected {
                        protocol: Protocols::RDP,
                        ..
                    })
                )
            });
    let nla = if nla_supported {
        if tls_without_nla || rdp_security_allowed {
            NlaSupport::Supported
        } else {
            NlaSupport::Required
        }
    } else if any_confirm {
        NlaSupport::NotOffered
    } else {
        NlaSupport::Unknown
    };
    let tls_required = (tls_without_nla || nla_supported) && !rdp_security_allowed;
    let first_with = |order: &[usize], ok: &dyn Fn(Protocols) -> bool| {
        order
            .iter()
            .find(|&&i| selected(i).is_some_and(ok))
            .and_then(|&i| results.get(i))
            .and_then(|r| r.request.requested)
    };
    let tls_request = first_with(
        &[
            idx::SSL,
            idx::SSL_HYBRID,
            idx::HYBRID,
            idx::MSTSC,
            idx::RDSTLS,
            idx::RDSAAD,
        ],
        &Protocols::uses_tls,
    );
    let nla_request = first_with(
        &[idx::SSL_HYBRID, idx::HYBRID, idx::MSTSC],
        &Protocols::uses_credssp,
    );
    let rdp_request = if rdp_security_allowed {
        Some(Some(Protocols::RDP))
    } else if legacy_host {
        Some(None)
    } else {
        None
    };
    let dropped: Vec<&'static str> = results
        .iter()
        .filter(|r| {
            matches!(
                r.answer,
                NegoAnswer::Ended { .. } | NegoAnswer::Disconnected { .. }
            )
        })
        .map(|r| r.request.label)
        .collect();
    let hybrid_ex = selected(idx::MSTSC) == Some(Protocols::HYBRID_EX);
    let rdstls = selected(idx::RDSTLS) == Some(Protocols::RDSTLS);
    let rdsaad = selected(idx::RDSAAD) == Some(Protocols::RDSAAD);

    let mut conclusions = Vec::new();
    if !any_confirm {
        conclusions.push("the host answered no connection request".to_owned());
    }
    if legacy_host {
        conclusions.push(
            "legacy host: it ignores the security negotiation (Standard RDP Security only)"
                .to_owned(),
        );
    }
    match nla {
        NlaSupport::Required => {
            conclusions.push("NLA required: only requests offering CredSSP are accepted".to_owned())
        }
        NlaSupport::Supported => {
            conclusions.push("NLA supported (selected when offered) but not required".to_owned());
        }
        NlaSupport::NotOffered => {
            conclusions.push("NLA not offered: the host never selects CredSSP".to_owned());
        }
        NlaSupport::Unknown => {}
    }
    if tls_required {
        conclusions.push("TLS required: Standard RDP Security is refused".to_owned());
    }
    if results.iter().any(|r| {
        r.answer
            == NegoAnswer::Failure {
                code: FailureCode::SSL_CERT_NOT_ON_SERVER,
            }
    }) {
        conclusions.push(
            "the host cannot use its TLS certificate or private key (SSL_CERT_NOT_ON_SERVER)"
                .to_owned(),
        );
    }
    if rdp_security_allowed {
        conclusions
            .push("Standard RDP Security allowed (no server authentication, RC4/3DES)".to_owned());
    }
    if rdp_instead_of_tls {
        conclusions.push(
            "the host answers TLS requests by selecting Standard RDP Security (security layer forced to RDP, or an unusable certificate)"
                .to_owned(),
        );
    }
    if hybrid_ex {
        conclusions.push("HYBRID_EX (Early User Authorization) supported".to_owned());
    }
    if rdstls {
        conclusions.push("RDSTLS supported".to_owned());
    }
    if rdsaad {
        conclusions.push("RDS AAD (Entra ID) authentication supported".to_owned());
    }
    if !dropped.is_empty() && any_confirm {
        conclusions.push(format!(
            "the host dropped some requests without answering: {}",
            dropped.join(", ")
        ));
    }
    NegoSummary {
        nla,
        tls_without_nla,
        rdp_security_allowed,
        tls_required,
        legacy_host,
        rdp_instead_of_tls,
        hybrid_ex,
        rdstls,
        rdsaad,
        dropped,
        tls_request,
        nla_request,
        rdp_request,
        conclusions,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        hex::decode(s.split_whitespace().collect::<String>()).unwrap()
    }

    fn cc_rsp(selected: u32, flags: u8) -> Vec<u8> {
        let mut b = hex("03 00 00 13 0e d0 00 00 12 34 00 02");
        b.push(flags);
        b.extend([0x08, 0x00]);
        b.extend(selected.to_le_bytes());
        b
    }

    fn cc_failure(code: u32) -> Vec<u8> {
        let mut b = hex("03 00 00 13 0e d0 00 00 12 34 00 03 00 08 00");
        b.extend(code.to_le_bytes());
        b
    }

    const LEGACY_CC: &str = "03 00 00 0b 06 d0 00 00 12 34 00";

    #[test]
    fn connection_requests_decode_back() {
        for r in REQUESTS {
            let b = connection_request(r.requested, "rdpdiag");
            let X224Pdu::ConnectionRequest(cr) = x224::decode(&b).unwrap() else {
                panic!("not a CR")
            };
            assert_eq!(cr.cookie.as_deref(), Some("rdpdiag"));
            assert_eq!(cr.neg_req.map(|n| n.requested), r.requested, "{}", r.label);
            assert!(cr.anomalies.is_empty(), "{:?}", cr.anomalies);
        }
        // Reference E1 exactly (cookie "alice", 0x0b).
        assert_eq!(
            connection_request(Some(Protocols(0xb)), "alice"),
            hex("03 00 00 2b 26 e0 00 00 00 00 00 43 6f 6f 6b 69
                 65 3a 20 6d 73 74 73 68 61 73 68 3d 61 6c 69 63
                 65 0d 0a 01 00 08 00 0b 00 00 00")
        );
    }

    #[test]
    fn every_failure_code() {
        for (code, cause) in [
            (1, "nego.ssl_required_by_server"),
            (2, "nego.ssl_not_allowed_by_server"),
            (3, "nego.ssl_cert_not_on_server"),
            (4, "nego.inconsistent_flags"),
            (5, "nego.hybrid_required_by_server"),
            (6, "nego.ssl_with_user_auth_required_by_server"),
            (7, "nego.unknown_failure"),
        ] {
            let a = interpret(&cc_failure(code), None).unwrap();
            assert_eq!(
                a,
                NegoAnswer::Failure {
                    code: FailureCode(code)
                }
            );
            assert_eq!(a.cause(), Some(cause));
            assert!(crate::session::causes::lookup(cause).is_some(), "{cause}");
        }
    }

    #[test]
    fn selected_legacy_and_transport_ends() {
        assert_eq!(
            interpret(&cc_rsp(2, 3), None),
            Some(NegoAnswer::Selected {
                protocol: Protocols::HYBRID,
                flags: 3
            })
        );
        assert_eq!(
            interpret(&hex(LEGACY_CC), None),
            Some(NegoAnswer::NoNegotiation)
        );
        // Cut answers wait while open, and end as what the transport said.
        let b = cc_rsp(1, 1);
        for n in 0..b.len() {
            assert_eq!(interpret(&b[..n], None), None, "cut at {n}");
            assert_eq!(
                interpret(&b[..n], Some(&End::Reset)),
                Some(NegoAnswer::Ended { end: End::Reset })
            );
        }
        let a = interpret(&[], Some(&End::Closed)).unwrap();
        assert_eq!(a.cause(), Some("x224.host_closed_after_request"));
        let a = interpret(&[], Some(&End::Timeout)).unwrap();
        assert_eq!(a.cause(), Some("stall"));
    }

    #[test]
    fn odd_answers() {
        let a = interpret(b"HTTP/1.1 400 Bad Request\r\n", None).unwrap();
        assert!(matches!(a, NegoAnswer::NotRdp { .. }));
        assert_eq!(a.cause(), Some("x224.not_rdp"));
        // zeek_rdp-invalid-length.pcap: RDP_NEG_RSP with length 0x0100.
        let a = interpret(
            &hex("03 00 00 13 0e d0 00 00 12 34 00 02 03 00 01 00 00 02 00"),
            None,
        )
        .unwrap();
        assert!(matches!(a, NegoAnswer::Malformed { .. }));
        // A Disconnect Request instead of a CC.
        let a = interpret(&hex("03 00 00 0b 06 80 00 00 12 34 00"), None).unwrap();
        assert!(matches!(a, NegoAnswer::Disconnected { .. }), "{a:?}");
        // xrdp's answer to RDSAAD: an MCS Disconnect-Provider-Ultimatum without any CC.
        let a = interpret(&hex("03 00 00 09 02 f0 80 21 80"), None).unwrap();
        assert!(
            a.describe()
                .contains("Disconnect-Provider-Ultimatum (rn-user-requested)"),
            "{a:?}"
        );
        assert_eq!(a.cause(), Some("x224.host_closed_after_request"));
        // An X.224 Error TPDU.
        let a = interpret(&hex("03 00 00 0b 06 70 00 00 12 34 00"), None).unwrap();
        assert!(matches!(a, NegoAnswer::Unexpected { .. }), "{a:?}");
    }

    #[test]
    fn dialogue_reads_in_pieces() {
        let mut d = NegoDialogue::new(Some(Protocols::SSL));
        assert_eq!(
            d.opening(),
            connection_request(Some(Protocols::SSL), "rdpdiag")
        );
        let b = cc_rsp(1, 1);
        assert_eq!(d.on_data(&b[..5]), Step::Read);
        assert_eq!(d.on_data(&b[5..]), Step::Done);
        assert_eq!(d.answer().selected(), Some(Protocols::SSL));
        assert!(d.leftover().is_empty());
        let mut d = NegoDialogue::new(None);
        d.on_end(End::Timeout);
        assert_eq!(d.answer(), NegoAnswer::Ended { end: End::Timeout });
    }

    fn results(answers: [NegoAnswer; 8]) -> Vec<NegoResult> {
        REQUESTS
            .iter()
            .zip(answers)
            .map(|(r, a)| NegoResult::new(*r, a))
            .collect()
    }

    fn sel(p: u32) -> NegoAnswer {
        NegoAnswer::Selected {
            protocol: Protocols(p),
            flags: 0,
        }
    }

    fn fail(c: u32) -> NegoAnswer {
        NegoAnswer::Failure {
            code: FailureCode(c),
        }
    }

    #[test]
    fn nla_required_host() {
        // FreeRDP shadow /sec:nla.
        let r = results([
            fail(5),
            fail(5),
            sel(2),
            sel(2),
            sel(2),
            fail(5),
            fail(5),
            fail(5),
        ]);
        let s = summarize(&r);
        assert_eq!(s.nla, NlaSupport::Required);
        assert!(s.tls_required && !s.rdp_security_allowed && !s.tls_without_nla);
        assert_eq!(s.nla_request, Some(Protocols(3)));
        assert_eq!(s.tls_request, Some(Protocols(3)));
        assert_eq!(s.rdp_request, None);
        assert_eq!(r[1].cause, Some("nego.hybrid_required_by_server"));
    }

    #[test]
    fn tls_only_host() {
        // xrdp security_layer=tls: HYBRID requests get SSL.
        let r = results([
            fail(1),
            sel(1),
            fail(1),
            sel(1),
            sel(1),
            fail(1),
            fail(1),
            NegoAnswer::NoNegotiation,
        ]);
        let s = summarize(&r);
        assert_eq!(s.nla, NlaSupport::NotOffered);
        assert!(s.tls_required && s.tls_without_nla && !s.legacy_host);
        assert_eq!(s.tls_request, Some(Protocols::SSL));
        assert_eq!(s.nla_request, None);
        assert!(
            r[2].anomalies.is_empty(),
            "HYBRID answered by a failure is not odd"
        );
        assert!(r[3].anomalies.is_empty());
    }

    #[test]
    fn rdp_only_and_legacy_hosts() {
        // xrdp security_layer=rdp: every request gets RDP.
        let r = results([
            sel(0),
            sel(0),
            sel(0),
            sel(0),
            sel(0),
            sel(0),
            sel(0),
            NegoAnswer::NoNegotiation,
        ]);
        let s = summarize(&r);
        assert!(s.rdp_security_allowed && s.rdp_instead_of_tls && !s.tls_required);
        assert_eq!(s.nla, NlaSupport::NotOffered);
        assert_eq!(s.rdp_request, Some(Some(Protocols::RDP)));
        assert_eq!(s.tls_request, None);
        // A pre-RDP 5.2 host: no negotiation data at all.
        let l = NegoAnswer::NoNegotiation;
        let r = results([
            l.clone(),
            l.clone(),
            l.clone(),
            l.clone(),
            l.clone(),
            l.clone(),
            l.clone(),
            l,
        ]);
        let s = summarize(&r);
        assert!(s.legacy_host && s.rdp_security_allowed && !s.rdp_instead_of_tls);
        assert!(r[1].anomalies[0].contains("legacy host"));
    }

    #[test]
    fn unreachable_and_dropping_hosts() {
        let c = NegoAnswer::ConnectFailed {
            failure: ConnectFailure::Refused,
        };
        let r = results([
            c.clone(),
            c.clone(),
            c.clone(),
            c.clone(),
            c.clone(),
            c.clone(),
            c.clone(),
            c,
        ]);
        assert_eq!(r[0].cause, Some("tcp.connect_refused"));
        let s = summarize(&r);
        assert_eq!(s.nla, NlaSupport::Unknown);
        assert!(s.conclusions[0].contains("no connection request"));
        let e = NegoAnswer::Ended { end: End::Reset };
        let r = results([
            e.clone(),
            sel(1),
            e.clone(),
            sel(1),
            sel(1),
            e.clone(),
            e.clone(),
            e,
        ]);
        let s = summarize(&r);
        assert_eq!(s.dropped, ["RDP", "HYBRID", "RDSTLS", "RDSAAD", "legacy"]);
    }

    #[test]
    fn selected_protocol_not_requested_is_an_anomaly() {
        let r = NegoResult::new(REQUESTS[idx::SSL], sel(2));
        assert!(r.anomalies[0].contains("selected HYBRID"));
        let r = NegoResult::new(REQUESTS[idx::MSTSC], sel(3));
        assert!(r.anomalies[0].contains("more than one bit"));
    }

    proptest::proptest! {
        #[test]
        fn hostile_answers_never_panic(b in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64), cut in 0usize..64) {
            let _ = interpret(&b, None);
            let _ = interpret(&b[..cut.min(b.len())], Some(&End::Closed));
            let mut d = NegoDialogue::new(Some(Protocols::SSL));
            d.opening();
            for c in b.chunks(7) {
                if d.on_data(c) == Step::Done { break; }
            }
            d.on_end(End::Reset);
            let a = d.answer();
            let _ = (a.describe(), a.cause(), d.leftover().len());
        }

        #[test]
        fn mutated_confirms_never_panic(at in 0usize..19, v in proptest::prelude::any::<u8>()) {
            let mut b = cc_rsp(1, 1);
            b[at] = v;
            let _ = interpret(&b, Some(&End::Closed));
        }
    }
}
