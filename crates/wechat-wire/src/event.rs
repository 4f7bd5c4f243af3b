//! WeChat push bodies → typed events (docs/pushes.md).
//!
//! Owns: reading a push body in either format the WeChat console offers (XML
//! or JSON): the safe-mode envelope ([`envelope`]) and the plain or decrypted
//! message ([`parse`]), with the shapes of the four events the product acts
//! on. XML goes through quick-xml only, and XML carrying a DOCTYPE is refused
//! before any deserialization, so no entity is ever declared, let alone
//! expanded.
//!
//! Not owned: signatures and decryption (`crate::crypto`), deduplicating
//! WeChat's retries, and what an event does to the ledger.
//!
//! The shapes come from WeChat's documentation (mini-program
//! `subscribe-message.html`, "订阅消息事件推送"; official account
//! `Template_Message_Interface.html`, "事件推送") and the SDKs that parse them
//! (WxJava `WxMaMessage` and `WxMaSubscribeMsgEvent`, EasyWeChat, wechatpy):
//!
//! - XML nests the subscribe events' items in a wrapper element, one `<List>`
//!   per template: `<SubscribeMsgPopupEvent><List>…</List><List>…</List>
//!   </SubscribeMsgPopupEvent>`, and likewise `SubscribeMsgChangeEvent` and
//!   `SubscribeMsgSentEvent`.
//! - JSON puts them under a top-level `"List"` that is an array, or a single
//!   object when there is one item (WxJava's `WxMaMessage.fromJson` works
//!   around exactly that). Some payloads use the wrapper's name as the key
//!   instead, holding the array or `{"List": …}`; all of these are accepted.
//! - JSON sends `CreateTime`, `MsgID`, `ErrorCode` and `PopupScene` as numbers
//!   or as strings. msgids are 64-bit, beyond what a JSON double holds
//!   exactly, so they are kept as text.
//! - `TEMPLATESENDJOBFINISH` carries `MsgID` and `Status` (`success`,
//!   `failed:user block`, `failed: system failed`) at the top level.

use std::fmt;

use quick_xml::errors::{IllFormedError, SyntaxError};
use quick_xml::events::Event;
use serde::Deserialize;
use serde::de::{self, DeserializeOwned, Deserializer, Visitor};

/// The user acted on a `wx.requestSubscribeMessage` popup.
pub const SUBSCRIBE_MSG_POPUP_EVENT: &str = "subscribe_msg_popup_event";
/// The user changed a template's subscription in settings.
pub const SUBSCRIBE_MSG_CHANGE_EVENT: &str = "subscribe_msg_change_event";
/// The delivery result of a subscribe message, by msgid.
pub const SUBSCRIBE_MSG_SENT_EVENT: &str = "subscribe_msg_sent_event";
/// The delivery result of an official-account template message, by msgid.
pub const TEMPLATE_SEND_JOB_FINISH: &str = "TEMPLATESENDJOBFINISH";

/// Parser messages are cut to this many characters: they end up in logs.
const MAX_ERROR_CHARS: usize = 200;

/// The body format chosen in the WeChat console.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Xml,
    Json,
}

/// Guesses the format from the first character after any byte-order mark and
/// whitespace: `<` is XML, `{` is JSON, anything else neither.
pub fn sniff(body: &str) -> Option<Format> {
    match content(body).chars().next() {
        Some('<') => Some(Format::Xml),
        Some('{') => Some(Format::Json),
        _ => None,
    }
}

/// Why a body was refused. Any of them is the endpoint's 400.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    #[error("XML with a DOCTYPE or entity declarations is refused")]
    Doctype,
    #[error("malformed push body: {0}")]
    Malformed(String),
    #[error("the push body lacks `{0}`")]
    MissingField(&'static str),
}

/// The outer body of a safe-mode push. `encrypt` is `None` for a plain-mode
/// body, which the caller then parses as is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    pub to_user_name: Option<String>,
    /// Verbatim (never trimmed): `msg_signature` is computed over it.
    pub encrypt: Option<String>,
}

/// One push: the header every message and event carries, and what it says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Push {
    /// Our account's original id (`gh_…`).
    pub to_user_name: String,
    /// The user's openid.
    pub from_user_name: String,
    pub create_time: i64,
    pub msg_type: String,
    pub event: Option<String>,
    pub kind: PushKind,
}

/// The events the product acts on; every other push is `Other`, which the
/// endpoint counts and acknowledges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PushKind {
    /// `subscribe_msg_popup_event`: one choice per template in the popup.
    SubscribePopup(Vec<SubscribeChoice>),
    /// `subscribe_msg_change_event`: the user switched templates on or off.
    SubscribeChange(Vec<SubscribeChoice>),
    /// `subscribe_msg_sent_event`: delivery results of subscribe messages.
    SubscribeSent(Vec<SubscribeSent>),
    /// `TEMPLATESENDJOBFINISH`: the delivery result of an official-account
    /// template message. `status` is verbatim (`success`,
    /// `failed:user block`, `failed: system failed`, or anything new).
    TemplateSendJobFinish {
        msg_id: String,
        status: String,
    },
    Other {
        msg_type: String,
        event: Option<String>,
    },
}

/// A user's answer for one template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscribeChoice {
    pub template_id: String,
    /// Verbatim: `accept`, `reject`, or whatever WeChat adds.
    pub status: String,
    /// `PopupScene`, on popup events only.
    pub scene: Option<String>,
}

/// The delivery result of one subscribe message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscribeSent {
    pub template_id: String,
    /// The msgid `subscribeMessage.send` answered with, as text.
    pub msg_id: String,
    /// 0 on success.
    pub error_code: i64,
    /// Verbatim; empty when WeChat leaves it out.
    pub error_status: String,
}

/// Reads the safe-mode envelope (`ToUserName`, `Encrypt`).
pub fn envelope(body: &str, format: Format) -> Result<Envelope, EventError> {
    let raw: RawEnvelope = match format {
        Format::Xml => de_xml(checked_xml(body)?)?,
        Format::Json => serde_json::from_str(checked_json(body)?).map_err(malformed)?,
    };
    Ok(Envelope {
        to_user_name: optional(raw.to_user_name),
        encrypt: raw.encrypt.filter(|encrypt| !encrypt.is_empty()),
    })
}

/// Parses a plain or decrypted push. Any `MsgType`/`Event` parses: the header
/// is read first, and an event's own fields are read only for the four events
/// this module knows, so an unknown event's odd fields never fail it.
pub fn parse(body: &str, format: Format) -> Result<Push, EventError> {
    match format {
        Format::Xml => parse_xml(body),
        Format::Json => parse_json(body),
    }
}

fn parse_xml(body: &str) -> Result<Push, EventError> {
    let xml = checked_xml(body)?;
    let header = Header::check(de_xml::<RawHeader<String>>(xml)?)?;
    let kind = match header.known_event() {
        None => header.other(),
        Some(Known::Popup) => PushKind::SubscribePopup(choices(de_xml::<XmlPopup>(xml)?.into_items())?),
        Some(Known::Change) => PushKind::SubscribeChange(choices(de_xml::<XmlChange>(xml)?.into_items())?),
        Some(Known::Sent) => PushKind::SubscribeSent(sent(de_xml::<XmlSent>(xml)?.into_items())?),
        Some(Known::JobFinish) => job_finish(de_xml::<RawJobFinish<String>>(xml)?)?,
    };
    Ok(header.into_push(kind))
}

fn parse_json(body: &str) -> Result<Push, EventError> {
    let value: serde_json::Value = serde_json::from_str(checked_json(body)?).map_err(malformed)?;
    let header = Header::check(RawHeader::<JsonText>::deserialize(&value).map_err(malformed)?)?;
    let kind = match header.known_event() {
        None => header.other(),
        Some(Known::Popup) => {
            PushKind::SubscribePopup(choices(json_items(&value, "SubscribeMsgPopupEvent")?)?)
        }
        Some(Known::Change) => {
            PushKind::SubscribeChange(choices(json_items(&value, "SubscribeMsgChangeEvent")?)?)
        }
        Some(Known::Sent) => PushKind::SubscribeSent(sent(json_items(&value, "SubscribeMsgSentEvent")?)?),
        Some(Known::JobFinish) => {
            job_finish(RawJobFinish::<JsonText>::deserialize(&value).map_err(malformed)?)?
        }
    };
    Ok(header.into_push(kind))
}

// ---- Reading the formats ----

/// The body without a byte-order mark or leading whitespace.
fn content(body: &str) -> &str {
    body.trim_start_matches(|c: char| c == '\u{feff}' || c.is_whitespace())
}

fn non_empty_body(body: &str) -> Result<&str, EventError> {
    let body = content(body);
    if body.is_empty() {
        return Err(malformed("empty body"));
    }
    Ok(body)
}

/// The JSON document, once it is known to be an object: serde would also read
/// a struct from an array, positionally.
fn checked_json(body: &str) -> Result<&str, EventError> {
    let json = non_empty_body(body)?;
    if !json.starts_with('{') {
        return Err(malformed("not a JSON object"));
    }
    Ok(json)
}

/// The XML document, once it is known to be one and to carry no DOCTYPE.
fn checked_xml(body: &str) -> Result<&str, EventError> {
    let xml = non_empty_body(body)?;
    if !xml.starts_with('<') {
        return Err(malformed("not an XML document"));
    }
    refuse_doctype(xml)?;
    Ok(xml)
}

/// Scans the whole document's events and refuses any DOCTYPE, the only place
/// XML can declare entities (billion laughs, external entities). quick-xml
/// would not expand custom entities anyway; this makes the refusal explicit
/// instead of a confusing "unrecognized entity" later.
fn refuse_doctype(xml: &str) -> Result<(), EventError> {
    let mut reader = quick_xml::Reader::from_str(xml);
    loop {
        match reader.read_event() {
            Ok(Event::DocType(_)) => return Err(EventError::Doctype),
            Ok(Event::Eof) => return Ok(()),
            Ok(_) => {}
            Err(
                quick_xml::Error::Syntax(SyntaxError::UnclosedDoctype)
                | quick_xml::Error::IllFormed(IllFormedError::MissingDoctypeName),
            ) => return Err(EventError::Doctype),
            Err(error) => return Err(malformed(error)),
        }
    }
}

/// Deserializes a document already through [`checked_xml`].
fn de_xml<T: DeserializeOwned>(xml: &str) -> Result<T, EventError> {
    quick_xml::de::from_str(xml).map_err(malformed)
}

/// The items of a JSON subscribe event: under the wrapper's name if present,
/// else under the top-level `List`.
fn json_items(
    value: &serde_json::Value,
    wrapper: &'static str,
) -> Result<Option<Vec<RawItem<JsonText>>>, EventError> {
    let node = [wrapper, "List"]
        .into_iter()
        .find_map(|key| value.get(key).filter(|node| !node.is_null()));
    node.map(|node| json_list(node, true)).transpose()
}

/// An array of items, a single item (WeChat drops the array when there is
/// one), or, once, either of those inside `{"List": …}`.
fn json_list(node: &serde_json::Value, unwrap: bool) -> Result<Vec<RawItem<JsonText>>, EventError> {
    match node {
        serde_json::Value::Array(items) => items.iter().map(json_item).collect(),
        serde_json::Value::Object(fields) => match fields.get("List") {
            Some(inner) if unwrap => json_list(inner, false),
            _ => Ok(vec![json_item(node)?]),
        },
        _ => Err(malformed("`List` is neither an array nor an object")),
    }
}

fn json_item(node: &serde_json::Value) -> Result<RawItem<JsonText>, EventError> {
    // Serde would also read a struct from an array, positionally: refuse it.
    if !node.is_object() {
        return Err(malformed("a `List` item is not an object"));
    }
    RawItem::<JsonText>::deserialize(node).map_err(malformed)
}

fn malformed(error: impl fmt::Display) -> EventError {
    let mut message = error.to_string();
    if let Some((cut, _)) = message.char_indices().nth(MAX_ERROR_CHARS) {
        message.truncate(cut);
    }
    EventError::Malformed(message)
}

// ---- From raw fields to the typed push ----

/// The events `parse` reads beyond the header.
enum Known {
    Popup,
    Change,
    Sent,
    JobFinish,
}

/// The header every push carries, checked.
struct Header {
    to_user_name: String,
    from_user_name: String,
    create_time: i64,
    msg_type: String,
    event: Option<String>,
}

impl Header {
    fn check<S: Into<String>>(raw: RawHeader<S>) -> Result<Self, EventError> {
        Ok(Self {
            to_user_name: required(raw.to_user_name, "ToUserName")?,
            from_user_name: required(raw.from_user_name, "FromUserName")?,
            create_time: integer(&required(raw.create_time, "CreateTime")?, "CreateTime")?,
            msg_type: required(raw.msg_type, "MsgType")?,
            event: optional(raw.event),
        })
    }

    fn known_event(&self) -> Option<Known> {
        if !self.msg_type.eq_ignore_ascii_case("event") {
            return None;
        }
        let event = self.event.as_deref()?;
        if event.eq_ignore_ascii_case(SUBSCRIBE_MSG_POPUP_EVENT) {
            Some(Known::Popup)
        } else if event.eq_ignore_ascii_case(SUBSCRIBE_MSG_CHANGE_EVENT) {
            Some(Known::Change)
        } else if event.eq_ignore_ascii_case(SUBSCRIBE_MSG_SENT_EVENT) {
            Some(Known::Sent)
        } else if event.eq_ignore_ascii_case(TEMPLATE_SEND_JOB_FINISH) {
            Some(Known::JobFinish)
        } else {
            None
        }
    }

    fn other(&self) -> PushKind {
        PushKind::Other {
            msg_type: self.msg_type.clone(),
            event: self.event.clone(),
        }
    }

    fn into_push(self, kind: PushKind) -> Push {
        Push {
            to_user_name: self.to_user_name,
            from_user_name: self.from_user_name,
            create_time: self.create_time,
            msg_type: self.msg_type,
            event: self.event,
            kind,
        }
    }
}

/// A popup or change event's items; an event without any is malformed.
fn choices<S: Into<String>>(items: Option<Vec<RawItem<S>>>) -> Result<Vec<SubscribeChoice>, EventError> {
    listed(items)?.into_iter().map(choice).collect()
}

fn choice<S: Into<String>>(item: RawItem<S>) -> Result<SubscribeChoice, EventError> {
    Ok(SubscribeChoice {
        template_id: required(item.template_id, "TemplateId")?,
        status: required(item.subscribe_status, "SubscribeStatusString")?,
        scene: optional(item.popup_scene),
    })
}

fn sent<S: Into<String>>(items: Option<Vec<RawItem<S>>>) -> Result<Vec<SubscribeSent>, EventError> {
    listed(items)?.into_iter().map(sent_item).collect()
}

fn sent_item<S: Into<String>>(item: RawItem<S>) -> Result<SubscribeSent, EventError> {
    Ok(SubscribeSent {
        template_id: required(item.template_id, "TemplateId")?,
        msg_id: required(item.msg_id, "MsgID")?,
        error_code: integer(&required(item.error_code, "ErrorCode")?, "ErrorCode")?,
        error_status: optional(item.error_status).unwrap_or_default(),
    })
}

fn job_finish<S: Into<String>>(raw: RawJobFinish<S>) -> Result<PushKind, EventError> {
    Ok(PushKind::TemplateSendJobFinish {
        msg_id: required(raw.msg_id, "MsgID")?,
        status: required(raw.status, "Status")?,
    })
}

fn listed<T>(items: Option<Vec<T>>) -> Result<Vec<T>, EventError> {
    match items {
        Some(items) if !items.is_empty() => Ok(items),
        _ => Err(EventError::MissingField("List")),
    }
}

/// A value with surrounding whitespace removed; empty counts as absent.
fn optional<S: Into<String>>(value: Option<S>) -> Option<String> {
    let value: String = value?.into();
    let trimmed = value.trim();
    if trimmed.is_empty() {
        None
    } else {
        Some(trimmed.to_owned())
    }
}

fn required<S: Into<String>>(value: Option<S>, name: &'static str) -> Result<String, EventError> {
    optional(value).ok_or(EventError::MissingField(name))
}

fn integer(text: &str, name: &'static str) -> Result<i64, EventError> {
    text.parse()
        .map_err(|_| EventError::Malformed(format!("`{name}` is not an integer")))
}

// ---- Raw models: field names as WeChat spells them ----
//
// Every field is optional here so that a missing one is reported by name
// (`MissingField`) rather than as a deserializer message. XML text is read as
// `String`; JSON scalars as `JsonText`, which also takes numbers.

#[derive(Deserialize)]
struct RawEnvelope {
    #[serde(rename = "ToUserName")]
    to_user_name: Option<String>,
    #[serde(rename = "Encrypt")]
    encrypt: Option<String>,
}

#[derive(Deserialize)]
struct RawHeader<S> {
    #[serde(rename = "ToUserName")]
    to_user_name: Option<S>,
    #[serde(rename = "FromUserName")]
    from_user_name: Option<S>,
    #[serde(rename = "CreateTime")]
    create_time: Option<S>,
    #[serde(rename = "MsgType")]
    msg_type: Option<S>,
    #[serde(rename = "Event")]
    event: Option<S>,
}

/// One `List` item. Popup and change items use the first three fields, sent
/// items the template and the last three.
#[derive(Deserialize)]
struct RawItem<S> {
    #[serde(rename = "TemplateId")]
    template_id: Option<S>,
    #[serde(rename = "SubscribeStatusString")]
    subscribe_status: Option<S>,
    #[serde(rename = "PopupScene")]
    popup_scene: Option<S>,
    #[serde(rename = "MsgID")]
    msg_id: Option<S>,
    #[serde(rename = "ErrorCode")]
    error_code: Option<S>,
    #[serde(rename = "ErrorStatus")]
    error_status: Option<S>,
}

#[derive(Deserialize)]
struct RawJobFinish<S> {
    #[serde(rename = "MsgID")]
    msg_id: Option<S>,
    #[serde(rename = "Status")]
    status: Option<S>,
}

#[derive(Deserialize)]
struct XmlPopup {
    #[serde(rename = "SubscribeMsgPopupEvent")]
    event: Option<XmlList>,
}

#[derive(Deserialize)]
struct XmlChange {
    #[serde(rename = "SubscribeMsgChangeEvent")]
    event: Option<XmlList>,
}

#[derive(Deserialize)]
struct XmlSent {
    #[serde(rename = "SubscribeMsgSentEvent")]
    event: Option<XmlList>,
}

/// A wrapper element's repeated `<List>` children, in document order.
#[derive(Deserialize)]
struct XmlList {
    #[serde(rename = "List", default)]
    items: Vec<RawItem<String>>,
}

impl XmlPopup {
    fn into_items(self) -> Option<Vec<RawItem<String>>> {
        self.event.map(|list| list.items)
    }
}

impl XmlChange {
    fn into_items(self) -> Option<Vec<RawItem<String>>> {
        self.event.map(|list| list.items)
    }
}

impl XmlSent {
    fn into_items(self) -> Option<Vec<RawItem<String>>> {
        self.event.map(|list| list.items)
    }
}

/// A JSON scalar WeChat sends as a string or as an integer, kept as text so
/// that 64-bit msgids survive exactly. Floats, booleans, arrays and objects
/// are refused.
struct JsonText(String);

impl From<JsonText> for String {
    fn from(text: JsonText) -> Self {
        text.0
    }
}

impl<'de> Deserialize<'de> for JsonText {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(JsonTextVisitor)
    }
}

struct JsonTextVisitor;

impl Visitor<'_> for JsonTextVisitor {
    type Value = JsonText;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("a string or an integer")
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<JsonText, E> {
        Ok(JsonText(value.to_owned()))
    }

    fn visit_string<E: de::Error>(self, value: String) -> Result<JsonText, E> {
        Ok(JsonText(value))
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<JsonText, E> {
        Ok(JsonText(value.to_string()))
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<JsonText, E> {
        Ok(JsonText(value.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn choice(template_id: &str, status: &str, scene: Option<&str>) -> SubscribeChoice {
        SubscribeChoice {
            template_id: template_id.into(),
            status: status.into(),
            scene: scene.map(Into::into),
        }
    }

    fn sent_result(template_id: &str, msg_id: &str, error_code: i64, error_status: &str) -> SubscribeSent {
        SubscribeSent {
            template_id: template_id.into(),
            msg_id: msg_id.into(),
            error_code,
            error_status: error_status.into(),
        }
    }

    fn kind(body: &str, format: Format) -> PushKind {
        parse(body, format).expect("parses").kind
    }

    // ---- Subscribe popup ----

    /// WeChat's documented XML sample (subscribe-message.html), two `List`s.
    const XML_POPUP: &str = r#"<xml>
    <ToUserName><![CDATA[gh_123456789abc]]></ToUserName>
    <FromUserName><![CDATA[otFpruAK8D-E6EfStSYonYSBZ8_4]]></FromUserName>
    <CreateTime>1610969440</CreateTime>
    <MsgType><![CDATA[event]]></MsgType>
    <Event><![CDATA[subscribe_msg_popup_event]]></Event>
    <SubscribeMsgPopupEvent>
        <List>
            <TemplateId><![CDATA[VRR0UEO9VJOLs0MHlU0OilqX6MVFDwH3_3gz3Oc0NIc]]></TemplateId>
            <SubscribeStatusString><![CDATA[accept]]></SubscribeStatusString>
            <PopupScene>2</PopupScene>
        </List>
        <List>
            <TemplateId><![CDATA[9nLIlbOQZC5Y89AZteFEux3WCXRRRG5Wfzkpssu4bLI]]></TemplateId>
            <SubscribeStatusString><![CDATA[reject]]></SubscribeStatusString>
            <PopupScene>2</PopupScene>
        </List>
    </SubscribeMsgPopupEvent>
</xml>"#;

    #[test]
    fn xml_popup_with_two_lists() {
        let push = parse(XML_POPUP, Format::Xml).expect("parses");
        assert_eq!(
            push,
            Push {
                to_user_name: "gh_123456789abc".into(),
                from_user_name: "otFpruAK8D-E6EfStSYonYSBZ8_4".into(),
                create_time: 1_610_969_440,
                msg_type: "event".into(),
                event: Some(SUBSCRIBE_MSG_POPUP_EVENT.into()),
                kind: PushKind::SubscribePopup(vec![
                    choice("VRR0UEO9VJOLs0MHlU0OilqX6MVFDwH3_3gz3Oc0NIc", "accept", Some("2")),
                    choice("9nLIlbOQZC5Y89AZteFEux3WCXRRRG5Wfzkpssu4bLI", "reject", Some("2")),
                ]),
            }
        );
    }

    #[test]
    fn xml_popup_with_one_list_in_plain_text() {
        let body = "<xml><ToUserName>gh_123456789abc</ToUserName>\
            <FromUserName>otFpruAK8D-E6EfStSYonYSBZ8_4</FromUserName><CreateTime>1610969440</CreateTime>\
            <MsgType>event</MsgType><Event>subscribe_msg_popup_event</Event>\
            <SubscribeMsgPopupEvent><List><TemplateId>tmpl-1</TemplateId>\
            <SubscribeStatusString>accept</SubscribeStatusString><PopupScene>0</PopupScene></List>\
            </SubscribeMsgPopupEvent></xml>";
        assert_eq!(
            kind(body, Format::Xml),
            PushKind::SubscribePopup(vec![choice("tmpl-1", "accept", Some("0"))])
        );
    }

    /// The documented JSON sample (its trailing comma removed: that is not JSON).
    const JSON_POPUP: &str = r#"{
        "ToUserName": "gh_123456789abc",
        "FromUserName": "o7esq5OI1Uej6Xixw1lA2H7XDVbc",
        "CreateTime": "1620973045",
        "MsgType": "event",
        "Event": "subscribe_msg_popup_event",
        "List": [ {
            "TemplateId": "hD-ixGOhYmUfjOnI8MCzQMPshzGVeux_2vzyvQu7O68",
            "SubscribeStatusString": "accept",
            "PopupScene": "0"
        } ]
    }"#;

    #[test]
    fn json_popup_with_a_list_array_and_string_numbers() {
        let push = parse(JSON_POPUP, Format::Json).expect("parses");
        assert_eq!(push.from_user_name, "o7esq5OI1Uej6Xixw1lA2H7XDVbc");
        assert_eq!(push.create_time, 1_620_973_045);
        assert_eq!(
            push.kind,
            PushKind::SubscribePopup(vec![choice(
                "hD-ixGOhYmUfjOnI8MCzQMPshzGVeux_2vzyvQu7O68",
                "accept",
                Some("0")
            )])
        );
    }

    #[test]
    fn json_popup_with_several_items_and_numeric_fields() {
        let body = r#"{"ToUserName":"gh_123456789abc","FromUserName":"o7esq5OI1Uej6Xixw1lA2H7XDVbc",
            "CreateTime":1620973045,"MsgType":"event","Event":"subscribe_msg_popup_event",
            "List":[{"TemplateId":"a","SubscribeStatusString":"accept","PopupScene":0},
                    {"TemplateId":"b","SubscribeStatusString":"ban"},
                    {"TemplateId":"c","SubscribeStatusString":"acceptWithAudio","PopupScene":"1"}]}"#;
        assert_eq!(
            kind(body, Format::Json),
            PushKind::SubscribePopup(vec![
                choice("a", "accept", Some("0")),
                choice("b", "ban", None),
                choice("c", "acceptWithAudio", Some("1")),
            ])
        );
    }

    #[test]
    fn json_popup_under_the_wrapper_name() {
        // Seen in the wild: the wrapper's name holding the array...
        let bare = r#"{"ToUserName":"gh_1","FromUserName":"o1","CreateTime":"1620973045","MsgType":"event",
            "Event":"subscribe_msg_popup_event",
            "SubscribeMsgPopupEvent":[{"TemplateId":"a","SubscribeStatusString":"accept","PopupScene":"0"}]}"#;
        // ...or mirroring the XML nesting.
        let nested = r#"{"ToUserName":"gh_1","FromUserName":"o1","CreateTime":"1620973045","MsgType":"event",
            "Event":"subscribe_msg_popup_event",
            "SubscribeMsgPopupEvent":{"List":[{"TemplateId":"a","SubscribeStatusString":"accept","PopupScene":"0"},
                                              {"TemplateId":"b","SubscribeStatusString":"reject","PopupScene":"0"}]}}"#;
        assert_eq!(
            kind(bare, Format::Json),
            PushKind::SubscribePopup(vec![choice("a", "accept", Some("0"))])
        );
        assert_eq!(
            kind(nested, Format::Json),
            PushKind::SubscribePopup(vec![
                choice("a", "accept", Some("0")),
                choice("b", "reject", Some("0"))
            ])
        );
    }

    #[test]
    fn cdata_plain_and_mixed_text_read_the_same() {
        let cdata = "<xml><ToUserName><![CDATA[gh_1]]></ToUserName><FromUserName><![CDATA[o1]]></FromUserName>\
            <CreateTime>1</CreateTime><MsgType><![CDATA[event]]></MsgType>\
            <Event><![CDATA[subscribe_msg_change_event]]></Event><SubscribeMsgChangeEvent><List>\
            <TemplateId><![CDATA[t]]></TemplateId><SubscribeStatusString><![CDATA[reject]]></SubscribeStatusString>\
            </List></SubscribeMsgChangeEvent></xml>";
        let plain = cdata.replace("<![CDATA[", "").replace("]]>", "");
        // As in WeChat's own encryption sample: `<MsgType>  <![CDATA[video]]></MsgType>`.
        let mixed = cdata.replace("<![CDATA[event]]>", "  <![CDATA[event]]>  ");
        let expected = parse(cdata, Format::Xml).expect("parses");
        assert_eq!(
            expected.kind,
            PushKind::SubscribeChange(vec![choice("t", "reject", None)])
        );
        assert_eq!(parse(&plain, Format::Xml), Ok(expected.clone()));
        assert_eq!(parse(&mixed, Format::Xml), Ok(expected));
    }

    // ---- Subscribe change ----

    #[test]
    fn xml_change_with_one_list() {
        let body = r#"<xml>
            <ToUserName><![CDATA[gh_123456789abc]]></ToUserName>
            <FromUserName><![CDATA[otFpruAK8D-E6EfStSYonYSBZ8_4]]></FromUserName>
            <CreateTime>1610968440</CreateTime>
            <MsgType><![CDATA[event]]></MsgType>
            <Event><![CDATA[subscribe_msg_change_event]]></Event>
            <SubscribeMsgChangeEvent>
                <List>
                    <TemplateId><![CDATA[VRR0UEO9VJOLs0MHlU0OilqX6MVFDwH3_3gz3Oc0NIc]]></TemplateId>
                    <SubscribeStatusString><![CDATA[reject]]></SubscribeStatusString>
                </List>
            </SubscribeMsgChangeEvent>
        </xml>"#;
        assert_eq!(
            kind(body, Format::Xml),
            PushKind::SubscribeChange(vec![choice(
                "VRR0UEO9VJOLs0MHlU0OilqX6MVFDwH3_3gz3Oc0NIc",
                "reject",
                None
            )])
        );
    }

    /// As reported on WeChat's developer forum: a single change arrives with
    /// `"List"` as an object, several as an array, `CreateTime` as a number.
    #[test]
    fn json_change_with_a_single_object_or_an_array() {
        let single = r#"{"ToUserName":"xxxxx","FromUserName":"xxxxx","CreateTime":1625575518,"MsgType":"event",
            "Event":"subscribe_msg_change_event",
            "List":{"SubscribeStatusString":"reject","TemplateId":"NQezXFstp4zZV2q7u5aSprQZEx061ODkFJGLdungfoI"}}"#;
        let several = r#"{"ToUserName":"xxxxx","FromUserName":"xxxxx","CreateTime":1625575681,"MsgType":"event",
            "Event":"subscribe_msg_change_event",
            "List":[{"SubscribeStatusString":"reject","TemplateId":"savKN0g_My3T-Hb6t5yUJ2HfG6Wj56HRJzxGOyU2z_Y"},
                    {"SubscribeStatusString":"reject","TemplateId":"gIg6LaccfJuD1IAKzSdodAT7U3Z4ZEHZbPcLo1Q-VUo"}]}"#;
        let push = parse(single, Format::Json).expect("parses");
        assert_eq!(push.create_time, 1_625_575_518);
        assert_eq!(
            push.kind,
            PushKind::SubscribeChange(vec![choice(
                "NQezXFstp4zZV2q7u5aSprQZEx061ODkFJGLdungfoI",
                "reject",
                None
            )])
        );
        assert_eq!(
            kind(several, Format::Json),
            PushKind::SubscribeChange(vec![
                choice("savKN0g_My3T-Hb6t5yUJ2HfG6Wj56HRJzxGOyU2z_Y", "reject", None),
                choice("gIg6LaccfJuD1IAKzSdodAT7U3Z4ZEHZbPcLo1Q-VUo", "reject", None),
            ])
        );
    }

    // ---- Subscribe sent ----

    #[test]
    fn xml_sent_keeps_msgids_beyond_2_pow_53_exact() {
        let body = r#"<xml>
            <ToUserName><![CDATA[gh_123456789abc]]></ToUserName>
            <FromUserName><![CDATA[o7esq5OI1Uej6Xixw1lA2H7XDVbc]]></FromUserName>
            <CreateTime>1620963428</CreateTime>
            <MsgType><![CDATA[event]]></MsgType>
            <Event><![CDATA[subscribe_msg_sent_event]]></Event>
            <SubscribeMsgSentEvent>
                <List>
                    <TemplateId><![CDATA[VRR0UEO9VJOLs0MHlU0OilqX6MVFDwH3_3gz3Oc0NIc]]></TemplateId>
                    <MsgID>1700827132819554304</MsgID>
                    <ErrorCode>0</ErrorCode>
                    <ErrorStatus><![CDATA[success]]></ErrorStatus>
                </List>
                <List>
                    <TemplateId><![CDATA[9nLIlbOQZC5Y89AZteFEux3WCXRRRG5Wfzkpssu4bLI]]></TemplateId>
                    <MsgID>1700827132819554305</MsgID>
                    <ErrorCode>10005</ErrorCode>
                    <ErrorStatus><![CDATA[fail]]></ErrorStatus>
                </List>
            </SubscribeMsgSentEvent>
        </xml>"#;
        assert_eq!(
            kind(body, Format::Xml),
            PushKind::SubscribeSent(vec![
                sent_result(
                    "VRR0UEO9VJOLs0MHlU0OilqX6MVFDwH3_3gz3Oc0NIc",
                    "1700827132819554304",
                    0,
                    "success"
                ),
                sent_result(
                    "9nLIlbOQZC5Y89AZteFEux3WCXRRRG5Wfzkpssu4bLI",
                    "1700827132819554305",
                    10005,
                    "fail"
                ),
            ])
        );
    }

    #[test]
    fn json_sent_with_numeric_or_string_msgid() {
        let numeric = r#"{"ToUserName":"gh_123456789abc","FromUserName":"o7esq5OI1Uej6Xixw1lA2H7XDVbc",
            "CreateTime":1620963428,"MsgType":"event","Event":"subscribe_msg_sent_event",
            "List":{"TemplateId":"t1","MsgID":1700827132819554304,"ErrorCode":0,"ErrorStatus":"success"}}"#;
        let string = r#"{"ToUserName":"gh_123456789abc","FromUserName":"o7esq5OI1Uej6Xixw1lA2H7XDVbc",
            "CreateTime":"1620963428","MsgType":"event","Event":"subscribe_msg_sent_event",
            "List":[{"TemplateId":"t1","MsgID":"1700827132819554304","ErrorCode":"0","ErrorStatus":"success"},
                    {"TemplateId":"t2","MsgID":"18446744073709551615","ErrorCode":"-1","ErrorStatus":"system error"}]}"#;
        assert_eq!(
            kind(numeric, Format::Json),
            PushKind::SubscribeSent(vec![sent_result("t1", "1700827132819554304", 0, "success")])
        );
        assert_eq!(
            kind(string, Format::Json),
            PushKind::SubscribeSent(vec![
                sent_result("t1", "1700827132819554304", 0, "success"),
                sent_result("t2", "18446744073709551615", -1, "system error"),
            ])
        );
    }

    #[test]
    fn json_sent_refuses_a_fractional_msgid() {
        let body = r#"{"ToUserName":"gh_1","FromUserName":"o1","CreateTime":1,"MsgType":"event",
            "Event":"subscribe_msg_sent_event","List":{"TemplateId":"t1","MsgID":1.5,"ErrorCode":0}}"#;
        assert!(matches!(parse(body, Format::Json), Err(EventError::Malformed(_))));
    }

    #[test]
    fn sent_without_error_status_keeps_an_empty_one() {
        let body = r#"{"ToUserName":"gh_1","FromUserName":"o1","CreateTime":1,"MsgType":"event",
            "Event":"subscribe_msg_sent_event","List":{"TemplateId":"t1","MsgID":"42","ErrorCode":0}}"#;
        assert_eq!(
            kind(body, Format::Json),
            PushKind::SubscribeSent(vec![sent_result("t1", "42", 0, "")])
        );
    }

    // ---- Official account TEMPLATESENDJOBFINISH ----

    #[test]
    fn xml_template_send_job_finish_keeps_the_status_verbatim() {
        for status in [
            "success",
            "failed:user block",
            "failed: system failed",
            "something new",
        ] {
            let body = format!(
                "<xml><ToUserName><![CDATA[gh_7f083739789a]]></ToUserName>\
                 <FromUserName><![CDATA[oia2TjuEGTNoeX76QEjQNrcURxG8]]></FromUserName>\
                 <CreateTime>1395658920</CreateTime><MsgType><![CDATA[event]]></MsgType>\
                 <Event><![CDATA[TEMPLATESENDJOBFINISH]]></Event><MsgID>200163836</MsgID>\
                 <Status><![CDATA[{status}]]></Status></xml>"
            );
            let push = parse(&body, Format::Xml).expect("parses");
            assert_eq!(push.to_user_name, "gh_7f083739789a");
            assert_eq!(push.from_user_name, "oia2TjuEGTNoeX76QEjQNrcURxG8");
            assert_eq!(push.event.as_deref(), Some(TEMPLATE_SEND_JOB_FINISH));
            assert_eq!(
                push.kind,
                PushKind::TemplateSendJobFinish {
                    msg_id: "200163836".into(),
                    status: status.into()
                }
            );
        }
    }

    #[test]
    fn json_template_send_job_finish_with_a_numeric_msgid() {
        let body = r#"{"ToUserName":"gh_7f083739789a","FromUserName":"oia2TjuEGTNoeX76QEjQNrcURxG8",
            "CreateTime":1395658920,"MsgType":"event","Event":"TEMPLATESENDJOBFINISH",
            "MsgID":9223372036854775807,"Status":"failed:user block"}"#;
        assert_eq!(
            kind(body, Format::Json),
            PushKind::TemplateSendJobFinish {
                msg_id: "9223372036854775807".into(),
                status: "failed:user block".into()
            }
        );
    }

    #[test]
    fn job_finish_without_msgid_or_status_is_refused() {
        let body = "<xml><ToUserName>gh_1</ToUserName><FromUserName>o1</FromUserName><CreateTime>1</CreateTime>\
            <MsgType>event</MsgType><Event>TEMPLATESENDJOBFINISH</Event><Status>success</Status></xml>";
        assert_eq!(parse(body, Format::Xml), Err(EventError::MissingField("MsgID")));
        let body = r#"{"ToUserName":"gh_1","FromUserName":"o1","CreateTime":1,"MsgType":"event",
            "Event":"TEMPLATESENDJOBFINISH","MsgID":"1"}"#;
        assert_eq!(parse(body, Format::Json), Err(EventError::MissingField("Status")));
    }

    // ---- Everything else ----

    #[test]
    fn unknown_events_and_messages_are_other() {
        let follow = "<xml><ToUserName><![CDATA[toUser]]></ToUserName><FromUserName><![CDATA[FromUser]]></FromUserName>\
            <CreateTime>123456789</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[subscribe]]></Event></xml>";
        assert_eq!(
            kind(follow, Format::Xml),
            PushKind::Other {
                msg_type: "event".into(),
                event: Some("subscribe".into())
            }
        );

        // The plaintext of WeChat's published encryption sample.
        let text = "<xml><ToUserName><![CDATA[wx5823bf96d3bd56c7]]></ToUserName>\n\
            <FromUserName><![CDATA[mycreate]]></FromUserName>\n<CreateTime>1409659813</CreateTime>\n\
            <MsgType><![CDATA[text]]></MsgType>\n<Content><![CDATA[hello]]></Content>\n\
            <MsgId>4561255354251345929</MsgId>\n<AgentID>218</AgentID>\n</xml>";
        let push = parse(text, Format::Xml).expect("parses");
        assert_eq!(push.from_user_name, "mycreate");
        assert_eq!(
            push.kind,
            PushKind::Other {
                msg_type: "text".into(),
                event: None
            }
        );

        let media_check = r#"{"ToUserName":"gh_38cc49f9733b","FromUserName":"oH1fu0FdHqpToe2T6gBj0WyB8iS1",
            "CreateTime":1626959646,"MsgType":"event","Event":"wxa_media_check","appid":"wx8f16a5e3d1f0d4a0",
            "trace_id":"60f96f1d-3845297a-1976a3ae","version":2,
            "result":{"suggest":"pass","label":100},"detail":[{"strategy":"content_model","errcode":0}]}"#;
        assert_eq!(
            kind(media_check, Format::Json),
            PushKind::Other {
                msg_type: "event".into(),
                event: Some("wxa_media_check".into())
            }
        );
    }

    #[test]
    fn an_unknown_event_never_reads_the_known_events_fields() {
        let xml = "<xml><ToUserName>gh_1</ToUserName><FromUserName>o1</FromUserName><CreateTime>1</CreateTime>\
            <MsgType>event</MsgType><Event>some_future_event</Event>\
            <Status><Code>1</Code></Status><List><Whatever/></List></xml>";
        let json = r#"{"ToUserName":"gh_1","FromUserName":"o1","CreateTime":1,"MsgType":"event",
            "Event":"some_future_event","Status":{"code":1},"List":"not a list","MsgID":[1,2]}"#;
        let other = PushKind::Other {
            msg_type: "event".into(),
            event: Some("some_future_event".into()),
        };
        assert_eq!(kind(xml, Format::Xml), other);
        assert_eq!(kind(json, Format::Json), other);
    }

    #[test]
    fn a_known_event_name_outside_msgtype_event_is_other() {
        let body = r#"{"ToUserName":"gh_1","FromUserName":"o1","CreateTime":1,"MsgType":"text",
            "Event":"subscribe_msg_popup_event"}"#;
        assert_eq!(
            kind(body, Format::Json),
            PushKind::Other {
                msg_type: "text".into(),
                event: Some(SUBSCRIBE_MSG_POPUP_EVENT.into())
            }
        );
    }

    #[test]
    fn missing_or_bad_header_fields_are_named() {
        let no_openid = r#"{"ToUserName":"gh_1","CreateTime":1,"MsgType":"event","Event":"x"}"#;
        assert_eq!(
            parse(no_openid, Format::Json),
            Err(EventError::MissingField("FromUserName"))
        );
        let blank_type = "<xml><ToUserName>gh_1</ToUserName><FromUserName>o1</FromUserName>\
            <CreateTime>1</CreateTime><MsgType><![CDATA[ ]]></MsgType></xml>";
        assert_eq!(
            parse(blank_type, Format::Xml),
            Err(EventError::MissingField("MsgType"))
        );
        let bad_time = "<xml><ToUserName>gh_1</ToUserName><FromUserName>o1</FromUserName>\
            <CreateTime>yesterday</CreateTime><MsgType>event</MsgType></xml>";
        assert!(matches!(
            parse(bad_time, Format::Xml),
            Err(EventError::Malformed(_))
        ));
    }

    #[test]
    fn subscribe_events_without_items_or_template_are_refused() {
        let no_list = "<xml><ToUserName>gh_1</ToUserName><FromUserName>o1</FromUserName><CreateTime>1</CreateTime>\
            <MsgType>event</MsgType><Event>subscribe_msg_popup_event</Event></xml>";
        assert_eq!(parse(no_list, Format::Xml), Err(EventError::MissingField("List")));
        let empty_wrapper = "<xml><ToUserName>gh_1</ToUserName><FromUserName>o1</FromUserName>\
            <CreateTime>1</CreateTime><MsgType>event</MsgType><Event>subscribe_msg_change_event</Event>\
            <SubscribeMsgChangeEvent></SubscribeMsgChangeEvent></xml>";
        assert_eq!(
            parse(empty_wrapper, Format::Xml),
            Err(EventError::MissingField("List"))
        );
        let empty_array = r#"{"ToUserName":"gh_1","FromUserName":"o1","CreateTime":1,"MsgType":"event",
            "Event":"subscribe_msg_popup_event","List":[]}"#;
        assert_eq!(
            parse(empty_array, Format::Json),
            Err(EventError::MissingField("List"))
        );
        let no_template = r#"{"ToUserName":"gh_1","FromUserName":"o1","CreateTime":1,"MsgType":"event",
            "Event":"subscribe_msg_popup_event","List":{"SubscribeStatusString":"accept"}}"#;
        assert_eq!(
            parse(no_template, Format::Json),
            Err(EventError::MissingField("TemplateId"))
        );
        let no_msgid = r#"{"ToUserName":"gh_1","FromUserName":"o1","CreateTime":1,"MsgType":"event",
            "Event":"subscribe_msg_sent_event","List":{"TemplateId":"t","ErrorCode":0}}"#;
        assert_eq!(
            parse(no_msgid, Format::Json),
            Err(EventError::MissingField("MsgID"))
        );
    }

    #[test]
    fn json_must_be_objects_all_the_way_down() {
        let array = r#"["gh_1","o1","1","event","subscribe_msg_popup_event"]"#;
        assert!(matches!(
            parse(array, Format::Json),
            Err(EventError::Malformed(_))
        ));
        assert!(matches!(
            envelope(r#"["gh_1","x"]"#, Format::Json),
            Err(EventError::Malformed(_))
        ));
        let positional = r#"{"ToUserName":"gh_1","FromUserName":"o1","CreateTime":1,"MsgType":"event",
            "Event":"subscribe_msg_popup_event","List":[["tmpl-1","accept"]]}"#;
        assert!(matches!(
            parse(positional, Format::Json),
            Err(EventError::Malformed(_))
        ));
        let scalar = r#"{"ToUserName":"gh_1","FromUserName":"o1","CreateTime":1,"MsgType":"event",
            "Event":"subscribe_msg_change_event","List":"reject"}"#;
        assert!(matches!(
            parse(scalar, Format::Json),
            Err(EventError::Malformed(_))
        ));
    }

    // ---- Hostile and broken input ----

    const BILLION_LAUGHS: &str = r#"<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<xml><ToUserName>&lol9;</ToUserName><FromUserName>o1</FromUserName><CreateTime>1</CreateTime>
<MsgType>event</MsgType><Encrypt>&lol9;</Encrypt></xml>"#;

    #[test]
    fn doctype_is_refused_never_expanded() {
        assert_eq!(parse(BILLION_LAUGHS, Format::Xml), Err(EventError::Doctype));
        assert_eq!(envelope(BILLION_LAUGHS, Format::Xml), Err(EventError::Doctype));

        let xxe = r#"<?xml version="1.0"?><!DOCTYPE xml [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
            <xml><ToUserName>&xxe;</ToUserName><FromUserName>o1</FromUserName><CreateTime>1</CreateTime>
            <MsgType>event</MsgType></xml>"#;
        assert_eq!(parse(xxe, Format::Xml), Err(EventError::Doctype));

        let lowercase = "<!doctype xml><xml><ToUserName>gh_1</ToUserName></xml>";
        assert_eq!(envelope(lowercase, Format::Xml), Err(EventError::Doctype));

        // After the root element is still a DOCTYPE.
        let trailing = "<xml><ToUserName>gh_1</ToUserName></xml><!DOCTYPE x>";
        assert_eq!(envelope(trailing, Format::Xml), Err(EventError::Doctype));

        let unclosed = "<!DOCTYPE x [ <!ENTITY a \"b\">";
        assert_eq!(envelope(unclosed, Format::Xml), Err(EventError::Doctype));

        // Inside CDATA it is only text, which a user may well send the account.
        let text = "<xml><ToUserName>gh_1</ToUserName><FromUserName>o1</FromUserName>\
            <CreateTime>1</CreateTime><MsgType>text</MsgType><Content><![CDATA[<!DOCTYPE html>]]></Content></xml>";
        assert_eq!(
            kind(text, Format::Xml),
            PushKind::Other {
                msg_type: "text".into(),
                event: None
            }
        );
    }

    #[test]
    fn undeclared_entities_are_errors_not_expansions() {
        let body = "<xml><ToUserName>&lol9;</ToUserName><FromUserName>o1</FromUserName>\
            <CreateTime>1</CreateTime><MsgType>event</MsgType></xml>";
        assert!(matches!(parse(body, Format::Xml), Err(EventError::Malformed(_))));
    }

    #[test]
    fn the_wrong_format_is_an_error() {
        assert!(matches!(
            parse(JSON_POPUP, Format::Xml),
            Err(EventError::Malformed(_))
        ));
        assert!(matches!(
            parse(XML_POPUP, Format::Json),
            Err(EventError::Malformed(_))
        ));
        assert!(matches!(
            envelope(r#"{"Encrypt":"x"}"#, Format::Xml),
            Err(EventError::Malformed(_))
        ));
        assert!(matches!(
            envelope("<xml><Encrypt>x</Encrypt></xml>", Format::Json),
            Err(EventError::Malformed(_))
        ));
    }

    #[test]
    fn empty_bodies_are_errors() {
        for body in ["", "   \n\t", "\u{feff}"] {
            for format in [Format::Xml, Format::Json] {
                assert!(
                    matches!(parse(body, format), Err(EventError::Malformed(_))),
                    "{body:?} {format:?}"
                );
                assert!(
                    matches!(envelope(body, format), Err(EventError::Malformed(_))),
                    "{body:?} {format:?}"
                );
            }
        }
    }

    #[test]
    fn a_megabyte_of_junk_is_an_error_without_panic() {
        const MB: usize = 1 << 20;
        let junk = [
            "x".repeat(MB),
            "<a>".repeat(MB / 3),
            "<".repeat(MB),
            format!("<xml>{}", "<![CDATA[".repeat(MB / 9)),
            "[".repeat(MB),
            "{\"a\":".repeat(MB / 5),
            format!("{{\"ToUserName\":\"{}", "\\u12".repeat(MB / 4)),
            "\u{feff}\u{0}\u{7f}é漢".repeat(MB / 8),
        ];
        for body in &junk {
            for format in [Format::Xml, Format::Json] {
                assert!(parse(body, format).is_err());
                assert!(envelope(body, format).is_err());
            }
        }
        // A huge Malformed message is cut to size.
        if let Err(EventError::Malformed(message)) = parse(&junk[0], Format::Json) {
            assert!(message.chars().count() <= MAX_ERROR_CHARS);
        }
    }

    // ---- Envelope and sniffing ----

    #[test]
    fn envelopes_in_both_formats() {
        let xml = "<xml>\n<ToUserName><![CDATA[wx5823bf96d3bd56c7]]></ToUserName>\
            <Encrypt><![CDATA[RypEvHKD8QQKFhvQ6QleEB4J58tiPdvo+rtK1I9qca6aM/wvqnLSV5zEPeusUiX5L5X/0lWfrf0Q==]]></Encrypt>\n\
            <AgentID><![CDATA[218]]></AgentID>\n</xml>";
        assert_eq!(
            envelope(xml, Format::Xml),
            Ok(Envelope {
                to_user_name: Some("wx5823bf96d3bd56c7".into()),
                encrypt: Some(
                    "RypEvHKD8QQKFhvQ6QleEB4J58tiPdvo+rtK1I9qca6aM/wvqnLSV5zEPeusUiX5L5X/0lWfrf0Q==".into()
                ),
            })
        );
        let json = r#"{"ToUserName":"gh_123456789abc","Encrypt":"abc+/def=="}"#;
        assert_eq!(
            envelope(json, Format::Json),
            Ok(Envelope {
                to_user_name: Some("gh_123456789abc".into()),
                encrypt: Some("abc+/def==".into())
            })
        );
    }

    #[test]
    fn a_plain_body_has_no_encrypt() {
        assert_eq!(envelope(XML_POPUP, Format::Xml).map(|e| e.encrypt), Ok(None));
        assert_eq!(envelope(JSON_POPUP, Format::Json).map(|e| e.encrypt), Ok(None));
        assert_eq!(
            envelope("<xml><Encrypt></Encrypt></xml>", Format::Xml),
            Ok(Envelope {
                to_user_name: None,
                encrypt: None
            })
        );
    }

    #[test]
    fn sniff_reads_the_first_character() {
        assert_eq!(sniff(XML_POPUP), Some(Format::Xml));
        assert_eq!(
            sniff("\u{feff}\n  <?xml version=\"1.0\"?><xml/>"),
            Some(Format::Xml)
        );
        assert_eq!(sniff(JSON_POPUP), Some(Format::Json));
        assert_eq!(sniff("\r\n{}"), Some(Format::Json));
        assert_eq!(sniff(""), None);
        assert_eq!(sniff("success"), None);
        assert_eq!(sniff("[1]"), None);
    }

    #[test]
    fn an_xml_declaration_and_leading_whitespace_are_fine() {
        let body = format!("\u{feff}\n<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n{XML_POPUP}");
        assert_eq!(parse(&body, Format::Xml), parse(XML_POPUP, Format::Xml));
    }
}
