//! EUI-48 MAC addresses: accepted in the forms operators write, printed in one canonical form.

use std::fmt;
use std::str::FromStr;

/// A MAC address. Displayed as lower-case, colon-separated hex (`52:54:00:12:34:56`).
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    /// Parses `52:54:00:12:34:56`, `52-54-00-12-34-56`, `5254.0012.3456` or `525400123456`,
    /// in any letter case. Anything else (including surrounding spaces) is `None`.
    pub fn parse(text: &str) -> Option<MacAddr> {
        let bytes = text.as_bytes();
        let digits: Vec<u8> = match bytes.len() {
            17 => {
                let sep = bytes[2];
                if sep != b':' && sep != b'-' {
                    return None;
                }
                let mut out = Vec::with_capacity(12);
                for (i, &b) in bytes.iter().enumerate() {
                    if i % 3 == 2 {
                        if b != sep {
                            return None;
                        }
                    } else {
                        out.push(b);
                    }
                }
                out
            }
            14 => {
                if bytes[4] != b'.' || bytes[9] != b'.' {
                    return None;
                }
                bytes.iter().copied().filter(|&b| b != b'.').collect()
            }
            12 => bytes.to_vec(),
            _ => return None,
        };
        if digits.len() != 12 {
            return None;
        }
        let mut octets = [0u8; 6];
        for (i, pair) in digits.chunks(2).enumerate() {
            octets[i] = (hex_value(pair[0])? << 4) | hex_value(pair[1])?;
        }
        Some(MacAddr(octets))
    }
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

impl FromStr for MacAddr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        MacAddr::parse(s).ok_or_else(|| format!("not a MAC address: {s:?}"))
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let o = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            o[0], o[1], o[2], o[3], o[4], o[5]
        )
    }
}

impl fmt::Debug for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_written_form_gives_the_same_address() {
        let want = MacAddr([0x52, 0x54, 0x00, 0xab, 0xcd, 0xef]);
        for form in [
            "52:54:00:ab:cd:ef",
            "52:54:00:AB:CD:EF",
            "52-54-00-ab-cd-ef",
            "5254.00ab.cdef",
            "525400ABCDEF",
        ] {
            assert_eq!(MacAddr::parse(form), Some(want), "{form}");
        }
        assert_eq!(want.to_string(), "52:54:00:ab:cd:ef");
    }

    #[test]
    fn malformed_addresses_are_refused_without_panicking() {
        for bad in [
            "",
            "52:54:00:ab:cd",
            "52:54-00:ab:cd:ef",
            "52:54:00:ab:cd:eg",
            " 52:54:00:ab:cd:ef",
            "5254.00ab-cdef",
            "52:54:00:ab:cd:ef:00",
            "ééééééééé",
            "52545.0ab.cdef",
            "5:2:5:4:0:0",
        ] {
            assert_eq!(MacAddr::parse(bad), None, "{bad:?}");
        }
    }
}
