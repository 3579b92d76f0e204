//! Reading overlay network records from the cluster store, and the small encodings the
//! network keys share (`network-ids/<id>` holds the name as a JSON string).

use crate::adapters::cluster::{ClusterStore, KeyValue};
use crate::core::cluster::keys::{networks_prefix, Key, PREFIX};
use crate::core::model::Network;

use super::ClusterError;

/// How many times a use case retries a transaction another node's write made fail.
pub const ATTEMPTS: usize = 64;

/// Key of network `name`'s record.
pub fn network_key(name: &str) -> String {
    Key::Network { name: name.into() }.render()
}

/// Key of network id `id`'s name.
pub fn id_key(id: &str) -> String {
    Key::NetworkId { id: id.into() }.render()
}

/// Prefix of every VNI claim.
pub fn vnis_prefix() -> String {
    format!("{PREFIX}vnis/")
}

/// Prefix of one network's endpoints on every node.
pub fn network_endpoints_prefix(id: &str) -> String {
    format!("{}{id}/", crate::core::cluster::keys::endpoints_prefix())
}

/// The value of `network-ids/<id>`: the name, as JSON.
pub fn id_value(name: &str) -> Vec<u8> {
    serde_json::to_vec(name).unwrap_or_default()
}

/// Decodes a network record read under `kv.key`.
pub fn decode(kv: &KeyValue) -> Result<Network, ClusterError> {
    serde_json::from_slice(&kv.value).map_err(|e| ClusterError::Corrupt {
        key: kv.key.clone(),
        detail: e.to_string(),
    })
}

/// The JSON stored for a network.
pub fn encode(net: &Network) -> Vec<u8> {
    serde_json::to_vec(net).unwrap_or_default()
}

/// Overlay network `name` and the revision its record was last changed at.
pub fn by_name(
    store: &dyn ClusterStore,
    name: &str,
) -> Result<Option<(Network, i64)>, ClusterError> {
    match store.get(&network_key(name))? {
        None => Ok(None),
        Some(kv) => Ok(Some((decode(&kv)?, kv.mod_revision))),
    }
}

/// Every overlay network in the cluster (unreadable records are skipped: another node's
/// bad write must not stop this one's commands).
pub fn all(store: &dyn ClusterStore) -> Result<Vec<Network>, ClusterError> {
    Ok(store
        .snapshot(&networks_prefix())?
        .kvs
        .iter()
        .filter_map(|kv| decode(kv).ok())
        .collect())
}
