//! The syslog receiver: one UDP socket on `--syslog-addr:--syslog-port` in the main poll loop.
//! Each datagram is parsed by [`crate::wire::syslog`], named after the machine that sent it
//! (the inventory by source address) and written as one log line by
//! [`crate::policy::syslog::log_line`], within the [`LogBudget`]. Nothing a sender does stops
//! the receiver: unparsable datagrams are logged as such and counted.

use std::io::{self, ErrorKind};
use std::net::SocketAddrV4;
use std::os::fd::{AsFd, BorrowedFd, RawFd};
use std::sync::Arc;
use std::time::Instant;

use log::{warn, Level};

use crate::config::{Config, Syslog};
use crate::inventory::InventoryStore;
use crate::io::udp::{UdpEndpoint, UdpOptions};
use crate::policy::budget::{Kind, Origin};
use crate::policy::syslog::log_line;
use crate::service::log_gate::LogGate;
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
    log: Arc<LogGate>,
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
            log: ctx.log.clone(),
            buf: vec![0; BUF_LEN],
        })
    }

    fn on_datagram(&mut self, from: SocketAddrV4, len: usize) {
        let datagram = &self.buf[..len];
        let parsed = Message::parse(datagram);
        match &parsed {
            Ok(m) => self.metrics.inc(
                "netbootd_syslog_messages_total",
                &[("format", m.format.name()), ("severity", m.severity.name())],
            ),
            Err(_) => self.metrics.inc("netbootd_syslog_unparsed_total", &[]),
        }
        if !self.log.enabled(Level::Info) {
            return;
        }
        let inventory = self.store.snapshot();
        let machine = inventory.by_ip(*from.ip());
        let line = log_line(from, machine, &parsed, datagram);
        let origin = Origin::Ip((*from.ip()).into());
        if !self.log.line(Kind::Syslog, origin, Level::Info, &line) {
            self.metrics.add("netbootd_syslog_suppressed_total", &[], 1);
        }
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
            "syslog receiver on UDP {}:{} (RFC 5424 and RFC 3164), within the log budget",
            self.cfg.addr, self.cfg.port
        )
    }

    fn fds(&self) -> Vec<BorrowedFd<'_>> {
        vec![self.socket.as_fd()]
    }

    fn on_readable(&mut self, _fd: RawFd, _now: Instant) {
        for _ in 0..BATCH {
            match self.socket.recv(&mut self.buf) {
                Ok(r) => self.on_datagram(r.from, r.len),
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => {
                    warn!("syslog: receive failed: {e}");
                    return;
                }
            }
        }
    }
}
