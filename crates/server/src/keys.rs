//! The audit checkpoint signing key, kept in the data directory with owner-only permissions.
//! The private key is never logged and never served; the public key is served at
//! `/v1/audit/public-key` and written beside it so verifiers can pin it.

use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey};
use ed25519_dalek::{SigningKey, VerifyingKey};
use std::path::{Path, PathBuf};

pub const SIGNING_KEY_FILE: &str = "audit-signing-key.pem";
pub const PUBLIC_KEY_FILE: &str = "audit-signing-key.pub.pem";

#[cfg(unix)]
fn restrict(path: &Path, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}
#[cfg(not(unix))]
fn restrict(_: &Path, _: u32) -> std::io::Result<()> {
    Ok(())
}

pub fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)
        .map_err(|e| anyhow::anyhow!("cannot create `{}`: {e}", dir.display()))?;
    match restrict(dir, 0o700) {
        Ok(()) => Ok(()),
        // A read-only mount (a secret volume, say): its owner set the permissions.
        Err(e) if e.raw_os_error() == Some(30) => {
            tracing::warn!(dir = %dir.display(), "read-only directory: leaving its permissions as they are");
            Ok(())
        }
        Err(e) => Err(anyhow::anyhow!(
            "cannot restrict `{}` to its owner: {e}",
            dir.display()
        )),
    }
}

/// Loads the signing key, creating it (and the public key file) on first start.
pub fn load_or_create(keys_dir: &Path) -> anyhow::Result<SigningKey> {
    create_private_dir(keys_dir)?;
    let path = keys_dir.join(SIGNING_KEY_FILE);
    if path.exists() {
        let pem = std::fs::read_to_string(&path)
            .map_err(|e| anyhow::anyhow!("cannot read `{}`: {e}", path.display()))?;
        return SigningKey::from_pkcs8_pem(&pem)
            .map_err(|_| anyhow::anyhow!("`{}` is not an Ed25519 PKCS#8 key", path.display()));
    }
    let key = SigningKey::generate(&mut rand::rngs::OsRng);
    let pem = key
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(|e| anyhow::anyhow!("cannot encode key: {e}"))?;
    let tmp = keys_dir.join(format!("{SIGNING_KEY_FILE}.tmp"));
    {
        use std::io::Write;
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let _ = std::fs::remove_file(&tmp);
        let mut f = opts
            .open(&tmp)
            .map_err(|e| anyhow::anyhow!("cannot create `{}`: {e}", tmp.display()))?;
        f.write_all(pem.as_bytes())?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, &path)?;
    std::fs::write(
        keys_dir.join(PUBLIC_KEY_FILE),
        public_pem(&key.verifying_key())?,
    )?;
    Ok(key)
}

pub fn public_pem(key: &VerifyingKey) -> anyhow::Result<String> {
    key.to_public_key_pem(LineEnding::LF)
        .map_err(|e| anyhow::anyhow!("cannot encode public key: {e}"))
}

pub fn read_public_key(path: &Path) -> anyhow::Result<VerifyingKey> {
    let pem = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("cannot read `{}`: {e}", path.display()))?;
    VerifyingKey::from_public_key_pem(pem.trim())
        .map_err(|_| anyhow::anyhow!("`{}` is not an Ed25519 public key (PEM)", path.display()))
}

pub fn public_key_path(keys_dir: &Path) -> PathBuf {
    keys_dir.join(PUBLIC_KEY_FILE)
}
