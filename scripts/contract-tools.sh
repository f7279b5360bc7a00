# Sourced by scripts/test: the API contract test's tools (schemathesis, openapi-spec-validator, from
# PyPI) in a virtual environment under the cache directory, installed once and reused.
contract_venv="${XDG_CACHE_HOME:-$HOME/.cache}/dataforge/contract-venv"
if [ ! -x "$contract_venv/bin/schemathesis" ] || [ ! -x "$contract_venv/bin/openapi-spec-validator" ]; then
  echo "installing the contract test's tools (schemathesis, openapi-spec-validator) into $contract_venv" >&2
  python3 -m venv "$contract_venv"
  "$contract_venv/bin/pip" install --quiet --disable-pip-version-check \
    "schemathesis>=4.3,<5" "openapi-spec-validator>=0.7,<1"
fi
export DATAFORGE_CONTRACT_TOOLS="$contract_venv/bin"
