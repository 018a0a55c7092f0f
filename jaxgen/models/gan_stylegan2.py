"""StyleGAN2 generator and discriminator (Karras et al. 2020, "Analyzing and improving the image
quality of StyleGAN"), as configured by StyleGAN2-ADA (Karras et al. 2020, "Training generative
adversarial networks with limited data"; the official stylegan2-ada-pytorch `training/networks.py`).

Generator = mapping + synthesis:

    mapping    z -> normalise 2nd moment (conditional: embed one_hot(label) with a dense layer,
               normalise it too, concatenate) -> `mapping_layers` dense layers (lrelu, learning-rate
               multiplier 0.01) -> w, broadcast to num_ws = 2 * num_blocks styles [B, num_ws, w_dim].
               A running mean of w, 'batch_stats'/w_avg (decay w_avg_beta), is updated when train=True
               and serves the truncation trick w_avg + psi (w - w_avg). With train=True, style mixing:
               with probability `style_mixing` per example a second z (from the 'noise' rng) is mapped
               and its w replaces the styles from a random crossover layer in [1, num_ws) on.
    synthesis  'skip' architecture. A learned constant [base, base, C] (base = 4, or 7 for 28x28
               data); each block at resolution r = base * 2^k: (k > 0) 2x upsampling and a modulated
               3x3 conv, a modulated 3x3 conv, each with demodulation, a per-pixel noise input
               ('noise' rng) scaled by a learned strength, bias and leaky ReLU (slope 0.2, gain sqrt 2);
               then toRGB (modulated 1x1 conv, no demodulation, linear) added to the 2x-upsampled RGB
               of the previous block. The image is the last block's RGB sum: linear, no tanh (model
               range [-1, 1] is what the discriminator learns to expect, as in the official code), or
               with config.model.output_activation='tanh' its tanh (not in the official code: see
               Deviations).

Discriminator ('resnet' or 'orig'): fromRGB (1x1 conv) at full resolution, then per block two 3x3
convs, the second one downsampling by 2 ('resnet': plus a 1x1 downsampling skip, both branches
scaled by sqrt(1/2)); at the base resolution the epilogue: minibatch standard deviation
(`gan_nets.minibatch_stddev`, group `mbstd_group`, 1 feature), a 3x3 conv, a dense layer over the
flattened map and the output layer. Conditional: the official "cmap" projection, the output layer
gives cmap_dim = C(base) features which are dotted with a mapping network of the label
(`d_mapping_layers`, 8 as the official), divided by sqrt(cmap_dim).

Interface (jaxgen/models/gan_nets.py): generator(z, label, *, train, truncation_psi=1.0,
noise_mode='random') = synthesis(truncate(mapping(z, label, train=train), truncation_psi), train=train,
noise_mode=noise_mode), with the module methods `mapping`, `truncate` and `synthesis` for the method's
path-length regulariser; discriminator(x, label, *, train) -> [B] float32. State: 'batch_stats'/w_avg.

Equalized learning rate throughout: parameters are drawn N(0, 1) (mapping weights N(0, 1/lr_mul^2))
and scaled at run time by lr_mul / sqrt(fan_in). Channel counts are min(channel_base // r,
channel_max) at resolution r. Parameter shapes and counts equal the official networks'
(tests/test_stylegan2.py derives the CIFAR-10 configuration's counts layer by layer).

Deviations from the official code (none changes a parameter):
  * Resampling: 2x upsampling (of features before the up-conv and of the skip RGB) is separable
    linear interpolation with weights (1/4, 3/4) (the [1, 3, 3, 1] filter's upsampling, with edge
    pixels repeated instead of zero padding); 2x downsampling in the discriminator is a 2x2 mean
    after the conv (instead of the [1, 3, 3, 1] FIR blur before a strided conv).
  * Noise inputs are drawn from the 'noise' rng (`noise_mode='random'`) or switched off
    (`noise_mode='none'`); there is no stored constant noise ('const'). The noise strength is one
    learned scalar per layer, as in the official StyleGAN2 (StyleGAN1 learned one per channel).
  * Style mixing draws its coin and crossover per example (the official code draws one for the batch).
  * No fp16 layers and no conv_clamp (the official switches both off with --fp32).
  * Optional tanh on the output (output_activation='tanh'; default 'linear', the official). On
    MNIST, whose background is exactly -1, the linear output mode-collapsed within ~500 steps in
    every setting tried while the same discriminator and training kept a DCGAN generator diverse
    (experiments/gan_diversity.py, experiments/results/gan.md); configs/gan/stylegan2_ada_mnist5k.py
    uses tanh.
"""

import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxgen.errors import ConfigError
from jaxgen.models import canonical_conv, gan_nets

_CONV_AXES = (None, None, 'conv_in', 'conv_out')
_DENSE_AXES = ('embed', 'mlp')
_LRELU_SLOPE = 0.2
_SQRT2 = math.sqrt(2.0)
NOISE_MODES = ('random', 'none')


def _normal_init(stddev: float = 1.0):
  """N(0, stddev^2), drawn as the first prod(shape) of a flat draw whose length is the next power of
  two, then reshaped: the same distribution, but every parameter of a network shares one of a few
  random-number programs (XLA compiles one per distinct draw shape; on CPU that dominated init)."""
  def init(key, shape, dtype=jnp.float32):
    n = math.prod(shape)
    flat = jax.random.normal(key, (1 << max(n - 1, 0).bit_length(),), dtype)[:n]
    return (flat * stddev).reshape(shape)
  return init


def _activate(x, activation: str, gain: float = 1.0):
  """'linear' or 'lrelu' (slope 0.2, times sqrt 2 to keep the second moment), times `gain`."""
  if activation == 'lrelu':
    x = nn.leaky_relu(x, _LRELU_SLOPE)
    gain = gain * _SQRT2
  elif activation != 'linear':
    raise ValueError(f'activation must be linear or lrelu, got {activation!r}.')
  return x * gain if gain != 1.0 else x


def normalize_2nd_moment(x_BF, eps: float = 1e-8):
  """x / sqrt(mean(x^2) + eps) over the feature axis."""
  return x_BF * jax.lax.rsqrt(jnp.mean(jnp.square(x_BF), axis=-1, keepdims=True) + eps)


def upsample2x(x_BHWC):
  """2x upsampling by separable linear interpolation: output pixels 2i and 2i+1 are 3/4 x[i] plus
  1/4 x[i-1] and x[i+1] respectively (edge pixels repeated). Preserves constants exactly."""
  def along(x, axis):
    n = x.shape[axis]
    first = jax.lax.slice_in_dim(x, 0, 1, axis=axis)
    last = jax.lax.slice_in_dim(x, n - 1, n, axis=axis)
    prev = jnp.concatenate([first, jax.lax.slice_in_dim(x, 0, n - 1, axis=axis)], axis=axis)
    nxt = jnp.concatenate([jax.lax.slice_in_dim(x, 1, n, axis=axis), last], axis=axis)
    even, odd = 0.75 * x + 0.25 * prev, 0.75 * x + 0.25 * nxt
    out = jnp.stack([even, odd], axis=axis + 1)
    return out.reshape(x.shape[:axis] + (2 * n,) + x.shape[axis + 1:])
  return along(along(x_BHWC, 1), 2)


def downsample2x(x_BHWC):
  """2x downsampling: the mean of each 2x2 block."""
  b, h, w, c = x_BHWC.shape
  return x_BHWC.reshape(b, h // 2, 2, w // 2, 2, c).mean(axis=(2, 4))


_conv = canonical_conv.conv   # stride 1, NHWC / HWIO; its gradients stay fast on XLA:CPU


def modulated_conv2d(x_BHWC, weight_KKIO, styles_BI, demodulate: bool = True, padding='SAME'):
  """StyleGAN2's modulated convolution: per example the kernel w[k, i, o] * s[b, i] and, with
  `demodulate`, each output channel's kernel divided by its L2 norm sqrt(sum_{k,i} (w s)^2 + 1e-8).

  Computed without per-example kernels (as the official non-fused path): the input is scaled by the
  styles, convolved with the shared kernel, and the output scaled by the demodulation coefficients.
  For inputs of unit variance (independent entries) the demodulated output has unit variance.
  """
  y = _conv(x_BHWC * styles_BI[:, None, None, :], weight_KKIO, padding)
  if demodulate:
    wsq_IO = jnp.sum(jnp.square(weight_KKIO), axis=(0, 1))
    dcoefs_BO = jax.lax.rsqrt(jnp.square(styles_BI) @ wsq_IO + 1e-8)
    y = y * dcoefs_BO[:, None, None, :]
  return y


class EqualizedDense(nn.Module):
  """Dense layer with equalized learning rate: weight ~ N(0, 1/lr_mul^2) used as
  weight * lr_mul / sqrt(fan_in), bias (initialised to bias_init) used as bias * lr_mul."""
  features: int
  activation: str = 'linear'
  lr_multiplier: float = 1.0
  bias_init: float = 0.0

  @nn.compact
  def __call__(self, x_BF):
    fan_in = x_BF.shape[-1]
    weight = self.param('weight', nn.with_logical_partitioning(_normal_init(1.0 / self.lr_multiplier), _DENSE_AXES),
                        (fan_in, self.features))
    bias = self.param('bias', nn.with_logical_partitioning(nn.initializers.constant(self.bias_init), ('mlp',)),
                      (self.features,))
    y = x_BF @ (weight * (self.lr_multiplier / math.sqrt(fan_in))) + (bias * self.lr_multiplier)[None, :]
    return _activate(y, self.activation)


class EqualizedConv(nn.Module):
  """k x k conv with equalized learning rate (weight N(0, 1) times 1/sqrt(k k C_in)), optional 2x
  downsampling after the conv, bias, activation times `gain` (the official Conv2dLayer)."""
  features: int
  kernel_size: int
  activation: str = 'linear'
  use_bias: bool = True
  down: bool = False

  @nn.compact
  def __call__(self, x_BHWC, gain: float = 1.0):
    k, c_in = self.kernel_size, x_BHWC.shape[-1]
    weight = self.param('weight', nn.with_logical_partitioning(_normal_init(), _CONV_AXES),
                        (k, k, c_in, self.features))
    y = _conv(x_BHWC, weight * (1.0 / math.sqrt(k * k * c_in)))
    if self.down:
      y = downsample2x(y)
    if self.use_bias:
      bias = self.param('bias', nn.with_logical_partitioning(nn.initializers.zeros_init(), ('conv_out',)),
                        (self.features,))
      y = y + bias[None, None, None, :]
    return _activate(y, self.activation, gain)


class MappingNetwork(nn.Module):
  """z [B, Z] (and/or label [B]) -> w [B, w_dim] (module docstring); z may be None (the
  discriminator's label mapping)."""
  w_dim: int
  num_layers: int
  num_classes: int = 0
  lr_multiplier: float = 0.01

  @nn.compact
  def __call__(self, z_BZ, label_B=None):
    parts = []
    if z_BZ is not None:
      parts.append(normalize_2nd_moment(z_BZ.reshape(z_BZ.shape[0], -1).astype(jnp.float32)))
    if self.num_classes:
      if label_B is None:
        raise ValueError(f'this network is conditional ({self.num_classes} classes): pass label_B.')
      onehot = jax.nn.one_hot(label_B, self.num_classes, dtype=jnp.float32)
      parts.append(normalize_2nd_moment(EqualizedDense(self.w_dim, name='embed')(onehot)))
    x = jnp.concatenate(parts, axis=-1) if len(parts) > 1 else parts[0]
    for i in range(self.num_layers):
      x = EqualizedDense(self.w_dim, 'lrelu', self.lr_multiplier, name=f'fc{i}')(x)
    return x


class SynthesisLayer(nn.Module):
  """(optional 2x upsampling,) modulated 3x3 conv with demodulation, noise (N(0, 1) per pixel, times
  the learned strength; none if noise_BHW1 is None), bias, lrelu."""
  features: int
  up: bool = False

  @nn.compact
  def __call__(self, x_BHWC, w_BD, noise_BHW1=None):
    c_in = x_BHWC.shape[-1]
    styles = EqualizedDense(c_in, bias_init=1.0, name='affine')(w_BD)
    weight = self.param('weight', nn.with_logical_partitioning(_normal_init(), _CONV_AXES),
                        (3, 3, c_in, self.features))
    if self.up:
      x_BHWC = upsample2x(x_BHWC)
    y = modulated_conv2d(x_BHWC, weight, styles, demodulate=True)
    strength = self.param('noise_strength', nn.with_logical_partitioning(nn.initializers.zeros_init(), ()), ())
    if noise_BHW1 is not None:
      y = y + noise_BHW1 * strength
    bias = self.param('bias', nn.with_logical_partitioning(nn.initializers.zeros_init(), ('conv_out',)),
                      (self.features,))
    return _activate(y + bias[None, None, None, :], 'lrelu')


class ToRGB(nn.Module):
  """Modulated 1x1 conv without demodulation (styles times 1/sqrt(C_in)), bias, linear."""
  features: int

  @nn.compact
  def __call__(self, x_BHWC, w_BD):
    c_in = x_BHWC.shape[-1]
    styles = EqualizedDense(c_in, bias_init=1.0, name='affine')(w_BD) * (1.0 / math.sqrt(c_in))
    weight = self.param('weight', nn.with_logical_partitioning(_normal_init(), _CONV_AXES),
                        (1, 1, c_in, self.features))
    bias = self.param('bias', nn.with_logical_partitioning(nn.initializers.zeros_init(), ('conv_out',)),
                      (self.features,))
    return modulated_conv2d(x_BHWC, weight, styles, demodulate=False) + bias[None, None, None, :]


def channels_at(resolution: int, channel_base: int, channel_max: int) -> int:
  """min(channel_base // resolution, channel_max), as the official channels_dict."""
  return min(channel_base // resolution, channel_max)


class SynthesisNetwork(nn.Module):
  """ws [B, 2 * num_blocks, w_dim] -> image [B, r, r, img_channels], 'skip' architecture."""
  base: int
  num_blocks: int
  img_channels: int
  channel_base: int
  channel_max: int
  output_activation: str = 'linear'

  @nn.compact
  def __call__(self, ws_BLD, noise_mode: str = 'random'):
    if noise_mode not in NOISE_MODES:
      raise ValueError(f'noise_mode must be one of {NOISE_MODES}, got {noise_mode!r}.')
    if ws_BLD.shape[1] != 2 * self.num_blocks:
      raise ValueError(f'synthesis needs {2 * self.num_blocks} styles, got ws of shape {ws_BLD.shape}.')
    ch = lambda r: channels_at(r, self.channel_base, self.channel_max)  # noqa: E731
    b = ws_BLD.shape[0]
    c0 = ch(self.base)
    const = self.param('const', nn.with_logical_partitioning(_normal_init(), (None, None, 'conv_out')),
                       (self.base, self.base, c0))
    x = jnp.broadcast_to(const[None], (b,) + const.shape)
    noise = self._noise(b, noise_mode)
    # Block k uses styles [2k - 1, 2k] for its convs and 2k + 1 for toRGB (the base block: 0 and 1),
    # so a block's toRGB shares its style with the next block's first conv, as in the official code.
    x = SynthesisLayer(c0, name=f'b{self.base}_conv1')(x, ws_BLD[:, 0], noise[0])
    img = ToRGB(self.img_channels, name=f'b{self.base}_torgb')(x, ws_BLD[:, 1])
    for k in range(1, self.num_blocks):
      r = self.base * 2 ** k
      x = SynthesisLayer(ch(r), up=True, name=f'b{r}_conv0')(x, ws_BLD[:, 2 * k - 1], noise[2 * k - 1])
      x = SynthesisLayer(ch(r), name=f'b{r}_conv1')(x, ws_BLD[:, 2 * k], noise[2 * k])
      img = upsample2x(img) + ToRGB(self.img_channels, name=f'b{r}_torgb')(x, ws_BLD[:, 2 * k + 1])
    return jnp.tanh(img) if self.output_activation == 'tanh' else img

  def _noise(self, b: int, noise_mode: str):
    """Per-pixel N(0, 1) noise [B, r, r, 1] for each of the 2 * num_blocks - 1 conv layers (None with
    noise_mode 'none'), from one draw of the 'noise' rng (one random-number program to compile)."""
    sides = [self.base] + [self.base * 2 ** k for k in range(1, self.num_blocks) for _ in range(2)]
    if noise_mode == 'none':
      return [None] * len(sides)
    flat = jax.random.normal(self.make_rng('noise'), (b, sum(r * r for r in sides)), jnp.float32)
    offsets = [0]
    for r in sides:
      offsets.append(offsets[-1] + r * r)
    return [flat[:, o:o + r * r].reshape(b, r, r, 1) for o, r in zip(offsets, sides)]


class Generator(nn.Module):
  """StyleGAN2 generator: `mapping`, `truncate`, `synthesis`; __call__ is the three in turn."""
  base: int
  num_blocks: int
  img_channels: int
  latent_dim: int = 512
  w_dim: int = 512
  mapping_layers: int = 8
  channel_base: int = 32768
  channel_max: int = 512
  num_classes: int = 0
  style_mixing: float = 0.9
  w_avg_beta: float = 0.995
  output_activation: str = 'linear'

  @property
  def num_ws(self) -> int:
    return 2 * self.num_blocks

  def setup(self):
    self.mapping_network = MappingNetwork(self.w_dim, self.mapping_layers, self.num_classes)
    self.synthesis_network = SynthesisNetwork(self.base, self.num_blocks, self.img_channels,
                                              self.channel_base, self.channel_max, self.output_activation)
    self.w_avg = self.variable('batch_stats', 'w_avg', jnp.zeros, (self.w_dim,), jnp.float32)

  def mapping(self, z_BZ, label_B=None, *, train: bool):
    """ws [B, num_ws, w_dim]. train=True: updates w_avg (when 'batch_stats' is mutable) and applies
    style mixing (official run_G), both from the first z only."""
    w_BD = self.mapping_network(z_BZ, label_B)
    if train and not self.is_initializing() and self.is_mutable_collection('batch_stats'):
      mean = jax.lax.stop_gradient(jnp.mean(w_BD, axis=0))
      self.w_avg.value = mean + self.w_avg_beta * (self.w_avg.value - mean)
    ws = jnp.broadcast_to(w_BD[:, None, :], (w_BD.shape[0], self.num_ws, self.w_dim))
    if train and self.style_mixing > 0:
      ws = self._mix(ws, z_BZ, label_B)
    return ws

  def _mix(self, ws_BLD, z_BZ, label_B):
    """Per example, with probability style_mixing: styles from a random crossover layer on come
    from the w of a fresh z."""
    key_z, key_u = jax.random.split(self.make_rng('noise'))
    b = ws_BLD.shape[0]
    w2_BD = self.mapping_network(jax.random.normal(key_z, z_BZ.shape, jnp.float32), label_B)
    u_B2 = jax.random.uniform(key_u, (b, 2))
    cutoff_B = 1 + jnp.minimum(jnp.floor(u_B2[:, 0] * (self.num_ws - 1)).astype(jnp.int32), self.num_ws - 2)
    cutoff_B = jnp.where(u_B2[:, 1] < self.style_mixing, cutoff_B, self.num_ws)
    second_BL = jnp.arange(self.num_ws)[None, :] >= cutoff_B[:, None]
    return jnp.where(second_BL[:, :, None], w2_BD[:, None, :], ws_BLD)

  def truncate(self, ws_BLD, psi=1.0):
    """The truncation trick w_avg + psi (w - w_avg); psi = 1 (a Python number) returns ws unchanged."""
    if isinstance(psi, (int, float)) and psi == 1:
      return ws_BLD
    w_avg = self.w_avg.value[None, None, :]
    return w_avg + psi * (ws_BLD - w_avg)

  def synthesis(self, ws_BLD, *, train: bool, noise_mode: str = 'random'):
    """Image [B, r, r, C] of styles ws (`train` does not change the synthesis)."""
    del train
    return self.synthesis_network(ws_BLD, noise_mode)

  def __call__(self, z_BZ, label_B=None, *, train: bool, truncation_psi=1.0, noise_mode: str = 'random'):
    ws = self.truncate(self.mapping(z_BZ, label_B, train=train), truncation_psi)
    return self.synthesis(ws, train=train, noise_mode=noise_mode)


class DiscriminatorBlock(nn.Module):
  """(fromRGB,) conv 3x3, conv 3x3 with 2x downsampling; 'resnet' adds a 1x1 downsampling skip."""
  tmp_channels: int
  out_channels: int
  architecture: str
  first: bool

  @nn.compact
  def __call__(self, x_BHWC):
    if self.first:
      x_BHWC = EqualizedConv(self.tmp_channels, 1, 'lrelu', name='fromrgb')(x_BHWC)
    if self.architecture == 'resnet':
      y = EqualizedConv(self.out_channels, 1, use_bias=False, down=True, name='skip')(x_BHWC, gain=math.sqrt(0.5))
      x = EqualizedConv(self.tmp_channels, 3, 'lrelu', name='conv0')(x_BHWC)
      x = EqualizedConv(self.out_channels, 3, 'lrelu', down=True, name='conv1')(x, gain=math.sqrt(0.5))
      return y + x
    x = EqualizedConv(self.tmp_channels, 3, 'lrelu', name='conv0')(x_BHWC)
    return EqualizedConv(self.out_channels, 3, 'lrelu', down=True, name='conv1')(x)


class Discriminator(nn.Module):
  """StyleGAN2 discriminator: image [B, r, r, C] (any C: PacGAN packing) -> logits [B] float32."""
  base: int
  num_blocks: int
  channel_base: int = 32768
  channel_max: int = 512
  num_classes: int = 0
  architecture: str = 'resnet'
  mbstd_group: int = 4
  mbstd_num_channels: int = 1
  mapping_layers: int = 8

  @nn.compact
  def __call__(self, x_BHWC, label_B=None, *, train: bool = False):
    del train
    ch = lambda r: channels_at(r, self.channel_base, self.channel_max)  # noqa: E731
    x = x_BHWC.astype(jnp.float32)
    for k in range(self.num_blocks - 1, 0, -1):
      r = self.base * 2 ** k
      x = DiscriminatorBlock(ch(r), ch(r // 2), self.architecture, first=(k == self.num_blocks - 1),
                             name=f'b{r}')(x)
    x = gan_nets.minibatch_stddev(x, self.mbstd_group, self.mbstd_num_channels)
    c = ch(self.base)
    x = EqualizedConv(c, 3, 'lrelu', name=f'b{self.base}_conv')(x)
    x = EqualizedDense(c, 'lrelu', name=f'b{self.base}_fc')(x.reshape(x.shape[0], -1))
    if not self.num_classes:
      return EqualizedDense(1, name=f'b{self.base}_out')(x)[:, 0]
    if label_B is None:
      raise ValueError(f'this discriminator is conditional ({self.num_classes} classes): pass label_B.')
    out = EqualizedDense(c, name=f'b{self.base}_out')(x)
    cmap = MappingNetwork(c, self.mapping_layers, self.num_classes, name='mapping')(None, label_B)
    return jnp.sum(out * cmap, axis=-1) * (1.0 / math.sqrt(c))


def resolution_base(resolution: int):
  """(base, num_blocks) with resolution = base * 2^(num_blocks - 1), base in {4, 7}, num_blocks >= 2;
  None if there is none."""
  for base in (4, 7):
    r, n = resolution, 1
    while r > base and r % 2 == 0:
      r, n = r // 2, n + 1
    if r == base and n >= 2:
      return base, n
  return None


def build(model_config, info) -> gan_nets.GanNets:
  """The StyleGAN2 GanNets of `config.model` for the image dataset `info` (module docstring).

  Keys (defaults): latent_dim (512), w_dim (512), mapping_layers (8), channel_base (32768),
  channel_max (512), num_classes (0), style_mixing (0.9), mbstd_group (4), d_architecture
  ('resnet' | 'orig'), d_mapping_layers (8: the conditional discriminator's label mapping),
  truncation_psi (1.0, sampling only), w_avg_beta (0.995), output_activation ('linear' | 'tanh').
  """
  get = model_config.get
  if info.kind != 'image' or len(info.shape) != 3:
    raise ConfigError(f'config.model.arch=stylegan2 needs image data [H, W, C]; dataset {info.name!r} '
                      f'has {info.kind} examples of shape {tuple(info.shape)}.')
  h, w, c = info.shape
  found = resolution_base(h) if h == w else None
  if found is None:
    raise ConfigError(f'config.model.arch=stylegan2 needs square images of side base * 2^k (base 4 or 7, '
                      f'k >= 1: 8, 14, 16, 28, 32, 56, 64, ...); dataset {info.name!r} has {h}x{w}.')
  base, num_blocks = found
  ints = {key: int(get(key, default)) for key, default in
          (('latent_dim', 512), ('w_dim', 512), ('mapping_layers', 8), ('channel_base', 32768),
           ('channel_max', 512), ('mbstd_group', 4), ('d_mapping_layers', 8))}
  for key, value in ints.items():
    if value < 1:
      raise ConfigError(f'config.model.{key} must be a positive integer, got {value}.')
  if channels_at(h, ints['channel_base'], ints['channel_max']) < 1:
    raise ConfigError(f'config.model.channel_base={ints["channel_base"]} gives no channels at resolution {h}: '
                      f'it must be at least {h}.')
  style_mixing = float(get('style_mixing', 0.9))
  if not 0.0 <= style_mixing <= 1.0:
    raise ConfigError(f'config.model.style_mixing is a probability in [0, 1], got {style_mixing}.')
  w_avg_beta = float(get('w_avg_beta', 0.995))
  if not 0.0 <= w_avg_beta < 1.0:
    raise ConfigError(f'config.model.w_avg_beta must be in [0, 1), got {w_avg_beta}.')
  architecture = get('d_architecture', 'resnet')
  if architecture not in ('resnet', 'orig'):
    raise ConfigError(f"config.model.d_architecture must be 'resnet' or 'orig', got {architecture!r}.")
  output_activation = get('output_activation', 'linear')
  if output_activation not in ('linear', 'tanh'):
    raise ConfigError(f"config.model.output_activation must be 'linear' or 'tanh', got {output_activation!r}.")
  classes = gan_nets.num_classes(model_config, info)
  common = dict(base=base, num_blocks=num_blocks, channel_base=ints['channel_base'],
                channel_max=ints['channel_max'], num_classes=classes)
  generator = Generator(img_channels=c, latent_dim=ints['latent_dim'], w_dim=ints['w_dim'],
                        mapping_layers=ints['mapping_layers'], style_mixing=style_mixing,
                        w_avg_beta=w_avg_beta, output_activation=output_activation, **common)
  discriminator = Discriminator(architecture=architecture, mbstd_group=ints['mbstd_group'],
                                mapping_layers=ints['d_mapping_layers'], **common)
  return gan_nets.GanNets(generator=generator, discriminator=discriminator, latent_shape=(ints['latent_dim'],),
                          sample_kwargs={'truncation_psi': float(get('truncation_psi', 1.0))})
