//! Integration tests, in one binary so burn links once.

mod analyze;
mod cli;
mod common;
mod hooks;
mod import;
mod model;
mod report;
mod scale;
mod training;
