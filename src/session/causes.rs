//! The cause catalog: every cause id a verdict can carry, with what it means on the Windows side,
//! the remedies in the order an admin should try them, and the experiment that confirms it.
//!
//! Rules as data: the phase machine picks an id; the texts live here, once.

use serde::Serialize;

/// A stable cause id such as `nego.hybrid_required_by_server`.
pub type CauseId = &'static str;

/// One entry of the catalog.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Cause {
    pub id: CauseId,
    /// What it means, in one line.
    pub title: &'static str,
    /// Likely causes on the Windows side.
    pub likely_causes: &'static [&'static str],
    /// Remedies, first to try first.
    pub remedies: &'static [&'static str],
    /// rdpdiag experiments that confirm it.
    pub confirm_with: &'static [&'static str],
}

/// Looks up a cause by id.
pub fn lookup(id: &str) -> Option<&'static Cause> {
    CAUSES.iter().find(|c| c.id == id)
}

const CERT_REMEDIES: &[&str] = &[
    "On the host: Get-ChildItem 'Cert:\\LocalMachine\\Remote Desktop' | fl Subject,NotAfter,HasPrivateKey,Thumbprint",
    "Read the System log: TermService/RemoteConnectionManager events 1050-1065 and Schannel 36870/36871/36888",
    "Give NETWORK SERVICE read access to the key in C:\\ProgramData\\Microsoft\\Crypto\\RSA\\MachineKeys (f686aace6942fb7f7ceb231212eef4a4_<MachineGuid>)",
    "Delete the broken self-signed Remote Desktop certificate (and its f686aace... key file), then Restart-Service TermService -Force: it creates a new one",
    "Or bind a valid CA certificate with the Remote Desktop Authentication / serverAuth EKU (SSLCertificateSHA1Hash)",
];

/// Every cause id rdpdiag produces.
pub static CAUSES: &[Cause] = &[
    Cause {
        id: "tcp.connect_refused",
        title: "the host refused the TCP connection: nothing listens on the RDP port, or a firewall rejects it",
        likely_causes: &[
            "Remote Desktop is disabled (fDenyTSConnections = 1, 'Don't allow remote connections')",
            "TermService is stopped or crashed, or the listener uses another port (RDP-Tcp PortNumber)",
            "Windows Firewall rule group 'Remote Desktop' disabled, or a network firewall rejects",
        ],
        remedies: &[
            "Test-NetConnection HOST -Port 3389 from the client",
            "On the host: Get-Service TermService; qwinsta (rdp-tcp must be in state Listen); netstat -ano | findstr :3389",
            "Enable Remote Desktop and the 'Remote Desktop' firewall rule group",
            "Check the port in HKLM\\SYSTEM\\CurrentControlSet\\Control\\Terminal Server\\WinStations\\RDP-Tcp\\PortNumber",
        ],
        confirm_with: &["rdpdiag probe HOST"],
    },
    Cause {
        id: "tcp.connect_timeout",
        title: "the host did not answer the TCP connection (no SYN-ACK): down, filtered or unroutable",
        likely_causes: &[
            "host off, asleep or unreachable; wrong DNS record or address",
            "a firewall, NSG or VPN split tunnel silently drops the SYN",
        ],
        remedies: &[
            "Check the name resolves to the right address (Resolve-DnsName HOST)",
            "Test-NetConnection HOST -Port 3389 from the client and from the host's own network",
            "Open TCP 3389 on every firewall / NSG on the path",
        ],
        confirm_with: &["rdpdiag probe HOST"],
    },
    Cause {
        id: "x224.host_closed_after_request",
        title: "the host (or a middlebox) closed the connection right after the X.224 Connection Request, without answering",
        likely_causes: &[
            "an IPS / firewall 'RDP inspection' rejecting the request",
            "the port leads to a service that wants another first PDU (Hyper-V VMConnect pre-connection PDU, a broker routing token)",
            "the RDP listener is in a broken state (TermService half-started, corrupted RDP-Tcp configuration)",
            "security software on the host",
        ],
        remedies: &[
            "Connect from another network segment to bypass middleboxes",
            "Restart-Service TermService -Force on the host (drops sessions)",
            "Read the host's RemoteConnectionManager and LocalSessionManager event logs",
            "For RD farms, connect through the broker / with the .rdp file's loadbalanceinfo",
        ],
        confirm_with: &["rdpdiag probe HOST (which request variants are dropped)"],
    },
    Cause {
        id: "nego.ssl_required_by_server",
        title: "the host requires TLS (SSL_REQUIRED_BY_SERVER) but the client offered only Standard RDP Security",
        likely_causes: &[
            "an old client, or client options forcing RDP security (enablecredsspsupport / authentication level tweaks)",
            "rdpdiag's own --security rdp experiment",
        ],
        remedies: &[
            "Let the client negotiate TLS: remove options that force RDP security, update the client",
            "Only if unavoidable (a security downgrade): set the host's security layer back to Negotiate",
        ],
        confirm_with: &["rdpdiag proxy --security tls", "rdpdiag probe HOST"],
    },
    Cause {
        id: "nego.ssl_not_allowed_by_server",
        title: "the host allows only Standard RDP Security (SSL_NOT_ALLOWED_BY_SERVER) but the client wants TLS",
        likely_causes: &[
            "'Require use of specific security layer for remote (RDP) connections' = RDP on the host (SecurityLayer = 0)",
            "the client refuses RDP security (server authentication 'Do not connect' or NLA forced on the client)",
        ],
        remedies: &[
            "Set the host's security layer to Negotiate (1) or SSL (2) (GPO or RDP-Tcp SecurityLayer), gpupdate /force, reconnect",
            "Check that no event 1050 follows (the host could not use TLS)",
        ],
        confirm_with: &["rdpdiag proxy --security rdp", "rdpdiag probe HOST"],
    },
    Cause {
        id: "nego.ssl_cert_not_on_server",
        title: "the host has no usable TLS certificate (SSL_CERT_NOT_ON_SERVER)",
        likely_causes: &[
            "the Remote Desktop certificate expired and TermService could not replace it (events 1057/1058)",
            "its private key is unreadable for NETWORK SERVICE (MachineKeys ACLs reset by hardening or imaging)",
            "a configured certificate (SSLCertificateSHA1Hash, GPO template) was deleted or lacks its private key",
        ],
        remedies: CERT_REMEDIES,
        confirm_with: &[
            "rdpdiag probe HOST",
            "rdpdiag proxy --security rdp (Standard RDP Security still works: TLS-specific)",
        ],
    },
    Cause {
        id: "nego.inconsistent_flags",
        title: "the host answered INCONSISTENT_FLAGS: the request's flags contradict each other",
        likely_causes: &["a client or middlebox bug (the code exists for the direct TLS approach)"],
        remedies: &[
            "Capture the exchange (rdpdiag proxy --record DIR) and report it to the client's vendor",
            "Try another client build",
        ],
        confirm_with: &["rdpdiag probe HOST"],
    },
    Cause {
        id: "nego.hybrid_required_by_server",
        title: "the host requires Network Level Authentication (HYBRID_REQUIRED_BY_SERVER) but the client did not offer CredSSP",
        likely_causes: &[
            "the client has CredSSP disabled (enablecredsspsupport:i:0) or is too old",
            "'Allow connections only from computers running Remote Desktop with NLA' is set on the host",
        ],
        remedies: &[
            "Enable CredSSP on the client (remove enablecredsspsupport:i:0, use a current client)",
            "Only if the host's NLA cannot work (no DC, expired password): untick 'Allow connections only from computers running Remote Desktop with NLA' on the host (a downgrade)",
        ],
        confirm_with: &["rdpdiag proxy --security nla", "rdpdiag probe HOST"],
    },
    Cause {
        id: "nego.ssl_with_user_auth_required_by_server",
        title: "the host requires TLS with client certificate authentication (SSL_WITH_USER_AUTH_REQUIRED_BY_SERVER)",
        likely_causes: &["a host policy that requires TLS client certificates (rare)"],
        remedies: &["Provide the client certificate the host expects, or relax that host policy"],
        confirm_with: &["rdpdiag probe HOST"],
    },
    Cause {
        id: "nego.client_refused_selected_protocol",
        title: "the host selected a security protocol and the client closed instead of going on",
        likely_causes: &[
            "the host selected Standard RDP Security (security layer forced to RDP, or a silent downgrade because its TLS certificate is unusable) and the client requires TLS/NLA",
            "the host selected a protocol the client did not request or enable",
            "a middlebox rewrote the request",
        ],
        remedies: &[
            "Make the host offer TLS: fix its certificate/key, set its security layer to Negotiate or SSL",
            "Relax the client's requirements only for testing",
        ],
        confirm_with: &[
            "rdpdiag probe HOST (does the host ever select SSL/HYBRID?)",
            "rdpdiag proxy --security tls",
        ],
    },
    Cause {
        id: "tls.host_aborted_handshake",
        title: "the host aborted the TLS handshake right after the ClientHello without a usable answer: it cannot use its certificate or private key",
        likely_causes: &[
            "the private key of the Remote Desktop certificate is unreadable (corrupt MachineKeys, missing NETWORK SERVICE permission: Schannel 36870)",
            "the certificate expired and could not be renewed, or its key does not match",
            "Schannel has no enabled server protocol (36871) — also possible: no common TLS version (see probe)",
        ],
        remedies: CERT_REMEDIES,
        confirm_with: &[
            "rdpdiag probe HOST (all TLS versions fail the same way: certificate/key)",
            "rdpdiag proxy --security rdp",
        ],
    },
    Cause {
        id: "tls.alert_from_host",
        title: "the host ended the TLS handshake with an alert",
        likely_causes: &[
            "the host cannot use its credential (handshake_failure / internal_error right after the ClientHello)",
            "a TLS policy on the host the client does not meet",
        ],
        remedies: &[
            "Read the alert description in the evidence and the host's Schannel events (36870, 36874, 36888)",
            "Check the host certificate and key (see tls.host_aborted_handshake)",
        ],
        confirm_with: &["rdpdiag probe HOST"],
    },
    Cause {
        id: "tls.alert_from_client",
        title: "the client ended the TLS handshake with an alert",
        likely_causes: &["the client objects to the host's TLS parameters or certificate"],
        remedies: &[
            "Read the alert description in the evidence",
            "Compare the host's selected version/cipher and certificate with the client's policy",
        ],
        confirm_with: &["rdpdiag probe HOST", "rdpdiag proxy --fresh-cert"],
    },
    Cause {
        id: "tls.no_common_version",
        title: "client and host have no TLS version in common",
        likely_causes: &[
            "a legacy host serving RDP over TLS 1.0 only (Windows 7 / 2008 R2 without KB3080079)",
            "a client with TLS 1.0/1.1 disabled (current Windows default) or a host hardened to TLS 1.2+/1.3 only",
        ],
        remedies: &[
            "Enable TLS 1.2 on the legacy host (KB3080079 + SCHANNEL Protocols keys), or retire it",
            "Align the TLS policy of client and host; re-enable TLS 1.0 on the client only as a temporary test",
            "On Windows Server 2019, remove the experimental TLS 1.3 server switch",
        ],
        confirm_with: &["rdpdiag probe HOST (which TLS versions the host accepts)"],
    },
    Cause {
        id: "tls.no_common_cipher",
        title: "client and host have no TLS cipher suite (or group / signature scheme) in common",
        likely_causes: &[
            "'SSL Cipher Suite Order' GPO or IIS Crypto-style edits leaving no common suite (Schannel 36874)",
            "FIPS mode on one side",
        ],
        remedies: &[
            "Align the cipher-suite policy of both sides (include ECDHE + AES-GCM suites)",
            "Check the FIPS policy",
        ],
        confirm_with: &["rdpdiag probe HOST"],
    },
    Cause {
        id: "tls.client_rejected_certificate",
        title: "the client rejected the host's certificate after the TLS handshake",
        likely_causes: &[
            "the certificate is expired, not yet valid, self-signed/untrusted, or does not match the name the client used",
            "a client policy that requires a trusted certificate ('Configure server authentication for client' = Do not connect)",
            "weak certificate: SHA-1 signature, RSA < 2048, missing serverAuth / Remote Desktop Authentication EKU",
            "the client's clock is wrong",
        ],
        remedies: &[
            "Renew or replace the host certificate (CA template with the Remote Desktop Authentication EKU)",
            "Connect with the name in the certificate; fix the client clock",
            "Trust the issuing CA on the client; publish its CRL",
        ],
        confirm_with: &[
            "rdpdiag probe HOST (certificate health)",
            "rdpdiag proxy --fresh-cert --ca DIR with the rdpdiag CA trusted on the client",
        ],
    },
    Cause {
        id: "credssp.failed",
        title: "Network Level Authentication (CredSSP) failed",
        likely_causes: &[
            "wrong password or unknown user; stale saved credentials (Credential Manager TERMSRV/HOST)",
            "account locked out, disabled, expired, or password expired / must change",
            "the user lacks 'Access this computer from the network'",
            "CredSSP encryption-oracle policy mismatch (CVE-2018-0886 patch level)",
            "the host cannot reach a domain controller, or its secure channel is broken",
        ],
        remedies: &[
            "Re-enter the credentials; delete saved credentials for TERMSRV/HOST",
            "Check the account in AD (locked, disabled, expired, logon hours)",
            "Grant 'Access this computer from the network' to the user or group",
            "Patch the host (CredSSP); set AllowEncryptionOracle=2 on the client only temporarily to regain access",
            "On the host: Test-ComputerSecureChannel -Repair; w32tm /resync",
        ],
        confirm_with: &[
            "rdpdiag proxy --fresh-cert --nla-user USER (NLA kept: read the host's own errorCode in clear)",
            "rdpdiag proxy --security tls (the same user without NLA)",
        ],
    },
    Cause {
        id: "credssp.proxy_refused",
        title: "rdpdiag itself refused the client's NLA logon (--nla-user): the client's credentials are not the ones rdpdiag was given",
        likely_causes: &[
            "the user typed another account or password than the one given to rdpdiag --nla-user",
            "saved credentials (Credential Manager TERMSRV/HOST) for another account are sent automatically",
            "the client uses NTLMv1 (LmCompatibilityLevel below 3) or a smart card / Remote Credential Guard, which rdpdiag cannot broker",
        ],
        remedies: &[
            "Log on with exactly the account and password given to rdpdiag (DOMAIN\\user or user@domain)",
            "Delete saved credentials for the proxy address (cmdkey /list, cmdkey /delete:TERMSRV/ADDRESS)",
            "Re-run rdpdiag with --nla-user set to the account the user logs on with",
        ],
        confirm_with: &["rdpdiag proxy --fresh-cert --nla-user USER (same account on both sides)"],
    },
    Cause {
        id: "early_auth.denied",
        title: "Early User Authorization denied: the user authenticated but may not log on remotely",
        likely_causes: &[
            "the user is not in 'Remote Desktop Users' (or Administrators)",
            "'Allow log on through Remote Desktop Services' lacks the user, or 'Deny log on through Remote Desktop Services' includes it",
        ],
        remedies: &[
            "net localgroup \"Remote Desktop Users\" USER /add (or GPO Restricted Groups)",
            "Fix the user-rights GPO, then gpupdate /force",
        ],
        confirm_with: &[
            "rdpdiag proxy --fresh-cert --nla-user USER (read the result in clear)",
            "rdpdiag proxy --security nla",
        ],
    },
    Cause {
        id: "rdp_security.encryption_mismatch",
        title: "Standard RDP Security: the encryption method or level the host chose does not fit the client's offer",
        likely_causes: &[
            "'Set client connection encryption level' = High or FIPS Compliant versus a client lacking that method",
            "'System cryptography: Use FIPS compliant algorithms' policy",
            "security layer forced to RDP on the host, so TLS is never tried",
        ],
        remedies: &[
            "Prefer TLS: set the host's security layer to Negotiate or SSL (the encryption level is then irrelevant)",
            "Otherwise set the encryption level to Client Compatible",
            "Turn the FIPS policy off if it is not mandated",
        ],
        confirm_with: &["rdpdiag probe HOST (accepted encryption methods)"],
    },
    Cause {
        id: "stall",
        title: "a phase made no progress for too long",
        likely_causes: &[
            "no answer to the Connection Request: the RDP stack is hung, or the port expects a pre-connection PDU (Hyper-V)",
            "no answer to the ClientHello: a PMTU black hole on a VPN (the large server flight is dropped) or a stuck TLS-inspecting middlebox",
            "client silent after the server flight: a certificate prompt or a CRL/OCSP fetch timing out",
            "host silent after the credentials: a slow or unreachable domain controller",
        ],
        remedies: &[
            "See which phase stalled and who was waiting",
            "On VPN paths: clamp the TCP MSS or lower the MTU",
            "Check middleboxes (TLS inspection, IPS) between client and host",
        ],
        confirm_with: &["rdpdiag probe HOST", "rdpdiag proxy --stall-timeout SECS"],
    },
    Cause {
        id: "healthy",
        title: "the connection reached the active session (healthy as far as visible)",
        likely_causes: &[],
        remedies: &[],
        confirm_with: &[],
    },
    // Further ids, beyond the required set.
    Cause {
        id: "x224.not_rdp",
        title: "the peer did not speak RDP (the bytes are not a TPKT / X.224 PDU)",
        likely_causes: &[
            "the port leads to another service (HTTPS, RD Gateway, SSH, a load balancer)",
            "a client that sends a TLS ClientHello first (direct approach) or another protocol",
        ],
        remedies: &[
            "Check the target host and port",
            "For RD Gateway, use the gateway settings, not the gateway port as the host",
        ],
        confirm_with: &["rdpdiag probe HOST"],
    },
    Cause {
        id: "x224.malformed",
        title: "an X.224 / negotiation PDU is malformed",
        likely_causes: &["a buggy client, host or middlebox; a lying length field"],
        remedies: &[
            "Capture the exchange (rdpdiag proxy --record DIR) and report it to the vendor",
        ],
        confirm_with: &["rdpdiag probe HOST"],
    },
    Cause {
        id: "x224.client_closed_before_request",
        title: "the client closed before sending a complete Connection Request",
        likely_causes: &["a port scanner or health check; the client gave up"],
        remedies: &["Nothing on the host side: check the client"],
        confirm_with: &[],
    },
    Cause {
        id: "tls.closed_during_handshake",
        title: "the TLS handshake was cut off by a close",
        likely_causes: &["a peer or middlebox dropped the handshake half-way"],
        remedies: &["See who closed and when; check middleboxes (TLS inspection, IPS)"],
        confirm_with: &["rdpdiag probe HOST", "rdpdiag proxy --fresh-cert"],
    },
    Cause {
        id: "mcs.host_disconnected",
        title: "the host ended the connection during the MCS/GCC connect or licensing",
        likely_causes: &[
            "the host refused the client's GCC settings (color depth, channels, encryption)",
            "Standard RDP Security decryption / MAC failure",
            "licensing problems (no RD license server, expired grace period)",
        ],
        remedies: &[
            "Read the host's TerminalServices-* event logs for this connection",
            "Try TLS instead of Standard RDP Security",
        ],
        confirm_with: &["rdpdiag proxy --security tls"],
    },
    Cause {
        id: "tcp.connect_failed",
        title: "the TCP connection to the host failed (unreachable network or host, name resolution)",
        likely_causes: &[
            "no route to the host, a wrong address or name, an ICMP unreachable from a firewall",
        ],
        remedies: &[
            "Resolve-DnsName HOST; Test-NetConnection HOST -Port 3389",
            "Check routing / VPN to the host's network",
        ],
        confirm_with: &["rdpdiag probe HOST"],
    },
    Cause {
        id: "nego.unknown_failure",
        title: "the host refused the negotiation with a failure code rdpdiag does not know",
        likely_causes: &["a newer or non-Microsoft RDP server"],
        remedies: &["Look the failure code up in MS-RDPBCGR 2.2.1.2.2; capture and report it"],
        confirm_with: &["rdpdiag probe HOST"],
    },
    Cause {
        id: "internal_error",
        title: "rdpdiag itself failed while handling this connection (a bug: please report it)",
        likely_causes: &["a bug in rdpdiag"],
        remedies: &["Run with -v and report the log; other connections are not affected"],
        confirm_with: &[],
    },
    Cause {
        id: "experiment.client_detected_rewrite",
        title: "rdpdiag rewrote requestedProtocols (--security) and the client detected it in the host's encrypted echo (SC_CORE.clientRequestedProtocols): the experiment's side effect, not a host failure",
        likely_causes: &[
            "the client compares the host's echo of requestedProtocols with what it sent (MS-RDPBCGR 5.4.2.1) and treats a mismatch as tampering",
            "the echo travels inside TLS, which rdpdiag relays without terminating",
        ],
        remedies: &[
            "Re-run the experiment with --fresh-cert so rdpdiag terminates TLS and patches the echo back",
            "Or change the client's own setting instead of rewriting (mstsc: disable 'Require NLA' / rdp file 'enablecredsspsupport:i:0')",
        ],
        confirm_with: &["rdpdiag proxy --security tls --fresh-cert --target HOST"],
    },
    Cause {
        id: "experiment.nla_key_binding",
        title: "NLA (CredSSP) failed through --fresh-cert, as it must: pubKeyAuth binds the TLS server key and the client saw rdpdiag's key (not the host's fault)",
        likely_causes: &[
            "CredSSP's pubKeyAuth proves both ends saw the same TLS public key; with TLS terminated by rdpdiag they see different keys (MS-CSSP 3.1.5)",
        ],
        remedies: &[
            "Run --fresh-cert without --security nla (the default strips NLA) to test the certificate, and test NLA without --fresh-cert",
        ],
        confirm_with: &[
            "rdpdiag proxy --fresh-cert --target HOST",
            "rdpdiag proxy --security nla --target HOST",
        ],
    },
    Cause {
        id: "experiment.client_rejected_fresh_cert",
        title: "the client refused rdpdiag's fresh certificate: it does not trust the issuer (the experiment's setup, not the host)",
        likely_causes: &[
            "--fresh-cert without --ca presents a self-signed certificate",
            "the local CA is not in the client's trusted roots",
            "the client connects under a name the certificate does not carry (use --cert-name)",
        ],
        remedies: &[
            "rdpdiag cert ca --out DIR, then on the client: Import-Certificate -FilePath ca.crt -CertStoreLocation Cert:\\CurrentUser\\Root",
            "Run the proxy with --fresh-cert --ca DIR (and --cert-name NAME matching what the client connects to)",
        ],
        confirm_with: &["rdpdiag proxy --fresh-cert --ca DIR --target HOST"],
    },
    Cause {
        id: "closed_early",
        title: "the connection ended before the session became active, with no more specific explanation",
        likely_causes: &["see the phase reached and who closed"],
        remedies: &[
            "Record the connection (rdpdiag proxy --record DIR) and compare with a working client",
        ],
        confirm_with: &["rdpdiag probe HOST"],
    },
];

/// A CredSSP errorCode read in clear: the likely cause it names and the remedy for it, more
/// precise than the catalogue's `credssp.failed` list (reference §3.8).
pub fn error_code_advice(code: u32) -> Option<(&'static str, &'static str)> {
    Some(match code {
        0xC000_006D | 0xC000_006A | 0xC000_0064 | 0x8009_030C => (
            "the host refused the user name or password (STATUS_LOGON_FAILURE / WRONG_PASSWORD / NO_SUCH_USER)",
            "Re-enter the credentials (DOMAIN\\user or user@domain); delete saved credentials for TERMSRV/HOST; reset the password if unknown",
        ),
        0xC000_0071 | 0xC000_0224 => (
            "the password expired or must be changed at next logon: NLA cannot change it",
            "Change the password on another path (Ctrl+Alt+Del on a console, Set-ADAccountPassword, the RD Web password page), or temporarily connect without NLA (rdpdiag proxy --security tls) so the host's own logon screen can change it",
        ),
        0xC000_0234 => (
            "the account is locked out (too many bad passwords)",
            "Unlock it (Unlock-ADAccount / Local Users and Groups) and find the source of the bad passwords (event 4740 on the PDC emulator)",
        ),
        0xC000_0072 | 0xC000_0193 => (
            "the account is disabled or expired",
            "Enable the account or extend its expiry (Enable-ADAccount, Set-ADAccountExpiration)",
        ),
        0xC000_006E | 0xC000_015B | 0xC000_006F | 0xC000_0070 => (
            "the account may not log on this way: logon type not granted, logon hours or workstation restrictions",
            "Grant 'Allow log on through Remote Desktop Services' and 'Access this computer from the network' to the user (and remove it from the matching Deny rights); check logon hours and 'Log On To' workstations",
        ),
        0x8009_0302 | 0x8009_0331 | 0xC000_0388 => (
            "CredSSP encryption-oracle remediation (CVE-2018-0886): one side is unpatched or 'Encryption Oracle Remediation' is Force Updated Clients against an old peer",
            "Install the CredSSP update on both client and host; only temporarily set 'Encryption Oracle Remediation' to Mitigated on the patched side (AllowEncryptionOracle=1)",
        ),
        0xC000_0133 | 0x8009_0324 => (
            "the clocks of the host, the client or the domain controller differ too much",
            "Fix time sync: w32tm /resync on the host and client, check the PDC emulator's time source",
        ),
        0xC000_005E | 0x8009_0311 | 0xC000_018D | 0xC000_018C | 0xC000_018B => (
            "the host cannot reach a domain controller, or its trust with the domain is broken",
            "On the host: nltest /sc_verify:DOMAIN, Test-ComputerSecureChannel -Repair; check DNS and the path to a DC",
        ),
        0xC000_02FA => (
            "the account requires a smart card",
            "Log on with the smart card, or clear 'Smart card is required for interactive logon' on the account",
        ),
        0xC000_0413 => (
            "the authentication firewall (selective authentication across a trust) denies this user on this host",
            "Grant 'Allowed to Authenticate' on the host's computer object to the user from the trusted domain",
        ),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_and_failures_have_remedies() {
        for (i, c) in CAUSES.iter().enumerate() {
            assert!(
                CAUSES[..i].iter().all(|o| o.id != c.id),
                "duplicate {}",
                c.id
            );
            if c.id != "healthy" {
                assert!(!c.remedies.is_empty(), "{} has no remedy", c.id);
            }
        }
    }
}

#[cfg(test)]
mod readme {
    /// Every cause id is documented in the README's cause table.
    #[test]
    fn readme_documents_every_cause() {
        let readme = include_str!("../../README.md");
        for c in super::CAUSES {
            assert!(
                readme.contains(&format!("| `{}` |", c.id)),
                "README lacks cause {}",
                c.id
            );
        }
    }
}
