//! Probing an address before the pool offers it: ARP on the DHCP interface (packet-socket
//! mode, for pools on that segment) and ICMP echo through a raw socket (everything else).
//! Both sockets are opened at start (they need CAP_NET_RAW) and read in the loop; what an
//! answer means is the pool's business ([`crate::policy::pool::Pools::probe_result`]).

use std::io::{self, Read};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::{AsFd, BorrowedFd};

use socket2::{Domain, Protocol, Socket, Type};

use crate::wire::probe::{arp_request, arp_sender, icmp_echo, icmp_echo_reply_from};
use crate::wire::MacAddr;

const ETH_P_ARP: u16 = 0x0806;

/// ARP on one interface: frames out and in.
pub struct ArpProbe {
    socket: Socket,
    mac: MacAddr,
    sender: Ipv4Addr,
}

impl ArpProbe {
    /// A packet socket for ARP on `interface`, asking as `sender` (the server's address).
    pub fn open(interface: &str, sender: Ipv4Addr) -> io::Result<ArpProbe> {
        let ifindex = nix::net::if_::if_nametoindex(interface)
            .map_err(|e| io::Error::other(format!("interface {interface}: {e}")))?;
        let mac = super::packet::interface_mac(interface)?;
        let socket = Socket::new(Domain::PACKET, Type::RAW, Some(Protocol::from(0)))?;
        socket.bind(&super::packet::link_address(ifindex, ETH_P_ARP))?;
        socket.set_nonblocking(true)?;
        Ok(ArpProbe {
            socket,
            mac,
            sender,
        })
    }

    pub fn send(&self, target: Ipv4Addr) -> io::Result<()> {
        self.socket
            .send(&arp_request(self.mac, self.sender, target))
            .map(drop)
    }

    /// The sender of the next ARP frame waiting; `Ok(None)` for a frame that is no answer,
    /// `WouldBlock` when none waits.
    pub fn recv(&self) -> io::Result<Option<Ipv4Addr>> {
        let mut buf = [0u8; 128];
        let n = (&self.socket).read(&mut buf)?;
        Ok(arp_sender(&buf[..n.min(buf.len())]))
    }
}

impl AsFd for ArpProbe {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.socket.as_fd()
    }
}

/// ICMP echo through a raw socket; replies are told apart by `ident` (this process's).
pub struct IcmpProbe {
    socket: Socket,
    ident: u16,
    seq: u16,
}

impl IcmpProbe {
    pub fn open() -> io::Result<IcmpProbe> {
        let socket = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::ICMPV4))?;
        socket.set_nonblocking(true)?;
        Ok(IcmpProbe {
            socket,
            ident: (std::process::id() & 0xffff) as u16,
            seq: 0,
        })
    }

    pub fn send(&mut self, target: Ipv4Addr) -> io::Result<()> {
        self.seq = self.seq.wrapping_add(1);
        let addr = SocketAddrV4::new(target, 0);
        self.socket
            .send_to(&icmp_echo(self.ident, self.seq), &addr.into())
            .map(drop)
    }

    /// The source of the next echo reply of ours; `Ok(None)` for other ICMP.
    pub fn recv(&self) -> io::Result<Option<Ipv4Addr>> {
        let mut buf = [0u8; 256];
        let n = (&self.socket).read(&mut buf)?;
        Ok(icmp_echo_reply_from(&buf[..n.min(buf.len())], self.ident))
    }
}

impl AsFd for IcmpProbe {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.socket.as_fd()
    }
}
