//! The TFTP service: the listener on `--tftp-addr:--tftp-port` (in the main poll loop) and one
//! thread per transfer.
//!
//! The listener answers what it can at once (write requests, unknown modes, names that leave
//! the served directories, missing files such as the `autoexec.ipxe` iPXE asks for first,
//! requests over `--tftp-max-transfers`) with an ERROR, and hands each accepted read to a
//! [`Worker`] thread that owns its file, its [`Transfer`] state machine and its socket: a new
//! UDP socket on the address the request came to, ephemeral port (RFC 1350's transfer ID),
//! unless `--tftp-single-port` sends everything from the listening port, in which case the
//! listener forwards the client's packets to its worker.

use std::collections::HashMap;
use std::io::{self, ErrorKind};
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::os::fd::{AsFd, BorrowedFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use log::{debug, info, warn, Level};

use crate::config::{Config, Tftp};
use crate::io::files::{open_served, Content, Served};
use crate::io::netif::interface_mtu;
use crate::io::udp::{Received, UdpEndpoint, UdpOptions};
use crate::policy::budget::{Kind, Origin};
use crate::policy::event::Event;
use crate::policy::http::{grub_answer, grub_config_name, ScriptSettings};
use crate::policy::served::Refusal;
use crate::policy::tftp::{
    admit, autoexec_script, autoexec_script_url, base_name, blksize_cap, interpret_name, negotiate,
    netascii_fits, Admission, Admit, Limits, Root, Transfer, MAX_NETASCII_FILE,
};
use crate::service::log_gate::LogGate;
use crate::service::metrics::{Counter, Metrics};
use crate::service::{Context, Service};
use crate::wire::tftp::{
    emit_error, emit_oack, to_netascii, ErrorCode, Mode, Packet, Request, MAX_REQUEST_LEN,
};

mod worker;

use worker::{Link, Source, Worker};

/// Requests read per loop pass, so a flood cannot starve the other services.
const BATCH: usize = 64;
/// Consecutive timeouts before a transfer is abandoned: with the backoff (200 ms doubling up to
/// the negotiated timeout, 5 s by default) that is about 26 s without an answer. Fewer gave up
/// on healthy clients behind 10 % loss each way (six losses in a row happen in a few thousand
/// round trips).
const MAX_RETRIES: u32 = 8;
/// Packets queued for one worker in single-port mode.
const INBOX_LEN: usize = 256;
/// A worker's stack: it holds no buffers (those are on the heap).
const WORKER_STACK: usize = 128 << 10;
/// Assumed when the interface's MTU cannot be read.
const FALLBACK_MTU: u32 = 1500;

/// After the grace period: time for the workers to send their ERROR and end.
const SHUTDOWN_ABORT: Duration = Duration::from_secs(2);

/// The service's counters in the metrics registry, shared with the workers.
#[derive(Debug)]
pub struct TftpCounters {
    pub requests: Arc<Counter>,
    pub refused: Arc<Counter>,
    pub completed: Arc<Counter>,
    pub failed: Arc<Counter>,
    pub bytes_sent: Arc<Counter>,
    pub retransmissions: Arc<Counter>,
}

impl TftpCounters {
    fn register(metrics: &Metrics) -> TftpCounters {
        TftpCounters {
            requests: metrics.counter("netbootd_tftp_requests_total"),
            refused: metrics.counter("netbootd_tftp_refused_total"),
            completed: metrics.counter("netbootd_tftp_transfers_completed_total"),
            failed: metrics.counter("netbootd_tftp_transfers_failed_total"),
            bytes_sent: metrics.counter("netbootd_tftp_bytes_total"),
            retransmissions: metrics.counter("netbootd_tftp_retransmissions_total"),
        }
    }
}

/// The directories served, by the root a request name selects.
/// A file netbootd wrote for the request (`what` stands for its path in the log).
fn made(text: String, what: &str) -> Served {
    Served {
        size: text.len() as u64,
        content: Content::Bytes(text.into_bytes().into()),
        real: PathBuf::from(what),
        modified: None,
        hold: None,
    }
}

fn roots(ipxe_dir: Option<&Path>, assets_dir: Option<&Path>) -> Vec<(Root, PathBuf)> {
    let mut roots = Vec::new();
    if let Some(d) = ipxe_dir {
        roots.push((Root::Ipxe, d.to_path_buf()));
    }
    if let Some(d) = assets_dir {
        roots.push((Root::Assets, d.to_path_buf()));
    }
    roots
}

/// What the listener and its workers share.
struct Shared {
    /// Clients with a transfer running; in single-port mode, with the worker's inbox.
    active: Mutex<HashMap<SocketAddrV4, Option<SyncSender<Vec<u8>>>>>,
    counters: TftpCounters,
    /// No new transfers (shutdown has begun); running ones go on.
    draining: AtomicBool,
    /// Running transfers end now, with an ERROR to their client.
    stopping: AtomicBool,
    /// The log budget for lines clients cause (refusals, transfers that did not finish).
    log: Arc<LogGate>,
}

impl Shared {
    fn active(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<SocketAddrV4, Option<SyncSender<Vec<u8>>>>> {
        // A worker that panicked cannot leave the map inconsistent: take it anyway.
        self.active.lock().unwrap_or_else(|p| p.into_inner())
    }
}

pub struct TftpService {
    /// Read per request: a configuration reload replaces it (the bound fields stay).
    cfg: Tftp,
    roots: Vec<(Root, PathBuf)>,
    listener: UdpEndpoint,
    /// The listening socket again, for workers in single-port mode.
    single_port: Option<Arc<UdpSocket>>,
    shared: Arc<Shared>,
    buf: Vec<u8>,
    /// Asset names not in the assets directory come from here.
    assets: crate::service::Assets,
    asset_cache: crate::config::assets::AssetCacheSettings,
    /// iPXE binaries with `--ipxe-script-patch` applied.
    ipxe_binaries: Arc<crate::service::ipxe_patch::PatchedBinaries>,
    /// For `autoexec.ipxe`: the script URL settings and the machines by address.
    dhcp: crate::config::Dhcp,
    /// For `grub.cfg`: the Hook's and `--auto-proxy-profile`'s settings.
    http: crate::config::Http,
    inventory: Arc<crate::inventory::InventoryStore>,
}

impl TftpService {
    pub fn start(config: &Config, ctx: &Context) -> io::Result<TftpService> {
        let cfg = &config.tftp;
        let (ipxe_dir, assets_dir) = (config.ipxe_dir.as_deref(), config.assets_dir.as_deref());
        let addr = SocketAddrV4::new(cfg.addr, cfg.port);
        let listener = UdpEndpoint::bind(
            addr,
            UdpOptions {
                packet_info: true,
                recv_buffer: Some(1 << 20),
                ..Default::default()
            },
        )?;
        let single_port = if cfg.single_port {
            Some(Arc::new(listener.try_clone_socket()?))
        } else {
            None
        };
        Ok(TftpService {
            cfg: cfg.clone(),
            roots: roots(ipxe_dir, assets_dir),
            assets: ctx.assets.clone(),
            ipxe_binaries: ctx.ipxe_binaries.clone(),
            dhcp: config.dhcp.clone(),
            http: config.http.clone(),
            inventory: ctx.inventory.clone(),
            asset_cache: config.asset_cache.clone(),
            listener,
            single_port,
            shared: Arc::new(Shared {
                active: Mutex::new(HashMap::new()),
                counters: TftpCounters::register(&ctx.metrics),
                draining: AtomicBool::new(false),
                stopping: AtomicBool::new(false),
                log: ctx.log.clone(),
            }),
            buf: vec![0; MAX_REQUEST_LEN],
        })
    }

    /// Transfers running now.
    fn active_transfers(&self) -> usize {
        self.shared.active().len()
    }

    fn on_readable(&mut self) {
        for _ in 0..BATCH {
            let received = match self.listener.recv(&mut self.buf) {
                Ok(r) => r,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) => {
                    warn!("tftp: receive failed: {e}");
                    return;
                }
            };
            self.on_datagram(&received);
        }
    }

    fn on_datagram(&mut self, rx: &Received) {
        let bytes = &self.buf[..rx.len];
        if self.single_port.is_some() {
            if let Some(Some(inbox)) = self.shared.active().get(&rx.from) {
                // A full inbox means the worker is behind: dropping is what the wire would do.
                let _ = inbox.try_send(bytes.to_vec());
                return;
            }
        }
        match Packet::parse(bytes) {
            Ok(Packet::Rrq(request)) => self.on_read_request(request, rx),
            Ok(Packet::Wrq(request)) => {
                self.refuse(
                    rx,
                    "WRQ",
                    &request.filename,
                    ErrorCode::AccessViolation,
                    "read-only server",
                );
            }
            Ok(other) => debug!(
                "tftp {}: {} outside any transfer, dropped",
                rx.from,
                other.name()
            ),
            Err(e) => {
                debug!("tftp {}: {e} ({} bytes), answered ERROR 4", rx.from, rx.len);
                self.send_error(rx, ErrorCode::IllegalOperation, &e.to_string());
            }
        }
    }

    fn send_error(&self, rx: &Received, code: ErrorCode, message: &str) {
        if let Err(e) = self
            .listener
            .send_to(&emit_error(code, message), rx.from, rx.ifindex)
        {
            debug!("tftp {}: cannot send ERROR: {e}", rx.from);
        }
    }

    /// One log line and an ERROR for a request that gets no transfer.
    fn refuse(&self, rx: &Received, op: &str, name: &str, code: ErrorCode, why: &str) {
        self.shared.counters.refused.add(1);
        if self.shared.log.enabled(Level::Info) {
            let event = Event::new(format!(
                "tftp {} {op} {name:?}: refused, error {} ({why})",
                rx.from,
                code.value()
            ))
            .str("client", rx.from)
            .str("op", op)
            .str("file", name)
            .str("verdict", "refused")
            .num("error", u64::from(code.value()))
            .str("reason", why);
            let origin = Origin::Ip((*rx.from.ip()).into());
            self.shared
                .log
                .line(Kind::Tftp, origin, Level::Info, &event);
        }
        self.send_error(rx, code, why);
    }

    fn on_read_request(&mut self, request: Request, rx: &Received) {
        self.shared.counters.requests.add(1);
        let name = request.filename.as_str();
        let state = {
            let active = self.shared.active();
            Admission {
                running_for_client: active.contains_key(&rx.from),
                running: active.len(),
                running_for_address: active.keys().filter(|c| c.ip() == rx.from.ip()).count(),
                max_transfers: self.cfg.max_transfers,
                max_per_client: self.cfg.max_per_client,
                draining: self.shared.draining.load(Ordering::Relaxed),
            }
        };
        match admit(&request.mode, &state) {
            Admit::Accept => {}
            Admit::Repeat => {
                return debug!("tftp {} RRQ {name:?}: repeated, transfer running", rx.from)
            }
            Admit::Refuse(code, why) => return self.refuse(rx, "RRQ", name, code, &why),
        }
        let local = rx
            .local
            .filter(|ip| !ip.is_unspecified())
            .unwrap_or(self.cfg.addr);
        let made = self
            .autoexec(name, rx.from)
            .or_else(|| self.grub_config(name, rx.from, local));
        let opened = match made {
            Some(made) => Ok(made),
            None => self.open(name, &request.mode),
        };
        let served = match opened {
            Ok(served) => served,
            Err(Some((code, why))) => return self.refuse(rx, "RRQ", name, code, &why),
            Err(None) => {
                return info!(
                    "tftp {} RRQ {name:?}: being fetched from its upstream, not answered (the client's retransmission gets it)",
                    rx.from
                )
            }
        };
        let mtu = rx.ifindex.and_then(interface_mtu).unwrap_or(FALLBACK_MTU);
        let limits = Limits {
            max_blksize: blksize_cap(self.cfg.block_size, mtu),
            max_windowsize: self.cfg.max_window_size,
            timeout: self.cfg.timeout,
            max_retries: MAX_RETRIES,
        };
        let negotiated = negotiate(&request.options, served.size, &limits);
        let (link, inbox) = match self.link(local) {
            Ok(l) => l,
            Err(e) => {
                warn!(
                    "tftp {} RRQ {name:?}: no socket for the transfer: {e}",
                    rx.from
                );
                return self.send_error(rx, ErrorCode::NotDefined, "server error");
            }
        };
        let worker = Worker {
            client: rx.from,
            name: request.filename.clone(),
            path: served.real,
            _hold: served.hold,
            source: Source::from(served.content),
            transfer: Transfer::new(served.size, &negotiated, &limits),
            oack: emit_oack(&negotiated.oack),
            link,
            shared: self.shared.clone(),
        };
        self.spawn(worker, inbox, rx, name);
    }

    /// Takes the client's slot and starts its worker's thread.
    fn spawn(&self, worker: Worker, inbox: Option<SyncSender<Vec<u8>>>, rx: &Received, name: &str) {
        self.shared.active().insert(rx.from, inbox);
        let spawned = std::thread::Builder::new()
            .name("tftp".into())
            .stack_size(WORKER_STACK)
            .spawn(move || worker.run());
        if let Err(e) = spawned {
            self.shared.active().remove(&rx.from);
            warn!("tftp {} RRQ {name:?}: cannot start a thread: {e}", rx.from);
            self.send_error(rx, ErrorCode::NotDefined, "server busy, try again");
        }
    }

    /// The socket a transfer talks through.
    fn link(&self, local: Ipv4Addr) -> io::Result<(Link, Option<SyncSender<Vec<u8>>>)> {
        if let Some(socket) = &self.single_port {
            let (tx, rx) = sync_channel(INBOX_LEN);
            return Ok((Link::Shared(socket.clone(), rx), Some(tx)));
        }
        let socket = UdpSocket::bind(SocketAddrV4::new(local, 0))?;
        Ok((
            Link::Own(socket, std::cell::Cell::new(Duration::ZERO)),
            None,
        ))
    }

    /// `autoexec.ipxe` made of `--ipxe-script-patch` and the chain to the machine's script,
    /// unless the iPXE directory has a file of that name.
    fn autoexec(&self, name: &str, client: SocketAddrV4) -> Option<Served> {
        let patch = self.cfg.ipxe_script_patch.as_deref()?;
        let inventory = self.inventory.snapshot();
        let machine = inventory.by_ip(*client.ip());
        let url = autoexec_script_url(machine, &self.dhcp);
        // The name first: other requests never look in the directory for autoexec.ipxe.
        let script = autoexec_script(name, Some(patch), &url)?;
        let on_disk = self.roots.iter().any(|(r, dir)| {
            *r == Root::Ipxe && open_served(dir, "autoexec.ipxe", r.links()).is_ok()
        });
        if on_disk {
            return None;
        }
        info!(
            "tftp {client} RRQ {name:?}: --ipxe-script-patch and a chain to {url} (mac={})",
            machine.map_or("-".to_string(), |m| m.mac.to_string())
        );
        Some(made(script, "autoexec.ipxe (made of --ipxe-script-patch)"))
    }

    /// `grub.cfg` (any directory, or `grub.cfg-01-<mac>`) for the machine its name or the
    /// client's address names, unless the iPXE directory has a file of that name. The
    /// machine's assets are named on `local`, the address the request came to.
    fn grub_config(&self, name: &str, client: SocketAddrV4, local: Ipv4Addr) -> Option<Served> {
        let by_mac = grub_config_name(name)?;
        let base = base_name(name);
        let on_disk = self
            .roots
            .iter()
            .any(|(r, dir)| *r == Root::Ipxe && open_served(dir, base, r.links()).is_ok());
        if on_disk {
            return None;
        }
        let inventory = self.inventory.snapshot();
        let machine = match by_mac {
            Some(mac) => inventory.by_mac(mac),
            None => inventory.by_ip(*client.ip()),
        };
        let settings = ScriptSettings {
            http: &self.http,
            syslog_host: &self.dhcp.syslog_host,
            base_url: String::new(),
        };
        let mac = machine.map(|m| m.mac).or(by_mac);
        let mac = mac.map_or("-".to_string(), |m| m.to_string());
        match grub_answer(by_mac, machine, &settings, local) {
            Ok(text) => {
                info!("tftp {client} RRQ {name:?}: grub.cfg made for mac={mac}");
                Some(made(text, "grub.cfg (made from the machine's boot)"))
            }
            Err(why) => {
                info!(
                    "tftp {client} RRQ {name:?}: no grub.cfg for mac={mac}: {}",
                    why.describe()
                );
                None
            }
        }
    }

    /// Finds the file a name means, trying each candidate root in turn (netascii: converted
    /// in memory).
    fn open(&self, name: &str, mode: &Mode) -> Result<Served, Option<(ErrorCode, String)>> {
        let candidates = interpret_name(name).map_err(|r| Some(r.tftp_error()))?;
        let mut refusal = Refusal::NotFound;
        for (root, relative) in candidates {
            let on_disk = match self.roots.iter().find(|(r, _)| *r == root) {
                Some((_, dir)) => open_served(dir, &relative, root.links()),
                None => Err(Refusal::NotFound),
            };
            // An asset not on disk: the cache and its upstream. The first request only starts
            // the download (the loop never waits for an upstream); the client's retransmission
            // finds its length known.
            let opened = match on_disk {
                Err(Refusal::NotFound) if root == Root::Assets => {
                    self.assets
                        .open(&self.asset_cache, &relative, Duration::ZERO)
                }
                Ok(served) if root == Root::Ipxe => Ok(self
                    .ipxe_binaries
                    .apply(served, self.cfg.ipxe_script_patch.as_deref())),
                other => other,
            };
            match opened {
                Ok(served) if *mode == Mode::Netascii => {
                    if matches!(served.content, Content::Growing(_)) {
                        return Err(Some(Refusal::Fetching.tftp_error()));
                    }
                    netascii_fits(served.size).map_err(Some)?;
                    return served
                        .converted(MAX_NETASCII_FILE, to_netascii)
                        .map_err(|r| Some(r.tftp_error()));
                }
                Ok(served) => return Ok(served),
                Err(Refusal::NotFound) => {}
                Err(Refusal::Outside) => refusal = Refusal::Outside,
                Err(Refusal::Fetching) => return Err(None),
                Err(other) => return Err(Some(other.tftp_error())),
            }
        }
        Err(Some(refusal.tftp_error()))
    }
}

/// The listener in the loop; transfers on their own threads, which a shutdown lets finish.
impl Service for TftpService {
    fn name(&self) -> &'static str {
        "TFTP"
    }

    fn describe(&self) -> String {
        let c = &self.cfg;
        format!(
            "TFTP on {}:{}: blksize up to {}, windowsize up to {}, timeout up to {:?}, {} transfers at most ({} per client address){}",
            c.addr,
            c.port,
            c.block_size,
            c.max_window_size,
            c.timeout,
            c.max_transfers,
            c.max_per_client,
            if c.single_port { ", single port" } else { "" }
        )
    }

    fn fds(&self) -> Vec<BorrowedFd<'_>> {
        vec![self.listener.as_fd()]
    }

    fn on_readable(&mut self, _fd: RawFd, _now: Instant) {
        TftpService::on_readable(self);
    }

    /// Limits and directories for the requests from now on; running transfers keep what they
    /// negotiated.
    fn reconfigure(&mut self, config: &Config) {
        self.cfg = config.tftp.clone();
        self.roots = roots(config.ipxe_dir.as_deref(), config.assets_dir.as_deref());
        self.asset_cache = config.asset_cache.clone();
        self.dhcp = config.dhcp.clone();
        self.http = config.http.clone();
    }

    /// New requests get "server shutting down"; running transfers go on (in single-port mode
    /// the listener keeps forwarding their packets).
    fn drain(&mut self) -> bool {
        self.shared.draining.store(true, Ordering::Relaxed);
        true
    }

    fn in_flight(&self) -> Option<(usize, &'static str)> {
        Some((self.active_transfers(), "TFTP transfers"))
    }

    /// Every worker ends its transfer with an ERROR to its client.
    fn abort(&mut self, grace: Duration) {
        info!(
            "ending {} TFTP transfers still running after {grace:?}",
            self.active_transfers()
        );
        self.shared.stopping.store(true, Ordering::Relaxed);
        let abort = Instant::now();
        while self.active_transfers() > 0 && abort.elapsed() < SHUTDOWN_ABORT {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// In test builds, a worker asked for this name panics.
    pub const PANIC_IN_WORKER: &str = "panic-in-worker";

    fn service(dir: &Path) -> TftpService {
        let mut config = crate::config::tests::loopback_config();
        config.tftp.port = 0;
        config.tftp.max_window_size = 1;
        config.ipxe_dir = None;
        config.assets_dir = Some(dir.to_path_buf());
        let metrics: Arc<crate::service::metrics::Metrics> = Arc::default();
        let assets = crate::service::Assets::new(&metrics);
        let ctx = Context {
            inventory: Arc::new(crate::inventory::InventoryStore::new(Default::default())),
            log: Arc::new(crate::service::log_gate::LogGate::new(
                crate::service::log_gate::limits_of(&config),
                metrics.clone(),
            )),
            metrics,
            source: Default::default(),
            lookups: Default::default(),
            pools: Default::default(),
            combined: None,
            assets,
            ipxe_binaries: Default::default(),
        };
        TftpService::start(&config, &ctx).unwrap()
    }

    fn rrq(name: &str) -> Vec<u8> {
        let mut p = vec![0, 1];
        p.extend_from_slice(name.as_bytes());
        p.extend_from_slice(b"\0octet\0");
        p
    }

    /// Waits until the listener has a datagram, then lets the service read it.
    fn deliver(t: &mut TftpService) {
        use nix::poll::{PollFd, PollFlags, PollTimeout};
        let mut fds = [PollFd::new(t.listener.as_fd(), PollFlags::POLLIN)];
        assert_eq!(nix::poll::poll(&mut fds, PollTimeout::from(2000u16)), Ok(1));
        t.on_readable();
    }

    #[test]
    fn a_worker_that_panics_frees_its_slot_and_the_next_request_is_served() {
        let dir = std::env::temp_dir().join(format!("netbootd-tftp-slot-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(PANIC_IN_WORKER), b"x").unwrap();
        std::fs::write(dir.join("f"), b"file").unwrap();
        let mut t = service(&dir);
        let server = t.listener.local_addr().unwrap();
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        client
            .set_read_timeout(Some(Duration::from_secs(3)))
            .unwrap();
        client.send_to(&rrq(PANIC_IN_WORKER), server).unwrap();
        deliver(&mut t);
        let freed = Instant::now();
        while t.active_transfers() > 0 {
            assert!(
                freed.elapsed() < Duration::from_secs(60), // the panic's backtrace is slow under qemu-user
                "the slot was never freed"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        // The same client (address and port) asks again and gets its file.
        client.send_to(&rrq("f"), server).unwrap();
        deliver(&mut t);
        let mut buf = [0u8; 600];
        let (n, _) = client.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"\0\x03\0\x01file");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
