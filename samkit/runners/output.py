"""The tail every runner shares: the call's output settings, writing / showing Results as they stream past, and
returning a list or the generator."""

from __future__ import annotations

import os
from pathlib import Path

from samkit.cfg import OUTPUT_KEYS, WRITE_KEYS


def call_settings(model, given: dict, verbose: bool | None, device) -> dict:
    """A call's output settings (``given`` holds the call's arguments), after moving ``model`` to its ``device``."""
    if device is not None:
        model.to(device)
    out = {k: given[k] for k in (*OUTPUT_KEYS, "show")}
    out["verbose"] = model.verbose if verbose is None else bool(verbose)
    if any(out[k] for k in WRITE_KEYS):
        check_run_folder(out)  # before any work
    return out


def can_show() -> bool:
    """Whether result windows can be shown here (Ultralytics' check; it warns when they cannot)."""
    from ultralytics.utils.checks import check_imshow

    return bool(check_imshow(warn=True))


def check_run_folder(out: dict) -> None:
    project, name = out["project"], out["name"]
    if project is not None and not isinstance(project, (str, os.PathLike)):
        raise TypeError(f"project={project!r} must be a folder path (str or Path)")
    if name is not None and (not isinstance(name, str) or not name.strip()):
        raise (ValueError if isinstance(name, str) else TypeError)(
            f"name={name!r} must be a folder name (non-empty text), or None for 'exp'")


def finish(model, results, mode: str, out: dict, stream: bool):
    """The run's Results (a generator with ``stream``, else a list), written and shown as they pass when ``out``
    asks for it (see :mod:`samkit.writers.run`); the folder written is kept in ``model.save_dir``."""
    from samkit.writers.run import ResultSaver, claim_run_dir, saving

    show = bool(out.get("show")) and can_show()
    if show or any(out[k] for k in WRITE_KEYS):
        saver = None
        if any(out[k] for k in WRITE_KEYS):
            check_run_folder(out)
            project = Path(out["project"]) if out["project"] is not None else Path("runs") / mode
            model.save_dir = claim_run_dir(project / (out["name"] or "exp"), out["exist_ok"])  # never shared
            saver = ResultSaver(model.save_dir, verbose=out.get("verbose", True),
                                **{k: out[k] for k in (*WRITE_KEYS, "rle")})
        results = saving(results, saver, show=show)
    return results if stream else list(results)
