//! `basalt-installer`: the operator's tool on the bootstrap machine.
//!
//! Thin by design: arguments, logging and the error → exit code map live here;
//! the work is done by `basalt-genconf` and `basalt-nodeimg`.
//!
//! Exit codes (stable; scripts may rely on them):
//!
//! | code | meaning |
//! |---|---|
//! | 0 | success |
//! | 1 | any other failure |
//! | 2 | bad command line (clap) |
//! | 3 | the cluster configuration is invalid |
//! | 4 | a bundle failed verification |
//! | 5 | an I/O error (file missing, unreadable, not writable) |

mod commands;
mod image;

use std::path::PathBuf;
use std::process::ExitCode;

use basalt_genconf::bundle::Role;
use clap::{Parser, Subcommand};

/// Generate and check a Basalt cluster's signed configuration.
#[derive(Debug, Parser)]
#[command(name = "basalt-installer", version, about)]
struct Cli {
    /// The genconf folder: config.toml and ip-detect scripts in, secrets/ and serve/ out.
    #[arg(
        long,
        global = true,
        default_value = "genconf",
        env = "BASALT_GENCONF_DIR"
    )]
    dir: PathBuf,
    /// Log level filter (also from RUST_LOG).
    #[arg(long, global = true, default_value = "warn")]
    log: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Validate config.toml, create missing secrets, write genconf/serve/ (bundles per
    /// role, cluster public key, bootstrap index, summary).
    Genconf {
        /// Replace one secret before generating (repeatable): signing-key, ca, certs,
        /// iam-key, join-credential. What each breaks is printed first.
        #[arg(long, value_name = "WHAT")]
        rotate: Vec<String>,
    },
    /// Check config.toml and report every problem at once.
    Validate,
    /// Verify a bundle: signature, every file's hash and mode, role and cluster.
    Verify {
        /// The bundle tar (e.g. genconf/serve/bundles/agent.tar).
        bundle: PathBuf,
        /// The role the bundle must be for: master, agent or agent-public.
        #[arg(long)]
        role: Option<Role>,
        /// The cluster public key (default: <dir>/serve/cluster.pub).
        #[arg(long)]
        public_key: Option<PathBuf>,
        /// The cluster id the bundle must carry.
        #[arg(long)]
        cluster_id: Option<String>,
    },
    /// Read a password on stdin and print its argon2id hash for
    /// `auth.superuser_password_hash`.
    HashPassword,
    /// Node images for this cluster (needs root and the tools `scripts/setup.sh` installs).
    #[command(subcommand)]
    Image(ImageCommand),
    /// Print the configuration.
    ShowConfig {
        /// Fill in every default (secrets masked).
        #[arg(long)]
        expanded: bool,
    },
}

#[derive(Debug, Subcommand)]
enum ImageCommand {
    /// Build (or reuse) the node images and sign their manifests with the cluster key.
    Build {
        /// Which image: master, agent, agent-public or all.
        #[arg(long, value_enum, default_value = "all")]
        role: image::RoleChoice,
        /// Output folder (one sub-folder per role; default <dir>/serve/images).
        #[arg(long)]
        out: Option<PathBuf>,
        /// The basaltd binary to put in the image (default: the one next to this program).
        #[arg(long)]
        basaltd: Option<PathBuf>,
        /// The systemd units folder (the repository's units/).
        #[arg(long, default_value = "units")]
        units: PathBuf,
    },
    /// Check an image folder: manifest signature against the cluster key, every artifact.
    Verify {
        /// The image folder (holds manifest.toml and manifest.toml.sig).
        image_dir: PathBuf,
        /// The cluster public key (default: <dir>/serve/cluster.pub).
        #[arg(long)]
        public_key: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&cli.log));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();

    let result = match cli.command {
        Command::Genconf { rotate } => commands::genconf(&cli.dir, &rotate),
        Command::Validate => commands::validate(&cli.dir),
        Command::Verify {
            bundle,
            role,
            public_key,
            cluster_id,
        } => commands::verify(
            &cli.dir,
            &bundle,
            role,
            public_key.as_deref(),
            cluster_id.as_deref(),
        ),
        Command::HashPassword => commands::hash_password(),
        Command::Image(ImageCommand::Build {
            role,
            out,
            basaltd,
            units,
        }) => image::build(&cli.dir, role, out.as_deref(), basaltd.as_deref(), &units),
        Command::Image(ImageCommand::Verify {
            image_dir,
            public_key,
        }) => image::verify(&cli.dir, &image_dir, public_key.as_deref()),
        Command::ShowConfig { expanded } => commands::show_config(&cli.dir, expanded),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("error: {}", failure.message());
            ExitCode::from(failure.code())
        }
    }
}
