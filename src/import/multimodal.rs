//! Multimodal checkpoints (Gemma 3's `Gemma3ForConditionalGeneration`, and wrappers like
//! it) hold the text decoder of a supported family beside a vision tower: config.json
//! nests the decoder's config in `text_config`, and its tensors carry a language-model
//! prefix (`language_model.model.` in the hub's uploads, `model.language_model.` as
//! transformers ≥ 4.52 saves them). Attention sinks are a property of that decoder, so
//! sinkscope reads it as if it had been published alone and leaves the vision tower and
//! projector out, with a note: the family tables stay those of the text families.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::error::Result;
use crate::import::hf_config::HfConfig;
use crate::import::source::TensorSource;

/// Stored prefix → the prefix the text decoder has when published alone. The first that
/// matches wins; a tensor under none of them is not the decoder's.
const TEXT_DECODER_PREFIXES: &[(&str, &str)] = &[
    ("model.language_model.", "model."),
    ("language_model.model.", "model."),
    ("language_model.lm_head.", "lm_head."),
    ("lm_head.", "lm_head."),
];

/// The decoder's config of a multimodal wrapper, None for a plain config. A `text_config`
/// without `model_type` gets the wrapper's with `_text` appended (transformers' naming,
/// `gemma3` → `gemma3_text`); settings the wrapper states once for both towers
/// (`tie_word_embeddings`) are inherited when the decoder's config leaves them out.
pub fn text_decoder_config(outer: &HfConfig) -> Option<HfConfig> {
    let mut text = (**outer.text_config.as_ref()?).clone();
    if text.model_type.is_none() {
        text.model_type = outer.model_type.as_ref().map(|m| format!("{m}_text"));
    }
    text.tie_word_embeddings = text.tie_word_embeddings.or(outer.tie_word_embeddings);
    Some(text)
}

/// A multimodal checkpoint seen as its text decoder alone: names as the decoder would be
/// published on its own; every other tensor (vision tower, projector) hidden.
#[derive(Debug)]
pub struct TextDecoderSource {
    inner: Box<dyn TensorSource>,
    /// Decoder-alone name → stored name.
    stored: BTreeMap<String, String>,
    /// Stored tensors that are not the decoder's, for the note.
    others: usize,
}

impl TextDecoderSource {
    /// Wraps `inner`, keeping the decoder's tensors.
    pub fn new(inner: Box<dyn TensorSource>) -> Self {
        let mut stored = BTreeMap::new();
        let mut others = 0;
        for name in inner.names() {
            let renamed = TEXT_DECODER_PREFIXES
                .iter()
                .find_map(|(from, to)| name.strip_prefix(from).map(|rest| format!("{to}{rest}")));
            match renamed {
                Some(r) => {
                    stored.insert(r, name);
                }
                None => others += 1,
            }
        }
        Self {
            inner,
            stored,
            others,
        }
    }

    /// How many stored tensors are not the decoder's (vision tower, projector).
    pub fn others(&self) -> usize {
        self.others
    }

    /// The stored name of `name`, or `name` itself (so errors still name something).
    fn original<'a>(&'a self, name: &'a str) -> &'a str {
        self.stored.get(name).map_or(name, String::as_str)
    }
}

impl TensorSource for TextDecoderSource {
    fn names(&self) -> Vec<String> {
        self.stored.keys().cloned().collect()
    }

    fn left_out(&self) -> Vec<String> {
        self.inner.left_out()
    }

    fn shape(&self, name: &str) -> Option<Vec<usize>> {
        self.stored.get(name).and_then(|s| self.inner.shape(s))
    }

    fn origin(&self) -> PathBuf {
        self.inner.origin()
    }

    fn file_of(&self, name: &str) -> PathBuf {
        self.inner.file_of(self.original(name))
    }

    fn check_readable(&self, name: &str) -> Result<()> {
        self.inner.check_readable(self.original(name))
    }

    fn read_f32(&self, name: &str) -> Result<Vec<f32>> {
        self.inner.read_f32(self.original(name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Shapes only: enough to see which names survive and how they are spelled.
    #[derive(Debug)]
    struct Names(Vec<&'static str>);

    impl TensorSource for Names {
        fn names(&self) -> Vec<String> {
            self.0.iter().map(|s| s.to_string()).collect()
        }
        fn shape(&self, name: &str) -> Option<Vec<usize>> {
            self.0.contains(&name).then(|| vec![1])
        }
        fn origin(&self) -> PathBuf {
            PathBuf::from("model.safetensors")
        }
        fn file_of(&self, _: &str) -> PathBuf {
            self.origin()
        }
        fn check_readable(&self, _: &str) -> Result<()> {
            Ok(())
        }
        fn read_f32(&self, _: &str) -> Result<Vec<f32>> {
            Ok(vec![0.0])
        }
    }

    #[test]
    fn both_published_spellings_become_the_decoder_alone() {
        let src = TextDecoderSource::new(Box::new(Names(vec![
            "language_model.model.layers.0.self_attn.q_proj.weight",
            "model.language_model.norm.weight",
            "language_model.lm_head.weight",
            "vision_tower.vision_model.post_layernorm.weight",
            "multi_modal_projector.mm_soft_emb_norm.weight",
        ])));
        assert_eq!(
            src.names(),
            [
                "lm_head.weight",
                "model.layers.0.self_attn.q_proj.weight",
                "model.norm.weight"
            ]
        );
        assert_eq!(src.others(), 2);
        assert_eq!(src.shape("model.norm.weight"), Some(vec![1]));
        assert_eq!(
            src.shape("vision_tower.vision_model.post_layernorm.weight"),
            None
        );
    }

    #[test]
    fn the_decoder_config_inherits_what_the_wrapper_states_once() {
        let outer: HfConfig = serde_json::from_str(
            r#"{"model_type": "gemma3", "tie_word_embeddings": true,
                "text_config": {"hidden_size": 32}}"#,
        )
        .unwrap();
        let text = text_decoder_config(&outer).unwrap();
        assert_eq!(text.model_type.as_deref(), Some("gemma3_text"));
        assert_eq!(text.tie_word_embeddings, Some(true));
        assert_eq!(text.hidden_size, Some(32));
        assert!(text_decoder_config(&text).is_none());
    }
}
