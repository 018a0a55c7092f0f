"""Timing helpers shared by the benchmarks in experiments/ (no flags, importable)."""

import time


def time_steps(config, devices, steps: int) -> dict:
  import jax
  from jaxgen import train
  from jaxgen.core.mesh import shard_batch
  import tempfile
  with tempfile.TemporaryDirectory() as workdir:
    config.evals = {}
    run = train.setup(config, workdir, devices=devices, restore=False)
    step_fn = train.jit_step(run)
    batches = [shard_batch(run.loader.batch(k), run.mesh) for k in range(steps + 1)]
    t0 = time.perf_counter()
    compiled = step_fn.lower(run.state, batches[0]).compile()
    compile_s = time.perf_counter() - t0
    state, metrics = compiled(run.state, batches[0])
    jax.block_until_ready((state, metrics))
    t0 = time.perf_counter()
    for batch in batches[1:]:
      state, metrics = compiled(state, batch)
    jax.block_until_ready((state, metrics))
    seconds = time.perf_counter() - t0
    run.checkpointer.close()
    run.writer.close()
  return {'devices': len(devices), 'compile_s': compile_s, 'steps_per_sec': steps / seconds,
          'examples_per_sec': steps * config.train.batch_size / seconds}


def time_sampling(config, num, **sample_kwargs):
  """Images/s of jit(method.sample) for `num` images (compile excluded), and the compile seconds,
  from freshly initialised parameters (the cost of sampling does not depend on training)."""
  import functools
  import jax
  import tempfile
  from jaxgen import train
  with tempfile.TemporaryDirectory() as workdir:
    run = train.setup(config, workdir, devices=jax.devices()[:1], restore=False, eval_names=[])
    params = run.state.eval_params()
    run.checkpointer.close()
    run.writer.close()
  method = run.method
  sample = jax.jit(functools.partial(method.sample, **sample_kwargs), static_argnums=2)
  t0 = time.perf_counter()
  compiled = sample.lower(params, jax.random.PRNGKey(0), num).compile()
  compile_s = time.perf_counter() - t0
  jax.block_until_ready(compiled(params, jax.random.PRNGKey(1)))
  t0 = time.perf_counter()
  jax.block_until_ready(compiled(params, jax.random.PRNGKey(2)))
  return num / (time.perf_counter() - t0), compile_s
