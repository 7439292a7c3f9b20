//! Syslog datagrams: any bytes parse or fail cleanly, the parsed fields are what the grammar
//! allows, and neither the log line built from them nor its JSON form carries a raw control
//! character.
#![no_main]

use std::net::{Ipv4Addr, SocketAddrV4};

use libfuzzer_sys::fuzz_target;
use netbootd::policy::syslog::log_line;
use netbootd::wire::json::{self, Json};
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
    let event = log_line(from, None, &parsed, data);
    assert!(!event.text.chars().any(|c| c.is_control()), "{:?}", event.text);
    // The JSON line of the same event: one line, no raw control character anywhere.
    let fields: Vec<(&str, Json)> = event.fields.iter().map(|(k, v)| (*k, v.clone())).collect();
    let json = json::log_line("2026-11-30T00:00:00.000Z", "INFO", &event.text, &fields);
    let body = json.strip_suffix('\n').expect("ends its line");
    assert!(!body.chars().any(|c| c.is_control()), "{json:?}");
    assert!(body.starts_with('{') && body.ends_with('}'), "{json:?}");
});
