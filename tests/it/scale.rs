//! Analysis at length: the layer-by-layer path (`analyze_streaming`, what `sinkscope
//! analyze` runs) gives the reports of capturing every map first and analyzing them
//! afterwards, and crosses to the iterative eigensolvers and the spectra cap on the way.

use burn::backend::Flex;
use sinkscope::analysis::AnalysisConfig;
use sinkscope::eval::{analyze_streaming, capture, evaluate, finish, EvalPlan};
use sinkscope::model::{Arch, PositionKind, SoftmaxKind, Transformer};

use crate::common::tiny_model;

#[test]
fn streamed_layers_give_the_captured_reports() {
    let dev = Default::default();
    // 200 tokens reach the Lanczos Fiedler values (from 192); a cap of 64 tokens puts the
    // spectra on the Lanczos singular values and the leading-block route
    let cfg = AnalysisConfig {
        spectra_full_max_tokens: 64,
        ..AnalysisConfig::default()
    };
    for (arch, softmax) in [
        (Arch::Decoder, SoftmaxKind::Standard),
        (Arch::Decoder, SoftmaxKind::Quiet),
        (Arch::Encoder, SoftmaxKind::Standard),
    ] {
        let mut model_cfg = tiny_model(PositionKind::Rope);
        model_cfg.arch = arch;
        model_cfg.softmax = softmax;
        model_cfg.max_seq_len = 256;
        let model = Transformer::<Flex>::init(&model_cfg, 3, &dev);
        let vocab = model_cfg.vocab_size as u32;
        // unequal lengths in one batch (as `capture` runs them, so the forward pass
        // computes the same digits): padding and cropping
        let seqs: Vec<Vec<u32>> = [200usize, 150, 90]
            .iter()
            .map(|&n| (0..n as u32).map(|i| (i * 31 + n as u32) % vocab).collect())
            .collect();
        let plan = EvalPlan {
            analysis: cfg.clone(),
            ..EvalPlan::default()
        };
        let probe = capture(&model, &seqs, 0, true, &dev).unwrap();
        let want = evaluate(None, &probe, &[], None, &plan).unwrap();
        let mut seen = Vec::new();
        let streamed =
            analyze_streaming(&model, &seqs, 0, seqs.len(), true, &cfg, &dev, &mut |lm| {
                assert_eq!(lm.maps.layers(), 1);
                seen.push((lm.sequence, lm.layer));
                Ok(())
            })
            .unwrap();
        assert_eq!(seen.len(), seqs.len() * model_cfg.n_layers);
        let nulls: Vec<Option<&[f64]>> = streamed.iter().map(|s| s.null_mass.as_deref()).collect();
        let reports = streamed.iter().map(|s| s.report.clone()).collect();
        let got = finish(None, reports, &nulls, &[], None, &plan).unwrap();
        assert_eq!(got.reports, want.reports, "{arch:?} {softmax:?}");
        assert_eq!(got.null_mass, want.null_mass);
        for (s, p) in streamed.iter().zip(&probe) {
            assert_eq!(s.hidden, p.hidden);
            assert_eq!(s.final_hidden, p.final_hidden);
        }
        let first = &got.reports[0];
        assert!(first
            .notes
            .iter()
            .any(|n| n.contains("spectra_full_max_tokens")));
        let sp = first.layers[0].spectra.as_ref().unwrap();
        assert_eq!(sp.full_spectrum_tokens, 64);
        assert!(sp.stable_rank.is_some_and(|r| r >= 1.0));
    }
}
