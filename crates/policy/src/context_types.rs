//! The context type each action declares, rendered as Cedar schema text at compile time,
//! so a request whose context does not match can be told what was expected (cedar's own
//! message only says that the context is not valid).

use std::collections::HashMap;
use std::str::FromStr;

use cedar_policy::{EntityId, EntityTypeName, EntityUid};
use serde_json::{Map, Value};

/// Deepest nesting rendered; deeper types print as `...`.
const MAX_DEPTH: usize = 16;

/// Expected context type text by canonical action uid text, from a schema fragment in
/// Cedar JSON schema form. Actions that apply to nothing are left out.
pub(crate) fn context_types(fragment: &Value) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let Some(namespaces) = fragment.as_object() else {
        return out;
    };
    let empty = Map::new();
    for (ns, body) in namespaces {
        let commons = body
            .get("commonTypes")
            .and_then(Value::as_object)
            .unwrap_or(&empty);
        let Some(actions) = body.get("actions").and_then(Value::as_object) else {
            continue;
        };
        let action_type = if ns.is_empty() {
            "Action".to_owned()
        } else {
            format!("{ns}::Action")
        };
        let Ok(action_type) = EntityTypeName::from_str(&action_type) else {
            continue;
        };
        let renderer = Renderer { ns, commons };
        for (name, action) in actions {
            let Some(applies_to) = action.get("appliesTo") else {
                continue;
            };
            let text = applies_to
                .get("context")
                .map_or_else(|| "{}".to_owned(), |ty| renderer.render(ty, 0));
            let uid = EntityUid::from_type_name_and_id(action_type.clone(), EntityId::new(name));
            out.insert(uid.to_string(), text);
        }
    }
    out
}

struct Renderer<'a> {
    ns: &'a str,
    commons: &'a Map<String, Value>,
}

impl Renderer<'_> {
    fn render(&self, ty: &Value, depth: usize) -> String {
        if depth > MAX_DEPTH {
            return "...".to_owned();
        }
        let name = || ty.get("name").and_then(Value::as_str).unwrap_or("?");
        match ty.get("type").and_then(Value::as_str) {
            Some("Record") => {
                let attrs = ty
                    .get("attributes")
                    .and_then(Value::as_object)
                    .map(|attrs| {
                        attrs
                            .iter()
                            .map(|(k, v)| {
                                let optional =
                                    v.get("required").and_then(Value::as_bool) == Some(false);
                                format!(
                                    "{}{}: {}",
                                    attr_name(k),
                                    if optional { "?" } else { "" },
                                    self.render(v, depth + 1)
                                )
                            })
                            .collect::<Vec<_>>()
                    })
                    .unwrap_or_default();
                if attrs.is_empty() {
                    "{}".to_owned()
                } else {
                    format!("{{ {} }}", attrs.join(", "))
                }
            }
            Some("Set") => format!(
                "Set<{}>",
                ty.get("element")
                    .map_or_else(|| "?".to_owned(), |e| self.render(e, depth + 1))
            ),
            Some("Entity" | "Extension") => name().to_owned(),
            Some("EntityOrCommon") => self.named(name(), depth),
            Some(other) => self.named(other, depth),
            None => "?".to_owned(),
        }
    }

    /// A type by name: a common type of this namespace is shown inline.
    fn named(&self, name: &str, depth: usize) -> String {
        let name = name.strip_prefix("__cedar::").unwrap_or(name);
        if name == "Boolean" {
            return "Bool".to_owned();
        }
        let local = if self.ns.is_empty() {
            Some(name)
        } else {
            name.strip_prefix(self.ns)
                .and_then(|rest| rest.strip_prefix("::"))
                .or(Some(name))
        };
        match local.and_then(|n| self.commons.get(n)) {
            Some(common) => self.render(common, depth + 1),
            None => name.to_owned(),
        }
    }
}

fn attr_name(name: &str) -> String {
    let mut chars = name.chars();
    let ident = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ident {
        name.to_owned()
    } else {
        format!("{name:?}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cedar_policy::SchemaFragment;

    #[test]
    fn renders_common_types_inline() {
        let src = r#"namespace App {
          entity Document;
          type Ctx = { mfa?: Bool, risk: Long, tags: Set<String>, "odd key": ipaddr, doc: Document };
          action read appliesTo { principal: [Warrant::Identity], resource: [Document], context: Ctx };
          action write appliesTo { principal: [Warrant::Identity], resource: [Document] };
          action group;
        }"#;
        let (fragment, _) = SchemaFragment::from_cedarschema_str(src).unwrap();
        let types = context_types(&fragment.to_json_value().unwrap());
        assert_eq!(
            types[r#"App::Action::"read""#],
            r#"{ doc: Document, mfa?: Bool, "odd key": ipaddr, risk: Long, tags: Set<String> }"#
        );
        assert_eq!(types[r#"App::Action::"write""#], "{}");
    }
}
