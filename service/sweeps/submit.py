"""Submitting a sweep to a launcher and cancelling it: what ``POST /sweeps`` and the study
scheduler both do, so neither holds the steps itself.

    sweep, where = submit_sweep(store, launcher, spec)      # validate, record, start its driver
    sweep = cancel_submitted(store, launcher, sweep.id)      # stop the driver, record cancelled

Validation happens before anything is written: a spec that fails pydantic raises its
``ValidationError``, one that fails planning raises :class:`SpecError` (see
:func:`spec_error_location` for the field it names), and the store then holds nothing.
"""

from __future__ import annotations

import re
from typing import Any

from service.store import Conflict, Store, Sweep, SweepStatus
from service.sweeps.launch import ACTIVE, SweepLauncher
from service.sweeps.local import cancel_unfinished, create_sweep
from service.sweeps.plan import SpecError
from service.sweeps.spec import SECTIONS, SweepSpec

_FIELD_RE = re.compile(rf"\b({'|'.join(SECTIONS)})(?:\.([a-z_][a-z0-9_]*))?\b")


class LaunchFailed(RuntimeError):
    """The sweep is recorded but its driver could not be started (or asked about)."""


def submit_sweep(
    store: Store, launcher: SweepLauncher, spec: SweepSpec | dict[str, Any]
) -> tuple[Sweep, str]:
    """Validate and expand ``spec``, record the sweep and its variants (pending), and start
    its driver. Returns the sweep and where its driver runs.

    Raises pydantic's ``ValidationError`` or :class:`SpecError` before anything is written,
    and :class:`LaunchFailed` when the launcher refuses: the sweep then stays pending, and
    ``reconcile`` submits it again when the service next starts (or cancel it)."""
    if not isinstance(spec, SweepSpec):
        spec = SweepSpec.model_validate(spec)
    sweep, _, _ = create_sweep(store, spec)
    try:
        where = launcher.submit(sweep.id)
    except Exception as exc:
        raise LaunchFailed(
            f"sweep {sweep.id} is recorded (pending) but its driver could not be started: {exc}; "
            "it is submitted again when the service restarts, or cancel it"
        ) from exc
    return sweep, where


def cancel_submitted(store: Store, launcher: SweepLauncher, sweep_id: int) -> Sweep:
    """Stop a sweep's driver and record it and its unfinished variants cancelled.

    Cancelling a cancelled sweep changes nothing; a sweep that already succeeded or failed
    raises :class:`Conflict` (its results stay as they are)."""
    sweep = store.get_sweep(sweep_id)
    if sweep.status in (SweepStatus.SUCCEEDED, SweepStatus.FAILED):
        raise Conflict(f"sweep {sweep_id} already {sweep.status}; there is nothing to cancel")
    if sweep.status == SweepStatus.CANCELLED:
        return sweep
    try:
        launcher.stop(sweep_id)  # a driver that stops in time records its variants itself
    except Exception as exc:  # the launcher's own failure, e.g. the Ray cluster is unreachable
        raise LaunchFailed(f"could not stop the driver of sweep {sweep_id}: {exc}") from exc
    cancel_unfinished(store, sweep_id, "cancelled by request")
    if store.get_sweep(sweep_id).status in ACTIVE:
        store.set_sweep_status(sweep_id, SweepStatus.CANCELLED)
    return store.get_sweep(sweep_id)


def spec_error_location(error: SpecError) -> tuple[str, ...]:
    """The spec field a :class:`SpecError` names, as a path under ``base``: e.g.
    ``("base", "model", "d_model")`` for "model.d_model=15 is not divisible by ...", or
    ``("base", "model")`` for "model: unknown field(s) ['bogus']"; ``()`` when none."""
    text = str(error)
    # plan_variants prefixes "base: " or "variant {factor values}: "
    text = text.split("}: ", 1)[-1] if text.startswith("variant {") else text.split(": ", 1)[-1]
    match = _FIELD_RE.search(text)
    if match is None:
        return ()
    section, field = match.groups()
    return ("base", section, field) if field else ("base", section)
