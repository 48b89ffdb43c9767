//! `[study]` (name, output folder, split seed, seeds), `[dump]` and
//! `[slurm]`, and the id of one run of a study.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::PathBuf;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StudySection {
    /// Names the study; also the default output folder `studies/<name>`.
    pub name: String,
    /// Where the study directory goes (relative to the working directory).
    /// Not part of the study's identity: a study folder can be moved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_dir: Option<PathBuf>,
    /// Seeds the train/test split: the same split for every run of the study.
    #[serde(default)]
    pub split_seed: u64,
    /// One fine-tuning run per backbone and seed (docs/SPEC.md: seeds 0–19).
    #[serde(default = "default_seeds")]
    pub seeds: Vec<u64>,
}

impl StudySection {
    pub(super) fn validate(&self) -> Result<(), (String, String)> {
        super::check_name("study.name", &self.name)?;
        if self.seeds.is_empty() {
            return Err(("study.seeds".into(), "needs at least one seed".into()));
        }
        let mut seeds = self.seeds.clone();
        seeds.sort_unstable();
        if let Some(w) = seeds.windows(2).find(|w| w[0] == w[1]) {
            return Err(("study.seeds".into(), format!("seed {} appears twice", w[0])));
        }
        Ok(())
    }
}

fn default_seeds() -> Vec<u64> {
    (0..20).collect()
}

/// One fine-tuning run: a medical data set × a backbone × a method × a
/// seed. Its folder is `runs/<dataset>/<backbone>/<method>/seed-<NN>/`
/// ([`crate::StudyDir::run_dir`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RunId {
    pub dataset: String,
    pub backbone: String,
    pub method: String,
    pub seed: u64,
}

impl fmt::Display for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{}/{} seed {}",
            self.dataset, self.backbone, self.method, self.seed
        )
    }
}

/// Which activations are written per epoch (disk use grows with both).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct DumpConfig {
    /// Layer indices (0 = embedding, 1..=L blocks); absent = all layers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub layers: Option<Vec<usize>>,
    /// Epochs (0 = pre-trained); absent = every epoch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub epochs: Option<Vec<u32>>,
}

/// What each Slurm job asks for (`sbatch` options).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SlurmConfig {
    /// `--partition`; the cluster's default when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partition: Option<String>,
    /// `--account`; none when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    /// `--time` of one run (and of the job that makes tables and figures).
    pub time: String,
    /// `--cpus-per-task`.
    pub cpus_per_task: u32,
    /// `--mem`, e.g. `16G`.
    pub mem: String,
    /// GPUs per run (`--gres=gpu:N`); 0 for none.
    pub gpus: u32,
}

impl Default for SlurmConfig {
    fn default() -> Self {
        SlurmConfig {
            partition: None,
            account: None,
            time: "12:00:00".into(),
            cpus_per_task: 4,
            mem: "16G".into(),
            gpus: 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::tests::{MINIMAL, parse};

    #[test]
    fn seeds_are_twenty_by_default_and_each_is_given_once() {
        assert_eq!(
            parse(MINIMAL).unwrap().study.seeds,
            (0..20).collect::<Vec<_>>()
        );
        for (seeds, says) in [
            ("[]", "at least one seed"),
            ("[0, 1, 0]", "seed 0 appears twice"),
        ] {
            let text = MINIMAL.replace(
                "name = \"t\"\n",
                &format!("name = \"t\"\nseeds = {seeds}\n"),
            );
            let msg = parse(&text).unwrap_err().to_string();
            assert!(msg.contains("study.seeds") && msg.contains(says), "{msg}");
        }
    }

    #[test]
    fn the_study_name_becomes_a_folder_name() {
        let msg = parse(&MINIMAL.replace("name = \"t\"", "name = \"a b\""))
            .unwrap_err()
            .to_string();
        assert!(msg.contains("study.name"), "{msg}");
    }
}
