//! Request validation without cedar's schema pass, for the common case.
//!
//! `Request::new(.., Some(schema))` checks that the principal and resource types are
//! ones the action applies to and that the context has the action's context type. For an
//! action whose context type is plain (see `context_types`), [`FastCheck`] does the same
//! checks directly on the request's wire form, cheaply; `decide` then builds the request
//! without the schema. Whatever the fast check does not accept goes through cedar's
//! validation as before, so errors are reported by the same code.
//!
//! INVARIANT: the fast check accepts only requests cedar's validation accepts. It is
//! built from cedar's own schema (the `appliesTo` types) and from this crate's reading
//! of the context type, and that reading is used only after cedar agrees with it on
//! witnesses at compile time (see [`FastCheck::agrees_with`]). A differential test
//! compares the two on many random requests.

use std::collections::HashSet;

use cedar_policy::{EntityId, EntityTypeName, EntityUid, Request, Schema};
use serde_json::{Map, Value};

use crate::context_types::{RecordShape, Shape};
use crate::decision::plain_context;

/// The entity id of the uids the compile-time agreement check builds.
const PROBE_ID: &str = "warrant-validation-probe";

/// What a request for one action must satisfy to skip cedar's validation pass.
#[derive(Debug)]
pub(crate) struct FastCheck {
    /// The principal types the action applies to, except enumerated and external ones
    /// (cedar also checks an enumerated type's entity id).
    principals: Vec<EntityTypeName>,
    /// Likewise for the resource.
    resources: Vec<EntityTypeName>,
    /// The action's context type.
    context: RecordShape,
}

impl FastCheck {
    /// The fast check for `action`, or `None` when it cannot be used for this action:
    /// the context type is not plain, the action applies to no ordinary principal or
    /// resource type, or cedar does not agree with it (see [`Self::agrees_with`]).
    ///
    /// `ordinary` names the entity types declared neither enumerated nor external.
    pub(crate) fn build(
        schema: &Schema,
        action: &EntityUid,
        context: Option<&Shape>,
        ordinary: &HashSet<String>,
    ) -> Option<FastCheck> {
        let Some(Shape::Record(context)) = context else {
            return None;
        };
        let keep = |ty: &&EntityTypeName| ordinary.contains(&ty.to_string());
        let check = FastCheck {
            principals: schema
                .principals_for_action(action)?
                .filter(keep)
                .cloned()
                .collect(),
            resources: schema
                .resources_for_action(action)?
                .filter(keep)
                .cloned()
                .collect(),
            context: context.clone(),
        };
        check.agrees_with(schema, action).then_some(check)
    }

    /// Whether a request with these principal and resource types and this context
    /// (`None`: the empty context) passes the action's validation.
    pub(crate) fn admits(
        &self,
        principal: &EntityTypeName,
        resource: &EntityTypeName,
        context: Option<&Map<String, Value>>,
    ) -> bool {
        self.principals.contains(principal)
            && self.resources.contains(resource)
            && match context {
                None => self.context.required == 0,
                Some(map) => self.context.admits(map),
            }
    }

    /// Whether cedar's validation accepts what this check describes:
    /// - a request for each principal type and for each resource type (with a full
    ///   context, every attribute present at every level);
    /// - for each record type in the context, the full context except that this
    ///   record has only its required attributes.
    ///
    /// When cedar accepts all of them, every context this check admits has cedar's
    /// type too: each `Bool`, `Long` or `String` here is one in cedar's type (only that
    /// type holds a witness of that kind), each set's element type admits no more than
    /// cedar's, each record has no attribute cedar does not know (the full witnesses),
    /// and every attribute cedar requires is required here (the minimal ones).
    /// Attributes cedar has but this check lacks, or closed records cedar declares
    /// open, only make this check stricter.
    fn agrees_with(&self, schema: &Schema, action: &EntityUid) -> bool {
        let (Some(p0), Some(r0)) = (self.principals.first(), self.resources.first()) else {
            return false;
        };
        let shape = Shape::Record(self.context.clone());
        let mut records = 0;
        let full = witness(&shape, None, &mut records);
        let accepts = |principal: &EntityTypeName, resource: &EntityTypeName, ctx: &Value| {
            let Value::Object(map) = ctx else {
                return false;
            };
            if !self.admits(principal, resource, Some(map)) {
                return false;
            }
            let Some(context) = plain_context(map) else {
                return false;
            };
            Request::new(
                probe(principal),
                action.clone(),
                probe(resource),
                context,
                Some(schema),
            )
            .is_ok()
        };
        self.principals.iter().all(|p| accepts(p, r0, &full))
            && self.resources.iter().all(|r| accepts(p0, r, &full))
            && (0..records).all(|minimal| {
                let ctx = witness(&shape, Some(minimal), &mut 0);
                accepts(p0, r0, &ctx)
            })
    }
}

fn probe(ty: &EntityTypeName) -> EntityUid {
    EntityUid::from_type_name_and_id(ty.clone(), EntityId::new(PROBE_ID))
}

/// A JSON value of type `shape`: every attribute present, except in the record numbered
/// `minimal` (records numbered in pre-order by `next`), which has only its required ones.
fn witness(shape: &Shape, minimal: Option<usize>, next: &mut usize) -> Value {
    match shape {
        Shape::Bool => Value::Bool(true),
        Shape::Long => Value::from(0),
        Shape::String => Value::from("w"),
        Shape::Set(element) => Value::Array(vec![witness(element, minimal, next)]),
        Shape::Record(record) => {
            let this = *next;
            *next += 1;
            Value::Object(
                record
                    .attrs
                    .iter()
                    .filter(|a| a.required || minimal != Some(this))
                    .map(|a| (a.name.clone(), witness(&a.shape, minimal, next)))
                    .collect(),
            )
        }
    }
}

#[cfg(test)]
mod tests;
