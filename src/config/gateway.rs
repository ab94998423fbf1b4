//! The `gateway:` section: settings of the gateway itself rather than of a backend.

use serde_json::Value;

use super::fields::{self, Report, key_path};
use super::units;
use crate::spec::GatewaySettings;

/// Keys of the `gateway` section.
pub(super) const KEYS: &[&str] = &[
    "separator",
    "requestTimeout",
    "startupTimeout",
    "startupConcurrency",
    "shutdownGrace",
    "maxBodyBytes",
    "allowedHosts",
    "host",
    "port",
    "allowedOrigins",
    "maxSessions",
    "sessionIdleTimeout",
    "maxRequestsPerSession",
    "maxRequestsPerBackend",
    "maxClientSessionsPerBackend",
    "queueTimeout",
    "maxBatch",
    "maxConnections",
    "headerTimeout",
    "bodyTimeout",
    "idleTimeout",
    "writeTimeout",
    "listPageSize",
];

/// Reads the `gateway` section at `path`; anything not given keeps its default.
pub(super) fn settings(report: &mut Report, path: &str, value: &Value) -> GatewaySettings {
    let mut settings = GatewaySettings::default();
    let Some(entries) = fields::entries(report, path, value, "an object of gateway settings")
    else {
        return settings;
    };
    for (key, value) in entries {
        let path = key_path(path, key);
        let path = path.as_str();
        match key {
            "separator" => {
                if let Some(separator) = fields::non_empty(report, path, value) {
                    if !fields::is_name_safe(&separator) {
                        report.warn(
                            path,
                            "contains characters outside [A-Za-z0-9_-]; public tool names \
                             must match ^[A-Za-z0-9_-]{1,64}$ and some clients reject others",
                        );
                    }
                    settings.separator = separator;
                }
            }
            "requestTimeout" => set_duration(report, path, value, &mut settings.request_timeout),
            "startupTimeout" => set_duration(report, path, value, &mut settings.startup_timeout),
            "startupConcurrency" => {
                set_count(report, path, value, &mut settings.startup_concurrency)
            }
            "shutdownGrace" => set_duration(report, path, value, &mut settings.shutdown_grace),
            "maxBodyBytes" => match units::size(value) {
                Ok(bytes) => settings.max_body_bytes = bytes,
                Err(message) => report.problem(path, message),
            },
            "allowedHosts" => {
                if let Some(hosts) = fields::string_list(report, path, value, false) {
                    settings.allowed_hosts = hosts;
                }
            }
            "allowedOrigins" => {
                if let Some(origins) = fields::string_list(report, path, value, false) {
                    settings.allowed_origins = origins;
                }
            }
            "maxSessions" => set_count(report, path, value, &mut settings.limits.max_sessions),
            "sessionIdleTimeout" => {
                set_duration(report, path, value, &mut settings.limits.session_idle)
            }
            "maxRequestsPerSession" => set_count(
                report,
                path,
                value,
                &mut settings.limits.max_requests_per_session,
            ),
            "maxRequestsPerBackend" => set_count(
                report,
                path,
                value,
                &mut settings.limits.max_requests_per_backend,
            ),
            "maxClientSessionsPerBackend" => set_count(
                report,
                path,
                value,
                &mut settings.limits.max_client_sessions_per_backend,
            ),
            "queueTimeout" => set_duration(report, path, value, &mut settings.limits.queue_timeout),
            "maxBatch" => set_count(report, path, value, &mut settings.limits.max_batch),
            "maxConnections" => {
                set_count(report, path, value, &mut settings.limits.max_connections)
            }
            "headerTimeout" => {
                set_duration(report, path, value, &mut settings.limits.header_timeout)
            }
            "bodyTimeout" => set_duration(report, path, value, &mut settings.limits.body_timeout),
            "idleTimeout" => set_duration(report, path, value, &mut settings.limits.idle_timeout),
            "writeTimeout" => set_duration(report, path, value, &mut settings.limits.write_timeout),
            "listPageSize" => {
                let mut size = 0;
                set_count(report, path, value, &mut size);
                settings.list_page_size = (size > 0).then_some(size);
            }
            "host" => settings.host = fields::non_empty(report, path, value),
            "port" => settings.port = port(report, path, value),
            _ => fields::unknown_key(report, path, key, KEYS),
        }
    }
    settings
}

fn set_duration(report: &mut Report, path: &str, value: &Value, slot: &mut std::time::Duration) {
    match units::duration(value) {
        Ok(duration) => *slot = duration,
        Err(message) => report.problem(path, message),
    }
}

/// A limit: a whole number of at least 1 (also as a string, what `${N}` expands to).
fn set_count(report: &mut Report, path: &str, value: &Value, slot: &mut usize) {
    let number = match value {
        Value::Number(number) => number.as_u64(),
        Value::String(text) => text.trim().parse::<u64>().ok(),
        other => {
            fields::expected(report, path, "a whole number of at least 1", other);
            return;
        }
    };
    match number
        .and_then(|n| usize::try_from(n).ok())
        .filter(|n| *n >= 1)
    {
        Some(n) => *slot = n,
        None => report.problem(path, "expected a whole number of at least 1"),
    }
}

/// A TCP port: an integer 0-65535, also as a string (what `${PORT}` expands to).
fn port(report: &mut Report, path: &str, value: &Value) -> Option<u16> {
    let number = match value {
        Value::Number(number) => number.as_u64(),
        Value::String(text) => text.trim().parse::<u64>().ok(),
        other => {
            fields::expected(report, path, "a port number (0-65535)", other);
            return None;
        }
    };
    let port = number.and_then(|n| u16::try_from(n).ok());
    if port.is_none() {
        report.problem(path, "expected a port number (0-65535)");
    }
    port
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::time::Duration;

    fn read(value: Value) -> (GatewaySettings, Vec<String>, Vec<String>) {
        let mut report = Report::default();
        let settings = settings(&mut report, "gateway", &value);
        let problems = report.problems.iter().map(ToString::to_string).collect();
        (settings, problems, report.warnings)
    }

    #[test]
    fn every_key() {
        let (settings, problems, warnings) = read(json!({
            "separator": "-",
            "requestTimeout": "2m",
            "startupTimeout": 10,
            "startupConcurrency": "3",
            "shutdownGrace": "1500ms",
            "maxBodyBytes": "1MiB",
            "allowedHosts": ["example.com", "*.internal"],
            "host": "0.0.0.0",
            "port": 8080,
            "allowedOrigins": ["https://app.example"],
            "maxSessions": 100,
            "sessionIdleTimeout": "5m",
            "maxRequestsPerSession": "8",
            "maxRequestsPerBackend": 16,
            "maxClientSessionsPerBackend": 5,
            "queueTimeout": "2s",
            "maxBatch": 4,
            "maxConnections": 50,
            "headerTimeout": "1s",
            "bodyTimeout": "3s",
            "idleTimeout": "20s",
            "writeTimeout": "7s",
            "listPageSize": 500,
        }));
        assert_eq!(problems, Vec::<String>::new());
        assert_eq!(warnings, Vec::<String>::new());
        let want = GatewaySettings {
            separator: "-".into(),
            request_timeout: Duration::from_secs(120),
            startup_timeout: Duration::from_secs(10),
            startup_concurrency: 3,
            max_body_bytes: 1 << 20,
            shutdown_grace: Duration::from_millis(1500),
            allowed_hosts: vec!["example.com".into(), "*.internal".into()],
            host: Some("0.0.0.0".into()),
            port: Some(8080),
            allowed_origins: vec!["https://app.example".into()],
            list_page_size: Some(500),
            limits: crate::spec::Limits {
                max_sessions: 100,
                session_idle: Duration::from_secs(300),
                max_requests_per_session: 8,
                max_requests_per_backend: 16,
                max_client_sessions_per_backend: 5,
                queue_timeout: Duration::from_secs(2),
                max_batch: 4,
                max_connections: 50,
                header_timeout: Duration::from_secs(1),
                body_timeout: Duration::from_secs(3),
                idle_timeout: Duration::from_secs(20),
                write_timeout: Duration::from_secs(7),
            },
        };
        assert_eq!(settings, want);
    }

    #[test]
    fn defaults() {
        for value in [json!({}), Value::Null] {
            let (settings, problems, _) = read(value);
            assert_eq!(settings, GatewaySettings::default());
            assert!(problems.is_empty());
        }
        let (settings, _, _) = read(json!({"port": "0"}));
        assert_eq!(settings.port, Some(0));
    }

    #[test]
    fn problems() {
        let cases = [
            (
                json!({"separater": "_"}),
                "gateway.separater: unknown key; did you mean \"separator\"?",
            ),
            (
                json!({"separator": ""}),
                "gateway.separator: must not be empty",
            ),
            (
                json!({"separator": 1}),
                "gateway.separator: expected a string, found a number",
            ),
            (
                json!({"requestTimeout": 0}),
                "gateway.requestTimeout: must be greater than zero",
            ),
            (
                json!({"maxBodyBytes": "lots"}),
                "gateway.maxBodyBytes: expected a number of bytes or a string such as \"512KiB\", \"8MiB\", \"1GiB\" or \"10MB\"",
            ),
            (
                json!({"allowedHosts": "x"}),
                "gateway.allowedHosts: expected a list of strings, found a string",
            ),
            (
                json!({"allowedHosts": [1]}),
                "gateway.allowedHosts[0]: expected a string, found a number",
            ),
            (json!({"host": ""}), "gateway.host: must not be empty"),
            (
                json!({"port": 70000}),
                "gateway.port: expected a port number (0-65535)",
            ),
            (
                json!({"port": -1}),
                "gateway.port: expected a port number (0-65535)",
            ),
            (
                json!({"port": "http"}),
                "gateway.port: expected a port number (0-65535)",
            ),
            (
                json!({"port": [80]}),
                "gateway.port: expected a port number (0-65535), found a list",
            ),
            (
                json!([]),
                "gateway: expected an object of gateway settings, found a list",
            ),
            (
                json!({"maxSessions": 0}),
                "gateway.maxSessions: expected a whole number of at least 1",
            ),
            (
                json!({"startupConcurrency": 0}),
                "gateway.startupConcurrency: expected a whole number of at least 1",
            ),
            (
                json!({"startupConcurrency": 2.5}),
                "gateway.startupConcurrency: expected a whole number of at least 1",
            ),
            (
                json!({"maxBatch": true}),
                "gateway.maxBatch: expected a whole number of at least 1, found a boolean",
            ),
            (
                json!({"sessionIdleTimeout": "0s"}),
                "gateway.sessionIdleTimeout: must be greater than zero",
            ),
            (
                json!({"idleTimeout": "soon"}),
                "gateway.idleTimeout: expected a number of seconds or a string such as \"500ms\", \"30s\", \"2m\" or \"1h\"",
            ),
        ];
        for (value, want) in cases {
            let (_, problems, _) = read(value.clone());
            assert_eq!(problems, [want], "{value}");
        }
    }

    #[test]
    fn odd_separator_warns() {
        let (settings, problems, warnings) = read(json!({"separator": "."}));
        assert_eq!(settings.separator, ".");
        assert!(problems.is_empty());
        assert_eq!(warnings.len(), 1);
        assert!(warnings[0].starts_with("gateway.separator: contains characters outside"));
    }
}
