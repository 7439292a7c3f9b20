//! Syslog datagrams: any bytes parse or fail cleanly, the parsed fields are what the grammar
//! allows, and the log line built from them never carries a raw control character.
#![no_main]

use std::net::{Ipv4Addr, SocketAddrV4};

use libfuzzer_sys::fuzz_target;
use netbootd::policy::syslog::log_line;
use netbootd::wire::syslog::{Message, MAX_SD_ELEMENTS, MAX_SD_PARAMS};

fuzz_target!(|data: &[u8]| {
    let parsed = Message::parse(data);
    if let Ok(m) = &parsed {
        assert!(m.facility.0 <= 23 && m.severity.0 <= 7);
        assert!(m.structured_data.len() <= MAX_SD_ELEMENTS);
        for e in &m.structured_data {
            assert!(e.params.len() <= MAX_SD_PARAMS);
        }
        for field in [m.timestamp, m.hostname, m.app_name, m.proc_id, m.msg_id].into_iter().flatten() {
            assert!(field.bytes().all(|b| (32..=126).contains(&b)), "{field:?}");
        }
    }
    let from = SocketAddrV4::new(Ipv4Addr::LOCALHOST, 514);
    let line = log_line(from, None, &parsed, data);
    assert!(!line.chars().any(|c| c.is_control()), "{line:?}");
});
