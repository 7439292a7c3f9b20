//! Smee's "auto" address: the first IPv4 address of the named interface, else of the
//! default-route interface, else the first global one. The choice is a pure function over
//! what [`SystemHost`] reads from `getifaddrs(3)` and `/proc/net/route`.

use std::net::Ipv4Addr;
use std::path::Path;

use crate::config::Host;

/// The interface of the lowest-metric default route in `/proc/net/route` text.
pub fn default_route_interface(route_table: &str) -> Option<String> {
    route_table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let cols: Vec<&str> = line.split_whitespace().collect();
            let (iface, dest, flags, metric, mask) = (
                cols.first()?,
                cols.get(1)?,
                cols.get(3)?,
                cols.get(6)?,
                cols.get(7)?,
            );
            let up = u32::from_str_radix(flags, 16).ok()? & 1 == 1;
            (up && *dest == "00000000" && *mask == "00000000")
                .then(|| (metric.parse::<u32>().unwrap_or(u32::MAX), iface.to_string()))
        })
        .min()
        .map(|(_, iface)| iface)
}

/// Picks the "auto" address from `(interface, address)` pairs in system order.
pub fn choose_ipv4(
    addrs: &[(String, Ipv4Addr)],
    wanted: Option<&str>,
    default_iface: Option<&str>,
) -> Result<Ipv4Addr, String> {
    let first_of = |iface: &str| {
        addrs
            .iter()
            .find(|(name, _)| name == iface)
            .map(|(_, ip)| *ip)
    };
    if let Some(iface) = wanted {
        return first_of(iface).ok_or_else(|| format!("interface {iface} has no IPv4 address"));
    }
    if let Some(ip) = default_iface.and_then(first_of) {
        return Ok(ip);
    }
    addrs
        .iter()
        .map(|(_, ip)| *ip)
        .find(|ip| !ip.is_loopback() && !ip.is_link_local() && !ip.is_unspecified())
        .ok_or_else(|| "no IPv4 address was found on this host".to_string())
}

/// The real host.
pub struct SystemHost;

impl SystemHost {
    fn ipv4_addresses() -> Vec<(String, Ipv4Addr)> {
        let Ok(addrs) = nix::ifaddrs::getifaddrs() else {
            return Vec::new();
        };
        addrs
            .filter_map(|a| {
                let ip = a.address?.as_sockaddr_in()?.ip();
                Some((a.interface_name, ip))
            })
            .collect()
    }
}

impl Host for SystemHost {
    fn auto_ipv4(&self, interface: Option<&str>) -> Result<Ipv4Addr, String> {
        let routes = std::fs::read_to_string("/proc/net/route").unwrap_or_default();
        choose_ipv4(
            &Self::ipv4_addresses(),
            interface,
            default_route_interface(&routes).as_deref(),
        )
    }

    fn is_dir(&self, path: &Path) -> bool {
        path.is_dir()
    }
}

/// The MTU of the interface with this index (from sysfs), if it can be read.
pub fn interface_mtu(ifindex: u32) -> Option<u32> {
    let names = nix::net::if_::if_nameindex().ok()?;
    let name = names
        .iter()
        .find(|i| i.index() == ifindex)?
        .name()
        .to_str()
        .ok()?
        .to_string();
    std::fs::read_to_string(format!("/sys/class/net/{name}/mtu"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROUTES: &str =
        "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
        eth1\t00000000\t0102A8C0\t0003\t0\t0\t600\t00000000\t0\t0\t0\n\
        eth0\t00000000\t010011AC\t0003\t0\t0\t100\t00000000\t0\t0\t0\n\
        eth0\t000011AC\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0\n";

    #[test]
    fn default_route_is_the_lowest_metric() {
        assert_eq!(default_route_interface(ROUTES).as_deref(), Some("eth0"));
        assert_eq!(default_route_interface("Iface\tDestination\n"), None);
        assert_eq!(default_route_interface("garbage\n1 2\n"), None);
    }

    #[test]
    fn auto_address_order() {
        let ip = |s: &str| s.parse::<Ipv4Addr>().unwrap();
        let addrs = vec![
            ("lo".to_string(), ip("127.0.0.1")),
            ("eth1".into(), ip("192.168.2.5")),
            ("eth0".into(), ip("172.17.0.2")),
        ];
        assert_eq!(
            choose_ipv4(&addrs, Some("eth1"), Some("eth0")),
            Ok(ip("192.168.2.5"))
        );
        assert!(choose_ipv4(&addrs, Some("eth7"), Some("eth0"))
            .unwrap_err()
            .contains("eth7"));
        assert_eq!(
            choose_ipv4(&addrs, None, Some("eth0")),
            Ok(ip("172.17.0.2"))
        );
        assert_eq!(choose_ipv4(&addrs, None, None), Ok(ip("192.168.2.5")));
        assert!(choose_ipv4(&addrs[..1], None, None).is_err());
    }
}
