use burn::backend::{Autodiff, Flex};
use burn::prelude::*;
fn main() {
    let d = Default::default();
    let t = Tensor::<Autodiff<Flex>, 2>::ones([2, 2], &d);
    println!("{}", t.sum().into_scalar());
    let _ = faer::Mat::<f64>::identity(2, 2).singular_values();
}
