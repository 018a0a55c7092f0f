"""Method registry: `config.method.name` -> Method subclass (see jaxgen/methods/base.py)."""

from jaxgen.registry import Registry

METHODS = Registry('config.method.name', {
    'vae': 'jaxgen.methods.vae',
    'autoencoder': 'jaxgen.methods.autoencoder',
    'classifier': 'jaxgen.methods.classifier',
    'nade': 'jaxgen.methods.nade',
    'hmm': 'jaxgen.methods.hmm',
    'gmm': 'jaxgen.methods.gmm',
    'made': 'jaxgen.methods.made',
    'maf': 'jaxgen.methods.maf',
    'realnvp': 'jaxgen.methods.flows',
    'glow': 'jaxgen.methods.flows',
    'pixelcnn': 'jaxgen.methods.pixelcnn',
    'pixelcnnpp': 'jaxgen.methods.pixelcnnpp',
    'ddpm': 'jaxgen.methods.diffusion',
    'gan': 'jaxgen.methods.gan',
    'pix2pix': 'jaxgen.methods.pix2pix',
    'rbm': 'jaxgen.methods.rbm',
    'dbn': 'jaxgen.methods.dbn',
    'lm': 'jaxgen.methods.lm',
    'reward_model': 'jaxgen.methods.preference',
    'dpo': 'jaxgen.methods.preference',
    'ppo': 'jaxgen.methods.preference',
})
register = METHODS.register
get = METHODS.get
