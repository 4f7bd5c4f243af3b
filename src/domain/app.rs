//! App names: how a deployment's tenants are named in routes, keys, session
//! tokens, store keys and metric labels.

/// The name of the app today's single-app settings define.
pub const DEFAULT_APP: &str = "default";

/// Words the store uses right after the deployment's prefix
/// (`fl:token:{<appid>}`, `fl:templates`, ...): an app of that name would
/// share their keys.
const RESERVED: [&str; 6] = ["token", "lock", "cache", "idem", "usage", "templates"];

/// Whether `name` is a valid app name: 1 to 32 of `[a-z0-9-]`, and not a
/// word the store's own keys use.
pub fn is_app_name(name: &str) -> bool {
    (1..=32).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !RESERVED.contains(&name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn app_names() {
        for ok in ["default", "shop", "news-2", "a"] {
            assert!(is_app_name(ok), "{ok}");
        }
        for bad in [
            "",
            "Shop",
            "shop_1",
            "a:b",
            "a.b",
            "{x}",
            "token",
            "templates",
            &"a".repeat(33),
        ] {
            assert!(!is_app_name(bad), "{bad}");
        }
    }
}
