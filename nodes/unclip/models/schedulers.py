"""Scheduler choice and stepping shared by the three sampling stages.

A checkpoint ships its own scheduler config (`prior_scheduler/`, `decoder_scheduler/`,
`super_res_scheduler/`); any other supported diffusers scheduler is built from that same config
with `from_config`, so the noise schedule, prediction type and clipping carry over.
`UnCLIPScheduler.step` takes the next timestep (`prev_timestep`) because its spacing is not uniform;
the other schedulers keep their own state.
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import diffusers
import torch

# name → diffusers class name; None means the checkpoint's own scheduler
SCHEDULERS: dict[str, str | None] = {
    "default": None,
    "unclip": "UnCLIPScheduler",
    "ddim": "DDIMScheduler",
    "ddpm": "DDPMScheduler",
    "dpm++": "DPMSolverMultistepScheduler",
    "euler_a": "EulerAncestralDiscreteScheduler",
    "euler": "EulerDiscreteScheduler",
    # few-step sampling of a consistency-distilled model (an LCM-LoRA such as the shipped shapes-lcm)
    "lcm": "LCMScheduler",
}
LEARNED_VARIANCE = ("learned", "learned_range")
# prediction types each scheduler implements (the rest support epsilon, sample and v_prediction)
PREDICTIONS: dict[str, tuple[str, ...]] = {
    "UnCLIPScheduler": ("epsilon", "sample"),
    "EulerAncestralDiscreteScheduler": ("epsilon", "v_prediction"),
    "EulerDiscreteScheduler": ("epsilon", "v_prediction"),
}


def load_scheduler(folder: Path):
    """The scheduler saved in `folder` (its `scheduler_config.json` names the class)."""
    cfg_path = folder / "scheduler_config.json"
    if not cfg_path.is_file():
        raise FileNotFoundError(f"no scheduler_config.json in {folder}")
    name = json.loads(cfg_path.read_text())["_class_name"]
    cls = getattr(diffusers, name, None)
    if cls is None:
        raise ValueError(f"{cfg_path} names an unknown scheduler class {name!r}")
    return cls.from_pretrained(folder)


def make_scheduler(base, name: str | None = None):
    """A fresh scheduler instance: the checkpoint's own (`name` None/'default') or `name` from its config.

    A fresh instance per call keeps no state between runs, so a sampling loop cancelled half-way
    (the callback raised) leaves nothing behind.
    """
    key = "default" if name is None else name
    if key not in SCHEDULERS:
        raise ValueError(f"unknown scheduler {name!r}; expected one of {sorted(SCHEDULERS)}")
    cls_name = SCHEDULERS[key] or type(base).__name__
    cls = getattr(diffusers, cls_name)
    pred = base.config.get("prediction_type", "epsilon")
    supported = PREDICTIONS.get(cls_name, ("epsilon", "sample", "v_prediction"))
    if pred not in supported:
        ok = [k for k, v in SCHEDULERS.items() if v and pred in PREDICTIONS.get(v, ("epsilon", "sample",
                                                                                  "v_prediction"))]
        raise ValueError(f"scheduler {key!r} supports {'/'.join(supported)} prediction, but this model predicts "
                         f"{pred!r}; use 'default' or one of {ok}")
    return cls.from_config(base.config)


def uses_learned_variance(sched) -> bool:
    # from_config keeps unknown keys in the config, so ask only schedulers that implement the option
    if not isinstance(sched, diffusers.UnCLIPScheduler | diffusers.DDPMScheduler):
        return False
    return sched.config.get("variance_type") in LEARNED_VARIANCE


def step(sched, model_output: torch.Tensor, t, sample: torch.Tensor, prev_t, generator):
    """One denoising step; returns the scheduler's output (`prev_sample`, maybe `pred_original_sample`).

    `prev_t` is the next timestep (None on the last step), used by the UnCLIPScheduler only.
    """
    if sample.shape[1] * 2 == model_output.shape[1] and model_output.dim() == 4 and not uses_learned_variance(sched):
        # a learned-variance model under a scheduler that does not use it: keep the mean prediction
        model_output = model_output[:, : sample.shape[1]]
    if isinstance(sched, diffusers.UnCLIPScheduler):
        return sched.step(model_output, t, sample, prev_timestep=prev_t, generator=generator)
    kwargs = {"generator": generator} if "generator" in inspect.signature(sched.step).parameters else {}
    return sched.step(model_output, t, sample, **kwargs)


def timesteps(sched, steps: int) -> torch.Tensor:
    if steps < 2 and isinstance(sched, diffusers.UnCLIPScheduler):
        # its spacing divides by steps - 1
        raise ValueError("the UnCLIP scheduler samples in 2 steps or more; give steps ≥ 2, or for one step a "
                         "scheduler that starts at the last timestep, e.g. 'dpm++'")
    sched.set_timesteps(steps, device="cpu")
    return sched.timesteps


def prev_timestep(ts: torch.Tensor, i: int):
    """The pipeline's `prev_timestep`: the next entry of the schedule, None on the last step."""
    return None if i + 1 == ts.shape[0] else ts[i + 1]


def preview(out, sample: torch.Tensor) -> torch.Tensor:
    """A (B, 3, H, W) preview in [0, 1]: the scheduler's x0 estimate when it gives one."""
    x0 = getattr(out, "pred_original_sample", None)
    if x0 is None:
        x0 = getattr(out, "denoised", None)  # LCMScheduler's name for it
    x = x0 if x0 is not None else sample
    return (x[:, :3].clamp(-1, 1) + 1) / 2
