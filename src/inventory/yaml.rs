//! YAML → [`Node`], built from yaml-rust2's marked events so every node keeps its line.
//! Supports what hand-written hardware files use: anchors, aliases and `<<` merge keys.
//! Alias expansion is bounded, so a "billion laughs" file is refused instead of eating memory.

use std::collections::HashMap;

use yaml_rust2::parser::{Event, Parser};
use yaml_rust2::scanner::TScalarStyle;

use super::doc::{DocError, Entry, Node, Value};

/// Most nodes a document may expand to through aliases.
const MAX_NODES: usize = 2_000_000;

enum Frame {
    List {
        line: usize,
        anchor: usize,
        items: Vec<Node>,
    },
    Map {
        line: usize,
        anchor: usize,
        entries: Vec<Entry>,
        key: Option<(String, usize)>,
    },
}

struct Builder<'s> {
    stack: Vec<Frame>,
    anchors: HashMap<usize, Node>,
    root: Option<Node>,
    nodes: usize,
    /// Receives the root map's entries as each one is complete, instead of the tree.
    top_entries: Option<&'s mut dyn FnMut(Entry)>,
}

/// The whole document as one tree.
pub fn parse(text: &str) -> Result<Node, DocError> {
    build(text, None)
}

/// Hands each entry of the root map to `on_entry` as soon as it is complete, so a large
/// hardware file is never held as one tree (the peak memory of a load or reload stays near
/// the size of the machines themselves). Returns the root without those entries.
pub fn parse_streaming(text: &str, on_entry: &mut dyn FnMut(Entry)) -> Result<Node, DocError> {
    build(text, Some(on_entry))
}

fn build(text: &str, top_entries: Option<&mut dyn FnMut(Entry)>) -> Result<Node, DocError> {
    let mut parser = Parser::new_from_str(text);
    let mut builder = Builder {
        stack: Vec::new(),
        anchors: HashMap::new(),
        root: None,
        nodes: 0,
        top_entries,
    };
    let mut documents = 0;
    loop {
        let (event, mark) = parser.next_token().map_err(|e| DocError {
            line: e.marker().line(),
            message: e.info().to_string(),
        })?;
        let line = mark.line();
        match event {
            Event::StreamEnd => break,
            Event::DocumentStart => {
                documents += 1;
                if documents > 1 {
                    return Err(DocError {
                        line,
                        message: "more than one YAML document in the file".into(),
                    });
                }
            }
            Event::Scalar(text, style, anchor, _tag) => {
                let value = if style == TScalarStyle::Plain && is_null(&text) {
                    Value::Null
                } else {
                    Value::Text(text)
                };
                builder.complete(Node { line, value }, anchor)?;
            }
            Event::Alias(id) => builder.alias(id, line)?,
            Event::SequenceStart(anchor, _) => builder.stack.push(Frame::List {
                line,
                anchor,
                items: Vec::new(),
            }),
            Event::MappingStart(anchor, _) => builder.stack.push(Frame::Map {
                line,
                anchor,
                entries: Vec::new(),
                key: None,
            }),
            Event::SequenceEnd | Event::MappingEnd => builder.close(line)?,
            Event::Nothing | Event::StreamStart | Event::DocumentEnd => {}
        }
    }
    Ok(builder.root.unwrap_or(Node {
        line: 1,
        value: Value::Null,
    }))
}

impl Builder<'_> {
    /// `*name`: a copy of the anchored node, within the cap on nodes (a "billion laughs" file
    /// is refused, not expanded).
    fn alias(&mut self, id: usize, line: usize) -> Result<(), DocError> {
        let node = self.anchors.get(&id).cloned().ok_or(DocError {
            line,
            message: "unknown alias".into(),
        })?;
        self.nodes += size(&node);
        if self.nodes > MAX_NODES {
            return Err(DocError {
                line,
                message: format!("aliases expand to more than {MAX_NODES} nodes"),
            });
        }
        self.complete(node, 0)
    }

    /// The end of a list or map: it becomes a node of its parent.
    fn close(&mut self, line: usize) -> Result<(), DocError> {
        let (node, anchor) = match self.stack.pop() {
            Some(Frame::List {
                line,
                anchor,
                items,
            }) => (
                Node {
                    line,
                    value: Value::List(items),
                },
                anchor,
            ),
            Some(Frame::Map {
                line,
                anchor,
                entries,
                ..
            }) => (
                Node {
                    line,
                    value: Value::Map(apply_merge_keys(entries)?),
                },
                anchor,
            ),
            None => {
                return Err(DocError {
                    line,
                    message: "unbalanced YAML structure".into(),
                })
            }
        };
        self.complete(node, anchor)
    }

    /// Attaches a finished node to its parent (or makes it the root).
    fn complete(&mut self, node: Node, anchor: usize) -> Result<(), DocError> {
        self.nodes += 1;
        if anchor != 0 {
            self.anchors.insert(anchor, node.clone());
        }
        let at_root = self.stack.len() == 1;
        match self.stack.last_mut() {
            None => self.root = Some(node),
            Some(Frame::List { items, .. }) => items.push(node),
            Some(Frame::Map { entries, key, .. }) => match key.take() {
                Some((key, key_line)) => {
                    // A block collection starts on the line after its key; messages about the
                    // whole section are clearer with the key's line.
                    let mut value = node;
                    if matches!(value.value, Value::Map(_) | Value::List(_)) {
                        value.line = value.line.min(key_line);
                    }
                    let entry = Entry {
                        key,
                        key_line,
                        value,
                    };
                    match (&mut self.top_entries, at_root) {
                        (Some(sink), true) => sink(entry),
                        _ => entries.push(entry),
                    }
                }
                None => match node.value {
                    Value::Text(text) => *key = Some((text, node.line)),
                    Value::Null => *key = Some((String::new(), node.line)),
                    _ => {
                        return Err(DocError {
                            line: node.line,
                            message: "a mapping key must be a plain value".into(),
                        })
                    }
                },
            },
        }
        Ok(())
    }
}

fn is_null(text: &str) -> bool {
    matches!(text, "" | "~" | "null" | "Null" | "NULL")
}

fn size(node: &Node) -> usize {
    1 + match &node.value {
        Value::List(items) => items.iter().map(size).sum(),
        Value::Map(entries) => entries.iter().map(|e| size(&e.value)).sum(),
        Value::Null | Value::Text(_) => 0,
    }
}

/// `<<: *base` (or a list of them) adds the entries of `base` that the map does not set itself.
fn apply_merge_keys(entries: Vec<Entry>) -> Result<Vec<Entry>, DocError> {
    let (merges, mut own): (Vec<Entry>, Vec<Entry>) =
        entries.into_iter().partition(|e| e.key == "<<");
    for merge in merges {
        let sources = match merge.value.value {
            Value::Map(_) => vec![merge.value],
            Value::List(items) => items,
            _ => {
                return Err(DocError {
                    line: merge.key_line,
                    message: "<< must name a mapping".into(),
                })
            }
        };
        for source in sources {
            let Value::Map(inherited) = source.value else {
                return Err(DocError {
                    line: source.line,
                    message: "<< must name a mapping".into(),
                });
            };
            for entry in inherited {
                if !own.iter().any(|o| o.key == entry.key) {
                    own.push(entry);
                }
            }
        }
    }
    Ok(own)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(node: &Node) -> &[Entry] {
        match &node.value {
            Value::Map(entries) => entries,
            other => panic!("not a map: {other:?}"),
        }
    }

    #[test]
    fn nodes_keep_their_lines_and_raw_text() {
        let doc = parse("---\n52:54:00:12:34:56:\n  vlanID: 16\n  hostname: \"null\"\n  arch: ~\n")
            .unwrap();
        let machines = map(&doc);
        assert_eq!(machines[0].key, "52:54:00:12:34:56");
        assert_eq!(machines[0].key_line, 2);
        let fields = map(&machines[0].value);
        assert_eq!(
            fields[0].value,
            Node {
                line: 3,
                value: Value::Text("16".into())
            }
        );
        assert_eq!(fields[1].value.value, Value::Text("null".into()));
        assert_eq!(fields[2].value.value, Value::Null);
    }

    #[test]
    fn anchors_and_merge_keys() {
        let doc = parse("base: &b\n  a: 1\n  b: 2\nm:\n  <<: *b\n  b: 3\n").unwrap();
        let m = map(&map(&doc)[1].value);
        let pairs: Vec<_> = m
            .iter()
            .map(|e| (e.key.as_str(), e.value.value.clone()))
            .collect();
        assert_eq!(
            pairs,
            [
                ("b", Value::Text("3".into())),
                ("a", Value::Text("1".into()))
            ]
        );
    }

    #[test]
    fn syntax_errors_name_the_line() {
        let err = parse("a: 1\nb: [1, 2\nc: 3\n").unwrap_err();
        assert!(err.line >= 2, "{err:?}");
    }

    #[test]
    fn alias_bombs_are_refused() {
        let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..9 {
            let prev = i - 1;
            text.push_str(&format!("a{i}: &a{i} [*a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}]\n"));
        }
        assert!(parse(&text).unwrap_err().message.contains("aliases"));
    }

    #[test]
    fn streaming_hands_over_root_entries_one_by_one() {
        let text = "a: &x {k: 1}\nb:\n  <<: *x\n  j: 2\n";
        let mut seen = Vec::new();
        let root = parse_streaming(text, &mut |e| seen.push(e)).unwrap();
        assert_eq!(root.value, Value::Map(Vec::new()));
        assert_eq!(seen, map(&parse(text).unwrap()).to_vec());
        let root = parse_streaming("- 1\n", &mut |_| panic!("no map entries")).unwrap();
        assert!(matches!(root.value, Value::List(_)));
    }

    #[test]
    fn empty_documents_are_null() {
        assert_eq!(parse("").unwrap().value, Value::Null);
        assert_eq!(parse("---\n").unwrap().value, Value::Null);
    }
}
