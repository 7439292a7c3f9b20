//! The TOML configuration file. Keys are option names (`dhcp-mode = "proxy"`), or the same
//! names split into tables (`[dhcp]` then `mode = "proxy"`); `_` and `-` are alike. Boot
//! profiles live in `[profiles.NAME]` tables. Unknown keys are errors, with their line.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use toml::de::{DeTable, DeValue};
use toml::Spanned;

use super::options;
use crate::inventory::doc::LineIndex;
use crate::inventory::{self, Profiles};

/// One option's value as the file gives it.
#[derive(Clone, Debug, PartialEq)]
pub struct FileValue {
    pub text: String,
    pub line: usize,
    /// The key as written, dotted (`dhcp.mode`).
    pub key: String,
}

#[derive(Debug, Default)]
pub struct ConfigFile {
    pub path: PathBuf,
    /// By option name (`dhcp-mode`).
    pub values: BTreeMap<String, FileValue>,
    pub profiles: Profiles,
}

struct Reader<'a> {
    file: String,
    index: LineIndex,
    out: &'a mut ConfigFile,
    errors: Vec<String>,
}

/// Parses the file's text; every error is one line naming the file, line and key.
pub fn parse(text: &str, path: &Path) -> Result<ConfigFile, Vec<String>> {
    let file = path.display().to_string();
    let index = LineIndex::new(text);
    let table = DeTable::parse(text).map_err(|e| {
        let line = e.span().map_or(1, |s| index.line_of(s.start));
        vec![format!("{file}:{line}: {}", e.message().trim())]
    })?;
    let mut out = ConfigFile {
        path: path.to_path_buf(),
        ..ConfigFile::default()
    };
    let mut reader = Reader {
        file,
        index,
        out: &mut out,
        errors: Vec::new(),
    };
    reader.table(table.get_ref(), &[]);
    if reader.errors.is_empty() {
        Ok(out)
    } else {
        Err(reader.errors)
    }
}

impl Reader<'_> {
    fn table(&mut self, table: &DeTable<'_>, path: &[String]) {
        // In file order, so that errors come out in line order.
        let mut entries: Vec<_> = table.iter().collect();
        entries.sort_by_key(|(key, _)| key.span().start);
        for (key, value) in entries {
            let mut key_path = path.to_vec();
            key_path.push(key.get_ref().to_string());
            let line = self.index.line_of(key.span().start);
            match value.get_ref() {
                DeValue::Table(inner) if path.is_empty() && key.get_ref() == "profiles" => {
                    self.profiles(inner)
                }
                DeValue::Table(inner) => self.table(inner, &key_path),
                _ => self.option(value, &key_path, line),
            }
        }
    }

    fn option(&mut self, value: &Spanned<DeValue<'_>>, key_path: &[String], line: usize) {
        let dotted = key_path.join(".");
        let name = key_path.join("-").to_ascii_lowercase().replace('_', "-");
        let spec = match options::find(&name) {
            Some(spec) if spec.field != "config" => spec,
            Some(_) => {
                return self.errors.push(format!(
                    "{}:{line}: {dotted}: cannot be set in the config file",
                    self.file
                ))
            }
            None => {
                return self
                    .errors
                    .push(format!("{}:{line}: unknown option {dotted:?}", self.file))
            }
        };
        let text = match value.get_ref() {
            DeValue::Array(items) => {
                let parts: Option<Vec<String>> =
                    items.iter().map(|i| scalar_text(i, &self.index)).collect();
                parts.map(|p| p.join(","))
            }
            _ => scalar_text(value, &self.index),
        };
        match text {
            Some(text) => {
                self.out.values.insert(
                    spec.name(),
                    FileValue {
                        text,
                        line,
                        key: dotted,
                    },
                );
            }
            None => self.errors.push(format!(
                "{}:{line}: {dotted}: expected a string, number, boolean or list",
                self.file
            )),
        }
    }

    fn profiles(&mut self, table: &DeTable<'_>) {
        for (name, value) in table.iter() {
            let node = inventory::toml::node(value, &self.index);
            match inventory::boot_profile(&node, &self.file, name.get_ref()) {
                Ok(profile) => {
                    self.out
                        .profiles
                        .insert(name.get_ref().to_string(), profile);
                }
                Err(problems) => self.errors.extend(problems.iter().map(ToString::to_string)),
            }
        }
    }
}

fn scalar_text(value: &Spanned<DeValue<'_>>, index: &LineIndex) -> Option<String> {
    match inventory::toml::node(value, index).value {
        inventory::doc::Value::Text(text) => Some(text),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flat_and_sectioned_keys_name_the_same_options() {
        let text = "log_level = \"debug\"\n[dhcp]\nmode = \"proxy\"\nhttp-ipxe-script-port = 80\n[tftp]\nblock-size = 1468\n\
                    [http]\nport = 8081\n[trusted]\nproxies = [\"10.0.0.0/8\", \"192.168.0.0/16\"]\n";
        let file = parse(text, Path::new("n.toml")).unwrap();
        let get = |n: &str| file.values.get(n).map(|v| (v.text.as_str(), v.line));
        assert_eq!(get("log-level"), Some(("debug", 1)));
        assert_eq!(get("dhcp-mode"), Some(("proxy", 3)));
        assert_eq!(get("dhcp-http-ipxe-script-port"), Some(("80", 4)));
        assert_eq!(get("tftp-block-size"), Some(("1468", 6)));
        assert_eq!(
            get("trusted-proxies"),
            Some(("10.0.0.0/8,192.168.0.0/16", 10))
        );
        assert_eq!(file.values["dhcp-mode"].key, "dhcp.mode");
    }

    #[test]
    fn unknown_keys_and_syntax_errors_name_their_line() {
        let err = parse(
            "dhcp-mode = \"proxy\"\n\n[dhcp]\nmod = 1\n",
            Path::new("n.toml"),
        )
        .unwrap_err();
        assert_eq!(err, ["n.toml:4: unknown option \"dhcp.mod\""]);
        let err = parse("a = \n", Path::new("n.toml")).unwrap_err();
        assert!(err[0].starts_with("n.toml:1: "), "{err:?}");
        let err = parse("config = \"x\"\n", Path::new("n.toml")).unwrap_err();
        assert!(err[0].contains("cannot be set"), "{err:?}");
    }

    #[test]
    fn profiles_are_validated() {
        let text = "[profiles.debian]\nkernel = \"http://10.0.0.1/vmlinuz\"\ninitrd = [\"http://10.0.0.1/initrd.img\"]\ncmdline = \"console=ttyS0\"\n\
                    [profiles.rescue]\nkernel = \"rescue/vmlinuz\"\ninitrd = \"rescue/initrd\"\n";
        let file = parse(text, Path::new("n.toml")).unwrap();
        assert_eq!(
            file.profiles["debian"].initrd,
            ["http://10.0.0.1/initrd.img"]
        );
        assert_eq!(file.profiles["rescue"].initrd, ["rescue/initrd"]);
        let err = parse(
            "[profiles.bad]\ninitrd = \"x\"\ncmd = \"y\"\n",
            Path::new("n.toml"),
        )
        .unwrap_err();
        assert!(
            err.iter()
                .any(|e| e.contains("n.toml:3:") && e.contains("profiles.bad.cmd")),
            "{err:?}"
        );
        let err = parse(
            "[profiles.bad]\nkernel = \"../etc/passwd\"\n",
            Path::new("n.toml"),
        )
        .unwrap_err();
        assert!(
            err[0].contains("n.toml:2:") && err[0].contains("profiles.bad.kernel"),
            "{err:?}"
        );
    }
}
