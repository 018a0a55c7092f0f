"""Command line: train, evaluate or sample any experiment config.

  python -m jaxgen.main --config=configs/vae/mnist5k.py --workdir=runs/vae
  python -m jaxgen.main --config=configs/vae/mnist5k.py:smoke --workdir=/tmp/x --config.optim.lr=3e-4
  python -m jaxgen.main --config=configs/vae/mnist5k.py --workdir=runs/vae --mode=eval
  python -m jaxgen.main --config=configs/vae/mnist5k.py --workdir=runs/vae --mode=sample

Multi-host: add --coordinator_address=HOST:PORT --num_processes=N --process_id=I
on every host (SLURM and Cloud TPU pods are detected without flags).
Errors a user can cause end with one message (exit code 1), no traceback.
"""

import os
import re
import sys

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')  # TensorFlow (used by TFDS) is silent unless it fails
os.environ.setdefault('TF_ENABLE_ONEDNN_OPTS', '0')

from absl import app, flags, logging
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file('config', None, 'Experiment config file, e.g. configs/vae/mnist5k.py[:smoke].',
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Directory for checkpoints, metrics and samples.')
_MODE = flags.DEFINE_enum('mode', 'train', ['train', 'eval', 'sample'],
                          'train (resumes from the workdir), eval (latest checkpoint), or sample.')
_COORDINATOR = flags.DEFINE_string('coordinator_address', '', 'host:port of process 0, for multi-host runs.')
_NUM_PROCESSES = flags.DEFINE_integer('num_processes', 0, 'Number of processes in a multi-host run.')
_PROCESS_ID = flags.DEFINE_integer('process_id', -1, 'This process index in a multi-host run.')
flags.mark_flags_as_required(['config', 'workdir'])

SAMPLE_EVALUATORS = ('samples', 'reconstructions')


def bad_override_message(argv) -> str:
  """The message for the first --config.KEY=... override that names no key of the config."""
  from jaxgen.core.config import load_config_file, unknown_key_message
  spec = next(a.split('=', 1)[1] for a in argv if a.startswith('--config='))
  config = load_config_file(spec)
  for arg in argv:
    match = re.match(r'--config\.([\w.]+)=', arg)
    if not match:
      continue
    node = config
    for part in match.group(1).split('.'):
      if not hasattr(node, 'keys') or part not in node:
        return unknown_key_message(config, match.group(1))
      node = node[part]
  return ''


def _main(argv):
  del argv
  import jax

  from jaxgen import train
  from jaxgen.core import distributed
  from jaxgen.errors import JaxgenError
  logging.set_verbosity(logging.ERROR)  # library chatter (TFDS, Orbax) off; jaxgen reports on stderr
  try:
    config = _CONFIG.value
    distributed.initialize(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
    if _MODE.value == 'train':
      if jax.process_index() == 0:
        train.write_run_info(_WORKDIR.value, flags.FLAGS['config'].serialize().split('=', 1)[1], sys.argv)
      train.train_and_evaluate(config, _WORKDIR.value)
    else:
      names = SAMPLE_EVALUATORS if _MODE.value == 'sample' else None
      for name, value in train.evaluate(config, _WORKDIR.value, names).items():
        print(f'{name}: {value:.6g}')
  except JaxgenError as e:
    sys.exit(f'error: {e}')


def main():
  try:
    argv = flags.FLAGS(sys.argv)
  except (AttributeError, KeyError) as e:  # config_flags rejects an unknown --config.KEY while parsing
    sys.exit('error: ' + (bad_override_message(sys.argv) or f'bad --config override: {e}'))
  except flags.Error as e:
    sys.exit(f'error: {e}\nPass --helpfull to see the flags.')
  app.run(_main, argv=argv, flags_parser=lambda _: argv)


if __name__ == '__main__':
  main()
