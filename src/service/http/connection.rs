//! One HTTP connection with a worker: for each request head the loop has read, ask [`respond`]
//! what to answer, execute the plan (open the file it names, take a download slot, write the
//! head from [`emit_response_head`] and the body) and write the access log line; then the
//! connection goes back to the loop, or is closed.

use std::io::{self, ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::Ordering;
use std::time::Instant;

use log::Level;

use super::{bulk, Counted, Shared, BUSY, MAX_DOWNLOADS, WRITE_TIMEOUT};
use std::sync::Arc;

use crate::io::files::{open_served, send_file, Content, Hold, Served};
use crate::policy::assets::{find_markers, overlay};
use crate::policy::budget::{Kind, Origin};
use crate::policy::event::Event;
use crate::policy::http::{plan_file, plan_refusal, respond, Body, Plan};
use crate::policy::served::{Links, Refusal};
use crate::wire::http::{
    emit_response_head, head_end, method_and_target_for_log, RequestHead, MAX_HEAD_LEN,
};

/// How long a worker waits for a keep-alive client's next request before the loop takes the
/// connection back (the client sends it as soon as it has read the answer).
pub(super) const NEXT_REQUEST_WAIT: std::time::Duration = std::time::Duration::from_millis(10);

/// How long a request for an asset not cached yet waits for its upstream's head.
const UPSTREAM_HEAD_WAIT: std::time::Duration = std::time::Duration::from_secs(30);
/// How long a response waits for the next bytes of an asset still downloading.
const UPSTREAM_WAIT: std::time::Duration = std::time::Duration::from_secs(60);
/// Bytes read, patched and written at a time for a patched ISO.
const PATCH_CHUNK: usize = 64 << 10;
/// Files from this size on are sent by the [`bulk`] senders.
const BULK: u64 = 1 << 20;

/// A marker and what replaces it, in a served file (Smee's ISO).
struct Patch {
    marker: Arc<[u8]>,
    patch: Arc<[u8]>,
}

/// A planned response with its body in hand.
enum Payload {
    Bytes(Vec<u8>),
    /// `len` bytes of the content from `offset`.
    Served {
        content: Content,
        offset: u64,
        len: u64,
        patch: Option<Patch>,
        /// Keeps a cached asset marked in use until it is sent.
        _hold: Option<Hold>,
    },
}

impl Payload {
    fn len(&self) -> u64 {
        match self {
            Payload::Bytes(b) => b.len() as u64,
            Payload::Served { len, .. } => *len,
        }
    }
}

pub(super) struct Connection<'a> {
    stream: TcpStream,
    peer: SocketAddr,
    shared: &'a Shared,
    /// What the loop read: complete heads, maybe the start of the next.
    buf: Vec<u8>,
}

impl<'a> Connection<'a> {
    pub(super) fn new(
        stream: TcpStream,
        peer: SocketAddr,
        shared: &'a Shared,
        buf: Vec<u8>,
    ) -> Connection<'a> {
        Connection {
            stream,
            peer,
            shared,
            buf,
        }
    }

    /// Answers every request whose head is complete in the buffer, in order, and the next one
    /// too when it arrives whole within [`NEXT_REQUEST_WAIT`] (a keep-alive client sends it as
    /// soon as it has the answer). Returns true when the connection stays open for another
    /// request (its head is then the loop's to wait for), false when it is to be closed.
    pub(super) fn serve_buffered(&mut self) -> bool {
        loop {
            if !self.serve_complete_heads() {
                return false;
            }
            if !self.read_next_briefly() {
                return true;
            }
        }
    }

    /// Reads for up to [`NEXT_REQUEST_WAIT`] (the socket's read timeout, set when the loop
    /// handed the connection over); true when a whole head is then in the buffer.
    fn read_next_briefly(&mut self) -> bool {
        let mut chunk = [0u8; 2048];
        let got = match self.stream.read(&mut chunk) {
            Ok(n) if n > 0 => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
            _ => false, // closed, nothing yet, or an error: the loop finds out
        };
        got && head_end(&self.buf).is_some() && self.buf.len() <= MAX_HEAD_LEN * 2
    }

    /// Answers the complete heads in the buffer; false when the connection is to be closed.
    fn serve_complete_heads(&mut self) -> bool {
        while let Some(end) = head_end(&self.buf) {
            let raw: Vec<u8> = self.buf.drain(..end).collect();
            let started = Instant::now();
            let head = RequestHead::parse(&raw);
            let (plan, payload) = self.plan(&head);
            self.shared.metrics.inc(
                "netbootd_http_requests_total",
                &[("route", plan.route), ("status", &plan.status.to_string())],
            );
            let sent = self.send(&plan, payload);
            self.log(&raw, &plan, started, *sent.as_ref().unwrap_or(&0));
            if sent.is_err() || !plan.keep_alive {
                return false;
            }
        }
        true
    }

    /// The stream and what was read of the next request.
    pub(super) fn into_parts(self) -> (TcpStream, Vec<u8>) {
        (self.stream, self.buf)
    }

    /// A head that never completed (too large, or not within its deadline): the status, its
    /// access line, and the connection is closed by the caller.
    pub(super) fn refuse_head(&mut self, status: u16, why: &str) {
        let started = Instant::now();
        let plan = Plan::status(status, why);
        let sent = self.send(&plan, Payload::Bytes(body_of(&plan)));
        self.log(&[], &plan, started, sent.unwrap_or(0));
    }

    /// The policy's plan, with its body in hand: the named file opened (or refused), the
    /// health or metrics text rendered.
    fn plan(&self, head: &Result<RequestHead, crate::wire::http::HeadError>) -> (Plan, Payload) {
        let config = self.shared.config.snapshot();
        let inventory = self.shared.store.snapshot();
        let mut plan = respond(head, self.peer.ip(), &config, &inventory);
        let payload = match &plan.body {
            Body::Bytes(b) => Payload::Bytes(b.clone()),
            Body::Health => Payload::Bytes(self.health().into_bytes()),
            Body::Metrics => Payload::Bytes(self.shared.metrics.render().into_bytes()),
            Body::Unknown => {
                let pools = self.shared.pools.lock().unwrap_or_else(|e| e.into_inner());
                let now = crate::service::pool::wall_ms();
                Payload::Bytes(crate::policy::pool::unknown_json(&pools, now).into_bytes())
            }
            Body::File {
                root,
                relative,
                links,
            } => {
                // Body::File is the iPXE directory's.
                let patch = config.tftp.ipxe_script_patch.as_deref();
                let opened = open_served(root, relative, *links)
                    .map(|served| self.shared.ipxe_binaries.apply(served, patch));
                Self::served(&mut plan, head, opened, None)
            }
            Body::Asset { relative } => {
                let assets = &self.shared.assets;
                let opened = match &config.assets_dir {
                    Some(dir) => match open_served(dir, relative, Links::Inside) {
                        Err(Refusal::NotFound) => {
                            assets.open(&config.asset_cache, relative, UPSTREAM_HEAD_WAIT)
                        }
                        other => other,
                    },
                    None => assets.open(&config.asset_cache, relative, UPSTREAM_HEAD_WAIT),
                };
                Self::served(&mut plan, head, opened, None)
            }
            Body::Iso { patch } => {
                let opened = self.shared.assets.open_iso(&config, UPSTREAM_HEAD_WAIT);
                let patch = config.iso.as_ref().map(|iso| Patch {
                    marker: iso.magic.as_bytes().into(),
                    patch: patch.as_bytes().into(),
                });
                Self::served(&mut plan, head, opened, patch)
            }
        };
        (plan, payload)
    }

    /// The payload of a file opened for `plan` (or the refusal's answer).
    fn served(
        plan: &mut Plan,
        head: &Result<RequestHead, crate::wire::http::HeadError>,
        opened: Result<Served, Refusal>,
        patch: Option<Patch>,
    ) -> Payload {
        match opened {
            Ok(served) => {
                let range = head.as_ref().ok().and_then(|h| h.header("range"));
                match plan_file(plan, served.size, served.modified, &served.real, range) {
                    Some((offset, len)) => Payload::Served {
                        content: served.content,
                        offset,
                        len,
                        patch,
                        _hold: served.hold,
                    },
                    None => Payload::Bytes(body_of(plan)),
                }
            }
            Err(refusal) => {
                plan_refusal(plan, &refusal);
                Payload::Bytes(body_of(plan))
            }
        }
    }

    /// Writes the response; returns the body bytes sent. A served body takes one of the
    /// download slots (over the cap: 503 and the connection closes).
    fn send(&mut self, plan: &Plan, payload: Payload) -> io::Result<u64> {
        let _slot = match (&payload, plan.head_only) {
            (Payload::Served { .. }, false) => {
                let n = self.shared.downloads.fetch_add(1, Ordering::AcqRel);
                let slot = Counted(&self.shared.downloads);
                if n >= MAX_DOWNLOADS {
                    self.stream.write_all(BUSY)?;
                    return Err(io::Error::other("download slots full"));
                }
                Some(slot)
            }
            _ => None,
        };
        let head = emit_response_head(plan.status, &plan.headers, payload.len(), plan.keep_alive);
        if plan.head_only {
            self.stream.write_all(&head)?;
            return Ok(0);
        }
        match payload {
            Payload::Bytes(body) => {
                // One write: head and body leave in the same segment.
                let mut whole = head;
                whole.extend_from_slice(&body);
                self.stream.write_all(&whole)?;
                Ok(body.len() as u64)
            }
            Payload::Served {
                content,
                offset,
                len,
                patch: Some(patch),
                ..
            } => {
                (&self.stream).write_all(&head)?;
                send_patched(&self.stream, &content, offset, len, &patch).map(|()| len)
            }
            Payload::Served {
                content: Content::Growing(growing),
                offset,
                len,
                ..
            } => self.send_corked(&head, |stream| {
                // Each part as it arrives; an error after the head closes the connection,
                // which tells the client its body is short.
                bulk::send(
                    stream,
                    growing.file(),
                    offset,
                    len,
                    Some(growing.clone()),
                    UPSTREAM_WAIT,
                )
                .map(|()| len)
            }),
            Payload::Served {
                content: Content::Bytes(bytes),
                offset,
                len,
                ..
            } => {
                let part = bytes
                    .get(offset as usize..(offset + len) as usize)
                    .ok_or_else(|| io::Error::from(ErrorKind::UnexpectedEof))?;
                let mut whole = head;
                whole.extend_from_slice(part);
                self.stream.write_all(&whole)?;
                Ok(len)
            }
            Payload::Served {
                content: Content::File(file),
                offset,
                len,
                ..
            } => self.send_corked(&head, |stream| {
                if len >= BULK {
                    bulk::send(stream, &file, offset, len, None, WRITE_TIMEOUT)
                } else {
                    send_file(stream, &file, offset, len)
                }
                .map(|()| len)
            }),
        }
    }

    /// Writes `head`, then the body `send_body` sends, corked: the head and the body's first
    /// bytes share full segments.
    fn send_corked(
        &self,
        head: &[u8],
        send_body: impl FnOnce(&TcpStream) -> io::Result<u64>,
    ) -> io::Result<u64> {
        let cork = |on| socket2::SockRef::from(&self.stream).set_tcp_cork(on);
        let _ = cork(true);
        let sent = (&self.stream)
            .write_all(head)
            .and_then(|()| send_body(&self.stream));
        let _ = cork(false);
        sent
    }

    /// The access log line: client, method, path, status, bytes, duration, machine, note. A
    /// script, binary or asset served is a machine booting: always written; every other line
    /// is one a client can cause at will, within the log budget.
    fn log(&self, raw: &[u8], plan: &Plan, started: Instant, bytes: u64) {
        let gate = &self.shared.log;
        if !gate.enabled(Level::Info) {
            return;
        }
        let (method, path) = method_and_target_for_log(raw);
        let mac = plan.mac.as_deref().unwrap_or("-");
        let secs = started.elapsed().as_secs_f64();
        let event = Event::new(format!(
            "http {} {method} {path} -> {} {bytes} bytes in {secs:.3}s mac={mac} {}",
            self.peer, plan.status, plan.note
        ))
        .str("client", self.peer)
        .str("method", &method)
        .str("path", &path)
        .num("status", u64::from(plan.status))
        .num("bytes", bytes)
        .secs("secs", secs)
        .str("mac", mac)
        .str("route", plan.route)
        .str("note", &plan.note);
        let boot =
            matches!(plan.status, 200 | 206) && matches!(plan.route, "script" | "ipxe" | "assets");
        if boot {
            gate.always(Level::Info, &event);
        } else {
            gate.line(Kind::Http, Origin::Ip(self.peer.ip()), Level::Info, &event);
        }
    }

    fn health(&self) -> String {
        let s = self.shared;
        let inventory = s.store.snapshot();
        let source = s
            .source
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(source_json)
            .unwrap_or_default();
        format!(
            "{{\"git_rev\":\"{}\",\"uptime\":{:.3},\"goroutines\":{},\"version\":\"{}\",\"machines\":{},\"inventory_generation\":{},\"http_connections\":{},\"http_downloads\":{}{source}}}\n",
            option_env!("NETBOOTD_GIT_REV").unwrap_or("unknown"),
            s.started.elapsed().as_secs_f64(),
            crate::io::limits::thread_count(),
            env!("CARGO_PKG_VERSION"),
            inventory.len(),
            s.store.generation(),
            s.connections.load(Ordering::Relaxed),
            s.downloads.load(Ordering::Relaxed),
        )
    }
}

/// `,"source":{...}`: a remote source's state, its snapshot's age in seconds (null: none yet),
/// its machines and its last error.
fn source_json(status: &crate::service::SourceStatus) -> String {
    let mut error = String::new();
    match &status.last_error {
        Some(e) => crate::wire::json::string_into(&mut error, e),
        None => error.push_str("null"),
    }
    let age = status.fetched_at.map_or("null".to_string(), |at| {
        format!("{:.3}", at.elapsed().as_secs_f64())
    });
    format!(
        ",\"source\":{{\"name\":\"{}\",\"state\":\"{}\",\"age\":{age},\"machines\":{},\"last_error\":{error}}}",
        status.name, status.state, status.machines
    )
}

/// Sends `len` bytes from `offset` with every marker replaced by the patch: each chunk is
/// read with a marker's length of context on both sides, so a marker split between chunks
/// (or cut by the range) is found whole. Memory: one chunk, whatever the file's size.
fn send_patched(
    stream: &TcpStream,
    content: &Content,
    offset: u64,
    len: u64,
    patch: &Patch,
) -> io::Result<()> {
    let size = match content {
        Content::Growing(g) => g.length_now().unwrap_or(offset + len),
        Content::File(f) => f.metadata()?.len(),
        Content::Bytes(b) => b.len() as u64,
    };
    let context = patch.marker.len() as u64 - 1;
    let mut buf = Vec::new();
    let mut at = offset;
    let end = offset + len;
    while at < end {
        let chunk_end = end.min(at + PATCH_CHUNK as u64);
        let lo = at.saturating_sub(context);
        let hi = size.min(chunk_end + context);
        buf.resize((hi - lo) as usize, 0);
        content.read_exact_at(&mut buf, lo, UPSTREAM_WAIT)?;
        let markers = find_markers(&buf, lo, &patch.marker);
        overlay(&mut buf, lo, &markers, patch.marker.len(), &patch.patch);
        let mut out: &TcpStream = stream;
        out.write_all(&buf[(at - lo) as usize..(chunk_end - lo) as usize])?;
        at = chunk_end;
    }
    Ok(())
}

/// The bytes of a plan whose body was decided by the policy.
fn body_of(plan: &Plan) -> Vec<u8> {
    match &plan.body {
        Body::Bytes(b) => b.clone(),
        _ => Vec::new(),
    }
}
