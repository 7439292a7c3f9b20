//! OpenWrt's UCI configuration (`/etc/config/netbootd`) translated to netbootd's TOML, for the
//! procd init script (`netbootd openwrt-config /etc/config/netbootd`). Pure: text in, text out.
//!
//! - `config netbootd` sections: each `option name 'value'` becomes `name = "value"` (`_` in
//!   UCI names is `-`), each `list` an array; the name must be one of netbootd's options.
//!   `enabled` belongs to the init script and is left out.
//! - `config profile 'NAME'`: a boot profile, `[profiles.NAME]` with `kernel`, `cmdline` and
//!   `list initrd`.
//!
//! Anything else (an unknown option or section type, a line UCI would not accept) is an error
//! naming its line, so a typo stops the start instead of being ignored.

use std::collections::BTreeMap;
use std::fmt::Write;

use super::options::find;

/// Options the init script reads itself.
const INIT_ONLY: &[&str] = &["enabled"];

#[derive(Debug, Default)]
struct Section {
    kind: String,
    name: Option<String>,
    line: usize,
    /// In the order given; a `list` adds to its entry.
    values: Vec<(String, Value)>,
}

#[derive(Debug)]
enum Value {
    One(String),
    List(Vec<String>),
}

/// Splits a UCI line into words: whitespace separates them; `'...'` is literal, `"..."` takes
/// backslash escapes, and quoted and bare parts next to each other join (`'a'\''b'`).
fn words(line: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.peek().is_none() || chars.peek() == Some(&'#') {
            return Ok(out);
        }
        let mut word = String::new();
        while let Some(&c) = chars.peek() {
            match c {
                c if c.is_whitespace() => break,
                '\'' => {
                    chars.next();
                    loop {
                        match chars.next() {
                            Some('\'') => break,
                            Some(c) => word.push(c),
                            None => return Err("unterminated '".into()),
                        }
                    }
                }
                '"' => {
                    chars.next();
                    loop {
                        match chars.next() {
                            Some('"') => break,
                            Some('\\') => match chars.next() {
                                Some(c) => word.push(c),
                                None => return Err("unterminated \"".into()),
                            },
                            Some(c) => word.push(c),
                            None => return Err("unterminated \"".into()),
                        }
                    }
                }
                '\\' => {
                    chars.next();
                    if let Some(c) = chars.next() {
                        word.push(c);
                    }
                }
                c => {
                    chars.next();
                    word.push(c);
                }
            }
        }
        out.push(word);
    }
}

fn parse(text: &str) -> Result<Vec<Section>, String> {
    let mut sections: Vec<Section> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        let w = words(line).map_err(|e| format!("line {n}: {e}"))?;
        match w.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
            [] => {}
            ["config", kind] | ["config", kind, _] => sections.push(Section {
                kind: kind.to_string(),
                name: w.get(2).cloned(),
                line: n,
                values: Vec::new(),
            }),
            [kw @ ("option" | "list"), name, value] => {
                let section = sections
                    .last_mut()
                    .ok_or_else(|| format!("line {n}: {kw} before any config section"))?;
                let valid = !name.is_empty()
                    && name
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
                if !valid {
                    return Err(format!("line {n}: bad option name {name:?}"));
                }
                let existing = section.values.iter_mut().find(|(k, _)| k == name);
                match (*kw, existing) {
                    ("option", Some(_)) => {
                        return Err(format!("line {n}: option {name} given twice"))
                    }
                    ("option", None) => section
                        .values
                        .push((name.to_string(), Value::One(value.to_string()))),
                    (_, Some((_, Value::List(items)))) => items.push(value.to_string()),
                    (_, Some(_)) => {
                        return Err(format!("line {n}: {name} is both an option and a list"))
                    }
                    (_, None) => section
                        .values
                        .push((name.to_string(), Value::List(vec![value.to_string()]))),
                }
            }
            _ => return Err(format!("line {n}: not a UCI line: {}", line.trim())),
        }
    }
    Ok(sections)
}

/// A TOML basic string: `"` and `\` escaped, control characters as `\uXXXX`.
fn toml_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn toml_value(v: &Value) -> String {
    match v {
        Value::One(s) => toml_string(s),
        Value::List(items) => {
            let inner: Vec<String> = items.iter().map(|s| toml_string(s)).collect();
            format!("[{}]", inner.join(", "))
        }
    }
}

/// The TOML netbootd reads, from the text of `/etc/config/netbootd`.
pub fn uci_to_toml(text: &str) -> Result<String, String> {
    let sections = parse(text)?;
    let mut out = String::from(
        "# Written by `netbootd openwrt-config` from /etc/config/netbootd: edit that file.\n",
    );
    let mut profiles: BTreeMap<String, &Section> = BTreeMap::new();
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for s in &sections {
        match s.kind.as_str() {
            "netbootd" => {
                for (name, value) in &s.values {
                    if INIT_ONLY.contains(&name.as_str()) {
                        continue;
                    }
                    let key = name.replace('_', "-");
                    if find(&key).is_none() || key == "config" {
                        return Err(format!(
                            "section at line {}: {name} is not a netbootd option (netbootd --help lists them)",
                            s.line
                        ));
                    }
                    if let Some(first) = seen.insert(key.clone(), s.line) {
                        return Err(format!(
                            "{name} is set in two sections (lines {first} and {})",
                            s.line
                        ));
                    }
                    let _ = writeln!(out, "{key} = {}", toml_value(value));
                }
            }
            "profile" => {
                let name = s
                    .name
                    .clone()
                    .ok_or_else(|| format!("line {}: a profile needs a name", s.line))?;
                if profiles.insert(name.clone(), s).is_some() {
                    return Err(format!("line {}: profile {name} given twice", s.line));
                }
            }
            other => {
                return Err(format!(
                    "line {}: unknown section type {other:?} (expected netbootd or profile)",
                    s.line
                ))
            }
        }
    }
    for (name, s) in profiles {
        let _ = writeln!(out, "\n[profiles.{}]", toml_string(&name));
        for (key, value) in &s.values {
            match (key.as_str(), value) {
                ("kernel" | "cmdline", Value::One(_)) | ("initrd", _) => {
                    let value = match value {
                        Value::One(v) if key == "initrd" => Value::List(vec![v.clone()]),
                        Value::One(v) => Value::One(v.clone()),
                        Value::List(items) => Value::List(items.clone()),
                    };
                    let _ = writeln!(out, "{key} = {}", toml_value(&value));
                }
                _ => {
                    return Err(format!(
                        "profile {name} (line {}): {key} is not kernel, initrd or cmdline",
                        s.line
                    ))
                }
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_lists_and_profiles_translate() {
        let uci = "\
# netbootd on a router
config netbootd 'main'
\toption enabled '1'
\toption dhcp_mode 'proxy'
\toption dhcp_iface br-lan
\toption log_level \"info\"
\tlist trusted_proxies '10.0.0.0/8'
\tlist trusted_proxies '192.168.0.0/16'
\toption extra_kernel_args 'quiet console=\"ttyS0\"'

config profile 'debian-installer'
\toption kernel 'http://10.0.0.1/linux'
\tlist initrd 'http://10.0.0.1/initrd.gz'
\toption cmdline 'priority=critical'
";
        assert_eq!(
            uci_to_toml(uci).unwrap(),
            "# Written by `netbootd openwrt-config` from /etc/config/netbootd: edit that file.\n\
             dhcp-mode = \"proxy\"\n\
             dhcp-iface = \"br-lan\"\n\
             log-level = \"info\"\n\
             trusted-proxies = [\"10.0.0.0/8\", \"192.168.0.0/16\"]\n\
             extra-kernel-args = \"quiet console=\\\"ttyS0\\\"\"\n\
             \n\
             [profiles.\"debian-installer\"]\n\
             kernel = \"http://10.0.0.1/linux\"\n\
             initrd = [\"http://10.0.0.1/initrd.gz\"]\n\
             cmdline = \"priority=critical\"\n"
        );
    }

    #[test]
    fn quoting_follows_uci() {
        assert_eq!(
            words("option a 'it'\\''s' \"x\\\"y\" # comment").unwrap(),
            vec!["option", "a", "it's", "x\"y"]
        );
        assert!(words("option a 'open").is_err());
        // Values with TOML's special characters stay strings.
        let toml = uci_to_toml("config netbootd\n option osie_url 'http://h/\"x\\y'\n").unwrap();
        assert!(toml.contains(r#"osie-url = "http://h/\"x\\y""#), "{toml}");
        assert_eq!(toml_string("a\tb"), "\"a\\u0009b\"");
    }

    #[test]
    fn mistakes_name_their_line() {
        for (uci, why) in [
            (
                "config netbootd\n option dhcp_mdoe proxy\n",
                "dhcp_mdoe is not a netbootd option",
            ),
            (
                "option dhcp_mode proxy\n",
                "line 1: option before any config section",
            ),
            (
                "config netbootd\n option dhcp_mode a\n option dhcp_mode b\n",
                "line 3: option dhcp_mode given twice",
            ),
            (
                "config dnsmasq\n",
                "line 1: unknown section type \"dnsmasq\"",
            ),
            (
                "config profile\n option kernel k\n",
                "line 1: a profile needs a name",
            ),
            (
                "config profile p\n option append x\n",
                "append is not kernel, initrd or cmdline",
            ),
            (
                "config netbootd\n option config /etc/x\n",
                "config is not a netbootd option",
            ),
            ("config netbootd\n what is this\n", "line 2: not a UCI line"),
            ("config netbootd\n option a 'b\n", "line 2: unterminated '"),
        ] {
            let err = uci_to_toml(uci).unwrap_err();
            assert!(err.contains(why), "{uci:?}: {err}");
        }
    }
}
