//! JSON for log lines (`--log-format json`), in the shape of Go's slog JSON handler, which
//! Smee writes: one object per line, `time`, `level`, `msg`, then the event's attributes; an
//! attribute named `group.name` goes into a nested object `group`, as slog renders groups.
//! Any text is written as a valid JSON string: quotes, backslashes and every control
//! character are escaped, and so are U+2028/U+2029 (they end lines in some readers).

use std::fmt::Write;

/// A JSON value, rendered.
#[derive(Clone, Debug, PartialEq)]
pub enum Json {
    Str(String),
    U64(u64),
    I64(i64),
    /// Not finite: written as null.
    F64(f64),
    Bool(bool),
}

impl Json {
    fn write(&self, out: &mut String) {
        match self {
            Json::Str(s) => string_into(out, s),
            Json::U64(n) => {
                let _ = write!(out, "{n}");
            }
            Json::I64(n) => {
                let _ = write!(out, "{n}");
            }
            Json::F64(f) if f.is_finite() => {
                let _ = write!(out, "{f}");
            }
            Json::F64(_) => out.push_str("null"),
            Json::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        }
    }
}

/// Appends `s` as a JSON string, quotes included.
pub fn string_into(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c == '\u{7f}' || c == '\u{2028}' || c == '\u{2029}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// One log line: `{"time":..,"level":..,"msg":..,<attributes>}` and a newline.
pub fn log_line(time: &str, level: &str, msg: &str, attributes: &[(&str, Json)]) -> String {
    let mut out = String::with_capacity(64 + msg.len() + 24 * attributes.len());
    out.push_str("{\"time\":");
    string_into(&mut out, time);
    out.push_str(",\"level\":");
    string_into(&mut out, level);
    out.push_str(",\"msg\":");
    string_into(&mut out, msg);
    let mut written: Vec<&str> = Vec::new();
    for (i, (key, value)) in attributes.iter().enumerate() {
        match key.split_once('.') {
            None => {
                out.push(',');
                string_into(&mut out, key);
                out.push(':');
                value.write(&mut out);
            }
            // A group: every attribute of it, wherever it appears, in one object.
            Some((group, _)) if !written.contains(&group) => {
                written.push(group);
                out.push(',');
                string_into(&mut out, group);
                out.push_str(":{");
                let members = attributes[i..]
                    .iter()
                    .filter_map(|(k, v)| Some((k.strip_prefix(group)?.strip_prefix('.')?, v)));
                for (n, (name, value)) in members.enumerate() {
                    if n > 0 {
                        out.push(',');
                    }
                    string_into(&mut out, name);
                    out.push(':');
                    value.write(&mut out);
                }
                out.push('}');
            }
            Some(_) => {}
        }
    }
    out.push_str("}\n");
    out
}

/// RFC 3339 in UTC with milliseconds: `2026-11-30T20:00:22.123Z`.
pub fn rfc3339_utc(unix_millis: u64) -> String {
    let secs = unix_millis / 1000;
    let (year, month, day) = super::http::civil_date(secs / 86400);
    let of_day = secs % 86400;
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        of_day / 3600,
        of_day % 3600 / 60,
        of_day % 60,
        unix_millis % 1000
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_escape_every_control_character() {
        let mut out = String::new();
        string_into(
            &mut out,
            "a\"b\\c\n\r\t\u{0}\u{1b}[31m\u{7f}\u{2028}é\u{fffd}",
        );
        assert_eq!(
            out,
            "\"a\\\"b\\\\c\\n\\r\\t\\u0000\\u001b[31m\\u007f\\u2028é\u{fffd}\""
        );
    }

    #[test]
    fn a_line_has_time_level_msg_attributes_and_groups() {
        let line = log_line(
            "2026-11-30T20:00:22.123Z",
            "INFO",
            "syslog 10.0.0.5",
            &[
                ("mac", Json::Str("02:00:00:00:00:01".into())),
                ("syslog.facility", Json::Str("daemon".into())),
                ("bytes", Json::U64(42)),
                ("syslog.msg", Json::Str("hi\n".into())),
                ("secs", Json::F64(0.5)),
                ("nan", Json::F64(f64::NAN)),
                ("ok", Json::Bool(true)),
                ("delta", Json::I64(-3)),
            ],
        );
        assert_eq!(
            line,
            "{\"time\":\"2026-11-30T20:00:22.123Z\",\"level\":\"INFO\",\"msg\":\"syslog 10.0.0.5\",\"mac\":\"02:00:00:00:00:01\",\"syslog\":{\"facility\":\"daemon\",\"msg\":\"hi\\n\"},\"bytes\":42,\"secs\":0.5,\"nan\":null,\"ok\":true,\"delta\":-3}\n"
        );
    }

    #[test]
    fn times_are_rfc3339_utc() {
        assert_eq!(rfc3339_utc(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_utc(1_796_068_822_123), "2026-11-30T20:00:22.123Z");
        assert_eq!(rfc3339_utc(951_782_400_000), "2000-02-29T00:00:00.000Z");
    }
}
