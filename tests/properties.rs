//! Property tests (proptest): no decoder and no session panics on any bytes; a real stream
//! gives the same events however it is split into reads; what the project writes into PDUs
//! (rewritten requestedProtocols, patched GCC echoes, and test-side CR/CC encoders) decodes
//! back to what was written.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::cast_possible_truncation
)]

#[allow(unreachable_pub, dead_code)]
#[path = "../fuzz/src/lib.rs"]
mod entry;

use std::path::PathBuf;

use proptest::prelude::*;
use rdpdiag::session::{Direction, Event, Micros, Session, SessionConfig};
use rdpdiag::wire::tls::{self, HandshakeReassembler};
use rdpdiag::wire::x224::{self, NegData, NegReq, Protocols, X224Pdu};
use rdpdiag::wire::{gcc, mcs, tpkt, x509};

const C2S: Direction = Direction::ClientToHost;
const S2C: Direction = Direction::HostToClient;

fn hex(s: &str) -> Vec<u8> {
    hex::decode(s.split_whitespace().collect::<String>()).unwrap()
}

fn fixture(path: &str) -> Vec<u8> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(path);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Reference E1: CR, cookie "alice", SSL|HYBRID|HYBRID_EX.
const E1: &str = "03 00 00 2b 26 e0 00 00 00 00 00 43 6f 6f 6b 69 65 3a 20 6d 73 74 73 68 61
                  73 68 3d 61 6c 69 63 65 0d 0a 01 00 08 00 0b 00 00 00";
/// Reference E2: CR without cookie, correlation info, SSL only.
const E2: &str = "03 00 00 37 32 e0 00 00 00 00 00 01 08 08 00 01 00 00 00 06 00 24 00 5a 3e
                  8c 1d 7b 2f 4e 6a 9c 0b 1d 2e 3f 40 51 62 00 00 00 00 00 00 00 00 00 00 00
                  00 00 00 00 00 00";
/// A CC selecting SSL (E3's layout).
const CC_SSL: &str = "03 00 00 13 0e d0 00 00 12 34 00 02 1f 08 00 01 00 00 00";
/// Legacy CR and CC (no negotiation data), as ndpi_rdp3.pcap's XP client and host send them.
const CR_LEGACY: &str = "03 00 00 0b 06 e0 00 00 00 00 00";
const CC_LEGACY: &str = "03 00 00 0b 06 d0 00 00 12 34 00";

/// One decoder's worth of any bytes, or a real frame with a few bytes changed (which reaches
/// deeper than random bytes do).
fn bytes_near(real: Vec<Vec<u8>>) -> impl Strategy<Value = Vec<u8>> {
    let mutated = (
        proptest::sample::select(real),
        prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..8),
        any::<prop::sample::Index>(),
    )
        .prop_map(|(mut frame, edits, cut)| {
            if !frame.is_empty() {
                for (at, value) in edits {
                    let i = at.index(frame.len());
                    frame[i] = value;
                }
                frame.truncate(cut.index(frame.len() + 1).max(1));
            }
            frame
        });
    prop_oneof![prop::collection::vec(any::<u8>(), 0..1024), mutated]
}

fn x224_frames() -> Vec<Vec<u8>> {
    vec![
        hex(E1),
        hex(E2),
        hex(CC_SSL),
        hex(CR_LEGACY),
        hex(CC_LEGACY),
    ]
}

fn mcs_frames() -> Vec<Vec<u8>> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/mcs");
    let mut out = Vec::new();
    for f in std::fs::read_dir(dir).unwrap() {
        let p = f.unwrap().path();
        if p.extension().is_some_and(|e| e == "bin") {
            let data = std::fs::read(p).unwrap();
            out.push(data[7..].to_vec());
            out.push(data);
        }
    }
    out
}

fn tls_streams() -> Vec<Vec<u8>> {
    ["ndpi_rdp", "zeek_no_cookie"]
        .iter()
        .flat_map(|c| {
            [
                fixture(&format!("tls/{c}.client.bin")),
                fixture(&format!("tls/{c}.server.bin")),
            ]
        })
        .collect()
}

fn captures() -> Vec<Vec<u8>> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/corpus");
    let mut out = Vec::new();
    for f in std::fs::read_dir(dir).unwrap() {
        let data = std::fs::read(f.unwrap().path()).unwrap();
        if data.len() <= 16 * 1024 && !data.starts_with(b"#") {
            out.push(data);
        }
    }
    assert!(!out.is_empty());
    out
}

fn certificates() -> Vec<Vec<u8>> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/x509");
    let mut out = Vec::new();
    for f in std::fs::read_dir(dir).unwrap() {
        let p = f.unwrap().path();
        if p.extension().is_some_and(|e| e == "pem") {
            let pem = std::fs::read_to_string(p).unwrap();
            for block in pem.split("-----BEGIN CERTIFICATE-----").skip(1) {
                let b64: String = block
                    .split("-----END CERTIFICATE-----")
                    .next()
                    .unwrap()
                    .split_whitespace()
                    .collect();
                out.push(base64_decode(&b64));
            }
        }
    }
    assert!(!out.is_empty());
    out
}

/// A small base64 decoder (the test PKI is PEM; no base64 crate in the dev-dependencies).
fn base64_decode(s: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0);
    for c in s.bytes().filter(|c| *c != b'=') {
        let v = ALPHABET.iter().position(|a| *a == c).unwrap() as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// No panic on any input.

proptest! {
    #[test]
    fn tpkt_and_x224_never_panic(data in bytes_near(x224_frames())) {
        let _ = tpkt::split_pdu(&data);
        let _ = x224::decode(&data);
        entry::x224(&data);
    }

    #[test]
    fn tls_never_panics(data in bytes_near(tls_streams())) {
        let _ = tls::split_record(&data);
        let _ = tls::parse_client_hello(&data);
        let _ = tls::parse_server_hello(&data);
        let _ = tls::parse_certificate(&data, false);
        let _ = tls::parse_certificate(&data, true);
        let _ = tls::parse_alert(&data);
        let mut r = HandshakeReassembler::new();
        for chunk in data.chunks(7) {
            for _ in r.push(chunk, 0) {}
        }
        entry::tls_records(&data);
    }

    #[test]
    fn x509_never_panics(data in bytes_near(certificates())) {
        entry::x509(&data);
    }

    #[test]
    fn mcs_and_gcc_never_panic(data in bytes_near(mcs_frames())) {
        let _ = mcs::decode(&data);
        let _ = gcc::decode_conference_create_request(&data, 0);
        let _ = gcc::decode_conference_create_response(&data, 0);
        entry::mcs(&data);
    }

    /// Capture files (the corpus's small ones, damaged and cut) through the reader and the
    /// analyzer, in reads of any size.
    #[test]
    fn capture_never_panics(data in bytes_near(captures()), split in any::<u8>()) {
        let mut input = vec![split];
        input.extend_from_slice(&data);
        entry::capture(&input);
    }

    /// Arbitrary bytes, splits, closes, ticks and connect results (the `session` fuzz
    /// target's byte-code), then the verdict and the text report.
    #[test]
    fn session_never_panics(ops in prop::collection::vec(any::<u8>(), 0..2048)) {
        entry::session(&ops);
    }

    /// Real streams with bytes changed, through the session in small reads.
    #[test]
    fn session_never_panics_on_damaged_streams(
        stream in bytes_near(tls_streams()),
        first in prop_oneof![Just(hex(E1)), Just(hex(CR_LEGACY)), Just(hex(CC_SSL))],
        chunk in 1usize..600,
    ) {
        let mut s = Session::new(SessionConfig::default());
        s.on_connect_result(Ok(()), Micros(0));
        s.feed(C2S, &first, Micros(1));
        s.feed(S2C, &hex(CC_SSL), Micros(2));
        for (i, piece) in stream.chunks(chunk).enumerate() {
            let dir = if i % 3 == 0 { S2C } else { C2S };
            s.feed(dir, piece, Micros(3 + i as u64));
        }
        let v = s.verdict();
        prop_assert!(!v.cause.is_empty());
    }
}

// ---------------------------------------------------------------------------------------------
// The same events however a stream is split.

/// One direction's bytes, fed in order as a unit of the conversation.
type Script = Vec<(Direction, Vec<u8>)>;

fn tls_script(case: &str) -> Script {
    let client = fixture(&format!("tls/{case}.client.bin"));
    let server = fixture(&format!("tls/{case}.server.bin"));
    // The ClientHello record alone first, then the server's flight, then the rest of both.
    let hello_len = tls::split_record(&client).unwrap().unwrap().0.total_len();
    let (hello, rest) = client.split_at(hello_len);
    vec![
        (C2S, hex(E1)),
        (S2C, hex(CC_SSL)),
        (C2S, hello.to_vec()),
        (S2C, server),
        (C2S, rest.to_vec()),
    ]
}

fn mcs_script(initial: &str, response: &str, dpu: Option<&str>) -> Script {
    let mut s = vec![
        (C2S, hex(CR_LEGACY)),
        (S2C, hex(CC_LEGACY)),
        (C2S, fixture(&format!("mcs/{initial}"))),
        (S2C, fixture(&format!("mcs/{response}"))),
    ];
    if let Some(dpu) = dpu {
        s.push((S2C, fixture(&format!("mcs/{dpu}"))));
    }
    s
}

fn scripts() -> Vec<(&'static str, Script)> {
    vec![
        ("tls ndpi_rdp", tls_script("ndpi_rdp")),
        ("tls zeek_no_cookie", tls_script("zeek_no_cookie")),
        (
            "mcs zeek_proprietary",
            mcs_script(
                "zeek_proprietary_connect_initial.bin",
                "zeek_proprietary_connect_response.bin",
                Some("zeek_proprietary_dpu.bin"),
            ),
        ),
        (
            "mcs zeek_x509",
            mcs_script(
                "zeek_x509_connect_initial.bin",
                "zeek_x509_connect_response.bin",
                None,
            ),
        ),
        (
            "mcs ndpi_rdp3",
            mcs_script(
                "ndpi_rdp3_connect_initial.bin",
                "ndpi_rdp3_connect_response.bin",
                None,
            ),
        ),
        (
            "mcs testbed xfreerdp/xrdp fips",
            mcs_script(
                "testbed_xfreerdp_connect_initial.bin",
                "testbed_xrdp_fips_connect_response.bin",
                None,
            ),
        ),
        (
            "x224 negotiation failure",
            vec![
                (C2S, hex(E2)),
                (
                    S2C,
                    hex("03 00 00 13 0e d0 00 00 12 34 00 03 00 08 00 05 00 00 00"),
                ),
            ],
        ),
    ]
}

/// Feeds `script`, each unit cut into reads of the sizes in `cuts` (cycled), all at the same
/// instant so that only the split differs.
fn events(script: &Script, cuts: &[usize]) -> Vec<Event> {
    let mut s = Session::new(SessionConfig {
        max_inspect_bytes: usize::MAX,
        ..SessionConfig::default()
    });
    let at = Micros(1000);
    s.on_connect_result(Ok(()), at);
    let mut sizes = cuts.iter().cycle();
    for (dir, bytes) in script {
        let mut rest = bytes.as_slice();
        while !rest.is_empty() {
            let n = sizes
                .next()
                .copied()
                .unwrap_or(usize::MAX)
                .clamp(1, rest.len());
            let (piece, next) = rest.split_at(n);
            s.feed(*dir, piece, at);
            rest = next;
        }
    }
    s.events().to_vec()
}

#[test]
fn scripts_produce_events() {
    for (name, script) in scripts() {
        let whole = events(&script, &[usize::MAX]);
        assert!(whole.len() > 3, "{name}: only {} events", whole.len());
    }
}

#[test]
fn byte_by_byte_equals_whole() {
    for (name, script) in scripts() {
        assert_eq!(
            events(&script, &[1]),
            events(&script, &[usize::MAX]),
            "{name}"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn same_events_whatever_the_split(
        cuts in prop::collection::vec(
            prop_oneof![1usize..8, 1usize..200, 1usize..5000],
            1..40,
        ),
    ) {
        for (name, script) in scripts() {
            let whole = events(&script, &[usize::MAX]);
            let split = events(&script, &cuts);
            prop_assert_eq!(split, whole, "{}", name);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// decode(encode(x)) == x.

fn cr_of(pdu: &[u8]) -> x224::ConnectionRequest {
    match x224::decode(pdu).unwrap() {
        X224Pdu::ConnectionRequest(cr) => cr,
        other => panic!("not a CR: {other:?}"),
    }
}

/// A Connection Request as mstsc lays it out (MS-RDPBCGR 2.2.1.1): test-side encoder.
fn encode_cr(cookie: Option<&str>, neg: Option<(u8, u32)>) -> Vec<u8> {
    let mut body = vec![0xe0, 0, 0, 0, 0, 0]; // code CR, DST-REF, SRC-REF, class 0
    if let Some(c) = cookie {
        body.extend_from_slice(format!("Cookie: mstshash={c}\r\n").as_bytes());
    }
    if let Some((flags, requested)) = neg {
        body.extend_from_slice(&[0x01, flags, 0x08, 0x00]); // TYPE_RDP_NEG_REQ, flags, length 8
        body.extend_from_slice(&requested.to_le_bytes());
    }
    let mut pdu = vec![0x03, 0x00];
    pdu.extend_from_slice(&((body.len() + 5) as u16).to_be_bytes());
    pdu.push(body.len() as u8); // LI: the header after itself
    pdu.extend_from_slice(&body);
    pdu
}

/// A Connection Confirm with RDP_NEG_RSP or RDP_NEG_FAILURE (2.2.1.2): test-side encoder.
fn encode_cc(failure: bool, flags: u8, value: u32) -> Vec<u8> {
    let mut pdu = hex("03 00 00 13 0e d0 00 00 12 34 00");
    pdu.extend_from_slice(&[if failure { 0x03 } else { 0x02 }, flags, 0x08, 0x00]);
    pdu.extend_from_slice(&value.to_le_bytes());
    pdu
}

proptest! {
    /// `--security` rewrites requestedProtocols in place: the result decodes to the same
    /// request with only that value changed.
    #[test]
    fn rewritten_request_decodes_to_what_was_written(
        base in prop_oneof![Just(hex(E1)), Just(hex(E2))],
        to in any::<u32>(),
    ) {
        let cr = cr_of(&base);
        let out = x224::rewrite_requested(&base, &cr, Protocols(to)).unwrap();
        let mut expected = cr.clone();
        if let Some(n) = expected.neg_req.as_mut() {
            n.requested = Protocols(to);
        }
        prop_assert_eq!(cr_of(&out), expected);
    }

    #[test]
    fn encoded_request_decodes(
        cookie in proptest::option::of("[A-Za-z0-9._-]{1,20}"),
        neg in proptest::option::of((0u8..8, any::<u32>())),
    ) {
        let pdu = encode_cr(cookie.as_deref(), neg);
        let cr = cr_of(&pdu);
        prop_assert_eq!(cr.cookie.as_deref(), cookie.as_deref());
        prop_assert_eq!(
            cr.neg_req.as_ref().map(|n| (n.flags, n.requested.0)),
            neg
        );
        if let Some(NegReq { requested_offset, .. }) = cr.neg_req {
            prop_assert_eq!(requested_offset, pdu.len() - 4);
        }
        prop_assert_eq!(x224::decode_next(&pdu).unwrap().unwrap().1, pdu.len());
    }

    #[test]
    fn encoded_confirm_decodes(failure in any::<bool>(), flags in any::<u8>(), value in any::<u32>()) {
        let pdu = encode_cc(failure, flags, value);
        let X224Pdu::ConnectionConfirm(cc) = x224::decode(&pdu).unwrap() else {
            panic!("not a CC");
        };
        match cc.neg.unwrap() {
            NegData::Response { flags: f, selected, selected_offset } => {
                prop_assert!(!failure);
                prop_assert_eq!((f, selected.0, selected_offset), (flags, value, 15));
            }
            NegData::Failure { code, code_offset } => {
                prop_assert!(failure);
                prop_assert_eq!((code.0, code_offset), (value, 15));
            }
        }
    }

    /// The GCC echoes the proxy patches when it rewrites the negotiation read back as written,
    /// and nothing else in the PDU changes.
    #[test]
    fn patched_gcc_echoes_decode_to_what_was_written(value in any::<u32>()) {
        for name in [
            "zeek_x509_connect_initial.bin",
            "testbed_xfreerdp_connect_initial.bin",
            "zeek_proprietary_connect_initial.bin",
        ] {
            let mut pdu = fixture(&format!("mcs/{name}"))[7..].to_vec();
            let mcs::McsPdu::ConnectInitial(ci) = mcs::decode(&pdu).unwrap() else {
                panic!("{name}: not a Connect-Initial");
            };
            let Some(at) = ci.client_core.as_ref().and_then(|c| c.server_selected_protocol_offset)
            else {
                continue;
            };
            prop_assert!(gcc::patch_server_selected_protocol(&mut pdu, at, Protocols(value)));
            let mcs::McsPdu::ConnectInitial(again) = mcs::decode(&pdu).unwrap() else {
                panic!("{name}: patched PDU is not a Connect-Initial");
            };
            let mut expected = ci.clone();
            if let Some(core) = expected.client_core.as_mut() {
                core.server_selected_protocol = Some(Protocols(value));
            }
            prop_assert_eq!(again, expected, "{}", name);
        }
        for name in ["zeek_x509_connect_response.bin", "zeek_proprietary_connect_response.bin"] {
            let mut pdu = fixture(&format!("mcs/{name}"))[7..].to_vec();
            let mcs::McsPdu::ConnectResponse(cr) = mcs::decode(&pdu).unwrap() else {
                panic!("{name}: not a Connect-Response");
            };
            let Some(at) = cr.server_core.as_ref().and_then(|c| c.client_requested_protocols_offset)
            else {
                continue;
            };
            prop_assert!(gcc::patch_client_requested_protocols(&mut pdu, at, Protocols(value)));
            let mcs::McsPdu::ConnectResponse(again) = mcs::decode(&pdu).unwrap() else {
                panic!("{name}: patched PDU is not a Connect-Response");
            };
            let mut expected = cr.clone();
            if let Some(core) = expected.server_core.as_mut() {
                core.client_requested_protocols = Some(Protocols(value));
            }
            prop_assert_eq!(again, expected, "{}", name);
        }
    }

    /// An offset past the end writes nothing.
    #[test]
    fn patch_out_of_bounds_writes_nothing(len in 0usize..64, offset in any::<usize>()) {
        let mut buf = vec![0xAA; len];
        let wrote = gcc::patch_server_selected_protocol(&mut buf, offset, Protocols(0));
        prop_assert_eq!(wrote, offset.checked_add(4).is_some_and(|e| e <= len));
        if !wrote {
            prop_assert!(buf.iter().all(|b| *b == 0xAA));
        }
    }
}

/// Keeps `x509` in use here for a certificate summary round trip: a DER certificate from the
/// test PKI summarizes the same twice (no hidden state).
#[test]
fn certificate_summaries_are_stable() {
    for der in certificates() {
        assert_eq!(x509::summarize(&der).ok(), x509::summarize(&der).ok());
    }
}

// ---------------------------------------------------------------------------------------------
// Regressions found while writing the hostile-peer tests.

/// A peer sending the smallest valid units (5-byte TLS records, 7-byte TPKT PDUs, alerts)
/// made one event per unit (200,000 events, 70 MB, out of 1 MiB) and, for application
/// records, rescanned every earlier record each time (67 s of CPU for 1 MiB in release).
/// Now the event log is capped and the framer skips over framed units.
#[test]
fn tiny_units_do_not_amplify() {
    let ssl = (hex(E1), hex(CC_SSL));
    let legacy = (hex(CR_LEGACY), hex(CC_LEGACY));
    for (name, (cr, cc), unit, dir) in [
        (
            "empty application records",
            ssl.clone(),
            hex("17 03 03 00 00"),
            S2C,
        ),
        (
            "empty handshake records",
            ssl.clone(),
            hex("16 03 03 00 00"),
            C2S,
        ),
        ("warning alerts", ssl, hex("15 03 03 00 02 01 00"), S2C),
        (
            "empty X.224 DT",
            legacy.clone(),
            hex("03 00 00 07 02 f0 80"),
            C2S,
        ),
        ("repeated CR", legacy, hex(CR_LEGACY), C2S),
    ] {
        let mut s = Session::new(SessionConfig::default());
        s.on_connect_result(Ok(()), Micros(0));
        s.feed(C2S, &cr, Micros(1));
        s.feed(S2C, &cc, Micros(2));
        let chunk: Vec<u8> = unit
            .iter()
            .copied()
            .cycle()
            .take(unit.len() * 13_000)
            .collect();
        for _ in 0..4 {
            s.feed(dir, &chunk, Micros(3));
        }
        let n = s.events().len();
        assert!(n <= rdpdiag::session::MAX_EVENTS, "{name}: {n} events");
        assert!(!s.verdict().cause.is_empty());
    }
}
