//! The experiments of `proxy --security` and `proxy --fresh-cert`: what the driver changed, and
//! what the connection then proved (the verdict's `experiment` section).

use super::{Draft, NegData, Role, Session, ev};
use crate::session::verdict::{Experiment, Outcome};
use crate::session::{Direction, Phase, Side};
use crate::wire::x224::{FailureCode, Protocols};

/// What became of the host's echo of requestedProtocols (SC_CORE.clientRequestedProtocols,
/// MS-RDPBCGR 2.2.1.4.2), which clients compare with what they sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Echo {
    /// Nothing was rewritten: nothing to patch.
    #[default]
    NotNeeded,
    /// Waiting for the MCS Connect-Response.
    Pending,
    /// Patched back to the client's value in the clear Connect-Response (Standard RDP Security).
    PatchedClear,
    /// Patched inside TLS terminated by rdpdiag.
    PatchedInTls,
    /// Inside TLS that rdpdiag does not terminate: the client may detect the rewrite.
    Unpatchable,
}

impl Echo {
    fn describe(self) -> Option<&'static str> {
        match self {
            Echo::NotNeeded => None,
            Echo::Pending => Some("not reached (no MCS Connect-Response)"),
            Echo::PatchedClear => {
                Some("patched back to the client's value in the clear MCS Connect-Response")
            }
            Echo::PatchedInTls => Some("patched back to the client's value inside terminated TLS"),
            Echo::Unpatchable => Some(
                "inside TLS, not patched: the client may detect the rewrite (add --fresh-cert to patch it)",
            ),
        }
    }
}

/// What the driver set up for this connection.
#[derive(Debug, Clone, Default)]
pub struct ExperimentSetup {
    /// `--security` was given.
    pub security: bool,
    /// requestedProtocols as the client sent it.
    pub original: Option<Protocols>,
    /// As forwarded to the host, when rewritten.
    pub rewritten: Option<Protocols>,
    /// The rewrite asked for something the client cannot do: why (the CR went through unchanged).
    pub impossible: Option<String>,
    pub echo: Echo,
    /// `--fresh-cert`: TLS terminated on both legs.
    pub fresh_cert: bool,
    pub notes: Vec<String>,
}

impl Session {
    /// The driver runs an experiment (call again to update, e.g. the echo state).
    pub fn set_experiment(&mut self, setup: ExperimentSetup) {
        self.experiment = Some(setup);
    }

    /// The experiment set up so far.
    pub fn experiment(&self) -> Option<&ExperimentSetup> {
        self.experiment.as_ref()
    }

    /// A client that closes right after the (encrypted) Connect-Response of a rewritten request
    /// whose echo could not be patched detected the rewrite: not a host failure.
    pub(super) fn adjust_for_experiment(&self, d: Draft) -> Draft {
        let Some(x) = &self.experiment else {
            return d;
        };
        let mut d = d;
        if let (Some(new), Some(orig), Some((_, _, cc))) = (x.rewritten, x.original, &self.cc)
            && let Some(NegData::Failure { code, .. }) = &cc.neg
        {
            // The host answered rdpdiag's request, not the client's.
            d.summary = format!(
                "the host refused rdpdiag's rewritten request {new} with {code} (the client itself requested {orig})"
            );
        }
        if x.rewritten.is_none() || x.echo != Echo::Unpatchable {
            return d;
        }
        let Some(pos) = self.roles.iter().position(|r| r.1 == Role::ConnectResponse) else {
            return d;
        };
        let client_after = self
            .roles
            .iter()
            .skip(pos + 1)
            .filter(|r| r.0 == Direction::ClientToHost)
            .count();
        let Some((Side::Client, kind, at)) = self.first_close() else {
            return d;
        };
        // Right after: no more than one client record (an alert / its last PDU) after it.
        if client_after > 1 || self.phase >= Phase::Active {
            return d;
        }
        let mut out = self.draft(
            "experiment.client_detected_rewrite",
            Outcome::Failed,
            format!(
                "the client closed ({}) right after the host's encrypted MCS Connect-Response: it compared the host's echo of requestedProtocols with what it sent and detected rdpdiag's rewrite; this is the experiment, not a host failure",
                kind.name().to_uppercase()
            ),
        );
        out.inferred = true;
        if let Some(&(dir, _, off, len, rat)) = self.roles.get(pos) {
            out.evidence.push(ev(
                Some(dir),
                Some(off),
                rat,
                "MCS Connect-Response (inferred, encrypted)",
                format!("{len}-byte record; SC_CORE.clientRequestedProtocols inside TLS could not be patched"),
            ));
        }
        out.evidence.push(ev(
            Some(Direction::ClientToHost),
            None,
            at,
            "client close",
            kind.name().to_uppercase(),
        ));
        out
    }

    pub(super) fn experiment_report(&self, d: &Draft) -> Option<Experiment> {
        let x = self.experiment.as_ref()?;
        let kind = match (x.security, x.fresh_cert) {
            (true, true) => "security+fresh_cert",
            (false, true) => "fresh_cert",
            _ => "security",
        };
        let host_selected = self.cc.as_ref().map(|(_, _, cc)| match &cc.neg {
            Some(NegData::Response { selected, .. }) => selected.to_string(),
            Some(NegData::Failure { code, .. }) => format!("RDP_NEG_FAILURE {code}"),
            None => "RDP (legacy Connection Confirm)".to_owned(),
        });
        let mut parts = Vec::new();
        if x.security {
            parts.push(self.security_conclusion(x, d));
        }
        if x.fresh_cert {
            parts.push(self.fresh_cert_conclusion(d));
        }
        let mut notes = x.notes.clone();
        if let Some(why) = &x.impossible {
            notes.insert(0, why.clone());
        }
        Some(Experiment {
            kind: kind.to_owned(),
            offered_original: x.original.map(|p| p.to_string()),
            offered_rewritten: x.rewritten.map(|p| p.to_string()),
            host_selected,
            phase_reached: self.phase,
            echo: x.echo.describe().map(str::to_owned),
            tls_terminated: self.term.as_ref().is_some_and(|_| self.tls.done),
            notes,
            conclusion: parts.join("; "),
            nla: self.nla_report(),
        })
    }

    fn security_conclusion(&self, x: &ExperimentSetup, d: &Draft) -> String {
        if let Some(why) = &x.impossible {
            return format!(
                "the experiment could not run ({why}): the host saw the client's own request"
            );
        }
        let (Some(orig), Some(new)) = (x.original, x.rewritten) else {
            return "nothing was rewritten: the client already offered exactly that".to_owned();
        };
        let removed = Protocols(orig.0 & !new.0);
        let offered = if removed.0 != 0 && new.0 & !orig.0 == 0 {
            format!("with {} removed", removed.names())
        } else {
            format!("with only {new} offered")
        };
        if d.cause == "experiment.client_detected_rewrite" {
            return format!(
                "{offered} the host went on, but the client detected the rewrite in the encrypted echo and gave up: re-run with --fresh-cert so rdpdiag can patch it"
            );
        }
        if let Some((_, _, cc)) = &self.cc
            && let Some(NegData::Failure { code, .. }) = &cc.neg
        {
            let meaning = match *code {
                FailureCode::HYBRID_REQUIRED_BY_SERVER => {
                    "the host insists on NLA (CredSSP): the client must offer it and CredSSP must work"
                }
                FailureCode::SSL_REQUIRED_BY_SERVER => "the host insists on TLS",
                FailureCode::SSL_NOT_ALLOWED_BY_SERVER => {
                    "the host allows only Standard RDP Security"
                }
                FailureCode::SSL_CERT_NOT_ON_SERVER => "the host has no usable certificate for TLS",
                _ => "the host refuses that security layer",
            };
            return format!("{offered} the host refused with {code}: {meaning}");
        }
        if d.cause == "nego.client_refused_selected_protocol" {
            return format!(
                "{offered} the host selected what rdpdiag asked for, but the client refused it: the client itself insists on {orig}; change the client's setting instead of rewriting"
            );
        }
        let layer = if removed.uses_credssp() && removed.contains(Protocols::SSL) {
            "TLS or CredSSP (NLA) (re-run with --security no-nla to tell them apart)"
        } else if removed.uses_credssp() {
            "CredSSP (NLA)"
        } else if removed.contains(Protocols::SSL) {
            "TLS"
        } else {
            "the layer the client asked for"
        };
        if self.phase >= Phase::Licensing {
            format!(
                "{offered} the connection reached the {} phase: where it fails without the rewrite, the failing layer is {layer}",
                self.phase.title()
            )
        } else {
            format!(
                "{offered} the connection still failed in the {} phase ({}): {layer} is not (only) what fails",
                self.phase.title(),
                d.cause
            )
        }
    }

    fn fresh_cert_conclusion(&self, d: &Draft) -> String {
        if d.cause == "experiment.nla_key_binding" {
            return "NLA was kept, so CredSSP failed at the key binding as expected through --fresh-cert: drop NLA (default) to test the certificate".to_owned();
        }
        if let Some((_, _, cc)) = &self.cc
            && let Some(NegData::Failure { code, .. }) = &cc.neg
        {
            return if *code == FailureCode::HYBRID_REQUIRED_BY_SERVER {
                "the host requires NLA, which cannot pass --fresh-cert (CredSSP binds the host's own key): judge its certificate with rdpdiag cert inspect HOST instead".to_owned()
            } else {
                format!(
                    "the host refused the negotiation ({code}) before any certificate was involved"
                )
            };
        }
        if !self.tls.done {
            if self.term.is_none() {
                return "TLS was not selected, so no certificate was involved".to_owned();
            }
            return format!(
                "the experiment did not get past TLS ({}): {}",
                d.cause, d.summary
            );
        }
        if let Some(n) = self.nla_report() {
            return match d.cause {
                "credssp.proxy_refused" => format!(
                    "rdpdiag refused the client's NLA logon before asking the host: the client's credentials are not those of {} given to rdpdiag; the host is not at fault",
                    n.account
                ),
                "credssp.failed" | "early_auth.denied" => format!(
                    "NLA was brokered in clear: the host itself refused {}'s logon ({}); this is the host's own verdict, not the certificate's nor rdpdiag's",
                    n.account,
                    n.host_leg
                        .error_code
                        .clone()
                        .or_else(|| n
                            .host_leg
                            .early_user_auth
                            .clone()
                            .map(|e| format!("Early User Authorization {e}")))
                        .unwrap_or_else(|| "it closed without an errorCode".to_owned())
                ),
                _ => format!(
                    "NLA was brokered in clear: the host accepted {}'s logon and the connection reached the {} phase",
                    n.account,
                    self.phase.title()
                ),
            };
        }
        let problems = self.cert_problems();
        let got = format!(
            "with a fresh certificate in front of the client the connection got past TLS to the {} phase",
            self.phase.title()
        );
        if problems.is_empty() {
            format!(
                "{got}; the host's own certificate shows no problem a client checks locally (if the client rejects it directly, it does not trust its issuer)"
            )
        } else {
            format!(
                "{got}; the host's own certificate has {} problem(s) ({}): the host certificate is the cause",
                problems.len(),
                problems.join("; ")
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::{CloseKind, Micros, SessionConfig};

    fn records(mut rest: &[u8]) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        while let Ok(Some((h, _))) = crate::wire::tls::split_record(rest) {
            let n = h.total_len();
            out.push(rest[..n].to_vec());
            rest = &rest[n..];
        }
        out
    }

    fn app(len: u16) -> Vec<u8> {
        let mut r = vec![23, 3, 3];
        r.extend_from_slice(&len.to_be_bytes());
        r.resize(5 + usize::from(len), 0xaa);
        r
    }

    /// `--security tls` without `--fresh-cert`: TLS (zeek_no_cookie handshake), the client's
    /// Connect-Initial, the host's Connect-Response, then the client closes: it detected the
    /// rewrite in the encrypted echo.
    #[test]
    fn client_closing_after_encrypted_connect_response_detected_the_rewrite() {
        let c = records(include_bytes!(
            "../../../tests/fixtures/tls/zeek_no_cookie.client.bin"
        ));
        let s = records(include_bytes!(
            "../../../tests/fixtures/tls/zeek_no_cookie.server.bin"
        ));
        let at = Micros::from_millis;
        let mut sess = Session::new(SessionConfig::default());
        sess.set_experiment(ExperimentSetup {
            security: true,
            original: Some(Protocols(0x3)),
            rewritten: Some(Protocols::SSL),
            echo: Echo::Unpatchable,
            ..ExperimentSetup::default()
        });
        sess.on_connect_result(Ok(()), at(0));
        // The client's original request (SSL|HYBRID), the host selecting SSL.
        let cr = hex::decode("030000130ee000000000000100080003000000").unwrap();
        let cc = hex::decode("030000130ed000001234000200080001000000").unwrap();
        sess.feed(Direction::ClientToHost, &cr, at(1));
        sess.feed(Direction::HostToClient, &cc, at(2));
        sess.feed(Direction::ClientToHost, &c[0], at(3));
        for r in s.iter().take_while(|r| r[0] == 22) {
            sess.feed(Direction::HostToClient, r, at(4));
        }
        for r in &c[1..] {
            sess.feed(Direction::ClientToHost, r, at(5));
        }
        for r in s.iter().skip_while(|r| r[0] == 22) {
            sess.feed(Direction::HostToClient, r, at(6));
        }
        sess.feed(Direction::ClientToHost, &app(420), at(7)); // Connect-Initial
        sess.feed(Direction::HostToClient, &app(330), at(8)); // Connect-Response
        sess.on_close(Side::Client, CloseKind::Fin, at(9));
        let v = sess.verdict();
        assert_eq!(v.cause, "experiment.client_detected_rewrite", "{v:#?}");
        assert_eq!(v.outcome, Outcome::Failed);
        let x = v.experiment.unwrap();
        assert!(x.conclusion.contains("--fresh-cert"), "{}", x.conclusion);
        assert!(x.echo.unwrap().contains("may detect"));
    }
}
