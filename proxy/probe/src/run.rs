//! Running a [`Prober`] as the kubelet would from the node, but from inside the pod: a direct connection (the
//! proxy's uid is not captured by the pod's iptables rules), a fresh one per probe, the whole probe bounded by
//! its timeout.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use http::{Request, header};
use http_body_util::Empty;
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::parse::{Action, Grpc, HttpGet, Prober, Scheme, TcpSocket};

/// The `User-Agent` of HTTP probes unless the probe sets one: the kubelet's prefix, which applications
/// recognise.
const USER_AGENT: &str = "kube-probe/sextant";

/// Why a probe failed; its message is one line (the status port's 503 body, the kubelet's event).
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// The probe did not succeed within its timeout.
    #[error("probe timed out after {}", seconds(*.0))]
    Timeout(Duration),
    /// The TCP connection failed.
    #[error("cannot connect to {addr}: {message}")]
    Connect {
        /// `HOST:PORT`.
        addr: String,
        /// Why.
        message: String,
    },
    /// The TLS handshake of an HTTPS probe failed.
    #[error("TLS handshake with {addr}: {message}")]
    Tls {
        /// `HOST:PORT`.
        addr: String,
        /// Why.
        message: String,
    },
    /// The HTTP exchange failed before a status came.
    #[error("GET {url}: {message}")]
    Http {
        /// The probe's URL.
        url: String,
        /// Why.
        message: String,
    },
    /// The HTTP status was outside 200..=399.
    #[error("GET {url}: status {status}")]
    Status {
        /// The probe's URL.
        url: String,
        /// The status.
        status: u16,
    },
    /// The gRPC health check failed (no such service, not the health protocol, transport error).
    #[error("gRPC health check of {addr}: {message}")]
    Grpc {
        /// `HOST:PORT`.
        addr: String,
        /// Why.
        message: String,
    },
    /// The service answered, not `SERVING`.
    #[error("gRPC health check of {addr}: service {service:?} is {status}")]
    NotServing {
        /// `HOST:PORT`.
        addr: String,
        /// The service asked about.
        service: String,
        /// Its status (`NOT_SERVING`, `UNKNOWN`, `SERVICE_UNKNOWN`).
        status: String,
    },
}

fn seconds(d: Duration) -> String {
    format!("{}s", d.as_secs_f64())
}

/// An error and its sources on one line.
fn chain(e: &dyn std::error::Error) -> String {
    let mut message = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let next = s.to_string();
        if !message.contains(&next) {
            message.push_str(": ");
            message.push_str(&next);
        }
        source = s.source();
    }
    message.replace('\n', " ")
}

/// `HOST:PORT`, an IPv6 address in brackets.
fn authority(host: &str, port: u16) -> String {
    match host.parse::<IpAddr>() {
        Ok(ip) => SocketAddr::new(ip, port).to_string(),
        Err(_) => format!("{host}:{port}"),
    }
}

impl Prober {
    /// Runs the probe against the pod at `pod_ip` (the host of probes that name none): `Ok` when it succeeded
    /// within its timeout.
    pub async fn run(&self, pod_ip: IpAddr) -> Result<(), ProbeError> {
        let run = async {
            match &self.action {
                Action::Http(h) => http_get(h, pod_ip).await,
                Action::Tcp(t) => tcp(t, pod_ip).await,
                Action::Grpc(g) => grpc(g, pod_ip).await,
            }
        };
        tokio::time::timeout(self.timeout, run)
            .await
            .map_err(|_| ProbeError::Timeout(self.timeout))?
    }
}

async fn connect(host: &str, port: u16) -> Result<TcpStream, ProbeError> {
    let stream = TcpStream::connect((host, port))
        .await
        .map_err(|e| ProbeError::Connect {
            addr: authority(host, port),
            message: chain(&e),
        })?;
    // A probe writes one small request and waits: nothing to coalesce.
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

async fn tcp(t: &TcpSocket, pod_ip: IpAddr) -> Result<(), ProbeError> {
    let host = t.host.clone().unwrap_or_else(|| pod_ip.to_string());
    connect(&host, t.port).await.map(drop)
}

async fn http_get(h: &HttpGet, pod_ip: IpAddr) -> Result<(), ProbeError> {
    let host = h.host.clone().unwrap_or_else(|| pod_ip.to_string());
    let addr = authority(&host, h.port);
    let scheme = match h.scheme {
        Scheme::Http => "http",
        Scheme::Https => "https",
    };
    let url = format!("{scheme}://{addr}{}", h.path);
    let http_error = |message: String| ProbeError::Http {
        url: url.clone(),
        message,
    };
    let mut request = Request::get(h.path.clone())
        .header(header::HOST, addr.as_str())
        .header(header::USER_AGENT, USER_AGENT)
        .header(header::ACCEPT, "*/*")
        // A fresh connection per probe, as the kubelet's.
        .header(header::CONNECTION, "close")
        .body(Empty::<Bytes>::new())
        .map_err(|e| http_error(chain(&e)))?;
    // The probe's headers replace the defaults of the same name; repeated names are all sent.
    let headers = request.headers_mut();
    for (name, _) in &h.headers {
        headers.remove(name);
    }
    for (name, value) in &h.headers {
        headers.append(name.clone(), value.clone());
    }
    let stream = connect(&host, h.port).await?;
    let status = match h.scheme {
        Scheme::Http => exchange(stream, request).await,
        Scheme::Https => {
            let config = crate::tls::client_config().map_err(|message| ProbeError::Tls {
                addr: addr.clone(),
                message,
            })?;
            let name = rustls::pki_types::ServerName::try_from(host.clone()).map_err(|e| {
                ProbeError::Tls {
                    addr: addr.clone(),
                    message: chain(&e),
                }
            })?;
            let tls = tokio_rustls::TlsConnector::from(config)
                .connect(name, stream)
                .await
                .map_err(|e| ProbeError::Tls {
                    addr: addr.clone(),
                    message: chain(&e),
                })?;
            exchange(tls, request).await
        }
    }
    .map_err(|e| http_error(chain(&e)))?;
    if (200..=399).contains(&status) {
        Ok(())
    } else {
        Err(ProbeError::Status { url, status })
    }
}

/// Sends the request on a new HTTP/1.1 connection over `io` and returns the response's status; the body is
/// not read (a redirect is a success, as the kubelet counts any 3xx it does not follow).
async fn exchange<T>(io: T, request: Request<Empty<Bytes>>) -> Result<u16, hyper::Error>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io)).await?;
    let send = sender.send_request(request);
    tokio::pin!(send, conn);
    let response = tokio::select! {
        response = &mut send => response?,
        ended = &mut conn => {
            // The connection ended: the response came before it did, or the connection's error says why not.
            match send.await {
                Ok(response) => response,
                Err(e) => return Err(ended.err().unwrap_or(e)),
            }
        }
    };
    Ok(response.status().as_u16())
}

async fn grpc(g: &Grpc, pod_ip: IpAddr) -> Result<(), ProbeError> {
    let addr = authority(&pod_ip.to_string(), g.port);
    let grpc_error = |message: String| ProbeError::Grpc {
        addr: addr.clone(),
        message,
    };
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .map_err(|e| grpc_error(chain(&e)))?
        .user_agent(USER_AGENT)
        .map_err(|e| grpc_error(chain(&e)))?
        .connect()
        .await
        .map_err(|e| grpc_error(chain(&e)))?;
    let answer = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: g.service.clone(),
        })
        .await
        .map_err(|status| {
            grpc_error(match status.code() {
                tonic::Code::Unimplemented => {
                    "the server does not implement the gRPC health protocol".into()
                }
                code => format!("{code:?}: {}", status.message()),
            })
        })?;
    let status = answer.into_inner().status;
    if status == ServingStatus::Serving as i32 {
        return Ok(());
    }
    let status = ServingStatus::try_from(status)
        .map_or_else(|_| status.to_string(), |s| s.as_str_name().to_string());
    Err(ProbeError::NotServing {
        addr,
        service: g.service.clone(),
        status,
    })
}

#[cfg(test)]
mod tests;
