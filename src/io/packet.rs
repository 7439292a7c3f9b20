//! A raw packet socket (AF_PACKET) bound to one interface, with a BPF filter so that only
//! frames for UDP port 67 reach netbootd. It reads and writes whole Ethernet frames, which is
//! how DHCP answers clients that have no address yet without touching the ARP table, and why
//! netbootd can share a host with another DHCP daemon bound to other interfaces.
//!
//! The socket is created with protocol 0 (it receives nothing), the filter is attached, and only
//! then is it bound to the interface and IPv4: no unfiltered frame is ever queued.

use std::io;
use std::mem::size_of;
use std::os::fd::{AsFd, BorrowedFd};

use nix::libc;
use socket2::{Domain, Protocol, SockAddr, SockAddrStorage, SockFilter, Socket, Type};

use crate::wire::MacAddr;

const ETH_P_IP: u16 = 0x0800;

/// Accepts IPv4/UDP frames to port 67 that were received (not sent by this host), not
/// fragmented. Built from `tcpdump -dd 'ip and udp dst port 67'` plus a packet-type check.
const DHCP_SERVER_FILTER: [SockFilter; 13] = [
    SockFilter::new(0x30, 0, 0, 0xffff_f004), // ldb  [pkttype]
    SockFilter::new(0x15, 10, 0, 4),          // jeq  #PACKET_OUTGOING  -> drop
    SockFilter::new(0x28, 0, 0, 12),          // ldh  [12]  ethertype
    SockFilter::new(0x15, 0, 8, 0x0800),      // jne  IPv4 -> drop
    SockFilter::new(0x30, 0, 0, 23),          // ldb  [23]  protocol
    SockFilter::new(0x15, 0, 6, 17),          // jne  UDP -> drop
    SockFilter::new(0x28, 0, 0, 20),          // ldh  [20]  flags + fragment offset
    SockFilter::new(0x45, 4, 0, 0x1fff),      // jset fragment -> drop
    SockFilter::new(0xb1, 0, 0, 14),          // ldxb 4*([14]&0xf)  IP header length
    SockFilter::new(0x48, 0, 0, 16),          // ldh  [x+16]  UDP destination port
    SockFilter::new(0x15, 0, 1, 67),          // jne  67 -> drop
    SockFilter::new(0x06, 0, 0, 0x0004_0000), // ret  whole frame
    SockFilter::new(0x06, 0, 0, 0),           // ret  0: drop
];

/// A filter that drops everything: for sockets that must exist but never be read.
pub const DROP_ALL: [SockFilter; 1] = [SockFilter::new(0x06, 0, 0, 0)];

pub struct PacketSocket {
    socket: Socket,
    pub interface: String,
    pub mac: MacAddr,
}

impl PacketSocket {
    /// Opens a socket for DHCP server traffic on `interface`. Needs CAP_NET_RAW.
    pub fn open_dhcp_server(interface: &str) -> io::Result<PacketSocket> {
        let ifindex = nix::net::if_::if_nametoindex(interface)
            .map_err(|e| io::Error::other(format!("interface {interface}: {e}")))?;
        let mac = interface_mac(interface)?;
        let socket = Socket::new(Domain::PACKET, Type::RAW, Some(Protocol::from(0)))?;
        socket.attach_filter(&DHCP_SERVER_FILTER)?;
        socket.bind(&link_address(ifindex, ETH_P_IP))?;
        socket.set_nonblocking(true)?;
        // Room for bursts (thousands of clients powering on together); best effort.
        let _ = socket.set_recv_buffer_size(4 << 20);
        Ok(PacketSocket {
            socket,
            interface: interface.to_string(),
            mac,
        })
    }

    /// Reads one frame; `WouldBlock` when none is waiting.
    pub fn recv<'b>(&self, buf: &'b mut [u8]) -> io::Result<&'b [u8]> {
        use std::io::Read;
        let n = (&self.socket).read(buf)?;
        Ok(&buf[..n.min(buf.len())])
    }

    /// Sends one whole Ethernet frame out of the bound interface.
    pub fn send(&self, frame: &[u8]) -> io::Result<()> {
        let n = self.socket.send(frame)?;
        if n == frame.len() {
            Ok(())
        } else {
            Err(io::Error::other(format!(
                "sent {n} of {} bytes",
                frame.len()
            )))
        }
    }
}

impl AsFd for PacketSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.socket.as_fd()
    }
}

/// `sockaddr_ll` for binding to (interface, protocol).
pub(crate) fn link_address(ifindex: u32, protocol: u16) -> SockAddr {
    let mut storage = SockAddrStorage::zeroed();
    // SAFETY: sockaddr_ll is one of the platform's sockaddr types and fits in the storage
    // (checked by view_as); every field is plain data and the rest stays zeroed.
    let len = unsafe {
        let ll = storage.view_as::<libc::sockaddr_ll>();
        ll.sll_family = libc::AF_PACKET as u16;
        ll.sll_protocol = protocol.to_be();
        ll.sll_ifindex = ifindex as i32;
        size_of::<libc::sockaddr_ll>() as libc::socklen_t
    };
    // SAFETY: the storage holds an initialised sockaddr_ll of `len` bytes.
    unsafe { SockAddr::new(storage, len) }
}

/// The Ethernet address of `interface`.
pub fn interface_mac(interface: &str) -> io::Result<MacAddr> {
    let addrs = nix::ifaddrs::getifaddrs().map_err(io::Error::from)?;
    for ifa in addrs {
        if ifa.interface_name != interface {
            continue;
        }
        if let Some(mac) = ifa
            .address
            .as_ref()
            .and_then(|a| a.as_link_addr())
            .and_then(|l| l.addr())
        {
            return Ok(MacAddr(mac));
        }
    }
    Err(io::Error::other(format!(
        "interface {interface} has no Ethernet address"
    )))
}
