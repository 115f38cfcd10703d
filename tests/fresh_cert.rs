//! `proxy --fresh-cert`: TLS terminated on both legs with scripted peers — a rustls client that
//! trusts rdpdiag's CA gets through to a host with an expired certificate, and the verdict names
//! the host certificate; a TLS 1.0-only host is `tls.no_common_version`; a decrypted CredSSP
//! errorCode is read, not inferred; the echo is patched inside TLS with `--security`.

// Test helpers may unwrap and panic: a failure is the point there.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rdpdiag::relay::{FreshCertConfig, Proxy, ProxyConfig, SecurityRewrite};
use rdpdiag::report::{ConnectionReport, render_text};
use rdpdiag::tls::cert::{Ca, fresh};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

const GUARD: Duration = Duration::from_secs(60);

fn cr(requested: u32) -> Vec<u8> {
    let mut out = vec![0x03, 0x00, 0x00, 0x13, 0x0e, 0xe0, 0, 0, 0, 0, 0];
    out.extend_from_slice(&[0x01, 0x00, 0x08, 0x00]);
    out.extend_from_slice(&requested.to_le_bytes());
    out
}

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

async fn read_n(s: &mut (impl AsyncRead + Unpin), n: usize) -> Vec<u8> {
    let mut b = vec![0; n];
    tokio::time::timeout(GUARD, s.read_exact(&mut b))
        .await
        .unwrap()
        .unwrap();
    b
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// A host certificate that expired in 2021 (self-signed, ECDSA: the host's key type is free).
fn expired_host_config() -> rustls::ServerConfig {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut p = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()]).unwrap();
    p.not_before = rcgen::date_time_ymd(2020, 1, 1);
    p.not_after = rcgen::date_time_ymd(2021, 1, 1);
    let cert = p.self_signed(&key).unwrap();
    rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
        .unwrap()
}

fn client_config(ca: &Ca, tls12_only: bool) -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from(ca.cert_der.to_vec()))
        .unwrap();
    let versions: &[&rustls::SupportedProtocolVersion] = if tls12_only {
        &[&rustls::version::TLS12]
    } else {
        &[&rustls::version::TLS13]
    };
    rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth()
}

async fn proxy(
    target: SocketAddr,
    ca: &Ca,
    security: Option<SecurityRewrite>,
) -> (SocketAddr, mpsc::Receiver<ConnectionReport>) {
    let mut cfg = ProxyConfig::new("127.0.0.1:0".parse().unwrap(), target.to_string());
    cfg.security = security;
    cfg.fresh_cert = Some(FreshCertConfig::new(Arc::new(
        fresh("127.0.0.1", Some(ca)).unwrap(),
    )));
    cfg.max_connections = Some(1);
    let p = Proxy::bind(cfg).await.unwrap();
    let addr = p.local_addr();
    let (tx, rx) = mpsc::channel(4);
    tokio::spawn(p.run(tx, std::future::pending()));
    (addr, rx)
}

async fn report(rx: &mut mpsc::Receiver<ConnectionReport>) -> ConnectionReport {
    tokio::time::timeout(GUARD, rx.recv())
        .await
        .unwrap()
        .unwrap()
}

/// The scripted host: CC selecting `selected`, TLS with an expired certificate, then echo the
/// Connect-Initial with the recorded Connect-Response.
async fn expired_host(host: TcpListener, requested_len: usize, selected: u32) -> Vec<u8> {
    let (mut s, _) = host.accept().await.unwrap();
    let got = read_n(&mut s, requested_len).await;
    s.write_all(&cc(selected)).await.unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(expired_host_config()));
    let mut tls = acceptor.accept(s).await.unwrap();
    let ci = fixture("testbed_xfreerdp_connect_initial.bin");
    assert_eq!(read_n(&mut tls, ci.len()).await, ci);
    tls.write_all(&fixture("zeek_proprietary_connect_response.bin"))
        .await
        .unwrap();
    tls.flush().await.unwrap();
    // Wait for the client's close.
    let mut rest = Vec::new();
    tokio::time::timeout(GUARD, tls.read_to_end(&mut rest))
        .await
        .ok();
    got
}

async fn run_expired(
    tls12_client: bool,
    security: Option<SecurityRewrite>,
    request: u32,
) -> (ConnectionReport, Vec<u8>, Vec<u8>) {
    let ca = Ca::generate().unwrap();
    let host = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (addr, mut rx) = proxy(host.local_addr().unwrap(), &ca, security).await;
    let host_task = tokio::spawn(expired_host(host, 19, 1));
    let mut c = TcpStream::connect(addr).await.unwrap();
    c.write_all(&cr(request)).await.unwrap();
    assert_eq!(read_n(&mut c, 19).await, cc(1));
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client_config(&ca, tls12_client)));
    let name = ServerName::try_from("127.0.0.1").unwrap();
    let mut tls = connector.connect(name, c).await.unwrap();
    tls.write_all(&fixture("testbed_xfreerdp_connect_initial.bin"))
        .await
        .unwrap();
    let resp_len = fixture("zeek_proprietary_connect_response.bin").len();
    let resp = read_n(&mut tls, resp_len).await;
    tls.shutdown().await.unwrap();
    drop(tls);
    let host_saw = host_task.await.unwrap();
    (report(&mut rx).await, resp, host_saw)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_host_certificate_is_the_cause_tls13_client() {
    let (r, resp, _) = run_expired(false, None, 1).await;
    assert_eq!(resp, fixture("zeek_proprietary_connect_response.bin"));
    let f = &r.verdict.facts;
    assert!(
        f.certificate_problems.iter().any(|p| p.contains("expired")),
        "{f:?}"
    );
    let x = r.verdict.experiment.as_ref().unwrap();
    assert!(x.tls_terminated);
    assert!(
        x.conclusion.contains("the host certificate is the cause"),
        "{}",
        x.conclusion
    );
    assert!(r.verdict.phase_reached >= rdpdiag::session::Phase::Mcs);
    let keylog = r.tls_keylog.as_deref().unwrap();
    assert!(keylog.contains("CLIENT_TRAFFIC_SECRET_0"), "{keylog}");
    assert!(render_text(&r).contains("TLS terminated by rdpdiag"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls12_client_and_echo_patched_inside_tls() {
    // --security tls with --fresh-cert: the host gets SSL, the client its SSL|HYBRID back.
    let (r, resp, host_saw) = run_expired(true, Some(SecurityRewrite::Tls), 0x3).await;
    assert_eq!(&host_saw[15..19], &1_u32.to_le_bytes());
    let want = fixture("zeek_proprietary_connect_response.bin");
    assert_eq!(&resp[81..85], &3_u32.to_le_bytes());
    assert_eq!(&resp[..81], &want[..81]);
    assert_eq!(&resp[85..], &want[85..]);
    let x = r.verdict.experiment.as_ref().unwrap();
    assert_eq!(x.kind, "security+fresh_cert");
    assert!(
        x.echo.as_deref().unwrap().contains("inside terminated TLS"),
        "{x:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls10_only_host_is_no_common_version() {
    let ca = Ca::generate().unwrap();
    let host = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (addr, mut rx) = proxy(host.local_addr().unwrap(), &ca, None).await;
    tokio::spawn(async move {
        let (mut s, _) = host.accept().await.unwrap();
        read_n(&mut s, 19).await;
        s.write_all(&cc(1)).await.unwrap();
        let mut hello = [0_u8; 5];
        s.read_exact(&mut hello).await.unwrap();
        // What an OpenSSL host limited to TLS 1.0 answers: alert protocol_version (70).
        s.write_all(&[0x15, 0x03, 0x01, 0x00, 0x02, 0x02, 0x46])
            .await
            .unwrap();
    });
    let mut c = TcpStream::connect(addr).await.unwrap();
    c.write_all(&cr(1)).await.unwrap();
    read_n(&mut c, 19).await;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client_config(&ca, false)));
    let name = ServerName::try_from("127.0.0.1").unwrap();
    assert!(connector.connect(name, c).await.is_err());
    let r = report(&mut rx).await;
    assert_eq!(
        r.verdict.cause,
        "tls.no_common_version",
        "{}",
        render_text(&r)
    );
    assert!(!r.verdict.inferred);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credssp_error_code_is_read_not_inferred() {
    let ca = Ca::generate().unwrap();
    let host = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (addr, mut rx) = proxy(host.local_addr().unwrap(), &ca, Some(SecurityRewrite::Nla)).await;
    // TSRequest { version 6, negoTokens { NTLMSSP NEGOTIATE } } and the host's
    // TSRequest { version 6, errorCode STATUS_LOGON_FAILURE }.
    let mut negotiate = vec![0x30, 0x00, 0xa0, 0x03, 0x02, 0x01, 0x06, 0xa1, 0x0c];
    negotiate.extend_from_slice(b"NTLMSSP\0");
    negotiate.extend_from_slice(&1_u32.to_le_bytes());
    negotiate[1] = u8::try_from(negotiate.len() - 2).unwrap();
    let error = vec![
        0x30, 0x0e, 0xa0, 0x03, 0x02, 0x01, 0x06, 0xa4, 0x07, 0x02, 0x05, 0x00, 0xc0, 0x00, 0x00,
        0x6d,
    ];
    let (n1, e1) = (negotiate.len(), error.clone());
    tokio::spawn(async move {
        let (mut s, _) = host.accept().await.unwrap();
        read_n(&mut s, 19).await;
        s.write_all(&cc(2)).await.unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(expired_host_config()));
        let mut tls = acceptor.accept(s).await.unwrap();
        read_n(&mut tls, n1).await;
        tls.write_all(&e1).await.unwrap();
        tls.shutdown().await.unwrap();
    });
    let mut c = TcpStream::connect(addr).await.unwrap();
    c.write_all(&cr(0x3)).await.unwrap();
    assert_eq!(read_n(&mut c, 19).await, cc(2));
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client_config(&ca, false)));
    let mut tls = connector
        .connect(ServerName::try_from("127.0.0.1").unwrap(), c)
        .await
        .unwrap();
    tls.write_all(&negotiate).await.unwrap();
    assert_eq!(read_n(&mut tls, error.len()).await, error);
    drop(tls);
    let r = report(&mut rx).await;
    assert_eq!(r.verdict.cause, "credssp.failed", "{}", render_text(&r));
    assert!(!r.verdict.inferred);
    assert!(
        r.verdict.summary.contains("STATUS_LOGON_FAILURE"),
        "{}",
        r.verdict.summary
    );
    assert!(
        r.verdict
            .facts
            .anomalies
            .iter()
            .any(|a| a.contains("pubKeyAuth")),
        "the NLA-through-fresh-cert warning belongs in the verdict: {:?}",
        r.verdict.facts.anomalies
    );
}

/// `rdpdiag cert ca` writes the private key 0600 and prints the PowerShell import line.
#[test]
fn cert_ca_cli_writes_a_private_key() {
    let dir = tempfile::tempdir().unwrap();
    let out = assert_cmd::Command::cargo_bin("rdpdiag")
        .unwrap()
        .args(["cert", "ca", "--out"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success());
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(stdout.contains(
        "Import-Certificate -FilePath ca.crt -CertStoreLocation Cert:\\CurrentUser\\Root"
    ));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("ca.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let inspect = assert_cmd::Command::cargo_bin("rdpdiag")
        .unwrap()
        .args(["cert", "inspect"])
        .arg(dir.path().join("ca.crt"))
        .output()
        .unwrap();
    let text = String::from_utf8(inspect.stdout).unwrap();
    assert!(text.contains("CN=rdpdiag local CA"), "{text}");
}

fn tshark(args: &[&str]) -> String {
    let out = std::process::Command::new("tshark")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("tshark is needed (Debian package `tshark`): {e}"));
    assert!(
        out.status.success(),
        "tshark {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

type Running = tokio::task::JoinHandle<std::io::Result<()>>;

/// A proxy for one connection recording to a fresh directory.
async fn recording_proxy(
    target: SocketAddr,
    ca: Option<&Ca>,
    security: Option<SecurityRewrite>,
) -> (
    SocketAddr,
    mpsc::Receiver<ConnectionReport>,
    Running,
    rdpdiag::relay::tap::RecordConfig,
    tempfile::TempDir,
) {
    let dir = tempfile::tempdir().unwrap();
    let record = rdpdiag::relay::tap::RecordConfig::new(
        dir.path(),
        rdpdiag::record::Options {
            redact: false,
            secrets: true,
        },
    );
    let mut cfg = ProxyConfig::new("127.0.0.1:0".parse().unwrap(), target.to_string());
    cfg.security = security;
    cfg.fresh_cert =
        ca.map(|ca| FreshCertConfig::new(Arc::new(fresh("127.0.0.1", Some(ca)).unwrap())));
    cfg.record = Some(record.clone());
    cfg.max_connections = Some(1);
    let p = Proxy::bind(cfg).await.unwrap();
    let addr = p.local_addr();
    let (tx, rx) = mpsc::channel(4);
    let running = tokio::spawn(p.run(tx, std::future::pending()));
    (addr, rx, running, record, dir)
}

/// Waits for the proxy and its bundle; the bundle's capture.
async fn bundle_capture(
    running: Running,
    record: &rdpdiag::relay::tap::RecordConfig,
    dir: &std::path::Path,
) -> String {
    tokio::time::timeout(GUARD, running)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    tokio::time::timeout(GUARD, record.flush()).await.unwrap();
    let bundles: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(bundles.len(), 1, "{bundles:?}");
    bundles[0]
        .join("capture.pcapng")
        .to_str()
        .unwrap()
        .to_owned()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// `--record` with `--security` alone: the host leg holds the rewritten CR and the CC, the
/// client leg the original CR and everything relayed after the hand-off.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recorded_security_rewrite_has_both_negotiations() {
    let host = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hport = host.local_addr().unwrap().port().to_string();
    let (addr, mut rx, running, record, dir) =
        recording_proxy(host.local_addr().unwrap(), None, Some(SecurityRewrite::Tls)).await;
    let host_task = tokio::spawn(async move {
        let (mut s, _) = host.accept().await.unwrap();
        assert_eq!(read_n(&mut s, 19).await, cr(1));
        s.write_all(&cc(1)).await.unwrap();
        assert_eq!(read_n(&mut s, 5).await, b"hello");
        s.write_all(b"world").await.unwrap();
        let mut rest = Vec::new();
        tokio::time::timeout(GUARD, s.read_to_end(&mut rest))
            .await
            .ok();
    });
    let mut c = TcpStream::connect(addr).await.unwrap();
    c.write_all(&cr(3)).await.unwrap();
    assert_eq!(read_n(&mut c, 19).await, cc(1));
    c.write_all(b"hello").await.unwrap();
    assert_eq!(read_n(&mut c, 5).await, b"world");
    c.shutdown().await.unwrap();
    let mut rest = Vec::new();
    tokio::time::timeout(GUARD, c.read_to_end(&mut rest))
        .await
        .ok();
    drop(c);
    host_task.await.unwrap();
    report(&mut rx).await;
    let cap = bundle_capture(running, &record, dir.path()).await;
    let out = tshark(&[
        "-r",
        &cap,
        "-Y",
        "tcp.len>0",
        "-T",
        "fields",
        "-e",
        "frame.interface_id",
        "-e",
        "tcp.dstport",
        "-e",
        "tcp.payload",
    ]);
    let lines: Vec<&str> = out.lines().collect();
    let listen = addr.port().to_string();
    for want in [
        format!("0\t{listen}\t{}", hex(&cr(3))),
        format!("1\t{hport}\t{}", hex(&cr(1))),
        format!("0\t{listen}\t{}", hex(b"hello")),
    ] {
        assert!(lines.contains(&want.as_str()), "{want} missing: {out}");
    }
    for want in [hex(&cc(1)), hex(b"world")] {
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("0\t") && l.ends_with(&want)),
            "{want} missing on the client leg: {out}"
        );
    }
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("1\t") && l.ends_with(&hex(&cc(1)))),
        "no CC on the host leg: {out}"
    );
}

/// `--record` with `--fresh-cert`: the bundle holds both legs as they crossed the sockets (two
/// interfaces), and its embedded key log decrypts each leg's own TLS session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recorded_fresh_cert_connection_has_both_legs_decrypted() {
    let ca = Ca::generate().unwrap();
    let host = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let host_port = host.local_addr().unwrap().port();
    let (addr, mut rx, running, record, dir) =
        recording_proxy(host.local_addr().unwrap(), Some(&ca), None).await;
    let host_task = tokio::spawn(expired_host(host, 19, 1));
    let mut c = TcpStream::connect(addr).await.unwrap();
    c.write_all(&cr(1)).await.unwrap();
    assert_eq!(read_n(&mut c, 19).await, cc(1));
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client_config(&ca, false)));
    let name = ServerName::try_from("127.0.0.1").unwrap();
    let mut tls = connector.connect(name, c).await.unwrap();
    let ci = fixture("testbed_xfreerdp_connect_initial.bin");
    tls.write_all(&ci).await.unwrap();
    let resp_len = fixture("zeek_proprietary_connect_response.bin").len();
    read_n(&mut tls, resp_len).await;
    tls.shutdown().await.unwrap();
    drop(tls);
    host_task.await.unwrap();
    let r = report(&mut rx).await;
    let cap = bundle_capture(running, &record, dir.path()).await;
    let cap = cap.as_str();
    // Two interfaces, TCP payload on both.
    let legs = tshark(&[
        "-r",
        cap,
        "-Y",
        "tcp.len>0",
        "-T",
        "fields",
        "-e",
        "frame.interface_id",
    ]);
    for leg in ["0", "1"] {
        assert!(
            legs.lines().any(|l| l == leg),
            "no payload on interface {leg}: {legs}"
        );
    }
    let (listen, hport) = (addr.port().to_string(), host_port.to_string());
    // The clear negotiation on each leg: the CR towards the host side, the CC back.
    let x224 = tshark(&[
        "-r",
        cap,
        "-Y",
        "tcp.len==19",
        "-T",
        "fields",
        "-e",
        "frame.interface_id",
        "-e",
        "tcp.dstport",
        "-e",
        "tcp.payload",
    ]);
    let mut lines: Vec<&str> = x224.lines().collect();
    lines.sort();
    let want_x224 = [
        format!("0\t{listen}\t{}", hex(&cr(1))),
        format!("1\t{hport}\t{}", hex(&cr(1))),
    ];
    for w in &want_x224 {
        assert!(lines.contains(&w.as_str()), "{w} missing: {x224}");
    }
    assert_eq!(lines.len(), 4, "{x224}");
    assert!(
        lines.iter().filter(|l| l.ends_with(&hex(&cc(1)))).count() == 2,
        "{x224}"
    );
    // Each leg's TLS session decrypts with the embedded key log: the Connect-Initial towards the
    // host side and the Connect-Response back, in clear on both legs.
    let (host_d, listen_d) = (
        format!("tcp.port=={hport},tls"),
        format!("tcp.port=={listen},tls"),
    );
    let out = tshark(&[
        "-r",
        cap,
        "-d",
        &host_d,
        "-d",
        &listen_d,
        "-Y",
        "tls.record.content_type==23 && data",
        "-T",
        "fields",
        "-e",
        "frame.interface_id",
        "-e",
        "tcp.dstport",
        "-e",
        "data",
    ]);
    let ci = hex(&ci);
    let resp = hex(&fixture("zeek_proprietary_connect_response.bin"));
    let lines: Vec<&str> = out.lines().collect();
    for (iface, port) in [("0", &listen), ("1", &hport)] {
        let to_host = format!("{iface}\t{port}\t{ci}");
        assert!(
            lines.contains(&to_host.as_str()),
            "no clear Connect-Initial on {iface}: {out}"
        );
        let back = lines
            .iter()
            .any(|l| l.starts_with(&format!("{iface}\t")) && l.ends_with(&format!("\t{resp}")));
        assert!(back, "no clear Connect-Response on {iface}: {out}");
    }
    assert!(r.tls_keylog.is_some());
}
