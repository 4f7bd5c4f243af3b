//! Subscribe messages as WeChat keeps them: the account's subscribe
//! templates and their keywords, each user's one-time grants per template
//! (given by `wx.requestSubscribeMessage` accepts, dropped when the user
//! turns a template off), their long-term subscriptions (an accept of a
//! long-term template lets the app send until the user turns it off), and
//! the `data` rules of `subscribeMessage.send`.
//!
//! The data rules are written here again, on purpose, apart from the
//! service's validator (`domain::subscribe_data`): the simulator is the
//! stand-in for WeChat, and a validator checked only against itself would
//! prove nothing. This one reads each value as a string of character
//! classes and matches shapes.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde_json::{Map, Value};

/// Subscribe templates every simulator knows from the start, with their
/// keywords.
pub const BUILTIN_SUBSCRIBE_TEMPLATES: [(&str, &[&str]); 3] = [
    (
        "Xq5qC3Z8lWJtKsN0yS3a8fGmN3n4Y1fT5nQbH7sWq9E",
        &["thing1", "character_string2", "time3", "phrase4"],
    ),
    (
        "bH2v6Kp0mJ1c7Dz5Wq8rT3yU4iO9pL6kE2sA1dF0gHj",
        &["amount1", "date2", "thing3"],
    ),
    (
        "Rt7Yu3Io9Pa1Sd5Fg2Hj8Kl4Zx6Cv0Bn3Mq7We1Rt5Y",
        &["name1", "phone_number2", "car_number3", "number4"],
    ),
];

/// A long-term subscribe template (WeChat's type 3) every simulator knows
/// from the start, with its keywords: one accept lets the app send until
/// the user turns it off.
pub const BUILTIN_LONG_TERM_TEMPLATE: (&str, &[&str]) = (
    "Lt7Yu3Io9Pa1Sd5Fg2Hj8Kl4Zx6Cv0Bn3Mq7We1Rt5Y",
    &["thing1", "phrase2"],
);

/// The official account's subscribe templates every simulator knows from
/// the start: one one-time, one long-term (type 3), with their keywords.
pub const BUILTIN_OA_SUBSCRIBE_TEMPLATES: [(&str, &[&str], bool); 2] = [
    (
        "Os4kQ2mN8pR1tV6xZ3bD7fH0jL5nP9rT2vX6zB4dF8h",
        &["thing1", "time2"],
        false,
    ),
    (
        "Ol9sW2eR4tY6uI8oP1aS3dF5gH7jK0lZ2xC4vB6nM8q",
        &["thing1", "phrase2"],
        true,
    ),
];

/// A user's answer to one template in `wx.requestSubscribeMessage`.
pub const RESULTS: [&str; 4] = ["accept", "reject", "ban", "filter"];

#[derive(Debug, Default)]
pub struct Subscriptions {
    templates: HashMap<String, Vec<String>>,
    /// Templates of the long-term kind (WeChat's type 3).
    long_term: HashSet<String>,
    grants: HashMap<(String, String), u32>,
    /// (openid, template) subscribed long-term.
    standing: HashSet<(String, String)>,
    /// (openid, template) the user turned off in settings.
    off: HashSet<(String, String)>,
    next_msgid: u64,
}

impl Subscriptions {
    pub fn new() -> Self {
        let (long_term, _) = BUILTIN_LONG_TERM_TEMPLATE;
        Self {
            templates: BUILTIN_SUBSCRIBE_TEMPLATES
                .iter()
                .chain([&BUILTIN_LONG_TERM_TEMPLATE])
                .map(|(id, keys)| ((*id).to_owned(), keys.iter().map(|k| (*k).to_owned()).collect()))
                .collect(),
            long_term: HashSet::from([long_term.to_owned()]),
            next_msgid: 1_000_000,
            ..Self::default()
        }
    }

    /// The official account's: its built-in subscribe templates.
    pub fn official_account() -> Self {
        let mut subscriptions = Self {
            next_msgid: 3_000_000,
            ..Self::default()
        };
        for (id, keys, long_term) in BUILTIN_OA_SUBSCRIBE_TEMPLATES {
            let keys = keys.iter().map(|k| (*k).to_owned()).collect();
            subscriptions.add_template(id.to_owned(), keys, long_term);
        }
        subscriptions
    }

    pub fn add_template(&mut self, template_id: String, keywords: Vec<String>, long_term: bool) {
        if long_term {
            self.long_term.insert(template_id.clone());
        } else {
            self.long_term.remove(&template_id);
        }
        self.templates.insert(template_id, keywords);
    }

    pub fn remove_template(&mut self, template_id: &str) {
        self.templates.remove(template_id);
        self.long_term.remove(template_id);
    }

    pub fn keywords(&self, template_id: &str) -> Option<&[String]> {
        self.templates.get(template_id).map(Vec::as_slice)
    }

    /// The user answers a `wx.requestSubscribeMessage` popup; returns what
    /// the mini-program would get. A template the user turned off is
    /// rejected without asking.
    pub fn request(&mut self, openid: &str, asked: &BTreeMap<String, String>) -> Map<String, Value> {
        let mut answer = Map::new();
        answer.insert("errMsg".into(), "requestSubscribeMessage:ok".into());
        for (template, wanted) in asked {
            let key = (openid.to_owned(), template.clone());
            let result = if self.off.contains(&key) {
                "reject"
            } else {
                wanted.as_str()
            };
            if result == "accept" && self.long_term.contains(template) {
                self.standing.insert(key);
            } else if result == "accept" {
                *self.grants.entry(key).or_default() += 1;
            }
            answer.insert(template.clone(), result.into());
        }
        answer
    }

    /// The user turns a template off (its grants or its subscription go)
    /// or on again (a long-term template is subscribed again).
    pub fn change(&mut self, openid: &str, template: &str, on: bool) {
        let key = (openid.to_owned(), template.to_owned());
        if on {
            self.off.remove(&key);
            if self.long_term.contains(template) {
                self.standing.insert(key);
            }
        } else {
            self.grants.remove(&key);
            self.standing.remove(&key);
            self.off.insert(key);
        }
    }

    /// Whether a message of `template` may be sent to `openid`: a grant
    /// held, or a long-term subscription.
    pub fn may_send(&self, openid: &str, template: &str) -> bool {
        let key = (openid.to_owned(), template.to_owned());
        self.standing.contains(&key) || self.grants.get(&key).is_some_and(|n| *n > 0)
    }

    /// Uses one grant (a long-term subscription uses none); returns the new
    /// message's id.
    pub fn spend(&mut self, openid: &str, template: &str) -> u64 {
        let key = (openid.to_owned(), template.to_owned());
        if !self.standing.contains(&key)
            && let Some(n) = self.grants.get_mut(&key)
        {
            *n = n.saturating_sub(1);
        }
        self.next_msgid += 1;
        self.next_msgid
    }
}

/// The first `data` key that breaks WeChat's rules or that the template
/// does not have.
pub fn refused_key(keywords: &[String], data: &Map<String, Value>) -> Option<String> {
    if data.is_empty() {
        return Some("data".into());
    }
    data.iter()
        .find(|(key, item)| {
            let value = item.get("value").and_then(Value::as_str);
            !keywords.contains(key) || !value.is_some_and(|v| value_ok(key, v))
        })
        .map(|(key, _)| key.clone())
}

/// Character classes: digit, letter, Chinese, space, other symbol.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Class {
    Digit,
    Letter,
    Han,
    Space,
    Symbol,
}

fn class(c: char) -> Class {
    if c.is_ascii_digit() {
        Class::Digit
    } else if c.is_ascii_alphabetic() {
        Class::Letter
    } else if ('\u{4e00}'..='\u{9fff}').contains(&c)
        || ('\u{3400}'..='\u{4dbf}').contains(&c)
        || ('\u{f900}'..='\u{faff}').contains(&c)
        || ('\u{20000}'..='\u{2ffff}').contains(&c)
    {
        Class::Han
    } else if c == ' ' {
        Class::Space
    } else {
        Class::Symbol
    }
}

fn value_ok(key: &str, value: &str) -> bool {
    let chars: Vec<char> = value.chars().collect();
    if chars.is_empty()
        || chars
            .iter()
            .any(|c| c.is_control() || (c.is_whitespace() && *c != ' '))
    {
        return false;
    }
    let classes: Vec<Class> = chars.iter().map(|c| class(*c)).collect();
    let only = |allowed: &[Class]| classes.iter().all(|c| allowed.contains(c));
    let n = chars.len();
    let kind = key.trim_end_matches(|c: char| c.is_ascii_digit());
    match kind {
        "thing" => n <= 20,
        "number" => n <= 32 && decimal(value),
        "letter" => n <= 32 && only(&[Class::Letter]),
        "symbol" => n <= 5 && only(&[Class::Symbol, Class::Space]),
        "character_string" => n <= 32 && only(&[Class::Digit, Class::Letter, Class::Symbol, Class::Space]),
        "phone_number" => n <= 17 && only(&[Class::Digit, Class::Symbol]),
        "phrase" => n <= 5 && only(&[Class::Han]),
        "car_number" => {
            n <= 8
                && classes.iter().enumerate().all(|(i, c)| match c {
                    Class::Digit | Class::Letter => true,
                    Class::Han => i == 0 || i == n - 1,
                    _ => false,
                })
        }
        "name" => {
            let han = classes.contains(&Class::Han);
            !classes.contains(&Class::Digit) && if han { n <= 10 } else { n <= 20 }
        }
        "amount" => {
            let v = value.strip_suffix('元').unwrap_or(value);
            let v = v.strip_prefix(['¥', '￥', '$', '€', '£']).unwrap_or(v);
            decimal(v) && v.split('.').next().is_some_and(|whole| whole.len() <= 10)
        }
        "time" => each_side(value, |p| clock(p) || dated(p, true)),
        "date" => each_side(value, |p| dated(p, false)),
        _ => true,
    }
}

fn decimal(v: &str) -> bool {
    let mut parts = v.split('.');
    let whole = parts.next().unwrap_or("");
    let fraction = parts.next();
    parts.next().is_none()
        && !whole.is_empty()
        && whole.bytes().all(|b| b.is_ascii_digit())
        && fraction.is_none_or(|f| !f.is_empty() && f.bytes().all(|b| b.is_ascii_digit()))
}

fn each_side(v: &str, ok: impl Fn(&str) -> bool) -> bool {
    v.split('~').count() <= 2 && v.split('~').all(|side| ok(side.trim()))
}

fn num(v: &str, max: u32, digits: usize) -> bool {
    !v.is_empty()
        && v.len() <= digits
        && v.bytes().all(|b| b.is_ascii_digit())
        && v.parse::<u32>().is_ok_and(|n| n <= max)
}

fn clock(v: &str) -> bool {
    let parts: Vec<&str> = v.split(':').collect();
    (parts.len() == 2 || parts.len() == 3)
        && num(parts[0], 23, 2)
        && parts[1..].iter().all(|p| p.len() == 2 && num(p, 59, 2))
}

/// A date (Chinese or with `-`, `/`, `.`), then optionally a space and a
/// time; the time is required with `need_time`.
fn dated(v: &str, need_time: bool) -> bool {
    let (date, time) = match v.split_once(' ') {
        Some((d, t)) => (d, Some(t.trim())),
        None => (v, None),
    };
    let date_ok = if date.contains(['年', '月', '日']) {
        let cleaned: Vec<&str> = date.split(['年', '月', '日']).collect();
        match (date.contains('年'), date.contains('月'), date.contains('日')) {
            (true, true, true) => {
                date.ends_with('日')
                    && cleaned.len() == 4
                    && num(cleaned[0], 9999, 4)
                    && month_day(cleaned[1], Some(cleaned[2]))
            }
            (true, true, false) => {
                date.ends_with('月')
                    && cleaned.len() == 3
                    && num(cleaned[0], 9999, 4)
                    && month_day(cleaned[1], None)
            }
            (false, true, true) => {
                date.ends_with('日') && cleaned.len() == 3 && month_day(cleaned[0], Some(cleaned[1]))
            }
            _ => false,
        }
    } else {
        let parts: Vec<&str> = date.split(['-', '/', '.']).collect();
        match parts.as_slice() {
            [y, m, d] => num(y, 9999, 4) && month_day(m, Some(d)),
            [y, m] if y.len() == 4 => num(y, 9999, 4) && month_day(m, None),
            [m, d] => month_day(m, Some(d)),
            _ => false,
        }
    };
    date_ok
        && match time {
            Some(t) => clock(t),
            None => !need_time,
        }
}

fn month_day(m: &str, d: Option<&str>) -> bool {
    num(m, 12, 2)
        && m.parse::<u32>().is_ok_and(|m| m >= 1)
        && d.is_none_or(|d| num(d, 31, 2) && d.parse::<u32>().is_ok_and(|d| d >= 1))
}
