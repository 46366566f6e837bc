//! Training from scratch: recipes, data, the loop, checkpoints.

pub mod adamw;
mod cadence;
pub mod checkpoint;
pub mod data;
pub mod device;
pub mod grads;
pub mod history;
pub mod lock;
pub mod loss;
pub mod recipe;
pub mod schedule;
mod session;
pub mod shards;
pub mod start;
pub mod synthetic;
pub mod tokenize;
pub mod trainer;
pub mod vocab;

pub use recipe::{Recipe, Run};
pub use start::Resume;
pub use trainer::{train, train_on_devices, NoEvents, StepInfo, TrainEvents, TrainOutcome};
