//! WeChat's rules for the `data` of a subscribe message (docs/api.md), checked
//! before a grant is reserved so a message WeChat would refuse with 47003
//! spends nothing. A key is `<type><digits>` (`thing1`, `number01`); its
//! type's rule applies to the value; keys of a type this version does not
//! know pass unchecked (WeChat adds types). Empty values and control
//! characters are refused for every type.

use serde_json::{Map, Value};

/// The first rule a message's `data` breaks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataViolation {
    /// The key, e.g. `thing1`.
    pub field: String,
    /// What the value must be, in words.
    pub rule: String,
}

impl std::fmt::Display for DataViolation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The whole object is named `data`; a keyword is `data.<key>`.
        match self.field.as_str() {
            "data" => write!(f, "data: {}", self.rule),
            field => write!(f, "data.{field}: {}", self.rule),
        }
    }
}

/// Checks every `{"<key>": {"value": "..."}}` of `data`.
pub fn check(data: &Map<String, Value>) -> Result<(), DataViolation> {
    if data.is_empty() {
        return Err(violation("data", "at least one keyword"));
    }
    for (key, item) in data {
        let value = item
            .as_object()
            .and_then(|o| o.get("value"))
            .and_then(Value::as_str)
            .ok_or_else(|| violation(key, "an object with a string \"value\""))?;
        let kind =
            key_type(key).ok_or_else(|| violation(key, "a key of the form <type><digits>, e.g. thing1"))?;
        if value.is_empty() {
            return Err(violation(key, "not empty"));
        }
        if value.chars().any(char::is_control) {
            return Err(violation(key, "no control characters (newlines, tabs)"));
        }
        if let Some(rule) = rule_of(kind)
            && !(rule.check)(value)
        {
            return Err(violation(key, rule.description));
        }
    }
    Ok(())
}

fn violation(field: &str, rule: &str) -> DataViolation {
    DataViolation {
        field: field.to_owned(),
        rule: rule.to_owned(),
    }
}

/// `thing12` → `thing`; `None` unless the key is lowercase letters or `_`
/// followed by at least one digit.
fn key_type(key: &str) -> Option<&str> {
    let digits_at = key.find(|c: char| c.is_ascii_digit())?;
    let (kind, digits) = key.split_at(digits_at);
    let kind_ok = !kind.is_empty() && kind.chars().all(|c| c.is_ascii_lowercase() || c == '_');
    (kind_ok && digits.chars().all(|c| c.is_ascii_digit())).then_some(kind)
}

struct Rule {
    description: &'static str,
    check: fn(&str) -> bool,
}

fn rule_of(kind: &str) -> Option<Rule> {
    let rule = |description, check| Some(Rule { description, check });
    match kind {
        "thing" => rule("at most 20 characters", |v| len(v) <= 20),
        "number" => rule(
            "at most 32 characters: digits, with an optional decimal part",
            |v| len(v) <= 32 && is_decimal(v),
        ),
        "letter" => rule("at most 32 letters", |v| {
            len(v) <= 32 && v.chars().all(|c| c.is_ascii_alphabetic())
        }),
        "symbol" => rule("at most 5 symbols (no Chinese, letters or digits)", |v| {
            len(v) <= 5 && v.chars().all(is_symbol)
        }),
        "character_string" => rule("at most 32 digits, letters or symbols (no Chinese)", |v| {
            len(v) <= 32 && v.chars().all(|c| c.is_ascii_alphanumeric() || is_symbol(c))
        }),
        "time" => rule(
            "a 24-hour time HH:MM or HH:MM:SS, optionally after a date; or a range A~B",
            |v| ranged(v, |p| is_time(p) || date_then_time(p, true)),
        ),
        "date" => rule(
            "a date (2019年10月1日, 2019年10月, 10月1日, 2019-10-01, 2019-10, 10-01), optionally with a time; or a range A~B",
            |v| ranged(v, |p| date_then_time(p, false)),
        ),
        "amount" => rule(
            "an optional currency symbol, at most 10 digits, optional decimals, optional 元",
            is_amount,
        ),
        "phone_number" => rule("at most 17 digits or symbols", |v| {
            len(v) <= 17 && v.chars().all(|c| c.is_ascii_digit() || is_symbol(c))
        }),
        "car_number" => rule(
            "at most 8 characters: letters or digits, Chinese only first or last",
            is_car_number,
        ),
        "name" => rule(
            "at most 10 Chinese characters, or at most 20 letters or symbols",
            is_name,
        ),
        "phrase" => rule("at most 5 Chinese characters", |v| {
            len(v) <= 5 && v.chars().all(is_chinese)
        }),
        _ => None,
    }
}

fn len(v: &str) -> usize {
    v.chars().count()
}

/// CJK ideographs (the unified blocks and their extensions).
fn is_chinese(c: char) -> bool {
    matches!(c as u32,
        0x3400..=0x4DBF | 0x4E00..=0x9FFF | 0xF900..=0xFAFF | 0x20000..=0x2FFFF)
}

/// Anything visible that is neither a letter, a digit nor Chinese.
fn is_symbol(c: char) -> bool {
    !c.is_alphanumeric() && !is_chinese(c) && !c.is_control() && (c == ' ' || !c.is_whitespace())
}

fn digits(v: &str) -> bool {
    !v.is_empty() && v.chars().all(|c| c.is_ascii_digit())
}

fn is_decimal(v: &str) -> bool {
    match v.split_once('.') {
        None => digits(v),
        Some((whole, fraction)) => digits(whole) && digits(fraction),
    }
}

/// `A~B` with both sides passing `part`, or one value passing it.
fn ranged(v: &str, part: impl Fn(&str) -> bool) -> bool {
    match v.split_once('~') {
        Some((from, to)) => part(from.trim()) && part(to.trim()),
        None => part(v),
    }
}

fn number_in(v: &str, max_digits: usize, range: std::ops::RangeInclusive<u32>) -> bool {
    v.len() <= max_digits && digits(v) && v.parse().is_ok_and(|n| range.contains(&n))
}

/// `HH:MM` or `HH:MM:SS`, 24-hour.
fn is_time(v: &str) -> bool {
    let parts: Vec<&str> = v.split(':').collect();
    match parts.as_slice() {
        [h, m] => number_in(h, 2, 0..=23) && m.len() == 2 && number_in(m, 2, 0..=59),
        [h, m, s] => {
            number_in(h, 2, 0..=23)
                && m.len() == 2
                && number_in(m, 2, 0..=59)
                && s.len() == 2
                && number_in(s, 2, 0..=59)
        }
        _ => false,
    }
}

/// `y年m月d日`, `y年m月`, `m月d日`, or 2 or 3 numbers joined by one of
/// `-`, `/`, `.`.
fn is_date(v: &str) -> bool {
    if v.contains('年') || v.contains('月') {
        return is_chinese_date(v);
    }
    let Some(sep) = ['-', '/', '.'].into_iter().find(|s| v.contains(*s)) else {
        return false;
    };
    let parts: Vec<&str> = v.split(sep).collect();
    match parts.as_slice() {
        [y, m, d] => number_in(y, 4, 0..=9999) && number_in(m, 2, 1..=12) && number_in(d, 2, 1..=31),
        [a, b] if a.len() == 4 => number_in(a, 4, 0..=9999) && number_in(b, 2, 1..=12),
        [m, d] => number_in(m, 2, 1..=12) && number_in(d, 2, 1..=31),
        _ => false,
    }
}

fn is_chinese_date(v: &str) -> bool {
    let (year, rest) = match v.split_once('年') {
        Some((y, rest)) => (Some(y), rest),
        None => (None, v),
    };
    if year.is_some_and(|y| !number_in(y, 4, 0..=9999)) {
        return false;
    }
    let Some((month, rest)) = rest.split_once('月') else {
        return false;
    };
    if !number_in(month, 2, 1..=12) {
        return false;
    }
    match rest.strip_suffix('日') {
        Some(day) => number_in(day, 2, 1..=31),
        // `y年m月` needs the year; `m月` alone is not a date.
        None => rest.is_empty() && year.is_some(),
    }
}

/// A date, optionally followed by whitespace and a time; with
/// `time_required`, the time must be there.
fn date_then_time(v: &str, time_required: bool) -> bool {
    match v.split_once(' ') {
        Some((date, time)) => is_date(date) && is_time(time.trim_start()),
        None => !time_required && is_date(v),
    }
}

fn is_amount(v: &str) -> bool {
    let v = v.strip_suffix('元').unwrap_or(v);
    let v = v.strip_prefix(['¥', '￥', '$', '€', '£']).unwrap_or(v);
    let whole = v.split_once('.').map_or(v, |(whole, _)| whole);
    whole.len() <= 10 && is_decimal(v)
}

fn is_car_number(v: &str) -> bool {
    let chars: Vec<char> = v.chars().collect();
    if chars.is_empty() || chars.len() > 8 {
        return false;
    }
    let last = chars.len() - 1;
    chars
        .iter()
        .enumerate()
        .all(|(at, c)| c.is_ascii_alphanumeric() || ((at == 0 || at == last) && is_chinese(*c)))
}

fn is_name(v: &str) -> bool {
    let allowed = v
        .chars()
        .all(|c| is_chinese(c) || c.is_ascii_alphabetic() || is_symbol(c));
    let limit = if v.chars().any(is_chinese) { 10 } else { 20 };
    allowed && len(v) <= limit
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn one(key: &str, value: &str) -> Result<(), DataViolation> {
        let data = json!({ key: {"value": value} });
        check(data.as_object().unwrap())
    }

    fn passes(key: &str, values: &[&str]) {
        for v in values {
            assert_eq!(one(key, v), Ok(()), "{key} = {v:?}");
        }
    }

    fn fails(key: &str, values: &[&str]) {
        for v in values {
            let err = one(key, v).expect_err(&format!("{key} = {v:?} should fail"));
            assert_eq!(err.field, key);
        }
    }

    #[test]
    fn an_empty_data_object_is_named_once() {
        let err = check(&Map::new()).unwrap_err();
        assert_eq!(err.to_string(), "data: at least one keyword");
        assert_eq!(
            one("thing1", "").unwrap_err().to_string().split(':').next(),
            Some("data.thing1")
        );
    }

    #[test]
    fn thing() {
        passes("thing1", &["配送中", "Order 42 shipped", &"字".repeat(20)]);
        fails("thing1", &["", &"字".repeat(21), "line\nbreak"]);
    }

    #[test]
    fn number() {
        passes("number01", &["339208499", "3.14", &"9".repeat(32)]);
        fails("number01", &["-1", "1.", ".5", "12a", "1,000", &"9".repeat(33)]);
    }

    #[test]
    fn letter_and_symbol_and_character_string() {
        passes("letter2", &["abcXYZ"]);
        fails("letter2", &["abc1", "中文", &"a".repeat(33)]);
        passes("symbol3", &["%", "+-*/"]);
        fails("symbol3", &["a", "1", "中", "!!!!!!"]);
        passes("character_string4", &["SF1234567890", "A-42/B"]);
        fails("character_string4", &["单号123", &"x".repeat(33)]);
    }

    #[test]
    fn time() {
        passes(
            "time5",
            &[
                "15:01",
                "9:05",
                "15:01:30",
                "2019年10月1日 15:01",
                "2019-10-01 15:01",
                "15:01~16:30",
            ],
        );
        fails(
            "time5",
            &[
                "25:00",
                "15:1",
                "15:60",
                "three o'clock",
                "2019年10月1日",
                "15:01~",
            ],
        );
    }

    #[test]
    fn date() {
        passes(
            "date6",
            &[
                "2015年01月05日",
                "2019年10月1日 15:01",
                "2019年10月",
                "10月1日",
                "2018-01-01",
                "2018/01/01",
                "2018.01.01",
                "2018-01",
                "01-01",
                "2018-01-01 09:30:00",
                "2019年10月1日~2019年10月7日",
            ],
        );
        fails(
            "date6",
            &[
                "2018-13-01",
                "2018-01-32",
                "10月",
                "yesterday",
                "2019年10月1日 25:00",
                "2018",
            ],
        );
    }

    #[test]
    fn amount() {
        passes("amount7", &["¥100", "100元", "100.50", "$12.5", "9999999999"]);
        fails("amount7", &["¥", "100元元", "12345678901", "1,000", "abc"]);
    }

    #[test]
    fn phone_number() {
        passes("phone_number8", &["+86-0766-66888866", "13800138000"]);
        fails("phone_number8", &["+86-0766-668888661", "call me"]);
    }

    #[test]
    fn car_number() {
        passes("car_number9", &["粤A8Z888挂", "粤B12345", "AB12345"]);
        fails("car_number9", &["粤A8中888", "粤A8Z888挂1", "粤A-123"]);
    }

    #[test]
    fn name() {
        passes("name10", &["张三", "John Smith", "王小明·欧阳", &"a".repeat(20)]);
        fails("name10", &["张三丰张三丰张三丰张三", &"a".repeat(21), "R2D2"]);
    }

    #[test]
    fn phrase() {
        passes("phrase11", &["配送中", "已完成"]);
        fails("phrase11", &["ok", "配送中了啊啊", "配送 中"]);
    }

    #[test]
    fn unknown_types_pass_but_keys_and_values_are_still_checked() {
        passes("newtype1", &["anything at all, however long it is"]);
        fails("newtype1", &["", "a\tb"]);
        assert!(one("thing", "no digits").is_err());
        assert!(one("Thing1", "capital").is_err());
        let not_a_string = json!({"thing1": {"value": 5}});
        assert_eq!(
            check(not_a_string.as_object().unwrap()).unwrap_err().field,
            "thing1"
        );
        assert!(check(&Map::new()).is_err());
    }
}
