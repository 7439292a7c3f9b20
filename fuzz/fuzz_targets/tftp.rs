//! TFTP: any bytes parse or fail cleanly; a parsed request's name and options go through the
//! policy without panicking; and the transfer state machine, driven by the same bytes read as
//! a script of ACKs, errors and timeouts, never names a byte outside the file, never goes
//! past the window, and ends only complete once every block was acknowledged.
#![no_main]

use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use netbootd::policy::tftp::{interpret_name, negotiate, Limits, Outcome, Transfer, Transmit};
use netbootd::wire::tftp::{Packet, RequestOptions};

fuzz_target!(|data: &[u8]| {
    if let Ok(Packet::Rrq(r) | Packet::Wrq(r)) = Packet::parse(data) {
        let _ = interpret_name(&r.filename);
    }
    let Some((head, script)) = data.split_first_chunk::<6>() else {
        return;
    };
    let size = u64::from(u16::from_be_bytes([head[0], head[1]])) * 37;
    let asked = RequestOptions {
        blksize: Some(u16::from_be_bytes([head[2], head[3]]).max(8)),
        tsize: head[4] & 1 == 1,
        timeout: None,
        windowsize: Some(u16::from(head[5] % 40).max(1)),
    };
    let limits = Limits {
        max_blksize: 1468,
        max_windowsize: 32,
        timeout: Duration::from_secs(5),
        max_retries: 5,
    };
    let n = negotiate(&asked, size, &limits);
    let mut t = Transfer::new(size, &n, &limits);
    let mut now = Instant::now();
    let mut acked_all = false;
    for step in script.chunks(2) {
        while let Some(tx) = t.poll_transmit(now) {
            if let Transmit::Data { offset, len, .. } = tx {
                assert!(offset + len as u64 <= size);
                assert!(len <= usize::from(n.blksize));
            }
        }
        match step {
            [0, _] | [_] => {
                now += Duration::from_secs(6);
                t.on_timeout(now);
            }
            [1, code] => t.on_packet(
                &Packet::Error {
                    code: u16::from(*code).into(),
                    message: String::new(),
                },
                now,
            ),
            [hi, lo] => {
                now += Duration::from_millis(1);
                t.on_packet(&Packet::Ack { block: u16::from_be_bytes([*hi, *lo]) }, now);
            }
            _ => {}
        }
        if t.bytes_acknowledged() == size && t.outcome() == Some(&Outcome::Complete) {
            acked_all = true;
        }
    }
    if t.outcome() == Some(&Outcome::Complete) {
        assert!(acked_all);
    }
});
