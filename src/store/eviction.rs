//! Whether the Redis under the ledger would evict keys: with any
//! `maxmemory-policy` but `noeviction`, a full Redis silently drops users'
//! books and grants. Read from `INFO memory` (which managed Redis services
//! leave enabled where `CONFIG` is renamed), on every node a cluster
//! answers for; kept for readiness and the `formid_store_evicting` gauge.

use std::sync::Mutex;

use redis::Value;

use super::RedisConnection;
use super::info::{field, node_texts};
use crate::metrics::STORE_EVICTING;

/// The policy Redis keeps when memory is full and nothing may be evicted.
const SAFE: &str = "noeviction";

/// The last policy seen that would evict, if any.
#[derive(Debug, Default)]
pub struct EvictionWatch {
    evicting: Mutex<Option<String>>,
}

impl EvictionWatch {
    /// The evicting policy the store was last seen with.
    pub fn evicting(&self) -> Option<String> {
        self.evicting.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Asks Redis again; a store that does not answer keeps what was seen.
    pub async fn check(&self, redis: &RedisConnection) {
        let Ok(answer) = redis.query(&redis::cmd("INFO").arg("memory").to_owned()).await else {
            return;
        };
        // One gauge per node (a single server's INFO names no node), so the
        // one that would evict is named and processes sharing a registry
        // keep their stores apart.
        let nodes = evicting_policies(&answer);
        for (node, evicting) in &nodes {
            let node = if node.is_empty() {
                redis.address()
            } else {
                node.clone()
            };
            metrics::gauge!(STORE_EVICTING, "node" => node).set(if evicting.is_some() { 1.0 } else { 0.0 });
        }
        let policy = nodes.into_iter().find_map(|(_, evicting)| evicting);
        let mut seen = self.evicting.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(policy) = &policy
            && seen.as_ref() != Some(policy)
        {
            tracing::error!(
                policy,
                "Redis's maxmemory-policy is {policy}, not noeviction: when memory runs out, Redis will \\
                 silently drop users' credentials and grants. Set maxmemory-policy noeviction (deploy/redis.conf)"
            );
        }
        *seen = policy;
    }
}

/// Each node of an `INFO` answer (one text, or one per cluster node) with
/// its `maxmemory_policy` if that is not `noeviction`.
fn evicting_policies(answer: &Value) -> Vec<(String, Option<String>)> {
    node_texts(answer)
        .into_iter()
        .map(|(node, text)| {
            let policy = field(&text, "maxmemory_policy").filter(|p| *p != SAFE);
            let policy = policy.map(str::to_owned);
            (node, policy)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(text: &str) -> Value {
        Value::BulkString(text.as_bytes().to_vec())
    }

    #[test]
    fn only_a_policy_other_than_noeviction_counts() {
        let safe = "# Memory\r\nused_memory:1\r\nmaxmemory_policy:noeviction\r\n";
        let lru = "# Memory\r\nmaxmemory_policy:allkeys-lru\r\n";
        let policy = |answer: &Value| evicting_policies(answer);
        assert_eq!(policy(&bulk(safe)), [(String::new(), None)]);
        assert_eq!(
            policy(&bulk(lru)),
            [(String::new(), Some("allkeys-lru".to_owned()))]
        );
        let cluster = Value::Map(vec![(bulk("a:1"), bulk(safe)), (bulk("b:2"), bulk(lru))]);
        assert_eq!(
            policy(&cluster),
            [
                ("a:1".to_owned(), None),
                ("b:2".to_owned(), Some("allkeys-lru".to_owned()))
            ]
        );
        assert!(policy(&Value::Nil).is_empty());
    }
}
