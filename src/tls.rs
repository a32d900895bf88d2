//! TLS with rustls (aws-lc-rs): the certificate chain and key from PEM files, TLS 1.2 and 1.3
//! only, optional client certificates checked against configured CAs (mTLS). The files are
//! re-read when they change (polled every 2 s) or on SIGHUP; a broken new set is logged and the
//! one in force stays. Each new connection takes the configuration current at its handshake.

use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rustls::ServerConfig;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

use crate::config::{TlsConfig, TlsVersion};

/// How often the certificate files are looked at.
const POLL: Duration = Duration::from_secs(2);

#[derive(Clone, PartialEq, Eq, Debug)]
struct Stamp(Option<std::time::SystemTime>, u64, u64);

fn stamps(cfg: &TlsConfig) -> Vec<Option<Stamp>> {
    use std::os::unix::fs::MetadataExt;
    std::iter::once(&cfg.certificate)
        .chain(std::iter::once(&cfg.key))
        .chain(cfg.clientcas.iter())
        .map(|p| {
            std::fs::metadata(p)
                .ok()
                .map(|m| Stamp(m.modified().ok(), m.len(), m.ino()))
        })
        .collect()
}

pub struct Tls {
    cfg: TlsConfig,
    current: RwLock<(Arc<ServerConfig>, Vec<Option<Stamp>>)>,
}

fn read_certs(path: &str, what: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(Path::new(path))
        .map_err(|e| format!("{what} {path}: {e}"))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{what} {path}: {e}"))?;
    if certs.is_empty() {
        return Err(format!("{what} {path}: no PEM certificate in it"));
    }
    Ok(certs)
}

fn build(cfg: &TlsConfig) -> Result<ServerConfig, String> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let chain = read_certs(&cfg.certificate, "http.tls.certificate")?;
    let key =
        PrivateKeyDer::from_pem_file(Path::new(&cfg.key)).map_err(|e| format!("http.tls.key {}: {e}", cfg.key))?;
    let versions: &[&'static rustls::SupportedProtocolVersion] = match cfg.minimumtls {
        TlsVersion::Tls13 => &[&rustls::version::TLS13],
        TlsVersion::Tls12 => &[&rustls::version::TLS13, &rustls::version::TLS12],
    };
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)
        .map_err(|e| format!("TLS: {e}"))?;
    let builder = if cfg.clientcas.is_empty() {
        builder.with_no_client_auth()
    } else {
        let mut roots = rustls::RootCertStore::empty();
        for path in &cfg.clientcas {
            for cert in read_certs(path, "http.tls.clientcas")? {
                roots.add(cert).map_err(|e| format!("http.tls.clientcas {path}: {e}"))?;
            }
        }
        let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .map_err(|e| format!("http.tls.clientcas: {e}"))?;
        builder.with_client_cert_verifier(verifier)
    };
    let mut config = builder
        .with_single_cert(chain, key)
        .map_err(|e| format!("http.tls.certificate and http.tls.key: {e}"))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

impl Tls {
    pub fn load(cfg: &TlsConfig) -> Result<Tls, String> {
        let st = stamps(cfg);
        let config = build(cfg)?;
        Ok(Tls {
            cfg: cfg.clone(),
            current: RwLock::new((Arc::new(config), st)),
        })
    }

    pub fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.current.read().unwrap().0.clone())
    }

    pub fn client_auth(&self) -> bool {
        !self.cfg.clientcas.is_empty()
    }

    /// Re-read the files (if `force`, even when they look unchanged).
    pub fn reload(&self, force: bool) {
        let st = stamps(&self.cfg);
        if !force && self.current.read().unwrap().1 == st {
            return;
        }
        match build(&self.cfg) {
            Ok(config) => {
                *self.current.write().unwrap() = (Arc::new(config), st);
                tracing::info!(certificate = %self.cfg.certificate, "TLS certificate reloaded");
            }
            Err(e) => {
                // Remember the stamps, so a broken set is reported once, not every poll.
                self.current.write().unwrap().1 = st;
                tracing::error!("keeping the TLS certificate in force: {e}");
            }
        }
    }

    /// Poll the files, and reload on SIGHUP, for as long as the server runs.
    pub fn watch(self: Arc<Self>) {
        let polled = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(POLL).await;
                polled.reload(false);
            }
        });
        tokio::spawn(async move {
            let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) else {
                return;
            };
            while hup.recv().await.is_some() {
                tracing::info!("SIGHUP: reloading the TLS certificate");
                self.reload(true);
            }
        });
    }
}
