//! A small certificate authority for labs and small clusters (`hactl cert init/issue`):
//! one CA, a certificate per director (its name as common name, DNS name and its
//! addresses as IP names, role `director`) and per operator or auditor (role `operator`
//! or `read-only`). Keys are ECDSA P-256. Production sites may use their own CA instead:
//! what hanode reads is the common name and the organisational unit (see [`crate::access`]).

use crate::access::Role;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
    KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use std::net::IpAddr;
use time::{Duration, OffsetDateTime};

/// A certificate and its private key, both PEM.
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
}

/// Who a certificate is for.
pub struct Subject<'a> {
    pub name: &'a str,
    pub role: Role,
    /// Addresses the holder serves on (directors).
    pub ips: &'a [IpAddr],
    pub days: u32,
}

fn serial() -> Result<SerialNumber, String> {
    use std::io::Read;
    let mut b = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .map_err(|e| format!("reading /dev/urandom: {e}"))?;
    b[0] &= 0x7f; // a positive INTEGER
    Ok(SerialNumber::from_slice(&b))
}

fn validity(p: &mut CertificateParams, days: u32) {
    let now = OffsetDateTime::now_utc();
    // An hour of slack for directors whose clocks are a little behind.
    p.not_before = now - Duration::hours(1);
    p.not_after = now + Duration::days(i64::from(days));
}

/// A new self-signed CA.
pub fn new_ca(common_name: &str, days: u32) -> Result<Issued, String> {
    let key = KeyPair::generate().map_err(|e| format!("generating the CA key: {e}"))?;
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    p.serial_number = Some(serial()?);
    validity(&mut p, days);
    let cert = p.self_signed(&key).map_err(|e| format!("signing the CA: {e}"))?;
    Ok(Issued {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// A certificate for `subject`, signed by the CA.
pub fn issue(ca_cert_pem: &str, ca_key_pem: &str, subject: &Subject<'_>) -> Result<Issued, String> {
    let ca_key = KeyPair::from_pem(ca_key_pem).map_err(|e| format!("the CA key: {e}"))?;
    let issuer =
        Issuer::from_ca_cert_pem(ca_cert_pem, ca_key).map_err(|e| format!("the CA certificate: {e}"))?;
    let key = KeyPair::generate().map_err(|e| format!("generating a key: {e}"))?;
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, subject.name);
    dn.push(DnType::OrganizationalUnitName, subject.role.as_str());
    p.distinguished_name = dn;
    p.is_ca = IsCa::ExplicitNoCa;
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    if subject.role == Role::Director {
        p.extended_key_usages.push(ExtendedKeyUsagePurpose::ServerAuth);
        let dns = subject
            .name
            .to_string()
            .try_into()
            .map_err(|e| format!("{:?} is not usable as a DNS name: {e}", subject.name))?;
        p.subject_alt_names.push(SanType::DnsName(dns));
        for ip in subject.ips {
            p.subject_alt_names.push(SanType::IpAddress(*ip));
        }
    }
    p.use_authority_key_identifier_extension = true;
    p.serial_number = Some(serial()?);
    validity(&mut p, subject.days);
    let cert = p.signed_by(&key, &issuer).map_err(|e| format!("signing: {e}"))?;
    Ok(Issued {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}
