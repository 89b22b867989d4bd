//! Certificates for the TLS tests (a CA issuing server and client certificates with chosen
//! serials, made by rcgen), the certificate files a server reads, laid out as plain files or
//! as a Kubernetes Secret volume, and starting a registry over HTTPS with them.

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, SerialNumber};
use tempfile::TempDir;

use super::common::{Server, cmd, run_capture, server::ServerBuilder};

/// A test CA.
pub struct Ca {
    params: CertificateParams,
    key: KeyPair,
    pub pem: String,
}

/// A certificate and its key, PEM, with the DER the server presents.
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
    pub der: Vec<u8>,
    /// As `openssl x509 -noout -serial` prints it.
    pub serial: String,
}

impl Ca {
    pub fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let key = KeyPair::generate().unwrap();
        let pem = params.self_signed(&key).unwrap().pem();
        Ca { params, key, pem }
    }

    /// A certificate for `sans` with serial `serial` (two bytes, so openssl prints all four
    /// hex digits).
    pub fn issue(&self, sans: &[&str], serial: u16) -> Issued {
        let sans: Vec<String> = sans.iter().map(|s| s.to_string()).collect();
        let mut params = CertificateParams::new(sans).unwrap();
        params.serial_number = Some(SerialNumber::from_slice(&serial.to_be_bytes()));
        let key = KeyPair::generate().unwrap();
        let cert = params
            .signed_by(&key, &Issuer::from_params(&self.params, &self.key))
            .unwrap();
        Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().to_vec(),
            serial: format!("serial={serial:04X}"),
        }
    }

    /// A server certificate for loopback: `localhost` and `127.0.0.1`.
    pub fn server(&self, serial: u16) -> Issued {
        self.issue(&["localhost", "127.0.0.1"], serial)
    }
}

/// How replacements reach the server's `tls.crt` and `tls.key`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// Each file is written beside and renamed over the old one (key first, then certificate).
    Renames,
    /// kubelet's Secret volume: `tls.crt -> ..data/tls.crt`, and an update renames a new
    /// `..data_tmp -> ..<generation>` symlink over `..data` (both files change at once).
    SecretVolume,
}

/// The certificate files one server reads, in a directory of their own.
pub struct CertFiles {
    dir: TempDir,
    layout: Layout,
    generation: u32,
}

impl CertFiles {
    pub fn new(layout: Layout) -> CertFiles {
        CertFiles {
            dir: TempDir::new().unwrap(),
            layout,
            generation: 0,
        }
    }

    pub fn cert(&self) -> PathBuf {
        self.dir.path().join("tls.crt")
    }

    pub fn key(&self) -> PathBuf {
        self.dir.path().join("tls.key")
    }

    /// A file beside the certificates (for CA files).
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn install(&mut self, issued: &Issued) {
        self.install_pem(&issued.cert_pem, &issued.key_pem);
    }

    /// Replaces both files with these contents (valid or not), the way the layout does.
    pub fn install_pem(&mut self, cert: &str, key: &str) {
        let dir = self.dir.path().to_path_buf();
        self.generation += 1;
        match self.layout {
            Layout::Renames => {
                replace_file(&dir.join("tls.key"), key);
                replace_file(&dir.join("tls.crt"), cert);
            }
            Layout::SecretVolume => {
                let generation = format!("..gen_{}", self.generation);
                fs::create_dir(dir.join(&generation)).unwrap();
                fs::write(dir.join(&generation).join("tls.crt"), cert).unwrap();
                fs::write(dir.join(&generation).join("tls.key"), key).unwrap();
                symlink(&generation, dir.join("..data_tmp")).unwrap();
                fs::rename(dir.join("..data_tmp"), dir.join("..data")).unwrap();
                if self.generation == 1 {
                    symlink("..data/tls.crt", dir.join("tls.crt")).unwrap();
                    symlink("..data/tls.key", dir.join("tls.key")).unwrap();
                } else {
                    fs::remove_dir_all(dir.join(format!("..gen_{}", self.generation - 1))).unwrap();
                }
            }
        }
    }
}

/// Writes `text` next to `path` and renames it over `path`.
pub fn replace_file(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    fs::write(&tmp, text).unwrap();
    fs::rename(&tmp, path).unwrap();
}

/// A server builder for HTTPS with these certificate files.
pub fn https_builder(files: &CertFiles) -> ServerBuilder {
    Server::builder()
        .https()
        .env(
            "REGISTRY_HTTP_TLS_CERTIFICATE",
            &files.cert().display().to_string(),
        )
        .env("REGISTRY_HTTP_TLS_KEY", &files.key().display().to_string())
}

/// What `openssl s_client` sees on a new connection: `serial=XXXX`, or an empty string when
/// the handshake failed.
pub fn served_serial(addr: &str) -> String {
    let script = format!(
        "openssl s_client -connect {addr} -servername localhost </dev/null 2>/dev/null \
         | openssl x509 -noout -serial"
    );
    run_capture(&mut cmd("sh", ["-c", &script]))
        .stdout
        .trim()
        .to_string()
}
