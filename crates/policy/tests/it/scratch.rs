use std::str::FromStr;
use std::time::Instant;
use cedar_policy::*;
use serde_json::json;

fn time<T>(name: &str, n: u32, mut f: impl FnMut() -> T) {
    for _ in 0..n/10 { std::hint::black_box(f()); }
    let t = Instant::now();
    for _ in 0..n { std::hint::black_box(f()); }
    println!("{name}: {:?}", t.elapsed() / n);
}

#[test]
#[ignore]
fn parts() {
    let (b, _) = SchemaFragment::from_cedarschema_str(warrant_policy::BUILTIN_SCHEMA).unwrap();
    let (u, _) = SchemaFragment::from_cedarschema_str(crate::fixtures::SCHEMA).unwrap();
    let schema = Schema::from_schema_fragments([b, u]).unwrap();
    let action = EntityUid::from_str(r#"App::Action::"read""#).unwrap();
    let ctx = json!({"mfa": true, "risk": 20});
    let p = EntityUid::from_str(r#"Warrant::Identity::"agent-7""#).unwrap();
    let r = EntityUid::from_str(r#"App::Document::"q3""#).unwrap();
    time("uid parse", 20000, || EntityUid::from_str(r#"App::Document::"q3-report""#).unwrap());
    time("type parse", 20000, || EntityTypeName::from_str("App::Document").unwrap());
    time("ctx clone", 20000, || ctx.clone());
    time("ctx parse schema", 20000, || Context::from_json_value(ctx.clone(), Some((&schema, &action))).unwrap());
    time("ctx parse noschema", 20000, || Context::from_json_value(ctx.clone(), None).unwrap());
    let c = Context::from_json_value(ctx.clone(), Some((&schema, &action))).unwrap();
    time("request new schema", 20000, || Request::new(p.clone(), action.clone(), r.clone(), c.clone(), Some(&schema)).unwrap());
    time("request new none", 20000, || Request::new(p.clone(), action.clone(), r.clone(), c.clone(), None).unwrap());
    time("ctx validate", 20000, || c.validate(&schema, &action).unwrap());
    time("ctx from_pairs", 20000, || Context::from_pairs([("mfa".to_owned(), RestrictedExpression::new_bool(true)), ("risk".to_owned(), RestrictedExpression::new_long(20))]).unwrap());
    time("ctx from_pairs empty", 20000, || Context::from_pairs([]).unwrap());
    time("ctx empty", 20000, || Context::empty());
    let bundle = crate::fixtures::bundle();
    let pr = crate::fixtures::principal("agent-7", "prod", &["analyst"], &[]);
    let input = warrant_policy::DecisionInput { action: r#"App::Action::"read""#, resource: r#"App::Document::"q3-report""#, context: Some(&ctx), entities: None };
    time("decide", 20000, || warrant_policy::decide(&bundle, &pr, &input).unwrap());
}
