"""The FID Inception-v3 feature network (pytorch-fid's `FIDInceptionV3`), in Flax, NHWC.

This is the network that TF FID and pytorch-fid compute FID with: the
torchvision Inception-v3 trunk (no auxiliary classifier, a 1008-way `fc`) with
pytorch-fid's patched blocks, which reproduce the TensorFlow graph of
`inception-2015-12-05`:

* `FIDInceptionA` (Mixed_5b/c/d), `FIDInceptionC` (Mixed_6b..e) and
  `FIDInceptionE_1` (Mixed_7b): the pool branch averages 3x3 windows (stride
  1, pad 1) over the non-padded pixels only (`count_include_pad=False`).
* `FIDInceptionE_2` (Mixed_7c): the pool branch is a 3x3 MAX pool (stride 1,
  pad 1), as in the TF graph.
* InceptionB (Mixed_6a) and InceptionD (Mixed_7a) as in torchvision.
* BasicConv2d = conv without bias + BatchNorm (eps 1e-3, running statistics)
  + ReLU.

Outputs: 'pool3', the (N, 2048) global average of Mixed_7c (the FID/KID
features), and 'logits', the (N, 1008) output of `fc` on pool3 (for the
Inception Score; pytorch-fid drops the dropout, so do we).

Weights: pytorch-fid's `pt_inception-2015-12-05-6726825d.pth` (the TF
weights ported to PyTorch), read without torch by `jaxgen.evals.torch_pickle`
and converted by a single key mapping (`_torch_name`) that also gives
`pytorch_state_dict_shapes`, so the converter and the module cannot disagree.
Flax submodules carry the PyTorch names: `Mixed_5b/branch5x5_2/{conv,bn}`.

Usage:

  variables = load_pytorch_fid_weights()          # or (path)
  features = features_fn(variables)              # images in [0, 1], NHWC, any size
  out = features(images)                         # {'pool3': (N, 2048), 'logits': (N, 1008)}
"""

import functools
import os
from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from jaxgen.errors import CheckpointError, DataError
from jaxgen.evals import torch_pickle

WEIGHTS_URL = ('https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/'
               'pt_inception-2015-12-05-6726825d.pth')
WEIGHTS_FILENAME = 'pt_inception-2015-12-05-6726825d.pth'
WEIGHTS_ENV = 'JAXGEN_INCEPTION_WEIGHTS'
DEFAULT_WEIGHTS_PATH = os.path.join('~', '.cache', 'jaxgen', WEIGHTS_FILENAME)
INPUT_SIZE = 299
NUM_CLASSES = 1008  # the TF graph's softmax has 1008 outputs (1000 classes + 8 unused)
BN_EPSILON = 1e-3
MIN_INPUT_SIZE = 75  # the smallest input the trunk's valid convolutions and poolings admit

Precision = Any


# ---------------------------------------------------------------------------------------------
# Pooling with PyTorch's padding semantics


def _pads(padding: int):
  return ((0, 0), (padding, padding), (padding, padding), (0, 0))


def max_pool(x, window: int, stride: int, padding: int = 0):
  """F.max_pool2d: padding (if any) is -inf, so it never wins."""
  return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, window, window, 1), (1, stride, stride, 1),
                               _pads(padding))


def avg_pool_exclude_pad(x, window: int, stride: int, padding: int):
  """F.avg_pool2d(..., count_include_pad=False): each window's sum over its non-padded pixels, divided by their count."""
  dims, strides = (1, window, window, 1), (1, stride, stride, 1)
  summed = jax.lax.reduce_window(x, 0., jax.lax.add, dims, strides, _pads(padding))
  ones = jnp.ones((1,) + x.shape[1:3] + (1,), x.dtype)
  counts = jax.lax.reduce_window(ones, 0., jax.lax.add, dims, strides, _pads(padding))
  return summed / counts


# ---------------------------------------------------------------------------------------------
# Modules (names follow torchvision / pytorch-fid, so parameter paths map to state_dict keys)


class BasicConv2d(nn.Module):
  """Conv (no bias; PyTorch symmetric `padding`) -> BatchNorm(eps=1e-3, running stats) -> ReLU."""
  features: int
  kernel_size: tuple[int, int]
  strides: tuple[int, int] = (1, 1)
  padding: tuple[int, int] = (0, 0)
  precision: Precision = None

  @nn.compact
  def __call__(self, x):
    ph, pw = self.padding
    padding = 'VALID' if (ph, pw) == (0, 0) else ((ph, ph), (pw, pw))
    x = nn.Conv(self.features, self.kernel_size, strides=self.strides, padding=padding, use_bias=False,
                precision=self.precision, name='conv')(x)
    x = nn.BatchNorm(use_running_average=True, epsilon=BN_EPSILON, name='bn')(x)
    return nn.relu(x)


class InceptionA(nn.Module):
  """FIDInceptionA: 1x1 | 1x1-5x5 | 1x1-3x3-3x3 | avgpool(exclude pad)-1x1; 224 + pool_features channels."""
  pool_features: int
  precision: Precision = None

  @nn.compact
  def __call__(self, x):
    conv = functools.partial(BasicConv2d, precision=self.precision)
    b1 = conv(64, (1, 1), name='branch1x1')(x)
    b5 = conv(48, (1, 1), name='branch5x5_1')(x)
    b5 = conv(64, (5, 5), padding=(2, 2), name='branch5x5_2')(b5)
    b3 = conv(64, (1, 1), name='branch3x3dbl_1')(x)
    b3 = conv(96, (3, 3), padding=(1, 1), name='branch3x3dbl_2')(b3)
    b3 = conv(96, (3, 3), padding=(1, 1), name='branch3x3dbl_3')(b3)
    bp = conv(self.pool_features, (1, 1), name='branch_pool')(avg_pool_exclude_pad(x, 3, 1, 1))
    return jnp.concatenate([b1, b5, b3, bp], axis=-1)


class InceptionB(nn.Module):
  """Grid reduction 35 -> 17: 3x3/2 | 1x1-3x3-3x3/2 | maxpool 3x3/2; 384 + 96 + C_in channels."""
  precision: Precision = None

  @nn.compact
  def __call__(self, x):
    conv = functools.partial(BasicConv2d, precision=self.precision)
    b3 = conv(384, (3, 3), strides=(2, 2), name='branch3x3')(x)
    bd = conv(64, (1, 1), name='branch3x3dbl_1')(x)
    bd = conv(96, (3, 3), padding=(1, 1), name='branch3x3dbl_2')(bd)
    bd = conv(96, (3, 3), strides=(2, 2), name='branch3x3dbl_3')(bd)
    return jnp.concatenate([b3, bd, max_pool(x, 3, 2)], axis=-1)


class InceptionC(nn.Module):
  """FIDInceptionC: factorised 7x7 branches; avgpool(exclude pad)-1x1; 768 channels."""
  channels_7x7: int
  precision: Precision = None

  @nn.compact
  def __call__(self, x):
    conv = functools.partial(BasicConv2d, precision=self.precision)
    c7 = self.channels_7x7
    b1 = conv(192, (1, 1), name='branch1x1')(x)
    b7 = conv(c7, (1, 1), name='branch7x7_1')(x)
    b7 = conv(c7, (1, 7), padding=(0, 3), name='branch7x7_2')(b7)
    b7 = conv(192, (7, 1), padding=(3, 0), name='branch7x7_3')(b7)
    bd = conv(c7, (1, 1), name='branch7x7dbl_1')(x)
    bd = conv(c7, (7, 1), padding=(3, 0), name='branch7x7dbl_2')(bd)
    bd = conv(c7, (1, 7), padding=(0, 3), name='branch7x7dbl_3')(bd)
    bd = conv(c7, (7, 1), padding=(3, 0), name='branch7x7dbl_4')(bd)
    bd = conv(192, (1, 7), padding=(0, 3), name='branch7x7dbl_5')(bd)
    bp = conv(192, (1, 1), name='branch_pool')(avg_pool_exclude_pad(x, 3, 1, 1))
    return jnp.concatenate([b1, b7, bd, bp], axis=-1)


class InceptionD(nn.Module):
  """Grid reduction 17 -> 8: 1x1-3x3/2 | 1x1-1x7-7x1-3x3/2 | maxpool 3x3/2; 320 + 192 + C_in channels."""
  precision: Precision = None

  @nn.compact
  def __call__(self, x):
    conv = functools.partial(BasicConv2d, precision=self.precision)
    b3 = conv(192, (1, 1), name='branch3x3_1')(x)
    b3 = conv(320, (3, 3), strides=(2, 2), name='branch3x3_2')(b3)
    b7 = conv(192, (1, 1), name='branch7x7x3_1')(x)
    b7 = conv(192, (1, 7), padding=(0, 3), name='branch7x7x3_2')(b7)
    b7 = conv(192, (7, 1), padding=(3, 0), name='branch7x7x3_3')(b7)
    b7 = conv(192, (3, 3), strides=(2, 2), name='branch7x7x3_4')(b7)
    return jnp.concatenate([b3, b7, max_pool(x, 3, 2)], axis=-1)


class InceptionE(nn.Module):
  """FIDInceptionE_1 (pool='avg', count_include_pad=False) / FIDInceptionE_2 (pool='max'); 2048 channels."""
  pool: str
  precision: Precision = None

  @nn.compact
  def __call__(self, x):
    conv = functools.partial(BasicConv2d, precision=self.precision)
    b1 = conv(320, (1, 1), name='branch1x1')(x)
    b3 = conv(384, (1, 1), name='branch3x3_1')(x)
    b3 = jnp.concatenate([conv(384, (1, 3), padding=(0, 1), name='branch3x3_2a')(b3),
                          conv(384, (3, 1), padding=(1, 0), name='branch3x3_2b')(b3)], axis=-1)
    bd = conv(448, (1, 1), name='branch3x3dbl_1')(x)
    bd = conv(384, (3, 3), padding=(1, 1), name='branch3x3dbl_2')(bd)
    bd = jnp.concatenate([conv(384, (1, 3), padding=(0, 1), name='branch3x3dbl_3a')(bd),
                          conv(384, (3, 1), padding=(1, 0), name='branch3x3dbl_3b')(bd)], axis=-1)
    if self.pool == 'avg':
      pooled = avg_pool_exclude_pad(x, 3, 1, 1)
    elif self.pool == 'max':
      pooled = max_pool(x, 3, 1, 1)
    else:
      raise ValueError(f"InceptionE.pool must be 'avg' or 'max', got {self.pool!r}")
    bp = conv(192, (1, 1), name='branch_pool')(pooled)
    return jnp.concatenate([b1, b3, bd, bp], axis=-1)


class InceptionV3(nn.Module):
  """pytorch-fid's FID Inception-v3 on preprocessed NHWC images (see `preprocess`): {'pool3', 'logits'}.

  `precision` is the matmul/conv precision; the default HIGHEST keeps float32
  arithmetic on GPUs/TPUs too (no TF32/bf16 passes), so features do not depend
  on the accelerator. Pass None for the backend default (faster, less exact).
  """
  precision: Precision = jax.lax.Precision.HIGHEST

  @nn.compact
  def __call__(self, images):
    if images.ndim != 4 or images.shape[-1] != 3 or min(images.shape[1:3]) < MIN_INPUT_SIZE:
      raise DataError(f'InceptionV3 takes (N, H, W, 3) images with H, W >= {MIN_INPUT_SIZE} (normally 299, from '
                      f'`preprocess`), got shape {images.shape}.')
    conv = functools.partial(BasicConv2d, precision=self.precision)
    x = images.astype(jnp.float32)
    x = conv(32, (3, 3), strides=(2, 2), name='Conv2d_1a_3x3')(x)  # 149x149x32
    x = conv(32, (3, 3), name='Conv2d_2a_3x3')(x)  # 147x147x32
    x = conv(64, (3, 3), padding=(1, 1), name='Conv2d_2b_3x3')(x)  # 147x147x64
    x = max_pool(x, 3, 2)  # 73x73x64
    x = conv(80, (1, 1), name='Conv2d_3b_1x1')(x)  # 73x73x80
    x = conv(192, (3, 3), name='Conv2d_4a_3x3')(x)  # 71x71x192
    x = max_pool(x, 3, 2)  # 35x35x192
    p = self.precision
    x = InceptionA(32, p, name='Mixed_5b')(x)  # 35x35x256
    x = InceptionA(64, p, name='Mixed_5c')(x)  # 35x35x288
    x = InceptionA(64, p, name='Mixed_5d')(x)  # 35x35x288
    x = InceptionB(p, name='Mixed_6a')(x)  # 17x17x768
    x = InceptionC(128, p, name='Mixed_6b')(x)
    x = InceptionC(160, p, name='Mixed_6c')(x)
    x = InceptionC(160, p, name='Mixed_6d')(x)
    x = InceptionC(192, p, name='Mixed_6e')(x)  # 17x17x768
    x = InceptionD(p, name='Mixed_7a')(x)  # 8x8x1280
    x = InceptionE('avg', p, name='Mixed_7b')(x)  # 8x8x2048
    x = InceptionE('max', p, name='Mixed_7c')(x)  # 8x8x2048
    pool3 = jnp.mean(x, axis=(1, 2))  # adaptive average pool to 1x1
    logits = nn.Dense(NUM_CLASSES, precision=self.precision, name='fc')(pool3)
    return {'pool3': pool3, 'logits': logits}


# ---------------------------------------------------------------------------------------------
# Preprocessing


def bilinear_matrix(in_size: int, out_size: int) -> np.ndarray:
  """(out_size, in_size) weights of PyTorch's bilinear resize along one axis, align_corners=False, no antialias.

  Output pixel i samples the input at src = (i + 0.5) * in/out - 0.5 (half-pixel
  centres), clamped below at 0, and mixes pixels floor(src) and floor(src) + 1
  (clamped to in_size - 1) with weights 1 - frac and frac: PyTorch's
  `area_pixel_compute_source_index` for `upsample_bilinear2d`. PyTorch does
  this in float32 (for float32 images), with scale = float32(in) / out and
  src rounded once from the exact scale * (i + 0.5) - 0.5 (the compiled
  kernel's fused multiply-add); reproducing that gives torch's weights to the
  bit (checked against torch 2.13 on CPU). Downsampling does not widen the
  kernel: no antialiasing (F.interpolate's default, and what pytorch-fid does).
  """
  f32 = np.float32
  scale = f32(in_size) / f32(out_size)
  # float64 holds scale * (i + 0.5) - 0.5 exactly; one rounding to float32, as an FMA does
  src = (np.float64(scale) * (np.arange(out_size, dtype=np.float64) + 0.5) - 0.5).astype(f32)
  src = np.maximum(src, f32(0.))
  i0 = np.minimum(np.floor(src).astype(np.int64), in_size - 1)
  i1 = np.minimum(i0 + 1, in_size - 1)
  frac = src - i0.astype(f32)
  weights = np.zeros((out_size, in_size), f32)
  rows = np.arange(out_size)
  np.add.at(weights, (rows, i0), f32(1.) - frac)
  np.add.at(weights, (rows, i1), frac)
  return weights


def resize_bilinear(images, height: int, width: int):
  """(N, H, W, C) -> (N, height, width, C) as F.interpolate(mode='bilinear', align_corners=False) does.

  Two interpolation matrices (`bilinear_matrix`), applied along the width and
  then the height with float32 HIGHEST-precision contractions (each output sums
  two non-zero terms). jax.image.resize(method='linear', antialias=False) uses
  the same half-pixel rule and agrees to float rounding (tests check both);
  the explicit matrices make PyTorch's sampling rule visible and testable.
  """
  _, h, w, _ = images.shape
  if (h, w) == (height, width):
    return images  # identity weights: PyTorch returns the input values exactly too
  hi = jax.lax.Precision.HIGHEST
  x = jnp.einsum('pw,nhwc->nhpc', bilinear_matrix(w, width), images, precision=hi)
  return jnp.einsum('oh,nhpc->nopc', bilinear_matrix(h, height), x, precision=hi)


def preprocess(images, value_range=(0., 1.)):
  """Images as pytorch-fid feeds them to Inception: (N, 299, 299, 3) float32 in [-1, 1].

  images: (N, H, W, C) with C in {1, 3}, values in `value_range` (integer
  images need an explicit range, e.g. (0, 255) for uint8). Grayscale is
  repeated to 3 channels; values are mapped to [0, 1], resized to 299x299 with
  PyTorch's bilinear rule (half-pixel centres, align_corners=False, no
  antialiasing even when downsampling: `resize_bilinear`), then scaled 2x - 1
  — in pytorch-fid's order (resize, then normalise).
  """
  images = jnp.asarray(images)
  if images.ndim != 4 or images.shape[-1] not in (1, 3):
    raise DataError(f'FID Inception takes (N, H, W, C) images with C = 1 or 3, got shape {images.shape}.')
  low, high = (float(v) for v in value_range)
  if not high > low:
    raise DataError(f'value_range must be (low, high) with high > low, got {value_range}.')
  if not jnp.issubdtype(images.dtype, jnp.floating) and (low, high) == (0., 1.):
    raise DataError(f'preprocess got {images.dtype} images with value_range=(0, 1); for 8-bit images pass '
                    'value_range=(0, 255).')
  x = images.astype(jnp.float32)
  if (low, high) != (0., 1.):
    x = (x - low) / (high - low)
  if x.shape[-1] == 1:
    x = jnp.repeat(x, 3, axis=-1)
  x = resize_bilinear(x, INPUT_SIZE, INPUT_SIZE)
  return 2. * x - 1.


def apply_features(variables, images, value_range=(0., 1.)) -> dict:
  """preprocess + InceptionV3; pure, so jit it with your own shardings (variables as an argument)."""
  return InceptionV3().apply(variables, preprocess(images, value_range))


_apply_features_jit = jax.jit(apply_features, static_argnames='value_range')


def features_fn(variables):
  """images (N, H, W, C) in [0, 1] -> {'pool3': (N, 2048), 'logits': (N, 1008)}, compiled once per input shape.

  The variables are passed to the compiled function as arguments (not baked
  into it as constants). To jit inside a larger sharded program call
  `apply_features(variables, images)` there instead.
  """
  return functools.partial(_apply_features_jit, variables)


# ---------------------------------------------------------------------------------------------
# The PyTorch state_dict <-> Flax variables mapping


def _torch_name(collection: str, path: tuple) -> tuple[str, str]:
  """(state_dict key, layout) of the Flax variable `collection/path`; layout in {'conv', 'dense', 'vector'}.

  Conv kernels are HWIO in Flax and OIHW in PyTorch; Dense kernels are
  (in, out) in Flax and (out, in) in PyTorch; everything else is a vector.
  """
  *modules, leaf = path
  prefix = '.'.join(modules)
  if collection == 'params':
    if modules[-1] == 'conv' and leaf == 'kernel':
      return prefix + '.weight', 'conv'
    if modules[-1] == 'bn' and leaf in ('scale', 'bias'):
      return prefix + ('.weight' if leaf == 'scale' else '.bias'), 'vector'
    if modules == ['fc']:
      return ('fc.weight', 'dense') if leaf == 'kernel' else ('fc.bias', 'vector')
  elif collection == 'batch_stats' and modules[-1] == 'bn' and leaf in ('mean', 'var'):
    return prefix + ('.running_mean' if leaf == 'mean' else '.running_var'), 'vector'
  raise ValueError(f'No PyTorch name for Flax variable {collection}/{"/".join(path)}')


def _to_torch_layout(array, layout: str) -> np.ndarray:
  array = np.asarray(array)
  if layout == 'conv':
    return np.transpose(array, (3, 2, 0, 1))  # HWIO -> OIHW
  if layout == 'dense':
    return array.T  # (in, out) -> (out, in)
  return array


def _from_torch_layout(array, layout: str) -> np.ndarray:
  if layout == 'conv':
    return np.transpose(array, (2, 3, 1, 0))  # OIHW -> HWIO
  if layout == 'dense':
    return array.T
  return array


@functools.lru_cache(maxsize=1)
def _template():
  """[(collection, path, torch key, layout, flax shape)] in PyTorch's state_dict order.

  Flax sorts variable names, PyTorch lists modules in creation order, which is
  the order in which the blocks call their BasicConv2d's; record that order.
  """
  call_order = []

  def record(next_fun, args, kwargs, context):
    if context.method_name == '__call__' and isinstance(context.module, (BasicConv2d, nn.Dense)):
      if context.module.path not in call_order:
        call_order.append(context.module.path)
    return next_fun(*args, **kwargs)

  with nn.intercept_methods(record):
    abstract = jax.eval_shape(InceptionV3().init, jax.random.PRNGKey(0),
                              jax.ShapeDtypeStruct((1, INPUT_SIZE, INPUT_SIZE, 3), jnp.float32))
  flat = {c: flax.traverse_util.flatten_dict(flax.core.unfreeze(abstract[c])) for c in ('params', 'batch_stats')}
  per_module = (('params', ('conv', 'kernel')), ('params', ('bn', 'scale')), ('params', ('bn', 'bias')),
                ('batch_stats', ('bn', 'mean')), ('batch_stats', ('bn', 'var')),
                ('params', ('kernel',)), ('params', ('bias',)))  # the last two: the Dense `fc`
  entries = []
  for module_path in call_order:
    for collection, leaf in per_module:
      path = tuple(module_path) + leaf
      if path in flat[collection]:
        entries.append((collection, path) + _torch_name(collection, path) + (tuple(flat[collection][path].shape),))
  # torch's fc lists weight before bias, Dense creates kernel before bias: the orders agree.
  if len(entries) != sum(len(v) for v in flat.values()):
    raise AssertionError('InceptionV3 has variables outside BasicConv2d/fc; update _template.')
  return tuple(entries)


def _torch_shape(flax_shape: tuple, layout: str) -> tuple:
  if layout == 'conv':
    h, w, i, o = flax_shape
    return (o, i, h, w)
  if layout == 'dense':
    return tuple(reversed(flax_shape))
  return flax_shape


def pytorch_state_dict_shapes(num_batches_tracked: bool = False) -> dict:
  """{state_dict key: shape} of pytorch-fid's FID Inception, in its state_dict order.

  Derived from this module's variables through the same mapping that loads
  the weights. PyTorch's state_dict also has a 0-d int64
  `<bn>.num_batches_tracked` per BatchNorm (a training counter, unused here);
  include them with num_batches_tracked=True.
  """
  shapes = {}
  for _, _, key, layout, shape in _template():
    shapes[key] = _torch_shape(shape, layout)
    if num_batches_tracked and key.endswith('.bn.running_var'):
      shapes[key[:-len('running_var')] + 'num_batches_tracked'] = ()
  return shapes


def to_pytorch_state_dict(variables) -> dict:
  """Flax variables -> {state_dict key: float32 np.ndarray} (inverse of `from_pytorch_state_dict`)."""
  flat = {c: flax.traverse_util.flatten_dict(flax.core.unfreeze(variables[c])) for c in ('params', 'batch_stats')}
  return {key: np.ascontiguousarray(_to_torch_layout(flat[collection][path], layout))
          for collection, path, key, layout, _ in _template()}


def from_pytorch_state_dict(state_dict, source: str = 'the state dict') -> dict:
  """{'params', 'batch_stats'} from a pytorch-fid state_dict; CheckpointError on missing/extra keys or bad shapes."""
  expected = pytorch_state_dict_shapes()
  given = {k: v for k, v in state_dict.items() if not k.endswith('num_batches_tracked')}
  missing = [k for k in expected if k not in given]
  unexpected = [k for k in given if k not in expected]
  wrong = [f'{k}: {tuple(np.shape(given[k]))} (expected {expected[k]})' for k in expected
           if k in given and tuple(np.shape(given[k])) != expected[k]]
  if missing or unexpected or wrong:
    problems = []
    for what, keys in (('missing keys', missing), ('unexpected keys', unexpected), ('wrong shapes', wrong)):
      if keys:
        problems.append(f'{len(keys)} {what}: {", ".join(keys[:5])}{", ..." if len(keys) > 5 else ""}')
    raise CheckpointError(f'{source} is not the pytorch-fid FID Inception state dict ({WEIGHTS_FILENAME}): '
                          + '; '.join(problems) + '.')
  flat = {'params': {}, 'batch_stats': {}}
  for collection, path, key, layout, _ in _template():
    flat[collection][path] = jnp.asarray(_from_torch_layout(np.asarray(given[key], np.float32), layout))
  return {c: flax.traverse_util.unflatten_dict(v) for c, v in flat.items()}


def default_weights_path() -> str:
  """$JAXGEN_CACHE_DIR/<file>, with $JAXGEN_CACHE_DIR defaulting to ~/.cache/jaxgen (DEFAULT_WEIGHTS_PATH)."""
  cache = os.environ.get('JAXGEN_CACHE_DIR')
  return os.path.join(cache, WEIGHTS_FILENAME) if cache else os.path.expanduser(DEFAULT_WEIGHTS_PATH)


def weights_path(path=None) -> str:
  """The weights file to use: `path`, else $JAXGEN_INCEPTION_WEIGHTS, else $JAXGEN_CACHE_DIR (~/.cache/jaxgen)/<file>."""
  if path is None:
    path = os.environ.get(WEIGHTS_ENV) or default_weights_path()
  return os.path.expanduser(os.fspath(path))


def load_pytorch_fid_weights(path=None) -> dict:
  """Flax variables {'params', 'batch_stats'} from pytorch-fid's weights file (zip or legacy torch format)."""
  how = 'given path' if path is not None else (f'${WEIGHTS_ENV}' if os.environ.get(WEIGHTS_ENV) else 'default path')
  path = weights_path(path)
  if not os.path.isfile(path):
    raise DataError(f'FID Inception weights not found at {path} ({how}). Download {WEIGHTS_URL} '
                    f'(e.g. `mkdir -p ~/.cache/jaxgen && curl -L -o ~/.cache/jaxgen/{WEIGHTS_FILENAME} '
                    f'{WEIGHTS_URL}`) and put it at {default_weights_path()}, or point '
                    f'{WEIGHTS_ENV} (or the path argument) at the file.')
  return from_pytorch_state_dict(torch_pickle.load_state_dict(path), source=path)
