"""Denoising autoencoder on mnist5k: configs/classical/autoencoder_mnist5k.py trained on corrupted inputs.

    python -m jaxgen.main --config=configs/classical/dae_mnist5k.py --workdir=runs/classical/dae
    python -m jaxgen.main --config=configs/classical/dae_mnist5k.py:masking --workdir=runs/classical/dae_masking

`gaussian` (default): inputs x + 0.3 n, n ~ N(0, I), the test noise of the `restoration`
evaluator's 'denoise' task, so denoise_psnr measures the task it was trained for.
`masking`: each pixel set to 0 with probability 0.25 (Vincent et al., 2010); it is
evaluated on the same Gaussian-noise task, which it was not trained for.
Either reconstructs the clean target; the same network, budget and evaluators as the plain
autoencoder, whose numbers are the baseline. `:smoke` (`:gaussian,smoke`, `:masking,smoke`)
is a seconds-long run for the tests.

Expected result: `gaussian` after 1,500 steps of 128 (one run, seed 0): denoise_psnr 20.81 dB (denoise_mse
0.00926) from noisy_psnr 10.45 dB on the 500 test images, against 16.33 dB for the plain autoencoder;
clean reconstruct_psnr 21.37 dB (reconstruct_mse 0.00819; plain: 22.83 dB). 6.3 min of CPU time.
`masking`: denoise_psnr 13.16 dB on that Gaussian task (not its training noise), reconstruct_psnr 21.88 dB.
"""

import os

from jaxgen.core.config import load_config_file

NOISE = {'gaussian': 0.3, 'masking': 0.25}


def get_config(arg=None):
  parts = [p for p in (arg or 'gaussian').split(',') if p]
  if any(p not in tuple(NOISE) + ('smoke',) for p in parts) or sum(p in NOISE for p in parts) > 1:
    raise ValueError(f'configs/classical/dae_mnist5k.py takes "[gaussian|masking][,smoke]", got {arg!r}.')
  noise = next((p for p in parts if p in NOISE), 'gaussian')
  base = os.path.join(os.path.dirname(__file__), 'autoencoder_mnist5k.py')
  config = load_config_file(base + (':smoke' if 'smoke' in parts else ''))
  config.method.noise = noise
  config.method.noise_level = NOISE[noise]
  return config
