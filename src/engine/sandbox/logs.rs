//! `weft logs`: the sandbox's log, where its command's output goes when it runs detached
//! (`run -d`, `start`; a foreground run's output goes to the caller).

use std::fs::File;
use std::io::{self, Read as _, Seek as _, SeekFrom};
use std::time::Duration;

use anyhow::{Context as _, Result};

use crate::adapters::store::Mode;
use crate::adapters::store::Store as _;
use crate::core::logline::{Reader, Show};
use crate::core::model::{Sandbox, Status};
use crate::core::time::Timestamp;
use crate::engine::Ctx;
use crate::user_err;

use super::files::log_path;
use super::{find, is_running, monitor_alive};

/// Where the output of the sandbox's next run will begin in its log (0 when there is none
/// yet): where `start -a` begins. Its size now, past the newline the next run adds first when
/// the last one's output ended in the middle of a line ([`end_partial_line`]).
pub fn size(ctx: &Ctx, name: &str) -> Result<u64> {
    let id = {
        let tx = ctx.store.begin(Mode::Read)?;
        find(tx.as_ref(), name)?.id
    };
    let path = log_path(ctx, &id);
    let Ok(mut f) = crate::adapters::fs::open_read(&path) else {
        return Ok(0);
    };
    let len = f.metadata()?.len();
    Ok(if ends_mid_line(&mut f, len) {
        len.saturating_add(1)
    } else {
        len
    })
}

/// Whether the file of length `len` ends without a newline.
fn ends_mid_line(f: &mut File, len: u64) -> bool {
    let Some(last) = len.checked_sub(1) else {
        return false;
    };
    let mut byte = [0u8; 1];
    f.seek(SeekFrom::Start(last)).is_ok() && f.read_exact(&mut byte).is_ok() && byte[0] != b'\n'
}

/// The time now, as `--since`/`--until` durations count back from it.
pub fn now() -> Timestamp {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
    Timestamp(nanos)
}

/// Prints the log of sandbox `id` from byte `from`, or its last `tail` lines (`None`: all),
/// each line as `show` says (its time cut or kept, only lines within `--since`/`--until`);
/// with `follow`, then what it writes until its command exits and is not restarted (or
/// `--until` has passed).
pub fn print(
    ctx: &Ctx,
    id: &str,
    from: Option<u64>,
    tail: Option<u64>,
    follow: bool,
    show: Show,
) -> Result<()> {
    let path = log_path(ctx, id);
    let mut out = io::stdout().lock();
    let mut reader = Reader::new(show);
    let mut file = match crate::adapters::fs::open_read(&path) {
        Ok(f) => Some(f),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    if let Some(f) = file.as_mut() {
        let start = match (from, tail) {
            (Some(off), _) => off,
            (None, None) => 0,
            (None, Some(n)) => tail_offset(f, n)?,
        };
        f.seek(SeekFrom::Start(start))?;
        copy(f, &mut reader, &mut out)?;
    }
    if !follow {
        return finish(&mut reader, &mut out);
    }
    // The record as last read: it is read again only once the processes it names (the
    // command's init, its monitor) are gone, so that following a running sandbox holds no
    // store connection (and none of its locks) and costs no transaction per poll.
    let mut seen: Option<Sandbox> = None;
    loop {
        let alive = seen
            .as_ref()
            .is_some_and(|s| is_running(s) || monitor_alive(s));
        let done = if alive {
            false
        } else {
            let cur = {
                let tx = ctx.store.begin(Mode::Read)?;
                tx.sandbox(id)?
            };
            ctx.store.release();
            let done = cur.as_ref().is_none_or(|s| {
                s.status == Status::Removing
                    || !(is_running(s) || monitor_alive(s) || s.status == Status::Creating)
            });
            seen = cur;
            done
        } || show.until.is_some_and(|u| now() >= u);
        if file.is_none() {
            file = crate::adapters::fs::open_read(&path).ok();
        }
        if let Some(f) = file.as_mut() {
            copy(f, &mut reader, &mut out)?;
        }
        // Read once more after the end is seen: what the command wrote last is in.
        if done {
            return finish(&mut reader, &mut out);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The end of what is printed: a last line's start still held goes out.
fn finish(reader: &mut Reader, out: &mut impl io::Write) -> Result<()> {
    let mut shown = Vec::new();
    reader.finish(&mut shown);
    out.write_all(&shown)?;
    out.flush()?;
    Ok(())
}

/// Ends the log's last line if the previous run's output stopped in the middle of one, so
/// that the next run's first line starts a line of its own, with its own time (otherwise it
/// would read as the rest of that line, untimed). Best effort: a log that cannot be read is
/// left as it is.
pub(super) fn end_partial_line(path: &std::path::Path, log: &File) {
    use std::io::Write as _;
    let Ok(mut f) = crate::adapters::fs::open_read(path) else {
        return;
    };
    let len = f.metadata().map_or(0, |m| m.len());
    if ends_mid_line(&mut f, len) {
        let mut log = log;
        let _ = log.write_all(b"\n");
    }
}

/// The final exit code after `start -a`: from the monitor's report (`exit CODE`, the only
/// source for an `--rm` sandbox, removed by then), else as recorded for sandbox `id`.
pub fn final_code(ctx: &Ctx, id: &str, report: Option<super::ExitReport>) -> Result<i32> {
    use std::io::BufRead as _;
    if let Some(mut r) = report {
        let mut line = String::new();
        // Blocks until the monitor has recorded the end (and removed an `--rm` sandbox), or
        // died (end of file): no store connection held meanwhile.
        ctx.store.release();
        if r.read_line(&mut line).is_ok() {
            if let Some(code) = line.trim_end().strip_prefix("exit ") {
                if let Ok(code) = code.parse() {
                    return Ok(code);
                }
            }
        }
    }
    exit_code(ctx, id)
}

/// The exit code recorded for sandbox `id` (after `start -a`).
pub fn exit_code(ctx: &Ctx, id: &str) -> Result<i32> {
    let tx = ctx.store.begin(Mode::Read)?;
    let sb = tx
        .sandbox(id)?
        .ok_or_else(|| user_err!("the sandbox was removed; its exit code is gone"))?;
    Ok(sb.exit_code.unwrap_or(0))
}

/// Copies what the file has from its position on to `out`, through `reader`. Bounded
/// memory whatever the file holds: a block at a time.
fn copy(f: &mut File, reader: &mut Reader, out: &mut impl io::Write) -> Result<()> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut shown = Vec::with_capacity(buf.len() + 64);
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            out.flush()?;
            return Ok(());
        }
        shown.clear();
        reader.feed(&buf[..n], &mut shown);
        out.write_all(&shown)?;
    }
}

/// Where the last `n` lines of the file begin, read backwards in blocks (a log may be
/// large). A last line without its newline counts as a line.
fn tail_offset(f: &mut File, n: u64) -> Result<u64> {
    let len = f.metadata()?.len();
    if n == 0 || len == 0 {
        return Ok(len);
    }
    let mut last = [0u8; 1];
    f.seek(SeekFrom::Start(len - 1))?;
    f.read_exact(&mut last)?;
    // The newline ending the last line does not start another one.
    let mut end = if last[0] == b'\n' { len - 1 } else { len };
    let mut seen = 0u64;
    let mut buf = vec![0u8; 64 * 1024];
    while end > 0 {
        let size = end.min(buf.len() as u64);
        let start = end - size;
        let chunk = &mut buf[..usize::try_from(size)?];
        f.seek(SeekFrom::Start(start))?;
        f.read_exact(chunk)?;
        for (i, b) in chunk.iter().enumerate().rev() {
            if *b == b'\n' {
                seen += 1;
                if seen == n {
                    return Ok(start + i as u64 + 1);
                }
            }
        }
        end = start;
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;

    fn offset(text: &str, n: u64) -> usize {
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(text.as_bytes()).unwrap();
        usize::try_from(tail_offset(&mut f, n).unwrap()).unwrap()
    }

    #[test]
    fn tail_counts_lines_from_the_end() {
        let t = "a\nbb\nccc\n";
        assert_eq!(&t[offset(t, 0)..], "");
        assert_eq!(&t[offset(t, 1)..], "ccc\n");
        assert_eq!(&t[offset(t, 2)..], "bb\nccc\n");
        assert_eq!(&t[offset(t, 3)..], t);
        assert_eq!(&t[offset(t, u64::MAX)..], t);
        let u = "a\nbb";
        assert_eq!(&u[offset(u, 1)..], "bb");
        assert_eq!(&u[offset(u, 2)..], u);
        assert_eq!(offset("", 5), 0);
        // Across block boundaries.
        let big: String = (0..20_000).map(|i| format!("line {i}\n")).collect();
        assert_eq!(&big[offset(&big, 2)..], "line 19998\nline 19999\n");
    }
}
