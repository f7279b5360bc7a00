//! Streamed exports per client and per credential: one client (by IP address) may hold at most
//! `server.max_exports_per_client` exports at once, so a single client cannot take every read
//! connection with exports it does not read; past it, `503` with `Retry-After`. The overall cap is
//! the read connections themselves (a read waits for one within the query timeout, then `503`).

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde_json::json;

use crate::problem::Problem;

/// The client, as the connection loop recorded its address (unspecified when there is none): an
/// IPv4 address, or an IPv6 address's /64 network, which one host commonly holds whole (one
/// address each would let it open as many exports as it has addresses).
pub struct Client(pub IpAddr);

/// The part of `peer` that names one client.
fn client_of(peer: IpAddr) -> IpAddr {
    match peer {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & !u128::from(u64::MAX)).into()),
        },
        v4 => v4,
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Client {
    type Rejection = Infallible;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Infallible> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.0.ip());
        Ok(Client(client_of(peer)))
    }
}

/// Who holds exports: a client (by address), answered `503` past its share, or a credential (by
/// name), answered `429`.
pub trait Holder: std::hash::Hash + Eq + Clone + Send + Sync + 'static {
    const STATUS: StatusCode;
    const SETTING: &'static str;
    const WHO: &'static str;
}

impl Holder for IpAddr {
    const STATUS: StatusCode = StatusCode::SERVICE_UNAVAILABLE;
    const SETTING: &'static str = "server.max_exports_per_client";
    const WHO: &'static str = "this client";
}

impl Holder for String {
    const STATUS: StatusCode = StatusCode::TOO_MANY_REQUESTS;
    const SETTING: &'static str = "auth.max_exports_per_credential";
    const WHO: &'static str = "this credential";
}

/// Exports in progress, per holder.
#[derive(Clone)]
pub struct ExportSlots<K: Holder> {
    per_holder: usize,
    running: Arc<Mutex<HashMap<K, usize>>>,
}

/// An export's place, given back when dropped (with the answer's body).
pub struct ExportSlot<K: Holder> {
    holder: K,
    running: Arc<Mutex<HashMap<K, usize>>>,
}

impl<K: Holder> ExportSlots<K> {
    pub fn new(per_holder: usize) -> Self {
        ExportSlots {
            per_holder: per_holder.max(1),
            running: Arc::default(),
        }
    }

    /// A place for one more export of `holder`, or the problem saying it has too many.
    pub fn take(&self, holder: K) -> Result<ExportSlot<K>, Problem> {
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        let count = running.entry(holder.clone()).or_default();
        if *count >= self.per_holder {
            return Err(Problem::new(
                K::STATUS,
                "too-many-exports",
                "Too many exports",
                format!(
                    "{} has {} streamed exports open, as many as {} allows; finish one and retry",
                    K::WHO,
                    self.per_holder,
                    K::SETTING
                ),
            )
            .with("limit", json!(self.per_holder))
            .with("setting", json!(K::SETTING)));
        }
        *count += 1;
        Ok(ExportSlot {
            holder,
            running: Arc::clone(&self.running),
        })
    }
}

impl<K: Holder> Drop for ExportSlot<K> {
    fn drop(&mut self) {
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(count) = running.get_mut(&self.holder) {
            *count -= 1;
            if *count == 0 {
                running.remove(&self.holder);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_client_holds_at_most_its_share_and_gets_it_back() {
        let slots = ExportSlots::<IpAddr>::new(2);
        let (a, b) = (IpAddr::from([10, 0, 0, 1]), IpAddr::from([10, 0, 0, 2]));
        let first = slots.take(a).unwrap();
        let _second = slots.take(a).unwrap();
        assert!(slots.take(a).is_err());
        let _other = slots.take(b).unwrap();
        drop(first);
        let _again = slots.take(a).unwrap();
        assert!(slots.take(a).is_err());
    }

    #[test]
    fn an_ipv6_network_is_one_client() {
        let of = |text: &str| client_of(text.parse().unwrap());
        assert_eq!(of("2001:db8:1:2:aaaa::1"), of("2001:db8:1:2:bbbb::9"));
        assert_ne!(of("2001:db8:1:2::1"), of("2001:db8:1:3::1"));
        assert_eq!(of("::ffff:10.0.0.1"), of("10.0.0.1"));
        assert_ne!(of("10.0.0.1"), of("10.0.0.2"));
    }
}
