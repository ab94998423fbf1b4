//! Golden tests: whole config files → the exact settings and backends they produce.

use std::path::PathBuf;
use std::time::Duration;

use super::*;
use crate::spec::GatewaySettings;

const GATEWAY_YAML: &str = r#"
# Gateway in front of a workstation's MCP servers.
gateway:
  separator: "_"
  requestTimeout: 2m
  startupTimeout: 30
  shutdownGrace: 2.5
  maxBodyBytes: 4MiB
  allowedHosts: [gateway.internal, "*.corp.example"]
  host: 0.0.0.0
  port: ${PORT}

mcpServers:
  github:
    command: docker
    args: [run, -i, --rm, -e, GITHUB_PERSONAL_ACCESS_TOKEN, ghcr.io/github/github-mcp-server]
    env:
      GITHUB_PERSONAL_ACCESS_TOKEN: ${GITHUB_TOKEN}
    inheritEnv: [DOCKER_HOST, "DOCKER_*"]
    prefix: gh
    tools:
      include: ["get_*", "list_*", search_code]
      exclude: ["*_secret*"]
    timeout: 90s
  search:
    type: streamable-http
    url: https://search.example.com/mcp
    headers:
      Authorization: Bearer ${API_KEY}
      X-Client: gateway
  legacy-python:
    type: sse
    command: python3
    args: [-m, legacy_server, --port, 8765]
    cwd: servers/legacy
    inheritEnv: true
    url: http://127.0.0.1:8765/sse
  scratch:
    command: ./scratch-server
    disabled: true
    prefix: ""
"#;

#[test]
fn gateway_yaml() {
    let config = ok(GATEWAY_YAML);
    let want_gateway = GatewaySettings {
        separator: "_".into(),
        request_timeout: Duration::from_secs(120),
        startup_timeout: Duration::from_secs(30),
        max_body_bytes: 4 << 20,
        shutdown_grace: Duration::from_millis(2500),
        allowed_hosts: strings(&["gateway.internal", "*.corp.example"]),
        host: Some("0.0.0.0".into()),
        port: Some(9000),
        ..GatewaySettings::default()
    };
    let want_backends = vec![
        BackendSpec {
            name: "github".into(),
            transport: TransportSpec::Stdio(ProcessSpec {
                command: "docker".into(),
                args: strings(&[
                    "run",
                    "-i",
                    "--rm",
                    "-e",
                    "GITHUB_PERSONAL_ACCESS_TOKEN",
                    "ghcr.io/github/github-mcp-server",
                ]),
                env: map(&[("GITHUB_PERSONAL_ACCESS_TOKEN", "ghp_s3cret")]),
                inherit_env: InheritEnv::Names(strings(&["DOCKER_HOST", "DOCKER_*"])),
                cwd: None,
            }),
            prefix: "gh".into(),
            tools: ToolFilter {
                include: strings(&["get_*", "list_*", "search_code"]),
                exclude: strings(&["*_secret*"]),
            },
            timeout: Some(Duration::from_secs(90)),
            disabled: false,
            sessions: Default::default(),
        },
        BackendSpec {
            name: "legacy-python".into(),
            transport: TransportSpec::Sse {
                http: http("http://127.0.0.1:8765/sse"),
                launch: Some(ProcessSpec {
                    command: "python3".into(),
                    args: strings(&["-m", "legacy_server", "--port", "8765"]),
                    env: BTreeMap::new(),
                    inherit_env: InheritEnv::All,
                    cwd: Some(PathBuf::from("/etc/mcp/servers/legacy")),
                }),
            },
            prefix: "legacy-python".into(),
            tools: ToolFilter::default(),
            timeout: None,
            disabled: false,
            sessions: Default::default(),
        },
        BackendSpec {
            name: "scratch".into(),
            transport: TransportSpec::Stdio(process("./scratch-server", &[])),
            prefix: String::new(),
            tools: ToolFilter::default(),
            timeout: None,
            disabled: true,
            sessions: Default::default(),
        },
        BackendSpec {
            name: "search".into(),
            transport: TransportSpec::StreamableHttp(HttpSpec {
                url: "https://search.example.com/mcp".into(),
                headers: map(&[
                    ("Authorization", "Bearer key-s3cret"),
                    ("X-Client", "gateway"),
                ]),
            }),
            prefix: "search".into(),
            tools: ToolFilter::default(),
            timeout: None,
            disabled: false,
            sessions: Default::default(),
        },
    ];
    assert_eq!(config.gateway, want_gateway);
    assert_eq!(config.backends, want_backends);
    assert_eq!(config.warnings, Vec::<String>::new());
}

const CLAUDE_DESKTOP_JSON: &str = r#"{
  "mcpServers": {
    "sqlite": {
      "command": "uvx",
      "args": ["mcp-server-sqlite", "--db-path", "/Users/me/test.db"]
    },
    "brave-search": {
      "command": "npx",
      "args": ["-y", "@modelcontextprotocol/server-brave-search"],
      "env": { "BRAVE_API_KEY": "${API_KEY}" },
      "autoApprove": ["brave_web_search"]
    },
    "memory": {
      "command": "npx",
      "args": ["-y", "@modelcontextprotocol/server-memory"],
      "disabled": true,
      "timeout": 60
    }
  }
}"#;

#[test]
fn claude_desktop_json() {
    let config = ok(CLAUDE_DESKTOP_JSON);
    let mut brave = stdio(
        "brave-search",
        "npx",
        &["-y", "@modelcontextprotocol/server-brave-search"],
    );
    if let TransportSpec::Stdio(process) = &mut brave.transport {
        process.env = map(&[("BRAVE_API_KEY", "key-s3cret")]);
    }
    let mut memory = stdio(
        "memory",
        "npx",
        &["-y", "@modelcontextprotocol/server-memory"],
    );
    memory.disabled = true;
    memory.timeout = Some(Duration::from_secs(60));
    let sqlite = stdio(
        "sqlite",
        "uvx",
        &["mcp-server-sqlite", "--db-path", "/Users/me/test.db"],
    );
    assert_eq!(config.gateway, GatewaySettings::default());
    assert_eq!(config.backends, [brave, memory, sqlite]);
    assert_eq!(
        config.warnings,
        [
            "mcpServers.brave-search.autoApprove: ignored: the gateway does not ask for approval of tool calls"
        ]
    );
}

const VSCODE_MCP_JSON: &str = r#"{
  // .vscode/mcp.json
  "servers": {
    "github": {
      "type": "http",
      "url": "https://api.githubcopilot.com/mcp/",
      "headers": { "Authorization": "Bearer ${env:GITHUB_TOKEN}" }
    },
    "playwright": {
      "type": "stdio",
      "command": "npx",
      "args": ["@playwright/mcp@latest", "--port", 0, "--headless", true],
      "env": { "DEBUG": "${DEBUG:-pw:api}" },
    },
    /* older SSE endpoint */
    "events": { "type": "sse", "url": "http://localhost:7000/sse" }
  }
}"#;

#[test]
fn vscode_mcp_json() {
    let config = ok(VSCODE_MCP_JSON);
    let mut github = streamable("github", "https://api.githubcopilot.com/mcp/");
    if let TransportSpec::StreamableHttp(http) = &mut github.transport {
        http.headers = map(&[("Authorization", "Bearer ghp_s3cret")]);
    }
    let events = backend(
        "events",
        TransportSpec::Sse {
            http: http("http://localhost:7000/sse"),
            launch: None,
        },
    );
    let mut playwright = stdio(
        "playwright",
        "npx",
        &[
            "@playwright/mcp@latest",
            "--port",
            "0",
            "--headless",
            "true",
        ],
    );
    if let TransportSpec::Stdio(process) = &mut playwright.transport {
        process.env = map(&[("DEBUG", "pw:api")]);
    }
    assert_eq!(config.gateway, GatewaySettings::default());
    assert_eq!(config.backends, [events, github, playwright]);
    assert!(config.warnings.is_empty());
}
