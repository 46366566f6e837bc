//! Integration tests, in one binary so burn links once.

mod analyze;
mod cli;
mod common;
mod families;
mod hooks;
mod import;
mod model;
mod published;
mod reliability;
mod reliability_more;
mod report;
mod scale;
mod shards;
mod tensorboard;
mod training;
