//! Certificates for `tls.selfSigned`: a CA created once per Registry and serving
//! certificates it signs for the Service's DNS names and ClusterIP. Pure apart from key
//! generation; times are Unix seconds so callers and tests control the clock.

use std::net::IpAddr;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use time::OffsetDateTime;

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("the stored CA key is unusable: {0}")]
    CaKey(rcgen::Error),
    #[error(
        "the CA Secret exists but lacks ca.crt or ca.key; restore it, or delete it to have a new CA generated (clients must then trust the new one)"
    )]
    DamagedCa,
    #[error("time out of range: {0}")]
    Time(String),
}

/// Years a generated CA is valid.
const CA_YEARS: i64 = 10;
const DAY: i64 = 86_400;

/// A CA certificate and its private key, both PEM.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CaBundle {
    pub cert_pem: String,
    pub key_pem: String,
}

/// A serving certificate with its key, and when it stops being valid.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServingCert {
    pub cert_pem: String,
    pub key_pem: String,
    pub not_after: i64,
}

fn at(unix: i64) -> Result<OffsetDateTime, PkiError> {
    OffsetDateTime::from_unix_timestamp(unix).map_err(|e| PkiError::Time(e.to_string()))
}

/// The CA's parameters; derived from its name alone so the stored key can sign again.
fn ca_params(common_name: &str, now: i64) -> Result<CertificateParams, PkiError> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    dn.push(DnType::OrganizationName, "Dockyard");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.not_before = at(now - DAY)?;
    params.not_after = at(now + CA_YEARS * 365 * DAY)?;
    Ok(params)
}

/// Creates a new CA named `common_name`.
pub fn new_ca(common_name: &str, now: i64) -> Result<CaBundle, PkiError> {
    let key = KeyPair::generate()?;
    let cert = ca_params(common_name, now)?.self_signed(&key)?;
    Ok(CaBundle {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// Issues a serving certificate signed by `ca` for `dns_names` and `ips`, valid `days`.
pub fn issue_serving(
    ca: &CaBundle,
    ca_common_name: &str,
    dns_names: &[String],
    ips: &[IpAddr],
    days: u32,
    now: i64,
) -> Result<ServingCert, PkiError> {
    let ca_key = KeyPair::from_pem(&ca.key_pem).map_err(PkiError::CaKey)?;
    let issuer = Issuer::new(ca_params(ca_common_name, now)?, ca_key);
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    let mut dn = DistinguishedName::new();
    dn.push(
        DnType::CommonName,
        dns_names
            .first()
            .map(String::as_str)
            .unwrap_or("dockyard-registry"),
    );
    params.distinguished_name = dn;
    for name in dns_names {
        params
            .subject_alt_names
            .push(SanType::DnsName(name.as_str().try_into()?));
    }
    for ip in ips {
        params.subject_alt_names.push(SanType::IpAddress(*ip));
    }
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.use_authority_key_identifier_extension = true;
    let not_after = now + i64::from(days) * DAY;
    params.not_before = at(now - 3600)?;
    params.not_after = at(not_after)?;
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &issuer)?;
    Ok(ServingCert {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        not_after,
    })
}

/// Whether a certificate valid until `not_after` for `days` should be renewed at `now`:
/// when less than a third of its lifetime remains.
pub fn needs_renewal(not_after: i64, days: u32, now: i64) -> bool {
    not_after - now < i64::from(days) * DAY / 3
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::{CertificateDer, ServerName, UnixTime, pem::PemObject};

    const NOW: i64 = 1_790_000_000;

    fn der(pem: &str) -> CertificateDer<'static> {
        CertificateDer::from_pem_slice(pem.as_bytes()).unwrap()
    }

    /// Verifies the serving certificate against the CA the way a client (rustls/webpki) does.
    fn verify(ca: &CaBundle, cert: &ServingCert, name: &str, at: i64) -> Result<(), rustls::Error> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(der(&ca.cert_pem)).unwrap();
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
            std::sync::Arc::new(roots),
            provider,
        )
        .build()
        .unwrap();
        let server_name = ServerName::try_from(name.to_owned()).unwrap();
        let when = UnixTime::since_unix_epoch(std::time::Duration::from_secs(at as u64));
        rustls::client::danger::ServerCertVerifier::verify_server_cert(
            verifier.as_ref(),
            &der(&cert.cert_pem),
            &[],
            &server_name,
            &[],
            when,
        )
        .map(|_| ())
    }

    #[test]
    fn serving_certificates_verify_against_the_ca_for_names_and_ip() {
        let ca = new_ca("dockyard ns/reg CA", NOW).unwrap();
        let names = vec![
            "reg".to_owned(),
            "reg.ns.svc".to_owned(),
            "reg.ns.svc.cluster.local".to_owned(),
        ];
        let ip: IpAddr = "10.96.0.42".parse().unwrap();
        let cert = issue_serving(&ca, "dockyard ns/reg CA", &names, &[ip], 90, NOW).unwrap();
        for name in ["reg.ns.svc", "reg.ns.svc.cluster.local", "10.96.0.42"] {
            verify(&ca, &cert, name, NOW + 60).unwrap_or_else(|e| panic!("{name}: {e}"));
        }
        assert!(verify(&ca, &cert, "other.ns.svc", NOW + 60).is_err());
        assert!(
            verify(&ca, &cert, "reg.ns.svc", NOW + 91 * DAY).is_err(),
            "expired"
        );
        let other_ca = new_ca("dockyard ns/reg CA", NOW).unwrap();
        assert!(
            verify(&other_ca, &cert, "reg.ns.svc", NOW + 60).is_err(),
            "signed by the stored CA only"
        );
        assert_eq!(cert.not_after, NOW + 90 * DAY);
    }

    #[test]
    fn a_stored_ca_signs_again_after_a_restart() {
        let ca = new_ca("dockyard a/b CA", NOW).unwrap();
        let later = issue_serving(
            &ca,
            "dockyard a/b CA",
            &["b.a.svc".into()],
            &[],
            30,
            NOW + 400 * DAY,
        )
        .unwrap();
        verify(&ca, &later, "b.a.svc", NOW + 401 * DAY).unwrap();
        let broken = CaBundle {
            key_pem: "not a key".into(),
            ..ca
        };
        assert!(matches!(
            issue_serving(&broken, "x", &[], &[], 1, NOW),
            Err(PkiError::CaKey(_))
        ));
    }

    #[test]
    fn renewal_when_a_third_remains() {
        assert!(!needs_renewal(NOW + 61 * DAY, 90, NOW));
        assert!(needs_renewal(NOW + 29 * DAY, 90, NOW));
        assert!(needs_renewal(NOW - 1, 90, NOW));
    }
}
