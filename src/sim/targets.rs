//! Targets that are not hosts: a port nothing listens on, and one that drops SYNs.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::{TcpListener, TcpSocket, TcpStream};

/// A loopback address nothing listens on: bind port 0, note the port, close the listener.
/// (Another process could take the port in between; on a test machine that is unlikely.)
pub async fn nothing_listening() -> std::io::Result<SocketAddr> {
    let l = TcpListener::bind(("127.0.0.1", 0)).await?;
    let addr = l.local_addr()?;
    drop(l);
    Ok(addr)
}

/// A target whose SYNs are dropped: a listener with backlog 1 that never accepts, its accept
/// queue filled with connections, so the kernel drops the next SYN (Linux drops SYNs while a
/// listener's accept queue is full) and a connect attempt times out. Keep it alive while it is
/// needed.
pub struct BlackHole {
    pub addr: SocketAddr,
    _listener: TcpListener,
    _fillers: Vec<TcpStream>,
}

impl BlackHole {
    pub async fn new() -> std::io::Result<Self> {
        let sock = TcpSocket::new_v4()?;
        sock.bind(SocketAddr::from(([127, 0, 0, 1], 0)))?;
        let listener = sock.listen(1)?;
        let addr = listener.local_addr()?;
        let mut fillers = Vec::new();
        // Backlog 1 holds two completed connections; stop at the first connect that hangs.
        for _ in 0..8 {
            match tokio::time::timeout(Duration::from_millis(250), TcpStream::connect(addr)).await {
                Ok(Ok(s)) => fillers.push(s),
                Ok(Err(e)) => return Err(e),
                Err(_) => break,
            }
        }
        Ok(Self {
            addr,
            _listener: listener,
            _fillers: fillers,
        })
    }
}
