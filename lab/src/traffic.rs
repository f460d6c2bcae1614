//! Deterministic UDP traffic between lab hosts: exact numbers of datagrams
//! sent and counted, so counters can be compared packet for packet.
use std::{
    io::ErrorKind,
    net::{SocketAddr, UdpSocket},
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};

use super::{Host, Lab};

/// A UDP socket bound to `bind` inside a host's namespace.
pub fn udp_socket(lab: &Lab, host: Host, bind: SocketAddr) -> Result<UdpSocket> {
    // A port just closed may still be held for a moment by a child process
    // forked elsewhere in this process, until its exec closes the copy.
    let end = Instant::now() + Duration::from_secs(2);
    loop {
        match lab.in_ns(host, || UdpSocket::bind(bind))? {
            Err(e) if e.kind() == ErrorKind::AddrInUse && Instant::now() < end => {
                std::thread::sleep(Duration::from_millis(10))
            }
            result => {
                return result.with_context(|| format!("binding UDP {bind} in {}", host.name()))
            }
        }
    }
}

/// Length of the Ethernet frame carrying a UDP datagram of `payload` bytes
/// (what the filter's byte counters add).
pub fn udp_frame_len(to: SocketAddr, payload: usize) -> u64 {
    let ip = if to.is_ipv4() { 20 } else { 40 };
    (14 + ip + 8 + payload) as u64
}

/// Sends `count` datagrams of `payload` (at least 8) bytes, each numbered in
/// its first bytes. Pauses briefly every 64 datagrams so no queue on the way
/// overflows.
pub fn send(sock: &UdpSocket, to: SocketAddr, count: u64, payload: usize) -> Result<()> {
    anyhow::ensure!(
        payload >= 8,
        "payload of {payload} bytes: at least 8 hold the number"
    );
    let mut buf = vec![0u8; payload];
    for i in 0..count {
        buf[..8].copy_from_slice(&i.to_be_bytes());
        sock.send_to(&buf, to)
            .with_context(|| format!("sending datagram {i} to {to}"))?;
        if i % 64 == 63 {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    Ok(())
}

/// Receives until nothing arrived for `idle`, returning how many datagrams
/// came.
pub fn count(sock: &UdpSocket, idle: Duration) -> Result<u64> {
    sock.set_read_timeout(Some(idle))?;
    let mut buf = [0u8; 2048];
    let mut n = 0;
    loop {
        match sock.recv_from(&mut buf) {
            Ok(_) => n += 1,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return Ok(n)
            }
            // A signal for this process (another test's child, a stop
            // handler) interrupted the wait: keep counting.
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e).context("receiving"),
        }
    }
}

/// A background receiver counting datagrams as they arrive.
pub struct Sink {
    received: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Sink {
    pub fn start(sock: UdpSocket) -> Result<Sink> {
        sock.set_read_timeout(Some(Duration::from_millis(50)))?;
        let received = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::thread::spawn({
            let (received, stop) = (received.clone(), stop.clone());
            move || {
                let mut buf = [0u8; 2048];
                while !stop.load(Ordering::Relaxed) {
                    if sock.recv_from(&mut buf).is_ok() {
                        received.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        });
        Ok(Sink {
            received,
            stop,
            thread: Some(thread),
        })
    }

    pub fn received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }

    /// Waits until `n` datagrams arrived or `timeout` passed; returns the
    /// count.
    pub fn wait_for(&self, n: u64, timeout: Duration) -> u64 {
        let end = Instant::now() + timeout;
        while self.received() < n && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(10));
        }
        self.received()
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A background sender emitting datagrams at a steady rate until stopped.
pub struct Stream {
    sent: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Result<()>>>,
}

impl Stream {
    pub fn start(sock: UdpSocket, to: SocketAddr, per_second: u32) -> Stream {
        let sent = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::thread::spawn({
            let (sent, stop) = (sent.clone(), stop.clone());
            move || -> Result<()> {
                let per_second = f64::from(per_second.max(1));
                let start = Instant::now();
                let mut i: u64 = 0;
                while !stop.load(Ordering::Relaxed) {
                    sock.send_to(&i.to_be_bytes(), to)
                        .with_context(|| format!("streaming to {to}"))?;
                    i += 1;
                    sent.store(i, Ordering::Relaxed);
                    if let Some(wait) = (start + Duration::from_secs_f64(i as f64 / per_second))
                        .checked_duration_since(Instant::now())
                    {
                        std::thread::sleep(wait);
                    }
                }
                Ok(())
            }
        });
        Stream {
            sent,
            stop,
            thread: Some(thread),
        }
    }

    /// Stops and returns how many datagrams were sent.
    pub fn stop(mut self) -> Result<u64> {
        self.stop.store(true, Ordering::Relaxed);
        let result = self.thread.take().map(|t| t.join());
        match result {
            Some(Ok(r)) => r?,
            Some(Err(p)) => std::panic::resume_unwind(p),
            None => {}
        }
        Ok(self.sent.load(Ordering::Relaxed))
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A background receiver on many sockets at once (one for each port of a
/// media range, say), counting datagrams by the local port they came to.
pub struct PortSink {
    ports: Vec<u16>,
    counts: Arc<Vec<AtomicU64>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Result<()>>>,
}

impl PortSink {
    pub fn start(socks: Vec<UdpSocket>) -> Result<PortSink> {
        use std::os::fd::AsRawFd as _;
        let ports = socks
            .iter()
            .map(|s| Ok(s.local_addr()?.port()))
            .collect::<Result<Vec<u16>>>()?;
        for s in &socks {
            s.set_nonblocking(true)?;
        }
        let counts: Arc<Vec<AtomicU64>> =
            Arc::new(socks.iter().map(|_| AtomicU64::new(0)).collect());
        let stop = Arc::new(AtomicBool::new(false));
        let thread = std::thread::spawn({
            let (counts, stop) = (counts.clone(), stop.clone());
            move || -> Result<()> {
                let mut fds: Vec<libc::pollfd> = socks
                    .iter()
                    .map(|s| libc::pollfd {
                        fd: s.as_raw_fd(),
                        events: libc::POLLIN,
                        revents: 0,
                    })
                    .collect();
                let mut buf = [0u8; 2048];
                while !stop.load(Ordering::Relaxed) {
                    // SAFETY: `fds` is a valid array of pollfd of that
                    // length, whose descriptors `socks` keeps open.
                    let ready = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as _, 50) };
                    if ready < 0 {
                        let e = std::io::Error::last_os_error();
                        if e.kind() == ErrorKind::Interrupted {
                            continue;
                        }
                        return Err(e).context("poll");
                    }
                    for (i, fd) in fds.iter_mut().enumerate() {
                        if fd.revents == 0 {
                            continue;
                        }
                        fd.revents = 0;
                        loop {
                            match socks[i].recv_from(&mut buf) {
                                Ok(_) => {
                                    counts[i].fetch_add(1, Ordering::Relaxed);
                                }
                                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                                Err(e) => return Err(e).context("receiving"),
                            }
                        }
                    }
                }
                Ok(())
            }
        });
        Ok(PortSink {
            ports,
            counts,
            stop,
            thread: Some(thread),
        })
    }

    /// Datagrams received so far, by local port.
    pub fn by_port(&self) -> std::collections::BTreeMap<u16, u64> {
        self.ports
            .iter()
            .zip(self.counts.iter())
            .map(|(&p, c)| (p, c.load(Ordering::Relaxed)))
            .collect()
    }

    pub fn received(&self) -> u64 {
        self.counts.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }

    /// Waits until `n` datagrams arrived in all or `timeout` passed;
    /// returns the count.
    pub fn wait_for(&self, n: u64, timeout: Duration) -> u64 {
        let end = Instant::now() + timeout;
        while self.received() < n && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(10));
        }
        self.received()
    }

    /// Stops receiving; fails if the receiver did.
    pub fn stop(mut self) -> Result<()> {
        self.stop.store(true, Ordering::Relaxed);
        match self.thread.take().map(|t| t.join()) {
            Some(Ok(r)) => r,
            Some(Err(p)) => std::panic::resume_unwind(p),
            None => Ok(()),
        }
    }
}

impl Drop for PortSink {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
