//! Parsers for option values. Each takes the text as given and returns the typed value or a
//! short phrase saying what was expected; the caller adds where the value came from.

use std::net::{IpAddr, Ipv4Addr, SocketAddrV4};
use std::time::Duration;

/// The block sizes RFC 2348 allows.
pub const BLOCK_SIZE_RANGE: std::ops::RangeInclusive<u16> = 512..=65464;

pub fn boolean(text: &str) -> Result<bool, String> {
    match text.to_ascii_lowercase().as_str() {
        "true" | "t" | "1" | "yes" | "on" => Ok(true),
        "false" | "f" | "0" | "no" | "off" => Ok(false),
        _ => Err("expected true or false".into()),
    }
}

pub fn ipv4(text: &str) -> Result<Ipv4Addr, String> {
    text.parse().map_err(|_| "not an IPv4 address".into())
}

pub fn port(text: &str) -> Result<u16, String> {
    match text.parse::<u32>() {
        Ok(p @ 1..=65535) => Ok(p as u16),
        Ok(_) => Err("port out of range 1..65535".into()),
        Err(_) => Err("not a port number".into()),
    }
}

pub fn socket_addr_v4(text: &str) -> Result<SocketAddrV4, String> {
    let (ip, p) = text.rsplit_once(':').ok_or("expected IPv4:port")?;
    Ok(SocketAddrV4::new(ipv4(ip)?, port(p)?))
}

pub fn block_size(text: &str) -> Result<u16, String> {
    match text.parse::<u32>() {
        Ok(n)
            if (*BLOCK_SIZE_RANGE.start() as u32..=*BLOCK_SIZE_RANGE.end() as u32).contains(&n) =>
        {
            Ok(n as u16)
        }
        _ => Err("block size outside 512..65464".into()),
    }
}

/// A whole number no larger than `max`.
pub fn count(text: &str, max: u32) -> Result<u32, String> {
    match text.parse::<u32>() {
        Ok(n) if n <= max => Ok(n),
        _ => Err(format!("expected a whole number 0..{max}")),
    }
}

/// A whole number 1..=`max` (a count that must allow something).
pub fn positive(text: &str, max: u32) -> Result<u32, String> {
    match count(text, max)? {
        0 => Err("must be at least 1".into()),
        n => Ok(n),
    }
}

/// A Go duration (`5s`, `500ms`, `1m30s`, `1.5h`) or a bare number of seconds. Counted in
/// whole nanoseconds (digits past a nanosecond are dropped): no floating point, whose parser
/// would cost the router build 14 KB.
pub fn duration(text: &str) -> Result<Duration, String> {
    const BAD: &str = "expected a duration such as 5s or 500ms";
    if let Ok(secs) = text.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    if text.is_empty() {
        return Err(BAD.into());
    }
    let mut nanos: u128 = 0;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or(BAD)?;
        let (number, tail) = rest.split_at(digits);
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let unit: u128 = match &tail[..unit_len] {
            "ns" => 1,
            "us" | "µs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => return Err(BAD.into()),
        };
        let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
        if whole.len() + fraction.len() == 0 || fraction.contains('.') || whole.len() > 20 {
            return Err(BAD.into());
        }
        let mut part = whole.parse::<u128>().unwrap_or(0) * unit;
        let mut scale = unit;
        for digit in fraction.bytes().take(20) {
            scale /= 10;
            part += u128::from(digit - b'0') * scale;
        }
        nanos = nanos.checked_add(part).ok_or(BAD)?;
        rest = &tail[unit_len..];
    }
    let secs = u64::try_from(nanos / 1_000_000_000).map_err(|_| BAD)?;
    Ok(Duration::new(secs, (nanos % 1_000_000_000) as u32))
}

pub fn scheme(text: &str) -> Result<String, String> {
    match text {
        "http" | "https" => Ok(text.to_string()),
        _ => Err("expected http or https".into()),
    }
}

/// A host name or address to put in a URL: no spaces, slashes or control characters.
pub fn host(text: &str) -> Result<String, String> {
    if text.is_empty()
        || text.len() > 253
        || text
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || "/?#@\\".contains(c))
    {
        return Err("not a host name or address".into());
    }
    Ok(text.to_string())
}

/// A URL path starting with `/`.
pub fn url_path(text: &str) -> Result<String, String> {
    if !text.starts_with('/') || text.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("expected a path starting with /".into());
    }
    Ok(text.to_string())
}

/// An absolute URL with one of the given schemes and no spaces or control characters
/// (values like these end up inside DHCP options and iPXE scripts).
pub fn url(text: &str, schemes: &[&str]) -> Result<String, String> {
    let expected = || format!("expected a {} URL", schemes.join(" or "));
    let (scheme, rest) = text.split_once("://").ok_or_else(expected)?;
    if !schemes.contains(&scheme) || rest.is_empty() || rest.starts_with('/') {
        return Err(expected());
    }
    if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("URL contains spaces or control characters".into());
    }
    Ok(text.to_string())
}

/// The placeholders of `--ipxe-script-url-template`.
pub const URL_PLACEHOLDERS: &[&str] = &["mac", "mac-hyphen", "ip", "xname", "nid", "arch"];

/// An http(s) URL with `{placeholder}`s from [`URL_PLACEHOLDERS`] and no other braces.
pub fn url_template(text: &str) -> Result<String, String> {
    url(text, &["http", "https"])?;
    let mut rest = text;
    while let Some(open) = rest.find('{') {
        let close = rest[open..]
            .find('}')
            .ok_or_else(|| format!("unclosed {{ at {:?}", &rest[open..]))?;
        let name = &rest[open + 1..open + close];
        if !URL_PLACEHOLDERS.contains(&name) {
            return Err(format!(
                "unknown placeholder {{{name}}} (known: {})",
                URL_PLACEHOLDERS.join(", ")
            ));
        }
        rest = &rest[open + close + 1..];
    }
    if rest.contains('}') {
        return Err("a } without its {".into());
    }
    Ok(text.to_string())
}

/// One line of free text (no newlines or other control characters), e.g. kernel arguments.
pub fn single_line(text: &str) -> Result<String, String> {
    if text.chars().any(|c| c.is_control()) {
        return Err("must be one line without control characters".into());
    }
    Ok(text.to_string())
}

/// Hides the user-info part of a URL (`http://user:secret@host/` → `http://***@host/`),
/// so that log lines and `netbootd config` never print credentials.
pub fn redact_url(text: &str) -> String {
    if let Some((scheme, rest)) = text.split_once("://") {
        let authority_end = rest.find('/').unwrap_or(rest.len());
        if let Some(at) = rest[..authority_end].rfind('@') {
            return format!("{scheme}://***@{}", &rest[at + 1..]);
        }
    }
    text.to_string()
}

/// An IPv4 or IPv6 network in CIDR notation; a bare address is a /32 or /128.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl Cidr {
    pub fn parse(text: &str) -> Result<Cidr, String> {
        let bad = || format!("{text:?} is not a CIDR such as 10.0.0.0/8");
        let (addr, prefix) = match text.split_once('/') {
            Some((a, p)) => (
                a.parse::<IpAddr>().map_err(|_| bad())?,
                Some(p.parse::<u8>().map_err(|_| bad())?),
            ),
            None => (text.parse::<IpAddr>().map_err(|_| bad())?, None),
        };
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = prefix.unwrap_or(max);
        if prefix > max {
            return Err(bad());
        }
        Ok(Cidr { addr, prefix })
    }

    /// The IPv4 netmask of the prefix (`/16` → 0xffff0000); 0 for IPv6 networks.
    pub fn mask_bits(&self) -> u32 {
        match self.addr {
            IpAddr::V4(_) => u32::MAX.checked_shl(32 - self.prefix as u32).unwrap_or(0),
            IpAddr::V6(_) => 0,
        }
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX.checked_shl(32 - self.prefix as u32).unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX.checked_shl(128 - self.prefix as u32).unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// A comma- or space-separated list of CIDRs (empty text is an empty list).
pub fn cidrs(text: &str) -> Result<Vec<Cidr>, String> {
    text.split([',', ' '])
        .filter(|s| !s.is_empty())
        .map(Cidr::parse)
        .collect()
}

/// A client architecture number (option 93, RFC 4578 / IANA registry).
fn arch(text: &str) -> Result<u16, String> {
    text.trim()
        .parse()
        .map_err(|_| format!("{text:?} is not an architecture number (0..65535)"))
}

/// A comma- or space-separated list of architecture numbers.
pub fn arch_list(text: &str) -> Result<Vec<u16>, String> {
    text.split([',', ' '])
        .filter(|s| !s.is_empty())
        .map(arch)
        .collect()
}

/// `ARCH=FILE,...`: the iPXE binary for each client architecture. A file is a plain name
/// (letters, digits, `.`, `_`, `-`), served from the iPXE directory.
pub fn arch_files(text: &str) -> Result<Vec<(u16, String)>, String> {
    let mut out: Vec<(u16, String)> = Vec::new();
    for item in text.split([',', ' ']).filter(|s| !s.is_empty()) {
        let (a, file) = item
            .split_once('=')
            .ok_or_else(|| format!("{item:?}: expected ARCH=FILE"))?;
        let a = arch(a)?;
        binary_name(file)?;
        if out.iter().any(|(seen, _)| *seen == a) {
            return Err(format!("architecture {a} is given twice"));
        }
        out.push((a, file.to_string()));
    }
    Ok(out)
}

/// A boot file name that is safe in DHCP's `file` field, a URL path and a TFTP request.
/// `--dhcp-loaders` (`ARCH=ipxe|grub,...`): the architectures given GRUB, which netbootd
/// serves to x86-64 and ARM64 UEFI only (the shim names it hands out exist for those).
pub fn grub_arches(text: &str) -> Result<Vec<u16>, String> {
    let mut grub = Vec::new();
    for (a, loader) in arch_files(text)? {
        match loader.as_str() {
            "ipxe" => {}
            "grub" if grub_binary(a).is_some() => grub.push(a),
            "grub" => return Err(format!("GRUB is served to x86-64 and ARM64 UEFI (7, 9, 11, 16, 19), not to architecture {a}")),
            other => return Err(format!("{other:?}: expected ipxe or grub")),
        }
    }
    Ok(grub)
}

/// The first file a GRUB machine's firmware gets: shim, which checks and starts GRUB
/// (`grubx64.efi`, `grubaa64.efi` from the same place) under Secure Boot and without.
pub fn grub_binary(arch: u16) -> Option<&'static str> {
    match arch {
        7 | 9 | 16 => Some("shimx64.efi"),
        11 | 19 => Some("shimaa64.efi"),
        _ => None,
    }
}

pub fn binary_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 100
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is not a file name (1..100 letters, digits, '.', '_', '-'; no leading '.')"
        ))
    }
}

/// Standard base64 (RFC 4648, `+/`, padding optional, whitespace ignored), as kubeconfig's
/// `*-data` fields carry PEM files.
pub fn base64(text: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(text.len() / 4 * 3);
    let (mut acc, mut bits) = (0u32, 0u32);
    let body = text.trim_end_matches(|c: char| c == '=' || c.is_ascii_whitespace());
    for c in body.bytes().filter(|c| !c.is_ascii_whitespace()) {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return Err(format!("{:?} is not a base64 character", c as char)),
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    if bits >= 6 {
        return Err("base64 text of a wrong length".into());
    }
    Ok(out)
}

/// Sorts `items` stably by `compare`. Every caller shares one instantiation of the standard
/// library's sort (on indices, through a `&dyn` comparison): each `slice::sort_by` on a type
/// of its own costs several KiB of code, which the router builds cannot spare.
pub fn sort_by<T>(items: &mut Vec<T>, compare: impl Fn(&T, &T) -> std::cmp::Ordering) {
    let order = sorted_order(items.len(), &|a, b| compare(&items[a], &items[b]));
    let mut slots: Vec<Option<T>> = items.drain(..).map(Some).collect();
    items.extend(order.into_iter().filter_map(|i| slots[i].take()));
}

/// [`sort_by`] on a key.
pub fn sort_by_key<T, K: Ord>(items: &mut Vec<T>, key: impl Fn(&T) -> K) {
    sort_by(items, |a, b| key(a).cmp(&key(b)));
}

/// The indices `0..len` in the order `compare` gives them, ties in index order (so stable).
fn sorted_order(len: usize, compare: &dyn Fn(usize, usize) -> std::cmp::Ordering) -> Vec<usize> {
    let mut order: Vec<usize> = (0..len).collect();
    order.sort_unstable_by(|&a, &b| compare(a, b).then(a.cmp(&b)));
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_decodes_padded_unpadded_and_wrapped_text() {
        assert_eq!(base64("aGVsbG8=").unwrap(), b"hello");
        assert_eq!(base64("aGVsbG8").unwrap(), b"hello");
        assert_eq!(base64("aGVs\nbG8h\n").unwrap(), b"hello!");
        assert_eq!(base64("").unwrap(), b"");
        assert!(base64("aGV*").is_err());
        assert!(base64("aGVsb").is_err());
    }

    #[test]
    fn arch_tables() {
        assert_eq!(
            arch_files("0=undionly.kpxe, 7=ipxe.efi"),
            Ok(vec![(0, "undionly.kpxe".into()), (7, "ipxe.efi".into())])
        );
        assert!(arch_files("7").is_err());
        assert!(arch_files("x=ipxe.efi").is_err());
        assert!(arch_files("7=../etc/passwd").is_err());
        assert!(arch_files("7=a.efi,7=b.efi").is_err());
        assert_eq!(arch_list("6, 7 9"), Ok(vec![6, 7, 9]));
        assert_eq!(arch_list(""), Ok(vec![]));
        assert!(arch_list("70000").is_err());
    }

    #[test]
    fn go_durations() {
        assert_eq!(duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(duration("7"), Ok(Duration::from_secs(7)));
        assert_eq!(duration("1.5h"), Ok(Duration::from_secs(5400)));
        assert_eq!(duration("2h45m.5s"), Ok(Duration::from_millis(9_900_500)));
        assert_eq!(duration("0.000000001s"), Ok(Duration::from_nanos(1)));
        assert_eq!(duration("1.25us"), Ok(Duration::from_nanos(1250)));
        assert_eq!(
            duration("0.1234567891s"),
            Ok(Duration::from_nanos(123_456_789))
        );
        for bad in [
            "",
            "s",
            "5x",
            "5 s",
            "-5s",
            "ms5",
            ".s",
            "1.2.3s",
            "1e3s",
            "99999999999999999999h",
            "999999999999999999999s",
        ] {
            assert!(duration(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn ports_and_block_sizes_are_range_checked() {
        assert_eq!(port("69"), Ok(69));
        assert!(port("0").is_err() && port("65536").is_err() && port("x").is_err());
        assert_eq!(block_size("512"), Ok(512));
        assert_eq!(block_size("65464"), Ok(65464));
        assert!(block_size("511").is_err() && block_size("65465").is_err());
    }

    #[test]
    fn socket_addresses_need_ip_and_port() {
        assert_eq!(socket_addr_v4("0.0.0.0:67").unwrap().port(), 67);
        assert!(socket_addr_v4("0.0.0.0").is_err());
        assert!(socket_addr_v4("1.2.3.4:0").is_err());
    }

    #[test]
    fn cidrs_match_addresses() {
        let list = cidrs("10.0.0.0/8, 192.168.1.7,fd00::/8").unwrap();
        assert_eq!(list.len(), 3);
        assert!(list[0].contains("10.9.8.7".parse().unwrap()));
        assert!(!list[0].contains("11.0.0.1".parse().unwrap()));
        assert!(list[1].contains("192.168.1.7".parse().unwrap()));
        assert!(list[2].contains("fd12::1".parse().unwrap()));
        assert!(Cidr::parse("0.0.0.0/0")
            .unwrap()
            .contains("8.8.8.8".parse().unwrap()));
        assert!(cidrs("10.0.0.0/33").is_err() && cidrs("foo").is_err());
    }

    #[test]
    fn urls_and_redaction() {
        assert!(url("http://10.0.0.1/x", &["http", "https"]).is_ok());
        assert!(url("ftp://10.0.0.1/x", &["http"]).is_err());
        assert!(url("http://a b", &["http"]).is_err());
        assert!(url("http:///x", &["http"]).is_err());
        assert_eq!(
            redact_url("http://u:secret@h:80/p@q"),
            "http://***@h:80/p@q"
        );
        assert_eq!(redact_url("http://h/p@q"), "http://h/p@q");
    }

    #[test]
    fn the_shared_sort_is_stable() {
        let mut v = vec![(3, 'a'), (1, 'b'), (3, 'c'), (0, 'd'), (1, 'e')];
        sort_by_key(&mut v, |p| p.0);
        assert_eq!(v, [(0, 'd'), (1, 'b'), (1, 'e'), (3, 'a'), (3, 'c')]);
        let mut w: Vec<u32> = (0..1000).map(|i| (i * 7919) % 1000).collect();
        sort_by(&mut w, |a, b| b.cmp(a));
        assert!(w.windows(2).all(|p| p[0] >= p[1]) && w.len() == 1000);
    }
}
