//! Integration tests, in one binary so burn links once.

mod cli;
mod common;
mod model;
mod training;
