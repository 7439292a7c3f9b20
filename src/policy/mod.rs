//! The policy layer: pure decisions. Each service hands it a parsed request, the current
//! inventory snapshot, the validated config and `now`, and gets back either a reply to send
//! or a reason to stay silent. No sockets, clocks, threads or files.
//!
//! It is empty until the DHCP, TFTP and HTTP services arrive; the inputs it will decide on
//! ([`crate::config::Config`], [`crate::inventory::Inventory`]) are complete.
