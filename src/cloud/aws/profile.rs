//! The shared credentials and config files (`~/.aws/credentials`,
//! `~/.aws/config`), read the way AWS's SDKs read them: INI sections,
//! `[name]` in the credentials file and `[profile name]` (or `[default]`)
//! in the config file; a property in the credentials file wins over the same
//! property in the config file.
//!
//! Supported profile kinds: static keys, and a web-identity role
//! (`role_arn` + `web_identity_token_file`). Role chains (`source_profile`,
//! `credential_source`), SSO and `credential_process` are refused with a
//! message that says so, never silently skipped.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::config::{Env, Secret};

use super::AwsCredentials;
use crate::cloud::CredentialError;

/// Where the two files are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfileFiles {
    pub credentials: PathBuf,
    pub config: PathBuf,
}

pub(super) enum ProfileCredentials {
    Keys(AwsCredentials),
    WebIdentity { role_arn: String, token_file: PathBuf, session_name: Option<String> },
}

type Sections = HashMap<String, HashMap<String, String>>;

impl ProfileFiles {
    /// `AWS_SHARED_CREDENTIALS_FILE` / `AWS_CONFIG_FILE`, else under `$HOME/.aws/`.
    pub fn from_env(env: &dyn Env) -> Self {
        let home = env.get("HOME").or_else(|| env.get("USERPROFILE")).unwrap_or_default();
        let path = |var: &str, default: &str| match env.get(var) {
            Some(p) => expand_home(&p, &home),
            None => Path::new(&home).join(".aws").join(default),
        };
        ProfileFiles {
            credentials: path("AWS_SHARED_CREDENTIALS_FILE", "credentials"),
            config: path("AWS_CONFIG_FILE", "config"),
        }
    }

    pub fn describe(&self) -> String {
        format!("{} or {}", self.credentials.display(), self.config.display())
    }

    /// The profile's `region`, from the config file.
    pub fn region(&self, profile: &str) -> Option<String> {
        let config = read_sections(&self.config, Kind::Config).ok()?;
        config.get(profile)?.get("region").cloned()
    }

    pub(super) fn load(&self, profile: &str) -> Result<ProfileCredentials, CredentialError> {
        let config = read_sections(&self.config, Kind::Config)?;
        let credentials = read_sections(&self.credentials, Kind::Credentials)?;
        if !config.contains_key(profile) && !credentials.contains_key(profile) {
            return Err(CredentialError::Missing {
                cloud: "AWS",
                tried: format!("profile {profile:?} is in neither {}", self.describe()),
            });
        }
        let mut props = config.get(profile).cloned().unwrap_or_default();
        props.extend(credentials.get(profile).cloned().unwrap_or_default());
        let get = |k: &str| props.get(k).filter(|v| !v.is_empty()).cloned();
        let unsupported = |what: &str| CredentialError::Invalid {
            what: "AWS profile",
            message: format!(
                "profile {profile:?} uses {what}, which Sluice does not support; use keys or a web-identity role"
            ),
        };
        if let (Some(id), Some(secret)) = (get("aws_access_key_id"), get("aws_secret_access_key")) {
            return Ok(ProfileCredentials::Keys(AwsCredentials {
                access_key_id: id,
                secret_access_key: Secret::new(secret),
                session_token: get("aws_session_token").map(Secret::new),
            }));
        }
        if let (Some(role_arn), Some(token_file)) = (get("role_arn"), get("web_identity_token_file")) {
            return Ok(ProfileCredentials::WebIdentity {
                role_arn,
                token_file: PathBuf::from(token_file),
                session_name: get("role_session_name"),
            });
        }
        if get("source_profile").is_some() || get("credential_source").is_some() {
            return Err(unsupported("an assume-role chain (source_profile/credential_source)"));
        }
        if get("credential_process").is_some() {
            return Err(unsupported("credential_process"));
        }
        if props.keys().any(|k| k.starts_with("sso_")) {
            return Err(unsupported("IAM Identity Center (SSO)"));
        }
        Err(CredentialError::Invalid {
            what: "AWS profile",
            message: format!(
                "profile {profile:?} has neither aws_access_key_id + aws_secret_access_key nor role_arn + web_identity_token_file"
            ),
        })
    }
}

/// The region of `profile` in `env`'s config file; a convenience for config checks.
pub fn profile_region(env: &dyn Env, profile: &str) -> Option<String> {
    ProfileFiles::from_env(env).region(profile)
}

fn expand_home(path: &str, home: &str) -> PathBuf {
    match path.strip_prefix("~/") {
        Some(rest) if !home.is_empty() => Path::new(home).join(rest),
        _ => PathBuf::from(path),
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Credentials,
    Config,
}

/// A missing file is empty; an unreadable one is an error naming it.
fn read_sections(path: &Path, kind: Kind) -> Result<Sections, CredentialError> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(parse(&text, kind)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Sections::new()),
        Err(e) => Err(CredentialError::File { path: path.display().to_string(), message: e.to_string() }),
    }
}

fn parse(text: &str, kind: Kind) -> Sections {
    let mut sections = Sections::new();
    // `None` while inside a section that does not name a profile
    // (`[sso-session x]`, `[services y]`), whose properties are skipped.
    let mut current: Option<String> = None;
    // After `s3 =` (an empty value), indented lines are its nested
    // settings, not profile properties.
    let mut nested = false;
    for raw in text.lines() {
        let indented = raw.starts_with([' ', '\t']);
        if nested && indented {
            continue;
        }
        nested = false;
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(inner) = line.strip_prefix('[').and_then(|l| l.split(']').next()) {
            current = section_name(inner.trim(), kind);
            if let Some(name) = &current {
                sections.entry(name.clone()).or_default();
            }
            continue;
        }
        let (Some(name), Some((key, value))) = (&current, line.split_once('=')) else { continue };
        let value = strip_comment(value.trim());
        nested = value.is_empty();
        if let Some(props) = sections.get_mut(name) {
            props.insert(key.trim().to_ascii_lowercase(), value.to_owned());
        }
    }
    sections
}

fn section_name(inner: &str, kind: Kind) -> Option<String> {
    match kind {
        Kind::Credentials => Some(inner.to_owned()),
        Kind::Config if inner == "default" => Some(inner.to_owned()),
        Kind::Config => {
            inner.strip_prefix("profile").filter(|r| r.starts_with([' ', '\t'])).map(|r| r.trim().to_owned())
        }
    }
}

/// ` #` or ` ;` starts a comment after a value (AWS's rule: only after whitespace).
fn strip_comment(value: &str) -> &str {
    let cut = value.char_indices().find(|&(i, c)| (c == '#' || c == ';') && value[..i].ends_with([' ', '\t']));
    match cut {
        Some((i, _)) => value[..i].trim_end(),
        None => value,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloud::aws::tests::env;

    fn files(dir: &Path, credentials: &str, config: &str) -> ProfileFiles {
        std::fs::write(dir.join("c"), credentials).unwrap();
        std::fs::write(dir.join("k"), config).unwrap();
        ProfileFiles { credentials: dir.join("c"), config: dir.join("k") }
    }

    fn keys(f: &ProfileFiles, profile: &str) -> AwsCredentials {
        match f.load(profile) {
            Ok(ProfileCredentials::Keys(c)) => c,
            Ok(ProfileCredentials::WebIdentity { .. }) => panic!("expected keys"),
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn credentials_file_wins_over_config_and_comments_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let f = files(
            dir.path(),
            "# keys\n[default]\naws_access_key_id = AKIDCRED ; inline\naws_secret_access_key=credsecret\n\n[dev]\n aws_access_key_id = AKIDDEV\naws_secret_access_key = devsecret\naws_session_token = devtoken\n",
            "[default]\nregion = eu-west-1\naws_access_key_id = AKIDCONFIG\n[profile dev]\nregion=us-west-2\ns3 =\n  max_concurrent_requests = 20\n[sso-session x]\naws_access_key_id = NOPE\n",
        );
        let d = keys(&f, "default");
        assert_eq!((d.access_key_id.as_str(), d.secret_access_key.expose()), ("AKIDCRED", "credsecret"));
        assert!(d.session_token.is_none());
        let dev = keys(&f, "dev");
        assert_eq!(dev.session_token.unwrap().expose(), "devtoken");
        assert_eq!(f.region("default").as_deref(), Some("eu-west-1"));
        assert_eq!(f.region("dev").as_deref(), Some("us-west-2"));
        assert!(matches!(f.load("x"), Err(CredentialError::Missing { .. })));
    }

    #[test]
    fn keys_only_in_the_config_file_work() {
        let dir = tempfile::tempdir().unwrap();
        let f = files(dir.path(), "", "[profile ci]\naws_access_key_id=AKIDCI\naws_secret_access_key=cisecret\n");
        assert_eq!(keys(&f, "ci").access_key_id, "AKIDCI");
        // `[ci]` without "profile " in the config file names no profile.
        let f = files(dir.path(), "", "[ci]\naws_access_key_id=A\naws_secret_access_key=B\n");
        assert!(matches!(f.load("ci"), Err(CredentialError::Missing { .. })));
    }

    #[test]
    fn web_identity_profile_and_unsupported_kinds() {
        let dir = tempfile::tempdir().unwrap();
        let f = files(
            dir.path(),
            "",
            "[profile wi]\nrole_arn = arn:aws:iam::123456789012:role/r\nweb_identity_token_file = /var/run/token\n\
             [profile chain]\nrole_arn = arn:aws:iam::1:role/r\nsource_profile = default\n\
             [profile proc]\ncredential_process = /bin/creds\n[profile sso]\nsso_session = corp\n[profile empty]\nregion=us-east-1\n",
        );
        match f.load("wi") {
            Ok(ProfileCredentials::WebIdentity { role_arn, token_file, session_name }) => {
                assert_eq!(role_arn, "arn:aws:iam::123456789012:role/r");
                assert_eq!(token_file, PathBuf::from("/var/run/token"));
                assert_eq!(session_name, None);
            }
            _ => panic!("expected a web-identity profile"),
        }
        for (p, says) in [
            ("chain", "assume-role chain"),
            ("proc", "credential_process"),
            ("sso", "SSO"),
            ("empty", "neither aws_access_key_id"),
        ] {
            let err = f.load(p).err().unwrap().to_string();
            assert!(err.contains(says), "{p}: {err}");
        }
    }

    #[test]
    fn paths_from_env_and_home() {
        let e = env(&[("HOME", "/home/u")]);
        let f = ProfileFiles::from_env(&e);
        assert_eq!(f.credentials, PathBuf::from("/home/u/.aws/credentials"));
        assert_eq!(f.config, PathBuf::from("/home/u/.aws/config"));
        let e =
            env(&[("HOME", "/home/u"), ("AWS_SHARED_CREDENTIALS_FILE", "~/creds"), ("AWS_CONFIG_FILE", "/etc/aws")]);
        let f = ProfileFiles::from_env(&e);
        assert_eq!(f.credentials, PathBuf::from("/home/u/creds"));
        assert_eq!(f.config, PathBuf::from("/etc/aws"));
    }

    #[test]
    fn an_unreadable_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let f = ProfileFiles { credentials: dir.path().to_path_buf(), config: dir.path().join("none") };
        let err = f.load("default").err().unwrap().to_string();
        assert!(err.contains(&dir.path().display().to_string()), "{err}");
    }
}
