"""Whose files an ``--out`` folder holds, so that no command writes among another's.

``finetune`` refuses any folder with files that are not its own (see
``train.check_run_folder``). ``pretrain``, ``compare`` and ``convert`` write
files whose names depend on the tokenizer, so they refuse by what marks
another command's folder instead: re-running a command into its own folder
(to resume it, or to read back its runs) stays possible.
"""

from __future__ import annotations

from pathlib import Path

from minitransfer.loop import TrainingError

# the files that say which command wrote a folder
MARKS = {
    "finetune": ("result.json", "best"),
    "pretrain": ("pretrain.json", "MODEL_CARD.md"),
    "compare": ("compare.json", "results.csv", "summary.json", "runs"),
}
# a saved model: convert's output, a download, a pretraining run's checkpoint
CHECKPOINT = ("config.json", "model.safetensors")
# what a training run keeps for resuming (pretrain, finetune)
RUN_STATE = ("state", "metrics.jsonl")


def check_out_folder(out: str | Path, command: str) -> None:
    """Refuse ``out`` (before any work) where ``command`` would write among
    the files of another command's run, or over a checkpoint it did not write."""
    out = Path(out)
    if not out.is_dir():
        return
    here = {p.name for p in out.iterdir()}
    for other, marks in MARKS.items():
        found = [m for m in marks if m in here]
        if other != command and found:
            raise TrainingError(
                f"--out {out} holds a `minitransfer {other}` run ({', '.join(found)}); "
                f"`minitransfer {command}` would write among its files: choose an empty or new folder")
    own = [m for m in (*MARKS.get(command, ()), *RUN_STATE) if m in here]
    if command == "convert" and own:
        raise TrainingError(
            f"--out {out} holds a training run ({', '.join(own)}); converting into it would replace its "
            f"checkpoint under its model card and resumable state: choose an empty or new folder")
    if command == "pretrain" and "pretrain.json" in here and "state" not in here:
        raise TrainingError(
            f"--out {out} holds a finished pretraining run without its resumable state (as shipped "
            f"checkpoints are); pretraining would write over its model: choose an empty or new folder (to go "
            f"on from that model, give it as --init-from)")
    checkpoint = [m for m in CHECKPOINT if m in here]
    if command in ("pretrain", "compare") and checkpoint and not own:
        raise TrainingError(
            f"--out {out} holds a saved model ({', '.join(checkpoint)}) that no `minitransfer {command}` run "
            f"wrote; {'pretraining would write over it' if command == 'pretrain' else 'compare would write among its files'}: "
            f"choose an empty or new folder (to start from that model, give it as "
            f"{'--init-from' if command == 'pretrain' else '--model'})")
