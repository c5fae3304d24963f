//! The dataset manifest (`datasets/manifest.json`): what each corpus is made
//! of, where to fetch it, and how to check what was fetched.
//!
//! Checksums are tri-state where a source can override the file-level value:
//! a missing `sha256` key inherits, `null` means "not published / unknown for
//! this source" and a hex string is the expected value.

use std::collections::HashSet;
use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Deserializer};

/// The whole manifest file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Bumped when the layout changes incompatibly.
    pub schema_version: u32,
    /// Free-form notes for humans (hosting caveats and the like).
    #[serde(default)]
    pub notes: Vec<String>,
    pub datasets: Vec<Dataset>,
}

/// One corpus.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dataset {
    /// The name used on the command line and as the folder under the data dir.
    pub name: String,
    pub description: String,
    pub licence: String,
    /// A page describing the corpus (paper, project page or repository).
    pub source_page: String,
    #[serde(default)]
    pub notes: Vec<String>,
    /// The files that make up the dataset once it is in place.
    pub files: Vec<FileSpec>,
    /// Alternative ways to obtain the files, tried in order.
    pub sources: Vec<Source>,
    /// Known places to get the data that the downloader cannot use (yet).
    #[serde(default)]
    pub other_sources: Vec<OtherSource>,
    pub splits: Splits,
}

/// A file saved under `<dest>/<dataset>/`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSpec {
    /// Relative path under the dataset folder.
    pub path: String,
    /// Size in bytes, when known.
    pub size: Option<u64>,
    /// Lowercase hex SHA-256, when known (`null` otherwise).
    pub sha256: Option<String>,
    /// Extra paths, relative to a `--mirror` base, where this file may be found
    /// (besides `<mirror>/<dataset>/<path>`).
    #[serde(default)]
    pub mirror_paths: Vec<String>,
}

/// One way of obtaining (some of) the files: a set of objects to fetch.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Source {
    /// Short identifier, recorded with the files it produced.
    pub id: String,
    #[serde(default)]
    pub note: Option<String>,
    pub archives: Vec<Archive>,
}

/// The kind of object fetched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum ArchiveKind {
    /// The fetched object is the file itself.
    #[serde(rename = "plain")]
    Plain,
    #[serde(rename = "zip")]
    Zip,
    #[serde(rename = "tar.gz")]
    TarGz,
    /// A Debian binary package: an `ar` archive whose `data.tar.xz` (or `.gz`) holds the
    /// members, named as the package installs them (`usr/share/...`).
    #[serde(rename = "deb")]
    Deb,
}

impl fmt::Display for ArchiveKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ArchiveKind::Plain => "plain",
            ArchiveKind::Zip => "zip",
            ArchiveKind::TarGz => "tar.gz",
            ArchiveKind::Deb => "deb",
        })
    }
}

/// An object to fetch: a plain file or an archive with members.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Archive {
    /// File name of the fetched object (used for mirror look-ups and the
    /// temporary copy of archives).
    pub name: String,
    pub kind: ArchiveKind,
    /// Candidate URLs, canonical first.
    pub urls: Vec<String>,
    /// Checksum of the fetched object. For `plain`, a missing key inherits the
    /// file's checksum; for archives, missing and `null` both mean unknown.
    #[serde(default)]
    pub sha256: Checksum,
    #[serde(default)]
    pub size: Option<u64>,
    /// For `plain`: the file (a `files[].path`) this object becomes.
    #[serde(default)]
    pub file: Option<String>,
    /// For `zip` / `tar.gz`: which member becomes which file.
    #[serde(default)]
    pub members: Vec<Member>,
}

/// An archive member and the file it becomes.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Member {
    /// Path inside the archive (a leading `./` is ignored when matching).
    pub member: String,
    /// The `files[].path` it is saved as.
    pub file: String,
    /// Missing: the file's checksum applies; `null`: unknown for this source
    /// (the member may differ from the file-level checksum); a string: that.
    #[serde(default)]
    pub sha256: Checksum,
}

/// A tri-state checksum (see the module docs).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Checksum {
    /// Key absent: use the enclosing / file-level value.
    #[default]
    Inherit,
    /// `null`: not known for this source.
    Unknown,
    /// A lowercase hex SHA-256.
    Known(String),
}

impl<'de> Deserialize<'de> for Checksum {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        Ok(match Option::<String>::deserialize(d)? {
            None => Checksum::Unknown,
            Some(s) => Checksum::Known(s),
        })
    }
}

impl Checksum {
    /// Resolves `Inherit` against `parent`.
    pub fn resolve(&self, parent: Option<&str>) -> Option<String> {
        match self {
            Checksum::Inherit => parent.map(str::to_owned),
            Checksum::Unknown => None,
            Checksum::Known(s) => Some(s.clone()),
        }
    }
}

/// A source we list for reference but cannot fetch from.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OtherSource {
    pub format: String,
    pub url: String,
    #[serde(default)]
    pub note: Option<String>,
}

/// How the files map to train / valid / test.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", deny_unknown_fields)]
pub enum Splits {
    /// One file per split.
    #[serde(rename = "files")]
    Files {
        train: String,
        valid: String,
        test: String,
    },
    /// A single file cut by fractions (in order: train, valid, test).
    #[serde(rename = "fraction")]
    Fraction {
        file: String,
        train: f64,
        valid: f64,
        test: f64,
    },
}

impl Manifest {
    /// The manifest shipped with the project.
    pub fn default_path() -> PathBuf {
        crate::project_root().join("datasets").join("manifest.json")
    }

    /// Reads and validates a manifest.
    pub fn load(path: &Path) -> Result<Manifest> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read dataset manifest {}", path.display()))?;
        let manifest: Manifest = serde_json::from_str(&text)
            .with_context(|| format!("invalid dataset manifest {}", path.display()))?;
        manifest
            .validate()
            .with_context(|| format!("invalid dataset manifest {}", path.display()))?;
        Ok(manifest)
    }

    /// Looks a dataset up by name.
    pub fn get(&self, name: &str) -> Result<&Dataset> {
        match self.datasets.iter().find(|d| d.name == name) {
            Some(d) => Ok(d),
            None => bail!(
                "unknown dataset '{name}'; known datasets: {}",
                self.names().join(", ")
            ),
        }
    }

    pub fn names(&self) -> Vec<&str> {
        self.datasets.iter().map(|d| d.name.as_str()).collect()
    }

    /// Checks internal consistency (paths are safe, references resolve, ...).
    pub fn validate(&self) -> Result<()> {
        if self.schema_version != 1 {
            bail!(
                "schema_version {} is not supported (expected 1)",
                self.schema_version
            );
        }
        let mut names = HashSet::new();
        for d in &self.datasets {
            if !names.insert(d.name.as_str()) {
                bail!("dataset '{}' is listed twice", d.name);
            }
            d.validate()
                .with_context(|| format!("dataset '{}'", d.name))?;
        }
        Ok(())
    }
}

impl Dataset {
    /// The file entry with this path.
    pub fn file(&self, path: &str) -> Option<&FileSpec> {
        self.files.iter().find(|f| f.path == path)
    }

    fn validate(&self) -> Result<()> {
        if self.name.is_empty()
            || !self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
            || self.name.starts_with('.')
        {
            bail!("name must be non-empty ASCII letters, digits, '-', '_' or '.'");
        }
        if self.files.is_empty() {
            bail!("no files");
        }
        let mut paths = HashSet::new();
        for f in &self.files {
            check_relative_path(&f.path).with_context(|| format!("file path '{}'", f.path))?;
            if f.path.ends_with(".part") {
                bail!("file path '{}' must not end in .part", f.path);
            }
            if !paths.insert(f.path.as_str()) {
                bail!("file '{}' is listed twice", f.path);
            }
            if let Some(s) = &f.sha256 {
                check_sha(s).with_context(|| format!("file '{}'", f.path))?;
            }
            for m in &f.mirror_paths {
                check_relative_path(m).with_context(|| format!("mirror path '{m}'"))?;
            }
        }
        if self.sources.is_empty() {
            bail!("no sources");
        }
        for s in &self.sources {
            if s.archives.is_empty() {
                bail!("source '{}' has no archives", s.id);
            }
            for a in &s.archives {
                a.validate(self)
                    .with_context(|| format!("source '{}', archive '{}'", s.id, a.name))?;
            }
        }
        let known = |p: &str| -> Result<()> {
            if self.file(p).is_none() {
                bail!("splits refer to '{p}', which is not in files");
            }
            Ok(())
        };
        match &self.splits {
            Splits::Files { train, valid, test } => {
                known(train)?;
                known(valid)?;
                known(test)?;
            }
            Splits::Fraction {
                file,
                train,
                valid,
                test,
            } => {
                known(file)?;
                let all = [*train, *valid, *test];
                if all.iter().any(|x| !(0.0..=1.0).contains(x))
                    || (all.iter().sum::<f64>() - 1.0).abs() > 1e-9
                {
                    bail!("split fractions must be in [0, 1] and sum to 1");
                }
            }
        }
        Ok(())
    }
}

impl Archive {
    /// The files (paths) this object provides.
    pub fn provides(&self) -> Vec<&str> {
        match self.kind {
            ArchiveKind::Plain => self.file.as_deref().into_iter().collect(),
            _ => self.members.iter().map(|m| m.file.as_str()).collect(),
        }
    }

    fn validate(&self, d: &Dataset) -> Result<()> {
        check_relative_path(&self.name).context("archive name")?;
        if self.name.contains('/') || self.name.contains('\\') {
            bail!("archive name must be a bare file name");
        }
        if self.urls.is_empty() {
            bail!("no urls");
        }
        for u in &self.urls {
            if !(u.starts_with("https://") || u.starts_with("http://")) {
                bail!("url '{u}' is not http(s)");
            }
        }
        if let Checksum::Known(s) = &self.sha256 {
            check_sha(s)?;
        }
        match self.kind {
            ArchiveKind::Plain => {
                let Some(file) = &self.file else {
                    bail!("a plain archive needs 'file'");
                };
                if !self.members.is_empty() {
                    bail!("a plain archive has no members");
                }
                if d.file(file).is_none() {
                    bail!("'file' refers to '{file}', which is not in files");
                }
            }
            ArchiveKind::Zip | ArchiveKind::TarGz | ArchiveKind::Deb => {
                if self.file.is_some() {
                    bail!("'file' is for plain archives; use members");
                }
                if self.members.is_empty() {
                    bail!("no members");
                }
                for m in &self.members {
                    if check_relative_path(&m.member).is_err() {
                        bail!("member '{}' is not a safe relative path", m.member);
                    }
                    if d.file(&m.file).is_none() {
                        bail!(
                            "member '{}' maps to '{}', which is not in files",
                            m.member,
                            m.file
                        );
                    }
                    if let Checksum::Known(s) = &m.sha256 {
                        check_sha(s)?;
                    }
                }
            }
        }
        Ok(())
    }
}

/// Accepts a lowercase 64-digit hex SHA-256.
fn check_sha(s: &str) -> Result<()> {
    if s.len() != 64
        || !s
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        bail!("'{s}' is not a lowercase hex SHA-256");
    }
    Ok(())
}

fn check_relative_path(p: &str) -> Result<()> {
    if !is_safe_entry_path(p) || normalize_entry_path(p).is_empty() {
        bail!("'{p}' must be a relative path without '..'");
    }
    Ok(())
}

/// True when `name` (an archive entry or manifest path) cannot point outside
/// the folder it is extracted to: it is not absolute, has no drive prefix, no
/// `..` component (with either separator) and no NUL byte.
pub fn is_safe_entry_path(name: &str) -> bool {
    if name.contains('\0') || name.starts_with('/') || name.starts_with('\\') {
        return false;
    }
    // `C:...` (a Windows drive prefix).
    let b = name.as_bytes();
    if b.len() >= 2 && b[1] == b':' && b[0].is_ascii_alphabetic() {
        return false;
    }
    !name.split(['/', '\\']).any(|part| part == "..")
}

/// Normalises an archive entry name for matching: `./a//b/` -> `a/b`.
pub fn normalize_entry_path(name: &str) -> String {
    name.split(['/', '\\'])
        .filter(|p| !p.is_empty() && *p != ".")
        .collect::<Vec<_>>()
        .join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn safe_paths() {
        assert!(is_safe_entry_path("a/b.txt"));
        assert!(is_safe_entry_path("./a/b.txt"));
        assert!(!is_safe_entry_path("../evil.txt"));
        assert!(!is_safe_entry_path("a/../../evil.txt"));
        assert!(!is_safe_entry_path("a\\..\\evil.txt"));
        assert!(!is_safe_entry_path("/etc/passwd"));
        assert!(!is_safe_entry_path("\\x"));
        assert!(!is_safe_entry_path("C:evil"));
        assert!(is_safe_entry_path("./"));
        assert!(check_relative_path("./").is_err());
        assert!(check_relative_path("").is_err());
        assert!(check_relative_path("a/b").is_ok());
        assert_eq!(
            normalize_entry_path("./simple-examples//data/x"),
            "simple-examples/data/x"
        );
    }

    #[test]
    fn shipped_manifest_is_valid() {
        let m = Manifest::load(&Manifest::default_path()).unwrap();
        for name in [
            "tiny-shakespeare",
            "wikitext-2",
            "wikitext-2-raw",
            "wikitext-103",
            "wikitext-103-raw",
            "ptb",
        ] {
            m.get(name).unwrap();
        }
    }

    #[test]
    fn checksum_tristate() {
        #[derive(Deserialize)]
        struct T {
            #[serde(default)]
            sha256: Checksum,
        }
        let t: T = serde_json::from_str("{}").unwrap();
        assert_eq!(t.sha256, Checksum::Inherit);
        let t: T = serde_json::from_str(r#"{"sha256": null}"#).unwrap();
        assert_eq!(t.sha256, Checksum::Unknown);
        let t: T = serde_json::from_str(r#"{"sha256": "ab"}"#).unwrap();
        assert_eq!(t.sha256, Checksum::Known("ab".into()));
    }
}
