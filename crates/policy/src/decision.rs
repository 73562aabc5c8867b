//! Decisions: one request in wire form, evaluated against a [`PolicyBundle`] for a
//! pre-built principal.

use std::collections::BTreeMap;

use cedar_policy::{
    AuthorizationError, Context, Entity, EntityUid, Request, RequestValidationError, Response,
    RestrictedExpression,
};

use serde_json::{Map, Value};

use crate::bundle::{ActionInfo, PolicyBundle};
use crate::principal::PrincipalEntities;

/// One decision request, in wire form, parsed against the bundle's schema.
#[derive(Debug, Clone, Copy)]
pub struct DecisionInput<'a> {
    /// Cedar entity uid text of the action, e.g. `App::Action::"read"`.
    pub action: &'a str,
    /// Cedar entity uid text of the resource, e.g. `App::Document::"q3-report"`.
    pub resource: &'a str,
    /// A JSON object, checked against the action's context type in the schema.
    pub context: Option<&'a serde_json::Value>,
    /// A Cedar JSON entities array describing the resource side, checked against the
    /// schema. It may not describe principal-side (`Warrant::...`) or action entities.
    pub entities: Option<&'a serde_json::Value>,
}

/// A request that cannot be evaluated. It never yields an allow.
#[derive(Debug, Clone, thiserror::Error, miette::Diagnostic)]
pub enum RequestError {
    /// The action is not a Cedar entity uid.
    #[error("invalid action `{input}`: {message}")]
    InvalidAction {
        /// The action text as given.
        input: String,
        /// Cedar's message.
        message: String,
    },
    /// The action is not declared in the schema.
    #[error("unknown action `{action}`: it is not declared in the schema")]
    UnknownAction {
        /// The action text as given.
        action: String,
    },
    /// The resource is not a Cedar entity uid.
    #[error("invalid resource `{input}`: {message}")]
    InvalidResource {
        /// The resource text as given.
        input: String,
        /// Cedar's message.
        message: String,
    },
    /// The context is not a JSON object.
    #[error("context must be a JSON object")]
    ContextNotObject,
    /// The context does not match the action's context type.
    #[error("invalid context for action `{action}`: {message}")]
    InvalidContext {
        /// The action.
        action: String,
        /// Cedar's message.
        message: String,
    },
    /// The entities are not a JSON array.
    #[error("entities must be a JSON array")]
    EntitiesNotArray,
    /// The entities are malformed or do not match the schema.
    #[error("invalid entities: {message}")]
    InvalidEntities {
        /// Cedar's message.
        message: String,
    },
    /// The request tried to describe an entity only the registry or the schema may describe.
    #[error("entity `{uid}` may not be supplied with a request: {reason}")]
    ReservedEntity {
        /// The entity uid.
        uid: String,
        /// Why it is reserved.
        reason: &'static str,
    },
    /// The request does not match the schema, e.g. the action does not apply to the
    /// resource type.
    #[error("request does not match the schema: {message}")]
    InvalidRequest {
        /// Cedar's message.
        message: String,
    },
}

/// What a policy does when it is satisfied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Effect {
    /// Allows, unless a forbid policy is also satisfied.
    Permit,
    /// Denies, whatever else is satisfied.
    Forbid,
}

impl From<cedar_policy::Effect> for Effect {
    fn from(effect: cedar_policy::Effect) -> Self {
        match effect {
            cedar_policy::Effect::Permit => Self::Permit,
            cedar_policy::Effect::Forbid => Self::Forbid,
        }
    }
}

/// A policy that decided a decision: a satisfied permit of an allow, or a satisfied
/// forbid of a deny.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DeterminingPolicy {
    pub id: String,
    pub effect: Effect,
    /// Every annotation of the policy (`@reason("...")` becomes `reason`).
    pub annotations: BTreeMap<String, String>,
}

/// A policy whose evaluation failed; it was skipped (it never turns into an allow).
#[derive(Debug, Clone, serde::Serialize)]
pub struct EvaluationError {
    pub policy_id: String,
    pub message: String,
}

/// The outcome of a request: allowed or not, and why. Defaults to deny.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Decision {
    pub allowed: bool,
    /// In source order of the policies.
    pub determining: Vec<DeterminingPolicy>,
    /// In source order of the policies.
    pub errors: Vec<EvaluationError>,
}

impl Default for Decision {
    fn default() -> Self {
        Self::deny()
    }
}

impl Decision {
    /// The default: denied, no policy matched.
    pub fn deny() -> Decision {
        Decision {
            allowed: false,
            determining: Vec::new(),
            errors: Vec::new(),
        }
    }

    /// A one-line reason: ``allowed by policy `x` ``, ``denied by policy `y` `` or
    /// `no permit policy matched (default deny)`, followed by the first determining
    /// policy's `@reason` annotation when it has one.
    pub fn summary(&self) -> String {
        let wanted = if self.allowed {
            Effect::Permit
        } else {
            Effect::Forbid
        };
        let mut deciding = self.determining.iter().filter(|d| d.effect == wanted);
        let Some(first) = deciding.next() else {
            let mut out = "no permit policy matched (default deny)".to_owned();
            match self.errors.len() {
                0 => {}
                1 => out.push_str("; 1 policy failed to evaluate"),
                n => out.push_str(&format!("; {n} policies failed to evaluate")),
            }
            return out;
        };
        let verb = if self.allowed { "allowed" } else { "denied" };
        let mut out = format!("{verb} by policy `{}`", first.id);
        if let Some(reason) = first.annotations.get("reason") {
            out.push_str(": ");
            out.push_str(reason);
        }
        let more = deciding.count();
        if more > 0 {
            out.push_str(&format!(" (and {more} more)"));
        }
        out
    }
}

/// Evaluates one request for `principal` under `bundle`.
///
/// Malformed input is a [`RequestError`] (never an allow). The principal's pre-built
/// entities are used as they are; entities carried by the request are checked against
/// the schema and merged with them.
pub fn decide(
    bundle: &PolicyBundle,
    principal: &PrincipalEntities,
    input: &DecisionInput<'_>,
) -> Result<Decision, RequestError> {
    decide_with(bundle, principal, input, true)
}

/// [`decide`], with the fast validation of `fast.rs` on or off (the differential test
/// compares the two).
pub(crate) fn decide_with(
    bundle: &PolicyBundle,
    principal: &PrincipalEntities,
    input: &DecisionInput<'_>,
    fast: bool,
) -> Result<Decision, RequestError> {
    let Some(schema) = bundle.schema.as_ref() else {
        return Ok(Decision::deny());
    };
    let info = bundle.action(input.action)?;
    let action = &info.uid;
    let resource = bundle.resource(input.resource)?;
    let map = match input.context {
        None | Some(Value::Null) => None,
        Some(Value::Object(map)) => Some(map),
        Some(_) => return Err(RequestError::ContextNotObject),
    };
    let checked = if fast {
        fast_context(info, &principal.uid, &resource, map)
    } else {
        None
    };
    let request = match checked {
        // INVARIANT: the fast check accepted the request, so cedar's validation would
        // (see `fast.rs`); anything else goes through cedar's validation below.
        Some(context) => Request::new(
            principal.uid.clone(),
            action.clone(),
            resource,
            context,
            None,
        ),
        None => {
            let context = match (map, input.context) {
                (Some(map), Some(value)) => {
                    let plain = info
                        .context
                        .as_ref()
                        .filter(|c| c.plain)
                        .and_then(|_| plain_context(map));
                    match plain {
                        Some(context) => context,
                        None => Context::from_json_value(value.clone(), Some((schema, action)))
                            .map_err(|e| RequestError::InvalidContext {
                                action: input.action.to_owned(),
                                message: e.to_string(),
                            })?,
                    }
                }
                _ => Context::empty(),
            };
            Request::new(
                principal.uid.clone(),
                action.clone(),
                resource,
                context,
                Some(schema),
            )
        }
    }
    .map_err(|e| match e {
        RequestValidationError::InvalidContext(e) => RequestError::InvalidContext {
            action: input.action.to_owned(),
            message: context_mismatch(info, &e.context().to_string()),
        },
        e => RequestError::InvalidRequest {
            message: e.to_string(),
        },
    })?;

    let store = principal.store_for(bundle)?;
    let response = match input.entities {
        None | Some(Value::Null) => {
            bundle
                .authorizer
                .is_authorized(&request, &bundle.policies, store.entities())
        }
        Some(Value::Array(items)) => {
            let extra = request_entities(items, schema)?;
            let merged = store
                .entities()
                .clone()
                .add_entities(extra, None)
                .map_err(|e| RequestError::InvalidEntities {
                    message: e.to_string(),
                })?;
            bundle
                .authorizer
                .is_authorized(&request, &bundle.policies, &merged)
        }
        Some(_) => return Err(RequestError::EntitiesNotArray),
    };
    Ok(decision_from(bundle, &response))
}

/// A decision whose resource is another registered identity (delegation between agents,
/// `Warrant::Action::"delegate"`): the principal's and the resource's entities both come
/// from the registry (a request may not describe `Warrant` entities itself).
pub fn decide_between(
    bundle: &PolicyBundle,
    principal: &PrincipalEntities,
    resource: &PrincipalEntities,
    action: &str,
    context: Option<&Value>,
) -> Result<Decision, RequestError> {
    let Some(schema) = bundle.schema.as_ref() else {
        return Ok(Decision::deny());
    };
    let info = bundle.action(action)?;
    let context = match context {
        None | Some(Value::Null) => Context::empty(),
        Some(value @ Value::Object(_)) => {
            Context::from_json_value(value.clone(), Some((schema, &info.uid))).map_err(|e| {
                RequestError::InvalidContext {
                    action: action.to_owned(),
                    message: e.to_string(),
                }
            })?
        }
        Some(_) => return Err(RequestError::ContextNotObject),
    };
    let request = Request::new(
        principal.uid.clone(),
        info.uid.clone(),
        resource.uid.clone(),
        context,
        Some(schema),
    )
    .map_err(|e| RequestError::InvalidRequest {
        message: e.to_string(),
    })?;
    let store = principal.store_for(bundle)?;
    let base = store.entities();
    // Entities both identities share (their roles, their environment) are there already.
    let extra: Vec<Entity> = resource
        .entities
        .iter()
        .filter(|e| base.get(&e.uid()).is_none())
        .cloned()
        .collect();
    let merged =
        base.clone()
            .add_entities(extra, None)
            .map_err(|e| RequestError::InvalidEntities {
                message: e.to_string(),
            })?;
    let response = bundle
        .authorizer
        .is_authorized(&request, &bundle.policies, &merged);
    Ok(decision_from(bundle, &response))
}

/// The request's context when the fast check of `fast.rs` accepts the request (the
/// principal and resource types and the context `map`, `None` for the empty context);
/// `None` when cedar's validation has to decide.
pub(crate) fn fast_context(
    info: &ActionInfo,
    principal: &EntityUid,
    resource: &EntityUid,
    map: Option<&Map<String, Value>>,
) -> Option<Context> {
    let check = info.fast.as_ref()?;
    if !check.admits(principal.type_name(), resource.type_name(), map) {
        return None;
    }
    match map {
        None => Some(Context::empty()),
        Some(map) => plain_context(map),
    }
}

/// The context built straight from plain JSON, for an action whose context type is
/// plain (see `ContextType::plain`): the same value cedar's schema-directed parser
/// yields, without its cost. `None` for anything else (`null`, non-integer numbers,
/// `__entity`/`__extn` escapes): cedar's parser then decides, and reports any error.
pub(crate) fn plain_context(map: &Map<String, Value>) -> Option<Context> {
    Context::from_pairs(plain_pairs(map)?).ok()
}

fn plain_pairs(map: &Map<String, Value>) -> Option<Vec<(String, RestrictedExpression)>> {
    map.iter()
        .map(|(k, v)| {
            if k.starts_with("__") {
                return None;
            }
            Some((k.clone(), plain_value(v)?))
        })
        .collect()
}

fn plain_value(value: &Value) -> Option<RestrictedExpression> {
    match value {
        Value::Bool(b) => Some(RestrictedExpression::new_bool(*b)),
        Value::Number(n) => n.as_i64().map(RestrictedExpression::new_long),
        Value::String(s) => Some(RestrictedExpression::new_string(s.clone())),
        Value::Array(items) => items
            .iter()
            .map(plain_value)
            .collect::<Option<Vec<_>>>()
            .map(RestrictedExpression::new_set),
        Value::Object(map) => RestrictedExpression::new_record(plain_pairs(map)?).ok(),
        Value::Null => None,
    }
}

/// Longest context text quoted back in an error.
const CONTEXT_QUOTE_MAX_CHARS: usize = 200;

/// Says what the action expects, since cedar only says that the context is not valid.
fn context_mismatch(action: &ActionInfo, got: &str) -> String {
    let mut chars = got.chars();
    let mut got: String = chars.by_ref().take(CONTEXT_QUOTE_MAX_CHARS).collect();
    if chars.next().is_some() {
        got.push_str("...");
    }
    match &action.context {
        Some(expected) => format!("expected `{}`, got `{got}`", expected.text),
        None => format!("context `{got}` does not match the schema"),
    }
}

/// Parses request entities one by one (so the schema's action entities are not added
/// per request) and refuses the ones a request may not describe.
fn request_entities(
    items: &[serde_json::Value],
    schema: &cedar_policy::Schema,
) -> Result<Vec<Entity>, RequestError> {
    items
        .iter()
        .map(|item| {
            let entity = Entity::from_json_value(item.clone(), Some(schema)).map_err(|e| {
                RequestError::InvalidEntities {
                    message: e.to_string(),
                }
            })?;
            let uid = entity.uid();
            let ty = uid.type_name();
            // INVARIANT: the principal side comes from the registry and the action
            // hierarchy from the schema; a request that could describe either could
            // make itself a member of any role or action group.
            let reason = if ty.namespace_components().next() == Some("Warrant") {
                Some("the `Warrant` namespace is the registry's")
            } else if ty.basename() == "Action" {
                Some("actions come from the schema")
            } else {
                None
            };
            match reason {
                Some(reason) => Err(RequestError::ReservedEntity {
                    uid: uid.to_string(),
                    reason,
                }),
                None => Ok(entity),
            }
        })
        .collect()
}

pub(crate) fn decision_from(bundle: &PolicyBundle, response: &Response) -> Decision {
    let diagnostics = response.diagnostics();
    let mut determining: Vec<(usize, DeterminingPolicy)> = diagnostics
        .reason()
        .filter_map(|id| {
            // INVARIANT: every policy in the set has metadata (both are built together
            // at compile time); a policy without it cannot be reported and is dropped,
            // which can only turn an allow into a deny below.
            let meta = bundle.meta.get(id)?;
            Some((
                meta.index,
                DeterminingPolicy {
                    id: id.to_string(),
                    effect: meta.effect,
                    annotations: meta.annotations.clone(),
                },
            ))
        })
        .collect();
    determining.sort_by_key(|(index, _)| *index);
    let mut errors: Vec<(usize, EvaluationError)> = diagnostics
        .errors()
        .map(|e| match e {
            AuthorizationError::PolicyEvaluationError(e) => (
                bundle
                    .meta
                    .get(e.policy_id())
                    .map_or(usize::MAX, |m| m.index),
                EvaluationError {
                    policy_id: e.policy_id().to_string(),
                    message: e.inner().to_string(),
                },
            ),
        })
        .collect();
    errors.sort_by_key(|(index, _)| *index);

    let determining: Vec<DeterminingPolicy> = determining.into_iter().map(|(_, d)| d).collect();
    // Allowed only when cedar allows and the reasons agree: some permit, no forbid.
    let allowed = response.decision() == cedar_policy::Decision::Allow
        && determining.iter().any(|d| d.effect == Effect::Permit)
        && determining.iter().all(|d| d.effect == Effect::Permit);
    Decision {
        allowed,
        determining,
        errors: errors.into_iter().map(|(_, e)| e).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(id: &str, effect: Effect, reason: Option<&str>) -> DeterminingPolicy {
        DeterminingPolicy {
            id: id.into(),
            effect,
            annotations: reason
                .map(|r| BTreeMap::from([("reason".to_owned(), r.to_owned())]))
                .unwrap_or_default(),
        }
    }

    #[test]
    fn summaries() {
        assert_eq!(
            Decision::deny().summary(),
            "no permit policy matched (default deny)"
        );
        assert!(!Decision::default().allowed);
        let allowed = Decision {
            allowed: true,
            determining: vec![
                policy("a", Effect::Permit, Some("analysts read")),
                policy("b", Effect::Permit, None),
            ],
            errors: vec![],
        };
        assert_eq!(
            allowed.summary(),
            "allowed by policy `a`: analysts read (and 1 more)"
        );
        let denied = Decision {
            allowed: false,
            determining: vec![policy("f", Effect::Forbid, None)],
            errors: vec![EvaluationError {
                policy_id: "x".into(),
                message: "boom".into(),
            }],
        };
        assert_eq!(denied.summary(), "denied by policy `f`");
        let errored = Decision {
            errors: denied.errors.clone(),
            ..Decision::deny()
        };
        assert_eq!(
            errored.summary(),
            "no permit policy matched (default deny); 1 policy failed to evaluate"
        );
    }

    #[test]
    fn plain_context_is_what_cedars_parser_yields() {
        let schema = r#"namespace App {
          entity Document;
          type Ctx = { mfa?: Bool, risk: Long, tags?: Set<String>, nested?: { a: String } };
          action read appliesTo { principal: [Warrant::Identity], resource: [Document], context: Ctx };
        }"#;
        let bundle = PolicyBundle::compile(schema, "").unwrap();
        let info = bundle.action(r#"App::Action::"read""#).unwrap();
        assert!(info.context.as_ref().unwrap().plain);
        let cedar_schema = bundle.schema.as_ref().unwrap();
        for json in [
            serde_json::json!({ "mfa": true, "risk": 20 }),
            serde_json::json!({ "risk": -5, "tags": ["a", "b", "a"], "nested": { "a": "x" } }),
            serde_json::json!({ "risk": i64::MIN, "tags": [], "nested": { "a": "" } }),
            serde_json::json!({ "risk": 0, "mfa": false }),
        ] {
            let Value::Object(map) = &json else {
                unreachable!()
            };
            let cedar =
                Context::from_json_value(json.clone(), Some((cedar_schema, &info.uid))).unwrap();
            assert_eq!(plain_context(map), Some(cedar), "{json}");
        }
        for json in [
            serde_json::json!({ "risk": 1.5 }),
            serde_json::json!({ "risk": u64::MAX }),
            serde_json::json!({ "risk": null }),
            serde_json::json!({ "nested": { "__extn": { "fn": "ip", "arg": "10.0.0.1" } } }),
            serde_json::json!({ "__entity": { "type": "App::Document", "id": "x" } }),
        ] {
            let Value::Object(map) = &json else {
                unreachable!()
            };
            assert!(plain_context(map).is_none(), "{json}");
        }
    }

    #[test]
    fn decision_serializes_lowercase_effects() {
        let d = Decision {
            allowed: true,
            determining: vec![policy("a", Effect::Permit, None)],
            errors: vec![],
        };
        let json = serde_json::to_value(&d).unwrap();
        assert_eq!(json["determining"][0]["effect"], "permit");
    }
}
