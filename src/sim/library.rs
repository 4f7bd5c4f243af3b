//! Template management as WeChat offers it: the public libraries a template
//! is picked from (a small catalogue of its own, with keyword ids and
//! example values), and each channel's account templates with their
//! titles, contents and limits. Which templates a send may use is mirrored
//! into the send checks by `state`.

use std::collections::BTreeMap;

use serde_json::{Value, json};

/// Mini-program template messages (the old library), subscribe messages,
/// and the official account's template messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Channel {
    Template,
    Subscribe,
    OfficialAccount,
    /// The official account's subscribe templates (`wxaapi/newtmpl/*`
    /// under its token).
    OfficialAccountSubscribe,
}

impl Channel {
    /// Templates an account may hold (WeChat: 25 of the old library, 50
    /// subscribe templates, 25 on an official account).
    pub fn limit(self) -> usize {
        match self {
            Channel::Template | Channel::OfficialAccount => 25,
            Channel::Subscribe | Channel::OfficialAccountSubscribe => 50,
        }
    }
}

/// A keyword of a library entry: WeChat's id, its name, the data type of a
/// subscribe keyword (`thing`, `time`, ...; the data key is type + id) and
/// an example value.
pub struct Keyword {
    pub id: u32,
    pub name: &'static str,
    pub rule: &'static str,
    pub example: &'static str,
}

pub struct Entry {
    pub id: &'static str,
    pub title: &'static str,
    /// The subscribe library's category.
    pub category: u32,
    pub keywords: &'static [Keyword],
}

const fn kw(id: u32, name: &'static str, rule: &'static str, example: &'static str) -> Keyword {
    Keyword {
        id,
        name,
        rule,
        example,
    }
}

/// The old mini-program template library (`wxopen/template/library/*`).
pub const TEMPLATE_LIBRARY: [Entry; 3] = [
    Entry {
        id: "AT0002",
        title: "购买成功通知",
        category: 0,
        keywords: &[
            kw(3, "购买地点", "", "TIT造舰厂"),
            kw(4, "购买时间", "", "2016年6月6日"),
            kw(5, "物品名称", "", "咖啡"),
            kw(7, "交易单号", "", "1234567890"),
        ],
    },
    Entry {
        id: "AT0007",
        title: "订单发货提醒",
        category: 0,
        keywords: &[
            kw(1, "订单编号", "", "201601010001"),
            kw(2, "快递公司", "", "顺丰速运"),
            kw(3, "快递单号", "", "SF1234567890"),
            kw(5, "发货时间", "", "2016年6月6日 12:00"),
        ],
    },
    Entry {
        id: "AT0010",
        title: "预约成功通知",
        category: 0,
        keywords: &[
            kw(1, "预约项目", "", "体检"),
            kw(2, "预约时间", "", "2016年6月6日 09:00"),
            kw(4, "预约地点", "", "一楼大厅"),
        ],
    },
];

/// Subscribe library categories (`getcategory`).
pub const CATEGORIES: [(u32, &str); 2] = [(307, "快递"), (616, "生活服务")];

/// The subscribe template library (`wxaapi/newtmpl/*`). Entries 99, 501
/// and 777 are the built-in subscribe templates' origins.
pub const SUBSCRIBE_LIBRARY: [Entry; 4] = [
    Entry {
        id: "99",
        title: "订单发货通知",
        category: 307,
        keywords: &[
            kw(1, "物品名称", "thing", "咖啡"),
            kw(2, "快递单号", "character_string", "SF1234567890"),
            kw(3, "发货时间", "time", "2019年10月1日 15:01"),
            kw(4, "订单状态", "phrase", "已发货"),
            kw(5, "备注", "thing", "请留意查收"),
        ],
    },
    Entry {
        id: "501",
        title: "支付成功通知",
        category: 616,
        keywords: &[
            kw(1, "支付金额", "amount", "¥100"),
            kw(2, "支付日期", "date", "2019年10月1日"),
            kw(3, "商品名称", "thing", "会员月卡"),
            kw(4, "订单号", "character_string", "339208499"),
        ],
    },
    Entry {
        id: "777",
        title: "停车缴费提醒",
        category: 616,
        keywords: &[
            kw(1, "车主", "name", "张三"),
            kw(2, "联系电话", "phone_number", "+86-0766-66888866"),
            kw(3, "车牌号", "car_number", "粤A8Z888挂"),
            kw(4, "停车时长", "number", "3"),
        ],
    },
    Entry {
        id: "1024",
        title: "预约提醒",
        category: 616,
        keywords: &[
            kw(1, "预约项目", "thing", "洗车"),
            kw(2, "预约时间", "time", "15:01"),
            kw(3, "预约状态", "phrase", "已确认"),
        ],
    },
];

/// The official account's industry templates, by short id
/// (`template/api_add_template` takes them; there is no browsing API).
pub const OFFICIAL_ACCOUNT_LIBRARY: [Entry; 2] = [
    Entry {
        id: "OPENTM207498902",
        title: "订单发货提醒",
        category: 0,
        keywords: &[
            kw(1, "订单编号", "", "201601010001"),
            kw(2, "物流公司", "", "顺丰速运"),
        ],
    },
    Entry {
        id: "OPENTM411999701",
        title: "支付成功通知",
        category: 0,
        keywords: &[
            kw(1, "支付金额", "", "100元"),
            kw(2, "支付时间", "", "2016-06-06 12:00"),
        ],
    },
];

pub fn library(channel: Channel) -> &'static [Entry] {
    match channel {
        Channel::Template => &TEMPLATE_LIBRARY,
        Channel::Subscribe | Channel::OfficialAccountSubscribe => &SUBSCRIBE_LIBRARY,
        Channel::OfficialAccount => &OFFICIAL_ACCOUNT_LIBRARY,
    }
}

pub fn entry(channel: Channel, id: &str) -> Option<&'static Entry> {
    library(channel).iter().find(|e| e.id == id)
}

/// A template the account holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountTemplate {
    pub title: String,
    /// `名称:{{key.DATA}}` lines, as WeChat shows it.
    pub content: String,
    /// The data keys, in order.
    pub keys: Vec<String>,
    /// A long-term subscribe template (`type` 3 in `gettemplate`).
    pub long_term: bool,
}

impl AccountTemplate {
    /// A template whose keywords are `keys` (built-in and control-route
    /// templates, which no library entry describes).
    pub fn plain(title: &str, keys: &[String]) -> Self {
        let content = keys.iter().map(|k| format!("{k}:{{{{{k}.DATA}}}}\n")).collect();
        Self {
            title: title.to_owned(),
            content,
            keys: keys.to_vec(),
            long_term: false,
        }
    }

    /// A template made from `keywords` of a library entry: data keys
    /// `keyword1..` (template), type + id (subscribe), or `first`,
    /// `keyword1..`, `remark` (official account).
    pub fn from_entry(channel: Channel, entry: &Entry, keywords: &[&Keyword]) -> Self {
        let mut lines: Vec<(String, String)> = keywords
            .iter()
            .enumerate()
            .map(|(n, k)| {
                let key = match channel {
                    Channel::Subscribe | Channel::OfficialAccountSubscribe => format!("{}{}", k.rule, k.id),
                    _ => format!("keyword{}", n + 1),
                };
                (k.name.to_owned(), key)
            })
            .collect();
        if channel == Channel::OfficialAccount {
            lines.insert(0, (String::new(), "first".into()));
            lines.push((String::new(), "remark".into()));
        }
        let content = lines
            .iter()
            .map(|(name, key)| match name.is_empty() {
                true => format!("{{{{{key}.DATA}}}}\n"),
                false => format!("{name}:{{{{{key}.DATA}}}}\n"),
            })
            .collect();
        Self {
            title: entry.title.to_owned(),
            content,
            keys: lines.into_iter().map(|(_, key)| key).collect(),
            long_term: false,
        }
    }
}

/// Every channel's account templates, by id.
#[derive(Debug, Default)]
pub struct AccountTemplates {
    by_channel: BTreeMap<Channel, BTreeMap<String, AccountTemplate>>,
}

impl AccountTemplates {
    pub fn insert(&mut self, channel: Channel, template_id: String, template: AccountTemplate) {
        self.by_channel
            .entry(channel)
            .or_default()
            .insert(template_id, template);
    }

    pub fn remove(&mut self, channel: Channel, template_id: &str) -> Option<AccountTemplate> {
        self.by_channel.get_mut(&channel)?.remove(template_id)
    }

    pub fn contains(&self, channel: Channel, template_id: &str) -> bool {
        self.by_channel
            .get(&channel)
            .is_some_and(|t| t.contains_key(template_id))
    }

    pub fn count(&self, channel: Channel) -> usize {
        self.by_channel.get(&channel).map_or(0, BTreeMap::len)
    }

    /// The account's list in WeChat's shape for `channel`.
    pub fn list(&self, channel: Channel) -> Vec<Value> {
        let Some(templates) = self.by_channel.get(&channel) else {
            return Vec::new();
        };
        templates
            .iter()
            .map(|(id, t)| match channel {
                Channel::Template => {
                    json!({"template_id": id, "title": t.title, "content": t.content, "example": ""})
                }
                Channel::Subscribe | Channel::OfficialAccountSubscribe => json!({
                    "priTmplId": id, "title": t.title, "content": t.content, "example": "",
                    "type": if t.long_term { 3 } else { 2 },
                }),
                Channel::OfficialAccount => json!({
                    "template_id": id, "title": t.title, "primary_industry": "IT科技",
                    "deputy_industry": "互联网|电子商务", "content": t.content, "example": "",
                }),
            })
            .collect()
    }
}

/// A fresh template id, as long as WeChat's (43 characters).
pub fn new_template_id() -> String {
    use base64::Engine;
    let raw: [u8; 32] = rand::random();
    let id = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw);
    id[..43].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscribe_keys_are_the_keyword_type_and_id() {
        let entry = entry(Channel::Subscribe, "99").unwrap();
        let picked: Vec<&Keyword> = entry
            .keywords
            .iter()
            .filter(|k| [1, 3, 4].contains(&k.id))
            .collect();
        let made = AccountTemplate::from_entry(Channel::Subscribe, entry, &picked);
        assert_eq!(made.keys, ["thing1", "time3", "phrase4"]);
        assert_eq!(
            made.content,
            "物品名称:{{thing1.DATA}}\n发货时间:{{time3.DATA}}\n订单状态:{{phrase4.DATA}}\n"
        );
    }

    #[test]
    fn official_account_templates_open_with_first_and_close_with_remark() {
        let entry = entry(Channel::OfficialAccount, "OPENTM207498902").unwrap();
        let all: Vec<&Keyword> = entry.keywords.iter().collect();
        let made = AccountTemplate::from_entry(Channel::OfficialAccount, entry, &all);
        assert_eq!(made.keys, ["first", "keyword1", "keyword2", "remark"]);
    }

    #[test]
    fn template_ids_look_like_wechat_ones() {
        let id = new_template_id();
        assert_eq!(id.len(), 43);
        assert!(
            id.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        );
    }
}
