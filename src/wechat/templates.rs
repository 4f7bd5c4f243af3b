//! WeChat's template management calls for the three channels (docs/api.md):
//! the old mini-program library (`wxopen/template/*`), the subscribe
//! library (`wxaapi/newtmpl/*`) and the official account's private
//! templates (`cgi-bin/template/*`), and the quota calls
//! (`openapi/quota/get`, `clear_quota`). Each takes an access token and
//! answers WeChat's JSON, or the errcode it refused with; the token's
//! central control is the caller's ([`crate::templates`]).

use serde_json::{Value, json};

use super::{CallError, WechatClient};

/// Why a management call gave no usable answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManageError {
    #[error(transparent)]
    Call(#[from] CallError),
    #[error("WeChat refused (errcode {errcode}): {errmsg}")]
    Refused { errcode: i64, errmsg: String },
}

/// A management request: method, path, query (besides the token), body.
#[derive(Debug, Clone, PartialEq)]
pub struct ManageCall {
    pub post: bool,
    pub path: &'static str,
    pub query: Vec<(&'static str, String)>,
    pub body: Option<Value>,
}

impl ManageCall {
    fn get(path: &'static str, query: Vec<(&'static str, String)>) -> Self {
        Self {
            post: false,
            path,
            query,
            body: None,
        }
    }

    fn post(path: &'static str, body: Value) -> Self {
        Self {
            post: true,
            path,
            query: Vec::new(),
            body: Some(body),
        }
    }

    /// The old library's page (`count` ≤ 20).
    pub fn template_library(offset: u32, count: u32) -> Self {
        Self::post(
            "/cgi-bin/wxopen/template/library/list",
            json!({"offset": offset, "count": count}),
        )
    }

    pub fn template_library_entry(id: &str) -> Self {
        Self::post("/cgi-bin/wxopen/template/library/get", json!({"id": id}))
    }

    pub fn template_add(id: &str, keyword_ids: &[u32]) -> Self {
        Self::post(
            "/cgi-bin/wxopen/template/add",
            json!({"id": id, "keyword_id_list": keyword_ids}),
        )
    }

    pub fn template_list(offset: u32, count: u32) -> Self {
        Self::post(
            "/cgi-bin/wxopen/template/list",
            json!({"offset": offset, "count": count}),
        )
    }

    pub fn template_del(template_id: &str) -> Self {
        Self::post(
            "/cgi-bin/wxopen/template/del",
            json!({"template_id": template_id}),
        )
    }

    pub fn subscribe_categories() -> Self {
        Self::get("/wxaapi/newtmpl/getcategory", Vec::new())
    }

    /// Titles of the library in `categories` (comma-separated ids), `limit` ≤ 30.
    pub fn subscribe_titles(categories: &str, start: u32, limit: u32) -> Self {
        Self::get(
            "/wxaapi/newtmpl/getpubtemplatetitles",
            vec![
                ("ids", categories.to_owned()),
                ("start", start.to_string()),
                ("limit", limit.to_string()),
            ],
        )
    }

    pub fn subscribe_keywords(tid: &str) -> Self {
        Self::get(
            "/wxaapi/newtmpl/getpubtemplatekeywords",
            vec![("tid", tid.to_owned())],
        )
    }

    pub fn subscribe_add(tid: &str, keyword_ids: &[u32], scene: &str) -> Self {
        // WeChat takes tid as a string and kidList as numbers.
        Self::post(
            "/wxaapi/newtmpl/addtemplate",
            json!({"tid": tid, "kidList": keyword_ids, "sceneDesc": scene}),
        )
    }

    pub fn subscribe_list() -> Self {
        Self::get("/wxaapi/newtmpl/gettemplate", Vec::new())
    }

    pub fn subscribe_del(template_id: &str) -> Self {
        Self::post("/wxaapi/newtmpl/deltemplate", json!({"priTmplId": template_id}))
    }

    pub fn official_account_list() -> Self {
        Self::get("/cgi-bin/template/get_all_private_template", Vec::new())
    }

    pub fn official_account_add(short_id: &str) -> Self {
        Self::post(
            "/cgi-bin/template/api_add_template",
            json!({"template_id_short": short_id}),
        )
    }

    /// `openapi/quota/get`: a send API's daily limit, use and remainder.
    pub fn quota_get(cgi_path: &str) -> Self {
        Self::post("/cgi-bin/openapi/quota/get", json!({"cgi_path": cgi_path}))
    }

    /// `clear_quota`: the account's API counts start the day again.
    pub fn clear_quota(appid: &str) -> Self {
        Self::post("/cgi-bin/clear_quota", json!({"appid": appid}))
    }

    pub fn official_account_del(template_id: &str) -> Self {
        Self::post(
            "/cgi-bin/template/del_private_template",
            json!({"template_id": template_id}),
        )
    }
}

impl WechatClient {
    /// Makes `call` under `access_token`; a non-zero errcode is `Refused`.
    #[tracing::instrument(skip_all, fields(path = call.path))]
    pub async fn manage(&self, access_token: &str, call: &ManageCall) -> Result<Value, ManageError> {
        let url = self.url(call.path);
        let mut request = match call.post {
            true => self.http().post(url),
            false => self.http().get(url),
        };
        request = request
            .query(&[("access_token", access_token)])
            .query(&call.query);
        if let Some(body) = &call.body {
            request = request.json(body);
        }
        let answer: Value = self.call(request).await?;
        match answer.get("errcode").and_then(Value::as_i64).unwrap_or(0) {
            0 => Ok(answer),
            errcode => Err(ManageError::Refused {
                errcode,
                errmsg: answer["errmsg"].as_str().unwrap_or_default().to_owned(),
            }),
        }
    }
}
