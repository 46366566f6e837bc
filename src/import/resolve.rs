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

/// One checkpoint of a series (a cached hub revision such as Pythia's `step1000`, or a
/// step-named subfolder of a checkpoint folder), so a series can be analysed in step
/// order and each member named when it cannot be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Revision {
    /// The branch or folder name (`step1000`, `checkpoint-1000`, `step-00000300`).
    pub name: String,
    /// The training step the name carries.
    pub step: u64,
    /// The folder to load, or why there is none (a ref without a snapshot, a name the
    /// user asked for that is not there): the series names it and goes on.
    pub location: Result<PathBuf, String>,
}

/// The training step a checkpoint name carries: the number after `step` or
/// `checkpoint` (one `-` or `_` may come between), as in `step1000`, `step-00000300`,
/// `global_step1000`, `checkpoint-1000` and OLMo's `stage1-step1000-tokens4B`. Hidden
/// names (a half-written `.tmp-step-…`) carry none.
pub fn step_of(name: &str) -> Option<u64> {
    if name.starts_with('.') {
        return None;
    }
    let lower = name.to_ascii_lowercase();
    for key in ["step", "checkpoint"] {
        for (i, _) in lower.match_indices(key) {
            let rest = &lower[i + key.len()..];
            let rest = rest
                .strip_prefix(['-', '_'])
                .filter(|r| r.starts_with(|c: char| c.is_ascii_digit()))
                .unwrap_or(rest);
            let digits: &str = &rest[..rest
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(rest.len())];
            if let Ok(step) = digits.parse() {
                return Some(step);
            }
        }
    }
    None
}

/// [`series_in`] with the hub cache of the environment.
pub fn series(model: &str, revisions: Option<&str>) -> Result<Option<Vec<Revision>>, ImportError> {
    series_in(model, revisions, hub_cache_root().as_deref())
}

/// The series `model` names, in step order, or None when it names one model.
///
/// - a hub id with `revisions` (`all` or a comma-separated list): the cached revisions
///   whose name carries a step (`refs/<name>` → `snapshots/<commit>/`);
/// - a folder whose subfolders are named with a step (a Trainer `output_dir`, a
///   sinkscope run's `checkpoints/`): each of them, with or without `revisions` (only
///   with `revisions` when the folder is itself a model, with a config.json);
/// - a folder holding such a `checkpoints/` folder (a sinkscope run), with `revisions`.
///
/// A listed name (`step1000` or just `1000`) that is not there becomes a [`Revision`]
/// without location, so it is reported with the others. Two revisions of one step
/// are an error: their order would be undefined.
pub fn series_in(
    model: &str,
    revisions: Option<&str>,
    cache_root: Option<&Path>,
) -> Result<Option<Vec<Revision>>, ImportError> {
    let path = Path::new(model);
    let found = if path.is_dir() {
        let own = folder_revisions(path)?;
        let checkpoints = path.join("checkpoints");
        // A Trainer output_dir with the final model beside its checkpoint-N folders
        // is that model unless a series is asked for.
        let is_model = path.join("config.json").is_file();
        if is_model && revisions.is_none() {
            return Ok(None);
        }
        if !own.is_empty() {
            own
        } else if revisions.is_some() && checkpoints.is_dir() {
            folder_revisions(&checkpoints)?
        } else if revisions.is_some() {
            return Err(ImportErrorKind::NotFound(
                "--revisions needs a hub id in the cache or a folder of checkpoints named \
                 with their step (step1000, checkpoint-1000, …); this folder has none"
                    .into(),
            )
            .at(path));
        } else {
            return Ok(None);
        }
    } else if let Some(wanted) = revisions {
        if path.exists() || model.contains('@') || !is_hub_id(model) {
            return Err(ImportErrorKind::NotFound(format!(
                "--revisions {wanted} needs a hub id (without @revision) or a folder of checkpoints"
            ))
            .at(path));
        }
        cache_revisions(&cache_repo_dir(model, cache_root)?)?
    } else {
        return Ok(None);
    };
    let mut chosen = match revisions.map(str::trim) {
        None | Some("all") => found,
        Some(list) => pick(found, list, path)?,
    };
    chosen.sort_by(|a, b| (a.step, &a.name).cmp(&(b.step, &b.name)));
    if let Some(w) = chosen.windows(2).find(|w| w[0].step == w[1].step) {
        return Err(ImportErrorKind::NotFound(format!(
            "revisions `{}` and `{}` carry the same step {}; name one with --revisions",
            w[0].name, w[1].name, w[0].step
        ))
        .at(path));
    }
    if chosen.is_empty() {
        return Err(ImportErrorKind::NotFound("no revision named with a step".into()).at(path));
    }
    Ok(Some(chosen))
}

/// The revisions of `list` (names or step numbers, comma-separated) among `found`.
fn pick(found: Vec<Revision>, list: &str, at: &Path) -> Result<Vec<Revision>, ImportError> {
    let mut out: Vec<Revision> = Vec::new();
    for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let step = item.parse::<u64>().ok().or_else(|| step_of(item));
        let hit = found
            .iter()
            .find(|r| r.name == item)
            .or_else(|| found.iter().find(|r| Some(r.step) == step));
        let rev = match (hit, step) {
            (Some(r), _) => r.clone(),
            (None, Some(step)) => Revision {
                name: item.to_string(),
                step,
                location: Err("no such revision".into()),
            },
            (None, None) => {
                return Err(ImportErrorKind::NotFound(format!(
                    "--revisions: `{item}` is neither a revision name with a step nor a step"
                ))
                .at(at))
            }
        };
        if !out.iter().any(|r| r.name == rev.name) {
            out.push(rev);
        }
    }
    Ok(out)
}

/// The cache folder of hub id `repo` (`models--org--name`).
fn cache_repo_dir(repo: &str, cache_root: Option<&Path>) -> Result<PathBuf, ImportError> {
    let Some(root) = cache_root else {
        return Err(ImportErrorKind::NotFound(
            "not a local path, and no Hugging Face cache folder is known (set HF_HOME)".into(),
        )
        .at(repo));
    };
    let dir = root.join(format!("models--{}", repo.replace('/', "--")));
    if !dir.is_dir() {
        return Err(ImportErrorKind::NotFound(format!(
            "not in the Hugging Face cache {} (sinkscope resolves hub ids offline; download \
             the revisions first, e.g. `huggingface-cli download {repo} --revision step1000`)",
            root.display()
        ))
        .at(repo));
    }
    Ok(dir)
}

/// Every `refs/<name>` of a cached repository whose name carries a step.
fn cache_revisions(repo_dir: &Path) -> Result<Vec<Revision>, ImportError> {
    let refs = repo_dir.join("refs");
    let mut out = Vec::new();
    let entries = match fs::read_dir(&refs) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(ImportErrorKind::Io(e).at(&refs)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| ImportErrorKind::Io(e).at(&refs))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(step) = step_of(&name) else { continue };
        if !entry.path().is_file() {
            continue;
        }
        let location = snapshot_dir(repo_dir, &name).map_err(|e| e.to_string());
        out.push(Revision {
            name,
            step,
            location,
        });
    }
    Ok(out)
}

/// The subfolders of `dir` named with a step.
fn folder_revisions(dir: &Path) -> Result<Vec<Revision>, ImportError> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| ImportErrorKind::Io(e).at(dir))? {
        let entry = entry.map_err(|e| ImportErrorKind::Io(e).at(dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if let (Some(step), true) = (step_of(&name), entry.path().is_dir()) {
            out.push(Revision {
                name,
                step,
                location: Ok(entry.path()),
            });
        }
    }
    Ok(out)
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

    #[test]
    fn steps_are_read_from_checkpoint_names() {
        for (name, step) in [
            ("step1000", Some(1000)),
            ("step-00000300", Some(300)),
            ("global_step42", Some(42)),
            ("checkpoint-1000", Some(1000)),
            ("stage1-step1000-tokens4B", Some(1000)),
            ("step_7", Some(7)),
            ("Step20", Some(20)),
            ("main", None),
            ("steps", None),
            (".tmp-step-00000300", None),
        ] {
            assert_eq!(step_of(name), step, "{name}");
        }
    }

    #[test]
    fn a_checkpoint_folder_is_a_series_in_step_order() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["step100", "step20", "step3", ".tmp-step-9", "logs"] {
            fs::create_dir(dir.path().join(name)).unwrap();
        }
        let model = dir.path().to_str().unwrap();
        let names = |revs: Vec<Revision>| revs.into_iter().map(|r| r.name).collect::<Vec<_>>();
        let all = series_in(model, None, None).unwrap().unwrap();
        assert_eq!(names(all), ["step3", "step20", "step100"]);
        let some = series_in(model, Some("100,step3,55"), None)
            .unwrap()
            .unwrap();
        assert_eq!(some[1].location, Err("no such revision".into()));
        assert_eq!(names(some), ["step3", "55", "step100"]);
        assert!(series_in(model, Some("main"), None).is_err());
        fs::create_dir(dir.path().join("checkpoint-20")).unwrap();
        let e = series_in(model, None, None).unwrap_err().to_string();
        assert!(e.contains("same step 20"), "{e}");
        // a model folder with checkpoints in it is the model, unless asked
        fs::write(dir.path().join("config.json"), "{}").unwrap();
        assert_eq!(series_in(model, None, None).unwrap(), None);
        assert_eq!(series_in(model, Some("3"), None).unwrap().unwrap().len(), 1);
        // a model folder is not a series
        let plain = tempfile::tempdir().unwrap();
        let plain = plain.path().to_str().unwrap();
        assert_eq!(series_in(plain, None, None).unwrap(), None);
        assert!(series_in(plain, Some("all"), None).is_err());
    }

    #[test]
    fn cached_revisions_follow_refs_and_name_missing_snapshots() {
        let root = tempfile::tempdir().unwrap();
        let repo = root.path().join("models--org--tiny");
        fs::create_dir_all(repo.join("refs")).unwrap();
        fs::create_dir_all(repo.join("snapshots/aaa")).unwrap();
        for (name, hash) in [
            ("step100", "aaa"),
            ("step20", "aaa"),
            ("step5", "bbb"),
            ("main", "aaa"),
        ] {
            fs::write(repo.join("refs").join(name), hash).unwrap();
        }
        let revs = series_in("org/tiny", Some("all"), Some(root.path()))
            .unwrap()
            .unwrap();
        let steps: Vec<u64> = revs.iter().map(|r| r.step).collect();
        assert_eq!(steps, [5, 20, 100]);
        assert!(revs[0].location.as_ref().unwrap_err().contains("bbb"));
        assert_eq!(revs[2].location, Ok(repo.join("snapshots/aaa")));
        assert_eq!(
            series_in("org/tiny", None, Some(root.path())).unwrap(),
            None
        );
        assert!(series_in("org/other", Some("all"), Some(root.path())).is_err());
    }
}
