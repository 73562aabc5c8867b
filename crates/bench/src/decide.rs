//! `warrant-bench decide`: the full in-process decision path of the server
//! (`warrant_server::api::authorize::decide`: snapshot load, principal lookup, Cedar,
//! response and audit-draft building; no append) against bare Cedar in the same process.

use crate::util::{self, fmt_ns, fmt_ratio, ACTION, POLICIES, RESOURCE, SCHEMA};
use anyhow::{anyhow, bail, Context as _};
use cedar_policy::{
    Authorizer, Context, Decision, Entities, Entity, EntityId, EntityTypeName, EntityUid, PolicyId,
    PolicySet, Request, RestrictedExpression, Schema, SchemaFragment,
};
use std::collections::{HashMap, HashSet};
use std::hint::black_box;
use std::path::Path;
use std::str::FromStr;
use std::time::Instant;
use warrant_core::identity::Identity;
use warrant_policy::{DecisionInput, BUILTIN_SCHEMA};
use warrant_server::api::authorize::{decide, AuthorizeRequest};
use warrant_store::sqlite::Durability;

#[derive(Debug, Clone, Copy)]
pub struct Opts {
    /// Timed samples per variant.
    pub rounds: usize,
    /// Operations per sample.
    pub batch: usize,
}

#[derive(Debug, Clone, Default)]
pub struct Outcome {
    pub bare_ns: f64,
    pub parse_ns: f64,
    pub policy_ns: f64,
    pub server_ns: f64,
    pub markdown: String,
}

fn uid(ty: &str, id: &str) -> anyhow::Result<EntityUid> {
    Ok(EntityUid::from_type_name_and_id(
        EntityTypeName::from_str(ty).map_err(|e| anyhow!("{e}"))?,
        EntityId::new(id),
    ))
}

/// The principal's entities built directly with Cedar's API (same shape as the registry's).
fn cedar_principal(i: &Identity) -> anyhow::Result<(EntityUid, Entities)> {
    let principal = uid("Warrant::Identity", &i.id)?;
    let owner = uid("Warrant::Human", &i.owner)?;
    let env = uid("Warrant::Environment", &i.environment)?;
    let roles: HashSet<EntityUid> = i
        .roles
        .iter()
        .map(|r| uid("Warrant::Role", r))
        .collect::<anyhow::Result<_>>()?;
    let s = |v: &str| RestrictedExpression::new_string(v.to_owned());
    let attrs = HashMap::from([
        ("name".to_owned(), s(&i.name)),
        ("kind".to_owned(), s(i.kind.as_str())),
        ("environment".to_owned(), s(&i.environment)),
        (
            "owner".to_owned(),
            RestrictedExpression::new_entity_uid(owner.clone()),
        ),
        ("spiffe_id".to_owned(), s(&i.spiffe_id)),
        (
            "entitlements".to_owned(),
            RestrictedExpression::new_set(i.entitlements.iter().map(|e| s(e))),
        ),
    ]);
    let mut parents = roles.clone();
    parents.insert(env.clone());
    let mut all = vec![
        Entity::new(principal.clone(), attrs, parents).map_err(|e| anyhow!("{e}"))?,
        Entity::new_no_attrs(env, HashSet::new()),
        Entity::new_no_attrs(owner, HashSet::new()),
    ];
    all.extend(
        roles
            .into_iter()
            .map(|r| Entity::new_no_attrs(r, HashSet::new())),
    );
    Ok((
        principal,
        Entities::from_entities(all, None).map_err(|e| anyhow!("{e}"))?,
    ))
}

/// The policy set with the ids warrant assigns (`@id`).
fn cedar_policies() -> anyhow::Result<PolicySet> {
    let parsed = PolicySet::from_str(POLICIES).map_err(|e| anyhow!("{e}"))?;
    let mut set = PolicySet::new();
    for p in parsed.policies() {
        let id = p
            .annotation("id")
            .ok_or_else(|| anyhow!("every benchmark policy has an @id"))?;
        set.add(p.new_id(PolicyId::new(id)))
            .map_err(|e| anyhow!("{e}"))?;
    }
    Ok(set)
}

fn cedar_schema() -> anyhow::Result<Schema> {
    let (builtin, _) =
        SchemaFragment::from_cedarschema_str(BUILTIN_SCHEMA).map_err(|e| anyhow!("{e}"))?;
    let (user, _) = SchemaFragment::from_cedarschema_str(SCHEMA).map_err(|e| anyhow!("{e}"))?;
    Schema::from_schema_fragments([builtin, user]).map_err(|e| anyhow!("{e}"))
}

/// What any server must do per request on top of `is_authorized`: parse the uids and the
/// context JSON into a schema-validated request.
fn parse_request(
    schema: &Schema,
    principal: &EntityUid,
    context: &serde_json::Value,
) -> anyhow::Result<Request> {
    let action = EntityUid::from_str(ACTION).map_err(|e| anyhow!("{e}"))?;
    let resource = EntityUid::from_str(RESOURCE).map_err(|e| anyhow!("{e}"))?;
    let context = Context::from_json_value(context.clone(), Some((schema, &action)))
        .map_err(|e| anyhow!("{e}"))?;
    Request::new(principal.clone(), action, resource, context, Some(schema))
        .map_err(|e| anyhow!("{e}"))
}

pub async fn run(base: &Path, opts: Opts) -> anyhow::Result<Outcome> {
    let dir = tempfile::tempdir_in(base)?;
    let server = util::start_inproc(dir.path(), Durability::Normal).await?;
    let state = server.state.clone();
    util::put_policy(&state).await?;
    let ids = util::create_identities(&state, 0, 100, 16).await?;
    let id = ids.first().context("no identity")?.clone();

    let snap = state.snapshot.load_full();
    let entry = snap
        .principal(&id)
        .context("registered identity not in snapshot")?
        .clone();
    let principal_entities = entry
        .entities
        .as_ref()
        .context("active identity without entities")?;
    let bundle = snap.policy.clone();

    // Bare Cedar, built with Cedar's API only.
    let schema = cedar_schema()?;
    let policies = cedar_policies()?;
    let (principal_uid, entities) = cedar_principal(&entry.identity)?;
    let context = serde_json::json!({ "risk": 10 });
    let request = parse_request(&schema, &principal_uid, &context)?;
    let authorizer = Authorizer::new();

    let input = DecisionInput {
        action: ACTION,
        resource: RESOURCE,
        context: Some(&context),
        entities: None,
    };
    let req = AuthorizeRequest {
        principal: id.clone(),
        action: ACTION.into(),
        resource: RESOURCE.into(),
        context: Some(context.clone()),
        entities: None,
    };
    let caller = util::admin_caller();

    // All variants must evaluate the same thing.
    let bare = authorizer.is_authorized(&request, &policies, &entities);
    let ours =
        warrant_policy::decide(&bundle, principal_entities, &input).map_err(|e| anyhow!("{e}"))?;
    let (resp, draft) = decide(&state, &caller, &req).map_err(|e| anyhow!("{}", e.message))?;
    let bare_reasons: Vec<String> = bare
        .diagnostics()
        .reason()
        .map(ToString::to_string)
        .collect();
    let ours_reasons: Vec<String> = ours.determining.iter().map(|d| d.id.clone()).collect();
    let server_reasons: Vec<String> = resp
        .determining_policies
        .iter()
        .map(|d| d.id.clone())
        .collect();
    if bare.decision() != Decision::Allow || !ours.allowed || resp.decision != "allow" {
        bail!("the benchmark request must be an allow on every path");
    }
    if bare_reasons != ours_reasons || ours_reasons != server_reasons {
        bail!("paths disagree: {bare_reasons:?} {ours_reasons:?} {server_reasons:?}");
    }
    let payload_bytes = draft.payload.len();

    // Interleaved samples (ABCD ABCD ...) so drift hits every variant alike.
    let mut samples: [Vec<f64>; 4] = Default::default();
    let n = opts.batch.max(1);
    for round in 0..=opts.rounds {
        for k in 0..4 {
            let v = (k + round) % 4;
            let t = Instant::now();
            match v {
                0 => {
                    for _ in 0..n {
                        black_box(authorizer.is_authorized(
                            black_box(&request),
                            black_box(&policies),
                            black_box(&entities),
                        ));
                    }
                }
                1 => {
                    for _ in 0..n {
                        let r = parse_request(&schema, &principal_uid, black_box(&context))?;
                        black_box(authorizer.is_authorized(&r, &policies, black_box(&entities)));
                    }
                }
                2 => {
                    for _ in 0..n {
                        let _ = black_box(warrant_policy::decide(
                            &bundle,
                            principal_entities,
                            black_box(&input),
                        ));
                    }
                }
                _ => {
                    for _ in 0..n {
                        let _ = black_box(decide(&state, &caller, black_box(&req)));
                    }
                }
            }
            let per_op = t.elapsed().as_nanos() as f64 / n as f64;
            // Round 0 is warm-up.
            if round > 0 {
                if let Some(s) = samples.get_mut(v) {
                    s.push(per_op);
                }
            }
        }
    }
    drop(snap);
    drop(state);
    util::stop_inproc(server).await?;

    let med: Vec<f64> = samples.iter().map(|s| util::median(s)).collect();
    let get = |i: usize| med.get(i).copied().unwrap_or(f64::NAN);
    let (bare_ns, parse_ns, policy_ns, server_ns) = (get(0), get(1), get(2), get(3));
    let names = [
        "bare Cedar `Authorizer::is_authorized` (pre-built request and entities)",
        "bare Cedar + parsing the request (uids, context JSON, schema-validated `Request::new`)",
        "`warrant_policy::decide` (warrant's Cedar wrapper)",
        "**`warrant_server::api::authorize::decide`** (full in-process path, no append)",
    ];
    let mut md = String::new();
    md.push_str(&format!(
        "{} samples × {} ops per variant, interleaved; median of per-sample means (p10–p90 of the samples). \
         One identity of 100 registered; request `read` → allow by `readers-read`; audit payload {payload_bytes} bytes.\n\n",
        opts.rounds, n
    ));
    md.push_str("| path | median ns/op | p10–p90 | × bare Cedar |\n|---|---:|---:|---:|\n");
    for (i, name) in names.iter().enumerate() {
        let s = samples.get(i).map(Vec::as_slice).unwrap_or(&[]);
        md.push_str(&format!(
            "| {name} | {} | {}–{} | {} |\n",
            fmt_ns(get(i)),
            fmt_ns(util::percentile(s, 10.0)),
            fmt_ns(util::percentile(s, 90.0)),
            fmt_ratio(get(i) / bare_ns)
        ));
    }
    md.push_str(&format!(
        "\nServer decide vs Cedar with request parsing: {}. Goal: server decide ≤ 1.2× bare Cedar → {}.\n",
        fmt_ratio(server_ns / parse_ns),
        if server_ns / bare_ns <= 1.2 {
            "met"
        } else {
            "**missed**"
        }
    ));
    Ok(Outcome {
        bare_ns,
        parse_ns,
        policy_ns,
        server_ns,
        markdown: md,
    })
}
