//! The shapes the API gives templates in (docs/api.md), the same for every
//! channel, and how each of WeChat's three dialects maps onto them.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::domain::{ChannelKind, TemplateDialect};

/// One of the account's templates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AccountTemplate {
    pub template_id: String,
    pub title: String,
    /// WeChat's content, `name:{{key.DATA}}` lines.
    pub content: String,
    /// The `data` keys, from the content's placeholders, in order.
    pub keys: Vec<String>,
    /// A long-term subscribe template (WeChat's `type` 3): one accept lets
    /// the app send until the user turns it off. False for every other
    /// template.
    #[serde(default)]
    pub long_term: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct LibraryItem {
    pub id: String,
    pub title: String,
}

/// A page of a template library.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct LibraryPage {
    pub items: Vec<LibraryItem>,
    /// Entries in the whole library (or the categories asked for).
    pub total: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct LibraryKeyword {
    pub id: u32,
    pub name: String,
    pub example: String,
    /// A subscribe keyword's data type (`thing`, `time`, ...): its `data`
    /// key is this followed by the id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
}

/// A library entry and the keywords a template can be made of.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct LibraryEntry {
    pub id: String,
    /// Absent where WeChat does not say (the subscribe library's keyword call).
    pub title: Option<String>,
    pub keywords: Vec<LibraryKeyword>,
}

/// The `data` keys of a template content: each `{{key.DATA}}`, in order.
pub fn keys_of(content: &str) -> Vec<String> {
    let mut keys = Vec::new();
    let mut rest = content;
    while let Some(open) = rest.find("{{") {
        rest = &rest[open + 2..];
        let Some(close) = rest.find("}}") else { break };
        if let Some(key) = rest[..close].strip_suffix(".DATA")
            && !key.is_empty()
            && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        {
            keys.push(key.to_owned());
        }
        rest = &rest[close + 2..];
    }
    keys
}

fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => String::new(),
    }
}

fn items<'v>(answer: &'v Value, field: &str) -> &'v [Value] {
    answer[field].as_array().map_or(&[], Vec::as_slice)
}

impl LibraryPage {
    /// `wxopen/template/library/list`: `{list: [{id, title}], total_count}`.
    pub fn from_template_library(answer: &Value) -> Self {
        Self {
            items: items(answer, "list")
                .iter()
                .map(|e| LibraryItem {
                    id: text(&e["id"]),
                    title: text(&e["title"]),
                })
                .collect(),
            total: answer["total_count"].as_u64().unwrap_or_default(),
        }
    }

    /// `getpubtemplatetitles`: `{count, data: [{tid, title, type, categoryId}]}`.
    pub fn from_subscribe_titles(answer: &Value) -> Self {
        Self {
            items: items(answer, "data")
                .iter()
                .map(|e| LibraryItem {
                    id: text(&e["tid"]),
                    title: text(&e["title"]),
                })
                .collect(),
            total: answer["count"].as_u64().unwrap_or_default(),
        }
    }
}

impl LibraryEntry {
    /// `wxopen/template/library/get`: `{id, title, keyword_list: [{keyword_id, name, example}]}`.
    pub fn from_template_library(answer: &Value) -> Self {
        Self {
            id: text(&answer["id"]),
            title: Some(text(&answer["title"])),
            keywords: items(answer, "keyword_list")
                .iter()
                .map(|k| LibraryKeyword {
                    id: k["keyword_id"].as_u64().unwrap_or_default() as u32,
                    name: text(&k["name"]),
                    example: text(&k["example"]),
                    rule: None,
                })
                .collect(),
        }
    }

    /// `getpubtemplatekeywords`: `{count, data: [{kid, name, example, rule}]}`.
    pub fn from_subscribe_keywords(tid: &str, answer: &Value) -> Self {
        Self {
            id: tid.to_owned(),
            title: None,
            keywords: items(answer, "data")
                .iter()
                .map(|k| LibraryKeyword {
                    id: k["kid"].as_u64().unwrap_or_default() as u32,
                    name: text(&k["name"]),
                    example: text(&k["example"]),
                    rule: Some(text(&k["rule"])),
                })
                .collect(),
        }
    }
}

/// `getcategory`'s ids, comma-separated: `{data: [{id, name}]}`.
pub fn category_ids(answer: &Value) -> String {
    items(answer, "data")
        .iter()
        .map(|c| text(&c["id"]))
        .collect::<Vec<_>>()
        .join(",")
}

/// An account list in any channel's dialect: `list` of `template_id`
/// (old library), `data` of `priTmplId` (subscribe), `template_list` of
/// `template_id` (official account).
/// `gettemplate`'s `type` of a long-term template (2 is one-time).
const LONG_TERM_TYPE: i64 = 3;

pub fn account_list(channel: ChannelKind, answer: &Value) -> Vec<AccountTemplate> {
    let (field, id) = match channel.templates() {
        TemplateDialect::OldLibrary => ("list", "template_id"),
        TemplateDialect::Subscribe => ("data", "priTmplId"),
        TemplateDialect::OfficialAccount => ("template_list", "template_id"),
    };
    items(answer, field)
        .iter()
        .map(|t| {
            let content = text(&t["content"]);
            AccountTemplate {
                template_id: text(&t[id]),
                title: text(&t["title"]),
                keys: keys_of(&content),
                content,
                long_term: channel.templates() == TemplateDialect::Subscribe
                    && t["type"].as_i64() == Some(LONG_TERM_TYPE),
            }
        })
        .filter(|t| !t.template_id.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keys_are_the_placeholders_in_order() {
        let content = "物品名称:{{thing1.DATA}}\n发货时间:{{time3.DATA}}\n{{ not a key }}{{phrase4.DATA}}";
        assert_eq!(keys_of(content), ["thing1", "time3", "phrase4"]);
        assert_eq!(keys_of("{{first.DATA}}\n{{remark.DATA}}"), ["first", "remark"]);
        assert!(keys_of("no placeholders {{unclosed.DATA").is_empty());
    }

    #[test]
    fn each_dialect_maps_onto_one_shape() {
        let subscribe = json!({"data": [{"priTmplId": "abc", "title": "订单发货通知",
            "content": "物品名称:{{thing1.DATA}}\n", "type": 2},
            {"priTmplId": "def", "title": "办理进度通知", "content": "", "type": 3}]});
        let list = account_list(ChannelKind::Subscribe, &subscribe);
        assert_eq!(
            list[0],
            AccountTemplate {
                template_id: "abc".into(),
                title: "订单发货通知".into(),
                content: "物品名称:{{thing1.DATA}}\n".into(),
                keys: vec!["thing1".into()],
                long_term: false,
            }
        );
        assert!(list[1].long_term, "type 3 is long-term");
        let titles = json!({"count": 7, "data": [{"tid": 99, "title": "订单发货通知", "type": 2, "categoryId": "307"}]});
        let page = LibraryPage::from_subscribe_titles(&titles);
        assert_eq!((page.items[0].id.as_str(), page.total), ("99", 7));
        assert_eq!(
            category_ids(&json!({"data": [{"id": 307}, {"id": 616}]})),
            "307,616"
        );
        assert_eq!(
            ChannelKind::parse("official_account"),
            Some(ChannelKind::OfficialAccount)
        );
        assert_eq!(ChannelKind::parse("oa"), None);
    }
}
