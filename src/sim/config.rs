//! What the simulated account is: its credentials and limits, the templates
//! it knows from the start, and where its routes are. The bottom of the
//! simulator's modules: it depends on none of them.

/// The template-send route, relative to `/sandbox/wechat`.
pub const SEND_PATH: &str = "/cgi-bin/message/wxopen/template/send";
/// The official account's template-send route, relative to `/sandbox/wechat`.
pub const OA_SEND_PATH: &str = "/cgi-bin/message/template/send";
/// The subscribe-send route, relative to `/sandbox/wechat`.
pub const SUBSCRIBE_SEND_PATH: &str = "/cgi-bin/message/subscribe/send";
/// The official account's subscribe-notification route (`bizsend`).
pub const BIZSEND_PATH: &str = "/cgi-bin/message/subscribe/bizsend";

/// Templates every simulator knows from the start, so sandbox users can send
/// without registering one first.
pub const BUILTIN_TEMPLATES: [&str; 3] = [
    "FDco73hhn-F5hDB5NItfkd8fCbZfeKxwXUCS2clB83A",
    "E3C9ZDcKJxUur44jTBqQX_CTRdPZ6kxZv2QzB_3kUX0",
    "fZgcptn8NAKeun01XW_FAF1w5zJp7WeaFOT8cHpEPAI",
];

/// The official account's templates from the start: (template id, the
/// library short id it was added from).
pub const BUILTIN_OA_TEMPLATES: [(&str, &str); 1] =
    [("ngqIpbwh8bUfcSsECmogfXcV14J0tQlEpBO27izEYtY", "OPENTM207498902")];

/// The push settings sandbox mode wires the service and its simulator
/// with (safe mode, both endpoints).
pub const SANDBOX_PUSH_TOKEN: &str = "sandbox-push-token";
pub const SANDBOX_PUSH_AES_KEY: &str = "SandboxPushKey0123456789sandboxPushKey01234";

/// Where and how the simulator pushes events, as WeChat does once a push
/// URL is set in its console.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushTargets {
    /// The mini-program's events (JSON).
    pub miniprogram_url: Option<String>,
    /// The official account's events (XML).
    pub official_account_url: Option<String>,
    pub token: String,
    /// Safe mode when set.
    pub aes_key: Option<String>,
}

/// The simulated mini-program account. TTL, overlap and limit are
/// configurable so tests can make tokens rotate in seconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimConfig {
    pub appid: String,
    pub secret: String,
    /// The official account beside the mini-program.
    pub oa_appid: String,
    pub oa_secret: String,
    /// Lifetime of an access_token (WeChat: 7200 s).
    pub token_ttl_secs: u64,
    /// How long a superseded token keeps working (WeChat: 5 minutes).
    pub token_overlap_secs: u64,
    /// Successful template sends per calendar day in UTC+8.
    pub daily_limit: u64,
    /// Pushes to the service; none when unset.
    pub push: Option<PushTargets>,
    /// More mini-programs, each an account of its own (`--app APPID:SECRET`).
    pub more_miniprograms: Vec<(String, String)>,
    /// More official accounts, each an account of its own
    /// (`--official-account APPID:SECRET`).
    pub more_official_accounts: Vec<(String, String)>,
    /// More accounts given whole: a mini-program with its official account
    /// and its own push targets (sandbox mode's apps).
    pub more_apps: Vec<SimConfig>,
}

impl SimConfig {
    /// One configuration per simulated account: this one's own pair first,
    /// then one per further mini-program (its official account unusable:
    /// a secret nobody knows) and one per further official account (its
    /// mini-program likewise).
    pub fn accounts(&self) -> Vec<SimConfig> {
        let unknowable = || format!("{:032x}", rand::random::<u128>());
        let single = SimConfig {
            more_miniprograms: Vec::new(),
            more_official_accounts: Vec::new(),
            more_apps: Vec::new(),
            ..self.clone()
        };
        let mut accounts = vec![single.clone()];
        for (appid, secret) in &self.more_miniprograms {
            accounts.push(SimConfig {
                appid: appid.clone(),
                secret: secret.clone(),
                oa_appid: format!("{appid}-oa"),
                oa_secret: unknowable(),
                push: None,
                ..single.clone()
            });
        }
        for (appid, secret) in &self.more_official_accounts {
            accounts.push(SimConfig {
                appid: format!("{appid}-mp"),
                secret: unknowable(),
                oa_appid: appid.clone(),
                oa_secret: secret.clone(),
                push: None,
                ..single.clone()
            });
        }
        accounts.extend(self.more_apps.iter().map(|app| SimConfig {
            more_miniprograms: Vec::new(),
            more_official_accounts: Vec::new(),
            more_apps: Vec::new(),
            ..app.clone()
        }));
        accounts
    }
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            appid: "wxsandbox".to_owned(),
            secret: "sandbox-secret".to_owned(),
            oa_appid: "wxsandboxoa".to_owned(),
            oa_secret: "sandbox-oa-secret".to_owned(),
            token_ttl_secs: 7200,
            token_overlap_secs: 300,
            daily_limit: 1_000_000,
            push: None,
            more_miniprograms: Vec::new(),
            more_official_accounts: Vec::new(),
            more_apps: Vec::new(),
        }
    }
}
