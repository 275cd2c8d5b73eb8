//! `sextant kube inject`: pilot's sidecar injector run offline on YAML, as `istioctl kube-inject` is: every
//! Pod, workload Pod template and `List` item gets what the `/inject` webhook would add; other documents
//! pass through unchanged. What happened to each is said on stderr.

use std::io::Read as _;
use std::path::PathBuf;

use crate::{Failure, fail, out};

/// `sextant kube …`.
#[derive(clap::Subcommand)]
pub enum KubeCommand {
    /// Add the sidecar to the Pods and workloads (Deployment, StatefulSet, DaemonSet, ReplicaSet, Job,
    /// CronJob) of a YAML file as pilot's injector does: the sextant-init init container, the sextant-proxy
    /// container, the token and mesh-root volumes, the probes rewritten. Prints the result; says on stderr
    /// what was injected or left alone, and why.
    Inject(InjectArgs),
}

/// Flags of `sextant kube inject`.
#[derive(clap::Args)]
pub struct InjectArgs {
    /// The YAML to inject (`-` for standard input); several documents separated by `---`.
    #[arg(short = 'f', long = "filename")]
    file: PathBuf,
    /// Write the result here instead of standard output.
    #[arg(short = 'o', long = "output")]
    output: Option<PathBuf>,
    /// The image of the injected containers (pilot's --inject-image).
    #[arg(long, default_value = concat!("sextant:", env!("CARGO_PKG_VERSION")))]
    image: String,
    /// The injected containers' imagePullPolicy.
    #[arg(long, value_name = "POLICY", value_parser = ["Always", "IfNotPresent", "Never"])]
    pull_policy: Option<String>,
    /// Where the sidecars reach pilot's secure port (pilot's --inject-xds-address).
    #[arg(long, default_value = "https://sextant-pilot.sextant-system.svc:15012")]
    xds_address: String,
    /// The mesh's trust domain (pilot's --trust-domain).
    #[arg(long, default_value = "cluster.local")]
    trust_domain: String,
    /// The audience of the sidecars' service-account token (pilot's --token-audience).
    #[arg(long, default_value = pilot_inject::DEFAULT_AUDIENCE)]
    token_audience: String,
}

/// Runs `sextant kube …`.
pub fn run(command: &KubeCommand) -> Result<(), Failure> {
    match command {
        KubeCommand::Inject(args) => inject(args),
    }
}

fn inject(args: &InjectArgs) -> Result<(), Failure> {
    let name = args.file.display().to_string();
    let text = if name == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|e| fail(format!("cannot read standard input: {e}"), "pipe YAML in"))?;
        text
    } else {
        std::fs::read_to_string(&args.file).map_err(|e| {
            fail(
                format!("cannot read {name}: {e}"),
                "give -f a YAML file, or - for standard input",
            )
        })?
    };
    let documents: Vec<serde_json::Value> = serde_saphyr::from_str_multiple(&text)
        .map_err(|e| fail(format!("{name}: {e}"), "the file must be YAML documents"))?;
    let mut options = pilot_inject::Options::new(&args.image, &args.xds_address);
    options.pull_policy = args.pull_policy.clone();
    options.trust_domain = args.trust_domain.clone();
    options.token_audience = args.token_audience.clone();
    let mut output = String::new();
    for (i, mut document) in documents.into_iter().enumerate() {
        if document.is_null() {
            continue;
        }
        let outcomes = pilot_inject::inject_object(&mut document, &options).map_err(|e| {
            fail(
                format!("{name}: document {}: {e}", i + 1),
                "fix the annotation, or label the Pod sidecar.istio.io/inject: \"false\"",
            )
        })?;
        for (what, outcome) in outcomes {
            match outcome {
                pilot_inject::Outcome::Injected { .. } => eprintln!("{what}: injected"),
                pilot_inject::Outcome::Skipped(why) => eprintln!("{what}: left alone: {why}"),
            }
        }
        let yaml = serde_saphyr::to_string(&document)
            .map_err(|e| fail(e, "this is a bug; please report it"))?;
        output.push_str("---\n");
        output.push_str(&yaml);
    }
    match &args.output {
        None => out(&output),
        Some(path) => std::fs::write(path, output).map_err(|e| {
            fail(
                format!("cannot write {}: {e}", path.display()),
                "check -o's directory",
            )
        }),
    }
}
