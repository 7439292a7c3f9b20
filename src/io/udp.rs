//! UDP sockets for the services: bound (optionally to one interface), non-blocking, and for
//! DHCP able to learn and choose the interface of each datagram (IP_PKTINFO), so broadcast
//! replies leave by the interface the request came in on.

use std::io;
use std::io::{IoSlice, IoSliceMut};
use std::net::{SocketAddrV4, UdpSocket};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};

use nix::libc;
use nix::sys::socket::{
    recvmsg, sendmsg, setsockopt, sockopt, ControlMessage, ControlMessageOwned, MsgFlags,
    SockaddrIn,
};
use socket2::{Domain, Protocol, SockFilter, Socket, Type};

/// How to set a socket up.
#[derive(Clone, Copy, Debug, Default)]
pub struct UdpOptions<'a> {
    /// SO_BINDTODEVICE: only traffic of this interface.
    pub interface: Option<&'a str>,
    /// SO_BROADCAST, needed to send to 255.255.255.255.
    pub broadcast: bool,
    /// Report the arrival interface of each datagram (IP_PKTINFO).
    pub packet_info: bool,
    /// A socket filter (for a socket that must exist but is never read).
    pub filter: Option<&'a [SockFilter]>,
    /// SO_RCVBUF wish; best effort.
    pub recv_buffer: Option<usize>,
}

pub struct UdpEndpoint {
    socket: UdpSocket,
}

/// A received datagram's sender and arrival interface (when IP_PKTINFO is on).
pub struct Received {
    pub len: usize,
    pub from: SocketAddrV4,
    pub ifindex: Option<u32>,
    /// The local address the datagram was for (IP_PKTINFO's `ipi_spec_dst`).
    pub local: Option<std::net::Ipv4Addr>,
}

impl UdpEndpoint {
    pub fn bind(addr: SocketAddrV4, opts: UdpOptions) -> io::Result<UdpEndpoint> {
        let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
        socket.set_reuse_address(true)?;
        if let Some(filter) = opts.filter {
            socket.attach_filter(filter)?;
        }
        if let Some(iface) = opts.interface {
            socket.bind_device(Some(iface.as_bytes())).map_err(|e| {
                io::Error::new(e.kind(), format!("binding to interface {iface}: {e}"))
            })?;
        }
        if opts.broadcast {
            socket.set_broadcast(true)?;
        }
        if let Some(size) = opts.recv_buffer {
            let _ = socket.set_recv_buffer_size(size);
        }
        socket
            .bind(&addr.into())
            .map_err(|e| io::Error::new(e.kind(), format!("binding {addr}: {e}")))?;
        socket.set_nonblocking(true)?;
        if opts.packet_info {
            setsockopt(&socket, sockopt::Ipv4PacketInfo, &true).map_err(io::Error::from)?;
        }
        Ok(UdpEndpoint {
            socket: socket.into(),
        })
    }

    /// Reads one datagram; `WouldBlock` when none is waiting.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<Received> {
        let mut iov = [IoSliceMut::new(buf)];
        let mut space = nix::cmsg_space!(libc::in_pktinfo);
        let msg = recvmsg::<SockaddrIn>(
            self.socket.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::empty(),
        )
        .map_err(io::Error::from)?;
        let from = msg
            .address
            .map(SocketAddrV4::from)
            .ok_or_else(|| io::Error::other("datagram without a sender"))?;
        let mut ifindex = None;
        let mut local = None;
        if let Ok(cmsgs) = msg.cmsgs() {
            for c in cmsgs {
                if let ControlMessageOwned::Ipv4PacketInfo(info) = c {
                    ifindex = u32::try_from(info.ipi_ifindex).ok();
                    local = Some(std::net::Ipv4Addr::from(u32::from_be(
                        info.ipi_spec_dst.s_addr,
                    )));
                }
            }
        }
        Ok(Received {
            len: msg.bytes,
            from,
            ifindex,
            local,
        })
    }

    /// Sends one datagram, out of interface `ifindex` when given.
    pub fn send_to(&self, data: &[u8], to: SocketAddrV4, ifindex: Option<u32>) -> io::Result<()> {
        let Some(ifindex) = ifindex else {
            self.socket.send_to(data, to)?;
            return Ok(());
        };
        let info = libc::in_pktinfo {
            ipi_ifindex: ifindex as libc::c_int,
            ipi_spec_dst: libc::in_addr { s_addr: 0 },
            ipi_addr: libc::in_addr { s_addr: 0 },
        };
        sendmsg(
            self.socket.as_raw_fd(),
            &[IoSlice::new(data)],
            &[ControlMessage::Ipv4PacketInfo(&info)],
            MsgFlags::empty(),
            Some(&SockaddrIn::from(to)),
        )
        .map_err(io::Error::from)?;
        Ok(())
    }

    /// The same socket again (for threads that send from it).
    pub fn try_clone_socket(&self) -> io::Result<UdpSocket> {
        self.socket.try_clone()
    }

    pub fn local_addr(&self) -> io::Result<std::net::SocketAddr> {
        self.socket.local_addr()
    }
}

impl AsFd for UdpEndpoint {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.socket.as_fd()
    }
}
