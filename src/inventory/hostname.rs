//! Host-name patterns for machines a remote source names by its own ids (SMD's xnames and
//! NIDs), as coresmd's `hostname:` rule action has them: `{id}` the xname, `{nid}` the NID,
//! `{04d}` (any width 1-9) the NID zero-padded. One pattern per component type, from the
//! config file's `[hostnames]` table, with `default` for the other types. Pure.

use std::collections::BTreeMap;

/// One part of a pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Part {
    Text(String),
    Id,
    /// The NID, zero-padded to this width (0: as it is).
    Nid(usize),
}

/// A checked pattern.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pattern {
    parts: Vec<Part>,
}

/// By component type, lowercase (`node`, `nodebmc`), and `default`.
pub type Patterns = BTreeMap<String, Pattern>;

impl Pattern {
    /// Reads `text`; an unknown placeholder or a character no host name may carry is an error.
    pub fn parse(text: &str) -> Result<Pattern, String> {
        let mut parts = Vec::new();
        let mut rest = text;
        while !rest.is_empty() {
            if let Some(after) = rest.strip_prefix('{') {
                let (name, tail) = after
                    .split_once('}')
                    .ok_or_else(|| format!("{text:?}: a '{{' without its '}}'"))?;
                parts.push(match name {
                    "id" | "xname" => Part::Id,
                    "nid" => Part::Nid(0),
                    _ => match name.strip_prefix('0').and_then(|w| w.strip_suffix('d')) {
                        Some(w) if w.len() == 1 && matches!(w.as_bytes()[0], b'1'..=b'9') => {
                            Part::Nid(usize::from(w.as_bytes()[0] - b'0'))
                        }
                        _ => {
                            return Err(format!(
                            "{text:?}: unknown placeholder {{{name}}} ({{id}}, {{nid}}, {{04d}})"
                        ))
                        }
                    },
                });
                rest = tail;
            } else {
                let end = rest.find('{').unwrap_or(rest.len());
                let literal = &rest[..end];
                if !literal
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                {
                    return Err(format!(
                        "{text:?}: only letters, digits and '-' may stand beside the placeholders"
                    ));
                }
                parts.push(Part::Text(literal.to_ascii_lowercase()));
                rest = &rest[end..];
            }
        }
        if parts.is_empty() {
            return Err("an empty pattern".into());
        }
        Ok(Pattern { parts })
    }

    /// The name for a machine with this xname and NID, or `None` when the pattern needs a NID
    /// the machine has not, or the result is no host name (empty, over 63 characters).
    pub fn render(&self, xname: &str, nid: Option<u64>) -> Option<String> {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Id => out.push_str(&xname.to_ascii_lowercase()),
                Part::Nid(width) => out.push_str(&format!("{:0width$}", nid?, width = *width)),
            }
        }
        let ok = !out.is_empty()
            && out.len() <= 63
            && out.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
        ok.then_some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_render_ids_and_padded_nids() {
        let p = |t: &str| Pattern::parse(t).unwrap();
        assert_eq!(
            p("nid{04d}").render("x1000c0s0b0n0", Some(7)).as_deref(),
            Some("nid0007")
        );
        assert_eq!(
            p("{id}").render("X1000c0s0b0", None).as_deref(),
            Some("x1000c0s0b0")
        );
        assert_eq!(
            p("bmc-{id}-{nid}").render("x1c0s0b0", Some(12)).as_deref(),
            Some("bmc-x1c0s0b0-12")
        );
        assert_eq!(p("nid{04d}").render("x1", None), None, "no NID");
        let long = "x".repeat(40);
        assert_eq!(
            p("{id}{id}").render(&long, None),
            None,
            "over 63 characters"
        );
        for bad in [
            "", "nid{04}", "{name}", "a.b{id}", "{id", "n{010d}", "n{00d}",
        ] {
            assert!(Pattern::parse(bad).is_err(), "{bad:?}");
        }
    }
}
