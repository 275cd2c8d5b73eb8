//! One connection to the Redis deployment, made again after it fails, and the two scripts the backend runs.
//!
//! Every call is bounded by the command timeout; a failed connection is not tried again for
//! [`RECONNECT_AFTER`], so a Redis that is gone costs one refused connect per interval, not one per call.
//! The scripts read the time from Redis (`TIME`), so the hubs' clocks never need to agree.

use std::sync::Mutex as StdMutex;
use std::time::{Duration, Instant};

use redis::aio::ConnectionLike;
use redis::{Cmd, Pipeline, RedisFuture, Value};

use crate::TlsFiles;
use crate::url::Topology;

/// How long after a failed connect the next one is tried.
pub const RECONNECT_AFTER: Duration = Duration::from_millis(250);

/// Takes up to `want` units from a GCRA bucket, letting the bucket run `over` units past its capacity (the
/// lease's slack), after giving back `back` unspent units of an earlier lease and charging `charge` units
/// unconditionally (what the hub allowed while Redis was away). Times in microseconds of Redis's clock.
///
/// When nothing fits now but one unit fits within `reserve` µs, that unit is reserved: granted, usable only
/// after the wait (so hubs refused by an empty bucket take turns instead of all asking for every unit).
///
/// KEYS[1] the bucket. ARGV: emission interval T, depth (capacity + over)·T, want, back, charge, reserve.
/// Returns {granted, wait until one unit fits (or the reserved unit is usable), time until the bucket is
/// full again}.
const LEASE: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local T = tonumber(ARGV[1])
local depth = tonumber(ARGV[2])
local want = tonumber(ARGV[3])
local back = tonumber(ARGV[4])
local charge = tonumber(ARGV[5])
local reserve = tonumber(ARGV[6])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
if back > 0 then tat = math.max(now, tat - back * T) end
if charge > 0 then tat = math.max(tat, now) + charge * T end
local start = math.max(tat, now)
local room = math.floor((depth - (start - now)) / T)
local granted = math.max(0, math.min(want, room))
local wait = 0
if granted > 0 then
  tat = start + granted * T
elseif want > 0 then
  wait = start + T - depth - now
  if wait <= reserve then
    granted = 1
    tat = start + T
  end
end
if tat > now then
  redis.call('SET', KEYS[1], string.format('%.0f', tat), 'PX', math.ceil((tat - now) / 1000) + 1000)
else
  redis.call('DEL', KEYS[1])
end
return {granted, math.max(0, math.ceil(wait)), math.max(0, math.ceil(tat - now))}
";

/// Registers this hub as live until `ttl` ms from now and counts the live hubs.
///
/// KEYS[1] the fleet's sorted set. ARGV: hub id, ttl in ms, 1 to register or 0 to leave.
const HEARTBEAT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[2])
if ARGV[3] == '1' then
  redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])
else
  redis.call('ZREM', KEYS[1], ARGV[1])
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('PEXPIRE', KEYS[1], ttl * 3)
return redis.call('ZCARD', KEYS[1])
";

/// What a lease call asks of a bucket.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Ask {
    /// Units wanted now.
    pub want: u32,
    /// Unspent units given back first.
    pub back: u32,
    /// Units charged unconditionally (what the fallback allowed).
    pub charge: u32,
    /// How far ahead a unit may be reserved when none fits now.
    pub reserve: Duration,
}

impl Ask {
    /// Gives back `units`, asking for nothing.
    pub fn give_back(units: u32) -> Ask {
        Ask {
            back: units,
            ..Ask::default()
        }
    }
}

/// A lease's answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Leased {
    /// Units granted.
    pub granted: u32,
    /// When nothing was granted: time until one unit fits; when one unit was reserved: time until it may
    /// be spent.
    pub wait: Duration,
    /// Time until the bucket is full again.
    pub reset: Duration,
}

/// Why a call failed, as counted in metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Failure {
    /// No connection could be made, or it broke.
    Connection,
    /// No answer within the command timeout.
    Timeout,
    /// Redis refused (READONLY during a failover, CLUSTERDOWN, OOM, a script error…).
    Server,
    /// The answer was not Redis's protocol or not the script's shape.
    Protocol,
}

impl Failure {
    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Failure::Connection => "connection",
            Failure::Timeout => "timeout",
            Failure::Server => "server",
            Failure::Protocol => "protocol",
        }
    }

    fn of(e: &redis::RedisError) -> Failure {
        if e.is_timeout() {
            Failure::Timeout
        } else if e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal() {
            Failure::Connection
        } else if e.kind() == redis::ErrorKind::Parse
            || e.kind() == redis::ErrorKind::UnexpectedReturnType
        {
            Failure::Protocol
        } else {
            Failure::Server
        }
    }
}

/// A connection of any topology.
#[derive(Clone)]
enum Conn {
    Single(redis::aio::MultiplexedConnection),
    Cluster(redis::cluster_async::ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(cmd, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

/// The deployment, its connection (made on first use, made again after a failure) and the scripts.
pub struct Client {
    topology: Topology,
    tls: TlsFiles,
    timeout: Duration,
    conn: tokio::sync::Mutex<Option<Conn>>,
    /// When the last connect failed.
    failed_at: StdMutex<Option<Instant>>,
    lease: redis::Script,
    heartbeat: redis::Script,
}

impl Client {
    /// A client of `topology` whose every call (connect included) ends within `timeout`.
    pub fn new(topology: Topology, tls: TlsFiles, timeout: Duration) -> Client {
        Client {
            topology,
            tls,
            timeout,
            conn: tokio::sync::Mutex::new(None),
            failed_at: StdMutex::new(None),
            lease: redis::Script::new(LEASE),
            heartbeat: redis::Script::new(HEARTBEAT),
        }
    }

    async fn connect(&self) -> Result<Conn, Failure> {
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.timeout.max(Duration::from_secs(1))))
            .set_response_timeout(Some(self.timeout));
        let made = match &self.topology {
            Topology::Standalone(url) => {
                let client = match self.certificates() {
                    Some(certs) => redis::Client::build_with_tls(url.as_str(), certs),
                    None => redis::Client::open(url.as_str()),
                }
                .map_err(|e| Failure::of(&e))?;
                client
                    .get_multiplexed_async_connection_with_config(&config)
                    .await
                    .map(Conn::Single)
            }
            Topology::Cluster(nodes) => {
                let mut builder = redis::cluster::ClusterClient::builder(nodes.clone())
                    .connection_timeout(self.timeout)
                    .response_timeout(self.timeout)
                    .retries(1);
                if let Some(certs) = self.certificates() {
                    builder = builder.certs(certs);
                }
                let client = builder.build().map_err(|e| Failure::of(&e))?;
                client.get_async_connection().await.map(Conn::Cluster)
            }
            Topology::Sentinel {
                sentinels,
                master,
                tls,
                username,
                password,
            } => {
                let mut info = redis::sentinel::SentinelNodeConnectionInfo::default();
                if *tls {
                    info = info.set_tls_mode(redis::TlsMode::Secure);
                }
                let mut redis_info = redis::RedisConnectionInfo::default();
                if let Some(u) = username {
                    redis_info = redis_info.set_username(u);
                }
                if let Some(p) = password {
                    redis_info = redis_info.set_password(p);
                }
                info = info.set_redis_connection_info(redis_info);
                let mut client = redis::sentinel::SentinelClient::build(
                    sentinels.clone(),
                    master.as_str(),
                    Some(info),
                    redis::sentinel::SentinelServerType::Master,
                )
                .map_err(|e| Failure::of(&e))?;
                client
                    .get_async_connection_with_config(&config)
                    .await
                    .map(Conn::Single)
            }
        };
        made.map_err(|e| {
            tracing::debug!(error = %e, "redis: connect failed");
            Failure::of(&e)
        })
    }

    fn certificates(&self) -> Option<redis::TlsCertificates> {
        self.tls.is_set().then(|| redis::TlsCertificates {
            client_tls: self
                .tls
                .client
                .as_ref()
                .map(|(cert, key)| redis::ClientTlsConfig {
                    client_cert: cert.clone(),
                    client_key: key.clone(),
                }),
            root_cert: self.tls.ca.clone(),
        })
    }

    /// The connection, made if there is none (unless a connect failed less than [`RECONNECT_AFTER`] ago).
    async fn conn(&self) -> Result<Conn, Failure> {
        let mut slot = self.conn.lock().await;
        if let Some(c) = &*slot {
            return Ok(c.clone());
        }
        if self.recently_unreachable() {
            return Err(Failure::Connection);
        }
        // A connect runs in the background (never while a decision waits): give it at least a second, as a
        // cluster client asks every seed for the slots.
        let bound = self.timeout.max(Duration::from_secs(1));
        let made = match tokio::time::timeout(bound, self.connect()).await {
            Ok(r) => r,
            Err(_) => Err(Failure::Timeout),
        };
        match made {
            Ok(c) => {
                *slot = Some(c.clone());
                Ok(c)
            }
            Err(f) => {
                *self.failed_at.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
                Err(f)
            }
        }
    }

    /// Whether a connect failed less than [`RECONNECT_AFTER`] ago and none has been made since.
    pub fn recently_unreachable(&self) -> bool {
        self.failed_at
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_some_and(|t| t.elapsed() < RECONNECT_AFTER)
    }

    /// Runs `invocation` on the connection within the timeout; a connection that failed is dropped so the
    /// next call makes a new one (a Sentinel asks again which server is the master).
    async fn run<T: redis::FromRedisValue>(
        &self,
        invocation: redis::ScriptInvocation<'_>,
    ) -> Result<T, Failure> {
        let mut conn = self.conn().await?;
        let result =
            match tokio::time::timeout(self.timeout, invocation.invoke_async(&mut conn)).await {
                Ok(Ok(v)) => return Ok(v),
                Ok(Err(e)) => {
                    tracing::debug!(error = %e, "redis: call failed");
                    Failure::of(&e)
                }
                Err(_) => Failure::Timeout,
            };
        // A broken or hung connection, or a server that is no longer the master (READONLY): start over (a
        // cluster client asks the seeds for the slots again, and so finds a failed-over master).
        *self.conn.lock().await = None;
        Err(result)
    }

    /// The LEASE script on `key`, a bucket of emission interval `t` and `depth`.
    pub async fn lease(
        &self,
        key: &str,
        t: Duration,
        depth: Duration,
        ask: Ask,
    ) -> Result<Leased, Failure> {
        let Ask {
            want,
            back,
            charge,
            reserve,
        } = ask;
        let micros = |d: Duration| d.as_secs_f64() * 1e6;
        let mut inv = self.lease.key(key);
        inv.arg(micros(t))
            .arg(micros(depth))
            .arg(want)
            .arg(back)
            .arg(charge)
            .arg(micros(reserve));
        let (granted, wait, reset): (i64, i64, i64) = self.run(inv).await?;
        let us = |v: i64| Duration::from_micros(u64::try_from(v).unwrap_or(0));
        Ok(Leased {
            granted: u32::try_from(granted)
                .map_err(|_| Failure::Protocol)?
                .min(want),
            wait: us(wait),
            reset: us(reset),
        })
    }

    /// The HEARTBEAT script: registers (or, with `live` false, removes) `id` and returns the live hubs.
    pub async fn heartbeat(
        &self,
        key: &str,
        id: &str,
        ttl: Duration,
        live: bool,
    ) -> Result<u32, Failure> {
        let mut inv = self.heartbeat.key(key);
        inv.arg(id)
            .arg(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX))
            .arg(if live { "1" } else { "0" });
        let n: i64 = self.run(inv).await?;
        u32::try_from(n).map_err(|_| Failure::Protocol)
    }
}
