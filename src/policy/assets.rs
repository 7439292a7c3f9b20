//! Decisions of the asset cache, without I/O: which upstream serves a path and at what URL,
//! whether a cached file is asked about again, which files an over-full cache gives up, what
//! a cached file's side record says, and Smee's per-machine ISO patch (the kernel arguments
//! and where they go in a range of the ISO).

use std::time::Duration;

use crate::config::assets::{self, AssetCacheSettings, IsoSettings, Sha256, Upstream};
use crate::config::Config;
use crate::inventory::Machine;
use crate::wire::http::percent_encode;

/// The upstream for `relative` (the longest matching prefix) and the URL to fetch.
pub fn upstream_for<'a>(
    upstreams: &'a [Upstream],
    relative: &str,
) -> Option<(&'a Upstream, String)> {
    let upstream = upstreams.iter().find(|u| relative.starts_with(&u.prefix))?;
    let rest = &relative[upstream.prefix.len()..];
    if rest.is_empty() {
        return None;
    }
    let encoded: Vec<String> = rest.split('/').map(percent_encode).collect();
    Some((upstream, format!("{}{}", upstream.url, encoded.join("/"))))
}

/// Where the SHA-256 a fetched file must have comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expected {
    /// A boot profile pins it.
    Pinned(Sha256),
    /// The upstream's `sha256sums` file lists it under `name`; `None`: the file lies outside
    /// the sums file's directory, so it cannot be listed.
    Listed {
        sums_url: String,
        name: Option<String>,
    },
}

/// The digest `relative` must arrive with: pinned in a profile first, else the upstream's
/// sums file when it names one; `None`: not checked.
pub fn expected_digest(settings: &AssetCacheSettings, relative: &str) -> Option<Expected> {
    if let Some((_, d)) = settings.pinned.iter().find(|(p, _)| p == relative) {
        return Some(Expected::Pinned(*d));
    }
    let (upstream, _) = upstream_for(&settings.upstreams, relative)?;
    let sums = upstream.sha256sums.as_deref()?;
    let rest = &relative[upstream.prefix.len()..];
    let dir = sums.rsplit_once('/').map_or("", |(d, _)| d);
    let name = match dir {
        "" => Some(rest),
        d => rest.strip_prefix(d).and_then(|r| r.strip_prefix('/')),
    };
    Some(Expected::Listed {
        sums_url: format!("{}{sums}", upstream.url),
        name: name.map(str::to_string),
    })
}

/// `name`'s digest in a sums file in `sha256sum`'s format (`<hex>  name` or `<hex> *name`,
/// names with or without `./`).
pub fn listed_digest(sums: &str, name: &str) -> Result<Sha256, String> {
    for line in sums.lines() {
        let Some((hex, listed)) = line.trim_end().split_once(' ') else {
            continue;
        };
        let listed = listed.strip_prefix([' ', '*']).unwrap_or(listed);
        if listed.strip_prefix("./").unwrap_or(listed) == name {
            return assets::sha256(hex).map_err(|why| format!("its line for {name}: {why}"));
        }
    }
    Err(format!("{name} is not listed in it"))
}

/// Where the `--iso-url` image is cached: `iso/` and the URL's last path segment (no
/// client path reaches it through `/assets/` unless an upstream serves `iso/`).
pub fn iso_key(url: &str) -> String {
    let path = url.split(['?', '#']).next().unwrap_or(url);
    let name: String = path
        .rsplit('/')
        .next()
        .unwrap_or("")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    let name = name.trim_start_matches('.');
    format!(
        ".netbootd-iso/{}",
        if name.is_empty() { "source.iso" } else { name }
    )
}

/// Does the name carry a version (`6.1.0`, `v0.10`) or a hash (12 or more hex digits)? Such
/// a file never changes under its name, so it is never asked about again.
pub fn is_versioned(relative: &str) -> bool {
    let bytes = relative.as_bytes();
    let version = bytes
        .windows(3)
        .any(|w| w[0].is_ascii_digit() && w[1] == b'.' && w[2].is_ascii_digit());
    let hash = bytes
        .split(|b| !b.is_ascii_hexdigit())
        .any(|run| run.len() >= 12 && run.iter().any(u8::is_ascii_digit));
    version || hash
}

/// Is a cached file, fetched `age` ago, to be asked about again?
pub fn needs_revalidation(settings: &AssetCacheSettings, relative: &str, age: Duration) -> bool {
    match settings.ttl {
        Some(ttl) => age >= ttl && !is_versioned(relative),
        None => false,
    }
}

/// A cached file as eviction sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cached {
    pub relative: String,
    pub size: u64,
    /// Last use, seconds since the epoch.
    pub used: u64,
    pub in_use: bool,
}

/// The files to remove so the cache holds at most `max` bytes (0: no limit): the least
/// recently used first, never one being served. What cannot be freed stays over the limit.
pub fn to_evict(files: &[Cached], max: u64) -> Vec<String> {
    let mut total: u64 = files.iter().map(|f| f.size).sum();
    if max == 0 || total <= max {
        return Vec::new();
    }
    let mut order: Vec<&Cached> = files.iter().filter(|f| !f.in_use).collect();
    crate::value::sort_by(&mut order, |a, b| {
        a.used.cmp(&b.used).then(a.relative.cmp(&b.relative))
    });
    let mut out = Vec::new();
    for f in order {
        if total <= max {
            break;
        }
        total -= f.size;
        out.push(f.relative.clone());
    }
    out
}

/// What the cache keeps beside a file: its validators and when it was fetched.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Meta {
    pub etag: Option<String>,
    pub last_modified: Option<String>,
    /// Seconds since the epoch.
    pub fetched: u64,
    pub url: String,
    /// The file's digest, taken as it arrived.
    pub sha256: Option<Sha256>,
}

impl Meta {
    pub fn emit(&self) -> String {
        let mut out = format!("fetched {}\nurl {}\n", self.fetched, self.url);
        if let Some(e) = &self.etag {
            out.push_str(&format!("etag {e}\n"));
        }
        if let Some(l) = &self.last_modified {
            out.push_str(&format!("last-modified {l}\n"));
        }
        if let Some(d) = &self.sha256 {
            out.push_str(&format!("sha256 {}\n", assets::sha256_hex(d)));
        }
        out
    }

    /// Unknown or broken lines are skipped: a bad record only costs a revalidation.
    pub fn parse(text: &str) -> Meta {
        let mut meta = Meta::default();
        for line in text.lines() {
            let Some((key, value)) = line.split_once(' ') else {
                continue;
            };
            let value = value.trim();
            if value.is_empty() || value.len() > 1024 {
                continue;
            }
            match key {
                "fetched" => meta.fetched = value.parse().unwrap_or(0),
                "url" => meta.url = value.to_string(),
                "etag" => meta.etag = Some(value.to_string()),
                "last-modified" => meta.last_modified = Some(value.to_string()),
                "sha256" => meta.sha256 = assets::sha256(value).ok(),
                _ => {}
            }
        }
        meta
    }
}

/// The consoles Smee puts in an ISO's kernel arguments when the machine names none.
const DEFAULT_CONSOLES: &str =
    "console=ttyAMA0 console=ttyS0 console=tty0 console=tty1 console=ttyS1";

/// The kernel arguments written over the ISO's marker for `machine`, as Smee composes them:
/// extra kernel arguments, consoles (the facility), VLAN, hw_addr, syslog_host,
/// grpc_authority, tinkerbell_tls, worker_id, and with static IPAM the `ipam=` field.
pub fn iso_patch(cfg: &Config, iso: &IsoSettings, m: &Machine) -> String {
    let facility = m.netboot.facility.as_deref().unwrap_or("");
    let consoles = match facility {
        f if f.contains("console=") => format!("facility={f}"),
        "" => DEFAULT_CONSOLES.to_string(),
        f => format!("facility={f} {DEFAULT_CONSOLES}"),
    };
    let mac = m.mac.to_string();
    let vlan = m
        .vlan_id
        .map(|v| format!("vlan_id={v}"))
        .unwrap_or_default();
    let mut parts = vec![
        cfg.http.extra_kernel_args.clone(),
        consoles,
        vlan,
        format!("hw_addr={mac}"),
        format!("syslog_host={}", cfg.dhcp.syslog_host),
        format!(
            "grpc_authority={}",
            cfg.http.tink_server.as_deref().unwrap_or("")
        ),
        format!("tinkerbell_tls={}", cfg.http.tink_server_tls),
        format!("worker_id={mac}"),
    ];
    if iso.static_ipam {
        parts.push(ipam(m));
    }
    parts.join(" ")
}

/// Smee's `ipam=` field: mac-with-dashes:vlan:ip:mask:gateway:hostname:dns,..:search,..:ntp,..
fn ipam(m: &Machine) -> String {
    let opt = |ip: Option<std::net::Ipv4Addr>| ip.map(|i| i.to_string()).unwrap_or_default();
    let list = |ips: &[std::net::Ipv4Addr]| {
        ips.iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(",")
    };
    let fields = [
        m.mac.to_string().replace(':', "-"),
        m.vlan_id.map(|v| v.to_string()).unwrap_or_default(),
        opt(m.ip_address),
        opt(m.subnet_mask),
        opt(m.default_gateway),
        m.hostname.clone().unwrap_or_default(),
        list(&m.name_servers),
        m.domain_search.join(","),
        list(&m.ntp_servers),
    ];
    format!("ipam={}", fields.join(":"))
}

/// Why an ISO cannot be patched for a machine.
pub fn patch_fits(patch: &str, magic: &str) -> Result<(), String> {
    if patch.len() > magic.len() {
        return Err(format!(
            "the kernel arguments ({} bytes) are longer than the ISO's marker ({} bytes)",
            patch.len(),
            magic.len()
        ));
    }
    Ok(())
}

/// Overwrites, in `buf` (the ISO's bytes from `start`), every marker found at `markers`
/// (their offsets in the ISO) with `patch` padded with spaces to the marker's length, as Smee
/// does; parts of a marker outside `buf` are left to the neighbouring reads.
pub fn overlay(buf: &mut [u8], start: u64, markers: &[u64], marker_len: usize, patch: &[u8]) {
    let end = start + buf.len() as u64;
    for &at in markers {
        let marker_end = at + marker_len as u64;
        if marker_end <= start || at >= end {
            continue;
        }
        for pos in at.max(start)..marker_end.min(end) {
            let i = (pos - at) as usize;
            buf[(pos - start) as usize] = patch.get(i).copied().unwrap_or(b' ');
        }
    }
}

/// Offsets of `marker` in `data` (which starts at offset `start` of the file).
pub fn find_markers(data: &[u8], start: u64, marker: &[u8]) -> Vec<u64> {
    if marker.is_empty() || data.len() < marker.len() {
        return Vec::new();
    }
    let mut out = Vec::new();
    let mut i = 0;
    while i + marker.len() <= data.len() {
        if data[i] == marker[0] && &data[i..i + marker.len()] == marker {
            out.push(start + i as u64);
            i += marker.len();
        } else {
            i += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn up(prefix: &str, url: &str) -> Upstream {
        Upstream {
            prefix: prefix.into(),
            url: url.into(),
            sha256sums: None,
        }
    }

    #[test]
    fn a_digest_is_pinned_or_listed_in_the_upstreams_sums_file() {
        let sums = |p: &str, u: &str, file: &str| Upstream {
            sha256sums: Some(file.into()),
            ..up(p, u)
        };
        let settings = AssetCacheSettings {
            upstreams: vec![
                sums("debian/", "http://deb/d/", "images/SHA256SUMS"),
                up("", "http://all/"),
            ],
            dir: "/c".into(),
            max_bytes: 0,
            ttl: None,
            pinned: vec![("debian/images/linux".into(), [7; 32])],
        };
        let expected = |r: &str| expected_digest(&settings, r);
        assert_eq!(
            expected("debian/images/linux"),
            Some(Expected::Pinned([7; 32]))
        );
        assert_eq!(
            expected("debian/images/netboot/initrd.gz"),
            Some(Expected::Listed {
                sums_url: "http://deb/d/images/SHA256SUMS".into(),
                name: Some("netboot/initrd.gz".into()),
            })
        );
        assert_eq!(
            expected("debian/other/x"),
            Some(Expected::Listed {
                sums_url: "http://deb/d/images/SHA256SUMS".into(),
                name: None,
            })
        );
        assert_eq!(expected("hook/vmlinuz"), None);

        let a = "ab".repeat(32);
        let b = "cd".repeat(32);
        let text = format!("{a}  ./netboot/initrd.gz\n{b} *netboot/linux\nbroken\n");
        assert_eq!(listed_digest(&text, "netboot/initrd.gz"), Ok([0xab; 32]));
        assert_eq!(listed_digest(&text, "netboot/linux"), Ok([0xcd; 32]));
        assert!(listed_digest(&text, "netboot/other")
            .unwrap_err()
            .contains("not listed"));
        assert!(listed_digest("zz  x\n", "x").is_err());
    }

    #[test]
    fn the_longest_prefix_names_the_upstream_and_the_rest_is_encoded() {
        let ups = [up("debian/", "http://deb/d/"), up("", "http://all/")];
        let (u, url) = upstream_for(&ups, "debian/12/linux 1").unwrap();
        assert_eq!(
            (u.prefix.as_str(), url.as_str()),
            ("debian/", "http://deb/d/12/linux%201")
        );
        assert_eq!(
            upstream_for(&ups, "hook/vmlinuz").unwrap().1,
            "http://all/hook/vmlinuz"
        );
        assert!(upstream_for(&ups, "debian/").is_none());
        assert!(upstream_for(&ups[..1], "other/x").is_none());
    }

    #[test]
    fn versioned_names_are_never_revalidated() {
        for v in [
            "vmlinuz-6.1.0-18-amd64",
            "v0.10/initrd",
            "debian-12.5.0.iso",
            "a/0123456789abcdef/k",
        ] {
            assert!(is_versioned(v), "{v}");
        }
        for n in [
            "vmlinuz",
            "hook_x86_64.tar.gz",
            "initramfs-x86_64",
            "deadbeefcafe",
        ] {
            assert!(!is_versioned(n), "{n}");
        }
        let mut s = AssetCacheSettings {
            upstreams: vec![],
            dir: "/c".into(),
            max_bytes: 0,
            ttl: Some(Duration::from_secs(60)),
            pinned: Vec::new(),
        };
        assert!(needs_revalidation(&s, "vmlinuz", Duration::from_secs(61)));
        assert!(!needs_revalidation(&s, "vmlinuz", Duration::from_secs(59)));
        assert!(!needs_revalidation(
            &s,
            "vmlinuz-6.1.0",
            Duration::from_secs(1 << 30)
        ));
        s.ttl = None;
        assert!(!needs_revalidation(
            &s,
            "vmlinuz",
            Duration::from_secs(1 << 30)
        ));
    }

    #[test]
    fn eviction_takes_the_least_recently_used_never_one_in_use() {
        let f = |r: &str, size, used, in_use| Cached {
            relative: r.into(),
            size,
            used,
            in_use,
        };
        let files = [
            f("a", 40, 1, true),
            f("b", 40, 2, false),
            f("c", 40, 3, false),
        ];
        assert_eq!(to_evict(&files, 100), ["b"]);
        assert_eq!(to_evict(&files, 10), ["b", "c"]);
        assert!(to_evict(&files, 0).is_empty());
        assert!(to_evict(&files, 120).is_empty());
    }

    #[test]
    fn meta_round_trips_and_survives_garbage() {
        let m = Meta {
            etag: Some("\"abc\"".into()),
            last_modified: Some("Tue, 01 Dec 2026 10:00:00 GMT".into()),
            fetched: 42,
            url: "http://m/x".into(),
            sha256: Some([0x5a; 32]),
        };
        assert_eq!(Meta::parse(&m.emit()), m);
        assert_eq!(Meta::parse("junk\n\u{0}\nfetched x\n"), Meta::default());
    }

    #[test]
    fn the_patch_overwrites_markers_across_any_split_of_the_reads() {
        let marker = b"MAGICMAGICMAGIC!";
        let mut iso = vec![b'.'; 100];
        iso[10..26].copy_from_slice(marker);
        iso[70..86].copy_from_slice(marker);
        let markers = find_markers(&iso, 0, marker);
        assert_eq!(markers, [10, 70]);
        let mut want = iso.clone();
        want[10..26].copy_from_slice(b"a=1 b=2         ");
        want[70..86].copy_from_slice(b"a=1 b=2         ");
        for split in 0..100 {
            let mut got = iso.clone();
            let (left, right) = got.split_at_mut(split);
            overlay(left, 0, &markers, marker.len(), b"a=1 b=2");
            overlay(right, split as u64, &markers, marker.len(), b"a=1 b=2");
            assert_eq!(got, want, "split at {split}");
        }
        assert!(patch_fits("short", "a longer marker").is_ok());
        assert!(patch_fits("a longer patch", "short").is_err());
    }
}
