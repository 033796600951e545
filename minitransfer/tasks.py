"""The tasks a backbone can be fine-tuned for: one table, like the modes.

A task is one module holding its head and the head's task logic (loss,
metrics, batches, checkpoint format, what ``compare`` reports):
``classify.py``, ``qa.py``, ``chat.py``; here each is named and given the
loader of its data. ``minitransfer finetune --task``, ``evaluate`` and
``compare`` read this table and nothing task-specific. Importing it
registers every head kind a checkpoint may name (``heads.HEADS``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from minitransfer import prompting  # noqa: F401  (registers the prompt head: a classifier's checkpoint kind)
from minitransfer.chat import ChatHead, load_chat_dataset
from minitransfer.classify import ClassificationHead
from minitransfer.data import load_dataset
from minitransfer.heads import TaskHead
from minitransfer.qa import SpanHead, load_qa_dataset


def _load_classification(spec: str, text_field: str = "text", label_field: str = "label", split_seed: int = 0):
    return load_dataset(spec, text_field=text_field, label_field=label_field, split_seed=split_seed)


def _load_qa(spec: str, split_seed: int = 0, **_fields):
    return load_qa_dataset(spec, split_seed=split_seed)


def _load_chat(spec: str, split_seed: int = 0, **_fields):
    return load_chat_dataset(spec, split_seed=split_seed)


@dataclasses.dataclass(frozen=True)
class Task:
    name: str
    head: type[TaskHead]
    load: Callable  # (spec, text_field=, label_field=, split_seed=) -> the dataset the head's ``prepare`` reads
    help: str
    default_data: str = "tweets"  # the data spec when none is given
    default_mode: str = "probe"  # the mode when none is given


TASKS: dict[str, Task] = {
    t.name: t
    for t in (
        Task(
            "classify",
            ClassificationHead,
            _load_classification,
            "text classification (a label per text; --text-field/--label-field)",
        ),
        Task(
            "qa",
            SpanHead,
            _load_qa,
            "extractive question answering (question, context, answers: tfds:squad or jsonl:DIR)",
        ),
        Task(
            "chat",
            ChatHead,
            _load_chat,
            "replies in conversations, the loss on the replies only (chatterbot, the packaged corpus, or "
            'jsonl:PATH with {"messages": [{"role", "content"}, ...]} rows)',
            default_data="chatterbot",
            default_mode="full",
        ),
    )
}


def get_task(name: str) -> Task:
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; expected one of {list(TASKS)}")
    return TASKS[name]


def task_of(head: TaskHead) -> Task:
    for t in TASKS.values():
        if isinstance(head, t.head):
            return t
    raise ValueError(
        f"no task trains a {type(head).__name__}; expected one of {[t.head.__name__ for t in TASKS.values()]}"
    )


def metrics_text(metrics: dict, head: TaskHead, prefix: str = "") -> str:
    """ "accuracy 0.8123, macro-F1 0.8011, loss 0.4410 (n=400)": the head's metrics in words."""
    parts = [f"{prefix}{label} {metrics[key]:.4f}" for key, label in head.metric_names.items() if key in metrics]
    return ", ".join(parts) + (f" (n={metrics['n']})" if "n" in metrics else "")
