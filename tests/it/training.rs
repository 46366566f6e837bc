//! Training: loss falls under every position encoding; checkpoints restore exactly;
//! a killed run resumes with no step lost and the same losses.

use std::collections::BTreeMap;

use burn::backend::{Autodiff, Flex};
use burn::prelude::*;
use sinkscope::model::{Arch, Batch, ForwardOptions, PositionKind, Transformer};
use sinkscope::train::checkpoint;
use sinkscope::train::data::Corpus;
use sinkscope::train::trainer::{heldout_loss, resolve_model};
use sinkscope::train::{train, NoEvents, StepInfo, TrainEvents};

use crate::common::{tiny_model, tiny_recipe};

type B = Autodiff<Flex>;

#[derive(Default)]
struct Losses(BTreeMap<usize, f64>);

impl TrainEvents<B> for Losses {
    fn on_step(&mut self, info: &StepInfo, _model: &Transformer<B>) -> sinkscope::Result<()> {
        assert!(
            self.0.insert(info.step, info.loss).is_none(),
            "step {} ran twice",
            info.step
        );
        Ok(())
    }
}

#[test]
fn loss_falls_for_every_position_encoding() {
    let dev = Default::default();
    let mut configs: Vec<_> = [
        PositionKind::Rope,
        PositionKind::NtkRope,
        PositionKind::Learned,
        PositionKind::Sinusoidal,
        PositionKind::Alibi,
        PositionKind::None,
    ]
    .into_iter()
    .map(tiny_model)
    .collect();
    let mut enc = tiny_model(PositionKind::Learned);
    enc.arch = Arch::Encoder;
    configs.push(enc);
    for model in configs {
        let recipe = tiny_recipe(model.clone(), 60);
        let cfg = resolve_model(&recipe).unwrap();
        let corpus = Corpus::load(&recipe.data, cfg.is_causal(), |p| recipe.resolve(p)).unwrap();
        let before = heldout_loss(
            &Transformer::<Flex>::init(&cfg, recipe.seed, &dev),
            &corpus,
            2,
            8,
            &dev,
        );
        let dir = tempfile::tempdir().unwrap();
        let out = train::<B>(&recipe, dir.path(), false, &dev, &mut NoEvents).unwrap();
        let after = out.heldout_loss.unwrap();
        // Untrained: ≈ ln 259 = 5.56. A byte model learns letter frequencies fast.
        assert!(before > 5.0, "{:?}: {before}", model.position.kind);
        assert!(
            after < before - 1.5,
            "{:?} {:?}: held-out loss {before} → {after}",
            model.arch,
            model.position.kind
        );
    }
}

#[test]
fn checkpoint_round_trip_gives_bit_identical_logits() {
    let dev = Default::default();
    let mut model = tiny_model(PositionKind::Learned);
    model.n_kv_heads = Some(2);
    let recipe = tiny_recipe(model, 6);
    let dir = tempfile::tempdir().unwrap();
    let out = train::<B>(&recipe, dir.path(), false, &dev, &mut NoEvents).unwrap();
    let ckpt = out.last_checkpoint.unwrap();
    let (loaded, meta) = checkpoint::load_model::<Flex>(&ckpt, &dev).unwrap();
    assert_eq!(meta.step, 6);

    // The model as it was at the end of training, rebuilt by replaying the same run in memory.
    struct Keep(Option<Transformer<Flex>>);
    impl TrainEvents<B> for Keep {
        fn on_step(&mut self, _: &StepInfo, m: &Transformer<B>) -> sinkscope::Result<()> {
            use burn::module::AutodiffModule;
            self.0 = Some(m.valid());
            Ok(())
        }
    }
    let mut keep = Keep(None);
    let dir2 = tempfile::tempdir().unwrap();
    train::<B>(&recipe, dir2.path(), false, &dev, &mut keep).unwrap();
    let live = keep.0.unwrap();

    let ids: Vec<i64> = (0..2 * 20).map(|i| (i * 13 % 256) as i64).collect();
    let batch = Batch {
        ids: Tensor::from_data(TensorData::new(ids, [2, 20]), &dev),
        padding: None,
    };
    let a = live
        .forward(&batch, &ForwardOptions::default())
        .logits
        .into_data()
        .to_vec::<f32>()
        .unwrap();
    let b = loaded
        .forward(&batch, &ForwardOptions::default())
        .logits
        .into_data()
        .to_vec::<f32>()
        .unwrap();
    assert!(
        a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits()),
        "logits differ after reload"
    );
}

#[test]
fn killed_run_resumes_with_the_same_losses() {
    let dev = Default::default();
    // No dropout here: its masks come from the backend's global RNG, which other
    // tests running in parallel threads of this process draw from too.
    let model = tiny_model(PositionKind::Rope);
    let mut recipe = tiny_recipe(model, 12);
    recipe.train.checkpoint_every = 4;

    let whole_dir = tempfile::tempdir().unwrap();
    let mut whole = Losses::default();
    train::<B>(&recipe, whole_dir.path(), false, &dev, &mut whole).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let mut killed = recipe.clone();
    killed.train.halt_after = Some(10);
    let mut first = Losses::default();
    let o = train::<B>(&killed, dir.path(), false, &dev, &mut first).unwrap();
    assert!(o.halted);
    let steps: Vec<_> = checkpoint::list(dir.path())
        .unwrap()
        .into_iter()
        .map(|(s, _)| s)
        .collect();
    assert_eq!(steps, [4, 8], "checkpoints before the kill");

    // Starting again without --resume refuses to overwrite.
    let e = train::<B>(&recipe, dir.path(), false, &dev, &mut NoEvents)
        .unwrap_err()
        .to_string();
    assert!(e.contains("--resume"), "{e}");

    let mut second = Losses::default();
    train::<B>(&recipe, dir.path(), true, &dev, &mut second).unwrap();
    assert_eq!(
        second.0.keys().copied().collect::<Vec<_>>(),
        (9..=12).collect::<Vec<_>>()
    );
    for (step, loss) in first.0.iter().chain(second.0.iter()) {
        if *step <= 10 || second.0.contains_key(step) {
            let expected = whole.0[step];
            assert_eq!(
                loss.to_bits(),
                expected.to_bits(),
                "step {step}: {loss} vs uninterrupted {expected}"
            );
        }
    }
}

#[test]
fn shipped_recipes_load() {
    let dir = crate::common::root().join("recipes");
    let shards = tempfile::tempdir().unwrap();
    let mut names = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            // A corpus of billions of tokens is not shipped: a small one stands in for
            // the shards a GPU recipe names.
            let sets: Vec<String> = if std::fs::read_to_string(&path)
                .unwrap()
                .contains("\nshards =")
            {
                let tiny = crate::shards::tiny_shards(shards.path(), "gpt2");
                vec![format!("data.shards={}", tiny.display())]
            } else {
                Vec::new()
            };
            let runs =
                sinkscope::train::Recipe::load(&path, &sets).unwrap_or_else(|e| panic!("{e}"));
            for r in &runs {
                resolve_model(&r.recipe).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                assert!(
                    r.recipe.resolve(&r.recipe.data.train).is_file(),
                    "{}",
                    path.display()
                );
            }
            names.push((
                path.file_stem().unwrap().to_string_lossy().to_string(),
                runs.len(),
            ));
        }
    }
    names.sort();
    assert!(names.contains(&("quick".into(), 1)), "{names:?}");
    assert!(names.contains(&("pe-swap".into(), 7)), "{names:?}");
    assert!(names.contains(&("gu-60m".into(), 5)), "{names:?}");
}
