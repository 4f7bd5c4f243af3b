//! Whether the Redis under the ledger would evict keys: with any
//! `maxmemory-policy` but `noeviction`, a full Redis silently drops users'
//! books and grants. Read from `INFO memory` (which managed Redis services
//! leave enabled where `CONFIG` is renamed), on every node a cluster
//! answers for; kept for readiness and the `formid_store_evicting` gauge.

use std::sync::Mutex;

use redis::Value;

use super::RedisConnection;
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
        let policy = evicting_policy(&answer);
        metrics::gauge!(STORE_EVICTING).set(if policy.is_some() { 1.0 } else { 0.0 });
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

/// The first `maxmemory_policy` other than `noeviction` in an `INFO`
/// answer (one text, or one per cluster node).
fn evicting_policy(answer: &Value) -> Option<String> {
    let texts: Vec<String> = match answer {
        Value::BulkString(bytes) => vec![String::from_utf8_lossy(bytes).into_owned()],
        Value::VerbatimString { text, .. } | Value::SimpleString(text) => vec![text.clone()],
        Value::Map(pairs) => pairs.iter().map(|(_, v)| v).flat_map(texts_of).collect(),
        Value::Array(values) => values.iter().flat_map(texts_of).collect(),
        _ => Vec::new(),
    };
    texts.iter().flat_map(|t| t.lines()).find_map(|line| {
        let policy = line.trim().strip_prefix("maxmemory_policy:")?;
        (policy != SAFE).then(|| policy.to_owned())
    })
}

fn texts_of(value: &Value) -> Vec<String> {
    match value {
        Value::BulkString(bytes) => vec![String::from_utf8_lossy(bytes).into_owned()],
        Value::VerbatimString { text, .. } | Value::SimpleString(text) => vec![text.clone()],
        Value::Array(values) => values.iter().flat_map(texts_of).collect(),
        _ => Vec::new(),
    }
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
        assert_eq!(evicting_policy(&bulk(safe)), None);
        assert_eq!(evicting_policy(&bulk(lru)).as_deref(), Some("allkeys-lru"));
        let cluster = Value::Map(vec![(bulk("a:1"), bulk(safe)), (bulk("b:2"), bulk(lru))]);
        assert_eq!(evicting_policy(&cluster).as_deref(), Some("allkeys-lru"));
        assert_eq!(evicting_policy(&Value::Nil), None);
    }
}
