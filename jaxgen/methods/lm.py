"""Language models over token windows: causal (GPT-style Transformer, LSTM, GRU) and masked (BERT-style).

Data: a text dataset (pysource, tiny_shakespeare, lm1b, ...) cut into windows of `seq_len` tokens
(jaxgen.data.pipeline): batch['x'] int32 [B, L] token ids, DataInfo.levels = the tokenizer's vocabulary
(256 for bytes).

Objectives (`config.method.objective`):
  'causal'  p(x) = prod_t p(x_t | bos, x_<t): the network reads [bos, x_0, .., x_{L-2}] and predicts
            x_0 .. x_{L-1}, so every token of a window is scored and `nll` is the window's exact
            -log p(x) in nats (the `nll` evaluator turns it into bits per UTF-8 byte). bos is the
            tokenizer's BOS id (bytes: the 0 byte, which also ends each document of the stream: a
            window starts "as after a document end").
  'masked'  BERT's masked LM (Devlin et al. 2019): each position is selected with probability
            `mask_prob`; a selected token is replaced by MASK (80%), a random token (10%) or kept
            (10%), and the loss is the cross-entropy at the selected positions only. The network is
            the bidirectional Transformer encoder (model.causal forced False). No likelihood: the
            `token_loss` evaluator reports the masked-token loss and its perplexity.

Networks (`config.model.arch`): 'transformer' (jaxgen.models.transformer), 'lstm' | 'gru'
(jaxgen.models.rnn_lm). Both are called as net(tokens_BL, cache) -> (logits, hidden, cache), the cache
being a KV cache (Transformer) or the recurrent states (RNN).

Sampling (`sample`): the prompt (`method.prompt`, a string, or `prompt=` token ids, one prompt or int32
[num, P] per-row prompts) is fed in one
prefill call, then one token per step of a `jax.lax.fori_loop`, each step reusing the cache (O(L) work
per token). `method.kv_cache=False` recomputes the whole prefix every step instead (O(L^2); the
benchmark's reference, and a check). Tokens are drawn at `temperature` from the `top_k` most likely
(0 = all) within the smallest set of cumulative probability >= `top_p` (nucleus sampling, Holtzman et
al. 2020); temperature 0 is greedy decoding. Samples are [num, seq_len] token ids, the prompt first.

Fine-tuning: `config.init_from` (handled by the train loop) starts from another run's parameters.
`method.lora_rank` > 0 adds LoRA adapters (Hu et al. 2022) to the Transformer's attention and MLP
projections and trains only them: the gradient and optimizer state cover the adapters alone.
`merged_params` folds them into the kernels for export (a plain model of the same architecture).

Config keys:
  model.arch                         'transformer' | 'lstm' | 'gru'
  model.num_layers, model.embed_dim  all architectures
  model.num_heads, model.mlp_dim, model.norm ('rmsnorm'|'layernorm'), model.positions ('rope'|'learned'),
  model.activation ('gelu'|'swiglu'), model.tie_embeddings, model.use_bias, model.scan_layers,
  model.remat                        Transformer
  model.hidden_dim                   RNN state size
  model.dtype                        compute dtype 'float32' | 'bfloat16' (parameters stay float32)
  method.objective                   'causal' | 'masked'
  method.mask_prob                   masked LM: selection probability per position
  method.lora_rank, method.lora_alpha  LoRA (0 = full training)
  method.temperature, method.top_k, method.top_p, method.prompt, method.kv_cache   sampling
  method.prompt_file                 sampling: the prompt is this file's text (instead of method.prompt)
"""

import functools

import jax
import jax.numpy as jnp
import ml_collections
from flax import traverse_util

from jaxgen.core.optim import make_optimizer
from jaxgen.core.state import TrainState, step_rng
from jaxgen.data.tokenizers import get_tokenizer
from jaxgen.errors import ConfigError
from jaxgen.methods import register, rl_math
from jaxgen.methods.base import Method, method_settings

ARCHS = ('transformer', 'lstm', 'gru')
OBJECTIVES = ('causal', 'masked')
DTYPES = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16}

DEFAULTS = dict(objective='causal', mask_prob=0.15, lora_rank=0, lora_alpha=16.0, temperature=1.0, top_k=0,
                top_p=1.0, prompt='', prompt_file='', kv_cache=True)
# config.model keys per architecture, with defaults.
TRANSFORMER_DEFAULTS = dict(arch='transformer', num_layers=4, num_heads=4, embed_dim=256, mlp_dim=1024,
                            norm='rmsnorm', positions='rope', activation='gelu', tie_embeddings=True,
                            use_bias=False, scan_layers=False, remat=False, dtype='float32', causal=True)
RNN_DEFAULTS = dict(arch='lstm', num_layers=2, embed_dim=128, hidden_dim=512, dtype='float32')


def model_settings(model_config) -> ml_collections.ConfigDict:
  """config.model over its architecture's defaults; ConfigError naming the valid keys for an unknown one."""
  arch = model_config.get('arch', 'transformer')
  if arch not in ARCHS:
    raise ConfigError(f'config.model.arch={arch!r} is not one of {", ".join(ARCHS)}.')
  defaults = TRANSFORMER_DEFAULTS if arch == 'transformer' else RNN_DEFAULTS
  unknown = sorted(set(model_config.keys()) - set(defaults))
  if unknown:
    raise ConfigError(f'config.model has unknown key(s) {", ".join(unknown)} for arch {arch!r}; valid keys: '
                      f'{", ".join(sorted(defaults))}.')
  settings = ml_collections.ConfigDict({k: model_config.get(k, v) for k, v in defaults.items()})
  if settings.dtype not in DTYPES:
    raise ConfigError(f'config.model.dtype={settings.dtype!r} is not one of {", ".join(DTYPES)}.')
  return settings


def build_network(m, vocab_size: int, max_len: int, causal: bool = True, lora_rank: int = 0,
                  lora_alpha: float = 1.0):
  """The Flax module config.model describes (settings from `model_settings`)."""
  dtype = DTYPES[m.dtype]
  if m.arch == 'transformer':
    from jaxgen.models import transformer
    if m.embed_dim % m.num_heads:
      raise ConfigError(f'config.model.embed_dim={m.embed_dim} must be divisible by num_heads={m.num_heads}.')
    return transformer.Transformer(
        vocab_size=vocab_size, num_layers=m.num_layers, num_heads=m.num_heads, embed_dim=m.embed_dim,
        mlp_dim=m.mlp_dim, max_len=max_len, causal=causal and m.causal, norm=m.norm, positions=m.positions,
        activation=m.activation, tie_embeddings=m.tie_embeddings, use_bias=m.use_bias,
        scan_layers=m.scan_layers, remat=m.remat, dtype=dtype, lora_rank=lora_rank, lora_alpha=lora_alpha)
  if lora_rank:
    raise ConfigError('config.method.lora_rank > 0 needs config.model.arch=transformer (LoRA adapts its '
                      'attention and MLP projections).')
  from jaxgen.models import rnn_lm
  return rnn_lm.RNNLM(vocab_size=vocab_size, embed_dim=m.embed_dim, hidden_dim=m.hidden_dim,
                      num_layers=m.num_layers, cell=m.arch, dtype=dtype)


def init_cache(net, batch_size: int, length: int):
  """The decoding cache of `net` (a Transformer's KV cache, an RNN's states)."""
  module = __import__(type(net).__module__, fromlist=['init_cache'])
  return module.init_cache(net, batch_size, length)


def filter_logits(logits_NV, top_k: int = 0, top_p: float = 1.0):
  """Logits with every token outside the top-k (0 = all) and outside the nucleus of mass top_p set to
  -inf. The nucleus keeps the most likely tokens up to and including the first whose cumulative
  probability reaches top_p (so it is never empty)."""
  if top_k and top_k < logits_NV.shape[-1]:
    kth_N1 = jax.lax.top_k(logits_NV, top_k)[0][:, -1:]
    logits_NV = jnp.where(logits_NV < kth_N1, -jnp.inf, logits_NV)
  if top_p < 1.0:
    sorted_NV = jnp.sort(logits_NV, axis=-1)[:, ::-1]
    probs_NV = jax.nn.softmax(sorted_NV, axis=-1)
    mass_before_NV = jnp.cumsum(probs_NV, axis=-1) - probs_NV
    kept_N = jnp.sum(mass_before_NV < top_p, axis=-1)  # >= 1: the first token has mass 0 before it
    threshold_N1 = jnp.take_along_axis(sorted_NV, kept_N[:, None] - 1, axis=-1)
    logits_NV = jnp.where(logits_NV < threshold_N1, -jnp.inf, logits_NV)
  return logits_NV


def draw_tokens(rng, logits_NV, temperature: float, top_k: int, top_p: float):
  """Next tokens [N] int32: greedy at temperature 0, else a draw from the filtered, tempered softmax."""
  if temperature == 0:
    return jnp.argmax(logits_NV, axis=-1).astype(jnp.int32)
  logits_NV = filter_logits(logits_NV.astype(jnp.float32) / temperature, top_k, top_p)
  return jax.random.categorical(rng, logits_NV, axis=-1).astype(jnp.int32)


def shift_right(x_BL, bos_id: int):
  """A causal network's input for predicting every token of x: [bos, x_0, .., x_{L-2}]."""
  bos_B1 = jnp.full((x_BL.shape[0], 1), bos_id, x_BL.dtype)
  return jnp.concatenate([bos_B1, x_BL[:, :-1]], axis=1)


def prompt_text(settings) -> str:
  """The sampling prompt: config.method.prompt, or the text of config.method.prompt_file (UTF-8)."""
  if not settings.prompt_file:
    return settings.prompt
  if settings.prompt:
    raise ConfigError('Set config.method.prompt or config.method.prompt_file, not both.')
  try:
    with open(settings.prompt_file, encoding='utf-8') as f:
      return f.read()
  except (OSError, UnicodeDecodeError) as e:
    raise ConfigError(f'config.method.prompt_file={settings.prompt_file!r} cannot be read as UTF-8 text: {e}') from e


def generate(apply, net, rng, prompt_NP, length: int, bos_id: int, draw, kv_cache: bool = True):
  """[N, length] int32: each row's prompt (int32 [N, P]), then tokens drawn one at a time by
  `draw(rng, logits_NV)`. `apply(tokens, cache) -> (logits, hidden, cache)` is the network with its
  parameters bound; `net` gives the cache layout. With `kv_cache`, one prefill call then one token per
  step of a lax.fori_loop through the cache; without, the whole prefix is recomputed every step."""
  num, start = prompt_NP.shape
  out_NL = jnp.zeros((num, length), jnp.int32).at[:, :start].set(prompt_NP)
  keys = jax.random.split(rng, length)
  if kv_cache:
    logits_NPV, _, cache = apply(shift_right(out_NL, bos_id)[:, :start + 1], init_cache(net, num, length))

    def body(t, carry):  # draw x_t, feed it at position t + 1
      out_NL, logits_NV, cache = carry
      token_N = draw(keys[t], logits_NV)
      logits_N1V, _, cache = apply(token_N[:, None], cache)
      return out_NL.at[:, t].set(token_N), logits_N1V[:, 0], cache

    out_NL, logits_NV, _ = jax.lax.fori_loop(start, length - 1, body, (out_NL, logits_NPV[:, -1], cache))
  else:
    def body(t, out_NL):  # the whole prefix again; causality makes the positions after t irrelevant
      logits_NLV, _, _ = apply(shift_right(out_NL, bos_id), None)
      token_N = draw(keys[t], jax.lax.dynamic_index_in_dim(logits_NLV, t, axis=1, keepdims=False))
      return out_NL.at[:, t].set(token_N)

    out_NL = jax.lax.fori_loop(start, length - 1, body, out_NL)
    logits_NV = apply(shift_right(out_NL, bos_id), None)[0][:, length - 1]
  return out_NL.at[:, length - 1].set(draw(keys[length - 1], logits_NV))


@register('lm')
class LanguageModel(Method):
  """Causal or masked language model; see the module docstring."""

  def __init__(self, config, info):
    super().__init__(config, info)
    if info.kind != 'text':
      raise ConfigError(f"method 'lm' models text; dataset {info.name!r} has kind={info.kind!r}. Use a text "
                        "dataset such as 'pysource'.")
    self.settings = s = method_settings(config, DEFAULTS, 'language model')
    self.model_config = m = model_settings(config.model)
    if s.objective not in OBJECTIVES:
      raise ConfigError(f'config.method.objective={s.objective!r} is not one of {", ".join(OBJECTIVES)}.')
    self.causal = s.objective == 'causal'
    if not self.causal and m.arch != 'transformer':
      raise ConfigError('The masked LM objective needs config.model.arch=transformer (a bidirectional encoder).')
    if not 0.0 < s.mask_prob < 1.0:
      raise ConfigError(f'config.method.mask_prob must be in (0, 1), got {s.mask_prob}.')
    self.has_likelihood = self.causal
    self.seq_len = int(info.shape[0])
    self.vocab_size = int(info.levels)
    self.tokenizer = info.tokenizer or get_tokenizer(config.data)
    self.bos_id = int(self.tokenizer.bos_id)
    mask_id = getattr(self.tokenizer, 'mask_id', None)
    # Bytes have no spare id for MASK: the masked LM's embedding gets one extra row, id vocab_size.
    self.mask_id = int(mask_id) if mask_id is not None else self.vocab_size
    net_vocab = self.vocab_size if self.causal or mask_id is not None else self.vocab_size + 1
    self.lora_rank = int(s.lora_rank)
    self.net = build_network(m, net_vocab, self.seq_len, causal=self.causal, lora_rank=self.lora_rank,
                             lora_alpha=float(s.lora_alpha))
    self.tx = make_optimizer(config.optim, config.train.steps)
    self.prompt_text = prompt_text(s)

  # ---- networks and objectives ----------------------------------------------------------------

  def apply(self, params, tokens_BL, cache=None):
    """(logits_BLV, hidden_BLD, cache) of the network."""
    return self.net.apply({'params': params['lm']}, tokens_BL, cache)

  def inputs(self, x_BL):
    """The causal network's input: [bos, x_0, .., x_{L-2}]."""
    return shift_right(x_BL, self.bos_id)

  def log_likelihood(self, params, x_BL):
    """Per-token log p(x_t | bos, x_<t) [B, L] (causal objective)."""
    logits_BLV, _, _ = self.apply(params, self.inputs(x_BL))
    return rl_math.token_logprobs(logits_BLV, x_BL)

  def corrupt(self, rng, x_BL):
    """BERT masking: (corrupted input, selected positions as float [B, L])."""
    k_select, k_kind, k_random = jax.random.split(rng, 3)
    selected_BL = jax.random.bernoulli(k_select, self.settings.mask_prob, x_BL.shape)
    kind_BL = jax.random.uniform(k_kind, x_BL.shape)
    random_BL = jax.random.randint(k_random, x_BL.shape, 0, self.vocab_size, x_BL.dtype)
    replaced_BL = jnp.where(kind_BL < 0.8, self.mask_id, jnp.where(kind_BL < 0.9, random_BL, x_BL))
    return jnp.where(selected_BL, replaced_BL, x_BL), selected_BL.astype(jnp.float32)

  def token_loss(self, params, batch, rng):
    """(summed nats [B], scored tokens [B]): every token (causal) or the selected ones (masked)."""
    x_BL = batch['x']
    if self.causal:
      logp_BL = self.log_likelihood(params, x_BL)
      return -logp_BL.sum(-1), jnp.full(x_BL.shape[:1], x_BL.shape[1], jnp.float32)
    corrupted_BL, selected_BL = self.corrupt(rng, x_BL)
    logits_BLV, _, _ = self.apply(params, corrupted_BL)
    logp_BL = rl_math.token_logprobs(logits_BLV, x_BL)
    return -(logp_BL * selected_BL).sum(-1), selected_BL.sum(-1)

  # ---- the Method contract --------------------------------------------------------------------

  def init(self, rng, batch):
    k_net, k_state = jax.random.split(rng)
    params = {'lm': self.net.init(k_net, batch['x'][:1])['params']}
    ema = jax.tree.map(jnp.copy, params) if self.config.train.ema_decay > 0 else None
    return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                      opt_state=self.tx.init(self.trainable(params)), ema_params=ema, extra={}, rng=k_state)

  def trainable(self, params):
    """The parameters the optimizer updates: all of them, or with LoRA only the adapters (a flat dict)."""
    if not self.lora_rank:
      return params
    from jaxgen.models.transformer import is_lora_path
    return {path: leaf for path, leaf in traverse_util.flatten_dict(params).items() if is_lora_path(path)}

  def with_trainable(self, params, trainable):
    """`params` with the trainable part replaced by `trainable`."""
    if not self.lora_rank:
      return trainable
    flat = traverse_util.flatten_dict(params)
    flat.update(trainable)
    return traverse_util.unflatten_dict(flat)

  def train_step(self, state, batch):
    rng = step_rng(state)

    def loss_fn(trainable):
      nats_B, count_B = self.token_loss(self.with_trainable(state.params, trainable), batch, rng)
      return jnp.sum(nats_B) / jnp.maximum(jnp.sum(count_B), 1.0)

    trainable = self.trainable(state.params)
    loss, grads = jax.value_and_grad(loss_fn)(trainable)
    updates, opt_state = self.tx.update(grads, state.opt_state, trainable)
    trainable = jax.tree.map(lambda p, u: p + u, trainable, updates)
    return state.replace(params=self.with_trainable(state.params, trainable), opt_state=opt_state), {'loss': loss}

  def nll(self, params, batch, rng):
    """Exact -log p(window) in nats [B] (causal objective)."""
    if not self.causal:
      raise NotImplementedError('A masked LM defines no likelihood; use the token_loss evaluator.')
    return -self.log_likelihood(params, batch['x']).sum(-1)

  def merged_params(self, params):
    """Parameters of the same network without adapters (LoRA folded into the kernels), for export."""
    if not self.lora_rank:
      return params
    from jaxgen.models.transformer import merge_lora
    return {'lm': merge_lora(params['lm'], float(self.settings.lora_alpha), self.lora_rank)}

  def prompt_tokens(self, num, prompt=None):
    """The prompts as int32 [num, P]: `prompt` given as per-row ids [num, P] (an array) or one prompt's
    ids (a sequence, repeated), else method.prompt or method.prompt_file's text, encoded; P may be 0."""
    if prompt is None:
      text = self.prompt_text
      prompt = self.tokenizer.encode(text.encode('utf-8')) if text else ()
    if getattr(prompt, 'ndim', 1) == 2:
      prompt_NP = jnp.asarray(prompt, jnp.int32)
      if prompt_NP.shape[0] != num:
        raise ValueError(f'prompt has {prompt_NP.shape[0]} rows for {num} samples.')
    else:
      prompt_NP = jnp.tile(jnp.asarray([int(t) for t in prompt], jnp.int32).reshape(1, -1), (num, 1))
    if prompt_NP.shape[1] >= self.seq_len:
      raise ConfigError(f'The prompt has {prompt_NP.shape[1]} tokens; samples are config.data.seq_len='
                        f'{self.seq_len} tokens long, prompt included. Shorten the prompt or raise seq_len.')
    return prompt_NP

  def sample(self, params, rng, num, prompt=None, kv_cache=None, temperature=None):
    """[num, seq_len] int32 token ids: the prompt, then tokens drawn one at a time (module docstring).

    `prompt`: one prompt's token ids (a sequence, for every row) or per-row prompts int32 [num, P];
    default: config.method.prompt."""
    if not self.causal:
      raise NotImplementedError('A masked LM does not generate left to right.')
    s = self.settings
    kv_cache = s.kv_cache if kv_cache is None else kv_cache
    temperature = float(s.temperature if temperature is None else temperature)
    draw = functools.partial(draw_tokens, temperature=temperature, top_k=int(s.top_k), top_p=float(s.top_p))
    return generate(functools.partial(self.apply, params), self.net, rng, self.prompt_tokens(num, prompt),
                    self.seq_len, self.bos_id, draw, kv_cache)
