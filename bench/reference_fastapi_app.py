"""Reference for the reward-service benchmark: the same reward behind FastAPI + uvicorn.

Written the way OpenRLHF's own ``openrlhf/cli/serve_rm.py`` serves rewards (FastAPI, ``request.json()``,
``JSONResponse``), so the benchmark compares our aiohttp service with the obvious alternative.

    python -m uvicorn bench.reference_fastapi_app:app --host 127.0.0.1 --port 5001 --no-access-log
"""

from __future__ import annotations

import os

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from openrlhf_act.rewards.batch import as_openrlhf_dict
from openrlhf_act.rewards.catalog import get_reward
from openrlhf_act.rewards.config import config_from_env

SPEC = get_reward(os.environ.get("OPENRLHF_ACT_REWARD", "act_judgment"))
CONFIG = config_from_env()

app = FastAPI()


@app.post("/get_reward")
async def get_reward(request: Request) -> JSONResponse:
    data = await request.json()
    results = SPEC.score(data["query"], data.get("prompts"), data.get("labels"), CONFIG)
    return JSONResponse(as_openrlhf_dict(results, SPEC.log_keys, scalar=False))


@app.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}
