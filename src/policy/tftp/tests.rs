//! The transfer state machine with an explicit clock, and name interpretation.

use super::*;

const LIMITS: Limits = Limits {
    max_blksize: 1468,
    max_windowsize: 32,
    timeout: Duration::from_secs(5),
    max_retries: 5,
};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Everything the transfer wants to send now.
fn drain(t: &mut Transfer, now: Instant) -> Vec<Transmit> {
    std::iter::from_fn(|| t.poll_transmit(now)).collect()
}

fn blocks(sent: &[Transmit]) -> Vec<u16> {
    sent.iter()
        .map(|t| match t {
            Transmit::Data { block, .. } => *block,
            Transmit::Oack => u16::MAX,
        })
        .collect()
}

fn ack(t: &mut Transfer, block: u16, now: Instant) {
    t.on_packet(&Packet::Ack { block }, now);
}

fn plain(size: u64, blksize: u16, windowsize: u16) -> Transfer {
    let n = Negotiated {
        blksize,
        windowsize,
        timeout: LIMITS.timeout,
        oack: vec![],
    };
    Transfer::new(size, &n, &LIMITS)
}

#[test]
fn negotiation_caps_and_echoes_what_was_granted() {
    let asked = RequestOptions {
        blksize: Some(9000),
        tsize: true,
        timeout: Some(3),
        windowsize: Some(100),
    };
    let n = negotiate(&asked, 1234, &LIMITS);
    assert_eq!(
        (n.blksize, n.windowsize, n.timeout),
        (1468, 32, Duration::from_secs(3))
    );
    assert_eq!(
        n.oack,
        vec![
            ("blksize", "1468".to_string()),
            ("tsize", "1234".to_string()),
            ("timeout", "3".to_string()),
            ("windowsize", "32".to_string()),
        ]
    );
    // Nothing accepted: no OACK, RFC 1350 defaults.
    let n = negotiate(&RequestOptions::default(), 1234, &LIMITS);
    assert_eq!((n.blksize, n.windowsize, n.oack.len()), (512, 1, 0));
    assert_eq!(n.timeout, LIMITS.timeout);
}

#[test]
fn blksize_is_capped_by_the_mtu() {
    assert_eq!(blksize_cap(1468, 1500), 1468);
    assert_eq!(blksize_cap(8192, 1500), 1468);
    assert_eq!(blksize_cap(8192, 9000), 8192);
    assert_eq!(blksize_cap(65464, 65536), 65464);
    assert_eq!(blksize_cap(512, 0), 8);
}

#[test]
fn a_lock_step_transfer_sends_each_block_after_the_previous_ack() {
    let t0 = Instant::now();
    let mut t = plain(1024, 512, 1);
    // 1024 bytes at 512: two full blocks and an empty third.
    assert_eq!(
        drain(&mut t, t0),
        vec![Transmit::Data {
            block: 1,
            offset: 0,
            len: 512
        }]
    );
    ack(&mut t, 1, t0 + ms(1));
    assert_eq!(
        drain(&mut t, t0 + ms(1)),
        vec![Transmit::Data {
            block: 2,
            offset: 512,
            len: 512
        }]
    );
    ack(&mut t, 2, t0 + ms(2));
    assert_eq!(
        drain(&mut t, t0 + ms(2)),
        vec![Transmit::Data {
            block: 3,
            offset: 1024,
            len: 0
        }]
    );
    assert_eq!(t.outcome(), None);
    ack(&mut t, 3, t0 + ms(3));
    assert_eq!(t.outcome(), Some(&Outcome::Complete));
    assert_eq!(t.next_deadline(), None);
    assert_eq!(t.bytes_acknowledged(), 1024);
    assert_eq!(t.retransmissions(), 0);
}

#[test]
fn the_oack_waits_for_ack_zero_and_is_resent_when_lost() {
    let t0 = Instant::now();
    let asked = RequestOptions {
        blksize: Some(1024),
        tsize: true,
        ..Default::default()
    };
    let n = negotiate(&asked, 2000, &LIMITS);
    let mut t = Transfer::new(2000, &n, &LIMITS);
    assert_eq!(drain(&mut t, t0), vec![Transmit::Oack]);
    // An ACK for a data block before ACK 0 means nothing.
    ack(&mut t, 1, t0 + ms(1));
    assert!(drain(&mut t, t0 + ms(1)).is_empty());
    // The OACK was lost: after the timeout it goes again, and again a second later (no
    // backing off before the first ACK: a silent client is given up on after 6 s, issue 15).
    let first = t.next_deadline().unwrap();
    assert_eq!(first, t0 + Duration::from_secs(1));
    t.on_timeout(first - ms(1));
    assert!(drain(&mut t, first - ms(1)).is_empty(), "fired early");
    t.on_timeout(first);
    assert_eq!(drain(&mut t, first), vec![Transmit::Oack]);
    assert_eq!(t.next_deadline(), Some(first + Duration::from_secs(1)));
    ack(&mut t, 0, first + ms(5));
    assert_eq!(blocks(&drain(&mut t, first + ms(5))), vec![1]);
    assert_eq!(t.retransmissions(), 1);
}

#[test]
fn the_client_error_after_tsize_ends_quietly() {
    // OVMF: RRQ with tsize, OACK, then ERROR 8 and a fresh request.
    let t0 = Instant::now();
    let asked = RequestOptions {
        tsize: true,
        ..Default::default()
    };
    let mut t = Transfer::new(5, &negotiate(&asked, 5, &LIMITS), &LIMITS);
    assert_eq!(drain(&mut t, t0), vec![Transmit::Oack]);
    t.on_packet(
        &Packet::Error {
            code: ErrorCode::OptionRefused,
            message: "tsize only".into(),
        },
        t0,
    );
    assert!(matches!(
        t.outcome(),
        Some(Outcome::ClientError {
            code: ErrorCode::OptionRefused,
            ..
        })
    ));
    assert!(drain(&mut t, t0).is_empty());
    assert_eq!(t.next_deadline(), None);
}

#[test]
fn a_client_error_mid_transfer_ends_it() {
    let t0 = Instant::now();
    let mut t = plain(10_000, 512, 4);
    assert_eq!(blocks(&drain(&mut t, t0)), vec![1, 2, 3, 4]);
    ack(&mut t, 4, t0);
    drain(&mut t, t0);
    t.on_packet(
        &Packet::Error {
            code: ErrorCode::DiskFull,
            message: String::new(),
        },
        t0,
    );
    assert!(matches!(t.outcome(), Some(Outcome::ClientError { .. })));
    assert_eq!(t.bytes_acknowledged(), 2048);
}

#[test]
fn a_lost_data_block_is_resent_after_the_timeout() {
    let t0 = Instant::now();
    let mut t = plain(2048, 512, 1);
    assert_eq!(blocks(&drain(&mut t, t0)), vec![1]);
    ack(&mut t, 1, t0 + ms(10));
    assert_eq!(blocks(&drain(&mut t, t0 + ms(10))), vec![2]);
    // Block 2 is lost. The client's repeated ACK 1 is a duplicate: no immediate resend.
    ack(&mut t, 1, t0 + ms(500));
    assert!(drain(&mut t, t0 + ms(500)).is_empty());
    let deadline = t.next_deadline().unwrap();
    // The measured 10 ms round trip put the timeout at the 200 ms floor.
    assert_eq!(deadline, t0 + ms(10) + ms(200));
    t.on_timeout(deadline);
    assert_eq!(blocks(&drain(&mut t, deadline)), vec![2]);
    assert_eq!(t.retransmissions(), 1);
}

#[test]
fn a_lost_ack_is_recovered_by_resending_the_block() {
    let t0 = Instant::now();
    let mut t = plain(600, 512, 1);
    drain(&mut t, t0);
    ack(&mut t, 1, t0 + ms(1));
    assert_eq!(blocks(&drain(&mut t, t0 + ms(1))), vec![2]);
    // ACK 2 is lost: block 2 goes again; its ACK then completes the transfer.
    let d = t.next_deadline().unwrap();
    t.on_timeout(d);
    assert_eq!(blocks(&drain(&mut t, d)), vec![2]);
    ack(&mut t, 2, d + ms(1));
    assert_eq!(t.outcome(), Some(&Outcome::Complete));
}

#[test]
fn duplicate_acks_never_cause_duplicate_sends() {
    // The Sorcerer's Apprentice: block 2 was delayed, so the client ACKed 1 twice and will
    // ACK 2 twice. Each DATA must still go out once.
    let t0 = Instant::now();
    let mut t = plain(5000, 512, 1);
    let mut sent = blocks(&drain(&mut t, t0));
    for (i, block) in [1u16, 1, 2, 2, 3, 3, 3, 4].into_iter().enumerate() {
        let now = t0 + ms(i as u64 + 1);
        ack(&mut t, block, now);
        sent.extend(blocks(&drain(&mut t, now)));
    }
    assert_eq!(sent, vec![1, 2, 3, 4, 5]);
    assert_eq!(t.retransmissions(), 0);
}

#[test]
fn the_window_slides_on_each_ack() {
    let t0 = Instant::now();
    let mut t = plain(20 * 512, 512, 4); // 21 blocks, the last one empty
    assert_eq!(blocks(&drain(&mut t, t0)), vec![1, 2, 3, 4]);
    ack(&mut t, 4, t0 + ms(1));
    assert_eq!(blocks(&drain(&mut t, t0 + ms(1))), vec![5, 6, 7, 8]);
    // An early ACK inside the window lets the window move on by that much.
    ack(&mut t, 6, t0 + ms(2));
    assert_eq!(blocks(&drain(&mut t, t0 + ms(2))), vec![7, 8, 9, 10]);
    assert_eq!(t.retransmissions(), 2);
}

#[test]
fn a_gap_in_the_window_goes_back_to_the_missing_block() {
    let t0 = Instant::now();
    let mut t = plain(100 * 512, 512, 8);
    assert_eq!(blocks(&drain(&mut t, t0)), (1..=8).collect::<Vec<_>>());
    ack(&mut t, 8, t0 + ms(1));
    assert_eq!(
        blocks(&drain(&mut t, t0 + ms(1))),
        (9..=16).collect::<Vec<_>>()
    );
    // Block 12 was lost: the client acknowledges 11, the sender restarts at 12.
    ack(&mut t, 11, t0 + ms(2));
    assert_eq!(
        blocks(&drain(&mut t, t0 + ms(2))),
        (12..=19).collect::<Vec<_>>()
    );
    // A whole window lost: the timer goes back to the first unacknowledged block.
    let d = t.next_deadline().unwrap();
    t.on_timeout(d);
    assert_eq!(blocks(&drain(&mut t, d)), (12..=19).collect::<Vec<_>>());
}

#[test]
fn block_numbers_roll_over_to_zero_after_65535() {
    let t0 = Instant::now();
    let size = 70_000u64 * 512;
    let mut t = plain(size, 512, 16);
    let mut expected_block: u64 = 1;
    let mut now = t0;
    while t.outcome().is_none() {
        let sent = drain(&mut t, now);
        assert!(!sent.is_empty());
        let mut last = 0;
        for s in &sent {
            let Transmit::Data { block, offset, len } = *s else {
                panic!()
            };
            assert_eq!(block, expected_block as u16);
            assert_eq!(offset, (expected_block - 1) * 512);
            assert_eq!(len as u64, (size - offset).min(512));
            expected_block += 1;
            last = block;
        }
        now += ms(1);
        ack(&mut t, last, now);
    }
    assert_eq!(t.outcome(), Some(&Outcome::Complete));
    assert_eq!(expected_block - 1, 70_001);
    assert_eq!(t.bytes_acknowledged(), size);
    assert_eq!(t.retransmissions(), 0);
}

#[test]
fn an_ack_for_a_block_never_sent_is_ignored() {
    let t0 = Instant::now();
    let mut t = plain(5000, 512, 2);
    drain(&mut t, t0);
    ack(&mut t, 9, t0);
    assert!(drain(&mut t, t0).is_empty());
    assert_eq!(t.bytes_acknowledged(), 0);
}

/// The waits of a transfer left to time out from `now`, until it gives up.
fn waits_until_given_up(t: &mut Transfer, mut now: Instant) -> Vec<u128> {
    let mut waits = Vec::new();
    while t.outcome().is_none() {
        let d = t.next_deadline().unwrap();
        waits.push((d - now).as_millis());
        now = d;
        t.on_timeout(now);
        drain(t, now);
    }
    waits
}

#[test]
fn repeated_timeouts_back_off_then_give_up() {
    let t0 = Instant::now();
    let mut t = plain(5000, 512, 1);
    drain(&mut t, t0);
    // The client answers once (a 1 ms round trip: the wait floors at 200 ms), then goes silent.
    ack(&mut t, 1, t0 + ms(1));
    drain(&mut t, t0 + ms(1));
    let waits = waits_until_given_up(&mut t, t0 + ms(1));
    assert_eq!(waits, vec![200, 400, 800, 1600, 3200, 5000]);
    assert_eq!(t.outcome(), Some(&Outcome::TimedOut));
}

/// Issue 15: a client that never ACKs the first packet held its slot for about half a minute.
/// Now the first packet is resent every second and the transfer ends 6 s after it first went.
#[test]
fn a_first_packet_never_acknowledged_gives_the_slot_back_after_6_s() {
    let t0 = Instant::now();
    let mut t = plain(5000, 512, 1);
    assert_eq!(blocks(&drain(&mut t, t0)), vec![1]);
    let waits = waits_until_given_up(&mut t, t0);
    assert_eq!(waits, vec![1000, 1000, 1000, 1000, 1000, 1000]);
    assert_eq!(t.outcome(), Some(&Outcome::TimedOut));
    assert_eq!(t.retransmissions(), 5);
    // With options, the OACK is the first packet: the same.
    let asked = RequestOptions {
        tsize: true,
        ..Default::default()
    };
    let mut t = Transfer::new(5000, &negotiate(&asked, 5000, &LIMITS), &LIMITS);
    assert_eq!(drain(&mut t, t0), vec![Transmit::Oack]);
    let total: u128 = waits_until_given_up(&mut t, t0).iter().sum();
    assert_eq!(total, FIRST_ACK_WAIT.as_millis());
}

#[test]
fn names_map_to_ipxe_binaries_and_assets() {
    use Root::*;
    let both = |i: &str, a: &str| Ok(vec![(Ipxe, i.to_string()), (Assets, a.to_string())]);
    assert_eq!(interpret_name("ipxe.efi"), both("ipxe.efi", "ipxe.efi"));
    assert_eq!(interpret_name("/ipxe.efi"), both("ipxe.efi", "ipxe.efi"));
    assert_eq!(
        interpret_name("/02:00:00:00:00:01/snp.efi"),
        both("snp.efi", "02:00:00:00:00:01/snp.efi")
    );
    assert_eq!(
        interpret_name("undionly.kpxe-00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
        both(
            "undionly.kpxe",
            "undionly.kpxe-00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
        )
    );
    assert_eq!(
        interpret_name("pxelinux\\boot\\.\\x"),
        both("x", "pxelinux/boot/x")
    );
    // Found by fuzzing: a multi-byte character where the suffix would start.
    let name = format!("é{}", "a".repeat(55));
    assert_eq!(interpret_name(&name), both(&name, &name));
    // A suffix that only looks like a traceparent is kept.
    assert_eq!(interpret_name("a-00-zz"), both("a-00-zz", "a-00-zz"));
}

#[test]
fn traversal_and_bad_names_are_refused() {
    for name in ["../etc/passwd", "/a/../../b", "..", "a\\..\\b", "x/.."] {
        assert_eq!(interpret_name(name), Err(NameRefusal::Traversal), "{name}");
    }
    for name in ["/", "", "./", "a\nb", "a\u{fffd}"] {
        assert_eq!(interpret_name(name), Err(NameRefusal::BadName), "{name:?}");
    }
}

#[test]
fn admission_repeats_draining_the_cap_and_modes() {
    let base = Admission {
        running_for_client: false,
        running: 3,
        running_for_address: 1,
        max_transfers: 4,
        max_per_client: 2,
        draining: false,
    };
    assert_eq!(admit(&Mode::Octet, &base), Admit::Accept);
    assert_eq!(admit(&Mode::Netascii, &base), Admit::Accept);
    let repeat = Admission {
        running_for_client: true,
        draining: true,
        running: 4,
        ..base
    };
    assert_eq!(
        admit(&Mode::Octet, &repeat),
        Admit::Repeat,
        "a repeat outranks everything"
    );
    let draining = Admission {
        draining: true,
        ..base
    };
    assert_eq!(
        admit(&Mode::Octet, &draining),
        Admit::Refuse(ErrorCode::NotDefined, "server shutting down".into())
    );
    let full = Admission { running: 4, ..base };
    assert_eq!(
        admit(&Mode::Octet, &full),
        Admit::Refuse(
            ErrorCode::NotDefined,
            "server busy (4 transfers), try again".into()
        )
    );
    // One address may hold only so many of the slots.
    let greedy = Admission {
        running: 2,
        running_for_address: 2,
        ..base
    };
    assert_eq!(
        admit(&Mode::Octet, &greedy),
        Admit::Refuse(
            ErrorCode::NotDefined,
            "busy: 2 transfers from this address already, try again".into()
        )
    );
    assert_eq!(
        admit(&Mode::Unknown("mail".into()), &base),
        Admit::Refuse(
            ErrorCode::IllegalOperation,
            "mode \"mail\" not supported".into()
        )
    );
}

#[test]
fn netascii_is_limited_and_names_refused_early_map_to_errors() {
    assert!(netascii_fits(MAX_NETASCII_FILE).is_ok());
    assert_eq!(
        netascii_fits(MAX_NETASCII_FILE + 1).unwrap_err().0,
        ErrorCode::NotDefined
    );
    assert_eq!(
        NameRefusal::Traversal.tftp_error().0,
        ErrorCode::AccessViolation
    );
    assert_eq!(NameRefusal::BadName.tftp_error().0, ErrorCode::FileNotFound);
}

#[test]
fn autoexec_ipxe_carries_the_patch_and_the_chain_to_the_machines_script() {
    let cfg = crate::config::tests::loopback_config();
    let machine = crate::inventory::Machine {
        mac: crate::wire::MacAddr([2, 0x77, 0, 0, 0, 0x50]),
        ..Default::default()
    };
    let known = autoexec_script_url(Some(&machine), &cfg.dhcp);
    assert!(known.ends_with("/02:77:00:00:00:50/auto.ipxe"), "{known}");
    let unknown = autoexec_script_url(None, &cfg.dhcp);
    assert!(unknown.ends_with("/${mac}/auto.ipxe"), "{unknown}");
    assert_eq!(
        autoexec_script("autoexec.ipxe", Some("set link-wait 5"), &known).unwrap(),
        format!("#!ipxe\nset link-wait 5\ndhcp\nchain --autofree {known}\n")
    );
    assert!(autoexec_script("/x/AUTOEXEC.IPXE", Some("echo"), &known).is_some());
    assert!(autoexec_script("autoexec.ipxe", None, &known).is_none());
    assert!(autoexec_script("ipxe.efi", Some("echo"), &known).is_none());
}
