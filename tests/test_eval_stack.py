"""The evaluation stack end to end: feature classifier, sample quality, mode coverage, OOD AUROC, CAS.

Generators here are oracles and caricatures with known answers (samples drawn
from the data itself, from the true mixture, from one mode, pure noise), so
each evaluator's number is checked against what it must be, not just computed.
"""

import json
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from jaxgen import evals, train
from jaxgen.core.config import base_config
from jaxgen.core.mesh import make_mesh
from jaxgen.core.state import TrainState
from jaxgen.data import eval_batches, get_info
from jaxgen.data.builders import toy2d
from jaxgen.errors import ConfigError, DataError
from jaxgen.evals import features as features_lib
from jaxgen.evals import sample_quality
from jaxgen.logging import read_metrics
from jaxgen.methods.base import Method
from jaxgen.methods.classifier import Classifier
from tests.test_train import config_file


@pytest.fixture(autouse=True)
def private_cache(tmp_path_factory, monkeypatch):
  """Reference statistics and classifiers go to a per-test-session cache."""
  monkeypatch.setenv('JAXGEN_CACHE_DIR', str(tmp_path_factory.getbasetemp() / 'cache'))


@pytest.fixture(scope='module')
def digits_classifier(tmp_path_factory):
  """configs/classifier/digits.py, shortened to 600 steps: (workdir, final state)."""
  config = config_file('classifier/digits.py', None)
  config.train.steps = 600
  config.train.eval_every = config.train.checkpoint_every = 600
  config.evals.classification.every = 600
  workdir = str(tmp_path_factory.mktemp('classifier'))
  return workdir, train.train_and_evaluate(config, workdir)


def split_images(name, split, exclude=()):
  config = base_config().data
  config.name, config.exclude_labels = name, exclude
  batches = list(eval_batches(config, 500, split=split))
  x = np.concatenate([b['x'][b['mask'] > 0] for b in batches])
  y = np.concatenate([b['label'][b['mask'] > 0] for b in batches])
  return x, y


class TableSampler(Method):
  """Samples uniformly from a fixed table of examples; conditional: from the rows of the requested class."""

  def __init__(self, config, info, table, labels=None, conditional=False):
    super().__init__(config, info)
    self.conditional = conditional
    self.table = jnp.asarray(table)
    if conditional:
      per_class = min(np.sum(labels == k) for k in range(info.num_classes))
      self.by_class = jnp.asarray(np.stack([table[labels == k][:per_class] for k in range(info.num_classes)]))

  def sample(self, params, rng, num, label=None):
    if self.conditional:
      index = jax.random.randint(rng, (num,), 0, self.by_class.shape[1])
      return self.by_class[label, index]
    return self.table[jax.random.randint(rng, (num,), 0, self.table.shape[0])]

  def anomaly_score(self, params, batch, rng):
    """Mean intensity: a caricature score whose AUROC on each OOD set is known."""
    return batch['x'].reshape(batch['x'].shape[0], -1).mean(-1)


def context(tmp_path, method_factory, mesh=None, **data):
  config = base_config()
  config.method.name = 'stub'
  config.data.update(data)
  config.train.eval_batch_size = 100
  info = get_info(config.data)
  method = method_factory(config, info)
  return evals.EvalContext(method=method, config=config, info=info, mesh=mesh or make_mesh(config.mesh),
                           workdir=str(tmp_path), is_main=True)


def state():
  return TrainState(step=jnp.zeros((), jnp.int32), params={}, opt_state=(), rng=jax.random.PRNGKey(0))


def test_classifier_run_reports_accuracy_and_reloads(digits_classifier):
  workdir, final = digits_classifier
  evals_ = [m for m in read_metrics(workdir) if m['split'] == 'eval']
  assert evals_[-1]['accuracy'] > 0.9, evals_  # 8x8 digits: an MLP reaches ~0.97
  config, method, params = train.load_trained(workdir)
  assert config.method.name == 'classifier' and method.feature_dim == 64
  for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(final.eval_params())):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_sample_quality_orders_oracle_above_noise_and_is_deterministic(tmp_path, digits_classifier):
  train_x, _ = split_images('digits', 'train')
  noise = np.random.default_rng(0).random((500,) + train_x.shape[1:]).astype(np.float32)
  eval_config = ml_collections.ConfigDict({'feature_workdir': digits_classifier[0], 'num_samples': 1000,
                                           'batch_size': 200, 'kid_subset_size': 500})
  results = {}
  for name, table in (('oracle', train_x), ('noise', noise)):
    ctx = context(tmp_path, lambda c, i: TableSampler(c, i, table), name='digits')
    evaluator = evals.get('sample_quality')(eval_config, ctx)
    results[name] = evaluator(state(), 0)
    again = evaluator(state(), 0)
    for key in results[name]:
      if key != 'sample_quality_seconds':
        assert again[key] == results[name][key], key  # same checkpoint, same numbers
  oracle, noise = results['oracle'], results['noise']
  assert oracle['fid'] < 0.05 * noise['fid']
  assert oracle['precision'] > 0.9 and oracle['recall'] > 0.5
  assert noise['precision'] < 0.1 and noise['recall'] < 0.1
  assert abs(oracle['kid']) < 3 * oracle['kid_std'] + 1e-3 * noise['kid'] and noise['kid'] > 10 * noise['kid_std']
  assert oracle['is'] > 5 and noise['is'] < oracle['is']  # 10 classes, evenly drawn


def test_sample_quality_does_not_depend_on_the_number_of_devices(tmp_path, digits_classifier):
  """Batch 100 is padded to 104 on 8 devices: the kept samples and so the metrics stay those of 1 device."""
  train_x, _ = split_images('digits', 'train')
  eval_config = ml_collections.ConfigDict({'feature_workdir': digits_classifier[0], 'num_samples': 300,
                                           'batch_size': 100, 'kid_subset_size': 100})
  results = []
  for devices in (1, 8):
    mesh = make_mesh(base_config().mesh, jax.devices()[:devices])
    ctx = context(tmp_path, lambda c, i: TableSampler(c, i, train_x), mesh=mesh, name='digits')
    results.append(evals.get('sample_quality')(eval_config, ctx)(state(), 0))
  for key in ('fid', 'kid', 'precision', 'recall', 'is'):
    assert results[0][key] == pytest.approx(results[1][key], rel=1e-4, abs=1e-6), key


def test_evaluator_config_typos_and_unsupported_methods_fail_at_build_time(tmp_path, digits_classifier):
  config = base_config()
  config.method.name = 'stub'
  config.data.name = 'digits'
  config.evals.sample_quality = ml_collections.ConfigDict({'num_sample': 50000})
  ctx = context(tmp_path, lambda c, i: TableSampler(c, i, np.zeros((1, 8, 8, 1))), name='digits')
  with pytest.raises(ConfigError, match=r'sample_quality has unknown key\(s\) num_sample; valid keys: every, '
                     r'features.*num_samples'):
    evals.build_all(config, ctx)
  classifier = context(tmp_path, lambda c, i: Classifier(config_file('classifier/digits.py', 'smoke'), i),
                       name='digits')
  for name in ('sample_quality', 'mode_coverage', 'cas', 'samples'):
    with pytest.raises(ConfigError, match='does not generate any'):
      evals.get(name)(ml_collections.ConfigDict(), classifier)
  for name, message in (('ood_auroc', 'no likelihood, reconstruction or anomaly_score'), ('nll', 'needs a likelihood')):
    with pytest.raises(ConfigError, match=message):
      evals.get(name)(ml_collections.ConfigDict(), classifier)


def test_reference_features_are_cached_and_sharding_does_not_change_them(tmp_path, digits_classifier,
                                                                          monkeypatch):
  base = base_config().data
  base.name = 'digits'
  workdir = digits_classifier[0]
  features = {}
  for devices in (1, 8):
    mesh = make_mesh(base_config().mesh, jax.devices()[:devices])
    network = features_lib.classifier_features(workdir, mesh, (8, 8, 1))
    extractor = sample_quality.FeatureExtractor(network, mesh)
    features[devices] = extractor.of_split(base, 'test', 64)  # 180 examples: a padded last batch
  assert features[1].shape == (180, 64)
  np.testing.assert_allclose(features[1], features[8], rtol=1e-5, atol=1e-5)

  first = sample_quality.reference_features(extractor, base, 'test', 64)
  cached = os.listdir(os.path.join(features_lib.cache_dir(), 'reference'))
  assert any(name.startswith('digits-test-all-classifier-digits-') for name in cached), cached
  monkeypatch.setattr(sample_quality.FeatureExtractor, 'of_split', lambda *a, **k: pytest.fail('recomputed'))
  np.testing.assert_array_equal(sample_quality.reference_features(extractor, base, 'test', 64), first)


def test_feature_network_errors(tmp_path, digits_classifier, monkeypatch):
  ctx = context(tmp_path, lambda c, i: TableSampler(c, i, np.zeros((1, 28, 28, 1))), name='mnist5k')
  with pytest.raises(ConfigError, match=r'trained on .digits. images of shape \(8, 8, 1\)'):
    features_lib.get(ml_collections.ConfigDict({'feature_workdir': digits_classifier[0]}), ctx)
  monkeypatch.setenv('JAXGEN_INCEPTION_WEIGHTS', str(tmp_path / 'absent.pth'))
  with pytest.raises(DataError, match='pt_inception-2015-12-05'):
    features_lib.get(ml_collections.ConfigDict({'features': 'inception'}), ctx)


class MixtureSampler(Method):
  """The true ring8/grid25 mixture, or all samples from its first mode."""

  def __init__(self, config, info, one_mode=False):
    super().__init__(config, info)
    self.mixture = info.name.split('/')[1]
    self.centres = jnp.asarray(toy2d.centres(self.mixture), jnp.float32)
    self.std = toy2d.RING8_STD if self.mixture == 'ring8' else toy2d.GRID25_STD
    self.one_mode = one_mode

  def sample(self, params, rng, num, **cond):
    k_mode, k_noise = jax.random.split(rng)
    modes = self.centres.shape[0]
    mode = jnp.zeros(num, jnp.int32) if self.one_mode else jax.random.randint(k_mode, (num,), 0, modes)
    return self.centres[mode] + self.std * jax.random.normal(k_noise, (num, 2))


@pytest.mark.parametrize('mixture,modes', [('ring8', 8), ('grid25', 25)])
@pytest.mark.parametrize('one_mode', [False, True])
def test_mode_coverage_of_the_true_mixture_and_of_one_mode(tmp_path, one_mode, mixture, modes):
  ctx = context(tmp_path, lambda c, i: MixtureSampler(c, i, one_mode), name=f'toy2d/{mixture}')
  result = evals.get('mode_coverage')(ml_collections.ConfigDict({'num_samples': 2500}), ctx)(state(), 0)
  assert result['modes'] == (1 if one_mode else modes)
  # Euclidean 3-sigma disc of a 2-D Gaussian: 1 - exp(-4.5) = 0.98889, binomial sd 0.0021 at n = 2500.
  assert abs(result['hq_fraction'] - (1 - np.exp(-4.5))) < 0.01


def test_mode_coverage_refuses_other_data(tmp_path):
  ctx = context(tmp_path, lambda c, i: TableSampler(c, i, np.zeros((1, 2))), name='toy2d/moons')
  with pytest.raises(ConfigError, match='ring8 or toy2d/grid25'):
    evals.get('mode_coverage')(ml_collections.ConfigDict(), ctx)


def test_exclude_labels_removes_classes_from_every_split():
  for split in ('train', 'test'):
    _, labels = split_images('digits', split, exclude=(0, 3))
    _, all_labels = split_images('digits', split)
    assert not np.isin(labels, (0, 3)).any()
    assert len(labels) == np.sum(~np.isin(all_labels, (0, 3)))


def test_ood_auroc_with_a_known_score(tmp_path):
  """Score = mean intensity: negatives and uniform noise are brighter than digits, flips are not."""
  train_x, _ = split_images('digits', 'train')
  ctx = context(tmp_path, lambda c, i: TableSampler(c, i, train_x), name='digits', exclude_labels=(1,))
  result = evals.get('ood_auroc')(ml_collections.ConfigDict({'max_examples': 1000}), ctx)(state(), 0)
  assert set(result) == {'ood_auroc_noise', 'ood_auroc_inverted', 'ood_auroc_flipped', 'ood_auroc_heldout'}
  assert result['ood_auroc_inverted'] == 1.0 and result['ood_auroc_noise'] > 0.99
  assert result['ood_auroc_flipped'] == 0.5  # the same pixels, so the same scores: exactly chance
  heldout_x, heldout_y = split_images('digits', 'test')
  inside = heldout_x[heldout_y != 1].reshape(-1, 64).mean(-1)
  outside = heldout_x[heldout_y == 1].reshape(-1, 64).mean(-1)
  from jaxgen.evals.metrics import auroc
  assert result['ood_auroc_heldout'] == pytest.approx(auroc(inside, outside))


def test_cas_separates_a_label_faithful_generator_from_a_label_blind_one(tmp_path):
  train_x, train_y = split_images('digits', 'train')
  eval_config = ml_collections.ConfigDict({'num_samples': 1000, 'steps': 300, 'batch_size': 200})
  scores = {}
  for name, labels in (('faithful', train_y), ('blind', np.random.default_rng(0).permutation(train_y))):
    ctx = context(tmp_path, lambda c, i: TableSampler(c, i, train_x, labels, conditional=True), name='digits')
    scores[name] = evals.get('cas')(eval_config, ctx)(state(), 0)['cas']
  assert scores['faithful'] > 0.85 and scores['blind'] < 0.3, scores


def test_cas_needs_a_conditional_model(tmp_path):
  ctx = context(tmp_path, lambda c, i: TableSampler(c, i, np.zeros((1, 8, 8, 1))), name='digits')
  with pytest.raises(ConfigError, match='class-conditional'):
    evals.get('cas')(ml_collections.ConfigDict(), ctx)


def test_config_json_of_a_classifier_run_is_loadable(digits_classifier):
  with open(os.path.join(digits_classifier[0], 'config.json')) as f:
    assert json.load(f)['method']['name'] == 'classifier'


@pytest.mark.slow  # ~70 s: Inception at 299x299 on 8 virtual CPU devices
def test_sample_quality_with_inception_features_from_a_weights_file(tmp_path, monkeypatch):
  """The Inception path end to end: a random weights file of the real layout -> 2048-d features -> metrics."""
  from jaxgen.evals import inception, torch_pickle
  rng = np.random.default_rng(0)
  state_dict = {name: (rng.random(shape, np.float32) + 0.5 if name.endswith('running_var') else
                       0.05 * rng.standard_normal(shape).astype(np.float32))
                for name, shape in inception.pytorch_state_dict_shapes().items()}
  path = tmp_path / 'pt_inception-2015-12-05-6726825d.pth'
  torch_pickle.save_state_dict(str(path), state_dict)
  monkeypatch.setenv('JAXGEN_INCEPTION_WEIGHTS', str(path))
  digits, _ = split_images('digits', 'test')
  ctx = context(tmp_path, lambda c, i: TableSampler(c, i, digits), name='digits', max_eval_examples=16)
  eval_config = ml_collections.ConfigDict({'features': 'inception', 'num_samples': 16, 'batch_size': 8,
                                           'num_reference': 16, 'reference_split': 'test', 'is_splits': 2,
                                           'kid_subset_size': 16})
  evaluator = evals.get('sample_quality')(eval_config, ctx)
  evaluator.prepare()
  assert evaluator.real.shape == (16, 2048) and evaluator.extractor.network.name.startswith('inception-pt2015-')
  result = evaluator(state(), 0)
  assert all(np.isfinite(v) for v in result.values()) and result['fid'] >= 0


@pytest.mark.parametrize('name', ['classifier/mnist5k.py', 'classifier/digits.py'])
def test_classifier_smoke_configs_train_and_report_accuracy(tmp_path, name):
  train.train_and_evaluate(config_file(name), str(tmp_path))
  accuracy = [r['accuracy'] for r in read_metrics(str(tmp_path)) if r['split'] == 'eval']
  assert accuracy and 0.0 <= accuracy[-1] <= 1.0


def test_mnist5k_classifier_parameter_count_by_hand():
  config = config_file('classifier/mnist5k.py', None)
  assert (tuple(config.model.channels), tuple(config.model.hidden)) == ((16, 32), (128,))
  conv = lambda c_in, c_out: 5 * 5 * c_in * c_out + c_out
  dense = lambda n_in, n_out: n_in * n_out + n_out
  expected = conv(1, 16) + conv(16, 32) + dense(7 * 7 * 32, 128) + dense(128, 10)
  info = get_info(config.data)
  method = Classifier(config, info)
  shapes = jax.eval_shape(method.init, jax.random.PRNGKey(0), {'x': jnp.zeros((1, 28, 28, 1))})
  count = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(shapes.params))
  assert count == expected == 215_370


def test_anomaly_smoke_config_reports_every_ood_auroc(tmp_path):
  train.train_and_evaluate(config_file('vae/mnist5k_anomaly.py'), str(tmp_path))
  last = [r for r in read_metrics(str(tmp_path)) if r['split'] == 'eval' and 'ood_auroc_heldout' in r][-1]
  for name in ('heldout', 'noise', 'inverted', 'flipped'):
    assert 0.0 <= last[f'ood_auroc_{name}'] <= 1.0


@pytest.mark.slow  # ~20 s: trains, then evaluates twice
def test_mode_eval_on_a_trained_vae_is_deterministic(tmp_path, digits_classifier):
  """`--mode=eval` twice on one checkpoint: the same FD/KID/PR/IS and NLL, from the EMA parameters."""
  config = config_file('vae/digits.py')  # the smoke variant, plus sample quality and EMA
  config.train.ema_decay = 0.9
  config.evals.sample_quality = ml_collections.ConfigDict({
      'every': config.train.steps, 'feature_workdir': digits_classifier[0], 'num_samples': 300,
      'batch_size': 100, 'kid_subset_size': 100})
  workdir = str(tmp_path)
  final = train.train_and_evaluate(config, workdir)
  first = train.evaluate(config, workdir)
  second = train.evaluate(config, workdir)
  timing = 'sample_quality_seconds'
  assert {k: v for k, v in first.items() if k != timing} == {k: v for k, v in second.items() if k != timing}
  assert {'fid', 'kid', 'precision', 'recall', 'is', 'nll_bpd'} <= set(first)
  # The loop's own evaluation at the last step used the same (EMA) parameters, so it agrees too.
  logged = [r for r in read_metrics(workdir) if r['split'] == 'eval' and 'fid' in r]
  assert logged[0]['fid'] == first['fid'] and final.ema_params is not None
