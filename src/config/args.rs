//! Command-line normalisation before argh sees the arguments: `--flag=value` is split (argh
//! does not split it), Go-style single-dash long flags (`-dhcp-mode`, as Smee's units use) get
//! their second dash, and a bare boolean flag (`--dhcp-enabled`) means `--dhcp-enabled true`.

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
            out.push(arg.clone()); // argh reports it as unknown
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
/// the caller before this; argh's own messages come back as the error text.
pub fn parse(args: &[String]) -> Result<options::Flags, String> {
    let normalized = normalize(args);
    let refs: Vec<&str> = normalized.iter().map(String::as_str).collect();
    <options::Flags as argh::FromArgs>::from_args(&["netbootd"], &refs)
        .map_err(|e| e.output.trim().to_string())
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
    fn unknown_and_positional_arguments_pass_through() {
        assert_eq!(
            norm(&["check", "--nope=1", "-v", "--", "--dhcp-mode=x"]),
            ["check", "--nope=1", "-v", "--", "--dhcp-mode=x"]
        );
        assert_eq!(norm(&["-version", "--help"]), ["--version", "--help"]);
    }
}
