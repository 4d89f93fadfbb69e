"""Initialising the surrogate from the transformer: at full width and key rank its kernel on the transformer's
own states is the transformer's attention, block by block."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pdeflow.models import BertConfig, BertEncoder
from pdeflow.models.bert import bert_block_weights
from pdeflow.models.vit import ViT, ViTConfig, vit_block_weights
from pdeflow.pde import SurrogateConfig, attention_pde
from pdeflow.pde.teacher_init import TeacherInitConfig, init_from_transformer

BERT = BertConfig(vocab_size=30, hidden_size=16, num_layers=3, num_heads=2, intermediate_size=32, max_positions=12)
VIT = ViTConfig(image_size=4, patch_size=2, hidden_size=12, num_layers=3, num_heads=3, mlp_size=24)


def bert_teacher():
    rng = np.random.default_rng(0)
    ids = rng.integers(1, BERT.vocab_size, size=(4, 9)).astype(np.int32)
    mask = np.arange(9)[None] < np.array([[9], [6], [7], [5]])
    model = BertEncoder(BERT)
    params = model.init(jax.random.PRNGKey(0), ids, np.zeros_like(ids), mask)
    return params, model.apply(params, ids, np.zeros_like(ids), mask)


def vit_teacher():
    images = np.random.default_rng(1).uniform(size=(4, 4, 4)).astype(np.float32)
    model = ViT(VIT)
    params = model.init(jax.random.PRNGKey(0), images)
    return params, model.apply(params, images)[1]


def surrogate(num_layers, num_heads, model_dim, head_dim, state_norm, **changes):
    return SurrogateConfig(num_layers=num_layers, num_heads=num_heads, model_dim=model_dim, width=model_dim,
                           key_dim=head_dim, value_rank=head_dim, mlp_width=8, num_knots=num_layers,
                           state_norm=state_norm, varying=("value", "residual"), max_distance=4, **changes)


def teacher_forced_maps(params, config, trace):
    """The kernel at t = l on the transformer's own hidden[l] (projected): (L, B, H, N, N)."""
    states = attention_pde.initial_state(params, jnp.asarray(trace.hidden))  # (L+1, B, N, r)
    return jax.vmap(lambda s, m: jnp.exp(attention_pde.attention_log_maps(params, config, s, m)),
                    in_axes=(1, 0), out_axes=1)(states, jnp.asarray(trace.mask))


@pytest.mark.parametrize("model", ["bert", "vit"])
def test_full_rank_initialisation_reproduces_every_blocks_attention(model):
    if model == "bert":
        params, trace = bert_teacher()
        config = surrogate(BERT.num_layers, BERT.num_heads, BERT.hidden_size, BERT.head_dim, "none")
        blocks = bert_block_weights(params, BERT)
    else:
        params, trace = vit_teacher()
        config = surrogate(VIT.num_layers, VIT.num_heads, VIT.hidden_size, VIT.head_dim, "layer",
                           grid=(VIT.grid_size, VIT.grid_size), prefix_tokens=1)
        blocks = vit_block_weights(params, VIT)
    hidden0 = np.asarray(trace.hidden[0])[np.asarray(trace.mask)]
    init = init_from_transformer(jax.random.PRNGKey(0), config, blocks, hidden0)  # the position bias starts at 0
    maps = np.asarray(teacher_forced_maps(init, config, trace))
    mask = np.asarray(trace.mask)
    pair = mask[None, :, None, :, None] & mask[None, :, None, None, :]
    np.testing.assert_allclose(np.where(pair, maps, 0), np.where(pair, np.asarray(trace.attention), 0), atol=2e-4)
    # and a random start does not: the check can fail
    random = attention_pde.init_surrogate(jax.random.PRNGKey(0), config, hidden0)
    random_maps = np.asarray(teacher_forced_maps(random, config, trace))
    assert np.abs(np.where(pair, random_maps - trace.attention, 0)).max() > 0.05


def test_value_corrections_add_each_blocks_own_value_output_product():
    params, trace = bert_teacher()
    config = surrogate(BERT.num_layers, BERT.num_heads, BERT.hidden_size, BERT.head_dim, "none")
    blocks = bert_block_weights(params, BERT)
    teacher = TeacherInitConfig(alpha=0.3)
    init = init_from_transformer(jax.random.PRNGKey(0), config, blocks, np.asarray(trace.hidden[0]).reshape(-1, 16),
                                 teacher)
    for layer, block in enumerate(blocks):
        value = attention_pde.at_time(init, config, "value", jnp.float32(layer))
        alpha = attention_pde.coefficients(init, config, jnp.float32(layer))[1]
        for h in range(BERT.num_heads):
            surrogate_product = alpha / BERT.num_heads * value["down"][h] @ value["up"][h]
            np.testing.assert_allclose(surrogate_product, block.value[:, h] @ block.output[h], atol=2e-4)


def test_bad_teacher_settings_name_the_fix():
    params, trace = bert_teacher()
    blocks = bert_block_weights(params, BERT)
    hidden0 = np.asarray(trace.hidden[0]).reshape(-1, 16)
    config = surrogate(BERT.num_layers, BERT.num_heads, BERT.hidden_size, BERT.head_dim, "none")
    with pytest.raises(ValueError, match="state_norm='none'"):
        init_from_transformer(jax.random.PRNGKey(0), dataclasses.replace(config, state_norm="rms"), blocks, hidden0)
    with pytest.raises(ValueError, match="3 layers"):
        init_from_transformer(jax.random.PRNGKey(0), config, blocks[:2], hidden0)
    with pytest.raises(ValueError, match="H=2"):
        init_from_transformer(jax.random.PRNGKey(0), dataclasses.replace(config, num_heads=4), blocks, hidden0)
    with pytest.raises(ValueError, match="width <= d = 16"):
        init_from_transformer(jax.random.PRNGKey(0), dataclasses.replace(config, width=17), blocks, hidden0)
    with pytest.raises(ValueError, match="diffusion > 0"):
        TeacherInitConfig(diffusion=0.0)
