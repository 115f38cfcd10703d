//! Phase-machine tests over hand-built byte sequences (reference §2 worked examples).

use super::*;

fn hex(s: &str) -> Vec<u8> {
    hex::decode(s.split_whitespace().collect::<String>()).unwrap()
}

const C2S: Direction = Direction::ClientToHost;
const S2C: Direction = Direction::HostToClient;

/// Reference E1: CR, cookie "alice", requestedProtocols SSL|HYBRID|HYBRID_EX.
pub(crate) const CR_E1: &str = "03 00 00 2b 26 e0 00 00 00 00 00 43 6f 6f 6b 69
    65 3a 20 6d 73 74 73 68 61 73 68 3d 61 6c 69 63 65 0d 0a 01 00 08 00 0b 00 00 00";
/// CR requesting SSL only.
pub(crate) const CR_SSL: &str = "03 00 00 13 0e e0 00 00 00 00 00 01 00 08 00 01 00 00 00";

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

fn connected() -> Session {
    let mut s = Session::new(SessionConfig::default());
    s.on_connect_result(Ok(()), ms(0));
    s
}

#[test]
fn connect_refused_and_timeout() {
    let mut s = Session::new(SessionConfig::default());
    s.on_connect_result(Err(ConnectFailure::Refused), ms(1));
    let v = s.verdict();
    assert_eq!(
        (v.cause, v.phase_reached, v.closed_by, v.close_kind),
        (
            "tcp.connect_refused",
            Phase::TcpConnect,
            Some(Side::Host),
            Some(CloseKind::ConnectError)
        )
    );
    assert!(!v.remedies.is_empty());
    let mut s = Session::new(SessionConfig::default());
    s.on_connect_result(Err(ConnectFailure::Timeout), ms(10_000));
    assert_eq!(s.verdict().cause, "tcp.connect_timeout");
}

#[test]
fn host_closes_after_request() {
    for kind in [CloseKind::Fin, CloseKind::Rst] {
        let mut s = connected();
        s.feed(C2S, &hex(CR_E1), ms(1));
        s.on_close(Side::Host, kind, ms(2));
        let v = s.verdict();
        assert_eq!(
            (v.cause, v.phase_reached, v.closed_by, v.close_kind),
            (
                "x224.host_closed_after_request",
                Phase::X224,
                Some(Side::Host),
                Some(kind)
            )
        );
        assert_eq!(v.facts.cookie.as_deref(), Some("alice"));
    }
}

#[test]
fn every_failure_code_has_its_cause() {
    let want = [
        (1, "nego.ssl_required_by_server"),
        (2, "nego.ssl_not_allowed_by_server"),
        (3, "nego.ssl_cert_not_on_server"),
        (4, "nego.inconsistent_flags"),
        (5, "nego.hybrid_required_by_server"),
        (6, "nego.ssl_with_user_auth_required_by_server"),
        (9, "nego.unknown_failure"),
    ];
    for (code, cause) in want {
        let mut s = connected();
        s.feed(C2S, &hex(CR_SSL), ms(1));
        s.feed(S2C, &cc_failure(code), ms(2));
        s.on_close(Side::Host, CloseKind::Fin, ms(3));
        let v = s.verdict();
        assert_eq!(
            (v.cause, v.phase_reached, v.closed_by),
            (cause, Phase::X224, Some(Side::Host)),
            "code {code}"
        );
        let e = v
            .evidence
            .iter()
            .find(|e| e.field == "RDP_NEG_FAILURE.failureCode")
            .unwrap();
        assert_eq!(e.offset, Some(15));
    }
}

#[test]
fn client_refuses_selected_protocol() {
    let mut s = connected();
    s.feed(C2S, &hex(CR_SSL), ms(1));
    s.feed(S2C, &cc_selected(0), ms(2));
    s.on_close(Side::Client, CloseKind::Fin, ms(3));
    let v = s.verdict();
    assert_eq!(
        (v.cause, v.phase_reached, v.closed_by),
        (
            "nego.client_refused_selected_protocol",
            Phase::X224,
            Some(Side::Client)
        )
    );
}

#[test]
fn silent_host_stalls_by_tick_and_by_client_giving_up() {
    let mut s = Session::new(SessionConfig {
        stall_timeout: Micros::from_millis(1000),
        ..SessionConfig::default()
    });
    s.on_connect_result(Ok(()), ms(0));
    s.feed(C2S, &hex(CR_SSL), ms(5));
    assert_eq!(s.next_deadline(), Some(ms(1005)));
    assert!(!s.tick(ms(900)));
    assert!(s.tick(ms(1005)));
    let v = s.verdict();
    assert_eq!(
        (v.cause, v.phase_reached, v.closed_by, v.close_kind),
        (
            "stall",
            Phase::X224,
            Some(Side::Proxy),
            Some(CloseKind::Timeout)
        )
    );
    assert!(v.summary.contains("waiting for the host"), "{}", v.summary);

    let mut s = connected();
    s.feed(C2S, &hex(CR_SSL), ms(5));
    s.on_close(Side::Client, CloseKind::Fin, ms(8_000));
    let v = s.verdict();
    assert_eq!((v.cause, v.closed_by), ("stall", Some(Side::Client)));
}

#[test]
fn non_rdp_answer_is_not_rdp() {
    // The corpus' modbus-port flow: a TPKT header claiming 43 bytes carrying 5, then FIN.
    let mut s = connected();
    s.feed(C2S, &hex(CR_SSL), ms(1));
    s.feed(S2C, &hex("03 00 00 2b 00 03 00 80 01"), ms(2));
    s.on_close(Side::Host, CloseKind::Fin, ms(3));
    assert_eq!(s.verdict().cause, "x224.not_rdp");
    // An HTTP answer.
    let mut s = connected();
    s.feed(C2S, &hex(CR_SSL), ms(1));
    s.feed(S2C, b"HTTP/1.1 400 Bad Request\r\n\r\n", ms(2));
    s.on_close(Side::Host, CloseKind::Fin, ms(3));
    let v = s.verdict();
    assert_eq!(v.cause, "x224.not_rdp", "{v:?}");
}

#[test]
fn events_do_not_depend_on_how_the_stream_is_split() {
    let cr = hex(CR_E1);
    let cc = cc_failure(5);
    let mut whole = connected();
    whole.feed(C2S, &cr, ms(1));
    whole.feed(S2C, &cc, ms(2));
    for cut in 1..cr.len() {
        let mut s = connected();
        s.feed(C2S, &cr[..cut], ms(1));
        s.feed(C2S, &cr[cut..], ms(1));
        s.feed(S2C, &cc[..cut.min(cc.len())], ms(2));
        s.feed(S2C, &cc[cut.min(cc.len())..], ms(2));
        assert_eq!(s.events(), whole.events(), "cut {cut}");
    }
}

/// Splits a TLS byte stream into whole records.
fn records(stream: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut rest = stream;
    while let Ok(Some((h, _))) = crate::wire::tls::split_record(rest) {
        let n = h.total_len();
        out.push(rest[..n].to_vec());
        rest = &rest[n..];
    }
    assert!(rest.is_empty(), "stream does not end on a record boundary");
    out
}

/// Feeds the ndpi_rdp.pcap TLS 1.2 conversation (HYBRID_EX, reference corpus README) in
/// capture order: handshake flights, then application records alternating C, S, ...
fn ndpi_rdp_session() -> Session {
    let c = records(include_bytes!(
        "../../tests/fixtures/tls/ndpi_rdp.client.bin"
    ));
    let s = records(include_bytes!(
        "../../tests/fixtures/tls/ndpi_rdp.server.bin"
    ));
    let mut sess = Session::new(SessionConfig {
        now_unix: Some(1_559_207_465),
        ..SessionConfig::default()
    });
    sess.on_connect_result(Ok(()), ms(0));
    sess.feed(
        C2S,
        &hex("03 00 00 13 0e e0 00 00 00 00 00 01 00 08 00 0b 00 00 00"),
        ms(1),
    );
    sess.feed(S2C, &cc_selected(8), ms(2));
    let mut t = 3;
    let (mut ci, mut si) = (0, 0);
    // Handshake: client flight, server flight, client flight, server flight (by content type).
    let is_app = |r: &Vec<u8>| r[0] == 23;
    let mut turn_client = true;
    while ci < c.len() || si < s.len() {
        let (recs, idx, dir) = if turn_client {
            (&c, &mut ci, C2S)
        } else {
            (&s, &mut si, S2C)
        };
        // One flight: consecutive handshake-phase records, or one application record.
        let mut sent = false;
        while *idx < recs.len() {
            let r = &recs[*idx];
            if sent && is_app(r) {
                break;
            }
            sess.feed(dir, r, ms(t));
            t += 1;
            *idx += 1;
            sent = true;
            if is_app(r) {
                break;
            }
        }
        turn_client = !turn_client;
    }
    sess
}

#[test]
fn ndpi_rdp_tls12_hybrid_ex_reaches_early_user_authorization() {
    let sess = ndpi_rdp_session();
    let v = sess.verdict();
    assert_eq!(
        v.phase_reached,
        Phase::EarlyUserAuth,
        "{:#?}",
        sess.events()
    );
    assert_eq!(v.facts.tls_version.as_deref(), Some("TLS 1.2"));
    assert_eq!(v.facts.sni.as_deref(), Some("192.168.2.142"));
    assert!(
        v.facts.certificate[0].contains("OFFICE-WIN10-VM"),
        "{:?}",
        v.facts.certificate
    );
    // The certificate was valid on the capture's day.
    assert!(
        v.facts
            .certificate_problems
            .iter()
            .all(|p| !p.contains("expired")),
        "{:?}",
        v.facts.certificate_problems
    );
    assert_eq!(v.outcome, Outcome::Unknown);

    // The same conversation ending with the host's FIN right after that 4-byte record.
    let mut sess = ndpi_rdp_session();
    sess.on_close(Side::Host, CloseKind::Fin, ms(100));
    let v = sess.verdict();
    assert_eq!(
        (v.cause, v.phase_reached, v.closed_by),
        ("early_auth.denied", Phase::EarlyUserAuth, Some(Side::Host))
    );
    assert!(v.inferred);
}

#[test]
fn zeek_no_cookie_client_resets_after_handshake() {
    // zeek_rdp-no-cookie-mstshash.pcap: TLS 1.2 completes, the client resets 22 µs later.
    let c = records(include_bytes!(
        "../../tests/fixtures/tls/zeek_no_cookie.client.bin"
    ));
    let s = records(include_bytes!(
        "../../tests/fixtures/tls/zeek_no_cookie.server.bin"
    ));
    let mut sess = connected();
    sess.feed(
        C2S,
        &hex("03 00 00 13 0e e0 00 00 00 00 00 01 00 08 00 0b 00 00 00"),
        ms(1),
    );
    sess.feed(S2C, &cc_selected(8), ms(2));
    sess.feed(C2S, &c[0], ms(3)); // ClientHello
    for r in s.iter().take_while(|r| r[0] == 22) {
        sess.feed(S2C, r, ms(4)); // ServerHello, Certificate, ServerHelloDone
    }
    for r in &c[1..] {
        sess.feed(C2S, r, ms(5)); // ClientKeyExchange, ChangeCipherSpec, Finished
    }
    for r in s.iter().skip_while(|r| r[0] == 22) {
        sess.feed(S2C, r, ms(6)); // ChangeCipherSpec, Finished
    }
    sess.on_close(Side::Client, CloseKind::Rst, ms(6));
    let v = sess.verdict();
    assert_eq!(
        (v.cause, v.phase_reached, v.closed_by, v.close_kind),
        (
            "tls.client_rejected_certificate",
            Phase::TlsHandshake,
            Some(Side::Client),
            Some(CloseKind::Rst)
        )
    );
    assert!(v.inferred);
    assert!(
        v.evidence
            .iter()
            .any(|e| e.value.contains("CLK-456040-D.one.phoenix.gov")),
        "{:#?}",
        v.evidence
    );
}

/// A clear alert record.
fn alert(desc: u8) -> Vec<u8> {
    vec![21, 3, 3, 0, 2, 2, desc]
}

#[test]
fn clear_alerts_map_to_causes() {
    let c = records(include_bytes!(
        "../../tests/fixtures/tls/zeek_no_cookie.client.bin"
    ));
    let s = records(include_bytes!(
        "../../tests/fixtures/tls/zeek_no_cookie.server.bin"
    ));
    let cases = [
        (S2C, 70u8, false, "tls.no_common_version", Side::Host),
        (S2C, 80, false, "tls.alert_from_host", Side::Host),
        (C2S, 70, true, "tls.no_common_version", Side::Client),
        (
            C2S,
            48,
            true,
            "tls.client_rejected_certificate",
            Side::Client,
        ),
        (C2S, 47, true, "tls.alert_from_client", Side::Client),
        (C2S, 40, true, "tls.no_common_cipher", Side::Client),
    ];
    for (dir, desc, after_flight, cause, side) in cases {
        let mut sess = connected();
        sess.feed(C2S, &hex(CR_SSL), ms(1));
        sess.feed(S2C, &cc_selected(1), ms(2));
        sess.feed(C2S, &c[0], ms(3));
        if after_flight {
            for r in s.iter().take_while(|r| r[0] == 22) {
                sess.feed(S2C, r, ms(4));
            }
        }
        sess.feed(dir, &alert(desc), ms(5));
        sess.on_close(side, CloseKind::Fin, ms(6));
        let v = sess.verdict();
        assert_eq!(
            (v.cause, v.phase_reached, v.closed_by, v.close_kind),
            (
                cause,
                Phase::TlsHandshake,
                Some(side),
                Some(CloseKind::Alert)
            ),
            "alert {desc}"
        );
        assert!(
            v.evidence
                .iter()
                .any(|e| e.field == "TLS Alert.description")
        );
    }
}

#[test]
fn host_resets_after_client_hello() {
    let c = records(include_bytes!(
        "../../tests/fixtures/tls/zeek_no_cookie.client.bin"
    ));
    let mut sess = connected();
    sess.feed(C2S, &hex(CR_SSL), ms(1));
    sess.feed(S2C, &cc_selected(1), ms(2));
    sess.feed(C2S, &c[0], ms(3));
    sess.on_close(Side::Host, CloseKind::Rst, ms(4));
    let v = sess.verdict();
    assert_eq!(
        (v.cause, v.phase_reached, v.closed_by, v.close_kind),
        (
            "tls.host_aborted_handshake",
            Phase::TlsHandshake,
            Some(Side::Host),
            Some(CloseKind::Rst)
        )
    );
    assert_eq!(
        v.facts.client_tls_versions.as_deref(),
        Some("TLS 1.2, TLS 1.1, TLS 1.0")
    );
}

#[test]
fn standard_rdp_security_legacy_xp_session_is_clear_and_consistent() {
    // ndpi_rdp3.pcap: legacy CR/CC, XP client SEPTU, 128-bit Client Compatible.
    let mut s = connected();
    s.feed(C2S, &hex("03 00 00 0b 06 e0 00 00 00 00 00"), ms(1));
    s.feed(S2C, &hex("03 00 00 0b 06 d0 00 00 12 34 00"), ms(2));
    s.feed(
        C2S,
        include_bytes!("../../tests/fixtures/mcs/ndpi_rdp3_connect_initial.bin"),
        ms(3),
    );
    s.feed(
        S2C,
        include_bytes!("../../tests/fixtures/mcs/ndpi_rdp3_connect_response.bin"),
        ms(4),
    );
    let v = s.verdict();
    assert_eq!(v.phase_reached, Phase::Mcs);
    assert_eq!(v.facts.client_name.as_deref(), Some("SEPTU"));
    assert_eq!(v.facts.client_build.as_deref(), Some("2600"));
    assert!(
        v.facts.encryption.as_deref().unwrap().starts_with("128BIT"),
        "{:?}",
        v.facts.encryption
    );
    s.on_close(Side::Host, CloseKind::Fin, ms(5));
    assert_eq!(s.verdict().cause, "mcs.host_disconnected");
}

#[test]
fn standard_rdp_security_method_not_offered_is_a_mismatch() {
    // xfreerdp's Connect-Initial offering 128BIT only (methods patched from 0x1b to 0x02) and
    // xrdp's FIPS/FIPS Connect-Response (testbed xrdp-rdp-fips with --enc-methods 128).
    let mut ci =
        include_bytes!("../../tests/fixtures/mcs/testbed_xfreerdp_connect_initial.bin").to_vec();
    let x = crate::wire::x224::decode(&ci).unwrap();
    let crate::wire::x224::X224Pdu::Data { payload_offset } = x else {
        panic!()
    };
    let crate::wire::mcs::McsPdu::ConnectInitial(parsed) =
        crate::wire::mcs::decode(&ci[payload_offset..]).unwrap()
    else {
        panic!()
    };
    assert_eq!(parsed.client_security.unwrap().encryption_methods.0, 0x1b);
    // CS_SECURITY block: type 0xc002, length 12, encryptionMethods u32le.
    let at = ci
        .windows(4)
        .position(|w| w == [0x02, 0xc0, 0x0c, 0x00])
        .unwrap()
        + 4;
    ci[at..at + 4].copy_from_slice(&2u32.to_le_bytes());
    let mut s = connected();
    s.feed(
        C2S,
        &hex("03 00 00 13 0e e0 00 00 00 00 00 01 00 08 00 00 00 00 00"),
        ms(1),
    );
    s.feed(S2C, &cc_selected(0), ms(2));
    s.feed(C2S, &ci, ms(3));
    s.feed(
        S2C,
        include_bytes!("../../tests/fixtures/mcs/testbed_xrdp_fips_connect_response.bin"),
        ms(4),
    );
    s.on_close(Side::Client, CloseKind::Fin, ms(5));
    let v = s.verdict();
    assert_eq!(
        (v.cause, v.phase_reached, v.closed_by),
        (
            "rdp_security.encryption_mismatch",
            Phase::Mcs,
            Some(Side::Client)
        ),
        "{v:#?}"
    );
    assert!(v.summary.contains("FIPS"), "{}", v.summary);
}
