//! Asking upstream resolvers: UDP from a fresh socket with a fresh random id (so an off-path
//! sender cannot guess either), the same upstream again over TCP when it truncates, the next
//! upstream at once when one refuses (ICMP port unreachable arrives on the connected socket)
//! or after its timeout.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use hickory_proto::op::{Message, Query};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpStream, UdpSocket};
use tokio::time::{timeout, timeout_at, Instant};

use crate::core::dns::upstream::accept;

/// How long one upstream is waited for over UDP.
pub const UDP_WAIT: Duration = Duration::from_millis(1500);
/// How long one upstream is waited for over TCP (connect and answer).
pub const TCP_WAIT: Duration = Duration::from_secs(2);
/// The most a forwarded query takes in all: below glibc's 5 s, so the client hears SERVFAIL
/// before it gives up on its own.
pub const TOTAL_WAIT: Duration = Duration::from_millis(4000);

/// An answer: its bytes (with the id weft sent) and the parsed message.
pub type Answer = (Vec<u8>, Message);

fn random_id() -> u16 {
    let mut b = [0u8; 2];
    // Without randomness (never on Linux), a fixed id still works; the fresh port remains.
    let _ = getrandom::getrandom(&mut b);
    u16::from_be_bytes(b)
}

/// Asks `upstreams` in order for `packet` (the client's query, forwarded as sent, EDNS0 and
/// all, with a fresh id) whose question is `query`; `None` when none answers.
pub async fn exchange(upstreams: &[SocketAddr], packet: &[u8], query: &Query) -> Option<Answer> {
    let deadline = Instant::now() + TOTAL_WAIT;
    let mut out = packet.to_vec();
    for up in upstreams {
        if Instant::now() >= deadline {
            break;
        }
        let id = random_id();
        out.get_mut(..2)?.copy_from_slice(&id.to_be_bytes());
        let wait = (Instant::now() + UDP_WAIT).min(deadline);
        match timeout_at(wait, udp(*up, &out, id, query)).await {
            Ok(Ok(answer)) if !answer.1.metadata.truncation => return Some(answer),
            // Truncated: the whole answer over TCP from the same upstream.
            Ok(Ok(_)) => {
                let wait = (Instant::now() + TCP_WAIT).min(deadline);
                if let Ok(Ok(answer)) = timeout_at(wait, tcp(*up, &out, id, query)).await {
                    return Some(answer);
                }
            }
            Ok(Err(e)) => tracing::debug!("DNS upstream {up}: {e}"),
            Err(_) => tracing::debug!("DNS upstream {up}: no answer in time"),
        }
    }
    None
}

async fn udp(up: SocketAddr, packet: &[u8], id: u16, query: &Query) -> io::Result<Answer> {
    let local: SocketAddr = if up.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let s = UdpSocket::bind(local).await?;
    s.connect(up).await?;
    s.send(packet).await?;
    let mut buf = vec![0u8; usize::from(u16::MAX)];
    loop {
        // A refusal (ICMP) is an error here; stray datagrams that do not answer are skipped.
        let n = s.recv(&mut buf).await?;
        if let Some(m) = buf.get(..n).and_then(|b| accept(b, id, query)) {
            buf.truncate(n);
            return Ok((buf, m));
        }
    }
}

/// Asks over TCP: a two-byte length, then the message.
pub async fn tcp(up: SocketAddr, packet: &[u8], id: u16, query: &Query) -> io::Result<Answer> {
    let mut s = timeout(TCP_WAIT, TcpStream::connect(up))
        .await
        .map_err(|_| io::Error::from(io::ErrorKind::TimedOut))??;
    let len =
        u16::try_from(packet.len()).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let mut framed = Vec::with_capacity(packet.len().saturating_add(2));
    framed.extend_from_slice(&len.to_be_bytes());
    framed.extend_from_slice(packet);
    s.write_all(&framed).await?;
    let n = s.read_u16().await?;
    let mut buf = vec![0u8; usize::from(n)];
    s.read_exact(&mut buf).await?;
    let m = accept(&buf, id, query).ok_or_else(|| io::Error::from(io::ErrorKind::InvalidData))?;
    Ok((buf, m))
}
