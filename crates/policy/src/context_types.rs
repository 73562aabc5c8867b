//! What each action declares as its context type, worked out once at compile time:
//! - as Cedar schema text, so a request whose context does not match can be told what
//!   was expected (cedar's own message only says that the context is not valid);
//! - whether it is *plain* (only `Bool`, `Long`, `String`, and sets and records of
//!   them), so `decide` can build the context straight from JSON instead of running
//!   cedar's schema-directed JSON parser, which costs several times more;
//! - for a plain type, its [`Shape`]: a compact typed tree `decide` checks JSON against
//!   (see `fast.rs`) instead of having cedar re-validate the built request.

use std::collections::{HashMap, HashSet};
use std::str::FromStr;

use cedar_policy::{EntityId, EntityTypeName, EntityUid};
use serde_json::{Map, Value};

/// Deepest nesting looked at; deeper types print as `...` and are not plain.
const MAX_DEPTH: usize = 16;

/// Most nodes a [`Shape`] may have (common types are expanded where they are used, so
/// a small schema can describe a huge tree); a bigger context type is not plain.
const MAX_SHAPE_NODES: usize = 512;

/// One action's declared context type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ContextType {
    /// Cedar schema text, e.g. `{ mfa?: Bool, risk: Long }`.
    pub text: String,
    /// INVARIANT: true only when every type in the context resolves, for certain, to
    /// `Bool`, `Long`, `String`, or sets and records of them. Then plain JSON (no `__`
    /// escapes, integers only) means the same Cedar value with or without the schema.
    pub plain: bool,
    /// The type as a tree, when it is plain (`Some` exactly when `plain`).
    pub shape: Option<Shape>,
}

/// A plain Cedar type, as this crate reads it from the schema fragment. It is trusted
/// for a decision only after cedar agrees with it (`fast.rs` checks witnesses at
/// compile time).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Shape {
    Bool,
    Long,
    String,
    Set(Box<Shape>),
    Record(RecordShape),
}

/// A closed record type: no attribute other than the declared ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RecordShape {
    /// Sorted by name, names unique.
    pub attrs: Vec<AttrShape>,
    /// How many of `attrs` are required.
    pub required: usize,
}

/// One attribute of a [`RecordShape`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AttrShape {
    pub name: String,
    pub required: bool,
    pub shape: Shape,
}

impl Shape {
    /// Whether plain JSON `value` has this type, with cedar's typing rules: `Long` is
    /// a JSON number that is an `i64` (no floats, nothing out of range), sets may be
    /// empty and every element has the element type, records are closed.
    pub(crate) fn admits(&self, value: &Value) -> bool {
        match (self, value) {
            (Shape::Bool, Value::Bool(_)) | (Shape::String, Value::String(_)) => true,
            (Shape::Long, Value::Number(n)) => n.as_i64().is_some(),
            (Shape::Set(element), Value::Array(items)) => items.iter().all(|i| element.admits(i)),
            (Shape::Record(record), Value::Object(map)) => record.admits(map),
            _ => false,
        }
    }
}

impl RecordShape {
    /// Whether the JSON object `map` has this record type: every key is a declared
    /// attribute whose value has its type, and every required attribute is present.
    pub(crate) fn admits(&self, map: &Map<String, Value>) -> bool {
        let mut required = 0usize;
        for (name, value) in map {
            let Ok(found) = self
                .attrs
                .binary_search_by(|a| a.name.as_str().cmp(name.as_str()))
            else {
                return false;
            };
            let Some(attr) = self.attrs.get(found) else {
                return false;
            };
            if !attr.shape.admits(value) {
                return false;
            }
            if attr.required {
                required += 1;
            }
        }
        // JSON object keys are unique, so this counts each required attribute once.
        required == self.required
    }
}

/// The entity types a schema fragment (Cedar JSON schema form) declares as ordinary
/// entity types, by canonical name: neither enumerated (`enum`) nor `external`.
/// For those cedar checks nothing about a request's entity id.
pub(crate) fn ordinary_entity_types(fragment: &Value) -> HashSet<String> {
    let mut out = HashSet::new();
    let Some(namespaces) = fragment.as_object() else {
        return out;
    };
    for (ns, body) in namespaces {
        let Some(types) = body.get("entityTypes").and_then(Value::as_object) else {
            continue;
        };
        for (name, decl) in types {
            let Some(decl) = decl.as_object() else {
                continue;
            };
            let external = decl
                .get("external")
                .is_some_and(|e| *e != Value::Bool(false));
            if decl.contains_key("enum") || external {
                continue;
            }
            out.insert(if ns.is_empty() {
                name.clone()
            } else {
                format!("{ns}::{name}")
            });
        }
    }
    out
}

/// Declared context types by canonical action uid text, from a schema fragment in
/// Cedar JSON schema form. Actions that apply to nothing are left out.
pub(crate) fn context_types(fragment: &Value) -> HashMap<String, ContextType> {
    let mut out = HashMap::new();
    let Some(namespaces) = fragment.as_object() else {
        return out;
    };
    let empty = Map::new();
    let section = |ns: &str, key: &str| {
        namespaces
            .get(ns)
            .and_then(|body| body.get(key))
            .and_then(Value::as_object)
            .unwrap_or(&empty)
    };
    for (ns, body) in namespaces {
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
        let types = Types {
            ns,
            commons: section(ns, "commonTypes"),
            entities: section(ns, "entityTypes"),
            root_commons: section("", "commonTypes"),
            root_entities: section("", "entityTypes"),
        };
        for (name, action) in actions {
            let Some(applies_to) = action.get("appliesTo") else {
                continue;
            };
            let context = match applies_to.get("context") {
                Some(ty) => {
                    let mut budget = MAX_SHAPE_NODES;
                    let shape = types.shape(ty, 0, &mut budget);
                    ContextType {
                        text: types.render(ty, 0),
                        plain: shape.is_some(),
                        shape,
                    }
                }
                None => ContextType {
                    text: "{}".to_owned(),
                    plain: true,
                    shape: Some(Shape::Record(RecordShape {
                        attrs: Vec::new(),
                        required: 0,
                    })),
                },
            };
            let uid = EntityUid::from_type_name_and_id(action_type.clone(), EntityId::new(name));
            out.insert(uid.to_string(), context);
        }
    }
    out
}

/// The names visible from one namespace.
struct Types<'a> {
    ns: &'a str,
    commons: &'a Map<String, Value>,
    entities: &'a Map<String, Value>,
    root_commons: &'a Map<String, Value>,
    root_entities: &'a Map<String, Value>,
}

/// How a type name resolves, following cedar's order: this namespace's common and
/// entity types, then the empty namespace's, then the built-in types.
enum Resolved<'a> {
    /// A common type of this namespace.
    Common(&'a Value),
    /// `Bool`, `Long` or `String`.
    Primitive(&'static str),
    /// Anything else: an entity type, an extension type, another namespace's type.
    Other,
}

impl<'a> Types<'a> {
    fn resolve(&self, name: &str) -> Resolved<'a> {
        if let Some(builtin) = name.strip_prefix("__cedar::") {
            return primitive(builtin).map_or(Resolved::Other, Resolved::Primitive);
        }
        let local = if self.ns.is_empty() || !name.contains("::") {
            Some(name)
        } else {
            name.strip_prefix(self.ns)
                .and_then(|rest| rest.strip_prefix("::"))
        };
        if let Some(local) = local {
            if let Some(common) = self.commons.get(local) {
                return Resolved::Common(common);
            }
            if self.entities.contains_key(local) {
                return Resolved::Other;
            }
        }
        if name.contains("::") {
            return Resolved::Other;
        }
        if self.root_commons.contains_key(name) || self.root_entities.contains_key(name) {
            return Resolved::Other;
        }
        primitive(name).map_or(Resolved::Other, Resolved::Primitive)
    }

    fn render(&self, ty: &Value, depth: usize) -> String {
        if depth > MAX_DEPTH {
            return "...".to_owned();
        }
        let name = || ty.get("name").and_then(Value::as_str).unwrap_or("?");
        match ty.get("type").and_then(Value::as_str) {
            Some("Record") => {
                let attrs: Vec<String> = attributes(ty)
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
                            .collect()
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
            Some("EntityOrCommon") => self.render_named(name(), depth),
            Some(other) => self.render_named(other, depth),
            None => "?".to_owned(),
        }
    }

    fn render_named(&self, name: &str, depth: usize) -> String {
        match self.resolve(name) {
            Resolved::Common(common) => self.render(common, depth + 1),
            Resolved::Primitive(p) => p.to_owned(),
            Resolved::Other => name.to_owned(),
        }
    }

    /// The type as a [`Shape`] when it is plain, following the same resolution as
    /// `render`; `None` for anything else, too deep or too big.
    fn shape(&self, ty: &Value, depth: usize, budget: &mut usize) -> Option<Shape> {
        if depth > MAX_DEPTH {
            return None;
        }
        *budget = budget.checked_sub(1)?;
        match ty.get("type").and_then(Value::as_str) {
            Some("Record") => {
                if ty.get("additionalAttributes").and_then(Value::as_bool) == Some(true) {
                    return None;
                }
                let mut attrs = attributes(ty)?
                    .iter()
                    .map(|(name, v)| {
                        Some(AttrShape {
                            name: name.clone(),
                            required: v.get("required").and_then(Value::as_bool) != Some(false),
                            shape: self.shape(v, depth + 1, budget)?,
                        })
                    })
                    .collect::<Option<Vec<_>>>()?;
                attrs.sort_by(|a, b| a.name.cmp(&b.name));
                let required = attrs.iter().filter(|a| a.required).count();
                Some(Shape::Record(RecordShape { attrs, required }))
            }
            Some("Set") => Some(Shape::Set(Box::new(self.shape(
                ty.get("element")?,
                depth + 1,
                budget,
            )?))),
            // JSON schema keywords: always the primitive, unless a common type of the
            // same name makes it ambiguous
            Some(keyword @ ("Long" | "String" | "Boolean")) => {
                if self.commons.contains_key(keyword) || self.root_commons.contains_key(keyword) {
                    None
                } else {
                    primitive_shape(keyword)
                }
            }
            Some("EntityOrCommon") => {
                let name = ty.get("name").and_then(Value::as_str)?;
                self.shape_named(name, depth, budget)
            }
            Some("Entity" | "Extension") | None => None,
            Some(other) => self.shape_named(other, depth, budget),
        }
    }

    fn shape_named(&self, name: &str, depth: usize, budget: &mut usize) -> Option<Shape> {
        match self.resolve(name) {
            Resolved::Common(common) => self.shape(common, depth + 1, budget),
            Resolved::Primitive(p) => primitive_shape(p),
            Resolved::Other => None,
        }
    }
}

fn primitive_shape(name: &str) -> Option<Shape> {
    match primitive(name)? {
        "Bool" => Some(Shape::Bool),
        "Long" => Some(Shape::Long),
        "String" => Some(Shape::String),
        _ => None,
    }
}

fn attributes(record: &Value) -> Option<&Map<String, Value>> {
    record.get("attributes").and_then(Value::as_object)
}

fn primitive(name: &str) -> Option<&'static str> {
    match name {
        "Bool" | "Boolean" => Some("Bool"),
        "Long" => Some("Long"),
        "String" => Some("String"),
        _ => None,
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

    fn types(src: &str) -> HashMap<String, ContextType> {
        let fragment = if src.trim_start().starts_with('{') {
            SchemaFragment::from_json_str(src).unwrap()
        } else {
            SchemaFragment::from_cedarschema_str(src).unwrap().0
        };
        context_types(&fragment.to_json_value().unwrap())
    }

    #[test]
    fn renders_common_types_inline() {
        let t = types(
            r#"namespace App {
              entity Document;
              type Ctx = { mfa?: Bool, risk: Long, tags: Set<String>, "odd key": ipaddr, doc: Document };
              type Plain = { mfa?: Bool, risk: Long, tags: Set<String>, nested: { a: __cedar::String } };
              action read appliesTo { principal: [Warrant::Identity], resource: [Document], context: Ctx };
              action list appliesTo { principal: [Warrant::Identity], resource: [Document], context: Plain };
              action write appliesTo { principal: [Warrant::Identity], resource: [Document] };
            }"#,
        );
        let read = &t[r#"App::Action::"read""#];
        assert_eq!(
            read.text,
            r#"{ doc: Document, mfa?: Bool, "odd key": ipaddr, risk: Long, tags: Set<String> }"#
        );
        assert!(!read.plain, "entity and extension attributes are not plain");
        let list = &t[r#"App::Action::"list""#];
        assert_eq!(
            list.text,
            "{ mfa?: Bool, nested: { a: String }, risk: Long, tags: Set<String> }"
        );
        assert!(list.plain);
        assert_eq!(
            t[r#"App::Action::"write""#],
            ContextType {
                text: "{}".into(),
                plain: true,
                shape: Some(Shape::Record(RecordShape {
                    attrs: vec![],
                    required: 0
                })),
            }
        );
    }

    #[test]
    fn a_primitive_name_shadowed_by_an_entity_type_is_not_plain() {
        let t = types(
            r#"namespace App {
              entity Long;
              entity Document;
              action read appliesTo { principal: [Warrant::Identity], resource: [Document], context: { n: Long } };
            }"#,
        );
        let read = &t[r#"App::Action::"read""#];
        assert!(!read.plain);
        assert_eq!(read.text, "{ n: Long }");
    }

    #[test]
    fn json_schema_keywords_are_plain() {
        let t = types(
            r#"{ "": {
              "entityTypes": { "Document": {} },
              "commonTypes": { "Ctx": { "type": "Record", "attributes": {
                  "risk": { "type": "Long" }, "ok": { "type": "Boolean", "required": false } } } },
              "actions": { "read": { "appliesTo": {
                  "principalTypes": ["Warrant::Identity"], "resourceTypes": ["Document"],
                  "context": { "type": "Ctx" } } } }
            } }"#,
        );
        let read = &t[r#"Action::"read""#];
        assert_eq!(read.text, "{ ok?: Bool, risk: Long }");
        assert!(read.plain);
    }
}
