//! `[[pool]]` tables: address pools for machines the inventory does not know yet (short
//! leases, a reboot script), read from the config file and checked against each other.

use std::net::{IpAddr, Ipv4Addr};

use crate::inventory::doc::{normalize_key, Node, Value};
use crate::inventory::BootProfile;
use crate::value::{self, Cidr};

/// The most addresses one pool may hold (a /16): the allocator scans its range.
pub const MAX_POOL_ADDRESSES: u32 = 65_536;
/// `lease-time` when the table does not say: 5 minutes, so an unknown machine comes back soon.
pub const DEFAULT_POOL_LEASE: u32 = 300;
/// `reboot-sleep` when the table does not say.
pub const DEFAULT_REBOOT_SLEEP: u32 = 30;

/// What a PXE client in the pool boots once iPXE runs.
#[derive(Clone, Debug, PartialEq)]
pub enum PoolBoot {
    /// `#!ipxe`, a message, `sleep N`, `reboot`: the machine keeps retrying until it is known.
    Reboot { sleep: u32 },
    /// A boot profile of the config file (a discovery image), by name; resolved when the
    /// configuration is validated.
    Profile(String, Option<BootProfile>),
}

/// One pool, as validated.
#[derive(Clone, Debug, PartialEq)]
pub struct PoolSettings {
    /// `name`, else `pool<N>` by position (1-based).
    pub name: String,
    /// The network: mask, network and broadcast addresses, and which requests the pool serves
    /// (relayed from a giaddr inside it, or arriving where the server's address is inside it).
    pub subnet: Cidr,
    pub first: Ipv4Addr,
    pub last: Ipv4Addr,
    pub gateway: Option<Ipv4Addr>,
    pub name_servers: Vec<Ipv4Addr>,
    pub domain: Option<String>,
    /// Seconds.
    pub lease_time: u32,
    pub boot: PoolBoot,
}

impl PoolSettings {
    pub fn mask(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.subnet.mask_bits())
    }

    pub fn network(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(v4(self.subnet.addr)) & self.subnet.mask_bits())
    }

    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network()) | !self.subnet.mask_bits())
    }

    /// Is `ip` one of the pool's addresses (network and broadcast never are)?
    pub fn in_range(&self, ip: Ipv4Addr) -> bool {
        (self.first..=self.last).contains(&ip) && ip != self.network() && ip != self.broadcast()
    }

    /// Does the pool serve requests from `network` (a giaddr or the server's address)?
    pub fn serves(&self, network: Ipv4Addr) -> bool {
        self.subnet.contains(network.into())
    }

    pub fn size(&self) -> u32 {
        u32::from(self.last) - u32::from(self.first) + 1
    }
}

fn v4(ip: IpAddr) -> Ipv4Addr {
    match ip {
        IpAddr::V4(v4) => v4,
        IpAddr::V6(_) => Ipv4Addr::UNSPECIFIED,
    }
}

/// `a.b.c.d-e.f.g.h` or a CIDR (its host addresses).
fn range(text: &str) -> Result<(Ipv4Addr, Ipv4Addr, Option<Cidr>), String> {
    if let Some((a, b)) = text.split_once('-') {
        let (first, last) = (value::ipv4(a.trim())?, value::ipv4(b.trim())?);
        if last < first {
            return Err(format!("{last} comes before {first}"));
        }
        return Ok((first, last, None));
    }
    let cidr = Cidr::parse(text.trim())?;
    let IpAddr::V4(net) = cidr.addr else {
        return Err("an IPv4 range is needed".into());
    };
    let mask = cidr.mask_bits();
    let network = u32::from(net) & mask;
    let broadcast = network | !mask;
    if cidr.prefix >= 31 {
        return Ok((
            Ipv4Addr::from(network),
            Ipv4Addr::from(broadcast),
            Some(cidr),
        ));
    }
    Ok((
        Ipv4Addr::from(network + 1),
        Ipv4Addr::from(broadcast - 1),
        Some(cidr),
    ))
}

/// One `[[pool]]` table; `index` is its position (1-based), `at` names a line and key in errors.
pub fn parse_pool(
    node: &Node,
    index: usize,
    at: &dyn Fn(usize, &str, String) -> String,
) -> Result<PoolSettings, Vec<String>> {
    let Value::Map(entries) = &node.value else {
        return Err(vec![at(node.line, "", "expected a table".into())]);
    };
    let mut errors = Vec::new();
    let mut name = format!("pool{index}");
    let (mut span, mut subnet, mut gateway, mut dns, mut domain) = (None, None, None, vec![], None);
    let (mut lease_time, mut boot, mut sleep) = (DEFAULT_POOL_LEASE, None, DEFAULT_REBOOT_SLEEP);
    for entry in entries {
        let line = entry.value.line;
        let texts = super::file::texts_of(&entry.value.value);
        let one = texts.first().copied().unwrap_or("");
        let key = entry.key.as_str();
        let result = match normalize_key(key).as_str() {
            "name" => value::host(one).map(|n| name = n),
            "range" => range(one).map(|r| span = Some(r)),
            "subnet" | "cidr" => Cidr::parse(one)
                .and_then(|c| match c.addr {
                    IpAddr::V4(_) => Ok(c),
                    _ => Err("an IPv4 network is needed".into()),
                })
                .map(|c| subnet = Some(c)),
            "gateway" | "router" => value::ipv4(one).map(|ip| gateway = Some(ip)),
            "dns" | "nameservers" => texts
                .iter()
                .map(|t| value::ipv4(t))
                .collect::<Result<Vec<_>, _>>()
                .map(|ips| dns = ips),
            "domain" => value::host(one).map(|d| domain = Some(d)),
            "leasetime" => value::duration(one)
                .ok()
                .map(|d| d.as_secs())
                .filter(|s| (10..=86_400).contains(s))
                .map(|s| lease_time = s as u32)
                .ok_or_else(|| "expected 10s to 24h (e.g. 300 or \"5m\")".to_string()),
            "boot" => value::host(one).map(|b| boot = Some(b)),
            "rebootsleep" => value::duration(one)
                .ok()
                .map(|d| d.as_secs())
                .filter(|s| *s <= 3600)
                .map(|s| sleep = s as u32)
                .ok_or_else(|| "expected 0s to 1h".to_string()),
            _ => Err(
                "unknown key (name, range, subnet, gateway, dns, domain, lease-time, boot, reboot-sleep)"
                    .into(),
            ),
        };
        if let Err(why) = result {
            errors.push(at(line, key, why));
        }
    }
    let Some((first, last, range_cidr)) = span else {
        errors.push(at(node.line, "range", "required".into()));
        return Err(errors);
    };
    let Some(subnet) = subnet.or(range_cidr) else {
        errors.push(at(
            node.line,
            "subnet",
            "required when the range is not a CIDR (it gives the mask)".into(),
        ));
        return Err(errors);
    };
    let mut pool = PoolSettings {
        name,
        subnet,
        first,
        last,
        gateway,
        name_servers: dns,
        domain,
        lease_time,
        boot: match boot.as_deref() {
            None | Some("reboot") => PoolBoot::Reboot { sleep },
            Some(profile) => PoolBoot::Profile(profile.to_string(), None),
        },
    };
    // A CIDR range inside a wider subnet: network and broadcast of the range's own CIDR are
    // ordinary hosts of the subnet, but keep them out anyway (operators expect it).
    if let Some(c) = range_cidr.filter(|c| c.prefix < 31 && *c != subnet) {
        let (f, l, _) = range(&c.to_string()).unwrap_or((first, last, None));
        pool.first = f;
        pool.last = l;
    }
    for (what, ip) in [("first", pool.first), ("last", pool.last)] {
        if !subnet.contains(ip.into()) {
            errors.push(at(
                node.line,
                "range",
                format!("{what} address {ip} is outside the subnet {subnet}"),
            ));
        }
    }
    if let Some(gw) = gateway.filter(|gw| !subnet.contains((*gw).into())) {
        errors.push(at(
            node.line,
            "gateway",
            format!("{gw} is outside {subnet}"),
        ));
    }
    if errors.is_empty() && pool.size() > MAX_POOL_ADDRESSES {
        errors.push(at(
            node.line,
            "range",
            format!(
                "{} addresses; a pool holds at most {MAX_POOL_ADDRESSES}",
                pool.size()
            ),
        ));
    }
    if errors.is_empty() {
        Ok(pool)
    } else {
        Err(errors)
    }
}

/// Checks the pools against each other: unique names, no overlapping ranges.
pub fn check_pools(pools: &[PoolSettings]) -> Result<(), String> {
    for (i, a) in pools.iter().enumerate() {
        for b in &pools[i + 1..] {
            if a.name == b.name {
                return Err(format!("two pools are named {:?}", a.name));
            }
            if a.first <= b.last && b.first <= a.last {
                return Err(format!(
                    "pools {} ({}-{}) and {} ({}-{}) overlap",
                    a.name, a.first, a.last, b.name, b.first, b.last
                ));
            }
        }
    }
    Ok(())
}
