//! `ContainerInfo` and friends: container type (MESOS/DOCKER), image, volumes, networks.
//!
//! Fields this crate does not model are kept in `extra` and written back verbatim, so
//! a TaskInfo passed from a framework through the master to the agent loses nothing.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json};

use crate::labels::Labels;

open_enum! {
    /// `ContainerInfo.Type`.
    pub enum ContainerType {
        /// `DOCKER`: the Docker containerizer.
        Docker = "DOCKER",
        /// `MESOS`: the Mesos (universal) containerizer.
        Mesos = "MESOS",
    }
}

open_enum! {
    /// `Volume.Mode`.
    pub enum VolumeMode {
        /// `RW`
        Rw = "RW",
        /// `RO`
        Ro = "RO",
    }
}

/// `Volume`: a path mounted into a container (also the `volume` of a persistent disk).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Volume {
    /// Path inside the container.
    pub container_path: String,
    /// Path on the host, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_path: Option<String>,
    /// `RW` or `RO`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<VolumeMode>,
    /// `image`, `source` and other fields, kept verbatim.
    #[serde(flatten)]
    pub extra: Map<String, Json>,
}

open_enum! {
    /// `Image.Type`.
    pub enum ImageType {
        /// `APPC`
        Appc = "APPC",
        /// `DOCKER`
        Docker = "DOCKER",
    }
}

/// `Image.Docker`: `{"name":"library/nginx:1.25"}`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct DockerImage {
    /// The image reference.
    pub name: String,
    /// `credential`, `config`, kept verbatim.
    #[serde(flatten)]
    pub extra: Map<String, Json>,
}

/// `Image` of the Mesos containerizer.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Image {
    /// `APPC` or `DOCKER`.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<ImageType>,
    /// The Docker image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub docker: Option<DockerImage>,
    /// Use a cached copy if there is one (Mesos default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cached: Option<bool>,
    /// `appc` and other fields, kept verbatim.
    #[serde(flatten)]
    pub extra: Map<String, Json>,
}

/// `ContainerInfo.MesosInfo`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct MesosInfo {
    /// The container image, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<Image>,
}

open_enum! {
    /// `ContainerInfo.DockerInfo.Network`.
    pub enum DockerNetwork {
        /// `HOST` (Mesos default)
        Host = "HOST",
        /// `BRIDGE`
        Bridge = "BRIDGE",
        /// `NONE`
        None = "NONE",
        /// `USER`
        User = "USER",
    }
}

/// A port mapping (`DockerInfo.PortMapping` / `NetworkInfo.PortMapping`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PortMapping {
    /// Port on the host.
    pub host_port: u32,
    /// Port in the container.
    pub container_port: u32,
    /// `tcp` or `udp`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
}

/// A `{"key":..,"value":..}` Docker parameter.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Parameter {
    /// Parameter name, e.g. `label`.
    pub key: String,
    /// Parameter value.
    pub value: String,
}

/// `ContainerInfo.DockerInfo`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct DockerInfo {
    /// Image reference (required by Mesos).
    pub image: String,
    /// Network mode (default HOST).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<DockerNetwork>,
    /// Port mappings (BRIDGE/USER networks).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub port_mappings: Vec<PortMapping>,
    /// Run privileged (default false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub privileged: Option<bool>,
    /// Extra `docker run` parameters.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parameters: Vec<Parameter>,
    /// Always pull the image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub force_pull_image: Option<bool>,
    /// Other fields, kept verbatim.
    #[serde(flatten)]
    pub extra: Map<String, Json>,
}

/// `NetworkInfo.IPAddress`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct IpAddress {
    /// `IPv4` or `IPv6`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    /// The address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_address: Option<String>,
}

/// `NetworkInfo`: a container network (CNI name) and its addresses.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct NetworkInfo {
    /// Addresses assigned (in statuses) or requested.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ip_addresses: Vec<IpAddress>,
    /// Network name (e.g. `dcos`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Network groups.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    /// Labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<Labels>,
    /// Port mappings.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub port_mappings: Vec<PortMapping>,
}

/// `ContainerInfo`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContainerInfo {
    /// `MESOS` or `DOCKER`.
    #[serde(rename = "type")]
    pub kind: ContainerType,
    /// Volumes to mount.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<Volume>,
    /// Container hostname.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// Docker settings (type DOCKER).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub docker: Option<DockerInfo>,
    /// Mesos containerizer settings (type MESOS).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mesos: Option<MesosInfo>,
    /// Networks to join.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub network_infos: Vec<NetworkInfo>,
    /// `linux_info`, `rlimit_info`, `tty_info` and other fields, kept verbatim.
    #[serde(flatten)]
    pub extra: Map<String, Json>,
}

impl ContainerInfo {
    /// A MESOS container running the given Docker image.
    pub fn mesos_with_docker_image(image: impl Into<String>) -> Self {
        ContainerInfo {
            kind: ContainerType::Mesos,
            volumes: Vec::new(),
            hostname: None,
            docker: None,
            mesos: Some(MesosInfo {
                image: Some(Image {
                    kind: Some(ImageType::Docker),
                    docker: Some(DockerImage {
                        name: image.into(),
                        extra: Map::new(),
                    }),
                    cached: None,
                    extra: Map::new(),
                }),
            }),
            network_infos: Vec::new(),
            extra: Map::new(),
        }
    }

    /// The image name whichever containerizer is used: `docker.image` for DOCKER,
    /// `mesos.image.docker.name` for MESOS.
    pub fn image(&self) -> Option<&str> {
        match &self.kind {
            ContainerType::Docker => self.docker.as_ref().map(|d| d.image.as_str()),
            _ => self
                .mesos
                .as_ref()
                .and_then(|m| m.image.as_ref())
                .and_then(|i| i.docker.as_ref())
                .map(|d| d.name.as_str()),
        }
    }
}
