"""Timing helpers shared by the benchmarks in experiments/ (no flags, importable)."""

import time


def time_steps(config, devices, steps: int) -> dict:
  import jax
  from jaxgen import train
  from jaxgen.core.mesh import batch_sharding, replicated, shard_batch
  import tempfile
  with tempfile.TemporaryDirectory() as workdir:
    config.evals = {}
    run = train.setup(config, workdir, devices=devices, restore=False)
    step_fn = jax.jit(train.make_step_fn(run.method, float(config.train.ema_decay)),
                      in_shardings=(run.shardings, batch_sharding(run.mesh)),
                      out_shardings=(run.shardings, replicated(run.mesh)), donate_argnums=0)
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
