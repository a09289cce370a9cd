#!/usr/bin/env bash
# `make demo`: start a fleet with `comfyfleet up`, submit the default workflow, leave the
# PNGs in out/, stop the fleet, exit 0. Ports: DEMO_PORT (balancer, default 7999) and the
# two after DEMO_NODE_PORT (default 8101).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
PORT=${DEMO_PORT:-7999}
NODE_PORT=${DEMO_NODE_PORT:-8101}
export API_USERNAME=${API_USERNAME:-comfy}
export API_PASSWORD=${API_PASSWORD:-$($BIN/python -c 'import secrets; print(secrets.token_urlsafe(16))')}
LOG=$(mktemp -t comfyfleet-demo.XXXXXX)

"$BIN/comfyfleet" up --port "$PORT" --node-port "$NODE_PORT" --nodes 2 >"$LOG" 2>&1 &
UP=$!
stop() { kill -INT "$UP" 2>/dev/null || true; wait "$UP" 2>/dev/null || true; }
trap stop EXIT

# Wait (bounded) until the balancer says a node can take jobs.
if ! "$BIN/python" - "$PORT" "$UP" <<'PY'
import os, sys, time, urllib.request
port, pid = sys.argv[1], int(sys.argv[2])
deadline = time.monotonic() + 90
while time.monotonic() < deadline:
    try:
        os.kill(pid, 0)
    except OSError:
        sys.exit("comfyfleet up exited early")
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r:
            if r.status == 200:
                sys.exit(0)
    except OSError:
        pass
    time.sleep(0.2)
sys.exit("the fleet did not become ready within 90 s")
PY
then
  cat "$LOG" >&2
  exit 1
fi
sed -n '1,12p' "$LOG"

rm -rf out && mkdir -p out
"$BIN/comfyfleet" submit txt2img --url "http://127.0.0.1:$PORT" --out out \
  --set prompt="a lighthouse on a cliff at dusk, oil painting" --set steps=20 \
  --set width=512 --set height=512
echo "demo done: $(ls out | wc -l) image(s) in out/"
