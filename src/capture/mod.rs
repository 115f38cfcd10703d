//! Offline analysis of packet captures: pcap/pcapng reading, TCP reassembly, and the same
//! phase machine as the proxy (`rdpdiag analyze FILE`).
//!
//! Sans-IO like the rest of the core: the caller reads the file and pushes its bytes; nothing
//! here opens files or sockets or reads a clock (capture timestamps are the only time).
//!
//! ```text
//!  file bytes ──► reader (pcap / pcapng / gzip) ──► link (Ethernet, VLAN, SLL, NULL, raw IP)
//!             ──► reassembly (per TCP connection, per direction) ──► RDP detection (CR, preamble)
//!             ──► session::Session (phase machine) ──► ConnectionAnalysis (verdict + capture facts)
//! ```

pub mod analyze;
pub mod link;
pub mod reader;
pub mod reassembly;

pub use analyze::{
    AnalysisReport, AnalyzeConfig, Analyzer, ConnectionAnalysis, FlowSummary, GapReport, Preamble,
    Stall, UdpRdpFlow, analyze_bytes,
};
pub use reader::{CaptureFormat, CaptureReader, LinkType, Packet, ReadError, ReaderConfig, Record};
pub use reassembly::{Flow, FlowEvent, Gap, GapReason, HalfStream, ReassemblyConfig};

#[cfg(test)]
pub(crate) mod synth;
