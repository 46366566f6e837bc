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
