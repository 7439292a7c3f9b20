//! pixiecore's API mode as a source of boot data, pure (feature `remote`): the answer to
//! `GET <api>/v1/boot/<mac>` (`{"kernel": URL, "initrd": [URL...], "cmdline": "...",
//! "message": "..."}`, or `{"ipxe-script": "..."}`) becomes a netbooting [`Machine`] with no
//! address (pixiecore is ProxyDHCP only: addresses come from another DHCP server). Everything
//! is checked and bounded like the hardware file's fields.

use serde_json::Value;

use super::{Boot, BootProfile, Machine, Netboot};
use crate::wire::MacAddr;

const MAX_URL: usize = 2048;
const MAX_INITRDS: usize = 16;
const MAX_CMDLINE: usize = 4096;
const MAX_SCRIPT: usize = 64 * 1024;

/// A kernel or initrd URL: http, https or tftp, printable, bounded.
fn url(v: &Value, field: &str) -> Result<String, String> {
    let text = v
        .as_str()
        .ok_or_else(|| format!("{field}: expected a URL string"))?;
    let scheme_ok = ["http://", "https://", "tftp://"]
        .iter()
        .any(|s| text.len() > s.len() && text[..s.len()].eq_ignore_ascii_case(s));
    if !scheme_ok {
        return Err(format!(
            "{field}: {:.80?} is not an http, https or tftp URL",
            text
        ));
    }
    if text.len() > MAX_URL || text.chars().any(|c| c.is_control() || c == ' ') {
        return Err(format!(
            "{field}: not a usable URL (spaces, control characters or over {MAX_URL} bytes)"
        ));
    }
    Ok(text.to_string())
}

/// pixiecore's command line may wrap URLs as `{{ URL "u" }}` to have pixiecore serve them;
/// netbootd passes the URL as it is.
fn plain_cmdline(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            out.push_str(&rest[start..]);
            return out;
        };
        let inner = after[..end].trim();
        match inner
            .strip_prefix("URL")
            .map(str::trim)
            .and_then(|q| q.strip_prefix('"')?.strip_suffix('"'))
        {
            Some(u) => out.push_str(u),
            None => out.push_str(&rest[start..start + 2 + end + 2]),
        }
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    out
}

/// The machine an API answer describes.
pub fn machine(mac: MacAddr, body: &[u8]) -> Result<Machine, String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("not JSON: {e}"))?;
    if !v.is_object() {
        return Err("expected a JSON object".into());
    }
    let netboot = |script: Option<String>| Netboot {
        allow_pxe: true,
        ipxe_script: script,
        ..Netboot::default()
    };
    if let Some(script) = v.get("ipxe-script") {
        let text = script
            .as_str()
            .filter(|s| s.len() <= MAX_SCRIPT && s.trim_start().starts_with("#!ipxe"))
            .ok_or_else(|| {
                format!("ipxe-script: expected an iPXE script (#!ipxe ...) of at most {MAX_SCRIPT} bytes")
            })?;
        return Ok(Machine {
            mac,
            netboot: netboot(Some(text.to_string())),
            ..Machine::default()
        });
    }
    let kernel = url(v.get("kernel").unwrap_or(&Value::Null), "kernel")?;
    let initrd = match v.get("initrd") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(list)) if list.len() <= MAX_INITRDS => list
            .iter()
            .map(|i| url(i, "initrd"))
            .collect::<Result<_, _>>()?,
        Some(_) => {
            return Err(format!(
                "initrd: expected a list of at most {MAX_INITRDS} URLs"
            ))
        }
    };
    let cmdline = match v.get("cmdline") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) if s.len() <= MAX_CMDLINE && !s.chars().any(char::is_control) => {
            plain_cmdline(s)
        }
        Some(_) => {
            return Err(format!(
                "cmdline: expected one line of at most {MAX_CMDLINE} bytes"
            ))
        }
    };
    Ok(Machine {
        mac,
        netboot: netboot(None),
        boot: Some(Boot {
            profile: None,
            resolved: BootProfile {
                kernel,
                initrd,
                cmdline,
            },
        }),
        ..Machine::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mac() -> MacAddr {
        "52:54:00:12:34:56".parse().unwrap()
    }

    #[test]
    fn api_answers_become_netbooting_machines() {
        let m = machine(
            mac(),
            br#"{"kernel":"http://files/vmlinuz","initrd":["http://files/initrd.img"],
                 "cmdline":"console=ttyS0 ks={{ URL \"http://files/ks.cfg\" }} x","message":"hi"}"#,
        )
        .unwrap();
        assert!(m.netboots() && m.ip_address.is_none());
        let boot = m.boot.unwrap().resolved;
        assert_eq!(boot.kernel, "http://files/vmlinuz");
        assert_eq!(boot.initrd, ["http://files/initrd.img"]);
        assert_eq!(boot.cmdline, "console=ttyS0 ks=http://files/ks.cfg x");
        let m = machine(mac(), br##"{"ipxe-script":"#!ipxe\nchain http://x/y\n"}"##).unwrap();
        assert_eq!(
            m.netboot.ipxe_script.as_deref(),
            Some("#!ipxe\nchain http://x/y\n")
        );
        for (bad, says) in [
            (&br#"{"initrd":[]}"#[..], "kernel: expected a URL"),
            (
                br#"{"kernel":"file:///etc/passwd"}"#,
                "not an http, https or tftp URL",
            ),
            (br#"{"kernel":"http://a/b c"}"#, "not a usable URL"),
            (
                br#"{"kernel":"http://a/k","initrd":"http://a/i"}"#,
                "initrd: expected a list",
            ),
            (
                br#"{"kernel":"http://a/k","cmdline":"a\nb"}"#,
                "cmdline: expected one line",
            ),
            (
                br#"{"ipxe-script":"echo hi"}"#,
                "ipxe-script: expected an iPXE script",
            ),
            (b"[1]", "expected a JSON object"),
            (b"<html>", "not JSON"),
        ] {
            let err = machine(mac(), bad).unwrap_err();
            assert!(err.contains(says), "{err}");
        }
        assert_eq!(
            plain_cmdline("a {{ URL \"u\" }} {{ other }} {{"),
            "a u {{ other }} {{"
        );
    }
}
