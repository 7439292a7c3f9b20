//! The asset cache's settings: upstream mirrors by path prefix (`--assets-upstream` for every
//! path, `[[upstream]]` tables of the config file for more), where the cache lives, how large
//! it may grow and when a cached file is asked about again; and Smee's patched ISO.

use std::path::PathBuf;
use std::time::Duration;

use crate::inventory::doc::{normalize_key, Node, Value};
use crate::value;

/// The most `[[upstream]]` tables.
pub const MAX_UPSTREAMS: usize = 64;

/// One upstream mirror: asset paths starting with `prefix` are fetched from `url` followed by
/// the rest of the path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Upstream {
    /// Empty, or a relative path ending with `/` (`debian/`).
    pub prefix: String,
    /// `http(s)://host[:port]/path/`, always ending with `/`.
    pub url: String,
    /// A `sha256sums` file below `url` (`SHA256SUMS`, `images/SHA256SUMS`): every file
    /// fetched from this upstream must be listed in it with the digest it arrives with. Its
    /// names are relative to its own directory.
    pub sha256sums: Option<String>,
}

/// A SHA-256 digest.
pub type Sha256 = [u8; 32];

/// The pull-through cache, when at least one upstream is set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AssetCacheSettings {
    /// Longest prefix first.
    pub upstreams: Vec<Upstream>,
    pub dir: PathBuf,
    /// Bytes; 0: no limit.
    pub max_bytes: u64,
    /// Files older than this are revalidated with their upstream (names carrying a version or
    /// a hash never are); `None`: never.
    pub ttl: Option<Duration>,
    /// Digests pinned in boot profiles (`sha256` tables), by asset path.
    pub pinned: Vec<(String, Sha256)>,
}

/// Smee's ISO service (`--iso-enabled`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IsoSettings {
    pub url: String,
    pub magic: String,
    pub static_ipam: bool,
}

/// Hook's magic string, which Smee looks for when `--iso-magic-string` is not set (1,024
/// characters reserved in HookOS's kernel command line).
pub const HOOK_MAGIC: &str = "464vn90e7rbj08xbwdjejmdf4it17c5zfzjyfhthbh19eij201hjgit021bmpdb9ctrc87x2ymc8e7icu4ffi15x1hah9iyaiz38ckyap8hwx2vt5rm44ixv4hau8iw718q5yd019um5dt2xpqqa2rjtdypzr5v1gun8un110hhwp8cex7pqrh2ivh0ynpm4zkkwc8wcn367zyethzy7q8hzudyeyzx3cgmxqbkh825gcak7kxzjbgjajwizryv7ec1xm2h0hh7pz29qmvtgfjj1vphpgq1zcbiiehv52wrjy9yq473d9t1rvryy6929nk435hfx55du3ih05kn5tju3vijreru1p6knc988d4gfdz28eragvryq5x8aibe5trxd0t6t7jwxkde34v6pj1khmp50k6qqj3nzgcfzabtgqkmeqhdedbvwf3byfdma4nkv3rcxugaj2d0ru30pa2fqadjqrtjnv8bu52xzxv7irbhyvygygxu1nt5z4fh9w1vwbdcmagep26d298zknykf2e88kumt59ab7nq79d8amnhhvbexgh48e8qc61vq2e9qkihzt1twk1ijfgw70nwizai15iqyted2dt9gfmf2gg7amzufre79hwqkddc1cd935ywacnkrnak6r7xzcz7zbmq3kt04u2hg1iuupid8rt4nyrju51e6uejb2ruu36g9aibmz3hnmvazptu8x5tyxk820g2cdpxjdij766bt2n3djur7v623a2v44juyfgz80ekgfb9hkibpxh3zgknw8a34t4jifhf116x15cei9hwch0fye3xyq0acuym8uhitu5evc4rag3ui0fny3qg4kju7zkfyy8hwh537urd5uixkzwu5bdvafz4jmv7imypj543xg5em8jk8cgk7c4504xdd5e4e71ihaumt6u5u2t1w7um92fepzae8p0vq93wdrd1756npu1pziiur1payc7kmdwyxg3hj5n4phxbc29x0tcddamjrwt260b0w";

/// An upstream URL: http or https, normalized to end with `/`.
pub fn upstream_url(text: &str) -> Result<String, String> {
    let url = value::url(text, &["http", "https"])?;
    Ok(if url.ends_with('/') { url } else { url + "/" })
}

/// A prefix: empty, or relative path segments without `.`/`..`, normalized to end with `/`.
pub fn prefix(text: &str) -> Result<String, String> {
    let trimmed = text.trim_matches('/');
    if trimmed.is_empty() {
        return Ok(String::new());
    }
    let bad = trimmed
        .split('/')
        .any(|s| s.is_empty() || s == "." || s == ".." || s.contains('\\'))
        || trimmed.chars().any(|c| c.is_whitespace() || c.is_control());
    if bad {
        return Err("expected a relative path such as debian/ (no . or .. segments)".into());
    }
    Ok(format!("{trimmed}/"))
}

/// A SHA-256 digest written as 64 hex digits.
pub fn sha256(text: &str) -> Result<Sha256, String> {
    let t = text.trim().as_bytes();
    let digit = |c: u8| (c as char).to_digit(16);
    let mut out = [0u8; 32];
    if t.len() != 64 {
        return Err("expected a SHA-256 digest: 64 hex digits".into());
    }
    for (i, pair) in t.chunks(2).enumerate() {
        match (digit(pair[0]), digit(pair[1])) {
            (Some(hi), Some(lo)) => out[i] = (hi * 16 + lo) as u8,
            _ => return Err("expected a SHA-256 digest: 64 hex digits".into()),
        }
    }
    Ok(out)
}

/// A digest as 64 lowercase hex digits.
pub fn sha256_hex(digest: &Sha256) -> String {
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Bytes, with an optional K, M, G or T suffix (powers of 1024).
pub fn byte_size(text: &str) -> Result<u64, String> {
    const BAD: &str = "expected a size in bytes such as 500M, 20G or 1048576";
    let t = text.trim();
    let (digits, shift) = match t.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let shift = match c.to_ascii_uppercase() {
                'K' => 10,
                'M' => 20,
                'G' => 30,
                'T' => 40,
                _ => return Err(BAD.into()),
            };
            (&t[..i], shift)
        }
        _ => (t, 0),
    };
    let n: u64 = digits.parse().map_err(|_| BAD)?;
    n.checked_mul(1 << shift).ok_or_else(|| BAD.into())
}

/// One `[[upstream]]` table: `prefix` (default: every path), `url` and `sha256sums`.
pub fn parse_upstream(
    node: &Node,
    at: &dyn Fn(usize, &str, String) -> String,
) -> Result<Upstream, Vec<String>> {
    let Value::Map(entries) = &node.value else {
        return Err(vec![at(node.line, "", "expected a table".into())]);
    };
    let (mut errors, mut upstream_prefix, mut url) = (Vec::new(), String::new(), None);
    let mut sums = None;
    for entry in entries {
        let line = entry.value.line;
        let texts = super::file::texts_of(&entry.value.value);
        let one = texts.first().copied().unwrap_or("");
        let key = entry.key.as_str();
        let result = match normalize_key(key).as_str() {
            "prefix" => prefix(one).map(|p| upstream_prefix = p),
            "url" => upstream_url(one).map(|u| url = Some(u)),
            "sha256sums" => prefix(one).and_then(|p| match p.trim_end_matches('/') {
                "" => Err("expected the sums file's path below url, e.g. SHA256SUMS".into()),
                path => {
                    sums = Some(path.to_string());
                    Ok(())
                }
            }),
            _ => Err("unknown key (prefix, url, sha256sums)".into()),
        };
        if let Err(why) = result {
            errors.push(at(line, key, why));
        }
    }
    match url {
        Some(url) if errors.is_empty() => Ok(Upstream {
            prefix: upstream_prefix,
            url,
            sha256sums: sums,
        }),
        None => {
            errors.push(at(node.line, "url", "missing".into()));
            Err(errors)
        }
        Some(_) => Err(errors),
    }
}

/// Orders upstreams longest prefix first; two with the same prefix are an error.
pub fn order_upstreams(mut upstreams: Vec<Upstream>) -> Result<Vec<Upstream>, String> {
    if upstreams.len() > MAX_UPSTREAMS {
        return Err(format!("more than {MAX_UPSTREAMS} upstreams"));
    }
    crate::value::sort_by(&mut upstreams, |a, b| {
        b.prefix
            .len()
            .cmp(&a.prefix.len())
            .then(a.prefix.cmp(&b.prefix))
    });
    if let Some(w) = upstreams.windows(2).find(|w| w[0].prefix == w[1].prefix) {
        return Err(format!(
            "two upstreams for the prefix {:?} ({} and {})",
            w[0].prefix, w[0].url, w[1].url
        ));
    }
    Ok(upstreams)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_prefixes_and_urls() {
        assert_eq!(byte_size("0"), Ok(0));
        assert_eq!(byte_size("500M"), Ok(500 << 20));
        assert_eq!(byte_size("2g"), Ok(2 << 30));
        assert!(byte_size("5X").is_err());
        assert!(byte_size("").is_err());
        assert!(byte_size("99999999999T").is_err());
        assert_eq!(prefix("/debian"), Ok("debian/".into()));
        assert_eq!(prefix(""), Ok(String::new()));
        assert!(prefix("a/../b").is_err());
        assert!(prefix("a//b").is_err());
        assert_eq!(
            upstream_url("http://m:8080/d"),
            Ok("http://m:8080/d/".into())
        );
        assert!(upstream_url("ftp://m/").is_err());
        let digest = sha256(&"0f".repeat(32)).unwrap();
        assert_eq!(digest, [0x0f; 32]);
        assert_eq!(sha256_hex(&digest), "0f".repeat(32));
        assert!(sha256(&"0g".repeat(32)).is_err());
        assert!(sha256("abc").is_err());
    }

    #[test]
    fn upstreams_go_longest_prefix_first_and_once_each() {
        let up = |p: &str| Upstream {
            prefix: p.into(),
            url: format!("http://{}.example/", p.len()),
            sha256sums: None,
        };
        let ordered = order_upstreams(vec![up(""), up("debian/"), up("debian/12/")]).unwrap();
        let prefixes: Vec<_> = ordered.iter().map(|u| u.prefix.as_str()).collect();
        assert_eq!(prefixes, ["debian/12/", "debian/", ""]);
        assert!(order_upstreams(vec![up("a/"), up("a/")]).is_err());
    }
}
