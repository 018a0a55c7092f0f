"""PixelCNN++ (Salimans et al. 2017): exact-likelihood autoregressive images with a discretized
logistic mixture per pixel.

    p(x) = prod_i p(x_i | x_{<i}),   i over pixels in raster order,

where each p(x_i | x_{<i}) is a mixture of `nr_logistic_mix` discretized logistics over the
whole pixel; within a pixel the G and B means depend linearly on the pixel's own R (and G)
(paper Sec. 2.2; `jaxgen.distributions.discretized_mix_logistic_log_prob`). The network
(down-shifted / down-right-shifted convs, gated resnets, 3 resolutions with long skips,
dropout, weight norm) is jaxgen/models/pixelcnnpp.py.

Data must be discrete and not dequantized: each sub-pixel takes one of `levels` values
(DataInfo.levels), x = k / (levels - 1). The network sees x rescaled to [-1, 1].

`nll` is the exact -log p(x) in nats (dropout off); the nll evaluator turns it into bits/dim.
Training minimises the same NLL with dropout on (a 'dropout' key from
`step_rng(state)`), so the training loss is a noisy upper estimate of the model's NLL.

Class-conditional when `model.num_classes` > 0: every gated resnet block adds a linear map of
the one-hot label to its gate pre-activations; training and `nll` read batch['label'] and `nll`
is -log p(x|y); `sample(params, rng, num, label=None)` generates the classes `label` (int32
[num]), by default jnp.arange(num) % num_classes.

Sampling runs compiled `jax.lax.fori_loop`s over the H * W pixels in raster order; step t runs
the network and draws pixel t's channels jointly from its mixture (key fold_in(rng, t)), exactly
on the data grid (the reference code returns continuous draws instead). With
`method.sample_reuse` (default True) it skips the work the architecture allows: an output at
row r depends on no row below r, at every resolution, so the network runs on the top crop of
the image that ends at the next multiple of 4 rows after r (4: the two stride-2 down-samplings
need a height divisible by 4), one loop per crop height. That computes 16 of 28 rows on
average for 28x28 images (18 of 32 for 32x32) and gives the same samples as the plain loop
(`sample_reuse=False`), which runs the whole image at every step. The down/up-sampling path
mixes every column of the rows above into each output, so no finer, row-local split exists
without per-layer activation caches (Ramachandran et al. 2017).

Config keys:
  model.nr_resnet        gated resnet blocks per stage and stream (paper: 5)
  model.nr_filters       feature width F (paper: 160)
  model.nr_logistic_mix  mixture components M (paper: 10)
  model.dropout          dropout rate inside the blocks (paper: 0.5)
  model.weight_norm      weight-normalised convs (default True, like the reference code)
  model.num_classes      > 0: class-conditional on the dataset's labels (must equal its number of
                         classes); 0 or absent: unconditional
  method.sample_reuse    True (default): the sampler runs the network on top crops (above);
                         False: on the whole image at every pixel
"""

ROW_BUCKET = 4  # crop heights are multiples of this: the network down-samples twice by 2

import math

import jax
import jax.numpy as jnp

from jaxgen import distributions
from jaxgen.core.optim import make_optimizer
from jaxgen.core.state import step_rng
from jaxgen.errors import ConfigError
from jaxgen.methods import register
from jaxgen.methods.base import Method, require_discrete_images
from jaxgen.methods.conditioning import ClassConditional
from jaxgen.models.pixelcnnpp import PixelCNNPP


@register('pixelcnnpp')
class PixelCNNPPMethod(ClassConditional, Method):
  """PixelCNN++ with a discretized logistic mixture likelihood; see the module docstring."""

  has_likelihood = True
  family_name = 'PixelCNN++'

  def __init__(self, config, info):
    super().__init__(config, info)
    m = config.model
    self.shape = tuple(info.shape)
    self._init_conditioning()
    self._validate()
    self.levels = int(info.levels)
    self.sample_reuse = bool(config.method.get('sample_reuse', True))
    self.num_mix = int(m.nr_logistic_mix)
    self.n_out = distributions.mix_logistic_num_params(self.shape[-1], self.num_mix)
    self.net = PixelCNNPP(nr_resnet=int(m.nr_resnet), nr_filters=int(m.nr_filters), n_out=self.n_out,
                          dropout=float(m.get('dropout', 0.0)), weight_norm=bool(m.get('weight_norm', True)))
    self.tx = make_optimizer(config.optim, config.train.steps)

  def _validate(self):
    m, info = self.config.model, self.info
    require_discrete_images(info, 'PixelCNN++')
    height, width, _ = self.shape
    if height % 4 or width % 4:
      raise ConfigError(f'PixelCNN++ down-samples twice by 2, so H and W must be divisible by 4; dataset '
                        f'{info.name!r} has shape {self.shape}.')
    for key in ('nr_resnet', 'nr_filters', 'nr_logistic_mix'):
      if key not in m or int(m[key]) <= 0:
        raise ConfigError(f'config.model.{key} must be a positive integer, got {m.get(key)}.')
    if not 0.0 <= float(m.get('dropout', 0.0)) < 1.0:
      raise ConfigError(f"config.model.dropout must be in [0, 1), got {m.get('dropout')}.")

  # ---- network --------------------------------------------------------------------------------

  def logits(self, params, x, label=None, train=False, rng=None):
    """Mixture parameters for images x [B, H, W, C] in [0, 1]: [B, H, W, n_out].

    Layout: `distributions.discretized_mix_logistic_log_prob`. The output at pixel i
    depends only on pixels before i. `train=True` applies dropout with key `rng`.
    """
    rngs = {'dropout': rng} if train else None
    return self.net.apply({'params': params['pixelcnnpp']}, 2.0 * x - 1.0, self._onehot(label, x.shape[0]),
                          train, rngs=rngs)

  def pixel_log_prob(self, params, x, label=None, train=False, rng=None):
    """log p(x_i | x_<i[, y]) of every pixel: [B, H, W]."""
    out = self.logits(params, x, label, train, rng)
    return distributions.discretized_mix_logistic_log_prob(out, x, self.levels, self.num_mix)

  def log_prob(self, params, x, label=None, train=False, rng=None):
    """log p(x[|y]) per example, in nats: [B] (exact when train=False)."""
    lp = self.pixel_log_prob(params, x, label, train, rng)
    return lp.reshape(lp.shape[0], -1).sum(-1)

  # ---- the Method contract --------------------------------------------------------------------

  def init(self, rng, batch):
    k_net, k_state = jax.random.split(rng)
    x = batch['x'][:1]
    onehot = jnp.zeros((1, self.num_classes), jnp.float32) if self.conditional else None
    params = {'pixelcnnpp': self.net.init(k_net, 2.0 * x - 1.0, onehot, False)['params']}
    return self.initial_state(params, k_state)

  def train_step(self, state, batch):
    """One optimiser step on the mean NLL with dropout (key: step_rng(state))."""
    label = self._batch_label(batch)
    dims = math.prod(self.shape)
    key = step_rng(state)

    def loss_fn(params):
      nll = -self.log_prob(params, batch['x'], label, train=True, rng=key)
      return jnp.mean(nll), nll

    (loss, nll), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    new_state = self.apply_gradients(state, grads)
    metrics = {'loss': loss, 'nll_bpd': jnp.mean(nll) / (dims * math.log(2))}
    return new_state, metrics

  def nll(self, params, batch, rng):
    """Exact -log p(x) (or -log p(x|y)) per example in nats, dropout off; `rng` is unused."""
    return -self.log_prob(params, batch['x'], self._batch_label(batch))

  def sample(self, params, rng, num, label=None):
    """Ancestral samples [num, H, W, C] on the data grid k / (levels - 1).

    Pixels in raster order, all channels of pixel t drawn jointly from its mixture with
    key fold_in(rng, t), the network's dropout off. With `sample_reuse`, the pixels of
    rows [top, top + ROW_BUCKET) are drawn by one `jax.lax.fori_loop` that runs the
    network on rows [0, top + ROW_BUCKET) only (module docstring); else one loop over
    every pixel runs it on the whole image.
    """
    label = self.sample_labels(num, label)
    height, width, chans = self.shape

    def body_on_rows(rows):
      def body(t, x):
        r, c = jnp.divmod(t, width)
        out = self.logits(params, x[:, :rows], label)
        out_NP = jax.lax.dynamic_index_in_dim(
            jax.lax.dynamic_index_in_dim(out, r, axis=1, keepdims=False), c, axis=1, keepdims=False)
        value = distributions.discretized_mix_logistic_sample(jax.random.fold_in(rng, t), out_NP, self.levels,
                                                              self.num_mix, chans)
        return x.at[:, r, c, :].set(value.astype(x.dtype))
      return body

    x = jnp.zeros((num, height, width, chans), jnp.float32)
    if not self.sample_reuse:
      return jax.lax.fori_loop(0, height * width, body_on_rows(height), x)
    for top in range(0, height, ROW_BUCKET):
      rows = top + ROW_BUCKET
      x = jax.lax.fori_loop(top * width, rows * width, body_on_rows(rows), x)
    return x
