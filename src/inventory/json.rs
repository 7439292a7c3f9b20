//! The hardware file's shape in JSON, as a remote source serves it (`--backend-http-url`): an
//! object keyed by MAC whose values carry the same fields as `hardware.yaml` (feature
//! `remote`). The body must be JSON (checked whole first); JSON is then read by the YAML
//! reader, of which it is a subset, so the same validation names the same lines and fields.

use super::{load_str, Format, Loaded, Problem, Profiles};

/// Loads a JSON inventory; `name` (its URL) is used in messages.
pub fn load(body: &[u8], name: &str, profiles: &Profiles) -> Result<Loaded, Vec<Problem>> {
    let problem = |message: String| {
        vec![Problem {
            file: name.to_string(),
            line: 0,
            mac: None,
            field: None,
            message,
        }]
    };
    if let Err(e) = serde_json::from_slice::<serde::de::IgnoredAny>(body) {
        return Err(problem(format!("not JSON: {e}")));
    }
    let Ok(text) = std::str::from_utf8(body) else {
        return Err(problem("not UTF-8".into()));
    };
    if !text.trim_start().starts_with('{') {
        return Err(problem(
            "expected a JSON object keyed by MAC (the hardware file's shape)".into(),
        ));
    }
    // A tab may separate JSON tokens but not YAML ones; valid JSON has none inside strings.
    load_str(&text.replace('\t', " "), Format::Yaml, name, profiles)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_inventories_load_like_the_hardware_file() {
        let body = br#"{
	"52:54:00:12:34:56": {"ipAddress": "10.0.0.5", "subnetMask": "255.255.255.0",
	  "hostname": "n1", "leaseTime": 600, "netboot": {"allowPxe": true}},
	"02:00:00:00:00:02": {"ipAddress": "10.0.0.6", "subnetMask": "255.255.255.0", "netboot": {"allowPxe": false}},
	"02:00:00:00:00:03": {"ipAddress": "10.0.0.300", "subnetMask": "255.255.255.0"}
}"#;
        let loaded = load(body, "http://cmdb/inventory.json", &Profiles::new()).unwrap();
        assert_eq!(
            (loaded.inventory.len(), loaded.inventory.netboot_count()),
            (2, 1)
        );
        let m = loaded
            .inventory
            .by_mac("52:54:00:12:34:56".parse().unwrap())
            .unwrap();
        assert_eq!((m.hostname.as_deref(), m.lease_time), (Some("n1"), 600));
        assert_eq!(loaded.refused, 1);
        let e = loaded.errors[0].to_string();
        assert!(
            e.starts_with("http://cmdb/inventory.json:5: 02:00:00:00:00:03: ipAddress"),
            "{e}"
        );
        for (bad, says) in [
            (&b"{\"a\": "[..], "not JSON"),
            (b"[1, 2]", "expected a JSON object"),
            (b"\"x\"", "expected a JSON object"),
        ] {
            let err = load(bad, "u", &Profiles::new()).unwrap_err();
            assert!(err[0].message.contains(says), "{err:?}");
        }
        assert_eq!(
            load(b"{}", "u", &Profiles::new()).unwrap().inventory.len(),
            0
        );
    }
}
