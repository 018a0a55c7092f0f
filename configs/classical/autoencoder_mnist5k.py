"""Convolutional autoencoder on mnist5k (8-bit MNIST subset, pixels in [0, 1]), MSE loss, no noise.

    python -m jaxgen.main --config=configs/classical/autoencoder_mnist5k.py --workdir=runs/classical/ae

The VAE's network (configs/vae/mnist5k.py: stride-2 convs 32, 64, Dense 256, a 32-number
code, mirrored decoder) as a deterministic autoencoder. Evaluation: `restoration` on the whole
test split (500 images) reports the test reconstruction error (reconstruct_mse /
reconstruct_psnr) and, for comparison with configs/classical/dae_mnist5k.py, how well the
plain autoencoder cleans test images with Gaussian noise of std 0.3 (denoise_mse /
denoise_psnr against noisy_mse / noisy_psnr of the noisy input); `reconstructions` and
`samples` (codes drawn from the Gaussian fitted to the training codes) write PNG grids.

Expected result: after 1,500 steps of 128 (one run, seed 0), test reconstruct_mse 0.00628 = reconstruct_psnr
22.83 dB; Gaussian noise 0.3 (noisy_psnr 10.45 dB) cleaned to denoise_psnr 16.33 dB (denoise_mse 0.0247).
5.4 min of CPU time (8 min wall on a shared 2-core CPU).
"""

import ml_collections

from jaxgen.core.config import base_config, smoke_budget


def get_config(arg=None):
  if arg not in (None, '', 'smoke'):
    raise ValueError(f'configs/classical/autoencoder_mnist5k.py takes "" or "smoke", got {arg!r}.')
  config = base_config()
  config.method.name = 'autoencoder'
  config.method.loss = 'mse'
  config.method.noise = 'none'
  config.method.noise_level = 0.0
  config.method.code_decay = 0.99

  config.model.arch = 'conv'
  config.model.latent_dim = 32
  config.model.channels = (32, 64)          # 28 -> 14 -> 7
  config.model.hidden = (256,)

  config.data.name = 'mnist5k'

  config.train.steps = 1500
  config.train.batch_size = 128
  config.train.log_every = 50
  config.train.eval_every = 750
  config.train.checkpoint_every = 750
  config.train.eval_batch_size = 100
  config.optim.lr = 1e-3
  config.optim.schedule = 'cosine'
  config.optim.warmup_steps = 100
  config.optim.final_lr_ratio = 0.1

  config.evals.restoration = ml_collections.ConfigDict({
      'every': 1500, 'num': 500, 'show': 16, 'tasks': ('reconstruct', 'denoise'), 'noise_std': 0.3})
  config.evals.reconstructions = ml_collections.ConfigDict({'every': 750, 'num': 32})
  config.evals.samples = ml_collections.ConfigDict({'every': 750, 'num': 64})

  if arg == 'smoke':
    config.model.latent_dim = 4
    config.model.channels = (4, 8)
    config.model.hidden = (16,)
    smoke_budget(config, steps=6, batch_size=16, eval_examples=32, samples=16)
    config.evals.restoration.num = config.evals.restoration.show = 8
    config.evals.reconstructions.num = 8
  return config
