"""PixelRNN's Row LSTM (van den Oord et al. 2016, "Pixel Recurrent Neural Networks", Sec. 3.1, 3.4, 4).

`RowLSTM` has the fields and call signature of `PixelCNN` in models/pixelcnn.py
(x [B, H, W, C], optional one-hot label [B, K] -> [B, H, W, n_out * C], output
feature `o * C + k` = output `o` of data channel `k`), so methods/pixelcnn.py uses
it unchanged as `model.arch = 'rowlstm'`.

Network:

  x -> k0 x k0 mask-A conv to F = `channels` features
    -> `num_layers` x Row LSTM layer with a residual connection (below)
    -> ReLU, 1x1 mask-B conv to `output_channels`, ReLU, 1x1 mask-B conv to n_out * C.

The k0 x k0 mask-A conv (p0 = k0 // 2) is stored as the sum of two convs with
disjoint taps that together are exactly its taps:
  above    a p0 x k0 conv, no mask, over the input shifted down by one row: it reads
           rows r - p0 .. r - 1, columns c - p0 .. c + p0 (nothing for k0 = 1);
  row      a 1 x (p0 + 1) conv over row r, columns c - p0 .. c, the centre tap
           channel-masked A.
So it is a reparameterisation of the masked square conv (same receptive field,
same function class), not a different layer.

Row LSTM layer (paper Sec. 3.1, residual as in Sec. 3.5 / Fig. 5): the stream has
F features, the LSTM state h = `hidden` features, hidden = F // 2 rounded down to a
multiple of C (the paper's "2h" stream and "h" state), at least C.

  input-to-state   1 x k conv over the current row, mask B (taps left of the pixel and the
                   pixel itself, whose centre tap is channel-masked), computed for the whole
                   image at once: F -> 4 * hidden gate pre-activations [B, H, W, 4h].
  state-to-state   1-D conv of width k over the previous row's hidden state h_{r-1}
                   (all of row r - 1 precedes row r in raster order, so neither taps nor
                   channels are masked): hidden -> 4 * hidden, no bias.
  gates            [i, f, o, g] = four blocks of `hidden` features of the summed
                   pre-activations (+ a class bias when conditional);
                   c_r = sigmoid(f) * c_{r-1} + sigmoid(i) * tanh(g),  h_r = sigmoid(o) * tanh(c_r),
                   with h_{-1} = c_{-1} = 0; one `jax.lax.scan` over the H rows.
  residual         stream + (1x1 mask-B conv hidden -> F)(h).

Context / rows split (for the row-by-row sampler in methods/pixelcnn.py). Row r's
outputs are a function of (a) row r of the input, (b) the `above` conv's output at
row r, and (c) for every layer the states (h_{r-1}, c_{r-1}) of row r - 1: given
those, the first conv's `row` part, each layer's input-to-state conv, one LSTM cell
update, the residual and the head only read row r itself. Hence
  `context(x)`           (above [B, H, W, F], ((h_prev, c_prev) [B, H, W, hidden] per layer)):
                         runs the scan over all rows and shifts each layer's states down by
                         one row (zeros in row 0), so its row r holds (h, c) of row r - 1.
                         Row r of every leaf depends on input rows < r only.
  `rows(x, context)`     outputs [B, R, W, n_out * C] of any R rows given those rows' context
                         rows: the cell update of each row uses its own context row (the scan
                         lives in `context`; `rows` is not recurrent).
This is exact, not an approximation: the cell update in `rows` is the same
computation the scan does at that row, fed the same states. `__call__` runs the
scan once and the head on the resulting stream (no second pass); it equals
`rows(x, context(x))` up to float rounding (tests/test_pixelcnn_sampling.py).

Channel groups (Sec. 3.4). As in models/pixelcnn.py, feature f of every map
belongs to data channel group f % C. Because hidden % C == 0, feature j of each
of the four gate blocks (index b * hidden + j) is in group j % C, the same group
as feature j of c and h, so the elementwise products of the gates with c and h
never mix groups: the input-to-state conv lets group g of the current pixel feed
only gate groups >= g (mask B; the first conv is mask A), hence the R -> G -> B
order within a pixel holds through every layer. The state-to-state conv may mix
all groups because everything it reads lies in rows above.

Receptive field: the Row LSTM's is triangular, not the whole context above. For
one layer with kernel k (p = k // 2) the LSTM state at (r, c) reads the
input-to-state outputs at (r - j, c - j p .. c + j p) for j >= 0, and those read
the first conv's outputs at columns c - (j + 1) p .. c + j p of row r - j; so in
each row j above it reaches only j p (+ the first conv's reach) columns to the
right: with k0 = k = 3, the pixel (r - 1, c + 1) is seen but (r - 1, c + 2) is
not. Each further layer widens the triangle; it never becomes the full "all rows
above" context of the Diagonal BiLSTM or the Gated PixelCNN. That is the
architecture in the paper (its Fig. 4, centre), not a bug. tests/test_pixelrnn.py
checks the exact dependency set.

Class-conditional (onehot_BK given): a Dense(onehot) bias is added to the
first conv's output and to the gate pre-activations of every layer (as
`_label_bias` in models/pixelcnn.py); it is constant over positions, so it
carries no pixel information. The biases are applied in `rows` (and in the
scan), not stored in the context.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxgen.models.conv import conv_kernel_init
from jaxgen.models.mlp import dense
from jaxgen.models.pixelcnn import ARCHS, MaskedConv, _check_width, down_shift, square_masked_conv


def lstm_hidden(channels: int, data_channels: int) -> int:
  """The Row LSTM state width for a stream of `channels` features: channels // 2 as a multiple of C (>= C)."""
  return max(data_channels, (channels // 2) // data_channels * data_channels)


def _lstm_update(pre_BRWG, h_prev_BRWN, c_prev_BRWN, k_ss, p):
  """One LSTM cell update of each of R rows from its gate pre-activations and the states of the row above it.

  k_ss [1, k, hidden, 4 * hidden] is the state-to-state kernel (p = k // 2); rows never mix.
  """
  ss = jax.lax.conv_general_dilated(h_prev_BRWN, k_ss.astype(pre_BRWG.dtype), (1, 1), ((0, 0), (p, p)),
                                    dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
  i, f, o, g = jnp.split(pre_BRWG + ss, 4, axis=-1)  # 4 blocks of n; feature j of each is group j % C
  c = jax.nn.sigmoid(f) * c_prev_BRWN + jax.nn.sigmoid(i) * jnp.tanh(g)
  return jax.nn.sigmoid(o) * jnp.tanh(c), c


class RowLSTMLayer(nn.Module):
  """One Row LSTM layer: stream [B, H, W, F] -> hidden states h [B, H, W, hidden] (no residual here).

  `__call__` / `scan` run the recurrence over all rows; `cell` is one step of it for
  any set of rows, each given its own previous-row states (h_prev, c_prev).
  """
  hidden: int
  kernel: int = 3
  data_channels: int = 1

  def setup(self):
    C, n, k = self.data_channels, self.hidden, self.kernel
    if k % 2 == 0:
      raise ValueError(f'the Row LSTM kernel must be odd, got {k}.')
    _check_width(n, C, 'Row LSTM hidden width')
    p = k // 2
    # Input-to-state: 1 x k over the current row, taps right of the pixel closed and the centre tap
    # channel-masked B.
    self.input_to_state = MaskedConv(4 * n, (1, k), ((0, 0), (p, p)), (0, p), 'B', C)
    # State-to-state: 1-D conv of width k over the previous row's h (unmasked: the whole row is in the past).
    self.state_to_state = self.param('state_to_state', conv_kernel_init(), (1, k, n, 4 * n))

  def cell(self, x_BRWF, h_prev_BRWN, c_prev_BRWN, label_bias=0.0):
    """(h, c) [B, R, W, hidden] of R rows, each from its own row of the stream and its previous-row states."""
    pre_BRWG = self.input_to_state(x_BRWF) + label_bias
    return _lstm_update(pre_BRWG, h_prev_BRWN, c_prev_BRWN, self.state_to_state, self.kernel // 2)

  def scan(self, x_BHWF, label_bias=0.0):
    """(h, c) [B, H, W, hidden] of every row: one `jax.lax.scan` over the rows from h_{-1} = c_{-1} = 0."""
    # Input-to-state for the whole image at once; only the state-to-state conv and the cell are in the scan.
    pre_BHWG = self.input_to_state(x_BHWF) + label_bias
    k_ss, p = self.state_to_state, self.kernel // 2
    B, _, W, _ = pre_BHWG.shape

    def row(carry, pre_BWG):
      h_B1WN, c_B1WN = _lstm_update(pre_BWG[:, None], *carry, k_ss, p)
      return (h_B1WN, c_B1WN), (h_B1WN[:, 0], c_B1WN[:, 0])

    zeros = jnp.zeros((B, 1, W, self.hidden), pre_BHWG.dtype)
    _, (h_HBWN, c_HBWN) = jax.lax.scan(row, (zeros, zeros), jnp.swapaxes(pre_BHWG, 0, 1))
    return jnp.swapaxes(h_HBWN, 0, 1), jnp.swapaxes(c_HBWN, 0, 1)

  def __call__(self, x_BHWF, label_bias=0.0):
    return self.scan(x_BHWF, label_bias)[0]


class RowLSTM(nn.Module):
  """PixelRNN with Row LSTM layers (see the module docstring). Returns [B, H, W, n_out * C].

  `context(x)` (the `above` conv and every layer's previous-row states; row r depends on
  input rows < r only) and `rows(x, context)` (any rows given their context rows) split
  the network for the row-by-row sampler; `__call__(x)` equals `rows(x, context(x))`.
  """
  channels: int = 64
  num_layers: int = 5
  first_kernel: int = 7
  kernel: int = 3
  output_channels: int = 64
  n_out: int = 256
  data_channels: int = 1

  def setup(self):
    C, F, p0 = self.data_channels, self.channels, self.first_kernel // 2
    for width, what in ((self.channels, 'channels'), (self.output_channels, 'output_channels')):
      _check_width(width, C, f'config.model.{what}')
    if self.first_kernel % 2 == 0:
      raise ValueError(f'the first (mask-A) kernel must be odd, got {self.first_kernel}.')
    n = lstm_hidden(F, C)
    # The k0 x k0 mask-A conv as two convs with disjoint taps: rows r - p0 .. r - 1 (a p0 x k0 conv over the
    # input shifted down a row; none for k0 = 1) and row r's columns c - p0 .. c (centre tap mask A).
    if p0:
      self.conv_in_above = MaskedConv(F, (p0, self.first_kernel), ((p0 - 1, 0), (p0, p0)), (p0 - 1, p0), None, C)
    self.conv_in_row = MaskedConv(F, (1, p0 + 1), ((0, 0), (p0, 0)), (0, p0), 'A', C)
    self.label_in = dense(F)  # class biases (used only when a label is given)
    for i in range(self.num_layers):
      setattr(self, f'row_lstm{i}', RowLSTMLayer(n, self.kernel, C))
      setattr(self, f'label{i}', dense(4 * n))
      setattr(self, f'up{i}', square_masked_conv(F, 1, 'B', C))
    self.out_hidden = square_masked_conv(self.output_channels, 1, 'B', C)
    self.out = square_masked_conv(self.n_out * C, 1, 'B', C)

  def _bias(self, name, onehot_BK):
    """Class bias [B, 1, 1, features] of the Dense `name` (0 when unconditional)."""
    if onehot_BK is None:
      return 0.0
    b = getattr(self, name)(onehot_BK)
    return b.reshape(b.shape[0], 1, 1, -1)

  def _above(self, x_BHWC):
    """The first conv's taps in the rows above: [B, H, W, F], row r a function of input rows < r."""
    if self.first_kernel // 2 == 0:
      return jnp.zeros(x_BHWC.shape[:3] + (self.channels,), x_BHWC.dtype)
    return self.conv_in_above(down_shift(x_BHWC))

  def _stream_in(self, x_BRWC, above_BRWF, onehot_BK):
    """The first conv's output (+ class bias) for R rows, given their `above` part."""
    return above_BRWF + self.conv_in_row(x_BRWC) + self._bias('label_in', onehot_BK)

  def _head(self, s_BRWF):
    s = self.out_hidden(nn.relu(s_BRWF))
    return self.out(nn.relu(s))

  def _scan(self, x_BHWC, onehot_BK):
    """(above, [(h, c) of every row, per layer], final stream) of the whole image."""
    above = self._above(x_BHWC)
    s = self._stream_in(x_BHWC, above, onehot_BK)
    states = []
    for i in range(self.num_layers):
      h, c = getattr(self, f'row_lstm{i}').scan(s, self._bias(f'label{i}', onehot_BK))
      states.append((h, c))
      s = s + getattr(self, f'up{i}')(h)
    return above, states, s

  def context(self, x_BHWC, onehot_BK=None):
    """(above [B, H, W, F], ((h_prev, c_prev) [B, H, W, hidden] per layer)); row r of each depends on rows < r.

    h_prev / c_prev row r are that layer's LSTM states of row r - 1 (zeros for row 0).
    """
    above, states, _ = self._scan(x_BHWC, onehot_BK)
    return above, tuple((down_shift(h), down_shift(c)) for h, c in states)

  def rows(self, x_BRWC, context_rows, onehot_BK=None):
    """Outputs [B, R, W, n_out * C] for R rows of the image given their rows of `context` (same layout).

    Each row is computed from its own input row and context row alone (one cell update per layer, no scan).
    """
    above, states = context_rows
    s = self._stream_in(x_BRWC, above, onehot_BK)
    for i, (h_prev, c_prev) in enumerate(states):
      h, _ = getattr(self, f'row_lstm{i}').cell(s, h_prev, c_prev, self._bias(f'label{i}', onehot_BK))
      s = s + getattr(self, f'up{i}')(h)
    return self._head(s)

  def __call__(self, x_BHWC, onehot_BK=None):
    """The whole network in one pass (the scan and the head; equals `rows(x, context(x))`)."""
    return self._head(self._scan(x_BHWC, onehot_BK)[2])


ARCHS['rowlstm'] = RowLSTM  # also registered by models/pixelcnn.py, whichever module is imported first
