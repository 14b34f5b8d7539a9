//! What the adapters share about TLS: the root certificates a client trusts (a PEM file named by
//! a setting, or the system's) and why a handshake failed, as the reason code readiness reports.
//! Each adapter builds its client from these with its driver's own TLS hook.

use std::error::Error;
use std::path::Path;
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use rustls::{CertificateError, RootCertStore};

/// The crypto provider of every TLS client here: ring, as tokio-postgres-rustls and rskafka use.
#[expect(
    deprecated,
    reason = "ring's provider has no post-quantum key exchange, which the servers' OpenSSL does not offer \
              either; aws-lc-rs would add a second crypto library to the build (the drivers use ring)"
)]
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The certificates of the PEM file `file` (named by the setting `setting` in errors), or the
/// system's when `file` is `None`.
///
/// # Errors
/// When the file cannot be read or holds no certificate, or the system has none.
pub fn root_certificates(file: Option<&Path>, setting: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs: Vec<CertificateDer<'static>> = match file {
        Some(path) => CertificateDer::pem_file_iter(path)
            .and_then(Iterator::collect)
            .map_err(|e| format!("{setting} {}: {e}", path.display()))?,
        None => rustls_native_certs::load_native_certs().certs,
    };
    if certs.is_empty() {
        return Err(match file {
            Some(path) => format!("{setting} {}: no certificate in it", path.display()),
            None => format!("no system root certificate found; set {setting}"),
        });
    }
    Ok(certs)
}

/// [`root_certificates`] as a store rustls verifies against.
///
/// # Errors
/// As [`root_certificates`], or when none of them parses.
pub fn root_store(file: Option<&Path>, setting: &str) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(root_certificates(file, setting)?);
    if added == 0 {
        return Err(format!("{setting}: none of the certificates is usable"));
    }
    Ok(roots)
}

/// The reason code of a failed TLS handshake found in `error` or its sources: `TLS_HOST_NAME`
/// (the certificate is not for the host connected to), `TLS_CERTIFICATE` (not trusted, expired,
/// malformed), `TLS_UNAVAILABLE` (the server answered in plain text), `TLS_ERROR` (any other
/// handshake failure); `None` when no TLS error is in the chain.
///
/// A driver that keeps the I/O error behind a type-erased `Arc` (redis-rs) hides the rustls error
/// from downcasting, so each error's text is read too.
pub fn failure_reason(error: &(dyn Error + 'static)) -> Option<&'static str> {
    let mut cause = Some(error);
    while let Some(current) = cause {
        let tls = current.downcast_ref::<rustls::Error>().or_else(|| {
            current
                .downcast_ref::<std::io::Error>()
                .and_then(|io| io.get_ref()?.downcast_ref::<rustls::Error>())
        });
        if let Some(reason) = tls.map(reason_of).or_else(|| failure_reason_in(&current.to_string())) {
            return Some(reason);
        }
        cause = current.source();
    }
    None
}

fn reason_of(error: &rustls::Error) -> &'static str {
    match error {
        rustls::Error::InvalidCertificate(
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
        ) => "TLS_HOST_NAME",
        rustls::Error::InvalidCertificate(_) => "TLS_CERTIFICATE",
        // What a plain-text server writes back is not a TLS record.
        rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType) => "TLS_UNAVAILABLE",
        _ => "TLS_ERROR",
    }
}

/// The reason code of a failed TLS handshake named in `text`: rustls's errors as they display
/// (`invalid peer certificate: …`) or as they debug-print (`InvalidCertificate(…)`), for drivers
/// that keep a failure's causes only in their error's text.
pub fn failure_reason_in(text: &str) -> Option<&'static str> {
    if text.contains("invalid peer certificate: ") || text.contains("InvalidCertificate(") {
        let host = text.contains("not valid for name") || text.contains("NotValidForName");
        Some(if host { "TLS_HOST_NAME" } else { "TLS_CERTIFICATE" })
    } else if text.contains("received corrupt message of type InvalidContentType")
        || text.contains("InvalidContentType")
    {
        Some("TLS_UNAVAILABLE")
    } else if text.contains("received fatal alert") || text.contains("peer is incompatible") {
        Some("TLS_ERROR")
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_root_file_is_named_with_its_setting() {
        let error = root_store(Some(Path::new("/nonexistent/ca.pem")), "REDIS_TLS_CA").expect_err("no file");
        assert!(error.starts_with("REDIS_TLS_CA /nonexistent/ca.pem: "), "{error}");
    }

    #[test]
    fn handshake_failures_are_named_through_io_errors() {
        let wrapped = |e: rustls::Error| std::io::Error::new(std::io::ErrorKind::InvalidData, e);
        let host = wrapped(rustls::Error::InvalidCertificate(CertificateError::NotValidForName));
        let untrusted = wrapped(rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer));
        let plain = wrapped(rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType));
        assert_eq!(failure_reason(&host), Some("TLS_HOST_NAME"));
        assert_eq!(failure_reason(&untrusted), Some("TLS_CERTIFICATE"));
        assert_eq!(failure_reason(&plain), Some("TLS_UNAVAILABLE"));
        assert_eq!(failure_reason(&std::io::Error::other("refused")), None);
    }

    #[test]
    fn handshake_failures_are_named_from_their_text_when_the_error_is_hidden() {
        let hidden = |e: rustls::Error| std::io::Error::other(format!("Io: {e}"));
        let host = hidden(rustls::Error::InvalidCertificate(CertificateError::NotValidForName));
        let untrusted = hidden(rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer));
        let plain = hidden(rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType));
        assert_eq!(failure_reason(&host), Some("TLS_HOST_NAME"));
        assert_eq!(failure_reason(&untrusted), Some("TLS_CERTIFICATE"));
        assert_eq!(failure_reason(&plain), Some("TLS_UNAVAILABLE"));
    }
}
