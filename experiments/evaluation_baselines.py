"""Sample-quality floor and baselines on an image dataset, with the same code every model is judged by.

    python experiments/evaluation_baselines.py --dataset=mnist5k [--num_samples=10000] [--feature_workdir=DIR]

Rows (all against the cached features of the train split, the reference every
`sample_quality` evaluation uses):

  test split      the dataset's own held-out images: the floor a perfect model reaches
                  with this many images (FD is biased upward for small sets)
  gaussian noise  i.i.d. pixels ~ N(pixel mean, pixel std), clipped to [0, 1]
  fitted gaussian one multivariate Gaussian (full covariance) fitted to the
                  train pixels, samples clipped to [0, 1]

and the wall time of evaluating `num_samples` generated images (feature
extraction + all metrics). Prints a markdown table.
"""

import argparse
import platform
import time

import jax
import numpy as np

from jaxgen.core.config import base_config
from jaxgen.core.mesh import batch_sharding, make_mesh, round_up_to_shards
from jaxgen.data import eval_batches, get_info
from jaxgen.evals import features as features_lib
from jaxgen.evals.sample_quality import FeatureExtractor, clean_data_config, reference_features, sample_metrics


def split_images(data_config, split: str) -> np.ndarray:
  config = clean_data_config(data_config, split, 0)
  return np.concatenate([b['x'][b['mask'] > 0] for b in eval_batches(config, 500)])


def features_of(extractor, images: np.ndarray, batch_size: int, mesh):
  feats, logits = [], []
  for start in range(0, len(images), batch_size):
    chunk = images[start:start + batch_size]
    keep = len(chunk)
    chunk = np.concatenate([chunk, np.repeat(chunk[-1:], batch_size - keep, 0)])
    f, lg = extractor(jax.device_put(chunk, batch_sharding(mesh)))
    feats.append(f[:keep])
    logits.append(lg[:keep])
  return np.concatenate(feats), np.concatenate(logits)


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--dataset', default='mnist5k')
  parser.add_argument('--num_samples', type=int, default=10000)
  parser.add_argument('--feature_workdir', default='')
  parser.add_argument('--seed', type=int, default=0)
  args = parser.parse_args()

  config = base_config()
  config.data.name = args.dataset
  mesh = make_mesh(config.mesh)
  info = get_info(config.data)
  workdir = args.feature_workdir or features_lib.ensure_classifier(args.dataset)
  network = features_lib.classifier_features(workdir, mesh, info.shape)
  extractor = FeatureExtractor(network, mesh)
  batch_size = round_up_to_shards(500, mesh)
  real = reference_features(extractor, config.data, 'train', batch_size)
  eval_config = {'seed': args.seed}

  train = split_images(config.data, 'train')
  rng = np.random.default_rng(args.seed)
  flat = train.reshape(len(train), -1).astype(np.float64)
  mean, std = flat.mean(0), flat.std(0)
  baselines = {
      # Shuffled: the Inception Score splits samples into contiguous groups and assumes i.i.d. order,
      # but splits of the offline datasets are sorted by class.
      'test split': rng.permutation(split_images(config.data, 'test')),
      'gaussian noise': rng.normal(mean, std, (args.num_samples, flat.shape[1])),
      'fitted gaussian': rng.multivariate_normal(mean, np.cov(flat, rowvar=False), args.num_samples,
                                                 method='eigh'),
  }
  rows = []
  for name, images in baselines.items():
    images = np.clip(images, 0, 1).astype(np.float32).reshape((-1,) + tuple(info.shape))
    t0 = time.perf_counter()
    fake, logits = features_of(extractor, images, batch_size, mesh)
    result = sample_metrics(real, fake, logits, eval_config)
    result['seconds'] = time.perf_counter() - t0
    rows.append((name, len(images), result))

  print(f'dataset {args.dataset}; reference: train split ({len(real)} images); features: {network.name}; '
        f'{platform.machine()} {jax.devices()[0].device_kind} x{jax.device_count()}\n')
  print('| samples | n | FD | KID | precision | recall | IS | eval seconds |')
  print('|---|---|---|---|---|---|---|---|')
  for name, n, r in rows:
    print(f"| {name} | {n} | {r['fid']:.3f} | {r['kid']:.3g} ± {r['kid_std']:.2g} | "
          f"{r['precision']:.3f} | {r['recall']:.3f} | {r['is']:.2f} | {r['seconds']:.1f} |")


if __name__ == '__main__':
  main()
