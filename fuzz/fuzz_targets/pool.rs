//! The address pool's inputs from outside: a journal file's bytes (read at start, possibly torn
//! or damaged) and probe answers off the wire. Any bytes read cleanly; every record read back
//! encodes to a line that reads back as the same record; replaying them into a pool never
//! panics; the ARP and ICMP parsers never panic.
#![no_main]

use std::net::Ipv4Addr;

use libfuzzer_sys::fuzz_target;
use netbootd::config::pools::{PoolBoot, PoolSettings};
use netbootd::policy::pool::{journal, Pools, Record};
use netbootd::value::Cidr;
use netbootd::wire::probe::{arp_sender, icmp_echo_reply_from};

fuzz_target!(|data: &[u8]| {
    let read = journal::read(data);
    for record in &read.records {
        let line = record.encode();
        assert!(line.ends_with('\n') && line.matches('\n').count() == 1, "{line:?}");
        assert_eq!(Record::parse(line.trim_end_matches('\n')).as_ref(), Some(record));
    }
    let settings = PoolSettings {
        name: "fuzz".into(),
        subnet: Cidr::parse("10.0.0.0/16").unwrap(),
        first: Ipv4Addr::new(10, 0, 9, 0),
        last: Ipv4Addr::new(10, 0, 9, 255),
        gateway: None,
        name_servers: vec![],
        domain: None,
        lease_time: 300,
        boot: PoolBoot::Reboot { sleep: 1 },
    };
    let mut pools = Pools::new(vec![settings], vec![]);
    for record in read.records {
        pools.replay(record);
    }
    let _ = pools.snapshot(0);
    let _ = arp_sender(data);
    let _ = icmp_echo_reply_from(data, 0x1234);
});
