//! `proxy --security`: the client's requestedProtocols rewritten (every other byte kept), the
//! host's clear echo patched back, impossible requests explained; through the real proxy with
//! scripted TCP peers speaking recorded PDUs (tests/fixtures/mcs).

// Test helpers may unwrap and panic: a failure is the point there.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::time::Duration;

use proptest::prelude::*;
use rdpdiag::relay::{Proxy, ProxyConfig, SecurityRewrite};
use rdpdiag::report::{ConnectionReport, render_text};
use rdpdiag::wire::x224::{self, Protocols, X224Pdu};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

const GUARD: Duration = Duration::from_secs(60);

/// An X.224 Connection Request with a cookie and, when `requested` is given, an RDP_NEG_REQ.
fn cr(cookie: &str, requested: Option<u32>) -> Vec<u8> {
    let mut x = vec![0xe0, 0, 0, 0, 0, 0]; // CR code, dst-ref, src-ref, class
    x.extend_from_slice(format!("Cookie: mstshash={cookie}\r\n").as_bytes());
    if let Some(r) = requested {
        x.extend_from_slice(&[0x01, 0x00, 0x08, 0x00]); // RDP_NEG_REQ type, flags, length 8
        x.extend_from_slice(&r.to_le_bytes());
    }
    let li = u8::try_from(x.len()).unwrap(); // length indicator: the header after LI
    let total = u16::try_from(x.len() + 5).unwrap();
    let mut out = vec![0x03, 0x00];
    out.extend_from_slice(&total.to_be_bytes());
    out.push(li);
    out.extend(x);
    out
}

/// X.224 Connection Confirm with RDP_NEG_RSP selecting `selected`.
fn cc(selected: u32) -> Vec<u8> {
    let mut out = vec![0x03, 0x00, 0x00, 0x13, 0x0e, 0xd0, 0, 0, 0, 0, 0];
    out.extend_from_slice(&[0x02, 0x00, 0x08, 0x00]);
    out.extend_from_slice(&selected.to_le_bytes());
    out
}

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/fixtures/mcs/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

async fn read_n(s: &mut TcpStream, n: usize) -> Vec<u8> {
    let mut b = vec![0; n];
    tokio::time::timeout(GUARD, s.read_exact(&mut b))
        .await
        .unwrap()
        .unwrap();
    b
}

async fn proxy(
    target: SocketAddr,
    security: SecurityRewrite,
) -> (SocketAddr, mpsc::Receiver<ConnectionReport>) {
    let mut cfg = ProxyConfig::new("127.0.0.1:0".parse().unwrap(), target.to_string());
    cfg.security = Some(security);
    cfg.max_connections = Some(1);
    let p = Proxy::bind(cfg).await.unwrap();
    let addr = p.local_addr();
    let (tx, rx) = mpsc::channel(4);
    tokio::spawn(p.run(tx, std::future::pending()));
    (addr, rx)
}

proptest! {
    /// The rewrite changes the four requestedProtocols bytes and nothing else.
    #[test]
    fn rewrite_keeps_every_other_byte(cookie in "[a-z]{0,20}", orig in any::<u32>(), to in any::<u32>()) {
        let pdu = cr(&cookie, Some(orig));
        let Ok(X224Pdu::ConnectionRequest(req)) = x224::decode(&pdu) else { panic!("not a CR") };
        let out = x224::rewrite_requested(&pdu, &req, Protocols(to)).unwrap();
        prop_assert_eq!(out.len(), pdu.len());
        let at = req.neg_req.as_ref().unwrap().requested_offset;
        for (i, (a, b)) in pdu.iter().zip(&out).enumerate() {
            if !(at..at + 4).contains(&i) {
                prop_assert_eq!(a, b, "byte {} changed", i);
            }
        }
        let Ok(X224Pdu::ConnectionRequest(back)) = x224::decode(&out) else { panic!("not a CR") };
        prop_assert_eq!(back.requested(), Protocols(to));
        prop_assert_eq!(back.cookie, req.cookie);
    }
}

/// Standard RDP Security after `--security rdp`: the host sees RDP, the client sees its own
/// SSL|HYBRID echoed in the clear Connect-Response, every other byte as the host sent it.
#[tokio::test]
async fn echo_is_patched_in_clear() {
    let host = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (addr, mut reports) = proxy(host.local_addr().unwrap(), SecurityRewrite::Rdp).await;
    let request = cr("alice", Some(0x3));
    let ci = fixture("testbed_xfreerdp_connect_initial.bin");
    let resp = fixture("zeek_proprietary_connect_response.bin");
    // SC_CORE at 73 (after TPKT/X.224/MCS/GCC headers): header (4), version (4),
    // clientRequestedProtocols (4).
    assert_eq!(&resp[73..77], &[0x01, 0x0c, 0x0c, 0x00]);
    assert_eq!(&resp[81..85], &[0, 0, 0, 0]);
    let (ci2, resp2, request2) = (ci.clone(), resp.clone(), request.clone());
    let host_task = tokio::spawn(async move {
        let (mut s, _) = host.accept().await.unwrap();
        let got = read_n(&mut s, request2.len()).await;
        s.write_all(&cc(0)).await.unwrap();
        let got_ci = read_n(&mut s, ci2.len()).await;
        assert_eq!(got_ci, ci2);
        s.write_all(&resp2).await.unwrap();
        got
    });
    let mut c = TcpStream::connect(addr).await.unwrap();
    // The CR in two pieces: the proxy holds it until it is whole.
    c.write_all(&request[..10]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    c.write_all(&request[10..]).await.unwrap();
    assert_eq!(read_n(&mut c, 19).await, cc(0));
    c.write_all(&ci).await.unwrap();
    let got_resp = read_n(&mut c, resp.len()).await;
    let host_saw = host_task.await.unwrap();
    // The host got RDP, everything else unchanged.
    assert_eq!(host_saw.len(), request.len());
    assert_eq!(&host_saw[host_saw.len() - 4..], &0_u32.to_le_bytes());
    assert_eq!(
        &host_saw[..host_saw.len() - 4],
        &request[..request.len() - 4]
    );
    // The client got its own value back in the echo, everything else unchanged.
    assert_eq!(&got_resp[81..85], &3_u32.to_le_bytes());
    assert_eq!(&got_resp[..81], &resp[..81]);
    assert_eq!(&got_resp[85..], &resp[85..]);
    drop(c);
    let r = tokio::time::timeout(GUARD, reports.recv())
        .await
        .unwrap()
        .unwrap();
    let x = r.verdict.experiment.as_ref().unwrap();
    assert_eq!(x.offered_original.as_deref(), Some("SSL|HYBRID(0x3)"));
    assert_eq!(x.offered_rewritten.as_deref(), Some("RDP(0x0)"));
    assert!(x.echo.as_deref().unwrap().contains("patched"), "{x:?}");
    // The session judged what the client asked for.
    assert_eq!(
        r.verdict.facts.requested_protocols.as_deref(),
        Some("SSL|HYBRID(0x3)")
    );
    let text = render_text(&r);
    assert!(text.contains("experiment (security)"), "{text}");
    assert!(text.contains("conclusion:"), "{text}");
}

/// A client that offered only Standard RDP Security cannot be made to speak TLS: the CR goes
/// through unchanged and the verdict says why.
#[tokio::test]
async fn impossible_request_is_explained() {
    let host = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (addr, mut reports) = proxy(host.local_addr().unwrap(), SecurityRewrite::Tls).await;
    let request = cr("bob", Some(0));
    let n = request.len();
    let host_task = tokio::spawn(async move {
        let (mut s, _) = host.accept().await.unwrap();
        let got = read_n(&mut s, n).await;
        s.write_all(&cc(0)).await.unwrap();
        got
    });
    let mut c = TcpStream::connect(addr).await.unwrap();
    c.write_all(&request).await.unwrap();
    read_n(&mut c, 19).await;
    assert_eq!(host_task.await.unwrap(), request);
    drop(c);
    let r = tokio::time::timeout(GUARD, reports.recv())
        .await
        .unwrap()
        .unwrap();
    let x = r.verdict.experiment.as_ref().unwrap();
    assert_eq!(x.offered_rewritten, None);
    assert!(
        x.notes
            .iter()
            .any(|n| n.contains("cannot be made to speak TLS")),
        "{x:?}"
    );
    assert!(x.conclusion.contains("could not run"), "{}", x.conclusion);
}

/// `--security tls` against a host that requires NLA: the host's refusal is the experiment's
/// answer, and the summary says the host answered rdpdiag's request.
#[tokio::test]
async fn neg_failure_after_rewrite_names_the_rewritten_request() {
    let host = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (addr, mut reports) = proxy(host.local_addr().unwrap(), SecurityRewrite::Tls).await;
    let request = cr("carol", Some(0xb));
    let n = request.len();
    tokio::spawn(async move {
        let (mut s, _) = host.accept().await.unwrap();
        read_n(&mut s, n).await;
        // RDP_NEG_FAILURE HYBRID_REQUIRED_BY_SERVER (5).
        let mut f = vec![
            0x03, 0x00, 0x00, 0x13, 0x0e, 0xd0, 0, 0, 0, 0, 0, 0x03, 0, 0x08, 0,
        ];
        f.extend_from_slice(&5_u32.to_le_bytes());
        s.write_all(&f).await.unwrap();
    });
    let mut c = TcpStream::connect(addr).await.unwrap();
    c.write_all(&request).await.unwrap();
    read_n(&mut c, 19).await;
    drop(c);
    let r = tokio::time::timeout(GUARD, reports.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(r.verdict.cause, "nego.hybrid_required_by_server");
    assert!(
        r.verdict.summary.contains("rewritten request SSL(0x1)"),
        "{}",
        r.verdict.summary
    );
    let x = r.verdict.experiment.as_ref().unwrap();
    assert!(x.conclusion.contains("insists on NLA"), "{}", x.conclusion);
}

/// `--security tls` when the host selects TLS (not terminated): after the rewrite every byte
/// passes unchanged both ways (TLS records are opaque here), and the verdict warns that the echo
/// could not be patched.
#[tokio::test]
async fn after_the_rewrite_tls_bytes_pass_unchanged() {
    let host = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (addr, mut reports) = proxy(host.local_addr().unwrap(), SecurityRewrite::Tls).await;
    let request = cr("dave", Some(0x3));
    let n = request.len();
    // Not valid TLS: the relay must not care.
    let up: Vec<u8> = (0..100_000_u32).map(|i| (i % 251) as u8).collect();
    let down: Vec<u8> = (0..150_000_u32).map(|i| (i % 241) as u8).collect();
    let (up2, down2) = (up.clone(), down.clone());
    let host_task = tokio::spawn(async move {
        let (mut s, _) = host.accept().await.unwrap();
        let got = read_n(&mut s, n).await;
        assert_eq!(&got[got.len() - 4..], &1_u32.to_le_bytes());
        s.write_all(&cc(1)).await.unwrap();
        let (mut r, mut w) = s.into_split();
        let writer = tokio::spawn(async move {
            w.write_all(&down2).await.unwrap();
            w.shutdown().await.unwrap();
        });
        let mut got_up = Vec::new();
        r.read_to_end(&mut got_up).await.unwrap();
        writer.await.unwrap();
        assert_eq!(got_up, up2);
    });
    let mut c = TcpStream::connect(addr).await.unwrap();
    c.write_all(&request).await.unwrap();
    assert_eq!(read_n(&mut c, 19).await, cc(1));
    let (mut r, mut w) = c.into_split();
    let writer = tokio::spawn(async move {
        w.write_all(&up).await.unwrap();
        w.shutdown().await.unwrap();
    });
    let mut got_down = Vec::new();
    tokio::time::timeout(GUARD, r.read_to_end(&mut got_down))
        .await
        .unwrap()
        .unwrap();
    writer.await.unwrap();
    assert_eq!(got_down, down);
    host_task.await.unwrap();
    let r = tokio::time::timeout(GUARD, reports.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(r.bytes_client_to_host, n as u64 + 100_000);
    assert_eq!(r.bytes_host_to_client, 19 + 150_000);
    let x = r.verdict.experiment.as_ref().unwrap();
    assert!(x.echo.as_deref().unwrap().contains("may detect"), "{x:?}");
}
