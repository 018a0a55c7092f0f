"""Gaussian-Bernoulli RBM on scikit-learn's 8x8 digits, standardised, with samples as PNG grids.

    python -m jaxgen.main --config=configs/ebm/rbm_digits_gaussian.py --workdir=runs/rbm/digits_gaussian

Unit-variance Gaussian visibles on the standardised pixels (each pixel minus its training mean,
over its training std: the statistics of the first epoch, jaxgen/methods/rbm.py) and 256 binary
hidden units, trained by CD-1 as configs/ebm/rbm_mnist5k_binary.py:cd1 (momentum 0.5 for 5 epochs
then 0.9, weight decay 2e-4, 3,000 steps, the learning rate decayed linearly to 0) with Hinton's
guide's smaller learning rate for Gaussian visibles (0.005) and batches of 64 (~120 epochs of the
1,617 training images). `:smoke` is the seconds-long run of the tests.

Data: config.data.dequantize=True (x = (k + u) / 17 for the 17 grey levels), so the model is a
density on [0, 1]^64 and `nll_nats` (AIS with 1,000 betas) is an upper bound on the discrete NLL,
like the other dequantized families' (the VAE with a discretized logistic decoder on digits,
configs/vae/digits.py: 82.5 nats). Samples are the means E[v | h] after 1,000 Gibbs steps, mapped
back to [0, 1]; `gibbs_chain` shows the chains' progression.

Expected result (seed 0): test nll_nats 141.9 (3.20 bits/dim; AIS log Z 217.39, std 0.03 over two
runs of 100 chains), train 142.6; 86 s of training and evaluation on the shared 2-core CPU. A
unit-variance Gaussian RBM is a weak density model of these images (the VAE: 82.5).
"""

import os

from jaxgen.core.config import load_config_file


def get_config(arg=None):
  if arg not in (None, 'smoke'):
    raise ValueError(f'configs/ebm/rbm_digits_gaussian.py takes "" or "smoke", got {arg!r}.')
  binary = os.path.join(os.path.dirname(__file__), 'rbm_mnist5k_binary.py')
  config = load_config_file(binary + (':cd1,smoke' if arg == 'smoke' else ':cd1'))
  config.method.visible = 'gaussian'
  config.data.name = 'digits'
  config.data.binarize = ''
  config.data.dequantize = True
  config.optim.lr = 0.005
  if arg is None:
    config.model.hidden = 256
    config.method.momentum_steps = 130      # 5 epochs of 26 steps
    config.method.ais_betas = (100, 400, 500)
    config.train.batch_size = 64
    config.train.eval_batch_size = 180
  return config
