//! TLS terminated by the driver (`proxy --fresh-cert`): the two legs' handshake results and the
//! decrypted application data, decoded exactly instead of inferred from record sizes.
//!
//! Plain text after the TLS handshake is, per direction (MS-RDPBCGR 1.3.1.1, MS-CSSP 3.1.5):
//! CredSSP TSRequests (DER SEQUENCE, first byte 0x30) when NLA was selected, then the 4-byte
//! Early User Authorization Result from the host (HYBRID_EX), then TPKT-framed X.224/MCS PDUs
//! (first byte 0x03); fast-path PDUs after that are not decoded (the direction goes opaque).

use super::{Draft, PerDir, Session, ev};
use crate::session::events::EventKind;
use crate::session::verdict::{Facts, Outcome};
use crate::session::{Direction, Micros, Phase};
use crate::wire::credssp::{self, TsRequest};
use crate::wire::x224::Protocols;
use crate::wire::{mcs, tpkt, x509};

/// Most plaintext bytes buffered per direction without a whole unit.
const MAX_PENDING: usize = 256 * 1024;

/// The host leg's TLS session, as the driver's TLS client saw it.
#[derive(Debug, Clone)]
pub struct HostTls {
    /// `TLS 1.2`, `TLS 1.3`.
    pub version: String,
    pub cipher: String,
    /// The host's certificates (DER), leaf first, as recorded by the accept-all verifier.
    pub chain: Vec<Vec<u8>>,
}

/// Why a TLS leg failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsLegError {
    /// The peer speaks only TLS versions the driver's TLS stack does not (TLS 1.0/1.1).
    NoCommonVersion(String),
    /// No cipher suite in common.
    NoCommonCipher(String),
    /// The peer sent a fatal alert.
    Alert(String),
    /// The peer closed or sent something else.
    Other(String),
}

impl TlsLegError {
    fn text(&self) -> &str {
        match self {
            Self::NoCommonVersion(s)
            | Self::NoCommonCipher(s)
            | Self::Alert(s)
            | Self::Other(s) => s,
        }
    }
}

#[derive(Debug, Default)]
pub(super) struct TermState {
    host: Option<Result<HostTls, (TlsLegError, Micros)>>,
    client: Option<Result<(String, String), (TlsLegError, Micros)>>,
    pending: PerDir<Vec<u8>>,
    offset: PerDir<u64>,
    opaque: PerDir<bool>,
    /// TSRequests in order.
    pub(super) tsrequests: Vec<(Direction, u64, Micros, TsRequest)>,
    /// Early User Authorization Result (offset, at, value).
    pub(super) eua: Option<(u64, Micros, u32)>,
}

impl TermState {
    pub(super) fn all_opaque(&self) -> bool {
        self.opaque.client && self.opaque.host
    }

    pub(super) fn facts(&self, f: &mut Facts) {
        if let Some(Ok(h)) = &self.host {
            f.tls_version = Some(format!("{} (host leg, terminated by rdpdiag)", h.version));
            f.tls_cipher = Some(h.cipher.clone());
        }
    }
}

impl Session {
    fn term_mut(&mut self) -> &mut TermState {
        self.term.get_or_insert_with(TermState::default)
    }

    /// The driver's TLS handshake with the host finished (or failed).
    pub fn on_host_tls(&mut self, result: Result<HostTls, TlsLegError>, at: Micros) {
        self.last_progress = at;
        self.enter(Phase::TlsHandshake, at);
        let text = match &result {
            Ok(h) => {
                self.tls.chain = h
                    .chain
                    .iter()
                    .filter_map(|d| x509::summarize(d).ok())
                    .collect();
                let chain = self.tls.chain.clone();
                self.push(
                    at,
                    Some(Direction::HostToClient),
                    None,
                    EventKind::TlsCertificate { chain },
                );
                format!(
                    "host leg: {} {} (terminated by rdpdiag)",
                    h.version, h.cipher
                )
            }
            Err(e) => format!("host leg TLS failed: {}", e.text()),
        };
        self.push(at, None, None, EventKind::Note { text });
        self.term_mut().host = Some(result.map_err(|e| (e, at)));
    }

    /// The driver's TLS handshake with the client (with rdpdiag's certificate) finished (or failed).
    pub fn on_client_tls(&mut self, result: Result<(String, String), TlsLegError>, at: Micros) {
        self.last_progress = at;
        let ok = result.is_ok();
        let text = match &result {
            Ok((v, c)) => format!("client leg: {v} {c} with rdpdiag's certificate"),
            Err(e) => format!("client leg TLS failed: {}", e.text()),
        };
        self.push(at, None, None, EventKind::Note { text });
        self.term_mut().client = Some(result.map_err(|e| (e, at)));
        if ok
            && self
                .term
                .as_ref()
                .is_some_and(|t| matches!(t.host, Some(Ok(_))))
        {
            self.tls.done = true;
            self.tls.client_finished = true;
            self.tls.server_finished = true;
            self.push(at, None, None, EventKind::TlsHandshakeDone);
        }
    }

    /// Decrypted application data of one direction (TLS terminated by the driver).
    pub fn feed_plaintext(&mut self, dir: Direction, bytes: &[u8], at: Micros) {
        if bytes.is_empty() {
            return;
        }
        self.last_bytes[dir] = Some(at);
        self.last_progress = at;
        let t = self.term_mut();
        if t.opaque[dir] {
            return;
        }
        t.pending[dir].extend_from_slice(bytes);
        if t.pending[dir].len() > MAX_PENDING {
            t.opaque[dir] = true;
            return;
        }
        while let Some((offset, unit)) = self.next_plain_unit(dir) {
            match unit {
                PlainUnit::Tpkt(pdu) => self.on_tpkt(dir, offset, &pdu, at),
                PlainUnit::TsRequest(raw) => self.on_tsrequest(dir, offset, &raw, at),
                PlainUnit::EarlyAuth(value) => {
                    self.enter(Phase::EarlyUserAuth, at);
                    self.term_mut().eua = Some((offset, at, value));
                    let text = format!("Early User Authorization Result: {}", eua_name(value));
                    self.push(at, Some(dir), Some(offset), EventKind::Note { text });
                }
            }
        }
    }

    fn next_plain_unit(&mut self, dir: Direction) -> Option<(u64, PlainUnit)> {
        let hybrid_ex = self
            .selected
            .is_some_and(|s| s.contains(Protocols::HYBRID_EX));
        let credssp_over = self
            .term
            .as_ref()
            .is_some_and(|t| t.tsrequests.iter().any(|r| r.3.auth_info.is_some()));
        let t = self.term.as_mut()?;
        let buf = &t.pending[dir];
        let first = *buf.first()?;
        let len = match first {
            tpkt::VERSION => match tpkt::split_pdu(buf) {
                Ok(Some(pdu)) => pdu.len(),
                Ok(None) => return None,
                Err(_) => {
                    t.opaque[dir] = true;
                    return None;
                }
            },
            0x30 => match credssp::split(buf) {
                Ok(Some(n)) if n <= buf.len() => n,
                Ok(_) => return None,
                Err(_) => {
                    t.opaque[dir] = true;
                    return None;
                }
            },
            _ if dir == Direction::HostToClient && hybrid_ex && credssp_over && t.eua.is_none() => {
                if buf.len() < 4 {
                    return None;
                }
                4
            }
            _ => {
                // Fast-path or something rdpdiag does not decode: stop reading this direction.
                t.opaque[dir] = true;
                return None;
            }
        };
        let unit: Vec<u8> = buf.get(..len)?.to_vec();
        t.pending[dir].drain(..len);
        let offset = t.offset[dir];
        t.offset[dir] = offset.saturating_add(len as u64);
        let unit = match first {
            tpkt::VERSION => PlainUnit::Tpkt(unit),
            0x30 => PlainUnit::TsRequest(unit),
            _ => {
                let b: [u8; 4] = unit.get(..4)?.try_into().ok()?;
                PlainUnit::EarlyAuth(u32::from_le_bytes(b))
            }
        };
        Some((offset, unit))
    }

    fn on_tsrequest(&mut self, dir: Direction, offset: u64, raw: &[u8], at: Micros) {
        match credssp::decode(raw) {
            Ok(Some((ts, _))) => {
                self.enter(Phase::Credssp, at);
                let text = format!("{} ({} bytes, decrypted)", ts.label(), raw.len());
                self.push(at, Some(dir), Some(offset), EventKind::Note { text });
                self.term_mut().tsrequests.push((dir, offset, at, ts));
            }
            Ok(None) => {
                // INVARIANT: `raw` is one whole TLV (framed by credssp::split), so decode has
                // all it needs; treat the impossible "need more" like a decode error.
                let text = "undecodable TSRequest: truncated".to_owned();
                self.push(at, Some(dir), Some(offset), EventKind::Note { text });
                self.term_mut().opaque[dir] = true;
            }
            Err(e) => {
                let text = format!("undecodable TSRequest: {e}");
                self.push(at, Some(dir), Some(offset), EventKind::Note { text });
                self.term_mut().opaque[dir] = true;
            }
        }
    }

    /// TLS was terminated by the driver: the verdict from what both legs and the plaintext say.
    pub(super) fn after_confirm_terminated(&self, selected: Protocols) -> Draft {
        let Some(t) = &self.term else {
            return self.draft("closed_early", Outcome::Unknown, String::new());
        };
        match &t.host {
            None => {
                return self.draft(
                    "closed_early",
                    Outcome::Unknown,
                    "rdpdiag is starting TLS with the host".to_owned(),
                );
            }
            Some(Err((e, at))) => {
                let (cause, summary) = match e {
                    TlsLegError::NoCommonVersion(_) => (
                        "tls.no_common_version",
                        "the host speaks only TLS versions older than 1.2 (TLS 1.0/1.1): rdpdiag's TLS stack cannot connect, and neither can a current Windows client with TLS 1.0/1.1 disabled; this is the host's TLS configuration, not its certificate",
                    ),
                    TlsLegError::NoCommonCipher(_) => (
                        "tls.no_common_cipher",
                        "the host accepts none of the TLS 1.2/1.3 cipher suites rdpdiag offers (a current client's set)",
                    ),
                    TlsLegError::Alert(_) => (
                        "tls.alert_from_host",
                        "the host sent a fatal TLS alert to rdpdiag's TLS client",
                    ),
                    TlsLegError::Other(_) => (
                        "tls.host_aborted_handshake",
                        "the host ended the TLS handshake with rdpdiag's TLS client",
                    ),
                };
                let mut d = self.draft(cause, Outcome::Failed, summary.to_owned());
                d.evidence.push(ev(
                    Some(Direction::HostToClient),
                    None,
                    *at,
                    "host leg TLS handshake (rdpdiag as client)",
                    e.text(),
                ));
                return d;
            }
            Some(Ok(_)) => {}
        }
        match &t.client {
            None => {
                return self.draft(
                    "closed_early",
                    Outcome::Unknown,
                    "waiting for the client's TLS handshake with rdpdiag's certificate".to_owned(),
                );
            }
            Some(Err((e, at))) => {
                let mut d = self.draft("experiment.client_rejected_fresh_cert", Outcome::Failed, "the client refused rdpdiag's fresh certificate (it does not trust the issuer): trust the local CA on the client (rdpdiag cert ca) and use --ca, or accept the warning".to_owned());
                d.evidence.push(ev(
                    Some(Direction::ClientToHost),
                    None,
                    *at,
                    "client leg TLS handshake (rdpdiag as server)",
                    e.text(),
                ));
                return d;
            }
            Some(Ok(_)) => {}
        }
        // rdpdiag's own CredSSP endpoints (`--nla-user`) know who refused what.
        if let Some(d) = self.nla_verdict() {
            return d;
        }
        // Exact CredSSP facts first.
        if let Some((dir, off, at, ts)) = t.tsrequests.iter().find(|r| r.3.error_code.is_some()) {
            let code = ts.error_code.unwrap_or_default();
            let mut d = self.draft(
                "credssp.failed",
                Outcome::Failed,
                format!(
                    "CredSSP failed: the {} sent errorCode {}",
                    dir.sender().name(),
                    credssp::status_name(code)
                ),
            );
            d.evidence.push(ev(
                Some(*dir),
                Some(*off),
                *at,
                "TSRequest.errorCode (decrypted)",
                credssp::status_name(code),
            ));
            d.specific = crate::session::causes::error_code_advice(code)
                .map(|(c, r)| (c.to_owned(), r.to_owned()));
            if self.fresh_cert_keeps_nla() {
                d.notes.push(NLA_THROUGH_FRESH_CERT.to_owned());
            }
            return d;
        }
        if let Some((off, at, value)) = t.eua
            && value != 0
        {
            let mut d = self.draft("early_auth.denied", Outcome::Failed, format!("after CredSSP the host's Early User Authorization Result is {}: the user authenticated but may not log on remotely", eua_name(value)));
            d.evidence.push(ev(
                Some(Direction::HostToClient),
                Some(off),
                at,
                "Early User Authorization Result (decrypted)",
                eua_name(value),
            ));
            return d;
        }
        let mcs_started = self.mcs.initial.is_some();
        let closer = self.first_close();
        if selected.uses_credssp() && !mcs_started {
            let last = t.tsrequests.last();
            let position = last.map_or("before the first TSRequest".to_owned(), |r| {
                format!("after the {}'s {}", r.0.sender().name(), r.3.label())
            });
            return match closer {
                Some((side, kind, _)) if self.fresh_cert_keeps_nla() => {
                    let mut d = self.draft("experiment.nla_key_binding", Outcome::Failed, format!("the {} closed ({}) during CredSSP {position}: expected, NLA cannot pass --fresh-cert because pubKeyAuth binds the TLS public key and each side sees a different one (rdpdiag's, the host's); this is not the host's fault", side.name(), kind.name().to_uppercase()));
                    if let Some((dir, off, at, ts)) = last {
                        d.evidence.push(ev(
                            Some(*dir),
                            Some(*off),
                            *at,
                            "last TSRequest (decrypted)",
                            ts.label(),
                        ));
                    }
                    d
                }
                Some((side, kind, _)) => self.draft(
                    "credssp.failed",
                    Outcome::Failed,
                    format!(
                        "the {} closed ({}) during CredSSP {position}, without an errorCode",
                        side.name(),
                        kind.name().to_uppercase()
                    ),
                ),
                None => self.draft(
                    "closed_early",
                    Outcome::Unknown,
                    format!("CredSSP in progress {position}"),
                ),
            };
        }
        if let Some((dir, off, at, reason)) = self.mcs.disconnect {
            let mut d = self.draft(
                "mcs.host_disconnected",
                Outcome::Failed,
                format!(
                    "the {} sent an MCS Disconnect-Provider-Ultimatum ({}) during the {}",
                    dir.sender().name(),
                    mcs::dpu_reason_name(reason),
                    self.phase.title()
                ),
            );
            d.evidence.push(ev(
                Some(dir),
                Some(off),
                at,
                "MCS Disconnect-Provider-Ultimatum.reason (decrypted)",
                mcs::dpu_reason_name(reason),
            ));
            return d;
        }
        self.closed_in_phase(closer)
    }

    /// For close evidence under terminated TLS: the decrypted bytes that direction carried.
    pub(super) fn plaintext_note(&self, dir: Direction) -> String {
        match &self.term {
            Some(t) => {
                let n = t.offset[dir].saturating_add(t.pending[dir].len() as u64);
                format!(" in clear, then {n} decrypted byte(s) through rdpdiag's TLS")
            }
            None => String::new(),
        }
    }

    /// `--fresh-cert` with NLA left in the request: CredSSP is bound to fail.
    pub(super) fn fresh_cert_keeps_nla(&self) -> bool {
        self.nla.is_none()
            && self.experiment.as_ref().is_some_and(|e| e.fresh_cert)
            && self.selected.is_some_and(Protocols::uses_credssp)
    }
}

/// What the driver tells the user before an NLA connection runs through `--fresh-cert`.
pub(super) const NLA_THROUGH_FRESH_CERT: &str = "NLA cannot succeed through --fresh-cert: CredSSP's pubKeyAuth binds the TLS server key, and the client sees rdpdiag's key while the host checks its own";

enum PlainUnit {
    Tpkt(Vec<u8>),
    TsRequest(Vec<u8>),
    EarlyAuth(u32),
}

/// MS-RDPBCGR 2.2.10.2: 0x00000000 SUCCESS, 0x00000005 ACCESS_DENIED.
pub(super) fn eua_name(v: u32) -> String {
    match v {
        0 => "SUCCESS (0x00000000)".to_owned(),
        5 => "ACCESS_DENIED (0x00000005)".to_owned(),
        _ => format!("0x{v:08X}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::{CloseKind, ExperimentSetup, SessionConfig, Side};

    fn ts(fields: &[u8]) -> Vec<u8> {
        // SEQUENCE { [0] INTEGER 6, fields... }
        let mut b = vec![0x30, 0, 0xa0, 0x03, 0x02, 0x01, 0x06];
        b.extend_from_slice(fields);
        b[1] = u8::try_from(b.len() - 2).unwrap();
        b
    }

    fn terminated(selected: u8) -> Session {
        let at = Micros::from_millis;
        let mut s = Session::new(SessionConfig::default());
        s.set_experiment(ExperimentSetup {
            fresh_cert: true,
            ..ExperimentSetup::default()
        });
        s.on_connect_result(Ok(()), at(0));
        let cr = hex::decode("030000130ee00000000000010008000b000000").unwrap();
        let mut cc = hex::decode("030000130ed000001234000200080000000000").unwrap();
        cc[15] = selected;
        s.feed(Direction::ClientToHost, &cr, at(1));
        s.feed(Direction::HostToClient, &cc, at(2));
        let host = HostTls {
            version: "TLS 1.3".into(),
            cipher: "TLS13_AES_128_GCM_SHA256".into(),
            chain: Vec::new(),
        };
        s.on_host_tls(Ok(host), at(3));
        s.on_client_tls(Ok(("TLS 1.3".into(), "x".into())), at(4));
        s
    }

    /// HYBRID_EX: NEGOTIATE, CHALLENGE, credentials, then the host's 4-byte Early User
    /// Authorization Result ACCESS_DENIED, read from the plaintext (split across feeds).
    #[test]
    fn early_user_authorization_denied_is_exact() {
        let at = Micros::from_millis;
        let mut s = terminated(8);
        let ntlm = |t: u32| {
            let mut m = b"NTLMSSP\0".to_vec();
            m.extend_from_slice(&t.to_le_bytes());
            credssp::encode(&TsRequest::with_token(6, m))
        };
        s.feed_plaintext(Direction::ClientToHost, &ntlm(1), at(5));
        s.feed_plaintext(Direction::HostToClient, &ntlm(2), at(6));
        let auth = ts(&[0xa2, 0x04, 0x04, 0x02, 0xde, 0xad]);
        s.feed_plaintext(Direction::ClientToHost, &auth[..3], at(7));
        s.feed_plaintext(Direction::ClientToHost, &auth[3..], at(7));
        s.feed_plaintext(Direction::HostToClient, &[5, 0], at(8));
        s.feed_plaintext(Direction::HostToClient, &[0, 0], at(8));
        s.on_close(Side::Host, CloseKind::Fin, at(9));
        let v = s.verdict();
        assert_eq!(v.cause, "early_auth.denied", "{v:#?}");
        assert!(!v.inferred);
        assert_eq!(v.phase_reached, Phase::EarlyUserAuth);
        assert!(v.summary.contains("ACCESS_DENIED"));
    }

    /// A TLS (SSL) session through terminated TLS: the Connect-Initial and Connect-Response are
    /// read in clear, the MCS facts are exact.
    #[test]
    fn mcs_inside_terminated_tls_is_decoded() {
        let at = Micros::from_millis;
        let mut s = terminated(1);
        let ci = include_bytes!("../../../tests/fixtures/mcs/testbed_xfreerdp_connect_initial.bin");
        let resp =
            include_bytes!("../../../tests/fixtures/mcs/zeek_proprietary_connect_response.bin");
        s.feed_plaintext(Direction::ClientToHost, ci, at(5));
        s.feed_plaintext(Direction::HostToClient, resp, at(6));
        // Licensing starts with the first PDU after the Connect-Response.
        assert_eq!(s.phase(), Phase::Mcs);
        let v = s.verdict();
        assert!(v.facts.client_name.is_some(), "{v:#?}");
        assert_eq!(v.outcome, Outcome::Unknown);
        s.on_close(Side::Host, CloseKind::Fin, at(7));
        assert_eq!(s.verdict().cause, "mcs.host_disconnected");
    }
}
