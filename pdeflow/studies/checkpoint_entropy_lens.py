"""Entropy-Lens's task identification on a user's GPT-2-format checkpoint
(``pdeflow lens --model FOLDER --protocol entropy-lens --texts FILE``).

The protocol of `pdeflow.studies.lens.entropy_lens_study` (Ali et al. 2025, github christopher-irw/Entropy-Lens),
on the user's model and the user's task-labelled prompts instead of pydoc's character LMs and text kinds:

* **Prompts**: JSON lines ``{"text": ..., "task": ...}``, optionally with ``"context"``. The text plays the
  anchor's instruction (the cue), the task its label, the context its story. Each prompt is scored in the
  anchor's four forms (`pdeflow.studies.lens.prompt_forms`, word level: the context's space-separated words are
  shuffled, so BPE text is scrambled by words, never inside a token): base ``context\\n\\ntext\\n\\n``, rev
  ``text\\n\\ncontext\\n\\n``, scramble and scramble_rev. A prompt without a context takes another prompt's text
  as its context, chosen at random whatever its task (seeded), as the anchor pairs stories with tasks
  regardless of the label.
* **Profile** (`pdeflow.information.generation.generate_with_lens` through the checkpoint's own forward,
  `CheckpointDecoder`): ``generate_tokens`` tokens are generated after each form (sampled at ``temperature``, or
  greedy at 0); at each step the lens entropy (Rényi ``alphas``, bits) of every block's output at the last
  position, read through the model's final LayerNorm and LM head; averaged over the generated tokens in
  ``windows`` windows. Prompts longer than the room the generation leaves keep their **last** tokens (where the
  base form's cue is).
* **Read-out** (`pdeflow.information.classify.entropy_lens_auc`, via
  `pdeflow.studies.lens.entropy_lens_identification`): k-NN (k = 29, Euclidean), stratified 10-fold ROC AUC
  (macro one-vs-rest) beside a stratified dummy, paired t-test; the same from the final block's entropy alone
  (the anchor's claim is that the profile beats it), and with folds grouped by prompt (a prompt's four forms in
  one fold; the anchor does not group).
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from pdeflow.information.classify import ENTROPY_LENS_FOLDS
from pdeflow.store import result_folder, save_figure
from pdeflow.studies.lens import PROMPT_FORMS, TaskPrompts, prompt_forms
from pdeflow.validation import check_finite_numbers

ENTROPY_LENS_ALPHAS = (0.5, 1.0, 5.0)
TASK_FORMAT = ('JSON lines {"text": "the prompt", "task": "its task label"}, optionally with "context": the story '
               "the four forms put before and after the text")


@dataclasses.dataclass(frozen=True)
class EntropyLensCheckpointConfig:
    """Settings of Entropy-Lens's protocol on a checkpoint.

    Attributes:
        alphas: Rényi orders (1.0 Shannon must be among them; "inf" is the min-entropy).
        generate_tokens: tokens generated after every prompt form (the anchor's --max_len 8).
        windows: the generated tokens are averaged in this many equal windows (1 in the anchor's task
            identification).
        temperature: 1 samples as the anchor's task identification does; 0 decodes greedily.
        seed: seeds the contexts borrowed by prompts without one, the scrambling and the sampling.
        max_tokens: at most this many prompt tokens (the last ones) are kept; the model's positions less
            ``generate_tokens`` bound it too.
        batch_size: prompt forms generated at a time (the last batch is padded: one compile in all).
    """

    alphas: tuple[float, ...] = ENTROPY_LENS_ALPHAS
    generate_tokens: int = 8
    windows: int = 1
    temperature: float = 1.0
    seed: int = 0
    max_tokens: int = 128
    batch_size: int = 32

    def __post_init__(self):
        object.__setattr__(self, "alphas", tuple(float(a) for a in self.alphas))  # keys "1.0", "5.0", "inf"
        check_finite_numbers(self)
        if 1.0 not in self.alphas or any(a < 0 for a in self.alphas):
            raise ValueError(f"alphas must be >= 0 and include 1.0 (Shannon); got {list(self.alphas)}.")
        if self.generate_tokens < 1 or self.windows < 1 or self.generate_tokens % self.windows:
            raise ValueError(f"need generate_tokens >= 1 and windows dividing it; got {self.generate_tokens} and "
                             f"{self.windows}.")
        if self.temperature < 0 or self.max_tokens < 1 or self.batch_size < 1:
            raise ValueError(f"need temperature >= 0 (0: greedy), max_tokens >= 1 and batch_size >= 1; got "
                             f"{self.temperature}, {self.max_tokens} and {self.batch_size}.")


@dataclasses.dataclass(frozen=True)
class LabelledPrompts:
    """A user's task-labelled prompts: ``text``, ``task`` (a label each) and ``context`` (None where not given),
    and the file they came from (None for prompts given in Python)."""

    text: tuple[str, ...]
    task: tuple[str, ...]
    context: tuple[str | None, ...]
    file: str | None = None

    def __len__(self) -> int:
        return len(self.text)


def read_labelled_prompts(path: str | Path) -> LabelledPrompts:
    """The prompts of a JSON-lines file (`TASK_FORMAT`); ``"task"`` may be a string or a number (read as text).

    Raises:
        FileNotFoundError, ValueError: as `pdeflow.data.user_inputs.read_texts`, and for a plain-text file or a
            line without a ``"task"`` (named, with what to add) or with a ``"context"`` that is not a string.
    """
    from pdeflow.data.user_inputs import read_texts

    path = Path(path)
    texts = read_texts(path)  # the file, its encoding and every "text" checked, with its words
    lines = [(n, line.strip()) for n, line in enumerate(path.read_text("utf-8-sig").splitlines(), start=1)
             if line.strip()]
    if not lines[0][1].startswith("{"):
        raise ValueError(f"{path} holds one text per line, without tasks; Entropy-Lens's protocol identifies each "
                         f"prompt's task, so write {TASK_FORMAT}.")
    tasks, contexts = [], []
    for number, line in lines:
        record = json.loads(line)
        task = record.get("task")
        if isinstance(task, bool) or not isinstance(task, (str, int)) or not str(task).strip():
            given = "no \"task\" field" if "task" not in record else f'"task" is {task!r}'
            raise ValueError(f'{path}, line {number}: {given}; add the prompt\'s task label ("task": "summary", '
                             f"say): every line must be {TASK_FORMAT}.")
        context = record.get("context")
        if context is not None and (not isinstance(context, str) or not context.strip()):
            raise ValueError(f'{path}, line {number}: "context" is {context!r}; give a non-empty string or leave '
                             "it out.")
        tasks.append(str(task).strip())
        contexts.append(None if context is None else context.strip())
    return LabelledPrompts(tuple(texts), tuple(tasks), tuple(contexts), str(path))


def labelled_prompts(prompts) -> LabelledPrompts:
    """``prompts``: a `LabelledPrompts`, a JSON-lines file (`read_labelled_prompts`) or a list of
    ``{"text", "task"[, "context"]}`` dicts."""
    if isinstance(prompts, LabelledPrompts):
        return prompts
    if isinstance(prompts, (str, Path)):
        return read_labelled_prompts(prompts)
    records = list(prompts)
    for i, r in enumerate(records):
        if not isinstance(r, dict) or not isinstance(r.get("text"), str) or "task" not in r:
            raise ValueError(f'prompt {i} is {r!r}; give dicts {{"text": ..., "task": ...}} (and optionally '
                             '"context").')
    return LabelledPrompts(tuple(r["text"] for r in records), tuple(str(r["task"]) for r in records),
                           tuple(r.get("context") for r in records))


def check_task_counts(prompts: LabelledPrompts, folds: int = ENTROPY_LENS_FOLDS) -> dict[str, int]:
    """``{task: prompts}``, sorted by task; ``ValueError`` unless there are two tasks or more with at least
    ``folds`` prompts each (stratified ``folds``-fold cross-validation, with a prompt's four forms in one fold
    when the folds are grouped)."""
    names, counts = np.unique(np.asarray(prompts.task, dtype=object).astype(str), return_counts=True)
    where = f" in {prompts.file}" if prompts.file else ""
    if len(names) < 2:
        raise ValueError(f"the prompts{where} have {len(names)} task ({', '.join(map(repr, names))}); identifying "
                         "the task needs at least two tasks, each with its \"task\" label.")
    short = {str(n): int(c) for n, c in zip(names, counts) if c < folds}
    if short:
        listed = ", ".join(f"{n!r} has {c} (add {folds - c})" for n, c in short.items())
        raise ValueError(f"Entropy-Lens's stratified {folds}-fold cross-validation needs at least {folds} prompts of "
                         f"every task (each is scored in its four forms, and the grouped folds keep a prompt's forms "
                         f"together); {listed}{where}.")
    return {str(n): int(c) for n, c in zip(names, counts)}


def build_task_prompts(prompts: LabelledPrompts, seed: int = 0) -> tuple[TaskPrompts, list[str]]:
    """The four forms of every prompt (`prompt_forms`, in `PROMPT_FORMS` order), as a `TaskPrompts`: ``kind`` is
    the task's index in the sorted task names (returned too), ``story`` the prompt whose context or text is the
    context, ``cue_paragraph`` the prompt (the group of its four forms)."""
    tasks = sorted(check_task_counts(prompts))
    rng = np.random.default_rng(seed)
    text, kind, form, story, group = [], [], [], [], []
    for i, (cue, task, context) in enumerate(zip(prompts.text, prompts.task, prompts.context)):
        if context is None:  # another prompt's text, whatever its task
            source = int(rng.integers(len(prompts) - 1))
            source += source >= i
            context = prompts.text[source]
        else:
            source = i
        for f, form_text in enumerate(prompt_forms(context, cue, rng)):
            text.append(form_text)
            kind.append(tasks.index(str(task)))
            form.append(f)
            story.append(source)
            group.append(i)
    return TaskPrompts(tuple(text), np.asarray(kind), np.asarray(form), np.asarray(story), np.asarray(group)), tasks


def tokenize_prompts(model, texts: Sequence[str], max_tokens: int) -> tuple[np.ndarray, np.ndarray, int]:
    """``(ids (P, W), lengths (P,), truncated)``: each text tokenised by the checkpoint's tokenizer (its special
    tokens added), its **last** ``max_tokens`` tokens kept, right-padded with the pad id to the longest."""
    tokenizer = model.tokenizer
    tokenizer.no_truncation()  # `PretrainedModel.tokenize` keeps a text's start; the cue may sit at its end
    tokenizer.no_padding()
    encodings = [e.ids for e in tokenizer.encode_batch(list(texts))]
    empty = [i for i, e in enumerate(encodings) if not e]
    if empty:
        raise ValueError(f"prompt forms {empty[:5]} give no tokens; every prompt needs at least one token.")
    kept = [e[-max_tokens:] for e in encodings]
    ids = np.full((len(kept), max(map(len, kept))), model.pad_token_id, np.int32)
    for row, e in enumerate(kept):
        ids[row, :len(e)] = e
    return ids, np.array([len(e) for e in kept]), sum(len(e) > max_tokens for e in encodings)


def checkpoint_generated_profile(model, prompts: TaskPrompts, config: EntropyLensCheckpointConfig,
                                 progress: bool = False) -> dict:
    """Lens entropies over the tokens a gpt2 `PretrainedModel` generates after every prompt form, in fixed-size
    batches of one width (one compile).

    Returns:
        ``{"entropy": (A, T, L, P) bits, "tokens": (P, T), "prompt_tokens": (P,), "truncated": forms cut,
        "room": the most prompt tokens kept}``.
    """
    import jax
    from tqdm.auto import tqdm

    from pdeflow.information.entropy import ENTROPY_LENS_SUPPORT_THRESHOLD
    from pdeflow.information.generation import generate_with_lens, lens_decoder

    decoder, params = lens_decoder(model)
    room = min(config.max_tokens, decoder.context_size - config.generate_tokens)
    if room < 1:
        raise ValueError(f"generating {config.generate_tokens} tokens leaves no room for a prompt in the model's "
                         f"{decoder.context_size} positions; generate fewer.")
    ids, lengths, truncated = tokenize_prompts(model, prompts.text, room)
    batch_size = min(config.batch_size, len(ids))
    key = jax.random.PRNGKey(config.seed)
    entropies, generated = [], []
    for start in tqdm(range(0, len(ids), batch_size), desc="generating", disable=not progress, unit="batch"):
        rows = np.arange(start, start + batch_size) % len(ids)  # wraps round to pad the last batch
        out = generate_with_lens(decoder, params, ids[rows], lengths[rows], config.generate_tokens, config.alphas,
                                 config.temperature, jax.random.fold_in(key, start), ENTROPY_LENS_SUPPORT_THRESHOLD)
        keep = min(batch_size, len(ids) - start)
        entropies.append(np.asarray(out.entropy)[..., :keep])
        generated.append(np.asarray(out.tokens)[:keep])
    return {"entropy": np.concatenate(entropies, -1), "tokens": np.concatenate(generated), "prompt_tokens": lengths,
            "truncated": int(truncated), "room": int(room)}


def _key(alpha: float) -> str:
    return "inf" if math.isinf(alpha) else str(float(alpha))


def checkpoint_entropy_lens(folder: str | Path, prompts,
                            config: EntropyLensCheckpointConfig = EntropyLensCheckpointConfig(),
                            progress: bool = False) -> dict:
    """Entropy-Lens's task identification on the GPT-2-format checkpoint ``folder`` with ``prompts`` (a JSON-lines
    file, a list of ``{"text", "task"[, "context"]}`` dicts or a `LabelledPrompts`). The folder's type and the
    prompts (two tasks or more, `ENTROPY_LENS_FOLDS` prompts of each) are checked before the weights are loaded.

    Returns:
        a JSON-ready dict: ``"auc"`` ``{alpha: {"profile", "dummy", "p_value", "final_entropy_only",
        "final_dummy", "final_p_value", "p_profile_vs_final", "grouped_profile", "grouped_final_entropy_only"}}``
        (anchor folds unless "grouped"), the full ``"identification"`` (`entropy_lens_identification`), the mean
        Shannon profile per task, the prompts' counts and a few examples; raw entropies under ``"_generated"``.
    """
    from pdeflow.models.checkpoints import load_pretrained, read_shape
    from pdeflow.sources.checkpoint import check_model_name
    from pdeflow.studies.checkpoint_lens import LENS_MODEL_TYPES
    from pdeflow.studies.lens import entropy_lens_identification

    check_model_name(str(folder))
    info = read_shape(Path(folder))
    if info.model_type not in LENS_MODEL_TYPES:
        raise ValueError(f"{folder} is a {info.model_type} model; Entropy-Lens's protocol generates with a language "
                         f"model's next-token head, which pdeflow reads from {', '.join(LENS_MODEL_TYPES)} checkpoints "
                         "only.")
    labelled = labelled_prompts(prompts)
    counts = check_task_counts(labelled)
    forms, tasks = build_task_prompts(labelled, config.seed)
    model = load_pretrained(Path(folder))
    generated = checkpoint_generated_profile(model, forms, config, progress)
    identification = entropy_lens_identification(generated["entropy"], forms, config)
    auc = {}
    for alpha, row in identification.items():
        anchor, grouped = row["anchor_folds"], row["grouped_folds"]
        auc[alpha] = {"profile": anchor["profile"]["auc"], "dummy": anchor["profile"]["dummy_auc"],
                      "p_value": anchor["profile"]["p_value"],
                      "final_entropy_only": anchor["final_entropy_only"]["auc"],
                      "final_dummy": anchor["final_entropy_only"]["dummy_auc"],
                      "final_p_value": anchor["final_entropy_only"]["p_value"],
                      "p_profile_vs_final": anchor["p_profile_vs_final"],
                      "grouped_profile": grouped["profile"]["auc"],
                      "grouped_final_entropy_only": grouped["final_entropy_only"]["auc"]}
    shannon = generated["entropy"][list(config.alphas).index(1.0)]  # (T, L, P)
    examples = [{"form": PROMPT_FORMS[forms.form[i]], "task": tasks[forms.kind[i]], "prompt": forms.text[i],
                 "generated": model.tokenizer.decode([int(t) for t in generated["tokens"][i]])} for i in range(4)]
    return {
        "model": {"folder": str(folder), "model_type": info.model_type, "num_layers": info.num_layers,
                  "parameters": model.parameters()},
        "protocol": "entropy-lens",
        "config": dataclasses.asdict(config),
        "alphas": [_key(a) for a in config.alphas],
        "prompts": {"file": labelled.file, "count": len(labelled), "per_task": counts, "forms": list(PROMPT_FORMS),
                    "scored": len(forms), "with_context": sum(c is not None for c in labelled.context),
                    "prompt_tokens": {"min": int(generated["prompt_tokens"].min()),
                                      "max": int(generated["prompt_tokens"].max())},
                    "truncated": generated["truncated"], "room": generated["room"], "examples": examples},
        "auc": auc,
        "identification": identification,
        "shannon_profile_by_task": {task: shannon[..., forms.kind == k].mean((0, 2)).tolist()
                                    for k, task in enumerate(tasks)},
        "_generated": generated,
        "_prompts": forms,
    }


def checkpoint_entropy_lens_summary(result: dict) -> str:
    """Markdown: AUC per order beside the dummy and the final-layer entropy alone, their p-values, and each
    form's AUC (Shannon)."""
    model, prompts, config = result["model"], result["prompts"], result["config"]
    source = prompts["file"] or "prompts given in Python"
    decoding = "greedy" if config["temperature"] == 0 else f"sampled at temperature {config['temperature']}"
    per_task = ", ".join(f"{t}: {n}" for t, n in prompts["per_task"].items())
    contexts = ("all with their own context" if prompts["with_context"] == prompts["count"] else
                "each borrowing another prompt's text as its context" if prompts["with_context"] == 0 else
                f"{prompts['with_context']} with their own context, the rest borrowing another prompt's text")
    lines = [f"# Entropy-Lens task identification: {model['model_type']} checkpoint {model['folder']}", "",
             f"{prompts['count']} prompts from {source} ({per_task}), each in 4 forms "
             f"({', '.join(prompts['forms'])}; {contexts}): {prompts['scored']} prompts of "
             f"{prompts['prompt_tokens']['min']}–{prompts['prompt_tokens']['max']} tokens. "
             f"{config['generate_tokens']} tokens generated after each ({decoding}); the profile is every block's lens "
             f"entropy (bits) at the last position, averaged over them in {config['windows']} window(s). k-NN (k = 29) "
             "with stratified 10-fold ROC AUC (macro one-vs-rest) beside a stratified dummy; p: paired t-test over "
             "the folds.", "",
             *([f"**{prompts['truncated']} prompt forms were longer than the {prompts['room']} tokens the generation "
                "leaves and kept their last tokens**: a rev form so cut loses the start of its text (the cue); shorten "
                "the contexts, or raise --max-tokens if the model's positions allow.", ""] if prompts["truncated"]
               else []),
             "| α | profile AUC | dummy AUC | p vs dummy | final-layer entropy only | p profile vs final | "
             "profile, folds grouped by prompt | final only, grouped |", "|---|---|---|---|---|---|---|---|"]
    for alpha in result["alphas"]:
        a = result["auc"][alpha]
        lines.append(f"| {alpha} | {a['profile']:.3f} | {a['dummy']:.3f} | {a['p_value']:.2g} | "
                     f"{a['final_entropy_only']:.3f} | {a['p_profile_vs_final']:.2g} | {a['grouped_profile']:.3f} | "
                     f"{a['grouped_final_entropy_only']:.3f} |")
    by_form = result["identification"]["1.0"]["by_form"]
    lines += ["", "Shannon, each form on its own (anchor folds):", "",
              "| form | profile AUC | final only | dummy | p |", "|---|---|---|---|---|"]
    lines += [f"| {form} | {r['profile']:.3f} | {r['final_entropy_only']:.3f} | {r['dummy']:.3f} | "
              f"{r['p_value']:.2g} |" for form, r in by_form.items()]
    return "\n".join(lines) + "\n"


def write_checkpoint_entropy_lens_figure(result: dict, folder: Path) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for task, values in result["shannon_profile_by_task"].items():
        ax.plot(range(1, len(values) + 1), values, marker="o", label=task)
    ax.set(xlabel="block", ylabel="lens entropy over generated tokens (bits)",
           title=f"{result['model']['model_type']}: Shannon profile by task")
    ax.legend(fontsize=8)
    return save_figure(fig, folder, "profile_by_task.png")


def write_checkpoint_entropy_lens_report(result: dict, out: str | Path, overwrite: bool = False,
                                         figures: bool = True) -> Path:
    """``results.json``, ``summary.md`` and ``profile_by_task.png`` into ``out``, atomically (as every study)."""
    with result_folder(out, overwrite) as folder:
        folder.write_json("results.json", {k: v for k, v in result.items() if not k.startswith("_")})
        folder.write_text("summary.md", checkpoint_entropy_lens_summary(result))
        if figures:
            write_checkpoint_entropy_lens_figure(result, folder.path)
    return Path(out)
