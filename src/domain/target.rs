//! Who a message goes to, with which template, opening which page: the
//! part every channel's send body shares, parsed once.

use super::{OpenId, TemplateId};

/// A field of a send body that is not valid, in words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidTarget(String);

/// Most bytes of a page path (`pages/order/detail?id=42`).
const MAX_PAGE: usize = 1024;

/// Whether `s` has no control characters (newlines, escapes).
pub fn printable(s: &str) -> bool {
    !s.chars().any(char::is_control)
}

/// Parses the recipient and the template, and checks the page if any.
pub fn parse_target(
    touser: &str,
    template_id: &str,
    page: Option<&str>,
) -> Result<(OpenId, TemplateId), InvalidTarget> {
    let touser = OpenId::parse(touser).map_err(|e| InvalidTarget(format!("touser: {e}")))?;
    let template_id =
        TemplateId::parse(template_id).map_err(|e| InvalidTarget(format!("template_id: {e}")))?;
    if let Some(page) = page
        && (page.is_empty() || page.len() > MAX_PAGE || !printable(page))
    {
        return Err(InvalidTarget(format!(
            "page must be 1 to {MAX_PAGE} printable characters"
        )));
    }
    Ok((touser, template_id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_target_names_the_field_it_refuses() {
        assert!(parse_target("oUser1", "TplA", Some("pages/a?b=1")).is_ok());
        let err = parse_target("", "TplA", None).unwrap_err();
        assert!(err.to_string().starts_with("touser: "), "{err}");
        let err = parse_target("oUser1", "Tpl A", None).unwrap_err();
        assert!(err.to_string().starts_with("template_id: "), "{err}");
        assert!(parse_target("oUser1", "TplA", Some("a\nb")).is_err());
        assert!(parse_target("oUser1", "TplA", Some("")).is_err());
    }
}
