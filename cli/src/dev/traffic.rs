//! The dev mesh's traffic: [`RATE`] requests a second to productpage as a rotation of users — `jason` sees
//! the reviews canary's v2, `guest` is denied reviews by the hub's policy — and every few seconds a `bot`
//! asking faster than its rate limit allows. Every fifth request starts a sampled W3C trace.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Requests a second (the bot's bursts aside).
pub const RATE: u32 = 10;

/// The users of the rotation.
const USERS: &[&str] = &[
    "alice",
    "jason",
    "bob",
    "carol",
    "guest",
    "dave",
    "erin",
    "jason",
    "frank",
    "ann@staff",
];
/// One request in this many starts a sampled trace (the sidecars sample 1 % of the rest, as Istio does).
const SAMPLE_EVERY: u64 = 5;
/// The bot's burst, every [`BOT_EVERY`] ticks: past the hub's 5-a-second limit on details.
const BOT_BURST: usize = 8;
const BOT_EVERY: u64 = 30;

/// Sends the traffic to productpage at `entry` until `stop` turns true.
pub async fn generate(entry: SocketAddr, mut stop: tokio::sync::watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1) / RATE);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut n: u64 = 0;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        n += 1;
        let user = USERS[usize::try_from(n).unwrap_or(0) % USERS.len()];
        tokio::spawn(get(entry, user, n.is_multiple_of(SAMPLE_EVERY)));
        if n.is_multiple_of(BOT_EVERY) {
            for _ in 0..BOT_BURST {
                tokio::spawn(get(entry, "bot", false));
            }
        }
    }
}

/// `GET /productpage` as `user`, starting a sampled trace when `traced`; the status, when an answer came
/// within 10 s.
pub async fn get(entry: SocketAddr, user: &str, traced: bool) -> Option<u16> {
    let exchange = async {
        let mut conn = tokio::net::TcpStream::connect(entry).await.ok()?;
        let trace = if traced {
            format!(
                "traceparent: 00-{:032x}-{:016x}-01\r\n",
                fastrand::u128(1..),
                fastrand::u64(1..)
            )
        } else {
            String::new()
        };
        let request = format!(
            "GET /productpage HTTP/1.1\r\nHost: productpage.bookinfo.svc.cluster.local:9080\r\nx-user: {user}\r\nuser-agent: sextant-dev\r\n{trace}connection: close\r\n\r\n"
        );
        conn.write_all(request.as_bytes()).await.ok()?;
        let mut answer = Vec::new();
        conn.read_to_end(&mut answer).await.ok()?;
        let text = String::from_utf8_lossy(&answer);
        text.split(' ').nth(1)?.parse().ok()
    };
    tokio::time::timeout(Duration::from_secs(10), exchange)
        .await
        .ok()
        .flatten()
}
