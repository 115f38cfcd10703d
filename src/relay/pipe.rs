//! The protocol-blind relay: moves bytes both ways between the client and the host, mirrors
//! each close (FIN → `shutdown(Write)`, RST → `SO_LINGER 0` + drop) and says, in order, how each
//! side closed. No decoding, no per-chunk logs or allocations: one reused buffer per direction,
//! allocated when a copy first needs it (the splice mover frees it once drained, so an idle
//! spliced connection holds no buffer at all).
//!
//! The two directions never wait on each other: one loop waits for whichever socket is ready
//! (read readiness while a direction's buffer is empty, write readiness while it holds bytes).
//! How bytes move is a [`Mover`]: user-space copies here, `splice(2)` in `splice.rs`.

use std::io;
use std::task::Poll;

use tokio::io::{AsyncWriteExt, Interest};
use tokio::net::TcpStream;

use crate::session::{CloseKind, Direction, Side};

/// Size of each direction's buffer.
pub(crate) const BUF_SIZE: usize = 64 * 1024;

/// One direction: bytes taken from its source, not yet delivered to its destination.
#[derive(Debug)]
pub(crate) struct Half {
    /// No allocation until a copy needs one, then [`BUF_SIZE`] bytes of capacity, never zeroed:
    /// reads fill the spare capacity (`try_read_buf`), so only the pages bytes land on are
    /// touched. `buf[pos..]` is read and not yet written.
    buf: Vec<u8>,
    pos: usize,
    /// Bytes a [`Mover`] holds outside `buf` (in a kernel pipe).
    pub(crate) queued: usize,
    /// Bytes delivered to the destination.
    pub(crate) bytes: u64,
    /// The source sent FIN.
    pub(crate) eof: bool,
    /// The destination's write side is shut down: this direction is over.
    pub(crate) shut: bool,
}

impl Half {
    pub(crate) fn new() -> Self {
        Self {
            buf: Vec::new(),
            pos: 0,
            queued: 0,
            bytes: 0,
            eof: false,
            shut: false,
        }
    }

    /// Bytes read and not yet written (after a [`Step::Read`]: exactly the chunk just read).
    pub(crate) fn pending(&self) -> &[u8] {
        self.buf.get(self.pos..).unwrap_or(&[])
    }

    /// Room left in the buffer (used to buffer while connecting).
    pub(crate) fn has_room(&self) -> bool {
        self.buf.len() < BUF_SIZE
    }

    /// Appends what `src` has to the buffer, within [`BUF_SIZE`]; `Ok(0)` is EOF (or no room).
    pub(crate) fn append_from(&mut self, src: &TcpStream) -> io::Result<usize> {
        if self.buf.capacity() == 0 {
            self.buf = Vec::with_capacity(BUF_SIZE);
        }
        // `try_read_buf` would grow a full Vec; callers check `has_room` first, and a full
        // buffer must never read as EOF.
        if self.buf.len() >= self.buf.capacity() {
            return Err(io::Error::other("relay buffer full"));
        }
        src.try_read_buf(&mut self.buf)
    }

    /// Frees the buffer if it holds nothing (the splice mover needs none).
    pub(crate) fn free_buf(&mut self) {
        if self.pos >= self.buf.len() && self.buf.capacity() > 0 {
            self.buf = Vec::new();
            self.pos = 0;
        }
    }

    fn has_queued(&self) -> bool {
        self.pos < self.buf.len() || self.queued > 0
    }

    fn wants_read(&self) -> bool {
        !self.eof && !self.has_queued()
    }

    /// Copies from `src` into the (empty) buffer; `Ok(0)` is EOF.
    pub(crate) fn read_from(&mut self, src: &TcpStream) -> io::Result<usize> {
        self.buf.clear();
        self.pos = 0;
        self.append_from(src)
    }

    /// Writes buffered bytes to `dst`.
    pub(crate) fn write_to(&mut self, dst: &TcpStream) -> io::Result<usize> {
        let n = dst.try_write(self.pending())?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        self.pos = (self.pos + n).min(self.buf.len());
        self.delivered(n);
        Ok(n)
    }

    pub(crate) fn delivered(&mut self, n: usize) {
        self.bytes = self.bytes.saturating_add(n as u64);
    }
}

/// How bytes move from a socket into a [`Half`] and out to the other socket. Both calls are
/// non-blocking: `WouldBlock` means "wait for readiness again".
pub(crate) trait Mover {
    /// Takes bytes from `src`; `Ok(0)` is EOF. Only called when the half holds nothing.
    fn read(&mut self, dir: Direction, src: &TcpStream, half: &mut Half) -> io::Result<usize>;
    /// Delivers held bytes to `dst`.
    fn write(&mut self, dir: Direction, dst: &TcpStream, half: &mut Half) -> io::Result<usize>;
}

/// Plain user-space copies through each half's buffer.
pub(crate) struct Copying;

impl Mover for Copying {
    fn read(&mut self, _: Direction, src: &TcpStream, half: &mut Half) -> io::Result<usize> {
        half.read_from(src)
    }
    fn write(&mut self, _: Direction, dst: &TcpStream, half: &mut Half) -> io::Result<usize> {
        half.write_to(dst)
    }
}

/// What [`Relay::step`] saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    /// New bytes in that direction, in [`Half::pending`] (only when tapping).
    Read(Direction),
    /// A side closed its sending direction (FIN) or reset the connection (RST).
    Closed(Side, CloseKind),
    /// Both directions are over, or one side reset: drop the relay.
    Done,
}

/// Both sockets and both directions.
#[derive(Debug)]
pub(crate) struct Relay {
    pub(crate) client: TcpStream,
    pub(crate) host: TcpStream,
    pub(crate) c2s: Half,
    pub(crate) s2c: Half,
    /// A side reset: the other one has `SO_LINGER 0` and resets when dropped.
    reset: bool,
    /// Which direction [`Relay::wait`] looks at first.
    flip: bool,
}

enum Op {
    Read,
    Write,
    /// A side whose sending direction is over can still reset: watch its error readiness.
    Error,
}

impl Relay {
    pub(crate) fn new(client: TcpStream, host: TcpStream, c2s: Half) -> Self {
        Self {
            client,
            host,
            c2s,
            s2c: Half::new(),
            reset: false,
            flip: false,
        }
    }

    pub(crate) fn half(&self, dir: Direction) -> &Half {
        match dir {
            Direction::ClientToHost => &self.c2s,
            Direction::HostToClient => &self.s2c,
        }
    }

    /// Waits for the next thing worth telling: new bytes (only if `tap`), a close, or the end.
    ///
    /// Cancel-safe: it only awaits readiness, every state change is in `self`.
    pub(crate) async fn step(&mut self, mover: &mut impl Mover, tap: bool) -> Step {
        loop {
            self.propagate_fins().await;
            if self.reset || (self.c2s.shut && self.s2c.shut) {
                return Step::Done;
            }
            use Direction::{ClientToHost as C2S, HostToClient as S2C};
            self.flip = !self.flip;
            let next = if self.c2s.eof || self.s2c.eof {
                // Boxed: this wait is the larger one and happens once a side has half-closed;
                // the common wait keeps every connection's task small.
                Box::pin(self.wait_with_errors()).await
            } else {
                self.wait().await
            };
            let Some((dir, op, ready)) = next else {
                return Step::Done;
            };
            let (src, dst, half) = match dir {
                C2S => (&self.client, &self.host, &mut self.c2s),
                S2C => (&self.host, &self.client, &mut self.s2c),
            };
            let done = ready.and_then(|()| match op {
                Op::Read => mover.read(dir, src, half),
                Op::Write => mover.write(dir, dst, half),
                Op::Error => src.try_io(Interest::ERROR, || match src.take_error()? {
                    Some(e) => Err(e),
                    None => Err(io::ErrorKind::WouldBlock.into()),
                }),
            });
            match (op, done) {
                (_, Err(e)) if is_retry(&e) => {}
                (Op::Read, Ok(0)) => {
                    half.eof = true;
                    return Step::Closed(dir.sender(), CloseKind::Fin);
                }
                (Op::Read, Ok(_)) if tap => return Step::Read(dir),
                (_, Ok(_)) => {}
                (Op::Read | Op::Error, Err(e)) => return self.reset_by(dir.sender(), &e),
                (Op::Write, Err(e)) => return self.reset_by(dir.reverse().sender(), &e),
            }
        }
    }

    /// Waits until a socket is ready for what a direction needs: read while its half is empty,
    /// write while it holds bytes. `None` when no direction needs anything. The direction
    /// looked at first alternates, so a busy one cannot starve the other.
    fn wait(&self) -> impl Future<Output = Option<(Direction, Op, io::Result<()>)>> + '_ {
        std::future::poll_fn(move |cx| {
            let mut waiting = false;
            let dirs = if self.flip {
                [Direction::ClientToHost, Direction::HostToClient]
            } else {
                [Direction::HostToClient, Direction::ClientToHost]
            };
            for dir in dirs {
                let (src, dst, half) = match dir {
                    Direction::ClientToHost => (&self.client, &self.host, &self.c2s),
                    Direction::HostToClient => (&self.host, &self.client, &self.s2c),
                };
                if half.wants_read() {
                    waiting = true;
                    if let Poll::Ready(r) = src.poll_read_ready(cx) {
                        return Poll::Ready(Some((dir, Op::Read, r)));
                    }
                }
                if half.has_queued() {
                    waiting = true;
                    if let Poll::Ready(r) = dst.poll_write_ready(cx) {
                        return Poll::Ready(Some((dir, Op::Write, r)));
                    }
                }
            }
            if waiting {
                Poll::Pending
            } else {
                Poll::Ready(None)
            }
        })
    }

    /// [`Relay::wait`], and also for an error on a side that half-closed: it can still reset.
    async fn wait_with_errors(&self) -> Option<(Direction, Op, io::Result<()>)> {
        use Direction::{ClientToHost as C2S, HostToClient as S2C};
        Some(tokio::select! {
            r = self.client.readable(), if self.c2s.wants_read() => (C2S, Op::Read, r),
            r = self.host.writable(), if self.c2s.has_queued() => (C2S, Op::Write, r),
            r = self.host.readable(), if self.s2c.wants_read() => (S2C, Op::Read, r),
            r = self.client.writable(), if self.s2c.has_queued() => (S2C, Op::Write, r),
            r = self.client.ready(Interest::ERROR), if self.c2s.eof => (C2S, Op::Error, r.map(drop)),
            r = self.host.ready(Interest::ERROR), if self.s2c.eof => (S2C, Op::Error, r.map(drop)),
            else => return None,
        })
    }

    /// A direction whose source sent FIN and whose bytes are all delivered: FIN the destination.
    async fn propagate_fins(&mut self) {
        for dir in [Direction::ClientToHost, Direction::HostToClient] {
            let (dst, half) = match dir {
                Direction::ClientToHost => (&mut self.host, &mut self.c2s),
                Direction::HostToClient => (&mut self.client, &mut self.s2c),
            };
            if half.eof && !half.shut && !half.has_queued() {
                half.shut = true;
                // Fails only when the destination is already gone; reading it reports that.
                if let Err(e) = dst.shutdown().await {
                    tracing::debug!(?dir, error = %e, "Half-close not propagated");
                }
            }
        }
    }

    /// `side` reset (or failed): arrange for the other side to be reset when the relay drops.
    fn reset_by(&mut self, side: Side, err: &io::Error) -> Step {
        tracing::debug!(side = side.name(), error = %err, "Connection reset");
        let other = match side {
            Side::Client => &self.host,
            Side::Host | Side::Proxy => &self.client,
        };
        if let Err(e) = other.set_zero_linger() {
            tracing::debug!(error = %e, "SO_LINGER 0 failed");
        }
        self.reset = true;
        Step::Closed(side, CloseKind::Rst)
    }

    /// Ends both connections with an RST (stall, shutdown).
    pub(crate) fn abort(self) {
        for s in [&self.client, &self.host] {
            if let Err(e) = s.set_zero_linger() {
                tracing::debug!(error = %e, "SO_LINGER 0 failed");
            }
        }
    }
}

fn is_retry(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
    )
}

/// The hot path: relays until both directions end, telling each close as it happens.
pub(crate) async fn run(
    relay: &mut Relay,
    mover: &mut impl Mover,
    mut on_close: impl FnMut(Side, CloseKind),
) {
    loop {
        match relay.step(mover, false).await {
            Step::Closed(side, kind) => on_close(side, kind),
            Step::Done => return,
            Step::Read(_) => {}
        }
    }
}
