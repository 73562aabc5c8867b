//! The TLS listener's configuration and mTLS client identities.
//!
//! [`server_config`] reads the PEM files of [`crate::config::TlsFiles`] (the server's
//! certificate chain and key, and optionally the CA bundle issuing workload client
//! certificates) into a rustls configuration (ring provider). Client certificates are
//! optional: requested and verified against the client CA only when one is configured,
//! never required (agents may still use `private_key_jwt`). [`TlsPeer`] carries the
//! SPIFFE IDs (`spiffe://` URI SANs) of a connection's verified client certificate into
//! every request of that connection, for `tls_client_auth` at the token endpoint
//! (RFC 8705 §2.1).

use crate::config::TlsFiles;
use anyhow::{anyhow, Context};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig, ServerConnection};
use std::path::Path;
use std::sync::Arc;

/// The verified client certificate of a TLS connection (a request extension; absent on
/// plain HTTP and when the client sent no certificate).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsPeer {
    /// The certificate's URI SANs that are SPIFFE IDs (`spiffe://…`), in order.
    pub spiffe_ids: Vec<String>,
}

impl TlsPeer {
    /// The peer of an established connection: `None` without a (verified) client
    /// certificate. rustls only hands out peer certificates it verified.
    pub fn of(conn: &ServerConnection) -> Option<TlsPeer> {
        let leaf = conn.peer_certificates()?.first()?;
        Some(TlsPeer {
            spiffe_ids: spiffe_ids(leaf.as_ref()),
        })
    }
}

/// The `spiffe://` URI SANs of a DER certificate (empty when it has none or cannot be
/// parsed).
pub fn spiffe_ids(der: &[u8]) -> Vec<String> {
    use x509_parser::extensions::GeneralName;
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(der) else {
        return vec![];
    };
    let Ok(Some(san)) = cert.subject_alternative_name() else {
        return vec![];
    };
    san.value
        .general_names
        .iter()
        .filter_map(|n| match n {
            GeneralName::URI(uri) if uri.starts_with("spiffe://") => Some((*uri).to_owned()),
            _ => None,
        })
        .collect()
}

fn read_certs(path: &Path, what: &str) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| anyhow!("cannot read {what} `{}`: {e}", path.display()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow!("invalid {what} `{}`: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(anyhow!(
            "invalid {what} `{}`: no PEM `CERTIFICATE` block in it",
            path.display()
        ));
    }
    Ok(certs)
}

fn read_key(path: &Path) -> anyhow::Result<PrivateKeyDer<'static>> {
    // Never put the file's content (or a parser's view of it) into the error.
    std::fs::metadata(path)
        .map_err(|e| anyhow!("cannot read TLS key `{}`: {e}", path.display()))?;
    PrivateKeyDer::from_pem_file(path).map_err(|_| {
        anyhow!(
            "invalid TLS key `{}`: expected one PEM private key (PKCS#8, PKCS#1 or SEC1)",
            path.display()
        )
    })
}

/// The rustls server configuration of `files` (HTTP/2 and HTTP/1.1 by ALPN). Refuses
/// unreadable or invalid PEM and a key that does not match the certificate.
pub fn server_config(files: &TlsFiles) -> anyhow::Result<Arc<ServerConfig>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certs = read_certs(&files.cert, "TLS certificate")?;
    let key = read_key(&files.key)?;
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?;
    let builder = match &files.client_ca {
        None => builder.with_no_client_auth(),
        Some(path) => {
            let mut roots = RootCertStore::empty();
            for ca in read_certs(path, "TLS client CA")? {
                roots
                    .add(ca)
                    .map_err(|e| anyhow!("invalid TLS client CA `{}`: {e}", path.display()))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .allow_unauthenticated()
                .build()
                .map_err(|e| anyhow!("invalid TLS client CA `{}`: {e}", path.display()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_single_cert(certs, key).map_err(|e| {
        anyhow!(
            "TLS certificate `{}` and key `{}` are not usable together: {e}",
            files.cert.display(),
            files.key.display()
        )
    })?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
