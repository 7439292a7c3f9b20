//! What a decision's log line says: the text line netbootd has always written, and the same
//! facts as named fields, which `--log-format json` writes as the line's attributes (a field
//! named `group.name` lands in a nested object, as Go's slog groups do).

pub use crate::wire::json::Json;

/// One decision's log line.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Event {
    pub text: String,
    pub fields: Vec<(&'static str, Json)>,
}

impl Event {
    pub fn new(text: String) -> Event {
        Event {
            text,
            fields: Vec::new(),
        }
    }

    /// Adds a text field.
    pub fn str(mut self, name: &'static str, value: impl ToString) -> Event {
        self.fields.push((name, Json::Str(value.to_string())));
        self
    }

    /// Adds a number field.
    pub fn num(mut self, name: &'static str, value: u64) -> Event {
        self.fields.push((name, Json::U64(value)));
        self
    }

    /// Adds a fractional number field (seconds).
    pub fn secs(mut self, name: &'static str, value: f64) -> Event {
        self.fields.push((name, Json::F64(value)));
        self
    }

    /// The field called `name`, for tests and callers that want one fact back.
    pub fn field(&self, name: &str) -> Option<&Json> {
        self.fields.iter().find(|(n, _)| *n == name).map(|(_, v)| v)
    }
}
