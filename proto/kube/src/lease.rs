//! Which replica writes status: the holder of a `coordination.k8s.io` Lease. Every replica serves; the
//! holder renews the lease every [`RENEW`]; another takes it over once it has not been renewed for
//! [`DURATION`] (the holder is gone or cut off). Updates carry the lease's `resourceVersion`, so two
//! replicas racing for it cannot both win.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};
use tokio::sync::watch;

/// How often the holder renews, and how often the others look.
pub const RENEW: Duration = Duration::from_secs(2);
/// How long a lease holds without renewal.
pub const DURATION: Duration = Duration::from_secs(15);

/// Where and as whom to hold the lease.
#[derive(Clone, Debug)]
pub struct LeaseOptions {
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// This replica's identity (its Pod's name where there is one).
    pub identity: String,
}

/// Holds (or waits for) the lease forever, saying in `leader` whether this replica holds it.
pub async fn hold(client: Client, options: LeaseOptions, leader: watch::Sender<bool>) {
    let api: Api<Lease> = Api::namespaced(client, &options.namespace);
    loop {
        let held = match attempt(&api, &options).await {
            Ok(held) => held,
            Err(e) => {
                tracing::warn!(lease = %options.name, namespace = %options.namespace, "status lease: {e}");
                // Unsure: stop writing until the lease is known to be ours again.
                false
            }
        };
        if *leader.borrow() != held {
            tracing::info!(lease = %options.name, identity = %options.identity, held, "status lease changed hands");
            leader.send_replace(held);
        }
        tokio::time::sleep(RENEW).await;
    }
}

/// One look at the lease: created, renewed or taken over when it is free. Whether it is ours now.
async fn attempt(api: &Api<Lease>, options: &LeaseOptions) -> Result<bool, kube::Error> {
    let now = MicroTime(Timestamp::now());
    let Some(mut lease) = api.get_opt(&options.name).await? else {
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(options.name.clone()),
                ..ObjectMeta::default()
            },
            spec: Some(spec(options, now.clone(), now, 0)),
        };
        return match api.create(&PostParams::default(), &lease).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
            Err(e) => Err(e),
        };
    };
    let current = lease.spec.clone().unwrap_or_default();
    let ours = current.holder_identity.as_deref() == Some(options.identity.as_str());
    let expired = current.renew_time.as_ref().is_none_or(|renewed| {
        let lasts = current.lease_duration_seconds.map_or(DURATION, |s| {
            Duration::from_secs(u64::try_from(s).unwrap_or(0))
        });
        Timestamp::now().duration_since(renewed.0).unsigned_abs() > lasts
    });
    if !ours && !expired {
        return Ok(false);
    }
    let (acquired, transitions) = if ours {
        (
            current.acquire_time.clone().unwrap_or_else(|| now.clone()),
            current.lease_transitions.unwrap_or(0),
        )
    } else {
        (now.clone(), current.lease_transitions.unwrap_or(0) + 1)
    };
    lease.spec = Some(spec(options, acquired, now, transitions));
    // The resourceVersion read goes with the update: a replica that changed the lease meanwhile wins.
    match api
        .replace(&options.name, &PostParams::default(), &lease)
        .await
    {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
        Err(e) => Err(e),
    }
}

fn spec(
    options: &LeaseOptions,
    acquired: MicroTime,
    renewed: MicroTime,
    transitions: i32,
) -> LeaseSpec {
    LeaseSpec {
        holder_identity: Some(options.identity.clone()),
        lease_duration_seconds: Some(i32::try_from(DURATION.as_secs()).unwrap_or(15)),
        acquire_time: Some(acquired),
        renew_time: Some(renewed),
        lease_transitions: Some(transitions),
        ..LeaseSpec::default()
    }
}
