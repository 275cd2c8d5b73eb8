//! The backend behind both proxies: a hyper server answering every request with 200 and a 1 kB body, HTTP/1.1
//! and HTTP/2 (prior knowledge) on the same port, on a thread and single-threaded runtime of its own. It counts
//! connections and requests, so the run can tell how the proxies pool their upstream connections.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;

use anyhow::Context as _;
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::sync::watch;

/// Size of every response body.
pub const BODY_BYTES: usize = 1024;
static BODY: [u8; BODY_BYTES] = [b'x'; BODY_BYTES];

/// What the backend has served so far.
#[derive(Default)]
struct Counters {
    connections: AtomicU64,
    requests: AtomicU64,
}

/// The running backend; stopped on drop.
pub struct Backend {
    /// Its address (127.0.0.1, a port the kernel picked).
    pub addr: SocketAddr,
    counters: Arc<Counters>,
    stop: watch::Sender<bool>,
    thread: Option<JoinHandle<()>>,
}

/// Connections accepted and requests answered, so far.
#[derive(Clone, Copy, Debug, Default)]
pub struct Served {
    /// Connections accepted.
    pub connections: u64,
    /// Requests answered.
    pub requests: u64,
}

impl Backend {
    /// Binds 127.0.0.1:0 and serves on a new thread (which runs wherever the calling thread may run).
    pub fn start() -> anyhow::Result<Backend> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").context("binding the backend")?;
        listener
            .set_nonblocking(true)
            .context("making the backend's socket non-blocking")?;
        let addr = listener.local_addr().context("the backend's address")?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("building the backend's runtime")?;
        let counters = Arc::new(Counters::default());
        let (stop, stopped) = watch::channel(false);
        let served = counters.clone();
        let thread = std::thread::Builder::new()
            .name("backend".into())
            .spawn(move || runtime.block_on(serve(listener, served, stopped)))
            .context("starting the backend's thread")?;
        Ok(Backend {
            addr,
            counters,
            stop,
            thread: Some(thread),
        })
    }

    /// What it has served so far.
    pub fn served(&self) -> Served {
        Served {
            connections: self.counters.connections.load(Ordering::Relaxed),
            requests: self.counters.requests.load(Ordering::Relaxed),
        }
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The accept loop, until `stopped` turns true; each connection a task of its own.
async fn serve(
    listener: std::net::TcpListener,
    counters: Arc<Counters>,
    mut stopped: watch::Receiver<bool>,
) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("proxy-bench: the backend cannot listen: {e}");
            return;
        }
    };
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // Above what either proxy opens on one upstream HTTP/2 connection (connections × streams), so the
    // backend never makes a proxy queue or open a second connection.
    builder.http2().max_concurrent_streams(10_000);
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stopped.wait_for(|s| *s) => return,
        };
        let Ok((stream, _)) = accepted else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        counters.connections.fetch_add(1, Ordering::Relaxed);
        let builder = builder.clone();
        let counters = counters.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |_req: Request<Incoming>| {
                counters.requests.fetch_add(1, Ordering::Relaxed);
                async { Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(&BODY)))) }
            });
            // A connection the proxy or a load generator drops mid-request ends here; nothing to report.
            let _ = builder
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
