//! The wire layer: pure parsing and emitting of what crosses the network.
//! Nothing here opens a socket, reads a clock or a file, or panics on any input.
//! Today it holds the MAC address type; the DHCP, TFTP and syslog codecs join it.

mod mac;

pub use mac::MacAddr;
