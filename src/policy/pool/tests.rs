//! Every transition of the pool, with the clock set by hand.

use std::net::Ipv4Addr;

use super::journal::{self, crc32};
use super::*;
use crate::config::pools::{PoolBoot, PoolSettings};
use crate::value::Cidr;

const T0: Millis = 1_800_000_000_000;
const NET: Ipv4Addr = Ipv4Addr::new(10, 9, 0, 1);
const LEASE_MS: Millis = 300_000;

fn settings(first: u8, last: u8) -> PoolSettings {
    PoolSettings {
        name: "lab".into(),
        subnet: Cidr::parse("10.9.0.0/24").unwrap(),
        first: Ipv4Addr::new(10, 9, 0, first),
        last: Ipv4Addr::new(10, 9, 0, last),
        gateway: Some(NET),
        name_servers: vec![],
        domain: None,
        lease_time: 300,
        boot: PoolBoot::Reboot { sleep: 5 },
    }
}

fn pools(first: u8, last: u8) -> Pools {
    Pools::new(vec![settings(first, last)], vec![NET])
}

fn mac(n: u8) -> MacAddr {
    MacAddr([2, 0, 0, 0, 0, n])
}

fn ask(n: u8, kind: AskKind) -> Ask {
    Ask {
        kind,
        client: ClientKey::new(None, mac(n)),
        mac: mac(n),
        network: NET,
    }
}

fn ip(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 9, 0, last)
}

fn none(_: Ipv4Addr) -> bool {
    false
}

fn discover(p: &mut Pools, n: u8, now: Millis) -> Decision {
    p.handle(&ask(n, AskKind::Discover { requested: None }), now, &none)
}

/// DISCOVER, probe (no answer), DISCOVER again → OFFER; SELECTING REQUEST → ACK.
fn bind(p: &mut Pools, n: u8, now: Millis) -> Ipv4Addr {
    let ip = match discover(p, n, now) {
        Decision::Probe { ip, .. } => {
            p.probe_result(ip, false, now + 200);
            ip
        }
        Decision::Offer { ip, .. } => ip,
        other => panic!("{other:?}"),
    };
    assert_eq!(discover(p, n, now + 200), Decision::Offer { pool: 0, ip });
    let acked = p.handle(&ask(n, AskKind::Select { requested: ip }), now + 300, &none);
    assert_eq!(acked, Decision::Ack { pool: 0, ip });
    ip
}

#[test]
fn a_new_address_is_probed_then_offered_then_acked_and_recorded() {
    let mut p = pools(10, 20);
    assert_eq!(
        discover(&mut p, 1, T0),
        Decision::Probe {
            pool: 0,
            ip: ip(10)
        }
    );
    // A retransmission while the probe runs is not answered, and holds the same address.
    assert_eq!(
        discover(&mut p, 1, T0 + 100),
        Decision::Silent(Quiet::Probing(ip(10)))
    );
    // Another client is not given the address being probed.
    assert_eq!(
        discover(&mut p, 2, T0 + 100),
        Decision::Probe {
            pool: 0,
            ip: ip(11)
        }
    );
    p.probe_result(ip(10), false, T0 + 200);
    assert_eq!(
        discover(&mut p, 1, T0 + 200),
        Decision::Offer {
            pool: 0,
            ip: ip(10)
        }
    );
    assert!(p.take_records().is_empty(), "offers are not journaled");
    assert_eq!(
        p.handle(
            &ask(1, AskKind::Select { requested: ip(10) }),
            T0 + 300,
            &none
        ),
        Decision::Ack {
            pool: 0,
            ip: ip(10)
        }
    );
    let records = p.take_records();
    assert!(
        matches!(&records[..], [Record::Lease(l)] if l.ip == ip(10) && l.state == LeaseState::Bound && l.expires == T0 + 300 + LEASE_MS),
        "{records:?}"
    );
}

#[test]
fn an_answered_probe_quarantines_the_address_and_the_next_one_is_probed() {
    let mut p = pools(10, 20);
    assert_eq!(
        discover(&mut p, 1, T0),
        Decision::Probe {
            pool: 0,
            ip: ip(10)
        }
    );
    p.probe_result(ip(10), true, T0 + 50);
    assert!(
        matches!(&p.take_records()[..], [Record::Quarantine { ip: q, until }] if *q == ip(10) && *until == T0 + 50 + QUARANTINE)
    );
    assert_eq!(
        discover(&mut p, 1, T0 + 60),
        Decision::Probe {
            pool: 0,
            ip: ip(11)
        }
    );
    // After the quarantine the address is handed out again (probed anew).
    let later = T0 + 50 + QUARANTINE + 1;
    p.probe_result(ip(11), false, T0 + 300);
    assert_eq!(
        discover(&mut p, 2, later),
        Decision::Probe {
            pool: 0,
            ip: ip(12)
        }
    );
    p.probe_result(ip(12), true, later);
    assert_eq!(
        discover(&mut p, 2, later + 1),
        Decision::Probe {
            pool: 0,
            ip: ip(13)
        }
    );
}

#[test]
fn the_same_client_gets_the_same_address_and_renews_it() {
    let mut p = pools(10, 20);
    let a = bind(&mut p, 1, T0);
    let _ = p.take_records();
    // INIT-REBOOT and RENEWING of its lease: ACK, with a new expiry.
    for (t, kind) in [
        (T0 + 1000, AskKind::InitReboot { requested: a }),
        (T0 + 150_000, AskKind::Renew { ciaddr: a }),
    ] {
        assert_eq!(
            p.handle(&ask(1, kind), t, &none),
            Decision::Ack { pool: 0, ip: a }
        );
        assert!(matches!(&p.take_records()[..], [Record::Lease(l)] if l.expires == t + LEASE_MS));
    }
    // A DISCOVER while bound: the same address, still bound.
    assert_eq!(
        discover(&mut p, 1, T0 + 160_000),
        Decision::Offer { pool: 0, ip: a }
    );
    assert!(p
        .leases()
        .iter()
        .any(|l| l.ip == a && l.state == LeaseState::Bound));
    // Expired long ago, nobody took it: the client gets it back without a probe.
    let later = T0 + 10 * LEASE_MS;
    assert_eq!(
        discover(&mut p, 1, later),
        Decision::Offer { pool: 0, ip: a }
    );
}

#[test]
fn requests_that_are_not_the_clients_are_naked_and_unknown_ones_ignored() {
    let mut p = pools(10, 20);
    let a = bind(&mut p, 1, T0);
    // Its REQUEST for another address (of this network): NAK.
    assert!(matches!(
        p.handle(
            &ask(1, AskKind::InitReboot { requested: ip(15) }),
            T0 + 1,
            &none
        ),
        Decision::Nak { .. }
    ));
    // An address of another network (the client moved): NAK.
    assert!(matches!(
        p.handle(
            &ask(
                1,
                AskKind::InitReboot {
                    requested: Ipv4Addr::new(192, 168, 1, 5)
                }
            ),
            T0 + 1,
            &none
        ),
        Decision::Nak { .. }
    ));
    // A SELECTING REQUEST for an address never offered to it: NAK.
    assert!(matches!(
        p.handle(
            &ask(2, AskKind::Select { requested: ip(12) }),
            T0 + 1,
            &none
        ),
        Decision::Nak { .. }
    ));
    // INIT-REBOOT for another client's address: NAK; for a free one we know nothing of: silent.
    assert!(matches!(
        p.handle(&ask(2, AskKind::InitReboot { requested: a }), T0 + 1, &none),
        Decision::Nak { .. }
    ));
    assert_eq!(
        p.handle(
            &ask(2, AskKind::InitReboot { requested: ip(19) }),
            T0 + 1,
            &none
        ),
        Decision::Silent(Quiet::NoLease)
    );
    assert_eq!(
        p.handle(&ask(2, AskKind::Renew { ciaddr: ip(19) }), T0 + 1, &none),
        Decision::Silent(Quiet::NoLease)
    );
}

#[test]
fn an_address_reserved_later_is_naked_and_the_client_moves() {
    let mut p = pools(10, 20);
    let a = bind(&mut p, 1, T0);
    let _ = p.take_records();
    let reserved = move |x: Ipv4Addr| x == a;
    assert!(matches!(
        p.handle(&ask(1, AskKind::Renew { ciaddr: a }), T0 + 1000, &reserved),
        Decision::Nak { .. }
    ));
    assert_eq!(p.take_records(), vec![Record::Forget(a)]);
    // Its next DISCOVER gets another address; the reserved one is never offered.
    let next = p.handle(
        &ask(1, AskKind::Discover { requested: Some(a) }),
        T0 + 2000,
        &reserved,
    );
    assert!(
        matches!(next, Decision::Probe { ip, .. } if ip != a),
        "{next:?}"
    );
}

#[test]
fn release_frees_but_keeps_the_address_sticky_and_decline_quarantines() {
    let mut p = pools(10, 11);
    let a = bind(&mut p, 1, T0);
    let _ = p.take_records();
    assert_eq!(
        p.handle(&ask(1, AskKind::Release { ciaddr: a }), T0 + 10, &none),
        Decision::Released(a)
    );
    assert!(matches!(&p.take_records()[..], [Record::Lease(l)] if l.state == LeaseState::Free));
    // Someone else's RELEASE of it: ignored.
    assert_eq!(
        p.handle(&ask(2, AskKind::Release { ciaddr: a }), T0 + 10, &none),
        Decision::Silent(Quiet::NoLease)
    );
    // The releasing client comes back first: same address.
    assert_eq!(
        discover(&mut p, 1, T0 + 20),
        Decision::Offer { pool: 0, ip: a }
    );
    let _ = p.handle(&ask(1, AskKind::Select { requested: a }), T0 + 30, &none);
    let _ = p.take_records();
    // DECLINE: the address is quarantined and the client's lease gone.
    assert_eq!(
        p.handle(&ask(1, AskKind::Decline { requested: a }), T0 + 40, &none),
        Decision::Declined(a)
    );
    let records = p.take_records();
    assert!(records.contains(&Record::Forget(a)), "{records:?}");
    assert!(records
        .iter()
        .any(|r| matches!(r, Record::Quarantine { ip, .. } if *ip == a)));
    assert_eq!(
        discover(&mut p, 1, T0 + 50),
        Decision::Probe {
            pool: 0,
            ip: ip(11)
        }
    );
}

#[test]
fn offers_expire_and_a_full_pool_reuses_the_longest_free_address() {
    let mut p = pools(10, 11);
    let a = bind(&mut p, 1, T0);
    let b = bind(&mut p, 2, T0 + 1000);
    assert_eq!(
        discover(&mut p, 3, T0 + 2000),
        Decision::Silent(Quiet::Full { pool: 0 })
    );
    // A's lease runs out first: client 3 gets A's address (in the table: no probe).
    let after_a = T0 + 300 + LEASE_MS + 1;
    assert_eq!(
        discover(&mut p, 3, after_a),
        Decision::Offer { pool: 0, ip: a }
    );
    // An offer not followed by a REQUEST lapses: B (expired later) is the next one reused.
    let later = T0 + 1300 + LEASE_MS + OFFER_HOLD + 1;
    assert_eq!(
        discover(&mut p, 4, later),
        Decision::Offer { pool: 0, ip: b }
    );
    // Client 3's lapsed offer of A goes to client 5.
    assert_eq!(
        discover(&mut p, 5, later + 1),
        Decision::Offer { pool: 0, ip: a }
    );
}

#[test]
fn client_identifier_keys_the_lease_not_the_mac() {
    let mut p = pools(10, 20);
    let with_id = |m: u8, kind| Ask {
        kind,
        client: ClientKey::new(Some(b"\x00machine-one"), mac(m)),
        mac: mac(m),
        network: NET,
    };
    let first = p.handle(
        &with_id(1, AskKind::Discover { requested: None }),
        T0,
        &none,
    );
    let Decision::Probe { ip: a, .. } = first else {
        panic!("{first:?}")
    };
    p.probe_result(a, false, T0 + 200);
    // Same identifier from another NIC: the same lease.
    assert_eq!(
        p.handle(
            &with_id(2, AskKind::Discover { requested: None }),
            T0 + 300,
            &none
        ),
        Decision::Offer { pool: 0, ip: a }
    );
    // Same MAC without the identifier: another client.
    assert_eq!(
        discover(&mut p, 1, T0 + 400),
        Decision::Probe {
            pool: 0,
            ip: ip(11)
        }
    );
}

#[test]
fn a_known_mac_loses_its_lease_and_its_discovery_entry() {
    let mut p = pools(10, 20);
    p.saw(
        Sighting {
            mac: mac(1),
            via: "s0".into(),
            arch: Some(7),
            discover: true,
            ..Sighting::default()
        },
        T0,
    );
    let a = bind(&mut p, 1, T0);
    assert_eq!(p.discovered().next().map(|d| d.address), Some(Some(a)));
    let _ = p.take_records();
    assert_eq!(p.forget_mac(mac(1)), Some(a));
    assert_eq!(
        p.take_records(),
        vec![Record::Unseen(mac(1)), Record::Forget(a)]
    );
    assert_eq!(
        Record::parse(Record::Unseen(mac(1)).encode().trim_end()),
        Some(Record::Unseen(mac(1)))
    );
    assert_eq!(p.discovered().count(), 0);
    assert_eq!(p.forget_mac(mac(1)), None);
}

#[test]
fn requests_from_other_networks_and_server_addresses_are_left_out() {
    let mut p = Pools::new(vec![settings(1, 3)], vec![NET]);
    let far = Ask {
        network: Ipv4Addr::new(10, 50, 0, 1),
        ..ask(1, AskKind::Discover { requested: None })
    };
    assert_eq!(p.handle(&far, T0, &none), Decision::Silent(Quiet::NoPool));
    // .1 is the server's own: the first address offered is .2.
    assert_eq!(
        discover(&mut p, 1, T0),
        Decision::Probe { pool: 0, ip: ip(2) }
    );
    // A requested address outside the range, or reserved, is not given.
    let reserved = |x: Ipv4Addr| x == ip(3);
    let d = p.handle(
        &ask(
            2,
            AskKind::Discover {
                requested: Some(ip(3)),
            },
        ),
        T0,
        &reserved,
    );
    assert_eq!(d, Decision::Silent(Quiet::Full { pool: 0 }));
}

#[test]
fn the_discovery_list_is_capped_and_journals_new_facts_only() {
    let mut p = pools(10, 20);
    let seen = |n: u8, hostname: Option<&str>| Sighting {
        mac: mac(n),
        via: "s0".into(),
        hostname: hostname.map(String::from),
        discover: true,
        ..Sighting::default()
    };
    p.saw(seen(1, None), T0);
    assert_eq!(p.take_records().len(), 1);
    p.saw(seen(1, None), T0 + 1);
    assert!(p.take_records().is_empty() && p.discovery_dirty());
    p.saw(seen(1, Some("bmc-7")), T0 + 2);
    assert_eq!(p.take_records().len(), 1);
    let d = p.discovered().next().unwrap();
    assert_eq!((d.discovers, d.first_seen, d.last_seen), (3, T0, T0 + 2));
    for i in 0..MAX_DISCOVERED + 10 {
        let m = MacAddr([4, 0, 0, 0, (i >> 8) as u8, i as u8]);
        p.saw(
            Sighting {
                mac: m,
                ..seen(0, None)
            },
            T0 + 10 + i as u64,
        );
    }
    assert_eq!(p.discovered().count(), MAX_DISCOVERED);
    // The oldest went first.
    assert!(p.discovered().all(|d| d.mac != mac(1)));
}

#[test]
fn the_journal_round_trips_and_skips_torn_and_damaged_lines() {
    let mut p = pools(10, 20);
    p.saw(
        Sighting {
            mac: mac(1),
            via: "relay 10.9.0.254".into(),
            arch: Some(7),
            vendor_class: Some("PXEClient:Arch:00007:UNDI:003016".into()),
            user_class: Some("-".into()),
            hostname: Some("has space %".into()),
            discover: true,
        },
        T0,
    );
    let a = bind(&mut p, 1, T0);
    let b = bind(&mut p, 2, T0);
    let _ = p.handle(&ask(2, AskKind::Release { ciaddr: b }), T0 + 5, &none);
    p.probe_result(ip(30), true, T0); // outside the range: ignored
    let state = p.snapshot(T0 + 10);
    let mut text = format!("{}\n", journal::HEADER);
    text.extend(state.iter().map(Record::encode));
    let good = journal::read(text.as_bytes());
    assert_eq!(good.records, state);
    assert_eq!((good.damaged, good.torn), (0, false));
    // Replayed into new pools: the same leases and list.
    let mut again = pools(10, 20);
    for r in good.records {
        again.replay(r);
    }
    fn sorted(mut v: Vec<&Lease>) -> Vec<&Lease> {
        v.sort_by_key(|l| l.ip);
        v
    }
    assert_eq!(
        sorted(again.leases()),
        sorted(
            p.leases()
                .into_iter()
                .filter(|l| l.state != LeaseState::Offered)
                .collect::<Vec<_>>()
        )
    );
    assert_eq!(again.discovered().next(), p.discovered().next());
    assert!(again
        .leases()
        .iter()
        .any(|l| l.ip == a && l.state == LeaseState::Bound));
    // A flipped byte fails the CRC; a line cut short at the end is torn.
    let mut damaged = text.clone().into_bytes();
    let at = damaged.iter().position(|&c| c == b'L').unwrap() + 3;
    damaged[at] ^= 1;
    let read = journal::read(&damaged);
    assert_eq!(read.damaged, 1);
    let torn = &text.as_bytes()[..text.len() - 5];
    let read = journal::read(torn);
    assert!(read.torn);
    assert_eq!(read.records.len(), state.len() - 1);
    assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
}

#[test]
fn reconfigure_keeps_leases_inside_the_new_ranges_only() {
    let mut p = pools(10, 20);
    let a = bind(&mut p, 1, T0);
    let b = bind(&mut p, 2, T0);
    let _ = p.take_records();
    p.reconfigure(vec![settings(11, 20)], vec![NET]);
    assert_eq!(p.take_records(), vec![Record::Forget(a)]);
    assert!(p.leases().iter().any(|l| l.ip == b));
    assert_eq!(p.forget_mac(mac(2)), Some(b));
}

#[test]
fn macs_the_inventory_knows_now_are_pruned_without_asking_again() {
    let mut p = pools(10, 20);
    for n in [1, 2] {
        p.saw(
            Sighting {
                mac: mac(n),
                via: "s0".into(),
                discover: true,
                ..Sighting::default()
            },
            T0,
        );
        bind(&mut p, n, T0);
    }
    let _ = p.take_records();
    assert_eq!(
        p.prune_known(&|m| m == mac(2)),
        vec![(mac(2), Some(ip(11)))]
    );
    assert_eq!(
        p.discovered().map(|d| d.mac).collect::<Vec<_>>(),
        vec![mac(1)]
    );
    let records = p.take_records();
    assert!(records.contains(&Record::Unseen(mac(2))), "{records:?}");
    assert!(records.contains(&Record::Forget(ip(11))), "{records:?}");
    assert!(p.leases().iter().all(|l| l.mac != mac(2)));
}
