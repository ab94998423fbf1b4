//! The environment of a child process.
//!
//! A stdio backend is a program that any MCP client of the gateway can drive, and some servers
//! hand their environment back on request (server-everything's `get-env`, debugging tools,
//! error reports). So a child does not inherit the gateway's environment, which holds cloud
//! credentials, tokens for `${VAR}` expansion and, in a pod, the Kubernetes service links. It
//! gets the variables a program needs to run ([`MINIMAL`]), what its backend's `inheritEnv`
//! opts in to, and its own `env`/`envFile` on top. `KUBERNETES_*` from the gateway never
//! pass.
//!
//! Some variables of the minimal set can carry credentials (a proxy URL with a password, a
//! package-index token); they are passed because `npx` and `uvx` cannot fetch a package
//! without them where they are set. Each is marked below.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;

use crate::spec::{InheritEnv, NEVER_INHERITED, ProcessSpec};

/// What every child gets from the gateway's environment: names, or prefixes ending in `*`.
pub const MINIMAL: &[&str] = &[
    // Where programs are found (`npx` → `node`, `uvx` → `python`).
    "PATH",
    // Who and where the user is: caches (`~/.npm`, `~/.cache/uv`), `~/.npmrc`, tools that
    // look up the user.
    "HOME",
    "USER",
    "LOGNAME",
    "SHELL",
    "TERM",
    // Locale and time zone: decoding of file names and output, local times.
    "LANG",
    "LANGUAGE",
    "LC_*",
    "TZ",
    // Where temporary files go (npm and uv unpack there).
    "TMPDIR",
    // XDG base directories: uv's cache, tools and Python installs, config files
    // (`XDG_CONFIG_DIRS` holds uv's system-wide `uv.toml`). Not `XDG_RUNTIME_DIR`: it holds
    // the session's sockets (D-Bus, a rootless Docker), which a server does not need.
    "XDG_CONFIG_HOME",
    "XDG_CACHE_HOME",
    "XDG_DATA_HOME",
    "XDG_STATE_HOME",
    "XDG_BIN_HOME",
    "XDG_CONFIG_DIRS",
    "XDG_DATA_DIRS",
    // Extra or replacement CA certificates, for a TLS-intercepting proxy or a private
    // registry: Node (`NODE_EXTRA_CA_CERTS`), OpenSSL, Python and uv (`SSL_CERT_FILE`,
    // `SSL_CERT_DIR`: behind such a proxy `uvx` cannot reach PyPI without them), Python
    // `requests`, pip and curl (`REQUESTS_CA_BUNDLE`, `CURL_CA_BUNDLE`), git for packages
    // fetched from a repository (`GIT_SSL_CAINFO`). Paths, not secrets.
    "NODE_EXTRA_CA_CERTS",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
    "GIT_SSL_CAINFO",
    // npm's settings (`npm_config_registry`, `…_cache`, `…_userconfig`); npm reads them in
    // either case. CAN CARRY CREDENTIALS: `npm_config__authToken`, a registry or proxy URL with
    // a password.
    "npm_config_*",
    "NPM_CONFIG_*",
    // uv's settings (`UV_INDEX_URL`, `UV_CACHE_DIR`, `UV_PYTHON`, `UV_OFFLINE`, `UV_NATIVE_TLS`).
    // CAN CARRY CREDENTIALS: `UV_INDEX_<NAME>_PASSWORD`, an index URL with a password. (Not
    // `UV_PUBLISH_*`: see `MINIMAL_EXCEPT`.)
    "UV_*",
    // pip's settings, for `pipx run` and servers that install at start (`PIP_INDEX_URL`,
    // `PIP_CERT`). CAN CARRY CREDENTIALS: an index URL with a password.
    "PIP_*",
    // Proxies, in both spellings: curl, Python and uv read the lower case, npm and Node
    // tools either. CAN CARRY CREDENTIALS: `http://user:password@proxy:3128`.
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
    "no_proxy",
];

/// Left out of [`MINIMAL`] although a prefix there matches: uv's publishing credentials
/// (`UV_PUBLISH_TOKEN`, `UV_PUBLISH_PASSWORD`), which running a package never needs.
pub const MINIMAL_EXCEPT: &[&str] = &["UV_PUBLISH_*"];

/// The environment of a child running `spec`, from the gateway's own (`std::env::vars_os()`).
/// Apply it to a command cleared with `env_clear()`.
pub fn child_env(
    gateway: impl IntoIterator<Item = (OsString, OsString)>,
    spec: &ProcessSpec,
) -> BTreeMap<OsString, OsString> {
    let mut env: BTreeMap<OsString, OsString> = gateway
        .into_iter()
        .filter(|(name, _)| inherits(&spec.inherit_env, name.as_bytes()))
        .collect();
    env.extend(
        spec.env
            .iter()
            .map(|(name, value)| (OsString::from(name), OsString::from(value))),
    );
    env
}

/// Whether the gateway's variable `name` passes to a child.
fn inherits(inherit: &InheritEnv, name: &[u8]) -> bool {
    if name.starts_with(NEVER_INHERITED.as_bytes()) {
        return false;
    }
    let minimal = || {
        MINIMAL.iter().any(|pattern| matches(pattern, name))
            && !MINIMAL_EXCEPT.iter().any(|pattern| matches(pattern, name))
    };
    match inherit {
        InheritEnv::All => true,
        InheritEnv::Minimal => minimal(),
        InheritEnv::Names(patterns) => {
            minimal() || patterns.iter().any(|pattern| matches(pattern, name))
        }
    }
}

/// `pattern` is a name, or a prefix when it ends in `*`; case matters, as in the environment.
fn matches(pattern: &str, name: &[u8]) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix.as_bytes()),
        None => name == pattern.as_bytes(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A gateway's environment: what a workstation or a pod typically has.
    const GATEWAY: &[(&str, &str)] = &[
        ("PATH", "/usr/local/bin:/usr/bin"),
        ("HOME", "/home/gw"),
        ("USER", "gw"),
        ("LANG", "C.UTF-8"),
        ("LC_ALL", "C.UTF-8"),
        ("TMPDIR", "/tmp"),
        ("XDG_CACHE_HOME", "/home/gw/.cache"),
        ("XDG_RUNTIME_DIR", "/run/user/1000"),
        ("SSL_CERT_FILE", "/etc/ssl/ca.pem"),
        ("npm_config_registry", "https://npm.internal/"),
        ("NPM_CONFIG_CACHE", "/cache/npm"),
        ("UV_INDEX_URL", "https://pypi.internal/simple"),
        ("UV_PUBLISH_TOKEN", "pypi-s3cret"),
        ("PIP_INDEX_URL", "https://pypi.internal/simple"),
        ("HTTPS_PROXY", "http://proxy:3128"),
        ("no_proxy", "localhost"),
        ("AWS_SECRET_ACCESS_KEY", "aws-s3cret"),
        ("AWS_REGION", "eu-west-1"),
        ("GITHUB_TOKEN", "ghp_s3cret"),
        ("KUBERNETES_SERVICE_HOST", "10.0.0.1"),
        ("KUBERNETES_PORT_443_TCP", "tcp://10.0.0.1:443"),
        ("MCP_GATEWAY_LOG", "debug"),
    ];

    fn gateway() -> Vec<(OsString, OsString)> {
        GATEWAY
            .iter()
            .map(|(k, v)| (OsString::from(k), OsString::from(v)))
            .collect()
    }

    fn spec(inherit_env: InheritEnv, env: &[(&str, &str)]) -> ProcessSpec {
        ProcessSpec {
            command: "srv".into(),
            env: env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            inherit_env,
            ..ProcessSpec::default()
        }
    }

    fn names(patterns: &[&str]) -> InheritEnv {
        InheritEnv::Names(patterns.iter().map(|p| (*p).to_owned()).collect())
    }

    /// The names a child gets, sorted.
    fn passed(spec: &ProcessSpec) -> Vec<String> {
        child_env(gateway(), spec)
            .into_keys()
            .map(|k| k.to_string_lossy().into_owned())
            .collect()
    }

    const MINIMAL_PASSED: &[&str] = &[
        "HOME",
        "HTTPS_PROXY",
        "LANG",
        "LC_ALL",
        "NPM_CONFIG_CACHE",
        "PATH",
        "PIP_INDEX_URL",
        "SSL_CERT_FILE",
        "TMPDIR",
        "USER",
        "UV_INDEX_URL",
        "XDG_CACHE_HOME",
        "no_proxy",
        "npm_config_registry",
    ];

    #[test]
    fn which_variables_pass() {
        let with = |extra: &[&str]| {
            let mut all: Vec<String> = MINIMAL_PASSED
                .iter()
                .chain(extra)
                .map(|s| (*s).to_owned())
                .collect();
            all.sort();
            all
        };
        let everything_but_kubernetes: Vec<String> = GATEWAY
            .iter()
            .map(|(k, _)| (*k).to_owned())
            .filter(|k| !k.starts_with("KUBERNETES_"))
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        let cases: &[(&str, InheritEnv, Vec<String>)] = &[
            ("minimal", InheritEnv::Minimal, with(&[])),
            ("a name", names(&["GITHUB_TOKEN"]), with(&["GITHUB_TOKEN"])),
            (
                "a prefix",
                names(&["AWS_*"]),
                with(&["AWS_REGION", "AWS_SECRET_ACCESS_KEY"]),
            ),
            (
                "names are exact and case-sensitive",
                names(&["AWS", "github_token", "GITHUB_TOKEN_2"]),
                with(&[]),
            ),
            (
                "opting in to what the minimal set leaves out",
                names(&["UV_PUBLISH_TOKEN", "XDG_RUNTIME_DIR"]),
                with(&["UV_PUBLISH_TOKEN", "XDG_RUNTIME_DIR"]),
            ),
            (
                "KUBERNETES_* never, even by name",
                names(&["KUBERNETES_SERVICE_HOST", "KUBE*"]),
                with(&[]),
            ),
            ("all", InheritEnv::All, everything_but_kubernetes),
        ];
        for (what, inherit, want) in cases {
            assert_eq!(&passed(&spec(inherit.clone(), &[])), want, "{what}");
        }
    }

    #[test]
    fn the_backend_env_is_set_on_top() {
        let spec = spec(
            InheritEnv::Minimal,
            &[
                ("HOME", "/srv/home"),
                ("API_KEY", "k"),
                ("KUBERNETES_NAMESPACE", "set-by-the-backend"),
            ],
        );
        let env = child_env(gateway(), &spec);
        let get = |name: &str| env.get(&OsString::from(name)).and_then(|v| v.to_str());
        assert_eq!(get("HOME"), Some("/srv/home"));
        assert_eq!(get("API_KEY"), Some("k"));
        // The backend's own setting is not the gateway's: it passes.
        assert_eq!(get("KUBERNETES_NAMESPACE"), Some("set-by-the-backend"));
        assert_eq!(get("PATH"), Some("/usr/local/bin:/usr/bin"));
        assert_eq!(get("AWS_SECRET_ACCESS_KEY"), None);
    }

    #[test]
    fn names_that_are_not_utf8_match_by_bytes() {
        let odd = OsString::from(std::ffi::OsStr::from_bytes(b"ODD_\xff"));
        let gateway = vec![(odd.clone(), OsString::from("v"))];
        let minimal = child_env(gateway.clone(), &spec(InheritEnv::Minimal, &[]));
        assert!(minimal.is_empty());
        let prefixed = child_env(gateway.clone(), &spec(names(&["ODD_*"]), &[]));
        assert!(prefixed.contains_key(&odd));
        let all = child_env(gateway, &spec(InheritEnv::All, &[]));
        assert!(all.contains_key(&odd));
    }

    #[test]
    fn patterns() {
        let cases = [
            ("LC_*", "LC_ALL", true),
            ("LC_*", "LC_", true),
            ("LC_*", "LANG", false),
            ("PATH", "PATH", true),
            ("PATH", "PATHS", false),
            ("PATH", "path", false),
            ("*", "ANY", true),
        ];
        for (pattern, name, want) in cases {
            assert_eq!(matches(pattern, name.as_bytes()), want, "{pattern} {name}");
        }
    }
}
