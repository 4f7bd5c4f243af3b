//! Template ids as small numbers. A template id is about 43 characters and
//! every openid that has grants names a few of them; stored per openid they
//! would cost most of the memory. Each deployment instead numbers the
//! templates it has seen once (in Redis: the `{prefix}:templates` hash,
//! `<id> → n` and `#<n> → id`), and books store the two-byte number.

use std::collections::HashMap;

use super::book::Tpl;
use crate::domain::TemplateId;

/// Templates one deployment can number. WeChat accounts hold at most a few
/// dozen templates; ids nobody can send with never get this far (the API
/// bounds what one request may name).
pub const DICTIONARY_CAPACITY: u32 = u16::MAX as u32;

/// Both directions of the numbering, as far as this process knows it.
#[derive(Debug, Default)]
pub(crate) struct Dictionary {
    by_id: HashMap<TemplateId, Tpl>,
    by_number: HashMap<Tpl, TemplateId>,
}

impl Dictionary {
    pub fn number(&self, template: &TemplateId) -> Option<Tpl> {
        self.by_id.get(template).copied()
    }

    pub fn template(&self, number: Tpl) -> Option<&TemplateId> {
        self.by_number.get(&number)
    }

    pub fn learn(&mut self, template: TemplateId, number: Tpl) {
        self.by_number.insert(number, template.clone());
        self.by_id.insert(template, number);
    }

    /// Numbers a template not seen before (the embedded ledger's own
    /// numbering); `None` when the dictionary is full.
    pub fn assign(&mut self, template: &TemplateId) -> Option<Tpl> {
        if let Some(n) = self.number(template) {
            return Some(n);
        }
        let next = Tpl::try_from(self.by_id.len() + 1).ok()?;
        self.learn(template.clone(), next);
        Some(next)
    }
}
