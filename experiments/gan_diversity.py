"""Diagnostic: does a GAN's generator stay diverse while it trains? (mode-collapse onset)

  python experiments/gan_diversity.py --config=stylegan2_ada_mnist5k.py --steps=600 --every=200 \
      --set=model.output_activation=linear
  python experiments/gan_diversity.py --workdir=runs/gan/sg2_subset10_ada

Trains the config (configs/gan/...) in this process on one device, no checkpoints, and every
`--every` steps prints, for the raw and the EMA generator at 1,000 latents:

  pix_std   the per-pixel standard deviation over z (noise inputs off), averaged over pixels: how much
            the image depends on the latent (a collapsed generator gives ~0; the 5,000 mnist5k
            digits give 0.386 on the [-1, 1] scale);
  classes   how many of the 10 digit classes the offline LeNet (the sample-quality features of
            configs/classifier/<dataset>.py) assigns at least 2% of the samples, and the largest
            class's share;

with the step's discriminator logits on real and fake data and ADA's p. `--set=key=value`
overrides config keys (Python literals) so that candidate causes of a collapse can be switched off
one at a time; `--generator_from=OTHER.py` trains another config's generator against this config's
discriminator and training (a generator defect or a training one?). `--workdir=RUN` reports a run's latest checkpoint instead (it may still be training).
The findings are in experiments/results/gan.md ("StyleGAN2-ADA").
"""

import ast
import os
import tempfile

from absl import app, flags

_CONFIG = flags.DEFINE_string('config', 'stylegan2_ada_mnist5k.py:subset10', 'Config under configs/gan/.')
_STEPS = flags.DEFINE_integer('steps', 1000, 'Training steps.')
_EVERY = flags.DEFINE_integer('every', 250, 'Report every this many steps.')
_NUM = flags.DEFINE_integer('num', 1000, 'Latents per report.')
_SET = flags.DEFINE_multi_string('set', [], 'Config overrides key=value (a Python literal).')
_SEED = flags.DEFINE_integer('seed', 0, 'config.seed.')
_WORKDIR = flags.DEFINE_string('workdir', '', 'Instead of training: report a trained run\'s latest checkpoint '
                               '(e.g. runs/gan/sg2_subset10_ada, while it trains).')
_GENERATOR_FROM = flags.DEFINE_string('generator_from', '', 'Another config under configs/gan/ whose generator '
                                      'replaces this one\'s (the discriminator and training stay): tells a '
                                      'generator defect from a training one.')


def _override(config, assignment: str):
  key, _, text = assignment.partition('=')
  try:
    value = ast.literal_eval(text)
  except (ValueError, SyntaxError):
    value = text
  *path, last = key.split('.')
  target = config
  for part in path:
    target = target[part]
  target[last] = value


def _swap_generator(model_config):
  """Make gan_nets.build return the generator (and latent shape) of `model_config`."""
  import dataclasses
  from jaxgen.models import gan_nets
  build = gan_nets.build

  def swapped(config, info):
    other = build(model_config, info)
    return dataclasses.replace(build(config, info), generator=other.generator, latent_shape=other.latent_shape,
                               sample_kwargs=other.sample_kwargs)
  gan_nets.build = swapped


def diversity(method, params, classify, num: int, key):
  """(per-pixel std over z with the noise inputs off, the classifier's class shares of the samples)."""
  import jax
  import jax.numpy as jnp
  import numpy as np
  kwargs = {'noise_mode': 'none'} if hasattr(method.nets.generator, 'synthesis') else {}
  x, _ = method.generate(params['generator'], params['generator_state'], key, num, None, params['schedule'],
                         train=False, **kwargs)
  pix_std = float(jnp.mean(jnp.std(x, axis=0)))
  logits = classify(method.to_data(x))
  predictions = np.asarray(jnp.argmax(logits, axis=-1))
  return pix_std, np.bincount(predictions, minlength=logits.shape[-1]) / num


def _classifier(dataset, mesh, shape):
  import jax
  from jaxgen.evals import features
  net = features.classifier_features(features.ensure_classifier(dataset), mesh, shape)
  return jax.jit(lambda x: net.apply(net.params, x)[1])


def _cells(std, hist):
  """The table cells 'pix_std' and 'classes with >= 2% (the largest share)'."""
  return f'{std:.3f}', f'{int(sum(hist >= 0.02))} ({hist.max():.2f})'


def report_trained(workdir: str, num: int):
  """One row for the latest checkpoint of the run in `workdir` (raw and EMA generator)."""
  import jax
  from jaxgen import train
  _, method, raw = train.load_trained(workdir, final_params=True)
  _, _, ema = train.load_trained(workdir)
  classify = _classifier(method.config.data.name, None, method.info.shape)
  key = jax.random.PRNGKey(1234)
  (raw_std, raw_classes), (ema_std, ema_classes) = (_cells(*diversity(method, p, classify, num, key)) for p in (raw, ema))
  print(f'{workdir} (latest checkpoint)\n| pix_std raw | pix_std EMA | classes raw (max share) | classes EMA (max share) |'
        f'\n|---|---|---|---|\n| {raw_std} | {ema_std} | {raw_classes} | {ema_classes} |', flush=True)


def train_with_reports(config, steps: int, every: int, num: int):
  """Train `config` for `steps` on one device (no checkpoints, no evaluators); every `every` steps
  (and at 0) yield (step, the last step's metrics, (pix_std, class shares) of the raw generator, the
  same of the EMA generator)."""
  import jax
  from jaxgen import train
  from jaxgen.core.mesh import shard_batch
  config = config.copy_and_resolve_references()
  config.evals = {}
  config.mesh.data, config.mesh.fsdp, config.mesh.tensor = -1, 1, 1
  config.train.steps = steps
  with tempfile.TemporaryDirectory() as workdir:
    run = train.setup(config, workdir, devices=jax.devices()[:1], restore=False, eval_names=[])
    step_fn = train.jit_step(run)
    state, metrics = run.state, {}
    classify = _classifier(config.data.name, run.mesh, run.method.info.shape)
    for step in range(steps + 1):
      if step % every == 0:
        key = jax.random.PRNGKey(1234)
        yield (step, jax.tree.map(float, metrics),
               *(diversity(run.method, params, classify, num, key) for params in (state.params, state.eval_params())))
      if step < steps:
        state, metrics = step_fn(state, shard_batch(run.loader.batch(step), run.mesh))
    run.checkpointer.close()
    run.writer.close()


def main(argv):
  del argv
  if _WORKDIR.value:
    return report_trained(_WORKDIR.value, _NUM.value)
  from jaxgen.core.config import load_config_file
  repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  config = load_config_file(os.path.join(repo, 'configs', 'gan', _CONFIG.value))
  for assignment in _SET.value:
    _override(config, assignment)
  config.seed = _SEED.value
  if _GENERATOR_FROM.value:
    _swap_generator(load_config_file(os.path.join(repo, 'configs', 'gan', _GENERATOR_FROM.value)).model)
  swapped = f' generator of {_GENERATOR_FROM.value}' if _GENERATOR_FROM.value else ''
  print(f'{_CONFIG.value}{swapped} {" ".join(_SET.value)} seed {_SEED.value}\n'
        '| step | d_real | d_fake | ada_p | pix_std raw | pix_std EMA | classes raw (max share) | '
        'classes EMA (max share) |\n|---|---|---|---|---|---|---|---|', flush=True)
  for step, metrics, raw, ema in train_with_reports(config, _STEPS.value, _EVERY.value, _NUM.value):
    get = lambda k: f'{metrics[k]:.2f}' if k in metrics else '-'  # noqa: E731
    (raw_std, raw_classes), (ema_std, ema_classes) = _cells(*raw), _cells(*ema)
    print(f'| {step} | {get("d_real")} | {get("d_fake")} | {get("ada_p")} | {raw_std} | {ema_std} | {raw_classes} | '
          f'{ema_classes} |', flush=True)


if __name__ == '__main__':
  app.run(main)
