//! The pool for machines the inventory does not know: the server side of RFC 2131 as a pure
//! state machine. It owns the lease table of every `[[pool]]` (by address, by client, by MAC),
//! addresses held for an OFFER or a probe, addresses quarantined after a DECLINE or an answered
//! probe, the discovery list of unknown MACs, and the journal records ([`Record`]) that make
//! each durable change survive a crash. Time comes in as milliseconds since the Unix epoch
//! (leases outlive the process); nothing expires by itself: a lease's state is read against
//! `now` when it is used, so the pool needs no timer.
//!
//! What the DHCP service asks ([`Ask`]) and what it is told ([`Decision`]):
//! - DISCOVER → `Offer` (the client's lease, else its last address when free, else the address
//!   it asks for, else a new one) or `Probe` (a new address nobody has held: check that nothing
//!   answers first; [`Pools::probe_result`] says how it went and the DISCOVER is asked again).
//! - REQUEST selecting our offer, INIT-REBOOT, RENEWING, REBINDING → `Ack` (journal record
//!   first) or `Nak` (not its address, another network, or now reserved in the inventory).
//! - RELEASE frees (the address stays the client's until someone else needs it), DECLINE
//!   quarantines the address for [`QUARANTINE`].
//!
//! A MAC that becomes known is the caller's to report ([`Pools::forget_mac`]): its lease and
//! its discovery entry go.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::Ipv4Addr;

use crate::config::pools::PoolSettings;
use crate::wire::MacAddr;

/// Milliseconds since the Unix epoch.
pub type Millis = u64;

/// How long an OFFER holds its address for the REQUEST.
pub const OFFER_HOLD: Millis = 60_000;
/// How long an address is held while it is probed (the probe itself waits 200 ms).
pub const PROBE_HOLD: Millis = 5_000;
/// How long a DECLINEd address, or one that answered a probe, is not handed out.
pub const QUARANTINE: Millis = 600_000;
/// Unknown MACs remembered at once; the one seen least recently goes first.
pub const MAX_DISCOVERED: usize = 4096;
/// Longest client identifier (option 61) kept as the client's key; longer ones are not used.
pub const MAX_CLIENT_ID: usize = 64;
/// Longest text (vendor class, user class, host name) kept in the discovery list.
pub const MAX_TEXT: usize = 64;

/// Who a lease belongs to: option 61 when the client sends one, else hardware type 1 + MAC.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientKey(pub Vec<u8>);

impl ClientKey {
    pub fn new(client_id: Option<&[u8]>, mac: MacAddr) -> ClientKey {
        match client_id.filter(|id| !id.is_empty() && id.len() <= MAX_CLIENT_ID) {
            Some(id) => ClientKey(id.to_vec()),
            None => {
                let mut key = vec![1];
                key.extend_from_slice(&mac.0);
                ClientKey(key)
            }
        }
    }

    pub fn hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LeaseState {
    /// Held while a probe runs.
    Probing,
    /// Held for the REQUEST that should follow an OFFER.
    Offered,
    /// ACKed.
    Bound,
    /// Released or expired: free, but the client gets it back while nobody else took it.
    Free,
}

impl LeaseState {
    pub fn as_str(self) -> &'static str {
        match self {
            LeaseState::Probing => "probing",
            LeaseState::Offered => "offered",
            LeaseState::Bound => "bound",
            LeaseState::Free => "free",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    pub ip: Ipv4Addr,
    pub client: ClientKey,
    pub mac: MacAddr,
    pub state: LeaseState,
    /// When the hold or the lease ends.
    pub expires: Millis,
}

impl Lease {
    /// Does it keep the address from others at `now`?
    pub fn held(&self, now: Millis) -> bool {
        self.state != LeaseState::Free && self.expires > now
    }

    /// ACKed and not expired at `now`.
    pub fn bound(&self, now: Millis) -> bool {
        self.state == LeaseState::Bound && self.expires > now
    }
}

/// What the client asks, read from its message by [`crate::policy::dhcp::pool_ask`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AskKind {
    Discover {
        requested: Option<Ipv4Addr>,
    },
    /// REQUEST with our server identifier (SELECTING).
    Select {
        requested: Ipv4Addr,
    },
    /// REQUEST with option 50 and no server identifier (INIT-REBOOT).
    InitReboot {
        requested: Ipv4Addr,
    },
    /// REQUEST with ciaddr (RENEWING, unicast, or REBINDING, broadcast).
    Renew {
        ciaddr: Ipv4Addr,
    },
    Release {
        ciaddr: Ipv4Addr,
    },
    Decline {
        requested: Ipv4Addr,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ask {
    pub kind: AskKind,
    pub client: ClientKey,
    pub mac: MacAddr,
    /// The relay's giaddr, else the server's own address: picks the pool.
    pub network: Ipv4Addr,
}

/// The pool's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    Offer {
        pool: usize,
        ip: Ipv4Addr,
    },
    /// Its [`Record`] is waiting in [`Pools::take_records`]: send only once it is durable.
    Ack {
        pool: usize,
        ip: Ipv4Addr,
    },
    Nak {
        why: String,
    },
    /// Check `ip` before offering it; then call [`Pools::probe_result`] and ask again.
    Probe {
        pool: usize,
        ip: Ipv4Addr,
    },
    Released(Ipv4Addr),
    Declined(Ipv4Addr),
    Silent(Quiet),
}

/// Why the pool gives no answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Quiet {
    /// No pool serves the network the request came from.
    NoPool,
    /// Every address is held, reserved or quarantined.
    Full { pool: usize },
    /// A probe of the client's address is running.
    Probing(Ipv4Addr),
    /// A REQUEST, RELEASE or DECLINE from a client with no lease here (RFC 2131 §4.3.2:
    /// silent).
    NoLease,
}

impl fmt::Display for Quiet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Quiet::NoPool => f.write_str("unknown MAC and no [[pool]] serves this network"),
            Quiet::Full { .. } => f.write_str("unknown MAC and its pool is full"),
            Quiet::Probing(ip) => write!(f, "unknown MAC: probing {ip} before offering it"),
            Quiet::NoLease => f.write_str("unknown MAC with no pool lease"),
        }
    }
}

/// A durable change, one line of the journal (see [`Record::encode`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Record {
    /// A bound or free lease (offers and probes are not recorded: a crash forgets them, and
    /// the client asks again).
    Lease(Lease),
    /// The address has no lease any more (its MAC became known, or it was declined).
    Forget(Ipv4Addr),
    Quarantine {
        ip: Ipv4Addr,
        until: Millis,
    },
    /// An entry of the discovery list.
    Seen(Discovered),
    /// The MAC left the discovery list (it is in the inventory now).
    Unseen(MacAddr),
}

/// What the discovery list keeps of an unknown MAC.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Discovered {
    pub mac: MacAddr,
    pub first_seen: Millis,
    pub last_seen: Millis,
    /// `relay 10.1.0.1` or `local`.
    pub via: String,
    /// Option 93.
    pub arch: Option<u16>,
    /// Options 60, 77 and 12, as printable text.
    pub vendor_class: Option<String>,
    pub user_class: Option<String>,
    pub hostname: Option<String>,
    pub address: Option<Ipv4Addr>,
    pub discovers: u32,
}

/// Facts from one request, for the discovery list.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Sighting {
    pub mac: MacAddr,
    pub via: String,
    pub arch: Option<u16>,
    pub vendor_class: Option<String>,
    pub user_class: Option<String>,
    pub hostname: Option<String>,
    pub discover: bool,
}

/// Printable ASCII of at most [`MAX_TEXT`] characters, others as `?`; `None` when empty.
pub fn printable(bytes: &[u8]) -> Option<String> {
    let text: String = bytes
        .iter()
        .take(MAX_TEXT)
        .map(|&b| {
            if (0x20..0x7f).contains(&b) {
                b as char
            } else {
                '?'
            }
        })
        .collect();
    Some(text).filter(|t| !t.trim().is_empty())
}

/// One pool's lease table.
#[derive(Debug)]
struct Pool {
    settings: PoolSettings,
    leases: HashMap<Ipv4Addr, Lease>,
    by_client: HashMap<ClientKey, Ipv4Addr>,
    quarantined: HashMap<Ipv4Addr, Millis>,
    /// Offset into the range where the search for a never-used address goes on.
    cursor: u32,
}

impl Pool {
    fn new(settings: PoolSettings) -> Pool {
        Pool {
            settings,
            leases: HashMap::new(),
            by_client: HashMap::new(),
            quarantined: HashMap::new(),
            cursor: 0,
        }
    }

    fn quarantined(&self, ip: Ipv4Addr, now: Millis) -> bool {
        self.quarantined.get(&ip).is_some_and(|until| *until > now)
    }

    /// The client's lease, if it has one.
    fn lease_of(&self, client: &ClientKey) -> Option<&Lease> {
        self.by_client
            .get(client)
            .and_then(|ip| self.leases.get(ip))
    }

    fn remove(&mut self, ip: Ipv4Addr) -> Option<Lease> {
        let lease = self.leases.remove(&ip)?;
        if self.by_client.get(&lease.client) == Some(&ip) {
            self.by_client.remove(&lease.client);
        }
        Some(lease)
    }

    /// Puts `lease` in the table, replacing whatever held its address or its client.
    fn insert(&mut self, lease: Lease) {
        self.remove(lease.ip);
        if let Some(old) = self.by_client.get(&lease.client).copied() {
            self.leases.remove(&old);
        }
        self.by_client.insert(lease.client.clone(), lease.ip);
        self.leases.insert(lease.ip, lease);
    }
}

/// Every pool, the discovery list, and the records not yet written.
#[derive(Debug, Default)]
pub struct Pools {
    pools: Vec<Pool>,
    /// Addresses never handed out: the server's own.
    excluded: Vec<Ipv4Addr>,
    /// Which pool holds each MAC's lease (a client identifier may hide the MAC).
    by_mac: HashMap<MacAddr, (usize, Ipv4Addr)>,
    discovered: BTreeMap<MacAddr, Discovered>,
    records: Vec<Record>,
    /// Discovery counters changed since the last compaction (they are not journaled one by one).
    discovery_dirty: bool,
}

/// A pool's figures, for `/metrics` and `/unknown`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolStats {
    pub name: String,
    pub size: u32,
    pub bound: usize,
    pub offered: usize,
    pub quarantined: usize,
}

impl Pools {
    pub fn new(settings: Vec<PoolSettings>, excluded: Vec<Ipv4Addr>) -> Pools {
        Pools {
            pools: settings.into_iter().map(Pool::new).collect(),
            excluded,
            ..Pools::default()
        }
    }

    pub fn is_empty(&self) -> bool {
        self.pools.is_empty()
    }

    pub fn settings(&self, pool: usize) -> Option<&PoolSettings> {
        self.pools.get(pool).map(|p| &p.settings)
    }

    /// New settings (a reload): leases and quarantines inside a new pool's range move there;
    /// the others are forgotten (with a record each).
    pub fn reconfigure(&mut self, settings: Vec<PoolSettings>, excluded: Vec<Ipv4Addr>) {
        let old = std::mem::take(&mut self.pools);
        self.pools = settings.into_iter().map(Pool::new).collect();
        self.excluded = excluded;
        self.by_mac.clear();
        for pool in old {
            for (ip, until) in pool.quarantined {
                if let Some(p) = self.pools.iter_mut().find(|p| p.settings.in_range(ip)) {
                    p.quarantined.insert(ip, until);
                }
            }
            for (ip, lease) in pool.leases {
                match self.pools.iter().position(|p| p.settings.in_range(ip)) {
                    Some(i) => {
                        self.by_mac.insert(lease.mac, (i, ip));
                        self.pools[i].insert(lease);
                    }
                    None => self.records.push(Record::Forget(ip)),
                }
            }
        }
    }

    /// The pool serving `network`.
    fn pool_for(&self, network: Ipv4Addr) -> Option<usize> {
        self.pools.iter().position(|p| p.settings.serves(network))
    }

    /// The whole decision for one request from an unknown MAC. `reserved` says whether the
    /// inventory gives an address to a machine (such an address is never handed out, and a
    /// pool client holding one is NAKed).
    pub fn handle(
        &mut self,
        ask: &Ask,
        now: Millis,
        reserved: &dyn Fn(Ipv4Addr) -> bool,
    ) -> Decision {
        let Some(index) = self.pool_for(ask.network) else {
            return Decision::Silent(Quiet::NoPool);
        };
        match &ask.kind {
            AskKind::Discover { requested } => self.discover(index, ask, *requested, now, reserved),
            AskKind::Select { requested } => {
                self.request(index, ask, *requested, now, reserved, true)
            }
            AskKind::InitReboot { requested } => {
                self.request(index, ask, *requested, now, reserved, false)
            }
            AskKind::Renew { ciaddr } => self.request(index, ask, *ciaddr, now, reserved, false),
            AskKind::Release { ciaddr } => self.release(index, ask, *ciaddr, now),
            AskKind::Decline { requested } => self.decline(index, ask, *requested, now),
        }
    }

    fn usable(
        &self,
        index: usize,
        ip: Ipv4Addr,
        now: Millis,
        reserved: &dyn Fn(Ipv4Addr) -> bool,
    ) -> bool {
        let pool = &self.pools[index];
        pool.settings.in_range(ip)
            && !self.excluded.contains(&ip)
            && !pool.quarantined(ip, now)
            && !reserved(ip)
    }

    fn discover(
        &mut self,
        index: usize,
        ask: &Ask,
        requested: Option<Ipv4Addr>,
        now: Millis,
        reserved: &dyn Fn(Ipv4Addr) -> bool,
    ) -> Decision {
        // 1. Its own lease or hold, or the address it had last (sticky).
        if let Some(lease) = self.pools[index].lease_of(&ask.client).cloned() {
            if self.usable(index, lease.ip, now, reserved) {
                if lease.state == LeaseState::Probing && lease.held(now) {
                    return Decision::Silent(Quiet::Probing(lease.ip));
                }
                return self.offer(index, ask, lease.ip, now);
            }
            self.drop_lease(index, lease.ip);
        }
        // 2. The address it asks for, when nobody holds it.
        if let Some(ip) = requested.filter(|ip| self.usable(index, *ip, now, reserved)) {
            match self.pools[index].leases.get(&ip) {
                Some(l) if l.held(now) => {}
                Some(_) => return self.offer(index, ask, ip, now),
                None => return self.probe(index, ask, ip, now),
            }
        }
        // 3. An address nobody has held.
        if let Some(ip) = self.never_used(index, now, reserved) {
            return self.probe(index, ask, ip, now);
        }
        // 4. The free address whose holder left longest ago.
        let oldest = self.pools[index]
            .leases
            .values()
            .filter(|l| !l.held(now))
            .map(|l| (l.expires, l.ip))
            .filter(|(_, ip)| self.usable(index, *ip, now, reserved))
            .min();
        match oldest {
            Some((_, ip)) => self.offer(index, ask, ip, now),
            None => Decision::Silent(Quiet::Full { pool: index }),
        }
    }

    /// The next address of the range, from the cursor on, that is in no lease and usable.
    fn never_used(
        &mut self,
        index: usize,
        now: Millis,
        reserved: &dyn Fn(Ipv4Addr) -> bool,
    ) -> Option<Ipv4Addr> {
        let (first, size) = {
            let s = &self.pools[index].settings;
            (u32::from(s.first), s.size())
        };
        for step in 0..size {
            let offset = (self.pools[index].cursor + step) % size;
            let ip = Ipv4Addr::from(first + offset);
            if !self.pools[index].leases.contains_key(&ip) && self.usable(index, ip, now, reserved)
            {
                self.pools[index].cursor = (offset + 1) % size;
                return Some(ip);
            }
        }
        None
    }

    fn take_address(
        &mut self,
        index: usize,
        ask: &Ask,
        ip: Ipv4Addr,
        state: LeaseState,
        expires: Millis,
    ) {
        if let Some(old) = self.pools[index].leases.get(&ip) {
            if old.client != ask.client {
                self.by_mac.remove(&old.mac);
            }
        }
        self.pools[index].insert(Lease {
            ip,
            client: ask.client.clone(),
            mac: ask.mac,
            state,
            expires,
        });
        self.by_mac.insert(ask.mac, (index, ip));
    }

    fn probe(&mut self, index: usize, ask: &Ask, ip: Ipv4Addr, now: Millis) -> Decision {
        self.take_address(index, ask, ip, LeaseState::Probing, now + PROBE_HOLD);
        Decision::Probe { pool: index, ip }
    }

    fn offer(&mut self, index: usize, ask: &Ask, ip: Ipv4Addr, now: Millis) -> Decision {
        let current = self.pools[index].leases.get(&ip).cloned();
        match current {
            // A bound lease stays bound (its client asks again); only the hold is new.
            Some(l) if l.client == ask.client && l.bound(now) => {}
            _ => self.take_address(index, ask, ip, LeaseState::Offered, now + OFFER_HOLD),
        }
        self.note_address(ask.mac, ip);
        Decision::Offer { pool: index, ip }
    }

    /// A probe of `ip` ended: `answered` means something uses the address (quarantined, and
    /// the client's hold dropped), else the hold becomes an offer's.
    pub fn probe_result(&mut self, ip: Ipv4Addr, answered: bool, now: Millis) {
        let Some(index) = self.pools.iter().position(|p| p.settings.in_range(ip)) else {
            return;
        };
        let probing = self.pools[index]
            .leases
            .get(&ip)
            .is_some_and(|l| l.state == LeaseState::Probing);
        if !probing {
            return;
        }
        if answered {
            if let Some(lease) = self.pools[index].remove(ip) {
                self.by_mac.remove(&lease.mac);
            }
            self.quarantine(index, ip, now);
        } else if let Some(lease) = self.pools[index].leases.get_mut(&ip) {
            lease.state = LeaseState::Offered;
            lease.expires = now + OFFER_HOLD;
        }
    }

    fn quarantine(&mut self, index: usize, ip: Ipv4Addr, now: Millis) {
        let until = now + QUARANTINE;
        self.pools[index].quarantined.insert(ip, until);
        self.records.push(Record::Quarantine { ip, until });
    }

    fn request(
        &mut self,
        index: usize,
        ask: &Ask,
        ip: Ipv4Addr,
        now: Millis,
        reserved: &dyn Fn(Ipv4Addr) -> bool,
        selecting: bool,
    ) -> Decision {
        let settings = &self.pools[index].settings;
        if !settings.subnet.contains(ip.into()) {
            return Decision::Nak {
                why: format!("{ip} is not on this network ({})", settings.subnet),
            };
        }
        let lease = self.pools[index].lease_of(&ask.client).cloned();
        match lease {
            Some(l) if l.ip == ip && l.state != LeaseState::Probing => {
                if reserved(ip) || self.excluded.contains(&ip) || !settings.in_range(ip) {
                    self.drop_lease(index, ip);
                    return Decision::Nak {
                        why: format!("{ip} is reserved for another machine now"),
                    };
                }
                // An expired lease whose address nobody took is the client's again.
                let lease_ms = u64::from(settings.lease_time) * 1000;
                self.take_address(index, ask, ip, LeaseState::Bound, now + lease_ms);
                let lease = self.pools[index].leases[&ip].clone();
                self.records.push(Record::Lease(lease));
                self.note_address(ask.mac, ip);
                Decision::Ack { pool: index, ip }
            }
            Some(l) => Decision::Nak {
                why: format!("{ip} is not yours (yours: {})", l.ip),
            },
            None if selecting => Decision::Nak {
                why: format!("{ip} was not offered to you"),
            },
            // Held by another client: certainly wrong. Otherwise we have no record: silent.
            None => match self.pools[index].leases.get(&ip) {
                Some(other) if other.held(now) => Decision::Nak {
                    why: format!("{ip} is another client's"),
                },
                _ => Decision::Silent(Quiet::NoLease),
            },
        }
    }

    fn release(&mut self, index: usize, ask: &Ask, ip: Ipv4Addr, now: Millis) -> Decision {
        match self.pools[index].leases.get_mut(&ip) {
            Some(l) if l.client == ask.client => {
                l.state = LeaseState::Free;
                l.expires = now;
                let lease = l.clone();
                self.records.push(Record::Lease(lease));
                Decision::Released(ip)
            }
            _ => Decision::Silent(Quiet::NoLease),
        }
    }

    fn decline(&mut self, index: usize, ask: &Ask, ip: Ipv4Addr, now: Millis) -> Decision {
        match self.pools[index].leases.get(&ip) {
            Some(l) if l.client == ask.client => {
                self.drop_lease(index, ip);
                self.quarantine(index, ip, now);
                Decision::Declined(ip)
            }
            _ => Decision::Silent(Quiet::NoLease),
        }
    }

    /// Removes the lease at `ip`, with a record.
    fn drop_lease(&mut self, index: usize, ip: Ipv4Addr) {
        if let Some(lease) = self.pools[index].remove(ip) {
            if self.by_mac.get(&lease.mac) == Some(&(index, ip)) {
                self.by_mac.remove(&lease.mac);
            }
            if lease.state != LeaseState::Probing && lease.state != LeaseState::Offered {
                self.records.push(Record::Forget(ip));
            }
        }
    }

    /// `mac` is in the inventory now: its pool lease and its discovery entry go. Returns the
    /// address it held, if any (cheap when it held none: one map look-up).
    pub fn forget_mac(&mut self, mac: MacAddr) -> Option<Ipv4Addr> {
        if self.discovered.remove(&mac).is_some() {
            self.records.push(Record::Unseen(mac));
        }
        let (index, ip) = self.by_mac.remove(&mac)?;
        let ours = self.pools[index]
            .leases
            .get(&ip)
            .is_some_and(|l| l.mac == mac);
        if ours {
            self.drop_lease(index, ip);
            return Some(ip);
        }
        None
    }

    /// Records an unknown MAC's request in the discovery list (capped at [`MAX_DISCOVERED`]:
    /// the entry seen least recently makes room). A new entry, or one whose facts changed, is
    /// journaled; counts and times are written at compaction.
    pub fn saw(&mut self, s: Sighting, now: Millis) {
        if !self.discovered.contains_key(&s.mac) && self.discovered.len() >= MAX_DISCOVERED {
            if let Some(oldest) = self
                .discovered
                .values()
                .min_by_key(|d| d.last_seen)
                .map(|d| d.mac)
            {
                self.discovered.remove(&oldest);
            }
        }
        let entry = self.discovered.entry(s.mac).or_insert_with(|| Discovered {
            mac: s.mac,
            first_seen: now,
            ..Discovered::default()
        });
        let before = entry.clone();
        let is_new = before.last_seen == 0;
        entry.last_seen = now;
        entry.via = s.via;
        entry.arch = s.arch.or(entry.arch);
        entry.vendor_class = s.vendor_class.or(entry.vendor_class.take());
        entry.user_class = s.user_class.or(entry.user_class.take());
        entry.hostname = s.hostname.or(entry.hostname.take());
        if s.discover {
            entry.discovers = entry.discovers.saturating_add(1);
        }
        let facts_changed = is_new
            || before.via != entry.via
            || before.arch != entry.arch
            || before.vendor_class != entry.vendor_class
            || before.user_class != entry.user_class
            || before.hostname != entry.hostname;
        if facts_changed {
            self.records.push(Record::Seen(entry.clone()));
        } else {
            self.discovery_dirty = true;
        }
    }

    fn note_address(&mut self, mac: MacAddr, ip: Ipv4Addr) {
        if let Some(d) = self.discovered.get_mut(&mac) {
            if d.address != Some(ip) {
                d.address = Some(ip);
                self.records.push(Record::Seen(d.clone()));
            }
        }
    }

    /// The records of the changes made since the last call, to append to the journal.
    pub fn take_records(&mut self) -> Vec<Record> {
        std::mem::take(&mut self.records)
    }

    pub fn has_records(&self) -> bool {
        !self.records.is_empty()
    }

    /// Has anything changed that only a compaction writes (discovery counters)?
    pub fn discovery_dirty(&self) -> bool {
        self.discovery_dirty
    }

    /// Applies a journal record read at start-up (the latest record of an address wins).
    pub fn replay(&mut self, record: Record) {
        match record {
            Record::Lease(lease) => {
                if let Some(i) = self
                    .pools
                    .iter()
                    .position(|p| p.settings.in_range(lease.ip))
                {
                    self.by_mac.insert(lease.mac, (i, lease.ip));
                    self.pools[i].insert(lease);
                }
            }
            Record::Forget(ip) => {
                if let Some(i) = self.pools.iter().position(|p| p.settings.in_range(ip)) {
                    if let Some(l) = self.pools[i].remove(ip) {
                        self.by_mac.remove(&l.mac);
                    }
                }
            }
            Record::Quarantine { ip, until } => {
                if let Some(p) = self.pools.iter_mut().find(|p| p.settings.in_range(ip)) {
                    p.quarantined.insert(ip, until);
                }
            }
            Record::Seen(d) => {
                if self.discovered.len() < MAX_DISCOVERED || self.discovered.contains_key(&d.mac) {
                    self.discovered.insert(d.mac, d);
                }
            }
            Record::Unseen(mac) => {
                self.discovered.remove(&mac);
            }
        }
    }

    /// Everything worth keeping at `now`, as records: what a compacted journal holds. Expired
    /// quarantines and offers are left out; free leases stay (they make addresses sticky).
    pub fn snapshot(&mut self, now: Millis) -> Vec<Record> {
        self.discovery_dirty = false;
        let mut out = Vec::new();
        for pool in &self.pools {
            let leases = pool
                .leases
                .values()
                .filter(|l| matches!(l.state, LeaseState::Bound | LeaseState::Free));
            out.extend(leases.cloned().map(Record::Lease));
            out.extend(
                pool.quarantined
                    .iter()
                    .filter(|(_, u)| **u > now)
                    .map(|(ip, until)| Record::Quarantine {
                        ip: *ip,
                        until: *until,
                    }),
            );
        }
        out.extend(self.discovered.values().cloned().map(Record::Seen));
        out
    }

    /// Every lease record (bound, held or free), in no particular order.
    pub fn leases(&self) -> Vec<&Lease> {
        self.pools.iter().flat_map(|p| p.leases.values()).collect()
    }

    pub fn discovered(&self) -> impl Iterator<Item = &Discovered> {
        self.discovered.values()
    }

    /// Drops the discovery entries and pool leases of MACs that `known` says are in the
    /// inventory now; returns each MAC with the address it held, if any.
    pub fn prune_known(
        &mut self,
        known: &dyn Fn(MacAddr) -> bool,
    ) -> Vec<(MacAddr, Option<Ipv4Addr>)> {
        let mut macs: Vec<MacAddr> = self
            .discovered
            .keys()
            .copied()
            .filter(|m| known(*m))
            .collect();
        let leased: Vec<MacAddr> = self.by_mac.keys().copied().filter(|m| known(*m)).collect();
        for mac in leased {
            if !macs.contains(&mac) {
                macs.push(mac);
            }
        }
        macs.into_iter()
            .map(|mac| (mac, self.forget_mac(mac)))
            .collect()
    }

    pub fn stats(&self, now: Millis) -> Vec<PoolStats> {
        self.pools
            .iter()
            .map(|p| PoolStats {
                name: p.settings.name.clone(),
                size: p.settings.size(),
                bound: p.leases.values().filter(|l| l.bound(now)).count(),
                offered: p
                    .leases
                    .values()
                    .filter(|l| l.held(now) && l.state != LeaseState::Bound)
                    .count(),
                quarantined: p.quarantined.values().filter(|u| **u > now).count(),
            })
            .collect()
    }
}

/// `/unknown`: the unknown MACs seen (by MAC), every pool's figures and its leases
/// (bound or held at `now`), as JSON. Times are seconds since the Unix epoch.
pub fn unknown_json(pools: &Pools, now: Millis) -> String {
    use crate::wire::json::string_into;
    let text = |out: &mut String, v: &Option<String>| match v {
        Some(t) => string_into(out, t),
        None => out.push_str("null"),
    };
    let mut out = String::from("{\"unknown\":[");
    let seen: Vec<&Discovered> = pools.discovered().collect();
    for (i, d) in seen.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&format!(
            "{{\"mac\":\"{}\",\"first_seen\":{},\"last_seen\":{},\"discovers\":{},\"via\":",
            d.mac,
            d.first_seen / 1000,
            d.last_seen / 1000,
            d.discovers
        ));
        string_into(&mut out, &d.via);
        out.push_str(",\"arch\":");
        out.push_str(&d.arch.map_or_else(|| "null".into(), |a| a.to_string()));
        out.push_str(",\"vendor_class\":");
        text(&mut out, &d.vendor_class);
        out.push_str(",\"user_class\":");
        text(&mut out, &d.user_class);
        out.push_str(",\"hostname\":");
        text(&mut out, &d.hostname);
        out.push_str(",\"address\":");
        text(&mut out, &d.address.map(|a| a.to_string()));
        out.push('}');
    }
    out.push_str("],\"pools\":[");
    for (i, (s, p)) in pools.stats(now).iter().zip(&pools.pools).enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&format!(
            "{{\"name\":\"{}\",\"first\":\"{}\",\"last\":\"{}\",\"size\":{},\"bound\":{},\"offered\":{},\"quarantined\":{}}}",
            s.name, p.settings.first, p.settings.last, s.size, s.bound, s.offered, s.quarantined
        ));
    }
    out.push_str("],\"leases\":[");
    let held: Vec<&Lease> = pools.leases().into_iter().filter(|l| l.held(now)).collect();
    for (i, l) in held.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&format!(
            "{{\"ip\":\"{}\",\"mac\":\"{}\",\"state\":\"{}\",\"expires\":{}}}",
            l.ip,
            l.mac,
            l.state.as_str(),
            l.expires / 1000
        ));
    }
    out.push_str("]}\n");
    out
}

pub mod journal;

#[cfg(test)]
mod tests;
