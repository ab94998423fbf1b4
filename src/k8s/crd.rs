//! The `McpBackend` custom resource: one MCP server behind the gateway, declared in a cluster.
//!
//! The spec uses the field names and meanings of a backend entry in the config file; what
//! Kubernetes adds is values from Secrets and ConfigMaps (`env`, `headers`) and a `service`
//! reference as an alternative to `url`. The API server enforces the per-transport rules
//! through the CEL rules below, so `kubectl apply` rejects a bad resource with a readable
//! message before the gateway ever sees it (the gateway checks again when it resolves).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, CustomResourceExt, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The API group of the gateway's resources.
pub const GROUP: &str = "mcpgateway.dev";
/// The field manager the gateway writes status with (server-side apply).
pub const FIELD_MANAGER: &str = "mcp-gateway";

/// A backend MCP server: a process the gateway runs (`stdio`), or a server it connects to
/// (`sse`, `streamable-http`) by `url` or by `service`.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "mcpgateway.dev",
    version = "v1alpha1",
    kind = "McpBackend",
    plural = "mcpbackends",
    shortname = "mcpb",
    namespaced,
    status = "McpBackendStatus",
    cel,
    printcolumn = r#"{"name":"Transport","type":"string","jsonPath":".spec.transport"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Tools","type":"integer","jsonPath":".status.tools"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","priority":1,"jsonPath":".status.conditions[?(@.type==\"Ready\")].reason"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[x_kube(
    validation = Rule::new("self.transport != 'stdio' || has(self.command)").message("a stdio backend needs `command`"),
    validation = Rule::new("self.transport == 'stdio' || has(self.url) || has(self.service)").message("an sse or streamable-http backend needs `url` or `service`"),
    validation = Rule::new("!(has(self.url) && has(self.service))").message("`url` and `service` are alternatives: give one"),
    validation = Rule::new("self.transport != 'stdio' || (!has(self.url) && !has(self.service) && !has(self.headers))").message("a stdio backend takes no `url`, `service` or `headers`"),
    validation = Rule::new("self.transport != 'streamable-http' || (!has(self.command) && !has(self.args) && !has(self.env) && !has(self.inheritEnv))").message("a streamable-http backend is reached, not run: `command`, `args`, `env` and `inheritEnv` belong to stdio (or sse) backends"),
    validation = Rule::new("has(self.command) || (!has(self.args) && !has(self.env) && !has(self.inheritEnv))").message("`args`, `env` and `inheritEnv` are only used with `command`"),
    validation = Rule::new("!has(self.inheritEnv) || self.inheritEnv.all(n, !n.startsWith('KUBERNETES_'))").message("KUBERNETES_* variables are never passed to a backend")
)]
#[serde(rename_all = "camelCase")]
pub struct McpBackendSpec {
    /// How the gateway talks to the server.
    #[schemars(extend("maxLength" = 16))]
    pub transport: Transport,
    /// The program to run (stdio, or an sse server the gateway starts before connecting).
    /// Runs inside the gateway pod, so the gateway's stdio policy must allow it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub command: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    pub args: Option<Vec<String>>,
    /// Environment variables set for the process, on top of what it inherits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    pub env: Option<Vec<ValueVar>>,
    /// Variables of the gateway's own environment that the process gets besides the minimal
    /// set (`PATH`, `HOME`, locale, proxies, CA bundles, `npm_config_*`, `UV_*`, `PIP_*`):
    /// names, or prefixes ending in `*` (`AWS_*`). `KUBERNETES_*` never pass.
    ///
    /// Names only, unlike the config file's `inheritEnv: true`: in a cluster the gateway's
    /// environment is the pod's, set by whoever installed the gateway (the chart's `extraEnv`,
    /// which may hold secrets for the config file, and the links of every Service in the
    /// namespace), not by whoever writes McpBackends; each variable a backend gets is named in
    /// its resource, where a reviewer sees it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(max = 64),
        inner(length(min = 1, max = 256), regex(pattern = r"^[^=*]+\*?$"))
    )]
    pub inherit_env: Option<Vec<String>>,
    /// The server's endpoint (`http://…/mcp` for streamable-http, `http://…/sse` for sse).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^https?://"))]
    pub url: Option<String>,
    /// A Service to connect to instead of `url`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<ServiceRef>,
    /// HTTP headers sent with every request to the server (e.g. `Authorization` from a Secret).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub headers: Option<Vec<ValueVar>>,
    /// Prefix of the public tool and prompt names; default: the resource's name.
    /// `""` publishes the server's names as they are.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[A-Za-z0-9_-]*$"))]
    pub prefix: Option<String>,
    /// Which of the server's tools are published, by glob over the server's own names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<ToolFilter>,
    /// Per-request timeout, e.g. `30s`, `2m`, `500ms`; reset by progress notifications.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[0-9]+(\.[0-9]+)?(ms|s|m|h)?$"))]
    pub timeout: Option<String>,
    /// A disabled backend is known to the gateway but not started.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub disabled: bool,
    /// `shared` (default): one upstream session (one process) serves every client.
    /// `per-client`: each client session that calls the backend gets its own (one process per
    /// client), so sampling, elicitation, roots and log messages always reach the right
    /// client; a shared backend refuses those it cannot tie to one client.
    #[serde(default, skip_serializing_if = "Sessions::is_shared")]
    #[schemars(extend("maxLength" = 16))]
    pub sessions: Sessions,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum Sessions {
    #[default]
    #[serde(rename = "shared")]
    Shared,
    #[serde(rename = "per-client")]
    PerClient,
}

impl Sessions {
    fn is_shared(&self) -> bool {
        *self == Self::Shared
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Shared => "shared",
            Self::PerClient => "per-client",
        }
    }
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum Transport {
    #[serde(rename = "stdio")]
    Stdio,
    #[serde(rename = "sse")]
    Sse,
    #[serde(rename = "streamable-http")]
    StreamableHttp,
}

/// A named value, given inline or taken from a Secret or ConfigMap key (the shape of a
/// container's `env` entry).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[x_kube(
    validation = Rule::new("!(has(self.value) && has(self.valueFrom))").message("give `value` or `valueFrom`, not both")
)]
#[serde(rename_all = "camelCase")]
pub struct ValueVar {
    #[schemars(length(min = 1))]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_from: Option<ValueSource>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[x_kube(
    validation = Rule::new("has(self.secretKeyRef) != has(self.configMapKeyRef)").message("give exactly one of `secretKeyRef` and `configMapKeyRef`")
)]
#[serde(rename_all = "camelCase")]
pub struct ValueSource {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_key_ref: Option<KeyRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map_key_ref: Option<KeyRef>,
}

/// A key of a Secret or ConfigMap in the resource's own namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KeyRef {
    #[schemars(length(min = 1))]
    pub name: String,
    #[schemars(length(min = 1))]
    pub key: String,
    /// When true, a missing object or key leaves the value out instead of failing.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub optional: bool,
}

/// A Service serving the MCP endpoint: `http://NAME.NAMESPACE.svc:PORT/PATH`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceRef {
    #[schemars(length(min = 1))]
    pub name: String,
    /// Default: the McpBackend's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[schemars(range(min = 1, max = 65535))]
    pub port: u16,
    /// Default: `/mcp` for streamable-http, `/sse` for sse.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^/"))]
    pub path: Option<String>,
    /// `http` (default) or `https`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^https?$"))]
    pub scheme: Option<String>,
}

/// Globs over the server's own tool names; an empty `include` means every tool.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ToolFilter {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub include: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude: Vec<String>,
}

/// What the gateway reports about the backend.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct McpBackendStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`: whether the backend's tools are being served, with the reason when not.
    #[serde(default)]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// Tools published by this backend (after filtering).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompts: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<u32>,
    /// The server's own `serverInfo` from its `initialize` answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_info: Option<ServerInfo>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServerInfo {
    #[serde(default)]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

/// The CustomResourceDefinition as YAML, as `mcp-gateway crd` prints it and `crds/` holds it.
pub fn crd_yaml() -> String {
    let crd = McpBackend::crd();
    // Serialising a generated definition cannot fail; an empty string would fail the
    // committed-copy test loudly.
    let yaml = serde_saphyr::to_string(&crd).unwrap_or_default();
    format!(
        "# Generated by `mcp-gateway crd`; do not edit by hand (scripts/sync-crd.sh).\n---\n{yaml}"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    #[test]
    fn the_committed_crd_is_the_generated_one() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/crds/mcpbackends.yaml");
        let committed = std::fs::read_to_string(path).expect("crds/mcpbackends.yaml");
        assert!(
            committed == crd_yaml(),
            "crds/mcpbackends.yaml is stale: run scripts/sync-crd.sh"
        );
    }

    fn check(spec: Value) -> Result<(), Vec<String>> {
        let spec: McpBackendSpec = serde_json::from_value(spec).expect("spec parses");
        let mut resource = McpBackend::new("b", spec);
        resource.metadata.namespace = Some("ns".into());
        resource.validate_cel().map_err(|errors| {
            errors
                .into_vec()
                .into_iter()
                .map(|e| e.message.to_string())
                .collect()
        })
    }

    #[test]
    fn the_api_server_accepts_each_transport() {
        let good = [
            json!({"transport": "stdio", "command": "npx", "args": ["-y", "x"],
                   "inheritEnv": ["GITHUB_TOKEN", "AWS_*"],
                   "env": [{"name": "A", "value": "1"},
                           {"name": "B", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}]}),
            json!({"transport": "sse", "service": {"name": "svc", "port": 3001}}),
            json!({"transport": "sse", "command": "srv", "url": "http://127.0.0.1:3001/sse"}),
            json!({"transport": "streamable-http", "url": "http://tools:80/mcp",
                   "headers": [{"name": "Authorization",
                                "valueFrom": {"secretKeyRef": {"name": "s", "key": "token"}}}]}),
        ];
        for spec in good {
            assert_eq!(check(spec.clone()), Ok(()), "{spec}");
        }
    }

    #[test]
    fn the_api_server_rejects_what_a_transport_cannot_use() {
        let bad = [
            (
                json!({"transport": "stdio"}),
                "a stdio backend needs `command`",
            ),
            (
                json!({"transport": "streamable-http"}),
                "needs `url` or `service`",
            ),
            (
                json!({"transport": "sse", "url": "http://a/sse", "service": {"name": "a", "port": 1}}),
                "`url` and `service` are alternatives",
            ),
            (
                json!({"transport": "stdio", "command": "x", "url": "http://a"}),
                "a stdio backend takes no `url`",
            ),
            (
                json!({"transport": "streamable-http", "url": "http://a", "command": "x"}),
                "a streamable-http backend is reached, not run",
            ),
            (
                json!({"transport": "sse", "url": "http://a/sse", "args": ["x"]}),
                "`args`, `env` and `inheritEnv` are only used with `command`",
            ),
            (
                json!({"transport": "sse", "url": "http://a/sse", "inheritEnv": ["A"]}),
                "`args`, `env` and `inheritEnv` are only used with `command`",
            ),
            (
                json!({"transport": "streamable-http", "url": "http://a", "inheritEnv": ["A"]}),
                "a streamable-http backend is reached, not run",
            ),
            (
                json!({"transport": "stdio", "command": "x",
                       "inheritEnv": ["AWS_*", "KUBERNETES_SERVICE_HOST"]}),
                "KUBERNETES_* variables are never passed to a backend",
            ),
            (
                json!({"transport": "stdio", "command": "x", "env": [{"name": "A", "value": "1",
                    "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}]}),
                "give `value` or `valueFrom`, not both",
            ),
            (
                json!({"transport": "stdio", "command": "x", "env": [{"name": "A", "valueFrom": {}}]}),
                "give exactly one of `secretKeyRef` and `configMapKeyRef`",
            ),
        ];
        for (spec, message) in bad {
            let errors = check(spec.clone()).expect_err(&spec.to_string());
            assert!(
                errors.iter().any(|e| e.contains(message)),
                "{spec}: expected {message:?} among {errors:?}"
            );
        }
    }
}
