//! `--fresh-cert --nla-user`: runs CredSSP on both terminated TLS legs (`nla::credssp`), then
//! hands the legs back to the plain-text relay. Feeds the session the host leg's TSRequests (what
//! rdpdiag sent and what the host answered) and tells it what the client leg did.
//!
//! The password lives in [`Credentials`] only (zeroed on drop); nothing here logs a TSRequest's
//! sealed fields or the TSCredentials.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::inspect::Clock;
use crate::nla::credssp::{ClientLeg, HostLeg, LegError};
use crate::nla::ntlm::{Credentials, NtlmError, ServerIdentity};
use crate::session::{CloseKind, Direction, Session, Side};
use crate::wire::credssp::{self as wire, TsRequest};
use crate::wire::ntlm as wntlm;

/// Largest TSRequest accepted (real ones are a few KiB; a lying length must not make us buffer).
const MAX_TSREQUEST: usize = 64 * 1024;

/// The bytes each side sent after CredSSP (already read): forward them first.
pub(super) struct Brokered {
    pub(super) client_rest: Vec<u8>,
    pub(super) host_rest: Vec<u8>,
}

enum ReadEnd {
    Closed(CloseKind),
    Timeout,
    Malformed(String),
}

struct Reader {
    buf: Vec<u8>,
}

impl Reader {
    fn new() -> Self {
        Self { buf: Vec::new() }
    }

    /// One whole TSRequest: its raw bytes and decoded form.
    async fn next<R: AsyncRead + Unpin>(
        &mut self,
        r: &mut R,
        timeout: Duration,
    ) -> Result<(Vec<u8>, TsRequest), ReadEnd> {
        loop {
            match wire::split(&self.buf) {
                Ok(Some(n)) if n <= self.buf.len() => {
                    let raw: Vec<u8> = self.buf.drain(..n).collect();
                    return match wire::decode(&raw) {
                        Ok(Some((ts, _))) => Ok((raw, ts)),
                        Ok(None) => Err(ReadEnd::Malformed("truncated TSRequest".to_owned())),
                        Err(e) => Err(ReadEnd::Malformed(e.to_string())),
                    };
                }
                Ok(Some(n)) if n > MAX_TSREQUEST => {
                    return Err(ReadEnd::Malformed(format!(
                        "a TSRequest of {n} bytes (more than {MAX_TSREQUEST})"
                    )));
                }
                Ok(_) => {}
                Err(e) => return Err(ReadEnd::Malformed(format!("not a TSRequest: {e}"))),
            }
            if let Some(&b) = self.buf.first()
                && b != 0x30
            {
                return Err(ReadEnd::Malformed(format!(
                    "not a TSRequest: it starts with {b:#04x}, not a DER SEQUENCE (0x30)"
                )));
            }
            // A length field that lies: say so now rather than wait for bytes never sent.
            if let Ok(Some((_, header, value))) = wire::read_header(&self.buf, 0)
                && header.saturating_add(value) > MAX_TSREQUEST
            {
                return Err(ReadEnd::Malformed(format!(
                    "a TSRequest whose length field says {value} bytes (more than {MAX_TSREQUEST})"
                )));
            }
            if self.buf.len() > MAX_TSREQUEST {
                return Err(ReadEnd::Malformed("TSRequest too long".to_owned()));
            }
            let mut chunk = [0_u8; 8192];
            let n = match tokio::time::timeout(timeout, r.read(&mut chunk)).await {
                Err(_) => return Err(ReadEnd::Timeout),
                Ok(Err(_)) => return Err(ReadEnd::Closed(CloseKind::Rst)),
                Ok(Ok(0)) => return Err(ReadEnd::Closed(CloseKind::Fin)),
                Ok(Ok(n)) => n,
            };
            self.buf
                .extend_from_slice(chunk.get(..n).unwrap_or_default());
        }
    }
}

fn filetime_now() -> u64 {
    wntlm::unix_to_filetime(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default(),
    )
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

fn random<const N: usize>() -> [u8; N] {
    let mut b = [0_u8; N];
    if aws_lc_rs::rand::fill(&mut b).is_err() {
        // The system RNG failed: fall back to the clock, never to a constant.
        let t = filetime_now().to_le_bytes();
        for (i, x) in b.iter_mut().enumerate() {
            *x = t.get(i % 8).copied().unwrap_or(0) ^ u8::try_from(i % 256).unwrap_or(0);
        }
    }
    b
}

fn rfc3339(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| unix.to_string())
}

/// The peer's NTLM message in the first negoToken.
fn ntlm_msg(ts: &TsRequest) -> Option<&[u8]> {
    ts.nego_tokens
        .first()
        .and_then(|t| wntlm::find_message(t))
        .map(|(_, m)| m)
}

struct Ctx<'a> {
    session: &'a mut Session,
    clock: Clock,
}

impl Ctx<'_> {
    fn sent_to_host(&mut self, raw: &[u8]) {
        self.session
            .feed_plaintext(Direction::ClientToHost, raw, self.clock.now());
    }
    fn got_from_host(&mut self, raw: &[u8]) {
        self.session
            .feed_plaintext(Direction::HostToClient, raw, self.clock.now());
    }
    fn note(&mut self, dir: Direction, leg: &str, text: String) {
        self.session.nla_note(dir, leg, text, self.clock.now());
    }
    fn close(&mut self, side: Side, kind: CloseKind) {
        self.session.on_close(side, kind, self.clock.now());
    }
}

async fn send<W: AsyncWrite + Unpin>(w: &mut W, ts: &TsRequest) -> std::io::Result<Vec<u8>> {
    let raw = wire::encode(ts);
    w.write_all(&raw).await?;
    w.flush().await?;
    Ok(raw)
}

/// What binds each leg: the keys of the two TLS certificates, and the host's name.
pub(super) struct Ends<'a> {
    /// SubjectPublicKey of rdpdiag's certificate (the client leg).
    pub(super) our_key: Vec<u8>,
    /// SubjectPublicKey of the host's certificate (the host leg).
    pub(super) host_key: Vec<u8>,
    /// The target host as given (for `TERMSRV/host`).
    pub(super) host: &'a str,
}

/// Runs both CredSSP legs. `None`: the connection ended here (the session knows how).
#[allow(clippy::too_many_lines)]
pub(super) async fn broker<C, H>(
    client: &mut C,
    host: &mut H,
    creds: &Credentials,
    ends: Ends<'_>,
    session: &mut Session,
    clock: Clock,
    timeout: Duration,
) -> Option<Brokered>
where
    C: AsyncRead + AsyncWrite + Unpin,
    H: AsyncRead + AsyncWrite + Unpin,
{
    let mut x = Ctx { session, clock };
    x.session.nla_begin(&creds.display());
    let (mut cr, mut hr) = (Reader::new(), Reader::new());
    let Ends {
        our_key,
        host_key,
        host: target,
    } = ends;
    let mut cleg = ClientLeg::new(our_key);

    // C1: the client's NEGOTIATE.
    let (_, c1) = match cr.next(client, timeout).await {
        Ok(v) => v,
        Err(e) => return client_ended(&mut x, e, "before its first TSRequest"),
    };
    let negotiate = match cleg.on_negotiate(&c1) {
        Ok(n) => n,
        Err(e) => return refuse(&mut x, client, host, &cleg, &e).await,
    };
    let cflags = wntlm::negotiate_flags(&negotiate).unwrap_or_default();
    x.note(
        Direction::ClientToHost,
        "client",
        format!(
            "TSRequest v{} NTLM NEGOTIATE, flags 0x{:08X} ({})",
            c1.version,
            cflags.0,
            cflags.names()
        ),
    );
    x.session.nla_update(|r| {
        r.client_leg.credssp_version = Some(c1.version);
        r.client_leg.ntlm_flags = Some(format!("0x{:08X} {}", cflags.0, cflags.names()));
    });

    // H1 → H2: rdpdiag's NEGOTIATE to the host with the client's CredSSP version.
    let mut hleg =
        HostLeg::new(c1.version, host_key, random()).with_target_name(&format!("TERMSRV/{target}"));
    match send(host, &hleg.negotiate()).await {
        Ok(raw) => x.sent_to_host(&raw),
        Err(_) => {
            x.close(Side::Host, CloseKind::Rst);
            return None;
        }
    }
    x.session
        .nla_update(|r| r.host_leg.result = "in progress".to_owned());
    let (raw, h2) = match hr.next(host, timeout).await {
        Ok(v) => v,
        Err(e) => return host_ended(&mut x, client, e).await,
    };
    x.got_from_host(&raw);
    if let Some(code) = h2.error_code {
        return host_refused(&mut x, client, &cleg, code).await;
    }
    let mut id = ServerIdentity {
        nb_domain: "RDPDIAG".to_owned(),
        nb_computer: "RDPDIAG".to_owned(),
        dns_domain: "rdpdiag".to_owned(),
        dns_computer: "rdpdiag".to_owned(),
    };
    if let Some(ch) = ntlm_msg(&h2).and_then(|m| wntlm::decode_challenge(m).ok()) {
        let ti = &ch.target_info;
        let skew = ti.timestamp_unix().map(|t| t - unix_now());
        let names = [
            ti.nb_domain_name
                .as_ref()
                .map(|n| format!("NetBIOS domain {n}")),
            ti.nb_computer_name
                .as_ref()
                .map(|n| format!("NetBIOS computer {n}")),
            ti.dns_domain_name
                .as_ref()
                .map(|n| format!("DNS domain {n}")),
            ti.dns_computer_name
                .as_ref()
                .map(|n| format!("DNS computer {n}")),
        ]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(", ");
        let os = ch.version.map(|v| match v.windows_name() {
            Some(w) => format!("{}.{}.{} ({w})", v.major, v.minor, v.build),
            None => format!("{}.{}.{}", v.major, v.minor, v.build),
        });
        x.note(
            Direction::HostToClient,
            "host",
            format!(
                "TSRequest v{} NTLM CHALLENGE, flags 0x{:08X} ({}); {names}{}{}",
                h2.version,
                ch.flags.0,
                ch.flags.names(),
                os.as_ref().map(|o| format!("; OS {o}")).unwrap_or_default(),
                skew.map(|s| format!("; host clock {s:+} s from rdpdiag's"))
                    .unwrap_or_default()
            ),
        );
        let t = ti.timestamp_unix();
        x.session.nla_update(|r| {
            r.host_leg.credssp_version = Some(h2.version);
            r.host_leg.ntlm_flags = Some(format!("0x{:08X} {}", ch.flags.0, ch.flags.names()));
            r.host_leg.netbios_domain_name = ti.nb_domain_name.clone();
            r.host_leg.netbios_computer_name = ti.nb_computer_name.clone();
            r.host_leg.dns_domain_name = ti.dns_domain_name.clone();
            r.host_leg.dns_computer_name = ti.dns_computer_name.clone();
            r.host_leg.os_version = os.clone();
            r.host_leg.peer_time = t.map(rfc3339);
            r.host_leg.clock_skew_secs = skew;
        });
        let name = |v: &Option<String>, d: &str| v.clone().unwrap_or_else(|| d.to_owned());
        id = ServerIdentity {
            nb_domain: name(&ti.nb_domain_name, &id.nb_domain),
            nb_computer: name(&ti.nb_computer_name, &id.nb_computer),
            dns_domain: name(&ti.dns_domain_name, &id.dns_domain),
            dns_computer: name(&ti.dns_computer_name, &id.dns_computer),
        };
    }

    // C2 → C3: rdpdiag's CHALLENGE (the host's names), the client's AUTHENTICATE, checked.
    let c2 = match cleg.challenge(&negotiate, random(), filetime_now(), &id) {
        Ok(c) => c,
        Err(e) => return refuse(&mut x, client, host, &cleg, &e).await,
    };
    if send(client, &c2).await.is_err() {
        x.close(Side::Client, CloseKind::Rst);
        return None;
    }
    let (_, c3) = match cr.next(client, timeout).await {
        Ok(v) => v,
        Err(e) => return client_ended(&mut x, e, "after rdpdiag's CHALLENGE"),
    };
    let logon = match cleg.on_authenticate(&c3, creds) {
        Ok(l) => l,
        Err(e) => return refuse(&mut x, client, host, &cleg, &e).await,
    };
    let who = if logon.domain.is_empty() {
        logon.user.clone()
    } else {
        format!("{}\\{}", logon.domain, logon.user)
    };
    x.note(
        Direction::ClientToHost,
        "client",
        format!(
            "NTLM AUTHENTICATE for {who} from workstation '{}' verified (NTLMv2{}), pubKeyAuth bound to rdpdiag's certificate",
            logon.workstation,
            if logon.had_mic { ", MIC" } else { "" }
        ),
    );
    x.session.nla_update(|r| {
        r.client_leg.logon = Some(who.clone());
        r.client_leg.workstation = Some(logon.workstation.clone());
        r.client_leg.os_version = logon
            .version
            .map(|v| format!("{}.{}.{}", v.major, v.minor, v.build));
        r.client_leg.result = "accepted".to_owned();
    });

    // H3 → H4: rdpdiag's AUTHENTICATE to the host.
    let h3 = match hleg.on_challenge(&h2, creds, filetime_now(), random(), random(), "RDPDIAG") {
        Ok(h) => h,
        Err(e) => return host_problem(&mut x, client, host, &e).await,
    };
    match send(host, &h3).await {
        Ok(raw) => x.sent_to_host(&raw),
        Err(_) => {
            x.close(Side::Host, CloseKind::Rst);
            return None;
        }
    }
    let (raw, h4) = match hr.next(host, timeout).await {
        Ok(v) => v,
        Err(e) => return host_ended(&mut x, client, e).await,
    };
    x.got_from_host(&raw);
    if let Some(code) = h4.error_code {
        return host_refused(&mut x, client, &cleg, code).await;
    }
    let h5 = match hleg.on_pubkey_reply(&h4, creds) {
        Ok(h) => h,
        Err(e) => return host_problem(&mut x, client, host, &e).await,
    };
    x.note(
        Direction::HostToClient,
        "host",
        "pubKeyAuth verified: the host accepted rdpdiag's credentials".to_owned(),
    );

    // C4 → C5: rdpdiag's pubKeyAuth to the client, its TSCredentials.
    let c4 = match cleg.pubkey_reply() {
        Ok(c) => c,
        Err(e) => return refuse(&mut x, client, host, &cleg, &e).await,
    };
    if send(client, &c4).await.is_err() {
        x.close(Side::Client, CloseKind::Rst);
        return None;
    }
    let (_, c5) = match cr.next(client, timeout).await {
        Ok(v) => v,
        Err(e) => return client_ended(&mut x, e, "after rdpdiag's pubKeyAuth"),
    };
    match cleg.on_credentials(&c5, creds) {
        Ok(d) => {
            let kind = match d.cred_type {
                1 => "password",
                2 => "smart card",
                6 => "Remote Credential Guard",
                _ => "unknown",
            };
            let same = match d.password_matches {
                Some(true) => ", the same password",
                Some(false) => ", a different password (rdpdiag forwards its own)",
                None => "",
            };
            x.note(
                Direction::ClientToHost,
                "client",
                format!("TSCredentials ({kind}) for {}\\{}{same}", d.domain, d.user),
            );
        }
        Err(e) => return refuse(&mut x, client, host, &cleg, &e).await,
    }
    // H5: rdpdiag's TSCredentials to the host.
    match send(host, &h5).await {
        Ok(raw) => x.sent_to_host(&raw),
        Err(_) => {
            x.close(Side::Host, CloseKind::Rst);
            return None;
        }
    }
    x.session
        .nla_update(|r| r.host_leg.result = "accepted; credentials delegated".to_owned());
    Some(Brokered {
        client_rest: cr.buf,
        host_rest: hr.buf,
    })
}

/// The client went away (or sent garbage) during CredSSP.
fn client_ended(x: &mut Ctx<'_>, e: ReadEnd, when: &str) -> Option<Brokered> {
    match e {
        ReadEnd::Closed(kind) => x.close(Side::Client, kind),
        ReadEnd::Timeout => {
            x.note(
                Direction::ClientToHost,
                "client",
                format!("no TSRequest from the client {when} before the stall timeout"),
            );
            x.close(Side::Proxy, CloseKind::Fin);
        }
        ReadEnd::Malformed(m) => {
            x.session
                .nla_refused(format!("undecodable TSRequest {when}: {m}"), x.clock.now());
            x.close(Side::Proxy, CloseKind::Fin);
        }
    }
    None
}

/// The host went away (or sent garbage): mirror the close toward the client.
async fn host_ended<C: AsyncWrite + Unpin>(
    x: &mut Ctx<'_>,
    client: &mut C,
    e: ReadEnd,
) -> Option<Brokered> {
    match e {
        ReadEnd::Closed(kind) => {
            x.session.nla_update(|r| {
                r.host_leg.result = format!(
                    "the host closed ({}) without an errorCode",
                    kind.name().to_uppercase()
                );
            });
            x.close(Side::Host, kind);
        }
        ReadEnd::Timeout => {
            x.session.nla_host_problem(
                "no TSRequest from the host before the stall timeout".to_owned(),
                x.clock.now(),
            );
            x.close(Side::Proxy, CloseKind::Fin);
        }
        ReadEnd::Malformed(m) => {
            x.session
                .nla_host_problem(format!("undecodable TSRequest: {m}"), x.clock.now());
            x.close(Side::Proxy, CloseKind::Fin);
        }
    }
    let _ = client.shutdown().await;
    None
}

/// The host sent an errorCode: pass it on to the client (so mstsc shows the host's own
/// message), then close.
async fn host_refused<C: AsyncWrite + Unpin>(
    x: &mut Ctx<'_>,
    client: &mut C,
    cleg: &ClientLeg,
    code: u32,
) -> Option<Brokered> {
    x.note(
        Direction::HostToClient,
        "host",
        format!("errorCode {}", wire::status_name(code)),
    );
    if cleg.peer_version() >= 3 {
        let _ = send(client, &cleg.error(code)).await;
    }
    let _ = client.shutdown().await;
    x.close(Side::Host, CloseKind::Fin);
    None
}

/// A host-leg failure that is not an errorCode (binding, undecodable CHALLENGE).
async fn host_problem<C, H>(
    x: &mut Ctx<'_>,
    client: &mut C,
    host: &mut H,
    e: &LegError,
) -> Option<Brokered>
where
    C: AsyncWrite + Unpin,
    H: AsyncWrite + Unpin,
{
    x.session.nla_host_problem(e.to_string(), x.clock.now());
    let _ = host.shutdown().await;
    let _ = client.shutdown().await;
    x.close(Side::Proxy, CloseKind::Fin);
    None
}

/// rdpdiag refuses the client: an errorCode it can show (STATUS_LOGON_FAILURE for credentials,
/// SEC_E_INVALID_TOKEN otherwise), then both legs close.
async fn refuse<C, H>(
    x: &mut Ctx<'_>,
    client: &mut C,
    host: &mut H,
    cleg: &ClientLeg,
    e: &LegError,
) -> Option<Brokered>
where
    C: AsyncWrite + Unpin,
    H: AsyncWrite + Unpin,
{
    let code = match e {
        LegError::Ntlm(
            NtlmError::UserMismatch { .. }
            | NtlmError::PasswordMismatch { .. }
            | NtlmError::Anonymous
            | NtlmError::NtlmV1 { .. },
        ) => 0xC000_006D,
        LegError::ErrorCode(c) => *c,
        _ => 0x8009_0308,
    };
    x.session.nla_refused(e.to_string(), x.clock.now());
    if cleg.peer_version() >= 3 {
        let _ = send(client, &cleg.error(code)).await;
    }
    let _ = client.shutdown().await;
    let _ = host.shutdown().await;
    x.close(Side::Proxy, CloseKind::Fin);
    None
}
