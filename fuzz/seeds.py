#!/usr/bin/env python3
"""Builds the committed seed corpora in fuzz/seeds/<target>/ (run from the repository root).

Sources: the capture corpus (tests/corpus/*.pcap*, TCP payloads via tshark), the TLS and MCS
fixtures (tests/fixtures/{tls,mcs}/*.bin), the test PKI (tests/fixtures/x509/*.pem) and the
reference's worked examples E1-E9 (docs/reference RDP-NEGOTIATION.md, copied in src/wire tests).
Seeds are named by content hash, so re-running is idempotent.
"""

import base64
import glob
import hashlib
import os
import re
import subprocess
from collections import defaultdict

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "fuzz", "seeds")
RDP_PORT = "3389"
MAX_SEED = 64 * 1024


def put(target, data):
    if not data:
        return
    data = data[:MAX_SEED]
    d = os.path.join(OUT, target)
    os.makedirs(d, exist_ok=True)
    name = hashlib.sha1(data).hexdigest()[:16]
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def h(s):
    return bytes.fromhex(re.sub(r"[^0-9a-fA-F]", "", s))


# Reference worked examples (RDP-NEGOTIATION.md §2.5/§2.6/§2.7), as in src/wire/{x224,tls}.rs.
E1 = h("03 00 00 2b 26 e0 00 00 00 00 00 43 6f 6f 6b 69 65 3a 20 6d 73 74 73 68 61 73 68 3d"
       " 61 6c 69 63 65 0d 0a 01 00 08 00 0b 00 00 00")
E2 = h("03 00 00 37 32 e0 00 00 00 00 00 01 08 08 00 01 00 00 00 06 00 24 00 5a 3e 8c 1d 7b"
       " 2f 4e 6a 9c 0b 1d 2e 3f 40 51 62 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00")
E3 = h("03 00 00 13 0e d0 00 00 12 34 00 02 1f 08 00 08 00 00 00")
E4 = h("03 00 00 13 0e d0 00 00 12 34 00 03 00 08 00 05 00 00 00")
E5 = h("03 00 00 0b 06 d0 00 00 12 34 00")
E9A = h("15 03 03 00 02 02 28")
E9B = h("15 03 01 00 02 02 46")


def rust_byte_array(path, name):
    """The bytes of `const NAME: &[u8] = &[ ... ];` in a Rust source file."""
    src = open(os.path.join(ROOT, path)).read()
    m = re.search(r"const " + name + r": &\[u8\] = &\[(.*?)\];", src, re.S)
    if not m:
        return b""
    body = re.sub(r"//[^\n]*", "", m.group(1))
    return bytes(int(x, 16) for x in re.findall(r"0x([0-9a-fA-F]{2})", body))


def pcap_streams():
    """{(file, stream): [(c2s?, payload), ...]} from every capture, retransmissions dropped."""
    streams = defaultdict(list)
    for pcap in sorted(glob.glob(os.path.join(ROOT, "tests", "corpus", "*.pcap*"))):
        out = subprocess.run(
            ["tshark", "-r", pcap, "-Y", "tcp.len>0 && !tcp.analysis.retransmission",
             "-T", "fields", "-e", "tcp.stream", "-e", "tcp.dstport", "-e", "tcp.payload"],
            capture_output=True, text=True).stdout
        for line in out.splitlines():
            parts = line.split("\t")
            if len(parts) != 3 or not parts[2]:
                continue
            streams[(pcap, parts[0])].append((parts[1] == RDP_PORT, bytes.fromhex(parts[2])))
    return streams


def session_ops(segments, config=0x06):
    """Encodes segments as the `session` target's byte-code (fuzz/src/lib.rs)."""
    out = bytearray([config])
    for c2s, payload in segments:
        for i in range(0, len(payload), 0xFFFF):
            chunk = payload[i:i + 0xFFFF]
            out += bytes([0x3F if c2s else 0x7F]) + len(chunk).to_bytes(2, "big") + chunk
    return bytes(out)


def tls_records(stream):
    """(content type, payload) of each whole record of a TLS stream."""
    i = 0
    while i + 5 <= len(stream):
        ln = int.from_bytes(stream[i + 3:i + 5], "big")
        yield stream[i], stream[i + 5:i + 5 + ln]
        i += 5 + ln


def certificates(stream):
    """DER certificates of the TLS 1.2 Certificate messages of a server stream."""
    hs = b"".join(p for t, p in tls_records(stream) if t == 22)
    i = 0
    while i + 4 <= len(hs):
        t, ln = hs[i], int.from_bytes(hs[i + 1:i + 4], "big")
        body = hs[i + 4:i + 4 + ln]
        if t == 11:
            j = 3
            while j + 3 <= len(body):
                cl = int.from_bytes(body[j:j + 3], "big")
                yield body[j + 3:j + 3 + cl]
                j += 3 + cl
        i += 4 + ln


def main():
    for e in (E1, E2, E3, E4, E5):
        put("x224", e)
        put("session", session_ops([(True, E1), (False, e)]))
    put("x224", rust_byte_array("src/wire/tpkt.rs", "SPEC_CR"))
    for name in ("E6", "E8", "E9A", "E9B"):
        put("tls_records", rust_byte_array("src/wire/tls.rs", name))
    put("tls_records", E9A)
    put("tls_records", E9B)

    for path in sorted(glob.glob(os.path.join(ROOT, "tests", "fixtures", "tls", "*.bin"))):
        data = open(path, "rb").read()
        put("tls_records", data)
        for rec_type, payload in tls_records(data):
            put("tls_records", bytes([rec_type, 3, 3]) + len(payload).to_bytes(2, "big") + payload)
        for der in certificates(data):
            put("x509", der)
    for case in ("ndpi_rdp", "zeek_no_cookie"):
        c = open(os.path.join(ROOT, "tests", "fixtures", "tls", case + ".client.bin"), "rb").read()
        s = open(os.path.join(ROOT, "tests", "fixtures", "tls", case + ".server.bin"), "rb").read()
        put("session", session_ops([(True, E1), (False, E3), (True, c), (False, s)]))

    for path in sorted(glob.glob(os.path.join(ROOT, "tests", "fixtures", "mcs", "*.bin"))):
        data = open(path, "rb").read()
        put("mcs", data)
        put("mcs", data[7:])
        put("x224", data)

    for path in sorted(glob.glob(os.path.join(ROOT, "tests", "fixtures", "x509", "*.pem"))):
        pem = open(path).read()
        for b64 in re.findall(r"-----BEGIN CERTIFICATE-----(.*?)-----END CERTIFICATE-----", pem, re.S):
            put("x509", base64.b64decode("".join(b64.split())))

    # capture: byte 0 = read size (0 = 64 KiB, else 1..255 bytes), then the file.
    for pcap in sorted(glob.glob(os.path.join(ROOT, "tests", "corpus", "*.pcap*"))):
        data = open(pcap, "rb").read()
        if len(data) <= 16 * 1024:
            put("capture", b"\x00" + data)
            put("capture", b"\x07" + data)

    for (_, _), segs in sorted(pcap_streams().items()):
        put("session", session_ops(segs[:64]))
        for c2s, payload in segs[:8]:
            if payload[:2] == b"\x03\x00":
                put("x224", payload[:512])
                if b"\x7f\x65" in payload[:16] or b"\x7f\x66" in payload[:16]:
                    put("mcs", payload)
                    put("mcs", payload[7:])
            elif payload[:1] in (b"\x14", b"\x15", b"\x16", b"\x17"):
                put("tls_records", payload)


if __name__ == "__main__":
    main()
