//! TLS material from PEM files (rustls, ring): the CA a cluster trusts, a certificate
//! chain with its key, the client configuration `hactl` uses, and who a certificate
//! names. Errors name the file.

use crate::access::Role;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::path::Path;
use std::sync::Arc;

pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Every certificate in a PEM file (at least one).
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let text = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&text)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{}: not a PEM certificate file: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "{}: no certificate in it (expected PEM `BEGIN CERTIFICATE`)",
            path.display()
        ));
    }
    Ok(certs)
}

/// The private key in a PEM file (PKCS#8, SEC1 or PKCS#1).
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    let text = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    PrivateKeyDer::from_pem_slice(&text).map_err(|e| format!("{}: no private key in it: {e}", path.display()))
}

/// The trust anchors: every certificate in the CA file.
pub fn load_roots(path: &Path) -> Result<rustls::RootCertStore, String> {
    let mut roots = rustls::RootCertStore::empty();
    for c in load_certs(path)? {
        roots
            .add(c)
            .map_err(|e| format!("{}: not usable as a CA certificate: {e}", path.display()))?;
    }
    Ok(roots)
}

/// A client configuration trusting `ca`, presenting `cert`/`key` when given.
pub fn client_config(ca: &Path, identity: Option<(&Path, &Path)>) -> Result<rustls::ClientConfig, String> {
    let roots = load_roots(ca)?;
    let b = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots);
    match identity {
        None => Ok(b.with_no_client_auth()),
        Some((cert, key)) => b
            .with_client_auth_cert(load_certs(cert)?, load_key(key)?)
            .map_err(|e| format!("{} with {}: {e}", cert.display(), key.display())),
    }
}

/// The name (subject common name) and role (organisational unit) a certificate carries.
pub fn cert_identity(der: &[u8]) -> Result<(String, Role), String> {
    let (_, cert) =
        x509_parser::parse_x509_certificate(der).map_err(|e| format!("unreadable certificate: {e}"))?;
    let subject = cert.subject();
    let name = subject
        .iter_common_name()
        .next()
        .and_then(|a| a.as_str().ok())
        .ok_or("the certificate has no common name")?
        .to_string();
    let role = subject
        .iter_organizational_unit()
        .next()
        .and_then(|a| a.as_str().ok())
        .ok_or_else(|| format!("the certificate of {name:?} names no role (organisational unit)"))?;
    let role: Role = role
        .parse()
        .map_err(|e| format!("the certificate of {name:?}: {e}"))?;
    Ok((name, role))
}

/// The SHA-256 fingerprint of a certificate, as `openssl x509 -fingerprint -sha256` shows
/// it (without colons, lower case).
pub fn fingerprint(der: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(der))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki;

    #[test]
    fn issued_certificates_name_their_holder_and_role() {
        let ca = pki::new_ca("test CA", 30).unwrap();
        for (name, role) in [
            ("lvs01", Role::Director),
            ("alice", Role::Operator),
            ("audit", Role::ReadOnly),
        ] {
            let ips = ["198.18.116.130".parse().unwrap()];
            let c = pki::issue(
                &ca.cert_pem,
                &ca.key_pem,
                &pki::Subject {
                    name,
                    role,
                    ips: &ips,
                    days: 1,
                },
            )
            .unwrap();
            let der = CertificateDer::from_pem_slice(c.cert_pem.as_bytes()).unwrap();
            assert_eq!(cert_identity(&der).unwrap(), (name.to_string(), role));
            assert!(PrivateKeyDer::from_pem_slice(c.key_pem.as_bytes()).is_ok());
        }
        let ca_der = CertificateDer::from_pem_slice(ca.cert_pem.as_bytes()).unwrap();
        let e = cert_identity(&ca_der).unwrap_err();
        assert!(e.contains("no role"), "{e}");
        assert!(cert_identity(b"garbage").is_err());
    }

    #[test]
    fn missing_or_wrong_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("ca.pem");
        assert!(load_certs(&p).unwrap_err().contains("ca.pem"));
        std::fs::write(&p, "hello").unwrap();
        assert!(load_certs(&p).unwrap_err().contains("no certificate"));
        assert!(load_key(&p).unwrap_err().contains("no private key"));
    }
}
