//! The modern families (issue 14 §2) against transformers: tiny random Qwen3, Gemma 2,
//! Gemma 3 (text, and the text decoder of the multimodal model), SmolLM3, OLMo 2, Phi-3 and ModernBERT models (tests/fixtures/hf, see
//! its README) must reproduce transformers' eager float32 attentions (masks included),
//! hidden states and logits within 1e-4; their per-layer settings must be read as the
//! configs say; broken per-layer configs must be one-line errors naming the file.

use std::fs;

use burn::backend::Flex;
use sinkscope::import::load;
use sinkscope::model::{LayerSpec, PositionKind, QkNorm};

use crate::import::{check_against, fidelity, fixture};

type B = Flex;

fidelity! {
    qwen3_matches_transformers => "qwen3",
    gemma2_matches_transformers => "gemma2",
    gemma3_text_matches_transformers => "gemma3-text",
    gemma3_multimodal_text_decoder_matches_transformers => "gemma3-multimodal",
    smollm3_matches_transformers => "smollm3",
    olmo2_matches_transformers => "olmo2",
    phi3_matches_transformers => "phi3",
    modernbert_matches_transformers => "modernbert",
}

fn specs(name: &str) -> Vec<LayerSpec> {
    let m = load::<B>(
        fixture(&format!("hf/{name}")).to_str().unwrap(),
        &Default::default(),
    )
    .unwrap();
    (0..m.config.n_layers).map(|l| m.config.layer(l)).collect()
}

#[test]
fn per_layer_settings_are_read_from_the_configs() {
    // Qwen3: max_window_layers 1 → layer 0 global, layer 1 window 6.
    let q = specs("qwen3");
    assert_eq!((q[0].sliding_window, q[1].sliding_window), (None, Some(6)));
    // Gemma 2: alternating, local first; one rotary base.
    let g2 = specs("gemma2");
    assert_eq!(
        (g2[0].sliding_window, g2[1].sliding_window),
        (Some(6), None)
    );
    assert_eq!(g2[0].position, g2[1].position);
    // Gemma 3: local θ 1e4 unscaled, global θ 1e6 with linear ×2.
    let g3 = specs("gemma3-text");
    assert_eq!((g3[0].position.base, g3[1].position.base), (1e4, 1e6));
    assert!(g3[0].position.scaling.is_none() && g3[1].position.scaling.is_some());
    // SmolLM3: layer 1 is NoPE.
    let s = specs("smollm3");
    assert_eq!(
        (s[0].position.kind, s[1].position.kind),
        (PositionKind::Rope, PositionKind::None)
    );
    // ModernBERT: layers 0 and 2 global (θ 160000), layer 1 local (window 8, θ 1e4).
    let mb = specs("modernbert");
    let windows: Vec<_> = mb.iter().map(|l| l.sliding_window).collect();
    assert_eq!(windows, [None, Some(8), None]);
    assert_eq!((mb[0].position.base, mb[1].position.base), (160_000.0, 1e4));
    let olmo = load::<B>(fixture("hf/olmo2").to_str().unwrap(), &Default::default()).unwrap();
    assert_eq!(olmo.config.qk_norm, QkNorm::Full);
}

/// A writable copy of a fixture folder.
fn copy_fixture(name: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for entry in fs::read_dir(fixture(&format!("hf/{name}"))).unwrap() {
        let entry = entry.unwrap();
        fs::copy(entry.path(), dir.path().join(entry.file_name())).unwrap();
    }
    dir
}

fn edit_config(dir: &std::path::Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let path = dir.join("config.json");
    let mut v: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(&path).unwrap()).unwrap();
    edit(&mut v);
    fs::write(&path, serde_json::to_string(&v).unwrap()).unwrap();
}

/// The one-line error of loading `dir`, which must name config.json.
fn config_error(dir: &std::path::Path) -> String {
    let e = match load::<B>(dir.to_str().unwrap(), &Default::default()) {
        Ok(_) => panic!("{} loaded", dir.display()),
        Err(e) => e.to_string(),
    };
    assert!(e.contains("config.json") && !e.contains('\n'), "{e}");
    e
}

/// A fixture, an edit of its config.json, and a word the error must contain.
type ConfigCase = (
    &'static str,
    Box<dyn Fn(&mut serde_json::Value)>,
    &'static str,
);

#[test]
fn broken_per_layer_configs_are_named() {
    let cases: Vec<ConfigCase> = vec![
        (
            "gemma2",
            Box::new(|c| c["layer_types"] = serde_json::json!(["sliding_attention"])),
            "layer_types",
        ),
        (
            "gemma3-text",
            Box::new(|c| {
                c["layer_types"] = serde_json::json!(["chunked_attention", "full_attention"])
            }),
            "chunked_attention",
        ),
        (
            "smollm3",
            Box::new(|c| c["no_rope_layers"] = serde_json::json!([1, 0, 1])),
            "no_rope_layers",
        ),
        (
            "gemma3-text",
            Box::new(|c| {
                c["rope_parameters"]["sliding_attention"] =
                    serde_json::json!({"rope_type": "yarn", "factor": 2.0})
            }),
            "yarn",
        ),
        (
            "gemma2",
            Box::new(|c| c["attn_logit_softcapping"] = serde_json::json!(-1.0)),
            "attn_softcap",
        ),
        (
            "phi3",
            Box::new(|c| {
                c["rope_parameters"] =
                    serde_json::json!({"rope_type": "longrope", "rope_theta": 1e4})
            }),
            "longrope",
        ),
        (
            "modernbert",
            Box::new(|c| c["classifier_activation"] = serde_json::json!("silu")),
            "classifier_activation",
        ),
        // a multimodal wrapper's decoder: the nested field is named as nested
        (
            "gemma3-multimodal",
            Box::new(|c| c["text_config"]["layer_types"] = serde_json::json!(["full_attention"])),
            "text_config.layer_types",
        ),
        (
            "gemma3-multimodal",
            Box::new(|c| c["text_config"]["model_type"] = serde_json::json!("siglip")),
            "siglip",
        ),
    ];
    for (name, edit, needle) in cases {
        let dir = copy_fixture(name);
        edit_config(dir.path(), edit);
        let e = config_error(dir.path());
        assert!(e.contains(needle), "{name}: {e}");
    }
}

/// A hybrid NoPE/RoPE decoder is one recipe line (or one `--set`), and trains.
#[test]
fn a_hybrid_nope_rope_recipe_is_one_line_and_trains() {
    use burn::backend::Autodiff;
    use burn::prelude::*;
    use sinkscope::model::{Batch, ForwardOptions, Taps, Transformer};
    use sinkscope::train::recipe::Recipe;
    use sinkscope::train::trainer::{heldout_loss, resolve_model};
    use sinkscope::train::{data::Corpus, train, NoEvents};

    let dir = tempfile::tempdir().unwrap();
    let line = r#"layers = [{ every = 2, first = 1, position = { kind = "none" } }]"#;
    let path = dir.path().join("hybrid.toml");
    fs::write(
        &path,
        format!("[model]\nvocab_size = 259\nd_model = 32\nn_layers = 2\nn_heads = 4\n{line}\n"),
    )
    .unwrap();
    let runs = Recipe::load(&path, &[]).unwrap();
    let model = runs[0].recipe.model.clone();
    assert_eq!(model.layer(0).position.kind, PositionKind::Rope);
    assert_eq!(model.layer(1).position.kind, PositionKind::None);
    // The same through --set.
    let set = format!("model.{line}").replacen(" = ", "=", 1);
    let plain = dir.path().join("plain.toml");
    fs::write(
        &plain,
        "[model]\nvocab_size = 259\nd_model = 32\nn_layers = 2\n",
    )
    .unwrap();
    let runs = Recipe::load(&plain, &[set]).unwrap();
    assert_eq!(runs[0].recipe.model.layers, model.layers);
    // A layer that does not exist is a named error.
    fs::write(
        &path,
        "[model]\nvocab_size = 259\nn_layers = 2\nlayers = [{ layers = [5], sliding_window = 4 }]\n",
    )
    .unwrap();
    // Refused when the recipe is loaded (every run of a sweep is checked up front).
    let e = Recipe::load(&path, &[]).err().unwrap().to_string();
    assert!(
        e.contains("hybrid.toml") && e.contains("layers[0].layers"),
        "{e}"
    );

    // Layer 0 rotates, layer 1 does not: with the same weights, layer 0's attention equals
    // an all-RoPE model's and layer 1's an all-NoPE model's given the same input.
    let dev = Default::default();
    let mut cfg = crate::common::tiny_model(PositionKind::Rope);
    cfg.layers = model.layers.clone();
    let ids: Vec<i64> = (0..12).map(|i| (i * 7 % 250) as i64).collect();
    let batch = Batch::<Flex> {
        ids: Tensor::from_data(TensorData::new(ids, [1, 12]), &dev),
        padding: None,
    };
    let opts = ForwardOptions::capture(Taps::PROBS);
    let attn = |c: &sinkscope::model::ModelConfig| {
        Transformer::<Flex>::init(c, 3, &dev)
            .forward(&batch, &opts)
            .captured
            .probs
            .into_iter()
            .map(|a| a.into_data().to_vec::<f32>().unwrap())
            .collect::<Vec<_>>()
    };
    let hybrid = attn(&cfg);
    let rope = attn(&crate::common::tiny_model(PositionKind::Rope));
    assert_eq!(hybrid[0], rope[0]);
    assert_ne!(hybrid[1], rope[1]);

    // And it trains: the held-out loss falls as for the uniform encodings.
    let recipe = crate::common::tiny_recipe(cfg, 60);
    let cfg = resolve_model(&recipe).unwrap();
    let corpus = Corpus::load(&recipe.data, true, |p| recipe.resolve(p)).unwrap();
    let before = heldout_loss(
        &Transformer::<Flex>::init(&cfg, 7, &dev),
        &corpus,
        2,
        8,
        &dev,
    );
    let out = train::<Autodiff<Flex>>(&recipe, dir.path(), false, &dev, &mut NoEvents).unwrap();
    let after = out.heldout_loss.unwrap();
    assert!(after < before - 1.5, "held-out loss {before} → {after}");
}

/// GGUF files converted from the Hugging Face fixtures as llama.cpp converts each
/// architecture (tests/fixtures/gguf/make_gguf_fixtures.py) go through the same family
/// tables and reproduce transformers: where GGUF keeps everything, the Hugging Face
/// fixture's own expectations; where llama.cpp reads the file otherwise (no sliding
/// windows in its Qwen3, Gemma scores scaled by 1/√head_dim), transformers' on the same
/// weights with those settings (gguf/*.expected.safetensors).
macro_rules! gguf_fidelity {
    ($($test:ident => ($file:literal, $arch:literal, $expected:literal)),* $(,)?) => {$(
        #[test]
        fn $test() {
            let path = fixture(concat!("gguf/", $file, ".gguf"));
            let m = load::<B>(path.to_str().unwrap(), &Default::default()).unwrap();
            assert_eq!(m.family, concat!("gguf:", $arch));
            check_against(path.to_str().unwrap(), &fixture($expected), $file);
        }
    )*};
}

gguf_fidelity! {
    gguf_qwen3_matches_transformers => ("qwen3", "qwen3", "gguf/qwen3.expected.safetensors"),
    gguf_gemma_matches_transformers => ("gemma", "gemma", "hf/gemma/expected.safetensors"),
    gguf_gemma2_matches_transformers => ("gemma2", "gemma2", "gguf/gemma2.expected.safetensors"),
    gguf_gemma3_matches_transformers => ("gemma3", "gemma3", "gguf/gemma3.expected.safetensors"),
    gguf_phi3_matches_transformers => ("phi3", "phi3", "hf/phi3/expected.safetensors"),
    gguf_gpt2_matches_transformers => ("gpt2", "gpt2", "hf/gpt2/expected.safetensors"),
    gguf_llama31_rope_freqs_match_transformers =>
        ("llama3-rope", "llama", "hf/llama3-rope/expected.safetensors"),
}

/// Truncated and corrupted GGUF files of the new architectures, an unknown architecture
/// and rope factors no Llama 3 rule gives are one-line errors naming the file.
#[test]
fn broken_gguf_families_are_named_errors() {
    let dir = tempfile::tempdir().unwrap();
    let err = |bytes: &[u8], name: &str| -> String {
        let path = dir.path().join(name);
        fs::write(&path, bytes).unwrap();
        match load::<B>(path.to_str().unwrap(), &Default::default()) {
            Ok(_) => panic!("{name} loaded"),
            Err(e) => {
                let e = e.to_string();
                assert!(e.contains(name) && !e.contains('\n'), "{e}");
                e
            }
        }
    };
    for file in ["gemma2", "gemma3", "phi3", "gpt2", "qwen3", "llama3-rope"] {
        let bytes = fs::read(fixture(&format!("gguf/{file}.gguf"))).unwrap();
        for cut in [16, bytes.len() / 3, bytes.len() - 7] {
            err(&bytes[..cut], &format!("cut-{file}-{cut}.gguf"));
        }
    }
    // Another architecture: the error lists the supported ones.
    let mut bytes = fs::read(fixture("gguf/gemma2.gguf")).unwrap();
    let at = bytes.windows(6).position(|w| w == b"gemma2").unwrap();
    bytes[at..at + 6].copy_from_slice(b"mamba2");
    let e = err(&bytes, "mamba.gguf");
    assert!(
        e.contains("mamba2") && e.contains("gemma3") && e.contains("gpt2"),
        "{e}"
    );
    // rope_freqs that are not Llama 3's: every factor different and growing backwards.
    let mut bytes = fs::read(fixture("gguf/llama3-rope.gguf")).unwrap();
    let file = sinkscope::import::gguf::GgufFile::open(fixture("gguf/llama3-rope.gguf")).unwrap();
    let (factors, _) = file.tensor_f32("rope_freqs.weight").unwrap();
    let raw: Vec<u8> = factors.iter().flat_map(|f| f.to_le_bytes()).collect();
    let at = bytes
        .windows(raw.len())
        .rposition(|w| w == raw.as_slice())
        .unwrap();
    let bad: Vec<u8> = [3.0f32, 2.0, 1.5, 1.0]
        .iter()
        .flat_map(|f| f.to_le_bytes())
        .collect();
    bytes[at..at + raw.len()].copy_from_slice(&bad);
    let e = err(&bytes, "freqs.gguf");
    assert!(e.contains("rope_freqs") && e.contains("Llama 3"), "{e}");
}
