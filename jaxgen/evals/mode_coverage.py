"""`mode_coverage`: how many mixture modes a model of toy2d/ring8 or toy2d/grid25 covers.

The protocol of the mode-collapse literature (VEEGAN, Srivastava et al. 2017;
PacGAN, Lin et al. 2018): draw `num_samples` (default 2,500) samples with a
fixed key; a sample is high-quality when it lies within `num_std` (default 3)
standard deviations of its nearest mode centre; `modes` counts the centres with
at least `min_count` (default 20) high-quality samples, and `hq_fraction` is the
fraction of high-quality samples (see jaxgen.evals.metrics.mode_coverage).
"""

import jax
import numpy as np

from jaxgen.core.mesh import replicated, round_up_to_shards, to_host
from jaxgen.data.builders import toy2d
from jaxgen.errors import ConfigError
from jaxgen.evals import metrics, register, require_sampler

_STD = {'ring8': toy2d.RING8_STD, 'grid25': toy2d.GRID25_STD}


@register('mode_coverage')
class ModeCoverageEvaluator:
  """Config: every, num_samples (2500), num_std (3), min_count (20), seed."""
  KEYS = ('num_samples', 'num_std', 'min_count', 'seed')

  def __init__(self, eval_config, ctx):
    require_sampler(ctx.method, 'mode_coverage')
    name = ctx.config.data.name
    mixture = name.split('/', 1)[1] if name.startswith('toy2d/') else ''
    if mixture not in _STD:
      raise ConfigError(f'config.evals.mode_coverage needs toy2d/ring8 or toy2d/grid25 data, not {name!r}.')
    self.centres, self.std = toy2d.centres(mixture), _STD[mixture]
    self.num = int(eval_config.get('num_samples', 2500))
    self.num_std = float(eval_config.get('num_std', 3.0))
    self.min_count = int(eval_config.get('min_count', 20))
    self.seed = int(eval_config.get('seed', 0))
    padded = round_up_to_shards(self.num, ctx.mesh)
    self._sample = jax.jit(lambda params, rng: ctx.method.sample(params, rng, padded),
                           out_shardings=replicated(ctx.mesh))

  def __call__(self, state, step):
    samples = to_host(self._sample(state.eval_params(), jax.random.PRNGKey(self.seed)))[:self.num]
    result = metrics.mode_coverage(np.asarray(samples, np.float64), self.centres, self.std,
                                   num_std=self.num_std, min_count=self.min_count)
    return {'modes': float(result['modes']), 'hq_fraction': float(result['hq_fraction'])}
