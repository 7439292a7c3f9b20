//! DHCP codec: any bytes parse or fail cleanly; what parses emits and parses back to the same
//! options (order aside: overflow moves some into file/sname). Also the frame parser.
#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use netbootd::wire::dhcp::{code, Message};
use netbootd::wire::frame::parse_udp_frame;

fuzz_target!(|data: &[u8]| {
    let _ = parse_udp_frame(data);
    for wanted in [6, 71, 176] {
        if let Some(v) = netbootd::wire::pxe::find(data, wanted) {
            assert!(v.len() <= data.len());
        }
    }
    let Ok(msg) = Message::parse(data) else {
        return;
    };
    let _ = (msg.client_arches(), msg.user_classes(), msg.mac(), msg.max_reply_len());
    let out = msg.emit(msg.max_reply_len());
    assert!(out.bytes.len() >= 300);
    let again = Message::parse(&out.bytes).expect("emitted message parses");
    if out.dropped.is_empty() {
        let set = |m: &Message| -> BTreeMap<u8, Vec<u8>> {
            m.options
                .iter()
                .filter(|(c, _)| *c != code::OVERLOAD)
                .map(|(c, v)| (c, v.to_vec()))
                .collect()
        };
        assert_eq!(set(&again), set(&msg), "options survive a round trip");
        assert_eq!(again.xid, msg.xid);
        assert_eq!(again.chaddr, msg.chaddr);
    }
});
