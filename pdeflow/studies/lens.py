"""The entropy-lens study (`pdeflow lens`): entropy profiles of language-model families on held-out pydoc text,
and what a k-nearest-neighbour classifier reads from them.

For every model of the families (trained here, or loaded from the cache), every held-out prompt and every
layer, the logit lens gives a distribution over the next character; its Shannon and Rényi entropies form the
profile. Three questions, each answered by grouped cross-validation beside a chance baseline and beside the
same classifier given only the final layer's Shannon entropy:

* **family**: which architecture family produced a profile (profiles resampled to a common normalised-depth
  grid), both with every depth seen in training and with one depth held out (depth-rescaling invariance);
* **text kind**: prose, code, list or grammar, from one model's per-prompt profile;
* **correctness**: whether a model's top next-character prediction is right, from that token's profile (AUC).

MiniLM's profile on the same prompts is measured too: it has no language-model head, so its tied word
embeddings are the unembedding (``logits = h · Eᵀ``), and as a masked encoder it is read for text kind only.

``protocol="entropy-lens"`` runs instead the protocol of Entropy-Lens's own code (Ali et al. 2025,
github christopher-irw/Entropy-Lens: ``run_experiments_ts.py``, ``data_manager.DataManagerTs``,
``model_inspector``, ``utils.evaluate_model_overall``) on the same language models: `entropy_lens_study`.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from pdeflow.data.pydoc_corpus import TEXT_KINDS, Prompts, kind_prompts, split_corpus
from pdeflow.information.classify import (
    cross_validated_accuracy,
    cross_validated_auc,
    entropy_lens_auc,
    paired_fold_p_value,
    resample_depth,
    transfer_accuracy,
)
from pdeflow.information.entropy import ENTROPY_LENS_SUPPORT_THRESHOLD
from pdeflow.information.lens import entropy_profile
from pdeflow.train.lm import (
    DEFAULT_FAMILY_DEPTHS,
    LM_FAMILIES,
    LMTrainConfig,
    TrainedLM,
    family_configs,
    load_or_train_lm,
)
from pdeflow.validation import check_finite_numbers

PROTOCOLS = ("ours", "entropy-lens")
PROMPT_FORMS = ("base", "rev", "scramble", "scramble_rev")  # Entropy-Lens's four forms of a task prompt

@dataclasses.dataclass(frozen=True)
class LensConfig:
    """Settings of the entropy-lens study.

    Attributes:
        families: architecture families (LM_FAMILIES) to compare.
        depths: depths trained for every family; family identification holds each out in turn.
        steps: training steps of every language model (see LMTrainConfig for the rest).
        alphas: Rényi orders of the profile (1 is Shannon; inf is written "inf").
        depth_points: points of the common normalised-depth grid for comparing models of different depth.
        prompt_length: characters per prompt window.
        max_per_kind: at most this many prompts per text kind (seeded choice), so that no kind dominates.
        k: neighbours of the k-NN classifier.
        folds: cross-validation folds (grouped by paragraph).
        minilm: also measure MiniLM's profile (tied word embeddings as the unembedding); "ours" only (an encoder
            does not generate).
        seed: seeds the prompt choice and the folds (and, for "entropy-lens", the scrambling and sampling).
        protocol: "ours" (the profile over the prompt's own tokens, grouped folds; the default) or "entropy-lens"
            (the anchor's: lens entropies at the last position of each generated token, k-NN k = 29 with
            stratified 10-fold ROC AUC against a stratified dummy and a paired t-test; see entropy_lens_study;
            it uses alphas, seed, families, depths and steps, and ignores the other settings above).
        generate_tokens: "entropy-lens": tokens generated per prompt (the anchor's --max_len 8).
        windows: "entropy-lens": the generated tokens are averaged in this many equal windows (the anchor's
            num_windows; 1 in its task identification).
        temperature: "entropy-lens": 0 decodes greedily; above 0 samples at this temperature (the anchor samples
            at 1 in its task identification, and decodes greedily for MMLU and formats).
        stories: "entropy-lens": context windows, each paired with one cue of every text kind in each of the
            four forms (stories x 4 kinds x 4 forms prompts).
    """

    families: tuple[str, ...] = tuple(LM_FAMILIES)
    depths: tuple[int, ...] = DEFAULT_FAMILY_DEPTHS
    steps: int = LMTrainConfig.steps
    alphas: tuple[float, ...] = (0.5, 1.0, 2.0, math.inf)
    depth_points: int = 9
    prompt_length: int = 48
    max_per_kind: int = 120
    k: int = 15
    folds: int = 5
    minilm: bool = True
    seed: int = 0
    protocol: str = "ours"
    generate_tokens: int = 8
    windows: int = 1
    temperature: float = 1.0
    stories: int = 100

    def __post_init__(self):
        check_finite_numbers(self)
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"protocol must be one of {PROTOCOLS}; got {self.protocol!r}.")
        if self.generate_tokens < 1 or self.windows < 1 or self.generate_tokens % self.windows:
            raise ValueError(f"need generate_tokens >= 1 and windows dividing it; got {self.generate_tokens} and "
                             f"{self.windows}.")
        if self.piece_length() < 4:
            raise ValueError(f"generate_tokens ({self.generate_tokens}) leaves under 4 characters each for the story "
                             f"and the cue in the {LMTrainConfig.context_size}-character context; generate fewer.")
        if self.temperature < 0 or self.stories < 1:
            raise ValueError(f"need temperature >= 0 (0: greedy) and stories >= 1; got {self.temperature} and "
                             f"{self.stories}.")
        unknown = set(self.families) - set(LM_FAMILIES)
        if unknown or len(self.families) < 2:
            raise ValueError(f"need at least two families from {sorted(LM_FAMILIES)}; got {list(self.families)}.")
        if len(set(self.depths)) < 2 or min(self.depths) < 1:
            raise ValueError(f"need at least two distinct positive depths; got {list(self.depths)}.")
        if 1.0 not in self.alphas:
            raise ValueError("alphas must include 1.0 (Shannon): every baseline uses the final Shannon entropy.")
        if self.prompt_length < 4 or self.prompt_length > LMTrainConfig.context_size:
            raise ValueError(f"prompt_length must be in [4, {LMTrainConfig.context_size}]; got {self.prompt_length}.")

    def train_configs(self) -> list[LMTrainConfig]:
        return family_configs(self.families, self.depths, steps=self.steps)

    def piece_length(self) -> int:
        """Protocol "entropy-lens": characters of the story and of the cue, so that ``story \\n\\n cue \\n\\n`` and the
        generated tokens fill at most the context."""
        return (LMTrainConfig.context_size - self.generate_tokens - 4) // 2


def study_prompts(config: LensConfig) -> Prompts:
    """Held-out prompt windows, at most ``max_per_kind`` per kind (whole paragraphs chosen, seeded)."""
    split = split_corpus(LMTrainConfig.held_out_fraction, LMTrainConfig.split_seed)
    prompts = kind_prompts(split.held_out, config.prompt_length)
    rng = np.random.default_rng(config.seed)
    keep = []
    for kind in range(len(TEXT_KINDS)):
        members = rng.permutation(np.flatnonzero(prompts.kind == kind))
        keep.extend(sorted(members[:config.max_per_kind]))
    keep = np.sort(np.asarray(keep))
    return Prompts(tuple(prompts.text[i] for i in keep), prompts.kind[keep], prompts.paragraph[keep])


@dataclasses.dataclass(frozen=True)
class ModelProfile:
    """One model's lens on the prompts.

    Attributes:
        name: e.g. ``pre-ln-L4`` or ``minilm``.
        entropy: ``(A, L+1, P, N)`` bits, NaN at padding.
        mask: ``(P, N)`` real tokens.
        correct: ``(P, N)`` whether the model's top prediction at a position is the next token (False where
            there is no next token); None for MiniLM.
    """

    name: str
    entropy: np.ndarray
    mask: np.ndarray
    correct: np.ndarray | None

    def per_prompt(self) -> np.ndarray:
        """``(A, L+1, P)``: entropies averaged over each prompt's real tokens."""
        m = self.mask[None, None]
        return np.where(m, self.entropy, 0.0).sum(-1) / m.sum(-1)


def lm_profile(model: TrainedLM, prompts: Prompts, alphas, batch_size: int = 128) -> ModelProfile:
    """The lens of a language model over the prompts (batched, one compile per batch shape)."""

    from pdeflow.models.gpt import lens_readout

    tokens, mask = model.encode(prompts.text)
    logits, trace = model.run(tokens, mask, batch_size)
    norm, unembedding, bias = lens_readout(model.model, model.params)
    entropy = _batched_entropy(trace.hidden, mask, unembedding, norm, bias, alphas, batch_size)
    correct = np.zeros(mask.shape, bool)
    correct[:, :-1] = (logits[:, :-1].argmax(-1) == tokens[:, 1:]) & mask[:, 1:]
    return ModelProfile(model.config.name, entropy, mask, correct)


def minilm_profile(prompts: Prompts, alphas, batch_size: int = 32) -> ModelProfile:
    """MiniLM's lens over the prompts, its tied word embeddings ``(V, d)`` transposed as the unembedding
    (a post-LayerNorm encoder: no final norm)."""

    from pdeflow.models.minilm import load_minilm

    encoder = load_minilm()
    tokenized = encoder.tokenize(prompts.text, max_tokens=64)
    trace = encoder.trace_tokens(tokenized)
    unembedding = encoder.params["params"]["word_embeddings"]["embedding"].T
    mask = np.asarray(trace.mask)
    return ModelProfile("minilm", _batched_entropy(trace.hidden, mask, unembedding, None, None, alphas, batch_size),
                        mask, None)


def _batched_entropy(hidden, mask, unembedding, norm, bias, alphas, batch_size: int) -> np.ndarray:
    """`entropy_profile` entropies ``(A, L+1, P, N)`` over batches of ``batch_size`` prompts (one compile per
    batch shape), so a large vocabulary's logits never exist for every prompt at once."""
    import jax

    profile = jax.jit(lambda h, m: entropy_profile(h, m, unembedding, norm, bias, alphas).entropy)
    return np.concatenate([np.asarray(profile(hidden[:, i:i + batch_size], mask[i:i + batch_size]))
                           for i in range(0, len(mask), batch_size)], axis=2)


def _flat(values: np.ndarray) -> np.ndarray:
    """``(A, X, P) -> (P, A·X)``."""
    return values.transpose(2, 0, 1).reshape(values.shape[2], -1)


def family_identification(profiles: list[ModelProfile], families: list[str], depths: list[int], prompts: Prompts,
                          config: LensConfig) -> dict:
    """Family from depth-resampled per-prompt profiles: cross-validated over prompts with every depth in
    training, and with each depth held out (trained on the other depths' models, scored on the held-out
    depth's, prompts split by the same folds)."""
    shannon = list(config.alphas).index(1.0)
    per_prompt = [np.moveaxis(resample_depth(np.moveaxis(p.per_prompt(), 1, -1), config.depth_points), -1, 1)
                  for p in profiles]  # (A, G, P) each
    features = np.concatenate([_flat(x) for x in per_prompt])
    final_only = np.concatenate([x[shannon, -1] for x in per_prompt])
    labels = np.repeat([sorted(set(families)).index(f) for f in families], len(prompts))
    depth_of = np.repeat(depths, len(prompts))
    groups = np.tile(prompts.paragraph, len(profiles))
    seen = {"profile": cross_validated_accuracy(features, labels, groups, config.k, config.folds, config.seed),
            "final_entropy_only": cross_validated_accuracy(final_only, labels, groups, config.k, config.folds,
                                                           config.seed)}
    from sklearn.model_selection import GroupKFold

    unseen = {}
    for depth in sorted(set(depths)):
        totals = {"profile": [0, 0], "final_entropy_only": [0, 0], "chance": [0, 0]}
        for train_p, test_p in GroupKFold(config.folds).split(prompts.kind, groups=prompts.paragraph):
            in_train = np.isin(groups, prompts.paragraph[train_p]) & (depth_of != depth)
            in_test = np.isin(groups, prompts.paragraph[test_p]) & (depth_of == depth)
            for name, x in (("profile", features), ("final_entropy_only", final_only[:, None])):
                result = transfer_accuracy(x[in_train], labels[in_train], x[in_test], labels[in_test], config.k)
                totals[name][0] += result["accuracy"] * result["samples"]
                totals[name][1] += result["samples"]
                if name == "profile":
                    totals["chance"][0] += result["chance"] * result["samples"]
                    totals["chance"][1] += result["samples"]
        unseen[str(depth)] = {name: a / n for name, (a, n) in totals.items()}
    mean_unseen = {name: float(np.mean([u[name] for u in unseen.values()])) for name in
                   ("profile", "final_entropy_only", "chance")}
    return {"classes": sorted(set(families)), "k": config.k, "folds": config.folds, "seen_depths": seen,
            "unseen_depth": unseen, "unseen_depth_mean": mean_unseen}


def text_kind_identification(profile: ModelProfile, prompts: Prompts, config: LensConfig) -> dict:
    """Text kind from one model's per-prompt profile (all layers, all α), folds grouped by paragraph."""
    shannon = list(config.alphas).index(1.0)
    per_prompt = profile.per_prompt()
    args = (prompts.kind, prompts.paragraph, config.k, config.folds, config.seed)
    return {"profile": cross_validated_accuracy(_flat(per_prompt), *args),
            "final_entropy_only": cross_validated_accuracy(per_prompt[shannon, -1], *args)}


def correctness_prediction(profile: ModelProfile, prompts: Prompts, config: LensConfig) -> dict:
    """ROC AUC for "the top next-token prediction is right" from one token's profile, folds grouped by prompt
    paragraph; positions without a next token are left out."""
    shannon = list(config.alphas).index(1.0)
    has_next = profile.mask.copy()
    has_next[:, -1] = False
    has_next[:, :-1] &= profile.mask[:, 1:]
    prompt_of, position = np.nonzero(has_next)
    features = profile.entropy[:, :, prompt_of, position]  # (A, L+1, T)
    labels = profile.correct[prompt_of, position]
    groups = prompts.paragraph[prompt_of]
    args = (labels, groups, config.k, config.folds, config.seed)
    return {"profile": cross_validated_auc(features.reshape(-1, len(labels)).T, *args),
            "final_entropy_only": cross_validated_auc(features[shannon, -1], *args),
            "accuracy_of_model": float(labels.mean())}


def renyi_agreement(profiles: list[ModelProfile], alphas) -> dict:
    """Spearman rank correlation between each Rényi order's and Shannon's per-prompt, per-layer entropies,
    pooled over models: how much the choice of α changes the ordering a profile gives."""
    from scipy.stats import spearmanr

    shannon = list(alphas).index(1.0)
    pooled = np.concatenate([p.per_prompt().reshape(len(alphas), -1) for p in profiles], axis=1)
    return {str(a): float(spearmanr(pooled[i], pooled[shannon]).statistic) for i, a in enumerate(alphas)}


def profile_summary(profile: ModelProfile, alphas) -> dict:
    """Per layer: mean and quartiles over prompts of each α's per-prompt entropy (bits)."""
    per_prompt = profile.per_prompt()
    return {str(a): {"mean": per_prompt[i].mean(-1), "q25": np.percentile(per_prompt[i], 25, axis=-1),
                     "q75": np.percentile(per_prompt[i], 75, axis=-1)} for i, a in enumerate(alphas)}


def lens_study(config: LensConfig = LensConfig(), progress: bool = False) -> dict:
    """Run the study; returns a JSON-ready dict (numbers and lists) and the per-model profiles under
    ``"_profiles"`` (for figures)."""
    from tqdm.auto import tqdm

    if config.protocol == "entropy-lens":
        return entropy_lens_study(config, progress)
    prompts = study_prompts(config)
    models, profiles = [], []
    for train in tqdm(config.train_configs(), desc="language models", disable=not progress, unit="model"):
        model = load_or_train_lm(train, progress=progress)
        models.append(model)
        profiles.append(lm_profile(model, prompts, config.alphas))
    families = [m.config.family for m in models]
    depths = [m.config.num_layers for m in models]
    result = {
        "config": dataclasses.asdict(config),
        "prompts": {"count": len(prompts), "per_kind": {k: int((prompts.kind == i).sum())
                                                        for i, k in enumerate(TEXT_KINDS)},
                    "paragraphs": int(len(np.unique(prompts.paragraph))), "length": config.prompt_length},
        "models": [{"name": m.config.name, "family": m.config.family, "depth": m.config.num_layers,
                    "held_out_bits_per_char": m.held_out_bits_per_char,
                    "training": dataclasses.asdict(m.config)} for m in models],
        "profiles": {p.name: profile_summary(p, config.alphas) for p in profiles},
        "family": family_identification(profiles, families, depths, prompts, config),
        "text_kind": {p.name: text_kind_identification(p, prompts, config) for p in profiles},
        "correctness": {p.name: correctness_prediction(p, prompts, config) for p in profiles},
        "renyi_vs_shannon_spearman": renyi_agreement(profiles, config.alphas),
        "_profiles": profiles,
        "_prompts": prompts,
    }
    if config.minilm:
        minilm = minilm_profile(prompts, config.alphas)
        result["profiles"]["minilm"] = profile_summary(minilm, config.alphas)
        result["text_kind"]["minilm"] = text_kind_identification(minilm, prompts, config)
        result["_profiles"].append(minilm)
    return result


# --- Entropy-Lens's protocol ---------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class TaskPrompts:
    """Entropy-Lens's task prompts, with a text kind in the role of the task.

    Attributes:
        text: ``story\\n\\ncue\\n\\n`` (forms "base", "scramble") or ``cue\\n\\nstory\\n\\n`` ("rev",
            "scramble_rev"); "scramble" forms shuffle the story's space-separated words.
        kind: ``(P,)`` the cue's text kind (index into TEXT_KINDS): the label.
        form: ``(P,)`` index into PROMPT_FORMS.
        story: ``(P,)`` which story.
        cue_paragraph: ``(P,)`` the held-out paragraph the cue is cut from.
    """

    text: tuple[str, ...]
    kind: np.ndarray
    form: np.ndarray
    story: np.ndarray
    cue_paragraph: np.ndarray

    def __len__(self) -> int:
        return len(self.text)


def _scramble(text: str, rng: np.random.Generator) -> str:
    words = text.split(" ")
    rng.shuffle(words)
    return " ".join(words)


def prompt_forms(story: str, cue: str, rng: np.random.Generator) -> tuple[str, str, str, str]:
    """The anchor's four forms of a (story, cue) pair, in `PROMPT_FORMS` order, laid out as its
    ``story\n\ncue\n\n``: base (story, then cue), rev (cue first), scramble and scramble_rev (the same with the
    story's space-separated words shuffled by ``rng``: word level, so character and BPE text alike)."""
    shuffled = _scramble(story, rng)
    return tuple(f"{first}\n\n{second}\n\n" for first, second in ((story, cue), (cue, story), (shuffled, cue),
                                                                  (cue, shuffled)))


def task_prompts(config: LensConfig) -> TaskPrompts:
    """The anchor's ``DataManagerTs.prompt_generator(scramble=True, pre_append_prompt=True)`` on pydoc text.

    The anchor appends one of six instructions (two each of three task types) to a TinyStories story, and the
    label is the task type. Here the **cue** is the opening ``piece_length`` characters of a held-out paragraph
    of one text kind (prose, code, list, grammar: the label), and the **story** is the opening of another
    held-out paragraph of any kind, chosen without regard to the label; as in the anchor, every story is
    paired with a cue of every kind, so the story says nothing about the label. Each pair gives four prompts:
    base ``story\\n\\ncue\\n\\n``, rev ``cue\\n\\nstory\\n\\n``, and the same two with the story's words shuffled
    (seeded). The anchor's loop re-scrambles its story variable in place, so its later tasks' "base" prompts
    already carry a scrambled story (an accident of its code); here each pair scrambles the original story.
    """
    split = split_corpus(LMTrainConfig.held_out_fraction, LMTrainConfig.split_seed)
    piece = config.piece_length()
    rng = np.random.default_rng(config.seed)
    cues = kind_prompts(split.held_out, piece, per_paragraph=1)
    stories = [p.text[:piece] for p in split.held_out if len(p.text) >= piece]
    chosen = rng.permutation(len(stories))[:config.stories]
    order = {kind: rng.permutation(np.flatnonzero(cues.kind == kind)) for kind in range(len(TEXT_KINDS))}
    text, kind, form, story, paragraph = [], [], [], [], []
    for s, index in enumerate(chosen):
        for k in range(len(TEXT_KINDS)):
            cue = order[k][s % len(order[k])]  # cycles when a kind has fewer cues than there are stories
            for f, form_text in enumerate(prompt_forms(stories[index], cues.text[cue], rng)):
                text.append(form_text)
                kind.append(k)
                form.append(f)
                story.append(s)
                paragraph.append(cues.paragraph[cue])
    return TaskPrompts(tuple(text), np.asarray(kind), np.asarray(form), np.asarray(story), np.asarray(paragraph))


def generated_profile(model: TrainedLM, prompts: TaskPrompts, config: LensConfig, batch_size: int = 400) -> dict:
    """Lens entropies over generated tokens (`pdeflow.information.generation.generate_with_lens`), in fixed-size
    batches (the last one padded: one compile per model).

    Returns:
        ``{"entropy": (A, T, L, P) bits, "tokens": (P, T)}``.
    """
    import jax

    from pdeflow.information.generation import generate_with_lens

    tokens, mask = model.encode(prompts.text)
    lengths = mask.sum(1)
    batch_size = min(batch_size, len(tokens))
    key = jax.random.PRNGKey(config.seed)
    entropies, generated = [], []
    for start in range(0, len(tokens), batch_size):
        rows = np.arange(start, start + batch_size) % len(tokens)  # wraps round to pad the last batch
        out = generate_with_lens(model.model, model.params, tokens[rows], lengths[rows], config.generate_tokens,
                                 config.alphas, config.temperature, jax.random.fold_in(key, start),
                                 ENTROPY_LENS_SUPPORT_THRESHOLD)
        keep = min(batch_size, len(tokens) - start)
        entropies.append(np.asarray(out.entropy)[..., :keep])
        generated.append(np.asarray(out.tokens)[:keep])
    return {"entropy": np.concatenate(entropies, -1), "tokens": np.concatenate(generated)}


def entropy_lens_identification(entropy: np.ndarray, prompts: TaskPrompts, config: LensConfig) -> dict:
    """Per Rényi order: the anchor's AUC of the text kind from the windowed profile (every block) and from the
    final block's entropy alone, each against the stratified dummy, their paired t-tests, and the same with
    folds grouped by cue paragraph (the four forms of a prompt, and prompts sharing a cue, never straddle a
    split; the anchor does not group). For Shannon also each form's prompts on their own (``by_form``).
    ``config``: its ``alphas`` and ``windows`` (a `LensConfig`, or a checkpoint's
    `pdeflow.studies.checkpoint_entropy_lens.EntropyLensCheckpointConfig`)."""
    from pdeflow.information.generation import windowed_profile

    profiles = windowed_profile(entropy, config.windows)  # (A, P, W·L)
    layers = entropy.shape[2]
    result = {}
    for i, alpha in enumerate(config.alphas):
        profile, final = profiles[i], profiles[i][:, layers - 1::layers]
        row = {}
        for name, groups in (("anchor_folds", None), ("grouped_folds", prompts.cue_paragraph)):
            p = entropy_lens_auc(profile, prompts.kind, groups=groups)
            f = entropy_lens_auc(final, prompts.kind, groups=groups)
            row[name] = {"profile": p, "final_entropy_only": f, "p_profile_vs_final": paired_fold_p_value(p, f)}
        if alpha == 1.0:  # each form on its own (anchor folds): does the cue's place matter?
            row["by_form"] = {}
            for f, form in enumerate(PROMPT_FORMS):
                keep = prompts.form == f
                p = entropy_lens_auc(profile[keep], prompts.kind[keep])
                row["by_form"][form] = {"profile": p["auc"], "final_entropy_only":
                                        entropy_lens_auc(final[keep], prompts.kind[keep])["auc"],
                                        "dummy": p["dummy_auc"], "p_value": p["p_value"]}
        result[str(alpha)] = row
    return result


def entropy_lens_study(config: LensConfig, progress: bool = False) -> dict:
    """Entropy-Lens's task identification on pydoc's character LMs (`task_prompts`, `generated_profile`,
    `entropy_lens_identification`); returns a JSON-ready dict and, under ``"_generated"``, the raw entropies."""
    from tqdm.auto import tqdm

    from pdeflow.data.pydoc_corpus import decode

    prompts = task_prompts(config)
    models, generated, identification = [], {}, {}
    for train in tqdm(config.train_configs(), desc="language models", disable=not progress, unit="model"):
        model = load_or_train_lm(train, progress=progress)
        models.append(model)
        out = generated_profile(model, prompts, config)
        generated[model.config.name] = out
        identification[model.config.name] = entropy_lens_identification(out["entropy"], prompts, config)
    shannon = list(config.alphas).index(1.0)
    mean_profiles = {name: {kind: out["entropy"][shannon][..., prompts.kind == k].mean((0, 2)).tolist()
                            for k, kind in enumerate(TEXT_KINDS)} for name, out in generated.items()}
    first = generated[models[-1].config.name]["tokens"]
    examples = [{"form": PROMPT_FORMS[prompts.form[i]], "kind": TEXT_KINDS[prompts.kind[i]],
                 "prompt": prompts.text[i], "generated": decode(first[i], models[-1].vocabulary)}
                for i in range(4)]
    return {
        "config": dataclasses.asdict(config),
        "protocol": "entropy-lens",
        "prompts": {"count": len(prompts), "per_kind": {k: int((prompts.kind == i).sum())
                                                        for i, k in enumerate(TEXT_KINDS)},
                    "forms": list(PROMPT_FORMS), "stories": config.stories,
                    "cue_paragraphs": int(len(np.unique(prompts.cue_paragraph))),
                    "piece_length": config.piece_length(), "generated_tokens": config.generate_tokens,
                    "examples": examples, "example_model": models[-1].config.name},
        "models": [{"name": m.config.name, "family": m.config.family, "depth": m.config.num_layers,
                    "held_out_bits_per_char": m.held_out_bits_per_char} for m in models],
        "shannon_profile_by_kind": mean_profiles,
        "identification": identification,
        "_generated": generated,
        "_prompts": prompts,
    }
