//! What a remote source's server sends back: any bytes as a response head, as a chunked body
//! fed in pieces, and as a URL or a Location header parse or fail cleanly, never a panic; a
//! chunked decoder never yields more bytes than it was fed.
#![no_main]

use libfuzzer_sys::fuzz_target;
use netbootd::wire::response::{Chunked, ResponseHead, Target};

fuzz_target!(|data: &[u8]| {
    if let Ok(head) = ResponseHead::parse(data) {
        let _ = head.framing();
        assert!((100..=599).contains(&head.status));
    }
    let split = data.first().map_or(1, |b| usize::from(*b % 16) + 1);
    let mut decoder = Chunked::default();
    let mut out = Vec::new();
    for piece in data.chunks(split) {
        match decoder.feed(piece, &mut out) {
            Ok(used) => assert!(used <= piece.len()),
            Err(_) => break,
        }
    }
    assert!(out.len() <= data.len());
    let text = String::from_utf8_lossy(data);
    if let Ok(target) = Target::parse(&text) {
        let _ = target.get_request(&[]);
        let _ = target.resolve(&text);
        assert!(target.port != 0 && target.path.starts_with('/'));
    }
});
