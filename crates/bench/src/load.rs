//! The release server as a child process, and a keep-alive HTTP/1.1 load client
//! (hyper, one connection per task) that records every request's latency.

use crate::util::{self, Rng, ADMIN_TOKEN};
use anyhow::{anyhow, bail, Context as _};
use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A `warrant serve` child process on a loopback port. SIGKILLed on drop if still running.
pub struct ServerProc {
    child: Option<Child>,
    pub addr: SocketAddr,
    pub url: String,
    pub pid: u32,
    pub stderr_path: PathBuf,
    /// Spawn until `/readyz` answered 200.
    pub ready_after: Duration,
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

impl ServerProc {
    pub async fn start(bin: &Path, data_dir: &Path, durability: &str) -> anyhow::Result<Self> {
        Self::start_with(bin, data_dir, durability, None).await
    }

    /// Like [`ServerProc::start`], on the PostgreSQL database `database` (given to the
    /// server in `WARRANT_DATABASE`) when set, else on SQLite in `data_dir`.
    pub async fn start_with(
        bin: &Path,
        data_dir: &Path,
        durability: &str,
        database: Option<&str>,
    ) -> anyhow::Result<Self> {
        Self::start_full(bin, data_dir, durability, database, None).await
    }

    /// Like [`ServerProc::start_with`], with a config file (`--config`) when given.
    pub async fn start_full(
        bin: &Path,
        data_dir: &Path,
        durability: &str,
        database: Option<&str>,
        config: Option<&Path>,
    ) -> anyhow::Result<Self> {
        let port = free_port()?;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let stderr_path = data_dir.with_extension("stderr.log");
        let stderr = std::fs::File::create(&stderr_path)?;
        let started = Instant::now();
        let mut cmd = Command::new(bin);
        match database {
            Some(url) => cmd.env("WARRANT_DATABASE", url),
            None => cmd.env_remove("WARRANT_DATABASE"),
        };
        cmd.arg("serve")
            .arg("--data-dir")
            .arg(data_dir)
            .arg("--listen")
            .arg(addr.to_string())
            .arg("--durability")
            .arg(durability);
        if let Some(c) = config {
            cmd.arg("--config").arg(c);
        }
        let child = cmd
            .env_remove("WARRANT_CONFIG")
            .env("WARRANT_ADMIN_TOKEN", ADMIN_TOKEN)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .with_context(|| format!("cannot start `{}`", bin.display()))?;
        let pid = child.id();
        let mut me = ServerProc {
            child: Some(child),
            addr,
            url: format!("http://{addr}"),
            pid,
            stderr_path,
            ready_after: Duration::ZERO,
        };
        let http = reqwest::Client::new();
        let deadline = started + Duration::from_secs(120);
        loop {
            if let Some(c) = me.child.as_mut() {
                if let Some(status) = c.try_wait()? {
                    bail!(
                        "warrant serve exited with {status}: {}",
                        std::fs::read_to_string(&me.stderr_path).unwrap_or_default()
                    );
                }
            }
            if let Ok(r) = http.get(format!("{}/readyz", me.url)).send().await {
                if r.status().is_success() {
                    break;
                }
            }
            if Instant::now() > deadline {
                bail!("warrant serve did not become ready within 120 s");
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        me.ready_after = started.elapsed();
        Ok(me)
    }

    pub fn client(&self) -> anyhow::Result<warrant_client::Client> {
        Ok(warrant_client::Client::new(
            &self.url,
            Some(ADMIN_TOKEN.to_owned()),
        )?)
    }

    pub fn rss_kib(&self) -> anyhow::Result<(u64, u64)> {
        util::rss_kib(self.pid)
    }

    pub async fn metrics(&self) -> anyhow::Result<String> {
        Ok(reqwest::get(format!("{}/metrics", self.url))
            .await?
            .error_for_status()?
            .text()
            .await?)
    }

    /// SIGTERM, then wait (up to 30 s) for a clean exit; SIGKILL otherwise.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if child.try_wait()?.is_some() {
                return Ok(());
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!("warrant serve did not stop within 30 s of SIGTERM; killed");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for ServerProc {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// What the load client sends.
#[derive(Clone)]
pub enum Target {
    /// `POST /v1/authorize` with one of these bodies, picked at random per request.
    Authorize(Arc<Vec<Bytes>>),
    /// `GET /healthz`.
    Healthz,
}

#[derive(Debug, Clone, Copy)]
pub struct LoadOpts {
    pub connections: usize,
    pub duration: Duration,
    /// Upper bound on requests in the run (in addition to the duration).
    pub max_requests: u64,
    /// The server's pid, to report the CPU it used during the run.
    pub server_pid: Option<u32>,
}

pub struct LoadResult {
    pub ok: u64,
    pub errors: u64,
    /// Non-200 answers, by status.
    pub statuses: Vec<(u16, u64)>,
    pub first_error: Option<String>,
    pub allows: u64,
    pub denies: u64,
    pub elapsed: Duration,
    pub hist: Histogram<u64>,
    /// Average cores used by the server and by this load client during the run.
    pub server_cores: Option<f64>,
    pub client_cores: Option<f64>,
}

impl LoadResult {
    /// Folds another run against the same server into this one.
    pub fn merge(&mut self, o: LoadResult) -> anyhow::Result<()> {
        let (a, b) = (self.elapsed.as_secs_f64(), o.elapsed.as_secs_f64());
        let weigh = |x: Option<f64>, y: Option<f64>| match (x, y) {
            (Some(x), Some(y)) if a + b > 0.0 => Some((x * a + y * b) / (a + b)),
            (x, None) => x,
            (None, y) => y,
            (x, _) => x,
        };
        self.server_cores = weigh(self.server_cores, o.server_cores);
        self.client_cores = weigh(self.client_cores, o.client_cores);
        self.ok += o.ok;
        self.errors += o.errors;
        self.allows += o.allows;
        self.denies += o.denies;
        for (s, n) in o.statuses {
            match self.statuses.iter_mut().find(|(x, _)| *x == s) {
                Some((_, m)) => *m += n,
                None => self.statuses.push((s, n)),
            }
        }
        if self.first_error.is_none() {
            self.first_error = o.first_error;
        }
        self.elapsed += o.elapsed;
        self.hist.add(&o.hist)?;
        Ok(())
    }

    pub fn throughput(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64()
    }
    pub fn p(&self, q: f64) -> f64 {
        self.hist.value_at_quantile(q) as f64
    }
    pub fn max(&self) -> f64 {
        self.hist.max() as f64
    }
}

struct TaskOut {
    ok: u64,
    errors: u64,
    statuses: Vec<(u16, u64)>,
    first_error: Option<String>,
    allows: u64,
    denies: u64,
    hist: Histogram<u64>,
}

pub(crate) type Sender = http1::SendRequest<Full<Bytes>>;

pub(crate) async fn connect(addr: SocketAddr) -> anyhow::Result<Sender> {
    let stream = tokio::net::TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (sender, conn) = http1::handshake::<_, Full<Bytes>>(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

fn build(
    target: &Target,
    host: &str,
    rng: &mut Rng,
) -> anyhow::Result<hyper::Request<Full<Bytes>>> {
    let b = hyper::Request::builder().header(hyper::header::HOST, host);
    Ok(match target {
        Target::Authorize(bodies) => {
            let body = bodies
                .get(rng.below(bodies.len()))
                .cloned()
                .ok_or_else(|| anyhow!("no request bodies"))?;
            b.method(hyper::Method::POST)
                .uri("/v1/authorize")
                .header(
                    hyper::header::AUTHORIZATION,
                    format!("Bearer {ADMIN_TOKEN}"),
                )
                .header(hyper::header::CONTENT_TYPE, "application/json")
                .body(Full::new(body))?
        }
        Target::Healthz => b
            .method(hyper::Method::GET)
            .uri("/healthz")
            .body(Full::new(Bytes::new()))?,
    })
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Runs `connections` tasks, each with its own keep-alive connection, sending requests
/// back to back until the duration has passed or `max_requests` were sent.
pub async fn run(addr: SocketAddr, target: Target, opts: LoadOpts) -> anyhow::Result<LoadResult> {
    let host = addr.to_string();
    let issued = Arc::new(AtomicU64::new(0));
    let start_gate = Arc::new(tokio::sync::Barrier::new(opts.connections + 1));
    let mut tasks = tokio::task::JoinSet::new();
    for t in 0..opts.connections {
        let target = target.clone();
        let host = host.clone();
        let issued = issued.clone();
        let gate = start_gate.clone();
        let mut sender = connect(addr).await?;
        tasks.spawn(async move {
            let mut out = TaskOut {
                ok: 0,
                errors: 0,
                statuses: Vec::new(),
                first_error: None,
                allows: 0,
                denies: 0,
                hist: util::histogram(),
            };
            let mut rng = Rng::new(0x9E37_79B9_7F4A_7C15 ^ (t as u64 + 1));
            gate.wait().await;
            let deadline = Instant::now() + opts.duration;
            let mut reconnects = 0;
            while Instant::now() < deadline
                && issued.fetch_add(1, Ordering::Relaxed) < opts.max_requests
            {
                let req = build(&target, &host, &mut rng)?;
                let t0 = Instant::now();
                let result = async {
                    sender.ready().await?;
                    let resp = sender.send_request(req).await?;
                    let status = resp.status().as_u16();
                    let body = resp.into_body().collect().await?.to_bytes();
                    Ok::<_, hyper::Error>((status, body))
                }
                .await;
                let took = t0.elapsed();
                match result {
                    Ok((200, body)) => {
                        let valid = match &target {
                            Target::Healthz => true,
                            Target::Authorize(_) => {
                                if contains(&body, br#""decision":"allow""#) {
                                    out.allows += 1;
                                    true
                                } else if contains(&body, br#""decision":"deny""#) {
                                    out.denies += 1;
                                    true
                                } else {
                                    false
                                }
                            }
                        };
                        if valid {
                            out.ok += 1;
                            util::record(&mut out.hist, took);
                        } else {
                            out.errors += 1;
                            out.first_error.get_or_insert_with(|| {
                                format!(
                                    "200 without a decision: {}",
                                    String::from_utf8_lossy(&body)
                                )
                            });
                        }
                    }
                    Ok((status, body)) => {
                        out.errors += 1;
                        match out.statuses.iter_mut().find(|(s, _)| *s == status) {
                            Some((_, n)) => *n += 1,
                            None => out.statuses.push((status, 1)),
                        }
                        out.first_error.get_or_insert_with(|| {
                            format!("HTTP {status}: {}", String::from_utf8_lossy(&body))
                        });
                    }
                    Err(e) => {
                        out.errors += 1;
                        out.first_error
                            .get_or_insert_with(|| format!("transport: {e}"));
                        reconnects += 1;
                        if reconnects > 100 {
                            break;
                        }
                        match connect(addr).await {
                            Ok(s) => sender = s,
                            Err(_) => break,
                        }
                    }
                }
            }
            Ok::<_, anyhow::Error>(out)
        });
    }
    let cpu0 = (
        opts.server_pid.and_then(|p| util::cpu_seconds(Some(p))),
        util::cpu_seconds(None),
    );
    start_gate.wait().await;
    let started = Instant::now();
    let mut total = LoadResult {
        ok: 0,
        errors: 0,
        statuses: Vec::new(),
        first_error: None,
        allows: 0,
        denies: 0,
        elapsed: Duration::ZERO,
        hist: util::histogram(),
        server_cores: None,
        client_cores: None,
    };
    while let Some(r) = tasks.join_next().await {
        let out = r??;
        total.ok += out.ok;
        total.errors += out.errors;
        total.allows += out.allows;
        total.denies += out.denies;
        for (s, n) in out.statuses {
            match total.statuses.iter_mut().find(|(x, _)| *x == s) {
                Some((_, m)) => *m += n,
                None => total.statuses.push((s, n)),
            }
        }
        if total.first_error.is_none() {
            total.first_error = out.first_error;
        }
        total.hist.add(&out.hist)?;
    }
    total.elapsed = started.elapsed();
    let secs = total.elapsed.as_secs_f64();
    let cores = |a: Option<f64>, b: Option<f64>| Some((b? - a?) / secs);
    total.server_cores = cores(
        cpu0.0,
        opts.server_pid.and_then(|p| util::cpu_seconds(Some(p))),
    );
    total.client_cores = cores(cpu0.1, util::cpu_seconds(None));
    Ok(total)
}

/// Request bodies for the given principals (risk varies, every one an allow).
pub fn authorize_bodies(ids: &[String]) -> anyhow::Result<Arc<Vec<Bytes>>> {
    let mut out = Vec::with_capacity(ids.len());
    for (i, id) in ids.iter().enumerate() {
        let body = util::read_request(id, (i % 50) as i64);
        out.push(Bytes::from(serde_json::to_vec(&body)?));
    }
    Ok(Arc::new(out))
}

/// Registers the benchmark policies and `n` identities through the HTTP API.
pub async fn register(
    server: &ServerProc,
    n: usize,
    concurrency: usize,
) -> anyhow::Result<Vec<String>> {
    let client = server.client()?;
    client
        .put_policy(Some(util::SCHEMA), util::POLICIES, Some("benchmark"))
        .await?;
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..concurrency.max(1) {
        let client = client.clone();
        let next = next.clone();
        tasks.spawn(async move {
            let mut ids = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return Ok::<_, anyhow::Error>(ids);
                }
                let v = client
                    .create_identity(&serde_json::json!({
                        "name": format!("agent-{i}"), "kind": "ai_tool", "environment": "prod",
                        "owner": "alice@example.com", "roles": ["reader"],
                        "entitlements": ["docs:write"],
                    }))
                    .await?;
                let id = v["id"].as_str().ok_or_else(|| anyhow!("no id"))?.to_owned();
                ids.push((i, id));
            }
        });
    }
    let mut all = Vec::with_capacity(n);
    while let Some(r) = tasks.join_next().await {
        all.extend(r??);
    }
    all.sort();
    Ok(all.into_iter().map(|(_, id)| id).collect())
}
