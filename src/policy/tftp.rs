//! TFTP decisions, pure: which files a requested name may mean ([`interpret_name`]), what the
//! server grants of the client's options ([`negotiate`]), and the read transfer itself as a
//! state machine driven by packets and an explicit clock ([`Transfer`]).
//!
//! The transfer keeps no file data: it says which block to send (offset and length) and the
//! I/O layer reads it, so a retransmission re-reads instead of buffering a window.
//!
//! Recovery: a timer per window (adaptive from measured round trips, Karn's rule, bounded by
//! the negotiated timeout) goes back to the first unacknowledged block (go-back-N) and backs
//! off; an ACK inside the window slides it and resends from there (RFC 7440's gap signal); a
//! duplicate ACK is ignored, so one late ACK never doubles the traffic (RFC 1123 §4.2.3.1,
//! the Sorcerer's Apprentice).

use std::time::{Duration, Instant};

use crate::policy::served::Links;
use crate::wire::tftp::{ErrorCode, Mode, Packet, RequestOptions, DEFAULT_BLKSIZE, MIN_BLKSIZE};

#[cfg(test)]
mod simulation;
#[cfg(test)]
mod tests;

/// Which served directory a candidate path is relative to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Root {
    Ipxe,
    Assets,
}

impl Root {
    /// How far symlinks may lead in this root: the iPXE directory is looked up by base name,
    /// and links placed directly in it are the operator's.
    pub fn links(self) -> Links {
        match self {
            Root::Ipxe => Links::TopLevelTrusted,
            Root::Assets => Links::Inside,
        }
    }
}

/// Why a name is refused before looking at any file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NameRefusal {
    /// A `..` component.
    Traversal,
    /// Empty after cleaning, or with control characters or undecodable bytes.
    BadName,
}

/// Smee appends a W3C traceparent to iPXE binary names (`ipxe.efi-00-<32 hex>-<16 hex>-01`).
pub fn strip_traceparent(name: &str) -> &str {
    const SUFFIX_LEN: usize = 1 + 2 + 1 + 32 + 1 + 16 + 1 + 2; // "-00-…-…-01"
    let Some(split) = name.len().checked_sub(SUFFIX_LEN) else {
        return name;
    };
    if !name.is_char_boundary(split) {
        return name; // the suffix is ASCII: a name cut inside a character has none
    }
    let (base, suffix) = name.split_at(split);
    let parts: Vec<&str> = suffix.split('-').collect();
    let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
    match parts.as_slice() {
        ["", version, trace, span, flags]
            if hex(version, 2)
                && hex(trace, 32)
                && hex(span, 16)
                && hex(flags, 2)
                && !base.is_empty() =>
        {
            base
        }
        _ => name,
    }
}

/// The files a requested name may mean, in the order to try them: the base name (without a
/// traceparent suffix) in the iPXE directory, so `/<mac>/ipxe.efi` finds `ipxe.efi`, then the
/// cleaned path below the assets directory. A leading `/` is allowed; `\` counts as `/`
/// (Windows-style boot files); `..` anywhere is refused.
pub fn interpret_name(name: &str) -> Result<Vec<(Root, String)>, NameRefusal> {
    if name.chars().any(|c| c.is_control() || c == '\u{fffd}') {
        return Err(NameRefusal::BadName);
    }
    let cleaned = name.replace('\\', "/");
    let parts: Vec<&str> = cleaned
        .split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .collect();
    if parts.contains(&"..") {
        return Err(NameRefusal::Traversal);
    }
    let Some(base) = parts.last() else {
        return Err(NameRefusal::BadName);
    };
    Ok(vec![
        (Root::Ipxe, strip_traceparent(base).to_string()),
        (Root::Assets, parts.join("/")),
    ])
}

/// The last element of a requested name (`/` and `\\` both separate).
pub fn base_name(name: &str) -> &str {
    name.rsplit(['/', '\\']).next().unwrap_or(name)
}

/// The `autoexec.ipxe` that iPXE builds without an embedded script ask for first: when
/// `--ipxe-script-patch` is set, the patch, then DHCP and the machine's script, so that a
/// signed iPXE binary served unmodified (Secure Boot) runs the patch too. `script_url` is the
/// machine's, or the default with iPXE's `${mac}` where the MAC goes when the client's
/// address names no machine. `None`: another name, or no patch (the file is then looked for
/// on disk as any other).
pub fn autoexec_script(name: &str, patch: Option<&str>, script_url: &str) -> Option<String> {
    if !base_name(name).eq_ignore_ascii_case("autoexec.ipxe") {
        return None;
    }
    let patch = patch?;
    Some(format!(
        "#!ipxe\n{patch}\ndhcp\nchain --autofree {script_url}\n"
    ))
}

/// The script URL `autoexec.ipxe` chains to: the machine's when its address is known,
/// else the default one with iPXE's `${mac}` in the MAC's place.
pub fn autoexec_script_url(
    machine: Option<&crate::inventory::Machine>,
    dhcp: &crate::config::Dhcp,
) -> String {
    match machine {
        Some(m) => crate::policy::dhcp::script_url(Some(m), m.mac, dhcp),
        None => {
            let zero = crate::wire::MacAddr([0; 6]);
            crate::policy::dhcp::script_url(None, zero, dhcp).replace(&zero.to_string(), "${mac}")
        }
    }
}

/// What the listener knows when a read request arrives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Admission {
    /// The client (address and port) already has a transfer running.
    pub running_for_client: bool,
    /// Transfers running now.
    pub running: usize,
    /// Transfers running now for the client's address (any port).
    pub running_for_address: usize,
    /// `--tftp-max-transfers`.
    pub max_transfers: usize,
    /// `--tftp-max-transfers-per-client`.
    pub max_per_client: usize,
    /// A shutdown has begun.
    pub draining: bool,
}

/// Whether a read request gets a transfer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Admit {
    Accept,
    /// The client repeated its request: the running transfer resends what is due.
    Repeat,
    /// An ERROR for the client, and the reason for the log.
    Refuse(ErrorCode, String),
}

/// Decides, before any file is looked at, whether a read request may start a transfer.
pub fn admit(mode: &Mode, state: &Admission) -> Admit {
    if state.running_for_client {
        return Admit::Repeat;
    }
    if state.draining {
        return Admit::Refuse(ErrorCode::NotDefined, "server shutting down".into());
    }
    if state.running >= state.max_transfers {
        let why = format!("server busy ({} transfers), try again", state.running);
        return Admit::Refuse(ErrorCode::NotDefined, why);
    }
    if state.running_for_address >= state.max_per_client {
        let why = format!(
            "busy: {} transfers from this address already, try again",
            state.running_for_address
        );
        return Admit::Refuse(ErrorCode::NotDefined, why);
    }
    if let Mode::Unknown(mode) = mode {
        let why = format!("mode {mode:?} not supported");
        return Admit::Refuse(ErrorCode::IllegalOperation, why);
    }
    Admit::Accept
}

/// netascii is converted in memory: larger files must be fetched in octet mode.
pub const MAX_NETASCII_FILE: u64 = 4 << 20;

/// Refuses a netascii transfer of a file too large to convert in memory.
pub fn netascii_fits(size: u64) -> Result<(), (ErrorCode, String)> {
    if size > MAX_NETASCII_FILE {
        return Err((
            ErrorCode::NotDefined,
            format!("netascii only up to {MAX_NETASCII_FILE} bytes; use octet mode"),
        ));
    }
    Ok(())
}

/// The answer to a name refused before any file was looked at.
impl NameRefusal {
    pub fn tftp_error(self) -> (ErrorCode, String) {
        match self {
            NameRefusal::Traversal => (
                ErrorCode::AccessViolation,
                "outside the served directories".into(),
            ),
            NameRefusal::BadName => (ErrorCode::FileNotFound, "file not found".into()),
        }
    }
}

/// What the server allows, whatever the client asks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// `--tftp-block-size`, further capped by the interface MTU (see [`blksize_cap`]).
    pub max_blksize: u16,
    pub max_windowsize: u16,
    /// Retransmission timeout when the client does not ask for one (`--tftp-timeout`).
    pub timeout: Duration,
    /// Consecutive timeouts before the transfer is abandoned.
    pub max_retries: u32,
}

/// The largest block that fits one IPv4 datagram on a link of `mtu` bytes.
pub fn blksize_cap(configured: u16, mtu: u32) -> u16 {
    let fits = mtu.saturating_sub(crate::wire::tftp::IP_UDP_HEADER_LEN as u32 + 4);
    (configured as u32).min(fits).max(MIN_BLKSIZE as u32) as u16
}

/// The options in force for one transfer, and the OACK that announces them (empty: no OACK,
/// the transfer starts with DATA 1).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Negotiated {
    pub blksize: u16,
    pub windowsize: u16,
    pub timeout: Duration,
    pub oack: Vec<(&'static str, String)>,
}

/// Grants each requested option within `limits`, in RFC 2347's way: the OACK names only what
/// was accepted, with the value granted. `size` is the number of bytes that will be sent.
pub fn negotiate(asked: &RequestOptions, size: u64, limits: &Limits) -> Negotiated {
    let mut oack = Vec::new();
    let blksize = match asked.blksize {
        Some(b) => {
            let granted = b.min(limits.max_blksize).max(MIN_BLKSIZE);
            oack.push(("blksize", granted.to_string()));
            granted
        }
        None => DEFAULT_BLKSIZE.min(limits.max_blksize),
    };
    if asked.tsize {
        oack.push(("tsize", size.to_string()));
    }
    let timeout = match asked.timeout {
        Some(t) => {
            oack.push(("timeout", t.to_string()));
            Duration::from_secs(t.into())
        }
        None => limits.timeout,
    };
    let windowsize = match asked.windowsize {
        Some(w) => {
            let granted = w.min(limits.max_windowsize).max(1);
            oack.push(("windowsize", granted.to_string()));
            granted
        }
        None => 1,
    };
    Negotiated {
        blksize,
        windowsize,
        timeout,
        oack,
    }
}

/// Something to put on the wire now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transmit {
    Oack,
    /// DATA `block` carrying `len` bytes of the content from `offset`.
    Data {
        block: u16,
        offset: u64,
        len: usize,
    },
}

/// How a transfer ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Complete,
    /// The client sent ERROR (OVMF sends 8 after learning `tsize`, then asks again).
    ClientError {
        code: ErrorCode,
        message: String,
    },
    /// `max_retries` timeouts in a row.
    TimedOut,
}

impl Outcome {
    pub fn describe(&self) -> String {
        match self {
            Outcome::Complete => "complete".into(),
            Outcome::ClientError { code, message } => {
                format!("client ended it (error {}: {message:?})", code.value())
            }
            Outcome::TimedOut => "timed out".into(),
        }
    }
}

/// Smallest retransmission timeout once round trips have been measured (as TCP's).
const MIN_RTO: Duration = Duration::from_millis(200);
/// Retransmission timeout before the first measurement (RFC 6298's 1 s).
const INITIAL_RTO: Duration = Duration::from_secs(1);
/// A transfer whose first packet (OACK or DATA 1) gets no ACK within this long is given up:
/// the client is gone, or never meant to read, and its slot goes back to the others. Until then
/// the first packet is resent every [`INITIAL_RTO`] without backing off (six tries: even at
/// 10 % loss each way a live client misses all six about 5 times in 100,000).
pub const FIRST_ACK_WAIT: Duration = Duration::from_secs(6);

/// A read transfer: which block goes out next, what the client has acknowledged, when to
/// retransmit. Blocks are counted from 1 without wrapping; the wire number is the low 16 bits,
/// so block 65536 goes out as 0 (the rollover most clients expect).
#[derive(Clone, Debug)]
pub struct Transfer {
    size: u64,
    blksize: u16,
    windowsize: u16,
    /// Upper bound of the retransmission timeout (the negotiated timeout).
    timeout: Duration,
    max_retries: u32,
    /// Blocks in the transfer: the last one is short (possibly empty).
    blocks: u64,
    /// Waiting for ACK 0 of the OACK; `oack_due` when it must be (re)sent.
    awaiting_oack_ack: bool,
    oack_due: bool,
    /// Highest block the client has acknowledged (0: none).
    acked: u64,
    /// Next block to send.
    next: u64,
    /// Highest block ever sent (to tell first sends from retransmissions).
    highest_sent: u64,
    deadline: Option<Instant>,
    /// Set when the first packet goes out; cleared by the first ACK (see [`FIRST_ACK_WAIT`]).
    first_ack_due: Option<Instant>,
    /// Any ACK has come (the OACK's or a block's).
    answered: bool,
    consecutive_timeouts: u32,
    rto: Duration,
    srtt: Option<Duration>,
    rttvar: Duration,
    /// A first transmission being timed: (block, sent at). Cleared on any go-back (Karn).
    timing: Option<(u64, Instant)>,
    retransmissions: u64,
    outcome: Option<Outcome>,
}

impl Transfer {
    pub fn new(size: u64, negotiated: &Negotiated, limits: &Limits) -> Transfer {
        let has_oack = !negotiated.oack.is_empty();
        Transfer {
            size,
            blksize: negotiated.blksize,
            windowsize: negotiated.windowsize.max(1),
            timeout: negotiated.timeout,
            max_retries: limits.max_retries,
            blocks: size / u64::from(negotiated.blksize) + 1,
            awaiting_oack_ack: has_oack,
            oack_due: has_oack,
            acked: 0,
            next: 1,
            highest_sent: 0,
            deadline: None,
            first_ack_due: None,
            answered: false,
            consecutive_timeouts: 0,
            rto: INITIAL_RTO.min(negotiated.timeout),
            srtt: None,
            rttvar: Duration::ZERO,
            timing: None,
            retransmissions: 0,
            outcome: None,
        }
    }

    pub fn outcome(&self) -> Option<&Outcome> {
        self.outcome.as_ref()
    }

    pub fn blksize(&self) -> u16 {
        self.blksize
    }

    pub fn windowsize(&self) -> u16 {
        self.windowsize
    }

    pub fn retransmissions(&self) -> u64 {
        self.retransmissions
    }

    /// Bytes the client has acknowledged.
    pub fn bytes_acknowledged(&self) -> u64 {
        (self.acked * u64::from(self.blksize)).min(self.size)
    }

    /// When [`Transfer::on_timeout`] must be called; `None` once finished.
    pub fn next_deadline(&self) -> Option<Instant> {
        if self.outcome.is_some() {
            return None;
        }
        match (self.deadline, self.first_ack_due) {
            (Some(d), Some(f)) => Some(d.min(f)),
            (d, f) => d.or(f),
        }
    }

    fn window_end(&self) -> u64 {
        (self.acked + u64::from(self.windowsize)).min(self.blocks)
    }

    fn backed_off_rto(&self) -> Duration {
        if !self.answered {
            return self.rto; // no backing off before the first ACK: see FIRST_ACK_WAIT
        }
        let factor = 1u32 << self.consecutive_timeouts.min(6);
        (self.rto * factor).min(self.timeout.max(self.rto))
    }

    /// The next packet to send now, if any. Call until it returns `None`.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<Transmit> {
        if self.outcome.is_some() {
            return None;
        }
        if !self.answered && self.first_ack_due.is_none() {
            self.first_ack_due = Some(now + FIRST_ACK_WAIT);
        }
        if self.awaiting_oack_ack {
            if !self.oack_due {
                return None;
            }
            self.oack_due = false;
            if self.timing.is_none() && self.consecutive_timeouts == 0 {
                self.timing = Some((0, now));
            }
            self.deadline = Some(now + self.backed_off_rto());
            return Some(Transmit::Oack);
        }
        if self.next > self.window_end() {
            return None;
        }
        let block = self.next;
        self.next += 1;
        if block <= self.highest_sent {
            self.retransmissions += 1;
        } else {
            self.highest_sent = block;
            if self.timing.is_none() {
                self.timing = Some((block, now));
            }
        }
        self.deadline = Some(now + self.backed_off_rto());
        let offset = (block - 1) * u64::from(self.blksize);
        let len = (self.size - offset.min(self.size)).min(u64::from(self.blksize)) as usize;
        Some(Transmit::Data {
            block: block as u16,
            offset,
            len,
        })
    }

    /// A packet from the client's transfer address.
    pub fn on_packet(&mut self, packet: &Packet, now: Instant) {
        if self.outcome.is_some() {
            return;
        }
        match packet {
            Packet::Ack { block } => self.on_ack(*block, now),
            Packet::Error { code, message } => {
                self.outcome = Some(Outcome::ClientError {
                    code: *code,
                    message: message.clone(),
                })
            }
            // A repeated request or anything else from the client: nothing to do.
            _ => {}
        }
    }

    fn on_ack(&mut self, block: u16, now: Instant) {
        if self.awaiting_oack_ack {
            if block == 0 {
                self.awaiting_oack_ack = false;
                self.progress(0, now);
            }
            return;
        }
        // The absolute block this ACK names: the one at or after `acked` with these low bits.
        let acked = self.acked + u64::from(block.wrapping_sub(self.acked as u16));
        if acked == self.acked || acked > self.highest_sent {
            return; // duplicate (Sorcerer's Apprentice) or never sent
        }
        self.progress(acked, now);
        if acked == self.blocks {
            self.outcome = Some(Outcome::Complete);
            return;
        }
        // RFC 7440: an ACK short of the window's end means the client missed the next block.
        if self.next <= acked {
            self.next = acked + 1;
        } else if acked < self.next - 1 {
            self.next = acked + 1;
            self.timing = None;
        }
    }

    /// The client has everything up to `acked`: measure, reset the backoff, re-arm the timer.
    fn progress(&mut self, acked: u64, now: Instant) {
        if let Some((timed, sent)) = self.timing {
            if acked >= timed {
                self.sample_rtt(now.saturating_duration_since(sent));
                self.timing = None;
            }
        }
        self.acked = acked;
        self.answered = true;
        self.first_ack_due = None;
        self.consecutive_timeouts = 0;
        self.deadline = Some(now + self.backed_off_rto());
    }

    /// RFC 6298's smoothing, bounded by [`MIN_RTO`] and the negotiated timeout.
    fn sample_rtt(&mut self, rtt: Duration) {
        match self.srtt {
            None => {
                self.srtt = Some(rtt);
                self.rttvar = rtt / 2;
            }
            Some(srtt) => {
                let diff = srtt.abs_diff(rtt);
                self.rttvar = (self.rttvar * 3 + diff) / 4;
                self.srtt = Some((srtt * 7 + rtt) / 8);
            }
        }
        let srtt = self.srtt.unwrap_or(rtt);
        self.rto = (srtt + self.rttvar * 4).clamp(MIN_RTO, self.timeout.max(MIN_RTO));
    }

    /// Call when [`Transfer::next_deadline`] has passed: go back to the first unacknowledged
    /// block (or the OACK), with a longer wait, or give up after `max_retries`.
    pub fn on_timeout(&mut self, now: Instant) {
        let Some(deadline) = self.next_deadline() else {
            return;
        };
        if now < deadline {
            return;
        }
        if self.first_ack_due.is_some_and(|due| now >= due) {
            self.outcome = Some(Outcome::TimedOut);
            return;
        }
        self.consecutive_timeouts += 1;
        if self.consecutive_timeouts > self.max_retries {
            self.outcome = Some(Outcome::TimedOut);
            return;
        }
        self.timing = None;
        if self.awaiting_oack_ack {
            self.oack_due = true;
            self.retransmissions += 1;
        } else {
            self.next = self.acked + 1;
        }
        self.deadline = Some(now + self.backed_off_rto());
    }
}
