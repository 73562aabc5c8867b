//! Compiling schemas and policy sets: ids, and positioned diagnostics for every failure.

use warrant_policy::{check_syntax, Diagnostic, PolicyBundle, PolicyErrors, SourceKind};

use crate::fixtures::{POLICIES, SCHEMA};

fn errors(schema: &str, policies: &str) -> PolicyErrors {
    match PolicyBundle::compile(schema, policies) {
        Ok(b) => panic!("expected errors, compiled {:?}", b.policy_ids()),
        Err(e) => e,
    }
}

fn only(errs: &PolicyErrors) -> &Diagnostic {
    assert_eq!(errs.diagnostics.len(), 1, "{errs}");
    &errs.diagnostics[0]
}

#[test]
fn realistic_bundle_compiles_with_ids_in_source_order() {
    let bundle = PolicyBundle::compile(SCHEMA, POLICIES).unwrap();
    assert_eq!(
        bundle.policy_ids(),
        [
            "analysts-read",
            "writers-with-entitlement",
            "no-prod-deletes",
            "oncall-delete",
            "policy4"
        ]
    );
    assert_eq!(bundle.schema_text(), SCHEMA);
    assert_eq!(bundle.policies_text(), POLICIES);
    assert_eq!(check_syntax(POLICIES).unwrap(), bundle.policy_ids());
}

#[test]
fn json_schema_is_accepted() {
    let schema = r#"  {
      "App": {
        "entityTypes": { "Document": {} },
        "actions": {
          "read": { "appliesTo": { "principalTypes": ["Warrant::Identity"], "resourceTypes": ["Document"] } }
        }
      }
    }"#;
    let policies = r#"permit(principal, action == App::Action::"read", resource) when { principal.kind == "agent" };"#;
    let bundle = PolicyBundle::compile(schema, policies).unwrap();
    assert_eq!(bundle.policy_ids(), ["policy0"]);
}

#[test]
fn syntax_error_has_line_and_column() {
    let policies = "permit(principal, action, resource);\npermit(principal, action, resource)\n  when { principal.name == };\n";
    let errs = check_syntax(policies).unwrap_err();
    let d = &errs.diagnostics[0];
    assert_eq!(d.source, SourceKind::Policies);
    assert_eq!((d.line, d.column), (Some(3), Some(28)), "{d:?}");
    assert_eq!(d.snippet.as_deref(), Some("  when { principal.name == };"));
    assert!(d.to_string().starts_with("policies:3:28: "), "{d}");
    // the same through compile, which also validates the schema
    let errs = errors(SCHEMA, policies);
    assert_eq!(
        (errs.diagnostics[0].line, errs.diagnostics[0].column),
        (Some(3), Some(28))
    );
}

#[test]
fn every_syntax_error_is_reported() {
    let policies = "permit(principal, action, resource) when { 1 + };\npermit(principal, action, resource) when { && };\n";
    let errs = check_syntax(policies).unwrap_err();
    let lines: Vec<_> = errs.diagnostics.iter().map(|d| d.line).collect();
    assert_eq!(lines, [Some(1), Some(2)], "{errs}");
}

#[test]
fn type_error_is_a_validation_diagnostic_with_policy_id_and_line() {
    let policies = r#"@id("fine")
permit(principal, action == App::Action::"read", resource);

@id("typo")
permit(principal, action == App::Action::"read", resource)
when { principal.nosuchattr == "x" };
"#;
    let errs = errors(SCHEMA, policies);
    let d = only(&errs);
    assert_eq!(d.source, SourceKind::Policies);
    assert_eq!(d.policy_id.as_deref(), Some("typo"));
    assert_eq!(d.line, Some(6), "{d:?}");
    assert_eq!(d.column, Some(8), "{d:?}");
    assert!(d.message.contains("nosuchattr"), "{d:?}");
}

#[test]
fn unknown_entity_type_in_policy_is_refused() {
    let policies = r#"permit(principal in App::Team::"x", action, resource);"#;
    let d = only(&errors(SCHEMA, policies)).clone();
    assert_eq!(d.policy_id.as_deref(), Some("policy0"));
    assert_eq!(d.line, Some(1));
    assert!(d.message.contains("App::Team"), "{d:?}");
}

#[test]
fn schema_syntax_error_is_a_schema_diagnostic_with_position() {
    let schema = "namespace App {\n  entity Document = {\n    classification String,\n  };\n}\n";
    let errs = errors(schema, "");
    let d = &errs.diagnostics[0];
    assert_eq!(d.source, SourceKind::Schema);
    assert_eq!(d.line, Some(3), "{d:?}");
    assert!(d.to_string().starts_with("schema:3:"), "{d}");
}

#[test]
fn schema_with_undeclared_type_is_refused() {
    let schema = "namespace App {\n  entity Document = { owner: Team };\n}\n";
    let errs = errors(schema, "");
    let d = &errs.diagnostics[0];
    assert_eq!(d.source, SourceKind::Schema);
    assert!(d.message.contains("Team"), "{d:?}");
}

#[test]
fn schema_may_not_redefine_builtin_types() {
    let schema = "namespace Warrant {\n  entity Identity;\n}\n";
    let d = &errors(schema, "").diagnostics[0];
    assert_eq!(d.source, SourceKind::Schema);
    assert!(d.message.contains("Identity"), "{d:?}");
}

#[test]
fn schema_and_policy_errors_are_reported_together() {
    let errs = errors("namespace App {", "permit(");
    let sources: Vec<_> = errs.diagnostics.iter().map(|d| d.source.clone()).collect();
    assert!(sources.contains(&SourceKind::Schema), "{errs}");
    assert!(sources.contains(&SourceKind::Policies), "{errs}");
}

#[test]
fn duplicate_id_is_refused() {
    let policies = r#"@id("a")
permit(principal, action, resource);
@id("a")
forbid(principal, action, resource);
"#;
    for errs in [
        check_syntax(policies).unwrap_err(),
        errors(SCHEMA, policies),
    ] {
        let d = only(&errs);
        assert_eq!(d.policy_id.as_deref(), Some("a"));
        assert_eq!((d.line, d.column), (Some(3), Some(1)), "{d:?}");
        assert!(d.message.contains("duplicate policy id `a`"), "{d:?}");
        assert!(d.message.contains("line 1"), "{d:?}");
    }
}

#[test]
fn explicit_id_colliding_with_a_default_id_is_refused() {
    let policies = "@id(\"policy1\")\npermit(principal, action, resource);\npermit(principal, action, resource);\n";
    let d = only(&check_syntax(policies).unwrap_err()).clone();
    assert_eq!(d.policy_id.as_deref(), Some("policy1"));
    assert_eq!(d.line, Some(3));
}

#[test]
fn empty_id_is_refused() {
    let errs = check_syntax("@id(\"\") permit(principal, action, resource);").unwrap_err();
    assert!(only(&errs).message.contains("must not be empty"));
}

#[test]
fn templates_are_refused() {
    let errs = check_syntax("permit(principal == ?principal, action, resource);").unwrap_err();
    let d = only(&errs);
    assert!(d.message.contains("templates are not supported"), "{d:?}");
    assert_eq!(d.line, Some(1));
}

#[test]
fn errors_display_every_diagnostic() {
    let errs = errors(SCHEMA, "@id(\"a\") permit(principal, action, resource);\n@id(\"a\") permit(principal, action, resource);\n@id(\"a\") permit(principal, action, resource);");
    assert_eq!(errs.diagnostics.len(), 2);
    assert_eq!(errs.to_string().matches("duplicate policy id").count(), 2);
    assert_eq!(errs.to_string().matches("; ").count(), 1);
}

#[test]
fn diagnostics_serialize_with_lowercase_source() {
    let errs = check_syntax("permit(").unwrap_err();
    let json = serde_json::to_value(&errs.diagnostics[0]).unwrap();
    assert_eq!(json["source"], "policies");
    assert_eq!(json["line"], 1);
}

#[test]
fn json_schema_error_has_position() {
    let schema = "{\n  \"App\": {\n    \"entityTypes\": { \"Document\": 5 }\n  }\n}";
    let d = &errors(schema, "").diagnostics[0];
    assert_eq!(d.source, SourceKind::Schema);
    assert_eq!(d.line, Some(3), "{d:?}");
    assert_eq!(
        d.snippet.as_deref(),
        Some(r#"    "entityTypes": { "Document": 5 }"#)
    );
}
