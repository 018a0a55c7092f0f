"""Data augmentation with a class-conditional generative model: does adding its samples help a small-data classifier?

    python experiments/augmentation.py --workdir=runs/vae_conditional [--labelled_per_class=10] [--generated=5000] [--seeds=3]

For each seed: draw `labelled_per_class` real training examples per class;
train the dataset's classifier (configs/classifier/<dataset>.py) on them alone,
and on them plus `generated` class-conditional samples (balanced labels) from
the run in --workdir; report both test accuracies (mean ± std over seeds).
The same helper (`jaxgen.evals.cas.fit_classifier`) trains the classifier of
the `cas` evaluator, so the two experiments share one recipe.
"""

import argparse
import platform

import jax
import numpy as np

from jaxgen import train
from jaxgen.core.mesh import gather_to_host, make_mesh
from jaxgen.data import eval_batches
from jaxgen.evals import cas
from jaxgen.evals.classification import accuracy_on_split
from jaxgen.evals.sample_quality import SampleGenerator, clean_data_config


def labelled_subset(data_config, per_class: int, seed: int):
  config = clean_data_config(data_config, data_config.train_split, 0)
  batches = list(eval_batches(config, 500))
  x = np.concatenate([b['x'][b['mask'] > 0] for b in batches])
  y = np.concatenate([b['label'][b['mask'] > 0] for b in batches])
  rng = np.random.default_rng(seed)
  picks = np.concatenate([rng.choice(np.flatnonzero(y == k), per_class, replace=False) for k in np.unique(y)])
  return x[picks], y[picks]


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
  parser.add_argument('--workdir', required=True, help='a trained class-conditional run')
  parser.add_argument('--labelled_per_class', type=int, default=10)
  parser.add_argument('--generated', type=int, default=5000)
  parser.add_argument('--seeds', type=int, default=3)
  parser.add_argument('--steps', type=int, default=0, help='classifier steps (0 = its config)')
  args = parser.parse_args()

  config, method, params = train.load_trained(args.workdir)
  if not method.conditional:
    raise SystemExit(f'error: the run in {args.workdir} is not class-conditional.')
  mesh = make_mesh(config.mesh)
  classifier_config = cas.classifier_config(config.data.name)
  test_config = clean_data_config(config.data, config.data.eval_split, 0)
  generator = SampleGenerator(method, mesh, 500, seed=1234)
  fake = np.clip(np.concatenate([gather_to_host(b)[:k] for b, k in generator.batches(params, args.generated)]), 0, 1)
  fake_y = np.arange(args.generated) % method.info.num_classes

  results = {'real only': [], 'real + generated': []}
  for seed in range(args.seeds):
    x, y = labelled_subset(config.data, args.labelled_per_class, seed)
    for name, (xs, ys) in {'real only': (x, y),
                           'real + generated': (np.concatenate([x, fake]), np.concatenate([y, fake_y]))}.items():
      clf, clf_params = cas.fit_classifier(classifier_config, method.info, xs, ys, mesh, args.steps, seed)
      results[name].append(accuracy_on_split(clf.apply, clf_params, test_config, mesh, 100)['accuracy'])

  print(f'run {args.workdir} ({config.method.name}, {config.data.name}); {args.labelled_per_class} labelled '
        f'examples per class, {args.generated} generated; {args.seeds} seeds; '
        f'{platform.machine()} {jax.devices()[0].device_kind} x{jax.device_count()}\n')
  print('| training set | test accuracy (mean ± std) |\n|---|---|')
  for name, accs in results.items():
    print(f'| {name} | {np.mean(accs):.4f} ± {np.std(accs):.4f} |')


if __name__ == '__main__':
  main()
