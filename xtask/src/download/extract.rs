//! Safe extraction of chosen members from zip, tar.gz and Debian package (`.deb`) archives.
//!
//! Every entry name is checked first: an archive holding any absolute path or
//! `..` component is refused as a whole. Members are only ever written to the
//! `.part` paths the caller chose (inside the dataset folder), never to a
//! path derived from the archive.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::path::{Path, PathBuf};

use super::fetch::FetchError;
use super::files::{remove_quietly, show};
use crate::manifest::{ArchiveKind, is_safe_entry_path, normalize_entry_path};

/// Extracts each `(member, part)` of `wanted` from `archive` into `part`.
/// On a content problem (unsafe entry, corrupt archive, missing member) every
/// `part` written is removed and a [`FetchError::Candidate`] is returned.
pub(crate) fn extract(
    kind: ArchiveKind,
    archive: &Path,
    wanted: &[(String, PathBuf)],
) -> Result<(), FetchError> {
    let result = match kind {
        ArchiveKind::Zip => extract_zip(archive, wanted),
        ArchiveKind::TarGz => extract_tar_gz(archive, wanted),
        ArchiveKind::Deb => extract_deb(archive, wanted),
        ArchiveKind::Plain => Ok(()),
    };
    if result.is_err() {
        for (_, part) in wanted {
            remove_quietly(part);
        }
    }
    result
}

fn unsafe_entry(archive: &Path, name: &str) -> FetchError {
    FetchError::Candidate(format!(
        "refusing to extract {}: entry '{name}' has an absolute path or a '..' component (path traversal)",
        show(archive)
    ))
}

fn corrupt(archive: &Path, e: impl std::fmt::Display) -> FetchError {
    FetchError::Candidate(format!("{} is not a valid archive: {e}", show(archive)))
}

fn open(archive: &Path) -> Result<File, FetchError> {
    File::open(archive)
        .map_err(|e| FetchError::Fatal(anyhow::anyhow!("cannot open {}: {e}", show(archive))))
}

fn wanted_map(wanted: &[(String, PathBuf)]) -> HashMap<String, &Path> {
    wanted
        .iter()
        .map(|(m, p)| (normalize_entry_path(m), p.as_path()))
        .collect()
}

fn missing(
    archive: &Path,
    wanted: &HashMap<String, &Path>,
    found: &HashSet<String>,
) -> Result<(), FetchError> {
    let mut absent: Vec<&str> = wanted
        .keys()
        .filter(|m| !found.contains(*m))
        .map(String::as_str)
        .collect();
    if absent.is_empty() {
        return Ok(());
    }
    absent.sort_unstable();
    Err(FetchError::Candidate(format!(
        "{} has no member {}",
        show(archive),
        absent.join(", ")
    )))
}

/// Copies `reader` into a new file at `part`; read errors are content
/// problems, write errors are fatal.
fn copy_member(
    archive: &Path,
    member: &str,
    mut reader: impl Read,
    part: &Path,
) -> Result<(), FetchError> {
    remove_quietly(part);
    let mut out = File::create(part)
        .map_err(|e| FetchError::Fatal(anyhow::anyhow!("cannot create {}: {e}", show(part))))?;
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(corrupt(archive, format!("reading member '{member}': {e}"))),
        };
        out.write_all(&buf[..n])
            .map_err(|e| FetchError::Fatal(anyhow::anyhow!("cannot write {}: {e}", show(part))))?;
    }
    out.flush()
        .map_err(|e| FetchError::Fatal(anyhow::anyhow!("cannot write {}: {e}", show(part))))
}

fn extract_zip(archive: &Path, wanted: &[(String, PathBuf)]) -> Result<(), FetchError> {
    let mut zip =
        zip::ZipArchive::new(BufReader::new(open(archive)?)).map_err(|e| corrupt(archive, e))?;
    // Check every name before writing anything.
    let mut index = HashMap::new();
    for i in 0..zip.len() {
        let name = zip.name_for_index(i).unwrap_or_default().to_owned();
        if !is_safe_entry_path(&name) {
            return Err(unsafe_entry(archive, &name));
        }
        index.entry(normalize_entry_path(&name)).or_insert(i);
    }
    let wanted = wanted_map(wanted);
    let mut found = HashSet::new();
    for (member, part) in &wanted {
        let Some(&i) = index.get(member) else {
            continue;
        };
        let entry = zip.by_index(i).map_err(|e| corrupt(archive, e))?;
        if !entry.is_file() || entry.is_symlink() {
            return Err(FetchError::Candidate(format!(
                "{}: member '{member}' is not a regular file",
                show(archive)
            )));
        }
        copy_member(archive, member, entry, part)?;
        found.insert(member.clone());
    }
    missing(archive, &wanted, &found)
}

fn extract_tar_gz(archive: &Path, wanted: &[(String, PathBuf)]) -> Result<(), FetchError> {
    let gz = flate2::read::GzDecoder::new(BufReader::new(open(archive)?));
    extract_tar(archive, gz, wanted)
}

/// A Debian package is an `ar` archive of `debian-binary`, `control.tar.*` and `data.tar.*`;
/// the members are in the last, compressed with xz (or gzip). The data tarball of a dataset
/// package is small (a few MB), so it is decompressed in memory.
fn extract_deb(archive: &Path, wanted: &[(String, PathBuf)]) -> Result<(), FetchError> {
    let mut deb = ar::Archive::new(BufReader::new(open(archive)?));
    while let Some(entry) = deb.next_entry() {
        let mut entry = entry.map_err(|e| corrupt(archive, e))?;
        let name = String::from_utf8_lossy(entry.header().identifier()).into_owned();
        let name = name.trim_end_matches('/');
        if name == "data.tar.xz" {
            let mut tar = Vec::new();
            lzma_rs::xz_decompress(&mut BufReader::new(&mut entry), &mut tar)
                .map_err(|e| corrupt(archive, format!("data.tar.xz: {e}")))?;
            return extract_tar(archive, io::Cursor::new(tar), wanted);
        }
        if name == "data.tar.gz" {
            return extract_tar(archive, flate2::read::GzDecoder::new(entry), wanted);
        }
    }
    Err(corrupt(
        archive,
        "it holds no data.tar.xz or data.tar.gz (is it a Debian package?)",
    ))
}

fn extract_tar(
    archive: &Path,
    reader: impl Read,
    wanted: &[(String, PathBuf)],
) -> Result<(), FetchError> {
    let mut tar = tar::Archive::new(reader);
    let wanted = wanted_map(wanted);
    let mut found = HashSet::new();
    // One pass: names are checked as they come; members go to `.part` files
    // that the caller only installs if the whole pass succeeds.
    for entry in tar.entries().map_err(|e| corrupt(archive, e))? {
        let entry = entry.map_err(|e| corrupt(archive, e))?;
        let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        if !is_safe_entry_path(&name) {
            return Err(unsafe_entry(archive, &name));
        }
        let norm = normalize_entry_path(&name);
        let Some(part) = wanted.get(&norm) else {
            continue;
        };
        if found.contains(&norm) {
            continue;
        }
        if !entry.header().entry_type().is_file() {
            return Err(FetchError::Candidate(format!(
                "{}: member '{norm}' is not a regular file",
                show(archive)
            )));
        }
        copy_member(archive, &norm, entry, part)?;
        found.insert(norm);
    }
    missing(archive, &wanted, &found)
}
