"""Method registry: `config.method.name` -> Method subclass (see jaxgen/methods/base.py)."""

from jaxgen.registry import Registry

METHODS = Registry('config.method.name', {
    'vae': 'jaxgen.methods.vae',
    'classifier': 'jaxgen.methods.classifier',
})
register = METHODS.register
get = METHODS.get
