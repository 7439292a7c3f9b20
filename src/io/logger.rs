//! The process's logger, one line per `write(2)` so that threads never interleave: text
//! (`HH:MM:SS [LEVEL] message`, UTC) or JSON (`--log-format json`: Go slog's shape, which Smee
//! writes: `time`, `level`, `msg`, and the event's fields, see [`crate::wire::json`]), on
//! standard error or standard output (`--log-output`). The `log` crate's maximum level does
//! the filtering; a reload changes it with [`log::set_max_level`].

use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

use log::kv::{Error, Key, Value, VisitSource};
use log::{Level, LevelFilter, Log, Metadata, Record};

use crate::config::{LogFormat, LogOutput};
use crate::policy::event::{Event, Json};
use crate::wire::json;

struct Logger {
    format: LogFormat,
    output: LogOutput,
}

/// Installs the logger (once; later calls only change the level).
pub fn init(level: LevelFilter, format: LogFormat, output: LogOutput) {
    let _ = log::set_logger(Box::leak(Box::new(Logger { format, output })));
    log::set_max_level(level);
}

/// Writes a decision's line with its fields (they reach JSON lines; the text line is
/// `event.text`). The caller has checked the level.
pub fn event(level: Level, event: &Event) {
    let fields = key_values(event);
    let fields = fields.as_slice();
    log::logger().log(
        &Record::builder()
            .level(level)
            .args(format_args!("{}", event.text))
            .key_values(&fields)
            .build(),
    );
}

/// An event's fields as the `log` crate's key-values.
fn key_values(event: &Event) -> Vec<(&str, Value<'_>)> {
    event
        .fields
        .iter()
        .map(|(name, value)| (*name, to_value(value)))
        .collect()
}

fn to_value(value: &Json) -> Value<'_> {
    match value {
        Json::Str(s) => Value::from(s.as_str()),
        Json::U64(n) => Value::from(*n),
        Json::I64(n) => Value::from(*n),
        Json::F64(f) => Value::from(*f),
        Json::Bool(b) => Value::from(*b),
    }
}

fn from_value(value: &Value) -> Json {
    if let Some(b) = value.to_bool() {
        Json::Bool(b)
    } else if let Some(n) = value.to_u64() {
        Json::U64(n)
    } else if let Some(n) = value.to_i64() {
        Json::I64(n)
    } else if let Some(f) = value.to_f64() {
        Json::F64(f)
    } else {
        Json::Str(value.to_string())
    }
}

/// The fields of a record, in order.
struct Fields(Vec<(String, Json)>);

impl<'kvs> VisitSource<'kvs> for Fields {
    fn visit_pair(&mut self, key: Key<'kvs>, value: Value<'kvs>) -> Result<(), Error> {
        self.0.push((key.as_str().to_string(), from_value(&value)));
        Ok(())
    }
}

fn level_name(level: Level) -> &'static str {
    match level {
        Level::Error => "ERROR",
        Level::Warn => "WARN",
        Level::Info => "INFO",
        Level::Debug => "DEBUG",
        Level::Trace => "TRACE",
    }
}

impl Logger {
    fn line(&self, record: &Record, unix_millis: u64) -> String {
        match self.format {
            LogFormat::Text => {
                let of_day = unix_millis / 1000 % 86400;
                format!(
                    "{:02}:{:02}:{:02} [{}] {}\n",
                    of_day / 3600,
                    of_day % 3600 / 60,
                    of_day % 60,
                    level_name(record.level()),
                    record.args()
                )
            }
            LogFormat::Json => {
                let mut fields = Fields(Vec::new());
                let _ = record.key_values().visit(&mut fields);
                let attributes: Vec<(&str, Json)> = fields
                    .0
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.clone()))
                    .collect();
                json::log_line(
                    &json::rfc3339_utc(unix_millis),
                    level_name(record.level()),
                    &record.args().to_string(),
                    &attributes,
                )
            }
        }
    }
}

impl Log for Logger {
    fn enabled(&self, _: &Metadata) -> bool {
        true
    }

    fn log(&self, record: &Record) {
        let unix_millis = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let line = self.line(record, unix_millis);
        // One write of a whole line (standard output is line-buffered: the newline flushes).
        let _ = match self.output {
            LogOutput::Stderr => std::io::stderr().lock().write_all(line.as_bytes()),
            LogOutput::Stdout => {
                let mut out = std::io::stdout().lock();
                out.write_all(line.as_bytes()).and_then(|()| out.flush())
            }
        };
    }

    fn flush(&self) {
        let _ = std::io::stdout().flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(format: LogFormat, event: &Event) -> String {
        let logger = Logger {
            format,
            output: LogOutput::Stderr,
        };
        let fields = key_values(event);
        let fields = fields.as_slice();
        logger.line(
            &Record::builder()
                .level(Level::Warn)
                .args(format_args!("{}", event.text))
                .key_values(&fields)
                .build(),
            1_796_068_822_123,
        )
    }

    #[test]
    fn text_lines_are_as_before_and_json_lines_carry_the_fields() {
        let event = Event::new("tftp 10.0.0.5:1234 RRQ \"x\": done".into())
            .str("client", "10.0.0.5:1234")
            .num("bytes", 42)
            .secs("secs", 0.25)
            .str("syslog.msg", "a\u{1b}\"b");
        assert_eq!(
            render(LogFormat::Text, &event),
            "20:00:22 [WARN] tftp 10.0.0.5:1234 RRQ \"x\": done\n"
        );
        assert_eq!(
            render(LogFormat::Json, &event),
            "{\"time\":\"2026-11-30T20:00:22.123Z\",\"level\":\"WARN\",\"msg\":\"tftp 10.0.0.5:1234 RRQ \\\"x\\\": done\",\"client\":\"10.0.0.5:1234\",\"bytes\":42,\"secs\":0.25,\"syslog\":{\"msg\":\"a\\u001b\\\"b\"}}\n"
        );
    }
}
