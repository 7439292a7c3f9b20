//! What a syslog datagram becomes in netbootd's log: one line naming the sender (with the
//! machine's MAC and hostname when the inventory knows its address), facility, severity, app
//! name and the message with control characters escaped. How many such lines are written is
//! the log budget's to say ([`crate::policy::budget`]).

use std::fmt::Write;
use std::net::SocketAddrV4;

use crate::inventory::Machine;
use crate::policy::event::{Event, Json};
use crate::wire::syslog::{Message, ParseError};

/// Message bytes shown per line; the rest is counted, not printed.
pub const MAX_SHOWN: usize = 2048;

/// Appends `bytes` to `out` as printable text: `\\`, `\"`, `\n`, `\r`, `\t`, `\xNN` for other
/// control bytes and bytes that are not UTF-8, `\u{..}` for Unicode controls and
/// direction overrides. At most `max` input bytes are shown; a longer input ends in
/// `...(+N bytes)`.
pub fn escape_into(out: &mut String, bytes: &[u8], max: usize) {
    let shown = &bytes[..bytes.len().min(max)];
    for chunk in shown.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '"' => out.push_str("\\\""),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                c if (c as u32) < 0x20 || c == '\x7f' => {
                    let _ = write!(out, "\\x{:02x}", c as u32);
                }
                c if c.is_control() || is_invisible_format(c) => {
                    let _ = write!(out, "\\u{{{:x}}}", c as u32);
                }
                c => out.push(c),
            }
        }
        for b in chunk.invalid() {
            let _ = write!(out, "\\x{b:02x}");
        }
    }
    if bytes.len() > shown.len() {
        let _ = write!(out, "...(+{} bytes)", bytes.len() - shown.len());
    }
}

/// Characters that rearrange or hide text on a terminal: bidirectional overrides, line and
/// paragraph separators, zero-width marks.
fn is_invisible_format(c: char) -> bool {
    matches!(c as u32, 0x200b..=0x200f | 0x2028..=0x202e | 0x2066..=0x2069 | 0xfeff)
}

fn escaped(bytes: &[u8], max: usize) -> String {
    let mut out = String::new();
    escape_into(&mut out, bytes, max);
    out
}

/// ` name=value` on the line and `syslog.name` in the fields (when present).
fn field(event: &mut Event, name: &'static str, key: &'static str, value: Option<&str>) {
    let _ = write!(event.text, " {name}=");
    match value {
        Some(v) => {
            let shown = escaped(v.as_bytes(), 256);
            event.text.push_str(&shown);
            event.fields.push((key, Json::Str(shown)));
        }
        None => event.text.push('-'),
    }
}

/// The log line for one datagram from `from`, parsed as `parsed`. Its fields carry the same
/// facts, the message's in a `syslog` group; every text is escaped as on the line.
pub fn log_line(
    from: SocketAddrV4,
    machine: Option<&Machine>,
    parsed: &Result<Message<'_>, ParseError>,
    datagram: &[u8],
) -> Event {
    let mut event = Event::new(format!("syslog {}", from.ip())).str("from", from.ip());
    match machine {
        Some(m) => {
            let host = m.hostname.as_deref().unwrap_or("-");
            let _ = write!(event.text, " mac={} machine={host}", m.mac);
            event = event.str("mac", m.mac).str("machine", host);
        }
        None => event.text.push_str(" mac=- machine=-"),
    }
    match parsed {
        Ok(msg) => {
            let _ = write!(
                event.text,
                " {}.{} {}",
                msg.facility.name(),
                msg.severity.name(),
                msg.format.name()
            );
            event = event
                .str("syslog.facility", msg.facility.name())
                .str("syslog.severity", msg.severity.name())
                .str("syslog.format", msg.format.name());
            field(&mut event, "app", "syslog.app", msg.app_name);
            field(&mut event, "pid", "syslog.pid", msg.proc_id);
            field(&mut event, "msgid", "syslog.msgid", msg.msg_id);
            field(&mut event, "host", "syslog.host", msg.hostname);
            if !msg.structured_data_raw.is_empty() {
                let sd = escaped(msg.structured_data_raw, 1024);
                let _ = write!(event.text, " sd={sd}");
                event = event.str("syslog.sd", sd);
            }
            let text = escaped(msg.msg, MAX_SHOWN);
            let _ = write!(event.text, ": \"{text}\"");
            event = event.str("syslog.msg", text);
        }
        Err(why) => {
            let raw = escaped(datagram, MAX_SHOWN);
            let _ = write!(
                event.text,
                " unparsed ({why}), {} bytes: \"{raw}\"",
                datagram.len()
            );
            event = event
                .str("syslog.error", why)
                .num("syslog.bytes", datagram.len() as u64)
                .str("syslog.raw", raw);
        }
    }
    event
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::MacAddr;
    use std::net::Ipv4Addr;

    const FROM: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 5), 40000);

    fn escaped(bytes: &[u8], max: usize) -> String {
        let mut out = String::new();
        escape_into(&mut out, bytes, max);
        out
    }

    #[test]
    fn control_characters_and_bad_bytes_are_escaped() {
        assert_eq!(
            escaped(b"a\nb\r\tc\x1b[31m\x00\x7f\"q\"\\", 100),
            "a\\nb\\r\\tc\\x1b[31m\\x00\\x7f\\\"q\\\"\\\\"
        );
        assert_eq!(escaped(b"\xff\xfe ok \xc3\xa9", 100), "\\xff\\xfe ok é");
        assert_eq!(
            escaped("x\u{202e}y\u{85}z\u{2028}".as_bytes(), 100),
            "x\\u{202e}y\\u{85}z\\u{2028}"
        );
        assert_eq!(escaped(b"abcdef", 4), "abcd...(+2 bytes)");
        // A cut through a UTF-8 character shows its first bytes escaped, nothing lost silently.
        assert_eq!(escaped("é".as_bytes(), 1), "\\xc3...(+1 bytes)");
    }

    #[test]
    fn a_known_sender_is_named_by_mac_and_hostname() {
        let machine = Machine {
            mac: MacAddr([0x52, 0x54, 0, 0x12, 0x34, 0x56]),
            hostname: Some("node1".into()),
            ..Machine::default()
        };
        let datagram =
            b"<13>1 - vm pxelab 42 INST [install@32473 phase=\"disk\\\"x\"] hello\nworld";
        let event = log_line(FROM, Some(&machine), &Message::parse(datagram), datagram);
        assert_eq!(
            event.field("mac"),
            Some(&Json::Str("52:54:00:12:34:56".into()))
        );
        assert_eq!(
            event.field("syslog.msg"),
            Some(&Json::Str("hello\\nworld".into()))
        );
        assert_eq!(event.field("syslog.app"), Some(&Json::Str("pxelab".into())));
        assert_eq!(
            event.text,
            "syslog 10.0.0.5 mac=52:54:00:12:34:56 machine=node1 user.notice rfc5424 app=pxelab \
             pid=42 msgid=INST host=vm sd=[install@32473 phase=\\\"disk\\\\\\\"x\\\"]: \"hello\\nworld\""
        );
    }

    #[test]
    fn an_unknown_sender_and_an_unparsed_datagram() {
        let datagram = b"<13>Nov 21 07:49:10 vm pxelab: hi";
        let line = log_line(FROM, None, &Message::parse(datagram), datagram).text;
        assert_eq!(
            line,
            "syslog 10.0.0.5 mac=- machine=- user.notice rfc3164 app=pxelab pid=- msgid=- host=vm: \"hi\""
        );
        let garbage = b"\x00\x01GET / HTTP/1.1\r\n";
        let event = log_line(FROM, None, &Message::parse(garbage), garbage);
        assert_eq!(event.field("syslog.bytes"), Some(&Json::U64(18)));
        assert_eq!(
            event.text,
            "syslog 10.0.0.5 mac=- machine=- unparsed (no valid <PRI> in front), 18 bytes: \
             \"\\x00\\x01GET / HTTP/1.1\\r\\n\""
        );
    }
}
