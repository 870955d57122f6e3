//! The per-deployment corral CA and the leaf certificates it mints per host.
//!
//! The CA is made once, on the daemon's first start with a data directory:
//! DIR/ca/ca.pem (the certificate sandboxes trust) and DIR/ca/ca.key (mode 0600,
//! never leaves the daemon). Its subject names the SHA-256 of its public key, so the
//! issuer is rebuilt from the key alone on every start.
//!
//! Leaves (ECDSA P-256, 30 days, the host as their only name) are minted on first use
//! and kept in a bounded least-recently-used cache of ready TLS server configurations.

use std::collections::HashMap;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SerialNumber,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::ServerConfig;
use rustls::sign::CertifiedKey;
use sha2::{Digest, Sha256};

use super::BrokerError;

/// Leaves kept ready.
const LEAF_CACHE: usize = 1024;
/// A leaf is re-minted after this long (it is valid for 30 days).
const LEAF_REFRESH: Duration = Duration::from_secs(7 * 24 * 3600);

/// The CA: its certificate and the issuer that signs leaves.
pub(crate) struct Ca {
    cert_pem: String,
    cert_der: CertificateDer<'static>,
    issuer: Issuer<'static, KeyPair>,
    cache: Mutex<LeafCache>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ca").finish_non_exhaustive()
    }
}

fn ca_params(key: &KeyPair) -> CertificateParams {
    let fingerprint: String = Sha256::digest(key.public_key_raw())
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "corral");
    dn.push(
        DnType::CommonName,
        format!("corral egress CA {fingerprint}"),
    );
    let mut p = CertificateParams::default();
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    p
}

/// (year, month, day) of a Unix day number (Howard Hinnant's civil_from_days).
fn civil(days: i64) -> (i32, u8, u8) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u8;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u8;
    let y = (yoe + era * 400 + i64::from(m <= 2)) as i32;
    (y, m, d)
}

/// Sets a certificate's validity from `from` to `to` days from today.
fn validity(p: &mut CertificateParams, from: i64, to: i64) {
    let today = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64 / 86_400)
        .unwrap_or(0);
    let (y, m, d) = civil(today + from);
    p.not_before = rcgen::date_time_ymd(y, m, d);
    let (y, m, d) = civil(today + to);
    p.not_after = rcgen::date_time_ymd(y, m, d);
}

fn random_serial() -> Result<SerialNumber, BrokerError> {
    let mut raw = [0u8; 16];
    getrandom::fill(&mut raw).map_err(|e| BrokerError::Ca(format!("random source: {e}")))?;
    raw[0] &= 0x7f;
    Ok(SerialNumber::from_slice(&raw))
}

fn write_new(path: &Path, mode: u32, data: &str) -> Result<(), BrokerError> {
    let tmp = path.with_extension("tmp");
    let io = |source| BrokerError::Io {
        what: format!("writing {}", path.display()),
        source,
    };
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .map_err(io)?;
    f.write_all(data.as_bytes()).map_err(io)?;
    f.sync_all().map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

impl Ca {
    /// Loads DIR/ca/{ca.pem,ca.key}, or makes them when neither exists.
    pub(crate) fn load_or_create(data_dir: &Path) -> Result<Ca, BrokerError> {
        let dir = data_dir.join("ca");
        let cert_path = dir.join("ca.pem");
        let key_path = dir.join("ca.key");
        let key = match (cert_path.exists(), key_path.exists()) {
            (true, true) => {
                let pem = std::fs::read_to_string(&key_path).map_err(|source| BrokerError::Io {
                    what: format!("reading {}", key_path.display()),
                    source,
                })?;
                KeyPair::from_pem(&pem).map_err(|e| {
                    BrokerError::Ca(format!(
                        "{} is not a usable key ({e}); remove DIR/ca to make a new CA (sandboxes \
                         created before then trust the old one)",
                        key_path.display()
                    ))
                })?
            }
            (false, false) => {
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(&dir)
                    .map_err(|source| BrokerError::Io {
                        what: format!("creating {}", dir.display()),
                        source,
                    })?;
                let key = KeyPair::generate()
                    .map_err(|e| BrokerError::Ca(format!("generating the CA key: {e}")))?;
                let mut params = ca_params(&key);
                validity(&mut params, -1, 3650);
                params.serial_number = Some(random_serial()?);
                let cert = params
                    .self_signed(&key)
                    .map_err(|e| BrokerError::Ca(format!("signing the CA: {e}")))?;
                // The key first: a crash between the two leaves a key without a
                // certificate, which the next start reports rather than overwrites.
                write_new(&key_path, 0o600, &key.serialize_pem())?;
                write_new(&cert_path, 0o644, &cert.pem())?;
                key
            }
            _ => {
                return Err(BrokerError::Ca(format!(
                    "{} holds only half of the CA (ca.pem and ca.key go together); remove the \
                     directory to make a new CA",
                    dir.display()
                )))
            }
        };
        let cert_pem = std::fs::read_to_string(&cert_path).map_err(|source| BrokerError::Io {
            what: format!("reading {}", cert_path.display()),
            source,
        })?;
        let cert_der = pem_certs(&cert_pem).into_iter().next().ok_or_else(|| {
            BrokerError::Ca(format!("{} holds no certificate", cert_path.display()))
        })?;
        Ok(Ca {
            cert_pem,
            cert_der,
            issuer: Issuer::new(ca_params(&key), key),
            cache: Mutex::new(LeafCache::default()),
            provider: Arc::new(rustls::crypto::ring::default_provider()),
        })
    }

    /// The CA certificate (PEM), what sandboxes trust.
    pub(crate) fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// A TLS server configuration presenting a leaf for `host` (minted on first use).
    pub(crate) fn server_config(&self, host: &str) -> Result<Arc<ServerConfig>, BrokerError> {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        if let Ok(mut c) = self.cache.lock() {
            if let Some(cfg) = c.get(&host) {
                return Ok(cfg);
            }
        }
        let cfg = Arc::new(self.mint(&host)?);
        if let Ok(mut c) = self.cache.lock() {
            c.put(host, cfg.clone());
        }
        Ok(cfg)
    }

    fn mint(&self, host: &str) -> Result<ServerConfig, BrokerError> {
        let err =
            |e: rcgen::Error| BrokerError::Ca(format!("minting a certificate for {host}: {e}"));
        let key = KeyPair::generate().map_err(err)?;
        let mut p = CertificateParams::new(vec![host.to_string()]).map_err(err)?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, host);
        p.distinguished_name = dn;
        validity(&mut p, -1, 30);
        p.serial_number = Some(random_serial()?);
        p.use_authority_key_identifier_extension = true;
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let cert = p.signed_by(&key, &self.issuer).map_err(err)?;
        let key_der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let signing = self
            .provider
            .key_provider
            .load_private_key(key_der)
            .map_err(|e| BrokerError::Ca(format!("loading a minted key: {e}")))?;
        let certified = CertifiedKey::new(vec![cert.der().clone(), self.cert_der.clone()], signing);
        let mut cfg = ServerConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| BrokerError::Ca(format!("TLS versions: {e}")))?
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(rustls::sign::SingleCertAndKey::from(certified)));
        // HTTP/1.1 only: the broker rewrites HTTP/1 requests; h2 clients fall back.
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(cfg)
    }

    /// How many leaves are cached (tests).
    #[cfg(test)]
    pub(crate) fn cached(&self) -> usize {
        self.cache.lock().map(|c| c.map.len()).unwrap_or(0)
    }
}

/// The certificates of a PEM text.
pub(crate) fn pem_certs(pem: &str) -> Vec<CertificateDer<'static>> {
    use rustls::pki_types::pem::PemObject;
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .filter_map(Result::ok)
        .collect()
}

/// Reads a PEM bundle of extra upstream roots.
pub(crate) fn read_roots(path: &PathBuf) -> Result<Vec<CertificateDer<'static>>, BrokerError> {
    let pem = std::fs::read_to_string(path).map_err(|source| BrokerError::Io {
        what: format!("reading extra upstream roots {}", path.display()),
        source,
    })?;
    let certs = pem_certs(&pem);
    if certs.is_empty() {
        return Err(BrokerError::Ca(format!(
            "{} holds no PEM certificate",
            path.display()
        )));
    }
    Ok(certs)
}

/// Bounded least-recently-used cache of per-host server configurations.
#[derive(Default)]
struct LeafCache {
    map: HashMap<String, (Arc<ServerConfig>, Instant, u64)>,
    tick: u64,
}

impl LeafCache {
    fn get(&mut self, host: &str) -> Option<Arc<ServerConfig>> {
        self.tick += 1;
        let tick = self.tick;
        match self.map.get_mut(host) {
            Some((cfg, minted, used)) if minted.elapsed() < LEAF_REFRESH => {
                *used = tick;
                Some(cfg.clone())
            }
            _ => None,
        }
    }

    fn put(&mut self, host: String, cfg: Arc<ServerConfig>) {
        self.tick += 1;
        if self.map.len() >= LEAF_CACHE && !self.map.contains_key(&host) {
            if let Some(oldest) = self
                .map
                .iter()
                .min_by_key(|(_, (_, _, used))| *used)
                .map(|(h, _)| h.clone())
            {
                self.map.remove(&oldest);
            }
        }
        self.map.insert(host, (cfg, Instant::now(), self.tick));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        assert_eq!(civil(0), (1970, 1, 1));
        assert_eq!(civil(19_723), (2024, 1, 1));
        assert_eq!(civil(20_513), (2026, 3, 1));
    }

    #[test]
    fn ca_is_made_once_and_reloaded_with_its_key_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let a = Ca::load_or_create(dir.path()).unwrap();
        let key_mode = std::fs::metadata(dir.path().join("ca/ca.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(key_mode & 0o777, 0o600);
        let b = Ca::load_or_create(dir.path()).unwrap();
        assert_eq!(a.cert_pem(), b.cert_pem());
        std::fs::remove_file(dir.path().join("ca/ca.pem")).unwrap();
        let e = Ca::load_or_create(dir.path()).unwrap_err();
        assert!(e.to_string().contains("half of the CA"), "{e}");
    }

    #[test]
    fn leaves_are_cached_and_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::load_or_create(dir.path()).unwrap();
        let a = ca.server_config("a.test").unwrap();
        let a2 = ca.server_config("A.test.").unwrap();
        assert!(Arc::ptr_eq(&a, &a2));
        assert_eq!(ca.cached(), 1);
        let mut c = LeafCache::default();
        for i in 0..LEAF_CACHE + 5 {
            c.put(format!("h{i}"), a.clone());
            assert!(c.get("h0").is_some(), "the most used one stays");
        }
        assert_eq!(c.map.len(), LEAF_CACHE);
        assert!(c.get("h1").is_none(), "the least recently used one went");
    }
}
