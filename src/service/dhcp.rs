//! The DHCP service: its sockets, and for each datagram parse → decide → log → send.
//!
//! - With `--dhcp-iface`: a packet socket on that interface receives every frame for UDP 67
//!   (BPF-filtered) and sends replies as whole frames to the client's MAC or broadcast; a UDP
//!   socket on port 67 bound to the same interface (filtered to receive nothing) keeps the
//!   kernel from answering with ICMP and sends replies to relays.
//! - Without it: one UDP socket on `--dhcp-addr`; broadcast replies leave by the interface the
//!   request came in on (IP_PKTINFO).
//! - Always: the PXE boot server on UDP 4011.
//!
//! - With `[[pool]]` tables (reservation mode): unknown MACs go to the address pool
//!   ([`crate::policy::pool`]); a new address is probed first (the DISCOVER waits, then is
//!   decided again), and a pool ACK leaves only once its journal record is synced: the ACKs
//!   of one batch of datagrams share one `fdatasync`.
//!
//! Decisions are [`crate::policy::dhcp`]'s and [`crate::policy::pool`]'s; this module only
//! does the I/O and the log line.

use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::sync::Arc;
use std::time::Instant;

use log::{debug, error, info, log_enabled, warn, Level};

use crate::config::{Config, Dhcp, DhcpMode};
use crate::inventory::Inventory;
use crate::inventory::InventoryStore;
use crate::io::packet::{PacketSocket, DROP_ALL};
use crate::io::udp::{Received, UdpEndpoint, UdpOptions};
use crate::policy::budget::{Kind, Origin};
use crate::policy::dhcp::{
    classify, decide, network_of, pool_ask, pool_reply, screen, Destination, Port, Reply, Silence,
    Source, Verdict,
};
use crate::policy::event::Event;
use crate::policy::pool::{printable, Decision, Quiet, Sighting};
use crate::service::log_gate::LogGate;
use crate::service::metrics::Metrics;
use crate::service::pool::{wall_ms, PoolRuntime, ProbeBy, MAX_PROBES, PROBE_WAIT};
use crate::service::{Context, Service};
use crate::wire::dhcp::{code, Message, MessageType, CLIENT_PORT, PXE_PORT, SERVER_PORT};
use crate::wire::frame::{emit_udp_frame, parse_udp_frame};
use crate::wire::MacAddr;

/// Datagrams handled per socket per loop pass, so one busy socket cannot starve the others.
const BATCH: usize = 256;
/// Receive buffer: a frame of any size the interface can deliver is read whole or dropped.
const BUF_LEN: usize = 9216;
const RECV_BUFFER: usize = 4 << 20;

enum Input {
    /// `--dhcp-iface`: frames in, frames out; `relay` only sends to relays.
    Packet {
        raw: PacketSocket,
        relay: UdpEndpoint,
    },
    /// No interface: one UDP socket for everything.
    Udp(UdpEndpoint),
}

pub struct DhcpService {
    cfg: Dhcp,
    store: Arc<InventoryStore>,
    metrics: Arc<Metrics>,
    log: Arc<LogGate>,
    lookups: Arc<crate::service::Lookups>,
    input: Input,
    boot_server: UdpEndpoint,
    buf: Vec<u8>,
    /// The address pool, with `[[pool]]` tables in reservation mode.
    pool: Option<PoolRuntime>,
    /// DISCOVERs waiting for the probe of the address they are to be offered.
    probes: Vec<Probe>,
    /// Pool ACKs waiting for their journal records to be synced.
    held: Vec<(Message, Reply, Arrival)>,
}

/// A DISCOVER whose address is being probed.
struct Probe {
    ip: std::net::Ipv4Addr,
    deadline: Instant,
    msg: Message,
    arrival: Arrival,
    from: SocketAddrV4,
    /// Probes run for this DISCOVER so far (each answered one picks another address).
    attempts: u8,
}

/// Addresses probed for one DISCOVER before it is left unanswered (the client asks again).
const MAX_PROBE_ATTEMPTS: u8 = 4;

/// Where a request came from, for the reply and the log.
#[derive(Clone)]
struct Arrival {
    port: Port,
    /// Interface index (UDP mode), to send broadcasts back out of it.
    ifindex: Option<u32>,
    /// Its source address, and whether it came over loopback (for [`screen`]).
    source: Source,
}

/// A UDP datagram's source for [`screen`]: 127.0.0.0/8 can only come, or be sent to, over
/// loopback (the kernel drops such "martians" on other interfaces).
fn udp_source(r: &Received) -> Source {
    Source {
        ip: *r.from.ip(),
        on_loopback: r.from.ip().is_loopback() || r.local.is_some_and(|l| l.is_loopback()),
    }
}

impl DhcpService {
    /// Opens the sockets. Fails (with the socket named) when a port is taken or the
    /// interface is missing or privileges are lacking.
    pub fn start(config: &Config, ctx: &Context) -> io::Result<DhcpService> {
        let cfg = &config.dhcp;
        let iface = cfg.iface.as_deref();
        let input = match iface {
            Some(name) => Input::Packet {
                raw: PacketSocket::open_dhcp_server(name).map_err(|e| {
                    io::Error::new(e.kind(), format!("packet socket on {name}: {e}"))
                })?,
                relay: UdpEndpoint::bind(
                    cfg.addr,
                    UdpOptions {
                        interface: Some(name),
                        filter: Some(&DROP_ALL),
                        ..UdpOptions::default()
                    },
                )?,
            },
            None => Input::Udp(UdpEndpoint::bind(
                cfg.addr,
                UdpOptions {
                    broadcast: true,
                    packet_info: true,
                    recv_buffer: Some(RECV_BUFFER),
                    ..UdpOptions::default()
                },
            )?),
        };
        let boot_server = UdpEndpoint::bind(
            SocketAddrV4::new(*cfg.addr.ip(), PXE_PORT),
            UdpOptions {
                interface: iface,
                broadcast: true,
                packet_info: true,
                ..UdpOptions::default()
            },
        )?;
        let pool = if config.pools.is_empty() || cfg.mode != DhcpMode::Reservation {
            None
        } else {
            let runtime = PoolRuntime::start(
                config,
                ctx.pools.clone(),
                ctx.metrics.clone(),
                Instant::now(),
            )
            .map_err(io::Error::other)?;
            Some(runtime)
        };
        Ok(DhcpService {
            cfg: cfg.clone(),
            store: ctx.inventory.clone(),
            metrics: ctx.metrics.clone(),
            log: ctx.log.clone(),
            lookups: ctx.lookups.clone(),
            input,
            boot_server,
            buf: vec![0; BUF_LEN],
            pool,
            probes: Vec::new(),
            held: Vec::new(),
        })
    }

    fn receive_main(&mut self) -> io::Result<()> {
        let mut buf = std::mem::take(&mut self.buf);
        // (payload range in `buf`, arrival, source) of a datagram for UDP 67.
        let received = match &self.input {
            Input::Packet { raw, .. } => {
                let on_loopback = raw.interface == "lo";
                raw.recv(&mut buf).map(|frame| {
                    let base = frame.as_ptr() as usize;
                    match parse_udp_frame(frame) {
                        Ok(udp) if udp.dst.port() == SERVER_PORT => {
                            let start = udp.payload.as_ptr() as usize - base;
                            let arrival = Arrival {
                                port: Port::Dhcp,
                                ifindex: None,
                                source: Source {
                                    ip: *udp.src.ip(),
                                    on_loopback,
                                },
                            };
                            Some((start..start + udp.payload.len(), arrival, udp.src))
                        }
                        Ok(_) => None,
                        Err(e) => {
                            debug!("dhcp: dropped a frame: {e}");
                            None
                        }
                    }
                })
            }
            Input::Udp(udp) => udp.recv(&mut buf).map(|r| {
                let arrival = Arrival {
                    port: Port::Dhcp,
                    ifindex: r.ifindex,
                    source: udp_source(&r),
                };
                Some((0..r.len, arrival, r.from))
            }),
        };
        let result = received.map(|got| {
            if let Some((range, arrival, from)) = got {
                self.handle(&buf[range], &arrival, from);
            }
        });
        self.buf = buf;
        result
    }

    fn receive_boot_server(&mut self) -> io::Result<()> {
        let mut buf = std::mem::take(&mut self.buf);
        let result = self.boot_server.recv(&mut buf).map(|r| {
            let arrival = Arrival {
                port: Port::BootServer { source: r.from },
                ifindex: r.ifindex,
                source: udp_source(&r),
            };
            self.handle(&buf[..r.len], &arrival, r.from);
        });
        self.buf = buf;
        result
    }

    /// One datagram: parse, decide, log, send.
    fn handle(&mut self, payload: &[u8], arrival: &Arrival, from: SocketAddrV4) {
        let msg = match Message::parse(payload) {
            Ok(m) => m,
            Err(e) => {
                self.metrics.inc("netbootd_dhcp_malformed_total", &[]);
                debug!("dhcp: dropped {} bytes from {from}: {e}", payload.len());
                return;
            }
        };
        self.process(msg, arrival.clone(), from, 0);
    }

    /// Decides on a parsed request (again, after a probe: `attempts` probes so far), logs,
    /// and sends the reply or holds it for the journal.
    #[inline(never)]
    fn process(&mut self, msg: Message, arrival: Arrival, from: SocketAddrV4, attempts: u8) {
        let inventory = self.store.snapshot();
        let mut verdict = screen(&msg, &arrival.source, &self.cfg)
            .and_then(|()| decide(&msg, arrival.port, &inventory, &self.cfg));
        // A MAC the inventory does not know: the remote source (if any) looks it up now, so a
        // machine just added there is answered at the client's next retransmission.
        if let Some(mac) = msg.mac().filter(|m| inventory.by_mac(*m).is_none()) {
            if attempts == 0 {
                self.lookups.request(mac);
            }
        }
        let mut from_pool = false;
        if self.pool.is_some() && arrival.port == Port::Dhcp {
            (verdict, from_pool) =
                self.pool_step(&msg, &arrival, from, &inventory, verdict, attempts);
        }
        self.count(&msg, &arrival, &verdict);
        self.log(&msg, &arrival, &verdict);
        let Ok(reply) = verdict else {
            return;
        };
        // A pool ACK waits for its record to be durable (see `commit`).
        if from_pool && reply.message_type() == MessageType::Ack {
            self.held.push((msg, reply, arrival));
        } else {
            self.send_logged(&msg, &reply, &arrival);
        }
    }

    #[inline(never)]
    fn send_logged(&self, msg: &Message, reply: &Reply, arrival: &Arrival) {
        if let Err(e) = self.send(msg, reply, arrival) {
            warn!(
                "dhcp: xid={:#010x} sending {} to {} failed: {e}",
                msg.xid,
                reply.message_type(),
                reply.to
            );
        }
    }

    /// The pool's part: an unknown MAC is answered from the pool (or probed for); a known MAC
    /// that held a pool lease loses it. Returns the verdict and whether the pool decided it.
    #[inline(never)]
    fn pool_step(
        &mut self,
        msg: &Message,
        arrival: &Arrival,
        from: SocketAddrV4,
        inventory: &Inventory,
        verdict: Verdict,
        attempts: u8,
    ) -> (Verdict, bool) {
        let Some(pool) = self.pool.as_mut() else {
            return (verdict, false);
        };
        let Some(mac) = msg.mac() else {
            return (verdict, false);
        };
        if !matches!(verdict, Err(Silence::UnknownMachine)) {
            if inventory.by_mac(mac).is_some() {
                if let Some(ip) = pool.lock().forget_mac(mac) {
                    info!("pool: {mac} is in the inventory now: its pool lease of {ip} is dropped");
                }
            }
            return (verdict, false);
        }
        let now = wall_ms();
        let ask = match pool_ask(msg, &self.cfg) {
            Ok(ask) => ask,
            Err(why) => return (Err(why), true),
        };
        let mut pools = pool.lock();
        if attempts == 0 {
            pools.saw(sighting(msg, &self.cfg), now);
        }
        let decision = pools.handle(&ask, now, &|ip| inventory.by_ip(ip).is_some());
        let index = match &decision {
            Decision::Offer { pool, .. }
            | Decision::Ack { pool, .. }
            | Decision::Probe { pool, .. } => Some(*pool),
            _ => None,
        };
        let settings = index.and_then(|i| pools.settings(i)).cloned();
        if let (Decision::Probe { ip, .. }, Some(s)) = (&decision, &settings) {
            let by = pool.probe_by(s);
            let unprobed = by == ProbeBy::Nothing || self.probes.len() >= MAX_PROBES;
            if unprobed {
                // Nothing to probe with, or too many probes running: offer it as it is.
                pools.probe_result(*ip, false, now);
                if by != ProbeBy::Nothing {
                    self.metrics.inc("netbootd_pool_probes_skipped_total", &[]);
                }
                let decision = pools.handle(&ask, now, &|ip| inventory.by_ip(ip).is_some());
                drop(pools);
                return (
                    pool_reply(msg, &decision, settings.as_ref(), &self.cfg),
                    true,
                );
            }
            drop(pools);
            self.metrics.inc("netbootd_pool_probes_total", &[]);
            if let Err(e) = pool.send_probe(by, *ip) {
                debug!("pool: probing {ip}: {e}");
            }
            self.probes.push(Probe {
                ip: *ip,
                deadline: Instant::now() + PROBE_WAIT,
                msg: msg.clone(),
                arrival: arrival.clone(),
                from,
                attempts: attempts + 1,
            });
            return (Err(Silence::Pool(Quiet::Probing(*ip))), true);
        }
        drop(pools);
        (
            pool_reply(msg, &decision, settings.as_ref(), &self.cfg),
            true,
        )
    }

    /// Probes answered on probe socket `fd`: each address is quarantined and its DISCOVER
    /// decided again (another address).
    fn on_probe_answers(&mut self, fd: RawFd) {
        let Some(pool) = &self.pool else { return };
        let answered = pool.answers(fd);
        for ip in answered {
            let Some(i) = self.probes.iter().position(|p| p.ip == ip) else {
                continue;
            };
            let probe = self.probes.swap_remove(i);
            if let Some(pool) = &self.pool {
                pool.lock().probe_result(ip, true, wall_ms());
            }
            self.metrics.inc("netbootd_pool_probes_answered_total", &[]);
            warn!(
                "pool: {ip} answered a probe: something uses it; not offered to {} (quarantined for 10 minutes)",
                probe.msg.mac().map_or_else(|| "-".into(), |m| m.to_string())
            );
            if probe.attempts < MAX_PROBE_ATTEMPTS {
                self.process(probe.msg, probe.arrival, probe.from, probe.attempts);
            }
        }
    }

    /// Probes whose wait is over with no answer: their DISCOVERs get the offer now.
    fn on_probe_deadlines(&mut self, now: Instant) {
        let mut due = Vec::new();
        self.probes.retain(|p| {
            let over = p.deadline <= now;
            if over {
                due.push((p.ip, p.msg.clone(), p.arrival.clone(), p.from, p.attempts));
            }
            !over
        });
        for (ip, msg, arrival, from, attempts) in due {
            if let Some(pool) = &self.pool {
                pool.lock().probe_result(ip, false, wall_ms());
            }
            self.process(msg, arrival, from, attempts);
        }
    }

    /// A new inventory: MACs it knows leave the discovery list (and lose their pool lease)
    /// even if they never ask again.
    fn prune_known(&mut self) {
        let generation = self.store.generation();
        let Some(pool) = self.pool.as_mut() else {
            return;
        };
        if pool.seen_generation == generation {
            return;
        }
        pool.seen_generation = generation;
        let inventory = self.store.snapshot();
        let known = pool
            .lock()
            .prune_known(&|mac| inventory.by_mac(mac).is_some());
        for (mac, held) in known {
            match held {
                Some(ip) => {
                    info!("pool: {mac} is in the inventory now: its pool lease of {ip} is dropped")
                }
                None => info!("pool: {mac} is in the inventory now: it leaves the unknown list"),
            }
        }
    }

    /// Makes the pool's records durable, then sends the ACKs that waited for them. A journal
    /// that cannot be written sends none (each is logged): a lease is never promised unless it
    /// will survive a crash.
    fn commit(&mut self) {
        let Some(pool) = self.pool.as_mut() else {
            return;
        };
        if self.held.is_empty() && !pool.lock().has_records() {
            return;
        }
        let result = pool.commit();
        let held = std::mem::take(&mut self.held);
        match result {
            Ok(()) => {
                for (msg, reply, arrival) in &held {
                    self.send_logged(msg, reply, arrival);
                }
            }
            Err(e) => {
                self.metrics.inc("netbootd_pool_journal_errors_total", &[]);
                error!(
                    "pool: the journal cannot be written ({e}): {} ACKs not sent",
                    held.len()
                );
            }
        }
    }

    /// `netbootd_dhcp_packets_total{port, type, verdict}`: verdict is the reply's type or the
    /// reason for silence.
    fn count(&self, msg: &Message, arrival: &Arrival, verdict: &Verdict) {
        // Labels from a fixed set: a client cannot mint series.
        let msg_type = msg.message_type().map_or("BOOTP", MessageType::label);
        let answer = match verdict {
            Ok(r) => r.message_type().label(),
            Err(why) => why.label(),
        };
        let port = match arrival.port {
            Port::Dhcp => "67",
            Port::BootServer { .. } => "4011",
        };
        self.metrics.inc(
            "netbootd_dhcp_packets_total",
            &[("port", port), ("type", msg_type), ("verdict", answer)],
        );
    }

    #[inline(never)]
    fn log(&mut self, msg: &Message, arrival: &Arrival, verdict: &Verdict) {
        if let Err(Silence::Pool(Quiet::Full { pool })) = verdict {
            return self.log_pool_full(*pool);
        }
        let level = match verdict {
            Ok(_) => Level::Info,
            Err(why) if why.is_notable() => Level::Warn,
            Err(why) if why.is_routine() => Level::Debug,
            Err(_) => Level::Info,
        };
        // Building the line costs more than deciding: skip it when nobody reads it.
        if !log_enabled!(level) {
            return;
        }
        let client = classify(msg, &self.cfg);
        let msg_type = msg
            .message_type()
            .map_or_else(|| "BOOTP".to_string(), |t| t.to_string());
        let mac = msg.mac().map_or_else(|| "-".to_string(), |m| m.to_string());
        let arch = client
            .arch
            .map_or_else(|| "-".to_string(), |a| a.to_string());
        let via = match arrival.port {
            Port::BootServer { source } => format!(" port=4011 from={source}"),
            Port::Dhcp if !msg.giaddr.is_unspecified() => format!(" relay={}", msg.giaddr),
            Port::Dhcp => String::new(),
        };
        let head = format!(
            "dhcp: {msg_type} xid={:#010x} mac={mac} arch={arch} client={} mode={}{via}",
            msg.xid,
            client.kind,
            self.cfg.mode.as_str()
        );
        let mut event = Event::new(String::new())
            .str("msg_type", &msg_type)
            .str("xid", format!("{:#010x}", msg.xid))
            .str("mac", &mac)
            .str("arch", &arch)
            .str("client", client.kind)
            .str("mode", self.cfg.mode.as_str());
        match arrival.port {
            Port::BootServer { source } => event = event.num("port", 4011).str("from", source),
            Port::Dhcp if !msg.giaddr.is_unspecified() => event = event.str("relay", msg.giaddr),
            Port::Dhcp => {}
        }
        event.text = match verdict {
            Ok(r) => {
                let mut answer = format!("{}", r.message_type());
                event = event.str("verdict", r.message_type());
                if !r.message.yiaddr.is_unspecified() {
                    answer += &format!(" {}", r.message.yiaddr);
                    event = event.str("yiaddr", r.message.yiaddr);
                }
                if let Some(boot) = &r.boot {
                    answer += &format!(" file={} next-server={}", boot.file, boot.next_server);
                    event = event
                        .str("file", &boot.file)
                        .str("next_server", boot.next_server);
                }
                event = event.str("to", r.to);
                format!("{head} -> {answer} to {}", r.to)
            }
            Err(why) => {
                event = event.str("verdict", "silent").str("reason", why);
                format!("{head} -> silent: {why}")
            }
        };
        // An ACK is a machine getting its lease or boot file: always written. Every other
        // line is one a client can cause at will, within the log budget.
        if matches!(verdict, Ok(r) if r.message_type() == MessageType::Ack) {
            self.log.always(level, &event);
        } else {
            let origin = msg
                .mac()
                .map_or(Origin::Ip(arrival.source.ip.into()), Origin::Mac);
            self.log.line(Kind::Dhcp, origin, level, &event);
        }
    }

    /// A full pool turns every new client away: one line a second says how many.
    fn log_pool_full(&mut self, index: usize) {
        let Some(pool) = self.pool.as_mut() else {
            return;
        };
        let name = pool
            .lock()
            .settings(index)
            .map_or_else(|| "?".into(), |s| s.name.clone());
        self.metrics
            .inc("netbootd_pool_full_total", &[("pool", name.as_str())]);
        pool.full_unlogged += 1;
        let now = Instant::now();
        if pool
            .full_logged_at
            .is_some_and(|at| now.duration_since(at) < std::time::Duration::from_secs(1))
        {
            return;
        }
        warn!(
            "pool {name}: full: {} unknown clients got no address since the last such line",
            pool.full_unlogged
        );
        pool.full_unlogged = 0;
        pool.full_logged_at = Some(now);
    }

    fn send(&self, request: &Message, reply: &Reply, arrival: &Arrival) -> io::Result<()> {
        let out = reply.message.emit(request.max_reply_len());
        if !out.dropped.is_empty() {
            warn!(
                "dhcp: xid={:#010x} options {:?} did not fit the client's {} bytes and were left out",
                request.xid,
                out.dropped,
                request.max_reply_len()
            );
        }
        let bytes = &out.bytes;
        let server = SocketAddrV4::new(self.cfg.ip_for_packet, SERVER_PORT);
        let broadcast = SocketAddrV4::new(Ipv4Addr::BROADCAST, CLIENT_PORT);
        if let Port::BootServer { .. } = arrival.port {
            let to = match reply.to {
                Destination::Source(addr) => addr,
                _ => broadcast,
            };
            return self.boot_server.send_to(bytes, to, arrival.ifindex);
        }
        match (&self.input, reply.to) {
            (Input::Packet { relay, .. }, Destination::Relay(giaddr)) => {
                relay.send_to(bytes, SocketAddrV4::new(giaddr, SERVER_PORT), None)
            }
            (Input::Packet { raw, .. }, Destination::Client { ip, mac }) => {
                raw.send(&emit_udp_frame(
                    raw.mac,
                    mac,
                    server,
                    SocketAddrV4::new(ip, CLIENT_PORT),
                    bytes,
                ))
            }
            (Input::Packet { raw, .. }, _) => raw.send(&emit_udp_frame(
                raw.mac,
                MacAddr([0xff; 6]),
                server,
                broadcast,
                bytes,
            )),
            (Input::Udp(udp), Destination::Relay(giaddr)) => {
                udp.send_to(bytes, SocketAddrV4::new(giaddr, SERVER_PORT), None)
            }
            // Only a configured client (ciaddr) can take unicast without ARP help.
            (Input::Udp(udp), Destination::Client { ip, .. }) if ip == request.ciaddr => {
                udp.send_to(bytes, SocketAddrV4::new(ip, CLIENT_PORT), None)
            }
            (Input::Udp(udp), _) => udp.send_to(bytes, broadcast, arrival.ifindex),
        }
    }
}

/// Replies are decided and sent as each datagram is read: no timers, nothing to finish at
/// shutdown.
impl Service for DhcpService {
    fn name(&self) -> &'static str {
        "DHCP"
    }

    fn describe(&self) -> String {
        let input = match &self.input {
            Input::Packet { raw, .. } => {
                format!("packet socket on {} ({})", raw.interface, raw.mac)
            }
            Input::Udp(_) => format!("UDP {}", self.cfg.addr),
        };
        format!(
            "DHCP {} on {input}, boot server on UDP {}:{PXE_PORT}, server address {}",
            self.cfg.mode.as_str(),
            self.cfg.addr.ip(),
            self.cfg.ip_for_packet
        )
    }

    /// The main socket (packet or UDP), then the boot server's, then the pool's probes.
    fn fds(&self) -> Vec<BorrowedFd<'_>> {
        let main = match &self.input {
            Input::Packet { raw, .. } => raw.as_fd(),
            Input::Udp(udp) => udp.as_fd(),
        };
        let mut fds = vec![main, self.boot_server.as_fd()];
        if let Some(pool) = &self.pool {
            fds.extend(pool.fds());
        }
        fds
    }

    fn on_readable(&mut self, fd: RawFd, now: Instant) {
        if let Some(pool) = self.pool.as_mut().filter(|p| p.is_rewrite(fd)) {
            pool.on_rewrite_done();
            return;
        }
        if self.pool.as_ref().is_some_and(|p| p.owns(fd)) {
            self.on_probe_answers(fd);
            self.commit();
            return;
        }
        self.receive_batch(fd, now);
        self.commit();
    }

    /// Probe deadlines and the pool's upkeep (journal compaction, gauges).
    fn poll_at(&self) -> Option<Instant> {
        let probes = self.probes.iter().map(|p| p.deadline).min();
        let pool = self.pool.as_ref().map(PoolRuntime::poll_at);
        probes.into_iter().chain(pool).min()
    }

    fn on_timer(&mut self, now: Instant) {
        self.on_probe_deadlines(now);
        self.prune_known();
        self.commit();
        if let Some(pool) = self.pool.as_mut() {
            pool.on_timer(now);
        }
    }

    /// Shutdown: the journal is rewritten with the discovery list's latest counts.
    fn drain(&mut self) -> bool {
        self.commit();
        if let Some(pool) = self.pool.as_mut() {
            pool.compact();
        }
        false
    }

    /// Reply contents (addresses, URLs, iPXE binaries) from now on; the pools' new ranges
    /// (leases outside every new range are dropped).
    fn reconfigure(&mut self, config: &Config) {
        self.cfg = config.dhcp.clone();
        if let Some(pool) = self.pool.as_mut() {
            pool.lock().reconfigure(
                config.pools.clone(),
                crate::service::pool::own_addresses(config),
            );
        }
        self.commit();
    }
}

impl DhcpService {
    fn receive_batch(&mut self, fd: RawFd, _now: Instant) {
        let boot_server = fd == self.boot_server.as_fd().as_raw_fd();
        for _ in 0..BATCH {
            let more = if boot_server {
                self.receive_boot_server()
            } else {
                self.receive_main()
            };
            match more {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    warn!("dhcp: receive failed: {e}");
                    return;
                }
            }
        }
    }
}

/// What the discovery list keeps from an unknown MAC's request.
fn sighting(msg: &Message, cfg: &Dhcp) -> Sighting {
    let via = if msg.giaddr.is_unspecified() {
        cfg.iface.clone().unwrap_or_else(|| "local".into())
    } else {
        format!("relay {}", network_of(msg, cfg))
    };
    Sighting {
        mac: msg.mac().unwrap_or_default(),
        via,
        arch: msg.client_arches().first().copied(),
        vendor_class: msg.options.get(code::VENDOR_CLASS).and_then(printable),
        user_class: msg.options.get(code::USER_CLASS).and_then(|u| {
            // RFC 3004 length-prefixed classes, or iPXE's bare string.
            let classes = msg.user_classes();
            let text: Vec<String> = classes.iter().filter_map(|c| printable(c)).collect();
            if text.is_empty() {
                printable(u)
            } else {
                Some(text.join(","))
            }
        }),
        hostname: msg.options.get(code::HOSTNAME).and_then(printable),
        discover: msg.message_type() == Some(MessageType::Discover),
    }
}
