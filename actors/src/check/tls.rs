//! TLS for SSL_GET. keepalived (2.2.7, check_ssl.c) never asks OpenSSL to verify the
//! server's certificate, so a migrated SSL_GET accepts any certificate: that is our
//! default too. A CA file (`SSL { ca FILE }` at the top level of the config) turns
//! verification on (chain and name).

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use std::sync::Arc;

/// Accepts any server certificate (keepalived's behaviour); signatures on the handshake
/// are still checked, so the session is with whoever holds the presented key.
#[derive(Debug)]
struct AcceptAny(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
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
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// keepalived's default: any certificate.
pub fn client_accept_any() -> Arc<ClientConfig> {
    let p = provider();
    let cfg = ClientConfig::builder_with_provider(p.clone())
        .with_safe_default_protocol_versions()
        .map(|b| {
            b.dangerous()
                .with_custom_certificate_verifier(Arc::new(AcceptAny(p)))
                .with_no_client_auth()
        });
    match cfg {
        Ok(c) => Arc::new(c),
        // The ring provider supports the default versions; if it ever did not, fail closed.
        Err(_) => client_verify_nothing_trusted(),
    }
}

/// Verification with no trusted root: every handshake fails (a configured CA that could
/// not be loaded must not fall back to trusting anything).
pub fn client_verify_nothing_trusted() -> Arc<ClientConfig> {
    Arc::new(
        ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(rustls::DEFAULT_VERSIONS)
            .expect("ring supports the default TLS versions")
            .with_root_certificates(RootCertStore::empty())
            .with_no_client_auth(),
    )
}

/// Verification against the CA certificates in `pem` (opt-in).
pub fn client_with_ca(pem: &[u8]) -> Result<Arc<ClientConfig>, String> {
    let mut roots = RootCertStore::empty();
    let mut reader = std::io::BufReader::new(pem);
    for cert in rustls_pemfile_certs(&mut reader)? {
        roots.add(cert).map_err(|e| format!("CA certificate: {e}"))?;
    }
    if roots.is_empty() {
        return Err("no certificate in the CA file".into());
    }
    ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())
        .map(|b| Arc::new(b.with_root_certificates(roots).with_no_client_auth()))
}

fn rustls_pemfile_certs(r: &mut dyn std::io::BufRead) -> Result<Vec<CertificateDer<'static>>, String> {
    use rustls::pki_types::pem::PemObject;
    let mut text = Vec::new();
    r.read_to_end(&mut text).map_err(|e| e.to_string())?;
    CertificateDer::pem_slice_iter(&text)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("CA file: {e}"))
}
