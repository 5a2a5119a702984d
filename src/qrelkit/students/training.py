"""What every fine-tuned student's training shares: resumable checkpoints, a time budget, logs on stderr."""

from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path
from typing import Any

log = logging.getLogger("qrelkit")


def default_device() -> str:
    """Where a student trains and labels unless told: the GPU when torch sees one."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def run_trainer(
    make_trainer: Any,
    args_class: Any,
    *,
    checkpoint_dir: str | Path | None,
    time_budget_s: float | None = None,
    use_cpu: bool,
    bf16: bool | None = None,
    **arguments: Any,
) -> dict[str, Any]:
    """Build the training arguments (``args_class``, a sentence-transformers ``*TrainingArguments``) and the
    trainer (``make_trainer(args, callbacks)``), then train: from the last checkpoint in ``checkpoint_dir``
    when there is one, saving every 200 steps there, and stopping with a save once ``time_budget_s`` is spent.
    Without ``checkpoint_dir`` nothing is saved. Returns steps, seconds, where it resumed, whether it stopped."""
    from transformers.trainer_utils import get_last_checkpoint

    scratch = None if checkpoint_dir else tempfile.TemporaryDirectory(prefix="qrelkit-train-")
    out_dir = str(checkpoint_dir) if checkpoint_dir else str(scratch.name if scratch else "")
    resume = get_last_checkpoint(out_dir) if checkpoint_dir and Path(out_dir).exists() else None
    # a loss logged every 2% of the steps: 50 points for any run length (every 50 steps left a short run with none)
    settings: dict[str, Any] = {"save_steps": 200, "save_total_limit": 1, "logging_steps": 0.02, **arguments}
    args = args_class(
        output_dir=out_dir,
        use_cpu=use_cpu,
        bf16=(not use_cpu) if bf16 is None else bf16,
        report_to="none",
        save_strategy="steps" if checkpoint_dir else "no",
        disable_tqdm=True,
        **settings,
    )
    trainer = make_trainer(args, [_time_budget(time_budget_s)] if time_budget_s else None)
    _quiet(trainer)
    t0 = time.perf_counter()
    try:
        state = trainer.train(resume_from_checkpoint=resume)
    finally:
        if scratch is not None:
            scratch.cleanup()
    secs = time.perf_counter() - t0
    return {
        "steps": int(state.global_step),
        "seconds": round(secs, 1),
        "resumed_from": resume,
        "train_loss": round(float(state.training_loss), 4),
        "losses": [round(float(e["loss"]), 4) for e in trainer.state.log_history if "loss" in e],
        "stopped_by_time_budget": bool(time_budget_s and secs >= time_budget_s),
    }


def _quiet(trainer: Any) -> None:
    """Training logs go to the qrelkit logger (stderr), never print()ed to stdout, which carries results only."""
    from transformers import TrainerCallback
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    class LogToStderr(TrainerCallback):
        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **_: Any) -> None:
            if logs:
                log.info("step %d/%d %s", state.global_step, state.max_steps, logs)

    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    trainer.add_callback(LogToStderr())


def _time_budget(seconds: float) -> Any:
    """A TrainerCallback that ends training, with a checkpoint save, once ``seconds`` of training are spent."""
    from transformers import TrainerCallback

    class TimeBudget(TrainerCallback):
        def __init__(self) -> None:
            self.start = time.perf_counter()

        def on_train_begin(self, args: Any, state: Any, control: Any, **_: Any) -> None:
            self.start = time.perf_counter()

        def on_step_end(self, args: Any, state: Any, control: Any, **_: Any) -> None:
            if time.perf_counter() - self.start >= seconds:
                control.should_training_stop = True
                control.should_save = True

    return TimeBudget()
