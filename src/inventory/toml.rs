//! TOML → [`Node`], from toml's spanned parser so that every node keeps its line.

use toml::de::{DeTable, DeValue};
use toml::Spanned;

use super::doc::{DocError, Entry, LineIndex, Node, Value};

pub fn parse(text: &str) -> Result<Node, DocError> {
    let index = LineIndex::new(text);
    let table = DeTable::parse(text).map_err(|e| DocError {
        line: e.span().map_or(1, |span| index.line_of(span.start)),
        message: e.message().trim().to_string(),
    })?;
    Ok(Node {
        line: 1,
        value: table_value(table.get_ref(), &index),
    })
}

/// Converts one parsed TOML value (used by the config file reader for `[profiles.*]` too).
pub fn node(value: &Spanned<DeValue<'_>>, index: &LineIndex) -> Node {
    let line = index.line_of(value.span().start);
    let value = match value.get_ref() {
        DeValue::String(s) => Value::Text(s.to_string()),
        DeValue::Integer(i) => Value::Text(integer_text(i.as_str(), i.radix())),
        DeValue::Float(f) => Value::Text(f.as_str().to_string()),
        DeValue::Boolean(b) => Value::Text(b.to_string()),
        DeValue::Datetime(d) => Value::Text(d.to_string()),
        DeValue::Array(items) => Value::List(items.iter().map(|v| node(v, index)).collect()),
        DeValue::Table(table) => table_value(table, index),
    };
    Node { line, value }
}

/// Entries in file order (the parser's map is sorted by key).
fn table_value(table: &DeTable<'_>, index: &LineIndex) -> Value {
    let mut entries: Vec<_> = table.iter().collect();
    crate::value::sort_by_key(&mut entries, |(key, _)| key.span().start);
    Value::Map(
        entries
            .into_iter()
            .map(|(key, value)| Entry {
                key: key.get_ref().to_string(),
                key_line: index.line_of(key.span().start),
                value: node(value, index),
            })
            .collect(),
    )
}

/// TOML integers may be written in hex, octal or binary with `_` separators: give the decimal.
fn integer_text(digits: &str, radix: u32) -> String {
    let clean: String = digits.chars().filter(|c| *c != '_').collect();
    i128::from_str_radix(&clean, radix).map_or(clean, |n| n.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_arrays_and_lines() {
        let doc = parse("# c\n[[machine]]\nmac = \"52:54:00:12:34:56\"\nleaseTime = 0x10\n\n[[machine]]\nmac = \"x\"\n").unwrap();
        let Value::Map(top) = doc.value else { panic!() };
        let Value::List(machines) = &top[0].value.value else {
            panic!()
        };
        assert_eq!(machines.len(), 2);
        let Value::Map(first) = &machines[0].value else {
            panic!()
        };
        assert_eq!(first[0].key_line, 3);
        assert_eq!(first[1].value.value, Value::Text("16".into()));
        let Value::Map(second) = &machines[1].value else {
            panic!()
        };
        assert_eq!(second[0].key_line, 7);
    }

    #[test]
    fn syntax_errors_name_the_line() {
        let err = parse("a = 1\nb = [1, \nc = \n").unwrap_err();
        assert!(err.line >= 2, "{err:?}");
    }
}
