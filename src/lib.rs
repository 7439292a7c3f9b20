//! netbootd: network-boot bare-metal machines from one small synchronous binary.
//!
//! The crate has three layers, and the direction of use only goes down:
//! - [`wire`]: pure parse/emit of protocol data (no sockets, clock or files; never panics);
//! - [`policy`]: pure decisions (request + inventory + config + `now` → reply or silence);
//! - [`io`] and [`service`]: sockets, the poll loop, threads, files and signals.
//!
//! Leaves that every layer may use: [`wire`] (protocol data), [`value`] (the operator's text:
//! addresses, ports, durations, CIDRs, MACs in flags, environment and files) and [`store`]
//! (a value in service, swapped whole).
//!
//! [`config`] turns flags, environment and the TOML file into a validated [`config::Config`];
//! [`inventory`] turns a Smee `hardware.yaml` (or TOML) into an indexed, immutable
//! [`inventory::Inventory`]. Both are pure apart from the functions that read files, which say so.

pub mod cli;
pub mod config;
pub mod inventory;
pub mod io;
pub mod policy;
pub mod service;
pub mod store;
pub mod value;
pub mod wire;

/// Helpers shared by the unit tests.
#[cfg(test)]
pub(crate) mod testing {
    /// A deterministic xorshift64 sequence for the mutation tests ("never panics on any input").
    pub fn xorshift(mut state: u64) -> impl FnMut() -> u64 {
        move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        }
    }
}
