//! The policy layer: pure decisions. Each service hands it a parsed request, the current
//! inventory snapshot and the validated config, and gets back either a reply to send or a
//! reason to stay silent. No sockets, clocks, threads or files.
//!
//! [`dhcp`] decides DHCP and ProxyDHCP answers, [`tftp`] negotiates and drives transfers,
//! [`http`] routes requests and renders scripts, [`syslog`] turns messages into log lines;
//! [`event`] is what a decision's log line says, as text and as fields; [`source`] decides when
//! a remote inventory source is fetched and whether a result replaces the snapshot in service.

pub mod assets;
pub mod budget;
pub mod byo_dhcp;
pub mod dhcp;
pub mod event;
pub mod http;
pub mod pool;
pub mod served;
pub mod source;
pub mod syslog;
pub mod tftp;
