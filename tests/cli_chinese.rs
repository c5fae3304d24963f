//! Chinese text end to end through the real binary: cleaning and jieba segmentation in
//! `tokenize`, `encode` and `decode`, a tiny word-level and character-level model trained on
//! a Chinese text the test writes, then `generate`, `score` and `eval` on it; and the
//! fortunes-zh corpus reached through the dataset mirror.
use std::path::{Path, PathBuf};

#[path = "support/cli.rs"]
mod support;
use support::{assert_one_line_error, lstm_lm, stderr, stdout};

/// A few lines of Chinese with what real corpora carry: colour codes, full-width letters and
/// digits, ideographic spaces, `\r\n` line ends.
const ZH_TEXT: &str = "\x1b[32m《学习》\x1b[m\r\n\
    我来到北京清华大学，学习ＬＳＴＭ语言模型。\r\n\
    \u{3000}\u{3000}我们用神经网络模型生成中文文本。\r\n\
    北京的秋天很美，清华大学的学生在学习。\r\n\
    我们在北京学习语言模型，也学习神经网络。\r\n\
    中文文本没有空格，所以要先分词。\r\n";

fn write_text(dir: &Path) -> PathBuf {
    let path = dir.join("zh.txt");
    std::fs::write(&path, ZH_TEXT.repeat(3)).unwrap();
    path
}

fn ok(o: &std::process::Output, what: &str) -> String {
    assert!(o.status.success(), "{what} failed: {}", stderr(o));
    stdout(o)
}

#[test]
fn tokenize_encode_decode_with_cleaning_and_jieba() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write_text(dir);
    let out = ok(
        &lstm_lm(
            &[
                "tokenize",
                "--kind",
                "word",
                "--segment",
                "jieba",
                "--clean",
                "--input",
                "zh.txt",
                "--out",
                "tok.json",
            ],
            dir,
        ),
        "tokenize",
    );
    assert!(
        out.contains("cleaning: escapes,nfkc,whitespace; segmentation: jieba"),
        "{out}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("tok.json")).unwrap()).unwrap();
    assert_eq!(json["model"]["lstm_lm"]["format_version"], 2);
    assert_eq!(json["model"]["lstm_lm"]["preprocess"]["segment"], "jieba");

    std::fs::write(dir.join("line.txt"), "\x1b[33m我来到北京清华大学\x1b[m\n").unwrap();
    let tokens = ok(
        &lstm_lm(
            &["encode", "--tokenizer", "tok.json", "--tokens", "line.txt"],
            dir,
        ),
        "encode --tokens",
    );
    assert_eq!(tokens, "我 来到 北京 清华大学 <eos>\n");
    let ids = ok(
        &lstm_lm(&["encode", "--tokenizer", "tok.json", "line.txt"], dir),
        "encode",
    );
    std::fs::write(dir.join("ids.txt"), &ids).unwrap();
    let text = ok(
        &lstm_lm(&["decode", "--tokenizer", "tok.json", "ids.txt"], dir),
        "decode",
    );
    assert_eq!(text.trim_end(), "我来到北京清华大学");

    // Full-width letters become ASCII: LSTM is one word, and spaces stay around it only where
    // no Chinese character touches it.
    std::fs::write(dir.join("mixed.txt"), "学习ＬＳＴＭ语言模型\n").unwrap();
    let tokens = ok(
        &lstm_lm(
            &[
                "encode",
                "--tokenizer",
                "tok.json",
                "--tokens",
                "--json",
                "mixed.txt",
            ],
            dir,
        ),
        "encode --json",
    );
    assert_eq!(tokens, "[\"学习\",\"LSTM\",\"语言\",\"模型\",\"<eos>\"]\n");

    assert_one_line_error(
        &lstm_lm(
            &[
                "tokenize",
                "--kind",
                "char",
                "--segment",
                "jieba",
                "--input",
                "zh.txt",
                "--out",
                "c.json",
            ],
            dir,
        ),
        &["--segment jieba applies only to --kind word or keras-word"],
    );
    assert_one_line_error(
        &lstm_lm(
            &[
                "tokenize",
                "--kind",
                "char",
                "--clean-steps",
                "nfkc,nfd",
                "--input",
                "zh.txt",
                "--out",
                "c.json",
            ],
            dir,
        ),
        &["--clean-steps: unknown cleaning step \"nfd\""],
    );
}

#[test]
fn word_and_char_models_train_generate_score_and_eval_on_chinese() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    write_text(dir);
    let tiny = [
        "--epochs",
        "2",
        "--hidden-size",
        "16",
        "--embedding-size",
        "8",
        "--batch-size",
        "2",
        "--bptt",
        "8",
        "--quiet",
        "--sample-tokens",
        "12",
    ];
    let mut word_args = vec![
        "train",
        "--data",
        "zh.txt",
        "--valid",
        "zh.txt",
        "--out",
        "word",
        "--tokenizer",
        "word",
        "--segment",
        "jieba",
        "--clean",
    ];
    word_args.extend(tiny);
    let out = ok(&lstm_lm(&word_args, dir), "train word");
    assert!(out.contains("trained 2 epochs"), "{out}");
    let sample = out.lines().find(|l| l.starts_with("sample: ")).unwrap();
    assert!(
        !sample.contains("北京 ") && !sample.contains(" 学习"),
        "Chinese words are joined without spaces: {sample}"
    );
    let config = std::fs::read_to_string(dir.join("word/config.json")).unwrap();
    assert!(config.contains("\"segment\": \"jieba\""), "{config}");

    let generated = ok(
        &lstm_lm(
            &[
                "generate",
                "--model",
                "word",
                "--prompt",
                "我们",
                "--max-tokens",
                "10",
                "--seed",
                "1",
            ],
            dir,
        ),
        "generate",
    );
    assert!(generated.starts_with("我们"), "{generated}");
    assert!(
        generated
            .chars()
            .any(|c| ('\u{4e00}'..='\u{9fff}').contains(&c))
    );

    // The prompt is cleaned and segmented as the training text was: full-width LSTM and the
    // colour code make no difference to the score.
    // The first line echoes the text; the rest are the tokens' log-probabilities.
    let score = |text: &str| {
        let out = ok(&lstm_lm(&["score", "--model", "word", text], dir), "score");
        out.split_once('\n').unwrap().1.to_owned()
    };
    let plain = score("学习LSTM语言模型");
    assert_eq!(score("\x1b[31m学习ＬＳＴＭ语言模型\x1b[m"), plain);
    assert!(plain.contains("语言"), "{plain}");

    let eval = ok(
        &lstm_lm(&["eval", "--model", "word", "--data", "zh.txt"], dir),
        "eval",
    );
    assert!(
        eval.starts_with("loss ") && eval.contains("perplexity"),
        "{eval}"
    );

    let mut char_args = vec![
        "train",
        "--data",
        "zh.txt",
        "--valid",
        "zh.txt",
        "--out",
        "char",
        "--tokenizer",
        "char",
        "--clean",
    ];
    char_args.extend(tiny);
    let out = ok(&lstm_lm(&char_args, dir), "train char");
    assert!(out.contains("trained 2 epochs"), "{out}");
    let generated = ok(
        &lstm_lm(
            &[
                "generate",
                "--model",
                "char",
                "--prompt",
                "北京",
                "--max-tokens",
                "10",
            ],
            dir,
        ),
        "generate char",
    );
    assert!(generated.starts_with("北京"), "{generated}");

    assert_one_line_error(
        &lstm_lm(
            &[
                "train",
                "--data",
                "zh.txt",
                "--out",
                "bad",
                "--tokenizer",
                "char",
                "--segment",
                "jieba",
            ],
            dir,
        ),
        &["data.segment = \"jieba\" applies to the word and keras-word tokenizers only, not char"],
    );
    let printed = ok(
        &lstm_lm(
            &[
                "train",
                "--print-config",
                "--segment",
                "jieba",
                "--clean",
                "--lowercase",
            ],
            dir,
        ),
        "print-config",
    );
    assert!(
        printed.contains("clean = \"escapes,nfkc,lowercase,whitespace\"")
            && printed.contains("segment = \"jieba\""),
        "{printed}"
    );
}

/// The fortunes-zh files in the shared dataset mirror, when it is beside the project.
fn mirror_file(name: &str, test: &str) -> Option<PathBuf> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/datasets/fortunes-zh")
        .join(name);
    if path.is_file() {
        return Some(path);
    }
    let why = format!("{} is not there", path.display());
    assert!(
        std::env::var_os("CI").is_none(),
        "{test}: {why} (CI is set, so it must be)"
    );
    eprintln!("SKIPPED {test}: {why}");
    None
}

#[test]
fn fortunes_zh_tang300_cleans_and_segments() {
    let Some(tang) = mirror_file("tang300", "fortunes_zh_tang300_cleans_and_segments") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let tang = tang.to_str().unwrap();
    let out = ok(
        &lstm_lm(
            &[
                "tokenize",
                "--kind",
                "word",
                "--segment",
                "jieba",
                "--clean",
                "--input",
                tang,
                "--out",
                "tok.json",
            ],
            dir,
        ),
        "tokenize tang300",
    );
    assert!(out.contains("input: 1 file,"), "{out}");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("tok.json")).unwrap()).unwrap();
    let vocab = json["model"]["vocab"].as_object().unwrap();
    // No colour code survives cleaning, and the title brackets are tokens of their own.
    assert!(
        vocab
            .keys()
            .all(|w| !w.contains('\x1b') && !w.contains("[m"))
    );
    for word in ["《", "》", "杜甫", "李白", "明月"] {
        assert!(vocab.contains_key(word), "{word} not in the vocabulary");
    }
    let tokens = ok(
        &lstm_lm(
            &["encode", "--tokenizer", "tok.json", "--tokens", tang],
            dir,
        ),
        "encode tang300",
    );
    let first: Vec<&str> = tokens.lines().take(3).collect();
    assert_eq!(first[0], "《 感遇 ・ 其一 》 <eos>");
    assert_eq!(first[1], "作者 : 张九龄 <eos>");
    assert!(
        first[2].starts_with("兰叶春 葳蕤 , 桂华秋 皎洁 。"),
        "{}",
        first[2]
    );
}
