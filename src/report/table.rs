//! The usage report as a terminal table (`formid-ledger report`).

use std::fmt::Write;

use super::UsageRow;
use crate::domain::Outcome;

const COLUMNS: [&str; 15] = [
    "date",
    "collected f/p",
    "dup",
    "rejected",
    "evicted",
    "sent",
    "no cred",
    "wx rejected",
    "quota",
    "wx down",
    "wx unknown",
    "spent f/p",
    "burned f/p",
    "refunded f/p",
    "expired unspent f/p",
];

fn cells(row: &UsageRow) -> [String; 15] {
    let pair = |a: i64, b: i64| format!("{a}/{b}");
    let r = &row.rejected;
    [
        row.date.format("%Y-%m-%d").to_string(),
        pair(row.collected.form, row.collected.prepay),
        row.duplicates.to_string(),
        (r.mock_form_id + r.invalid_id + r.expired + r.invalid_kind).to_string(),
        row.evicted.to_string(),
        row.sends.get(Outcome::Sent).to_string(),
        row.sends.get(Outcome::NoValidCredential).to_string(),
        row.sends.get(Outcome::WechatRejected).to_string(),
        row.sends.get(Outcome::WechatQuotaExceeded).to_string(),
        row.sends.get(Outcome::WechatUnavailable).to_string(),
        row.sends.get(Outcome::WechatOutcomeUnknown).to_string(),
        pair(row.spent.form, row.spent.prepay),
        pair(row.burned.form, row.burned.prepay),
        pair(row.refunded.form, row.refunded.prepay),
        pair(row.expired_unspent.form, row.expired_unspent.prepay),
    ]
}

/// Right-aligned columns, one line a day; f/p = form/prepay (uses).
pub fn render(rows: &[UsageRow]) -> String {
    let body: Vec<[String; 15]> = rows.iter().map(cells).collect();
    let widths: Vec<usize> = (0..COLUMNS.len())
        .map(|c| {
            body.iter()
                .map(|r| r[c].len())
                .chain([COLUMNS[c].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    let line = |out: &mut String, cells: &[&str]| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:>w$}"))
            .collect();
        let _ = writeln!(out, "{}", padded.join("  "));
    };
    line(&mut out, &COLUMNS);
    for row in &body {
        line(&mut out, &row.iter().map(String::as_str).collect::<Vec<_>>());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::usage_row;
    use chrono::{FixedOffset, NaiveDate, Utc};

    #[test]
    fn one_line_a_day_under_a_header() {
        let day = NaiveDate::from_ymd_opt(2026, 11, 23).unwrap();
        let fields = [("collected.form".into(), 12), ("spent.prepay".into(), 3)].into();
        let row = usage_row(day, &fields, Utc::now(), FixedOffset::east_opt(0).unwrap());
        let text = render(&[row]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(lines[0].trim_start().starts_with("date"));
        assert!(lines[1].contains("2026-11-23") && lines[1].contains("12/0") && lines[1].contains("0/3"));
    }
}
