//! Accepted shapes: the config files that real clients write, transport inference,
//! expansion, `envFile`, and loading from disk.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::*;
use crate::config::{Format, load};
use crate::spec::GatewaySettings;

#[test]
fn client_shapes() {
    let cases: &[(&str, &str, Vec<BackendSpec>)] = &[
        (
            "Claude Desktop JSON",
            r#"{
              "mcpServers": {
                "filesystem": {
                  "command": "npx",
                  "args": ["-y", "@modelcontextprotocol/server-filesystem", "/Users/me/Desktop"]
                }
              }
            }"#,
            vec![stdio(
                "filesystem",
                "npx",
                &[
                    "-y",
                    "@modelcontextprotocol/server-filesystem",
                    "/Users/me/Desktop",
                ],
            )],
        ),
        (
            "VS Code servers with type http and comments",
            r#"{
              // VS Code's mcp.json
              "servers": {
                "remote": { "type": "http", "url": "https://mcp.example.com/mcp", },
              },
            }"#,
            vec![streamable("remote", "https://mcp.example.com/mcp")],
        ),
        (
            "YAML with comments",
            "# my servers\nmcpServers:\n  git:  # the git server\n    command: uvx\n    args:\n      - mcp-server-git\n      - --port\n      - 8080\n",
            vec![stdio("git", "uvx", &["mcp-server-git", "--port", "8080"])],
        ),
        (
            "older top-level map with type keys",
            "web:\n  type: sse\n  url: http://localhost:3000/sse\nlocal:\n  type: stdio\n  command: ./server\n",
            vec![
                stdio("local", "./server", &[]),
                backend(
                    "web",
                    TransportSpec::Sse {
                        http: http("http://localhost:3000/sse"),
                        launch: None,
                    },
                ),
            ],
        ),
        (
            "sse with command and url",
            "mcpServers:\n  legacy:\n    type: sse\n    command: python\n    args: [server.py]\n    url: http://127.0.0.1:8000/sse\n",
            vec![backend(
                "legacy",
                TransportSpec::Sse {
                    http: http("http://127.0.0.1:8000/sse"),
                    launch: Some(process("python", &["server.py"])),
                },
            )],
        ),
    ];
    for (name, text, want) in cases {
        let config = ok(text);
        assert_eq!(&config.backends, want, "{name}");
        assert_eq!(config.gateway, GatewaySettings::default(), "{name}");
        assert_eq!(config.warnings, Vec::<String>::new(), "{name}");
    }
}

#[test]
fn transport_inference_and_aliases() {
    let cases = [
        (r#"{"command": "x"}"#, "stdio"),
        (r#"{"url": "http://h/mcp"}"#, "streamable-http"),
        (r#"{"type": "stdio", "command": "x"}"#, "stdio"),
        (r#"{"type": "sse", "url": "http://h/sse"}"#, "sse"),
        (
            r#"{"type": "streamable-http", "url": "http://h"}"#,
            "streamable-http",
        ),
        (r#"{"type": "http", "url": "http://h"}"#, "streamable-http"),
        (
            r#"{"type": "streamableHttp", "url": "http://h"}"#,
            "streamable-http",
        ),
        (
            r#"{"type": "streamable_http", "url": "http://h"}"#,
            "streamable-http",
        ),
        (r#"{"transport": "sse", "url": "http://h"}"#, "sse"),
        (
            r#"{"transport": "http", "type": "streamable-http", "url": "http://h"}"#,
            "streamable-http",
        ),
        (
            r#"{"type": "sse", "transport": "sse", "url": "http://h", "command": "x"}"#,
            "sse",
        ),
    ];
    for (entry, want) in cases {
        let config = ok(&format!(r#"{{"mcpServers": {{"b": {entry}}}}}"#));
        assert_eq!(config.backends[0].transport_kind(), want, "{entry}");
    }
}

#[test]
fn inherit_env() {
    let names = |items: &[&str]| InheritEnv::Names(strings(items));
    let cases = [
        (r#"{"command": "x"}"#, InheritEnv::Minimal),
        (
            r#"{"command": "x", "inheritEnv": false}"#,
            InheritEnv::Minimal,
        ),
        (r#"{"command": "x", "inheritEnv": []}"#, InheritEnv::Minimal),
        (r#"{"command": "x", "inheritEnv": true}"#, InheritEnv::All),
        (
            r#"{"command": "x", "inheritEnv": "${INHERIT:-true}"}"#,
            InheritEnv::All,
        ),
        (
            r#"{"command": "x", "inheritEnv": ["GITHUB_TOKEN", "AWS_*"]}"#,
            names(&["GITHUB_TOKEN", "AWS_*"]),
        ),
        (
            r#"{"type": "sse", "command": "x", "url": "http://h/sse", "inheritEnv": ["A"]}"#,
            names(&["A"]),
        ),
    ];
    for (entry, want) in cases {
        let config = ok(&format!(r#"{{"mcpServers": {{"b": {entry}}}}}"#));
        let process = match &config.backends[0].transport {
            TransportSpec::Stdio(process) => process,
            TransportSpec::Sse {
                launch: Some(process),
                ..
            } => process,
            other => panic!("no process: {other:?}"),
        };
        assert_eq!(process.inherit_env, want, "{entry}");
    }
}

#[test]
fn sorted_and_disabled() {
    let config = ok(r#"{"mcpServers": {
        "zeta": {"command": "z"},
        "alpha": {"command": "a", "disabled": true},
        "Mid": {"url": "http://m", "disabled": false}
    }}"#);
    let names: Vec<_> = config
        .backends
        .iter()
        .map(|b| (b.name.as_str(), b.disabled))
        .collect();
    assert_eq!(names, [("Mid", false), ("alpha", true), ("zeta", false)]);
}

#[test]
fn empty_backend_sets_warn() {
    let cases = [
        ("{}", "no backends are configured"),
        ("", "no backends are configured"),
        ("# nothing yet\n", "no backends are configured"),
        (
            r#"{"mcpServers": {}}"#,
            "mcpServers: no backends are configured",
        ),
        ("servers:\n", "servers: no backends are configured"),
        ("gateway:\n  port: 1\n", "no backends are configured"),
    ];
    for (text, want) in cases {
        let config = ok(text);
        assert!(config.backends.is_empty());
        assert_eq!(config.warnings, [want], "{text}");
    }
}

#[test]
fn warnings() {
    let text = r#"{"mcpServers": {
        "a.b": {"command": "x", "autoApprove": ["t"], "description": "d"},
        "a_b": {"command": "y", "alwaysAllow": []}
    }}"#;
    assert_eq!(
        ok(text).warnings,
        [
            "mcpServers.\"a.b\".autoApprove: ignored: the gateway does not ask for approval of tool calls",
            "mcpServers.\"a.b\".description: ignored",
            "mcpServers.a_b.alwaysAllow: ignored: the gateway does not ask for approval of tool calls",
            "backends a.b, a_b share the prefix \"a_b\", so their tool names may collide; give each its own `prefix`",
        ]
    );
}

#[test]
fn prefixes() {
    let cases = [
        (r#"{"command": "x"}"#, "my_server_v2"),
        (r#"{"command": "x", "prefix": "gh"}"#, "gh"),
        (r#"{"command": "x", "prefix": ""}"#, ""),
        (r#"{"command": "x", "prefix": "A-b_9"}"#, "A-b_9"),
    ];
    for (entry, want) in cases {
        let config = ok(&format!(r#"{{"mcpServers": {{"my server/v2": {entry}}}}}"#));
        assert_eq!(config.backends[0].prefix, want, "{entry}");
    }
}

#[test]
fn expansion() {
    let text = r#"{"mcpServers": {"gh": {
        "url": "https://api.example.com:${PORT}/mcp",
        "headers": {"Authorization": "Bearer ${GITHUB_TOKEN}", "X-Default": "${UNSET:-none}"},
        "timeout": "${TIMEOUT:-45}"
    }, "local": {
        "command": "${HOME}/bin/server",
        "args": ["--price", "$$5", "$NOT_EXPANDED", "${API_KEY}"],
        "env": {"KEY": "${API_KEY}"},
        "disabled": "${DISABLED:-false}"
    }}}"#;
    let config = ok(text);
    let mut gh = streamable("gh", "https://api.example.com:9000/mcp");
    gh.timeout = Some(Duration::from_secs(45));
    if let TransportSpec::StreamableHttp(http) = &mut gh.transport {
        http.headers = map(&[
            ("Authorization", "Bearer ghp_s3cret"),
            ("X-Default", "none"),
        ]);
    }
    let mut local = stdio(
        "local",
        "/home/me/bin/server",
        &["--price", "$5", "$NOT_EXPANDED", "key-s3cret"],
    );
    if let TransportSpec::Stdio(process) = &mut local.transport {
        process.env = map(&[("KEY", "key-s3cret")]);
    }
    assert_eq!(config.backends, [gh, local]);
}

#[test]
fn cwd_and_env_file_resolve_against_the_base_dir() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let dotenv = "# secrets\nTOKEN=from-file\nexport SHARED=\"file value\"\nONLY_FILE='x y'\n";
    std::fs::write(dir.path().join("server.env"), dotenv).unwrap_or_else(|e| panic!("{e}"));
    let text = r#"{"mcpServers": {"s": {
        "command": "node", "cwd": "app", "envFile": "server.env",
        "env": {"SHARED": "from env", "EXTRA": 1}
    }}}"#;
    let config =
        parse(text, "t", Format::Json, Some(dir.path()), &env).unwrap_or_else(|e| panic!("{e}"));
    let want = ProcessSpec {
        command: "node".into(),
        args: vec![],
        env: map(&[
            ("EXTRA", "1"),
            ("ONLY_FILE", "x y"),
            ("SHARED", "from env"),
            ("TOKEN", "from-file"),
        ]),
        inherit_env: InheritEnv::Minimal,
        cwd: Some(dir.path().join("app")),
    };
    assert_eq!(config.backends[0].transport, TransportSpec::Stdio(want));

    let absolute = r#"{"mcpServers": {"s": {"command": "node", "cwd": "/srv/app"}}}"#;
    let config = ok(absolute);
    let TransportSpec::Stdio(process) = &config.backends[0].transport else {
        panic!("not stdio");
    };
    assert_eq!(process.cwd.as_deref(), Some(Path::new("/srv/app")));
}

#[test]
fn env_file_problems() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    std::fs::write(
        dir.path().join("bad.env"),
        "GOOD=1\nsecret-value-without-equals\n",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let text = r#"{"mcpServers": {
        "missing": {"command": "x", "envFile": "nope.env"},
        "bad": {"command": "x", "envFile": "bad.env"}
    }}"#;
    let error = parse(text, "t", Format::Json, Some(dir.path()), &env)
        .err()
        .unwrap_or_else(|| panic!("loaded"));
    let messages: Vec<_> = error.problems.iter().map(ToString::to_string).collect();
    let missing = dir.path().join("nope.env");
    let bad = dir.path().join("bad.env");
    assert_eq!(messages.len(), 2, "{messages:?}");
    let prefix = format!(
        "mcpServers.missing.envFile: cannot read {}: ",
        missing.display()
    );
    assert!(messages[0].starts_with(&prefix), "{}", messages[0]);
    let want = format!(
        "mcpServers.bad.envFile: {} line 2: expected KEY=VALUE",
        bad.display()
    );
    assert_eq!(messages[1], want);
    assert!(!messages.iter().any(|m| m.contains("secret-value")));
}

#[test]
fn load_from_files() {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let write = |name: &str, text: &str| -> PathBuf {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap_or_else(|e| panic!("{e}"));
        path
    };
    let yaml = "mcpServers:\n  s:\n    command: x\n    cwd: work\n";
    let json = r#"{"mcpServers": {"s": {"command": "x", "cwd": "work"}}}"#;
    let cases = [
        write("a.yaml", yaml),
        write("b.yml", yaml),
        write("c.json", json),
        write("d.conf", json),
        write("e", yaml),
    ];
    for path in cases {
        let config = load(&path).unwrap_or_else(|e| panic!("{e}"));
        let TransportSpec::Stdio(process) = &config.backends[0].transport else {
            panic!("not stdio");
        };
        assert_eq!(
            process.cwd,
            Some(dir.path().join("work")),
            "{}",
            path.display()
        );
    }

    // The extension wins over the content.
    let error = load(&write("f.json", yaml))
        .err()
        .unwrap_or_else(|| panic!("loaded"));
    assert_eq!(error.problems[0].path, "line 1 column 1");

    let missing = dir.path().join("missing.json");
    let error = load(&missing).err().unwrap_or_else(|| panic!("loaded"));
    assert_eq!(error.source, missing.display().to_string());
    assert!(error.to_string().starts_with(&format!(
        "{}: cannot read the config file: ",
        missing.display()
    )));
}

#[test]
fn format_from_path() {
    let cases = [
        ("mcp.json", Format::Json),
        ("MCP.JSON", Format::Json),
        ("gw.yaml", Format::Yaml),
        ("gw.yml", Format::Yaml),
        ("gw.conf", Format::Auto),
        ("gateway", Format::Auto),
    ];
    for (path, want) in cases {
        assert_eq!(Format::from_path(Path::new(path)), want, "{path}");
    }
}

#[test]
fn sessions_are_shared_unless_per_client() {
    let config = ok(r#"{"mcpServers": {
        "a": {"command": "a"},
        "b": {"command": "b", "sessions": "shared"},
        "c": {"command": "c", "sessions": "per-client"},
        "d": {"url": "http://d", "sessions": "per-client"}
    }}"#);
    let modes: Vec<_> = config
        .backends
        .iter()
        .map(|b| (b.name.as_str(), b.sessions.as_str()))
        .collect();
    assert_eq!(
        modes,
        [
            ("a", "shared"),
            ("b", "shared"),
            ("c", "per-client"),
            ("d", "per-client")
        ]
    );
    assert_eq!(
        problems(r#"{"mcpServers": {"x": {"command": "c", "sessions": "per-clients"}}}"#),
        [
            "mcpServers.x.sessions: unknown sharing \"per-clients\"; expected \"shared\" or \
             \"per-client\"; did you mean \"per-client\"?"
        ]
    );
    assert_eq!(
        problems(r#"{"mcpServers": {"x": {"command": "c", "sessions": true}}}"#).len(),
        1,
        "a non-string is refused"
    );
}
