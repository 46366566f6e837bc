//! Human-readable rendering of reports: the per-layer table `sinkscope metrics` prints and
//! the frame verdict with its explanation.

use std::fmt::Write;

use super::frame::FrameVerdict;
use super::report::{AttentionReport, Summary};

fn num(v: Option<f64>) -> String {
    match v {
        Some(x) if x.is_finite() => format!("{x:.4}"),
        Some(x) if x.is_infinite() => "inf".to_string(),
        _ => "-".to_string(),
    }
}

/// The frame verdict and the lines of its explanation.
pub fn render_frame(frame: &FrameVerdict) -> String {
    let mut s = format!("frame type: {}\n", frame.frame_type);
    for line in &frame.frame_explanation {
        let _ = writeln!(s, "  - {line}");
    }
    s
}

/// One line per layer with the headline metrics, then the frame verdict.
pub fn render_report(r: &AttentionReport) -> String {
    let mut s = format!(
        "{} layers × {} heads, T = {}, {} (detected: {})\n",
        r.num_layers,
        r.num_heads,
        r.seq_len,
        if r.causal { "causal" } else { "bidirectional" },
        if r.causal_detected {
            "causal"
        } else {
            "bidirectional"
        }
    );
    let tau = "0.01";
    let _ = writeln!(
        s,
        "{:>5} {:>9} {:>10} {:>9} {:>8} {:>8} {:>10} {:>12} {:>10} {:>6} {:>6} {:>9}",
        "layer",
        "sink_rate",
        "first_tok",
        "baseline",
        "conc",
        "kl",
        "kl_no_sink",
        format!("fiedler_{tau}"),
        "fiedler_w",
        "b0",
        "b1",
        "eig_gap"
    );
    for l in &r.layers {
        let g = l.graph.as_ref();
        let betti = |k: &str| {
            l.betti
                .as_ref()
                .and_then(|b| b.get(k).copied())
                .map_or("-".to_string(), |n| n.to_string())
        };
        let _ = writeln!(
            s,
            "{:>5} {:>9.1} {:>10.4} {:>9.4} {:>8.4} {:>8} {:>10} {:>12} {:>10} {:>6} {:>6} {:>9}",
            l.layer,
            l.sink.sink_rate,
            l.sink.first_token_mass,
            l.sink.first_token_baseline,
            l.sink.sink_concentration,
            num(Some(l.info.kl)),
            num(l.info.kl_sink_removed),
            num(g.and_then(|g| g.fiedler.get(tau).copied().flatten())),
            num(g.and_then(|g| g.fiedler.get(super::names::WEIGHTED).copied().flatten())),
            betti("0"),
            betti("1"),
            num(l.spectra.as_ref().and_then(|sp| sp.spectral_gap)),
        );
    }
    if let Some(m) = &r.massive {
        let _ = writeln!(s, "massive activations (top |h| / median):");
        for st in m {
            let top = st.top.first();
            let _ = writeln!(
                s,
                "  state {:>3}: {:>10} at token {:>4}, dim {:>5}; median {:.4}; ratio {}",
                st.index,
                num(top.map(|a| a.value)),
                top.map_or(0, |a| a.token),
                top.map_or(0, |a| a.dim),
                st.median,
                num(st.ratio)
            );
        }
    }
    for n in &r.notes {
        let _ = writeln!(s, "note: {n}");
    }
    s.push_str(&render_frame(&r.frame));
    s
}

/// Mean ± std of every scalar, then the frame verdict over all sequences.
pub fn render_summary(summary: &Summary) -> String {
    let mut s = format!("{} sequences\n", summary.sequences);
    for sc in &summary.scalars {
        let _ = writeln!(s, "{:<48} {:>12.6} ± {:<12.6}", sc.tag, sc.mean, sc.std);
    }
    s.push_str(&render_frame(&summary.frame));
    s
}
