//! The inventory in service: one immutable snapshot behind an `Arc`, swapped whole on reload.
//! A reader takes a snapshot once per request and sees either the old inventory or the new one,
//! never a mixture; a reload never blocks readers for longer than a pointer swap.

use super::Inventory;

pub type InventoryStore = crate::store::Store<Inventory>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::{load_str, Format, Profiles};
    use std::sync::atomic::Ordering;
    use std::sync::Arc;

    fn inventory(tag: usize, count: usize) -> Inventory {
        let mut text = String::new();
        for i in 0..count {
            text.push_str(&format!("02:00:00:00:{:02x}:{:02x}:\n  ipAddress: 10.{tag}.{}.{}\n  subnetMask: 255.0.0.0\n  hostname: gen{tag}\n", i / 256, i % 256, i / 256, i % 256 + 1));
        }
        load_str(&text, Format::Yaml, "t.yaml", &Profiles::new())
            .unwrap()
            .inventory
    }

    #[test]
    fn readers_never_see_a_mixture_of_two_inventories() {
        let store = Arc::new(InventoryStore::new(inventory(0, 200)));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let readers: Vec<_> = (0..4)
            .map(|_| {
                let (store, stop) = (Arc::clone(&store), Arc::clone(&stop));
                std::thread::spawn(move || {
                    let mut checked = 0;
                    while !stop.load(Ordering::Relaxed) {
                        let snap = store.snapshot();
                        let tag = snap.machines().next().unwrap().hostname.clone();
                        assert!(snap.machines().all(|m| m.hostname == tag), "mixed snapshot");
                        assert_eq!(snap.len(), 200);
                        checked += 1;
                    }
                    checked
                })
            })
            .collect();
        for tag in 1..=30 {
            store.replace(inventory(tag, 200));
        }
        stop.store(true, Ordering::Relaxed);
        for r in readers {
            assert!(r.join().unwrap() > 0);
        }
        assert_eq!(store.generation(), 31);
        assert_eq!(
            store
                .snapshot()
                .machines()
                .next()
                .unwrap()
                .hostname
                .as_deref(),
            Some("gen30")
        );
    }
}
