//! Egress rules of mode `allow`: which names and ports a sandbox may reach.
//!
//! A rule is `NAME[:PORT]`:
//! - `example.com` matches exactly `example.com`;
//! - `*.example.com` matches every name below it (`a.example.com`,
//!   `a.b.example.com`), never `example.com` itself (name both to allow both);
//! - without a port a rule matches ports 443 and 80 only; with one, only that port.
//!
//! Names are compared in lowercase with one trailing dot removed; international names
//! must be given (and are matched) in their punycode form (`xn--...`). Deny rules
//! (the daemon's `[network] egress_deny`) have the same syntax, except that a deny rule
//! without a port matches every port; a deny rule that matches wins over any allow
//! rule. Pure code: no I/O.

/// Why a rule or a name is unusable.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PolicyError {
    /// A rule that does not parse.
    #[error(
        "invalid egress rule {rule:?}: {why}; use NAME, NAME:PORT or *.NAME[:PORT] \
         (e.g. pypi.org, api.example.com:8443, *.example.com)"
    )]
    BadRule {
        /// The rule as given.
        rule: String,
        /// What is wrong with it.
        why: String,
    },
}

/// The ports a rule without a port matches.
pub(crate) const DEFAULT_PORTS: [u16; 2] = [443, 80];

#[derive(Debug, Clone, PartialEq, Eq)]
enum Pattern {
    Exact(String),
    /// The suffix after `*.`: matches names ending in `.suffix`.
    Below(String),
}

/// One rule, `NAME[:PORT]` or `*.NAME[:PORT]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pattern: Pattern,
    port: Option<u16>,
}

impl Rule {
    /// Parses a rule.
    pub fn parse(s: &str) -> Result<Rule, PolicyError> {
        let bad = |why: &str| PolicyError::BadRule {
            rule: s.to_string(),
            why: why.to_string(),
        };
        let t = s.trim();
        if t.is_empty() {
            return Err(bad("it is empty"));
        }
        let (name, port) = match t.rsplit_once(':') {
            Some((n, p)) => {
                let port: u16 = p
                    .parse()
                    .map_err(|_| bad("the port must be a number from 1 to 65535"))?;
                if port == 0 {
                    return Err(bad("the port must be a number from 1 to 65535"));
                }
                (n, Some(port))
            }
            None => (t, None),
        };
        let pattern = match name.strip_prefix("*.") {
            Some(rest) => {
                let n =
                    normalize(rest).ok_or_else(|| bad("the name after *. is not a valid name"))?;
                Pattern::Below(n)
            }
            None => {
                if name.contains('*') {
                    return Err(bad("a wildcard is only allowed as a leading *."));
                }
                Pattern::Exact(normalize(name).ok_or_else(|| bad("not a valid name"))?)
            }
        };
        Ok(Rule { pattern, port })
    }

    fn matches_name(&self, name: &str) -> bool {
        match &self.pattern {
            Pattern::Exact(n) => n == name,
            Pattern::Below(suffix) => name
                .strip_suffix(suffix.as_str())
                .is_some_and(|head| head.len() > 1 && head.ends_with('.')),
        }
    }

    /// Whether the rule matches `name` (normalized) on `port` as an allow rule.
    fn allows(&self, name: &str, port: u16) -> bool {
        self.matches_name(name)
            && match self.port {
                Some(p) => p == port,
                None => DEFAULT_PORTS.contains(&port),
            }
    }

    /// Whether the rule matches as a deny rule (no port: every port).
    fn denies(&self, name: &str, port: u16) -> bool {
        self.matches_name(name) && self.port.is_none_or(|p| p == port)
    }

    /// Whether the rule names `name` on some port (what the resolver needs to know).
    fn names(&self, name: &str) -> bool {
        self.matches_name(name)
    }
}

impl std::fmt::Display for Rule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.pattern {
            Pattern::Exact(n) => write!(f, "{n}")?,
            Pattern::Below(n) => write!(f, "*.{n}")?,
        }
        if let Some(p) = self.port {
            write!(f, ":{p}")?;
        }
        Ok(())
    }
}

/// Lowercases, strips one trailing dot and checks a DNS name: ASCII letters, digits,
/// `-` and `_`, labels of 1 to 63 bytes, at most 253 bytes. None when invalid.
pub(crate) fn normalize(name: &str) -> Option<String> {
    let n = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
    if n.is_empty() || n.len() > 253 {
        return None;
    }
    for label in n.split('.') {
        if label.is_empty()
            || label.len() > 63
            || !label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return None;
        }
    }
    Some(n)
}

/// Parses a comma-separated list of rules (`a.com,*.b.org:8443`).
pub fn parse_list(s: &str) -> Result<Vec<Rule>, PolicyError> {
    s.split(',')
        .filter(|p| !p.trim().is_empty())
        .map(Rule::parse)
        .collect()
}

/// What the rules say about one destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Allowed by this rule.
    Allow(String),
    /// Denied by this deny rule.
    Denied(String),
    /// No allow rule matches.
    NotAllowed,
    /// The name is not a valid DNS name.
    BadName,
}

/// A sandbox's allow rules together with the daemon's deny rules.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    /// Allow rules.
    pub allow: Vec<Rule>,
    /// Deny rules (win).
    pub deny: Vec<Rule>,
}

impl Policy {
    /// Decides `name:port`.
    pub fn decide(&self, name: &str, port: u16) -> Verdict {
        let Some(n) = normalize(name) else {
            return Verdict::BadName;
        };
        if let Some(r) = self.deny.iter().find(|r| r.denies(&n, port)) {
            return Verdict::Denied(r.to_string());
        }
        match self.allow.iter().find(|r| r.allows(&n, port)) {
            Some(r) => Verdict::Allow(r.to_string()),
            None => Verdict::NotAllowed,
        }
    }

    /// Whether `name` is allowed on some port and not denied on every port (the DNS
    /// resolver answers such names).
    pub fn resolvable(&self, name: &str) -> bool {
        let Some(n) = normalize(name) else {
            return false;
        };
        if self
            .deny
            .iter()
            .any(|r| r.port.is_none() && r.matches_name(&n))
        {
            return false;
        }
        self.allow.iter().any(|r| r.names(&n))
    }

    /// The allow rules as text, comma-separated.
    pub fn allow_text(&self) -> String {
        self.allow
            .iter()
            .map(Rule::to_string)
            .collect::<Vec<_>>()
            .join(",")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(allow: &str, deny: &str) -> Policy {
        Policy {
            allow: parse_list(allow).unwrap(),
            deny: parse_list(deny).unwrap(),
        }
    }

    #[test]
    fn exact_names_default_to_443_and_80() {
        let p = policy("Example.COM.", "");
        assert_eq!(
            p.decide("example.com", 443),
            Verdict::Allow("example.com".into())
        );
        assert_eq!(
            p.decide("EXAMPLE.com.", 80),
            Verdict::Allow("example.com".into())
        );
        assert_eq!(p.decide("example.com", 8443), Verdict::NotAllowed);
        assert_eq!(p.decide("a.example.com", 443), Verdict::NotAllowed);
        assert_eq!(p.decide("example.co", 443), Verdict::NotAllowed);
    }

    #[test]
    fn a_port_restricts_to_that_port() {
        let p = policy("api.test:8443", "");
        assert_eq!(
            p.decide("api.test", 8443),
            Verdict::Allow("api.test:8443".into())
        );
        assert_eq!(p.decide("api.test", 443), Verdict::NotAllowed);
        assert_eq!(p.decide("api.test", 80), Verdict::NotAllowed);
    }

    #[test]
    fn wildcards_match_subdomains_only() {
        let p = policy("*.example.com", "");
        assert_eq!(
            p.decide("a.example.com", 443),
            Verdict::Allow("*.example.com".into())
        );
        assert_eq!(
            p.decide("a.b.example.com", 80),
            Verdict::Allow("*.example.com".into())
        );
        assert_eq!(p.decide("example.com", 443), Verdict::NotAllowed);
        assert_eq!(p.decide("badexample.com", 443), Verdict::NotAllowed);
        assert_eq!(p.decide(".example.com", 443), Verdict::BadName);
        assert!(p.resolvable("x.example.com"));
        assert!(!p.resolvable("example.com"));
    }

    #[test]
    fn deny_wins_and_without_port_denies_every_port() {
        let p = policy(
            "*.example.com,secret.example.com:8443",
            "secret.example.com",
        );
        assert_eq!(
            p.decide("secret.example.com", 8443),
            Verdict::Denied("secret.example.com".into())
        );
        assert_eq!(
            p.decide("secret.example.com", 443),
            Verdict::Denied("secret.example.com".into())
        );
        assert!(!p.resolvable("secret.example.com"));
        let p = policy("*.example.com", "*.example.com:80");
        assert_eq!(
            p.decide("a.example.com", 443),
            Verdict::Allow("*.example.com".into())
        );
        assert_eq!(
            p.decide("a.example.com", 80),
            Verdict::Denied("*.example.com:80".into())
        );
        assert!(p.resolvable("a.example.com"));
    }

    #[test]
    fn bad_rules_and_names_are_refused() {
        for r in [
            "",
            "*",
            "*.",
            "a.*.com",
            "ex ample.com",
            "a.com:0",
            "a.com:70000",
            "a.com:x",
            "bücher.de",
            "a..com",
            "*.*.a.com",
            ":443",
        ] {
            assert!(Rule::parse(r).is_err(), "{r:?}");
        }
        let long = format!("{}.com", "a".repeat(64));
        assert!(Rule::parse(&long).is_err());
        assert!(Rule::parse("xn--bcher-kva.de").is_ok());
        assert_eq!(parse_list("a.com, ,b.org:81").unwrap().len(), 2);
        let p = policy("a.com", "");
        assert_eq!(p.decide("a.com\0", 443), Verdict::BadName);
        assert_eq!(p.decide("", 443), Verdict::BadName);
        assert_eq!(p.allow_text(), "a.com");
    }
}
