import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pdeflow.models.trace import check_trace
from pdeflow.models.vit import ViT, ViTConfig, image_patches

CONFIG = ViTConfig(hidden_size=16, num_layers=2, num_heads=2, mlp_size=24)


def test_patches_are_row_major_grid_blocks():
    images = np.arange(2 * 8 * 8, dtype=np.float32).reshape(2, 8, 8)
    patches = np.asarray(image_patches(jnp.asarray(images), 2))
    assert patches.shape == (2, 16, 4)
    for i in range(4):
        for j in range(4):
            np.testing.assert_array_equal(patches[1, 4 * i + j], images[1, 2 * i:2 * i + 2, 2 * j:2 * j + 2].ravel())


def test_vit_trace_is_well_formed_and_its_last_state_gives_the_logits():
    model = ViT(CONFIG)
    images = jax.random.uniform(jax.random.PRNGKey(0), (3, 8, 8))
    params = model.init(jax.random.PRNGKey(1), images)
    logits, trace = model.apply(params, images)
    assert logits.shape == (3, 10)
    assert trace.hidden.shape == (3, 3, 17, 16) and trace.attention.shape == (2, 3, 2, 17, 17)
    check_trace(trace)  # finite, rows of attention sum to one
    np.testing.assert_allclose(np.asarray(trace.attention).sum(-1), 1.0, rtol=1e-5)
    # the classifier reads the class token of the last hidden state through the final LayerNorm and head
    p = params["params"]
    x = trace.hidden[-1][:, 0]
    normed = (x - x.mean(-1, keepdims=True)) / jnp.sqrt(x.var(-1, keepdims=True) + CONFIG.layer_norm_eps)
    normed = normed * p["final_norm"]["scale"] + p["final_norm"]["bias"]
    np.testing.assert_allclose(normed @ p["head"]["kernel"] + p["head"]["bias"], logits, rtol=1e-4, atol=1e-5)


def test_vit_config_and_input_are_checked():
    with pytest.raises(ValueError, match="patch_size"):
        ViTConfig(patch_size=3)
    with pytest.raises(ValueError, match="num_heads"):
        ViTConfig(hidden_size=10, num_heads=4)
    model = ViT(CONFIG)
    with pytest.raises(ValueError, match=r"images must have shape \(B, 8, 8\)"):
        model.init(jax.random.PRNGKey(0), jnp.zeros((2, 8, 7)))
