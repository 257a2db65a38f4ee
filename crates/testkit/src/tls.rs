//! Certificates for HTTPS tests: a throwaway certificate authority and leaf certificates it
//! issues for `127.0.0.1` and `localhost`, written as PEM files the way an operator's would
//! be.

use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};

/// A certificate authority; `ca_file` is what a client is told to trust (`--node-ca`).
pub struct TestCa {
    cert: rcgen::Certificate,
    key: KeyPair,
    pub ca_file: PathBuf,
}

impl std::fmt::Debug for TestCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCa")
            .field("ca_file", &self.ca_file)
            .finish()
    }
}

/// A leaf certificate and its key, as files.
#[derive(Debug, Clone)]
pub struct Leaf {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    /// The certificate's PEM, to compare with what a server presents.
    pub cert_pem: String,
}

impl TestCa {
    /// A new authority named `name`, its certificate written to `dir/<name>-ca.pem`.
    pub fn new(dir: &Path, name: &str) -> Self {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, format!("{name} test CA"));
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let cert = params.self_signed(&key).unwrap();
        let ca_file = dir.join(format!("{name}-ca.pem"));
        std::fs::write(&ca_file, cert.pem()).unwrap();
        Self { cert, key, ca_file }
    }

    /// A certificate for 127.0.0.1 and localhost, written to `dir/<name>.crt` and
    /// `dir/<name>.key` (replacing what is there, as a renewal does).
    pub fn issue(&self, dir: &Path, name: &str) -> Leaf {
        let key = KeyPair::generate().unwrap();
        let mut params =
            CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
        let leaf = Leaf {
            cert_file: dir.join(format!("{name}.crt")),
            key_file: dir.join(format!("{name}.key")),
            cert_pem: cert.pem(),
        };
        std::fs::write(&leaf.cert_file, &leaf.cert_pem).unwrap();
        std::fs::write(&leaf.key_file, key.serialize_pem()).unwrap();
        leaf
    }

    /// A reqwest client that trusts this authority only.
    pub fn client(&self) -> reqwest::Client {
        let pem = std::fs::read(&self.ca_file).unwrap();
        reqwest::Client::builder()
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
            .no_proxy()
            .timeout(std::time::Duration::from_secs(10))
            .build()
            .unwrap()
    }
}
