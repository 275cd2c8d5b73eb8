//! A real Kubernetes control plane for tests: etcd, `kube-apiserver` and, when asked, `kube-controller-manager`
//! (the binaries `.ci/peers` builds from the Go module proxy into `$SEXTANT_PEERS`), started on free loopback
//! ports with certificates made for the run, and stopped when the [`ControlPlane`] is dropped.
//!
//! What a test gets: the API server's URL, a kubeconfig for an administrator (a client certificate in
//! `system:masters`), [`ControlPlane::kubectl`] for applying YAML as a user does, and [`ControlPlane::user`]
//! for kubeconfigs of less privileged users (RBAC is on). No kubelet runs: Pods are stored, never started.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};

/// How long the control plane gets to become ready.
const READY_WITHIN: Duration = Duration::from_secs(120);

/// What went wrong starting the control plane.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    /// A binary `.ci/peers` builds is missing.
    #[error(
        "{0} is missing: run .ci/peers (it builds the Kubernetes control plane from the Go module proxy)"
    )]
    Missing(PathBuf),
    /// A file or process could not be made.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// Why it failed.
        source: std::io::Error,
    },
    /// A certificate could not be made.
    #[error("certificate: {0}")]
    Certificate(#[from] rcgen::Error),
    /// A component exited or did not become ready.
    #[error("{component} {why}; its log:\n{log}")]
    NotReady {
        /// Which.
        component: &'static str,
        /// What happened.
        why: String,
        /// The end of its log.
        log: String,
    },
    /// `kubectl` failed.
    #[error("kubectl {args}: {output}")]
    Kubectl {
        /// Its arguments.
        args: String,
        /// What it printed.
        output: String,
    },
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> HarnessError {
    let what = what.into();
    move |source| HarnessError::Io { what, source }
}

/// The control plane's programs.
#[derive(Clone, Debug)]
pub struct Binaries {
    /// `etcd`.
    pub etcd: PathBuf,
    /// `kube-apiserver`.
    pub apiserver: PathBuf,
    /// `kube-controller-manager`.
    pub controller_manager: PathBuf,
    /// `kubectl`.
    pub kubectl: PathBuf,
}

impl Binaries {
    /// The binaries under `peers` as `.ci/peers` lays them out (`kube/`, `etcd/`), each checked to exist.
    pub fn from_peers(peers: &Path) -> Result<Binaries, HarnessError> {
        let found = |p: PathBuf| {
            if p.is_file() {
                Ok(p)
            } else {
                Err(HarnessError::Missing(p))
            }
        };
        Ok(Binaries {
            etcd: found(peers.join("etcd/etcd"))?,
            apiserver: found(peers.join("kube/kube-apiserver"))?,
            controller_manager: found(peers.join("kube/kube-controller-manager"))?,
            kubectl: found(peers.join("kube/kubectl"))?,
        })
    }
}

/// How to start the control plane.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Also run `kube-controller-manager` (service accounts in new namespaces, EndpointSlices from Pods,
    /// Deployments' ReplicaSets and Pods, garbage collection).
    pub controller_manager: bool,
}

/// A running etcd + kube-apiserver (+ kube-controller-manager), stopped on drop.
pub struct ControlPlane {
    dir: PathBuf,
    binaries: Binaries,
    server: String,
    kubeconfig: PathBuf,
    ca: PathBuf,
    issuer: Issuer<'static, KeyPair>,
    running: Vec<(&'static str, Child)>,
}

/// A certificate and its key, as PEM.
struct Pem {
    cert: String,
    key: String,
}

impl ControlPlane {
    /// Starts the control plane with its files under `dir` (created; left for the test's logs) and waits
    /// until the API server is ready.
    pub fn start(
        binaries: &Binaries,
        dir: &Path,
        options: &Options,
    ) -> Result<ControlPlane, HarnessError> {
        // A free port found here may be taken by another process before etcd or the API server binds it:
        // then everything starts over on other ports.
        let mut attempt = 1;
        loop {
            match ControlPlane::start_once(binaries, dir, options) {
                Err(HarnessError::NotReady { log, .. })
                    if attempt < 3 && log.contains("address already in use") =>
                {
                    attempt += 1;
                    let _ = std::fs::remove_dir_all(dir.join("etcd"));
                }
                result => return result,
            }
        }
    }

    fn start_once(
        binaries: &Binaries,
        dir: &Path,
        options: &Options,
    ) -> Result<ControlPlane, HarnessError> {
        std::fs::create_dir_all(dir).map_err(io(format!("creating {}", dir.display())))?;
        let (ca_pem, issuer) = certificate_authority()?;
        let ca = dir.join("ca.pem");
        write(&ca, &ca_pem)?;
        let serving = issue(
            &issuer,
            "kube-apiserver",
            &[],
            &[
                "127.0.0.1",
                "localhost",
                "kubernetes",
                "kubernetes.default.svc",
            ],
            ExtendedKeyUsagePurpose::ServerAuth,
        )?;
        write(&dir.join("apiserver.pem"), &serving.cert)?;
        write(&dir.join("apiserver-key.pem"), &serving.key)?;
        let sa_key = KeyPair::generate()?;
        write(&dir.join("sa-key.pem"), &sa_key.serialize_pem())?;
        write(&dir.join("sa.pem"), &sa_key.public_key_pem())?;

        let mut plane = ControlPlane {
            dir: dir.to_path_buf(),
            binaries: binaries.clone(),
            server: String::new(),
            kubeconfig: dir.join("admin.kubeconfig"),
            ca,
            issuer,
            running: Vec::new(),
        };
        let (client, peer) = (free_port()?, free_port()?);
        let etcd_url = format!("http://127.0.0.1:{client}");
        let mut etcd = Command::new(&binaries.etcd);
        etcd.arg("--name=test")
            .arg(format!("--data-dir={}", dir.join("etcd").display()))
            .arg(format!("--listen-client-urls={etcd_url}"))
            .arg(format!("--advertise-client-urls={etcd_url}"))
            .arg(format!("--listen-peer-urls=http://127.0.0.1:{peer}"))
            .arg(format!(
                "--initial-advertise-peer-urls=http://127.0.0.1:{peer}"
            ))
            .arg(format!("--initial-cluster=test=http://127.0.0.1:{peer}"))
            .arg("--unsafe-no-fsync")
            .arg("--log-level=warn");
        plane.spawn("etcd", etcd)?;

        let port = free_port()?;
        plane.server = format!("https://127.0.0.1:{port}");
        let mut apiserver = Command::new(&binaries.apiserver);
        apiserver
            .arg(format!("--etcd-servers={etcd_url}"))
            .arg("--bind-address=127.0.0.1")
            .arg("--advertise-address=127.0.0.1")
            // The kubernetes Service's endpoints need a routable address; no Pod here calls it.
            .arg("--endpoint-reconciler-type=none")
            .arg(format!("--secure-port={port}"))
            .arg(format!("--cert-dir={}", dir.join("certs").display()))
            .arg(format!(
                "--tls-cert-file={}",
                dir.join("apiserver.pem").display()
            ))
            .arg(format!(
                "--tls-private-key-file={}",
                dir.join("apiserver-key.pem").display()
            ))
            .arg(format!("--client-ca-file={}", plane.ca.display()))
            .arg(format!(
                "--service-account-key-file={}",
                dir.join("sa.pem").display()
            ))
            .arg(format!(
                "--service-account-signing-key-file={}",
                dir.join("sa-key.pem").display()
            ))
            .arg("--service-account-issuer=https://kubernetes.default.svc.cluster.local")
            .arg("--api-audiences=https://kubernetes.default.svc.cluster.local")
            .arg("--service-cluster-ip-range=10.96.0.0/16")
            .arg("--authorization-mode=RBAC")
            .arg("--enable-priority-and-fairness=false")
            .arg("--v=1");
        plane.spawn("kube-apiserver", apiserver)?;
        let admin = plane.user("admin", &["system:masters"])?;
        std::fs::rename(&admin, &plane.kubeconfig).map_err(io("writing the admin kubeconfig"))?;
        plane.wait_ready()?;

        if options.controller_manager {
            let cm = plane.user("system:kube-controller-manager", &[])?;
            let mut controller_manager = Command::new(&binaries.controller_manager);
            controller_manager
                .arg(format!("--kubeconfig={}", cm.display()))
                .arg(format!("--authentication-kubeconfig={}", cm.display()))
                .arg(format!("--authorization-kubeconfig={}", cm.display()))
                .arg("--bind-address=127.0.0.1")
                .arg(format!("--secure-port={}", free_port()?))
                .arg(format!(
                    "--service-account-private-key-file={}",
                    dir.join("sa-key.pem").display()
                ))
                .arg(format!("--root-ca-file={}", plane.ca.display()))
                .arg("--use-service-account-credentials")
                .arg("--leader-elect=false")
                .arg("--controllers=*,-nodeipam,-nodelifecycle,-attachdetach,-persistentvolume-binder")
                .arg("--v=1");
            plane.spawn("kube-controller-manager", controller_manager)?;
        }
        Ok(plane)
    }

    fn spawn(&mut self, name: &'static str, mut cmd: Command) -> Result<(), HarnessError> {
        let log = std::fs::File::create(self.dir.join(format!("{name}.log")))
            .map_err(io(format!("creating {name}'s log")))?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(io("cloning a log"))?)
            .stderr(log)
            .spawn()
            .map_err(io(format!("starting {name}")))?;
        self.running.push((name, child));
        Ok(())
    }

    /// Waits until the API server answers `/readyz` (every component still running).
    fn wait_ready(&mut self) -> Result<(), HarnessError> {
        let end = Instant::now() + READY_WITHIN;
        loop {
            for (name, child) in &mut self.running {
                if let Ok(Some(status)) = child.try_wait() {
                    return Err(HarnessError::NotReady {
                        component: name,
                        why: format!("exited ({status})"),
                        log: tail(&self.dir.join(format!("{name}.log"))),
                    });
                }
            }
            let ready = self
                .kubectl()
                .args(["get", "--raw", "/readyz"])
                .output()
                .is_ok_and(|o| o.status.success());
            if ready {
                return Ok(());
            }
            if Instant::now() > end {
                return Err(HarnessError::NotReady {
                    component: "kube-apiserver",
                    why: format!("was not ready within {READY_WITHIN:?}"),
                    log: tail(&self.dir.join("kube-apiserver.log")),
                });
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The API server's URL (`https://127.0.0.1:PORT`).
    pub fn server(&self) -> &str {
        &self.server
    }

    /// The administrator's kubeconfig (`system:masters`).
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// The cluster's CA certificate (PEM file): it signed the API server's and the users' certificates.
    pub fn ca(&self) -> &Path {
        &self.ca
    }

    /// A kubeconfig for user `name` in `groups`, authenticated by a client certificate of the cluster's CA;
    /// what it may do is what RBAC grants it.
    pub fn user(&self, name: &str, groups: &[&str]) -> Result<PathBuf, HarnessError> {
        let pem = issue(
            &self.issuer,
            name,
            groups,
            &[],
            ExtendedKeyUsagePurpose::ClientAuth,
        )?;
        let file = name.replace([':', '/'], "-");
        let (cert, key) = (
            self.dir.join(format!("{file}.pem")),
            self.dir.join(format!("{file}-key.pem")),
        );
        write(&cert, &pem.cert)?;
        write(&key, &pem.key)?;
        let path = self.dir.join(format!("{file}.kubeconfig"));
        let config = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster:\n    server: {server}\n    certificate-authority: {ca}\nusers:\n- name: {name}\n  user:\n    client-certificate: {cert}\n    client-key: {key}\ncontexts:\n- name: test\n  context: {{cluster: test, user: \"{name}\"}}\ncurrent-context: test\n",
            server = self.server,
            ca = self.ca.display(),
            cert = cert.display(),
            key = key.display(),
        );
        write(&path, &config)?;
        Ok(path)
    }

    /// `kubectl` as the administrator.
    pub fn kubectl(&self) -> Command {
        let mut cmd = Command::new(&self.binaries.kubectl);
        cmd.arg(format!("--kubeconfig={}", self.kubeconfig.display()))
            .arg("--request-timeout=30s");
        cmd
    }

    /// Runs `kubectl ARGS` as the administrator with `stdin` on its input: what it printed, or an error
    /// with it.
    pub fn kubectl_with(&self, args: &[&str], stdin: &str) -> Result<String, HarnessError> {
        use std::io::Write;
        let mut child = self
            .kubectl()
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(io("starting kubectl"))?;
        if let Some(mut input) = child.stdin.take() {
            input
                .write_all(stdin.as_bytes())
                .map_err(io("writing to kubectl"))?;
        }
        let out = child.wait_with_output().map_err(io("running kubectl"))?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if out.status.success() {
            Ok(text)
        } else {
            Err(HarnessError::Kubectl {
                args: args.join(" "),
                output: text,
            })
        }
    }

    /// `kubectl apply -f -` of `yaml` as the administrator.
    pub fn apply(&self, yaml: &str) -> Result<String, HarnessError> {
        self.kubectl_with(&["apply", "-f", "-"], yaml)
    }

    /// Waits (at most a minute) until every CRD the API server has is established (served).
    pub fn crds_established(&self) -> Result<String, HarnessError> {
        self.kubectl_with(
            &[
                "wait",
                "--for=condition=Established",
                "crd",
                "--all",
                "--timeout=60s",
            ],
            "",
        )
    }

    /// The end of component `name`'s log (`etcd`, `kube-apiserver`, `kube-controller-manager`).
    pub fn log(&self, name: &str) -> String {
        tail(&self.dir.join(format!("{name}.log")))
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        // The controller manager first, etcd last.
        for (_, child) in self.running.iter_mut().rev() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The last 60 lines of `path`.
fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(60)..].join("\n")
}

fn write(path: &Path, text: &str) -> Result<(), HarnessError> {
    std::fs::write(path, text).map_err(io(format!("writing {}", path.display())))
}

/// A port free on loopback now (the kernel's pick; released for the component to bind).
fn free_port() -> Result<u16, HarnessError> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(io("finding a free port"))
}

/// The cluster's CA: its certificate (PEM) and the issuer signing with its key.
fn certificate_authority() -> Result<(String, Issuer<'static, KeyPair>), HarnessError> {
    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, "sextant test cluster CA");
    params.distinguished_name = name;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let key = KeyPair::generate()?;
    let cert = params.self_signed(&key)?;
    Ok((cert.pem(), Issuer::new(params, key)))
}

/// A certificate for `common_name` in organisations `groups` (Kubernetes' user and groups), for `ips_or_dns`,
/// signed by `issuer`.
fn issue(
    issuer: &Issuer<'static, KeyPair>,
    common_name: &str,
    groups: &[&str],
    ips_or_dns: &[&str],
    usage: ExtendedKeyUsagePurpose,
) -> Result<Pem, HarnessError> {
    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    for group in groups {
        name.push(DnType::OrganizationName, *group);
    }
    name.push(DnType::CommonName, common_name);
    params.distinguished_name = name;
    params.subject_alt_names = ips_or_dns
        .iter()
        .map(|s| match s.parse() {
            Ok(ip) => Ok(SanType::IpAddress(ip)),
            Err(_) => s.to_string().try_into().map(SanType::DnsName),
        })
        .collect::<Result<_, _>>()?;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![usage];
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, issuer)?;
    Ok(Pem {
        cert: cert.pem(),
        key: key.serialize_pem(),
    })
}
