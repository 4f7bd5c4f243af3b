//! Service configuration: environment variables (or the same names as
//! command-line flags), parsed and checked once at start-up. What the
//! settings mean together (which store, sandbox or real WeChat) is decided
//! in [`crate::app`], not here.

pub mod apps;

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use chrono::FixedOffset;

/// A value that must never be printed: `Debug`/`Display` show `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self(s.to_owned()))
    }
}

/// Which embedded store runs when no Redis is configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum StoreMode {
    /// The embedded store, kept on disk in `DATA_DIR`.
    Embedded,
    /// The embedded store in memory only: gone at exit.
    Memory,
}

/// Which WeChat endpoint issues access tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenMode {
    /// `GET /cgi-bin/token`: every fetch rotates the token.
    Token,
    /// `POST /cgi-bin/stable_token`: the same token while it is valid.
    Stable,
}

/// Where subscribe grants come from (docs/ledger.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum GrantSource {
    /// `POST /v1/subscriptions` from the mini-program.
    Client,
    /// WeChat's verified `subscribe_msg_popup_event` pushes.
    Push,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Json,
    Pretty,
}

/// Every setting of `formid-ledger serve`.
#[derive(Debug, Clone, PartialEq, clap::Args)]
pub struct Config {
    /// Address the HTTP API listens on.
    #[arg(long, env = "LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: String,

    /// Redis URL (`redis://host:port/db`). Unset: the embedded ledger.
    #[arg(long, env = "REDIS_URL")]
    pub redis_url: Option<String>,

    /// Redis Cluster seed nodes, `host:port,host:port`.
    #[arg(long, env = "REDIS_CLUSTER_NODES", value_delimiter = ',')]
    pub redis_cluster_nodes: Vec<String>,

    /// First part of every Redis key.
    #[arg(long, env = "REDIS_KEY_PREFIX", default_value = "fl")]
    pub redis_key_prefix: String,

    /// Without Redis: `memory` keeps nothing across restarts (tests,
    /// throwaway runs); unset or `embedded`, the embedded store keeps its
    /// data in `DATA_DIR`.
    #[arg(long, env = "STORE", value_enum)]
    pub store: Option<StoreMode>,

    /// Where the embedded store keeps its data (created if missing).
    #[arg(long, env = "DATA_DIR", default_value = "./formid-data")]
    pub data_dir: PathBuf,

    /// Replicas every ingest and settle waits for (`WAIT`), so what was
    /// acknowledged survives a master's failover; 0: no waiting.
    #[arg(long, env = "REDIS_WAIT_REPLICAS", default_value_t = 0)]
    pub redis_wait_replicas: u32,

    /// How long one such `WAIT` may take before the operation fails (503).
    #[arg(long, env = "REDIS_WAIT_TIMEOUT_MS", default_value_t = 500)]
    pub redis_wait_timeout_ms: u64,

    /// The apps of this deployment (TOML; docs in README). Unset: the
    /// `WECHAT_*` variables define one app, `default`.
    #[arg(long, env = "APPS_FILE")]
    pub apps_file: Option<PathBuf>,

    /// Mini-program appid. Unset (and no `APPS_FILE`): sandbox mode with
    /// the built-in simulator.
    #[arg(long, env = "WECHAT_APPID")]
    pub wechat_appid: Option<String>,

    /// Says that sandbox mode on a configured Redis is meant (a test or demo
    /// environment). Without it, no `WECHAT_APPID` with `REDIS_URL` or
    /// `REDIS_CLUSTER_NODES` set refuses to start. With `APPS_FILE`, it runs
    /// every app of the file on simulated accounts (`wxsandbox-<name>`).
    #[arg(long, env = "SANDBOX", value_parser = clap::builder::BoolishValueParser::new())]
    pub sandbox: bool,

    #[arg(long, env = "WECHAT_SECRET", hide_env_values = true)]
    pub wechat_secret: Option<Secret>,

    #[arg(long, env = "WECHAT_API_BASE", default_value = "https://api.weixin.qq.com")]
    pub wechat_api_base: String,

    #[arg(long, env = "WECHAT_TOKEN_MODE", value_enum, default_value = "token")]
    pub wechat_token_mode: TokenMode,

    /// The official account's appid (its templates and messages). Unset
    /// outside sandbox mode: its routes answer 404 `not_configured`.
    #[arg(long, env = "WECHAT_OA_APPID")]
    pub wechat_oa_appid: Option<String>,

    #[arg(long, env = "WECHAT_OA_SECRET", hide_env_values = true)]
    pub wechat_oa_secret: Option<Secret>,

    /// Token of the mini-program's push URL (`/wechat/push/miniprogram`), as
    /// set in WeChat's console. Unset: that endpoint answers 404.
    #[arg(long, env = "WECHAT_PUSH_TOKEN", hide_env_values = true)]
    pub wechat_push_token: Option<Secret>,

    /// Its EncodingAESKey (safe mode; 43 characters).
    #[arg(long, env = "WECHAT_PUSH_AES_KEY", hide_env_values = true)]
    pub wechat_push_aes_key: Option<Secret>,

    /// The previous EncodingAESKey, still accepted during a rotation.
    #[arg(long, env = "WECHAT_PUSH_AES_KEY_PREVIOUS", hide_env_values = true)]
    pub wechat_push_aes_key_previous: Option<Secret>,

    /// Token of the official account's push URL (`/wechat/push/official-account`).
    #[arg(long, env = "WECHAT_OA_PUSH_TOKEN", hide_env_values = true)]
    pub wechat_oa_push_token: Option<Secret>,

    #[arg(long, env = "WECHAT_OA_PUSH_AES_KEY", hide_env_values = true)]
    pub wechat_oa_push_aes_key: Option<Secret>,

    /// How long the account's template lists are cached (seconds).
    #[arg(long, env = "TEMPLATE_CACHE_SECS", default_value_t = 60)]
    pub template_cache_secs: u64,

    /// `name:secret:scope+scope,...` with scopes collect, send, report, admin.
    #[arg(long, env = "API_KEYS", hide_env_values = true)]
    pub api_keys: Option<Secret>,

    /// Key that signs user session tokens; required outside sandbox mode so
    /// that every instance accepts every other's tokens.
    #[arg(long, env = "SESSION_SECRET", hide_env_values = true)]
    pub session_secret: Option<Secret>,

    #[arg(long, env = "SESSION_TTL_SECS", default_value_t = 7 * 86_400)]
    pub session_ttl_secs: u64,

    #[arg(long, env = "CREDENTIAL_SAFETY_MARGIN_SECS", default_value_t = 3600)]
    pub credential_safety_margin_secs: u64,

    /// Expiries are rounded down to a multiple of this many seconds, which
    /// bounds the report counters kept per expiry instant.
    #[arg(long, env = "CREDENTIAL_EXPIRY_GRANULARITY_SECS", default_value_t = 60)]
    pub credential_expiry_granularity_secs: u64,

    #[arg(long, env = "MAX_CREDENTIALS_PER_USER", default_value_t = 200)]
    pub max_credentials_per_user: u32,

    /// Subscribe grants one user may hold of one template (1 to 65535).
    #[arg(long, env = "MAX_GRANTS_PER_TEMPLATE", default_value_t = 50,
        value_parser = clap::value_parser!(u32).range(1..=65_535))]
    pub max_grants_per_template: u32,

    /// Days a user's subscribe grants are kept after their last change.
    #[arg(long, env = "SUBSCRIBE_RETENTION_DAYS", default_value_t = 365)]
    pub subscribe_retention_days: u64,

    /// Where grants come from: `client` (POST /v1/subscriptions) or `push`.
    #[arg(long, env = "SUBSCRIBE_GRANTS_FROM", value_enum, default_value = "client")]
    pub subscribe_grants_from: GrantSource,

    /// Time zone of report days, as a UTC offset.
    #[arg(long, env = "REPORT_UTC_OFFSET", default_value = "+08:00", value_parser = parse_offset)]
    pub report_utc_offset: FixedOffset,

    /// How often report counters are written to the store.
    #[arg(long, env = "USAGE_FLUSH_SECS", default_value_t = 2)]
    pub usage_flush_secs: u64,

    /// Seconds a reserved use is held before it comes back by itself (a
    /// crashed send); must exceed the send time bound.
    #[arg(long, env = "SEND_LEASE_SECS", default_value_t = 30)]
    pub send_lease_secs: u64,

    /// Bound of one `POST /v1/messages`, whatever WeChat does (ms).
    #[arg(long, env = "SEND_BUDGET_MS", default_value_t = 12_000)]
    pub send_budget_ms: u64,

    /// Bound of one call to WeChat (ms).
    #[arg(long, env = "WECHAT_TIMEOUT_MS", default_value_t = 4_000)]
    pub wechat_timeout_ms: u64,

    /// Seconds a request's body may take to arrive whole; a stalled one is
    /// cut off (408) and its connection closed.
    #[arg(long, env = "REQUEST_BODY_TIMEOUT_SECS", default_value_t = 10)]
    pub request_body_timeout_secs: u64,

    #[arg(long, env = "LOG_FORMAT", value_enum, default_value = "pretty")]
    pub log_format: LogFormat,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            redis_url: None,
            redis_cluster_nodes: Vec::new(),
            redis_key_prefix: "fl".into(),
            store: None,
            data_dir: PathBuf::from("./formid-data"),
            redis_wait_replicas: 0,
            redis_wait_timeout_ms: 500,
            apps_file: None,
            wechat_appid: None,
            sandbox: false,
            wechat_secret: None,
            wechat_api_base: "https://api.weixin.qq.com".into(),
            wechat_token_mode: TokenMode::Token,
            wechat_oa_appid: None,
            wechat_oa_secret: None,
            template_cache_secs: 60,
            wechat_push_token: None,
            wechat_push_aes_key: None,
            wechat_push_aes_key_previous: None,
            wechat_oa_push_token: None,
            wechat_oa_push_aes_key: None,
            api_keys: None,
            session_secret: None,
            session_ttl_secs: 7 * 86_400,
            credential_safety_margin_secs: 3600,
            credential_expiry_granularity_secs: 60,
            max_credentials_per_user: 200,
            max_grants_per_template: 50,
            subscribe_retention_days: 365,
            subscribe_grants_from: GrantSource::Client,
            report_utc_offset: crate::clock::beijing(),
            usage_flush_secs: 2,
            send_lease_secs: 30,
            send_budget_ms: 12_000,
            wechat_timeout_ms: 4_000,
            request_body_timeout_secs: 10,
            log_format: LogFormat::Pretty,
        }
    }
}

/// Fewest bytes of a secret that signs or verifies (session secret, push
/// tokens): shorter ones can be guessed.
pub const MIN_SECRET_BYTES: usize = 16;

/// What the example environment file holds in place of real secrets.
const PLACEHOLDER: &str = "replace-with";

impl Config {
    /// Sandbox mode: no WeChat app is configured, or `SANDBOX=1` with an
    /// apps file, so the built-in simulator stands in for WeChat (for every
    /// app of the file, each with simulated accounts).
    pub fn sandbox_mode(&self) -> bool {
        self.wechat_appid.is_none() && (self.apps_file.is_none() || self.sandbox)
    }

    /// The apps `APPS_FILE` names, their secrets read from the environment;
    /// `None` without an apps file.
    pub fn apps(&self) -> Result<Option<Vec<apps::AppSettings>>, String> {
        let Some(path) = &self.apps_file else {
            return Ok(None);
        };
        let text = std::fs::read_to_string(path).map_err(|e| format!("APPS_FILE {}: {e}", path.display()))?;
        if self.sandbox_mode() {
            return apps::parse_sandbox(&text, self.wechat_token_mode).map(Some);
        }
        apps::parse(&text, |var| std::env::var(var).ok(), self.wechat_token_mode).map(Some)
    }

    /// Refuses settings that would be unsafe or could make a request fail:
    /// the message names the setting and how to fix it.
    pub fn validate(&self) -> Result<(), String> {
        if self.apps_file.is_some() {
            let single = [
                ("WECHAT_APPID", self.wechat_appid.is_some()),
                ("WECHAT_OA_APPID", self.wechat_oa_appid.is_some()),
                ("WECHAT_PUSH_TOKEN", self.wechat_push_token.is_some()),
                ("WECHAT_OA_PUSH_TOKEN", self.wechat_oa_push_token.is_some()),
            ];
            if let Some((name, _)) = single.iter().find(|(_, set)| *set) {
                return Err(format!(
                    "{name} is set beside APPS_FILE: with an apps file every app is configured there \
                     (a default app too: name one \"default\"); unset {name}"
                ));
            }
        }
        let secrets = [
            ("SESSION_SECRET", &self.session_secret),
            ("WECHAT_PUSH_TOKEN", &self.wechat_push_token),
            ("WECHAT_OA_PUSH_TOKEN", &self.wechat_oa_push_token),
        ];
        for (name, secret) in secrets {
            let Some(secret) = secret else { continue };
            if secret.expose().len() < MIN_SECRET_BYTES {
                return Err(format!(
                    "{name} is shorter than {MIN_SECRET_BYTES} bytes (or empty): anyone could forge what it signs. \
                     Set at least 32 random characters (e.g. `openssl rand -hex 32`), or unset it"
                ));
            }
        }
        let with_placeholders = [
            ("SESSION_SECRET", &self.session_secret),
            ("WECHAT_SECRET", &self.wechat_secret),
            ("WECHAT_OA_SECRET", &self.wechat_oa_secret),
            ("API_KEYS", &self.api_keys),
        ];
        for (name, secret) in with_placeholders {
            if secret.as_ref().is_some_and(|s| s.expose().contains(PLACEHOLDER)) {
                return Err(format!(
                    "{name} still holds a `{PLACEHOLDER}-...` placeholder from the example file: set the real value"
                ));
            }
        }
        let aes_keys = [
            ("WECHAT_PUSH_AES_KEY", &self.wechat_push_aes_key),
            ("WECHAT_PUSH_AES_KEY_PREVIOUS", &self.wechat_push_aes_key_previous),
            ("WECHAT_OA_PUSH_AES_KEY", &self.wechat_oa_push_aes_key),
        ];
        for (name, key) in aes_keys {
            if key.as_ref().is_some_and(|k| k.expose().len() != 43) {
                return Err(format!(
                    "{name} must be the 43-character EncodingAESKey from WeChat's console"
                ));
            }
        }
        let day = 86_400;
        let ranges: [(&str, u64, u64, u64); 12] = [
            (
                "REQUEST_BODY_TIMEOUT_SECS",
                self.request_body_timeout_secs,
                1,
                600,
            ),
            ("SESSION_TTL_SECS", self.session_ttl_secs, 60, 90 * day),
            (
                "CREDENTIAL_SAFETY_MARGIN_SECS",
                self.credential_safety_margin_secs,
                0,
                6 * day,
            ),
            (
                "CREDENTIAL_EXPIRY_GRANULARITY_SECS",
                self.credential_expiry_granularity_secs,
                1,
                3600,
            ),
            (
                "MAX_CREDENTIALS_PER_USER",
                u64::from(self.max_credentials_per_user),
                1,
                10_000,
            ),
            ("SUBSCRIBE_RETENTION_DAYS", self.subscribe_retention_days, 1, 3650),
            ("USAGE_FLUSH_SECS", self.usage_flush_secs, 1, 3600),
            ("SEND_LEASE_SECS", self.send_lease_secs, 1, day),
            ("SEND_BUDGET_MS", self.send_budget_ms, 100, 600_000),
            ("WECHAT_TIMEOUT_MS", self.wechat_timeout_ms, 100, 120_000),
            ("TEMPLATE_CACHE_SECS", self.template_cache_secs, 1, day),
            ("REDIS_WAIT_TIMEOUT_MS", self.redis_wait_timeout_ms, 1, 60_000),
        ];
        for (name, value, min, max) in ranges {
            if !(min..=max).contains(&value) {
                return Err(format!("{name}={value} is out of range: set {min} to {max}"));
            }
        }
        let redis = self.redis_url.is_some() || !self.redis_cluster_nodes.is_empty();
        if let (true, Some(store)) = (redis, self.store) {
            let store = if store == StoreMode::Memory {
                "memory"
            } else {
                "embedded"
            };
            return Err(format!(
                "STORE={store} names the embedded store, but a Redis is configured: unset STORE, or \
                 REDIS_URL / REDIS_CLUSTER_NODES"
            ));
        }
        if self.sandbox_mode() && redis && !self.sandbox {
            return Err(
                "WECHAT_APPID is not set, so WeChat would be the built-in simulator, but a Redis is \
                 configured: real users' credentials would be spent on it. Set WECHAT_APPID and \
                 WECHAT_SECRET for production, or SANDBOX=1 if a sandbox on this Redis is meant"
                    .into(),
            );
        }
        Ok(())
    }
}

/// `+08:00`, `-05:30`, `Z` or `UTC`.
pub fn parse_offset(raw: &str) -> Result<FixedOffset, String> {
    if raw.eq_ignore_ascii_case("z") || raw.eq_ignore_ascii_case("utc") {
        return FixedOffset::east_opt(0).ok_or_else(|| "bad offset".into());
    }
    raw.parse::<FixedOffset>()
        .map_err(|_| format!("{raw:?} is not a UTC offset like +08:00"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        config: Config,
    }

    #[test]
    fn default_matches_the_documented_defaults() {
        // Flags only: no environment variable of the test process may leak in.
        let parsed = Cli::try_parse_from(["formid-ledger"]).unwrap().config;
        if std::env::vars().any(|(k, _)| k.starts_with("WECHAT_") || k.starts_with("REDIS_") || k == "LISTEN")
        {
            return;
        }
        assert_eq!(parsed, Config::default());
    }

    #[test]
    fn unsafe_settings_are_refused_with_the_setting_named() {
        assert_eq!(Config::default().validate(), Ok(()));
        let refused = |config: Config, name: &str| {
            let err = config.validate().expect_err(name);
            assert!(err.contains(name), "{err}");
        };
        let secret = |s: &str| Some(Secret::new(s));
        refused(
            Config {
                session_secret: secret(""),
                ..Config::default()
            },
            "SESSION_SECRET",
        );
        refused(
            Config {
                session_secret: secret("replace-with-64-random-hex-characters"),
                ..Config::default()
            },
            "SESSION_SECRET",
        );
        refused(
            Config {
                wechat_push_token: secret("short"),
                ..Config::default()
            },
            "WECHAT_PUSH_TOKEN",
        );
        refused(
            Config {
                wechat_oa_push_aes_key: secret("abc"),
                ..Config::default()
            },
            "WECHAT_OA_PUSH_AES_KEY",
        );
        refused(
            Config {
                session_ttl_secs: 10_000_000_000_000,
                ..Config::default()
            },
            "SESSION_TTL_SECS",
        );
        refused(
            Config {
                credential_safety_margin_secs: u64::MAX,
                ..Config::default()
            },
            "CREDENTIAL_SAFETY_MARGIN_SECS",
        );
        let sandbox_on_redis = Config {
            redis_url: Some("redis://127.0.0.1:6379/0".into()),
            ..Config::default()
        };
        refused(sandbox_on_redis.clone(), "SANDBOX=1");
        let meant = Config {
            sandbox: true,
            ..sandbox_on_redis.clone()
        };
        assert_eq!(meant.validate(), Ok(()));
        let production = Config {
            wechat_appid: Some("wx1111111111111111".into()),
            ..sandbox_on_redis
        };
        assert_eq!(production.validate(), Ok(()));
    }

    #[test]
    fn secrets_never_print() {
        let config = Config {
            session_secret: Some(Secret::new("hunter2hunter2")),
            ..Config::default()
        };
        assert!(!format!("{config:?}").contains("hunter2"));
    }

    #[test]
    fn offsets() {
        assert_eq!(parse_offset("+08:00").unwrap().local_minus_utc(), 8 * 3600);
        assert_eq!(parse_offset("UTC").unwrap().local_minus_utc(), 0);
        assert!(parse_offset("Asia/Shanghai").is_err());
    }
}
