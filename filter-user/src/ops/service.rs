//! `sipwall run`: the foreground service for systemd. Attaches with the
//! configuration file as the whole truth (allowlist included), reloads it on
//! SIGHUP (a bad file is refused and the running policy stays), serves
//! metrics, passes the kernel's rate-limited log records on to stderr, and
//! detaches on SIGTERM or SIGINT.
use std::{net::SocketAddr, path::PathBuf};

use anyhow::{Context as _, Result};
use tokio::signal::unix::{signal, SignalKind};

use filter_common::XdpMode;

use super::{metrics, snapshot::Snapshot};
use crate::{
    error::UsageError,
    kernel::{attach, maps::Maps, pins::PinRoot},
    policy::{config, ruleset::Ruleset},
};

pub struct Service {
    pub root: PathBuf,
    pub iface: String,
    pub config: Option<PathBuf>,
    /// `None`: native, falling back to skb.
    pub mode: Option<XdpMode>,
    pub metrics: Option<SocketAddr>,
    pub force: bool,
}

impl Service {
    /// The configuration file's ruleset, refused when its allowlist is
    /// empty unless `force`.
    pub fn load_config(&self) -> Result<Ruleset> {
        let ruleset = config::load(self.config.as_deref())?;
        if ruleset.allow.is_empty() && !self.force {
            return Err(UsageError(
                "the configuration's allowlist is empty, which denies all signalling; start with --force if that is what you want".into(),
            )
            .into());
        }
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
            Some(addr) => Some(metrics::bind(addr).await?),
            None => None,
        };
        // Handlers first: a SIGHUP or SIGTERM during start-up is then acted
        // on in the loop below rather than killing a half-started service.
        let mut hup = signal(SignalKind::hangup())?;
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        let mut attached = attach::attach(&root, &self.iface, &ruleset, self.mode, false)?;
        eprintln!(
            "sipwall: filtering {} in {} mode (program id {}); {}",
            self.iface,
            attached.mode.name(),
            attached.program_id,
            ruleset.summary()
        );
        let _ = env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
            .try_init();
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
        let mut metrics_task = listener.map(|listener| {
            let root_path = self.root.clone();
            let iface = self.iface.clone();
            tokio::spawn(metrics::serve(listener, move || {
                let root_path = root_path.clone();
                let iface = iface.clone();
                async move { scrape(&PinRoot::new(&root_path), &iface) }
            }))
        });
        let outcome = loop {
            tokio::select! {
                _ = hup.recv() => self.reload(&root, &mut maps),
                _ = term.recv() => break Ok(()),
                _ = int.recv() => break Ok(()),
                result = async {
                    match &mut metrics_task {
                        Some(task) => task.await,
                        None => std::future::pending().await,
                    }
                }, if metrics_task.is_some() => {
                    break match result {
                        Ok(Ok(())) => Ok(()),
                        Ok(Err(e)) => Err(e),
                        Err(e) => Err(e.into()),
                    };
                }
            }
        };
        drop(maps);
        attach::detach(&root, &self.iface)?;
        eprintln!("sipwall: detached from {}", self.iface);
        outcome
    }

    fn reload(&self, root: &PinRoot, maps: &mut Maps) {
        let ruleset = match self.load_config() {
            Ok(r) => r,
            Err(e) => {
                eprintln!("sipwall: SIGHUP: kept the running policy, the configuration was refused: {e:#}");
                return;
            }
        };
        let result = root.lock().and_then(|_lock| maps.install(&ruleset));
        match result {
            Ok(_) => eprintln!(
                "sipwall: SIGHUP: configuration reloaded; {}",
                ruleset.summary()
            ),
            Err(e) => eprintln!("sipwall: SIGHUP: reload failed, the running policy stays: {e:#}"),
        }
    }
}

/// Reads the figures of `iface` for one metrics scrape.
pub fn scrape(root: &PinRoot, iface: &str) -> Result<String> {
    let mut snap = Snapshot::gather(root, iface);
    snap.check_readable()?;
    Ok(metrics::render(&[snap]))
}
