//! The binary on bad input: a message naming the file and field, exit code 1, no panic.

use crate::common;

/// Exit code and stderr.
fn sinkscope(args: &[&str]) -> (i32, String) {
    let (code, _, stderr) = common::sinkscope(args);
    (code, stderr)
}

fn recipe(dir: &std::path::Path, body: &str) -> String {
    let p = dir.join("bad.toml");
    std::fs::write(&p, body).unwrap();
    p.display().to_string()
}

#[test]
fn bad_recipes_and_data_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out").display().to_string();
    let cases = [
        ("[model]\nd_model = 32\nlayers = 2\n", vec!["bad.toml", "model", "layers"]),
        ("[model.position]\nkind = \"rotary\"\n", vec!["bad.toml", "model.position.kind", "rotary"]),
        ("[model]\nn_heads = 3\n", vec!["n_heads", "d_model"]),
        (
            "[model]\nd_model = 32\n[data.synthetic]\nvocab = 500\n",
            vec!["bad.toml", "data.synthetic.vocab"],
        ),
        (
            "[model]\nd_model = 32\n[data]\ntrain = \"/nonexistent/corpus.txt\"\nheldout = \"/nonexistent/h.txt\"\n",
            vec!["/nonexistent/corpus.txt", "cannot read"],
        ),
    ];
    for (body, needles) in cases {
        let (code, err) = sinkscope(&["train", &recipe(dir.path(), body), "--out", &out]);
        assert_eq!(code, 1, "{err}");
        for n in needles {
            assert!(err.contains(n), "expected {n:?} in {err:?}");
        }
    }
    let (code, err) = sinkscope(&[
        "train",
        "recipes/quick.toml",
        "--set",
        "train.stepz=3",
        "--out",
        &out,
    ]);
    assert_eq!(code, 1);
    assert!(err.contains("stepz"), "{err}");
    // --only names a run the sweep does not have: the error lists the ones it has.
    let (code, err) = sinkscope(&[
        "train",
        "recipes/pe-swap.toml",
        "--only",
        "rotary",
        "--out",
        &out,
    ]);
    assert_eq!(code, 1);
    assert!(
        err.contains("rotary") && err.contains("ntk-rope, learned"),
        "{err}"
    );
    let (code, err) = sinkscope(&["train", "/nonexistent/recipe.toml"]);
    assert_eq!(code, 1);
    assert!(err.contains("/nonexistent/recipe.toml"), "{err}");
}

/// `devices` through the binary: two CPU devices train (one thread each) and print the
/// same losses as one device with the same global batch; a CUDA list in a build
/// without CUDA, or mixed with the CPU, is one line naming the field.
#[test]
fn a_device_list_trains_data_parallel_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let losses = |stderr: &str| -> Vec<String> {
        stderr
            .lines()
            .filter_map(|l| l.split_once("train step=")?.1.split_once("loss=\""))
            .map(|(_, rest)| rest.split('"').next().unwrap_or_default().to_string())
            .collect()
    };
    let train = |name: &str, set: &[&str]| {
        let out = dir.path().join(name).display().to_string();
        let mut args = vec!["train", "recipes/quick.toml", "--out", &out];
        for s in ["train.steps=4", "train.log_every=1", "hooks.enabled=false"]
            .iter()
            .chain(set)
        {
            args.extend(["--set", s]);
        }
        let (code, err) = sinkscope(&args);
        assert_eq!(code, 0, "{err}");
        losses(&err)
    };
    let two = train("two", &["devices=[\"cpu\", \"cpu\"]"]);
    let one = train("one", &["train.accumulate=2"]);
    assert_eq!(two.len(), 4, "{two:?}");
    assert_eq!(two, one);
    let out = dir.path().join("bad").display().to_string();
    let mut cases = vec![("devices=[\"cpu\", \"cuda:0\"]", "mixes")];
    if cfg!(not(feature = "cuda")) {
        cases.push(("devices=[\"cuda:0\", \"cuda:1\"]", "--features cuda"));
    }
    for (list, says) in cases {
        let (code, err) = sinkscope(&["train", "recipes/quick.toml", "--set", list, "--out", &out]);
        assert_eq!(code, 1, "{err}");
        assert!(
            err.contains("quick.toml") && err.contains("devices"),
            "{err}"
        );
        assert!(err.contains(says), "{list}: {err}");
    }
}
