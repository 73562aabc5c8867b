//! The fast check against cedar's validation: many random requests, with the fast path
//! on and off, and against cedar alone (its schema-directed context parser and
//! `Request::new` with the schema).

use std::collections::BTreeMap;
use std::str::FromStr;

use cedar_policy::{Context, EntityUid, Request};
use serde_json::{json, Map, Value};

use super::*;
use crate::bundle::PolicyBundle;
use crate::context_types::AttrShape;
use crate::decision::{decide_with, decision_from, fast_context, DecisionInput};
use crate::principal::{build_principal, PrincipalEntities, PrincipalFacts};

const SCHEMA: &str = r#"
namespace App {
  entity Folder;
  entity Document in [Folder];
  entity Other;
  entity Color enum ["red", "green"];
  type Inner = { level: Long, labels?: Set<String> };
  type Ctx = { mfa?: Bool, risk: Long, tags?: Set<String>, nested?: { a: String, b?: Long } };
  action read, list appliesTo {
    principal: [Warrant::Identity],
    resource: [Document, Folder],
    context: Ctx,
  };
  action write appliesTo {
    principal: [Warrant::Identity, Other],
    resource: [Document],
    context: {
      deep: { inner: Inner, flags: Set<Bool> },
      counts?: Set<Long>,
      name: String,
      "odd key"?: String,
    },
  };
  action paint appliesTo {
    principal: [Warrant::Identity],
    resource: [Color, Document],
    context: { grid?: Set<Set<Long>>, items?: Set<Inner>, nums: Set<Long> },
  };
  action open appliesTo { principal: [Warrant::Identity], resource: [Document] };
  action touch appliesTo { principal: [Warrant::Identity], resource: [Folder], context: {} };
  action share appliesTo {
    principal: [Warrant::Identity],
    resource: [Document],
    context: { who: Other, ip?: ipaddr, risk: Long },
  };
}
action top appliesTo {
  principal: [Warrant::Identity],
  resource: [App::Document],
  context: { n?: Long, s?: String, r?: { x?: Bool } },
};
"#;

const POLICIES: &str = r#"
@id("read-low-risk")
permit(principal, action in [App::Action::"read", App::Action::"list"], resource)
when { context.risk < 50 };
@id("read-forbid")
forbid(principal, action == App::Action::"read", resource)
when { context.risk > 80 || (context has nested && context.nested.a == "block") };
@id("read-overflow")
forbid(principal, action == App::Action::"read", resource)
when { context.risk + 1 == 0 };
@id("list-tags")
forbid(principal, action == App::Action::"list", resource)
when { context has tags && context.tags.contains("secret") };
@id("list-mfa")
permit(principal, action == App::Action::"list", resource)
when { context has mfa && context.mfa };
@id("nested-b")
forbid(principal, action == App::Action::"list", resource)
when { context has nested && context.nested has b && context.nested.b > 100 };
@id("write-deep")
permit(principal, action == App::Action::"write", resource)
when { context.deep.inner.level > 3 && context.deep.flags.contains(true) };
@id("write-forbid")
forbid(principal, action == App::Action::"write", resource)
when { context.name like "*evil*" || (context has counts && context.counts.contains(0)) };
@id("write-labels")
forbid(principal, action == App::Action::"write", resource)
when { context.deep.inner has labels && context.deep.inner.labels.contains("🦀") };
@id("paint")
permit(principal, action == App::Action::"paint", resource)
when { context.nums.containsAny([1, 2, 3]) };
@id("paint-forbid")
forbid(principal, action == App::Action::"paint", resource)
when { context has grid && context.grid.contains([7]) };
@id("open")
permit(principal, action == App::Action::"open", resource);
@id("touch")
permit(principal in Warrant::Role::"analyst", action == App::Action::"touch", resource);
@id("share")
permit(principal, action == App::Action::"share", resource) when { context.risk < 10 };
@id("top")
permit(principal, action == Action::"top", resource) when { context has n && context.n > 0 };
@id("top-forbid")
forbid(principal, action == Action::"top", resource)
when { (context has s && context.s == "ünïcödé") || (context has r && context.r has x && context.r.x) };
"#;

const ACTIONS: [&str; 9] = [
    r#"App::Action::"read""#,
    r#"App::Action::"list""#,
    r#"App::Action::"write""#,
    r#"App::Action::"paint""#,
    r#"App::Action::"open""#,
    r#"App::Action::"touch""#,
    // its context type is not plain: never fast
    r#"App::Action::"share""#,
    r#"Action::"top""#,
    r#"App::Action::"read""#,
];

const PRINCIPALS: [&str; 6] = [
    r#"Warrant::Identity::"agent-7""#,
    r#"Warrant::Identity::"agent-7""#,
    r#"App::Other::"o""#,
    r#"App::Document::"d""#,
    r#"Warrant::Role::"analyst""#,
    r#"App::Nope::"n""#,
];

const RESOURCES: [&str; 10] = [
    r#"App::Document::"q3-report""#,
    r#"App::Document::"ünï""#,
    r#"App::Folder::"f""#,
    r#"App::Color::"red""#,
    r#"App::Color::"purple""#,
    r#"App::Other::"o""#,
    r#"Warrant::Identity::"x""#,
    r#"App::Nope::"z""#,
    r#"App::Document::"q3-report""#,
    r#"App::Folder::"f""#,
];

/// Resources of the types `action` applies to.
fn valid_resources(action: &str) -> &'static [&'static str] {
    match action {
        r#"App::Action::"read""# | r#"App::Action::"list""# => {
            &[r#"App::Document::"q3-report""#, r#"App::Folder::"f""#]
        }
        r#"App::Action::"paint""# => &[
            r#"App::Document::"q3-report""#,
            r#"App::Color::"red""#,
            r#"App::Color::"green""#,
        ],
        r#"App::Action::"touch""# => &[r#"App::Folder::"f""#],
        _ => &[r#"App::Document::"q3-report""#, r#"App::Document::"ünï""#],
    }
}

/// splitmix64: deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// True with probability `percent`/100.
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }

    fn pick<T: Clone>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())].clone()
    }
}

const STRINGS: [&str; 12] = [
    "",
    "a",
    "block",
    "secret",
    "an evil one",
    "ünïcödé",
    "日本語",
    "🦀",
    "x\u{0}y",
    "quote\"s and \\ back",
    "  ",
    "__entity",
];

fn long(rng: &mut Rng) -> Value {
    match rng.below(4) {
        0 => json!(rng.pick(&[i64::MAX, i64::MIN, i64::MAX - 1, i64::MIN + 1])),
        1 => json!(rng.next() as i64),
        _ => json!(rng.pick(&[0, 1, -1, 2, 3, 4, 7, 49, 50, 51, 80, 81, 100, 101])),
    }
}

/// A value that is the wrong type for most shapes, or not plain JSON at all.
fn odd_value(rng: &mut Rng) -> Value {
    match rng.below(22) {
        0 => Value::Null,
        1 => json!(1.5),
        2 => json!(2.0),
        3 => json!(-0.0),
        4 => json!(1e300),
        5 => json!(i64::MAX as u64 + 1),
        6 => json!(u64::MAX),
        7 => json!(rng.pick(&STRINGS)),
        8 => json!(rng.chance(50)),
        9 => json!([]),
        10 => json!([1, "a"]),
        11 => json!([true, 1]),
        12 => json!(["a", null]),
        13 => json!({}),
        14 => json!({ "__entity": { "type": "App::Other", "id": "o" } }),
        15 => json!({ "__extn": { "fn": "ip", "arg": "10.0.0.1" } }),
        16 => json!({ "type": "App::Other", "id": "o" }),
        17 => json!([[1], [2, 3]]),
        18 => json!([{ "level": 1 }]),
        19 => json!({ "a": "x" }),
        20 => json!("5"),
        _ => long(rng),
    }
}

const EXTRA_KEYS: [&str; 9] = [
    "extra", "Risk", "risk ", "__entity", "mfa2", "ünï", "", "level", "a",
];

/// A value shaped like `shape`, with random damage at a rate of `mutate` percent per
/// node, and records sometimes missing or gaining attributes.
fn generate(shape: &Shape, rng: &mut Rng, mutate: u64) -> Value {
    if rng.chance(mutate) {
        return odd_value(rng);
    }
    match shape {
        Shape::Bool => json!(rng.chance(50)),
        Shape::Long => long(rng),
        Shape::String => {
            if rng.chance(20) {
                let n = rng.next();
                json!(format!("s{n}"))
            } else {
                json!(rng.pick(&STRINGS))
            }
        }
        Shape::Set(element) => {
            let len = rng.pick(&[0, 1, 1, 2, 3, 5]);
            Value::Array((0..len).map(|_| generate(element, rng, mutate)).collect())
        }
        Shape::Record(record) => Value::Object(generate_record(record, rng, mutate)),
    }
}

fn generate_record(record: &RecordShape, rng: &mut Rng, mutate: u64) -> Map<String, Value> {
    let mut map = Map::new();
    for AttrShape {
        name,
        required,
        shape,
    } in &record.attrs
    {
        let keep = if *required {
            !rng.chance(mutate.min(50) / 2 + 1)
        } else {
            rng.chance(50)
        };
        if keep {
            map.insert(name.clone(), generate(shape, rng, mutate));
        }
    }
    if rng.chance(mutate.min(50) / 2 + 1) {
        let key = rng.pick(&EXTRA_KEYS).to_owned();
        let value = if rng.chance(50) {
            long(rng)
        } else {
            odd_value(rng)
        };
        map.insert(key, value);
    }
    map
}

/// The wire context for one case: usually an object generated from the action's type.
fn context_for(shape: Option<&Shape>, rng: &mut Rng) -> Option<Value> {
    let fallback = Shape::Record(RecordShape {
        attrs: vec![
            AttrShape {
                name: "risk".into(),
                required: true,
                shape: Shape::Long,
            },
            AttrShape {
                name: "who".into(),
                required: true,
                shape: Shape::String,
            },
        ],
        required: 2,
    });
    match rng.below(100) {
        0..=2 => None,
        3..=4 => Some(Value::Null),
        5..=6 => Some(odd_value(rng)),
        _ => {
            let mutate = rng.pick(&[0, 0, 2, 5, 15]);
            Some(generate(shape.unwrap_or(&fallback), rng, mutate))
        }
    }
}

fn principals() -> Vec<PrincipalEntities> {
    PRINCIPALS
        .iter()
        .map(|uid| {
            let mut p = build_principal(&PrincipalFacts {
                id: "agent-7".into(),
                name: "bot".into(),
                kind: "agent".into(),
                environment: "prod".into(),
                owner: "alice".into(),
                spiffe_id: "spiffe://example.org/prod/bot".into(),
                roles: vec!["analyst".into()],
                entitlements: vec![],
            })
            .unwrap();
            p.uid = EntityUid::from_str(uid).unwrap();
            p
        })
        .collect()
}

/// Cedar alone: its schema-directed context parser and `Request::new` with the schema.
fn cedar_request(
    bundle: &PolicyBundle,
    principal: &EntityUid,
    action: &EntityUid,
    resource: &EntityUid,
    context: Option<&Value>,
) -> Option<Request> {
    let schema = bundle.schema.as_ref().unwrap();
    let context = match context {
        None | Some(Value::Null) => Context::empty(),
        Some(value @ Value::Object(_)) => {
            Context::from_json_value(value.clone(), Some((schema, action))).ok()?
        }
        Some(_) => return None,
    };
    Request::new(
        principal.clone(),
        action.clone(),
        resource.clone(),
        context,
        Some(schema),
    )
    .ok()
}

#[derive(Default, Debug)]
struct Tally {
    cases: usize,
    fast: usize,
    rejected_by_both: usize,
    cedar_only: usize,
    allowed: usize,
    denied_by_forbid: usize,
    with_errors: usize,
}

/// Checks one case; returns whether the fast check accepted it.
fn check_case(
    bundle: &PolicyBundle,
    principal: &PrincipalEntities,
    action: &str,
    resource: &str,
    context: Option<&Value>,
    tally: &mut Tally,
) {
    let what = || {
        format!(
            "principal {}, action {action}, resource {resource}, context {}",
            principal.uid,
            context.map_or_else(|| "none".to_owned(), Value::to_string)
        )
    };
    tally.cases += 1;
    let info = bundle.action(action).unwrap();
    let resource_uid = EntityUid::from_str(resource).unwrap();
    let map = match context {
        Some(Value::Object(map)) => Some(map),
        _ => None,
    };
    let object_or_none = matches!(context, None | Some(Value::Null | Value::Object(_)));

    // 1. The fast check against cedar's validation of the very context it would build
    // (what the fast path skips), and against cedar alone.
    let fast = if object_or_none {
        fast_context(info, &principal.uid, &resource_uid, map)
    } else {
        None
    };
    let schema = bundle.schema.as_ref().unwrap();
    let plain = match context {
        None | Some(Value::Null) => Some(Context::empty()),
        Some(Value::Object(map)) => plain_context(map),
        Some(_) => None,
    };
    let cedar_on_plain = plain.as_ref().map(|ctx| {
        Request::new(
            principal.uid.clone(),
            info.uid.clone(),
            resource_uid.clone(),
            ctx.clone(),
            Some(schema),
        )
        .is_ok()
    });
    let cedar = cedar_request(bundle, &principal.uid, &info.uid, &resource_uid, context);
    if let Some(ctx) = &fast {
        assert!(cedar.is_some(), "fast accepts, cedar rejects: {}", what());
        assert_eq!(cedar_on_plain, Some(true), "{}", what());
        assert_eq!(Some(ctx), plain.as_ref(), "{}", what());
        tally.fast += 1;
    } else if cedar.is_some() {
        tally.cedar_only += 1;
    } else {
        tally.rejected_by_both += 1;
    }
    // Requests for an enumerated entity type are left to cedar (it checks the id too).
    let enumerated = resource.starts_with("App::Color::");
    if info.fast.is_some() && !enumerated {
        assert_eq!(
            fast.is_some(),
            cedar.is_some(),
            "fast check and cedar disagree: {}",
            what()
        );
        if let Some(cedar_on_plain) = cedar_on_plain {
            assert_eq!(fast.is_some(), cedar_on_plain, "{}", what());
        }
    }

    // 2. `decide` with and without the fast path: the same decision or the same error.
    let input = DecisionInput {
        action,
        resource,
        context,
        entities: None,
    };
    let on = decide_with(bundle, principal, &input, true);
    let off = decide_with(bundle, principal, &input, false);
    match (&on, &off) {
        (Ok(a), Ok(b)) => assert_eq!(
            serde_json::to_value(a).unwrap(),
            serde_json::to_value(b).unwrap(),
            "{}",
            what()
        ),
        (Err(a), Err(b)) => assert_eq!(format!("{a:?}"), format!("{b:?}"), "{}", what()),
        _ => panic!(
            "fast path changed the outcome: {on:?} vs {off:?}: {}",
            what()
        ),
    }
    assert_eq!(on.is_ok(), cedar.is_some(), "{}", what());

    // 3. An accepted request decides as cedar decides it.
    if let (Ok(decision), Some(request)) = (&on, &cedar) {
        let store = principal.store_for(bundle).unwrap();
        let response = bundle
            .authorizer
            .is_authorized(request, &bundle.policies, store.entities());
        let expected = decision_from(bundle, &response);
        assert_eq!(
            serde_json::to_value(decision).unwrap(),
            serde_json::to_value(&expected).unwrap(),
            "{}",
            what()
        );
        assert_eq!(
            decision.allowed,
            response.decision() == cedar_policy::Decision::Allow,
            "{}",
            what()
        );
        if decision.allowed {
            tally.allowed += 1;
        }
        if decision
            .determining
            .iter()
            .any(|d| d.effect == crate::Effect::Forbid)
        {
            tally.denied_by_forbid += 1;
        }
        if !decision.errors.is_empty() {
            tally.with_errors += 1;
        }
    }
}

fn bundle() -> PolicyBundle {
    PolicyBundle::compile(SCHEMA, POLICIES).unwrap()
}

#[test]
fn fast_checks_are_built_for_plain_actions_only() {
    let b = bundle();
    let fast = |action: &str| b.action(action).unwrap().fast.as_ref();
    for action in [
        r#"App::Action::"read""#,
        r#"App::Action::"write""#,
        r#"App::Action::"paint""#,
        r#"App::Action::"open""#,
        r#"App::Action::"touch""#,
        r#"Action::"top""#,
    ] {
        assert!(fast(action).is_some(), "{action}");
    }
    assert!(fast(r#"App::Action::"share""#).is_none());
    // an enumerated entity type is left to cedar, which checks the id
    let paint = fast(r#"App::Action::"paint""#).unwrap();
    assert_eq!(
        paint
            .resources
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
        ["App::Document"]
    );
    let write = fast(r#"App::Action::"write""#).unwrap();
    assert_eq!(write.principals.len(), 2);
}

#[test]
fn an_action_without_ordinary_types_or_an_external_one_has_no_fast_check() {
    let b = PolicyBundle::compile(
        r#"{ "App": {
          "entityTypes": {
            "Color": { "enum": ["red"] },
            "Doc": {},
            "Far": { "external": true }
          },
          "actions": {
            "paint": { "appliesTo": { "principalTypes": ["Warrant::Identity"],
                                      "resourceTypes": ["Color"] } },
            "fetch": { "appliesTo": { "principalTypes": ["Warrant::Identity"],
                                      "resourceTypes": ["Far"] } },
            "read": { "appliesTo": { "principalTypes": ["Warrant::Identity"],
                                     "resourceTypes": ["Doc", "Far"] } },
            "elsewhere": { "external": true }
          }
        } }"#,
        "",
    );
    let b = b.unwrap();
    assert!(b.action(r#"App::Action::"paint""#).unwrap().fast.is_none());
    let read = b.action(r#"App::Action::"read""#).unwrap().fast.as_ref();
    let read = read.unwrap();
    assert_eq!(
        read.resources
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
        ["App::Doc"]
    );
    assert!(b.action(r#"App::Action::"fetch""#).unwrap().fast.is_none());
    let elsewhere = b.action(r#"App::Action::"elsewhere""#).unwrap();
    assert!(elsewhere.fast.is_none());
    // and a request for it is refused as before
    let p = &principals()[0];
    let input = DecisionInput {
        action: r#"App::Action::"elsewhere""#,
        resource: r#"App::Doc::"d""#,
        context: None,
        entities: None,
    };
    let err = decide_with(&b, p, &input, true).unwrap_err();
    assert!(
        matches!(err, crate::RequestError::InvalidRequest { .. }),
        "{err}"
    );
}

#[test]
fn a_shape_cedar_disagrees_with_is_not_used() {
    let b = bundle();
    let schema = b.schema.as_ref().unwrap();
    let read = b.action(r#"App::Action::"read""#).unwrap();
    let ordinary: HashSet<String> = ["Warrant::Identity", "App::Document"]
        .map(str::to_owned)
        .into();
    let shape = read.context.as_ref().unwrap().shape.clone().unwrap();
    assert!(FastCheck::build(schema, &read.uid, Some(&shape), &ordinary).is_some());
    let Shape::Record(mut record) = shape else {
        unreachable!()
    };
    let attr = |name: &str, required: bool, shape: Shape| AttrShape {
        name: name.into(),
        required,
        shape,
    };
    let wrong = [
        // `risk` is required
        {
            let mut r = record.clone();
            for a in &mut r.attrs {
                a.required = false;
            }
            r.required = 0;
            r
        },
        // `risk` is a Long
        {
            let mut r = record.clone();
            for a in &mut r.attrs {
                if a.name == "risk" {
                    a.shape = Shape::String;
                }
            }
            r
        },
        // there is no `extra`
        {
            let mut r = record.clone();
            r.attrs.insert(0, attr("extra", false, Shape::Long));
            r
        },
        // `nested.b` is optional, but `nested.a` is required
        {
            let mut r = record.clone();
            for a in &mut r.attrs {
                if let Shape::Record(nested) = &mut a.shape {
                    for n in &mut nested.attrs {
                        n.required = false;
                    }
                    nested.required = 0;
                }
            }
            r
        },
        // `tags` is a set of strings
        {
            let mut r = record.clone();
            for a in &mut r.attrs {
                if a.name == "tags" {
                    a.shape = Shape::Set(Box::new(Shape::Long));
                }
            }
            r
        },
    ];
    for r in wrong {
        assert!(
            FastCheck::build(
                schema,
                &read.uid,
                Some(&Shape::Record(r.clone())),
                &ordinary
            )
            .is_none(),
            "{r:?}"
        );
    }
    // stricter than cedar is allowed: `mfa` made required
    for a in &mut record.attrs {
        if a.name == "mfa" {
            a.required = true;
        }
    }
    record.required += 1;
    assert!(FastCheck::build(schema, &read.uid, Some(&Shape::Record(record)), &ordinary).is_some());
    // an enumerated type that slipped into the ordinary ones is caught by the probe
    let paint = b.action(r#"App::Action::"paint""#).unwrap();
    let mut with_enum = ordinary.clone();
    with_enum.insert("App::Color".to_owned());
    let shape = paint.context.as_ref().unwrap().shape.clone();
    assert!(FastCheck::build(schema, &paint.uid, shape.as_ref(), &ordinary).is_some());
    assert!(FastCheck::build(schema, &paint.uid, shape.as_ref(), &with_enum).is_none());
}

#[test]
fn edge_cases_agree_with_cedar() {
    let b = bundle();
    let ps = principals();
    let identity = &ps[0];
    let other = &ps[2];
    let read = r#"App::Action::"read""#;
    let write = r#"App::Action::"write""#;
    let paint = r#"App::Action::"paint""#;
    let top = r#"Action::"top""#;
    let doc = r#"App::Document::"q3-report""#;
    let mut tally = Tally::default();
    let deep = json!({ "inner": { "level": 5 }, "flags": [true] });
    let read_cases = [
        json!({ "risk": 1 }),
        json!({ "risk": 1, "mfa": true, "tags": [], "nested": { "a": "x" } }),
        json!({}),                                            // missing required
        json!({ "mfa": true }),                               // missing required
        json!({ "risk": 1, "extra": 1 }),                     // extra attribute
        json!({ "risk": 1, "nested": { "a": "x", "c": 1 } }), // nested extra
        json!({ "risk": 1, "nested": {} }),                   // nested missing
        json!({ "risk": "1" }),                               // wrong type
        json!({ "risk": true }),
        json!({ "risk": 1, "mfa": 1 }),
        json!({ "risk": 1, "tags": "a" }),
        json!({ "risk": 1, "tags": ["a", 1] }), // mixed set
        json!({ "risk": 1, "tags": [["a"]] }),
        json!({ "risk": 1, "tags": [null] }),
        json!({ "risk": i64::MAX }),
        json!({ "risk": i64::MIN }),
        json!({ "risk": i64::MAX as u64 + 1 }),
        json!({ "risk": u64::MAX }),
        json!({ "risk": 1.0 }),
        json!({ "risk": 0.5 }),
        json!({ "risk": -9.3e18 }),
        json!({ "risk": 1e19 }),
        json!({ "risk": null }),
        json!({ "risk": 1, "mfa": null }),
        json!({ "risk": 1, "nested": null }),
        json!({ "risk": 1, "nested": { "a": "ünïcödé 日本語 🦀 \u{0}" } }),
        json!({ "risk": 1, "nested": { "a": "block" } }),
        json!({ "risk": 90 }),
        json!({ "risk": 1, "nested": { "a": { "__extn": { "fn": "ip", "arg": "1.2.3.4" } } } }),
        json!({ "risk": { "__entity": { "type": "App::Other", "id": "o" } } }),
        json!({ "__entity": { "type": "App::Other", "id": "o" } }),
        json!({ "risk": 1, "Risk": 1 }),
        json!({ "risk ": 1 }),
        json!({ "risk": 1, "": 1 }),
        json!([]),
        json!("risk"),
        json!(1),
        Value::Null,
    ];
    for ctx in &read_cases {
        for resource in [doc, r#"App::Folder::"f""#, r#"App::Other::"o""#] {
            check_case(&b, identity, read, resource, Some(ctx), &mut tally);
        }
        check_case(&b, other, read, doc, Some(ctx), &mut tally);
    }
    check_case(&b, identity, read, doc, None, &mut tally);
    let write_cases = [
        json!({ "deep": deep, "name": "n" }),
        json!({ "deep": deep, "name": "n", "odd key": "v", "counts": [1, 0] }),
        json!({ "deep": deep, "name": "an evil one" }),
        json!({ "deep": { "inner": { "level": 5, "labels": ["🦀"] }, "flags": [] }, "name": "n" }),
        json!({ "deep": { "inner": { "level": 5, "extra": 1 }, "flags": [] }, "name": "n" }),
        json!({ "deep": { "inner": { "level": 5 }, "flags": [true, 1] }, "name": "n" }),
        json!({ "deep": { "inner": { "level": 5 }, "flags": [], "x": {} }, "name": "n" }),
        json!({ "deep": { "inner": {}, "flags": [] }, "name": "n" }),
        json!({ "deep": deep }),
        json!({ "deep": deep, "name": "n", "odd_key": "v" }),
    ];
    for ctx in &write_cases {
        for p in [identity, other, &ps[3]] {
            check_case(&b, p, write, doc, Some(ctx), &mut tally);
        }
    }
    let paint_cases = [
        json!({ "nums": [] }),
        json!({ "nums": [1], "grid": [[7], []], "items": [{ "level": 1 }] }),
        json!({ "nums": [1], "grid": [7] }),
        json!({ "nums": [1], "grid": [[7, "7"]] }),
        json!({ "nums": [1], "items": [{ "level": 1, "labels": [1] }] }),
        json!({ "nums": [1], "items": [{ "level": 1, "x": 1 }] }),
        json!({ "nums": [1], "items": [{}] }),
        json!({ "nums": [i64::MAX, i64::MIN] }),
        json!({ "nums": [i64::MAX as u64 + 1] }),
        json!({ "nums": [1.5] }),
    ];
    for ctx in &paint_cases {
        for resource in [doc, r#"App::Color::"red""#, r#"App::Color::"purple""#] {
            check_case(&b, identity, paint, resource, Some(ctx), &mut tally);
        }
    }
    for ctx in [
        json!({}),
        json!({ "n": 1, "s": "ünïcödé" }),
        json!({ "r": {} }),
        json!({ "r": { "x": true } }),
        json!({ "r": { "y": true } }),
        json!({ "r": { "x": null } }),
    ] {
        check_case(&b, identity, top, doc, Some(&ctx), &mut tally);
    }
    for action in [r#"App::Action::"open""#, r#"App::Action::"touch""#, top] {
        for ctx in [
            None,
            Some(Value::Null),
            Some(json!({})),
            Some(json!({ "x": 1 })),
        ] {
            for resource in [doc, r#"App::Folder::"f""#] {
                check_case(&b, identity, action, resource, ctx.as_ref(), &mut tally);
            }
        }
    }
    assert!(tally.fast > 20, "{tally:?}");
    assert!(tally.rejected_by_both > 100, "{tally:?}");
}

#[test]
fn random_requests_agree_with_cedar() {
    const CASES: usize = 40_000;
    let b = bundle();
    let ps = principals();
    let mut rng = Rng(0x5EED_CEDA_2024_0001);
    let mut tally = Tally::default();
    let mut per_action: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    for _ in 0..CASES {
        let action = rng.pick(&ACTIONS);
        let info = b.action(action).unwrap();
        let shape = info.context.as_ref().and_then(|c| c.shape.as_ref());
        // mostly valid principal and resource types, sometimes wrong ones
        let principal = if rng.chance(70) {
            &ps[0]
        } else {
            &ps[rng.below(ps.len())]
        };
        let resource = if rng.chance(70) {
            rng.pick(valid_resources(action))
        } else {
            rng.pick(&RESOURCES)
        };
        let context = context_for(shape, &mut rng);
        let before = tally.fast;
        check_case(
            &b,
            principal,
            action,
            resource,
            context.as_ref(),
            &mut tally,
        );
        let entry = per_action.entry(action).or_default();
        entry.0 += 1;
        entry.1 += tally.fast - before;
    }
    eprintln!("{tally:?}\n{per_action:?}");
    assert_eq!(tally.cases, CASES);
    // both outcomes are well represented, and decisions of every kind were compared
    assert!(tally.fast > CASES / 10, "{tally:?}");
    assert!(tally.rejected_by_both > CASES / 4, "{tally:?}");
    assert!(tally.allowed > 200, "{tally:?}");
    assert!(tally.denied_by_forbid > 200, "{tally:?}");
    assert!(tally.with_errors > 20, "{tally:?}");
    for (action, (_, fast)) in &per_action {
        if *action != r#"App::Action::"share""# {
            assert!(*fast > 50, "{action}: {per_action:?}");
        }
    }
}
