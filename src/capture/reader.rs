//! Capture file reader: bytes in, packets out.
//!
//! Push-based and sans-IO: the caller (the CLI, a test) hands over the file's bytes in chunks of
//! any size with [`CaptureReader::push`], says [`CaptureReader::finish`] at the end, and pulls
//! [`Record`]s with [`CaptureReader::next_record`] until it answers `Ok(None)`. Nothing here opens
//! a file.
//!
//! Formats are recognised by their magic number, never by the file name:
//!
//! | first bytes            | format                                                      |
//! |------------------------|-------------------------------------------------------------|
//! | `d4 c3 b2 a1`          | pcap, little-endian, microseconds                           |
//! | `a1 b2 c3 d4`          | pcap, big-endian, microseconds                              |
//! | `4d 3c b2 a1`          | pcap, little-endian, nanoseconds                            |
//! | `a1 b2 3c 4d`          | pcap, big-endian, nanoseconds                               |
//! | `0a 0d 0d 0a`          | pcapng (each section says its own byte order)               |
//! | `1f 8b`                | gzip: decompressed on the fly, then one of the above        |
//! | `GMBU`                 | Microsoft Network Monitor 2.x: not supported, say how to convert |
//!
//! pcap-parser decodes the blocks and records; this module adds the streaming buffer with a cap
//! on block sizes (bounded memory whatever the file claims), per-interface link types and
//! timestamp resolutions, and its own timestamp arithmetic (pcap-parser's `build_ts` overflows
//! on hostile `if_tsoffset` values and ignores binary `if_tsresol`).

use std::io::Write as _;

use pcap_parser::OptionCode;
use pcap_parser::pcapng::Block;
use serde::Serialize;

/// pcapng Obsolete Packet Block (pcapng draft, "Packet Block", type 2).
const OPB_MAGIC: u32 = 0x0000_0002;
/// pcapng Section Header Block type, the same in both byte orders.
const SHB_MAGIC: u32 = 0x0A0D_0D0A;
/// Byte-order magic of a pcapng section header, as read little-endian.
const BOM_LE: u32 = 0x1A2B_3C4D;
/// Decryption Secrets Block secrets type "TLSK": a TLS key log (RFC 9850 format).
const DSB_TLS_KEYLOG: u32 = 0x544c_534b;

/// Knobs of the reader.
#[derive(Debug, Clone)]
pub struct ReaderConfig {
    /// Largest pcap record or pcapng block accepted. A larger length field is treated as
    /// corruption rather than as a reason to buffer that much.
    pub max_block: usize,
    /// Largest total size of decompressed gzip input.
    pub max_decompressed: u64,
}

impl Default for ReaderConfig {
    fn default() -> Self {
        Self {
            // libpcap's MAXIMUM_SNAPLEN is 262144; pcapng blocks with many options or big DSBs
            // are larger, but nothing legitimate comes near 16 MiB.
            max_block: 16 * 1024 * 1024,
            max_decompressed: 8 * 1024 * 1024 * 1024,
        }
    }
}

/// What the file turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "format", rename_all = "snake_case")]
pub enum CaptureFormat {
    Pcap { big_endian: bool, nanoseconds: bool },
    Pcapng,
}

impl std::fmt::Display for CaptureFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CaptureFormat::Pcap {
                big_endian,
                nanoseconds,
            } => write!(
                f,
                "pcap ({}-endian, {})",
                if *big_endian { "big" } else { "little" },
                if *nanoseconds {
                    "nanoseconds"
                } else {
                    "microseconds"
                }
            ),
            CaptureFormat::Pcapng => f.write_str("pcapng"),
        }
    }
}

/// A link-layer type (tcpdump.org LINKTYPE_* registry).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct LinkType(pub u32);

impl LinkType {
    pub const NULL: LinkType = LinkType(0);
    pub const ETHERNET: LinkType = LinkType(1);
    /// DLT_RAW as numbered on most BSDs.
    pub const RAW_BSD: LinkType = LinkType(12);
    /// DLT_RAW as numbered on OpenBSD.
    pub const RAW_OPENBSD: LinkType = LinkType(14);
    pub const RAW: LinkType = LinkType(101);
    pub const LOOP: LinkType = LinkType(108);
    pub const LINUX_SLL: LinkType = LinkType(113);
    pub const IPV4: LinkType = LinkType(228);
    pub const IPV6: LinkType = LinkType(229);
    pub const LINUX_SLL2: LinkType = LinkType(276);

    pub fn name(self) -> Option<&'static str> {
        Some(match self {
            LinkType::NULL => "NULL/loopback",
            LinkType::ETHERNET => "Ethernet",
            LinkType::RAW_BSD | LinkType::RAW_OPENBSD | LinkType::RAW => "raw IP",
            LinkType::LOOP => "OpenBSD loopback",
            LinkType::LINUX_SLL => "Linux cooked (SLL)",
            LinkType::IPV4 => "raw IPv4",
            LinkType::IPV6 => "raw IPv6",
            LinkType::LINUX_SLL2 => "Linux cooked v2 (SLL2)",
            LinkType(105) => "IEEE 802.11",
            LinkType(127) => "IEEE 802.11 radiotap",
            _ => return None,
        })
    }
}

impl std::fmt::Display for LinkType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.name() {
            Some(n) => write!(f, "{n} ({})", self.0),
            None => write!(f, "link type {}", self.0),
        }
    }
}

/// One captured packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet<'a> {
    /// Frame number, from 1, as Wireshark counts them.
    pub frame: u64,
    /// Capture time, nanoseconds since the Unix epoch (saturating).
    pub ts_ns: i64,
    pub link: LinkType,
    /// pcapng interface id (0 for pcap).
    pub interface: u32,
    /// Length of the packet on the wire; more than `data.len()` when the capture truncated it.
    pub orig_len: u32,
    pub data: &'a [u8],
}

impl Packet<'_> {
    /// True when the capture kept fewer bytes than the packet had (snap length).
    pub fn truncated(&self) -> bool {
        usize::try_from(self.orig_len).is_ok_and(|o| o > self.data.len())
    }
}

/// What the reader yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record<'a> {
    Packet(Packet<'a>),
    /// A pcapng Decryption Secrets Block of type TLS key log: the key-log text.
    TlsKeyLog(&'a [u8]),
    /// Something the analysis should mention (a skipped block, a damaged tail).
    Warning(String),
}

/// Why a capture cannot be read (further).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ReadError {
    #[error("not a pcap or pcapng file (first bytes {magic}): {hint}")]
    NotACapture { magic: String, hint: String },
    #[error("{what} is not supported: {hint}")]
    Unsupported { what: String, hint: String },
    #[error("{what} at file offset {offset}: {detail}")]
    Malformed {
        offset: u64,
        what: &'static str,
        detail: String,
    },
    #[error("gzip input is corrupt after {consumed} compressed bytes: {detail}")]
    Gzip { consumed: u64, detail: String },
    #[error("decompressed input exceeds the cap of {cap} bytes")]
    TooLarge { cap: u64 },
    #[error("the file is empty or shorter than a capture header ({len} bytes)")]
    TooShort { len: u64 },
}

/// Explains what to do with a file that is not pcap/pcapng, from its first bytes.
fn not_a_capture(head: &[u8]) -> ReadError {
    let magic = hex::encode(head.get(..8).unwrap_or(head));
    let hint = if head.starts_with(b"GMBU") || head.starts_with(b"RTSS") {
        return ReadError::Unsupported {
            what: "a Microsoft Network Monitor .cap file".into(),
            hint: "open it in Wireshark and save it as pcapng (File > Save As), or run \
                   `tshark -r FILE.cap -w FILE.pcapng`"
                .into(),
        };
    } else if head.starts_with(b"PK\x03\x04") {
        "a zip archive: a Message Analyzer .matp or a zipped capture; extract it, or save it from \
         Message Analyzer as .cap and convert that in Wireshark"
    } else if head.starts_with(b"snoop\0") {
        "a Solaris snoop file: convert it with `editcap -F pcapng FILE out.pcapng`"
    } else if looks_like_etl(head) {
        return ReadError::Unsupported {
            what: "a Windows ETL trace (pktmon or netsh trace)".into(),
            hint: "convert it first: `pktmon etl2pcap FILE.etl --out FILE.pcapng` (pktmon), or \
                   `etl2pcapng FILE.etl FILE.pcapng` (netsh trace; github.com/microsoft/etl2pcapng)"
                .into(),
        };
    } else {
        "rdpdiag reads pcap and pcapng (optionally gzip-compressed); Windows ETL traces need \
         `pktmon etl2pcap` or `etl2pcapng`, Network Monitor files a Wireshark \"Save As\" pcapng"
    };
    ReadError::NotACapture {
        magic,
        hint: hint.into(),
    }
}

/// An ETL file starts with a WMI_BUFFER_HEADER whose first field is the buffer size: a power
/// of two between 4 KiB and 16 MiB (64 KiB in practice), and a second u32 no larger.
fn looks_like_etl(head: &[u8]) -> bool {
    let (Some(size), Some(saved)) = (u32_at(head, 0, false), u32_at(head, 4, false)) else {
        return false;
    };
    size.is_power_of_two() && (4096..=16 * 1024 * 1024).contains(&size) && saved <= size
}

fn u32_at(buf: &[u8], off: usize, big_endian: bool) -> Option<u32> {
    let b: [u8; 4] = buf.get(off..off.checked_add(4)?)?.try_into().ok()?;
    Some(if big_endian {
        u32::from_be_bytes(b)
    } else {
        u32::from_le_bytes(b)
    })
}

fn u16_at(buf: &[u8], off: usize, big_endian: bool) -> Option<u16> {
    let b: [u8; 2] = buf.get(off..off.checked_add(2)?)?.try_into().ok()?;
    Some(if big_endian {
        u16::from_be_bytes(b)
    } else {
        u16::from_le_bytes(b)
    })
}

/// Timestamp resolution of a pcapng interface (`if_tsresol`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TsResol {
    /// 10^-n seconds.
    Decimal(u8),
    /// 2^-n seconds.
    Binary(u8),
}

impl TsResol {
    fn from_option(v: u8) -> Option<Self> {
        if v & 0x80 == 0 {
            (v <= 19).then_some(TsResol::Decimal(v))
        } else {
            let n = v & 0x7f;
            (n <= 63).then_some(TsResol::Binary(n))
        }
    }

    /// Converts a raw 64-bit timestamp to nanoseconds, saturating.
    fn to_ns(self, raw: u64) -> i128 {
        let raw = i128::from(raw);
        match self {
            TsResol::Decimal(n) if n <= 9 => raw * 10i128.pow(9 - u32::from(n)),
            TsResol::Decimal(n) => raw / 10i128.pow(u32::from(n) - 9),
            TsResol::Binary(n) => (raw * 1_000_000_000) >> n,
        }
    }
}

fn clamp_ns(ns: i128) -> i64 {
    i64::try_from(ns).unwrap_or(if ns < 0 { i64::MIN } else { i64::MAX })
}

#[derive(Debug, Clone)]
struct Interface {
    link: LinkType,
    resol: TsResol,
    offset_s: i64,
    snaplen: u32,
}

#[derive(Debug)]
enum State {
    /// Waiting for enough bytes to recognise the format.
    Sniff,
    Pcap {
        big_endian: bool,
        nanoseconds: bool,
        link: LinkType,
    },
    Pcapng {
        /// Byte order of the current section; `None` before the first SHB.
        big_endian: bool,
        interfaces: Vec<Interface>,
    },
    /// A fatal error was returned; nothing more comes out.
    Done,
}

/// Inflates gzip input a little at a time so that memory stays bounded.
struct Gunzip {
    dec: flate2::write::MultiGzDecoder<Vec<u8>>,
    /// Compressed bytes not yet handed to the decoder.
    pending: Vec<u8>,
    pending_pos: usize,
    consumed: u64,
    produced: u64,
    finished: bool,
}

impl std::fmt::Debug for Gunzip {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gunzip")
            .field("consumed", &self.consumed)
            .field("produced", &self.produced)
            .finish()
    }
}

/// Compressed bytes handed to the decoder per step: at most ~1 MiB of output (deflate's
/// maximum ratio is 1032:1).
const GZ_STEP: usize = 1024;
/// The reader inflates more input when fewer plain bytes than this are buffered.
const GZ_LOW_WATER: usize = 256 * 1024;

/// The streaming capture reader. See the module documentation.
#[derive(Debug)]
pub struct CaptureReader {
    cfg: ReaderConfig,
    /// Plain (decompressed) bytes; `buf[pos..]` is not parsed yet.
    buf: Vec<u8>,
    pos: usize,
    /// File offset (of the plain stream) of `buf[0]`.
    base: u64,
    gz: Option<Gunzip>,
    /// Bytes pushed before the format was known.
    sniffed_gzip: Option<bool>,
    eof: bool,
    state: State,
    format: Option<CaptureFormat>,
    gzip: bool,
    frame: u64,
    last_ts_ns: i64,
    /// Count of truncated packets and the largest snap length seen.
    packets: u64,
    /// A warning to yield before anything else (e.g. a damaged tail).
    pending_warning: Option<String>,
}

impl Default for CaptureReader {
    fn default() -> Self {
        Self::new(ReaderConfig::default())
    }
}

enum Step {
    /// One record was produced; `consume` bytes belong to it.
    Record(usize, RecordKind),
    /// A block was understood and skipped.
    Skip(usize),
    /// More bytes are needed.
    NeedMore,
}

/// A record, by range into the buffer, so that the borrow is taken after consuming.
enum RecordKind {
    Packet {
        ts_ns: i64,
        link: LinkType,
        interface: u32,
        orig_len: u32,
        start: usize,
        end: usize,
    },
    KeyLog {
        start: usize,
        end: usize,
    },
    Warning(String),
}

impl CaptureReader {
    pub fn new(cfg: ReaderConfig) -> Self {
        Self {
            cfg,
            buf: Vec::new(),
            pos: 0,
            base: 0,
            gz: None,
            sniffed_gzip: None,
            eof: false,
            state: State::Sniff,
            format: None,
            gzip: false,
            frame: 0,
            last_ts_ns: 0,
            packets: 0,
            pending_warning: None,
        }
    }

    /// The format, once recognised.
    pub fn format(&self) -> Option<CaptureFormat> {
        self.format
    }

    /// True when the input was gzip-compressed.
    pub fn gzip(&self) -> bool {
        self.gzip
    }

    /// Hands over the next bytes of the file.
    pub fn push(&mut self, chunk: &[u8]) {
        if self.sniffed_gzip.is_none() {
            // Decide gzip or not on the first two bytes (1f 8b, RFC 1952).
            self.buf.extend_from_slice(chunk);
            if self.buf.len() >= 2 || self.eof {
                self.decide_gzip();
            }
            return;
        }
        match &mut self.gz {
            Some(gz) => gz.pending.extend_from_slice(chunk),
            None => self.buf.extend_from_slice(chunk),
        }
    }

    /// No more bytes will come.
    pub fn finish(&mut self) {
        self.eof = true;
        if self.sniffed_gzip.is_none() {
            self.decide_gzip();
        }
    }

    fn decide_gzip(&mut self) {
        let is_gz = self.buf.starts_with(&[0x1f, 0x8b]);
        self.sniffed_gzip = Some(is_gz);
        if is_gz {
            self.gzip = true;
            let pending = std::mem::take(&mut self.buf);
            self.gz = Some(Gunzip {
                dec: flate2::write::MultiGzDecoder::new(Vec::new()),
                pending,
                pending_pos: 0,
                consumed: 0,
                produced: 0,
                finished: false,
            });
        }
    }

    /// Inflates one step of gzip input into `buf`. Returns true when it produced or consumed
    /// anything (so parsing should be retried).
    fn inflate_step(&mut self) -> Result<bool, ReadError> {
        let Some(gz) = &mut self.gz else {
            return Ok(false);
        };
        let avail = gz.pending.len().saturating_sub(gz.pending_pos);
        if avail == 0 {
            if self.eof && !gz.finished {
                gz.finished = true;
                gz.dec.try_finish().map_err(|e| ReadError::Gzip {
                    consumed: gz.consumed,
                    detail: e.to_string(),
                })?;
                let out = std::mem::take(gz.dec.get_mut());
                gz.produced = gz.produced.saturating_add(out.len() as u64);
                self.buf.extend_from_slice(&out);
                return Ok(!out.is_empty());
            }
            return Ok(false);
        }
        let end = gz.pending_pos.saturating_add(avail.min(GZ_STEP));
        let input = gz.pending.get(gz.pending_pos..end).unwrap_or_default();
        let n = gz.dec.write(input).map_err(|e| ReadError::Gzip {
            consumed: gz.consumed,
            detail: e.to_string(),
        })?;
        if n == 0 {
            // The decoder accepts nothing more: trailing bytes after the last member.
            gz.pending_pos = gz.pending.len();
            self.pending_warning = Some(format!(
                "ignored {avail} bytes after the end of the gzip data"
            ));
            return Ok(true);
        }
        gz.pending_pos = gz.pending_pos.saturating_add(n);
        gz.consumed = gz.consumed.saturating_add(n as u64);
        if gz.pending_pos > 64 * 1024 && gz.pending_pos * 2 > gz.pending.len() {
            gz.pending.drain(..gz.pending_pos);
            gz.pending_pos = 0;
        }
        let out = std::mem::take(gz.dec.get_mut());
        gz.produced = gz.produced.saturating_add(out.len() as u64);
        if gz.produced > self.cfg.max_decompressed {
            return Err(ReadError::TooLarge {
                cap: self.cfg.max_decompressed,
            });
        }
        self.buf.extend_from_slice(&out);
        Ok(true)
    }

    fn unparsed(&self) -> &[u8] {
        self.buf.get(self.pos..).unwrap_or_default()
    }

    fn offset(&self) -> u64 {
        self.base.saturating_add(self.pos as u64)
    }

    /// Drops parsed bytes from the front of the buffer once they dominate it.
    fn compact(&mut self) {
        if self.pos > 0 && (self.pos >= self.buf.len() || self.pos > 1024 * 1024) {
            self.buf.drain(..self.pos.min(self.buf.len()));
            self.base = self.base.saturating_add(self.pos as u64);
            self.pos = 0;
        }
    }

    fn fail(&mut self, e: ReadError) -> Result<Option<Record<'_>>, ReadError> {
        self.state = State::Done;
        Err(e)
    }

    /// The next record: `Ok(None)` when more input is needed (or, after [`finish`], when the
    /// file is done). After an `Err` the reader yields nothing more.
    ///
    /// [`finish`]: CaptureReader::finish
    pub fn next_record(&mut self) -> Result<Option<Record<'_>>, ReadError> {
        if let Some(w) = self.pending_warning.take() {
            // INVARIANT: the warning is owned; hand it out through the pending slot.
            return Ok(Some(Record::Warning(w)));
        }
        self.compact();
        loop {
            if self.sniffed_gzip.is_none() {
                return Ok(None);
            }
            if self.gz.is_some() && self.unparsed().len() < GZ_LOW_WATER {
                match self.inflate_step() {
                    Ok(_) => {}
                    Err(e) => return self.fail(e),
                }
            }
            let step = match self.step() {
                Ok(s) => s,
                Err(e) => return self.fail(e),
            };
            match step {
                Step::Record(len, kind) => {
                    let start_pos = self.pos;
                    self.pos = self.pos.saturating_add(len).min(self.buf.len());
                    return Ok(Some(self.materialise(start_pos, kind)));
                }
                Step::Skip(len) => {
                    self.pos = self.pos.saturating_add(len).min(self.buf.len());
                }
                Step::NeedMore => {
                    if self.gz.is_some() {
                        match self.inflate_step() {
                            Ok(true) => continue,
                            Ok(false) => {}
                            Err(e) => return self.fail(e),
                        }
                    }
                    if !self.eof {
                        return Ok(None);
                    }
                    return self.at_eof();
                }
            }
        }
    }

    fn materialise(&mut self, base: usize, kind: RecordKind) -> Record<'_> {
        match kind {
            RecordKind::Packet {
                ts_ns,
                link,
                interface,
                orig_len,
                start,
                end,
            } => {
                self.frame = self.frame.saturating_add(1);
                self.packets = self.packets.saturating_add(1);
                self.last_ts_ns = ts_ns;
                let data = self
                    .buf
                    .get(base.saturating_add(start)..base.saturating_add(end))
                    .unwrap_or_default();
                Record::Packet(Packet {
                    frame: self.frame,
                    ts_ns,
                    link,
                    interface,
                    orig_len,
                    data,
                })
            }
            RecordKind::KeyLog { start, end } => Record::TlsKeyLog(
                self.buf
                    .get(base.saturating_add(start)..base.saturating_add(end))
                    .unwrap_or_default(),
            ),
            RecordKind::Warning(w) => Record::Warning(w),
        }
    }

    /// End of input with unparsed bytes or an unrecognised file.
    fn at_eof(&mut self) -> Result<Option<Record<'_>>, ReadError> {
        let left = self.unparsed().len();
        match self.state {
            State::Sniff => {
                let head = self.unparsed().to_vec();
                if head.len() < 4 {
                    return self.fail(ReadError::TooShort {
                        len: head.len() as u64,
                    });
                }
                let e = not_a_capture(&head);
                self.fail(e)
            }
            State::Done => Ok(None),
            _ if left == 0 => {
                self.state = State::Done;
                Ok(None)
            }
            _ => {
                let offset = self.offset();
                self.pos = self.buf.len();
                self.state = State::Done;
                Ok(Some(Record::Warning(format!(
                    "the capture file ends in the middle of a record at offset {offset} \
                     ({left} bytes left over): the capture was cut short"
                ))))
            }
        }
    }

    /// Parses what it can at `pos`.
    fn step(&mut self) -> Result<Step, ReadError> {
        let offset = self.offset();
        let max_block = self.cfg.max_block;
        let last_ts = self.last_ts_ns;
        let eof = self.eof;
        let input = self.buf.get(self.pos..).unwrap_or_default();
        match &mut self.state {
            State::Done => Ok(Step::NeedMore),
            State::Sniff => {
                let Some(magic) = u32_at(input, 0, false) else {
                    return Ok(Step::NeedMore);
                };
                match magic {
                    0xa1b2_c3d4 | 0xa1b2_3c4d | 0xd4c3_b2a1 | 0x4d3c_b2a1 => {
                        if input.len() < 24 {
                            return if eof {
                                Err(ReadError::TooShort {
                                    len: input.len() as u64,
                                })
                            } else {
                                Ok(Step::NeedMore)
                            };
                        }
                        let (hdr, big_endian, nanoseconds) = match magic {
                            0xa1b2_c3d4 => (input, false, false),
                            0xa1b2_3c4d => (input, false, true),
                            0xd4c3_b2a1 => (input, true, false),
                            _ => (input, true, true),
                        };
                        // The link type's upper bits carry FCS information (pcap spec §4).
                        let link = u32_at(hdr, 20, big_endian).unwrap_or(1) & 0x03ff_ffff;
                        self.state = State::Pcap {
                            big_endian,
                            nanoseconds,
                            link: LinkType(link),
                        };
                        self.format = Some(CaptureFormat::Pcap {
                            big_endian,
                            nanoseconds,
                        });
                        Ok(Step::Skip(24))
                    }
                    0xa1b2_cd34 | 0x34cd_b2a1 => Err(ReadError::Unsupported {
                        what: "a \"modified\" (Kuznetzov) pcap file".into(),
                        hint: "convert it with `editcap -F pcapng FILE out.pcapng`".into(),
                    }),
                    SHB_MAGIC => {
                        self.state = State::Pcapng {
                            big_endian: false,
                            interfaces: Vec::new(),
                        };
                        self.format = Some(CaptureFormat::Pcapng);
                        Ok(Step::Skip(0))
                    }
                    _ => Err(not_a_capture(input)),
                }
            }
            State::Pcap {
                big_endian,
                nanoseconds,
                link,
            } => {
                let (be, nanos, link) = (*big_endian, *nanoseconds, *link);
                pcap_record(input, be, nanos, link, offset, max_block)
            }
            State::Pcapng {
                big_endian,
                interfaces,
            } => pcapng_block(input, big_endian, interfaces, offset, max_block, last_ts),
        }
    }
}

/// One classic pcap record at the start of `input`.
fn pcap_record(
    input: &[u8],
    big_endian: bool,
    nanoseconds: bool,
    link: LinkType,
    offset: u64,
    max_block: usize,
) -> Result<Step, ReadError> {
    let (Some(ts_sec), Some(ts_frac), Some(caplen), Some(origlen)) = (
        u32_at(input, 0, big_endian),
        u32_at(input, 4, big_endian),
        u32_at(input, 8, big_endian),
        u32_at(input, 12, big_endian),
    ) else {
        return Ok(Step::NeedMore);
    };
    let caplen_us = usize::try_from(caplen).unwrap_or(usize::MAX);
    if caplen_us > max_block {
        return Err(ReadError::Malformed {
            offset,
            what: "pcap record header",
            detail: format!(
                "captured length {caplen} is larger than the {max_block}-byte cap: the file is \
                 damaged here"
            ),
        });
    }
    let total = caplen_us.saturating_add(16);
    if input.len() < total {
        return Ok(Step::NeedMore);
    }
    // pcap-parser decodes the record; the length was checked above, so it is all there.
    let parsed = if big_endian {
        pcap_parser::pcap::parse_pcap_frame_be(input)
    } else {
        pcap_parser::pcap::parse_pcap_frame(input)
    };
    if let Err(e) = parsed {
        return Err(ReadError::Malformed {
            offset,
            what: "pcap record",
            detail: e.to_string(),
        });
    }
    let frac_ns = if nanoseconds {
        i128::from(ts_frac)
    } else {
        i128::from(ts_frac) * 1000
    };
    let ts_ns = clamp_ns(i128::from(ts_sec) * 1_000_000_000 + frac_ns);
    Ok(Step::Record(
        total,
        RecordKind::Packet {
            ts_ns,
            link,
            interface: 0,
            orig_len: origlen,
            start: 16,
            end: total,
        },
    ))
}

/// One pcapng block at the start of `input`.
fn pcapng_block(
    input: &[u8],
    big_endian: &mut bool,
    interfaces: &mut Vec<Interface>,
    offset: u64,
    max_block: usize,
    last_ts: i64,
) -> Result<Step, ReadError> {
    let Some(block_type_le) = u32_at(input, 0, false) else {
        return Ok(Step::NeedMore);
    };
    let is_shb = block_type_le == SHB_MAGIC;
    if is_shb {
        // A new section may change the byte order: read it from the byte-order magic.
        let Some(bom) = u32_at(input, 8, false) else {
            return Ok(Step::NeedMore);
        };
        *big_endian = match bom {
            BOM_LE => false,
            0x4D3C_2B1A => true,
            other => {
                return Err(ReadError::Malformed {
                    offset: offset.saturating_add(8),
                    what: "pcapng section header byte-order magic",
                    detail: format!("expected 1a2b3c4d, found {other:08x}"),
                });
            }
        };
    }
    let be = *big_endian;
    let (Some(block_type), Some(len)) = (u32_at(input, 0, be), u32_at(input, 4, be)) else {
        return Ok(Step::NeedMore);
    };
    let len_us = usize::try_from(len).unwrap_or(usize::MAX);
    if len_us < 12 || len_us > max_block {
        return Err(ReadError::Malformed {
            offset: offset.saturating_add(4),
            what: "pcapng block length",
            detail: format!(
                "block type {block_type:#x} claims {len} bytes (valid: 12 to {max_block}): the \
                 file is damaged here"
            ),
        });
    }
    let Some(block) = input.get(..len_us) else {
        return Ok(Step::NeedMore);
    };
    if block_type == OPB_MAGIC {
        return Ok(obsolete_packet_block(block, be, interfaces, len_us, offset));
    }
    let parsed = if is_shb {
        pcap_parser::pcapng::parse_sectionheaderblock(block)
            .map(|(r, b)| (r, Block::SectionHeader(b)))
    } else if be {
        pcap_parser::pcapng::parse_block_be(block)
    } else {
        pcap_parser::pcapng::parse_block_le(block)
    };
    let block_parsed = match parsed {
        Ok((_, b)) => b,
        Err(e) => {
            if is_shb {
                return Err(ReadError::Malformed {
                    offset,
                    what: "pcapng section header block",
                    detail: e.to_string(),
                });
            }
            return Ok(Step::Record(
                len_us,
                RecordKind::Warning(format!(
                    "skipped a malformed pcapng block (type {block_type:#x}, {len} bytes) at \
                     offset {offset}: {e}"
                )),
            ));
        }
    };
    Ok(match block_parsed {
        Block::SectionHeader(_) => {
            // A new section: interface ids start again from 0.
            interfaces.clear();
            Step::Skip(len_us)
        }
        Block::InterfaceDescription(idb) => {
            let mut resol = TsResol::Decimal(6);
            let mut offset_s = 0i64;
            for opt in &idb.options {
                let Ok(v) = opt.as_bytes() else { continue };
                if opt.code == OptionCode::IfTsresol {
                    if let Some(r) = v.first().copied().and_then(TsResol::from_option) {
                        resol = r;
                    }
                } else if opt.code == OptionCode::IfTsoffset
                    && let Some(b) = v.get(..8).and_then(|s| <[u8; 8]>::try_from(s).ok())
                {
                    offset_s = if be {
                        i64::from_be_bytes(b)
                    } else {
                        i64::from_le_bytes(b)
                    };
                }
            }
            let link = LinkType(u32::from(
                u16::try_from(idb.linktype.0 & 0xffff).unwrap_or(0),
            ));
            interfaces.push(Interface {
                link,
                resol,
                offset_s,
                snaplen: idb.snaplen,
            });
            Step::Skip(len_us)
        }
        Block::EnhancedPacket(epb) => {
            let Some(iface) = usize::try_from(epb.if_id)
                .ok()
                .and_then(|i| interfaces.get(i))
            else {
                return Ok(Step::Record(
                    len_us,
                    RecordKind::Warning(format!(
                        "skipped a packet at offset {offset} for interface {} that no interface \
                         description block declared",
                        epb.if_id
                    )),
                ));
            };
            let raw = (u64::from(epb.ts_high) << 32) | u64::from(epb.ts_low);
            let ts_ns =
                clamp_ns(iface.resol.to_ns(raw) + i128::from(iface.offset_s) * 1_000_000_000);
            // EPB: 28 bytes of header before the packet data (block type, length, interface,
            // two timestamp words, captured and original lengths).
            let caplen = usize::try_from(epb.caplen).unwrap_or(usize::MAX);
            let end = 28usize.saturating_add(caplen.min(epb.data.len()));
            Step::Record(
                len_us,
                RecordKind::Packet {
                    ts_ns,
                    link: iface.link,
                    interface: epb.if_id,
                    orig_len: epb.origlen,
                    start: 28,
                    end: end.min(len_us),
                },
            )
        }
        Block::SimplePacket(spb) => {
            let Some(iface) = interfaces.first() else {
                return Ok(Step::Record(
                    len_us,
                    RecordKind::Warning(format!(
                        "skipped a simple packet block at offset {offset}: no interface declared"
                    )),
                ));
            };
            // SPB: 12 bytes of header (type, length, original length); the data is cut to the
            // interface's snap length and padded.
            let mut caplen = usize::try_from(spb.origlen).unwrap_or(usize::MAX);
            if iface.snaplen != 0 {
                caplen = caplen.min(usize::try_from(iface.snaplen).unwrap_or(usize::MAX));
            }
            let end = 12usize.saturating_add(caplen.min(spb.data.len()));
            Step::Record(
                len_us,
                RecordKind::Packet {
                    // A simple packet block has no timestamp: reuse the previous packet's.
                    ts_ns: last_ts,
                    link: iface.link,
                    interface: 0,
                    orig_len: spb.origlen,
                    start: 12,
                    end: end.min(len_us),
                },
            )
        }
        Block::DecryptionSecrets(dsb) => {
            if dsb.secrets_type.0 == DSB_TLS_KEYLOG {
                // DSB: 16 bytes of header (type, length, secrets type, secrets length).
                let n = usize::try_from(dsb.secrets_len).unwrap_or(usize::MAX);
                let end = 16usize.saturating_add(n.min(dsb.data.len()));
                Step::Record(
                    len_us,
                    RecordKind::KeyLog {
                        start: 16,
                        end: end.min(len_us),
                    },
                )
            } else {
                Step::Record(
                    len_us,
                    RecordKind::Warning(format!(
                        "ignored decryption secrets of type {:#010x} (not a TLS key log) at \
                         offset {offset}",
                        dsb.secrets_type.0
                    )),
                )
            }
        }
        _ => Step::Skip(len_us),
    })
}

/// The pcapng Obsolete Packet Block (type 2), which pcap-parser does not decode:
///
/// ```text
///  0  block type = 2        4  block length
///  8  interface id (u16)   10  drops count (u16)
/// 12  timestamp high       16  timestamp low
/// 20  captured length      24  packet length
/// 28  packet data ... padding, options, block length
/// ```
fn obsolete_packet_block(
    block: &[u8],
    be: bool,
    interfaces: &[Interface],
    len: usize,
    offset: u64,
) -> Step {
    let fields = (
        u16_at(block, 8, be),
        u32_at(block, 12, be),
        u32_at(block, 16, be),
        u32_at(block, 20, be),
        u32_at(block, 24, be),
    );
    let (Some(if_id), Some(hi), Some(lo), Some(caplen), Some(origlen)) = fields else {
        return Step::Record(
            len,
            RecordKind::Warning(format!(
                "skipped a truncated obsolete packet block at offset {offset}"
            )),
        );
    };
    let Some(iface) = interfaces.get(usize::from(if_id)) else {
        return Step::Record(
            len,
            RecordKind::Warning(format!(
                "skipped a packet at offset {offset} for undeclared interface {if_id}"
            )),
        );
    };
    let raw = (u64::from(hi) << 32) | u64::from(lo);
    let ts_ns = clamp_ns(iface.resol.to_ns(raw) + i128::from(iface.offset_s) * 1_000_000_000);
    // The data may not run into the trailing length word.
    let room = len.saturating_sub(28 + 4);
    let caplen = usize::try_from(caplen).unwrap_or(usize::MAX).min(room);
    Step::Record(
        len,
        RecordKind::Packet {
            ts_ns,
            link: iface.link,
            interface: u32::from(if_id),
            orig_len: origlen,
            start: 28,
            end: 28 + caplen,
        },
    )
}

/// Pull-all helper: reads a whole in-memory capture, handing each record to `f`. Returns the
/// format, or the error that stopped the reading (records before it were delivered).
pub fn read_all(
    bytes: &[u8],
    cfg: ReaderConfig,
    mut f: impl FnMut(Record<'_>),
) -> Result<Option<CaptureFormat>, ReadError> {
    let mut r = CaptureReader::new(cfg);
    // Push in pieces: the same path as a streamed file.
    for chunk in bytes.chunks(64 * 1024) {
        r.push(chunk);
        while let Some(rec) = r.next_record()? {
            f(rec);
        }
    }
    r.finish();
    while let Some(rec) = r.next_record()? {
        f(rec);
    }
    Ok(r.format())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

    use super::*;
    use crate::capture::synth::{self, Frame, Framing, Ng};

    /// (frame, ts_ns, link, interface, orig_len, data) of every packet, plus key logs and
    /// warnings.
    #[derive(Debug, Default, PartialEq)]
    struct Out {
        packets: Vec<(u64, i64, u32, u32, u32, Vec<u8>)>,
        keylogs: Vec<Vec<u8>>,
        warnings: Vec<String>,
    }

    fn collect(bytes: &[u8], chunk: usize) -> (Out, Result<Option<CaptureFormat>, ReadError>) {
        let mut out = Out::default();
        let mut r = CaptureReader::default();
        let mut err = None;
        let take = |r: &mut CaptureReader, out: &mut Out| -> Option<ReadError> {
            loop {
                match r.next_record() {
                    Ok(Some(Record::Packet(p))) => out.packets.push((
                        p.frame,
                        p.ts_ns,
                        p.link.0,
                        p.interface,
                        p.orig_len,
                        p.data.to_vec(),
                    )),
                    Ok(Some(Record::TlsKeyLog(k))) => out.keylogs.push(k.to_vec()),
                    Ok(Some(Record::Warning(w))) => out.warnings.push(w),
                    Ok(None) => return None,
                    Err(e) => return Some(e),
                }
            }
        };
        for c in bytes.chunks(chunk.max(1)) {
            r.push(c);
            if let Some(e) = take(&mut r, &mut out) {
                err = Some(e);
                break;
            }
        }
        if err.is_none() {
            r.finish();
            err = take(&mut r, &mut out);
        }
        let res = match err {
            Some(e) => Err(e),
            None => Ok(r.format()),
        };
        (out, res)
    }

    fn two_frames() -> Vec<Frame> {
        let p1 = synth::tcp_packet(
            &Framing::Ethernet,
            ([10, 0, 0, 1], 1),
            ([10, 0, 0, 2], 3389),
            1,
            0,
            synth::SYN,
            &[],
        );
        let p2 = synth::tcp_packet(
            &Framing::Ethernet,
            ([10, 0, 0, 1], 1),
            ([10, 0, 0, 2], 3389),
            2,
            0,
            synth::ACK,
            b"hello",
        );
        vec![
            Frame {
                ts_ns: synth::T0 + 123_456_789,
                data: p1,
                orig_len: None,
            },
            Frame {
                ts_ns: synth::T0 + 2_000_000_001,
                data: p2,
                orig_len: None,
            },
        ]
    }

    #[test]
    fn pcap_nanosecond_little_endian() {
        let frames = two_frames();
        let file = synth::pcap(false, true, 1, &frames);
        let (out, fmt) = collect(&file, 7);
        assert_eq!(
            fmt.unwrap(),
            Some(CaptureFormat::Pcap {
                big_endian: false,
                nanoseconds: true
            })
        );
        assert_eq!(out.packets.len(), 2);
        // Nanoseconds survive exactly.
        assert_eq!(out.packets[0].1, synth::T0 + 123_456_789);
        assert_eq!(out.packets[1].1, synth::T0 + 2_000_000_001);
        assert_eq!(out.packets[1].5, frames[1].data);
        assert_eq!((out.packets[0].0, out.packets[1].0), (1, 2));
    }

    #[test]
    fn pcap_big_endian_microseconds() {
        let frames = two_frames();
        let file = synth::pcap(true, false, 1, &frames);
        assert_eq!(&file[..4], &[0xa1, 0xb2, 0xc3, 0xd4]);
        let (out, fmt) = collect(&file, 4096);
        assert_eq!(
            fmt.unwrap(),
            Some(CaptureFormat::Pcap {
                big_endian: true,
                nanoseconds: false
            })
        );
        // Microsecond resolution: the nanoseconds are cut.
        assert_eq!(out.packets[0].1, synth::T0 + 123_456_000);
        assert_eq!(out.packets[0].2, 1);
        assert_eq!(out.packets[1].5, frames[1].data);
    }

    #[test]
    fn any_chunking_gives_the_same_records() {
        let file = synth::pcap(false, false, 1, &two_frames());
        let (whole, _) = collect(&file, file.len());
        for chunk in [1, 2, 3, 5, 16, 17, 24, 100] {
            let (out, res) = collect(&file, chunk);
            res.unwrap();
            assert_eq!(out, whole, "chunk {chunk}");
        }
    }

    #[test]
    fn pcapng_interfaces_resolutions_sections_and_secrets() {
        let frames = two_frames();
        let raw = synth::tcp_packet(
            &Framing::RawIp,
            ([10, 0, 0, 1], 1),
            ([10, 0, 0, 2], 3389),
            7,
            0,
            synth::ACK,
            b"raw",
        );
        let mut ng = Ng::new();
        ng.shb(false);
        ng.idb(1, None); // Ethernet, microseconds (default)
        ng.idb(101, Some(9)); // raw IP, nanoseconds
        ng.idb(1, Some(0x80 | 20)); // Ethernet, 2^-20 s
        ng.epb(0, 1_700_000_000_000_001, &frames[0].data, None);
        ng.epb(1, 1_700_000_000_000_000_123, &raw, None);
        ng.epb(
            2,
            (1_700_000_000u64 << 20) | (1 << 19),
            &frames[1].data,
            None,
        );
        ng.dsb_tls(b"CLIENT_RANDOM 00 11\n");
        ng.spb(&frames[1].data);
        ng.opb(1, 1_700_000_001_000_000_000, &raw);
        // A packet for an interface nobody declared: skipped with a warning.
        ng.epb(9, 0, &raw, None);
        // Second section, big-endian, with its own interface numbering.
        ng.shb(true);
        ng.idb(276, Some(3)); // SLL2, milliseconds
        ng.epb(0, 1_700_000_002_500, &raw, Some(4000));
        let (out, fmt) = collect(&ng.out, 13);
        assert_eq!(fmt.unwrap(), Some(CaptureFormat::Pcapng));
        let p = &out.packets;
        assert_eq!(p.len(), 6, "{out:?}");
        assert_eq!((p[0].1, p[0].2), (1_700_000_000_000_001_000, 1));
        assert_eq!(
            (p[1].1, p[1].2, p[1].3),
            (1_700_000_000_000_000_123, 101, 1)
        );
        assert_eq!(p[1].5, raw);
        assert_eq!((p[2].1, p[2].2), (1_700_000_000_500_000_000, 1));
        // SPB: first interface, the previous packet's time.
        assert_eq!(
            (p[3].1, p[3].2, p[3].5.clone()),
            (p[2].1, 1, frames[1].data.clone())
        );
        // OPB on the raw interface (nanoseconds).
        assert_eq!((p[4].1, p[4].2), (1_700_000_001_000_000_000, 101));
        // Big-endian section: SLL2, milliseconds, truncated packet.
        assert_eq!(
            (p[5].1, p[5].2, p[5].4),
            (1_700_000_002_500_000_000, 276, 4000)
        );
        assert_eq!(out.keylogs, vec![b"CLIENT_RANDOM 00 11\n".to_vec()]);
        assert_eq!(out.warnings.len(), 1);
        assert!(
            out.warnings[0].contains("interface 9"),
            "{:?}",
            out.warnings
        );
    }

    #[test]
    fn gzip_input_is_decompressed() {
        use flate2::{Compression, write::GzEncoder};
        use std::io::Write;
        let file = synth::pcap(false, true, 1, &two_frames());
        let mut enc = GzEncoder::new(Vec::new(), Compression::default());
        enc.write_all(&file).unwrap();
        let gz = enc.finish().unwrap();
        let (plain, _) = collect(&file, 999);
        for chunk in [1, 10, 4096] {
            let (out, fmt) = collect(&gz, chunk);
            assert!(fmt.unwrap().is_some());
            assert_eq!(out, plain);
        }
        let mut r = CaptureReader::default();
        r.push(&gz);
        r.finish();
        while r.next_record().unwrap().is_some() {}
        assert!(r.gzip());
    }

    #[test]
    fn gzip_bomb_hits_the_cap() {
        use flate2::{Compression, write::GzEncoder};
        use std::io::Write;
        let mut file = synth::pcap(false, false, 1, &[]);
        file.extend(std::iter::repeat_n(0u8, 4 * 1024 * 1024));
        let mut enc = GzEncoder::new(Vec::new(), Compression::best());
        enc.write_all(&file).unwrap();
        let gz = enc.finish().unwrap();
        let mut r = CaptureReader::new(ReaderConfig {
            max_decompressed: 1024 * 1024,
            ..ReaderConfig::default()
        });
        r.push(&gz);
        r.finish();
        let err = loop {
            match r.next_record() {
                Ok(Some(_)) => {}
                Ok(None) => panic!("no error"),
                Err(e) => break e,
            }
        };
        assert!(matches!(err, ReadError::TooLarge { .. }), "{err}");
    }

    #[test]
    fn cut_file_gives_a_warning() {
        let file = synth::pcap(false, false, 1, &two_frames());
        let (out, res) = collect(&file[..file.len() - 3], 64);
        res.unwrap();
        assert_eq!(out.packets.len(), 1);
        assert!(
            out.warnings[0].contains("ends in the middle of a record"),
            "{out:?}"
        );
    }

    #[test]
    fn lying_lengths_are_errors_not_allocations() {
        let mut file = synth::pcap(false, false, 1, &two_frames());
        // caplen of the first record = 0xfffffff0
        file[24 + 8..24 + 12].copy_from_slice(&0xffff_fff0u32.to_le_bytes());
        let (out, res) = collect(&file, 64);
        assert!(out.packets.is_empty());
        let e = res.unwrap_err();
        assert!(matches!(e, ReadError::Malformed { offset: 24, .. }), "{e}");

        let mut ng = Ng::new();
        ng.shb(false);
        ng.idb(1, None);
        let at = ng.out.len();
        ng.epb(0, 0, b"xx", None);
        ng.out[at + 4..at + 8].copy_from_slice(&0x7fff_fff0u32.to_le_bytes());
        let (_, res) = collect(&ng.out, 64);
        assert!(matches!(res.unwrap_err(), ReadError::Malformed { .. }));
    }

    #[test]
    fn foreign_files_say_how_to_convert() {
        let (_, res) = collect(b"GMBU\x00\x02\x00\x00 network monitor", 4);
        let e = res.unwrap_err().to_string();
        assert!(e.contains("Network Monitor") && e.contains("pcapng"), "{e}");

        let mut etl = vec![0u8; 64];
        etl[..4].copy_from_slice(&0x0001_0000u32.to_le_bytes());
        etl[4..8].copy_from_slice(&0x0000_0400u32.to_le_bytes());
        let e = collect(&etl, 64).1.unwrap_err().to_string();
        assert!(e.contains("ETL") && e.contains("etl2pcap"), "{e}");

        let e = collect(b"hello world, not a capture", 64).1.unwrap_err();
        assert!(matches!(e, ReadError::NotACapture { .. }), "{e}");
        let e = collect(b"", 64).1.unwrap_err();
        assert!(matches!(e, ReadError::TooShort { len: 0 }), "{e}");
    }

    #[test]
    fn binary_and_decimal_resolutions() {
        assert_eq!(TsResol::Decimal(6).to_ns(5), 5_000);
        assert_eq!(TsResol::Decimal(12).to_ns(5_000), 5);
        assert_eq!(TsResol::Binary(1).to_ns(3), 1_500_000_000);
        assert_eq!(TsResol::from_option(0x80 | 64), None);
        assert_eq!(TsResol::from_option(20), None);
        assert_eq!(clamp_ns(i128::MAX), i64::MAX);
    }

    proptest::proptest! {
        #[test]
        fn never_panics_on_garbage(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..600)) {
            let _ = collect(&bytes, 37);
        }

        #[test]
        fn never_panics_on_damaged_captures(
            flips in proptest::collection::vec((0usize..4096, proptest::num::u8::ANY), 1..8),
            ng in proptest::bool::ANY,
        ) {
            let frames = two_frames();
            let mut file = if ng {
                let mut n = Ng::new();
                n.shb(false);
                n.idb(1, Some(9));
                for f in &frames { n.epb(0, 5, &f.data, None); }
                n.dsb_tls(b"x");
                n.out
            } else {
                synth::pcap(false, true, 1, &frames)
            };
            for (at, v) in flips {
                let n = file.len();
                file[at % n] = v;
            }
            let _ = collect(&file, 11);
        }
    }
}
