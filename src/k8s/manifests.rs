//! The Kubernetes objects of a sharded run, built from k8s-openapi's typed API
//! structs and serialised to YAML, so that a misspelt field is a compile error
//! rather than an object the API server silently ignores part of.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec, DeploymentStrategy};
use k8s_openapi::api::batch::v1::{
    Job, JobSpec, PodFailurePolicy, PodFailurePolicyOnExitCodesRequirement,
    PodFailurePolicyOnPodConditionsPattern, PodFailurePolicyRule,
};
use k8s_openapi::api::core::v1::{
    Affinity, Capabilities, ConfigMap, ConfigMapVolumeSource, Container, ContainerPort,
    EmptyDirVolumeSource, HTTPGetAction, PodAffinityTerm, PodAntiAffinity, PodSecurityContext,
    PodSpec, PodTemplateSpec, Probe, ResourceRequirements, SecurityContext, Service, ServicePort,
    ServiceSpec, Volume, VolumeMount, WeightedPodAffinityTerm,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// The port the collector listens on, in its pod and behind its Service.
pub const COLLECTOR_PORT: i32 = 8080;

/// The user the Dockerfile creates: pods run as it, never as root.
const RUN_AS: i64 = 10001;

/// Where the profile and the results live inside a shard's container.
const PROFILE_DIR: &str = "/profile";
const RESULTS_DIR: &str = "/results";
const DATA_DIR: &str = "/data";

/// How hard the scheduler must keep shards on different nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Spread {
    /// Different nodes when the cluster has room; shards share a node rather
    /// than wait. A Pending shard misses the synchronised start and makes the
    /// whole run INCOMPLETE, while two shards on one node still give exact,
    /// mergeable results (each records what it delivered).
    Preferred,
    /// One node per shard or no run: a shard without a free node stays Pending.
    Required,
}

/// Requests and limits of each shard's container.
#[derive(Debug, Clone)]
pub struct Resources {
    pub cpu: String,
    pub cpu_limit: String,
    pub memory: String,
    pub memory_limit: String,
}

/// Everything the manifests depend on, resolved by the CLI.
#[derive(Debug, Clone)]
pub struct ShardedRun {
    /// The Job's name; the other objects add a suffix to it.
    pub name: String,
    pub namespace: Option<String>,
    pub shards: u32,
    pub image: String,
    /// The profile's file name: its ConfigMap key and its name under /profile.
    pub profile_file: String,
    pub profile_text: String,
    /// RFC 3339, whole seconds, UTC.
    pub start_at: String,
    pub resources: Resources,
    pub spread: Spread,
}

/// One object as YAML, and the file it goes to with `-o DIR`.
#[derive(Debug, Clone)]
pub struct Document {
    pub file: String,
    pub yaml: String,
}

impl ShardedRun {
    /// Every object in apply order: the profile, the collector (so it is up
    /// before a shard finishes), the shards' DNS, then the Job.
    pub fn documents(&self) -> anyhow::Result<Vec<Document>> {
        Ok(vec![
            document("00-profile-configmap.yaml", &self.config_map())?,
            document("10-collector-service.yaml", &self.collector_service())?,
            document("11-collector-deployment.yaml", &self.collector())?,
            document("20-shards-service.yaml", &self.shards_service())?,
            document("30-shards-job.yaml", &self.job())?,
        ])
    }

    fn profile_map(&self) -> String {
        format!("{}-profile", self.name)
    }

    fn collector_name(&self) -> String {
        format!("{}-collect", self.name)
    }

    fn shards_service_name(&self) -> String {
        format!("{}-shards", self.name)
    }

    /// Where a shard POSTs its results (the shard appends `/{index}`).
    pub fn collector_url(&self) -> String {
        format!("http://{}:{COLLECTOR_PORT}/shards", self.collector_name())
    }

    fn labels(&self, component: &str) -> BTreeMap<String, String> {
        BTreeMap::from([
            ("app.kubernetes.io/name".into(), "slolab".into()),
            ("app.kubernetes.io/instance".into(), self.name.clone()),
            ("app.kubernetes.io/component".into(), component.into()),
        ])
    }

    fn metadata(&self, name: String, component: &str) -> ObjectMeta {
        ObjectMeta {
            name: Some(name),
            namespace: self.namespace.clone(),
            labels: Some(self.labels(component)),
            ..Default::default()
        }
    }

    fn config_map(&self) -> ConfigMap {
        ConfigMap {
            metadata: self.metadata(self.profile_map(), "profile"),
            data: Some(BTreeMap::from([(
                self.profile_file.clone(),
                self.profile_text.clone(),
            )])),
            ..Default::default()
        }
    }

    /// Headless: no virtual IP, one DNS record per shard pod
    /// (`<job>-<index>.<name>-shards`), which the pods' `subdomain` asks for.
    fn shards_service(&self) -> Service {
        Service {
            metadata: self.metadata(self.shards_service_name(), "shard"),
            spec: Some(ServiceSpec {
                cluster_ip: Some("None".into()),
                selector: Some(self.labels("shard")),
                // Shards are addressable while they wait for the start time.
                publish_not_ready_addresses: Some(true),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn job(&self) -> Job {
        let shards = i32::try_from(self.shards).unwrap_or(i32::MAX);
        let args = vec![
            "run".to_string(),
            format!("{PROFILE_DIR}/{}", self.profile_file),
            format!("--shards={}", self.shards),
            // `--flag=value`: a lone RFC 3339 value would be a YAML timestamp.
            format!("--start-at={}", self.start_at),
            format!("--out={RESULTS_DIR}"),
            format!("--post-results={}", self.collector_url()),
        ];
        let container = Container {
            name: "shard".into(),
            image: Some(self.image.clone()),
            command: Some(vec!["slolab".into()]),
            args: Some(args),
            resources: Some(self.shard_resources()),
            volume_mounts: Some(vec![
                mount("profile", PROFILE_DIR, true),
                mount("results", RESULTS_DIR, false),
            ]),
            security_context: Some(container_security()),
            ..Default::default()
        };
        let pod = PodSpec {
            containers: vec![container],
            // A shard that fails is not retried: a retry would start after
            // the synchronised start and its share of the schedule is lost.
            restart_policy: Some("Never".into()),
            subdomain: Some(self.shards_service_name()),
            affinity: Some(self.anti_affinity()),
            security_context: Some(pod_security()),
            volumes: Some(vec![
                Volume {
                    name: "profile".into(),
                    config_map: Some(ConfigMapVolumeSource {
                        name: self.profile_map(),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
                empty_dir("results"),
            ]),
            ..Default::default()
        };
        Job {
            metadata: self.metadata(self.name.clone(), "shard"),
            spec: Some(JobSpec {
                completion_mode: Some("Indexed".into()),
                completions: Some(shards),
                parallelism: Some(shards),
                backoff_limit: Some(0),
                pod_failure_policy: Some(PodFailurePolicy {
                    rules: vec![
                        // `slolab run --shards` exits 0 whenever it ran, whatever
                        // its latencies: any other code is a shard that failed.
                        PodFailurePolicyRule {
                            action: "FailJob".into(),
                            on_exit_codes: Some(PodFailurePolicyOnExitCodesRequirement {
                                container_name: Some("shard".into()),
                                operator: "NotIn".into(),
                                values: vec![0],
                            }),
                            ..Default::default()
                        },
                        // Evicted or preempted: its share is lost too (the default
                        // would count it against backoffLimit; say it outright).
                        PodFailurePolicyRule {
                            action: "FailJob".into(),
                            on_pod_conditions: Some(vec![PodFailurePolicyOnPodConditionsPattern {
                                type_: "DisruptionTarget".into(),
                                status: "True".into(),
                            }]),
                            ..Default::default()
                        },
                    ],
                }),
                template: PodTemplateSpec {
                    metadata: Some(ObjectMeta {
                        labels: Some(self.labels("shard")),
                        ..Default::default()
                    }),
                    spec: Some(pod),
                },
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// Request = limit by default: Guaranteed QoS, so shards are the last pods
    /// evicted and each gets the CPU it asked for — unequal shards would skew
    /// the union of their schedules.
    fn shard_resources(&self) -> ResourceRequirements {
        let r = &self.resources;
        ResourceRequirements {
            requests: Some(BTreeMap::from([
                ("cpu".into(), Quantity(r.cpu.clone())),
                ("memory".into(), Quantity(r.memory.clone())),
            ])),
            limits: Some(BTreeMap::from([
                ("cpu".into(), Quantity(r.cpu_limit.clone())),
                ("memory".into(), Quantity(r.memory_limit.clone())),
            ])),
            ..Default::default()
        }
    }

    /// Shards of this run avoid each other's nodes (see [`Spread`]).
    fn anti_affinity(&self) -> Affinity {
        let term = PodAffinityTerm {
            label_selector: Some(LabelSelector {
                match_labels: Some(self.labels("shard")),
                ..Default::default()
            }),
            topology_key: "kubernetes.io/hostname".into(),
            ..Default::default()
        };
        let anti = match self.spread {
            Spread::Preferred => PodAntiAffinity {
                preferred_during_scheduling_ignored_during_execution: Some(vec![
                    WeightedPodAffinityTerm {
                        pod_affinity_term: term,
                        weight: 100,
                    },
                ]),
                ..Default::default()
            },
            Spread::Required => PodAntiAffinity {
                required_during_scheduling_ignored_during_execution: Some(vec![term]),
                ..Default::default()
            },
        };
        Affinity {
            pod_anti_affinity: Some(anti),
            ..Default::default()
        }
    }

    /// One collector: its shards live in its emptyDir, so a second replica
    /// (or a rolling update's overlap) would split them; hence `Recreate`.
    fn collector(&self) -> Deployment {
        let container = Container {
            name: "collect".into(),
            image: Some(self.image.clone()),
            command: Some(vec!["slolab".into()]),
            args: Some(vec![
                "collect".into(),
                format!("--shards={}", self.shards),
                format!("--listen=0.0.0.0:{COLLECTOR_PORT}"),
                format!("--out={DATA_DIR}"),
            ]),
            ports: Some(vec![ContainerPort {
                name: Some("http".into()),
                container_port: COLLECTOR_PORT,
                ..Default::default()
            }]),
            readiness_probe: Some(Probe {
                http_get: Some(HTTPGetAction {
                    path: Some("/status".into()),
                    port: IntOrString::String("http".into()),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            resources: Some(ResourceRequirements {
                requests: Some(BTreeMap::from([
                    ("cpu".into(), Quantity("100m".into())),
                    ("memory".into(), Quantity("128Mi".into())),
                ])),
                // Merging holds every shard's histograms at once.
                limits: Some(BTreeMap::from([("memory".into(), Quantity("1Gi".into()))])),
                ..Default::default()
            }),
            volume_mounts: Some(vec![mount("data", DATA_DIR, false)]),
            security_context: Some(container_security()),
            ..Default::default()
        };
        Deployment {
            metadata: self.metadata(self.collector_name(), "collector"),
            spec: Some(DeploymentSpec {
                replicas: Some(1),
                strategy: Some(DeploymentStrategy {
                    type_: Some("Recreate".into()),
                    ..Default::default()
                }),
                selector: LabelSelector {
                    match_labels: Some(self.labels("collector")),
                    ..Default::default()
                },
                template: PodTemplateSpec {
                    metadata: Some(ObjectMeta {
                        labels: Some(self.labels("collector")),
                        ..Default::default()
                    }),
                    spec: Some(PodSpec {
                        containers: vec![container],
                        security_context: Some(pod_security()),
                        volumes: Some(vec![empty_dir("data")]),
                        ..Default::default()
                    }),
                },
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn collector_service(&self) -> Service {
        Service {
            metadata: self.metadata(self.collector_name(), "collector"),
            spec: Some(ServiceSpec {
                selector: Some(self.labels("collector")),
                ports: Some(vec![ServicePort {
                    name: Some("http".into()),
                    port: COLLECTOR_PORT,
                    target_port: Some(IntOrString::String("http".into())),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        }
    }
}

fn document<T: serde::Serialize>(file: &str, object: &T) -> anyhow::Result<Document> {
    Ok(Document {
        file: file.into(),
        yaml: serde_norway::to_string(object)?,
    })
}

fn mount(volume: &str, path: &str, read_only: bool) -> VolumeMount {
    VolumeMount {
        name: volume.into(),
        mount_path: path.into(),
        read_only: read_only.then_some(true),
        ..Default::default()
    }
}

fn empty_dir(name: &str) -> Volume {
    Volume {
        name: name.into(),
        empty_dir: Some(EmptyDirVolumeSource::default()),
        ..Default::default()
    }
}

/// The Dockerfile's user; `fsGroup` makes the emptyDirs writable by it.
fn pod_security() -> PodSecurityContext {
    PodSecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(RUN_AS),
        run_as_group: Some(RUN_AS),
        fs_group: Some(RUN_AS),
        ..Default::default()
    }
}

fn container_security() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".into()]),
            ..Default::default()
        }),
        ..Default::default()
    }
}
