//! The apps file (`APPS_FILE`, TOML): the deployment's apps, each a
//! mini-program and optionally an official account. Secrets never live in
//! the file: it names the environment variables that hold them.
//!
//! ```toml
//! [[apps]]
//! name = "shop"
//! [apps.miniprogram]
//! appid = "wx1111111111111111"
//! secret_env = "SHOP_SECRET"
//! push_token_env = "SHOP_PUSH_TOKEN"        # optional
//! push_aes_key_env = "SHOP_PUSH_AES_KEY"    # optional (safe mode)
//! [apps.official_account]                    # optional
//! appid = "wx2222222222222222"
//! secret_env = "SHOP_OA_SECRET"
//! ```

use serde::Deserialize;

use super::{MIN_SECRET_BYTES, Secret, TokenMode};
use crate::domain::is_app_name;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AppsFile {
    apps: Vec<AppEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AppEntry {
    name: String,
    miniprogram: Option<AccountEntry>,
    official_account: Option<AccountEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AccountEntry {
    appid: String,
    secret_env: String,
    token_mode: Option<TokenMode>,
    push_token_env: Option<String>,
    push_aes_key_env: Option<String>,
    push_aes_key_previous_env: Option<String>,
}

/// One WeChat account of an app, its secrets read from the environment.
#[derive(Debug, Clone, PartialEq)]
pub struct AccountSettings {
    pub appid: String,
    pub secret: Secret,
    pub token_mode: TokenMode,
    /// The push URL's token; no push endpoint without it.
    pub push_token: Option<Secret>,
    /// The EncodingAESKey (safe mode), and the previous one during a rotation.
    pub push_aes_keys: Vec<Secret>,
}

/// One app of the deployment.
#[derive(Debug, Clone, PartialEq)]
pub struct AppSettings {
    pub name: String,
    pub miniprogram: AccountSettings,
    pub official_account: Option<AccountSettings>,
}

/// An app's name as sandbox mode reads it (the rest of its entry is for
/// real WeChat and goes unread).
#[derive(Debug, Deserialize)]
struct SandboxEntry {
    name: String,
}

#[derive(Debug, Deserialize)]
struct SandboxFile {
    apps: Vec<SandboxEntry>,
}

/// The simulated mini-program of app `name` in sandbox mode: its appid and
/// secret (the official account's: [`sandbox_official_account`]).
pub fn sandbox_miniprogram(name: &str) -> (String, String) {
    (format!("wxsandbox-{name}"), format!("sandbox-secret-{name}"))
}

pub fn sandbox_official_account(name: &str) -> (String, String) {
    (format!("wxsandboxoa-{name}"), format!("sandbox-oa-secret-{name}"))
}

/// Reads the apps file's text in sandbox mode: only the apps' names count,
/// each app getting a simulated mini-program and official account, so a
/// production file runs in a sandbox unchanged, without its secrets.
pub fn parse_sandbox(text: &str, token_mode: TokenMode) -> Result<Vec<AppSettings>, String> {
    let file: SandboxFile = toml::from_str(text).map_err(|e| format!("APPS_FILE: {e}"))?;
    if file.apps.is_empty() {
        return Err("APPS_FILE names no app: add an [[apps]] table".into());
    }
    let mut apps: Vec<AppSettings> = Vec::new();
    for SandboxEntry { name } in file.apps {
        check_name(&name, &apps)?;
        let simulated = |(appid, secret): (String, String)| AccountSettings {
            appid,
            secret: Secret::new(secret),
            token_mode,
            push_token: None,
            push_aes_keys: Vec::new(),
        };
        apps.push(AppSettings {
            miniprogram: simulated(sandbox_miniprogram(&name)),
            official_account: Some(simulated(sandbox_official_account(&name))),
            name,
        });
    }
    Ok(apps)
}

/// An app's name is well formed and not taken by an earlier app.
fn check_name(name: &str, earlier: &[AppSettings]) -> Result<(), String> {
    if !is_app_name(name) {
        return Err(format!(
            "APPS_FILE: app name {name:?} must be 1 to 32 of a-z 0-9 - (and not a word the store uses)"
        ));
    }
    if earlier.iter().any(|a| a.name == name) {
        return Err(format!("APPS_FILE: two apps are named {name}"));
    }
    Ok(())
}

/// Reads the apps file's text; `env` looks up the variables it names.
/// Every error names the app and the setting, and says how to fix it.
pub fn parse(
    text: &str,
    env: impl Fn(&str) -> Option<String>,
    token_mode: TokenMode,
) -> Result<Vec<AppSettings>, String> {
    let file: AppsFile = toml::from_str(text).map_err(|e| format!("APPS_FILE: {e}"))?;
    if file.apps.is_empty() {
        return Err("APPS_FILE names no app: add an [[apps]] table".into());
    }
    let mut apps: Vec<AppSettings> = Vec::new();
    for entry in file.apps {
        let name = entry.name;
        check_name(&name, &apps)?;
        let account = |entry: AccountEntry, what: &str| -> Result<AccountSettings, String> {
            let at = format!("APPS_FILE: app {name}, {what}");
            if !crate::domain::is_identifier(&entry.appid, 64) {
                return Err(format!("{at}: appid {:?} is not a WeChat appid", entry.appid));
            }
            let read = |var: &str| -> Result<Secret, String> {
                match env(var) {
                    Some(value) if !value.is_empty() => Ok(Secret::new(value)),
                    _ => Err(format!("{at}: the environment variable {var} is not set")),
                }
            };
            let secret = read(&entry.secret_env)?;
            let push_token = entry.push_token_env.as_deref().map(read).transpose()?;
            if let Some(token) = &push_token
                && token.expose().len() < MIN_SECRET_BYTES
            {
                return Err(format!(
                    "{at}: the push token in {} is shorter than {MIN_SECRET_BYTES} bytes",
                    entry.push_token_env.unwrap_or_default()
                ));
            }
            let mut push_aes_keys = Vec::new();
            for var in [&entry.push_aes_key_env, &entry.push_aes_key_previous_env]
                .into_iter()
                .flatten()
            {
                let key = read(var)?;
                if key.expose().len() != 43 {
                    return Err(format!("{at}: {var} must be the 43-character EncodingAESKey"));
                }
                push_aes_keys.push(key);
            }
            if push_token.is_none() && !push_aes_keys.is_empty() {
                return Err(format!("{at}: an EncodingAESKey without push_token_env"));
            }
            Ok(AccountSettings {
                appid: entry.appid,
                secret,
                token_mode: entry.token_mode.unwrap_or(token_mode),
                push_token,
                push_aes_keys,
            })
        };
        let Some(miniprogram) = entry.miniprogram else {
            return Err(format!(
                "APPS_FILE: app {name} has no [apps.miniprogram]: every app needs its mini-program"
            ));
        };
        let miniprogram = account(miniprogram, "miniprogram")?;
        let official_account = entry
            .official_account
            .map(|oa| account(oa, "official_account"))
            .transpose()?;
        apps.push(AppSettings {
            name,
            miniprogram,
            official_account,
        });
    }
    Ok(apps)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = r#"
[[apps]]
name = "shop"
[apps.miniprogram]
appid = "wx1111111111111111"
secret_env = "SHOP_SECRET"
push_token_env = "SHOP_PUSH_TOKEN"
[apps.official_account]
appid = "wx2222222222222222"
secret_env = "SHOP_OA_SECRET"
token_mode = "stable"

[[apps]]
name = "news"
[apps.miniprogram]
appid = "wx3333333333333333"
secret_env = "NEWS_SECRET"
"#;

    fn env(var: &str) -> Option<String> {
        match var {
            "SHOP_SECRET" => Some("shop-secret".into()),
            "SHOP_OA_SECRET" => Some("shop-oa-secret".into()),
            "SHOP_PUSH_TOKEN" => Some("shop-push-token-0123".into()),
            "NEWS_SECRET" => Some("news-secret".into()),
            _ => None,
        }
    }

    #[test]
    fn in_sandbox_mode_only_names_count_and_each_app_is_simulated() {
        let apps = parse_sandbox(FILE, TokenMode::Token).unwrap();
        let accounts: Vec<_> = apps
            .iter()
            .map(|a| {
                (
                    a.name.as_str(),
                    a.miniprogram.appid.as_str(),
                    a.official_account.as_ref().map(|oa| oa.appid.as_str()),
                )
            })
            .collect();
        assert_eq!(
            accounts,
            [
                ("shop", "wxsandbox-shop", Some("wxsandboxoa-shop")),
                ("news", "wxsandbox-news", Some("wxsandboxoa-news")),
            ]
        );
        let names_only = "[[apps]]\nname = \"a\"\n[[apps]]\nname = \"b\"\n";
        assert_eq!(parse_sandbox(names_only, TokenMode::Token).unwrap().len(), 2);
        for bad in [
            "[[apps]]\nname = \"Shop!\"\n",
            "[[apps]]\nname = \"a\"\n[[apps]]\nname = \"a\"\n",
            "apps = []\n",
        ] {
            assert!(parse_sandbox(bad, TokenMode::Token).is_err(), "{bad}");
        }
    }

    #[test]
    fn apps_and_their_secrets_from_the_environment() {
        let apps = parse(FILE, env, TokenMode::Token).unwrap();
        assert_eq!(apps.len(), 2);
        assert_eq!(apps[0].name, "shop");
        assert_eq!(apps[0].miniprogram.secret.expose(), "shop-secret");
        assert!(apps[0].miniprogram.push_token.is_some());
        let oa = apps[0].official_account.as_ref().unwrap();
        assert_eq!(
            (oa.appid.as_str(), oa.token_mode),
            ("wx2222222222222222", TokenMode::Stable)
        );
        assert_eq!(apps[1].miniprogram.token_mode, TokenMode::Token);
        assert!(apps[1].official_account.is_none());
    }

    #[test]
    fn mistakes_are_refused_naming_the_app_and_the_fix() {
        let refused = |text: &str, env: &dyn Fn(&str) -> Option<String>, needle: &str| {
            let err = parse(text, env, TokenMode::Token).unwrap_err();
            assert!(err.contains(needle), "{err}");
        };
        refused(
            FILE,
            &|v| env(v).filter(|_| v != "NEWS_SECRET"),
            "NEWS_SECRET is not set",
        );
        refused(
            &FILE.replace("\"news\"", "\"shop\""),
            &env,
            "two apps are named shop",
        );
        refused(&FILE.replace("\"news\"", "\"News\""), &env, "app name");
        refused(
            &FILE.replace("secret_env = \"NEWS_SECRET\"", "secret = \"x\""),
            &env,
            "unknown field",
        );
        refused("apps = []", &env, "names no app");
        refused(
            FILE,
            &|v| match v {
                "SHOP_PUSH_TOKEN" => Some("short".into()),
                v => env(v),
            },
            "shorter than 16 bytes",
        );
        refused(
            "[[apps]]\nname = \"x\"\n[apps.official_account]\nappid = \"wx1\"\nsecret_env = \"S\"\n",
            &env,
            "needs its mini-program",
        );
    }
}
