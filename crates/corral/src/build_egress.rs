//! Networks for recipes' RUN steps (corral-full only: `corral template build` and the
//! daemon's `corral __build` helper).

use std::net::Ipv4Addr;

use corral_isolate::SandboxSpec;

use crate::cli_egress::attach_allow;

/// Networks for recipes' RUN steps (`# corral: allow HOST ...`), for `corral template
/// build` and the daemon's `corral __build` helper.
#[derive(Debug, Default)]
pub(crate) struct BuildEgress {
    /// `--egress-resolve` answers (tests: names of hosts in their own namespaces).
    pub(crate) resolve: Vec<(String, Ipv4Addr)>,
}

impl corral_sandbox::BuildNetwork for BuildEgress {
    fn attach(
        &self,
        allow: &[String],
        spec: &mut SandboxSpec,
    ) -> Result<Box<dyn std::any::Any>, String> {
        let net = attach_allow(spec, &allow.join(","), &self.resolve)?;
        Ok(Box::new(net))
    }
}
