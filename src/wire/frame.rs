//! Ethernet II / IPv4 / UDP frames, for the DHCP service's packet socket: parse what arrives
//! (untagged IPv4, no fragments, header checksum checked) and build replies.
//!
//! The UDP checksum of a received frame is accepted when it is valid, zero (not computed), or
//! still the unfinished pseudo-header sum that checksum offload leaves in frames read from
//! veth/virtio before the NIC would fill it in. Replies always carry a complete checksum.

use std::fmt;
use std::net::{Ipv4Addr, SocketAddrV4};

use super::MacAddr;

const ETHERNET_LEN: usize = 14;
const IPV4_MIN_LEN: usize = 20;
const UDP_LEN: usize = 8;
const ETHERTYPE_IPV4: u16 = 0x0800;
const PROTOCOL_UDP: u8 = 17;

/// A UDP datagram with the addresses of the frame that carried it.
#[derive(Debug, PartialEq, Eq)]
pub struct UdpFrame<'a> {
    pub src_mac: MacAddr,
    pub dst_mac: MacAddr,
    pub src: SocketAddrV4,
    pub dst: SocketAddrV4,
    pub payload: &'a [u8],
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameError {
    Truncated,
    NotIpv4,
    BadIpHeader,
    IpChecksum,
    Fragment,
    NotUdp,
    BadUdpLength,
    UdpChecksum,
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FrameError::Truncated => "truncated frame",
            FrameError::NotIpv4 => "not an untagged IPv4 frame",
            FrameError::BadIpHeader => "bad IPv4 header",
            FrameError::IpChecksum => "bad IPv4 header checksum",
            FrameError::Fragment => "IPv4 fragment",
            FrameError::NotUdp => "not UDP",
            FrameError::BadUdpLength => "bad UDP length",
            FrameError::UdpChecksum => "bad UDP checksum",
        })
    }
}

impl std::error::Error for FrameError {}

fn mac_at(b: &[u8], at: usize) -> MacAddr {
    let mut m = [0; 6];
    m.copy_from_slice(&b[at..at + 6]);
    MacAddr(m)
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

/// One's-complement sum of 16-bit words, not yet folded.
fn sum_words(data: &[u8]) -> u32 {
    let mut chunks = data.chunks_exact(2);
    let mut sum: u32 = chunks
        .by_ref()
        .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
        .sum();
    if let [last] = chunks.remainder() {
        sum += u32::from(*last) << 8;
    }
    sum
}

fn fold(mut sum: u32) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

fn pseudo_header_sum(src: Ipv4Addr, dst: Ipv4Addr, udp_len: u16) -> u32 {
    sum_words(&src.octets())
        + sum_words(&dst.octets())
        + u32::from(PROTOCOL_UDP)
        + u32::from(udp_len)
}

/// Parses an Ethernet frame carrying IPv4/UDP.
pub fn parse_udp_frame(b: &[u8]) -> Result<UdpFrame<'_>, FrameError> {
    if b.len() < ETHERNET_LEN + IPV4_MIN_LEN + UDP_LEN {
        return Err(FrameError::Truncated);
    }
    if be16(b, 12) != ETHERTYPE_IPV4 {
        return Err(FrameError::NotIpv4);
    }
    let ip = &b[ETHERNET_LEN..];
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    let total = usize::from(be16(ip, 2));
    if ip[0] >> 4 != 4 || ihl < IPV4_MIN_LEN || total < ihl + UDP_LEN || total > ip.len() {
        return Err(FrameError::BadIpHeader);
    }
    if fold(sum_words(&ip[..ihl])) != 0xffff {
        return Err(FrameError::IpChecksum);
    }
    if be16(ip, 6) & 0x3fff != 0 {
        return Err(FrameError::Fragment);
    }
    if ip[9] != PROTOCOL_UDP {
        return Err(FrameError::NotUdp);
    }
    let src_ip = Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]);
    let dst_ip = Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]);
    let udp = &ip[ihl..total];
    let udp_len = be16(udp, 4);
    if usize::from(udp_len) < UDP_LEN || usize::from(udp_len) > udp.len() {
        return Err(FrameError::BadUdpLength);
    }
    let udp = &udp[..usize::from(udp_len)];
    let checksum = be16(udp, 6);
    if checksum != 0 {
        let pseudo = pseudo_header_sum(src_ip, dst_ip, udp_len);
        let valid = fold(pseudo + sum_words(udp)) == 0xffff;
        let unfinished = checksum == fold(pseudo);
        if !valid && !unfinished {
            return Err(FrameError::UdpChecksum);
        }
    }
    Ok(UdpFrame {
        dst_mac: mac_at(b, 0),
        src_mac: mac_at(b, 6),
        src: SocketAddrV4::new(src_ip, be16(udp, 0)),
        dst: SocketAddrV4::new(dst_ip, be16(udp, 2)),
        payload: &udp[UDP_LEN..],
    })
}

/// Builds an Ethernet/IPv4/UDP frame with complete checksums. `payload` must fit one frame
/// (DHCP replies are capped well below that by [`super::dhcp::LARGEST_MAX_LEN`]).
pub fn emit_udp_frame(
    src_mac: MacAddr,
    dst_mac: MacAddr,
    src: SocketAddrV4,
    dst: SocketAddrV4,
    payload: &[u8],
) -> Vec<u8> {
    let udp_len = (UDP_LEN + payload.len()) as u16;
    let total = IPV4_MIN_LEN as u16 + udp_len;
    let mut b = Vec::with_capacity(ETHERNET_LEN + usize::from(total));
    b.extend_from_slice(&dst_mac.0);
    b.extend_from_slice(&src_mac.0);
    b.extend_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
    let ip_start = b.len();
    b.extend_from_slice(&[0x45, 0]);
    b.extend_from_slice(&total.to_be_bytes());
    b.extend_from_slice(&[0, 0, 0, 0, 64, PROTOCOL_UDP, 0, 0]);
    b.extend_from_slice(&src.ip().octets());
    b.extend_from_slice(&dst.ip().octets());
    let ip_checksum = !fold(sum_words(&b[ip_start..]));
    b[ip_start + 10..ip_start + 12].copy_from_slice(&ip_checksum.to_be_bytes());
    let udp_start = b.len();
    b.extend_from_slice(&src.port().to_be_bytes());
    b.extend_from_slice(&dst.port().to_be_bytes());
    b.extend_from_slice(&udp_len.to_be_bytes());
    b.extend_from_slice(&[0, 0]);
    b.extend_from_slice(payload);
    let sum = pseudo_header_sum(*src.ip(), *dst.ip(), udp_len) + sum_words(&b[udp_start..]);
    let udp_checksum = match !fold(sum) {
        0 => 0xffff,
        c => c,
    };
    b[udp_start + 6..udp_start + 8].copy_from_slice(&udp_checksum.to_be_bytes());
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs() -> (SocketAddrV4, SocketAddrV4) {
        (
            SocketAddrV4::new(Ipv4Addr::new(10, 77, 0, 1), 67),
            SocketAddrV4::new(Ipv4Addr::BROADCAST, 68),
        )
    }

    #[test]
    fn round_trip() {
        let (src, dst) = addrs();
        let mac = MacAddr([2, 0x77, 0, 0, 0, 1]);
        let frame = emit_udp_frame(mac, MacAddr([0xff; 6]), src, dst, b"hello");
        let parsed = parse_udp_frame(&frame).unwrap();
        assert_eq!(parsed.src, src);
        assert_eq!(parsed.dst, dst);
        assert_eq!(parsed.src_mac, mac);
        assert_eq!(parsed.payload, b"hello");
    }

    #[test]
    fn unfinished_and_zero_checksums_are_accepted_wrong_ones_not() {
        let (src, dst) = addrs();
        let mut frame = emit_udp_frame(MacAddr([2; 6]), MacAddr([0xff; 6]), src, dst, b"abc");
        let at = ETHERNET_LEN + IPV4_MIN_LEN + 6;
        let partial = fold(pseudo_header_sum(*src.ip(), *dst.ip(), 11));
        frame[at..at + 2].copy_from_slice(&partial.to_be_bytes());
        assert!(
            parse_udp_frame(&frame).is_ok(),
            "offload leaves the pseudo-header sum"
        );
        frame[at..at + 2].copy_from_slice(&[0, 0]);
        assert!(parse_udp_frame(&frame).is_ok(), "zero means not computed");
        frame[at..at + 2].copy_from_slice(&[0x12, 0x34]);
        assert_eq!(parse_udp_frame(&frame), Err(FrameError::UdpChecksum));
    }

    #[test]
    fn bad_frames() {
        let (src, dst) = addrs();
        let good = emit_udp_frame(MacAddr([2; 6]), MacAddr([0xff; 6]), src, dst, b"abc");
        assert_eq!(parse_udp_frame(&good[..30]), Err(FrameError::Truncated));
        let mut f = good.clone();
        f[12] = 0x86;
        assert_eq!(parse_udp_frame(&f), Err(FrameError::NotIpv4));
        let mut f = good.clone();
        f[ETHERNET_LEN + 8] = 1; // ttl changed, checksum now wrong
        assert_eq!(parse_udp_frame(&f), Err(FrameError::IpChecksum));
        let mut f = good.clone();
        f[ETHERNET_LEN + 3] = 0xff; // total length beyond the frame
        assert_eq!(parse_udp_frame(&f), Err(FrameError::BadIpHeader));
        let mut f = good.clone();
        f[ETHERNET_LEN + 24] = 0; // UDP length 3
        f[ETHERNET_LEN + 25] = 3;
        assert_eq!(parse_udp_frame(&f), Err(FrameError::BadUdpLength));
        for cut in 0..good.len() {
            let _ = parse_udp_frame(&good[..cut]);
        }
    }
}
