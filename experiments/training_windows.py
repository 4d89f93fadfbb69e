"""Probe: do thousands of pydoc training inputs, instead of 1,330 sentences, close the faithful preset's gap?

The faithful MiniLM preset trains on every pydoc sentence that is not held out (1,330) and ends with a
generalisation gap (training loss 0.115, validation 0.153). The pydoc prose holds about 36,000 words in
paragraphs that contain no validation or held-out sentence; this script adds overlapping word windows of
those paragraphs to the training split (a window every ``--stride`` words, of a seeded random length of
6..36 words, cut to the 48-token limit) and runs the faithful preset unchanged otherwise. Validation and
held-out sentences are the preset's own; a paragraph holding any of them (verbatim) gives no window.

    python -m experiments.training_windows --out experiments/results/training_windows
"""

from __future__ import annotations

import argparse

import numpy as np

from pdeflow.data.text import _prose_paragraphs
from pdeflow.models.trace import Trace
from pdeflow.sources import DataConfig, MiniLMSource, Splits


def training_windows(held_out: set[str], stride: int = 10, min_words: int = 6, max_words: int = 36,
                     seed: int = 0) -> list[str]:
    """Word windows of the pydoc prose paragraphs (unindented and block-indented) that hold none of
    ``held_out``: one every ``stride`` words, of a random length in ``min_words..max_words`` (seeded); a
    paragraph shorter than the window gives itself once. Sorted, without duplicates."""
    from pydoc_data.topics import topics

    text = "\n\n".join(topics[name] for name in sorted(topics))
    rng = np.random.default_rng(seed)
    windows = set()
    for indented in (False, True):
        for paragraph in _prose_paragraphs(text, indented):
            flat = " ".join(paragraph.split())
            if any(sentence in flat for sentence in held_out):
                continue
            words = flat.split()
            for start in range(0, max(1, len(words) - min_words + 1), stride):
                length = int(rng.integers(min_words, max_words + 1))
                windows.add(" ".join(words[start:start + length]))
    return sorted(w for w in windows if len(w.split()) >= min_words)


class MiniLMWindowsSource(MiniLMSource):
    """MiniLM on the preset's splits, with `training_windows` added to the training split."""

    def __init__(self, stride: int = 10, seed: int = 0):
        super().__init__()
        self.stride, self.seed, self.num_windows = stride, seed, 0

    def trace_splits(self, data: DataConfig, progress: bool = False) -> Splits:
        splits = super().trace_splits(data, progress)
        encoder = self.encoder
        # the held-out and validation sentences, as the preset chose them (same split, same seed)
        from pdeflow.data.text import pydoc_sentences, split_indices

        sentences = pydoc_sentences()
        lengths = encoder.tokenize(sentences, encoder.config.max_positions).mask.sum(1)
        kept = [s for s, n in zip(sentences, lengths) if data.min_tokens <= n <= data.max_tokens]
        _, val_i, test_i = split_indices(len(kept), (data.num_train, data.num_validation, data.num_test),
                                         data.split_seed)
        held = {kept[i] for i in (*val_i, *test_i)}
        windows = training_windows(held, self.stride, seed=self.seed)
        tokens = encoder.tokenize(windows, data.max_tokens, pad_to=data.max_tokens)
        windows = [w for w, n in zip(windows, tokens.mask.sum(1)) if n >= data.min_tokens]
        tokens = encoder.tokenize(windows, data.max_tokens, pad_to=data.max_tokens)
        extra = encoder.trace_tokens(tokens)
        self.num_windows = len(windows)
        train = Trace(*(np.concatenate([np.asarray(a), np.asarray(b)], axis=0 if f == "mask" else 1)
                        for f, a, b in zip(Trace._fields, splits.train, extra)))
        return Splits(train, splits.validation, splits.test, splits.test_tokens, splits.test_sentences)

    def describe(self) -> dict:
        described = super().describe()
        described["inputs"] += f" + {self.num_windows} word windows of training-only prose (stride {self.stride})"
        return described


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="report folder (written atomically)")
    parser.add_argument("--overwrite", action="store_true")
    parser.add_argument("--stride", type=int, default=10, help="words between window starts")
    parser.add_argument("--steps", type=int, default=0, help="fit steps (0: the preset's)")
    args = parser.parse_args(argv)
    import dataclasses

    from pdeflow.pipeline import fit_and_measure, preset_config
    from pdeflow.report import summary_markdown, write_report

    config = preset_config("faithful", "minilm")
    if args.steps:
        config = dataclasses.replace(config, fit=dataclasses.replace(config.fit, steps=args.steps))
    report = fit_and_measure(MiniLMWindowsSource(args.stride), config, progress=False)
    write_report(report, args.out, overwrite=args.overwrite)
    print(summary_markdown(report.metrics))


if __name__ == "__main__":
    main()
