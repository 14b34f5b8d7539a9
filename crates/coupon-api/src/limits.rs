//! The abuse limits at the HTTP edge: the `X-RateLimit-*` headers of the domain's rate windows,
//! and the client address that code guessers are blocked by (the domain's `Guard` decides).

use std::net::IpAddr;
use std::sync::Arc;

use actix_web::HttpRequest;
use coupon_domain::limits::RateStatus;
use ipnet::IpNet;

/// `X-RateLimit-*` headers for a status.
pub fn rate_headers(status: &RateStatus) -> Vec<(&'static str, String)> {
    vec![
        ("X-RateLimit-Limit", status.limit.to_string()),
        ("X-RateLimit-Remaining", status.remaining.to_string()),
        ("X-RateLimit-Reset", status.reset_after.as_secs().to_string()),
    ]
}

/// The proxies in front of the service (`HTTP_TRUSTED_PROXIES`): only they may name the client
/// in `X-Forwarded-For` (SPEC §10). Anyone else could name any address, to slip past a block or
/// to get a victim's address blocked.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Arc<[IpNet]>);

/// Most `X-Forwarded-For` entries read, from the right: a chain of proxies is short, and a
/// client must not make the server walk a header of thousands.
const MAX_FORWARDED_HOPS: usize = 16;

impl TrustedProxies {
    pub fn new(networks: Vec<IpNet>) -> Self {
        Self(networks.into())
    }

    fn contains(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|net| net.contains(&ip))
    }

    /// The client's address: the TCP peer, unless the peer is a trusted proxy; then the
    /// right-most `X-Forwarded-For` address that is not one (values that are not IP addresses are
    /// ignored). `None` when every hop is a trusted proxy: a proxy's address, shared by all its
    /// clients, must never be blocked.
    pub fn client_address(&self, req: &HttpRequest) -> Option<IpAddr> {
        let peer = req.peer_addr()?.ip().to_canonical();
        if !self.contains(peer) {
            return Some(peer);
        }
        let headers: Vec<&str> =
            req.headers().get_all("X-Forwarded-For").filter_map(|v| v.to_str().ok()).collect();
        headers
            .iter()
            .rev()
            .flat_map(|header| header.rsplit(','))
            .take(MAX_FORWARDED_HOPS)
            .filter_map(|hop| hop.trim().parse::<IpAddr>().ok())
            .map(|ip| ip.to_canonical())
            .find(|ip| !self.contains(*ip))
    }
}
