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
//! Decisions are [`crate::policy::dhcp`]'s; this module only does the I/O and the log line.

use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::sync::Arc;
use std::time::Instant;

use log::{debug, log_enabled, warn, Level};

use crate::config::{Config, Dhcp};
use crate::inventory::InventoryStore;
use crate::io::packet::{PacketSocket, DROP_ALL};
use crate::io::udp::{Received, UdpEndpoint, UdpOptions};
use crate::policy::budget::{Kind, Origin};
use crate::policy::dhcp::{classify, decide, screen, Destination, Port, Reply, Source, Verdict};
use crate::policy::event::Event;
use crate::service::log_gate::LogGate;
use crate::service::metrics::Metrics;
use crate::service::{Context, Service};
use crate::wire::dhcp::{Message, MessageType, CLIENT_PORT, PXE_PORT, SERVER_PORT};
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
}

/// Where a request came from, for the reply and the log.
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
        Ok(DhcpService {
            cfg: cfg.clone(),
            store: ctx.inventory.clone(),
            metrics: ctx.metrics.clone(),
            log: ctx.log.clone(),
            lookups: ctx.lookups.clone(),
            input,
            boot_server,
            buf: vec![0; BUF_LEN],
        })
    }

    fn receive_main(&mut self) -> io::Result<()> {
        let mut buf = std::mem::take(&mut self.buf);
        let result = match &self.input {
            Input::Packet { raw, .. } => {
                raw.recv(&mut buf)
                    .map(|frame| match parse_udp_frame(frame) {
                        Ok(udp) if udp.dst.port() == SERVER_PORT => {
                            let arrival = Arrival {
                                port: Port::Dhcp,
                                ifindex: None,
                                source: Source {
                                    ip: *udp.src.ip(),
                                    on_loopback: raw.interface == "lo",
                                },
                            };
                            self.handle(udp.payload, &arrival, udp.src);
                        }
                        Ok(_) => {}
                        Err(e) => debug!("dhcp: dropped a frame: {e}"),
                    })
            }
            Input::Udp(udp) => udp.recv(&mut buf).map(|r| {
                let arrival = Arrival {
                    port: Port::Dhcp,
                    ifindex: r.ifindex,
                    source: udp_source(&r),
                };
                self.handle(&buf[..r.len], &arrival, r.from);
            }),
        };
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
    fn handle(&self, payload: &[u8], arrival: &Arrival, from: SocketAddrV4) {
        let msg = match Message::parse(payload) {
            Ok(m) => m,
            Err(e) => {
                self.metrics.inc("netbootd_dhcp_malformed_total", &[]);
                debug!("dhcp: dropped {} bytes from {from}: {e}", payload.len());
                return;
            }
        };
        let inventory = self.store.snapshot();
        let verdict = screen(&msg, &arrival.source, &self.cfg)
            .and_then(|()| decide(&msg, arrival.port, &inventory, &self.cfg));
        // A MAC the inventory does not know: the remote source (if any) looks it up now, so a
        // machine just added there is answered at the client's next retransmission.
        if let Some(mac) = msg.mac().filter(|m| inventory.by_mac(*m).is_none()) {
            self.lookups.request(mac);
        }
        self.count(&msg, arrival, &verdict);
        self.log(&msg, arrival, &verdict);
        if let Ok(reply) = verdict {
            if let Err(e) = self.send(&msg, &reply, arrival) {
                warn!(
                    "dhcp: xid={:#010x} sending {} to {} failed: {e}",
                    msg.xid,
                    reply.message_type(),
                    reply.to
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

    fn log(&self, msg: &Message, arrival: &Arrival, verdict: &Verdict) {
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

    /// The main socket (packet or UDP), then the boot server's.
    fn fds(&self) -> Vec<BorrowedFd<'_>> {
        let main = match &self.input {
            Input::Packet { raw, .. } => raw.as_fd(),
            Input::Udp(udp) => udp.as_fd(),
        };
        vec![main, self.boot_server.as_fd()]
    }

    fn on_readable(&mut self, fd: RawFd, _now: Instant) {
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

    /// Reply contents (addresses, URLs, iPXE binaries) from now on.
    fn reconfigure(&mut self, config: &Config) {
        self.cfg = config.dhcp.clone();
    }
}
