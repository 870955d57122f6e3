//! Errors of corral-net.

/// What went wrong while building, changing or removing a sandbox network.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// A configuration value is unusable.
    #[error("invalid network configuration: {0}")]
    Config(String),
    /// Every address of the pool is in use.
    #[error("the network address pool {0} is exhausted; delete sandboxes or configure a larger [network] cidr")]
    Exhausted(String),
    /// A helper program (`ip`, `nft`) could not be started.
    #[error("running {program} failed; install iproute2 and nftables (scripts/setup.sh does)")]
    Spawn {
        /// The program.
        program: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A helper program ran and failed.
    #[error("{what} failed: {program} said: {stderr}")]
    Command {
        /// What corral was doing.
        what: String,
        /// The program.
        program: String,
        /// Its error output.
        stderr: String,
    },
    /// A file operation failed.
    #[error("{what}")]
    Io {
        /// What corral was doing.
        what: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}
