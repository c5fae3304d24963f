//! Tests for `cargo xtask download`. No internet: everything is served by a
//! loopback server (tests/support) or read from local folders.

mod support;

use std::fs;
use std::io::{Cursor, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use support::TestServer;
use xtask::download::{
    DownloadOptions, FileStatus, Mirror, SplitPaths, USER_AGENT, download, ensure_dataset_in,
};

/// Deterministic text-like bytes.
fn content(n: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    (0..n)
        .map(|i| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            if i % 61 == 60 {
                b'\n'
            } else {
                b'a' + (x % 26) as u8
            }
        })
        .collect()
}

fn sha(b: &[u8]) -> String {
    Sha256::digest(b)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A temp folder holding a manifest and a data folder.
struct Env {
    tmp: tempfile::TempDir,
    manifest: PathBuf,
    dest: PathBuf,
}

impl Env {
    fn new(datasets: Value) -> Env {
        let tmp = tempfile::tempdir().unwrap();
        let manifest = tmp.path().join("manifest.json");
        let doc = json!({ "schema_version": 1, "datasets": datasets });
        fs::write(&manifest, serde_json::to_string_pretty(&doc).unwrap()).unwrap();
        let dest = tmp.path().join("data");
        Env {
            tmp,
            manifest,
            dest,
        }
    }

    fn opts(&self, name: &str) -> DownloadOptions {
        let mut o = DownloadOptions::new(name);
        o.manifest = self.manifest.clone();
        o.dest = self.dest.clone();
        o
    }

    fn file(&self, name: &str, file: &str) -> PathBuf {
        self.dest.join(name).join(file)
    }
}

/// A dataset of one plain file fetched from `urls`, split by fractions.
fn plain_dataset(name: &str, data: &[u8], sha256: Option<String>, urls: &[String]) -> Value {
    json!({
        "name": name,
        "description": "test",
        "licence": "test",
        "source_page": "http://127.0.0.1/",
        "files": [{ "path": "input.txt", "size": data.len(), "sha256": sha256, "mirror_paths": ["alt/input.txt"] }],
        "sources": [{ "id": "test", "archives": [
            { "name": "input.txt", "kind": "plain", "file": "input.txt", "urls": urls }
        ]}],
        "splits": { "kind": "fraction", "file": "input.txt", "train": 0.9, "valid": 0.05, "test": 0.05 }
    })
}

/// A dataset of train/valid/test files taken from one archive.
fn archive_dataset(
    name: &str,
    kind: &str,
    archive: &str,
    url: &str,
    members: &[(&str, &str, &[u8])],
) -> Value {
    let files: Vec<Value> = members
        .iter()
        .map(|(_, f, d)| json!({ "path": f, "size": d.len(), "sha256": sha(d) }))
        .collect();
    let members: Vec<Value> = members
        .iter()
        .map(|(m, f, _)| json!({ "member": m, "file": f }))
        .collect();
    json!({
        "name": name,
        "description": "test",
        "licence": "test",
        "source_page": "http://127.0.0.1/",
        "files": files,
        "sources": [{ "id": "archive", "archives": [
            { "name": archive, "kind": kind, "urls": [url], "sha256": null, "members": members }
        ]}],
        "splits": { "kind": "files", "train": "train.txt", "valid": "valid.txt", "test": "test.txt" }
    })
}

fn make_zip(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
    for (name, data) in entries {
        w.start_file(*name, zip::write::SimpleFileOptions::default())
            .unwrap();
        w.write_all(data).unwrap();
    }
    w.finish().unwrap().into_inner()
}

/// A tar.gz; names are written raw into the header (so `..` can be tested).
fn make_tar_gz(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut b = tar::Builder::new(gz);
    for (name, data) in entries {
        let mut h = tar::Header::new_old();
        h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        h.set_cksum();
        b.append(&h, *data).unwrap();
    }
    b.into_inner().unwrap().finish().unwrap()
}

/// A Debian binary package: `debian-binary`, `control.tar.xz` and a `data.tar.xz` holding
/// `entries`, in an `ar` archive, as `dpkg-deb` builds it.
fn make_deb(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let tar_xz = |entries: &[(&str, &[u8])]| {
        let mut b = tar::Builder::new(Vec::new());
        for (name, data) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_entry_type(tar::EntryType::Regular);
            b.append_data(&mut h, name, *data).unwrap();
        }
        let tar = b.into_inner().unwrap();
        let mut xz = Vec::new();
        lzma_rs::xz_compress(&mut Cursor::new(tar), &mut xz).unwrap();
        xz
    };
    let control = tar_xz(&[("./control", b"Package: test\n")]);
    let data = tar_xz(entries);
    let mut ar = ar::Builder::new(Vec::new());
    for (name, bytes) in [
        ("debian-binary", b"2.0\n".to_vec()),
        ("control.tar.xz", control),
        ("data.tar.xz", data),
    ] {
        let header = ar::Header::new(name.as_bytes().to_vec(), bytes.len() as u64);
        ar.append(&header, bytes.as_slice()).unwrap();
    }
    ar.into_inner().unwrap()
}

fn no_part_files(dir: &Path) {
    if let Ok(rd) = fs::read_dir(dir) {
        for e in rd.flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            assert!(
                !n.ends_with(".part") && !n.ends_with(".src"),
                "left over: {n}"
            );
        }
    }
}

#[test]
fn downloads_over_http_and_verifies() {
    let server = TestServer::start();
    let data = content(150_000, 1);
    server.file("/tiny/input.txt", &data);
    let env = Env::new(json!([plain_dataset(
        "tiny",
        &data,
        Some(sha(&data)),
        &[server.url("/tiny/input.txt")]
    )]));

    let report = download(&env.opts("tiny")).unwrap();
    assert_eq!(fs::read(env.file("tiny", "input.txt")).unwrap(), data);
    assert_eq!(report.files.len(), 1);
    assert_eq!(report.files[0].sha256, sha(&data));
    assert!(matches!(
        report.files[0].status,
        FileStatus::Fetched { verified: true, .. }
    ));
    match &report.paths.splits {
        SplitPaths::Fraction { file, train, .. } => {
            assert_eq!(file, &env.file("tiny", "input.txt"));
            assert_eq!(*train, 0.9);
        }
        other => panic!("unexpected splits {other:?}"),
    }
    let reqs = server.requests();
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].user_agent.as_deref(), Some(USER_AGENT));
    assert_eq!(reqs[0].range, None);
    no_part_files(&env.dest.join("tiny"));
}

#[test]
fn resumes_after_cut_connection() {
    let server = TestServer::start();
    let data = content(300_000, 2);
    server.cut("/f.txt", &data, 100_000, 1);
    let env = Env::new(json!([plain_dataset(
        "cut",
        &data,
        Some(sha(&data)),
        &[server.url("/f.txt")]
    )]));

    let report = download(&env.opts("cut")).unwrap();
    assert_eq!(fs::read(env.file("cut", "input.txt")).unwrap(), data);
    assert!(matches!(
        report.files[0].status,
        FileStatus::Fetched { verified: true, .. }
    ));
    let ranges: Vec<Option<String>> = server.requests().into_iter().map(|r| r.range).collect();
    assert_eq!(ranges, vec![None, Some("bytes=100000-".to_owned())]);
    no_part_files(&env.dest.join("cut"));
}

#[test]
fn resumes_partial_file_from_an_earlier_run() {
    let server = TestServer::start();
    let data = content(600_000, 3);
    // Every attempt of the first run is cut: it gives up and keeps the .part.
    server.cut("/f.txt", &data, 100_000, 4);
    let env = Env::new(json!([plain_dataset(
        "again",
        &data,
        Some(sha(&data)),
        &[server.url("/f.txt")]
    )]));

    let err = format!("{:#}", download(&env.opts("again")).unwrap_err());
    assert!(err.contains("interrupted after 400000 bytes"), "{err}");
    assert!(err.contains("resumed by the next run"), "{err}");
    assert!(!env.file("again", "input.txt").exists());
    assert_eq!(
        fs::metadata(env.file("again", "input.txt.part"))
            .unwrap()
            .len(),
        400_000
    );

    // The second run asks for the rest only.
    download(&env.opts("again")).unwrap();
    assert_eq!(fs::read(env.file("again", "input.txt")).unwrap(), data);
    let last = server.requests().pop().unwrap();
    assert_eq!(last.range.as_deref(), Some("bytes=400000-"));
    no_part_files(&env.dest.join("again"));
}

#[test]
fn restarts_when_server_ignores_range() {
    let server = TestServer::start();
    let data = content(200_000, 4);
    server.cut("/f.txt", &data, 10_000, 4);
    let env = Env::new(json!([plain_dataset(
        "norange",
        &data,
        Some(sha(&data)),
        &[server.url("/f.txt")]
    )]));
    download(&env.opts("norange")).unwrap_err();
    assert_eq!(
        fs::metadata(env.file("norange", "input.txt.part"))
            .unwrap()
            .len(),
        40_000
    );

    // The server now answers a Range request with the whole file (200).
    server.ignore_range("/f.txt", &data);
    let before = server.requests().len();
    download(&env.opts("norange")).unwrap();
    assert_eq!(fs::read(env.file("norange", "input.txt")).unwrap(), data);
    let reqs = &server.requests()[before..];
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].range.as_deref(), Some("bytes=40000-"));
    no_part_files(&env.dest.join("norange"));
}

#[test]
fn wrong_checksum_leaves_nothing_in_place() {
    let server = TestServer::start();
    let data = content(10_000, 5);
    let other = content(10_000, 6);
    server.file("/f.txt", &other);
    let env = Env::new(json!([plain_dataset(
        "bad",
        &data,
        Some(sha(&data)),
        &[server.url("/f.txt")]
    )]));

    let err = format!("{:#}", download(&env.opts("bad")).unwrap_err());
    assert!(err.contains("checksum mismatch for"), "{err}");
    assert!(err.contains("input.txt.part"), "{err}");
    assert!(
        err.contains(&sha(&data)) && err.contains(&sha(&other)),
        "{err}"
    );
    assert!(err.contains("the file was removed"), "{err}");
    assert!(err.contains("--mirror"), "{err}");
    assert!(!err.contains('\n'), "one line: {err}");
    assert!(!env.file("bad", "input.txt").exists());
    no_part_files(&env.dest.join("bad"));
}

#[test]
fn force_never_replaces_a_good_file_with_a_bad_download() {
    let server = TestServer::start();
    let data = content(10_000, 7);
    server.file("/f.txt", &content(10_000, 8));
    let env = Env::new(json!([plain_dataset(
        "keep",
        &data,
        Some(sha(&data)),
        &[server.url("/f.txt")]
    )]));
    fs::create_dir_all(env.dest.join("keep")).unwrap();
    fs::write(env.file("keep", "input.txt"), &data).unwrap();

    let mut o = env.opts("keep");
    o.force = true;
    let err = format!("{:#}", download(&o).unwrap_err());
    assert!(err.contains("checksum mismatch"), "{err}");
    assert_eq!(fs::read(env.file("keep", "input.txt")).unwrap(), data);
}

#[test]
fn modified_file_in_place_is_reported_not_overwritten() {
    let server = TestServer::start();
    let data = content(10_000, 9);
    server.file("/f.txt", &data);
    let env = Env::new(json!([plain_dataset(
        "mod",
        &data,
        Some(sha(&data)),
        &[server.url("/f.txt")]
    )]));
    fs::create_dir_all(env.dest.join("mod")).unwrap();
    fs::write(env.file("mod", "input.txt"), b"edited").unwrap();

    let err = format!("{:#}", download(&env.opts("mod")).unwrap_err());
    assert!(err.contains("exists but its sha256 is"), "{err}");
    assert!(err.contains("--force"), "{err}");
    assert_eq!(fs::read(env.file("mod", "input.txt")).unwrap(), b"edited");
    assert!(server.requests().is_empty());

    // --force fetches a verified copy and replaces it.
    let mut o = env.opts("mod");
    o.force = true;
    download(&o).unwrap();
    assert_eq!(fs::read(env.file("mod", "input.txt")).unwrap(), data);
}

#[test]
fn falls_back_to_next_url_on_errors() {
    let server = TestServer::start();
    let data = content(20_000, 10);
    server.status("/forbidden", 403);
    server.status("/broken", 503);
    server.file("/good.txt", &data);
    // A loopback port with nothing listening: connection refused.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let a = l.local_addr().unwrap();
        drop(l);
        format!("http://{a}/x")
    };
    let urls = [
        server.url("/missing"),
        closed.clone(),
        server.url("/forbidden"),
        server.url("/broken"),
        server.url("/good.txt"),
    ];
    let env = Env::new(json!([plain_dataset("fb", &data, Some(sha(&data)), &urls)]));

    let report = download(&env.opts("fb")).unwrap();
    assert_eq!(fs::read(env.file("fb", "input.txt")).unwrap(), data);
    match &report.files[0].status {
        FileStatus::Fetched { from, .. } => assert_eq!(from, &server.url("/good.txt")),
        s => panic!("{s:?}"),
    }
    let paths: Vec<String> = server.requests().into_iter().map(|r| r.path).collect();
    assert_eq!(paths, ["/missing", "/forbidden", "/broken", "/good.txt"]);
}

#[test]
fn failing_candidates_are_listed_in_the_error() {
    let server = TestServer::start();
    let data = content(1000, 11);
    server.status("/b", 403);
    let env = Env::new(json!([plain_dataset(
        "none",
        &data,
        Some(sha(&data)),
        &[server.url("/a"), server.url("/b")]
    )]));

    let err = format!("{:#}", download(&env.opts("none")).unwrap_err());
    assert!(err.contains("could not fetch none (input.txt)"), "{err}");
    assert!(
        err.contains(&format!("{}: HTTP 404", server.url("/a"))),
        "{err}"
    );
    assert!(
        err.contains(&format!("{}: HTTP 403", server.url("/b"))),
        "{err}"
    );
    assert!(!err.contains('\n'), "{err}");
    assert!(!env.file("none", "input.txt").exists());
}

#[test]
fn zip_with_path_traversal_is_refused() {
    let server = TestServer::start();
    let train = content(1000, 12);
    let zip = make_zip(&[
        ("ds/train.txt", &train),
        ("../evil.txt", b"pwned"),
        ("ds/valid.txt", &train),
        ("ds/test.txt", &train),
    ]);
    server.file("/ds.zip", &zip);
    let members: [(&str, &str, &[u8]); 3] = [
        ("ds/train.txt", "train.txt", &train),
        ("ds/valid.txt", "valid.txt", &train),
        ("ds/test.txt", "test.txt", &train),
    ];
    let env = Env::new(json!([archive_dataset(
        "evil",
        "zip",
        "ds.zip",
        &server.url("/ds.zip"),
        &members
    )]));

    let err = format!("{:#}", download(&env.opts("evil")).unwrap_err());
    assert!(err.contains("refusing to extract"), "{err}");
    assert!(err.contains("'../evil.txt'"), "{err}");
    assert!(err.contains("path traversal"), "{err}");
    // Nothing written outside the dataset folder, nothing installed inside.
    assert!(!env.dest.join("evil.txt").exists());
    assert!(!env.tmp.path().join("evil.txt").exists());
    let inside: Vec<String> = fs::read_dir(env.dest.join("evil"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(inside.iter().all(|n| n.starts_with('.')), "{inside:?}");
    assert!(
        !env.dest
            .join("evil")
            .join(".download")
            .join("ds.zip")
            .exists()
    );
}

#[test]
fn tar_gz_with_path_traversal_is_refused() {
    let server = TestServer::start();
    let t = content(500, 13);
    let tgz = make_tar_gz(&[("d/train.txt", &t), ("../evil.txt", b"pwned")]);
    server.file("/d.tgz", &tgz);
    let members: [(&str, &str, &[u8]); 3] = [
        ("d/train.txt", "train.txt", &t),
        ("d/valid.txt", "valid.txt", &t),
        ("d/test.txt", "test.txt", &t),
    ];
    let env = Env::new(json!([archive_dataset(
        "tevil",
        "tar.gz",
        "d.tgz",
        &server.url("/d.tgz"),
        &members
    )]));

    let err = format!("{:#}", download(&env.opts("tevil")).unwrap_err());
    assert!(
        err.contains("'../evil.txt'") && err.contains("path traversal"),
        "{err}"
    );
    assert!(!env.dest.join("evil.txt").exists());
    assert!(!env.file("tevil", "train.txt").exists());
    no_part_files(&env.dest.join("tevil"));
}

#[test]
fn deb_members_are_extracted_from_its_data_tar_xz() {
    let server = TestServer::start();
    let (train, valid, test) = (content(20_000, 31), content(2000, 32), content(2500, 33));
    let deb = make_deb(&[
        ("./usr/share/doc/pkg/copyright", b"GPL"),
        ("./usr/share/games/fortunes/train", &train),
        ("./usr/share/games/fortunes/valid", &valid),
        ("./usr/share/games/fortunes/test", &test),
    ]);
    server.file("/pkg_1.0_all.deb", &deb);
    let members: [(&str, &str, &[u8]); 3] = [
        ("usr/share/games/fortunes/train", "train.txt", &train),
        ("usr/share/games/fortunes/valid", "valid.txt", &valid),
        ("usr/share/games/fortunes/test", "test.txt", &test),
    ];
    let env = Env::new(json!([archive_dataset(
        "debbish",
        "deb",
        "pkg_1.0_all.deb",
        &server.url("/pkg_1.0_all.deb"),
        &members
    )]));
    let report = download(&env.opts("debbish")).unwrap();
    assert_eq!(fs::read(env.file("debbish", "train.txt")).unwrap(), train);
    assert_eq!(fs::read(env.file("debbish", "valid.txt")).unwrap(), valid);
    assert_eq!(fs::read(env.file("debbish", "test.txt")).unwrap(), test);
    assert!(
        report
            .files
            .iter()
            .all(|f| matches!(f.status, FileStatus::Fetched { verified: true, .. }))
    );
    assert!(!env.dest.join("debbish").join("copyright").exists());

    // Not a Debian package: the candidate fails with one line and nothing is left behind.
    server.file("/bad_1.0_all.deb", b"!<arch>\nnot really");
    let env = Env::new(json!([archive_dataset(
        "baddeb",
        "deb",
        "bad_1.0_all.deb",
        &server.url("/bad_1.0_all.deb"),
        &members
    )]));
    let err = format!("{:#}", download(&env.opts("baddeb")).unwrap_err());
    assert!(err.contains("is not a valid archive"), "{err}");
    no_part_files(&env.dest.join("baddeb"));
}

#[test]
fn tar_gz_members_are_extracted() {
    let server = TestServer::start();
    let (train, valid, test) = (content(40_000, 14), content(3000, 15), content(3500, 16));
    let tgz = make_tar_gz(&[
        ("./simple-examples/README", b"hello"),
        ("./simple-examples/data/ptb.train.txt", &train),
        ("./simple-examples/data/ptb.valid.txt", &valid),
        ("./simple-examples/data/ptb.test.txt", &test),
    ]);
    server.file("/simple-examples.tgz", &tgz);
    let members: [(&str, &str, &[u8]); 3] = [
        ("simple-examples/data/ptb.train.txt", "train.txt", &train),
        ("simple-examples/data/ptb.valid.txt", "valid.txt", &valid),
        ("simple-examples/data/ptb.test.txt", "test.txt", &test),
    ];
    let env = Env::new(json!([archive_dataset(
        "ptbish",
        "tar.gz",
        "simple-examples.tgz",
        &server.url("/simple-examples.tgz"),
        &members
    )]));

    let report = download(&env.opts("ptbish")).unwrap();
    assert_eq!(fs::read(env.file("ptbish", "train.txt")).unwrap(), train);
    assert_eq!(fs::read(env.file("ptbish", "valid.txt")).unwrap(), valid);
    assert_eq!(fs::read(env.file("ptbish", "test.txt")).unwrap(), test);
    assert!(
        report
            .files
            .iter()
            .all(|f| matches!(f.status, FileStatus::Fetched { verified: true, .. }))
    );
    assert!(!env.dest.join("ptbish").join("README").exists());
    assert!(
        !env.dest.join("ptbish").join(".download").exists(),
        "archive kept"
    );
    match report.paths.splits {
        SplitPaths::Files { train: p, .. } => assert_eq!(p, env.file("ptbish", "train.txt")),
        s => panic!("{s:?}"),
    }
}

#[test]
fn zip_fallback_with_unknown_member_checksums() {
    // Like wikitext-2: plain files first (here: 404), then a zip whose member
    // checksums are unknown; one member equals the file checksum, one not.
    let server = TestServer::start();
    let (train, valid, test) = (content(5000, 17), content(600, 18), content(700, 19));
    let valid_variant = content(650, 20);
    let zip = make_zip(&[
        ("wt/wiki.train.tokens", &train),
        ("wt/wiki.valid.tokens", &valid_variant),
        ("wt/wiki.test.tokens", &test),
    ]);
    server.file("/wt.zip", &zip);
    let file = |p: &str, d: &[u8]| json!({ "path": p, "size": d.len(), "sha256": sha(d) });
    let plain = |f: &str| json!({ "name": f, "kind": "plain", "file": f, "urls": [server.url(&format!("/gone/{f}"))] });
    let ds = json!({
        "name": "wt", "description": "t", "licence": "t", "source_page": "http://127.0.0.1/",
        "files": [file("train.txt", &train), file("valid.txt", &valid), file("test.txt", &test)],
        "sources": [
            { "id": "plain", "archives": [plain("train.txt"), plain("valid.txt"), plain("test.txt")] },
            { "id": "zip", "archives": [{ "name": "wt.zip", "kind": "zip", "urls": [server.url("/wt.zip")], "members": [
                { "member": "wt/wiki.train.tokens", "file": "train.txt", "sha256": null },
                { "member": "wt/wiki.valid.tokens", "file": "valid.txt", "sha256": null },
                { "member": "wt/wiki.test.tokens", "file": "test.txt", "sha256": null }
            ]}]}
        ],
        "splits": { "kind": "files", "train": "train.txt", "valid": "valid.txt", "test": "test.txt" }
    });
    let env = Env::new(json!([ds]));

    let report = download(&env.opts("wt")).unwrap();
    let status = |f: &str| {
        report
            .files
            .iter()
            .find(|r| r.file == f)
            .unwrap()
            .status
            .clone()
    };
    assert!(matches!(
        status("train.txt"),
        FileStatus::Fetched { verified: true, .. }
    ));
    assert!(matches!(
        status("valid.txt"),
        FileStatus::Fetched {
            verified: false,
            ..
        }
    ));
    assert_eq!(
        fs::read(env.file("wt", "valid.txt")).unwrap(),
        valid_variant
    );

    // The unverified file is recorded, so a second run is quiet.
    let before = server.requests().len();
    assert!(download(&env.opts("wt")).unwrap().up_to_date());
    assert_eq!(server.requests().len(), before);
}

#[test]
fn unknown_checksum_is_accepted_with_a_record() {
    let server = TestServer::start();
    let data = content(2000, 21);
    server.file("/f.txt", &data);
    let env = Env::new(json!([plain_dataset(
        "nosum",
        &data,
        None,
        &[server.url("/f.txt")]
    )]));

    let report = download(&env.opts("nosum")).unwrap();
    assert!(matches!(
        report.files[0].status,
        FileStatus::Fetched {
            verified: false,
            ..
        }
    ));
    assert_eq!(report.files[0].sha256, sha(&data));
    assert!(download(&env.opts("nosum")).unwrap().up_to_date());
    // A later change to the file is noticed.
    fs::write(env.file("nosum", "input.txt"), b"changed").unwrap();
    let err = format!("{:#}", download(&env.opts("nosum")).unwrap_err());
    assert!(err.contains("recorded when it was fetched"), "{err}");
}

#[test]
fn second_run_is_idempotent() {
    let server = TestServer::start();
    let data = content(50_000, 22);
    server.file("/f.txt", &data);
    let env = Env::new(json!([plain_dataset(
        "idem",
        &data,
        Some(sha(&data)),
        &[server.url("/f.txt")]
    )]));

    let first = download(&env.opts("idem")).unwrap();
    assert!(!first.up_to_date());
    let mtime = fs::metadata(env.file("idem", "input.txt"))
        .unwrap()
        .modified()
        .unwrap();
    let second = download(&env.opts("idem")).unwrap();
    assert!(second.up_to_date());
    assert_eq!(second.paths, first.paths);
    assert_eq!(server.requests().len(), 1, "second run must not fetch");
    assert_eq!(
        fs::metadata(env.file("idem", "input.txt"))
            .unwrap()
            .modified()
            .unwrap(),
        mtime
    );
}

#[test]
fn unwritable_destination_is_a_clear_error() {
    let server = TestServer::start();
    let data = content(100, 23);
    server.file("/f.txt", &data);
    let env = Env::new(json!([plain_dataset(
        "ro",
        &data,
        Some(sha(&data)),
        &[server.url("/f.txt")]
    )]));
    // Tests run as root, where permission bits do not stop writes: a path
    // under a regular file cannot be created by anyone.
    let file = env.tmp.path().join("somefile");
    fs::write(&file, b"x").unwrap();
    let mut o = env.opts("ro");
    o.dest = file.join("sub");

    let err = format!("{:#}", download(&o).unwrap_err());
    assert!(err.contains("cannot create dataset folder"), "{err}");
    assert!(err.contains("somefile/sub/ro"), "{err}");
    assert!(err.contains("--dest"), "{err}");
    assert!(server.requests().is_empty());
}

#[test]
fn local_folder_mirror() {
    let server = TestServer::start();
    let (a, b) = (content(3000, 24), content(4000, 25));
    let mirror = tempfile::tempdir().unwrap();
    // `a` under the dataset's own name, `b` under a mirror path only.
    fs::create_dir_all(mirror.path().join("two")).unwrap();
    fs::write(mirror.path().join("two").join("a.txt"), &a).unwrap();
    fs::create_dir_all(mirror.path().join("elsewhere")).unwrap();
    fs::write(mirror.path().join("elsewhere").join("b-orig.txt"), &b).unwrap();
    let ds = json!({
        "name": "two", "description": "t", "licence": "t", "source_page": "http://127.0.0.1/",
        "files": [
            { "path": "a.txt", "size": a.len(), "sha256": sha(&a) },
            { "path": "b.txt", "size": b.len(), "sha256": sha(&b), "mirror_paths": ["elsewhere/b-orig.txt"] }
        ],
        "sources": [{ "id": "net", "archives": [
            { "name": "a.txt", "kind": "plain", "file": "a.txt", "urls": [server.url("/a.txt")] },
            { "name": "b.txt", "kind": "plain", "file": "b.txt", "urls": [server.url("/b.txt")] }
        ]}],
        "splits": { "kind": "files", "train": "a.txt", "valid": "b.txt", "test": "b.txt" }
    });
    let env = Env::new(json!([ds]));
    let mut o = env.opts("two");
    o.mirror = Some(mirror.path().to_str().unwrap().parse::<Mirror>().unwrap());

    let report = download(&o).unwrap();
    assert_eq!(fs::read(env.file("two", "a.txt")).unwrap(), a);
    assert_eq!(fs::read(env.file("two", "b.txt")).unwrap(), b);
    assert!(
        report
            .files
            .iter()
            .all(|f| matches!(f.status, FileStatus::Fetched { verified: true, .. }))
    );
    assert!(
        server.requests().is_empty(),
        "a mirror replaces the manifest's URLs"
    );

    // A mirror folder that does not exist is a clear error.
    let mut o = env.opts("two");
    o.mirror = Some(Mirror::Local(mirror.path().join("nope")));
    o.force = true;
    let err = format!("{:#}", download(&o).unwrap_err());
    assert!(
        err.contains("mirror folder") && err.contains("does not exist"),
        "{err}"
    );
}

#[test]
fn http_mirror() {
    let server = TestServer::start();
    let data = content(5000, 26);
    server.file("/mirror/m/input.txt", &data);
    let env = Env::new(json!([plain_dataset(
        "m",
        &data,
        Some(sha(&data)),
        &[server.url("/upstream")]
    )]));
    let mut o = env.opts("m");
    o.mirror = Some(format!("{}/", server.url("/mirror")).parse().unwrap());

    download(&o).unwrap();
    assert_eq!(fs::read(env.file("m", "input.txt")).unwrap(), data);
    let paths: Vec<String> = server.requests().into_iter().map(|r| r.path).collect();
    assert_eq!(paths, ["/mirror/m/input.txt"]);
}

#[test]
fn http_mirror_serving_the_archive() {
    let server = TestServer::start();
    let t = content(800, 27);
    let zip = make_zip(&[("z/train.txt", &t), ("z/valid.txt", &t), ("z/test.txt", &t)]);
    server.file("/m/zz/zz.zip", &zip);
    let members: [(&str, &str, &[u8]); 3] = [
        ("z/train.txt", "train.txt", &t),
        ("z/valid.txt", "valid.txt", &t),
        ("z/test.txt", "test.txt", &t),
    ];
    let env = Env::new(json!([archive_dataset(
        "zz",
        "zip",
        "zz.zip",
        &server.url("/upstream.zip"),
        &members
    )]));
    let mut o = env.opts("zz");
    o.mirror = Some(server.url("/m").parse().unwrap());

    download(&o).unwrap();
    assert_eq!(fs::read(env.file("zz", "test.txt")).unwrap(), t);
    let paths: Vec<String> = server.requests().into_iter().map(|r| r.path).collect();
    // Plain files first (404), then the archive.
    assert_eq!(paths.last().map(String::as_str), Some("/m/zz/zz.zip"));
    assert!(paths.contains(&"/m/zz/train.txt".to_owned()));
}

#[test]
fn cli_exit_status_and_one_line_error() {
    let server = TestServer::start();
    let data = content(1000, 28);
    server.file("/ok.txt", &data);
    let env = Env::new(json!([
        plain_dataset("ok", &data, Some(sha(&data)), &[server.url("/ok.txt")]),
        plain_dataset("gone", &data, Some(sha(&data)), &[server.url("/gone.txt")])
    ]));
    let xtask = |name: &str| {
        Command::new(env!("CARGO_BIN_EXE_xtask"))
            .args(["download", name, "--manifest"])
            .arg(&env.manifest)
            .arg("--dest")
            .arg(&env.dest)
            .output()
            .unwrap()
    };

    let ok = xtask("ok");
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let again = xtask("ok");
    assert!(again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("up to date"));

    let gone = xtask("gone");
    assert!(!gone.status.success());
    let stderr = String::from_utf8_lossy(&gone.stderr);
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(
        errors[0].contains("HTTP 404") && errors[0].contains("--mirror"),
        "{stderr}"
    );
    assert_eq!(stderr.lines().last(), Some(errors[0]));

    let unknown = xtask("no-such-dataset");
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("unknown dataset 'no-such-dataset'"));
}

/// The real manifest against the local copies in `<root>/../shared/datasets`.
#[test]
fn shared_datasets_verify_against_manifest() {
    let shared = xtask::project_root()
        .join("..")
        .join("shared")
        .join("datasets");
    if !shared.is_dir() {
        let why = format!("{} not found", shared.display());
        // CI provides the shared datasets: there a missing folder is a failure, not a skip.
        assert!(
            std::env::var_os("CI").is_none(),
            "shared_datasets_verify_against_manifest: {why} (CI is set, so it must be there)"
        );
        eprintln!("SKIPPED shared_datasets_verify_against_manifest: {why}");
        return;
    }
    let dest = tempfile::tempdir().unwrap();
    let mirror = Mirror::Local(shared.clone());
    for name in [
        "tiny-shakespeare",
        "wikitext-2",
        "fortunes-zh-tang300",
        "fortunes-zh-chinese",
    ] {
        let mut o = DownloadOptions::new(name);
        o.mirror = Some(mirror.clone());
        o.dest = dest.path().to_path_buf();
        let report = download(&o).unwrap();
        assert!(
            report
                .files
                .iter()
                .all(|f| matches!(f.status, FileStatus::Fetched { verified: true, .. })),
            "{name}: {:?}",
            report.files
        );
        let paths = ensure_dataset_in(name, Some(&mirror), dest.path()).unwrap();
        for p in paths.files() {
            assert!(p.is_file(), "{}", p.display());
        }
    }
}

#[test]
fn complete_part_file_from_an_earlier_run_is_verified_not_refetched() {
    // No size or checksum in the manifest: the server's 416 answer to
    // `Range: bytes=LEN-` tells that the .part is already complete.
    let server = TestServer::start();
    let data = content(30_000, 29);
    server.file("/f.txt", &data);
    let mut ds = plain_dataset("whole", &data, None, &[server.url("/f.txt")]);
    ds["files"][0]["size"] = Value::Null;
    let env = Env::new(json!([ds]));
    fs::create_dir_all(env.dest.join("whole")).unwrap();
    fs::write(env.file("whole", "input.txt.part"), &data).unwrap();
    // The note naming where the .part came from (see xtask/README.md).
    fs::write(
        env.file("whole", "input.txt.part.src"),
        server.url("/f.txt"),
    )
    .unwrap();

    let report = download(&env.opts("whole")).unwrap();
    assert_eq!(report.files[0].sha256, sha(&data));
    let reqs = server.requests();
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].range.as_deref(), Some("bytes=30000-"));
    no_part_files(&env.dest.join("whole"));
}

#[test]
fn concurrent_downloads_of_one_dataset_are_serialised() {
    let server = TestServer::start();
    let data = content(400_000, 30);
    server.file("/f.txt", &data);
    let env = Env::new(json!([plain_dataset(
        "par",
        &data,
        None,
        &[server.url("/f.txt")]
    )]));
    let reports: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..3)
            .map(|_| s.spawn(|| download(&env.opts("par")).unwrap()))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(fs::read(env.file("par", "input.txt")).unwrap(), data);
    assert_eq!(reports.iter().filter(|r| !r.up_to_date()).count(), 1);
    assert_eq!(server.requests().len(), 1);
}
