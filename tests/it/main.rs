//! Integration tests, in one binary so burn links once.

mod cli;
mod common;
mod hooks;
mod import;
mod model;
mod training;
