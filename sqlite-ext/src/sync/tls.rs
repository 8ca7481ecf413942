//! TLS for the sync connection, with rustls.
//!
//! `verify-full` checks the certificate chain against the root certificate
//! and the host name; `verify-ca` checks only the chain. `prefer` and
//! `require` encrypt without checking the certificate, as libpq does, so they
//! protect against eavesdroppers but not against an active attacker, who
//! could learn the store id and write token (never a key or a value, which
//! are end-to-end encrypted). Use `verify-full` on any network you do not
//! control.

use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::conninfo::{ConnInfo, SslMode};
use crate::error::ExtError;

/// Builds the TLS connector for `info`.
///
/// # Errors
///
/// [`ExtError::Usage`] when the root certificate file is missing or holds no
/// certificate.
pub fn connector(info: &ConnInfo) -> Result<MakeRustlsConnect, ExtError> {
    #[allow(
        deprecated,
        reason = "the ring provider has no post-quantum key exchange, which PostgreSQL servers do not offer either"
    )]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|err| ExtError::usage(format!("persist_sync: TLS setup failed: {err}")))?;
    let config = match info.ssl_mode {
        SslMode::VerifyFull => builder
            .with_root_certificates(root_store(info)?)
            .with_no_client_auth(),
        SslMode::VerifyCa => {
            let inner = WebPkiServerVerifier::builder_with_provider(
                Arc::new(root_store(info)?),
                Arc::clone(&provider),
            )
            .build()
            .map_err(|err| ExtError::usage(format!("persist_sync: TLS setup failed: {err}")))?;
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(ChainOnly { inner }))
                .with_no_client_auth()
        }
        SslMode::Disable | SslMode::Prefer | SslMode::Require => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerification {
                algorithms: provider.signature_verification_algorithms,
            }))
            .with_no_client_auth(),
    };
    Ok(MakeRustlsConnect::new(config))
}

fn root_store(info: &ConnInfo) -> Result<RootCertStore, ExtError> {
    let Some(path) = &info.ssl_root_cert else {
        return Err(ExtError::usage(
            "persist_sync: sslmode=verify-ca and verify-full need sslrootcert=<CA certificate file>",
        ));
    };
    let pem = std::fs::read(path).map_err(|err| {
        ExtError::usage(format!(
            "persist_sync: cannot read root certificate {}: {err}",
            path.display()
        ))
    })?;
    let mut store = RootCertStore::empty();
    let mut reader = std::io::Cursor::new(pem);
    for certificate in rustls_pemfile::certs(&mut reader) {
        let certificate = certificate.map_err(|err| {
            ExtError::usage(format!(
                "persist_sync: root certificate file {} is not valid PEM: {err}",
                path.display()
            ))
        })?;
        store.add(certificate).map_err(|err| {
            ExtError::usage(format!(
                "persist_sync: root certificate in {} is invalid: {err}",
                path.display()
            ))
        })?;
    }
    if store.is_empty() {
        return Err(ExtError::usage(format!(
            "persist_sync: root certificate file {} holds no certificate",
            path.display()
        )));
    }
    Ok(store)
}

/// Checks the chain but not the host name (`sslmode=verify-ca`).
#[derive(Debug)]
struct ChainOnly {
    inner: Arc<WebPkiServerVerifier>,
}

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        ) {
            Err(rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForName))
            | Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// Accepts any certificate (`sslmode=prefer` and `require`, as in libpq),
/// but still checks the handshake signatures.
#[derive(Debug)]
struct NoVerification {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for NoVerification {
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
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}
