//! TLS for the remote sources' HTTP client: builds one rustls client configuration (ring
//! provider, TLS 1.2 and 1.3) from a CA file or the system's CA bundle and an optional client
//! certificate, and wraps a connected socket in it. Everything read from disk is bounded and
//! every failure names the file.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature};
use rustls::crypto::{
    CryptoProvider, GetRandomFailed, KeyProvider, SecureRandom, WebPkiSupportedAlgorithms,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::UnixTime;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::sign::SigningKey;
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};
use rustls::{DigitallySignedStruct, SignatureScheme};
use webpki::ring as alg;

use crate::config::TlsFiles;
use crate::io::files;

/// Where the system's CA bundle is kept: Debian/Ubuntu/OpenWrt (ca-bundle), Fedora/RHEL,
/// Alpine/OpenWrt's `ca-certificates`, SUSE.
const SYSTEM_BUNDLES: [&str; 4] = [
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/cert.pem",
    "/etc/ssl/ca-bundle.pem",
];

/// A PEM file is never larger than this (the system bundle is about 200 KiB).
const MAX_PEM: u64 = 4 << 20;

/// A client configuration shared by every connection of a source.
pub type Client = Arc<ClientConfig>;

/// A PEM document in memory, and what it is called in messages (its file's path, or where
/// inline data came from).
pub struct PemText {
    pub name: String,
    pub text: Vec<u8>,
}

impl PemText {
    pub fn read(path: &Path) -> Result<PemText, String> {
        Ok(PemText {
            name: path.display().to_string(),
            text: read_pem(path)?.into_bytes(),
        })
    }
}

/// Builds the configuration `files` describe.
pub fn client(files: &TlsFiles) -> Result<Client, String> {
    let ca = files.ca_cert.as_deref().map(PemText::read).transpose()?;
    let pair = match (&files.client_cert, &files.client_key) {
        (None, None) => None,
        (Some(cert), Some(key)) => Some((PemText::read(cert)?, PemText::read(key)?)),
        _ => return Err("a client certificate needs both the certificate and its key".into()),
    };
    client_from(ca.as_ref(), pair.as_ref().map(|(c, k)| (c, k)), false)
}

/// Builds a configuration from PEM text: the trusted CAs (`None`: the system's), a client
/// certificate chain and key, and whether the server's certificate goes unchecked
/// (kubeconfig's `insecure-skip-tls-verify`; the handshake's signatures are still checked).
pub fn client_from(
    ca: Option<&PemText>,
    pair: Option<(&PemText, &PemText)>,
    insecure: bool,
) -> Result<Client, String> {
    let provider = Arc::new(provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let builder = if insecure {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Unverified))
    } else {
        let roots = match ca {
            Some(pem) => roots_from(pem)?,
            None => system_roots()?,
        };
        builder.with_root_certificates(roots)
    };
    let config = match pair {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let chain = certificates(cert)?;
            let private = PrivateKeyDer::from_pem_slice(&key.text)
                .map_err(|e| format!("{}: no usable private key ({e})", key.name))?;
            builder
                .with_client_auth_cert(chain, private)
                .map_err(|e| format!("{}: {e}", cert.name))?
        }
    };
    Ok(Arc::new(config))
}

/// `insecure-skip-tls-verify`: any server certificate is taken; the handshake's signatures
/// are verified as usual (so the connection is still to whoever holds that certificate's key).
#[derive(Debug)]
struct Unverified;

impl ServerCertVerifier for Unverified {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &SIGNATURES)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &SIGNATURES)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        SIGNATURES.supported_schemes()
    }
}

/// The certificate signatures checked (fewer than rustls's default provider links in).
static SIGNATURES: WebPkiSupportedAlgorithms = WebPkiSupportedAlgorithms {
    all: &[
        alg::ECDSA_P256_SHA256,
        alg::ECDSA_P256_SHA384,
        alg::ECDSA_P384_SHA256,
        alg::ECDSA_P384_SHA384,
        alg::RSA_PSS_2048_8192_SHA256_LEGACY_KEY,
        alg::RSA_PSS_2048_8192_SHA384_LEGACY_KEY,
        alg::RSA_PSS_2048_8192_SHA512_LEGACY_KEY,
        alg::RSA_PKCS1_2048_8192_SHA256,
        alg::RSA_PKCS1_2048_8192_SHA384,
        alg::RSA_PKCS1_2048_8192_SHA512,
    ],
    // TLS 1.3 fixes the curve with the scheme.
    mapping: &[
        (
            SignatureScheme::ECDSA_NISTP384_SHA384,
            &[alg::ECDSA_P384_SHA384],
        ),
        (
            SignatureScheme::ECDSA_NISTP256_SHA256,
            &[alg::ECDSA_P256_SHA256],
        ),
        (
            SignatureScheme::RSA_PSS_SHA512,
            &[alg::RSA_PSS_2048_8192_SHA512_LEGACY_KEY],
        ),
        (
            SignatureScheme::RSA_PSS_SHA384,
            &[alg::RSA_PSS_2048_8192_SHA384_LEGACY_KEY],
        ),
        (
            SignatureScheme::RSA_PSS_SHA256,
            &[alg::RSA_PSS_2048_8192_SHA256_LEGACY_KEY],
        ),
        (
            SignatureScheme::RSA_PKCS1_SHA512,
            &[alg::RSA_PKCS1_2048_8192_SHA512],
        ),
        (
            SignatureScheme::RSA_PKCS1_SHA384,
            &[alg::RSA_PKCS1_2048_8192_SHA384],
        ),
        (
            SignatureScheme::RSA_PKCS1_SHA256,
            &[alg::RSA_PKCS1_2048_8192_SHA256],
        ),
    ],
};

/// The algorithms offered, fewer than rustls's default provider (whose every algorithm would
/// be linked in) to keep the binary small: TLS 1.3 with AES-GCM and X25519, which every TLS 1.3
/// server supports, and the usual certificate signatures (RSA PKCS#1 and PSS, ECDSA
/// P-256/P-384, Ed25519).
fn provider() -> CryptoProvider {
    use rustls::crypto::ring::cipher_suite;
    use rustls::crypto::ring::kx_group;
    CryptoProvider {
        cipher_suites: vec![
            cipher_suite::TLS13_AES_128_GCM_SHA256,
            cipher_suite::TLS13_AES_256_GCM_SHA384,
        ],
        kx_groups: vec![kx_group::SECP256R1],
        signature_verification_algorithms: SIGNATURES,
        secure_random: &Keys,
        key_provider: &Keys,
    }
}

/// Randomness and client keys for [`provider`], from ring.
#[derive(Debug)]
struct Keys;

impl SecureRandom for Keys {
    fn fill(&self, buf: &mut [u8]) -> Result<(), GetRandomFailed> {
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), buf)
            .map_err(|_| GetRandomFailed)
    }
}

impl KeyProvider for Keys {
    fn load_private_key(
        &self,
        key: PrivateKeyDer<'static>,
    ) -> Result<Arc<dyn SigningKey>, rustls::Error> {
        use rustls::crypto::ring::sign::{any_ecdsa_type, RsaSigningKey};
        match RsaSigningKey::new(&key) {
            Ok(rsa) => Ok(Arc::new(rsa)),
            Err(_) => any_ecdsa_type(&key),
        }
    }
}

fn read_pem(path: &Path) -> Result<String, String> {
    files::read_text(path, MAX_PEM).map_err(|e| format!("{}: {e}", path.display()))
}

fn certificates(pem: &PemText) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_slice_iter(&pem.text)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{}: {e}", pem.name))?;
    if certs.is_empty() {
        return Err(format!("{}: no PEM certificate in it", pem.name));
    }
    Ok(certs)
}

fn roots_from(pem: &PemText) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    let (added, ignored) = roots.add_parsable_certificates(certificates(pem)?);
    if added == 0 {
        return Err(format!(
            "{}: none of its {ignored} certificates is usable as a CA",
            pem.name
        ));
    }
    Ok(roots)
}

fn system_roots() -> Result<RootCertStore, String> {
    SYSTEM_BUNDLES
        .iter()
        .map(Path::new)
        .find(|p| p.is_file())
        .ok_or_else(|| {
            format!(
                "no CA file given and no system CA bundle found (looked for {})",
                SYSTEM_BUNDLES.join(", ")
            )
        })
        .and_then(|p| roots_from(&PemText::read(p)?))
}

/// A connection to a server: plain, or TLS over the socket.
pub enum Stream {
    Plain(TcpStream),
    Tls(Box<StreamOwned<ClientConnection, TcpStream>>),
}

impl Stream {
    /// Starts TLS to `host` over `socket` (the handshake runs with the first read or write,
    /// under the socket's timeouts).
    pub fn tls(client: &Client, host: &str, socket: TcpStream) -> Result<Stream, String> {
        let name = ServerName::try_from(host.trim_start_matches('[').trim_end_matches(']'))
            .map_err(|e| format!("{host}: {e}"))?
            .to_owned();
        let conn = ClientConnection::new(Arc::clone(client), name).map_err(|e| e.to_string())?;
        Ok(Stream::Tls(Box::new(StreamOwned::new(conn, socket))))
    }

    pub fn socket(&self) -> &TcpStream {
        match self {
            Stream::Plain(s) => s,
            Stream::Tls(s) => &s.sock,
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
        }
    }
}
