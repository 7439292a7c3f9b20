//! The syslog receiver: one UDP socket on `--syslog-addr:--syslog-port` in the main poll loop.
//! Each datagram is parsed by [`crate::wire::syslog`], named after the machine that sent it
//! (the inventory by source address) and written as one log line by
//! [`crate::policy::syslog::log_line`], within the [`LogBudget`]. Nothing a sender does stops
//! the receiver: unparsable datagrams are logged as such and counted.

use std::io::{self, ErrorKind};
use std::net::SocketAddrV4;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::Arc;
use std::time::Instant;

use log::{info, warn};

use crate::config::{Config, Syslog};
use crate::inventory::InventoryStore;
use crate::io::udp::{UdpEndpoint, UdpOptions};
use crate::policy::syslog::{log_line, LogBudget, LINES_PER_SECOND};
use crate::service::metrics::Metrics;
use crate::service::{Context, Service};
use crate::wire::syslog::Message;

/// Datagrams read per loop pass, so a flood cannot starve the other services.
const BATCH: usize = 64;
/// The largest UDP payload: a datagram is read whole, whatever its size.
const BUF_LEN: usize = 65536;
const RECV_BUFFER: usize = 1 << 20;

pub struct SyslogService {
    cfg: Syslog,
    socket: UdpEndpoint,
    store: Arc<InventoryStore>,
    metrics: Arc<Metrics>,
    budget: LogBudget,
    buf: Vec<u8>,
}

impl SyslogService {
    pub fn start(config: &Config, ctx: &Context) -> io::Result<SyslogService> {
        let cfg = &config.syslog;
        let socket = UdpEndpoint::bind(
            SocketAddrV4::new(cfg.addr, cfg.port),
            UdpOptions {
                recv_buffer: Some(RECV_BUFFER),
                ..UdpOptions::default()
            },
        )?;
        Ok(SyslogService {
            cfg: cfg.clone(),
            socket,
            store: ctx.inventory.clone(),
            metrics: ctx.metrics.clone(),
            budget: LogBudget::new(LINES_PER_SECOND),
            buf: vec![0; BUF_LEN],
        })
    }

    fn on_datagram(&mut self, from: SocketAddrV4, len: usize, now: Instant) {
        let datagram = &self.buf[..len];
        let parsed = Message::parse(datagram);
        match &parsed {
            Ok(m) => self.metrics.inc(
                "netbootd_syslog_messages_total",
                &[("format", m.format.name()), ("severity", m.severity.name())],
            ),
            Err(_) => self.metrics.inc("netbootd_syslog_unparsed_total", &[]),
        }
        let admission = self.budget.admit(now);
        if let Some(n) = admission.report {
            self.report_suppressed(n);
        }
        if !admission.log {
            return;
        }
        let inventory = self.store.snapshot();
        let machine = inventory.by_ip(*from.ip());
        info!("{}", log_line(from, machine, &parsed, datagram));
    }

    fn report_suppressed(&self, n: u64) {
        self.metrics.add("netbootd_syslog_suppressed_total", &[], n);
        warn!("syslog: {n} messages not logged (over {LINES_PER_SECOND} lines/s)");
    }
}

/// Each datagram is one log line within the budget; the budget's timer reports what it held
/// back. Nothing to finish at shutdown.
impl Service for SyslogService {
    fn name(&self) -> &'static str {
        "syslog"
    }

    fn describe(&self) -> String {
        format!(
            "syslog receiver on UDP {}:{} (RFC 5424 and RFC 3164), at most {LINES_PER_SECOND} lines/s",
            self.cfg.addr, self.cfg.port
        )
    }

    fn fds(&self) -> Vec<BorrowedFd<'_>> {
        vec![self.socket.as_fd()]
    }

    fn on_readable(&mut self, _index: usize, now: Instant) {
        for _ in 0..BATCH {
            match self.socket.recv(&mut self.buf) {
                Ok(r) => self.on_datagram(r.from, r.len, now),
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => {
                    warn!("syslog: receive failed: {e}");
                    return;
                }
            }
        }
    }

    fn poll_at(&self) -> Option<Instant> {
        self.budget.next_deadline()
    }

    fn on_timer(&mut self, now: Instant) {
        if let Some(n) = self.budget.on_timer(now) {
            self.report_suppressed(n);
        }
    }
}
