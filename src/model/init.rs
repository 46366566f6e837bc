//! Parameter initialisation: seeded on the host for training, or lazy for loading.
//!
//! Training weights are drawn from our own RNG and uploaded, rather than from the
//! backend's global RNG, so a seed gives the same model on any backend and in any
//! thread (the global RNG is shared by everything in the process). A *skeleton*
//! declares the same parameters lazily (burn's `Initializer` allocates a parameter
//! only when it is first read), so a loader that fills every parameter never pays
//! for a random model first: importing keeps one copy of the weights in memory.

use burn::module::{Initializer, Param};
use burn::nn::{Embedding, Linear};
use burn::prelude::*;
use rand::rngs::StdRng;
use rand::SeedableRng;
use rand_distr::{Distribution, Normal};

/// A source of fresh parameters on one device.
#[derive(Debug)]
pub struct Init<'a, B: Backend> {
    /// None for a skeleton.
    rng: Option<StdRng>,
    /// Where the parameters live.
    pub device: &'a B::Device,
}

impl<'a, B: Backend> Init<'a, B> {
    /// Parameters drawn from `seed`.
    pub fn seeded(seed: u64, device: &'a B::Device) -> Self {
        Self {
            rng: Some(StdRng::seed_from_u64(seed)),
            device,
        }
    }

    /// Lazily declared parameters, to be filled by a loader (zeros if read unfilled).
    pub fn skeleton(device: &'a B::Device) -> Self {
        Self { rng: None, device }
    }

    /// A parameter with N(0, std²) entries (seeded) or declared lazily (skeleton).
    pub fn normal<const D: usize>(&mut self, shape: [usize; D], std: f64) -> Param<Tensor<B, D>> {
        let Some(rng) = self.rng.as_mut() else {
            return Initializer::Zeros.init(shape, self.device);
        };
        let n: usize = shape.iter().product();
        let data: Vec<f32> = match Normal::new(0.0f32, std as f32) {
            Ok(dist) => (0..n).map(|_| dist.sample(rng)).collect(),
            Err(_) => vec![0.0; n],
        };
        Param::from_tensor(Tensor::from_data(TensorData::new(data, shape), self.device))
    }

    /// A constant parameter (norm weights and biases): declared lazily in a skeleton.
    pub fn constant<const D: usize>(
        &mut self,
        shape: [usize; D],
        value: f64,
    ) -> Param<Tensor<B, D>> {
        match self.rng {
            Some(_) => Param::from_tensor(Tensor::full(shape, value, self.device)),
            None => Initializer::Constant { value }.init(shape, self.device),
        }
    }

    /// A `Linear` `d_in → d_out` (burn layout `[d_in, d_out]`): weights N(0, std²),
    /// bias zero, as GPT-2 initialises.
    pub fn linear(&mut self, d_in: usize, d_out: usize, bias: bool, std: f64) -> Linear<B> {
        Linear {
            weight: self.normal([d_in, d_out], std),
            bias: bias.then(|| self.constant([d_out], 0.0)),
        }
    }

    /// An `Embedding` table `[rows, d]` with N(0, std²) entries.
    pub fn embedding(&mut self, rows: usize, d: usize, std: f64) -> Embedding<B> {
        Embedding {
            weight: self.normal([rows, d], std),
        }
    }
}
