//! `--redact`: personal names and addresses replaced consistently in every file of a bundle.
//!
//! A [`RedactorBuilder`] collects what is personal (the cookie's user name, host and domain
//! names, NTLM names, certificate names, IP addresses); [`RedactorBuilder::build`] gives each a
//! token (`user-1`, `host-2`, `domain-1`, `org-1`, `token-1`, `10.255.0.1`) and compiles the
//! replacement rules. The same input always gets the same token (names compare ASCII
//! case-insensitively), in every file.
//!
//! Two ways to apply them:
//! - [`Redactor::text`] for the text files: names become their readable token (`host-1`), IPs
//!   their token address; names match on word boundaries only, so a host called `rdp` does not
//!   turn `rdpdiag` into `host-1diag`;
//! - [`Redactor::bytes`] for captured payload and certificates: every replacement has exactly the
//!   length of what it replaces (the token padded with `-`, or cut), so TPKT, TLS and DER lengths
//!   stay valid. Names are looked for as UTF-8, UTF-16LE (GCC, NTLM) and UTF-16BE (BMPString).
//!
//! Loopback and unspecified addresses are not personal and are kept.

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::collections::BTreeMap;

/// What a name is, which picks its token's prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum NameKind {
    /// A user name (cookie, NTLM user, e-mail local part).
    User,
    /// A computer name (NetBIOS name, first DNS label, SNI, certificate CN).
    Host,
    /// A DNS or NetBIOS domain.
    Domain,
    /// An organisation or unit name from a certificate.
    Org,
    /// An opaque identifier (routing token).
    Token,
}

impl NameKind {
    fn prefix(self) -> &'static str {
        match self {
            NameKind::User => "user",
            NameKind::Host => "host",
            NameKind::Domain => "domain",
            NameKind::Org => "org",
            NameKind::Token => "token",
        }
    }
}

/// The padding byte of same-length tokens: allowed in DNS names, PrintableString and file names.
const PAD: u8 = b'-';

/// Names shorter than this are ignored: replacing one- or two-letter strings would shred the
/// rest of the text and bytes for no privacy gain.
const MIN_NAME_LEN: usize = 2;

/// Below this many bytes, a payload match must not touch ASCII letters or digits on either side
/// (a short name inside a longer word is a coincidence, not the name).
const PAYLOAD_BOUNDARY_BELOW: usize = 6;

/// Collects the values to redact.
#[derive(Debug, Default, Clone)]
pub struct RedactorBuilder {
    /// Lower-cased name → (kind, original spelling, its token text).
    names: BTreeMap<String, (NameKind, String, String)>,
    counters: BTreeMap<NameKind, u32>,
    ips: BTreeMap<IpAddr, IpAddr>,
    v4_next: u32,
    v6_next: u16,
}

impl RedactorBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a personal value of any shape: an IP address, a `DOMAIN\user`, a `user@domain`,
    /// a DNS name (whose first label and parent domain are registered too), or a plain name.
    /// Returns the token it maps to (the value itself when it is not redacted).
    pub fn add(&mut self, kind: NameKind, value: &str) -> String {
        let value = value.trim().trim_end_matches('\0');
        if let Some(ip) = parse_ip(value) {
            return self.add_ip(ip).to_string();
        }
        if value.chars().count() < MIN_NAME_LEN {
            return value.to_owned();
        }
        if let Some((domain, user)) = value.split_once('\\') {
            let d = self.add(NameKind::Domain, domain);
            let u = self.add(NameKind::User, user);
            return self.insert(kind, value, format!("{d}\\{u}"));
        }
        if let Some((user, domain)) = value.split_once('@')
            && !user.is_empty()
            && !domain.is_empty()
        {
            let u = self.add(NameKind::User, user);
            let d = self.add(NameKind::Domain, domain);
            return self.insert(kind, value, format!("{u}@{d}"));
        }
        if let Some(rest) = value.strip_prefix("*.") {
            let d = self.add(NameKind::Domain, rest);
            return self.insert(kind, value, format!("*.{d}"));
        }
        if kind == NameKind::Host
            && let Some((label, parent)) = value.split_once('.')
            && !label.is_empty()
            && parent.contains(|c: char| c.is_alphanumeric())
        {
            // A DNS name: the first label is the computer name (it also appears alone, as the
            // NetBIOS name); the parent domain is one token. The token keeps the structure,
            // `host-1.domain-1`. Labels of the domain are not registered alone: `one` of
            // `one.example.gov` would shred every sentence.
            let d = self.insert_numbered(NameKind::Domain, parent);
            let l = self.insert_numbered(NameKind::Host, label);
            return self.insert(kind, value, format!("{l}.{d}"));
        }
        self.insert_numbered(kind, value)
    }

    /// Registers an address; returns its token (the address itself for loopback/unspecified).
    pub fn add_ip(&mut self, ip: IpAddr) -> IpAddr {
        let ip = canonical_ip(ip);
        if !is_personal(ip) {
            return ip;
        }
        if let Some(t) = self.ips.get(&ip) {
            return *t;
        }
        let token = match ip {
            IpAddr::V4(_) => {
                self.v4_next = self.v4_next.saturating_add(1);
                // 10.255.0.1, 10.255.0.2, ... 10.255.0.254, 10.255.1.1 ...
                let n = self.v4_next.saturating_sub(1);
                let hi = u8::try_from(n / 254).unwrap_or(u8::MAX);
                let lo = u8::try_from(n % 254 + 1).unwrap_or(u8::MAX);
                IpAddr::V4(Ipv4Addr::new(10, 255, hi, lo))
            }
            IpAddr::V6(_) => {
                self.v6_next = self.v6_next.saturating_add(1);
                IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0xff, self.v6_next))
            }
        };
        self.ips.insert(ip, token);
        token
    }

    fn insert_numbered(&mut self, kind: NameKind, value: &str) -> String {
        let key = value.to_ascii_lowercase();
        if let Some((_, _, token)) = self.names.get(&key) {
            return token.clone();
        }
        let n = self.counters.entry(kind).or_insert(0);
        *n = n.saturating_add(1);
        let token = format!("{}-{n}", kind.prefix());
        self.names
            .insert(key, (kind, value.to_owned(), token.clone()));
        token
    }

    fn insert(&mut self, kind: NameKind, value: &str, token: String) -> String {
        let key = value.to_ascii_lowercase();
        if let Some((_, _, existing)) = self.names.get(&key) {
            return existing.clone();
        }
        self.names
            .insert(key, (kind, value.to_owned(), token.clone()));
        token
    }

    /// Compiles the rules (longest needle first, so `rds01.corp.example` wins over `rds01`).
    pub fn build(self) -> Redactor {
        let mut text = Vec::new();
        let mut bytes = Vec::new();
        for (original, token) in self.names.values().map(|(_, o, t)| (o, t)) {
            let same_len = same_len_name(token, original.len());
            text.push(Rule::name(original.as_bytes(), token.as_bytes()));
            // The hex form of the UTF-8 bytes, as undecodable samples are shown in notes.
            text.push(Rule::raw(
                hex::encode(original.as_bytes()).as_bytes(),
                hex::encode(&same_len).as_bytes(),
            ));
            bytes.push(Rule::name(original.as_bytes(), &same_len));
            let units = original.encode_utf16().count();
            let token16 = same_len_name(token, units);
            let token16 = String::from_utf8_lossy(&token16).into_owned();
            bytes.push(Rule::raw(&utf16le(original), &utf16le(&token16)));
            bytes.push(Rule::raw(&utf16be(original), &utf16be(&token16)));
            text.push(Rule::raw(
                hex::encode(utf16le(original)).as_bytes(),
                hex::encode(utf16le(&token16)).as_bytes(),
            ));
        }
        for (ip, token) in &self.ips {
            let original = ip.to_string();
            let token_text = token.to_string();
            text.push(Rule::ip(&original, token_text.as_bytes()));
            let same = same_len_ip(*token, &original);
            bytes.push(Rule::ip(&original, same.as_bytes()));
            bytes.push(Rule::raw(&utf16le(&original), &utf16le(&same)));
        }
        Redactor {
            enabled: true,
            text: RuleSet::new(text),
            bytes: RuleSet::new(bytes),
            ips: self.ips,
            names: self.names.into_values().collect(),
        }
    }
}

/// Compiled rules; [`Redactor::none`] passes everything through.
#[derive(Debug, Clone)]
pub struct Redactor {
    enabled: bool,
    text: RuleSet,
    bytes: RuleSet,
    ips: BTreeMap<IpAddr, IpAddr>,
    names: Vec<(NameKind, String, String)>,
}

impl Redactor {
    /// Redacts nothing.
    pub fn none() -> Self {
        Self {
            enabled: false,
            text: RuleSet::new(Vec::new()),
            bytes: RuleSet::new(Vec::new()),
            ips: BTreeMap::new(),
            names: Vec::new(),
        }
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Readable replacement in text (JSON, reports): names on word boundaries.
    pub fn text(&self, s: &str) -> String {
        if !self.enabled {
            return s.to_owned();
        }
        let out = self.text.apply(s.as_bytes(), true);
        // Rules replace whole UTF-8 sequences with ASCII, so the result stays UTF-8.
        String::from_utf8(out)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
    }

    /// Same-length replacement in binary data (payload, DER).
    pub fn bytes(&self, b: &[u8]) -> Vec<u8> {
        if !self.enabled {
            return b.to_vec();
        }
        self.bytes.apply(b, false)
    }

    /// The token of an address (the address itself when not redacted).
    pub fn ip(&self, ip: IpAddr) -> IpAddr {
        let ip = canonical_ip(ip);
        self.ips.get(&ip).copied().unwrap_or(ip)
    }

    /// The tokens given, as (kind, original, token), for the test of a bundle.
    pub fn names(&self) -> &[(NameKind, String, String)] {
        &self.names
    }

    /// The address tokens given, original → token.
    pub fn addresses(&self) -> impl Iterator<Item = (IpAddr, IpAddr)> + '_ {
        self.ips.iter().map(|(a, b)| (*a, *b))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Boundary {
    None,
    /// A name: no `[A-Za-z0-9_-]` right before or after (text), or no ASCII alphanumeric for
    /// short payload needles.
    Word,
    /// An IPv4 address: no digit, or dot and digit, continuing it (`:port` is fine).
    Ip4,
    /// An IPv6 address: no hex digit or colon continuing it.
    Ip6,
}

#[derive(Debug, Clone)]
struct Rule {
    /// Lower-cased when `fold`.
    needle: Vec<u8>,
    replacement: Vec<u8>,
    fold: bool,
    boundary: Boundary,
}

impl Rule {
    /// A name: ASCII case-insensitive, on word boundaries.
    fn name(needle: &[u8], replacement: &[u8]) -> Rule {
        Rule {
            needle: needle.to_ascii_lowercase(),
            replacement: replacement.to_vec(),
            fold: true,
            boundary: Boundary::Word,
        }
    }

    /// Hex and UTF-16 forms: ASCII case-insensitive, anywhere.
    fn raw(needle: &[u8], replacement: &[u8]) -> Rule {
        Rule {
            needle: needle.to_ascii_lowercase(),
            replacement: replacement.to_vec(),
            fold: true,
            boundary: Boundary::None,
        }
    }

    fn ip(needle: &str, replacement: &[u8]) -> Rule {
        Rule {
            needle: needle.to_ascii_lowercase().into_bytes(),
            replacement: replacement.to_vec(),
            fold: true,
            boundary: if needle.contains(':') {
                Boundary::Ip6
            } else {
                Boundary::Ip4
            },
        }
    }

    fn matches_at(&self, hay: &[u8], i: usize) -> bool {
        let Some(window) = hay.get(i..i.saturating_add(self.needle.len())) else {
            return false;
        };
        if self.fold {
            window.eq_ignore_ascii_case(&self.needle)
        } else {
            window == self.needle.as_slice()
        }
    }
}

#[derive(Debug, Clone)]
struct RuleSet {
    rules: Vec<Rule>,
    /// Rule indexes by lower-cased first needle byte, longest needle first.
    by_first: BTreeMap<u8, Vec<usize>>,
}

impl RuleSet {
    fn new(mut rules: Vec<Rule>) -> Self {
        rules.retain(|r| !r.needle.is_empty());
        rules.sort_by_key(|r| std::cmp::Reverse(r.needle.len()));
        let mut by_first: BTreeMap<u8, Vec<usize>> = BTreeMap::new();
        for (i, r) in rules.iter().enumerate() {
            if let Some(&b) = r.needle.first() {
                by_first.entry(b.to_ascii_lowercase()).or_default().push(i);
            }
        }
        Self { rules, by_first }
    }

    fn apply(&self, hay: &[u8], text: bool) -> Vec<u8> {
        let mut out = Vec::with_capacity(hay.len());
        let mut i = 0usize;
        while let Some(&b) = hay.get(i) {
            let hit = self.by_first.get(&b.to_ascii_lowercase()).and_then(|idx| {
                idx.iter()
                    .filter_map(|&k| self.rules.get(k))
                    .find(|r| r.matches_at(hay, i) && bounded(r, hay, i, text))
            });
            match hit {
                Some(r) => {
                    out.extend_from_slice(&r.replacement);
                    i = i.saturating_add(r.needle.len());
                }
                None => {
                    out.push(b);
                    i = i.saturating_add(1);
                }
            }
        }
        out
    }
}

fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-'
}

/// Does the match of `r` at `i` stand on its own?
fn bounded(r: &Rule, hay: &[u8], i: usize, text: bool) -> bool {
    let before = i.checked_sub(1).and_then(|j| hay.get(j)).copied();
    let end = i.saturating_add(r.needle.len());
    let after = hay.get(end).copied();
    let after2 = hay.get(end.saturating_add(1)).copied();
    match r.boundary {
        Boundary::None => true,
        Boundary::Word if text => !before.is_some_and(is_word) && !after.is_some_and(is_word),
        Boundary::Word => {
            r.needle.len() >= PAYLOAD_BOUNDARY_BELOW
                || (!before.is_some_and(|b| b.is_ascii_alphanumeric())
                    && !after.is_some_and(|b| b.is_ascii_alphanumeric()))
        }
        Boundary::Ip4 => {
            // `10.0.0.5` inside `110.0.0.5`, `10.0.0.55` or `10.0.0.5.1`; a sentence's final
            // period is fine.
            let before_continues = before.is_some_and(|b| b.is_ascii_digit())
                || (before == Some(b'.')
                    && i.checked_sub(2)
                        .and_then(|j| hay.get(j))
                        .is_some_and(u8::is_ascii_digit));
            let after_continues = after.is_some_and(|b| b.is_ascii_digit())
                || (after == Some(b'.') && after2.is_some_and(|b| b.is_ascii_digit()));
            !before_continues && !after_continues
        }
        Boundary::Ip6 => {
            let continues = |b: Option<u8>| b.is_some_and(|b| b.is_ascii_hexdigit() || b == b':');
            !continues(before) && !continues(after)
        }
    }
}

/// The token padded with [`PAD`] (or cut) to exactly `len` bytes; short lengths get the
/// compact form (`h1` for `host-1`).
fn same_len_name(token: &str, len: usize) -> Vec<u8> {
    let bytes = token.as_bytes();
    let source: Vec<u8> = if bytes.len() <= len {
        bytes.to_vec()
    } else {
        // `host-12` → `h12`, `host-1.domain-2` → `h1.d2`.
        let mut compact = Vec::new();
        let mut word_start = true;
        for &b in bytes {
            if b.is_ascii_alphabetic() {
                if word_start {
                    compact.push(b);
                }
                word_start = false;
            } else if b == b'-' {
            } else {
                compact.push(b);
                word_start = !b.is_ascii_digit();
            }
        }
        compact
    };
    let mut out: Vec<u8> = source.into_iter().take(len).collect();
    out.resize(len, PAD);
    out
}

/// The address token written with exactly as many characters as `original` (zero-padded octets
/// or groups), or, when the token cannot be that short, `original` with every digit zeroed.
fn same_len_ip(token: IpAddr, original: &str) -> String {
    let len = original.len();
    let canonical = token.to_string();
    if canonical.len() == len {
        return canonical;
    }
    match token {
        IpAddr::V4(v4) if canonical.len() < len => {
            let mut octets: Vec<String> = v4.octets().iter().map(u8::to_string).collect();
            // Widen the last octets first: 10.255.0.1 → 10.255.0.001 → 10.255.000.001 ...
            let mut missing = len.saturating_sub(canonical.len());
            for o in octets.iter_mut().rev() {
                while missing > 0 && o.len() < 3 {
                    o.insert(0, '0');
                    missing -= 1;
                }
            }
            if missing == 0 {
                return octets.join(".");
            }
        }
        IpAddr::V6(v6) => {
            let full: Vec<String> = v6.segments().iter().map(|s| format!("{s:x}")).collect();
            let minimal = full.join(":");
            if minimal.len() <= len {
                let mut groups = full;
                let mut missing = len.saturating_sub(minimal.len());
                for g in groups.iter_mut().rev() {
                    while missing > 0 && g.len() < 4 {
                        g.insert(0, '0');
                        missing -= 1;
                    }
                }
                if missing == 0 {
                    return groups.join(":");
                }
            }
        }
        IpAddr::V4(_) => {}
    }
    original
        .chars()
        .map(|c| if c.is_ascii_hexdigit() { '0' } else { c })
        .collect()
}

fn utf16le(s: &str) -> Vec<u8> {
    s.encode_utf16().flat_map(u16::to_le_bytes).collect()
}

fn utf16be(s: &str) -> Vec<u8> {
    s.encode_utf16().flat_map(u16::to_be_bytes).collect()
}

fn parse_ip(s: &str) -> Option<IpAddr> {
    let s = s
        .strip_prefix('[')
        .and_then(|r| r.strip_suffix(']'))
        .unwrap_or(s);
    s.parse::<IpAddr>().ok()
}

/// An IPv4-mapped IPv6 address is the IPv4 address.
fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}

fn is_personal(ip: IpAddr) -> bool {
    !(ip.is_loopback() || ip.is_unspecified())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redactor() -> Redactor {
        let mut b = RedactorBuilder::new();
        b.add(NameKind::User, "alice.smith");
        b.add(NameKind::Host, "RDS01.corp.example.com");
        b.add(NameKind::Host, "rds01");
        b.add(NameKind::Host, "WKS-7");
        b.add(NameKind::Host, "192.168.2.142");
        b.add_ip("2001:db8::5".parse().unwrap());
        b.add_ip("127.0.0.1".parse().unwrap());
        b.build()
    }

    #[test]
    fn same_input_same_token() {
        let mut b = RedactorBuilder::new();
        let t1 = b.add(NameKind::User, "alice");
        let t2 = b.add(NameKind::User, "ALICE");
        let t3 = b.add(NameKind::User, "bob");
        assert_eq!(t1, "user-1");
        assert_eq!(t1, t2);
        assert_eq!(t3, "user-2");
        let ip1 = b.add_ip("192.0.2.7".parse().unwrap());
        let ip2 = b.add_ip("::ffff:192.0.2.7".parse().unwrap());
        assert_eq!(ip1, ip2);
        assert_eq!(ip1.to_string(), "10.255.0.1");
        assert_eq!(
            b.add_ip("198.51.100.1".parse().unwrap()).to_string(),
            "10.255.0.2"
        );
        // Loopback is not personal.
        assert_eq!(
            b.add_ip("127.0.0.1".parse().unwrap()).to_string(),
            "127.0.0.1"
        );
    }

    #[test]
    fn dns_names_keep_their_structure() {
        let mut b = RedactorBuilder::new();
        assert_eq!(
            b.add(NameKind::Host, "rds01.corp.example"),
            "host-1.domain-1"
        );
        assert_eq!(b.add(NameKind::Host, "rds01"), "host-1");
        assert_eq!(b.add(NameKind::Domain, "CORP.EXAMPLE"), "domain-1");
        assert_eq!(b.add(NameKind::User, "CORP\\alice"), "domain-2\\user-1");
        assert_eq!(
            b.add(NameKind::User, "alice@corp.example"),
            "user-1@domain-1"
        );
        assert_eq!(b.add(NameKind::Host, "*.corp.example"), "*.domain-1");
    }

    #[test]
    fn text_replaces_on_word_boundaries() {
        let r = redactor();
        let s = "cookie alice.smith; host RDS01.corp.example.com (rds01), rdpdiag, wks-7x, \
                 sni 192.168.2.142, 192.168.2.1420, [2001:db8::5]:3389, 127.0.0.1, \
                 192.168.2.142:3389.";
        let out = r.text(s);
        assert_eq!(
            out,
            "cookie user-1; host host-1.domain-1 (host-1), rdpdiag, wks-7x, \
             sni 10.255.0.1, 192.168.2.1420, [fd00::ff:1]:3389, 127.0.0.1, \
             10.255.0.1:3389."
        );
        // Twice gives the same.
        assert_eq!(r.text(s), out);
    }

    #[test]
    fn bytes_keep_lengths_in_every_encoding() {
        let r = redactor();
        let mut payload = b"Cookie: mstshash=alice.smith\r\n".to_vec();
        payload.extend(utf16le("WKS-7"));
        payload.extend(utf16be("rds01"));
        payload.extend(b"\x0d192.168.2.142");
        let out = r.bytes(&payload);
        assert_eq!(out.len(), payload.len());
        let text = String::from_utf8_lossy(&out);
        assert!(
            text.starts_with("Cookie: mstshash=user-1-----\r\n"),
            "{text}"
        );
        assert!(out.windows(10).any(|w| w == utf16le("h2---")));
        assert!(out.windows(10).any(|w| w == utf16be("h1---")));
        assert!(text.ends_with("10.255.00.001"), "{text}");
        for needle in [
            b"alice".to_vec(),
            utf16le("WKS-7"),
            utf16be("rds01"),
            b"192.168".to_vec(),
        ] {
            assert!(!out.windows(needle.len()).any(|w| w == needle.as_slice()));
        }
    }

    #[test]
    fn same_length_forms() {
        assert_eq!(same_len_name("user-1", 11), b"user-1-----");
        assert_eq!(same_len_name("user-1", 3), b"u1-");
        assert_eq!(same_len_name("host-1.domain-2", 6), b"h1.d2-");
        assert_eq!(same_len_name("user-1", 1), b"u");
        let t: IpAddr = "10.255.0.1".parse().unwrap();
        assert_eq!(same_len_ip(t, "192.168.2.142"), "10.255.00.001");
        assert_eq!(same_len_ip(t, "10.0.0.12"), "00.0.0.00");
        assert_eq!(same_len_ip(t, "255.255.255.255"), "010.255.000.001");
        let t6: IpAddr = "fd00::ff:1".parse().unwrap();
        let long = "2001:db8:1234:5678:9abc:def0:1234:5678";
        assert_eq!(same_len_ip(t6, long).len(), long.len());
        assert_eq!(same_len_ip(t6, "2001:db8::5"), "0000:000::0");
    }

    #[test]
    fn disabled_passes_through() {
        let r = Redactor::none();
        assert_eq!(r.text("alice 10.1.2.3"), "alice 10.1.2.3");
        assert_eq!(r.bytes(b"alice"), b"alice");
    }
}
