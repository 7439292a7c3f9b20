//! A DHCP storm for `benches/log-flood.sh`: relayed DISCOVERs from MACs no inventory knows,
//! sent over UDP to one address at a target rate for a bounded time, built with netbootd's own
//! codec. It prints how many it sent and the rate reached. Only for loopback or a test
//! namespace: it refuses any other destination.
//!
//!     dhcp_storm ADDR:PORT RATE SECONDS

use std::net::{SocketAddrV4, UdpSocket};
use std::time::{Duration, Instant};

use netbootd::wire::dhcp::{code, Message, MessageType, BROADCAST_FLAG};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [addr, rate, seconds] = args.as_slice() else {
        eprintln!("usage: dhcp_storm ADDR:PORT RATE SECONDS");
        std::process::exit(2);
    };
    let addr: SocketAddrV4 = addr.parse().expect("ADDR:PORT");
    assert!(addr.ip().is_loopback(), "storms go to loopback only");
    let rate: u64 = rate.parse().expect("RATE");
    let seconds: u64 = seconds.parse().expect("SECONDS");
    assert!(seconds <= 600, "bounded: at most 600 s");
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let mut template = Message {
        flags: BROADCAST_FLAG,
        giaddr: *addr.ip(),
        ..Message::default()
    };
    template
        .options
        .set(code::MESSAGE_TYPE, [u8::from(MessageType::Discover)]);
    let mut packet = template.emit(576).bytes;
    let start = Instant::now();
    let end = start + Duration::from_secs(seconds);
    let mut sent: u64 = 0;
    while Instant::now() < end {
        // A batch, then wait for the schedule: RATE a second on average.
        for _ in 0..256 {
            let n = sent as u32;
            packet[4..8].copy_from_slice(&n.to_be_bytes()); // xid
            packet[28..34].copy_from_slice(&[
                0x02,
                0x66,
                0,
                (n >> 16) as u8,
                (n >> 8) as u8,
                n as u8,
            ]);
            let _ = socket.send_to(&packet, addr); // a full queue drops, as a wire would
            sent += 1;
        }
        let due = start + Duration::from_secs_f64(sent as f64 / rate as f64);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
    let secs = start.elapsed().as_secs_f64();
    println!("sent {sent} in {secs:.1} s: {:.0}/s", sent as f64 / secs);
}
