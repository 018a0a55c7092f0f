"""PixelCNN and Gated PixelCNN: exact-likelihood autoregressive image models.

    p(x) = prod_i prod_k p(x_{i,k} | x_{<i}, x_{i,<k})

over pixels i in raster order and, within a pixel, channels k in R -> G -> B
order (van den Oord et al. 2016, "Pixel Recurrent Neural Networks"; and
"Conditional Image Generation with PixelCNN Decoders" for the gated variant).
The networks live in jaxgen/models/pixelcnn.py.

Data must be discrete and not dequantized: each sub-pixel takes one of
`levels` values (DataInfo.levels), x = k / (levels - 1).

  levels == 2   (binarized data) one Bernoulli logit per sub-pixel.
  levels > 2    a `levels`-way softmax per sub-pixel (256-way for 8-bit images).

`nll` is the exact -log p(x) in nats (the sum of the categorical cross-entropies
of every sub-pixel); the nll evaluator turns it into bits/dim. The network sees
x rescaled to [-1, 1].

Class-conditional when `model.num_classes` > 0: every layer gets a bias from the
one-hot label (Gated PixelCNN paper, Eq. 4); training and `nll` read
batch['label'] and `nll` is -log p(x|y); `sample(params, rng, num, label=None)`
generates the classes `label` (int32 [num]), by default jnp.arange(num) % num_classes.

Sampling is one compiled `jax.lax.fori_loop` over the H * W * C sub-pixels in
raster order (channels innermost), drawing sub-pixel t with key fold_in(rng, t).
With `method.sample_reuse` (default True) it re-uses work where the architecture
allows, and gives the same samples as the plain loop that re-runs the whole
network H * W * C times:

  'gated'     the vertical stack (the `context` of every row, a function of the rows
              above) runs once per row; each sub-pixel then runs only the horizontal
              stack and head on its own row: H full passes plus H*W*C one-row passes.
  'rowlstm'   likewise: the LSTM states of the row above are the context.
  'pixelcnn'  masked convs never look down and reach only `rows_above` rows up, so each
              step runs the network on that window of rows instead of the whole image.

Config keys:
  model.arch             'pixelcnn' (original: mask-A conv, residual mask-B blocks; has a blind spot)
                         | 'gated' (vertical + horizontal stacks, tanh * sigmoid gates; no blind spot)
                         | 'rowlstm' (PixelRNN Row LSTM, models/pixelrnn.py: mask-A conv, residual Row LSTM
                         layers scanned over rows; triangular receptive field)
  model.channels         hidden width F (divisible by the image's channel count)
  model.num_layers       residual blocks ('pixelcnn') / gated layers after the first ('gated')
  model.first_kernel     size of the first (mask-A) conv, e.g. 7
  model.kernel           size of the later (mask-B) convs, e.g. 3
  model.output_channels  width of the hidden 1x1 output conv
  method.sample_reuse    True (default): the work-reusing samplers above; False: the plain loop
  model.num_classes      > 0: class-conditional on the dataset's labels (must equal its number of
                         classes); 0 or absent: unconditional
"""

import math

import jax
import jax.numpy as jnp

from jaxgen import distributions
from jaxgen.core.optim import make_optimizer
from jaxgen.errors import ConfigError
from jaxgen.methods import register
from jaxgen.methods.base import Method, require_discrete_images
from jaxgen.methods.conditioning import ClassConditional
from jaxgen.models.pixelcnn import ARCHS


@register('pixelcnn')
class PixelCNNMethod(ClassConditional, Method):
  """Autoregressive image model with masked convolutions; see the module docstring."""

  has_likelihood = True
  family_name = 'PixelCNN'

  def __init__(self, config, info):
    super().__init__(config, info)
    m = config.model
    self.shape = tuple(info.shape)
    self._init_conditioning()
    self._validate()
    self.levels = int(info.levels)
    self.binary = self.levels == 2
    self.n_out = 1 if self.binary else self.levels
    self.net = ARCHS[m.arch](
        channels=int(m.channels), num_layers=int(m.num_layers), first_kernel=int(m.get('first_kernel', 7)),
        kernel=int(m.get('kernel', 3)), output_channels=int(m.get('output_channels', m.channels)),
        n_out=self.n_out, data_channels=self.shape[-1])
    self.sample_reuse = bool(config.method.get('sample_reuse', True))
    self.tx = make_optimizer(config.optim, config.train.steps)

  def _validate(self):
    m, info = self.config.model, self.info
    if m.arch not in ARCHS:
      raise ConfigError(f"config.model.arch={m.arch!r} is not one of {', '.join(repr(a) for a in ARCHS)}.")
    require_discrete_images(info, 'PixelCNN')
    c = self.shape[-1]
    for key in ('channels', 'output_channels'):
      width = int(m.get(key, m.channels))
      if width <= 0 or width % c:
        raise ConfigError(f'config.model.{key}={width} must be a positive multiple of the image channels ({c}): '
                          'channel masking splits the features into R/G/B groups.')

  # ---- network --------------------------------------------------------------------------------

  def logits(self, params, x, label=None):
    """Network outputs for images x [B, H, W, C] in [0, 1]: [B, H, W, C, n_out].

    n_out = 1 (a Bernoulli logit) for binary data, else `levels` softmax logits.
    Output (i, k) depends only on pixels before i and channels < k of pixel i.
    """
    out = self.net.apply({'params': params['pixelcnn']}, 2.0 * x - 1.0, self._onehot(label, x.shape[0]))
    return self._split_outputs(out)

  def _split_outputs(self, out):
    """Network features [B, R, W, n_out * C] -> logits [B, R, W, C, n_out]."""
    out = out.reshape(*out.shape[:3], self.n_out, self.shape[-1])
    return jnp.swapaxes(out, -1, -2)

  def _log_prob(self, logits, x):
    """log p of every sub-pixel of x: [B, H, W, C]."""
    if self.binary:
      return distributions.bernoulli_log_prob(logits[..., 0], x)
    index = jnp.round(x * (self.levels - 1)).astype(jnp.int32)
    log_p = jax.nn.log_softmax(logits, axis=-1)
    return jnp.take_along_axis(log_p, index[..., None], axis=-1)[..., 0]

  def pixel_log_prob(self, params, x, label=None):
    """log p(x_{i,k} | x_{<i}, x_{i,<k}[, y]) of every sub-pixel: [B, H, W, C]."""
    return self._log_prob(self.logits(params, x, label), x)

  def log_prob(self, params, x, label=None):
    """Exact log p(x[|y]) per example, in nats: [B]."""
    lp = self.pixel_log_prob(params, x, label)
    return lp.reshape(lp.shape[0], -1).sum(-1)

  # ---- the Method contract --------------------------------------------------------------------

  def init(self, rng, batch):
    k_net, k_state = jax.random.split(rng)
    x = batch['x'][:1]
    onehot = jnp.zeros((1, self.num_classes), jnp.float32) if self.conditional else None
    params = {'pixelcnn': self.net.init(k_net, x, onehot)['params']}
    return self.initial_state(params, k_state)

  def train_step(self, state, batch):
    """One Adam step on the mean exact NLL (no randomness: the loss is deterministic)."""
    label = self._batch_label(batch)
    dims = math.prod(self.shape)

    def loss_fn(params):
      nll = -self.log_prob(params, batch['x'], label)
      return jnp.mean(nll), nll

    (loss, nll), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    new_state = self.apply_gradients(state, grads)
    metrics = {'loss': loss, 'nll_bpd': jnp.mean(nll) / (dims * math.log(2))}
    return new_state, metrics

  def nll(self, params, batch, rng):
    """Exact -log p(x) (or -log p(x|y)) per example in nats; `rng` is unused."""
    return -self.log_prob(params, batch['x'], self._batch_label(batch))

  def sample(self, params, rng, num, label=None):
    """Ancestral samples [num, H, W, C] on the data grid k / (levels - 1).

    Sub-pixel t (raster order, channels innermost) is drawn from its conditional with
    key fold_in(rng, t), inside one compiled `jax.lax.fori_loop`; see the module
    docstring for how `method.sample_reuse` avoids re-running the whole network. A
    conditional model given no label generates the cycle jnp.arange(num) % num_classes.
    """
    label = self.sample_labels(num, label)
    onehot = None if label is None else jax.nn.one_hot(label, self.num_classes, dtype=jnp.float32)
    x0 = jnp.zeros((num,) + self.shape, jnp.float32)
    if self.sample_reuse and hasattr(self.net, 'context'):
      return self._sample_by_rows(params, rng, x0, onehot)
    height, width, chans = self.shape
    window = height
    if self.sample_reuse and hasattr(self.net, 'rows_above'):
      window = min(height, self.net.rows_above() + 1)

    def body(t, x):
      r, rest = jnp.divmod(t, width * chans)
      c, k = jnp.divmod(rest, chans)
      # Rows [start, start + window) hold row r and every row its outputs depend on.
      start = jnp.clip(r - (window - 1), 0, height - window)
      x_win = jax.lax.dynamic_slice_in_dim(x, start, window, axis=1)
      out = self.net.apply({'params': params['pixelcnn']}, 2.0 * x_win - 1.0, onehot)
      logits = self._split_outputs(out)[:, r - start, c, k]
      return x.at[:, r, c, k].set(self._draw(jax.random.fold_in(rng, t), logits))

    return jax.lax.fori_loop(0, height * width * chans, body, x0)

  def _sample_by_rows(self, params, rng, x0, onehot):
    """The sampler for nets with `context`/`rows`: the context once per row, one-row passes per sub-pixel."""
    height, width, chans = self.shape
    variables = {'params': params['pixelcnn']}

    def row_body(r, x):
      context = self.net.apply(variables, 2.0 * x - 1.0, onehot, method='context')
      context_r = jax.tree.map(lambda a: jax.lax.dynamic_slice_in_dim(a, r, 1, axis=1), context)

      def subpixel_body(j, x):
        c, k = jnp.divmod(j, chans)
        x_r = jax.lax.dynamic_slice_in_dim(x, r, 1, axis=1)
        out = self.net.apply(variables, 2.0 * x_r - 1.0, context_r, onehot, method='rows')
        logits = self._split_outputs(out)[:, 0, c, k]
        t = (r * width + c) * chans + k
        return x.at[:, r, c, k].set(self._draw(jax.random.fold_in(rng, t), logits))

      return jax.lax.fori_loop(0, width * chans, subpixel_body, x)

    return jax.lax.fori_loop(0, height, row_body, x0)

  def _draw(self, key, logits_NO):
    """One sub-pixel value per example from its conditional's logits [N, n_out]."""
    if self.binary:
      return jax.random.bernoulli(key, jax.nn.sigmoid(logits_NO[:, 0])).astype(jnp.float32)
    return jax.random.categorical(key, logits_NO, axis=-1).astype(jnp.float32) / (self.levels - 1)
