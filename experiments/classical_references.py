"""Reference numbers for experiments/results/classical.md, on jaxgen's own splits and preprocessing.

  unigram: add-one-smoothed byte frequencies of pysource's training windows (seq_len 256),
           cross-entropy on every test window (bits per byte, the HMM's nll_bpd convention)
  sklearn: GaussianMixture on the dequantized training split exactly as the GMM's first EM step
           sees it (TrainLoader batch 0 = the whole split, x = (x_int + u) / L) and scored on the
           nll evaluator's test batches (fixed eval noise); bits/dim = (-score + D log L) / (D log 2)

Run from the repository root: .venv/bin/python experiments/classical_references.py [unigram|digits|digits_ninit|digits_ours_init|mnist5k_diag|mnist5k_full]
"""
import math
import sys
import time

import numpy as np
import threadpoolctl

from jaxgen import data
from jaxgen.core.config import load_config_file


def config_file(name, arg=None):
  """get_config(arg) of configs/<name>, as the CLI loads it."""
  return load_config_file(f'configs/{name}' + (f':{arg}' if arg else ''))


def split_arrays(config, train_size):
  train = data.TrainLoader(config.data, train_size, config.train.seed).batch(0)['x']
  batches = list(data.eval_batches(config.data, 500))
  real = np.concatenate([b['mask'] for b in batches]) == 1
  test = np.concatenate([b['x'] for b in batches])[real]
  return train.reshape(len(train), -1).astype(np.float64), test.reshape(len(test), -1).astype(np.float64)


def unigram():
  config = config_file('classical/hmm_pysource.py', 'em')
  info = data.get_info(config.data)
  train, test = split_arrays(config, info.num_examples['train'])
  counts = np.bincount(train.astype(np.int64).ravel(), minlength=256) + 1.0
  log2p = np.log2(counts / counts.sum())
  print(f'unigram: {-log2p[test.astype(np.int64)].mean():.4f} bits/byte on {test.size} test bytes '
        f'(train {train.size} bytes)')


def gmm(name, covariance, iterations, settings=None):
  from sklearn.mixture import GaussianMixture
  config = config_file(f'classical/{name}.py', 'full' if covariance == 'full' and name == 'gmm_mnist5k' else None)
  info = data.get_info(config.data)
  train, test = split_arrays(config, info.num_examples['train'])
  dim = train.shape[1]
  # sklearn's defaults (tol 1e-3); as many iterations as ours
  for kwargs in settings or ({}, {'tol': 0.0, 'max_iter': iterations}):
    t0 = time.time()
    with threadpoolctl.threadpool_limits(2):
      model = GaussianMixture(10, covariance_type=covariance, reg_covar=1e-6, random_state=0, **kwargs).fit(train)
    nll = -model.score(test) + dim * math.log(info.levels)
    shown = {k: v for k, v in kwargs.items() if not k.endswith('_init')}
    print(f'sklearn {name} {covariance} {shown}{" from jaxgen init" if "means_init" in kwargs else ""}: {nll / (dim * math.log(2)):.4f} bits/dim test, train '
          f'{(-model.score(train) + dim * math.log(info.levels)) / (dim * math.log(2)):.4f}; '
          f'{model.n_iter_} iterations, converged={model.converged_}, {time.time() - t0:.0f} s')


if __name__ == '__main__':
  what = sys.argv[1]
  if what == 'unigram':
    unigram()
  elif what == 'digits':
    gmm('gmm_digits', 'full', 100)
  elif what == 'digits_ninit':   # the best of 10 k-means initialisations (by training likelihood)
    gmm('gmm_digits', 'full', 100, settings=({'n_init': 10},))
  elif what == 'digits_ours_init':   # from jaxgen's k-means++ initialisation (seed 0) of the config
    import jax
    from jaxgen import methods
    config = config_file('classical/gmm_digits.py', None)
    info = data.get_info(config.data)
    method = methods.get('gmm')(config, info)
    batch = data.TrainLoader(config.data, config.train.batch_size, config.train.seed).batch(0)
    state = jax.jit(method.init)(jax.random.PRNGKey(config.train.seed), {'x': batch['x']})
    w = np.asarray(jax.nn.softmax(state.params['gmm']['logits']), np.float64)
    cov = np.asarray(method.covariances(state.params), np.float64)
    init = dict(weights_init=w / w.sum(), means_init=np.asarray(state.params['gmm']['means'], np.float64),
                precisions_init=np.linalg.inv(cov), init_params='random')
    gmm('gmm_digits', 'full', 100, settings=(init, dict(init, tol=0.0, max_iter=100)))
  elif what == 'mnist5k_diag':
    gmm('gmm_mnist5k', 'diag', 100)
  elif what == 'mnist5k_full':
    gmm('gmm_mnist5k', 'full', 20)
