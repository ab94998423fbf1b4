//! Live reload of the config file: when it changes on disk (or on SIGHUP) it is loaded again
//! and, if valid, the live set of backends is reconciled to it. Added backends start, removed
//! ones stop, ones whose command or URL changed are replaced, and naming, filter and timeout
//! edits apply without restarting the backend; every session is told through list_changed.
//! An invalid file is reported and the running config is kept. The log says what a reload
//! changed, and says each thing once: a warning the file had before, or a failure for a file
//! that has not changed since, is not repeated when the file is only touched again (a signal
//! is always answered).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;

use crate::config;
use crate::relay::Gateway;
use crate::spec::{BackendSpec, GatewaySettings};

/// Editors write a file in several steps; changes closer together than this are one reload.
const SETTLE: Duration = Duration::from_millis(250);

/// Watch `path` until the gateway shuts down.
pub async fn watch(gw: Arc<Gateway>, path: PathBuf) {
    watch_logged(gw, path, Vec::new()).await;
}

/// [`watch`] a file whose `warnings` were logged when it was loaded: a reload logs only
/// warnings that are new.
pub async fn watch_logged(gw: Arc<Gateway>, path: PathBuf, warnings: Vec<String>) {
    let (tx, mut rx) = mpsc::channel::<Trigger>(1);
    // Watch the directory: editors and Kubernetes ConfigMaps replace the file by renaming.
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_path_buf();
    let name = path.file_name().map(|n| n.to_owned());
    let fs_tx = tx.clone();
    let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let Ok(event) = event else { return };
        let ours = event
            .paths
            .iter()
            .any(|p| p.file_name() == name.as_deref() || p.ends_with("..data"));
        if ours && !event.kind.is_access() {
            let _ = fs_tx.try_send(Trigger::File);
        }
    });
    let _watcher = match watcher
        .and_then(|mut w| w.watch(&dir, RecursiveMode::NonRecursive).map(|_| w))
    {
        Ok(w) => Some(w),
        Err(e) => {
            tracing::warn!(config = %path.display(), error = %e, "cannot watch the config file; reload with SIGHUP");
            None
        }
    };
    tokio::spawn(forward_sighup(tx, gw.shutdown.clone()));
    let mut memory = Memory {
        warnings,
        ..Memory::default()
    };
    loop {
        let mut trigger = tokio::select! {
            _ = gw.shutdown.cancelled() => return,
            got = rx.recv() => match got {
                Some(t) => t,
                None => return,
            },
        };
        // Let a burst of writes finish, then take it as one change.
        tokio::time::sleep(SETTLE).await;
        while let Ok(t) = rx.try_recv() {
            trigger = trigger.max(t);
        }
        memory.reload(&gw, &path, trigger).await;
    }
}

async fn forward_sighup(tx: mpsc::Sender<Trigger>, shutdown: tokio_util::sync::CancellationToken) {
    let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) else {
        return;
    };
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = hup.recv() => {
                // A file event already waiting is upgraded: a signal is always answered.
                if tx.try_send(Trigger::Signal).is_err() {
                    let _ = tx.send(Trigger::Signal).await;
                }
            }
        }
    }
}

/// Load `path` and reconcile the gateway to it; returns whether it was applied. Logs every
/// warning and problem of the file.
pub async fn reload(gw: &Gateway, path: &Path) -> bool {
    Memory::default().reload(gw, path, Trigger::Signal).await
}

/// What asked for a reload. A signal is a person asking: it is always answered. A change of
/// the file may come twice for one edit (several events, a ConfigMap's swap).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Trigger {
    File,
    Signal,
}

/// What the watcher has already said about the file, so that each thing is said once.
#[derive(Default)]
struct Memory {
    /// The warnings of the file as last loaded; they were logged then.
    warnings: Vec<String>,
    /// The `gateway:` section as last loaded, when it differed from the running one (which
    /// was logged then).
    gateway: Option<GatewaySettings>,
    /// The last reload that failed: what the file held (`None`: it could not be read) and
    /// what was wrong with it.
    failure: Option<(Option<Vec<u8>>, String)>,
}

impl Memory {
    async fn reload(&mut self, gw: &Gateway, path: &Path, trigger: Trigger) -> bool {
        let cfg = match config::load(path) {
            Ok(c) => c,
            Err(e) => {
                let failure = (std::fs::read(path).ok(), e.to_string());
                if trigger == Trigger::File && self.failure.as_ref() == Some(&failure) {
                    tracing::debug!(config = %path.display(), "config file unchanged since its last reload failed");
                } else {
                    tracing::error!("config not reloaded, keeping the running one:\n{e}");
                }
                self.failure = Some(failure);
                gw.metrics.config_reload(false);
                return false;
            }
        };
        self.failure = None;
        for w in cfg.warnings.iter().filter(|w| !self.warnings.contains(w)) {
            tracing::warn!("{w}");
        }
        self.warnings = cfg.warnings;
        let restart_needed = cfg.gateway.separator != gw.settings.separator
            || cfg.gateway.max_body_bytes != gw.settings.max_body_bytes
            || cfg.gateway.host != gw.settings.host
            || cfg.gateway.port != gw.settings.port;
        if !restart_needed {
            self.gateway = None;
        } else if self.gateway.as_ref() != Some(&cfg.gateway) {
            tracing::warn!("changes to the gateway: section take effect after a restart");
            self.gateway = Some(cfg.gateway);
        }
        let before = specs(gw);
        let wanted = cfg.backends.clone();
        gw.reconcile(cfg.backends).await;
        let changes = Changes::between(&before, &wanted, &specs(gw));
        gw.metrics.config_reload(true);
        tracing::info!(
            config = %path.display(),
            backends = wanted.len(),
            added = changes.added.len(),
            changed = changes.changed.len(),
            removed = changes.removed.len(),
            "config reloaded: {changes}"
        );
        true
    }
}

/// Every backend the gateway runs, by name.
fn specs(gw: &Gateway) -> BTreeMap<Arc<str>, Arc<BackendSpec>> {
    gw.upstreams
        .all()
        .into_iter()
        .map(|b| (b.name.clone(), b.spec()))
        .collect()
}

/// Names listed in a reload's message, per kind of change; the rest are counted.
const NAMES_SHOWN: usize = 5;

/// What a reload did to the backends, by name (sorted).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Changes {
    pub added: Vec<String>,
    /// Whose spec changed (restarted, or edited in place).
    pub changed: Vec<String>,
    pub removed: Vec<String>,
}

impl Changes {
    /// From the backends `before` a reload, the file's `wanted` ones and those running
    /// `after` it. A backend another source declares is neither changed nor added by the file.
    pub fn between(
        before: &BTreeMap<Arc<str>, Arc<BackendSpec>>,
        wanted: &[BackendSpec],
        after: &BTreeMap<Arc<str>, Arc<BackendSpec>>,
    ) -> Self {
        let mut changes = Changes::default();
        for spec in wanted {
            let name = spec.name.as_str();
            let applied = after.get(name).is_some_and(|now| **now == *spec);
            match before.get(name) {
                None if applied => changes.added.push(spec.name.clone()),
                Some(old) if applied && **old != *spec => changes.changed.push(spec.name.clone()),
                _ => {}
            }
        }
        changes.removed = before
            .keys()
            .filter(|name| !after.contains_key(*name))
            .map(|name| name.to_string())
            .collect();
        changes.added.sort();
        changes.changed.sort();
        changes
    }

    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.changed.is_empty() && self.removed.is_empty()
    }
}

impl std::fmt::Display for Changes {
    /// `1 backend added (x), 1 changed (y), 2 removed (a, b)`, or `no change`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.is_empty() {
            return f.write_str("no change");
        }
        let mut first = true;
        for (names, what) in [
            (&self.added, "added"),
            (&self.changed, "changed"),
            (&self.removed, "removed"),
        ] {
            if names.is_empty() {
                continue;
            }
            let n = names.len();
            let noun = match (first, n) {
                (false, _) => "",
                (true, 1) => " backend",
                (true, _) => " backends",
            };
            let sep = if first { "" } else { ", " };
            first = false;
            let shown = names[..n.min(NAMES_SHOWN)].join(", ");
            let more = match n.saturating_sub(NAMES_SHOWN) {
                0 => String::new(),
                rest => format!(" and {rest} more"),
            };
            write!(f, "{sep}{n}{noun} {what} ({shown}{more})")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{ProcessSpec, ToolFilter, TransportSpec};

    fn spec(name: &str, command: &str) -> BackendSpec {
        BackendSpec {
            name: name.into(),
            transport: TransportSpec::Stdio(ProcessSpec {
                command: command.into(),
                ..Default::default()
            }),
            prefix: name.into(),
            tools: ToolFilter::default(),
            timeout: None,
            disabled: false,
            sessions: Default::default(),
        }
    }

    fn running(specs: &[BackendSpec]) -> BTreeMap<Arc<str>, Arc<BackendSpec>> {
        specs
            .iter()
            .map(|s| (Arc::from(s.name.as_str()), Arc::new(s.clone())))
            .collect()
    }

    #[test]
    fn a_reload_says_what_it_changed() {
        let before = running(&[
            spec("a", "x"),
            spec("b", "x"),
            spec("c", "x"),
            spec("k", "x"),
        ]);
        // `k` is another source's: the file's `k` was refused and it runs as before.
        let wanted = [
            spec("a", "x"),
            spec("b", "y"),
            spec("d", "x"),
            spec("k", "z"),
        ];
        let after = running(&[
            spec("a", "x"),
            spec("b", "y"),
            spec("d", "x"),
            spec("k", "x"),
        ]);
        let changes = Changes::between(&before, &wanted, &after);
        assert_eq!(
            changes,
            Changes {
                added: vec!["d".into()],
                changed: vec!["b".into()],
                removed: vec!["c".into()],
            }
        );
        assert_eq!(
            changes.to_string(),
            "1 backend added (d), 1 changed (b), 1 removed (c)"
        );
        let same = Changes::between(&after, &wanted[..3], &after);
        assert_eq!(same.to_string(), "no change");
    }

    #[test]
    fn a_long_list_of_names_is_cut() {
        let names = |n: usize| (0..n).map(|i| format!("b{i}")).collect::<Vec<_>>();
        let changes = Changes {
            added: Vec::new(),
            changed: vec!["x".into()],
            removed: names(8),
        };
        assert_eq!(
            changes.to_string(),
            "1 backend changed (x), 8 removed (b0, b1, b2, b3, b4 and 3 more)"
        );
        let added = Changes {
            added: names(2),
            ..Changes::default()
        };
        assert_eq!(added.to_string(), "2 backends added (b0, b1)");
    }
}
