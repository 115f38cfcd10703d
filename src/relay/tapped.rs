//! `--record` under `--security` / `--fresh-cert`: a socket wrapper that reports the bytes of
//! each successful read and write to the connection's [`Tap`], so the bundle holds both legs as
//! they crossed the sockets (the clear negotiation, then each leg's TLS records, which the key log
//! decrypts). The tap never waits ([`Tap::chunk`] only tries to queue), so the short lock here
//! never slows the relay.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use super::inspect::Clock;
use super::tap::Tap;
use crate::record::Leg;
use crate::session::Direction;

/// The connection's tap, shared by both wrapped sockets (`None` when not recording).
pub(crate) type Recorder = Arc<Mutex<Option<Tap>>>;

/// Locks the recorder; a poisoned lock still holds a usable tap.
pub(crate) fn lock(rec: &Recorder) -> MutexGuard<'_, Option<Tap>> {
    rec.lock().unwrap_or_else(|e| e.into_inner())
}

/// A socket of one leg whose reads and writes are recorded.
#[derive(Debug)]
pub(crate) struct Tapped {
    inner: TcpStream,
    leg: Leg,
    rec: Recorder,
    clock: Clock,
}

impl Tapped {
    /// `leg` is the leg `inner` belongs to: reads on the client socket travel client → host,
    /// reads on the host socket host → client (writes the other way).
    pub(crate) fn new(inner: TcpStream, leg: Leg, rec: Recorder, clock: Clock) -> Self {
        Self {
            inner,
            leg,
            rec,
            clock,
        }
    }

    pub(crate) fn get_ref(&self) -> &TcpStream {
        &self.inner
    }

    pub(crate) fn into_inner(self) -> TcpStream {
        self.inner
    }

    fn record(&self, read: bool, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        let dir = match (self.leg, read) {
            (Leg::Client, true) | (Leg::Host, false) => Direction::ClientToHost,
            (Leg::Client, false) | (Leg::Host, true) => Direction::HostToClient,
        };
        if let Some(tap) = lock(&self.rec).as_mut() {
            tap.chunk(self.leg, dir, data, self.clock.now());
        }
    }
}

impl AsyncRead for Tapped {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = polled {
            this.record(true, buf.filled().get(before..).unwrap_or_default());
        }
        polled
    }
}

impl AsyncWrite for Tapped {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write(cx, data);
        if let Poll::Ready(Ok(n)) = polled {
            this.record(false, data.get(..n).unwrap_or_default());
        }
        polled
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}
