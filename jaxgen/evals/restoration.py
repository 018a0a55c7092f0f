"""`restoration`: inpainting, denoising and super-resolution of eval images, as PNGs and errors.

For a fixed random draw of `num` eval examples, each task in `tasks` corrupts them, asks the
method to restore them, and writes WORKDIR/samples/restoration_<task>_<step>.png with rows
alternating (original, corrupted, restored) per group of 8, and the .npy of the restored images.
Metrics (mean squared error in [0, 1] pixel units, per pixel):

  inpaint    the `mask` region ('bottom_half', 'right_half' or 'center': the middle half of each
             side) removed and generated: inpaint_mse over the generated region, inpaint_known_max_err
             the largest change of a known pixel (0: kept exactly)
  denoise    Gaussian noise of std `noise_std` added: denoise_mse, and noisy_mse of the input
  superres   the image average-pooled by the model's superres_factor: superres_mse, and
             upsampled_mse of the nearest-neighbour upsampled input
  reconstruct  no corruption: the method's `reconstruct` of the clean image (autoencoders):
             reconstruct_mse (the PNG rows are original, reconstructed)

denoise, superres and reconstruct also report <task>_psnr (and noisy_psnr, upsampled_psnr of the
input): the mean over images of 10 log10(1 / that image's MSE), in dB for pixels in [0, 1].

The method must provide `inpaint`, `denoise` and `super_resolve` (jaxgen/methods/diffusion.py),
or override `reconstruct`, for the tasks asked of it.
Config: every, num (default 16), seed, tasks (default ('inpaint', 'denoise')), mask, noise_std
(default 0.2), show (examples drawn in the PNG; default all num).
"""

import jax
import jax.numpy as jnp
import numpy as np

from jaxgen.core.mesh import replicated, round_up_to_shards, shard_batch, to_host
from jaxgen.data import TrainLoader
from jaxgen.errors import ConfigError
from jaxgen.evals import _overrides, register
from jaxgen.evals.samples import write_examples
from jaxgen.models.unet import downsample, upsample

TASKS = {'inpaint': 'inpaint', 'denoise': 'denoise', 'superres': 'super_resolve', 'reconstruct': 'reconstruct'}
MASKS = ('bottom_half', 'right_half', 'center')


def psnr(restored: np.ndarray, original: np.ndarray) -> float:
  """Mean over images of 10 log10(1 / per-image MSE), dB (peak 1); an exact image counts as 100 dB."""
  diff = np.asarray(restored, np.float64) - np.asarray(original, np.float64)
  mse = (diff ** 2).reshape(len(original), -1).mean(-1)
  # Float64 and an explicit 100 dB: a float32 floor of 1e-10 is not 1e-10, and gave 100.0000076.
  return float(np.mean(np.where(mse > 1e-10, -10.0 * np.log10(np.maximum(mse, 1e-10)), 100.0)))


def known_mask(shape, kind: str) -> np.ndarray:
  """[H, W, C] float32: 1 where the pixel is known, 0 in the region to generate."""
  h, w, c = shape
  mask = np.ones((h, w, c), np.float32)
  if kind == 'bottom_half':
    mask[h // 2:] = 0
  elif kind == 'right_half':
    mask[:, w // 2:] = 0
  elif kind == 'center':
    mask[h // 4:h - h // 4, w // 4:w - w // 4] = 0
  else:
    raise ConfigError(f'config.evals.restoration.mask={kind!r} is not one of {MASKS}.')
  return mask


@register('restoration')
class RestorationEvaluator:
  KEYS = ('num', 'seed', 'tasks', 'mask', 'noise_std', 'show')

  def __init__(self, eval_config, ctx):
    self.ctx = ctx
    self.tasks = tuple(eval_config.get('tasks', ('inpaint', 'denoise')))
    for task in self.tasks:
      if task not in TASKS:
        raise ConfigError(f'config.evals.restoration.tasks has {task!r}; valid tasks: {tuple(TASKS)}.')
      if not hasattr(ctx.method, TASKS[task]) or (task == 'reconstruct' and not _overrides(ctx.method, task)):
        raise ConfigError(f'config.evals.restoration task {task!r} needs {type(ctx.method).__name__}.'
                          f'{TASKS[task]}, which it does not define; remove the task.')
    if 'superres' in self.tasks and not getattr(ctx.method, 'superres_factor', 0):
      raise ConfigError("config.evals.restoration task 'superres' needs a model trained for it: set "
                        'config.method.superres_factor.')
    self.num = round_up_to_shards(int(eval_config.get('num', 16)), ctx.mesh)
    self.seed = int(eval_config.get('seed', 0))
    self.mask = jnp.asarray(known_mask(ctx.info.shape, eval_config.get('mask', 'bottom_half')))
    self.noise_std = float(eval_config.get('noise_std', 0.2))
    self.show = int(eval_config.get('show', 0) or self.num)
    self._examples = TrainLoader(ctx.config.data, self.num, self.seed, jax.process_index(), jax.process_count(),
                                 split=ctx.config.data.eval_split)
    self._restore = {task: jax.jit(getattr(self, f'_{task}'), out_shardings=replicated(ctx.mesh))
                     for task in self.tasks}

  # Each returns (original, corrupted input as an image, restored), all [N, H, W, C] in [0, 1].
  def _inpaint(self, params, batch, rng):
    x = batch['x']
    mask = jnp.broadcast_to(self.mask, x.shape)
    restored = self.ctx.method.inpaint(params, rng, x, mask, label=batch.get('label'))
    return x, x * mask, restored

  def _denoise(self, params, batch, rng):
    x = batch['x']
    noisy = x + self.noise_std * jax.random.normal(jax.random.fold_in(rng, 1), x.shape)
    return x, noisy, self.ctx.method.denoise(params, rng, noisy, self.noise_std, label=batch.get('label'))

  def _superres(self, params, batch, rng):
    x, f = batch['x'], self.ctx.method.superres_factor
    low = downsample(x, f)
    return x, upsample(low, f), self.ctx.method.super_resolve(params, rng, low, label=batch.get('label'))

  def _reconstruct(self, params, batch, rng):
    return batch['x'], batch['x'], self.ctx.method.reconstruct(params, batch, rng)

  def __call__(self, state, step):
    batch = self._examples.batch(0)
    if not self.ctx.method.conditional:
      batch.pop('label', None)
    params = state.eval_params()
    metrics = {}
    for i, task in enumerate(self.tasks):
      original, corrupted, restored = (np.asarray(to_host(a)) for a in self._restore[task](
          params, shard_batch(batch, self.ctx.mesh), jax.random.PRNGKey(self.seed + i)))
      rows = []
      for start in range(0, min(self.show, self.num), 8):
        end = min(start + 8, self.show)
        rows += [original[start:end]] + ([] if task == 'reconstruct' else [np.clip(corrupted[start:end], 0, 1)])
        rows += [restored[start:end]]
      write_examples(self.ctx, f'restoration_{task}', step, np.concatenate(rows), columns=8)
      err = (restored - original) ** 2
      if task == 'inpaint':
        unknown = 1.0 - np.asarray(self.mask)
        metrics['inpaint_mse'] = float((err * unknown).sum() / (unknown.sum() * len(err)))
        metrics['inpaint_known_max_err'] = float(np.abs((restored - original) * np.asarray(self.mask)).max())
      elif task == 'denoise':
        metrics['denoise_mse'] = float(err.mean())
        metrics['noisy_mse'] = float(((corrupted - original) ** 2).mean())
        metrics['denoise_psnr'], metrics['noisy_psnr'] = psnr(restored, original), psnr(corrupted, original)
      elif task == 'superres':
        metrics['superres_mse'] = float(err.mean())
        metrics['upsampled_mse'] = float(((corrupted - original) ** 2).mean())
        metrics['superres_psnr'], metrics['upsampled_psnr'] = psnr(restored, original), psnr(corrupted, original)
      else:
        metrics['reconstruct_mse'] = float(err.mean())
        metrics['reconstruct_psnr'] = psnr(restored, original)
    return metrics
