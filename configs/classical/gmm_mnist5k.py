"""A Gaussian mixture fitted by EM to dequantized `mnist5k` (784 dimensions), diagonal covariances.

    python -m jaxgen.main --config=configs/classical/gmm_mnist5k.py --workdir=runs/gmm_mnist5k
    python -m jaxgen.main --config=configs/classical/gmm_mnist5k.py:full --workdir=runs/gmm_mnist5k_full

configs/classical/gmm_digits.py (10 components, k-means++, one full-batch EM iteration per step,
100 iterations) on the whole mnist5k training split (4,500 images, fresh dequantization noise
x = (x_int + u) / 256 each iteration). `nll_bpd` is test bits/dim of the 8-bit data (density of x
plus 784 log 256 nats). Diagonal covariances by default; the `full` variant fits full covariances
(307k parameters per component for ~450 images per component: see the results for how that
generalises).

Expected result (2-core CPU, no accelerator): diagonal, test 6.836 bits/dim after 100 iterations
(train about 4.4: pixels nearly constant in the training images get variances near the
dequantization noise's, and test images that use them pay for it); scikit-learn's diagonal
GaussianMixture on the same split: 7.255. The `full` variant overfits far worse: 17.55 bits/dim
test after 20 iterations (train about 4.0), ~10 s of CPU per iteration; diagonal is the one that fits.
"""

import os

from jaxgen.core.config import load_config_file, smoke_budget

TRAIN_SIZE = 4500   # the mnist5k train split: one batch = one full-batch EM iteration


def get_config(arg=None):
  args = set((arg or '').split(',')) - {''}
  if args - {'full', 'smoke'}:
    raise ValueError(f'configs/classical/gmm_mnist5k.py takes full and/or smoke; got {arg!r}.')
  config = load_config_file(os.path.join(os.path.dirname(__file__), 'gmm_digits.py'))
  config.model.covariance = 'full' if 'full' in args else 'diag'
  config.data.name = 'mnist5k'
  config.train.batch_size = TRAIN_SIZE
  config.train.eval_batch_size = 500
  if 'smoke' in args:
    config.model.components = 2
    config.data.max_train_examples = 256
    smoke_budget(config, steps=4, batch_size=256, eval_examples=32, samples=16)
  return config
