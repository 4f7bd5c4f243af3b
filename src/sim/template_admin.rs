//! The template management routes' rules (docs/simulator.md), checked in WeChat's
//! order: the token (the mini-program's, or the official account's), the
//! paging limits, the library entry and its keywords, the account's limit.
//! Answers are WeChat's JSON bodies without `errcode`; [`super::wechat`]
//! adds it.

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Value, json};

use super::errors::WxError;
use super::library::{self, AccountTemplate, Channel, Keyword};
use super::state::State;

/// Most items of one old-library or account page (`count`).
pub const MAX_COUNT: u64 = 20;
/// Most titles of one subscribe library page (`limit`).
pub const MAX_LIMIT: u64 = 30;
/// Keywords a subscribe template takes.
const SUBSCRIBE_KEYWORDS: std::ops::RangeInclusive<usize> = 2..=5;
/// Keywords an old-library template takes.
const TEMPLATE_KEYWORDS: std::ops::RangeInclusive<usize> = 1..=10;
/// Longest `sceneDesc`, in characters.
const SCENE_CHARS: usize = 15;

#[derive(Deserialize)]
pub struct Paging {
    offset: Option<u64>,
    count: Option<u64>,
}

#[derive(Deserialize)]
pub struct LibraryId {
    id: Option<String>,
}

#[derive(Deserialize)]
pub struct TemplateAdd {
    id: Option<String>,
    keyword_id_list: Option<Vec<u32>>,
}

#[derive(Deserialize)]
pub struct TemplateId {
    template_id: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SubscribeAdd {
    tid: Option<Value>,
    kid_list: Option<Vec<u32>>,
    scene_desc: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SubscribeDel {
    pri_tmpl_id: Option<String>,
}

#[derive(Deserialize)]
pub struct OfficialAccountAdd {
    template_id_short: Option<String>,
    keyword_name_list: Option<Vec<String>>,
}

fn page_of(paging: &Paging) -> Result<(usize, usize), WxError> {
    match (paging.offset, paging.count) {
        (Some(offset), Some(count)) if (1..=MAX_COUNT).contains(&count) => {
            Ok((offset as usize, count as usize))
        }
        _ => Err(WxError::InvalidArgument),
    }
}

/// The keywords `ids` of `entry`, in the order given: each known, none twice.
fn picked<'e>(entry: &'e library::Entry, ids: &[u32]) -> Option<Vec<&'e Keyword>> {
    let mut picked = Vec::with_capacity(ids.len());
    for id in ids {
        let keyword = entry.keywords.iter().find(|k| k.id == *id)?;
        if picked.iter().any(|k: &&Keyword| k.id == *id) {
            return None;
        }
        picked.push(keyword);
    }
    Some(picked)
}

impl State {
    /// The account may hold one more template of `channel`.
    fn room_for(&self, channel: Channel) -> Result<(), WxError> {
        if self.account.count(channel) < channel.limit() {
            return Ok(());
        }
        Err(match channel {
            Channel::Subscribe | Channel::OfficialAccountSubscribe => WxError::SubscribeTemplateLimit,
            _ => WxError::TemplateLimit,
        })
    }

    /// Deletes an account template of `channel` (40037 if there is none):
    /// it is sendable no more, and a subscribe template's grants go with it.
    fn delete(&mut self, channel: Channel, id: &str) -> Result<Value, WxError> {
        self.account
            .remove(channel, id)
            .ok_or(WxError::InvalidTemplateId)?;
        match channel {
            Channel::Template => {
                self.templates.remove(id);
            }
            Channel::Subscribe => self.subscriptions.remove_template(id),
            Channel::OfficialAccountSubscribe => self.oa_subscriptions.remove_template(id),
            Channel::OfficialAccount => {}
        }
        Ok(json!({}))
    }

    /// `wxopen/template/library/list`.
    pub fn template_library(
        &self,
        token: Option<&str>,
        paging: Paging,
        now: DateTime<Utc>,
    ) -> Result<Value, WxError> {
        self.check_token(token, now)?;
        let (offset, count) = page_of(&paging)?;
        let list: Vec<Value> = library::TEMPLATE_LIBRARY
            .iter()
            .skip(offset)
            .take(count)
            .map(|e| json!({"id": e.id, "title": e.title}))
            .collect();
        Ok(json!({"list": list, "total_count": library::TEMPLATE_LIBRARY.len()}))
    }

    /// `wxopen/template/library/get`.
    pub fn template_library_entry(
        &self,
        token: Option<&str>,
        id: LibraryId,
        now: DateTime<Utc>,
    ) -> Result<Value, WxError> {
        self.check_token(token, now)?;
        let entry = id
            .id
            .and_then(|id| library::entry(Channel::Template, &id))
            .ok_or(WxError::InvalidTemplateId)?;
        let keywords: Vec<Value> = entry
            .keywords
            .iter()
            .map(|k| json!({"keyword_id": k.id, "name": k.name, "example": k.example}))
            .collect();
        Ok(json!({"id": entry.id, "title": entry.title, "keyword_list": keywords}))
    }

    /// `wxopen/template/add`.
    pub fn template_add(
        &mut self,
        token: Option<&str>,
        add: TemplateAdd,
        now: DateTime<Utc>,
    ) -> Result<Value, WxError> {
        self.check_token(token, now)?;
        let entry = add
            .id
            .and_then(|id| library::entry(Channel::Template, &id))
            .ok_or(WxError::InvalidTemplateId)?;
        let ids = add.keyword_id_list.unwrap_or_default();
        let keywords = picked(entry, &ids)
            .filter(|k| TEMPLATE_KEYWORDS.contains(&k.len()))
            .ok_or(WxError::InvalidArgument)?;
        self.room_for(Channel::Template)?;
        let template_id = library::new_template_id();
        let template = AccountTemplate::from_entry(Channel::Template, entry, &keywords);
        self.account
            .insert(Channel::Template, template_id.clone(), template);
        self.templates.insert(template_id.clone());
        Ok(json!({"template_id": template_id}))
    }

    /// `wxopen/template/list`.
    pub fn template_list(
        &mut self,
        token: Option<&str>,
        paging: Paging,
        now: DateTime<Utc>,
    ) -> Result<Value, WxError> {
        self.check_token(token, now)?;
        let (offset, count) = page_of(&paging)?;
        self.template_lists += 1;
        let list: Vec<Value> = self
            .account
            .list(Channel::Template)
            .into_iter()
            .skip(offset)
            .take(count)
            .collect();
        Ok(json!({"list": list}))
    }

    /// `wxopen/template/del`.
    pub fn template_del(
        &mut self,
        token: Option<&str>,
        del: TemplateId,
        now: DateTime<Utc>,
    ) -> Result<Value, WxError> {
        self.check_token(token, now)?;
        self.delete(Channel::Template, &del.template_id.unwrap_or_default())
    }

    /// Whose subscribe templates a `wxaapi/newtmpl/*` call under `token` is
    /// about: the mini-program's, or the official account's (its subscribe
    /// notifications use the same calls under its own token).
    fn newtmpl_side(&self, token: Option<&str>, now: DateTime<Utc>) -> Result<Channel, WxError> {
        match self.check_token(token, now) {
            Ok(()) => Ok(Channel::Subscribe),
            Err(err) => {
                self.check_oa_token(token, now).map_err(|_| err)?;
                Ok(Channel::OfficialAccountSubscribe)
            }
        }
    }

    /// `wxaapi/newtmpl/getcategory`.
    pub fn subscribe_categories(&self, token: Option<&str>, now: DateTime<Utc>) -> Result<Value, WxError> {
        self.newtmpl_side(token, now)?;
        let data: Vec<Value> = library::CATEGORIES
            .iter()
            .map(|(id, name)| json!({"id": id, "name": name}))
            .collect();
        Ok(json!({"data": data}))
    }

    /// `wxaapi/newtmpl/getpubtemplatetitles?ids&start&limit`.
    pub fn subscribe_titles(
        &self,
        token: Option<&str>,
        ids: Option<&str>,
        start: Option<u64>,
        limit: Option<u64>,
        now: DateTime<Utc>,
    ) -> Result<Value, WxError> {
        self.newtmpl_side(token, now)?;
        let (Some(start), Some(limit)) = (start, limit) else {
            return Err(WxError::InvalidArgument);
        };
        if !(1..=MAX_LIMIT).contains(&limit) {
            return Err(WxError::InvalidArgument);
        }
        let categories: Vec<u32> = ids
            .unwrap_or_default()
            .split(',')
            .map(|id| id.trim().parse().map_err(|_| WxError::InvalidArgument))
            .collect::<Result<_, _>>()?;
        if categories
            .iter()
            .any(|c| !library::CATEGORIES.iter().any(|(id, _)| id == c))
        {
            return Err(WxError::InvalidArgument);
        }
        let matching: Vec<&library::Entry> = library::SUBSCRIBE_LIBRARY
            .iter()
            .filter(|e| categories.contains(&e.category))
            .collect();
        let data: Vec<Value> = matching
            .iter()
            .skip(start as usize)
            .take(limit as usize)
            .map(|e| json!({"tid": e.id.parse::<u64>().unwrap_or_default(), "title": e.title, "type": 2, "categoryId": e.category.to_string()}))
            .collect();
        Ok(json!({"count": matching.len(), "data": data}))
    }

    /// `wxaapi/newtmpl/getpubtemplatekeywords?tid`.
    pub fn subscribe_keywords(
        &self,
        token: Option<&str>,
        tid: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<Value, WxError> {
        self.newtmpl_side(token, now)?;
        let entry = tid
            .and_then(|tid| library::entry(Channel::Subscribe, tid))
            .ok_or(WxError::InvalidTid)?;
        let data: Vec<Value> = entry
            .keywords
            .iter()
            .map(|k| json!({"kid": k.id, "name": k.name, "example": k.example, "rule": k.rule}))
            .collect();
        Ok(json!({"count": data.len(), "data": data}))
    }

    /// `wxaapi/newtmpl/addtemplate`.
    pub fn subscribe_add(
        &mut self,
        token: Option<&str>,
        add: SubscribeAdd,
        now: DateTime<Utc>,
    ) -> Result<Value, WxError> {
        let side = self.newtmpl_side(token, now)?;
        let tid = match add.tid {
            Some(Value::Number(n)) => n.to_string(),
            Some(Value::String(s)) => s,
            _ => return Err(WxError::InvalidTid),
        };
        let entry = library::entry(Channel::Subscribe, &tid).ok_or(WxError::InvalidTid)?;
        let keywords = picked(entry, &add.kid_list.unwrap_or_default())
            .filter(|k| SUBSCRIBE_KEYWORDS.contains(&k.len()))
            .ok_or(WxError::InvalidKidList)?;
        if add.scene_desc.is_some_and(|s| s.chars().count() > SCENE_CHARS) {
            return Err(WxError::InvalidSceneDesc);
        }
        self.room_for(side)?;
        let template_id = library::new_template_id();
        let template = AccountTemplate::from_entry(Channel::Subscribe, entry, &keywords);
        let subscriptions = match side {
            Channel::OfficialAccountSubscribe => &mut self.oa_subscriptions,
            _ => &mut self.subscriptions,
        };
        subscriptions.add_template(template_id.clone(), template.keys.clone(), false);
        self.account.insert(side, template_id.clone(), template);
        Ok(json!({"priTmplId": template_id}))
    }

    /// `wxaapi/newtmpl/gettemplate`: the mini-program's subscribe
    /// templates, or under the official account's token its own (each
    /// with its `type`).
    pub fn subscribe_list(&mut self, token: Option<&str>, now: DateTime<Utc>) -> Result<Value, WxError> {
        let channel = self.newtmpl_side(token, now)?;
        self.template_lists += 1;
        Ok(json!({"data": self.account.list(channel)}))
    }

    /// `wxaapi/newtmpl/deltemplate`.
    pub fn subscribe_del(
        &mut self,
        token: Option<&str>,
        del: SubscribeDel,
        now: DateTime<Utc>,
    ) -> Result<Value, WxError> {
        let side = self.newtmpl_side(token, now)?;
        self.delete(side, &del.pri_tmpl_id.unwrap_or_default())
    }

    /// The official account's `template/get_all_private_template`.
    pub fn oa_templates(&mut self, token: Option<&str>, now: DateTime<Utc>) -> Result<Value, WxError> {
        self.check_oa_token(token, now)?;
        self.template_lists += 1;
        Ok(json!({"template_list": self.account.list(Channel::OfficialAccount)}))
    }

    /// `template/api_add_template`: keywords by name, all of them when none given.
    pub fn oa_add(
        &mut self,
        token: Option<&str>,
        add: OfficialAccountAdd,
        now: DateTime<Utc>,
    ) -> Result<Value, WxError> {
        self.check_oa_token(token, now)?;
        let entry = add
            .template_id_short
            .and_then(|id| library::entry(Channel::OfficialAccount, &id))
            .ok_or(WxError::InvalidTemplateId)?;
        let keywords: Vec<&Keyword> = match add.keyword_name_list {
            None => entry.keywords.iter().collect(),
            Some(names) => names
                .iter()
                .map(|name| entry.keywords.iter().find(|k| k.name == name))
                .collect::<Option<_>>()
                .filter(|k: &Vec<&Keyword>| !k.is_empty())
                .ok_or(WxError::InvalidArgument)?,
        };
        self.room_for(Channel::OfficialAccount)?;
        let template_id = library::new_template_id();
        let template = AccountTemplate::from_entry(Channel::OfficialAccount, entry, &keywords);
        self.account
            .insert(Channel::OfficialAccount, template_id.clone(), template);
        Ok(json!({"template_id": template_id}))
    }

    /// `template/del_private_template`.
    pub fn oa_del(
        &mut self,
        token: Option<&str>,
        del: TemplateId,
        now: DateTime<Utc>,
    ) -> Result<Value, WxError> {
        self.check_oa_token(token, now)?;
        self.delete(Channel::OfficialAccount, &del.template_id.unwrap_or_default())
    }
}
