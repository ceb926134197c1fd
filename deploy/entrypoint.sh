#!/usr/bin/env bash
# The image's entry point: one image, one mode per role.
#
#   serve [ARGS]          `headspec db upgrade` (waits for the database), then `headspec serve`
#                         on 0.0.0.0:$HEADSPEC_API_PORT (8600); ARGS go to `headspec serve`
#   db-upgrade            `headspec db upgrade`, waiting for the database (an init container)
#   ray-head [ARGS]       a Ray head node: GCS on 6379, dashboard and Jobs API on 8265, Ray client
#                         on 10001; ARGS go to `ray start` (e.g. --num-cpus=0)
#   ray-worker [ARGS]     a Ray worker node joining $RAY_HEAD_ADDRESS (default ray-head:6379)
#   driver SWEEP_ID       a recorded sweep's driver (what `headspec serve` submits as a Ray Job)
#   run SPEC [ARGS]       `headspec run SPEC ARGS` (a sweep spec run from this container)
#   mlflow-server [ARGS]  `mlflow server` on 0.0.0.0:5000 with the backend store in
#                         $MLFLOW_BACKEND_STORE_URI and proxied artifacts (--serve-artifacts) under
#                         $MLFLOW_ARTIFACTS_DESTINATION (default /data/mlflow-artifacts)
#   anything else         run as a command (`headspec token create alice`, `bash`, ...)
#
# Settings come from the environment (HEADSPEC_*; the README's settings table). KubeRay runs
# its own `ray start` command in Ray pods and does not use this script.
set -euo pipefail

# How long serve / db-upgrade wait for the database to accept connections.
DB_WAIT_SECONDS=${DB_WAIT_SECONDS:-120}

db_upgrade() {
    local waited=0
    until headspec db upgrade; do
        if [ "$waited" -ge "$DB_WAIT_SECONDS" ]; then
            echo "entrypoint: the store did not accept 'headspec db upgrade' within ${DB_WAIT_SECONDS}s" >&2
            return 1
        fi
        echo "entrypoint: store not ready; retrying in 3s" >&2
        sleep 3
        waited=$((waited + 3))
    done
}

mode=${1:-serve}
if [ "$#" -gt 0 ]; then shift; fi

case "$mode" in
    serve)
        db_upgrade
        exec headspec serve --host "${HEADSPEC_API_HOST:-0.0.0.0}" --port "${HEADSPEC_API_PORT:-8600}" "$@"
        ;;
    db-upgrade)
        db_upgrade
        ;;
    ray-head)
        exec ray start --head --block \
            --port=6379 --dashboard-host=0.0.0.0 --dashboard-port=8265 --ray-client-server-port=10001 \
            "$@"
        ;;
    ray-worker)
        exec ray start --block --address="${RAY_HEAD_ADDRESS:-ray-head:6379}" "$@"
        ;;
    driver)
        exec headspec driver "$@"
        ;;
    run)
        exec headspec run "$@"
        ;;
    mlflow-server)
        : "${MLFLOW_BACKEND_STORE_URI:?mlflow-server needs MLFLOW_BACKEND_STORE_URI (e.g. postgresql+psycopg://...)}"
        exec mlflow server --host 0.0.0.0 --port 5000 --serve-artifacts \
            --artifacts-destination "${MLFLOW_ARTIFACTS_DESTINATION:-/data/mlflow-artifacts}" "$@"
        ;;
    *)
        exec "$mode" "$@"
        ;;
esac
