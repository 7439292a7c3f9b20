//! HTTP request heads, ranges, percent-decoding and routing: any bytes parse or fail cleanly,
//! a range is always inside the body, and no route names a path with `..`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use netbootd::policy::http::{route, Route};
use netbootd::wire::http::{head_end, parse_range, RangeRequest, RequestHead};

fuzz_target!(|data: &[u8]| {
    let end = head_end(data).unwrap_or(data.len());
    if let Ok(head) = RequestHead::parse(&data[..end]) {
        let len = data.len() as u64;
        if let RangeRequest::Partial { start, end } = parse_range(head.header("range"), len) {
            assert!(start <= end && end < len);
        }
        let _ = (head.keep_alive(), head.has_body());
        match route(head.path()) {
            Route::Asset(p) | Route::IpxeBinary(p) => {
                assert!(!p.split('/').any(|c| c == ".." || c.is_empty()), "{p}");
            }
            _ => {}
        }
    }
});
