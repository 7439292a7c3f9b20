//! The command line: normalised first (`--flag=value` is split, Go-style single-dash long
//! flags such as `-dhcp-mode`, as Smee's units use, get their second dash, and a bare boolean
//! flag such as `--dhcp-enabled` means `--dhcp-enabled true`), then read against the one table
//! of options ([`options::OPTIONS`]): every option takes one value, `--version` is a switch,
//! and one positional argument names the command.

use super::options;
use crate::value;

pub fn normalize(args: &[String]) -> Vec<String> {
    let mut out = Vec::with_capacity(args.len() + 4);
    let mut rest = args.iter().peekable();
    while let Some(arg) = rest.next() {
        if arg == "--" {
            out.push(arg.clone());
            out.extend(rest.cloned());
            break;
        }
        let long = match arg
            .strip_prefix("--")
            .or_else(|| arg.strip_prefix('-').filter(|a| a.len() > 1))
        {
            Some(long) => long,
            None => {
                out.push(arg.clone());
                continue;
            }
        };
        let (name, inline_value) = match long.split_once('=') {
            Some((name, value)) => (name, Some(value.to_string())),
            None => (long, None),
        };
        let spec = options::find(name).filter(|s| s.name() == name);
        let known_switch = matches!(name, "help" | "version");
        if spec.is_none() && !known_switch {
            out.push(arg.clone()); // parse() reports it as unknown
            continue;
        }
        out.push(format!("--{name}"));
        match (inline_value, spec) {
            (Some(value), _) => out.push(value),
            (None, Some(spec)) if spec.is_bool() => {
                let next_is_bool = rest.peek().is_some_and(|next| value::boolean(next).is_ok());
                if !next_is_bool {
                    out.push("true".into());
                }
            }
            _ => {}
        }
    }
    out
}

/// Normalises and parses the arguments (without the program name). `--help` is handled by
/// the caller before this.
pub fn parse(args: &[String]) -> Result<options::Flags, String> {
    let normalized = normalize(args);
    let mut flags = options::Flags {
        values: vec![None; options::OPTIONS.len()],
        ..Default::default()
    };
    let mut rest = normalized.into_iter();
    let mut positional = Vec::new();
    while let Some(arg) = rest.next() {
        if arg == "--" {
            positional.extend(rest.by_ref());
            break;
        }
        let Some(name) = arg.strip_prefix("--") else {
            positional.push(arg);
            continue;
        };
        if name == "version" {
            flags.version = true;
            continue;
        }
        let index = options::OPTIONS
            .iter()
            .position(|o| o.name() == name)
            .ok_or_else(|| format!("Unrecognized argument: {arg}"))?;
        let value = rest
            .next()
            .ok_or_else(|| format!("Missing value for option '{arg}'."))?;
        if flags.values[index].replace(value).is_some() {
            return Err(format!("Duplicate option '{arg}'."));
        }
    }
    let mut positional = positional.into_iter();
    flags.command = positional.next();
    match positional.next() {
        Some(extra) => Err(format!("Unrecognized argument: {extra}")),
        None => Ok(flags),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(args: &[&str]) -> Vec<String> {
        normalize(&args.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn equals_is_split_and_single_dash_is_accepted() {
        assert_eq!(
            norm(&["--dhcp-mode=proxy", "-http-port=81", "-tftp-port", "70"]),
            [
                "--dhcp-mode",
                "proxy",
                "--http-port",
                "81",
                "--tftp-port",
                "70"
            ]
        );
        assert_eq!(
            norm(&["--extra-kernel-args=a=b c=d"]),
            ["--extra-kernel-args", "a=b c=d"]
        );
    }

    #[test]
    fn bare_booleans_mean_true() {
        assert_eq!(
            norm(&[
                "--dhcp-enabled",
                "--tftp-enabled",
                "false",
                "--syslog-enabled=false",
                "check"
            ]),
            [
                "--dhcp-enabled",
                "true",
                "--tftp-enabled",
                "false",
                "--syslog-enabled",
                "false",
                "check"
            ]
        );
        assert_eq!(norm(&["--tink-server-tls"]), ["--tink-server-tls", "true"]);
    }

    #[test]
    fn flags_take_one_value_each_and_one_command() {
        let parse = |a: &[&str]| parse(&a.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        let f = parse(&["check", "--dhcp-mode=proxy", "-version"]).unwrap();
        assert_eq!(
            (f.command.as_deref(), f.value_of("dhcp_mode"), f.version),
            (Some("check"), Some("proxy"), true)
        );
        assert_eq!(f.value_of("http_port"), None);
        assert_eq!(
            parse(&["--nope=1"]).unwrap_err(),
            "Unrecognized argument: --nope=1"
        );
        assert_eq!(
            parse(&["--http-port"]).unwrap_err(),
            "Missing value for option '--http-port'."
        );
        assert!(parse(&["--http-port=1", "--http-port=2"]).is_err());
        assert!(parse(&["check", "extra"]).is_err());
        assert_eq!(
            parse(&["--", "--x"]).unwrap().command.as_deref(),
            Some("--x")
        );
    }

    #[test]
    fn unknown_and_positional_arguments_pass_through() {
        assert_eq!(
            norm(&["check", "--nope=1", "-v", "--", "--dhcp-mode=x"]),
            ["check", "--nope=1", "-v", "--", "--dhcp-mode=x"]
        );
        assert_eq!(norm(&["-version", "--help"]), ["--version", "--help"]);
    }
}
