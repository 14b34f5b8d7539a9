//! TLS and SASL towards Kafka (`KAFKA_SECURITY_PROTOCOL`, SPEC §11.7): applied to rskafka's client
//! and to the admin connections this crate opens itself.
//!
//! TLS is rustls with the ring provider, the certificate checked against `KAFKA_SSL_CA` (or the
//! system's roots) and the broker's host name; SASL is PLAIN or SCRAM-SHA-256/512 (rsasl, as
//! rskafka uses), and only ever over TLS.

use std::io::Cursor;
use std::path::PathBuf;
use std::sync::Arc;

use rsasl::prelude::{Mechname, SASLClient, SASLConfig, Session};
use rskafka::client::{ClientBuilder, Credentials, SaslConfig};
use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use secrecy::{ExposeSecret, SecretString};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// A SASL mechanism (`KAFKA_SASL_MECHANISM`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaslMechanism {
    Plain,
    ScramSha256,
    ScramSha512,
}

impl SaslMechanism {
    /// Parses Kafka's name of the mechanism.
    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "PLAIN" => Some(Self::Plain),
            "SCRAM-SHA-256" => Some(Self::ScramSha256),
            "SCRAM-SHA-512" => Some(Self::ScramSha512),
            _ => None,
        }
    }

    /// Kafka's name of the mechanism.
    pub fn name(self) -> &'static str {
        match self {
            Self::Plain => "PLAIN",
            Self::ScramSha256 => "SCRAM-SHA-256",
            Self::ScramSha512 => "SCRAM-SHA-512",
        }
    }
}

/// SASL credentials.
#[derive(Debug, Clone)]
pub struct KafkaSasl {
    pub mechanism: SaslMechanism,
    pub username: String,
    pub password: SecretString,
}

/// How connections to the brokers are secured: `PLAINTEXT` (neither), `SSL` (TLS), `SASL_SSL`
/// (both).
#[derive(Debug, Clone, Default)]
pub struct KafkaSecurity {
    /// `None`: plain text. `Some(None)`: TLS with the system's roots; `Some(Some(path))`: the roots
    /// of the PEM file `KAFKA_SSL_CA`.
    pub tls: Option<Option<PathBuf>>,
    /// Only with TLS.
    pub sasl: Option<KafkaSasl>,
}

/// [`KafkaSecurity`] ready to connect with: the TLS configuration built once.
#[derive(Clone)]
pub(crate) struct Secured {
    tls: Option<Arc<ClientConfig>>,
    sasl: Option<KafkaSasl>,
}

impl std::fmt::Debug for Secured {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Secured")
            .field("tls", &self.tls.is_some())
            .field("sasl", &self.sasl.as_ref().map(|s| s.mechanism))
            .finish()
    }
}

/// A connection to one broker for the admin requests.
pub(crate) trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

impl KafkaSecurity {
    /// Loads the roots and builds the TLS configuration.
    ///
    /// # Errors
    /// When `KAFKA_SSL_CA` cannot be read or holds no certificate, or SASL is asked without TLS.
    pub(crate) fn prepare(&self) -> Result<Secured, String> {
        if self.sasl.is_some() && self.tls.is_none() {
            return Err("SASL is only sent over TLS (KAFKA_SECURITY_PROTOCOL=SASL_SSL)".to_owned());
        }
        let tls = match &self.tls {
            None => None,
            Some(ca_file) => {
                let roots = coupon_tls::root_store(ca_file.as_deref(), "KAFKA_SSL_CA")?;
                let config = ClientConfig::builder_with_provider(coupon_tls::provider())
                    .with_safe_default_protocol_versions()
                    .map_err(|e| e.to_string())?
                    .with_root_certificates(roots)
                    .with_no_client_auth();
                Some(Arc::new(config))
            }
        };
        Ok(Secured { tls, sasl: self.sasl.clone() })
    }
}

impl Secured {
    /// `builder` with this TLS and SASL.
    pub(crate) fn apply(&self, mut builder: ClientBuilder) -> ClientBuilder {
        if let Some(tls) = &self.tls {
            builder = builder.tls_config(tls.clone());
        }
        if let Some(sasl) = &self.sasl {
            let credentials =
                Credentials::new(sasl.username.clone(), sasl.password.expose_secret().to_owned());
            builder = builder.sasl_config(match sasl.mechanism {
                SaslMechanism::Plain => SaslConfig::Plain(credentials),
                SaslMechanism::ScramSha256 => SaslConfig::ScramSha256(credentials),
                SaslMechanism::ScramSha512 => SaslConfig::ScramSha512(credentials),
            });
        }
        builder
    }

    /// A connection to `address` (`host:port`), over TLS when configured. SASL is left to the
    /// caller, which owns the framing ([`Self::sasl`]).
    pub(crate) async fn connect(&self, address: &str) -> Result<Box<dyn Stream>, String> {
        let socket = TcpStream::connect(address).await.map_err(|e| format!("connect: {e}"))?;
        let Some(tls) = &self.tls else { return Ok(Box::new(socket)) };
        let host = address.rsplit_once(':').map_or(address, |(host, _)| host).trim_matches(['[', ']']);
        let name =
            ServerName::try_from(host.to_owned()).map_err(|e| format!("TLS server name {host:?}: {e}"))?;
        let stream = TlsConnector::from(tls.clone())
            .connect(name, socket)
            .await
            .map_err(|e| format!("TLS handshake: {e}"))?;
        Ok(Box::new(stream))
    }

    /// Neither TLS nor SASL: nothing the brokers could refuse besides the connection itself.
    pub(crate) fn is_plain(&self) -> bool {
        self.tls.is_none() && self.sasl.is_none()
    }

    /// The SASL credentials to authenticate with, if any.
    pub(crate) fn sasl(&self) -> Option<&KafkaSasl> {
        self.sasl.as_ref()
    }
}

/// A SASL exchange in progress, one message of ours at a time.
pub(crate) struct Exchange(Session);

impl Exchange {
    /// Starts `sasl`'s mechanism.
    ///
    /// # Errors
    /// When the mechanism cannot start with these credentials.
    pub(crate) fn start(sasl: &KafkaSasl) -> Result<Self, String> {
        let config = SASLConfig::with_credentials(
            None,
            sasl.username.clone(),
            sasl.password.expose_secret().to_owned(),
        )
        .map_err(|e| format!("SASL configuration: {e}"))?;
        let mechanism =
            Mechname::parse(sasl.mechanism.name().as_bytes()).map_err(|e| format!("SASL mechanism: {e}"))?;
        let session = SASLClient::new(config)
            .start_suggested(&[mechanism])
            .map_err(|e| format!("SASL mechanism {}: {e}", sasl.mechanism.name()))?;
        Ok(Self(session))
    }

    /// Our next message after the broker's `received` (`None` at first), if there is one, and
    /// whether the exchange is over.
    ///
    /// # Errors
    /// When the broker's answer does not verify (SCRAM checks the server too).
    pub(crate) fn step(&mut self, received: Option<&[u8]>) -> Result<(Option<Vec<u8>>, bool), String> {
        let mut ours = Cursor::new(Vec::new());
        let state = self.0.step(received, &mut ours).map_err(|e| format!("SASL: {e}"))?;
        Ok((state.has_sent_message().then(|| ours.into_inner()), state.is_finished()))
    }
}
