"""Variational autoencoder (Kingma & Welling, 2014) with an importance-weighted bound (Burda et al., 2016).

q(z|x) = N(mean(x), diag exp(log_var(x))), p(z) = N(0, I), and p(x|z) one of

  'bernoulli'             binarized data (levels == 2); the decoder gives logits.
  'discretized_logistic'  8-bit (or any `levels`) data on the grid k/(levels-1); the
                          decoder gives a per-pixel mean and log-scale.
  'gaussian'              continuous or dequantized data; the decoder gives a per-dim
                          mean and log-std, or only the mean when
                          `model.decoder_fixed_std > 0` fixes the std.

Class-conditional (a CVAE, Sohn et al., 2015; the labelled model of Kingma et al.,
2014) when `model.num_classes` > 0: the encoder is q(z|x, y) and the decoder
p(x|z, y), with the one-hot label y appended to their inputs (as extra input
channels, broadcast over the image, for the conv encoder; concatenated to the
flat input of the MLP encoder and to z for either decoder). The prior stays
N(0, I). Training, `nll` and `reconstruct` use batch['label']; `nll` is then
-log p(x|y). `sample` takes `label=` (int32 [num]), by default the balanced
cycle 0, 1, ..., num_classes - 1, 0, 1, ...

Training minimises the negative ELBO  -log p(x|z) + beta * KL(q(z|x) || p(z)) with
one reparameterised draw of z and the KL in closed form. Evaluation reports
-IWAE_K, an upper bound on -log p(x) that tightens as K grows (K = 1 is the ELBO in
expectation); it is computed in chunks of samples with a running logsumexp, so
K = 1000 fits in memory.

Config keys:
  model.arch               'mlp' | 'conv'
  model.latent_dim         size of z
  model.hidden             Dense widths (encoder order; the decoder mirrors them)
  model.channels           conv widths, one stride-2 conv each (encoder order; 'conv' only)
  model.decoder            'bernoulli' | 'discretized_logistic' | 'gaussian'
  model.decoder_fixed_std  > 0: fixed std of the Gaussian decoder; 0: learned per dim
  model.num_classes        > 0: condition on the dataset's labels (must equal its number of classes);
                           0 or absent: unconditional
  method.beta              weight of the KL term in the training loss (1 = the ELBO)
  method.eval_samples      K of the IWAE bound that `nll` reports
  method.eval_chunk        importance samples evaluated at once inside the bound
"""

import math

import jax
import jax.numpy as jnp
import optax

from jaxgen import distributions
from jaxgen.core.optim import make_optimizer
from jaxgen.core.state import TrainState, step_rng
from jaxgen.errors import ConfigError
from jaxgen.methods import register
from jaxgen.methods.base import Method
from jaxgen.models.conv import ConvDecoder, ConvEncoder, check_encoder_arch
from jaxgen.models.mlp import MLP

# Decoder name -> number of per-dimension parameters the decoder network outputs.
_DECODER_PARAMS = {'bernoulli': 1, 'discretized_logistic': 2, 'gaussian': 2}


@register('vae')
class VAE(Method):
  """Gaussian-latent VAE; see the module docstring."""

  has_likelihood = True

  def __init__(self, config, info):
    super().__init__(config, info)
    m = config.model
    self.shape = tuple(info.shape)
    self.dim = math.prod(self.shape)
    self.latent_dim = int(m.latent_dim)
    self.decoder_name = m.decoder
    self.fixed_std = float(m.get('decoder_fixed_std', 0.0))
    self.beta = float(config.method.get('beta', 1.0))
    self.num_classes = int(m.get('num_classes', 0) or 0)
    self.conditional = self.num_classes > 0
    self._validate()
    fixed = self.decoder_name == 'gaussian' and self.fixed_std > 0
    self.n_out = n_out = 1 if fixed else _DECODER_PARAMS[self.decoder_name]
    hidden = tuple(m.get('hidden', ()))
    if m.arch == 'mlp':
      self.encoder = MLP(hidden, 2 * self.latent_dim)
      self.decoder = MLP(hidden[::-1], n_out * self.dim)
    else:
      channels = tuple(m.channels)
      self.encoder = ConvEncoder(channels, hidden, 2 * self.latent_dim)
      self.decoder = ConvDecoder(self.shape[:2], channels[::-1], hidden[::-1], n_out * self.shape[2])
    self.tx = make_optimizer(config.optim, config.train.steps)

  def _validate(self):
    """ConfigError for architecture/decoder choices that do not fit the data."""
    m, info = self.config.model, self.info
    check_encoder_arch(m, self.shape, info.name)
    if self.num_classes < 0:
      raise ConfigError(f'config.model.num_classes must be >= 0 (0 = unconditional), got {self.num_classes}.')
    if self.conditional and not info.num_classes:
      raise ConfigError(
          f'config.model.num_classes={self.num_classes} asks for a class-conditional VAE, but dataset '
          f'{info.name!r} has no labels. Set config.model.num_classes=0 or use a labelled dataset.')
    if self.conditional and self.num_classes != info.num_classes:
      raise ConfigError(
          f'config.model.num_classes={self.num_classes} does not match dataset {info.name!r}, which has '
          f'{info.num_classes} classes. Set config.model.num_classes={info.num_classes}.')
    if self.decoder_name not in _DECODER_PARAMS:
      raise ConfigError(f'config.model.decoder={self.decoder_name!r} is not one of {", ".join(_DECODER_PARAMS)}.')
    discrete = info.levels is not None and not info.dequantized
    if self.decoder_name == 'bernoulli' and not (discrete and info.levels == 2):
      raise ConfigError(
          f"config.model.decoder='bernoulli' needs binary data, but dataset {info.name!r} has "
          f'levels={info.levels} (dequantized={info.dequantized}). Set config.data.binarize=\'dynamic\' '
          f"(or 'threshold'), or use decoder='discretized_logistic'.")
    if self.decoder_name == 'discretized_logistic' and not discrete:
      raise ConfigError(
          f"config.model.decoder='discretized_logistic' needs discrete data on a grid of `levels` values, but "
          f'dataset {info.name!r} has levels={info.levels}, dequantized={info.dequantized}. '
          f"Turn off config.data.dequantize, or use decoder='gaussian'.")
    if self.decoder_name == 'gaussian' and discrete:
      raise ConfigError(
          f"config.model.decoder='gaussian' is a density for continuous data, but dataset {info.name!r} is "
          f'discrete (levels={info.levels}); its NLL would be meaningless. Set config.data.dequantize=True, '
          f"or use decoder='discretized_logistic'.")

  # ---- networks -------------------------------------------------------------------------------

  def _with_label(self, h, label):
    """`h` [N, ..., F] with the one-hot `label` [N] appended on the last axis (broadcast over any
    spatial axes between); `h` itself for an unconditional model."""
    if not self.conditional:
      return h
    if label is None:
      raise ValueError(f'this VAE is class-conditional (config.model.num_classes={self.num_classes}) '
                       'and needs a label for every example.')
    y = jax.nn.one_hot(label, self.num_classes, dtype=h.dtype)
    y = jnp.broadcast_to(y.reshape(y.shape[0], *(1,) * (h.ndim - 2), self.num_classes),
                         h.shape[:-1] + (self.num_classes,))
    return jnp.concatenate([h, y], axis=-1)

  def _encoder_input(self, x, label):
    """The MLP sees flat vectors, the conv encoder images; either with the label appended."""
    return self._with_label(x.reshape(x.shape[0], -1) if self.config.model.arch == 'mlp' else x, label)

  def _batch_label(self, batch):
    """batch['label'] for a conditional model (ConfigError if the batch has none); else None."""
    if not self.conditional:
      return None
    if 'label' not in batch:
      raise ConfigError(f'config.model.num_classes={self.num_classes} makes the VAE class-conditional, but '
                        "the batch has no 'label'. Use a labelled dataset or set config.model.num_classes=0.")
    return batch['label']

  def _encode(self, params, x, label=None):
    """q(z|x[, y]): (mean_BL, log_var_BL)."""
    out_B2L = self.encoder.apply({'params': params['encoder']}, self._encoder_input(x, label))
    return jnp.split(out_B2L, 2, axis=-1)

  def _decode(self, params, z_NL, label=None):
    """Decoder outputs for p(x|z[, y]): a list of `n_out` arrays shaped [N, *shape]."""
    out = self.decoder.apply({'params': params['decoder']}, self._with_label(z_NL, label))
    out = out.reshape(z_NL.shape[0], *self.shape[:-1], self.n_out * self.shape[-1])
    return jnp.split(out, self.n_out, axis=-1)

  def _log_px_given_z(self, outs, x):
    """log p(x|z) summed over the data dimensions: [N]."""
    if self.decoder_name == 'bernoulli':
      lp = distributions.bernoulli_log_prob(outs[0], x)
    elif self.decoder_name == 'discretized_logistic':
      lp = distributions.discretized_logistic_log_prob(outs[0], outs[1], x, self.info.levels)
    else:
      log_std = outs[1] if self.n_out == 2 else math.log(self.fixed_std)
      lp = distributions.gaussian_log_prob(x, outs[0], log_std)
    return lp.reshape(lp.shape[0], -1).sum(-1)

  def _decoder_mean(self, outs):
    """E[x|z] in data space; image means are clipped to [0, 1] (see `sample`)."""
    if self.decoder_name == 'bernoulli':
      return jax.nn.sigmoid(outs[0])
    mean = outs[0]
    return jnp.clip(mean, 0.0, 1.0) if self.info.kind == 'image' else mean

  def _decoder_draw(self, outs, rng):
    """One draw x ~ p(x|z), for vector data."""
    if self.decoder_name == 'bernoulli':
      return jax.random.bernoulli(rng, jax.nn.sigmoid(outs[0])).astype(jnp.float32)
    if self.decoder_name == 'discretized_logistic':
      x = outs[0] + jnp.exp(outs[1]) * jax.random.logistic(rng, outs[0].shape)
      grid = self.info.levels - 1
      return jnp.clip(jnp.round(x * grid), 0, grid) / grid
    log_std = outs[1] if self.n_out == 2 else math.log(self.fixed_std)
    return outs[0] + jnp.exp(log_std) * jax.random.normal(rng, outs[0].shape)

  # ---- ELBO and IWAE bound --------------------------------------------------------------------

  def _eps(self, rng, start, num, batch_size):
    """Standard-normal noise for importance samples start..start+num-1: [num, B, L].

    Sample k uses fold_in(rng, k), so a draw does not depend on how K is chunked,
    and sample 0 is the draw the training step makes from the same key.
    """
    keys = jax.vmap(jax.random.fold_in, (None, 0))(rng, start + jnp.arange(num))
    return jax.vmap(lambda key: jax.random.normal(key, (batch_size, self.latent_dim)))(keys)

  def elbo_terms(self, params, x, rng, label=None):
    """Per-example (recon, kl) in nats: recon = -log p(x|z) at z = mean + std * eps_0, kl in closed form.

    `label` (int [B]) is required by, and only used by, a conditional model.
    """
    mean, log_var = self._encode(params, x, label)
    z = mean + jnp.exp(0.5 * log_var) * self._eps(rng, 0, 1, x.shape[0])[0]
    recon = -self._log_px_given_z(self._decode(params, z, label), x)
    kl = distributions.gaussian_kl_standard(mean, log_var).sum(-1)
    return recon, kl

  def _log_weights(self, params, x, label, mean, log_var, eps_KBL):
    """log p(x, z_k) - log q(z_k|x) for z_k = mean + std * eps_k: [K, B]."""
    num, batch_size = eps_KBL.shape[:2]
    mean_1BL, log_std_1BL = mean[None], 0.5 * log_var[None]
    z_KBL = mean_1BL + jnp.exp(log_std_1BL) * eps_KBL
    log_q = distributions.gaussian_log_prob(z_KBL, mean_1BL, log_std_1BL).sum(-1)
    log_prior = distributions.gaussian_log_prob(z_KBL, 0.0, 0.0).sum(-1)
    label_KB = None if label is None else jnp.tile(label, num)
    outs = self._decode(params, z_KBL.reshape(num * batch_size, self.latent_dim), label_KB)
    x_KB = jnp.broadcast_to(x, (num,) + x.shape).reshape(num * batch_size, *self.shape)
    log_px = self._log_px_given_z(outs, x_KB).reshape(num, batch_size)
    return log_px + log_prior - log_q

  def iwae_bound(self, params, x, rng, k: int, chunk: int = None, label=None):
    """log (1/K) sum_k p(x, z_k) / q(z_k|x), z_k ~ q(z|x): [B] nats, a lower bound on log p(x).

    For a conditional model every term is conditioned on `label` (int [B]): a bound on log p(x|y).

    `params` is the VAE's tree (params['vae']). Samples are evaluated `chunk` at a
    time (default config.method.eval_chunk) in a lax.fori_loop that keeps a running
    max and sum of exp, so memory grows with `chunk`, not K. K = 1 is the ELBO
    with a Monte Carlo KL.
    """
    chunk = min(k, int(chunk or self.config.method.get('eval_chunk', 100)))
    batch_size = x.shape[0]
    mean, log_var = self._encode(params, x, label)

    def accumulate(start, num, carry):
      run_max, run_sum = carry
      lw_KB = self._log_weights(params, x, label, mean, log_var, self._eps(rng, start, num, batch_size))
      new_max = jnp.maximum(run_max, lw_KB.max(0))
      return new_max, run_sum * jnp.exp(run_max - new_max) + jnp.exp(lw_KB - new_max[None]).sum(0)

    carry = (jnp.full((batch_size,), -jnp.inf), jnp.zeros((batch_size,)))
    n_full, rest = divmod(k, chunk)
    carry = jax.lax.fori_loop(0, n_full, lambda i, c: accumulate(i * chunk, chunk, c), carry)
    if rest:
      carry = accumulate(n_full * chunk, rest, carry)
    run_max, run_sum = carry
    return run_max + jnp.log(run_sum) - math.log(k)

  # ---- the Method contract --------------------------------------------------------------------

  def init(self, rng, batch):
    k_enc, k_dec, k_state = jax.random.split(rng, 3)
    label = jnp.zeros((1,), jnp.int32)  # only the shapes matter here
    params = {'vae': {
        'encoder': self.encoder.init(k_enc, self._encoder_input(batch['x'][:1], label))['params'],
        'decoder': self.decoder.init(k_dec, self._with_label(jnp.zeros((1, self.latent_dim)), label))['params'],
    }}
    ema = jax.tree.map(jnp.copy, params) if self.config.train.ema_decay > 0 else None
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=self.tx.init(params),
                      ema_params=ema, extra={}, rng=k_state)

  def train_step(self, state, batch):
    rng = step_rng(state)
    label = self._batch_label(batch)

    def loss_fn(params):
      recon, kl = self.elbo_terms(params['vae'], batch['x'], rng, label)
      return jnp.mean(recon + self.beta * kl), (recon, kl)

    (loss, (recon, kl)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    updates, opt_state = self.tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    metrics = {'loss': loss, 'elbo': -jnp.mean(recon + kl), 'kl': jnp.mean(kl), 'recon': jnp.mean(recon)}
    return state.replace(step=state.step + 1, params=params, opt_state=opt_state), metrics

  def nll(self, params, batch, rng):
    """-IWAE_K per example in nats, K = config.method.eval_samples.

    For dequantized data this is the NLL of the continuous x (the evaluator adds
    D log(levels)); otherwise it is the NLL of the discrete data itself. A
    conditional model gives -log p(x|y) with y = batch['label'].
    """
    return -self.iwae_bound(params['vae'], batch['x'], rng, int(self.config.method.eval_samples),
                            label=self._batch_label(batch))

  def sample(self, params, rng, num, label=None):
    """Decode z ~ N(0, I) (with the class `label`, int [num], for a conditional model): [num, *shape].

    A conditional model given no label generates the balanced, deterministic
    cycle of classes jnp.arange(num) % num_classes.

    Images return the decoder mean (Bernoulli probabilities; the logistic or
    Gaussian location clipped to [0, 1]) rather than a noisy draw: independent
    per-pixel noise says nothing about what the latent code has learned. Vector
    data return a draw from p(x|z), so scatter plots show the model's density.
    """
    if not self.conditional and label is not None:
      raise ValueError('label= was given, but this VAE is unconditional (config.model.num_classes=0).')
    if self.conditional:
      label = jnp.arange(num) % self.num_classes if label is None else jnp.asarray(label)
      if label.shape != (num,):
        raise ValueError(f'label must have shape ({num},), got {label.shape}.')
    k_z, k_x = jax.random.split(rng)
    outs = self._decode(params['vae'], jax.random.normal(k_z, (num, self.latent_dim)), label)
    return self._decoder_mean(outs) if self.info.kind == 'image' else self._decoder_draw(outs, k_x)

  def reconstruct(self, params, batch, rng):
    """Decoder means at one z ~ q(z|x[, y]), decoded with the same label: [B, *shape]."""
    p, label = params['vae'], self._batch_label(batch)
    mean, log_var = self._encode(p, batch['x'], label)
    z = mean + jnp.exp(0.5 * log_var) * jax.random.normal(rng, mean.shape)
    return self._decoder_mean(self._decode(p, z, label))
