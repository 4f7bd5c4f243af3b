//! Backend API keys from `API_KEYS` (`name:secret:scope+scope[:apps],...`,
//! apps `shop+news` or `*`, every app when left out). Keys are kept as
//! SHA-256 digests and compared in constant time against every
//! configured key, so neither timing nor memory dumps give a secret away.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::Secret;

/// Shortest secret accepted: shorter ones are guessable.
const MIN_SECRET_LEN: usize = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Collect,
    Send,
    Report,
    /// Every scope.
    Admin,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Collect => "collect",
            Scope::Send => "send",
            Scope::Report => "report",
            Scope::Admin => "admin",
        }
    }

    fn parse(raw: &str) -> Option<Self> {
        [Scope::Collect, Scope::Send, Scope::Report, Scope::Admin]
            .into_iter()
            .find(|s| s.as_str() == raw)
    }
}

/// The apps a key may act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AppScope {
    All,
    Only(Vec<String>),
}

impl AppScope {
    pub fn allows(&self, app: &str) -> bool {
        match self {
            AppScope::All => true,
            AppScope::Only(apps) => apps.iter().any(|a| a == app),
        }
    }

    fn parse(raw: Option<&str>, at: usize) -> Result<Self, InvalidApiKeys> {
        match raw {
            None | Some("*") => Ok(AppScope::All),
            Some(list) => list
                .split('+')
                .map(|app| {
                    crate::domain::is_app_name(app)
                        .then(|| app.to_owned())
                        .ok_or_else(|| InvalidApiKeys::App(at, app.to_owned()))
                })
                .collect::<Result<Vec<_>, _>>()
                .map(AppScope::Only),
        }
    }
}

#[derive(Debug, Clone)]
pub struct ApiKey {
    pub name: String,
    pub scopes: Vec<Scope>,
    pub apps: AppScope,
    digest: [u8; 32],
}

#[derive(Debug, Clone, Default)]
pub struct ApiKeys {
    keys: Vec<ApiKey>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidApiKeys {
    #[error("API_KEYS entry {0}: expected name:secret:scope+scope[:app+app]")]
    Shape(usize),
    #[error("API_KEYS entry {0}: {1:?} is not an app name ([a-z0-9-], 1 to 32) or *")]
    App(usize, String),
    #[error("API_KEYS entry {0}: name must be 1-64 characters of A-Z a-z 0-9 _ -")]
    Name(usize),
    #[error(
        "API_KEYS entry {0}: secret must be at least {MIN_SECRET_LEN} characters and not look like a session token (st1. or st2.)"
    )]
    Secret(usize),
    #[error("API_KEYS entry {0}: unknown scope {1:?} (collect, send, report, admin)")]
    Scope(usize, String),
    #[error("API_KEYS entry {0}: name {1:?} is used twice")]
    DuplicateName(usize, String),
}

fn digest(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

impl ApiKeys {
    pub fn parse(raw: &Secret) -> Result<Self, InvalidApiKeys> {
        let mut keys: Vec<ApiKey> = Vec::new();
        for (n, entry) in raw
            .expose()
            .split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .enumerate()
        {
            let at = n + 1;
            let mut parts = entry.splitn(4, ':');
            let (Some(name), Some(secret), Some(scopes)) = (parts.next(), parts.next(), parts.next()) else {
                return Err(InvalidApiKeys::Shape(at));
            };
            let apps = AppScope::parse(parts.next(), at)?;
            if !crate::domain::is_identifier(name, 64) {
                return Err(InvalidApiKeys::Name(at));
            }
            if secret.len() < MIN_SECRET_LEN
                || super::SessionToken::looks_like(secret)
                || secret.contains(char::is_whitespace)
            {
                return Err(InvalidApiKeys::Secret(at));
            }
            let scopes = scopes
                .split('+')
                .map(|s| Scope::parse(s).ok_or_else(|| InvalidApiKeys::Scope(at, s.to_owned())))
                .collect::<Result<Vec<_>, _>>()?;
            if keys.iter().any(|k| k.name == name) {
                return Err(InvalidApiKeys::DuplicateName(at, name.to_owned()));
            }
            keys.push(ApiKey {
                name: name.to_owned(),
                scopes,
                apps,
                digest: digest(secret),
            });
        }
        Ok(Self { keys })
    }

    pub fn with_key(mut self, name: &str, secret: &Secret, scopes: Vec<Scope>) -> Self {
        self.keys.push(ApiKey {
            name: name.to_owned(),
            scopes,
            apps: AppScope::All,
            digest: digest(secret.expose()),
        });
        self
    }

    /// Every app some key names (each must be configured).
    pub fn apps_named(&self) -> impl Iterator<Item = (&str, &str)> {
        self.keys.iter().flat_map(|key| match &key.apps {
            AppScope::All => Vec::new(),
            AppScope::Only(apps) => apps.iter().map(|a| (key.name.as_str(), a.as_str())).collect(),
        })
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The key whose secret is `presented`; every key is compared, always.
    pub fn find(&self, presented: &str) -> Option<&ApiKey> {
        let presented = digest(presented);
        let mut found = None;
        for key in &self.keys {
            if bool::from(key.digest.ct_eq(&presented)) {
                found = Some(key);
            }
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_secrets_and_scopes() {
        let keys = ApiKeys::parse(&Secret::new(
            "orders:0123456789abcdef:collect+send, ops:fedcba9876543210:admin",
        ))
        .unwrap();
        let orders = keys.find("0123456789abcdef").unwrap();
        assert_eq!(orders.name, "orders");
        assert_eq!(orders.scopes, [Scope::Collect, Scope::Send]);
        assert_eq!(keys.find("fedcba9876543210").unwrap().scopes, [Scope::Admin]);
        assert!(keys.find("0123456789abcdeF").is_none());
        assert_eq!(orders.apps, AppScope::All);
    }

    #[test]
    fn a_fourth_field_names_the_apps_a_key_may_act_on() {
        let keys = ApiKeys::parse(&Secret::new(
            "shop:0123456789abcdef:send:shop+news,all:fedcba9876543210:report:*",
        ))
        .unwrap();
        let shop = keys.find("0123456789abcdef").unwrap();
        assert!(shop.apps.allows("shop") && shop.apps.allows("news"));
        assert!(!shop.apps.allows("default"));
        assert!(keys.find("fedcba9876543210").unwrap().apps.allows("anything"));
        assert_eq!(
            ApiKeys::parse(&Secret::new("a:0123456789abcdef:send:Shop")).unwrap_err(),
            InvalidApiKeys::App(1, "Shop".into())
        );
    }

    #[test]
    fn rejects_bad_entries_without_echoing_secrets() {
        for (raw, expected) in [
            ("orders", InvalidApiKeys::Shape(1)),
            ("a b:0123456789abcdef:send", InvalidApiKeys::Name(1)),
            ("orders:short:send", InvalidApiKeys::Secret(1)),
            (
                "orders:0123456789abcdef:fly",
                InvalidApiKeys::Scope(1, "fly".into()),
            ),
            (
                "a:0123456789abcdef:send,a:0123456789abcdeg:send",
                InvalidApiKeys::DuplicateName(2, "a".into()),
            ),
        ] {
            let err = ApiKeys::parse(&Secret::new(raw)).unwrap_err();
            assert_eq!(err, expected);
            assert!(!err.to_string().contains("0123456789abcdef"));
        }
    }
}
