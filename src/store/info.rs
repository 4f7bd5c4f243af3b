//! Reading Redis's `INFO` answers: one text from a single server, or one
//! per node from a cluster (keyed by the node's address).

use redis::Value;

/// Each node's `INFO` text with its address (empty for a single server).
pub(super) fn node_texts(answer: &Value) -> Vec<(String, String)> {
    match answer {
        Value::Map(pairs) => pairs
            .iter()
            .flat_map(|(node, v)| {
                let node = texts_of(node).concat();
                texts_of(v).into_iter().map(move |t| (node.clone(), t))
            })
            .collect(),
        other => texts_of(other).into_iter().map(|t| (String::new(), t)).collect(),
    }
}

/// The value of `field` (`name:value` lines) in one `INFO` text.
pub(super) fn field<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    text.lines().find_map(|line| {
        let (key, value) = line.trim().split_once(':')?;
        (key == name).then_some(value)
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
    fn one_text_per_node_and_fields_by_name() {
        let single = node_texts(&bulk("# Replication\r\nrole:master\r\nconnected_slaves:2\r\n"));
        assert_eq!(single.len(), 1);
        assert_eq!(field(&single[0].1, "connected_slaves"), Some("2"));
        assert_eq!(field(&single[0].1, "connected"), None);
        let cluster = node_texts(&Value::Map(vec![
            (bulk("a:1"), bulk("role:master\r\n")),
            (bulk("b:2"), bulk("role:slave\r\n")),
        ]));
        assert_eq!(
            cluster
                .iter()
                .map(|(n, t)| (n.as_str(), field(t, "role")))
                .collect::<Vec<_>>(),
            [("a:1", Some("master")), ("b:2", Some("slave"))]
        );
        assert!(node_texts(&Value::Nil).is_empty());
    }
}
