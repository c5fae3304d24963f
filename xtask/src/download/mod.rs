//! `cargo xtask download NAME`: fetch a corpus listed in the manifest into
//! `<dest>/<NAME>/`, verify it, and tell callers where its splits are.
//!
//! Every file is written to `<file>.part`, checked (size and SHA-256) and only
//! then flushed and renamed into place, so a file in place is always a
//! complete, verified one (or, for corpora without published checksums, one
//! whose computed checksum was printed and recorded). Other xtask
//! subcommands call [`ensure_dataset`].

mod extract;
mod fetch;
mod files;

use std::collections::{BTreeMap, BTreeSet};
use std::convert::Infallible;
use std::fs;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use anyhow::{Context, Result, anyhow, bail};
use serde::{Deserialize, Serialize};

pub use fetch::{Location, USER_AGENT};
pub use files::show;

use crate::manifest::{ArchiveKind, Checksum, Dataset, Manifest, Splits};
use fetch::{FetchError, fetch, log};
use files::{install, part_path, remove_quietly, sha256_file};

/// Name of the record of what was installed (and with which checksum), kept
/// in each dataset folder.
pub const STATE_FILE: &str = ".xtask-download.json";
/// Lock file serialising downloads into one dataset folder.
const LOCK_FILE: &str = ".xtask-download.lock";
/// Folder (inside the dataset folder) where archives are kept until their
/// members are extracted.
const ARCHIVE_DIR: &str = ".download";

/// A replacement for the manifest's URLs: a local folder or an http(s) base
/// URL. Files are looked up as `<base>/<dataset>/<file>`, then at each of the
/// file's `mirror_paths` (relative to `<base>`), then archives as
/// `<base>/<dataset>/<archive name>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mirror {
    Local(PathBuf),
    Url(String),
}

impl FromStr for Mirror {
    type Err = Infallible;

    fn from_str(s: &str) -> Result<Mirror, Infallible> {
        Ok(if s.starts_with("http://") || s.starts_with("https://") {
            Mirror::Url(s.trim_end_matches('/').to_owned())
        } else if let Some(p) = s.strip_prefix("file://") {
            Mirror::Local(PathBuf::from(p))
        } else {
            Mirror::Local(PathBuf::from(s))
        })
    }
}

impl Mirror {
    /// `<base>/<rel>`.
    fn locate(&self, rel: &str) -> Location {
        match self {
            Mirror::Local(base) => Location::Local(base.join(rel)),
            Mirror::Url(base) => Location::Url(format!("{base}/{rel}")),
        }
    }
}

/// Everything [`download`] needs.
#[derive(Debug, Clone)]
pub struct DownloadOptions {
    /// Dataset name, as in the manifest.
    pub name: String,
    /// The manifest to read (default: `datasets/manifest.json`).
    pub manifest: PathBuf,
    /// The data folder; the dataset goes to `<dest>/<name>/` (default: `data/`).
    pub dest: PathBuf,
    /// Replace the manifest's URLs with this folder or base URL.
    pub mirror: Option<Mirror>,
    /// Fetch again even when verified files are in place.
    pub force: bool,
    /// Print each file's size and SHA-256 as manifest JSON on stdout.
    pub print_checksums: bool,
}

impl DownloadOptions {
    /// Defaults: the project's manifest and `data/` folder, no mirror.
    pub fn new(name: &str) -> DownloadOptions {
        DownloadOptions {
            name: name.to_owned(),
            manifest: Manifest::default_path(),
            dest: default_data_dir(),
            mirror: None,
            force: false,
            print_checksums: false,
        }
    }
}

/// `data/` under the project root (gitignored).
pub fn default_data_dir() -> PathBuf {
    crate::project_root().join("data")
}

/// Where a dataset's files are once it is in place.
#[derive(Debug, Clone, PartialEq)]
pub struct DatasetPaths {
    pub name: String,
    /// `<dest>/<name>`.
    pub dir: PathBuf,
    pub splits: SplitPaths,
}

/// How the dataset's files map to train / valid / test.
#[derive(Debug, Clone, PartialEq)]
pub enum SplitPaths {
    /// One file per split.
    Files {
        train: PathBuf,
        valid: PathBuf,
        test: PathBuf,
    },
    /// One file, to be cut in order into these fractions (e.g. 0.9/0.05/0.05).
    Fraction {
        file: PathBuf,
        train: f64,
        valid: f64,
        test: f64,
    },
}

impl DatasetPaths {
    fn new(ds: &Dataset, dir: PathBuf) -> DatasetPaths {
        let splits = match &ds.splits {
            Splits::Files { train, valid, test } => SplitPaths::Files {
                train: dir.join(train),
                valid: dir.join(valid),
                test: dir.join(test),
            },
            Splits::Fraction {
                file,
                train,
                valid,
                test,
            } => SplitPaths::Fraction {
                file: dir.join(file),
                train: *train,
                valid: *valid,
                test: *test,
            },
        };
        DatasetPaths {
            name: ds.name.clone(),
            dir,
            splits,
        }
    }

    /// The split files (one or three).
    pub fn files(&self) -> Vec<&Path> {
        match &self.splits {
            SplitPaths::Files { train, valid, test } => vec![train, valid, test],
            SplitPaths::Fraction { file, .. } => vec![file],
        }
    }
}

/// What [`download`] did for each file.
#[derive(Debug, Clone)]
pub struct DownloadReport {
    pub paths: DatasetPaths,
    pub files: Vec<FileReport>,
}

impl DownloadReport {
    /// True when nothing had to be fetched.
    pub fn up_to_date(&self) -> bool {
        self.files.iter().all(|f| f.status == FileStatus::UpToDate)
    }
}

#[derive(Debug, Clone)]
pub struct FileReport {
    /// Path under the dataset folder, as in the manifest.
    pub file: String,
    pub path: PathBuf,
    pub sha256: String,
    pub size: u64,
    pub status: FileStatus,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileStatus {
    /// Already in place and matching.
    UpToDate,
    /// Fetched from `from`; `verified` is false when no checksum was known.
    Fetched { from: String, verified: bool },
}

/// Makes sure dataset `name` is in the project's `data/` folder (fetching it
/// from `mirror` or the manifest's URLs if needed) and returns its paths.
pub fn ensure_dataset(name: &str, mirror: Option<&Mirror>) -> Result<DatasetPaths> {
    ensure_dataset_in(name, mirror, &default_data_dir())
}

/// [`ensure_dataset`] with another data folder.
pub fn ensure_dataset_in(name: &str, mirror: Option<&Mirror>, dest: &Path) -> Result<DatasetPaths> {
    let mut opts = DownloadOptions::new(name);
    opts.mirror = mirror.cloned();
    opts.dest = dest.to_path_buf();
    Ok(download(&opts)?.paths)
}

/// The record kept in `<dataset>/.xtask-download.json`.
#[derive(Debug, Default, Serialize, Deserialize)]
struct State {
    files: BTreeMap<String, StateEntry>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct StateEntry {
    sha256: String,
    size: u64,
    source: String,
    verified: bool,
}

impl State {
    fn load(dir: &Path) -> State {
        fs::read_to_string(dir.join(STATE_FILE))
            .ok()
            .and_then(|s| serde_json::from_str(&s).ok())
            .unwrap_or_default()
    }

    fn save(&self, dir: &Path) -> Result<()> {
        let path = dir.join(STATE_FILE);
        let tmp = part_path(&path);
        let text = serde_json::to_string_pretty(self)?;
        fs::write(&tmp, text + "\n").with_context(|| format!("cannot write {}", show(&tmp)))?;
        install(&tmp, &path)
    }
}

/// A planned object to fetch, with its resolved expectations.
struct Item {
    name: String,
    kind: ArchiveKind,
    locations: Vec<Location>,
    sha256: Option<String>,
    size: Option<u64>,
    targets: Vec<Target>,
}

/// A file produced by an [`Item`] (for `plain`, the object itself).
struct Target {
    member: String,
    file: String,
    sha256: Option<String>,
    size: Option<u64>,
}

struct Plan {
    id: String,
    items: Vec<Item>,
}

fn item_for(ds: &Dataset, a: &crate::manifest::Archive, locations: Vec<Location>) -> Item {
    let file_sha = |f: &str| ds.file(f).and_then(|f| f.sha256.clone());
    let file_size = |f: &str| ds.file(f).and_then(|f| f.size);
    match a.kind {
        ArchiveKind::Plain => {
            let file = a.file.clone().unwrap_or_default();
            let inherit = a.sha256 == Checksum::Inherit;
            let sha256 = a.sha256.resolve(file_sha(&file).as_deref());
            let size = if inherit {
                a.size.or(file_size(&file))
            } else {
                a.size
            };
            Item {
                name: a.name.clone(),
                kind: a.kind,
                locations,
                sha256: sha256.clone(),
                size,
                targets: vec![Target {
                    member: String::new(),
                    file,
                    sha256,
                    size,
                }],
            }
        }
        ArchiveKind::Zip | ArchiveKind::TarGz | ArchiveKind::Deb => Item {
            name: a.name.clone(),
            kind: a.kind,
            locations,
            sha256: a.sha256.resolve(None),
            size: a.size,
            targets: a
                .members
                .iter()
                .map(|m| {
                    let inherit = m.sha256 == Checksum::Inherit;
                    Target {
                        member: m.member.clone(),
                        file: m.file.clone(),
                        sha256: m.sha256.resolve(file_sha(&m.file).as_deref()),
                        size: if inherit { file_size(&m.file) } else { None },
                    }
                })
                .collect(),
        },
    }
}

/// The manifest's sources, in order.
fn upstream_plans(ds: &Dataset) -> Vec<Plan> {
    ds.sources
        .iter()
        .map(|s| Plan {
            id: s.id.clone(),
            items: s
                .archives
                .iter()
                .map(|a| item_for(ds, a, a.urls.iter().cloned().map(Location::Url).collect()))
                .collect(),
        })
        .collect()
}

/// With `--mirror`: the files themselves first, then the archives.
fn mirror_plans(ds: &Dataset, mirror: &Mirror) -> Vec<Plan> {
    let mut plans = vec![Plan {
        id: "mirror".to_owned(),
        items: ds
            .files
            .iter()
            .map(|f| {
                let mut locations = vec![mirror.locate(&format!("{}/{}", ds.name, f.path))];
                for p in &f.mirror_paths {
                    let loc = mirror.locate(p);
                    if !locations.contains(&loc) {
                        locations.push(loc);
                    }
                }
                Item {
                    name: f.path.clone(),
                    kind: ArchiveKind::Plain,
                    locations,
                    sha256: f.sha256.clone(),
                    size: f.size,
                    targets: vec![Target {
                        member: String::new(),
                        file: f.path.clone(),
                        sha256: f.sha256.clone(),
                        size: f.size,
                    }],
                }
            })
            .collect(),
    }];
    for s in &ds.sources {
        let items: Vec<Item> = s
            .archives
            .iter()
            .filter(|a| a.kind != ArchiveKind::Plain)
            .map(|a| {
                item_for(
                    ds,
                    a,
                    vec![mirror.locate(&format!("{}/{}", ds.name, a.name))],
                )
            })
            .collect();
        if !items.is_empty() {
            plans.push(Plan {
                id: format!("mirror:{}", s.id),
                items,
            });
        }
    }
    plans
}

/// The outcome of checking a fetched file.
struct Checked {
    sha256: String,
    size: u64,
    verified: bool,
}

/// Checks `path` against the expected size and checksum. On a mismatch the
/// file is removed and the message says so. Without an expected checksum the
/// file is accepted unverified (with a warning naming its checksum) unless it
/// matches `fallback_sha`.
fn check(
    path: &Path,
    expected_sha: Option<&str>,
    expected_size: Option<u64>,
    fallback_sha: Option<&str>,
) -> Result<std::result::Result<Checked, String>> {
    let (sha256, size) =
        sha256_file(path).with_context(|| format!("cannot read {}", show(path)))?;
    if let Some(exp) = expected_size
        && exp != size
    {
        remove_quietly(path);
        return Ok(Err(format!(
            "size mismatch for {}: expected {exp} bytes, got {size}; the file was removed",
            show(path)
        )));
    }
    match expected_sha {
        Some(exp) if exp == sha256 => Ok(Ok(Checked {
            sha256,
            size,
            verified: true,
        })),
        Some(exp) => {
            remove_quietly(path);
            Ok(Err(format!(
                "checksum mismatch for {}: expected {exp}, got {sha256}; the file was removed",
                show(path)
            )))
        }
        None => {
            let verified = fallback_sha == Some(sha256.as_str());
            let shown = show(path);
            let name = shown.strip_suffix(".part").unwrap_or(&shown);
            if verified {
                log(&format!("  {name}: matches the published file checksum"));
            } else {
                log(&format!(
                    "warning: no published sha256 for {name}: computed sha256 {sha256} ({size} bytes); accepted unverified — check it and record it in datasets/manifest.json"
                ));
            }
            Ok(Ok(Checked {
                sha256,
                size,
                verified,
            }))
        }
    }
}

struct Run<'a> {
    ds: &'a Dataset,
    dir: PathBuf,
    force: bool,
    state: State,
    tried: Vec<String>,
    reports: Vec<FileReport>,
}

impl Run<'_> {
    fn fail(&mut self, msg: String) {
        log(&format!("  failed: {msg}"));
        self.tried.push(msg);
    }

    /// Moves a checked `.part` into place and records it.
    fn place(
        &mut self,
        part: &Path,
        file: &str,
        c: Checked,
        from: &Location,
        source: &str,
    ) -> Result<()> {
        let dest = self.dir.join(file);
        if !c.verified && dest.exists() {
            let (old, _) =
                sha256_file(&dest).with_context(|| format!("cannot read {}", show(&dest)))?;
            if old != c.sha256 {
                remove_quietly(part);
                bail!(
                    "refusing to replace {} (sha256 {old}) with an unverified download (sha256 {}, no published checksum); move the existing file away first",
                    show(&dest),
                    c.sha256
                );
            }
        }
        install(part, &dest)?;
        log(&format!(
            "  {} in place ({}{})",
            show(&dest),
            files::bytes(c.size),
            if c.verified {
                ", sha256 verified"
            } else {
                ", unverified"
            }
        ));
        self.state.files.insert(
            file.to_owned(),
            StateEntry {
                sha256: c.sha256.clone(),
                size: c.size,
                source: format!("{source}: {from}"),
                verified: c.verified,
            },
        );
        self.state.save(&self.dir)?;
        self.reports.push(FileReport {
            file: file.to_owned(),
            path: dest,
            sha256: c.sha256,
            size: c.size,
            status: FileStatus::Fetched {
                from: from.to_string(),
                verified: c.verified,
            },
        });
        Ok(())
    }

    fn file_sha(&self, file: &str) -> Option<String> {
        self.ds.file(file).and_then(|f| f.sha256.clone())
    }

    /// Tries to get the `needed` files that `item` provides; returns those
    /// now in place.
    fn obtain(
        &mut self,
        plan: &str,
        item: &Item,
        needed: &BTreeSet<String>,
    ) -> Result<Vec<String>> {
        let targets: Vec<&Target> = item
            .targets
            .iter()
            .filter(|t| needed.contains(&t.file))
            .collect();
        if targets.is_empty() {
            return Ok(Vec::new());
        }
        match item.kind {
            ArchiveKind::Plain => self.obtain_plain(plan, item, targets[0]),
            ArchiveKind::Zip | ArchiveKind::TarGz | ArchiveKind::Deb => {
                self.obtain_archive(plan, item, targets)
            }
        }
    }

    fn obtain_plain(&mut self, plan: &str, item: &Item, t: &Target) -> Result<Vec<String>> {
        let part = part_path(&self.dir.join(&t.file));
        for loc in &item.locations {
            match fetch(loc, &part, t.size) {
                Ok(()) => {}
                Err(FetchError::Candidate(msg)) => {
                    self.fail(msg);
                    continue;
                }
                Err(FetchError::Fatal(e)) => return Err(e),
            }
            let fallback = self.file_sha(&t.file);
            match check(&part, t.sha256.as_deref(), t.size, fallback.as_deref())? {
                Ok(c) => {
                    self.place(&part, &t.file, c, loc, plan)?;
                    return Ok(vec![t.file.clone()]);
                }
                Err(msg) => self.fail(msg),
            }
        }
        Ok(Vec::new())
    }

    fn obtain_archive(
        &mut self,
        plan: &str,
        item: &Item,
        mut targets: Vec<&Target>,
    ) -> Result<Vec<String>> {
        let dl_dir = self.dir.join(ARCHIVE_DIR);
        fs::create_dir_all(&dl_dir).with_context(|| format!("cannot create {}", show(&dl_dir)))?;
        let archive = dl_dir.join(&item.name);
        let archive_part = part_path(&archive);
        if self.force {
            remove_quietly(&archive);
            remove_quietly(&archive_part);
        }
        // An archive kept from an interrupted earlier run is tried first.
        let cached = Location::Local(archive.clone());
        let mut candidates: Vec<(&Location, bool)> = Vec::new();
        if archive.is_file() {
            candidates.push((&cached, true));
        }
        candidates.extend(item.locations.iter().map(|l| (l, false)));

        let mut got = Vec::new();
        for (loc, is_cached) in candidates {
            if is_cached {
                log(&format!(
                    "  using {} kept from an earlier run",
                    show(&archive)
                ));
            } else {
                match fetch(loc, &archive_part, item.size) {
                    Ok(()) => {}
                    Err(FetchError::Candidate(msg)) => {
                        self.fail(msg);
                        continue;
                    }
                    Err(FetchError::Fatal(e)) => return Err(e),
                }
            }
            let checked_path = if is_cached { &archive } else { &archive_part };
            match check(checked_path, item.sha256.as_deref(), item.size, None)? {
                Ok(_) => {}
                Err(msg) => {
                    self.fail(msg);
                    continue;
                }
            }
            if !is_cached {
                install(&archive_part, &archive)?;
            }
            let wanted: Vec<(String, PathBuf)> = targets
                .iter()
                .map(|t| (t.member.clone(), part_path(&self.dir.join(&t.file))))
                .collect();
            match extract::extract(item.kind, &archive, &wanted) {
                Ok(()) => {}
                Err(FetchError::Candidate(msg)) => {
                    remove_quietly(&archive);
                    self.fail(format!("{msg}; the archive was removed"));
                    continue;
                }
                Err(FetchError::Fatal(e)) => return Err(e),
            }
            let mut failed = Vec::new();
            for (t, (_, part)) in targets.iter().zip(&wanted) {
                let fallback = self.file_sha(&t.file);
                match check(part, t.sha256.as_deref(), t.size, fallback.as_deref())? {
                    Ok(c) => {
                        self.place(part, &t.file, c, loc, plan)?;
                        got.push(t.file.clone());
                    }
                    Err(msg) => {
                        self.fail(format!("{msg} (member '{}' of {})", t.member, item.name));
                        failed.push(*t);
                    }
                }
            }
            // Done with this copy of the archive, good or bad.
            remove_quietly(&archive);
            targets = failed;
            if targets.is_empty() {
                break;
            }
        }
        let _ = fs::remove_dir(&dl_dir);
        Ok(got)
    }
}

/// Checksums (from the manifest) that a file in place may have.
fn accepted_checksums(ds: &Dataset, file: &str) -> Vec<String> {
    let mut out: Vec<String> = ds
        .file(file)
        .and_then(|f| f.sha256.clone())
        .into_iter()
        .collect();
    for s in &ds.sources {
        for a in &s.archives {
            let explicit = match a.kind {
                ArchiveKind::Plain if a.file.as_deref() == Some(file) => Some(&a.sha256),
                _ => None,
            };
            let members = a
                .members
                .iter()
                .filter(|m| m.file == file)
                .map(|m| &m.sha256);
            for c in explicit.into_iter().chain(members) {
                if let Checksum::Known(s) = c
                    && !out.contains(s)
                {
                    out.push(s.clone());
                }
            }
        }
    }
    out
}

/// The `needed` file names, comma-separated, in manifest order.
fn in_manifest_order(ds: &Dataset, needed: &BTreeSet<String>) -> String {
    ds.files
        .iter()
        .filter(|f| needed.contains(&f.path))
        .map(|f| f.path.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Creates `<dest>/<name>` and checks it can be written to.
fn prepare_dir(dir: &Path) -> Result<()> {
    fs::create_dir_all(dir).map_err(|e| {
        anyhow!(
            "cannot create dataset folder {}: {e}; pass --dest with a writable folder",
            show(dir)
        )
    })?;
    tempfile::Builder::new()
        .prefix(".write-test")
        .tempfile_in(dir)
        .map_err(|e| {
            anyhow!(
                "dataset folder {} is not writable: {e}; pass --dest with a writable folder",
                show(dir)
            )
        })?;
    Ok(())
}

/// Takes an exclusive lock on `<dir>/.xtask-download.lock`, waiting (with a
/// message) while another process holds it.
fn lock_dir(dir: &Path) -> Result<fs::File> {
    let path = dir.join(LOCK_FILE);
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("cannot open lock file {}", show(&path)))?;
    match file.try_lock() {
        Ok(()) => {}
        Err(fs::TryLockError::WouldBlock) => {
            log(&format!(
                "waiting for another download into {} to finish (lock {})",
                show(dir),
                show(&path)
            ));
            file.lock()
                .with_context(|| format!("cannot lock {}", show(&path)))?;
        }
        Err(fs::TryLockError::Error(e)) => {
            return Err(anyhow!("cannot lock {}: {e}", show(&path)));
        }
    }
    Ok(file)
}

/// Fetches and verifies dataset `opts.name`; see the module docs.
pub fn download(opts: &DownloadOptions) -> Result<DownloadReport> {
    let manifest = Manifest::load(&opts.manifest)?;
    let ds = manifest.get(&opts.name)?;
    if let Some(Mirror::Local(base)) = &opts.mirror
        && !base.is_dir()
    {
        bail!("mirror folder {} does not exist", show(base));
    }
    let dir = opts.dest.join(&ds.name);
    prepare_dir(&dir)?;
    // One download per dataset folder at a time (e.g. parallel `train` runs);
    // the OS drops the lock if the process dies.
    let _lock = lock_dir(&dir)?;

    let mut run = Run {
        ds,
        dir: dir.clone(),
        force: opts.force,
        state: State::load(&dir),
        tried: Vec::new(),
        reports: Vec::new(),
    };

    // What is already in place?
    let mut needed = BTreeSet::new();
    let mut problems = Vec::new();
    let mut recorded = false;
    for f in &ds.files {
        let path = dir.join(&f.path);
        let meta = match fs::symlink_metadata(&path) {
            Ok(m) => m,
            Err(_) => {
                needed.insert(f.path.clone());
                continue;
            }
        };
        if !meta.is_file() {
            problems.push(format!(
                "{} exists but is not a regular file; move it away",
                show(&path)
            ));
            continue;
        }
        if opts.force {
            needed.insert(f.path.clone());
            continue;
        }
        let (sha256, size) =
            sha256_file(&path).with_context(|| format!("cannot read {}", show(&path)))?;
        let known = accepted_checksums(ds, &f.path);
        let record = run.state.files.get(&f.path).map(|e| e.sha256.clone());
        let ok = known.contains(&sha256) || record.as_deref() == Some(sha256.as_str());
        if ok {
            run.reports.push(FileReport {
                file: f.path.clone(),
                path,
                sha256,
                size,
                status: FileStatus::UpToDate,
            });
        } else if known.is_empty() && record.is_none() {
            log(&format!(
                "warning: {} is already there and has no published sha256; keeping it (computed sha256 {sha256}, {size} bytes)",
                show(&path)
            ));
            run.state.files.insert(
                f.path.clone(),
                StateEntry {
                    sha256: sha256.clone(),
                    size,
                    source: "found in place".to_owned(),
                    verified: false,
                },
            );
            recorded = true;
            run.reports.push(FileReport {
                file: f.path.clone(),
                path,
                sha256,
                size,
                status: FileStatus::UpToDate,
            });
        } else {
            let expected = if known.is_empty() {
                format!(
                    "{} (recorded when it was fetched)",
                    record.unwrap_or_default()
                )
            } else {
                known.join(" or ")
            };
            problems.push(format!(
                "{} exists but its sha256 is {sha256}, expected {expected}; move it away or pass --force to fetch a fresh copy",
                show(&path)
            ));
        }
    }
    if recorded {
        run.state.save(&dir)?;
    }
    if !problems.is_empty() {
        bail!("{}", problems.join("; "));
    }

    if needed.is_empty() {
        log(&format!(
            "{}: up to date in {} ({} file(s) checked)",
            ds.name,
            show(&dir),
            run.reports.len()
        ));
    } else {
        log(&format!(
            "{}: fetching {} into {}",
            ds.name,
            in_manifest_order(ds, &needed),
            show(&dir)
        ));
        if opts.force {
            for f in &needed {
                remove_quietly(&part_path(&dir.join(f)));
            }
        }
        let plans = match &opts.mirror {
            Some(m) => mirror_plans(ds, m),
            None => upstream_plans(ds),
        };
        'plans: for plan in &plans {
            for item in &plan.items {
                if needed.is_empty() {
                    break 'plans;
                }
                for f in run.obtain(&plan.id, item, &needed)? {
                    needed.remove(&f);
                }
            }
        }
        if !needed.is_empty() {
            let tried = run
                .tried
                .iter()
                .enumerate()
                .map(|(i, t)| format!("{}) {t}", i + 1))
                .collect::<Vec<_>>()
                .join("; ");
            let hint = match &opts.mirror {
                Some(_) => {
                    "check the mirror, run again without --mirror, or pass another --mirror DIR|URL"
                }
                None => "run again (partial downloads are resumed) or pass --mirror DIR|URL",
            };
            bail!(
                "could not fetch {} ({}); tried: {}; {hint}",
                ds.name,
                in_manifest_order(ds, &needed),
                if tried.is_empty() {
                    "nothing".to_owned()
                } else {
                    tried
                }
            );
        }
        log(&format!("{}: done", ds.name));
    }

    // Report in manifest order.
    let order: Vec<&str> = ds.files.iter().map(|f| f.path.as_str()).collect();
    run.reports.sort_by_key(|r| {
        order
            .iter()
            .position(|p| *p == r.file)
            .unwrap_or(usize::MAX)
    });
    if opts.print_checksums {
        for r in &run.reports {
            println!(
                "{}",
                serde_json::json!({ "path": r.file, "size": r.size, "sha256": r.sha256 })
            );
        }
    }
    Ok(DownloadReport {
        paths: DatasetPaths::new(ds, dir),
        files: run.reports,
    })
}

/// `cargo xtask download` arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct DownloadArgs {
    /// Dataset to fetch (see --list).
    #[arg(required_unless_present = "list")]
    pub name: Option<String>,
    /// Use this local folder or http(s) base URL instead of the manifest's URLs.
    #[arg(long, value_name = "DIR|URL")]
    pub mirror: Option<Mirror>,
    /// Data folder; the dataset goes to DEST/NAME [default: data/ in the project root].
    #[arg(long, value_name = "DIR")]
    pub dest: Option<PathBuf>,
    /// Fetch again even if verified files are in place.
    #[arg(long)]
    pub force: bool,
    /// Print each file's size and sha256 as manifest JSON (one line per file).
    #[arg(long)]
    pub print_checksums: bool,
    /// Manifest to read [default: datasets/manifest.json].
    #[arg(long, value_name = "FILE")]
    pub manifest: Option<PathBuf>,
    /// List the datasets in the manifest and exit.
    #[arg(long)]
    pub list: bool,
}

/// Runs `cargo xtask download`.
pub fn run(args: &DownloadArgs) -> Result<()> {
    let manifest_path = args.manifest.clone().unwrap_or_else(Manifest::default_path);
    if args.list {
        let manifest = Manifest::load(&manifest_path)?;
        for d in &manifest.datasets {
            println!("{:<18} {}", d.name, d.description);
        }
        return Ok(());
    }
    let name = args
        .name
        .as_deref()
        .ok_or_else(|| anyhow!("missing dataset NAME (see --list)"))?;
    let opts = DownloadOptions {
        name: name.to_owned(),
        manifest: manifest_path,
        dest: args.dest.clone().unwrap_or_else(default_data_dir),
        mirror: args.mirror.clone(),
        force: args.force,
        print_checksums: args.print_checksums,
    };
    let report = download(&opts)?;
    for p in report.paths.files() {
        log(&format!("  {}", show(p)));
    }
    Ok(())
}
