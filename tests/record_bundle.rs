//! Trace bundles from real byte sequences, opened by the real tools: tshark reads every
//! capture.pcapng (X.224 fields with `-d tcp.port==P,tpkt`; TLS, decrypted CredSSP and T.125
//! with `-d tcp.port==P,tls` and the embedded keys alone), headless Chromium renders
//! report.html, and a redacted bundle holds none of the original names or addresses.
//!
//! Needs the Debian packages `tshark` and `chromium`: the tests fail (not skip) without them.

// A failing test is the point of a panic here.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use rdpdiag::record::{
    self, BundleFile, Chunk, Close, Connect, Leg, Loss, LossReason, Options, Trace,
};
use rdpdiag::relay::tap;
use rdpdiag::session::{CloseKind, Direction, Micros, Session, SessionConfig, Side};

const C2S: Direction = Direction::ClientToHost;
const S2C: Direction = Direction::HostToClient;

/// 2026-11-21T19:43:43Z.
const START: i64 = 1_795_290_223_000_000;

fn hex(s: &str) -> Vec<u8> {
    hex::decode(s.split_whitespace().collect::<String>()).unwrap()
}

fn fixture(path: &str) -> Vec<u8> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(path);
    std::fs::read(&p).unwrap_or_else(|e| panic!("missing fixture {}: {e}", p.display()))
}

/// X.224 Connection Request with `Cookie: mstshash=<cookie>` and RDP_NEG_REQ.
fn cr(cookie: &str, requested: u32) -> Vec<u8> {
    let mut x224 = vec![0xe0, 0, 0, 0, 0, 0];
    x224.extend(format!("Cookie: mstshash={cookie}\r\n").as_bytes());
    x224.extend([0x01, 0x00, 0x08, 0x00]);
    x224.extend(requested.to_le_bytes());
    let li = u8::try_from(x224.len()).unwrap();
    let total = u16::try_from(x224.len() + 5).unwrap();
    let mut out = vec![0x03, 0x00];
    out.extend(total.to_be_bytes());
    out.push(li);
    out.extend(x224);
    out
}

fn cc_failure(code: u8) -> Vec<u8> {
    let mut b = hex("03 00 00 13 0e d0 00 00 12 34 00 03 00 08 00 00 00 00 00");
    b[15] = code;
    b
}

fn cc_selected(p: u8) -> Vec<u8> {
    let mut b = hex("03 00 00 13 0e d0 00 00 12 34 00 02 1f 08 00 00 00 00 00");
    b[15] = p;
    b
}

fn ms(n: u64) -> Micros {
    Micros::from_millis(n)
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// Runs the session over the chunks and closes, and builds the trace.
fn trace(
    client: &str,
    host: &str,
    client_leg: Vec<(u64, Direction, Vec<u8>)>,
    host_leg: Option<Vec<(u64, Direction, Vec<u8>)>>,
    closes: &[(u64, Side, CloseKind)],
) -> Trace {
    let mut session = Session::new(SessionConfig {
        now_unix: Some(START / 1_000_000),
        ..SessionConfig::default()
    });
    session.on_connect_result(Ok(()), Micros(200));
    // The session sees what the host leg carries when the legs differ: the host's answers.
    let chunks = |v: Vec<(u64, Direction, Vec<u8>)>| -> Vec<Chunk> {
        v.into_iter()
            .map(|(at, dir, data)| Chunk {
                at: ms(at),
                dir,
                data: Bytes::from(data),
            })
            .collect()
    };
    let client_leg = chunks(client_leg);
    let host_leg = host_leg.map(chunks);
    let fed = host_leg.as_ref().unwrap_or(&client_leg);
    let mut all: Vec<(Micros, u8, usize)> =
        fed.iter().enumerate().map(|(i, c)| (c.at, 0, i)).collect();
    all.extend(closes.iter().enumerate().map(|(i, c)| (ms(c.0), 1, i)));
    all.sort();
    for (_, kind, i) in all {
        if kind == 0 {
            let c = &fed[i];
            session.feed(c.dir, &c.data, c.at);
        } else {
            let (at, side, k) = closes[i];
            session.on_close(side, k, ms(at));
        }
    }
    let events = session.events().to_vec();
    let bytes = |dir| {
        fed.iter()
            .filter(|c| c.dir == dir)
            .map(|c| c.data.len() as u64)
            .sum()
    };
    Trace {
        id: 7,
        client: addr(client),
        listen: addr("127.0.0.1:3389"),
        target: "rds01.corp.example".to_owned(),
        host: Some(addr(host)),
        proxy_local: None,
        started_unix_micros: START,
        started_at: record::rfc3339(START),
        duration: closes.last().map_or(ms(100), |c| ms(c.0)),
        bytes_client_to_host: bytes(C2S),
        bytes_host_to_client: bytes(S2C),
        client_leg,
        host_leg,
        connect: record::connect_from_events(&events),
        closes: record::closes_from_events(&events),
        losses: Vec::new(),
        key_log: None,
        verdict: session.verdict(),
        events,
    }
}

/// Writes the bundle with the relay's writer; returns its directory and the files.
fn write(dir: &Path, trace: &Trace, opts: &Options) -> (PathBuf, Vec<BundleFile>) {
    let bundle = tap::write_bundle_to(dir, trace, opts).unwrap();
    (bundle, record::write_bundle(trace, opts))
}

fn tshark(args: &[&str]) -> String {
    let out = Command::new("tshark")
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!("tshark is needed to check capture.pcapng (Debian package `tshark`): {e}")
        });
    assert!(
        out.status.success(),
        "tshark {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn file<'a>(files: &'a [BundleFile], name: &str) -> &'a BundleFile {
    files
        .iter()
        .find(|f| f.name == name)
        .unwrap_or_else(|| panic!("no {name} in the bundle"))
}

// ---------------------------------------------------------------------------------------------

/// Scenario 3: the host answers RDP_NEG_FAILURE HYBRID_REQUIRED_BY_SERVER and closes.
fn neg_failure_trace() -> Trace {
    trace(
        "192.0.2.10:50412",
        "198.51.100.20:3389",
        vec![(1, C2S, cr("alice.smith", 1)), (3, S2C, cc_failure(5))],
        None,
        &[
            (4, Side::Host, CloseKind::Fin),
            (5, Side::Client, CloseKind::Fin),
        ],
    )
}

#[test]
fn negotiation_failure_reads_in_tshark() {
    let t = neg_failure_trace();
    assert_eq!(t.verdict.cause, "nego.hybrid_required_by_server");
    let dir = tempfile::tempdir().unwrap();
    let (bundle, files) = write(dir.path(), &t, &Options::default());
    assert_eq!(
        bundle.file_name().unwrap().to_str().unwrap(),
        "20261121T194343Z-192.0.2.10_50412-7"
    );
    let names: Vec<&str> = files.iter().map(|f| f.name).collect();
    assert_eq!(
        names,
        [
            "capture.pcapng",
            "events.jsonl",
            "verdict.json",
            "report.txt",
            "report.html"
        ]
    );
    let cap = bundle.join("capture.pcapng");
    let cap = cap.to_str().unwrap();

    // The X.224 fields, with TPKT on the host's port.
    let out = tshark(&[
        "-r",
        cap,
        "-d",
        "tcp.port==3389,tpkt",
        "-Y",
        "rdp",
        "-T",
        "fields",
        "-e",
        "ip.src",
        "-e",
        "tcp.srcport",
        "-e",
        "rdp.negReq.requestedProtocols",
        "-e",
        "rdp.negFailure.failureCode",
        "-e",
        "rdp.rt_cookie",
    ]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(
        lines[0].starts_with("192.0.2.10\t50412\t0x00000001\t\t"),
        "{out}"
    );
    assert!(lines[0].contains("alice.smith"), "{out}");
    assert!(
        lines[1].starts_with("198.51.100.20\t3389\t\t0x00000005"),
        "{out}"
    );

    // A whole TCP conversation: handshake, both FINs, the last ACK, real times, no analysis
    // warnings (bad sequence numbers would show as tcp.analysis flags).
    let out = tshark(&[
        "-r",
        cap,
        "-T",
        "fields",
        "-e",
        "frame.time_epoch",
        "-e",
        "tcp.flags.str",
        "-e",
        "tcp.seq",
        "-e",
        "tcp.ack",
        "-e",
        "tcp.len",
    ]);
    let flags: Vec<&str> = out.lines().map(|l| l.split('\t').nth(1).unwrap()).collect();
    assert_eq!(
        flags,
        [
            "··········S·",
            "·······A··S·",
            "·······A····",
            "·······AP···",
            "·······AP···",
            "·······A···F",
            "·······A···F",
            "·······A····"
        ],
        "{out}"
    );
    assert!(out.starts_with("1795290223.000000000"), "{out}");
    let analysis = tshark(&[
        "-r",
        cap,
        "-Y",
        "tcp.analysis.flags && !tcp.analysis.window_update",
    ]);
    assert_eq!(analysis, "", "tcp analysis complains: {analysis}");

    // The evidence is a comment on the packet that carries it, and the section says why.
    let out = tshark(&[
        "-r",
        cap,
        "-Y",
        "frame.comment",
        "-T",
        "fields",
        "-e",
        "frame.number",
        "-e",
        "frame.comment",
    ]);
    let comments: Vec<(&str, &str)> = out.lines().map(|l| l.split_once('\t').unwrap()).collect();
    assert_eq!(comments.len(), 4, "{out}");
    assert!(
        comments[0].0 == "4"
            && comments[0]
                .1
                .contains("RDP_NEG_REQ.requestedProtocols = SSL"),
        "{out}"
    );
    assert!(
        comments[1].0 == "5" && comments[1].1.contains("HYBRID_REQUIRED_BY_SERVER"),
        "{out}"
    );
    assert!(
        comments[2].0 == "6" && comments[2].1.contains("host sent FIN"),
        "{out}"
    );
    let info = tshark(&["-r", cap, "-q", "-z", "io,phs"]);
    assert!(info.contains("tcp"), "{info}");

    // events.jsonl: a schema header, then one event per line.
    let events = String::from_utf8(file(&files, "events.jsonl").data.clone()).unwrap();
    let mut lines = events.lines();
    let header: serde_json::Value = serde_json::from_str(lines.next().unwrap()).unwrap();
    assert_eq!(header["schema_version"], 1);
    assert_eq!(header["client"], "192.0.2.10:50412");
    assert_eq!(header["started_unix_micros"], START);
    let evs: Vec<serde_json::Value> = lines.map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(evs.len(), t.events.len());
    assert_eq!(header["events"], t.events.len());
    let cr = evs
        .iter()
        .find(|e| e["event"] == "connection_request")
        .unwrap();
    assert_eq!(
        (
            cr["dir"].as_str(),
            cr["offset"].as_u64(),
            cr["phase"].as_str()
        ),
        (Some("c2s"), Some(0), Some("x224"))
    );
    assert_eq!(cr["at"], 1000);

    // verdict.json: the --json object.
    let v: serde_json::Value = serde_json::from_slice(&file(&files, "verdict.json").data).unwrap();
    assert_eq!(v["cause"], "nego.hybrid_required_by_server");
    assert_eq!(v["client"], "192.0.2.10:50412");
    assert_eq!(v["host_addr"], "198.51.100.20:3389");
    assert_eq!(v["bytes_client_to_host"], 49);
    assert!(v["remedies"].as_array().is_some_and(|r| !r.is_empty()));

    // report.txt: the verdict, evidence, remedies, the Decode As hint, what it holds.
    let txt = String::from_utf8(file(&files, "report.txt").data.clone()).unwrap();
    for needle in [
        "FAILED: nego.hybrid_required_by_server",
        "RDP_NEG_FAILURE",
        "Remedies, in the order to try them",
        "Confirm with",
        "$ rdpdiag",
        "<== failure point",
        "Decode As",
        "tshark -r capture.pcapng -d tcp.port==3389,tls",
        "Personal data (not redacted",
        "alice.smith",
        "No secrets",
    ] {
        assert!(txt.contains(needle), "report.txt lacks {needle:?}:\n{txt}");
    }
}

// ---------------------------------------------------------------------------------------------

/// A corpus case's TLS 1.2 streams (`zeek_no_cookie`: zeek_rdp-no-cookie-mstshash.pcap, a
/// DNS name in the certificate; `ndpi_rdp`: ndpi_rdp.pcap, SNI an IP address, a 1642-byte
/// server flight) behind an X.224 exchange that selects SSL.
fn corpus_tls_trace(case: &str) -> Trace {
    let client = fixture(&format!("tls/{case}.client.bin"));
    let server = fixture(&format!("tls/{case}.server.bin"));
    let (c1, c2) = client.split_at(100);
    trace(
        "192.0.2.10:50412",
        "198.51.100.20:3389",
        vec![
            (1, C2S, cr("alice.smith", 3)),
            (2, S2C, cc_selected(1)),
            // A read that splits the ClientHello.
            (3, C2S, c1.to_vec()),
            (4, C2S, c2.to_vec()),
            (5, S2C, server),
        ],
        None,
        &[(9, Side::Client, CloseKind::Rst)],
    )
}

#[test]
fn corpus_tls_handshake_and_certificate() {
    let t = corpus_tls_trace("zeek_no_cookie");
    let dir = tempfile::tempdir().unwrap();
    let (bundle, files) = write(dir.path(), &t, &Options::default());
    let cap = bundle.join("capture.pcapng");
    let cap = cap.to_str().unwrap();
    let out = tshark(&[
        "-r",
        cap,
        "-d",
        "tcp.port==3389,tls",
        "-Y",
        "tls.handshake.type",
        "-T",
        "fields",
        "-e",
        "tls.handshake.type",
        "-e",
        "x509sat.printableString",
        "-e",
        "x509sat.uTF8String",
    ]);
    assert!(
        out.starts_with("1\t") || out.starts_with("1,"),
        "no ClientHello: {out}"
    );
    assert!(
        out.contains("2,11,14") || out.contains("2,11"),
        "no ServerHello+Certificate: {out}"
    );
    assert!(out.contains("CLK-456040-D.one.phoenix.gov"), "{out}");
    let rst = tshark(&[
        "-r",
        cap,
        "-Y",
        "tcp.flags.reset==1",
        "-T",
        "fields",
        "-e",
        "ip.src",
    ]);
    assert_eq!(rst.trim(), "192.0.2.10");

    // host-cert.pem: the chain the host sent, as PEM that parses back to the same leaf.
    let pem = String::from_utf8(file(&files, "host-cert.pem").data.clone()).unwrap();
    assert!(pem.starts_with("-----BEGIN CERTIFICATE-----\n"));
    let b64: String = pem
        .lines()
        .take_while(|l| !l.starts_with("-----END"))
        .filter(|l| !l.starts_with("-----"))
        .collect();
    let der = base64_decode(&b64);
    let leaf = rdpdiag::wire::x509::summarize(&der).unwrap();
    assert_eq!(
        leaf.subject_cn.as_deref(),
        Some("CLK-456040-D.one.phoenix.gov")
    );
    let txt = String::from_utf8(file(&files, "report.txt").data.clone()).unwrap();
    assert!(txt.contains("Host certificate (host-cert.pem)"), "{txt}");
    assert!(txt.contains(&leaf.sha1_fingerprint), "{txt}");

    // A server flight larger than one MSS: two segments, reassembled by tshark.
    let t = corpus_tls_trace("ndpi_rdp");
    let dir = tempfile::tempdir().unwrap();
    let (bundle, _) = write(dir.path(), &t, &Options::default());
    let cap = bundle.join("capture.pcapng");
    let cap = cap.to_str().unwrap();
    let out = tshark(&[
        "-r",
        cap,
        "-Y",
        "tcp.srcport==3389 && tcp.len>0",
        "-T",
        "fields",
        "-e",
        "tcp.len",
    ]);
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        ["19", "1460", "182"],
        "{out}"
    );
    let out = tshark(&[
        "-r",
        cap,
        "-d",
        "tcp.port==3389,tls",
        "-T",
        "fields",
        "-e",
        "tls.handshake.extensions_server_name",
        "-e",
        "x509sat.printableString",
        "-Y",
        "tls.handshake.type==1 || tls.handshake.type==11",
    ]);
    assert!(
        out.contains("192.168.2.142") && out.contains("OFFICE-WIN10-VM"),
        "{out}"
    );
}

// Test-only decoder of trusted PEM text: positions < 64, shifted values masked to a byte.
#[allow(clippy::cast_possible_truncation)]
fn base64_decode(s: &str) -> Vec<u8> {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::new();
    let mut acc = 0u32;
    let mut bits = 0;
    for c in s.bytes().filter(|c| *c != b'=') {
        acc = (acc << 6) | A.iter().position(|a| *a == c).unwrap() as u32;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// A real TLS session (rustls, in memory) with its key log: decrypted CredSSP and T.125.

#[derive(Debug, Default)]
struct Keys(Mutex<Vec<String>>);

impl rustls::KeyLog for Keys {
    fn log(&self, label: &str, client_random: &[u8], secret: &[u8]) {
        self.0.lock().unwrap().push(format!(
            "{label} {} {}",
            hex::encode(client_random),
            hex::encode(secret)
        ));
    }
}

#[derive(Debug)]
struct AcceptAnything(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AcceptAnything {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// NTLM NEGOTIATE_MESSAGE (MS-NLMP 2.2.1.1) without payload, in a CredSSP TSRequest
/// (MS-CSSP 2.2.1) version 6.
fn ts_request_negotiate() -> Vec<u8> {
    let mut ntlm = b"NTLMSSP\0".to_vec();
    ntlm.extend(1u32.to_le_bytes()); // MessageType NEGOTIATE
    ntlm.extend(0xe208_8297u32.to_le_bytes()); // NegotiateFlags
    ntlm.extend([0u8; 16]); // DomainNameFields, WorkstationFields: empty
    let mut der = vec![0x30, 0x2f, 0xa0, 0x03, 0x02, 0x01, 0x06]; // TSRequest, version [0] 6
    der.extend([0xa1, 0x28, 0x30, 0x26, 0x30, 0x24, 0xa0, 0x22, 0x04, 0x20]); // negoTokens
    der.extend(ntlm);
    der
}

/// One TLS session between rustls peers, as the chunks each side wrote (c2s / s2c), with the
/// key log; then `app` messages each way.
fn tls_session(
    tls13: bool,
    host_name: &str,
    app: &[(Direction, Vec<u8>)],
    t0: u64,
) -> (Vec<(u64, Direction, Vec<u8>)>, String) {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut params = rcgen::CertificateParams::new(vec![host_name.to_owned()]).unwrap();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, host_name);
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, "Contoso Pharmaceuticals");
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    let versions: &[&rustls::SupportedProtocolVersion] = if tls13 {
        &[&rustls::version::TLS13]
    } else {
        &[&rustls::version::TLS12]
    };
    let keys = Arc::new(Keys::default());
    let server_cfg = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )
        .unwrap();
    let mut client_cfg = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAnything(provider)))
        .with_no_client_auth();
    client_cfg.key_log = keys.clone();
    let name = rustls::pki_types::ServerName::try_from(host_name.to_owned()).unwrap();
    let mut client = rustls::ClientConnection::new(Arc::new(client_cfg), name).unwrap();
    let mut server = rustls::ServerConnection::new(Arc::new(server_cfg)).unwrap();

    let mut chunks = Vec::new();
    let mut now = t0;
    let mut pump = |client: &mut rustls::ClientConnection,
                    server: &mut rustls::ServerConnection,
                    chunks: &mut Vec<(u64, Direction, Vec<u8>)>| {
        loop {
            let mut moved = false;
            let mut buf = Vec::new();
            while client.wants_write() {
                client.write_tls(&mut buf).unwrap();
            }
            if !buf.is_empty() {
                now += 2;
                server.read_tls(&mut buf.as_slice()).unwrap();
                server.process_new_packets().unwrap();
                chunks.push((now, C2S, buf));
                moved = true;
            }
            let mut buf = Vec::new();
            while server.wants_write() {
                server.write_tls(&mut buf).unwrap();
            }
            if !buf.is_empty() {
                now += 2;
                client.read_tls(&mut buf.as_slice()).unwrap();
                client.process_new_packets().unwrap();
                chunks.push((now, S2C, buf));
                moved = true;
            }
            if !moved {
                break;
            }
        }
    };
    pump(&mut client, &mut server, &mut chunks);
    assert!(!client.is_handshaking() && !server.is_handshaking());
    for (dir, data) in app {
        match dir {
            Direction::ClientToHost => client.writer().write_all(data).unwrap(),
            Direction::HostToClient => server.writer().write_all(data).unwrap(),
        }
        pump(&mut client, &mut server, &mut chunks);
    }
    let log = keys.0.lock().unwrap().join("\n") + "\n";
    (chunks, log)
}

/// X.224 selecting HYBRID, then a TLS session carrying a CredSSP TSRequest and an MCS
/// Connect-Initial (the corpus frame), recorded with the key log.
fn tls_with_keys_trace(tls13: bool) -> Trace {
    let app = vec![
        (C2S, ts_request_negotiate()),
        (S2C, ts_request_negotiate()),
        (C2S, fixture("mcs/zeek_x509_connect_initial.bin")),
    ];
    let (session, keys) = tls_session(tls13, "RDS01.corp.example", &app, 10);
    let mut leg = vec![(1, C2S, cr("alice.smith", 3)), (3, S2C, cc_selected(2))];
    leg.extend(session);
    let end = leg.last().unwrap().0 + 5;
    let mut t = trace(
        "192.0.2.10:50412",
        "198.51.100.20:3389",
        leg,
        None,
        &[
            (end, Side::Client, CloseKind::Fin),
            (end + 1, Side::Host, CloseKind::Fin),
        ],
    );
    t.key_log = Some(keys);
    t
}

#[test]
fn embedded_keys_decrypt_credssp_and_t125() {
    for tls13 in [false, true] {
        let t = tls_with_keys_trace(tls13);
        let dir = tempfile::tempdir().unwrap();
        let (bundle, files) = write(dir.path(), &t, &Options::default());
        let cap_path = bundle.join("capture.pcapng");
        let cap = cap_path.to_str().unwrap();
        let out = tshark(&[
            "-r",
            cap,
            "-d",
            "tcp.port==3389,tls",
            "-T",
            "fields",
            "-e",
            "ntlmssp.messagetype",
            "-e",
            "t124.t124Identifier",
            "-e",
            "t125.connect_initial_element",
        ]);
        assert_eq!(
            out.lines().filter(|l| l.starts_with("0x00000001")).count(),
            2,
            "tls13={tls13}: no decrypted NTLM NEGOTIATE in CredSSP:\n{out}"
        );
        assert!(
            out.lines()
                .any(|l| l.split('\t').skip(1).any(|f| !f.is_empty())),
            "tls13={tls13}: no decrypted T.125:\n{out}"
        );
        // Without the file's secrets nothing decrypts: the keys came from the DSB alone.
        let stripped = dir.path().join("stripped.pcapng");
        let st = Command::new("editcap")
            .args(["--discard-all-secrets", cap, stripped.to_str().unwrap()])
            .status()
            .expect("editcap (Debian package wireshark-common, pulled in by tshark)");
        assert!(st.success());
        let out = tshark(&[
            "-r",
            stripped.to_str().unwrap(),
            "-d",
            "tcp.port==3389,tls",
            "-Y",
            "ntlmssp",
        ]);
        assert_eq!(out, "");

        // The key-bearing file is private; the others are not.
        assert!(file(&files, "capture.pcapng").private);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&cap_path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "capture.pcapng with keys must be 0600");
            let mode = std::fs::metadata(bundle.join("report.txt"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o077, 0o044);
        }
        let txt = String::from_utf8(file(&files, "report.txt").data.clone()).unwrap();
        assert!(
            txt.contains("SECRETS: capture.pcapng embeds the TLS session keys"),
            "{txt}"
        );
        assert!(txt.contains("CredSSP"), "{txt}");

        // --no-secrets: no Decryption Secrets Block, an ordinary file.
        let opts = Options {
            redact: false,
            secrets: false,
        };
        let files = record::write_bundle(&t, &opts);
        let cap = file(&files, "capture.pcapng");
        assert!(!cap.private);
        assert!(!contains(&cap.data, b"CLIENT_RANDOM") && !contains(&cap.data, b"TRAFFIC_SECRET"));
        let txt = String::from_utf8(file(&files, "report.txt").data.clone()).unwrap();
        assert!(
            txt.contains("a TLS key log was available but is not written"),
            "{txt}"
        );
    }
}

/// rdpdiag terminated TLS: each leg has its own TLS session, two interfaces, one key log for
/// both.
#[test]
fn two_legs_two_interfaces_both_decrypt() {
    let app = vec![(C2S, ts_request_negotiate()), (S2C, ts_request_negotiate())];
    let (client_tls, client_keys) = tls_session(false, "localhost", &app, 10);
    let (host_tls, host_keys) = tls_session(true, "RDS01.corp.example", &app, 11);
    let x224 = vec![(1, C2S, cr("alice.smith", 3)), (3, S2C, cc_selected(2))];
    let mut client_leg = x224.clone();
    client_leg.extend(client_tls);
    let mut host_leg = x224;
    host_leg.extend(host_tls);
    let mut t = trace(
        "192.0.2.10:50412",
        "198.51.100.20:3389",
        client_leg,
        Some(host_leg),
        &[
            (500, Side::Client, CloseKind::Fin),
            (501, Side::Host, CloseKind::Fin),
        ],
    );
    t.proxy_local = Some(addr("192.0.2.1:61000"));
    t.key_log = Some(client_keys + &host_keys);
    let dir = tempfile::tempdir().unwrap();
    let (bundle, _) = write(dir.path(), &t, &Options::default());
    let cap = bundle.join("capture.pcapng");
    let cap = cap.to_str().unwrap();
    let out = tshark(&[
        "-r",
        cap,
        "-d",
        "tcp.port==3389,tls",
        "-Y",
        "ntlmssp",
        "-T",
        "fields",
        "-e",
        "frame.interface_id",
        "-e",
        "ip.src",
        "-e",
        "ip.dst",
    ]);
    let mut lines: Vec<&str> = out.lines().collect();
    lines.sort();
    assert_eq!(
        lines,
        [
            "0\t127.0.0.1\t192.0.2.10",
            "0\t192.0.2.10\t127.0.0.1",
            "1\t192.0.2.1\t198.51.100.20",
            "1\t198.51.100.20\t192.0.2.1",
        ],
        "{out}"
    );
    let ifaces = tshark(&[
        "-r",
        cap,
        "-T",
        "fields",
        "-e",
        "frame.interface_description",
        "-Y",
        "tcp.flags.syn==1 && tcp.flags.ack==0",
    ]);
    assert!(
        ifaces.contains("client leg") && ifaces.contains("host leg"),
        "{ifaces}"
    );
    // Direction flags: inbound from the client on the client leg, from the host on the host leg.
    let dirs = tshark(&[
        "-r",
        cap,
        "-T",
        "fields",
        "-e",
        "ip.src",
        "-e",
        "frame.packet_flags_direction",
        "-Y",
        "tcp.len>0",
    ]);
    for l in dirs.lines() {
        let (src, d) = l.split_once('\t').unwrap();
        let inbound = src == "192.0.2.10" || src == "198.51.100.20";
        assert_eq!(
            d,
            if inbound { "0x00000001" } else { "0x00000002" },
            "{dirs}"
        );
    }
}

// ---------------------------------------------------------------------------------------------

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len())
        .any(|w| w.eq_ignore_ascii_case(needle))
}

fn utf16le(s: &str) -> Vec<u8> {
    s.encode_utf16().flat_map(u16::to_le_bytes).collect()
}

#[test]
fn redacted_bundles_hold_no_original_name_or_address() {
    // The corpus certificate, the cookie, the SNI-less ClientHello, the addresses; a TLS key
    // log that must not be written; and a Standard RDP Security Connect-Initial with the
    // client's computer name in UTF-16.
    let mut t = corpus_tls_trace("zeek_no_cookie");
    t.key_log = Some("CLIENT_RANDOM 00 11\n".to_owned());
    let ndpi = corpus_tls_trace("ndpi_rdp");
    let mut mcs = trace(
        "192.0.2.10:50412",
        "198.51.100.20:3389",
        vec![
            (1, C2S, cr("alice.smith", 0)),
            (2, S2C, cc_selected(0)),
            (3, C2S, fixture("mcs/zeek_x509_connect_initial.bin")),
            (4, S2C, fixture("mcs/zeek_x509_connect_response.bin")),
        ],
        None,
        &[(9, Side::Host, CloseKind::Rst)],
    );
    mcs.losses.push(Loss {
        leg: Leg::Client,
        dir: S2C,
        at: ms(5),
        offset: 1424,
        len: 3000,
        reason: LossReason::QueueFull,
    });
    assert!(
        mcs.verdict.facts.client_name.is_some(),
        "{:?}",
        mcs.verdict.facts
    );
    let opts = Options {
        redact: true,
        secrets: true,
    };
    for t in [t, ndpi, mcs] {
        let names: Vec<String> = {
            let certs = record::host_certificates(&t);
            let r = record::redactor_for(&t, &certs);
            r.names()
                .iter()
                .map(|(_, original, _)| original.clone())
                .chain(r.addresses().map(|(ip, _)| ip.to_string()))
                .collect()
        };
        assert!(names.iter().any(|n| n == "alice.smith"), "{names:?}");
        if t.verdict.facts.sni.as_deref() == Some("192.168.2.142") {
            assert!(names.iter().any(|n| n == "192.168.2.142"), "{names:?}");
        }
        let mut originals: Vec<Vec<u8>> = vec![
            b"alice.smith".to_vec(),
            b"192.0.2.10".to_vec(),
            b"198.51.100.20".to_vec(),
            b"rds01".to_vec(),
            b"corp.example".to_vec(),
            // The same addresses in IP headers.
            vec![192, 0, 2, 10],
            vec![198, 51, 100, 20],
        ];
        for n in &names {
            originals.push(n.as_bytes().to_vec());
            originals.push(utf16le(n));
        }
        let dir = tempfile::tempdir().unwrap();
        let (bundle, files) = write(dir.path(), &t, &opts);
        assert!(!bundle.to_str().unwrap().contains("192.0.2.10"));
        for f in &files {
            assert!(!f.private, "{} is private under --redact", f.name);
            for o in &originals {
                assert!(
                    !contains(&f.data, o),
                    "{} still holds {:?}",
                    f.name,
                    String::from_utf8_lossy(o)
                );
            }
            assert!(
                !contains(&f.data, b"CLIENT_RANDOM"),
                "{} holds the key log",
                f.name
            );
        }
        // The certificate file is base64: its DER holds no original name either.
        if let Some(pem) = files.iter().find(|f| f.name == "host-cert.pem") {
            let text = String::from_utf8(pem.data.clone()).unwrap();
            let b64: String = text.lines().filter(|l| !l.starts_with("-----")).collect();
            let der = base64_decode(&b64);
            for o in &originals {
                assert!(
                    !contains(&der, o),
                    "host-cert.pem holds {:?}",
                    String::from_utf8_lossy(o)
                );
            }
            // Still a certificate, with the tokens in it.
            let c = rdpdiag::wire::x509::summarize(&der).unwrap();
            assert!(c.subject.contains("host-"), "{}", c.subject);
        }
        // Consistent tokens: the cookie's user is user-1 everywhere.
        let txt = String::from_utf8(file(&files, "report.txt").data.clone()).unwrap();
        assert!(txt.contains("user-1"), "{txt}");
        assert!(txt.contains("Redacted:"), "{txt}");
        let cap = bundle.join("capture.pcapng");
        let out = tshark(&[
            "-r",
            cap.to_str().unwrap(),
            "-d",
            "tcp.port==3389,tpkt",
            "-Y",
            "rdp.rt_cookie",
            "-T",
            "fields",
            "-e",
            "ip.src",
            "-e",
            "rdp.rt_cookie",
        ]);
        assert_eq!(
            out.trim(),
            "10.255.0.1\tCookie: mstshash=user-1-----",
            "{out}"
        );
        let jsonl = String::from_utf8(file(&files, "events.jsonl").data.clone()).unwrap();
        assert!(jsonl.contains("\"cookie\":\"user-1\""), "{jsonl}");
        assert!(
            jsonl
                .lines()
                .next()
                .unwrap()
                .contains("\"client\":\"10.255.0.1:50412\"")
        );
        // Still valid JSON everywhere.
        for l in jsonl.lines() {
            serde_json::from_str::<serde_json::Value>(l).unwrap();
        }
        serde_json::from_slice::<serde_json::Value>(&file(&files, "verdict.json").data).unwrap();
    }
}

// ---------------------------------------------------------------------------------------------

fn chromium_dom(html: &Path) -> String {
    let profile = tempfile::tempdir().unwrap();
    let out = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            &format!("--user-data-dir={}", profile.path().display()),
            "--dump-dom",
            &format!("file://{}", html.display()),
        ])
        .output()
        .unwrap_or_else(|e| {
            panic!("chromium is needed to render report.html (Debian package `chromium`): {e}")
        });
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn report_html_renders_in_chromium() {
    for (t, expect) in [
        (
            neg_failure_trace(),
            vec![
                "X.224 Connection Request",
                "RDP_NEG_FAILURE",
                "nego.hybrid_required_by_server",
            ],
        ),
        (
            tls_with_keys_trace(false),
            vec![
                "TLS ClientHello",
                "TLS Certificate",
                "CredSSP",
                "Host certificate",
            ],
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let (bundle, files) = write(dir.path(), &t, &Options::default());
        let html = String::from_utf8(file(&files, "report.html").data.clone()).unwrap();
        assert!(
            !html.contains("http://") && !html.contains("https://"),
            "external reference"
        );
        assert!(!html.contains("<script"), "a script");
        let dom = chromium_dom(&bundle.join("report.html"));
        for needle in [
            "<svg",
            "id=\"ladder-svg\"",
            "<line class=\"msg",
            "class=\"phase\"",
            "X.224 negotiation",
            "Remedies",
            "Confirm with",
            "What this bundle holds",
            t.verdict.cause,
        ]
        .into_iter()
        .chain(expect)
        {
            assert!(dom.contains(needle), "the rendered page lacks {needle:?}");
        }
        if t.verdict.cause != "healthy" {
            assert!(
                dom.contains("class=\"row failure\""),
                "no failure point in the ladder"
            );
        }
        // The page rendered the SVG as SVG (an element with a viewBox, not escaped text).
        assert!(dom.contains("viewBox=\"0 0 960"));
    }
}

#[test]
fn ipv6_endpoints() {
    let t = trace(
        "[2001:db8::10]:50412",
        "[2001:db8::20]:3389",
        vec![(1, C2S, cr("alice.smith", 1)), (3, S2C, cc_failure(5))],
        None,
        &[(4, Side::Host, CloseKind::Fin)],
    );
    let dir = tempfile::tempdir().unwrap();
    let (bundle, _) = write(dir.path(), &t, &Options::default());
    assert!(bundle.to_str().unwrap().ends_with("-2001-db8--10_50412-7"));
    let out = tshark(&[
        "-r",
        bundle.join("capture.pcapng").to_str().unwrap(),
        "-d",
        "tcp.port==3389,tpkt",
        "-Y",
        "rdp",
        "-T",
        "fields",
        "-e",
        "ipv6.src",
        "-e",
        "rdp.negFailure.failureCode",
    ]);
    assert_eq!(out, "2001:db8::10\t\n2001:db8::20\t0x00000005\n");
    let files = record::write_bundle(
        &t,
        &Options {
            redact: true,
            secrets: false,
        },
    );
    for f in &files {
        assert!(!contains(&f.data, b"2001:db8::10"), "{}", f.name);
    }
    let v: serde_json::Value = serde_json::from_slice(&file(&files, "verdict.json").data).unwrap();
    assert_eq!(v["client"], "[fd00::ff:1]:50412");
}

#[test]
fn names_with_markup_are_escaped() {
    let mut t = neg_failure_trace();
    t.target = "<img src=x onerror=alert(1)>".to_owned();
    let files = record::write_bundle(&t, &Options::default());
    let html = String::from_utf8(file(&files, "report.html").data.clone()).unwrap();
    assert!(!html.contains("<img"));
    assert!(html.contains("&lt;img src=x onerror=alert(1)&gt;"));
}

#[test]
fn losses_are_said_in_every_file() {
    let mut t = corpus_tls_trace("zeek_no_cookie");
    t.losses.push(Loss {
        leg: Leg::Client,
        dir: S2C,
        at: ms(5),
        offset: 19,
        len: 500,
        reason: LossReason::QueueFull,
    });
    // Bytes 19..519 of the host's stream are not in the trace.
    let server = &mut t.client_leg[4];
    server.data = server.data.slice(500..);
    let files = record::write_bundle(&t, &Options::default());
    let txt = String::from_utf8(file(&files, "report.txt").data.clone()).unwrap();
    assert!(
        txt.contains("NOT RECORDED: 500 B S->C on the client leg from offset 19"),
        "{txt}"
    );
    let jsonl = String::from_utf8(file(&files, "events.jsonl").data.clone()).unwrap();
    assert!(
        jsonl
            .lines()
            .next()
            .unwrap()
            .contains("\"reason\":\"queue_full\"")
    );
    let dir = tempfile::tempdir().unwrap();
    let (bundle, _) = write(dir.path(), &t, &Options::default());
    let out = tshark(&[
        "-r",
        bundle.join("capture.pcapng").to_str().unwrap(),
        "-Y",
        "tcp.analysis.lost_segment",
        "-T",
        "fields",
        "-e",
        "frame.comment",
    ]);
    let all = tshark(&[
        "-r",
        bundle.join("capture.pcapng").to_str().unwrap(),
        "-T",
        "fields",
        "-e",
        "tcp.seq",
        "-e",
        "tcp.len",
        "-e",
        "tcp.analysis.flags",
        "-e",
        "frame.comment",
    ]);
    assert!(out.contains("500 bytes S->C not recorded"), "{out}\n{all}");
}

#[test]
fn connect_refused_shows_syn_and_rst() {
    let mut session = Session::new(SessionConfig::default());
    session.on_connect_result(Err(rdpdiag::session::ConnectFailure::Refused), ms(2));
    let events = session.events().to_vec();
    let t = Trace {
        id: 1,
        client: addr("127.0.0.1:50000"),
        listen: addr("127.0.0.1:3389"),
        target: "rds01".to_owned(),
        host: Some(addr("198.51.100.20:3389")),
        proxy_local: None,
        started_unix_micros: START,
        started_at: record::rfc3339(START),
        duration: ms(2),
        client_leg: Vec::new(),
        host_leg: None,
        connect: record::connect_from_events(&events),
        closes: vec![Close {
            at: ms(2),
            side: Side::Proxy,
            kind: CloseKind::Rst,
        }],
        losses: Vec::new(),
        key_log: None,
        verdict: session.verdict(),
        events,
        bytes_client_to_host: 0,
        bytes_host_to_client: 0,
    };
    assert!(matches!(t.connect, Connect::Failed { .. }));
    let dir = tempfile::tempdir().unwrap();
    let (bundle, _) = write(dir.path(), &t, &Options::default());
    let out = tshark(&[
        "-r",
        bundle.join("capture.pcapng").to_str().unwrap(),
        "-T",
        "fields",
        "-e",
        "frame.interface_id",
        "-e",
        "ip.src",
        "-e",
        "tcp.flags.str",
        "-e",
        "frame.comment",
    ]);
    let lines: Vec<&str> = out.lines().collect();
    // Client leg: accepted, then reset by rdpdiag; host leg: SYN, RST-ACK.
    assert_eq!(lines.len(), 6, "{out}");
    assert!(out.contains("1\t198.51.100.20\t·······A·R··"), "{out}");
    assert!(out.contains("rdpdiag: connection refused"), "{out}");
    assert!(out.contains("0\t127.0.0.1\t·······A·R··"), "{out}");
}

// ---------------------------------------------------------------------------------------------
// Through the real proxy: simulated host ← relay::Proxy with --record ← simulated client.

/// Runs a scenario of the sim table through a recording proxy; returns the proxy's report and
/// the bundle's directory.
async fn record_scenario(
    name: &str,
    options: Options,
    limit: Option<u64>,
) -> (
    rdpdiag::report::ConnectionReport,
    PathBuf,
    tempfile::TempDir,
) {
    use rdpdiag::relay::{Proxy, ProxyConfig};
    use rdpdiag::sim::{client, host, scenarios};
    let s = scenarios::by_name(name).unwrap_or_else(|| panic!("no scenario {name}"));
    let mut host_cfg = s.host.clone();
    host_cfg.max_connections = Some(1);
    let (target, host_task) = host::spawn(host_cfg).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut record_cfg = tap::RecordConfig::new(dir.path(), options);
    record_cfg.limit = limit.unwrap_or(record_cfg.limit);
    let mut cfg = ProxyConfig::new(addr("127.0.0.1:0"), target.to_string());
    cfg.max_connections = Some(1);
    cfg.record = Some(record_cfg.clone());
    cfg.session.now_unix = Some(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64,
    );
    let proxy = Proxy::bind(cfg).await.unwrap();
    let proxy_addr = proxy.local_addr();
    let (tx, mut rx) = tokio::sync::mpsc::channel(4);
    let running = tokio::spawn(proxy.run(tx, std::future::pending()));
    let _client = client::run(s.client.clone(), proxy_addr).await;
    let report = rx.recv().await.expect("a report");
    running.await.unwrap().unwrap();
    record_cfg.flush().await;
    host_task.abort();
    let mut bundles: Vec<PathBuf> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(bundles.len(), 1, "{bundles:?}");
    (report, bundles.remove(0), dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proxy_records_what_it_relays() {
    let (report, bundle, _dir) =
        record_scenario("cert-expired-tls12", Options::default(), None).await;
    assert_eq!(
        report.verdict.cause, "tls.client_rejected_certificate",
        "{report:?}"
    );
    let port = report
        .host_addr
        .as_ref()
        .unwrap()
        .rsplit_once(':')
        .unwrap()
        .1
        .to_owned();
    // verdict.json is exactly what --json prints.
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(bundle.join("verdict.json")).unwrap()).unwrap();
    assert_eq!(v, serde_json::to_value(&report).unwrap());
    // Every event, in order.
    let events = std::fs::read_to_string(bundle.join("events.jsonl")).unwrap();
    assert_eq!(events.lines().count(), report.events.len() + 1);
    assert!(bundle.join("host-cert.pem").exists());
    // What crossed the relay, byte for byte: the capture's payload totals are the relay's counts.
    let cap = bundle.join("capture.pcapng");
    let cap = cap.to_str().unwrap();
    let out = tshark(&[
        "-r",
        cap,
        "-T",
        "fields",
        "-e",
        "tcp.dstport",
        "-e",
        "tcp.len",
    ]);
    let (mut c2s, mut s2c) = (0u64, 0u64);
    for l in out.lines() {
        let (dport, len) = l.split_once('\t').unwrap();
        let len: u64 = len.parse().unwrap();
        if dport == port {
            c2s += len
        } else {
            s2c += len
        }
    }
    assert_eq!(
        (c2s, s2c),
        (report.bytes_client_to_host, report.bytes_host_to_client)
    );
    let out = tshark(&[
        "-r",
        cap,
        "-d",
        &format!("tcp.port=={port},tls"),
        "-Y",
        "tls.handshake.type==11 || tls.alert_message",
        "-T",
        "fields",
        "-e",
        "tls.handshake.type",
        "-e",
        "tls.alert_message.desc",
    ]);
    assert!(out.contains("11"), "no Certificate: {out}");
    assert!(
        out.lines().count() >= 2,
        "no alert after the certificate: {out}"
    );
    let dom = chromium_dom(&bundle.join("report.html"));
    assert!(dom.contains("tls.client_rejected_certificate") && dom.contains("<svg"));
}

/// A healthy session's bulk traffic is recorded up to the limit, then counted: the bundle
/// says how much is missing, and the relay delivered every byte anyway.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_traffic_past_the_limit_is_counted_not_recorded() {
    let (report, bundle, _dir) =
        record_scenario("healthy-nla", Options::default(), Some(2000)).await;
    assert_eq!(report.verdict.cause, "healthy", "{report:?}");
    let header: serde_json::Value = serde_json::from_str(
        std::fs::read_to_string(bundle.join("events.jsonl"))
            .unwrap()
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    let losses = header["losses"].as_array().unwrap();
    assert!(!losses.is_empty(), "{header}");
    assert!(losses.iter().all(|l| l["reason"] == "record_limit"));
    let lost: u64 = losses.iter().map(|l| l["len"].as_u64().unwrap()).sum();
    let cap = bundle.join("capture.pcapng");
    let out = tshark(&["-r", cap.to_str().unwrap(), "-T", "fields", "-e", "tcp.len"]);
    let recorded: u64 = out.lines().map(|l| l.parse::<u64>().unwrap()).sum();
    assert_eq!(
        recorded + lost,
        report.bytes_client_to_host + report.bytes_host_to_client,
        "recorded {recorded} + lost {lost}"
    );
    let txt = std::fs::read_to_string(bundle.join("report.txt")).unwrap();
    assert!(txt.contains("past the recording limit"), "{txt}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redacted_recording_through_the_proxy() {
    let (report, bundle, _dir) = record_scenario(
        "nego-hybrid-required",
        Options {
            redact: true,
            secrets: false,
        },
        None,
    )
    .await;
    let cookie = report
        .verdict
        .facts
        .cookie
        .clone()
        .expect("the sim client sends a cookie");
    for f in std::fs::read_dir(&bundle).unwrap() {
        let f = f.unwrap().path();
        let data = std::fs::read(&f).unwrap();
        assert!(
            !contains(&data, cookie.as_bytes()),
            "{} holds the cookie {cookie}",
            f.display()
        );
    }
}
