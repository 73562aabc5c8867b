//! The principal side of every decision: a registered identity as Cedar entities, built
//! once per registry change and reused by every decision for that identity.

use arc_swap::ArcSwapOption;
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use cedar_policy::{Entities, Entity, EntityId, EntityTypeName, EntityUid, RestrictedExpression};

use crate::bundle::PolicyBundle;
use crate::decision::RequestError;

/// Facts about a registered identity, from the registry (the caller owns the registry).
#[derive(Debug, Clone)]
pub struct PrincipalFacts {
    /// Stable identity id; becomes `Warrant::Identity::"<id>"`.
    pub id: String,
    pub name: String,
    /// What the identity is (agent, AI tool, service account, workload).
    pub kind: String,
    /// Becomes the parent `Warrant::Environment::"<environment>"`.
    pub environment: String,
    /// The accountable human; becomes `Warrant::Human::"<owner>"`.
    pub owner: String,
    pub spiffe_id: String,
    /// Each becomes a parent `Warrant::Role::"<role>"`.
    pub roles: Vec<String>,
    pub entitlements: Vec<String>,
}

/// Why a principal's entities could not be built.
#[derive(Debug, Clone, thiserror::Error, miette::Diagnostic)]
pub enum EntityError {
    /// A required fact is empty.
    #[error("identity `{field}` must not be empty")]
    EmptyField {
        /// Which fact.
        field: &'static str,
    },
    /// One of the roles is empty.
    #[error("role names must not be empty")]
    EmptyRole,
    /// Cedar refused the entities.
    #[error("cannot build entities for identity `{id}`: {message}")]
    Cedar {
        /// The identity id.
        id: String,
        /// Cedar's message.
        message: String,
    },
}

/// The schema's action entities merged into a principal's store, for one bundle.
pub(crate) struct WithActions {
    generation: u64,
    entities: Entities,
}

/// Pre-built Cedar entities for one principal: `Warrant::Identity::"<id>"` with its
/// attributes, its parents (`Warrant::Role::"<role>"` for each role and
/// `Warrant::Environment::"<environment>"`), those parent entities, and
/// `Warrant::Human::"<owner>"`.
pub struct PrincipalEntities {
    pub(crate) uid: EntityUid,
    pub(crate) entities: Entities,
    /// For bundles whose schema has action groups: this store plus the action entities,
    /// built on first use with a bundle and reused until a different bundle is used.
    /// Lock-free cache (the decision path takes no lock).
    with_actions: ArcSwapOption<WithActions>,
}

impl fmt::Debug for PrincipalEntities {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PrincipalEntities")
            .field("uid", &self.uid.to_string())
            .field("entities", &self.entities.len())
            .finish_non_exhaustive()
    }
}

impl PrincipalEntities {
    /// The principal's Cedar uid, e.g. `Warrant::Identity::"agent-7"`.
    pub fn uid_string(&self) -> String {
        self.uid.to_string()
    }

    /// The entity store for a decision under `bundle`.
    pub(crate) fn store_for(&self, bundle: &PolicyBundle) -> Result<Store<'_>, RequestError> {
        let Some(actions) = bundle.action_entities.as_ref() else {
            return Ok(Store::Base(&self.entities));
        };
        if let Some(hit) = self
            .with_actions
            .load_full()
            .filter(|c| c.generation == bundle.generation)
        {
            return Ok(Store::WithActions(hit));
        }
        let entities = self
            .entities
            .clone()
            .add_entities(actions.iter().cloned(), None)
            .map_err(|e| RequestError::InvalidEntities {
                message: e.to_string(),
            })?;
        let built = Arc::new(WithActions {
            generation: bundle.generation,
            entities,
        });
        self.with_actions.store(Some(Arc::clone(&built)));
        Ok(Store::WithActions(built))
    }
}

/// An entity store borrowed from, or shared with, a [`PrincipalEntities`].
pub(crate) enum Store<'a> {
    Base(&'a Entities),
    WithActions(Arc<WithActions>),
}

impl Store<'_> {
    pub(crate) fn entities(&self) -> &Entities {
        match self {
            Self::Base(e) => e,
            Self::WithActions(w) => &w.entities,
        }
    }
}

fn type_name(name: &str, id: &str) -> Result<EntityTypeName, EntityError> {
    EntityTypeName::from_str(name).map_err(|e| EntityError::Cedar {
        id: id.to_owned(),
        message: e.to_string(),
    })
}

/// Builds the Cedar entities of one principal.
pub fn build_principal(facts: &PrincipalFacts) -> Result<PrincipalEntities, EntityError> {
    for (field, value) in [
        ("id", &facts.id),
        ("environment", &facts.environment),
        ("owner", &facts.owner),
    ] {
        if value.trim().is_empty() {
            return Err(EntityError::EmptyField { field });
        }
    }
    if facts.roles.iter().any(|r| r.trim().is_empty()) {
        return Err(EntityError::EmptyRole);
    }
    let id = facts.id.as_str();
    let uid_of = |ty: &EntityTypeName, eid: &str| {
        EntityUid::from_type_name_and_id(ty.clone(), EntityId::new(eid))
    };
    let identity_type = type_name("Warrant::Identity", id)?;
    let role_type = type_name("Warrant::Role", id)?;
    let environment_type = type_name("Warrant::Environment", id)?;
    let human_type = type_name("Warrant::Human", id)?;

    let uid = uid_of(&identity_type, id);
    let owner = uid_of(&human_type, &facts.owner);
    let environment = uid_of(&environment_type, &facts.environment);
    let roles: HashSet<EntityUid> = facts.roles.iter().map(|r| uid_of(&role_type, r)).collect();

    let string = |s: &String| RestrictedExpression::new_string(s.clone());
    let attrs = HashMap::from([
        ("name".to_owned(), string(&facts.name)),
        ("kind".to_owned(), string(&facts.kind)),
        ("environment".to_owned(), string(&facts.environment)),
        (
            "owner".to_owned(),
            RestrictedExpression::new_entity_uid(owner.clone()),
        ),
        ("spiffe_id".to_owned(), string(&facts.spiffe_id)),
        (
            "entitlements".to_owned(),
            RestrictedExpression::new_set(facts.entitlements.iter().map(string)),
        ),
    ]);
    let mut parents = roles;
    parents.insert(environment.clone());
    let cedar_err = |message: String| EntityError::Cedar {
        id: id.to_owned(),
        message,
    };
    let identity =
        Entity::new(uid.clone(), attrs, parents).map_err(|e| cedar_err(e.to_string()))?;

    // Only the identity itself is stored: its roles and environment are its ancestors
    // (`principal in Warrant::Role::"x"` reads the ancestor set) and its owner is an
    // entity reference; none of those types has attributes, so entities for them would
    // change no decision and would cost memory per identity (x100,000).
    let all = [identity];
    let entities = Entities::from_entities(all, None).map_err(|e| cedar_err(e.to_string()))?;
    Ok(PrincipalEntities {
        uid,
        entities,
        with_actions: ArcSwapOption::empty(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use cedar_policy::{Schema, SchemaFragment};

    fn facts() -> PrincipalFacts {
        PrincipalFacts {
            id: "agent-7".into(),
            name: "triage-bot".into(),
            kind: "agent".into(),
            environment: "prod".into(),
            owner: "alice".into(),
            spiffe_id: "spiffe://example.org/prod/triage-bot".into(),
            roles: vec!["analyst".into(), "oncall".into(), "analyst".into()],
            entitlements: vec!["docs:read".into()],
        }
    }

    #[test]
    fn principal_entities_conform_to_the_builtin_schema() {
        let p = build_principal(&facts()).unwrap();
        assert_eq!(p.uid_string(), r#"Warrant::Identity::"agent-7""#);
        // only the identity: roles and environment are ancestors by uid
        assert_eq!(p.entities.len(), 1);
        let (fragment, _) = SchemaFragment::from_cedarschema_str(crate::BUILTIN_SCHEMA).unwrap();
        let schema = Schema::from_schema_fragments([fragment]).unwrap();
        Entities::from_entities(p.entities.iter().cloned(), Some(&schema)).unwrap();
        let role: EntityUid = r#"Warrant::Role::"oncall""#.parse().unwrap();
        let env: EntityUid = r#"Warrant::Environment::"prod""#.parse().unwrap();
        let ancestors: Vec<_> = p.entities.ancestors(&p.uid).unwrap().collect();
        assert!(ancestors.contains(&&role));
        assert!(ancestors.contains(&&env));
    }

    #[test]
    fn empty_facts_are_refused() {
        let mut f = facts();
        f.owner = " ".into();
        assert!(matches!(
            build_principal(&f),
            Err(EntityError::EmptyField { field: "owner" })
        ));
        let mut f = facts();
        f.roles.push(String::new());
        assert!(matches!(build_principal(&f), Err(EntityError::EmptyRole)));
    }

    #[test]
    fn principal_entities_are_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<PrincipalEntities>();
        assert_send_sync::<PolicyBundle>();
    }
}
