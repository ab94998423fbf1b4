//! Live reload of the config file: when it changes on disk (or on SIGHUP) it is loaded again
//! and, if valid, the live set of backends is reconciled to it. Added backends start, removed
//! ones stop, ones whose command or URL changed are replaced, and naming, filter and timeout
//! edits apply without restarting the backend; every session is told through list_changed.
//! An invalid file is reported and the running config is kept.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;

use crate::config;
use crate::relay::Gateway;

/// Editors write a file in several steps; changes closer together than this are one reload.
const SETTLE: Duration = Duration::from_millis(250);

/// Watch `path` until the gateway shuts down.
pub async fn watch(gw: Arc<Gateway>, path: PathBuf) {
    let (tx, mut rx) = mpsc::channel::<()>(1);
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
            let _ = fs_tx.try_send(());
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
    loop {
        tokio::select! {
            _ = gw.shutdown.cancelled() => return,
            got = rx.recv() => if got.is_none() { return },
        }
        // Let a burst of writes finish, then take it as one change.
        tokio::time::sleep(SETTLE).await;
        while rx.try_recv().is_ok() {}
        reload(&gw, &path).await;
    }
}

async fn forward_sighup(tx: mpsc::Sender<()>, shutdown: tokio_util::sync::CancellationToken) {
    let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) else {
        return;
    };
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = hup.recv() => { let _ = tx.try_send(()); }
        }
    }
}

/// Load `path` and reconcile the gateway to it; returns whether it was applied.
pub async fn reload(gw: &Gateway, path: &Path) -> bool {
    let cfg = match config::load(path) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("config not reloaded, keeping the running one:\n{e}");
            gw.metrics.config_reload(false);
            return false;
        }
    };
    for w in &cfg.warnings {
        tracing::warn!("{w}");
    }
    if cfg.gateway.separator != gw.settings.separator
        || cfg.gateway.max_body_bytes != gw.settings.max_body_bytes
        || cfg.gateway.host != gw.settings.host
        || cfg.gateway.port != gw.settings.port
    {
        tracing::warn!("changes to the gateway: section take effect after a restart");
    }
    let n = cfg.backends.len();
    gw.reconcile(cfg.backends).await;
    gw.metrics.config_reload(true);
    tracing::info!(config = %path.display(), backends = n, "config reloaded");
    true
}
