//! Tests of the whole loader, text in → `Config` or problems out.

mod golden;
mod rules;
mod shapes;

use std::collections::BTreeMap;
use std::path::Path;

use super::{Config, ConfigError, Format, parse};
use crate::spec::{BackendSpec, HttpSpec, InheritEnv, ProcessSpec, ToolFilter, TransportSpec};

/// Directory that relative paths resolve against in these tests.
const BASE: &str = "/etc/mcp";

fn env(name: &str) -> Option<String> {
    match name {
        "GITHUB_TOKEN" => Some("ghp_s3cret".to_owned()),
        "API_KEY" => Some("key-s3cret".to_owned()),
        "PORT" => Some("9000".to_owned()),
        "HOME" => Some("/home/me".to_owned()),
        _ => None,
    }
}

fn load_text(text: &str) -> Result<Config, ConfigError> {
    parse(text, "test", Format::Auto, Some(Path::new(BASE)), &env)
}

/// The config of a text that must load.
fn ok(text: &str) -> Config {
    match load_text(text) {
        Ok(config) => config,
        Err(error) => panic!("unexpected problems:\n{error}\nin:\n{text}"),
    }
}

/// The problems of a text that must not load, as `path: message`.
fn problems(text: &str) -> Vec<String> {
    match load_text(text) {
        Ok(config) => panic!("expected problems, got {config:?}\nin:\n{text}"),
        Err(error) => error.problems.iter().map(ToString::to_string).collect(),
    }
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn process(command: &str, args: &[&str]) -> ProcessSpec {
    ProcessSpec {
        command: command.to_owned(),
        args: strings(args),
        ..ProcessSpec::default()
    }
}

fn http(url: &str) -> HttpSpec {
    HttpSpec {
        url: url.to_owned(),
        headers: BTreeMap::new(),
    }
}

fn backend(name: &str, transport: TransportSpec) -> BackendSpec {
    BackendSpec {
        name: name.to_owned(),
        transport,
        prefix: super::backend::default_prefix(name),
        tools: ToolFilter::default(),
        timeout: None,
        disabled: false,
        sessions: Default::default(),
    }
}

fn stdio(name: &str, command: &str, args: &[&str]) -> BackendSpec {
    backend(name, TransportSpec::Stdio(process(command, args)))
}

fn streamable(name: &str, url: &str) -> BackendSpec {
    backend(name, TransportSpec::StreamableHttp(http(url)))
}
