//! `sipwall run`: the foreground service for systemd and Kubernetes.
//! Attaches with the configuration file as the whole truth (allowlist
//! included), reloads it on SIGHUP and whenever the file changes (a bad file
//! is refused and the running policy stays), serves metrics and the
//! `/healthz` and `/readyz` probes, passes the kernel's rate-limited log
//! records on to stderr, and on SIGTERM or SIGINT leaves the interface as it
//! found it: a filter it attached itself is detached, one it took over (or
//! any, with `keep_attached`) stays attached and pinned; a policy still
//! awaiting `--confirm` is rolled back first. Under systemd (`Type=notify`)
//! it reports READY=1 once the filter is attached, and STOPPING=1 on exit.
use std::{
    net::SocketAddr,
    path::PathBuf,
    sync::{Arc, Mutex},
    time::{SystemTime, UNIX_EPOCH},
};

use anyhow::{Context as _, Result};
use tokio::signal::unix::{signal, SignalKind};

use filter_common::XdpMode;
use filter_kernel::{attach, maps::Maps, pins::PinRoot};
use filter_policy::{config, ruleset::Ruleset};

use super::{
    http::{self, Reply},
    metrics::{self, ReloadState},
    snapshot::Snapshot,
    watch::ConfigWatch,
};
use crate::ops::{
    admission,
    confirm::{self, Pending, State},
    media_metrics, notices, reader,
};

pub struct Service {
    pub root: PathBuf,
    pub iface: String,
    pub config: Option<PathBuf>,
    /// `None`: native, falling back to skb.
    pub mode: Option<XdpMode>,
    pub metrics: Option<SocketAddr>,
    pub force: bool,
    /// Never detach on exit (fleets: a pod restart keeps the filter).
    pub keep_attached: bool,
    /// Seconds to wait for `sipwall confirm` before rolling back.
    pub confirm: Option<u64>,
}

/// What set off a reload, for the log.
#[derive(Clone, Copy)]
enum Trigger {
    Sighup,
    FileChanged,
}

impl Trigger {
    fn name(self) -> &'static str {
        match self {
            Trigger::Sighup => "SIGHUP",
            Trigger::FileChanged => "configuration file changed",
        }
    }
}

impl Service {
    /// The configuration file's ruleset, refused unless `force` when
    /// [`admission`] refuses it.
    pub fn load_config(&self) -> Result<Ruleset> {
        let ruleset = config::load(self.config.as_deref())?;
        admission::check(&ruleset, self.force)?;
        Ok(ruleset)
    }

    pub fn run(self) -> Result<()> {
        let ruleset = self.load_config()?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting the async runtime")?;
        runtime.block_on(self.serve(ruleset))
    }

    async fn serve(self, ruleset: Ruleset) -> Result<()> {
        let root = PinRoot::new(&self.root);
        let listener = match self.metrics {
            Some(addr) => Some(http::bind(addr).await?),
            None => None,
        };
        // Handlers first: a SIGHUP or SIGTERM during start-up is then acted
        // on in the loop below rather than killing a half-started service.
        let mut hup = signal(SignalKind::hangup())?;
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        let previous = match self.confirm {
            Some(_) => Some(confirm::previous(&root, &self.iface)?),
            None => None,
        };
        // The file's bytes as last read, so that a change of something else
        // in its directory does not reload.
        let mut last_read = self.read_config_bytes();
        let mut watch = match &self.config {
            Some(path) => Some(ConfigWatch::new(path)?),
            None => None,
        };
        let mut attached = attach::attach(&root, &self.iface, &ruleset, self.mode, false)?;
        let took_over = attached.replaced;
        // A capture killed without cleaning up left sampling on: off.
        if let Ok(mut capture) =
            filter_kernel::capture::CaptureMaps::open(&root.iface_dir(&self.iface))
        {
            if let Ok(Some(pid)) = super::capture::clear_dead(&mut capture) {
                eprintln!(
                    "sipwall: sampling left on by a capture that is gone (pid {pid}): cleared"
                );
            }
        }
        if took_over {
            eprintln!(
                "sipwall: {} already had sipwall's filter attached: took it over in place (program id {}, counters kept, the file's policy applied); it stays attached when this service stops",
                self.iface, attached.program_id
            );
        }
        eprintln!(
            "sipwall: filtering {} in {} mode (program id {}); {}",
            self.iface,
            attached.mode.name(),
            attached.program_id,
            ruleset.summary()
        );
        notify_systemd(&[
            sd_notify::NotifyState::Ready,
            sd_notify::NotifyState::Status(&format!("filtering {}", self.iface)),
        ]);
        notices::enable_env_logger();
        match aya_log::EbpfLogger::init(&mut attached.ebpf) {
            Ok(logger) => {
                // SAFETY: the AsyncFd owns the logger, so the fd it watches
                // stays open for as long as it is registered.
                let mut logger = unsafe {
                    tokio::io::unix::AsyncFd::register_with_interest(
                        logger,
                        tokio::io::Interest::READABLE,
                    )
                }
                .map_err(|e| anyhow::anyhow!("watching the kernel's log records: {e}"))?;
                tokio::spawn(async move {
                    while let Ok(mut guard) = logger.readable_mut().await {
                        guard.get_inner_mut().flush();
                        guard.clear_ready();
                    }
                });
            }
            Err(e) => eprintln!("sipwall: kernel log records unavailable: {e}"),
        }
        let mut maps = attached.maps;
        // The call reader (calls mode): it runs whatever the mode, so a
        // reload into calls mode finds it there; in range mode no copies
        // come and it only writes its heartbeat.
        let (rules_tx, rules_rx) = tokio::sync::watch::channel(ruleset.clone());
        let mut reader_task = {
            let dir = root.iface_dir(&self.iface);
            let metrics = media_metrics::for_iface(&self.iface);
            tokio::spawn(async move { reader::serve(&dir, rules_rx, metrics).await })
        };
        // --confirm: the token `sipwall confirm` answers, and when to give up.
        let mut pending = match (self.confirm, previous) {
            (Some(secs), Some(previous)) => {
                let pending = Pending::arm(&self.iface, &mut maps, previous, secs)?;
                eprintln!(
                    "sipwall: run `sipwall confirm -i {}` within {secs} s, or the policy is rolled back",
                    self.iface
                );
                Some(pending)
            }
            _ => None,
        };
        let mut tick = tokio::time::interval(std::time::Duration::from_millis(100));
        let reloads = Arc::new(Mutex::new(ReloadState::started(now_secs())));
        let mut http_task = listener.map(|listener| {
            let root_path = self.root.clone();
            let iface = self.iface.clone();
            let reloads = Arc::clone(&reloads);
            tokio::spawn(http::serve(listener, move |path| {
                let root = PinRoot::new(&root_path);
                let iface = iface.clone();
                let reloads = *reloads.lock().unwrap_or_else(|e| e.into_inner());
                async move { answer(&path, &root, &iface, &reloads) }
            }))
        });
        let outcome = loop {
            tokio::select! {
                _ = hup.recv() => {
                    last_read = self.read_config_bytes();
                    let applied = self.reload(&root, &mut maps, Trigger::Sighup, &rules_tx);
                    reloads.lock().unwrap_or_else(|e| e.into_inner()).record(applied, now_secs());
                }
                changed = async {
                    match &mut watch {
                        Some(w) => w.changed().await,
                        None => std::future::pending().await,
                    }
                } => {
                    if let Err(e) = changed {
                        break Err(e.context("following the configuration file"));
                    }
                    let now = self.read_config_bytes();
                    if now != last_read {
                        last_read = now;
                        let applied = self.reload(&root, &mut maps, Trigger::FileChanged, &rules_tx);
                        reloads.lock().unwrap_or_else(|e| e.into_inner()).record(applied, now_secs());
                    }
                }
                _ = tick.tick(), if pending.is_some() => {
                    let state = match &pending {
                        Some(waiting) => waiting.poll(&maps, false),
                        None => continue,
                    };
                    if matches!(state, State::Waiting(_)) {
                        continue;
                    }
                    let Some(waited) = pending.take() else { continue };
                    if state == State::Confirmed {
                        match waited.keep(&mut maps) {
                            Ok(said) => eprintln!("{said}"),
                            Err(e) => eprintln!(
                                "sipwall: confirmed on {}, but clearing the confirmation failed: {e:#}",
                                self.iface
                            ),
                        }
                        continue;
                    }
                    let why = "no confirmation in time";
                    match waited.roll_back(&root, &mut maps, why) {
                        Ok((true, said)) => eprintln!("{said}"),
                        Ok((false, said)) => {
                            eprintln!("{said}");
                            break Err(anyhow::anyhow!(
                                "{why}: rolled back (detached from {})",
                                self.iface
                            ));
                        }
                        Err(e) => break Err(e),
                    }
                }
                // Stopped while a confirmation is awaited: the unconfirmed
                // policy must not outlive the service (it would stay with
                // --keep-attached or a taken-over filter), as with
                // `attach --confirm`.
                // The reader stopped: calls mode would lose its calls
                // silently; the service fails instead (systemd restarts
                // it, and the unattended policy holds meanwhile).
                result = &mut reader_task => {
                    break match result {
                        Ok(Ok(())) => Ok(()),
                        Ok(Err(e)) => Err(e.context("the call reader stopped")),
                        Err(e) => Err(anyhow::Error::from(e).context("the call reader stopped")),
                    };
                }
                _ = term.recv() => break self.stop(&root, &mut maps, pending.take()),
                _ = int.recv() => break self.stop(&root, &mut maps, pending.take()),
                result = async {
                    match &mut http_task {
                        Some(task) => task.await,
                        None => std::future::pending().await,
                    }
                }, if http_task.is_some() => {
                    break match result {
                        Ok(Ok(())) => Ok(()),
                        Ok(Err(e)) => Err(e),
                        Err(e) => Err(e.into()),
                    };
                }
            }
        };
        notify_systemd(&[sd_notify::NotifyState::Stopping]);
        reader_task.abort();
        drop(maps);
        drop(attached.ebpf);
        self.leave(&root, took_over)?;
        outcome
    }

    /// SIGTERM or SIGINT: a clean stop, unless a confirmation was still
    /// awaited; then the policy is rolled back first and the service fails
    /// (exit 1), as `attach --confirm` does.
    fn stop(&self, root: &PinRoot, maps: &mut Maps, pending: Option<Pending>) -> Result<()> {
        let Some(pending) = pending else {
            return Ok(());
        };
        let why = "stopped before a confirmation";
        let (_, said) = pending.roll_back(root, maps, why)?;
        eprintln!("{said}");
        Err(anyhow::anyhow!(
            "{why}: the policy on {} was rolled back",
            self.iface
        ))
    }

    /// On exit: detach only a filter this service attached itself, and not
    /// even that with `keep_attached`.
    fn leave(&self, root: &PinRoot, took_over: bool) -> Result<()> {
        let iface = &self.iface;
        if self.keep_attached || took_over {
            let why = if self.keep_attached {
                "--keep-attached"
            } else {
                "it was attached before this service started"
            };
            eprintln!(
                "sipwall: stopping; the filter stays attached to {iface} with its pins ({why}); `sipwall detach -i {iface}` removes it"
            );
            return Ok(());
        }
        if !root.iface_dir(iface).exists() {
            eprintln!("sipwall: stopping; the filter on {iface} had already been detached");
            return Ok(());
        }
        attach::detach(root, iface)?;
        eprintln!("sipwall: detached from {iface}");
        Ok(())
    }

    /// The configuration file's bytes now (`None` when unreadable or when
    /// there is no file).
    fn read_config_bytes(&self) -> Option<Vec<u8>> {
        self.config.as_ref().and_then(|p| std::fs::read(p).ok())
    }

    /// Loads the file and installs it; a refused file keeps the running
    /// policy. Returns whether the file was applied.
    fn reload(
        &self,
        root: &PinRoot,
        maps: &mut Maps,
        trigger: Trigger,
        rules: &tokio::sync::watch::Sender<Ruleset>,
    ) -> bool {
        let why = trigger.name();
        let ruleset = match self.load_config() {
            Ok(r) => r,
            Err(e) => {
                eprintln!(
                    "sipwall: {why}: kept the running policy, the configuration was refused: {e:#}"
                );
                return false;
            }
        };
        let result = root.lock().and_then(|_lock| maps.install(&ruleset));
        match result {
            Ok(_) => {
                eprintln!(
                    "sipwall: {why}: configuration reloaded; {}",
                    ruleset.summary()
                );
                let _ = rules.send(ruleset);
                true
            }
            Err(e) => {
                eprintln!("sipwall: {why}: reload failed, the running policy stays: {e:#}");
                false
            }
        }
    }
}

/// The answer to `GET path` on the metrics address.
fn answer(path: &str, root: &PinRoot, iface: &str, reloads: &ReloadState) -> Reply {
    match path {
        "/metrics" => Reply {
            status: "200 OK",
            content_type: "text/plain; version=0.0.4; charset=utf-8",
            body: scrape(root, iface)
                + &metrics::render_reloads(reloads)
                + &metrics::render_process(),
        },
        // The process answers: that is all liveness means. The filter
        // itself lives in the kernel and needs no process.
        "/healthz" => Reply::text("200 OK", "ok\n"),
        "/readyz" => {
            let snap = Snapshot::gather(root, iface);
            if snap.attached && snap.unreadable.is_none() {
                Reply::text("200 OK", format!("ready: filtering {iface}\n"))
            } else {
                let mut body = format!("not ready: {iface}\n");
                for p in &snap.problems {
                    body += &format!("{p}\n");
                }
                Reply::text("503 Service Unavailable", body)
            }
        }
        _ => Reply::text("404 Not Found", "try /metrics, /healthz or /readyz\n"),
    }
}

/// The exposition of `iface`'s figures for one scrape. Never fails: an
/// attachment whose pins are gone or damaged still shows
/// `sipwall_attached 0`, which is what the alert on it needs.
pub fn scrape(root: &PinRoot, iface: &str) -> String {
    metrics::render(&[Snapshot::gather(root, iface)])
}

/// Tells systemd (`Type=notify`) about the service's state; nothing when
/// not started by systemd (no `NOTIFY_SOCKET`). A failure is only logged:
/// systemd then times the start out, which is the error worth seeing.
fn notify_systemd(state: &[sd_notify::NotifyState]) {
    if let Err(e) = sd_notify::notify(state) {
        eprintln!("sipwall: telling systemd the service state: {e}");
    }
}

fn now_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}
