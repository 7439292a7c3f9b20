//! The answer to one HTTP request, decided without I/O, in the manner of quinn-proto's
//! `Endpoint::handle` returning an event: [`respond`] turns a parsed request head, the peer's
//! address, the configuration and the inventory into a [`Plan`] (status, headers, body and
//! what the access log says). A file body is named, not opened: the service opens it with
//! [`crate::io::files::open_served`] and asks [`plan_file`] for the status and headers of
//! what it found (whole, one range, or 416), or [`plan_refusal`] when the open was refused.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use super::{client_ip, route, script_for, Route, ScriptSettings};
use crate::config::Config;
use crate::inventory::{Inventory, Machine};
use crate::policy::served::{Links, Refusal};
use crate::wire::http::{
    http_date, parse_range, reason, HeadError, Method, RangeRequest, RequestHead,
};

/// What the body of a planned response is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Body {
    /// Bytes decided here: a script, an error's text.
    Bytes(Vec<u8>),
    /// A file to open below `root` (never opened here).
    File {
        root: PathBuf,
        relative: String,
        links: Links,
    },
    /// An asset: from `--assets-dir`, else the asset cache (never opened here).
    Asset { relative: String },
    /// The `--iso-url` image with its marker replaced by `patch` (padded with spaces).
    Iso { patch: String },
    /// `/healthcheck`: the service fills it in from its own state.
    Health,
    /// `/metrics`: the service renders the registry.
    Metrics,
    /// `/unknown`: the service renders the pools' discovery list and leases.
    Unknown,
}

/// A response, decided.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    pub status: u16,
    /// Besides Content-Length, Server and Connection, which the head always carries.
    pub headers: Vec<(&'static str, String)>,
    pub body: Body,
    /// HEAD: the head only, with the length the body would have.
    pub head_only: bool,
    pub keep_alive: bool,
    /// The metrics label of the route.
    pub route: &'static str,
    /// The machine, for the access log.
    pub mac: Option<String>,
    /// Extra words for the access log (the script kind, why a 404).
    pub note: String,
}

impl Plan {
    fn text(status: u16, content_type: &str, body: String) -> Plan {
        Plan {
            status,
            headers: vec![("Content-Type", content_type.to_string())],
            body: Body::Bytes(body.into_bytes()),
            head_only: false,
            keep_alive: false,
            route: "other",
            mac: None,
            note: String::new(),
        }
    }

    /// A status with its reason phrase as a text body.
    pub fn status(status: u16, note: impl Into<String>) -> Plan {
        let mut plan = Plan::text(status, "text/plain", format!("{}\n", reason(status)));
        plan.note = note.into();
        plan
    }
}

/// The answer to a request whose head was read (`Err`: it did not parse).
pub fn respond(
    head: &Result<RequestHead, HeadError>,
    peer: IpAddr,
    cfg: &Config,
    inventory: &Inventory,
) -> Plan {
    let head = match head {
        Ok(head) => head,
        Err(e @ HeadError::TooManyHeaders) => return Plan::status(431, e.to_string()),
        Err(e) => return Plan::status(400, e.to_string()),
    };
    if head.has_body() {
        return Plan::status(413, "request with a body");
    }
    if let Method::Other(m) = &head.method {
        let mut plan = Plan::status(405, format!("method {m}"));
        plan.headers.push(("Allow", "GET, HEAD".into()));
        return plan;
    }
    let route = route(head.path());
    let mut plan = answer(&route, head, peer, cfg, inventory);
    plan.route = route.label();
    plan.keep_alive = head.keep_alive();
    plan.head_only = head.method == Method::Head;
    if plan.status >= 400 && plan.note.is_empty() {
        plan.note = "refused".into();
    }
    plan
}

fn answer(
    route: &Route,
    head: &RequestHead,
    peer: IpAddr,
    cfg: &Config,
    inventory: &Inventory,
) -> Plan {
    let file = |root: &Option<PathBuf>, relative: &str, links, missing: &str| match root {
        Some(root) => Plan {
            body: Body::File {
                root: root.clone(),
                relative: relative.to_string(),
                links,
            },
            ..Plan::status(200, "")
        },
        None => Plan::status(404, missing),
    };
    match route {
        Route::ScriptByIp | Route::ScriptByMac(_) if !cfg.http.ipxe_script_enabled => {
            Plan::status(404, "scripts are off")
        }
        Route::ScriptByIp => {
            let forwarded: Vec<&str> = head.headers_named("x-forwarded-for").collect();
            let ip = client_ip(peer, &forwarded, &cfg.http.trusted_proxies);
            let machine = match ip {
                IpAddr::V4(v4) => inventory.by_ip(v4),
                IpAddr::V6(_) => None,
            };
            let mut plan = script(cfg, machine, head.header("host"), inventory.is_pending());
            if plan.mac.is_none() {
                plan.note = format!("{} (client {ip})", plan.note);
            }
            plan
        }
        Route::ScriptByMac(mac) => {
            let machine = inventory.by_mac(*mac);
            let mut plan = script(cfg, machine, head.header("host"), inventory.is_pending());
            plan.mac.get_or_insert_with(|| mac.to_string());
            plan
        }
        Route::GrubConfig(_) if !cfg.http.ipxe_script_enabled => {
            Plan::status(404, "scripts are off")
        }
        Route::GrubConfig(mac) => {
            let forwarded: Vec<&str> = head.headers_named("x-forwarded-for").collect();
            let machine = match (mac, client_ip(peer, &forwarded, &cfg.http.trusted_proxies)) {
                (Some(mac), _) => inventory.by_mac(*mac),
                (None, IpAddr::V4(v4)) => inventory.by_ip(v4),
                (None, IpAddr::V6(_)) => None,
            };
            let authority = authority(cfg, head.header("host"));
            // The TFTP server GRUB fetches assets from: netbootd's, else the host asked.
            let tftp_ip = Some(cfg.dhcp.tftp_ip)
                .filter(|ip| !ip.is_unspecified())
                .or_else(|| authority.split(':').next()?.parse().ok())
                .unwrap_or(cfg.dhcp.tftp_ip);
            let settings = ScriptSettings {
                http: &cfg.http,
                syslog_host: &cfg.dhcp.syslog_host,
                base_url: format!("http://{authority}"),
            };
            let mut plan = match super::grub_answer(*mac, machine, &settings, tftp_ip) {
                Ok(text) => {
                    let mut plan = Plan::text(200, "text/plain; charset=utf-8", text);
                    plan.note = "grub.cfg".into();
                    plan
                }
                Err(why) => Plan::status(404, why.describe()),
            };
            plan.mac = machine.map(|m| m.mac).or(*mac).map(|m| m.to_string());
            plan
        }
        Route::IpxeBinary(_) if !cfg.http.ipxe_binary_enabled => {
            Plan::status(404, "iPXE binaries are off")
        }
        Route::IpxeBinary(name) => {
            file(&cfg.ipxe_dir, name, Links::TopLevelTrusted, "no --ipxe-dir")
        }
        Route::Asset(_) if cfg.assets_dir.is_none() && cfg.asset_cache.upstreams.is_empty() => {
            Plan::status(404, "no --assets-dir or --assets-upstream")
        }
        Route::Asset(path) => Plan {
            body: Body::Asset {
                relative: path.clone(),
            },
            ..Plan::status(200, "")
        },
        Route::Iso(_) if cfg.iso.is_none() => Plan::status(404, "the ISO service is off"),
        Route::Iso(None) => Plan::status(400, "no MAC before the ISO's name"),
        Route::Iso(Some(mac)) => iso(cfg, inventory, *mac),
        Route::Health => Plan {
            body: Body::Health,
            ..Plan::text(200, "application/json", String::new())
        },
        Route::Metrics => Plan {
            body: Body::Metrics,
            ..Plan::text(
                200,
                "text/plain; version=0.0.4; charset=utf-8",
                String::new(),
            )
        },
        Route::UnknownScript if !cfg.http.ipxe_script_enabled => {
            Plan::status(404, "scripts are off")
        }
        Route::UnknownScript => {
            let forwarded: Vec<&str> = head.headers_named("x-forwarded-for").collect();
            let ip = client_ip(peer, &forwarded, &cfg.http.trusted_proxies);
            let settings = ScriptSettings {
                http: &cfg.http,
                syslog_host: &cfg.dhcp.syslog_host,
                base_url: format!("http://{}", authority(cfg, head.header("host"))),
            };
            match super::pool_script(&cfg.pools, ip, &settings) {
                Ok((kind, text)) => {
                    let mut plan = Plan::text(200, "text/plain; charset=utf-8", text);
                    plan.note = format!("script {} (client {ip})", kind.label());
                    plan
                }
                Err(_) if cfg.pools.is_empty() => Plan::status(404, "no [[pool]] tables"),
                Err(why) => Plan::status(404, why.describe()),
            }
        }
        Route::Unknown => Plan {
            body: Body::Unknown,
            ..Plan::text(200, "application/json", String::new())
        },
        Route::NotFound(why) => Plan::status(404, *why),
    }
}

/// Smee's ISO for a known machine: its kernel arguments over the marker.
fn iso(cfg: &Config, inventory: &Inventory, mac: crate::wire::MacAddr) -> Plan {
    let Some(iso) = &cfg.iso else {
        return Plan::status(404, "the ISO service is off");
    };
    let Some(machine) = inventory.by_mac(mac) else {
        let mut plan = Plan::status(404, "unknown machine");
        plan.mac = Some(mac.to_string());
        return plan;
    };
    let patch = crate::policy::assets::iso_patch(cfg, iso, machine);
    let mut plan = match crate::policy::assets::patch_fits(&patch, &iso.magic) {
        Ok(()) => Plan {
            body: Body::Iso { patch },
            ..Plan::status(200, "")
        },
        Err(why) => Plan::status(500, why),
    };
    plan.mac = Some(mac.to_string());
    plan
}

/// `pending`: the inventory stands in for a remote source with no usable snapshot, so a
/// machine not found is not known to be unknown (no static script for it).
fn script(cfg: &Config, machine: Option<&Machine>, host: Option<&str>, pending: bool) -> Plan {
    if machine.is_none() && pending {
        return Plan::status(
            404,
            "not found, and the remote inventory has no usable snapshot",
        );
    }
    let settings = ScriptSettings {
        http: &cfg.http,
        syslog_host: &cfg.dhcp.syslog_host,
        base_url: format!("http://{}", authority(cfg, host)),
    };
    let mut plan = match script_for(machine, &settings) {
        Ok((kind, text)) => {
            let mut plan = Plan::text(200, "text/plain; charset=utf-8", text);
            plan.note = format!("script {}", kind.label());
            plan
        }
        Err(why) => Plan::status(404, why.describe()),
    };
    plan.mac = machine.map(|m| m.mac.to_string());
    plan
}

/// host[:port] for URLs in scripts: the request's `Host` when it is a plain host name or
/// address (the client reached us by it), else the listening address (the DHCP server
/// address when listening on all addresses).
pub fn authority(cfg: &Config, host: Option<&str>) -> String {
    let plain = |h: &str| {
        !h.is_empty()
            && h.len() <= 255
            && h.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b".-:[]_".contains(&b))
    };
    match host {
        Some(h) if plain(h) => h.to_string(),
        _ => {
            let ip = if cfg.http.addr.is_unspecified() {
                cfg.dhcp.ip_for_packet
            } else {
                cfg.http.addr
            };
            format!("{ip}:{}", cfg.http.port)
        }
    }
}

/// The Content-Type of a served file, by its real name.
pub fn content_type(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()) {
        Some("ipxe") | Some("txt") | Some("cfg") => "text/plain; charset=utf-8",
        Some("json") => "application/json",
        Some("iso") => "application/x-iso9660-image",
        _ => "application/octet-stream",
    }
}

/// A file was opened for `plan`: sets the status and headers for `size` bytes (whole, or the
/// one range `range` asks for) and returns (offset, length) to send; `None` when the range
/// cannot be satisfied (the plan is then a 416 with its own body).
pub fn plan_file(
    plan: &mut Plan,
    size: u64,
    modified: Option<u64>,
    real: &Path,
    range: Option<&str>,
) -> Option<(u64, u64)> {
    let (status, offset, len) = match parse_range(range, size) {
        RangeRequest::Full => (200, 0, size),
        RangeRequest::Partial { start, end } => (206, start, end - start + 1),
        RangeRequest::Unsatisfiable => {
            let mut refused = Plan::status(416, "range not satisfiable");
            refused
                .headers
                .push(("Content-Range", format!("bytes */{size}")));
            adopt(plan, refused);
            return None;
        }
    };
    plan.status = status;
    plan.headers = vec![
        ("Content-Type", content_type(real).to_string()),
        ("Accept-Ranges", "bytes".to_string()),
    ];
    if let Some(m) = modified {
        plan.headers.push(("Last-Modified", http_date(m)));
    }
    if status == 206 {
        plan.headers.push((
            "Content-Range",
            format!("bytes {offset}-{}/{size}", offset + len - 1),
        ));
    }
    plan.note = real.display().to_string();
    Some((offset, len))
}

/// The open of the plan's file was refused: a 404 saying why (in the log only).
pub fn plan_refusal(plan: &mut Plan, refusal: &Refusal) {
    let (status, note) = refusal.http_status();
    adopt(plan, Plan::status(status, note));
}

/// Takes `other`'s answer, keeping what the request decided (route, keep-alive, HEAD).
fn adopt(plan: &mut Plan, other: Plan) {
    *plan = Plan {
        route: plan.route,
        keep_alive: plan.keep_alive,
        head_only: plan.head_only,
        mac: plan.mac.take(),
        ..other
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::{load_str, Format, Profiles};

    fn inventory() -> Inventory {
        let text = "02:77:00:00:00:50:\n  ipAddress: 127.0.0.1\n  subnetMask: 255.0.0.0\n  netboot:\n    allowPxe: true\n    ipxeScript: \"echo hi\"\n";
        load_str(text, Format::Yaml, "hw.yaml", &Profiles::new())
            .unwrap()
            .inventory
    }

    fn config() -> Config {
        let mut c = crate::config::tests::loopback_config();
        c.assets_dir = Some(PathBuf::from("/srv/assets"));
        c.ipxe_dir = Some(PathBuf::from("/usr/lib/ipxe"));
        c
    }

    fn plan(raw: &str) -> Plan {
        let head = RequestHead::parse(raw.as_bytes());
        respond(&head, "127.0.0.1".parse().unwrap(), &config(), &inventory())
    }

    #[test]
    fn malformed_heads_bodies_and_methods_are_refused_and_close() {
        let p = plan("GET /x\r\n\r\n");
        assert_eq!((p.status, p.keep_alive), (400, false));
        let p = plan("POST /auto.ipxe HTTP/1.1\r\nContent-Length: 3\r\n\r\n");
        assert_eq!((p.status, p.note.as_str()), (413, "request with a body"));
        let p = plan("PUT /auto.ipxe HTTP/1.1\r\n\r\n");
        assert_eq!(p.status, 405);
        assert!(p.headers.contains(&("Allow", "GET, HEAD".to_string())));
        let many: String = (0..70).map(|i| format!("X-{i}: y\r\n")).collect();
        assert_eq!(plan(&format!("GET / HTTP/1.1\r\n{many}\r\n")).status, 431);
    }

    #[test]
    fn scripts_by_address_and_mac_name_the_machine() {
        let p = plan("GET /auto.ipxe HTTP/1.1\r\nHost: boot.example\r\n\r\n");
        assert_eq!((p.status, p.route, p.keep_alive), (200, "script", true));
        assert_eq!(p.body, Body::Bytes(b"#!ipxe\n\necho hi\n".to_vec()));
        assert_eq!(p.mac.as_deref(), Some("02:77:00:00:00:50"));
        assert_eq!(p.note, "script inline");
        let p = plan("GET /02-77-00-00-00-99/auto.ipxe HTTP/1.0\r\n\r\n");
        assert_eq!((p.status, p.keep_alive), (404, false));
        assert_eq!(p.mac.as_deref(), Some("02:77:00:00:00:99"));
    }

    #[test]
    fn files_are_named_with_their_root_and_symlink_rule_never_opened() {
        let p = plan("HEAD /ipxe/02:77:00:00:00:50/ipxe.efi HTTP/1.1\r\n\r\n");
        assert!(p.head_only);
        assert_eq!(
            p.body,
            Body::File {
                root: "/usr/lib/ipxe".into(),
                relative: "ipxe.efi".into(),
                links: Links::TopLevelTrusted
            }
        );
        let p = plan("GET /assets/boot/vmlinuz HTTP/1.1\r\n\r\n");
        assert_eq!(
            p.body,
            Body::Asset {
                relative: "boot/vmlinuz".into(),
            }
        );
        assert_eq!(plan("GET /assets/../etc HTTP/1.1\r\n\r\n").status, 404);
        assert_eq!(plan("GET /healthcheck HTTP/1.1\r\n\r\n").body, Body::Health);
        assert_eq!(plan("GET /metrics HTTP/1.1\r\n\r\n").body, Body::Metrics);
    }

    #[test]
    fn ranges_give_206_416_or_the_whole_file() {
        let mut p = plan("GET /assets/f.iso HTTP/1.1\r\n\r\n");
        let real = Path::new("/srv/assets/f.iso");
        assert_eq!(plan_file(&mut p, 100, Some(0), real, None), Some((0, 100)));
        assert_eq!(p.status, 200);
        assert!(p
            .headers
            .contains(&("Content-Type", "application/x-iso9660-image".into())));
        assert!(p
            .headers
            .contains(&("Last-Modified", "Thu, 01 Jan 1970 00:00:00 GMT".into())));
        let mut p = plan("GET /assets/f HTTP/1.1\r\n\r\n");
        assert_eq!(
            plan_file(&mut p, 100, None, real, Some("bytes=10-19")),
            Some((10, 10))
        );
        assert_eq!(p.status, 206);
        assert!(p
            .headers
            .contains(&("Content-Range", "bytes 10-19/100".into())));
        let mut p = plan("GET /assets/f HTTP/1.1\r\n\r\n");
        assert_eq!(plan_file(&mut p, 100, None, real, Some("bytes=200-")), None);
        assert_eq!((p.status, p.keep_alive, p.route), (416, true, "assets"));
        assert!(p.headers.contains(&("Content-Range", "bytes */100".into())));
        let mut p = plan("GET /assets/f HTTP/1.1\r\n\r\n");
        plan_refusal(&mut p, &Refusal::Outside);
        assert_eq!(
            (p.status, p.note.as_str()),
            (404, "refused: leads outside the served directory")
        );
    }

    #[test]
    fn script_urls_use_a_plain_host_header_or_the_listening_address() {
        let cfg = config();
        assert_eq!(authority(&cfg, Some("10.0.0.1:8080")), "10.0.0.1:8080");
        assert_eq!(authority(&cfg, Some("evil host")), "127.0.0.1:8080");
        assert_eq!(authority(&cfg, None), "127.0.0.1:8080");
        assert_eq!(
            content_type(Path::new("a/boot.ipxe")),
            "text/plain; charset=utf-8"
        );
        assert_eq!(
            content_type(Path::new("vmlinuz")),
            "application/octet-stream"
        );
    }
}
