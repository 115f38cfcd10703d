//! `proxy --fresh-cert --nla-user`: rdpdiag is the CredSSP endpoint on both legs. The driver
//! feeds the host leg's TSRequests as plain text (so the host's errorCode is read like any
//! other) and tells the session what the client leg did; this file keeps that and turns it
//! into the verdict's `experiment.nla` section and, when rdpdiag itself refused the client,
//! into the verdict.

use serde::Serialize;

use super::{Draft, Session, ev};
use crate::session::events::EventKind;
use crate::session::verdict::Outcome;
use crate::session::{Direction, Micros, Side};
use crate::wire::credssp;

/// What one CredSSP leg showed.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct NlaLeg {
    /// The TSRequest version the peer sent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credssp_version: Option<u32>,
    /// The peer's NTLM NegotiateFlags (NEGOTIATE from a client, CHALLENGE from a host).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ntlm_flags: Option<String>,
    /// The host's names from its CHALLENGE TargetInfo (host leg).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub netbios_domain_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub netbios_computer_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dns_domain_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dns_computer_name: Option<String>,
    /// The client's workstation name from its AUTHENTICATE (client leg).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workstation: Option<String>,
    /// The peer's OS from its NTLM Version field.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub os_version: Option<String>,
    /// The host's clock (MsvAvTimestamp), RFC 3339.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer_time: Option<String>,
    /// Host clock minus rdpdiag's clock, seconds (Kerberos tolerates 300).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub clock_skew_secs: Option<i64>,
    /// Who logged on (client leg: the client's account; host leg: rdpdiag's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub logon: Option<String>,
    /// The errorCode, when one was sent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_code: Option<String>,
    /// Early User Authorization Result (host leg, HYBRID_EX).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub early_user_auth: Option<String>,
    /// How the leg ended: `accepted`, `refused: ...`, `in progress`.
    pub result: String,
}

/// The `experiment.nla` section.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct NlaReport {
    /// The account rdpdiag was given (`--nla-user`), never its password.
    pub account: String,
    /// rdpdiag as CredSSP server, toward the client.
    pub client_leg: NlaLeg,
    /// rdpdiag as CredSSP client, toward the host.
    pub host_leg: NlaLeg,
}

/// The session's NLA state.
#[derive(Debug, Clone, Default)]
pub(super) struct NlaState {
    pub(super) report: NlaReport,
    /// rdpdiag refused the client's logon: why, and when.
    pub(super) refused: Option<(String, Micros)>,
    /// Something on the host leg that is not an errorCode (binding mismatch, bad token).
    pub(super) host_problem: Option<(String, Micros)>,
}

impl Session {
    /// The driver brokers NLA for `account` on this connection.
    pub fn nla_begin(&mut self, account: &str) {
        let nla = self.nla.get_or_insert_with(NlaState::default);
        nla.report.account = account.to_owned();
        nla.report.client_leg.result = "in progress".to_owned();
        nla.report.host_leg.result = "not started".to_owned();
    }

    /// Updates the report (the driver fills each leg as the rounds go).
    pub fn nla_update(&mut self, f: impl FnOnce(&mut NlaReport)) {
        if let Some(n) = &mut self.nla {
            f(&mut n.report);
        }
    }

    /// A line in the event log about one leg of the brokered CredSSP.
    pub fn nla_note(&mut self, dir: Direction, leg: &str, text: String, at: Micros) {
        self.enter(crate::session::Phase::Credssp, at);
        let text = format!("{leg} leg: {text}");
        self.push(at, Some(dir), None, EventKind::Note { text });
    }

    /// rdpdiag refused the client's CredSSP logon (credentials other than it was given).
    pub fn nla_refused(&mut self, reason: String, at: Micros) {
        self.nla_note(
            Direction::HostToClient,
            "client",
            format!("rdpdiag refused the logon: {reason}"),
            at,
        );
        if let Some(n) = &mut self.nla {
            n.report.client_leg.result = format!("refused by rdpdiag: {reason}");
            if n.report.host_leg.result == "in progress" {
                n.report.host_leg.result =
                    "abandoned after the CHALLENGE: rdpdiag never sent the host these credentials"
                        .to_owned();
            }
            n.refused = Some((reason, at));
        }
    }

    /// A host-leg failure that is not an errorCode.
    pub fn nla_host_problem(&mut self, reason: String, at: Micros) {
        self.nla_note(Direction::HostToClient, "host", reason.clone(), at);
        if let Some(n) = &mut self.nla {
            n.report.host_leg.result = format!("failed: {reason}");
            n.host_problem = Some((reason, at));
        }
    }

    pub(super) fn nla_report(&self) -> Option<NlaReport> {
        let n = self.nla.as_ref()?;
        let mut r = n.report.clone();
        if let Some(t) = &self.term {
            if let Some((_, _, _, ts)) = t
                .tsrequests
                .iter()
                .find(|x| x.0 == Direction::HostToClient && x.3.error_code.is_some())
            {
                let code = ts.error_code.unwrap_or_default();
                r.host_leg.error_code = Some(credssp::status_name(code));
                r.host_leg.result = "refused by the host".to_owned();
            }
            if let Some((_, _, value)) = t.eua {
                r.host_leg.early_user_auth = Some(super::plaintext::eua_name(value));
            }
        }
        Some(r)
    }

    /// The verdict when rdpdiag brokered NLA and the connection ended in CredSSP without an
    /// errorCode: who refused what. `None` falls through to the general reading.
    pub(super) fn nla_verdict(&self) -> Option<Draft> {
        let n = self.nla.as_ref()?;
        if let Some((reason, at)) = &n.refused {
            let mut d = self.draft(
                "credssp.proxy_refused",
                Outcome::Failed,
                format!(
                    "rdpdiag refused the client's NLA logon, not the host: {reason}. The host never saw these credentials; log on with the account rdpdiag was given ({})",
                    n.report.account
                ),
            );
            d.evidence.push(ev(
                Some(Direction::ClientToHost),
                None,
                *at,
                "client's NTLM AUTHENTICATE, checked by rdpdiag",
                reason.clone(),
            ));
            return Some(d);
        }
        if let Some((reason, at)) = &n.host_problem {
            let mut d = self.draft(
                "credssp.failed",
                Outcome::Failed,
                format!("CredSSP with the host failed: {reason}"),
            );
            d.evidence.push(ev(
                Some(Direction::HostToClient),
                None,
                *at,
                "host leg CredSSP (rdpdiag as client)",
                reason.clone(),
            ));
            return Some(d);
        }
        let t = self.term.as_ref()?;
        if t.tsrequests.iter().any(|r| r.3.error_code.is_some()) {
            return None;
        }
        // Both legs through CredSSP, then a close before MCS: not a CredSSP failure.
        if n.report.host_leg.result.starts_with("accepted")
            && self.mcs.initial.is_none()
            && t.eua.is_none_or(|e| e.2 == 0)
            && let Some((side, kind, _)) = self.first_close()
        {
            return Some(self.draft(
                "closed_early",
                Outcome::Failed,
                format!(
                    "NLA succeeded on both legs (the host accepted {}'s credentials); then the {} closed ({}) before the MCS Connect-Initial",
                    n.report.account,
                    side.name(),
                    kind.name().to_uppercase()
                ),
            ));
        }
        // The host closed right after rdpdiag's AUTHENTICATE (H3), with no errorCode.
        let last = t.tsrequests.last()?;
        let (side, kind, _) = self.first_close()?;
        let after_auth = last.0 == Direction::ClientToHost
            && last.3.ntlm_message_type() == Some(crate::wire::ntlm::AUTHENTICATE_MESSAGE);
        if side != Side::Host || !after_auth || self.mcs.initial.is_some() {
            return None;
        }
        let mut d = self.draft(
            "credssp.failed",
            Outcome::Failed,
            format!(
                "the host refused the credentials of {}: it closed ({}) right after rdpdiag's NTLM AUTHENTICATE without an errorCode, which is how hosts that send none (FreeRDP, older Windows) report STATUS_LOGON_FAILURE: wrong password or unknown user (account state cannot be told apart without an errorCode)",
                n.report.account,
                kind.name().to_uppercase()
            ),
        );
        d.evidence.push(ev(
            Some(Direction::ClientToHost),
            Some(last.1),
            last.2,
            "last TSRequest before the host closed (decrypted)",
            last.3.label(),
        ));
        d.specific = Some((
            "STATUS_LOGON_FAILURE (inferred: no errorCode): the password rdpdiag was given is wrong for this host, or the user does not exist there".to_owned(),
            "Check the password and the user name (DOMAIN\\user or user@domain) against the host's account database; reset the password if it is unknown".to_owned(),
        ));
        Some(d)
    }
}
