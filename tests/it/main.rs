//! Integration tests, in one binary so burn links once.

mod analyze;
mod bigload;
mod cli;
mod common;
mod docs;
mod families;
mod hooks;
mod import;
mod model;
mod published;
mod reliability;
mod reliability_more;
mod report;
mod scale;
mod series;
mod shards;
mod taps;
mod tensorboard;
mod training;
