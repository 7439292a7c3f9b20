//! Every branch of the DHCP decision, without sockets: requests are built (or read from the
//! captured fixtures), the inventory comes from YAML text.

use super::*;
use crate::config::UrlBase;
use crate::inventory::{load_str, Format, Profiles};

const SERVER: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
const CLI_MAC: &str = "02:77:00:00:00:50";
const VM_MAC: &str = "52:54:00:12:34:56";

const HARDWARE: &str = r#"
02:77:00:00:00:50:
  ipAddress: 10.77.0.50
  subnetMask: 255.255.0.0
  defaultGateway: 10.77.0.1
  nameServers: [1.1.1.1, 8.8.8.8]
  hostname: cli0
  domainName: lab.example
  broadcastAddress: 10.77.255.255
  ntpServers: [10.77.0.1]
  leaseTime: 3600
  domainSearch: [lab.example]
  classlessRoutes: ["10.0.0.0/8 10.77.0.254", "0.0.0.0/0 via 10.77.0.1"]
  netboot:
    allowPxe: true
52:54:00:12:34:56:
  ipAddress: 10.77.0.51
  subnetMask: 255.255.0.0
  netboot:
    allowPxe: true
    ipxeScriptUrl: http://10.77.0.1/boot.ipxe
02:00:00:00:00:01:
  ipAddress: 10.77.0.60
  subnetMask: 255.255.0.0
  netboot:
    allowPxe: false
02:00:00:00:00:02:
  ipAddress: 10.77.0.61
  subnetMask: 255.255.0.0
  disabled: true
  netboot:
    allowPxe: true
02:00:00:00:00:03:
  subnetMask: 255.255.0.0
  netboot:
    allowPxe: true
02:00:00:00:00:04:
  ipAddress: 10.77.0.64
  subnetMask: 255.255.0.0
  netboot:
    allowPxe: true
    ipxeBinary: snponly.efi
dc:a6:32:00:00:01:
  ipAddress: 10.77.0.65
  subnetMask: 255.255.0.0
  netboot:
    allowPxe: true
"#;

pub(crate) fn inventory() -> Inventory {
    load_str(HARDWARE, Format::Yaml, "hw.yaml", &Profiles::new())
        .expect("test inventory loads")
        .inventory
}

pub(crate) fn cfg(mode: DhcpMode) -> Dhcp {
    let base = |port, path: &str| UrlBase {
        scheme: "http".into(),
        host: "10.77.0.1".into(),
        port,
        path: path.into(),
    };
    Dhcp {
        enabled: true,
        mode,
        addr: "0.0.0.0:67".parse().unwrap(),
        iface: None,
        ip_for_packet: SERVER,
        syslog_ip: SERVER,
        syslog_host: SERVER.to_string(),
        tftp_ip: SERVER,
        tftp_port: 69,
        ipxe_binary_base: base(8080, "/ipxe/"),
        ipxe_script_base: base(8080, "/auto.ipxe"),
        ipxe_script_url: None,
        ipxe_script_url_template: None,
        ipxe_script_prepend_mac: true,
        ipxe_binaries: crate::value::arch_files(
            crate::config::options::find("dhcp-ipxe-binaries")
                .unwrap()
                .default,
        )
        .unwrap(),
        grub_arches: vec![],
        boot_server_arches: vec![6, 7, 9, 10, 11],
        relays: vec![],
    }
}

fn request(mac: &str, msg_type: MessageType) -> Message {
    let mut m = Message {
        xid: 0xabcd,
        ..Message::default()
    };
    let mac: MacAddr = mac.parse().unwrap();
    m.chaddr[..6].copy_from_slice(&mac.0);
    m.options.set(code::MESSAGE_TYPE, [u8::from(msg_type)]);
    m
}

fn pxe(mut m: Message, arch: u16) -> Message {
    m.options.set(
        code::VENDOR_CLASS,
        format!("PXEClient:Arch:{arch:05}:UNDI:002001").into_bytes(),
    );
    m.options.set(code::CLIENT_ARCH, arch.to_be_bytes());
    m
}

fn ipxe(m: Message) -> Message {
    let mut m = pxe(m, 0);
    m.options.set(code::USER_CLASS, &b"iPXE"[..]);
    m
}

fn fixture(name: &str) -> Message {
    let path = format!(
        "{}/tests/fixtures/dhcp/{name}.bin",
        env!("CARGO_MANIFEST_DIR")
    );
    Message::parse(&std::fs::read(path).unwrap()).unwrap()
}

fn decide67(m: &Message, mode: DhcpMode) -> Verdict {
    decide(m, Port::Dhcp, &inventory(), &cfg(mode))
}

fn reply(v: Verdict) -> Reply {
    v.unwrap_or_else(|why| panic!("expected a reply, got silence: {why}"))
}

fn opt(r: &Reply, c: u8) -> Option<Vec<u8>> {
    r.message.options.get(c).map(<[u8]>::to_vec)
}

#[test]
fn reservation_discover_gets_offer_with_smee_options() {
    let r = reply(decide67(
        &request(CLI_MAC, MessageType::Discover),
        DhcpMode::Reservation,
    ));
    assert_eq!(r.message_type(), MessageType::Offer);
    let m = &r.message;
    assert_eq!(m.op, Op::Reply);
    assert_eq!(m.xid, 0xabcd);
    assert_eq!(m.yiaddr, Ipv4Addr::new(10, 77, 0, 50));
    assert_eq!(opt(&r, code::SERVER_ID), Some(SERVER.octets().to_vec()));
    assert_eq!(
        opt(&r, code::LEASE_TIME),
        Some(3600u32.to_be_bytes().to_vec())
    );
    assert_eq!(opt(&r, code::SUBNET_MASK), Some(vec![255, 255, 0, 0]));
    assert_eq!(opt(&r, code::ROUTER), Some(vec![10, 77, 0, 1]));
    assert_eq!(
        opt(&r, code::DNS_SERVERS),
        Some(vec![1, 1, 1, 1, 8, 8, 8, 8])
    );
    assert_eq!(opt(&r, code::LOG_SERVERS), Some(vec![10, 77, 0, 1]));
    assert_eq!(opt(&r, code::HOSTNAME), Some(b"cli0".to_vec()));
    assert_eq!(opt(&r, code::DOMAIN_NAME), Some(b"lab.example".to_vec()));
    assert_eq!(
        opt(&r, code::BROADCAST_ADDRESS),
        Some(vec![10, 77, 255, 255])
    );
    assert_eq!(opt(&r, code::NTP_SERVERS), Some(vec![10, 77, 0, 1]));
    assert_eq!(
        opt(&r, code::DOMAIN_SEARCH),
        Some(b"\x03lab\x07example\x00".to_vec())
    );
    assert_eq!(
        opt(&r, code::CLASSLESS_ROUTES),
        Some(vec![8, 10, 10, 77, 0, 254, 0, 10, 77, 0, 1])
    );
    // A plain client gets no boot information.
    assert!(r.boot.is_none() && m.file.is_empty() && opt(&r, code::VENDOR_SPECIFIC).is_none());
    // No broadcast flag: unicast to the new address at the client's MAC.
    assert_eq!(
        r.to,
        Destination::Client {
            ip: Ipv4Addr::new(10, 77, 0, 50),
            mac: CLI_MAC.parse().unwrap()
        }
    );
}

#[test]
fn missing_lease_time_is_a_day_not_zero() {
    let r = reply(decide67(
        &request(VM_MAC, MessageType::Discover),
        DhcpMode::Reservation,
    ));
    assert_eq!(
        opt(&r, code::LEASE_TIME),
        Some(86400u32.to_be_bytes().to_vec())
    );
}

#[test]
fn reservation_silences() {
    let cases = [
        ("02:99:00:00:00:01", Silence::UnknownMachine),
        ("02:00:00:00:00:02", Silence::Disabled),
        ("02:00:00:00:00:03", Silence::NoReservedAddress),
    ];
    for (mac, why) in cases {
        assert_eq!(
            decide67(
                &pxe(request(mac, MessageType::Discover), 7),
                DhcpMode::Reservation
            ),
            Err(why.clone()),
            "{mac}"
        );
        assert_eq!(
            decide67(&request(mac, MessageType::Request), DhcpMode::Reservation),
            Err(why),
            "{mac}"
        );
    }
}

#[test]
fn allow_pxe_false_gets_address_without_boot_info() {
    let r = reply(decide67(
        &pxe(request("02:00:00:00:00:01", MessageType::Discover), 7),
        DhcpMode::Reservation,
    ));
    assert_eq!(r.message.yiaddr, Ipv4Addr::new(10, 77, 0, 60));
    assert!(r.boot.is_none());
    assert!(r.message.file.is_empty());
    assert!(opt(&r, code::VENDOR_SPECIFIC).is_none());
}

#[test]
fn firmware_gets_binary_for_its_arch() {
    for (arch, file) in [
        (0, "undionly.kpxe"),
        (6, "ipxe.efi"),
        (7, "ipxe.efi"),
        (9, "ipxe.efi"),
        (11, "snp.efi"),
    ] {
        let r = reply(decide67(
            &pxe(request(CLI_MAC, MessageType::Discover), arch),
            DhcpMode::Reservation,
        ));
        assert_eq!(r.message.file, file.as_bytes(), "arch {arch}");
        assert_eq!(r.message.siaddr, SERVER);
        assert_eq!(
            opt(&r, code::VENDOR_SPECIFIC),
            Some(vec![6, 1, 8, 255]),
            "arch {arch}"
        );
        assert!(
            opt(&r, code::VENDOR_CLASS).is_none(),
            "only HTTPClient is echoed"
        );
    }
}

#[test]
fn option_93_first_known_entry_wins_and_missing_means_bios() {
    let mut m = pxe(request(CLI_MAC, MessageType::Discover), 0);
    m.options
        .set(code::CLIENT_ARCH, [0x01, 0x00, 0x00, 0x07, 0x00, 0x00]);
    let r = reply(decide67(&m, DhcpMode::Reservation));
    assert_eq!(r.message.file, b"ipxe.efi");
    m.options.remove(code::CLIENT_ARCH);
    let r = reply(decide67(&m, DhcpMode::Reservation));
    assert_eq!(r.message.file, b"undionly.kpxe");
}

#[test]
fn unknown_arch_gets_address_only_in_reservation_and_silence_in_proxy() {
    let m = pxe(request(CLI_MAC, MessageType::Discover), 99);
    let r = reply(decide67(&m, DhcpMode::Reservation));
    assert!(r.boot.is_none());
    assert_eq!(r.message.yiaddr, Ipv4Addr::new(10, 77, 0, 50));
    assert_eq!(
        decide67(&m, DhcpMode::Proxy),
        Err(Silence::NoBinaryForArch(Some(99)))
    );
}

#[test]
fn per_machine_binary_overrides_the_table() {
    let r = reply(decide67(
        &pxe(request("02:00:00:00:00:04", MessageType::Discover), 0),
        DhcpMode::Reservation,
    ));
    assert_eq!(r.message.file, b"snponly.efi");
}

#[test]
fn ipxe_gets_script_url() {
    let r = reply(decide67(
        &ipxe(request(CLI_MAC, MessageType::Discover)),
        DhcpMode::Reservation,
    ));
    assert_eq!(
        r.message.file,
        b"http://10.77.0.1:8080/02:77:00:00:00:50/auto.ipxe"
    );
    // no-pxedhcp: iPXE requests at once instead of waiting 2 s for ProxyDHCP offers.
    assert_eq!(
        r.message.options.get(code::IPXE_ENCAP),
        Some(&[176u8, 1, 1][..])
    );
    // The machine's own URL wins.
    let r = reply(decide67(
        &ipxe(request(VM_MAC, MessageType::Discover)),
        DhcpMode::Reservation,
    ));
    assert_eq!(r.message.file, b"http://10.77.0.1/boot.ipxe");
    // Smee's builds say "Tinkerbell" (RFC 3004 form here); option 175 alone also means iPXE.
    let mut m = pxe(request(CLI_MAC, MessageType::Discover), 7);
    m.options.set(code::USER_CLASS, &b"\x0aTinkerbell"[..]);
    assert_eq!(
        classify(&m, &cfg(DhcpMode::Reservation)).kind,
        ClientKind::Ipxe
    );
    let mut m = pxe(request(CLI_MAC, MessageType::Discover), 7);
    m.options.set(code::IPXE_ENCAP, [177, 1, 1]);
    assert_eq!(
        classify(&m, &cfg(DhcpMode::Reservation)).kind,
        ClientKind::Ipxe
    );
}

#[test]
fn script_url_options() {
    let mac: MacAddr = CLI_MAC.parse().unwrap();
    let mut c = cfg(DhcpMode::Reservation);
    c.ipxe_script_prepend_mac = false;
    c.ipxe_script_base.port = 80;
    assert_eq!(script_url(None, mac, &c), "http://10.77.0.1/auto.ipxe");
    c.ipxe_script_url = Some("https://boot.example/x.ipxe".into());
    assert_eq!(script_url(None, mac, &c), "https://boot.example/x.ipxe");
    // Smee puts the MAC before the last path element, of a whole URL too.
    c.ipxe_script_prepend_mac = true;
    c.ipxe_script_url = Some("http://h:7171/auto.ipxe".into());
    assert_eq!(
        script_url(None, mac, &c),
        "http://h:7171/02:77:00:00:00:50/auto.ipxe"
    );
    c.ipxe_script_url = None;
    c.ipxe_script_base.path = "/smee/auto.ipxe".into();
    assert_eq!(
        script_url(None, mac, &c),
        "http://10.77.0.1/smee/02:77:00:00:00:50/auto.ipxe"
    );
}

#[test]
fn remote_machines_get_the_script_url_template() {
    let mut c = cfg(DhcpMode::Reservation);
    c.ipxe_script_url_template =
        Some("http://bss:8081/boot/v1/bootscript?mac={mac}&x={xname}&n={nid}&h={mac-hyphen}&ip={ip}&a={arch}".into());
    let mac: MacAddr = CLI_MAC.parse().unwrap();
    let mut m = Machine {
        mac,
        ip_address: Some("10.100.0.7".parse().unwrap()),
        xname: Some("x1000c0s7b0n0".into()),
        nid: Some(7),
        ..Machine::default()
    };
    assert_eq!(
        script_url(Some(&m), mac, &c),
        "http://bss:8081/boot/v1/bootscript?mac=02:77:00:00:00:50&x=x1000c0s7b0n0&n=7&h=02-77-00-00-00-50&ip=10.100.0.7&a=x86_64"
    );
    // A file machine (no xname) keeps the usual URL; a machine's own URL wins over both.
    m.xname = None;
    assert_eq!(
        script_url(Some(&m), mac, &c),
        "http://10.77.0.1:8080/02:77:00:00:00:50/auto.ipxe"
    );
    m.netboot.ipxe_script_url = Some("http://own/x.ipxe".into());
    assert_eq!(script_url(Some(&m), mac, &c), "http://own/x.ipxe");
    assert!(crate::value::url_template("http://b/{mac}{bogus}").is_err());
    assert!(crate::value::url_template("http://b/{mac").is_err());
    assert!(crate::value::url_template("http://b/?mac={mac}").is_ok());
}

#[test]
fn mac_goes_before_the_last_path_element() {
    let mac: MacAddr = CLI_MAC.parse().unwrap();
    let cases = [
        ("http://h/auto.ipxe", "http://h/02:77:00:00:00:50/auto.ipxe"),
        (
            "http://h/a//b/./s.ipxe?x=/y#f",
            "http://h/a/b/02:77:00:00:00:50/s.ipxe?x=/y#f",
        ),
        ("http://h:1/a/b/", "http://h:1/a/02:77:00:00:00:50/b"),
        ("http://h", "http://h/02:77:00:00:00:50"),
        ("http://h/", "http://h/02:77:00:00:00:50"),
        (
            "tftp://10.0.0.1/boot.ipxe",
            "tftp://10.0.0.1/02:77:00:00:00:50/boot.ipxe",
        ),
    ];
    for (url, want) in cases {
        assert_eq!(insert_mac(url, mac), want, "{url}");
    }
}

#[test]
fn long_boot_url_goes_to_option_67() {
    let mut c = cfg(DhcpMode::Reservation);
    let long = format!("http://10.77.0.1/{}.ipxe", "a".repeat(140));
    c.ipxe_script_url = Some(long.clone());
    c.ipxe_script_prepend_mac = false;
    let r = reply(decide(
        &ipxe(request(CLI_MAC, MessageType::Discover)),
        Port::Dhcp,
        &inventory(),
        &c,
    ));
    assert!(r.message.file.is_empty());
    assert_eq!(opt(&r, code::BOOTFILE_NAME), Some(long.into_bytes()));
}

#[test]
fn http_boot_gets_url_and_httpclient_echo() {
    let mut m = request(CLI_MAC, MessageType::Discover);
    m.options.set(
        code::VENDOR_CLASS,
        &b"HTTPClient:Arch:00016:UNDI:003000"[..],
    );
    m.options.set(code::CLIENT_ARCH, 16u16.to_be_bytes());
    let r = reply(decide67(&m, DhcpMode::Reservation));
    assert_eq!(
        r.message.file,
        b"http://10.77.0.1:8080/ipxe/02:77:00:00:00:50/ipxe.efi"
    );
    assert_eq!(opt(&r, code::VENDOR_CLASS), Some(b"HTTPClient".to_vec()));
}

#[test]
fn raspberry_pi_gets_arch_41_binary_and_menu_suboptions() {
    let r = reply(decide67(
        &pxe(request("dc:a6:32:00:00:01", MessageType::Discover), 0),
        DhcpMode::Reservation,
    ));
    assert_eq!(r.message.file, b"snp.efi");
    let o43 = opt(&r, code::VENDOR_SPECIFIC).unwrap();
    assert!(o43.starts_with(&[6, 1, 8, 10, 4, 0, b'P', b'X', b'E', 9, 20]));
    assert!(o43.ends_with(b"Raspberry Pi Boot\xff"));
}

#[test]
fn guid_echoed_when_present_and_tolerated_when_missing() {
    let mut m = pxe(request(CLI_MAC, MessageType::Discover), 7);
    let r = reply(decide67(&m, DhcpMode::Reservation));
    assert!(opt(&r, code::CLIENT_GUID).is_none());
    let guid = [0u8, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16];
    m.options.set(code::CLIENT_GUID, guid);
    let r = reply(decide67(&m, DhcpMode::Reservation));
    assert_eq!(opt(&r, code::CLIENT_GUID), Some(guid.to_vec()));
    m.options.set(code::CLIENT_GUID, [1, 2, 3]);
    let r = reply(decide67(&m, DhcpMode::Reservation));
    assert!(
        opt(&r, code::CLIENT_GUID).is_none(),
        "malformed GUID not echoed"
    );
}

#[test]
fn request_state_machine() {
    let mine = Ipv4Addr::new(10, 77, 0, 50);
    // SELECTING: option 54 ours, option 50 the reservation -> ACK
    let mut m = request(CLI_MAC, MessageType::Request);
    m.options.set(code::SERVER_ID, SERVER.octets());
    m.options.set(code::REQUESTED_ADDRESS, mine.octets());
    let r = reply(decide67(&m, DhcpMode::Reservation));
    assert_eq!(r.message_type(), MessageType::Ack);
    assert_eq!(r.message.yiaddr, mine);
    // ... wrong address -> NAK, broadcast, with a message
    m.options.set(code::REQUESTED_ADDRESS, [10, 77, 9, 9]);
    let r = reply(decide67(&m, DhcpMode::Reservation));
    assert_eq!(r.message_type(), MessageType::Nak);
    assert_eq!(r.message.yiaddr, Ipv4Addr::UNSPECIFIED);
    assert_eq!(r.to, Destination::Broadcast);
    assert!(opt(&r, code::MESSAGE).is_some());
    assert!(opt(&r, code::LEASE_TIME).is_none());
    // another server's id -> silence
    m.options.set(code::SERVER_ID, [10, 77, 0, 3]);
    assert_eq!(
        decide67(&m, DhcpMode::Reservation),
        Err(Silence::OtherServer(Ipv4Addr::new(10, 77, 0, 3)))
    );
    // INIT-REBOOT: no 54, option 50 right -> ACK; wrong -> NAK
    let mut m = request(CLI_MAC, MessageType::Request);
    m.options.set(code::REQUESTED_ADDRESS, mine.octets());
    assert_eq!(
        reply(decide67(&m, DhcpMode::Reservation)).message_type(),
        MessageType::Ack
    );
    m.options.set(code::REQUESTED_ADDRESS, [192, 168, 1, 5]);
    assert_eq!(
        reply(decide67(&m, DhcpMode::Reservation)).message_type(),
        MessageType::Nak
    );
    // RENEWING: ciaddr, unicast back to ciaddr
    let mut m = request(CLI_MAC, MessageType::Request);
    m.ciaddr = mine;
    let r = reply(decide67(&m, DhcpMode::Reservation));
    assert_eq!(r.message_type(), MessageType::Ack);
    assert_eq!(r.message.ciaddr, mine);
    assert_eq!(
        r.to,
        Destination::Client {
            ip: mine,
            mac: CLI_MAC.parse().unwrap()
        }
    );
    // nothing requested
    let m = request(CLI_MAC, MessageType::Request);
    assert_eq!(
        decide67(&m, DhcpMode::Reservation),
        Err(Silence::NoRequestedAddress)
    );
}

#[test]
fn decline_release_inform() {
    let mut m = request(CLI_MAC, MessageType::Decline);
    m.options.set(code::REQUESTED_ADDRESS, [10, 77, 0, 50]);
    let why = decide67(&m, DhcpMode::Reservation).unwrap_err();
    assert_eq!(why, Silence::Declined(Some(Ipv4Addr::new(10, 77, 0, 50))));
    assert!(why.is_notable());

    let mut m = request(CLI_MAC, MessageType::Release);
    m.ciaddr = Ipv4Addr::new(10, 77, 0, 50);
    assert_eq!(
        decide67(&m, DhcpMode::Reservation),
        Err(Silence::Released(Ipv4Addr::new(10, 77, 0, 50)))
    );

    let mut m = request(CLI_MAC, MessageType::Inform);
    m.ciaddr = Ipv4Addr::new(10, 77, 0, 50);
    let r = reply(decide67(&m, DhcpMode::Reservation));
    assert_eq!(r.message_type(), MessageType::Ack);
    assert_eq!(r.message.yiaddr, Ipv4Addr::UNSPECIFIED);
    assert!(opt(&r, code::LEASE_TIME).is_none());
    assert_eq!(opt(&r, code::SUBNET_MASK), Some(vec![255, 255, 0, 0]));
    assert!(matches!(r.to, Destination::Client { .. }));

    let m = request(CLI_MAC, MessageType::Offer);
    assert_eq!(
        decide67(&m, DhcpMode::Reservation),
        Err(Silence::UnexpectedType(MessageType::Offer))
    );
}

#[test]
fn malformed_requests_are_silenced() {
    let mut m = request(CLI_MAC, MessageType::Discover);
    m.op = Op::Reply;
    assert_eq!(
        decide67(&m, DhcpMode::Reservation),
        Err(Silence::NotARequest)
    );
    let mut m = request(CLI_MAC, MessageType::Discover);
    m.htype = 6;
    assert_eq!(
        decide67(&m, DhcpMode::Reservation),
        Err(Silence::NotEthernet)
    );
    let mut m = request(CLI_MAC, MessageType::Discover);
    m.options.remove(code::MESSAGE_TYPE);
    assert_eq!(
        decide67(&m, DhcpMode::Reservation),
        Err(Silence::NoMessageType)
    );
    let m = request(CLI_MAC, MessageType::Discover);
    assert_eq!(decide67(&m, DhcpMode::Off), Err(Silence::DhcpOff));
}

#[test]
fn relayed_requests_go_back_to_the_relay_with_82_echoed_last() {
    let mut m = request(CLI_MAC, MessageType::Discover);
    m.giaddr = Ipv4Addr::new(10, 77, 0, 2);
    m.options
        .set(code::RELAY_AGENT_INFO, [1, 3, b'a', b'b', b'c']);
    m.options.set(code::CLIENT_ID, [1, 2, 0x77, 0, 0, 0, 0x50]);
    let r = reply(decide67(&m, DhcpMode::Reservation));
    assert_eq!(r.to, Destination::Relay(Ipv4Addr::new(10, 77, 0, 2)));
    assert_eq!(r.message.giaddr, m.giaddr);
    let last = r.message.options.iter().last().unwrap().0;
    assert_eq!(last, code::RELAY_AGENT_INFO);
    assert_eq!(
        opt(&r, code::CLIENT_ID),
        Some(vec![1, 2, 0x77, 0, 0, 0, 0x50])
    );
    // A NAK through a relay sets the broadcast bit.
    let mut m = request(CLI_MAC, MessageType::Request);
    m.giaddr = Ipv4Addr::new(10, 77, 0, 2);
    m.options.set(code::REQUESTED_ADDRESS, [10, 1, 1, 1]);
    let r = reply(decide67(&m, DhcpMode::Reservation));
    assert_eq!(r.message_type(), MessageType::Nak);
    assert_eq!(r.to, Destination::Relay(Ipv4Addr::new(10, 77, 0, 2)));
    assert_ne!(r.message.flags & BROADCAST_FLAG, 0);
}

#[test]
fn broadcast_flag_is_honoured() {
    let mut m = request(CLI_MAC, MessageType::Discover);
    m.flags = BROADCAST_FLAG;
    let r = reply(decide67(&m, DhcpMode::Reservation));
    assert_eq!(r.to, Destination::Broadcast);
    assert_eq!(r.message.flags, BROADCAST_FLAG);
}

#[test]
fn proxy_offers_boot_info_only() {
    // BIOS firmware: option 43 says boot the file.
    let r = reply(decide67(
        &pxe(request(CLI_MAC, MessageType::Discover), 0),
        DhcpMode::Proxy,
    ));
    assert_eq!(r.message_type(), MessageType::Offer);
    assert_eq!(r.message.yiaddr, Ipv4Addr::UNSPECIFIED);
    assert_eq!(r.message.file, b"undionly.kpxe");
    assert_eq!(r.message.siaddr, SERVER);
    assert_eq!(opt(&r, code::VENDOR_CLASS), Some(b"PXEClient".to_vec()));
    assert_eq!(opt(&r, code::VENDOR_SPECIFIC), Some(vec![6, 1, 8, 255]));
    assert_eq!(opt(&r, code::SERVER_ID), Some(SERVER.octets().to_vec()));
    assert!(opt(&r, code::LEASE_TIME).is_none());
    assert!(opt(&r, code::SUBNET_MASK).is_none());
    assert_eq!(r.to, Destination::Broadcast);
    // UEFI firmware: no option 43, so it asks the boot server on 4011.
    let r = reply(decide67(
        &pxe(request(CLI_MAC, MessageType::Discover), 7),
        DhcpMode::Proxy,
    ));
    assert!(opt(&r, code::VENDOR_SPECIFIC).is_none());
    assert_eq!(opt(&r, code::VENDOR_CLASS), Some(b"PXEClient".to_vec()));
    // iPXE (any arch) boots the script from the offer.
    let r = reply(decide67(
        &ipxe(request(CLI_MAC, MessageType::Discover)),
        DhcpMode::Proxy,
    ));
    assert_eq!(opt(&r, code::VENDOR_SPECIFIC), Some(vec![6, 1, 8, 255]));
    assert_eq!(
        r.message.file,
        b"http://10.77.0.1:8080/02:77:00:00:00:50/auto.ipxe"
    );
    // no-pxedhcp belongs in the address server's offer, never in a ProxyDHCP one.
    assert!(opt(&r, code::IPXE_ENCAP).is_none());
}

#[test]
fn proxy_silences() {
    let d = |mac: &str, mode| decide67(&pxe(request(mac, MessageType::Discover), 7), mode);
    assert_eq!(
        decide67(&request(CLI_MAC, MessageType::Discover), DhcpMode::Proxy),
        Err(Silence::NotPxe)
    );
    assert_eq!(
        d("02:99:00:00:00:01", DhcpMode::Proxy),
        Err(Silence::UnknownMachine)
    );
    assert_eq!(
        d("02:00:00:00:00:01", DhcpMode::Proxy),
        Err(Silence::NetbootNotAllowed)
    );
    assert_eq!(
        d("02:00:00:00:00:02", DhcpMode::Proxy),
        Err(Silence::Disabled)
    );
    assert_eq!(
        decide67(
            &pxe(request(CLI_MAC, MessageType::Request), 7),
            DhcpMode::Proxy
        ),
        Err(Silence::ProxyIgnoresRequest)
    );
    // auto-proxy answers unknown PXE clients, still not denied ones
    assert!(d("02:99:00:00:00:01", DhcpMode::AutoProxy).is_ok());
    assert_eq!(
        d("02:00:00:00:00:01", DhcpMode::AutoProxy),
        Err(Silence::NetbootNotAllowed)
    );
    // a machine without an address is fine for proxy (the other server gives addresses)
    assert!(d("02:00:00:00:00:03", DhcpMode::Proxy).is_ok());
}

#[test]
fn boot_server_answers_4011_requests() {
    let source = SocketAddrV4::new(Ipv4Addr::new(10, 77, 3, 194), 4011);
    let inv = inventory();
    for (name, file) in [
        ("ovmf-4011-request", &b"ipxe.efi"[..]),
        ("ipxe-efi-4011-request", &b"http://10.77.0.1/boot.ipxe"[..]),
        ("ipxe-bios-4011-request", &b"http://10.77.0.1/boot.ipxe"[..]),
    ] {
        let m = fixture(name);
        for mode in [DhcpMode::Proxy, DhcpMode::AutoProxy, DhcpMode::Reservation] {
            let r = reply(decide(&m, Port::BootServer { source }, &inv, &cfg(mode)));
            assert_eq!(r.message_type(), MessageType::Ack, "{name}");
            assert_eq!(r.message.file, file, "{name}");
            assert_eq!(r.message.yiaddr, Ipv4Addr::UNSPECIFIED);
            assert_eq!(r.to, Destination::Source(source));
            assert_eq!(opt(&r, code::VENDOR_CLASS), Some(b"PXEClient".to_vec()));
            assert_eq!(opt(&r, code::CLIENT_GUID).map(|g| g.len()), Some(17));
        }
    }
    // The BIOS iPXE request carries boot item 71: echoed.
    let r = reply(decide(
        &fixture("ipxe-bios-4011-request"),
        Port::BootServer { source },
        &inv,
        &cfg(DhcpMode::Proxy),
    ));
    let o43 = opt(&r, code::VENDOR_SPECIFIC).unwrap();
    assert_eq!(o43[0], 71);
    // A DISCOVER to 4011 is not a boot-server request.
    let m = pxe(request(VM_MAC, MessageType::Discover), 7);
    assert_eq!(
        decide(&m, Port::BootServer { source }, &inv, &cfg(DhcpMode::Proxy)),
        Err(Silence::UnexpectedType(MessageType::Discover))
    );
}

#[test]
fn captured_clients_get_expected_answers() {
    let inv = inventory();
    let c = cfg(DhcpMode::Reservation);
    for (name, expect) in [
        ("dhclient-discover", MessageType::Offer),
        ("udhcpc-discover", MessageType::Offer),
        ("dhcpcd-discover", MessageType::Offer),
        ("nmap-discover", MessageType::Offer),
        ("udhcpc-request", MessageType::Ack),
        ("dhclient-request", MessageType::Ack),
        ("dhcpcd-request", MessageType::Ack),
        ("ipxe-bios-discover", MessageType::Offer),
        ("ovmf-discover", MessageType::Offer),
    ] {
        let r = reply(decide(&fixture(name), Port::Dhcp, &inv, &c));
        assert_eq!(r.message_type(), expect, "{name}");
    }
    let r = reply(decide(&fixture("ovmf-discover"), Port::Dhcp, &inv, &c));
    assert_eq!(r.message.file, b"ipxe.efi");
    let r = reply(decide(&fixture("ipxe-bios-discover"), Port::Dhcp, &inv, &c));
    assert_eq!(r.message.file, b"http://10.77.0.1/boot.ipxe");
    // dnsmasq served the OVMF REQUEST in the capture; its option 54 names that server, ours differs
    let r = decide(&fixture("ovmf-request"), Port::Dhcp, &inv, &c);
    assert!(
        r.is_ok(),
        "ovmf-request names 10.77.0.1 (dnsmasq in the lab): {r:?}"
    );
}

#[test]
fn replies_fit_the_client_limit() {
    let m = fixture("ovmf-discover");
    let r = reply(decide(
        &m,
        Port::Dhcp,
        &inventory(),
        &cfg(DhcpMode::Reservation),
    ));
    let out = r.message.emit(m.max_reply_len());
    assert!(out.dropped.is_empty());
    assert!(out.bytes.len() >= 300 && out.bytes.len() <= m.max_reply_len());
    let back = Message::parse(&out.bytes).unwrap();
    assert_eq!(back, r.message);
}

/// giaddr and ciaddr must be addresses a reply may go to; loopback only from loopback.
#[test]
fn forged_relay_and_client_addresses_are_not_answered() {
    let off_host = Source {
        ip: Ipv4Addr::new(10, 77, 0, 9),
        on_loopback: false,
    };
    let local = Source {
        ip: Ipv4Addr::LOCALHOST,
        on_loopback: true,
    };
    let c = cfg(DhcpMode::Reservation);
    let relayed = |giaddr: [u8; 4]| {
        let mut m = request(CLI_MAC, MessageType::Discover);
        m.giaddr = Ipv4Addr::from(giaddr);
        m
    };
    for bad in [
        [224, 0, 0, 1],
        [255, 255, 255, 255],
        [0, 1, 2, 3],
        [240, 0, 0, 1],
        [127, 0, 0, 1],
    ] {
        let giaddr = Ipv4Addr::from(bad);
        assert_eq!(
            screen(&relayed(bad), &off_host, &c),
            Err(Silence::ForgedRelay(giaddr)),
            "{giaddr}"
        );
    }
    assert_eq!(
        screen(&relayed([127, 0, 0, 1]), &local, &c),
        Ok(()),
        "a relay on this host"
    );
    assert_eq!(screen(&relayed([10, 77, 0, 2]), &off_host, &c), Ok(()));
    assert_eq!(
        screen(&relayed([8, 8, 8, 8]), &off_host, &c),
        Ok(()),
        "any unicast relay"
    );
    // With --dhcp-relays only those are answered.
    let mut listed = c.clone();
    listed.relays = vec![crate::value::Cidr::parse("10.77.0.0/24").unwrap()];
    assert_eq!(screen(&relayed([10, 77, 0, 2]), &off_host, &listed), Ok(()));
    assert_eq!(
        screen(&relayed([8, 8, 8, 8]), &off_host, &listed),
        Err(Silence::UnlistedRelay(Ipv4Addr::new(8, 8, 8, 8)))
    );
    // An INFORM is answered at its ciaddr: it must be where the INFORM came from.
    let inform = |ciaddr: Ipv4Addr| {
        let mut m = request(CLI_MAC, MessageType::Inform);
        m.ciaddr = ciaddr;
        m
    };
    for ciaddr in [
        Ipv4Addr::LOCALHOST,
        Ipv4Addr::BROADCAST,
        Ipv4Addr::new(8, 8, 8, 8),
    ] {
        assert_eq!(
            screen(&inform(ciaddr), &off_host, &c),
            Err(Silence::ForgedClientAddress(ciaddr)),
            "{ciaddr}"
        );
    }
    assert_eq!(screen(&inform(off_host.ip), &off_host, &c), Ok(()));
    let mut through_relay = inform(Ipv4Addr::new(10, 9, 0, 5));
    through_relay.giaddr = Ipv4Addr::new(10, 77, 0, 2);
    assert_eq!(
        screen(&through_relay, &off_host, &c),
        Ok(()),
        "the reply goes to the relay"
    );
    assert_eq!(
        Silence::ForgedRelay(Ipv4Addr::BROADCAST).label(),
        "forged_relay"
    );
    assert_eq!(MessageType::Unknown(77).label(), "unknown");
}

/// A machine with an address on two networks (SMD can hold one per network) is offered the
/// address of the network the request comes from: the relay's, else the server's own.
#[test]
fn the_network_asking_chooses_among_a_machines_addresses() {
    let own = inventory()
        .by_mac(CLI_MAC.parse().unwrap())
        .unwrap()
        .clone();
    let machine = Machine {
        other_addresses: vec![crate::inventory::Addressing {
            ip_address: Ipv4Addr::new(10, 100, 0, 10),
            subnet_mask: Ipv4Addr::new(255, 255, 255, 0),
            default_gateway: Some(Ipv4Addr::new(10, 100, 0, 254)),
            name_servers: vec![],
            domain_name: None,
            lease_time: 600,
        }],
        ..own
    };
    let (inventory, _) = Inventory::default().with_added(vec![machine]);
    let ask = |giaddr: Ipv4Addr, msg_type, requested: Option<[u8; 4]>| {
        let mut m = request(CLI_MAC, msg_type);
        m.giaddr = giaddr;
        if let Some(ip) = requested {
            m.options.set(code::REQUESTED_ADDRESS, ip);
        }
        reply(decide(
            &m,
            Port::Dhcp,
            &inventory,
            &cfg(DhcpMode::Reservation),
        ))
    };
    // Not relayed: the server's own network (10.77/16) gives the machine's first address.
    let r = ask(Ipv4Addr::UNSPECIFIED, MessageType::Discover, None);
    assert_eq!(r.message.yiaddr, Ipv4Addr::new(10, 77, 0, 50));
    // Through a relay on 10.100.0.0/24: that network's address, mask, router and lease.
    let relay = Ipv4Addr::new(10, 100, 0, 1);
    let r = ask(relay, MessageType::Discover, None);
    assert_eq!(r.message.yiaddr, Ipv4Addr::new(10, 100, 0, 10));
    assert_eq!(opt(&r, code::SUBNET_MASK), Some(vec![255, 255, 255, 0]));
    assert_eq!(opt(&r, code::ROUTER), Some(vec![10, 100, 0, 254]));
    assert_eq!(
        opt(&r, code::LEASE_TIME),
        Some(600u32.to_be_bytes().to_vec())
    );
    assert_eq!(opt(&r, code::DNS_SERVERS), None);
    let r = ask(relay, MessageType::Request, Some([10, 100, 0, 10]));
    assert_eq!(r.message_type(), MessageType::Ack);
    // The first address asked for from the other network is the wrong one there.
    let r = ask(relay, MessageType::Request, Some([10, 77, 0, 50]));
    assert_eq!(r.message_type(), MessageType::Nak);
    // A relay on a network the machine has no address on: its first address.
    let r = ask(Ipv4Addr::new(10, 200, 0, 1), MessageType::Discover, None);
    assert_eq!(r.message.yiaddr, Ipv4Addr::new(10, 77, 0, 50));
}

/// What the pool's messages ask, and the replies its decisions make, by kind of client.
#[test]
fn pool_asks_and_replies() {
    use crate::config::pools::{PoolBoot, PoolSettings};
    use crate::policy::pool::{AskKind, Decision, Quiet};
    let c = cfg(DhcpMode::Reservation);
    const UNKNOWN: &str = "02:77:00:00:09:99";
    let ip = Ipv4Addr::new(10, 77, 9, 100);
    let ask = |m: &Message| pool_ask(m, &c).map(|a| a.kind);
    assert_eq!(
        ask(&request(UNKNOWN, MessageType::Discover)),
        Ok(AskKind::Discover { requested: None })
    );
    let mut select = request(UNKNOWN, MessageType::Request);
    select.options.set(code::REQUESTED_ADDRESS, ip.octets());
    let mut reboot = select.clone();
    select.options.set(code::SERVER_ID, SERVER.octets());
    assert_eq!(ask(&select), Ok(AskKind::Select { requested: ip }));
    assert_eq!(ask(&reboot), Ok(AskKind::InitReboot { requested: ip }));
    reboot.options.remove(code::REQUESTED_ADDRESS);
    reboot.ciaddr = ip;
    assert_eq!(ask(&reboot), Ok(AskKind::Renew { ciaddr: ip }));
    let mut other = select.clone();
    other.options.set(code::SERVER_ID, [10, 77, 0, 3]);
    assert_eq!(
        ask(&other),
        Err(Silence::OtherServer(Ipv4Addr::new(10, 77, 0, 3)))
    );
    assert_eq!(
        ask(&request(UNKNOWN, MessageType::Inform)),
        Err(Silence::UnexpectedType(MessageType::Inform))
    );

    let pool = PoolSettings {
        name: "lab".into(),
        subnet: crate::value::Cidr::parse("10.77.0.0/16").unwrap(),
        first: ip,
        last: Ipv4Addr::new(10, 77, 9, 119),
        gateway: Some(SERVER),
        name_servers: vec![SERVER],
        domain: Some("unknown.example".into()),
        lease_time: 300,
        boot: PoolBoot::Reboot { sleep: 5 },
    };
    let offer = Decision::Offer { pool: 0, ip };
    // A BMC: the address and the pool's options, no boot file.
    let plain = reply(pool_reply(
        &request(UNKNOWN, MessageType::Discover),
        &offer,
        Some(&pool),
        &c,
    ));
    assert_eq!((plain.message.yiaddr, plain.boot.clone()), (ip, None));
    assert_eq!(
        opt(&plain, code::LEASE_TIME),
        Some(300u32.to_be_bytes().to_vec())
    );
    assert_eq!(opt(&plain, code::SUBNET_MASK), Some(vec![255, 255, 0, 0]));
    assert_eq!(
        opt(&plain, code::DOMAIN_NAME),
        Some(b"unknown.example".to_vec())
    );
    // Firmware: the binary for its architecture; iPXE: /unknown.ipxe.
    let fw = reply(pool_reply(
        &pxe(request(UNKNOWN, MessageType::Discover), 7),
        &offer,
        Some(&pool),
        &c,
    ));
    assert_eq!(fw.boot.map(|b| b.file), Some("ipxe.efi".to_string()));
    let ipxe_reply = reply(pool_reply(
        &ipxe(request(UNKNOWN, MessageType::Discover)),
        &offer,
        Some(&pool),
        &c,
    ));
    assert_eq!(
        ipxe_reply.boot.map(|b| b.file),
        Some("http://10.77.0.1:8080/unknown.ipxe".to_string())
    );
    // NAK carries its reason; silences keep theirs.
    let nak = reply(pool_reply(
        &select,
        &Decision::Nak { why: "gone".into() },
        None,
        &c,
    ));
    assert_eq!(nak.message_type(), MessageType::Nak);
    assert_eq!(opt(&nak, code::MESSAGE), Some(b"gone".to_vec()));
    assert_eq!(
        pool_reply(
            &select,
            &Decision::Silent(Quiet::Full { pool: 0 }),
            None,
            &c
        )
        .map(|_| ()),
        Err(Silence::Pool(Quiet::Full { pool: 0 }))
    );
}

#[test]
fn grub_machines_get_shim_for_their_arch_and_the_table_picks_a_loader_per_arch() {
    let hw = "02:00:00:00:00:05:\n  netboot:\n    allowPxe: true\n    loader: grub\n\
              02:00:00:00:00:06:\n  netboot:\n    allowPxe: true\n    loader: ipxe\n";
    let inv = load_str(hw, Format::Yaml, "hw.yaml", &Profiles::new())
        .unwrap()
        .inventory;
    let grub = inv.by_mac(MacAddr::parse("02:00:00:00:00:05").unwrap());
    let ipxe = inv.by_mac(MacAddr::parse("02:00:00:00:00:06").unwrap());
    let mut c = cfg(DhcpMode::Reservation);
    let file = |m: Option<&Machine>, arch: u16, c: &Dhcp| {
        let client = Client {
            kind: ClientKind::Firmware,
            arch: Some(arch),
            guid: None,
        };
        let mac = MacAddr::parse("02:00:00:00:00:07").unwrap();
        choose_boot(&client, m, mac, c).map(|b| b.file)
    };
    assert_eq!(file(grub, 7, &c).unwrap(), "shimx64.efi");
    assert_eq!(file(grub, 11, &c).unwrap(), "shimaa64.efi");
    assert_eq!(file(grub, 0, &c), Err(Silence::NoBinaryForArch(Some(0))));
    assert_eq!(file(None, 7, &c).unwrap(), "ipxe.efi");
    c.grub_arches = crate::value::grub_arches("7=grub,0=ipxe,11=grub").unwrap();
    assert_eq!(file(None, 7, &c).unwrap(), "shimx64.efi");
    assert_eq!(file(None, 0, &c).unwrap(), "undionly.kpxe");
    // The machine's own choice wins over its architecture's, and so does its own binary.
    assert_eq!(file(ipxe, 11, &c).unwrap(), "snp.efi");
    let own = inventory();
    let own = own.by_mac(MacAddr::parse("02:00:00:00:00:04").unwrap());
    assert_eq!(file(own, 7, &c).unwrap(), "snponly.efi");
    assert!(crate::value::grub_arches("0=grub").is_err());
    assert!(crate::value::grub_arches("7=pxelinux").is_err());
    let bad = load_str(
        "02:00:00:00:00:05:\n  netboot:\n    loader: syslinux\n",
        Format::Yaml,
        "hw.yaml",
        &Profiles::new(),
    )
    .unwrap();
    assert!(
        bad.errors
            .iter()
            .any(|e| e.to_string().contains("netboot.loader")),
        "{:?}",
        bad.errors
    );
}
