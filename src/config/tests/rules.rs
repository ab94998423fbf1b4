//! Every validation rule, each with the exact path and message it reports.

use super::*;

/// A config with one backend named `x`.
fn one(entry: &str) -> String {
    format!(r#"{{"mcpServers": {{"x": {entry}}}}}"#)
}

#[test]
fn backend_rules() {
    let cases: &[(&str, &[&str])] = &[
        // transport
        (
            r#"{}"#,
            &["mcpServers.x: needs `command` (stdio) or `url` (sse, streamable-http)"],
        ),
        (
            r#"{"args": ["a"]}"#,
            &["mcpServers.x: needs `command` (stdio) or `url` (sse, streamable-http)"],
        ),
        (
            r#"{"type": "grpc", "command": "c"}"#,
            &[
                "mcpServers.x.type: unknown transport \"grpc\"; expected \"stdio\", \"sse\" or \"streamable-http\" (also written \"http\")",
            ],
        ),
        (
            r#"{"type": "studio", "command": "c"}"#,
            &[
                "mcpServers.x.type: unknown transport \"studio\"; expected \"stdio\", \"sse\" or \"streamable-http\" (also written \"http\"); did you mean \"stdio\"?",
            ],
        ),
        (
            r#"{"type": 1, "command": "c"}"#,
            &["mcpServers.x.type: expected a string, found a number"],
        ),
        (
            r#"{"type": "stdio", "transport": "sse", "command": "c", "url": "http://h"}"#,
            &["mcpServers.x.transport: says sse but `type` says stdio; give one of them"],
        ),
        (
            r#"{"type": "stdio"}"#,
            &["mcpServers.x: missing `command`, required by the stdio transport"],
        ),
        (
            r#"{"type": "stdio", "command": "c", "url": "http://h", "headers": {}}"#,
            &[
                "mcpServers.x.url: not used by the stdio transport",
                "mcpServers.x.headers: not used by the stdio transport",
            ],
        ),
        (
            r#"{"command": "c", "url": "http://h"}"#,
            &[
                "mcpServers.x.url: cannot be combined with `command`; write `type: sse` to start `command` and then connect to `url`",
            ],
        ),
        (
            r#"{"type": "http", "command": "c"}"#,
            &[
                "mcpServers.x.command: not used by the streamable-http transport",
                "mcpServers.x: missing `url`, required by the streamable-http transport",
            ],
        ),
        (
            r#"{"url": "http://h", "args": [], "env": {}, "cwd": "d", "envFile": "f", "inheritEnv": true}"#,
            &[
                "mcpServers.x.args: not used by the streamable-http transport",
                "mcpServers.x.env: not used by the streamable-http transport",
                "mcpServers.x.cwd: not used by the streamable-http transport",
                "mcpServers.x.envFile: not used by the streamable-http transport",
                "mcpServers.x.inheritEnv: not used by the streamable-http transport",
            ],
        ),
        (
            r#"{"type": "sse", "command": "c"}"#,
            &["mcpServers.x: missing `url`, required by the sse transport"],
        ),
        (
            r#"{"type": "sse", "url": "http://h", "args": ["a"]}"#,
            &[
                "mcpServers.x.args: only used with `command`, which an sse backend may start before connecting",
            ],
        ),
        (
            r#"{"type": "sse", "url": "http://h", "inheritEnv": ["A"]}"#,
            &[
                "mcpServers.x.inheritEnv: only used with `command`, which an sse backend may start before connecting",
            ],
        ),
        // types
        (
            r#"{"command": 5}"#,
            &["mcpServers.x.command: expected a string, found a number"],
        ),
        (
            r#"{"command": ""}"#,
            &["mcpServers.x.command: must not be empty"],
        ),
        (
            r#"{"command": "c", "args": 5}"#,
            &["mcpServers.x.args: expected a list of strings, found a number"],
        ),
        (
            r#"{"command": "c", "args": "a b"}"#,
            &["mcpServers.x.args: expected a list of strings, found a string"],
        ),
        (
            r#"{"command": "c", "args": ["a", {"b": 1}, null]}"#,
            &[
                "mcpServers.x.args[1]: expected a string, found an object",
                "mcpServers.x.args[2]: expected a string, found null",
            ],
        ),
        (
            r#"{"command": "c", "env": ["A=1"]}"#,
            &["mcpServers.x.env: expected an object of names to strings, found a list"],
        ),
        (
            r#"{"command": "c", "env": {"A": [1]}}"#,
            &["mcpServers.x.env.A: expected a string, found a list"],
        ),
        (
            r#"{"command": "c", "env": {"A=B": "1", "": "2"}}"#,
            &[
                "mcpServers.x.env.\"A=B\": invalid environment variable name",
                "mcpServers.x.env.\"\": invalid environment variable name",
            ],
        ),
        (
            r#"{"command": "c", "inheritEnv": "yes"}"#,
            &[
                "mcpServers.x.inheritEnv: expected true, false or a list of variable names, found a string",
            ],
        ),
        (
            r#"{"command": "c", "inheritEnv": {"AWS_REGION": true}}"#,
            &[
                "mcpServers.x.inheritEnv: expected true, false or a list of variable names, found an object",
            ],
        ),
        (
            r#"{"command": "c", "inheritEnv": null}"#,
            &[
                "mcpServers.x.inheritEnv: expected true, false or a list of variable names, found null",
            ],
        ),
        (
            r#"{"command": "c", "inheritEnv": ["OK", 1, "", "A=B", "*", "A*B", "**", "OK_*"]}"#,
            &[
                "mcpServers.x.inheritEnv[1]: expected a string, found a number",
                "mcpServers.x.inheritEnv[2]: expected a variable name, or a prefix ending in `*` (`AWS_*`)",
                "mcpServers.x.inheritEnv[3]: expected a variable name, or a prefix ending in `*` (`AWS_*`)",
                "mcpServers.x.inheritEnv[4]: expected a variable name, or a prefix ending in `*` (`AWS_*`)",
                "mcpServers.x.inheritEnv[5]: expected a variable name, or a prefix ending in `*` (`AWS_*`)",
                "mcpServers.x.inheritEnv[6]: expected a variable name, or a prefix ending in `*` (`AWS_*`)",
            ],
        ),
        (
            r#"{"command": "c", "inheritEnv": ["KUBERNETES_SERVICE_HOST", "KUBERNETES_*", "KUBECONFIG"]}"#,
            &[
                "mcpServers.x.inheritEnv[0]: KUBERNETES_* variables are never passed to a backend",
                "mcpServers.x.inheritEnv[1]: KUBERNETES_* variables are never passed to a backend",
            ],
        ),
        (
            r#"{"command": "c", "cwd": 1}"#,
            &["mcpServers.x.cwd: expected a string, found a number"],
        ),
        (
            r#"{"command": "c", "envFile": ""}"#,
            &["mcpServers.x.envFile: must not be empty"],
        ),
        (
            r#"{"url": "not a url"}"#,
            &["mcpServers.x.url: not a valid URL (relative URL without a base)"],
        ),
        (
            r#"{"url": "ftp://h/x"}"#,
            &["mcpServers.x.url: expected an http or https URL, found scheme \"ftp\""],
        ),
        (
            r#"{"url": "http://"}"#,
            &["mcpServers.x.url: not a valid URL (empty host)"],
        ),
        (
            r#"{"url": "http://h", "headers": {"Bad Name": "v", "X-Ok": "line\nbreak"}}"#,
            &[
                "mcpServers.x.headers.\"Bad Name\": invalid HTTP header name",
                "mcpServers.x.headers.X-Ok: the value contains a control character",
            ],
        ),
        (
            r#"{"url": "http://h", "headers": ["a"]}"#,
            &["mcpServers.x.headers: expected an object of names to strings, found a list"],
        ),
        (
            r#"{"command": "c", "prefix": "a.b"}"#,
            &[
                "mcpServers.x.prefix: may only contain A-Z, a-z, 0-9, `_` and `-` (public tool names must match ^[A-Za-z0-9_-]{1,64}$)",
            ],
        ),
        (
            r#"{"command": "c", "prefix": null}"#,
            &["mcpServers.x.prefix: expected a string, found null"],
        ),
        (
            r#"{"command": "c", "tools": ["a"]}"#,
            &[
                "mcpServers.x.tools: expected an object with `include` and `exclude` lists, found a list",
            ],
        ),
        (
            r#"{"command": "c", "tools": {"include": ["a[", "ok*"], "exclude": "b"}}"#,
            &[
                "mcpServers.x.tools.include[0]: invalid glob: unclosed character class; missing ']'",
                "mcpServers.x.tools.exclude: expected a list of strings, found a string",
            ],
        ),
        (
            r#"{"command": "c", "tools": {"includes": []}}"#,
            &["mcpServers.x.tools.includes: unknown key; did you mean \"include\"?"],
        ),
        (
            r#"{"command": "c", "timeout": 0}"#,
            &["mcpServers.x.timeout: must be greater than zero"],
        ),
        (
            r#"{"command": "c", "timeout": "soon"}"#,
            &[
                "mcpServers.x.timeout: expected a number of seconds or a string such as \"500ms\", \"30s\", \"2m\" or \"1h\"",
            ],
        ),
        (
            r#"{"command": "c", "disabled": "yes"}"#,
            &["mcpServers.x.disabled: expected true or false, found a string"],
        ),
        (
            r#""npx server""#,
            &["mcpServers.x: expected an object describing the backend, found a string"],
        ),
        // disabled backends are validated all the same
        (
            r#"{"disabled": true, "comand": "c"}"#,
            &[
                "mcpServers.x.comand: unknown key; did you mean \"command\"?",
                "mcpServers.x: needs `command` (stdio) or `url` (sse, streamable-http)",
            ],
        ),
        // unknown keys
        (
            r#"{"comand": "c"}"#,
            &[
                "mcpServers.x.comand: unknown key; did you mean \"command\"?",
                "mcpServers.x: needs `command` (stdio) or `url` (sse, streamable-http)",
            ],
        ),
        (
            r#"{"command": "c", "arg": ["a"]}"#,
            &["mcpServers.x.arg: unknown key; did you mean \"args\"?"],
        ),
        (
            r#"{"url": "http://h", "hedaers": {}}"#,
            &["mcpServers.x.hedaers: unknown key; did you mean \"headers\"?"],
        ),
        (
            r#"{"command": "c", "flavour": 1}"#,
            &["mcpServers.x.flavour: unknown key"],
        ),
    ];
    for (entry, want) in cases {
        assert_eq!(problems(&one(entry)), *want, "{entry}");
    }
}

#[test]
fn top_level_rules() {
    let cases: &[(&str, &[&str])] = &[
        (
            "[1, 2]",
            &["expected an object at the top level, found a list"],
        ),
        (
            "just text",
            &["expected an object at the top level, found a string"],
        ),
        (
            r#"{"mcpServers": [], "gateway": {}}"#,
            &["mcpServers: expected an object of backend names to backends, found a list"],
        ),
        (
            r#"{"mcpServers": {}, "servers": {}}"#,
            &["servers: both `mcpServers` and `servers` are given; put every backend under one"],
        ),
        (
            r#"{"mcpServers": {}, "gatway": {}}"#,
            &["gatway: unknown key; did you mean \"gateway\"?"],
        ),
        (r#"{"servers": {}, "extra": 1}"#, &["extra: unknown key"]),
        (
            r#"{"servers": {}, "inputs": [{"id": "token", "type": "promptString"}]}"#,
            &[
                "inputs: VS Code `inputs` are not supported: the gateway cannot prompt for `${input:…}` variables; put the value in an environment variable and write `${VAR}` instead",
            ],
        ),
        (
            r#"{"servers": {"x": {"url": "http://h", "headers": {"A": "${input:token}"}}}}"#,
            &[
                "servers.x.headers.A: `${input:…}` variables are not supported; write `${VAR}` to read the value from an environment variable",
            ],
        ),
        (
            r#"{"mcpServers": {"": {"command": "c"}}}"#,
            &["mcpServers.\"\": backend names must not be empty"],
        ),
        (
            r#"{"gateway": [], "s": {"command": "c"}}"#,
            &["gateway: expected an object of gateway settings, found a list"],
        ),
        (
            r#"{"gateway": {"separater": "_"}}"#,
            &["gateway.separater: unknown key; did you mean \"separator\"?"],
        ),
        // The older format: a misspelled section is not taken for a backend.
        (
            r#"{"mcpServer": {"github": {"command": "c"}}}"#,
            &["mcpServer: unknown key; did you mean \"mcpServers\"?"],
        ),
        (
            r#"{"s": 5}"#,
            &["s: expected an object describing the backend, found a number"],
        ),
        (
            r#"{"s": {"comand": "c"}}"#,
            &[
                "s.comand: unknown key; did you mean \"command\"?",
                "s: needs `command` (stdio) or `url` (sse, streamable-http)",
            ],
        ),
    ];
    for (text, want) in cases {
        assert_eq!(problems(text), *want, "{text}");
    }
}

#[test]
fn expansion_problems() {
    let cases: &[(&str, &[&str])] = &[
        (
            r#"{"command": "c", "env": {"T": "${GH_TOKEN}"}}"#,
            &[
                "mcpServers.x.env.T: environment variable GH_TOKEN is not set (write ${GH_TOKEN:-value} to give a default)",
            ],
        ),
        (
            r#"{"command": "c", "args": ["ok", "${A} ${B:-b} ${C}"]}"#,
            &[
                "mcpServers.x.args[1]: environment variable A is not set (write ${A:-value} to give a default)",
                "mcpServers.x.args[1]: environment variable C is not set (write ${C:-value} to give a default)",
            ],
        ),
        (
            r#"{"url": "${BASE_URL}/mcp"}"#,
            &[
                "mcpServers.x.url: environment variable BASE_URL is not set (write ${BASE_URL:-value} to give a default)",
            ],
        ),
        (
            r#"{"command": "c", "timeout": "${T"}"#,
            &["mcpServers.x.timeout: unterminated `${` (write `$$` for a literal `$`)"],
        ),
    ];
    for (entry, want) in cases {
        assert_eq!(problems(&one(entry)), *want, "{entry}");
    }
}

#[test]
fn every_problem_at_once() {
    let text = r#"
mcpServers:
  github:
    comand: npx
    args: 5
    env:
      GITHUB_TOKEN: ${GITHUB_PAT}
  web:
    url: ftp://example.com
    timeout: -1
  ok:
    command: fine
gateway:
  separater: "-"
  port: 99999
"#;
    let error = load_text(text).err().unwrap_or_else(|| panic!("loaded"));
    assert_eq!(
        error.to_string(),
        [
            "test: mcpServers.github.comand: unknown key; did you mean \"command\"?",
            "test: mcpServers.github.args: expected a list of strings, found a number",
            "test: mcpServers.github.env.GITHUB_TOKEN: environment variable GITHUB_PAT is not set (write ${GITHUB_PAT:-value} to give a default)",
            "test: mcpServers.github: needs `command` (stdio) or `url` (sse, streamable-http)",
            "test: mcpServers.web.url: expected an http or https URL, found scheme \"ftp\"",
            "test: mcpServers.web.timeout: must be greater than zero",
            "test: gateway.separater: unknown key; did you mean \"separator\"?",
            "test: gateway.port: expected a port number (0-65535)",
        ]
        .join("\n")
    );
    assert_eq!(error.source, "test");
    assert_eq!(error.problems.len(), 8);
}

#[test]
fn syntax_errors_name_line_and_column() {
    let cases = [
        (
            "{\n  \"mcpServers\": {\n    \"a\": {\"command\": \"x\"}\n    \"b\": {}\n  }\n}",
            "test: line 4 column 5: invalid JSON: expected `,` or `}`",
        ),
        (
            "mcpServers:\n  a:\n    command: x\n   args: [1]\n",
            "test: line 4 column 4: invalid YAML: while parsing a block mapping, did not find expected key",
        ),
        (
            "mcpServers:\n  a:\n    command: x\n  a:\n    command: y\n",
            "test: line 4 column 3: invalid YAML: duplicate mapping key `a` is not allowed here",
        ),
        (
            "{\"mcpServers\": {\"a\": {\"command\": \"x\"}, \"a\": {}}}",
            "test: line 1 column 42: invalid JSON: duplicate key \"a\"",
        ),
    ];
    for (text, want) in cases {
        let error = load_text(text)
            .err()
            .unwrap_or_else(|| panic!("loaded: {text}"));
        assert_eq!(error.to_string(), want, "{text}");
    }
}

#[test]
fn secrets_stay_out_of_messages() {
    let text = r#"{"mcpServers": {
        "a": {"command": "c", "env": {"TOKEN": "${GITHUB_TOKEN}", "RAW": "hunter2"}, "bogus": 1},
        "b": {"url": "http://h", "headers": {"Authorization": "Bearer ${API_KEY}\n", "X": "hunter2"}, "cwd": "d"}
    }}"#;
    let error = load_text(text).err().unwrap_or_else(|| panic!("loaded"));
    let shown = format!("{error}\n{error:?}");
    assert_eq!(error.problems.len(), 3, "{shown}");
    for secret in ["ghp_s3cret", "key-s3cret", "hunter2"] {
        assert!(!shown.contains(secret), "{secret} leaked: {shown}");
    }
}
