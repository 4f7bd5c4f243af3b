//! `formid-ledger templates ...`: the template routes of the API from the
//! command line, against the same configuration as `serve` (its WeChat app,
//! its store for the central token and the cached lists). Tables by
//! default, the API's JSON with `--json`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::json;
use unicode_width::UnicodeWidthStr;

use crate::bootstrap::{Backend, wechat_clients};
use crate::clock::SystemClock;
use crate::config::{Config, StoreMode};
use crate::domain::{ChannelKind, TemplateDialect};
use crate::templates::{AccountTemplate, App, LibraryEntry, LibraryPage, TemplateError, Templates};
use crate::wechat::TokenManager;

/// What `templates` is asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    List,
    /// A library page (`start`, `count`), or one entry.
    Library {
        id: Option<String>,
        start: u32,
        count: Option<u32>,
    },
    Add {
        library_id: String,
        keyword_ids: Vec<u32>,
        scene: Option<String>,
    },
    Delete {
        template_id: String,
    },
}

/// Runs `action` on `channel`; the text to print.
pub async fn run(
    config: &Config,
    app: &str,
    channel: ChannelKind,
    action: Action,
    json: bool,
) -> anyhow::Result<String> {
    let addr: SocketAddr = config
        .listen
        .parse()
        .with_context(|| format!("LISTEN {} is not an address", config.listen))?;
    // The serving process holds the embedded store's DATA_DIR; without a
    // Redis to share, the command keeps its token and caches to itself.
    let mut config = config.clone();
    if config.redis_url.is_none() && config.redis_cluster_nodes.is_empty() {
        config.store = Some(StoreMode::Memory);
    }
    let config = &config;
    let backend = Backend::open(config)?;
    let stores = backend.app(app, Default::default(), Default::default(), &None)?;
    let (mini_program, official_account) = wechat_clients(config, addr, app)?;
    let app = |client| App {
        tokens: Arc::new(TokenManager::new(
            Clone::clone(&client),
            backend.deployment(),
            config.wechat_token_mode,
        )),
        client,
    };
    let templates = Templates::new(
        app(mini_program),
        official_account.map(app),
        stores.shared.clone(),
        Duration::from_secs(config.template_cache_secs.max(1)),
        Arc::new(SystemClock),
    );
    let output = perform(&templates, channel, action, json).await;
    output.map_err(|err| {
        let unreachable = matches!(err.downcast_ref(), Some(TemplateError::Unavailable(_)));
        match unreachable && config.sandbox_mode() {
            true => err.context(format!(
                "in sandbox mode WeChat is the simulator inside the service serving at LISTEN={}: \
                 start it first (cargo run --release)",
                config.listen
            )),
            false => err,
        }
    })
}

/// Runs `action` on `channel` through `templates`.
async fn perform(
    templates: &Templates,
    channel: ChannelKind,
    action: Action,
    json: bool,
) -> anyhow::Result<String> {
    Ok(match action {
        Action::List => {
            let list = templates.list(channel).await?;
            match json {
                true => pretty(&json!({"channel": channel, "templates": list}))?,
                false => list_table(&list),
            }
        }
        Action::Library { id: Some(id), .. } => {
            let entry = templates.library_entry(channel, &id).await?;
            match json {
                true => pretty(&entry)?,
                false => entry_table(&entry),
            }
        }
        Action::Library {
            id: None,
            start,
            count,
        } => {
            let max = match channel.templates() {
                TemplateDialect::OldLibrary => 20,
                TemplateDialect::Subscribe => 30,
                TemplateDialect::OfficialAccount => {
                    bail!("WeChat has no library to browse for the official account")
                }
            };
            let count = count.unwrap_or(max);
            if !(1..=max).contains(&count) {
                bail!("--count must be 1 to {max} (WeChat's maximum)");
            }
            let page = templates.library(channel, start, count, None).await?;
            match json {
                true => pretty(&page)?,
                false => page_table(&page),
            }
        }
        Action::Add {
            library_id,
            keyword_ids,
            scene,
        } => {
            let id = templates
                .add(
                    channel,
                    &library_id,
                    &keyword_ids,
                    scene.as_deref().unwrap_or_default(),
                )
                .await?;
            match json {
                true => pretty(&json!({"channel": channel, "template_id": id}))?,
                false => format!("added {id}\n"),
            }
        }
        Action::Delete { template_id } => {
            templates.delete(channel, &template_id).await?;
            match json {
                true => pretty(&json!({"channel": channel, "template_id": template_id, "deleted": true}))?,
                false => format!("deleted {template_id}\n"),
            }
        }
    })
}

fn pretty(value: &impl serde::Serialize) -> anyhow::Result<String> {
    Ok(serde_json::to_string_pretty(value)? + "\n")
}

/// Text from WeChat as a terminal may show it: control characters (escape
/// sequences, newlines that would forge a row) are written out as escapes.
fn inert(text: &str) -> String {
    text.chars()
        .map(|c| match c.is_control() {
            true => c.escape_default().to_string(),
            false => c.to_string(),
        })
        .collect()
}

/// Rows padded to the widest cell of each column, by display width (a
/// Chinese character takes two columns). Every cell is made [`inert`].
fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|row| row.iter().map(|cell| inert(cell)).collect())
        .collect();
    let widths: Vec<usize> = (0..header.len())
        .map(|c| {
            rows.iter()
                .map(|r| r[c].width())
                .chain([header[c].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: Vec<String>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell}{}", " ".repeat(w - cell.width())))
            .collect();
        padded.join("  ").trim_end().to_owned() + "\n"
    };
    let mut out = line(header.iter().map(|h| (*h).to_owned()).collect());
    for row in rows {
        out.push_str(&line(row));
    }
    out
}

fn list_table(list: &[AccountTemplate]) -> String {
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|t| vec![t.template_id.clone(), t.title.clone(), t.keys.join(" ")])
        .collect();
    table(&["template_id", "title", "keys"], &rows)
}

fn page_table(page: &LibraryPage) -> String {
    let rows: Vec<Vec<String>> = page
        .items
        .iter()
        .map(|i| vec![i.id.clone(), i.title.clone()])
        .collect();
    format!("{}{} in all\n", table(&["id", "title"], &rows), page.total)
}

fn entry_table(entry: &LibraryEntry) -> String {
    let rows: Vec<Vec<String>> = entry
        .keywords
        .iter()
        .map(|k| {
            let key = k
                .rule
                .as_ref()
                .map(|r| format!("{r}{}", k.id))
                .unwrap_or_default();
            vec![k.id.to_string(), k.name.clone(), key, k.example.clone()]
        })
        .collect();
    let title = inert(entry.title.as_deref().unwrap_or_default());
    format!(
        "{} {title}\n{}",
        inert(&entry.id),
        table(&["keyword_id", "name", "data key", "example"], &rows)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_by_display_width() {
        let rows = vec![
            vec!["AT0002".to_owned(), "购买成功通知".to_owned()],
            vec!["AT0010".to_owned(), "x".to_owned()],
        ];
        let out = table(&["id", "title"], &rows);
        assert_eq!(out, "id      title\nAT0002  购买成功通知\nAT0010  x\n");
        let wide = table(
            &["name", "key"],
            &[vec!["物品名称".to_owned(), "thing1".to_owned()]],
        );
        assert_eq!(wide, "name      key\n物品名称  thing1\n");
    }

    #[test]
    fn text_from_wechat_cannot_forge_rows_or_drive_the_terminal() {
        let rows = vec![vec!["T1".to_owned(), "Paid\nT2  forged row\u{1b}[31m".to_owned()]];
        let out = table(&["id", "title"], &rows);
        assert_eq!(out.lines().count(), 2, "{out}");
        assert!(!out.contains('\u{1b}'), "{out:?}");
        assert!(out.contains("Paid\\nT2  forged row\\u{1b}[31m"), "{out}");
    }
}
