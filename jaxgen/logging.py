"""Metric writers (metrics.jsonl, TensorBoard), the progress bar, and PNG grids.

Only process 0 writes; other processes get writers that do nothing, so callers
never branch on the process index.
"""

import json
import math
import os
import sys
import time
from typing import Dict, Optional

import numpy as np
from PIL import Image


class MetricWriter:
  """Appends {"step", "split", metric: value} lines to metrics.jsonl and TensorBoard scalars."""

  def __init__(self, workdir: str, enabled: bool = True):
    self.enabled = enabled
    self.path = os.path.join(workdir, 'metrics.jsonl')
    self._tb = None
    if enabled:
      from tensorboardX import SummaryWriter  # imported lazily: only process 0 needs it
      self._tb = SummaryWriter(os.path.join(workdir, 'tensorboard'))

  def write(self, step: int, split: str, metrics: Dict[str, float]) -> None:
    if not self.enabled or not metrics:
      return
    record = {'step': int(step), 'split': split}
    record.update({k: float(v) for k, v in metrics.items()})
    with open(self.path, 'a') as f:
      f.write(json.dumps(record) + '\n')
    for name, value in metrics.items():
      self._tb.add_scalar(f'{split}/{name}', float(value), int(step))
    self._tb.flush()

  def close(self) -> None:
    if self._tb is not None:
      self._tb.close()


def read_metrics(workdir: str):
  """All records of WORKDIR/metrics.jsonl, in order."""
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    return [json.loads(line) for line in f if line.strip()]


class ProgressBar:
  """tqdm bar with steps/s, examples/s, ETA and the latest loss (process 0 only)."""

  def __init__(self, start: int, total: int, batch_size: int, enabled: bool = True):
    self.batch_size = batch_size
    self._bar = None
    if enabled:
      from tqdm import tqdm
      self._bar = tqdm(total=total, initial=start, unit='step', dynamic_ncols=True, smoothing=0.1)
    self._last_step, self._last_time = start, time.perf_counter()

  def update(self, step: int, loss: Optional[float] = None) -> Dict[str, float]:
    """Advance to `step`; returns the throughput since the last update."""
    now = time.perf_counter()
    rate = (step - self._last_step) / max(now - self._last_time, 1e-9)
    self._last_step, self._last_time = step, now
    stats = {'steps_per_sec': rate, 'examples_per_sec': rate * self.batch_size}
    if self._bar is not None:
      self._bar.update(step - self._bar.n)
      postfix = {'ex/s': f'{stats["examples_per_sec"]:.0f}'}
      if loss is not None:
        postfix['loss'] = f'{loss:.4g}'
      self._bar.set_postfix(postfix, refresh=True)
    return stats

  def write(self, message: str) -> None:
    """A status line above the bar, on stderr with it (process 0 only)."""
    if self._bar is not None:
      self._bar.write(message, file=sys.stderr)

  def close(self) -> None:
    if self._bar is not None:
      self._bar.close()


def image_grid(images: np.ndarray, columns: Optional[int] = None, pad: int = 1) -> np.ndarray:
  """Tile [N, H, W, C] images in [0, 1] into one uint8 [rows*(H+pad), cols*(W+pad), C] grid."""
  images = np.clip(np.asarray(images, np.float32), 0.0, 1.0)
  if images.ndim == 3:
    images = images[..., None]
  n, h, w, c = images.shape
  columns = columns or int(math.ceil(math.sqrt(n)))
  rows = int(math.ceil(n / columns))
  grid = np.ones((rows * (h + pad) + pad, columns * (w + pad) + pad, c), np.float32)
  for i, image in enumerate(images):
    r, col = divmod(i, columns)
    grid[pad + r * (h + pad):pad + r * (h + pad) + h, pad + col * (w + pad):pad + col * (w + pad) + w] = image
  return (grid * 255).round().astype(np.uint8)


def save_image_grid(path: str, images: np.ndarray, columns: Optional[int] = None, scale: int = 1) -> None:
  """Write a PNG grid of [N, H, W, C] images in [0, 1], each pixel scaled up `scale` times."""
  grid = image_grid(images, columns)
  if scale > 1:
    grid = grid.repeat(scale, axis=0).repeat(scale, axis=1)
  Image.fromarray(grid[..., 0] if grid.shape[-1] == 1 else grid).save(path)


def save_scatter(path: str, points: np.ndarray, size: int = 400, extent: Optional[float] = None) -> None:
  """Write a PNG scatter plot of 2-D points (dark dots on white), square axes centred at 0."""
  points = np.asarray(points, np.float64)
  points = points[np.all(np.isfinite(points), axis=1)]
  extent = extent or max(float(np.abs(points).max()) * 1.1 if len(points) else 1.0, 1e-6)
  canvas = np.full((size, size), 255, np.uint8)
  pix = np.clip(((points / extent + 1) / 2 * (size - 1)).round().astype(int), 0, size - 1)
  canvas[size - 1 - pix[:, 1], pix[:, 0]] = 0
  Image.fromarray(canvas).save(path)
