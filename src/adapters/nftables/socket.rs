//! The transport: a `NETLINK_NETFILTER` socket in the calling thread's network namespace.
//!
//! Each call opens its own short-lived socket. That costs one syscall pair and buys two things:
//! the socket always belongs to the namespace the *current thread* is in (callers `setns` on
//! worker threads), and no replies of an earlier, failed exchange can be mistaken for ours.

use std::io;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU32, Ordering};

use rtnetlink::sys::{protocols::NETLINK_NETFILTER, Socket, SocketAddr};

use super::sys::*;
use super::NftError;
use crate::adapters::nla::{attrs, be32, find_attr, parse_msgs, Writer};
use crate::core::nft::Verdict;
use crate::core::nft::{Batch, Family};
use crate::core::nft::{Elem, ElemData};

/// How long to wait for the kernel before declaring a reply missing. nfnetlink processes a
/// batch synchronously inside `sendmsg`, so replies are normally queued before `send`
/// returns; the timeout only guards against a kernel that never answers.
const REPLY_TIMEOUT_MS: i32 = 10_000;

/// Receive buffer per read. Dump replies are at most a few pages per datagram.
const RECV_CHUNK: usize = 256 * 1024;

/// How often a dump interrupted by a concurrent ruleset change is retried.
pub(super) const DUMP_RETRIES: usize = 5;

/// Where a short-lived command hands over the sockets of transactions that deleted something
/// instead of closing them (see [`crate::adapters::fd_park`]); unset in long-lived processes.
static PARK: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();

/// Lets this process hand the sockets of deleting transactions to the agent's parking socket
/// `park` rather than wait for their release. Only for processes that exit soon.
pub fn park_sockets_at(park: std::path::PathBuf) {
    let _ = PARK.set(park);
}

/// Closes `sock`, or parks it when `deleted` and parking is set up.
fn release(sock: Socket, deleted: bool) {
    let start = std::time::Instant::now();
    match PARK.get().filter(|_| deleted) {
        Some(park) => {
            // SAFETY: `into_raw_fd` gives up `sock`'s ownership of the descriptor, which the
            // OwnedFd takes over; nothing else refers to it.
            let fd = unsafe {
                <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(
                    std::os::fd::IntoRawFd::into_raw_fd(sock),
                )
            };
            // Not parked: closed here, with the wait.
            let _ = crate::adapters::fd_park::park(park, fd);
        }
        None => drop(sock),
    }
    crate::timing::record("nft-release", start.elapsed());
}

/// Sequence numbers only need to be unique per socket; a process-wide counter keeps them
/// distinct across calls anyway, which makes `strace` output readable.
static NEXT_SEQ: AtomicU32 = AtomicU32::new(1);

fn next_seq(count: usize) -> u32 {
    NEXT_SEQ.fetch_add(
        u32::try_from(count).unwrap_or(u32::MAX).wrapping_add(2),
        Ordering::Relaxed,
    )
}

fn io_err(context: &'static str) -> impl FnOnce(io::Error) -> NftError {
    move |source| NftError::Io { context, source }
}

/// Best-effort `SO_*BUFFORCE` (needs CAP_NET_ADMIN, which any nf_tables write needs anyway),
/// falling back to the unprivileged option, which the kernel caps at `[rw]mem_max`.
fn set_buf(sock: &Socket, force: libc::c_int, plain: libc::c_int, bytes: usize) {
    let val = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    for opt in [force, plain] {
        // SAFETY: `val` is a live c_int and its exact size is passed; the fd is owned by
        // `sock` for the duration of the call.
        let rc = unsafe {
            libc::setsockopt(
                sock.as_raw_fd(),
                libc::SOL_SOCKET,
                opt,
                (&val as *const libc::c_int).cast(),
                crate::adapters::libc_consts::socklen_of::<libc::c_int>(),
            )
        };
        if rc == 0 {
            return;
        }
    }
}

/// Opens and binds a socket sized for `replies` acknowledgements and `send_len` bytes.
fn open(replies: usize, send_len: usize) -> Result<Socket, NftError> {
    let mut sock =
        Socket::new(NETLINK_NETFILTER).map_err(io_err("open NETLINK_NETFILTER socket"))?;
    sock.bind_auto().map_err(io_err("bind netlink socket"))?;
    sock.connect(&SocketAddr::new(0, 0))
        .map_err(io_err("connect netlink socket"))?;
    // Optional comforts: extended-ack error strings, and ACKs without a copy of our request.
    // Kernels without them still work, so failures are ignored.
    let _ = sock.set_ext_ack(true);
    let _ = sock.set_cap_ack(true);
    // Each ACK costs about one page of receive buffer (skb truesize); with the default
    // ~200 KiB, a batch of a few hundred messages would lose ACKs to ENOBUFS.
    let rcv = 256 * 1024 + replies * 4096;
    set_buf(&sock, libc::SO_RCVBUFFORCE, libc::SO_RCVBUF, rcv);
    if send_len > 128 * 1024 {
        // netlink refuses a datagram larger than the send buffer with EMSGSIZE.
        set_buf(
            &sock,
            libc::SO_SNDBUFFORCE,
            libc::SO_SNDBUF,
            send_len + 64 * 1024,
        );
    }
    Ok(sock)
}

/// Waits up to `timeout_ms` for the socket to become readable.
fn readable(sock: &Socket, timeout_ms: i32) -> Result<bool, NftError> {
    let mut pfd = libc::pollfd {
        fd: sock.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    loop {
        // SAFETY: one valid pollfd, count 1; the fd is owned by `sock`.
        let rc = unsafe { libc::poll(&mut pfd, 1, timeout_ms) };
        if rc >= 0 {
            return Ok(rc > 0);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(NftError::Io {
                context: "poll netlink socket",
                source: e,
            });
        }
    }
}

/// Reads one datagram into `buf` (cleared first).
fn recv(sock: &Socket, buf: &mut Vec<u8>) -> Result<(), NftError> {
    buf.clear();
    buf.reserve(RECV_CHUNK);
    let n = sock
        .recv(buf, libc::MSG_TRUNC)
        .map_err(io_err("receive from netlink socket"))?;
    if n > buf.len() {
        return Err(NftError::Malformed(format!(
            "reply of {n} bytes truncated to {}",
            buf.len()
        )));
    }
    Ok(())
}

/// The errno and extended-ack text of an `NLMSG_ERROR` payload (errno 0 is an ACK).
fn parse_error(flags: u16, payload: &[u8]) -> Result<(i32, Option<String>), NftError> {
    let raw = payload
        .get(..4)
        .and_then(|b| b.try_into().ok())
        .map(i32::from_ne_bytes)
        .ok_or_else(|| NftError::Malformed("short NLMSG_ERROR".into()))?;
    let errno = -raw;
    let mut text = None;
    if flags & NLM_F_ACK_TLVS != 0 {
        // After the errno comes our original header, alone if capped, else with its payload.
        let orig_len = payload
            .get(4..8)
            .and_then(|b| b.try_into().ok())
            .map(u32::from_ne_bytes)
            .unwrap_or(0) as usize;
        let skip = if flags & NLM_F_CAPPED != 0 {
            4 + 16
        } else {
            4 + orig_len.max(16)
        };
        if let Some(tlvs) = payload.get(crate::adapters::nla::align4(skip)..) {
            text = find_attr(tlvs, NLMSGERR_ATTR_MSG).map(|m| {
                String::from_utf8_lossy(m)
                    .trim_end_matches('\0')
                    .to_string()
            });
        }
    }
    Ok((errno, text))
}

fn strerror(errno: i32) -> String {
    let s = io::Error::from_raw_os_error(errno).to_string();
    match s.find(" (os error") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

pub(super) fn rejected(op: String, errno: i32, text: Option<String>) -> NftError {
    let message = match text {
        Some(t) if !t.is_empty() => format!("{} ({t})", strerror(errno)),
        _ => strerror(errno),
    };
    NftError::Rejected { op, errno, message }
}

/// Applies `batch` atomically in the current thread's network namespace.
///
/// Every message is acknowledged by the kernel; if any is refused, nothing of the batch is
/// applied and the error names the first refused message (`add rule to inet weft forward`).
/// [`NftError::MissingAck`] means the outcome is unknown (no reply within 10 s).
pub fn send(batch: &Batch) -> Result<(), NftError> {
    if batch.is_empty() {
        return Ok(());
    }
    // Sequence numbers only need to be unique per socket: take the counter's value, then
    // move it past what the batch used (element lists may take several messages each).
    let seq_start = NEXT_SEQ.load(Ordering::Relaxed);
    let wire = batch.encode_wire(seq_start)?;
    let n = wire.origin.len();
    NEXT_SEQ.fetch_add(
        u32::try_from(n).unwrap_or(u32::MAX).wrapping_add(2),
        Ordering::Relaxed,
    );
    let sock = open(n, wire.bytes.len())?;
    sock.send(&wire.bytes, 0).map_err(io_err("send batch"))?;

    // The description of netlink message `k`: that of the batch message it encodes.
    let batch_ops = batch.ops();
    let ops: Vec<&str> = wire
        .origin
        .iter()
        .map(|&i| batch_ops.get(i).map_or("nftables batch", String::as_str))
        .collect();
    let mut acked = vec![false; n];
    let mut remaining = n;
    // (message index or None for the begin/end markers, errno, ext-ack text)
    let mut first_err: Option<(Option<usize>, i32, Option<String>)> = None;
    let mut buf = Vec::new();
    while remaining > 0 {
        // Once the kernel has reported an error, every reply it will send is already queued.
        let timeout = if first_err.is_some() {
            0
        } else {
            REPLY_TIMEOUT_MS
        };
        if !readable(&sock, timeout)? {
            break;
        }
        recv(&sock, &mut buf)?;
        let msgs =
            parse_msgs(&buf).ok_or_else(|| NftError::Malformed("bad message length".into()))?;
        for m in msgs {
            if m.msg_type != NLMSG_ERROR {
                continue; // batches produce only ACKs/errors; ignore anything else
            }
            let (errno, text) = parse_error(m.flags, m.payload)?;
            let idx = m.seq.wrapping_sub(seq_start).wrapping_sub(1) as usize;
            let idx = (idx < n).then_some(idx);
            if let Some(i) = idx {
                if !acked[i] {
                    acked[i] = true;
                    remaining -= 1;
                }
            }
            if errno != 0 {
                // Keep the earliest message's error: later ones are often its consequences.
                let earlier = match (&first_err, idx) {
                    (None, _) => true,
                    (Some((Some(prev), ..)), Some(i)) => i < *prev,
                    _ => false,
                };
                if earlier {
                    first_err = Some((idx, errno, text));
                }
            }
        }
    }
    // Only additions free nothing after a grace period; anything else makes the socket's
    // close wait for one unless it is parked.
    let deleted = !batch.msgs().iter().all(|m| {
        matches!(
            m,
            crate::core::nft::Msg::AddElems { .. } | crate::core::nft::Msg::AddRule { .. }
        )
    });
    release(sock, deleted);
    if let Some((idx, errno, text)) = first_err {
        let op = match idx {
            Some(i) => ops[i].to_string(),
            None => "nftables batch".to_string(),
        };
        return Err(rejected(op, errno, text));
    }
    if remaining > 0 {
        let first = acked
            .iter()
            .position(|a| !a)
            .map(|i| ops[i].to_string())
            .unwrap_or_default();
        return Err(NftError::MissingAck {
            missing: remaining,
            total: n,
            first_op: first,
        });
    }
    Ok(())
}

/// Sends one request and collects the data messages of the reply until the final ACK or
/// `NLMSG_DONE`. Returns `Ok(None)` if the dump was interrupted by a concurrent change.
/// `family` is an `NFPROTO_*` value (`NFPROTO_UNSPEC`, 0, dumps every family).
pub(super) fn request(
    op: &str,
    msg_type: u16,
    flags: u16,
    family: u8,
    build: impl Fn(&mut Writer),
) -> Result<Option<Vec<Vec<u8>>>, NftError> {
    let seq = next_seq(1);
    let mut w = Writer::default();
    let m = w.begin_msg(
        (NFNL_SUBSYS_NFTABLES << 8) | msg_type,
        flags,
        seq,
        family,
        0,
    );
    build(&mut w);
    w.end_msg(m);
    let bytes = w.finish().map_err(|e| NftError::Encode {
        op: op.to_string(),
        reason: e.to_string(),
    })?;
    let sock = open(1, bytes.len())?;
    sock.send(&bytes, 0).map_err(io_err("send request"))?;

    let mut out = Vec::new();
    let mut interrupted = false;
    let mut buf = Vec::new();
    loop {
        if !readable(&sock, REPLY_TIMEOUT_MS)? {
            return Err(NftError::MissingAck {
                missing: 1,
                total: 1,
                first_op: op.to_string(),
            });
        }
        recv(&sock, &mut buf)?;
        let msgs =
            parse_msgs(&buf).ok_or_else(|| NftError::Malformed("bad message length".into()))?;
        for m in msgs {
            if m.seq != seq {
                continue;
            }
            if m.flags & NLM_F_DUMP_INTR != 0 {
                interrupted = true;
            }
            match m.msg_type {
                NLMSG_ERROR => {
                    let (errno, text) = parse_error(m.flags, m.payload)?;
                    if errno != 0 {
                        return Err(rejected(op.to_string(), errno, text));
                    }
                    return Ok((!interrupted).then_some(out));
                }
                NLMSG_DONE => {
                    // A dump may end with an error code in NLMSG_DONE.
                    if let Some(raw) = m.payload.get(..4).and_then(|b| b.try_into().ok()) {
                        let errno = -i32::from_ne_bytes(raw);
                        if errno == libc::EINTR {
                            return Ok(None);
                        }
                        if errno > 0 {
                            return Err(rejected(op.to_string(), errno, None));
                        }
                    }
                    return Ok((!interrupted).then_some(out));
                }
                NLMSG_NOOP | NLMSG_OVERRUN => {}
                _ => out.push(m.payload.to_vec()),
            }
        }
    }
}

/// Whether the table exists in the current thread's network namespace.
pub fn table_exists(family: Family, name: &str) -> Result<bool, NftError> {
    let op = format!("get table {family} {name}");
    let reply = request(
        &op,
        NFT_MSG_GETTABLE,
        NLM_F_REQUEST | NLM_F_ACK,
        family.nfproto(),
        |w| w.put_str(NFTA_TABLE_NAME, name),
    );
    match reply {
        Ok(_) => Ok(true),
        Err(e) if e.is_not_found() => Ok(false),
        Err(e) => Err(e),
    }
}

/// Every element of a set or map, as the kernel holds it. For interval sets the ranges come
/// back as start elements and `interval_end` elements, in the kernel's order. Catch-all
/// elements (no key) are left out. A missing table or set is [`NftError::Rejected`] with
/// `ENOENT` (see [`NftError::is_not_found`]).
pub fn list_set_elems(family: Family, table: &str, set: &str) -> Result<Vec<Elem>, NftError> {
    let op = format!("list set {family} {table} {set}");
    for _ in 0..DUMP_RETRIES {
        let reply = request(
            &op,
            NFT_MSG_GETSETELEM,
            NLM_F_REQUEST | NLM_F_DUMP,
            family.nfproto(),
            |w| {
                w.put_str(NFTA_SET_ELEM_LIST_TABLE, table);
                w.put_str(NFTA_SET_ELEM_LIST_SET, set);
            },
        )?;
        if let Some(payloads) = reply {
            let mut out = Vec::new();
            for p in &payloads {
                parse_elems(p, &mut out)?;
            }
            return Ok(out);
        }
    }
    Err(rejected(
        op,
        libc::EINTR,
        Some("ruleset kept changing during the dump".into()),
    ))
}

/// The keys of a set's elements (interval-end markers left out), e.g. the bridge names in an
/// `ifname` set, for garbage collection.
pub fn list_set_elements(family: Family, table: &str, set: &str) -> Result<Vec<Vec<u8>>, NftError> {
    Ok(list_set_elems(family, table, set)?
        .into_iter()
        .filter(|e| !e.interval_end)
        .map(|e| e.key)
        .collect())
}

/// Parses one NEWSETELEM payload (nfgenmsg + attributes).
fn parse_elems(payload: &[u8], out: &mut Vec<Elem>) -> Result<(), NftError> {
    let attrs_data = payload.get(4..).unwrap_or_default();
    let Some(list) = find_attr(attrs_data, NFTA_SET_ELEM_LIST_ELEMENTS) else {
        return Ok(());
    };
    for (ty, e) in attrs(list) {
        if ty != NFTA_LIST_ELEM {
            continue;
        }
        let value = |a: u16| {
            find_attr(e, a)
                .and_then(|n| find_attr(n, NFTA_DATA_VALUE))
                .map(<[u8]>::to_vec)
        };
        let Some(key) = value(NFTA_SET_ELEM_KEY) else {
            continue; // catch-all element
        };
        let flags = find_attr(e, NFTA_SET_ELEM_FLAGS)
            .and_then(be32)
            .unwrap_or(0);
        let data = match find_attr(e, NFTA_SET_ELEM_DATA) {
            None => None,
            Some(d) => Some(match find_attr(d, NFTA_DATA_VERDICT) {
                Some(v) => ElemData::Verdict(parse_verdict(v)?),
                None => ElemData::Value(find_attr(d, NFTA_DATA_VALUE).unwrap_or_default().to_vec()),
            }),
        };
        out.push(Elem {
            key,
            key_end: value(NFTA_SET_ELEM_KEY_END),
            interval_end: flags & NFT_SET_ELEM_INTERVAL_END != 0,
            data,
        });
    }
    Ok(())
}

fn parse_verdict(v: &[u8]) -> Result<Verdict, NftError> {
    let code = find_attr(v, NFTA_VERDICT_CODE)
        .and_then(be32)
        .ok_or_else(|| NftError::Malformed("verdict without code".into()))? as i32;
    let chain = || {
        find_attr(v, NFTA_VERDICT_CHAIN)
            .map(|c| {
                String::from_utf8_lossy(c)
                    .trim_end_matches('\0')
                    .to_string()
            })
            .ok_or_else(|| NftError::Malformed("jump/goto without chain".into()))
    };
    Ok(match code {
        NF_ACCEPT => Verdict::Accept,
        NF_DROP => Verdict::Drop,
        NFT_CONTINUE => Verdict::Continue,
        NFT_RETURN => Verdict::Return,
        NFT_JUMP => Verdict::Jump(chain()?),
        NFT_GOTO => Verdict::Goto(chain()?),
        other => return Err(NftError::Malformed(format!("unknown verdict code {other}"))),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_capped_error_with_ext_ack() {
        let mut p = Vec::new();
        p.extend_from_slice(&(-2i32).to_ne_bytes());
        p.extend_from_slice(&[0u8; 16]); // capped original header
        let mut w = Writer::default();
        w.put_str(NLMSGERR_ATTR_MSG, "no such set");
        p.extend_from_slice(&w.buf);
        let (errno, text) = parse_error(NLM_F_CAPPED | NLM_F_ACK_TLVS, &p).unwrap();
        assert_eq!(errno, 2);
        assert_eq!(text.as_deref(), Some("no such set"));
        assert!(parse_error(0, &[1]).is_err());
    }

    #[test]
    fn parses_dumped_elements() {
        let mut w = Writer::default();
        w.buf.extend_from_slice(&[1, 0, 0, 0]); // nfgenmsg
        w.put_str(NFTA_SET_ELEM_LIST_TABLE, "weft");
        let l = w.nest_start(NFTA_SET_ELEM_LIST_ELEMENTS);
        Elem::ifname("br0").encode(&mut w);
        Elem::prefix_v4("10.0.0.0/8".parse().unwrap())[1].encode(&mut w);
        Elem::new(vec![1, 2, 3, 4])
            .with_data(ElemData::Verdict(Verdict::Jump("c".into())))
            .encode(&mut w);
        w.nest_end(l);
        let mut out = Vec::new();
        parse_elems(&w.buf, &mut out).unwrap();
        assert_eq!(out.len(), 3);
        assert_eq!(out[0], Elem::ifname("br0"));
        assert!(out[1].interval_end);
        assert_eq!(out[1].key, vec![11, 0, 0, 0]);
        assert_eq!(
            out[2].data,
            Some(ElemData::Verdict(Verdict::Jump("c".into())))
        );
    }
}
