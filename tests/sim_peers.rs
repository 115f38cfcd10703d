//! The simulated peers without the proxy: each scenario's client against its host through a
//! recording tap, checking what goes over the wire and how each side ends.
//!
//! The tap is a minimal byte-exact relay that records both directions and the order and kind of
//! the closes (FIN or RST), passing a reset on as a reset.

// A failing test is the point of a panic here.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::time::Duration;

use rdpdiag::session::Phase;
use rdpdiag::sim::client::{self, ClientEnd, ClientOutcome, PeerClose};
use rdpdiag::sim::host::{self, HostLog};
use rdpdiag::sim::pdus;
use rdpdiag::sim::scenarios::{self, Scenario, TargetOverride};
use rdpdiag::sim::targets::{BlackHole, nothing_listening};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    Fin,
    Rst,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Who {
    Client,
    Host,
}

#[derive(Debug, Default)]
struct Wire {
    c2s: Vec<u8>,
    s2c: Vec<u8>,
    /// Closes in the order the tap saw them.
    closes: Vec<(Who, End)>,
}

impl Wire {
    fn first_close(&self) -> Option<(Who, End)> {
        self.closes.first().copied()
    }
}

fn classify(r: std::io::Result<usize>) -> Result<usize, End> {
    match r {
        Ok(0) => Err(End::Fin),
        Ok(n) => Ok(n),
        Err(_) => Err(End::Rst),
    }
}

/// Accepts one connection, relays it to `target` and records it.
async fn tap(target: SocketAddr) -> (SocketAddr, tokio::task::JoinHandle<Wire>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let h = tokio::spawn(async move {
        let (mut c, _) = l.accept().await.unwrap();
        let mut s = TcpStream::connect(target).await.unwrap();
        let mut w = Wire::default();
        let (mut bc, mut bs) = (vec![0u8; 65536], vec![0u8; 65536]);
        let (mut c_open, mut s_open) = (true, true);
        while c_open || s_open {
            tokio::select! {
                r = c.read(&mut bc), if c_open => match classify(r) {
                    Ok(n) => { w.c2s.extend_from_slice(&bc[..n]); let _ = s.write_all(&bc[..n]).await; }
                    Err(End::Fin) => { w.closes.push((Who::Client, End::Fin)); c_open = false; let _ = s.shutdown().await; }
                    Err(End::Rst) => { w.closes.push((Who::Client, End::Rst)); s.set_zero_linger().unwrap(); break; }
                },
                r = s.read(&mut bs), if s_open => match classify(r) {
                    Ok(n) => { w.s2c.extend_from_slice(&bs[..n]); let _ = c.write_all(&bs[..n]).await; }
                    Err(End::Fin) => { w.closes.push((Who::Host, End::Fin)); s_open = false; let _ = c.shutdown().await; }
                    Err(End::Rst) => { w.closes.push((Who::Host, End::Rst)); c.set_zero_linger().unwrap(); break; }
                },
            }
        }
        w
    });
    (addr, h)
}

struct Run {
    client: ClientOutcome,
    wire: Wire,
    host: Vec<HostLog>,
}

/// Runs a scenario directly (no proxy); stall scenarios get a short client timeout instead.
async fn run(mut s: Scenario) -> Run {
    if s.proxy_stall_timeout.is_some() {
        s.client.read_timeout = Duration::from_millis(400);
    }
    s.host.max_connections = Some(1);
    let (host_addr, host) = host::spawn(s.host.clone()).await.unwrap();
    let (tap_addr, wire) = tap(host_addr).await;
    let client = tokio::time::timeout(Duration::from_secs(20), client::run(s.client, tap_addr))
        .await
        .expect("client finishes");
    let wire = tokio::time::timeout(Duration::from_secs(10), wire)
        .await
        .expect("tap finishes")
        .unwrap();
    let host = tokio::time::timeout(Duration::from_secs(10), host)
        .await
        .expect("host finishes")
        .unwrap();
    Run { client, wire, host }
}

fn scenario(name: &str) -> Scenario {
    scenarios::by_name(name).unwrap_or_else(|| panic!("no scenario {name}"))
}

/// TLS records (type, length field) of a byte stream, from `from`.
fn records(stream: &[u8], from: usize) -> Vec<(u8, usize)> {
    let mut out = Vec::new();
    let mut at = from;
    while let Some(h) = stream.get(at..at + 5) {
        let len = usize::from(u16::from_be_bytes([h[3], h[4]]));
        out.push((h[0], len));
        at += 5 + len;
    }
    out
}

/// Length of the leading TPKT PDU.
fn tpkt_len(b: &[u8]) -> usize {
    usize::from(u16::from_be_bytes([b[2], b[3]]))
}

#[tokio::test]
async fn every_scenario_plays_out_between_the_peers() {
    let all = scenarios::all();
    let mut runs = Vec::new();
    for s in all.iter().filter(|s| s.target_override.is_none()) {
        let s = s.clone();
        runs.push(tokio::spawn(async move { (s.name, run(s).await) }));
    }
    for r in runs {
        let (name, run) = r.await.unwrap();
        let c = &run.client;
        let ok = match name {
            "x224-fin-after-cr" => c.end == ClientEnd::PeerClosed(PeerClose::Fin),
            "x224-rst-after-cr" => c.end == ClientEnd::PeerClosed(PeerClose::Rst),
            "x224-not-rdp" => matches!(c.end, ClientEnd::NotRdp(_)),
            n if n.starts_with("nego-client-refuses") => {
                matches!(c.end, ClientEnd::RefusedSelected(_))
            }
            n if n.starts_with("nego-") => matches!(c.end, ClientEnd::NegFailure(_)),
            "tls-host-rst-after-client-hello" | "tls-host-ultimatum-after-client-hello" => {
                c.end == ClientEnd::PeerClosed(PeerClose::Rst)
            }
            "tls-host-alert-internal-error" => c.end == ClientEnd::AlertReceived(80),
            "tls-version-host-alert" => c.end == ClientEnd::AlertReceived(70),
            "tls-no-common-cipher" => c.end == ClientEnd::AlertReceived(40),
            "tls-version-legacy-host" => matches!(c.end, ClientEnd::TlsFailed(_)),
            "tls-client-alert-illegal-parameter" => c.end == ClientEnd::SentAlert(47),
            "cert-expired-tls12" => {
                matches!(&c.end, ClientEnd::CertRejected { problem, alert: false } if problem.contains("Expired"))
            }
            "cert-wrong-name-tls12-alert" | "cert-untrusted-tls13" => {
                matches!(c.end, ClientEnd::CertRejected { alert: true, .. })
            }
            "nla-wrong-password" => c.end == ClientEnd::PeerClosed(PeerClose::CloseNotify),
            "nla-logon-failure-error-code" => c.end == ClientEnd::CredsspError(0xc000_006d),
            // Straight to the host (no rdpdiag in between), real NTLMv2: the host judges the
            // client's own password.
            "nla-user-healthy" => c.end == ClientEnd::Completed,
            "nla-user-wrong-password" | "nla-user-proxy-refused" => {
                c.end == ClientEnd::CredsspError(0xc000_006d)
            }
            "nla-user-password-expired" => c.end == ClientEnd::CredsspError(0xc000_0071),
            "early-auth-denied" => c.end == ClientEnd::EarlyAuthDenied(5),
            "rdp-encryption-fips-vs-128" => matches!(
                c.end,
                ClientEnd::EncryptionRejected {
                    offered: 2,
                    method: 0x10,
                    level: 4
                }
            ),
            "rdp-encryption-host-closes" => c.end == ClientEnd::PeerClosed(PeerClose::Fin),
            n if n.starts_with("stall-") => c.end == ClientEnd::Timeout,
            n if n.starts_with("healthy-") => c.end == ClientEnd::Completed,
            other => panic!("no direct expectation for {other}"),
        };
        assert!(ok, "{name}: {c:?}\nhost: {:?}", run.host);
        // The phase the client reached agrees with the scenario's expected phase (the proxy
        // must report the same), except where the proxy sees more than the client knows.
        let s = scenario(name);
        assert_eq!(c.reached, s.expect.phase, "{name}: {c:?}");
    }
}

#[tokio::test]
async fn close_after_request_is_fin_or_rst_at_the_client() {
    let fin = run(scenario("x224-fin-after-cr")).await;
    assert_eq!(fin.wire.first_close(), Some((Who::Host, End::Fin)));
    assert!(fin.wire.s2c.is_empty());
    let rst = run(scenario("x224-rst-after-cr")).await;
    assert_eq!(rst.wire.first_close(), Some((Who::Host, End::Rst)));
    assert!(rst.wire.s2c.is_empty());
    // The CR went out whole: cookie and RDP_NEG_REQ.
    assert_eq!(
        rst.wire.c2s,
        pdus::connection_request(Some("alice"), Some((0, rdpdiag::wire::x224::Protocols(3))))
    );
}

#[tokio::test]
async fn negotiation_failures_are_a_cc_then_host_fin() {
    for (name, code) in [
        ("nego-ssl-required", 1u8),
        ("nego-ssl-not-allowed", 2),
        ("nego-ssl-cert-not-on-server", 3),
        ("nego-inconsistent-flags", 4),
        ("nego-hybrid-required", 5),
        ("nego-ssl-with-user-auth-required", 6),
    ] {
        let r = run(scenario(name)).await;
        assert_eq!(
            r.wire.s2c,
            [
                0x03, 0, 0, 0x13, 0x0e, 0xd0, 0, 0, 0x12, 0x34, 0, 0x03, 0, 0x08, 0, code, 0, 0, 0
            ],
            "{name}"
        );
        assert_eq!(r.wire.first_close(), Some((Who::Host, End::Fin)), "{name}");
    }
}

#[tokio::test]
async fn refused_selection_is_a_client_fin_after_the_cc() {
    let r = run(scenario("nego-client-refuses-rdp")).await;
    assert_eq!(r.wire.s2c.len(), 19);
    assert_eq!(&r.wire.s2c[11..], &[0x02, 0x03, 0x08, 0, 0, 0, 0, 0]);
    assert_eq!(r.wire.first_close(), Some((Who::Client, End::Fin)));
    // Nothing after the CR from the client.
    assert_eq!(r.wire.c2s.len(), tpkt_len(&r.wire.c2s));
}

#[tokio::test]
async fn host_aborts_after_the_client_hello() {
    let r = run(scenario("tls-host-rst-after-client-hello")).await;
    let cr = tpkt_len(&r.wire.c2s);
    assert_eq!(r.wire.c2s[cr], 0x16, "a ClientHello follows the CR");
    assert_eq!(r.wire.s2c.len(), 19, "only the CC");
    assert_eq!(r.wire.first_close(), Some((Who::Host, End::Rst)));

    let r = run(scenario("tls-host-ultimatum-after-client-hello")).await;
    assert!(r.wire.s2c.ends_with(&pdus::DISCONNECT_PROVIDER_ULTIMATUM));
    assert_eq!(r.wire.s2c.len(), 19 + 9);
    assert_eq!(r.wire.first_close(), Some((Who::Host, End::Rst)));
}

#[tokio::test]
async fn clear_alerts_where_the_taxonomy_puts_them() {
    // Host alerts before any ServerHello: the whole host answer after the CC is one alert.
    for (name, desc) in [
        ("tls-host-alert-internal-error", 80u8),
        ("tls-version-host-alert", 70),
        ("tls-no-common-cipher", 40),
    ] {
        let r = run(scenario(name)).await;
        let after_cc = &r.wire.s2c[19..];
        assert_eq!(after_cc.len(), 7, "{name}: {}", hex::encode(after_cc));
        assert_eq!(
            (after_cc[0], after_cc[5], after_cc[6]),
            (0x15, 2, desc),
            "{name}"
        );
        assert_eq!(r.wire.first_close().map(|c| c.0), Some(Who::Host), "{name}");
    }
    // Client alerts after the host's clear flight.
    for (name, desc) in [
        ("tls-client-alert-illegal-parameter", 47u8),
        ("tls-version-legacy-host", 70),
        ("cert-wrong-name-tls12-alert", 42),
    ] {
        let r = run(scenario(name)).await;
        let cr = tpkt_len(&r.wire.c2s);
        let recs = records(&r.wire.c2s, cr);
        assert_eq!(recs.last(), Some(&(0x15, 2)), "{name}: {recs:?}");
        assert_eq!(r.wire.c2s[r.wire.c2s.len() - 1], desc, "{name}");
        assert!(
            recs.iter().all(|(t, _)| *t != 0x17),
            "{name}: no application data"
        );
        assert_eq!(
            r.wire.first_close().map(|c| c.0),
            Some(Who::Client),
            "{name}"
        );
    }
    // The legacy host really selected TLS 1.0.
    let r = run(scenario("tls-version-legacy-host")).await;
    assert_eq!(&r.wire.s2c[19..22], &[0x16, 0x03, 0x01]);
    assert_eq!(&r.wire.s2c[28..30], &[0x03, 0x01]);
}

#[tokio::test]
async fn certificate_rejections() {
    // TLS 1.2, expired: clear Certificate from the host, complete handshake, then the client's
    // encrypted close_notify (26-byte record) and FIN, no application data.
    let r = run(scenario("cert-expired-tls12")).await;
    let s = records(&r.wire.s2c, 19);
    assert_eq!(s.first().map(|x| x.0), Some(0x16));
    assert!(
        s.iter().all(|(t, _)| *t != 0x17),
        "host sent no app data: {s:?}"
    );
    let c = records(&r.wire.c2s, tpkt_len(&r.wire.c2s));
    assert_eq!(c.last(), Some(&(0x15, 26)), "{c:?}");
    assert!(
        c.iter().any(|(t, _)| *t == 0x14),
        "client finished the handshake: {c:?}"
    );
    assert!(c.iter().all(|(t, _)| *t != 0x17), "{c:?}");
    assert_eq!(r.wire.first_close(), Some((Who::Client, End::Fin)));

    // TLS 1.3, untrusted: the alert is encrypted (a 19-byte record of type 0x17).
    let r = run(scenario("cert-untrusted-tls13")).await;
    let c = records(&r.wire.c2s, tpkt_len(&r.wire.c2s));
    assert_eq!(c.last(), Some(&(0x17, 19)), "{c:?}");
    assert!(c.iter().all(|(t, _)| *t != 0x15), "no clear alert: {c:?}");
    assert_eq!(r.wire.first_close().map(|c| c.0), Some(Who::Client));
}

#[tokio::test]
async fn credssp_failure_and_early_auth_denial_have_the_right_record_shapes() {
    // TLS 1.3: C1 C2 from the client; S1 then a 19-byte close_notify from the host.
    let r = run(scenario("nla-wrong-password")).await;
    let cr = tpkt_len(&r.wire.c2s);
    let c: Vec<usize> = records(&r.wire.c2s, cr)
        .into_iter()
        .filter(|(t, _)| *t == 0x17)
        .map(|(_, l)| l)
        .collect();
    // Finished (encrypted), C1, C2 and after the host's close the client's own close_notify.
    assert_eq!(&c[1..3], &[86 + 17, 450 + 17], "{c:?}");
    let s: Vec<usize> = records(&r.wire.s2c, 19)
        .into_iter()
        .filter(|(t, _)| *t == 0x17)
        .map(|(_, l)| l)
        .collect();
    assert_eq!(s.last(), Some(&19), "host close_notify: {s:?}");
    assert!(s.contains(&(210 + 17)), "S1: {s:?}");
    assert_eq!(r.wire.first_close(), Some((Who::Host, End::Fin)));

    // HYBRID_EX, TLS 1.3 (default host): the 4-byte denial is a 21-byte record, then FIN.
    let r = run(scenario("early-auth-denied")).await;
    let s = records(&r.wire.s2c, 19);
    assert_eq!(s.last(), Some(&(0x17, 21)), "{s:?}");
    assert_eq!(r.wire.first_close(), Some((Who::Host, End::Fin)));
}

#[tokio::test]
async fn standard_security_mcs_is_clear_and_patched() {
    let r = run(scenario("rdp-encryption-fips-vs-128")).await;
    let cr = tpkt_len(&r.wire.c2s);
    let ci = &r.wire.c2s[cr..];
    assert_eq!(
        tpkt_len(ci),
        ci.len(),
        "one clear Connect-Initial, then the client's FIN"
    );
    let sec = ci
        .windows(4)
        .position(|w| w == [0x02, 0xc0, 0x0c, 0x00])
        .unwrap();
    assert_eq!(&ci[sec + 4..sec + 8], &[0x02, 0, 0, 0], "128BIT only");
    let rsp = &r.wire.s2c[19..];
    assert_eq!(pdus::parse_server_security(rsp), Some((0x10, 4)));
    assert_eq!(r.wire.first_close(), Some((Who::Client, End::Fin)));

    let r = run(scenario("rdp-encryption-host-closes")).await;
    assert_eq!(r.wire.s2c.len(), 19, "no Connect-Response");
    assert_eq!(r.wire.first_close(), Some((Who::Host, End::Fin)));
}

#[tokio::test]
async fn healthy_sessions_exchange_twenty_records_each_way_and_the_client_closes() {
    for name in ["healthy-tls", "healthy-nla", "healthy-nla-ex-tls12"] {
        let r = run(scenario(name)).await;
        assert_eq!(r.client.end, ClientEnd::Completed, "{name}");
        let cr = tpkt_len(&r.wire.c2s);
        let c = records(&r.wire.c2s, cr)
            .iter()
            .filter(|(t, _)| *t == 0x17)
            .count();
        let s = records(&r.wire.s2c, 19)
            .iter()
            .filter(|(t, _)| *t == 0x17)
            .count();
        assert!(c >= 25 && s >= 25, "{name}: {c} {s}");
        assert_eq!(
            r.wire.first_close(),
            Some((Who::Client, End::Fin)),
            "{name}"
        );
        assert_eq!(r.host[0].reached, Phase::Active, "{name}");
    }
    let r = run(scenario("healthy-rdp-security")).await;
    assert_eq!(r.client.server_encryption, Some((2, 2)));
    // Legacy CR (no RDP_NEG_REQ), legacy CC (11 bytes), then clear TPKTs only.
    assert_eq!(
        &r.wire.s2c[..11],
        &pdus::connection_confirm(pdus::CcNeg::Legacy)[..]
    );
    let mut at = 0;
    let mut n = 0;
    while at < r.wire.c2s.len() {
        assert_eq!(r.wire.c2s[at], 0x03);
        at += tpkt_len(&r.wire.c2s[at..]);
        n += 1;
    }
    assert!(n > 20);
    assert_eq!(r.wire.first_close(), Some((Who::Client, End::Fin)));
}

#[tokio::test]
async fn stalls_keep_the_host_silent() {
    let r = run(scenario("stall-silent-host")).await;
    assert!(r.wire.s2c.is_empty());
    assert_eq!(r.wire.first_close(), Some((Who::Client, End::Fin)));
    let r = run(scenario("stall-after-cc")).await;
    assert_eq!(r.wire.s2c.len(), 19);
    assert_eq!(r.client.reached, Phase::TlsHandshake);
}

#[tokio::test]
async fn unreachable_targets() {
    for s in scenarios::all() {
        let addr = match s.target_override {
            Some(TargetOverride::NothingListening) => nothing_listening().await.unwrap(),
            Some(TargetOverride::BlackHole) => {
                let hole = BlackHole::new().await.unwrap();
                let mut cfg = s.client.clone();
                cfg.connect_timeout = Duration::from_millis(500);
                let out = client::run(cfg, hole.addr).await;
                assert_eq!(
                    out.end,
                    ClientEnd::ConnectFailed("connect timed out".into())
                );
                continue;
            }
            None => continue,
        };
        let out = client::run(s.client.clone(), addr).await;
        assert!(
            matches!(out.end, ClientEnd::ConnectFailed(_)),
            "{}: {out:?}",
            s.name
        );
        assert_eq!(out.reached, Phase::TcpConnect);
    }
}

#[tokio::test]
async fn a_host_can_answer_each_connection_differently() {
    // Like a client's fallback chain: the first attempt is refused, the retry succeeds.
    let mut first = host::HostConfig {
        answer: host::X224Answer::Failure(
            rdpdiag::wire::x224::FailureCode::SSL_NOT_ALLOWED_BY_SERVER,
        ),
        ..host::HostConfig::default()
    };
    first.max_connections = Some(2);
    let (addr, h) = host::spawn_sequence(vec![first, host::HostConfig::default()])
        .await
        .unwrap();
    let one = client::run(client::ClientConfig::default(), addr).await;
    assert!(matches!(one.end, ClientEnd::NegFailure(_)), "{one:?}");
    let two = client::run(client::ClientConfig::default(), addr).await;
    assert_eq!(two.end, ClientEnd::Completed);
    let logs = h.await.unwrap();
    assert_eq!(logs.len(), 2);
    assert_eq!(logs[0].reached, Phase::X224);
    assert_eq!(logs[1].reached, Phase::Active);
}
