//! The I/O layer: what touches the operating system. The operator's files ([`files`]),
//! host facts for "auto" addresses ([`netif`]), file-change detection ([`watch`]), signals as
//! a pollable descriptor ([`signals`]), the raw packet socket with its BPF filter ([`packet`])
//! UDP sockets with per-datagram interface control ([`udp`]) and giving up root once they are
//! bound ([`privileges`]), background jobs whose results wake the poll loop
//! ([`background`]), the logger that writes text or JSON lines ([`logger`]), and the HTTP client
//! of the remote sources ([`fetch`], with [`tls`]; feature `remote`).

pub mod background;
#[cfg(feature = "remote")]
pub mod fetch;
pub mod files;
pub mod growing;
pub mod limits;
pub mod logger;
pub mod netif;
pub mod packet;
pub mod pool_journal;
pub mod privileges;
pub mod probe;
pub mod signals;
#[cfg(feature = "remote")]
pub mod tls;
pub mod udp;
pub mod watch;
