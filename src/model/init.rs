//! Seeded parameter initialisation on the host.
//!
//! Weights are drawn from our own RNG and uploaded, rather than from the backend's
//! global RNG, so a seed gives the same model on any backend and in any thread
//! (the global RNG is shared by everything running in the process).

use burn::module::Param;
use burn::nn::{Embedding, Linear};
use burn::prelude::*;
use rand::rngs::StdRng;
use rand::SeedableRng;
use rand_distr::{Distribution, Normal};

/// A seeded source of fresh parameters on one device.
pub struct Init<'a, B: Backend> {
    rng: StdRng,
    /// Where the parameters live.
    pub device: &'a B::Device,
}

impl<'a, B: Backend> Init<'a, B> {
    /// Parameters drawn from `seed`.
    pub fn new(seed: u64, device: &'a B::Device) -> Self {
        Self {
            rng: StdRng::seed_from_u64(seed),
            device,
        }
    }

    /// N(0, std²) entries.
    pub fn normal<const D: usize>(&mut self, shape: [usize; D], std: f64) -> Tensor<B, D> {
        let n: usize = shape.iter().product();
        let dist = Normal::new(0.0f32, std as f32)
            .unwrap_or_else(|_| Normal::new(0.0, 0.0).expect("zero std"));
        let data: Vec<f32> = (0..n).map(|_| dist.sample(&mut self.rng)).collect();
        Tensor::from_data(TensorData::new(data, shape), self.device)
    }

    /// A `Linear` `d_in → d_out` (burn layout `[d_in, d_out]`): weights N(0, std²),
    /// bias zero, as GPT-2 initialises.
    pub fn linear(&mut self, d_in: usize, d_out: usize, bias: bool, std: f64) -> Linear<B> {
        Linear {
            weight: Param::from_tensor(self.normal([d_in, d_out], std)),
            bias: bias.then(|| Param::from_tensor(Tensor::zeros([d_out], self.device))),
        }
    }

    /// An `Embedding` table `[rows, d]` with N(0, std²) entries.
    pub fn embedding(&mut self, rows: usize, d: usize, std: f64) -> Embedding<B> {
        Embedding {
            weight: Param::from_tensor(self.normal([rows, d], std)),
        }
    }
}
