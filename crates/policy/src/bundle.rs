//! Compiling a schema and a policy set into an immutable, validated [`PolicyBundle`].

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};

use cedar_policy::{
    Authorizer, Entity, EntityId, EntityTypeName, EntityUid, Policy, PolicyId, PolicySet, Schema,
    SchemaFragment, ValidationMode, Validator,
};

use crate::context_types::{context_types, ordinary_entity_types, ContextType};
use crate::decision::Effect;
use crate::diagnostics::{
    from_miette, from_miette_all, position, statement_starts, Diagnostic, PolicyErrors, SourceKind,
    SNIPPET_MAX_CHARS,
};
use crate::fast::FastCheck;

/// The built-in Cedar schema fragment, always combined with the user's schema.
///
/// It declares the principal side, which the registry owns: every decision's principal
/// is a `Warrant::Identity`, member of its roles and of its environment.
pub const BUILTIN_SCHEMA: &str = r#"namespace Warrant {
  entity Environment;
  entity Role;
  entity Human;
  entity Identity in [Role, Environment] = {
    name: String,
    kind: String,
    environment: String,
    owner: Human,
    spiffe_id: String,
    entitlements: Set<String>,
  };
  // An OAuth scope token (`App:read` names the action `App::Action::"read"`).
  entity Scope;
  // May the principal hold this scope in a token for this audience? Asked for every scope
  // token of a token request; nothing permitted means `invalid_scope`.
  action "request_scope" appliesTo {
    principal: [Identity],
    resource: [Scope],
    context: { environment: String, audience: String }
  };
  // May the principal hand (part of) its token's scope to the resource identity
  // (token exchange, RFC 8693)? `depth` is the length the delegation chain would have.
  action "delegate" appliesTo {
    principal: [Identity],
    resource: [Identity],
    context: { scope: Set<String>, depth: Long }
  };
}
"#;

/// The annotation that names a policy.
const ID_ANNOTATION: &str = "id";

/// Distinguishes bundles, so caches derived from one bundle are not used with another.
static NEXT_GENERATION: AtomicU64 = AtomicU64::new(1);

/// What a decision needs to know about one policy, computed once at compile time.
#[derive(Debug)]
pub(crate) struct PolicyMeta {
    /// Position of the policy in the source text (0 for the first statement).
    pub index: usize,
    pub effect: Effect,
    pub annotations: BTreeMap<String, String>,
}

/// A compiled, validated policy bundle: the built-in and user schema combined, the policy
/// set (validated in strict mode) and the source texts. Immutable; share it with `Arc`.
pub struct PolicyBundle {
    /// INVARIANT: `Some` for every bundle except the fallback of [`PolicyBundle::empty`]
    /// when the built-in schema does not parse, which a unit test rules out.
    pub(crate) schema: Option<Schema>,
    pub(crate) policies: PolicySet,
    pub(crate) authorizer: Authorizer,
    pub(crate) meta: HashMap<PolicyId, PolicyMeta>,
    /// The schema's actions by their canonical text (`App::Action::"read"`).
    pub(crate) actions: HashMap<String, ActionInfo>,
    /// The schema's entity types by their canonical text (`App::Document`).
    pub(crate) entity_types: HashMap<String, EntityTypeName>,
    /// The schema's action entities, kept only when the schema has action groups: then
    /// `action in <group>` needs them in the entity store. Without groups, `action in [..]`
    /// and `action == ..` are decided by equality and no action entity is needed.
    pub(crate) action_entities: Option<Vec<Entity>>,
    pub(crate) generation: u64,
    ids: Vec<String>,
    schema_text: String,
    policies_text: String,
}

impl fmt::Debug for PolicyBundle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PolicyBundle")
            .field("generation", &self.generation)
            .field("policy_ids", &self.ids)
            .field("actions", &self.actions.len())
            .finish_non_exhaustive()
    }
}

/// One action of the schema.
#[derive(Debug)]
pub(crate) struct ActionInfo {
    pub uid: EntityUid,
    /// The declared context type; `None` when it could not be worked out, and then the
    /// context always goes through cedar's schema-directed parser.
    pub context: Option<ContextType>,
    /// Validation without cedar's schema pass, when it can be done for this action.
    pub fast: Option<FastCheck>,
}

/// A policy set with ids assigned, before validation.
pub(crate) struct Parsed {
    pub set: PolicySet,
    /// The policy ids, in source order.
    pub ids: Vec<String>,
    pub meta: HashMap<PolicyId, PolicyMeta>,
    /// Byte offset of each statement in the source text (see `statement_starts`).
    pub starts: Vec<usize>,
}

impl PolicyBundle {
    /// Compiles a schema and a policy set.
    ///
    /// The schema is Cedar schema syntax, or Cedar JSON schema when the trimmed text
    /// starts with `{`; it is combined with [`BUILTIN_SCHEMA`]. Policies get the id of
    /// their `@id("...")` annotation, or cedar's default (`policy0`, `policy1`, ... by
    /// position). The policy set is validated in strict mode. Any error fails the whole
    /// compilation and every diagnostic found is returned; warnings are ignored.
    pub fn compile(schema_src: &str, policies_src: &str) -> Result<PolicyBundle, PolicyErrors> {
        let schema = build_schema(schema_src);
        let parsed = parse_policies(policies_src);
        let ((schema, context_types, ordinary), parsed) = match (schema, parsed) {
            (Ok(schema), Ok(parsed)) => (schema, parsed),
            (schema, parsed) => {
                let mut diagnostics = schema.err().unwrap_or_default();
                diagnostics.extend(parsed.err().map(|e| e.diagnostics).unwrap_or_default());
                return Err(PolicyErrors { diagnostics });
            }
        };

        let validator = Validator::new(schema);
        let diagnostics = validation_diagnostics(&validator, &parsed, policies_src);
        if !diagnostics.is_empty() {
            return Err(PolicyErrors { diagnostics });
        }

        let schema = validator.schema().clone();
        let actions = schema
            .actions()
            .map(|uid| {
                let text = uid.to_string();
                let context = context_types.get(&text).cloned();
                let fast = FastCheck::build(
                    &schema,
                    uid,
                    context.as_ref().and_then(|c| c.shape.as_ref()),
                    &ordinary,
                );
                let info = ActionInfo {
                    uid: uid.clone(),
                    context,
                    fast,
                };
                (text, info)
            })
            .collect();
        let entity_types = schema
            .entity_types()
            .map(|ty| (ty.to_string(), ty.clone()))
            .collect();
        let action_entities = if schema.action_groups().next().is_some() {
            let entities = schema.action_entities().map_err(|e| {
                PolicyErrors::one(from_miette(&e, SourceKind::Schema, Some(schema_src), None))
            })?;
            Some(entities.into_iter().collect())
        } else {
            None
        };
        Ok(PolicyBundle {
            schema: Some(schema),
            policies: parsed.set,
            authorizer: Authorizer::new(),
            meta: parsed.meta,
            actions,
            entity_types,
            action_entities,
            generation: NEXT_GENERATION.fetch_add(1, Ordering::Relaxed),
            ids: parsed.ids,
            schema_text: schema_src.to_owned(),
            policies_text: policies_src.to_owned(),
        })
    }

    /// The built-in schema and no policies: every request is denied.
    pub fn empty() -> PolicyBundle {
        match Self::compile("", "") {
            Ok(bundle) => bundle,
            // INVARIANT: unreachable, the built-in schema is tested to compile. Without a
            // schema no request can be validated, and `decide` denies everything.
            Err(_) => PolicyBundle {
                schema: None,
                policies: PolicySet::new(),
                authorizer: Authorizer::new(),
                meta: HashMap::new(),
                actions: HashMap::new(),
                entity_types: HashMap::new(),
                action_entities: None,
                generation: NEXT_GENERATION.fetch_add(1, Ordering::Relaxed),
                ids: Vec::new(),
                schema_text: String::new(),
                policies_text: String::new(),
            },
        }
    }

    /// The user's schema text, as given.
    pub fn schema_text(&self) -> &str {
        &self.schema_text
    }

    /// The policies text, as given.
    pub fn policies_text(&self) -> &str {
        &self.policies_text
    }

    /// The policy ids, in source order.
    pub fn policy_ids(&self) -> Vec<String> {
        self.ids.clone()
    }

    /// The schema's action for `text`: a fast lookup of the canonical text, then a parse
    /// for any other spelling of the same uid.
    pub(crate) fn action(&self, text: &str) -> Result<&ActionInfo, crate::decision::RequestError> {
        use crate::decision::RequestError;
        if let Some(uid) = self.actions.get(text) {
            return Ok(uid);
        }
        let uid = EntityUid::from_str(text).map_err(|e| RequestError::InvalidAction {
            input: text.to_owned(),
            message: e.to_string(),
        })?;
        self.actions
            .get(&uid.to_string())
            .ok_or_else(|| RequestError::UnknownAction {
                action: text.to_owned(),
            })
    }

    /// The resource uid for `text`. The common form, a schema entity type's canonical
    /// text and a quoted id without escapes, is built without cedar's parser.
    pub(crate) fn resource(&self, text: &str) -> Result<EntityUid, crate::decision::RequestError> {
        if let Some(uid) = self.plain_uid(text) {
            return Ok(uid);
        }
        EntityUid::from_str(text).map_err(|e| crate::decision::RequestError::InvalidResource {
            input: text.to_owned(),
            message: e.to_string(),
        })
    }

    fn plain_uid(&self, text: &str) -> Option<EntityUid> {
        let (ty, rest) = text.split_once("::\"")?;
        let id = rest.strip_suffix('"')?;
        // INVARIANT: only ids made of printable ASCII other than `"`, `'` and `\` are
        // taken here: cedar writes them without escapes, so the text is already in the
        // normalized form cedar's parser requires and means the same uid (unit test).
        if !id
            .chars()
            .all(|c| (c.is_ascii_graphic() || c == ' ') && !matches!(c, '"' | '\'' | '\\'))
        {
            return None;
        }
        let ty = self.entity_types.get(ty)?;
        Some(EntityUid::from_type_name_and_id(
            ty.clone(),
            EntityId::new(id),
        ))
    }
}

/// Validates `parsed` (parsed from `policies_src`) in strict mode and returns every
/// validation error as a positioned diagnostic; warnings are ignored.
pub(crate) fn validation_diagnostics(
    validator: &Validator,
    parsed: &Parsed,
    policies_src: &str,
) -> Vec<Diagnostic> {
    let result = validator.validate(&parsed.set, ValidationMode::Strict);
    result
        .validation_errors()
        .map(|e| {
            let id = e.policy_id();
            let mut d = from_miette(
                e,
                SourceKind::Policies,
                Some(policies_src),
                Some(id.to_string()),
            );
            if d.line.is_none() {
                // Without a label, point at the start of the policy.
                let start = parsed.meta.get(id).and_then(|m| parsed.starts.get(m.index));
                if let Some(p) = start.and_then(|&s| position(policies_src, s)) {
                    d.line = Some(p.line);
                    d.column = Some(p.column);
                    d.snippet = Some(p.snippet);
                }
            }
            d
        })
        .collect()
}

/// Checks policy syntax only (no schema) and returns the policy ids in source order.
pub fn check_syntax(policies_src: &str) -> Result<Vec<String>, PolicyErrors> {
    parse_policies(policies_src).map(|p| p.ids)
}

/// The combined schema, the user's actions' context types, and the entity types of both
/// fragments that are neither enumerated nor external.
type BuiltSchema = (Schema, HashMap<String, ContextType>, HashSet<String>);

fn build_schema(src: &str) -> Result<BuiltSchema, Vec<Diagnostic>> {
    let kind = SourceKind::Schema;
    let user = if src.trim_start().starts_with('{') {
        SchemaFragment::from_json_str(src).map_err(|e| {
            let mut diags = from_miette_all(&e, &kind, Some(src));
            for d in &mut diags {
                json_position(d, src);
            }
            diags
        })?
    } else {
        SchemaFragment::from_cedarschema_str(src)
            .map(|(fragment, _warnings)| fragment)
            .map_err(|e| from_miette_all(&e, &kind, Some(src)))?
    };
    // INVARIANT: the built-in fragment parses (unit test); if it ever did not, compiling
    // fails rather than running without the principal's types.
    let builtin = SchemaFragment::from_cedarschema_str(BUILTIN_SCHEMA)
        .map(|(fragment, _warnings)| fragment)
        .map_err(|e| {
            let mut d = from_miette(&e, kind.clone(), None, None);
            d.message = format!("built-in schema: {}", d.message);
            vec![d]
        })?;
    let user_json = user.clone().to_json_value().ok();
    let context_types = user_json.as_ref().map(context_types).unwrap_or_default();
    // Without the JSON form of both fragments, no type is known to be ordinary and no
    // action gets the fast check.
    let ordinary = match (builtin.clone().to_json_value(), user_json) {
        (Ok(builtin), Some(user)) => {
            let mut ordinary = ordinary_entity_types(&builtin);
            ordinary.extend(ordinary_entity_types(&user));
            ordinary
        }
        _ => HashSet::new(),
    };
    Schema::from_schema_fragments([builtin, user])
        .map(|schema| (schema, context_types, ordinary))
        .map_err(|e| from_miette_all(&e, &kind, Some(src)))
}

/// JSON errors carry their position only in the message (`... at line 3 column 7`).
fn json_position(d: &mut Diagnostic, src: &str) {
    if d.line.is_some() {
        return;
    }
    let Some((rest, column)) = d.message.rsplit_once(" column ") else {
        return;
    };
    let Some((_, line)) = rest.rsplit_once(" at line ") else {
        return;
    };
    let (Ok(line), Ok(column)) = (line.parse::<u32>(), column.parse::<u32>()) else {
        return;
    };
    let snippet = usize::try_from(line)
        .ok()
        .and_then(|l| src.lines().nth(l.saturating_sub(1)))
        .map(|l| l.trim_end().chars().take(SNIPPET_MAX_CHARS).collect());
    d.line = Some(line);
    d.column = Some(column);
    d.snippet = snippet;
}

/// Cedar's default id `policy<n>` names the `n`th statement of the text.
fn default_index(id: &PolicyId) -> Option<usize> {
    AsRef::<str>::as_ref(id)
        .strip_prefix("policy")?
        .parse()
        .ok()
}

/// Parses a policies text and gives each policy the id of its `@id` annotation (or
/// cedar's default); templates, empty and duplicate ids are diagnostics.
pub(crate) fn parse_policies(src: &str) -> Result<Parsed, PolicyErrors> {
    let kind = SourceKind::Policies;
    let raw = PolicySet::from_str(src).map_err(|errs| PolicyErrors {
        diagnostics: errs
            .iter()
            .map(|e| from_miette(e, kind.clone(), Some(src), None))
            .collect(),
    })?;
    let starts = statement_starts(src);
    let at = |index: Option<usize>, policy_id: String, message: String| {
        let pos = index
            .and_then(|i| starts.get(i))
            .and_then(|&s| position(src, s));
        Diagnostic {
            source: kind.clone(),
            message,
            help: None,
            policy_id: Some(policy_id),
            line: pos.as_ref().map(|p| p.line),
            column: pos.as_ref().map(|p| p.column),
            snippet: pos.map(|p| p.snippet),
        }
    };

    let mut diagnostics = Vec::new();
    for template in raw.templates() {
        let id = template
            .annotation(ID_ANNOTATION)
            .map_or_else(|| template.id().to_string(), str::to_owned);
        diagnostics.push(at(
            default_index(template.id()),
            id.clone(),
            format!("policy `{id}` has slots such as `?principal`: templates are not supported"),
        ));
    }

    let mut entries: Vec<(usize, &Policy)> = raw
        .policies()
        .map(|p| (default_index(p.id()).unwrap_or(usize::MAX), p))
        .collect();
    entries.sort_by(|(a, p), (b, q)| {
        a.cmp(b)
            .then_with(|| AsRef::<str>::as_ref(p.id()).cmp(q.id().as_ref()))
    });

    let mut set = PolicySet::new();
    let mut ids = Vec::with_capacity(entries.len());
    let mut meta = HashMap::with_capacity(entries.len());
    let mut first_use: HashMap<String, usize> = HashMap::new();
    for (index, policy) in entries {
        let id = match policy.annotation(ID_ANNOTATION) {
            Some(id) if id.trim().is_empty() => {
                diagnostics.push(at(
                    Some(index),
                    policy.id().to_string(),
                    "`@id` annotation must not be empty".to_owned(),
                ));
                continue;
            }
            Some(id) => id.to_owned(),
            None => policy.id().to_string(),
        };
        if let Some(&first) = first_use.get(&id) {
            let first_line = starts
                .get(first)
                .and_then(|&s| position(src, s))
                .map_or_else(String::new, |p| format!(" (first used at line {})", p.line));
            diagnostics.push(at(
                Some(index),
                id.clone(),
                format!("duplicate policy id `{id}`{first_line}"),
            ));
            continue;
        }
        first_use.insert(id.clone(), index);
        let new_id = PolicyId::new(&id);
        let annotations = policy
            .annotations()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        let effect = Effect::from(policy.effect());
        if let Err(e) = set.add(policy.new_id(new_id.clone())) {
            diagnostics.push(at(Some(index), id.clone(), e.to_string()));
            continue;
        }
        meta.insert(
            new_id,
            PolicyMeta {
                index,
                effect,
                annotations,
            },
        );
        ids.push(id);
    }
    if diagnostics.is_empty() {
        Ok(Parsed {
            set,
            ids,
            meta,
            starts,
        })
    } else {
        Err(PolicyErrors { diagnostics })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_schema_compiles_alone() {
        let bundle = PolicyBundle::compile("", "").unwrap();
        assert!(bundle.schema.is_some());
        assert!(bundle.policy_ids().is_empty());
        assert!(bundle.action_entities.is_none());
        assert!(PolicyBundle::empty().schema.is_some());
    }

    #[test]
    fn plain_resource_uids_mean_what_cedars_parser_says() {
        let bundle =
            PolicyBundle::compile("namespace App { entity Document; }\nentity Top;", "").unwrap();
        let mut inputs: Vec<String> = [
            r#"App::Document::"q3-report""#,
            r#"Top::"x""#,
            r#"App::Document::"""#,
            r#"App::Document::"a"b""#,
            r#"App::Document::"a\"b""#,
            r#"App::Document::"é""#,
            r#"App :: Document::"x""#,
            r#"App::Document::"x" "#,
            r#"App::Unknown::"x""#,
        ]
        .map(str::to_owned)
        .into();
        for c in (0u8..128).map(char::from) {
            inputs.push(format!("App::Document::\"a{c}b\""));
        }
        let mut fast = 0;
        for text in &inputs {
            let parsed = EntityUid::from_str(text).ok();
            if let Some(uid) = bundle.plain_uid(text) {
                fast += 1;
                assert_eq!(Some(&uid), parsed.as_ref(), "{text}");
                assert_eq!(uid.to_string(), *text);
            }
            assert_eq!(bundle.resource(text).ok(), parsed, "{text}");
        }
        assert!(fast > 90, "the plain path is taken for ordinary ids");
    }

    #[test]
    fn generations_differ() {
        assert_ne!(
            PolicyBundle::empty().generation,
            PolicyBundle::empty().generation
        );
    }
}
