"""The serving benchmark's baseline: the least a FastAPI app on uvicorn can answer.

`python -m bench.serve` runs it with uvicorn exactly as `nextoffer serve` runs the API (one
worker, log level warning, no access log, proxy headers on, no server header). Its one
route is a plain `def`, as every route of the API is, so it pays the same hop to the thread
pool: what remains between the two is nextoffer's own work per request.
"""

from __future__ import annotations

from fastapi import FastAPI

app = FastAPI()


@app.get("/")
def root() -> dict[str, str]:
    return {}
