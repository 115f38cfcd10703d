//! Every capture of tests/corpus through `analyze`, asserting the facts and diagnoses that
//! tests/corpus/README.md lists.

use rdpdiag::capture::{AnalysisReport, AnalyzeConfig, analyze_bytes};
use sha2::{Digest, Sha256};

fn load(name: &str, sha256: &str) -> Vec<u8> {
    let path = format!("{}/tests/corpus/{name}", env!("CARGO_MANIFEST_DIR"));
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    assert_eq!(hex::encode(Sha256::digest(&bytes)), sha256, "{name} was modified");
    bytes
}

fn analyze(name: &str, sha256: &str) -> AnalysisReport {
    let r = analyze_bytes(&load(name, sha256), AnalyzeConfig::default())
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    if std::env::var_os("DUMP").is_some() {
        eprintln!("{name}: {}", serde_json::to_string_pretty(&r).unwrap());
    }
    r
}

#[test]
fn dump_all() {
    for (n, h) in [
        ("zeek_rdp-proprietary-encryption.pcap", "df7117b972ca63e1c334a543a2883a9d1dbceec50e371d6279e68ba1eafeb73f"),
        ("zeek_rdp-to-ssl.pcap", "ff44d3567d2583bd17c1a6fdd765049b082c800f671481a4d01bdf70721654eb"),
        ("zeek_rdp-x509.pcap", "0173bcff16fd0fd86024f467ed2c7fe5df6930311981a03837545de221cf067b"),
        ("zeek_rdp-unknown-keyboard.pcap", "1c0fc1b57d5ef83f379c483fa1e6e33aa3898e10a79f253e3de4a3b355b29955"),
        ("zeek_rdp-no-cookie-mstshash.pcap", "2f4d62f26e793f5003b20125f39db8cb572e06a874261a75341031e672801c72"),
        ("zeek_rdp-invalid-length.pcap", "77b3027630ce8cee21d640b03e4cc7850715f52deeab3d2b9e46a823350318ec"),
        ("zeek_modbus-and-non-modbus-p502.pcap", "ef18bb9af83affda8419c77f03e8efb1ca1353c6916525b982dc8823b9076d6d"),
        ("ndpi_rdp.pcap", "b472df48cb6fd72c59c5e44da5d7b038744b545bc9ee7a1662989d658df5dc67"),
        ("ndpi_rdp3.pcap", "b4d08a079ff72dfe487725c32f9898690a6308120b1d4a626d1644dc8140af94"),
        ("ndpi_rdp_over_tls.pcap", "bc7c4ab2758fa7532976c9d91664b5c32111446ece02b632e322b808dcace43b"),
        ("ndpi_tcp_scan.pcapng", "3e5fb141ecdd58a96950cc80448e006d4282a70658ea566431ce87c93740a4c2"),
        ("ndpi_rdp2.pcap", "df75d7b444cdc45b1cca3eed170bdfc379baf1b4fe85b3e3b7cdbe337be9b3a0"),
        ("arkime_socks5-rdp.pcap", "53f5be6f7a5f163e5a3eb4bc0e5c19717d68e82cc4a01b1793491639f0e680a6"),
    ] {
        let r = analyze(n, h);
        eprintln!("== {n}: {} packets, format {:?}, warnings {:?}", r.packets, r.format, r.warnings);
        for c in &r.connections {
            eprintln!("  VERDICT stream {}: {:?} cause={} phase={:?} closed_by={:?} {:?} :: {}", c.stream, c.verdict.outcome, c.verdict.cause, c.verdict.phase_reached, c.verdict.closed_by, c.verdict.close_kind, c.verdict.summary);
            eprintln!("  FACTS {}", serde_json::to_string(&c.verdict.facts).unwrap());
            eprintln!("  RDP stream {} {} -> {} c2s {} s2c {} pkts {} gaps {:?} stalls {:?} preamble {:?} notes {:?} tcp {:?} {:?}",
                c.stream, c.client, c.server, c.bytes_client_to_server, c.bytes_server_to_client, c.packets, c.gaps, c.stalls, c.preamble, c.notes, c.tcp_client_to_server, c.tcp_server_to_client);
        }
        for o in &r.other_tcp {
            eprintln!("  other {} {} -> {} {} {:?}", o.stream, o.client, o.server, o.state, o.looks_like);
        }
        for u in &r.rdp_udp { eprintln!("  udp {u:?}"); }
    }
}

#[test]
fn dump_events() {
    let Some(name) = std::env::var_os("DUMP_EVENTS") else { return };
    let name = name.into_string().unwrap();
    let bytes = std::fs::read(format!("{}/tests/corpus/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap();
    let cfg = AnalyzeConfig { keep_events: true, ..AnalyzeConfig::default() };
    let r = analyze_bytes(&bytes, cfg).unwrap();
    for c in &r.connections {
        for e in &c.events { eprintln!("{}", serde_json::to_string(e).unwrap()); }
        eprintln!("{}", serde_json::to_string_pretty(&c.verdict).unwrap());
    }
}
