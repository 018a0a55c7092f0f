"""Where an autoregressive image model's test NLL goes: background (0), full ink (255), or the
anti-aliased edge values in between.

  python experiments/nll_by_pixel_value.py --workdirs=runs/cpu/pixelcnn,runs/cpu/pixelcnnpp

For each trained run (PixelCNN family or PixelCNN++, 8-bit grey images) it evaluates, with the
final trained parameters (not an EMA copy, as in the equal-budget comparison),
log p of every pixel of the whole test split given the pixels before it (the terms whose sum
is the exact NLL) and prints, per pixel-value class, the share of pixels, the mean NLL of a
pixel of that class in nats, and that class's nats per image. Then, for the edge values of
the first run's dataset: the share of the most frequent values, and the cross-entropy of the
test split's edge pixels under the training split's histogram of edge values, raw and smoothed
by a --smooth-value moving average (the cost of smoothness on the marginal). Used in
experiments/results/likelihood.md to see why PixelCNN++'s logistic mixture trails the
256-way softmax models at the equal budget.
"""

import os
import sys

from absl import app, flags

_WORKDIRS = flags.DEFINE_list('workdirs', ['runs/cpu/pixelcnn', 'runs/cpu/pixelcnnpp'], 'Trained runs.')
_BATCH = flags.DEFINE_integer('batch_size', 100, 'Test images per evaluation batch.')
_SMOOTH = flags.DEFINE_integer('smooth', 9, 'Width of the moving average over edge values.')

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLASSES = (('0 (background)', lambda v: v == 0), ('1-254 (edges)', lambda v: (v > 0) & (v < 255)),
           ('255 (full ink)', lambda v: v == 255))


def pixel_nll(workdir, batch_size):
  """(values [N, H, W] in 0..255, -log p per pixel [N, H, W]) over the run's test split."""
  import jax
  import numpy as np
  from jaxgen import data, train
  config, method, params = train.load_trained(workdir, final_params=True)
  if method.shape[-1] != 1 or not hasattr(method, 'pixel_log_prob'):
    raise SystemExit(f'{workdir}: needs a PixelCNN-family or PixelCNN++ run on grey images.')
  log_prob = jax.jit(method.pixel_log_prob)
  values, nll = [], []
  for batch in data.eval_batches(config.data, batch_size):
    keep = batch['mask'] > 0
    lp = np.asarray(log_prob(params, batch['x'])).reshape(len(keep), *method.shape[:2])
    values.append(np.round(batch['x'][keep, ..., 0] * 255).astype(int))
    nll.append(-lp[keep])
  return np.concatenate(values), np.concatenate(nll)


def split_values(data_config, split, batch_size):
  """Every pixel value (0..255) of a split, flat."""
  import numpy as np
  from jaxgen import data
  return np.concatenate([np.round(b['x'][b['mask'] > 0] * 255).astype(int).ravel()
                         for b in data.eval_batches(data_config, batch_size, split=split)])


def edge_histogram_costs(workdir, batch_size, width):
  """(share of the 4 most frequent edge values, test cross-entropy per edge pixel under the train
  histogram of edge values 1..254, the same under that histogram smoothed by a `width` moving average)."""
  import json
  import ml_collections
  import numpy as np
  config = ml_collections.ConfigDict(json.load(open(os.path.join(workdir, 'config.json'))))
  train, test = (split_values(config.data, split, batch_size) for split in ('train', 'test'))
  edge = lambda v: v[(v > 0) & (v < 255)] - 1
  p = np.bincount(edge(train), minlength=254) / len(edge(train))
  smooth = np.convolve(p, np.ones(width) / width, mode='same')
  smooth /= smooth.sum()
  test_edge = edge(test)
  return (np.sort(p)[-4:].sum(), -np.log(np.maximum(p[test_edge], 1e-12)).mean(),
          -np.log(smooth[test_edge]).mean())


def main(argv):
  del argv
  print('| run | pixel values | share of pixels | mean NLL per pixel (nats) | nats per image |')
  print('|---|---|---|---|---|')
  for workdir in _WORKDIRS.value:
    values, nll = pixel_nll(workdir, _BATCH.value)
    for name, select in CLASSES:
      chosen = select(values)
      print(f'| {os.path.basename(workdir)} | {name} | {chosen.mean():.3f} | {nll[chosen].mean():.4f} | '
            f'{nll[chosen].sum() / len(values):.1f} |')
    print(f'| {os.path.basename(workdir)} | all | 1.000 | {nll.mean():.4f} | {nll.sum() / len(values):.1f} |')
  top4, raw, smoothed = edge_histogram_costs(_WORKDIRS.value[0], _BATCH.value, _SMOOTH.value)
  print(f'\nedge values (1-254): the 4 most frequent are {top4:.1%} of edge pixels; test cross-entropy '
        f'per edge pixel under the train histogram {raw:.3f} nats, under it smoothed over {_SMOOTH.value} '
        f'values {smoothed:.3f} nats (+{smoothed - raw:.3f})')


if __name__ == '__main__':
  sys.path.insert(0, REPO)
  app.run(main)
