"""Sample quality of one trained DDPM under the ancestral sampler and DDIM with fewer steps.

  python experiments/diffusion_samplers.py --workdir=runs/cpu/ddpm --num=100

Restores the run in --workdir (its config.json: e.g. configs/diffusion/ddpm_mnist5k.py:cpu
trained by experiments/likelihood_comparison.py) and, for each sampler of --samplers (DDPM
with T steps, DDIM eta=0 with 100, 50 and 10 by default), draws --num samples with the
sample_quality evaluator's protocol (fixed keys, batches of --batch_size, the dataset's
classifier features, reference = the train split) and reports FD, KID, precision and recall,
the wall seconds of sampling plus feature extraction (compile included), and writes the first
64 samples as WORKDIR/samples/sampler_<name>_<step>.png. A first row gives the floor: the
first --num test images scored the same way (FD is biased upward at small n; KID is not).
Prints a Markdown table for experiments/results/diffusion.md.
"""

import os
import sys

from absl import app, flags

_WORKDIR = flags.DEFINE_string('workdir', 'runs/cpu/ddpm', 'A trained diffusion run.')
_NUM = flags.DEFINE_integer('num', 100, 'Samples per sampler.')
_BATCH = flags.DEFINE_integer('batch_size', 50, 'Samples per jitted sampler call.')
_SAMPLERS = flags.DEFINE_list('samplers', ['ddpm:1000', 'ddim:100', 'ddim:50', 'ddim:10'],
                              'sampler:steps pairs (ddpm uses all T steps).')

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GRID = 64


def restored_run(workdir, sampler, steps, num, batch_size):
  """train.Run of `workdir`'s config with `sampler`/`steps` and only a sample_quality evaluator."""
  import json
  import ml_collections
  from jaxgen import train
  from jaxgen.errors import CheckpointError
  path = os.path.join(workdir, 'config.json')
  if not os.path.exists(path):
    raise CheckpointError(f'{workdir} holds no jaxgen run (no config.json): train it first.')
  config = ml_collections.ConfigDict(json.load(open(path)))
  config.method.sampler, config.method.sample_steps = sampler, steps
  config.evals = ml_collections.ConfigDict({'sample_quality': {
      'every': 1, 'features': 'classifier', 'num_samples': num, 'batch_size': batch_size, 'seed': 0,
      'is_splits': min(10, num)}})
  run = train.setup(config, workdir, eval_names=['sample_quality'])
  if not run.resumed:
    raise CheckpointError(f'No checkpoint in {workdir}: train the run first.')
  return run


def floor(run, num):
  """The metrics of the first `num` test images against the same reference."""
  from jaxgen.evals.sample_quality import reference_features, sample_metrics
  evaluator = run.evaluators['sample_quality'][1]
  evaluator.prepare()
  test = reference_features(evaluator.extractor, run.config.data, 'test', evaluator.batch_size, num, run.is_main)
  return sample_metrics(evaluator.real, test, None, evaluator.eval_config)


def main(argv):
  del argv
  import jax
  from jaxgen.core.mesh import to_host
  from jaxgen.evals.samples import write_examples
  workdir = os.path.abspath(_WORKDIR.value)
  rows = []
  for spec in _SAMPLERS.value:
    sampler, steps = spec.split(':')
    run = restored_run(workdir, sampler, int(steps), _NUM.value, _BATCH.value)
    step = int(to_host(run.state.step))
    if not rows:
      rows.append(('test split (floor)', floor(run, _NUM.value)))
      print(rows[-1], flush=True)
    evaluator = run.evaluators['sample_quality'][1]
    metrics, grid = evaluator.measure(run.state.eval_params(), keep_images=GRID)
    steps = run.method.T if sampler == 'ddpm' else int(steps)
    png = write_examples(evaluator.ctx, f'sampler_{sampler}{steps}', step, grid)
    rows.append((f'{sampler.upper()} {steps} steps', metrics))
    print(rows[-1], png, flush=True)
    run.checkpointer.close()
    run.writer.close()
  print(f'\n{workdir}, step {step}, {_NUM.value} samples per row, backend {jax.default_backend()}')
  print('| samples | FD | KID | precision | recall | seconds (sampling + features) |')
  print('|---|---|---|---|---|---|')
  for name, m in rows:
    seconds = f"{m['sample_quality_seconds']:.0f}" if 'sample_quality_seconds' in m else '—'
    print(f"| {name} | {m['fid']:.2f} | {m['kid']:.3g} ± {m['kid_std']:.2g} | {m['precision']:.3f} | "
          f"{m['recall']:.3f} | {seconds} |")


if __name__ == '__main__':
  sys.path.insert(0, REPO)
  app.run(main)
