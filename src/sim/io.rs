//! One side of a simulated connection: a TCP stream, optionally with rustls driven by hand.
//!
//! rustls is used sans-IO (`read_tls` / `process_new_packets` / `write_tls`) rather than through
//! tokio-rustls so that a peer controls exactly what reaches the wire: the alert rustls queues
//! on a failed handshake is flushed before the peer decides how to close, a close can be a FIN
//! with or without close_notify or an RST, and raw records can be read before rustls sees them.

use std::io::{self, Read, Write};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How a peer ends its side of the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseStyle {
    /// TLS close_notify (when TLS is up), then FIN.
    CloseNotifyFin,
    /// FIN only (no close_notify even under TLS).
    Fin,
    /// RST: SO_LINGER 0, then close.
    Rst,
}

/// Why an exchange stopped.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Stop {
    /// The peer closed (FIN) without a TLS close_notify.
    #[error("peer closed (FIN)")]
    Fin,
    /// The peer sent a TLS close_notify (and usually a FIN).
    #[error("peer sent close_notify")]
    CloseNotify,
    /// The connection was reset.
    #[error("connection reset (RST)")]
    Rst,
    /// Nothing arrived before the read timeout.
    #[error("no data for {0:?}")]
    Timeout(Duration),
    /// The peer's bytes are not what this layer expects (e.g. not TPKT).
    #[error("unexpected bytes: {0}")]
    Unexpected(String),
    /// rustls failed (a received alert is `AlertReceived`; a sent alert was flushed).
    #[error("TLS: {0}")]
    Tls(rustls::Error),
    #[error("i/o: {0}")]
    Io(io::Error),
}

impl Stop {
    fn from_io(e: io::Error) -> Self {
        match e.kind() {
            io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe => Stop::Rst,
            _ => Stop::Io(e),
        }
    }
}

/// Most a peer waits for the other side's FIN after closing its own direction.
const DRAIN_LIMIT: Duration = Duration::from_secs(3);

/// One side of a connection.
pub(crate) struct Chan {
    pub(crate) tcp: TcpStream,
    tls: Option<Box<rustls::Connection>>,
    /// Bytes read from TCP and not yet consumed (TLS records not yet fed to rustls).
    raw: Vec<u8>,
    /// Application bytes (clear stream, or TLS plaintext) not yet consumed.
    plain: Vec<u8>,
    close_notify: bool,
    /// The peer said it is ending the connection (close_notify or a fatal alert).
    peer_closing: bool,
    pub(crate) timeout: Duration,
}

impl Chan {
    pub(crate) fn new(tcp: TcpStream, timeout: Duration) -> Self {
        Self {
            tcp,
            tls: None,
            raw: Vec::new(),
            plain: Vec::new(),
            close_notify: false,
            peer_closing: false,
            timeout,
        }
    }

    /// One TCP read into `raw`.
    async fn read_raw(&mut self) -> Result<(), Stop> {
        let mut buf = [0u8; 16 * 1024];
        match tokio::time::timeout(self.timeout, self.tcp.read(&mut buf)).await {
            Err(_) => Err(Stop::Timeout(self.timeout)),
            Ok(Err(e)) => Err(Stop::from_io(e)),
            Ok(Ok(0)) => Err(if self.close_notify {
                Stop::CloseNotify
            } else {
                Stop::Fin
            }),
            Ok(Ok(n)) => {
                self.raw.extend_from_slice(buf.get(..n).unwrap_or_default());
                Ok(())
            }
        }
    }

    /// The next `n` raw bytes.
    pub(crate) async fn raw_exact(&mut self, n: usize) -> Result<Vec<u8>, Stop> {
        while self.raw.len() < n {
            self.read_raw().await?;
        }
        Ok(self.raw.drain(..n).collect())
    }

    /// The next whole TLS record, raw (header included).
    pub(crate) async fn raw_record(&mut self) -> Result<Vec<u8>, Stop> {
        while self.raw.len() < 5 {
            self.read_raw().await?;
        }
        let len = usize::from(u16::from_be_bytes([self.raw[3], self.raw[4]]));
        let rec = self.raw_exact(5 + len).await?;
        if rec.first() == Some(&0x15) && self.tls.as_ref().is_none_or(|c| c.is_handshaking()) {
            // A clear alert: the peer is giving up.
            self.peer_closing = true;
        }
        Ok(rec)
    }

    /// Writes bytes straight to TCP, bypassing TLS.
    pub(crate) async fn send_raw(&mut self, data: &[u8]) -> Result<(), Stop> {
        self.tcp.write_all(data).await.map_err(Stop::from_io)
    }

    /// Starts TLS on this connection; bytes already buffered go to rustls first.
    pub(crate) fn start_tls(&mut self, conn: rustls::Connection) {
        let mut raw = std::mem::take(&mut self.plain);
        raw.append(&mut self.raw);
        self.raw = raw;
        self.tls = Some(Box::new(conn));
    }

    pub(crate) fn tls(&self) -> Option<&rustls::Connection> {
        self.tls.as_deref()
    }

    /// Writes whatever rustls has queued (handshake messages, alerts, records).
    pub(crate) async fn flush_tls(&mut self) -> Result<(), Stop> {
        let Some(conn) = self.tls.as_mut() else {
            return Ok(());
        };
        let mut out = Vec::new();
        while conn.wants_write() {
            conn.write_tls(&mut out).map_err(Stop::Io)?;
        }
        if !out.is_empty() {
            self.tcp.write_all(&out).await.map_err(Stop::from_io)?;
        }
        Ok(())
    }

    /// Reads one TLS record and feeds it to rustls; plaintext goes to `plain`.
    async fn tls_read_one(&mut self) -> Result<(), Stop> {
        let rec = self.raw_record().await?;
        let Some(conn) = self.tls.as_mut() else {
            return Err(Stop::Unexpected("no TLS session".to_owned()));
        };
        let mut rd: &[u8] = &rec;
        while !rd.is_empty() {
            conn.read_tls(&mut rd).map_err(Stop::Io)?;
        }
        if let Err(e) = conn.process_new_packets() {
            if matches!(e, rustls::Error::AlertReceived(_)) {
                self.peer_closing = true;
            }
            // rustls queued an alert for most errors: put it on the wire before giving up.
            let _flushed = self.flush_tls().await;
            return Err(Stop::Tls(e));
        }
        let mut buf = [0u8; 16 * 1024];
        loop {
            match conn.reader().read(&mut buf) {
                Ok(0) => {
                    self.close_notify = true;
                    self.peer_closing = true;
                    break;
                }
                Ok(n) => self
                    .plain
                    .extend_from_slice(buf.get(..n).unwrap_or_default()),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(Stop::Io(e)),
            }
        }
        self.flush_tls().await
    }

    /// Drives the TLS handshake to its end.
    pub(crate) async fn handshake(&mut self) -> Result<(), Stop> {
        loop {
            self.flush_tls().await?;
            let handshaking = self.tls.as_ref().is_some_and(|c| c.is_handshaking());
            if !handshaking {
                return Ok(());
            }
            self.tls_read_one().await?;
        }
    }

    /// Sends application bytes (one TLS record when TLS is up).
    pub(crate) async fn send(&mut self, data: &[u8]) -> Result<(), Stop> {
        match self.tls.as_mut() {
            Some(conn) => {
                conn.writer().write_all(data).map_err(Stop::Io)?;
                self.flush_tls().await
            }
            None => self.send_raw(data).await,
        }
    }

    async fn fill_plain(&mut self) -> Result<(), Stop> {
        if self.tls.is_some() {
            if self.close_notify {
                return Err(Stop::CloseNotify);
            }
            self.tls_read_one().await
        } else {
            if self.raw.is_empty() {
                self.read_raw().await?;
            }
            self.plain.append(&mut self.raw);
            Ok(())
        }
    }

    /// The next `n` application bytes.
    pub(crate) async fn recv_exact(&mut self, n: usize) -> Result<Vec<u8>, Stop> {
        while self.plain.len() < n {
            self.fill_plain().await?;
        }
        Ok(self.plain.drain(..n).collect())
    }

    /// The next TPKT PDU (header included).
    pub(crate) async fn recv_tpkt(&mut self) -> Result<Vec<u8>, Stop> {
        while self.plain.len() < 4 {
            self.fill_plain().await?;
        }
        if self.plain.first() != Some(&0x03) {
            let head: Vec<u8> = self.plain.iter().take(16).copied().collect();
            return Err(Stop::Unexpected(format!("not TPKT: {}", hex::encode(head))));
        }
        let len = usize::from(u16::from_be_bytes([self.plain[2], self.plain[3]])).max(4);
        self.recv_exact(len).await
    }

    /// The next DER element (a TSRequest), tag and length included.
    /// One whole TSRequest, decoded (real CredSSP peers).
    pub(crate) async fn recv_ts_request(
        &mut self,
    ) -> Result<crate::wire::credssp::TsRequest, Stop> {
        let raw = self.recv_der().await?;
        match crate::wire::credssp::decode(&raw) {
            Ok(Some((t, _))) => Ok(t),
            _ => Err(Stop::Unexpected("undecodable TSRequest".to_owned())),
        }
    }

    pub(crate) async fn recv_der(&mut self) -> Result<Vec<u8>, Stop> {
        while self.plain.len() < 2 {
            self.fill_plain().await?;
        }
        let first = self.plain[1];
        let (hdr, len) = if first < 0x80 {
            (2, usize::from(first))
        } else {
            let n = usize::from(first & 0x7f);
            while self.plain.len() < 2 + n {
                self.fill_plain().await?;
            }
            let len = self
                .plain
                .get(2..2 + n)
                .unwrap_or_default()
                .iter()
                .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
            (2 + n, len)
        };
        self.recv_exact(hdr + len).await
    }

    /// Lets the peer close first: waits for its FIN (bounded), discarding what it sends.
    pub(crate) async fn await_peer_close(&mut self) {
        let _end = self.drain().await;
        self.peer_closing = false;
    }

    /// Waits for the peer's close (or anything it sends until then), discarding it.
    pub(crate) async fn drain(&mut self) -> Stop {
        let limit = self.timeout.min(DRAIN_LIMIT);
        let mut buf = [0u8; 16 * 1024];
        loop {
            match tokio::time::timeout(limit, self.tcp.read(&mut buf)).await {
                Err(_) => return Stop::Timeout(limit),
                Ok(Err(e)) => return Stop::from_io(e),
                Ok(Ok(0)) => return Stop::Fin,
                Ok(Ok(_)) => {}
            }
        }
    }

    /// Ends this side of the connection the chosen way, then waits for the peer's close.
    ///
    /// A peer that already sent close_notify or a fatal alert is closing: wait for its FIN
    /// first, so that the close order on the wire is the peer's (an alert and the FIN after it
    /// are one decision of the peer; answering faster than its FIN would muddle who closed).
    pub(crate) async fn close(&mut self, how: CloseStyle) {
        if self.peer_closing && how != CloseStyle::Rst {
            self.await_peer_close().await;
        }
        match how {
            CloseStyle::CloseNotifyFin | CloseStyle::Fin => {
                if how == CloseStyle::CloseNotifyFin {
                    if let Some(conn) = self.tls.as_mut() {
                        conn.send_close_notify();
                    }
                    let _sent = self.flush_tls().await;
                }
                // A peer that already reset makes shutdown fail: nothing left to close then.
                let _shut = self.tcp.shutdown().await;
                // Read until the peer closes too, so that unread data never turns our close
                // into an RST.
                let _end = self.drain().await;
            }
            CloseStyle::Rst => {
                // SO_LINGER 0: close() sends RST and discards unsent data.
                let _linger = self.tcp.set_zero_linger();
            }
        }
    }
}
