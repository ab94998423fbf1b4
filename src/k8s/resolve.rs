//! `McpBackend` → `BackendSpec`.
//!
//! Three steps, so that only the middle one does I/O: [`references`] lists the Secret and
//! ConfigMap keys a spec needs; the controller fetches them; [`resolve`] builds the config
//! entry those values complete and hands it to [`config::backend_entry`], the same function
//! that reads a backend from the config file, then applies the gateway's stdio policy.

use std::collections::{BTreeMap, BTreeSet};

use globset::{Glob, GlobSet, GlobSetBuilder};
use serde_json::{Map, Value, json};

use super::crd::{KeyRef, McpBackend, McpBackendSpec, Transport, ValueVar};
use crate::config;
use crate::spec::BackendSpec;

/// Where a value comes from.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Source {
    Secret,
    ConfigMap,
}

/// One key of one Secret or ConfigMap, in the resource's namespace.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Reference {
    pub source: Source,
    pub name: String,
    pub key: String,
}

/// What a fetch found for a reference.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fetched {
    Value(String),
    /// The object exists but has no such key.
    NoKey,
    /// There is no such object.
    NoObject,
    /// The API refused (e.g. forbidden by RBAC) or failed.
    Failed(String),
}

/// Why a resource is not served; `reason` is a `PascalCase` condition reason.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub reason: &'static str,
    pub message: String,
}

/// Which commands a stdio `McpBackend` may run inside the gateway pod.
#[derive(Clone, Debug, Default)]
pub struct StdioPolicy {
    patterns: Vec<String>,
    set: Option<GlobSet>,
}

// === impl StdioPolicy ===

impl StdioPolicy {
    /// From globs over the command as written (`npx`, `uvx`, `/usr/local/bin/*`, `*`).
    /// An empty list refuses every command.
    pub fn new(patterns: &[String]) -> Result<Self, String> {
        let patterns: Vec<String> = patterns
            .iter()
            .map(|p| p.trim().to_owned())
            .filter(|p| !p.is_empty())
            .collect();
        if patterns.is_empty() {
            return Ok(Self::default());
        }
        let mut builder = GlobSetBuilder::new();
        for pattern in &patterns {
            let glob = Glob::new(pattern)
                .map_err(|e| format!("--allow-command {pattern:?} is not a valid glob: {e}"))?;
            builder.add(glob);
        }
        let set = builder
            .build()
            .map_err(|e| format!("--allow-command: {e}"))?;
        Ok(Self {
            patterns,
            set: Some(set),
        })
    }

    pub fn allows(&self, command: &str) -> bool {
        self.set.as_ref().is_some_and(|set| set.is_match(command))
    }

    fn refusal(&self, command: &str) -> Refusal {
        let allowed = match self.patterns.is_empty() {
            true => "none: no command is allowed".to_owned(),
            false => self.patterns.join(", "),
        };
        Refusal {
            reason: "CommandNotAllowed",
            message: format!(
                "command {command:?} is not allowed by the gateway's stdio policy (allowed: \
                 {allowed}); add it with --allow-command or the chart's stdio.allowCommands"
            ),
        }
    }
}

/// The backend's name in the gateway: `NAMESPACE/NAME`, unique across the cluster and unlike
/// any file-config name that a person would write by accident.
pub fn backend_name(namespace: &str, name: &str) -> String {
    format!("{namespace}/{name}")
}

/// Every Secret and ConfigMap key the spec reads, in a stable order.
pub fn references(spec: &McpBackendSpec) -> BTreeSet<Reference> {
    let vars = spec
        .env
        .iter()
        .flatten()
        .chain(spec.headers.iter().flatten());
    vars.filter_map(|var| key_ref(var).map(|(source, r)| reference(source, r)))
        .collect()
}

fn key_ref(var: &ValueVar) -> Option<(Source, &KeyRef)> {
    let from = var.value_from.as_ref()?;
    match (&from.secret_key_ref, &from.config_map_key_ref) {
        (Some(r), _) => Some((Source::Secret, r)),
        (None, Some(r)) => Some((Source::ConfigMap, r)),
        (None, None) => None,
    }
}

fn reference(source: Source, r: &KeyRef) -> Reference {
    Reference {
        source,
        name: r.name.clone(),
        key: r.key.clone(),
    }
}

/// Build the backend from the resource and the fetched values of its [`references`].
pub fn resolve(
    resource: &McpBackend,
    fetched: &BTreeMap<Reference, Fetched>,
    policy: &StdioPolicy,
) -> Result<BackendSpec, Refusal> {
    let namespace = resource.metadata.namespace.as_deref().unwrap_or("default");
    let name = resource.metadata.name.as_deref().unwrap_or_default();
    let spec = &resource.spec;
    let entry = entry(namespace, name, spec, fetched)?;
    let source = format!("McpBackend {namespace}/{name}");
    let backend =
        config::backend_entry(&backend_name(namespace, name), &entry, &source).map_err(|e| {
            Refusal {
                reason: "InvalidSpec",
                message: e
                    .problems
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; "),
            }
        })?;
    if let Some(command) = spec.command.as_deref()
        && !policy.allows(command)
    {
        return Err(policy.refusal(command));
    }
    Ok(backend)
}

/// The config-file entry the resource amounts to once its references are filled in.
fn entry(
    namespace: &str,
    name: &str,
    spec: &McpBackendSpec,
    fetched: &BTreeMap<Reference, Fetched>,
) -> Result<Value, Refusal> {
    let mut entry = Map::new();
    let transport = match spec.transport {
        Transport::Stdio => "stdio",
        Transport::Sse => "sse",
        Transport::StreamableHttp => "streamable-http",
    };
    entry.insert("type".into(), json!(transport));
    if let Some(command) = &spec.command {
        entry.insert("command".into(), json!(command));
    }
    if let Some(args) = &spec.args {
        entry.insert("args".into(), json!(args));
    }
    if let Some(env) = &spec.env {
        entry.insert("env".into(), values("env", env, fetched)?);
    }
    if let Some(names) = &spec.inherit_env {
        entry.insert("inheritEnv".into(), json!(names));
    }
    let url = match &spec.service {
        Some(service) => {
            let path = service.path.as_deref().unwrap_or(match spec.transport {
                Transport::Sse => "/sse",
                _ => "/mcp",
            });
            Some(format!(
                "{}://{}.{}.svc:{}{path}",
                service.scheme.as_deref().unwrap_or("http"),
                service.name,
                service.namespace.as_deref().unwrap_or(namespace),
                service.port,
            ))
        }
        None => spec.url.clone(),
    };
    if let Some(url) = url {
        entry.insert("url".into(), json!(url));
    }
    if let Some(headers) = &spec.headers {
        entry.insert("headers".into(), values("headers", headers, fetched)?);
    }
    let prefix = spec.prefix.clone().unwrap_or_else(|| name.to_owned());
    entry.insert("prefix".into(), json!(prefix));
    if let Some(tools) = &spec.tools {
        entry.insert(
            "tools".into(),
            json!({"include": tools.include, "exclude": tools.exclude}),
        );
    }
    if let Some(timeout) = &spec.timeout {
        entry.insert("timeout".into(), json!(timeout));
    }
    if spec.disabled {
        entry.insert("disabled".into(), json!(true));
    }
    entry.insert("sessions".into(), json!(spec.sessions.as_str()));
    Ok(Value::Object(entry))
}

/// `env` or `headers` as the config file's map; a later entry with the same name wins, as in
/// a container's `env`.
fn values(
    field: &str,
    vars: &[ValueVar],
    fetched: &BTreeMap<Reference, Fetched>,
) -> Result<Value, Refusal> {
    let mut map = Map::new();
    for var in vars {
        let value = match key_ref(var) {
            None => var.value.clone().unwrap_or_default(),
            Some((source, r)) => {
                let found = fetched
                    .get(&reference(source.clone(), r))
                    .cloned()
                    .unwrap_or(Fetched::NoObject);
                match (found, r.optional) {
                    (Fetched::Value(v), _) => v,
                    (Fetched::NoKey | Fetched::NoObject, true) => continue,
                    (found, _) => return Err(missing(field, &var.name, &source, r, found)),
                }
            }
        };
        map.insert(var.name.clone(), Value::String(value));
    }
    Ok(Value::Object(map))
}

fn missing(field: &str, var: &str, source: &Source, r: &KeyRef, found: Fetched) -> Refusal {
    let (kind, reason) = match source {
        Source::Secret => ("Secret", "SecretNotFound"),
        Source::ConfigMap => ("ConfigMap", "ConfigMapNotFound"),
    };
    let what = format!("spec.{field}[{var}]");
    match found {
        Fetched::NoKey => Refusal {
            reason,
            message: format!("{what}: {kind} {:?} has no key {:?}", r.name, r.key),
        },
        Fetched::Failed(error) => Refusal {
            reason: "ReferenceUnreadable",
            message: format!("{what}: cannot read {kind} {:?}: {error}", r.name),
        },
        _ => Refusal {
            reason,
            message: format!("{what}: {kind} {:?} not found", r.name),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::TransportSpec;

    fn resource(spec: Value) -> McpBackend {
        let spec: McpBackendSpec = serde_json::from_value(spec).expect("spec");
        let mut r = McpBackend::new("tools", spec);
        r.metadata.namespace = Some("team-a".into());
        r
    }

    fn policy(globs: &[&str]) -> StdioPolicy {
        let globs: Vec<String> = globs.iter().map(|g| g.to_string()).collect();
        StdioPolicy::new(&globs).expect("policy")
    }

    #[test]
    fn a_stdio_resource_becomes_the_same_spec_as_the_config_entry() {
        let r = resource(json!({
            "transport": "stdio", "command": "npx", "args": ["-y", "server-everything"],
            "env": [{"name": "MODE", "value": "fast"}], "inheritEnv": ["GITHUB_TOKEN", "AWS_*"],
            "tools": {"exclude": ["long*"]}, "timeout": "30s"
        }));
        let spec = resolve(&r, &BTreeMap::new(), &policy(&["npx"])).expect("resolves");
        let cfg = config::parse(
            r#"{"mcpServers": {"team-a/tools": {"command": "npx",
                "args": ["-y", "server-everything"], "env": {"MODE": "fast"},
                "inheritEnv": ["GITHUB_TOKEN", "AWS_*"], "prefix": "tools",
                "tools": {"exclude": ["long*"]}, "timeout": "30s"}}}"#,
            "test",
            config::Format::Json,
            None,
            &|_| None,
        )
        .expect("config");
        assert_eq!(spec, cfg.backends[0]);
        assert_eq!(spec.name, "team-a/tools");
        assert_eq!(spec.prefix, "tools");
    }

    #[test]
    fn sessions_carry_over_and_default_to_shared() {
        let with = |extra: Value| {
            let mut spec = json!({"transport": "stdio", "command": "npx"});
            if let (Some(s), Some(e)) = (spec.as_object_mut(), extra.as_object()) {
                s.extend(e.clone());
            }
            resolve(&resource(spec), &BTreeMap::new(), &policy(&["npx"]))
                .expect("resolves")
                .sessions
        };
        assert_eq!(with(json!({})), crate::spec::Sessions::Shared);
        assert_eq!(
            with(json!({"sessions": "shared"})),
            crate::spec::Sessions::Shared
        );
        assert_eq!(
            with(json!({"sessions": "per-client"})),
            crate::spec::Sessions::PerClient
        );
        let bad: Result<McpBackendSpec, _> =
            serde_json::from_value(json!({"transport": "stdio", "command": "c", "sessions": "x"}));
        assert!(
            bad.is_err(),
            "the CRD schema knows only shared and per-client"
        );
    }

    #[test]
    fn a_service_reference_becomes_a_cluster_url() {
        let r = resource(json!({
            "transport": "sse", "service": {"name": "everything", "port": 3001}
        }));
        let spec = resolve(&r, &BTreeMap::new(), &policy(&[])).expect("resolves");
        let TransportSpec::Sse { http, launch } = spec.transport else {
            panic!("sse expected")
        };
        assert_eq!(http.url, "http://everything.team-a.svc:3001/sse");
        assert!(launch.is_none());

        let r = resource(json!({
            "transport": "streamable-http",
            "service": {"name": "tools", "namespace": "shared", "port": 80, "path": "/v1/mcp"}
        }));
        let spec = resolve(&r, &BTreeMap::new(), &policy(&[])).expect("resolves");
        let TransportSpec::StreamableHttp(http) = spec.transport else {
            panic!("http expected")
        };
        assert_eq!(http.url, "http://tools.shared.svc:80/v1/mcp");
    }

    #[test]
    fn secret_and_config_map_values_fill_env_and_headers() {
        let r = resource(json!({
            "transport": "streamable-http", "url": "http://tools:8080/mcp",
            "headers": [
                {"name": "Authorization", "valueFrom": {"secretKeyRef": {"name": "api", "key": "token"}}},
                {"name": "X-Team", "valueFrom": {"configMapKeyRef": {"name": "team", "key": "id"}}},
                {"name": "X-Opt", "valueFrom": {"secretKeyRef": {"name": "gone", "key": "k", "optional": true}}}
            ]
        }));
        let refs = references(&r.spec);
        assert_eq!(refs.len(), 3);
        let mut fetched = BTreeMap::new();
        for reference in refs {
            let value = match reference.name.as_str() {
                "api" => Fetched::Value("Bearer s3cret".into()),
                "team" => Fetched::Value("blue".into()),
                _ => Fetched::NoObject,
            };
            fetched.insert(reference, value);
        }
        let spec = resolve(&r, &fetched, &policy(&[])).expect("resolves");
        let TransportSpec::StreamableHttp(http) = spec.transport else {
            panic!("http expected")
        };
        assert_eq!(http.headers["Authorization"], "Bearer s3cret");
        assert_eq!(http.headers["X-Team"], "blue");
        assert!(!http.headers.contains_key("X-Opt"));
    }

    #[test]
    fn a_missing_secret_or_key_is_a_reasoned_refusal() {
        let r = resource(json!({
            "transport": "stdio", "command": "srv",
            "env": [{"name": "KEY", "valueFrom": {"secretKeyRef": {"name": "api", "key": "token"}}}]
        }));
        let reference = references(&r.spec).into_iter().next().expect("one ref");
        let p = policy(&["*"]);
        let no_object = BTreeMap::from([(reference.clone(), Fetched::NoObject)]);
        let refusal = resolve(&r, &no_object, &p).expect_err("refused");
        assert_eq!(refusal.reason, "SecretNotFound");
        assert_eq!(refusal.message, "spec.env[KEY]: Secret \"api\" not found");
        let no_key = BTreeMap::from([(reference.clone(), Fetched::NoKey)]);
        let refusal = resolve(&r, &no_key, &p).expect_err("refused");
        assert!(
            refusal.message.contains("has no key \"token\""),
            "{refusal:?}"
        );
        let forbidden = BTreeMap::from([(reference, Fetched::Failed("forbidden".into()))]);
        let refusal = resolve(&r, &forbidden, &p).expect_err("refused");
        assert_eq!(refusal.reason, "ReferenceUnreadable");
    }

    #[test]
    fn the_stdio_policy_decides_which_commands_run() {
        let r = resource(json!({"transport": "stdio", "command": "/bin/sh", "args": ["-c", "x"]}));
        let refusal = resolve(&r, &BTreeMap::new(), &policy(&[])).expect_err("refused");
        assert_eq!(refusal.reason, "CommandNotAllowed");
        assert!(refusal.message.contains("\"/bin/sh\""), "{refusal:?}");
        assert!(
            refusal.message.contains("no command is allowed"),
            "{refusal:?}"
        );
        let refusal = resolve(&r, &BTreeMap::new(), &policy(&["npx", "uvx"])).expect_err("refused");
        assert!(refusal.message.contains("npx, uvx"), "{refusal:?}");
        assert!(resolve(&r, &BTreeMap::new(), &policy(&["/bin/*"])).is_ok());
        assert!(resolve(&r, &BTreeMap::new(), &policy(&["*"])).is_ok());
        // A launched sse server runs a command too.
        let r = resource(
            json!({"transport": "sse", "command": "srv", "url": "http://127.0.0.1:9/sse"}),
        );
        assert!(resolve(&r, &BTreeMap::new(), &policy(&["npx"])).is_err());
        assert!(StdioPolicy::new(&["[".into()]).is_err());
    }

    #[test]
    fn spec_problems_are_reported_with_their_field() {
        // The API server's CEL rules stop this; a resource written before the CRD had them
        // still gets a readable refusal.
        let r = resource(json!({"transport": "streamable-http", "url": "ftp://x"}));
        let refusal = resolve(&r, &BTreeMap::new(), &policy(&[])).expect_err("refused");
        assert_eq!(refusal.reason, "InvalidSpec");
        assert!(refusal.message.starts_with("spec.url: "), "{refusal:?}");
        let r = resource(json!({"transport": "stdio", "command": "x", "timeout": "soon"}));
        let refusal = resolve(&r, &BTreeMap::new(), &policy(&["*"])).expect_err("refused");
        assert!(refusal.message.starts_with("spec.timeout: "), "{refusal:?}");
        let r = resource(json!({"transport": "stdio", "command": "x",
                                "inheritEnv": ["A", "KUBERNETES_SERVICE_HOST"]}));
        let refusal = resolve(&r, &BTreeMap::new(), &policy(&["*"])).expect_err("refused");
        assert_eq!(
            refusal.message,
            "spec.inheritEnv[1]: KUBERNETES_* variables are never passed to a backend"
        );
    }
}
