//! `proxy --fresh-cert --nla-user` against simulated NLA peers on loopback: a CredSSP host that
//! accepts, returns each common errorCode, or closes after the AUTHENTICATE like FreeRDP; a
//! CredSSP client with the right or the wrong credentials. The peers use rdpdiag's own CredSSP
//! legs (`nla::credssp`), checked against the MS-NLMP vectors in its unit tests and against real
//! FreeRDP peers in `tests/testbed_experiments.rs`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rdpdiag::nla::credssp::{ClientLeg, HostLeg, subject_public_key};
use rdpdiag::nla::ntlm::Credentials;
use rdpdiag::relay::tap::RecordConfig;
use rdpdiag::relay::{FreshCertConfig, Proxy, ProxyConfig};
use rdpdiag::report::{ConnectionReport, render_text};
use rdpdiag::session::Side;
use rdpdiag::tls::cert::fresh;
use rdpdiag::tls::verifier::RecordingVerifier;
use rdpdiag::wire::credssp::{self, TsRequest};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

const GUARD: Duration = Duration::from_secs(30);
const USER: &str = "test";
const PASSWORD: &str = "Pa55-w0rd!unique";

/// What the simulated host does after the client's AUTHENTICATE.
#[derive(Debug, Clone, Copy)]
enum HostMode {
    /// pubKeyAuth, TSCredentials, (EUA SUCCESS for HYBRID_EX), then echo one TPKT.
    Accept,
    /// TSRequest.errorCode, then close.
    ErrorCode(u32),
    /// Close without an errorCode (FreeRDP 2 on a wrong password).
    Close,
}

/// What the simulated host saw.
#[derive(Debug, Default)]
struct HostSaw {
    tsrequests: usize,
    user: Option<String>,
    password_matches: Option<bool>,
}

async fn read_ts<R: AsyncRead + Unpin>(r: &mut R, buf: &mut Vec<u8>) -> Option<TsRequest> {
    loop {
        if let Ok(Some(n)) = credssp::split(buf)
            && n <= buf.len()
        {
            let raw: Vec<u8> = buf.drain(..n).collect();
            return credssp::decode(&raw).unwrap().map(|(t, _)| t);
        }
        let mut chunk = [0_u8; 4096];
        let n = tokio::time::timeout(GUARD, r.read(&mut chunk))
            .await
            .unwrap()
            .unwrap_or(0);
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

async fn send<W: AsyncWrite + Unpin>(w: &mut W, ts: &TsRequest) {
    w.write_all(&credssp::encode(ts)).await.unwrap();
    w.flush().await.unwrap();
}

async fn read_tpkt<R: AsyncRead + Unpin>(r: &mut R) -> Vec<u8> {
    let mut h = [0_u8; 4];
    r.read_exact(&mut h).await.unwrap();
    let len = usize::from(u16::from_be_bytes([h[2], h[3]]));
    let mut rest = vec![0_u8; len - 4];
    r.read_exact(&mut rest).await.unwrap();
    [&h[..], &rest].concat()
}

fn cr(requested: u32) -> Vec<u8> {
    let mut b = hex::decode("030000130ee00000000000010008000b000000").unwrap();
    b[15..19].copy_from_slice(&requested.to_le_bytes());
    b
}

fn cc(selected: u32) -> Vec<u8> {
    let mut b = hex::decode("030000130ed000001234000200080000000000").unwrap();
    b[15..19].copy_from_slice(&selected.to_le_bytes());
    b
}

/// Recorded MCS PDUs (xfreerdp's Connect-Initial, a Connect-Response) for after CredSSP.
fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/mcs")
            .join(name),
    )
    .unwrap()
}

async fn nla_host(listener: TcpListener, mode: HostMode, selected: u32) -> HostSaw {
    let pki = rdpdiag::sim::certs::pki().unwrap();
    let cert = pki.good.clone();
    let cfg = rustls::ServerConfig::builder_with_provider(rdpdiag::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(cert.chain(), cert.key())
        .unwrap();
    let (mut s, _) = listener.accept().await.unwrap();
    read_tpkt(&mut s).await;
    s.write_all(&cc(selected)).await.unwrap();
    let mut tls = tokio_rustls::TlsAcceptor::from(Arc::new(cfg))
        .accept(s)
        .await
        .unwrap();
    let creds = Credentials::new(USER, PASSWORD.to_owned());
    let mut leg = ClientLeg::new(subject_public_key(&cert.der).unwrap());
    let mut saw = HostSaw::default();
    let mut buf = Vec::new();
    let Some(c1) = read_ts(&mut tls, &mut buf).await else {
        return saw;
    };
    saw.tsrequests += 1;
    let neg = leg.on_negotiate(&c1).unwrap();
    let ch = leg
        .challenge(&neg, [9; 8], 134_000_000_000_000_000, &Default::default())
        .unwrap();
    send(&mut tls, &ch).await;
    let Some(c3) = read_ts(&mut tls, &mut buf).await else {
        return saw;
    };
    saw.tsrequests += 1;
    match mode {
        HostMode::ErrorCode(code) => {
            send(&mut tls, &leg.error(code)).await;
            tls.shutdown().await.ok();
            return saw;
        }
        HostMode::Close => {
            tls.shutdown().await.ok();
            return saw;
        }
        HostMode::Accept => {}
    }
    let logon = leg.on_authenticate(&c3, &creds).unwrap();
    saw.user = Some(logon.user);
    send(&mut tls, &leg.pubkey_reply().unwrap()).await;
    let c5 = read_ts(&mut tls, &mut buf).await.unwrap();
    saw.tsrequests += 1;
    saw.password_matches = leg.on_credentials(&c5, &creds).unwrap().password_matches;
    if selected == 8 {
        tls.write_all(&[0, 0, 0, 0]).await.unwrap();
    }
    assert!(buf.is_empty());
    assert_eq!(
        read_tpkt(&mut tls).await,
        fixture("testbed_xfreerdp_connect_initial.bin")
    );
    tls.write_all(&fixture("zeek_proprietary_connect_response.bin"))
        .await
        .unwrap();
    tls.flush().await.unwrap();
    let mut rest = Vec::new();
    tokio::time::timeout(GUARD, tls.read_to_end(&mut rest))
        .await
        .ok();
    saw
}

/// How the simulated client's CredSSP ended.
#[derive(Debug, PartialEq, Eq)]
enum ClientEnd {
    /// Through CredSSP; the TPKT the host echoed.
    Relayed(Vec<u8>),
    ErrorCode(u32),
    Closed,
}

async fn nla_client(addr: SocketAddr, user: &str, password: &str, requested: u32) -> ClientEnd {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(&cr(requested)).await.unwrap();
    let cc = read_tpkt(&mut s).await;
    let selected = u32::from_le_bytes(cc[15..19].try_into().unwrap());
    let verifier = Arc::new(RecordingVerifier::new(rdpdiag::tls::provider()));
    let cfg = rdpdiag::relay::host_leg_config(Arc::clone(&verifier), None).unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(ServerName::try_from("127.0.0.1").unwrap(), s)
        .await
        .unwrap();
    let key = subject_public_key(&verifier.chain()[0]).unwrap();
    let creds = Credentials::new(user, password.to_owned());
    let mut leg = HostLeg::new(6, key, [5; 32]);
    send(&mut tls, &leg.negotiate()).await;
    let mut buf = Vec::new();
    let Some(c2) = read_ts(&mut tls, &mut buf).await else {
        return ClientEnd::Closed;
    };
    if let Some(e) = c2.error_code {
        return ClientEnd::ErrorCode(e);
    }
    let c3 = leg
        .on_challenge(&c2, &creds, 0, [6; 8], [7; 16], "SIMCLIENT")
        .unwrap();
    send(&mut tls, &c3).await;
    let Some(c4) = read_ts(&mut tls, &mut buf).await else {
        return ClientEnd::Closed;
    };
    if let Some(e) = c4.error_code {
        return ClientEnd::ErrorCode(e);
    }
    let c5 = leg.on_pubkey_reply(&c4, &creds).unwrap();
    send(&mut tls, &c5).await;
    if selected == 8 {
        let mut eua = [1_u8; 4];
        tls.read_exact(&mut eua).await.unwrap();
        assert_eq!(eua, [0; 4]);
    }
    tls.write_all(&fixture("testbed_xfreerdp_connect_initial.bin"))
        .await
        .unwrap();
    tls.flush().await.unwrap();
    let resp = read_tpkt(&mut tls).await;
    tls.shutdown().await.ok();
    ClientEnd::Relayed(resp)
}

/// `proxy --fresh-cert --nla-user test` in front of `target`, for one connection.
async fn nla_proxy(
    target: SocketAddr,
    record: Option<RecordConfig>,
) -> (SocketAddr, mpsc::Receiver<ConnectionReport>) {
    let mut cfg = ProxyConfig::new("127.0.0.1:0".parse().unwrap(), target.to_string());
    cfg.fresh_cert = Some(FreshCertConfig {
        issued: Arc::new(fresh("127.0.0.1", None).unwrap()),
        nla: Some(Arc::new(Credentials::new(USER, PASSWORD.to_owned()))),
    });
    cfg.record = record;
    cfg.max_connections = Some(1);
    let p = Proxy::bind(cfg).await.unwrap();
    let addr = p.local_addr();
    let (tx, rx) = mpsc::channel(4);
    tokio::spawn(p.run(tx, std::future::pending()));
    (addr, rx)
}

struct Run {
    client: ClientEnd,
    host: HostSaw,
    report: ConnectionReport,
}

async fn run(
    mode: HostMode,
    client_user: &str,
    client_password: &str,
    requested: u32,
    record: Option<RecordConfig>,
) -> Run {
    let host = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target = host.local_addr().unwrap();
    let selected = if requested & 8 != 0 { 8 } else { 2 };
    let host_task = tokio::spawn(nla_host(host, mode, selected));
    let (addr, mut rx) = nla_proxy(target, record.clone()).await;
    let client = tokio::time::timeout(
        GUARD,
        nla_client(addr, client_user, client_password, requested),
    )
    .await
    .unwrap();
    let report = tokio::time::timeout(GUARD, rx.recv())
        .await
        .unwrap()
        .unwrap();
    let host = tokio::time::timeout(GUARD, host_task)
        .await
        .unwrap()
        .unwrap();
    if let Some(rec) = record {
        tokio::time::timeout(GUARD, rec.flush()).await.unwrap();
    }
    Run {
        client,
        host,
        report,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn right_credentials_are_delegated_and_the_session_relayed() {
    for requested in [0x3, 0xB] {
        let r = run(HostMode::Accept, USER, PASSWORD, requested, None).await;
        let text = render_text(&r.report);
        assert_eq!(
            r.client,
            ClientEnd::Relayed(fixture("zeek_proprietary_connect_response.bin")),
            "{text}"
        );
        assert_eq!(r.host.user.as_deref(), Some(USER));
        assert_eq!(r.host.password_matches, Some(true), "{text}");
        assert_eq!(r.host.tsrequests, 3);
        let x = r.report.verdict.experiment.as_ref().unwrap();
        let n = x.nla.as_ref().unwrap();
        assert_eq!(n.client_leg.result, "accepted", "{text}");
        assert_eq!(n.client_leg.logon.as_deref(), Some(USER));
        assert_eq!(n.client_leg.workstation.as_deref(), Some("SIMCLIENT"));
        assert_eq!(n.client_leg.credssp_version, Some(6));
        assert!(n.host_leg.result.starts_with("accepted"), "{text}");
        assert!(n.host_leg.clock_skew_secs.is_some(), "{text}");
        if requested == 0xB {
            assert_eq!(
                n.host_leg.early_user_auth.as_deref(),
                Some("SUCCESS (0x00000000)"),
                "{text}"
            );
        }
        assert!(
            x.conclusion.contains("the host accepted test's logon"),
            "{text}"
        );
        assert!(
            text.contains("host leg (rdpdiag as CredSSP client)"),
            "{text}"
        );
    }
}

/// Each common errorCode from the host: named, with its own remedy first, and passed on to
/// the client (so mstsc shows the host's own message).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_error_codes_are_named_with_their_remedy() {
    let cases: &[(u32, &str, &str)] = &[
        (
            0xC000_006D,
            "STATUS_LOGON_FAILURE",
            "Re-enter the credentials",
        ),
        (
            0xC000_0071,
            "STATUS_PASSWORD_EXPIRED",
            "Change the password on another path",
        ),
        (
            0xC000_0224,
            "STATUS_PASSWORD_MUST_CHANGE",
            "Change the password on another path",
        ),
        (0xC000_0234, "STATUS_ACCOUNT_LOCKED_OUT", "Unlock it"),
        (0xC000_0072, "STATUS_ACCOUNT_DISABLED", "Enable the account"),
        (
            0xC000_006E,
            "STATUS_ACCOUNT_RESTRICTION",
            "Allow log on through Remote Desktop Services",
        ),
        (
            0xC000_015B,
            "STATUS_LOGON_TYPE_NOT_GRANTED",
            "Allow log on through Remote Desktop Services",
        ),
        (0x8009_0302, "SEC_E_UNSUPPORTED_FUNCTION", "CredSSP update"),
        (0xC000_0133, "STATUS_TIME_DIFFERENCE_AT_DC", "w32tm /resync"),
    ];
    for &(code, name, remedy) in cases {
        let r = run(HostMode::ErrorCode(code), USER, PASSWORD, 0x3, None).await;
        let v = &r.report.verdict;
        let text = render_text(&r.report);
        assert_eq!(r.client, ClientEnd::ErrorCode(code), "{text}");
        assert_eq!(v.cause, "credssp.failed", "{text}");
        assert!(!v.inferred, "{text}");
        assert!(v.summary.contains(name), "{text}");
        assert!(v.remedies[0].contains(remedy), "{name}: {text}");
        assert_eq!(v.closed_by, Some(Side::Host), "{text}");
        let n = v.experiment.as_ref().unwrap().nla.as_ref().unwrap();
        assert!(n.host_leg.error_code.as_deref().unwrap().contains(name));
        assert_eq!(n.client_leg.result, "accepted", "{text}");
    }
}

/// FreeRDP 2's server closes after a bad AUTHENTICATE without an errorCode.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_closing_after_authenticate_is_a_logon_failure() {
    let r = run(HostMode::Close, USER, PASSWORD, 0x3, None).await;
    let v = &r.report.verdict;
    let text = render_text(&r.report);
    assert_eq!(r.client, ClientEnd::Closed, "{text}");
    assert_eq!(v.cause, "credssp.failed", "{text}");
    assert!(v.summary.contains("STATUS_LOGON_FAILURE"), "{text}");
    assert!(v.summary.contains("without an errorCode"), "{text}");
    assert_eq!(v.closed_by, Some(Side::Host), "{text}");
}

/// A client whose password is not rdpdiag's is refused by rdpdiag, which says so; the host sees
/// only rdpdiag's NEGOTIATE.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_with_other_credentials_is_refused_by_rdpdiag() {
    for (user, password, why) in [
        (USER, "not-the-password", "NTLMv2 proof does not verify"),
        ("alice", PASSWORD, "logged on as 'alice'"),
    ] {
        let r = run(HostMode::Accept, user, password, 0x3, None).await;
        let v = &r.report.verdict;
        let text = render_text(&r.report);
        assert_eq!(r.client, ClientEnd::ErrorCode(0xC000_006D), "{text}");
        assert_eq!(v.cause, "credssp.proxy_refused", "{text}");
        assert_eq!(v.closed_by, Some(Side::Proxy), "{text}");
        assert!(v.summary.contains("not the host"), "{text}");
        assert!(v.summary.contains(why), "{text}");
        assert_eq!(
            r.host.tsrequests, 1,
            "the host saw more than the NEGOTIATE: {text}"
        );
        let x = v.experiment.as_ref().unwrap();
        assert!(x.conclusion.contains("the host is not at fault"), "{text}");
    }
}

/// The password is nowhere: not in the report, the JSON, the events, nor in any file of the
/// trace bundle (UTF-8 or UTF-16LE), with and without a failure.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_never_appears_in_reports_or_traces() {
    let dir = tempfile::tempdir().unwrap();
    let options = rdpdiag::record::Options {
        redact: false,
        secrets: true,
    };
    let utf16: Vec<u8> = PASSWORD.encode_utf16().flat_map(u16::to_le_bytes).collect();
    let mut files = 0;
    for (mode, pw) in [
        (HostMode::Accept, PASSWORD),
        (HostMode::ErrorCode(0xC000_0071), PASSWORD),
        (HostMode::Accept, "wrong-one"),
    ] {
        let r = run(
            mode,
            USER,
            pw,
            0xB,
            Some(RecordConfig::new(dir.path(), options)),
        )
        .await;
        let mut all = render_text(&r.report);
        all.push_str(&serde_json::to_string(&r.report).unwrap());
        all.push_str(&serde_json::to_string(&r.report.events).unwrap());
        assert!(!all.contains(PASSWORD), "password in the report");
        assert!(
            !all.contains("wrong-one"),
            "client's password in the report"
        );
    }
    for entry in walk(dir.path()) {
        let bytes = std::fs::read(&entry).unwrap();
        files += 1;
        for needle in [PASSWORD.as_bytes(), &utf16, b"wrong-one"] {
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle),
                "{} holds a password",
                entry.display()
            );
        }
    }
    let html: Vec<String> = walk(dir.path())
        .into_iter()
        .filter(|p| p.ends_with("report.html"))
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect();
    assert_eq!(html.len(), 3);
    assert!(
        html.iter()
            .any(|h| h.contains("host leg (rdpdiag as CredSSP client)")
                && h.contains("STATUS_PASSWORD_EXPIRED")),
        "no report.html shows the host leg's errorCode"
    );
    let listing: Vec<_> = walk(dir.path());
    assert!(files >= 15, "only {files} files recorded: {listing:?}");
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// The CLI: the password from a file (never argv), trace logging on, JSON out; neither output
/// holds the password, and the verdict carries the NLA section.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_takes_the_password_from_a_file_and_never_prints_it() {
    use tokio::io::AsyncBufReadExt;
    let host = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target = host.local_addr().unwrap();
    let host_task = tokio::spawn(nla_host(host, HostMode::Accept, 2));
    let dir = tempfile::tempdir().unwrap();
    let pw_file = dir.path().join("pw");
    std::fs::write(&pw_file, format!("{PASSWORD}\n")).unwrap();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_rdpdiag"))
        .args(["proxy", "--listen", "127.0.0.1:0", "--target"])
        .arg(target.to_string())
        .args(["--fresh-cert", "--nla-user", USER, "--nla-password-file"])
        .arg(&pw_file)
        .args(["--json", "--max-connections", "1"])
        .env("RUST_LOG", "trace")
        .env_remove(rdpdiag::cli::proxy::PASSWORD_ENV)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stderr = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let mut err_text = String::new();
    let addr: SocketAddr = loop {
        let line = tokio::time::timeout(GUARD, stderr.next_line())
            .await
            .unwrap()
            .unwrap()
            .expect("the proxy exited before listening");
        err_text.push_str(&line);
        err_text.push('\n');
        if let Some(rest) = line.split("listening on ").nth(1) {
            break rest.split(',').next().unwrap().parse().unwrap();
        }
    };
    let end = nla_client(addr, USER, PASSWORD, 0x3).await;
    assert_eq!(
        end,
        ClientEnd::Relayed(fixture("zeek_proprietary_connect_response.bin"))
    );
    while let Ok(Ok(Some(line))) = tokio::time::timeout(GUARD, stderr.next_line()).await {
        err_text.push_str(&line);
        err_text.push('\n');
    }
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .await
        .unwrap();
    // Exit 1: the connection's verdict is not healthy (the client left after the MCS
    // Connect-Response); 0 would say healthy, 2 a usage error.
    let status = tokio::time::timeout(GUARD, child.wait())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(status.code(), Some(1), "{err_text}\n{out}");
    host_task.await.unwrap();
    assert!(
        err_text.contains("TRACE") || err_text.contains("DEBUG"),
        "{err_text}"
    );
    assert!(out.contains("\"nla\""), "{out}");
    assert!(out.contains("\"account\":\"test\""), "{out}");
    for (name, text) in [("stdout", &out), ("stderr", &err_text)] {
        assert!(!text.contains(PASSWORD), "the password is in {name}");
    }
}

/// No way to put the password on the command line; --nla-user needs --fresh-cert.
#[test]
fn cli_refuses_a_password_argument_and_nla_user_alone() {
    let bin = env!("CARGO_BIN_EXE_rdpdiag");
    let run = |args: &[&str]| std::process::Command::new(bin).args(args).output().unwrap();
    let o = run(&[
        "proxy",
        "--target",
        "h",
        "--fresh-cert",
        "--nla-user",
        "u",
        "--nla-password",
        "x",
    ]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("--nla-password"));
    let o = run(&["proxy", "--target", "h", "--nla-user", "u"]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("--fresh-cert"),
        "{o:?}"
    );
}

/// Garbage, a lying length and a vanishing peer during the brokered CredSSP: a clear verdict,
/// no hang, no panic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_credssp_peers_get_a_clear_verdict() {
    // The client: after TLS, a TSRequest whose length claims 4 GiB, then garbage.
    for junk in [
        vec![0x30, 0x84, 0xff, 0xff, 0xff, 0xff, 0xa0, 0x03],
        b"GET / HTTP/1.1\r\n\r\n".to_vec(),
    ] {
        let host = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let target = host.local_addr().unwrap();
        let host_task = tokio::spawn(nla_host(host, HostMode::Accept, 2));
        let (addr, mut rx) = nla_proxy(target, None).await;
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(&cr(3)).await.unwrap();
        read_tpkt(&mut s).await;
        let verifier = Arc::new(RecordingVerifier::new(rdpdiag::tls::provider()));
        let tcfg = rdpdiag::relay::host_leg_config(verifier, None).unwrap();
        let mut tls = tokio_rustls::TlsConnector::from(Arc::new(tcfg))
            .connect(ServerName::try_from("127.0.0.1").unwrap(), s)
            .await
            .unwrap();
        tls.write_all(&junk).await.unwrap();
        tls.flush().await.unwrap();
        let mut rest = Vec::new();
        tokio::time::timeout(GUARD, tls.read_to_end(&mut rest))
            .await
            .unwrap()
            .ok();
        let r = tokio::time::timeout(GUARD, rx.recv())
            .await
            .unwrap()
            .unwrap();
        let v = &r.verdict;
        let text = render_text(&r);
        assert_eq!(v.cause, "credssp.proxy_refused", "{text}");
        assert!(v.summary.contains("undecodable TSRequest"), "{text}");
        assert_eq!(v.closed_by, Some(Side::Proxy), "{text}");
        // The host never got a TSRequest.
        assert_eq!(host_task.await.unwrap().tsrequests, 0);
    }
}

/// The host vanishes right after rdpdiag's NEGOTIATE: the host closed during CredSSP.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_that_vanishes_mid_credssp_is_named() {
    let host = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target = host.local_addr().unwrap();
    let host_task = tokio::spawn(async move {
        let pki = rdpdiag::sim::certs::pki().unwrap();
        let cfg = rustls::ServerConfig::builder_with_provider(rdpdiag::tls::provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(pki.good.chain(), pki.good.key())
            .unwrap();
        let (mut s, _) = host.accept().await.unwrap();
        read_tpkt(&mut s).await;
        s.write_all(&cc(2)).await.unwrap();
        let mut tls = tokio_rustls::TlsAcceptor::from(Arc::new(cfg))
            .accept(s)
            .await
            .unwrap();
        let mut buf = Vec::new();
        read_ts(&mut tls, &mut buf).await.unwrap();
        // Gone without a word: a reset.
        let (tcp, _) = tls.into_inner();
        tcp.set_zero_linger().unwrap();
        drop(tcp);
    });
    let (addr, mut rx) = nla_proxy(target, None).await;
    let end = tokio::time::timeout(GUARD, nla_client(addr, USER, PASSWORD, 3))
        .await
        .unwrap();
    assert_eq!(end, ClientEnd::Closed);
    host_task.await.unwrap();
    let r = tokio::time::timeout(GUARD, rx.recv())
        .await
        .unwrap()
        .unwrap();
    let text = render_text(&r);
    assert_eq!(r.verdict.cause, "credssp.failed", "{text}");
    assert_eq!(r.verdict.closed_by, Some(Side::Host), "{text}");
    assert!(r.verdict.summary.contains("during CredSSP"), "{text}");
}
