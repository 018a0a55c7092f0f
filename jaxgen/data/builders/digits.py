"""TFDS builder `digits`: scikit-learn's 8x8 handwritten digits."""

import numpy as np
import tensorflow_datasets as tfds


class Digits(tfds.core.GeneratorBasedBuilder):
  """The 1,797 8x8 digits of `sklearn.datasets.load_digits()`, built offline.

  Source: scikit-learn's bundled copy of the test set of the UCI "Optical
  Recognition of Handwritten Digits" data. Each pixel counts the on-pixels of
  a 4x4 block of a 32x32 bitmap, so values are integers 0..16 (17 levels, not
  256); they are stored unscaled as a uint8 (8, 8, 1) `image` with its
  `label` (0..9).

  Splits: row `i` goes to `test` iff `i % 10 == 0`, else to `train`
  (1,617 / 180 examples), in scikit-learn's row order.
  """

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'Initial release.'}

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        description=self.__doc__,
        features=tfds.features.FeaturesDict({
            'image': tfds.features.Image(shape=(8, 8, 1), dtype=np.uint8),
            'label': tfds.features.ClassLabel(num_classes=10),
        }),
        supervised_keys=('image', 'label'),
        disable_shuffling=True,  # keep scikit-learn's row order
        homepage='https://archive.ics.uci.edu/dataset/80/optical+recognition+of+handwritten+digits',
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # nothing to download: the data is inside scikit-learn
    from sklearn.datasets import load_digits  # pylint: disable=g-import-not-at-top
    digits = load_digits()
    images = digits.images.reshape(-1, 8, 8, 1).astype(np.uint8)
    rows = np.arange(len(images))
    return {
        'train': self._generate_examples(images, digits.target, rows[rows % 10 != 0]),
        'test': self._generate_examples(images, digits.target, rows[rows % 10 == 0]),
    }

  def _generate_examples(self, images, labels, rows):
    for i in rows:
      yield int(i), {'image': images[i], 'label': int(labels[i])}
