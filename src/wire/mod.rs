//! The wire layer: pure parsing and emitting of what crosses the network.
//! Nothing here opens a socket, reads a clock or a file, or panics on any input.
//! [`dhcp`] is the DHCPv4 codec, [`frame`] the Ethernet/IPv4/UDP framing for packet sockets;
//! [`tftp`], [`http`] (request heads) and [`syslog`] (RFC 5424 and RFC 3164) the rest;
//! [`json`] writes the JSON log lines; [`response`] is HTTP as a client reads it (the remote
//! sources, feature `remote`); [`ipxe_patch`] writes `--ipxe-script-patch` into an iPXE binary.

pub mod dhcp;
pub mod frame;
pub mod http;
pub mod ipxe_patch;
pub mod json;
mod mac;
pub mod probe;
pub mod pxe;
#[cfg(feature = "remote")]
pub mod response;
pub mod syslog;
pub mod tftp;

pub use mac::MacAddr;
