"""Data: the TFDS catalogue, offline TFDS builders and the deterministic host pipeline.

Importing this package registers the offline datasets (mnist5k, digits,
toy2d/*) with TFDS. See `jaxgen.data.pipeline` for the batching contract.
"""

from jaxgen.data.builders import OFFLINE_DATASETS
from jaxgen.data.pipeline import DataInfo, TrainLoader, data_dir, eval_batches, eval_subset, get_info

__all__ = ['DataInfo', 'OFFLINE_DATASETS', 'TrainLoader', 'data_dir', 'eval_batches', 'eval_subset', 'get_info']
