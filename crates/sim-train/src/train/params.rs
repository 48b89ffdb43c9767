//! A module's float parameters as plain tensors: flattened in visiting
//! order (L2-SP's anchor and penalty), or mixed between two modules of the
//! same structure (WiSE-FT's path, DINO's momentum teacher); and a
//! module's share of a step's gradients (an optimiser per part).

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::prelude::*;
use burn::tensor::backend::AutodiffBackend;

/// Collects every float parameter of a module, flattened.
struct Flatten<B: Backend>(Vec<Tensor<B, 1>>);

impl<B: Backend> ModuleVisitor<B> for Flatten<B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let tensor = param.val();
        let n = tensor.shape().num_elements();
        self.0.push(tensor.reshape([n]));
    }
}

/// Every float parameter of `module`, flattened, in the order
/// [`Module::visit`] meets them.
pub fn flatten<B: Backend, M: Module<B>>(module: &M) -> Vec<Tensor<B, 1>> {
    let mut visitor = Flatten(Vec::new());
    module.visit(&mut visitor);
    visitor.0
}

/// Every float parameter's values of `module` as bits, in visiting order:
/// what two modules are compared by to be the same to the bit.
pub fn bits<B: Backend, M: Module<B>>(module: &M) -> Vec<u32> {
    flatten(module)
        .into_iter()
        .flat_map(|t| {
            t.into_data()
                .convert::<f32>()
                .to_vec::<f32>()
                .expect("values converted to f32 read back as f32")
        })
        .map(f32::to_bits)
        .collect()
}

/// Replaces each float parameter p, in visiting order, by (1 − α)p₀ + αp.
struct Towards<B: Backend> {
    start: std::vec::IntoIter<Tensor<B, 1>>,
    alpha: f64,
}

impl<B: Backend> ModuleMapper<B> for Towards<B> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let (id, end, mapper) = param.consume();
        let start = self
            .start
            .next()
            .expect("the two modules have the same parameters")
            .reshape(end.shape());
        Param::from_mapped_value(id, start * (1.0 - self.alpha) + end * self.alpha, mapper)
    }
}

/// `end` with every float parameter p moved to (1 − α)p₀ + αp, p₀ the
/// same parameter of `start` (two modules of the same structure). Also
/// DINO's momentum teacher: `mix(student, teacher, m)`.
pub fn mix<B: Backend, M: Module<B>>(start: &M, end: M, alpha: f64) -> M {
    let mut towards = Towards {
        start: flatten(start).into_iter(),
        alpha,
    };
    let mixed = end.map(&mut towards);
    assert!(
        towards.start.next().is_none(),
        "the two modules have the same parameters"
    );
    mixed
}

/// The gradients of `module`'s parameters, moved out of `grads`.
pub fn take_grads<B: AutodiffBackend, M: Module<B>>(
    grads: &mut GradientsParams,
    module: &M,
) -> GradientsParams {
    struct Take<'a> {
        from: &'a mut GradientsParams,
        to: GradientsParams,
    }
    impl<B: AutodiffBackend> ModuleVisitor<B> for Take<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            if let Some(grad) = self.from.remove::<B::InnerBackend, D>(param.id) {
                self.to.register::<B::InnerBackend, D>(param.id, grad);
            }
        }
    }
    let mut visitor = Take {
        from: grads,
        to: GradientsParams::new(),
    };
    module.visit(&mut visitor);
    visitor.to
}
