#!/usr/bin/env bash
# The main job on one machine: set up, start all four services in one process on embedded
# defaults (in-process stores, keys created in ./ekyc-keys at first start, among them the
# development API key ./ekyc-keys/api-key), and run one verification against them with
# `ekyc verify`, which starts the session with that API key and sends everything else with
# the session token StartSession returned: frames of a development photo's face turned
# to each requested pose, and a synthetic ID card printed with another photo of the same
# person. Prints the decision and where the signed evidence record is, verifies that record
# offline, and stops the services.
#
#   ./scripts/demo.sh [SELFIE.jpg] [CARD_FACE.jpg] [POLICY]
set -euo pipefail
cd "$(dirname "$0")/.."
SELFIE=${1:-../shared/faces/obama_1.jpg}
CARD_FACE=${2:-../shared/faces/obama_3.jpg}
POLICY=${3:-low-risk}

./scripts/setup.sh
cargo build --release --locked -p ekyc
cargo build --release --locked -p ekyc-testkit --example demo_inputs
EKYC=target/release/ekyc
WORK=$(mktemp -d)
trap 'kill "${SERVER:-}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$WORK"' EXIT

target/release/examples/demo_inputs "$SELFIE" "$CARD_FACE" "$WORK/inputs"
"$EKYC" serve >"$WORK/serve.log" 2>&1 &
SERVER=$!
# Ready when every service reports SERVING under its own name (models loaded and warm).
"$EKYC" health --wait 180 || { cat "$WORK/serve.log"; exit 1; }
grep -E "orchestrator (evidence key|API key)" "$WORK/serve.log" || true
I="$WORK/inputs"
echo "The challenge frames below are rendered from one still photo ($SELFIE): a presentation attack."
"$EKYC" verify --api-key-file ekyc-keys/api-key --policy "$POLICY" --front "$I/front.jpg" --left "$I/left.jpg" --right "$I/right.jpg" \
  --up "$I/up.jpg" --down "$I/down.jpg" --document "$I/card.jpg" --out-dir evidence | tee "$WORK/verify.out"
if grep -q "^decision REJECT" "$WORK/verify.out" && grep -qE "RENDERED_FROM_STILL_SUSPECTED|required factor FACTOR_KIND_PRESENTATION_ATTACK" "$WORK/verify.out"; then
  echo "PAD: the rendered frames were caught and the verification refused (see the reasons above)."
elif grep -q "PRESENTATION_ATTACK_SUSPECTED" "$WORK/verify.out"; then
  echo "PAD: not sure these frames came from a live person: referred to staff (REVIEW), not refused."
else
  echo "PAD: these rendered frames were NOT caught. Renderings from one still are detected only when the face's"
  echo "shading stays flat through every turn; see README, 'Presentation-attack detection', for what PAD does not catch."
fi
RECORD=$(ls -t evidence/evidence-*.json | head -1)
"$EKYC" evidence verify "$RECORD" --key ekyc-keys/evidence-public.pem
