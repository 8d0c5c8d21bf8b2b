//! TLS for Raft RPC and the admin API (rustls, ring): this director's certificate and key
//! and the cluster's CA, from files named in its settings, re-read when they change.
//!
//! One rustls server configuration and one client configuration live as long as the
//! process; what they use (the certificate presented, the CA that verifies peers) is read
//! through [`Tls`] on every handshake, so a rotation takes effect on the next connection
//! without a restart. A rotation that cannot be loaded (a half-written file, a key that
//! does not match its certificate, a certificate for another director or from another
//! CA) is logged and the certificate in use is kept.
//!
//! Servers ask for a client certificate but do not require one: operators may present a
//! bearer token instead (see [`crate::auth`]). Peers' certificates are checked against the
//! CA here; whether their name may do what they ask is decided per request.

use ha_config::access::Role;
use ha_config::tls::{cert_identity, fingerprint, load_certs, load_key, load_roots, provider};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

/// The files named in the settings' `[tls]` table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    /// The cluster's CA certificate(s), PEM.
    pub ca: PathBuf,
    /// This director's certificate (chain), PEM.
    pub cert: PathBuf,
    /// Its private key, PEM.
    pub key: PathBuf,
}

/// What one load of the files gave.
struct Material {
    key: Arc<CertifiedKey>,
    server_verifier: Arc<dyn ServerCertVerifier>,
    client_verifier: Arc<dyn ClientCertVerifier>,
    fingerprint: String,
}

/// Summary for status and logs.
#[derive(Clone, Debug)]
pub struct TlsInfo {
    pub fingerprint: String,
    pub reloads: u64,
    pub last_error: Option<String>,
}

pub struct Tls {
    files: TlsFiles,
    director: String,
    provider: Arc<CryptoProvider>,
    current: RwLock<Arc<Material>>,
    /// The bytes of the three files when last read (to notice a change).
    stamp: Mutex<(Vec<u8>, Option<String>, u64)>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls").field("files", &self.files).finish()
    }
}

fn read_stamp(files: &TlsFiles) -> Vec<u8> {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for p in [&files.ca, &files.cert, &files.key] {
        match std::fs::read(p) {
            Ok(b) => h.update(&b),
            Err(e) => h.update(e.to_string().as_bytes()),
        }
        h.update([0u8]);
    }
    h.finalize().to_vec()
}

fn load(files: &TlsFiles, director: &str, provider: &Arc<CryptoProvider>) -> Result<Material, String> {
    let roots = Arc::new(load_roots(&files.ca)?);
    let chain = load_certs(&files.cert)?;
    let key = load_key(&files.key)?;
    let certified = CertifiedKey::from_der(chain.clone(), key, provider)
        .map_err(|e| format!("{} with {}: {e}", files.key.display(), files.cert.display()))?;
    let (name, role) = cert_identity(&chain[0]).map_err(|e| format!("{}: {e}", files.cert.display()))?;
    if role != Role::Director || name != director {
        return Err(format!(
            "{}: the certificate is for {name:?} with role {role}, but this is director {director:?} \
             (issue one with `hactl cert issue --node {director}`)",
            files.cert.display()
        ));
    }
    let client_verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
        .allow_unauthenticated()
        .build()
        .map_err(|e| format!("{}: {e}", files.ca.display()))?;
    // Our own certificate must be one our peers accept.
    client_verifier
        .verify_client_cert(&chain[0], &chain[1..], UnixTime::now())
        .map_err(|e| {
            format!(
                "{} is not accepted by the CA in {}: {e}",
                files.cert.display(),
                files.ca.display()
            )
        })?;
    let server_verifier =
        rustls::client::WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
            .build()
            .map_err(|e| format!("{}: {e}", files.ca.display()))?;
    Ok(Material {
        key: Arc::new(certified),
        server_verifier,
        client_verifier,
        fingerprint: fingerprint(&chain[0]),
    })
}

impl Tls {
    /// Loads the files; any problem is an error naming the file.
    pub fn load(files: TlsFiles, director: &str) -> Result<Arc<Tls>, String> {
        let provider = provider();
        let stamp = read_stamp(&files);
        let m = load(&files, director, &provider)?;
        Ok(Arc::new(Tls {
            files,
            director: director.to_string(),
            provider,
            current: RwLock::new(Arc::new(m)),
            stamp: Mutex::new((stamp, None, 0)),
        }))
    }

    fn material(&self) -> Arc<Material> {
        match self.current.read() {
            Ok(m) => m.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    pub fn info(&self) -> TlsInfo {
        let (_, last_error, reloads) = match self.stamp.lock() {
            Ok(s) => s.clone(),
            Err(p) => p.into_inner().clone(),
        };
        TlsInfo {
            fingerprint: self.material().fingerprint.clone(),
            reloads,
            last_error,
        }
    }

    /// Re-reads the files if their content changed. `Ok(true)`: the new certificate is
    /// in use; `Err`: it could not be loaded and the current one is kept.
    pub fn reload_if_changed(&self) -> Result<bool, String> {
        let stamp = read_stamp(&self.files);
        let mut guard = match self.stamp.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        if guard.0 == stamp {
            return match &guard.1 {
                Some(e) => Err(e.clone()),
                None => Ok(false),
            };
        }
        guard.0 = stamp;
        match load(&self.files, &self.director, &self.provider) {
            Ok(m) => {
                let old = self.material().fingerprint.clone();
                tracing::info!(
                    director = %self.director,
                    cert = %self.files.cert.display(),
                    from = %short(&old),
                    to = %short(&m.fingerprint),
                    "TLS certificate reloaded"
                );
                match self.current.write() {
                    Ok(mut w) => *w = Arc::new(m),
                    Err(p) => *p.into_inner() = Arc::new(m),
                }
                guard.1 = None;
                guard.2 += 1;
                Ok(true)
            }
            Err(e) => {
                tracing::error!(director = %self.director, "TLS files changed but cannot be used, keeping the current certificate: {e}");
                guard.1 = Some(e.clone());
                Err(e)
            }
        }
    }

    /// Checks the files every `every` for as long as the runtime runs.
    pub fn spawn_reloader(self: &Arc<Self>, every: Duration) {
        let me = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let me = me.clone();
                let _ = tokio::task::spawn_blocking(move || me.reload_if_changed()).await;
            }
        });
    }

    pub fn server_config(self: &Arc<Self>) -> Arc<rustls::ServerConfig> {
        let mut c = rustls::ServerConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()
            .expect("the ring provider supports the default protocol versions")
            .with_client_cert_verifier(Arc::new(Dynamic(self.clone())))
            .with_cert_resolver(Arc::new(Dynamic(self.clone())));
        c.alpn_protocols = vec![b"http/1.1".to_vec()];
        Arc::new(c)
    }

    /// (ALPN is set by the connector.)
    pub fn client_config(self: &Arc<Self>) -> rustls::ClientConfig {
        rustls::ClientConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()
            .expect("the ring provider supports the default protocol versions")
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Dynamic(self.clone())))
            .with_client_cert_resolver(Arc::new(Dynamic(self.clone())))
    }
}

fn short(fp: &str) -> &str {
    &fp[..fp.len().min(16)]
}

/// Reads the material in use at each handshake.
#[derive(Debug)]
struct Dynamic(Arc<Tls>);

impl ResolvesServerCert for Dynamic {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.material().key.clone())
    }
}

impl rustls::client::ResolvesClientCert for Dynamic {
    fn resolve(&self, _hints: &[&[u8]], _schemes: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        Some(self.0.material().key.clone())
    }
    fn has_certs(&self) -> bool {
        true
    }
}

impl ClientCertVerifier for Dynamic {
    fn offer_client_auth(&self) -> bool {
        true
    }
    fn client_auth_mandatory(&self) -> bool {
        false
    }
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }
    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.0
            .material()
            .client_verifier
            .verify_client_cert(end_entity, intermediates, now)
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0
            .material()
            .client_verifier
            .verify_tls12_signature(message, cert, dss)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0
            .material()
            .client_verifier
            .verify_tls13_signature(message, cert, dss)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.material().client_verifier.supported_verify_schemes()
    }
}

impl ServerCertVerifier for Dynamic {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.0.material().server_verifier.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        )
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0
            .material()
            .server_verifier
            .verify_tls12_signature(message, cert, dss)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0
            .material()
            .server_verifier
            .verify_tls13_signature(message, cert, dss)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.material().server_verifier.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ha_config::pki;

    fn write_node(dir: &std::path::Path, ca: &pki::Issued, name: &str, file: &str) {
        let c = pki::issue(
            &ca.cert_pem,
            &ca.key_pem,
            &pki::Subject {
                name,
                role: Role::Director,
                ips: &["127.0.0.1".parse().unwrap()],
                days: 1,
            },
        )
        .unwrap();
        std::fs::write(dir.join(format!("{file}.pem")), c.cert_pem).unwrap();
        std::fs::write(dir.join(format!("{file}.key")), c.key_pem).unwrap();
    }

    #[test]
    fn a_rotation_is_picked_up_and_a_bad_one_keeps_the_current_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let ca = pki::new_ca("ca", 1).unwrap();
        std::fs::write(d.join("ca.pem"), &ca.cert_pem).unwrap();
        write_node(d, &ca, "lvs01", "node");
        let files = TlsFiles {
            ca: d.join("ca.pem"),
            cert: d.join("node.pem"),
            key: d.join("node.key"),
        };
        let tls = Tls::load(files.clone(), "lvs01").unwrap();
        let first = tls.info().fingerprint;
        assert_eq!(tls.reload_if_changed(), Ok(false));

        // A new certificate for the same director: used from now on.
        write_node(d, &ca, "lvs01", "node");
        assert_eq!(tls.reload_if_changed(), Ok(true));
        let second = tls.info().fingerprint;
        assert_ne!(first, second);
        assert_eq!(tls.info().reloads, 1);

        // Half a rotation (a key that does not match): refused, the current one kept.
        write_node(d, &ca, "lvs01", "other");
        std::fs::copy(d.join("other.key"), d.join("node.key")).unwrap();
        let e = tls.reload_if_changed().unwrap_err();
        assert!(e.contains("node.key"), "{e}");
        assert_eq!(tls.info().fingerprint, second);
        assert!(tls.info().last_error.is_some());

        // Another director's certificate, or one from another CA: refused at load.
        write_node(d, &ca, "lvs02", "node");
        let e = tls.reload_if_changed().unwrap_err();
        assert!(e.contains("\"lvs02\"") && e.contains("lvs01"), "{e}");
        let other_ca = pki::new_ca("other", 1).unwrap();
        write_node(d, &other_ca, "lvs01", "node");
        let e = tls.reload_if_changed().unwrap_err();
        assert!(e.contains("not accepted by the CA"), "{e}");
        assert_eq!(tls.info().fingerprint, second);
        let e = Tls::load(files, "lvs01").unwrap_err();
        assert!(e.contains("not accepted by the CA"), "{e}");
    }
}
