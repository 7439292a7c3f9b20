//! The I/O layer: what touches the operating system. The operator's files ([`files`]),
//! host facts for "auto" addresses ([`netif`]), file-change detection ([`watch`]) and
//! signals as a pollable descriptor ([`signals`]). Raw packet sockets with BPF and UDP setup join it with the services.

pub mod files;
pub mod netif;
pub mod signals;
pub mod watch;
