//! What a Kubernetes API server (or anything pretending to be one) sends the Kubernetes
//! backend: any bytes as a LIST page, as watch event lines, or as a kubeconfig parse or fail
//! cleanly, never a panic; the set's text reads back as a Hardware list and, listed again,
//! gives the same objects and machines.
#![no_main]

use libfuzzer_sys::fuzz_target;
use netbootd::config::kubeconfig;
use netbootd::inventory::kube::{self, HardwareSet};
use netbootd::inventory::Profiles;

fuzz_target!(|data: &[u8]| {
    let profiles = Profiles::default();
    let mut set = HardwareSet::new("fuzz", &profiles);
    let _ = set.add_page(data);
    for line in data.split(|b| *b == b'\n') {
        let _ = set.apply(line);
    }
    let loaded = set.loaded();
    let text = set.to_text();
    assert!(kube::load(&text, "fuzz", &profiles).is_ok());
    // The text, listed again, is the same set: same objects, same machines.
    let page = format!("{{\"metadata\":{{\"resourceVersion\":\"1\"}},\"items\":{text}}}");
    let mut again = HardwareSet::new("fuzz", &profiles);
    assert_eq!(again.add_page(page.as_bytes()), Ok(None));
    assert_eq!(again.len(), set.len());
    assert_eq!(again.loaded().inventory.len(), loaded.inventory.len());
    let _ = kube::status_message(data);
    let _ = kubeconfig::from_kubeconfig(&String::from_utf8_lossy(data), std::path::Path::new("/k"));
});
