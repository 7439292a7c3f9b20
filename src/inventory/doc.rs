//! A small document tree with line numbers, shared by the YAML and TOML readers, so that one
//! piece of code validates machine records from either format and every message names a line.

/// A value and the line (1-based) where it starts.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    pub line: usize,
    pub value: Value,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// YAML `~`, `null` or an empty value.
    Null,
    /// Every scalar as written (`16`, `true` and `"16"` alike): the reader of a field decides
    /// what it means, so that Smee files with numbers where strings are expected still load.
    Text(String),
    List(Vec<Node>),
    /// Entries in file order; duplicate keys are kept for the validator to report.
    Map(Vec<Entry>),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    pub key: String,
    pub key_line: usize,
    pub value: Node,
}

/// A document that could not be read at all (syntax error).
#[derive(Clone, Debug, PartialEq)]
pub struct DocError {
    pub line: usize,
    pub message: String,
}

impl std::fmt::Display for DocError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

impl std::error::Error for DocError {}

/// Turns byte offsets into 1-based line numbers.
pub struct LineIndex {
    starts: Vec<usize>,
}

impl LineIndex {
    pub fn new(text: &str) -> LineIndex {
        let mut starts = vec![0];
        starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        LineIndex { starts }
    }

    pub fn line_of(&self, offset: usize) -> usize {
        match self.starts.binary_search(&offset) {
            Ok(i) => i + 1,
            Err(i) => i,
        }
    }
}

/// Field names are matched as Smee matches them (case-insensitively) and, for TOML users,
/// with `_` and `-` ignored: `ipAddress`, `ipaddress` and `ip_address` are one field.
pub fn normalize_key(key: &str) -> String {
    key.chars()
        .filter(|c| *c != '_' && *c != '-')
        .flat_map(char::to_lowercase)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_index_counts_from_one() {
        let index = LineIndex::new("a\nbb\n\nc");
        assert_eq!(
            [0, 1, 2, 4, 5, 6].map(|o| index.line_of(o)),
            [1, 1, 2, 2, 3, 4]
        );
    }

    #[test]
    fn keys_normalize_across_styles() {
        assert_eq!(normalize_key("ipAddress"), normalize_key("IP_ADDRESS"));
        assert_eq!(normalize_key("ip-address"), "ipaddress");
    }
}
