//! Connecting to PostgreSQL, in plain text or over TLS with rustls (`DATABASE_SSL_MODE`), and
//! naming why a connection failed the way readiness reports it.
//!
//! Every connection, pooled or the migration step's, is opened here: tokio-postgres with the
//! configured TLS, then handed to diesel-async.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use diesel::{ConnectionError, ConnectionResult};
use diesel_async::AsyncPgConnection;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use tokio_postgres::error::SqlState;
use tokio_postgres_rustls::MakeRustlsConnect;

/// `DATABASE_SSL_MODE`, with libpq's meaning.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SslMode {
    /// Plain text.
    #[default]
    Disable,
    /// TLS or no connection; the server's certificate is not checked.
    Require,
    /// TLS, the certificate chained to a trusted root and issued for the host connected to.
    VerifyFull,
}

impl SslMode {
    /// Parses `disable`, `require` or `verify-full`.
    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "disable" => Some(Self::Disable),
            "require" => Some(Self::Require),
            "verify-full" => Some(Self::VerifyFull),
            _ => None,
        }
    }
}

/// How connections to PostgreSQL are secured.
#[derive(Debug, Clone, Default)]
pub struct PgTls {
    pub mode: SslMode,
    /// `DATABASE_SSL_ROOT_CERT`: PEM file of the roots `verify-full` trusts; `None`: the system's.
    pub root_cert: Option<PathBuf>,
}

/// The TLS settings ready to connect with.
#[derive(Clone)]
pub(crate) struct Connector(Option<MakeRustlsConnect>);

impl fmt::Debug for Connector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_some() { "Connector(tls)" } else { "Connector(plain)" })
    }
}

impl PgTls {
    /// Loads the roots and builds the TLS client configuration once.
    ///
    /// # Errors
    /// When the root certificate file cannot be read or holds no certificate.
    pub(crate) fn connector(&self) -> Result<Connector, String> {
        let provider = coupon_tls::provider();
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?;
        let config = match self.mode {
            SslMode::Disable => return Ok(Connector(None)),
            SslMode::Require => builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(Unchecked(
                    provider.signature_verification_algorithms,
                )))
                .with_no_client_auth(),
            SslMode::VerifyFull => builder
                .with_root_certificates(coupon_tls::root_store(
                    self.root_cert.as_deref(),
                    "DATABASE_SSL_ROOT_CERT",
                )?)
                .with_no_client_auth(),
        };
        Ok(Connector(Some(MakeRustlsConnect::new(config))))
    }
}

/// `require`: any certificate is accepted (as libpq does); the handshake's signatures are still
/// verified, so the session is encrypted with the key of the certificate shown.
#[derive(Debug)]
struct Unchecked(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for Unchecked {
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
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}

/// Opens one connection to `connection_string` (libpq `key=value` form) with `connector`'s TLS.
/// A failure's message starts with its [`reason`] code.
pub(crate) async fn connect(
    connection_string: &str,
    connector: &Connector,
) -> ConnectionResult<AsyncPgConnection> {
    let mut config: tokio_postgres::Config =
        connection_string.parse().map_err(|e| ConnectionError::InvalidConnectionUrl(format!("{e}")))?;
    let failed = |e: tokio_postgres::Error| ConnectionError::BadConnection(format!("{}: {e}", reason(&e)));
    match &connector.0 {
        None => {
            config.ssl_mode(tokio_postgres::config::SslMode::Disable);
            let (client, connection) = config.connect(tokio_postgres::NoTls).await.map_err(failed)?;
            AsyncPgConnection::try_from_client_and_connection(client, connection).await
        }
        Some(tls) => {
            config.ssl_mode(tokio_postgres::config::SslMode::Require);
            let (client, connection) = config.connect(tls.clone()).await.map_err(failed)?;
            AsyncPgConnection::try_from_client_and_connection(client, connection).await
        }
    }
}

/// Why a connection failed, as a readiness reason code: `AUTH_FAILED` (user or password refused),
/// `TLS_UNAVAILABLE` (the server does not speak TLS), `TLS_HOST_NAME` (the certificate is not
/// for the host connected to), `TLS_CERTIFICATE` (not trusted, expired, malformed), `TLS_ERROR`
/// (any other handshake failure), else `UNREACHABLE`.
fn reason(e: &tokio_postgres::Error) -> &'static str {
    if e.code().is_some_and(|code| {
        *code == SqlState::INVALID_PASSWORD || *code == SqlState::INVALID_AUTHORIZATION_SPECIFICATION
    }) {
        return "AUTH_FAILED";
    }
    if let Some(reason) = coupon_tls::failure_reason(e) {
        return reason;
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(cause) = source {
        if cause.to_string().contains("server does not support TLS") {
            return "TLS_UNAVAILABLE";
        }
        source = cause.source();
    }
    "UNREACHABLE"
}

/// The reason code a connection failure's message starts with (see [`connect`]).
pub(crate) fn reason_in(message: &str) -> Option<&'static str> {
    ["AUTH_FAILED", "TLS_UNAVAILABLE", "TLS_HOST_NAME", "TLS_CERTIFICATE", "TLS_ERROR"]
        .into_iter()
        .find(|reason| message.contains(&format!("{reason}: ")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_parse_as_libpq_names_them() {
        assert_eq!(SslMode::parse("disable"), Some(SslMode::Disable));
        assert_eq!(SslMode::parse("require"), Some(SslMode::Require));
        assert_eq!(SslMode::parse("verify-full"), Some(SslMode::VerifyFull));
        assert_eq!(SslMode::parse("verify-ca"), None);
    }

    #[test]
    fn an_unreadable_root_file_is_refused_when_the_pool_is_built() {
        let tls = PgTls { mode: SslMode::VerifyFull, root_cert: Some("/nonexistent/ca.pem".into()) };
        let error = tls.connector().expect_err("no such file");
        assert!(error.contains("DATABASE_SSL_ROOT_CERT /nonexistent/ca.pem"), "{error}");
    }
}
