//! The MODEL argument → what to load: a local Hugging Face folder, a GGUF file, or a hub id
//! already in the local Hugging Face cache (resolved offline, never downloaded).
//!
//! The cache layout (huggingface_hub): `<cache>/models--{org}--{name}/refs/{revision}`
//! holds a commit hash, and `snapshots/{hash}/` the files (symlinks into `blobs/`). The
//! cache root is `$HF_HUB_CACHE`, else `$HF_HOME/hub`, else
//! `$XDG_CACHE_HOME/huggingface/hub`, else `~/.cache/huggingface/hub`. Lookups take the
//! root as an argument ([`resolve_in`]) so they can be tested without touching the
//! process environment.

use std::fs;
use std::path::{Path, PathBuf};

use crate::import::error::{ImportError, ImportErrorKind};

/// Where a model's files are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ModelLocation {
    /// A folder with config.json, safetensors weights and tokenizer.json.
    HfFolder(PathBuf),
    /// A llama.cpp GGUF file.
    Gguf(PathBuf),
}

impl ModelLocation {
    /// The folder or file.
    pub fn path(&self) -> &Path {
        match self {
            Self::HfFolder(p) | Self::Gguf(p) => p,
        }
    }
}

/// The Hugging Face hub cache root from the environment, as huggingface_hub finds it.
pub fn hub_cache_root() -> Option<PathBuf> {
    let var = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    var("HF_HUB_CACHE")
        .or_else(|| var("HF_HOME").map(|h| h.join("hub")))
        .or_else(|| var("XDG_CACHE_HOME").map(|c| c.join("huggingface").join("hub")))
        .or_else(|| var("HOME").map(|h| h.join(".cache").join("huggingface").join("hub")))
}

/// Resolves `model` against the local file system and the hub cache of the environment.
pub fn resolve(model: &str) -> Result<ModelLocation, ImportError> {
    resolve_in(model, hub_cache_root().as_deref())
}

/// Resolves `model`: an existing path (a model folder or a `.gguf` file) first, else a hub
/// id `org/name` or `name`, optionally `@revision` (a branch, tag or commit hash; default
/// `main`), looked up in the cache at `cache_root`.
pub fn resolve_in(model: &str, cache_root: Option<&Path>) -> Result<ModelLocation, ImportError> {
    let path = Path::new(model);
    if path.exists() {
        return local(path);
    }
    let (repo, revision) = model.split_once('@').unwrap_or((model, "main"));
    if !is_hub_id(repo) {
        return Err(ImportErrorKind::NotFound("no such file or folder".into()).at(path));
    }
    let Some(root) = cache_root else {
        return Err(ImportErrorKind::NotFound(
            "not a local path, and no Hugging Face cache folder is known (set HF_HOME)".into(),
        )
        .at(path));
    };
    let repo_dir = root.join(format!("models--{}", repo.replace('/', "--")));
    if !repo_dir.is_dir() {
        return Err(ImportErrorKind::NotFound(format!(
            "not a local path, and {} is not in the Hugging Face cache {} \
             (sinkscope resolves hub ids offline; download it first, e.g. \
             `huggingface-cli download {repo}`)",
            repo,
            root.display()
        ))
        .at(path));
    }
    let snapshot = snapshot_dir(&repo_dir, revision)?;
    local(&snapshot)
}

/// `org/name` or `name`: letters, digits, `-`, `_`, `.`; not a path-like string.
fn is_hub_id(repo: &str) -> bool {
    let parts: Vec<&str> = repo.split('/').collect();
    let ok = |p: &&str| {
        !p.is_empty()
            && !p.starts_with('.')
            && p.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    };
    (1..=2).contains(&parts.len()) && parts.iter().all(ok)
}

/// The snapshot folder of `revision`: `refs/{revision}`'s hash, or the revision itself
/// when it names a snapshot (a commit hash).
fn snapshot_dir(repo_dir: &Path, revision: &str) -> Result<PathBuf, ImportError> {
    let snapshots = repo_dir.join("snapshots");
    let ref_file = repo_dir.join("refs").join(revision);
    let hash = match fs::read_to_string(&ref_file) {
        Ok(h) => h.trim().to_string(),
        Err(_) => revision.to_string(),
    };
    let dir = snapshots.join(&hash);
    if hash.is_empty() || hash.contains(['/', '\\']) || !dir.is_dir() {
        return Err(ImportErrorKind::NotFound(format!(
            "revision `{revision}` has no snapshot in the cache (looked for {})",
            dir.display()
        ))
        .at(repo_dir));
    }
    Ok(dir)
}

/// A local path: a `.gguf` file, a folder with config.json, a sentence-transformers folder
/// (its Transformer module's folder), or a folder holding exactly one `.gguf` file (a GGUF
/// repository snapshot).
fn local(path: &Path) -> Result<ModelLocation, ImportError> {
    if path.is_file() {
        return if has_gguf_extension(path) {
            Ok(ModelLocation::Gguf(path.to_path_buf()))
        } else {
            Err(ImportErrorKind::NotFound(
                "a file that is not .gguf; give a model folder (config.json, safetensors, \
                 tokenizer.json) or a .gguf file"
                    .into(),
            )
            .at(path))
        };
    }
    if let Some(sub) = sentence_transformer_folder(path)? {
        return Ok(ModelLocation::HfFolder(sub));
    }
    if path.join("config.json").is_file() {
        return Ok(ModelLocation::HfFolder(path.to_path_buf()));
    }
    let ggufs: Vec<PathBuf> = fs::read_dir(path)
        .map_err(|e| ImportErrorKind::Io(e).at(path))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| has_gguf_extension(p))
        .collect();
    match ggufs.as_slice() {
        [one] => Ok(ModelLocation::Gguf(one.clone())),
        [] => Err(ImportErrorKind::NotFound(
            "no config.json and no .gguf file in this folder".into(),
        )
        .at(path)),
        many => {
            let names: Vec<String> = many
                .iter()
                .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
                .collect();
            Err(ImportErrorKind::NotFound(format!(
                "no config.json, and several .gguf files ({}); name one",
                names.join(", ")
            ))
            .at(path))
        }
    }
}

/// One entry of a sentence-transformers `modules.json`.
#[derive(serde::Deserialize)]
struct StModule {
    path: String,
    #[serde(rename = "type")]
    kind: String,
}

/// The folder of a sentence-transformers model's Transformer module (`modules.json`'s
/// `sentence_transformers.models.Transformer` entry: `""` for the folder itself, as in
/// all-MiniLM-L6-v2, or a subfolder such as `0_Transformer`); None without modules.json.
/// The pooling and normalisation modules after it act on the output and are not read.
fn sentence_transformer_folder(dir: &Path) -> Result<Option<PathBuf>, ImportError> {
    let modules = dir.join("modules.json");
    if !modules.is_file() {
        return Ok(None);
    }
    let list: Vec<StModule> = crate::import::json::read_json(&modules)?;
    let Some(m) = list.iter().find(|m| m.kind.ends_with("models.Transformer")) else {
        return Err(ImportErrorKind::NotFound(
            "modules.json lists no sentence_transformers.models.Transformer module".into(),
        )
        .at(&modules));
    };
    let plain = Path::new(&m.path)
        .components()
        .all(|c| matches!(c, std::path::Component::Normal(_)));
    let sub = dir.join(&m.path);
    if !plain || !sub.join("config.json").is_file() {
        return Err(ImportErrorKind::NotFound(format!(
            "the Transformer module's folder `{}` holds no config.json",
            m.path
        ))
        .at(&modules));
    }
    Ok(Some(sub))
}

fn has_gguf_extension(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("gguf"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hub_ids_and_paths_are_told_apart() {
        assert!(is_hub_id("gpt2"));
        assert!(is_hub_id("HuggingFaceTB/SmolLM2-135M"));
        assert!(!is_hub_id("a/b/c"));
        assert!(!is_hub_id("./model"));
        assert!(!is_hub_id("../x/y"));
        assert!(!is_hub_id("/abs/path"));
        assert!(!is_hub_id(""));
    }
}
