//! NVIDIA GPUs from sysfs PCI and the driver's `/proc` files.
//!
//! A GPU is a PCI function in `/sys/bus/pci/devices/*` with `vendor` `0x10de` and a
//! `class` of `0x0300xx` (VGA controller) or `0x0302xx` (3D controller — data-centre
//! parts such as T4, A100, H100); NVIDIA's HDMI audio and USB functions share the vendor
//! but not the class and are skipped. The model and device minor come from
//! `/proc/driver/nvidia/gpus/<pci address>/information` (`Model: \t\t NVIDIA A100-SXM4-40GB`,
//! `Device Minor: \t 0`), which exists only while the driver is loaded; a GPU without it
//! is still counted, with a warning, and has no model.
//!
//! NVML (`libnvidia-ml.so.1`) is not used: sysfs and `/proc/driver/nvidia` give count,
//! model and minor without loading vendor code into the agent. Loading NVML at runtime
//! (for memory size, MIG and health) is a follow-up.

use serde::{Deserialize, Serialize};

use super::{DetectError, SystemRoot};

/// The logical directory of PCI devices.
pub const PCI_DEVICES: &str = "/sys/bus/pci/devices";
/// NVIDIA's PCI vendor id as sysfs writes it.
pub const NVIDIA_VENDOR: &str = "0x10de";

/// One NVIDIA GPU.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Gpu {
    /// PCI address, e.g. `0000:3b:00.0`.
    pub pci_address: String,
    /// PCI device id, e.g. `0x20b0`.
    pub device_id: Option<String>,
    /// Marketing name from the driver, e.g. `NVIDIA A100-SXM4-40GB`.
    pub model: Option<String>,
    /// `/dev/nvidia<minor>`, from the driver.
    pub minor: Option<u32>,
}

/// All NVIDIA GPUs, sorted by PCI address.
pub fn detect_gpus(root: &SystemRoot) -> Result<Vec<Gpu>, DetectError> {
    let mut gpus = Vec::new();
    for addr in root.list_dir(PCI_DEVICES)? {
        let dir = format!("{PCI_DEVICES}/{addr}");
        let Some(vendor) = root.read_optional(format!("{dir}/vendor"))? else {
            continue;
        };
        if vendor.trim() != NVIDIA_VENDOR {
            continue;
        }
        let class_file = format!("{dir}/class");
        let class_text = root.read_to_string(&class_file)?;
        let class =
            u32::from_str_radix(class_text.trim().trim_start_matches("0x"), 16).map_err(|_| {
                DetectError::parse(
                    root.path(&class_file),
                    1,
                    format!("bad PCI class {:?}", class_text.trim()),
                )
            })?;
        let base_sub = class >> 8;
        if base_sub != 0x0300 && base_sub != 0x0302 {
            continue;
        }
        let device_id = root
            .read_optional(format!("{dir}/device"))?
            .map(|s| s.trim().to_owned());
        let info_file = format!("/proc/driver/nvidia/gpus/{addr}/information");
        let (model, minor) = match root.read_optional(&info_file)? {
            Some(text) => parse_information(&text, &root.path(&info_file))?,
            None => {
                tracing::warn!(pci_address = %addr, "NVIDIA GPU without driver information (driver not loaded?); counted without a model");
                (None, None)
            }
        };
        gpus.push(Gpu {
            pci_address: addr,
            device_id,
            model,
            minor,
        });
    }
    Ok(gpus)
}

/// `Key: \t value` lines of the driver's `information` file.
fn parse_information(
    text: &str,
    path: &std::path::Path,
) -> Result<(Option<String>, Option<u32>), DetectError> {
    let mut model = None;
    let mut minor = None;
    for (i, line) in text.lines().enumerate() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        match key.trim() {
            "Model" if !value.is_empty() => model = Some(value.to_owned()),
            "Device Minor" => {
                minor = Some(value.parse().map_err(|_| {
                    DetectError::parse(path, i + 1, format!("bad device minor {value:?}"))
                })?);
            }
            _ => {}
        }
    }
    Ok((model, minor))
}

/// The `gpu_model` attribute value: the distinct models, `/`-joined in PCI order, in
/// Mesos attribute text characters (`NVIDIA A100-SXM4-40GB` → `NVIDIA_A100-SXM4-40GB`).
pub fn model_attribute(gpus: &[Gpu]) -> Option<String> {
    let mut models: Vec<String> = Vec::new();
    for m in gpus.iter().filter_map(|g| g.model.as_deref()) {
        let m = super::attributes::sanitize_text(m);
        if !models.contains(&m) {
            models.push(m);
        }
    }
    (!models.is_empty()).then(|| models.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn information_file() {
        let text = "Model: \t\t NVIDIA A100-SXM4-40GB\nIRQ:   \t\t 95\nGPU UUID: \t GPU-1\nDevice Minor: \t 1\nGPU Excluded:\t No\n";
        let (m, n) = parse_information(text, std::path::Path::new("i")).unwrap();
        assert_eq!(m.as_deref(), Some("NVIDIA A100-SXM4-40GB"));
        assert_eq!(n, Some(1));
        let err = parse_information(
            "Device Minor: \t x\n",
            std::path::Path::new("/fx/information"),
        )
        .unwrap_err();
        assert!(err.to_string().contains("/fx/information line 1"), "{err}");
    }

    #[test]
    fn model_attribute_joins_distinct_models() {
        let g = |m: Option<&str>| Gpu {
            pci_address: String::new(),
            device_id: None,
            model: m.map(str::to_owned),
            minor: None,
        };
        assert_eq!(model_attribute(&[]), None);
        assert_eq!(model_attribute(&[g(None)]), None);
        assert_eq!(
            model_attribute(&[g(Some("Tesla T4")), g(Some("Tesla T4"))]).as_deref(),
            Some("Tesla_T4")
        );
        assert_eq!(
            model_attribute(&[g(Some("Tesla T4")), g(Some("NVIDIA A100-SXM4-40GB"))]).as_deref(),
            Some("Tesla_T4/NVIDIA_A100-SXM4-40GB")
        );
    }
}
