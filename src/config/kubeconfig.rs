//! How the Kubernetes backend reaches its API server, worked out as kubectl does: a kubeconfig
//! file (its current context's cluster and user), the in-cluster service account, or a bare
//! URL (`kubectl proxy`). Pure: the kubeconfig's text and the environment's values come in, a
//! [`KubeAccess`] goes out; the files it names (CA, client certificate and key, token) are
//! read by the service, the token file at every request (rotated tokens are picked up).

use std::path::{Path, PathBuf};

use crate::inventory::doc::{Node, Value};
use crate::inventory::yaml;
use crate::value;

/// The service account's files in a pod.
pub const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// A PEM document: a file to read, or the bytes a kubeconfig carries inline (`*-data`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Pem {
    File(PathBuf),
    Data(Vec<u8>),
}

/// The bearer token, if any: as written in the kubeconfig, or a file read at every request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Token {
    None,
    Text(String),
    File(PathBuf),
}

/// Everything needed to talk to the API server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KubeAccess {
    /// `https://host:port` or `http://host:port` (no trailing slash).
    pub server: String,
    /// Trusted CAs; `None`: the system's.
    pub ca: Option<Pem>,
    /// A client certificate and its key.
    pub client: Option<(Pem, Pem)>,
    pub token: Token,
    /// `insecure-skip-tls-verify`: the server's certificate is not checked.
    pub insecure: bool,
    /// Where this came from, for messages.
    pub origin: String,
}

/// The in-cluster service account (`KUBERNETES_SERVICE_HOST` and `_PORT` set).
pub fn in_cluster(host: &str, port: &str) -> KubeAccess {
    let dir = Path::new(SERVICE_ACCOUNT_DIR);
    let host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_string()
    };
    KubeAccess {
        server: format!("https://{host}:{port}"),
        ca: Some(Pem::File(dir.join("ca.crt"))),
        client: None,
        token: Token::File(dir.join("token")),
        insecure: false,
        origin: format!("the in-cluster service account ({SERVICE_ACCOUNT_DIR})"),
    }
}

/// A bare API URL with no credentials (`kubectl proxy`, or a server that needs none).
pub fn bare(server: &str) -> KubeAccess {
    KubeAccess {
        server: server.trim_end_matches('/').to_string(),
        ca: None,
        client: None,
        token: Token::None,
        insecure: false,
        origin: "--backend-kube-api without credentials".into(),
    }
}

fn map_get<'n>(node: &'n Node, key: &str) -> Option<&'n Node> {
    match &node.value {
        Value::Map(entries) => entries.iter().find(|e| e.key == key).map(|e| &e.value),
        _ => None,
    }
}

fn text<'n>(node: &'n Node, key: &str) -> Option<&'n str> {
    match map_get(node, key).map(|n| &n.value) {
        Some(Value::Text(t)) if !t.is_empty() => Some(t.as_str()),
        _ => None,
    }
}

/// The `key` body of the entry named `name` in the list `list` (`clusters`, `users`, ...).
fn named<'n>(root: &'n Node, list: &str, name: &str, key: &str) -> Result<&'n Node, String> {
    let items = match map_get(root, list).map(|n| &n.value) {
        Some(Value::List(items)) => items.as_slice(),
        _ => &[],
    };
    items
        .iter()
        .find(|item| text(item, "name") == Some(name))
        .and_then(|item| map_get(item, key))
        .ok_or_else(|| format!("no {list} entry named {name:?}"))
}

/// A PEM from `file_key` (relative to the kubeconfig's directory) or `data_key` (base64).
fn pem(node: &Node, file_key: &str, data_key: &str, dir: &Path) -> Result<Option<Pem>, String> {
    if let Some(data) = text(node, data_key) {
        let bytes = value::base64(data).map_err(|e| format!("{data_key}: {e}"))?;
        return Ok(Some(Pem::Data(bytes)));
    }
    Ok(text(node, file_key).map(|f| Pem::File(dir.join(f))))
}

/// The current context of the kubeconfig at `path` (whose text is `text`).
pub fn from_kubeconfig(text_: &str, path: &Path) -> Result<KubeAccess, String> {
    let at = |why: String| format!("kubeconfig {}: {why}", path.display());
    let root = yaml::parse(text_).map_err(|e| at(e.to_string()))?;
    let dir = path.parent().unwrap_or(Path::new("."));
    let context_name =
        text(&root, "current-context").ok_or_else(|| at("no current-context".into()))?;
    let context = named(&root, "contexts", context_name, "context").map_err(at)?;
    let cluster_name = text(context, "cluster")
        .ok_or_else(|| at(format!("context {context_name:?} names no cluster")))?;
    let cluster = named(&root, "clusters", cluster_name, "cluster").map_err(at)?;
    let server = text(cluster, "server")
        .ok_or_else(|| at(format!("cluster {cluster_name:?} has no server")))?;
    let insecure = text(cluster, "insecure-skip-tls-verify").is_some_and(|t| t == "true");
    let ca = pem(
        cluster,
        "certificate-authority",
        "certificate-authority-data",
        dir,
    )
    .map_err(at)?;
    let (mut client, mut token) = (None, Token::None);
    if let Some(user_name) = text(context, "user") {
        let user = named(&root, "users", user_name, "user").map_err(at)?;
        for unsupported in ["exec", "auth-provider"] {
            if map_get(user, unsupported).is_some_and(|n| n.value != Value::Null) {
                return Err(at(format!(
                    "user {user_name:?} authenticates with an {unsupported} plugin, which netbootd does not run: give it a token, tokenFile or client certificate (a service account token works)"
                )));
            }
        }
        if text(user, "username").is_some() || text(user, "password").is_some() {
            return Err(at(format!(
                "user {user_name:?} has a username and password (basic authentication), which the API server no longer accepts: use a token or a client certificate"
            )));
        }
        let cert = pem(user, "client-certificate", "client-certificate-data", dir).map_err(at)?;
        let key = pem(user, "client-key", "client-key-data", dir).map_err(at)?;
        client = match (cert, key) {
            (Some(c), Some(k)) => Some((c, k)),
            (None, None) => None,
            _ => {
                return Err(at(format!(
                    "user {user_name:?} has a client certificate or key without the other"
                )))
            }
        };
        token = match (text(user, "token"), text(user, "tokenFile")) {
            (Some(t), _) => Token::Text(t.trim().to_string()),
            (None, Some(f)) => Token::File(dir.join(f)),
            (None, None) => Token::None,
        };
    }
    let server = value::url(server, &["http", "https"]).map_err(|e| at(format!("server: {e}")))?;
    Ok(KubeAccess {
        server: server.trim_end_matches('/').to_string(),
        ca,
        client,
        token,
        insecure,
        origin: format!("kubeconfig {} (context {context_name})", path.display()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = "apiVersion: v1
kind: Config
current-context: lab
contexts:
- name: other
  context: {cluster: nowhere, user: nobody}
- name: lab
  context:
    cluster: lab-cluster
    user: lab-user
    namespace: tink-system
clusters:
- name: lab-cluster
  cluster:
    server: https://10.0.0.1:6443/
    certificate-authority-data: aGVsbG8=
users:
- name: lab-user
  user:
    client-certificate: certs/client.crt
    client-key: /abs/client.key
    tokenFile: token
";

    #[test]
    fn the_current_context_gives_server_ca_client_and_token() {
        let a = from_kubeconfig(CONFIG, Path::new("/etc/kube/config")).unwrap();
        assert_eq!(a.server, "https://10.0.0.1:6443");
        assert_eq!(a.ca, Some(Pem::Data(b"hello".to_vec())));
        assert_eq!(
            a.client,
            Some((
                Pem::File("/etc/kube/certs/client.crt".into()),
                Pem::File("/abs/client.key".into())
            ))
        );
        assert_eq!(a.token, Token::File("/etc/kube/token".into()));
        assert!(!a.insecure);
        assert!(a.origin.contains("context lab"), "{}", a.origin);
    }

    #[test]
    fn plugins_missing_entries_and_half_certificates_are_clear_errors() {
        let p = Path::new("/k");
        let exec = CONFIG.replace("    tokenFile: token\n", "    exec: {command: aws}\n");
        let e = from_kubeconfig(&exec, p).unwrap_err();
        assert!(e.contains("exec plugin"), "{e}");
        let e = from_kubeconfig(
            &CONFIG.replace("current-context: lab", "current-context: x"),
            p,
        )
        .unwrap_err();
        assert!(e.contains("no contexts entry named \"x\""), "{e}");
        let half = CONFIG.replace("    client-key: /abs/client.key\n", "");
        assert!(from_kubeconfig(&half, p)
            .unwrap_err()
            .contains("without the other"));
        let bad = CONFIG.replace("aGVsbG8=", "not*base64");
        assert!(from_kubeconfig(&bad, p)
            .unwrap_err()
            .contains("certificate-authority-data"));
        let plain = CONFIG
            .replace("https://10.0.0.1:6443/", "http://127.0.0.1:8001")
            .replace(
                "    certificate-authority-data: aGVsbG8=\n",
                "    insecure-skip-tls-verify: true\n",
            );
        let a = from_kubeconfig(&plain, p).unwrap();
        assert_eq!(
            (a.server.as_str(), a.ca, a.insecure),
            ("http://127.0.0.1:8001", None, true)
        );
        let token = CONFIG.replace("    tokenFile: token\n", "    token: abc.def\n");
        assert_eq!(
            from_kubeconfig(&token, p).unwrap().token,
            Token::Text("abc.def".into())
        );
    }

    #[test]
    fn in_cluster_uses_the_service_account() {
        let a = in_cluster("10.96.0.1", "443");
        assert_eq!(a.server, "https://10.96.0.1:443");
        assert_eq!(
            a.token,
            Token::File(Path::new(SERVICE_ACCOUNT_DIR).join("token"))
        );
        assert_eq!(in_cluster("fd00::1", "443").server, "https://[fd00::1]:443");
    }
}
