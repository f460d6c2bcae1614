//! The process's one logger. filter-kernel prints nothing: its warnings
//! and notices are `log` records, shown here as the `sipwall: …` lines on
//! stderr that operators (and scripts) know. Other records (the XDP
//! program's own, which `run` drains) go through env_logger once the
//! service turns it on.
use std::sync::OnceLock;

use log::{LevelFilter, Log, Metadata, Record};

struct Notices {
    /// env_logger, once `run` asked for it.
    others: OnceLock<env_logger::Logger>,
}

static LOGGER: Notices = Notices {
    others: OnceLock::new(),
};

/// Shows filter-kernel's records from here on (a second call does nothing).
pub fn init() {
    if log::set_logger(&LOGGER).is_ok() {
        log::set_max_level(LevelFilter::Info);
    }
}

/// Also shows every other record as `RUST_LOG` selects (default: info).
pub fn enable_env_logger() {
    init();
    let logger =
        env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).build();
    log::set_max_level(logger.filter().max(LevelFilter::Info));
    let _ = LOGGER.others.set(logger);
}

fn from_kernel(target: &str) -> bool {
    target.split("::").next() == Some("filter_kernel")
}

impl Log for Notices {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        if from_kernel(metadata.target()) {
            return metadata.level() <= LevelFilter::Info;
        }
        self.others.get().is_some_and(|l| l.enabled(metadata))
    }

    fn log(&self, record: &Record<'_>) {
        if from_kernel(record.target()) {
            if self.enabled(record.metadata()) {
                eprintln!("sipwall: {}", record.args());
            }
        } else if let Some(logger) = self.others.get() {
            logger.log(record);
        }
    }

    fn flush(&self) {
        if let Some(logger) = self.others.get() {
            logger.flush();
        }
    }
}
