//! The two ways to ask whether an address is in use before the pool offers it: an ARP request
//! (a whole Ethernet frame, for a packet socket) and an ICMP echo request (for a raw IPv4
//! socket), and the parsers that recognise an answer from the probed address. Any ARP packet
//! whose sender is that address counts (RFC 5227: a request from it shows it in use too).

use std::net::Ipv4Addr;

use super::MacAddr;

const ETH_P_ARP: u16 = 0x0806;
const ETH_P_IP: u16 = 0x0800;
/// Ethernet header + ARP for IPv4 over Ethernet.
pub const ARP_FRAME_LEN: usize = 14 + 28;

/// `who-has target tell sender` from `mac`, broadcast.
pub fn arp_request(mac: MacAddr, sender: Ipv4Addr, target: Ipv4Addr) -> [u8; ARP_FRAME_LEN] {
    let mut f = [0u8; ARP_FRAME_LEN];
    f[0..6].copy_from_slice(&[0xff; 6]);
    f[6..12].copy_from_slice(&mac.0);
    f[12..14].copy_from_slice(&ETH_P_ARP.to_be_bytes());
    let arp = &mut f[14..];
    arp[0..2].copy_from_slice(&1u16.to_be_bytes()); // Ethernet
    arp[2..4].copy_from_slice(&ETH_P_IP.to_be_bytes());
    arp[4] = 6;
    arp[5] = 4;
    arp[6..8].copy_from_slice(&1u16.to_be_bytes()); // request
    arp[8..14].copy_from_slice(&mac.0);
    arp[14..18].copy_from_slice(&sender.octets());
    // Target hardware address stays zero.
    arp[24..28].copy_from_slice(&target.octets());
    f
}

/// The sender address of an ARP frame for IPv4 over Ethernet (request or reply), else `None`.
pub fn arp_sender(frame: &[u8]) -> Option<Ipv4Addr> {
    if frame.get(12..14)? != ETH_P_ARP.to_be_bytes() {
        return None;
    }
    let arp = frame.get(14..42)?;
    let well_formed =
        arp[0..2] == [0, 1] && arp[2..4] == ETH_P_IP.to_be_bytes() && arp[4] == 6 && arp[5] == 4;
    if !well_formed {
        return None;
    }
    let ip = Ipv4Addr::new(arp[14], arp[15], arp[16], arp[17]);
    Some(ip).filter(|ip| !ip.is_unspecified())
}

/// The Internet checksum (RFC 1071).
fn checksum(bytes: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    for pair in bytes.chunks(2) {
        let word = u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)]);
        sum += u32::from(word);
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An ICMP echo request (type 8) with `ident` and `seq` and a short payload.
pub fn icmp_echo(ident: u16, seq: u16) -> [u8; 16] {
    let mut p = [0u8; 16];
    p[0] = 8;
    p[4..6].copy_from_slice(&ident.to_be_bytes());
    p[6..8].copy_from_slice(&seq.to_be_bytes());
    p[8..16].copy_from_slice(b"netbootd");
    let sum = checksum(&p);
    p[2..4].copy_from_slice(&sum.to_be_bytes());
    p
}

/// The source of an IPv4 packet carrying an ICMP echo reply (type 0) with `ident`, as a raw
/// ICMP socket delivers it (IP header first), else `None`.
pub fn icmp_echo_reply_from(packet: &[u8], ident: u16) -> Option<Ipv4Addr> {
    let first = *packet.first()?;
    if first >> 4 != 4 || *packet.get(9)? != 1 {
        return None;
    }
    let header = usize::from(first & 0x0f) * 4;
    let icmp = packet.get(header..header + 8)?;
    if icmp[0] != 0 || icmp[4..6] != ident.to_be_bytes() {
        return None;
    }
    let src = packet.get(12..16)?;
    Some(Ipv4Addr::new(src[0], src[1], src[2], src[3]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_arp_request_parses_back_to_its_sender() {
        let mac = MacAddr([2, 0, 0, 0, 0, 1]);
        let f = arp_request(mac, Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 9));
        assert_eq!(arp_sender(&f), Some(Ipv4Addr::new(10, 0, 0, 1)));
        assert_eq!(&f[38..42], &[10, 0, 0, 9]);
        // Short, foreign or probe-style (sender 0.0.0.0) frames are no answer.
        assert_eq!(arp_sender(&f[..30]), None);
        let mut ip = f;
        ip[12..14].copy_from_slice(&[8, 0]);
        assert_eq!(arp_sender(&ip), None);
        let probe = arp_request(mac, Ipv4Addr::UNSPECIFIED, Ipv4Addr::new(10, 0, 0, 9));
        assert_eq!(arp_sender(&probe), None);
    }

    #[test]
    fn icmp_echo_has_a_valid_checksum_and_replies_are_matched_by_ident() {
        let req = icmp_echo(0x1234, 7);
        assert_eq!(checksum(&req), 0);
        let mut packet = vec![
            0x45, 0, 0, 36, 0, 0, 0, 0, 64, 1, 0, 0, 10, 0, 0, 9, 10, 0, 0, 1,
        ];
        let mut reply = req;
        reply[0] = 0;
        packet.extend_from_slice(&reply);
        assert_eq!(
            icmp_echo_reply_from(&packet, 0x1234),
            Some(Ipv4Addr::new(10, 0, 0, 9))
        );
        assert_eq!(icmp_echo_reply_from(&packet, 0x4321), None);
        assert_eq!(icmp_echo_reply_from(&packet[..22], 0x1234), None);
        assert_eq!(icmp_echo_reply_from(&[], 0x1234), None);
        packet[20] = 8; // a request, not a reply
        assert_eq!(icmp_echo_reply_from(&packet, 0x1234), None);
    }
}
