//! A realistic schema, policy set and principals shared by the tests.

use warrant_policy::{build_principal, PolicyBundle, PrincipalEntities, PrincipalFacts};

pub const SCHEMA: &str = r#"
namespace App {
  entity Document = {
    classification: String,
    owner_env: String,
  };
  entity Folder;
  type RequestContext = {
    mfa?: Bool,
    risk: Long,
  };
  action read, write, delete appliesTo {
    principal: [Warrant::Identity],
    resource: [Document],
    context: RequestContext,
  };
}
"#;

pub const POLICIES: &str = r#"
@id("analysts-read")
@reason("analysts may read documents at low risk")
permit(principal in Warrant::Role::"analyst", action == App::Action::"read", resource)
when { context.risk < 50 };

@id("writers-with-entitlement")
permit(principal, action == App::Action::"write", resource)
when { principal.entitlements.contains("docs:write") && context has mfa && context.mfa };

@id("no-prod-deletes")
@reason("nobody deletes from prod")
forbid(principal in Warrant::Environment::"prod", action == App::Action::"delete", resource);

@id("oncall-delete")
permit(principal in Warrant::Role::"oncall", action == App::Action::"delete", resource);

// reads the resource's attributes: needs resource entities in the request
permit(principal, action == App::Action::"read", resource)
when { resource.classification == "public" && resource.owner_env == principal.environment };
"#;

pub fn bundle() -> PolicyBundle {
    PolicyBundle::compile(SCHEMA, POLICIES).unwrap()
}

pub fn facts(id: &str, environment: &str, roles: &[&str], entitlements: &[&str]) -> PrincipalFacts {
    PrincipalFacts {
        id: id.into(),
        name: format!("{id}-name"),
        kind: "agent".into(),
        environment: environment.into(),
        owner: "alice".into(),
        spiffe_id: format!("spiffe://example.org/{environment}/{id}"),
        roles: roles.iter().map(|r| (*r).to_owned()).collect(),
        entitlements: entitlements.iter().map(|e| (*e).to_owned()).collect(),
    }
}

pub fn principal(
    id: &str,
    environment: &str,
    roles: &[&str],
    entitlements: &[&str],
) -> PrincipalEntities {
    build_principal(&facts(id, environment, roles, entitlements)).unwrap()
}
