"""The orchestrator's tuning constants, named in one place. Settings that an operator
may change are in ``alphasaga_shared.config.Settings``; these are design choices, with
the measurements behind them in docs/decisions/."""

from __future__ import annotations

# A message decided on a saga that another orchestrator moved on is decided again, this
# many times at most, after a short backoff with jitter (two orchestrators racing on one
# saga should not race again in lockstep).
MAX_CONFLICT_RETRIES = 20
CONFLICT_BACKOFF_S = 0.001
CONFLICT_BACKOFF_MAX_S = 0.05

# After a conflict, cached sagas are checked against the store for this long
# (repository.SagaRepository).
SHARED_WINDOW_S = 10.0

# The pool that commits of a few sagas run on: its sessions plan the commit statement
# once (docs/decisions/0003-commit-pool-generic-plan.md). Larger batches use the main pool.
COMMIT_POOL_SETTINGS = {"plan_cache_mode": "force_generic_plan"}
GENERIC_PLAN_MAX_SAGAS = 8
